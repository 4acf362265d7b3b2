//! The editing assistant: OpenRouter or the local sandbox assistant, the price of a turn and
//! retention (`OPENROUTER_*`, `CHAT_*`).

use secrecy::SecretString;

use super::ConfigError;
use super::env::{Env, bad};

/// The editing assistant: OpenRouter (or the local sandbox assistant), prices and retention.
#[derive(Debug, Clone)]
pub struct AssistantSettings {
    /// `None` runs the sandbox assistant (refused in production).
    pub openrouter_api_key: Option<SecretString>,
    pub openrouter_base_url: String,
    pub openrouter_model: String,
    /// One call to OpenRouter.
    pub openrouter_timeout_secs: u64,
    /// Calls per turn at most, retries included (each one is billed by OpenRouter).
    pub openrouter_max_attempts: u32,
    /// Stream answers (SSE), so the reply reaches sockets as `chat.delta` while it is written.
    pub openrouter_stream: bool,
    pub price_credits: i64,
    pub message_max_chars: usize,
    /// Sessions (and their photos) are deleted this long after their last message.
    pub session_ttl_secs: u64,
    /// The assistant's whole part of a turn, retries included. A turn still pending twice as
    /// long after it was charged (a crashed process) is refunded by the sweeper.
    pub turn_timeout_secs: u64,
}

impl AssistantSettings {
    pub(super) fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            openrouter_api_key: env.secret("OPENROUTER_API_KEY")?,
            openrouter_base_url: env
                .string_or("OPENROUTER_BASE_URL", "https://openrouter.ai/api/v1"),
            openrouter_model: env.string_or("OPENROUTER_MODEL", "anthropic/claude-haiku-4.5"),
            openrouter_timeout_secs: env.parse("OPENROUTER_TIMEOUT_SECS", 30)?,
            openrouter_max_attempts: env.parse("OPENROUTER_MAX_ATTEMPTS", 3)?,
            openrouter_stream: env.parse("OPENROUTER_STREAM", true)?,
            price_credits: env.parse("CHAT_PRICE_CREDITS", 1)?,
            message_max_chars: env.parse("CHAT_MESSAGE_MAX_CHARS", 2000)?,
            session_ttl_secs: env.parse("CHAT_SESSION_TTL_SECS", 30 * 86_400)?,
            turn_timeout_secs: env.parse("CHAT_TURN_TIMEOUT_SECS", 90)?,
        })
    }

    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.price_credits < 1 {
            return Err(bad("CHAT_PRICE_CREDITS", "must be at least 1"));
        }
        if self.message_max_chars < 1 {
            return Err(bad("CHAT_MESSAGE_MAX_CHARS", "must be at least 1"));
        }
        if self.openrouter_max_attempts < 1 || self.openrouter_timeout_secs < 1 {
            return Err(bad(
                "OPENROUTER_MAX_ATTEMPTS",
                "OPENROUTER_MAX_ATTEMPTS and OPENROUTER_TIMEOUT_SECS must be at least 1",
            ));
        }
        if self.turn_timeout_secs < self.openrouter_timeout_secs {
            return Err(bad(
                "CHAT_TURN_TIMEOUT_SECS",
                "must be at least OPENROUTER_TIMEOUT_SECS (one call has to fit)",
            ));
        }
        if self.session_ttl_secs < 3600 {
            return Err(bad("CHAT_SESSION_TTL_SECS", "must be at least 3600"));
        }
        Ok(())
    }
}
