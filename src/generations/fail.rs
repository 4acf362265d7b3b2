//! A generation that failed for good: marked failed and its charge refunded in one
//! transaction, exactly once; its owner hears of it only after the commit (their sockets, and a
//! Telegram notice enqueued in the same transaction).

use chrono::Utc;
use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use crate::db::{generations, ledger};
use crate::domain::vocabulary::GenerationStatus;
use crate::state::AppState;

/// Marks generation `id` failed with `code` and refunds its charge, in the caller's
/// transaction. A generation that succeeded stays so (the user has the result: a later failure
/// of its job refunds nothing); one gone or already refunded is left as it is.
pub async fn fail_and_refund(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    code: &str,
    detail: &str,
) -> Result<(), ledger::LedgerError> {
    let Some(g) = generations::lock(conn, id).await? else {
        return Ok(());
    };
    if g.status == GenerationStatus::Succeeded {
        return Ok(());
    }
    generations::mark_finished_unsuccessfully(conn, g.id, GenerationStatus::Failed, code, detail)
        .await?;
    // Refunded in the same transaction as the failure (a second call finds it refunded).
    let refunded = ledger::refund(conn, &g.charge_key, Utc::now().date_naive()).await?;
    if let Some(r) = refunded.filter(|r| !r.replayed) {
        crate::notices::generation_failed(conn, g.user_id, g.id, r.entry.delta).await?;
    }
    tracing::warn!(generation = %g.id, code, detail, "generation failed; charge refunded");
    Ok(())
}

/// Tells the owner's sockets that generation `id` failed and was refunded, once both are
/// committed; a generation that is not failed is not announced.
pub async fn announce_failed(state: &AppState, id: Uuid) {
    let found = match state.db.get().await {
        Ok(mut conn) => generations::find(&mut conn, id).await,
        Err(e) => {
            tracing::warn!(error = %e, "no connection to announce a failed generation");
            return;
        }
    };
    match found {
        Ok(Some(g)) if g.status == GenerationStatus::Failed => {
            crate::realtime::generations::notify_failed(state, &g, true);
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not read the failed generation"),
    }
}
