//! The user's referral link and what it earned.

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::extractor::AuthUser;
use crate::db::referrals;
use crate::error::{AppResult, Problem};
use crate::state::AppState;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/referrals").route(web::get().to(get)));
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReferralsDto {
    #[schema(example = "k7m2pq9x")]
    pub code: String,
    /// The Mini App deep link to share: `...?startapp=ref_<code>`.
    #[schema(example = "https://t.me/atelier_bot/app?startapp=ref_k7m2pq9x")]
    pub link: String,
    /// Users who signed up through the link.
    pub invited: i64,
    /// Credits earned from them.
    pub credits_earned: i64,
    /// Credits per referred user (up to a daily cap).
    pub bonus_credits: i64,
}

/// The signed-in user's referral code, link and earnings.
#[utoipa::path(get, path = "/api/v1/referrals", operation_id = "get_referrals", tag = "me", security(("bearer" = []), ("tma" = [])),
    responses((status = 200, body = ReferralsDto), (status = 401, body = Problem)))]
pub async fn get(state: web::Data<AppState>, AuthUser(user): AuthUser) -> AppResult<HttpResponse> {
    let mut conn = state.db.get().await?;
    let (invited, credits_earned) = referrals::stats(&mut conn, user.id).await?;
    let p = &state.settings.payments;
    let separator = if p.mini_app_url.contains('?') {
        '&'
    } else {
        '?'
    };
    Ok(HttpResponse::Ok().json(ReferralsDto {
        link: format!(
            "{}{separator}startapp=ref_{}",
            p.mini_app_url, user.referral_code
        ),
        code: user.referral_code,
        invited,
        credits_earned,
        bonus_credits: p.referral_bonus_credits,
    }))
}
