//! Settling a turn, exactly once: completed (the two messages, the token accounting and a new
//! photo appended in one transaction), or failed and refunded.

use chrono::Utc;
use diesel_async::AsyncConnection as _;

use super::Reply;
use super::open::PendingTurn;
use crate::db::chat_sessions::{self, TurnWritten};
use crate::db::{chat_turns, ledger};
use crate::domain::assistant::{Role, StoredMessage, Usage};
use crate::error::AppResult;
use crate::providers::openrouter::Completion;
use crate::state::AppState;

/// Why a turn failed, as the client hears it; the charge is always refunded. The assistant's
/// own account problems are ours, not the user's: they read as unavailable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TurnFailed {
    #[error("the message was refused by content moderation")]
    MessageRejected,
    #[error("the assistant answered in a form that cannot be used")]
    BadReply,
    #[error("the session was deleted")]
    SessionDeleted,
    #[error("the assistant could not answer")]
    Failed,
    #[error("the assistant is unavailable right now, try again in a minute")]
    Unavailable,
}

impl TurnFailed {
    /// From the code a failed turn is stored with.
    pub fn from_code(code: &str) -> Self {
        match code {
            "message_rejected" => Self::MessageRejected,
            "assistant_bad_reply" => Self::BadReply,
            "session_deleted" => Self::SessionDeleted,
            "assistant_failed" => Self::Failed,
            _ => Self::Unavailable,
        }
    }
}

/// Appends the turn's messages and accounting to its session; a turn the sweeper gave up on,
/// or whose session was deleted meanwhile, fails and is refunded instead.
pub(super) async fn complete(
    state: &AppState,
    turn: &PendingTurn,
    completion: Completion,
) -> AppResult<Reply> {
    let now = Utc::now();
    let usage = completion.usage;
    let messages = [
        StoredMessage {
            role: Role::User,
            content: turn.message.clone(),
            upload_id: turn.attached,
            variants: Vec::new(),
            timestamp: turn.started_at,
            turn_id: Some(turn.id),
            usage: None,
        },
        StoredMessage {
            role: Role::Assistant,
            content: completion.reply.reply.clone(),
            upload_id: None,
            variants: completion.reply.variants.clone(),
            timestamp: now,
            turn_id: Some(turn.id),
            usage: Some(usage),
        },
    ];
    let written = chat_sessions::complete_turn(
        &mut *state.db.get().await?,
        &chat_sessions::TurnAnswer {
            session_id: turn.session_id,
            turn_id: turn.id,
            messages: &messages,
            usage,
            attempts: i32::try_from(completion.attempts).unwrap_or(i32::MAX),
            new_photo: turn.attached,
            keep_photo_until: now + super::session_ttl(state),
            now,
        },
    )
    .await;
    let code = match written {
        Ok(TurnWritten::Completed) => None,
        Ok(TurnWritten::Abandoned) => Some("turn_abandoned"),
        Ok(TurnWritten::SessionDeleted) => Some("session_deleted"),
        Err(e) => {
            // Refund now rather than leave it to the sweeper, if the database lets us.
            if let Err(again) =
                failed(state, turn, "internal_error", completion.attempts, usage).await
            {
                tracing::warn!(error = %again, "settling a chat turn failed; the sweeper will refund it");
            }
            return Err(e.into());
        }
    };
    if let Some(code) = code {
        failed(state, turn, code, completion.attempts, usage).await?;
        return Err(TurnFailed::from_code(code).into());
    }
    metrics::counter!("chat_turns_total", "outcome" => "completed").increment(1);
    Ok(Reply {
        session_id: turn.session_id,
        reply: completion.reply.reply,
        variants: completion.reply.variants,
        usage,
    })
}

/// Marks a pending turn failed and refunds it, once; a new session left empty goes too.
pub(super) async fn failed(
    state: &AppState,
    turn: &PendingTurn,
    code: &'static str,
    attempts: u32,
    spent: Usage,
) -> AppResult<()> {
    metrics::counter!("chat_turns_total", "outcome" => code).increment(1);
    let mut conn = state.db.get().await?;
    conn.transaction(async |conn| -> AppResult<()> {
        let now = Utc::now();
        if chat_turns::finish(conn, turn.id, Some(code), attempts, spent, now).await? == 1 {
            ledger::refund(conn, &turn.charge_key, now.date_naive()).await?;
            if turn.new_session {
                chat_sessions::delete_if_empty(conn, turn.session_id).await?;
            }
        }
        Ok(())
    })
    .await
}
