//! Privacy: erasure at once (every table and the storage checked afterwards, the money kept and
//! consistent) and the export of everything held about a user.

use atelier::db::ledger;
use atelier::db::schema::{
    chat_sessions, generations, payment_events, payments, sandbox_payments, uploads, users,
};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};

use crate::generations::{Worker, balance, grant, upload_editing, upload_fitting, wait_for_status};
use crate::helpers::{TestApp, assert_problem, spawn_app_with};

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
async fn buy_pack(app: &TestApp, token: &str) -> String {
    let res = app
        .client
        .post(app.url("/api/v1/payments/create"))
        .bearer_auth(token)
        .json(&json!({"product_id": "pack_10", "email": "anna@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    let page = body["confirmation_url"].as_str().unwrap();
    let res = app
        .client
        .post(format!("{page}/succeed"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    body["payment_id"].as_str().unwrap().to_owned()
}

/// One finished edit (paid with the free action) and one queued try-on (paid with credits).
async fn user_with_history(app: &TestApp, telegram_id: i64) -> (String, Value, Value) {
    let (token, _) = app.login(telegram_id).await;
    grant(app, telegram_id, 5).await;
    let source = upload_editing(app, &token).await;
    let worker = Worker::start(app);
    let body = json!({"upload_id": source, "prompt": "make it warmer", "client_request_id": "e1"});
    let edit: Value = app
        .post_json("/api/v1/editing/generate", &body, Some(&token))
        .await
        .json()
        .await
        .unwrap();
    let edit = wait_for_status(
        app,
        &token,
        edit["generation"]["id"].as_str().unwrap(),
        "succeeded",
    )
    .await;
    drop(worker);
    let body = json!({"upload_id": source, "message": "can it look like autumn?"});
    let res = app
        .post_json("/api/v1/editing/chat", &body, Some(&token))
        .await;
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    let (person, item) = upload_fitting(app, &token).await;
    let body = json!({"person_upload_id": person, "item_upload_id": item, "zone": "top", "client_request_id": "f1"});
    let fit: Value = app
        .post_json("/api/v1/fitting/generate", &body, Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(fit["generation"]["status"], "queued");
    (token, edit, fit["generation"].clone())
}

#[tokio::test]
async fn erasure_removes_photos_generations_and_profile_and_keeps_the_ledger() {
    let app = spawn_app_with(SETTINGS).await;
    let (token, edit, _queued) = user_with_history(&app, 4242).await;
    let payment = buy_pack(&app, &token).await;
    // Another user's data must survive.
    let (other, _) = app.login(4343).await;
    upload_editing(&app, &other).await;
    assert_eq!(balance(&app, &token).await["balance_credits"], 12);
    let uid = app.user_id(4242).await;
    let files_before = stored_files(&app);
    assert!(
        files_before
            .iter()
            .any(|f| f.contains(edit["id"].as_str().unwrap()))
    );

    let res = app
        .client
        .delete(app.url("/api/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["erased"]["uploads"], 3, "{body}");
    assert_eq!(body["erased"]["generations"], 2);
    assert_eq!(body["erased"]["chat_sessions"], 1);
    assert_eq!(body["erased"]["images"], 4, "three photos and one result");
    assert_eq!(body["erased"]["profile"], true);

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
    assert_eq!(tg, -uid);
    assert_eq!((username, first.as_str()), (None, ""));
    assert!(erased.is_some());
    // The queued try-on was refunded before it went: 5 granted + 10 bought - 1 chat turn.
    assert_eq!(balance_credits, 14);
    assert_eq!(body["kept"]["payments"], 1);
    let kept: (i64, String, Option<serde_json::Value>) = payments::table
        .filter(payments::id.eq(uuid::Uuid::parse_str(&payment).unwrap()))
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
        (uid, "succeeded", None),
        "the receipt's email is gone"
    );
    let entries = ledger::list(&mut conn, uid, None, 100).await.unwrap();
    assert_eq!(body["kept"]["ledger_entries"], entries.len());
    assert_eq!(
        entries.iter().map(|e| e.delta).sum::<i64>(),
        balance_credits
    );
    assert_eq!(entries.iter().filter(|e| e.reason == "refund").count(), 1);

    // Storage: the user's objects are gone, the other user's photo is not.
    let files_after = stored_files(&app);
    assert_eq!(files_after.len(), files_before.len() - 4, "{files_after:?}");
    assert!(
        !files_after
            .iter()
            .any(|f| f.contains(edit["id"].as_str().unwrap()))
    );

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
    assert_eq!(app.get("/api/v1/me", Some(&token)).await.status(), 401);
    let (fresh, user) = app.login(4242).await;
    assert_eq!(user["user"]["id"], 4242);
    let b = balance(&app, &fresh).await;
    assert_eq!(
        (
            b["balance_credits"].as_i64(),
            b["free_actions_left"].as_i64(),
            b["free_actions_used"].as_i64()
        ),
        (Some(0), Some(0), Some(1))
    );
    assert_ne!(app.user_id(4242).await, uid);
    let list: Value = app
        .get("/api/v1/generations", Some(&fresh))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"], json!([]));
}

#[tokio::test]
async fn the_export_holds_everything_with_links_that_work() {
    let app = spawn_app_with(SETTINGS).await;
    let (token, edit, queued) = user_with_history(&app, 5151).await;
    let payment = buy_pack(&app, &token).await;
    let res = app.get("/api/v1/me/export", Some(&token)).await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let doc: Value = res.json().await.unwrap();
    assert_eq!(doc["user"]["id"], 5151);
    assert_eq!(doc["balance"]["balance_credits"], 12);
    assert_eq!(doc["payments"][0]["payment_id"], payment.as_str());
    assert_eq!(doc["payments"][0]["status"], "succeeded");
    let reasons: Vec<&str> = doc["ledger"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
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
    assert_eq!(doc["referrals_invited"], 0);
    let chat = &doc["chat_sessions"][0];
    assert_eq!(chat["messages"][0]["content"], "can it look like autumn?");
    assert_eq!(chat["messages"][1]["role"], "assistant");
    assert_eq!(chat["messages"][1]["variants"].as_array().unwrap().len(), 3);
    assert_eq!(doc["uploads"].as_array().unwrap().len(), 3);
    let ids: Vec<&Value> = doc["generations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| &g["id"])
        .collect();
    assert_eq!(ids, [&queued["id"], &edit["id"]], "newest first");
    for url in doc["uploads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["url"].as_str().unwrap())
        .chain([doc["generations"][1]["result"]["url"].as_str().unwrap()])
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

async fn erase(app: &TestApp, token: &str) -> reqwest::Response {
    app.client
        .delete(app.url("/api/v1/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn delete(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    app.client
        .delete(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_hourly_task_limit_holds_across_an_erasure() {
    let app = spawn_app_with(&[
        ("FREE_ACTIONS_PER_MONTH", "0"),
        ("MAX_TASKS_PER_USER_PER_HOUR", "2"),
    ])
    .await;
    let edit = |upload: &str, crid: &str| json!({"upload_id": upload, "prompt": "p", "client_request_id": crid});
    let (token, _) = app.login(6161).await;
    grant(&app, 6161, 10).await;
    let upload = upload_editing(&app, &token).await;
    for crid in ["a", "b"] {
        let res = app
            .post_json(
                "/api/v1/editing/generate",
                &edit(&upload, crid),
                Some(&token),
            )
            .await;
        assert_eq!(res.status(), 202);
    }
    assert_eq!(erase(&app, &token).await.status(), 200);

    let (fresh, _) = app.login(6161).await;
    grant(&app, 6161, 10).await;
    let upload = upload_editing(&app, &fresh).await;
    let res = app
        .post_json(
            "/api/v1/editing/generate",
            &edit(&upload, "c"),
            Some(&fresh),
        )
        .await;
    assert!(res.headers().get("retry-after").is_some());
    assert_problem(res, 429, "rate_limited").await;
    // Another Telegram account is not held by it.
    let (other, _) = app.login(6262).await;
    grant(&app, 6262, 10).await;
    let upload = upload_editing(&app, &other).await;
    let res = app
        .post_json(
            "/api/v1/editing/generate",
            &edit(&upload, "c"),
            Some(&other),
        )
        .await;
    assert_eq!(res.status(), 202);
}

#[tokio::test]
async fn erasure_anonymises_stars_payment_updates_and_keeps_amounts_and_ids() {
    use crate::stars::{SECRET, invoice, login, pre_checkout, stars_app, successful};
    let (app, tg) = stars_app().await;
    let token = login(&app, 77).await;
    let payload = invoice(&app, &token, "pack_10").await["payment_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = app.url("/api/v1/telegram/webhook");
    tg.push_update(&url, SECRET, &pre_checkout("q1", 77, 150, &payload))
        .await;
    let mut paid = successful(77, 150, &payload, "stxERASE-1");
    paid["message"]["from"] = json!({"id": 77, "is_bot": false, "first_name": "Anna", "last_name": "Karenina", "username": "anna_k"});
    paid["message"]["chat"]["username"] = json!("anna_k");
    assert_eq!(tg.push_update(&url, SECRET, &paid).await.status(), 200);
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

    assert_eq!(erase(&app, &token).await.status(), 200);
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
    use crate::payments::{buy, webhook, yk_app};
    let (app, yk) = yk_app(&[]).await;
    let (token, _) = app.login(88).await;
    let (_, yk_id) = buy(&app, &token, "pack_10").await;
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

    assert_eq!(erase(&app, &token).await.status(), 200);
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
async fn finished_edit(app: &TestApp, token: &str, crid: &str) -> (String, Value) {
    let source = upload_editing(app, token).await;
    let worker = Worker::start(app);
    let body = json!({"upload_id": source, "prompt": "make it warmer", "client_request_id": crid});
    let edit: Value = app
        .post_json("/api/v1/editing/generate", &body, Some(token))
        .await
        .json()
        .await
        .unwrap();
    let id = edit["generation"]["id"].as_str().unwrap().to_owned();
    let edit = wait_for_status(app, token, &id, "succeeded").await;
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
    let (token, _) = app.login(31).await;
    let (_, edit) = finished_edit(&app, &token, "r1").await;
    let id = edit["id"].as_str().unwrap();
    let result_files = |app: &TestApp| {
        stored_files(app)
            .into_iter()
            .filter(|f| f.contains(id))
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
    assert_problem(app.get(&path, Some(&token)).await, 404, "not_found").await;
    let mut conn = app.conn().await;
    let rows: i64 = generations::table
        .filter(generations::id.eq(uuid::Uuid::parse_str(id).unwrap()))
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
    let (token, _) = app.login(41).await;
    let (stranger, _) = app.login(42).await;
    let (_, edit) = finished_edit(&app, &token, "d1").await;
    let (_, kept) = finished_edit(&app, &token, "d2").await;
    let id = edit["id"].as_str().unwrap();
    let path = format!("/api/v1/generations/{id}");
    let files = |app: &TestApp, id: &str| {
        stored_files(app)
            .into_iter()
            .filter(|f| f.contains(id))
            .count()
    };
    assert_eq!(files(&app, id), 1);

    assert_problem(delete(&app, &path, &stranger).await, 404, "not_found").await;
    assert_eq!(files(&app, id), 1);
    let res = delete(&app, &path, &token).await;
    assert_eq!(res.status(), 204);
    assert_eq!(files(&app, id), 0);
    assert_eq!(
        files(&app, kept["id"].as_str().unwrap()),
        1,
        "only that one"
    );
    assert_problem(app.get(&path, Some(&token)).await, 404, "not_found").await;
    assert_problem(delete(&app, &path, &token).await, 404, "not_found").await;
    let list: Value = app
        .get("/api/v1/generations", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["id"], kept["id"]);
    let mut conn = app.conn().await;
    let (prompt, key): (String, Option<String>) = generations::table
        .find(uuid::Uuid::parse_str(id).unwrap())
        .select((generations::prompt, generations::result_key))
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!((prompt.as_str(), key), ("", None));

    // Queued (no worker runs now): refused until canceled.
    let source = upload_editing(&app, &token).await;
    let body = json!({"upload_id": source, "prompt": "p", "client_request_id": "q"});
    let queued: Value = app
        .post_json("/api/v1/editing/generate", &body, Some(&token))
        .await
        .json()
        .await
        .unwrap();
    let qid = queued["generation"]["id"].as_str().unwrap();
    let qpath = format!("/api/v1/generations/{qid}");
    assert_problem(delete(&app, &qpath, &token).await, 409, "generation_active").await;
    let res = app
        .client
        .post(app.url(&format!("{qpath}/cancel")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(delete(&app, &qpath, &token).await.status(), 204);
}

#[tokio::test]
async fn a_user_erases_one_photo_and_generations_that_used_it_stay_sound() {
    let app = spawn_app_with(&[
        ("FREE_ACTIONS_PER_MONTH", "5"),
        ("SANDBOX_GENERATION_MS", "0"),
    ])
    .await;
    let (token, _) = app.login(51).await;
    let (stranger, _) = app.login(52).await;
    let (source, edit) = finished_edit(&app, &token, "u1").await;
    let path = format!("/api/v1/uploads/{source}");
    assert_eq!(
        stored_files(&app)
            .iter()
            .filter(|f| f.contains(&source))
            .count(),
        1
    );
    // A queued generation still reads it: refused.
    let body = json!({"upload_id": source, "prompt": "p", "client_request_id": "u2"});
    let queued: Value = app
        .post_json("/api/v1/editing/generate", &body, Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_problem(delete(&app, &path, &token).await, 409, "upload_in_use").await;
    let qid = queued["generation"]["id"].as_str().unwrap();
    let res = app
        .client
        .post(app.url(&format!("/api/v1/generations/{qid}/cancel")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    assert_problem(delete(&app, &path, &stranger).await, 404, "not_found").await;
    assert_eq!(delete(&app, &path, &token).await.status(), 204);
    assert!(
        !stored_files(&app).iter().any(|f| f.contains(&source)),
        "the file is gone"
    );
    assert_problem(app.get(&path, Some(&token)).await, 404, "not_found").await;
    assert_problem(delete(&app, &path, &token).await, 404, "not_found").await;
    let mut conn = app.conn().await;
    let deleted: Option<chrono::DateTime<chrono::Utc>> = uploads::table
        .find(uuid::Uuid::parse_str(&source).unwrap())
        .select(uploads::deleted_at)
        .first(&mut conn)
        .await
        .unwrap();
    assert!(deleted.is_some(), "the row is marked deleted");
    // The finished edit keeps its result; a new one cannot use the photo.
    let g = wait_for_status(&app, &token, edit["id"].as_str().unwrap(), "succeeded").await;
    let url = g["result"]["url"].as_str().unwrap();
    assert_eq!(app.client.get(url).send().await.unwrap().status(), 200);
    let body = json!({"upload_id": source, "prompt": "p", "client_request_id": "u3"});
    assert_problem(
        app.post_json("/api/v1/editing/generate", &body, Some(&token))
            .await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn chat_messages_older_than_30_days_go_even_from_a_session_in_use() {
    let app = spawn_app_with(SETTINGS).await;
    let (token, _) = app.login(61).await;
    grant(&app, 61, 5).await;
    let source = upload_editing(&app, &token).await;
    let first: Value = app
        .post_json(
            "/api/v1/editing/chat",
            &json!({"upload_id": source, "message": "an old wish"}),
            Some(&token),
        )
        .await
        .json()
        .await
        .unwrap();
    let session = first["session_id"].as_str().unwrap().to_owned();
    let res = app
        .post_json(
            "/api/v1/editing/chat",
            &json!({"session_id": session, "message": "a new wish"}),
            Some(&token),
        )
        .await;
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
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
    .bind::<diesel::sql_types::Uuid, _>(uuid::Uuid::parse_str(&session).unwrap())
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
        .filter(chat_sessions::session_id.eq(uuid::Uuid::parse_str(&session).unwrap()))
        .select(chat_sessions::messages)
        .first(&mut conn)
        .await
        .unwrap();
    let stored = stored.as_array().unwrap();
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert_eq!(stored[0]["content"], "a new wish");
    assert_eq!(stored[1]["role"], "assistant");
    let shown: Value = app
        .get(&format!("/api/v1/editing/sessions/{session}"), Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown["messages"].as_array().unwrap().len(), 2);
    assert!(!shown.to_string().contains("an old wish"));
}

#[tokio::test]
async fn a_blocked_user_can_still_export_and_erase_and_nothing_else() {
    const KEY: &str = "admin-key-for-the-privacy-tests-0123";
    let app = spawn_app_with(&[("ADMIN_API_KEY", KEY)]).await;
    let (token, _) = app.login(71).await;
    let res = app
        .client
        .post(app.url("/admin/users/71/block"))
        .header("X-Admin-API-Key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_problem(
        app.get("/api/v1/balance", Some(&token)).await,
        403,
        "user_blocked",
    )
    .await;
    assert_problem(
        app.get("/api/v1/generations", Some(&token)).await,
        403,
        "user_blocked",
    )
    .await;

    let res = app.get("/api/v1/me/export", Some(&token)).await;
    assert_eq!(res.status(), 200);
    let doc: Value = res.json().await.unwrap();
    assert_eq!(doc["user"]["id"], 71);
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

    let res = erase(&app, &token).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["erased"]["profile"], true);
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
