//! The Telegram bot, driven through the real webhook with updates in Telegram's wire format,
//! answering through the fake Bot API: a conversation per command in both languages, the
//! operators' commands, a resent update, a user who blocks the bot, and `atelier bot setup`.

use atelier::domain::ids::TelegramId;
use serde_json::{Value, json};

use crate::fakes::telegram::{Call, FakeTelegram, json_param};
use crate::helpers::bot::{
    ADMIN, SECRET, WEB_APP, bot_app_with, from, may_write, mini_app_user, push, sent, text_update,
    user,
};
use crate::helpers::{Export, TestApp, Worker, ok};

async fn bot_app() -> (TestApp, FakeTelegram) {
    bot_app_with(&[]).await
}

fn press_update(update_id: i64, user: i64, lang: &str, message_id: i64, data: &str) -> Value {
    json!({"update_id": update_id, "callback_query": {
        "id": format!("cb{update_id}"), "from": from(user, lang), "chat_instance": "-77",
        "data": data,
        "message": {"message_id": message_id, "date": 1_700_000_000,
            "from": {"id": crate::fakes::telegram::BOT_ID, "is_bot": true, "first_name": "Atelier"},
            "chat": {"id": user, "type": "private", "first_name": "Anna"},
            "text": "…"}
    }})
}

fn last_text(tg: &FakeTelegram, chat: i64) -> String {
    sent(tg, chat).last().expect("a reply").params["text"].clone()
}

/// The buttons of a call's `reply_markup`, row by row flattened.
fn buttons(call: &Call) -> Vec<Value> {
    json_param(call, "reply_markup")["inline_keyboard"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .flat_map(|r| r.as_array().cloned().unwrap_or_default())
                .collect()
        })
        .unwrap_or_default()
}

fn has_mini_app_button(call: &Call) -> bool {
    buttons(call)
        .iter()
        .any(|b| b["web_app"]["url"].as_str() == Some(WEB_APP))
}

#[tokio::test]
async fn start_signs_up_and_welcomes_in_the_users_language_with_the_mini_app_button() {
    let (app, tg) = bot_app().await;
    push(&app, &tg, &text_update(1, 101, "ru", "/start")).await;
    push(&app, &tg, &text_update(2, 102, "en-US", "/start")).await;

    let ru = sent(&tg, 101);
    assert_eq!(ru.len(), 1);
    assert!(
        ru[0].params["text"].contains("Добро пожаловать"),
        "{:?}",
        ru[0].params
    );
    assert!(ru[0].params["text"].contains(": 3"), "free actions left");
    assert!(has_mini_app_button(&ru[0]), "{:?}", ru[0].params);
    let en = sent(&tg, 102);
    assert!(en[0].params["text"].starts_with("Welcome to Atelier"));
    assert!(has_mini_app_button(&en[0]));

    let anna = user(&app, 101).await.expect("signed up by /start");
    assert_eq!(anna.language_code.as_deref(), Some("ru"));
    assert_eq!(anna.username.as_deref(), Some("anna101"));
    // She wrote to the bot: it may write to her.
    assert_eq!(may_write(&app, 101).await, Some(true));
}

#[tokio::test]
async fn start_with_a_referral_code_records_it_once_as_the_mini_app_does() {
    let (app, tg) = bot_app_with(&[("REFERRAL_BONUS_CREDITS", "7")]).await;
    push(&app, &tg, &text_update(1, 201, "en", "/start")).await;
    let referrer = user(&app, 201).await.unwrap();
    let payload = format!("/start ref_{}", referrer.referral_code);
    push(&app, &tg, &text_update(2, 202, "en", &payload)).await;
    // Again, as another update: the same person is referred once.
    push(&app, &tg, &text_update(3, 202, "en", &payload)).await;
    // The referrer referring themselves earns nothing.
    push(&app, &tg, &text_update(4, 201, "en", &payload)).await;

    let referred = user(&app, 202).await.unwrap();
    assert_eq!(referred.referred_by, Some(referrer.id));
    assert_eq!(user(&app, 201).await.unwrap().balance_credits, 7);
    assert_eq!(sent(&tg, 202).len(), 2, "each /start is answered");
}

#[tokio::test]
async fn another_start_payload_is_kept_as_the_acquisition_source() {
    let (app, tg) = bot_app().await;
    push(
        &app,
        &tg,
        &text_update(1, 301, "en", "/start ads_vk_autumn"),
    )
    .await;
    push(
        &app,
        &tg,
        &text_update(2, 301, "en", "/start later_campaign"),
    )
    .await;
    let mut conn = app.conn().await;
    let source = atelier::db::bot::start_source(&mut conn, TelegramId(301))
        .await
        .unwrap();
    assert_eq!(source.as_deref(), Some("ads_vk_autumn"));
    assert!(user(&app, 301).await.unwrap().referred_by.is_none());
}

#[tokio::test]
async fn an_update_sent_twice_is_acted_on_once() {
    let (app, tg) = bot_app().await;
    let start = text_update(1, 401, "en", "/start");
    push(&app, &tg, &start).await;
    push(&app, &tg, &start).await;
    assert_eq!(sent(&tg, 401).len(), 1);

    let grant = text_update(2, ADMIN, "en", "/addtokens 401 50 promo");
    push(&app, &tg, &grant).await;
    push(&app, &tg, &grant).await;
    assert_eq!(user(&app, 401).await.unwrap().balance_credits, 50);
    assert_eq!(sent(&tg, ADMIN).len(), 1);
    assert!(last_text(&tg, ADMIN).contains("balance 50"));

    // A press resent: one answer, one edit.
    let press = press_update(3, 401, "en", 77, "cancel");
    push(&app, &tg, &press).await;
    push(&app, &tg, &press).await;
    assert_eq!(tg.calls_to("answerCallbackQuery").len(), 1);
    assert_eq!(tg.calls_to("editMessageText").len(), 1);
}

#[tokio::test]
async fn help_balance_and_other_text_are_answered_in_both_languages() {
    let (app, tg) = bot_app().await;
    push(&app, &tg, &text_update(1, 501, "ru", "/balance")).await;
    assert!(
        last_text(&tg, 501).contains("нет аккаунта"),
        "no account yet"
    );
    push(&app, &tg, &text_update(2, 501, "ru", "/start")).await;
    push(&app, &tg, &text_update(3, 501, "ru", "/balance")).await;
    let text = last_text(&tg, 501);
    assert!(text.contains("Кредиты: 0"), "{text}");
    assert!(text.contains("3 из 3"), "{text}");
    assert!(text.contains("Тариф: нет"), "{text}");

    push(&app, &tg, &text_update(4, 502, "en", "/help")).await;
    let help = sent(&tg, 502);
    assert!(help[0].params["text"].contains("/balance"));
    assert!(!help[0].params["text"].contains("/stats"));
    assert!(has_mini_app_button(&help[0]));

    push(&app, &tg, &text_update(5, 502, "en", "what can you do?")).await;
    let other = sent(&tg, 502).pop().unwrap();
    assert!(other.params["text"].starts_with("I understand"));
    assert!(has_mini_app_button(&other));
    push(&app, &tg, &text_update(6, 501, "ru", "привет")).await;
    assert!(last_text(&tg, 501).starts_with("Я понимаю"));
}

#[tokio::test]
async fn buy_lists_the_packs_and_a_stars_button_turns_into_an_invoice() {
    let (app, tg) = bot_app().await;
    push(&app, &tg, &text_update(1, 601, "en", "/start")).await;
    push(&app, &tg, &text_update(2, 601, "en", "/buy")).await;
    let catalogue = sent(&tg, 601).pop().unwrap();
    let all = buttons(&catalogue);
    let stars = all
        .iter()
        .find(|b| b["callback_data"] == "buy:pack_10")
        .expect("a Stars button for pack_10");
    assert!(stars["text"].as_str().unwrap().contains("150 ⭐"));
    let roubles = all
        .iter()
        .find(|b| {
            b["web_app"]["url"]
                .as_str()
                .is_some_and(|u| u.contains("product=pack_10"))
        })
        .expect("a rouble button into the Mini App");
    assert!(
        roubles["web_app"]["url"]
            .as_str()
            .unwrap()
            .starts_with(WEB_APP)
    );

    push(&app, &tg, &press_update(3, 601, "en", 900, "buy:pack_10")).await;
    let answered = tg.calls_to("answerCallbackQuery");
    assert_eq!(answered.len(), 1);
    assert_eq!(answered[0].params["callback_query_id"], "cb3");
    let edit = tg.calls_to("editMessageText").pop().unwrap();
    assert_eq!(edit.params["message_id"], "900");
    assert!(edit.params["text"].contains("invoice"));
    let pay = buttons(&edit);
    assert!(
        pay[0]["url"]
            .as_str()
            .unwrap()
            .starts_with("https://t.me/$")
    );
    assert!(pay[0]["text"].as_str().unwrap().contains("150"));
    assert_eq!(tg.calls_to("createInvoiceLink").len(), 1);
    assert_eq!(
        sent(&tg, 601).len(),
        2,
        "the press edits, it sends nothing new"
    );
}

#[tokio::test]
async fn clear_asks_first_then_erases_photos_and_chats_but_not_the_account() {
    let (app, tg) = bot_app().await;
    let anna = mini_app_user(&app, 701).await;
    anna.upload_editing().await;
    push(&app, &tg, &text_update(1, 701, "en", "/clear")).await;
    let ask = sent(&tg, 701).pop().unwrap();
    assert!(ask.params["text"].starts_with("Erase all your photos"));
    let datas: Vec<Value> = buttons(&ask)
        .iter()
        .map(|b| b["callback_data"].clone())
        .collect();
    assert_eq!(datas, [json!("clear:yes"), json!("cancel")]);
    let uploads = || async {
        let res = anna.get("/api/v1/me/export").await;
        ok::<Export>(res, 200, "export").await.uploads.len()
    };
    assert_eq!(uploads().await, 1);

    push(&app, &tg, &press_update(2, 701, "en", 555, "clear:yes")).await;
    let edit = tg.calls_to("editMessageText").pop().unwrap();
    assert_eq!(edit.params["text"], "Done: 1 photos and 0 chats erased.");
    assert_eq!(uploads().await, 0);
    assert!(user(&app, 701).await.is_some(), "the account stays");
}

#[tokio::test]
async fn delete_erases_the_whole_account_once_confirmed_and_cancel_does_not() {
    let (app, tg) = bot_app().await;
    push(&app, &tg, &text_update(1, 801, "ru", "/start")).await;
    push(&app, &tg, &text_update(2, 801, "ru", "/delete")).await;
    let ask = sent(&tg, 801).pop().unwrap();
    assert!(ask.params["text"].starts_with("Удалить аккаунт"));
    push(&app, &tg, &press_update(3, 801, "ru", 91, "cancel")).await;
    assert_eq!(
        tg.calls_to("editMessageText")[0].params["text"],
        "Отменено."
    );
    assert!(user(&app, 801).await.is_some());

    push(&app, &tg, &press_update(4, 801, "ru", 92, "delete:yes")).await;
    assert!(user(&app, 801).await.is_none(), "erased");
    let edit = tg.calls_to("editMessageText").pop().unwrap();
    assert_eq!(edit.params["message_id"], "92");
    assert!(edit.params["text"].starts_with("Аккаунт удалён"));
    assert_eq!(tg.calls_to("answerCallbackQuery").len(), 2);
}

#[tokio::test]
async fn operators_commands_work_for_admins_only_in_their_language() {
    let (app, tg) = bot_app().await;
    push(&app, &tg, &text_update(1, 901, "en", "/start")).await;

    // Not an admin: the normal short help, no hint of the commands.
    push(&app, &tg, &text_update(2, 902, "en", "/stats")).await;
    push(&app, &tg, &text_update(3, 902, "en", "/addtokens 902 1000")).await;
    for call in sent(&tg, 902) {
        assert!(
            call.params["text"].starts_with("I understand"),
            "{:?}",
            call.params
        );
        assert!(!call.params["text"].contains("stats"));
    }
    assert!(user(&app, 902).await.is_none());

    push(&app, &tg, &text_update(4, ADMIN, "en", "/stats")).await;
    let stats = last_text(&tg, ADMIN);
    assert!(stats.starts_with("Users: 1 new today"), "{stats}");
    assert!(stats.contains("Queue: "), "{stats}");
    assert!(
        stats.contains("Failed generations in the last hour: 0"),
        "{stats}"
    );

    push(
        &app,
        &tg,
        &text_update(5, ADMIN, "en", "/addtokens 901 25 apology for the outage"),
    )
    .await;
    assert_eq!(last_text(&tg, ADMIN), "Moved 25; balance 25.");
    push(
        &app,
        &tg,
        &text_update(6, ADMIN, "en", "/addtokens 901 -100"),
    )
    .await;
    assert!(
        last_text(&tg, ADMIN).starts_with("Refused:"),
        "never below zero"
    );
    push(
        &app,
        &tg,
        &text_update(7, ADMIN, "en", "/addtokens 999999 5"),
    )
    .await;
    assert_eq!(last_text(&tg, ADMIN), "No such user.");
    let mut conn = app.conn().await;
    use atelier::db::schema::admin_audit;
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    let audit: Vec<(String, String)> = admin_audit::table
        .select((admin_audit::actor, admin_audit::action))
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(audit, [("telegram:9001".to_owned(), "credits".to_owned())]);

    push(
        &app,
        &tg,
        &text_update(8, ADMIN, "ru", "/userinfo @ANNA901"),
    )
    .await;
    let info = last_text(&tg, ADMIN);
    assert!(
        info.starts_with("Пользователь: 901 Anna (@anna901)"),
        "{info}"
    );
    assert!(info.contains("Кредиты: 25"), "{info}");
    push(&app, &tg, &text_update(9, ADMIN, "en", "/userinfo 901")).await;
    assert!(last_text(&tg, ADMIN).contains("Credits: 25"));

    push(&app, &tg, &text_update(10, ADMIN, "en", "/block 901")).await;
    assert!(last_text(&tg, ADMIN).starts_with("Blocked"));
    assert!(user(&app, 901).await.unwrap().is_blocked);
    push(&app, &tg, &text_update(11, 901, "en", "/start")).await;
    assert_eq!(last_text(&tg, 901), "This account is blocked.");
    push(&app, &tg, &text_update(12, ADMIN, "en", "/unblock 901")).await;
    assert_eq!(last_text(&tg, ADMIN), "Unblocked.");
    assert!(!user(&app, 901).await.unwrap().is_blocked);

    push(
        &app,
        &tg,
        &text_update(13, ADMIN, "en", "/addtokens nonsense"),
    )
    .await;
    assert!(last_text(&tg, ADMIN).starts_with("Commands:"));
}

#[tokio::test]
async fn a_user_who_blocks_the_bot_is_marked_until_they_come_back() {
    let (app, tg) = bot_app().await;
    push(&app, &tg, &text_update(1, 1001, "en", "/start")).await;
    assert_eq!(may_write(&app, 1001).await, Some(true));

    // my_chat_member: kicked.
    let member = |id: i64, old: &str, new: &str| {
        json!({"update_id": id, "my_chat_member": {
            "chat": {"id": 1001, "type": "private", "first_name": "Anna"},
            "from": from(1001, "en"), "date": 1_700_000_000,
            "old_chat_member": {"status": old, "user": {"id": crate::fakes::telegram::BOT_ID, "is_bot": true, "first_name": "Atelier"}},
            "new_chat_member": {"status": new, "user": {"id": crate::fakes::telegram::BOT_ID, "is_bot": true, "first_name": "Atelier"}}}})
    };
    push(&app, &tg, &member(2, "member", "kicked")).await;
    assert_eq!(may_write(&app, 1001).await, Some(false));
    push(&app, &tg, &member(3, "kicked", "member")).await;
    assert_eq!(may_write(&app, 1001).await, Some(true));

    // A 403 from Telegram marks the chat as well.
    tg.block_chat(1002);
    push(&app, &tg, &text_update(4, 1002, "en", "/help")).await;
    assert_eq!(
        tg.calls_to("sendMessage").last().unwrap().chat_id(),
        Some(1002)
    );
    assert_eq!(may_write(&app, 1002).await, Some(false));
    // Writing again is coming back.
    tg.unblock_chat(1002);
    push(&app, &tg, &text_update(5, 1002, "en", "/help")).await;
    assert_eq!(may_write(&app, 1002).await, Some(true));
}

#[tokio::test]
async fn unreadable_updates_and_groups_are_acknowledged_and_ignored() {
    let (app, tg) = bot_app().await;
    let url = app.url("/api/v1/telegram/webhook");
    for body in [
        json!({}),
        json!({"update_id": "one"}),
        json!({"update_id": 1, "message": [null, null]}),
        json!({"update_id": 2, "message": {"from": [7]}}),
        json!([1, null, null]),
        json!({"update_id": 3, "edited_message": {"message_id": 1}}),
    ] {
        assert_eq!(
            tg.push_update(&url, SECRET, &body).await.status(),
            200,
            "{body}"
        );
    }
    let res = app
        .client
        .post(&url)
        .header("X-Telegram-Bot-Api-Secret-Token", SECRET)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let group = json!({"update_id": 4, "message": {"message_id": 5, "date": 1,
        "from": from(1101, "en"), "chat": {"id": -100_123, "type": "supergroup", "title": "Fitting room"},
        "text": "/start"}});
    push(&app, &tg, &group).await;
    assert!(tg.calls_to("sendMessage").is_empty());
    assert!(user(&app, 1101).await.is_none());
    // A name PostgreSQL cannot store (U+0000): acknowledged and dropped, not refused with a
    // 4xx that Telegram would resend; the next update from the same person is answered.
    let mut nul = text_update(5, 1102, "en", "/start");
    nul["message"]["from"]["first_name"] = "An\u{0}na".into();
    push(&app, &tg, &nul).await;
    assert!(user(&app, 1102).await.is_none());
    push(&app, &tg, &text_update(6, 1102, "en", "/start")).await;
    assert_eq!(sent(&tg, 1102).len(), 1);
}

#[tokio::test]
async fn bot_setup_registers_the_webhook_commands_and_menu_button() {
    let (app, tg) = bot_app().await;
    let info = atelier::bot::setup::setup(&app.state.settings)
        .await
        .unwrap();
    let hook = tg.calls_to("setWebhook").pop().unwrap();
    let want = format!(
        "{}/api/v1/telegram/webhook",
        app.state.settings.public_base_url
    );
    assert_eq!(hook.params["url"], want);
    assert_eq!(hook.params["secret_token"], SECRET);
    assert_eq!(
        json_param(&hook, "allowed_updates"),
        json!([
            "message",
            "callback_query",
            "pre_checkout_query",
            "my_chat_member"
        ])
    );
    let commands = tg.calls_to("setMyCommands");
    let langs: Vec<Option<&str>> = commands
        .iter()
        .map(|c| c.params.get("language_code").map(String::as_str))
        .collect();
    assert!(
        langs.contains(&Some("ru")) && langs.contains(&Some("en")),
        "{langs:?}"
    );
    let admin: Vec<&Call> = commands
        .iter()
        .filter(|c| json_param(c, "scope") == json!({"type": "chat", "chat_id": ADMIN}))
        .collect();
    assert_eq!(admin.len(), 2);
    let listed = |c: &Call| -> Vec<String> {
        json_param(c, "commands")
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["command"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(listed(admin[0]).contains(&"addtokens".to_owned()));
    let public = commands
        .iter()
        .find(|c| !c.params.contains_key("scope"))
        .unwrap();
    assert!(!listed(public).contains(&"stats".to_owned()));
    let menu = json_param(&tg.calls_to("setChatMenuButton")[0], "menu_button");
    assert_eq!(menu["type"], "web_app");
    assert_eq!(menu["web_app"]["url"], WEB_APP);
    assert_eq!(info["url"], want);
    let status = atelier::bot::setup::status(&app.state.settings)
        .await
        .unwrap();
    assert_eq!(status["allowed_updates"][3], "my_chat_member");
}

#[tokio::test]
async fn a_user_who_wrote_to_the_bot_gets_results_whatever_init_data_said() {
    use std::time::Duration;
    let (app, tg) = bot_app_with(&[("SANDBOX_GENERATION_MS", "100")]).await;
    let anna = mini_app_user(&app, 1201).await;
    assert!(!user(&app, 1201).await.unwrap().allows_write_to_pm);
    push(&app, &tg, &text_update(1, 1201, "en", "/start")).await;
    let upload = anna.upload_editing().await;
    let _worker = Worker::start(&app);
    let g = anna
        .edit(&json!({"upload_id": upload.id, "prompt": "snow", "client_request_id": "bot"}))
        .await;
    anna.wait_for_status(g.id, "succeeded").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !tg
        .calls_to("sendPhoto")
        .iter()
        .any(|c| c.chat_id() == Some(1201))
    {
        assert!(std::time::Instant::now() < deadline, "no sendPhoto");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
