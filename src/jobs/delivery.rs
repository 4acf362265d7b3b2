//! The `deliver_result` job: sends a finished generation to the user's Telegram chat with
//! `sendPhoto`. Best effort by design: a failure here is logged and never touches the
//! generation, whose result stays in the Mini App.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::queue::Job;
use super::runner::{JobHandler, Outcome};
use crate::db::{bot, generations, users};
use crate::media::storage;
use crate::providers::telegram::TelegramClient;
use crate::state::AppState;

pub const KIND: &str = "deliver_result";

#[derive(Debug, Serialize, Deserialize)]
pub struct Payload {
    pub generation_id: Uuid,
}

pub struct DeliveryJob {
    client: TelegramClient,
}

impl DeliveryJob {
    pub fn new(client: TelegramClient) -> Self {
        Self { client }
    }
}

fn caption(language: Option<&str>) -> &'static str {
    match language.map(|l| l.split('-').next().unwrap_or(l)) {
        Some("ru" | "uk" | "be" | "kk") => "Готово! Результат сохранён в Atelier.",
        _ => "Your Atelier result is ready.",
    }
}

impl JobHandler for DeliveryJob {
    async fn run(&self, state: &AppState, job: &Job) -> Outcome {
        match self.deliver(state, job).await {
            Ok(outcome) => outcome,
            Err(e) => Outcome::retry(format!("{e:#}")),
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(90)
    }
}

impl DeliveryJob {
    async fn deliver(&self, state: &AppState, job: &Job) -> anyhow::Result<Outcome> {
        let payload: Payload = job.decode_payload()?;
        let mut conn = state.db.get().await?;
        let Some(g) = generations::find(&mut conn, payload.generation_id).await? else {
            return Ok(Outcome::Done);
        };
        let user = users::find(&mut conn, g.user_id).await?;
        // A user who wrote to the bot may be written to, whatever initData said; one who
        // blocked it may not, until they come back.
        let may_write = bot::may_write(&mut conn, user.telegram_id)
            .await?
            .unwrap_or(user.allows_write_to_pm);
        drop(conn);
        let (Some(key), true) = (g.result_key.as_deref(), may_write && !user.is_blocked) else {
            return Ok(Outcome::Done);
        };
        let Some(bytes) = state.storage.get(key).await? else {
            return Ok(Outcome::Done);
        };
        let name = format!("atelier.{}", key.rsplit('.').next().unwrap_or("jpg"));
        match self
            .client
            .send_photo(
                user.telegram_id.get(),
                bytes.to_vec(),
                &name,
                storage::content_type(key),
                caption(user.language_code.as_deref()),
            )
            .await
        {
            Ok(_) => Ok(Outcome::Done),
            Err(e) if e.stops_chat() => {
                tracing::info!(generation = %g.id, "the user blocked the bot; result not delivered");
                let mut conn = state.db.get().await?;
                bot::set_chat_blocked(&mut conn, user.telegram_id, true).await?;
                Ok(Outcome::Done)
            }
            Err(e) if e.is_retryable() => Ok(match e.retry_after() {
                Some(after) => Outcome::retry_after(e.to_string(), after),
                None => Outcome::retry(e.to_string()),
            }),
            Err(e) => {
                if e.alerts_operator() {
                    tracing::error!(error = %e, "Telegram refused the bot token");
                }
                Ok(Outcome::fail(e.to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn captions_follow_the_users_language() {
        assert!(super::caption(Some("ru")).starts_with("Готово"));
        assert!(super::caption(Some("uk-UA")).starts_with("Готово"));
        assert!(super::caption(Some("en")).starts_with("Your"));
        assert!(super::caption(None).starts_with("Your"));
    }
}
