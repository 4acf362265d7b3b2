//! `/clear` and `/delete` once confirmed: erase the user's photos and chats, or the whole
//! account (the same erasure as `DELETE /api/v1/me`, which is called as it is).

use chrono::Utc;
use diesel_async::AsyncConnection as _;

use crate::db::models::User;
use crate::db::{bot as bot_db, generations, ledger, privacy, users};
use crate::error::{AppError, AppResult};
use crate::state::AppState;

#[derive(Debug)]
pub struct Cleared {
    /// Uploaded photos and generation results.
    pub photos: usize,
    pub chat_sessions: usize,
}

/// Erases the user's photos (uploads, generations and their images) and assistant chats, and
/// records `update_id` as handled, in one transaction; None when it was handled before. The
/// account, its balance and its ledger stay. Generations still running are refunded first.
pub async fn clear(state: &AppState, update_id: i64, user: &User) -> AppResult<Option<Cleared>> {
    let mut conn = state.db.get().await?;
    let storage = state.storage.clone();
    let today = Utc::now().date_naive();
    conn.transaction(async |conn| -> AppResult<Option<Cleared>> {
        if !bot_db::claim_update(conn, update_id).await? {
            return Ok(None);
        }
        users::lock(conn, user.id).await?;
        for g in generations::active_for_user(conn, user.id).await? {
            ledger::refund(conn, &g.charge_key, today)
                .await
                .map_err(|e| AppError::Internal(e.into()))?;
        }
        let results = privacy::delete_generations(conn, user.id).await?;
        let chat_sessions = privacy::delete_chat_sessions(conn, user.id).await?;
        let photos = privacy::delete_uploads(conn, user.id).await?;
        let keys = results.iter().flatten().chain(
            photos
                .iter()
                .filter(|(_, gone)| gone.is_none())
                .map(|(k, _)| k),
        );
        // Objects before the rows commit: a failure leaves rows to erase again, never an
        // object nobody can find.
        for key in keys {
            storage.delete(key).await.map_err(AppError::Internal)?;
        }
        Ok(Some(Cleared {
            photos: photos.len() + results.iter().flatten().count(),
            chat_sessions,
        }))
    })
    .await
}

/// Erases the whole account with `DELETE /api/v1/me`'s use case (which forgets the chat too).
pub async fn delete(state: &AppState, user: User) -> AppResult<()> {
    crate::privacy::erase(state, &user).await?;
    metrics::counter!("privacy_erasures_total").increment(1);
    Ok(())
}
