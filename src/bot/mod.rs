//! The Telegram bot behind the webhook: `/start` (with a referral or an acquisition source),
//! `/help`, `/balance`, `/buy`, `/clear`, `/delete`, `/notices`, the operators' commands, inline buttons,
//! and the chat's state (the user wrote to the bot; the user blocked it). Stars payments go to
//! `billing::stars` as before. Every update is acted on once, by `update_id`; an update that
//! cannot be read is logged and acknowledged, never refused (Telegram would resend it forever);
//! groups and channels are ignored.

pub mod account;
pub mod admin;
pub mod keyboards;
pub mod setup;
pub mod texts;
pub mod update;

use actix_web::http::StatusCode;
use chrono::Utc;
use diesel_async::AsyncConnection as _;
use serde_json::{Value, json};

use crate::accounts::Balance;
use crate::billing::stars;
use crate::db::models::User;
use crate::db::users::{self, Profile};
use crate::db::{bot as bot_db, products};
use crate::domain::ids::TelegramId;
use crate::error::{AppError, AppResult};
use crate::providers::telegram::TelegramClient;
use crate::state::AppState;
use texts::Lang;
use update::{CallbackQuery, Message, Update};

/// The update kinds the bot asks Telegram for (`setWebhook`'s `allowed_updates`).
pub const ALLOWED_UPDATES: [&str; 4] = [
    "message",
    "callback_query",
    "pre_checkout_query",
    "my_chat_member",
];

/// Handles one webhook body (the secret is checked). `Err` only for our own failures (the
/// database is down, ...), for Telegram to send the update again.
pub async fn handle_webhook(state: &AppState, body: &[u8]) -> AppResult<()> {
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "a Telegram update that is not JSON; ignored");
            return Ok(());
        }
    };
    if is_payment(&value) {
        return match stars::handle_update(state, &value).await {
            Err(AppError::Client { status, detail, .. }) if status == StatusCode::BAD_REQUEST => {
                tracing::warn!(detail, "a malformed Stars update; ignored");
                Ok(())
            }
            other => other.map(drop),
        };
    }
    let update: Update = match serde_json::from_value(value) {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(error = %e, "a Telegram update that does not read as one; ignored");
            return Ok(());
        }
    };
    let Some(client) = state.telegram.as_ref() else {
        tracing::warn!("a bot update, but no TELEGRAM_BOT_TOKEN to answer with; ignored");
        return Ok(());
    };
    handle(state, client, update).await
}

/// Updates for `billing::stars`: a pre-checkout query, a successful or refunded payment.
fn is_payment(update: &Value) -> bool {
    let message = &update["message"];
    !update["pre_checkout_query"].is_null()
        || !message["successful_payment"].is_null()
        || !message["refunded_payment"].is_null()
}

async fn handle(state: &AppState, client: &TelegramClient, update: Update) -> AppResult<()> {
    let id = update.update_id;
    if let Some(member) = update.my_chat_member {
        if member.chat.is_private() {
            let blocked = member.new_chat_member.status == "kicked";
            let mut conn = state.db.get().await?;
            conn.transaction(async |conn| -> AppResult<()> {
                if bot_db::claim_update(conn, id).await? {
                    bot_db::set_chat_blocked(conn, member.from.id, blocked).await?;
                    tracing::info!(blocked, "the user changed the bot's standing in their chat");
                }
                Ok(())
            })
            .await?;
        }
        return Ok(());
    }
    if let Some(query) = update.callback_query {
        return callback(state, client, id, query).await;
    }
    if let Some(message) = update.message {
        return on_message(state, client, id, message).await;
    }
    Ok(())
}

/// One private chat with a user, in their language.
pub struct Chat<'a> {
    pub state: &'a AppState,
    pub client: &'a TelegramClient,
    pub chat_id: i64,
    pub lang: Lang,
}

impl Chat<'_> {
    /// `sendMessage`, best effort: a user who blocked the bot is marked, other failures are
    /// logged (the update is acknowledged anyway).
    pub async fn send(&self, text: &str, markup: Option<Value>) {
        let mut body = json!({"chat_id": self.chat_id, "text": text});
        if let Some(markup) = markup {
            body["reply_markup"] = markup;
        }
        self.call("sendMessage", &body).await;
    }

    /// `editMessageText` of the message carrying the pressed button (its keyboard is replaced
    /// by `markup`, or removed).
    pub async fn edit(&self, message_id: i64, text: &str, markup: Option<Value>) {
        let mut body = json!({"chat_id": self.chat_id, "message_id": message_id, "text": text});
        if let Some(markup) = markup {
            body["reply_markup"] = markup;
        }
        self.call("editMessageText", &body).await;
    }

    async fn call(&self, method: &str, body: &Value) {
        match self.client.call_json(method, body).await {
            Ok(_) => {}
            Err(e) if e.stops_chat() => {
                tracing::info!(
                    method,
                    "the user blocked the bot; not writing to them again"
                );
                if let Err(e) = mark_blocked(self.state, TelegramId(self.chat_id)).await {
                    tracing::warn!(error = %e, "marking a blocked chat failed");
                }
            }
            Err(e) => tracing::warn!(method, error = %e, "a bot reply failed"),
        }
    }

    pub fn open_app(&self) -> Value {
        keyboards::open_app(self.lang, &self.state.settings.telegram_web_app_url)
    }
}

async fn mark_blocked(state: &AppState, telegram_id: TelegramId) -> AppResult<()> {
    let mut conn = state.db.get().await?;
    bot_db::set_chat_blocked(&mut conn, telegram_id, true).await?;
    Ok(())
}

/// Records the update as handled and the chat as open (the user wrote: the bot may write to
/// them from now on), in one transaction; false when the update was handled before.
async fn claim_message(
    state: &AppState,
    update_id: i64,
    telegram_id: TelegramId,
    source: Option<&str>,
) -> AppResult<bool> {
    let mut conn = state.db.get().await?;
    conn.transaction(async |conn| -> AppResult<bool> {
        if !bot_db::claim_update(conn, update_id).await? {
            return Ok(false);
        }
        bot_db::touch_chat(conn, telegram_id, source).await?;
        Ok(true)
    })
    .await
}

async fn on_message(
    state: &AppState,
    client: &TelegramClient,
    update_id: i64,
    message: Message,
) -> AppResult<()> {
    let Some(from) = message.from.filter(|f| !f.is_bot) else {
        return Ok(());
    };
    if !message.chat.is_private() {
        tracing::debug!(kind = %message.chat.kind, "a message from a group or channel; ignored");
        return Ok(());
    }
    let chat = Chat {
        state,
        client,
        chat_id: message.chat.id,
        lang: Lang::of(from.language_code.as_deref()),
    };
    let text = message.text.unwrap_or_default();
    let (command, args) = update::command(&text).unwrap_or_default();
    if command == "start" {
        return start(&chat, update_id, &from, args).await;
    }
    let is_admin = state.settings.admin_ids.contains(&from.id.get());
    if is_admin && admin::COMMANDS.contains(&command.as_str()) {
        // Claimed in the transaction of each command's effect.
        bot_db_touch(state, from.id).await?;
        return admin::command(&chat, update_id, from.id.get(), &command, args).await;
    }
    if !claim_message(state, update_id, from.id, None).await? {
        return Ok(());
    }
    let user = find_user(state, from.id).await?;
    match command.as_str() {
        "help" => {
            chat.send(texts::help(chat.lang), Some(chat.open_app()))
                .await
        }
        "balance" => balance(&chat, user.as_ref()).await,
        "buy" => buy(&chat).await?,
        "notices" => notices(&chat, user.as_ref(), args).await?,
        "clear" => {
            let markup = keyboards::confirm(chat.lang, keyboards::CLEAR_YES);
            chat.send(texts::clear_confirm(chat.lang), Some(markup))
                .await;
        }
        "delete" => {
            let markup = keyboards::confirm(chat.lang, keyboards::DELETE_YES);
            chat.send(texts::delete_confirm(chat.lang), Some(markup))
                .await;
        }
        _ => {
            chat.send(texts::short_help(chat.lang), Some(chat.open_app()))
                .await;
        }
    }
    Ok(())
}

/// The chat is open, outside a claim (an admin command claims in its own transaction).
async fn bot_db_touch(state: &AppState, telegram_id: TelegramId) -> AppResult<()> {
    let mut conn = state.db.get().await?;
    bot_db::touch_chat(&mut conn, telegram_id, None).await?;
    Ok(())
}

async fn find_user(state: &AppState, telegram_id: TelegramId) -> AppResult<Option<User>> {
    let mut conn = state.db.get().await?;
    Ok(users::find_by_telegram_id(&mut conn, telegram_id).await?)
}

/// `/start [payload]`: signs the user up as the Mini App's login does (a `ref_<code>` payload
/// is its `start_param`), keeps any other payload as the acquisition source, and welcomes
/// them with the Mini App's button. Signing up is itself once per person, so it runs before
/// the update is claimed: a resent update finds the account made.
async fn start(
    chat: &Chat<'_>,
    update_id: i64,
    from: &update::User,
    payload: &str,
) -> AppResult<()> {
    let state = chat.state;
    let payload = payload.trim();
    let user = match find_user(state, from.id).await? {
        Some(user) => Ok(user),
        None => {
            let profile = Profile {
                telegram_id: from.id,
                username: from.username.clone(),
                first_name: from.first_name.clone(),
                last_name: from.last_name.clone(),
                language_code: from.language_code.clone(),
                is_premium: from.is_premium,
                photo_url: None,
                // They wrote to the bot: it may write to them.
                allows_write_to_pm: true,
            };
            let start_param = Some(payload).filter(|p| !p.is_empty());
            crate::accounts::sign_in(state, &profile, start_param).await
        }
    };
    let referral = crate::domain::referral::code_from_start_param(payload).is_some();
    let source = Some(payload).filter(|p| !p.is_empty() && !referral && p.len() <= 64);
    if !claim_message(state, update_id, from.id, source).await? {
        return Ok(());
    }
    match user {
        Ok(user) if !user.is_blocked => {
            let b = Balance::of(&user, state.settings.free_actions_per_month, Utc::now());
            let text = texts::welcome(chat.lang, b.free_actions_left);
            chat.send(&text, Some(chat.open_app())).await;
        }
        Ok(_) | Err(AppError::Client { .. }) => {
            chat.send(texts::account_blocked(chat.lang), None).await;
        }
        Err(e) => return Err(e),
    }
    Ok(())
}

async fn balance(chat: &Chat<'_>, user: Option<&User>) {
    let Some(user) = user else {
        chat.send(texts::no_account(chat.lang), Some(chat.open_app()))
            .await;
        return;
    };
    let b = Balance::of(user, chat.state.settings.free_actions_per_month, Utc::now());
    let view = texts::BalanceView {
        credits: b.balance_credits,
        free_left: b.free_actions_left,
        free_limit: b.free_actions_limit,
        free_reset_at: b.free_actions_reset_at,
        plan: b.subscription_plan,
        plan_until: b.subscription_until,
    };
    chat.send(&texts::balance(chat.lang, &view), Some(chat.open_app()))
        .await;
}

/// `/notices [on|off]`, `/notices monthly [on|off]`: shows or changes the user's choices (the
/// same as `PATCH /api/v1/me`).
async fn notices(chat: &Chat<'_>, user: Option<&User>, args: &str) -> AppResult<()> {
    let Some(user) = user else {
        chat.send(texts::no_account(chat.lang), Some(chat.open_app()))
            .await;
        return Ok(());
    };
    let words: Vec<&str> = args.split_whitespace().collect();
    let switch = |w: &str| match w {
        "on" => Some(true),
        "off" => Some(false),
        _ => None,
    };
    let (all, monthly) = match words.as_slice() {
        [w] => (switch(w), None),
        ["monthly", w] => (None, switch(w)),
        _ => (None, None),
    };
    let choices = if all.is_some() || monthly.is_some() {
        crate::notices::set_choices(chat.state, user.id, all, monthly).await?
    } else {
        crate::notices::choices(chat.state, user.id).await?
    };
    let text = texts::notices_state(chat.lang, choices.notices, choices.free_actions_back);
    chat.send(&text, None).await;
    Ok(())
}

async fn buy(chat: &Chat<'_>) -> AppResult<()> {
    let mut conn = chat.state.db.get().await?;
    let catalogue = products::list_active(&mut conn).await?;
    drop(conn);
    let markup = keyboards::catalogue(
        chat.lang,
        &catalogue,
        &chat.state.settings.telegram_web_app_url,
    );
    let empty = markup["inline_keyboard"]
        .as_array()
        .is_none_or(Vec::is_empty);
    let text = texts::catalogue(chat.lang, empty);
    chat.send(text, (!empty).then_some(markup)).await;
    Ok(())
}

/// A pressed inline button: answered (`answerCallbackQuery`) and its message edited.
async fn callback(
    state: &AppState,
    client: &TelegramClient,
    update_id: i64,
    query: CallbackQuery,
) -> AppResult<()> {
    let Some(message) = query.message.filter(|m| m.chat.is_private()) else {
        return Ok(());
    };
    let chat = Chat {
        state,
        client,
        chat_id: message.chat.id,
        lang: Lang::of(query.from.language_code.as_deref()),
    };
    let data = query.data.as_deref().unwrap_or_default();
    let user = find_user(state, query.from.id).await?;
    let (text, markup) = match (data, user) {
        (_, None) => {
            if !claim_message(state, update_id, query.from.id, None).await? {
                return Ok(());
            }
            (texts::no_account(chat.lang).to_owned(), None)
        }
        (keyboards::CLEAR_YES, Some(user)) => {
            match account::clear(state, update_id, &user).await? {
                None => return Ok(()),
                Some(done) => (
                    texts::clear_done(chat.lang, done.photos, done.chat_sessions),
                    None,
                ),
            }
        }
        (keyboards::DELETE_YES, Some(user)) => {
            if !claim_message(state, update_id, query.from.id, None).await? {
                return Ok(());
            }
            match account::delete(state, user).await {
                Ok(()) => (texts::delete_done(chat.lang).to_owned(), None),
                Err(e) => {
                    tracing::error!(error = %e, "erasing an account from the bot failed");
                    (texts::try_later(chat.lang).to_owned(), None)
                }
            }
        }
        (data, Some(user)) if data.starts_with(keyboards::BUY_PREFIX) => {
            if !claim_message(state, update_id, query.from.id, None).await? {
                return Ok(());
            }
            let product = &data[keyboards::BUY_PREFIX.len()..];
            let mut conn = state.db.get().await?;
            let title = products::find_active(&mut conn, product)
                .await?
                .map_or_else(|| product.to_owned(), |p| p.title);
            drop(conn);
            match stars::create_invoice(state, &user, product).await {
                Ok((payment, link)) => (
                    texts::invoice_ready(chat.lang, &title),
                    Some(keyboards::pay(chat.lang, payment.amount_minor, &link)),
                ),
                Err(AppError::Client { .. }) => (texts::not_for_sale(chat.lang).to_owned(), None),
                Err(e) => {
                    tracing::warn!(error = %e, "a Stars invoice from the bot failed");
                    (texts::try_later(chat.lang).to_owned(), None)
                }
            }
        }
        (_, Some(_)) => {
            if !claim_message(state, update_id, query.from.id, None).await? {
                return Ok(());
            }
            (texts::canceled(chat.lang).to_owned(), None)
        }
    };
    if let Err(e) = client
        .call_json(
            "answerCallbackQuery",
            &json!({"callback_query_id": query.id}),
        )
        .await
    {
        tracing::warn!(error = %e, "answerCallbackQuery failed");
    }
    chat.edit(message.message_id, &text, markup).await;
    Ok(())
}
