//! Retention: erases expired uploads (object first, then the row is marked deleted), finished
//! generations past `RESULT_RETENTION_DAYS` (result object first, then the row), idle chat
//! sessions with their photos and chat messages older than 30 days, handled bot update ids
//! older than a few days, and refunds chat turns a crash left pending; in batches, idempotently, and safely beside other workers (rows are
//! claimed with SKIP LOCKED).

use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection as _;

use crate::db::uploads;
use crate::db::{chat_sessions, chat_turns, generations, ledger};
use crate::domain::assistant::Usage;
use crate::state::AppState;

const BATCH: i64 = 200;

/// A chat message is kept this long, even in a session still in use.
pub const CHAT_MESSAGE_RETENTION_DAYS: i64 = 30;

/// Handled Telegram update ids are kept this long: Telegram resends an unanswered update for
/// at most a day, so older ids guard nothing.
pub const BOT_UPDATE_RETENTION_DAYS: i64 = 3;

/// Forgets handled bot update ids older than [`BOT_UPDATE_RETENTION_DAYS`]; returns how many.
pub async fn prune_bot_updates(state: &AppState, now: DateTime<Utc>) -> anyhow::Result<usize> {
    let before = now - chrono::Duration::days(BOT_UPDATE_RETENTION_DAYS);
    let mut conn = state.db.get().await?;
    let pruned = crate::db::bot::prune_updates(&mut conn, before).await?;
    if pruned > 0 {
        tracing::info!(pruned, "forgot handled bot updates past retention");
    }
    Ok(pruned)
}

/// Erases every upload expired at `now`; returns how many were erased.
pub async fn sweep_uploads(state: &AppState, now: DateTime<Utc>) -> anyhow::Result<usize> {
    let mut total = 0;
    loop {
        let mut conn = state.db.get().await?;
        let storage = state.storage.clone();
        let erased = conn
            .transaction(async |conn| {
                let batch = uploads::lock_expired(conn, now, BATCH).await?;
                for upload in &batch {
                    storage.delete(&upload.storage_key).await?;
                }
                let ids: Vec<_> = batch.iter().map(|u| u.id).collect();
                uploads::mark_deleted(conn, &ids, now).await?;
                anyhow::Ok(batch.len())
            })
            .await?;
        total += erased;
        if erased < BATCH as usize {
            break;
        }
    }
    if total > 0 {
        tracing::info!(erased = total, "retention sweep erased expired uploads");
        metrics::counter!("retention_erased_total", "kind" => "upload").increment(total as u64);
    }
    Ok(total)
}

/// Erases the finished generations created `RESULT_RETENTION_DAYS` or more before `now`: the
/// result object, then the row. Returns how many went.
pub async fn sweep_results(state: &AppState, now: DateTime<Utc>) -> anyhow::Result<usize> {
    let days = i64::from(state.settings.media.result_retention_days);
    let cutoff = now - chrono::Duration::days(days);
    let mut total = 0;
    loop {
        let mut conn = state.db.get().await?;
        let storage = state.storage.clone();
        let erased = conn
            .transaction(async |conn| {
                let batch = generations::lock_expired(conn, cutoff, BATCH).await?;
                for key in batch.iter().filter_map(|(_, key)| key.as_deref()) {
                    storage.delete(key).await?;
                }
                let ids: Vec<_> = batch.iter().map(|(id, _)| *id).collect();
                generations::delete(conn, &ids).await?;
                anyhow::Ok(batch.len())
            })
            .await?;
        total += erased;
        if erased < BATCH as usize {
            break;
        }
    }
    if total > 0 {
        tracing::info!(erased = total, "retention sweep erased old generations");
        metrics::counter!("retention_erased_total", "kind" => "generation").increment(total as u64);
    }
    Ok(total)
}

/// Removes the chat messages older than [`CHAT_MESSAGE_RETENTION_DAYS`], also from sessions
/// still in use; returns how many sessions were trimmed.
pub async fn sweep_chat_messages(state: &AppState, now: DateTime<Utc>) -> anyhow::Result<usize> {
    let cutoff = now - chrono::Duration::days(CHAT_MESSAGE_RETENTION_DAYS);
    let mut total = 0;
    loop {
        let mut conn = state.db.get().await?;
        let trimmed = chat_sessions::trim_messages_before(&mut conn, cutoff, BATCH).await?;
        total += trimmed;
        if trimmed < BATCH as usize {
            break;
        }
    }
    if total > 0 {
        tracing::info!(
            sessions = total,
            "retention sweep removed old chat messages"
        );
        metrics::counter!("retention_erased_total", "kind" => "chat_messages")
            .increment(total as u64);
    }
    Ok(total)
}

/// Deletes the chat sessions untouched for `CHAT_SESSION_TTL_SECS`, with their photos (a photo
/// another session still uses stays); returns how many sessions went.
pub async fn sweep_chat_sessions(state: &AppState, now: DateTime<Utc>) -> anyhow::Result<usize> {
    let ttl = i64::try_from(state.settings.assistant.session_ttl_secs)?;
    let cutoff = now - chrono::Duration::seconds(ttl);
    let mut total = 0;
    loop {
        let mut conn = state.db.get().await?;
        let storage = state.storage.clone();
        let deleted = conn
            .transaction(async |conn| {
                let batch = chat_sessions::lock_expired(conn, cutoff, BATCH).await?;
                let ids: Vec<i64> = batch.iter().map(|s| s.id).collect();
                chat_sessions::delete(conn, &ids).await?;
                let mut photos: Vec<_> = batch.iter().filter_map(|s| s.upload_id).collect();
                photos.sort_unstable();
                photos.dedup();
                let in_use = chat_sessions::uploads_in_use(conn, &photos).await?;
                photos.retain(|id| !in_use.contains(id));
                let erased = uploads::lock_live(conn, &photos).await?;
                for upload in &erased {
                    storage.delete(&upload.storage_key).await?;
                }
                let erased: Vec<_> = erased.iter().map(|u| u.id).collect();
                uploads::mark_deleted(conn, &erased, now).await?;
                anyhow::Ok(batch.len())
            })
            .await?;
        total += deleted;
        if deleted < BATCH as usize {
            break;
        }
    }
    if total > 0 {
        tracing::info!(
            deleted = total,
            "retention sweep deleted idle chat sessions"
        );
        metrics::counter!("retention_erased_total", "kind" => "chat_session")
            .increment(total as u64);
    }
    Ok(total)
}

/// Refunds the chat turns that a crash left pending (charged, never answered or failed) for
/// twice `CHAT_TURN_TIMEOUT_SECS`: each is marked failed and refunded once, in one transaction.
pub async fn refund_abandoned_turns(state: &AppState, now: DateTime<Utc>) -> anyhow::Result<usize> {
    let timeout = i64::try_from(state.settings.assistant.turn_timeout_secs)?;
    let cutoff = now - chrono::Duration::seconds(2 * timeout);
    let mut total = 0;
    loop {
        let mut conn = state.db.get().await?;
        let refunded = conn
            .transaction(async |conn| {
                let stale = chat_turns::lock_stale(conn, cutoff, BATCH).await?;
                for turn in &stale {
                    let usage = Usage::default();
                    chat_turns::finish(conn, turn.id, Some("turn_abandoned"), 0, usage, now)
                        .await?;
                    ledger::refund(conn, &turn.charge_key, now.date_naive()).await?;
                }
                anyhow::Ok(stale.len())
            })
            .await?;
        total += refunded;
        if refunded < BATCH as usize {
            break;
        }
    }
    if total > 0 {
        tracing::warn!(
            refunded = total,
            "refunded chat turns left pending by a crash"
        );
    }
    Ok(total)
}
