//! An idempotency key belongs to the request it first came with: a retry of that request gets
//! the first result, the same key with another request is refused with 422
//! `idempotency_key_reused` and changes nothing. For generations, chat turns and admin credit
//! moves.

use serde_json::{Value, json};

use crate::fakes::openrouter::{API_KEY, FakeOpenRouter, MODEL};
use crate::helpers::{GenerationEnvelope, NewUser, TestApp, assert_problem, ok, spawn_app_with};

async fn post_keyed(
    app: &TestApp,
    path: &str,
    token: &str,
    key: &str,
    body: &Value,
) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn generation_id(res: reqwest::Response) -> uuid::Uuid {
    ok::<GenerationEnvelope>(res, 202, "generate")
        .await
        .generation
        .id
}

#[tokio::test]
async fn a_generation_key_reused_with_another_request_is_refused() {
    let app = spawn_app_with(&[
        ("FREE_ACTIONS_PER_MONTH", "0"),
        ("SANDBOX_GENERATION_MS", "300"),
        ("MAX_ACTIVE_TASKS_PER_USER", "10"),
    ])
    .await;
    let anna = app.user().await;
    let token = &anna.token;
    anna.grant(20).await;
    let upload = anna.upload_fitting().await;
    let (person, item) = (upload.person.id, upload.item.id);
    let fit = "/api/v1/fitting/generate";
    let edit = "/api/v1/editing/generate";

    let first = json!({"person_upload_id": person, "item_upload_id": item, "zone": "top"});
    let id = generation_id(post_keyed(&app, fit, token, "fit-1", &first).await).await;
    // The same request again, the key in the body this time and the fields in another order.
    let again = json!({"zone": "top", "item_upload_id": item, "client_request_id": "fit-1", "person_upload_id": person});
    let res = app.post_json(fit, &again, Some(token)).await;
    assert_eq!(generation_id(res).await, id);
    assert_eq!(anna.credits().await, 18);

    // Another zone, swapped photos, or an edit, under the same key: refused, nothing charged.
    let other_zone = json!({"person_upload_id": person, "item_upload_id": item, "zone": "shoes"});
    let res = post_keyed(&app, fit, token, "fit-1", &other_zone).await;
    assert_problem(res, 422, "idempotency_key_reused").await;
    let edit_body = json!({"upload_id": person, "prompt": "warmer"});
    let res = post_keyed(&app, edit, token, "fit-1", &edit_body).await;
    assert_problem(res, 422, "idempotency_key_reused").await;
    assert_eq!(anna.credits().await, 18);

    // Edits: the prompt is part of the request (after cleaning: an invisible difference is none).
    let upload = anna.upload_editing().await.id;
    let warm = json!({"upload_id": upload, "prompt": "warmer light"});
    let id = generation_id(post_keyed(&app, edit, token, "edit-1", &warm).await).await;
    let warm_again = json!({"upload_id": upload, "prompt": "warmer light\u{200b}"});
    let res = post_keyed(&app, edit, token, "edit-1", &warm_again).await;
    assert_eq!(generation_id(res).await, id);
    let cold = json!({"upload_id": upload, "prompt": "colder light"});
    let res = post_keyed(&app, edit, token, "edit-1", &cold).await;
    assert_problem(res, 422, "idempotency_key_reused").await;
    assert_eq!(anna.credits().await, 17);

    // At once, two different requests under one new key: one generation; every request like
    // the winner gets it, every other is refused (whether it lost the race or came after).
    let bodies = [
        json!({"upload_id": upload, "prompt": "a"}),
        json!({"upload_id": upload, "prompt": "b"}),
    ];
    let racing = (0..6).map(|i| post_keyed(&app, edit, token, "race", &bodies[i % 2]));
    let answers = futures_util::future::join_all(racing).await;
    let mut outcomes = Vec::new();
    for (i, res) in answers.into_iter().enumerate() {
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap();
        outcomes.push((i % 2, status, body));
    }
    let (winner, _, won) = outcomes
        .iter()
        .find(|(_, status, _)| *status == 202)
        .expect("one request wins");
    for (kind, status, body) in &outcomes {
        if kind == winner {
            assert_eq!(*status, 202, "{body}");
            assert_eq!(body["generation"]["id"], won["generation"]["id"]);
        } else {
            assert_eq!(*status, 422, "{body}");
            assert_eq!(body["code"], "idempotency_key_reused");
        }
    }
    assert_eq!(anna.credits().await, 16);
}

#[tokio::test]
async fn a_chat_key_reused_with_another_message_is_refused() {
    let fake = FakeOpenRouter::start().await;
    let app = spawn_app_with(&[
        ("FREE_ACTIONS_PER_MONTH", "0"),
        ("OPENROUTER_API_KEY", API_KEY),
        ("OPENROUTER_BASE_URL", fake.base_url.as_str()),
        ("OPENROUTER_MODEL", MODEL),
        ("OPENROUTER_TIMEOUT_SECS", "5"),
        ("CHAT_TURN_TIMEOUT_SECS", "20"),
    ])
    .await;
    let anna = app.user().await;
    let token = &anna.token;
    anna.grant(5).await;
    let chat = "/api/v1/editing/chat";
    let res = post_keyed(&app, chat, token, "t1", &json!({"message": "a red hat"})).await;
    assert_eq!(res.status(), 200);
    let first: Value = res.json().await.unwrap();
    let again = json!({"message": " a red hat\n", "client_request_id": "t1"});
    let res = app.post_json(chat, &again, Some(token)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap(), first);
    assert_eq!(fake.calls().len(), 1);

    let session = first["session_id"].as_str().unwrap();
    for other in [
        json!({"message": "a blue hat"}),
        json!({"message": "a red hat", "session_id": session}),
    ] {
        let res = post_keyed(&app, chat, token, "t1", &other).await;
        assert_problem(res, 422, "idempotency_key_reused").await;
    }
    assert_eq!(fake.calls().len(), 1);
    assert_eq!(anna.credits().await, 4);
}

#[tokio::test]
async fn an_admin_credit_key_reused_with_another_move_is_refused() {
    const KEY: &str = "admin-key-for-the-tests-0123456789";
    let app = spawn_app_with(&[("ADMIN_API_KEY", KEY)]).await;
    let anna = app.user_with(NewUser::id(7)).await;
    let send = |body: Value| {
        app.client
            .post(app.url("/admin/users/7/credits"))
            .header("X-Admin-API-Key", KEY)
            .header("Idempotency-Key", "gift-1")
            .json(&body)
            .send()
    };
    let res = send(json!({"amount": 10, "reason": "sorry for the outage"}))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let first: Value = res.json().await.unwrap();
    assert_eq!(first["replayed"], false);
    let res = send(json!({"reason": "sorry for the outage", "amount": 10}))
        .await
        .unwrap();
    let again: Value = res.json().await.unwrap();
    assert_eq!(again["replayed"], true);
    assert_eq!(again["entry"], first["entry"]);

    for other in [
        json!({"amount": 100, "reason": "sorry for the outage"}),
        json!({"amount": -10, "reason": "sorry for the outage"}),
        json!({"amount": 10, "reason": "another reason"}),
    ] {
        assert_problem(send(other).await.unwrap(), 422, "idempotency_key_reused").await;
    }
    assert_eq!(anna.credits().await - 10, base(&app, 7).await);
}

/// The balance a user has before any admin move (sign-up bonuses, if any).
async fn base(app: &TestApp, telegram_id: i64) -> i64 {
    use atelier::db::schema::credit_ledger;
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    let uid = app.user_id(telegram_id).await;
    let deltas: Vec<i64> = credit_ledger::table
        .filter(credit_ledger::user_id.eq(uid))
        .filter(credit_ledger::reason.ne("admin_grant"))
        .select(credit_ledger::delta)
        .load(&mut app.conn().await)
        .await
        .unwrap();
    deltas.iter().sum()
}
