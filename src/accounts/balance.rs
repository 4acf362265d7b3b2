//! What a user can spend: credits, the active plan, and the free actions left this month. The
//! API (`/me`, `/balance`, the export, the admin lookup) and the bot show the same figures.

use chrono::{DateTime, NaiveTime, Utc};

use crate::db::models::User;
use crate::domain::credits::Allowance;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balance {
    pub balance_credits: i64,
    /// The plan while it is active, else `None`.
    pub subscription_plan: Option<String>,
    pub subscription_until: Option<DateTime<Utc>>,
    pub free_actions_limit: i32,
    pub free_actions_used: i32,
    pub free_actions_left: i32,
    /// When the free actions reset (the first day of next month, UTC).
    pub free_actions_reset_at: DateTime<Utc>,
}

impl Balance {
    /// The balance of `user` at `now`, with `free_limit` free actions a month.
    pub fn of(user: &User, free_limit: i32, now: DateTime<Utc>) -> Self {
        let allowance = Allowance::on(
            now.date_naive(),
            user.free_actions_used,
            user.free_period_start,
            free_limit,
        );
        let active = user.subscription_until.is_some_and(|until| until > now);
        Self {
            balance_credits: user.balance_credits,
            subscription_plan: user.subscription_plan.clone().filter(|_| active),
            subscription_until: user.subscription_until.filter(|_| active),
            free_actions_limit: free_limit,
            free_actions_used: allowance.used.min(free_limit),
            free_actions_left: allowance.left(),
            free_actions_reset_at: allowance.resets_on.and_time(NaiveTime::MIN).and_utc(),
        }
    }
}
