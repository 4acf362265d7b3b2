//! A guard in front of actix-multipart: every raw byte of the body (preamble, boundaries, part
//! headers, epilogue) is counted against the request cap, and a small streaming state machine
//! follows the framing the way actix-multipart reads it, refusing what that parser would
//! buffer without limit: a preamble without a boundary, a part header block without its blank
//! line, a line after a boundary that never ends, more parts than the route takes, and the
//! framings it misreads (a bare CR before a boundary, a part `Content-Length`, a part without
//! headers, a boundary too short for its slicing).
//!
//! actix-multipart 0.7 keeps everything it has not parsed in one buffer: it looks for the first
//! boundary line by line (`readline`), for the end of a part's headers with
//! `read_until("\r\n\r\n")`, and for the line after a boundary with `readline_or_eof`; none of
//! them has a limit, so one endless line held the whole body in memory. Inside a part's body it
//! hands data on as it comes, so the guard only has to bound the other states.
//!
//! The guard sees each chunk before the parser does. On a refusal it passes on the chunk's
//! bytes up to the refusal first (so the parts before it are still read, and the handler's
//! own checks, such as a repeated field, answer first) and fails the stream on the next poll;
//! [`Guard::refusal`] then says why, and the handler answers with it (413 or 400).

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use actix_multipart::Multipart;
use actix_web::error::PayloadError;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap};
use bytes::Bytes;
use futures_util::Stream;
use memchr::memmem;

use crate::error::{AppError, ErrorCode};

/// Longest header block of one part, its closing blank line included.
pub const MAX_PART_HEADER_BYTES: usize = 8 * 1024;
/// Longest preamble, the first boundary line included.
pub const MAX_PREAMBLE_BYTES: usize = 8 * 1024;
/// Longest epilogue after the closing boundary.
pub const MAX_EPILOGUE_BYTES: usize = 8 * 1024;
/// RFC 2046 allows 1–70 characters; under 4 actix-multipart slices out of bounds (it panics
/// on a `--` line in the preamble).
const BOUNDARY_LEN: std::ops::RangeInclusive<usize> = 4..=70;

/// Why the guard stopped a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// More raw bytes than the request cap.
    TooLarge {
        cap: usize,
    },
    PartHeaderTooLarge,
    TooManyParts {
        max: usize,
    },
    PreambleTooLong,
    EpilogueTooLong,
    /// Framing the parser would misread; the detail says which.
    Malformed(&'static str),
}

impl Refusal {
    pub fn code(self) -> ErrorCode {
        match self {
            Self::TooLarge { .. } => ErrorCode::PayloadTooLarge,
            Self::PartHeaderTooLarge => ErrorCode::PartHeaderTooLarge,
            Self::TooManyParts { .. } => ErrorCode::TooManyParts,
            Self::PreambleTooLong => ErrorCode::PreambleTooLong,
            Self::EpilogueTooLong => ErrorCode::EpilogueTooLong,
            Self::Malformed(_) => ErrorCode::InvalidMultipart,
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    pub fn detail(self) -> String {
        match self {
            Self::TooLarge { cap } => format!("the request is larger than {cap} bytes"),
            Self::PartHeaderTooLarge => {
                format!("a part's headers are longer than {MAX_PART_HEADER_BYTES} bytes")
            }
            Self::TooManyParts { max } => format!("this form takes at most {max} parts"),
            Self::PreambleTooLong => {
                format!("no boundary in the first {MAX_PREAMBLE_BYTES} bytes of the body")
            }
            Self::EpilogueTooLong => {
                format!("more than {MAX_EPILOGUE_BYTES} bytes after the closing boundary")
            }
            Self::Malformed(detail) => detail.to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first boundary line; `line` holds the current line.
    Preamble,
    /// A part's header block; `line` holds it so far.
    Headers,
    /// A part's body; `tail` holds its last bytes, for a boundary split across chunks.
    Body,
    /// After `--boundary`; `line` holds the (at most two) bytes that follow.
    AfterBoundary,
    /// After the closing boundary.
    Epilogue,
}

/// The framing state machine, fed the raw body chunk by chunk.
pub struct Framing {
    boundary: Vec<u8>,
    /// `--` + boundary.
    dash_boundary: memmem::Finder<'static>,
    state: State,
    line: Vec<u8>,
    tail: Vec<u8>,
    /// Bytes of the preamble or the epilogue so far.
    seen: usize,
    parts: usize,
    max_parts: usize,
}

/// A refusal, with how many bytes of the chunk came before it.
pub type Stop = (usize, Refusal);

impl Framing {
    pub fn new(boundary: &str, max_parts: usize) -> Result<Self, Refusal> {
        if !BOUNDARY_LEN.contains(&boundary.len()) {
            return Err(Refusal::Malformed(
                "the multipart boundary must be 4 to 70 characters long",
            ));
        }
        let dash_boundary = format!("--{boundary}").into_bytes();
        Ok(Self {
            boundary: boundary.as_bytes().to_vec(),
            dash_boundary: memmem::Finder::new(&dash_boundary).into_owned(),
            state: State::Preamble,
            line: Vec::new(),
            tail: Vec::new(),
            seen: 0,
            parts: 0,
            max_parts,
        })
    }

    /// Number of parts begun so far.
    pub fn parts(&self) -> usize {
        self.parts
    }

    /// Whether the closing boundary has been seen.
    pub fn closed(&self) -> bool {
        self.state == State::Epilogue
    }

    /// Takes the next chunk of the body.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), Stop> {
        let mut at = 0;
        while at < chunk.len() {
            at = match self.state {
                State::Preamble => self.preamble(chunk, at)?,
                State::Headers => self.headers(chunk, at)?,
                State::Body => self.body(chunk, at)?,
                State::AfterBoundary => self.after_boundary(chunk, at)?,
                State::Epilogue => {
                    self.seen += chunk.len() - at;
                    if self.seen > MAX_EPILOGUE_BYTES {
                        return Err((at, Refusal::EpilogueTooLong));
                    }
                    chunk.len()
                }
            };
        }
        Ok(())
    }

    fn d_len(&self) -> usize {
        self.boundary.len() + 2
    }

    fn start_part(&mut self, at: usize) -> Result<(), Stop> {
        self.parts += 1;
        if self.parts > self.max_parts {
            return Err((
                at,
                Refusal::TooManyParts {
                    max: self.max_parts,
                },
            ));
        }
        self.state = State::Headers;
        self.line.clear();
        Ok(())
    }

    /// actix-multipart skips lines until one is `--boundary` and two more bytes (the last
    /// being the LF), or starts with `boundary--` (which it reads as the end of the body).
    fn preamble(&mut self, chunk: &[u8], at: usize) -> Result<usize, Stop> {
        let rest = &chunk[at..];
        let (taken, complete) = match memchr::memchr(b'\n', rest) {
            Some(i) => (i + 1, true),
            None => (rest.len(), false),
        };
        self.seen += taken;
        if self.seen > MAX_PREAMBLE_BYTES {
            return Err((at, Refusal::PreambleTooLong));
        }
        self.line.extend_from_slice(&rest[..taken]);
        if !complete {
            return Ok(chunk.len());
        }
        let line = std::mem::take(&mut self.line);
        let b = self.boundary.len();
        let end = at + taken;
        if line.len() == b + 4 && line[..2] == *b"--" && line[2..b + 2] == *self.boundary {
            self.start_part(end)?;
        } else if line.len() >= b + 2 && line[..b] == *self.boundary && line[b..b + 2] == *b"--" {
            self.state = State::Epilogue;
            self.seen = 0;
        }
        Ok(end)
    }

    /// The header block ends at the first CRLFCRLF (`read_until`); a block that starts with
    /// CRLF (no headers) would be searched for into the part's body, so it is refused.
    fn headers(&mut self, chunk: &[u8], at: usize) -> Result<usize, Stop> {
        let rest = &chunk[at..];
        let old = self.line.len();
        let room = (MAX_PART_HEADER_BYTES + 1).saturating_sub(old);
        self.line.extend_from_slice(&rest[..rest.len().min(room)]);
        if self.line.starts_with(b"\r\n") {
            return Err((at, Refusal::Malformed("a part has no headers")));
        }
        let from = old.saturating_sub(3);
        let Some(found) = memmem::find(&self.line[from..], b"\r\n\r\n") else {
            if self.line.len() > MAX_PART_HEADER_BYTES {
                return Err((at, Refusal::PartHeaderTooLarge));
            }
            return Ok(chunk.len());
        };
        let end = from + found + 4;
        if end > MAX_PART_HEADER_BYTES {
            return Err((at, Refusal::PartHeaderTooLarge));
        }
        if has_content_length(&self.line[..end]) {
            // actix-multipart would read exactly that many bytes and then a line of any length.
            return Err((
                at,
                Refusal::Malformed("a part must not have a Content-Length header"),
            ));
        }
        self.line.clear();
        self.tail.clear();
        self.state = State::Body;
        Ok(at + (end - old))
    }

    /// A part's body ends at the first `--boundary` preceded by CRLF; actix-multipart also
    /// ends it at one preceded by a bare CR (and then reads a line of any length), so that is
    /// refused. Other occurrences are data.
    fn body(&mut self, chunk: &[u8], at: usize) -> Result<usize, Stop> {
        let rest = &chunk[at..];
        let d = self.d_len();
        // Boundaries that begin in the tail, or so early in this chunk that the bytes before
        // them are in the tail.
        if !self.tail.is_empty() {
            let mut window = self.tail.clone();
            window.extend_from_slice(&rest[..rest.len().min(d + 1)]);
            if let Some(end) = self.delimiter_end(&window, 0, self.tail.len() + 2)? {
                return self.end_body(at + (end - self.tail.len()));
            }
        }
        let from = if self.tail.is_empty() { 0 } else { 2 };
        if let Some(end) = self.delimiter_end(rest, from, usize::MAX)? {
            return self.end_body(at + end);
        }
        if rest.len() > d {
            self.tail.clear();
            self.tail.extend_from_slice(&rest[rest.len() - (d + 1)..]);
        } else {
            self.tail.extend_from_slice(rest);
            let excess = self.tail.len().saturating_sub(d + 1);
            self.tail.drain(..excess);
        }
        Ok(chunk.len())
    }

    /// The end of the first `--boundary` in `hay` that starts at `from..before` and is
    /// preceded by CRLF (position 0 and 1 look back only inside `hay`).
    fn delimiter_end(&self, hay: &[u8], from: usize, before: usize) -> Result<Option<usize>, Stop> {
        let mut pos = from.min(hay.len());
        while let Some(i) = self.dash_boundary.find(&hay[pos..]) {
            let start = pos + i;
            if start >= before {
                break;
            }
            let prev = |k: usize| start.checked_sub(k).map(|j| hay[j]);
            match (prev(2), prev(1)) {
                (Some(b'\r'), Some(b'\n')) => return Ok(Some(start + self.d_len())),
                (_, Some(b'\r')) => {
                    return Err((0, Refusal::Malformed("a bare CR before a boundary")));
                }
                _ => pos = start + 1,
            }
        }
        Ok(None)
    }

    fn end_body(&mut self, at: usize) -> Result<usize, Stop> {
        self.tail.clear();
        self.line.clear();
        self.state = State::AfterBoundary;
        Ok(at)
    }

    /// `--boundary` is followed by CRLF (another part) or `--` (the end); actix-multipart
    /// refuses anything else too.
    fn after_boundary(&mut self, chunk: &[u8], mut at: usize) -> Result<usize, Stop> {
        while self.line.len() < 2 && at < chunk.len() {
            self.line.push(chunk[at]);
            at += 1;
        }
        match self.line.as_slice() {
            [_] => {}
            b"\r\n" => self.start_part(at)?,
            b"--" => {
                self.state = State::Epilogue;
                self.seen = 0;
            }
            _ => {
                return Err((
                    at,
                    Refusal::Malformed("a boundary is followed by neither CRLF nor `--`"),
                ));
            }
        }
        Ok(at)
    }
}

fn has_content_length(block: &[u8]) -> bool {
    block.split(|b| *b == b'\n').any(|line| {
        line.iter().position(|b| *b == b':').is_some_and(|colon| {
            line[..colon]
                .trim_ascii()
                .eq_ignore_ascii_case(b"content-length")
        })
    })
}

/// What the handler keeps of a guard: why it stopped the body, if it did.
#[derive(Clone, Default)]
pub struct Guard(Rc<Cell<Option<Refusal>>>);

impl Guard {
    pub fn refusal(&self) -> Option<Refusal> {
        self.0.get()
    }
}

/// The guarded body stream handed to actix-multipart.
pub struct Guarded<S> {
    inner: S,
    framing: Option<Framing>,
    total: usize,
    cap: usize,
    pending: Option<Refusal>,
    guard: Guard,
}

impl<S> Guarded<S> {
    /// `framing` is `None` when the request has no usable boundary (the parser reports that
    /// before it reads anything).
    pub fn new(inner: S, framing: Option<Framing>, cap: usize) -> (Self, Guard) {
        let guard = Guard::default();
        let this = Self {
            inner,
            framing,
            total: 0,
            cap,
            pending: None,
            guard: guard.clone(),
        };
        (this, guard)
    }

    fn refuse(&mut self, r: Refusal) -> Poll<Option<Result<Bytes, PayloadError>>> {
        self.guard.0.set(Some(r));
        let err = match r {
            Refusal::TooLarge { .. } => PayloadError::Overflow,
            _ => PayloadError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                r.detail(),
            )),
        };
        Poll::Ready(Some(Err(err)))
    }
}

impl<S> Stream for Guarded<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(r) = this.pending.take().or(this.guard.refusal()) {
            return this.refuse(r);
        }
        let chunk = match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => chunk,
            other => return other,
        };
        this.total += chunk.len();
        if this.total > this.cap {
            return this.refuse(Refusal::TooLarge { cap: this.cap });
        }
        let Some(framing) = this.framing.as_mut() else {
            return Poll::Ready(Some(Ok(chunk)));
        };
        match framing.feed(&chunk) {
            Ok(()) => Poll::Ready(Some(Ok(chunk))),
            Err((0, r)) => this.refuse(r),
            Err((before, r)) => {
                this.pending = Some(r);
                Poll::Ready(Some(Ok(chunk.slice(..before))))
            }
        }
    }
}

/// The multipart parser of an upload route over its guarded body: at most `max_parts` parts and
/// `cap` raw bytes. A declared `Content-Length` over the cap is refused before anything is read.
pub fn open<S>(
    headers: &HeaderMap,
    body: S,
    max_parts: usize,
    cap: usize,
) -> Result<(Multipart, Guard), AppError>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin + 'static,
{
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > cap as u64) {
        return Err(Refusal::TooLarge { cap }.into());
    }
    let framing = match boundary(headers) {
        Some(b) => Some(Framing::new(&b, max_parts)?),
        None => None,
    };
    let (guarded, guard) = Guarded::new(body, framing, cap);
    Ok((Multipart::new(headers, guarded), guard))
}

/// The boundary parameter of a `multipart/*` Content-Type, read as actix-multipart reads it.
fn boundary(headers: &HeaderMap) -> Option<String> {
    let mime: actix_web::mime::Mime = headers
        .get(header::CONTENT_TYPE)?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    if mime.type_() != actix_web::mime::MULTIPART {
        return None;
    }
    Some(
        mime.get_param(actix_web::mime::BOUNDARY)?
            .as_str()
            .to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: &str = "XyZzy0123boundary";

    fn part(name: &str, body: &str) -> String {
        format!(
            "--{B}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"a\"\r\n\
             Content-Type: image/jpeg\r\n\r\n{body}\r\n"
        )
    }

    fn form(parts: &[(&str, &str)]) -> Vec<u8> {
        let mut s: String = parts.iter().map(|(n, b)| part(n, b)).collect();
        s.push_str(&format!("--{B}--\r\n"));
        s.into_bytes()
    }

    /// Feeds `body` in chunks of `size` bytes; the stop, in offsets of the whole body.
    fn feed_in(body: &[u8], size: usize, max_parts: usize) -> (Framing, Result<(), Stop>) {
        let mut f = Framing::new(B, max_parts).unwrap();
        let mut offset = 0;
        for chunk in body.chunks(size) {
            if let Err((at, r)) = f.feed(chunk) {
                return (f, Err((offset + at, r)));
            }
            offset += chunk.len();
        }
        (f, Ok(()))
    }

    fn every_split(body: &[u8], max_parts: usize) -> Vec<Result<(), Refusal>> {
        (1..=body.len())
            .map(|size| feed_in(body, size, max_parts).1.map_err(|(_, r)| r))
            .collect()
    }

    #[test]
    fn a_well_formed_form_passes_split_anywhere() {
        let body = form(&[("person", "abc\r\n--not-it\r--\n"), ("item", "")]);
        for size in 1..=body.len() {
            let (f, r) = feed_in(&body, size, 2);
            assert_eq!(r, Ok(()), "chunks of {size}");
            assert_eq!(f.parts(), 2, "chunks of {size}");
            assert!(f.closed(), "chunks of {size}");
        }
    }

    #[test]
    fn a_boundary_split_across_every_pair_of_chunks_is_found() {
        let body = form(&[("a", &"x".repeat(100)), ("b", "y")]);
        for cut in 1..body.len() {
            let mut f = Framing::new(B, 2).unwrap();
            assert_eq!(f.feed(&body[..cut]), Ok(()), "cut at {cut}");
            assert_eq!(f.feed(&body[cut..]), Ok(()), "cut at {cut}");
            assert!(f.closed() && f.parts() == 2, "cut at {cut}");
        }
    }

    #[test]
    fn a_preamble_and_an_epilogue_are_allowed_within_their_limits() {
        let mut body = b"ignored preamble\r\n\r\n".to_vec();
        body.extend(form(&[("image", "data")]));
        body.extend_from_slice(b"an epilogue");
        assert!(every_split(&body, 1).iter().all(Result::is_ok));
    }

    #[test]
    fn an_endless_preamble_is_refused_at_its_limit() {
        let body = vec![b'a'; MAX_PREAMBLE_BYTES + 1];
        let (_, r) = feed_in(&body, 1000, 1);
        assert_eq!(r.map_err(|(_, r)| r), Err(Refusal::PreambleTooLong));
        // Lines change nothing.
        let lines = "line\r\n".repeat(MAX_PREAMBLE_BYTES / 6 + 1);
        let (_, r) = feed_in(lines.as_bytes(), 7, 1);
        assert_eq!(r.map_err(|(_, r)| r), Err(Refusal::PreambleTooLong));
    }

    #[test]
    fn an_endless_part_header_is_refused_at_8_kib() {
        let mut body =
            format!("--{B}\r\nContent-Disposition: form-data; name=\"image\"; x=\"").into_bytes();
        body.extend(vec![b'a'; MAX_PART_HEADER_BYTES]);
        for r in every_split(&body, 1).into_iter().step_by(97) {
            assert_eq!(r, Err(Refusal::PartHeaderTooLarge));
        }
        // Just under the limit, a header block passes.
        let name = "n".repeat(MAX_PART_HEADER_BYTES - 200);
        let ok = form(&[(&name, "data")]);
        assert_eq!(feed_in(&ok, 4096, 1).1, Ok(()));
    }

    #[test]
    fn crlf_variations_are_read_as_actix_multipart_reads_them() {
        // LF-only line ends in the headers: the block has no CRLFCRLF, so it runs to the limit.
        let mut lf =
            format!("--{B}\r\nContent-Disposition: form-data; name=\"a\"\n\n").into_bytes();
        lf.extend(vec![b'x'; MAX_PART_HEADER_BYTES]);
        assert_eq!(
            feed_in(&lf, 512, 1).1.map_err(|(_, r)| r),
            Err(Refusal::PartHeaderTooLarge)
        );
        // A bare CR before a boundary ends the part for actix-multipart: refused.
        let bare_cr = format!("{}data\r--{B}\r\n", &part("a", "")[..]);
        let r = every_split(bare_cr.as_bytes(), 2);
        assert!(
            r.iter()
                .all(|r| *r == Err(Refusal::Malformed("a bare CR before a boundary")))
        );
        // A boundary after LF alone, or inside a line, is data.
        let data = form(&[("a", &format!("x\n--{B}\r\ny--{B}"))]);
        assert!(every_split(&data, 1).iter().all(Result::is_ok));
        // After a boundary, only CRLF or `--`.
        let junk =
            format!("--{B}\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--{B}zz");
        assert!(
            every_split(junk.as_bytes(), 1)
                .iter()
                .all(|r| matches!(r, Err(Refusal::Malformed(_))))
        );
        // A first boundary line is `--boundary` and two bytes: `--boundary` LF is not one.
        let lf_first = format!("--{B}\n");
        let (f, _) = feed_in(lf_first.as_bytes(), 1, 1);
        assert_eq!(f.parts(), 0);
    }

    #[test]
    fn an_empty_header_block_is_refused() {
        let body = format!("--{B}\r\n\r\nbody without headers\r\n--{B}--\r\n");
        for r in every_split(body.as_bytes(), 1) {
            assert_eq!(r, Err(Refusal::Malformed("a part has no headers")));
        }
    }

    #[test]
    fn a_part_content_length_is_refused() {
        let body = format!(
            "--{B}\r\nContent-Disposition: form-data; name=\"a\"\r\ncontent-LENGTH : 1\r\n\r\nx\r\n--{B}--"
        );
        assert!(every_split(body.as_bytes(), 1).iter().all(|r| *r
            == Err(Refusal::Malformed(
                "a part must not have a Content-Length header"
            ))));
    }

    #[test]
    fn more_parts_than_the_route_takes_stop_where_the_extra_part_begins() {
        let body = form(&[("image", "one"), ("image", "two")]);
        let second = body
            .windows(B.len() + 4)
            .enumerate()
            .filter(|(_, w)| *w == format!("--{B}\r\n").as_bytes())
            .nth(1)
            .map(|(i, _)| i + B.len() + 4)
            .unwrap();
        for size in [1, 5, 64, body.len()] {
            let (_, r) = feed_in(&body, size, 1);
            assert_eq!(
                r,
                Err((second, Refusal::TooManyParts { max: 1 })),
                "chunks of {size}"
            );
        }
        // Many tiny parts: refused at the third on a two-part route.
        let tiny: Vec<(&str, &str)> = vec![("a", ""); 1000];
        let (f, r) = feed_in(&form(&tiny), 8192, 2);
        assert_eq!(r.map_err(|(_, r)| r), Err(Refusal::TooManyParts { max: 2 }));
        assert_eq!(f.parts(), 3);
    }

    #[test]
    fn an_endless_epilogue_is_refused() {
        let mut body = form(&[("image", "x")]);
        body.extend(vec![b'e'; MAX_EPILOGUE_BYTES + 1]);
        assert_eq!(
            feed_in(&body, 4096, 1).1.map_err(|(_, r)| r),
            Err(Refusal::EpilogueTooLong)
        );
    }

    #[test]
    fn short_and_long_boundaries_are_refused() {
        assert!(Framing::new("abc", 1).is_err());
        assert!(Framing::new(&"a".repeat(71), 1).is_err());
        assert!(Framing::new("abcd", 1).is_ok());
    }

    #[test]
    fn a_self_overlapping_boundary_is_found() {
        // `--a--a` occurs overlapping itself in `--a--a--a`.
        let b = "a--aa--a";
        let mut f = Framing::new(b, 1).unwrap();
        let body = format!(
            "--{b}\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n--a--aa\r\n--{b}--"
        );
        assert_eq!(f.feed(body.as_bytes()), Ok(()));
        assert!(f.closed());
    }

    #[tokio::test]
    async fn the_guard_counts_every_byte_and_says_why_it_stopped() {
        use futures_util::StreamExt as _;
        let chunks: Vec<Result<Bytes, PayloadError>> = (0..100)
            .map(|_| Ok(Bytes::from(vec![b'a'; 1000])))
            .collect();
        let framing = Framing::new(B, 1).unwrap();
        let (mut s, guard) = Guarded::new(futures_util::stream::iter(chunks), None, 10_000);
        let mut passed = 0;
        while let Some(Ok(c)) = s.next().await {
            passed += c.len();
        }
        assert_eq!(passed, 10_000);
        assert_eq!(guard.refusal(), Some(Refusal::TooLarge { cap: 10_000 }));

        // The bytes before a refusal are passed on, then the stream fails.
        let body = form(&[("image", "one"), ("image", "two")]);
        let (mut s, guard) = Guarded::new(
            futures_util::stream::iter([Ok(Bytes::from(body.clone()))]),
            Some(framing),
            1 << 20,
        );
        let first = s.next().await.unwrap().unwrap();
        assert!(first.len() < body.len() && body.starts_with(&first));
        assert!(s.next().await.unwrap().is_err());
        assert_eq!(guard.refusal(), Some(Refusal::TooManyParts { max: 1 }));
    }
}
