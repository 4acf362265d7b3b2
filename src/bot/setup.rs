//! `atelier bot setup` and `atelier bot status`: registers the webhook (our public URL, the
//! secret token, the update kinds the bot handles), the command lists in Russian and English
//! (and the operators' commands in each operator's chat), and the `web_app` menu button.

use std::time::Duration;

use anyhow::Context as _;
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};

use crate::config::Settings;
use crate::providers::telegram::TelegramClient;

fn client(settings: &Settings) -> anyhow::Result<TelegramClient> {
    let token = settings
        .telegram_bot_token
        .clone()
        .context("TELEGRAM_BOT_TOKEN is not set")?;
    Ok(TelegramClient::new(
        &settings.telegram_api_base_url,
        token,
        Duration::from_secs(15),
    )?)
}

/// The webhook's URL: `PUBLIC_BASE_URL` + the route.
pub fn webhook_url(settings: &Settings) -> String {
    format!("{}/api/v1/telegram/webhook", settings.public_base_url)
}

fn commands(ru: bool, admin: bool) -> Value {
    let user: [(&str, &str, &str); 7] = [
        ("start", "Открыть Atelier", "Open Atelier"),
        (
            "balance",
            "Кредиты и бесплатные действия",
            "Credits and free actions",
        ),
        ("buy", "Купить кредиты", "Buy credits"),
        (
            "clear",
            "Удалить мои фото и чаты",
            "Erase my photos and chats",
        ),
        ("delete", "Удалить аккаунт", "Erase my account"),
        ("notices", "Уведомления: on или off", "Notices: on or off"),
        ("help", "Справка", "Help"),
    ];
    let ops: [(&str, &str, &str); 5] = [
        ("stats", "Сводка", "Figures"),
        (
            "addtokens",
            "Начислить: id количество [причина]",
            "Grant: id amount [reason]",
        ),
        (
            "userinfo",
            "Пользователь: id или @username",
            "User: id or @username",
        ),
        ("block", "Заблокировать: id", "Block: id"),
        ("unblock", "Разблокировать: id", "Unblock: id"),
    ];
    let extra: &[(&str, &str, &str)] = if admin { &ops } else { &[] };
    user.iter()
        .chain(extra)
        .map(|(c, r, e)| json!({"command": c, "description": if ru { r } else { e }}))
        .collect::<Vec<_>>()
        .into()
}

/// Registers everything, then returns `getWebhookInfo`.
pub async fn setup(settings: &Settings) -> anyhow::Result<Value> {
    let tg = client(settings)?;
    let secret = settings
        .payments
        .telegram_webhook_secret
        .as_ref()
        .context("TELEGRAM_WEBHOOK_SECRET is not set: the webhook would be off")?;
    let call = async |method: &str, body: Value| {
        tg.call_json(method, &body)
            .await
            .with_context(|| format!("{method} failed"))
    };
    call(
        "setWebhook",
        json!({
            "url": webhook_url(settings),
            "secret_token": secret.expose_secret(),
            "allowed_updates": super::ALLOWED_UPDATES,
            "drop_pending_updates": false,
        }),
    )
    .await?;
    call("setMyCommands", json!({"commands": commands(false, false)})).await?;
    for (lang, ru) in [("en", false), ("ru", true)] {
        call(
            "setMyCommands",
            json!({"commands": commands(ru, false), "language_code": lang}),
        )
        .await?;
    }
    for admin in &settings.admin_ids {
        // A private chat's id is the user's id.
        for (lang, ru) in [("en", false), ("ru", true)] {
            call(
                "setMyCommands",
                json!({"commands": commands(ru, true), "language_code": lang,
                       "scope": {"type": "chat", "chat_id": admin}}),
            )
            .await?;
        }
    }
    call(
        "setChatMenuButton",
        json!({"menu_button": {"type": "web_app", "text": "Atelier",
               "web_app": {"url": settings.telegram_web_app_url}}}),
    )
    .await?;
    status(settings).await
}

/// `getWebhookInfo`.
pub async fn status(settings: &Settings) -> anyhow::Result<Value> {
    client(settings)?
        .call_json("getWebhookInfo", &json!({}))
        .await
        .context("getWebhookInfo failed")
}
