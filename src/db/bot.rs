//! The bot's bookkeeping: Telegram updates already acted on (`bot_updates`), and what the bot
//! knows about each private chat with it (`bot_chats`).

use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::schema::{bot_chats, bot_updates};
use crate::domain::ids::TelegramId;

/// Records `update_id` as handled; false when it was already (Telegram sent it again). Run it
/// in the transaction of the update's effect, so that the two commit together.
pub async fn claim_update(conn: &mut AsyncPgConnection, update_id: i64) -> QueryResult<bool> {
    let inserted = diesel::insert_into(bot_updates::table)
        .values(bot_updates::update_id.eq(update_id))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(inserted == 1)
}

/// The user wrote to the bot: it may write to them from now on (and they are back if they had
/// blocked it). `source` (a /start payload) is kept when none was before.
pub async fn touch_chat(
    conn: &mut AsyncPgConnection,
    telegram_id: TelegramId,
    source: Option<&str>,
) -> QueryResult<()> {
    let now = Utc::now();
    diesel::insert_into(bot_chats::table)
        .values((
            bot_chats::telegram_id.eq(telegram_id),
            bot_chats::start_source.eq(source),
        ))
        .on_conflict(bot_chats::telegram_id)
        .do_update()
        .set((
            bot_chats::blocked_at.eq(None::<chrono::DateTime<Utc>>),
            bot_chats::start_source.eq(diesel::dsl::sql::<
                diesel::sql_types::Nullable<diesel::sql_types::Text>,
            >(
                "coalesce(bot_chats.start_source, excluded.start_source)"
            )),
            bot_chats::updated_at.eq(now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// The user blocked the bot (or `blocked = false`: unblocked it, without writing).
pub async fn set_chat_blocked(
    conn: &mut AsyncPgConnection,
    telegram_id: TelegramId,
    blocked: bool,
) -> QueryResult<()> {
    let now = Utc::now();
    let blocked_at = blocked.then_some(now);
    diesel::insert_into(bot_chats::table)
        .values((
            bot_chats::telegram_id.eq(telegram_id),
            bot_chats::blocked_at.eq(blocked_at),
        ))
        .on_conflict(bot_chats::telegram_id)
        .do_update()
        .set((
            bot_chats::blocked_at.eq(blocked_at),
            bot_chats::updated_at.eq(now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// What the bot knows about its chat with `telegram_id`: `Some(true)` it may write (the user
/// wrote to it and has not blocked it), `Some(false)` blocked, `None` no chat yet.
pub async fn may_write(
    conn: &mut AsyncPgConnection,
    telegram_id: TelegramId,
) -> QueryResult<Option<bool>> {
    bot_chats::table
        .find(telegram_id)
        .select(bot_chats::blocked_at.is_null())
        .first(conn)
        .await
        .optional()
}

/// The acquisition source kept from a /start payload.
pub async fn start_source(
    conn: &mut AsyncPgConnection,
    telegram_id: TelegramId,
) -> QueryResult<Option<String>> {
    Ok(bot_chats::table
        .find(telegram_id)
        .select(bot_chats::start_source)
        .first::<Option<String>>(conn)
        .await
        .optional()?
        .flatten())
}

/// Forgets the chat (the account was erased).
pub async fn forget_chat(
    conn: &mut AsyncPgConnection,
    telegram_id: TelegramId,
) -> QueryResult<usize> {
    diesel::delete(bot_chats::table.find(telegram_id))
        .execute(conn)
        .await
}

/// Forgets handled update ids recorded before `before`.
pub async fn prune_updates(
    conn: &mut AsyncPgConnection,
    before: chrono::DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::delete(bot_updates::table.filter(bot_updates::handled_at.lt(before)))
        .execute(conn)
        .await
}
