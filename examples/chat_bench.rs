//! Chat turn benchmark client, run by `scripts/bench-chat.sh` (`make bench-chat`) against a
//! release `atelier serve`: hosts an instant fake OpenRouter (a fixed, valid answer the moment a
//! request is read), gives every user a photo and a session, then sends chat turns open-loop at a
//! fixed rate and measures each from its scheduled send time to the end of the reply. With the
//! provider taking no time, that is our side of a turn: auth, the charge transaction, building the
//! request, the call over loopback, reading the streamed answer and publishing its `chat.delta`
//! previews, parsing, the history transaction, the `chat.reply` publish.
//!
//! Reads the same environment as the server (DATABASE_URL, JWT_*) to issue tokens for the users
//! the script created.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context;
use atelier::config::Settings;
use atelier::state::AppState;
use clap::Parser;
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// The API's base URL.
    #[arg(long, default_value = "http://127.0.0.1:18082")]
    url: String,
    /// Where the fake OpenRouter listens (the server's OPENROUTER_BASE_URL points here).
    #[arg(long, default_value_t = 18092)]
    fake_port: u16,
    /// Users (they must exist); each holds one session and sends every users/rate seconds.
    #[arg(long, default_value_t = 200)]
    users: i64,
    #[arg(long, default_value_t = 900_001)]
    first_telegram_id: i64,
    /// Turns per second, open loop.
    #[arg(long, default_value_t = 200)]
    rate: u64,
    /// Length of the measured phase.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// The server process, for its CPU time per turn.
    #[arg(long)]
    server_pid: Option<u32>,
}

/// Time the fake spends per request (µs), to show it is not part of the figure.
#[derive(Default)]
struct FakeStats {
    handled: AtomicU64,
    micros: Mutex<Vec<u64>>,
}

const ANSWER: &str = r#"{"reply":"Three ways to do it.","variants":["Make the sky pink; keep the face and pose unchanged.","A bolder pink sky with richer colours; keep the face.","A pink sky as a fine-art photograph; keep the framing."]}"#;

/// The answer as OpenRouter streams it: four `delta.content` pieces, then the finish reason and
/// usage, then `[DONE]` (or whole, when the request did not ask for a stream).
fn answer(streamed: bool) -> HttpResponse {
    let usage = json!({"prompt_tokens": 194, "completion_tokens": 42, "total_tokens": 236, "cost": 0.000404});
    if !streamed {
        return HttpResponse::Ok().json(json!({
            "id": "gen-bench", "object": "chat.completion", "model": "bench/instant",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": ANSWER, "refusal": null}}],
            "usage": usage
        }));
    }
    let chars: Vec<char> = ANSWER.chars().collect();
    let mut out = String::new();
    for piece in chars.chunks(chars.len().div_ceil(4)) {
        let piece: String = piece.iter().collect();
        let chunk = json!({"id": "gen-bench", "object": "chat.completion.chunk",
                           "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]});
        out.push_str(&format!("data: {chunk}\n\n"));
    }
    let last = json!({"id": "gen-bench", "object": "chat.completion.chunk",
                      "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "stop"}],
                      "usage": usage});
    out.push_str(&format!("data: {last}\n\ndata: [DONE]\n\n"));
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .body(out)
}

async fn fake_completion(body: web::Bytes, stats: web::Data<FakeStats>) -> HttpResponse {
    let started = Instant::now();
    let request = serde_json::from_slice::<Value>(&body).ok();
    let reply = match request.filter(|b| b["messages"].is_array()) {
        Some(b) => answer(b["stream"] == true),
        None => {
            HttpResponse::BadRequest().json(json!({"error": {"code": 400, "message": "bad body"}}))
        }
    };
    stats.handled.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut m) = stats.micros.lock() {
        m.push(started.elapsed().as_micros() as u64);
    }
    reply
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: Option<u32>) -> f64 {
    let Some(pid) = pid else { return 0.0 };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

fn jpeg() -> Vec<u8> {
    let img = image::RgbImage::from_fn(640, 480, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    let _ = img.write_to(&mut out, image::ImageFormat::Jpeg);
    out.into_inner()
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let settings = Settings::from_env()?;
    let state = AppState::build(settings)?;

    let stats = web::Data::new(FakeStats::default());
    let fake_stats = stats.clone();
    let fake = HttpServer::new(move || {
        App::new()
            .app_data(fake_stats.clone())
            .app_data(web::PayloadConfig::new(4 << 20))
            .route("/api/v1/chat/completions", web::post().to(fake_completion))
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", args.fake_port))
    .with_context(|| format!("binding the fake OpenRouter on port {}", args.fake_port))?
    .run();
    let fake_handle = fake.handle();
    tokio::spawn(fake);

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let photo = jpeg();

    // Each user: a token, a photo, and a session opened by a first turn (not measured).
    let mut users: Vec<(String, String)> = Vec::new();
    for i in 0..args.users {
        let tid = args.first_telegram_id + i;
        let token = state.jwt.issue(
            atelier::domain::ids::TelegramId(tid),
            chrono::Utc::now().timestamp(),
        )?;
        let part = reqwest::multipart::Part::bytes(photo.clone())
            .file_name("p.jpg")
            .mime_str("image/jpeg")?;
        let upload: Value = client
            .post(format!("{}/api/v1/editing/upload", args.url))
            .bearer_auth(&token)
            .multipart(reqwest::multipart::Form::new().part("image", part))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let first: Value = client
            .post(format!("{}/api/v1/editing/chat", args.url))
            .bearer_auth(&token)
            .json(&json!({"upload_id": upload["id"], "message": "make the sky pink"}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let session = first["session_id"]
            .as_str()
            .context("no session_id")?
            .to_owned();
        users.push((token, session));
    }
    let users = Arc::new(users);
    if let Ok(mut m) = stats.micros.lock() {
        m.clear();
    }

    let total = args.rate * args.seconds;
    let interval = Duration::from_secs_f64(1.0 / args.rate as f64);
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
    let errors = Arc::new(AtomicU64::new(0));
    let cpu_before = cpu_seconds(args.server_pid);
    let started = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let scheduled = started + interval * i as u32;
        tokio::time::sleep_until(scheduled).await;
        let (client, users, latencies, errors) = (
            client.clone(),
            users.clone(),
            latencies.clone(),
            errors.clone(),
        );
        let url = format!("{}/api/v1/editing/chat", args.url);
        tasks.push(tokio::spawn(async move {
            // The client's own lateness: tokio's timer has a millisecond's grain, and the task
            // may wait for a thread.
            let sent = tokio::time::Instant::now();
            let (token, session) = &users[(i % users.len() as u64) as usize];
            let body =
                json!({"session_id": session, "message": format!("turn {i}: a warmer light")});
            // Keyed, as the Mini App sends them (a retry must not charge twice).
            let res = client
                .post(url)
                .bearer_auth(token)
                .header("Idempotency-Key", format!("bench-{i}"))
                .json(&body)
                .send()
                .await;
            let ok = match res {
                Ok(r) if r.status() == 200 => r.bytes().await.is_ok(),
                Ok(r) => {
                    let status = r.status();
                    let text = r.text().await.unwrap_or_default();
                    eprintln!("turn {i}: HTTP {status}: {text}");
                    false
                }
                Err(e) => {
                    eprintln!("turn {i}: {e}");
                    false
                }
            };
            // From the scheduled time: a server that falls behind is charged for the wait.
            // From the send: the same less the client's lateness.
            let ms = scheduled.elapsed().as_secs_f64() * 1000.0;
            let from_send = sent.elapsed().as_secs_f64() * 1000.0;
            if ok {
                if let Ok(mut l) = latencies.lock() {
                    l.push((ms, from_send));
                }
            } else {
                errors.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(args.server_pid) - cpu_before;

    let pairs = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    let mut l: Vec<f64> = pairs.iter().map(|p| p.0).collect();
    l.sort_by(f64::total_cmp);
    let mut sent: Vec<f64> = pairs.iter().map(|p| p.1).collect();
    sent.sort_by(f64::total_cmp);
    let mut lag: Vec<f64> = pairs.iter().map(|p| p.0 - p.1).collect();
    lag.sort_by(f64::total_cmp);
    let mut fake_us: Vec<f64> = stats
        .micros
        .lock()
        .map(|m| m.iter().map(|v| *v as f64).collect())
        .unwrap_or_default();
    fake_us.sort_by(f64::total_cmp);
    let ok = l.len();
    println!(
        "CHAT_BENCH|{total}|{ok}|{}|{:.1}|{:.2}|{:.2}|{:.2}|{:.2}|{:.2}|{:.0}|{:.2}|{}|{:.2}|{:.2}|{:.2}|{:.2}|{:.2}",
        errors.load(Ordering::Relaxed),
        ok as f64 / elapsed,
        percentile(&l, 0.50),
        percentile(&l, 0.90),
        percentile(&l, 0.99),
        percentile(&l, 0.999),
        l.last().copied().unwrap_or(0.0),
        percentile(&fake_us, 0.99),
        if ok > 0 {
            cpu * 1000.0 / ok as f64
        } else {
            0.0
        },
        args.users,
        percentile(&sent, 0.50),
        percentile(&sent, 0.90),
        percentile(&sent, 0.99),
        percentile(&sent, 0.999),
        percentile(&lag, 0.99),
    );
    fake_handle.stop(false).await;
    Ok(())
}
