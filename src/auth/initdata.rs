//! Telegram Mini App `initData` validation (ARCHITECTURE §4).
//!
//! Pure code: no I/O, no clock, no async. The caller passes the current unix time.
//!
//! Two verification modes:
//! - [`Verifier::BotToken`]: the classic HMAC-SHA256 check of the `hash` parameter.
//! - [`Verifier::ThirdParty`]: the Ed25519 check of the `signature` parameter against
//!   Telegram's public key, for a deployment that knows only the bot id.
//!
//! Order of checks in [`validate`]: parse → signature → `auth_date` → freshness → typed
//! fields. Nothing from the payload is trusted (or even JSON-parsed) before the
//! signature has been verified.

use std::fmt;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use ed25519_dalek::{Signature, VerifyingKey};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Deserializer, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Telegram's production Ed25519 public key for third-party initData validation.
pub const PROD_PUBLIC_KEY_HEX: &str =
    "e7bf03a2fa4602af4580703d88dda5bb59f32ed8b02a56c187fe7d34caed242d";
/// Telegram's test-environment Ed25519 public key for third-party initData validation.
pub const TEST_PUBLIC_KEY_HEX: &str =
    "40055058a4ee38156a06562e52eece92a771bcd8346a8c4615cb7376eddf72ec";

/// Default maximum age of `auth_date` (one day).
pub const DEFAULT_MAX_AGE_SECS: u64 = 86_400;
/// Default tolerated clock skew for an `auth_date` in the future.
pub const DEFAULT_FUTURE_SKEW_SECS: u64 = 60;

/// The key of the HMAC that derives the secret key from the bot token.
const WEB_APP_DATA: &[u8] = b"WebAppData";

/// base64url, padding optional, strict about trailing bits.
const BASE64_URL_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// How initData is authenticated.
#[derive(Clone)]
pub enum Verifier {
    /// HMAC-SHA256 check of `hash` with a secret derived from the bot token.
    BotToken(String),
    /// Ed25519 check of `signature` with Telegram's public key and the bot id.
    ThirdParty {
        bot_id: i64,
        public_key: VerifyingKey,
    },
}

impl fmt::Debug for Verifier {
    // Hand-written so the bot token never ends up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BotToken(_) => f.debug_tuple("BotToken").field(&"<redacted>").finish(),
            Self::ThirdParty { bot_id, public_key } => f
                .debug_struct("ThirdParty")
                .field("bot_id", bot_id)
                .field("public_key", &hex::encode(public_key.as_bytes()))
                .finish(),
        }
    }
}

impl Verifier {
    /// Resolves `"prod"`/`"production"`, `"test"` (case-insensitive) or 64 hex characters
    /// to an Ed25519 public key. Surrounding whitespace is ignored.
    pub fn public_key_from_name_or_hex(s: &str) -> Result<VerifyingKey, InitDataError> {
        let s = s.trim();
        let hex_str = if s.eq_ignore_ascii_case("prod") || s.eq_ignore_ascii_case("production") {
            PROD_PUBLIC_KEY_HEX
        } else if s.eq_ignore_ascii_case("test") {
            TEST_PUBLIC_KEY_HEX
        } else {
            s
        };
        if hex_str.len() != 64 {
            return Err(InitDataError::InvalidPublicKey);
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_str, &mut bytes).map_err(|_| InitDataError::InvalidPublicKey)?;
        VerifyingKey::from_bytes(&bytes).map_err(|_| InitDataError::InvalidPublicKey)
    }
}

/// Freshness options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Maximum age of `auth_date` in seconds; `0` disables the expiry check.
    pub max_age_secs: u64,
    /// How far `auth_date` may lie in the future (clock skew) before it is rejected.
    pub future_skew_secs: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_age_secs: DEFAULT_MAX_AGE_SECS,
            future_skew_secs: DEFAULT_FUTURE_SKEW_SECS,
        }
    }
}

/// A Telegram user as sent in `user` / `receiver`.
///
/// Unknown keys are ignored. `id` accepts a JSON integer or a string of digits, and the
/// boolean flags accept `true`/`false` or the strings `"true"`/`"false"` (some clients,
/// e.g. aiogram's test data, send them as strings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebAppUser {
    #[serde(deserialize_with = "de_i64")]
    pub id: i64,
    #[serde(
        default,
        deserialize_with = "de_opt_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub is_bot: Option<bool>,
    pub first_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language_code: Option<String>,
    #[serde(
        default,
        deserialize_with = "de_opt_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub is_premium: Option<bool>,
    #[serde(
        default,
        deserialize_with = "de_opt_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub added_to_attachment_menu: Option<bool>,
    #[serde(
        default,
        deserialize_with = "de_opt_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub allows_write_to_pm: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub photo_url: Option<String>,
}

/// The chat as sent in `chat`. Unknown keys are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebAppChat {
    #[serde(deserialize_with = "de_i64")]
    pub id: i64,
    #[serde(rename = "type")]
    pub r#type: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub photo_url: Option<String>,
}

/// Validated, parsed initData.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitData {
    pub user: Option<WebAppUser>,
    pub receiver: Option<WebAppUser>,
    pub chat: Option<WebAppChat>,
    pub chat_type: Option<String>,
    /// Kept as a string even when it looks numeric.
    pub chat_instance: Option<String>,
    pub start_param: Option<String>,
    pub can_send_after: Option<i64>,
    pub query_id: Option<String>,
    pub auth_date: i64,
    /// The hex HMAC as received (not checked in third-party mode).
    pub hash: Option<String>,
    /// The base64url Ed25519 signature as received (not checked in bot-token mode).
    pub signature: Option<String>,
}

/// Why initData was rejected. [`InitDataError::reason`] gives a stable machine code.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum InitDataError {
    /// Not valid `application/x-www-form-urlencoded` (bad `%XX` escape or invalid UTF-8).
    #[error("malformed initData: {0}")]
    Malformed(&'static str),
    #[error("initData contains an empty key")]
    EmptyKey,
    #[error("initData contains the key {0:?} more than once")]
    DuplicateKey(String),
    #[error("initData has no hash")]
    MissingHash,
    #[error("initData hash does not match")]
    HashMismatch,
    #[error("initData has no signature")]
    MissingSignature,
    #[error("initData signature does not verify")]
    SignatureMismatch,
    #[error("initData has no auth_date")]
    MissingAuthDate,
    #[error("initData auth_date is not a non-negative integer")]
    InvalidAuthDate,
    #[error("initData expired: auth_date {auth_date} + max age {max_age_secs}s < now {now}")]
    Expired {
        auth_date: i64,
        max_age_secs: u64,
        now: i64,
    },
    #[error("initData auth_date {auth_date} is too far in the future (now {now})")]
    AuthDateInFuture { auth_date: i64, now: i64 },
    #[error("initData field {field:?} is invalid: {detail}")]
    InvalidField { field: &'static str, detail: String },
    #[error("the bot token is empty")]
    EmptyBotToken,
    #[error("invalid Ed25519 public key (expected \"prod\", \"test\" or 64 hex characters)")]
    InvalidPublicKey,
}

impl InitDataError {
    /// A stable snake_case code for this variant (for logs and metrics labels).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::EmptyKey => "empty_key",
            Self::DuplicateKey(_) => "duplicate_key",
            Self::MissingHash => "missing_hash",
            Self::HashMismatch => "hash_mismatch",
            Self::MissingSignature => "missing_signature",
            Self::SignatureMismatch => "signature_mismatch",
            Self::MissingAuthDate => "missing_auth_date",
            Self::InvalidAuthDate => "invalid_auth_date",
            Self::Expired { .. } => "expired",
            Self::AuthDateInFuture { .. } => "auth_date_in_future",
            Self::InvalidField { .. } => "invalid_field",
            Self::EmptyBotToken => "empty_bot_token",
            Self::InvalidPublicKey => "invalid_public_key",
        }
    }

    /// `true` only for [`InitDataError::Expired`] (maps to `init_data_expired` in the API).
    pub fn is_expired(&self) -> bool {
        matches!(self, Self::Expired { .. })
    }
}

/// Validates `raw` initData and returns its parsed contents.
///
/// `now_unix` is the current unix time in seconds.
pub fn validate(
    raw: &str,
    verifier: &Verifier,
    opts: &Options,
    now_unix: i64,
) -> Result<InitData, InitDataError> {
    let pairs = parse_pairs(raw)?;

    match verifier {
        Verifier::BotToken(token) => verify_hmac(&pairs, token)?,
        Verifier::ThirdParty { bot_id, public_key } => {
            verify_ed25519(&pairs, *bot_id, public_key)?;
        }
    }

    let auth_date = match get(&pairs, "auth_date") {
        None => return Err(InitDataError::MissingAuthDate),
        Some(v) => parse_unsigned_i64(v).ok_or(InitDataError::InvalidAuthDate)?,
    };
    check_freshness(auth_date, opts, now_unix)?;

    let can_send_after = match get(&pairs, "can_send_after") {
        None => None,
        Some(v) => Some(
            parse_unsigned_i64(v).ok_or_else(|| InitDataError::InvalidField {
                field: "can_send_after",
                detail: "not a non-negative integer".to_owned(),
            })?,
        ),
    };

    Ok(InitData {
        user: parse_json_field(&pairs, "user")?,
        receiver: parse_json_field(&pairs, "receiver")?,
        chat: parse_json_field(&pairs, "chat")?,
        chat_type: get_owned(&pairs, "chat_type"),
        chat_instance: get_owned(&pairs, "chat_instance"),
        start_param: get_owned(&pairs, "start_param"),
        can_send_after,
        query_id: get_owned(&pairs, "query_id"),
        auth_date,
        hash: get_owned(&pairs, "hash"),
        signature: get_owned(&pairs, "signature"),
    })
}

/// Builds an initData string from decoded `pairs` (kept in the given order, properly
/// form-urlencoded) and appends a correct `hash` for `bot_token`.
///
/// Any `hash` pair in `pairs` is dropped (it would be replaced anyway). Duplicate or empty
/// keys are not checked here; [`validate`] would reject the result.
pub fn sign(bot_token: &str, pairs: &[(&str, &str)]) -> String {
    let mut sorted: Vec<(&str, &str)> = pairs
        .iter()
        .copied()
        .filter(|(k, _)| *k != "hash")
        .collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mac = data_check_mac(bot_token, sorted.iter().copied());
    let hash = hex::encode(mac);

    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs.iter().filter(|(k, _)| *k != "hash") {
        ser.append_pair(k, v);
    }
    ser.append_pair("hash", &hash);
    ser.finish()
}

// ---------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------

/// Parses `raw` into decoded pairs sorted by key, rejecting empty and duplicate keys.
///
/// Empty `&`-separated segments are skipped (as the WHATWG urlencoded parser does). A
/// segment without `=` is a key with an empty value.
fn parse_pairs(raw: &str) -> Result<Vec<(String, String)>, InitDataError> {
    let mut pairs = Vec::new();
    for segment in raw.split('&') {
        if segment.is_empty() {
            continue;
        }
        let (k, v) = segment.split_once('=').unwrap_or((segment, ""));
        let key = decode_component(k)?;
        if key.is_empty() {
            return Err(InitDataError::EmptyKey);
        }
        let value = decode_component(v)?;
        pairs.push((key, value));
    }
    // Stable sort; equal keys end up adjacent.
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(w) = pairs.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(InitDataError::DuplicateKey(w[0].0.clone()));
    }
    Ok(pairs)
}

/// Decodes one form-urlencoded component: `+` → space, `%XX` → byte, then strict UTF-8.
fn decode_component(s: &str) -> Result<String, InitDataError> {
    let bytes = s.as_bytes();
    if !bytes.iter().any(|&b| b == b'%' || b == b'+') {
        return Ok(s.to_owned());
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex_val);
                let lo = bytes.get(i + 2).copied().and_then(hex_val);
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push((hi << 4) | lo),
                    _ => return Err(InitDataError::Malformed("invalid percent-encoding")),
                }
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| InitDataError::Malformed("invalid UTF-8"))
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Strict non-negative decimal integer: ASCII digits only (no sign, no spaces).
fn parse_unsigned_i64(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .binary_search_by(|(k, _)| k.as_str().cmp(key))
        .ok()
        .map(|i| pairs[i].1.as_str())
}

fn get_owned(pairs: &[(String, String)], key: &str) -> Option<String> {
    get(pairs, key).map(str::to_owned)
}

fn parse_json_field<T: for<'de> Deserialize<'de>>(
    pairs: &[(String, String)],
    field: &'static str,
) -> Result<Option<T>, InitDataError> {
    match get(pairs, field) {
        None => Ok(None),
        Some(v) => serde_json::from_str(v)
            .map(Some)
            .map_err(|e| InitDataError::InvalidField {
                field,
                detail: e.to_string(),
            }),
    }
}

// ---------------------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------------------

/// HMAC-SHA256(HMAC-SHA256("WebAppData", token), data_check_string) where the pairs are
/// already sorted by key and `hash` excluded.
fn data_check_mac<'a>(
    bot_token: &str,
    sorted_pairs: impl Iterator<Item = (&'a str, &'a str)>,
) -> [u8; 32] {
    let mut secret = <HmacSha256 as Mac>::new_from_slice(WEB_APP_DATA)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    secret.update(bot_token.as_bytes());
    let secret_key = secret.finalize().into_bytes();

    let mut mac = <HmacSha256 as Mac>::new_from_slice(&secret_key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    for (i, (k, v)) in sorted_pairs.enumerate() {
        if i > 0 {
            mac.update(b"\n");
        }
        mac.update(k.as_bytes());
        mac.update(b"=");
        mac.update(v.as_bytes());
    }
    mac.finalize().into_bytes().into()
}

fn verify_hmac(pairs: &[(String, String)], bot_token: &str) -> Result<(), InitDataError> {
    if bot_token.is_empty() {
        return Err(InitDataError::EmptyBotToken);
    }
    let hash_hex = get(pairs, "hash").ok_or(InitDataError::MissingHash)?;
    // Not hex or the wrong length: a mismatch, like any other wrong hash.
    let received = hex::decode(hash_hex).map_err(|_| InitDataError::HashMismatch)?;
    let expected = data_check_mac(
        bot_token,
        pairs
            .iter()
            .filter(|(k, _)| k != "hash")
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    // `ct_eq` on slices of different lengths is false.
    if bool::from(expected.as_slice().ct_eq(received.as_slice())) {
        Ok(())
    } else {
        Err(InitDataError::HashMismatch)
    }
}

fn verify_ed25519(
    pairs: &[(String, String)],
    bot_id: i64,
    public_key: &VerifyingKey,
) -> Result<(), InitDataError> {
    let sig_b64 = get(pairs, "signature").ok_or(InitDataError::MissingSignature)?;
    let sig_bytes = BASE64_URL_LENIENT
        .decode(sig_b64)
        .map_err(|_| InitDataError::SignatureMismatch)?;
    let sig_arr: [u8; 64] = sig_bytes
        .as_slice()
        .try_into()
        .map_err(|_| InitDataError::SignatureMismatch)?;
    let signature = Signature::from_bytes(&sig_arr);

    let mut message = format!("{bot_id}:WebAppData\n").into_bytes();
    let mut first = true;
    for (k, v) in pairs
        .iter()
        .filter(|(k, _)| k != "hash" && k != "signature")
    {
        if !first {
            message.push(b'\n');
        }
        first = false;
        message.extend_from_slice(k.as_bytes());
        message.push(b'=');
        message.extend_from_slice(v.as_bytes());
    }
    public_key
        .verify_strict(&message, &signature)
        .map_err(|_| InitDataError::SignatureMismatch)
}

fn check_freshness(auth_date: i64, opts: &Options, now: i64) -> Result<(), InitDataError> {
    let (auth, now_w) = (i128::from(auth_date), i128::from(now));
    if auth > now_w + i128::from(opts.future_skew_secs) {
        return Err(InitDataError::AuthDateInFuture { auth_date, now });
    }
    if opts.max_age_secs > 0 && now_w > auth + i128::from(opts.max_age_secs) {
        return Err(InitDataError::Expired {
            auth_date,
            max_age_secs: opts.max_age_secs,
            now,
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Lenient JSON scalars
// ---------------------------------------------------------------------------------------

fn de_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = i64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an i64 or a string holding an i64")
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::custom("integer out of range for i64"))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<i64, E> {
            let digits = v.strip_prefix('-').unwrap_or(v);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(E::invalid_value(serde::de::Unexpected::Str(v), &self));
            }
            v.parse()
                .map_err(|_| E::invalid_value(serde::de::Unexpected::Str(v), &self))
        }
    }
    d.deserialize_any(V)
}

fn de_opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = Option<bool>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a boolean, \"true\", \"false\" or null")
        }
        fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            match v {
                "true" => Ok(Some(true)),
                "false" => Ok(Some(false)),
                _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
            }
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const VECTORS_PATH: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/testdata/initdata_vectors.json"
    );

    const TOKEN: &str = "5768337691:AAH5YkoiEuPk8-FZa32hStHTqXiLPtAEhx8";
    const AUTH: i64 = 1_700_000_000;

    #[derive(Debug, Deserialize)]
    struct Vector {
        id: String,
        kind: String,
        bot_token: Option<String>,
        bot_id: Option<i64>,
        public_key_hex: Option<String>,
        init_data: String,
        now_unix: Option<i64>,
        max_age_seconds: u64,
        expect_valid: bool,
        note: String,
    }

    fn load_vectors() -> Vec<Vector> {
        let text = std::fs::read_to_string(VECTORS_PATH)
            .unwrap_or_else(|e| panic!("reading {VECTORS_PATH}: {e}"));
        serde_json::from_str(&text).unwrap()
    }

    fn wall_clock() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            .try_into()
            .unwrap()
    }

    fn verifier_for(v: &Vector) -> Verifier {
        match v.kind.as_str() {
            "hmac" => Verifier::BotToken(v.bot_token.clone().unwrap()),
            "ed25519" => Verifier::ThirdParty {
                bot_id: v.bot_id.unwrap(),
                public_key: Verifier::public_key_from_name_or_hex(
                    v.public_key_hex.as_deref().unwrap(),
                )
                .unwrap(),
            },
            other => panic!("unknown kind {other}"),
        }
    }

    /// The reason each invalid vector must fail with, read off its `note`.
    fn expected_reason(id: &str) -> Option<&'static str> {
        Some(match id {
            "go-expired-1s" => "expired",
            "go-tampered-suffix" => "hash_mismatch",
            "tma-expired-10s" => "expired",
            "tma-expired-default-1d" => "expired",
            "tma-wrong-token" => "hash_mismatch",
            "tma-3rd-wrong-botid" => "signature_mismatch",
            "tma-3rd-expired-10s" => "expired",
            "aiogram-hmac-2" => "hash_mismatch",
            "aiogram-hmac-3" => "hash_mismatch",
            "aiogram-hmac-4" => "missing_hash",
            "aiogram-ed25519-1" => "signature_mismatch",
            "aiogram-ed25519-2" => "missing_signature",
            _ => return None,
        })
    }

    fn opts(max_age_secs: u64) -> Options {
        Options {
            max_age_secs,
            future_skew_secs: DEFAULT_FUTURE_SKEW_SECS,
        }
    }

    #[test]
    fn vectors_agree_with_expect_valid() {
        let vectors = load_vectors();
        assert_eq!(vectors.len(), 20);
        for v in &vectors {
            let verifier = verifier_for(v);
            // null now: the vector is about the signature only (all such vectors have
            // max_age 0), so the real clock is the honest choice; it is past every
            // auth_date in the file, so the future-skew rule cannot trigger either.
            if v.now_unix.is_none() {
                assert_eq!(v.max_age_seconds, 0, "{}: null now with a max age", v.id);
            }
            let now = v.now_unix.unwrap_or_else(wall_clock);
            let got = validate(&v.init_data, &verifier, &opts(v.max_age_seconds), now);
            if v.expect_valid {
                let data = got
                    .unwrap_or_else(|e| panic!("{} should be valid, got {e:?} ({})", v.id, v.note));
                assert!(data.auth_date > 0, "{}", v.id);
            } else {
                let Err(err) = got else {
                    panic!("{} should be invalid ({})", v.id, v.note);
                };
                let want = expected_reason(&v.id)
                    .unwrap_or_else(|| panic!("no expected reason recorded for {}", v.id));
                assert_eq!(err.reason(), want, "{}: {err:?} ({})", v.id, v.note);
                if want == "expired" {
                    assert!(err.is_expired());
                    // The signature must be good: at auth_date itself it validates.
                    let InitDataError::Expired { auth_date, .. } = err else {
                        unreachable!()
                    };
                    validate(&v.init_data, &verifier, &opts(v.max_age_seconds), auth_date)
                        .unwrap_or_else(|e| panic!("{}: not fresh-valid: {e:?}", v.id));
                }
            }
        }
    }

    #[test]
    fn vector_contents_parse_as_expected() {
        let vectors = load_vectors();
        let by_id = |id: &str| vectors.iter().find(|v| v.id == id).unwrap();

        let v = by_id("go-valid");
        let d = validate(&v.init_data, &verifier_for(v), &opts(0), wall_clock()).unwrap();
        let u = d.user.unwrap();
        assert_eq!(u.id, 279_058_397);
        assert_eq!(u.first_name, "Vladislav");
        assert_eq!(u.is_premium, Some(true));
        assert_eq!(d.query_id.as_deref(), Some("AAHdF6IQAAAAAN0XohDhrOrc"));
        assert_eq!(d.auth_date, 1_662_771_648);

        let v = by_id("tma-valid");
        let d = validate(&v.init_data, &verifier_for(v), &opts(0), wall_clock()).unwrap();
        assert_eq!(d.user.as_ref().unwrap().first_name, "Vladislav + - ? /");
        assert_eq!(
            d.user.as_ref().unwrap().photo_url.as_deref(),
            Some("https://t.me/i/userpic/320/4FPEE4tmP3ATHa57u6MqTDih13LTOiMoKoLDRG4PnSA.svg")
        );
        assert_eq!(d.chat_instance.as_deref(), Some("8134722200314281151"));
        assert!(d.signature.is_some());

        let v = by_id("tma-sign-all-fields");
        let d = validate(&v.init_data, &verifier_for(v), &opts(0), wall_clock()).unwrap();
        assert_eq!(d.can_send_after, Some(10_000));
        assert_eq!(d.chat_type.as_deref(), Some("sender"));
        assert_eq!(d.chat_instance.as_deref(), Some("888"));
        assert_eq!(d.start_param.as_deref(), Some("debug"));
        assert_eq!(d.auth_date, 1);
        let chat = d.chat.unwrap();
        assert_eq!(
            (chat.id, chat.r#type.as_str(), chat.title.as_str()),
            (1, "group", "chat-title")
        );
        assert_eq!(chat.username.as_deref(), Some("my-chat"));
        let r = d.receiver.unwrap();
        assert_eq!(
            (r.id, r.is_bot, r.added_to_attachment_menu),
            (991, Some(false), Some(false))
        );
        assert_eq!(d.user.unwrap().is_bot, Some(true));

        // Python-style '+' encoding, string-typed id/flags and a surrogate-pair escape.
        let v = by_id("aiogram-hmac-1");
        let d = validate(&v.init_data, &verifier_for(v), &opts(0), wall_clock()).unwrap();
        let u = d.user.unwrap();
        assert_eq!(u.id, 123_456_789);
        assert_eq!(
            u.last_name.as_deref(),
            Some("PlaceholderLastName \u{1F1FA}\u{1F1E6}")
        );
        assert_eq!(u.is_premium, Some(true));
        assert_eq!(u.allows_write_to_pm, Some(true));
    }

    #[test]
    fn sign_reproduces_tma_sign_vector_exactly() {
        let vectors = load_vectors();
        let v = vectors
            .iter()
            .find(|v| v.id == "tma-sign-all-fields")
            .unwrap();
        let decoded: Vec<(String, String)> = form_urlencoded::parse(v.init_data.as_bytes())
            .into_owned()
            .filter(|(k, _)| k != "hash")
            .collect();
        let pairs: Vec<(&str, &str)> = decoded
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(sign(v.bot_token.as_deref().unwrap(), &pairs), v.init_data);
    }

    fn sample_pairs() -> Vec<(&'static str, &'static str)> {
        vec![
            ("query_id", "AAHdF6IQAAAAAN0XohDhrOrc"),
            ("user", r#"{"id":42,"first_name":"Ann","username":"ann"}"#),
            ("auth_date", "1700000000"),
        ]
    }

    #[test]
    fn sign_validate_round_trip() {
        let raw = sign(TOKEN, &sample_pairs());
        let d = validate(
            &raw,
            &Verifier::BotToken(TOKEN.into()),
            &Options::default(),
            AUTH,
        )
        .unwrap();
        assert_eq!(d.user.unwrap().username.as_deref(), Some("ann"));
        assert_eq!(d.auth_date, AUTH);
        assert_eq!(d.hash.unwrap().len(), 64);
    }

    #[test]
    fn sign_ignores_supplied_hash_and_order_does_not_matter() {
        let mut pairs = sample_pairs();
        pairs.push(("hash", "deadbeef"));
        let raw = sign(TOKEN, &pairs);
        assert_eq!(raw.matches("hash=").count(), 1);
        // Re-ordering the pairs of a signed string keeps it valid.
        let mut segs: Vec<&str> = raw.split('&').collect();
        segs.reverse();
        let reordered = segs.join("&");
        validate(
            &reordered,
            &Verifier::BotToken(TOKEN.into()),
            &Options::default(),
            AUTH,
        )
        .unwrap();
    }

    #[test]
    fn tampered_value_is_rejected() {
        let raw = sign(TOKEN, &sample_pairs());
        let tampered = raw.replace("%22id%22%3A42", "%22id%22%3A43");
        assert_ne!(raw, tampered);
        let e = validate(
            &tampered,
            &Verifier::BotToken(TOKEN.into()),
            &Options::default(),
            AUTH,
        )
        .unwrap_err();
        assert_eq!(e, InitDataError::HashMismatch);
        // Adding a pair also breaks it.
        let added = format!("start_param=x&{raw}");
        let e = validate(
            &added,
            &Verifier::BotToken(TOKEN.into()),
            &Options::default(),
            AUTH,
        )
        .unwrap_err();
        assert_eq!(e.reason(), "hash_mismatch");
    }

    #[test]
    fn duplicate_key_is_rejected() {
        let raw = sign(TOKEN, &sample_pairs());
        let dup = format!("{raw}&query_id=other");
        let e = validate(
            &dup,
            &Verifier::BotToken(TOKEN.into()),
            &Options::default(),
            AUTH,
        )
        .unwrap_err();
        assert_eq!(e, InitDataError::DuplicateKey("query_id".into()));
        assert_eq!(e.reason(), "duplicate_key");
        // Duplicates after decoding count too, and so does a second hash.
        let dup = format!("{raw}&query%5Fid=x");
        let e = validate(
            &dup,
            &Verifier::BotToken(TOKEN.into()),
            &Options::default(),
            AUTH,
        )
        .unwrap_err();
        assert_eq!(e.reason(), "duplicate_key");
        let dup = format!("{raw}&hash=00");
        let e = validate(
            &dup,
            &Verifier::BotToken(TOKEN.into()),
            &Options::default(),
            AUTH,
        )
        .unwrap_err();
        assert_eq!(e, InitDataError::DuplicateKey("hash".into()));
    }

    #[test]
    fn empty_key_is_rejected() {
        let raw = sign(TOKEN, &sample_pairs());
        for bad in [format!("=x&{raw}"), format!("{raw}&="), format!("{raw}&=1")] {
            let e = validate(
                &bad,
                &Verifier::BotToken(TOKEN.into()),
                &Options::default(),
                AUTH,
            )
            .unwrap_err();
            assert_eq!(e, InitDataError::EmptyKey, "{bad}");
            assert_eq!(e.reason(), "empty_key");
        }
    }

    #[test]
    fn malformed_encoding_is_rejected() {
        let t = Verifier::BotToken(TOKEN.into());
        for bad in [
            "a=%zz&hash=00",
            "a=%4&hash=00",
            "a=%&hash=00",
            "a=%ff&hash=00",
            "%C3=1",
        ] {
            let e = validate(bad, &t, &Options::default(), AUTH).unwrap_err();
            assert_eq!(e.reason(), "malformed", "{bad}");
        }
    }

    #[test]
    fn missing_hash_is_rejected() {
        let raw = sign(TOKEN, &sample_pairs());
        let no_hash = raw
            .split('&')
            .filter(|s| !s.starts_with("hash="))
            .collect::<Vec<_>>()
            .join("&");
        let e = validate(
            &no_hash,
            &Verifier::BotToken(TOKEN.into()),
            &Options::default(),
            AUTH,
        )
        .unwrap_err();
        assert_eq!(e, InitDataError::MissingHash);
        let e = validate(
            "",
            &Verifier::BotToken(TOKEN.into()),
            &Options::default(),
            AUTH,
        )
        .unwrap_err();
        assert_eq!(e.reason(), "missing_hash");
    }

    #[test]
    fn hash_not_hex_or_wrong_length_is_a_mismatch() {
        let raw = sign(TOKEN, &sample_pairs());
        let (body, hash) = raw.rsplit_once("&hash=").unwrap();
        let t = Verifier::BotToken(TOKEN.into());
        for h in [
            &hash[..62],
            &format!("{hash}00")[..],
            "zz",
            "",
            &hash.to_uppercase()[..],
        ] {
            let r = validate(&format!("{body}&hash={h}"), &t, &Options::default(), AUTH);
            if h == hash.to_uppercase() {
                r.unwrap(); // hex case does not matter
            } else {
                assert_eq!(r.unwrap_err(), InitDataError::HashMismatch, "{h}");
            }
        }
    }

    #[test]
    fn wrong_bot_token_is_rejected() {
        let raw = sign(TOKEN, &sample_pairs());
        let other = format!("{TOKEN}A");
        let e = validate(&raw, &Verifier::BotToken(other), &Options::default(), AUTH).unwrap_err();
        assert_eq!(e, InitDataError::HashMismatch);
        let e = validate(
            &raw,
            &Verifier::BotToken(String::new()),
            &Options::default(),
            AUTH,
        )
        .unwrap_err();
        assert_eq!(e.reason(), "empty_bot_token");
    }

    #[test]
    fn expiry_exactly_at_limit_ok_one_second_later_expired() {
        let raw = sign(TOKEN, &sample_pairs());
        let t = Verifier::BotToken(TOKEN.into());
        let o = opts(3600);
        validate(&raw, &t, &o, AUTH + 3600).unwrap();
        let e = validate(&raw, &t, &o, AUTH + 3601).unwrap_err();
        assert!(e.is_expired());
        assert_eq!(e.reason(), "expired");
        assert_eq!(
            e,
            InitDataError::Expired {
                auth_date: AUTH,
                max_age_secs: 3600,
                now: AUTH + 3601
            }
        );
        // max_age 0 disables expiry entirely.
        validate(&raw, &t, &opts(0), i64::MAX).unwrap();
        // Default is one day.
        validate(&raw, &t, &Options::default(), AUTH + 86_400).unwrap();
        assert!(
            validate(&raw, &t, &Options::default(), AUTH + 86_401)
                .unwrap_err()
                .is_expired()
        );
        // Huge max age does not overflow.
        validate(&raw, &t, &opts(u64::MAX), i64::MAX).unwrap();
    }

    #[test]
    fn future_skew_60_accepted_61_rejected() {
        let raw = sign(TOKEN, &sample_pairs());
        let t = Verifier::BotToken(TOKEN.into());
        validate(&raw, &t, &Options::default(), AUTH - 60).unwrap();
        let e = validate(&raw, &t, &Options::default(), AUTH - 61).unwrap_err();
        assert_eq!(
            e,
            InitDataError::AuthDateInFuture {
                auth_date: AUTH,
                now: AUTH - 61
            }
        );
        assert_eq!(e.reason(), "auth_date_in_future");
        assert!(!e.is_expired());
        // Applies even when expiry is off.
        assert_eq!(
            validate(&raw, &t, &opts(0), AUTH - 61)
                .unwrap_err()
                .reason(),
            "auth_date_in_future"
        );
    }

    #[test]
    fn freshness_is_checked_only_after_the_signature() {
        let raw = sign(TOKEN, &sample_pairs());
        let e = validate(
            &raw,
            &Verifier::BotToken("1:x".into()),
            &opts(1),
            AUTH + 10_000,
        )
        .unwrap_err();
        assert_eq!(e.reason(), "hash_mismatch");
    }

    #[test]
    fn auth_date_missing_or_invalid() {
        let t = Verifier::BotToken(TOKEN.into());
        let raw = sign(TOKEN, &[("query_id", "q")]);
        assert_eq!(
            validate(&raw, &t, &opts(0), AUTH).unwrap_err().reason(),
            "missing_auth_date"
        );
        for bad in ["", "abc", "-5", "+5", " 5", "1.5", "99999999999999999999"] {
            let raw = sign(TOKEN, &[("auth_date", bad)]);
            assert_eq!(
                validate(&raw, &t, &opts(0), AUTH).unwrap_err(),
                InitDataError::InvalidAuthDate,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn plus_and_percent20_both_decode_to_space() {
        let a = sign(
            TOKEN,
            &[("auth_date", "1700000000"), ("start_param", "a b")],
        );
        assert!(a.contains("start_param=a+b"), "{a}");
        let b = a.replace("a+b", "a%20b");
        let t = Verifier::BotToken(TOKEN.into());
        for raw in [&a, &b] {
            let d = validate(raw, &t, &Options::default(), AUTH).unwrap();
            assert_eq!(d.start_param.as_deref(), Some("a b"));
        }
        // A literal plus must be %2B.
        let c = sign(
            TOKEN,
            &[("auth_date", "1700000000"), ("start_param", "a+b")],
        );
        assert!(c.contains("a%2Bb"));
        let d = validate(&c, &t, &Options::default(), AUTH).unwrap();
        assert_eq!(d.start_param.as_deref(), Some("a+b"));
    }

    #[test]
    fn value_may_contain_equals_sign_and_key_without_value() {
        let t = Verifier::BotToken(TOKEN.into());
        let raw = sign(
            TOKEN,
            &[
                ("auth_date", "1700000000"),
                ("start_param", "a=b=c"),
                ("flag", ""),
            ],
        );
        // Hand-build with a raw '=' inside the value and a bare key: same decoded pairs.
        let (_, hash) = raw.rsplit_once("&hash=").unwrap();
        let hand = format!("auth_date=1700000000&start_param=a=b=c&flag&hash={hash}");
        let d = validate(&hand, &t, &Options::default(), AUTH).unwrap();
        assert_eq!(d.start_param.as_deref(), Some("a=b=c"));
    }

    #[test]
    fn user_json_with_unknown_keys_is_accepted() {
        let user = r#"{"id":7,"first_name":"Zoë","is_bot":false,"favourite_colour":"teal","nested":{"a":[1,2]},"photo_url":null,"is_premium":null}"#;
        let raw = sign(TOKEN, &[("user", user), ("auth_date", "1700000000")]);
        let d = validate(
            &raw,
            &Verifier::BotToken(TOKEN.into()),
            &Options::default(),
            AUTH,
        )
        .unwrap();
        let u = d.user.unwrap();
        assert_eq!(
            (u.id, u.first_name.as_str(), u.is_bot),
            (7, "Zoë", Some(false))
        );
        assert_eq!((u.photo_url, u.is_premium), (None, None));
    }

    #[test]
    fn malformed_json_fields_are_invalid_field() {
        let t = Verifier::BotToken(TOKEN.into());
        let cases = [
            ("user", "{not json", "user"),
            ("user", r#"{"first_name":"x"}"#, "user"),
            ("user", r#"{"id":1.5,"first_name":"x"}"#, "user"),
            (
                "user",
                r#"{"id":9223372036854775808,"first_name":"x"}"#,
                "user",
            ),
            (
                "user",
                r#"{"id":1,"first_name":"x","is_premium":"yes"}"#,
                "user",
            ),
            ("receiver", "[]", "receiver"),
            ("chat", r#"{"id":1,"type":"group"}"#, "chat"),
            ("can_send_after", "soon", "can_send_after"),
        ];
        for (k, v, field) in cases {
            let raw = sign(TOKEN, &[(k, v), ("auth_date", "1700000000")]);
            let e = validate(&raw, &t, &Options::default(), AUTH).unwrap_err();
            assert_eq!(e.reason(), "invalid_field", "{k}={v}");
            assert!(matches!(e, InitDataError::InvalidField { field: f, .. } if f == field));
        }
        // Negative chat ids (groups) are fine.
        let raw = sign(
            TOKEN,
            &[
                (
                    "chat",
                    r#"{"id":-1001234567890,"type":"supergroup","title":"t"}"#,
                ),
                ("auth_date", "1700000000"),
            ],
        );
        let d = validate(&raw, &t, &Options::default(), AUTH).unwrap();
        assert_eq!(d.chat.unwrap().id, -1_001_234_567_890);
    }

    #[test]
    fn chat_instance_numeric_looking_stays_a_string() {
        let big = "-8134722200314281151999999";
        let raw = sign(
            TOKEN,
            &[("chat_instance", big), ("auth_date", "1700000000")],
        );
        let d = validate(
            &raw,
            &Verifier::BotToken(TOKEN.into()),
            &Options::default(),
            AUTH,
        )
        .unwrap();
        assert_eq!(d.chat_instance.as_deref(), Some(big));
        let raw = sign(
            TOKEN,
            &[("chat_instance", "007"), ("auth_date", "1700000000")],
        );
        let d = validate(
            &raw,
            &Verifier::BotToken(TOKEN.into()),
            &Options::default(),
            AUTH,
        )
        .unwrap();
        assert_eq!(d.chat_instance.as_deref(), Some("007"));
    }

    #[test]
    fn third_party_prod_and_test_keys() {
        let vectors = load_vectors();
        let v = vectors.iter().find(|v| v.id == "tma-3rd-valid").unwrap();
        assert_eq!(v.public_key_hex.as_deref(), Some(PROD_PUBLIC_KEY_HEX));
        let prod = Verifier::public_key_from_name_or_hex("prod").unwrap();
        assert_eq!(
            prod,
            Verifier::public_key_from_name_or_hex("production").unwrap()
        );
        assert_eq!(
            prod,
            Verifier::public_key_from_name_or_hex(" PROD ").unwrap()
        );
        assert_eq!(
            prod,
            Verifier::public_key_from_name_or_hex(PROD_PUBLIC_KEY_HEX).unwrap()
        );
        assert_eq!(
            prod,
            Verifier::public_key_from_name_or_hex(&PROD_PUBLIC_KEY_HEX.to_uppercase()).unwrap()
        );
        let test = Verifier::public_key_from_name_or_hex("test").unwrap();
        assert_eq!(hex::encode(test.as_bytes()), TEST_PUBLIC_KEY_HEX);
        assert_ne!(prod, test);

        let bot_id = v.bot_id.unwrap();
        let ok = validate(
            &v.init_data,
            &Verifier::ThirdParty {
                bot_id,
                public_key: prod,
            },
            &opts(0),
            wall_clock(),
        )
        .unwrap();
        assert_eq!(ok.user.unwrap().id, 279_058_397);
        let e = validate(
            &v.init_data,
            &Verifier::ThirdParty {
                bot_id,
                public_key: test,
            },
            &opts(0),
            wall_clock(),
        )
        .unwrap_err();
        assert_eq!(e, InitDataError::SignatureMismatch);
    }

    #[test]
    fn third_party_ignores_hash_and_accepts_padding() {
        let vectors = load_vectors();
        let v = vectors
            .iter()
            .find(|v| v.id == "aiogram-ed25519-0")
            .unwrap();
        let verifier = verifier_for(v);
        validate(&v.init_data, &verifier, &opts(0), wall_clock()).unwrap();
        let padded = format!("{}==", v.init_data);
        validate(&padded, &verifier, &opts(0), wall_clock()).unwrap();
        let padded_enc = format!("{}%3D%3D", v.init_data);
        validate(&padded_enc, &verifier, &opts(0), wall_clock()).unwrap();
        // Garbage hash is irrelevant in third-party mode.
        let with_hash = format!("{}&hash=not-hex", v.init_data);
        validate(&with_hash, &verifier, &opts(0), wall_clock()).unwrap();
        // Not base64 / wrong length.
        let (body, _) = v.init_data.rsplit_once("&signature=").unwrap();
        for s in ["!!!!", "", "AAAA"] {
            let e = validate(
                &format!("{body}&signature={s}"),
                &verifier,
                &opts(0),
                wall_clock(),
            )
            .unwrap_err();
            assert_eq!(e, InitDataError::SignatureMismatch, "{s}");
        }
        // A valid third-party string is not valid in bot-token mode without a hash.
        let e = validate(
            &v.init_data,
            &Verifier::BotToken("42:TEST".into()),
            &opts(0),
            wall_clock(),
        )
        .unwrap_err();
        assert_eq!(e, InitDataError::MissingHash);
    }

    #[test]
    fn bad_public_keys_are_rejected() {
        for bad in [
            "",
            "staging",
            &PROD_PUBLIC_KEY_HEX[..63],
            &format!("{PROD_PUBLIC_KEY_HEX}00"),
            &format!("zz{}", &PROD_PUBLIC_KEY_HEX[2..]),
            &format!("0x{}", &PROD_PUBLIC_KEY_HEX[2..]),
        ] {
            let e = Verifier::public_key_from_name_or_hex(bad).unwrap_err();
            assert_eq!(e, InitDataError::InvalidPublicKey, "{bad:?}");
            assert_eq!(e.reason(), "invalid_public_key");
        }
    }

    #[test]
    fn debug_of_verifier_hides_the_token() {
        let s = format!("{:?}", Verifier::BotToken(TOKEN.into()));
        assert!(!s.contains("AAH5Y"), "{s}");
    }

    #[test]
    fn reasons_are_distinct_snake_case() {
        let all = [
            InitDataError::Malformed("x"),
            InitDataError::EmptyKey,
            InitDataError::DuplicateKey("k".into()),
            InitDataError::MissingHash,
            InitDataError::HashMismatch,
            InitDataError::MissingSignature,
            InitDataError::SignatureMismatch,
            InitDataError::MissingAuthDate,
            InitDataError::InvalidAuthDate,
            InitDataError::Expired {
                auth_date: 0,
                max_age_secs: 1,
                now: 2,
            },
            InitDataError::AuthDateInFuture {
                auth_date: 100,
                now: 0,
            },
            InitDataError::InvalidField {
                field: "user",
                detail: String::new(),
            },
            InitDataError::EmptyBotToken,
            InitDataError::InvalidPublicKey,
        ];
        let mut seen = std::collections::BTreeSet::new();
        for e in &all {
            let r = e.reason();
            assert!(
                r.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{r}"
            );
            assert!(seen.insert(r), "duplicate reason {r}");
            assert_eq!(e.is_expired(), r == "expired");
            assert!(!e.to_string().is_empty());
        }
    }

    fn value_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[&=%+ \n\r\t#?;/\\\\\"'a-zA-Z0-9éß漢😀]{0,24}",
        ]
    }

    fn key_strategy() -> impl Strategy<Value = String> {
        // Prefixed so keys never collide with typed fields, `hash` or `auth_date`.
        "[&=%+ \n\ta-z0-9é😀]{0,8}".prop_map(|s| format!("x{s}"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn prop_sign_validate_round_trip(
            token in "[0-9]{1,10}:[A-Za-z0-9_-]{35}",
            extra in prop::collection::btree_map(key_strategy(), value_strategy(), 0..6),
            start_param in proptest::option::of(value_strategy()),
            chat_instance in proptest::option::of(value_strategy()),
            auth_date in 0i64..4_000_000_000,
        ) {
            let auth = auth_date.to_string();
            let mut pairs: Vec<(&str, &str)> =
                extra.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            if let Some(s) = &start_param { pairs.push(("start_param", s)); }
            if let Some(c) = &chat_instance { pairs.push(("chat_instance", c)); }
            pairs.push(("auth_date", &auth));
            let raw = sign(&token, &pairs);
            let verifier = Verifier::BotToken(token.clone());
            let d = validate(&raw, &verifier, &Options::default(), auth_date);
            prop_assert!(d.is_ok(), "{:?} for {}", d, raw);
            let d = d.unwrap();
            prop_assert_eq!(d.auth_date, auth_date);
            prop_assert_eq!(d.start_param, start_param);
            prop_assert_eq!(d.chat_instance, chat_instance);

            // Flipping any bit of any hash byte fails.
            let (body, hash_hex) = raw.rsplit_once("&hash=").unwrap();
            let hash = hex::decode(hash_hex).unwrap();
            prop_assert_eq!(hash.len(), 32);
            for i in 0..hash.len() {
                let mut bad = hash.clone();
                bad[i] ^= 1 << (i % 8);
                let tampered = format!("{body}&hash={}", hex::encode(&bad));
                prop_assert_eq!(
                    validate(&tampered, &verifier, &Options::default(), auth_date).unwrap_err(),
                    InitDataError::HashMismatch
                );
            }
        }

        #[test]
        fn prop_flipping_any_hash_byte_fails(idx in 0usize..32, mask in 1u8..=255) {
            let raw = sign(TOKEN, &sample_pairs());
            let (body, hash_hex) = raw.rsplit_once("&hash=").unwrap();
            let mut hash = hex::decode(hash_hex).unwrap();
            hash[idx] ^= mask;
            let tampered = format!("{body}&hash={}", hex::encode(&hash));
            let e = validate(&tampered, &Verifier::BotToken(TOKEN.into()), &Options::default(), AUTH)
                .unwrap_err();
            prop_assert_eq!(e, InitDataError::HashMismatch);
        }

        #[test]
        fn prop_validate_never_panics(raw in ".{0,200}", now in any::<i64>()) {
            let _ = validate(&raw, &Verifier::BotToken(TOKEN.into()), &Options::default(), now);
            let key = Verifier::public_key_from_name_or_hex("prod").unwrap();
            let _ = validate(&raw, &Verifier::ThirdParty { bot_id: 1, public_key: key }, &Options::default(), now);
        }
    }
}
