//! Outbound provider clients: kie.ai (image generation) and the Telegram Bot API (delivery).
//! Each is a small typed client with explicit timeouts, its base URL from config, and bounded,
//! jittered retries only where repeating a call is safe. The generation worker drives any
//! image provider (kie.ai, the local sandbox) through [`GenerationProvider`].

pub mod kie;
pub mod openrouter;
pub mod sandbox;
pub mod telegram;
pub mod yookassa;

use std::fmt;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// A boxed, sendable future: what [`GenerationProvider`] methods return, so the trait stays
/// object-safe (`Arc<dyn GenerationProvider>`) without an async-trait macro.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the generation worker needs from an image provider. Implementations never retry
/// `create` themselves (it is not idempotent); `poll` and `fetch_result` may retry transient
/// failures inside one call.
pub trait GenerationProvider: Send + Sync {
    /// Starts a task. Store the returned id before anything else: a retried job resumes
    /// polling it instead of creating a second (paid) task.
    fn create<'a>(&'a self, req: &'a CreateTask) -> BoxFuture<'a, Result<TaskId, ProviderError>>;

    /// The task's current state.
    fn poll<'a>(&'a self, task_id: &'a TaskId) -> BoxFuture<'a, Result<TaskInfo, ProviderError>>;

    /// Downloads one result, refusing more than `max_bytes`.
    fn fetch_result<'a>(
        &'a self,
        url: &'a str,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<Vec<u8>, ProviderError>>;

    /// When to poll a task first after creating it; zero polls at once, in the same step
    /// (a provider whose results are ready when `create` returns).
    fn first_poll_after(&self) -> Duration {
        Duration::from_millis(500)
    }
}

/// Runs one call to a provider and records it: `provider_calls_total{provider, operation,
/// outcome}` (outcome `ok` or the error's stable label) and `provider_call_duration_seconds`.
pub async fn measured<T, E>(
    provider: &'static str,
    operation: &'static str,
    call: impl Future<Output = Result<T, E>>,
    label: impl Fn(&E) -> String,
) -> Result<T, E> {
    let started = std::time::Instant::now();
    let result = call.await;
    let outcome = match &result {
        Ok(_) => "ok".to_owned(),
        Err(e) => label(e),
    };
    metrics::histogram!("provider_call_duration_seconds", "provider" => provider, "operation" => operation)
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("provider_calls_total", "provider" => provider, "operation" => operation, "outcome" => outcome)
        .increment(1);
    result
}

/// A provider's task id (kie.ai: `task_google_<ms>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskId(String);

impl TaskId {
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for TaskId {
    fn from(id: String) -> Self {
        Self(id)
    }
}

/// Aspect ratios Nano Banana accepts (`aspect_ratio`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AspectRatio {
    Square,
    Portrait9x16,
    Landscape16x9,
    Portrait3x4,
    Landscape4x3,
    Landscape3x2,
    Portrait2x3,
    Landscape5x4,
    Portrait4x5,
    Landscape21x9,
    Auto,
}

impl AspectRatio {
    pub const ALL: [Self; 11] = [
        Self::Square,
        Self::Portrait9x16,
        Self::Landscape16x9,
        Self::Portrait3x4,
        Self::Landscape4x3,
        Self::Landscape3x2,
        Self::Portrait2x3,
        Self::Landscape5x4,
        Self::Portrait4x5,
        Self::Landscape21x9,
        Self::Auto,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Square => "1:1",
            Self::Portrait9x16 => "9:16",
            Self::Landscape16x9 => "16:9",
            Self::Portrait3x4 => "3:4",
            Self::Landscape4x3 => "4:3",
            Self::Landscape3x2 => "3:2",
            Self::Portrait2x3 => "2:3",
            Self::Landscape5x4 => "5:4",
            Self::Portrait4x5 => "4:5",
            Self::Landscape21x9 => "21:9",
            Self::Auto => "auto",
        }
    }
}

impl FromStr for AspectRatio {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unsupported aspect ratio {s:?}"))
    }
}

/// Result image format (`output_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputFormat {
    Png,
    Jpeg,
}

impl OutputFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpeg",
        }
    }
}

impl FromStr for OutputFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "png" => Ok(Self::Png),
            "jpeg" | "jpg" => Ok(Self::Jpeg),
            other => Err(format!("unsupported output format {other:?}")),
        }
    }
}

/// One generation request. `image_urls` are public signed links to our stored photos
/// (empty for text-to-image models).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTask {
    pub model: String,
    pub prompt: String,
    pub image_urls: Vec<String>,
    pub aspect_ratio: AspectRatio,
    pub output_format: OutputFormat,
    pub callback_url: Option<String>,
}

/// A task as the provider reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    pub task_id: TaskId,
    pub state: TaskState,
    /// 0–100 when the provider reports it.
    pub progress: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskState {
    Waiting,
    Queuing,
    Generating,
    /// Download the results at once: kie.ai result URLs expire after about a day.
    Success {
        result_urls: Vec<String>,
    },
    /// The provider gave up (moderation rejections included): final, refund, keep `fail_msg`.
    Fail {
        fail_code: String,
        fail_msg: String,
    },
}

impl TaskState {
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Success { .. } | Self::Fail { .. })
    }
}

/// What the caller should do about a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorAction {
    /// Transient (rate limit, maintenance, 5xx, network): retry with backoff, bounded by
    /// the job's deadline.
    Retry,
    /// Possibly transient (a task not visible yet, a garbled reply): retry a few times over
    /// a short window, then treat as final.
    RetryBriefly,
    /// Stop: mark the operation failed (and refund).
    Final,
    /// The request may or may not have taken effect (a `createTask` that timed out). Another
    /// attempt may create a second task: count it against the create-attempt cap.
    OutcomeUnknown,
}

/// A provider failure in terms the worker acts on, whatever the provider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{provider} {code}: {message}")]
pub struct ProviderError {
    /// `"kie"`, `"sandbox"`, ...
    pub provider: &'static str,
    pub action: ErrorAction,
    /// Our account or configuration is broken (bad key, out of credits): page someone.
    pub alerts_operator: bool,
    /// Short stable code, fit for `generations.error_code` (`provider_rate_limited`, ...).
    pub code: &'static str,
    /// Human-readable detail; never holds secrets.
    pub message: String,
}

impl ProviderError {
    pub fn new(
        provider: &'static str,
        action: ErrorAction,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            provider,
            action,
            alerts_operator: false,
            code,
            message: message.into(),
        }
    }

    pub fn alerting(mut self) -> Self {
        self.alerts_operator = true;
        self
    }

    /// Another attempt may succeed (for [`ErrorAction::OutcomeUnknown`], only within the
    /// create-attempt cap).
    pub fn is_retryable(&self) -> bool {
        !matches!(self.action, ErrorAction::Final)
    }

    pub fn outcome_unknown(&self) -> bool {
        matches!(self.action, ErrorAction::OutcomeUnknown)
    }
}

/// Bounded retries with jittered exponential backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included (1 = no retry).
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl RetryPolicy {
    pub const fn new(max_attempts: u32, base_delay: Duration, max_delay: Duration) -> Self {
        Self {
            max_attempts,
            base_delay,
            max_delay,
        }
    }

    pub const fn none() -> Self {
        Self::new(1, Duration::ZERO, Duration::ZERO)
    }

    /// The pause before retry number `retry` (0 for the first retry): exponential, capped,
    /// with "equal jitter" (uniform in the upper half) so that clients do not retry in step.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(retry.min(16)));
        let capped = exp.min(self.max_delay);
        let half = capped / 2;
        half + half.mul_f64(rand::random::<f64>())
    }
}

/// How clients wait between attempts; tests inject one that records and returns at once.
#[derive(Clone)]
pub struct Sleeper(Arc<dyn Fn(Duration) -> BoxFuture<'static, ()> + Send + Sync>);

impl Sleeper {
    pub fn new(f: impl Fn(Duration) -> BoxFuture<'static, ()> + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// `tokio::time::sleep`.
    pub fn tokio() -> Self {
        Self::new(|d| Box::pin(tokio::time::sleep(d)))
    }

    pub async fn sleep(&self, duration: Duration) {
        if !duration.is_zero() {
            (self.0)(duration).await;
        }
    }
}

impl Default for Sleeper {
    fn default() -> Self {
        Self::tokio()
    }
}

impl fmt::Debug for Sleeper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sleeper")
    }
}

/// A client could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("invalid base URL {url:?}: {reason}")]
    BaseUrl { url: String, reason: String },
    #[error("HTTP client: {0}")]
    Http(String),
}

/// `base_url` without its trailing slash, once checked to be an absolute http(s) URL.
fn normalise_base_url(base_url: &str) -> Result<String, BuildError> {
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

fn http_client(
    timeout: Duration,
    redirect: reqwest::redirect::Policy,
) -> Result<reqwest::Client, BuildError> {
    build_client(http_builder(timeout, redirect))
}

fn http_builder(timeout: Duration, redirect: reqwest::redirect::Policy) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(redirect)
        .user_agent(concat!("atelier/", env!("CARGO_PKG_VERSION")))
}

fn build_client(builder: reqwest::ClientBuilder) -> Result<reqwest::Client, BuildError> {
    builder
        .build()
        .map_err(|e| BuildError::Http(e.without_url().to_string()))
}

/// A reqwest error as text, without its URL (the Telegram token sits in the path) and with
/// its causes, which is where the useful part ("connection refused") usually is.
fn describe(err: reqwest::Error) -> String {
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
fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// The image provider the settings call for: kie.ai with a key, else the local sandbox
/// (which configuration refuses in production).
pub fn image_provider(
    state: &crate::state::AppState,
) -> anyhow::Result<Arc<dyn GenerationProvider>> {
    let g = &state.settings.generation;
    Ok(match &g.kie_api_key {
        Some(key) => Arc::new(kie::KieClient::new(
            &g.kie_base_url,
            key.clone(),
            Duration::from_secs(g.kie_timeout_secs),
        )?),
        None => Arc::new(sandbox::SandboxProvider::new(
            state.storage.clone(),
            state.images.clone(),
            Duration::from_millis(g.sandbox_duration_ms),
        )),
    })
}

/// The Bot API client, when a bot token is configured.
pub fn telegram_client(
    state: &crate::state::AppState,
) -> anyhow::Result<Option<telegram::TelegramClient>> {
    let s = &state.settings;
    let Some(token) = &s.telegram_bot_token else {
        return Ok(None);
    };
    Ok(Some(telegram::TelegramClient::new(
        &s.telegram_api_base_url,
        token.clone(),
        Duration::from_secs(30),
    )?))
}

/// The payment provider the settings call for: YooKassa with keys, else the local sandbox
/// (which configuration refuses in production).
pub fn payment_provider(
    settings: &crate::config::Settings,
    db: &crate::db::PgPool,
) -> anyhow::Result<Arc<dyn yookassa::PaymentProvider>> {
    let p = &settings.payments;
    Ok(match &p.yookassa {
        Some(keys) => Arc::new(yookassa::YooKassaClient::new(
            &p.yookassa_base_url,
            &keys.shop_id,
            keys.secret_key.clone(),
            Duration::from_secs(p.yookassa_timeout_secs),
        )?),
        None => Arc::new(yookassa::SandboxPayments::new(
            db.clone(),
            &settings.public_base_url,
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_jittered_in_the_upper_half() {
        let p = RetryPolicy::new(5, Duration::from_millis(100), Duration::from_millis(800));
        for retry in 0..10 {
            let d = p.backoff(retry);
            let full = (Duration::from_millis(100) * 2u32.pow(retry.min(16))).min(p.max_delay);
            assert!(d >= full / 2 && d <= full, "{retry}: {d:?}");
        }
    }

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
