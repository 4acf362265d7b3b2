//! Opening a turn, in one transaction (`billing::charged`): the client key, the session
//! (created, or locked with its recent history), the photo, the charge, and the pending turn.

use crate::domain::ids::UserId;
use chrono::{DateTime, Utc};
use diesel::QueryResult;
use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use super::Reply;
use super::settle::TurnFailed;
use crate::billing::charged::{self, Charge, Charged, ChargedAction, Paid};
use crate::db::chat_sessions::{self, Photo, TurnContext};
use crate::db::chat_turns::{self, ChatTurn};
use crate::db::models::{Upload, User};
use crate::db::uploads;
use crate::domain::assistant::{self, Language, StoredMessage};
use crate::domain::idempotency;
use crate::domain::vocabulary::{TurnStatus, UploadPurpose};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::state::AppState;

/// Turns one user may have waiting for the model at once (across sessions).
const MAX_PENDING_TURNS_PER_USER: i64 = 3;

/// A user's message to the assistant.
#[derive(Debug, Clone)]
pub struct NewTurn {
    /// Continues this session; without it a new session starts.
    session_id: Option<Uuid>,
    /// An editing photo: the new session's, or the session's from this message on.
    upload_id: Option<Uuid>,
    /// Cleaned and within its length.
    message: String,
    /// The client's idempotency key; without one, every request is a new turn.
    key: Option<String>,
    fingerprint: String,
}

impl NewTurn {
    pub fn new(
        session_id: Option<Uuid>,
        upload_id: Option<Uuid>,
        message: String,
        key: Option<String>,
    ) -> Self {
        let fingerprint = idempotency::fingerprint(&serde_json::json!({
            "session_id": session_id,
            "upload_id": upload_id,
            "message": message,
        }));
        Self {
            session_id,
            upload_id,
            message,
            key,
            fingerprint,
        }
    }
}

/// A charged turn waiting for the model.
pub(super) struct PendingTurn {
    pub id: Uuid,
    pub user_id: UserId,
    pub session_id: Uuid,
    pub new_session: bool,
    pub charge_key: String,
    pub language: Language,
    pub history: Vec<StoredMessage>,
    pub message: String,
    /// The upload attached with this message.
    pub attached: Option<Uuid>,
    /// The session's photo, sent to the model.
    pub photo: Option<Photo>,
    pub started_at: DateTime<Utc>,
}

pub(super) enum Opened {
    /// The request's key was answered before: the same answer again, nothing charged.
    Answered(Reply),
    New(Box<PendingTurn>),
}

/// Opens a turn, or answers a key seen before as it was answered.
pub(super) async fn open(state: &AppState, user: &User, turn: NewTurn) -> AppResult<Opened> {
    let crid = turn
        .key
        .clone()
        .unwrap_or_else(|| format!("auto:{}", Uuid::new_v4()));
    let charge = Charge {
        user_id: user.id,
        client_key: &crid,
        fingerprint: &turn.fingerprint,
        scope: "chat",
        ref_type: "chat_turn",
        price: state.settings.assistant.price_credits,
        free_limit: state.settings.free_actions_per_month,
    };
    let action = Open {
        user,
        turn: &turn,
        client_key: &crid,
        model: state.assistant.model(),
    };
    let mut conn = state.db.get().await?;
    match charged::run(&mut conn, &charge, &action).await? {
        Charged::New(pending) => Ok(Opened::New(pending)),
        Charged::Earlier(earlier) => replay(&mut conn, &earlier).await.map(Opened::Answered),
    }
}

/// A turn being opened, as a charged action. No lock on the user before the charge (which
/// takes it): two requests with one key are kept apart by the turn's unique key (the loser
/// rolls back, its charge with it).
struct Open<'a> {
    user: &'a User,
    turn: &'a NewTurn,
    client_key: &'a str,
    model: &'a str,
}

/// The turn's session and photo, checked.
struct Checked {
    session_id: Uuid,
    new_session: bool,
    history: Vec<StoredMessage>,
    attached: Option<Uuid>,
    photo: Option<Photo>,
}

impl ChargedAction for Open<'_> {
    type Row = ChatTurn;
    /// The session to continue, locked, with its recent history.
    type Context = Option<TurnContext>;
    type Checked = Checked;
    type Created = Box<PendingTurn>;

    const KEY_CONSTRAINT: Option<&'static str> = Some("chat_turns_client_request_key");

    async fn earlier(&self, conn: &AsyncPgConnection) -> QueryResult<Option<ChatTurn>> {
        if self.turn.key.is_none() {
            return Ok(None);
        }
        chat_turns::find_by_client_request(conn, self.user.id, self.client_key).await
    }

    async fn context(&self, conn: &AsyncPgConnection) -> AppResult<Option<TurnContext>> {
        Ok(match self.turn.session_id {
            Some(sid) => {
                let n = assistant::HISTORY_WINDOW;
                chat_sessions::lock_for_turn(conn, self.user.id, sid, n).await?
            }
            None => None,
        })
    }

    async fn check(
        &self,
        conn: &mut AsyncPgConnection,
        context: Option<TurnContext>,
    ) -> AppResult<Checked> {
        let attached = match self.turn.upload_id {
            Some(id) => Some(editing_photo(conn, self.user.id, id, Utc::now()).await?),
            None => None,
        };
        let (session_id, new_session, session_photo, history) = match self.turn.session_id {
            Some(sid) => {
                let context = context.ok_or_else(|| AppError::not_found("no such session"))?;
                let (photo, history) = continuable(context)?;
                (sid, false, photo, history)
            }
            None => {
                if chat_turns::pending_for_user(conn, self.user.id).await?
                    >= MAX_PENDING_TURNS_PER_USER
                {
                    return Err(too_many_pending());
                }
                let sid = Uuid::new_v4();
                let photo_id = attached.as_ref().map(|u| u.id);
                chat_sessions::create(conn, self.user.id, sid, photo_id).await?;
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
        Ok(Checked {
            session_id,
            new_session,
            history,
            attached: attached.map(|u| u.id),
            photo,
        })
    }

    async fn insert(
        &self,
        conn: &mut AsyncPgConnection,
        checked: Checked,
        paid: Paid,
    ) -> AppResult<Box<PendingTurn>> {
        chat_turns::insert(
            conn,
            &ChatTurn {
                id: paid.id,
                user_id: self.user.id,
                session_id: Some(checked.session_id),
                status: TurnStatus::Pending,
                client_request_id: self.client_key.to_owned(),
                charge_key: paid.charge_key.clone(),
                credits_spent: paid.credits_spent,
                paid_with: paid.paid_with,
                model: self.model.to_owned(),
                attempts: 0,
                prompt_tokens: 0,
                completion_tokens: 0,
                cost_usd_micros: 0,
                error_code: None,
                created_at: paid.now,
                finished_at: None,
                request_fingerprint: Some(self.turn.fingerprint.clone()),
            },
        )
        .await?;
        Ok(Box::new(PendingTurn {
            id: paid.id,
            user_id: self.user.id,
            session_id: checked.session_id,
            new_session: checked.new_session,
            charge_key: paid.charge_key,
            language: Language::from_code(self.user.language_code.as_deref()),
            history: checked.history,
            message: self.turn.message.clone(),
            attached: checked.attached,
            photo: checked.photo,
            started_at: paid.now,
        }))
    }

    fn fingerprint(turn: &ChatTurn) -> Option<&str> {
        turn.request_fingerprint.as_deref()
    }

    fn in_progress() -> AppError {
        AppError::conflict(
            ErrorCode::TurnInProgress,
            "a request with this key is in progress",
        )
    }
}

fn too_many_pending() -> AppError {
    AppError::RateLimited {
        retry_after_secs: 5,
    }
}

/// A session that can take another turn: its photo (not sent once erased) and recent history.
/// A new photo becomes the session's with the answer (`settle::complete`).
fn continuable(context: TurnContext) -> AppResult<(Option<Photo>, Vec<StoredMessage>)> {
    if context.busy {
        return Err(AppError::conflict(
            ErrorCode::TurnInProgress,
            "the assistant is still answering the previous message",
        ));
    }
    if context.user_pending >= MAX_PENDING_TURNS_PER_USER {
        return Err(too_many_pending());
    }
    if context.message_count + 2 > assistant::MAX_SESSION_MESSAGES {
        return Err(AppError::conflict(
            ErrorCode::SessionFull,
            "this conversation is full; start a new session",
        ));
    }
    Ok((context.photo, context.recent))
}

/// An editing photo of the user's that can still be used.
async fn editing_photo(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    id: Uuid,
    now: DateTime<Utc>,
) -> AppResult<Upload> {
    let upload = uploads::find_owned(conn, user_id, id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no upload {id}")))?;
    if upload.purpose != UploadPurpose::EditingSource {
        return Err(AppError::unprocessable(
            ErrorCode::WrongUpload,
            format!("upload {id} is not an editing photo"),
        ));
    }
    if upload.expires_at <= now + chrono::Duration::minutes(5) {
        return Err(AppError::unprocessable(
            ErrorCode::UploadExpired,
            format!("upload {id} has expired; upload it again"),
        ));
    }
    Ok(upload)
}

/// The answer to a key seen before (for the same request, which `charged::run` checked): the
/// stored reply, or the same refusal.
async fn replay(conn: &mut AsyncPgConnection, turn: &ChatTurn) -> AppResult<Reply> {
    match turn.status {
        TurnStatus::Pending => Err(AppError::conflict(
            ErrorCode::TurnInProgress,
            "a request with this key is still being answered",
        )),
        TurnStatus::Failed => {
            Err(TurnFailed::from_code(turn.error_code.as_deref().unwrap_or("")).into())
        }
        TurnStatus::Completed => {
            let found = match turn.session_id {
                Some(sid) => chat_sessions::reply_of_turn(conn, sid, turn.id).await?,
                None => None,
            };
            match (turn.session_id, found) {
                (Some(session_id), Some(m)) => Ok(Reply {
                    session_id,
                    reply: m.content,
                    variants: m.variants,
                    usage: m.usage.unwrap_or_default(),
                }),
                _ => Err(AppError::conflict(
                    ErrorCode::IdempotencyConflict,
                    "this request was answered, and its history has been reset or deleted since",
                )),
            }
        }
    }
}
