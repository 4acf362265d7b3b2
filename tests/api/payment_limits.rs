//! Payment creation under a flood: new payments are rate limited per user (YooKassa and Stars
//! together), a user has only so many pending at once, and however many abandoned payments
//! pile up, the reconciliation sweep still reaches the real ones.

use atelier::db::{payments, products};
use atelier::domain::vocabulary::{PaymentProviderName, PaymentStatus};
use chrono::{Duration, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::fakes::yookassa::FakeYooKassa;
use crate::helpers::{TestApp, assert_problem, spawn_app_with};
use crate::payments::{balance, create, row};

async fn yk_app(extra: &[(&str, &str)]) -> (TestApp, FakeYooKassa) {
    let yk = FakeYooKassa::start().await;
    let mut env = yk.env();
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = spawn_app_with(&pairs).await;
    yk.set_webhook(&app.url("/api/v1/payments/webhook"));
    (app, yk)
}

async fn created(res: reqwest::Response) -> String {
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert!(status == 201 || status == 200, "{status}: {body}");
    body["payment_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn new_payments_are_rate_limited_per_user_across_both_providers() {
    let (app, _yk) = yk_app(&[("RATE_LIMIT_PAYMENTS_PER_USER", "3/1h")]).await;
    let (token, _) = app.login(1).await;
    let keyed = |key: &'static str| {
        app.client
            .post(app.url("/api/v1/payments/create"))
            .bearer_auth(&token)
            .header("Idempotency-Key", key)
            .json(&json!({"product_id": "pack_10", "email": "anna@example.com"}))
            .send()
    };
    let first = created(keyed("p1").await.unwrap()).await;
    created(create(&app, &token, "pack_30").await).await;
    created(create(&app, &token, "pack_100").await).await;
    let res = create(&app, &token, "pack_10").await;
    assert_problem(res, 429, "rate_limited").await;
    // A Stars invoice draws on the same budget.
    let res = app
        .post_json(
            "/api/v1/payments/stars/invoice",
            &json!({"product_id": "pack_10"}),
            Some(&token),
        )
        .await;
    assert_problem(res, 429, "rate_limited").await;
    // Repeating a payment already made is not a new one.
    assert_eq!(created(keyed("p1").await.unwrap()).await, first);
    // Someone else is not limited by it.
    let (other, _) = app.login(2).await;
    created(create(&app, &other, "pack_10").await).await;
}

#[tokio::test]
async fn a_user_has_at_most_five_payments_pending_in_a_day() {
    let (app, _yk) = yk_app(&[("RATE_LIMIT_PAYMENTS_PER_USER", "off")]).await;
    let (token, _) = app.login(1).await;
    for _ in 0..5 {
        created(create(&app, &token, "pack_10").await).await;
    }
    assert_problem(
        create(&app, &token, "pack_10").await,
        429,
        "too_many_pending_payments",
    )
    .await;
    // Abandoned a day ago: they no longer count.
    let uid = app.user_id(1).await;
    use atelier::db::schema::payments as p;
    diesel::update(p::table.filter(p::user_id.eq(uid)))
        .set(p::created_at.eq(Utc::now() - Duration::hours(25)))
        .execute(&mut app.conn().await)
        .await
        .unwrap();
    created(create(&app, &token, "pack_10").await).await;
}

#[tokio::test]
async fn a_flood_of_abandoned_payments_does_not_starve_the_reconciliation_of_a_real_one() {
    let (app, yk) = yk_app(&[]).await;
    let (token, _) = app.login(1).await;
    app.login(2).await;
    let flooder = app.user_id(2).await;
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
    let real = created(create(&app, &token, "pack_10").await).await;
    let real_yk = row(&app, &real).await.provider_payment_id.unwrap();
    use atelier::db::schema::payments as p;
    diesel::update(p::table.find(Uuid::parse_str(&real).unwrap()))
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
    assert_eq!(row(&app, &real).await.status, PaymentStatus::Succeeded);
    assert_eq!(balance(&app, &token).await["balance_credits"], 10);
    assert_eq!(yk.gets() - gets, 1, "the abandoned ones were not due");
}
