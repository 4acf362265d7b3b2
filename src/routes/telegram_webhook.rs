//! The bot's webhook (`setWebhook` with a `secret_token`): Telegram Stars pre-checkout queries,
//! successful and refunded payments go to `billing::stars`, everything else to `crate::bot`.

use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{AppError, AppResult, ErrorCode, Problem};
use crate::state::AppState;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/telegram/webhook")
            .app_data(web::PayloadConfig::new(256 * 1024))
            .route(web::post().to(webhook)),
    );
}

/// Both sides hashed first, so the comparison takes the same time whatever the lengths.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    Sha256::digest(given)
        .ct_eq(&Sha256::digest(expected))
        .into()
}

/// Telegram's updates for the bot, checked by `X-Telegram-Bot-Api-Secret-Token`. A
/// `pre_checkout_query` is answered at once (Telegram allows 10 s); a `successful_payment`
/// grants the purchase once per `telegram_payment_charge_id`, a `refunded_payment` takes it back.
/// Messages (commands), button presses and `my_chat_member` changes go to the bot, each acted
/// on once per `update_id`. An update that cannot be read is acknowledged (200) and logged:
/// Telegram would otherwise send it again and again.
#[utoipa::path(post, path = "/api/v1/telegram/webhook", operation_id = "telegram_webhook", tag = "payments",
    params(("X-Telegram-Bot-Api-Secret-Token" = String, Header, description = "the secret_token given to setWebhook")),
    request_body(content = crate::billing::stars::Update, description = "a Telegram Update"),
    responses((status = 200, description = "handled, or ignored (including a body that is not an Update, which is logged)"),
              (status = 401, description = "`invalid_secret_token`", body = Problem),
              (status = 404, description = "the webhook is off (no TELEGRAM_WEBHOOK_SECRET)", body = Problem),
              (status = 503, description = "try again: Telegram sends the update again", body = Problem)))]
pub async fn webhook(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> AppResult<HttpResponse> {
    let Some(secret) = &state.settings.payments.telegram_webhook_secret else {
        return Err(AppError::not_found("the Telegram webhook is off"));
    };
    let given = req
        .headers()
        .get("x-telegram-bot-api-secret-token")
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !same_secret(given, secret.expose_secret().as_bytes()) {
        return Err(AppError::unauthorized(
            ErrorCode::InvalidSecretToken,
            "X-Telegram-Bot-Api-Secret-Token does not match",
        ));
    }
    match crate::bot::handle_webhook(&state, &body).await {
        // Telegram resends an update on any non-2xx: one we refuse (say a name PostgreSQL cannot
        // store) is acknowledged and dropped, only our own failures ask for it again.
        Err(e) if e.status_code().is_client_error() => {
            tracing::warn!(code = %e.code(), "Telegram update refused and dropped: {e}");
        }
        result => result?,
    }
    Ok(HttpResponse::Ok().finish())
}
