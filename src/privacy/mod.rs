//! What users are owed under privacy law, as use cases the routes call: erasure of the account
//! (which must not reset the limits it had used), deleting one result or one photo, and the
//! anonymisation of the payment records that stay for the income register.

use chrono::{DateTime, Duration, Utc};
use diesel_async::{AsyncConnection as _, AsyncPgConnection};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::config::Settings;
use crate::db::models::User;
use crate::db::privacy::{self, Carried};
use crate::db::{generations, ledger, uploads, users};
use crate::domain::ids::UserId;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::state::AppState;

/// The hourly task limit's window.
pub fn hourly_window() -> Duration {
    Duration::hours(1)
}

/// What an erasure removed and kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Erasure {
    pub uploads: usize,
    pub generations: usize,
    pub chat_sessions: usize,
    /// Stored objects deleted (photos and results).
    pub images: usize,
    pub payments: usize,
    pub payment_events: usize,
    pub ledger_entries: usize,
}

/// Erases the user's personal data in one transaction: running generations are refunded first,
/// then generations, chat sessions and photos go (objects before the rows commit), the profile
/// is cleared, and the payment records that stay lose what names a person. What the account
/// used of its free actions this month and of the hourly task limit, and a block, stay with its
/// identity hash, for the next account of the same Telegram account.
pub async fn erase(state: &AppState, user: &User) -> anyhow::Result<Erasure> {
    let mut conn = state.db.get().await?;
    let storage = state.storage.clone();
    let now = Utc::now();
    let identity = crate::auth::identity_hash(&state.settings, user.telegram_id);
    conn.transaction(async |conn| -> anyhow::Result<Erasure> {
        users::lock(conn, user.id).await?;
        // Money first: an unfinished generation's charge comes back before it disappears.
        for g in generations::active_for_user(conn, user.id).await? {
            ledger::refund(conn, &g.charge_key, now.date_naive()).await?;
        }
        // Read after the refunds: a refunded free action was not used.
        let after = users::find(conn, user.id).await?;
        let carried = Carried {
            blocked: after.is_blocked,
            free_actions_used: after.free_actions_used,
            free_period_start: after.free_period_start,
            recent_generations: recent_generation_times(
                conn,
                &state.settings,
                user,
                now - hourly_window(),
            )
            .await?,
        };
        let results = privacy::delete_generations(conn, user.id).await?;
        let chat_sessions = privacy::delete_chat_sessions(conn, user.id).await?;
        let photos = privacy::delete_uploads(conn, user.id).await?;
        let keys: Vec<&String> = results
            .iter()
            .flatten()
            .chain(
                photos
                    .iter()
                    .filter(|(_, gone)| gone.is_none())
                    .map(|(k, _)| k),
            )
            .collect();
        // Objects before the rows commit, as the retention sweep does: a failure leaves the
        // rows to be erased again, never an object nobody can find.
        for key in &keys {
            storage.delete(key).await?;
        }
        privacy::remember_erased_identity(conn, &identity, &carried).await?;
        let payment_events =
            privacy::anonymise_payment_events(conn, user.id, user.telegram_id, anonymised_event)
                .await?;
        privacy::scrub_sandbox_payments(conn, user.id).await?;
        privacy::anonymise_user(conn, user.id, now).await?;
        // The bot's record of the chat holds the Telegram id: it goes too.
        crate::db::bot::forget_chat(conn, user.telegram_id).await?;
        crate::db::notices::forget(conn, user.id).await?;
        let payments = privacy::scrub_payments(conn, user.id).await?;
        let ledger_entries = ledger::count(conn, user.id).await?;
        Ok(Erasure {
            uploads: photos.len(),
            generations: results.len(),
            chat_sessions,
            images: keys.len(),
            payments,
            payment_events,
            ledger_entries: usize::try_from(ledger_entries).unwrap_or(0),
        })
    })
    .await
}

/// Creation times after `since`, oldest first, of the generations the hourly task limit counts
/// for `user`: their own, and those of the accounts their Telegram account erased.
pub async fn recent_generation_times(
    conn: &mut AsyncPgConnection,
    settings: &Settings,
    user: &User,
    since: DateTime<Utc>,
) -> diesel::QueryResult<Vec<DateTime<Utc>>> {
    let identity = crate::auth::identity_hash(settings, user.telegram_id);
    let mut times = generations::created_since(conn, user.id, since).await?;
    times.extend(privacy::carried_generation_times(conn, &identity, since).await?);
    times.sort_unstable();
    Ok(times)
}

/// Deletes one of the user's finished generations: the result object, then its result, prompt
/// and error in the row (the row itself stays hidden, so that the hourly limit still counts it).
/// A queued or running one is `generation_active` (409): cancel it or let it finish first.
/// Another user's id, or one deleted already, is 404.
pub async fn delete_generation(state: &AppState, user_id: UserId, id: Uuid) -> AppResult<()> {
    let mut conn = state.db.get().await?;
    let storage = state.storage.clone();
    conn.transaction(async |conn| -> AppResult<()> {
        let g = generations::lock_owned(conn, user_id, id)
            .await?
            .ok_or_else(|| AppError::not_found("no such generation"))?;
        if g.status.is_active() {
            return Err(AppError::conflict(
                ErrorCode::GenerationActive,
                format!(
                    "the generation is {}; cancel it or wait until it finishes",
                    g.status
                ),
            ));
        }
        if let Some(key) = &g.result_key {
            storage.delete(key).await?;
        }
        generations::mark_deleted(conn, id, Utc::now()).await?;
        Ok(())
    })
    .await
}

/// Erases one of the user's photos now: the object, then the row is marked deleted (as the
/// retention sweep does). A photo a queued or running generation still reads is `upload_in_use`
/// (409); finished generations keep their results, and new ones cannot use it (404). Another
/// user's id, or one erased already, is 404.
pub async fn delete_upload(state: &AppState, user_id: UserId, id: Uuid) -> AppResult<()> {
    let mut conn = state.db.get().await?;
    let storage = state.storage.clone();
    conn.transaction(async |conn| -> AppResult<()> {
        // The user's row lock orders this against a generation being started with the photo
        // (its inputs are checked under the same lock).
        users::lock(conn, user_id).await?;
        let upload = uploads::lock_owned(conn, user_id, id)
            .await?
            .ok_or_else(|| AppError::not_found("no such upload"))?;
        if generations::active_using_upload(conn, id).await? {
            return Err(AppError::conflict(
                ErrorCode::UploadInUse,
                "a queued or running generation uses this photo; wait until it finishes",
            ));
        }
        storage.delete(&upload.storage_key).await?;
        uploads::mark_deleted(conn, &[id], Utc::now()).await?;
        Ok(())
    })
    .await
}

/// Fields of a Stars payment (`successful_payment`, `refunded_payment`) the income register needs.
const STARS_PAYMENT_FIELDS: &[&str] = &[
    "currency",
    "total_amount",
    "invoice_payload",
    "telegram_payment_charge_id",
    "provider_payment_charge_id",
    "subscription_expiration_date",
    "is_recurring",
    "is_first_recurring",
];

/// Fields of a YooKassa payment or refund object that name no person and no card.
const YOOKASSA_OBJECT_FIELDS: &[&str] = &[
    "id",
    "payment_id",
    "status",
    "paid",
    "amount",
    "income_amount",
    "refunded_amount",
    "created_at",
    "captured_at",
    "expires_at",
    "test",
    "refundable",
    "metadata",
    "description",
    "cancellation_details",
];

fn pick(value: &Value, fields: &[&str]) -> Value {
    let mut out = Map::new();
    for field in fields {
        if let Some(v) = value.get(*field) {
            out.insert((*field).to_owned(), v.clone());
        }
    }
    Value::Object(out)
}

/// A payment notification's raw body with only amounts, ids and states left: of a Telegram
/// update (Stars) the payment itself, without `from`, `chat` and the payer's `order_info`; of a
/// YooKassa notification the object without `payment_method` (card details), `receipt` and
/// the like. Anything else is replaced whole. Marked `"erased": true`.
pub fn anonymised_event(body: &Value) -> Value {
    let mut out = Map::new();
    if let Some(message) = body.get("message") {
        let mut kept = Map::new();
        for key in ["message_id", "date"] {
            if let Some(v) = message.get(key) {
                kept.insert(key.to_owned(), v.clone());
            }
        }
        for key in ["successful_payment", "refunded_payment"] {
            if let Some(p) = message.get(key) {
                kept.insert(key.to_owned(), pick(p, STARS_PAYMENT_FIELDS));
            }
        }
        if let Some(v) = body.get("update_id") {
            out.insert("update_id".into(), v.clone());
        }
        out.insert("message".into(), Value::Object(kept));
    } else if let Some(object) = body.get("object") {
        for key in ["type", "event"] {
            if let Some(v) = body.get(key) {
                out.insert(key.to_owned(), v.clone());
            }
        }
        out.insert("object".into(), pick(object, YOOKASSA_OBJECT_FIELDS));
    }
    out.insert("erased".into(), Value::Bool(true));
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_stars_update_keeps_the_payment_and_loses_the_payer() {
        let body = json!({"update_id": 2, "message": {"message_id": 5, "date": 1,
            "chat": {"id": 7, "type": "private", "username": "anna"},
            "from": {"id": 7, "first_name": "Anna", "last_name": "K", "username": "anna"},
            "successful_payment": {"currency": "XTR", "total_amount": 150, "invoice_payload": "p",
                "telegram_payment_charge_id": "c", "provider_payment_charge_id": "",
                "order_info": {"name": "Anna K", "phone_number": "+7900", "email": "a@x"}}}});
        let out = anonymised_event(&body);
        assert_eq!(
            out,
            json!({"update_id": 2, "erased": true, "message": {"message_id": 5, "date": 1,
                "successful_payment": {"currency": "XTR", "total_amount": 150, "invoice_payload": "p",
                    "telegram_payment_charge_id": "c", "provider_payment_charge_id": ""}}})
        );
    }

    #[test]
    fn a_yookassa_notification_loses_the_card_and_the_receipt() {
        let body = json!({"type": "notification", "event": "payment.succeeded", "object": {
            "id": "p1", "status": "succeeded", "amount": {"value": "199.00", "currency": "RUB"},
            "payment_method": {"type": "bank_card", "card": {"first6": "555555", "last4": "4444"}},
            "receipt": {"customer": {"email": "a@x"}}, "metadata": {"payment_id": "u"}}});
        let out = anonymised_event(&body);
        assert_eq!(
            out,
            json!({"type": "notification", "event": "payment.succeeded", "erased": true,
                "object": {"id": "p1", "status": "succeeded",
                    "amount": {"value": "199.00", "currency": "RUB"}, "metadata": {"payment_id": "u"}}})
        );
        assert_eq!(
            anonymised_event(&json!({"anything": "else"})),
            json!({"erased": true})
        );
    }
}
