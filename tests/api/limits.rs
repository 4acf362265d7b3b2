//! Abuse limits: sliding windows in Redis shared by every replica, answered with 429
//! `rate_limited` and a truthful `Retry-After`, recovering when the window moves on, and failing
//! open (with a metric) when Redis is gone.

use std::time::Duration;

use image::{DynamicImage, ImageFormat, RgbImage};
use reqwest::multipart::{Form, Part};
use serde_json::json;

use crate::helpers::{NewUser, TestApp, assert_problem, init_data, spawn_app_with};

async fn login_status(app: &TestApp, init_data: &str) -> reqwest::Response {
    app.post_json(
        "/api/v1/auth/telegram",
        &json!({ "init_data": init_data }),
        None,
    )
    .await
}

fn retry_after(res: &reqwest::Response) -> u64 {
    res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn logins_per_address_are_limited_and_the_window_slides_on() {
    let app = spawn_app_with(&[("RATE_LIMIT_LOGIN_PER_IP", "3/2s")]).await;
    for id in 1..=3 {
        assert_eq!(login_status(&app, &init_data(id)).await.status(), 200);
    }
    let res = login_status(&app, &init_data(4)).await;
    let wait = retry_after(&res);
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    assert_problem(res, 429, "rate_limited").await;
    // A second replica shares the window: it lives in Redis, not in the process.
    let other = crate::helpers::spawn_replica(&app, &[("RATE_LIMIT_LOGIN_PER_IP", "3/2s")]).await;
    assert_problem(
        login_status(&other, &init_data(4)).await,
        429,
        "rate_limited",
    )
    .await;

    tokio::time::sleep(Duration::from_secs(wait)).await;
    // Redis forgetting the script (a restart, SCRIPT FLUSH) changes nothing: it is sent again.
    let mut redis = app.state.redis.get().await.unwrap();
    let _: () = deadpool_redis::redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(login_status(&app, &init_data(4)).await.status(), 200);
}

#[tokio::test]
async fn failed_logins_lock_the_address_out_for_a_while() {
    let app = spawn_app_with(&[("RATE_LIMIT_LOGIN_FAILURES_PER_IP", "2/2s")]).await;
    let forged = init_data(7).replace("hash=", "hash=00");
    for _ in 0..2 {
        assert_problem(login_status(&app, &forged).await, 401, "invalid_init_data").await;
    }
    // Even a valid login waits now, and the refusal counts as no new failure.
    let res = login_status(&app, &init_data(7)).await;
    let wait = retry_after(&res);
    assert_problem(res, 429, "rate_limited").await;
    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_eq!(login_status(&app, &init_data(7)).await.status(), 200);
    // Successful logins are not failures: many pass.
    for _ in 0..3 {
        assert_eq!(login_status(&app, &init_data(7)).await.status(), 200);
    }
}

#[tokio::test]
async fn behind_our_proxy_each_client_has_its_own_login_limits() {
    // The tests connect from 127.0.0.1: here it is our proxy.
    let app = spawn_app_with(&[
        ("TRUSTED_PROXIES", "127.0.0.1/32"),
        ("RATE_LIMIT_LOGIN_FAILURES_PER_IP", "2/1m"),
    ])
    .await;
    let client = reqwest::Client::new();
    // Our proxy appends the address it saw; what the client wrote before it proves nothing.
    let login = |forwarded: &'static str, init_data: String| {
        client
            .post(app.url("/api/v1/auth/telegram"))
            .header("X-Forwarded-For", forwarded)
            .json(&json!({ "init_data": init_data }))
            .send()
    };
    let forged = init_data(8).replace("hash=", "hash=00");
    for _ in 0..2 {
        let res = login("198.51.100.1, 203.0.113.5", forged.clone())
            .await
            .unwrap();
        assert_problem(res, 401, "invalid_init_data").await;
    }
    let res = login("198.51.100.2, 203.0.113.5", init_data(8))
        .await
        .unwrap();
    assert_problem(res, 429, "rate_limited").await;
    // Everyone else behind the same proxy still logs in.
    let res = login("203.0.113.6", init_data(9)).await.unwrap();
    assert_eq!(res.status(), 200);
    // So does a request that did not come through the proxy: it is keyed by its own peer.
    assert_eq!(login_status(&app, &init_data(9)).await.status(), 200);
}

#[tokio::test]
async fn forwarded_for_from_a_peer_that_is_not_our_proxy_is_ignored() {
    // Our proxies are elsewhere: 127.0.0.1, where the tests connect from, is a client.
    let app = spawn_app_with(&[
        ("TRUSTED_PROXIES", "10.0.0.0/8"),
        ("RATE_LIMIT_LOGIN_FAILURES_PER_IP", "2/1m"),
    ])
    .await;
    let client = reqwest::Client::new();
    let login = |forwarded: String, init_data: String| {
        client
            .post(app.url("/api/v1/auth/telegram"))
            .header("X-Forwarded-For", forwarded)
            .json(&json!({ "init_data": init_data }))
            .send()
    };
    let forged = init_data(8).replace("hash=", "hash=00");
    for n in 1..=2 {
        let res = login(format!("203.0.113.{n}"), forged.clone())
            .await
            .unwrap();
        assert_problem(res, 401, "invalid_init_data").await;
    }
    // A new address in the header every time does not buy new attempts.
    let res = login("203.0.113.3".into(), init_data(8)).await.unwrap();
    assert_problem(res, 429, "rate_limited").await;
}

fn jpeg() -> Vec<u8> {
    let img = RgbImage::from_fn(320, 320, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(img)
        .write_to(&mut out, ImageFormat::Jpeg)
        .unwrap();
    out.into_inner()
}

async fn upload(app: &TestApp, token: &str) -> reqwest::Response {
    let part = Part::bytes(jpeg())
        .file_name("e.jpg")
        .mime_str("image/jpeg")
        .unwrap();
    app.client
        .post(app.url("/api/v1/editing/upload"))
        .bearer_auth(token)
        .multipart(Form::new().part("image", part))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn uploads_per_user_are_limited_per_user() {
    let app = spawn_app_with(&[("RATE_LIMIT_UPLOADS_PER_USER", "2/1h")]).await;
    let (alice, _) = app.login(11).await;
    let (bob, _) = app.login(12).await;
    for _ in 0..2 {
        assert_eq!(upload(&app, &alice).await.status(), 201);
    }
    let res = upload(&app, &alice).await;
    let wait = retry_after(&res);
    assert!((3500..=3600).contains(&wait), "Retry-After {wait}");
    assert_problem(res, 429, "rate_limited").await;
    // Another user has a window of their own.
    assert_eq!(upload(&app, &bob).await.status(), 201);
}

#[tokio::test]
async fn chat_turns_per_user_are_limited() {
    let app = spawn_app_with(&[("RATE_LIMIT_CHAT_PER_USER", "2/1m")]).await;
    let anna = app.user_with(NewUser::id(13)).await;
    let token = anna.token.clone();
    let source = anna.upload_editing().await.id;
    let turn = |message: &'static str| {
        let body = json!({"upload_id": source, "message": message});
        let app = &app;
        let token = &token;
        async move {
            app.post_json("/api/v1/editing/chat", &body, Some(token))
                .await
        }
    };
    assert_eq!(turn("warmer").await.status(), 200);
    assert_eq!(turn("brighter").await.status(), 200);
    let res = turn("sharper").await;
    assert!((1..=60).contains(&retry_after(&res)));
    assert_problem(res, 429, "rate_limited").await;
}

#[tokio::test]
async fn without_redis_limits_fail_open_and_say_so() {
    let app = spawn_app_with(&[
        ("REDIS_URL", "redis://127.0.0.1:1"),
        ("RATE_LIMIT_LOGIN_PER_IP", "1/1h"),
    ])
    .await;
    for id in 1..=3 {
        let res = login_status(&app, &init_data(id)).await;
        assert_eq!(res.status(), 200, "{:?}", res.text().await);
    }
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains(r#"rate_limit_unavailable_total{limit="login"}"#),
        "{metrics}"
    );
    // Ready but degraded: every replica is in the same state, none may be pulled for it.
    let ready = app.get("/ready", None).await;
    assert_eq!(ready.status(), 200);
    assert_eq!(
        ready.json::<serde_json::Value>().await.unwrap()["status"],
        "degraded"
    );
    // Nothing durable depends on Redis: uploads and generations go on (events are lost, the
    // generation's state is in PostgreSQL).
    let anna = app.user_with(NewUser::id(9)).await;
    let token = anna.token.clone();
    assert_eq!(upload(&app, &token).await.status(), 201);
    let source = anna.upload_editing().await.id;
    let body = json!({"upload_id": source, "prompt": "brighter", "client_request_id": "r"});
    let res = app
        .post_json("/api/v1/editing/generate", &body, Some(&token))
        .await;
    assert_eq!(res.status(), 202);
    let list: serde_json::Value = app
        .get("/api/v1/generations", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"][0]["status"], "queued");
}
