//! A charged idempotent action: something a user buys with credits (a generation, a chat turn),
//! applied at most once per client key. One transaction looks the key up, runs the action's
//! checks, charges through the ledger and stores the action; when a concurrent request with the
//! same key commits first, the unique key refuses ours and the winner is read instead.
//!
//! An earlier action is answered only for the same request (`domain::idempotency`).

use crate::domain::ids::UserId;
use std::future::Future;

use chrono::Utc;
use diesel::QueryResult;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{AsyncConnection as _, AsyncPgConnection};
use uuid::Uuid;

use crate::db::ledger;
use crate::domain::credits::PaidWith;
use crate::domain::idempotency;
use crate::error::{AppError, AppResult};

/// Who pays what for an action, and the key that makes it idempotent.
#[derive(Debug, Clone, Copy)]
pub struct Charge<'a> {
    pub user_id: UserId,
    /// The client's key (`client_request_id` or `Idempotency-Key`).
    pub client_key: &'a str,
    /// Of the parsed request: an earlier action is answered only for the same request.
    pub fingerprint: &'a str,
    /// The ledger key is `<scope>:<user id>:<client key>`.
    pub scope: &'static str,
    /// The ledger row's reference type; its reference id is the new action's id.
    pub ref_type: &'static str,
    pub price: i64,
    pub free_limit: i32,
}

impl Charge<'_> {
    /// The ledger's idempotency key of this charge (also stored on the action, for its refund).
    pub fn ledger_key(&self) -> String {
        format!("{}:{}:{}", self.scope, self.user_id, self.client_key)
    }
}

/// What the charge came to, for the action's row.
#[derive(Debug, Clone)]
pub struct Paid {
    /// The new action's id (the ledger row refers to it).
    pub id: Uuid,
    pub charge_key: String,
    pub credits_spent: i64,
    /// `free_allowance` or `credits`.
    pub paid_with: PaidWith,
    pub now: chrono::DateTime<Utc>,
}

/// What running a charged action came to.
#[derive(Debug)]
pub enum Charged<New, Earlier> {
    /// Charged and stored now.
    New(New),
    /// The key was used before, with the same request: nothing charged.
    Earlier(Earlier),
}

/// The parts of an action that differ between kinds; [`run`] puts them in order.
pub trait ChargedAction: Sync {
    /// The stored action, as the key's lookup finds it.
    type Row: Send;
    /// Read together with the key's lookup (pipelined); what the checks need.
    type Context: Send;
    /// What the checks hand on to the insert.
    type Checked: Send;
    /// What the insert makes of a new action.
    type Created: Send;

    /// The unique constraint on the client key, whose violation means another request with
    /// the key won the race; `None`: any unique violation in the transaction.
    const KEY_CONSTRAINT: Option<&'static str>;

    /// The action stored earlier under the client key, if any.
    fn earlier(
        &self,
        conn: &AsyncPgConnection,
    ) -> impl Future<Output = QueryResult<Option<Self::Row>>> + Send;

    /// Read alongside [`Self::earlier`]; its error counts only when there is no earlier action.
    fn context(
        &self,
        conn: &AsyncPgConnection,
    ) -> impl Future<Output = AppResult<Self::Context>> + Send;

    /// Everything that may refuse the action, before it is charged.
    fn check(
        &self,
        conn: &mut AsyncPgConnection,
        context: Self::Context,
    ) -> impl Future<Output = AppResult<Self::Checked>> + Send;

    /// Stores the charged action.
    fn insert(
        &self,
        conn: &mut AsyncPgConnection,
        checked: Self::Checked,
        paid: Paid,
    ) -> impl Future<Output = AppResult<Self::Created>> + Send;

    /// The fingerprint stored with an earlier action (`None` from before fingerprints).
    fn fingerprint(row: &Self::Row) -> Option<&str>;

    /// The answer when the race's winner cannot be read yet.
    fn in_progress() -> AppError;
}

/// Runs `action` once per `charge.client_key`: the earlier action for a key seen before (with
/// the same request), otherwise checked, charged and stored in one transaction.
pub async fn run<A: ChargedAction>(
    conn: &mut AsyncPgConnection,
    charge: &Charge<'_>,
    action: &A,
) -> AppResult<Charged<A::Created, A::Row>> {
    let result = conn
        .transaction(async |conn| -> AppResult<Charged<A::Created, A::Row>> {
            let shared: &AsyncPgConnection = conn;
            let (earlier, context) =
                futures_util::future::join(action.earlier(shared), action.context(shared)).await;
            if let Some(row) = earlier? {
                return Ok(Charged::Earlier(row));
            }
            let checked = action.check(conn, context?).await?;
            let now = Utc::now();
            let id = Uuid::new_v4();
            let id_text = id.to_string();
            let charge_key = charge.ledger_key();
            let cause = ledger::Cause::new(charge.ref_type, &id_text, &charge_key);
            let today = now.date_naive();
            let charged = ledger::charge(
                conn,
                charge.user_id,
                charge.price,
                charge.free_limit,
                today,
                cause,
            )
            .await?;
            let paid = Paid {
                id,
                credits_spent: charged.credits_spent,
                paid_with: charged.paid_with,
                charge_key,
                now,
            };
            Ok(Charged::New(action.insert(conn, checked, paid).await?))
        })
        .await;
    let row = match result {
        Ok(Charged::New(created)) => return Ok(Charged::New(created)),
        Ok(Charged::Earlier(row)) => row,
        Err(AppError::Database(DieselError::DatabaseError(
            DatabaseErrorKind::UniqueViolation,
            info,
        ))) if A::KEY_CONSTRAINT.is_none_or(|c| info.constraint_name() == Some(c)) => {
            // Our transaction rolled back (its charge with it): answer as the winner is answered.
            action.earlier(&*conn).await?.ok_or_else(A::in_progress)?
        }
        Err(e) => return Err(e),
    };
    idempotency::check(A::fingerprint(&row), charge.fingerprint)?;
    Ok(Charged::Earlier(row))
}
