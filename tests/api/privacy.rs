//! Privacy: erasure at once (every table and the storage checked afterwards, the money kept and
//! consistent) and the export of everything held about a user.

use atelier::db::ledger;
use atelier::db::schema::{
    chat_sessions, generations, payment_events, payments, sandbox_payments, uploads, users,
};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};

use crate::helpers::{
    Export, Generation, NewUser, STARS_SECRET, Session, TestApp, TestUser, Worker, assert_problem,
    buy, pre_checkout, spawn_app_with, stars_app, stars_user, successful, webhook, yk_app,
};

const SETTINGS: &[(&str, &str)] = &[
    ("FREE_ACTIONS_PER_MONTH", "1"),
    ("SANDBOX_GENERATION_MS", "0"),
];

/// Every file under the test's storage directory.
fn stored_files(app: &TestApp) -> Vec<String> {
    fn walk(dir: &std::path::Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path.to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(std::path::Path::new(&app.storage_dir), &mut out);
    out
}

/// Buys `pack_10` through the sandbox payment page, with an email for the receipt.
async fn buy_pack(user: &TestUser<'_>) -> uuid::Uuid {
    let created = user.pay("pack_10").await;
    let page = created.confirmation_url.unwrap();
    let res = user
        .app
        .client
        .post(format!("{page}/succeed"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    created.payment_id
}

/// A user with one finished edit (paid with the free action) and one queued try-on (paid with
/// credits); returns them with the user.
async fn user_with_history(
    app: &TestApp,
    telegram_id: i64,
) -> (TestUser<'_>, Generation, Generation) {
    let user = app.user_with(NewUser::id(telegram_id)).await;
    user.grant(5).await;
    let source = user.upload_editing().await.id;
    let worker = Worker::start(app);
    let edit = user
        .edit(&json!({"upload_id": source, "prompt": "make it warmer", "client_request_id": "e1"}))
        .await;
    let edit = user.wait_for_status(edit.id, "succeeded").await;
    drop(worker);
    user.chat(&json!({"upload_id": source, "message": "can it look like autumn?"}))
        .await;
    let fitting = user.upload_fitting().await;
    let fit = user.fit_zone(&fitting, "top", "f1").await;
    assert_eq!(fit.status, "queued");
    (user, edit, fit)
}

#[tokio::test]
async fn erasure_removes_photos_generations_and_profile_and_keeps_the_ledger() {
    let app = spawn_app_with(SETTINGS).await;
    let (anna, edit, _queued) = user_with_history(&app, 4242).await;
    let payment = buy_pack(&anna).await;
    // Another user's data must survive.
    let other = app.user_with(NewUser::id(4343)).await;
    other.upload_editing().await;
    assert_eq!(anna.credits().await, 12);
    let uid = anna.id().await;
    let edit_id = edit.id.to_string();
    let files_before = stored_files(&app);
    assert!(files_before.iter().any(|f| f.contains(&edit_id)));

    let body = anna.erase().await;
    assert_eq!(body.erased.uploads, 3, "{body:?}");
    assert_eq!(body.erased.generations, 2);
    assert_eq!(body.erased.chat_sessions, 1);
    assert_eq!(body.erased.images, 4, "three photos and one result");
    assert!(body.erased.profile);

    let mut conn = app.conn().await;
    let count_uploads: i64 = uploads::table
        .filter(uploads::user_id.eq(uid))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    let count_generations: i64 = generations::table
        .filter(generations::user_id.eq(uid))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!((count_uploads, count_generations), (0, 0));
    let (tg, username, first, erased, balance_credits): (
        i64,
        Option<String>,
        String,
        Option<chrono::DateTime<chrono::Utc>>,
        i64,
    ) = users::table
        .find(uid)
        .select((
            users::telegram_id,
            users::username,
            users::first_name,
            users::erased_at,
            users::balance_credits,
        ))
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(tg, -uid.get());
    assert_eq!((username, first.as_str()), (None, ""));
    assert!(erased.is_some());
    // The queued try-on was refunded before it went: 5 granted + 10 bought - 1 chat turn.
    assert_eq!(balance_credits, 14);
    assert_eq!(body.kept.payments, 1);
    let kept: (i64, String, Option<serde_json::Value>) = payments::table
        .filter(payments::id.eq(payment))
        .select((
            payments::user_id,
            payments::status,
            payments::create_request,
        ))
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        (kept.0, kept.1.as_str(), kept.2),
        (uid.get(), "succeeded", None),
        "the receipt's email is gone"
    );
    let entries = ledger::list(&mut conn, uid, None, 100).await.unwrap();
    assert_eq!(body.kept.ledger_entries, entries.len() as i64);
    assert_eq!(
        entries.iter().map(|e| e.delta).sum::<i64>(),
        balance_credits
    );
    assert_eq!(entries.iter().filter(|e| e.reason == "refund").count(), 1);

    // Storage: the user's objects are gone, the other user's photo is not.
    let files_after = stored_files(&app);
    assert_eq!(files_after.len(), files_before.len() - 4, "{files_after:?}");
    assert!(!files_after.iter().any(|f| f.contains(&edit_id)));

    // The sandbox provider's copy of the request loses the receipt's email, not the amount.
    let key: String = payments::table
        .filter(payments::user_id.eq(uid))
        .select(payments::idempotency_key)
        .first(&mut conn)
        .await
        .unwrap();
    let (request, amount): (Value, i64) = sandbox_payments::table
        .filter(sandbox_payments::idempotence_key.eq(&key))
        .select((sandbox_payments::request, sandbox_payments::amount_minor))
        .first(&mut conn)
        .await
        .unwrap();
    assert!(
        !request.to_string().contains("anna@example.com"),
        "{request}"
    );
    assert_eq!(amount, 19900);
    assert_eq!(request["amount"]["value"], "199.00");

    // The old token leads nowhere; the next login starts a new account, but not a new
    // allowance: the free action used this month stays used.
    assert_eq!(anna.get("/api/v1/me").await.status(), 401);
    let fresh = app.user_with(NewUser::id(4242)).await;
    assert_eq!(fresh.login.user.id, 4242);
    let b = fresh.balance().await;
    assert_eq!(
        (b.balance_credits, b.free_actions_left, b.free_actions_used),
        (0, 0, 1)
    );
    assert_ne!(fresh.id().await, uid);
    assert!(fresh.generations("").await.items.is_empty());
}

#[tokio::test]
async fn the_export_holds_everything_with_links_that_work() {
    let app = spawn_app_with(SETTINGS).await;
    let (anna, edit, queued) = user_with_history(&app, 5151).await;
    let payment = buy_pack(&anna).await;
    let res = anna.get("/api/v1/me/export").await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let doc: Export = res.json().await.unwrap();
    assert_eq!(doc.user.id, 5151);
    assert_eq!(doc.balance.balance_credits, 12);
    assert_eq!(doc.payments[0].payment_id, payment);
    assert_eq!(doc.payments[0].status, "succeeded");
    let reasons: Vec<&str> = doc.ledger.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "purchase",
            "charge",
            "charge",
            "free_allowance",
            "admin_grant"
        ],
        "newest first"
    );
    assert_eq!(doc.referrals_invited, 0);
    let chat: &Session = &doc.chat_sessions[0];
    assert_eq!(chat.messages[0].content, "can it look like autumn?");
    assert_eq!(chat.messages[1].role, "assistant");
    assert_eq!(chat.messages[1].variants.len(), 3);
    assert_eq!(doc.uploads.len(), 3);
    let ids: Vec<uuid::Uuid> = doc.generations.iter().map(|g| g.id).collect();
    assert_eq!(ids, [queued.id, edit.id], "newest first");
    let result = doc.generations[1].result.as_ref().unwrap();
    for url in doc
        .uploads
        .iter()
        .map(|u| u.url.as_str())
        .chain([result.url.as_str()])
    {
        assert_eq!(
            app.client.get(url).send().await.unwrap().status(),
            200,
            "{url}"
        );
    }
    // Nobody else's data, and no access without a token.
    assert_problem(
        app.get("/api/v1/me/export", None).await,
        401,
        "missing_credentials",
    )
    .await;
}

#[tokio::test]
async fn the_hourly_task_limit_holds_across_an_erasure() {
    let app = spawn_app_with(&[
        ("FREE_ACTIONS_PER_MONTH", "0"),
        ("MAX_TASKS_PER_USER_PER_HOUR", "2"),
    ])
    .await;
    let edit = |upload: uuid::Uuid, crid: &str| json!({"upload_id": upload, "prompt": "p", "client_request_id": crid});
    let anna = app.user_with(NewUser::id(6161)).await;
    anna.grant(10).await;
    let upload = anna.upload_editing().await.id;
    for crid in ["a", "b"] {
        anna.edit(&edit(upload, crid)).await;
    }
    anna.erase().await;

    let fresh = app.user_with(NewUser::id(6161)).await;
    fresh.grant(10).await;
    let upload = fresh.upload_editing().await.id;
    let res = fresh
        .post("/api/v1/editing/generate", &edit(upload, "c"))
        .await;
    assert!(res.headers().get("retry-after").is_some());
    assert_problem(res, 429, "rate_limited").await;
    // Another Telegram account is not held by it.
    let other = app.user_with(NewUser::id(6262)).await;
    other.grant(10).await;
    let upload = other.upload_editing().await.id;
    other.edit(&edit(upload, "c")).await;
}

#[tokio::test]
async fn erasure_anonymises_stars_payment_updates_and_keeps_amounts_and_ids() {
    let (app, tg) = stars_app().await;
    let anna = app.user_with(stars_user(77)).await;
    let payload = anna.stars_invoice("pack_10").await.payment_id.to_string();
    let url = app.url("/api/v1/telegram/webhook");
    tg.push_update(&url, STARS_SECRET, &pre_checkout("q1", 77, 150, &payload))
        .await;
    let mut paid = successful(77, 150, &payload, "stxERASE-1");
    paid["message"]["from"] = json!({"id": 77, "is_bot": false, "first_name": "Anna", "last_name": "Karenina", "username": "anna_k"});
    paid["message"]["chat"]["username"] = json!("anna_k");
    assert_eq!(
        tg.push_update(&url, STARS_SECRET, &paid).await.status(),
        200
    );
    let body_of = async |app: &TestApp| -> Value {
        let mut conn = app.conn().await;
        payment_events::table
            .filter(payment_events::object_id.eq("stxERASE-1"))
            .select(payment_events::body)
            .first(&mut conn)
            .await
            .unwrap()
    };
    assert!(body_of(&app).await.to_string().contains("anna_k"));

    anna.erase().await;
    let body = body_of(&app).await;
    let text = body.to_string();
    for personal in ["Anna", "Karenina", "anna_k", "\"from\"", "\"chat\""] {
        assert!(!text.contains(personal), "{personal} in {text}");
    }
    let payment = &body["message"]["successful_payment"];
    assert_eq!(payment["total_amount"], 150);
    assert_eq!(payment["currency"], "XTR");
    assert_eq!(payment["telegram_payment_charge_id"], "stxERASE-1");
    assert_eq!(payment["invoice_payload"], payload.as_str());
}

#[tokio::test]
async fn erasure_removes_card_details_from_yookassa_notifications() {
    let (app, yk) = yk_app(&[]).await;
    let anna = app.user_with(NewUser::id(88)).await;
    let (_, yk_id) = buy(&anna, "pack_10").await;
    yk.succeed(&yk_id);
    let res = yk
        .notify_payment(&webhook(&app), "payment.succeeded", &yk_id)
        .await;
    assert_eq!(res.status(), 200);
    let body_of = async |app: &TestApp| -> Value {
        let mut conn = app.conn().await;
        payment_events::table
            .filter(payment_events::object_id.eq(&yk_id))
            .select(payment_events::body)
            .first(&mut conn)
            .await
            .unwrap()
    };
    assert!(body_of(&app).await.to_string().contains("4444"));

    anna.erase().await;
    let body = body_of(&app).await;
    let text = body.to_string();
    for personal in ["payment_method", "555555", "4444", "anna@example.com"] {
        assert!(!text.contains(personal), "{personal} in {text}");
    }
    assert_eq!(body["event"], "payment.succeeded");
    assert_eq!(body["object"]["id"], yk_id.as_str());
    assert_eq!(body["object"]["amount"]["value"], "199.00");
    assert!(body["object"]["income_amount"]["value"].is_string());
}

/// A finished edit (through the worker) of a fresh upload; returns (upload id, generation).
async fn finished_edit(user: &TestUser<'_>, crid: &str) -> (uuid::Uuid, Generation) {
    let source = user.upload_editing().await.id;
    let worker = Worker::start(user.app);
    let edit = user
        .edit(&json!({"upload_id": source, "prompt": "make it warmer", "client_request_id": crid}))
        .await;
    let edit = user.wait_for_status(edit.id, "succeeded").await;
    drop(worker);
    (source, edit)
}

#[tokio::test]
async fn results_expire_after_result_retention_days_row_and_file() {
    let app = spawn_app_with(&[
        ("FREE_ACTIONS_PER_MONTH", "5"),
        ("SANDBOX_GENERATION_MS", "0"),
        ("RESULT_RETENTION_DAYS", "7"),
    ])
    .await;
    let anna = app.user_with(NewUser::id(31)).await;
    let (_, edit) = finished_edit(&anna, "r1").await;
    let id = edit.id.to_string();
    let result_files = |app: &TestApp| {
        stored_files(app)
            .into_iter()
            .filter(|f| f.contains(&id))
            .count()
    };
    assert_eq!(result_files(&app), 1);
    let sweep = |days| {
        atelier::jobs::sweeper::sweep_results(
            &app.state,
            chrono::Utc::now() + chrono::Duration::days(days),
        )
    };
    assert_eq!(sweep(6).await.unwrap(), 0);
    assert_eq!(result_files(&app), 1);
    assert_eq!(sweep(8).await.unwrap(), 1);
    assert_eq!(sweep(8).await.unwrap(), 0, "sweeps are idempotent");
    assert_eq!(result_files(&app), 0);
    let path = format!("/api/v1/generations/{id}");
    assert_problem(anna.get(&path).await, 404, "not_found").await;
    let mut conn = app.conn().await;
    let rows: i64 = generations::table
        .filter(generations::id.eq(edit.id))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows, 0);
}

#[tokio::test]
async fn a_user_deletes_one_result_and_an_active_one_is_refused() {
    let app = spawn_app_with(&[
        ("FREE_ACTIONS_PER_MONTH", "5"),
        ("SANDBOX_GENERATION_MS", "0"),
    ])
    .await;
    let anna = app.user_with(NewUser::id(41)).await;
    let stranger = app.user_with(NewUser::id(42)).await;
    let (_, edit) = finished_edit(&anna, "d1").await;
    let (_, kept) = finished_edit(&anna, "d2").await;
    let id = &edit.id.to_string();
    let path = format!("/api/v1/generations/{id}");
    let files = |app: &TestApp, id: &str| {
        stored_files(app)
            .into_iter()
            .filter(|f| f.contains(id))
            .count()
    };
    assert_eq!(files(&app, id), 1);

    assert_problem(stranger.delete(&path).await, 404, "not_found").await;
    assert_eq!(files(&app, id), 1);
    let res = anna.delete(&path).await;
    assert_eq!(res.status(), 204);
    assert_eq!(files(&app, id), 0);
    assert_eq!(files(&app, &kept.id.to_string()), 1, "only that one");
    assert_problem(anna.get(&path).await, 404, "not_found").await;
    assert_problem(anna.delete(&path).await, 404, "not_found").await;
    let list = anna.generations("").await;
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].id, kept.id);
    let mut conn = app.conn().await;
    let (prompt, key): (String, Option<String>) = generations::table
        .find(edit.id)
        .select((generations::prompt, generations::result_key))
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!((prompt.as_str(), key), ("", None));

    // Queued (no worker runs now): refused until canceled.
    let source = anna.upload_editing().await.id;
    let queued = anna
        .edit(&json!({"upload_id": source, "prompt": "p", "client_request_id": "q"}))
        .await;
    let qpath = format!("/api/v1/generations/{}", queued.id);
    assert_problem(anna.delete(&qpath).await, 409, "generation_active").await;
    assert_eq!(anna.cancel(queued.id).await.status(), 200);
    assert_eq!(anna.delete(&qpath).await.status(), 204);
}

#[tokio::test]
async fn a_user_erases_one_photo_and_generations_that_used_it_stay_sound() {
    let app = spawn_app_with(&[
        ("FREE_ACTIONS_PER_MONTH", "5"),
        ("SANDBOX_GENERATION_MS", "0"),
    ])
    .await;
    let anna = app.user_with(NewUser::id(51)).await;
    let stranger = app.user_with(NewUser::id(52)).await;
    let (source_id, edit) = finished_edit(&anna, "u1").await;
    let source = source_id.to_string();
    let path = format!("/api/v1/uploads/{source}");
    assert_eq!(
        stored_files(&app)
            .iter()
            .filter(|f| f.contains(&source))
            .count(),
        1
    );
    // A queued generation still reads it: refused.
    let queued = anna
        .edit(&json!({"upload_id": source, "prompt": "p", "client_request_id": "u2"}))
        .await;
    assert_problem(anna.delete(&path).await, 409, "upload_in_use").await;
    assert_eq!(anna.cancel(queued.id).await.status(), 200);

    assert_problem(stranger.delete(&path).await, 404, "not_found").await;
    assert_eq!(anna.delete(&path).await.status(), 204);
    assert!(
        !stored_files(&app).iter().any(|f| f.contains(&source)),
        "the file is gone"
    );
    assert_problem(anna.get(&path).await, 404, "not_found").await;
    assert_problem(anna.delete(&path).await, 404, "not_found").await;
    let mut conn = app.conn().await;
    let deleted: Option<chrono::DateTime<chrono::Utc>> = uploads::table
        .find(source_id)
        .select(uploads::deleted_at)
        .first(&mut conn)
        .await
        .unwrap();
    assert!(deleted.is_some(), "the row is marked deleted");
    // The finished edit keeps its result; a new one cannot use the photo.
    let g = anna.wait_for_status(edit.id, "succeeded").await;
    let url = g.result.unwrap().url;
    assert_eq!(app.client.get(url).send().await.unwrap().status(), 200);
    let body = json!({"upload_id": source, "prompt": "p", "client_request_id": "u3"});
    assert_problem(
        anna.post("/api/v1/editing/generate", &body).await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn chat_messages_older_than_30_days_go_even_from_a_session_in_use() {
    let app = spawn_app_with(SETTINGS).await;
    let anna = app.user_with(NewUser::id(61)).await;
    anna.grant(5).await;
    let source = anna.upload_editing().await.id;
    let first = anna
        .chat(&json!({"upload_id": source, "message": "an old wish"}))
        .await;
    let session = first.session_id;
    anna.chat(&json!({"session_id": session, "message": "a new wish"}))
        .await;
    // The first turn (user message and reply) was 40 days ago.
    let old = (chrono::Utc::now() - chrono::Duration::days(40)).to_rfc3339();
    let mut conn = app.conn().await;
    diesel::sql_query(
        "UPDATE chat_sessions SET created_at = now() - interval '40 days', \
             messages = jsonb_set(jsonb_set(messages, '{0,timestamp}', to_jsonb($1::text)), \
                                  '{1,timestamp}', to_jsonb($1::text)) \
          WHERE session_id = $2",
    )
    .bind::<diesel::sql_types::Text, _>(&old)
    .bind::<diesel::sql_types::Uuid, _>(session)
    .execute(&mut conn)
    .await
    .unwrap();

    let now = chrono::Utc::now();
    assert_eq!(
        atelier::jobs::sweeper::sweep_chat_sessions(&app.state, now)
            .await
            .unwrap(),
        0,
        "the session is in use"
    );
    assert_eq!(
        atelier::jobs::sweeper::sweep_chat_messages(&app.state, now)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        atelier::jobs::sweeper::sweep_chat_messages(&app.state, now)
            .await
            .unwrap(),
        0
    );
    let stored: Value = chat_sessions::table
        .filter(chat_sessions::session_id.eq(session))
        .select(chat_sessions::messages)
        .first(&mut conn)
        .await
        .unwrap();
    let stored = stored.as_array().unwrap();
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert_eq!(stored[0]["content"], "a new wish");
    assert_eq!(stored[1]["role"], "assistant");
    let res = anna
        .get(&format!("/api/v1/editing/sessions/{session}"))
        .await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    let shown: Session = serde_json::from_str(&text).unwrap();
    assert_eq!(shown.messages.len(), 2);
    assert!(!text.contains("an old wish"));
}

#[tokio::test]
async fn a_blocked_user_can_still_export_and_erase_and_nothing_else() {
    const KEY: &str = "admin-key-for-the-privacy-tests-0123";
    let app = spawn_app_with(&[("ADMIN_API_KEY", KEY)]).await;
    let anna = app.user_with(NewUser::id(71)).await;
    let res = app
        .client
        .post(app.url("/admin/users/71/block"))
        .header("X-Admin-API-Key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_problem(anna.get("/api/v1/balance").await, 403, "user_blocked").await;
    assert_problem(anna.get("/api/v1/generations").await, 403, "user_blocked").await;

    let res = anna.get("/api/v1/me/export").await;
    assert_eq!(res.status(), 200);
    let doc: Export = res.json().await.unwrap();
    assert_eq!(doc.user.id, 71);
    // With initData instead of a token, too.
    let res = app
        .client
        .get(app.url("/api/v1/me/export"))
        .header(
            "Authorization",
            format!("tma {}", crate::helpers::init_data(71)),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    assert!(anna.erase().await.erased.profile);
    // Erasing does not lift the block: the next account of this Telegram account is blocked.
    let res = app
        .post_json(
            "/api/v1/auth/telegram",
            &json!({"init_data": crate::helpers::init_data(71)}),
            None,
        )
        .await;
    assert_problem(res, 403, "user_blocked").await;
}
