//! Error reporting (`SENTRY_*`): off without a DSN.

use secrecy::{ExposeSecret, SecretString};

use super::env::{Env, bad};
use super::{AppEnv, ConfigError};

/// Where errors are reported (Sentry), and how events are tagged.
#[derive(Debug, Clone)]
pub struct SentrySettings {
    pub dsn: SecretString,
    pub environment: String,
    pub release: String,
}

impl SentrySettings {
    /// `None` without `SENTRY_DSN`. The tags are read either way (they are listed in
    /// `.env.example` as read).
    pub(super) fn read(env: &Env<'_>, app_env: AppEnv) -> Result<Option<Self>, ConfigError> {
        let environment = env.string_or("SENTRY_ENVIRONMENT", app_env.name());
        let release = env
            .string("SENTRY_RELEASE")
            .unwrap_or_else(|| format!("atelier@{}", env!("CARGO_PKG_VERSION")));
        let Some(dsn) = env.secret("SENTRY_DSN")? else {
            return Ok(None);
        };
        if dsn.expose_secret().parse::<sentry::types::Dsn>().is_err() {
            return Err(bad(
                "SENTRY_DSN",
                "is not a Sentry DSN (https://<key>@<host>/<project>)",
            ));
        }
        Ok(Some(Self {
            dsn,
            environment,
            release,
        }))
    }
}
