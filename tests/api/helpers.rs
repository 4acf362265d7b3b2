//! The test harness: the real server on port 0, a fresh database per test cloned from a
//! migrated template, a Redis key prefix per test, and helpers to sign initData and log in;
//! below it typed test users (`user`), the API's responses (`responses`) and the fixtures
//! shared by the feature modules (`fixtures`).

pub mod bot;
mod fixtures;
mod reference_initdata;
mod responses;
mod user;

pub use fixtures::*;
pub use reference_initdata::*;
pub use responses::*;
pub use user::*;

use std::collections::HashMap;
use std::sync::LazyLock;

use atelier::auth::initdata;
use atelier::config::Settings;
use atelier::domain::ids::{TelegramId, UserId};
use atelier::startup::Application;
use atelier::state::AppState;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use serde_json::Value;
use sha2::Digest;
use tokio::sync::OnceCell;

pub const BOT_TOKEN: &str = "7000000001:AAtest-bot-token-for-atelier-tests";
pub const JWT_SECRET: &str = "test-jwt-secret-test-jwt-secret-test-jwt-secret";
/// BOT_TOKEN is a real-looking bot's: beside it the app has to have secrets of its own.
pub const MEDIA_URL_SECRET: &str = "test-media-link-secret-test-media-link-secret";

static TRACING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var_os("TEST_LOG").is_some() {
        atelier::telemetry::init_tracing(atelier::config::LogFormat::Text);
    }
});

/// The server's database URL (from `DATABASE_URL`, as `make test` sets it).
fn base_database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/atelier".into())
}

/// `url` with its database name replaced.
pub fn with_database(url: &str, name: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let scheme_end = head.find("://").map_or(0, |i| i + 3);
    let base = match head[scheme_end..].find('/') {
        Some(i) => &head[..scheme_end + i],
        None => head,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

fn migrations_hash() -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut files: Vec<_> = walk(&dir);
    files.sort();
    let mut hasher = sha2::Sha256::new();
    for f in files {
        hasher.update(f.to_string_lossy().as_bytes());
        hasher.update(std::fs::read(&f).unwrap_or_default());
    }
    hex::encode(&hasher.finalize()[..6])
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path))
        } else {
            out.push(path)
        }
    }
    out
}

/// Creates (once, across processes, under an advisory lock) the migrated template database.
async fn template() -> &'static str {
    static TEMPLATE: OnceCell<String> = OnceCell::const_new();
    TEMPLATE
        .get_or_init(|| async {
            let name = format!("atelier_tpl_{}", migrations_hash());
            let admin = with_database(&base_database_url(), "postgres");
            let mut conn = AsyncPgConnection::establish(&admin)
                .await
                .expect("connect to PostgreSQL (is it running? use `make test`)");
            conn.batch_execute("SELECT pg_advisory_lock(727272)")
                .await
                .unwrap();
            let exists = diesel_async::RunQueryDsl::get_result::<Count>(
                diesel::sql_query(format!(
                    "SELECT count(*) AS n FROM pg_database WHERE datname = '{name}'"
                )),
                &mut conn,
            )
            .await
            .unwrap()
            .n;
            if exists == 0 {
                let building = format!("{name}_building");
                conn.batch_execute(&format!("DROP DATABASE IF EXISTS {building}"))
                    .await
                    .unwrap();
                conn.batch_execute(&format!("CREATE DATABASE {building}"))
                    .await
                    .unwrap();
                atelier::db::run_migrations(&with_database(&base_database_url(), &building))
                    .await
                    .unwrap();
                conn.batch_execute(&format!("ALTER DATABASE {building} RENAME TO {name}"))
                    .await
                    .unwrap();
            }
            conn.batch_execute("SELECT pg_advisory_unlock(727272)")
                .await
                .unwrap();
            name
        })
        .await
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub state: AppState,
    /// The private `/metrics` listener (production only).
    pub metrics_address: Option<String>,
    pub database_url: String,
    pub storage_dir: String,
    db_name: String,
    handle: actix_web::dev::ServerHandle,
    /// The Telegram id `user()` signs in next.
    next_telegram_id: std::sync::atomic::AtomicI64,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// What production requires beside the test defaults, so that an app starts with
/// `APP_ENV=production` (the providers' keys point nowhere: tests using them add fakes).
pub const PRODUCTION: &[(&str, &str)] = &[
    ("APP_ENV", "production"),
    ("KIE_API_KEY", "kie-key"),
    ("YOOKASSA_SHOP_ID", "123456"),
    ("YOOKASSA_SECRET_KEY", "test_secret"),
    ("OPENROUTER_API_KEY", "sk-or-v1-test"),
];

/// Starts the server with the test defaults overridden by `overrides`.
pub async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    LazyLock::force(&TRACING);
    let template = template().await;
    let db_name = format!("atelier_test_{}", uuid::Uuid::new_v4().simple());
    let admin = with_database(&base_database_url(), "postgres");
    let mut conn = AsyncPgConnection::establish(&admin).await.unwrap();
    conn.batch_execute(&format!("CREATE DATABASE {db_name} TEMPLATE {template}"))
        .await
        .unwrap();
    let database_url = with_database(&base_database_url(), &db_name);

    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let redis = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let mut env: HashMap<String, String> = [
        ("APP_ENV", "test"),
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("METRICS_PORT", "0"),
        ("TELEGRAM_BOT_TOKEN", BOT_TOKEN),
        ("JWT_SECRET", JWT_SECRET),
        ("MEDIA_URL_SECRET", MEDIA_URL_SECRET),
        ("DATABASE_POOL_SIZE", "8"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    env.insert("DATABASE_URL".into(), database_url.clone());
    env.insert("REDIS_URL".into(), redis);
    env.insert("REDIS_KEY_PREFIX".into(), prefix);
    let storage_dir = format!("{}/target/test-media/{db_name}", env!("CARGO_MANIFEST_DIR"));
    env.insert("STORAGE_DIR".into(), storage_dir.clone());
    for (k, v) in overrides {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    let settings = Settings::from_lookup(|k| env.get(k).cloned()).expect("test settings");
    let app = Application::build(settings).await.expect("build app");
    let address = format!("http://127.0.0.1:{}", app.port());
    let metrics_address = app
        .metrics_port()
        .map(|port| format!("http://127.0.0.1:{port}"));
    let state = app.state().clone();
    let handle = app.server_handle();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        state,
        metrics_address,
        database_url,
        storage_dir,
        db_name,
        handle,
        next_telegram_id: std::sync::atomic::AtomicI64::new(1),
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Ask the server to stop without waiting: Drop runs on the test's runtime, which must
        // stay free to run the server. The database is dropped from a thread of its own.
        drop(self.handle.stop(false));
        let _ = std::fs::remove_dir_all(&self.storage_dir);
        let db_name = self.db_name.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let admin = with_database(&base_database_url(), "postgres");
                if let Ok(mut conn) = AsyncPgConnection::establish(&admin).await {
                    let _ = conn
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn conn(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.database_url)
            .await
            .unwrap()
    }

    pub async fn post_json(
        &self,
        path: &str,
        body: &Value,
        token: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self.client.post(self.url(path)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut req = self.client.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }

    /// Logs `user_id` in and returns the access token and the response body.
    pub async fn login(&self, user_id: i64) -> (String, Value) {
        let res = self
            .post_json(
                "/api/v1/auth/telegram",
                &serde_json::json!({"init_data": init_data(user_id)}),
                None,
            )
            .await;
        assert_eq!(res.status(), 200, "login failed");
        let body: Value = res.json().await.unwrap();
        (body["access_token"].as_str().unwrap().to_owned(), body)
    }

    /// The internal id of the user with this Telegram id.
    pub async fn user_id(&self, telegram_id: i64) -> UserId {
        let mut conn = self.state.db.get().await.unwrap();
        atelier::db::users::find_by_telegram_id(&mut conn, TelegramId(telegram_id))
            .await
            .unwrap()
            .unwrap()
            .id
    }
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// initData for a test user, signed with the test bot token, dated now.
pub fn init_data(user_id: i64) -> String {
    init_data_with(user_id, &[], now())
}

pub fn init_data_with(user_id: i64, extra: &[(&str, &str)], auth_date: i64) -> String {
    let user = serde_json::json!({"id": user_id, "first_name": "Test", "username": format!("user{user_id}"), "language_code": "en"})
        .to_string();
    let auth_date = auth_date.to_string();
    let mut pairs = vec![("user", user.as_str()), ("auth_date", auth_date.as_str())];
    pairs.extend_from_slice(extra);
    initdata::sign(BOT_TOKEN, &pairs)
}

/// Asserts an RFC 9457 problem with `status` and `code`, returning its body.
pub async fn assert_problem(res: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(res.status(), status, "status");
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(
        ct.starts_with("application/problem+json"),
        "content-type was {ct:?}"
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], code, "problem: {body}");
    assert_eq!(body["status"], status);
    for field in ["type", "title", "detail"] {
        assert!(body[field].is_string(), "problem lacks {field}: {body}");
    }
    body
}

/// Another API process of `app`'s deployment (same database, same Redis prefix), with `extra`
/// settings.
pub async fn spawn_replica(app: &TestApp, extra: &[(&str, &str)]) -> TestApp {
    let database_url = app.state.settings.database_url.clone();
    let database_url = secrecy::ExposeSecret::expose_secret(&database_url).to_owned();
    let prefix = app.state.settings.redis_key_prefix.clone();
    let mut overrides = vec![
        ("DATABASE_URL", database_url.as_str()),
        ("REDIS_KEY_PREFIX", prefix.as_str()),
    ];
    overrides.extend_from_slice(extra);
    spawn_app_with(&overrides).await
}
