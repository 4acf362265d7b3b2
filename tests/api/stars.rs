//! Telegram Stars: the invoice link in XTR, the pre-checkout answered in time after checking
//! product, price and payer, and the grant on `successful_payment`, once per charge id.

use atelier::domain::vocabulary::PaymentStatus;
use serde_json::json;

use crate::helpers::{
    STARS_SECRET as SECRET, assert_problem, payment_row, pre_checkout, refunded, spawn_app_with,
    stars_app, stars_app_with, stars_user, successful,
};

#[tokio::test]
async fn a_stars_purchase_is_checked_at_pre_checkout_and_granted_once() {
    let (app, tg) = stars_app().await;
    let anna = app.user_with(stars_user(1)).await;
    let inv = anna.stars_invoice("pack_10").await;
    assert!(inv.invoice_link.starts_with("https://t.me/$"));
    assert_eq!(inv.amount, 150);
    let payload = inv.payment_id.to_string();
    let payload = payload.as_str();
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
    assert_eq!(anna.credits().await, 10);
    let p = payment_row(&app, inv.payment_id).await;
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
    assert_eq!(anna.credits().await, 10);
}

#[tokio::test]
async fn a_refunded_stars_payment_takes_the_purchase_back_once() {
    let (app, tg) = stars_app().await;
    let anna = app.user_with(stars_user(1)).await;
    let inv = anna.stars_invoice("pack_10").await;
    let payload = inv.payment_id.to_string();
    let payload = payload.as_str();
    let url = app.url("/api/v1/telegram/webhook");
    // The refund arrives before its payment was acted on: 503, and Telegram sends it again.
    let res = tg
        .push_update(&url, SECRET, &refunded(1, 150, payload, "stxR-1"))
        .await;
    assert_problem(res, 503, "service_unavailable").await;
    tg.push_update(&url, SECRET, &successful(1, 150, payload, "stxR-1"))
        .await;
    assert_eq!(anna.credits().await, 10);
    // A refund of a charge that did not pay this invoice takes nothing.
    let res = tg
        .push_update(&url, SECRET, &refunded(1, 150, payload, "stxOTHER"))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(anna.credits().await, 10);

    for _ in 0..3 {
        let res = tg
            .push_update(&url, SECRET, &refunded(1, 150, payload, "stxR-1"))
            .await;
        assert_eq!(res.status(), 200);
    }
    assert_eq!(anna.credits().await, 0);
    assert_eq!(
        payment_row(&app, inv.payment_id).await.status,
        PaymentStatus::Refunded
    );
    let uid = anna.id().await;
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
    let alice = app.user_with(stars_user(1)).await;
    let start = format!("ref_{}", alice.referrals().await.code);
    let bob = app.user_with(stars_user(2).start_param(&start)).await;
    let url = app.url("/api/v1/telegram/webhook");
    let first = bob.stars_invoice("pack_10").await.payment_id.to_string();
    let first = first.as_str();
    tg.push_update(&url, SECRET, &successful(2, 150, first, "stxB-1"))
        .await;
    assert_eq!(alice.credits().await, 10);

    for _ in 0..2 {
        let res = tg
            .push_update(&url, SECRET, &refunded(2, 150, first, "stxB-1"))
            .await;
        assert_eq!(res.status(), 200);
    }
    assert_eq!(bob.credits().await, 0);
    assert_eq!(alice.credits().await, 0, "bonus taken back once");
    let mine = alice.referrals().await;
    assert_eq!((mine.invited, mine.credits_earned), (1, 0));
    let ledger = alice.ledger("").await;
    assert_eq!(ledger.items[0].reason, "referral_refund");
    assert_eq!(ledger.items[0].delta, -10);

    // The referral was decided: Bob's next payment earns Alice nothing.
    let second = bob.stars_invoice("pack_10").await.payment_id.to_string();
    let second = second.as_str();
    tg.push_update(&url, SECRET, &successful(2, 150, second, "stxB-2"))
        .await;
    assert_eq!(bob.credits().await, 10);
    assert_eq!(alice.credits().await, 0);
}

#[tokio::test]
async fn a_pre_checkout_with_a_wrong_price_payer_or_invoice_is_refused() {
    let (app, tg) = stars_app().await;
    let anna = app.user_with(stars_user(1)).await;
    let inv = anna.stars_invoice("plan_pro").await;
    let payload = inv.payment_id.to_string();
    let payload = payload.as_str();
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
    assert_eq!(anna.credits().await, 0);
    tg.push_update(&url, SECRET, &successful(1, 550, payload, "stxRIGHT"))
        .await;
    let b = anna.balance().await;
    assert_eq!(
        (b.balance_credits, b.subscription_plan.as_deref()),
        (200, Some("pro"))
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
    let res = off
        .user()
        .await
        .post(
            "/api/v1/payments/stars/invoice",
            &json!({"product_id": "pack_10"}),
        )
        .await;
    assert_problem(res, 503, "service_unavailable").await;
}
