//! `AuthUser`: the signed-in user of a request, from `Authorization: Bearer <jwt>` or
//! `Authorization: tma <initData>`. Blocked users are refused here, once for every route.
//! `AuthUserEvenBlocked`: the same sign-in, blocked users included; only for the rights a block
//! does not take away (erasure and export of one's data).
//! `AdminUser`: an operator of `/admin`, by `X-Admin-API-Key` or an admin's access token.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};

use secrecy::ExposeSecret as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::Blocked;
use crate::db::models::User;
use crate::error::{AppError, ErrorCode};
use crate::state::AppState;

#[derive(Debug, Clone)]
pub struct AuthUser(pub User);

/// The signed-in user even when blocked: erasure (`DELETE /api/v1/me`) and export
/// (`GET /api/v1/me/export`) are rights a block does not take away. Every other route takes
/// [`AuthUser`].
#[derive(Debug, Clone)]
pub struct AuthUserEvenBlocked(pub User);

pub enum Credentials {
    Bearer(String),
    InitData(String),
}

/// Reads the credentials of a request's `Authorization` header.
pub fn credentials(req: &HttpRequest) -> Result<Credentials, AppError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| {
            AppError::unauthorized(
                ErrorCode::MissingCredentials,
                "send Authorization: Bearer <token>",
            )
        })?
        .to_str()
        .map_err(|_| {
            AppError::unauthorized(
                ErrorCode::InvalidToken,
                "the Authorization header is not readable",
            )
        })?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if rest.is_empty() {
        return Err(AppError::unauthorized(
            ErrorCode::MissingCredentials,
            "the Authorization header has no credentials",
        ));
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        Ok(Credentials::Bearer(rest.to_owned()))
    } else if scheme.eq_ignore_ascii_case("tma") {
        Ok(Credentials::InitData(rest.to_owned()))
    } else {
        Err(AppError::unauthorized(
            ErrorCode::InvalidToken,
            "use the Bearer or tma scheme",
        ))
    }
}

impl FromRequest for AuthUser {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let user = signed_in(req, Blocked::Refused);
        Box::pin(async move { Ok(AuthUser(user.await?)) })
    }
}

impl FromRequest for AuthUserEvenBlocked {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let user = signed_in(req, Blocked::Admitted);
        Box::pin(async move { Ok(AuthUserEvenBlocked(user.await?)) })
    }
}

/// The user of a request's credentials: an access token, or initData (which signs in).
fn signed_in(
    req: &HttpRequest,
    blocked: Blocked,
) -> impl Future<Output = Result<User, AppError>> + 'static {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let creds = credentials(req);
    async move {
        let state = state
            .ok_or_else(|| AppError::Internal(anyhow::anyhow!("AppState is not registered")))?;
        match creds? {
            Credentials::Bearer(token) => {
                Ok(super::user_for_token(&state, &token, blocked).await?.user)
            }
            Credentials::InitData(raw) => {
                crate::accounts::user_for_init_data(&state, &raw, blocked).await
            }
        }
    }
}

/// Who is acting on `/admin`: the holder of `ADMIN_API_KEY`, or a user listed in `ADMIN_IDS`
/// signed in with their access token. With no `ADMIN_API_KEY` the admin API is off (404).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminUser {
    ApiKey,
    Telegram(i64),
}

impl std::fmt::Display for AdminUser {
    /// The actor as recorded in logs and the audit trail.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ApiKey => f.write_str("api_key"),
            Self::Telegram(id) => write!(f, "telegram:{id}"),
        }
    }
}

impl FromRequest for AdminUser {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let Some(state) = state else {
            return Box::pin(async {
                Err(AppError::Internal(anyhow::anyhow!(
                    "AppState is not registered"
                )))
            });
        };
        let Some(expected) = state.settings.admin_api_key.clone() else {
            return Box::pin(async { Err(AppError::not_found("the admin API is off")) });
        };
        if let Some(given) = req.headers().get("x-admin-api-key") {
            // Hashing both sides first keeps the comparison's time independent of the lengths.
            let same: bool = Sha256::digest(given.as_bytes())
                .ct_eq(&Sha256::digest(expected.expose_secret().as_bytes()))
                .into();
            return Box::pin(async move {
                if same {
                    Ok(AdminUser::ApiKey)
                } else {
                    Err(AppError::unauthorized(
                        ErrorCode::InvalidAdminKey,
                        "the X-Admin-API-Key is not valid",
                    ))
                }
            });
        }
        let user = AuthUser::from_request(req, payload);
        Box::pin(async move {
            let AuthUser(user) = user.await.map_err(|e| match e.code() {
                ErrorCode::MissingCredentials => AppError::unauthorized(
                    ErrorCode::MissingCredentials,
                    "send X-Admin-API-Key, or the access token of an admin",
                ),
                _ => e,
            })?;
            if state.settings.admin_ids.contains(&user.telegram_id.get()) {
                Ok(AdminUser::Telegram(user.telegram_id.get()))
            } else {
                Err(AppError::forbidden(
                    ErrorCode::NotAdmin,
                    "this account is not an admin",
                ))
            }
        })
    }
}
