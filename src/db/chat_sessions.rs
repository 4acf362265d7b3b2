//! Chat sessions of the editing assistant: the history in one JSONB array (appended to, and
//! trimmed only by the retention sweep's per-message cut-off), the session's photo, token and
//! cost totals, and the retention sweep's batches. Reads of the history return only what is asked for (the last N messages).

use crate::domain::ids::UserId;
use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{
    BigInt, Bool, Integer, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::Prepare as _;
use super::schema::chat_sessions;
use crate::domain::assistant::{StoredMessage, Usage};
use crate::domain::vocabulary::TurnStatus;

/// A session without its history.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = chat_sessions)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct ChatSession {
    pub id: i64,
    pub user_id: UserId,
    pub session_id: Uuid,
    pub upload_id: Option<Uuid>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cost_usd_micros: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn decode(value: serde_json::Value) -> QueryResult<Vec<StoredMessage>> {
    serde_json::from_value(value).map_err(|e| diesel::result::Error::DeserializationError(e.into()))
}

pub async fn create(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    session_id: Uuid,
    upload_id: Option<Uuid>,
) -> QueryResult<ChatSession> {
    diesel::insert_into(chat_sessions::table)
        .values((
            chat_sessions::user_id.eq(user_id),
            chat_sessions::session_id.eq(session_id),
            chat_sessions::upload_id.eq(upload_id),
        ))
        .returning(ChatSession::as_returning())
        .prepared()
        .get_result(conn)
        .await
}

/// The user's session; another user's is `None`.
pub async fn find_owned(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    session_id: Uuid,
) -> QueryResult<Option<ChatSession>> {
    chat_sessions::table
        .filter(chat_sessions::session_id.eq(session_id))
        .filter(chat_sessions::user_id.eq(user_id))
        .select(ChatSession::as_select())
        .first(conn)
        .await
        .optional()
}

/// As [`find_owned`], locking the row for the rest of the transaction (turns, resets).
pub async fn lock_owned(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    session_id: Uuid,
) -> QueryResult<Option<ChatSession>> {
    chat_sessions::table
        .filter(chat_sessions::session_id.eq(session_id))
        .filter(chat_sessions::user_id.eq(user_id))
        .for_update()
        .select(ChatSession::as_select())
        .first(conn)
        .await
        .optional()
}

/// A session's photo that is still stored.
#[derive(Debug, Clone)]
pub struct Photo {
    pub id: Uuid,
    pub storage_key: String,
    pub expires_at: DateTime<Utc>,
}

/// What a new turn needs from its session, read in one statement with the row locked.
#[derive(Debug, Clone)]
pub struct TurnContext {
    pub photo: Option<Photo>,
    pub message_count: usize,
    /// The last `n` messages, oldest first.
    pub recent: Vec<StoredMessage>,
    /// A turn of this session is waiting for the model.
    pub busy: bool,
    /// Turns of the user waiting for the model, in any session.
    pub user_pending: i64,
}

#[derive(QueryableByName)]
struct ContextRow {
    #[diesel(sql_type = Nullable<SqlUuid>)]
    photo_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<Text>)]
    photo_key: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    photo_expires_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Integer)]
    total: i32,
    #[diesel(sql_type = Jsonb)]
    recent: serde_json::Value,
    #[diesel(sql_type = Bool)]
    busy: bool,
    #[diesel(sql_type = BigInt)]
    user_pending: i64,
}

/// Locks the user's session for a new turn and reads what the turn needs; another user's
/// session is `None`.
pub async fn lock_for_turn(
    mut conn: &AsyncPgConnection,
    user_id: UserId,
    session_id: Uuid,
    n: usize,
) -> QueryResult<Option<TurnContext>> {
    // `'pending'` is spelled out (it is `TurnStatus::Pending`): in this prepared statement a
    // bound status would not match the partial indexes `chat_turns_one_pending_idx` and
    // `chat_turns_user_pending_idx` under a generic plan, and chat_turns has no other index
    // on user_id.
    let row: Option<ContextRow> = diesel::sql_query(
        "SELECT u.id AS photo_id, u.storage_key AS photo_key, u.expires_at AS photo_expires_at, \
                jsonb_array_length(s.messages) AS total, \
                COALESCE((SELECT jsonb_agg(e ORDER BY i) \
                            FROM jsonb_array_elements(s.messages) WITH ORDINALITY AS m(e, i) \
                           WHERE i > jsonb_array_length(s.messages) - $3), '[]'::jsonb) AS recent, \
                EXISTS (SELECT 1 FROM chat_turns t \
                         WHERE t.session_id = s.session_id AND t.status = 'pending') AS busy, \
                (SELECT count(*) FROM chat_turns t \
                  WHERE t.user_id = s.user_id AND t.status = 'pending') AS user_pending \
           FROM chat_sessions s \
           LEFT JOIN uploads u ON u.id = s.upload_id AND u.user_id = s.user_id \
                              AND u.deleted_at IS NULL \
          WHERE s.session_id = $1 AND s.user_id = $2 \
            FOR UPDATE OF s",
    )
    .bind::<SqlUuid, _>(session_id)
    .bind::<diesel::sql_types::Int8, _>(user_id)
    .bind::<Integer, _>(i32::try_from(n).unwrap_or(i32::MAX))
    .prepared()
    .get_result(&mut conn)
    .await
    .optional()?;
    let Some(row) = row else {
        return Ok(None);
    };
    let photo = match (row.photo_id, row.photo_key, row.photo_expires_at) {
        (Some(id), Some(storage_key), Some(expires_at)) => Some(Photo {
            id,
            storage_key,
            expires_at,
        }),
        _ => None,
    };
    Ok(Some(TurnContext {
        photo,
        message_count: usize::try_from(row.total).unwrap_or(0),
        recent: decode(row.recent)?,
        busy: row.busy,
        user_pending: row.user_pending,
    }))
}

#[derive(QueryableByName)]
struct Window {
    #[diesel(sql_type = Integer)]
    total: i32,
    #[diesel(sql_type = Jsonb)]
    recent: serde_json::Value,
}

/// The number of messages and the last `n` of them, oldest first.
pub async fn recent_messages(
    conn: &mut AsyncPgConnection,
    session_id: Uuid,
    n: usize,
) -> QueryResult<(usize, Vec<StoredMessage>)> {
    let window: Window = diesel::sql_query(
        "SELECT jsonb_array_length(messages) AS total, \
                COALESCE((SELECT jsonb_agg(e ORDER BY i) \
                            FROM jsonb_array_elements(messages) WITH ORDINALITY AS t(e, i) \
                           WHERE i > jsonb_array_length(messages) - $2), '[]'::jsonb) AS recent \
           FROM chat_sessions WHERE session_id = $1",
    )
    .bind::<SqlUuid, _>(session_id)
    .bind::<Integer, _>(i32::try_from(n).unwrap_or(i32::MAX))
    .get_result(conn)
    .await?;
    Ok((
        usize::try_from(window.total).unwrap_or(0),
        decode(window.recent)?,
    ))
}

/// The whole history, oldest first.
pub async fn messages(
    conn: &mut AsyncPgConnection,
    session_id: Uuid,
) -> QueryResult<Vec<StoredMessage>> {
    let value: serde_json::Value = chat_sessions::table
        .filter(chat_sessions::session_id.eq(session_id))
        .select(chat_sessions::messages)
        .first(conn)
        .await?;
    decode(value)
}

/// The assistant message a turn wrote, if the history still holds it.
pub async fn reply_of_turn(
    conn: &mut AsyncPgConnection,
    session_id: Uuid,
    turn_id: Uuid,
) -> QueryResult<Option<StoredMessage>> {
    #[derive(QueryableByName)]
    struct Found {
        #[diesel(sql_type = Jsonb)]
        message: serde_json::Value,
    }
    let found: Option<Found> = diesel::sql_query(
        "SELECT e AS message FROM chat_sessions, jsonb_array_elements(messages) AS e \
          WHERE session_id = $1 AND e->>'turn_id' = $2 AND e->>'role' = 'assistant' LIMIT 1",
    )
    .bind::<SqlUuid, _>(session_id)
    .bind::<Text, _>(turn_id.to_string())
    .get_result(conn)
    .await
    .optional()?;
    found
        .map(|f| serde_json::from_value(f.message))
        .transpose()
        .map_err(|e| diesel::result::Error::DeserializationError(e.into()))
}

/// What a completed turn writes.
pub struct TurnAnswer<'a> {
    pub session_id: Uuid,
    pub turn_id: Uuid,
    /// The user's message and the assistant's answer.
    pub messages: &'a [StoredMessage],
    pub usage: Usage,
    pub attempts: i32,
    /// A photo sent with the message: the session's photo from now on.
    pub new_photo: Option<Uuid>,
    /// The session's photo is kept at least this long (it lives as long as the session).
    pub keep_photo_until: DateTime<Utc>,
    pub now: DateTime<Utc>,
}

/// How writing an answered turn went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnWritten {
    /// History appended, totals counted, the turn completed: all of it or none.
    Completed,
    /// The session was deleted meanwhile: nothing written.
    SessionDeleted,
    /// The turn is no longer pending (the sweeper settled it): nothing written.
    Abandoned,
}

/// Writes an answered turn in one statement (one round trip, atomic on its own): under the
/// session's row lock, completes the pending turn, appends its messages to the history with its
/// usage, sets a new photo, and extends the photo's life when it is more than a day short (a
/// day of slack saves a write per turn). Postgres runs every part of the statement, read or not.
pub async fn complete_turn(
    conn: &mut AsyncPgConnection,
    answer: &TurnAnswer<'_>,
) -> QueryResult<TurnWritten> {
    #[derive(QueryableByName)]
    struct Outcome {
        #[diesel(sql_type = Bool)]
        session_found: bool,
        #[diesel(sql_type = Bool)]
        completed: bool,
    }
    let messages = serde_json::to_value(answer.messages)
        .map_err(|e| diesel::result::Error::SerializationError(e.into()))?;
    let outcome: Outcome = diesel::sql_query(
        "WITH s AS (SELECT session_id FROM chat_sessions WHERE session_id = $1 FOR UPDATE), \
              t AS (UPDATE chat_turns SET status = $11, attempts = $3, \
                           prompt_tokens = $4, completion_tokens = $5, cost_usd_micros = $6, \
                           finished_at = $7 \
                     WHERE id = $2 AND status = $12 AND EXISTS (SELECT 1 FROM s) \
                    RETURNING id), \
              a AS (UPDATE chat_sessions SET messages = messages || $8, \
                           prompt_tokens = prompt_tokens + $4, \
                           completion_tokens = completion_tokens + $5, \
                           cost_usd_micros = cost_usd_micros + $6, \
                           upload_id = COALESCE($9, upload_id), updated_at = $7 \
                     WHERE session_id = $1 AND EXISTS (SELECT 1 FROM t) \
                    RETURNING upload_id), \
              e AS (UPDATE uploads SET expires_at = $10 \
                     WHERE id = (SELECT upload_id FROM a) AND deleted_at IS NULL \
                       AND expires_at < $10 - interval '1 day' \
                    RETURNING id) \
         SELECT EXISTS (SELECT 1 FROM s) AS session_found, EXISTS (SELECT 1 FROM a) AS completed",
    )
    .bind::<SqlUuid, _>(answer.session_id)
    .bind::<SqlUuid, _>(answer.turn_id)
    .bind::<Integer, _>(answer.attempts)
    .bind::<BigInt, _>(answer.usage.prompt_tokens)
    .bind::<BigInt, _>(answer.usage.completion_tokens)
    .bind::<BigInt, _>(answer.usage.cost_usd_micros)
    .bind::<Timestamptz, _>(answer.now)
    .bind::<Jsonb, _>(messages)
    .bind::<Nullable<SqlUuid>, _>(answer.new_photo)
    .bind::<Timestamptz, _>(answer.keep_photo_until)
    .bind::<Text, _>(TurnStatus::Completed)
    .bind::<Text, _>(TurnStatus::Pending)
    .prepared()
    .get_result(conn)
    .await?;
    Ok(match (outcome.session_found, outcome.completed) {
        (_, true) => TurnWritten::Completed,
        (false, false) => TurnWritten::SessionDeleted,
        (true, false) => TurnWritten::Abandoned,
    })
}

/// Empties the history; the session, its photo and its totals stay.
pub async fn reset(
    conn: &mut AsyncPgConnection,
    session_id: Uuid,
    now: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::update(chat_sessions::table.filter(chat_sessions::session_id.eq(session_id)))
        .set((
            chat_sessions::messages.eq(serde_json::json!([])),
            chat_sessions::updated_at.eq(now),
        ))
        .prepared()
        .execute(conn)
        .await
}

/// Deletes a session that has no message (one whose first turn failed).
pub async fn delete_if_empty(conn: &mut AsyncPgConnection, session_id: Uuid) -> QueryResult<usize> {
    diesel::delete(
        chat_sessions::table
            .filter(chat_sessions::session_id.eq(session_id))
            .filter(sql::<diesel::sql_types::Bool>(
                "jsonb_array_length(messages) = 0",
            )),
    )
    .execute(conn)
    .await
}

/// A session as the list shows it.
#[derive(Debug, Clone, QueryableByName)]
pub struct SessionSummary {
    #[diesel(sql_type = SqlUuid)]
    pub session_id: Uuid,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    pub upload_id: Option<Uuid>,
    #[diesel(sql_type = Integer)]
    pub message_count: i32,
    #[diesel(sql_type = Nullable<Text>)]
    pub last_message: Option<String>,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    pub updated_at: DateTime<Utc>,
}

/// A page of the user's sessions, most recently active first, strictly after `before`.
pub async fn list(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    before: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> QueryResult<Vec<SessionSummary>> {
    let (before_at, before_id) = match before {
        Some((at, id)) => (Some(at), Some(id)),
        None => (None, None),
    };
    diesel::sql_query(
        "SELECT session_id, upload_id, jsonb_array_length(messages) AS message_count, \
                messages->-1->>'content' AS last_message, created_at, updated_at \
           FROM chat_sessions \
          WHERE user_id = $1 \
            AND ($2::timestamptz IS NULL OR (updated_at, session_id) < ($2, $3)) \
          ORDER BY updated_at DESC, session_id DESC \
          LIMIT $4",
    )
    .bind::<diesel::sql_types::Int8, _>(user_id)
    .bind::<Nullable<Timestamptz>, _>(before_at)
    .bind::<Nullable<SqlUuid>, _>(before_id)
    .bind::<diesel::sql_types::Int8, _>(limit)
    .load(conn)
    .await
}

/// Locks up to `limit` sessions untouched since `cutoff`; rows locked by another sweeper are
/// skipped.
pub async fn lock_expired(
    conn: &mut AsyncPgConnection,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<ChatSession>> {
    chat_sessions::table
        .filter(chat_sessions::updated_at.le(cutoff))
        .order(chat_sessions::updated_at)
        .limit(limit)
        .for_update()
        .skip_locked()
        .select(ChatSession::as_select())
        .load(conn)
        .await
}

pub async fn delete(conn: &mut AsyncPgConnection, ids: &[i64]) -> QueryResult<usize> {
    diesel::delete(chat_sessions::table.filter(chat_sessions::id.eq_any(ids)))
        .execute(conn)
        .await
}

/// Which of `upload_ids` a session still uses.
pub async fn uploads_in_use(
    conn: &mut AsyncPgConnection,
    upload_ids: &[Uuid],
) -> QueryResult<Vec<Uuid>> {
    chat_sessions::table
        .filter(chat_sessions::upload_id.eq_any(upload_ids))
        .select(chat_sessions::upload_id.assume_not_null())
        .distinct()
        .load(conn)
        .await
}

/// Removes the messages written at or before `cutoff` from up to `limit` sessions, also from
/// sessions still in use (retention is per message); rows another sweeper holds are skipped.
/// `updated_at` stays: trimming is not activity. Returns how many sessions were trimmed.
pub async fn trim_messages_before(
    conn: &mut AsyncPgConnection,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> QueryResult<usize> {
    diesel::sql_query(
        "WITH due AS (SELECT id FROM chat_sessions s \
                       WHERE s.created_at <= $1 \
                         AND EXISTS (SELECT 1 FROM jsonb_array_elements(s.messages) AS m(e) \
                                      WHERE (e->>'timestamp')::timestamptz <= $1) \
                       ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED) \
         UPDATE chat_sessions c \
            SET messages = COALESCE((SELECT jsonb_agg(e ORDER BY i) \
                                       FROM jsonb_array_elements(c.messages) WITH ORDINALITY AS m(e, i) \
                                      WHERE (e->>'timestamp')::timestamptz > $1), '[]'::jsonb) \
           FROM due WHERE c.id = due.id",
    )
    .bind::<Timestamptz, _>(cutoff)
    .bind::<BigInt, _>(limit)
    .execute(conn)
    .await
}
