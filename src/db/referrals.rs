//! Referrals: one row per referred user whose referrer's bonus was decided (awarded, or 0 when
//! the referrer's daily cap was reached).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::domain::ids::UserId;

use super::Prepare as _;
use super::schema::{referrals, users};

pub async fn exists_for(conn: &mut AsyncPgConnection, referred_id: UserId) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        referrals::table.filter(referrals::referred_id.eq(referred_id)),
    ))
    .get_result(conn)
    .await
}

/// Records the referrer's bonus for `referred_id`, earned by `payment_id` under the first-payment
/// trigger.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    referrer_id: UserId,
    referred_id: UserId,
    credits_awarded: i64,
    payment_id: Option<Uuid>,
) -> QueryResult<i64> {
    diesel::insert_into(referrals::table)
        .values((
            referrals::referrer_id.eq(referrer_id),
            referrals::referred_id.eq(referred_id),
            referrals::credits_awarded.eq(credits_awarded),
            referrals::payment_id.eq(payment_id),
        ))
        .returning(referrals::id)
        .prepared()
        .get_result(conn)
        .await
}

/// A bonus a payment earned that has not been taken back: (referrer, referred, credits).
pub async fn earned_by_payment(
    conn: &mut AsyncPgConnection,
    payment_id: Uuid,
) -> QueryResult<Option<(UserId, UserId, i64)>> {
    referrals::table
        .filter(referrals::payment_id.eq(payment_id))
        .filter(referrals::credits_awarded.gt(0))
        .filter(referrals::credits_taken_back.eq(0))
        .select((
            referrals::referrer_id,
            referrals::referred_id,
            referrals::credits_awarded,
        ))
        .first(conn)
        .await
        .optional()
}

/// Records what was taken back of the bonus for `referred_id`.
pub async fn set_taken_back(
    conn: &mut AsyncPgConnection,
    referred_id: UserId,
    credits: i64,
) -> QueryResult<usize> {
    diesel::update(referrals::table.filter(referrals::referred_id.eq(referred_id)))
        .set(referrals::credits_taken_back.eq(credits))
        .prepared()
        .execute(conn)
        .await
}

/// Bonuses (of more than 0 credits) the referrer earned since `since`.
pub async fn awarded_since(
    conn: &mut AsyncPgConnection,
    referrer_id: UserId,
    since: DateTime<Utc>,
) -> QueryResult<i64> {
    referrals::table
        .filter(referrals::referrer_id.eq(referrer_id))
        .filter(referrals::created_at.ge(since))
        .filter(referrals::credits_awarded.gt(0))
        .count()
        .get_result(conn)
        .await
}

/// (users who signed up with the referrer's code, credits the referrer earned from them).
pub async fn stats(conn: &mut AsyncPgConnection, referrer_id: UserId) -> QueryResult<(i64, i64)> {
    let invited = users::table
        .filter(users::referred_by.eq(referrer_id))
        .count()
        .get_result(conn)
        .await?;
    let earned: Option<i64> = referrals::table
        .filter(referrals::referrer_id.eq(referrer_id))
        .select(diesel::dsl::sql::<
            diesel::sql_types::Nullable<diesel::sql_types::BigInt>,
        >(
            "SUM(credits_awarded - credits_taken_back)::bigint"
        ))
        .first(conn)
        .await?;
    Ok((invited, earned.unwrap_or(0)))
}
