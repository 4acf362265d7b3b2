//! The catalogue, buying a product (YooKassa or its sandbox; Telegram Stars), a payment's
//! status, YooKassa's notification webhook, and the sandbox's local confirmation page.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::extractor::AuthUser;
use crate::billing::{self, Outcome, stars};
use crate::db::models::{Payment, Product};
use crate::db::{payments, products};
use crate::domain::payments::{ReceiptContact, RemoteStatus, format_amount};
use crate::domain::vocabulary::{PaymentProviderName, PaymentStatus};
use crate::error::{AppError, AppResult, ErrorCode, Problem};
use crate::providers::sandbox::SandboxPayments;
use crate::providers::yookassa::{NotificationError, parse_notification, valid_object_id};
use crate::state::AppState;

/// Largest notification body read.
const MAX_NOTIFICATION_BYTES: usize = 64 * 1024;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/payments/products").route(web::get().to(list_products)))
        .service(web::resource("/payments/create").route(web::post().to(create)))
        .service(web::resource("/payments/stars/invoice").route(web::post().to(stars_invoice)))
        .service(
            web::resource("/payments/webhook")
                .app_data(web::PayloadConfig::new(MAX_NOTIFICATION_BYTES))
                .route(web::post().to(webhook)),
        )
        .service(web::resource("/payments/{id}").route(web::get().to(get)));
}

/// The sandbox payment provider's pages, outside `/api/v1` (404 when YooKassa is configured).
pub fn sandbox_config(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/sandbox/payments/{id}").route(web::get().to(sandbox_page)))
        .service(
            web::resource("/sandbox/payments/{id}/{action}").route(web::post().to(sandbox_action)),
        );
}

/// A credit pack or a subscription plan.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProductDto {
    #[schema(example = "pack_10")]
    pub id: String,
    /// `credit_pack` or `subscription`.
    pub kind: String,
    pub title: String,
    /// Credits granted (for a plan: on activation and at each renewal).
    pub credits: i64,
    /// `basic`, `pro` or `premium` for a plan.
    pub plan: Option<String>,
    /// How long a plan lasts.
    pub period_days: Option<i32>,
    /// Price in kopecks.
    #[schema(example = 19900)]
    pub price_minor: i64,
    #[schema(example = "RUB")]
    pub currency: String,
    /// The price as text, `"199.00"`.
    pub price: String,
    /// Price in Telegram Stars, when it is sold for Stars.
    pub price_stars: Option<i64>,
}

impl From<Product> for ProductDto {
    fn from(p: Product) -> Self {
        Self {
            price: format_amount(p.price_minor),
            id: p.id,
            kind: p.kind,
            title: p.title,
            credits: p.credits,
            plan: p.plan,
            period_days: p.period_days,
            price_minor: p.price_minor,
            currency: p.currency,
            price_stars: p.price_stars,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Catalogue {
    pub packs: Vec<ProductDto>,
    pub plans: Vec<ProductDto>,
}

/// Active credit packs and subscription plans, with their prices.
#[utoipa::path(get, path = "/api/v1/payments/products", tag = "payments",
    responses((status = 200, body = Catalogue)))]
pub async fn list_products(state: web::Data<AppState>) -> AppResult<HttpResponse> {
    let mut conn = state.db.get().await?;
    let (plans, packs): (Vec<_>, Vec<_>) = products::list_active(&mut conn)
        .await?
        .into_iter()
        .map(ProductDto::from)
        .partition(|p| p.kind == "subscription");
    Ok(HttpResponse::Ok().json(Catalogue { packs, plans }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePaymentRequest {
    #[schema(example = "pack_10")]
    pub product_id: String,
    /// Where the 54-FZ receipt goes: an e-mail address...
    pub email: Option<String>,
    /// ...or a phone number with its country code (exactly one of the two).
    pub phone: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentCreated {
    pub payment_id: Uuid,
    /// `pending` until the payer confirms; see `GET /api/v1/payments/{id}`.
    pub status: PaymentStatus,
    /// Open this page to pay (YooKassa's, or the local sandbox's).
    pub confirmation_url: Option<String>,
}

/// Starts buying a product: our payment row, then the provider's payment. Open
/// `confirmation_url` to pay. A repeated `Idempotency-Key` returns the same payment.
#[utoipa::path(post, path = "/api/v1/payments/create", tag = "payments", security(("bearer" = []), ("tma" = [])),
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 128, pattern = "^[!-~]+$", description = "makes the request repeatable: the same key returns the same payment; 1–128 printable ASCII characters")),
    request_body = CreatePaymentRequest,
    responses((status = 201, body = PaymentCreated), (status = 200, description = "a repeated Idempotency-Key", body = PaymentCreated),
              (status = 404, description = "no such active product", body = Problem),
              (status = 409, description = "`idempotency_conflict`: the key was used for another product", body = Problem),
              (status = 422, description = "`invalid_receipt_contact`, `invalid_idempotency_key`, `unsupported_currency`, or `payment_rejected` by the provider", body = Problem),
              (status = 429, description = "`rate_limited` (RATE_LIMIT_PAYMENTS_PER_USER, shared by both providers; with Retry-After), `too_many_pending_payments` (PAYMENTS_MAX_PENDING_PER_USER, default 5, opened in the last 24 h are unpaid)", body = Problem),
              (status = 503, description = "the provider did not answer; repeat with the same Idempotency-Key. `payments_unavailable`: the provider refused our credentials", body = Problem)))]
pub async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    body: web::Json<CreatePaymentRequest>,
) -> AppResult<HttpResponse> {
    let contact = ReceiptContact::parse(body.email.as_deref(), body.phone.as_deref())
        .map_err(|why| AppError::unprocessable(ErrorCode::InvalidReceiptContact, why))?;
    let key = super::idempotency_key(&req, None).map_err(|_| {
        AppError::unprocessable(
            ErrorCode::InvalidIdempotencyKey,
            "Idempotency-Key: 1–128 printable ASCII characters",
        )
    })?;
    let (payment, created) =
        billing::create_payment(&state, &user, &body.product_id, &contact, key.as_deref()).await?;
    let dto = PaymentCreated {
        payment_id: payment.id,
        status: payment.status,
        confirmation_url: payment.confirmation_url,
    };
    Ok(if created {
        HttpResponse::Created().json(dto)
    } else {
        HttpResponse::Ok().json(dto)
    })
}

/// A payment as its owner sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentDto {
    pub payment_id: Uuid,
    pub status: PaymentStatus,
    pub provider: PaymentProviderName,
    pub product_id: String,
    /// Kopecks for RUB, whole Stars for XTR.
    pub amount_minor: i64,
    pub currency: String,
    pub credits: i64,
    pub plan: Option<String>,
    pub confirmation_url: Option<String>,
    pub created_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
}

impl From<Payment> for PaymentDto {
    fn from(p: Payment) -> Self {
        Self {
            payment_id: p.id,
            status: p.status,
            provider: p.provider,
            product_id: p.product_id,
            amount_minor: p.amount_minor,
            currency: p.currency,
            credits: p.credits,
            plan: p.plan,
            confirmation_url: p.confirmation_url,
            created_at: p.created_at,
            paid_at: p.paid_at,
        }
    }
}

/// One of the user's payments.
#[utoipa::path(get, path = "/api/v1/payments/{id}", operation_id = "get_payment", tag = "payments", security(("bearer" = []), ("tma" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = PaymentDto), (status = 404, body = Problem)))]
pub async fn get(
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let mut conn = state.db.get().await?;
    let payment = payments::find_owned(&mut conn, user.id, *id)
        .await?
        .ok_or_else(|| AppError::not_found("no such payment"))?;
    Ok(HttpResponse::Ok().json(PaymentDto::from(payment)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StarsInvoiceRequest {
    #[schema(example = "pack_10")]
    pub product_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StarsInvoice {
    pub payment_id: Uuid,
    /// Open with `Telegram.WebApp.openInvoice(invoice_link)`.
    pub invoice_link: String,
    /// The price in Stars.
    pub amount: i64,
}

/// An invoice link in Telegram Stars (XTR) for a product.
#[utoipa::path(post, path = "/api/v1/payments/stars/invoice", tag = "payments", security(("bearer" = []), ("tma" = [])),
    request_body = StarsInvoiceRequest,
    responses((status = 201, body = StarsInvoice),
              (status = 404, body = Problem),
              (status = 422, description = "`not_sold_for_stars`", body = Problem),
              (status = 429, description = "`rate_limited` (RATE_LIMIT_PAYMENTS_PER_USER, shared by both providers; with Retry-After), `too_many_pending_payments` (5 opened in the last 24 h are unpaid)", body = Problem),
              (status = 503, description = "`stars_unavailable` without a bot token, or Telegram unreachable", body = Problem)))]
pub async fn stars_invoice(
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    body: web::Json<StarsInvoiceRequest>,
) -> AppResult<HttpResponse> {
    let (payment, invoice_link) = stars::create_invoice(&state, &user, &body.product_id).await?;
    Ok(HttpResponse::Created().json(StarsInvoice {
        payment_id: payment.id,
        invoice_link,
        amount: payment.amount_minor,
    }))
}

/// A YooKassa notification as the webhook reads it: `type`, `event` and `object.id`. The rest of
/// the object is kept in the inbox but never believed: the payment is fetched again.
#[derive(ToSchema)]
#[expect(
    dead_code,
    reason = "only describes the notification in the OpenAPI document"
)]
pub struct NotificationBody {
    #[schema(inline)]
    r#type: NotificationType,
    /// `payment.succeeded`, `payment.canceled`, `payment.waiting_for_capture` and
    /// `refund.succeeded` are acted on; other events are acknowledged and ignored.
    event: String,
    #[schema(inline)]
    object: NotificationObject,
}

#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
#[expect(
    dead_code,
    reason = "only describes the notification in the OpenAPI document"
)]
enum NotificationType {
    Notification,
}

#[derive(ToSchema)]
#[expect(
    dead_code,
    reason = "only describes the notification in the OpenAPI document"
)]
struct NotificationObject {
    /// The payment's (or refund's) id at the provider.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    id: String,
}

/// YooKassa's HTTP notifications. Accepted only from `YOOKASSA_ALLOWED_NETWORKS`; the body is a
/// hint: the payment (or refund) is fetched from YooKassa and only that answer is acted on,
/// once. Duplicates answer 200 and change nothing; 503 when YooKassa cannot be reached, so that
/// it sends the notification again.
#[utoipa::path(post, path = "/api/v1/payments/webhook", operation_id = "yookassa_webhook", tag = "payments",
    request_body(content = NotificationBody, description = "`{type: notification, event, object}`"),
    responses((status = 200, description = "recorded (and acted on once verified)"),
              (status = 400, description = "`invalid_json`, `invalid_notification`: not a notification", body = Problem),
              (status = 403, description = "`forbidden_source`: not from YooKassa's networks", body = Problem),
              (status = 503, description = "YooKassa could not be reached to confirm: send again", body = Problem)))]
pub async fn webhook(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> AppResult<HttpResponse> {
    let p = &state.settings.payments;
    let source = super::client_ip(&req, &state.settings.trusted_proxies);
    let allowed = source.is_some_and(|ip| p.allowed_networks.iter().any(|n| n.contains(ip)));
    if !allowed {
        tracing::warn!(source = ?source, "payment notification from outside the allowed networks");
        metrics::counter!("payment_notifications_total", "result" => "forbidden").increment(1);
        return Err(AppError::forbidden(
            ErrorCode::ForbiddenSource,
            "notifications are accepted from the payment provider only",
        ));
    }
    let notification = parse_notification(&body).map_err(|e| match e {
        NotificationError::NotJson(detail) => AppError::bad_request(ErrorCode::InvalidJson, detail),
        NotificationError::Shape | NotificationError::Nul => {
            AppError::bad_request(ErrorCode::InvalidNotification, e.to_string())
        }
    })?;
    let outcome = billing::handle_notification(&state, &notification).await?;
    let result = match outcome {
        Outcome::Applied => "applied",
        Outcome::Unchanged => "unchanged",
        Outcome::NotFinal => "not_final",
        Outcome::Rejected(_) => "rejected",
    };
    metrics::counter!("payment_notifications_total", "result" => result).increment(1);
    Ok(HttpResponse::Ok().finish())
}

fn sandbox(state: &AppState) -> AppResult<&SandboxPayments> {
    match &state.sandbox_payments {
        Some(sandbox) if !state.settings.is_production() => Ok(sandbox),
        _ => Err(AppError::not_found("the sandbox payment provider is off")),
    }
}

fn html(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The sandbox's confirmation page: what YooKassa's page would be, with two buttons.
async fn sandbox_page(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> AppResult<HttpResponse> {
    let sandbox = sandbox(&state)?;
    let payment = sandbox
        .find(&id)
        .await
        .map_err(|e| AppError::Unavailable(e.to_string()))?
        .ok_or_else(|| AppError::not_found("no such sandbox payment"))?;
    let id = escape(&payment.id);
    let buttons = if payment.status == RemoteStatus::Pending.as_str() {
        format!(
            r#"<form method="post" action="/sandbox/payments/{id}/succeed"><button>Pay {amount} {currency}</button></form>
<form method="post" action="/sandbox/payments/{id}/cancel"><button>Cancel</button></form>"#,
            amount = format_amount(payment.amount_minor),
            currency = escape(&payment.currency),
        )
    } else {
        format!("<p>This payment is {}.</p>", escape(&payment.status))
    };
    Ok(html(format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>Sandbox payment</title></head>
<body><h1>Sandbox payment</h1><p>No money moves: this page stands in for YooKassa's.</p>
<p>{description}</p>{buttons}<p><a href="{ret}">Back to the app</a></p></body></html>"#,
        description = escape(&payment.description),
        ret = escape(&payment.return_url),
    )))
}

/// The sandbox's buttons: the sandbox payment moves on, then it is confirmed exactly as a
/// notification would be: fetched from the (sandbox) provider and checked against our row.
async fn sandbox_action(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> AppResult<HttpResponse> {
    let sandbox = sandbox(&state)?;
    let (id, action) = path.into_inner();
    let succeed = match action.as_str() {
        "succeed" => true,
        "cancel" => false,
        _ => return Err(AppError::not_found("no such action")),
    };
    if !valid_object_id(&id) {
        return Err(AppError::not_found("no such sandbox payment"));
    }
    sandbox
        .complete(&id, succeed)
        .await
        .map_err(|e| AppError::Unavailable(e.to_string()))?;
    let outcome = billing::confirm_payment(&state, &id).await?;
    tracing::info!(sandbox_payment = %id, ?outcome, "sandbox payment confirmed");
    let status = sandbox
        .find(&id)
        .await
        .map_err(|e| AppError::Unavailable(e.to_string()))?
        .map_or_else(|| "unknown".to_owned(), |p| p.status);
    Ok(html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Sandbox payment</title></head><body><p>Payment {}.</p><p><a href=\"{}\">Back to the app</a></p></body></html>",
        escape(&status),
        escape(&state.settings.payments.return_url)
    )))
}
