//! Login with Telegram initData → our JWT.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::me::UserDto;
use crate::accounts;
use crate::auth::extractor::{Credentials, credentials};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::state::AppState;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/auth/telegram").route(web::post().to(login)));
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    /// `Telegram.WebApp.initData`, exactly as received.
    #[schema(
        example = "query_id=AAH...&user=%7B%22id%22%3A279058397...%7D&auth_date=1662771648&hash=c501b7..."
    )]
    pub init_data: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the token expires.
    pub expires_in: u64,
    pub user: UserDto,
}

/// Exchanges initData for an access token. Send `{"init_data": "..."}`, or an empty body with
/// `Authorization: tma <initData>`. Creates the user on first login.
#[utoipa::path(post, path = "/api/v1/auth/telegram", tag = "auth",
    request_body(content = Option<LoginRequest>, description = "may be empty when `Authorization: tma <initData>` is sent"),
    responses((status = 200, body = LoginResponse),
              (status = 400, description = "malformed body; `missing_init_data`: no body and a Bearer token instead of initData", body = crate::error::Problem),
              (status = 401, description = "`invalid_init_data`, `init_data_expired` or `missing_credentials`", body = crate::error::Problem),
              (status = 403, description = "`user_blocked`", body = crate::error::Problem),
              (status = 429, description = "`rate_limited`: too many logins, or failed logins, from this address", body = crate::error::Problem)))]
pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> AppResult<HttpResponse> {
    let raw = init_data(&req, &body)?;
    let ip = limit_key(&req, &state.settings.trusted_proxies);
    let login = accounts::login(&state, &raw, &ip).await?;
    Ok(HttpResponse::Ok().json(LoginResponse {
        access_token: login.access_token,
        token_type: "Bearer",
        expires_in: login.expires_in,
        user: UserDto::from(&login.user),
    }))
}

/// The raw initData of a login: the body's `init_data`, else `Authorization: tma`.
fn init_data(req: &HttpRequest, body: &[u8]) -> AppResult<String> {
    // The document allows `null` for the body, and JSON `null` means "no body" here too.
    let parsed: Option<LoginRequest> = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice(body).map_err(|e| {
            AppError::bad_request(
                ErrorCode::InvalidJson,
                format!("the body is not a login request: {e}"),
            )
        })?
    };
    if let Some(parsed) = parsed {
        return Ok(parsed.init_data);
    }
    match credentials(req)? {
        Credentials::InitData(raw) => Ok(raw),
        Credentials::Bearer(_) => Err(AppError::bad_request(
            ErrorCode::MissingInitData,
            "send init_data in the body or Authorization: tma",
        )),
    }
}

/// The address limits are keyed by: the client as our proxies saw it (`TRUSTED_PROXIES`), the
/// connecting peer itself when it is not one of them, else (an unreadable header) the peer.
fn limit_key(req: &HttpRequest, trusted: &[crate::domain::net::Network]) -> String {
    super::client_ip(req, trusted)
        .or_else(|| req.peer_addr().map(|a| a.ip()))
        .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
}
