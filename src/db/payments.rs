//! Payments and their notification inbox. State changes are guarded by the status they leave,
//! so a stale writer changes nothing; the caller locks the row when it decides on a transition.

use crate::domain::ids::UserId;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;
use uuid::Uuid;

use super::Prepare as _;
use super::models::Payment;
use super::schema::{payment_events, payments};
use crate::domain::payments::Split;
use crate::domain::vocabulary::{PaymentProviderName, PaymentStatus};

pub async fn insert(conn: &mut AsyncPgConnection, payment: &Payment) -> QueryResult<Payment> {
    diesel::insert_into(payments::table)
        .values(payment)
        .returning(Payment::as_returning())
        .prepared()
        .get_result(conn)
        .await
}

pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Payment>> {
    payments::table
        .find(id)
        .select(Payment::as_select())
        .first(conn)
        .await
        .optional()
}

/// The user's own payment; another user's id is `None`.
pub async fn find_owned(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    id: Uuid,
) -> QueryResult<Option<Payment>> {
    payments::table
        .find(id)
        .filter(payments::user_id.eq(user_id))
        .select(Payment::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn find_by_client_key(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    client_key: &str,
) -> QueryResult<Option<Payment>> {
    payments::table
        .filter(payments::user_id.eq(user_id))
        .filter(payments::client_key.eq(client_key))
        .select(Payment::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn find_by_provider_id(
    conn: &mut AsyncPgConnection,
    provider: PaymentProviderName,
    provider_payment_id: &str,
) -> QueryResult<Option<Payment>> {
    payments::table
        .filter(payments::provider.eq(provider))
        .filter(payments::provider_payment_id.eq(provider_payment_id))
        .select(Payment::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn lock(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Payment> {
    payments::table
        .find(id)
        .for_update()
        .select(Payment::as_select())
        .first(conn)
        .await
}

/// Records the provider's answer to our create. An earlier notification may have recorded the
/// id already (and moved the status on): the id is only ever set once, the status never touched.
pub async fn record_created(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    provider_payment_id: &str,
    confirmation_url: Option<&str>,
) -> QueryResult<Option<Payment>> {
    diesel::update(
        payments::table.find(id).filter(
            payments::provider_payment_id
                .is_null()
                .or(payments::provider_payment_id.eq(provider_payment_id)),
        ),
    )
    .set((
        payments::provider_payment_id.eq(provider_payment_id),
        payments::confirmation_url.eq(confirmation_url),
        payments::create_request.eq(None::<Value>),
        payments::last_error.eq(None::<String>),
        payments::updated_at.eq(Utc::now()),
    ))
    .returning(Payment::as_returning())
    .prepared()
    .get_result(conn)
    .await
    .optional()
}

/// The provider refused the create for good: nothing exists there, so the payment is over.
pub async fn mark_create_refused(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    error: &str,
) -> QueryResult<usize> {
    diesel::update(
        payments::table
            .find(id)
            .filter(payments::status.eq(PaymentStatus::Pending))
            .filter(payments::provider_payment_id.is_null()),
    )
    .set((
        payments::status.eq(PaymentStatus::Canceled),
        payments::create_request.eq(None::<Value>),
        payments::last_error.eq(error),
        payments::updated_at.eq(Utc::now()),
    ))
    .prepared()
    .execute(conn)
    .await
}

/// `pending` (or `canceled`, when the money came after all) → `succeeded`, with the tax split.
pub async fn mark_succeeded(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    provider_payment_id: &str,
    split: Option<Split>,
    now: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::update(
        payments::table
            .find(id)
            .filter(payments::status.eq_any([PaymentStatus::Pending, PaymentStatus::Canceled])),
    )
    .set((
        payments::status.eq(PaymentStatus::Succeeded),
        payments::provider_payment_id.eq(provider_payment_id),
        payments::tax_minor.eq(split.map(|s| s.tax_minor)),
        payments::commission_minor.eq(split.map(|s| s.commission_minor)),
        payments::net_minor.eq(split.map(|s| s.net_minor)),
        payments::create_request.eq(None::<Value>),
        payments::last_error.eq(None::<String>),
        payments::paid_at.eq(now),
        payments::updated_at.eq(now),
    ))
    .prepared()
    .execute(conn)
    .await
}

pub async fn mark_canceled(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    provider_payment_id: &str,
    now: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::update(
        payments::table
            .find(id)
            .filter(payments::status.eq(PaymentStatus::Pending)),
    )
    .set((
        payments::status.eq(PaymentStatus::Canceled),
        payments::provider_payment_id.eq(provider_payment_id),
        payments::create_request.eq(None::<Value>),
        payments::updated_at.eq(now),
    ))
    .prepared()
    .execute(conn)
    .await
}

pub async fn mark_refunded(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    shortfall: i64,
    now: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::update(
        payments::table
            .find(id)
            .filter(payments::status.eq(PaymentStatus::Succeeded)),
    )
    .set((
        payments::status.eq(PaymentStatus::Refunded),
        payments::refund_shortfall.eq(shortfall),
        payments::updated_at.eq(now),
    ))
    .prepared()
    .execute(conn)
    .await
}

/// Notes why a payment could not be confirmed, and when it was last looked at.
pub async fn note_check(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    error: Option<&str>,
    now: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::update(payments::table.find(id))
        .set((payments::last_error.eq(error), payments::checked_at.eq(now)))
        .prepared()
        .execute(conn)
        .await
}

/// How many of the user's payments created since `since` are still pending.
pub async fn pending_since(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    since: DateTime<Utc>,
) -> QueryResult<i64> {
    payments::table
        .filter(payments::user_id.eq(user_id))
        .filter(payments::status.eq(PaymentStatus::Pending))
        .filter(payments::created_at.ge(since))
        .count()
        .get_result(conn)
        .await
}

/// Pending payments due for a check, never-checked ones first, then those waiting longest. A
/// payment is due `after` its creation, then each time it has waited as long again as it had
/// been pending when last checked (after, 2×, 4×, …): abandoned checkouts, however many, are
/// looked at ever more rarely and cannot crowd the `limit` out of fresh payments.
pub async fn due_for_reconciliation(
    conn: &mut AsyncPgConnection,
    provider: PaymentProviderName,
    now: DateTime<Utc>,
    after: chrono::Duration,
    limit: i64,
) -> QueryResult<Vec<Payment>> {
    use diesel::sql_types::{Bool, Interval, Timestamptz};
    let interval = diesel::pg::data_types::PgInterval::from_microseconds(
        after.num_microseconds().unwrap_or(i64::MAX),
    );
    let due = diesel::dsl::sql::<Bool>("(checked_at IS NULL OR checked_at <= ")
        .bind::<Timestamptz, _>(now)
        .sql(" - GREATEST(")
        .bind::<Interval, _>(interval)
        .sql(", checked_at - created_at))");
    payments::table
        .filter(payments::status.eq(PaymentStatus::Pending))
        .filter(payments::provider.eq(provider))
        .filter(payments::created_at.le(now - after))
        .filter(due)
        .order((
            payments::checked_at.asc().nulls_first(),
            payments::created_at,
        ))
        .limit(limit)
        .select(Payment::as_select())
        .load(conn)
        .await
}

/// Succeeded payments in `currency` paid in `[from, to)`, in order: the income register.
pub async fn income(
    conn: &mut AsyncPgConnection,
    currency: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> QueryResult<Vec<Payment>> {
    payments::table
        .filter(payments::status.eq(PaymentStatus::Succeeded))
        .filter(payments::currency.eq(currency))
        .filter(payments::paid_at.ge(from))
        .filter(payments::paid_at.lt(to))
        .order((payments::paid_at, payments::id))
        .select(Payment::as_select())
        .load(conn)
        .await
}

/// Where an incoming notification stands in the inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbox {
    /// Seen for the first time, or seen before without a verified outcome: process it.
    Process(i64),
    /// Already acted on: answer 200 and do nothing.
    Done,
}

/// Records a notification once per (provider, event, object id).
pub async fn record_event(
    conn: &mut AsyncPgConnection,
    provider: PaymentProviderName,
    event: &str,
    object_id: &str,
    body: &Value,
) -> QueryResult<Inbox> {
    let inserted: Option<i64> = diesel::insert_into(payment_events::table)
        .values((
            payment_events::provider.eq(provider),
            payment_events::event.eq(event),
            payment_events::object_id.eq(object_id),
            payment_events::body.eq(body),
        ))
        .on_conflict_do_nothing()
        .returning(payment_events::id)
        .prepared()
        .get_result(conn)
        .await
        .optional()?;
    if let Some(id) = inserted {
        return Ok(Inbox::Process(id));
    }
    let (id, processed): (i64, Option<DateTime<Utc>>) = payment_events::table
        .filter(payment_events::provider.eq(provider))
        .filter(payment_events::event.eq(event))
        .filter(payment_events::object_id.eq(object_id))
        .select((payment_events::id, payment_events::processed_at))
        .first(conn)
        .await?;
    Ok(match processed {
        Some(_) => Inbox::Done,
        None => Inbox::Process(id),
    })
}

/// Whether a notification was recorded and acted on.
pub async fn event_done(
    conn: &mut AsyncPgConnection,
    provider: PaymentProviderName,
    event: &str,
    object_id: &str,
) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        payment_events::table
            .filter(payment_events::provider.eq(provider))
            .filter(payment_events::event.eq(event))
            .filter(payment_events::object_id.eq(object_id))
            .filter(payment_events::processed_at.is_not_null()),
    ))
    .get_result(conn)
    .await
}

/// Marks an event acted on (`applied`, `ignored` or `rejected`).
pub async fn finish_event(
    conn: &mut AsyncPgConnection,
    id: i64,
    outcome: &str,
) -> QueryResult<usize> {
    diesel::update(
        payment_events::table
            .find(id)
            .filter(payment_events::processed_at.is_null()),
    )
    .set((
        payment_events::outcome.eq(outcome),
        payment_events::processed_at.eq(Utc::now()),
    ))
    .prepared()
    .execute(conn)
    .await
}

/// Records where the payer confirms the payment (a Stars invoice link).
pub async fn set_confirmation_url(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    url: &str,
) -> QueryResult<usize> {
    diesel::update(payments::table.find(id))
        .set((
            payments::confirmation_url.eq(url),
            payments::updated_at.eq(Utc::now()),
        ))
        .prepared()
        .execute(conn)
        .await
}

/// Every payment of the user, newest first.
pub async fn list_for_user(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
) -> QueryResult<Vec<Payment>> {
    payments::table
        .filter(payments::user_id.eq(user_id))
        .order(payments::created_at.desc())
        .select(Payment::as_select())
        .load(conn)
        .await
}

/// How many payments there are per status and currency.
pub async fn count_by_status(
    conn: &mut AsyncPgConnection,
) -> QueryResult<Vec<(PaymentStatus, String, i64)>> {
    payments::table
        .group_by((payments::status, payments::currency))
        .select((
            payments::status,
            payments::currency,
            diesel::dsl::count_star(),
        ))
        .load(conn)
        .await
}
