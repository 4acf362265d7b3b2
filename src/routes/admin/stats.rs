//! `GET /admin/stats`: the figures an operator looks at every day.

use crate::domain::ids::TelegramId;
use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use chrono::{Datelike as _, NaiveDate, TimeZone as _, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::extractor::AdminUser;
use crate::db::stats;
use crate::error::{AppError, AppResult, Problem};
use crate::state::AppState;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Stats {
    pub users: UserStats,
    pub generations: GenerationStats,
    /// Credits moved `today` (UTC) and over `all_time`.
    pub credits: BTreeMap<String, CreditStats>,
    /// Rouble payments `today` and `this_month` (UTC), in kopecks.
    pub revenue: BTreeMap<String, RevenueStats>,
    /// Assistant usage, all time.
    pub assistant: AssistantStats,
    /// The ten users with the most generations.
    pub top_users: Vec<TopUser>,
    pub funnel: Funnel,
    /// Weekly signup cohorts of the last 8 weeks (weeks start on Monday, UTC).
    pub retention: Vec<Cohort>,
    /// Erased since midnight UTC: by the retention sweep (uploads) and by users (accounts).
    pub erased_today: Erased,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserStats {
    /// Accounts not erased.
    pub total: i64,
    pub new_today: i64,
    /// Logged in since midnight UTC.
    pub active_today: i64,
    /// Logged in within the last 1, 7 and 30 days.
    pub dau: i64,
    pub wau: i64,
    pub mau: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GenerationStats {
    pub total: i64,
    pub today: i64,
    pub by_status: BTreeMap<String, i64>,
    pub by_kind: BTreeMap<String, i64>,
    pub by_zone: BTreeMap<String, i64>,
    /// Failed among finished (succeeded + failed), 0..1.
    pub failure_rate: f64,
    /// From the request to the stored result, for succeeded generations.
    pub duration_p50_secs: Option<f64>,
    pub duration_p95_secs: Option<f64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreditStats {
    /// Bought, subscribed, referral and signup bonuses, support grants.
    pub granted: i64,
    /// Charged for generations and chat turns.
    pub spent: i64,
    /// Returned for failed generations and turns.
    pub refunded: i64,
    /// Taken back by support or after a refunded purchase.
    pub taken_back: i64,
    /// Free monthly actions used.
    pub free_actions: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RevenueStats {
    pub payments: i64,
    pub gross_minor: i64,
    /// НПД, 4 %.
    pub tax_minor: i64,
    pub commission_minor: i64,
    pub net_minor: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AssistantStats {
    /// Answered chat turns (tokens and cost count failed attempts too: they were billed).
    pub turns: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// Provider cost in millionths of a US dollar.
    pub cost_usd_micros: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TopUser {
    #[schema(value_type = i64)]
    pub telegram_id: TelegramId,
    pub username: Option<String>,
    pub generations: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Funnel {
    pub registered: i64,
    pub uploaded: i64,
    pub generated: i64,
    pub paid: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Cohort {
    pub cohort_week: NaiveDate,
    pub users: i64,
    /// Users of the cohort who moved credits in its week 0, 1, 2, ... up to this week.
    pub active: Vec<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Erased {
    pub uploads: i64,
    pub users: i64,
}

/// Users, generations, credits, revenue, assistant usage, top users, the funnel
/// registered → uploaded → generated → paid, and weekly retention cohorts.
#[utoipa::path(get, path = "/admin/stats", operation_id = "admin_stats", tag = "admin",
    params(("X-Admin-API-Key" = Option<String>, Header, description = "or the access token of an admin (ADMIN_IDS)")),
    responses((status = 200, body = Stats),
              (status = 401, body = Problem),
              (status = 403, description = "`not_admin`", body = Problem),
              (status = 404, description = "the admin API is off", body = Problem)))]
pub async fn get(state: web::Data<AppState>, _: AdminUser) -> AppResult<HttpResponse> {
    let now = Utc::now();
    let today = now.date_naive();
    let month = NaiveDate::from_ymd_opt(today.year(), today.month(), 1).unwrap_or(today);
    let midnight = |d: NaiveDate| Utc.from_utc_datetime(&d.and_time(chrono::NaiveTime::MIN));
    let mut conn = state.db.get().await?;
    let doc = stats::snapshot(&mut conn, midnight(today), midnight(month)).await?;
    let stats: Stats = serde_json::from_value(doc)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("stats document: {e}")))?;
    Ok(HttpResponse::Ok().json(stats))
}
