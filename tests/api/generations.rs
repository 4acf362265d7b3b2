//! The generation pipeline end to end: charging in the request's transaction, the worker with
//! the sandbox provider and with a fake kie.ai, refunds, idempotency, limits and cancelling.

use std::time::Duration;

use atelier::db::ledger::{self, Cause};
use atelier::domain::credits::Reason;
use atelier::jobs::runner::{Runner, RunnerConfig};
use atelier::shutdown;
use futures_util::StreamExt as _;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::fakes::kie::{API_KEY, FakeKie, Mode, Plan};
use crate::helpers::{TestApp, assert_problem, spawn_app_with};

/// The worker's job runner inside the test process, stopped on drop.
pub struct Worker(Option<shutdown::Trigger>);

impl Worker {
    pub fn start(app: &TestApp) -> Self {
        let (trigger, stop) = shutdown::channel();
        let state = app.state.clone();
        let mut config = RunnerConfig::from_settings(&state.settings.worker);
        config.poll_interval = Duration::from_millis(200);
        let registry = atelier::jobs::registry(&state).unwrap();
        tokio::spawn(Runner::new(state, registry, config).run(stop));
        Self(Some(trigger))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            t.fire();
        }
    }
}

fn photo(w: u32, h: u32, rgb: [u8; 3]) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([rgb[0] ^ (x as u8), rgb[1] ^ (y as u8), rgb[2]])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

pub async fn upload_fitting(app: &TestApp, token: &str) -> (String, String) {
    let part = |b: Vec<u8>| {
        Part::bytes(b)
            .file_name("p.jpg")
            .mime_str("image/jpeg")
            .unwrap()
    };
    let form = Form::new()
        .part("person", part(photo(400, 600, [200, 150, 120])))
        .part("item", part(photo(300, 300, [20, 40, 200])));
    let res = app
        .client
        .post(app.url("/api/v1/fitting/upload"))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    (
        body["person"]["id"].as_str().unwrap().to_owned(),
        body["item"]["id"].as_str().unwrap().to_owned(),
    )
}

pub async fn upload_editing(app: &TestApp, token: &str) -> String {
    let part = Part::bytes(photo(400, 400, [90, 90, 90]))
        .file_name("e.jpg")
        .mime_str("image/jpeg")
        .unwrap();
    let res = app
        .client
        .post(app.url("/api/v1/editing/upload"))
        .bearer_auth(token)
        .multipart(Form::new().part("image", part))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub async fn grant(app: &TestApp, telegram_id: i64, amount: i64) {
    let uid = app.user_id(telegram_id).await;
    let mut conn = app.conn().await;
    let key = format!("test-grant:{uid}:{amount}");
    ledger::grant(
        &mut conn,
        uid,
        amount,
        Reason::AdminGrant,
        Cause::new("test", "grant", &key),
    )
    .await
    .unwrap();
}

pub async fn balance(app: &TestApp, token: &str) -> Value {
    app.get("/api/v1/balance", Some(token))
        .await
        .json()
        .await
        .unwrap()
}

pub async fn wait_for_status(app: &TestApp, token: &str, id: &str, want: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let g: Value = app
            .get(&format!("/api/v1/generations/{id}"), Some(token))
            .await
            .json()
            .await
            .unwrap();
        let status = g["generation"]["status"].as_str().unwrap().to_owned();
        if status == want {
            return g["generation"].clone();
        }
        assert!(
            !["succeeded", "failed", "canceled"].contains(&status.as_str()),
            "ended {status}, wanted {want}: {g}"
        );
        assert!(std::time::Instant::now() < deadline, "still {status}: {g}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const PAID: &[(&str, &str)] = &[
    ("FREE_ACTIONS_PER_MONTH", "0"),
    ("SANDBOX_GENERATION_MS", "300"),
];

#[tokio::test]
async fn a_fitting_is_charged_two_credits_and_delivered_by_the_sandbox() {
    let app = spawn_app_with(PAID).await;
    let (token, _) = app.login(1).await;
    grant(&app, 1, 3).await;
    let (person, item) = upload_fitting(&app, &token).await;
    let url = format!(
        "{}/api/v1/ws?token={token}",
        app.address.replacen("http", "ws", 1)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(next_event(&mut ws).await["type"], "snapshot");
    let _worker = Worker::start(&app);
    let body = json!({"person_upload_id": person, "item_upload_id": item, "zone": "top", "client_request_id": "c1"});
    let res = app
        .post_json("/api/v1/fitting/generate", &body, Some(&token))
        .await;
    assert_eq!(res.status(), 202);
    let g: Value = res.json().await.unwrap();
    assert_eq!(g["generation"]["status"], "queued");
    assert_eq!(g["generation"]["kind"], "fitting");
    assert_eq!(g["generation"]["credits_spent"], 2);
    assert_eq!(g["generation"]["paid_with"], "credits");
    assert_eq!(balance(&app, &token).await["balance_credits"], 1);

    // Over the socket: queued, running, (progress), succeeded with the result's link.
    let mut seen = Vec::new();
    let succeeded = loop {
        let event = next_event(&mut ws).await;
        assert_eq!(event["generation"]["id"], g["generation"]["id"]);
        seen.push(event["type"].as_str().unwrap().to_owned());
        if event["type"] == "generation.succeeded" {
            break event;
        }
    };
    assert_eq!(
        seen[..2],
        ["generation.queued", "generation.running"],
        "{seen:?}"
    );
    assert!(
        seen[2..seen.len() - 1]
            .iter()
            .all(|k| k == "generation.progress"),
        "{seen:?}"
    );
    assert_eq!(succeeded["generation"]["status"], "succeeded");

    let done = wait_for_status(
        &app,
        &token,
        g["generation"]["id"].as_str().unwrap(),
        "succeeded",
    )
    .await;
    assert_eq!(done["progress"], 100);
    let url = done["result"]["url"].as_str().unwrap();
    let path = |u: &str| u.split('?').next().unwrap().to_owned();
    assert_eq!(path(succeeded["result_url"].as_str().unwrap()), path(url));
    let res = app.client.get(url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let result = image::load_from_memory(&res.bytes().await.unwrap()).unwrap();
    assert_eq!((result.width(), result.height()), (400, 600));
    assert_eq!(
        balance(&app, &token).await["balance_credits"],
        1,
        "success costs nothing more"
    );
}

#[tokio::test]
async fn an_edit_costs_one_credit_or_a_free_action_and_free_results_are_watermarked() {
    let app = spawn_app_with(&[
        ("FREE_ACTIONS_PER_MONTH", "1"),
        ("SANDBOX_GENERATION_MS", "200"),
    ])
    .await;
    let (token, _) = app.login(1).await;
    grant(&app, 1, 1).await;
    let upload = upload_editing(&app, &token).await;
    let _worker = Worker::start(&app);
    let mut ids = Vec::new();
    for (crid, paid_with) in [("e1", "free_allowance"), ("e2", "credits")] {
        let body = json!({"upload_id": upload, "prompt": "make it\u{0} warmer\n", "client_request_id": crid});
        let g: Value = app
            .post_json("/api/v1/editing/generate", &body, Some(&token))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(g["generation"]["paid_with"], paid_with);
        assert_eq!(g["generation"]["prompt"], "make it warmer");
        ids.push(g["generation"]["id"].as_str().unwrap().to_owned());
    }
    let b = balance(&app, &token).await;
    assert_eq!(
        (
            b["balance_credits"].as_i64(),
            b["free_actions_left"].as_i64()
        ),
        (Some(0), Some(0))
    );
    let free = wait_for_status(&app, &token, &ids[0], "succeeded").await;
    let paid = wait_for_status(&app, &token, &ids[1], "succeeded").await;
    let pixels = |g: &Value| {
        let url = g["result"]["url"].as_str().unwrap().to_owned();
        let client = app.client.clone();
        async move {
            image::load_from_memory(&client.get(url).send().await.unwrap().bytes().await.unwrap())
                .unwrap()
                .to_rgb8()
        }
    };
    let (free, paid) = (pixels(&free).await, pixels(&paid).await);
    let (w, h) = free.dimensions();
    let corner = |img: &image::RgbImage| img.get_pixel(w - w / 10, h - h / 20).0;
    assert_ne!(
        corner(&free),
        corner(&paid),
        "the free result carries the mark in its corner"
    );
}

#[tokio::test]
async fn a_repeated_client_request_id_returns_the_first_generation_and_charges_once() {
    let app = spawn_app_with(PAID).await;
    let (token, _) = app.login(1).await;
    grant(&app, 1, 5).await;
    let upload = upload_editing(&app, &token).await;
    let body = json!({"upload_id": upload, "prompt": "blue sky"});
    let send = || {
        app.client
            .post(app.url("/api/v1/editing/generate"))
            .bearer_auth(&token)
            .header("Idempotency-Key", "same")
            .json(&body)
            .send()
    };
    let a: Value = send().await.unwrap().json().await.unwrap();
    let b: Value = send().await.unwrap().json().await.unwrap();
    assert_eq!(a["generation"]["id"], b["generation"]["id"]);
    assert_eq!(balance(&app, &token).await["balance_credits"], 4);
    let res = app
        .post_json(
            "/api/v1/editing/generate",
            &json!({"upload_id": upload, "prompt": "x"}),
            Some(&token),
        )
        .await;
    assert_problem(res, 400, "missing_client_request_id").await;
}

#[tokio::test]
async fn bad_requests_are_refused_before_any_charge() {
    let app = spawn_app_with(PAID).await;
    let (token, _) = app.login(1).await;
    let (person, item) = upload_fitting(&app, &token).await;
    let fit = |zone: &str, crid: &str| json!({"person_upload_id": person, "item_upload_id": item, "zone": zone, "client_request_id": crid});
    assert_problem(
        app.post_json("/api/v1/fitting/generate", &fit("hat", "z"), Some(&token))
            .await,
        422,
        "invalid_body",
    )
    .await;
    let body = assert_problem(
        app.post_json("/api/v1/fitting/generate", &fit("top", "a"), Some(&token))
            .await,
        402,
        "insufficient_credits",
    )
    .await;
    assert_eq!(
        (body["required"].as_i64(), body["available"].as_i64()),
        (Some(2), Some(0))
    );
    let swapped = json!({"person_upload_id": item, "item_upload_id": person, "zone": "top", "client_request_id": "s"});
    assert_problem(
        app.post_json("/api/v1/fitting/generate", &swapped, Some(&token))
            .await,
        422,
        "wrong_upload",
    )
    .await;
    let (stranger, _) = app.login(2).await;
    grant(&app, 2, 10).await;
    assert_problem(
        app.post_json(
            "/api/v1/fitting/generate",
            &fit("top", "b"),
            Some(&stranger),
        )
        .await,
        404,
        "not_found",
    )
    .await;
    let long = json!({"upload_id": person, "prompt": "x".repeat(1001), "client_request_id": "l"});
    assert_problem(
        app.post_json("/api/v1/editing/generate", &long, Some(&token))
            .await,
        422,
        "prompt_too_long",
    )
    .await;
    assert_eq!(balance(&app, &stranger).await["balance_credits"], 10);
}

#[tokio::test]
async fn active_and_hourly_limits_answer_429_with_retry_after() {
    let app = spawn_app_with(&[
        ("FREE_ACTIONS_PER_MONTH", "0"),
        ("MAX_ACTIVE_TASKS_PER_USER", "2"),
        ("MAX_TASKS_PER_USER_PER_HOUR", "3"),
    ])
    .await;
    let (token, _) = app.login(1).await;
    grant(&app, 1, 10).await;
    let upload = upload_editing(&app, &token).await;
    let edit = |crid: &str| json!({"upload_id": upload, "prompt": "p", "client_request_id": crid});
    for crid in ["a", "b"] {
        assert_eq!(
            app.post_json("/api/v1/editing/generate", &edit(crid), Some(&token))
                .await
                .status(),
            202
        );
    }
    let res = app
        .post_json("/api/v1/editing/generate", &edit("c"), Some(&token))
        .await;
    assert!(res.headers().get("retry-after").is_some());
    assert_problem(res, 429, "rate_limited").await;
    // Cancelling frees a slot (and refunds); the hourly limit still counts it.
    let first: Value = app
        .post_json("/api/v1/editing/generate", &edit("a"), Some(&token))
        .await
        .json()
        .await
        .unwrap();
    let id = first["generation"]["id"].as_str().unwrap();
    let res = app
        .client
        .post(app.url(&format!("/api/v1/generations/{id}/cancel")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        app.post_json("/api/v1/editing/generate", &edit("c"), Some(&token))
            .await
            .status(),
        202
    );
    let res = app
        .post_json("/api/v1/editing/generate", &edit("d"), Some(&token))
        .await;
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 3000 && retry <= 3600, "retry after {retry}");
    assert_problem(res, 429, "rate_limited").await;
    assert_eq!(
        balance(&app, &token).await["balance_credits"],
        8,
        "two edits charged, one refunded"
    );
}

#[tokio::test]
async fn cancelling_a_queued_generation_refunds_exactly_once() {
    let app = spawn_app_with(PAID).await;
    let (token, _) = app.login(1).await;
    grant(&app, 1, 2).await;
    let upload = upload_editing(&app, &token).await;
    let g: Value = app
        .post_json(
            "/api/v1/editing/generate",
            &json!({"upload_id": upload, "prompt": "p", "client_request_id": "x"}),
            Some(&token),
        )
        .await
        .json()
        .await
        .unwrap();
    let path = format!(
        "/api/v1/generations/{}/cancel",
        g["generation"]["id"].as_str().unwrap()
    );
    let res = app
        .client
        .post(app.url(&path))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.json::<Value>().await.unwrap()["generation"]["status"],
        "canceled"
    );
    let again = app
        .client
        .post(app.url(&path))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_problem(again, 409, "not_cancelable").await;
    assert_eq!(balance(&app, &token).await["balance_credits"], 2);
    let (other, _) = app.login(2).await;
    assert_problem(
        app.client
            .post(app.url(&path))
            .bearer_auth(&other)
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn fifty_parallel_requests_with_credits_for_ten_accept_exactly_ten() {
    let app = spawn_app_with(&[
        ("FREE_ACTIONS_PER_MONTH", "0"),
        ("MAX_ACTIVE_TASKS_PER_USER", "100"),
        ("MAX_TASKS_PER_USER_PER_HOUR", "100"),
        ("DATABASE_POOL_SIZE", "16"),
    ])
    .await;
    let (token, _) = app.login(1).await;
    grant(&app, 1, 20).await;
    let (person, item) = upload_fitting(&app, &token).await;
    let requests = (0..50).map(|i| {
        let body = json!({"person_upload_id": person, "item_upload_id": item, "zone": "dress", "client_request_id": format!("r{i}")});
        let req = app.client.post(app.url("/api/v1/fitting/generate")).bearer_auth(&token).json(&body);
        async move { req.send().await.unwrap().status().as_u16() }
    });
    let statuses = futures_util::future::join_all(requests).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 202).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 402).count(),
        40,
        "{statuses:?}"
    );
    assert_eq!(balance(&app, &token).await["balance_credits"], 0);
    let uid = app.user_id(1).await;
    let mut conn = app.conn().await;
    let entries = ledger::list(&mut conn, uid, None, 1000).await.unwrap();
    assert_eq!(entries.iter().map(|e| e.delta).sum::<i64>(), 0);
    assert_eq!(entries.iter().filter(|e| e.reason == "charge").count(), 10);
}

async fn kie_app(kie: &FakeKie) -> TestApp {
    spawn_app_with(&[
        ("FREE_ACTIONS_PER_MONTH", "0"),
        ("KIE_API_KEY", API_KEY),
        ("KIE_BASE_URL", &kie.base_url),
        ("WORKER_BACKOFF_BASE_MS", "50"),
        ("WORKER_BACKOFF_MAX_SECS", "1"),
    ])
    .await
}

#[tokio::test]
async fn a_provider_failure_fails_the_generation_and_refunds_it_once() {
    let kie = FakeKie::start().await;
    kie.set_default_plan(Plan::Fail {
        code: "500".into(),
        msg: "content policy".into(),
    });
    let app = kie_app(&kie).await;
    let (token, _) = app.login(1).await;
    grant(&app, 1, 2).await;
    let (person, item) = upload_fitting(&app, &token).await;
    let url = format!(
        "{}/api/v1/ws?token={token}",
        app.address.replacen("http", "ws", 1)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(next_event(&mut ws).await["type"], "snapshot");
    let _worker = Worker::start(&app);
    let body = json!({"person_upload_id": person, "item_upload_id": item, "zone": "shoes", "client_request_id": "f"});
    let g: Value = app
        .post_json("/api/v1/fitting/generate", &body, Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(balance(&app, &token).await["balance_credits"], 0);
    let event = loop {
        let event = next_event(&mut ws).await;
        if event["type"] == "generation.failed" {
            break event;
        }
    };
    assert_eq!(event["refunded"], true);
    assert_eq!(event["generation"]["status"], "failed");
    let failed = wait_for_status(
        &app,
        &token,
        g["generation"]["id"].as_str().unwrap(),
        "failed",
    )
    .await;
    assert_eq!(failed["error_code"], "generation_failed");
    assert!(
        failed["error_message"]
            .as_str()
            .unwrap()
            .contains("content policy")
    );
    assert_eq!(
        balance(&app, &token).await["balance_credits"],
        2,
        "refunded"
    );
    let uid = app.user_id(1).await;
    let mut conn = app.conn().await;
    let refunds = ledger::list(&mut conn, uid, None, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.reason == "refund")
        .count();
    assert_eq!(refunds, 1);
    assert_eq!(kie.create_calls().len(), 1);
}

#[tokio::test]
async fn a_failure_of_ours_tells_the_user_what_happened_not_our_internals() {
    let kie = FakeKie::start().await;
    // Our provider account is out of credits: an operator's problem, not the user's to read.
    kie.push_create(Mode::Code(402, "Credits insufficient for account 7731"));
    let app = kie_app(&kie).await;
    let (token, _) = app.login(1).await;
    grant(&app, 1, 2).await;
    let (person, item) = upload_fitting(&app, &token).await;
    let _worker = Worker::start(&app);
    let body = json!({"person_upload_id": person, "item_upload_id": item, "zone": "shoes", "client_request_id": "acct"});
    let g: Value = app
        .post_json("/api/v1/fitting/generate", &body, Some(&token))
        .await
        .json()
        .await
        .unwrap();
    let id = g["generation"]["id"].as_str().unwrap();
    let failed = wait_for_status(&app, &token, id, "failed").await;
    assert_eq!(failed["error_code"], "provider_account");
    assert_eq!(
        failed["error_message"],
        "the image service is not available; try again later"
    );
    // Operators still have the whole story.
    let mut conn = app.conn().await;
    let stored: Option<String> = {
        use atelier::db::schema::generations;
        use diesel::QueryDsl as _;
        use diesel_async::RunQueryDsl as _;
        generations::table
            .find(uuid::Uuid::parse_str(id).unwrap())
            .select(generations::error_message)
            .first(&mut conn)
            .await
            .unwrap()
    };
    assert!(stored.unwrap().contains("account 7731"));
    assert_eq!(
        balance(&app, &token).await["balance_credits"],
        2,
        "refunded"
    );
}

#[tokio::test]
async fn a_server_error_then_success_creates_exactly_one_task() {
    let kie = FakeKie::start().await;
    kie.push_create(Mode::Code(500, "Internal server error"));
    let app = kie_app(&kie).await;
    let (token, _) = app.login(1).await;
    grant(&app, 1, 2).await;
    let (person, item) = upload_fitting(&app, &token).await;
    let _worker = Worker::start(&app);
    let body = json!({"person_upload_id": person, "item_upload_id": item, "zone": "glasses", "client_request_id": "k"});
    let g: Value = app
        .post_json("/api/v1/fitting/generate", &body, Some(&token))
        .await
        .json()
        .await
        .unwrap();
    let done = wait_for_status(
        &app,
        &token,
        g["generation"]["id"].as_str().unwrap(),
        "succeeded",
    )
    .await;
    assert_eq!(kie.task_ids().len(), 1, "one paid task");
    let create = &kie.create_calls()[1];
    let sent: Value = serde_json::from_slice(&create.body).unwrap();
    assert_eq!(sent["input"]["image_urls"].as_array().unwrap().len(), 2);
    assert!(
        sent["input"]["prompt"]
            .as_str()
            .unwrap()
            .contains("glasses")
    );
    assert!(
        done["result"]["url"]
            .as_str()
            .unwrap()
            .contains("/media/r/")
    );
    assert_eq!(balance(&app, &token).await["balance_credits"], 0);
}

/// The next JSON event on the socket (pings and other frames skipped), within 15 s.
async fn next_event<S>(ws: &mut S) -> Value
where
    S: futures_util::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin,
{
    use futures_util::StreamExt as _;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("an event in time")
            .unwrap()
            .unwrap();
        if let tokio_tungstenite::tungstenite::Message::Text(text) = msg {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

#[tokio::test]
async fn progress_reaches_the_socket_from_queued_to_succeeded_and_a_reconnect_gets_the_snapshot() {
    let app = spawn_app_with(&[
        ("FREE_ACTIONS_PER_MONTH", "0"),
        ("SANDBOX_GENERATION_MS", "1500"),
    ])
    .await;
    let (token, _) = app.login(1).await;
    grant(&app, 1, 2).await;
    let upload = upload_editing(&app, &token).await;
    let url = format!(
        "{}/api/v1/ws?token={token}",
        app.address.replacen("http", "ws", 1)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url.clone()).await.unwrap();
    let snapshot = next_event(&mut ws).await;
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["generations"], json!([]));

    let body =
        json!({"upload_id": upload, "prompt": "golden hour light", "client_request_id": "w"});
    let g: Value = app
        .post_json("/api/v1/editing/generate", &body, Some(&token))
        .await
        .json()
        .await
        .unwrap();
    let id = g["generation"]["id"].clone();
    let queued = next_event(&mut ws).await;
    assert_eq!(
        (queued["type"].as_str(), &queued["generation"]["id"]),
        (Some("generation.queued"), &id)
    );
    assert!(queued["position"].is_number());

    // A socket opened now starts from the snapshot: the generation is active.
    let (mut late, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let snapshot = next_event(&mut late).await;
    assert_eq!(snapshot["generations"][0]["id"], id);

    let _worker = Worker::start(&app);
    let mut seen = Vec::new();
    loop {
        let event = next_event(&mut ws).await;
        assert_eq!(event["generation"]["id"], id);
        let kind = event["type"].as_str().unwrap().to_owned();
        seen.push(kind.clone());
        if kind == "generation.succeeded" {
            assert!(event["result_url"].as_str().unwrap().contains("/media/r/"));
            break;
        }
    }
    assert_eq!(
        seen.first().map(String::as_str),
        Some("generation.running"),
        "{seen:?}"
    );
    assert!(seen.iter().any(|k| k == "generation.progress"), "{seen:?}");
}

#[tokio::test]
async fn a_finished_result_is_sent_to_the_users_telegram_chat() {
    use crate::fakes::telegram::{BOT_TOKEN, FakeTelegram};
    let tg = FakeTelegram::start().await;
    let app = spawn_app_with(&[
        ("FREE_ACTIONS_PER_MONTH", "1"),
        ("SANDBOX_GENERATION_MS", "200"),
        ("TELEGRAM_BOT_TOKEN", BOT_TOKEN),
        ("TELEGRAM_API_BASE_URL", &tg.base_url),
    ])
    .await;
    let user =
        json!({"id": 555, "first_name": "Anna", "language_code": "ru", "allows_write_to_pm": true})
            .to_string();
    let auth_date = crate::helpers::now().to_string();
    let init =
        atelier::auth::initdata::sign(BOT_TOKEN, &[("user", &user), ("auth_date", &auth_date)]);
    let login: Value = app
        .post_json("/api/v1/auth/telegram", &json!({"init_data": init}), None)
        .await
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().unwrap().to_owned();
    let upload = upload_editing(&app, &token).await;
    let _worker = Worker::start(&app);
    let body = json!({"upload_id": upload, "prompt": "snow", "client_request_id": "t"});
    let g: Value = app
        .post_json("/api/v1/editing/generate", &body, Some(&token))
        .await
        .json()
        .await
        .unwrap();
    wait_for_status(
        &app,
        &token,
        g["generation"]["id"].as_str().unwrap(),
        "succeeded",
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let call = loop {
        if let Some(call) = tg.calls().into_iter().find(|c| c.method == "sendPhoto") {
            break call;
        }
        assert!(std::time::Instant::now() < deadline, "no sendPhoto");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(call.chat_id(), Some(555));
    assert!(call.params["caption"].starts_with("Готово"));
    let photo = call.photo.unwrap();
    assert!(image::load_from_memory(&photo.bytes).is_ok());
}

#[tokio::test]
async fn a_signed_kie_callback_wakes_the_job_and_a_forged_one_changes_nothing() {
    use crate::fakes::kie::{CallbackOptions, Signing, State, WEBHOOK_KEY};
    let kie = FakeKie::start().await;
    kie.set_default_plan(Plan::Manual);
    let app = spawn_app_with(&[
        ("FREE_ACTIONS_PER_MONTH", "0"),
        ("KIE_API_KEY", API_KEY),
        ("KIE_BASE_URL", &kie.base_url),
        (
            "KIE_WEBHOOK_HMAC_KEY",
            std::str::from_utf8(WEBHOOK_KEY).unwrap(),
        ),
    ])
    .await;
    let (token, _) = app.login(1).await;
    grant(&app, 1, 1).await;
    let upload = upload_editing(&app, &token).await;
    let _worker = Worker::start(&app);
    let body = json!({"upload_id": upload, "prompt": "night city", "client_request_id": "cb"});
    let g: Value = app
        .post_json("/api/v1/editing/generate", &body, Some(&token))
        .await
        .json()
        .await
        .unwrap();
    let id = g["generation"]["id"].as_str().unwrap().to_owned();
    wait_for_status(&app, &token, &id, "running").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let task = loop {
        if let Some(task) = kie.task_ids().first().cloned() {
            break task;
        }
        assert!(std::time::Instant::now() < deadline, "no task created");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let url = app.url("/api/v1/callbacks/kie");
    let forged = CallbackOptions {
        signing: Signing::BadSignature,
        ..CallbackOptions::default()
    };
    assert_eq!(kie.send_callback(&url, &task, &forged).await, 401);
    assert_eq!(
        kie.send_callback(&url, "task_google_unknown", &CallbackOptions::default())
            .await,
        404
    );
    // Once the job has polled and is waiting out its 2.5 s pause, the task finishes and the
    // callback wakes the job at once.
    while kie.record_calls().is_empty() {
        assert!(std::time::Instant::now() < deadline, "never polled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let polls_before = kie.record_calls().len();
    kie.set_state(&task, State::Success);
    let callback = kie.callback(&task, &CallbackOptions::default());
    let res = app
        .client
        .post(&url)
        .header("X-Webhook-Timestamp", callback.timestamp.unwrap())
        .header("X-Webhook-Signature", callback.signature.unwrap())
        .body(callback.body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap()["woken"],
        true,
        "the waiting job was made due at once"
    );
    wait_for_status(&app, &token, &id, "succeeded").await;
    assert!(kie.record_calls().len() > polls_before);
    assert_eq!(kie.create_calls().len(), 1);
}

#[tokio::test]
async fn a_job_whose_worker_died_resumes_polling_without_a_second_task() {
    let kie = FakeKie::start().await;
    kie.set_default_plan(Plan::Manual);
    let app = kie_app(&kie).await;
    let (token, _) = app.login(1).await;
    grant(&app, 1, 1).await;
    let upload = upload_editing(&app, &token).await;
    let body = json!({"upload_id": upload, "prompt": "rain", "client_request_id": "crash"});
    let g: Value = app
        .post_json("/api/v1/editing/generate", &body, Some(&token))
        .await
        .json()
        .await
        .unwrap();
    let id = g["generation"]["id"].as_str().unwrap().to_owned();
    {
        let _first = Worker::start(&app);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while kie.task_ids().is_empty() {
            assert!(std::time::Instant::now() < deadline, "no task created");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // The first worker is gone; its job is claimed again once its lease has lapsed.
    let mut conn = app.conn().await;
    diesel_async::SimpleAsyncConnection::batch_execute(
        &mut conn,
        "UPDATE jobs SET status = 'running', locked_by = 'dead-worker', locked_until = now() - interval '1 second', run_at = now()",
    )
    .await
    .unwrap();
    let task = kie.task_ids()[0].clone();
    kie.set_state(&task, crate::fakes::kie::State::Success);
    let _second = Worker::start(&app);
    wait_for_status(&app, &token, &id, "succeeded").await;
    assert_eq!(
        kie.create_calls().len(),
        1,
        "the reclaimed job resumed polling"
    );
}

/// End-to-end pipeline figures with the sandbox provider: the delay from a generate request to
/// its `generation.queued` event, and generations completed per second by 4 job slots. Run by
/// `make bench-pipeline` (scripts/bench-pipeline.sh), which records the figures.
#[tokio::test]
#[ignore = "benchmark; run with scripts/bench-pipeline.sh"]
async fn bench_pipeline() {
    let total: usize = std::env::var("PIPELINE_BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let app = spawn_app_with(&[
        ("FREE_ACTIONS_PER_MONTH", "0"),
        ("SANDBOX_GENERATION_MS", "0"),
        ("MAX_ACTIVE_TASKS_PER_USER", "100000"),
        ("MAX_TASKS_PER_USER_PER_HOUR", "100000"),
        ("WORKER_CONCURRENCY", "4"),
        ("DATABASE_POOL_SIZE", "24"),
    ])
    .await;
    let (token, _) = app.login(1).await;
    grant(&app, 1, 10 * total as i64).await;
    let upload = upload_editing(&app, &token).await;

    // Request → queued event, one at a time, over a real socket.
    let url = format!(
        "{}/api/v1/ws?token={token}",
        app.address.replacen("http", "ws", 1)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    next_event(&mut ws).await;
    let mut delays = Vec::new();
    for i in 0..50 {
        let body =
            json!({"upload_id": upload, "prompt": "p", "client_request_id": format!("lat{i}")});
        let sent = std::time::Instant::now();
        assert_eq!(
            app.post_json("/api/v1/editing/generate", &body, Some(&token))
                .await
                .status(),
            202
        );
        loop {
            if next_event(&mut ws).await["type"] == "generation.queued" {
                break;
            }
        }
        delays.push(sent.elapsed().as_secs_f64() * 1000.0);
    }
    delays.sort_by(f64::total_cmp);
    let pct = |p: f64| delays[((delays.len() - 1) as f64 * p).round() as usize];

    // Throughput: the queue filled first, then drained by one runner with 4 slots.
    let posts = (0..total).map(|i| {
        let body =
            json!({"upload_id": upload, "prompt": "p", "client_request_id": format!("tp{i}")});
        let req = app
            .client
            .post(app.url("/api/v1/editing/generate"))
            .bearer_auth(&token)
            .json(&body);
        async move { req.send().await.unwrap().status().as_u16() }
    });
    let statuses = futures_util::stream::iter(posts)
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    assert!(statuses.iter().all(|s| *s == 202));
    let all = total + 50;
    let cpu_before = (cpu_ms(Some(std::process::id())), cpu_ms(None));
    let started = std::time::Instant::now();
    // "4 workers": four job runners, as four `atelier worker` processes would be, each with the
    // default WORKER_CONCURRENCY of 4.
    let workers: usize = std::env::var("PIPELINE_BENCH_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let _workers: Vec<Worker> = (0..workers).map(|_| Worker::start(&app)).collect();
    let mut conn = app.conn().await;
    loop {
        let done: i64 = diesel_async::RunQueryDsl::get_result(
            diesel::QueryDsl::count(diesel::QueryDsl::filter(
                atelier::db::schema::generations::table,
                diesel::ExpressionMethods::eq(
                    atelier::db::schema::generations::status,
                    "succeeded",
                ),
            )),
            &mut conn,
        )
        .await
        .unwrap();
        if done as usize >= all {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "only {done} of {all} finished"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain = started.elapsed().as_secs_f64();
    let cpu_per = |before: f64, after: f64| (after - before) / all as f64;
    println!(
        "PIPELINE_BENCH|{all}|{drain:.2}|{:.1}|{:.1}|{:.1}|{:.1}|{workers}|{:.2}|{:.2}",
        all as f64 / drain,
        pct(0.5),
        pct(0.99),
        delays[delays.len() - 1],
        cpu_per(cpu_before.0, cpu_ms(Some(std::process::id()))),
        cpu_per(cpu_before.1, cpu_ms(None)),
    );
}

/// CPU time (user + system, ms) used so far by one process, or by all PostgreSQL processes
/// together, from /proc (Linux; 0 elsewhere). Divided by the work done, it tells where the
/// time goes whatever else the machine is doing.
fn cpu_ms(pid: Option<u32>) -> f64 {
    let ticks_of = |stat: &str| -> Option<(String, u64)> {
        let (comm, rest) = stat.split_once(" (")?.1.rsplit_once(") ")?;
        let fields: Vec<&str> = rest.split(' ').collect();
        Some((
            comm.to_owned(),
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?,
        ))
    };
    let stats: Vec<String> = match pid {
        Some(pid) => std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .into_iter()
            .collect(),
        None => std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
            .collect(),
    };
    let ticks: u64 = stats
        .iter()
        .filter_map(|s| ticks_of(s))
        .filter(|(comm, _)| pid.is_some() || comm == "postgres")
        .map(|(_, t)| t)
        .sum();
    // USER_HZ is 100 on Linux.
    ticks as f64 * 10.0
}
