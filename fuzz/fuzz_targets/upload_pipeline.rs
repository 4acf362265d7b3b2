//! Hostile bytes through the whole upload pipeline (sniff → probe → decode → normalise).
//!
//! Small limits keep each run to milliseconds so the fuzzer explores parsers rather than
//! waiting on big decodes; `min_side: 1` lets tiny inputs reach the decoders at all.

#![no_main]

use atelier::media::image_pipeline::{Limits, normalize, sha256_hex};
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits {
    max_pixels: 1_000_000,
    max_side: 2048,
    min_side: 1,
    store_max_side: 128,
    max_alloc_bytes: 64 * 1024 * 1024,
};

fuzz_target!(|data: &[u8]| {
    let Ok(out) = normalize(data, &LIMITS) else {
        return;
    };
    assert!(out.width.max(out.height) <= LIMITS.store_max_side);
    assert_eq!(out.sha256, sha256_hex(&out.bytes));
    // What we store must itself be a clean upload: accepted again, same size.
    match normalize(&out.bytes, &LIMITS) {
        Ok(again) => assert_eq!((again.width, again.height), (out.width, out.height)),
        Err(e) => panic!("our own output was refused: {e}"),
    }
});
