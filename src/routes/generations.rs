//! Starting try-ons and edits (charged once, in the transaction that queues them), reading and
//! cancelling them, and the kie.ai callback that wakes a waiting job early.

use crate::domain::ids::UserId;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use validator::Validate;

use crate::auth::extractor::AuthUser;
use crate::db::generations;
use crate::db::models::Generation;
use crate::domain::text;
use crate::domain::zones::Zone;
use crate::error::{AppError, AppResult, ErrorCode, Problem};
use crate::generations::NewGeneration;
use crate::http::validated::{ValidatedJson, ValidatedQuery, patterns};
use crate::realtime;
use crate::realtime::generations::GenerationDto;
use crate::state::AppState;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/fitting/generate").route(web::post().to(fitting_generate)))
        .service(web::resource("/editing/generate").route(web::post().to(editing_generate)))
        .service(web::resource("/generations").route(web::get().to(list)))
        .service(
            web::resource("/generations/{id}")
                .route(web::get().to(get))
                .route(web::delete().to(delete)),
        )
        .service(web::resource("/generations/{id}/cancel").route(web::post().to(cancel)))
        .service(web::resource("/callbacks/kie").route(web::post().to(kie_callback)));
}

#[derive(Debug, Deserialize, ToSchema, Validate)]
#[serde(deny_unknown_fields)]
pub struct FittingRequest {
    pub person_upload_id: Uuid,
    pub item_upload_id: Uuid,
    /// What is tried on; each zone has its own prompt.
    pub zone: Zone,
    /// Makes the request idempotent (or send `Idempotency-Key`): a repeat returns the first
    /// generation and never charges twice. 1–128 printable ASCII characters.
    #[schema(min_length = 1, max_length = 128, pattern = "^[!-~]+$")]
    #[validate(
        length(min = 1, max = 128, code = "invalid_client_request_id", message = "1–128 printable ASCII characters"),
        regex(path = *patterns::PRINTABLE_ASCII_RE, code = "invalid_client_request_id", message = "1–128 printable ASCII characters")
    )]
    pub client_request_id: Option<String>,
}

/// Either `prompt` (with `upload_id`, or a `session_id` whose photo is edited), or
/// `session_id` + `variant_index`: one of the three prompts the assistant proposed last in that
/// session, run on the session's photo.
#[derive(Debug, Deserialize, ToSchema, Validate)]
#[serde(deny_unknown_fields)]
pub struct EditingRequest {
    /// The photo to edit; with `session_id` it defaults to the session's photo.
    pub upload_id: Option<Uuid>,
    /// What to change, in any language (control characters are removed; length capped by
    /// `EDIT_PROMPT_MAX_CHARS`). Something visible must remain.
    #[schema(
        min_length = 1,
        pattern = "[^\\s\\x00-\\x1f\\x7f-\\x9f\\u200b-\\u200f\\u202a-\\u202e\\u2066-\\u2069\\ufeff]"
    )]
    #[validate(regex(path = *patterns::VISIBLE_RE, code = "empty_prompt", message = "the prompt is empty"))]
    pub prompt: Option<String>,
    /// The assistant's chat session the edit comes from (`POST /api/v1/editing/chat`).
    pub session_id: Option<Uuid>,
    /// 0–2: which of the session's latest proposed variants to run (needs `session_id`).
    #[schema(minimum = 0, maximum = 2)]
    #[validate(range(
        min = 0,
        max = 2,
        code = "invalid_variant_index",
        message = "variant_index is 0, 1 or 2"
    ))]
    pub variant_index: Option<i64>,
    /// As in a fitting request.
    #[schema(min_length = 1, max_length = 128, pattern = "^[!-~]+$")]
    #[validate(
        length(min = 1, max = 128, code = "invalid_client_request_id", message = "1–128 printable ASCII characters"),
        regex(path = *patterns::PRINTABLE_ASCII_RE, code = "invalid_client_request_id", message = "1–128 printable ASCII characters")
    )]
    pub client_request_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GenerationEnvelope {
    pub generation: GenerationDto,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GenerationPage {
    pub items: Vec<GenerationDto>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    pub next_cursor: Option<String>,
}

fn required_request_id(req: &HttpRequest, body: Option<String>) -> AppResult<String> {
    super::client_request_id(req, body)?.ok_or_else(|| {
        AppError::bad_request(
            ErrorCode::MissingClientRequestId,
            "send client_request_id (or an Idempotency-Key header)",
        )
    })
}

/// Starts a try-on of one of the zones, charging 2 credits (or one free action).
#[utoipa::path(post, path = "/api/v1/fitting/generate", tag = "generations", security(("bearer" = []), ("tma" = [])),
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 128, pattern = "^[!-~]+$", description = "alternative to client_request_id: 1–128 printable ASCII characters")),
    request_body = FittingRequest,
    responses((status = 202, body = GenerationEnvelope),
              (status = 400, description = "`missing_client_request_id`: neither client_request_id nor Idempotency-Key; `invalid_json`", body = Problem),
              (status = 402, description = "`insufficient_credits` with `required` and `available`", body = Problem),
              (status = 404, description = "an upload is not the user's", body = Problem),
              (status = 422, description = "unknown zone (`invalid_body`), `upload_expired`, `wrong_upload`; `invalid_client_request_id`; `idempotency_key_reused`: the key came first with another request", body = Problem),
              (status = 429, description = "`rate_limited`, with Retry-After", body = Problem)))]
pub async fn fitting_generate(
    req: HttpRequest,
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    body: ValidatedJson<FittingRequest>,
) -> AppResult<HttpResponse> {
    let body = body.into_inner();
    let crid = required_request_id(&req, body.client_request_id)?;
    let new = NewGeneration::fitting(body.person_upload_id, body.item_upload_id, body.zone);
    let g = crate::generations::start(&state, &user, new, crid).await?;
    Ok(accepted(&g, &state))
}

/// Starts an edit of an uploaded photo with a prompt, or runs one of the assistant's proposed
/// variants on the session's photo, charging 1 credit (or one free action).
#[utoipa::path(post, path = "/api/v1/editing/generate", tag = "generations", security(("bearer" = []), ("tma" = [])),
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 128, pattern = "^[!-~]+$", description = "alternative to client_request_id: 1–128 printable ASCII characters")),
    request_body = EditingRequest,
    responses((status = 202, body = GenerationEnvelope),
              (status = 400, description = "`missing_client_request_id`: neither client_request_id nor Idempotency-Key; `invalid_json`", body = Problem),
              (status = 402, body = Problem),
              (status = 404, description = "the upload or the session is not the user's", body = Problem),
              (status = 422, description = "`invalid_body` (neither or both of prompt and session_id + variant_index), `empty_prompt`, `prompt_too_long`, `upload_expired`, `wrong_upload`, `invalid_variant_index`, `no_variants`, `session_without_photo`; `invalid_client_request_id`; `idempotency_key_reused`: the key came first with another request", body = Problem),
              (status = 429, body = Problem)))]
pub async fn editing_generate(
    req: HttpRequest,
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    body: ValidatedJson<EditingRequest>,
) -> AppResult<HttpResponse> {
    let mut body = body.into_inner();
    let crid = required_request_id(&req, body.client_request_id.take())?;
    let new = body.into_generation(state.settings.generation.edit_prompt_max_chars)?;
    let g = crate::generations::start(&state, &user, new, crid).await?;
    Ok(accepted(&g, &state))
}

impl EditingRequest {
    /// The edit asked for: a prompt (cleaned, within `max_chars`), or one of a session's
    /// proposed variants; and its photo, an upload or the session's.
    fn into_generation(self, max_chars: usize) -> AppResult<NewGeneration> {
        let new = match (self.prompt, self.session_id, self.variant_index) {
            (Some(prompt), session, None) => {
                NewGeneration::edit(self.upload_id, session, edit_prompt(&prompt, max_chars)?)
            }
            (None, Some(session), Some(index)) => {
                // 0–2 by the DTO's rule.
                let index = usize::try_from(index).unwrap_or_default();
                NewGeneration::variant(self.upload_id, session, index)
            }
            _ => {
                return Err(AppError::unprocessable(
                    ErrorCode::InvalidBody,
                    "send either `prompt`, or `session_id` and `variant_index`",
                ));
            }
        };
        if self.upload_id.is_none() && self.session_id.is_none() {
            return Err(AppError::unprocessable(
                ErrorCode::InvalidBody,
                "send `upload_id` (or the `session_id` whose photo to edit)",
            ));
        }
        Ok(new)
    }
}

/// The prompt of an edit, cleaned: something visible, at most `max_chars` characters.
fn edit_prompt(prompt: &str, max_chars: usize) -> AppResult<String> {
    // Something visible is there (the DTO's rule): only the configured cap is left.
    text::clean(prompt, max_chars).map_err(|_| {
        AppError::unprocessable(
            ErrorCode::PromptTooLong,
            format!("at most {max_chars} characters"),
        )
    })
}

/// 202 with the generation (a new one, or the first for a repeated request).
fn accepted(g: &Generation, state: &AppState) -> HttpResponse {
    HttpResponse::Accepted().json(GenerationEnvelope {
        generation: GenerationDto::of(g, state),
    })
}

/// One of the user's generations.
#[utoipa::path(get, path = "/api/v1/generations/{id}", operation_id = "get_generation", tag = "generations", security(("bearer" = []), ("tma" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = GenerationEnvelope), (status = 404, body = Problem)))]
pub async fn get(
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let mut conn = state.db.get().await?;
    let g = generations::find_owned(&mut conn, user.id, *id)
        .await?
        .ok_or_else(|| AppError::not_found("no such generation"))?;
    Ok(HttpResponse::Ok().json(GenerationEnvelope {
        generation: GenerationDto::of(&g, &state),
    }))
}

#[derive(Debug, Deserialize, IntoParams, Validate)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// From the previous page's `next_cursor`.
    #[param(
        pattern = "^[0-9]{1,16}_[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    #[validate(regex(path = *patterns::CURSOR_RE, code = "invalid_cursor", message = "the cursor is not one of ours"))]
    cursor: Option<String>,
    /// 1–100, default 20.
    #[param(minimum = 1, maximum = 100)]
    #[validate(range(
        min = 1,
        max = 100,
        code = "invalid_query",
        message = "limit must be 1–100"
    ))]
    limit: Option<i64>,
}

/// The user's generations, newest first.
#[utoipa::path(get, path = "/api/v1/generations", operation_id = "list_generations", tag = "generations", security(("bearer" = []), ("tma" = [])),
    params(ListQuery),
    responses((status = 200, body = GenerationPage), (status = 400, body = Problem)))]
pub async fn list(
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    query: ValidatedQuery<ListQuery>,
) -> AppResult<HttpResponse> {
    let (limit, before) = super::page(query.limit, query.cursor.as_deref())?;
    let mut conn = state.db.get().await?;
    let items = generations::list(&mut conn, user.id, before, limit).await?;
    let next_cursor = (items.len() as i64 == limit)
        .then(|| {
            items
                .last()
                .map(|g| format!("{}_{}", g.created_at.timestamp_micros(), g.id))
        })
        .flatten();
    let items = items.iter().map(|g| GenerationDto::of(g, &state)).collect();
    Ok(HttpResponse::Ok().json(GenerationPage { items, next_cursor }))
}

/// Cancels a generation that is still queued, refunding its charge.
#[utoipa::path(post, path = "/api/v1/generations/{id}/cancel", tag = "generations", security(("bearer" = []), ("tma" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = GenerationEnvelope),
              (status = 404, body = Problem),
              (status = 409, description = "`not_cancelable`: it has started or finished", body = Problem)))]
pub async fn cancel(
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let g = crate::generations::cancel(&state, user.id, *id).await?;
    Ok(HttpResponse::Ok().json(GenerationEnvelope {
        generation: GenerationDto::of(&g, &state),
    }))
}

/// Deletes one of the user's finished generations: its result image, prompt and error go at
/// once, and it no longer appears here (the hourly task limit still counts it). A queued or
/// running generation is not deleted: `generation_active` (409); cancel it first
/// (`POST /api/v1/generations/{id}/cancel`, queued only) or wait until it finishes.
#[utoipa::path(delete, path = "/api/v1/generations/{id}", operation_id = "delete_generation", tag = "generations", security(("bearer" = []), ("tma" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 204, description = "Deleted"),
              (status = 404, body = Problem),
              (status = 409, description = "`generation_active`: it is queued or running", body = Problem)))]
pub async fn delete(
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    crate::privacy::delete_generation(&state, user.id, *id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// kie.ai's task-finished callback: verified (when a key is configured), then used only as a
/// wake-up — the job reads the state from `recordInfo` itself.
pub async fn kie_callback(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> AppResult<HttpResponse> {
    let task_id = crate::providers::kie::parse_callback(&body)
        .map_err(|e| AppError::bad_request(ErrorCode::InvalidCallback, e.to_string()))?;
    verify_kie_signature(&req, &state, &task_id)?;
    let woken = crate::generations::wake_task(&state, &task_id).await?;
    Ok(HttpResponse::build(StatusCode::OK)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({"ok": true, "woken": woken})))
}

/// A callback must carry kie.ai's signature of its task, when a key is configured.
fn verify_kie_signature(req: &HttpRequest, state: &AppState, task_id: &str) -> AppResult<()> {
    let g_settings = &state.settings.generation;
    let Some(key) = &g_settings.kie_webhook_hmac_key else {
        return Ok(());
    };
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let valid = crate::providers::kie::verify_callback_signature(
        key.expose_secret().as_bytes(),
        task_id,
        header("x-webhook-timestamp"),
        header("x-webhook-signature"),
        Utc::now().timestamp(),
        g_settings.kie_callback_max_skew_secs,
    );
    if !valid {
        return Err(AppError::unauthorized(
            ErrorCode::InvalidSignature,
            "the callback signature is invalid",
        ));
    }
    Ok(())
}

/// The WebSocket snapshot: the user's queued and running generations, as this API shows them.
pub struct ActiveGenerations;

impl realtime::SnapshotSource for ActiveGenerations {
    fn active<'a>(
        &'a self,
        state: &'a AppState,
        user_id: UserId,
    ) -> futures_util::future::BoxFuture<'a, anyhow::Result<Vec<serde_json::Value>>> {
        Box::pin(async move {
            let mut conn = state.db.get().await?;
            let active = generations::active_for_user(&mut conn, user_id).await?;
            active
                .iter()
                .map(|g| Ok(serde_json::to_value(GenerationDto::of(g, state))?))
                .collect()
        })
    }
}
