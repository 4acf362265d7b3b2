//! The editing assistant's chat turns, below the HTTP route. A turn is opened (charged; a
//! `chat_turns` row, `pending` from the charge on), run (the model is asked on a task of its
//! own, so a client that hangs up does not leave a paid turn behind) and settled exactly once:
//! `completed` with its history and token accounting, or `failed` and refunded. A turn that a
//! crash left pending is refunded by the worker's sweeper (`jobs::sweeper::refund_abandoned_turns`).

mod open;
mod reset;
mod run;
mod settle;

use uuid::Uuid;

use crate::db::models::User;
use crate::domain::assistant::Usage;
use crate::error::{AppError, AppResult};
use crate::state::AppState;

pub use open::NewTurn;
pub use reset::reset;
pub use settle::TurnFailed;

/// The assistant's answer to a turn.
#[derive(Debug, Clone)]
pub struct Reply {
    pub session_id: Uuid,
    pub reply: String,
    /// Three ready-to-run edit prompts.
    pub variants: Vec<String>,
    /// Tokens of this turn (its retries included).
    pub usage: Usage,
}

/// One chat turn, from the user's message to the assistant's reply: the same reply again for a
/// key answered before; refunded when the assistant fails.
pub async fn chat(state: &AppState, user: &User, turn: NewTurn) -> AppResult<Reply> {
    let limit = state.settings.limits.chat_per_user;
    crate::ratelimit::hit(state, "chat", &user.id.to_string(), limit).await?;
    let pending = match open::open(state, user, turn).await? {
        open::Opened::Answered(reply) => return Ok(reply),
        open::Opened::New(pending) => pending,
    };
    // On a task of its own: the turn completes (or is refunded) even if the client hangs up.
    let state = state.clone();
    tokio::spawn(async move { run::run(&state, pending).await })
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!("the chat turn task failed: {e}")))?
}

/// How long a session (and its photo) lives after its last message or reset.
fn session_ttl(state: &AppState) -> chrono::Duration {
    chrono::Duration::seconds(
        i64::try_from(state.settings.assistant.session_ttl_secs).unwrap_or(i64::MAX / 2),
    )
}
