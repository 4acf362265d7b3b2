//! Background work run by `atelier worker`: the job runner (`queue` stores jobs, `runner` runs
//! them; job kinds register in [`registry`]) beside the retention sweeps.

pub mod delivery;
pub mod generation;
pub mod notice;
pub mod queue;
pub mod runner;
pub mod sweeper;

use std::time::Duration;

use crate::shutdown::Shutdown;
use crate::state::AppState;

/// The job kinds this process runs: each job module registers its handler here, with the
/// state's provider clients.
pub fn registry(state: &AppState) -> anyhow::Result<runner::Registry> {
    let provider = state.image_provider.clone();
    let mut registry = runner::Registry::new()
        .register(generation::KIND, generation::GenerationJob::new(provider));
    let telegram = state.telegram_delivery.clone();
    if let Some(client) = telegram.clone() {
        registry = registry.register(delivery::KIND, delivery::DeliveryJob::new(client));
    }
    // Registered without a bot token too: its notices are then dropped, not left queued.
    registry = registry.register(notice::KIND, notice::NoticeJob::new(telegram));
    Ok(registry)
}

/// Runs the worker until `shutdown` fires.
pub async fn run_worker(state: AppState, mut shutdown: Shutdown) -> anyhow::Result<()> {
    let interval = Duration::from_secs(state.settings.media.sweep_interval_secs);
    tracing::info!(sweep_interval_secs = interval.as_secs(), "worker started");
    let config = runner::RunnerConfig::from_settings(&state.settings.worker);
    let jobs = tokio::spawn(
        runner::Runner::new(state.clone(), registry(&state)?, config).run(shutdown.clone()),
    );
    loop {
        if let Err(e) = sweeper::sweep_uploads(&state, chrono::Utc::now()).await {
            tracing::warn!(error = %e, "retention sweep failed; retrying next round");
        }
        if let Err(e) = sweeper::sweep_chat_sessions(&state, chrono::Utc::now()).await {
            tracing::warn!(error = %e, "chat session sweep failed; retrying next round");
        }
        if let Err(e) = sweeper::sweep_results(&state, chrono::Utc::now()).await {
            tracing::warn!(error = %e, "result retention sweep failed; retrying next round");
        }
        if let Err(e) = sweeper::sweep_chat_messages(&state, chrono::Utc::now()).await {
            tracing::warn!(error = %e, "chat message sweep failed; retrying next round");
        }
        if let Err(e) = sweeper::refund_abandoned_turns(&state, chrono::Utc::now()).await {
            tracing::warn!(error = %e, "refunding abandoned chat turns failed; retrying next round");
        }
        if let Err(e) = purge_finished_jobs(&state).await {
            tracing::warn!(error = %e, "purging finished jobs failed; retrying next round");
        }
        if let Err(e) = crate::billing::reconcile(&state, chrono::Utc::now()).await {
            tracing::warn!(error = %e, "payment reconciliation failed; retrying next round");
        }
        if let Err(e) = sweeper::prune_bot_updates(&state, chrono::Utc::now()).await {
            tracing::warn!(error = %e, "pruning handled bot updates failed; retrying next round");
        }
        if let Err(e) = crate::notices::free_actions_back(&state, chrono::Utc::now()).await {
            tracing::warn!(error = %e, "free-actions-back notices failed; retrying next round");
        }
        crate::alerts::check_backlog(&state).await;
        crate::alerts::check_failures(&state).await;
        if let Err(e) = record_business_metrics(&state).await {
            tracing::warn!(error = %e, "sampling business metrics failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait() => break,
        }
    }
    jobs.await??;
    tracing::info!("worker stopped");
    Ok(())
}

async fn purge_finished_jobs(state: &AppState) -> anyhow::Result<()> {
    let keep = Duration::from_secs(
        state
            .settings
            .worker
            .job_retention_hours
            .saturating_mul(3600),
    );
    let mut conn = state.db.get().await?;
    let mut total = 0;
    loop {
        let purged = queue::purge_finished(&mut conn, keep, 5_000).await?;
        total += purged;
        if purged < 5_000 {
            break;
        }
    }
    if total > 0 {
        tracing::info!(purged = total, "deleted finished jobs past retention");
    }
    Ok(())
}

/// Sets the gauges read from the database: `payments{status, currency}` (how many) and
/// `ledger_credits{reason}` (the sum of movements), sampled each sweep round.
pub async fn record_business_metrics(state: &AppState) -> anyhow::Result<()> {
    let mut conn = state.db.get().await?;
    for (status, currency, n) in crate::db::payments::count_by_status(&mut conn).await? {
        metrics::gauge!("payments", "status" => status.as_str(), "currency" => currency)
            .set(n as f64);
    }
    for (reason, sum) in crate::db::ledger::sum_by_reason(&mut conn).await? {
        metrics::gauge!("ledger_credits", "reason" => reason).set(sum as f64);
    }
    Ok(())
}
