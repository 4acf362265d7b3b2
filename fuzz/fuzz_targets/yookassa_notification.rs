//! YooKassa webhook bodies (`{type: notification, event, object}`) through the parser the
//! webhook uses, and the exact amount parser on any `object.amount.value` they carry.

#![no_main]

use atelier::domain::payments::{format_amount, parse_amount};
use atelier::providers::yookassa::{parse_notification, valid_object_id};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(n) = parse_notification(data) {
        assert!(valid_object_id(&n.object_id), "{:?}", n.object_id);
        assert_eq!(n.body["type"], "notification");
        assert_eq!(n.body["event"].as_str(), Some(n.event.as_str()));
        // What the inbox stores parses back to the same notification.
        let stored = n.body.to_string();
        assert_eq!(parse_notification(stored.as_bytes()).as_ref(), Ok(&n));
        // Checked on the value, not its text: `"\\u0000"` (an escaped backslash) is no NUL.
        assert!(!has_nul(&n.body), "NUL reached the inbox: {stored}");
    }
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Some(value) = body["object"]["amount"]["value"].as_str()
        && let Some(minor) = parse_amount(value)
    {
        assert!(minor >= 0);
        assert_eq!(parse_amount(&format_amount(minor)), Some(minor), "{value:?}");
    }
});
