//! Every text the bot sends, in Russian and English, in one place. The language is the user's
//! Telegram `language_code`: Russian for `ru`, English otherwise.

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Ru,
    En,
}

impl Lang {
    pub fn of(language_code: Option<&str>) -> Self {
        match language_code.map(|c| c.split(['-', '_']).next().unwrap_or(c)) {
            Some(c) if c.eq_ignore_ascii_case("ru") => Self::Ru,
            _ => Self::En,
        }
    }

    /// `(ru, en)` as this language reads it.
    fn pick<T>(self, ru: T, en: T) -> T {
        match self {
            Self::Ru => ru,
            Self::En => en,
        }
    }
}

fn date(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d").to_string()
}

pub fn open_app_button(l: Lang) -> &'static str {
    l.pick("Открыть Atelier", "Open Atelier")
}

pub fn welcome(l: Lang, free_left: i32) -> String {
    match l {
        Lang::Ru => format!(
            "Добро пожаловать в Atelier! Здесь можно примерить одежду на своё фото и \
             отредактировать снимки с помощью ИИ.\n\nБесплатных действий в этом месяце: \
             {free_left}.\n\nНажмите кнопку ниже, чтобы открыть приложение."
        ),
        Lang::En => format!(
            "Welcome to Atelier! Try clothes on your own photo and edit your pictures with AI.\
             \n\nFree actions left this month: {free_left}.\n\nTap the button below to open \
             the app."
        ),
    }
}

pub fn help(l: Lang) -> &'static str {
    l.pick(
        "Atelier: примерка одежды и редактирование фото с ИИ.\n\n\
         /start — открыть приложение\n/balance — кредиты и бесплатные действия\n\
         /buy — купить кредиты\n/clear — удалить мои фото и чаты\n\
         /delete — удалить аккаунт\n/notices — уведомления\n/help — эта справка",
        "Atelier: AI try-on and photo editing.\n\n\
         /start — open the app\n/balance — credits and free actions\n/buy — buy credits\n\
         /clear — erase my photos and chats\n/delete — erase my account\n\
         /notices — notices on or off\n/help — this help",
    )
}

pub fn short_help(l: Lang) -> &'static str {
    l.pick(
        "Я понимаю команды /start, /balance, /buy и /help. Всё остальное — в приложении.",
        "I understand /start, /balance, /buy and /help. Everything else is in the app.",
    )
}

pub struct BalanceView {
    pub credits: i64,
    pub free_left: i32,
    pub free_limit: i32,
    pub free_reset_at: DateTime<Utc>,
    pub plan: Option<String>,
    pub plan_until: Option<DateTime<Utc>>,
}

pub fn balance(l: Lang, b: &BalanceView) -> String {
    let plan = match (&b.plan, b.plan_until) {
        (Some(plan), Some(until)) => l
            .pick("Тариф: {plan} до {until}", "Plan: {plan} until {until}")
            .replace("{plan}", plan)
            .replace("{until}", &date(until)),
        _ => l.pick("Тариф: нет", "Plan: none").to_owned(),
    };
    match l {
        Lang::Ru => format!(
            "Кредиты: {}\nБесплатные действия: {} из {} (обновятся {})\n{plan}",
            b.credits,
            b.free_left,
            b.free_limit,
            date(b.free_reset_at)
        ),
        Lang::En => format!(
            "Credits: {}\nFree actions: {} of {} left (reset on {})\n{plan}",
            b.credits,
            b.free_left,
            b.free_limit,
            date(b.free_reset_at)
        ),
    }
}

pub fn catalogue(l: Lang, empty: bool) -> &'static str {
    match (l, empty) {
        (_, true) => l.pick("Сейчас нечего купить.", "Nothing is on sale right now."),
        _ => l.pick(
            "Выберите пакет: звёздами Telegram — прямо здесь, рублями — в приложении.",
            "Choose a pack: with Telegram Stars right here, in roubles in the app.",
        ),
    }
}

pub fn stars_button(title: &str, stars: i64) -> String {
    format!("{title} — {stars} ⭐")
}

pub fn roubles_button(l: Lang, title: &str, price_minor: i64) -> String {
    let roubles = price_minor / 100;
    l.pick(
        "{title} — {n} ₽ (в приложении)",
        "{title} — {n} ₽ (in the app)",
    )
    .replace("{title}", title)
    .replace("{n}", &roubles.to_string())
}

pub fn invoice_ready(l: Lang, title: &str) -> String {
    l.pick(
        "Счёт на «{title}» готов:",
        "Your invoice for “{title}” is ready:",
    )
    .replace("{title}", title)
}

pub fn pay_button(l: Lang, stars: i64) -> String {
    l.pick("Оплатить {n} ⭐", "Pay {n} ⭐")
        .replace("{n}", &stars.to_string())
}

pub fn not_for_sale(l: Lang) -> &'static str {
    l.pick(
        "Этот пакет больше не продаётся.",
        "This pack is no longer sold.",
    )
}

pub fn try_later(l: Lang) -> &'static str {
    l.pick(
        "Не получилось, попробуйте позже.",
        "That did not work; try again later.",
    )
}

pub fn clear_confirm(l: Lang) -> &'static str {
    l.pick(
        "Удалить все ваши фото, результаты и чаты с ассистентом? Кредиты останутся. \
         Это нельзя отменить.",
        "Erase all your photos, results and assistant chats? Your credits stay. \
         This cannot be undone.",
    )
}

pub fn clear_done(l: Lang, photos: usize, chats: usize) -> String {
    match l {
        Lang::Ru => format!("Готово: удалено фото — {photos}, чатов — {chats}."),
        Lang::En => format!("Done: {photos} photos and {chats} chats erased."),
    }
}

pub fn delete_confirm(l: Lang) -> &'static str {
    l.pick(
        "Удалить аккаунт целиком: фото, результаты, чаты и профиль? Оставшиеся кредиты \
         пропадут. Это нельзя отменить.",
        "Erase your whole account: photos, results, chats and profile? Credits left are \
         lost. This cannot be undone.",
    )
}

pub fn delete_done(l: Lang) -> &'static str {
    l.pick(
        "Аккаунт удалён. Если вернётесь, начнётся новый.",
        "Your account is erased. If you come back, a new one starts.",
    )
}

pub fn confirm_button(l: Lang) -> &'static str {
    l.pick("Да, удалить", "Yes, erase")
}

pub fn cancel_button(l: Lang) -> &'static str {
    l.pick("Отмена", "Cancel")
}

pub fn canceled(l: Lang) -> &'static str {
    l.pick("Отменено.", "Canceled.")
}

pub fn no_account(l: Lang) -> &'static str {
    l.pick(
        "У вас ещё нет аккаунта: нажмите /start.",
        "You have no account yet: tap /start.",
    )
}

pub fn account_blocked(l: Lang) -> &'static str {
    l.pick("Этот аккаунт заблокирован.", "This account is blocked.")
}

pub fn admin_usage(l: Lang) -> &'static str {
    l.pick(
        "Команды: /stats, /addtokens <telegram_id> <количество> [причина], \
         /userinfo <telegram_id|@username>, /block <telegram_id>, /unblock <telegram_id>",
        "Commands: /stats, /addtokens <telegram_id> <amount> [reason], \
         /userinfo <telegram_id|@username>, /block <telegram_id>, /unblock <telegram_id>",
    )
}

pub fn not_found(l: Lang) -> &'static str {
    l.pick("Пользователь не найден.", "No such user.")
}

pub fn refused(l: Lang, detail: &str) -> String {
    format!("{} {detail}", l.pick("Отказано:", "Refused:"))
}

pub fn credits_moved(l: Lang, amount: i64, balance: i64, replayed: bool) -> String {
    let again = if replayed {
        l.pick(" (уже было сделано)", " (already done)")
    } else {
        ""
    };
    match l {
        Lang::Ru => format!("Начислено {amount}, баланс {balance}{again}."),
        Lang::En => format!("Moved {amount}; balance {balance}{again}."),
    }
}

pub fn block_changed(l: Lang, blocked: bool, canceled: usize) -> String {
    match (l, blocked) {
        (Lang::Ru, true) => {
            format!("Заблокирован; отменено генераций: {canceled}.")
        }
        (Lang::En, true) => format!("Blocked; {canceled} generations canceled."),
        (Lang::Ru, false) => "Разблокирован.".to_owned(),
        (Lang::En, false) => "Unblocked.".to_owned(),
    }
}

/// A notice's text (`notices` kinds), or None for a kind this build does not know.
pub fn notice(l: Lang, kind: &str, args: &serde_json::Value) -> Option<String> {
    let n = |name: &str| args[name].as_i64().unwrap_or(0);
    let text = match (kind, l) {
        ("generation_failed", Lang::Ru) if n("credits") > 0 => format!(
            "Не удалось создать изображение. Кредиты вернулись на баланс: {}.",
            n("credits")
        ),
        ("generation_failed", Lang::En) if n("credits") > 0 => format!(
            "Your image could not be made. {} {} back on your balance.",
            n("credits"),
            if n("credits") == 1 {
                "credit is"
            } else {
                "credits are"
            }
        ),
        ("generation_failed", _) => l
            .pick(
                "Не удалось создать изображение. Бесплатное действие вернулось.",
                "Your image could not be made. Your free action is back.",
            )
            .to_owned(),
        ("payment_credited", _) => {
            let plan = args["plan"].as_str();
            let base = match l {
                Lang::Ru => format!("Оплата получена: начислено кредитов — {}.", n("credits")),
                Lang::En => format!("Payment received: {} credits added.", n("credits")),
            };
            match plan {
                Some(plan) => format!(
                    "{base} {}",
                    l.pick("Тариф {plan} активен.", "Your {plan} plan is active.")
                        .replace("{plan}", plan)
                ),
                None => base,
            }
        }
        ("referral_bonus", Lang::Ru) => format!(
            "Ваш друг присоединился к Atelier: бонус {} кредитов.",
            n("credits")
        ),
        ("referral_bonus", Lang::En) => format!(
            "A friend you invited joined Atelier: {} bonus credits for you.",
            n("credits")
        ),
        ("free_actions_back", Lang::Ru) => format!(
            "Бесплатные действия снова доступны: {} в этом месяце.",
            n("free")
        ),
        ("free_actions_back", Lang::En) => {
            format!("Your free actions are back: {} this month.", n("free"))
        }
        _ => return None,
    };
    Some(format!(
        "{text}\n\n{}",
        l.pick(
            "Отключить уведомления: /notices off",
            "Turn these notices off: /notices off"
        )
    ))
}

pub fn notices_state(l: Lang, on: bool, free_actions_back: bool) -> String {
    let yes_no = |b: bool| match b {
        true => l.pick("вкл", "on"),
        false => l.pick("выкл", "off"),
    };
    match l {
        Lang::Ru => format!(
            "Уведомления: {}. «Бесплатные действия снова доступны»: {}.\n\n\
             /notices on | off — все уведомления\n/notices monthly on | off — о бесплатных действиях",
            yes_no(on),
            yes_no(free_actions_back)
        ),
        Lang::En => format!(
            "Notices: {}. \"Free actions are back\": {}.\n\n\
             /notices on | off — all notices\n/notices monthly on | off — free actions back",
            yes_no(on),
            yes_no(free_actions_back)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn russian_only_for_ru() {
        assert_eq!(Lang::of(Some("ru")), Lang::Ru);
        assert_eq!(Lang::of(Some("ru-RU")), Lang::Ru);
        assert_eq!(Lang::of(Some("uk")), Lang::En);
        assert_eq!(Lang::of(None), Lang::En);
        assert!(welcome(Lang::Ru, 3).contains('3'));
    }

    #[test]
    fn notices_read_in_both_languages() {
        let args = serde_json::json!({"credits": 5});
        let ru = notice(Lang::Ru, "generation_failed", &args).unwrap();
        assert!(ru.contains("Кредиты вернулись") && ru.contains('5'), "{ru}");
        let en = notice(Lang::En, "generation_failed", &serde_json::json!({})).unwrap();
        assert!(en.contains("free action is back"), "{en}");
        let paid = serde_json::json!({"credits": 50, "plan": "pro"});
        assert!(
            notice(Lang::En, "payment_credited", &paid)
                .unwrap()
                .contains("pro plan")
        );
        assert!(notice(Lang::En, "unknown", &args).is_none());
    }
}
