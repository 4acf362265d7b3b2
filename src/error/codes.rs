//! The registry of problem codes: every `code` a problem+json answer can carry, with the HTTP
//! status it is sent with and a short English title. Clients localise by code; the OpenAPI
//! document lists them all (the `ErrorCode` schema), so a code exists here or nowhere.

use std::borrow::Cow;
use std::fmt;

use actix_web::http::StatusCode;
use serde::{Serialize, Serializer};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};

/// Defines [`ErrorCode`] and its tables from one list, so that a code, its statuses and its
/// title cannot drift apart. A code's first status is the one it is documented with; a second
/// one is a status it is also sent with.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident = $code:literal, [$($status:ident),*], $title:literal;)+) => {
        /// A problem's stable machine code (see the module documentation).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)+
        }

        impl ErrorCode {
            /// Every code, in the order of the registry.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),+];

            /// The snake_case code sent in `code` (and in `type` as `/problems/{code}`).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)+
                }
            }

            /// The code whose snake_case string is `code`, if it is one of ours.
            pub fn parse(code: &str) -> Option<ErrorCode> {
                Self::ALL.iter().copied().find(|c| c.as_str() == code)
            }

            /// The statuses this code is sent with, the documented one first; empty for
            /// [`ErrorCode::Error`], which stands for any status without a code of its own.
            pub fn statuses(self) -> &'static [StatusCode] {
                match self {
                    $(ErrorCode::$variant => &[$(StatusCode::$status),*],)+
                }
            }

            /// A short English title for documentation and logs (the problem's `title` member
            /// stays the status's reason phrase).
            pub const fn title(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $title,)+
                }
            }

            /// The variant's name, as written at its call sites (`ErrorCode::NotFound`).
            #[cfg(test)]
            const fn variant_name(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => stringify!($variant),)+
                }
            }
        }
    };
}

error_codes! {
    // 400: the request is malformed.
    BadRequest = "bad_request", [BAD_REQUEST], "Bad request";
    EmptyFile = "empty_file", [BAD_REQUEST], "A file field is empty";
    EpilogueTooLong = "epilogue_too_long", [BAD_REQUEST], "Multipart epilogue too long";
    InvalidCallback = "invalid_callback", [BAD_REQUEST], "Provider callback not readable";
    InvalidCursor = "invalid_cursor", [BAD_REQUEST], "Invalid page cursor";
    InvalidJson = "invalid_json", [BAD_REQUEST], "Body is not JSON";
    InvalidMultipart = "invalid_multipart", [BAD_REQUEST], "Malformed multipart body";
    InvalidNotification = "invalid_notification", [BAD_REQUEST], "Payment notification not readable";
    InvalidQuery = "invalid_query", [BAD_REQUEST], "Invalid query string";
    InvalidUpdate = "invalid_update", [BAD_REQUEST], "Telegram update not readable";
    MissingClientRequestId = "missing_client_request_id", [BAD_REQUEST], "Request id missing";
    MissingField = "missing_field", [BAD_REQUEST], "A required field is missing";
    MissingIdempotencyKey = "missing_idempotency_key", [BAD_REQUEST], "Idempotency-Key missing";
    MissingInitData = "missing_init_data", [BAD_REQUEST], "initData missing";
    NulCharacter = "nul_character", [BAD_REQUEST], "Text contains U+0000";
    PartHeaderTooLarge = "part_header_too_large", [BAD_REQUEST], "Multipart part headers too large";
    PreambleTooLong = "preamble_too_long", [BAD_REQUEST], "Multipart preamble too long";
    TooManyFiles = "too_many_files", [BAD_REQUEST], "Too many files";
    TooManyParts = "too_many_parts", [BAD_REQUEST], "Too many multipart parts";
    UnknownField = "unknown_field", [BAD_REQUEST], "Unknown form field";
    // 401: credentials are missing or not accepted.
    InitDataExpired = "init_data_expired", [UNAUTHORIZED], "initData expired";
    InvalidAdminKey = "invalid_admin_key", [UNAUTHORIZED], "Invalid admin key";
    InvalidInitData = "invalid_init_data", [UNAUTHORIZED], "Invalid initData";
    InvalidSecretToken = "invalid_secret_token", [UNAUTHORIZED], "Invalid webhook secret token";
    InvalidToken = "invalid_token", [UNAUTHORIZED], "Invalid access token";
    MissingCredentials = "missing_credentials", [UNAUTHORIZED], "Credentials missing";
    TokenExpired = "token_expired", [UNAUTHORIZED], "Access token expired";
    Unauthorized = "unauthorized", [UNAUTHORIZED], "Unauthorized";
    // 402
    InsufficientCredits = "insufficient_credits", [PAYMENT_REQUIRED], "Not enough credits";
    // 403: understood, and refused.
    Forbidden = "forbidden", [FORBIDDEN], "Forbidden";
    ForbiddenSource = "forbidden_source", [FORBIDDEN], "Notification from an unknown address";
    /// 403 on a signed media link; 401 on a provider callback.
    InvalidSignature = "invalid_signature", [FORBIDDEN, UNAUTHORIZED], "Invalid signature";
    LinkExpired = "link_expired", [FORBIDDEN], "Signed link expired";
    NotAdmin = "not_admin", [FORBIDDEN], "Not an operator";
    UserBlocked = "user_blocked", [FORBIDDEN], "Account blocked";
    // 404, 405, 408
    NotFound = "not_found", [NOT_FOUND], "Not found";
    MethodNotAllowed = "method_not_allowed", [METHOD_NOT_ALLOWED], "Method not allowed";
    RequestTimeout = "request_timeout", [REQUEST_TIMEOUT], "Request body too slow";
    // 409: the state of a resource refuses the request.
    Conflict = "conflict", [CONFLICT], "Conflicts with existing data";
    GenerationActive = "generation_active", [CONFLICT], "A generation is still running";
    IdempotencyConflict = "idempotency_conflict", [CONFLICT], "Idempotency key already used";
    NotCancelable = "not_cancelable", [CONFLICT], "Generation can no longer be canceled";
    SessionFull = "session_full", [CONFLICT], "Chat session full";
    TurnInProgress = "turn_in_progress", [CONFLICT], "A chat turn is in progress";
    UploadInUse = "upload_in_use", [CONFLICT], "Upload in use";
    // 413, 415
    FileTooLarge = "file_too_large", [PAYLOAD_TOO_LARGE], "File too large";
    PayloadTooLarge = "payload_too_large", [PAYLOAD_TOO_LARGE], "Request too large";
    UnsupportedMediaType = "unsupported_media_type", [UNSUPPORTED_MEDIA_TYPE], "Unsupported media type";
    // 422: well-formed, and not acceptable.
    EmptyMessage = "empty_message", [UNPROCESSABLE_ENTITY], "Empty message";
    EmptyPrompt = "empty_prompt", [UNPROCESSABLE_ENTITY], "Empty prompt";
    IdempotencyKeyReused = "idempotency_key_reused", [UNPROCESSABLE_ENTITY], "Idempotency key reused for another request";
    ImageTooLarge = "image_too_large", [UNPROCESSABLE_ENTITY], "Image too large";
    ImageTooSmall = "image_too_small", [UNPROCESSABLE_ENTITY], "Image too small";
    InvalidAmount = "invalid_amount", [UNPROCESSABLE_ENTITY], "Invalid amount";
    InvalidBody = "invalid_body", [UNPROCESSABLE_ENTITY], "Invalid body";
    InvalidClientRequestId = "invalid_client_request_id", [UNPROCESSABLE_ENTITY], "Invalid request id";
    InvalidField = "invalid_field", [UNPROCESSABLE_ENTITY], "Invalid field value";
    InvalidIdempotencyKey = "invalid_idempotency_key", [UNPROCESSABLE_ENTITY], "Invalid Idempotency-Key";
    InvalidImage = "invalid_image", [UNPROCESSABLE_ENTITY], "Image not decodable";
    InvalidReason = "invalid_reason", [UNPROCESSABLE_ENTITY], "Invalid reason";
    InvalidReceiptContact = "invalid_receipt_contact", [UNPROCESSABLE_ENTITY], "Invalid receipt contact";
    InvalidVariantIndex = "invalid_variant_index", [UNPROCESSABLE_ENTITY], "Invalid variant index";
    MessageRejected = "message_rejected", [UNPROCESSABLE_ENTITY], "Message refused by moderation";
    MessageTooLong = "message_too_long", [UNPROCESSABLE_ENTITY], "Message too long";
    NoVariants = "no_variants", [UNPROCESSABLE_ENTITY], "Chat turn has no variants";
    NotSoldForStars = "not_sold_for_stars", [UNPROCESSABLE_ENTITY], "Product not sold for Stars";
    PaymentRejected = "payment_rejected", [UNPROCESSABLE_ENTITY], "Payment refused by the provider";
    PromptTooLong = "prompt_too_long", [UNPROCESSABLE_ENTITY], "Prompt too long";
    SessionWithoutPhoto = "session_without_photo", [UNPROCESSABLE_ENTITY], "Chat session has no photo";
    UnsupportedCurrency = "unsupported_currency", [UNPROCESSABLE_ENTITY], "Unsupported currency";
    UploadExpired = "upload_expired", [UNPROCESSABLE_ENTITY], "Upload expired";
    WrongUpload = "wrong_upload", [UNPROCESSABLE_ENTITY], "Upload of the wrong purpose";
    // 429
    RateLimited = "rate_limited", [TOO_MANY_REQUESTS], "Too many requests";
    TooManyPendingPayments = "too_many_pending_payments", [TOO_MANY_REQUESTS], "Too many unpaid payments";
    // 5xx: ours, or a backing service's.
    InternalError = "internal_error", [INTERNAL_SERVER_ERROR], "Internal error";
    AssistantBadReply = "assistant_bad_reply", [BAD_GATEWAY], "Assistant reply unusable";
    AssistantFailed = "assistant_failed", [BAD_GATEWAY], "Assistant failed";
    AssistantUnavailable = "assistant_unavailable", [SERVICE_UNAVAILABLE], "Assistant unavailable";
    NotReady = "not_ready", [SERVICE_UNAVAILABLE], "Not ready";
    PaymentsUnavailable = "payments_unavailable", [SERVICE_UNAVAILABLE], "Payments unavailable";
    ServiceUnavailable = "service_unavailable", [SERVICE_UNAVAILABLE], "Backing service unavailable";
    StarsUnavailable = "stars_unavailable", [SERVICE_UNAVAILABLE], "Telegram Stars not configured";
    /// An error status that no other code names (actix's own refusals).
    Error = "error", [], "Other error";
}

impl ErrorCode {
    /// Whether `status` is one this code is registered with ([`ErrorCode::Error`] takes any).
    pub fn is_sent_with(self, status: StatusCode) -> bool {
        let statuses = self.statuses();
        statuses.is_empty() || statuses.contains(&status)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> RefOr<Schema> {
        let mut table = String::from(
            "The stable machine code of a problem: clients branch and localise on it, never on \
             `detail`. Each code is sent with the status named here.\n\n\
             | code | status | title |\n|---|---|---|\n",
        );
        for code in Self::ALL {
            let statuses = match code.statuses() {
                [] => "any other".to_owned(),
                s => s
                    .iter()
                    .map(|s| s.as_str().to_owned())
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            table.push_str(&format!(
                "| `{}` | {} | {} |\n",
                code.as_str(),
                statuses,
                code.title()
            ));
        }
        ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::String))
            .description(Some(table.trim_end()))
            .enum_values(Some(Self::ALL.iter().map(|c| c.as_str())))
            .into()
    }
}

impl utoipa::ToSchema for ErrorCode {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ErrorCode")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::Path;

    use utoipa::OpenApi as _;

    use super::ErrorCode;

    #[test]
    fn codes_are_unique_snake_case_and_have_a_status() {
        let mut seen = HashSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "{s} is registered twice");
            assert!(
                s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{s} is not snake_case"
            );
            assert!(!code.title().is_empty(), "{s} has no title");
            if *code != ErrorCode::Error {
                assert!(!code.statuses().is_empty(), "{s} has no status");
            }
            assert!(
                code.statuses()
                    .iter()
                    .all(|st| st.is_client_error() || st.is_server_error()),
                "{s} has a status that is not an error"
            );
        }
    }

    /// Every source file of the crate but the registry itself.
    fn sources() -> Vec<(String, String)> {
        fn walk(dir: &Path, out: &mut Vec<(String, String)>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs")
                    && !path.ends_with("error/codes.rs")
                {
                    let text = std::fs::read_to_string(&path).unwrap();
                    out.push((path.display().to_string(), text));
                }
            }
        }
        let mut out = Vec::new();
        walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut out);
        out
    }

    /// Like Lemmy's `test_errors_used`: a code nobody sends is a code clients handle for
    /// nothing, so it goes.
    #[test]
    fn every_code_is_used_in_src() {
        let sources = sources();
        let unused: Vec<_> = ErrorCode::ALL
            .iter()
            .filter(|code| {
                let needle = format!("ErrorCode::{}", code.variant_name());
                // A request DTO's `#[validate(…, code = "…")]` rule sends its code too
                // (`http::validated` parses it back into the registry).
                let rule = format!("code = \"{}\"", code.as_str());
                !sources.iter().any(|(_, text)| {
                    text.contains(&rule)
                        || text.match_indices(&needle).any(|(at, _)| {
                            !text[at + needle.len()..]
                                .starts_with(|c: char| c.is_alphanumeric() || c == '_')
                        })
                })
            })
            .map(|code| code.variant_name())
            .collect();
        assert!(unused.is_empty(), "never used under src/: {unused:?}");
    }

    /// A validator rule whose code is not in the registry would be answered as `invalid_body`.
    #[test]
    fn every_validation_rule_names_a_registered_code() {
        let mut unknown = Vec::new();
        for (path, text) in sources() {
            for (at, _) in text.match_indices("code = \"") {
                let rest = &text[at + 8..];
                let code = &rest[..rest.find('"').unwrap_or(0)];
                if ErrorCode::parse(code).is_none() {
                    unknown.push(format!("{path}: {code}"));
                }
            }
        }
        assert!(
            unknown.is_empty(),
            "rules with unregistered codes: {unknown:?}"
        );
    }

    /// The text the document shows a client for each answer: every operation's response
    /// descriptions and the shared `Problem` response's own.
    fn response_descriptions(doc: &serde_json::Value) -> String {
        let mut out = String::new();
        for item in doc["paths"].as_object().unwrap().values() {
            for op in item.as_object().unwrap().values() {
                for response in op["responses"].as_object().into_iter().flatten() {
                    out.push_str(response.1["description"].as_str().unwrap_or(""));
                    out.push('\n');
                }
            }
        }
        for response in doc["components"]["responses"]
            .as_object()
            .into_iter()
            .flatten()
        {
            out.push_str(response.1["description"].as_str().unwrap_or(""));
            out.push('\n');
        }
        out
    }

    /// Codes of errors that never reach a client: the bot acknowledges a malformed Stars update
    /// (Telegram would send it again for ever) rather than answering it with a problem.
    const NEVER_ANSWERED: &[ErrorCode] = &[ErrorCode::InvalidUpdate];

    /// Every code is in the document's `ErrorCode` enum, and named (in backticks) by an answer
    /// that can carry it, so that a client learns where each code comes from.
    #[test]
    fn every_code_is_documented_in_the_openapi_document() {
        let doc = serde_json::to_value(crate::openapi::ApiDoc::openapi()).unwrap();
        let listed: HashSet<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
            .as_array()
            .expect("the ErrorCode schema lists the codes")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        let problem = doc["components"]["schemas"]["Problem"].to_string();
        assert!(
            problem.contains(r##""code":{"$ref":"#/components/schemas/ErrorCode"}"##),
            "Problem.code is an ErrorCode: {problem}"
        );
        let descriptions = response_descriptions(&doc);
        let mut undocumented = Vec::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            let named = descriptions.contains(&format!("`{s}`"));
            if !listed.contains(s) || !(named || NEVER_ANSWERED.contains(code)) {
                undocumented.push(s);
            }
        }
        assert!(
            undocumented.is_empty(),
            "not documented on any answer of the OpenAPI document: {undocumented:?}"
        );
    }
}
