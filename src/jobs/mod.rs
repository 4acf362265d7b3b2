//! Background work. The job queue and its job kinds arrive with the generation pipeline; for
//! now the worker process starts, checks its database connection and waits for a stop signal.

use crate::shutdown::Shutdown;
use crate::state::AppState;

/// Runs the worker until `shutdown` fires.
pub async fn run_worker(state: AppState, mut shutdown: Shutdown) -> anyhow::Result<()> {
    let mut conn = state
        .db
        .get()
        .await
        .map_err(|e| anyhow::anyhow!("worker: database: {e}"))?;
    diesel_async::SimpleAsyncConnection::batch_execute(&mut *conn, "SELECT 1").await?;
    drop(conn);
    tracing::info!("worker started; no job kinds are registered yet");
    shutdown.wait().await;
    tracing::info!("worker stopped");
    Ok(())
}
