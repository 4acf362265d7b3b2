//! Login with Telegram initData, the `AuthUser` extractor (Bearer and tma), JWT expiry and
//! rotation, referrals at first login, blocked users and the signup bonus.

use atelier::auth::initdata;
use atelier::auth::jwt::JwtKeys;
use atelier::config::Settings;
use atelier::db::models::LedgerEntry;
use atelier::db::schema::{credit_ledger, users};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use serde_json::{Value, json};

use crate::helpers::{
    BOT_TOKEN, JWT_SECRET, TestApp, assert_problem, form_encode, init_data, init_data_with, now,
    reference_cases, reference_sign, spawn_app, spawn_app_with,
};

const LOGIN: &str = "/api/v1/auth/telegram";

async fn login_raw(app: &TestApp, raw: &str) -> reqwest::Response {
    app.post_json(LOGIN, &json!({ "init_data": raw }), None)
        .await
}

async fn get_tma(app: &TestApp, path: &str, raw: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .header(AUTHORIZATION, format!("tma {raw}"))
        .send()
        .await
        .unwrap()
}

/// initData for `user_id` with a profile of our choosing, signed with the test bot token.
fn init_data_for_profile(
    user_id: i64,
    username: &str,
    first_name: &str,
    last_name: &str,
) -> String {
    let user = json!({"id": user_id, "first_name": first_name, "last_name": last_name, "username": username,
                      "language_code": "de", "is_premium": true})
    .to_string();
    let auth_date = now().to_string();
    initdata::sign(BOT_TOKEN, &[("user", &user), ("auth_date", &auth_date)])
}

/// The test app's JWT keys, built from the same settings the app uses.
fn test_jwt_keys(secret: &str) -> JwtKeys {
    let secret = secret.to_owned();
    let settings = Settings::from_lookup(|k| (k == "JWT_SECRET").then(|| secret.clone())).unwrap();
    JwtKeys::from_settings(&settings)
}

fn first_of_next_month(now: DateTime<Utc>) -> DateTime<Utc> {
    let (year, month) = if now.month() == 12 {
        (now.year() + 1, 1)
    } else {
        (now.year(), now.month() + 1)
    };
    NaiveDate::from_ymd_opt(year, month, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
}

async fn referred_by(app: &TestApp, telegram_id: i64) -> Option<i64> {
    users::table
        .filter(users::telegram_id.eq(telegram_id))
        .select(users::referred_by)
        .first(&mut app.conn().await)
        .await
        .unwrap()
}

async fn last_seen_at(app: &TestApp, telegram_id: i64) -> DateTime<Utc> {
    users::table
        .filter(users::telegram_id.eq(telegram_id))
        .select(users::last_seen_at)
        .first(&mut app.conn().await)
        .await
        .unwrap()
}

async fn ledger_rows(app: &TestApp, user_id: atelier::domain::ids::UserId) -> Vec<LedgerEntry> {
    credit_ledger::table
        .filter(credit_ledger::user_id.eq(user_id))
        .order(credit_ledger::id)
        .select(LedgerEntry::as_select())
        .load(&mut app.conn().await)
        .await
        .unwrap()
}

#[tokio::test]
async fn login_with_init_data_in_the_body_returns_a_bearer_token() {
    let app = spawn_app().await;
    let res = login_raw(&app, &init_data(1001)).await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let body: Value = res.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 86_400);
    let user = &body["user"];
    assert_eq!(user["id"], 1001);
    assert_eq!(user["username"], "user1001");
    assert_eq!(user["first_name"], "Test");
    assert_eq!(user["language_code"], "en");
    assert_eq!(user["referral_code"].as_str().unwrap().len(), 8, "{user}");
    // The internal id never leaks: `id` is the Telegram id.
    assert_ne!(user["id"], app.user_id(1001).await.get());
}

#[tokio::test]
async fn login_with_tma_header_and_an_empty_body() {
    let app = spawn_app().await;
    let res = app
        .client
        .post(app.url(LOGIN))
        .header(AUTHORIZATION, format!("tma {}", init_data(1002)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["user"]["id"], 1002);
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(app.get("/api/v1/me", Some(token)).await.status(), 200);
}

#[tokio::test]
async fn login_with_a_bearer_header_and_an_empty_body_is_refused() {
    let app = spawn_app().await;
    let (token, _) = app.login(1003).await;
    let res = app
        .client
        .post(app.url(LOGIN))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_problem(res, 400, "missing_init_data").await;
}

#[tokio::test]
async fn the_token_works_on_me_and_balance() {
    let app = spawn_app().await;
    let (token, _) = app.login(1004).await;

    let res = app.get("/api/v1/me", Some(&token)).await;
    assert_eq!(res.status(), 200);
    let me: Value = res.json().await.unwrap();
    assert_eq!(me["id"], 1004);
    assert_eq!(me["username"], "user1004");
    assert_eq!(me["first_name"], "Test");
    assert_eq!(me["balance_credits"], 0);
    assert_eq!(me["subscription_plan"], Value::Null);
    assert_eq!(me["subscription_until"], Value::Null);
    assert_eq!(me["free_actions_limit"], 10);
    assert_eq!(me["free_actions_used"], 0);
    assert_eq!(me["free_actions_left"], 10);
    let reset: DateTime<Utc> = serde_json::from_value(me["free_actions_reset_at"].clone()).unwrap();
    assert_eq!(reset, first_of_next_month(Utc::now()));

    let res = app.get("/api/v1/balance", Some(&token)).await;
    assert_eq!(res.status(), 200);
    let balance: Value = res.json().await.unwrap();
    assert_eq!(balance["balance_credits"], 0);
    assert_eq!(balance["subscription_plan"], Value::Null);
    assert_eq!(balance["free_actions_limit"], 10);
    assert_eq!(balance["free_actions_left"], 10);
    assert_eq!(
        balance["free_actions_reset_at"],
        me["free_actions_reset_at"]
    );
    // Only the money part.
    assert!(
        balance.get("id").is_none() && balance.get("username").is_none(),
        "{balance}"
    );
}

#[tokio::test]
async fn free_actions_per_month_is_configurable() {
    let app = spawn_app_with(&[("FREE_ACTIONS_PER_MONTH", "3")]).await;
    let (token, _) = app.login(1005).await;
    let balance: Value = app
        .get("/api/v1/balance", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(balance["free_actions_limit"], 3);
    assert_eq!(balance["free_actions_left"], 3);
}

#[tokio::test]
async fn tma_header_works_directly_on_protected_routes() {
    let app = spawn_app().await;
    // No login first: the tma credentials create the user on the spot.
    let res = get_tma(&app, "/api/v1/me", &init_data(1006)).await;
    assert_eq!(res.status(), 200);
    let me: Value = res.json().await.unwrap();
    assert_eq!(me["id"], 1006);
    assert_eq!(me["free_actions_left"], 10);
    assert_eq!(
        get_tma(&app, "/api/v1/balance", &init_data(1006))
            .await
            .status(),
        200
    );

    // ... and they are validated like a login.
    let expired = init_data_with(1006, &[], now() - 86_401);
    assert_problem(
        get_tma(&app, "/api/v1/me", &expired).await,
        401,
        "init_data_expired",
    )
    .await;
    let forged = initdata::sign(
        "7000000002:another-bot-token",
        &[("user", r#"{"id":1006,"first_name":"X"}"#)],
    );
    assert_problem(
        get_tma(&app, "/api/v1/me", &forged).await,
        401,
        "invalid_init_data",
    )
    .await;
}

#[tokio::test]
async fn tampered_init_data_is_rejected() {
    let app = spawn_app().await;
    let raw = init_data(1007);
    // Change one character of the user JSON after signing; the hash stays.
    let tampered = raw.replacen("%22Test%22", "%22Tesu%22", 1);
    assert_ne!(raw, tampered);
    let res = login_raw(&app, &tampered).await;
    let www = res
        .headers()
        .get(WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned());
    let body = assert_problem(res, 401, "invalid_init_data").await;
    assert!(
        www.is_some_and(|v| v.starts_with("Bearer")),
        "WWW-Authenticate"
    );
    assert!(
        body["detail"].as_str().unwrap().contains("hash_mismatch"),
        "{body}"
    );

    // Tampering with the id in the same way is caught too; the original still works.
    let other_id = raw.replacen("%22id%22%3A1007", "%22id%22%3A1008", 1);
    assert_ne!(raw, other_id);
    assert_problem(login_raw(&app, &other_id).await, 401, "invalid_init_data").await;
    assert_eq!(login_raw(&app, &raw).await.status(), 200);
}

#[tokio::test]
async fn expired_init_data_is_rejected() {
    let app = spawn_app().await;
    let res = login_raw(&app, &init_data_with(1009, &[], now() - 86_401)).await;
    assert_problem(res, 401, "init_data_expired").await;
    // Just inside the day it is still good.
    let res = login_raw(&app, &init_data_with(1009, &[], now() - 86_300)).await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn max_age_zero_turns_expiry_off() {
    let app = spawn_app_with(&[("INIT_DATA_MAX_AGE_SECS", "0")]).await;
    let res = login_raw(&app, &init_data_with(1010, &[], now() - 30 * 86_400)).await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn max_age_is_configurable() {
    let app = spawn_app_with(&[("INIT_DATA_MAX_AGE_SECS", "60")]).await;
    assert_problem(
        login_raw(&app, &init_data_with(1011, &[], now() - 120)).await,
        401,
        "init_data_expired",
    )
    .await;
    assert_eq!(
        login_raw(&app, &init_data_with(1011, &[], now() - 10))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn future_dated_init_data_is_rejected_beyond_the_skew() {
    let app = spawn_app().await;
    let res = login_raw(&app, &init_data_with(1012, &[], now() + 120)).await;
    let body = assert_problem(res, 401, "invalid_init_data").await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("auth_date_in_future"),
        "{body}"
    );
    // A clock 30 s ahead is tolerated.
    let res = login_raw(&app, &init_data_with(1012, &[], now() + 30)).await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn duplicate_keys_are_rejected() {
    let app = spawn_app().await;
    let raw = format!("{}&auth_date={}", init_data(1013), now());
    let body = assert_problem(login_raw(&app, &raw).await, 401, "invalid_init_data").await;
    assert!(
        body["detail"].as_str().unwrap().contains("duplicate_key"),
        "{body}"
    );
}

#[tokio::test]
async fn init_data_signed_for_another_bot_is_rejected() {
    let app = spawn_app().await;
    let user = json!({"id": 1014, "first_name": "Test"}).to_string();
    let auth_date = now().to_string();
    let raw = initdata::sign(
        "7000000002:AAanother-bot-token-entirely",
        &[("user", &user), ("auth_date", &auth_date)],
    );
    assert_problem(login_raw(&app, &raw).await, 401, "invalid_init_data").await;
}

#[tokio::test]
async fn init_data_without_hash_is_rejected() {
    let app = spawn_app().await;
    let raw = init_data(1015);
    let without: Vec<&str> = raw
        .split('&')
        .filter(|pair| !pair.starts_with("hash="))
        .collect();
    let without = without.join("&");
    assert_ne!(raw, without);
    let body = assert_problem(login_raw(&app, &without).await, 401, "invalid_init_data").await;
    assert!(
        body["detail"].as_str().unwrap().contains("missing_hash"),
        "{body}"
    );
}

#[tokio::test]
async fn init_data_without_user_is_rejected() {
    let app = spawn_app().await;
    let auth_date = now().to_string();
    let raw = initdata::sign(
        BOT_TOKEN,
        &[("query_id", "AAnouser"), ("auth_date", &auth_date)],
    );
    assert_problem(login_raw(&app, &raw).await, 401, "invalid_init_data").await;
    assert_problem(
        get_tma(&app, "/api/v1/me", &raw).await,
        401,
        "invalid_init_data",
    )
    .await;
}

#[tokio::test]
async fn garbage_init_data_is_rejected() {
    let app = spawn_app().await;
    for raw in ["", "not initData at all", "%zz=1&hash=00", "=x&hash=00"] {
        let res = login_raw(&app, raw).await;
        assert_problem(res, 401, "invalid_init_data").await;
    }
}

#[tokio::test]
async fn no_credentials_at_all_is_a_401_with_www_authenticate() {
    let app = spawn_app().await;
    for res in [
        app.client.post(app.url(LOGIN)).send().await.unwrap(),
        app.get("/api/v1/me", None).await,
        app.get("/api/v1/balance", None).await,
    ] {
        let www = res
            .headers()
            .get(WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_owned());
        assert_problem(res, 401, "missing_credentials").await;
        let www = www.expect("WWW-Authenticate header");
        assert!(www.starts_with("Bearer"), "{www}");
    }
}

#[tokio::test]
async fn malformed_json_body_is_a_400() {
    let app = spawn_app().await;
    for body in [
        r#"{"init_data": "#,
        "not json",
        r#"{"init_data": 5}"#,
        r#"{"something": "else"}"#,
    ] {
        let res = app
            .client
            .post(app.url(LOGIN))
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_problem(res, 400, "invalid_json").await;
    }
}

#[tokio::test]
async fn relogin_refreshes_the_profile_and_last_seen_at() {
    let app = spawn_app().await;
    let (_, first) = app.login(1016).await;
    assert_eq!(first["user"]["username"], "user1016");
    let seen_first = last_seen_at(&app, 1016).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;

    let res = login_raw(
        &app,
        &init_data_for_profile(1016, "renamed", "Renata", "Neu"),
    )
    .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["user"]["username"], "renamed");
    assert_eq!(body["user"]["first_name"], "Renata");
    let token = body["access_token"].as_str().unwrap();

    let me: Value = app
        .get("/api/v1/me", Some(token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["id"], 1016);
    assert_eq!(me["username"], "renamed");
    assert_eq!(me["first_name"], "Renata");
    assert_eq!(me["last_name"], "Neu");
    assert_eq!(me["language_code"], "de");
    assert_eq!(me["is_premium"], true);
    // Same account: the referral code and creation time are kept.
    assert_eq!(me["referral_code"], first["user"]["referral_code"]);
    assert_eq!(me["created_at"], first["user"]["created_at"]);

    let seen_again = last_seen_at(&app, 1016).await;
    assert!(
        seen_again > seen_first,
        "last_seen_at {seen_first} -> {seen_again}"
    );
    let count: i64 = users::table
        .filter(users::telegram_id.eq(1016))
        .count()
        .get_result(&mut app.conn().await)
        .await
        .unwrap();
    assert_eq!(count, 1);
}

#[tokio::test]
async fn a_new_user_with_a_referral_start_param_is_linked_to_the_referrer() {
    let app = spawn_app().await;
    let (_, a) = app.login(2001).await;
    let code = a["user"]["referral_code"].as_str().unwrap();
    let start_param = format!("ref_{code}");
    let res = login_raw(
        &app,
        &init_data_with(2002, &[("start_param", &start_param)], now()),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        referred_by(&app, 2002).await,
        Some(app.user_id(2001).await.get())
    );
    assert_eq!(referred_by(&app, 2001).await, None);
}

#[tokio::test]
async fn an_existing_user_keeps_their_referrer() {
    let app = spawn_app().await;
    let (_, a) = app.login(2011).await;
    let (_, d) = app.login(2014).await;
    let ref_a = format!("ref_{}", a["user"]["referral_code"].as_str().unwrap());
    let ref_d = format!("ref_{}", d["user"]["referral_code"].as_str().unwrap());

    // B was referred by A; logging in again through D's link changes nothing.
    assert_eq!(
        login_raw(
            &app,
            &init_data_with(2012, &[("start_param", &ref_a)], now())
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        login_raw(
            &app,
            &init_data_with(2012, &[("start_param", &ref_d)], now())
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        referred_by(&app, 2012).await,
        Some(app.user_id(2011).await.get())
    );

    // C signed up without a link; a link on a later login does not attach a referrer.
    app.login(2013).await;
    assert_eq!(
        login_raw(
            &app,
            &init_data_with(2013, &[("start_param", &ref_a)], now())
        )
        .await
        .status(),
        200
    );
    assert_eq!(referred_by(&app, 2013).await, None);
}

#[tokio::test]
async fn unknown_or_foreign_start_params_are_ignored() {
    let app = spawn_app().await;
    for (tg, start_param) in [
        (2021, "ref_abcdefgh"),
        (2022, "ref_NOT-A-CODE"),
        (2023, "promo_summer"),
        (2024, "ref_"),
    ] {
        let res = login_raw(
            &app,
            &init_data_with(tg, &[("start_param", start_param)], now()),
        )
        .await;
        assert_eq!(res.status(), 200, "{start_param}");
        assert_eq!(referred_by(&app, tg).await, None, "{start_param}");
    }
}

#[tokio::test]
async fn an_expired_token_is_refused_with_token_expired() {
    let app = spawn_app().await;
    app.login(3001).await;
    let keys = test_jwt_keys(JWT_SECRET);
    let fresh = keys
        .issue(atelier::domain::ids::TelegramId(3001), now())
        .unwrap();
    assert_eq!(
        app.get("/api/v1/me", Some(&fresh)).await.status(),
        200,
        "a token we issue ourselves works"
    );
    let expired = keys
        .issue(atelier::domain::ids::TelegramId(3001), now() - 86_401)
        .unwrap();
    let res = app.get("/api/v1/me", Some(&expired)).await;
    let www = res
        .headers()
        .get(WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned());
    assert_problem(res, 401, "token_expired").await;
    assert!(www.is_some_and(|v| v.starts_with("Bearer")));
}

#[tokio::test]
async fn a_token_signed_with_another_secret_is_invalid() {
    let app = spawn_app().await;
    app.login(3002).await;
    let forged = test_jwt_keys("another-secret-another-secret-another-secret")
        .issue(atelier::domain::ids::TelegramId(3002), now())
        .unwrap();
    assert_problem(
        app.get("/api/v1/me", Some(&forged)).await,
        401,
        "invalid_token",
    )
    .await;
}

#[tokio::test]
async fn a_valid_token_of_a_user_who_does_not_exist_is_invalid() {
    let app = spawn_app().await;
    let token = test_jwt_keys(JWT_SECRET)
        .issue(atelier::domain::ids::TelegramId(3003), now())
        .unwrap();
    assert_problem(
        app.get("/api/v1/me", Some(&token)).await,
        401,
        "invalid_token",
    )
    .await;
}

#[tokio::test]
async fn jwt_secret_rotation_accepts_tokens_of_the_previous_secret() {
    const NEW_SECRET: &str = "rotated-secret-0123456789-rotated-secret!";
    assert_eq!(NEW_SECRET.len(), 41);
    let old_app = spawn_app().await;
    let new_app = spawn_app_with(&[
        ("JWT_SECRET", NEW_SECRET),
        ("JWT_PREVIOUS_SECRET", JWT_SECRET),
    ])
    .await;
    let (old_token, _) = old_app.login(3004).await;
    let (new_token, _) = new_app.login(3004).await;

    let res = new_app.get("/api/v1/me", Some(&old_token)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["id"], 3004);
    assert_eq!(
        new_app.get("/api/v1/me", Some(&new_token)).await.status(),
        200
    );
    // The old deployment never learnt the new secret.
    assert_problem(
        old_app.get("/api/v1/me", Some(&new_token)).await,
        401,
        "invalid_token",
    )
    .await;
    // Without JWT_PREVIOUS_SECRET the old tokens are gone.
    let strict_app = spawn_app_with(&[("JWT_SECRET", NEW_SECRET)]).await;
    strict_app.login(3004).await;
    assert_problem(
        strict_app.get("/api/v1/me", Some(&old_token)).await,
        401,
        "invalid_token",
    )
    .await;
}

#[tokio::test]
async fn a_blocked_user_is_refused_everywhere() {
    let app = spawn_app().await;
    let (token, _) = app.login(4001).await;
    diesel::update(users::table.filter(users::telegram_id.eq(4001)))
        .set(users::is_blocked.eq(true))
        .execute(&mut app.conn().await)
        .await
        .unwrap();
    assert_problem(
        app.get("/api/v1/me", Some(&token)).await,
        403,
        "user_blocked",
    )
    .await;
    assert_problem(
        app.get("/api/v1/balance", Some(&token)).await,
        403,
        "user_blocked",
    )
    .await;
    assert_problem(login_raw(&app, &init_data(4001)).await, 403, "user_blocked").await;
    assert_problem(
        get_tma(&app, "/api/v1/me", &init_data(4001)).await,
        403,
        "user_blocked",
    )
    .await;
    // Logging in did not unblock them.
    let blocked: bool = users::table
        .filter(users::telegram_id.eq(4001))
        .select(users::is_blocked)
        .first(&mut app.conn().await)
        .await
        .unwrap();
    assert!(blocked);
}

#[tokio::test]
async fn the_signup_bonus_is_granted_once() {
    let app = spawn_app_with(&[("SIGNUP_BONUS_CREDITS", "3")]).await;
    let (token, _) = app.login(5001).await;
    let balance: Value = app
        .get("/api/v1/balance", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(balance["balance_credits"], 3);
    assert_eq!(balance["free_actions_left"], 10);

    let uid = app.user_id(5001).await;
    let rows = ledger_rows(&app, uid).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].reason, "signup_bonus");
    assert_eq!(rows[0].delta, 3);
    assert_eq!(rows[0].balance_after, 3);

    // Logging in again (both ways) grants nothing more.
    let (token, _) = app.login(5001).await;
    assert_eq!(
        get_tma(&app, "/api/v1/me", &init_data(5001)).await.status(),
        200
    );
    let balance: Value = app
        .get("/api/v1/balance", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(balance["balance_credits"], 3);
    assert_eq!(ledger_rows(&app, uid).await.len(), 1);
}

#[tokio::test]
async fn without_a_signup_bonus_no_ledger_row_is_written() {
    let app = spawn_app().await;
    app.login(5002).await;
    let uid = app.user_id(5002).await;
    assert!(ledger_rows(&app, uid).await.is_empty());
}

#[tokio::test]
async fn init_data_from_an_independent_signer_is_accepted() {
    let app = spawn_app().await;
    for (case, telegram_id, raw) in reference_cases(now()) {
        let res = login_raw(&app, &raw).await;
        let status = res.status();
        let body: Value = res.json().await.unwrap();
        assert_eq!(status, 200, "{case}: {body}");
        assert_eq!(body["user"]["id"], telegram_id, "{case}");
        assert_eq!(
            get_tma(&app, "/api/v1/me", &raw).await.status(),
            200,
            "{case}: tma"
        );
    }
    // The profile came through byte for byte.
    let raw = &reference_cases(now())[0].2;
    let me: Value = get_tma(&app, "/api/v1/me", raw).await.json().await.unwrap();
    assert_eq!(me["first_name"], "Zoë 🎨 & Co");
    assert_eq!(me["last_name"], "a+b=c");
    assert_eq!(me["photo_url"], "https://t.me/i/userpic/320/x.svg");
    assert_eq!(me["is_premium"], true);
}

#[tokio::test]
async fn a_hash_that_leaves_out_signature_is_rejected() {
    // Telegram's HMAC covers every pair but `hash`, `signature` included: a hash computed
    // without it must not verify.
    let app = spawn_app().await;
    let auth = now().to_string();
    let user = r#"{"id":6004,"first_name":"Sig"}"#;
    let without = reference_sign(
        BOT_TOKEN,
        &[("user", user), ("auth_date", &auth)],
        form_encode,
    );
    let raw = format!("signature=abc&{without}");
    assert_problem(login_raw(&app, &raw).await, 401, "invalid_init_data").await;
    assert_eq!(login_raw(&app, &without).await.status(), 200);
}
