//! Generations: prices, per-user limits and the image provider, kie.ai or the local sandbox
//! (`*_PRICE_CREDITS`, `MAX_*TASKS*`, `KIE_*`, `GENERATION_*`, `SANDBOX_GENERATION_MS`).

use secrecy::SecretString;

use super::ConfigError;
use super::env::{Env, bad};

/// Generations: prices, limits and the image provider (kie.ai, or the local sandbox).
#[derive(Debug, Clone)]
pub struct GenerationSettings {
    pub fitting_price_credits: i64,
    pub editing_price_credits: i64,
    pub max_tasks_per_user_per_hour: i64,
    pub max_active_tasks_per_user: i64,
    pub edit_prompt_max_chars: usize,
    /// kie.ai; `None` runs the local sandbox provider (refused in production).
    pub kie_api_key: Option<SecretString>,
    pub kie_base_url: String,
    pub kie_edit_model: String,
    pub kie_timeout_secs: u64,
    pub kie_webhook_hmac_key: Option<SecretString>,
    pub kie_callback_max_skew_secs: u64,
    pub kie_max_create_attempts: i32,
    pub task_deadline_secs: i64,
    pub result_max_bytes: usize,
    /// How long a sandbox generation takes, so progress can be watched.
    pub sandbox_duration_ms: u64,
}

impl GenerationSettings {
    pub(super) fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            fitting_price_credits: env.parse("FITTING_PRICE_CREDITS", 2)?,
            editing_price_credits: env.parse("EDITING_PRICE_CREDITS", 1)?,
            max_tasks_per_user_per_hour: env.parse("MAX_TASKS_PER_USER_PER_HOUR", 20)?,
            max_active_tasks_per_user: env.parse("MAX_ACTIVE_TASKS_PER_USER", 3)?,
            edit_prompt_max_chars: env.parse("EDIT_PROMPT_MAX_CHARS", 1000)?,
            kie_api_key: env.secret("KIE_API_KEY")?,
            kie_base_url: env.string_or("KIE_BASE_URL", "https://api.kie.ai"),
            kie_edit_model: env.string_or("KIE_EDIT_MODEL", "google/nano-banana-edit"),
            kie_timeout_secs: env.parse("KIE_TIMEOUT_SECS", 30)?,
            kie_webhook_hmac_key: env.secret("KIE_WEBHOOK_HMAC_KEY")?,
            kie_callback_max_skew_secs: env.parse("KIE_CALLBACK_MAX_SKEW_SECS", 300)?,
            kie_max_create_attempts: env.parse("KIE_MAX_CREATE_ATTEMPTS", 2)?,
            task_deadline_secs: env.parse("GENERATION_DEADLINE_SECS", 900)?,
            result_max_bytes: env.parse("GENERATION_RESULT_MAX_BYTES", 20 * 1024 * 1024)?,
            sandbox_duration_ms: env.parse("SANDBOX_GENERATION_MS", 3000)?,
        })
    }

    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.fitting_price_credits < 1 || self.editing_price_credits < 1 {
            return Err(bad(
                "FITTING_PRICE_CREDITS",
                "prices (FITTING_PRICE_CREDITS, EDITING_PRICE_CREDITS) must be at least 1",
            ));
        }
        if self.max_active_tasks_per_user < 1 || self.max_tasks_per_user_per_hour < 1 {
            return Err(bad(
                "MAX_ACTIVE_TASKS_PER_USER",
                "task limits must be at least 1",
            ));
        }
        if self.kie_max_create_attempts < 1
            || self.task_deadline_secs < 1
            || self.edit_prompt_max_chars < 1
        {
            return Err(bad(
                "KIE_MAX_CREATE_ATTEMPTS",
                "KIE_MAX_CREATE_ATTEMPTS, GENERATION_DEADLINE_SECS and EDIT_PROMPT_MAX_CHARS must be at least 1",
            ));
        }
        Ok(())
    }
}
