//! The job queue's storage: enqueue in the caller's transaction, claim runnable jobs under a
//! lease, and the lease holder's transitions. Every transition after a claim is guarded by the
//! lease it was claimed with (worker and attempt), so a worker that lost its lease changes nothing.
//!
//! `attempts` counts claims: a lease that lapses (a lost worker) uses an attempt, while a release
//! at shutdown and a reschedule ("poll again in 3 s") give theirs back.

use std::fmt;
use std::io::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::{AsExpression, SqlLiteral};
use diesel::pg::{Pg, PgValue};
use diesel::prelude::*;
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::{Array, BigInt, Double, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::db::Prepare as _;
use crate::db::schema::jobs;

/// The NOTIFY channel; the payload is the job's kind.
pub const CHANNEL: &str = "atelier_jobs";
pub const DEFAULT_MAX_ATTEMPTS: i32 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub i64);

impl From<i64> for JobId {
    fn from(id: i64) -> Self {
        Self(id)
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, FromSqlRow, AsExpression)]
#[diesel(sql_type = Text)]
pub enum Status {
    Queued,
    Running,
    Succeeded,
    Failed,
    Canceled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "canceled" => Self::Canceled,
            _ => return None,
        })
    }

    pub fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Canceled)
    }
}

impl FromSql<Text, Pg> for Status {
    fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
        let raw = <String as FromSql<Text, Pg>>::from_sql(bytes)?;
        Status::parse(&raw).ok_or_else(|| format!("unknown job status {raw:?}").into())
    }
}

impl ToSql<Text, Pg> for Status {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        out.write_all(self.as_str().as_bytes())?;
        Ok(IsNull::No)
    }
}

/// A job row. A claimed job doubles as its lease: `locked_by` and `attempts` identify the claim.
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = jobs)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct Job {
    #[diesel(deserialize_as = i64)]
    pub id: JobId,
    pub kind: String,
    pub payload: serde_json::Value,
    pub status: Status,
    pub priority: i16,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_at: DateTime<Utc>,
    pub locked_by: Option<String>,
    pub locked_until: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Job {
    /// The payload as the handler's type.
    pub fn decode_payload<T: DeserializeOwned>(&self) -> serde_json::Result<T> {
        T::deserialize(&self.payload)
    }

    /// This claim is the last one that runs the handler: a failure now is final.
    pub fn is_last_attempt(&self) -> bool {
        self.attempts >= self.max_attempts
    }

    /// Claimed past its last attempt (its lease lapsed on the last one, or its final-failure
    /// hook failed): the job is only to be marked failed, its handler is not run again.
    pub fn is_exhausted(&self) -> bool {
        self.attempts > self.max_attempts
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The lease lapsed and the job was claimed again, or it is no longer running.
    #[error("job {0} is no longer leased to this worker")]
    LeaseLost(JobId),
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
}

#[derive(Debug, Clone)]
pub struct EnqueueOptions {
    /// Higher runs first.
    pub priority: i16,
    /// Claims allowed before the job fails for good (at least 1).
    pub max_attempts: i32,
    /// Not before this time; `None` is the database's `now()`.
    pub run_at: Option<DateTime<Utc>>,
}

impl Default for EnqueueOptions {
    fn default() -> Self {
        Self {
            priority: 0,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            run_at: None,
        }
    }
}

impl EnqueueOptions {
    pub fn priority(mut self, priority: i16) -> Self {
        self.priority = priority;
        self
    }

    pub fn max_attempts(mut self, max_attempts: i32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    pub fn run_at(mut self, run_at: DateTime<Utc>) -> Self {
        self.run_at = Some(run_at);
        self
    }
}

/// Adds a job in the caller's transaction and notifies idle workers, which hear it at commit
/// (a rolled-back transaction leaves neither the job nor the notification).
pub async fn enqueue<P: Serialize + ?Sized>(
    conn: &mut AsyncPgConnection,
    kind: &str,
    payload: &P,
    opts: EnqueueOptions,
) -> QueryResult<JobId> {
    let payload = serde_json::to_value(payload)
        .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
    let id: i64 = diesel::insert_into(jobs::table)
        .values((
            jobs::kind.eq(kind),
            jobs::payload.eq(payload),
            jobs::priority.eq(opts.priority),
            jobs::max_attempts.eq(opts.max_attempts.max(1)),
            // Absent: the column's default, the database's now().
            opts.run_at.map(|at| jobs::run_at.eq(at)),
        ))
        .returning(jobs::id)
        .prepared()
        .get_result(conn)
        .await?;
    notify(conn, kind).await?;
    Ok(JobId(id))
}

/// Wakes the workers listening for `kind` (at commit, when inside a transaction; Postgres folds
/// identical notifications of one transaction into one).
pub async fn notify(conn: &mut AsyncPgConnection, kind: &str) -> QueryResult<()> {
    diesel::sql_query("SELECT pg_notify($1, $2)")
        .bind::<Text, _>(CHANNEL)
        .bind::<Text, _>(kind)
        .prepared()
        .execute(conn)
        .await?;
    Ok(())
}

/// Claims up to `limit` runnable jobs of `kinds` for `worker`, leased for `lease`: queued jobs
/// that are due, and running jobs whose lease lapsed. One statement; rows another claimer holds
/// are skipped, so concurrent claimers never get the same job.
pub async fn claim(
    conn: &mut AsyncPgConnection,
    worker: &str,
    kinds: &[String],
    lease: Duration,
    limit: i64,
) -> QueryResult<Vec<Job>> {
    // MATERIALIZED keeps the locking subquery from being re-run per joined row.
    diesel::sql_query(
        "WITH next AS MATERIALIZED ( \
             SELECT id FROM jobs \
             WHERE ((status = 'queued' AND run_at <= now()) \
                    OR (status = 'running' AND locked_until < now())) \
               AND kind = ANY($1) \
             ORDER BY priority DESC, run_at, id \
             LIMIT $2 \
             FOR UPDATE SKIP LOCKED) \
         UPDATE jobs SET \
             status = 'running', \
             attempts = jobs.attempts + 1, \
             locked_by = $3, \
             locked_until = now() + make_interval(secs => $4), \
             last_error = CASE WHEN jobs.status = 'running' \
                 THEN 'lease expired during attempt ' || jobs.attempts || ' (worker ' || jobs.locked_by || ')' \
                 ELSE jobs.last_error END, \
             updated_at = now() \
         FROM next WHERE jobs.id = next.id \
         RETURNING jobs.id, jobs.kind, jobs.payload, jobs.status, jobs.priority, jobs.attempts, \
                   jobs.max_attempts, jobs.run_at, jobs.locked_by, jobs.locked_until, \
                   jobs.last_error, jobs.created_at, jobs.updated_at",
    )
    .bind::<Array<Text>, _>(kinds)
    .bind::<BigInt, _>(limit)
    .bind::<Text, _>(worker)
    .bind::<Double, _>(lease.as_secs_f64())
    .prepared()
    .load(conn)
    .await
}

/// `now() + d`, on the database's clock (the one claims compare against).
fn db_now_plus(d: Duration) -> SqlLiteral<Timestamptz> {
    let micros = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
    // An integer, so formatting it into the statement is safe.
    diesel::dsl::sql(&format!("now() + interval '{micros} microseconds'"))
}

/// The row of `job`, provided the lease it was claimed with still holds.
macro_rules! leased {
    ($job:expr) => {
        jobs::table
            .filter(jobs::id.eq($job.id.0))
            .filter(jobs::status.eq(Status::Running))
            .filter(jobs::locked_by.eq($job.locked_by.as_deref()))
            .filter(jobs::attempts.eq($job.attempts))
    };
}

fn held(job: &Job, rows: usize) -> Result<(), QueueError> {
    if rows == 1 {
        Ok(())
    } else {
        Err(QueueError::LeaseLost(job.id))
    }
}

/// Extends the lease to `now() + lease`; returns its new end.
pub async fn extend_lease(
    conn: &mut AsyncPgConnection,
    job: &Job,
    lease: Duration,
) -> Result<DateTime<Utc>, QueueError> {
    diesel::update(leased!(job))
        .set((
            jobs::locked_until.eq(db_now_plus(lease).nullable()),
            jobs::updated_at.eq(diesel::dsl::now),
        ))
        .returning(jobs::locked_until.assume_not_null())
        .prepared()
        .get_result(conn)
        .await
        .optional()?
        .ok_or(QueueError::LeaseLost(job.id))
}

pub async fn complete(conn: &mut AsyncPgConnection, job: &Job) -> Result<(), QueueError> {
    let rows = diesel::update(leased!(job))
        .set((
            jobs::status.eq(Status::Succeeded),
            jobs::locked_by.eq(None::<String>),
            jobs::locked_until.eq(None::<DateTime<Utc>>),
            jobs::updated_at.eq(diesel::dsl::now),
        ))
        .prepared()
        .execute(conn)
        .await?;
    held(job, rows)
}

/// Runs the job again after `after` without using an attempt: not a failure ("poll again").
pub async fn reschedule(
    conn: &mut AsyncPgConnection,
    job: &Job,
    after: Duration,
) -> Result<(), QueueError> {
    let rows = diesel::update(leased!(job))
        .set((
            jobs::status.eq(Status::Queued),
            jobs::attempts.eq(jobs::attempts - 1),
            jobs::run_at.eq(db_now_plus(after)),
            jobs::locked_by.eq(None::<String>),
            jobs::locked_until.eq(None::<DateTime<Utc>>),
            jobs::updated_at.eq(diesel::dsl::now),
        ))
        .prepared()
        .execute(conn)
        .await?;
    held(job, rows)
}

/// Records a failed attempt and runs the job again after `after` (the backoff). Whether an
/// attempt remains is the caller's decision (see [`Job::is_last_attempt`]).
pub async fn retry(
    conn: &mut AsyncPgConnection,
    job: &Job,
    error: &str,
    after: Duration,
) -> Result<(), QueueError> {
    let rows = diesel::update(leased!(job))
        .set((
            jobs::status.eq(Status::Queued),
            jobs::run_at.eq(db_now_plus(after)),
            jobs::last_error.eq(error),
            jobs::locked_by.eq(None::<String>),
            jobs::locked_until.eq(None::<DateTime<Utc>>),
            jobs::updated_at.eq(diesel::dsl::now),
        ))
        .prepared()
        .execute(conn)
        .await?;
    held(job, rows)
}

/// Puts back a job whose failure could not be recorded for good (its final-failure hook failed),
/// so that it is claimed again after `after` as exhausted: to be failed, never run again.
pub async fn defer_final_failure(
    conn: &mut AsyncPgConnection,
    job: &Job,
    error: &str,
    after: Duration,
) -> Result<(), QueueError> {
    let rows = diesel::update(leased!(job))
        .set((
            jobs::status.eq(Status::Queued),
            jobs::attempts.eq(diesel::dsl::sql::<diesel::sql_types::Integer>(
                "GREATEST(attempts, max_attempts)",
            )),
            jobs::run_at.eq(db_now_plus(after)),
            jobs::last_error.eq(error),
            jobs::locked_by.eq(None::<String>),
            jobs::locked_until.eq(None::<DateTime<Utc>>),
            jobs::updated_at.eq(diesel::dsl::now),
        ))
        .prepared()
        .execute(conn)
        .await?;
    held(job, rows)
}

/// Fails the job for good. The runner calls it in the transaction that runs the handler's
/// final-failure hook, so the two happen together, once.
pub async fn fail(conn: &mut AsyncPgConnection, job: &Job, error: &str) -> Result<(), QueueError> {
    let rows = diesel::update(leased!(job))
        .set((
            jobs::status.eq(Status::Failed),
            jobs::last_error.eq(error),
            jobs::locked_by.eq(None::<String>),
            jobs::locked_until.eq(None::<DateTime<Utc>>),
            jobs::updated_at.eq(diesel::dsl::now),
        ))
        .prepared()
        .execute(conn)
        .await?;
    held(job, rows)
}

/// Hands the job back (shutdown): queued, runnable now, its attempt not counted; other workers
/// are notified.
pub async fn release(conn: &mut AsyncPgConnection, job: &Job) -> Result<(), QueueError> {
    let rows = diesel::update(leased!(job))
        .set((
            jobs::status.eq(Status::Queued),
            jobs::attempts.eq(jobs::attempts - 1),
            jobs::run_at.eq(diesel::dsl::now),
            jobs::locked_by.eq(None::<String>),
            jobs::locked_until.eq(None::<DateTime<Utc>>),
            jobs::updated_at.eq(diesel::dsl::now),
        ))
        .prepared()
        .execute(conn)
        .await?;
    held(job, rows)?;
    notify(conn, &job.kind).await?;
    Ok(())
}

/// Cancels a job that has not started; `false` when it is running or finished.
pub async fn cancel(conn: &mut AsyncPgConnection, id: JobId) -> QueryResult<bool> {
    let rows = diesel::update(jobs::table.find(id.0))
        .filter(jobs::status.eq(Status::Queued))
        .set((
            jobs::status.eq(Status::Canceled),
            jobs::updated_at.eq(diesel::dsl::now),
        ))
        .prepared()
        .execute(conn)
        .await?;
    Ok(rows == 1)
}

/// Makes a queued job due now (a provider's callback arrived before the next poll);
/// `false` when it is not queued.
pub async fn run_now(conn: &mut AsyncPgConnection, id: JobId) -> QueryResult<bool> {
    let kind: Option<String> = diesel::update(jobs::table.find(id.0))
        .filter(jobs::status.eq(Status::Queued))
        .set((
            jobs::run_at.eq(diesel::dsl::now),
            jobs::updated_at.eq(diesel::dsl::now),
        ))
        .returning(jobs::kind)
        .prepared()
        .get_result(conn)
        .await
        .optional()?;
    match kind {
        Some(kind) => notify(conn, &kind).await.map(|()| true),
        None => Ok(false),
    }
}

pub async fn find(conn: &mut AsyncPgConnection, id: JobId) -> QueryResult<Option<Job>> {
    jobs::table
        .find(id.0)
        .select(Job::as_select())
        .first(conn)
        .await
        .optional()
}

#[derive(QueryableByName)]
struct Due {
    #[diesel(sql_type = diesel::sql_types::Nullable<Double>)]
    secs: Option<f64>,
}

/// How long until the next job of `kinds` becomes claimable (zero when one is due already):
/// the earliest `run_at` of a queued job or lease end of a running one. `None` when there is none.
pub async fn next_due_in(
    conn: &mut AsyncPgConnection,
    kinds: &[String],
) -> QueryResult<Option<Duration>> {
    let due: Due = diesel::sql_query(
        "SELECT EXTRACT(EPOCH FROM (min(CASE WHEN status = 'queued' THEN run_at ELSE locked_until END) \
                                    - now()))::float8 AS secs \
         FROM jobs WHERE status IN ('queued', 'running') AND kind = ANY($1)",
    )
    .bind::<Array<Text>, _>(kinds)
    .get_result(conn)
    .await?;
    Ok(due.secs.map(|s| Duration::from_secs_f64(s.max(0.0))))
}

/// Queued jobs that are due now, by kind: the backlog.
pub async fn depth(conn: &mut AsyncPgConnection) -> QueryResult<Vec<(String, i64, f64)>> {
    jobs::table
        .filter(jobs::status.eq(Status::Queued))
        .filter(jobs::run_at.le(diesel::dsl::now))
        .group_by(jobs::kind)
        .select((
            jobs::kind,
            diesel::dsl::count_star(),
            diesel::dsl::sql::<diesel::sql_types::Double>(
                "COALESCE(EXTRACT(EPOCH FROM now() - min(run_at))::float8, 0)",
            ),
        ))
        .load(conn)
        .await
}

/// Jobs by kind and status.
pub async fn counts(conn: &mut AsyncPgConnection) -> QueryResult<Vec<(String, String, i64)>> {
    let rows: Vec<(String, Status, i64)> = jobs::table
        .group_by((jobs::kind, jobs::status))
        .select((jobs::kind, jobs::status, diesel::dsl::count_star()))
        .order((jobs::kind, jobs::status))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(kind, status, n)| (kind, status.as_str().to_owned(), n))
        .collect())
}

/// The most recently updated jobs that failed for good or wait to be retried after an error.
pub async fn failing(conn: &mut AsyncPgConnection, limit: i64) -> QueryResult<Vec<Job>> {
    jobs::table
        .filter(
            jobs::status.eq(Status::Failed).or(jobs::status
                .eq(Status::Queued)
                .and(jobs::last_error.is_not_null())),
        )
        .order(jobs::updated_at.desc())
        .limit(limit)
        .select(Job::as_select())
        .load(conn)
        .await
}

/// Deletes up to `limit` jobs that finished more than `older_than` ago; returns how many.
pub async fn purge_finished(
    conn: &mut AsyncPgConnection,
    older_than: Duration,
    limit: i64,
) -> QueryResult<usize> {
    diesel::sql_query(
        "DELETE FROM jobs WHERE id IN ( \
             SELECT id FROM jobs \
             WHERE status IN ('succeeded', 'failed', 'canceled') \
               AND updated_at < now() - make_interval(secs => $1) \
             LIMIT $2)",
    )
    .bind::<Double, _>(older_than.as_secs_f64())
    .bind::<BigInt, _>(limit)
    .execute(conn)
    .await
}
