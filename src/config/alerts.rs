//! Operator alerts (`ADMIN_CHAT_ID`, `ALERT_*`): where they go and when they fire.

use super::ConfigError;
use super::env::Env;

/// The operators' alerts (`crate::alerts`); none without `ADMIN_CHAT_ID`.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    /// The operators' Telegram chat; unset sends none.
    pub admin_chat_id: Option<i64>,
    /// Each kind of alert goes out at most once per this many seconds.
    pub interval_secs: u64,
    /// Jobs due and waiting above which the operators are alerted.
    pub queue_backlog: i64,
    /// Failed generations in an hour above which the operators are alerted.
    pub failed_generations_per_hour: i64,
}

impl AlertSettings {
    pub(super) fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            admin_chat_id: env.optional("ADMIN_CHAT_ID")?,
            interval_secs: env.parse("ALERT_INTERVAL_SECS", 3600)?,
            queue_backlog: env.parse("ALERT_QUEUE_BACKLOG", 500)?,
            failed_generations_per_hour: env.parse("ALERT_FAILED_GENERATIONS_PER_HOUR", 20)?,
        })
    }
}
