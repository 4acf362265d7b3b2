//! Telegram Bot API client for delivering results: `sendPhoto` (multipart upload) and
//! `sendMessage`. It honours 429 `retry_after` within a bounded wait, follows a group's
//! `migrate_to_chat_id` once, and retries 5xx and connection failures with backoff. The token
//! is part of every URL, so URLs are never logged and are stripped from transport errors.

use std::time::Duration;

use bytes::Bytes;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

use super::http::{self, BuildError, ReadError, Transport, normalise_base_url, truncate};
use super::{RetryPolicy, Sleeper};

/// Largest multipart photo Telegram accepts.
pub const MAX_PHOTO_BYTES: usize = 10 * 1024 * 1024;
/// Longest caption, in characters (we send no `parse_mode`, so no entities to discount).
pub const MAX_CAPTION_CHARS: usize = 1024;
/// Longest message text, in characters.
pub const MAX_TEXT_CHARS: usize = 4096;
/// Largest reply we read.
const MAX_REPLY_BYTES: usize = 1 << 20;

/// A failed Bot API call. Branches on `error_code` and `parameters`, never on the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TelegramError {
    /// Refused before sending (empty text, caption too long, photo too large, bad MIME type).
    #[error("invalid Telegram request: {0}")]
    InvalidRequest(String),
    /// 401: the bot token is wrong or revoked.
    #[error("Telegram rejected the bot token: {description}")]
    Unauthorized { description: String },
    /// 403: blocked by the user, kicked from the group, user deactivated. Stop messaging
    /// this chat.
    #[error("Telegram refused to deliver to this chat: {description}")]
    Blocked { description: String },
    /// 400: chat not found, text too long, bad photo.
    #[error("Telegram rejected the request: {description}")]
    BadRequest { description: String },
    /// 429 still in force after the tries and the wait budget were spent.
    #[error("Telegram flood control: retry after {retry_after:?}")]
    RateLimited { retry_after: Duration },
    /// The group became a supergroup again after we had already followed one migration.
    #[error("Telegram chat migrated to {to}")]
    ChatMigrated { to: i64 },
    /// 5xx after the retries.
    #[error("Telegram server error {code}: {description}")]
    Server { code: i64, description: String },
    /// Any other `error_code` (404 for a wrong base URL or method, ...).
    #[error("Telegram error {code}: {description}")]
    Api { code: i64, description: String },
    /// No reply in time. Not retried: the message may have been posted (no idempotency).
    #[error("Telegram call timed out; the message may have been sent")]
    Timeout,
    #[error("Telegram unreachable: {0}")]
    Network(String),
    #[error("unexpected Telegram reply: {0}")]
    Protocol(String),
}

impl TelegramError {
    /// Worth another try later (flood control, Telegram-side errors, connection failures).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. } | Self::Server { .. } | Self::Network(_)
        )
    }

    /// The bot token needs a human.
    pub fn alerts_operator(&self) -> bool {
        matches!(self, Self::Unauthorized { .. })
    }

    /// Stop messaging this chat (the user blocked the bot).
    pub fn stops_chat(&self) -> bool {
        matches!(self, Self::Blocked { .. })
    }

    /// Telegram's `error_code`, when it sent one.
    pub fn error_code(&self) -> Option<i64> {
        match self {
            Self::Unauthorized { .. } => Some(401),
            Self::Blocked { .. } => Some(403),
            Self::BadRequest { .. } | Self::ChatMigrated { .. } => Some(400),
            Self::RateLimited { .. } => Some(429),
            Self::Server { code, .. } | Self::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// How long Telegram asked us to wait.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } => Some(*retry_after),
            _ => None,
        }
    }
}

/// A delivered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    pub message_id: i64,
    /// The chat the message landed in (the new id after a migration).
    pub chat_id: i64,
    /// Set when the chat had become a supergroup: store it in place of the old id.
    pub migrated_to_chat_id: Option<i64>,
    /// `file_id` of the largest photo size, to resend without uploading again.
    pub photo_file_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Reply {
    ok: bool,
    result: Option<Value>,
    error_code: Option<i64>,
    description: Option<String>,
    parameters: Option<ResponseParameters>,
}

#[derive(Debug, Default, Deserialize)]
struct ResponseParameters {
    retry_after: Option<u64>,
    migrate_to_chat_id: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct Message {
    message_id: i64,
    chat: Chat,
    #[serde(default)]
    photo: Vec<PhotoSize>,
}

#[derive(Debug, Deserialize)]
struct Chat {
    id: i64,
}

#[derive(Debug, Deserialize)]
struct PhotoSize {
    file_id: String,
    #[serde(default)]
    width: u64,
    #[serde(default)]
    height: u64,
}

enum Payload {
    Photo {
        bytes: Bytes,
        filename: String,
        mime: String,
        caption: String,
    },
    Text {
        text: String,
    },
}

impl Payload {
    fn method(&self) -> &'static str {
        match self {
            Self::Photo { .. } => "sendPhoto",
            Self::Text { .. } => "sendMessage",
        }
    }
}

/// Client of `https://api.telegram.org`. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TelegramClient {
    http: reqwest::Client,
    base_url: String,
    token: SecretString,
    retry: RetryPolicy,
    max_total_wait: Duration,
    sleeper: Sleeper,
}

impl TelegramClient {
    /// Defaults: at most 3 tries per send, at most 30 s spent waiting in all (a longer
    /// `retry_after` is returned as [`TelegramError::RateLimited`] for the job to reschedule).
    pub fn new(
        base_url: &str,
        bot_token: SecretString,
        timeout: Duration,
    ) -> Result<Self, BuildError> {
        Ok(Self {
            http: http::client(timeout, reqwest::redirect::Policy::none())?,
            base_url: normalise_base_url(base_url)?,
            token: bot_token,
            retry: RetryPolicy::new(3, Duration::from_millis(500), Duration::from_secs(5)),
            max_total_wait: Duration::from_secs(30),
            sleeper: Sleeper::default(),
        })
    }

    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Most time spent sleeping (on `retry_after` and backoff) inside one send.
    pub fn with_max_total_wait(mut self, wait: Duration) -> Self {
        self.max_total_wait = wait;
        self
    }

    pub fn with_sleeper(mut self, sleeper: Sleeper) -> Self {
        self.sleeper = sleeper;
        self
    }

    /// `sendPhoto` with the image uploaded as the multipart field `photo`.
    #[tracing::instrument(skip_all)]
    pub async fn send_photo(
        &self,
        chat_id: i64,
        photo_bytes: Vec<u8>,
        filename: &str,
        mime: &str,
        caption: &str,
    ) -> Result<SentMessage, TelegramError> {
        if photo_bytes.is_empty() || photo_bytes.len() > MAX_PHOTO_BYTES {
            return Err(TelegramError::InvalidRequest(format!(
                "photo of {} bytes (1..={MAX_PHOTO_BYTES})",
                photo_bytes.len()
            )));
        }
        let chars = caption.chars().count();
        if chars > MAX_CAPTION_CHARS {
            return Err(TelegramError::InvalidRequest(format!(
                "caption of {chars} characters, at most {MAX_CAPTION_CHARS}"
            )));
        }
        // Checked once here so that building each attempt's form cannot fail.
        reqwest::multipart::Part::bytes(Vec::new())
            .mime_str(mime)
            .map_err(|_| TelegramError::InvalidRequest(format!("bad MIME type {mime:?}")))?;
        let payload = Payload::Photo {
            bytes: Bytes::from(photo_bytes),
            filename: filename.to_owned(),
            mime: mime.to_owned(),
            caption: caption.to_owned(),
        };
        self.deliver(chat_id, &payload).await
    }

    /// `sendMessage` with plain text (no `parse_mode`: nothing to escape).
    #[tracing::instrument(skip_all)]
    pub async fn send_message(
        &self,
        chat_id: i64,
        text: &str,
    ) -> Result<SentMessage, TelegramError> {
        let chars = text.chars().count();
        if chars == 0 || chars > MAX_TEXT_CHARS {
            return Err(TelegramError::InvalidRequest(format!(
                "text of {chars} characters (1..={MAX_TEXT_CHARS})"
            )));
        }
        let payload = Payload::Text {
            text: text.to_owned(),
        };
        self.deliver(chat_id, &payload).await
    }

    /// Sends, waiting out flood control and retrying transient failures within the bounds,
    /// and following one chat migration.
    async fn deliver(&self, chat_id: i64, payload: &Payload) -> Result<SentMessage, TelegramError> {
        let label = |e: &TelegramError| {
            e.error_code()
                .map_or_else(|| "transport".to_owned(), |c| c.to_string())
        };
        let operation = match payload {
            Payload::Photo { .. } => "send_photo",
            Payload::Text { .. } => "send_message",
        };
        super::measured(
            "telegram",
            operation,
            self.deliver_unmeasured(chat_id, payload),
            label,
        )
        .await
    }

    async fn deliver_unmeasured(
        &self,
        chat_id: i64,
        payload: &Payload,
    ) -> Result<SentMessage, TelegramError> {
        let method = payload.method();
        let mut chat_id = chat_id;
        let mut migrated_to = None;
        let mut attempt = 1;
        let mut waited = Duration::ZERO;
        loop {
            let err = match self.send_once(chat_id, payload).await {
                Ok(message) => return Ok(sent(message, migrated_to)),
                Err(err) => err,
            };
            let pause = match &err {
                TelegramError::ChatMigrated { to } if migrated_to.is_none() => {
                    tracing::info!(method, "chat became a supergroup, resending there");
                    migrated_to = Some(*to);
                    chat_id = *to;
                    continue;
                }
                TelegramError::RateLimited { retry_after } => *retry_after,
                e if e.is_retryable() => self.retry.backoff(attempt - 1),
                _ => return Err(err),
            };
            if attempt >= self.retry.max_attempts || waited + pause > self.max_total_wait {
                return Err(err);
            }
            tracing::warn!(method, error = %err, attempt, ?pause, "Telegram send failed, retrying");
            self.sleeper.sleep(pause).await;
            waited += pause;
            attempt += 1;
        }
    }

    async fn send_once(&self, chat_id: i64, payload: &Payload) -> Result<Message, TelegramError> {
        // The token is in the path: this URL must never reach a log or an error message.
        let url = format!(
            "{}/bot{}/{}",
            self.base_url,
            self.token.expose_secret(),
            payload.method()
        );
        let request = match payload {
            Payload::Photo {
                bytes,
                filename,
                mime,
                caption,
            } => {
                let part = reqwest::multipart::Part::stream_with_length(
                    reqwest::Body::from(bytes.clone()),
                    bytes.len() as u64,
                )
                .file_name(filename.clone())
                .mime_str(mime)
                .map_err(|_| TelegramError::InvalidRequest(format!("bad MIME type {mime:?}")))?;
                let mut form = reqwest::multipart::Form::new()
                    .text("chat_id", chat_id.to_string())
                    .part("photo", part);
                if !caption.is_empty() {
                    form = form.text("caption", caption.clone());
                }
                self.http.post(url).multipart(form)
            }
            Payload::Text { text } => self
                .http
                .post(url)
                .json(&json!({ "chat_id": chat_id, "text": text })),
        };
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status().as_u16();
        let header_retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let body = http::read_capped(response, MAX_REPLY_BYTES).await?;
        parse_reply(status, header_retry_after, &body)
    }
}

/// Telegram Stars: invoices in XTR (whole Stars, no provider token) and the answer to a
/// `pre_checkout_query`, which must come within 10 s.
impl TelegramClient {
    /// `createInvoiceLink` for one item priced in Stars; returns the link the Mini App opens
    /// with `Telegram.WebApp.openInvoice`.
    #[tracing::instrument(skip_all)]
    pub async fn create_stars_invoice_link(
        &self,
        title: &str,
        description: &str,
        payload: &str,
        stars: i64,
    ) -> Result<String, TelegramError> {
        let chars = |s: &str| s.chars().count();
        if !(1..=32).contains(&chars(title))
            || !(1..=255).contains(&chars(description))
            || !(1..=128).contains(&payload.len())
            || stars < 1
        {
            return Err(TelegramError::InvalidRequest(
                "title 1-32, description 1-255 characters, payload 1-128 bytes, at least 1 Star"
                    .into(),
            ));
        }
        let body = json!({
            "title": title,
            "description": description,
            "payload": payload,
            "currency": "XTR",
            "prices": [{"label": title, "amount": stars}],
        });
        match self.call_json("createInvoiceLink", &body).await? {
            Value::String(link) if link.starts_with("https://") => Ok(link),
            other => Err(TelegramError::Protocol(format!(
                "createInvoiceLink returned {}",
                truncate(&other.to_string(), 100)
            ))),
        }
    }

    /// `answerPreCheckoutQuery`: `Ok(())` when Telegram took the answer. `error` refuses the
    /// payment with a message the user sees.
    #[tracing::instrument(skip_all)]
    pub async fn answer_pre_checkout_query(
        &self,
        query_id: &str,
        error: Option<&str>,
    ) -> Result<(), TelegramError> {
        let body = match error {
            None => json!({"pre_checkout_query_id": query_id, "ok": true}),
            Some(message) => {
                json!({"pre_checkout_query_id": query_id, "ok": false, "error_message": message})
            }
        };
        match self.call_json("answerPreCheckoutQuery", &body).await? {
            Value::Bool(true) => Ok(()),
            other => Err(TelegramError::Protocol(format!(
                "answerPreCheckoutQuery returned {other}"
            ))),
        }
    }

    /// One JSON call, retried on flood control and server errors within the bounds (these
    /// methods are safe to repeat).
    pub async fn call_json(&self, method: &str, body: &Value) -> Result<Value, TelegramError> {
        let mut attempt = 1;
        let mut waited = Duration::ZERO;
        loop {
            let url = format!(
                "{}/bot{}/{method}",
                self.base_url,
                self.token.expose_secret()
            );
            let result = async {
                let response = self
                    .http
                    .post(url)
                    .json(body)
                    .send()
                    .await
                    .map_err(transport_error)?;
                let status = response.status().as_u16();
                let body = http::read_capped(response, MAX_REPLY_BYTES).await?;
                parse_envelope(status, None, &body)
            }
            .await;
            let err = match result {
                Ok(value) => return Ok(value),
                Err(err) => err,
            };
            let pause = match &err {
                TelegramError::RateLimited { retry_after } => *retry_after,
                e if e.is_retryable() => self.retry.backoff(attempt - 1),
                _ => return Err(err),
            };
            if attempt >= self.retry.max_attempts || waited + pause > self.max_total_wait {
                return Err(err);
            }
            self.sleeper.sleep(pause).await;
            waited += pause;
            attempt += 1;
        }
    }
}

fn sent(message: Message, migrated_to_chat_id: Option<i64>) -> SentMessage {
    let photo_file_id = message
        .photo
        .iter()
        .max_by_key(|p| p.width.saturating_mul(p.height))
        .map(|p| p.file_id.clone());
    SentMessage {
        message_id: message.message_id,
        chat_id: message.chat.id,
        migrated_to_chat_id,
        photo_file_id,
    }
}

fn transport_error(err: reqwest::Error) -> TelegramError {
    match Transport::from(err) {
        Transport::Timeout => TelegramError::Timeout,
        Transport::Network(detail) => TelegramError::Network(detail),
    }
}

impl From<ReadError> for TelegramError {
    fn from(err: ReadError) -> Self {
        match err {
            ReadError::TooLarge { .. } => Self::Protocol("reply too large".into()),
            ReadError::Transport(e) => transport_error(e),
        }
    }
}

fn parse_reply(
    status: u16,
    header_retry_after: Option<u64>,
    body: &[u8],
) -> Result<Message, TelegramError> {
    let result = parse_envelope(status, header_retry_after, body)?;
    serde_json::from_value::<Message>(result)
        .map_err(|e| TelegramError::Protocol(format!("result is not a Message: {e}")))
}

/// The `result` of a successful Bot API reply, or the classified error.
fn parse_envelope(
    status: u16,
    header_retry_after: Option<u64>,
    body: &[u8],
) -> Result<Value, TelegramError> {
    let Ok(reply) = serde_json::from_slice::<Reply>(body) else {
        // No Bot API envelope (a proxy's error page, say): go by the HTTP status.
        let description = truncate(&String::from_utf8_lossy(body), 200);
        return Err(match status {
            429 => TelegramError::RateLimited {
                retry_after: Duration::from_secs(header_retry_after.unwrap_or(1)),
            },
            500..=599 => TelegramError::Server {
                code: i64::from(status),
                description,
            },
            200..=299 => TelegramError::Protocol(format!("not a Bot API reply: {description}")),
            _ => classify(
                i64::from(status),
                description,
                ResponseParameters::default(),
            ),
        });
    };
    if reply.ok {
        return reply
            .result
            .ok_or_else(|| TelegramError::Protocol("ok without result".into()));
    }
    let mut parameters = reply.parameters.unwrap_or_default();
    if parameters.retry_after.is_none() {
        parameters.retry_after = header_retry_after.filter(|_| status == 429);
    }
    Err(classify(
        reply.error_code.unwrap_or(i64::from(status)),
        reply.description.unwrap_or_default(),
        parameters,
    ))
}

fn classify(code: i64, description: String, parameters: ResponseParameters) -> TelegramError {
    if let Some(to) = parameters.migrate_to_chat_id {
        return TelegramError::ChatMigrated { to };
    }
    if code == 429 || parameters.retry_after.is_some() {
        return TelegramError::RateLimited {
            retry_after: Duration::from_secs(parameters.retry_after.unwrap_or(1)),
        };
    }
    match code {
        401 => TelegramError::Unauthorized { description },
        403 => TelegramError::Blocked { description },
        400 => TelegramError::BadRequest { description },
        500..=599 => TelegramError::Server { code, description },
        _ => TelegramError::Api { code, description },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_classified_by_code_and_parameters() {
        let err = |body: &str| parse_reply(200, None, body.as_bytes()).err();
        assert_eq!(
            err(
                r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 5","parameters":{"retry_after":5}}"#
            ),
            Some(TelegramError::RateLimited {
                retry_after: Duration::from_secs(5)
            })
        );
        assert_eq!(
            err(
                r#"{"ok":false,"error_code":400,"description":"Bad Request: group chat was upgraded to a supergroup chat","parameters":{"migrate_to_chat_id":-1001234}}"#
            ),
            Some(TelegramError::ChatMigrated { to: -1001234 })
        );
        assert!(
            err(r#"{"ok":false,"error_code":403,"description":"Forbidden: bot was blocked by the user"}"#)
                .is_some_and(|e| e.stops_chat() && !e.is_retryable())
        );
        assert!(
            parse_reply(502, None, b"<html>Bad Gateway</html>")
                .err()
                .is_some_and(|e| e.is_retryable())
        );
    }
}
