//! Generations: inserts, owner look-ups, limits, and the worker's state changes. Every state
//! change is guarded by the state it expects, so a late or repeated step changes nothing.

use crate::domain::ids::UserId;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::Prepare as _;
use super::models::Generation;
use super::schema::generations;
use crate::domain::vocabulary::GenerationStatus;

const ACTIVE: [GenerationStatus; 2] = GenerationStatus::ACTIVE;

pub async fn insert(conn: &mut AsyncPgConnection, g: &Generation) -> QueryResult<Generation> {
    diesel::insert_into(generations::table)
        .values(g)
        .returning(Generation::as_returning())
        .prepared()
        .get_result(conn)
        .await
}

pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Generation>> {
    generations::table
        .find(id)
        .select(Generation::as_select())
        .first(conn)
        .await
        .optional()
}

/// Locks the row for a state change.
pub async fn lock(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Generation>> {
    generations::table
        .find(id)
        .for_update()
        .select(Generation::as_select())
        .first(conn)
        .await
        .optional()
}

/// One of the user's generations, unless they deleted it.
pub async fn find_owned(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    id: Uuid,
) -> QueryResult<Option<Generation>> {
    generations::table
        .filter(generations::id.eq(id))
        .filter(generations::user_id.eq(user_id))
        .filter(generations::deleted_at.is_null())
        .select(Generation::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn find_by_client_request(
    mut conn: &AsyncPgConnection,
    user_id: UserId,
    client_request_id: &str,
) -> QueryResult<Option<Generation>> {
    generations::table
        .filter(generations::user_id.eq(user_id))
        .filter(generations::client_request_id.eq(client_request_id))
        .select(Generation::as_select())
        .first(&mut conn)
        .await
        .optional()
}

pub async fn find_by_task(
    conn: &mut AsyncPgConnection,
    task_id: &str,
) -> QueryResult<Option<Generation>> {
    generations::table
        .filter(generations::provider_task_id.eq(task_id))
        .select(Generation::as_select())
        .first(conn)
        .await
        .optional()
}

/// The user's generations (not those they deleted), newest first, strictly before the `(created_at, id)` cursor.
pub async fn list(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    before: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> QueryResult<Vec<Generation>> {
    let mut query = generations::table
        .filter(generations::user_id.eq(user_id))
        .filter(generations::deleted_at.is_null())
        .order((generations::created_at.desc(), generations::id.desc()))
        .limit(limit)
        .select(Generation::as_select())
        .into_boxed();
    if let Some((at, id)) = before {
        query = query.filter(
            generations::created_at
                .lt(at)
                .or(generations::created_at.eq(at).and(generations::id.lt(id))),
        );
    }
    query.load(conn).await
}

pub async fn active_for_user(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
) -> QueryResult<Vec<Generation>> {
    generations::table
        .filter(generations::user_id.eq(user_id))
        .filter(generations::status.eq_any(ACTIVE))
        .order(generations::created_at)
        .select(Generation::as_select())
        .load(conn)
        .await
}

/// Creation times of the user's generations since `since` (for the hourly limit).
pub async fn created_since(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    since: DateTime<Utc>,
) -> QueryResult<Vec<DateTime<Utc>>> {
    generations::table
        .filter(generations::user_id.eq(user_id))
        .filter(generations::created_at.gt(since))
        .order(generations::created_at)
        .select(generations::created_at)
        .load(conn)
        .await
}

/// Queued generations created before this one: its place in line.
pub async fn queue_position(conn: &mut AsyncPgConnection, g: &Generation) -> QueryResult<i64> {
    generations::table
        .filter(generations::status.eq(GenerationStatus::Queued))
        .filter(generations::created_at.lt(g.created_at))
        .count()
        .get_result(conn)
        .await
}

pub async fn set_job(conn: &mut AsyncPgConnection, id: Uuid, job_id: i64) -> QueryResult<usize> {
    diesel::update(generations::table.find(id))
        .set(generations::job_id.eq(job_id))
        .prepared()
        .execute(conn)
        .await
}

/// queued → running; `false` when it was not queued.
/// A job step begins: in one statement, a queued generation becomes running (`started_at`
/// set), and a step that is about to create the provider task counts the attempt. `None` when
/// the generation is no longer active (finished, or canceled and refunded meanwhile) or gone.
/// The flag tells whether this step moved it from queued to running.
pub async fn begin_step(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> QueryResult<Option<(Generation, bool)>> {
    // The step's own timestamp, in the database's precision: `started_at` equals it exactly
    // when this statement set it.
    let now = chrono::SubsecRound::trunc_subsecs(Utc::now(), 6);
    let g = diesel::update(
        generations::table
            .find(id)
            .filter(generations::status.eq_any(ACTIVE)),
    )
    .set((
        generations::status.eq(GenerationStatus::Running),
        generations::started_at.eq(diesel::dsl::sql::<
            diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
        >("COALESCE(started_at, ")
        .bind::<diesel::sql_types::Timestamptz, _>(now)
        .sql(")")),
        generations::attempts.eq(diesel::dsl::sql::<diesel::sql_types::Integer>(
            "attempts + (provider_task_id IS NULL)::int",
        )),
        generations::updated_at.eq(now),
    ))
    .returning(Generation::as_returning())
    .prepared()
    .get_result(conn)
    .await
    .optional()?;
    Ok(g.map(|g| {
        let started_now = g.started_at == Some(now);
        (g, started_now)
    }))
}

pub async fn set_task(conn: &mut AsyncPgConnection, id: Uuid, task_id: &str) -> QueryResult<usize> {
    diesel::update(
        generations::table
            .find(id)
            .filter(generations::provider_task_id.is_null()),
    )
    .set((
        generations::provider_task_id.eq(task_id),
        generations::updated_at.eq(Utc::now()),
    ))
    .prepared()
    .execute(conn)
    .await
}

pub async fn set_progress(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    progress: i16,
) -> QueryResult<usize> {
    diesel::update(
        generations::table
            .find(id)
            .filter(generations::status.eq(GenerationStatus::Running)),
    )
    .set((
        generations::progress.eq(progress),
        generations::updated_at.eq(Utc::now()),
    ))
    .prepared()
    .execute(conn)
    .await
}

/// running → succeeded with the stored result.
pub async fn mark_succeeded(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    result_key: &str,
    width: i32,
    height: i32,
) -> QueryResult<Option<Generation>> {
    let now = Utc::now();
    diesel::update(
        generations::table
            .find(id)
            .filter(generations::status.eq_any(ACTIVE)),
    )
    .set((
        generations::status.eq(GenerationStatus::Succeeded),
        generations::result_key.eq(result_key),
        generations::result_width.eq(width),
        generations::result_height.eq(height),
        generations::progress.eq(100),
        generations::finished_at.eq(now),
        generations::updated_at.eq(now),
    ))
    .returning(Generation::as_returning())
    .prepared()
    .get_result(conn)
    .await
    .optional()
}

/// An active generation → `failed` or `canceled`; `None` when it had already finished.
pub async fn mark_finished_unsuccessfully(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    status: GenerationStatus,
    error_code: &str,
    error_message: &str,
) -> QueryResult<Option<Generation>> {
    let now = Utc::now();
    diesel::update(
        generations::table
            .find(id)
            .filter(generations::status.eq_any(ACTIVE)),
    )
    .set((
        generations::status.eq(status),
        generations::error_code.eq(error_code),
        generations::error_message.eq(error_message),
        generations::finished_at.eq(now),
        generations::updated_at.eq(now),
    ))
    .returning(Generation::as_returning())
    .prepared()
    .get_result(conn)
    .await
    .optional()
}

/// Locks one of the user's generations they have not deleted (for deleting it).
pub async fn lock_owned(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    id: Uuid,
) -> QueryResult<Option<Generation>> {
    generations::table
        .filter(generations::id.eq(id))
        .filter(generations::user_id.eq(user_id))
        .filter(generations::deleted_at.is_null())
        .for_update()
        .select(Generation::as_select())
        .first(conn)
        .await
        .optional()
}

/// The user deleted a finished generation: its result, prompt and error go, the row stays
/// hidden (the hourly limit still counts it) until the retention sweep removes it.
pub async fn mark_deleted(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    now: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::update(
        generations::table
            .find(id)
            .filter(generations::status.ne_all(ACTIVE)),
    )
    .set((
        generations::deleted_at.eq(now),
        generations::result_key.eq(None::<String>),
        generations::result_width.eq(None::<i32>),
        generations::result_height.eq(None::<i32>),
        generations::prompt.eq(""),
        generations::error_message.eq(None::<String>),
        generations::updated_at.eq(now),
    ))
    .prepared()
    .execute(conn)
    .await
}

/// Whether a queued or running generation takes `upload_id` as an input.
pub async fn active_using_upload(
    conn: &mut AsyncPgConnection,
    upload_id: Uuid,
) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        generations::table
            .filter(generations::status.eq_any(ACTIVE))
            .filter(
                generations::person_upload_id
                    .eq(upload_id)
                    .or(generations::item_upload_id.eq(upload_id))
                    .or(generations::source_upload_id.eq(upload_id)),
            ),
    ))
    .get_result(conn)
    .await
}

/// Locks up to `limit` finished generations created at or before `cutoff` (the retention
/// sweep's batch), skipping rows another sweeper holds; returns their ids and result keys.
pub async fn lock_expired(
    conn: &mut AsyncPgConnection,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<(Uuid, Option<String>)>> {
    generations::table
        .filter(generations::status.eq_any(GenerationStatus::FINISHED))
        .filter(generations::created_at.le(cutoff))
        .order(generations::created_at)
        .limit(limit)
        .for_update()
        .skip_locked()
        .select((generations::id, generations::result_key))
        .load(conn)
        .await
}

pub async fn delete(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> QueryResult<usize> {
    diesel::delete(generations::table.filter(generations::id.eq_any(ids)))
        .execute(conn)
        .await
}
