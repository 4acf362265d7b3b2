//! The `generation` job: drives one try-on or edit through the image provider.
//!
//! Each run does one step and reschedules itself: start the provider task (its id is stored
//! at once, so a retried or reclaimed job resumes polling and never pays for a second task),
//! poll on a widening schedule (or early, when a kie.ai callback wakes the job), then fetch,
//! check and store the result. A generation that fails for good is marked failed and its charge
//! refunded in one transaction, exactly once (`on_final_failure`, through
//! `generations::fail_and_refund`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use diesel::OptionalExtension as _;
use diesel_async::{AsyncConnection as _, AsyncPgConnection};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::queue::{self, EnqueueOptions, Job};
use super::runner::{JobHandler, Outcome};
use crate::db::models::Generation;
use crate::db::{generations, uploads, users};
use crate::media::image_pipeline::{self, Limits};
use crate::media::watermark;
use crate::providers::{
    AspectRatio, CreateTask, GenerationProvider, OutputFormat, ProviderError, TaskState,
};
use crate::state::AppState;

pub const KIND: &str = "generation";

#[derive(Debug, Serialize, Deserialize)]
pub struct Payload {
    pub generation_id: Uuid,
}

pub struct GenerationJob {
    provider: Arc<dyn GenerationProvider>,
}

impl GenerationJob {
    pub fn new(provider: Arc<dyn GenerationProvider>) -> Self {
        Self { provider }
    }
}

/// A failure's stable code and its detail, carried as `"<code>: <detail>"` to the final hook.
fn failure(code: &str, detail: impl std::fmt::Display) -> String {
    format!("{code}: {detail}")
}

async fn provider_outcome(state: &AppState, e: &ProviderError) -> Outcome {
    if e.alerts_operator {
        tracing::error!(provider = e.provider, code = e.code, message = %e.message, "provider account needs an operator");
        crate::alerts::provider_account(state, e.provider, &e.message).await;
    }
    if e.is_retryable() {
        Outcome::retry(failure(e.code, &e.message))
    } else {
        Outcome::fail(failure(e.code, &e.message))
    }
}

/// Poll often at first, then less: 2.5 s for 30 s, 7 s until 2 min, 20 s after.
fn poll_delay(running_for: chrono::Duration) -> Duration {
    match running_for.num_seconds() {
        s if s < 30 => Duration::from_millis(2500),
        s if s < 120 => Duration::from_secs(7),
        _ => Duration::from_secs(20),
    }
}

/// What starting the provider task came to.
enum Started {
    /// Created, and its result may already be there: poll it in this step.
    Task(String),
    /// Created; the first poll is due after this delay.
    PollLater(Duration),
    /// Not created: the step ends with this outcome.
    Not(Outcome),
}

impl JobHandler for GenerationJob {
    async fn run(&self, state: &AppState, job: &Job) -> Outcome {
        match self.step(state, job).await {
            Ok(outcome) => outcome,
            Err(e) => Outcome::retry(failure("internal_error", format!("{e:#}"))),
        }
    }

    async fn on_final_failure(
        &self,
        _state: &AppState,
        conn: &mut AsyncPgConnection,
        job: &Job,
        error: &str,
    ) -> anyhow::Result<()> {
        let payload: Payload = job.decode_payload()?;
        // `code: detail` from our steps; anything else (a panic, a timeout) is ours, not the
        // provider's: users are told only that (see `GenerationDto`), operators read the log.
        let (code, detail) = match error.split_once(": ") {
            Some((code, detail)) if code.chars().all(|c| c.is_ascii_lowercase() || c == '_') => {
                (code, detail)
            }
            _ => ("internal_error", error),
        };
        crate::generations::fail_and_refund(conn, payload.generation_id, code, detail).await?;
        Ok(())
    }

    /// The user hears of the failure (and the refund) only once both are committed.
    async fn after_final_failure(&self, state: &AppState, job: &Job) {
        let Ok(payload) = job.decode_payload::<Payload>() else {
            return;
        };
        crate::generations::announce_failed(state, payload.generation_id).await;
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(120)
    }
}

impl GenerationJob {
    async fn step(&self, state: &AppState, job: &Job) -> anyhow::Result<Outcome> {
        let payload: Payload = job.decode_payload()?;
        // A connection is taken for each short database step and given back before any
        // provider call: a slow provider must not hold the pool (or starve lease renewals).
        let begun =
            generations::begin_step(&mut *state.db.get().await?, payload.generation_id).await?;
        let Some((g, started_now)) = begun else {
            // Finished, or canceled (and refunded) before this step: nothing to do, and no paid
            // task is started for it.
            return Ok(Outcome::Done);
        };
        if started_now {
            crate::realtime::generations::notify(
                state,
                &g,
                "generation.running",
                serde_json::Map::new(),
            );
        }
        let gen_settings = &state.settings.generation;
        if (Utc::now() - g.created_at).num_seconds() > gen_settings.task_deadline_secs {
            return Ok(Outcome::fail(failure(
                "deadline_exceeded",
                "the provider did not finish in time",
            )));
        }
        let task = match g.provider_task_id.clone() {
            Some(task) => task,
            None => match self.start_task(state, &g).await? {
                Started::Task(task) => task,
                Started::Not(outcome) => return Ok(outcome),
                Started::PollLater(after) => return Ok(Outcome::Reschedule(after)),
            },
        };
        let info = match self.provider.poll(&task.clone().into()).await {
            Ok(info) => info,
            Err(e) => return Ok(provider_outcome(state, &e).await),
        };
        let running_for = Utc::now() - g.started_at.unwrap_or(g.created_at);
        match info.state {
            TaskState::Success { result_urls } => {
                let url = result_urls
                    .first()
                    .context("a successful task without a result")?;
                self.finish(state, &g, url).await
            }
            TaskState::Fail {
                fail_code,
                fail_msg,
            } => Ok(Outcome::fail(failure(
                "generation_failed",
                format!("{fail_msg} (provider code {fail_code})"),
            ))),
            _ => {
                let progress = i16::from(info.progress.unwrap_or(0).min(99));
                if progress > g.progress {
                    generations::set_progress(&mut *state.db.get().await?, g.id, progress).await?;
                    let mut data = serde_json::Map::new();
                    data.insert("progress".into(), progress.into());
                    crate::realtime::generations::notify(state, &g, "generation.progress", data);
                }
                Ok(Outcome::Reschedule(poll_delay(running_for)))
            }
        }
    }

    /// Creates the provider task and stores its id before anything else happens.
    async fn start_task(&self, state: &AppState, g: &Generation) -> anyhow::Result<Started> {
        let settings = &state.settings.generation;
        // `begin_step` counted this attempt.
        if g.attempts > settings.kie_max_create_attempts {
            return Ok(Started::Not(Outcome::fail(failure(
                "provider_unavailable",
                "the provider task could not be started",
            ))));
        }
        let mut image_urls = Vec::new();
        let mut conn = state.db.get().await?;
        for id in [g.person_upload_id, g.item_upload_id, g.source_upload_id]
            .into_iter()
            .flatten()
        {
            let upload = uploads::find_owned(&mut conn, g.user_id, id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("upload {id} is gone"));
            match upload {
                Ok(u) => image_urls.push(state.media_url(&u.storage_key)),
                Err(e) => return Ok(Started::Not(Outcome::fail(failure("upload_gone", e)))),
            }
        }
        let req = CreateTask {
            model: settings.kie_edit_model.clone(),
            prompt: g.prompt.clone(),
            image_urls,
            aspect_ratio: AspectRatio::Portrait3x4,
            output_format: OutputFormat::Png,
            callback_url: Some(format!(
                "{}/api/v1/callbacks/kie",
                state.settings.public_base_url
            )),
        };
        drop(conn);
        match self.provider.create(&req).await {
            Ok(task) => {
                store_task(state, g.id, task.as_str()).await?;
                tracing::info!(generation = %g.id, task = %task, "provider task started");
                Ok(match self.provider.first_poll_after() {
                    Duration::ZERO => Started::Task(task.into_inner()),
                    after => Started::PollLater(after),
                })
            }
            Err(e) => Ok(Started::Not(provider_outcome(state, &e).await)),
        }
    }

    /// Fetches the result (hostile bytes like any upload), watermarks it for the free tier,
    /// stores it and marks the generation succeeded.
    async fn finish(&self, state: &AppState, g: &Generation, url: &str) -> anyhow::Result<Outcome> {
        let bytes = match self
            .provider
            .fetch_result(url, state.settings.generation.result_max_bytes)
            .await
        {
            Ok(bytes) => bytes,
            Err(e) => return Ok(provider_outcome(state, &e).await),
        };
        let media = &state.settings.media;
        let limits = Limits {
            min_side: 1,
            store_max_side: media.image_store_max_side,
            ..Limits::default()
        };
        let free = g.paid_with == crate::domain::vocabulary::PaidWith::FreeAllowance;
        let processed = state
            .images
            .run(move || {
                image_pipeline::sniff(&bytes)?;
                let image = image_pipeline::decode_for_processing(&bytes, &limits)?;
                let mut image = image_pipeline::downscale(image, limits.store_max_side);
                if free {
                    watermark::apply_dynamic(&mut image);
                }
                let (w, h) = (image.width(), image.height());
                image_pipeline::encode(&image).map(|(bytes, kind)| (bytes, kind, w, h))
            })
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        let (bytes, kind, width, height) = match processed {
            Ok(done) => done,
            Err(e) => return Ok(Outcome::fail(failure("invalid_result", e))),
        };
        let key = format!("r/{}.{}", g.id, kind.extension());
        state.storage.put(&key, bytes).await?;
        let (width, height) = (i32::try_from(width)?, i32::try_from(height)?);
        let deliver = state.settings.telegram_bot_token.is_some();
        let mut conn = state.db.get().await?;
        let stored = conn
            .transaction(async |conn| {
                // In the order erasure locks (the user, then their generations): an erasure
                // either ran before (the owner is gone) or waits and deletes this result.
                let owner = users::lock(conn, g.user_id).await.optional()?;
                if owner.is_none_or(|u| u.erased_at.is_some()) {
                    return diesel::QueryResult::Ok(Stored::Orphaned);
                }
                let Some(done) =
                    generations::mark_succeeded(conn, g.id, &key, width, height).await?
                else {
                    return Ok(match generations::find(conn, g.id).await? {
                        // A step before this one stored the same result.
                        Some(row) if row.result_key.as_deref() == Some(key.as_str()) => {
                            Stored::Already
                        }
                        // Gone, or failed or canceled meanwhile: nothing refers to the file.
                        _ => Stored::Orphaned,
                    });
                };
                if deliver {
                    let payload = super::delivery::Payload {
                        generation_id: g.id,
                    };
                    let opts = EnqueueOptions::default().max_attempts(3);
                    queue::enqueue(conn, super::delivery::KIND, &payload, opts).await?;
                }
                Ok(Stored::Succeeded(Box::new(done)))
            })
            .await?;
        drop(conn);
        let done = match stored {
            Stored::Succeeded(done) => Some(*done),
            Stored::Already => None,
            Stored::Orphaned => {
                // The account was erased (or the generation ended) while the result was on its
                // way: the file must not outlive it.
                state.storage.delete(&key).await?;
                tracing::info!(generation = %g.id, "result discarded: its generation is gone");
                None
            }
        };
        if let Some(done) = done {
            let mut data = serde_json::Map::new();
            data.insert("result_url".into(), state.media_url(&key).into());
            crate::realtime::generations::notify(state, &done, "generation.succeeded", data);
        }
        Ok(Outcome::Done)
    }
}

/// What became of a fetched result.
enum Stored {
    Succeeded(Box<Generation>),
    /// An earlier step stored it already.
    Already,
    /// Its owner erased the account, or the generation ended otherwise: the file goes.
    Orphaned,
}

/// Stores a new provider task's id on its generation: retried a few times on a busy pool, as
/// losing it would mean paying for a second task.
async fn store_task(state: &AppState, id: Uuid, task: &str) -> anyhow::Result<()> {
    let mut tries = 0;
    loop {
        let stored = match state.db.get().await {
            Ok(mut conn) => generations::set_task(&mut conn, id, task)
                .await
                .map_err(anyhow::Error::from),
            Err(e) => Err(anyhow::Error::from(e)),
        };
        match stored {
            Ok(_) => return Ok(()),
            Err(e) if tries >= 3 => {
                tracing::error!(generation = %id, task, error = %format!("{e:#}"), "could not store a started provider task");
                return Err(e);
            }
            Err(_) => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(200 * tries)).await;
            }
        }
    }
}
