//! Privacy: erasure at once (every table and the storage checked afterwards, the money kept and
//! consistent) and the export of everything held about a user.

use atelier::db::ledger;
use atelier::db::schema::{generations, payments, uploads, users};
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

    // The old token leads nowhere; the next login starts afresh.
    assert_eq!(app.get("/api/v1/me", Some(&token)).await.status(), 401);
    let (fresh, user) = app.login(4242).await;
    assert_eq!(user["user"]["id"], 4242);
    let b = balance(&app, &fresh).await;
    assert_eq!(
        (
            b["balance_credits"].as_i64(),
            b["free_actions_left"].as_i64()
        ),
        (Some(0), Some(1))
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
