//! The job runner of `atelier worker` and `atelier dev` (`WORKER_*`).

use super::ConfigError;
use super::env::{Env, bad};

/// The job runner of `atelier worker` (and `atelier dev`).
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Jobs run at once per process.
    pub concurrency: usize,
    /// Longest idle wait between looks at the queue (NOTIFY usually wakes a worker first).
    pub poll_interval_ms: u64,
    /// Lease of a claimed job; a running job extends it every third of this.
    pub lease_secs: u64,
    pub shutdown_grace_secs: u64,
    pub backoff_base_ms: u64,
    pub backoff_max_secs: u64,
    pub job_retention_hours: u64,
    /// `atelier worker` serves /health, /ready and /metrics here; 0 turns that off.
    pub metrics_port: u16,
}

impl WorkerSettings {
    pub(super) fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            concurrency: env.parse("WORKER_CONCURRENCY", 4)?,
            poll_interval_ms: env.parse("WORKER_POLL_INTERVAL_MS", 5000)?,
            lease_secs: env.parse("WORKER_LEASE_SECS", 60)?,
            shutdown_grace_secs: env.parse("WORKER_SHUTDOWN_GRACE_SECS", 20)?,
            backoff_base_ms: env.parse("WORKER_BACKOFF_BASE_MS", 2000)?,
            backoff_max_secs: env.parse("WORKER_BACKOFF_MAX_SECS", 600)?,
            job_retention_hours: env.parse("WORKER_JOB_RETENTION_HOURS", 168)?,
            metrics_port: env.parse("WORKER_METRICS_PORT", 9100)?,
        })
    }

    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.concurrency == 0 {
            return Err(bad("WORKER_CONCURRENCY", "must be at least 1"));
        }
        if self.poll_interval_ms == 0 {
            return Err(bad("WORKER_POLL_INTERVAL_MS", "must be at least 1"));
        }
        if self.lease_secs == 0 {
            return Err(bad("WORKER_LEASE_SECS", "must be at least 1"));
        }
        if self.backoff_base_ms == 0
            || self.backoff_max_secs.saturating_mul(1000) < self.backoff_base_ms
        {
            return Err(bad(
                "WORKER_BACKOFF_MAX_SECS",
                "must be at least WORKER_BACKOFF_BASE_MS (and that above 0)",
            ));
        }
        if self.job_retention_hours == 0 {
            return Err(bad("WORKER_JOB_RETENTION_HOURS", "must be at least 1"));
        }
        Ok(())
    }
}
