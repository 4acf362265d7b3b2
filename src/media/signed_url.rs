//! Signed, expiring links to stored media: `/media/<key>?exp=<unix>&sig=<hex>` where
//! `sig = HMAC-SHA256(secret, "<key>\n<exp>")`. Checked in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the link's signature is invalid")]
    BadSignature,
    #[error("the link has expired")]
    Expired,
}

fn mac(secret: &[u8], key: &str, exp: i64) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(key.as_bytes());
    mac.update(b"\n");
    mac.update(exp.to_string().as_bytes());
    mac
}

pub fn sign(secret: &[u8], key: &str, exp: i64) -> String {
    hex::encode(mac(secret, key, exp).finalize().into_bytes())
}

/// An absolute link to `key` valid until `exp`.
pub fn url(base_url: &str, secret: &[u8], key: &str, exp: i64) -> String {
    format!(
        "{base_url}/media/{key}?exp={exp}&sig={}",
        sign(secret, key, exp)
    )
}

/// Checks the signature first (so an attacker learns nothing about expiry), then the time.
pub fn verify(secret: &[u8], key: &str, exp: i64, sig: &str, now: i64) -> Result<(), LinkError> {
    let given = hex::decode(sig).map_err(|_| LinkError::BadSignature)?;
    let expected = mac(secret, key, exp).finalize().into_bytes();
    if !bool::from(expected.as_slice().ct_eq(&given)) {
        return Err(LinkError::BadSignature);
    }
    if now > exp {
        return Err(LinkError::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_verify_until_they_expire() {
        let sig = sign(b"k", "u/a.jpg", 100);
        assert_eq!(verify(b"k", "u/a.jpg", 100, &sig, 100), Ok(()));
        assert_eq!(
            verify(b"k", "u/a.jpg", 100, &sig, 101),
            Err(LinkError::Expired)
        );
        assert_eq!(
            verify(b"k", "u/b.jpg", 100, &sig, 50),
            Err(LinkError::BadSignature)
        );
        assert_eq!(
            verify(b"k", "u/a.jpg", 101, &sig, 50),
            Err(LinkError::BadSignature)
        );
        assert_eq!(
            verify(b"other", "u/a.jpg", 100, &sig, 50),
            Err(LinkError::BadSignature)
        );
        assert_eq!(
            verify(b"k", "u/a.jpg", 100, "zz", 50),
            Err(LinkError::BadSignature)
        );
        assert!(
            url("https://x.example", b"k", "u/a.jpg", 100)
                .starts_with("https://x.example/media/u/a.jpg?exp=100&sig=")
        );
    }
}
