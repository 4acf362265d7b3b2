//! Background work run by `atelier worker`: for now the retention sweep; the job queue and its
//! job kinds arrive with the generation pipeline.

pub mod sweeper;

use std::time::Duration;

use crate::shutdown::Shutdown;
use crate::state::AppState;

/// Runs the worker until `shutdown` fires.
pub async fn run_worker(state: AppState, mut shutdown: Shutdown) -> anyhow::Result<()> {
    let interval = Duration::from_secs(state.settings.media.sweep_interval_secs);
    tracing::info!(sweep_interval_secs = interval.as_secs(), "worker started");
    loop {
        if let Err(e) = sweeper::sweep_uploads(&state, chrono::Utc::now()).await {
            tracing::warn!(error = %e, "retention sweep failed; retrying next round");
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait() => break,
        }
    }
    tracing::info!("worker stopped");
    Ok(())
}
