use crate::helpers::{PRODUCTION, assert_problem, spawn_app, spawn_app_with};

#[tokio::test]
async fn health_and_ready_answer() {
    let app = spawn_app().await;
    let res = app.get("/health", None).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap()["status"],
        "ok"
    );
    let res = app.get("/ready", None).await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["postgres"], "ok");
    assert_eq!(body["redis"], "ok");
}

#[tokio::test]
async fn without_redis_the_api_stays_ready_and_says_degraded() {
    let app = spawn_app_with(&[("REDIS_URL", "redis://127.0.0.1:1")]).await;
    // A Redis outage must not make the load balancer pull every replica at once.
    let res = app.get("/ready", None).await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["postgres"], "ok");
    assert!(
        body["redis"].as_str().unwrap().starts_with("degraded"),
        "{body}"
    );
    assert_eq!(app.get("/health", None).await.status(), 200);
}

#[tokio::test]
async fn without_postgres_the_api_is_not_ready() {
    let url = "postgres://postgres@127.0.0.1:1/atelier";
    let app = spawn_app_with(&[("DATABASE_URL", url)]).await;
    let body = assert_problem(app.get("/ready", None).await, 503, "not_ready").await;
    assert!(
        body["postgres"]
            .as_str()
            .unwrap()
            .starts_with("unavailable"),
        "{body}"
    );
}

#[tokio::test]
async fn production_keeps_metrics_off_the_public_port() {
    let app = spawn_app_with(PRODUCTION).await;
    app.get("/health", None).await;
    assert_problem(app.get("/metrics", None).await, 404, "not_found").await;
    let private = app
        .metrics_address
        .as_deref()
        .expect("production starts the metrics listener");
    let res = app
        .client
        .get(format!("{private}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    assert!(
        text.contains(r#"http_requests_total{method="GET",route="/health",status="200"}"#),
        "{text}"
    );
    let res = app
        .client
        .get(format!("{private}/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // Outside production neither changes: /metrics is where it was, and no listener is added.
    let dev = spawn_app().await;
    assert_eq!(dev.get("/metrics", None).await.status(), 200);
    assert!(dev.metrics_address.is_none());
}

#[tokio::test]
async fn metrics_count_requests_by_route() {
    let app = spawn_app().await;
    app.get("/health", None).await;
    let text = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        text.contains(r#"http_requests_total{method="GET",route="/health",status="200"}"#),
        "{text}"
    );
    assert!(
        text.contains("http_request_duration_seconds_bucket"),
        "{text}"
    );
}

#[tokio::test]
async fn made_up_methods_share_one_metrics_label() {
    let app = spawn_app().await;
    let client = reqwest::Client::new();
    for name in ["FOO1", "FOO2", "BREW"] {
        let method = reqwest::Method::from_bytes(name.as_bytes()).unwrap();
        let res = client
            .request(method, app.url("/health"))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_client_error(), "{name}: {}", res.status());
    }
    let text = app.get("/metrics", None).await.text().await.unwrap();
    assert!(!text.contains("FOO1") && !text.contains("BREW"), "{text}");
    let other = text
        .lines()
        .filter(|l| l.starts_with("http_requests_total{method=\"OTHER\",route=\"/health\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum::<u64>();
    assert_eq!(other, 3, "{text}");
}
