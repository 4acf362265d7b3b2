//! The signed-in user's profile and balance.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::accounts::Balance;
use crate::auth::extractor::AuthUser;
use crate::db::models::User;
use crate::error::AppResult;
use crate::state::AppState;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/me")
            .route(web::get().to(me))
            .route(web::patch().to(patch_me))
            .route(web::delete().to(super::privacy::erase)),
    )
    .service(web::resource("/balance").route(web::get().to(balance)));
}

/// A user as clients see them. `id` is the Telegram id.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserDto {
    #[schema(example = 279058397)]
    pub id: i64,
    pub username: Option<String>,
    pub first_name: String,
    pub last_name: Option<String>,
    pub language_code: Option<String>,
    pub is_premium: bool,
    pub photo_url: Option<String>,
    pub allows_write_to_pm: bool,
    /// Share as `startapp=ref_<code>` to invite friends.
    pub referral_code: String,
    pub created_at: DateTime<Utc>,
}

impl From<&User> for UserDto {
    fn from(u: &User) -> Self {
        Self {
            id: u.telegram_id.get(),
            username: u.username.clone(),
            first_name: u.first_name.clone(),
            last_name: u.last_name.clone(),
            language_code: u.language_code.clone(),
            is_premium: u.is_premium,
            photo_url: u.photo_url.clone(),
            allows_write_to_pm: u.allows_write_to_pm,
            referral_code: u.referral_code.clone(),
            created_at: u.created_at,
        }
    }
}

/// What the user can spend: credits, the active plan, and free actions left this month.
#[derive(Debug, Serialize, ToSchema)]
pub struct BalanceDto {
    pub balance_credits: i64,
    /// `basic`, `pro` or `premium` while a plan is active, else null.
    pub subscription_plan: Option<String>,
    pub subscription_until: Option<DateTime<Utc>>,
    pub free_actions_limit: i32,
    pub free_actions_used: i32,
    pub free_actions_left: i32,
    /// When the free actions reset (the first day of next month, UTC).
    pub free_actions_reset_at: DateTime<Utc>,
}

impl BalanceDto {
    pub fn of(user: &User, free_limit: i32, now: DateTime<Utc>) -> Self {
        Self::from(Balance::of(user, free_limit, now))
    }
}

impl From<Balance> for BalanceDto {
    fn from(b: Balance) -> Self {
        Self {
            balance_credits: b.balance_credits,
            subscription_plan: b.subscription_plan,
            subscription_until: b.subscription_until,
            free_actions_limit: b.free_actions_limit,
            free_actions_used: b.free_actions_used,
            free_actions_left: b.free_actions_left,
            free_actions_reset_at: b.free_actions_reset_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MeDto {
    #[serde(flatten)]
    pub user: UserDto,
    #[serde(flatten)]
    pub balance: BalanceDto,
}

/// The signed-in user's profile with their balance.
#[utoipa::path(get, path = "/api/v1/me", tag = "me", security(("bearer" = []), ("tma" = [])),
    responses((status = 200, body = MeDto), (status = 401, body = crate::error::Problem),
              (status = 403, description = "the user is blocked (`user_blocked`)", body = crate::error::Problem)))]
pub async fn me(state: web::Data<AppState>, AuthUser(user): AuthUser) -> AppResult<HttpResponse> {
    let balance = BalanceDto::of(&user, state.settings.free_actions_per_month, Utc::now());
    Ok(HttpResponse::Ok().json(MeDto {
        user: UserDto::from(&user),
        balance,
    }))
}

/// What `PATCH /api/v1/me` changes; an absent field stays as it is.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(
    deny_unknown_fields,
    try_from = "serde_json::Map<String, serde_json::Value>"
)]
pub struct MePatch {
    /// Telegram notices from the bot (a failed generation refunded, a payment credited, a
    /// referral bonus). On by default.
    pub notices: Option<bool>,
    /// The monthly "free actions are back" notice. Off by default (opt-in).
    pub free_actions_back: Option<bool>,
}

/// [`MePatch`]'s fields, read from a JSON object only: serde's derive alone would also take them
/// as an array (`[true, null]`), which the document does not allow.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MePatchFields {
    notices: Option<bool>,
    free_actions_back: Option<bool>,
}

impl TryFrom<serde_json::Map<String, serde_json::Value>> for MePatch {
    type Error = serde_json::Error;

    fn try_from(object: serde_json::Map<String, serde_json::Value>) -> Result<Self, Self::Error> {
        let fields: MePatchFields = serde_json::from_value(object.into())?;
        Ok(Self {
            notices: fields.notices,
            free_actions_back: fields.free_actions_back,
        })
    }
}

/// The user's notice choices after the change.
#[derive(Debug, Serialize, ToSchema)]
pub struct NoticesDto {
    pub notices: bool,
    pub free_actions_back: bool,
}

/// Changes the signed-in user's notice choices (the bot's `/notices` does the same).
#[utoipa::path(patch, path = "/api/v1/me", tag = "me", security(("bearer" = []), ("tma" = [])),
    request_body = MePatch,
    responses((status = 200, body = NoticesDto), (status = 401, body = crate::error::Problem),
              (status = 422, description = "`invalid_body`: unknown or ill-typed fields", body = crate::error::Problem)))]
pub async fn patch_me(
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    body: web::Json<MePatch>,
) -> AppResult<HttpResponse> {
    let body = body.into_inner();
    let choices =
        crate::notices::set_choices(&state, user.id, body.notices, body.free_actions_back).await?;
    Ok(HttpResponse::Ok().json(NoticesDto {
        notices: choices.notices,
        free_actions_back: choices.free_actions_back,
    }))
}

/// The money part of `/me`: credits, plan and free actions.
#[utoipa::path(get, path = "/api/v1/balance", tag = "me", security(("bearer" = []), ("tma" = [])),
    responses((status = 200, body = BalanceDto), (status = 401, body = crate::error::Problem)))]
pub async fn balance(
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
) -> AppResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(BalanceDto::of(
        &user,
        state.settings.free_actions_per_month,
        Utc::now(),
    )))
}
