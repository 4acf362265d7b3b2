//! The referral bonus: the referrer earns `REFERRAL_BONUS_CREDITS` per referred user, once, up
//! to `REFERRAL_DAILY_CAP` bonuses a day (UTC), at signup or at the referred user's first payment;
//! a bonus a payment earned is taken back when that payment is refunded.

use chrono::{DateTime, NaiveTime, Utc};
use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use crate::config::Settings;
use crate::db::ledger::{self, Cause};
use crate::db::{referrals, users};
use crate::domain::credits::Reason;
use crate::domain::ids::UserId;
use crate::domain::payments::referral_award;
use crate::error::AppResult;

/// Records the referral of `referred_id` and pays the referrer, inside the caller's transaction;
/// `payment_id` is the payment that earned it (first-payment trigger). Returns the credits
/// awarded (0 past the cap, or when this referral was decided before).
pub async fn award(
    conn: &mut AsyncPgConnection,
    settings: &Settings,
    referrer_id: UserId,
    referred_id: UserId,
    payment_id: Option<Uuid>,
    now: DateTime<Utc>,
) -> AppResult<i64> {
    if referrer_id == referred_id || referrals::exists_for(conn, referred_id).await? {
        return Ok(0);
    }
    // Under the referrer's lock, the day's count cannot change before we add to it.
    users::lock(conn, referrer_id).await?;
    let p = &settings.payments;
    let day_start = now.date_naive().and_time(NaiveTime::MIN).and_utc();
    let today = referrals::awarded_since(conn, referrer_id, day_start).await?;
    let credits = referral_award(today, p.referral_daily_cap, p.referral_bonus_credits);
    referrals::insert(conn, referrer_id, referred_id, credits, payment_id).await?;
    if credits > 0 {
        let key = format!("referral:{referred_id}");
        let id = referred_id.to_string();
        let cause = Cause::new("referral", &id, &key);
        ledger::grant(conn, referrer_id, credits, Reason::ReferralBonus, cause).await?;
        crate::notices::referral_bonus(conn, referrer_id, referred_id, credits).await?;
        metrics::counter!("referral_bonuses_total").increment(1);
    } else {
        tracing::info!(%referrer_id, "referral daily cap reached; no bonus");
    }
    Ok(credits)
}

/// Takes back the bonus `payment_id` earned, once, inside the refund's transaction (the caller
/// holds the payment's lock): as much as the referrer still has, never below zero.
pub async fn take_back(conn: &mut AsyncPgConnection, payment_id: Uuid) -> AppResult<()> {
    let Some((referrer_id, referred_id, credits)) =
        referrals::earned_by_payment(conn, payment_id).await?
    else {
        return Ok(());
    };
    let key = format!("referral_refund:{referred_id}");
    let id = referred_id.to_string();
    let cause = Cause::new("referral", &id, &key);
    let (_, shortfall) = ledger::debit(
        conn,
        referrer_id,
        credits,
        Reason::ReferralRefund,
        true,
        cause,
    )
    .await?;
    if shortfall > 0 {
        tracing::warn!(
            %referrer_id,
            shortfall,
            "a taken-back referral bonus had already been spent"
        );
    }
    referrals::set_taken_back(conn, referred_id, credits - shortfall).await?;
    Ok(())
}
