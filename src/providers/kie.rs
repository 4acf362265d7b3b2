//! kie.ai Nano Banana client: `createTask`, `recordInfo`, result downloads and callback checks.
//! kie.ai reports most errors as HTTP 200 with an error `code` in the `{code,msg,data}`
//! envelope, and nests JSON inside strings (`param`, `resultJson`); both are handled here so
//! the worker only sees [`TaskInfo`] and a classified [`KieError`].

use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;

use super::http::{self, BuildError, ReadError, Transport, describe, normalise_base_url, truncate};
use super::{
    BoxFuture, CreateTask, ErrorAction, GenerationProvider, ProviderError, RetryPolicy, Sleeper,
    TaskId, TaskInfo, TaskState, measured,
};

/// Longest prompt kie.ai accepts, in characters.
pub const MAX_PROMPT_CHARS: usize = 5000;
/// Most input images per task.
pub const MAX_IMAGE_URLS: usize = 10;
/// Redirects followed when downloading a result.
const MAX_REDIRECTS: usize = 5;
/// Largest API reply we read (recordInfo replies are a few kilobytes).
const MAX_REPLY_BYTES: usize = 1 << 20;

/// A failed kie.ai call, classified as the vendor's code table says (external-apis §1.4).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KieError {
    /// Refused before sending: the request breaks a documented limit.
    #[error("invalid kie.ai request: {0}")]
    InvalidRequest(String),
    /// 401, 402, 433, 505: bad key, our account out of credits, usage limit, feature off.
    #[error("kie.ai refused our account (code {code}): {msg}")]
    Account { code: i64, msg: String },
    /// 4xx on `createTask` (validation, not found) and any other non-retryable code.
    #[error("kie.ai rejected the request (code {code}): {msg}")]
    Rejected { code: i64, msg: String },
    /// `recordInfo` on an id kie.ai does not know (422 "recordInfo is null", or 404).
    #[error("kie.ai does not know the task (code {code}): {msg}")]
    TaskNotFound { code: i64, msg: String },
    /// 429: dropped, not queued (a rate-limited `createTask` created nothing).
    #[error("kie.ai rate limited the call (code {code}): {msg}")]
    RateLimited { code: i64, msg: String },
    /// 455 maintenance, 500 and other server errors.
    #[error("kie.ai unavailable (code {code}): {msg}")]
    Unavailable { code: i64, msg: String },
    /// 501: the generation failed.
    #[error("kie.ai generation failed (code {code}): {msg}")]
    GenerationFailed { code: i64, msg: String },
    /// `createTask` timed out: the task may exist, and without its id it cannot be looked up.
    #[error("kie.ai createTask timed out; the task may or may not exist")]
    CreateTimeout,
    /// `createTask` was sent but its reply was lost or garbled: the task may exist.
    #[error("kie.ai createTask outcome unknown: {0}")]
    CreateOutcomeUnknown(String),
    #[error("kie.ai call timed out")]
    Timeout,
    /// Connection failures and the like.
    #[error("kie.ai unreachable: {0}")]
    Network(String),
    /// A reply that does not follow the documented format.
    #[error("unexpected kie.ai reply: {0}")]
    Protocol(String),
    #[error("result larger than {max_bytes} bytes")]
    ResultTooLarge { max_bytes: usize },
    /// The result URL answered 4xx (expired after ~24 h, or never there).
    #[error("result unavailable (HTTP {status})")]
    ResultUnavailable { status: u16 },
    /// Not an http(s) URL, or a redirect away from http(s).
    #[error("refused result URL: {0}")]
    BadUrl(String),
}

impl KieError {
    pub fn action(&self) -> ErrorAction {
        match self {
            Self::RateLimited { .. }
            | Self::Unavailable { .. }
            | Self::Timeout
            | Self::Network(_) => ErrorAction::Retry,
            Self::TaskNotFound { .. } | Self::Protocol(_) => ErrorAction::RetryBriefly,
            Self::CreateTimeout | Self::CreateOutcomeUnknown(_) => ErrorAction::OutcomeUnknown,
            Self::InvalidRequest(_)
            | Self::Account { .. }
            | Self::Rejected { .. }
            | Self::GenerationFailed { .. }
            | Self::ResultTooLarge { .. }
            | Self::ResultUnavailable { .. }
            | Self::BadUrl(_) => ErrorAction::Final,
        }
    }

    /// Another attempt may succeed. For [`KieError::TaskNotFound`] only over a short window;
    /// for a create whose outcome is unknown only within the create-attempt cap.
    pub fn is_retryable(&self) -> bool {
        !matches!(self.action(), ErrorAction::Final)
    }

    /// Our key or account needs a human (401, 402, 433, 505).
    pub fn alerts_operator(&self) -> bool {
        matches!(self, Self::Account { .. })
    }

    pub fn outcome_unknown(&self) -> bool {
        matches!(self.action(), ErrorAction::OutcomeUnknown)
    }

    /// kie.ai's body `code` (or the HTTP status when the body had none).
    pub fn code(&self) -> Option<i64> {
        match self {
            Self::Account { code, .. }
            | Self::Rejected { code, .. }
            | Self::TaskNotFound { code, .. }
            | Self::RateLimited { code, .. }
            | Self::Unavailable { code, .. }
            | Self::GenerationFailed { code, .. } => Some(*code),
            Self::ResultUnavailable { status } => Some(i64::from(*status)),
            _ => None,
        }
    }

    /// kie.ai's `msg`, when it sent one.
    pub fn message(&self) -> Option<&str> {
        match self {
            Self::Account { msg, .. }
            | Self::Rejected { msg, .. }
            | Self::TaskNotFound { msg, .. }
            | Self::RateLimited { msg, .. }
            | Self::Unavailable { msg, .. }
            | Self::GenerationFailed { msg, .. } => Some(msg),
            _ => None,
        }
    }

    /// Short stable code for `generations.error_code`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "provider_invalid_request",
            Self::Account { .. } => "provider_account",
            Self::Rejected { .. } => "provider_rejected",
            Self::TaskNotFound { .. } => "provider_task_not_found",
            Self::RateLimited { .. } => "provider_rate_limited",
            Self::Unavailable { .. } => "provider_unavailable",
            Self::GenerationFailed { .. } => "generation_failed",
            Self::CreateTimeout | Self::CreateOutcomeUnknown(_) => "provider_outcome_unknown",
            Self::Timeout => "provider_timeout",
            Self::Network(_) => "provider_unreachable",
            Self::Protocol(_) => "provider_protocol",
            Self::ResultTooLarge { .. } => "result_too_large",
            Self::ResultUnavailable { .. } => "result_unavailable",
            Self::BadUrl(_) => "result_bad_url",
        }
    }
}

impl From<KieError> for ProviderError {
    fn from(err: KieError) -> Self {
        // A failed generation's words are kie.ai's to the user (kept in `error_message`, shown
        // as they are): written as a failed task's are, without our prefix.
        let message = match &err {
            KieError::GenerationFailed { code, msg } => format!("{msg} (provider code {code})"),
            other => other.to_string(),
        };
        let error = ProviderError::new("kie", err.action(), err.kind(), message);
        if err.alerts_operator() {
            error.alerting()
        } else {
            error
        }
    }
}

/// Which call a body `code` came from: 404/422 mean different things on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Create,
    RecordInfo,
}

fn classify(code: i64, msg: String, call: Call) -> KieError {
    match code {
        401 | 402 | 433 | 505 => KieError::Account { code, msg },
        429 => KieError::RateLimited { code, msg },
        501 => KieError::GenerationFailed { code, msg },
        404 | 422 if call == Call::RecordInfo => KieError::TaskNotFound { code, msg },
        455 | 500..=599 => KieError::Unavailable { code, msg },
        _ => KieError::Rejected { code, msg },
    }
}

/// kie.ai's reply envelope. Every field optional: a non-2xx reply may carry anything.
#[derive(Debug, Deserialize)]
struct Envelope {
    code: Option<i64>,
    msg: Option<String>,
    data: Option<Value>,
}

/// Checks the HTTP status and the envelope's `code`; returns `data` on success.
fn open_envelope(status: u16, body: &[u8], call: Call) -> Result<Option<Value>, KieError> {
    let envelope = serde_json::from_slice::<Envelope>(body).ok();
    let success_status = (200..300).contains(&status);
    match envelope {
        Some(Envelope {
            code: Some(200),
            data,
            ..
        }) if success_status => Ok(data),
        // An error envelope, at HTTP 200 (usual) or with the status mirroring the code.
        Some(Envelope {
            code: Some(code),
            msg,
            ..
        }) if code != 200 => Err(classify(code, msg.unwrap_or_default(), call)),
        _ if !success_status => Err(classify(
            i64::from(status),
            truncate(&String::from_utf8_lossy(body), 200),
            call,
        )),
        _ => Err(KieError::Protocol(format!(
            "HTTP {status} without a {{code,msg,data}} envelope: {}",
            truncate(&String::from_utf8_lossy(body), 200)
        ))),
    }
}

/// Client of `https://api.kie.ai`. Cheap to clone.
#[derive(Debug, Clone)]
pub struct KieClient {
    api: reqwest::Client,
    downloads: reqwest::Client,
    base_url: String,
    api_key: SecretString,
    download_timeout: Duration,
    /// Result URLs may point at loopback and private addresses (kie.ai is configured on one).
    private_ok: bool,
    retry: RetryPolicy,
    sleeper: Sleeper,
}

impl KieClient {
    /// `timeout` bounds each API call; downloads get [`KieClient::with_download_timeout`]
    /// (60 s by default). `recordInfo` and downloads retry transient failures once.
    pub fn new(
        base_url: &str,
        api_key: SecretString,
        timeout: Duration,
    ) -> Result<Self, BuildError> {
        let base_url = normalise_base_url(base_url)?;
        // API calls never follow redirects: a redirect would carry the bearer key elsewhere.
        let api = http::client(timeout, reqwest::redirect::Policy::none())?;
        // Result URLs come from kie.ai's answers: they may not lead into our own networks
        // (SSRF), unless kie.ai itself is configured there (a local stand-in, as in tests).
        let private_ok = reqwest::Url::parse(&base_url)
            .ok()
            .and_then(|u| u.host_str().map(|h| !is_public_host(h)))
            .unwrap_or(false);
        let mut downloads = http::builder(timeout, download_redirects(private_ok));
        if !private_ok {
            downloads = downloads.dns_resolver(std::sync::Arc::new(PublicOnly));
        }
        let downloads = http::build(downloads)?;
        Ok(Self {
            api,
            downloads,
            base_url,
            api_key,
            download_timeout: Duration::from_secs(60).max(timeout),
            private_ok,
            retry: RetryPolicy::new(2, Duration::from_millis(300), Duration::from_secs(3)),
            sleeper: Sleeper::default(),
        })
    }

    pub fn with_download_timeout(mut self, timeout: Duration) -> Self {
        self.download_timeout = timeout;
        self
    }

    /// Retries of `recordInfo` and downloads inside one call (`createTask` never retries).
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn with_sleeper(mut self, sleeper: Sleeper) -> Self {
        self.sleeper = sleeper;
        self
    }

    /// `POST /api/v1/jobs/createTask`; returns the `taskId`. Never retried here: kie.ai has no
    /// idempotency key, so the caller stores the id at once and decides about another attempt.
    #[tracing::instrument(skip_all, fields(model = %req.model))]
    pub async fn create_task(&self, req: &CreateTask) -> Result<String, KieError> {
        let body = create_body(req)?;
        let sent = self
            .api
            .post(format!("{}/api/v1/jobs/createTask", self.base_url))
            .bearer_auth(self.api_key.expose_secret())
            .json(&body)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            // Nothing reached kie.ai: safe to try again.
            Err(e) if e.is_connect() => return Err(KieError::Network(describe(e))),
            Err(e) if e.is_timeout() => return Err(KieError::CreateTimeout),
            Err(e) => return Err(KieError::CreateOutcomeUnknown(describe(e))),
        };
        let status = response.status().as_u16();
        let bytes = match http::read_capped(response, MAX_REPLY_BYTES).await {
            Ok(b) => b,
            Err(e) => match KieError::from(e) {
                KieError::Timeout => return Err(KieError::CreateTimeout),
                e => return Err(KieError::CreateOutcomeUnknown(e.to_string())),
            },
        };
        let data = match open_envelope(status, &bytes, Call::Create) {
            Ok(data) => data,
            // A 2xx reply we cannot read may still have created a task.
            Err(KieError::Protocol(detail)) => {
                return Err(KieError::CreateOutcomeUnknown(detail));
            }
            Err(e) => return Err(e),
        };
        let task_id = data
            .as_ref()
            .and_then(|d| d.get("taskId"))
            .and_then(Value::as_str)
            .filter(|id| valid_task_id(id))
            .ok_or_else(|| {
                KieError::CreateOutcomeUnknown("code 200 without a usable data.taskId".into())
            })?;
        tracing::info!(task_id, "kie.ai task created");
        Ok(task_id.to_owned())
    }

    /// `GET /api/v1/jobs/recordInfo?taskId=…`, retrying transient failures per the policy.
    #[tracing::instrument(skip_all, fields(task_id = %task_id))]
    pub async fn record_info(&self, task_id: &str) -> Result<TaskInfo, KieError> {
        self.retrying(|| self.record_info_once(task_id)).await
    }

    async fn record_info_once(&self, task_id: &str) -> Result<TaskInfo, KieError> {
        let response = self
            .api
            .get(format!("{}/api/v1/jobs/recordInfo", self.base_url))
            .query(&[("taskId", task_id)])
            .bearer_auth(self.api_key.expose_secret())
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status().as_u16();
        let bytes = http::read_capped(response, MAX_REPLY_BYTES)
            .await
            .map_err(|e| match e {
                ReadError::TooLarge { .. } => KieError::Protocol("reply too large".into()),
                e => e.into(),
            })?;
        let data = match open_envelope(status, &bytes, Call::RecordInfo)? {
            Some(data @ Value::Object(_)) => data,
            // `code` 200 with no record: treat like kie.ai's "recordInfo is null".
            Some(Value::Null) | None => {
                return Err(KieError::TaskNotFound {
                    code: 200,
                    msg: "data is null".into(),
                });
            }
            Some(other) => {
                return Err(KieError::Protocol(format!(
                    "data is not an object: {}",
                    truncate(&other.to_string(), 100)
                )));
            }
        };
        parse_record(task_id, data)
    }

    /// Downloads a result image, streaming, refusing more than `max_bytes` and redirects
    /// away from http(s). No credentials are sent: result URLs are public and on another host.
    #[tracing::instrument(skip_all)]
    pub async fn download(&self, url: &str, max_bytes: usize) -> Result<Vec<u8>, KieError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| KieError::BadUrl(e.to_string()))?;
        allowed_target(&parsed, self.private_ok).map_err(KieError::BadUrl)?;
        self.retrying(|| self.download_once(parsed.clone(), max_bytes))
            .await
    }

    async fn download_once(
        &self,
        url: reqwest::Url,
        max_bytes: usize,
    ) -> Result<Vec<u8>, KieError> {
        let response = self
            .downloads
            .get(url)
            .timeout(self.download_timeout)
            .send()
            .await
            .map_err(|e| {
                if e.is_redirect() || refused_by_resolver(&e) {
                    KieError::BadUrl(describe(e))
                } else {
                    transport_error(e)
                }
            })?;
        let status = response.status().as_u16();
        match status {
            200..=299 => {}
            // A redirect the policy refused (to a non-http(s) URL, or too many) comes back
            // as the 3xx itself.
            300..=399 => {
                return Err(KieError::BadUrl(format!(
                    "redirect (HTTP {status}) not followed"
                )));
            }
            429 => {
                return Err(KieError::RateLimited {
                    code: 429,
                    msg: "result host rate limited the download".into(),
                });
            }
            500..=599 => {
                return Err(KieError::Unavailable {
                    code: i64::from(status),
                    msg: "result host error".into(),
                });
            }
            _ => return Err(KieError::ResultUnavailable { status }),
        }
        Ok(http::read_capped(response, max_bytes).await?)
    }

    /// Runs `call` up to `max_attempts` times while it fails with [`ErrorAction::Retry`].
    async fn retrying<T, F, Fut>(&self, mut call: F) -> Result<T, KieError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, KieError>>,
    {
        let mut attempt = 1;
        loop {
            match call().await {
                Err(e) if e.action() == ErrorAction::Retry && attempt < self.retry.max_attempts => {
                    let pause = self.retry.backoff(attempt - 1);
                    tracing::warn!(error = %e, attempt, ?pause, "kie.ai call failed, retrying");
                    self.sleeper.sleep(pause).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }
}

impl GenerationProvider for KieClient {
    fn create<'a>(&'a self, req: &'a CreateTask) -> BoxFuture<'a, Result<TaskId, ProviderError>> {
        Box::pin(async move {
            let call = async { Ok(TaskId::new(self.create_task(req).await?)) };
            measured("kie", "create_task", call, label).await
        })
    }

    fn poll<'a>(&'a self, task_id: &'a TaskId) -> BoxFuture<'a, Result<TaskInfo, ProviderError>> {
        Box::pin(async move {
            let call = async { Ok(self.record_info(task_id.as_str()).await?) };
            measured("kie", "record_info", call, label).await
        })
    }

    fn fetch_result<'a>(
        &'a self,
        url: &'a str,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<Vec<u8>, ProviderError>> {
        Box::pin(async move {
            let call = async { Ok(self.download(url, max_bytes).await?) };
            measured("kie", "download", call, label).await
        })
    }
}

fn label(e: &ProviderError) -> String {
    e.code.to_owned()
}

/// Follows a few redirects, only to http(s) URLs that [`allowed_target`] allows.
fn download_redirects(private_ok: bool) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if let Err(why) = allowed_target(attempt.url(), private_ok) {
            attempt.error(format!("redirect refused: {why}"))
        } else if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error("too many redirects")
        } else {
            attempt.follow()
        }
    })
}

/// A result URL we may fetch: http(s), and unless `private_ok`, not a loopback, private,
/// link-local or otherwise non-public address written as such (names are checked when resolved).
fn allowed_target(url: &reqwest::Url, private_ok: bool) -> Result<(), String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("scheme {:?} is not http(s)", url.scheme()));
    }
    match url.host_str() {
        None => Err("no host".into()),
        Some(host) if !private_ok && !is_public_host(host) => {
            Err(format!("{host} is not a public address"))
        }
        Some(_) => Ok(()),
    }
}

/// Whether a host is somewhere on the internet: an IP address that is public, or a name other
/// than `localhost` (its addresses are checked when it is resolved).
fn is_public_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => is_public_ip(ip),
        Err(_) => {
            let name = bare.trim_end_matches('.').to_ascii_lowercase();
            name != "localhost" && !name.ends_with(".localhost")
        }
    }
}

/// Globally reachable unicast only: see [`crate::domain::address`].
fn is_public_ip(ip: std::net::IpAddr) -> bool {
    crate::domain::address::is_public_ip(ip)
}

/// Resolves names to their public addresses only, at connect time, so that no connection for a
/// result download reaches a private network whatever a name answers (DNS rebinding included).
struct PublicOnly;

/// A name that resolves to no public address: the download is refused for good.
#[derive(Debug, thiserror::Error)]
#[error("{0} resolves to no public address")]
struct NotPublic(String);

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await?
                .filter(|a| is_public_ip(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(NotPublic(name.as_str().to_owned()).into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Whether [`PublicOnly`] refused the connection (somewhere in the error's causes).
fn refused_by_resolver(err: &reqwest::Error) -> bool {
    std::iter::successors(std::error::Error::source(err), |e| e.source())
        .any(|e| e.is::<NotPublic>())
}

fn transport_error(err: reqwest::Error) -> KieError {
    match Transport::from(err) {
        Transport::Timeout => KieError::Timeout,
        Transport::Network(detail) => KieError::Network(detail),
    }
}

impl From<ReadError> for KieError {
    fn from(err: ReadError) -> Self {
        match err {
            ReadError::TooLarge { max_bytes } => Self::ResultTooLarge { max_bytes },
            ReadError::Transport(e) => transport_error(e),
        }
    }
}

/// The documented models take `image_urls`; the newer Pro/2 models call it `image_input`.
fn image_field(model: &str) -> &'static str {
    let name = model.rsplit('/').next().unwrap_or(model);
    if name.starts_with("nano-banana-pro") || name.starts_with("nano-banana-2") {
        "image_input"
    } else {
        "image_urls"
    }
}

fn create_body(req: &CreateTask) -> Result<Value, KieError> {
    let invalid = |m: String| Err(KieError::InvalidRequest(m));
    if req.model.trim().is_empty() {
        return invalid("model is empty".into());
    }
    if req.prompt.trim().is_empty() {
        return invalid("prompt is empty".into());
    }
    let chars = req.prompt.chars().count();
    if chars > MAX_PROMPT_CHARS {
        return invalid(format!(
            "prompt has {chars} characters, at most {MAX_PROMPT_CHARS}"
        ));
    }
    if req.image_urls.len() > MAX_IMAGE_URLS {
        return invalid(format!(
            "{} images, at most {MAX_IMAGE_URLS}",
            req.image_urls.len()
        ));
    }
    // Every field explicit rather than relying on documented defaults.
    let mut input = json!({
        "prompt": req.prompt,
        "output_format": req.output_format.as_str(),
        "aspect_ratio": req.aspect_ratio.as_str(),
    });
    if !req.image_urls.is_empty() {
        input[image_field(&req.model)] = json!(req.image_urls);
    }
    let mut body = json!({ "model": req.model, "input": input });
    if let Some(url) = &req.callback_url {
        body["callBackUrl"] = json!(url);
    }
    Ok(body)
}

/// `data` of a `recordInfo` reply → [`TaskInfo`].
fn parse_record(requested: &str, data: Value) -> Result<TaskInfo, KieError> {
    let reported = data.get("taskId").and_then(Value::as_str);
    if let Some(id) = reported.filter(|id| *id != requested) {
        return Err(KieError::Protocol(format!(
            "asked for task {requested:?}, got {id:?}"
        )));
    }
    let state = data
        .get("state")
        .and_then(Value::as_str)
        .ok_or_else(|| KieError::Protocol("data.state missing".into()))?;
    let state = match state.to_ascii_lowercase().as_str() {
        "waiting" => TaskState::Waiting,
        "queuing" => TaskState::Queuing,
        "generating" => TaskState::Generating,
        "success" => TaskState::Success {
            result_urls: result_urls(data.get("resultJson"))?,
        },
        "fail" => TaskState::Fail {
            fail_code: data.get("failCode").map(lenient_string).unwrap_or_default(),
            fail_msg: data.get("failMsg").map(lenient_string).unwrap_or_default(),
        },
        other => {
            return Err(KieError::Protocol(format!(
                "unknown state {:?}",
                truncate(other, 40)
            )));
        }
    };
    let progress = data.get("progress").and_then(lenient_progress);
    Ok(TaskInfo {
        task_id: TaskId::new(requested),
        state,
        progress,
    })
}

/// `resultJson` is JSON inside a string (`"{\"resultUrls\":[…]}"`); an object is accepted too.
fn result_urls(result_json: Option<&Value>) -> Result<Vec<String>, KieError> {
    let parsed = match result_json {
        Some(Value::String(s)) => serde_json::from_str::<Value>(s)
            .map_err(|e| KieError::Protocol(format!("resultJson is not JSON: {e}")))?,
        Some(v @ Value::Object(_)) => v.clone(),
        _ => return Err(KieError::Protocol("success without resultJson".into())),
    };
    let urls: Vec<String> = parsed
        .get("resultUrls")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if urls.is_empty() {
        return Err(KieError::Protocol("success without resultUrls".into()));
    }
    Ok(urls)
}

/// `failCode` is documented as a string; accept a number too.
fn lenient_string(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn lenient_progress(value: &Value) -> Option<u8> {
    let n = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().trim_end_matches('%').parse::<f64>().ok()?,
        _ => return None,
    };
    n.is_finite().then(|| n.clamp(0.0, 100.0).round() as u8)
}

/// Ids we accept from kie.ai, in replies and callbacks: short, printable ASCII, no spaces.
fn valid_task_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Checks a callback's `X-Webhook-Signature` = base64(HMAC-SHA256(key, "<taskId>.<timestamp>"))
/// in constant time, and that `X-Webhook-Timestamp` (Unix seconds) is within `max_skew_secs`
/// of `now_unix`. The signature does not cover the body: treat a verified callback as a
/// wake-up and read the task through `recordInfo`.
pub fn verify_callback_signature(
    key: &[u8],
    task_id: &str,
    timestamp_header: Option<&str>,
    signature_header: Option<&str>,
    now_unix: i64,
    max_skew_secs: u64,
) -> bool {
    let (Some(timestamp), Some(signature)) = (timestamp_header, signature_header) else {
        return false;
    };
    let timestamp = timestamp.trim();
    let Ok(ts) = timestamp.parse::<i64>() else {
        return false;
    };
    if now_unix.abs_diff(ts) > max_skew_secs {
        return false;
    }
    let signature = signature.trim();
    let Some(provided) = base64::engine::general_purpose::STANDARD
        .decode(signature)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(signature))
        .ok()
    else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return false;
    };
    mac.update(task_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    // `verify_slice` compares in constant time (subtle).
    mac.verify_slice(&provided).is_ok()
}

/// The task id of a callback body: `data.taskId`, else `data.task_id` (the vendor's own
/// verification sample uses snake case).
pub fn parse_callback(body: &[u8]) -> Result<String, KieError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| KieError::Protocol(format!("callback is not JSON: {e}")))?;
    let data = value
        .get("data")
        .filter(|d| d.is_object())
        .ok_or_else(|| KieError::Protocol("callback without data".into()))?;
    let id = data
        .get("taskId")
        .or_else(|| data.get("task_id"))
        .and_then(Value::as_str)
        .ok_or_else(|| KieError::Protocol("callback without data.taskId".into()))?;
    if !valid_task_id(id) {
        return Err(KieError::Protocol("callback task id is malformed".into()));
    }
    Ok(id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::super::AspectRatio;
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for public in [
            "8.8.8.8",
            "203.0.114.1",
            "100.128.0.1",
            "2a00:1450::1",
            "::ffff:1.1.1.1",
        ] {
            assert!(is_public_ip(public.parse().unwrap()), "{public}");
        }
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "::1",
            "::",
            "fd12::1",
            "fe80::1",
            "ff02::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public_ip(private.parse().unwrap()), "{private}");
        }
        assert!(is_public_host("tempfile.aiquickdraw.com"));
        assert!(!is_public_host("localhost") && !is_public_host("LOCALHOST."));
        assert!(!is_public_host("api.localhost") && !is_public_host("[::1]"));
        let redirect =
            |to: &str, private_ok| allowed_target(&reqwest::Url::parse(to).unwrap(), private_ok);
        assert!(redirect("https://cdn.example.com/r.png", false).is_ok());
        assert!(redirect("http://127.0.0.1:8080/r.png", false).is_err());
        assert!(redirect("http://127.0.0.1:8080/r.png", true).is_ok());
        assert!(redirect("ftp://cdn.example.com/r.png", true).is_err());
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_no_public_address_is_refused_when_connecting() {
        // `localhost` passes no check by name here: the resolver is what refuses it.
        let client = http::build(
            http::builder(Duration::from_secs(5), download_redirects(false))
                .dns_resolver(std::sync::Arc::new(PublicOnly)),
        )
        .unwrap();
        let err = client
            .get("http://localhost:9/r.png")
            .send()
            .await
            .unwrap_err();
        assert!(refused_by_resolver(&err), "{err:?}");
    }

    #[test]
    fn codes_are_classified_per_call() {
        let c = |code, call| classify(code, String::new(), call);
        for code in [401, 402, 433, 505] {
            assert!(c(code, Call::Create).alerts_operator(), "{code}");
        }
        assert_eq!(c(429, Call::Create).action(), ErrorAction::Retry);
        assert_eq!(c(455, Call::RecordInfo).action(), ErrorAction::Retry);
        assert_eq!(c(500, Call::Create).action(), ErrorAction::Retry);
        assert_eq!(c(501, Call::RecordInfo).action(), ErrorAction::Final);
        assert_eq!(c(422, Call::Create).action(), ErrorAction::Final);
        assert_eq!(c(422, Call::RecordInfo).action(), ErrorAction::RetryBriefly);
        assert_eq!(c(404, Call::RecordInfo).kind(), "provider_task_not_found");
        assert_eq!(c(400, Call::Create).action(), ErrorAction::Final);
    }

    #[test]
    fn progress_is_lenient() {
        assert_eq!(lenient_progress(&json!(42)), Some(42));
        assert_eq!(lenient_progress(&json!(42.6)), Some(43));
        assert_eq!(lenient_progress(&json!("70%")), Some(70));
        assert_eq!(lenient_progress(&json!(250)), Some(100));
        assert_eq!(lenient_progress(&json!(null)), None);
    }

    #[test]
    fn newer_models_take_image_input() {
        assert_eq!(image_field("google/nano-banana-edit"), "image_urls");
        assert_eq!(image_field("nano-banana-pro"), "image_input");
        assert_eq!(image_field("google/nano-banana-2"), "image_input");
    }

    #[test]
    fn aspect_ratios_round_trip() {
        for r in AspectRatio::ALL {
            assert_eq!(r.as_str().parse::<AspectRatio>(), Ok(r));
        }
    }
}
