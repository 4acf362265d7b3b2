//! Abuse limits, sliding windows in Redis shared by all replicas (`RATE_LIMIT_*`; `off`
//! disables one).

use super::ConfigError;
use super::env::Env;
use crate::domain::rate::{Limit, LimitSpec};

/// Abuse limits (sliding windows in Redis, shared by all replicas; `off` disables one).
#[derive(Debug, Clone)]
pub struct LimitSettings {
    pub login_per_ip: Option<Limit>,
    /// Failed logins (bad or expired initData) per IP; when full, every login from it waits.
    pub login_failures_per_ip: Option<Limit>,
    pub chat_per_user: Option<Limit>,
    pub uploads_per_user: Option<Limit>,
    /// New payments (YooKassa and Stars together) per user.
    pub payments_per_user: Option<Limit>,
}

impl LimitSettings {
    pub(super) fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        let limit = |var: &'static str, max: u32, window_secs: u64| -> Result<_, ConfigError> {
            Ok(env
                .parse(var, LimitSpec(Some(Limit::new(max, window_secs))))?
                .0)
        };
        Ok(Self {
            login_per_ip: limit("RATE_LIMIT_LOGIN_PER_IP", 60, 60)?,
            login_failures_per_ip: limit("RATE_LIMIT_LOGIN_FAILURES_PER_IP", 20, 900)?,
            chat_per_user: limit("RATE_LIMIT_CHAT_PER_USER", 10, 60)?,
            uploads_per_user: limit("RATE_LIMIT_UPLOADS_PER_USER", 60, 3600)?,
            payments_per_user: limit("RATE_LIMIT_PAYMENTS_PER_USER", 10, 3600)?,
        })
    }
}
