//! Idempotency keys bound to the request they first came with (Stripe's rule): a retry with the
//! same request gets the first result; the same key with another request is refused, instead of
//! silently answering with a result the client did not ask for.
//!
//! The fingerprint is the SHA-256 of a canonical form of the parsed request fields (not of the
//! raw body, so whitespace, key order or an equivalent spelling do not matter).

use sha2::{Digest, Sha256};

/// The fingerprint of a request: `fields` are its parsed, meaningful fields, built by the caller
/// in a fixed order (`serde_json::json!` keeps it stable), without the idempotency key itself.
pub fn fingerprint(fields: &serde_json::Value) -> String {
    hex::encode(Sha256::digest(fields.to_string().as_bytes()))
}

/// A key that was first used with a different request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this idempotency key was used with a different request")]
pub struct KeyReused;

/// Whether the request fingerprinted `now` may be answered with the result stored with
/// `stored`. Results stored before fingerprints were kept (`None`) are answered as before.
pub fn check(stored: Option<&str>, now: &str) -> Result<(), KeyReused> {
    match stored {
        Some(stored) if stored != now => Err(KeyReused),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn same_fields_same_fingerprint_other_fields_refused() {
        let a = fingerprint(&json!({"kind": "fitting", "zone": "top"}));
        let b = fingerprint(&json!({"kind": "fitting", "zone": "top"}));
        let c = fingerprint(&json!({"kind": "fitting", "zone": "bottom"}));
        assert_eq!(a.len(), 64);
        assert_eq!(check(Some(&a), &b), Ok(()));
        assert_eq!(check(Some(&a), &c), Err(KeyReused));
        assert_eq!(check(None, &c), Ok(()));
    }
}
