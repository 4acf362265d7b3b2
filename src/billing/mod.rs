//! Payments as a process: creating them (our row first, then the provider), confirming them
//! (only from what the provider answers to a GET, never from a notification's body), granting
//! what was bought exactly once, refunds, and the sweep that re-checks payments left pending.
//! The webhook, the sandbox page and the worker all go through [`confirm_payment`].

pub mod charged;
pub mod income;
pub mod referrals;
pub mod stars;

use crate::domain::ids::UserId;
use chrono::{DateTime, Duration, Utc};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{AsyncConnection as _, AsyncPgConnection};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::config::{ReferralTrigger, Settings};
use crate::db::ledger::{self, Cause};
use crate::db::models::{Payment, Product, User};
use crate::db::payments::{self, Inbox};
use crate::db::{products, users};
use crate::domain::credits::Reason;
use crate::domain::payments::{
    Bps, Expected, Fetched, ReceiptContact, Verdict, format_amount, plan_until,
    plan_until_after_refund, split, verify,
};
use crate::domain::vocabulary::{PaymentProviderName, PaymentStatus};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::providers::yookassa::{Notification, NotificationSubject, PaymentError};
use crate::state::AppState;

/// What confirming a payment (or a refund) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The state changed now (credits granted, payment canceled, refund taken back).
    Applied,
    /// It had been done before: nothing changed.
    Unchanged,
    /// The provider says it is not final yet: nothing to do now.
    NotFinal,
    /// The provider's answer does not fit our records: nothing granted, the reason logged.
    Rejected(String),
}

/// A create idempotency key from a client: 1–128 printable ASCII characters.
pub fn valid_client_key(key: &str) -> bool {
    (1..=128).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

/// Creates a payment for `product_id`: our row (pending, with our idempotency key and the exact
/// provider request) first, so that a notification arriving before the provider's reply finds
/// it; then the provider. A repeated `client_key` returns the same payment.
pub async fn create_payment(
    state: &AppState,
    user: &User,
    product_id: &str,
    contact: &ReceiptContact,
    client_key: Option<&str>,
) -> AppResult<(Payment, bool)> {
    let mut conn = state.db.get().await?;
    if let Some(key) = client_key
        && let Some(existing) = payments::find_by_client_key(&mut conn, user.id, key).await?
    {
        drop(conn);
        return Ok((replay(state, existing, product_id).await?, false));
    }
    let product = products::find_active(&mut conn, product_id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no product {product_id:?}")))?;
    if product.currency != "RUB" {
        return Err(AppError::unprocessable(
            ErrorCode::UnsupportedCurrency,
            "this product is not sold in roubles",
        ));
    }
    let id = Uuid::new_v4();
    let body = create_request(&state.settings, id, user, &product, contact);
    let row = new_payment(
        id,
        user.id,
        state.payments.name(),
        &product,
        product.price_minor,
        &product.currency,
    );
    let row = Payment {
        client_key: client_key.map(str::to_owned),
        create_request: Some(body),
        ..row
    };
    let inserted = match insert_pending(state, &mut conn, &row).await {
        Ok(p) => p,
        // The same client key, concurrently: answer with the payment that won.
        Err(AppError::Database(DieselError::DatabaseError(
            DatabaseErrorKind::UniqueViolation,
            info,
        ))) if info.constraint_name() == Some("payments_client_key_key") => {
            let key = client_key.unwrap_or_default();
            let existing = payments::find_by_client_key(&mut conn, user.id, key)
                .await?
                .ok_or_else(|| {
                    AppError::conflict(ErrorCode::IdempotencyConflict, "retry the request")
                })?;
            drop(conn);
            return Ok((replay(state, existing, product_id).await?, false));
        }
        Err(e) => return Err(e),
    };
    // No connection is held while the provider is called.
    drop(conn);
    metrics::counter!("payments_created_total", "provider" => state.payments.name().as_str())
        .increment(1);
    Ok((send_create(state, inserted).await?, true))
}

/// The window of `PAYMENTS_MAX_PENDING_PER_USER`: a flood of abandoned checkouts stays small,
/// and so does the reconciliation sweep's work.
pub const PENDING_WINDOW_HOURS: i64 = 24;

/// Inserts a new pending payment, within the user's limits: `RATE_LIMIT_PAYMENTS_PER_USER`
/// (429 `rate_limited`), and at most `PAYMENTS_MAX_PENDING_PER_USER` pending at once (429
/// `too_many_pending_payments`), counted under the user's row lock.
pub async fn insert_pending(
    state: &AppState,
    conn: &mut AsyncPgConnection,
    row: &Payment,
) -> AppResult<Payment> {
    let limit = state.settings.limits.payments_per_user;
    crate::ratelimit::hit(state, "payments", &row.user_id.to_string(), limit).await?;
    conn.transaction(async |conn| {
        users::lock(conn, row.user_id).await?;
        let since = Utc::now() - Duration::hours(PENDING_WINDOW_HOURS);
        let most = state.settings.payments.max_pending_per_user;
        if payments::pending_since(conn, row.user_id, since).await? >= most {
            return Err(AppError::Client {
                status: actix_web::http::StatusCode::TOO_MANY_REQUESTS,
                code: ErrorCode::TooManyPendingPayments,
                detail: format!(
                    "{most} payments are waiting to be paid: finish one, or try again later"
                ),
            });
        }
        Ok(payments::insert(conn, row).await?)
    })
    .await
}

/// The row of a new pending payment of `product`.
pub fn new_payment(
    id: Uuid,
    user_id: UserId,
    provider: PaymentProviderName,
    product: &Product,
    amount_minor: i64,
    currency: &str,
) -> Payment {
    let now = Utc::now();
    Payment {
        id,
        user_id,
        provider,
        provider_payment_id: None,
        product_id: product.id.clone(),
        amount_minor,
        currency: currency.to_owned(),
        status: PaymentStatus::Pending,
        credits: product.credits,
        plan: product.plan.clone(),
        period_days: product.period_days,
        tax_minor: None,
        commission_minor: None,
        net_minor: None,
        idempotency_key: Uuid::new_v4().to_string(),
        client_key: None,
        create_request: None,
        confirmation_url: None,
        refund_shortfall: 0,
        last_error: None,
        checked_at: None,
        created_at: now,
        updated_at: now,
        paid_at: None,
    }
}

async fn replay(state: &AppState, existing: Payment, product_id: &str) -> AppResult<Payment> {
    if existing.product_id != product_id {
        return Err(AppError::conflict(
            ErrorCode::IdempotencyConflict,
            "this Idempotency-Key was used for another product",
        ));
    }
    send_create(state, existing).await
}

/// The YooKassa request body: one-stage payment, redirect back to the Mini App, our id in the
/// metadata, and a 54-FZ receipt of one item.
fn create_request(
    settings: &Settings,
    id: Uuid,
    user: &User,
    product: &Product,
    contact: &ReceiptContact,
) -> Value {
    let amount = json!({"value": format_amount(product.price_minor), "currency": product.currency});
    let description: String = product.title.chars().take(128).collect();
    let customer = match contact {
        ReceiptContact::Email(email) => json!({"email": email}),
        ReceiptContact::Phone(phone) => json!({"phone": phone}),
    };
    let p = &settings.payments;
    json!({
        "amount": amount,
        "capture": true,
        "confirmation": {"type": "redirect", "return_url": p.return_url},
        "description": description,
        "metadata": {
            "payment_id": id.to_string(),
            "user_id": user.id.to_string(),
            "product_id": product.id,
        },
        "receipt": {
            "customer": customer,
            "items": [{
                "description": description,
                "quantity": "1.00",
                "amount": amount,
                "vat_code": p.vat_code,
                "payment_mode": "full_payment",
                "payment_subject": p.payment_subject,
            }],
        },
    })
}

/// Sends the stored create request when the provider has not answered it yet (a first try, or
/// a repeat after an unknown outcome: same key, same body). Answered payments return as they are.
async fn send_create(state: &AppState, payment: Payment) -> AppResult<Payment> {
    let Some(body) = payment.create_request.clone() else {
        return Ok(payment);
    };
    if payment.status != PaymentStatus::Pending {
        return Ok(payment);
    }
    let result = state.payments.create(&payment.idempotency_key, &body).await;
    let mut conn = state.db.get().await?;
    match result {
        Ok(created) => payments::record_created(
            &mut conn,
            payment.id,
            &created.id,
            created.confirmation_url.as_deref(),
        )
        .await?
        .ok_or_else(|| {
            AppError::Internal(anyhow::anyhow!(
                "payment {} already carries another provider id than {}",
                payment.id,
                created.id
            ))
        }),
        Err(PaymentError::Rejected {
            status,
            code,
            description,
            parameter,
        }) => {
            tracing::warn!(payment_id = %payment.id, status, %code, ?parameter, %description, "payment provider refused the payment");
            let note = format!("{status} {code}: {description}");
            payments::mark_create_refused(&mut conn, payment.id, &note).await?;
            let field = parameter.map(|p| format!(" ({p})")).unwrap_or_default();
            Err(AppError::unprocessable(
                ErrorCode::PaymentRejected,
                format!("the payment provider refused the payment{field}: {description}"),
            ))
        }
        Err(e @ PaymentError::Credentials { .. }) => {
            tracing::error!(error = %e, "payment provider refused our credentials: check YOOKASSA_SHOP_ID and YOOKASSA_SECRET_KEY");
            crate::alerts::payment_credentials(state, &e.to_string()).await;
            payments::mark_create_refused(&mut conn, payment.id, &e.to_string()).await?;
            Err(AppError::Client {
                status: actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
                code: ErrorCode::PaymentsUnavailable,
                detail: "payments are unavailable right now".into(),
            })
        }
        Err(e) => {
            // Unknown outcome: the row keeps the request; the same Idempotency-Key, or the
            // reconciliation sweep, repeats it.
            payments::note_check(&mut conn, payment.id, Some(&e.to_string()), Utc::now()).await?;
            Err(AppError::Unavailable(format!("payment provider: {e}")))
        }
    }
}

/// Fetches a payment from the provider and acts on that answer alone: it must name our payment
/// in its metadata and match our amount and currency; then, once, the payment succeeds (credits
/// or plan granted) or is canceled. An unreachable provider is an error (the caller answers 5xx).
pub async fn confirm_payment(state: &AppState, provider_payment_id: &str) -> AppResult<Outcome> {
    let fetched = match state.payments.get_payment(provider_payment_id).await {
        Ok(f) => f,
        Err(PaymentError::NotFound(_)) => {
            tracing::error!(%provider_payment_id, "notification for a payment the provider does not know");
            return Ok(Outcome::Rejected("unknown to the provider".into()));
        }
        Err(e) => {
            if matches!(e, PaymentError::Credentials { .. }) {
                crate::alerts::payment_credentials(state, &e.to_string()).await;
            }
            return Err(AppError::Unavailable(format!("payment provider: {e}")));
        }
    };
    let Some(our_id) = fetched
        .our_payment_id
        .as_deref()
        .and_then(|s| Uuid::parse_str(s).ok())
    else {
        tracing::error!(%provider_payment_id, "provider payment carries no payment id of ours");
        return Ok(Outcome::Rejected("no payment_id in metadata".into()));
    };
    let settings = &state.settings;
    let provider = state.payments.name();
    let mut conn = state.db.get().await?;
    conn.transaction(async |conn| {
        if payments::find(conn, our_id).await?.is_none() {
            tracing::error!(%provider_payment_id, %our_id, "provider payment names a payment we do not have");
            return Ok(Outcome::Rejected("no such payment of ours".into()));
        }
        let payment = payments::lock(conn, our_id).await?;
        if payment.provider != provider {
            tracing::error!(%our_id, provider = %payment.provider, "payment of another provider");
            return Ok(Outcome::Rejected("payment of another provider".into()));
        }
        apply_fetched(conn, settings, &payment, &fetched, Utc::now()).await
    })
    .await
}

async fn apply_fetched(
    conn: &mut AsyncPgConnection,
    settings: &Settings,
    payment: &Payment,
    fetched: &Fetched,
    now: DateTime<Utc>,
) -> AppResult<Outcome> {
    let our_id = payment.id.to_string();
    let expected = Expected {
        payment_id: &our_id,
        provider_payment_id: payment.provider_payment_id.as_deref(),
        amount_minor: payment.amount_minor,
        currency: &payment.currency,
    };
    match verify(expected, fetched) {
        Err(mismatch) => {
            tracing::error!(payment_id = %payment.id, provider_payment_id = %fetched.id, %mismatch,
                "fetched payment does not match our record; nothing granted");
            payments::note_check(conn, payment.id, Some(&mismatch.to_string()), now).await?;
            Ok(Outcome::Rejected(mismatch.to_string()))
        }
        Ok(Verdict::NotFinal) => Ok(Outcome::NotFinal),
        Ok(Verdict::Canceled) => {
            let changed = payments::mark_canceled(conn, payment.id, &fetched.id, now).await?;
            Ok(if changed == 1 {
                Outcome::Applied
            } else {
                Outcome::Unchanged
            })
        }
        Ok(Verdict::Succeeded) => apply_success(conn, settings, payment, &fetched.id, now).await,
    }
}

/// Marks a locked payment succeeded and grants what it bought, once: credits through the
/// ledger under the key `payment:<id>`, or the plan activated or extended with its credits.
pub async fn apply_success(
    conn: &mut AsyncPgConnection,
    settings: &Settings,
    payment: &Payment,
    provider_payment_id: &str,
    now: DateTime<Utc>,
) -> AppResult<Outcome> {
    match payment.status {
        PaymentStatus::Succeeded | PaymentStatus::Refunded => return Ok(Outcome::Unchanged),
        PaymentStatus::Canceled => {
            tracing::warn!(payment_id = %payment.id, "money arrived for a payment we had given up; granting it")
        }
        PaymentStatus::Pending => {}
    }
    let p = &settings.payments;
    let tax = (payment.currency == "RUB")
        .then(|| split(payment.amount_minor, Bps(p.tax_bps), Bps(p.commission_bps)));
    payments::mark_succeeded(conn, payment.id, provider_payment_id, tax, now).await?;
    let key = format!("payment:{}", payment.id);
    let id = payment.id.to_string();
    let cause = Cause::new("payment", &id, &key);
    match (&payment.plan, payment.period_days) {
        (Some(plan), Some(days)) => {
            let user = users::lock(conn, payment.user_id).await?;
            let until = plan_until(
                user.subscription_plan.as_deref(),
                user.subscription_until,
                plan,
                days,
                now,
            );
            users::set_subscription(conn, user.id, Some(plan), Some(until)).await?;
            ledger::grant(conn, user.id, payment.credits, Reason::Subscription, cause).await?;
        }
        _ => {
            ledger::grant(
                conn,
                payment.user_id,
                payment.credits,
                Reason::Purchase,
                cause,
            )
            .await?;
        }
    }
    let plan = payment
        .plan
        .as_deref()
        .filter(|_| payment.period_days.is_some());
    crate::notices::payment_credited(conn, payment.user_id, payment.id, payment.credits, plan)
        .await?;
    if p.referral_trigger == ReferralTrigger::FirstPayment {
        let user = users::find(conn, payment.user_id).await?;
        if let Some(referrer) = user.referred_by {
            referrals::award(conn, settings, referrer, user.id, Some(payment.id), now).await?;
        }
    }
    metrics::counter!("payments_succeeded_total", "provider" => payment.provider.as_str())
        .increment(1);
    tracing::info!(payment_id = %payment.id, product = %payment.product_id, "payment succeeded");
    Ok(Outcome::Applied)
}

/// Fetches a refund and, when it has succeeded and covers the whole payment, marks the payment
/// refunded and takes its credits back (never below zero: the shortfall is recorded).
pub async fn confirm_refund(state: &AppState, refund_id: &str) -> AppResult<Outcome> {
    let refund = match state.payments.get_refund(refund_id).await {
        Ok(r) => r,
        Err(PaymentError::NotFound(_)) => {
            tracing::error!(%refund_id, "notification for a refund the provider does not know");
            return Ok(Outcome::Rejected("unknown to the provider".into()));
        }
        Err(e) => {
            if matches!(e, PaymentError::Credentials { .. }) {
                crate::alerts::payment_credentials(state, &e.to_string()).await;
            }
            return Err(AppError::Unavailable(format!("payment provider: {e}")));
        }
    };
    if !refund.succeeded {
        return Ok(Outcome::NotFinal);
    }
    let provider = state.payments.name();
    let mut conn = state.db.get().await?;
    let known = payments::find_by_provider_id(&mut conn, provider, &refund.payment_id).await?;
    if known.is_none_or(|p| p.status == PaymentStatus::Pending) {
        // Out of order: the refund is announced before the payment's own notification was
        // acted on (or before we learned its id). Settle the payment first, from its GET.
        drop(conn);
        confirm_payment(state, &refund.payment_id).await?;
        conn = state.db.get().await?;
    }
    conn.transaction(async |conn| {
        let Some(found) = payments::find_by_provider_id(conn, provider, &refund.payment_id).await?
        else {
            tracing::error!(%refund_id, payment = %refund.payment_id, "refund of a payment we do not have");
            return Ok(Outcome::Rejected("refund of an unknown payment".into()));
        };
        let payment = payments::lock(conn, found.id).await?;
        match payment.status {
            PaymentStatus::Refunded => return Ok(Outcome::Unchanged),
            PaymentStatus::Succeeded => {}
            // Not confirmed yet (YooKassa unsure, or a mismatch being looked at): look again
            // when the notification comes back.
            PaymentStatus::Pending => return Ok(Outcome::NotFinal),
            other @ PaymentStatus::Canceled => {
                tracing::error!(payment_id = %payment.id, status = other.as_str(), "refund of a payment that never succeeded");
                return Ok(Outcome::Rejected(format!("refund of a {other} payment")));
            }
        }
        if refund.amount_minor != payment.amount_minor || refund.currency != payment.currency {
            tracing::error!(payment_id = %payment.id, refund = refund.amount_minor, amount = payment.amount_minor,
                "partial refund: not applied automatically; settle it by hand");
            return Ok(Outcome::Rejected("partial refund".into()));
        }
        apply_refund(conn, &payment, Utc::now()).await
    })
    .await
}

/// Takes back a refunded payment's credits (as many as are left) and any referral bonus it
/// earned, shortens its plan, and marks it refunded. The caller holds the payment's lock.
pub async fn apply_refund(
    conn: &mut AsyncPgConnection,
    payment: &Payment,
    now: DateTime<Utc>,
) -> AppResult<Outcome> {
    let key = format!("payment_refund:{}", payment.id);
    let id = payment.id.to_string();
    let cause = Cause::new("payment", &id, &key);
    let (_, shortfall) = ledger::debit(
        conn,
        payment.user_id,
        payment.credits,
        Reason::PurchaseRefund,
        true,
        cause,
    )
    .await?;
    if shortfall > 0 {
        tracing::warn!(payment_id = %payment.id, shortfall, "refunded credits had already been spent");
    }
    // A referral bonus this payment earned goes with it (after the payer's row, as when earned).
    referrals::take_back(conn, payment.id).await?;
    if let (Some(plan), Some(days)) = (&payment.plan, payment.period_days) {
        let user = users::lock(conn, payment.user_id).await?;
        if let (Some(current), Some(until)) = (&user.subscription_plan, user.subscription_until)
            && current == plan
        {
            let until = plan_until_after_refund(until, days, now);
            users::set_subscription(conn, user.id, Some(plan), Some(until)).await?;
        }
    }
    payments::mark_refunded(conn, payment.id, shortfall, now).await?;
    metrics::counter!("payments_refunded_total", "provider" => payment.provider.as_str())
        .increment(1);
    Ok(Outcome::Applied)
}

/// A YooKassa notification, parsed by [`parse_notification`] from a source already checked. The
/// event goes to the inbox first; a duplicate of a processed one does nothing. Only the event name
/// and the object id are read: everything else comes from the provider.
///
/// [`parse_notification`]: crate::providers::yookassa::parse_notification
pub async fn handle_notification(
    state: &AppState,
    notification: &Notification,
) -> AppResult<Outcome> {
    let (event, object_id, body) = (
        notification.event.as_str(),
        notification.object_id.as_str(),
        &notification.body,
    );
    let refund = match notification.subject() {
        Some(NotificationSubject::Payment) => false,
        Some(NotificationSubject::Refund) => true,
        None => {
            tracing::info!(event, "ignoring a notification event we do not act on");
            return Ok(Outcome::Unchanged);
        }
    };
    let provider = state.payments.name();
    once_per_event(state, provider, event, object_id, body, async || {
        if refund {
            confirm_refund(state, object_id).await
        } else {
            confirm_payment(state, object_id).await
        }
    })
    .await
}

/// Acts on a provider's event once: it goes into the inbox (`payment_events`, unique per
/// provider, event and object id), where a duplicate of one acted on before changes nothing;
/// then `act` runs and the event is marked with what came of it. `NotFinal` leaves it open, so
/// that a later delivery of the same event is looked at again.
pub(crate) async fn once_per_event(
    state: &AppState,
    provider: PaymentProviderName,
    event: &str,
    object_id: &str,
    body: &serde_json::Value,
    act: impl AsyncFnOnce() -> AppResult<Outcome>,
) -> AppResult<Outcome> {
    let mut conn = state.db.get().await?;
    let event_id = match payments::record_event(&mut conn, provider, event, object_id, body).await?
    {
        Inbox::Done => return Ok(Outcome::Unchanged),
        Inbox::Process(id) => id,
    };
    drop(conn);
    let outcome = act().await?;
    let done = match &outcome {
        Outcome::Applied => "applied",
        Outcome::Unchanged => "ignored",
        Outcome::Rejected(_) => "rejected",
        Outcome::NotFinal => return Ok(outcome),
    };
    let mut conn = state.db.get().await?;
    payments::finish_event(&mut conn, event_id, done).await?;
    Ok(outcome)
}

/// The worker's safety net: payments of the current provider still pending
/// `PAYMENT_RECONCILE_AFTER_SECS` after their creation (or their last check) are fetched again,
/// and a create whose outcome was never learned is repeated with its key (within YooKassa's
/// 24 h key lifetime). Returns how many payments changed.
pub async fn reconcile(state: &AppState, now: DateTime<Utc>) -> anyhow::Result<usize> {
    let after = Duration::seconds(
        i64::try_from(state.settings.payments.reconcile_after_secs).unwrap_or(i64::MAX / 2),
    );
    let mut conn = state.db.get().await?;
    let due =
        payments::due_for_reconciliation(&mut conn, state.payments.name(), now, after, 100).await?;
    drop(conn);
    let mut changed = 0;
    for payment in due {
        let id = payment.id;
        let result = match payment.provider_payment_id.clone() {
            Some(provider_id) => confirm_payment(state, &provider_id).await.map(Some),
            None if payment.create_request.is_some()
                && payment.created_at > now - Duration::hours(23) =>
            {
                send_create(state, payment).await.map(|_| None)
            }
            None => {
                let mut conn = state.db.get().await?;
                payments::mark_create_refused(
                    &mut conn,
                    id,
                    "the provider never answered the create",
                )
                .await?;
                Ok(Some(Outcome::Applied))
            }
        };
        let mut conn = state.db.get().await?;
        match result {
            Ok(Some(Outcome::Applied)) => changed += 1,
            Ok(Some(Outcome::NotFinal) | None) => {
                payments::note_check(&mut conn, id, None, now).await?;
            }
            Ok(Some(_)) => {}
            Err(e) => {
                tracing::warn!(payment_id = %id, error = %e, "reconciling a payment failed; retrying later");
                payments::note_check(&mut conn, id, Some(&e.to_string()), now).await?;
            }
        }
    }
    if changed > 0 {
        tracing::info!(changed, "payment reconciliation settled pending payments");
    }
    Ok(changed)
}
