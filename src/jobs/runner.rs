//! Runs queued jobs: claims as many as it has free slots in one statement, runs each under a
//! lease that a ticker extends, and records the outcome. Idle, it sleeps until a NOTIFY, the next
//! due job, or the poll interval, whichever comes first. On shutdown it stops claiming, lets
//! running jobs finish within the grace period, then releases the rest to other workers.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _};
use futures_util::StreamExt as _;
use futures_util::future::BoxFuture;
use secrecy::ExposeSecret as _;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tracing::Instrument as _;

use super::queue::{self, Job, QueueError};
use crate::config::WorkerSettings;
use crate::shutdown::Shutdown;
use crate::state::AppState;

/// How long a handler may run before it is stopped and the attempt counts as failed.
pub const DEFAULT_JOB_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// The listening connection is checked this often (a silently dropped TCP connection would
/// otherwise go unnoticed).
const LISTENER_CHECK: Duration = Duration::from_secs(30);
/// Shortest idle wait: a due job that could not be claimed is locked by another claimer.
const MIN_IDLE: Duration = Duration::from_millis(50);
/// The backlog gauge is refreshed at most this often.
const DEPTH_EVERY: Duration = Duration::from_secs(15);

/// What became of a run.
#[derive(Debug)]
pub enum Outcome {
    Done,
    /// Not a failure: run again after this delay without using an attempt ("poll again in 3 s").
    Reschedule(Duration),
    /// A transient failure: run again after the backoff (or `after`, when the handler knows
    /// better, e.g. a 429 `retry_after`) while attempts remain; otherwise the job fails.
    Retry {
        error: String,
        after: Option<Duration>,
    },
    /// A permanent failure: no further attempt.
    Fail(String),
}

impl Outcome {
    pub fn retry(error: impl fmt::Display) -> Self {
        Self::Retry {
            error: error.to_string(),
            after: None,
        }
    }

    pub fn retry_after(error: impl fmt::Display, after: Duration) -> Self {
        Self::Retry {
            error: error.to_string(),
            after: Some(after),
        }
    }

    pub fn fail(error: impl fmt::Display) -> Self {
        Self::Fail(error.to_string())
    }
}

/// `Ok` is done; an error is retried (with its cause chain as the recorded error).
impl From<anyhow::Result<()>> for Outcome {
    fn from(result: anyhow::Result<()>) -> Self {
        match result {
            Ok(()) => Self::Done,
            Err(e) => Self::retry(format!("{e:#}")),
        }
    }
}

/// A kind of job. Jobs run at least once (a lost worker's job runs again), so `run` must be
/// idempotent.
pub trait JobHandler: Send + Sync + 'static {
    fn run(&self, state: &AppState, job: &Job) -> impl Future<Output = Outcome> + Send;

    /// Runs once when the job fails for good (a permanent failure, or its last attempt failed or
    /// was lost), inside the transaction that marks it failed: whatever it writes through `conn`
    /// (a refund, a `failed` status) commits together with that, or not at all. When it returns
    /// an error, the transaction is rolled back and the job is failed again later.
    fn on_final_failure(
        &self,
        _state: &AppState,
        _conn: &mut AsyncPgConnection,
        _job: &Job,
        _error: &str,
    ) -> impl Future<Output = anyhow::Result<()>> + Send {
        async { Ok(()) }
    }

    /// Runs after the transaction of `on_final_failure` committed: the place for effects that
    /// must not happen unless it did (telling the user).
    fn after_final_failure(
        &self,
        _state: &AppState,
        _job: &Job,
    ) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Longest run; a run still going then is stopped and counts as a failed attempt.
    fn timeout(&self) -> Duration {
        DEFAULT_JOB_TIMEOUT
    }
}

/// [`JobHandler`] made object-safe for the registry.
trait DynHandler: Send + Sync {
    fn run<'a>(&'a self, state: &'a AppState, job: &'a Job) -> BoxFuture<'a, Outcome>;
    fn on_final_failure<'a>(
        &'a self,
        state: &'a AppState,
        conn: &'a mut AsyncPgConnection,
        job: &'a Job,
        error: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>>;
    fn after_final_failure<'a>(&'a self, state: &'a AppState, job: &'a Job) -> BoxFuture<'a, ()>;
    fn timeout(&self) -> Duration;
}

impl<H: JobHandler> DynHandler for H {
    fn run<'a>(&'a self, state: &'a AppState, job: &'a Job) -> BoxFuture<'a, Outcome> {
        Box::pin(JobHandler::run(self, state, job))
    }

    fn on_final_failure<'a>(
        &'a self,
        state: &'a AppState,
        conn: &'a mut AsyncPgConnection,
        job: &'a Job,
        error: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(JobHandler::on_final_failure(self, state, conn, job, error))
    }

    fn after_final_failure<'a>(&'a self, state: &'a AppState, job: &'a Job) -> BoxFuture<'a, ()> {
        Box::pin(JobHandler::after_final_failure(self, state, job))
    }

    fn timeout(&self) -> Duration {
        JobHandler::timeout(self)
    }
}

/// The job kinds a worker runs. A worker claims only kinds it has a handler for, so workers
/// of different versions can share a queue.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<String, Arc<dyn DynHandler>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the handler of `kind` (replacing an earlier one).
    pub fn register(mut self, kind: &str, handler: impl JobHandler) -> Self {
        self.handlers.insert(kind.to_owned(), Arc::new(handler));
        self
    }

    pub fn kinds(&self) -> Vec<String> {
        let mut kinds: Vec<String> = self.handlers.keys().cloned().collect();
        kinds.sort();
        kinds
    }

    pub fn is_empty(&self) -> bool {
        self.handlers.is_empty()
    }

    fn get(&self, kind: &str) -> Option<Arc<dyn DynHandler>> {
        self.handlers.get(kind).cloned()
    }
}

/// Exponential backoff with "equal jitter": the n-th retry waits between half and all of
/// `min(base · 2^(n-1), max)`, so retries spread out yet never come back at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The delay after failed attempt `attempt` (1-based), with `unit` in `[0, 1)` choosing
    /// where in the jitter range it falls. Pure; see [`Backoff::delay`] for a random one.
    pub fn delay_at(&self, attempt: i32, unit: f64) -> Duration {
        let doublings = u32::try_from(attempt.saturating_sub(1))
            .unwrap_or(0)
            .min(32);
        let ceiling = self
            .base
            .checked_mul(1u32 << doublings.min(31))
            .map_or(self.max, |d| d.min(self.max));
        let half = ceiling / 2;
        let span = ceiling - half;
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        half + Duration::try_from_secs_f64(span.as_secs_f64() * unit).map_or(span, |d| d.min(span))
    }

    pub fn delay(&self, attempt: i32) -> Duration {
        self.delay_at(attempt, rand::random::<f64>())
    }
}

#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// This process's name in `jobs.locked_by`; unique per runner.
    pub worker_id: String,
    /// Jobs run at once.
    pub concurrency: usize,
    /// Longest idle wait between looks at the queue.
    pub poll_interval: Duration,
    pub lease: Duration,
    /// How long running jobs may take to finish after shutdown before they are released.
    pub shutdown_grace: Duration,
    pub backoff: Backoff,
}

impl RunnerConfig {
    pub fn from_settings(settings: &WorkerSettings) -> Self {
        Self {
            worker_id: default_worker_id(),
            concurrency: settings.concurrency.max(1),
            poll_interval: Duration::from_millis(settings.poll_interval_ms.max(1)),
            lease: Duration::from_secs(settings.lease_secs.max(1)),
            shutdown_grace: Duration::from_secs(settings.shutdown_grace_secs),
            backoff: Backoff {
                base: Duration::from_millis(settings.backoff_base_ms),
                max: Duration::from_secs(settings.backoff_max_secs),
            },
        }
    }
}

/// `host:pid:random`, so that logs and `locked_by` show which process holds a job.
pub fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into());
    let tag: u16 = rand::random();
    format!("{host}:{}:{tag:04x}", std::process::id())
}

pub struct Runner {
    state: AppState,
    registry: Registry,
    config: RunnerConfig,
}

struct Inner {
    state: AppState,
    registry: Registry,
    kinds: Vec<String>,
    config: RunnerConfig,
    /// Wakes the idle claimer: a NOTIFY arrived, or a job was put back with a new run_at.
    wake: Notify,
    /// Set when the shutdown grace period is over: running jobs are stopped and released.
    abandon: watch::Sender<bool>,
}

/// How a supervised run ended.
enum Ended {
    Finished(Outcome),
    LeaseLost,
    Abandoned,
}

impl Runner {
    pub fn new(state: AppState, registry: Registry, config: RunnerConfig) -> Self {
        Self {
            state,
            registry,
            config,
        }
    }

    /// Runs jobs until `shutdown` fires, then drains (see the module docs).
    pub async fn run(self, mut shutdown: Shutdown) -> anyhow::Result<()> {
        let kinds = self.registry.kinds();
        if kinds.is_empty() {
            tracing::info!("no job kinds registered; the job runner is idle");
            shutdown.wait().await;
            return Ok(());
        }
        let (abandon, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            state: self.state,
            registry: self.registry,
            kinds,
            config: self.config,
            wake: Notify::new(),
            abandon,
        });
        tracing::info!(
            worker = %inner.config.worker_id,
            kinds = ?inner.kinds,
            concurrency = inner.config.concurrency,
            "job runner started"
        );
        let listener = tokio::spawn(listen(inner.clone(), shutdown.clone()));
        let mut tasks = JoinSet::new();
        claim_loop(&inner, &mut tasks, shutdown).await;

        let running = tasks.len();
        if running > 0 {
            tracing::info!(running, grace = ?inner.config.shutdown_grace, "waiting for running jobs");
        }
        if tokio::time::timeout(inner.config.shutdown_grace, drain(&mut tasks))
            .await
            .is_err()
        {
            tracing::warn!(
                running = tasks.len(),
                "shutdown grace period over; releasing running jobs"
            );
            inner.abandon.send_replace(true);
            if tokio::time::timeout(Duration::from_secs(10), drain(&mut tasks))
                .await
                .is_err()
            {
                // Their leases lapse and other workers take them over.
                tasks.abort_all();
            }
        }
        listener.abort();
        let _ = listener.await;
        tracing::info!(worker = %inner.config.worker_id, "job runner stopped");
        Ok(())
    }
}

async fn drain(tasks: &mut JoinSet<()>) {
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            tracing::error!(error = %e, "job task failed");
        }
    }
}

async fn claim_loop(inner: &Arc<Inner>, tasks: &mut JoinSet<()>, mut shutdown: Shutdown) {
    let slots = Arc::new(Semaphore::new(inner.config.concurrency));
    let mut failures = 0;
    let mut depth_at: Option<Instant> = None;
    loop {
        while let Some(done) = tasks.try_join_next() {
            if let Err(e) = done {
                tracing::error!(error = %e, "job task failed");
            }
        }
        let mut permit = tokio::select! {
            biased;
            () = shutdown.wait() => return,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        // One statement fills every free slot.
        if let Ok(more) = slots
            .clone()
            .try_acquire_many_owned(u32::try_from(slots.available_permits()).unwrap_or(u32::MAX))
        {
            permit.merge(more);
        }
        let wanted = permit.num_permits();
        let claimed = claim(inner, wanted).await;
        let idle = match claimed {
            Ok(jobs) => {
                failures = 0;
                let got = jobs.len();
                for job in jobs {
                    let Some(slot) = permit.split(1) else { break };
                    tasks.spawn(execute(inner.clone(), job, slot));
                }
                drop(permit);
                if depth_at.is_none_or(|at| at.elapsed() >= DEPTH_EVERY) {
                    depth_at = Some(Instant::now());
                    record_depth(inner).await;
                }
                if got == wanted {
                    continue;
                }
                idle_wait(inner).await
            }
            Err(e) => {
                drop(permit);
                failures += 1;
                tracing::warn!(error = %format!("{e:#}"), failures, "claiming jobs failed");
                let backoff = Backoff {
                    base: Duration::from_millis(200),
                    max: inner.config.poll_interval.max(Duration::from_secs(1)),
                };
                backoff.delay(failures)
            }
        };
        tokio::select! {
            () = inner.wake.notified() => {}
            () = tokio::time::sleep(idle) => {}
            () = shutdown.wait() => return,
        }
    }
}

async fn claim(inner: &Inner, limit: usize) -> anyhow::Result<Vec<Job>> {
    let mut conn = inner.state.db.get().await.context("database pool")?;
    let jobs = queue::claim(
        &mut conn,
        &inner.config.worker_id,
        &inner.kinds,
        inner.config.lease,
        i64::try_from(limit).unwrap_or(i64::MAX),
    )
    .await?;
    Ok(jobs)
}

/// How long to sleep when nothing is claimable: until the next job is due, at most the poll
/// interval. (A NOTIFY cuts the sleep short.)
async fn idle_wait(inner: &Inner) -> Duration {
    let poll = inner.config.poll_interval;
    let due = async {
        let mut conn = inner.state.db.get().await.ok()?;
        queue::next_due_in(&mut conn, &inner.kinds).await.ok()?
    }
    .await;
    due.map_or(poll, |d| d.clamp(MIN_IDLE, poll.max(MIN_IDLE)))
}

async fn record_depth(inner: &Inner) {
    let Ok(mut conn) = inner.state.db.get().await else {
        return;
    };
    let Ok(rows) = queue::depth(&mut conn).await else {
        return;
    };
    let counts: HashMap<String, (i64, f64)> = rows
        .into_iter()
        .map(|(kind, n, age)| (kind, (n, age)))
        .collect();
    for kind in &inner.kinds {
        let (n, oldest) = counts.get(kind).copied().unwrap_or((0, 0.0));
        metrics::gauge!("jobs_queue_depth", "kind" => kind.clone()).set(n as f64);
        // How long the oldest due job has been waiting for a worker.
        metrics::gauge!("jobs_queue_oldest_age_seconds", "kind" => kind.clone()).set(oldest);
    }
}

/// Runs one claimed job and records what became of it. Holds its slot until done.
async fn execute(inner: Arc<Inner>, job: Job, _slot: OwnedSemaphorePermit) {
    let span = tracing::info_span!("job", id = %job.id, kind = %job.kind, attempt = job.attempts);
    async move {
        let Some(handler) = inner.registry.get(&job.kind) else {
            // Claims are restricted to registered kinds; this would be a bug.
            tracing::error!("claimed a job without a handler; releasing it");
            release(&inner, &job).await;
            return;
        };
        if job.is_exhausted() {
            let error = job
                .last_error
                .clone()
                .unwrap_or_else(|| "attempts exhausted".into());
            let outcome = finalise(&inner, handler.as_ref(), &job, &error).await;
            count(&job.kind, outcome);
            return;
        }
        metrics::gauge!("jobs_running", "kind" => job.kind.clone()).increment(1.0);
        let started = Instant::now();
        let ended = supervise(&inner, handler.clone(), &job).await;
        metrics::gauge!("jobs_running", "kind" => job.kind.clone()).decrement(1.0);
        metrics::histogram!("jobs_run_duration_seconds", "kind" => job.kind.clone())
            .record(started.elapsed().as_secs_f64());
        let outcome = match ended {
            Ended::Finished(outcome) => apply(&inner, handler.as_ref(), &job, outcome).await,
            Ended::LeaseLost => {
                tracing::warn!("lost the job's lease (it was claimed again); run stopped");
                "lease_lost"
            }
            Ended::Abandoned => {
                release(&inner, &job).await;
                "released"
            }
        };
        count(&job.kind, outcome);
    }
    .instrument(span)
    .await;
}

fn count(kind: &str, outcome: &'static str) {
    metrics::counter!("jobs_outcomes_total", "kind" => kind.to_owned(), "outcome" => outcome)
        .increment(1);
}

/// Runs the handler in a task of its own (a panic stays there) while keeping the lease, and
/// stops it when the lease is lost, the shutdown grace is over, or its time is up.
async fn supervise(inner: &Arc<Inner>, handler: Arc<dyn DynHandler>, job: &Job) -> Ended {
    let timeout = handler.timeout();
    let mut run = tokio::spawn({
        let state = inner.state.clone();
        let job = job.clone();
        let handler = handler.clone();
        async move { handler.run(&state, &job).await }.in_current_span()
    });
    let mut abandon = inner.abandon.subscribe();
    let lease_lost = keep_lease(inner, job);
    let ended = tokio::select! {
        result = &mut run => {
            return Ended::Finished(match result {
                Ok(outcome) => outcome,
                Err(e) if e.is_panic() => Outcome::retry(format!("handler panicked: {}", panic_message(e.into_panic()))),
                Err(_) => Outcome::retry("handler task was cancelled"),
            });
        }
        () = lease_lost => Ended::LeaseLost,
        _ = abandon.wait_for(|stop| *stop) => Ended::Abandoned,
        () = tokio::time::sleep(timeout) => {
            Ended::Finished(Outcome::retry(format!("timed out after {timeout:?}")))
        }
    };
    run.abort();
    let _ = run.await;
    ended
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// Extends the lease every third of its length; resolves only when the lease is lost.
async fn keep_lease(inner: &Inner, job: &Job) {
    let lease = inner.config.lease;
    loop {
        tokio::time::sleep(lease / 3).await;
        let extended = match inner.state.db.get().await {
            Ok(mut conn) => queue::extend_lease(&mut conn, job, lease).await,
            Err(e) => {
                tracing::warn!(error = %e, "could not extend the lease: no database connection");
                continue;
            }
        };
        match extended {
            Ok(_) => {}
            Err(QueueError::LeaseLost(_)) => return,
            // The lease still runs; the next tick tries again.
            Err(QueueError::Db(e)) => tracing::warn!(error = %e, "could not extend the lease"),
        }
    }
}

/// Records the handler's outcome; returns its name for the outcome counter.
async fn apply(
    inner: &Inner,
    handler: &dyn DynHandler,
    job: &Job,
    outcome: Outcome,
) -> &'static str {
    enum Record {
        Complete,
        Reschedule(Duration),
        Retry(String, Duration),
    }
    let record = match outcome {
        Outcome::Done => Record::Complete,
        Outcome::Reschedule(after) => Record::Reschedule(after),
        Outcome::Retry { error, after } if !job.is_last_attempt() => {
            let after = after.unwrap_or_else(|| inner.config.backoff.delay(job.attempts));
            Record::Retry(error, after)
        }
        Outcome::Retry { error, .. } | Outcome::Fail(error) => {
            return finalise(inner, handler, job, &error).await;
        }
    };
    let mut conn = match inner.state.db.get().await {
        Ok(conn) => conn,
        Err(e) => {
            // The lease lapses and the job runs again.
            tracing::error!(error = %e, "could not record the job's outcome: no database connection");
            return "error";
        }
    };
    let (name, result) = match record {
        Record::Complete => ("succeeded", queue::complete(&mut conn, job).await),
        Record::Reschedule(after) => {
            let r = queue::reschedule(&mut conn, job, after).await;
            // The idle claimer may sleep past the new run_at.
            inner.wake.notify_one();
            ("rescheduled", r)
        }
        Record::Retry(error, after) => {
            tracing::info!(error = %error, retry_in = ?after, "job attempt failed; will retry");
            let r = queue::retry(&mut conn, job, &error, after).await;
            inner.wake.notify_one();
            ("retried", r)
        }
    };
    match result {
        Ok(()) => name,
        Err(QueueError::LeaseLost(_)) => {
            tracing::warn!(
                outcome = name,
                "lost the job's lease before recording its outcome"
            );
            "lease_lost"
        }
        Err(QueueError::Db(e)) => {
            // The lease lapses and the job runs again.
            tracing::error!(error = %e, outcome = name, "could not record the job's outcome");
            "error"
        }
    }
}

/// Fails the job for good and runs its final-failure hook, in one transaction.
async fn finalise(inner: &Inner, handler: &dyn DynHandler, job: &Job, error: &str) -> &'static str {
    let state = &inner.state;
    let mut conn = match state.db.get().await {
        Ok(conn) => conn,
        Err(e) => {
            tracing::error!(error = %e, "could not fail the job: no database connection");
            return "error";
        }
    };
    let result = conn
        .transaction(async |conn| -> anyhow::Result<()> {
            queue::fail(conn, job, error).await?;
            handler.on_final_failure(state, conn, job, error).await
        })
        .await;
    let Err(e) = result else {
        tracing::warn!(error, attempts = job.attempts, "job failed for good");
        crate::error_reporting::job_failed(&job.kind, error);
        drop(conn);
        handler.after_final_failure(state, job).await;
        return "failed";
    };
    match e.downcast_ref::<QueueError>() {
        Some(QueueError::LeaseLost(_)) => {
            tracing::warn!("lost the job's lease before failing it");
            "lease_lost"
        }
        _ => {
            let after = inner.config.backoff.delay(job.attempts);
            tracing::error!(error = %format!("{e:#}"), retry_in = ?after,
                "the job's final-failure hook failed; it will be failed again");
            match queue::defer_final_failure(&mut conn, job, error, after).await {
                Ok(()) => inner.wake.notify_one(),
                Err(e) => tracing::error!(error = %e, "could not put the job back"),
            }
            "error"
        }
    }
}

async fn release(inner: &Inner, job: &Job) {
    let released = match inner.state.db.get().await {
        Ok(mut conn) => queue::release(&mut conn, job)
            .await
            .map_err(anyhow::Error::from),
        Err(e) => Err(e.into()),
    };
    match released {
        Ok(()) => tracing::info!("job released"),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "could not release the job; its lease will lapse")
        }
    }
}

/// Wakes the claimer on NOTIFY, on a dedicated connection (a pooled one would be recycled),
/// reconnecting with backoff when it drops.
async fn listen(inner: Arc<Inner>, mut shutdown: Shutdown) {
    let mut failures = 0;
    loop {
        let result = tokio::select! {
            r = listen_once(&inner, &mut failures) => r,
            () = shutdown.wait() => return,
        };
        failures += 1;
        let pause = Backoff {
            base: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
        .delay(failures);
        if let Err(e) = result {
            tracing::warn!(error = %format!("{e:#}"), retry_in = ?pause,
                "job notifications interrupted; polling until reconnected");
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = shutdown.wait() => return,
        }
    }
}

async fn listen_once(inner: &Inner, failures: &mut i32) -> anyhow::Result<()> {
    let url = inner.state.settings.database_url.expose_secret();
    let mut conn = tokio::time::timeout(Duration::from_secs(10), AsyncPgConnection::establish(url))
        .await
        .context("connecting to listen: timed out")?
        .context("connecting to listen")?;
    diesel::sql_query(format!("LISTEN {}", queue::CHANNEL))
        .execute(&mut conn)
        .await?;
    *failures = 0;
    // Anything enqueued while nobody listened.
    inner.wake.notify_one();
    loop {
        {
            let mut notifications = pin!(conn.notifications_stream());
            let check = tokio::time::sleep(LISTENER_CHECK);
            let mut check = pin!(check);
            loop {
                tokio::select! {
                    n = notifications.next() => match n {
                        Some(Ok(n)) => {
                            if inner.kinds.contains(&n.payload) {
                                inner.wake.notify_one();
                            }
                        }
                        Some(Err(e)) => return Err(e.into()),
                        None => anyhow::bail!("the notification stream ended"),
                    },
                    () = &mut check => break,
                }
            }
        }
        tokio::time::timeout(
            Duration::from_secs(5),
            diesel::sql_query("SELECT 1").execute(&mut conn),
        )
        .await
        .context("listening connection check timed out")??;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_bounds_and_is_capped() {
        let b = Backoff {
            base: Duration::from_secs(2),
            max: Duration::from_secs(600),
        };
        for attempt in 1..=12 {
            let ceiling = (Duration::from_secs(2) * 2u32.pow(attempt as u32 - 1))
                .min(Duration::from_secs(600));
            assert_eq!(b.delay_at(attempt, 0.0), ceiling / 2, "attempt {attempt}");
            assert_eq!(b.delay_at(attempt, 1.0), ceiling, "attempt {attempt}");
            for _ in 0..50 {
                let d = b.delay(attempt);
                assert!(d >= ceiling / 2 && d <= ceiling, "attempt {attempt}: {d:?}");
            }
        }
        assert_eq!(b.delay_at(1, 0.5), Duration::from_millis(1500));
    }

    #[test]
    fn backoff_survives_odd_attempts() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(60),
        };
        assert_eq!(b.delay_at(0, 1.0), Duration::from_millis(100));
        assert_eq!(b.delay_at(-5, 1.0), Duration::from_millis(100));
        assert_eq!(b.delay_at(i32::MAX, 1.0), Duration::from_secs(60));
        assert_eq!(b.delay_at(64, 0.0), Duration::from_secs(30));
        assert_eq!(b.delay_at(3, f64::NAN), Duration::from_millis(200));
        let huge = Backoff {
            base: Duration::from_secs(u64::MAX / 4),
            max: Duration::MAX,
        };
        assert!(huge.delay_at(40, 1.0) >= huge.base);
        assert!(huge.delay_at(40, 0.3) >= Duration::MAX / 2);
    }
}
