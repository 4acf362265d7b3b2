//! Prometheus metrics: business gauges sampled from the database, provider calls, and the
//! standalone worker's own /metrics endpoint.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::helpers::{BOT_TOKEN, JWT_SECRET, MEDIA_URL_SECRET, NewUser, spawn_app_with};

#[tokio::test]
async fn payments_and_ledger_totals_are_exported() {
    let app = spawn_app_with(&[("FREE_ACTIONS_PER_MONTH", "0")]).await;
    let anna = app.user_with(NewUser::id(61)).await;
    anna.grant(7).await;
    let res = anna
        .post(
            "/api/v1/payments/create",
            &json!({"product_id": "pack_10", "email": "m@example.com"}),
        )
        .await;
    let page = res
        .json::<crate::helpers::PaymentCreated>()
        .await
        .unwrap()
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
    atelier::jobs::record_business_metrics(&app.state)
        .await
        .unwrap();
    let text = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        text.contains(r#"payments{status="succeeded",currency="RUB"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"ledger_credits{reason="purchase"} 10"#),
        "{text}"
    );
    assert!(
        text.contains(r#"ledger_credits{reason="admin_grant"} 7"#),
        "{text}"
    );
}

#[tokio::test]
async fn the_standalone_worker_serves_its_health_and_metrics() {
    let app = spawn_app_with(&[]).await;
    app.user_with(NewUser::id(62)).await.upload_editing().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let redis = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let mut child = Command::new(env!("CARGO_BIN_EXE_atelier"))
        .arg("worker")
        .env("APP_ENV", "test")
        .env("DATABASE_URL", &app.database_url)
        .env("REDIS_URL", redis)
        .env("REDIS_KEY_PREFIX", &app.state.settings.redis_key_prefix)
        .env("TELEGRAM_BOT_TOKEN", BOT_TOKEN)
        .env("JWT_SECRET", JWT_SECRET)
        .env("MEDIA_URL_SECRET", MEDIA_URL_SECRET)
        .env("STORAGE_DIR", &app.storage_dir)
        .env("WORKER_METRICS_PORT", port.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let mut ready = None;
    for _ in 0..100 {
        if let Ok(res) = app.client.get(format!("{base}/ready")).send().await {
            ready = Some(res.status());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready.map(|s| s.as_u16()), Some(200));
    let text = app
        .client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("jobs_queue_depth") || text.contains("jobs_running"),
        "{text}"
    );
    // SIGTERM: the worker stops cleanly.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}
