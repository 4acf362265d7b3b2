//! Starting try-ons and edits (charged once, in the transaction that queues them), reading and
//! cancelling them, and the kie.ai callback that wakes a waiting job early.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{Duration, Utc};
use diesel_async::AsyncConnection as _;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::extractor::AuthUser;
use crate::db::models::{Generation, User};
use crate::db::{chat_sessions, generations, ledger, uploads, users};
use crate::domain::idempotency;
use crate::domain::text::{self, TextError};
use crate::domain::vocabulary::{
    GenerationKind, GenerationProviderName, GenerationStatus, UploadPurpose,
};
use crate::domain::zones::Zone;
use crate::error::{AppError, AppResult, Problem};
use crate::jobs::generation::{KIND, Payload};
use crate::jobs::queue::{self, EnqueueOptions};
use crate::realtime;
use crate::realtime::generations::{GenerationDto, notify, notify_failed};
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

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FittingRequest {
    pub person_upload_id: Uuid,
    pub item_upload_id: Uuid,
    /// What is tried on; each zone has its own prompt.
    pub zone: Zone,
    /// Makes the request idempotent (or send `Idempotency-Key`): a repeat returns the first
    /// generation and never charges twice. 1–128 printable ASCII characters.
    #[schema(min_length = 1, max_length = 128, pattern = "^[!-~]+$")]
    pub client_request_id: Option<String>,
}

/// Either `prompt` (with `upload_id`, or a `session_id` whose photo is edited), or
/// `session_id` + `variant_index`: one of the three prompts the assistant proposed last in that
/// session, run on the session's photo.
#[derive(Debug, Deserialize, ToSchema)]
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
    pub prompt: Option<String>,
    /// The assistant's chat session the edit comes from (`POST /api/v1/editing/chat`).
    pub session_id: Option<Uuid>,
    /// 0–2: which of the session's latest proposed variants to run (needs `session_id`).
    #[schema(minimum = 0, maximum = 2)]
    pub variant_index: Option<i64>,
    /// As in a fitting request.
    #[schema(min_length = 1, max_length = 128, pattern = "^[!-~]+$")]
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

/// What a new generation needs, whichever its kind.
struct NewGeneration {
    kind: GenerationKind,
    zone: Option<Zone>,
    prompt: String,
    /// (upload id, the purpose it must have)
    inputs: Vec<(Uuid, UploadPurpose)>,
    price: i64,
    /// An edit from the assistant's chat: its photo when `inputs` is empty, its variant when
    /// an index is given.
    chat: Option<(Uuid, Option<usize>)>,
    /// Of the parsed request: a key reused with another request is refused.
    fingerprint: String,
}

fn required_request_id(req: &HttpRequest, body: Option<String>) -> AppResult<String> {
    super::client_request_id(req, body)?.ok_or_else(|| {
        AppError::bad_request(
            "missing_client_request_id",
            "send client_request_id (or an Idempotency-Key header)",
        )
    })
}

/// Starts a try-on of one of the zones, charging 2 credits (or one free action).
#[utoipa::path(post, path = "/api/v1/fitting/generate", tag = "generations", security(("bearer" = []), ("tma" = [])),
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 128, pattern = "^[!-~]+$", description = "alternative to client_request_id: 1–128 printable ASCII characters")),
    request_body = FittingRequest,
    responses((status = 202, body = GenerationEnvelope),
              (status = 400, description = "`missing_client_request_id`: neither client_request_id nor Idempotency-Key; `invalid_json`", body = Problem, content_type = "application/problem+json"),
              (status = 402, description = "`insufficient_credits` with `required` and `available`", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "an upload is not the user's", body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "unknown zone, expired or wrong upload; `idempotency_key_reused`: the key came first with another request", body = Problem, content_type = "application/problem+json"),
              (status = 429, description = "`rate_limited`, with Retry-After", body = Problem, content_type = "application/problem+json")))]
pub async fn fitting_generate(
    req: HttpRequest,
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    body: web::Json<FittingRequest>,
) -> AppResult<HttpResponse> {
    let body = body.into_inner();
    let crid = required_request_id(&req, body.client_request_id)?;
    let new = NewGeneration {
        kind: GenerationKind::Fitting,
        zone: Some(body.zone),
        prompt: body.zone.prompt(),
        inputs: vec![
            (body.person_upload_id, UploadPurpose::FittingPerson),
            (body.item_upload_id, UploadPurpose::FittingItem),
        ],
        price: state.settings.generation.fitting_price_credits,
        chat: None,
        fingerprint: idempotency::fingerprint(&serde_json::json!({
            "kind": GenerationKind::Fitting,
            "person_upload_id": body.person_upload_id,
            "item_upload_id": body.item_upload_id,
            "zone": body.zone.as_str(),
        })),
    };
    start(&state, &user, new, crid).await
}

/// Starts an edit of an uploaded photo with a prompt, or runs one of the assistant's proposed
/// variants on the session's photo, charging 1 credit (or one free action).
#[utoipa::path(post, path = "/api/v1/editing/generate", tag = "generations", security(("bearer" = []), ("tma" = [])),
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 128, pattern = "^[!-~]+$", description = "alternative to client_request_id: 1–128 printable ASCII characters")),
    request_body = EditingRequest,
    responses((status = 202, body = GenerationEnvelope),
              (status = 400, description = "`missing_client_request_id`: neither client_request_id nor Idempotency-Key; `invalid_json`", body = Problem, content_type = "application/problem+json"),
              (status = 402, body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "the upload or the session is not the user's", body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "`invalid_body` (neither or both of prompt and session_id + variant_index), empty or too long prompt, expired upload, `invalid_variant_index`, `no_variants`, `session_without_photo`; `idempotency_key_reused`: the key came first with another request", body = Problem, content_type = "application/problem+json"),
              (status = 429, body = Problem, content_type = "application/problem+json")))]
pub async fn editing_generate(
    req: HttpRequest,
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    body: web::Json<EditingRequest>,
) -> AppResult<HttpResponse> {
    let body = body.into_inner();
    let crid = required_request_id(&req, body.client_request_id)?;
    let max = state.settings.generation.edit_prompt_max_chars;
    let (prompt, chat) = match (body.prompt, body.session_id, body.variant_index) {
        (Some(prompt), session, None) => {
            let prompt = text::clean(&prompt, max).map_err(|e| match e {
                TextError::Empty => AppError::unprocessable("empty_prompt", "the prompt is empty"),
                TextError::TooLong { max } => {
                    AppError::unprocessable("prompt_too_long", format!("at most {max} characters"))
                }
            })?;
            (prompt, session.map(|s| (s, None)))
        }
        (None, Some(session), Some(index)) => {
            let index = usize::try_from(index)
                .ok()
                .filter(|i| *i < crate::domain::assistant::VARIANTS)
                .ok_or_else(|| {
                    AppError::unprocessable("invalid_variant_index", "variant_index is 0, 1 or 2")
                })?;
            // Filled in from the session inside the transaction.
            (String::new(), Some((session, Some(index))))
        }
        _ => {
            return Err(AppError::unprocessable(
                "invalid_body",
                "send either `prompt`, or `session_id` and `variant_index`",
            ));
        }
    };
    if body.upload_id.is_none() && chat.is_none() {
        return Err(AppError::unprocessable(
            "invalid_body",
            "send `upload_id` (or the `session_id` whose photo to edit)",
        ));
    }
    let fingerprint = idempotency::fingerprint(&serde_json::json!({
        "kind": GenerationKind::Editing,
        "upload_id": body.upload_id,
        "prompt": (!prompt.is_empty()).then_some(&prompt),
        "session_id": body.session_id,
        "variant_index": chat.and_then(|(_, variant)| variant),
    }));
    let new = NewGeneration {
        kind: GenerationKind::Editing,
        zone: None,
        prompt,
        inputs: body
            .upload_id
            .map(|id| (id, UploadPurpose::EditingSource))
            .into_iter()
            .collect(),
        price: state.settings.generation.editing_price_credits,
        chat,
        fingerprint,
    };
    start(&state, &user, new, crid).await
}

/// In one transaction: idempotency, inputs, limits, the charge, the generation and its job.
async fn start(
    state: &AppState,
    user: &User,
    new: NewGeneration,
    crid: String,
) -> AppResult<HttpResponse> {
    let mut conn = state.db.get().await?;
    let g_settings = &state.settings.generation;
    let free_limit = state.settings.free_actions_per_month;
    let result = conn
        .transaction(async |conn| -> AppResult<(Generation, bool)> {
            if let Some(existing) =
                generations::find_by_client_request(conn, user.id, &crid).await?
            {
                return Ok((existing, false));
            }
            users::lock(conn, user.id).await?;
            let now = Utc::now();
            let (prompt, inputs) = match new.chat {
                Some((session_id, variant)) => {
                    from_chat(conn, user.id, &new, session_id, variant).await?
                }
                None => (new.prompt.clone(), new.inputs.clone()),
            };
            for (id, purpose) in &inputs {
                let upload = uploads::find_owned(conn, user.id, *id)
                    .await?
                    .ok_or_else(|| AppError::not_found(format!("no upload {id}")))?;
                if upload.purpose != *purpose {
                    return Err(AppError::unprocessable(
                        "wrong_upload",
                        format!("upload {id} is not a {purpose} photo"),
                    ));
                }
                if upload.expires_at <= now + Duration::minutes(5) {
                    return Err(AppError::unprocessable(
                        "upload_expired",
                        format!("upload {id} has expired; upload it again"),
                    ));
                }
            }
            // The hourly limit first: when both apply, its wait is the longer, truthful one.
            // It counts the generations of accounts this Telegram account erased, too.
            let since = now - crate::privacy::hourly_window();
            let recent =
                crate::privacy::recent_generation_times(conn, &state.settings, user, since).await?;
            if recent.len() as i64 >= g_settings.max_tasks_per_user_per_hour {
                let oldest = recent.first().copied().unwrap_or(now);
                let wait = (oldest + Duration::hours(1) - now).num_seconds().max(1);
                return Err(AppError::RateLimited {
                    retry_after_secs: wait.unsigned_abs(),
                });
            }
            let active = generations::active_for_user(conn, user.id).await?;
            if active.len() as i64 >= g_settings.max_active_tasks_per_user {
                return Err(AppError::RateLimited {
                    retry_after_secs: 15,
                });
            }
            let id = Uuid::new_v4();
            let charge_key = format!("generation:{}:{crid}", user.id);
            let id_text = id.to_string();
            let cause = ledger::Cause::new("generation", &id_text, &charge_key);
            let charged = ledger::charge(
                conn,
                user.id,
                new.price,
                free_limit,
                now.date_naive(),
                cause,
            )
            .await?;
            let mut g = generations::insert(
                conn,
                &Generation {
                    id,
                    user_id: user.id,
                    kind: new.kind,
                    status: GenerationStatus::Queued,
                    zone: new.zone.map(|z| z.as_str().to_owned()),
                    prompt,
                    person_upload_id: (new.kind == GenerationKind::Fitting).then(|| inputs[0].0),
                    item_upload_id: inputs.get(1).map(|i| i.0),
                    source_upload_id: (new.kind == GenerationKind::Editing).then(|| inputs[0].0),
                    chat_session_id: new.chat.map(|(session_id, _)| session_id),
                    result_key: None,
                    result_width: None,
                    result_height: None,
                    credits_spent: charged.credits_spent,
                    paid_with: charged.paid_with,
                    charge_key,
                    provider: if g_settings.kie_api_key.is_some() {
                        GenerationProviderName::Kie
                    } else {
                        GenerationProviderName::Sandbox
                    },
                    provider_task_id: None,
                    attempts: 0,
                    progress: 0,
                    error_code: None,
                    error_message: None,
                    client_request_id: crid.clone(),
                    job_id: None,
                    created_at: now,
                    updated_at: now,
                    started_at: None,
                    finished_at: None,
                    request_fingerprint: Some(new.fingerprint.clone()),
                },
            )
            .await?;
            let job = queue::enqueue(
                conn,
                KIND,
                &Payload { generation_id: id },
                EnqueueOptions::default(),
            )
            .await?;
            generations::set_job(conn, id, job.0).await?;
            g.job_id = Some(job.0);
            Ok((g, true))
        })
        .await;
    let (g, created) = match result {
        // A concurrent request with the same id won the race: answer with its generation.
        Err(AppError::Database(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        ))) => {
            let g = generations::find_by_client_request(&mut conn, user.id, &crid)
                .await?
                .ok_or_else(|| {
                    AppError::conflict(
                        "idempotency_conflict",
                        "a request with this client_request_id is in progress",
                    )
                })?;
            (g, false)
        }
        other => other?,
    };
    if !created {
        // The first request's generation, only for the same request.
        idempotency::check(g.request_fingerprint.as_deref(), &new.fingerprint)?;
    }
    if created {
        let position = generations::queue_position(&mut conn, &g)
            .await
            .unwrap_or(0);
        let mut data = serde_json::Map::new();
        data.insert("position".into(), position.into());
        notify(state, &g, realtime::types::GENERATION_QUEUED, data);
    }
    Ok(HttpResponse::Accepted().json(GenerationEnvelope {
        generation: GenerationDto::of(&g, state),
    }))
}

/// An edit from the assistant's chat: the session must be the user's; its photo is edited unless
/// the request names one (which, for a proposed variant, must be the session's); with a
/// `variant`, the prompt is that variant of the session's latest answer.
async fn from_chat(
    conn: &mut diesel_async::AsyncPgConnection,
    user_id: i64,
    new: &NewGeneration,
    session_id: Uuid,
    variant: Option<usize>,
) -> AppResult<(String, Vec<(Uuid, UploadPurpose)>)> {
    let session = chat_sessions::find_owned(conn, user_id, session_id)
        .await?
        .ok_or_else(|| AppError::not_found("no such session"))?;
    let inputs = match (new.inputs.first(), session.upload_id) {
        (Some((id, _)), Some(photo)) if variant.is_some() && *id != photo => {
            return Err(AppError::unprocessable(
                "wrong_upload",
                "a proposed variant edits the session's photo",
            ));
        }
        (Some(_), _) => new.inputs.clone(),
        (None, Some(photo)) => vec![(photo, UploadPurpose::EditingSource)],
        (None, None) => {
            return Err(AppError::unprocessable(
                "session_without_photo",
                "the session has no photo; send upload_id",
            ));
        }
    };
    let Some(index) = variant else {
        return Ok((new.prompt.clone(), inputs));
    };
    let (_, recent) = chat_sessions::recent_messages(conn, session_id, 2).await?;
    let prompt = recent
        .iter()
        .rev()
        .find(|m| m.role == crate::domain::assistant::Role::Assistant)
        .and_then(|m| m.variants.get(index).cloned())
        .ok_or_else(|| {
            AppError::unprocessable(
                "no_variants",
                "the session has no proposed variants (yet, or since its reset)",
            )
        })?;
    Ok((prompt, inputs))
}

/// One of the user's generations.
#[utoipa::path(get, path = "/api/v1/generations/{id}", operation_id = "get_generation", tag = "generations", security(("bearer" = []), ("tma" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = GenerationEnvelope), (status = 404, body = Problem, content_type = "application/problem+json")))]
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

#[derive(Debug, Deserialize, IntoParams)]
pub struct ListQuery {
    /// From the previous page's `next_cursor`.
    cursor: Option<String>,
    /// 1–100, default 20.
    limit: Option<i64>,
}

/// The user's generations, newest first.
#[utoipa::path(get, path = "/api/v1/generations", operation_id = "list_generations", tag = "generations", security(("bearer" = []), ("tma" = [])),
    params(ListQuery),
    responses((status = 200, body = GenerationPage), (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn list(
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    query: web::Query<ListQuery>,
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
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "`not_cancelable`: it has started or finished", body = Problem, content_type = "application/problem+json")))]
pub async fn cancel(
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let mut conn = state.db.get().await?;
    let id = *id;
    let g = conn
        .transaction(async |conn| -> AppResult<Generation> {
            let g = generations::lock(conn, id)
                .await?
                .filter(|g| g.user_id == user.id)
                .ok_or_else(|| AppError::not_found("no such generation"))?;
            let status = g.status;
            crate::jobs::generation::cancel_queued(conn, &g, "canceled by the user")
                .await?
                .ok_or_else(|| {
                    AppError::conflict("not_cancelable", format!("the generation is {status}"))
                })
        })
        .await?;
    notify_failed(&state, &g, true);
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
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "`generation_active`: it is queued or running", body = Problem, content_type = "application/problem+json")))]
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
        .map_err(|e| AppError::bad_request("invalid_callback", e.to_string()))?;
    let g_settings = &state.settings.generation;
    if let Some(key) = &g_settings.kie_webhook_hmac_key {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
        let valid = crate::providers::kie::verify_callback_signature(
            key.expose_secret().as_bytes(),
            &task_id,
            header("x-webhook-timestamp"),
            header("x-webhook-signature"),
            Utc::now().timestamp(),
            g_settings.kie_callback_max_skew_secs,
        );
        if !valid {
            return Err(AppError::unauthorized(
                "invalid_signature",
                "the callback signature is invalid",
            ));
        }
    }
    let mut conn = state.db.get().await?;
    let g = generations::find_by_task(&mut conn, &task_id)
        .await?
        .ok_or_else(|| AppError::not_found("unknown task"))?;
    let woken = match g.job_id {
        Some(job) => queue::run_now(&mut conn, queue::JobId(job)).await?,
        None => false,
    };
    Ok(HttpResponse::build(StatusCode::OK)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({"ok": true, "woken": woken})))
}

/// The WebSocket snapshot: the user's queued and running generations, as this API shows them.
pub struct ActiveGenerations;

impl realtime::SnapshotSource for ActiveGenerations {
    fn active<'a>(
        &'a self,
        state: &'a AppState,
        user_id: i64,
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
