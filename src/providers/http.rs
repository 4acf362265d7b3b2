//! HTTP plumbing every provider client shares: building a reqwest client (timeouts, no
//! redirects unless asked, our user agent), checking a base URL, reading a reply with a size
//! cap, and turning transport errors into text that never carries a URL (the Telegram token
//! sits in its path).

use std::time::Duration;

/// A client could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("invalid base URL {url:?}: {reason}")]
    BaseUrl { url: String, reason: String },
    #[error("HTTP client: {0}")]
    Http(String),
}

/// `base_url` without its trailing slash, once checked to be an absolute http(s) URL.
pub(super) fn normalise_base_url(base_url: &str) -> Result<String, BuildError> {
    let bad = |reason: String| BuildError::BaseUrl {
        url: base_url.to_owned(),
        reason,
    };
    let parsed = reqwest::Url::parse(base_url).map_err(|e| bad(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("expected http or https".into()));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(bad("must not carry a query or fragment".into()));
    }
    Ok(base_url.trim_end_matches('/').to_owned())
}

/// A client with `timeout` per request and the given redirect policy.
pub(super) fn client(
    timeout: Duration,
    redirect: reqwest::redirect::Policy,
) -> Result<reqwest::Client, BuildError> {
    build(builder(timeout, redirect))
}

/// The builder behind [`client`], for a client that needs more (a DNS resolver).
pub(super) fn builder(
    timeout: Duration,
    redirect: reqwest::redirect::Policy,
) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(redirect)
        .user_agent(concat!("atelier/", env!("CARGO_PKG_VERSION")))
}

pub(super) fn build(builder: reqwest::ClientBuilder) -> Result<reqwest::Client, BuildError> {
    builder
        .build()
        .map_err(|e| BuildError::Http(e.without_url().to_string()))
}

/// A call that got no usable reply from the network: how the caller's error type sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Transport {
    /// The request or the reading of its reply ran out of time.
    Timeout,
    /// Anything else (connection refused, reset, TLS), described by [`describe`].
    Network(String),
}

impl From<reqwest::Error> for Transport {
    fn from(err: reqwest::Error) -> Self {
        if err.is_timeout() {
            Self::Timeout
        } else {
            Self::Network(describe(err))
        }
    }
}

/// Why a reply body could not be read whole.
#[derive(Debug)]
pub(super) enum ReadError {
    /// It is larger than the cap (by its `Content-Length`, or as it arrived).
    TooLarge { max_bytes: usize },
    /// The connection failed or timed out while the body arrived.
    Transport(reqwest::Error),
}

/// Reads a body chunk by chunk, failing as soon as it exceeds `max_bytes` (at once when its
/// `Content-Length` says it will): a provider's reply is hostile input.
pub(super) async fn read_capped(
    mut response: reqwest::Response,
    max_bytes: usize,
) -> Result<Vec<u8>, ReadError> {
    let declared = response.content_length();
    if declared.is_some_and(|len| len > max_bytes as u64) {
        return Err(ReadError::TooLarge { max_bytes });
    }
    let mut body = Vec::with_capacity(declared.map_or(0, |len| len as usize).min(max_bytes));
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Transport)? {
        if body.len() + chunk.len() > max_bytes {
            return Err(ReadError::TooLarge { max_bytes });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A reqwest error as text, without its URL (the Telegram token sits in the path) and with
/// its causes, which is where the useful part ("connection refused") usually is.
pub(super) fn describe(err: reqwest::Error) -> String {
    use std::error::Error as _;
    let err = err.without_url();
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// At most `max` characters of `text` (provider bodies end up in logs and error rows).
pub(super) fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked() {
        assert_eq!(
            normalise_base_url("https://api.kie.ai/").ok().as_deref(),
            Some("https://api.kie.ai")
        );
        assert!(normalise_base_url("ftp://x").is_err());
        assert!(normalise_base_url("not a url").is_err());
    }

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "hé…");
        assert_eq!(truncate("hi", 5), "hi");
    }
}
