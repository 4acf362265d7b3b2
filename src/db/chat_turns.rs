//! Chat turns: one paid exchange with the assistant. Its state changes are guarded by
//! the turn being pending, so a turn is completed or failed once, whoever gets there first (the
//! request, or the sweeper that refunds turns a crash left pending). Rows hold numbers, not text,
//! and outlive their session: they are what token and cost figures are computed from.

use crate::domain::ids::UserId;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::Prepare as _;
use super::schema::chat_turns;
use crate::domain::assistant::Usage;
use crate::domain::vocabulary::{PaidWith, TurnStatus};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = chat_turns)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct ChatTurn {
    pub id: Uuid,
    pub user_id: UserId,
    pub session_id: Option<Uuid>,
    pub status: TurnStatus,
    pub client_request_id: String,
    pub charge_key: String,
    pub credits_spent: i64,
    pub paid_with: PaidWith,
    pub model: String,
    pub attempts: i32,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cost_usd_micros: i64,
    pub error_code: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// See [`crate::domain::idempotency`].
    pub request_fingerprint: Option<String>,
}

pub async fn insert(conn: &mut AsyncPgConnection, turn: &ChatTurn) -> QueryResult<ChatTurn> {
    diesel::insert_into(chat_turns::table)
        .values(turn)
        .returning(ChatTurn::as_returning())
        .prepared()
        .get_result(conn)
        .await
}

pub async fn find_by_client_request(
    mut conn: &AsyncPgConnection,
    user_id: UserId,
    client_request_id: &str,
) -> QueryResult<Option<ChatTurn>> {
    chat_turns::table
        .filter(chat_turns::user_id.eq(user_id))
        .filter(chat_turns::client_request_id.eq(client_request_id))
        .select(ChatTurn::as_select())
        .first(&mut conn)
        .await
        .optional()
}

pub async fn has_pending_in_session(
    conn: &mut AsyncPgConnection,
    session_id: Uuid,
) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        chat_turns::table
            .filter(chat_turns::session_id.eq(session_id))
            .filter(chat_turns::status.eq(TurnStatus::Pending)),
    ))
    .get_result(conn)
    .await
}

pub async fn pending_for_user(conn: &mut AsyncPgConnection, user_id: UserId) -> QueryResult<i64> {
    chat_turns::table
        .filter(chat_turns::user_id.eq(user_id))
        .filter(chat_turns::status.eq(TurnStatus::Pending))
        .count()
        .get_result(conn)
        .await
}

/// Records the outcome of a pending turn; returns the rows changed (0: it was settled already).
pub async fn finish(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    error_code: Option<&str>,
    attempts: u32,
    usage: Usage,
    now: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::update(
        chat_turns::table
            .filter(chat_turns::id.eq(id))
            .filter(chat_turns::status.eq(TurnStatus::Pending)),
    )
    .set((
        chat_turns::status.eq(if error_code.is_some() {
            TurnStatus::Failed
        } else {
            TurnStatus::Completed
        }),
        chat_turns::error_code.eq(error_code),
        chat_turns::attempts.eq(i32::try_from(attempts).unwrap_or(i32::MAX)),
        chat_turns::prompt_tokens.eq(usage.prompt_tokens),
        chat_turns::completion_tokens.eq(usage.completion_tokens),
        chat_turns::cost_usd_micros.eq(usage.cost_usd_micros),
        chat_turns::finished_at.eq(now),
    ))
    .prepared()
    .execute(conn)
    .await
}

/// Locks up to `limit` turns still pending since before `cutoff`, skipping locked rows.
pub async fn lock_stale(
    conn: &mut AsyncPgConnection,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<ChatTurn>> {
    chat_turns::table
        .filter(chat_turns::status.eq(TurnStatus::Pending))
        .filter(chat_turns::created_at.lt(cutoff))
        .order(chat_turns::created_at)
        .limit(limit)
        .for_update()
        .skip_locked()
        .select(ChatTurn::as_select())
        .load(conn)
        .await
}

/// Token and cost figures of the turns started in `[since, until)`, for the admin statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Queryable)]
pub struct UsageTotals {
    pub turns: i64,
    pub completed: i64,
    pub failed: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cost_usd_micros: i64,
}

pub async fn usage_totals(
    conn: &mut AsyncPgConnection,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> QueryResult<UsageTotals> {
    use diesel::dsl::sql;
    use diesel::sql_types::{BigInt, Text};
    chat_turns::table
        .filter(chat_turns::created_at.ge(since))
        .filter(chat_turns::created_at.lt(until))
        .select(
            sql::<(BigInt, BigInt, BigInt, BigInt, BigInt, BigInt)>(
                "count(*), count(*) FILTER (WHERE status = ",
            )
            .bind::<Text, _>(TurnStatus::Completed)
            .sql("), count(*) FILTER (WHERE status = ")
            .bind::<Text, _>(TurnStatus::Failed)
            .sql(
                "), COALESCE(sum(prompt_tokens), 0)::int8, \
                 COALESCE(sum(completion_tokens), 0)::int8, \
                 COALESCE(sum(cost_usd_micros), 0)::int8",
            ),
        )
        .get_result(conn)
        .await
}
