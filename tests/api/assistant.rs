//! The editing assistant end to end, against a fake OpenRouter that speaks the real format:
//! turns charged once and refunded once, what the model is sent (system prompt, the last ten
//! messages, the photo), bad answers, rate limits and outages, resets, retention, other users'
//! sessions, variants run as edits, and the sandbox assistant.

use std::time::Duration;

use atelier::db::ledger::{self, Cause};
use atelier::db::schema::{chat_sessions, chat_turns, credit_ledger, generations, uploads};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::fakes::openrouter::{
    API_KEY, COMPLETION_TOKENS, COST_MICROS, FakeOpenRouter, MODEL, Mode, PROMPT_TOKENS,
    last_user_text,
};
use crate::helpers::{
    GenerationEnvelope, NewUser, ServerEvent, Socket, TestApp, TestUser, TokenUsage, Upload,
    assert_problem, ok, spawn_app_with,
};

/// Paid turns only (no free actions), so balances show every charge and refund.
async fn app_with(fake: &FakeOpenRouter, extra: &[(&str, &str)]) -> TestApp {
    let mut env = vec![
        ("FREE_ACTIONS_PER_MONTH", "0"),
        ("OPENROUTER_API_KEY", API_KEY),
        ("OPENROUTER_BASE_URL", fake.base_url.as_str()),
        ("OPENROUTER_MODEL", MODEL),
        ("OPENROUTER_TIMEOUT_SECS", "5"),
        ("CHAT_TURN_TIMEOUT_SECS", "20"),
    ];
    env.extend_from_slice(extra);
    spawn_app_with(&env).await
}

fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 128]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

/// A 400×300 editing photo of `user`'s.
async fn upload_photo(user: &TestUser<'_>) -> Uuid {
    user.upload_editing_image(jpeg(400, 300)).await.id
}

/// The user's ledger reasons, oldest first.
async fn ledger_reasons(app: &TestApp, telegram_id: i64) -> Vec<String> {
    let uid = app.user_id(telegram_id).await;
    credit_ledger::table
        .filter(credit_ledger::user_id.eq(uid))
        .order(credit_ledger::id)
        .select(credit_ledger::reason)
        .load(&mut app.conn().await)
        .await
        .unwrap()
}

/// `POST /api/v1/editing/chat`, as sent (for the refusals).
async fn chat(user: &TestUser<'_>, body: &Value) -> reqwest::Response {
    user.post("/api/v1/editing/chat", body).await
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// The ledger afterwards: every balance is the sum of its movements and matches the newest
/// `balance_after`; every turn was charged once; failed turns, and only they, refunded once.
async fn assert_ledger_consistent(app: &TestApp) {
    let mut conn = app.conn().await;
    for (what, query) in [
        (
            "balances that are not the sum of their movements",
            "SELECT count(*) AS n FROM users u WHERE u.balance_credits <> \
               COALESCE((SELECT sum(delta) FROM credit_ledger l WHERE l.user_id = u.id), 0) \
               OR u.balance_credits <> COALESCE((SELECT balance_after FROM credit_ledger l \
                  WHERE l.user_id = u.id ORDER BY id DESC LIMIT 1), 0)",
        ),
        (
            "turns without exactly one charge",
            "SELECT count(*) AS n FROM chat_turns t WHERE (SELECT count(*) FROM credit_ledger l \
               WHERE l.idempotency_key = t.charge_key AND l.reason IN ('charge', 'free_allowance')) <> 1",
        ),
        (
            "turns refunded although not failed, or failed and not refunded",
            "SELECT count(*) AS n FROM chat_turns t WHERE (t.status = 'failed') <> EXISTS \
               (SELECT 1 FROM credit_ledger l WHERE l.idempotency_key = 'refund:' || t.charge_key)",
        ),
    ] {
        let found: Count = diesel::sql_query(query)
            .get_result(&mut conn)
            .await
            .unwrap();
        assert_eq!(found.n, 0, "{what}");
    }
}

/// (status, error_code, attempts, prompt_tokens, cost) of every turn, oldest first.
async fn turns(app: &TestApp) -> Vec<(String, Option<String>, i32, i64, i64)> {
    chat_turns::table
        .order(chat_turns::created_at)
        .select((
            chat_turns::status,
            chat_turns::error_code,
            chat_turns::attempts,
            chat_turns::prompt_tokens,
            chat_turns::cost_usd_micros,
        ))
        .load(&mut app.conn().await)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_first_turn_with_a_photo_is_charged_once_answered_and_pushed_to_the_socket() {
    let fake = FakeOpenRouter::start().await;
    let app = app_with(&fake, &[]).await;
    let anna = app.user().await;
    anna.grant(5).await;
    let photo = upload_photo(&anna).await;
    let mut ws = anna.socket().await.within(Duration::from_secs(10));
    assert_eq!(ws.next_event().await.kind, "snapshot");

    let body = json!({"upload_id": photo, "message": "  Make the\u{0} sky\n pink  "});
    let reply = anna.chat(&body).await;
    assert_eq!(reply.variants.len(), 3);
    assert!(reply.variants[0].starts_with("Make the sky pink"));
    assert_eq!(
        reply.usage,
        TokenUsage {
            prompt_tokens: PROMPT_TOKENS,
            completion_tokens: COMPLETION_TOKENS
        }
    );
    let session = reply.session_id;
    assert_eq!(anna.credits().await, 4);

    // What OpenRouter was sent: our key, the model, the schema, the system prompt, and the
    // cleaned message with the photo as an image part behind a signed link.
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].header("authorization"),
        Some(format!("Bearer {API_KEY}").as_str())
    );
    let sent = requests[0].json();
    assert_eq!(sent["model"], MODEL);
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["response_format"]["type"], "json_schema");
    assert_eq!(
        sent["response_format"]["json_schema"]["schema"]["properties"]["variants"]["minItems"],
        3
    );
    let messages = sent["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["role"], "system");
    assert!(
        messages[0]["content"]
            .as_str()
            .unwrap()
            .contains("Nano Banana")
    );
    assert_eq!(messages[1]["content"][0]["text"], "Make the sky pink");
    let image = messages[1]["content"][1]["image_url"]["url"]
        .as_str()
        .unwrap();
    assert!(
        image.contains("/media/u/") && image.contains("sig="),
        "{image}"
    );
    assert_eq!(app.client.get(image).send().await.unwrap().status(), 200);

    // The reply was streamed to the socket while it was written, then sent whole.
    let (deltas, event) = deltas_then_reply(&mut ws).await;
    assert_eq!(event.session_id, Some(session));
    assert_eq!(event.variants.as_ref(), Some(&reply.variants));
    assert_eq!(deltas.get(&1), Some(&reply.reply));

    // The history and the accounting, written together.
    let history = anna.session(session).await;
    let msgs = &history.messages;
    assert_eq!(msgs.len(), 2);
    assert_eq!(
        (msgs[0].role.as_str(), msgs[1].role.as_str()),
        ("user", "assistant")
    );
    assert!(msgs[0].image_url.as_ref().unwrap().contains("/media/u/"));
    assert_eq!(msgs[1].variants, reply.variants);
    assert_eq!(msgs[1].usage.as_ref().unwrap().prompt_tokens, PROMPT_TOKENS);
    assert_eq!(history.prompt_tokens, PROMPT_TOKENS);
    assert_eq!(history.upload_id, Some(photo));
    let (tokens, cost): (i64, i64) = chat_sessions::table
        .select((
            chat_sessions::completion_tokens,
            chat_sessions::cost_usd_micros,
        ))
        .first(&mut app.conn().await)
        .await
        .unwrap();
    assert_eq!((tokens, cost), (COMPLETION_TOKENS, COST_MICROS));
    assert_eq!(
        turns(&app).await,
        vec![("completed".into(), None, 1, PROMPT_TOKENS, COST_MICROS)]
    );
    assert_eq!(ledger_reasons(&app, 1).await, ["admin_grant", "charge"]);

    // The photo now lives as long as the session.
    let expires: chrono::DateTime<chrono::Utc> = uploads::table
        .select(uploads::expires_at)
        .first(&mut app.conn().await)
        .await
        .unwrap();
    assert!(expires > chrono::Utc::now() + chrono::Duration::days(29));

    let list = anna.sessions().await;
    assert_eq!(list.items[0].session_id, session);
    assert_eq!(list.items[0].message_count, 2);
    assert!(
        list.items[0]
            .last_message
            .as_ref()
            .unwrap()
            .starts_with("Three ways")
    );
    assert_ledger_consistent(&app).await;
}

/// `chat.delta` texts joined per attempt, up to the `chat.reply` that follows them.
async fn deltas_then_reply(
    ws: &mut Socket,
) -> (std::collections::BTreeMap<i64, String>, ServerEvent) {
    let mut deltas = std::collections::BTreeMap::<i64, String>::new();
    loop {
        let event = ws.next_event().await;
        match event.kind.as_str() {
            "chat.delta" => deltas
                .entry(event.attempt.unwrap())
                .or_default()
                .push_str(event.text.as_deref().unwrap()),
            "chat.reply" => return (deltas, event),
            other => panic!("unexpected event {other:?}: {event:?}"),
        }
    }
}

#[tokio::test]
async fn a_long_conversation_sends_only_the_last_ten_messages_and_the_photo_once() {
    let fake = FakeOpenRouter::start().await;
    // Twelve turns in a few seconds: more than the abuse limit lets one user send.
    let app = app_with(&fake, &[("RATE_LIMIT_CHAT_PER_USER", "off")]).await;
    let anna = app.user().await;
    anna.grant(20).await;
    let photo = upload_photo(&anna).await;
    let first = anna
        .chat(&json!({"upload_id": photo, "message": "turn 1"}))
        .await;
    let session = first.session_id;
    for turn in 2..=12 {
        anna.chat(&json!({"session_id": session, "message": format!("turn {turn}")}))
            .await;
    }
    let calls = fake.calls();
    assert_eq!(calls.len(), 12);
    // Turn 12: the system prompt, turns 7–11 (five user and five assistant messages), turn 12.
    let messages = calls[11]["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1 + 10 + 1);
    assert_eq!(messages[0]["role"], "system");
    assert_eq!(messages[1]["content"], "turn 7");
    assert_eq!(messages[2]["role"], "assistant");
    let earlier: Value = serde_json::from_str(messages[2]["content"].as_str().unwrap()).unwrap();
    assert_eq!(earlier["reply"], "Three ways to do \"turn 7\".");
    assert_eq!(earlier["variants"].as_array().unwrap().len(), 3);
    assert_eq!(messages[10]["role"], "assistant");
    assert_eq!(last_user_text(&calls[11]), "turn 12");
    // The session's photo rides on the newest message only, on every turn.
    assert!(messages[11]["content"][1]["image_url"]["url"].is_string());
    assert!(messages[1..11].iter().all(|m| m["content"].is_string()));
    // Turn 6 still saw turn 1.
    assert_eq!(calls[5]["messages"][1]["content"], "turn 1");

    assert_eq!(anna.credits().await, 20 - 12);
    let history = anna.session(session).await;
    assert_eq!(history.messages.len(), 24);
    assert_eq!(history.prompt_tokens, 12 * PROMPT_TOKENS);
    assert_ledger_consistent(&app).await;
}

#[tokio::test]
async fn a_malformed_answer_is_retried_once_then_the_turn_fails_and_is_refunded() {
    let fake = FakeOpenRouter::start().await;
    let app = app_with(&fake, &[]).await;
    let anna = app.user().await;
    anna.grant(3).await;

    // Bad once, then good: answered, both attempts accounted for.
    fake.push(Mode::Content(
        "Sure! Here are some ideas: pink sky".into(),
        "stop",
    ));
    let reply = anna.chat(&json!({"message": "pink sky"})).await;
    assert_eq!(reply.usage.prompt_tokens, 2 * PROMPT_TOKENS);
    assert_eq!(anna.credits().await, 2);

    // Two variants, then a cut-off answer: failed for good, nothing half saved, refunded.
    fake.push(Mode::Content(
        r#"{"reply":"ok","variants":["a","b"]}"#.into(),
        "stop",
    ));
    fake.push(Mode::Content(
        r#"{"reply":"ok","variants":["a","#.into(),
        "length",
    ));
    let res = chat(
        &anna,
        &json!({"message": "blue sky", "client_request_id": "bad"}),
    )
    .await;
    assert_problem(res, 502, "assistant_bad_reply").await;
    assert_eq!(fake.calls().len(), 4);
    assert_eq!(anna.credits().await, 2);
    assert_eq!(
        ledger_reasons(&app, 1).await,
        ["admin_grant", "charge", "charge", "refund"]
    );
    let t = turns(&app).await;
    assert_eq!(
        t[1],
        (
            "failed".into(),
            Some("assistant_bad_reply".into()),
            2,
            2 * PROMPT_TOKENS,
            2 * COST_MICROS
        )
    );
    // The failed first turn of a new session leaves no empty session behind.
    let list = anna.sessions().await;
    assert_eq!(list.items.len(), 1);

    // Neither JSON, nor another shape: every other way of answering badly is refused too.
    let session = reply.session_id;
    for (bad, finish) in [
        ("not json at all", "stop"),
        (r#"{"reply":"x","variants":"a, b, c"}"#, "stop"),
        (r#"{"reply":"","variants":["a","b","c"]}"#, "stop"),
        (r#"{"reply":"x","variants":["a","a","b"]}"#, "stop"),
    ] {
        fake.push(Mode::Content(bad.into(), finish));
        fake.push(Mode::Content(bad.into(), finish));
        let res = chat(&anna, &json!({"session_id": session, "message": "again"})).await;
        assert_problem(res, 502, "assistant_bad_reply").await;
    }
    assert_eq!(anna.credits().await, 2);
    let history = anna.session(session).await;
    assert_eq!(history.messages.len(), 2, "no half-saved turn");
    assert_ledger_consistent(&app).await;
}

#[tokio::test]
async fn a_429_then_success_answers_once_and_charges_once() {
    let fake = FakeOpenRouter::start().await;
    let app = app_with(&fake, &[]).await;
    let anna = app.user().await;
    anna.grant(2).await;
    fake.retry_after(1);
    fake.push(Mode::Error(
        429,
        "Rate limit exceeded: limit_rpm/anthropic/claude-haiku-4.5",
    ));
    fake.push(Mode::Error(503, "No instances available"));
    let started = std::time::Instant::now();
    let reply = anna.chat(&json!({"message": "warmer light"})).await;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was honoured"
    );
    assert_eq!(fake.calls().len(), 3);
    assert_eq!(
        reply.usage.prompt_tokens, PROMPT_TOKENS,
        "errors cost nothing"
    );
    assert_eq!(anna.credits().await, 1);
    assert_eq!(ledger_reasons(&app, 1).await, ["admin_grant", "charge"]);
    assert_eq!(turns(&app).await[0].2, 3, "three attempts recorded");
    assert_ledger_consistent(&app).await;
}

#[tokio::test]
async fn a_provider_failing_for_good_is_refunded_exactly_once() {
    let fake = FakeOpenRouter::start().await;
    // Without streaming: the error after the start comes as a JSON body at HTTP 200.
    let app = app_with(&fake, &[("OPENROUTER_STREAM", "false")]).await;
    let anna = app.user().await;
    anna.grant(1).await;
    fake.push(Mode::Error(500, "Internal Server Error"));
    fake.push(Mode::ErrorAfterStart(502, "Provider returned error"));
    fake.push(Mode::Raw(502, "<html><body>502 Bad Gateway</body></html>"));
    let send = || {
        anna.request(reqwest::Method::POST, "/api/v1/editing/chat")
            .header("Idempotency-Key", "turn-1")
            .json(&json!({"message": "remove the lamp post"}))
            .send()
    };
    let body = assert_problem(send().await.unwrap(), 503, "assistant_unavailable").await;
    assert!(body["detail"].as_str().unwrap().contains("refunded"));
    assert_eq!(fake.calls().len(), 3, "OPENROUTER_MAX_ATTEMPTS");
    assert!(fake.calls().iter().all(|c| c["stream"] == false));
    assert_eq!(anna.credits().await, 1);

    // The same key again: the same answer, no second charge, no second refund, no call.
    assert_problem(send().await.unwrap(), 503, "assistant_unavailable").await;
    assert_eq!(fake.calls().len(), 3);
    assert_eq!(
        ledger_reasons(&app, 1).await,
        ["admin_grant", "charge", "refund"]
    );
    let t = turns(&app).await;
    assert_eq!((t.len(), t[0].0.as_str(), t[0].2), (1, "failed", 3));
    assert_eq!(t[0].4, COST_MICROS, "the error after the start was billed");
    assert_ledger_consistent(&app).await;
}

#[tokio::test]
async fn a_stream_that_fails_midway_is_retried_and_the_socket_is_told_to_start_over() {
    let fake = FakeOpenRouter::start().await;
    let app = app_with(&fake, &[]).await;
    let anna = app.user().await;
    anna.grant(2).await;
    let mut ws = anna.socket().await.within(Duration::from_secs(10));
    assert_eq!(ws.next_event().await.kind, "snapshot");

    fake.push(Mode::ErrorAfterStart(502, "Provider returned error"));
    let reply = anna.chat(&json!({"message": "a red scarf"})).await;
    assert_eq!(fake.calls().len(), 2);
    let (deltas, event) = deltas_then_reply(&mut ws).await;
    let text = reply.reply.as_str();
    assert!(text.starts_with(&deltas[&1]), "{deltas:?}");
    assert!(
        deltas[&1].len() < text.len(),
        "the first attempt was cut off"
    );
    assert_eq!(deltas[&2], text, "the retry wrote it again from the start");
    assert_eq!(event.reply.as_deref(), Some(text));
    assert_eq!(
        reply.usage.prompt_tokens,
        2 * PROMPT_TOKENS,
        "the failed stream was billed"
    );

    // A stream that fails on every attempt: nothing half saved, refunded.
    for _ in 0..3 {
        fake.push(Mode::ErrorAfterStart(502, "Provider returned error"));
    }
    let res = chat(&anna, &json!({"message": "a blue scarf"})).await;
    assert_problem(res, 503, "assistant_unavailable").await;
    let (deltas, _) = loop {
        let event = ws.next_event().await;
        if event.kind == "chat.delta" && event.attempt == Some(3) {
            break (event, ());
        }
    };
    assert!(deltas.text.is_some());
    assert_eq!(anna.credits().await, 1);
    assert_ledger_consistent(&app).await;
}

#[tokio::test]
async fn our_account_problems_alert_the_operator_and_moderation_is_the_users_answer() {
    let fake = FakeOpenRouter::start().await;
    let app = app_with(&fake, &[]).await;
    let anna = app.user().await;
    anna.grant(1).await;
    // 402: out of OpenRouter credits. Final (no retry), refunded, and not the user's error.
    fake.push(Mode::Error(
        402,
        "Insufficient credits. Add more using https://openrouter.ai/credits",
    ));
    assert_problem(
        chat(&anna, &json!({"message": "sunset"})).await,
        503,
        "assistant_unavailable",
    )
    .await;
    assert_eq!(fake.calls().len(), 1);
    // 401: our key is wrong; same for the user.
    fake.push(Mode::Error(401, "User not found."));
    assert_problem(
        chat(&anna, &json!({"message": "sunset"})).await,
        503,
        "assistant_unavailable",
    )
    .await;
    // 403: moderation refused the input: the user is told.
    fake.push(Mode::Error(403, "Input flagged by moderation"));
    assert_problem(
        chat(&anna, &json!({"message": "sunset"})).await,
        422,
        "message_rejected",
    )
    .await;
    // 400: our request is wrong; final.
    fake.push(Mode::Error(400, "Invalid parameters"));
    assert_problem(
        chat(&anna, &json!({"message": "sunset"})).await,
        502,
        "assistant_failed",
    )
    .await;
    assert_eq!(fake.calls().len(), 4, "none of these is retried");
    assert_eq!(anna.credits().await, 1);
    assert_eq!(
        ledger_reasons(&app, 1).await,
        [
            "admin_grant",
            "charge",
            "refund",
            "charge",
            "refund",
            "charge",
            "refund",
            "charge",
            "refund"
        ]
    );
    // A wrong key never reaches the model: the fake itself answers 401.
    let wrong = spawn_app_with(&[
        ("FREE_ACTIONS_PER_MONTH", "1"),
        ("OPENROUTER_API_KEY", "sk-or-v1-wrong"),
        ("OPENROUTER_BASE_URL", fake.base_url.as_str()),
    ])
    .await;
    let w2 = wrong.user_with(NewUser::id(2)).await;
    assert_problem(
        chat(&w2, &json!({"message": "x"})).await,
        503,
        "assistant_unavailable",
    )
    .await;
    assert_eq!(
        w2.balance().await.free_actions_left,
        1,
        "the free action came back"
    );
    assert_ledger_consistent(&app).await;
    assert_ledger_consistent(&wrong).await;
}

#[tokio::test]
async fn reset_empties_the_history_but_keeps_the_session_and_its_photo() {
    let fake = FakeOpenRouter::start().await;
    let app = app_with(&fake, &[]).await;
    let anna = app.user().await;
    anna.grant(3).await;
    let photo = upload_photo(&anna).await;
    let r = anna
        .chat(&json!({"upload_id": photo, "message": "one"}))
        .await;
    let session = r.session_id;
    anna.chat(&json!({"session_id": session, "message": "two"}))
        .await;

    let after = anna.reset(session).await;
    assert!(after.messages.is_empty());
    assert_eq!(after.upload_id, Some(photo));
    assert!(after.image_url.unwrap().contains("/media/u/"));
    assert_eq!(after.prompt_tokens, 2 * PROMPT_TOKENS, "totals are kept");

    anna.chat(&json!({"session_id": session, "message": "three"}))
        .await;
    let last = fake.calls().pop().unwrap();
    let messages = last["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "no history after the reset");
    assert!(messages[1]["content"][1]["image_url"]["url"].is_string());
    assert_eq!(anna.credits().await, 0, "a reset is free");

    // A photo sent with a later message becomes the session's photo, once the turn is answered;
    // a turn that fails changes nothing.
    anna.grant(2).await;
    let second = upload_photo(&anna).await;
    fake.push(Mode::Error(400, "Invalid parameters"));
    let body = json!({"session_id": session, "upload_id": second, "message": "four"});
    assert_problem(chat(&anna, &body).await, 502, "assistant_failed").await;
    let s = anna.session(session).await;
    assert_eq!(s.upload_id, Some(photo));
    anna.chat(&body).await;
    let s = anna.session(session).await;
    assert_eq!(s.upload_id, Some(second));
    let messages = &s.messages;
    assert!(messages[0].image_url.is_none());
    assert!(
        messages[2]
            .image_url
            .as_ref()
            .unwrap()
            .contains("/media/u/")
    );
    let sent = fake.calls().pop().unwrap();
    let last = sent["messages"].as_array().unwrap().last().unwrap().clone();
    let path = |url: &str| url.split('?').next().unwrap().to_owned();
    let upload: Upload = ok(
        anna.get(&format!("/api/v1/uploads/{second}")).await,
        200,
        "upload",
    )
    .await;
    assert_eq!(
        path(last["content"][1]["image_url"]["url"].as_str().unwrap()),
        path(&upload.url),
        "the new photo was sent"
    );
    assert_ledger_consistent(&app).await;
}

#[tokio::test]
async fn another_users_session_is_a_404_everywhere_and_nothing_is_charged() {
    let fake = FakeOpenRouter::start().await;
    let app = app_with(&fake, &[]).await;
    let alice = app.user().await;
    let bob = app.user().await;
    alice.grant(2).await;
    bob.grant(2).await;
    let photo = upload_photo(&alice).await;
    let r = alice
        .chat(&json!({"upload_id": photo, "message": "mine"}))
        .await;
    let session = r.session_id;

    assert_problem(
        bob.get(&format!("/api/v1/editing/sessions/{session}"))
            .await,
        404,
        "not_found",
    )
    .await;
    assert_problem(
        chat(&bob, &json!({"session_id": session, "message": "theirs"})).await,
        404,
        "not_found",
    )
    .await;
    assert_problem(
        chat(&bob, &json!({"upload_id": photo, "message": "theirs"})).await,
        404,
        "not_found",
    )
    .await;
    assert_problem(
        bob.post("/api/v1/editing/reset", &json!({"session_id": session}))
            .await,
        404,
        "not_found",
    )
    .await;
    let generate = json!({"session_id": session, "variant_index": 0, "client_request_id": "g"});
    assert_problem(
        bob.post("/api/v1/editing/generate", &generate).await,
        404,
        "not_found",
    )
    .await;
    assert!(bob.sessions().await.items.is_empty());
    assert_eq!(bob.credits().await, 2);
    assert_eq!(fake.calls().len(), 1);
}

#[tokio::test]
async fn messages_are_checked_before_any_charge_and_keys_never_charge_twice() {
    let fake = FakeOpenRouter::start().await;
    let app = app_with(&fake, &[("CHAT_MESSAGE_MAX_CHARS", "50")]).await;
    let anna = app.user().await;
    anna.grant(2).await;
    assert_problem(
        chat(&anna, &json!({"message": "x".repeat(51)})).await,
        422,
        "message_too_long",
    )
    .await;
    assert_problem(
        chat(&anna, &json!({"message": " \u{7}\n\u{200b} "})).await,
        422,
        "empty_message",
    )
    .await;
    assert_problem(
        chat(&anna, &json!({"message": "x", "extra": 1})).await,
        422,
        "invalid_body",
    )
    .await;
    let res = anna
        .request(reqwest::Method::POST, "/api/v1/editing/chat")
        .header("content-type", "text/html")
        .body("<b>hi</b>")
        .send()
        .await
        .unwrap();
    assert_problem(res, 415, "unsupported_media_type").await;
    assert_eq!(anna.credits().await, 2);
    assert!(fake.calls().is_empty());

    // The same key while the first is still being answered, then after: one charge, one call.
    fake.push(Mode::Slow(Duration::from_millis(1500)));
    let send = || {
        anna.request(reqwest::Method::POST, "/api/v1/editing/chat")
            .header("Idempotency-Key", "k1")
            .json(&json!({"message": "a hat"}))
            .send()
    };
    let first = tokio::spawn(send());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_problem(send().await.unwrap(), 409, "turn_in_progress").await;
    let a: Value = first.await.unwrap().unwrap().json().await.unwrap();
    let b: Value = send().await.unwrap().json().await.unwrap();
    assert_eq!(a, b);
    assert_eq!(fake.calls().len(), 1);
    assert_eq!(anna.credits().await, 1);
    // Its JSON only, never HTML.
    let res = chat(&anna, &json!({"message": "<script>alert(1)</script>"})).await;
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    // Out of credits: 402 before the model is asked.
    // The two answers compared whole above, as JSON.
    let session = a["session_id"].as_str().unwrap();
    assert_problem(
        chat(&anna, &json!({"session_id": session, "message": "more"})).await,
        402,
        "insufficient_credits",
    )
    .await;
    assert_eq!(fake.calls().len(), 2);

    // Five requests with one key at once: one turn, one charge, one call; the others are told
    // it is in progress.
    anna.grant(1).await;
    fake.push(Mode::Slow(Duration::from_millis(800)));
    let racing = (0..5).map(|_| {
        anna.request(reqwest::Method::POST, "/api/v1/editing/chat")
            .header("Idempotency-Key", "race")
            .json(&json!({"message": "a scarf"}))
            .send()
    });
    let statuses: Vec<u16> = futures_util::future::join_all(racing)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        4,
        "{statuses:?}"
    );
    assert_eq!(fake.calls().len(), 3);
    assert_eq!(anna.credits().await, 0);
    assert_ledger_consistent(&app).await;
}

#[tokio::test]
async fn idle_sessions_are_deleted_with_their_photos_and_crashed_turns_are_refunded_once() {
    let fake = FakeOpenRouter::start().await;
    let app = app_with(&fake, &[]).await;
    let anna = app.user().await;
    anna.grant(3).await;
    let old_photo = upload_photo(&anna).await;
    let fresh_photo = upload_photo(&anna).await;
    let old = anna
        .chat(&json!({"upload_id": old_photo, "message": "old"}))
        .await;
    let fresh = anna
        .chat(&json!({"upload_id": fresh_photo, "message": "new"}))
        .await;
    let old_id = old.session_id;
    let mut conn = app.conn().await;
    diesel::update(chat_sessions::table.filter(chat_sessions::session_id.eq(old_id)))
        .set(chat_sessions::updated_at.eq(chrono::Utc::now() - chrono::Duration::days(31)))
        .execute(&mut conn)
        .await
        .unwrap();
    let key: String = uploads::table
        .filter(uploads::id.eq(old_photo))
        .select(uploads::storage_key)
        .first(&mut conn)
        .await
        .unwrap();
    assert!(app.state.storage.get(&key).await.unwrap().is_some());

    let swept = atelier::jobs::sweeper::sweep_chat_sessions(&app.state, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(swept, 1);
    assert_problem(
        anna.get(&format!("/api/v1/editing/sessions/{old_id}"))
            .await,
        404,
        "not_found",
    )
    .await;
    assert!(
        app.state.storage.get(&key).await.unwrap().is_none(),
        "photo erased"
    );
    assert_eq!(
        anna.get(&format!("/api/v1/uploads/{old_photo}"))
            .await
            .status(),
        404
    );
    let kept = fresh.session_id;
    assert_eq!(
        anna.get(&format!("/api/v1/editing/sessions/{kept}"))
            .await
            .status(),
        200
    );
    assert_eq!(
        anna.get(&format!("/api/v1/uploads/{fresh_photo}"))
            .await
            .status(),
        200
    );
    // The turns' figures outlive the session.
    let totals = atelier::db::chat_turns::usage_totals(
        &mut conn,
        chrono::Utc::now() - chrono::Duration::hours(1),
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!((totals.turns, totals.completed), (2, 2));
    assert_eq!(totals.cost_usd_micros, 2 * COST_MICROS);
    assert_eq!(totals.prompt_tokens, 2 * PROMPT_TOKENS);

    // A crash between the charge and the answer: the turn stays pending, charged. The sweeper
    // refunds it once it is older than twice the turn timeout, and only once.
    let uid = app.user_id(1).await;
    let turn_id = uuid::Uuid::new_v4();
    let charge_key = format!("chat:{uid}:crashed");
    ledger::charge(
        &mut conn,
        uid,
        1,
        0,
        chrono::Utc::now().date_naive(),
        Cause::new("chat_turn", &turn_id.to_string(), &charge_key),
    )
    .await
    .unwrap();
    diesel::insert_into(chat_turns::table)
        .values((
            chat_turns::id.eq(turn_id),
            chat_turns::user_id.eq(uid),
            chat_turns::client_request_id.eq("crashed"),
            chat_turns::charge_key.eq(&charge_key),
            chat_turns::credits_spent.eq(1_i64),
            chat_turns::paid_with.eq("credits"),
            chat_turns::model.eq(MODEL),
            chat_turns::created_at.eq(chrono::Utc::now() - chrono::Duration::seconds(30)),
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(anna.credits().await, 0);
    let early = atelier::jobs::sweeper::refund_abandoned_turns(&app.state, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(early, 0, "not before twice CHAT_TURN_TIMEOUT_SECS (40 s)");
    let later = chrono::Utc::now() + chrono::Duration::seconds(60);
    for expected in [1, 0] {
        let n = atelier::jobs::sweeper::refund_abandoned_turns(&app.state, later)
            .await
            .unwrap();
        assert_eq!(n, expected);
    }
    assert_eq!(anna.credits().await, 1);
    let refunds = ledger_reasons(&app, 1)
        .await
        .into_iter()
        .filter(|r| r == "refund")
        .count();
    assert_eq!(refunds, 1);
    // Its key now answers as a failed turn, never as a new one.
    let res = anna
        .request(reqwest::Method::POST, "/api/v1/editing/chat")
        .header("Idempotency-Key", "crashed")
        .json(&json!({"message": "x"}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 503, "assistant_unavailable").await;
    assert_eq!(anna.credits().await, 1);
    assert_ledger_consistent(&app).await;
}

#[tokio::test]
async fn a_proposed_variant_runs_as_an_edit_of_the_sessions_photo() {
    let fake = FakeOpenRouter::start().await;
    let app = app_with(&fake, &[]).await;
    let anna = app.user().await;
    anna.grant(5).await;
    let photo = upload_photo(&anna).await;
    let r = anna
        .chat(&json!({"upload_id": photo, "message": "neon sign"}))
        .await;
    let session = r.session_id;

    let body = json!({"session_id": session, "variant_index": 1, "client_request_id": "v1"});
    let g = anna.edit(&body).await;
    assert_eq!(g.prompt.as_ref(), Some(&r.variants[1]));
    assert_eq!(g.source_upload_id, Some(photo));
    assert_eq!(g.credits_spent, 1);
    let linked: Option<uuid::Uuid> = generations::table
        .select(generations::chat_session_id)
        .first(&mut app.conn().await)
        .await
        .unwrap();
    assert_eq!(linked, Some(session));
    assert_eq!(anna.credits().await, 5 - 2);

    let bad = |body: Value| {
        let anna = &anna;
        async move { anna.post("/api/v1/editing/generate", &body).await }
    };
    for body in [
        json!({"session_id": session, "variant_index": 1, "prompt": "x", "client_request_id": "b1"}),
        json!({"variant_index": 1, "upload_id": photo, "client_request_id": "b2"}),
        json!({"session_id": session, "client_request_id": "b3"}),
        json!({"client_request_id": "b4", "prompt": "x"}),
    ] {
        assert_problem(bad(body).await, 422, "invalid_body").await;
    }
    for index in [3, -1] {
        let body =
            json!({"session_id": session, "variant_index": index, "client_request_id": "b5"});
        assert_problem(bad(body).await, 422, "invalid_variant_index").await;
    }
    let other = upload_photo(&anna).await;
    let body = json!({"session_id": session, "variant_index": 0, "upload_id": other, "client_request_id": "b6"});
    assert_problem(bad(body).await, 422, "wrong_upload").await;
    // A prompt of one's own, within the session, on its photo.
    let body = json!({"session_id": session, "prompt": "only the sign, in blue", "client_request_id": "own"});
    let g: GenerationEnvelope = bad(body).await.json().await.unwrap();
    assert_eq!(g.generation.source_upload_id, Some(photo));

    anna.reset(session).await;
    let body = json!({"session_id": session, "variant_index": 0, "client_request_id": "b7"});
    assert_problem(bad(body).await, 422, "no_variants").await;
    assert_eq!(anna.credits().await, 5 - 3, "refusals cost nothing");
}

/// A user whose Telegram language is `lang`.
fn speaking(telegram_id: i64, lang: &str) -> NewUser {
    NewUser::id(telegram_id)
        .first_name("Аня")
        .language(lang)
        .field("username", Value::Null)
}

#[tokio::test]
async fn the_assistant_answers_in_the_users_language_and_the_sandbox_needs_no_key() {
    let fake = FakeOpenRouter::start().await;
    let app = app_with(&fake, &[]).await;
    let anna = app.user_with(speaking(5, "ru")).await;
    anna.grant(1).await;
    anna.chat(&json!({"message": "сделай небо розовым"})).await;
    let system = fake.calls()[0]["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(system.starts_with("Ты ассистент"), "{system}");

    // No key: the sandbox assistant answers, deterministically, in the user's language, and the
    // turn is charged through the same ledger (here a free action).
    let sandbox = spawn_app_with(&[("FREE_ACTIONS_PER_MONTH", "1")]).await;
    let anya = sandbox.user_with(speaking(6, "ru-RU")).await;
    let photo = upload_photo(&anya).await;
    let a = anya
        .chat(&json!({"upload_id": photo, "message": "небо розовое"}))
        .await;
    assert!(a.reply.starts_with("Вот три варианта"));
    assert_eq!(a.variants.len(), 3);
    assert!(a.variants[0].starts_with("небо розовое"));
    assert_eq!(anya.balance().await.free_actions_left, 0);
    assert_problem(
        chat(
            &anya,
            &json!({"session_id": a.session_id, "message": "ещё"}),
        )
        .await,
        402,
        "insufficient_credits",
    )
    .await;
    let model: String = chat_turns::table
        .select(chat_turns::model)
        .first(&mut sandbox.conn().await)
        .await
        .unwrap();
    assert_eq!(model, "sandbox");
}

/// Waits until a turn is waiting for the model; returns its id.
async fn pending_turn(app: &TestApp) -> uuid::Uuid {
    for _ in 0..250 {
        let found: Option<uuid::Uuid> = chat_turns::table
            .filter(chat_turns::status.eq("pending"))
            .select(chat_turns::id)
            .first(&mut app.conn().await)
            .await
            .optional()
            .unwrap();
        if let Some(id) = found {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no turn became pending");
}

async fn session_photo(app: &TestApp, session: Uuid) -> Option<Uuid> {
    chat_sessions::table
        .filter(chat_sessions::session_id.eq(session))
        .select(chat_sessions::upload_id)
        .first(&mut app.conn().await)
        .await
        .unwrap()
}

#[tokio::test]
async fn an_answer_that_comes_too_late_writes_nothing_and_its_turn_is_refunded_once() {
    let fake = FakeOpenRouter::start().await;
    let app = app_with(&fake, &[]).await;
    let anna = app.user().await;
    anna.grant(3).await;
    let first_photo = upload_photo(&anna).await;
    let first = anna
        .chat(&json!({"upload_id": first_photo, "message": "a warmer light"}))
        .await;
    let session = first.session_id;

    // The sweeper gives up on a turn (refunding it) while the model is still answering it: the
    // late answer changes nothing, its new photo included, and is not refunded twice.
    let second_photo = upload_photo(&anna).await;
    fake.push(Mode::Slow(Duration::from_millis(800)));
    let give_up = async {
        pending_turn(&app).await;
        let later = chrono::Utc::now() + chrono::Duration::seconds(60);
        let n = atelier::jobs::sweeper::refund_abandoned_turns(&app.state, later)
            .await
            .unwrap();
        assert_eq!(n, 1);
    };
    let body = json!({"session_id": session, "upload_id": second_photo, "message": "cooler"});
    let (res, ()) = tokio::join!(chat(&anna, &body), give_up);
    assert_problem(res, 503, "assistant_unavailable").await;
    assert_eq!(anna.session(session).await.messages.len(), 2);
    assert_eq!(session_photo(&app, session).await, Some(first_photo));
    assert_eq!(anna.credits().await, 2);

    // The next answer is written whole, and the photo sent with it becomes the session's.
    anna.chat(&json!({"session_id": session, "upload_id": second_photo, "message": "cooler"}))
        .await;
    assert_eq!(anna.session(session).await.messages.len(), 4);
    assert_eq!(session_photo(&app, session).await, Some(second_photo));
    assert_eq!(anna.credits().await, 1);

    // The session is deleted (as erasure deletes it) while the model answers: nothing is
    // written, the turn is refunded, and the client hears the session is gone.
    fake.push(Mode::Slow(Duration::from_millis(800)));
    let delete = async {
        pending_turn(&app).await;
        diesel::delete(chat_sessions::table.filter(chat_sessions::session_id.eq(session)))
            .execute(&mut app.conn().await)
            .await
            .unwrap();
    };
    let body = json!({"session_id": session, "message": "and a hat"});
    let (res, ()) = tokio::join!(chat(&anna, &body), delete);
    assert_problem(res, 404, "not_found").await;
    assert_eq!(anna.credits().await, 1);
    assert_eq!(
        turns(&app)
            .await
            .into_iter()
            .map(|t| (t.0, t.1))
            .collect::<Vec<_>>(),
        [
            ("completed".to_owned(), None),
            ("failed".to_owned(), Some("turn_abandoned".to_owned())),
            ("completed".to_owned(), None),
            ("failed".to_owned(), Some("session_deleted".to_owned())),
        ]
    );
    assert_ledger_consistent(&app).await;
}
