//! The one error type of the HTTP layer. Every failure becomes RFC 9457
//! `application/problem+json` with a stable machine `code` that the frontend localises.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use serde::Serialize;
use serde_json::{Map, Value};

pub type AppResult<T> = Result<T, AppError>;

pub const PROBLEM_JSON: &str = "application/problem+json";

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A client error with its HTTP status and stable code.
    #[error("{code}: {detail}")]
    Client {
        status: StatusCode,
        code: &'static str,
        detail: String,
    },
    /// Missing or bad credentials: 401 with `WWW-Authenticate`.
    #[error("unauthorized ({code}): {detail}")]
    Unauthorized { code: &'static str, detail: String },
    #[error("insufficient credits: {required} required, {available} available")]
    InsufficientCredits { required: i64, available: i64 },
    #[error("rate limited, retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Database(#[from] DieselError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Client {
            status: StatusCode::BAD_REQUEST,
            code,
            detail: detail.into(),
        }
    }
    pub fn unprocessable(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Client {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code,
            detail: detail.into(),
        }
    }
    pub fn forbidden(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Client {
            status: StatusCode::FORBIDDEN,
            code,
            detail: detail.into(),
        }
    }
    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Client {
            status: StatusCode::CONFLICT,
            code,
            detail: detail.into(),
        }
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::Client {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            detail: detail.into(),
        }
    }
    pub fn unauthorized(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Unauthorized {
            code,
            detail: detail.into(),
        }
    }
    pub fn user_blocked() -> Self {
        Self::forbidden("user_blocked", "this account is blocked; contact support")
    }

    /// The stable machine code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Client { code, .. } | Self::Unauthorized { code, .. } => code,
            Self::InsufficientCredits { .. } => "insufficient_credits",
            Self::RateLimited { .. } => "rate_limited",
            Self::Unavailable(_) => "service_unavailable",
            Self::Database(e) => db_error_parts(e).1,
            Self::Internal(_) => "internal_error",
        }
    }

    fn detail(&self) -> String {
        match self {
            Self::Client { detail, .. } | Self::Unauthorized { detail, .. } => detail.clone(),
            Self::InsufficientCredits {
                required,
                available,
            } => {
                format!("this action costs {required} credits and {available} are available")
            }
            Self::RateLimited { retry_after_secs } => {
                format!("too many requests; retry in {retry_after_secs} s")
            }
            Self::Unavailable(_) => "a backing service is unavailable; retry shortly".into(),
            Self::Database(e) => match db_error_parts(e) {
                (StatusCode::NOT_FOUND, ..) => "the resource does not exist".into(),
                (StatusCode::CONFLICT, code) => format!("conflicts with existing data ({code})"),
                (StatusCode::BAD_REQUEST, _) => "text must not contain U+0000".into(),
                _ => "an internal error occurred".into(),
            },
            Self::Internal(_) => "an internal error occurred".into(),
        }
    }
}

/// Maps a database error to a status and code: not found → 404, unique violations → 409
/// named by constraint, U+0000 in client text → 400, everything else is internal.
fn db_error_parts(e: &DieselError) -> (StatusCode, &'static str) {
    match e {
        DieselError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
            let code = match info.constraint_name() {
                Some("credit_ledger_idempotency_key_key") => "idempotency_conflict",
                _ => "conflict",
            };
            (StatusCode::CONFLICT, code)
        }
        DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => {
            (StatusCode::SERVICE_UNAVAILABLE, "service_unavailable")
        }
        // PostgreSQL keeps no U+0000 in text (22021) or jsonb (22P05): client text that
        // carries one is refused as the client's error, wherever it reaches a query.
        DieselError::DatabaseError(_, info)
            if info.message().contains("0x00")
                || info
                    .message()
                    .contains("unsupported Unicode escape sequence") =>
        {
            (StatusCode::BAD_REQUEST, "nul_character")
        }
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
    }
}

/// The RFC 9457 body. `code` is ours; extension members are flattened in.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub code: String,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub extensions: Map<String, Value>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Self {
        Self {
            type_: format!("/problems/{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            code: code.to_owned(),
            extensions: Map::new(),
        }
    }

    pub fn response(&self) -> HttpResponse {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(self).unwrap_or_default();
        HttpResponse::build(status)
            .insert_header((header::CONTENT_TYPE, PROBLEM_JSON))
            .body(body)
    }
}

impl From<crate::domain::idempotency::KeyReused> for AppError {
    fn from(e: crate::domain::idempotency::KeyReused) -> Self {
        Self::unprocessable(
            "idempotency_key_reused",
            format!("{e}; send a new key for a new request"),
        )
    }
}

/// What the client hears about a failed chat turn (always refunded).
impl From<crate::assistant::TurnFailed> for AppError {
    fn from(e: crate::assistant::TurnFailed) -> Self {
        use crate::assistant::TurnFailed;
        let (status, code) = match e {
            TurnFailed::MessageRejected => (StatusCode::UNPROCESSABLE_ENTITY, "message_rejected"),
            TurnFailed::BadReply => (StatusCode::BAD_GATEWAY, "assistant_bad_reply"),
            TurnFailed::SessionDeleted => (StatusCode::NOT_FOUND, "not_found"),
            TurnFailed::Failed => (StatusCode::BAD_GATEWAY, "assistant_failed"),
            TurnFailed::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "assistant_unavailable"),
        };
        Self::Client {
            status,
            code,
            detail: format!("{e}; the charge was refunded"),
        }
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Client { status, .. } => *status,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::InsufficientCredits { .. } => StatusCode::PAYMENT_REQUIRED,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Database(e) => db_error_parts(e).0,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        match self {
            Self::Internal(e) => tracing::error!(error = ?e, "internal error"),
            Self::Unavailable(why) => tracing::warn!(%why, "service unavailable"),
            Self::Database(e) if status.is_server_error() => {
                tracing::error!(error = %e, "database error")
            }
            _ => tracing::debug!(code = self.code(), "client error"),
        }
        let mut problem = Problem::new(status, self.code(), self.detail());
        if let Self::InsufficientCredits {
            required,
            available,
        } = self
        {
            problem
                .extensions
                .insert("required".into(), (*required).into());
            problem
                .extensions
                .insert("available".into(), (*available).into());
        }
        let mut response = problem.response();
        let headers = response.headers_mut();
        match self {
            Self::Unauthorized { code, .. } => {
                let value = format!(r#"Bearer realm="atelier", error="{code}""#);
                if let Ok(v) = HeaderValue::from_str(&value) {
                    headers.insert(header::WWW_AUTHENTICATE, v);
                }
            }
            Self::RateLimited { retry_after_secs } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            Self::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(5u32));
            }
            _ => {}
        }
        response
    }
}

impl From<deadpool_redis::PoolError> for AppError {
    fn from(e: deadpool_redis::PoolError) -> Self {
        Self::Unavailable(format!("redis pool: {e}"))
    }
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for AppError {
    fn from(e: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        Self::Unavailable(format!("database pool: {e}"))
    }
}
