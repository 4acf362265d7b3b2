//! The credit ledger: the only code that changes `users.balance_credits`.
//!
//! Each operation locks the user's row, returns the earlier result when its idempotency key
//! was already applied, and otherwise writes the new balance and one ledger row, all inside
//! the caller's transaction. The balance can never go below zero (checked here, and by a
//! CHECK constraint as the last line of defence).

use crate::domain::ids::UserId;
use chrono::{NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::Prepare as _;
use super::models::{LedgerEntry, User};
use super::schema::{credit_ledger, users};
use crate::domain::credits::{self, Allowance, ChargeDecision, PaidWith, Reason};

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("insufficient credits: {required} required, {available} available")]
    Insufficient { required: i64, available: i64 },
    #[error("idempotency key {0:?} was already used for a different operation")]
    KeyReused(String),
    #[error("amount must be positive")]
    NonPositiveAmount,
    #[error("the balance would overflow")]
    Overflow,
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
}

/// What caused a movement, and the key that makes applying it twice a no-op.
#[derive(Debug, Clone, Copy)]
pub struct Cause<'a> {
    pub ref_type: Option<&'a str>,
    pub ref_id: Option<&'a str>,
    pub idempotency_key: &'a str,
}

impl<'a> Cause<'a> {
    pub fn new(ref_type: &'a str, ref_id: &'a str, idempotency_key: &'a str) -> Self {
        Self {
            ref_type: Some(ref_type),
            ref_id: Some(ref_id),
            idempotency_key,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Applied {
    pub entry: LedgerEntry,
    /// True when the key had been applied before and nothing changed now.
    pub replayed: bool,
}

#[derive(Debug, Clone)]
pub struct Charged {
    pub entry: LedgerEntry,
    pub paid_with: PaidWith,
    pub credits_spent: i64,
    pub replayed: bool,
}

/// The key under which the refund of a charge is recorded: one refund per charge, ever.
pub fn refund_key(charge_key: &str) -> String {
    format!("refund:{charge_key}")
}

/// Adds `amount` credits for a grant reason (purchase, bonus, admin grant, ...).
pub async fn grant(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    amount: i64,
    reason: Reason,
    cause: Cause<'_>,
) -> Result<Applied, LedgerError> {
    debug_assert!(
        reason.is_grant(),
        "grant with a non-grant reason {reason:?}"
    );
    if amount <= 0 {
        return Err(LedgerError::NonPositiveAmount);
    }
    let (user, existing) = lock_user_and_find(conn, user_id, cause.idempotency_key).await?;
    if let Some(entry) = existing {
        return Ok(Applied {
            entry,
            replayed: true,
        });
    }
    let entry = write(conn, &user, amount, reason, cause).await?;
    Ok(Applied {
        entry,
        replayed: false,
    })
}

/// Takes `amount` credits (admin debit, a refunded purchase taken back). With `partial`, takes
/// what there is and reports the shortfall instead of failing; `None` when nothing could be taken.
pub async fn debit(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    amount: i64,
    reason: Reason,
    partial: bool,
    cause: Cause<'_>,
) -> Result<(Option<Applied>, i64), LedgerError> {
    if amount <= 0 {
        return Err(LedgerError::NonPositiveAmount);
    }
    let (user, existing) = lock_user_and_find(conn, user_id, cause.idempotency_key).await?;
    if let Some(entry) = existing {
        let shortfall = amount + entry.delta;
        return Ok((
            Some(Applied {
                entry,
                replayed: true,
            }),
            shortfall.max(0),
        ));
    }
    let take = match (user.balance_credits >= amount, partial) {
        (true, _) => amount,
        (false, true) => user.balance_credits,
        (false, false) => {
            return Err(LedgerError::Insufficient {
                required: amount,
                available: user.balance_credits,
            });
        }
    };
    let shortfall = amount - take;
    if take == 0 {
        // Nothing to take: a zero debit is not a movement.
        return Ok((None, shortfall));
    }
    let entry = write(conn, &user, -take, reason, cause).await?;
    Ok((
        Some(Applied {
            entry,
            replayed: false,
        }),
        shortfall,
    ))
}

/// Charges `price` credits for an action, using a free monthly action first when allowed.
pub async fn charge(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    price: i64,
    free_limit: i32,
    today: NaiveDate,
    cause: Cause<'_>,
) -> Result<Charged, LedgerError> {
    if price <= 0 {
        return Err(LedgerError::NonPositiveAmount);
    }
    let (user, existing) = lock_user_and_find(conn, user_id, cause.idempotency_key).await?;
    if let Some(entry) = existing {
        return charged_from(entry, true);
    }
    let allowance = Allowance::on(
        today,
        user.free_actions_used,
        user.free_period_start,
        free_limit,
    );
    match credits::decide_charge(price, user.balance_credits, &allowance) {
        ChargeDecision::Insufficient {
            required,
            available,
        } => Err(LedgerError::Insufficient {
            required,
            available,
        }),
        ChargeDecision::TakeCredits(amount) => {
            let entry = write(conn, &user, -amount, Reason::Charge, cause).await?;
            charged_from(entry, false)
        }
        ChargeDecision::UseFreeAction => {
            let conn: &AsyncPgConnection = conn;
            let update = diesel::update(users::table.find(user_id))
                .set((
                    users::free_actions_used.eq(allowance.used + 1),
                    users::free_period_start.eq(credits::month_start(today)),
                    users::updated_at.eq(Utc::now()),
                ))
                .prepared()
                .execute(&mut &*conn);
            let entry = insert(
                conn,
                &user,
                0,
                user.balance_credits,
                Reason::FreeAllowance,
                cause,
            );
            let (_, entry) = futures_util::future::try_join(update, entry).await?;
            charged_from(entry, false)
        }
    }
}

/// Refunds the charge recorded under `charge_key`, exactly once. Returns `None` when there is
/// no such charge. A refunded free action is given back if its month is still current.
pub async fn refund(
    conn: &mut AsyncPgConnection,
    charge_key: &str,
    today: NaiveDate,
) -> Result<Option<Applied>, LedgerError> {
    let Some(charge) = credit_ledger::table
        .filter(credit_ledger::idempotency_key.eq(charge_key))
        .select(LedgerEntry::as_select())
        .first(conn)
        .await
        .optional()?
    else {
        return Ok(None);
    };
    if !matches!(
        Reason::parse(&charge.reason),
        Some(Reason::Charge | Reason::FreeAllowance)
    ) {
        return Err(LedgerError::KeyReused(charge_key.to_owned()));
    }
    let key = refund_key(charge_key);
    let cause = Cause {
        ref_type: charge.ref_type.as_deref(),
        ref_id: charge.ref_id.as_deref(),
        idempotency_key: &key,
    };
    let (user, existing) = lock_user_and_find(conn, charge.user_id, &key).await?;
    if let Some(entry) = existing {
        return Ok(Some(Applied {
            entry,
            replayed: true,
        }));
    }
    let entry = if charge.delta < 0 {
        write(conn, &user, -charge.delta, Reason::Refund, cause).await?
    } else {
        let charged_in = credits::month_start(charge.created_at.date_naive());
        if charged_in == credits::month_start(today)
            && user.free_period_start == charged_in
            && user.free_actions_used > 0
        {
            diesel::update(users::table.find(user.id))
                .set((
                    users::free_actions_used.eq(user.free_actions_used - 1),
                    users::updated_at.eq(Utc::now()),
                ))
                .prepared()
                .execute(conn)
                .await?;
        }
        insert(conn, &user, 0, user.balance_credits, Reason::Refund, cause).await?
    };
    Ok(Some(Applied {
        entry,
        replayed: false,
    }))
}

pub async fn balance(conn: &mut AsyncPgConnection, user_id: UserId) -> QueryResult<i64> {
    users::table
        .find(user_id)
        .select(users::balance_credits)
        .first(conn)
        .await
}

/// A page of a user's entries, newest first, strictly older than `before_id` when given.
pub async fn list(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    before_id: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<LedgerEntry>> {
    let mut query = credit_ledger::table
        .filter(credit_ledger::user_id.eq(user_id))
        .select(LedgerEntry::as_select())
        .order(credit_ledger::id.desc())
        .limit(limit)
        .into_boxed();
    if let Some(before) = before_id {
        query = query.filter(credit_ledger::id.lt(before));
    }
    query.load(conn).await
}

fn charged_from(entry: LedgerEntry, replayed: bool) -> Result<Charged, LedgerError> {
    let paid_with = match Reason::parse(&entry.reason) {
        Some(Reason::FreeAllowance) => PaidWith::FreeAllowance,
        Some(Reason::Charge) => PaidWith::Credits,
        _ => return Err(LedgerError::KeyReused(entry.idempotency_key)),
    };
    Ok(Charged {
        credits_spent: -entry.delta,
        paid_with,
        entry,
        replayed,
    })
}

/// Locks the user, then reads the entry already written under `key`, if any (a key used for
/// another user is an error). Both statements go out at once (pipelined); the server runs them
/// in order, so the read sees every entry committed before the lock was granted.
///
/// `FOR NO KEY UPDATE`: the ledger changes no key of the user, so rows that merely reference the
/// user (a chat session, a generation: their foreign keys take `FOR KEY SHARE`) earlier in the
/// same transaction do not deadlock two requests of one user against each other, as `FOR UPDATE`
/// did. Ledger writers still exclude each other.
async fn lock_user_and_find(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    key: &str,
) -> Result<(User, Option<LedgerEntry>), LedgerError> {
    let conn: &AsyncPgConnection = conn;
    let lock = users::table
        .find(user_id)
        .for_no_key_update()
        .select(User::as_select())
        .first::<User>(&mut &*conn);
    let find = async {
        credit_ledger::table
            .filter(credit_ledger::idempotency_key.eq(key))
            .select(LedgerEntry::as_select())
            .first::<LedgerEntry>(&mut &*conn)
            .await
            .optional()
    };
    let (user, found) = futures_util::future::try_join(lock, find).await?;
    match found {
        Some(entry) if entry.user_id != user_id => Err(LedgerError::KeyReused(key.to_owned())),
        other => Ok((user, other)),
    }
}

/// Moves the balance by `delta` (the row is locked) and records it.
async fn write(
    conn: &mut AsyncPgConnection,
    user: &User,
    delta: i64,
    reason: Reason,
    cause: Cause<'_>,
) -> Result<LedgerEntry, LedgerError> {
    let balance_after = user
        .balance_credits
        .checked_add(delta)
        .ok_or(LedgerError::Overflow)?;
    if balance_after < 0 {
        return Err(LedgerError::Insufficient {
            required: -delta,
            available: user.balance_credits,
        });
    }
    // Sent together (pipelined); one fails, the transaction rolls back with both.
    let conn: &AsyncPgConnection = conn;
    let update = diesel::update(users::table.find(user.id))
        .set((
            users::balance_credits.eq(balance_after),
            users::updated_at.eq(Utc::now()),
        ))
        .prepared()
        .execute(&mut &*conn);
    let entry = insert(conn, user, delta, balance_after, reason, cause);
    let (_, entry) = futures_util::future::try_join(update, entry).await?;
    Ok(entry)
}

async fn insert(
    mut conn: &AsyncPgConnection,
    user: &User,
    delta: i64,
    balance_after: i64,
    reason: Reason,
    cause: Cause<'_>,
) -> QueryResult<LedgerEntry> {
    diesel::insert_into(credit_ledger::table)
        .values((
            credit_ledger::user_id.eq(user.id),
            credit_ledger::delta.eq(delta),
            credit_ledger::balance_after.eq(balance_after),
            credit_ledger::reason.eq(reason.as_str()),
            credit_ledger::ref_type.eq(cause.ref_type),
            credit_ledger::ref_id.eq(cause.ref_id),
            credit_ledger::idempotency_key.eq(cause.idempotency_key),
            // The application's clock, which also dates the free allowance (`today`): a refund
            // reads the month of its charge from here, and the database's clock may differ.
            credit_ledger::created_at.eq(Utc::now()),
        ))
        .returning(LedgerEntry::as_returning())
        .prepared()
        .get_result(&mut conn)
        .await
}

/// How many entries the user's ledger holds.
pub async fn count(conn: &mut AsyncPgConnection, user_id: UserId) -> QueryResult<i64> {
    credit_ledger::table
        .filter(credit_ledger::user_id.eq(user_id))
        .count()
        .get_result(conn)
        .await
}

/// The sum of all movements per reason (credits granted, spent, refunded, ...).
pub async fn sum_by_reason(conn: &mut AsyncPgConnection) -> QueryResult<Vec<(String, i64)>> {
    diesel::sql_query("SELECT reason, sum(delta)::int8 AS total FROM credit_ledger GROUP BY reason")
        .load::<ReasonSum>(conn)
        .await
        .map(|rows| rows.into_iter().map(|r| (r.reason, r.total)).collect())
}

#[derive(diesel::QueryableByName)]
struct ReasonSum {
    #[diesel(sql_type = diesel::sql_types::Text)]
    reason: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    total: i64,
}
