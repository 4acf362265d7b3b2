//! The user's credit history: every ledger entry, newest first, with a readable reason.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::extractor::AuthUser;
use crate::db::ledger;
use crate::db::models::LedgerEntry;
use crate::domain::credits::Reason;
use crate::error::{AppError, AppResult, ErrorCode, Problem};
use crate::state::AppState;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/ledger").route(web::get().to(list)));
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct LedgerQuery {
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Entries per page, 1–100 (default 50).
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerEntryDto {
    pub id: i64,
    /// Credits added (positive) or taken (negative); 0 for a free action.
    pub delta: i64,
    pub balance_after: i64,
    pub reason: String,
    /// The reason in words.
    #[schema(example = "Credit pack purchase")]
    pub description: String,
    /// What caused it (`payment`, `generation`, `referral`, ...) and its id.
    pub ref_type: Option<String>,
    pub ref_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerPage {
    pub items: Vec<LedgerEntryDto>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    pub next_cursor: Option<String>,
}

fn describe(reason: &str) -> &'static str {
    match Reason::parse(reason) {
        Some(Reason::SignupBonus) => "Welcome bonus",
        Some(Reason::FreeAllowance) => "Free monthly action",
        Some(Reason::Purchase) => "Credit pack purchase",
        Some(Reason::Subscription) => "Subscription credits",
        Some(Reason::ReferralBonus) => "Referral bonus",
        Some(Reason::Charge) => "Generation",
        Some(Reason::Refund) => "Refund of a failed generation",
        Some(Reason::AdminGrant) => "Granted by support",
        Some(Reason::AdminDebit) => "Taken by support",
        Some(Reason::PurchaseRefund) => "Refunded purchase taken back",
        Some(Reason::ReferralRefund) => "Referral bonus taken back (the payment was refunded)",
        None => "Other",
    }
}

impl From<LedgerEntry> for LedgerEntryDto {
    fn from(e: LedgerEntry) -> Self {
        Self {
            description: describe(&e.reason).to_owned(),
            id: e.id,
            delta: e.delta,
            balance_after: e.balance_after,
            reason: e.reason,
            ref_type: e.ref_type,
            ref_id: e.ref_id,
            created_at: e.created_at,
        }
    }
}

/// The user's ledger entries, newest first.
#[utoipa::path(get, path = "/api/v1/ledger", operation_id = "list_ledger", tag = "me", security(("bearer" = []), ("tma" = [])),
    params(LedgerQuery),
    responses((status = 200, body = LedgerPage), (status = 400, description = "`invalid_cursor`", body = Problem)))]
pub async fn list(
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    query: web::Query<LedgerQuery>,
) -> AppResult<HttpResponse> {
    let before = query
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<i64>().map_err(|_| {
                AppError::bad_request(ErrorCode::InvalidCursor, "cursor is not one of ours")
            })
        })
        .transpose()?;
    let limit = query.limit.unwrap_or(50).clamp(1, 100);
    let mut conn = state.db.get().await?;
    let entries = ledger::list(&mut conn, user.id, before, limit + 1).await?;
    let more = entries.len() as i64 > limit;
    let items: Vec<LedgerEntryDto> = entries
        .into_iter()
        .take(limit as usize)
        .map(LedgerEntryDto::from)
        .collect();
    let next_cursor = more
        .then(|| items.last().map(|e| e.id.to_string()))
        .flatten();
    Ok(HttpResponse::Ok().json(LedgerPage { items, next_cursor }))
}
