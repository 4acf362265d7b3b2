//! The bot's fixtures: an app wired to the fake Bot API, updates in Telegram's wire format,
//! and what the fake recorded.

use atelier::domain::ids::TelegramId;
use serde_json::{Value, json};

use super::{NewUser, TestApp, TestUser, spawn_app_with};
use crate::fakes::telegram::{BOT_TOKEN, Call, FakeTelegram};

pub const SECRET: &str = "bot-webhook-secret_42";
pub const ADMIN: i64 = 9_001;
pub const WEB_APP: &str = "https://miniapp.example/app/";

pub async fn bot_app_with(extra: &[(&str, &str)]) -> (TestApp, FakeTelegram) {
    let tg = FakeTelegram::start().await;
    let admin = ADMIN.to_string();
    let mut settings = vec![
        ("TELEGRAM_BOT_TOKEN", BOT_TOKEN),
        ("TELEGRAM_API_BASE_URL", tg.base_url.as_str()),
        ("TELEGRAM_WEBHOOK_SECRET", SECRET),
        ("TELEGRAM_WEB_APP_URL", WEB_APP),
        ("ADMIN_IDS", admin.as_str()),
        ("FREE_ACTIONS_PER_MONTH", "3"),
    ];
    settings.extend_from_slice(extra);
    let app = spawn_app_with(&settings).await;
    (app, tg)
}

pub fn from(id: i64, lang: &str) -> Value {
    json!({"id": id, "is_bot": false, "first_name": "Anna", "username": format!("anna{id}"),
           "language_code": lang})
}

pub fn text_update(update_id: i64, user: i64, lang: &str, text: &str) -> Value {
    json!({"update_id": update_id, "message": {
        "message_id": update_id + 1000, "date": 1_700_000_000,
        "from": from(user, lang),
        "chat": {"id": user, "type": "private", "first_name": "Anna"},
        "text": text,
        "entities": [{"type": "bot_command", "offset": 0, "length": text.split(' ').next().unwrap().len()}]
    }})
}

pub async fn push(app: &TestApp, tg: &FakeTelegram, update: &Value) {
    let res = tg
        .push_update(&app.url("/api/v1/telegram/webhook"), SECRET, update)
        .await;
    assert_eq!(res.status(), 200, "{update}");
}

/// The `sendMessage` calls to `chat`, in order.
pub fn sent(tg: &FakeTelegram, chat: i64) -> Vec<Call> {
    tg.calls_to("sendMessage")
        .into_iter()
        .filter(|c| c.chat_id() == Some(chat))
        .collect()
}

/// A Mini App user (initData signed with the fake's bot token, without `allows_write_to_pm`).
pub async fn mini_app_user(app: &TestApp, id: i64) -> TestUser<'_> {
    app.user_with(
        NewUser::id(id)
            .field("username", Value::Null)
            .bot_token(BOT_TOKEN),
    )
    .await
}

pub async fn user(app: &TestApp, telegram_id: i64) -> Option<atelier::db::models::User> {
    let mut conn = app.conn().await;
    atelier::db::users::find_by_telegram_id(&mut conn, TelegramId(telegram_id))
        .await
        .unwrap()
}

pub async fn may_write(app: &TestApp, telegram_id: i64) -> Option<bool> {
    let mut conn = app.conn().await;
    atelier::db::bot::may_write(&mut conn, TelegramId(telegram_id))
        .await
        .unwrap()
}
