//! Starting a try-on or an edit: in one transaction, the client key, the inputs, the user's
//! limits, the charge, the generation and its job (`billing::charged`); the user's sockets hear
//! of it once it is committed.

use crate::domain::ids::UserId;
use chrono::{Duration, Utc};
use diesel::QueryResult;
use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use crate::billing::charged::{self, Charge, Charged, ChargedAction, Paid};
use crate::db::models::{Generation, User};
use crate::db::{chat_sessions, generations, uploads, users};
use crate::domain::idempotency;
use crate::domain::vocabulary::{
    GenerationKind, GenerationProviderName, GenerationStatus, UploadPurpose,
};
use crate::domain::zones::Zone;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::jobs::generation::{KIND, Payload};
use crate::jobs::queue::{self, EnqueueOptions};
use crate::realtime;
use crate::realtime::generations::notify;
use crate::state::AppState;

/// What a new generation needs, whichever its kind.
#[derive(Debug, Clone)]
pub struct NewGeneration {
    kind: GenerationKind,
    zone: Option<Zone>,
    prompt: String,
    /// (upload id, the purpose it must have)
    inputs: Vec<(Uuid, UploadPurpose)>,
    /// An edit from the assistant's chat: its photo when `inputs` is empty, its variant when
    /// an index is given.
    chat: Option<(Uuid, Option<usize>)>,
    /// Of the parsed request: a key reused with another request is refused.
    fingerprint: String,
}

impl NewGeneration {
    /// A try-on of `zone`: the item's photo on the person's.
    pub fn fitting(person_upload_id: Uuid, item_upload_id: Uuid, zone: Zone) -> Self {
        Self {
            kind: GenerationKind::Fitting,
            zone: Some(zone),
            prompt: zone.prompt(),
            inputs: vec![
                (person_upload_id, UploadPurpose::FittingPerson),
                (item_upload_id, UploadPurpose::FittingItem),
            ],
            chat: None,
            fingerprint: idempotency::fingerprint(&serde_json::json!({
                "kind": GenerationKind::Fitting,
                "person_upload_id": person_upload_id,
                "item_upload_id": item_upload_id,
                "zone": zone.as_str(),
            })),
        }
    }

    /// An edit with a (cleaned, non-empty) `prompt` of `upload_id`, or of the photo of the
    /// assistant's `session_id`. One of the two is needed.
    pub fn edit(upload_id: Option<Uuid>, session_id: Option<Uuid>, prompt: String) -> Self {
        Self::editing(upload_id, session_id, prompt, None)
    }

    /// Variant `index` of the prompts the assistant proposed last in `session_id`, run on the
    /// session's photo (`upload_id`, when given, must be that photo).
    pub fn variant(upload_id: Option<Uuid>, session_id: Uuid, index: usize) -> Self {
        // The prompt is filled in from the session inside the transaction.
        Self::editing(upload_id, Some(session_id), String::new(), Some(index))
    }

    fn editing(
        upload_id: Option<Uuid>,
        session_id: Option<Uuid>,
        prompt: String,
        variant: Option<usize>,
    ) -> Self {
        let chat = session_id.map(|session| (session, variant));
        let fingerprint = idempotency::fingerprint(&serde_json::json!({
            "kind": GenerationKind::Editing,
            "upload_id": upload_id,
            "prompt": (!prompt.is_empty()).then_some(&prompt),
            "session_id": session_id,
            "variant_index": chat.and_then(|(_, variant)| variant),
        }));
        Self {
            kind: GenerationKind::Editing,
            zone: None,
            prompt,
            inputs: upload_id
                .map(|id| (id, UploadPurpose::EditingSource))
                .into_iter()
                .collect(),
            chat,
            fingerprint,
        }
    }
}

/// Starts a generation once per `client_request_id`: a repeat of the same request gets the
/// first generation and is not charged again.
pub async fn start(
    state: &AppState,
    user: &User,
    new: NewGeneration,
    client_request_id: String,
) -> AppResult<Generation> {
    let settings = &state.settings.generation;
    let price = match new.kind {
        GenerationKind::Fitting => settings.fitting_price_credits,
        GenerationKind::Editing => settings.editing_price_credits,
    };
    let charge = Charge {
        user_id: user.id,
        client_key: &client_request_id,
        fingerprint: &new.fingerprint,
        scope: "generation",
        ref_type: "generation",
        price,
        free_limit: state.settings.free_actions_per_month,
    };
    let action = Start {
        state,
        user,
        new: &new,
        client_request_id: &client_request_id,
    };
    let mut conn = state.db.get().await?;
    let g = match charged::run(&mut conn, &charge, &action).await? {
        Charged::Earlier(g) => return Ok(g),
        Charged::New(g) => g,
    };
    let position = generations::queue_position(&mut conn, &g)
        .await
        .unwrap_or(0);
    let mut data = serde_json::Map::new();
    data.insert("position".into(), position.into());
    notify(state, &g, realtime::types::GENERATION_QUEUED, data);
    Ok(g)
}

/// A generation being started, as a charged action.
struct Start<'a> {
    state: &'a AppState,
    user: &'a User,
    new: &'a NewGeneration,
    client_request_id: &'a str,
}

/// The prompt and the inputs, checked.
type Inputs = (String, Vec<(Uuid, UploadPurpose)>);

impl ChargedAction for Start<'_> {
    type Row = Generation;
    type Context = ();
    type Checked = Inputs;
    type Created = Generation;

    const KEY_CONSTRAINT: Option<&'static str> = None;

    async fn earlier(&self, conn: &AsyncPgConnection) -> QueryResult<Option<Generation>> {
        generations::find_by_client_request(conn, self.user.id, self.client_request_id).await
    }

    async fn context(&self, _conn: &AsyncPgConnection) -> AppResult<()> {
        Ok(())
    }

    /// Under the user's row lock, so that concurrent requests count each other.
    async fn check(&self, conn: &mut AsyncPgConnection, (): ()) -> AppResult<Inputs> {
        users::lock(conn, self.user.id).await?;
        let (prompt, inputs) = match self.new.chat {
            Some((session_id, variant)) => {
                from_chat(conn, self.user.id, self.new, session_id, variant).await?
            }
            None => (self.new.prompt.clone(), self.new.inputs.clone()),
        };
        check_inputs(conn, self.user.id, &inputs).await?;
        check_limits(conn, self.state, self.user).await?;
        Ok((prompt, inputs))
    }

    async fn insert(
        &self,
        conn: &mut AsyncPgConnection,
        (prompt, inputs): Inputs,
        paid: Paid,
    ) -> AppResult<Generation> {
        let id = paid.id;
        let mut g = generations::insert(conn, &self.queued_row(prompt, &inputs, paid)).await?;
        let job = queue::enqueue(
            conn,
            KIND,
            &Payload { generation_id: id },
            EnqueueOptions::default(),
        )
        .await?;
        generations::set_job(conn, id, job.0).await?;
        g.job_id = Some(job.0);
        Ok(g)
    }

    fn fingerprint(g: &Generation) -> Option<&str> {
        g.request_fingerprint.as_deref()
    }

    fn in_progress() -> AppError {
        AppError::conflict(
            ErrorCode::IdempotencyConflict,
            "a request with this client_request_id is in progress",
        )
    }
}

impl Start<'_> {
    /// The new generation's row, queued and paid for.
    fn queued_row(
        &self,
        prompt: String,
        inputs: &[(Uuid, UploadPurpose)],
        paid: Paid,
    ) -> Generation {
        let new = self.new;
        let first_input = inputs.first().map(|i| i.0);
        let provider = match self.state.settings.generation.kie_api_key {
            Some(_) => GenerationProviderName::Kie,
            None => GenerationProviderName::Sandbox,
        };
        Generation {
            id: paid.id,
            user_id: self.user.id,
            kind: new.kind,
            status: GenerationStatus::Queued,
            zone: new.zone.map(|z| z.as_str().to_owned()),
            prompt,
            person_upload_id: first_input.filter(|_| new.kind == GenerationKind::Fitting),
            item_upload_id: inputs.get(1).map(|i| i.0),
            source_upload_id: first_input.filter(|_| new.kind == GenerationKind::Editing),
            chat_session_id: new.chat.map(|(session_id, _)| session_id),
            result_key: None,
            result_width: None,
            result_height: None,
            credits_spent: paid.credits_spent,
            paid_with: paid.paid_with,
            charge_key: paid.charge_key,
            provider,
            provider_task_id: None,
            attempts: 0,
            progress: 0,
            error_code: None,
            error_message: None,
            client_request_id: self.client_request_id.to_owned(),
            job_id: None,
            created_at: paid.now,
            updated_at: paid.now,
            started_at: None,
            finished_at: None,
            request_fingerprint: Some(new.fingerprint.clone()),
        }
    }
}

/// Each input must be the user's, of the right purpose, and not about to expire.
async fn check_inputs(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    inputs: &[(Uuid, UploadPurpose)],
) -> AppResult<()> {
    let now = Utc::now();
    for (id, purpose) in inputs {
        let upload = uploads::find_owned(conn, user_id, *id)
            .await?
            .ok_or_else(|| AppError::not_found(format!("no upload {id}")))?;
        if upload.purpose != *purpose {
            return Err(AppError::unprocessable(
                ErrorCode::WrongUpload,
                format!("upload {id} is not a {purpose} photo"),
            ));
        }
        if upload.expires_at <= now + Duration::minutes(5) {
            return Err(AppError::unprocessable(
                ErrorCode::UploadExpired,
                format!("upload {id} has expired; upload it again"),
            ));
        }
    }
    Ok(())
}

/// The hourly task limit, then the active one: when both apply, the hourly wait is the
/// longer, truthful one. It counts the generations of accounts this Telegram account erased,
/// too.
async fn check_limits(
    conn: &mut AsyncPgConnection,
    state: &AppState,
    user: &User,
) -> AppResult<()> {
    let settings = &state.settings.generation;
    let now = Utc::now();
    let since = now - crate::privacy::hourly_window();
    let recent =
        crate::privacy::recent_generation_times(conn, &state.settings, user, since).await?;
    if recent.len() as i64 >= settings.max_tasks_per_user_per_hour {
        let oldest = recent.first().copied().unwrap_or(now);
        let wait = (oldest + Duration::hours(1) - now).num_seconds().max(1);
        return Err(AppError::RateLimited {
            retry_after_secs: wait.unsigned_abs(),
        });
    }
    let active = generations::active_for_user(conn, user.id).await?;
    if active.len() as i64 >= settings.max_active_tasks_per_user {
        return Err(AppError::RateLimited {
            retry_after_secs: 15,
        });
    }
    Ok(())
}

/// An edit from the assistant's chat: the session must be the user's; its photo is edited unless
/// the request names one (which, for a proposed variant, must be the session's); with a
/// `variant`, the prompt is that variant of the session's latest answer.
async fn from_chat(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    new: &NewGeneration,
    session_id: Uuid,
    variant: Option<usize>,
) -> AppResult<Inputs> {
    let session = chat_sessions::find_owned(conn, user_id, session_id)
        .await?
        .ok_or_else(|| AppError::not_found("no such session"))?;
    let inputs = match (new.inputs.first(), session.upload_id) {
        (Some((id, _)), Some(photo)) if variant.is_some() && *id != photo => {
            return Err(AppError::unprocessable(
                ErrorCode::WrongUpload,
                "a proposed variant edits the session's photo",
            ));
        }
        (Some(_), _) => new.inputs.clone(),
        (None, Some(photo)) => vec![(photo, UploadPurpose::EditingSource)],
        (None, None) => {
            return Err(AppError::unprocessable(
                ErrorCode::SessionWithoutPhoto,
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
                ErrorCode::NoVariants,
                "the session has no proposed variants (yet, or since its reset)",
            )
        })?;
    Ok((prompt, inputs))
}
