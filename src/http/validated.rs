//! JSON bodies and query strings whose shape rules are `validator` attributes on their DTOs: a
//! request that breaks one is refused before the handler runs, as problem+json with the rule's
//! own `code` (422 for a body, 400 for a query), like every other error of the API. A body that
//! is not JSON or not of the DTO's type is refused by the `JsonConfig` handler, as before.

use std::ops::Deref;

use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;
use validator::{Validate, ValidationErrors};

use crate::error::{AppError, ErrorCode};

/// `web::Json<T>`, then `T::validate()`: 422 with the code of the rule that failed.
#[derive(Debug)]
pub struct ValidatedJson<T>(pub T);

/// `web::Query<T>`, then `T::validate()`: 400 with the code of the rule that failed.
#[derive(Debug)]
pub struct ValidatedQuery<T>(pub T);

impl<T> ValidatedJson<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> ValidatedQuery<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for ValidatedJson<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> Deref for ValidatedQuery<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + Validate + 'static> FromRequest for ValidatedJson<T> {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let json = web::Json::<T>::from_request(req, payload);
        Box::pin(async move {
            let body = json.await?.into_inner();
            body.validate()
                .map_err(|e| refusal(StatusCode::UNPROCESSABLE_ENTITY, &e))?;
            Ok(Self(body))
        })
    }
}

impl<T: DeserializeOwned + Validate + 'static> FromRequest for ValidatedQuery<T> {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let query = web::Query::<T>::from_request(req, payload);
        Box::pin(async move {
            let query = query.await?.into_inner();
            query
                .validate()
                .map_err(|e| refusal(StatusCode::BAD_REQUEST, &e))?;
            Ok(Self(query))
        })
    }
}

/// The first failed rule, by field name (the errors come in a hash map), as an [`AppError`].
/// Every rule of ours names its code; a rule without one reads as `invalid_body`.
fn refusal(status: StatusCode, errors: &ValidationErrors) -> AppError {
    let mut fields: Vec<_> = errors.field_errors().into_iter().collect();
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    let first = fields
        .into_iter()
        .find_map(|(field, errors)| errors.first().map(|e| (field, e)));
    let Some((field, error)) = first else {
        return AppError::Client {
            status,
            code: ErrorCode::InvalidBody,
            detail: errors.to_string(),
        };
    };
    let code = ErrorCode::parse(&error.code).unwrap_or(ErrorCode::InvalidBody);
    let detail = match &error.message {
        Some(message) => message.to_string(),
        None => format!("{field} is invalid"),
    };
    AppError::Client {
        status,
        code,
        detail,
    }
}

/// The patterns of the rules, each written out again, as a literal, in the `#[schema]` beside
/// its `#[validate]` (utoipa takes no constant there); `tests` checks the document against them.
pub mod patterns {
    use std::sync::LazyLock;

    use regex::Regex;

    /// An idempotency key's characters: printable ASCII (its 1–128 length is a rule of its own).
    pub const PRINTABLE_ASCII: &str = "^[!-~]+$";
    /// Something visible: a character that is not white space, a control character or an
    /// invisible format character — what `domain::text::clean` leaves of a text, when anything.
    pub const VISIBLE: &str =
        "[^\\s\\x00-\\x1f\\x7f-\\x9f\\u200b-\\u200f\\u202a-\\u202e\\u2066-\\u2069\\ufeff]";

    #[expect(
        clippy::expect_used,
        reason = "constant patterns, each compiled by a test"
    )]
    fn compiled(pattern: &str) -> Regex {
        Regex::new(pattern).expect("a valid pattern")
    }

    /// A cursor of the lists ordered by (time, id): `<microseconds>_<uuid>`, as they hand it out.
    pub const CURSOR: &str =
        "^[0-9]{1,16}_[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";
    /// No control character anywhere.
    pub const NO_CONTROL: &str = "^[^\\x00-\\x1f\\x7f-\\x9f]*$";
    /// A Telegram username: 5–32 letters, digits and underscores.
    pub const USERNAME: &str = "^[A-Za-z0-9_]{5,32}$";
    /// A `startapp` parameter: 1–64 letters, digits, `_` and `-`.
    pub const START_PARAM: &str = "^[A-Za-z0-9_-]{1,64}$";

    pub static PRINTABLE_ASCII_RE: LazyLock<Regex> = LazyLock::new(|| compiled(PRINTABLE_ASCII));
    pub static VISIBLE_RE: LazyLock<Regex> = LazyLock::new(|| compiled(VISIBLE));
    pub static CURSOR_RE: LazyLock<Regex> = LazyLock::new(|| compiled(CURSOR));
    pub static USERNAME_RE: LazyLock<Regex> = LazyLock::new(|| compiled(USERNAME));
    pub static START_PARAM_RE: LazyLock<Regex> = LazyLock::new(|| compiled(START_PARAM));
}

#[cfg(test)]
mod tests {
    use super::patterns::*;
    use utoipa::OpenApi as _;

    fn collect(value: &serde_json::Value, into: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, v) in map {
                    match (key.as_str(), v) {
                        ("pattern", serde_json::Value::String(p)) => into.push(p.clone()),
                        _ => collect(v, into),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| collect(v, into)),
            _ => {}
        }
    }

    /// A pattern in the document that no rule enforces (or a rule the document does not state)
    /// is a schema that says other than the server does.
    #[test]
    fn the_document_states_the_patterns_the_rules_enforce() {
        let document = serde_json::to_value(crate::openapi::ApiDoc::openapi()).unwrap();
        let mut stated = Vec::new();
        collect(&document, &mut stated);
        let rules = [
            PRINTABLE_ASCII,
            VISIBLE,
            CURSOR,
            NO_CONTROL,
            USERNAME,
            START_PARAM,
        ];
        for pattern in &stated {
            assert!(rules.contains(&pattern.as_str()), "no rule for {pattern}");
        }
        for rule in rules {
            assert!(stated.iter().any(|p| p == rule), "{rule} is not stated");
            regex::Regex::new(rule).unwrap();
        }
        assert!(VISIBLE_RE.is_match("\u{200b} a "));
        assert!(!VISIBLE_RE.is_match(" \t\u{0}\u{85}\u{feff}\u{202e}\u{3000}"));
        assert!(CURSOR_RE.is_match("1764770000000000_0b8e7d1c-5f6a-4b3c-9d2e-1f0a9b8c7d6e"));
        assert!(PRINTABLE_ASCII_RE.is_match("key-1") && !PRINTABLE_ASCII_RE.is_match("a b"));
    }
}
