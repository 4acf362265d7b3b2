//! Telegram Stars, the second provider: an invoice link in XTR for a product's Stars price, the
//! `pre_checkout_query` answered (within Telegram's 10 s) after checking product, price and
//! payer, and the grant on `successful_payment`, once per `telegram_payment_charge_id`; a
//! `refunded_payment` (`refundStarPayment`, or Telegram's own) takes the purchase back, once.
//! Updates reach us through the bot's webhook, authenticated by its secret token.

use crate::domain::ids::TelegramId;
use chrono::Utc;
use diesel_async::AsyncConnection as _;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::Outcome;
use crate::db::models::{Payment, User};
use crate::db::payments;
use crate::db::{products, users};
use crate::domain::vocabulary::{PaymentProviderName, PaymentStatus};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::providers::telegram::TelegramClient;
use crate::state::AppState;

pub const PROVIDER: PaymentProviderName = PaymentProviderName::TelegramStars;
pub const CURRENCY: &str = "XTR";

/// The Bot API client for Stars (the state's: short timeouts, as a pre-checkout answer is due
/// within 10 s).
fn client(state: &AppState) -> AppResult<&TelegramClient> {
    state.telegram.as_ref().ok_or_else(|| AppError::Client {
        status: actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
        code: ErrorCode::StarsUnavailable,
        detail: "payments in Telegram Stars are not configured".into(),
    })
}

/// Creates our pending payment for the product's Stars price and its invoice link.
pub async fn create_invoice(
    state: &AppState,
    user: &User,
    product_id: &str,
) -> AppResult<(Payment, String)> {
    let client = client(state)?;
    let mut conn = state.db.get().await?;
    let product = products::find_active(&mut conn, product_id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no product {product_id:?}")))?;
    let stars = product.price_stars.ok_or_else(|| {
        AppError::unprocessable(
            ErrorCode::NotSoldForStars,
            "this product has no price in Stars",
        )
    })?;
    let id = Uuid::new_v4();
    let row = super::new_payment(id, user.id, PROVIDER, &product, stars, CURRENCY);
    let payment = super::insert_pending(state, &mut conn, &row).await?;
    drop(conn);
    let title: String = product.title.chars().take(32).collect();
    let description: String = format!("{} — Atelier", product.title)
        .chars()
        .take(255)
        .collect();
    let link = client
        .create_stars_invoice_link(&title, &description, &id.to_string(), stars)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "createInvoiceLink failed");
            AppError::Unavailable(format!("Telegram: {e}"))
        })?;
    let mut conn = state.db.get().await?;
    payments::set_confirmation_url(&mut conn, payment.id, &link).await?;
    metrics::counter!("payments_created_total", "provider" => PROVIDER.as_str()).increment(1);
    Ok((payment, link))
}

/// The part of a Telegram Update that is read; other fields and other kinds of update are
/// acknowledged and ignored.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = TelegramUpdate)]
pub struct Update {
    pub update_id: i64,
    pub pre_checkout_query: Option<PreCheckoutQuery>,
    pub message: Option<Message>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = TelegramUser)]
pub struct TelegramUser {
    #[schema(value_type = i64)]
    pub id: TelegramId,
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = TelegramPreCheckoutQuery)]
pub struct PreCheckoutQuery {
    pub id: String,
    pub from: TelegramUser,
    pub currency: String,
    pub total_amount: i64,
    pub invoice_payload: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = TelegramMessage)]
pub struct Message {
    pub from: Option<TelegramUser>,
    pub successful_payment: Option<SuccessfulPayment>,
    pub refunded_payment: Option<RefundedPayment>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = TelegramSuccessfulPayment)]
pub struct SuccessfulPayment {
    pub currency: String,
    pub total_amount: i64,
    pub invoice_payload: String,
    pub telegram_payment_charge_id: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = TelegramRefundedPayment)]
pub struct RefundedPayment {
    pub currency: String,
    pub total_amount: i64,
    pub invoice_payload: String,
    pub telegram_payment_charge_id: String,
}

/// serde also reads a struct from an array of its fields (`"message": [null, null]`); Telegram
/// sends objects, so anything else where [`Update`] reads a struct is refused.
fn read_parts_are_objects(body: &Value) -> bool {
    let object_or_absent = |v: &Value| v.is_null() || v.is_object();
    body.is_object()
        && [
            &body["message"],
            &body["message"]["from"],
            &body["message"]["successful_payment"],
            &body["message"]["refunded_payment"],
            &body["pre_checkout_query"],
            &body["pre_checkout_query"]["from"],
        ]
        .into_iter()
        .all(object_or_absent)
}

/// Handles one webhook update: pre-checkout queries, successful and refunded payments; other
/// updates are acknowledged and ignored.
pub async fn handle_update(state: &AppState, body: &Value) -> AppResult<Outcome> {
    if !read_parts_are_objects(body) {
        return Err(AppError::bad_request(
            ErrorCode::InvalidUpdate,
            "an Update and the parts of it that are read must be objects",
        ));
    }
    let update: Update = serde_json::from_value(body.clone())
        .map_err(|e| AppError::bad_request(ErrorCode::InvalidUpdate, e.to_string()))?;
    if let Some(query) = update.pre_checkout_query {
        return pre_checkout(state, &query).await;
    }
    match update.message {
        Some(Message {
            from: Some(from),
            successful_payment: Some(paid),
            ..
        }) => successful_payment(state, from.id, &paid, body).await,
        Some(Message {
            refunded_payment: Some(refund),
            ..
        }) => refunded_payment(state, &refund, body).await,
        _ => Ok(Outcome::Unchanged),
    }
}

/// A `telegram_payment_charge_id` as we store it.
fn charge_id(charge: &str) -> AppResult<&str> {
    if charge.is_empty() || charge.len() > 256 {
        return Err(AppError::bad_request(
            ErrorCode::InvalidUpdate,
            "bad telegram_payment_charge_id",
        ));
    }
    Ok(charge)
}

/// Checks the invoice behind a pre-checkout query (`before_paying`) or a payment; `Err` is the
/// message the payer sees. Once the money has arrived, a product taken off sale or a blocked
/// account no longer stands in the way: the purchase was accepted at pre-checkout.
async fn check_invoice(
    state: &AppState,
    telegram_id: TelegramId,
    currency: &str,
    total: i64,
    payload: &str,
    before_paying: bool,
) -> AppResult<Result<Payment, &'static str>> {
    let Ok(id) = Uuid::parse_str(payload) else {
        return Ok(Err("Unknown invoice."));
    };
    let mut conn = state.db.get().await?;
    let Some(payment) = payments::find(&mut conn, id).await? else {
        return Ok(Err("Unknown invoice."));
    };
    let user = users::find(&mut conn, payment.user_id).await?;
    let product = products::find_active(&mut conn, &payment.product_id).await?;
    Ok(
        if payment.provider != PROVIDER || user.telegram_id != telegram_id {
            Err("This invoice belongs to another account.")
        } else if currency != CURRENCY || total != payment.amount_minor {
            Err("The price has changed; open the shop again.")
        } else if before_paying && product.is_none() {
            Err("This product is no longer sold.")
        } else if before_paying && user.is_blocked {
            Err("This account is blocked.")
        } else {
            Ok(payment)
        },
    )
}

async fn pre_checkout(state: &AppState, query: &PreCheckoutQuery) -> AppResult<Outcome> {
    let verdict = check_invoice(
        state,
        query.from.id,
        &query.currency,
        query.total_amount,
        &query.invoice_payload,
        true,
    )
    .await?;
    let refusal = match &verdict {
        Ok(payment) if payment.status == PaymentStatus::Pending => None,
        Ok(_) => Some("This invoice has already been paid."),
        Err(message) => Some(*message),
    };
    if let Some(why) = refusal {
        tracing::warn!(payload = %query.invoice_payload, why, "refusing a Stars pre-checkout");
    }
    client(state)?
        .answer_pre_checkout_query(&query.id, refusal)
        .await
        .map_err(|e| AppError::Unavailable(format!("answerPreCheckoutQuery: {e}")))?;
    Ok(if refusal.is_none() {
        Outcome::Applied
    } else {
        Outcome::Rejected(refusal.unwrap_or_default().into())
    })
}

async fn successful_payment(
    state: &AppState,
    telegram_id: TelegramId,
    paid: &SuccessfulPayment,
    body: &Value,
) -> AppResult<Outcome> {
    let charge = charge_id(&paid.telegram_payment_charge_id)?;
    super::once_per_event(state, PROVIDER, "successful_payment", charge, body, async || {
        let verdict = check_invoice(
            state,
            telegram_id,
            &paid.currency,
            paid.total_amount,
            &paid.invoice_payload,
            false,
        )
        .await?;
        let found = match verdict {
            Ok(found) => found,
            Err(why) => {
                tracing::error!(charge, why, payload = %paid.invoice_payload, "Stars payment does not match its invoice; nothing granted");
                return Ok(Outcome::Rejected(why.into()));
            }
        };
        let settings = &state.settings;
        let mut conn = state.db.get().await?;
        conn.transaction(async |conn| {
            let payment = payments::lock(conn, found.id).await?;
            if let Some(other) = payment
                .provider_payment_id
                .as_deref()
                .filter(|c| *c != charge)
            {
                tracing::error!(payment_id = %payment.id, charge, other,
                    "a second Stars payment for one invoice; refund it with refundStarPayment");
                return Ok(Outcome::Rejected("invoice paid twice".into()));
            }
            super::apply_success(conn, settings, &payment, charge, Utc::now()).await
        })
        .await
    })
    .await
}

/// Takes back the purchase a refunded Stars payment made, once per charge: the payment is the
/// one its invoice named and the charge paid, and the whole amount came back.
async fn refunded_payment(
    state: &AppState,
    refund: &RefundedPayment,
    body: &Value,
) -> AppResult<Outcome> {
    let charge = charge_id(&refund.telegram_payment_charge_id)?;
    let invoice = Uuid::parse_str(&refund.invoice_payload).ok();
    let outcome = super::once_per_event(state, PROVIDER, "refunded_payment", charge, body, async || {
        let mut conn = state.db.get().await?;
        conn.transaction(async |conn| -> AppResult<Outcome> {
            let found = match invoice {
                Some(id) => payments::find(conn, id).await?,
                None => None,
            };
            let Some(found) = found.filter(|p| p.provider == PROVIDER) else {
                tracing::error!(charge, payload = %refund.invoice_payload, "refund of a Stars payment we do not have");
                return Ok(Outcome::Rejected("refund of an unknown payment".into()));
            };
            let payment = payments::lock(conn, found.id).await?;
            match (payment.status, payment.provider_payment_id.as_deref()) {
                (PaymentStatus::Refunded, Some(paid)) if paid == charge => {
                    return Ok(Outcome::Unchanged);
                }
                (PaymentStatus::Succeeded, Some(paid)) if paid == charge => {}
                // Its successful_payment is not acted on yet: Telegram sends this one again.
                // (One refused as not fitting its invoice granted nothing to take back.)
                (PaymentStatus::Pending, None)
                    if !payments::event_done(conn, PROVIDER, "successful_payment", charge)
                        .await? =>
                {
                    return Ok(Outcome::NotFinal);
                }
                (status, paid) => {
                    tracing::error!(payment_id = %payment.id, status = status.as_str(), charge, paid, "a Stars refund that does not fit the payment");
                    return Ok(Outcome::Rejected(format!("refund of a {status} payment")));
                }
            }
            if refund.currency != CURRENCY || refund.total_amount != payment.amount_minor {
                tracing::error!(payment_id = %payment.id, refund = refund.total_amount, amount = payment.amount_minor,
                    "partial Stars refund: not applied automatically; settle it by hand");
                return Ok(Outcome::Rejected("partial refund".into()));
            }
            super::apply_refund(conn, &payment, Utc::now()).await
        })
        .await
    })
    .await?;
    if matches!(outcome, Outcome::NotFinal) {
        return Err(AppError::Unavailable(
            "the refunded payment is not settled yet".into(),
        ));
    }
    Ok(outcome)
}
