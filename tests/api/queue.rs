//! The job queue against the real database: transactional enqueue, exclusive claims, leases
//! that lapse and are taken over, retries with backoff, final failure exactly once, reschedules,
//! NOTIFY wake-ups and shutdown. Plus the throughput benchmark (ignored; `make bench-queue`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use atelier::jobs::queue::{self, EnqueueOptions, Job, JobId, QueueError, Status};
use atelier::jobs::runner::{Backoff, JobHandler, Outcome, Registry, Runner, RunnerConfig};
use atelier::shutdown;
use atelier::state::AppState;
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use futures_util::StreamExt;
use serde_json::json;

use crate::helpers::{TestApp, spawn_app_with};

const KIND: &str = "test";
const LONG: Duration = Duration::from_secs(30);

fn config(worker: &str) -> RunnerConfig {
    RunnerConfig {
        worker_id: worker.to_owned(),
        concurrency: 4,
        poll_interval: Duration::from_secs(60),
        lease: Duration::from_secs(30),
        shutdown_grace: Duration::from_secs(5),
        backoff: Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        },
    }
}

/// A running runner; dropping it without `stop` leaves it running until the test ends.
struct Running {
    trigger: shutdown::Trigger,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    fn start(state: AppState, registry: Registry, config: RunnerConfig) -> Self {
        let (trigger, stop) = shutdown::channel();
        let task = tokio::spawn(Runner::new(state, registry, config).run(stop));
        Self { trigger, task }
    }

    async fn stop(self) {
        self.trigger.fire();
        tokio::time::timeout(LONG, self.task)
            .await
            .expect("runner stops")
            .unwrap()
            .unwrap();
    }
}

/// What the test handler did, shared with the test.
#[derive(Clone, Default)]
struct Log {
    runs: Arc<Mutex<HashMap<JobId, Vec<Instant>>>>,
    finals: Arc<Mutex<Vec<(JobId, String)>>>,
}

impl Log {
    fn runs(&self, id: JobId) -> usize {
        self.runs.lock().unwrap().get(&id).map_or(0, Vec::len)
    }

    fn run_times(&self, id: JobId) -> Vec<Instant> {
        self.runs
            .lock()
            .unwrap()
            .get(&id)
            .cloned()
            .unwrap_or_default()
    }

    fn finals(&self) -> Vec<(JobId, String)> {
        self.finals.lock().unwrap().clone()
    }
}

type Script = dyn Fn(&Job, usize) -> Outcome + Send + Sync;

/// A handler that logs each run, optionally sleeps, and answers what `script` says for the
/// n-th run (1-based) of a job. Its final-failure hook writes a row through the transaction
/// it is given and fails as often as `hook_failures` says.
#[derive(Clone)]
struct TestHandler {
    log: Log,
    sleep: Duration,
    script: Arc<Script>,
    hook_failures: Arc<AtomicUsize>,
    timeout: Duration,
}

impl TestHandler {
    fn new(log: &Log, script: impl Fn(&Job, usize) -> Outcome + Send + Sync + 'static) -> Self {
        Self {
            log: log.clone(),
            sleep: Duration::ZERO,
            script: Arc::new(script),
            hook_failures: Arc::new(AtomicUsize::new(0)),
            timeout: Duration::from_secs(600),
        }
    }

    fn sleeping(mut self, sleep: Duration) -> Self {
        self.sleep = sleep;
        self
    }
}

impl JobHandler for TestHandler {
    async fn run(&self, _state: &AppState, job: &Job) -> Outcome {
        let n = {
            let mut runs = self.log.runs.lock().unwrap();
            let times = runs.entry(job.id).or_default();
            times.push(Instant::now());
            times.len()
        };
        if !self.sleep.is_zero() {
            tokio::time::sleep(self.sleep).await;
        }
        (self.script)(job, n)
    }

    async fn on_final_failure(
        &self,
        _state: &AppState,
        conn: &mut AsyncPgConnection,
        job: &Job,
        error: &str,
    ) -> anyhow::Result<()> {
        self.log
            .finals
            .lock()
            .unwrap()
            .push((job.id, error.to_owned()));
        diesel::sql_query("INSERT INTO final_effects (job_id) VALUES ($1)")
            .bind::<diesel::sql_types::BigInt, _>(job.id.0)
            .execute(conn)
            .await?;
        let fails = self
            .hook_failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if fails {
            anyhow::bail!("refund service unavailable");
        }
        Ok(())
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }
}

async fn app() -> TestApp {
    let app = spawn_app_with(&[("DATABASE_POOL_SIZE", "12")]).await;
    app.conn()
        .await
        .batch_execute("CREATE TABLE final_effects (job_id BIGINT NOT NULL)")
        .await
        .unwrap();
    app
}

fn registry(handler: TestHandler) -> Registry {
    Registry::new().register(KIND, handler)
}

async fn enqueue(conn: &mut AsyncPgConnection, opts: EnqueueOptions) -> JobId {
    queue::enqueue(conn, KIND, &json!({"n": 1}), opts)
        .await
        .unwrap()
}

async fn job(conn: &mut AsyncPgConnection, id: JobId) -> Job {
    queue::find(conn, id).await.unwrap().expect("job exists")
}

/// Polls `check` every 20 ms until it holds; panics after `within`.
async fn wait_for(within: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_status(app: &TestApp, id: JobId, status: Status, within: Duration) -> Job {
    let mut conn = app.conn().await;
    let deadline = Instant::now() + within;
    loop {
        let j = job(&mut conn, id).await;
        if j.status == status {
            return j;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} still {:?}, wanted {status:?}: {j:?}",
            j.status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

async fn count(conn: &mut AsyncPgConnection, sql: &str) -> i64 {
    diesel::sql_query(sql)
        .get_result::<Count>(conn)
        .await
        .unwrap()
        .n
}

fn kinds() -> Vec<String> {
    vec![KIND.to_owned()]
}

#[tokio::test]
async fn enqueue_belongs_to_the_callers_transaction() {
    let app = app().await;
    let mut listener = app.conn().await;
    listener.batch_execute("LISTEN atelier_jobs").await.unwrap();
    let mut conn = app.conn().await;

    let rolled_back = conn
        .transaction(async |conn| -> Result<JobId, diesel::result::Error> {
            queue::enqueue(conn, "gone", &json!({}), EnqueueOptions::default()).await?;
            Err(diesel::result::Error::RollbackTransaction)
        })
        .await;
    assert!(rolled_back.is_err());
    assert_eq!(count(&mut conn, "SELECT count(*) AS n FROM jobs").await, 0);

    let id = conn
        .transaction(async |conn| {
            queue::enqueue(
                conn,
                KIND,
                &json!({"generation": "g1"}),
                EnqueueOptions::default().priority(3).max_attempts(7),
            )
            .await
        })
        .await
        .unwrap();
    let j = job(&mut conn, id).await;
    assert_eq!(
        (j.status, j.attempts, j.max_attempts, j.priority),
        (Status::Queued, 0, 7, 3)
    );
    assert_eq!(j.payload, json!({"generation": "g1"}));
    assert!(j.locked_by.is_none() && j.locked_until.is_none() && j.last_error.is_none());

    // Only the committed job was announced.
    let mut notifications = std::pin::pin!(listener.notifications_stream());
    let n = tokio::time::timeout(Duration::from_secs(5), notifications.next())
        .await
        .expect("a notification")
        .unwrap()
        .unwrap();
    assert_eq!(
        (n.channel.as_str(), n.payload.as_str()),
        ("atelier_jobs", KIND)
    );
}

#[tokio::test]
async fn claims_follow_priority_and_run_at_and_respect_kinds() {
    let app = app().await;
    let mut conn = app.conn().await;
    let low = enqueue(&mut conn, EnqueueOptions::default()).await;
    let high = enqueue(&mut conn, EnqueueOptions::default().priority(10)).await;
    let later = enqueue(
        &mut conn,
        EnqueueOptions::default().run_at(chrono::Utc::now() + chrono::Duration::hours(1)),
    )
    .await;
    queue::enqueue(&mut conn, "other", &json!({}), EnqueueOptions::default())
        .await
        .unwrap();
    let lease = Duration::from_secs(30);
    let claim = async |conn: &mut AsyncPgConnection| {
        queue::claim(conn, "w", &kinds(), lease, 1)
            .await
            .unwrap()
            .into_iter()
            .map(|j| j.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(claim(&mut conn).await, vec![high]);
    assert_eq!(claim(&mut conn).await, vec![low]);
    assert!(claim(&mut conn).await.is_empty(), "nothing else is due");
    let due = queue::next_due_in(&mut conn, &kinds())
        .await
        .unwrap()
        .unwrap();
    assert!(
        due <= Duration::from_secs(30),
        "the nearest lease end: {due:?}"
    );

    // A callback makes the delayed job due now; a canceled job is never claimed.
    assert!(queue::run_now(&mut conn, later).await.unwrap());
    let canceled = enqueue(&mut conn, EnqueueOptions::default().priority(20)).await;
    assert!(queue::cancel(&mut conn, canceled).await.unwrap());
    assert!(!queue::cancel(&mut conn, low).await.unwrap(), "running");
    assert_eq!(claim(&mut conn).await, vec![later]);
    assert_eq!(job(&mut conn, canceled).await.status, Status::Canceled);
}

#[tokio::test]
async fn concurrent_claimers_never_get_the_same_job() {
    let app = app().await;
    let mut conn = app.conn().await;
    conn.batch_execute(
        "INSERT INTO jobs (kind, payload) SELECT 'test', jsonb_build_object('n', n) \
         FROM generate_series(1, 300) AS n",
    )
    .await
    .unwrap();
    let claimers: Vec<_> = (0..4)
        .map(|w| {
            let url = app.database_url.clone();
            tokio::spawn(async move {
                let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
                let worker = format!("w{w}");
                let mut mine = Vec::new();
                loop {
                    let batch = queue::claim(&mut conn, &worker, &kinds(), LONG, 3)
                        .await
                        .unwrap();
                    if batch.is_empty() {
                        return mine;
                    }
                    for j in batch {
                        assert_eq!(j.locked_by.as_deref(), Some(worker.as_str()));
                        queue::complete(&mut conn, &j).await.unwrap();
                        mine.push(j.id);
                    }
                }
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for c in claimers {
        for id in c.await.unwrap() {
            assert!(seen.insert(id), "job {id} was claimed twice");
        }
    }
    assert_eq!(seen.len(), 300);
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM jobs WHERE status = 'succeeded' AND attempts = 1"
        )
        .await,
        300
    );
}

/// Four workers (each with its own pool, as separate processes would be), four jobs at once
/// each: every one of 200 jobs runs exactly once.
#[tokio::test]
async fn four_runners_run_every_job_exactly_once() {
    let app = app().await;
    let log = Log::default();
    let handler = TestHandler::new(&log, |_, _| Outcome::Done).sleeping(Duration::from_millis(2));
    let mut conn = app.conn().await;
    let mut ids = Vec::new();
    conn.transaction(async |conn| {
        for _ in 0..200 {
            ids.push(enqueue(conn, EnqueueOptions::default()).await);
        }
        diesel::QueryResult::Ok(())
    })
    .await
    .unwrap();
    let mut runners = Vec::new();
    for w in 0..4 {
        let state = AppState::build((*app.state.settings).clone()).unwrap();
        let mut cfg = config(&format!("worker-{w}"));
        cfg.poll_interval = Duration::from_millis(500);
        runners.push(Running::start(state, registry(handler.clone()), cfg));
    }
    wait_for(Duration::from_secs(60), "all jobs to succeed", async || {
        count(
            &mut conn,
            "SELECT count(*) AS n FROM jobs WHERE status = 'succeeded'",
        )
        .await
            == 200
    })
    .await;
    for r in runners {
        r.stop().await;
    }
    for id in &ids {
        assert_eq!(log.runs(*id), 1, "job {id}");
    }
    assert_eq!(log.runs.lock().unwrap().len(), 200);
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM jobs WHERE attempts <> 1"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn a_lapsed_lease_is_claimed_again_and_the_old_holder_is_rejected() {
    let app = app().await;
    let mut conn = app.conn().await;
    let id = enqueue(&mut conn, EnqueueOptions::default()).await;
    let lapse = "UPDATE jobs SET locked_until = now() - interval '1 second'";

    let first = queue::claim(&mut conn, "w1", &kinds(), LONG, 1)
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    let first = first.into_iter().next().unwrap();
    assert_eq!(
        (first.attempts, first.locked_by.as_deref()),
        (1, Some("w1"))
    );
    // While the lease holds, nobody else gets it; the holder can extend it.
    assert!(
        queue::claim(&mut conn, "w2", &kinds(), LONG, 1)
            .await
            .unwrap()
            .is_empty()
    );
    queue::extend_lease(&mut conn, &first, LONG).await.unwrap();

    conn.batch_execute(lapse).await.unwrap();
    let second = queue::claim(&mut conn, "w2", &kinds(), LONG, 1)
        .await
        .unwrap()
        .pop()
        .expect("the lapsed job is claimed again");
    assert_eq!(second.id, id);
    assert_eq!(
        (second.attempts, second.locked_by.as_deref()),
        (2, Some("w2"))
    );
    assert!(
        second
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("lease expired during attempt 1")),
        "{:?}",
        second.last_error
    );

    // The first worker comes back: whatever it does now changes nothing.
    let lost = |r: Result<(), QueueError>| matches!(r, Err(QueueError::LeaseLost(i)) if i == id);
    assert!(lost(queue::complete(&mut conn, &first).await));
    assert!(lost(queue::fail(&mut conn, &first, "late").await));
    assert!(lost(
        queue::retry(&mut conn, &first, "late", Duration::ZERO).await
    ));
    assert!(lost(
        queue::reschedule(&mut conn, &first, Duration::ZERO).await
    ));
    assert!(lost(queue::release(&mut conn, &first).await));
    assert!(matches!(
        queue::extend_lease(&mut conn, &first, LONG).await,
        Err(QueueError::LeaseLost(_))
    ));
    let j = job(&mut conn, id).await;
    assert_eq!(
        (j.status, j.locked_by.as_deref()),
        (Status::Running, Some("w2"))
    );

    // Even the same worker, reclaiming its own lapsed job, cannot act on the old claim.
    conn.batch_execute(lapse).await.unwrap();
    let third = queue::claim(&mut conn, "w2", &kinds(), LONG, 1)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(third.attempts, 3);
    assert!(lost(queue::complete(&mut conn, &second).await));
    queue::complete(&mut conn, &third).await.unwrap();
    let j = job(&mut conn, id).await;
    assert_eq!((j.status, j.attempts), (Status::Succeeded, 3));
    assert!(j.locked_by.is_none() && j.locked_until.is_none());
}

/// A worker "crashes" holding a job (it claimed it and vanished): once the lease lapses an idle
/// runner takes it over without waiting for its (long) poll interval. On its last attempt the
/// job is failed instead, and its hook runs once, without running the handler.
#[tokio::test]
async fn a_runner_takes_over_a_crashed_workers_jobs() {
    let app = app().await;
    let log = Log::default();
    let mut conn = app.conn().await;
    let resumed = enqueue(&mut conn, EnqueueOptions::default()).await;
    let doomed = enqueue(&mut conn, EnqueueOptions::default().max_attempts(1)).await;
    let crashed = queue::claim(&mut conn, "crashed", &kinds(), Duration::from_secs(1), 2)
        .await
        .unwrap();
    assert_eq!(crashed.len(), 2);

    let runner = Running::start(
        app.state.clone(),
        registry(TestHandler::new(&log, |_, _| Outcome::Done)),
        config("rescuer"),
    );
    let j = wait_status(&app, resumed, Status::Succeeded, Duration::from_secs(10)).await;
    assert_eq!(j.attempts, 2);
    assert_eq!(log.runs(resumed), 1);
    let j = wait_status(&app, doomed, Status::Failed, Duration::from_secs(10)).await;
    assert!(j.last_error.as_deref().unwrap().contains("lease expired"));
    runner.stop().await;
    assert_eq!(log.runs(doomed), 0, "an exhausted job is not run again");
    let finals = log.finals();
    assert_eq!(finals.len(), 1);
    assert_eq!(finals[0].0, doomed);
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM final_effects").await,
        1
    );
}

#[tokio::test]
async fn failed_attempts_back_off_then_the_job_fails_once() {
    let app = app().await;
    let log = Log::default();
    let mut conn = app.conn().await;
    let id = enqueue(&mut conn, EnqueueOptions::default().max_attempts(3)).await;
    let mut cfg = config("w");
    cfg.backoff = Backoff {
        base: Duration::from_millis(400),
        max: Duration::from_secs(5),
    };
    let runner = Running::start(
        app.state.clone(),
        registry(TestHandler::new(&log, |_, n| {
            Outcome::retry(format!("boom {n}"))
        })),
        cfg,
    );

    // After the first failure the job waits for its backoff: at least half of 400 ms.
    wait_for(Duration::from_secs(10), "the first failure", async || {
        let j = job(&mut conn, id).await;
        j.status == Status::Queued && j.attempts == 1
    })
    .await;
    let j = job(&mut conn, id).await;
    assert_eq!(j.last_error.as_deref(), Some("boom 1"));
    assert!(
        j.run_at - j.updated_at >= chrono::Duration::milliseconds(200),
        "run_at {} is not backed off from {}",
        j.run_at,
        j.updated_at
    );

    let j = wait_status(&app, id, Status::Failed, Duration::from_secs(15)).await;
    assert_eq!((j.attempts, j.last_error.as_deref()), (3, Some("boom 3")));
    tokio::time::sleep(Duration::from_millis(300)).await;
    runner.stop().await;
    let times = log.run_times(id);
    assert_eq!(times.len(), 3);
    // The second retry waits at least half of 800 ms.
    assert!(times[1] - times[0] >= Duration::from_millis(200));
    assert!(times[2] - times[1] >= Duration::from_millis(400));
    assert_eq!(log.finals(), vec![(id, "boom 3".to_owned())]);
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM final_effects").await,
        1
    );
}

/// A permanent failure fails at once; when the final-failure hook fails, its writes roll back
/// with the failure, and the job is failed again later, without running the handler again.
#[tokio::test]
async fn a_failing_final_failure_hook_is_rolled_back_and_retried() {
    let app = app().await;
    let log = Log::default();
    let mut conn = app.conn().await;
    let id = enqueue(&mut conn, EnqueueOptions::default()).await;
    let handler = TestHandler::new(&log, |_, _| Outcome::fail("content rejected"));
    handler.hook_failures.store(1, Ordering::SeqCst);
    let runner = Running::start(app.state.clone(), registry(handler), config("w"));
    let j = wait_status(&app, id, Status::Failed, Duration::from_secs(10)).await;
    runner.stop().await;
    assert_eq!(j.last_error.as_deref(), Some("content rejected"));
    assert_eq!(log.runs(id), 1, "the handler ran once");
    assert_eq!(
        log.finals().len(),
        2,
        "the hook ran twice, the first rolled back"
    );
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM final_effects").await,
        1
    );
}

#[tokio::test]
async fn reschedules_do_not_use_attempts() {
    let app = app().await;
    let log = Log::default();
    let mut conn = app.conn().await;
    // With two attempts, five reschedules would fail the job if they counted.
    let id = enqueue(&mut conn, EnqueueOptions::default().max_attempts(2)).await;
    let handler = TestHandler::new(&log, |_, n| {
        if n <= 5 {
            Outcome::Reschedule(Duration::from_millis(50))
        } else {
            Outcome::Done
        }
    });
    // A 60 s poll: the runner must wake for the rescheduled run_at by itself.
    let runner = Running::start(app.state.clone(), registry(handler), config("w"));
    let j = wait_status(&app, id, Status::Succeeded, Duration::from_secs(10)).await;
    runner.stop().await;
    assert_eq!(j.attempts, 1);
    assert_eq!(log.runs(id), 6);
    assert!(log.finals().is_empty());
}

#[tokio::test]
async fn panics_and_timeouts_are_failed_attempts() {
    let app = app().await;
    let log = Log::default();
    let mut conn = app.conn().await;
    let panics = queue::enqueue(
        &mut conn,
        "panics",
        &json!({}),
        EnqueueOptions::default().max_attempts(1),
    )
    .await
    .unwrap();
    let hangs = enqueue(&mut conn, EnqueueOptions::default().max_attempts(1)).await;
    let mut slow = TestHandler::new(&log, |_, _| Outcome::Done).sleeping(Duration::from_secs(3600));
    slow.timeout = Duration::from_millis(300);
    let registry = registry(slow).register(
        "panics",
        TestHandler::new(&log, |_, _| panic!("handler bug")),
    );
    let runner = Running::start(app.state.clone(), registry, config("w"));
    let p = wait_status(&app, panics, Status::Failed, Duration::from_secs(10)).await;
    let h = wait_status(&app, hangs, Status::Failed, Duration::from_secs(10)).await;
    runner.stop().await;
    assert_eq!(
        p.last_error.as_deref(),
        Some("handler panicked: handler bug")
    );
    assert!(
        h.last_error
            .as_deref()
            .unwrap()
            .starts_with("timed out after")
    );
    assert_eq!(log.finals().len(), 2);
}

#[derive(QueryableByName)]
struct Listening {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[tokio::test]
async fn notify_wakes_an_idle_worker_long_before_its_poll() {
    let app = app().await;
    let log = Log::default();
    let runner = Running::start(
        app.state.clone(),
        registry(TestHandler::new(&log, |_, _| Outcome::Done)),
        config("w"), // polls every 60 s
    );
    let mut conn = app.conn().await;
    wait_for(
        Duration::from_secs(10),
        "the runner to LISTEN",
        async || {
            diesel::sql_query(
                "SELECT count(*) AS n FROM pg_stat_activity \
             WHERE datname = current_database() AND query = 'LISTEN atelier_jobs'",
            )
            .get_result::<Listening>(&mut conn)
            .await
            .unwrap()
            .n == 1
        },
    )
    .await;
    // Let it find the queue empty and go to sleep.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let enqueued = Instant::now();
    let id = conn
        .transaction(async |conn| {
            queue::enqueue(conn, KIND, &json!({}), EnqueueOptions::default()).await
        })
        .await
        .unwrap();
    wait_status(&app, id, Status::Succeeded, Duration::from_secs(2)).await;
    let ran_after = log.run_times(id)[0] - enqueued;
    runner.stop().await;
    assert!(ran_after < Duration::from_secs(2), "{ran_after:?}");
}

#[tokio::test]
async fn shutdown_lets_short_jobs_finish_and_releases_long_ones() {
    let app = app().await;
    let log = Log::default();
    let mut conn = app.conn().await;
    let short = queue::enqueue(&mut conn, "short", &json!({}), EnqueueOptions::default())
        .await
        .unwrap();
    let long = enqueue(&mut conn, EnqueueOptions::default()).await;
    let registry =
        registry(TestHandler::new(&log, |_, _| Outcome::Done).sleeping(Duration::from_secs(3600)))
            .register(
                "short",
                TestHandler::new(&log, |_, _| Outcome::Done).sleeping(Duration::from_millis(600)),
            );
    let mut cfg = config("w");
    cfg.shutdown_grace = Duration::from_millis(1500);
    let runner = Running::start(app.state.clone(), registry, cfg);
    wait_for(Duration::from_secs(10), "both jobs to start", async || {
        log.runs(short) == 1 && log.runs(long) == 1
    })
    .await;
    let stopping = Instant::now();
    runner.stop().await;
    assert!(stopping.elapsed() < Duration::from_secs(10));

    assert_eq!(job(&mut conn, short).await.status, Status::Succeeded);
    let j = job(&mut conn, long).await;
    assert_eq!((j.status, j.attempts), (Status::Queued, 0), "{j:?}");
    assert!(j.locked_by.is_none() && j.locked_until.is_none());
    let taken = queue::claim(&mut conn, "next", &kinds(), LONG, 1)
        .await
        .unwrap();
    assert_eq!(
        taken.iter().map(|j| (j.id, j.attempts)).collect::<Vec<_>>(),
        vec![(long, 1)],
        "claimable at once, its attempt not counted"
    );
}

#[tokio::test]
async fn finished_jobs_are_purged_after_retention() {
    let app = app().await;
    let mut conn = app.conn().await;
    let old = enqueue(&mut conn, EnqueueOptions::default()).await;
    let queued = enqueue(&mut conn, EnqueueOptions::default()).await;
    conn.batch_execute(&format!(
        "UPDATE jobs SET status = 'succeeded', updated_at = now() - interval '2 days' WHERE id = {old}; \
         UPDATE jobs SET updated_at = now() - interval '2 days' WHERE id = {queued}"
    ))
    .await
    .unwrap();
    let purged = queue::purge_finished(&mut conn, Duration::from_secs(86_400), 100)
        .await
        .unwrap();
    assert_eq!(purged, 1);
    assert!(queue::find(&mut conn, old).await.unwrap().is_none());
    assert!(queue::find(&mut conn, queued).await.unwrap().is_some());
}

/// Queue throughput: no-op jobs, claim to complete, with four job slots. Run by
/// `make bench-queue` (scripts/bench-queue.sh), which records the figures.
#[tokio::test]
#[ignore = "benchmark; run with scripts/bench-queue.sh"]
async fn bench_queue_throughput() {
    let jobs: usize = std::env::var("QUEUE_BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    // (label, runners, slots per runner)
    let setups = [("1 worker x 4 slots", 1, 4), ("4 workers x 1 slot", 4, 1)];
    for (label, runners, slots) in setups {
        let app = spawn_app_with(&[("DATABASE_POOL_SIZE", "16")]).await;
        let mut conn = app.conn().await;
        let started = Instant::now();
        conn.transaction(async |conn| {
            for n in 0..jobs {
                queue::enqueue(conn, KIND, &json!({"n": n}), EnqueueOptions::default()).await?;
            }
            diesel::QueryResult::Ok(())
        })
        .await
        .unwrap();
        let enqueue_secs = started.elapsed().as_secs_f64();

        let log = Log::default();
        let handler = TestHandler::new(&log, |_, _| Outcome::Done);
        let started = Instant::now();
        let mut running = Vec::new();
        for w in 0..runners {
            let state = AppState::build((*app.state.settings).clone()).unwrap();
            let mut cfg = config(&format!("bench-{w}"));
            cfg.concurrency = slots;
            cfg.poll_interval = Duration::from_millis(500);
            running.push(Running::start(state, registry(handler.clone()), cfg));
        }
        let expected = i64::try_from(jobs).unwrap();
        wait_for(Duration::from_secs(600), "the queue to drain", async || {
            count(
                &mut conn,
                "SELECT count(*) AS n FROM jobs WHERE status = 'succeeded'",
            )
            .await
                == expected
        })
        .await;
        let secs = started.elapsed().as_secs_f64();
        for r in running {
            r.stop().await;
        }
        println!(
            "QUEUE_BENCH|{label}|{jobs}|{secs:.3}|{:.0}|{:.0}",
            jobs as f64 / secs,
            jobs as f64 / enqueue_secs
        );
    }
}
