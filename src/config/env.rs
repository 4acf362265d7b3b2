//! How a section reads its variables: trimmed, empty as unset, a malformed value named by its
//! variable. Also the env file (`ENV_FILE`, default `.env`) loaded below the real environment.

use std::fmt;
use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};

use super::ConfigError;

/// A key lookup (the process environment, or a map in tests) with typed readers.
pub(super) struct Env<'a> {
    pub(super) lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl Env<'_> {
    /// A non-empty value, trimmed; empty counts as unset.
    pub(super) fn string(&self, var: &str) -> Option<String> {
        (self.lookup)(var)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// The value, or `default` when unset.
    pub(super) fn string_or(&self, var: &str, default: &str) -> String {
        self.string(var).unwrap_or_else(|| default.to_owned())
    }

    pub(super) fn secret(&self, var: &'static str) -> Result<Option<SecretString>, ConfigError> {
        Ok(self.string(var).map(SecretString::from))
    }

    pub(super) fn secret_of_at_least(
        &self,
        var: &'static str,
        bytes: usize,
    ) -> Result<Option<SecretString>, ConfigError> {
        match self.secret(var)? {
            Some(s) if s.expose_secret().len() < bytes => Err(ConfigError {
                var,
                message: format!("must be at least {bytes} bytes"),
            }),
            secret => Ok(secret),
        }
    }

    pub(super) fn optional<T: FromStr>(&self, var: &'static str) -> Result<Option<T>, ConfigError>
    where
        T::Err: fmt::Display,
    {
        self.string(var)
            .map(|raw| {
                raw.parse::<T>().map_err(|e| ConfigError {
                    var,
                    message: format!("cannot parse {raw:?}: {e}"),
                })
            })
            .transpose()
    }

    pub(super) fn parse<T: FromStr>(&self, var: &'static str, default: T) -> Result<T, ConfigError>
    where
        T::Err: fmt::Display,
    {
        Ok(self.optional(var)?.unwrap_or(default))
    }
}

/// A [`ConfigError`] naming `var`.
pub(super) fn bad(var: &'static str, message: &str) -> ConfigError {
    ConfigError {
        var,
        message: message.into(),
    }
}

/// Loads `path` (unset: `.env`, which may be missing; empty: nothing) into the environment,
/// below the variables already set. Scripts that choose every setting themselves (`make e2e`,
/// `make contract`, the benchmarks) set `ENV_FILE=` so that a developer's `.env` cannot add a real
/// provider's key or another database behind their back. A file that is there but malformed is
/// an error, not silently skipped.
pub(super) fn load_env_file(path: Option<String>) -> Result<(), ConfigError> {
    let (path, required) = match path {
        None => (".env".to_owned(), false),
        Some(p) if p.is_empty() => return Ok(()),
        Some(p) => (p, true),
    };
    match dotenvy::from_path(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.not_found() && !required => Ok(()),
        Err(e) => Err(ConfigError {
            var: "ENV_FILE",
            message: format!("{path}: {e}"),
        }),
    }
}
