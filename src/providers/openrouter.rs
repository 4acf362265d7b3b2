//! OpenRouter chat completions (OpenAI-compatible): the editing assistant's model behind
//! [`Assistant`]. Without a key the sandbox assistant stands in
//! ([`super::sandbox::SandboxAssistant`]).
//!
//! OpenRouter has no idempotency and bills every call, so a call is repeated only when no usable
//! answer came back: 408/429/5xx and errors after the start (HTTP 200 with `error`, or an SSE
//! event carrying one) with backoff, honouring `Retry-After`; an unreadable answer (not JSON,
//! wrong shape, cut off) once. The JSON answer arrives as a string in
//! `choices[0].message.content` (or in `delta.content` pieces when streamed, which are put back
//! into that shape) and is read by [`crate::domain::assistant::parse_reply`]. While a streamed
//! answer is written, the readable part of its `reply` is handed out as [`Delta`]s. Tokens and
//! cost of every attempt are added up.

use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedSender;

use super::http::{self, BuildError, ReadError, describe, normalise_base_url, truncate};
use super::{BoxFuture, RetryPolicy, Sleeper};
// The assistant's vocabulary lives with its trait; these paths stay for callers.
pub use super::{Assistant, AssistantError, AssistantRequest, Completion, Delta, FailureKind};
use crate::domain::assistant::{self, AssistantReply, ReplyPreview, Usage, cost_micros};

/// Largest reply we read (answers are a few kilobytes).
const MAX_REPLY_BYTES: usize = 1 << 20;
/// Longest `Retry-After` we wait for inside one turn; a longer one gives up at once.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(20);

/// Client of `POST {base}/chat/completions`. Cheap to clone.
#[derive(Debug, Clone)]
pub struct OpenRouterClient {
    http: reqwest::Client,
    base_url: String,
    api_key: SecretString,
    model: String,
    referer: Option<String>,
    stream: bool,
    timeout: Duration,
    max_attempts: u32,
    budget: Duration,
    retry: RetryPolicy,
    sleeper: Sleeper,
}

impl OpenRouterClient {
    /// `timeout` bounds each call. By default three attempts within 90 s.
    pub fn new(
        base_url: &str,
        api_key: SecretString,
        model: &str,
        timeout: Duration,
    ) -> Result<Self, BuildError> {
        Ok(Self {
            // Never follow redirects: one would carry the bearer key elsewhere.
            http: http::client(timeout, reqwest::redirect::Policy::none())?,
            base_url: normalise_base_url(base_url)?,
            api_key,
            model: model.to_owned(),
            referer: None,
            stream: true,
            timeout,
            max_attempts: 3,
            budget: Duration::from_secs(90),
            retry: RetryPolicy::new(3, Duration::from_millis(500), Duration::from_secs(4)),
            sleeper: Sleeper::default(),
        })
    }

    /// Calls per answer at most, and the time all of them (and the pauses) must fit in.
    pub fn with_attempts(mut self, max_attempts: u32, budget: Duration) -> Self {
        self.max_attempts = max_attempts.max(1);
        self.budget = budget;
        self
    }

    /// Sent as `HTTP-Referer` (OpenRouter's optional app attribution).
    pub fn with_referer(mut self, referer: &str) -> Self {
        self.referer = Some(referer.to_owned());
        self
    }

    /// Asks for an SSE stream (when the request has a delta sink); on by default.
    pub fn with_streaming(mut self, stream: bool) -> Self {
        self.stream = stream;
        self
    }

    /// Backoff between retries (its `max_attempts` is ignored: see [`Self::with_attempts`]).
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn with_sleeper(mut self, sleeper: Sleeper) -> Self {
        self.sleeper = sleeper;
        self
    }

    #[tracing::instrument(skip_all, fields(model = %self.model))]
    pub async fn complete(&self, req: &AssistantRequest) -> Result<Completion, AssistantError> {
        let stream = self.stream && req.deltas.is_some();
        let body = request_body(&self.model, req, stream);
        let started = Instant::now();
        let mut spent = Usage::default();
        let mut bad_replies = 0;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let remaining = self.budget.saturating_sub(started.elapsed());
            let sink = req
                .deltas
                .as_ref()
                .filter(|_| stream)
                .map(|tx| (tx, attempt));
            let (outcome, usage) = self
                .attempt(
                    &body,
                    remaining.min(self.timeout),
                    req.max_variant_chars,
                    sink,
                )
                .await;
            spent = spent + usage;
            let failure = match outcome {
                Ok(reply) => {
                    return Ok(Completion {
                        reply,
                        usage: spent,
                        attempts: attempt,
                    });
                }
                Err(f) => f,
            };
            let retryable = match failure.kind {
                FailureKind::Unavailable => true,
                // Once: every call is billed, and a model that answered badly twice will
                // likely do so again.
                FailureKind::BadReply => {
                    bad_replies += 1;
                    bad_replies < 2
                }
                _ => false,
            };
            let pause = failure
                .retry_after
                .unwrap_or_else(|| self.retry.backoff(attempt - 1));
            let in_budget = pause <= MAX_RETRY_AFTER
                && started.elapsed() + pause + Duration::from_millis(100) < self.budget;
            if !retryable || attempt >= self.max_attempts || !in_budget {
                return Err(AssistantError {
                    kind: failure.kind,
                    message: failure.message,
                    spent,
                    attempts: attempt,
                });
            }
            tracing::warn!(kind = ?failure.kind, message = %failure.message, attempt, ?pause, "OpenRouter call failed, retrying");
            self.sleeper.sleep(pause).await;
        }
    }

    async fn attempt(
        &self,
        body: &Value,
        timeout: Duration,
        max_variant_chars: usize,
        sink: Option<(&UnboundedSender<Delta>, u32)>,
    ) -> (Result<AssistantReply, Failure>, Usage) {
        if timeout.is_zero() {
            return (Err(Failure::unavailable("no time left")), Usage::default());
        }
        let mut request = self
            .http
            .post(format!("{}/chat/completions", self.base_url))
            .bearer_auth(self.api_key.expose_secret())
            .header("X-Title", "Atelier")
            .timeout(timeout)
            .json(body);
        if let Some(referer) = &self.referer {
            request = request.header("HTTP-Referer", referer);
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return (Err(Failure::unavailable("timed out")), Usage::default());
            }
            Err(e) => return (Err(Failure::unavailable(describe(e))), Usage::default()),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let is_stream = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let read = match sink {
            // Errors before the stream starts are plain JSON replies.
            Some(sink) if is_stream && (200..300).contains(&status) => {
                read_stream(response, sink).await
            }
            _ => http::read_capped(response, MAX_REPLY_BYTES)
                .await
                .map_err(|e| match e {
                    ReadError::TooLarge { max_bytes } => format!("reply over {max_bytes} bytes"),
                    ReadError::Transport(e) if e.is_timeout() => {
                        "timed out reading the reply".into()
                    }
                    ReadError::Transport(e) => describe(e),
                }),
        };
        match read {
            Ok(bytes) => interpret(status, &bytes, retry_after, max_variant_chars),
            Err(message) => (Err(Failure::unavailable(message)), Usage::default()),
        }
    }
}

/// A streamed answer, put back together as the non-streamed reply it stands for.
#[derive(Debug, Default)]
struct Assembled {
    content: String,
    refusal: String,
    finish_reason: Option<String>,
    usage: Option<Value>,
    error: Option<Value>,
    done: bool,
}

impl Assembled {
    /// One SSE `data:` payload; returns the piece of content it carried.
    fn absorb(&mut self, data: &str) -> Option<String> {
        if data == "[DONE]" {
            self.done = true;
            return None;
        }
        let chunk: Value = serde_json::from_str(data).ok()?;
        if let Some(error) = chunk.get("error").filter(|e| !e.is_null()) {
            self.error = Some(error.clone());
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(usage.clone());
        }
        let choice = chunk.get("choices")?.as_array()?.first()?;
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish_reason = Some(reason.to_owned());
        }
        let delta = choice.get("delta")?;
        if let Some(refusal) = delta.get("refusal").and_then(Value::as_str) {
            self.refusal.push_str(refusal);
        }
        let piece = delta.get("content").and_then(Value::as_str)?;
        self.content.push_str(piece);
        Some(piece.to_owned())
    }

    /// The body a non-streamed call would have answered.
    fn into_body(self) -> Vec<u8> {
        let finish_reason = match (&self.finish_reason, self.done) {
            (Some(r), _) => Value::from(r.as_str()),
            // Cut off without a finish reason or [DONE]: as an error after the start.
            (None, false) if self.error.is_none() => Value::from("error"),
            (None, _) => Value::Null,
        };
        let mut body = json!({
            "choices": [{
                "index": 0,
                "finish_reason": finish_reason,
                "message": {
                    "role": "assistant",
                    "content": self.content,
                    "refusal": (!self.refusal.is_empty()).then_some(self.refusal),
                },
            }],
        });
        if let Some(usage) = self.usage {
            body["usage"] = usage;
        }
        if let Some(error) = self.error {
            body["error"] = error;
        }
        body.to_string().into_bytes()
    }
}

/// Reads an SSE stream (`data: {chunk}` events, `: comment` keep-alives, `data: [DONE]`),
/// handing the readable reply out as it comes; returns the assembled answer's body.
async fn read_stream(
    mut response: reqwest::Response,
    (sink, attempt): (&UnboundedSender<Delta>, u32),
) -> Result<Vec<u8>, String> {
    let mut assembled = Assembled::default();
    let mut preview = ReplyPreview::default();
    let mut pending: Vec<u8> = Vec::new();
    let mut read = 0;
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) if e.is_timeout() => return Err("timed out reading the stream".into()),
            // A stream that dies midway is an error after the start.
            Err(e) => return Err(describe(e)),
        };
        read += chunk.len();
        if read > MAX_REPLY_BYTES {
            return Err(format!("stream over {MAX_REPLY_BYTES} bytes"));
        }
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let Some(data) = line.trim_end().strip_prefix("data:") else {
                continue;
            };
            if let Some(piece) = assembled.absorb(data.trim())
                && let Some(text) = preview.push(&piece)
            {
                // A reader that went away only ends the preview, never the turn.
                let _ = sink.send(Delta { attempt, text });
            }
        }
    }
    Ok(assembled.into_body())
}

impl Assistant for OpenRouterClient {
    fn model(&self) -> &str {
        &self.model
    }

    fn complete<'a>(
        &'a self,
        req: &'a AssistantRequest,
    ) -> BoxFuture<'a, Result<Completion, AssistantError>> {
        Box::pin(OpenRouterClient::complete(self, req))
    }
}

/// One failed attempt.
#[derive(Debug, Clone, PartialEq)]
struct Failure {
    kind: FailureKind,
    message: String,
    retry_after: Option<Duration>,
}

impl Failure {
    fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    fn unavailable(message: impl Into<String>) -> Self {
        Self::new(FailureKind::Unavailable, message)
    }
}

/// What a rejected request's HTTP status (or an error object's `code`) means.
fn classify(code: i64) -> FailureKind {
    match code {
        401 | 402 => FailureKind::Account,
        403 => FailureKind::Moderated,
        408 | 429 | 500..=599 => FailureKind::Unavailable,
        _ => FailureKind::Rejected,
    }
}

/// `{"error": {"code", "message", "metadata"}}` → (code, message).
fn error_object(body: &Value) -> Option<(Option<i64>, String)> {
    let error = body.get("error").filter(|e| !e.is_null())?;
    let code = error.get("code").and_then(|c| {
        c.as_i64()
            .or_else(|| c.as_str().and_then(|s| s.parse().ok()))
    });
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .map_or_else(|| error.to_string(), str::to_owned);
    Some((code, truncate(&message, 300)))
}

fn usage_of(body: &Value) -> Usage {
    let Some(usage) = body.get("usage") else {
        return Usage::default();
    };
    let tokens = |field: &str| usage.get(field).and_then(Value::as_i64).unwrap_or(0).max(0);
    Usage {
        prompt_tokens: tokens("prompt_tokens"),
        completion_tokens: tokens("completion_tokens"),
        cost_usd_micros: usage
            .get("cost")
            .and_then(Value::as_f64)
            .map_or(0, cost_micros),
    }
}

/// One reply → the answer or a classified failure, and what it cost.
fn interpret(
    status: u16,
    bytes: &[u8],
    retry_after: Option<Duration>,
    max_variant_chars: usize,
) -> (Result<AssistantReply, Failure>, Usage) {
    let body: Option<Value> = serde_json::from_slice(bytes).ok();
    let usage = body.as_ref().map(usage_of).unwrap_or_default();
    let fail = |f: Failure| (Err(f), usage);
    if !(200..300).contains(&status) {
        let (code, message) = body
            .as_ref()
            .and_then(error_object)
            .unwrap_or_else(|| (None, truncate(&String::from_utf8_lossy(bytes), 200)));
        let mut f = Failure::new(
            classify(i64::from(status)),
            format!("HTTP {status} (code {}): {message}", code.unwrap_or(0)),
        );
        f.retry_after = retry_after;
        return fail(f);
    }
    let Some(body) = body.filter(Value::is_object) else {
        return fail(Failure::unavailable(format!(
            "HTTP {status} without a JSON object: {}",
            truncate(&String::from_utf8_lossy(bytes), 200)
        )));
    };
    // An error after the model started comes with HTTP 200: as a 502, unless it names our
    // account or moderation.
    if let Some((code, message)) = error_object(&body) {
        let kind = match code.map(classify) {
            Some(k @ (FailureKind::Account | FailureKind::Moderated)) => k,
            _ => FailureKind::Unavailable,
        };
        return fail(Failure::new(
            kind,
            format!(
                "error after the start (code {}): {message}",
                code.unwrap_or(0)
            ),
        ));
    }
    let Some(choice) = body
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
    else {
        return fail(Failure::unavailable("a reply without choices"));
    };
    match choice.get("finish_reason").and_then(Value::as_str) {
        Some("error") => return fail(Failure::unavailable("finish_reason: error")),
        Some("content_filter") => {
            return fail(Failure::new(
                FailureKind::Moderated,
                "finish_reason: content_filter",
            ));
        }
        Some("length") => {
            return fail(Failure::new(
                FailureKind::BadReply,
                "the answer was cut off (finish_reason: length)",
            ));
        }
        _ => {}
    }
    let message = choice.get("message").unwrap_or(&Value::Null);
    if let Some(refusal) = message
        .get("refusal")
        .and_then(Value::as_str)
        .filter(|r| !r.trim().is_empty())
    {
        return fail(Failure::new(
            FailureKind::Moderated,
            format!("the model refused: {}", truncate(refusal, 200)),
        ));
    }
    let content = match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        // Some providers answer with content parts.
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    };
    match assistant::parse_reply(&content, max_variant_chars) {
        Ok(reply) => (Ok(reply), usage),
        Err(e) => fail(Failure::new(
            FailureKind::BadReply,
            format!("{e}: {}", truncate(&content, 200)),
        )),
    }
}

/// The request body: OpenAI-style messages (the photo as an image part after the text), the
/// JSON schema of the answer, and only providers that honour every parameter.
fn request_body(model: &str, req: &AssistantRequest, stream: bool) -> Value {
    let messages: Vec<Value> = req
        .messages
        .iter()
        .map(|m| match &m.image_url {
            Some(url) => json!({
                "role": m.role.as_str(),
                "content": [
                    {"type": "text", "text": m.text},
                    {"type": "image_url", "image_url": {"url": url}},
                ],
            }),
            None => json!({"role": m.role.as_str(), "content": m.text}),
        })
        .collect();
    json!({
        "model": model,
        "messages": messages,
        "max_tokens": assistant::MAX_TOKENS,
        "temperature": assistant::TEMPERATURE,
        "stream": stream,
        "response_format": assistant::response_format(),
        "provider": {"require_parameters": true},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::assistant::Language;

    const GOOD: &str = r#"{\"reply\":\"Sure\",\"variants\":[\"a\",\"b\",\"c\"]}"#;

    fn body(content: &str, finish: &str) -> Vec<u8> {
        format!(
            r#"{{"id":"gen-1","choices":[{{"index":0,"finish_reason":"{finish}","message":{{"role":"assistant","content":"{content}","refusal":null}}}}],"usage":{{"prompt_tokens":194,"completion_tokens":42,"total_tokens":236,"cost":0.000404}}}}"#
        )
        .into_bytes()
    }

    fn kind(r: &(Result<AssistantReply, Failure>, Usage)) -> Option<FailureKind> {
        r.0.as_ref().err().map(|f| f.kind)
    }

    #[test]
    fn a_good_reply_is_read_with_its_usage() {
        let (reply, usage) = interpret(200, &body(GOOD, "stop"), None, 100);
        assert_eq!(reply.unwrap().variants, ["a", "b", "c"]);
        assert_eq!(
            usage,
            Usage {
                prompt_tokens: 194,
                completion_tokens: 42,
                cost_usd_micros: 404
            }
        );
    }

    #[test]
    fn statuses_and_errors_are_classified() {
        let err = |status, code: i64| {
            let b = format!(r#"{{"error":{{"code":{code},"message":"m","metadata":{{}}}}}}"#);
            kind(&interpret(status, b.as_bytes(), None, 100))
        };
        assert_eq!(err(402, 402), Some(FailureKind::Account));
        assert_eq!(err(401, 401), Some(FailureKind::Account));
        assert_eq!(err(403, 403), Some(FailureKind::Moderated));
        assert_eq!(err(400, 400), Some(FailureKind::Rejected));
        for s in [408, 429, 502, 503] {
            assert_eq!(err(s, i64::from(s)), Some(FailureKind::Unavailable), "{s}");
        }
        // HTTP 200 with an error object: as a 502, unless it is about our account.
        assert_eq!(err(200, 502), Some(FailureKind::Unavailable));
        assert_eq!(err(200, 402), Some(FailureKind::Account));
        assert_eq!(
            kind(&interpret(502, b"<html>bad gateway</html>", None, 100)),
            Some(FailureKind::Unavailable)
        );
        let r = interpret(429, b"{}", Some(Duration::from_secs(2)), 100);
        assert_eq!(r.0.unwrap_err().retry_after, Some(Duration::from_secs(2)));
    }

    #[test]
    fn bad_answers_finish_reasons_and_refusals() {
        assert_eq!(
            kind(&interpret(200, &body("not json", "stop"), None, 100)),
            Some(FailureKind::BadReply)
        );
        assert_eq!(
            kind(&interpret(200, &body(GOOD, "length"), None, 100)),
            Some(FailureKind::BadReply)
        );
        assert_eq!(
            kind(&interpret(200, &body(GOOD, "error"), None, 100)),
            Some(FailureKind::Unavailable)
        );
        assert_eq!(
            kind(&interpret(200, &body(GOOD, "content_filter"), None, 100)),
            Some(FailureKind::Moderated)
        );
        let refused = br#"{"choices":[{"finish_reason":"stop","message":{"content":null,"refusal":"I can't"}}]}"#;
        assert_eq!(
            kind(&interpret(200, refused, None, 100)),
            Some(FailureKind::Moderated)
        );
        assert_eq!(
            kind(&interpret(200, br#"{"choices":[]}"#, None, 100)),
            Some(FailureKind::Unavailable)
        );
        // A bad answer still cost what it cost.
        assert_eq!(
            interpret(200, &body("x", "stop"), None, 100)
                .1
                .prompt_tokens,
            194
        );
    }

    #[test]
    fn a_stream_is_put_back_together_as_the_reply_it_stands_for() {
        let mut a = Assembled::default();
        let events = [
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"{\"reply\":\"Su"},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"re\",\"variants\":[\"a\",\"b\",\"c\"]}"},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":""},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":2,"cost":0.000001}}"#,
            "[DONE]",
        ];
        let pieces: Vec<_> = events.iter().filter_map(|e| a.absorb(e)).collect();
        assert_eq!(pieces.len(), 3);
        let (reply, usage) = interpret(200, &a.into_body(), None, 100);
        assert_eq!(reply.unwrap().reply, "Sure");
        assert_eq!((usage.prompt_tokens, usage.cost_usd_micros), (5, 1));

        // Cut off: no finish reason, no [DONE].
        let mut cut = Assembled::default();
        cut.absorb(events[0]);
        assert_eq!(
            kind(&interpret(200, &cut.into_body(), None, 100)),
            Some(FailureKind::Unavailable)
        );
        // An error event midway.
        let mut failed = Assembled::default();
        failed.absorb(events[0]);
        failed.absorb(r#"{"error":{"code":502,"message":"Provider returned error"},"choices":[{"delta":{"content":""},"finish_reason":"error"}]}"#);
        assert_eq!(
            kind(&interpret(200, &failed.into_body(), None, 100)),
            Some(FailureKind::Unavailable)
        );
    }

    #[test]
    fn the_photo_rides_as_an_image_part_after_the_text() {
        let req = AssistantRequest {
            language: Language::English,
            messages: assistant::build_messages(
                &Language::English,
                &[],
                "hi",
                Some("https://m/p.jpg"),
            ),
            max_variant_chars: 100,
            deltas: None,
        };
        let b = request_body("m/x", &req, false);
        assert_eq!(b["messages"][0]["role"], "system");
        assert_eq!(
            b["messages"][1]["content"][0],
            json!({"type": "text", "text": "hi"})
        );
        assert_eq!(
            b["messages"][1]["content"][1]["image_url"]["url"],
            "https://m/p.jpg"
        );
        assert_eq!(b["response_format"]["type"], "json_schema");
        assert_eq!(b["stream"], false);
    }
}
