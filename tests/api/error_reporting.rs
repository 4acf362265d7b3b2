//! Error reporting: the real binary, with `SENTRY_DSN` pointing at a local ingest that speaks
//! Sentry's envelope endpoint, reports a 5xx with its release and environment, and nothing of
//! the request's secrets or the user's profile reaches it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::helpers::{BOT_TOKEN, JWT_SECRET, spawn_app};

/// A stand-in for Sentry's ingest: records the body of every `POST /api/<project>/envelope/`.
async fn ingest() -> (u16, Arc<Mutex<Vec<(String, Vec<u8>)>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let (head_end, length) = loop {
                    let Ok(n) = stream.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (end + 4, length);
                    }
                };
                while buf.len() < head_end + length {
                    let Ok(n) = stream.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                record
                    .lock()
                    .unwrap()
                    .push((head, buf[head_end..].to_vec()));
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
                    )
                    .await;
            });
        }
    });
    (port, seen)
}

/// The `event` items of an envelope (a header line, then per item a header line and a payload).
fn events(envelope: &[u8]) -> Vec<Value> {
    let mut lines = envelope.split(|b| *b == b'\n').skip(1);
    let mut out = Vec::new();
    while let Some(header) = lines.next() {
        let Ok(header) = serde_json::from_slice::<Value>(header) else {
            continue;
        };
        let Some(payload) = lines.next() else { break };
        if header["type"] == "event" {
            out.push(serde_json::from_slice(payload).unwrap());
        }
    }
    out
}

#[tokio::test]
async fn a_server_error_reaches_sentry_tagged_and_without_secrets() {
    let app = spawn_app().await; // a migrated scratch database for the real binary
    let (ingest_port, seen) = ingest().await;
    let storage = tempdir();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let media_secret = "error-reporting-media-secret-0123456789abcdef";
    let server = std::process::Command::new(env!("CARGO_BIN_EXE_atelier"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ENV_FILE", "")
        .env("APP_ENV", "test")
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("DATABASE_URL", &app.database_url)
        .env(
            "REDIS_URL",
            std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        )
        .env(
            "REDIS_KEY_PREFIX",
            format!("test:{}:", uuid::Uuid::new_v4().simple()),
        )
        .env("TELEGRAM_BOT_TOKEN", BOT_TOKEN)
        .env("JWT_SECRET", JWT_SECRET)
        .env("MEDIA_URL_SECRET", media_secret)
        .env("STORAGE_DIR", &storage)
        .env(
            "SENTRY_DSN",
            format!("http://publickey@127.0.0.1:{ingest_port}/42"),
        )
        .env("SENTRY_RELEASE", "atelier@test-release")
        .env("SENTRY_ENVIRONMENT", "ci")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _server = KillOnDrop(server);
    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..200 {
        if client.get(format!("{base}/health")).send().await.is_ok() {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "the server never answered");

    // A user with a name and a username logs in; then the photo store breaks under them: the
    // directory uploads are written to is a file now, so storing the upload fails (500).
    let user = serde_json::json!({"id": 4_242_001, "first_name": "Annabelle", "username": "annabelle_private"})
        .to_string();
    let auth_date = chrono::Utc::now().timestamp().to_string();
    let init =
        atelier::auth::initdata::sign(BOT_TOKEN, &[("user", &user), ("auth_date", &auth_date)]);
    let login: Value = client
        .post(format!("{base}/api/v1/auth/telegram"))
        .header("Authorization", format!("tma {init}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().unwrap().to_owned();
    std::fs::write(format!("{storage}/u"), b"not a directory").unwrap();
    let photo = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/samples/person.jpg"
    ))
    .unwrap();
    let form = reqwest::multipart::Form::new().part(
        "image",
        reqwest::multipart::Part::bytes(photo).file_name("me.jpg"),
    );
    let res = client
        .post(format!("{base}/api/v1/editing/upload?token={token}"))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 500);

    let mut found = None;
    for _ in 0..100 {
        let bodies = seen.lock().unwrap().clone();
        if let Some((head, body)) = bodies.iter().find(|(_, b)| !events(b).is_empty()) {
            found = Some((head.clone(), body.clone()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (head, body) = found.expect("no event reached the ingest");
    assert!(head.starts_with("POST /api/42/envelope/"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("sentry_key=publickey"),
        "{head}"
    );
    let event = events(&body).remove(0);
    assert_eq!(event["release"], "atelier@test-release");
    assert_eq!(event["environment"], "ci");
    // `error` is the protocol's default level, left out of the payload.
    assert!(
        event["level"].is_null() || event["level"] == "error",
        "{event}"
    );
    assert_eq!(event["message"], "internal error");
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("internal error"), "{text}");
    for secret in [
        token.as_str(),
        init.as_str(),
        BOT_TOKEN,
        JWT_SECRET,
        media_secret,
        "Annabelle",
        "annabelle_private",
    ] {
        assert!(
            !text.contains(secret),
            "the report carries {secret:?}: {text}"
        );
    }
    let _ = std::fs::remove_dir_all(&storage);
}

fn tempdir() -> String {
    let dir = format!(
        "{}/target/test-media/reporting-{}",
        env!("CARGO_MANIFEST_DIR"),
        uuid::Uuid::new_v4().simple()
    );
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
