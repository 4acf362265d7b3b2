//! The demo page (`/`, `/demo/*`) and its dev-only initData signer (`POST /dev/init-data`):
//! served outside production, 404 in production; what the signer signs logs in.

use atelier::config::DEV_BOT_TOKEN;
use serde_json::{Value, json};

use crate::helpers::{PRODUCTION, TestApp, assert_problem, spawn_app, spawn_app_with};

async fn sign(app: &TestApp, body: &Value) -> reqwest::Response {
    app.post_json("/dev/init-data", body, None).await
}

async fn signed(app: &TestApp, body: &Value) -> String {
    let res = sign(app, body).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    body["init_data"].as_str().unwrap().to_owned()
}

async fn login(app: &TestApp, init_data: &str) -> Value {
    let res = app
        .post_json(
            "/api/v1/auth/telegram",
            &json!({"init_data": init_data}),
            None,
        )
        .await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

fn header<'a>(res: &'a reqwest::Response, name: &str) -> &'a str {
    res.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn the_demo_page_is_served_outside_production() {
    let app = spawn_app_with(&[("PUBLIC_BASE_URL", "https://media.example.com:8443/api")]).await;
    let res = app.get("/", None).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "content-type"), "text/html; charset=utf-8");
    let csp = header(&res, "content-security-policy");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    // Result images come from signed links on PUBLIC_BASE_URL's origin.
    assert!(
        csp.contains("img-src 'self' blob: https://media.example.com:8443;"),
        "{csp}"
    );
    let page = res.text().await.unwrap();
    assert!(page.contains(r#"<script src="/demo/app.js" defer></script>"#));
    assert!(page.contains(r#"href="/demo/style.css""#));

    let res = app.get("/demo/app.js", None).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        header(&res, "content-type"),
        "text/javascript; charset=utf-8"
    );
    let script = res.text().await.unwrap();
    for call in [
        "/dev/init-data",
        "/api/v1/auth/telegram",
        "/api/v1/ws",
        "/api/v1/fitting/generate",
        "/api/v1/editing/chat",
        "/api/v1/payments/create",
        "/api/v1/referrals",
    ] {
        assert!(script.contains(call), "app.js calls {call}");
    }
    let res = app.get("/demo/style.css", None).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "content-type"), "text/css; charset=utf-8");
    assert_problem(app.get("/demo/other.js", None).await, 404, "not_found").await;
}

#[tokio::test]
async fn production_serves_neither_the_page_nor_the_signer() {
    let app = spawn_app_with(PRODUCTION).await;
    assert!(app.state.settings.is_production());
    for path in ["/", "/demo/app.js", "/demo/style.css"] {
        assert_problem(app.get(path, None).await, 404, "not_found").await;
    }
    let res = sign(&app, &json!({"user_id": 42, "first_name": "Anna"})).await;
    assert_problem(res, 404, "not_found").await;
    // The API itself is there.
    assert_eq!(app.get("/health", None).await.status(), 200);
}

/// An app with the development bot token, the only one the signer signs with.
async fn dev_app() -> TestApp {
    spawn_app_with(&[("TELEGRAM_BOT_TOKEN", DEV_BOT_TOKEN)]).await
}

#[tokio::test]
async fn the_dev_signer_signs_initdata_that_logs_in() {
    let app = dev_app().await;
    let init_data = signed(
        &app,
        &json!({"user_id": 4242, "first_name": "Анна", "username": "anna_demo"}),
    )
    .await;
    let session = login(&app, &init_data).await;
    assert_eq!(session["user"]["id"], 4242);
    assert_eq!(session["user"]["first_name"], "Анна");
    assert_eq!(session["user"]["username"], "anna_demo");

    // A start parameter reaches the login: a friend arriving through Anna's referral link.
    let token = session["access_token"].as_str().unwrap();
    let mine: Value = app
        .get("/api/v1/referrals", Some(token))
        .await
        .json()
        .await
        .unwrap();
    let start_param = format!("ref_{}", mine["code"].as_str().unwrap());
    let friend = signed(
        &app,
        &json!({"user_id": 4243, "first_name": "Boris", "start_param": start_param}),
    )
    .await;
    login(&app, &friend).await;
    let mine: Value = app
        .get("/api/v1/referrals", Some(token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine["invited"], 1);
}

#[tokio::test]
async fn the_dev_signer_checks_every_field() {
    let app = dev_app().await;
    for body in [
        json!({"user_id": 0, "first_name": "Anna"}),
        json!({"user_id": -5, "first_name": "Anna"}),
        json!({"user_id": 9_007_199_254_740_992_i64, "first_name": "Anna"}),
        json!({"user_id": 42, "first_name": ""}),
        json!({"user_id": 42, "first_name": "x".repeat(65)}),
        json!({"user_id": 42, "first_name": "Anna\u{0}"}),
        json!({"user_id": 42, "first_name": "Anna", "username": "ann"}),
        json!({"user_id": 42, "first_name": "Anna", "username": "anna&auth_date=1"}),
        json!({"user_id": 42, "first_name": "Anna", "start_param": ""}),
        json!({"user_id": 42, "first_name": "Anna", "start_param": "ref_x&hash=0"}),
    ] {
        assert_problem(sign(&app, &body).await, 422, "invalid_field").await;
    }
    for body in [
        json!({"first_name": "Anna"}),
        json!({"user_id": "42", "first_name": "Anna"}),
        json!({"user_id": 42, "first_name": "Anna", "auth_date": 1}),
    ] {
        assert_problem(sign(&app, &body).await, 422, "invalid_body").await;
    }
    let res = app
        .client
        .post(app.url("/dev/init-data"))
        .header("content-type", "application/json")
        .body("{\"user_id\": 42,")
        .send()
        .await
        .unwrap();
    assert_problem(res, 400, "invalid_json").await;
    // The longest accepted values still log in.
    let init_data = signed(
        &app,
        &json!({"user_id": 9_007_199_254_740_991_i64, "first_name": "я".repeat(64),
                "username": "u".repeat(32), "start_param": "s".repeat(64)}),
    )
    .await;
    login(&app, &init_data).await;
}

#[tokio::test]
async fn the_dev_signer_never_signs_with_a_real_bots_token() {
    // spawn_app's token is a real-looking bot's, as on a staging deployment without APP_ENV.
    let app = spawn_app().await;
    let res = sign(&app, &json!({"user_id": 42, "first_name": "Anna"})).await;
    assert_problem(res, 404, "not_found").await;
}

#[tokio::test]
async fn the_dev_signer_is_off_when_initdata_is_checked_with_telegrams_key() {
    let app = spawn_app_with(&[
        ("TELEGRAM_BOT_ID", "7000000001"),
        ("TELEGRAM_PUBLIC_KEY", "test"),
    ])
    .await;
    let res = sign(&app, &json!({"user_id": 42, "first_name": "Anna"})).await;
    assert_problem(res, 404, "not_found").await;
}

#[tokio::test]
async fn the_dev_signer_is_off_beside_any_real_credential() {
    // The development bot token, but a real provider's key: logins signed here would spend it.
    let app = spawn_app_with(&[
        ("TELEGRAM_BOT_TOKEN", DEV_BOT_TOKEN),
        ("OPENROUTER_API_KEY", "sk-or-v1-real-looking"),
    ])
    .await;
    let res = sign(&app, &json!({"user_id": 42, "first_name": "Anna"})).await;
    assert_problem(res, 404, "not_found").await;
}
