//! What users are owed under privacy law: erasure of their personal data at once
//! (`DELETE /api/v1/me`) and a copy of everything held about them (`GET /api/v1/me/export`).

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::editing::SessionDto;
use super::ledger::LedgerEntryDto;
use super::me::{BalanceDto, UserDto};
use super::payments::PaymentDto;
use super::uploads::UploadDto;
use crate::accounts::{self, export::SessionHistory};
use crate::auth::extractor::AuthUserEvenBlocked;
use crate::error::AppResult;
use crate::realtime::generations::GenerationDto;
use crate::state::AppState;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/me/export").route(web::get().to(export)));
}

/// What an erasure removed, and what it kept and why.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErasureDto {
    pub erased: ErasedDto,
    pub kept: KeptDto,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErasedDto {
    /// Uploaded photos (rows and stored objects).
    pub uploads: usize,
    /// Generations (rows, prompts and result images).
    pub generations: usize,
    /// Assistant conversations (their whole history).
    pub chat_sessions: usize,
    /// Stored image objects deleted (photos and results).
    pub images: usize,
    /// Profile fields cleared: Telegram id link, names, username, photo, language.
    pub profile: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeptDto {
    /// Credit ledger entries, kept for the tax records with no link to a person.
    pub ledger_entries: usize,
    /// Payments, kept likewise (amounts, dates, taxes), their receipt contact removed.
    pub payments: usize,
    pub reason: &'static str,
}

/// Erases the signed-in user's personal data at once: photos, generations and their images,
/// assistant conversations, and the profile. The credit ledger stays for the tax records,
/// anonymised; the balance stays with it; payments and their provider notifications stay with
/// their amounts and ids, without names, contacts or card details. Generations still running
/// are refunded first. The access token stops working; the next login starts a new account,
/// which keeps what this one used of the month's free actions and of the hourly task limit.
/// A blocked user can erase too.
#[utoipa::path(delete, path = "/api/v1/me", tag = "me", security(("bearer" = []), ("tma" = [])),
    responses((status = 200, body = ErasureDto),
              (status = 401, body = crate::error::Problem)))]
#[tracing::instrument(skip_all, fields(user_id = %user.id))]
pub async fn erase(
    state: web::Data<AppState>,
    AuthUserEvenBlocked(user): AuthUserEvenBlocked,
) -> AppResult<HttpResponse> {
    let e = crate::privacy::erase(&state, &user).await?;
    tracing::info!(
        uploads = e.uploads,
        generations = e.generations,
        payment_events = e.payment_events,
        "user erased their data"
    );
    metrics::counter!("privacy_erasures_total").increment(1);
    Ok(HttpResponse::Ok().json(ErasureDto {
        erased: ErasedDto {
            uploads: e.uploads,
            generations: e.generations,
            chat_sessions: e.chat_sessions,
            images: e.images,
            profile: true,
        },
        kept: KeptDto {
            ledger_entries: e.ledger_entries,
            payments: e.payments,
            reason: "payments and credit movements are kept for tax records, without a link to you",
        },
    }))
}

/// Everything Atelier holds about a user, in one document.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExportDto {
    pub exported_at: DateTime<Utc>,
    pub user: UserDto,
    pub balance: BalanceDto,
    pub referral_code: String,
    pub registered_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    /// Photos not erased yet, with signed links that expire.
    pub uploads: Vec<UploadDto>,
    /// Every generation, with signed links to results.
    pub generations: Vec<GenerationDto>,
    /// Every credit movement, newest first.
    pub ledger: Vec<LedgerEntryDto>,
    pub payments: Vec<PaymentDto>,
    /// Assistant conversations with their whole history.
    pub chat_sessions: Vec<SessionDto>,
    /// Users who signed up through this user's link, and the credits that earned.
    pub referrals_invited: i64,
    pub referral_credits_earned: i64,
}

/// A copy of everything held about the signed-in user, as one JSON document (served as an
/// attachment), with signed links to their images. A blocked user can export too.
#[utoipa::path(get, path = "/api/v1/me/export", tag = "me", security(("bearer" = []), ("tma" = [])),
    responses((status = 200, body = ExportDto),
              (status = 401, body = crate::error::Problem)))]
#[tracing::instrument(skip_all, fields(user_id = %user.id))]
pub async fn export(
    state: web::Data<AppState>,
    AuthUserEvenBlocked(user): AuthUserEvenBlocked,
) -> AppResult<HttpResponse> {
    let e = accounts::export(&state, &user).await?;
    let doc = ExportDto {
        exported_at: e.exported_at,
        user: UserDto::from(&user),
        balance: BalanceDto::from(e.balance),
        referral_code: user.referral_code.clone(),
        registered_at: user.created_at,
        last_seen_at: user.last_seen_at,
        uploads: e.uploads.iter().map(|u| UploadDto::of(u, &state)).collect(),
        generations: e
            .generations
            .iter()
            .map(|g| GenerationDto::of(g, &state))
            .collect(),
        ledger: e.ledger.into_iter().map(LedgerEntryDto::from).collect(),
        payments: e.payments.into_iter().map(PaymentDto::from).collect(),
        chat_sessions: e
            .chat_sessions
            .into_iter()
            .map(|h| session_dto(h, &state))
            .collect(),
        referrals_invited: e.referrals_invited,
        referral_credits_earned: e.referral_credits_earned,
    };
    Ok(HttpResponse::Ok()
        .insert_header((
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"atelier-export.json\"",
        ))
        .json(doc))
}

/// A conversation as `GET /api/v1/editing/sessions/{id}` shows it, with signed photo links.
fn session_dto(h: SessionHistory, state: &AppState) -> SessionDto {
    let photos = &h.photos;
    SessionDto::of(&h.session, h.messages, |id| {
        photos.get(&id).map(|u| state.media_url(&u.storage_key))
    })
}
