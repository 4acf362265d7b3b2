//! Process entry points shared by `serve`, `worker` and `dev`.

use anyhow::Context as _;

use crate::config::Settings;
use crate::shutdown;
use crate::startup::Application;
use crate::state::AppState;

/// Serves HTTP until SIGINT/SIGTERM; with `with_worker`, runs the worker in the same process.
pub async fn serve(settings: Settings, with_worker: bool) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    let state = app.state().clone();
    tracing::info!(port = app.port(), metrics_port = app.metrics_port(), base_url = %state.settings.public_base_url, "listening");
    let (trigger, stop) = shutdown::channel();
    let worker =
        with_worker.then(|| tokio::spawn(crate::jobs::run_worker(state.clone(), stop.clone())));
    let upkeep = tokio::spawn(metrics_upkeep(stop.clone()));
    let handle = app.server_handle();
    let server = tokio::spawn(app.run_until_stopped());
    shutdown::signal().await;
    tracing::info!("stopping");
    trigger.fire();
    handle.stop(true).await;
    server.await??;
    if let Some(worker) = worker {
        worker.await??;
    }
    upkeep.abort();
    Ok(())
}

/// Runs the worker alone until SIGINT/SIGTERM, with `/health`, `/ready` and `/metrics` on
/// `WORKER_METRICS_PORT` (unless 0) so that its jobs can be watched and its health checked.
pub async fn worker(settings: Settings) -> anyhow::Result<()> {
    let state = AppState::build(settings)?;
    let port = state.settings.worker.metrics_port;
    let probes = match port {
        0 => None,
        port => {
            let listener = std::net::TcpListener::bind((state.settings.host.as_str(), port))
                .with_context(|| format!("binding WORKER_METRICS_PORT {port}"))?;
            let server = crate::startup::serve_probes(listener, state.clone())?;
            tracing::info!(port, "worker metrics listening");
            Some((server.handle(), tokio::spawn(server)))
        }
    };
    let (trigger, stop) = shutdown::channel();
    let upkeep = tokio::spawn(metrics_upkeep(stop.clone()));
    let worker = tokio::spawn(crate::jobs::run_worker(state, stop));
    shutdown::signal().await;
    trigger.fire();
    let result = worker.await?;
    if let Some((handle, server)) = probes {
        handle.stop(true).await;
        server.await??;
    }
    upkeep.abort();
    result
}

/// Histograms are drained into their buckets periodically.
async fn metrics_upkeep(mut stop: shutdown::Shutdown) {
    let handle = crate::telemetry::prometheus();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => handle.run_upkeep(),
            _ = stop.wait() => return,
        }
    }
}
