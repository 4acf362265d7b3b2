//! Users: the login upsert and look-ups.

use crate::domain::ids::{TelegramId, UserId};
use diesel::prelude::*;
use diesel::sql_types::{Bool, Bytea, Int8, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::Prepare as _;
use super::models::User;
use super::schema::users;

/// Profile fields refreshed from Telegram at every login.
#[derive(Debug, Clone)]
pub struct Profile {
    pub telegram_id: TelegramId,
    pub username: Option<String>,
    pub first_name: String,
    pub last_name: Option<String>,
    pub language_code: Option<String>,
    pub is_premium: bool,
    pub photo_url: Option<String>,
    pub allows_write_to_pm: bool,
}

#[derive(QueryableByName)]
struct UpsertRow {
    #[diesel(embed)]
    user: User,
    #[diesel(sql_type = Bool)]
    inserted: bool,
    #[diesel(sql_type = Bool)]
    erased_before: bool,
}

/// What a login did to the users table.
#[derive(Debug)]
pub struct LoggedIn {
    pub user: User,
    /// The row was created now.
    pub created: bool,
    /// This Telegram account erased an earlier account (`erased_identities`): a new row, but
    /// not a new person, so no referrer was recorded and no signup bonus is due.
    pub erased_before: bool,
}

/// Inserts the user or refreshes their profile and `last_seen_at`. A new user whose
/// `referrer_code` belongs to another user gets `referred_by` set, unless `identity` (the
/// account's `auth::identity_hash`) erased an account before; an existing user's referrer never
/// changes. A new account of an identity that erased one takes over the free actions it had
/// used (`erased_identities.free_actions_used` for its period) and its block: erasing gives
/// nothing new.
/// One statement.
pub async fn upsert_from_login(
    conn: &mut AsyncPgConnection,
    profile: &Profile,
    new_referral_code: &str,
    referrer_code: Option<&str>,
    identity: &[u8],
) -> QueryResult<LoggedIn> {
    let row: UpsertRow = diesel::sql_query(
        "INSERT INTO users (telegram_id, username, first_name, last_name, language_code, is_premium, \
                            photo_url, allows_write_to_pm, referral_code, referred_by, \
                            free_actions_used, free_period_start, is_blocked) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
                 (SELECT id FROM users WHERE referral_code = $10 AND telegram_id <> $1 \
                     AND NOT EXISTS (SELECT 1 FROM erased_identities WHERE identity_hash = $11)), \
                 COALESCE((SELECT free_actions_used FROM erased_identities WHERE identity_hash = $11), 0), \
                 COALESCE((SELECT free_period_start FROM erased_identities WHERE identity_hash = $11), \
                          date_trunc('month', now() AT TIME ZONE 'UTC')::date), \
                 COALESCE((SELECT blocked FROM erased_identities WHERE identity_hash = $11), false)) \
         ON CONFLICT (telegram_id) DO UPDATE SET \
             username = EXCLUDED.username, first_name = EXCLUDED.first_name, \
             last_name = EXCLUDED.last_name, language_code = EXCLUDED.language_code, \
             is_premium = EXCLUDED.is_premium, photo_url = EXCLUDED.photo_url, \
             allows_write_to_pm = EXCLUDED.allows_write_to_pm, \
             last_seen_at = now(), updated_at = now() \
         RETURNING id, telegram_id, username, first_name, last_name, language_code, is_premium, \
                   photo_url, allows_write_to_pm, balance_credits, subscription_plan, \
                   subscription_until, free_actions_used, free_period_start, referral_code, \
                   referred_by, is_blocked, created_at, updated_at, last_seen_at, erased_at, \
                   (xmax = 0) AS inserted, \
                   EXISTS (SELECT 1 FROM erased_identities WHERE identity_hash = $11) AS erased_before",
    )
    .bind::<Int8, _>(profile.telegram_id)
    .bind::<Nullable<Text>, _>(profile.username.as_deref())
    .bind::<Text, _>(&profile.first_name)
    .bind::<Nullable<Text>, _>(profile.last_name.as_deref())
    .bind::<Nullable<Text>, _>(profile.language_code.as_deref())
    .bind::<Bool, _>(profile.is_premium)
    .bind::<Nullable<Text>, _>(profile.photo_url.as_deref())
    .bind::<Bool, _>(profile.allows_write_to_pm)
    .bind::<Text, _>(new_referral_code)
    .bind::<Nullable<Text>, _>(referrer_code)
    .bind::<Bytea, _>(identity)
    .prepared()
    .get_result(conn)
    .await?;
    Ok(LoggedIn {
        user: row.user,
        created: row.inserted,
        erased_before: row.erased_before,
    })
}

pub async fn find_by_telegram_id(
    conn: &mut AsyncPgConnection,
    telegram_id: TelegramId,
) -> QueryResult<Option<User>> {
    users::table
        .filter(users::telegram_id.eq(telegram_id))
        .select(User::as_select())
        .first(conn)
        .await
        .optional()
}

/// A user by Telegram username, without the `@`, ignoring case (usernames are unique in
/// Telegram, but a rename can leave an old holder in our table: the most recently seen wins).
pub async fn find_by_username(
    conn: &mut AsyncPgConnection,
    username: &str,
) -> QueryResult<Option<User>> {
    users::table
        .filter(
            diesel::dsl::sql::<Bool>("lower(username) = lower(")
                .bind::<Text, _>(username)
                .sql(")"),
        )
        .order(users::last_seen_at.desc())
        .select(User::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn find(conn: &mut AsyncPgConnection, id: UserId) -> QueryResult<User> {
    users::table
        .find(id)
        .select(User::as_select())
        .first(conn)
        .await
}

/// Locks the user's row for the rest of the transaction: per-user limits are checked under it.
pub async fn lock(conn: &mut AsyncPgConnection, id: UserId) -> QueryResult<User> {
    users::table
        .find(id)
        .for_update()
        .select(User::as_select())
        .first(conn)
        .await
}

/// Sets the user's plan and its end (the caller holds the row lock and decides the dates).
pub async fn set_subscription(
    conn: &mut AsyncPgConnection,
    id: UserId,
    plan: Option<&str>,
    until: Option<chrono::DateTime<chrono::Utc>>,
) -> QueryResult<usize> {
    diesel::update(users::table.find(id))
        .set((
            users::subscription_plan.eq(plan),
            users::subscription_until.eq(until),
            users::updated_at.eq(chrono::Utc::now()),
        ))
        .prepared()
        .execute(conn)
        .await
}

/// Locks the user owning `code`, if any. Taken before a referred user is inserted: the insert's
/// foreign-key check share-locks the referrer, and two signups that both then asked for the
/// referrer's row lock (to pay the bonus) would deadlock.
pub async fn lock_by_referral_code(
    conn: &mut AsyncPgConnection,
    code: &str,
) -> QueryResult<Option<UserId>> {
    users::table
        .filter(users::referral_code.eq(code))
        .for_update()
        .select(users::id)
        .first(conn)
        .await
        .optional()
}

pub async fn set_blocked(
    conn: &mut AsyncPgConnection,
    id: UserId,
    blocked: bool,
) -> QueryResult<usize> {
    diesel::update(users::table.find(id))
        .set((
            users::is_blocked.eq(blocked),
            users::updated_at.eq(diesel::dsl::now),
        ))
        .prepared()
        .execute(conn)
        .await
}
