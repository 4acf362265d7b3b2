//! `openapi.yaml` at the repository root is generated from the code and must not drift.
//! Regenerate it with `UPDATE_OPENAPI=1 cargo nextest run --test api openapi`.

use std::process::Command;

use serde_json::Value;

use crate::helpers::spawn_app;

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml");

fn generated() -> String {
    atelier::openapi::yaml().expect("the OpenAPI document renders as YAML")
}

#[test]
fn committed_openapi_yaml_matches_the_code() {
    let generated = generated();
    if std::env::var("UPDATE_OPENAPI").is_ok_and(|v| v == "1") {
        std::fs::write(COMMITTED, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_else(|e| {
        panic!("reading {COMMITTED}: {e}; generate it with UPDATE_OPENAPI=1 cargo nextest run --test api openapi")
    });
    if committed != generated {
        let first_diff = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        panic!(
            "openapi.yaml is out of date (first difference at line {}: committed {:?}, code {:?}); \
             regenerate it with UPDATE_OPENAPI=1 cargo nextest run --test api openapi",
            first_diff + 1,
            committed.lines().nth(first_diff),
            generated.lines().nth(first_diff),
        );
    }
}

#[test]
fn the_document_describes_the_api() {
    let doc: Value =
        serde_json::to_value(<atelier::openapi::ApiDoc as utoipa::OpenApi>::openapi()).unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/v1/auth/telegram", "post"),
        ("/api/v1/me", "get"),
        ("/api/v1/balance", "get"),
        ("/health", "get"),
        ("/ready", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} is documented"
        );
    }
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    assert!(
        schemes.contains_key("bearer") && schemes.contains_key("tma"),
        "{schemes:?}"
    );
    assert!(doc["components"]["schemas"].get("Problem").is_some());
}

#[tokio::test]
async fn the_server_serves_the_same_yaml() {
    let app = spawn_app().await;
    let res = app.get("/openapi.yaml", None).await;
    assert_eq!(res.status(), 200);
    let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.contains("yaml"), "{ct}");
    assert_eq!(res.text().await.unwrap(), generated());

    let res = app.get("/openapi.json", None).await;
    assert_eq!(res.status(), 200);
    let json: Value = res.json().await.unwrap();
    assert!(json["paths"].get("/api/v1/auth/telegram").is_some());
}

#[tokio::test]
async fn docs_show_the_ui() {
    let app = spawn_app().await;
    let res = app.get("/docs/", None).await;
    assert_eq!(res.status(), 200);
    let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/html"), "{ct}");
    let html = res.text().await.unwrap();
    assert!(html.to_ascii_lowercase().contains("swagger"), "{html}");
    // Its configuration points at our document.
    let res = app.get("/docs/swagger-initializer.js", None).await;
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("/openapi.json"));
}

#[test]
fn the_cli_prints_the_same_yaml() {
    let out = Command::new(env!("CARGO_BIN_EXE_atelier"))
        .arg("openapi")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), generated());
}
