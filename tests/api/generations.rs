//! The generation pipeline end to end: charging in the request's transaction, the worker with
//! the sandbox provider and with a fake kie.ai, refunds, idempotency, limits and cancelling.

use std::time::Duration;

use atelier::db::ledger;
use futures_util::StreamExt as _;
use serde_json::{Value, json};

use crate::fakes::kie::{API_KEY, FakeKie, Mode, Plan};
use crate::helpers::{
    Generation, GenerationEnvelope, NewUser, TestApp, Worker, assert_problem, ok, spawn_app_with,
};

const PAID: &[(&str, &str)] = &[
    ("FREE_ACTIONS_PER_MONTH", "0"),
    ("SANDBOX_GENERATION_MS", "300"),
];

#[tokio::test]
async fn a_fitting_is_charged_two_credits_and_delivered_by_the_sandbox() {
    let app = spawn_app_with(PAID).await;
    let anna = app.user().await;
    anna.grant(3).await;
    let upload = anna.upload_fitting().await;
    let mut ws = anna.socket().await;
    assert_eq!(ws.next_event().await.kind, "snapshot");
    let _worker = Worker::start(&app);
    let g = anna.fit_zone(&upload, "top", "c1").await;
    assert_eq!(g.status, "queued");
    assert_eq!(g.kind, "fitting");
    assert_eq!(g.credits_spent, 2);
    assert_eq!(g.paid_with, "credits");
    assert_eq!(anna.credits().await, 1);

    // Over the socket: queued, running, (progress), succeeded with the result's link.
    let mut seen = Vec::new();
    let succeeded = loop {
        let event = ws.next_event().await;
        assert_eq!(event.generation().id, g.id);
        seen.push(event.kind.clone());
        if event.kind == "generation.succeeded" {
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
    assert_eq!(succeeded.generation().status, "succeeded");

    let done = anna.wait_for_status(g.id, "succeeded").await;
    assert_eq!(done.progress, 100);
    let url = done.result.unwrap().url;
    let path = |u: &str| u.split('?').next().unwrap().to_owned();
    assert_eq!(path(&succeeded.result_url.unwrap()), path(&url));
    let res = app.client.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let result = image::load_from_memory(&res.bytes().await.unwrap()).unwrap();
    assert_eq!((result.width(), result.height()), (400, 600));
    assert_eq!(anna.credits().await, 1, "success costs nothing more");
}

#[tokio::test]
async fn an_edit_costs_one_credit_or_a_free_action_and_free_results_are_watermarked() {
    let app = spawn_app_with(&[
        ("FREE_ACTIONS_PER_MONTH", "1"),
        ("SANDBOX_GENERATION_MS", "200"),
    ])
    .await;
    let anna = app.user().await;
    anna.grant(1).await;
    let upload = anna.upload_editing().await;
    let _worker = Worker::start(&app);
    let mut ids = Vec::new();
    for (crid, paid_with) in [("e1", "free_allowance"), ("e2", "credits")] {
        let g = anna
            .edit(&json!({"upload_id": upload.id, "prompt": "make it\u{0} warmer\n", "client_request_id": crid}))
            .await;
        assert_eq!(g.paid_with, paid_with);
        assert_eq!(g.prompt.as_deref(), Some("make it warmer"));
        ids.push(g.id);
    }
    let b = anna.balance().await;
    assert_eq!((b.balance_credits, b.free_actions_left), (0, 0));
    let free = anna.wait_for_status(ids[0], "succeeded").await;
    let paid = anna.wait_for_status(ids[1], "succeeded").await;
    let pixels = |g: Generation| {
        let url = g.result.unwrap().url;
        let client = app.client.clone();
        async move {
            image::load_from_memory(&client.get(url).send().await.unwrap().bytes().await.unwrap())
                .unwrap()
                .to_rgb8()
        }
    };
    let (free, paid) = (pixels(free).await, pixels(paid).await);
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
    let anna = app.user().await;
    anna.grant(5).await;
    let upload = anna.upload_editing().await;
    let body = json!({"upload_id": upload.id, "prompt": "blue sky"});
    let send = || async {
        let res = anna
            .request(reqwest::Method::POST, "/api/v1/editing/generate")
            .header("Idempotency-Key", "same")
            .json(&body)
            .send()
            .await
            .unwrap();
        ok::<GenerationEnvelope>(res, 202, "edit").await.generation
    };
    let (a, b) = (send().await, send().await);
    assert_eq!(a.id, b.id);
    assert_eq!(anna.credits().await, 4);
    let res = anna
        .post(
            "/api/v1/editing/generate",
            &json!({"upload_id": upload.id, "prompt": "x"}),
        )
        .await;
    assert_problem(res, 400, "missing_client_request_id").await;
}

#[tokio::test]
async fn bad_requests_are_refused_before_any_charge() {
    let app = spawn_app_with(PAID).await;
    let anna = app.user().await;
    let upload = anna.upload_fitting().await;
    let (person, item) = (upload.person.id, upload.item.id);
    let fit = |zone: &str, crid: &str| json!({"person_upload_id": person, "item_upload_id": item, "zone": zone, "client_request_id": crid});
    assert_problem(
        anna.post("/api/v1/fitting/generate", &fit("hat", "z"))
            .await,
        422,
        "invalid_body",
    )
    .await;
    let body = assert_problem(
        anna.post("/api/v1/fitting/generate", &fit("top", "a"))
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
        anna.post("/api/v1/fitting/generate", &swapped).await,
        422,
        "wrong_upload",
    )
    .await;
    let stranger = app.user().await;
    stranger.grant(10).await;
    assert_problem(
        stranger
            .post("/api/v1/fitting/generate", &fit("top", "b"))
            .await,
        404,
        "not_found",
    )
    .await;
    let long = json!({"upload_id": person, "prompt": "x".repeat(1001), "client_request_id": "l"});
    assert_problem(
        anna.post("/api/v1/editing/generate", &long).await,
        422,
        "prompt_too_long",
    )
    .await;
    assert_eq!(stranger.credits().await, 10);
}

#[tokio::test]
async fn active_and_hourly_limits_answer_429_with_retry_after() {
    let app = spawn_app_with(&[
        ("FREE_ACTIONS_PER_MONTH", "0"),
        ("MAX_ACTIVE_TASKS_PER_USER", "2"),
        ("MAX_TASKS_PER_USER_PER_HOUR", "3"),
    ])
    .await;
    let anna = app.user().await;
    anna.grant(10).await;
    let upload = anna.upload_editing().await;
    let edit =
        |crid: &str| json!({"upload_id": upload.id, "prompt": "p", "client_request_id": crid});
    for crid in ["a", "b"] {
        anna.edit(&edit(crid)).await;
    }
    let res = anna.post("/api/v1/editing/generate", &edit("c")).await;
    assert!(res.headers().get("retry-after").is_some());
    assert_problem(res, 429, "rate_limited").await;
    // Cancelling frees a slot (and refunds); the hourly limit still counts it.
    let first = anna.edit(&edit("a")).await;
    assert_eq!(anna.cancel(first.id).await.status(), 200);
    anna.edit(&edit("c")).await;
    let res = anna.post("/api/v1/editing/generate", &edit("d")).await;
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 3000 && retry <= 3600, "retry after {retry}");
    assert_problem(res, 429, "rate_limited").await;
    assert_eq!(anna.credits().await, 8, "two edits charged, one refunded");
}

#[tokio::test]
async fn cancelling_a_queued_generation_refunds_exactly_once() {
    let app = spawn_app_with(PAID).await;
    let anna = app.user().await;
    anna.grant(2).await;
    let upload = anna.upload_editing().await;
    let g = anna
        .edit(&json!({"upload_id": upload.id, "prompt": "p", "client_request_id": "x"}))
        .await;
    let canceled: GenerationEnvelope = ok(anna.cancel(g.id).await, 200, "cancel").await;
    assert_eq!(canceled.generation.status, "canceled");
    assert_problem(anna.cancel(g.id).await, 409, "not_cancelable").await;
    assert_eq!(anna.credits().await, 2);
    let other = app.user().await;
    assert_problem(other.cancel(g.id).await, 404, "not_found").await;
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
    let anna = app.user().await;
    anna.grant(20).await;
    let upload = anna.upload_fitting().await;
    let requests = (0..50).map(|i| {
        let body = json!({"person_upload_id": upload.person.id, "item_upload_id": upload.item.id, "zone": "dress", "client_request_id": format!("r{i}")});
        let req = anna
            .request(reqwest::Method::POST, "/api/v1/fitting/generate")
            .json(&body);
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
    assert_eq!(anna.credits().await, 0);
    let uid = anna.id().await;
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
    let anna = app.user().await;
    anna.grant(2).await;
    let upload = anna.upload_fitting().await;
    let mut ws = anna.socket().await;
    assert_eq!(ws.next_event().await.kind, "snapshot");
    let _worker = Worker::start(&app);
    let g = anna.fit_zone(&upload, "shoes", "f").await;
    assert_eq!(anna.credits().await, 0);
    let event = ws.until("generation.failed").await;
    assert_eq!(event.refunded, Some(true));
    assert_eq!(event.generation().status, "failed");
    let failed = anna.wait_for_status(g.id, "failed").await;
    assert_eq!(failed.error_code.as_deref(), Some("generation_failed"));
    assert!(failed.error_message.unwrap().contains("content policy"));
    assert_eq!(anna.credits().await, 2, "refunded");
    let uid = anna.id().await;
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
    let anna = app.user().await;
    anna.grant(2).await;
    let upload = anna.upload_fitting().await;
    let _worker = Worker::start(&app);
    let g = anna.fit_zone(&upload, "shoes", "acct").await;
    let failed = anna.wait_for_status(g.id, "failed").await;
    assert_eq!(failed.error_code.as_deref(), Some("provider_account"));
    assert_eq!(
        failed.error_message.as_deref(),
        Some("the image service is not available; try again later")
    );
    // Operators still have the whole story.
    let mut conn = app.conn().await;
    let stored: Option<String> = {
        use atelier::db::schema::generations;
        use diesel::QueryDsl as _;
        use diesel_async::RunQueryDsl as _;
        generations::table
            .find(g.id)
            .select(generations::error_message)
            .first(&mut conn)
            .await
            .unwrap()
    };
    assert!(stored.unwrap().contains("account 7731"));
    assert_eq!(anna.credits().await, 2, "refunded");
}

#[tokio::test]
async fn a_server_error_then_success_creates_exactly_one_task() {
    let kie = FakeKie::start().await;
    kie.push_create(Mode::Code(500, "Internal server error"));
    let app = kie_app(&kie).await;
    let anna = app.user().await;
    anna.grant(2).await;
    let upload = anna.upload_fitting().await;
    let _worker = Worker::start(&app);
    let g = anna.fit_zone(&upload, "glasses", "k").await;
    let done = anna.wait_for_status(g.id, "succeeded").await;
    assert_eq!(kie.task_ids().len(), 1, "one paid task");
    // What we sent kie.ai, in its wire format.
    let create = &kie.create_calls()[1];
    let sent: Value = serde_json::from_slice(&create.body).unwrap();
    assert_eq!(sent["input"]["image_urls"].as_array().unwrap().len(), 2);
    assert!(
        sent["input"]["prompt"]
            .as_str()
            .unwrap()
            .contains("glasses")
    );
    assert!(done.result.unwrap().url.contains("/media/r/"));
    assert_eq!(anna.credits().await, 0);
}

#[tokio::test]
async fn progress_reaches_the_socket_from_queued_to_succeeded_and_a_reconnect_gets_the_snapshot() {
    let app = spawn_app_with(&[
        ("FREE_ACTIONS_PER_MONTH", "0"),
        ("SANDBOX_GENERATION_MS", "1500"),
    ])
    .await;
    let anna = app.user().await;
    anna.grant(2).await;
    let upload = anna.upload_editing().await;
    let mut ws = anna.socket().await;
    let snapshot = ws.next_json().await;
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["generations"], json!([]));

    let g = anna
        .edit(&json!({"upload_id": upload.id, "prompt": "golden hour light", "client_request_id": "w"}))
        .await;
    let queued = ws.next_event().await;
    assert_eq!(
        (queued.kind.as_str(), queued.generation().id),
        ("generation.queued", g.id)
    );
    assert!(queued.position.is_some());

    // A socket opened now starts from the snapshot: the generation is active.
    let mut late = anna.socket().await;
    let snapshot = late.next_event().await;
    assert_eq!(snapshot.generations.unwrap()[0].id, g.id);

    let _worker = Worker::start(&app);
    let mut seen = Vec::new();
    loop {
        let event = ws.next_event().await;
        assert_eq!(event.generation().id, g.id);
        seen.push(event.kind.clone());
        if event.kind == "generation.succeeded" {
            assert!(event.result_url.unwrap().contains("/media/r/"));
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
    let anna = app
        .user_with(
            NewUser::id(555)
                .first_name("Anna")
                .language("ru")
                .field("username", Value::Null)
                .field("allows_write_to_pm", json!(true))
                .bot_token(BOT_TOKEN),
        )
        .await;
    let upload = anna.upload_editing().await;
    let _worker = Worker::start(&app);
    let g = anna
        .edit(&json!({"upload_id": upload.id, "prompt": "snow", "client_request_id": "t"}))
        .await;
    anna.wait_for_status(g.id, "succeeded").await;
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
    let anna = app.user().await;
    anna.grant(1).await;
    let upload = anna.upload_editing().await;
    let _worker = Worker::start(&app);
    let g = anna
        .edit(&json!({"upload_id": upload.id, "prompt": "night city", "client_request_id": "cb"}))
        .await;
    anna.wait_for_status(g.id, "running").await;
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
    #[derive(serde::Deserialize)]
    struct Woken {
        woken: bool,
    }
    let answer: Woken = ok(res, 200, "callback").await;
    assert!(answer.woken, "the waiting job was made due at once");
    anna.wait_for_status(g.id, "succeeded").await;
    assert!(kie.record_calls().len() > polls_before);
    assert_eq!(kie.create_calls().len(), 1);
}

#[tokio::test]
async fn a_job_whose_worker_died_resumes_polling_without_a_second_task() {
    let kie = FakeKie::start().await;
    kie.set_default_plan(Plan::Manual);
    let app = kie_app(&kie).await;
    let anna = app.user().await;
    anna.grant(1).await;
    let upload = anna.upload_editing().await;
    let g = anna
        .edit(&json!({"upload_id": upload.id, "prompt": "rain", "client_request_id": "crash"}))
        .await;
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
    anna.wait_for_status(g.id, "succeeded").await;
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
    let anna = app.user().await;
    anna.grant(10 * total as i64).await;
    let upload = anna.upload_editing().await.id;

    // Request → queued event, one at a time, over a real socket.
    let mut ws = anna.socket().await;
    ws.next_event().await;
    let mut delays = Vec::new();
    for i in 0..50 {
        let body =
            json!({"upload_id": upload, "prompt": "p", "client_request_id": format!("lat{i}")});
        let sent = std::time::Instant::now();
        anna.edit(&body).await;
        ws.until("generation.queued").await;
        delays.push(sent.elapsed().as_secs_f64() * 1000.0);
    }
    delays.sort_by(f64::total_cmp);
    let pct = |p: f64| delays[((delays.len() - 1) as f64 * p).round() as usize];

    // Throughput: the queue filled first, then drained by one runner with 4 slots.
    let posts = (0..total).map(|i| {
        let body =
            json!({"upload_id": upload, "prompt": "p", "client_request_id": format!("tp{i}")});
        let req = anna
            .request(reqwest::Method::POST, "/api/v1/editing/generate")
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
