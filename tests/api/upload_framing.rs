//! Upload bodies that lie about their framing, over a raw socket (HTTP/1.1 written by hand):
//! chunked bodies past the request cap, endless part headers and preambles, many tiny parts,
//! a `Content-Length` that lies, and bodies that trickle. Each exchange is bounded: the client
//! sends until the server answers or its byte budget is spent, and waits a bounded time.

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{TestApp, init_data, spawn_app_with};

const BOUNDARY: &str = "atelierframingboundary";
/// How long a client waits for an answer before it calls the server hung.
const PATIENCE: Duration = Duration::from_secs(20);

/// What the client saw.
#[derive(Debug)]
struct Seen {
    status: Option<u16>,
    body: String,
    /// The read gave up waiting (no answer, connection still open).
    hung: bool,
    /// Body bytes the client got to write.
    sent: usize,
}

impl Seen {
    fn problem(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not a JSON body ({e}): {self:?}"))
    }

    #[track_caller]
    fn assert_problem(&self, status: u16, code: &str) {
        assert!(!self.hung, "the server did not answer: {self:?}");
        assert_eq!(self.status, Some(status), "{self:?}");
        assert_eq!(self.problem()["code"], code, "{self:?}");
    }
}

fn port(app: &TestApp) -> u16 {
    app.address.rsplit(':').next().unwrap().parse().unwrap()
}

/// Writes `head`, then the chunks `next` gives (until `None` or the socket fails) from a thread
/// of its own, while reading the response; returns what came back.
async fn exchange(
    port: u16,
    head: String,
    next: impl FnMut(usize) -> Option<Vec<u8>> + Send + 'static,
) -> Seen {
    tokio::task::spawn_blocking(move || exchange_blocking(port, head, next))
        .await
        .unwrap()
}

fn exchange_blocking(
    port: u16,
    head: String,
    mut next: impl FnMut(usize) -> Option<Vec<u8>> + Send + 'static,
) -> Seen {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let answered = Arc::new(AtomicBool::new(false));
    let done = Arc::clone(&answered);
    let sender = std::thread::spawn(move || {
        let mut sent = 0;
        if writer.write_all(head.as_bytes()).is_err() {
            return sent;
        }
        while let Some(chunk) = next(sent).filter(|_| !done.load(Ordering::Relaxed)) {
            if writer.write_all(&chunk).is_err() {
                break;
            }
            sent += chunk.len();
        }
        sent
    });
    let (status, body, hung) = read_response(&stream);
    answered.store(true, Ordering::Relaxed);
    // Unblocks the sender if the server stopped reading.
    let _ = stream.shutdown(Shutdown::Both);
    let sent = sender.join().unwrap();
    Seen {
        status,
        body,
        hung,
        sent,
    }
}

/// Reads one response (its head and a `Content-Length` body) or until the connection ends.
fn read_response(mut stream: &TcpStream) -> (Option<u16>, String, bool) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let status = head.split(' ').nth(1).and_then(|s| s.parse::<u16>().ok());
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).into_owned();
                return (status, body, false);
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return (None, String::from_utf8_lossy(&buf).into_owned(), true);
            }
            Err(_) => break,
        }
    }
    (None, String::from_utf8_lossy(&buf).into_owned(), false)
}

/// Request head of a chunked upload.
fn chunked_head(path: &str, token: &str, boundary: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    )
}

/// One chunk of a chunked body.
fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

fn part_head(name: &str) -> String {
    format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"p.jpg\"\r\n\
         Content-Type: image/jpeg\r\n\r\n"
    )
}

/// A chunked body: `start`, then `filler` chunks until `budget` bytes were sent.
fn endless(
    start: Vec<u8>,
    filler: Vec<u8>,
    budget: usize,
) -> impl FnMut(usize) -> Option<Vec<u8>> + Send + 'static {
    let mut first = (!start.is_empty()).then(|| chunk(&start));
    let filler = chunk(&filler);
    move |sent| {
        first
            .take()
            .or_else(|| (sent < budget).then(|| filler.clone()))
    }
}

async fn app_and_token(overrides: &[(&str, &str)]) -> (TestApp, String) {
    let app = spawn_app_with(overrides).await;
    let (token, _) = app.login(1).await;
    (app, token)
}

/// A chunked body with no length never gets past the request cap: past it the answer is 413
/// `payload_too_large` while the client is still sending (before, the per-file cap was the
/// only one counted while streaming, and the rest was read up to the cap again).
#[tokio::test]
async fn a_chunked_body_past_the_request_cap_is_a_413_before_it_ends() {
    let (app, token) = app_and_token(&[
        ("UPLOAD_MAX_BYTES", "1048576"),
        ("UPLOAD_MAX_REQUEST_BYTES", "1572864"),
    ])
    .await;
    // A person just under the per-file cap, then an item that never ends: the request cap is
    // reached first (1.5 MiB), the item's cap (1 MiB) would be later.
    let mut start = part_head("person").into_bytes();
    start.extend(vec![b'p'; 1_000_000]);
    start.extend_from_slice(b"\r\n");
    start.extend(part_head("item").into_bytes());
    let budget = 64 << 20;
    let seen = exchange(
        port(&app),
        chunked_head("/api/v1/fitting/upload", &token, BOUNDARY),
        endless(start, vec![b'i'; 64 * 1024], budget),
    )
    .await;
    seen.assert_problem(413, "payload_too_large");
    assert!(seen.sent < budget, "the whole body was read: {}", seen.sent);
}

/// A part header that never ends is refused at 8 KiB (it was buffered whole).
#[tokio::test]
async fn an_endless_part_header_is_a_400() {
    let (app, token) = app_and_token(&[]).await;
    let start = format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"image\"; x=\"")
        .into_bytes();
    let seen = exchange(
        port(&app),
        chunked_head("/api/v1/editing/upload", &token, BOUNDARY),
        endless(start, vec![b'a'; 16 * 1024], 32 << 20),
    )
    .await;
    seen.assert_problem(400, "part_header_too_large");
}

/// A preamble that never reaches a boundary is refused (it was buffered whole).
#[tokio::test]
async fn an_endless_preamble_is_a_400() {
    let (app, token) = app_and_token(&[]).await;
    let seen = exchange(
        port(&app),
        chunked_head("/api/v1/editing/upload", &token, BOUNDARY),
        endless(
            b"no boundary here".to_vec(),
            vec![b'a'; 16 * 1024],
            32 << 20,
        ),
    )
    .await;
    seen.assert_problem(400, "preamble_too_long");
}

/// More parts than the route takes are refused by the framing, whatever their names.
#[tokio::test]
async fn many_tiny_parts_are_a_400() {
    let (app, token) = app_and_token(&[]).await;
    let tiny = format!("{}x\r\n", part_head("image"));
    let seen = exchange(
        port(&app),
        chunked_head("/api/v1/editing/upload", &token, BOUNDARY),
        endless(Vec::new(), tiny.repeat(200).into_bytes(), 32 << 20),
    )
    .await;
    seen.assert_problem(400, "too_many_parts");
}

/// actix-multipart slices a boundary of under 4 characters out of bounds on a `--` line of the
/// preamble (the worker panicked and the connection closed unanswered).
#[tokio::test]
async fn a_too_short_boundary_is_a_400() {
    let (app, token) = app_and_token(&[]).await;
    let body = b"--\r\n--abc\r\n".to_vec();
    let head = format!(
        "POST /api/v1/editing/upload HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: multipart/form-data; boundary=abc\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut once = Some(body);
    let seen = exchange(port(&app), head, move |_| once.take()).await;
    seen.assert_problem(400, "invalid_multipart");
}

fn with_length(token: &str, length: usize) -> String {
    format!(
        "POST /api/v1/editing/upload HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {length}\r\n\r\n"
    )
}

/// A `Content-Length` smaller than the body: the body ends early, a clean 400.
#[tokio::test]
async fn a_content_length_smaller_than_the_body_is_a_400() {
    let (app, token) = app_and_token(&[]).await;
    let mut body = part_head("image").into_bytes();
    body.extend(vec![b'x'; 10_000]);
    body.extend(format!("\r\n--{BOUNDARY}--\r\n").into_bytes());
    let mut once = Some(body);
    let seen = exchange(port(&app), with_length(&token, 200), move |_| once.take()).await;
    seen.assert_problem(400, "invalid_multipart");
}

/// A `Content-Length` larger than the body (the client then waits): 408 at the body deadline,
/// not a request held open for ever.
#[tokio::test]
async fn a_content_length_larger_than_the_body_is_a_408() {
    let (app, token) = app_and_token(&[("REQUEST_BODY_TIMEOUT_SECS", "1")]).await;
    let mut body = part_head("image").into_bytes();
    body.extend(vec![b'x'; 1000]);
    let mut once = Some(body);
    let started = Instant::now();
    // The client keeps the connection open (it sends nothing more) until it is answered.
    let seen = exchange(port(&app), with_length(&token, 1 << 20), move |_| {
        once.take().or_else(|| {
            (started.elapsed() < PATIENCE).then(|| {
                std::thread::sleep(Duration::from_millis(50));
                Vec::new()
            })
        })
    })
    .await;
    seen.assert_problem(408, "request_timeout");
}

/// A body that trickles in (a byte every 50 ms, for ever) is cut at the body deadline: 408 or
/// a closed connection, never an upload held open for ever.
#[tokio::test]
async fn a_trickling_upload_is_cut_at_the_deadline() {
    let (app, token) = app_and_token(&[("REQUEST_BODY_TIMEOUT_SECS", "1")]).await;
    let mut first = Some(chunk(part_head("image").as_bytes()));
    let started = Instant::now();
    let seen = exchange(
        port(&app),
        chunked_head("/api/v1/editing/upload", &token, BOUNDARY),
        move |_| {
            first.take().or_else(|| {
                (started.elapsed() < PATIENCE).then(|| {
                    std::thread::sleep(Duration::from_millis(50));
                    chunk(b"x")
                })
            })
        },
    )
    .await;
    assert!(!seen.hung, "the server kept waiting: {seen:?}");
    if seen.status.is_some() {
        seen.assert_problem(408, "request_timeout");
    }
}

/// The deadline covers JSON bodies too: a login whose body never completes is a 408.
#[tokio::test]
async fn a_json_body_that_never_completes_is_a_408() {
    let app = spawn_app_with(&[("REQUEST_BODY_TIMEOUT_SECS", "1")]).await;
    let body = serde_json::json!({ "init_data": init_data(1) }).to_string();
    let head = format!(
        "POST /api/v1/auth/telegram HTTP/1.1\r\nHost: localhost\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len() + 10
    );
    let mut once = Some(body.into_bytes());
    let started = Instant::now();
    let seen = exchange(port(&app), head, move |_| {
        once.take().or_else(|| {
            (started.elapsed() < PATIENCE).then(|| {
                std::thread::sleep(Duration::from_millis(50));
                Vec::new()
            })
        })
    })
    .await;
    seen.assert_problem(408, "request_timeout");
}
