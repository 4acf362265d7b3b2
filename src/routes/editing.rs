//! The editing assistant over HTTP: a chat turn (`assistant::chat`: charged before the model is
//! asked, refunded when the model fails for good), the user's sessions and their history, and
//! emptying a history.

use crate::domain::ids::UserId;
use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use validator::Validate;

use crate::assistant::{self, NewTurn};
use crate::auth::extractor::AuthUser;
use crate::db::chat_sessions::{self, ChatSession};
use crate::db::uploads;
use crate::domain::assistant::{Role, StoredMessage, Usage};
use crate::domain::text;
use crate::error::{AppError, AppResult, ErrorCode, Problem};
use crate::http::validated::{ValidatedJson, ValidatedQuery, patterns};
use crate::state::AppState;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/editing/chat").route(web::post().to(chat)))
        .service(web::resource("/editing/sessions").route(web::get().to(list_sessions)))
        .service(web::resource("/editing/sessions/{session_id}").route(web::get().to(get_session)))
        .service(web::resource("/editing/reset").route(web::post().to(reset)));
}

#[derive(Debug, Deserialize, ToSchema, Validate)]
#[serde(deny_unknown_fields)]
pub struct ChatRequest {
    /// Continues this session; without it a new session starts.
    pub session_id: Option<Uuid>,
    /// An editing photo (`POST /api/v1/editing/upload`): the new session's photo, or the
    /// session's photo from this message on.
    pub upload_id: Option<Uuid>,
    /// What the user wants, in any language (control characters are removed; at most
    /// CHAT_MESSAGE_MAX_CHARS characters). Something visible must remain.
    #[schema(
        min_length = 1,
        pattern = "[^\\s\\x00-\\x1f\\x7f-\\x9f\\u200b-\\u200f\\u202a-\\u202e\\u2066-\\u2069\\ufeff]"
    )]
    #[validate(regex(path = *patterns::VISIBLE_RE, code = "empty_message", message = "the message is empty"))]
    pub message: String,
    /// Makes the request idempotent (or send `Idempotency-Key`): a repeat returns the first
    /// answer and never charges twice. 1–128 printable ASCII characters.
    #[schema(min_length = 1, max_length = 128, pattern = "^[!-~]+$")]
    #[validate(
        length(min = 1, max = 128, code = "invalid_client_request_id", message = "1–128 printable ASCII characters"),
        regex(path = *patterns::PRINTABLE_ASCII_RE, code = "invalid_client_request_id", message = "1–128 printable ASCII characters")
    )]
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

impl From<assistant::Reply> for ChatReply {
    fn from(r: assistant::Reply) -> Self {
        Self {
            session_id: r.session_id,
            reply: r.reply,
            variants: r.variants,
            usage: r.usage.into(),
        }
    }
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

#[derive(Debug, Deserialize, ToSchema, Validate)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    pub session_id: Uuid,
}

/// Sends a message to the assistant, which answers with a reply and three edit prompts.
/// Costs CHAT_PRICE_CREDITS (a free monthly action first), refunded when the assistant fails.
#[utoipa::path(post, path = "/api/v1/editing/chat", tag = "editing", security(("bearer" = []), ("tma" = [])),
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 128, pattern = "^[!-~]+$", description = "alternative to client_request_id: 1–128 printable ASCII characters")),
    request_body = ChatRequest,
    responses((status = 200, body = ChatReply),
              (status = 402, description = "`insufficient_credits` with `required` and `available`", body = Problem),
              (status = 404, description = "the session or the upload is not the user's", body = Problem),
              (status = 409, description = "`turn_in_progress` (one turn at a time per session), `session_full`, `idempotency_conflict`", body = Problem),
              (status = 422, description = "`empty_message`, `message_too_long`, `wrong_upload`, `upload_expired`; `message_rejected` by moderation (refunded); `invalid_client_request_id`; `idempotency_key_reused`: the key came first with another request", body = Problem),
              (status = 429, description = "`rate_limited`: too many turns waiting, or more than RATE_LIMIT_CHAT_PER_USER", body = Problem),
              (status = 502, description = "`assistant_bad_reply`, `assistant_failed` (refunded)", body = Problem),
              (status = 503, description = "`assistant_unavailable` (refunded)", body = Problem)))]
pub async fn chat(
    req: HttpRequest,
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    body: ValidatedJson<ChatRequest>,
) -> AppResult<HttpResponse> {
    let body = body.into_inner();
    // Optional here: without one, every request is a new turn.
    let key = super::client_request_id(&req, body.client_request_id)?;
    let max = state.settings.assistant.message_max_chars;
    // Something visible is there (the DTO's rule): only the configured cap is left.
    let message = text::clean(&body.message, max).map_err(|_| {
        AppError::unprocessable(
            ErrorCode::MessageTooLong,
            format!("at most {max} characters"),
        )
    })?;
    let turn = NewTurn::new(body.session_id, body.upload_id, message, key);
    let reply = assistant::chat(&state, &user, turn).await?;
    Ok(HttpResponse::Ok().json(ChatReply::from(reply)))
}

/// Signed links of the user's live uploads among `ids`.
async fn photo_urls(
    state: &AppState,
    conn: &mut diesel_async::AsyncPgConnection,
    user_id: UserId,
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
    Ok(SessionDto::of(session, messages, |id| {
        urls.get(&id).cloned()
    }))
}

impl SessionDto {
    /// The conversation with each photo's link from `url` (the session view and the export).
    pub(crate) fn of(
        session: &ChatSession,
        messages: Vec<StoredMessage>,
        url: impl Fn(Uuid) -> Option<String>,
    ) -> Self {
        let url = |id: Option<Uuid>| id.and_then(&url);
        Self {
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
        }
    }
}

/// One of the user's sessions with its whole history. Another user's session is a 404.
#[utoipa::path(get, path = "/api/v1/editing/sessions/{session_id}", tag = "editing", security(("bearer" = []), ("tma" = [])),
    params(("session_id" = Uuid, Path)),
    responses((status = 200, body = SessionDto), (status = 404, body = Problem)))]
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

/// The user's sessions, most recently active first.
#[utoipa::path(get, path = "/api/v1/editing/sessions", tag = "editing", security(("bearer" = []), ("tma" = [])),
    params(ListQuery),
    responses((status = 200, body = SessionPage), (status = 400, body = Problem)))]
pub async fn list_sessions(
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    query: ValidatedQuery<ListQuery>,
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
              (status = 404, body = Problem),
              (status = 409, description = "`turn_in_progress`", body = Problem),
              (status = 422, description = "`invalid_body`: unknown or ill-typed fields", body = Problem)))]
pub async fn reset(
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    body: ValidatedJson<ResetRequest>,
) -> AppResult<HttpResponse> {
    let session = assistant::reset(&state, user.id, body.session_id).await?;
    let mut conn = state.db.get().await?;
    Ok(HttpResponse::Ok().json(session_dto(&state, &mut conn, &session).await?))
}
