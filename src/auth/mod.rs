//! Authentication: Telegram initData (HMAC or Ed25519), our JWTs, and the request extractors.

pub mod extractor;
pub mod initdata;
pub mod jwt;

use chrono::Utc;
use diesel_async::AsyncConnection as _;
use secrecy::ExposeSecret;

use crate::config::{InitDataKey, ReferralTrigger, Settings};
use crate::db::ledger::{self, Cause};
use crate::db::models::User;
use crate::db::users::{self, Profile};
use crate::domain::credits::Reason;
use crate::domain::referral;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::state::AppState;
use initdata::{InitData, Options, Verifier};

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
pub fn identity_hash(settings: &Settings, telegram_id: i64) -> Vec<u8> {
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

/// Logs a user in with validated initData: upserts the user (refreshing the profile and
/// `last_seen_at`), links a referrer for a new user, and grants the signup bonus once. A blocked
/// user is refused (`user_blocked`).
pub async fn login(state: &AppState, data: &InitData) -> AppResult<User> {
    let user = login_even_blocked(state, data).await?;
    if user.is_blocked {
        return Err(AppError::user_blocked());
    }
    Ok(user)
}

/// [`login`] that also lets a blocked user in: for the rights a block does not take away
/// (erasure and export, `extractor::AuthUserEvenBlocked`).
pub async fn login_even_blocked(state: &AppState, data: &InitData) -> AppResult<User> {
    let tg = data.user.as_ref().ok_or_else(|| {
        AppError::unauthorized(ErrorCode::InvalidInitData, "initData carries no user")
    })?;
    let profile = Profile {
        telegram_id: tg.id,
        username: tg.username.clone(),
        first_name: tg.first_name.clone(),
        last_name: tg.last_name.clone(),
        language_code: tg.language_code.clone(),
        is_premium: tg.is_premium.unwrap_or(false),
        photo_url: tg.photo_url.clone(),
        allows_write_to_pm: tg.allows_write_to_pm.unwrap_or(false),
    };
    sign_in(state, &profile, data.start_param.as_deref()).await
}

/// Signs in the Telegram account `profile` describes, from the Mini App (its initData) or the
/// bot (`/start`): upserts the user, links a referrer from `start_param` (`ref_<code>`) for a
/// new user, and grants the signup bonus once. A blocked user is refused (`user_blocked`).
pub async fn sign_in(
    state: &AppState,
    profile: &Profile,
    start_param: Option<&str>,
) -> AppResult<User> {
    let referrer_code = start_param.and_then(referral::code_from_start_param);
    let bonus = state.settings.signup_bonus_credits;
    let refer_at_signup = referrer_code.is_some()
        && state.settings.payments.referral_trigger == ReferralTrigger::Signup;
    let identity = identity_hash(&state.settings, profile.telegram_id);
    let mut conn = state.db.get().await?;

    // A freshly drawn referral code may collide with an existing one; draw again.
    let mut attempts = 0;
    let user = loop {
        attempts += 1;
        let code = referral::new_code();
        let result = if bonus == 0 && !refer_at_signup {
            // One statement, one round trip: nothing else has to commit with it.
            users::upsert_from_login(&mut conn, profile, &code, referrer_code, &identity)
                .await
                .map(|login| login.user)
                .map_err(AppError::from)
        } else {
            conn.transaction(async |conn| {
                if let Some(code) = referrer_code.filter(|_| refer_at_signup) {
                    users::lock_by_referral_code(conn, code).await?;
                }
                let login =
                    users::upsert_from_login(conn, profile, &code, referrer_code, &identity)
                        .await?;
                let user = login.user;
                if login.erased_before && login.created {
                    tracing::info!(
                        user_id = user.id,
                        "an erased account signed up again: no signup or referral bonus"
                    );
                }
                if login.created && !login.erased_before {
                    if bonus > 0 {
                        let key = format!("signup_bonus:{}", user.id);
                        let id = user.id.to_string();
                        let cause = Cause::new("user", &id, &key);
                        ledger::grant(conn, user.id, bonus, Reason::SignupBonus, cause).await?;
                    }
                    if let Some(referrer) = user.referred_by.filter(|_| refer_at_signup) {
                        crate::billing::referrals::award(
                            conn,
                            &state.settings,
                            referrer,
                            user.id,
                            None,
                            Utc::now(),
                        )
                        .await?;
                    }
                    return Ok::<_, AppError>(users::find(conn, user.id).await?);
                }
                Ok(user)
            })
            .await
        };
        match result {
            Err(AppError::Database(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                info,
            ))) if attempts < 5 && info.constraint_name() == Some("users_referral_code_key") => {
                continue;
            }
            other => break other?,
        }
    };
    Ok(user)
}
