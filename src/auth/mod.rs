//! Authentication: Telegram initData (HMAC or Ed25519), our JWTs, the one path from an access
//! token to its user, and the request extractors. Signing up lives in `accounts`.

pub mod extractor;
pub mod initdata;
pub mod jwt;

use crate::domain::ids::TelegramId;
use chrono::Utc;
use secrecy::ExposeSecret;

use crate::config::{InitDataKey, Settings};
use crate::db::models::User;
use crate::db::users;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::state::AppState;
use initdata::{InitData, Options, Verifier};
use jwt::TokenError;

/// Builds the initData verifier the settings describe.
pub fn verifier_from_settings(settings: &Settings) -> anyhow::Result<Verifier> {
    Ok(match &settings.init_data_key {
        InitDataKey::BotToken(token) => Verifier::BotToken(token.expose_secret().to_owned()),
        InitDataKey::ThirdParty { bot_id, public_key } => Verifier::ThirdParty {
            bot_id: *bot_id,
            public_key: Verifier::public_key_from_name_or_hex(public_key)
                .map_err(|e| anyhow::anyhow!("TELEGRAM_PUBLIC_KEY: {e}"))?,
        },
    })
}

/// The keyed hash that stands for a Telegram account once its owner has erased it
/// (`erased_identities`): HMAC-SHA256 of the id under the JWT secret, so that the table holds no
/// id, and a leaked copy of it cannot be matched against ids without the secret. After a change
/// of `JWT_SECRET` the accounts erased before it are no longer recognised.
pub fn identity_hash(settings: &Settings, telegram_id: TelegramId) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    let key = settings.jwt_secret.expose_secret().as_bytes();
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(b"erased-telegram-account:");
    mac.update(telegram_id.to_string().as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// Validates raw initData with the server's clock.
pub fn validate_init_data(state: &AppState, raw: &str) -> AppResult<InitData> {
    let opts = Options {
        max_age_secs: state.settings.init_data_max_age_secs,
        ..Options::default()
    };
    Ok(initdata::validate(
        raw.trim(),
        &state.init_data,
        &opts,
        Utc::now().timestamp(),
    )?)
}

/// Whether a blocked user may be signed in: only for the rights a block does not take away
/// (erasure and export, `extractor::AuthUserEvenBlocked`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocked {
    Refused,
    Admitted,
}

impl Blocked {
    /// `user`, unless they are blocked and blocked users are refused (`user_blocked`).
    pub fn check(self, user: User) -> AppResult<User> {
        if self == Self::Refused && user.is_blocked {
            return Err(AppError::user_blocked());
        }
        Ok(user)
    }
}

/// The user of an access token, and when the token expires (Unix seconds).
#[derive(Debug)]
pub struct TokenUser {
    pub user: User,
    pub expires_at: i64,
}

/// The user an access token stands for, as every transport decides it (the `AuthUser`
/// extractors and the WebSocket): an empty token is `missing_credentials`, an expired one
/// `token_expired`, a bad one or one of an account that no longer exists `invalid_token`, and a
/// blocked user `user_blocked` unless `blocked` admits them.
pub async fn user_for_token(
    state: &AppState,
    token: &str,
    blocked: Blocked,
) -> AppResult<TokenUser> {
    if token.is_empty() {
        return Err(AppError::unauthorized(
            ErrorCode::MissingCredentials,
            "the access token is empty",
        ));
    }
    let (telegram_id, expires_at) = state.jwt.verify_until(token).map_err(|e| match e {
        TokenError::Expired => {
            AppError::unauthorized(ErrorCode::TokenExpired, "the access token has expired")
        }
        TokenError::Invalid => {
            AppError::unauthorized(ErrorCode::InvalidToken, "the access token is invalid")
        }
    })?;
    let mut conn = state.db.get().await?;
    let user = users::find_by_telegram_id(&mut conn, TelegramId(telegram_id))
        .await?
        .ok_or_else(|| {
            AppError::unauthorized(ErrorCode::InvalidToken, "the account no longer exists")
        })?;
    Ok(TokenUser {
        user: blocked.check(user)?,
        expires_at,
    })
}
