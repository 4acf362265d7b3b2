//! Telegram initData validation on arbitrary UTF-8, and sign → validate round trips.
//!
//! The same input serves both: validated as it is (HMAC and Ed25519 verifiers), then its
//! `&`/`=` structure is reused as raw pairs that are signed and must validate back exactly.

#![no_main]

use std::collections::HashSet;

use atelier::auth::initdata::{InitDataError, Options, Verifier, sign, validate};
use libfuzzer_sys::fuzz_target;

const TOKEN: &str = "5768337691:AAH5YkoiEuPk8-FZa32hStHTqXiLPtAEhx8";
const NOW: i64 = 1_700_000_000;
const NOW_STR: &str = "1700000000";

/// Keys whose values `validate` parses (JSON or integers), or that `sign` manages itself.
const TYPED: [&str; 6] = [
    "hash",
    "auth_date",
    "user",
    "receiver",
    "chat",
    "can_send_after",
];

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let opts = Options::default();
    let bot = Verifier::BotToken(TOKEN.to_owned());
    let _ = validate(raw, &bot, &opts, NOW);
    if let Ok(public_key) = Verifier::public_key_from_name_or_hex("prod") {
        let third_party = Verifier::ThirdParty {
            bot_id: 7_342_037_359,
            public_key,
        };
        let _ = validate(raw, &third_party, &opts, NOW);
    }

    // Round trip: first occurrence of each non-empty, untyped key, plus a fresh auth_date
    // placed first so the tamper check below can find it.
    let mut seen = HashSet::new();
    let mut pairs = vec![("auth_date", NOW_STR)];
    for segment in raw.split('&') {
        let (key, value) = segment.split_once('=').unwrap_or((segment, ""));
        if !key.is_empty() && !TYPED.contains(&key) && seen.insert(key) {
            pairs.push((key, value));
        }
    }
    let signed = sign(TOKEN, &pairs);
    let parsed = match validate(&signed, &bot, &opts, NOW) {
        Ok(parsed) => parsed,
        Err(e) => panic!("sign → validate failed: {e} for {signed:?}"),
    };
    assert_eq!(parsed.auth_date, NOW);
    for (key, value) in &pairs {
        let field = match *key {
            "query_id" => &parsed.query_id,
            "chat_type" => &parsed.chat_type,
            "chat_instance" => &parsed.chat_instance,
            "start_param" => &parsed.start_param,
            "signature" => &parsed.signature,
            _ => continue,
        };
        assert_eq!(field.as_deref(), Some(*value), "{key}");
    }

    // Any change to a signed field breaks the hash.
    if let Some(rest) = signed.strip_prefix("auth_date=1700000000") {
        let tampered = format!("auth_date=1700000001{rest}");
        assert_eq!(
            validate(&tampered, &bot, &opts, NOW).err(),
            Some(InitDataError::HashMismatch)
        );
    } else {
        panic!("auth_date is not first in {signed:?}");
    }
});
