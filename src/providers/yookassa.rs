//! YooKassa API v3 client (`POST /payments`, `GET /payments/{id}`, `GET /refunds/{id}`) behind
//! [`PaymentProvider`], and YooKassa's notification format. Without keys the sandbox stands in
//! ([`super::sandbox::SandboxPayments`]), so a notification, a sandbox button and the
//! reconciliation sweep all verify payments the same way: by fetching them from the provider.
//!
//! A create that ends in 500, a timeout or a lost connection has an unknown outcome: it is
//! repeated with the same `Idempotence-Key` and the same body (YooKassa then returns the original
//! payment). Replies are hostile input: amounts are parsed exactly, ids checked, sizes capped.

use std::collections::BTreeMap;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;

use super::http::{self, BuildError, ReadError, describe, normalise_base_url, truncate};
use super::{BoxFuture, RetryPolicy, Sleeper};
// The payments vocabulary lives with its trait; these paths stay for callers.
pub use super::{Created, PaymentError, PaymentProvider, Refund};
use crate::domain::payments::{Fetched, RemoteStatus, parse_amount};
use crate::domain::vocabulary::PaymentProviderName;

const MAX_REPLY_BYTES: usize = 256 * 1024;

/// Ids are YooKassa's (`2f0…-000f-5000-8000-…`) or the sandbox's UUIDs: short and plain.
pub fn valid_object_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What a notification asks us to look at. Only the event and the object id are read from it:
/// the object itself is fetched from the provider.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// `payment.succeeded`, `refund.succeeded`, … (also events we do not act on).
    pub event: String,
    pub object_id: String,
    /// The whole body, kept in the inbox as it came.
    pub body: Value,
}

/// How the object named by a notification is confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationSubject {
    Payment,
    Refund,
}

impl Notification {
    /// `None` for events we do not act on.
    pub fn subject(&self) -> Option<NotificationSubject> {
        match self.event.as_str() {
            "payment.succeeded" | "payment.canceled" | "payment.waiting_for_capture" => {
                Some(NotificationSubject::Payment)
            }
            "refund.succeeded" => Some(NotificationSubject::Refund),
            _ => None,
        }
    }
}

/// Why a notification body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotificationError {
    #[error("{0}")]
    NotJson(String),
    #[error("expected {{type: notification, event, object: {{id}}}}")]
    Shape,
    /// PostgreSQL cannot keep U+0000 in `jsonb` (nor in text), and YooKassa never sends it.
    #[error("the notification contains a NUL character")]
    Nul,
}

/// Turns a webhook body into a [`Notification`]: `{type: "notification", event, object: {id}}`
/// with a well-formed id. The event may be one we do not act on: see [`Notification::subject`].
pub fn parse_notification(body: &[u8]) -> Result<Notification, NotificationError> {
    let body: Value =
        serde_json::from_slice(body).map_err(|e| NotificationError::NotJson(e.to_string()))?;
    let (Some(event), Some(object_id)) = (body["event"].as_str(), body["object"]["id"].as_str())
    else {
        return Err(NotificationError::Shape);
    };
    if body["type"] != "notification" || !valid_object_id(object_id) {
        return Err(NotificationError::Shape);
    }
    if contains_nul(&body) {
        return Err(NotificationError::Nul);
    }
    Ok(Notification {
        event: event.to_owned(),
        object_id: object_id.to_owned(),
        body,
    })
}

fn contains_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// Client of `https://api.yookassa.ru/v3`. Cheap to clone.
#[derive(Debug, Clone)]
pub struct YooKassaClient {
    http: reqwest::Client,
    base_url: String,
    shop_id: String,
    secret_key: SecretString,
    retry: RetryPolicy,
    sleeper: Sleeper,
}

#[derive(Debug, Deserialize)]
struct ApiError {
    code: Option<String>,
    description: Option<String>,
    parameter: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Amount {
    value: String,
    currency: String,
}

#[derive(Debug, Deserialize)]
struct PaymentObject {
    id: String,
    status: String,
    amount: Amount,
    #[serde(default)]
    metadata: Option<BTreeMap<String, Value>>,
    #[serde(default)]
    confirmation: Option<Confirmation>,
}

#[derive(Debug, Deserialize)]
struct Confirmation {
    confirmation_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RefundObject {
    id: String,
    payment_id: String,
    status: String,
    amount: Amount,
}

impl YooKassaClient {
    /// Three tries per call by default, pausing 1–4 s between them.
    pub fn new(
        base_url: &str,
        shop_id: &str,
        secret_key: SecretString,
        timeout: Duration,
    ) -> Result<Self, BuildError> {
        Ok(Self {
            http: http::client(timeout, reqwest::redirect::Policy::none())?,
            base_url: normalise_base_url(base_url)?,
            shop_id: shop_id.to_owned(),
            secret_key,
            retry: RetryPolicy::new(3, Duration::from_secs(1), Duration::from_secs(4)),
            sleeper: Sleeper::default(),
        })
    }

    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn with_sleeper(mut self, sleeper: Sleeper) -> Self {
        self.sleeper = sleeper;
        self
    }

    /// `POST /payments`, repeated with the same key and body while the outcome is unknown.
    #[tracing::instrument(skip_all)]
    pub async fn create_payment(&self, key: &str, body: &Value) -> Result<Created, PaymentError> {
        if key.is_empty() || key.len() > 64 {
            return Err(PaymentError::Protocol(
                "Idempotence-Key must be 1-64 characters".into(),
            ));
        }
        let object = self
            .retrying(|| async {
                let req = self
                    .http
                    .post(format!("{}/payments", self.base_url))
                    .header("Idempotence-Key", key)
                    .json(body);
                self.call(req).await
            })
            .await?;
        let payment: PaymentObject = serde_json::from_value(object)
            .map_err(|e| PaymentError::Protocol(format!("not a payment: {e}")))?;
        let fetched = fetched(&payment)?;
        Ok(Created {
            id: fetched.id,
            status: fetched.status,
            confirmation_url: payment.confirmation.and_then(|c| c.confirmation_url),
        })
    }

    /// `GET /payments/{id}`: the truth about a payment.
    #[tracing::instrument(skip_all)]
    pub async fn payment(&self, id: &str) -> Result<Fetched, PaymentError> {
        if !valid_object_id(id) {
            return Err(PaymentError::NotFound(id.to_owned()));
        }
        let object = self
            .retrying(|| async {
                let req = self.http.get(format!("{}/payments/{id}", self.base_url));
                self.call(req).await
            })
            .await?;
        let payment: PaymentObject = serde_json::from_value(object)
            .map_err(|e| PaymentError::Protocol(format!("not a payment: {e}")))?;
        let fetched = fetched(&payment)?;
        if fetched.id != id {
            return Err(PaymentError::Protocol(format!(
                "asked for {id}, got {}",
                fetched.id
            )));
        }
        Ok(fetched)
    }

    /// `GET /refunds/{id}`.
    #[tracing::instrument(skip_all)]
    pub async fn refund(&self, id: &str) -> Result<Refund, PaymentError> {
        if !valid_object_id(id) {
            return Err(PaymentError::NotFound(id.to_owned()));
        }
        let object = self
            .retrying(|| async {
                let req = self.http.get(format!("{}/refunds/{id}", self.base_url));
                self.call(req).await
            })
            .await?;
        let refund: RefundObject = serde_json::from_value(object)
            .map_err(|e| PaymentError::Protocol(format!("not a refund: {e}")))?;
        let amount_minor = parse_amount(&refund.amount.value).ok_or_else(|| {
            PaymentError::Protocol(format!("bad amount {:?}", refund.amount.value))
        })?;
        if refund.id != id || !valid_object_id(&refund.payment_id) {
            return Err(PaymentError::Protocol(format!(
                "asked for refund {id}, got {}",
                refund.id
            )));
        }
        Ok(Refund {
            succeeded: RemoteStatus::parse(&refund.status) == Some(RemoteStatus::Succeeded),
            id: refund.id,
            payment_id: refund.payment_id,
            amount_minor,
            currency: refund.amount.currency,
        })
    }

    async fn retrying<F, Fut>(&self, mut call: F) -> Result<Value, PaymentError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Value, PaymentError>>,
    {
        let mut attempt = 1;
        loop {
            match call().await {
                Err(e) if e.is_retryable() && attempt < self.retry.max_attempts => {
                    let pause = self.retry.backoff(attempt - 1);
                    tracing::warn!(error = %e, attempt, ?pause, "YooKassa call failed, repeating it");
                    self.sleeper.sleep(pause).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn call(&self, req: reqwest::RequestBuilder) -> Result<Value, PaymentError> {
        let response = req
            .basic_auth(&self.shop_id, Some(self.secret_key.expose_secret()))
            .send()
            .await
            .map_err(|e| PaymentError::Unknown(describe(e)))?;
        let status = response.status().as_u16();
        let body = http::read_capped(response, MAX_REPLY_BYTES).await?;
        if status == 200 {
            return serde_json::from_slice(&body)
                .map_err(|e| PaymentError::Protocol(format!("reply is not JSON: {e}")));
        }
        let err: Option<ApiError> = serde_json::from_slice(&body).ok();
        let (code, description, parameter) = match err {
            Some(e) => (
                e.code.unwrap_or_default(),
                e.description.unwrap_or_default(),
                e.parameter,
            ),
            None => (
                String::new(),
                truncate(&String::from_utf8_lossy(&body), 200),
                None,
            ),
        };
        Err(match status {
            429 => PaymentError::RateLimited,
            500..=599 => PaymentError::Unknown(format!("HTTP {status} {code}")),
            401 | 403 => PaymentError::Credentials {
                status,
                description,
            },
            404 => PaymentError::NotFound(description),
            _ => PaymentError::Rejected {
                status,
                code,
                description,
                parameter,
            },
        })
    }
}

impl PaymentProvider for YooKassaClient {
    fn name(&self) -> PaymentProviderName {
        PaymentProviderName::Yookassa
    }

    fn create<'a>(
        &'a self,
        idempotence_key: &'a str,
        body: &'a Value,
    ) -> BoxFuture<'a, Result<Created, PaymentError>> {
        Box::pin(self.create_payment(idempotence_key, body))
    }

    fn get_payment<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Fetched, PaymentError>> {
        Box::pin(self.payment(id))
    }

    fn get_refund<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Refund, PaymentError>> {
        Box::pin(self.refund(id))
    }
}

fn fetched(payment: &PaymentObject) -> Result<Fetched, PaymentError> {
    if !valid_object_id(&payment.id) {
        return Err(PaymentError::Protocol("bad payment id".into()));
    }
    let status = RemoteStatus::parse(&payment.status)
        .ok_or_else(|| PaymentError::Protocol(format!("unknown status {:?}", payment.status)))?;
    let amount_minor = parse_amount(&payment.amount.value)
        .ok_or_else(|| PaymentError::Protocol(format!("bad amount {:?}", payment.amount.value)))?;
    let our_payment_id = payment
        .metadata
        .as_ref()
        .and_then(|m| m.get("payment_id"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(Fetched {
        id: payment.id.clone(),
        status,
        amount_minor,
        currency: payment.amount.currency.clone(),
        our_payment_id,
    })
}

impl From<ReadError> for PaymentError {
    fn from(err: ReadError) -> Self {
        match err {
            ReadError::TooLarge { .. } => Self::Protocol("reply too large".into()),
            // A reply cut off may have followed a done operation.
            ReadError::Transport(e) => Self::Unknown(describe(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_ids_are_plain() {
        assert!(valid_object_id("23d93cac-000f-5000-8000-126628f15141"));
        assert!(!valid_object_id(""));
        assert!(!valid_object_id("../payments"));
        assert!(!valid_object_id(&"a".repeat(65)));
    }

    #[test]
    fn notifications_are_parsed_strictly() {
        let n = parse_notification(
            br#"{"type":"notification","event":"refund.succeeded","object":{"id":"r-1","x":[1]}}"#,
        )
        .unwrap();
        assert_eq!(
            (n.event.as_str(), n.object_id.as_str()),
            ("refund.succeeded", "r-1")
        );
        assert_eq!(n.subject(), Some(NotificationSubject::Refund));
        let other = parse_notification(
            br#"{"type":"notification","event":"deal.closed","object":{"id":"d"}}"#,
        );
        assert_eq!(other.unwrap().subject(), None);
        for bad in [
            &br#"{"type":"notify","event":"payment.succeeded","object":{"id":"p"}}"#[..],
            br#"{"type":"notification","event":"payment.succeeded","object":{"id":"../p"}}"#,
            br#"{"type":"notification","event":"payment.succeeded","object":"p"}"#,
            br#"[]"#,
            // Found by Schemathesis: an event that is not a string was taken for an ignored one.
            br#"{"type":"notification","event":{},"object":{"id":"p"}}"#,
            br#"{"type":"notification","object":{"id":"p"}}"#,
        ] {
            assert_eq!(parse_notification(bad), Err(NotificationError::Shape));
        }
        assert!(matches!(
            parse_notification(b"{"),
            Err(NotificationError::NotJson(_))
        ));
    }

    /// PostgreSQL refuses U+0000 in jsonb ("unsupported Unicode escape sequence"), so such a body
    /// used to reach the inbox insert and fail there with a 500.
    #[test]
    fn notifications_with_nul_are_refused() {
        for body in [
            &br#"{"type":"notification","event":"payment.succeeded","object":{"id":"p","d":"a\u0000"}}"#[..],
            br#"{"type":"notification","event":"payment.succeeded","object":{"id":"p"},"\u0000":1}"#,
        ] {
            assert_eq!(parse_notification(body), Err(NotificationError::Nul));
        }
    }

    /// The crash the yookassa_notification fuzz target found (its own assertion searched the
    /// stored text for `\u0000` and matched an escaped backslash): the parser is right to take
    /// this body, whose key holds a backslash followed by `u0000`, not a NUL.
    #[test]
    fn an_escaped_backslash_before_u0000_is_no_nul() {
        let body = br#"{"type":"notification","event":"paymant.succeeded","object":{"id":"21d6d500f-5000-9000-1","sta\\/\\yM\\u0000d":{"value":"440.18"}}}"#;
        let n = parse_notification(body).unwrap();
        assert!(!contains_nul(&n.body));
        assert_eq!(n.subject(), None);
        assert_eq!(parse_notification(n.body.to_string().as_bytes()), Ok(n));
    }

    #[test]
    fn payments_are_read_exactly() {
        let p: PaymentObject = serde_json::from_value(serde_json::json!({
            "id": "23d93cac-000f-5000-8000-126628f15141", "status": "succeeded", "paid": true,
            "amount": {"value": "299.00", "currency": "RUB"},
            "metadata": {"payment_id": "0b5e", "user_id": "42"}
        }))
        .unwrap();
        let f = fetched(&p).unwrap();
        assert_eq!(f.amount_minor, 29900);
        assert_eq!(f.status, RemoteStatus::Succeeded);
        assert_eq!(f.our_payment_id.as_deref(), Some("0b5e"));
        let bad: PaymentObject = serde_json::from_value(serde_json::json!({
            "id": "x", "status": "succeeded", "amount": {"value": "2.999", "currency": "RUB"}
        }))
        .unwrap();
        assert!(fetched(&bad).is_err());
    }
}
