//! Erasure of a user's personal data (`DELETE /api/v1/me`). The caller owns the transaction
//! and deletes the objects whose keys come back. The user row itself stays, anonymised: the
//! ledger (and payments) keep pointing at it for the tax records, but nothing in it leads back
//! to a person, and the next login with the same Telegram account starts a fresh one.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::Prepare as _;
use super::schema::{chat_sessions, erased_identities, generations, payments, uploads, users};

/// Deletes the user's generations; returns the storage keys of their results.
pub async fn delete_generations(
    conn: &mut AsyncPgConnection,
    user_id: i64,
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
    user_id: i64,
) -> QueryResult<usize> {
    diesel::delete(chat_sessions::table.filter(chat_sessions::user_id.eq(user_id)))
        .execute(conn)
        .await
}

/// Deletes the user's upload rows; returns the keys of objects not erased yet.
pub async fn delete_uploads(
    conn: &mut AsyncPgConnection,
    user_id: i64,
) -> QueryResult<Vec<(String, Option<DateTime<Utc>>)>> {
    diesel::delete(uploads::table.filter(uploads::user_id.eq(user_id)))
        .returning((uploads::storage_key, uploads::deleted_at))
        .get_results(conn)
        .await
}

/// Remembers that the Telegram account behind `identity` (`auth::identity_hash`) erased an
/// account, so that signing up again is not a new person's signup.
pub async fn remember_erased_identity(
    conn: &mut AsyncPgConnection,
    identity: &[u8],
) -> QueryResult<usize> {
    diesel::insert_into(erased_identities::table)
        .values(erased_identities::identity_hash.eq(identity))
        .on_conflict_do_nothing()
        .execute(conn)
        .await
}

/// Clears the profile and frees the Telegram id (it becomes the row's negated id, which no
/// Telegram account has), so that the next login creates a new account.
pub async fn anonymise_user(
    conn: &mut AsyncPgConnection,
    user_id: i64,
    now: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::update(users::table.find(user_id))
        .set((
            users::telegram_id.eq(-user_id),
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
pub async fn scrub_payments(conn: &mut AsyncPgConnection, user_id: i64) -> QueryResult<usize> {
    diesel::update(payments::table.filter(payments::user_id.eq(user_id)))
        .set(payments::create_request.eq(None::<serde_json::Value>))
        .prepared()
        .execute(conn)
        .await
}
