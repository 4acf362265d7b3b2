//! The credit ledger against the real database: idempotency, the free allowance, refunds,
//! the append-only rule, and a property test of concurrent movements.

use atelier::db::ledger::{self, Cause, LedgerError};
use atelier::db::models::LedgerEntry;
use atelier::db::schema::{credit_ledger, users};
use atelier::domain::credits::{PaidWith, Reason};
use atelier::domain::ids::UserId;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use proptest::prelude::*;

use crate::helpers::{NewUser, TestApp, spawn_app_with};

fn today() -> chrono::NaiveDate {
    chrono::Utc::now().date_naive()
}

async fn entries(conn: &mut AsyncPgConnection, user_id: UserId) -> Vec<LedgerEntry> {
    credit_ledger::table
        .filter(credit_ledger::user_id.eq(user_id))
        .order(credit_ledger::id)
        .select(LedgerEntry::as_select())
        .load(conn)
        .await
        .unwrap()
}

async fn new_user(app: &TestApp, telegram_id: i64) -> UserId {
    app.login(telegram_id).await;
    app.user_id(telegram_id).await
}

#[tokio::test]
async fn grants_are_idempotent() {
    let app = spawn_app_with(&[]).await;
    let uid = new_user(&app, 1).await;
    let mut conn = app.conn().await;
    let first = ledger::grant(
        &mut conn,
        uid,
        5,
        Reason::AdminGrant,
        Cause::new("t", "1", "grant-a"),
    )
    .await
    .unwrap();
    assert!(!first.replayed);
    assert_eq!(first.entry.balance_after, 5);
    let again = ledger::grant(
        &mut conn,
        uid,
        5,
        Reason::AdminGrant,
        Cause::new("t", "1", "grant-a"),
    )
    .await
    .unwrap();
    assert!(again.replayed);
    assert_eq!(again.entry.id, first.entry.id);
    assert_eq!(ledger::balance(&mut conn, uid).await.unwrap(), 5);
    assert_eq!(entries(&mut conn, uid).await.len(), 1);

    let other = new_user(&app, 2).await;
    let err = ledger::grant(
        &mut conn,
        other,
        5,
        Reason::AdminGrant,
        Cause::new("t", "1", "grant-a"),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, LedgerError::KeyReused(_)), "{err:?}");
    assert!(matches!(
        ledger::grant(
            &mut conn,
            uid,
            0,
            Reason::AdminGrant,
            Cause::new("t", "1", "zero")
        )
        .await,
        Err(LedgerError::NonPositiveAmount)
    ));

    // At the top of the range, a grant that would overflow is refused and writes nothing.
    diesel::update(users::table.find(other))
        .set(users::balance_credits.eq(i64::MAX - 1))
        .execute(&mut conn)
        .await
        .unwrap();
    let err = ledger::grant(
        &mut conn,
        other,
        2,
        Reason::AdminGrant,
        Cause::new("t", "2", "grant-top"),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, LedgerError::Overflow), "{err:?}");
    assert_eq!(
        ledger::balance(&mut conn, other).await.unwrap(),
        i64::MAX - 1
    );
    assert!(entries(&mut conn, other).await.is_empty());
}

#[tokio::test]
async fn free_actions_are_used_first_then_credits() {
    let app = spawn_app_with(&[("FREE_ACTIONS_PER_MONTH", "2")]).await;
    let uid = new_user(&app, 1).await;
    let mut conn = app.conn().await;
    ledger::grant(
        &mut conn,
        uid,
        3,
        Reason::Purchase,
        Cause::new("payment", "p1", "p1"),
    )
    .await
    .unwrap();
    let mut paid = Vec::new();
    for i in 0..4 {
        let key = format!("gen-{i}");
        match ledger::charge(
            &mut conn,
            uid,
            2,
            2,
            today(),
            Cause::new("generation", &key, &key),
        )
        .await
        {
            Ok(c) => paid.push((c.paid_with, c.credits_spent)),
            Err(LedgerError::Insufficient {
                required,
                available,
            }) => {
                assert_eq!((required, available), (2, 1));
                paid.push((PaidWith::Credits, -1));
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(
        paid,
        vec![
            (PaidWith::FreeAllowance, 0),
            (PaidWith::FreeAllowance, 0),
            (PaidWith::Credits, 2),
            (PaidWith::Credits, -1)
        ]
    );
    assert_eq!(ledger::balance(&mut conn, uid).await.unwrap(), 1);

    // Over HTTP the allowance is shown as used up, resetting on the first of next month.
    let balance = app.user_with(NewUser::id(1)).await.balance().await;
    assert_eq!(balance.balance_credits, 1);
    assert_eq!(balance.free_actions_left, 0);
    assert_eq!(balance.free_actions_limit, 2);
    let reset = atelier::domain::credits::next_month_start(today());
    assert_eq!(balance.free_actions_reset_at, format!("{reset}T00:00:00Z"));
}

#[tokio::test]
async fn refunds_happen_exactly_once_and_return_free_actions() {
    let app = spawn_app_with(&[("FREE_ACTIONS_PER_MONTH", "1")]).await;
    let uid = new_user(&app, 1).await;
    let mut conn = app.conn().await;
    ledger::grant(
        &mut conn,
        uid,
        4,
        Reason::AdminGrant,
        Cause::new("t", "g", "g"),
    )
    .await
    .unwrap();
    let free = ledger::charge(
        &mut conn,
        uid,
        2,
        1,
        today(),
        Cause::new("generation", "a", "charge-a"),
    )
    .await
    .unwrap();
    assert_eq!(free.paid_with, PaidWith::FreeAllowance);
    let paid = ledger::charge(
        &mut conn,
        uid,
        2,
        1,
        today(),
        Cause::new("generation", "b", "charge-b"),
    )
    .await
    .unwrap();
    assert_eq!(paid.paid_with, PaidWith::Credits);
    assert_eq!(ledger::balance(&mut conn, uid).await.unwrap(), 2);

    let r1 = ledger::refund(&mut conn, "charge-b", today())
        .await
        .unwrap()
        .unwrap();
    assert!(!r1.replayed);
    assert_eq!(r1.entry.delta, 2);
    assert_eq!(r1.entry.ref_id.as_deref(), Some("b"));
    let r2 = ledger::refund(&mut conn, "charge-b", today())
        .await
        .unwrap()
        .unwrap();
    assert!(r2.replayed);
    assert_eq!(ledger::balance(&mut conn, uid).await.unwrap(), 4);

    let used = || users::table.find(uid).select(users::free_actions_used);
    assert_eq!(used().first::<i32>(&mut conn).await.unwrap(), 1);
    ledger::refund(&mut conn, "charge-a", today())
        .await
        .unwrap()
        .unwrap();
    ledger::refund(&mut conn, "charge-a", today())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(used().first::<i32>(&mut conn).await.unwrap(), 0);
    assert!(
        ledger::refund(&mut conn, "no-such-charge", today())
            .await
            .unwrap()
            .is_none()
    );
    // A refund cannot be refunded.
    assert!(
        ledger::refund(&mut conn, "refund:charge-b", today())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn partial_debits_report_the_shortfall() {
    let app = spawn_app_with(&[]).await;
    let uid = new_user(&app, 1).await;
    let mut conn = app.conn().await;
    ledger::grant(
        &mut conn,
        uid,
        3,
        Reason::Purchase,
        Cause::new("payment", "p", "p"),
    )
    .await
    .unwrap();
    let err = ledger::debit(
        &mut conn,
        uid,
        5,
        Reason::AdminDebit,
        false,
        Cause::new("t", "d", "d0"),
    )
    .await
    .unwrap_err();
    assert!(matches!(
        err,
        LedgerError::Insufficient {
            required: 5,
            available: 3
        }
    ));
    let (applied, shortfall) = ledger::debit(
        &mut conn,
        uid,
        5,
        Reason::AdminDebit,
        true,
        Cause::new("t", "d", "d1"),
    )
    .await
    .unwrap();
    assert_eq!((applied.unwrap().entry.delta, shortfall), (-3, 2));
    let (nothing, shortfall) = ledger::debit(
        &mut conn,
        uid,
        5,
        Reason::AdminDebit,
        true,
        Cause::new("t", "d", "d2"),
    )
    .await
    .unwrap();
    assert!(nothing.is_none());
    assert_eq!(shortfall, 5);
    assert_eq!(ledger::balance(&mut conn, uid).await.unwrap(), 0);
}

#[tokio::test]
async fn the_database_guards_the_invariants() {
    let app = spawn_app_with(&[]).await;
    let uid = new_user(&app, 1).await;
    let mut conn = app.conn().await;
    ledger::grant(
        &mut conn,
        uid,
        1,
        Reason::AdminGrant,
        Cause::new("t", "g", "g"),
    )
    .await
    .unwrap();
    let negative = conn
        .batch_execute(&format!(
            "UPDATE users SET balance_credits = -1 WHERE id = {uid}"
        ))
        .await;
    assert!(negative.is_err(), "a negative balance was accepted");
    let rewrite = conn
        .batch_execute("UPDATE credit_ledger SET delta = 100")
        .await;
    assert!(rewrite.unwrap_err().to_string().contains("append-only"));
    assert!(
        conn.batch_execute("DELETE FROM credit_ledger")
            .await
            .is_err()
    );
}

#[derive(Debug, Clone)]
enum Op {
    Grant { amount: i64, key: u8 },
    Charge { price: i64, key: u8 },
    Refund { key: u8 },
    Debit { amount: i64, key: u8, partial: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1..20i64, 0..6u8).prop_map(|(amount, key)| Op::Grant { amount, key }),
        (1..4i64, 0..8u8).prop_map(|(price, key)| Op::Charge { price, key }),
        (0..8u8).prop_map(|key| Op::Refund { key }),
        (1..10i64, 0..4u8, any::<bool>()).prop_map(|(amount, key, partial)| Op::Debit {
            amount,
            key,
            partial
        }),
    ]
}

/// Applies one operation in its own transaction; returns whether it wrote a new row.
async fn apply(url: &str, uid: UserId, case: &str, op: Op) -> bool {
    let mut conn = AsyncPgConnection::establish(url).await.unwrap();
    let today = today();
    conn.transaction(async |conn| -> Result<bool, LedgerError> {
        Ok(match op {
            Op::Grant { amount, key } => {
                let k = format!("{case}:g{key}");
                !ledger::grant(
                    conn,
                    uid,
                    amount,
                    Reason::AdminGrant,
                    Cause::new("t", "g", &k),
                )
                .await?
                .replayed
            }
            Op::Charge { price, key } => {
                let k = format!("{case}:c{key}");
                match ledger::charge(conn, uid, price, 2, today, Cause::new("t", "c", &k)).await {
                    Ok(c) => !c.replayed,
                    Err(LedgerError::Insufficient { .. }) => false,
                    Err(e) => return Err(e),
                }
            }
            Op::Refund { key } => {
                let k = format!("{case}:c{key}");
                ledger::refund(conn, &k, today)
                    .await?
                    .is_some_and(|r| !r.replayed)
            }
            Op::Debit {
                amount,
                key,
                partial,
            } => {
                let k = format!("{case}:d{key}");
                match ledger::debit(
                    conn,
                    uid,
                    amount,
                    Reason::AdminDebit,
                    partial,
                    Cause::new("t", "d", &k),
                )
                .await
                {
                    Ok((applied, _)) => applied.is_some_and(|a| !a.replayed),
                    Err(LedgerError::Insufficient { .. }) => false,
                    Err(e) => return Err(e),
                }
            }
        })
    })
    .await
    .unwrap()
}

/// Random grants, charges, refunds and debits, run concurrently with colliding idempotency
/// keys: the balance never goes negative, equals the sum of the ledger, and every key and
/// every refund is applied at most once.
#[test]
fn concurrent_movements_keep_the_ledger_consistent() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(spawn_app_with(&[("FREE_ACTIONS_PER_MONTH", "2")]));
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 24,
        ..ProptestConfig::default()
    });
    let next_id = std::sync::atomic::AtomicI64::new(1000);
    runner
        .run(&prop::collection::vec(op(), 1..40), |ops| {
            let telegram_id = next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let app = &app;
            rt.block_on(async move {
                let uid = new_user(app, telegram_id).await;
                let case = uuid::Uuid::new_v4().simple().to_string();
                let tasks: Vec<_> = ops
                    .iter()
                    .cloned()
                    .map(|op| {
                        let url = app.database_url.clone();
                        let case = case.clone();
                        tokio::spawn(async move { apply(&url, uid, &case, op).await })
                    })
                    .collect();
                let mut written = 0;
                for t in tasks {
                    written += usize::from(t.await.unwrap());
                }
                let mut conn = app.conn().await;
                let rows = entries(&mut conn, uid).await;
                let (balance, free_used): (i64, i32) = users::table
                    .find(uid)
                    .select((users::balance_credits, users::free_actions_used))
                    .first(&mut conn)
                    .await
                    .unwrap();
                prop_assert!(balance >= 0);
                prop_assert_eq!(balance, rows.iter().map(|r| r.delta).sum::<i64>());
                prop_assert_eq!(rows.len(), written, "every applied movement is one row");
                let mut running = 0;
                for r in &rows {
                    running += r.delta;
                    prop_assert_eq!(
                        r.balance_after,
                        running,
                        "balance_after chain broken at {}",
                        r.id
                    );
                }
                let charges: std::collections::HashMap<&str, &LedgerEntry> = rows
                    .iter()
                    .filter(|r| r.reason == "charge" || r.reason == "free_allowance")
                    .map(|r| (r.idempotency_key.as_str(), r))
                    .collect();
                let mut free_returned = 0;
                for r in rows.iter().filter(|r| r.reason == "refund") {
                    let charge = charges.get(r.idempotency_key.trim_start_matches("refund:"));
                    prop_assert!(charge.is_some(), "refund without its charge");
                    prop_assert_eq!(r.delta, -charge.map_or(0, |c| c.delta));
                    free_returned += i32::from(r.delta == 0);
                }
                let free_taken =
                    rows.iter().filter(|r| r.reason == "free_allowance").count() as i32;
                prop_assert_eq!(free_used, free_taken - free_returned);
                prop_assert!(free_taken <= 2 + free_returned);
                Ok(())
            })
        })
        .unwrap();
}
