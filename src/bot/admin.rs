//! The operators' commands, for `ADMIN_IDS` in a private chat only (anyone else gets the
//! normal help): `/stats`, `/addtokens`, `/userinfo`, `/block`, `/unblock`. They call the
//! admin API's use cases (`crate::operators`), with the actor `telegram:<id>`; each change is
//! claimed by `update_id` in its own transaction.

use chrono::{Datelike as _, Duration, NaiveDate, TimeZone as _, Utc};
use diesel_async::AsyncConnection as _;
use serde_json::Value;

use super::Chat;
use super::texts::{self, Lang};
use crate::accounts::Balance;
use crate::db::models::User;
use crate::db::{bot as bot_db, stats, users};
use crate::domain::ids::TelegramId;
use crate::error::{AppError, AppResult};
use crate::jobs::queue;
use crate::operators::{self, CreditMove};

pub const COMMANDS: [&str; 5] = ["stats", "addtokens", "userinfo", "block", "unblock"];

pub async fn command(
    chat: &Chat<'_>,
    update_id: i64,
    admin_id: i64,
    command: &str,
    args: &str,
) -> AppResult<()> {
    let actor = format!("telegram:{admin_id}");
    let args: Vec<&str> = args.split_whitespace().collect();
    let reply = match (command, args.as_slice()) {
        ("stats", _) => claimed(chat, update_id, stats_text(chat).await?).await?,
        ("userinfo", [who]) => {
            let text = userinfo(chat, who).await?;
            claimed(chat, update_id, text).await?
        }
        ("addtokens", [id, amount, reason @ ..]) => {
            match (id.parse::<i64>(), amount.parse::<i64>()) {
                (Ok(id), Ok(amount)) => {
                    let reason = if reason.is_empty() {
                        "via the bot".to_owned()
                    } else {
                        reason.join(" ")
                    };
                    add_tokens(chat, update_id, &actor, TelegramId(id), amount, &reason).await?
                }
                _ => claimed(chat, update_id, texts::admin_usage(chat.lang).into()).await?,
            }
        }
        ("block" | "unblock", [id]) => match id.parse::<i64>() {
            Ok(id) => {
                set_blocked(chat, update_id, &actor, TelegramId(id), command == "block").await?
            }
            Err(_) => claimed(chat, update_id, texts::admin_usage(chat.lang).into()).await?,
        },
        _ => claimed(chat, update_id, texts::admin_usage(chat.lang).into()).await?,
    };
    if let Some(text) = reply {
        chat.send(&text, None).await;
    }
    Ok(())
}

/// A reply with no effect but the update's record: None when it was handled before.
async fn claimed(chat: &Chat<'_>, update_id: i64, text: String) -> AppResult<Option<String>> {
    let mut conn = chat.state.db.get().await?;
    Ok(bot_db::claim_update(&mut conn, update_id)
        .await?
        .then_some(text))
}

/// A refused change replies why; the update is recorded then too.
async fn refusal(chat: &Chat<'_>, update_id: i64, e: AppError) -> AppResult<Option<String>> {
    let text = match &e {
        AppError::Client { status, .. } if status.as_u16() == 404 => {
            texts::not_found(chat.lang).to_owned()
        }
        AppError::Client { detail, .. } => texts::refused(chat.lang, detail),
        AppError::InsufficientCredits { .. } => texts::refused(chat.lang, &e.to_string()),
        _ => return Err(e),
    };
    claimed(chat, update_id, text).await
}

async fn add_tokens(
    chat: &Chat<'_>,
    update_id: i64,
    actor: &str,
    telegram_id: TelegramId,
    amount: i64,
    reason: &str,
) -> AppResult<Option<String>> {
    let change = match CreditMove::new(amount, reason) {
        Ok(c) => c,
        Err(e) => return refusal(chat, update_id, e).await,
    };
    let key = format!("bot_update:{update_id}");
    let mut conn = chat.state.db.get().await?;
    let result = conn
        .transaction(async |conn| -> AppResult<Option<(bool, i64)>> {
            if !bot_db::claim_update(conn, update_id).await? {
                return Ok(None);
            }
            let (applied, balance) =
                operators::move_credits_in(conn, actor, telegram_id, &change, &key).await?;
            Ok(Some((applied.replayed, balance)))
        })
        .await;
    drop(conn);
    match result {
        Ok(Some((replayed, balance))) => {
            tracing::info!(amount, replayed, "an operator moved credits from the bot");
            Ok(Some(texts::credits_moved(
                chat.lang, amount, balance, replayed,
            )))
        }
        Ok(None) => Ok(None),
        Err(e) => refusal(chat, update_id, e).await,
    }
}

async fn set_blocked(
    chat: &Chat<'_>,
    update_id: i64,
    actor: &str,
    telegram_id: TelegramId,
    blocked: bool,
) -> AppResult<Option<String>> {
    let mut conn = chat.state.db.get().await?;
    let result = conn
        .transaction(async |conn| -> AppResult<Option<operators::BlockChange>> {
            if !bot_db::claim_update(conn, update_id).await? {
                return Ok(None);
            }
            operators::set_blocked_in(conn, actor, telegram_id, blocked)
                .await
                .map(Some)
        })
        .await;
    drop(conn);
    match result {
        Ok(Some(change)) => {
            operators::after_block(chat.state, &change).await;
            Ok(Some(texts::block_changed(
                chat.lang,
                blocked,
                change.canceled.len(),
            )))
        }
        Ok(None) => Ok(None),
        Err(e) => refusal(chat, update_id, e).await,
    }
}

async fn userinfo(chat: &Chat<'_>, who: &str) -> AppResult<String> {
    let mut conn = chat.state.db.get().await?;
    let user = match who.strip_prefix('@') {
        Some(name) => users::find_by_username(&mut conn, name).await?,
        None => match who.parse::<i64>() {
            Ok(id) => users::find_by_telegram_id(&mut conn, TelegramId(id)).await?,
            Err(_) => users::find_by_username(&mut conn, who).await?,
        },
    };
    let Some(user) = user else {
        return Ok(texts::not_found(chat.lang).to_owned());
    };
    let source = bot_db::start_source(&mut conn, user.telegram_id).await?;
    Ok(describe(chat, &user, source.as_deref()))
}

fn describe(chat: &Chat<'_>, user: &User, source: Option<&str>) -> String {
    let b = Balance::of(user, chat.state.settings.free_actions_per_month, Utc::now());
    let name = [Some(user.first_name.as_str()), user.last_name.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let plan = match (&b.subscription_plan, b.subscription_until) {
        (Some(p), Some(until)) => format!("{p} → {}", until.format("%Y-%m-%d")),
        _ => "—".to_owned(),
    };
    let labels = match chat.lang {
        Lang::Ru => [
            "Пользователь",
            "Кредиты",
            "Бесплатно осталось",
            "Тариф",
            "Заблокирован",
            "Зарегистрирован",
            "Был",
            "Источник",
        ],
        Lang::En => [
            "User",
            "Credits",
            "Free actions left",
            "Plan",
            "Blocked",
            "Registered",
            "Last seen",
            "Source",
        ],
    };
    format!(
        "{}: {} {name} (@{}), id {}\n{}: {}\n{}: {}\n{}: {plan}\n{}: {}\n{}: {}\n{}: {}\n{}: {}",
        labels[0],
        user.telegram_id,
        user.username.as_deref().unwrap_or("—"),
        user.id,
        labels[1],
        b.balance_credits,
        labels[2],
        b.free_actions_left,
        labels[3],
        labels[4],
        user.is_blocked,
        labels[5],
        user.created_at.format("%Y-%m-%d"),
        labels[6],
        user.last_seen_at.format("%Y-%m-%d %H:%M"),
        labels[7],
        source.unwrap_or("—"),
    )
}

async fn stats_text(chat: &Chat<'_>) -> AppResult<String> {
    let now = Utc::now();
    let today = now.date_naive();
    let month = NaiveDate::from_ymd_opt(today.year(), today.month(), 1).unwrap_or(today);
    let midnight = |d: NaiveDate| Utc.from_utc_datetime(&d.and_time(chrono::NaiveTime::MIN));
    let mut conn = chat.state.db.get().await?;
    let doc = stats::snapshot(&mut conn, midnight(today), midnight(month)).await?;
    let depth: i64 = queue::depth(&mut conn)
        .await?
        .iter()
        .map(|(_, n, _)| n)
        .sum();
    let failed = stats::failed_since(&mut conn, now - Duration::hours(1)).await?;
    let n = |v: &Value| v.as_i64().unwrap_or(0);
    let rub = |v: &Value| format!("{:.2} ₽", n(v) as f64 / 100.0);
    let u = &doc["users"];
    let r = &doc["revenue"];
    Ok(match chat.lang {
        Lang::Ru => format!(
            "Пользователи: новых сегодня {}, активных за день {}, за неделю {}, за месяц {}\n\
             Выручка: сегодня {}, в этом месяце {}\nОчередь: {depth}\n\
             Ошибок генерации за час: {failed}",
            n(&u["new_today"]),
            n(&u["dau"]),
            n(&u["wau"]),
            n(&u["mau"]),
            rub(&r["today"]["gross_minor"]),
            rub(&r["this_month"]["gross_minor"]),
        ),
        Lang::En => format!(
            "Users: {} new today, active {} today, {} this week, {} this month\n\
             Revenue: {} today, {} this month\nQueue: {depth}\n\
             Failed generations in the last hour: {failed}",
            n(&u["new_today"]),
            n(&u["dau"]),
            n(&u["wau"]),
            n(&u["mau"]),
            rub(&r["today"]["gross_minor"]),
            rub(&r["this_month"]["gross_minor"]),
        ),
    })
}
