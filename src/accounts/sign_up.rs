//! Sign-up and sign-in of a Telegram account, from the Mini App (its initData) or the bot
//! (`/start`): the user row is upserted, and a new account gets its signup bonus and, when
//! referrals pay at signup, earns its referrer's bonus, once.

use chrono::Utc;
use diesel_async::{AsyncConnection as _, AsyncPgConnection};

use crate::config::ReferralTrigger;
use crate::db::ledger::{self, Cause};
use crate::db::models::User;
use crate::db::users::{self, Profile};
use crate::domain::credits::Reason;
use crate::domain::referral;
use crate::error::{AppError, AppResult};
use crate::state::AppState;

/// Signs in the Telegram account `profile` describes: upserts the user, links a referrer from
/// `start_param` (`ref_<code>`) for a new user, and grants the signup bonus once. A blocked
/// user is returned as such: the caller decides what a block takes away.
pub async fn sign_in(
    state: &AppState,
    profile: &Profile,
    start_param: Option<&str>,
) -> AppResult<User> {
    let referrer_code = start_param.and_then(referral::code_from_start_param);
    let bonus = state.settings.signup_bonus_credits;
    let refer_at_signup = referrer_code.is_some()
        && state.settings.payments.referral_trigger == ReferralTrigger::Signup;
    let identity = crate::auth::identity_hash(&state.settings, profile.telegram_id);
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
            conn.transaction(async |conn| -> AppResult<User> {
                if let Some(code) = referrer_code.filter(|_| refer_at_signup) {
                    users::lock_by_referral_code(conn, code).await?;
                }
                let login =
                    users::upsert_from_login(conn, profile, &code, referrer_code, &identity)
                        .await?;
                let user = login.user;
                if login.erased_before && login.created {
                    tracing::info!(
                        user_id = %user.id,
                        "an erased account signed up again: no signup or referral bonus"
                    );
                }
                if login.created && !login.erased_before {
                    return welcome(conn, state, &user, refer_at_signup).await;
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

/// The bonuses of a new account, in its sign-up transaction: the signup bonus, and the
/// referrer's award when referrals pay at signup. Returns the user as it is after them.
async fn welcome(
    conn: &mut AsyncPgConnection,
    state: &AppState,
    user: &User,
    refer_at_signup: bool,
) -> AppResult<User> {
    let bonus = state.settings.signup_bonus_credits;
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
    Ok(users::find(conn, user.id).await?)
}
