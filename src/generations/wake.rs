//! The provider says a task finished: the job of its generation runs now instead of at its
//! next poll (it reads the task's state from the provider itself).

use crate::db::generations;
use crate::error::{AppError, AppResult};
use crate::jobs::queue;
use crate::state::AppState;

/// Wakes the job of the generation whose provider task is `task_id`: whether a waiting job
/// was moved up; 404 for a task that is not ours.
pub async fn wake_task(state: &AppState, task_id: &str) -> AppResult<bool> {
    let mut conn = state.db.get().await?;
    let g = generations::find_by_task(&mut conn, task_id)
        .await?
        .ok_or_else(|| AppError::not_found("unknown task"))?;
    Ok(match g.job_id {
        Some(job) => queue::run_now(&mut conn, queue::JobId(job)).await?,
        None => false,
    })
}
