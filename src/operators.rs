//! The operators' use cases on one user, shared by the admin API (`/admin/users/...`) and the
//! bot's admin commands: look up, move credits through the ledger, block and unblock. Each
//! change is written to the audit trail with its actor, in the change's transaction; the
//! `*_in` functions run inside the caller's transaction (the bot adds its update record to it).

use crate::domain::ids::{TelegramId, UserId};
use diesel_async::AsyncPgConnection;
use serde_json::json;

use crate::db::ledger::{self, Applied};
use crate::db::models::{Generation, User};
use crate::db::{admin_audit, generations, users};
use crate::domain::credits::Reason;
use crate::domain::text;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::realtime;
use crate::realtime::generations::notify_failed;
use crate::state::AppState;

/// The most credits one operator's move takes either way (a typo is not a fortune).
pub const MAX_AMOUNT: i64 = 1_000_000_000;

pub async fn find_user(conn: &mut AsyncPgConnection, telegram_id: TelegramId) -> AppResult<User> {
    users::find_by_telegram_id(conn, telegram_id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no user with Telegram id {telegram_id}")))
}

/// A checked credit move: the amount (1 to a billion either way) and the reason (1–200
/// characters once cleaned).
#[derive(Debug, Clone)]
pub struct CreditMove {
    pub amount: i64,
    pub reason: String,
}

impl CreditMove {
    pub fn new(amount: i64, reason: &str) -> AppResult<Self> {
        let reason = text::clean(reason, 200).ok().ok_or_else(|| {
            AppError::unprocessable(
                ErrorCode::InvalidReason,
                "give a reason of 1-200 characters",
            )
        })?;
        if amount == 0 || !(-MAX_AMOUNT..=MAX_AMOUNT).contains(&amount) {
            return Err(AppError::unprocessable(
                ErrorCode::InvalidAmount,
                "the amount must be 1 to 1 000 000 000 credits, either way",
            ));
        }
        Ok(Self { amount, reason })
    }
}

/// Grants or takes credits through the ledger, once per `key` for the user; a debit never goes
/// below zero (402). Returns the ledger entry (replayed when `key` was applied before) and
/// the balance after.
pub async fn move_credits_in(
    conn: &mut AsyncPgConnection,
    actor: &str,
    telegram_id: TelegramId,
    change: &CreditMove,
    key: &str,
) -> AppResult<(Applied, i64)> {
    let user = find_user(conn, telegram_id).await?;
    let amount = change.amount;
    let ledger_key = format!("admin:{}:{key}", user.id);
    let cause = ledger::Cause::new("admin", actor, &ledger_key);
    let applied = if amount > 0 {
        ledger::grant(conn, user.id, amount, Reason::AdminGrant, cause).await?
    } else {
        ledger::debit(conn, user.id, -amount, Reason::AdminDebit, false, cause)
            .await?
            .0
            .ok_or_else(|| AppError::InsufficientCredits {
                required: -amount,
                available: 0,
            })?
    };
    let fingerprint = credits_fingerprint(&json!(amount), &json!(change.reason));
    if applied.replayed {
        // The first move's answer, only for the same move (422 `idempotency_key_reused`).
        if let Some(first) = admin_audit::details_for_key(conn, "credits", user.id, key).await? {
            let stored = credits_fingerprint(&first["amount"], &first["reason"]);
            crate::domain::idempotency::check(Some(&stored), &fingerprint)?;
        }
    } else {
        let details = json!({"amount": amount, "reason": change.reason, "idempotency_key": key});
        admin_audit::record(conn, actor, "credits", user.id, details).await?;
    }
    let balance = ledger::balance(conn, user.id).await?;
    Ok((applied, balance))
}

fn credits_fingerprint(amount: &serde_json::Value, reason: &serde_json::Value) -> String {
    crate::domain::idempotency::fingerprint(&json!({"amount": amount, "reason": reason}))
}

/// A block or unblock as committed; hand it to [`after_block`] once the transaction is.
#[derive(Debug)]
pub struct BlockChange {
    pub user_id: UserId,
    pub blocked: bool,
    /// Generations that had not started, canceled and refunded by a block.
    pub canceled: Vec<Generation>,
}

/// Blocks (canceling and refunding the generations that have not started) or unblocks.
pub async fn set_blocked_in(
    conn: &mut AsyncPgConnection,
    actor: &str,
    telegram_id: TelegramId,
    blocked: bool,
) -> AppResult<BlockChange> {
    let user = find_user(conn, telegram_id).await?;
    users::lock(conn, user.id).await?;
    users::set_blocked(conn, user.id, blocked).await?;
    let mut canceled = Vec::new();
    if blocked {
        for g in generations::active_for_user(conn, user.id).await? {
            let locked = generations::lock(conn, g.id).await?;
            if let Some(g) = locked {
                let why = "canceled: the account was blocked";
                if let Some(done) = crate::generations::cancel_queued(conn, &g, why).await? {
                    canceled.push(done);
                }
            }
        }
    }
    let action = if blocked { "block" } else { "unblock" };
    let details = json!({"canceled_generations": canceled.len()});
    admin_audit::record(conn, actor, action, user.id, details).await?;
    Ok(BlockChange {
        user_id: user.id,
        blocked,
        canceled,
    })
}

/// After a committed block: the canceled generations' watchers are told, and the user's
/// sockets close.
pub async fn after_block(state: &AppState, change: &BlockChange) {
    for g in &change.canceled {
        notify_failed(state, g, true);
    }
    if change.blocked
        && let Err(e) = realtime::disconnect_blocked(state, change.user_id).await
    {
        // Their sockets then close when their access token expires.
        tracing::warn!(error = %format!("{e:#}"), "closing a blocked user's sockets failed");
    }
    tracing::info!(
        blocked = change.blocked,
        canceled = change.canceled.len(),
        "an operator changed a block"
    );
}
