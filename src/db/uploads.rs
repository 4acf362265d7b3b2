//! Uploaded photos: insert, owner look-ups, and the retention sweep's batches.

use crate::domain::ids::UserId;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::Prepare as _;
use super::models::Upload;
use super::schema::uploads;

pub async fn insert(conn: &mut AsyncPgConnection, upload: &Upload) -> QueryResult<Upload> {
    diesel::insert_into(uploads::table)
        .values(upload)
        .returning(Upload::as_returning())
        .prepared()
        .get_result(conn)
        .await
}

/// A live upload of this user; another user's id, or an erased upload, is `None`.
pub async fn find_owned(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    id: Uuid,
) -> QueryResult<Option<Upload>> {
    uploads::table
        .filter(uploads::id.eq(id))
        .filter(uploads::user_id.eq(user_id))
        .filter(uploads::deleted_at.is_null())
        .select(Upload::as_select())
        .first(conn)
        .await
        .optional()
}

/// Locks up to `limit` expired, not yet erased uploads; rows locked by another sweeper are skipped.
pub async fn lock_expired(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<Upload>> {
    uploads::table
        .filter(uploads::deleted_at.is_null())
        .filter(uploads::expires_at.le(now))
        .order(uploads::expires_at)
        .limit(limit)
        .for_update()
        .skip_locked()
        .select(Upload::as_select())
        .load(conn)
        .await
}

pub async fn mark_deleted(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
    now: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::update(uploads::table.filter(uploads::id.eq_any(ids)))
        .set(uploads::deleted_at.eq(now))
        .prepared()
        .execute(conn)
        .await
}

/// The user's uploads not erased yet, newest first.
pub async fn list_for_user(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
) -> QueryResult<Vec<Upload>> {
    uploads::table
        .filter(uploads::user_id.eq(user_id))
        .filter(uploads::deleted_at.is_null())
        .order(uploads::created_at.desc())
        .select(Upload::as_select())
        .load(conn)
        .await
}

/// Keeps a live upload at least until `until` (a chat session's photo lives as long as it).
pub async fn extend_expiry(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    until: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::update(
        uploads::table
            .filter(uploads::id.eq(id))
            .filter(uploads::deleted_at.is_null())
            .filter(uploads::expires_at.lt(until)),
    )
    .set(uploads::expires_at.eq(until))
    .prepared()
    .execute(conn)
    .await
}

/// Locks the live uploads among `ids` (for erasing them).
pub async fn lock_live(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> QueryResult<Vec<Upload>> {
    uploads::table
        .filter(uploads::id.eq_any(ids))
        .filter(uploads::deleted_at.is_null())
        .for_update()
        .select(Upload::as_select())
        .load(conn)
        .await
}

/// Locks a live upload of this user (for erasing it at their request).
pub async fn lock_owned(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    id: Uuid,
) -> QueryResult<Option<Upload>> {
    uploads::table
        .filter(uploads::id.eq(id))
        .filter(uploads::user_id.eq(user_id))
        .filter(uploads::deleted_at.is_null())
        .for_update()
        .select(Upload::as_select())
        .first(conn)
        .await
        .optional()
}
