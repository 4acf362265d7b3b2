//! The HTTP front: where we are reached (`PUBLIC_BASE_URL`), which proxies' `X-Forwarded-For`
//! is believed (`TRUSTED_PROXIES`), and which origins CORS allows.

use super::ConfigError;
use super::env::{Env, bad};

/// `PUBLIC_BASE_URL` without its trailing slash; default: the loopback address on `port`.
pub(super) fn public_base_url(env: &Env<'_>, port: u16) -> Result<String, ConfigError> {
    let url = env
        .string("PUBLIC_BASE_URL")
        .unwrap_or_else(|| format!("http://127.0.0.1:{port}"))
        .trim_end_matches('/')
        .to_owned();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(bad(
            "PUBLIC_BASE_URL",
            "must start with http:// or https://",
        ));
    }
    Ok(url)
}

/// `TRUSTED_PROXIES`; the `TRUSTED_PROXY_HOPS` it replaced stops the start.
pub(super) fn trusted_proxies(
    env: &Env<'_>,
) -> Result<Vec<crate::domain::net::Network>, ConfigError> {
    if env.string("TRUSTED_PROXY_HOPS").is_some() {
        return Err(bad(
            "TRUSTED_PROXY_HOPS",
            "no longer read: set TRUSTED_PROXIES to the networks of your proxies instead \
             (e.g. 10.0.0.0/8,127.0.0.1/32), and remove TRUSTED_PROXY_HOPS",
        ));
    }
    let list = env.string("TRUSTED_PROXIES").unwrap_or_default();
    crate::domain::net::parse_networks(&list).map_err(|e| bad("TRUSTED_PROXIES", &e))
}

/// `CORS_ALLOWED_ORIGINS`, comma-separated.
pub(super) fn cors_allowed_origins(env: &Env<'_>) -> Vec<String> {
    env.string("CORS_ALLOWED_ORIGINS")
        .map(|s| {
            s.split(',')
                .map(|o| o.trim().to_owned())
                .filter(|o| !o.is_empty())
                .collect()
        })
        .unwrap_or_default()
}
