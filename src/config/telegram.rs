//! The bot's credentials (`TELEGRAM_BOT_TOKEN`, or `TELEGRAM_BOT_ID` with
//! `TELEGRAM_PUBLIC_KEY`): what signs initData, and whether the Bot API can be called.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

use super::ConfigError;
use super::env::{Env, bad};

/// Bot token used when none is configured outside production, so that `make run` and the
/// README walkthrough work on a fresh checkout. Not a real credential (the development secrets
/// may stand beside it); refused with `APP_ENV=production`.
pub const DEV_BOT_TOKEN: &str = "1000000001:atelier-development-bot-token";

/// How initData signatures are checked: with the bot token (HMAC), or with Telegram's
/// Ed25519 key when the deployment only knows the bot id.
#[derive(Clone)]
pub enum InitDataKey {
    BotToken(SecretString),
    ThirdParty { bot_id: i64, public_key: String },
}

impl fmt::Debug for InitDataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BotToken(_) => f.write_str("BotToken([redacted])"),
            Self::ThirdParty { bot_id, public_key } => {
                write!(
                    f,
                    "ThirdParty {{ bot_id: {bot_id}, public_key: {public_key} }}"
                )
            }
        }
    }
}

/// The bot token (if any) and the initData key. Without either, the key is the development
/// token's, which the caller refuses where it may not stand.
pub(super) fn credentials(
    env: &Env<'_>,
) -> Result<(Option<SecretString>, InitDataKey), ConfigError> {
    let token = env.secret("TELEGRAM_BOT_TOKEN")?;
    let bot_id: Option<i64> = env.optional("TELEGRAM_BOT_ID")?;
    let key = match (bot_id, env.string("TELEGRAM_PUBLIC_KEY")) {
        (Some(bot_id), Some(public_key)) => {
            crate::auth::initdata::Verifier::public_key_from_name_or_hex(&public_key)
                .map_err(|e| bad("TELEGRAM_PUBLIC_KEY", &e.to_string()))?;
            InitDataKey::ThirdParty { bot_id, public_key }
        }
        (None, Some(_)) => {
            return Err(bad("TELEGRAM_BOT_ID", "required with TELEGRAM_PUBLIC_KEY"));
        }
        _ => match &token {
            Some(token) => {
                check_bot_token(token.expose_secret())?;
                InitDataKey::BotToken(token.clone())
            }
            None => InitDataKey::BotToken(SecretString::from(DEV_BOT_TOKEN)),
        },
    };
    Ok((token, key))
}

fn check_bot_token(token: &str) -> Result<(), ConfigError> {
    let valid = token
        .split_once(':')
        .is_some_and(|(id, rest)| id.parse::<i64>().is_ok() && !rest.is_empty());
    if valid {
        Ok(())
    } else {
        Err(bad(
            "TELEGRAM_BOT_TOKEN",
            "must look like <bot id>:<secret>",
        ))
    }
}
