//! An independent signer of Telegram initData, and initData shapes beyond the shared vectors:
//! the server (and the CLI) are checked against the algorithm, not against their own
//! `initdata::sign`.

use super::BOT_TOKEN;

/// An independent implementation of Telegram's signing (ARCHITECTURE §4), so the server is
/// checked against the algorithm rather than against its own `initdata::sign`. `pairs` are
/// decoded; `encode` turns each into its wire form.
pub fn reference_sign(
    bot_token: &str,
    pairs: &[(&str, &str)],
    encode: fn(&str) -> String,
) -> String {
    use hmac::{Hmac, Mac};
    type HmacSha256 = Hmac<sha2::Sha256>;
    let mut secret = HmacSha256::new_from_slice(b"WebAppData").unwrap();
    secret.update(bot_token.as_bytes());
    let secret = secret.finalize().into_bytes();
    let mut sorted: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    sorted.sort();
    let mut mac = HmacSha256::new_from_slice(&secret).unwrap();
    mac.update(sorted.join("\n").as_bytes());
    let hash = hex::encode(mac.finalize().into_bytes());
    let mut wire: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    wire.push(format!("hash={hash}"));
    wire.join("&")
}

/// Percent-encodes every byte but unreserved ones, spaces as `%20`.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `application/x-www-form-urlencoded` as browsers write it: spaces as `+`.
pub fn form_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// initData shapes beyond the shared vectors, each with the Telegram id it carries.
pub fn reference_cases(auth_date: i64) -> Vec<(&'static str, i64, String)> {
    let auth = auth_date.to_string();
    let unicode = r#"{"id":6001,"first_name":"Zoë 🎨 & Co","last_name":"a+b=c","username":"zoe","language_code":"fr","is_premium":true,"allows_write_to_pm":true,"photo_url":"https:\/\/t.me\/i\/userpic\/320\/x.svg"}"#;
    let plain = r#"{"id":6002,"first_name":"Plain"}"#;
    let string_id = r#"{"id":"6003","first_name":"String Id","is_premium":"true"}"#;
    let chat = r#"{"id":-1001234567890,"type":"supergroup","title":"Group & Co"}"#;
    vec![
        (
            "unicode, +-encoded",
            6001,
            reference_sign(
                BOT_TOKEN,
                &[("user", unicode), ("auth_date", &auth)],
                form_encode,
            ),
        ),
        (
            "unicode, %20-encoded",
            6001,
            reference_sign(
                BOT_TOKEN,
                &[("auth_date", &auth), ("user", unicode)],
                percent_encode,
            ),
        ),
        (
            "signature is part of the HMAC check string",
            6002,
            reference_sign(
                BOT_TOKEN,
                &[
                    ("user", plain),
                    ("auth_date", &auth),
                    ("signature", "6fbdaab833d39f54518bd5c3eb3f511d035e68cb"),
                ],
                form_encode,
            ),
        ),
        (
            "chat fields, a numeric chat_instance, unknown keys, '=' in a value",
            6002,
            reference_sign(
                BOT_TOKEN,
                &[
                    ("query_id", "AAHdF6IQAAAAAN0XohDhrOrc=="),
                    ("user", plain),
                    ("receiver", r#"{"id":6999,"first_name":"Receiver"}"#),
                    ("chat", chat),
                    ("chat_type", "supergroup"),
                    ("chat_instance", "-8937476587213549201"),
                    ("can_send_after", "10"),
                    ("start_param", "promo-1"),
                    ("some_future_field", "x"),
                    ("auth_date", &auth),
                ],
                percent_encode,
            ),
        ),
        (
            "string id and flags",
            6003,
            reference_sign(
                BOT_TOKEN,
                &[("user", string_id), ("auth_date", &auth)],
                form_encode,
            ),
        ),
    ]
}
