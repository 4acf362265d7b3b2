//! Error reporting to Sentry, on when `SENTRY_DSN` is set: panics (the panic integration),
//! 5xx answers, operator alerts and failed hooks (every `tracing::error!` becomes an event, the
//! info and warn lines before it its breadcrumbs), and jobs that failed for good
//! ([`job_failed`]). Each event carries the release and the environment.
//!
//! Nothing personal leaves the process: no request data is attached (no headers, cookies,
//! bodies or client addresses), and every string of an event — messages, exception values,
//! breadcrumbs, fields — is scrubbed of access tokens, initData, signed-link signatures, bot
//! tokens and profile fields before it is sent ([`scrub_event`]).
//!
//! The envelopes go out through our own reqwest client on a thread of their own (Sentry's
//! bundled transport would bring a second HTTP stack into the build).

use std::sync::{Arc, mpsc};
use std::time::Duration;

use secrecy::ExposeSecret as _;
use sentry::protocol::{Breadcrumb, Event};
use sentry::{Envelope, Transport, TransportFactory, TransportOptions};
use serde_json::Value;

use crate::config::Settings;

/// Starts the Sentry client when `SENTRY_DSN` is set; events are sent until the guard drops
/// (which flushes what is queued, for at most 2 s).
pub fn init(settings: &Settings) -> Option<sentry::ClientInitGuard> {
    let sentry_settings = settings.sentry.as_ref()?;
    let dsn = sentry_settings.dsn.expose_secret().parse().ok()?;
    let mut options = sentry::ClientOptions::default();
    options.dsn = Some(dsn);
    options.release = Some(sentry_settings.release.clone().into());
    options.environment = Some(sentry_settings.environment.clone().into());
    options.send_default_pii = false;
    options.shutdown_timeout = Duration::from_secs(2);
    options.before_send = Some(Arc::new(|event| Some(scrub_event(event))));
    options.before_breadcrumb = Some(Arc::new(|crumb| Some(scrub_breadcrumb(crumb))));
    options.transport = Some(Arc::new(HttpTransportFactory));
    Some(sentry::init(options))
}

/// The tracing layers that turn `error!` lines into events and `info!`/`warn!` lines into
/// their breadcrumbs. Harmless without a client: nothing is recorded then.
pub fn tracing_layers<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use sentry::integrations::tracing::{BreadcrumbLayer, ErrorLayer};
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::filter::{LevelFilter, filter_fn};
    // Breadcrumbs first, so that an error event carries the lines before it.
    BreadcrumbLayer::new()
        .with_filter(filter_fn(|meta| {
            matches!(*meta.level(), tracing::Level::WARN | tracing::Level::INFO)
        }))
        .and_then(ErrorLayer::new().with_filter(LevelFilter::ERROR))
}

/// Reports a job that failed for good (its last attempt, or a final error).
pub fn job_failed(kind: &str, error: &str) {
    sentry::with_scope(
        |scope| {
            scope.set_tag("job.kind", kind);
            scope.set_tag("kind", "job_failed");
        },
        || {
            sentry::capture_message(
                &format!("{kind} job failed for good: {error}"),
                sentry::Level::Warning,
            )
        },
    );
}

const SCRUBBED: &str = "[scrubbed]";

/// Keys whose values are never sent, wherever they appear in an event.
const SECRET_KEYS: &[&str] = &[
    "authorization",
    "cookie",
    "set-cookie",
    "x-admin-api-key",
    "x-telegram-bot-api-secret-token",
    "token",
    "access_token",
    "init_data",
    "initdata",
    "hash",
    "sig",
    "signature",
    "first_name",
    "last_name",
    "username",
    "photo_url",
    "email",
    "phone",
    "prompt",
    "message_text",
];

/// Removes what is personal or secret from an event (see the module's documentation).
pub fn scrub_event(mut event: Event<'static>) -> Event<'static> {
    event.request = None;
    event.user = None;
    match serde_json::to_value(&event) {
        Ok(mut value) => {
            scrub_value(&mut value);
            serde_json::from_value(value).unwrap_or_else(|_| bare(&event))
        }
        Err(_) => bare(&event),
    }
}

/// The event without anything that could carry a secret, when scrubbing could not be done.
fn bare(event: &Event<'static>) -> Event<'static> {
    Event {
        event_id: event.event_id,
        level: event.level,
        timestamp: event.timestamp,
        release: event.release.clone(),
        environment: event.environment.clone(),
        message: Some("an event that could not be scrubbed was dropped".into()),
        ..Default::default()
    }
}

fn scrub_breadcrumb(mut crumb: Breadcrumb) -> Breadcrumb {
    crumb.message = crumb.message.map(|m| scrub_text(&m));
    for (key, value) in crumb.data.iter_mut() {
        if is_secret_key(key) {
            *value = Value::from(SCRUBBED);
        } else {
            scrub_value(value);
        }
    }
    crumb
}

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEYS.contains(&key.as_str())
}

fn scrub_value(value: &mut Value) {
    match value {
        Value::String(s) => *s = scrub_text(s),
        Value::Array(items) => items.iter_mut().for_each(scrub_value),
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if is_secret_key(key) && !v.is_null() {
                    *v = Value::from(SCRUBBED);
                } else {
                    scrub_value(v);
                }
            }
        }
        _ => {}
    }
}

/// What follows these markers, up to a delimiter, is a secret or personal.
const SECRET_MARKERS: &[&str] = &[
    "token=",
    "sig=",
    "hash=",
    "signature=",
    "init_data=",
    "user=",
    "bearer ",
    "bearer.",
    "tma ",
];

fn is_delimiter(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '&' | '"' | '\'' | ',' | ';' | ')' | ']' | '}' | '<' | '>'
        )
}

/// Replaces secrets in free text: the values after [`SECRET_MARKERS`], JWTs and bot tokens.
pub fn scrub_text(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut word_start = true;
    while i < text.len() {
        let rest = &text[i..];
        if word_start {
            let word_len = rest.find(is_delimiter).unwrap_or(rest.len());
            if word_len > 0 && looks_secret(&rest[..word_len]) {
                out.push_str(SCRUBBED);
                i += word_len;
                word_start = false;
                continue;
            }
        }
        if let Some(marker) = SECRET_MARKERS.iter().find(|m| lower[i..].starts_with(**m)) {
            out.push_str(&rest[..marker.len()]);
            i += marker.len();
            let value_len = text[i..].find(is_delimiter).unwrap_or(text.len() - i);
            if value_len > 0 {
                out.push_str(SCRUBBED);
            }
            i += value_len;
            word_start = marker.ends_with(' ');
            continue;
        }
        let Some(c) = rest.chars().next() else { break };
        out.push(c);
        i += c.len_utf8();
        word_start = is_delimiter(c);
    }
    out
}

/// A JWT (`eyJ….….…`) or a bot token (`<digits>:<30+ token characters>`), anywhere in a word.
fn looks_secret(word: &str) -> bool {
    let token_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let jwt = word.find("eyJ").is_some_and(|at| {
        let parts: Vec<&str> = word[at..].split('.').collect();
        parts.len() >= 3
            && parts
                .iter()
                .take(3)
                .all(|p| p.len() >= 4 && p.chars().all(token_char))
    });
    let bot_token = word.split_once(':').is_some_and(|(id, secret)| {
        let digits = id.chars().rev().take_while(char::is_ascii_digit).count();
        digits >= 5 && secret.chars().take_while(|c| token_char(*c)).count() >= 30
    });
    jwt || bot_token
}

struct HttpTransportFactory;

impl TransportFactory for HttpTransportFactory {
    fn create_transport_with_options(&self, options: TransportOptions) -> Arc<dyn Transport> {
        Arc::new(HttpTransport::start(&options))
    }
}

enum Command {
    Send(Box<Envelope>),
    Flush(mpsc::SyncSender<()>),
}

/// Envelopes are handed to a thread of its own and posted there one after another; when 64
/// are waiting, newer ones are dropped rather than blocking the code that reported them.
struct HttpTransport {
    queue: mpsc::SyncSender<Command>,
}

impl HttpTransport {
    fn start(options: &TransportOptions) -> Self {
        let (queue, commands) = mpsc::sync_channel::<Command>(64);
        let url = options.dsn.envelope_api_url().to_string();
        let auth = options.dsn.to_auth(Some(&options.user_agent)).to_string();
        let spawned = std::thread::Builder::new()
            .name("sentry-transport".into())
            .spawn(move || post_envelopes(&url, &auth, &commands));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start Sentry's transport thread");
        }
        Self { queue }
    }
}

fn post_envelopes(url: &str, auth: &str, commands: &mpsc::Receiver<Command>) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let _entered = runtime.enter(); // the client's connector needs the runtime
    let Ok(client) = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    else {
        return;
    };
    for command in commands {
        match command {
            Command::Send(envelope) => {
                let mut body = Vec::new();
                if envelope.to_writer(&mut body).is_err() {
                    continue;
                }
                let sent = runtime.block_on(
                    client
                        .post(url)
                        .header("X-Sentry-Auth", auth)
                        .header("Content-Type", "application/x-sentry-envelope")
                        .body(body)
                        .send(),
                );
                let outcome = match sent {
                    Ok(res) if res.status().is_success() => "sent",
                    _ => "failed",
                };
                metrics::counter!("error_reports_total", "outcome" => outcome).increment(1);
            }
            Command::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

impl Transport for HttpTransport {
    fn send_envelope(&self, envelope: Envelope) {
        if self
            .queue
            .try_send(Command::Send(Box::new(envelope)))
            .is_err()
        {
            metrics::counter!("error_reports_total", "outcome" => "dropped").increment(1);
        }
    }

    fn flush(&self, timeout: Duration) -> bool {
        let (done, flushed) = mpsc::sync_channel(1);
        self.queue.try_send(Command::Flush(done)).is_ok() && flushed.recv_timeout(timeout).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_text_are_scrubbed_and_the_rest_is_kept() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ";
        let cases = [
            (
                "GET /media/u/a.jpg?exp=99&sig=abcdef0123",
                "GET /media/u/a.jpg?exp=99&sig=[scrubbed]",
            ),
            ("ws?token=abc.def.ghi closed", "ws?token=[scrubbed] closed"),
            (
                "Authorization: Bearer abc123",
                "Authorization: Bearer [scrubbed]",
            ),
            (
                "Authorization: tma query_id=1&user=%7B%22id%22%7D&hash=ff",
                "Authorization: tma [scrubbed]&user=[scrubbed]&hash=[scrubbed]",
            ),
            (
                "bot 7000000001:AAtest-bot-token-for-atelier-tests refused",
                "bot [scrubbed] refused",
            ),
            (
                "storage: /var/lib/atelier/u/1.jpg: EACCES",
                "storage: /var/lib/atelier/u/1.jpg: EACCES",
            ),
            (
                "time 12:30:15 and port 127.0.0.1:8080",
                "time 12:30:15 and port 127.0.0.1:8080",
            ),
            ("Привет, мир", "Привет, мир"),
        ];
        for (text, expected) in cases {
            assert_eq!(scrub_text(text), expected, "{text}");
        }
        assert_eq!(
            scrub_text(&format!("token {jwt} expired")),
            "token [scrubbed] expired"
        );
    }

    #[test]
    fn an_event_loses_its_request_user_and_secret_fields() {
        let mut event = Event {
            message: Some("login of anna failed: hash=deadbeef".into()),
            request: Some(sentry::protocol::Request {
                query_string: Some("token=x".into()),
                ..Default::default()
            }),
            user: Some(sentry::User {
                username: Some("anna".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        event.extra.insert("first_name".into(), "Anna".into());
        event.extra.insert("user_id".into(), 42.into());
        event.extra.insert(
            "nested".into(),
            serde_json::json!({"Authorization": "Bearer x", "kind": "fitting"}),
        );
        let scrubbed = scrub_event(event);
        assert!(scrubbed.request.is_none() && scrubbed.user.is_none());
        assert_eq!(
            scrubbed.message.as_deref(),
            Some("login of anna failed: hash=[scrubbed]")
        );
        assert_eq!(scrubbed.extra["first_name"], "[scrubbed]");
        assert_eq!(scrubbed.extra["user_id"], 42);
        assert_eq!(
            scrubbed.extra["nested"],
            serde_json::json!({"Authorization": "[scrubbed]", "kind": "fitting"})
        );
    }
}
