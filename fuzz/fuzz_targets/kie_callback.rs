//! kie.ai callback bodies through the parser `/api/v1/callbacks/kie` uses, and the callback
//! signature check on arbitrary headers (the input's last two lines) and on real signatures.

#![no_main]

use atelier::providers::kie::{parse_callback, verify_callback_signature};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

const KEY: &[u8] = b"kie-webhook-hmac-key";
const NOW: i64 = 1_700_000_000;
const SKEW: u64 = 300;

fn sign(task_id: &str, timestamp: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(KEY) else {
        unreachable!("HMAC takes keys of any length");
    };
    mac.update(format!("{task_id}.{timestamp}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.rsplitn(3, '\n');
    let (signature, timestamp) = (lines.next(), lines.next());
    let _ = verify_callback_signature(KEY, "task", timestamp, signature, NOW, SKEW);

    let Ok(task_id) = parse_callback(data) else {
        return;
    };
    assert!(
        !task_id.is_empty()
            && task_id.len() <= 128
            && task_id.bytes().all(|b| b.is_ascii_graphic()),
        "{task_id:?}"
    );
    let now = NOW.to_string();
    let good = sign(&task_id, &now);
    let check = |task: &str, ts: &str, sig: &str| {
        verify_callback_signature(KEY, task, Some(ts), Some(sig), NOW, SKEW)
    };
    assert!(check(&task_id, &now, &good));
    assert!(check(&task_id, &format!(" {now} "), &format!(" {good}")));
    // The signature covers the task and the timestamp; stale timestamps fail even when signed.
    assert!(!check(&task_id, &(NOW + 1).to_string(), &good));
    assert!(!check(&format!("{task_id}x"), &now, &good));
    let stale = (NOW - 301).to_string();
    assert!(!check(&task_id, &stale, &sign(&task_id, &stale)));
});
