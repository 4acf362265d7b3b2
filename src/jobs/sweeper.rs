//! Retention: erases expired uploads (object first, then the row is marked deleted), in
//! batches, idempotently, and safely beside other workers (rows are claimed with SKIP LOCKED).

use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection as _;

use crate::db::uploads;
use crate::state::AppState;

const BATCH: i64 = 200;

/// Erases every upload expired at `now`; returns how many were erased.
pub async fn sweep_uploads(state: &AppState, now: DateTime<Utc>) -> anyhow::Result<usize> {
    let mut total = 0;
    loop {
        let mut conn = state.db.get().await?;
        let storage = state.storage.clone();
        let erased = conn
            .transaction(async |conn| {
                let batch = uploads::lock_expired(conn, now, BATCH).await?;
                for upload in &batch {
                    storage.delete(&upload.storage_key).await?;
                }
                let ids: Vec<_> = batch.iter().map(|u| u.id).collect();
                uploads::mark_deleted(conn, &ids, now).await?;
                anyhow::Ok(batch.len())
            })
            .await?;
        total += erased;
        if erased < BATCH as usize {
            break;
        }
    }
    if total > 0 {
        tracing::info!(erased = total, "retention sweep erased expired uploads");
        metrics::counter!("retention_erased_total", "kind" => "upload").increment(total as u64);
    }
    Ok(total)
}
