//! Outbound provider clients and the traits the rest of the crate drives them through:
//! [`GenerationProvider`] (kie.ai, or the sandbox), [`PaymentProvider`] (YooKassa, or the
//! sandbox) and [`Assistant`] (OpenRouter, or the sandbox); the Telegram Bot API client is used
//! as it is. Each client is small and typed, with explicit timeouts, its base URL from config,
//! and bounded, jittered retries only where repeating a call is safe; [`http`] holds what they
//! share. Clients are built once, at start (`AppState::build`); none reads the settings or the
//! application state, and none writes our tables.

pub mod http;
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

use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;

pub use http::BuildError;

use crate::domain::assistant::{AssistantReply, Language, PromptMessage, Usage};
use crate::domain::payments::{Fetched, RemoteStatus};

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

// Payments: what billing needs from YooKassa or the sandbox.

/// A failed provider call, in the terms the caller acts on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    /// 500, timeout, connection lost: the operation may or may not have happened. Repeat it
    /// with the same key and body, or GET the object.
    #[error("payment provider outcome unknown: {0}")]
    Unknown(String),
    /// 429: nothing was done; try again later.
    #[error("payment provider rate limited the call")]
    RateLimited,
    /// 400 and other final refusals: nothing was done; a later attempt needs a new key.
    #[error("payment provider rejected the request ({status} {code}): {description}")]
    Rejected {
        status: u16,
        code: String,
        description: String,
        parameter: Option<String>,
    },
    /// 401, 403: our shop id or key is wrong. Needs an operator.
    #[error("payment provider refused our credentials ({status}): {description}")]
    Credentials { status: u16, description: String },
    /// 404 on a GET: no such object.
    #[error("payment provider does not know {0}")]
    NotFound(String),
    /// A reply that does not have the documented shape.
    #[error("unexpected payment provider reply: {0}")]
    Protocol(String),
}

impl PaymentError {
    /// Another try with the same key may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unknown(_) | Self::RateLimited)
    }
}

/// The answer to a create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub id: String,
    pub status: RemoteStatus,
    pub confirmation_url: Option<String>,
}

/// A refund as the provider reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    pub id: String,
    pub payment_id: String,
    pub succeeded: bool,
    pub amount_minor: i64,
    pub currency: String,
}

/// What payments need from a provider. `create` takes the whole request body, built and
/// stored by the caller, so that a repeat sends exactly the same bytes under the same key.
pub trait PaymentProvider: Send + Sync {
    /// `yookassa` or `sandbox`: stored in `payments.provider`.
    fn name(&self) -> crate::domain::vocabulary::PaymentProviderName;

    fn create<'a>(
        &'a self,
        idempotence_key: &'a str,
        body: &'a Value,
    ) -> BoxFuture<'a, Result<Created, PaymentError>>;

    fn get_payment<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Fetched, PaymentError>>;

    fn get_refund<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Refund, PaymentError>>;
}

// The editing assistant: what a chat turn needs from a model.

/// What the chat route needs from a model.
pub trait Assistant: Send + Sync {
    /// The model asked for (stored with each turn).
    fn model(&self) -> &str;

    /// One answer, retries included.
    fn complete<'a>(
        &'a self,
        req: &'a AssistantRequest,
    ) -> BoxFuture<'a, Result<Completion, AssistantError>>;
}

#[derive(Debug, Clone)]
pub struct AssistantRequest {
    pub language: Language,
    /// System prompt, history window, the new message (see `assistant::build_messages`).
    pub messages: Vec<PromptMessage>,
    /// Variants longer than this are refused (they must run as edit prompts).
    pub max_variant_chars: usize,
    /// Where the reply's text goes while it is written (when the assistant streams).
    pub deltas: Option<UnboundedSender<Delta>>,
}

/// A piece of the reply being written. A retried call writes it again from the start, under
/// the next `attempt` number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delta {
    pub attempt: u32,
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct Completion {
    pub reply: AssistantReply,
    /// Tokens and cost of every attempt, the failed ones included.
    pub usage: Usage,
    pub attempts: u32,
}

/// How a turn failed, in the terms the route acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// 408, 429, 5xx, timeouts, connection failures, an error after the start: still failing
    /// after the retries.
    Unavailable,
    /// 401, 402: our key or our OpenRouter balance. An operator must act; not the user's fault.
    Account,
    /// 403, `finish_reason: content_filter`, a refusal: the input was refused by moderation.
    Moderated,
    /// 400 and other 4xx: our request is wrong.
    Rejected,
    /// Not JSON, the wrong shape, or cut off (`finish_reason: length`), also on the retry.
    BadReply,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("assistant {kind:?} after {attempts} attempt(s): {message}")]
pub struct AssistantError {
    pub kind: FailureKind,
    /// Never holds secrets; may quote the provider's error message.
    pub message: String,
    /// What the failed attempts cost (billed even though the user is refunded).
    pub spent: Usage,
    pub attempts: u32,
}

impl AssistantError {
    /// Stable code, stored on the turn and sent to the client.
    pub fn code(&self) -> &'static str {
        match self.kind {
            FailureKind::Unavailable | FailureKind::Account => "assistant_unavailable",
            FailureKind::Moderated => "message_rejected",
            FailureKind::Rejected => "assistant_failed",
            FailureKind::BadReply => "assistant_bad_reply",
        }
    }

    pub fn alerts_operator(&self) -> bool {
        self.kind == FailureKind::Account
    }
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
}
