//! The admin API: every endpoint with the key, with an admin's token, with a user's token and
//! with nothing; stats checked against data the test created; credits, blocks and the queue.

use diesel_async::RunQueryDsl;
use serde_json::{Value, json};

use crate::helpers::{
    AdminUser, CreditsResult, NewUser, TestApp, Worker, assert_problem, ok, spawn_app_with,
};

const KEY: &str = "admin-key-for-the-tests-0123456789";
const ADMIN_TG: i64 = 900_001;

async fn admin_app(extra: &[(&str, &str)]) -> TestApp {
    let admin_ids = ADMIN_TG.to_string();
    let mut settings = vec![
        ("ADMIN_API_KEY", KEY),
        ("ADMIN_IDS", admin_ids.as_str()),
        ("SANDBOX_GENERATION_MS", "0"),
        ("FREE_ACTIONS_PER_MONTH", "0"),
    ];
    settings.extend_from_slice(extra);
    spawn_app_with(&settings).await
}

enum Who<'a> {
    Key(&'a str),
    Token(&'a str),
    Nobody,
}

async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    who: &Who<'_>,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = match method {
        "GET" => app.client.get(app.url(path)),
        _ => app.client.post(app.url(path)),
    };
    req = match who {
        Who::Key(k) => req.header("X-Admin-API-Key", *k),
        Who::Token(t) => req.bearer_auth(t),
        Who::Nobody => req,
    };
    if let Some(body) = body {
        req = req.header("Idempotency-Key", "matrix").json(&body);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn every_admin_endpoint_takes_the_key_or_an_admins_token_and_nothing_else() {
    let app = admin_app(&[]).await;
    let (admin_token, _) = app.login(ADMIN_TG).await;
    let (user_token, _) = app.login(1).await;
    app.login(2).await;
    let endpoints: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", "/admin/stats".into(), None),
        ("GET", "/admin/queue".into(), None),
        ("GET", "/admin/users/2".into(), None),
        (
            "POST",
            "/admin/users/2/credits".into(),
            Some(json!({"amount": 1, "reason": "matrix"})),
        ),
        ("POST", "/admin/users/2/block".into(), None),
        ("POST", "/admin/users/2/unblock".into(), None),
        (
            "GET",
            "/admin/payments/income.csv?from=2026-01-01&to=2026-12-31".into(),
            None,
        ),
    ];
    for (method, path, body) in &endpoints {
        for who in [Who::Key(KEY), Who::Token(&admin_token)] {
            let res = call(&app, method, path, &who, body.clone()).await;
            assert_eq!(res.status(), 200, "{method} {path}: {:?}", res.text().await);
        }
        let res = call(&app, method, path, &Who::Token(&user_token), body.clone()).await;
        assert_problem(res, 403, "not_admin").await;
        let res = call(&app, method, path, &Who::Nobody, body.clone()).await;
        assert_problem(res, 401, "missing_credentials").await;
        let res = call(
            &app,
            method,
            path,
            &Who::Key("wrong-key-wrong-key-wrong"),
            body.clone(),
        )
        .await;
        assert_problem(res, 401, "invalid_admin_key").await;
    }
    // The matrix changed data twice per changing endpoint, both times by an admin: audited.
    let mut conn = app.conn().await;
    let actors: Vec<(String, String)> =
        diesel::sql_query("SELECT actor, action FROM admin_audit ORDER BY id")
            .load::<AuditRow>(&mut conn)
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.actor, r.action))
            .collect();
    let tg = format!("telegram:{ADMIN_TG}");
    assert_eq!(
        actors,
        [
            ("api_key".to_owned(), "credits".to_owned()), // the token's repeat of key "matrix" is a replay
            ("api_key".into(), "block".into()),
            (tg.clone(), "block".into()),
            ("api_key".into(), "unblock".into()),
            (tg, "unblock".into()),
        ]
    );

    // Without ADMIN_API_KEY the whole admin API is off.
    let off = spawn_app_with(&[]).await;
    assert_problem(off.get("/admin/stats", None).await, 404, "not_found").await;
}

#[derive(diesel::QueryableByName)]
struct AuditRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    actor: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    action: String,
}

async fn stats(app: &TestApp) -> Value {
    let res = call(app, "GET", "/admin/stats", &Who::Key(KEY), None).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

#[tokio::test]
async fn stats_add_up_to_what_happened() {
    let app = admin_app(&[]).await;
    let a = app.user_with(NewUser::id(11)).await;
    let b = app.user_with(NewUser::id(12)).await;
    let _c = app.user_with(NewUser::id(13)).await;
    a.grant(10).await;
    b.grant(3).await;
    // User 11: two edits that succeed and a try-on canceled (refunded); user 12: one try-on.
    let worker = Worker::start(&app);
    let source = a.upload_editing().await.id;
    for crid in ["e1", "e2"] {
        let g = a
            .edit(&json!({"upload_id": source, "prompt": "warmer", "client_request_id": crid}))
            .await;
        a.wait_for_status(g.id, "succeeded").await;
    }
    let fitting = b.upload_fitting().await;
    let g = b.fit_zone(&fitting, "shoes", "f").await;
    b.wait_for_status(g.id, "succeeded").await;
    drop(worker);
    let fitting = a.upload_fitting().await;
    let g = a.fit_zone(&fitting, "top", "f2").await;
    assert_eq!(a.cancel(g.id).await.status(), 200);
    // User 11 asks the (sandbox) assistant once: 1 credit.
    a.chat(&json!({"upload_id": source, "message": "make the sky dramatic"}))
        .await;
    // User 12 buys a pack through the sandbox page (199.00 ₽).
    let res = b
        .post(
            "/api/v1/payments/create",
            &json!({"product_id": "pack_10", "email": "b@example.com"}),
        )
        .await;
    let page = ok::<crate::helpers::PaymentCreated>(res, 201, "payment")
        .await
        .confirmation_url
        .unwrap();
    assert_eq!(
        app.client
            .post(format!("{page}/succeed"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let s = stats(&app).await;
    assert_eq!(s["users"]["total"], 3);
    assert_eq!(s["users"]["new_today"], 3);
    assert_eq!(
        (
            s["users"]["active_today"].as_i64(),
            s["users"]["dau"].as_i64(),
            s["users"]["mau"].as_i64()
        ),
        (Some(3), Some(3), Some(3))
    );
    let g = &s["generations"];
    assert_eq!(
        (g["total"].as_i64(), g["today"].as_i64()),
        (Some(4), Some(4))
    );
    assert_eq!(g["by_status"], json!({"succeeded": 3, "canceled": 1}));
    assert_eq!(g["by_kind"], json!({"editing": 2, "fitting": 2}));
    assert_eq!(g["by_zone"], json!({"shoes": 1, "top": 1}));
    assert_eq!(g["failure_rate"], 0.0);
    assert!(g["duration_p50_secs"].as_f64().unwrap() > 0.0);
    assert!(g["duration_p95_secs"].as_f64().unwrap() >= g["duration_p50_secs"].as_f64().unwrap());
    // Credits: 13 granted by the test + 10 bought; spent 1 + 1 + 2 + 2 + 1; the canceled 2 refunded.
    for period in ["today", "all_time"] {
        let c = &s["credits"][period];
        assert_eq!(c["granted"], 23, "{period}: {c}");
        assert_eq!(c["spent"], 7, "{period}: {c}");
        assert_eq!(c["refunded"], 2, "{period}: {c}");
        assert_eq!(c["taken_back"], 0);
    }
    for period in ["today", "this_month"] {
        let r = &s["revenue"][period];
        assert_eq!(r["payments"], 1, "{period}: {r}");
        assert_eq!(r["gross_minor"], 19_900);
        assert_eq!(r["tax_minor"], 796, "4 % of 199.00");
        assert_eq!(
            r["commission_minor"], 557,
            "2.8 % of 199.00, rounded half up"
        );
        assert_eq!(r["net_minor"], 19_900 - 796 - 557);
    }
    assert_eq!(
        s["top_users"][0],
        json!({"telegram_id": 11, "username": "user11", "generations": 3})
    );
    assert_eq!(s["top_users"][1]["telegram_id"], 12);
    assert_eq!(
        s["funnel"],
        json!({"registered": 3, "uploaded": 2, "generated": 2, "paid": 1})
    );
    let cohorts = s["retention"].as_array().unwrap();
    assert_eq!(cohorts.len(), 1, "{cohorts:?}");
    assert_eq!(cohorts[0]["users"], 3);
    assert_eq!(
        cohorts[0]["active"],
        json!([2]),
        "users 11 and 12 moved credits this week"
    );
    assert_eq!(s["erased_today"], json!({"uploads": 0, "users": 0}));

    // An erasure shows the next morning's report... and today's.
    b.erase().await;
    let s = stats(&app).await;
    assert_eq!(s["users"]["total"], 2);
    assert_eq!(s["erased_today"]["users"], 1);
}

#[tokio::test]
async fn blocking_cancels_and_refunds_queued_generations_and_unblocking_restores_access() {
    let app = admin_app(&[]).await;
    let anna = app.user_with(NewUser::id(21)).await;
    anna.grant(4).await;
    let fitting = anna.upload_fitting().await;
    let g = anna.fit_zone(&fitting, "top", "q").await;
    assert_eq!(anna.credits().await, 2);

    let res = call(&app, "POST", "/admin/users/21/block", &Who::Key(KEY), None).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body,
        json!({"telegram_id": 21, "is_blocked": true, "canceled_generations": 1})
    );
    assert_problem(anna.get("/api/v1/me").await, 403, "user_blocked").await;
    let res = call(&app, "GET", "/admin/users/21", &Who::Key(KEY), None).await;
    let user: AdminUser = ok(res, 200, "admin user").await;
    assert!(user.is_blocked);
    assert_eq!(user.balance.balance_credits, 4, "refunded");
    assert_eq!(user.generations[0].id, g.id);
    assert_eq!(user.generations[0].status, "canceled");
    assert_eq!(user.ledger[0].reason, "refund");
    // The canceled generation's job never runs.
    let _worker = Worker::start(&app);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let res = call(&app, "GET", "/admin/users/21", &Who::Key(KEY), None).await;
    let user: AdminUser = ok(res, 200, "admin user").await;
    assert_eq!(user.generations[0].status, "canceled");

    let res = call(
        &app,
        "POST",
        "/admin/users/21/unblock",
        &Who::Key(KEY),
        None,
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(anna.get("/api/v1/me").await.status(), 200);
    assert_eq!(anna.credits().await, 4);
    assert_problem(
        call(&app, "POST", "/admin/users/999/block", &Who::Key(KEY), None).await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn admin_credits_are_idempotent_and_never_take_more_than_there_is() {
    let app = admin_app(&[]).await;
    let anna = app.user_with(NewUser::id(31)).await;
    let post = |key: &'static str, amount: i64| {
        let app = &app;
        async move {
            app.client
                .post(app.url("/admin/users/31/credits"))
                .header("X-Admin-API-Key", KEY)
                .header("Idempotency-Key", key)
                .json(&json!({"amount": amount, "reason": "goodwill\u{0} for a bad result"}))
                .send()
                .await
                .unwrap()
        }
    };
    let first: CreditsResult = post("k1", 5).await.json().await.unwrap();
    assert_eq!((first.balance_credits, first.replayed), (5, false));
    assert_eq!(first.entry.reason, "admin_grant");
    let again: CreditsResult = post("k1", 5).await.json().await.unwrap();
    assert_eq!((again.balance_credits, again.replayed), (5, true));
    assert_eq!(again.entry.id, first.entry.id);
    assert_problem(post("k2", -6).await, 402, "insufficient_credits").await;
    let taken: CreditsResult = post("k3", -5).await.json().await.unwrap();
    assert_eq!(taken.balance_credits, 0);
    assert_eq!(taken.entry.reason, "admin_debit");
    assert_eq!(anna.credits().await, 0);
    assert_problem(post("k4", 0).await, 422, "invalid_amount").await;
    for (key, amount) in [("k6", i64::MAX), ("k7", i64::MIN), ("k8", 1_000_000_001)] {
        assert_problem(post(key, amount).await, 422, "invalid_amount").await;
    }
    let res = app
        .client
        .post(app.url("/admin/users/31/credits"))
        .header("X-Admin-API-Key", KEY)
        .json(&json!({"amount": 1, "reason": "no key"}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 400, "missing_idempotency_key").await;
    let res = app
        .client
        .post(app.url("/admin/users/31/credits"))
        .header("X-Admin-API-Key", KEY)
        .header("Idempotency-Key", "k5")
        .json(&json!({"amount": 1, "reason": " \t "}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 422, "invalid_reason").await;
}

#[tokio::test]
async fn the_queue_shows_counts_waiting_age_and_failing_jobs() {
    let app = admin_app(&[]).await;
    let anna = app.user_with(NewUser::id(41)).await;
    anna.grant(2).await;
    let source = anna.upload_editing().await.id;
    anna.edit(&json!({"upload_id": source, "prompt": "p", "client_request_id": "w"}))
        .await;
    let mut conn = app.conn().await;
    diesel::sql_query(
        "INSERT INTO jobs (kind, payload, status, attempts, max_attempts, last_error) \
         VALUES ('generation', '{}', 'failed', 5, 5, 'provider_unavailable: gave up')",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let q: Value = call(&app, "GET", "/admin/queue", &Who::Key(KEY), None)
        .await
        .json()
        .await
        .unwrap();
    let counts = q["counts"].as_array().unwrap();
    assert!(
        counts.contains(&json!({"kind": "generation", "status": "queued", "count": 1})),
        "{q}"
    );
    assert!(
        counts.contains(&json!({"kind": "generation", "status": "failed", "count": 1})),
        "{q}"
    );
    assert_eq!(q["oldest_waiting_secs"][0]["kind"], "generation");
    assert_eq!(q["oldest_waiting_secs"][0]["waiting"], 1);
    assert!(
        q["oldest_waiting_secs"][0]["oldest_waiting_secs"]
            .as_f64()
            .unwrap()
            >= 0.0
    );
    assert_eq!(
        q["failing"][0]["last_error"],
        "provider_unavailable: gave up"
    );
}
