//! Abuse limits shared by every API replica: a sliding window per key in Redis (a sorted set
//! of hit times, trimmed and counted atomically by one script on Redis's clock). Nothing
//! durable depends on them, so when Redis cannot answer in time they fail open: the request
//! goes through, a warning is logged and `rate_limit_unavailable_total` counts it.

use std::sync::LazyLock;
use std::time::Duration;

use deadpool_redis::redis;

use crate::domain::rate::Limit;
use crate::error::AppError;
use crate::state::AppState;

/// Longest wait for Redis before a limit fails open.
const REDIS_BUDGET: Duration = Duration::from_millis(250);

/// Every KEYS[i] is a window with ARGV[3i-2..3i] = window ms, max, mode (`hit`: count, and
/// record when allowed; `peek`: count only; `add`: record only). All or nothing: when any
/// counted window is full, nothing is recorded. Returns {allowed, retry_after_ms, index}.
const SOURCE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local member = t[1] .. t[2] .. ':' .. math.random(1000000000)
for i, key in ipairs(KEYS) do
  local window = tonumber(ARGV[3 * i - 2])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  if ARGV[3 * i] ~= 'add' and redis.call('ZCARD', key) >= tonumber(ARGV[3 * i - 1]) then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    return {0, tonumber(oldest[2]) + window - now, i}
  end
end
for i, key in ipairs(KEYS) do
  if ARGV[3 * i] ~= 'peek' then
    redis.call('ZADD', key, now, member)
    redis.call('PEXPIRE', key, tonumber(ARGV[3 * i - 2]))
  end
end
return {1, 0, 0}
";

#[derive(Debug, Clone, Copy)]
enum Mode {
    Hit,
    Peek,
    Add,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Peek => "peek",
            Self::Add => "add",
        }
    }
}

/// One window of a check: its name (for metrics), key (e.g. the address), limit and mode.
pub struct Window<'a> {
    pub name: &'a str,
    pub key: &'a str,
    pub limit: Option<Limit>,
    mode: Mode,
}

impl<'a> Window<'a> {
    /// Counts this request, and refuses it when the window is full.
    pub fn hit(name: &'a str, key: &'a str, limit: Option<Limit>) -> Self {
        Self {
            name,
            key,
            limit,
            mode: Mode::Hit,
        }
    }

    /// Refuses when the window is full, without counting this request.
    pub fn check(name: &'a str, key: &'a str, limit: Option<Limit>) -> Self {
        Self {
            name,
            key,
            limit,
            mode: Mode::Peek,
        }
    }
}

/// Counts one event against `limit` for `key` (e.g. the user id): 429 `rate_limited` with the
/// wait when the window is full. `None` is a limit turned off.
pub async fn hit(
    state: &AppState,
    name: &str,
    key: &str,
    limit: Option<Limit>,
) -> Result<(), AppError> {
    run(state, &[Window::hit(name, key, limit)]).await
}

/// Records an event (a failed login) without refusing anything now.
pub async fn record(state: &AppState, name: &str, key: &str, limit: Option<Limit>) {
    let window = Window {
        name,
        key,
        limit,
        mode: Mode::Add,
    };
    // `Add` never refuses.
    let _ = run(state, &[window]).await;
}

/// Applies several windows in one round trip, all or nothing: refused (with the longest
/// relevant wait) when any counted window is full, and then nothing is recorded.
pub async fn run(state: &AppState, windows: &[Window<'_>]) -> Result<(), AppError> {
    let live: Vec<(&Window<'_>, Limit)> = windows
        .iter()
        .filter_map(|w| w.limit.map(|l| (w, l)))
        .collect();
    if live.is_empty() {
        return Ok(());
    }
    // EVALSHA, loading the script first when Redis has forgotten it (a restart).
    static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(SOURCE));
    let mut invocation = SCRIPT.prepare_invoke();
    for (w, _) in &live {
        invocation.key(state.redis_key(&format!("rl:{}:{}", w.name, w.key)));
    }
    for (w, limit) in &live {
        let window_ms = u64::try_from(limit.window.as_millis()).unwrap_or(u64::MAX);
        invocation
            .arg(window_ms)
            .arg(limit.max)
            .arg(w.mode.as_str());
    }
    let call = async {
        let mut conn = state.redis.get().await.map_err(|e| e.to_string())?;
        invocation
            .invoke_async::<(i64, i64, usize)>(&mut conn)
            .await
            .map_err(|e| e.to_string())
    };
    match tokio::time::timeout(REDIS_BUDGET, call).await {
        Ok(Ok((1, _, _))) => Ok(()),
        Ok(Ok((_, retry_after_ms, index))) => {
            let name = live
                .get(index.saturating_sub(1))
                .map_or("unknown", |(w, _)| w.name);
            metrics::counter!("rate_limited_total", "limit" => name.to_owned()).increment(1);
            let secs = u64::try_from(retry_after_ms)
                .unwrap_or(0)
                .div_ceil(1000)
                .max(1);
            Err(AppError::RateLimited {
                retry_after_secs: secs,
            })
        }
        Ok(Err(e)) => {
            fail_open(&live, &e);
            Ok(())
        }
        Err(_) => {
            fail_open(&live, "no answer in time");
            Ok(())
        }
    }
}

fn fail_open(windows: &[(&Window<'_>, Limit)], error: &str) {
    for (w, _) in windows {
        metrics::counter!("rate_limit_unavailable_total", "limit" => w.name.to_owned())
            .increment(1);
        tracing::warn!(
            limit = w.name,
            error,
            "rate limit not enforced: Redis unavailable"
        );
    }
}
