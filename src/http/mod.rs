//! Request bodies, bounded whatever their framing: a deadline for every body
//! ([`deadline::body_deadline`]) and a byte-counting, framing-checking guard in front of the
//! multipart parser of the upload routes ([`multipart_guard`]); DTOs checked with `validator`
//! ([`validated`]).

pub mod deadline;
pub mod multipart_guard;
pub mod validated;
