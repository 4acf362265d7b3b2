//! The demo Mini App page (`/`, `static/demo/`) and the dev-only initData signer it logs in
//! with outside Telegram. Neither exists in production: both answer 404 there, exactly as an
//! unknown route does.

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use validator::Validate;

use crate::auth::initdata;
use crate::config::{DEV_BOT_TOKEN, InitDataKey};
use crate::error::{AppError, AppResult, Problem};
use crate::http::validated::{ValidatedJson, patterns};
use crate::state::AppState;

const INDEX_HTML: &str = include_str!("../../static/demo/index.html");
const APP_JS: &str = include_str!("../../static/demo/app.js");
const STYLE_CSS: &str = include_str!("../../static/demo/style.css");

/// Scripts and styles only from here (and Telegram's script, loaded inside Telegram only), no
/// inline code; images from here and from `PUBLIC_BASE_URL` (signed media links); sockets to here.
fn content_security_policy(public_base_url: &str) -> String {
    let media = reqwest::Url::parse(public_base_url)
        .map(|u| u.origin().ascii_serialization())
        .ok()
        .filter(|origin| origin != "null")
        .unwrap_or_default();
    format!(
        "default-src 'none'; script-src 'self' https://telegram.org; style-src 'self'; \
         img-src 'self' blob: {media}; connect-src 'self' ws: wss:; base-uri 'none'; \
         form-action 'none'"
    )
}

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/").route(web::get().to(index)))
        .service(web::resource("/demo/app.js").route(web::get().to(app_js)))
        .service(web::resource("/demo/style.css").route(web::get().to(style_css)))
        .service(web::resource("/dev/init-data").route(web::post().to(sign_init_data)));
}

/// The demo exists only outside production; there it is an unknown route.
fn outside_production(state: &AppState) -> AppResult<()> {
    if state.settings.is_production() {
        return Err(AppError::not_found("no such route"));
    }
    Ok(())
}

fn asset(
    state: &AppState,
    content_type: &'static str,
    body: &'static str,
) -> AppResult<HttpResponse> {
    outside_production(state)?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            content_security_policy(&state.settings.public_base_url),
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(body))
}

async fn index(state: web::Data<AppState>) -> AppResult<HttpResponse> {
    asset(&state, "text/html; charset=utf-8", INDEX_HTML)
}

async fn app_js(state: web::Data<AppState>) -> AppResult<HttpResponse> {
    asset(&state, "text/javascript; charset=utf-8", APP_JS)
}

async fn style_css(state: web::Data<AppState>) -> AppResult<HttpResponse> {
    asset(&state, "text/css; charset=utf-8", STYLE_CSS)
}

#[derive(Debug, Deserialize, ToSchema, Validate)]
#[serde(deny_unknown_fields)]
pub struct DevInitDataRequest {
    /// The test user's Telegram id (1 to 2^53 − 1, as Telegram's ids fit in a double).
    #[schema(example = 42, minimum = 1, maximum = 9_007_199_254_740_991_i64)]
    #[validate(range(
        min = 1,
        max = 9_007_199_254_740_991_i64,
        code = "invalid_field",
        message = "user_id must be between 1 and 2^53 - 1"
    ))]
    pub user_id: i64,
    /// 1–64 characters, no control characters.
    #[schema(
        example = "Anna",
        min_length = 1,
        max_length = 64,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    #[validate(
        length(
            min = 1,
            max = 64,
            code = "invalid_field",
            message = "first_name must be 1 to 64 characters without control characters"
        ),
        non_control_character(
            code = "invalid_field",
            message = "first_name must be 1 to 64 characters without control characters"
        )
    )]
    pub first_name: String,
    /// 5–32 letters, digits and underscores.
    #[schema(example = "anna_test", pattern = "^[A-Za-z0-9_]{5,32}$")]
    #[validate(regex(path = *patterns::USERNAME_RE, code = "invalid_field", message = "username must be 5 to 32 letters, digits or underscores"))]
    pub username: Option<String>,
    /// As a `startapp` link carries it, e.g. `ref_<code>` (1–64 letters, digits, `_`, `-`).
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    #[validate(regex(path = *patterns::START_PARAM_RE, code = "invalid_field", message = "start_param must be 1 to 64 letters, digits, '_' or '-'"))]
    pub start_param: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DevInitData {
    /// Signed initData: send it to `POST /api/v1/auth/telegram`.
    pub init_data: String,
}

/// Development only: signs initData for a test user with the development bot token, as Telegram
/// does for a Mini App, so that the demo page can log in outside Telegram. 404 in production and
/// beside any real credential (a real bot's token, Telegram's public key, a YooKassa, kie.ai or
/// OpenRouter key): a deployment that forgot `APP_ENV=production` must not sign logins for anyone,
/// admins included.
#[utoipa::path(post, path = "/dev/init-data", tag = "dev",
    request_body = DevInitDataRequest,
    responses((status = 200, body = DevInitData),
              (status = 400, description = "`invalid_json`: not JSON", body = Problem),
              (status = 404, description = "production, or a real credential (bot token, Telegram's key, a provider's key) is configured", body = Problem),
              (status = 422, description = "`invalid_body` (a missing, unknown or mistyped field), `invalid_field` (a value out of range)", body = Problem)))]
pub async fn sign_init_data(
    state: web::Data<AppState>,
    body: ValidatedJson<DevInitDataRequest>,
) -> AppResult<HttpResponse> {
    outside_production(&state)?;
    if !state.settings.real_credentials().is_empty() {
        return Err(AppError::not_found(
            "a real credential is configured: log in from Telegram",
        ));
    }
    let InitDataKey::BotToken(token) = &state.settings.init_data_key else {
        return Err(AppError::not_found(
            "initData is checked with Telegram's public key: nothing here can sign it",
        ));
    };
    if token.expose_secret() != DEV_BOT_TOKEN {
        return Err(AppError::not_found(
            "only the development bot token signs here; log in from Telegram",
        ));
    }
    let user = test_user(&body);
    let auth_date = chrono::Utc::now().timestamp().to_string();
    let query_id = format!("AA{}", body.user_id);
    let mut pairs = vec![
        ("query_id", query_id.as_str()),
        ("user", user.as_str()),
        ("auth_date", auth_date.as_str()),
    ];
    if let Some(sp) = body.start_param.as_deref() {
        pairs.push(("start_param", sp));
    }
    Ok(HttpResponse::Ok().json(DevInitData {
        init_data: initdata::sign(token.expose_secret(), &pairs),
    }))
}

/// The `user` field of the initData (the request's rules have checked every field).
fn test_user(req: &DevInitDataRequest) -> String {
    let mut user = serde_json::json!({"id": req.user_id, "first_name": req.first_name,
        "language_code": "en", "allows_write_to_pm": true});
    if let Some(username) = &req.username {
        user["username"] = username.as_str().into();
    }
    user.to_string()
}
