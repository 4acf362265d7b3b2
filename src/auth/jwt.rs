//! Our access tokens: HS256 with `iss`, `aud`, `sub` (the Telegram id), `iat`, `exp`.
//! Verification also accepts the previous secret, so the secret can rotate without logging
//! everyone out.

use crate::domain::ids::TelegramId;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::config::Settings;

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token has expired")]
    Expired,
    #[error("the token is invalid")]
    Invalid,
}

pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: Vec<DecodingKey>,
    validation: Validation,
    issuer: String,
    audience: String,
    pub ttl_secs: u64,
}

impl JwtKeys {
    pub fn from_settings(s: &Settings) -> Self {
        let current = s.jwt_secret.expose_secret().as_bytes();
        let mut decoding = vec![DecodingKey::from_secret(current)];
        if let Some(previous) = &s.jwt_previous_secret {
            decoding.push(DecodingKey::from_secret(
                previous.expose_secret().as_bytes(),
            ));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&s.jwt_issuer]);
        validation.set_audience(&[&s.jwt_audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // We issue and verify on the same clock: no leeway past `exp`.
        validation.leeway = 0;
        Self {
            encoding: EncodingKey::from_secret(current),
            decoding,
            validation,
            issuer: s.jwt_issuer.clone(),
            audience: s.jwt_audience.clone(),
            ttl_secs: s.jwt_ttl_secs,
        }
    }

    /// A token for `telegram_id`, valid for the configured TTL from `now`.
    pub fn issue(&self, telegram_id: TelegramId, now: i64) -> anyhow::Result<String> {
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: telegram_id.to_string(),
            iat: now,
            exp: now + i64::try_from(self.ttl_secs)?,
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// The Telegram id of a valid token; tries the current secret, then the previous one.
    pub fn verify(&self, token: &str) -> Result<i64, TokenError> {
        self.verify_until(token).map(|(telegram_id, _)| telegram_id)
    }

    /// The Telegram id of a valid token and when it expires (Unix seconds).
    pub fn verify_until(&self, token: &str) -> Result<(i64, i64), TokenError> {
        let mut outcome = TokenError::Invalid;
        for key in &self.decoding {
            match jsonwebtoken::decode::<Claims>(token, key, &self.validation) {
                Ok(data) => {
                    let id = data.claims.sub.parse().map_err(|_| TokenError::Invalid)?;
                    return Ok((id, data.claims.exp));
                }
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => continue,
                Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => {
                    outcome = TokenError::Expired;
                    break;
                }
                Err(_) => break,
            }
        }
        Err(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn keys(pairs: &[(&str, &str)]) -> JwtKeys {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        JwtKeys::from_settings(&Settings::from_lookup(|k| map.get(k).cloned()).unwrap())
    }

    const A: &str = "secret-a-secret-a-secret-a-secret-a-secret-a";
    const B: &str = "secret-b-secret-b-secret-b-secret-b-secret-b";

    #[test]
    fn round_trip_and_expiry() {
        let k = keys(&[("JWT_SECRET", A), ("JWT_TTL_SECS", "60")]);
        let now = chrono::Utc::now().timestamp();
        assert_eq!(k.verify(&k.issue(TelegramId(42), now).unwrap()), Ok(42));
        assert_eq!(
            k.verify(&k.issue(TelegramId(42), now - 61).unwrap()),
            Err(TokenError::Expired)
        );
        assert_eq!(k.verify("not.a.token"), Err(TokenError::Invalid));
    }

    #[test]
    fn rotation_accepts_previous_secret_only_when_configured() {
        let now = chrono::Utc::now().timestamp();
        let old = keys(&[("JWT_SECRET", A)])
            .issue(TelegramId(7), now)
            .unwrap();
        assert_eq!(
            keys(&[("JWT_SECRET", B), ("JWT_PREVIOUS_SECRET", A)]).verify(&old),
            Ok(7)
        );
        assert_eq!(
            keys(&[("JWT_SECRET", B)]).verify(&old),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn wrong_audience_or_issuer_is_rejected() {
        let now = chrono::Utc::now().timestamp();
        let token = keys(&[("JWT_SECRET", A), ("JWT_AUDIENCE", "other")])
            .issue(TelegramId(7), now)
            .unwrap();
        assert_eq!(
            keys(&[("JWT_SECRET", A)]).verify(&token),
            Err(TokenError::Invalid)
        );
        let token = keys(&[("JWT_SECRET", A), ("JWT_ISSUER", "other")])
            .issue(TelegramId(7), now)
            .unwrap();
        assert_eq!(
            keys(&[("JWT_SECRET", A)]).verify(&token),
            Err(TokenError::Invalid)
        );
    }
}
