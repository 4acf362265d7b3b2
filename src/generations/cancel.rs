//! Canceling a generation that has not started: by its owner, or by an operator's block
//! (`operators::set_blocked_in`). Its charge is refunded and its job canceled with it.

use crate::domain::ids::UserId;
use chrono::Utc;
use diesel_async::{AsyncConnection as _, AsyncPgConnection};
use uuid::Uuid;

use crate::db::models::Generation;
use crate::db::{generations, ledger};
use crate::domain::vocabulary::GenerationStatus;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::jobs::queue;
use crate::realtime::generations::notify_failed;
use crate::state::AppState;

/// The user cancels one of their generations that is still queued: 404 when it is not
/// theirs, 409 `not_cancelable` when it has started or finished.
pub async fn cancel(state: &AppState, user_id: UserId, id: Uuid) -> AppResult<Generation> {
    let mut conn = state.db.get().await?;
    let g = conn
        .transaction(async |conn| -> AppResult<Generation> {
            let g = generations::lock(conn, id)
                .await?
                .filter(|g| g.user_id == user_id)
                .ok_or_else(|| AppError::not_found("no such generation"))?;
            let status = g.status;
            cancel_queued(conn, &g, "canceled by the user")
                .await?
                .ok_or_else(|| {
                    AppError::conflict(
                        ErrorCode::NotCancelable,
                        format!("the generation is {status}"),
                    )
                })
        })
        .await?;
    notify_failed(state, &g, true);
    Ok(g)
}

/// Cancels a generation that has not started (still `queued`, no provider task): marks it
/// canceled, refunds its charge and cancels its job, in the caller's transaction. `None` when
/// it had already moved on. The caller announces it after the commit.
pub async fn cancel_queued(
    conn: &mut AsyncPgConnection,
    g: &Generation,
    why: &str,
) -> Result<Option<Generation>, ledger::LedgerError> {
    if g.status != GenerationStatus::Queued || g.provider_task_id.is_some() {
        return Ok(None);
    }
    let Some(canceled) = generations::mark_finished_unsuccessfully(
        conn,
        g.id,
        GenerationStatus::Canceled,
        "canceled",
        why,
    )
    .await?
    else {
        return Ok(None);
    };
    ledger::refund(conn, &g.charge_key, Utc::now().date_naive()).await?;
    if let Some(job) = g.job_id {
        queue::cancel(conn, queue::JobId(job)).await?;
    }
    Ok(Some(canceled))
}
