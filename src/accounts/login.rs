//! Logging in with Telegram initData: the address's login limits, the initData check, the
//! sign-in, the block, and our access token.

use chrono::Utc;

use crate::domain::ids::TelegramId;

use super::sign_up::sign_in;
use crate::auth::Blocked;
use crate::auth::initdata::InitData;
use crate::db::models::User;
use crate::db::users::Profile;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::ratelimit::{self, Window};
use crate::state::AppState;

/// A successful login: the user and their new access token.
#[derive(Debug)]
pub struct LoggedIn {
    pub user: User,
    pub access_token: String,
    /// Seconds until the token expires.
    pub expires_in: u64,
}

/// Logs in from `ip` with raw initData: refused while the address has too many failed logins
/// (or logins), a failed check counts against it; then signs in (creating the user on first
/// login), refuses a blocked user (`user_blocked`) and issues an access token.
pub async fn login(state: &AppState, raw: &str, ip: &str) -> AppResult<LoggedIn> {
    let limits = &state.settings.limits;
    // One round trip: refused while the address has too many failures, else counted.
    ratelimit::run(
        state,
        &[
            Window::check("login_failures", ip, limits.login_failures_per_ip),
            Window::hit("login", ip, limits.login_per_ip),
        ],
    )
    .await?;
    let data = match crate::auth::validate_init_data(state, raw) {
        Ok(data) => data,
        Err(e) => {
            ratelimit::record(state, "login_failures", ip, limits.login_failures_per_ip).await;
            return Err(e);
        }
    };
    let user = Blocked::Refused.check(sign_in_with(state, &data).await?)?;
    let access_token = state.jwt.issue(user.telegram_id, Utc::now().timestamp())?;
    Ok(LoggedIn {
        user,
        access_token,
        expires_in: state.jwt.ttl_secs,
    })
}

/// The user of raw initData sent as a request's credentials (`Authorization: tma`), signed in
/// as at login. A blocked user is refused (`user_blocked`) unless `blocked` admits them.
pub async fn user_for_init_data(state: &AppState, raw: &str, blocked: Blocked) -> AppResult<User> {
    let data = crate::auth::validate_init_data(state, raw)?;
    blocked.check(sign_in_with(state, &data).await?)
}

/// Signs in the account validated initData describes, with its `start_param`.
async fn sign_in_with(state: &AppState, data: &InitData) -> AppResult<User> {
    let tg = data.user.as_ref().ok_or_else(|| {
        AppError::unauthorized(ErrorCode::InvalidInitData, "initData carries no user")
    })?;
    let profile = Profile {
        telegram_id: TelegramId(tg.id),
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
