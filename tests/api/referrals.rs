//! Referrals: +10 credits to the referrer per new user arriving with `start_param=ref_<code>`,
//! once, never for oneself, up to a daily cap; or at the referred user's first payment.

use atelier::domain::vocabulary::PaymentStatus;
use serde_json::{Value, json};

use crate::helpers::{TestApp, init_data_with, now, spawn_app_with};
use crate::payments::{balance, create, row};

async fn login_with(app: &TestApp, user_id: i64, start_param: &str) -> String {
    let init = init_data_with(user_id, &[("start_param", start_param)], now());
    let res = app
        .post_json("/api/v1/auth/telegram", &json!({"init_data": init}), None)
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

async fn referrals(app: &TestApp, token: &str) -> Value {
    let res = app.get("/api/v1/referrals", Some(token)).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn credits(app: &TestApp, token: &str) -> i64 {
    balance(app, token).await["balance_credits"]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn a_referred_signup_earns_the_referrer_a_bonus_once() {
    let app = spawn_app_with(&[("TELEGRAM_MINI_APP_URL", "https://t.me/atelier_bot/app")]).await;
    let (alice, _) = app.login(1).await;
    let mine = referrals(&app, &alice).await;
    let code = mine["code"].as_str().unwrap().to_owned();
    assert_eq!(
        mine["link"],
        format!("https://t.me/atelier_bot/app?startapp=ref_{code}")
    );
    assert_eq!(
        (&mine["invited"], &mine["credits_earned"]),
        (&json!(0), &json!(0))
    );

    let bob = login_with(&app, 2, &format!("ref_{code}")).await;
    assert_eq!(credits(&app, &alice).await, 10);
    assert_eq!(
        credits(&app, &bob).await,
        0,
        "the referred user earns nothing"
    );
    // Bob opening the link again, or Alice's link used by an existing user: nothing more.
    login_with(&app, 2, &format!("ref_{code}")).await;
    let (carol, _) = app.login(3).await;
    login_with(&app, 3, &format!("ref_{code}")).await;
    assert_eq!(credits(&app, &alice).await, 10);
    let mine = referrals(&app, &alice).await;
    assert_eq!(
        (&mine["invited"], &mine["credits_earned"]),
        (&json!(1), &json!(10))
    );

    // Bob's own link does not pay him for himself, and one referrer per user.
    let bob_code = referrals(&app, &bob).await["code"]
        .as_str()
        .unwrap()
        .to_owned();
    login_with(&app, 2, &format!("ref_{bob_code}")).await;
    assert_eq!(credits(&app, &bob).await, 0);
    assert_eq!(credits(&app, &carol).await, 0);
    let ledger: Value = app
        .get("/api/v1/ledger", Some(&alice))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ledger["items"][0]["reason"], "referral_bonus");
    assert_eq!(ledger["items"][0]["description"], "Referral bonus");
}

#[tokio::test]
async fn unknown_codes_earn_nothing() {
    let app = spawn_app_with(&[]).await;
    let (alice, _) = app.login(1).await;
    for param in ["ref_zzzzzzzz", "ref_", "promo", "ref_ABCDEFGH"] {
        login_with(&app, 10 + param.len() as i64, param).await;
    }
    assert_eq!(credits(&app, &alice).await, 0);
    assert_eq!(referrals(&app, &alice).await["invited"], 0);
}

#[tokio::test]
async fn the_daily_cap_limits_bonuses_per_referrer() {
    let app = spawn_app_with(&[("REFERRAL_DAILY_CAP", "2"), ("REFERRAL_BONUS_CREDITS", "7")]).await;
    let (alice, _) = app.login(1).await;
    let code = referrals(&app, &alice).await["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let logins = (2..=5).map(|id| {
        let app = &app;
        let param = format!("ref_{code}");
        async move { login_with(app, id, &param).await }
    });
    futures_util::future::join_all(logins).await;
    assert_eq!(credits(&app, &alice).await, 14);
    let mine = referrals(&app, &alice).await;
    assert_eq!(
        (&mine["invited"], &mine["credits_earned"]),
        (&json!(4), &json!(14))
    );
}

#[tokio::test]
async fn with_the_first_payment_trigger_the_bonus_waits_for_a_payment() {
    let app = spawn_app_with(&[("REFERRAL_BONUS_TRIGGER", "first_payment")]).await;
    let (alice, _) = app.login(1).await;
    let code = referrals(&app, &alice).await["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let bob = login_with(&app, 2, &format!("ref_{code}")).await;
    assert_eq!(credits(&app, &alice).await, 0);
    assert_eq!(referrals(&app, &alice).await["invited"], 1);
    for expected in [10, 10] {
        let body: Value = create(&app, &bob, "pack_10").await.json().await.unwrap();
        let page = body["confirmation_url"].as_str().unwrap();
        let res = app
            .client
            .post(format!("{page}/succeed"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(
            row(&app, body["payment_id"].as_str().unwrap()).await.status,
            PaymentStatus::Succeeded
        );
        assert_eq!(credits(&app, &alice).await, expected);
    }
    assert_eq!(credits(&app, &bob).await, 20);
}

#[tokio::test]
async fn an_account_erased_and_signed_up_again_earns_no_second_bonus() {
    let app = spawn_app_with(&[("SIGNUP_BONUS_CREDITS", "5")]).await;
    let (alice, _) = app.login(1).await;
    let code = referrals(&app, &alice).await["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut bob = login_with(&app, 2, &format!("ref_{code}")).await;
    assert_eq!(
        credits(&app, &alice).await,
        15,
        "her signup bonus and Bob's referral"
    );
    assert_eq!(credits(&app, &bob).await, 5);
    for _ in 0..2 {
        let res = app
            .client
            .delete(app.url("/api/v1/me"))
            .bearer_auth(&bob)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        bob = login_with(&app, 2, &format!("ref_{code}")).await;
        assert_eq!(credits(&app, &bob).await, 0, "no second signup bonus");
    }
    assert_eq!(credits(&app, &alice).await, 15, "no second referral bonus");
    assert_eq!(referrals(&app, &alice).await["invited"], 1);
    // What is kept is a keyed hash, not the Telegram id.
    let mut conn = app.conn().await;
    let kept: Vec<Vec<u8>> = {
        use diesel::QueryDsl as _;
        use diesel_async::RunQueryDsl as _;
        atelier::db::schema::erased_identities::table
            .select(atelier::db::schema::erased_identities::identity_hash)
            .load(&mut conn)
            .await
            .unwrap()
    };
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].len(), 32);

    // Someone new still earns both.
    let carol = login_with(&app, 3, &format!("ref_{code}")).await;
    assert_eq!(credits(&app, &carol).await, 5);
    assert_eq!(credits(&app, &alice).await, 25);
}
