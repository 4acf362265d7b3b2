//! Telegram Stars: the invoice link in XTR, the pre-checkout answered in time after checking
//! product, price and payer, and the grant on `successful_payment`, once per charge id.

use atelier::domain::vocabulary::PaymentStatus;
use serde_json::{Value, json};

use crate::fakes::telegram::{BOT_TOKEN, FakeTelegram};
use crate::helpers::{TestApp, assert_problem, spawn_app_with};
use crate::payments::{balance, row};

pub(crate) const SECRET: &str = "stars-webhook-secret_123";

pub(crate) async fn stars_app() -> (TestApp, FakeTelegram) {
    stars_app_with(&[]).await
}

pub(crate) async fn stars_app_with(extra: &[(&str, &str)]) -> (TestApp, FakeTelegram) {
    let tg = FakeTelegram::start().await;
    let mut settings = vec![
        ("TELEGRAM_BOT_TOKEN", BOT_TOKEN),
        ("TELEGRAM_API_BASE_URL", tg.base_url.as_str()),
        ("TELEGRAM_WEBHOOK_SECRET", SECRET),
    ];
    settings.extend_from_slice(extra);
    let app = spawn_app_with(&settings).await;
    (app, tg)
}

pub(crate) async fn login(app: &TestApp, id: i64) -> String {
    login_with(app, id, None).await
}

async fn login_with(app: &TestApp, id: i64, start_param: Option<&str>) -> String {
    // The app runs with the fake's bot token, so initData is signed with it.
    let user = json!({"id": id, "first_name": "Test"}).to_string();
    let auth_date = crate::helpers::now().to_string();
    let mut pairs = vec![("user", user.as_str()), ("auth_date", auth_date.as_str())];
    pairs.extend(start_param.map(|p| ("start_param", p)));
    let init = atelier::auth::initdata::sign(BOT_TOKEN, &pairs);
    let res = app
        .post_json("/api/v1/auth/telegram", &json!({"init_data": init}), None)
        .await;
    assert_eq!(res.status(), 200);
    res.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub(crate) fn pre_checkout(query_id: &str, from: i64, total: i64, payload: &str) -> Value {
    json!({"update_id": 1, "pre_checkout_query": {
        "id": query_id, "from": {"id": from, "is_bot": false, "first_name": "Test"},
        "currency": "XTR", "total_amount": total, "invoice_payload": payload}})
}

pub(crate) fn successful(from: i64, total: i64, payload: &str, charge: &str) -> Value {
    json!({"update_id": 2, "message": {"message_id": 5, "date": 1, "chat": {"id": from, "type": "private"},
        "from": {"id": from, "is_bot": false, "first_name": "Test"},
        "successful_payment": {"currency": "XTR", "total_amount": total, "invoice_payload": payload,
            "telegram_payment_charge_id": charge, "provider_payment_charge_id": ""}}})
}

fn refunded(from: i64, total: i64, payload: &str, charge: &str) -> Value {
    json!({"update_id": 3, "message": {"message_id": 6, "date": 2, "chat": {"id": from, "type": "private"},
        "from": {"id": from, "is_bot": false, "first_name": "Test"},
        "refunded_payment": {"currency": "XTR", "total_amount": total, "invoice_payload": payload,
            "telegram_payment_charge_id": charge, "provider_payment_charge_id": ""}}})
}

pub(crate) async fn invoice(app: &TestApp, token: &str, product: &str) -> Value {
    let res = app
        .post_json(
            "/api/v1/payments/stars/invoice",
            &json!({"product_id": product}),
            Some(token),
        )
        .await;
    assert_eq!(res.status(), 201);
    res.json().await.unwrap()
}

#[tokio::test]
async fn a_stars_purchase_is_checked_at_pre_checkout_and_granted_once() {
    let (app, tg) = stars_app().await;
    let token = login(&app, 1).await;
    let inv = invoice(&app, &token, "pack_10").await;
    assert!(
        inv["invoice_link"]
            .as_str()
            .unwrap()
            .starts_with("https://t.me/$")
    );
    assert_eq!(inv["amount"], 150);
    let payload = inv["payment_id"].as_str().unwrap();
    let call = tg
        .calls()
        .into_iter()
        .find(|c| c.method == "createInvoiceLink")
        .unwrap();
    assert_eq!(call.params["currency"], "XTR");
    assert_eq!(call.params["payload"], payload);
    assert!(!call.params.contains_key("provider_token"));

    let url = app.url("/api/v1/telegram/webhook");
    let res = tg
        .push_update(&url, SECRET, &pre_checkout("q1", 1, 150, payload))
        .await;
    assert_eq!(res.status(), 200);
    let answer = tg.answer("q1").expect("answered");
    assert!(answer.ok, "{answer:?}");
    assert!(answer.after.as_secs() < 10);

    let paid = successful(1, 150, payload, "stxCHARGE-1");
    for _ in 0..3 {
        let res = tg.push_update(&url, SECRET, &paid).await;
        assert_eq!(res.status(), 200);
    }
    assert_eq!(balance(&app, &token).await["balance_credits"], 10);
    let p = row(&app, payload).await;
    assert_eq!(p.status, PaymentStatus::Succeeded);
    assert_eq!(p.currency, "XTR");
    assert_eq!(p.provider_payment_id.as_deref(), Some("stxCHARGE-1"));
    assert_eq!(
        p.tax_minor, None,
        "Stars are not roubles: no НПД split here"
    );

    // The invoice is paid: a second pre-checkout for it is refused.
    tg.push_update(&url, SECRET, &pre_checkout("q2", 1, 150, payload))
        .await;
    assert!(!tg.answer("q2").unwrap().ok);
    // A second charge for the same invoice grants nothing.
    tg.push_update(&url, SECRET, &successful(1, 150, payload, "stxCHARGE-2"))
        .await;
    assert_eq!(balance(&app, &token).await["balance_credits"], 10);
}

#[tokio::test]
async fn a_refunded_stars_payment_takes_the_purchase_back_once() {
    let (app, tg) = stars_app().await;
    let token = login(&app, 1).await;
    let inv = invoice(&app, &token, "pack_10").await;
    let payload = inv["payment_id"].as_str().unwrap();
    let url = app.url("/api/v1/telegram/webhook");
    // The refund arrives before its payment was acted on: 503, and Telegram sends it again.
    let res = tg
        .push_update(&url, SECRET, &refunded(1, 150, payload, "stxR-1"))
        .await;
    assert_problem(res, 503, "service_unavailable").await;
    tg.push_update(&url, SECRET, &successful(1, 150, payload, "stxR-1"))
        .await;
    assert_eq!(balance(&app, &token).await["balance_credits"], 10);
    // A refund of a charge that did not pay this invoice takes nothing.
    let res = tg
        .push_update(&url, SECRET, &refunded(1, 150, payload, "stxOTHER"))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(balance(&app, &token).await["balance_credits"], 10);

    for _ in 0..3 {
        let res = tg
            .push_update(&url, SECRET, &refunded(1, 150, payload, "stxR-1"))
            .await;
        assert_eq!(res.status(), 200);
    }
    assert_eq!(balance(&app, &token).await["balance_credits"], 0);
    assert_eq!(row(&app, payload).await.status, PaymentStatus::Refunded);
    let uid = app.user_id(1).await;
    let mut conn = app.conn().await;
    let reasons: Vec<String> = atelier::db::ledger::list(&mut conn, uid, None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.reason)
        .collect();
    assert_eq!(
        reasons,
        ["purchase_refund", "purchase"],
        "newest first, once each"
    );
}

#[tokio::test]
async fn a_refunded_first_payment_takes_back_the_referral_bonus_it_earned() {
    let (app, tg) = stars_app_with(&[("REFERRAL_BONUS_TRIGGER", "first_payment")]).await;
    let alice = login(&app, 1).await;
    let code: Value = app
        .get("/api/v1/referrals", Some(&alice))
        .await
        .json()
        .await
        .unwrap();
    let start = format!("ref_{}", code["code"].as_str().unwrap());
    let bob = login_with(&app, 2, Some(&start)).await;
    let url = app.url("/api/v1/telegram/webhook");
    let first = invoice(&app, &bob, "pack_10").await;
    let first = first["payment_id"].as_str().unwrap();
    tg.push_update(&url, SECRET, &successful(2, 150, first, "stxB-1"))
        .await;
    assert_eq!(balance(&app, &alice).await["balance_credits"], 10);

    for _ in 0..2 {
        let res = tg
            .push_update(&url, SECRET, &refunded(2, 150, first, "stxB-1"))
            .await;
        assert_eq!(res.status(), 200);
    }
    assert_eq!(balance(&app, &bob).await["balance_credits"], 0);
    assert_eq!(
        balance(&app, &alice).await["balance_credits"],
        0,
        "bonus taken back once"
    );
    let mine: Value = app
        .get("/api/v1/referrals", Some(&alice))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&mine["invited"], &mine["credits_earned"]),
        (&json!(1), &json!(0))
    );
    let ledger: Value = app
        .get("/api/v1/ledger", Some(&alice))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ledger["items"][0]["reason"], "referral_refund");
    assert_eq!(ledger["items"][0]["delta"], -10);

    // The referral was decided: Bob's next payment earns Alice nothing.
    let second = invoice(&app, &bob, "pack_10").await;
    let second = second["payment_id"].as_str().unwrap();
    tg.push_update(&url, SECRET, &successful(2, 150, second, "stxB-2"))
        .await;
    assert_eq!(balance(&app, &bob).await["balance_credits"], 10);
    assert_eq!(balance(&app, &alice).await["balance_credits"], 0);
}

#[tokio::test]
async fn a_pre_checkout_with_a_wrong_price_payer_or_invoice_is_refused() {
    let (app, tg) = stars_app().await;
    let token = login(&app, 1).await;
    let inv = invoice(&app, &token, "plan_pro").await;
    let payload = inv["payment_id"].as_str().unwrap();
    let url = app.url("/api/v1/telegram/webhook");
    for (id, update) in [
        ("w1", pre_checkout("w1", 1, 1, payload)),
        ("w2", pre_checkout("w2", 999, 550, payload)),
        ("w3", pre_checkout("w3", 1, 550, "not-an-invoice")),
    ] {
        let res = tg.push_update(&url, SECRET, &update).await;
        assert_eq!(res.status(), 200);
        let answer = tg.answer(id).unwrap();
        assert!(
            !answer.ok && answer.error_message.is_some(),
            "{id}: {answer:?}"
        );
    }
    // A payment that does not match its invoice grants nothing.
    tg.push_update(&url, SECRET, &successful(1, 1, payload, "stxWRONG"))
        .await;
    assert_eq!(balance(&app, &token).await["balance_credits"], 0);
    tg.push_update(&url, SECRET, &successful(1, 550, payload, "stxRIGHT"))
        .await;
    let b = balance(&app, &token).await;
    assert_eq!(
        (&b["balance_credits"], &b["subscription_plan"]),
        (&json!(200), &json!("pro"))
    );
}

#[tokio::test]
async fn the_webhook_checks_its_secret_token() {
    let (app, tg) = stars_app().await;
    let url = app.url("/api/v1/telegram/webhook");
    let res = tg
        .push_update(&url, "wrong", &json!({"update_id": 1}))
        .await;
    assert_problem(res, 401, "invalid_secret_token").await;
    let res = tg
        .push_update(
            &url,
            SECRET,
            &json!({"update_id": 1, "message": {"text": "/start"}}),
        )
        .await;
    assert_eq!(res.status(), 200, "other updates are acknowledged");

    // No webhook secret: the webhook is off. Telegram unreachable: no invoice, 503.
    let off = spawn_app_with(&[("TELEGRAM_API_BASE_URL", "http://127.0.0.1:9")]).await;
    let res = tg
        .push_update(
            &off.url("/api/v1/telegram/webhook"),
            SECRET,
            &json!({"update_id": 1}),
        )
        .await;
    assert_problem(res, 404, "not_found").await;
    let token = off.login(1).await.0;
    let res = off
        .post_json(
            "/api/v1/payments/stars/invoice",
            &json!({"product_id": "pack_10"}),
            Some(&token),
        )
        .await;
    assert_problem(res, 503, "service_unavailable").await;
}
