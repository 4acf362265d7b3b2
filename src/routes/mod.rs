//! HTTP routes, one module per resource; each exposes `config(cfg)`.

pub mod admin;
pub mod auth;
pub mod demo;
pub mod docs;
pub mod editing;
pub mod generations;
pub mod health;
pub mod ledger;
pub mod me;
pub mod payments;
pub mod privacy;
pub mod referrals;
pub mod telegram_webhook;
pub mod uploads;

use actix_web::{HttpRequest, web};

use crate::error::ErrorCode;

/// Every route of the API.
pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.configure(health::config)
        .configure(docs::config)
        .configure(uploads::media_config)
        .configure(payments::sandbox_config)
        .configure(admin::config)
        .configure(demo::config)
        .service(
            web::scope("/api/v1")
                .configure(auth::config)
                .configure(me::config)
                .configure(privacy::config)
                .configure(crate::realtime::ws::config)
                .configure(uploads::config)
                .configure(generations::config)
                .configure(payments::config)
                .configure(referrals::config)
                .configure(ledger::config)
                .configure(telegram_webhook::config)
                .configure(editing::config),
        );
}

/// Where a keyset page starts: strictly before this (time, id).
pub type Cursor = (chrono::DateTime<chrono::Utc>, uuid::Uuid);

/// A keyset page request shared by the lists ordered by (time, id), newest first: `limit`
/// (default 20) and the `cursor` a previous page handed out, both in the shape their query's
/// rules let through (1–100; `<microseconds>_<uuid>`).
pub fn page(
    limit: Option<i64>,
    cursor: Option<&str>,
) -> crate::error::AppResult<(i64, Option<Cursor>)> {
    use crate::error::AppError;
    let limit = limit.unwrap_or(20);
    let parse = |c: &str| -> Option<Cursor> {
        let (micros, id) = c.split_once('_')?;
        Some((
            chrono::DateTime::from_timestamp_micros(micros.parse().ok()?)?,
            id.parse().ok()?,
        ))
    };
    let before = cursor
        .map(|c| {
            parse(c).ok_or_else(|| {
                AppError::bad_request(ErrorCode::InvalidCursor, "the cursor is not one of ours")
            })
        })
        .transpose()?;
    Ok((limit, before))
}

/// The address a request came from, as far as our proxies (`TRUSTED_PROXIES`) vouch for it
/// (`domain::net::client_ip`); `None` when it cannot be told.
pub fn client_ip(
    req: &HttpRequest,
    trusted: &[crate::domain::net::Network],
) -> Option<std::net::IpAddr> {
    let forwarded: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .collect();
    crate::domain::net::client_ip(req.peer_addr().map(|a| a.ip()), &forwarded, trusted)
}

/// [`idempotency_key`] where it is called `client_request_id`: 422 `invalid_client_request_id`
/// when it is not 1–128 printable ASCII characters.
pub fn client_request_id(
    req: &HttpRequest,
    from_body: Option<String>,
) -> crate::error::AppResult<Option<String>> {
    idempotency_key(req, from_body).map_err(|_| {
        crate::error::AppError::unprocessable(
            ErrorCode::InvalidClientRequestId,
            "1–128 printable ASCII characters",
        )
    })
}

/// A request's idempotency key that is not 1–128 printable ASCII characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidKey;

/// The idempotency key of a request: `from_body` (a `client_request_id`, which its DTO's
/// rules have checked), else the `Idempotency-Key` header. A header that is sent is checked even when the body names the key.
pub fn idempotency_key(
    req: &HttpRequest,
    from_body: Option<String>,
) -> Result<Option<String>, InvalidKey> {
    let valid = |key: &str| crate::billing::valid_client_key(key);
    let header = match req.headers().get("idempotency-key") {
        None => None,
        Some(v) => match v.to_str() {
            Ok(key) if valid(key) => Some(key.to_owned()),
            _ => return Err(InvalidKey),
        },
    };
    // A body's key has been checked by its DTO's rules.
    Ok(from_body.or(header))
}
