//! Abuse limits shared by every API replica: a sliding window per key in Redis (a sorted set
//! of hit times, trimmed and counted atomically by one script on Redis's clock). Nothing
//! durable depends on them, so when Redis cannot answer in time they fail open: the request
//! goes through, a warning is logged and `rate_limit_unavailable_total` counts it.

use std::time::Duration;

use deadpool_redis::redis;

use crate::domain::rate::Limit;
use crate::error::AppError;
use crate::state::AppState;

/// Longest wait for Redis before a limit fails open.
const REDIS_BUDGET: Duration = Duration::from_millis(250);

/// KEYS[1] the window; ARGV: window ms, max, mode (`hit`: count and record when allowed,
/// `peek`: count only, `add`: record only). Returns {allowed, retry_after_ms}.
const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local max = tonumber(ARGV[2])
local mode = ARGV[3]
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if mode ~= 'add' then
  local count = redis.call('ZCARD', KEYS[1])
  if count >= max then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return {0, tonumber(oldest[2]) + window - now}
  end
end
if mode ~= 'peek' then
  redis.call('ZADD', KEYS[1], now, t[1] .. t[2] .. ':' .. math.random(1000000000))
  redis.call('PEXPIRE', KEYS[1], window)
end
return {1, 0}
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

/// Counts one event against `limit` for `key` (e.g. `login:ip:203.0.113.7`): 429
/// `rate_limited` with the wait when the window is full. `None` is a limit turned off.
pub async fn hit(
    state: &AppState,
    name: &str,
    key: &str,
    limit: Option<Limit>,
) -> Result<(), AppError> {
    run(state, name, key, limit, Mode::Hit).await
}

/// Refuses when the window is full, without counting this request.
pub async fn check(
    state: &AppState,
    name: &str,
    key: &str,
    limit: Option<Limit>,
) -> Result<(), AppError> {
    run(state, name, key, limit, Mode::Peek).await
}

/// Records an event (a failed login) without refusing anything now.
pub async fn record(state: &AppState, name: &str, key: &str, limit: Option<Limit>) {
    // `Add` never refuses.
    let _ = run(state, name, key, limit, Mode::Add).await;
}

async fn run(
    state: &AppState,
    name: &str,
    key: &str,
    limit: Option<Limit>,
    mode: Mode,
) -> Result<(), AppError> {
    let Some(limit) = limit else {
        return Ok(());
    };
    let redis_key = state.redis_key(&format!("rl:{name}:{key}"));
    let window_ms = u64::try_from(limit.window.as_millis()).unwrap_or(u64::MAX);
    let call = async {
        let mut conn = state.redis.get().await.map_err(|e| e.to_string())?;
        redis::cmd("EVAL")
            .arg(SCRIPT)
            .arg(1)
            .arg(&redis_key)
            .arg(window_ms)
            .arg(limit.max)
            .arg(mode.as_str())
            .query_async::<(i64, i64)>(&mut conn)
            .await
            .map_err(|e| e.to_string())
    };
    match tokio::time::timeout(REDIS_BUDGET, call).await {
        Ok(Ok((1, _))) => Ok(()),
        Ok(Ok((_, retry_after_ms))) => {
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
            fail_open(name, &e);
            Ok(())
        }
        Err(_) => {
            fail_open(name, "no answer in time");
            Ok(())
        }
    }
}

fn fail_open(name: &str, error: &str) {
    metrics::counter!("rate_limit_unavailable_total", "limit" => name.to_owned()).increment(1);
    tracing::warn!(
        limit = name,
        error,
        "rate limit not enforced: Redis unavailable"
    );
}
