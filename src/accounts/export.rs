//! The export of everything Atelier holds about a user (`GET /api/v1/me/export`), read from
//! every table that names them. A right a block does not take away.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use super::Balance;
use crate::db::chat_sessions::{self, ChatSession};
use crate::db::models::{Generation, LedgerEntry, Payment, Upload, User};
use crate::db::{generations, ledger, payments, referrals, uploads};
use crate::domain::assistant::StoredMessage;
use crate::error::AppResult;
use crate::state::AppState;

/// Everything held about one user.
#[derive(Debug)]
pub struct Export {
    pub exported_at: DateTime<Utc>,
    pub balance: Balance,
    /// Photos not erased yet.
    pub uploads: Vec<Upload>,
    pub generations: Vec<Generation>,
    /// Newest first.
    pub ledger: Vec<LedgerEntry>,
    pub payments: Vec<Payment>,
    pub chat_sessions: Vec<SessionHistory>,
    /// Users who signed up through this user's link, and the credits that earned.
    pub referrals_invited: i64,
    pub referral_credits_earned: i64,
}

/// An assistant conversation with its whole history, and the user's photos it refers to
/// (those not erased yet).
#[derive(Debug)]
pub struct SessionHistory {
    pub session: ChatSession,
    /// Oldest first.
    pub messages: Vec<StoredMessage>,
    pub photos: HashMap<Uuid, Upload>,
}

/// Reads everything held about `user`.
pub async fn export(state: &AppState, user: &User) -> AppResult<Export> {
    let mut conn = state.db.get().await?;
    let now = Utc::now();
    let (invited, earned) = referrals::stats(&mut conn, user.id).await?;
    let mut sessions = Vec::new();
    for summary in chat_sessions::list(&mut conn, user.id, None, i64::MAX).await? {
        if let Some(session) =
            chat_sessions::find_owned(&mut conn, user.id, summary.session_id).await?
        {
            sessions.push(session_history(&mut conn, session).await?);
        }
    }
    Ok(Export {
        exported_at: now,
        balance: Balance::of(user, state.settings.free_actions_per_month, now),
        uploads: uploads::list_for_user(&mut conn, user.id).await?,
        generations: generations::list(&mut conn, user.id, None, i64::MAX).await?,
        ledger: ledger::list(&mut conn, user.id, None, i64::MAX).await?,
        payments: payments::list_for_user(&mut conn, user.id).await?,
        chat_sessions: sessions,
        referrals_invited: invited,
        referral_credits_earned: earned,
    })
}

async fn session_history(
    conn: &mut AsyncPgConnection,
    session: ChatSession,
) -> AppResult<SessionHistory> {
    let messages = chat_sessions::messages(conn, session.session_id).await?;
    let ids = session
        .upload_id
        .into_iter()
        .chain(messages.iter().filter_map(|m| m.upload_id));
    let mut photos = HashMap::new();
    for id in ids {
        if photos.contains_key(&id) {
            continue;
        }
        if let Some(u) = uploads::find_owned(conn, session.user_id, id).await? {
            photos.insert(id, u);
        }
    }
    Ok(SessionHistory {
        session,
        messages,
        photos,
    })
}
