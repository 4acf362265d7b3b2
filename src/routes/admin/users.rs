//! `/admin/users/{telegram_id}`: look a user up, grant or take credits, block and unblock.
//! Every change is written to the audit trail with who did it, in the change's transaction.

use crate::domain::ids::TelegramId;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use diesel_async::AsyncConnection as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::extractor::AdminUser;
use crate::db::{generations, ledger, payments};
use crate::error::{AppError, AppResult, ErrorCode, Problem};
use crate::operators::{self, CreditMove};
use crate::realtime::generations::GenerationDto;
use crate::routes::ledger::LedgerEntryDto;
use crate::routes::me::{BalanceDto, UserDto};
use crate::routes::payments::PaymentDto;
use crate::state::AppState;

/// Entries of each list in a user lookup.
const RECENT: i64 = 20;

#[derive(Debug, Serialize, ToSchema)]
pub struct AdminUserDto {
    pub user: UserDto,
    pub balance: BalanceDto,
    pub is_blocked: bool,
    pub referral_code: String,
    pub registered_at: chrono::DateTime<Utc>,
    pub last_seen_at: chrono::DateTime<Utc>,
    /// The newest entries first.
    pub ledger: Vec<LedgerEntryDto>,
    pub generations: Vec<GenerationDto>,
    pub payments: Vec<PaymentDto>,
}

/// A user's profile, balance and plan, with their recent ledger, generations and payments.
#[utoipa::path(get, path = "/admin/users/{telegram_id}", operation_id = "admin_user", tag = "admin",
    params(("telegram_id" = i64, Path), ("X-Admin-API-Key" = Option<String>, Header)),
    responses((status = 200, body = AdminUserDto),
              (status = 401, body = Problem),
              (status = 403, body = Problem),
              (status = 404, body = Problem)))]
pub async fn get(
    state: web::Data<AppState>,
    _: AdminUser,
    telegram_id: web::Path<i64>,
) -> AppResult<HttpResponse> {
    let mut conn = state.db.get().await?;
    let user = operators::find_user(&mut conn, TelegramId(*telegram_id)).await?;
    let entries = ledger::list(&mut conn, user.id, None, RECENT).await?;
    let gens = generations::list(&mut conn, user.id, None, RECENT).await?;
    let mut paid = payments::list_for_user(&mut conn, user.id).await?;
    paid.truncate(RECENT as usize);
    Ok(HttpResponse::Ok().json(AdminUserDto {
        user: UserDto::from(&user),
        balance: BalanceDto::of(&user, state.settings.free_actions_per_month, Utc::now()),
        is_blocked: user.is_blocked,
        referral_code: user.referral_code.clone(),
        registered_at: user.created_at,
        last_seen_at: user.last_seen_at,
        ledger: entries.into_iter().map(LedgerEntryDto::from).collect(),
        generations: gens.iter().map(|g| GenerationDto::of(g, &state)).collect(),
        payments: paid.into_iter().map(PaymentDto::from).collect(),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreditsRequest {
    /// Credits to grant (positive) or take (negative; never below zero: 402 instead), at most a
    /// billion either way.
    #[schema(minimum = -1_000_000_000, maximum = 1_000_000_000)]
    pub amount: i64,
    /// Why, for the audit trail (1–200 characters once control characters are removed).
    #[schema(
        min_length = 1,
        pattern = "[^\\s\\x00-\\x1f\\x7f-\\x9f\\u200b-\\u200f\\u202a-\\u202e\\u2066-\\u2069\\ufeff]"
    )]
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreditsResult {
    pub entry: LedgerEntryDto,
    pub balance_credits: i64,
    /// True when this `Idempotency-Key` had been applied before: nothing changed now.
    pub replayed: bool,
}

/// Grants or takes credits through the ledger. `Idempotency-Key` is required: a repeated
/// request with the same key changes nothing and answers with the first entry; the same key
/// with another amount or reason is refused.
#[utoipa::path(post, path = "/admin/users/{telegram_id}/credits", tag = "admin",
    params(("telegram_id" = i64, Path), ("Idempotency-Key" = String, Header, min_length = 1, max_length = 128, pattern = "^[!-~]+$", description = "1–128 printable ASCII characters"), ("X-Admin-API-Key" = Option<String>, Header)),
    request_body = CreditsRequest,
    responses((status = 200, body = CreditsResult),
              (status = 400, description = "`missing_idempotency_key`", body = Problem),
              (status = 401, body = Problem),
              (status = 402, description = "`insufficient_credits` for a debit", body = Problem),
              (status = 403, body = Problem),
              (status = 404, body = Problem),
              (status = 422, description = "`invalid_amount`, `invalid_reason`, `idempotency_key_reused`: the key came first with another amount or reason", body = Problem)))]
#[tracing::instrument(skip_all, fields(admin = %admin, telegram_id = *telegram_id))]
pub async fn credits(
    req: HttpRequest,
    state: web::Data<AppState>,
    admin: AdminUser,
    telegram_id: web::Path<i64>,
    body: web::Json<CreditsRequest>,
) -> AppResult<HttpResponse> {
    let key = crate::routes::idempotency_key(&req, None)
        .ok()
        .flatten()
        .ok_or_else(|| {
            AppError::bad_request(
                ErrorCode::MissingIdempotencyKey,
                "send an Idempotency-Key header (1-128 printable ASCII characters)",
            )
        })?;
    let change = CreditMove::new(body.amount, &body.reason)?;
    let actor = admin.to_string();
    let mut conn = state.db.get().await?;
    let (applied, balance) = conn
        .transaction(async |conn| {
            operators::move_credits_in(conn, &actor, TelegramId(*telegram_id), &change, &key).await
        })
        .await?;
    let amount = change.amount;
    tracing::info!(amount, replayed = applied.replayed, "admin moved credits");
    Ok(HttpResponse::Ok().json(CreditsResult {
        replayed: applied.replayed,
        entry: LedgerEntryDto::from(applied.entry),
        balance_credits: balance,
    }))
}

/// A credit move's request, as its audit row keeps it (the user is in the ledger key).
#[derive(Debug, Serialize, ToSchema)]
pub struct BlockResult {
    #[schema(value_type = i64)]
    pub telegram_id: TelegramId,
    pub is_blocked: bool,
    /// Generations that had not started, canceled and refunded by a block.
    pub canceled_generations: usize,
}

/// Blocks a user: every request of theirs is refused with 403 `user_blocked`, and their
/// generations that have not started are canceled and refunded.
#[utoipa::path(post, path = "/admin/users/{telegram_id}/block", tag = "admin",
    params(("telegram_id" = i64, Path), ("X-Admin-API-Key" = Option<String>, Header)),
    responses((status = 200, body = BlockResult),
              (status = 401, body = Problem),
              (status = 403, body = Problem),
              (status = 404, body = Problem)))]
#[tracing::instrument(skip_all, fields(admin = %admin, telegram_id = *telegram_id))]
pub async fn block(
    state: web::Data<AppState>,
    admin: AdminUser,
    telegram_id: web::Path<i64>,
) -> AppResult<HttpResponse> {
    set_blocked(&state, admin, TelegramId(*telegram_id), true).await
}

/// Unblocks a user.
#[utoipa::path(post, path = "/admin/users/{telegram_id}/unblock", tag = "admin",
    params(("telegram_id" = i64, Path), ("X-Admin-API-Key" = Option<String>, Header)),
    responses((status = 200, body = BlockResult),
              (status = 401, body = Problem),
              (status = 403, body = Problem),
              (status = 404, body = Problem)))]
#[tracing::instrument(skip_all, fields(admin = %admin, telegram_id = *telegram_id))]
pub async fn unblock(
    state: web::Data<AppState>,
    admin: AdminUser,
    telegram_id: web::Path<i64>,
) -> AppResult<HttpResponse> {
    set_blocked(&state, admin, TelegramId(*telegram_id), false).await
}

async fn set_blocked(
    state: &AppState,
    admin: AdminUser,
    telegram_id: TelegramId,
    blocked: bool,
) -> AppResult<HttpResponse> {
    let actor = admin.to_string();
    let mut conn = state.db.get().await?;
    let change = conn
        .transaction(async |conn| {
            operators::set_blocked_in(conn, &actor, telegram_id, blocked).await
        })
        .await?;
    operators::after_block(state, &change).await;
    Ok(HttpResponse::Ok().json(BlockResult {
        telegram_id,
        is_blocked: blocked,
        canceled_generations: change.canceled.len(),
    }))
}
