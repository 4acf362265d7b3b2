//! Operator alerts to `ADMIN_CHAT_ID`: the image provider refused our key or ran out of
//! credits, the payment provider refused our credentials, the job queue is backed up, failed
//! generations spiked. Each kind goes out at most once per `ALERT_INTERVAL_SECS`, across every
//! process (a Redis `SET NX EX` claims the interval); nothing is sent without a chat or a bot.

use std::time::Duration;

use chrono::Utc;
use deadpool_redis::redis;
use serde_json::json;

use crate::state::AppState;

/// The image provider refused our key or is out of credits.
pub const PROVIDER_ACCOUNT: &str = "provider_account";
/// YooKassa refused our shop id or secret key.
pub const PAYMENT_CREDENTIALS: &str = "payment_credentials";
pub const QUEUE_BACKLOG: &str = "queue_backlog";
pub const FAILED_GENERATIONS: &str = "failed_generations";

const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// Sends `text` to the operators' chat unless an alert of `kind` went out within the interval;
/// true when it was sent now. Never fails: an alert that cannot go out is logged.
pub async fn raise(state: &AppState, kind: &str, text: &str) -> bool {
    let (Some(chat_id), Some(client)) =
        (state.settings.alerts.admin_chat_id, state.telegram.as_ref())
    else {
        return false;
    };
    let key = state.redis_key(&format!("alert:{kind}"));
    let interval = state.settings.alerts.interval_secs.max(1);
    match claim(state, &key, interval).await {
        Ok(true) => {}
        Ok(false) => return false,
        Err(e) => {
            tracing::warn!(kind, error = %format!("{e:#}"), "could not claim an alert's interval; not sent");
            return false;
        }
    }
    metrics::counter!("operator_alerts_sent_total", "kind" => kind.to_owned()).increment(1);
    let body = json!({"chat_id": chat_id, "text": format!("⚠️ Atelier: {text}")});
    match client.call_json("sendMessage", &body).await {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(kind, error = %e, "an operator alert could not be sent");
            // The next occurrence may try again.
            if let Err(e) = release(state, &key).await {
                tracing::warn!(kind, error = %format!("{e:#}"), "could not release an alert's interval");
            }
            false
        }
    }
}

async fn claim(state: &AppState, key: &str, interval: u64) -> anyhow::Result<bool> {
    tokio::time::timeout(REDIS_TIMEOUT, async {
        let mut conn = state.redis.get().await?;
        let set: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(Utc::now().timestamp())
            .arg("NX")
            .arg("EX")
            .arg(interval)
            .query_async(&mut *conn)
            .await?;
        anyhow::Ok(set.is_some())
    })
    .await?
}

async fn release(state: &AppState, key: &str) -> anyhow::Result<()> {
    tokio::time::timeout(REDIS_TIMEOUT, async {
        let mut conn = state.redis.get().await?;
        let _: i64 = redis::cmd("DEL").arg(key).query_async(&mut *conn).await?;
        anyhow::Ok(())
    })
    .await?
}

/// The image or chat provider refused our account (key refused, out of credits).
pub async fn provider_account(state: &AppState, provider: &str, detail: &str) {
    let text = format!("{provider} refused our account (key or credits): {detail}");
    raise(state, &format!("{PROVIDER_ACCOUNT}:{provider}"), &text).await;
}

/// YooKassa refused `YOOKASSA_SHOP_ID` / `YOOKASSA_SECRET_KEY`.
pub async fn payment_credentials(state: &AppState, detail: &str) {
    let text = format!("the payment provider refused our credentials: {detail}");
    raise(state, PAYMENT_CREDENTIALS, &text).await;
}

/// Queued jobs due now over `ALERT_QUEUE_BACKLOG`; returns the backlog.
pub async fn check_backlog(state: &AppState) -> Option<i64> {
    let depth = match state.db.get().await {
        Ok(mut conn) => crate::jobs::queue::depth(&mut conn).await,
        Err(e) => {
            tracing::warn!(error = %e, "no connection to check the queue backlog");
            return None;
        }
    };
    let depth = match depth {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the queue backlog");
            return None;
        }
    };
    let total: i64 = depth.iter().map(|(_, n, _)| n).sum();
    if total > state.settings.alerts.queue_backlog {
        let kinds: Vec<String> = depth.iter().map(|(k, n, _)| format!("{k} {n}")).collect();
        let text = format!("{total} jobs are waiting ({})", kinds.join(", "));
        raise(state, QUEUE_BACKLOG, &text).await;
    }
    Some(total)
}

/// Generations failed in the last hour over `ALERT_FAILED_GENERATIONS_PER_HOUR`; returns them.
pub async fn check_failures(state: &AppState) -> Option<i64> {
    let since = Utc::now() - chrono::Duration::hours(1);
    let failed = match state.db.get().await {
        Ok(mut conn) => crate::db::stats::failed_since(&mut conn, since).await,
        Err(e) => {
            tracing::warn!(error = %e, "no connection to count failed generations");
            return None;
        }
    };
    let failed = match failed {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "could not count failed generations");
            return None;
        }
    };
    if failed > state.settings.alerts.failed_generations_per_hour {
        let text = format!("{failed} generations failed in the last hour");
        raise(state, FAILED_GENERATIONS, &text).await;
    }
    Some(failed)
}
