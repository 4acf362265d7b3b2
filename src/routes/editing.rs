//! The editing assistant: a chat turn (charged before the model is asked; the history and the
//! token accounting appended in one transaction after it; refunded when the model fails for
//! good), the user's sessions and their history, and emptying a history.
//!
//! A turn is a `chat_turns` row: `pending` from the charge on, then `completed` or `failed`
//! (refunded) exactly once. The model is asked on a task of its own, so a client that hangs up
//! does not leave a paid turn behind; a turn that a crash left pending is refunded by the
//! worker's sweeper (`jobs::sweeper::refund_abandoned_turns`).

use std::collections::HashMap;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection as _;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::extractor::AuthUser;
use crate::db::chat_sessions::{self, ChatSession, Photo, TurnWritten};
use crate::db::chat_turns::{self, ChatTurn};
use crate::db::models::{Upload, User};
use crate::db::{ledger, uploads};
use crate::domain::assistant::{self, Language, Role, StoredMessage, Usage};
use crate::domain::idempotency;
use crate::domain::text::{self, TextError};
use crate::domain::vocabulary::{TurnStatus, UploadPurpose};
use crate::error::{AppError, AppResult, Problem};
use crate::providers::openrouter::{AssistantError, AssistantRequest, Delta, FailureKind};
use crate::realtime::{self, Event};
use crate::state::AppState;

/// Turns one user may have waiting for the model at once (across sessions).
const MAX_PENDING_TURNS_PER_USER: i64 = 3;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/editing/chat").route(web::post().to(chat)))
        .service(web::resource("/editing/sessions").route(web::get().to(list_sessions)))
        .service(web::resource("/editing/sessions/{session_id}").route(web::get().to(get_session)))
        .service(web::resource("/editing/reset").route(web::post().to(reset)));
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatRequest {
    /// Continues this session; without it a new session starts.
    pub session_id: Option<Uuid>,
    /// An editing photo (`POST /api/v1/editing/upload`): the new session's photo, or the
    /// session's photo from this message on.
    pub upload_id: Option<Uuid>,
    /// What the user wants, in any language (control characters are removed; at most
    /// CHAT_MESSAGE_MAX_CHARS characters).
    pub message: String,
    /// Makes the request idempotent (or send `Idempotency-Key`): a repeat returns the first
    /// answer and never charges twice.
    pub client_request_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenUsage {
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
}

impl From<Usage> for TokenUsage {
    fn from(u: Usage) -> Self {
        Self {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
        }
    }
}

/// The assistant's answer; also pushed over the WebSocket as `chat.reply`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChatReply {
    pub session_id: Uuid,
    pub reply: String,
    /// Three ready-to-run edit prompts: pass `variant_index` (0–2) to
    /// `POST /api/v1/editing/generate` with the `session_id` to run one.
    pub variants: Vec<String>,
    /// Tokens of this turn (its retries included).
    pub usage: TokenUsage,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageDto {
    /// `user` or `assistant`.
    pub role: Role,
    pub content: String,
    /// The photo attached with this message, as a signed link (null once erased).
    pub image_url: Option<String>,
    /// An assistant message's three edit prompts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<String>,
    pub timestamp: DateTime<Utc>,
    /// On assistant messages.
    pub usage: Option<TokenUsage>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionDto {
    pub session_id: Uuid,
    /// The session's photo.
    pub upload_id: Option<Uuid>,
    /// A signed link to the session's photo (null without one, or once erased).
    pub image_url: Option<String>,
    /// Oldest first.
    pub messages: Vec<MessageDto>,
    /// Totals over the session's life (a reset keeps them).
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub created_at: DateTime<Utc>,
    /// The last message (or reset); the session is deleted CHAT_SESSION_TTL_SECS after it.
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionSummaryDto {
    pub session_id: Uuid,
    pub upload_id: Option<Uuid>,
    pub image_url: Option<String>,
    pub message_count: i32,
    /// The start of the newest message.
    pub last_message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionPage {
    pub items: Vec<SessionSummaryDto>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    pub session_id: Uuid,
}

/// Sends a message to the assistant, which answers with a reply and three edit prompts.
/// Costs CHAT_PRICE_CREDITS (a free monthly action first), refunded when the assistant fails.
#[utoipa::path(post, path = "/api/v1/editing/chat", tag = "editing", security(("bearer" = []), ("tma" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "alternative to client_request_id")),
    request_body = ChatRequest,
    responses((status = 200, body = ChatReply),
              (status = 402, description = "`insufficient_credits` with `required` and `available`", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "the session or the upload is not the user's", body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "`turn_in_progress` (one turn at a time per session), `session_full`, `idempotency_conflict`", body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "`empty_message`, `message_too_long`, `wrong_upload`, `upload_expired`; `message_rejected` by moderation (refunded); `idempotency_key_reused`: the key came first with another request", body = Problem, content_type = "application/problem+json"),
              (status = 429, description = "`rate_limited`: too many turns waiting, or more than RATE_LIMIT_CHAT_PER_USER", body = Problem, content_type = "application/problem+json"),
              (status = 502, description = "`assistant_bad_reply`, `assistant_failed` (refunded)", body = Problem, content_type = "application/problem+json"),
              (status = 503, description = "`assistant_unavailable` (refunded)", body = Problem, content_type = "application/problem+json")))]
pub async fn chat(
    req: HttpRequest,
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    body: web::Json<ChatRequest>,
) -> AppResult<HttpResponse> {
    let mut body = body.into_inner();
    // Optional here: without one, every request is a new turn.
    let key = super::client_request_id(&req, body.client_request_id.take())?;
    let max = state.settings.assistant.message_max_chars;
    let message = text::clean(&body.message, max).map_err(|e| match e {
        TextError::Empty => AppError::unprocessable("empty_message", "the message is empty"),
        TextError::TooLong { max } => {
            AppError::unprocessable("message_too_long", format!("at most {max} characters"))
        }
    })?;
    let limit = state.settings.limits.chat_per_user;
    crate::ratelimit::hit(&state, "chat", &user.id.to_string(), limit).await?;
    let fingerprint = idempotency::fingerprint(&serde_json::json!({
        "session_id": body.session_id,
        "upload_id": body.upload_id,
        "message": message,
    }));
    let turn = match open_turn(&state, &user, &body, key, message, fingerprint).await? {
        Opened::Answered(reply) => return Ok(HttpResponse::Ok().json(reply)),
        Opened::New(turn) => turn,
    };
    // On a task of its own: the turn completes (or is refunded) even if the client hangs up.
    let state = state.get_ref().clone();
    let reply = tokio::spawn(async move { run_turn(&state, turn).await })
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!("the chat turn task failed: {e}")))??;
    Ok(HttpResponse::Ok().json(reply))
}

/// A charged turn waiting for the model.
struct PendingTurn {
    id: Uuid,
    user_id: i64,
    session_id: Uuid,
    new_session: bool,
    charge_key: String,
    language: Language,
    history: Vec<StoredMessage>,
    message: String,
    /// The upload attached with this message.
    attached: Option<Uuid>,
    /// The session's photo, sent to the model.
    photo: Option<Photo>,
    started_at: DateTime<Utc>,
}

enum Opened {
    /// The request's key was answered before: the same answer again, nothing charged.
    Answered(ChatReply),
    New(Box<PendingTurn>),
}

/// An editing photo of the user's that can still be used.
async fn editing_photo(
    conn: &mut diesel_async::AsyncPgConnection,
    user_id: i64,
    id: Uuid,
    now: DateTime<Utc>,
) -> AppResult<Upload> {
    let upload = uploads::find_owned(conn, user_id, id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no upload {id}")))?;
    if upload.purpose != UploadPurpose::EditingSource {
        return Err(AppError::unprocessable(
            "wrong_upload",
            format!("upload {id} is not an editing photo"),
        ));
    }
    if upload.expires_at <= now + chrono::Duration::minutes(5) {
        return Err(AppError::unprocessable(
            "upload_expired",
            format!("upload {id} has expired; upload it again"),
        ));
    }
    Ok(upload)
}

/// In one transaction, under the user's row lock: the idempotency key, the session (created or
/// locked), the photo, the charge, and the pending turn.
async fn open_turn(
    state: &AppState,
    user: &User,
    body: &ChatRequest,
    key: Option<String>,
    message: String,
    fingerprint: String,
) -> AppResult<Opened> {
    let mut conn = state.db.get().await?;
    let keyed = key.is_some();
    let crid = key.unwrap_or_else(|| format!("auto:{}", Uuid::new_v4()));
    let price = state.settings.assistant.price_credits;
    let free_limit = state.settings.free_actions_per_month;
    let model = state.assistant.model().to_owned();
    let opened = conn
        .transaction(async |conn| -> AppResult<Result<PendingTurn, ChatTurn>> {
            // No lock on the user yet: the charge takes it. Two requests with one key are kept
            // apart by the turn's unique key (the loser rolls back, its charge with it).
            // The key's lookup and the session's lock go out together (pipelined).
            let (earlier, context) = futures_util::future::join(
                async {
                    if !keyed {
                        return Ok(None);
                    }
                    chat_turns::find_by_client_request(conn, user.id, &crid).await
                },
                async {
                    match body.session_id {
                        Some(sid) => {
                            let n = assistant::HISTORY_WINDOW;
                            chat_sessions::lock_for_turn(conn, user.id, sid, n).await
                        }
                        None => Ok(None),
                    }
                },
            )
            .await;
            if let Some(turn) = earlier? {
                return Ok(Err(turn));
            }
            let context = context?;
            let too_many = || AppError::RateLimited {
                retry_after_secs: 5,
            };
            let now = Utc::now();
            let attached = match body.upload_id {
                Some(id) => Some(editing_photo(conn, user.id, id, now).await?),
                None => None,
            };
            let (session_id, new_session, session_photo, history) = match body.session_id {
                Some(sid) => {
                    let context = context.ok_or_else(|| AppError::not_found("no such session"))?;
                    if context.busy {
                        return Err(AppError::conflict(
                            "turn_in_progress",
                            "the assistant is still answering the previous message",
                        ));
                    }
                    if context.user_pending >= MAX_PENDING_TURNS_PER_USER {
                        return Err(too_many());
                    }
                    if context.message_count + 2 > assistant::MAX_SESSION_MESSAGES {
                        return Err(AppError::conflict(
                            "session_full",
                            "this conversation is full; start a new session",
                        ));
                    }
                    // A new photo becomes the session's with the answer (in `complete_turn`).
                    // An erased photo is not sent.
                    (sid, false, context.photo, context.recent)
                }
                None => {
                    if chat_turns::pending_for_user(conn, user.id).await?
                        >= MAX_PENDING_TURNS_PER_USER
                    {
                        return Err(too_many());
                    }
                    let sid = Uuid::new_v4();
                    let photo_id = attached.as_ref().map(|u| u.id);
                    chat_sessions::create(conn, user.id, sid, photo_id).await?;
                    (sid, true, None, Vec::new())
                }
            };
            let photo = match &attached {
                Some(u) => Some(Photo {
                    id: u.id,
                    storage_key: u.storage_key.clone(),
                    expires_at: u.expires_at,
                }),
                None => session_photo,
            };
            let id = Uuid::new_v4();
            let id_text = id.to_string();
            let charge_key = format!("chat:{}:{crid}", user.id);
            let charged = ledger::charge(
                conn,
                user.id,
                price,
                free_limit,
                now.date_naive(),
                ledger::Cause::new("chat_turn", &id_text, &charge_key),
            )
            .await?;
            chat_turns::insert(
                conn,
                &ChatTurn {
                    id,
                    user_id: user.id,
                    session_id: Some(session_id),
                    status: TurnStatus::Pending,
                    client_request_id: crid.clone(),
                    charge_key: charge_key.clone(),
                    credits_spent: charged.credits_spent,
                    paid_with: charged.paid_with,
                    model: model.clone(),
                    attempts: 0,
                    prompt_tokens: 0,
                    completion_tokens: 0,
                    cost_usd_micros: 0,
                    error_code: None,
                    created_at: now,
                    finished_at: None,
                    request_fingerprint: Some(fingerprint.clone()),
                },
            )
            .await?;
            Ok(Ok(PendingTurn {
                id,
                user_id: user.id,
                session_id,
                new_session,
                charge_key,
                language: Language::from_code(user.language_code.as_deref()),
                history,
                message: message.clone(),
                attached: attached.map(|u| u.id),
                photo,
                started_at: now,
            }))
        })
        .await;
    let opened = match opened {
        // A request with the same key won the race: answer as it will be answered.
        Err(AppError::Database(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            info,
        ))) if info.constraint_name() == Some("chat_turns_client_request_key") => {
            let earlier = chat_turns::find_by_client_request(&conn, user.id, &crid)
                .await?
                .ok_or_else(|| {
                    AppError::conflict("turn_in_progress", "a request with this key is in progress")
                })?;
            Err(earlier)
        }
        other => other?,
    };
    match opened {
        Ok(turn) => Ok(Opened::New(Box::new(turn))),
        Err(earlier) => replay(&mut conn, &earlier, &fingerprint)
            .await
            .map(Opened::Answered),
    }
}

/// The answer to a key seen before: the stored reply, or the same refusal; for the same
/// request only.
async fn replay(
    conn: &mut diesel_async::AsyncPgConnection,
    turn: &ChatTurn,
    fingerprint: &str,
) -> AppResult<ChatReply> {
    idempotency::check(turn.request_fingerprint.as_deref(), fingerprint)?;
    match turn.status {
        TurnStatus::Pending => Err(AppError::conflict(
            "turn_in_progress",
            "a request with this key is still being answered",
        )),
        TurnStatus::Failed => Err(failure_error(turn.error_code.as_deref().unwrap_or(""))),
        TurnStatus::Completed => {
            let found = match turn.session_id {
                Some(sid) => chat_sessions::reply_of_turn(conn, sid, turn.id).await?,
                None => None,
            };
            match (turn.session_id, found) {
                (Some(session_id), Some(m)) => Ok(ChatReply {
                    session_id,
                    reply: m.content,
                    variants: m.variants,
                    usage: m.usage.unwrap_or_default().into(),
                }),
                _ => Err(AppError::conflict(
                    "idempotency_conflict",
                    "this request was answered, and its history has been reset or deleted since",
                )),
            }
        }
    }
}

/// Asks the model, then settles the turn: completed with its history, or failed and refunded.
async fn run_turn(state: &AppState, turn: Box<PendingTurn>) -> AppResult<ChatReply> {
    let image_url = turn.photo.as_ref().map(|p| state.media_url(&p.storage_key));
    let (deltas, written) = tokio::sync::mpsc::unbounded_channel();
    let previews = tokio::spawn(publish_deltas(
        state.clone(),
        turn.user_id,
        turn.session_id,
        written,
    ));
    let request = AssistantRequest {
        language: turn.language.clone(),
        messages: assistant::build_messages(
            &turn.language,
            &turn.history,
            &turn.message,
            image_url.as_deref(),
        ),
        max_variant_chars: state.settings.generation.edit_prompt_max_chars,
        deltas: Some(deltas),
    };
    // The client bounds itself by the same budget; this only guards against a hung call.
    let budget = Duration::from_secs(state.settings.assistant.turn_timeout_secs + 5);
    let outcome = tokio::time::timeout(budget, state.assistant.complete(&request))
        .await
        .unwrap_or_else(|_| {
            Err(AssistantError {
                kind: FailureKind::Unavailable,
                message: "the turn ran out of time".into(),
                spent: Usage::default(),
                attempts: 0,
            })
        });
    // Closes the previews' channel: the publisher drains what is queued and ends.
    drop(request);
    match outcome {
        Ok(completion) => complete_turn(state, turn, completion, previews).await,
        Err(e) => {
            if e.alerts_operator() {
                tracing::error!(error = %e, "OpenRouter refused our account: an operator must act");
                metrics::counter!("operator_alerts_total", "source" => "openrouter").increment(1);
            } else if e.kind == FailureKind::Rejected {
                tracing::error!(error = %e, "OpenRouter rejected our request");
            } else {
                tracing::warn!(error = %e, "chat turn failed");
            }
            settle_failed(state, &turn, e.code(), e.attempts, e.spent).await?;
            Err(failure_error(e.code()))
        }
    }
}

async fn complete_turn(
    state: &AppState,
    turn: Box<PendingTurn>,
    completion: crate::providers::openrouter::Completion,
    previews: tokio::task::JoinHandle<()>,
) -> AppResult<ChatReply> {
    let now = Utc::now();
    let usage = completion.usage;
    let messages = [
        StoredMessage {
            role: Role::User,
            content: turn.message.clone(),
            upload_id: turn.attached,
            variants: Vec::new(),
            timestamp: turn.started_at,
            turn_id: Some(turn.id),
            usage: None,
        },
        StoredMessage {
            role: Role::Assistant,
            content: completion.reply.reply.clone(),
            upload_id: None,
            variants: completion.reply.variants.clone(),
            timestamp: now,
            turn_id: Some(turn.id),
            usage: Some(usage),
        },
    ];
    let written = chat_sessions::complete_turn(
        &mut *state.db.get().await?,
        &chat_sessions::TurnAnswer {
            session_id: turn.session_id,
            turn_id: turn.id,
            messages: &messages,
            usage,
            attempts: i32::try_from(completion.attempts).unwrap_or(i32::MAX),
            new_photo: turn.attached,
            keep_photo_until: now + session_ttl(state),
            now,
        },
    )
    .await;
    let code = match written {
        Ok(TurnWritten::Completed) => None,
        Ok(TurnWritten::Abandoned) => Some("turn_abandoned"),
        Ok(TurnWritten::SessionDeleted) => Some("session_deleted"),
        Err(e) => {
            // Refund now rather than leave it to the sweeper, if the database lets us.
            if let Err(again) =
                settle_failed(state, &turn, "internal_error", completion.attempts, usage).await
            {
                tracing::warn!(error = %again, "settling a chat turn failed; the sweeper will refund it");
            }
            return Err(e.into());
        }
    };
    if let Some(code) = code {
        settle_failed(state, &turn, code, completion.attempts, usage).await?;
        return Err(failure_error(code));
    }
    metrics::counter!("chat_turns_total", "outcome" => TurnStatus::Completed.as_str()).increment(1);
    let reply = ChatReply {
        session_id: turn.session_id,
        reply: completion.reply.reply,
        variants: completion.reply.variants,
        usage: usage.into(),
    };
    publish_reply(state, turn.user_id, &reply, previews);
    Ok(reply)
}

fn session_ttl(state: &AppState) -> chrono::Duration {
    chrono::Duration::seconds(
        i64::try_from(state.settings.assistant.session_ttl_secs).unwrap_or(i64::MAX / 2),
    )
}

/// Marks a pending turn failed and refunds it, once; a new session left empty goes too.
async fn settle_failed(
    state: &AppState,
    turn: &PendingTurn,
    code: &'static str,
    attempts: u32,
    spent: Usage,
) -> AppResult<()> {
    metrics::counter!("chat_turns_total", "outcome" => code).increment(1);
    let mut conn = state.db.get().await?;
    conn.transaction(async |conn| -> AppResult<()> {
        let now = Utc::now();
        if chat_turns::finish(conn, turn.id, Some(code), attempts, spent, now).await? == 1 {
            ledger::refund(conn, &turn.charge_key, now.date_naive()).await?;
            if turn.new_session {
                chat_sessions::delete_if_empty(conn, turn.session_id).await?;
            }
        }
        Ok(())
    })
    .await
}

/// What the client hears about a failed turn (always refunded). The assistant's own account
/// problems are ours, not the user's: they read as "unavailable".
fn failure_error(code: &str) -> AppError {
    let client = |status, code, detail: &str| AppError::Client {
        status,
        code,
        detail: format!("{detail}; the charge was refunded"),
    };
    match code {
        "message_rejected" => client(
            StatusCode::UNPROCESSABLE_ENTITY,
            "message_rejected",
            "the message was refused by content moderation",
        ),
        "assistant_bad_reply" => client(
            StatusCode::BAD_GATEWAY,
            "assistant_bad_reply",
            "the assistant answered in a form that cannot be used",
        ),
        "session_deleted" => client(
            StatusCode::NOT_FOUND,
            "not_found",
            "the session was deleted",
        ),
        "assistant_failed" => client(
            StatusCode::BAD_GATEWAY,
            "assistant_failed",
            "the assistant could not answer",
        ),
        _ => client(
            StatusCode::SERVICE_UNAVAILABLE,
            "assistant_unavailable",
            "the assistant is unavailable right now, try again in a minute",
        ),
    }
}

/// Pushes the reply's text to the user's sockets while it is written, as `chat.delta` events
/// `{session_id, attempt, text}` (in order; pieces that queued up meanwhile go in one event).
/// Clients append `text` to the reply of `attempt`, and start over when the attempt changes
/// (a retried call); `chat.reply` has the final, checked text.
async fn publish_deltas(
    state: AppState,
    user_id: i64,
    session_id: Uuid,
    mut written: tokio::sync::mpsc::UnboundedReceiver<Delta>,
) {
    while let Some(first) = written.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = written.try_recv() {
            match batch.last_mut() {
                Some(last) if last.attempt == more.attempt => last.text.push_str(&more.text),
                _ => batch.push(more),
            }
        }
        for delta in batch {
            let event = Event::new(realtime::types::CHAT_DELTA)
                .with("session_id", session_id.to_string())
                .with("attempt", delta.attempt)
                .with("text", delta.text);
            if let Err(e) = realtime::publish(&state, user_id, &event).await {
                tracing::debug!(error = %e, "publishing chat.delta failed");
            }
        }
    }
}

/// Pushes the answer to the user's sockets, after the previews of it (`previews` ends once they
/// are out), without holding up the response and without failing the turn.
fn publish_reply(
    state: &AppState,
    user_id: i64,
    reply: &ChatReply,
    previews: tokio::task::JoinHandle<()>,
) {
    let event = match Event::from_serialize(realtime::types::CHAT_REPLY, reply) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "building the chat.reply event failed");
            return;
        }
    };
    let state = state.clone();
    tokio::spawn(async move {
        if tokio::time::timeout(Duration::from_secs(2), previews)
            .await
            .is_err()
        {
            tracing::warn!("chat.delta events still queued after 2 s; chat.reply goes out anyway");
        }
        if let Err(e) = realtime::publish(&state, user_id, &event).await {
            tracing::warn!(error = %e, "publishing chat.reply failed");
        }
    });
}

/// Signed links of the user's live uploads among `ids`.
async fn photo_urls(
    state: &AppState,
    conn: &mut diesel_async::AsyncPgConnection,
    user_id: i64,
    ids: impl IntoIterator<Item = Uuid>,
) -> AppResult<HashMap<Uuid, String>> {
    let mut urls = HashMap::new();
    for id in ids {
        if urls.contains_key(&id) {
            continue;
        }
        if let Some(u) = uploads::find_owned(conn, user_id, id).await? {
            urls.insert(id, state.media_url(&u.storage_key));
        }
    }
    Ok(urls)
}

pub(crate) async fn session_dto(
    state: &AppState,
    conn: &mut diesel_async::AsyncPgConnection,
    session: &ChatSession,
) -> AppResult<SessionDto> {
    let messages = chat_sessions::messages(conn, session.session_id).await?;
    let ids = session
        .upload_id
        .into_iter()
        .chain(messages.iter().filter_map(|m| m.upload_id));
    let urls = photo_urls(state, conn, session.user_id, ids).await?;
    let url = |id: Option<Uuid>| id.and_then(|id| urls.get(&id).cloned());
    Ok(SessionDto {
        session_id: session.session_id,
        upload_id: session.upload_id,
        image_url: url(session.upload_id),
        messages: messages
            .into_iter()
            .map(|m| MessageDto {
                role: m.role,
                image_url: url(m.upload_id),
                content: m.content,
                variants: m.variants,
                timestamp: m.timestamp,
                usage: m.usage.map(Into::into),
            })
            .collect(),
        prompt_tokens: session.prompt_tokens,
        completion_tokens: session.completion_tokens,
        created_at: session.created_at,
        updated_at: session.updated_at,
    })
}

/// One of the user's sessions with its whole history. Another user's session is a 404.
#[utoipa::path(get, path = "/api/v1/editing/sessions/{session_id}", tag = "editing", security(("bearer" = []), ("tma" = [])),
    params(("session_id" = Uuid, Path)),
    responses((status = 200, body = SessionDto), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_session(
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    session_id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let mut conn = state.db.get().await?;
    let session = chat_sessions::find_owned(&mut conn, user.id, *session_id)
        .await?
        .ok_or_else(|| AppError::not_found("no such session"))?;
    Ok(HttpResponse::Ok().json(session_dto(&state, &mut conn, &session).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ListQuery {
    /// From the previous page's `next_cursor`.
    cursor: Option<String>,
    /// 1–100, default 20.
    limit: Option<i64>,
}

/// The user's sessions, most recently active first.
#[utoipa::path(get, path = "/api/v1/editing/sessions", tag = "editing", security(("bearer" = []), ("tma" = [])),
    params(ListQuery),
    responses((status = 200, body = SessionPage), (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn list_sessions(
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    query: web::Query<ListQuery>,
) -> AppResult<HttpResponse> {
    let (limit, before) = super::page(query.limit, query.cursor.as_deref())?;
    let mut conn = state.db.get().await?;
    let rows = chat_sessions::list(&mut conn, user.id, before, limit).await?;
    let next_cursor = (rows.len() as i64 == limit)
        .then(|| {
            rows.last()
                .map(|s| format!("{}_{}", s.updated_at.timestamp_micros(), s.session_id))
        })
        .flatten();
    let urls = photo_urls(
        &state,
        &mut conn,
        user.id,
        rows.iter().filter_map(|s| s.upload_id),
    )
    .await?;
    let items = rows
        .into_iter()
        .map(|s| SessionSummaryDto {
            session_id: s.session_id,
            image_url: s.upload_id.and_then(|id| urls.get(&id).cloned()),
            upload_id: s.upload_id,
            message_count: s.message_count,
            last_message: s.last_message.map(|m| preview(&m)),
            created_at: s.created_at,
            updated_at: s.updated_at,
        })
        .collect();
    Ok(HttpResponse::Ok().json(SessionPage { items, next_cursor }))
}

fn preview(text: &str) -> String {
    const MAX: usize = 120;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// Empties a session's history; the session and its photo stay.
#[utoipa::path(post, path = "/api/v1/editing/reset", tag = "editing", security(("bearer" = []), ("tma" = [])),
    request_body = ResetRequest,
    responses((status = 200, body = SessionDto),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "`turn_in_progress`", body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "`invalid_body`: unknown or ill-typed fields", body = Problem, content_type = "application/problem+json")))]
pub async fn reset(
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    body: web::Json<ResetRequest>,
) -> AppResult<HttpResponse> {
    let session_id = body.session_id;
    let mut conn = state.db.get().await?;
    let session = conn
        .transaction(async |conn| -> AppResult<ChatSession> {
            let session = chat_sessions::lock_owned(conn, user.id, session_id)
                .await?
                .ok_or_else(|| AppError::not_found("no such session"))?;
            if chat_turns::has_pending_in_session(conn, session_id).await? {
                return Err(AppError::conflict(
                    "turn_in_progress",
                    "the assistant is still answering; reset after its reply",
                ));
            }
            let now = Utc::now();
            chat_sessions::reset(conn, session_id, now).await?;
            // The photo lives as long as the session, which a reset keeps alive.
            if let Some(photo) = session.upload_id {
                uploads::extend_expiry(conn, photo, now + session_ttl(&state)).await?;
            }
            chat_sessions::find_owned(conn, user.id, session_id)
                .await?
                .ok_or_else(|| AppError::not_found("no such session"))
        })
        .await?;
    Ok(HttpResponse::Ok().json(session_dto(&state, &mut conn, &session).await?))
}
