//! Payments against a fake YooKassa: the catalogue, creating payments (Basic auth, our
//! Idempotence-Key, 54-FZ receipt), notifications that lie, repeat, race and arrive out of
//! order, cancel, refund, reconciliation, plans, the sandbox provider end to end, the ledger
//! listing and the income register reconciled to the kopeck.

use atelier::db::ledger::{self, Cause};
use atelier::domain::credits::Reason;
use atelier::domain::vocabulary::PaymentStatus;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::json;

use crate::fakes::yookassa::{FakeYooKassa, Mode, SECRET_KEY, SHOP_ID, Source};
use crate::helpers::{
    Catalogue, PaymentCreated, TestApp, assert_problem, buy, ok, payment_row, spawn_app_with,
    webhook, yk_app,
};

/// Every user's balance equals the sum of their ledger rows.
async fn assert_ledger_consistent(app: &TestApp) {
    #[derive(diesel::QueryableByName)]
    struct Bad {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = app.conn().await;
    let bad: Bad = diesel::sql_query(
        "SELECT count(*) AS n FROM users u WHERE u.balance_credits <> \
         COALESCE((SELECT sum(delta) FROM credit_ledger l WHERE l.user_id = u.id), 0)",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!(bad.n, 0, "a balance differs from its ledger");
}

#[tokio::test]
async fn the_catalogue_lists_packs_and_plans_from_the_products_table() {
    let app = spawn_app_with(&[]).await;
    let res = app.get("/api/v1/payments/products", None).await;
    let Catalogue { packs, plans } = ok(res, 200, "catalogue").await;
    assert_eq!(packs.len(), 3);
    assert_eq!(plans.len(), 3);
    assert_eq!(packs[0].id, "pack_10");
    assert_eq!(packs[0].price_minor, 19900);
    assert_eq!(packs[0].price, "199.00");
    assert_eq!(packs[0].credits, 10);
    let basic = &plans[0];
    assert_eq!(
        (basic.plan.as_deref(), basic.credits, basic.period_days),
        (Some("basic"), 60, Some(30))
    );
    // A product taken off sale disappears.
    let mut conn = app.conn().await;
    diesel::sql_query("UPDATE products SET active = false WHERE id = 'pack_30'")
        .execute(&mut conn)
        .await
        .unwrap();
    let res = app.get("/api/v1/payments/products", None).await;
    assert_eq!(ok::<Catalogue>(res, 200, "catalogue").await.packs.len(), 2);
}

#[tokio::test]
async fn a_pack_is_paid_through_yookassa_and_credited_once() {
    let (app, yk) = yk_app(&[]).await;
    let anna = app.user().await;
    let res = anna
        .post(
            "/api/v1/payments/create",
            &json!({"product_id": "pack_10", "email": "anna@example.com", "price_minor": 1}),
        )
        .await;
    assert_problem(res, 422, "invalid_body").await;

    let created = anna.pay("pack_10").await;
    assert_eq!(created.status, "pending");
    let id = created.payment_id;
    let payment = payment_row(&app, id).await;
    let yk_id = payment.provider_payment_id.clone().unwrap();
    // YooKassa's payment, in its wire format.
    assert_eq!(
        json!(created.confirmation_url),
        yk.payment(&yk_id)["confirmation"]["confirmation_url"]
    );

    // What reached YooKassa: Basic auth, our key, the catalogue price, the receipt.
    let sent = &yk.creates()[0];
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{SHOP_ID}:{SECRET_KEY}"),
    );
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Basic {basic}").as_str())
    );
    assert_eq!(
        sent.header("idempotence-key"),
        Some(payment.idempotency_key.as_str())
    );
    let req = sent.json();
    assert_eq!(req["amount"], json!({"value": "199.00", "currency": "RUB"}));
    assert_eq!(req["capture"], true);
    assert_eq!(req["confirmation"]["type"], "redirect");
    assert_eq!(
        req["confirmation"]["return_url"],
        "https://t.me/atelier_bot/app"
    );
    assert_eq!(req["metadata"]["payment_id"], id.to_string());
    assert_eq!(req["receipt"]["customer"]["email"], "anna@example.com");
    let item = &req["receipt"]["items"][0];
    assert_eq!(item["vat_code"], 1);
    assert_eq!(item["payment_subject"], "service");
    assert_eq!(item["payment_mode"], "full_payment");
    assert_eq!(item["amount"]["value"], "199.00");

    assert_eq!(anna.credits().await, 0);
    yk.succeed(&yk_id);
    let res = yk
        .notify_payment(&webhook(&app), "payment.succeeded", &yk_id)
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(anna.credits().await, 10);
    let status = anna.payment(id).await;
    assert_eq!(status.status, "succeeded");
    assert!(status.paid_at.is_some());

    // 199.00: НПД 4 % = 7.96; commission 2.8 % = 5.572 → 5.57; net 185.47.
    let paid = payment_row(&app, id).await;
    assert_eq!(
        (paid.tax_minor, paid.commission_minor, paid.net_minor),
        (Some(796), Some(557), Some(18547))
    );

    // A replay, and the same payment announced under another event: nothing changes.
    for event in ["payment.succeeded", "payment.canceled"] {
        let res = yk.notify_payment(&webhook(&app), event, &yk_id).await;
        assert_eq!(res.status(), 200);
    }
    assert_eq!(anna.credits().await, 10);
    assert_eq!(payment_row(&app, id).await.status, PaymentStatus::Succeeded);
    assert_ledger_consistent(&app).await;

    // Another user cannot see it.
    let other = app.user().await;
    let res = other.get(&format!("/api/v1/payments/{id}")).await;
    assert_problem(res, 404, "not_found").await;
}

#[tokio::test]
async fn a_forged_notification_from_outside_the_networks_is_refused() {
    // Default networks (YooKassa's): the local sender is outside, and as it is none of our
    // proxies (TRUSTED_PROXIES is empty) a forged X-Forwarded-For naming a YooKassa address is
    // not believed.
    let (app, yk) = yk_app(&[("YOOKASSA_ALLOWED_NETWORKS", "")]).await;
    let anna = app.user().await;
    let (_, yk_id) = buy(&anna, "pack_10").await;
    yk.succeed(&yk_id);
    let body = FakeYooKassa::notification("payment.succeeded", yk.payment(&yk_id));
    let gets = yk.gets();
    for source in [Source::Direct, Source::Forwarded("185.71.76.5".into())] {
        let res = yk.notify(&webhook(&app), &body, source).await;
        assert_problem(res, 403, "forbidden_source").await;
    }
    assert_eq!(yk.gets(), gets, "a refused notification makes no call");
    assert_eq!(anna.credits().await, 0);
}

#[tokio::test]
async fn behind_our_proxies_the_first_address_not_theirs_is_the_source() {
    // The tests connect from 127.0.0.1: here it is one of our proxies, as is 10.0.0.0/8.
    let (app, yk) = yk_app(&[
        ("YOOKASSA_ALLOWED_NETWORKS", ""),
        ("TRUSTED_PROXIES", "127.0.0.1/32, 10.0.0.0/8"),
    ])
    .await;
    let anna = app.user().await;
    let (_, yk_id) = buy(&anna, "pack_10").await;
    yk.succeed(&yk_id);
    let body = FakeYooKassa::notification("payment.succeeded", yk.payment(&yk_id));
    // The client wrote a YooKassa address; our proxies appended the real one (and their own).
    for forged in [
        "185.71.76.5, 203.0.113.9",
        "185.71.76.5, 203.0.113.9, 10.0.0.3",
        "",
        "not-an-address",
        "185.71.76.5, not-an-address",
    ] {
        let res = yk
            .notify(&webhook(&app), &body, Source::Forwarded(forged.into()))
            .await;
        assert_problem(res, 403, "forbidden_source").await;
    }
    assert_eq!(anna.credits().await, 0);
    // Two proxies of ours (the edge at 10.0.0.3, then the local one): however many there are,
    // the address the edge saw counts.
    let res = yk
        .notify(
            &webhook(&app),
            &body,
            Source::Forwarded("10.1.1.1, 185.71.76.5, 10.0.0.3".into()),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(anna.credits().await, 10);
}

#[tokio::test]
async fn a_notification_whose_refetch_says_pending_grants_nothing_until_it_is_paid() {
    let (app, yk) = yk_app(&[]).await;
    let anna = app.user().await;
    let (id, yk_id) = buy(&anna, "pack_30").await;
    // The body claims success; YooKassa's GET says pending.
    let mut lie = yk.payment(&yk_id);
    lie["status"] = json!("succeeded");
    lie["paid"] = json!(true);
    let body = FakeYooKassa::notification("payment.succeeded", lie);
    let res = yk.notify(&webhook(&app), &body, Source::Direct).await;
    assert_eq!(res.status(), 200);
    assert_eq!(anna.credits().await, 0);
    assert_eq!(payment_row(&app, id).await.status, PaymentStatus::Pending);
    // The same event, delivered again once the payment really succeeded, is acted on.
    yk.succeed(&yk_id);
    let res = yk.notify(&webhook(&app), &body, Source::Direct).await;
    assert_eq!(res.status(), 200);
    assert_eq!(anna.credits().await, 30);
}

#[tokio::test]
async fn a_payment_that_does_not_match_our_record_grants_nothing() {
    let (app, yk) = yk_app(&[]).await;
    let anna = app.user().await;
    let (id, yk_id) = buy(&anna, "pack_100").await;
    yk.succeed(&yk_id);
    yk.set_amount(&yk_id, "1.00");
    let res = yk
        .notify_payment(&webhook(&app), "payment.succeeded", &yk_id)
        .await;
    assert_eq!(res.status(), 200, "acknowledged, but not acted on");
    assert_eq!(anna.credits().await, 0);
    let payment = payment_row(&app, id).await;
    assert_eq!(payment.status, PaymentStatus::Pending);
    assert!(payment.last_error.unwrap().contains("amount"));

    // Metadata naming another payment of ours: refused too.
    let (other_id, other_yk) = buy(&anna, "pack_10").await;
    yk.succeed(&other_yk);
    yk.set_metadata(&other_yk, json!({"payment_id": id}));
    let res = yk
        .notify_payment(&webhook(&app), "payment.succeeded", &other_yk)
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(anna.credits().await, 0);
    assert_eq!(
        payment_row(&app, other_id).await.status,
        PaymentStatus::Pending
    );
}

#[tokio::test]
async fn an_unreachable_yookassa_answers_503_so_the_notification_comes_again() {
    let (app, yk) = yk_app(&[]).await;
    let anna = app.user().await;
    let (_, yk_id) = buy(&anna, "pack_10").await;
    yk.succeed(&yk_id);
    for _ in 0..3 {
        yk.push_get(Mode::Error500Before);
    }
    let res = yk
        .notify_payment(&webhook(&app), "payment.succeeded", &yk_id)
        .await;
    assert_problem(res, 503, "service_unavailable").await;
    assert_eq!(anna.credits().await, 0);
    let res = yk
        .notify_payment(&webhook(&app), "payment.succeeded", &yk_id)
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(anna.credits().await, 10);
}

#[tokio::test]
async fn twenty_concurrent_duplicate_notifications_credit_once() {
    let (app, yk) = yk_app(&[]).await;
    let anna = app.user().await;
    let (id, yk_id) = buy(&anna, "pack_10").await;
    yk.succeed(&yk_id);
    let body = FakeYooKassa::notification("payment.succeeded", yk.payment(&yk_id));
    let url = webhook(&app);
    let sends = (0..20).map(|_| yk.notify(&url, &body, Source::Direct));
    let statuses: Vec<u16> = futures_util::future::join_all(sends)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(anna.credits().await, 10);
    let mut conn = app.conn().await;
    use atelier::db::schema::credit_ledger as l;
    let rows: i64 = l::table
        .filter(l::ref_id.eq(id.to_string()))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows, 1);
    assert_ledger_consistent(&app).await;
}

#[tokio::test]
async fn a_notification_arriving_before_the_create_call_returned_is_honoured() {
    let (app, yk) = yk_app(&[]).await;
    let anna = app.user().await;
    yk.push_create(Mode::NotifyBeforeReply);
    let created = anna.pay("pack_10").await;
    assert!(created.confirmation_url.is_some());
    assert_eq!(anna.credits().await, 10);
    let payment = payment_row(&app, created.payment_id).await;
    assert_eq!(
        payment.status,
        PaymentStatus::Succeeded,
        "the late create reply does not undo it"
    );
    assert!(payment.provider_payment_id.is_some());
    assert!(payment.confirmation_url.is_some());
}

#[tokio::test]
async fn a_canceled_payment_grants_nothing() {
    let (app, yk) = yk_app(&[]).await;
    let anna = app.user().await;
    let (id, yk_id) = buy(&anna, "pack_10").await;
    yk.cancel(&yk_id);
    let res = yk
        .notify_payment(&webhook(&app), "payment.canceled", &yk_id)
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(payment_row(&app, id).await.status, PaymentStatus::Canceled);
    // A "succeeded" notification for it cannot change that: GET says canceled.
    let mut lie = yk.payment(&yk_id);
    lie["status"] = json!("succeeded");
    let res = yk
        .notify(
            &webhook(&app),
            &FakeYooKassa::notification("payment.succeeded", lie),
            Source::Direct,
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(anna.credits().await, 0);
}

#[tokio::test]
async fn a_refund_takes_the_credits_back_never_below_zero() {
    let (app, yk) = yk_app(&[("FREE_ACTIONS_PER_MONTH", "0")]).await;
    let anna = app.user().await;
    let (id, yk_id) = buy(&anna, "pack_10").await;
    yk.succeed(&yk_id);
    yk.notify_payment(&webhook(&app), "payment.succeeded", &yk_id)
        .await;
    assert_eq!(anna.credits().await, 10);
    // Four credits are spent before the refund.
    let uid = anna.id().await;
    let mut conn = app.conn().await;
    ledger::charge(
        &mut conn,
        uid,
        4,
        0,
        chrono::Utc::now().date_naive(),
        Cause::new("test", "spend", "spend-4"),
    )
    .await
    .unwrap();

    // A refund that is not the whole payment is not applied automatically.
    let partial = yk.refund(&yk_id, "50.00");
    let body = FakeYooKassa::notification("refund.succeeded", yk.refund_object(&partial));
    let res = yk.notify(&webhook(&app), &body, Source::Direct).await;
    assert_eq!(res.status(), 200);
    assert_eq!(anna.credits().await, 6);

    let refund = yk.refund(&yk_id, "199.00");
    let body = FakeYooKassa::notification("refund.succeeded", yk.refund_object(&refund));
    for _ in 0..2 {
        let res = yk.notify(&webhook(&app), &body, Source::Direct).await;
        assert_eq!(res.status(), 200);
    }
    assert_eq!(anna.credits().await, 0);
    let payment = payment_row(&app, id).await;
    assert_eq!(payment.status, PaymentStatus::Refunded);
    assert_eq!(payment.refund_shortfall, 4);
    let ledger = anna.ledger("").await;
    assert_eq!(ledger.items[0].reason, "purchase_refund");
    assert_eq!(ledger.items[0].delta, -6);
    assert_ledger_consistent(&app).await;
}

#[tokio::test]
async fn a_refund_announced_before_its_payment_is_applied_in_order() {
    let (app, yk) = yk_app(&[]).await;
    let anna = app.user().await;
    let (id, yk_id) = buy(&anna, "pack_30").await;
    yk.succeed(&yk_id);
    let refund = yk.refund(&yk_id, "499.00");
    let refund_body = FakeYooKassa::notification("refund.succeeded", yk.refund_object(&refund));
    let res = yk
        .notify(&webhook(&app), &refund_body, Source::Direct)
        .await;
    assert_eq!(res.status(), 200);
    // The payment's own notification, late: it finds the payment refunded already.
    let res = yk
        .notify_payment(&webhook(&app), "payment.succeeded", &yk_id)
        .await;
    assert_eq!(res.status(), 200);
    let payment = payment_row(&app, id).await;
    assert_eq!(payment.status, PaymentStatus::Refunded);
    assert_eq!(payment.refund_shortfall, 0);
    assert_eq!(anna.credits().await, 0);
    let deltas: Vec<i64> = anna
        .ledger("")
        .await
        .items
        .iter()
        .map(|e| e.delta)
        .collect();
    assert_eq!(deltas, [-30, 30]);
    assert_ledger_consistent(&app).await;
}

#[tokio::test]
async fn the_reconciliation_sweep_settles_payments_whose_notification_was_lost() {
    let (app, yk) = yk_app(&[("PAYMENT_RECONCILE_AFTER_SECS", "60")]).await;
    let anna = app.user().await;
    let (paid, paid_yk) = buy(&anna, "pack_10").await;
    let (dropped, dropped_yk) = buy(&anna, "pack_30").await;
    let (open, _) = buy(&anna, "pack_100").await;
    yk.succeed(&paid_yk);
    yk.cancel(&dropped_yk);

    // Too young to be looked at.
    let now = chrono::Utc::now();
    assert_eq!(
        atelier::billing::reconcile(&app.state, now).await.unwrap(),
        0
    );
    assert_eq!(anna.credits().await, 0);

    let later = now + chrono::Duration::seconds(120);
    assert_eq!(
        atelier::billing::reconcile(&app.state, later)
            .await
            .unwrap(),
        2
    );
    assert_eq!(anna.credits().await, 10);
    assert_eq!(
        payment_row(&app, paid).await.status,
        PaymentStatus::Succeeded
    );
    assert_eq!(
        payment_row(&app, dropped).await.status,
        PaymentStatus::Canceled
    );
    let still = payment_row(&app, open).await;
    assert_eq!(still.status, PaymentStatus::Pending);
    assert!(still.checked_at.is_some());
    // Looked at just now: not again until the interval has passed.
    let gets = yk.gets();
    atelier::billing::reconcile(&app.state, later)
        .await
        .unwrap();
    assert_eq!(yk.gets(), gets);
    // The late notification changes nothing more.
    yk.notify_payment(&webhook(&app), "payment.succeeded", &paid_yk)
        .await;
    assert_eq!(anna.credits().await, 10);
}

#[tokio::test]
async fn a_create_with_an_unknown_outcome_is_repeated_with_the_same_key_and_body() {
    let (app, yk) = yk_app(&[("PAYMENT_RECONCILE_AFTER_SECS", "60")]).await;
    let anna = app.user().await;
    // 500 after YooKassa created it: our retry, same key, same body, gets the same payment.
    yk.push_create(Mode::Error500After);
    let (id, _) = buy(&anna, "pack_10").await;
    let creates = yk.creates();
    assert_eq!(creates.len(), 2);
    assert_eq!(
        creates[0].header("idempotence-key"),
        creates[1].header("idempotence-key")
    );
    assert_eq!(creates[0].json(), creates[1].json());
    assert_eq!(yk.payment_count(), 1);
    assert!(payment_row(&app, id).await.confirmation_url.is_some());

    // Three 500s: the client gets 503 and the payment waits; the same Idempotency-Key later
    // (or the sweep) repeats the create with our key.
    for _ in 0..3 {
        yk.push_create(Mode::Error500Before);
    }
    let send = |key: &'static str| {
        anna.request(reqwest::Method::POST, "/api/v1/payments/create")
            .header("Idempotency-Key", key)
            .json(&json!({"product_id": "pack_30", "phone": "+79001234567"}))
            .send()
    };
    let res = send("k-1").await.unwrap();
    assert_problem(res, 503, "service_unavailable").await;
    let res = send("k-1").await.unwrap();
    let again: PaymentCreated = ok(res, 200, "the same key: the same payment").await;
    assert!(again.confirmation_url.is_some());
    let keys: std::collections::HashSet<_> = yk.creates()[2..]
        .iter()
        .map(|r| r.header("idempotence-key").unwrap().to_owned())
        .collect();
    assert_eq!(keys.len(), 1, "one key for every try of one payment");
    assert_eq!(yk.payment_count(), 2);
    // The same client key for another product is a conflict.
    let res = anna
        .request(reqwest::Method::POST, "/api/v1/payments/create")
        .header("Idempotency-Key", "k-1")
        .json(&json!({"product_id": "pack_10", "phone": "+79001234567"}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 409, "idempotency_conflict").await;

    // Lost for good until the sweep: it repeats the create.
    for _ in 0..3 {
        yk.push_create(Mode::Error500Before);
    }
    let res = anna.create_payment("pack_100").await;
    assert_problem(res, 503, "service_unavailable").await;
    let later = chrono::Utc::now() + chrono::Duration::seconds(120);
    atelier::billing::reconcile(&app.state, later)
        .await
        .unwrap();
    assert_eq!(yk.payment_count(), 3);
}

#[tokio::test]
async fn concurrent_creates_with_one_idempotency_key_make_one_payment() {
    let (app, yk) = yk_app(&[]).await;
    let anna = app.user().await;
    let sends = (0..8).map(|_| {
        anna.request(reqwest::Method::POST, "/api/v1/payments/create")
            .header("Idempotency-Key", "double-tap")
            .json(&json!({"product_id": "pack_10", "email": "anna@example.com"}))
            .send()
    });
    let mut ids = std::collections::HashSet::new();
    let mut created = 0;
    for res in futures_util::future::join_all(sends).await {
        let res = res.unwrap();
        match res.status().as_u16() {
            201 => created += 1,
            200 => {}
            other => panic!("status {other}"),
        }
        let body: PaymentCreated = res.json().await.unwrap();
        assert!(body.confirmation_url.is_some(), "{body:?}");
        ids.insert(body.payment_id);
    }
    assert_eq!((created, ids.len(), yk.payment_count()), (1, 1, 1));
}

#[tokio::test]
async fn yookassa_refusals_are_clear_errors() {
    let (app, yk) = yk_app(&[]).await;
    let anna = app.user().await;
    yk.push_create(Mode::Error(
        400,
        "invalid_request",
        Some("receipt.customer.email"),
    ));
    let res = anna.create_payment("pack_10").await;
    let problem = assert_problem(res, 422, "payment_rejected").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("receipt.customer.email")
    );
    yk.push_create(Mode::Error(401, "invalid_credentials", None));
    let res = anna.create_payment("pack_10").await;
    assert_problem(res, 503, "payments_unavailable").await;
    let mut conn = app.conn().await;
    use atelier::db::schema::payments as p;
    let statuses: Vec<String> = p::table.select(p::status).load(&mut conn).await.unwrap();
    assert_eq!(statuses, ["canceled", "canceled"]);

    let res = app
        .post_json(
            "/api/v1/payments/create",
            &json!({"product_id": "pack_10"}),
            Some(&anna.token),
        )
        .await;
    assert_problem(res, 422, "invalid_receipt_contact").await;
    let res = app
        .post_json(
            "/api/v1/payments/create",
            &json!({"product_id": "no_such", "email": "a@b.co"}),
            Some(&anna.token),
        )
        .await;
    assert_problem(res, 404, "not_found").await;
}

#[tokio::test]
async fn a_plan_grants_its_credits_extends_on_renewal_and_lapses_cleanly() {
    let (app, yk) = yk_app(&[]).await;
    let anna = app.user().await;
    let before = chrono::Utc::now();
    for expected_days in [30, 60] {
        let (_, yk_id) = buy(&anna, "plan_basic").await;
        yk.succeed(&yk_id);
        yk.notify_payment(&webhook(&app), "payment.succeeded", &yk_id)
            .await;
        let b = anna.balance().await;
        assert_eq!(b.subscription_plan.as_deref(), Some("basic"));
        let until = b.subscription_until.unwrap();
        let days = (until - before).num_hours() as f64 / 24.0;
        assert!((days - f64::from(expected_days)).abs() < 0.1, "{days}");
    }
    assert_eq!(anna.credits().await, 120);
    let ledger = anna.ledger("").await;
    assert_eq!(ledger.items[0].reason, "subscription");
    assert_eq!(ledger.items[0].description, "Subscription credits");

    // Past its end the plan is gone; the credits it granted stay.
    let mut conn = app.conn().await;
    diesel::sql_query("UPDATE users SET subscription_until = now() - interval '1 second'")
        .execute(&mut conn)
        .await
        .unwrap();
    let b = anna.balance().await;
    assert!(b.subscription_plan.is_none() && b.subscription_until.is_none());
    assert_eq!(b.balance_credits, 120);
    assert!(chrono::DateTime::parse_from_rfc3339(&b.free_actions_reset_at).is_ok());
}

#[tokio::test]
async fn the_sandbox_provider_completes_a_purchase_through_the_same_verification() {
    let app = spawn_app_with(&[]).await;
    let anna = app.user().await;
    let created = anna.pay("pack_10").await;
    let id = created.payment_id;
    let page = created.confirmation_url.unwrap();
    assert!(page.starts_with(&app.url("/sandbox/payments/")), "{page}");
    let html = app.client.get(&page).send().await.unwrap();
    assert_eq!(html.status(), 200);
    let html = html.text().await.unwrap();
    assert!(
        html.contains("199.00") && html.contains("/succeed"),
        "{html}"
    );

    for _ in 0..2 {
        let res = app
            .client
            .post(format!("{page}/succeed"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    assert_eq!(anna.credits().await, 10);
    assert_eq!(payment_row(&app, id).await.status, PaymentStatus::Succeeded);
    // A canceled sandbox payment grants nothing.
    let canceled = anna.pay("pack_30").await;
    let page = canceled.confirmation_url.unwrap();
    app.client
        .post(format!("{page}/cancel"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        payment_row(&app, canceled.payment_id).await.status,
        PaymentStatus::Canceled
    );
    assert_eq!(anna.credits().await, 10);
    // One nobody confirms expires after an hour, as at YooKassa; the sweep notices.
    let unconfirmed = anna.pay("pack_30").await;
    let mut conn = app.conn().await;
    diesel::sql_query(
        "UPDATE sandbox_payments SET created_at = now() - interval '2 hours' WHERE status = 'pending'",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    assert_eq!(
        atelier::billing::reconcile(&app.state, later)
            .await
            .unwrap(),
        1
    );
    let expired = payment_row(&app, unconfirmed.payment_id).await;
    assert_eq!(expired.status, PaymentStatus::Canceled);
    // YooKassa notifications are not the sandbox's way in.
    let res = app
        .client
        .post(app.url("/api/v1/payments/webhook"))
        .json(&json!({"type": "notification", "event": "payment.succeeded", "object": {"id": "x"}}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 403, "forbidden_source").await;
}

#[tokio::test]
async fn the_sandbox_pages_are_off_with_yookassa_configured() {
    let (app, _yk) = yk_app(&[]).await;
    let res = app.get("/sandbox/payments/anything", None).await;
    assert_problem(res, 404, "not_found").await;
}

#[tokio::test]
async fn the_ledger_lists_entries_with_readable_reasons_page_by_page() {
    let app = spawn_app_with(&[]).await;
    let anna = app.user().await;
    let uid = anna.id().await;
    let mut conn = app.conn().await;
    for i in 0..5 {
        let key = format!("grant-{i}");
        ledger::grant(
            &mut conn,
            uid,
            1,
            Reason::AdminGrant,
            Cause::new("test", "g", &key),
        )
        .await
        .unwrap();
    }
    let page = anna.ledger("?limit=3").await;
    assert_eq!(page.items.len(), 3);
    assert_eq!(page.items[0].balance_after, 5);
    assert_eq!(page.items[0].description, "Granted by support");
    let cursor = page.next_cursor.unwrap();
    let next = anna.ledger(&format!("?limit=3&cursor={cursor}")).await;
    assert_eq!(next.items.len(), 2);
    assert!(next.next_cursor.is_none());
    let res = anna.get("/api/v1/ledger?cursor=abc").await;
    assert_problem(res, 400, "invalid_cursor").await;
}

#[tokio::test]
async fn the_income_register_reconciles_to_the_kopeck() {
    const KEY: &str = "admin-key-for-tests-0123456789";
    let (app, yk) = yk_app(&[("ADMIN_API_KEY", KEY)]).await;
    let anna = app.user().await;
    let mut paid = Vec::new();
    for product in ["pack_10", "pack_30", "plan_pro", "pack_100"] {
        let (id, yk_id) = buy(&anna, product).await;
        yk.succeed(&yk_id);
        yk.notify_payment(&webhook(&app), "payment.succeeded", &yk_id)
            .await;
        paid.push((id, yk_id));
    }
    let _pending = buy(&anna, "pack_10").await;
    // The last one is refunded: its receipt is annulled, it leaves the register.
    let refund = yk.refund(&paid[3].1, "1390.00");
    yk.notify(
        &webhook(&app),
        &FakeYooKassa::notification("refund.succeeded", yk.refund_object(&refund)),
        Source::Direct,
    )
    .await;

    let today = (chrono::Utc::now() + chrono::Duration::hours(3)).date_naive();
    let path = format!("/admin/payments/income.csv?from={today}&to={today}");
    let res = app.get(&path, None).await;
    assert_problem(res, 401, "missing_credentials").await;
    let res = app
        .client
        .get(app.url(&path))
        .header("X-Admin-API-Key", "wrong")
        .send()
        .await
        .unwrap();
    assert_problem(res, 401, "invalid_admin_key").await;
    let res = app
        .client
        .get(app.url(&path))
        .header("X-Admin-API-Key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = res.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "date,payment_id,provider,product_id,amount,tax,commission,net"
    );
    assert_eq!(lines.len(), 1 + 3 + 1, "{csv}");
    let kopecks = |s: &str| s.replace('.', "").parse::<i64>().unwrap();
    let mut sums = [0i64; 4];
    for (line, (id, _)) in lines[1..4].iter().zip(&paid) {
        let cols: Vec<&str> = line.split(',').collect();
        assert_eq!(cols[1], id.to_string());
        let parts: Vec<i64> = cols[4..8].iter().map(|c| kopecks(c)).collect();
        assert_eq!(parts[0], parts[1] + parts[2] + parts[3], "{line}");
        let p = payment_row(&app, *id).await;
        assert_eq!(
            parts,
            [
                p.amount_minor,
                p.tax_minor.unwrap(),
                p.commission_minor.unwrap(),
                p.net_minor.unwrap()
            ]
        );
        for (sum, part) in sums.iter_mut().zip(parts) {
            *sum += part;
        }
    }
    // 199.00 + 499.00 + 790.00 = 1488.00; НПД 7.96 + 19.96 + 31.60; commission 5.57 + 13.97 + 22.12.
    assert_eq!(sums, [148800, 5952, 4166, 138682]);
    let total: Vec<&str> = lines[4].split(',').collect();
    assert_eq!(total[0], "total");
    let totals: Vec<i64> = total[4..8].iter().map(|c| kopecks(c)).collect();
    assert_eq!(totals, sums);
    // The ledger agrees: 10 + 30 + 200 + 100 - 100 credits.
    assert_eq!(anna.credits().await, 240);
    assert_ledger_consistent(&app).await;

    // Another period is empty.
    let res = app
        .client
        .get(app.url("/admin/payments/income.csv?from=2020-01-01&to=2020-01-31"))
        .header("X-Admin-API-Key", KEY)
        .send()
        .await
        .unwrap();
    let csv = res.text().await.unwrap();
    assert_eq!(csv.lines().count(), 2);
    assert!(
        csv.ends_with("total,0 payments,,,0.00,0.00,0.00,0.00\n"),
        "{csv}"
    );
}

#[tokio::test]
async fn the_admin_api_is_off_without_a_key() {
    let app = spawn_app_with(&[]).await;
    let res = app
        .client
        .get(app.url("/admin/payments/income.csv?from=2026-01-01&to=2026-01-31"))
        .header("X-Admin-API-Key", "")
        .send()
        .await
        .unwrap();
    assert_problem(res, 404, "not_found").await;
}

#[tokio::test]
async fn a_notification_carrying_a_nul_character_is_refused_before_the_inbox() {
    // PostgreSQL cannot store U+0000 in jsonb: such a body used to fail the inbox insert (500).
    let (app, yk) = yk_app(&[]).await;
    let anna = app.user().await;
    let (_, yk_id) = buy(&anna, "pack_10").await;
    yk.succeed(&yk_id);
    let mut body = FakeYooKassa::notification("payment.succeeded", yk.payment(&yk_id));
    body["object"]["description"] = json!("a\u{0}b");
    let res = yk.notify(&webhook(&app), &body, Source::Direct).await;
    assert_problem(res, 400, "invalid_notification").await;
    assert_eq!(anna.credits().await, 0);
    body["object"]["description"] = json!("ab");
    let res = yk.notify(&webhook(&app), &body, Source::Direct).await;
    assert_eq!(res.status(), 200);
    assert_eq!(anna.credits().await, 10);
}
