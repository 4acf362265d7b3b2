//! Notices that reach users in their Telegram chat: a generation failed and its credits came
//! back, a payment was credited, a referral bonus was earned, the monthly free actions are back
//! (opt-in). Each is recorded once per event in the transaction of the event's write, beside a
//! `send_notice` job (`jobs::notice`) that sends it once; the user's choices live here too.

use crate::domain::ids::UserId;
use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection as _, AsyncPgConnection};
use serde_json::{Value, json};

use crate::db::notices::{self, Choices};
use crate::error::AppResult;
use crate::jobs::notice::{KIND, Payload};
use crate::jobs::queue::{self, EnqueueOptions};
use crate::state::AppState;

pub const GENERATION_FAILED: &str = "generation_failed";
pub const PAYMENT_CREDITED: &str = "payment_credited";
pub const REFERRAL_BONUS: &str = "referral_bonus";
pub const FREE_ACTIONS_BACK: &str = "free_actions_back";

/// Records notice `key` for `user_id` and enqueues its job, in the caller's transaction; a
/// key seen before enqueues nothing (the hook ran again).
pub async fn enqueue(
    conn: &mut AsyncPgConnection,
    key: &str,
    user_id: UserId,
    kind: &str,
    args: Value,
) -> diesel::QueryResult<()> {
    if notices::insert(conn, key, user_id, kind, &args).await? {
        enqueue_job(conn, key).await?;
    }
    Ok(())
}

async fn enqueue_job(conn: &mut AsyncPgConnection, key: &str) -> diesel::QueryResult<()> {
    let payload = Payload {
        key: key.to_owned(),
    };
    let opts = EnqueueOptions::default().max_attempts(5);
    queue::enqueue(conn, KIND, &payload, opts).await?;
    Ok(())
}

/// A failed generation's refund: `credits` came back (0: its free action did).
pub async fn generation_failed(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    generation_id: uuid::Uuid,
    credits: i64,
) -> diesel::QueryResult<()> {
    let key = format!("{GENERATION_FAILED}:{generation_id}");
    let args = json!({"credits": credits});
    enqueue(conn, &key, user_id, GENERATION_FAILED, args).await
}

/// A payment's credits (and plan, if it bought one) were granted.
pub async fn payment_credited(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    payment_id: uuid::Uuid,
    credits: i64,
    plan: Option<&str>,
) -> diesel::QueryResult<()> {
    let key = format!("{PAYMENT_CREDITED}:{payment_id}");
    let args = json!({"credits": credits, "plan": plan});
    enqueue(conn, &key, user_id, PAYMENT_CREDITED, args).await
}

/// The referrer earned `credits` for `referred_id`.
pub async fn referral_bonus(
    conn: &mut AsyncPgConnection,
    referrer_id: UserId,
    referred_id: UserId,
    credits: i64,
) -> diesel::QueryResult<()> {
    let key = format!("{REFERRAL_BONUS}:{referred_id}");
    let args = json!({"credits": credits});
    enqueue(conn, &key, referrer_id, REFERRAL_BONUS, args).await
}

/// The periodic part: "your free actions are back" for each user who opted in and whose
/// allowance renewed since they last used it, once a month. Returns how many were enqueued.
pub async fn free_actions_back(state: &AppState, now: DateTime<Utc>) -> anyhow::Result<usize> {
    let free_limit = state.settings.free_actions_per_month;
    if free_limit <= 0 || state.settings.telegram_bot_token.is_none() {
        return Ok(0);
    }
    let mut conn = state.db.get().await?;
    let keys = conn
        .transaction(async |conn| {
            let keys = notices::insert_free_actions_back(conn, now, free_limit).await?;
            for key in &keys {
                enqueue_job(conn, key).await?;
            }
            diesel::QueryResult::Ok(keys)
        })
        .await?;
    if !keys.is_empty() {
        tracing::info!(
            count = keys.len(),
            "free actions are back: notices enqueued"
        );
    }
    Ok(keys.len())
}

/// The user's notice choices.
pub async fn choices(state: &AppState, user_id: UserId) -> AppResult<Choices> {
    let mut conn = state.db.get().await?;
    Ok(notices::choices(&mut conn, user_id).await?)
}

/// Turns notices on or off, and the opt-in "free actions are back" (None keeps one as it is).
pub async fn set_choices(
    state: &AppState,
    user_id: UserId,
    notices_on: Option<bool>,
    free_actions_back: Option<bool>,
) -> AppResult<Choices> {
    let mut conn = state.db.get().await?;
    Ok(notices::set_choices(&mut conn, user_id, notices_on, free_actions_back).await?)
}
