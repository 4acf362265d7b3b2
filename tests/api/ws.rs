//! The live-progress WebSocket, with a real client against the real server: credentials
//! checked before the upgrade, the snapshot first, events through Redis (also across two API
//! instances), the per-user cap, pings, idle and oversized clients, Redis outages, shutdown.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use atelier::db::schema::users;
use atelier::realtime::{self, Event};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::{
    ServerEvent, TestApp, assert_problem, now, spawn_app, spawn_app_with, spawn_replica,
};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const WAIT: Duration = Duration::from_secs(5);

/// A second API process of the same deployment: same database, same Redis prefix.
pub async fn spawn_second_instance(app: &TestApp) -> TestApp {
    spawn_replica(app, &[]).await
}

fn ws_url(app: &TestApp, query: &str) -> String {
    format!("{}/api/v1/ws{query}", app.address.replacen("http", "ws", 1))
}

async fn connect_query(app: &TestApp, token: &str) -> Ws {
    let (ws, res) = tokio_tungstenite::connect_async(ws_url(app, &format!("?token={token}")))
        .await
        .expect("WebSocket handshake");
    assert_eq!(res.status(), 101);
    ws
}

/// Connects offering `protocols` (the token travels as `bearer.<jwt>`); returns the socket and
/// the protocol the server echoed.
async fn connect_protocols(app: &TestApp, protocols: &str) -> (Ws, Option<String>) {
    let mut req = ws_url(app, "").into_client_request().unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_str(protocols).unwrap(),
    );
    let (ws, res) = tokio_tungstenite::connect_async(req)
        .await
        .expect("WebSocket handshake");
    let echoed = res
        .headers()
        .get("Sec-WebSocket-Protocol")
        .map(|v| v.to_str().unwrap().to_owned());
    (ws, echoed)
}

/// The next text message as JSON, skipping control frames.
async fn next_json(ws: &mut Ws) -> Value {
    tokio::time::timeout(WAIT, async {
        loop {
            match ws
                .next()
                .await
                .expect("socket ended")
                .expect("socket error")
            {
                Message::Text(text) => return serde_json::from_str(&text).unwrap(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected a text message, got {other:?}"),
            }
        }
    })
    .await
    .expect("no message in time")
}

/// The `type` of the next text message.
async fn next_kind(ws: &mut Ws) -> String {
    serde_json::from_value::<ServerEvent>(next_json(ws).await)
        .unwrap()
        .kind
}

/// Reads until the server's close frame; returns its code and reason, and the number of pings
/// seen on the way.
async fn until_close(ws: &mut Ws, within: Duration) -> (CloseCode, String, usize) {
    let mut pings = 0;
    tokio::time::timeout(within, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(Some(frame)))) => {
                    return (frame.code, frame.reason.as_str().to_owned(), pings);
                }
                Some(Ok(Message::Ping(_))) => pings += 1,
                Some(Ok(_)) => {}
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await
    .expect("the server did not close the socket in time")
}

/// Asserts that no text message arrives within `window`.
async fn assert_silent(ws: &mut Ws, window: Duration) {
    let got = tokio::time::timeout(window, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => return text.to_string(),
                Some(Ok(_)) => continue,
                other => panic!("socket ended: {other:?}"),
            }
        }
    })
    .await;
    if let Ok(text) = got {
        panic!("expected nothing, got {text}");
    }
}

async fn wait_subscribed(app: &TestApp) {
    let mut subscribed = app.state.hub.subscribed();
    tokio::time::timeout(WAIT, subscribed.wait_for(|s| *s))
        .await
        .expect("the hub did not subscribe to Redis in time")
        .unwrap();
}

/// Waits until `app` holds exactly `n` sockets.
async fn wait_connections(app: &TestApp, n: usize) {
    tokio::time::timeout(WAIT, async {
        while app.state.hub.connections() != n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("expected {n} sockets, have {}", app.state.hub.connections()));
}

/// A plain HTTP request that asks for the upgrade, for the refusals (problem+json bodies).
async fn upgrade_request(app: &TestApp, query: &str, protocol: Option<&str>) -> reqwest::Response {
    // The server drops a connection that asked for an upgrade: never reuse it.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut req = client
        .get(app.url(&format!("/api/v1/ws{query}")))
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
    if let Some(p) = protocol {
        req = req.header("Sec-WebSocket-Protocol", p);
    }
    req.send().await.unwrap()
}

fn event(kind: &str, n: i64) -> Event {
    Event::new(kind)
        .with("generation_id", format!("g{n}"))
        .with("n", n)
}

#[tokio::test]
async fn a_token_in_the_query_opens_the_socket_and_the_snapshot_comes_first() {
    let app = spawn_app().await;
    let (token, _) = app.login(5001).await;
    let mut ws = connect_query(&app, &token).await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"type": "snapshot", "generations": []})
    );
}

#[tokio::test]
async fn a_token_in_the_subprotocol_opens_the_socket_and_the_protocol_is_echoed() {
    let app = spawn_app().await;
    let (token, _) = app.login(5002).await;

    let (mut ws, echoed) = connect_protocols(&app, &format!("atelier.v1, bearer.{token}")).await;
    assert_eq!(echoed.as_deref(), Some("atelier.v1"));
    assert_eq!(next_kind(&mut ws).await, "snapshot");

    // Alone, the bearer entry is what the server accepted, so it is what it echoes.
    let (mut ws, echoed) = connect_protocols(&app, &format!("bearer.{token}")).await;
    assert_eq!(echoed, Some(format!("bearer.{token}")));
    assert_eq!(next_kind(&mut ws).await, "snapshot");
}

#[tokio::test]
async fn missing_invalid_expired_and_blocked_credentials_are_refused_before_the_upgrade() {
    let app = spawn_app().await;
    let (token, _) = app.login(5003).await;

    let res = upgrade_request(&app, "", None).await;
    assert!(res.headers().contains_key("www-authenticate"));
    assert_problem(res, 401, "missing_credentials").await;
    assert_problem(
        upgrade_request(&app, "?token=not.a.jwt", None).await,
        401,
        "invalid_token",
    )
    .await;
    assert_problem(
        upgrade_request(&app, "", Some("atelier.v1, bearer.not.a.jwt")).await,
        401,
        "invalid_token",
    )
    .await;
    let expired = app
        .state
        .jwt
        .issue(atelier::domain::ids::TelegramId(5003), now() - 86_401)
        .unwrap();
    assert_problem(
        upgrade_request(&app, &format!("?token={expired}"), None).await,
        401,
        "token_expired",
    )
    .await;
    let stranger = app
        .state
        .jwt
        .issue(atelier::domain::ids::TelegramId(5999), now())
        .unwrap();
    assert_problem(
        upgrade_request(&app, &format!("?token={stranger}"), None).await,
        401,
        "invalid_token",
    )
    .await;

    // A real client sees the refusal as an HTTP error, not as a socket.
    match tokio_tungstenite::connect_async(ws_url(&app, "?token=garbage")).await {
        Err(tungstenite::Error::Http(res)) => assert_eq!(res.status(), 401),
        other => panic!("expected a 401, got {other:?}"),
    }

    // A valid token on a request that is no WebSocket handshake.
    let res = app.get(&format!("/api/v1/ws?token={token}"), None).await;
    assert_problem(res, 400, "bad_request").await;

    diesel::update(users::table.filter(users::telegram_id.eq(5003)))
        .set(users::is_blocked.eq(true))
        .execute(&mut app.conn().await)
        .await
        .unwrap();
    assert_problem(
        upgrade_request(&app, &format!("?token={token}"), None).await,
        403,
        "user_blocked",
    )
    .await;
    assert_eq!(app.state.hub.connections(), 0);
}

#[tokio::test]
async fn a_published_event_reaches_every_socket_of_its_user_and_no_other() {
    let app = spawn_app().await;
    let (alice, _) = app.login(5011).await;
    let (bob, _) = app.login(5012).await;
    let alice_id = app.user_id(5011).await;
    let bob_id = app.user_id(5012).await;
    let mut alice1 = connect_query(&app, &alice).await;
    let mut alice2 = connect_query(&app, &alice).await;
    let mut bob1 = connect_query(&app, &bob).await;
    for ws in [&mut alice1, &mut alice2, &mut bob1] {
        assert_eq!(next_kind(ws).await, "snapshot");
    }
    wait_subscribed(&app).await;

    let queued = Event::new("generation.queued")
        .with("generation_id", "g1")
        .with("position", 2);
    realtime::publish(&app.state, alice_id, &queued)
        .await
        .unwrap();
    for ws in [&mut alice1, &mut alice2] {
        assert_eq!(
            next_json(ws).await,
            json!({"type": "generation.queued", "generation_id": "g1", "position": 2})
        );
    }
    assert_silent(&mut bob1, Duration::from_millis(300)).await;

    // Order is kept per user.
    for n in 0..20 {
        realtime::publish(&app.state, bob_id, &event("generation.progress", n))
            .await
            .unwrap();
    }
    for n in 0..20 {
        assert_eq!(next_json(&mut bob1).await["n"], n);
    }
    assert_silent(&mut alice1, Duration::from_millis(200)).await;
}

#[tokio::test]
async fn an_event_published_through_one_instance_reaches_a_socket_on_another() {
    let a = spawn_app().await;
    let b = spawn_second_instance(&a).await;
    let (token, _) = a.login(5021).await;
    let user_id = a.user_id(5021).await;
    // The token from instance A opens a socket on instance B: same keys, same database.
    let mut on_b = connect_query(&b, &token).await;
    assert_eq!(next_kind(&mut on_b).await, "snapshot");
    wait_subscribed(&b).await;

    let done = Event::new("generation.succeeded")
        .with("generation_id", "g7")
        .with("result_url", "https://example.test/r.jpg");
    realtime::publish(&a.state, user_id, &done).await.unwrap();
    assert_eq!(
        next_json(&mut on_b).await,
        serde_json::to_value(&done).unwrap()
    );
    assert_eq!(a.state.hub.connections(), 0);

    // An instance of another deployment (another prefix) hears nothing.
    let other = spawn_app_with(&[("DATABASE_URL", a.database_url.as_str())]).await;
    let mut on_other = connect_query(&other, &token).await;
    assert_eq!(next_kind(&mut on_other).await, "snapshot");
    wait_subscribed(&other).await;
    realtime::publish(&a.state, user_id, &event("chat.reply", 1))
        .await
        .unwrap();
    assert_eq!(next_kind(&mut on_b).await, "chat.reply");
    assert_silent(&mut on_other, Duration::from_millis(300)).await;
}

#[tokio::test]
async fn the_connection_after_the_per_user_cap_is_refused_with_429() {
    let app = spawn_app_with(&[("WS_MAX_CONNECTIONS_PER_USER", "2")]).await;
    let (token, _) = app.login(5031).await;
    let (other, _) = app.login(5032).await;
    let mut first = connect_query(&app, &token).await;
    let _second = connect_query(&app, &token).await;

    let res = upgrade_request(&app, &format!("?token={token}"), None).await;
    assert_eq!(res.headers()["retry-after"], "10");
    let body = assert_problem(res, 429, "rate_limited").await;
    assert!(
        body["detail"].as_str().unwrap().contains("at most 2"),
        "{body}"
    );
    // Another user is not affected.
    let _others = connect_query(&app, &other).await;

    // The gauge is process-wide (other apps of this process count too).
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    let gauge: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ws_connections "))
        .unwrap_or_else(|| panic!("no ws_connections gauge: {metrics}"))
        .parse()
        .unwrap();
    assert!(gauge >= 3.0, "{gauge}");

    // Closing one frees its slot.
    first.close(None).await.unwrap();
    wait_connections(&app, 2).await;
    let mut again = connect_query(&app, &token).await;
    assert_eq!(next_kind(&mut again).await, "snapshot");
}

#[tokio::test]
async fn pings_arrive_and_answering_them_keeps_the_socket_open() {
    let app = spawn_app_with(&[
        ("WS_PING_INTERVAL_SECS", "1"),
        ("WS_IDLE_TIMEOUT_SECS", "2"),
    ])
    .await;
    let (token, _) = app.login(5041).await;
    let mut ws = connect_query(&app, &token).await;
    // Reading makes the client answer each ping with a pong, which counts as activity.
    let mut pings = 0;
    let _ = tokio::time::timeout(Duration::from_millis(4500), async {
        while let Some(msg) = ws.next().await {
            match msg.unwrap() {
                Message::Ping(_) => pings += 1,
                Message::Close(frame) => panic!("closed although it answered pings: {frame:?}"),
                _ => {}
            }
        }
    })
    .await;
    assert!(pings >= 3, "{pings} pings in 4.5 s at one a second");
    assert_eq!(app.state.hub.connections(), 1);

    // A JSON ping, for clients that cannot see control frames, gets a JSON pong.
    ws.send(Message::text(r#"{"type":"ping"}"#)).await.unwrap();
    assert_eq!(next_json(&mut ws).await, json!({"type": "pong"}));
}

#[tokio::test]
async fn a_silent_client_is_closed_after_the_idle_timeout() {
    let app = spawn_app_with(&[
        ("WS_PING_INTERVAL_SECS", "1"),
        ("WS_IDLE_TIMEOUT_SECS", "2"),
    ])
    .await;
    let (token, _) = app.login(5051).await;
    // A raw socket: a WebSocket client library would answer the pings.
    let mut tcp = TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap();
    let handshake = format!(
        "GET /api/v1/ws?token={token} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    tcp.write_all(handshake.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2600)).await;
    wait_connections(&app, 0).await;
    let mut bytes = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut bytes))
        .await
        .expect("the server did not end the connection")
        .unwrap();
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(
        bytes.starts_with(b"HTTP/1.1 101"),
        "{:?}",
        String::from_utf8_lossy(&bytes)
    );
    // Server frames are unmasked and small here: FIN+opcode, 7-bit length, payload.
    let mut frames = Vec::new();
    let mut rest = &bytes[head_end..];
    while rest.len() >= 2 {
        let (opcode, len) = (rest[0] & 0x0f, usize::from(rest[1] & 0x7f));
        assert!(len < 126, "a small frame");
        frames.push((opcode, rest[2..2 + len].to_vec()));
        rest = &rest[2 + len..];
    }
    let opcodes: Vec<u8> = frames.iter().map(|(op, _)| *op).collect();
    assert!(
        opcodes.starts_with(&[0x1]),
        "the snapshot first: {opcodes:?}"
    );
    assert!(
        opcodes.contains(&0x9),
        "pinged before giving up: {opcodes:?}"
    );
    let (last, payload) = frames.last().unwrap();
    assert_eq!(*last, 0x8, "ends with a close frame: {opcodes:?}");
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1000);
    assert_eq!(&payload[2..], b"idle timeout");
}

#[tokio::test]
async fn an_oversized_message_closes_the_socket_with_1009() {
    let app = spawn_app_with(&[("WS_MAX_FRAME_BYTES", "1024")]).await;
    let (token, _) = app.login(5061).await;
    let mut ws = connect_query(&app, &token).await;
    assert_eq!(next_kind(&mut ws).await, "snapshot");
    ws.send(Message::text("x".repeat(800))).await.unwrap();
    ws.send(Message::text("x".repeat(2000))).await.unwrap();
    let (code, reason, _) = until_close(&mut ws, WAIT).await;
    assert_eq!(code, CloseCode::Size);
    assert_eq!(reason, "message too big");
    wait_connections(&app, 0).await;
}

#[tokio::test]
async fn a_socket_is_closed_when_its_access_token_expires() {
    let app = spawn_app_with(&[("JWT_TTL_SECS", "2")]).await;
    let (token, _) = app.login(5065).await;
    let mut ws = connect_query(&app, &token).await;
    assert_eq!(next_kind(&mut ws).await, "snapshot");
    let (code, reason, _) = until_close(&mut ws, WAIT).await;
    assert_eq!(code, CloseCode::Policy);
    assert!(reason.starts_with("token expired"), "{reason}");
    wait_connections(&app, 0).await;
    // The expired token opens nothing new.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let res = app.get("/api/v1/me", Some(&token)).await;
    assert_problem(res, 401, "token_expired").await;
}

#[tokio::test]
async fn a_blocked_users_sockets_are_closed_at_once_on_every_instance() {
    let key = "admin-key-for-the-ws-tests-0123456789";
    let app = spawn_app_with(&[("ADMIN_API_KEY", key)]).await;
    let second = spawn_second_instance(&app).await;
    wait_subscribed(&app).await;
    wait_subscribed(&second).await;
    let (token, _) = app.login(5067).await;
    let (other, _) = app.login(5068).await;
    let mut here = connect_query(&app, &token).await;
    let mut there = connect_query(&second, &token).await;
    let mut bystander = connect_query(&second, &other).await;
    for ws in [&mut here, &mut there, &mut bystander] {
        assert_eq!(next_kind(ws).await, "snapshot");
    }

    let res = app
        .client
        .post(app.url("/admin/users/5067/block"))
        .header("X-Admin-API-Key", key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    for ws in [&mut here, &mut there] {
        let (code, reason, _) = until_close(ws, WAIT).await;
        assert_eq!(
            (code, reason.as_str()),
            (CloseCode::Policy, "account blocked")
        );
    }
    wait_connections(&app, 0).await;
    wait_connections(&second, 1).await;
    // The other user's socket stays open and still gets events.
    let other_id = app.user_id(5068).await;
    realtime::publish(&app.state, other_id, &event("generation.running", 7))
        .await
        .unwrap();
    assert_eq!(next_kind(&mut bystander).await, "generation.running");
    // And the blocked user cannot open a new one.
    assert_problem(
        upgrade_request(&app, &format!("?token={token}"), None).await,
        403,
        "user_blocked",
    )
    .await;
}

#[tokio::test]
async fn shutdown_closes_sockets_with_going_away_and_refuses_new_ones() {
    let app = spawn_app().await;
    let (token, _) = app.login(5071).await;
    let mut ws = connect_query(&app, &token).await;
    assert_eq!(next_kind(&mut ws).await, "snapshot");
    app.state.hub.shutdown();
    let (code, _, _) = until_close(&mut ws, WAIT).await;
    assert_eq!(code, CloseCode::Away);
    assert_problem(
        upgrade_request(&app, &format!("?token={token}"), None).await,
        503,
        "service_unavailable",
    )
    .await;
}

#[tokio::test]
async fn without_redis_sockets_still_open_and_publishing_reports_the_error() {
    let app = spawn_app_with(&[("REDIS_URL", "redis://127.0.0.1:1")]).await;
    let (token, _) = app.login(5081).await;
    let mut ws = connect_query(&app, &token).await;
    assert_eq!(next_kind(&mut ws).await, "snapshot");
    let user_id = app.user_id(5081).await;
    assert!(
        realtime::publish(&app.state, user_id, &event("generation.running", 1))
            .await
            .is_err()
    );
    assert_eq!(app.get("/health", None).await.status(), 200);
}

/// A TCP proxy in front of Redis whose connections can be cut, to play a Redis outage.
struct CuttableProxy {
    port: u16,
    conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    _accept: tokio::task::AbortHandle,
}

impl CuttableProxy {
    async fn start() -> Self {
        let redis = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let upstream = redis
            .trim_start_matches("redis://")
            .split(['/', '?'])
            .next()
            .unwrap()
            .rsplit('@')
            .next()
            .unwrap()
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let tracked = conns.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                tracked.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                }));
            }
        });
        Self {
            port,
            conns,
            _accept: accept.abort_handle(),
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Drops every open connection, as a Redis restart would.
    fn cut(&self) {
        for conn in self.conns.lock().unwrap().drain(..) {
            conn.abort();
        }
    }
}

#[tokio::test]
async fn the_hub_resubscribes_after_redis_drops_and_resends_the_snapshot() {
    let proxy = CuttableProxy::start().await;
    let app = spawn_app_with(&[("REDIS_URL", proxy.url().as_str())]).await;
    let (token, _) = app.login(5091).await;
    let user_id = app.user_id(5091).await;
    let mut ws = connect_query(&app, &token).await;
    assert_eq!(next_kind(&mut ws).await, "snapshot");
    wait_subscribed(&app).await;

    let mut subscribed = app.state.hub.subscribed();
    proxy.cut();
    tokio::time::timeout(WAIT, subscribed.wait_for(|s| !*s))
        .await
        .expect("the hub did not notice the lost connection")
        .unwrap();
    wait_subscribed(&app).await;
    // Events may have been missed while it was away: the socket gets the current state again.
    assert_eq!(next_kind(&mut ws).await, "snapshot");

    realtime::publish(&app.state, user_id, &event("generation.running", 1))
        .await
        .unwrap();
    assert_eq!(next_kind(&mut ws).await, "generation.running");
}

/// A Redis server of this test's own, on a free port, that can be stopped and started again
/// (the shared one must not be).
struct LocalRedis {
    port: u16,
    child: Option<std::process::Child>,
}

impl LocalRedis {
    /// Picks a free port; nothing listens there until [`LocalRedis::start`].
    fn on_a_free_port() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self { port, child: None }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn start(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (installed with Redis) must be on PATH");
        self.child = Some(child);
        tokio::time::timeout(WAIT, async {
            while TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("redis-server did not listen in time");
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Up to the subscriber's longest pause (5 s plus jitter) and a connection attempt.
const RECONNECT_WAIT: Duration = Duration::from_secs(20);

async fn wait_subscription(app: &TestApp, live: bool) {
    let mut subscribed = app.state.hub.subscribed();
    tokio::time::timeout(RECONNECT_WAIT, subscribed.wait_for(|s| *s == live))
        .await
        .unwrap_or_else(|_| panic!("the hub's subscription did not become {live} in time"))
        .unwrap();
}

#[tokio::test]
async fn the_api_serves_without_redis_and_the_hub_subscribes_once_it_is_back() {
    let mut redis = LocalRedis::on_a_free_port();
    let app = spawn_app_with(&[("REDIS_URL", redis.url().as_str())]).await;
    // Redis is not there: ready but degraded; logins (limits fail open) and sockets work.
    let ready: Value = app.get("/ready", None).await.json().await.unwrap();
    assert_eq!(ready["status"], "degraded", "{ready}");
    let (token, _) = app.login(5092).await;
    let user_id = app.user_id(5092).await;
    let mut ws = connect_query(&app, &token).await;
    assert_eq!(next_kind(&mut ws).await, "snapshot");
    assert!(!*app.state.hub.subscribed().borrow());

    redis.start().await;
    wait_subscription(&app, true).await;
    // Events may have been missed: the socket gets the current state, then live events.
    assert_eq!(next_kind(&mut ws).await, "snapshot");
    realtime::publish(&app.state, user_id, &event("generation.running", 1))
        .await
        .unwrap();
    assert_eq!(next_kind(&mut ws).await, "generation.running");
    let ready: Value = app.get("/ready", None).await.json().await.unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");

    // Redis restarts: the hub notices, keeps trying, and is back once Redis is.
    redis.stop();
    wait_subscription(&app, false).await;
    redis.start().await;
    wait_subscription(&app, true).await;
    assert_eq!(next_kind(&mut ws).await, "snapshot");
    realtime::publish(&app.state, user_id, &event("generation.running", 2))
        .await
        .unwrap();
    assert_eq!(next_kind(&mut ws).await, "generation.running");
}
