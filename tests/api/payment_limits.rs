//! Payment creation under a flood: new payments are rate limited per user (YooKassa and Stars
//! together), a user has only so many pending at once, and however many abandoned payments
//! pile up, the reconciliation sweep still reaches the real ones.

use atelier::db::{payments, products};
use atelier::domain::vocabulary::{PaymentProviderName, PaymentStatus};
use chrono::{Duration, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{PaymentCreated, assert_problem, payment_row, yk_app};

/// The payment of a created (201) or repeated (200) payment request.
async fn created(res: reqwest::Response) -> Uuid {
    let status = res.status();
    let text = res.text().await.unwrap();
    assert!(status == 201 || status == 200, "{status}: {text}");
    serde_json::from_str::<PaymentCreated>(&text)
        .unwrap()
        .payment_id
}

#[tokio::test]
async fn new_payments_are_rate_limited_per_user_across_both_providers() {
    let (app, _yk) = yk_app(&[("RATE_LIMIT_PAYMENTS_PER_USER", "3/1h")]).await;
    let anna = app.user().await;
    let keyed = |key: &'static str| {
        anna.request(reqwest::Method::POST, "/api/v1/payments/create")
            .header("Idempotency-Key", key)
            .json(&json!({"product_id": "pack_10", "email": "anna@example.com"}))
            .send()
    };
    let first = created(keyed("p1").await.unwrap()).await;
    created(anna.create_payment("pack_30").await).await;
    created(anna.create_payment("pack_100").await).await;
    let res = anna.create_payment("pack_10").await;
    assert_problem(res, 429, "rate_limited").await;
    // A Stars invoice draws on the same budget.
    let res = anna
        .post(
            "/api/v1/payments/stars/invoice",
            &json!({"product_id": "pack_10"}),
        )
        .await;
    assert_problem(res, 429, "rate_limited").await;
    // Repeating a payment already made is not a new one.
    assert_eq!(created(keyed("p1").await.unwrap()).await, first);
    // Someone else is not limited by it.
    let other = app.user().await;
    created(other.create_payment("pack_10").await).await;
}

#[tokio::test]
async fn a_user_has_at_most_five_payments_pending_in_a_day() {
    let (app, _yk) = yk_app(&[("RATE_LIMIT_PAYMENTS_PER_USER", "off")]).await;
    let anna = app.user().await;
    for _ in 0..5 {
        created(anna.create_payment("pack_10").await).await;
    }
    assert_problem(
        anna.create_payment("pack_10").await,
        429,
        "too_many_pending_payments",
    )
    .await;
    // Abandoned a day ago: they no longer count.
    let uid = anna.id().await;
    use atelier::db::schema::payments as p;
    diesel::update(p::table.filter(p::user_id.eq(uid)))
        .set(p::created_at.eq(Utc::now() - Duration::hours(25)))
        .execute(&mut app.conn().await)
        .await
        .unwrap();
    created(anna.create_payment("pack_10").await).await;
}

#[tokio::test]
async fn a_flood_of_abandoned_payments_does_not_starve_the_reconciliation_of_a_real_one() {
    let (app, yk) = yk_app(&[]).await;
    let anna = app.user().await;
    let flooder = app.user().await.id().await;
    let now = Utc::now();
    // 150 payments abandoned ten days ago (more than one sweep takes), last looked at an hour
    // ago, as the sweep would have left them.
    {
        let mut conn = app.state.db.get().await.unwrap();
        let product = products::find_active(&mut conn, "pack_10")
            .await
            .unwrap()
            .unwrap();
        for i in 0..150 {
            let mut p = atelier::billing::new_payment(
                Uuid::new_v4(),
                flooder,
                PaymentProviderName::Yookassa,
                &product,
                product.price_minor,
                "RUB",
            );
            p.provider_payment_id = Some(format!("abandoned-{i}"));
            p.created_at = now - Duration::days(10);
            p.checked_at = Some(now - Duration::hours(1));
            payments::insert(&mut conn, &p).await.unwrap();
        }
    }
    // A real payment, checked once while its payer was still paying; its notification was lost.
    let real = created(anna.create_payment("pack_10").await).await;
    let real_yk = payment_row(&app, real).await.provider_payment_id.unwrap();
    use atelier::db::schema::payments as p;
    diesel::update(p::table.find(real))
        .set((
            p::created_at.eq(now - Duration::minutes(60)),
            p::checked_at.eq(Some(now - Duration::minutes(35))),
        ))
        .execute(&mut app.conn().await)
        .await
        .unwrap();
    yk.succeed(&real_yk);
    let gets = yk.gets();

    let changed = atelier::billing::reconcile(&app.state, now).await.unwrap();
    assert_eq!(changed, 1);
    assert_eq!(
        payment_row(&app, real).await.status,
        PaymentStatus::Succeeded
    );
    assert_eq!(anna.credits().await, 10);
    assert_eq!(yk.gets() - gets, 1, "the abandoned ones were not due");
}
