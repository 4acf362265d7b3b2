//! Notices to users (`notices`, one row per event, sent once) and each user's choice of them
//! (`notice_settings`; no row means the defaults: notices on, "free actions are back" off).

use crate::domain::ids::UserId;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

use super::schema::{notice_settings, notices};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = notices)]
pub struct Notice {
    pub key: String,
    pub user_id: UserId,
    pub kind: String,
    pub args: Value,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

/// A user's notice choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choices {
    pub notices: bool,
    pub free_actions_back: bool,
}

impl Default for Choices {
    fn default() -> Self {
        Self {
            notices: true,
            free_actions_back: false,
        }
    }
}

/// Records notice `key`; false when it was recorded before (the event was seen already).
pub async fn insert(
    conn: &mut AsyncPgConnection,
    key: &str,
    user_id: UserId,
    kind: &str,
    args: &Value,
) -> QueryResult<bool> {
    let inserted = diesel::insert_into(notices::table)
        .values((
            notices::key.eq(key),
            notices::user_id.eq(user_id),
            notices::kind.eq(kind),
            notices::args.eq(args),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(inserted == 1)
}

pub async fn find(conn: &mut AsyncPgConnection, key: &str) -> QueryResult<Option<Notice>> {
    notices::table
        .find(key)
        .select(Notice::as_select())
        .first(conn)
        .await
        .optional()
}

/// Claims notice `key` for sending; false when it was claimed before (sent, or being sent).
pub async fn claim(conn: &mut AsyncPgConnection, key: &str) -> QueryResult<bool> {
    let claimed = diesel::update(notices::table.find(key).filter(notices::sent_at.is_null()))
        .set(notices::sent_at.eq(Utc::now()))
        .execute(conn)
        .await?;
    Ok(claimed == 1)
}

/// Gives a claim back (Telegram asked us to try again later).
pub async fn unclaim(conn: &mut AsyncPgConnection, key: &str) -> QueryResult<()> {
    diesel::update(notices::table.find(key))
        .set(notices::sent_at.eq(None::<DateTime<Utc>>))
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn choices(conn: &mut AsyncPgConnection, user_id: UserId) -> QueryResult<Choices> {
    Ok(notice_settings::table
        .find(user_id)
        .select((notice_settings::notices, notice_settings::free_actions_back))
        .first::<(bool, bool)>(conn)
        .await
        .optional()?
        .map_or_else(Choices::default, |(notices, free_actions_back)| Choices {
            notices,
            free_actions_back,
        }))
}

/// Changes the choices given (None keeps one as it is); returns them all.
pub async fn set_choices(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    notices: Option<bool>,
    free_actions_back: Option<bool>,
) -> QueryResult<Choices> {
    let current = choices(conn, user_id).await?;
    let next = Choices {
        notices: notices.unwrap_or(current.notices),
        free_actions_back: free_actions_back.unwrap_or(current.free_actions_back),
    };
    diesel::insert_into(notice_settings::table)
        .values((
            notice_settings::user_id.eq(user_id),
            notice_settings::notices.eq(next.notices),
            notice_settings::free_actions_back.eq(next.free_actions_back),
        ))
        .on_conflict(notice_settings::user_id)
        .do_update()
        .set((
            notice_settings::notices.eq(next.notices),
            notice_settings::free_actions_back.eq(next.free_actions_back),
            notice_settings::updated_at.eq(Utc::now()),
        ))
        .execute(conn)
        .await?;
    Ok(next)
}

#[derive(QueryableByName)]
struct Due {
    #[diesel(sql_type = diesel::sql_types::Text)]
    key: String,
}

/// Records a "free actions are back" notice, once per month, for each user who opted in and
/// used free actions in an earlier month (their allowance is whole again); returns the keys.
pub async fn insert_free_actions_back(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    free_limit: i32,
) -> QueryResult<Vec<String>> {
    let rows: Vec<Due> = diesel::sql_query(
        "INSERT INTO notices (key, user_id, kind, args) \
         SELECT 'free_actions_back:' || u.id || ':' || to_char($1 AT TIME ZONE 'UTC', 'YYYY-MM'), \
                u.id, 'free_actions_back', jsonb_build_object('free', $2) \
         FROM users u JOIN notice_settings s ON s.user_id = u.id \
         WHERE s.free_actions_back AND s.notices AND u.erased_at IS NULL AND NOT u.is_blocked \
           AND u.free_actions_used > 0 \
           AND u.free_period_start < date_trunc('month', $1 AT TIME ZONE 'UTC')::date \
         ON CONFLICT (key) DO NOTHING \
         RETURNING key",
    )
    .bind::<diesel::sql_types::Timestamptz, _>(now)
    .bind::<diesel::sql_types::Integer, _>(free_limit)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.key).collect())
}

/// Erasure: the user's notice choices and every notice kept for them (their amounts and
/// events). An erased account has no events left to be noticed twice.
pub async fn forget(conn: &mut AsyncPgConnection, user_id: UserId) -> QueryResult<()> {
    diesel::delete(notices::table.filter(notices::user_id.eq(user_id)))
        .execute(conn)
        .await?;
    diesel::delete(notice_settings::table.filter(notice_settings::user_id.eq(user_id)))
        .execute(conn)
        .await?;
    Ok(())
}
