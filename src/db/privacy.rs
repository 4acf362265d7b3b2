//! Erasure of a user's personal data (`DELETE /api/v1/me`). The caller owns the transaction
//! and deletes the objects whose keys come back. The user row itself stays, anonymised: the
//! ledger (and payments) keep pointing at it for the tax records, but nothing in it leads back
//! to a person, and the next login with the same Telegram account starts a fresh one.

use crate::domain::ids::{TelegramId, UserId};
use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Int8, Jsonb, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::Prepare as _;
use super::schema::{
    chat_sessions, erased_identities, generations, payment_events, payments, uploads, users,
};
use crate::domain::vocabulary::PaymentProviderName;

/// Deletes the user's generations; returns the storage keys of their results.
pub async fn delete_generations(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
) -> QueryResult<Vec<Option<String>>> {
    diesel::delete(generations::table.filter(generations::user_id.eq(user_id)))
        .returning(generations::result_key)
        .get_results(conn)
        .await
}

/// Deletes the user's chat sessions (their history); returns how many. Their turns' token
/// accounting stays, detached (`session_id` becomes null).
pub async fn delete_chat_sessions(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
) -> QueryResult<usize> {
    diesel::delete(chat_sessions::table.filter(chat_sessions::user_id.eq(user_id)))
        .execute(conn)
        .await
}

/// Deletes the user's upload rows; returns the keys of objects not erased yet.
pub async fn delete_uploads(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
) -> QueryResult<Vec<(String, Option<DateTime<Utc>>)>> {
    diesel::delete(uploads::table.filter(uploads::user_id.eq(user_id)))
        .returning((uploads::storage_key, uploads::deleted_at))
        .get_results(conn)
        .await
}

/// What an erased account had used of the limits that erasing must not reset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carried {
    /// The account was blocked: so is the next one.
    pub blocked: bool,
    pub free_actions_used: i32,
    pub free_period_start: NaiveDate,
    /// Creation times of its generations within the hourly task limit's window.
    pub recent_generations: Vec<DateTime<Utc>>,
}

/// Remembers that the Telegram account behind `identity` (`auth::identity_hash`) erased an
/// account, so that signing up again is not a new person's signup, and what that account had
/// used (`carried`, replacing what an earlier erasure left: the account erased now started
/// from it).
pub async fn remember_erased_identity(
    conn: &mut AsyncPgConnection,
    identity: &[u8],
    carried: &Carried,
) -> QueryResult<usize> {
    diesel::insert_into(erased_identities::table)
        .values((
            erased_identities::identity_hash.eq(identity),
            erased_identities::blocked.eq(carried.blocked),
            erased_identities::free_actions_used.eq(carried.free_actions_used),
            erased_identities::free_period_start.eq(carried.free_period_start),
            erased_identities::recent_generations.eq(&carried.recent_generations),
        ))
        .on_conflict(erased_identities::identity_hash)
        .do_update()
        .set((
            erased_identities::erased_at.eq(diesel::dsl::now),
            erased_identities::blocked.eq(carried.blocked),
            erased_identities::free_actions_used.eq(carried.free_actions_used),
            erased_identities::free_period_start.eq(carried.free_period_start),
            erased_identities::recent_generations.eq(&carried.recent_generations),
        ))
        .execute(conn)
        .await
}

/// Creation times, after `since`, of the generations of accounts `identity` erased.
pub async fn carried_generation_times(
    conn: &mut AsyncPgConnection,
    identity: &[u8],
    since: DateTime<Utc>,
) -> QueryResult<Vec<DateTime<Utc>>> {
    let times: Option<Vec<DateTime<Utc>>> = erased_identities::table
        .find(identity)
        .select(erased_identities::recent_generations)
        .first(conn)
        .await
        .optional()?;
    Ok(times
        .unwrap_or_default()
        .into_iter()
        .filter(|t| *t > since)
        .collect())
}

#[derive(QueryableByName)]
struct EventBody {
    #[diesel(sql_type = Int8)]
    id: i64,
    #[diesel(sql_type = Jsonb)]
    body: serde_json::Value,
}

/// Rewrites the raw bodies of the user's payment notifications (`payment_events`) with
/// `anonymise`: a Stars update names the payer, a YooKassa payment carries card details. The
/// user's events are those of their payments' provider ids (a YooKassa refund by the payment id
/// it names), and Telegram updates sent by them. Returns how many were rewritten.
pub async fn anonymise_payment_events(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    telegram_id: TelegramId,
    anonymise: impl Fn(&serde_json::Value) -> serde_json::Value,
) -> QueryResult<usize> {
    let rows: Vec<EventBody> = diesel::sql_query(
        "SELECT e.id, e.body FROM payment_events e \
          WHERE EXISTS (SELECT 1 FROM payments p \
                         WHERE p.user_id = $1 AND p.provider = e.provider \
                           AND p.provider_payment_id IS NOT NULL \
                           AND p.provider_payment_id IN (e.object_id, e.body->'object'->>'payment_id')) \
             OR (e.provider = $3 AND e.body->'message'->'from'->>'id' = $2) \
          ORDER BY e.id FOR UPDATE",
    )
    .bind::<Int8, _>(user_id)
    .bind::<Text, _>(telegram_id.to_string())
    .bind::<Text, _>(PaymentProviderName::TelegramStars)
    .load(conn)
    .await?;
    for row in &rows {
        diesel::update(payment_events::table.find(row.id))
            .set(payment_events::body.eq(anonymise(&row.body)))
            .execute(conn)
            .await?;
    }
    Ok(rows.len())
}

/// The sandbox provider's copies of the user's payment requests lose their receipt contact
/// (email or phone); amounts, ids and the rest stay. Returns how many changed.
pub async fn scrub_sandbox_payments(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
) -> QueryResult<usize> {
    diesel::sql_query(
        "UPDATE sandbox_payments SET request = request #- '{receipt,customer}' \
          WHERE idempotence_key IN (SELECT idempotency_key FROM payments WHERE user_id = $1) \
            AND request #> '{receipt,customer}' IS NOT NULL",
    )
    .bind::<Int8, _>(user_id)
    .execute(conn)
    .await
}

/// Clears the profile and frees the Telegram id (it becomes the row's negated id, which no
/// Telegram account has), so that the next login creates a new account.
pub async fn anonymise_user(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    now: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::update(users::table.find(user_id))
        .set((
            users::telegram_id.eq(TelegramId(-user_id.get())),
            users::username.eq(None::<String>),
            users::first_name.eq(""),
            users::last_name.eq(None::<String>),
            users::language_code.eq(None::<String>),
            users::photo_url.eq(None::<String>),
            users::is_premium.eq(false),
            users::allows_write_to_pm.eq(false),
            users::referral_code.eq(format!("erased_{user_id}")),
            users::erased_at.eq(now),
            users::updated_at.eq(now),
        ))
        .prepared()
        .execute(conn)
        .await
}

/// Payments stay for the tax records; the receipt contact (email or phone) kept in a payment's
/// provider request goes.
pub async fn scrub_payments(conn: &mut AsyncPgConnection, user_id: UserId) -> QueryResult<usize> {
    diesel::update(payments::table.filter(payments::user_id.eq(user_id)))
        .set(payments::create_request.eq(None::<serde_json::Value>))
        .prepared()
        .execute(conn)
        .await
}
