//! HTTP basics: every error is RFC 9457 problem+json with a stable `code` (unknown routes,
//! wrong methods, oversized and malformed bodies, bad credentials), CORS and request ids.

use reqwest::Method;
use reqwest::header::{ALLOW, CONTENT_TYPE, ORIGIN};
use serde_json::{Value, json};

use crate::helpers::{assert_problem, init_data, spawn_app, spawn_app_with};

const LOGIN: &str = "/api/v1/auth/telegram";

#[tokio::test]
async fn unknown_routes_are_404_problems() {
    let app = spawn_app().await;
    for path in ["/nope", "/api/v1/nope", "/api/v2/me", "/api/v1/me/extra"] {
        let body = assert_problem(app.get(path, None).await, 404, "not_found").await;
        assert_eq!(body["title"], "Not Found", "{path}");
    }
    // Also for other methods and with a body.
    let res = app.post_json("/api/v1/nope", &json!({"a": 1}), None).await;
    assert_problem(res, 404, "not_found").await;
}

#[tokio::test]
async fn wrong_methods_are_405_problems_with_allow() {
    let app = spawn_app().await;
    // `DELETE /api/v1/me` is a planned route (erasure); PUT on it and GET on the login are not.
    for (method, path, allowed) in [
        (Method::PUT, "/api/v1/me", "GET"),
        (Method::PATCH, "/api/v1/balance", "GET"),
        (Method::GET, LOGIN, "POST"),
        (Method::DELETE, "/health", "GET"),
    ] {
        let res = app
            .client
            .request(method.clone(), app.url(path))
            .send()
            .await
            .unwrap();
        let allow = res
            .headers()
            .get(ALLOW)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = assert_problem(res, 405, "method_not_allowed").await;
        let allow = allow.unwrap_or_else(|| panic!("{method} {path}: no Allow header"));
        assert!(
            allow.split(',').any(|m| m.trim() == allowed),
            "{method} {path}: Allow {allow:?}"
        );
        assert_eq!(body["title"], "Method Not Allowed");
    }
}

#[tokio::test]
async fn an_oversized_body_is_a_413_problem() {
    let app = spawn_app_with(&[("MAX_JSON_BODY_BYTES", "1024")]).await;
    let big = json!({ "init_data": "a".repeat(2000) });
    assert_problem(
        app.post_json(LOGIN, &big, None).await,
        413,
        "payload_too_large",
    )
    .await;
    // Under the limit the same route answers normally.
    let res = app
        .post_json(LOGIN, &json!({ "init_data": init_data(1) }), None)
        .await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn an_oversized_chunked_body_is_a_413_problem() {
    use std::io::{Read, Write};
    let app = spawn_app_with(&[("MAX_JSON_BODY_BYTES", "1024")]).await;
    let addr = app.address.trim_start_matches("http://").to_owned();
    // No Content-Length: the limit must hold while streaming, too.
    let response = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let head = format!(
            "POST {LOGIN} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).unwrap();
        let mut body = String::from(r#"{"init_data": ""#);
        body.push_str(&"a".repeat(4000));
        body.push_str(r#""}"#);
        for chunk in body.as_bytes().chunks(500) {
            // The server may answer and close before the whole body is sent.
            if stream
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .is_err()
                || stream.write_all(chunk).is_err()
                || stream.write_all(b"\r\n").is_err()
            {
                break;
            }
        }
        let _ = stream.write_all(b"0\r\n\r\n");
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        String::from_utf8_lossy(&response).into_owned()
    })
    .await
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    let lower = response.to_ascii_lowercase();
    assert!(
        lower.contains("content-type: application/problem+json"),
        "{response}"
    );
    assert!(
        response.contains(r#""code":"payload_too_large""#),
        "{response}"
    );
}

#[tokio::test]
async fn bad_bearer_tokens_are_401_invalid_token() {
    let app = spawn_app().await;
    for auth in ["Bearer garbage", "Bearer a.b.c", "Basic dXNlcjpwYXNz"] {
        let res = app
            .client
            .get(app.url("/api/v1/me"))
            .header("Authorization", auth)
            .send()
            .await
            .unwrap();
        let www = res
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_problem(res, 401, "invalid_token").await;
        let www = www.unwrap_or_else(|| panic!("{auth}: no WWW-Authenticate"));
        assert!(
            www.starts_with("Bearer") && www.contains("invalid_token"),
            "{www}"
        );
    }
    // A scheme with nothing after it is missing credentials.
    let res = app
        .client
        .get(app.url("/api/v1/me"))
        .header("Authorization", "Bearer ")
        .send()
        .await
        .unwrap();
    assert_problem(res, 401, "missing_credentials").await;
}

/// The exact RFC 9457 shape: the five members, consistent with the response.
async fn assert_problem_shape(res: reqwest::Response) -> Value {
    let status = res.status();
    let ct = res
        .headers()
        .get(CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert!(
        ct.starts_with("application/problem+json"),
        "{status}: content-type {ct:?}"
    );
    let body: Value = res.json().await.unwrap();
    let obj = body
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {body}"));
    for field in ["type", "title", "detail", "code"] {
        let s = obj
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{field} missing: {body}"));
        assert!(!s.is_empty(), "{field} empty: {body}");
    }
    assert_eq!(obj["status"], status.as_u16(), "{body}");
    assert_eq!(obj["title"], status.canonical_reason().unwrap(), "{body}");
    let code = obj["code"].as_str().unwrap();
    assert!(
        code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
        "code {code:?} is not snake_case"
    );
    assert!(obj["type"].as_str().unwrap().contains(code), "{body}");
    body
}

#[tokio::test]
async fn every_problem_has_type_title_status_detail_code() {
    let app = spawn_app_with(&[("MAX_JSON_BODY_BYTES", "1024")]).await;
    let c = &app.client;
    let responses = vec![
        app.get("/nope", None).await,
        c.put(app.url("/api/v1/me")).send().await.unwrap(),
        app.get("/api/v1/me", None).await,
        app.get("/api/v1/me", Some("garbage")).await,
        c.post(app.url(LOGIN))
            .header(CONTENT_TYPE, "application/json")
            .body("{")
            .send()
            .await
            .unwrap(),
        app.post_json(LOGIN, &json!({ "init_data": "a".repeat(2000) }), None)
            .await,
        app.post_json(LOGIN, &json!({ "init_data": "user=x&hash=00" }), None)
            .await,
    ];
    let mut codes = Vec::new();
    for res in responses {
        let body = assert_problem_shape(res).await;
        codes.push(body["code"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        codes,
        [
            "not_found",
            "method_not_allowed",
            "missing_credentials",
            "invalid_token",
            "invalid_json",
            "payload_too_large",
            "invalid_init_data"
        ]
    );
}

#[tokio::test]
async fn cors_preflight_is_answered() {
    let app = spawn_app().await;
    let origin = "https://miniapp.example.com";
    let res = app
        .client
        .request(Method::OPTIONS, app.url("/api/v1/me"))
        .header(ORIGIN, origin)
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "authorization")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let allow_origin = res
        .headers()
        .get("access-control-allow-origin")
        .expect("access-control-allow-origin");
    assert!(
        allow_origin == origin || allow_origin == "*",
        "{allow_origin:?}"
    );
    let methods = res.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        methods.contains("GET") && methods.contains("POST"),
        "{methods}"
    );
    let headers = res.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(headers.contains("authorization"), "{headers}");

    // The actual request carries the header too.
    let res = app
        .client
        .get(app.url("/health"))
        .header(ORIGIN, origin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn cors_allows_only_the_configured_origins() {
    let app = spawn_app_with(&[("CORS_ALLOWED_ORIGINS", "https://miniapp.example.com")]).await;
    let preflight = |origin: &'static str| {
        app.client
            .request(Method::OPTIONS, app.url("/api/v1/me"))
            .header(ORIGIN, origin)
            .header("Access-Control-Request-Method", "GET")
            .send()
    };
    let res = preflight("https://miniapp.example.com").await.unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://miniapp.example.com"
    );

    let res = preflight("https://evil.example.com").await.unwrap();
    assert!(!res.status().is_success(), "{}", res.status());
    assert!(!res.headers().contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn responses_carry_a_request_id() {
    let app = spawn_app().await;
    let id_of = |res: &reqwest::Response| {
        res.headers()
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_owned())
            .expect("x-request-id header")
    };
    let a = app.get("/health", None).await;
    let b = app.get("/health", None).await;
    let c = app.get("/nope", None).await;
    let d = app.get("/api/v1/me", None).await;
    let ids = [id_of(&a), id_of(&b), id_of(&c), id_of(&d)];
    for id in &ids {
        assert!(!id.is_empty());
    }
    assert_ne!(ids[0], ids[1], "each request gets its own id");
    assert_eq!(c.status(), 404);
    assert_eq!(d.status(), 401);
}

#[tokio::test]
async fn a_refused_cors_request_is_a_problem() {
    let app = spawn_app_with(&[("CORS_ALLOWED_ORIGINS", "https://miniapp.example.com")]).await;
    let res = app
        .client
        .request(Method::OPTIONS, app.url("/api/v1/me"))
        .header(ORIGIN, "https://evil.example.com")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    assert_problem_shape(res).await;
}
