//! Hostile request framing: arbitrary bytes, split into arbitrary chunks, through the upload
//! guard and actix-multipart, as the upload routes read them.
//!
//! Input: the first byte picks the number of parts the "route" takes (1–4), the next ones the
//! chunk sizes (one byte each, until a zero), the rest is the body. Checks: nothing panics
//! (actix-multipart slices out of bounds on some framings the guard must refuse), the state
//! machine decides the same whatever the split, every accepted form has at most the parts the
//! route takes, and no field yields more bytes than the body had.

#![no_main]

use std::pin::pin;
use std::task::{Context, Poll, Waker};

use actix_web::http::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use atelier::http::multipart_guard::{Framing, Guarded};
use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use libfuzzer_sys::fuzz_target;

const BOUNDARY: &str = "fuzzboundary";

/// Polls a stream that never waits (its source is in memory) to its next item.
fn next<S: Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1_000_000 {
        if let Poll::Ready(item) = s.poll_next_unpin(&mut cx) {
            return item;
        }
    }
    panic!("an in-memory stream kept waiting");
}

fuzz_target!(|data: &[u8]| {
    let Some((&parts, rest)) = data.split_first() else {
        return;
    };
    let max_parts = usize::from(parts % 4) + 1;
    let sizes: Vec<usize> = rest
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| usize::from(*b))
        .collect();
    let body = &rest[(sizes.len() + 1).min(rest.len())..];
    let mut chunks = Vec::new();
    let mut at = 0;
    for size in sizes.iter().cycle() {
        if at >= body.len() {
            break;
        }
        let end = (at + size).min(body.len());
        chunks.push(Bytes::copy_from_slice(&body[at..end]));
        at = end;
    }
    if at < body.len() {
        chunks.push(Bytes::copy_from_slice(&body[at..]));
    }

    // The same decision whatever the split.
    let mut whole = Framing::new(BOUNDARY, max_parts).unwrap();
    let whole_result = whole.feed(body).map_err(|(_, r)| r);
    let mut split = Framing::new(BOUNDARY, max_parts).unwrap();
    let split_result = chunks
        .iter()
        .try_for_each(|c| split.feed(c))
        .map_err(|(_, r)| r);
    assert_eq!(whole_result, split_result);
    assert_eq!(whole.parts(), split.parts());

    // Through the guard and the parser, as a route reads it.
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("multipart/form-data; boundary=fuzzboundary"),
    );
    let stream = futures_util::stream::iter(chunks.into_iter().map(Ok));
    let framing = Framing::new(BOUNDARY, max_parts).unwrap();
    let (guarded, guard) = Guarded::new(stream, Some(framing), 1 << 20);
    let mut multipart = pin!(actix_multipart::Multipart::new(&headers, guarded));
    let mut fields = 0;
    while let Some(Ok(mut field)) = next(&mut multipart) {
        fields += 1;
        let mut len = 0;
        while let Some(Ok(chunk)) = next(&mut field) {
            len += chunk.len();
        }
        assert!(len <= body.len());
    }
    assert!(fields <= max_parts, "{fields} fields, {:?}", guard.refusal());
});
