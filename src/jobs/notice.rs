//! The `send_notice` job: sends one recorded notice (`notices::enqueue`) to its user's chat,
//! once. The notice is claimed before the send and given back only when Telegram asks us to
//! try again, so a retried or reclaimed job never sends it twice. Users who turned notices
//! off, who blocked the bot (403: marked, not written to again) or whose account is gone are
//! skipped.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::queue::Job;
use super::runner::{JobHandler, Outcome};
use crate::bot::texts::{self, Lang};
use crate::db::{bot, notices, users};
use crate::providers::telegram::TelegramClient;
use crate::state::AppState;

pub const KIND: &str = "send_notice";

#[derive(Debug, Serialize, Deserialize)]
pub struct Payload {
    pub key: String,
}

/// Without a bot token (no client) every notice is dropped.
pub struct NoticeJob {
    client: Option<TelegramClient>,
}

impl NoticeJob {
    pub fn new(client: Option<TelegramClient>) -> Self {
        Self { client }
    }
}

impl JobHandler for NoticeJob {
    async fn run(&self, state: &AppState, job: &Job) -> Outcome {
        match self.send(state, job).await {
            Ok(outcome) => outcome,
            Err(e) => Outcome::retry(format!("{e:#}")),
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(90)
    }
}

impl NoticeJob {
    async fn send(&self, state: &AppState, job: &Job) -> anyhow::Result<Outcome> {
        let payload: Payload = job.decode_payload()?;
        let key = payload.key.as_str();
        let mut conn = state.db.get().await?;
        let Some(notice) = notices::find(&mut conn, key).await? else {
            return Ok(Outcome::Done);
        };
        let (Some(client), None) = (&self.client, notice.sent_at) else {
            return Ok(Outcome::Done);
        };
        let user = users::find(&mut conn, notice.user_id).await?;
        let choices = notices::choices(&mut conn, user.id).await?;
        let wanted = choices.notices
            && (notice.kind != crate::notices::FREE_ACTIONS_BACK || choices.free_actions_back);
        // As for results: a user who wrote to the bot may be written to; one who blocked it
        // may not, until they come back.
        let may_write = bot::may_write(&mut conn, user.telegram_id)
            .await?
            .unwrap_or(user.allows_write_to_pm);
        let lang = Lang::of(user.language_code.as_deref());
        let text = texts::notice(lang, &notice.kind, &notice.args);
        let (Some(text), true) = (text, wanted && may_write && !user.is_blocked) else {
            tracing::debug!(key, "notice not sent: unwanted, or the chat is closed");
            return Ok(Outcome::Done);
        };
        if user.erased_at.is_some() || !notices::claim(&mut conn, key).await? {
            return Ok(Outcome::Done);
        }
        drop(conn);
        let body = json!({"chat_id": user.telegram_id, "text": text});
        match client.call_json("sendMessage", &body).await {
            Ok(_) => {
                metrics::counter!("notices_sent_total", "kind" => notice.kind).increment(1);
                Ok(Outcome::Done)
            }
            Err(e) if e.stops_chat() => {
                tracing::info!(key, "the user blocked the bot; not writing to them again");
                let mut conn = state.db.get().await?;
                bot::set_chat_blocked(&mut conn, user.telegram_id, true).await?;
                Ok(Outcome::Done)
            }
            Err(e) if e.is_retryable() => {
                let mut conn = state.db.get().await?;
                notices::unclaim(&mut conn, key).await?;
                Ok(match e.retry_after() {
                    Some(after) => Outcome::retry_after(e.to_string(), after),
                    None => Outcome::retry(e.to_string()),
                })
            }
            // A timeout may have posted the message: it stays claimed.
            Err(e) => {
                if e.alerts_operator() {
                    tracing::error!(error = %e, "Telegram refused the bot token");
                }
                Ok(Outcome::fail(e.to_string()))
            }
        }
    }
}
