//! Emptying a session's history: the session and its photo stay.

use crate::domain::ids::UserId;
use chrono::Utc;
use diesel_async::AsyncConnection as _;
use uuid::Uuid;

use crate::db::chat_sessions::{self, ChatSession};
use crate::db::{chat_turns, uploads};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::state::AppState;

/// Resets one of the user's sessions, unless a turn of it is waiting for the model (409
/// `turn_in_progress`); the session as it is now.
pub async fn reset(state: &AppState, user_id: UserId, session_id: Uuid) -> AppResult<ChatSession> {
    let mut conn = state.db.get().await?;
    conn.transaction(async |conn| -> AppResult<ChatSession> {
        let session = chat_sessions::lock_owned(conn, user_id, session_id)
            .await?
            .ok_or_else(|| AppError::not_found("no such session"))?;
        if chat_turns::has_pending_in_session(conn, session_id).await? {
            return Err(AppError::conflict(
                ErrorCode::TurnInProgress,
                "the assistant is still answering; reset after its reply",
            ));
        }
        let now = Utc::now();
        chat_sessions::reset(conn, session_id, now).await?;
        // The photo lives as long as the session, which a reset keeps alive.
        if let Some(photo) = session.upload_id {
            uploads::extend_expiry(conn, photo, now + super::session_ttl(state)).await?;
        }
        chat_sessions::find_owned(conn, user_id, session_id)
            .await?
            .ok_or_else(|| AppError::not_found("no such session"))
    })
    .await
}
