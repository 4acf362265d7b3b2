//! The kie.ai and Telegram clients against fakes that speak the vendors' wire formats.
//! No database or app server: only the clients, the fakes, and the test's runtime.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::web::{self, Bytes};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};
use atelier::providers::kie::{KieClient, KieError, parse_callback, verify_callback_signature};
use atelier::providers::telegram::{TelegramClient, TelegramError};
use atelier::providers::{
    AspectRatio, CreateTask, ErrorAction, GenerationProvider, OutputFormat, RetryPolicy, Sleeper,
    TaskId, TaskState,
};
use secrecy::SecretString;

use crate::fakes::kie::{self as fake_kie, CallbackOptions, FakeKie, Plan, Signing};
use crate::fakes::telegram::{self as fake_tg, FakeTelegram};
use crate::fakes::{self, Running};

const CALLBACK_URL: &str = "https://atelier.example/api/v1/callbacks/kie";
const SKEW: u64 = 300;

fn kie(fake: &FakeKie) -> KieClient {
    kie_with_timeout(fake, Duration::from_secs(5))
}

fn kie_with_timeout(fake: &FakeKie, timeout: Duration) -> KieClient {
    KieClient::new(
        &fake.base_url,
        SecretString::from(fake_kie::API_KEY),
        timeout,
    )
    .unwrap()
    .with_retry_policy(RetryPolicy::new(
        2,
        Duration::from_millis(5),
        Duration::from_millis(20),
    ))
}

fn edit_task(fake: &FakeKie) -> CreateTask {
    CreateTask {
        model: fake_kie::EDIT_MODEL.into(),
        prompt: "Dress the person in the first photo in the garment from the second photo".into(),
        image_urls: vec![
            format!("{}/media/person.png?sig=abc", fake.base_url),
            format!("{}/media/item.png?sig=def", fake.base_url),
        ],
        aspect_ratio: AspectRatio::Portrait3x4,
        output_format: OutputFormat::Png,
        callback_url: Some(CALLBACK_URL.into()),
    }
}

/// A sleeper that records what it was asked to wait and returns at once.
fn recording_sleeper() -> (Sleeper, Arc<Mutex<Vec<Duration>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    let sleeper = Sleeper::new(move |d| {
        sink.lock().unwrap().push(d);
        Box::pin(async {})
    });
    (sleeper, log)
}

/// A port nothing listens on.
fn closed_port_url() -> String {
    let (listener, url) = fakes::bind();
    drop(listener);
    url
}

// ---------------------------------------------------------------- kie.ai

#[tokio::test]
async fn kie_create_poll_download_happy_path() {
    let fake = FakeKie::start().await;
    let client = kie(&fake);

    let task_id = client.create_task(&edit_task(&fake)).await.unwrap();
    assert!(task_id.starts_with("task_google_"), "{task_id}");

    let calls = fake.create_calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.method, "POST");
    assert_eq!(
        call.header("authorization"),
        Some(format!("Bearer {}", fake_kie::API_KEY).as_str())
    );
    let body = call.json();
    assert_eq!(body["model"], fake_kie::EDIT_MODEL);
    assert_eq!(body["callBackUrl"], CALLBACK_URL);
    assert_eq!(body["input"]["aspect_ratio"], "3:4");
    assert_eq!(body["input"]["output_format"], "png");
    assert_eq!(body["input"]["image_urls"].as_array().unwrap().len(), 2);
    assert!(
        body["input"]["prompt"]
            .as_str()
            .unwrap()
            .starts_with("Dress")
    );
    assert!(body["input"].get("image_size").is_none());

    let mut seen = Vec::new();
    let urls = loop {
        let info = client.record_info(&task_id).await.unwrap();
        assert_eq!(info.task_id.as_str(), task_id);
        seen.push((info.state.clone(), info.progress));
        if let TaskState::Success { result_urls } = info.state {
            break result_urls;
        }
        assert!(seen.len() < 10, "never finished: {seen:?}");
    };
    assert_eq!(
        seen,
        vec![
            (TaskState::Waiting, None),
            (TaskState::Queuing, None),
            (TaskState::Generating, Some(60)),
            (
                TaskState::Success {
                    result_urls: urls.clone()
                },
                Some(100)
            ),
        ]
    );
    assert_eq!(
        fake.record_calls()[0].query_param("taskId").as_deref(),
        Some(task_id.as_str())
    );

    let bytes = client.download(&urls[0], 10 << 20).await.unwrap();
    assert_eq!(bytes, fake.png());
    assert_eq!(
        image::guess_format(&bytes).unwrap(),
        image::ImageFormat::Png
    );
    // The bearer key stays with the API: result hosts are third parties.
    let download = fake
        .requests()
        .into_iter()
        .find(|r| r.path.starts_with("/results/"))
        .unwrap();
    assert_eq!(download.header("authorization"), None);
}

#[tokio::test]
async fn kie_text_to_image_sends_no_image_urls_and_no_callback() {
    let fake = FakeKie::start().await;
    let req = CreateTask {
        model: fake_kie::TEXT_MODEL.into(),
        prompt: "A linen summer dress on a hanger".into(),
        image_urls: vec![],
        aspect_ratio: AspectRatio::Square,
        output_format: OutputFormat::Jpeg,
        callback_url: None,
    };
    kie(&fake).create_task(&req).await.unwrap();
    let body = fake.create_calls()[0].json();
    assert!(body.get("callBackUrl").is_none(), "{body}");
    assert!(body["input"].get("image_urls").is_none(), "{body}");
    assert_eq!(body["input"]["output_format"], "jpeg");
    assert_eq!(body["input"]["aspect_ratio"], "1:1");
}

#[tokio::test]
async fn kie_http_200_error_codes_are_typed_and_create_is_never_retried() {
    let fake = FakeKie::start().await;
    let client = kie(&fake);
    let cases: [(i64, ErrorAction, bool, &str); 9] = [
        (401, ErrorAction::Final, true, "provider_account"),
        (402, ErrorAction::Final, true, "provider_account"),
        (433, ErrorAction::Final, true, "provider_account"),
        (505, ErrorAction::Final, true, "provider_account"),
        (422, ErrorAction::Final, false, "provider_rejected"),
        (429, ErrorAction::Retry, false, "provider_rate_limited"),
        (455, ErrorAction::Retry, false, "provider_unavailable"),
        (500, ErrorAction::Retry, false, "provider_unavailable"),
        (501, ErrorAction::Final, false, "generation_failed"),
    ];
    for (i, (code, action, alerts, kind)) in cases.into_iter().enumerate() {
        fake.push_create(fake_kie::Mode::Code(code, "scripted failure"));
        let err = client.create_task(&edit_task(&fake)).await.unwrap_err();
        assert_eq!(err.code(), Some(code), "{err}");
        assert_eq!(err.message(), Some("scripted failure"));
        assert_eq!(err.action(), action, "{code}");
        assert_eq!(err.is_retryable(), action == ErrorAction::Retry, "{code}");
        assert_eq!(err.alerts_operator(), alerts, "{code}");
        assert_eq!(err.kind(), kind, "{code}");
        assert!(!err.outcome_unknown());
        // One createTask per call, whatever the error: the job layer owns retries.
        assert_eq!(fake.create_calls().len(), i + 1, "{code}");
    }
    assert!(fake.task_ids().is_empty());
}

#[tokio::test]
async fn kie_status_mirroring_the_code_classifies_the_same() {
    let fake = FakeKie::start().await;
    fake.mirror_status(true);
    let client = kie(&fake).with_retry_policy(RetryPolicy::none());
    fake.push_create(fake_kie::Mode::Code(402, "Credits insufficient"));
    let err = client.create_task(&edit_task(&fake)).await.unwrap_err();
    assert!(
        matches!(err, KieError::Account { code: 402, .. }),
        "{err:?}"
    );
    assert!(err.alerts_operator());

    fake.push_record(fake_kie::Mode::Code(429, "Too many requests"));
    let err = client.record_info("task_google_1").await.unwrap_err();
    assert!(matches!(err, KieError::RateLimited { .. }), "{err:?}");
    assert!(err.is_retryable());

    let err = client.record_info("task_google_404").await.unwrap_err();
    assert!(
        matches!(err, KieError::TaskNotFound { code: 422, .. }),
        "{err:?}"
    );

    // A status-only error page (no envelope) still classifies by the status.
    fake.push_create(fake_kie::Mode::Http(
        503,
        "<html>Service Unavailable</html>",
    ));
    let err = client.create_task(&edit_task(&fake)).await.unwrap_err();
    assert!(
        matches!(err, KieError::Unavailable { code: 503, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn kie_wrong_key_and_unknown_model_are_final() {
    let fake = FakeKie::start().await;
    let client = KieClient::new(
        &fake.base_url,
        SecretString::from("wrong-key"),
        Duration::from_secs(5),
    )
    .unwrap();
    let err = client.create_task(&edit_task(&fake)).await.unwrap_err();
    assert!(
        matches!(err, KieError::Account { code: 401, .. }),
        "{err:?}"
    );
    assert!(err.alerts_operator() && !err.is_retryable());
    assert!(!format!("{err} {err:?} {client:?}").contains(fake_kie::API_KEY));

    let mut req = edit_task(&fake);
    req.model = "google/not-a-model".into();
    let err = kie(&fake).create_task(&req).await.unwrap_err();
    assert!(
        matches!(err, KieError::Rejected { code: 422, .. }),
        "{err:?}"
    );
    assert!(!err.is_retryable() && !err.alerts_operator());
}

#[tokio::test]
async fn kie_invalid_requests_are_refused_before_sending() {
    let fake = FakeKie::start().await;
    let client = kie(&fake);
    let mut too_many = edit_task(&fake);
    too_many.image_urls = vec![format!("{}/media/x.png", fake.base_url); 11];
    let mut long_prompt = edit_task(&fake);
    long_prompt.prompt = "ж".repeat(5001);
    let mut empty_prompt = edit_task(&fake);
    empty_prompt.prompt = "  ".into();
    for req in [too_many, long_prompt, empty_prompt] {
        let err = client.create_task(&req).await.unwrap_err();
        assert!(matches!(err, KieError::InvalidRequest(_)), "{err:?}");
        assert!(!err.is_retryable());
    }
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn kie_create_timeout_is_its_own_outcome_unknown_error() {
    let fake = FakeKie::start().await;
    // kie.ai creates the task, but the reply never arrives in time.
    fake.push_create(fake_kie::Mode::SlowReply(Duration::from_secs(3)));
    let client = kie_with_timeout(&fake, Duration::from_millis(300));
    let err = client.create_task(&edit_task(&fake)).await.unwrap_err();
    assert_eq!(err, KieError::CreateTimeout);
    assert!(err.outcome_unknown());
    assert_eq!(err.action(), ErrorAction::OutcomeUnknown);
    assert_eq!(
        fake.create_calls().len(),
        1,
        "the client must not create again"
    );
    let ids = fake.task_ids();
    assert_eq!(ids.len(), 1, "the task exists upstream");
    assert_eq!(fake.state_of(&ids[0]), Some(fake_kie::State::Waiting));
}

#[tokio::test]
async fn kie_unreachable_create_is_retryable_and_not_unknown() {
    let client = KieClient::new(
        &closed_port_url(),
        SecretString::from(fake_kie::API_KEY),
        Duration::from_secs(2),
    )
    .unwrap();
    let fake = FakeKie::start().await;
    let err = client.create_task(&edit_task(&fake)).await.unwrap_err();
    assert!(matches!(err, KieError::Network(_)), "{err:?}");
    assert!(err.is_retryable() && !err.outcome_unknown());
}

#[tokio::test]
async fn kie_failed_task_reports_fail_code_and_message() {
    let fake = FakeKie::start().await;
    fake.set_default_plan(Plan::Fail {
        code: "500".into(),
        msg: "Internal server error".into(),
    });
    let client = kie(&fake);
    let id = client.create_task(&edit_task(&fake)).await.unwrap();
    let mut last = None;
    for _ in 0..4 {
        last = Some(client.record_info(&id).await.unwrap().state);
    }
    assert_eq!(
        last,
        Some(TaskState::Fail {
            fail_code: "500".into(),
            fail_msg: "Internal server error".into()
        })
    );
    assert!(last.unwrap().is_terminal());
}

#[tokio::test]
async fn kie_stuck_and_manually_moved_tasks() {
    let fake = FakeKie::start().await;
    let client = kie(&fake);
    let id = client.create_task(&edit_task(&fake)).await.unwrap();
    fake.set_plan(&id, Plan::StuckGenerating);
    for _ in 0..8 {
        client.record_info(&id).await.unwrap();
    }
    let info = client.record_info(&id).await.unwrap();
    assert_eq!(info.state, TaskState::Generating);
    assert!(info.progress.is_some_and(|p| p < 100));

    fake.set_state(
        &id,
        fake_kie::State::Fail {
            code: "400".into(),
            msg: "Your content was flagged by the moderation system".into(),
        },
    );
    let info = client.record_info(&id).await.unwrap();
    assert!(
        matches!(&info.state, TaskState::Fail { fail_msg, .. } if fail_msg.contains("flagged")),
        "{info:?}"
    );
}

#[tokio::test]
async fn kie_unknown_task_is_task_not_found_in_both_spellings() {
    let fake = FakeKie::start().await;
    let client = kie(&fake);
    let err = client.record_info("task_google_0").await.unwrap_err();
    assert_eq!(
        err,
        KieError::TaskNotFound {
            code: 422,
            msg: "recordInfo is null".into()
        }
    );
    assert_eq!(err.action(), ErrorAction::RetryBriefly);
    assert!(err.is_retryable() && !err.alerts_operator());

    fake.unknown_as_404(true);
    let err = client.record_info("task_google_0").await.unwrap_err();
    assert!(
        matches!(err, KieError::TaskNotFound { code: 404, .. }),
        "{err:?}"
    );
    fake.mirror_status(true);
    let err = client.record_info("task_google_0").await.unwrap_err();
    assert!(
        matches!(err, KieError::TaskNotFound { code: 404, .. }),
        "{err:?}"
    );
    // Not retried inside the call: "retry briefly" is the caller's window.
    assert_eq!(fake.record_calls().len(), 3);
}

#[tokio::test]
async fn kie_record_info_retries_a_transient_failure_once() {
    let fake = FakeKie::start().await;
    let client = kie(&fake);
    let id = client.create_task(&edit_task(&fake)).await.unwrap();

    fake.push_record(fake_kie::Mode::Code(500, "Server error"));
    let info = client.record_info(&id).await.unwrap();
    assert_eq!(info.state, TaskState::Waiting);
    assert_eq!(fake.record_calls().len(), 2);

    fake.push_record(fake_kie::Mode::Code(455, "Service maintenance"));
    fake.push_record(fake_kie::Mode::Http(502, "<html>Bad Gateway</html>"));
    let err = client.record_info(&id).await.unwrap_err();
    assert!(
        matches!(err, KieError::Unavailable { code: 502, .. }),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert_eq!(fake.record_calls().len(), 4, "bounded at two tries");

    // A slow recordInfo is a retryable timeout.
    fake.push_record(fake_kie::Mode::SlowReply(Duration::from_secs(3)));
    fake.push_record(fake_kie::Mode::SlowReply(Duration::from_secs(3)));
    let err = kie_with_timeout(&fake, Duration::from_millis(200))
        .record_info(&id)
        .await
        .unwrap_err();
    assert_eq!(err, KieError::Timeout);
    assert!(err.is_retryable());
}

#[tokio::test]
async fn kie_download_is_capped_while_streaming() {
    let fake = FakeKie::start().await;
    let client = kie(&fake);
    let url = fake.result_url("task_google_1");

    // Known length: refused before reading.
    let err = client
        .download(&url, fake.png().len() - 1)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        KieError::ResultTooLarge {
            max_bytes: fake.png().len() - 1
        }
    );
    assert!(!err.is_retryable());
    assert_eq!(
        client.download(&url, fake.png().len()).await.unwrap(),
        fake.png()
    );

    // Unknown length (chunked): stopped as soon as the cap is passed.
    let err = client
        .download(&fake.stream_url(200_000), 50_000)
        .await
        .unwrap_err();
    assert!(matches!(err, KieError::ResultTooLarge { .. }), "{err:?}");
    let small = client
        .download(&fake.stream_url(20_000), 50_000)
        .await
        .unwrap();
    assert_eq!(small.len(), 20_000);
}

#[tokio::test]
async fn kie_expired_result_is_final() {
    let fake = FakeKie::start().await;
    fake.images_gone(true);
    let err = kie(&fake)
        .download(&fake.result_url("task_google_1"), 1 << 20)
        .await
        .unwrap_err();
    assert_eq!(err, KieError::ResultUnavailable { status: 404 });
    assert_eq!(err.action(), ErrorAction::Final);
    assert_eq!(fake.requests().len(), 1, "a 404 is not retried");
}

#[tokio::test]
async fn kie_download_follows_only_http_redirects() {
    let fake = FakeKie::start().await;
    let client = kie(&fake);
    let err = client
        .download("file:///etc/passwd", 1 << 20)
        .await
        .unwrap_err();
    assert!(matches!(err, KieError::BadUrl(_)), "{err:?}");
    assert!(fake.requests().is_empty());

    let err = client
        .download(&fake.redirect_url("file:///etc/passwd"), 1 << 20)
        .await
        .unwrap_err();
    assert!(matches!(err, KieError::BadUrl(_)), "{err:?}");
    assert!(!err.is_retryable());

    let via = fake.redirect_url(&fake.result_url("task_google_9"));
    assert_eq!(client.download(&via, 1 << 20).await.unwrap(), fake.png());
}

#[tokio::test]
async fn kie_results_may_not_lead_into_our_networks() {
    let fake = FakeKie::start().await;
    // kie.ai at its public address: a result URL on loopback, a private, link-local or shared
    // network is refused, final, before any request (the fake on 127.0.0.1 sees none).
    let client = KieClient::new(
        "https://api.kie.ai",
        SecretString::from(fake_kie::API_KEY),
        Duration::from_secs(5),
    )
    .unwrap();
    for url in [
        fake.result_url("task_google_1"),
        fake.result_url("task_google_1")
            .replace("127.0.0.1", "localhost"),
        "http://10.0.0.7/result.png".into(),
        "http://169.254.169.254/latest/meta-data/".into(),
        "http://100.64.0.1/result.png".into(),
        "http://[::1]:9/result.png".into(),
        "http://[::ffff:127.0.0.1]/result.png".into(),
        "http://[fd00::1]/result.png".into(),
    ] {
        let err = client.download(&url, 1 << 20).await.unwrap_err();
        assert!(matches!(err, KieError::BadUrl(_)), "{url}: {err:?}");
        assert!(!err.is_retryable(), "{url}");
    }
    assert!(fake.requests().is_empty());
    // With kie.ai itself on loopback (a local stand-in), its results there are fetched: every
    // other download test here.
}

#[tokio::test]
async fn kie_callback_signatures_are_checked() {
    let fake = FakeKie::start().await;
    let id = kie(&fake).create_task(&edit_task(&fake)).await.unwrap();
    fake.set_state(&id, fake_kie::State::Success);
    let now = chrono::Utc::now().timestamp();
    let verify = |cb: &fake_kie::Callback, task_id: &str| {
        verify_callback_signature(
            fake_kie::WEBHOOK_KEY,
            task_id,
            cb.timestamp.as_deref(),
            cb.signature.as_deref(),
            now,
            SKEW,
        )
    };

    let valid = fake.callback(&id, &CallbackOptions::default());
    assert_eq!(parse_callback(&valid.body).unwrap(), id);
    assert!(verify(&valid, &id));
    assert!(!verify(&valid, "task_google_1"), "bound to the task id");

    let snake = fake.callback(
        &id,
        &CallbackOptions {
            snake_case_id: true,
            ..Default::default()
        },
    );
    assert!(String::from_utf8_lossy(&snake.body).contains("\"task_id\""));
    assert_eq!(parse_callback(&snake.body).unwrap(), id);
    assert!(verify(&snake, &id));

    let unsigned = fake.callback(
        &id,
        &CallbackOptions {
            signing: Signing::Unsigned,
            ..Default::default()
        },
    );
    assert!(!verify(&unsigned, &id));

    let bad = fake.callback(
        &id,
        &CallbackOptions {
            signing: Signing::BadSignature,
            ..Default::default()
        },
    );
    assert!(!verify(&bad, &id));

    for ts in [now - 3600, now + 3600] {
        let skewed = fake.callback(
            &id,
            &CallbackOptions {
                timestamp: Some(ts),
                ..Default::default()
            },
        );
        assert!(!verify(&skewed, &id), "timestamp {ts}");
    }
    let edge = fake.callback(
        &id,
        &CallbackOptions {
            timestamp: Some(now - SKEW as i64),
            ..Default::default()
        },
    );
    assert!(verify(&edge, &id));
    assert!(!verify_callback_signature(
        fake_kie::WEBHOOK_KEY,
        &id,
        Some("not-a-number"),
        valid.signature.as_deref(),
        now,
        SKEW
    ));
    assert!(!verify_callback_signature(
        fake_kie::WEBHOOK_KEY,
        &id,
        valid.timestamp.as_deref(),
        Some("%%%not base64"),
        now,
        SKEW
    ));
}

#[tokio::test]
async fn kie_callbacks_over_http_reach_a_verifying_receiver() {
    #[derive(Default)]
    struct Seen(Mutex<Vec<(String, bool)>>);

    async fn receive(req: HttpRequest, body: Bytes, seen: web::Data<Seen>) -> HttpResponse {
        let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
        let Ok(task_id) = parse_callback(&body) else {
            return HttpResponse::BadRequest().finish();
        };
        let ok = verify_callback_signature(
            fake_kie::WEBHOOK_KEY,
            &task_id,
            header("x-webhook-timestamp"),
            header("x-webhook-signature"),
            chrono::Utc::now().timestamp(),
            SKEW,
        );
        seen.0.lock().unwrap().push((task_id, ok));
        if ok {
            HttpResponse::Ok().finish()
        } else {
            HttpResponse::Unauthorized().finish()
        }
    }

    let seen = web::Data::new(Seen::default());
    let (listener, base) = fakes::bind();
    let data = seen.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/callbacks/kie", web::post().to(receive))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let _receiver = Running::spawn(server);
    let url = format!("{base}/callbacks/kie");

    let fake = FakeKie::start().await;
    fake.set_default_plan(Plan::Fail {
        code: "500".into(),
        msg: "Internal server error".into(),
    });
    let id = kie(&fake).create_task(&edit_task(&fake)).await.unwrap();
    fake.set_state(
        &id,
        fake_kie::State::Fail {
            code: "500".into(),
            msg: "Internal server error".into(),
        },
    );
    let stale = chrono::Utc::now().timestamp() - 10 * SKEW as i64;
    let cases = [
        (CallbackOptions::default(), 200),
        (
            CallbackOptions {
                snake_case_id: true,
                ..Default::default()
            },
            200,
        ),
        (
            CallbackOptions {
                signing: Signing::Unsigned,
                ..Default::default()
            },
            401,
        ),
        (
            CallbackOptions {
                signing: Signing::BadSignature,
                ..Default::default()
            },
            401,
        ),
        (
            CallbackOptions {
                timestamp: Some(stale),
                ..Default::default()
            },
            401,
        ),
    ];
    for (options, status) in &cases {
        assert_eq!(
            fake.send_callback(&url, &id, options).await.as_u16(),
            *status,
            "{options:?}"
        );
    }
    let seen = seen.0.lock().unwrap().clone();
    assert_eq!(seen.len(), cases.len());
    assert!(seen.iter().all(|(task, _)| *task == id));
    // The failure callback's body says so; the receiver still only learns the id from it.
    let body: serde_json::Value =
        serde_json::from_slice(&fake.callback(&id, &CallbackOptions::default()).body).unwrap();
    assert_eq!(body["code"], 501);
    assert_eq!(body["data"]["state"], "fail");
}

#[test]
fn kie_parse_callback_rejects_garbage() {
    for body in [
        &b"not json"[..],
        br#"{"code":200,"msg":"ok"}"#,
        br#"{"code":200,"data":null}"#,
        br#"{"code":200,"data":{"state":"success"}}"#,
        br#"{"code":200,"data":{"taskId":""}}"#,
        br#"{"code":200,"data":{"taskId":"has space"}}"#,
        br#"{"code":200,"data":{"taskId":42}}"#,
    ] {
        let err = parse_callback(body).unwrap_err();
        assert!(matches!(err, KieError::Protocol(_)), "{err:?}");
    }
    assert_eq!(
        parse_callback(br#"{"data":{"taskId":"a","task_id":"b"}}"#).unwrap(),
        "a"
    );
}

#[tokio::test]
async fn kie_through_the_provider_trait() {
    let fake = FakeKie::start().await;
    let provider: Arc<dyn GenerationProvider> = Arc::new(kie(&fake));
    let req = edit_task(&fake);
    let id: TaskId = provider.create(&req).await.unwrap();
    let urls = loop {
        if let TaskState::Success { result_urls } = provider.poll(&id).await.unwrap().state {
            break result_urls;
        }
    };
    let bytes = provider.fetch_result(&urls[0], 1 << 20).await.unwrap();
    assert_eq!(bytes, fake.png());

    fake.push_create(fake_kie::Mode::Code(402, "Credits insufficient"));
    let err = provider.create(&req).await.unwrap_err();
    assert_eq!(err.provider, "kie");
    assert_eq!(err.action, ErrorAction::Final);
    assert!(err.alerts_operator && !err.is_retryable());
    assert_eq!(err.code, "provider_account");

    fake.push_create(fake_kie::Mode::Code(429, "Too many requests"));
    let err = provider.create(&req).await.unwrap_err();
    assert!(err.is_retryable() && !err.alerts_operator && !err.outcome_unknown());

    let err = provider
        .poll(&TaskId::new("task_google_0"))
        .await
        .unwrap_err();
    assert_eq!(err.action, ErrorAction::RetryBriefly);
}

// ---------------------------------------------------------------- Telegram

fn telegram(fake: &FakeTelegram) -> (TelegramClient, Arc<Mutex<Vec<Duration>>>) {
    let (sleeper, sleeps) = recording_sleeper();
    let client = TelegramClient::new(
        &fake.base_url,
        SecretString::from(fake_tg::BOT_TOKEN),
        Duration::from_secs(5),
    )
    .unwrap()
    .with_sleeper(sleeper);
    (client, sleeps)
}

const CHAT: i64 = 123_456_789;

#[tokio::test]
async fn telegram_send_photo_uploads_multipart() {
    let fake = FakeTelegram::start().await;
    let (client, sleeps) = telegram(&fake);
    let photo = fakes::png(300, 400);
    let sent = client
        .send_photo(CHAT, photo.clone(), "result.png", "image/png", "Готово ✨")
        .await
        .unwrap();
    assert_eq!(sent.chat_id, CHAT);
    assert_eq!(sent.migrated_to_chat_id, None);
    assert!(sent.message_id > 0);
    let file_id = sent.photo_file_id.unwrap();
    assert!(
        file_id.starts_with("AgAC") && file_id.ends_with('2'),
        "{file_id}"
    );

    let calls = fake.calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.method, "sendPhoto");
    assert!(call.content_type.starts_with("multipart/form-data"));
    assert_eq!(call.chat_id(), Some(CHAT));
    assert_eq!(call.params["caption"], "Готово ✨");
    let upload = call.photo.as_ref().unwrap();
    assert_eq!(upload.bytes, photo);
    assert_eq!(upload.filename.as_deref(), Some("result.png"));
    assert_eq!(upload.content_type.as_deref(), Some("image/png"));
    assert!(sleeps.lock().unwrap().is_empty());
    assert_eq!(
        fake.requests()[0].path,
        format!("/bot{}/sendPhoto", fake_tg::BOT_TOKEN)
    );
}

#[tokio::test]
async fn telegram_send_message_posts_json() {
    let fake = FakeTelegram::start().await;
    let (client, _) = telegram(&fake);
    let sent = client
        .send_message(CHAT, "Your photo is ready")
        .await
        .unwrap();
    assert_eq!(sent.chat_id, CHAT);
    assert_eq!(sent.photo_file_id, None);
    let request = &fake.requests()[0];
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(
        request.json(),
        serde_json::json!({"chat_id": CHAT, "text": "Your photo is ready"})
    );
}

#[tokio::test]
async fn telegram_429_retry_after_is_honoured_then_succeeds() {
    let fake = FakeTelegram::start().await;
    let (client, sleeps) = telegram(&fake);
    fake.push_n(fake_tg::Mode::RetryAfter(5), 2);
    let sent = client
        .send_photo(CHAT, fakes::png(64, 64), "r.png", "image/png", "")
        .await
        .unwrap();
    assert_eq!(sent.chat_id, CHAT);
    assert_eq!(fake.calls().len(), 3);
    assert_eq!(
        *sleeps.lock().unwrap(),
        vec![Duration::from_secs(5), Duration::from_secs(5)]
    );
    // An empty caption is left out rather than sent empty.
    assert!(!fake.calls()[0].params.contains_key("caption"));
}

#[tokio::test]
async fn telegram_429_gives_up_after_three_tries() {
    let fake = FakeTelegram::start().await;
    let (client, sleeps) = telegram(&fake);
    fake.push_n(fake_tg::Mode::RetryAfter(1), 5);
    let err = client.send_message(CHAT, "hello").await.unwrap_err();
    assert_eq!(
        err,
        TelegramError::RateLimited {
            retry_after: Duration::from_secs(1)
        }
    );
    assert!(err.is_retryable());
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
    assert_eq!(fake.calls().len(), 3);
    assert_eq!(sleeps.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn telegram_retry_after_beyond_the_wait_budget_is_returned_at_once() {
    let fake = FakeTelegram::start().await;
    let (client, sleeps) = telegram(&fake);
    let client = client.with_max_total_wait(Duration::from_secs(10));
    fake.push(fake_tg::Mode::RetryAfter(35));
    let err = client.send_message(CHAT, "hello").await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(35)));
    assert_eq!(fake.calls().len(), 1);
    assert!(sleeps.lock().unwrap().is_empty());
}

#[tokio::test]
async fn telegram_blocked_is_a_distinct_final_error() {
    let fake = FakeTelegram::start().await;
    let (client, sleeps) = telegram(&fake);
    fake.push(fake_tg::Mode::Blocked);
    let err = client.send_message(CHAT, "hello").await.unwrap_err();
    assert!(matches!(err, TelegramError::Blocked { .. }), "{err:?}");
    assert!(err.stops_chat() && !err.is_retryable() && !err.alerts_operator());
    assert_eq!(err.error_code(), Some(403));

    fake.block_chat(CHAT);
    let err = client
        .send_photo(CHAT, fakes::png(64, 64), "r.png", "image/png", "hi")
        .await
        .unwrap_err();
    assert!(err.stops_chat(), "{err:?}");
    assert_eq!(fake.calls().len(), 2, "never retried");
    assert!(sleeps.lock().unwrap().is_empty());
}

#[tokio::test]
async fn telegram_chat_not_found_is_final() {
    let fake = FakeTelegram::start().await;
    let (client, _) = telegram(&fake);
    fake.push(fake_tg::Mode::ChatNotFound);
    let err = client.send_message(CHAT, "hello").await.unwrap_err();
    assert_eq!(
        err,
        TelegramError::BadRequest {
            description: "Bad Request: chat not found".into()
        }
    );
    assert!(!err.is_retryable() && !err.stops_chat());
    assert_eq!(fake.calls().len(), 1);
}

#[tokio::test]
async fn telegram_server_errors_are_retried_with_backoff() {
    let fake = FakeTelegram::start().await;
    let (client, sleeps) = telegram(&fake);
    fake.push(fake_tg::Mode::ServerError(500));
    fake.push(fake_tg::Mode::Html(502));
    let sent = client.send_message(CHAT, "hello").await.unwrap();
    assert_eq!(sent.chat_id, CHAT);
    assert_eq!(fake.calls().len(), 3);
    let sleeps = sleeps.lock().unwrap().clone();
    assert_eq!(sleeps.len(), 2);
    assert!(
        sleeps
            .iter()
            .all(|d| *d > Duration::ZERO && *d <= Duration::from_secs(5))
    );

    fake.push_n(fake_tg::Mode::ServerError(503), 3);
    let err = client.send_message(CHAT, "hello").await.unwrap_err();
    assert!(
        matches!(err, TelegramError::Server { code: 503, .. }),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert_eq!(fake.calls().len(), 6);
}

#[tokio::test]
async fn telegram_migrated_chat_is_resent_there_once() {
    let fake = FakeTelegram::start().await;
    let (client, _) = telegram(&fake);
    let (group, supergroup) = (-4_012_345, -1_001_234_567_890);
    fake.migrate_chat(group, supergroup);
    let sent = client
        .send_photo(group, fakes::png(64, 64), "r.png", "image/png", "hi")
        .await
        .unwrap();
    assert_eq!(sent.chat_id, supergroup);
    assert_eq!(sent.migrated_to_chat_id, Some(supergroup));
    let chats: Vec<_> = fake.calls().iter().map(|c| c.chat_id()).collect();
    assert_eq!(chats, vec![Some(group), Some(supergroup)]);

    // Migrating again is not followed a second time.
    fake.migrate_chat(supergroup, -1_009_999);
    let err = client.send_message(group, "hello").await.unwrap_err();
    assert_eq!(err, TelegramError::ChatMigrated { to: -1_009_999 });
    assert_eq!(fake.calls().len(), 4);

    // A one-off scripted migration.
    fake.push(fake_tg::Mode::Migrate(-1_007_777));
    let sent = client.send_message(CHAT, "hello").await.unwrap();
    assert_eq!(sent.chat_id, -1_007_777);
    assert_eq!(sent.migrated_to_chat_id, Some(-1_007_777));
}

#[tokio::test]
async fn telegram_wrong_token_alerts_the_operator() {
    let fake = FakeTelegram::start().await;
    let client = TelegramClient::new(
        &fake.base_url,
        SecretString::from("1:wrong"),
        Duration::from_secs(5),
    )
    .unwrap();
    let err = client.send_message(CHAT, "hello").await.unwrap_err();
    assert!(matches!(err, TelegramError::Unauthorized { .. }), "{err:?}");
    assert!(err.alerts_operator() && !err.is_retryable());
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn telegram_fake_answers_unknown_methods_with_404() {
    let fake = FakeTelegram::start().await;
    let res = reqwest::Client::new()
        .post(format!(
            "{}/bot{}/sendSticker",
            fake.base_url,
            fake_tg::BOT_TOKEN
        ))
        .json(&serde_json::json!({"chat_id": CHAT}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"ok": false, "error_code": 404, "description": "Not Found"})
    );
}

#[tokio::test]
async fn telegram_errors_never_reveal_the_token() {
    let (sleeper, sleeps) = recording_sleeper();
    let client = TelegramClient::new(
        &closed_port_url(),
        SecretString::from(fake_tg::BOT_TOKEN),
        Duration::from_secs(2),
    )
    .unwrap()
    .with_sleeper(sleeper);
    let err = client.send_message(CHAT, "hello").await.unwrap_err();
    assert!(matches!(err, TelegramError::Network(_)), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(
        sleeps.lock().unwrap().len(),
        2,
        "connection failures are retried"
    );
    let text = format!("{err} {err:?} {client:?}");
    assert!(!text.contains(fake_tg::BOT_TOKEN), "{text}");
    assert!(!text.contains("AAfake"), "{text}");
}

#[tokio::test]
async fn telegram_timeouts_are_not_retried() {
    let fake = FakeTelegram::start().await;
    fake.push(fake_tg::Mode::SlowReply(Duration::from_secs(3)));
    let client = TelegramClient::new(
        &fake.base_url,
        SecretString::from(fake_tg::BOT_TOKEN),
        Duration::from_millis(300),
    )
    .unwrap();
    let err = client.send_message(CHAT, "hello").await.unwrap_err();
    assert_eq!(err, TelegramError::Timeout);
    assert!(!err.is_retryable());
    assert_eq!(fake.calls().len(), 1, "the message may have been posted");
}

#[tokio::test]
async fn telegram_limits_are_checked_before_sending() {
    let fake = FakeTelegram::start().await;
    let (client, _) = telegram(&fake);
    let long_caption = "x".repeat(1025);
    let errors = [
        client
            .send_photo(CHAT, fakes::png(8, 8), "r.png", "image/png", &long_caption)
            .await
            .unwrap_err(),
        client
            .send_photo(CHAT, vec![], "r.png", "image/png", "")
            .await
            .unwrap_err(),
        client
            .send_photo(CHAT, fakes::png(8, 8), "r.png", "not a mime", "")
            .await
            .unwrap_err(),
        client.send_message(CHAT, "").await.unwrap_err(),
        client
            .send_message(CHAT, &"я".repeat(4097))
            .await
            .unwrap_err(),
    ];
    for err in errors {
        assert!(matches!(err, TelegramError::InvalidRequest(_)), "{err:?}");
    }
    assert!(fake.requests().is_empty());
    // The limit is in characters, not bytes.
    client
        .send_photo(
            CHAT,
            fakes::png(8, 8),
            "r.png",
            "image/png",
            &"ж".repeat(1024),
        )
        .await
        .unwrap();
}
