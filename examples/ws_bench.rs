//! WebSocket fan-out benchmark client, run by `scripts/bench-ws.sh` (`make bench-ws`) against a
//! release `atelier serve`: opens N authenticated sockets spread over existing users, publishes
//! events through Redis exactly as the workers do (`realtime::publish`), each stamped with its
//! send time, and measures publish → receipt delay and the server's memory.
//!
//! Reads the same environment as the server (DATABASE_URL, REDIS_URL, REDIS_KEY_PREFIX, JWT_*).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use atelier::config::Settings;
use atelier::realtime::{self, Event};
use atelier::state::AppState;
use clap::Parser;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
struct Args {
    /// The socket endpoint, without the token.
    #[arg(long, default_value = "ws://127.0.0.1:18081/api/v1/ws")]
    url: String,
    #[arg(long, default_value_t = 5000)]
    sockets: usize,
    /// Users the sockets are spread over (round robin); they must exist.
    #[arg(long, default_value_t = 1000)]
    users: i64,
    #[arg(long, default_value_t = 800_001)]
    first_telegram_id: i64,
    /// Events of the steady phase, each to one user (so to all of that user's sockets).
    #[arg(long, default_value_t = 5000)]
    events: usize,
    /// Events per second in the steady phase.
    #[arg(long, default_value_t = 500)]
    rate: u64,
    /// Handshakes in flight while connecting.
    #[arg(long, default_value_t = 100)]
    connect_concurrency: usize,
    /// The server process, for its memory figures.
    #[arg(long)]
    server_pid: Option<u32>,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// VmRSS and VmHWM of a process, in MiB.
fn memory_mib(pid: Option<u32>) -> (f64, f64) {
    let Some(pid) = pid else {
        return (0.0, 0.0);
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Delays (µs) recorded by the readers, per phase.
#[derive(Default)]
struct Receipts {
    delays: Mutex<Vec<(u8, u64)>>,
    count: AtomicU64,
    disconnects: AtomicU64,
}

struct Summary {
    received: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

impl Receipts {
    fn summary(&self, phase: u8) -> Summary {
        let mut d: Vec<u64> = self
            .delays
            .lock()
            .map(|v| {
                v.iter()
                    .filter(|(p, _)| *p == phase)
                    .map(|(_, d)| *d)
                    .collect()
            })
            .unwrap_or_default();
        d.sort_unstable();
        let pct = |q: f64| {
            if d.is_empty() {
                return 0.0;
            }
            let i = ((d.len() as f64 * q).ceil() as usize).clamp(1, d.len()) - 1;
            d[i] as f64 / 1000.0
        };
        Summary {
            received: d.len(),
            p50_ms: pct(0.50),
            p99_ms: pct(0.99),
            max_ms: d.last().map_or(0.0, |v| *v as f64 / 1000.0),
        }
    }

    async fn wait_for(&self, total: u64, idle: Duration) {
        let mut last = self.count.load(Ordering::Relaxed);
        let mut since = Instant::now();
        while self.count.load(Ordering::Relaxed) < total && since.elapsed() < idle {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = self.count.load(Ordering::Relaxed);
            if now != last {
                last = now;
                since = Instant::now();
            }
        }
    }
}

async fn open(url: String, receipts: Arc<Receipts>) -> anyhow::Result<()> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    match ws.next().await {
        Some(Ok(Message::Text(t))) if t.as_str().starts_with(r#"{"type":"snapshot""#) => {}
        other => anyhow::bail!("expected the snapshot first, got {other:?}"),
    }
    tokio::spawn(async move {
        while let Some(msg) = ws.next().await {
            let text = match msg {
                Ok(Message::Text(text)) => text,
                Ok(_) => continue,
                Err(_) => break,
            };
            let received = now_us();
            let Ok(event) = serde_json::from_str::<Event>(text.as_str()) else {
                continue;
            };
            let sent = event.data.get("sent_us").and_then(|v| v.as_u64());
            let phase = event.data.get("phase").and_then(|v| v.as_u64());
            if let (Some(sent), Some(phase)) = (sent, phase) {
                if let Ok(mut d) = receipts.delays.lock() {
                    d.push((phase as u8, received.saturating_sub(sent)));
                }
                receipts.count.fetch_add(1, Ordering::Relaxed);
            }
        }
        receipts.disconnects.fetch_add(1, Ordering::Relaxed);
    });
    Ok(())
}

fn event(phase: u8, seq: usize) -> Event {
    Event::new(realtime::types::GENERATION_PROGRESS)
        .with("generation_id", format!("bench-{seq}"))
        .with("progress", (seq % 100) as u64)
        .with("phase", phase)
        .with("sent_us", now_us())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let settings = Settings::from_env()?;
    let state = AppState::build(settings)?;

    let mut users = Vec::new();
    {
        let mut conn = state.db.get().await?;
        for tid in args.first_telegram_id..args.first_telegram_id + args.users {
            let user = atelier::db::users::find_by_telegram_id(
                &mut conn,
                atelier::domain::ids::TelegramId(tid),
            )
            .await?
            .with_context(|| format!("no user with Telegram id {tid}"))?;
            let token = state.jwt.issue(
                atelier::domain::ids::TelegramId(tid),
                chrono::Utc::now().timestamp(),
            )?;
            users.push((user.id, token));
        }
    }
    let per_user = args.sockets.div_ceil(users.len());
    let (rss_base, _) = memory_mib(args.server_pid);

    // Connect.
    let receipts = Arc::new(Receipts::default());
    let started = Instant::now();
    let urls: Vec<String> = (0..args.sockets)
        .map(|i| format!("{}?token={}", args.url, users[i % users.len()].1))
        .collect();
    let outcomes: Vec<anyhow::Result<()>> = futures_util::stream::iter(urls)
        .map(|url| open(url, receipts.clone()))
        .buffer_unordered(args.connect_concurrency)
        .collect()
        .await;
    let connect_secs = started.elapsed().as_secs_f64();
    let failed: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    if let Some(e) = failed.first() {
        eprintln!(
            "{} sockets failed to open; first error: {e:#}",
            failed.len()
        );
    }
    let open_sockets = args.sockets - failed.len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss_connected, _) = memory_mib(args.server_pid);
    eprintln!(
        "{open_sockets} sockets open in {connect_secs:.1} s; server RSS {rss_connected:.1} MiB"
    );

    // Steady phase: events at a fixed rate, each to one user's sockets.
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / args.rate.max(1)));
    let mut publish_errors = 0usize;
    let steady_start = Instant::now();
    for seq in 0..args.events {
        tick.tick().await;
        let (user_id, _) = &users[seq % users.len()];
        if realtime::publish(&state, *user_id, &event(1, seq))
            .await
            .is_err()
        {
            publish_errors += 1;
        }
    }
    let steady_secs = steady_start.elapsed().as_secs_f64();
    let steady_expected = (args.events * per_user) as u64;
    receipts
        .wait_for(steady_expected, Duration::from_secs(3))
        .await;

    // Burst phase: one event to every user at once (16 publishers, as many as the Redis pool).
    let before_burst = receipts.count.load(Ordering::Relaxed);
    let burst_start = Instant::now();
    let burst_errors: usize = futures_util::stream::iter(users.iter().enumerate())
        .map(|(seq, (user_id, _))| {
            let state = &state;
            async move {
                realtime::publish(state, *user_id, &event(2, seq))
                    .await
                    .is_err()
            }
        })
        .buffer_unordered(16)
        .filter(|failed| std::future::ready(*failed))
        .count()
        .await;
    let burst_publish_secs = burst_start.elapsed().as_secs_f64();
    let burst_expected = (users.len() * per_user) as u64;
    receipts
        .wait_for(before_burst + burst_expected, Duration::from_secs(3))
        .await;
    let (rss_end, hwm) = memory_mib(args.server_pid);

    let steady = receipts.summary(1);
    let burst = receipts.summary(2);
    let disconnects = receipts.disconnects.load(Ordering::Relaxed);
    println!(
        "steady: {} events at {}/s over {steady_secs:.1} s -> {} of {steady_expected} deliveries, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        args.events, args.rate, steady.received, steady.p50_ms, steady.p99_ms, steady.max_ms
    );
    println!(
        "burst: {} events published in {burst_publish_secs:.3} s -> {} of {burst_expected} deliveries, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        users.len(),
        burst.received,
        burst.p50_ms,
        burst.p99_ms,
        burst.max_ms
    );
    println!(
        "server memory: VmRSS {rss_base:.1} MiB idle, {rss_connected:.1} MiB with the sockets, {rss_end:.1} MiB at the end; VmHWM {hwm:.1} MiB; publish errors {}, sockets lost {disconnects}",
        publish_errors + burst_errors
    );
    // One machine-readable line for the script.
    println!(
        "WS_BENCH|{open_sockets}|{connect_secs:.1}|{}|{}|{}|{}|{steady_expected}|{:.2}|{:.2}|{:.2}|{}|{burst_publish_secs:.3}|{}|{burst_expected}|{:.2}|{:.2}|{:.2}|{rss_base:.1}|{rss_connected:.1}|{rss_end:.1}|{hwm:.1}|{}|{disconnects}",
        users.len(),
        args.events,
        args.rate,
        steady.received,
        steady.p50_ms,
        steady.p99_ms,
        steady.max_ms,
        users.len(),
        burst.received,
        burst.p50_ms,
        burst.p99_ms,
        burst.max_ms,
        publish_errors + burst_errors + failed.len()
    );
    Ok(())
}
