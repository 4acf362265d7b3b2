//! Notices and operator alerts, end to end: Telegram updates through the real webhook, the job
//! runner in the test, the fake Bot API recording `sendMessage`. A failed generation's notice
//! goes out once even when its job is retried or run again; a user who turned notices off gets
//! none; a user who blocked the bot (403) is not written to again; an alert goes out once per
//! interval; the sweep forgets old bot update ids.

use std::time::{Duration, Instant};

use atelier::db::schema::{bot_updates, jobs};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};

use crate::fakes::kie::{API_KEY, FakeKie, Mode as KieMode};
use crate::fakes::telegram::{FakeTelegram, Mode};
use crate::helpers::bot::{bot_app_with, may_write, mini_app_user, push, sent, text_update, user};
use crate::helpers::{TestApp, TestUser, Worker, grant_credits};

const OPS_CHAT: i64 = -100_777;

async fn kie_bot_app(kie: &FakeKie, extra: &[(&str, &str)]) -> (TestApp, FakeTelegram) {
    let mut env = vec![
        ("FREE_ACTIONS_PER_MONTH", "0"),
        ("KIE_API_KEY", API_KEY),
        ("KIE_BASE_URL", kie.base_url.as_str()),
        ("WORKER_BACKOFF_BASE_MS", "50"),
        ("WORKER_BACKOFF_MAX_SECS", "1"),
    ];
    env.extend_from_slice(extra);
    bot_app_with(&env).await
}

async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `(status, attempts)` of every `send_notice` job.
async fn notice_jobs(app: &TestApp) -> Vec<(String, i32)> {
    let mut conn = app.conn().await;
    jobs::table
        .filter(jobs::kind.eq("send_notice"))
        .select((jobs::status, jobs::attempts))
        .load(&mut conn)
        .await
        .unwrap()
}

async fn notice_jobs_done(app: &TestApp, want: usize) {
    until("the notice jobs", async || {
        let jobs = notice_jobs(app).await;
        jobs.len() == want && jobs.iter().all(|(s, _)| s == "succeeded")
    })
    .await;
}

/// A user who wrote to the bot (so it may write to them), with `credits`, signed in to the
/// Mini App.
async fn bot_user<'a>(
    app: &'a TestApp,
    tg: &FakeTelegram,
    id: i64,
    lang: &str,
    credits: i64,
) -> TestUser<'a> {
    push(app, tg, &text_update(id, id, lang, "/start")).await;
    let user = mini_app_user(app, id).await;
    if credits > 0 {
        grant_credits(app, id, credits).await;
    }
    user
}

/// A generation that fails for good (kie.ai answers its create with `code`).
async fn failed_generation(kie: &FakeKie, user: &TestUser<'_>, crid: &str) -> String {
    kie.push_create(KieMode::Code(402, "Credits insufficient for account 7731"));
    let upload = user.upload_editing().await;
    let body = json!({"upload_id": upload.id, "prompt": "rain", "client_request_id": crid});
    let g = user.edit(&body).await;
    user.wait_for_status(g.id, "failed").await;
    g.id.to_string()
}

fn notices_to(tg: &FakeTelegram, chat: i64, needle: &str) -> usize {
    sent(tg, chat)
        .iter()
        .filter(|c| c.params["text"].contains(needle))
        .count()
}

#[tokio::test]
async fn a_failed_generation_is_noticed_once_even_when_its_job_is_retried_and_run_again() {
    let kie = FakeKie::start().await;
    let (app, tg) = kie_bot_app(&kie, &[]).await;
    let user = bot_user(&app, &tg, 3001, "ru", 2).await;
    let _worker = Worker::start(&app);
    // Telegram fails the first send (every try of the client's): the job runs again.
    tg.push_n(Mode::ServerError(500), 3);
    failed_generation(&kie, &user, "n1").await;
    notice_jobs_done(&app, 1).await;
    let jobs = notice_jobs(&app).await;
    assert_eq!(jobs[0].1, 2, "retried once: {jobs:?}");
    // Three refused tries, then the one that went out, in the user's language (the Mini App's
    // login said `en`) with the credits back.
    assert_eq!(notices_to(&tg, 3001, "1 credit is back on your balance"), 4);

    // The same notice's job run again (a worker lost after sending, say) sends nothing.
    let key = {
        let mut conn = app.conn().await;
        use atelier::db::schema::notices;
        let key: String = notices::table
            .select(notices::key)
            .first(&mut conn)
            .await
            .unwrap();
        let payload = atelier::jobs::notice::Payload { key: key.clone() };
        atelier::jobs::queue::enqueue(
            &mut conn,
            atelier::jobs::notice::KIND,
            &payload,
            Default::default(),
        )
        .await
        .unwrap();
        key
    };
    assert!(key.starts_with("generation_failed:"), "{key}");
    notice_jobs_done(&app, 2).await;
    assert_eq!(notices_to(&tg, 3001, "credit is back"), 4);
}

#[tokio::test]
async fn a_user_who_turned_notices_off_gets_none_and_the_bot_turns_them_back_on() {
    let kie = FakeKie::start().await;
    let (app, tg) = kie_bot_app(&kie, &[]).await;
    let user = bot_user(&app, &tg, 3002, "en", 2).await;
    let res = app
        .client
        .patch(app.url("/api/v1/me"))
        .bearer_auth(&user.token)
        .json(&json!({"notices": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body, json!({"notices": false, "free_actions_back": false}));
    // Only an object with those fields is a change (the contract run sent an array).
    for bad in [
        json!([true, null]),
        json!({"notices": false, "other": 1}),
        json!({"notices": 1}),
    ] {
        let res = app
            .client
            .patch(app.url("/api/v1/me"))
            .bearer_auth(&user.token)
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 422, "{bad}");
        let problem: Value = res.json().await.unwrap();
        assert_eq!(problem["code"], "invalid_body", "{bad}");
    }

    let _worker = Worker::start(&app);
    failed_generation(&kie, &user, "off").await;
    notice_jobs_done(&app, 1).await;
    assert_eq!(notices_to(&tg, 3002, "could not be made"), 0);

    // The bot's command says so, and turns them on again.
    push(&app, &tg, &text_update(50, 3002, "en", "/notices")).await;
    let state = sent(&tg, 3002).last().unwrap().params["text"].clone();
    assert!(state.starts_with("Notices: off."), "{state}");
    push(&app, &tg, &text_update(51, 3002, "en", "/notices on")).await;
    failed_generation(&kie, &user, "on").await;
    notice_jobs_done(&app, 2).await;
    assert_eq!(notices_to(&tg, 3002, "1 credit is back"), 1);

    // Erasure takes the choices and the notices kept with them.
    let id = crate::helpers::bot::user(&app, 3002).await.unwrap().id;
    assert_eq!(notice_rows(&app, id).await, (2, 1));
    user.erase().await;
    assert_eq!(notice_rows(&app, id).await, (0, 0));
}

/// How many `notices` and `notice_settings` rows the user has.
async fn notice_rows(app: &TestApp, user_id: atelier::domain::ids::UserId) -> (i64, i64) {
    use atelier::db::schema::{notice_settings, notices};
    let mut conn = app.conn().await;
    let sent = notices::table
        .filter(notices::user_id.eq(user_id))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    let settings = notice_settings::table
        .filter(notice_settings::user_id.eq(user_id))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    (sent, settings)
}

#[tokio::test]
async fn a_user_who_blocked_the_bot_is_not_written_to_again() {
    let (app, tg) = bot_app_with(&[("WORKER_BACKOFF_BASE_MS", "50")]).await;
    push(&app, &tg, &text_update(1, 3003, "en", "/start")).await;
    let code = user(&app, 3003).await.unwrap().referral_code;
    let _worker = Worker::start(&app);
    tg.block_chat(3003);
    // Two friends join with the referrer's code: two bonuses, two notices.
    let start = format!("/start ref_{code}");
    push(&app, &tg, &text_update(2, 3004, "en", &start)).await;
    notice_jobs_done(&app, 1).await;
    assert_eq!(notices_to(&tg, 3003, "bonus credits"), 1, "refused: 403");
    assert_eq!(may_write(&app, 3003).await, Some(false));
    push(&app, &tg, &text_update(3, 3005, "en", &start)).await;
    notice_jobs_done(&app, 2).await;
    assert_eq!(notices_to(&tg, 3003, "bonus credits"), 1, "not tried again");
    assert_eq!(user(&app, 3003).await.unwrap().balance_credits, 20);
}

#[tokio::test]
async fn an_operator_alert_goes_out_once_per_interval() {
    let kie = FakeKie::start().await;
    let ops = OPS_CHAT.to_string();
    let (app, tg) = kie_bot_app(&kie, &[("ADMIN_CHAT_ID", &ops)]).await;
    let user = bot_user(&app, &tg, 3006, "en", 4).await;
    let _worker = Worker::start(&app);
    failed_generation(&kie, &user, "a1").await;
    failed_generation(&kie, &user, "a2").await;
    let alerts = sent(&tg, OPS_CHAT);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(
        alerts[0].params["text"].contains("kie refused our account"),
        "{:?}",
        alerts[0].params
    );
    // Another kind has its own interval; its second check within it sends nothing.
    assert_eq!(atelier::alerts::check_failures(&app.state).await, Some(2));
    assert!(atelier::alerts::raise(&app.state, "test_kind", "first").await);
    assert!(!atelier::alerts::raise(&app.state, "test_kind", "second").await);
    assert_eq!(sent(&tg, OPS_CHAT).len(), 2);
}

#[tokio::test]
async fn a_queue_backlog_over_the_threshold_alerts_once() {
    let ops = OPS_CHAT.to_string();
    let (app, tg) = bot_app_with(&[("ADMIN_CHAT_ID", &ops), ("ALERT_QUEUE_BACKLOG", "1")]).await;
    assert_eq!(atelier::alerts::check_backlog(&app.state).await, Some(0));
    let mut conn = app.conn().await;
    for _ in 0..2 {
        atelier::jobs::queue::enqueue(
            &mut conn,
            "nobody_runs_this",
            &json!({}),
            Default::default(),
        )
        .await
        .unwrap();
    }
    assert_eq!(atelier::alerts::check_backlog(&app.state).await, Some(2));
    assert_eq!(atelier::alerts::check_backlog(&app.state).await, Some(2));
    let alerts = sent(&tg, OPS_CHAT);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(alerts[0].params["text"].contains("2 jobs are waiting"));
}

#[tokio::test]
async fn free_actions_back_is_opt_in_and_sent_once_a_month() {
    let (app, tg) = bot_app_with(&[("WORKER_BACKOFF_BASE_MS", "50")]).await;
    let user = bot_user(&app, &tg, 3007, "ru", 0).await;
    let _other = bot_user(&app, &tg, 3008, "ru", 0).await;
    // Both used free actions last month; only 3007 opts in.
    {
        let mut conn = app.conn().await;
        use atelier::db::schema::users;
        let last_month = chrono::Utc::now().date_naive() - chrono::Duration::days(40);
        diesel::update(users::table)
            .set((
                users::free_actions_used.eq(3),
                users::free_period_start.eq(last_month),
            ))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let res = app
        .client
        .patch(app.url("/api/v1/me"))
        .bearer_auth(&user.token)
        .json(&json!({"free_actions_back": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let now = chrono::Utc::now();
    assert_eq!(
        atelier::notices::free_actions_back(&app.state, now)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        atelier::notices::free_actions_back(&app.state, now)
            .await
            .unwrap(),
        0
    );
    let _worker = Worker::start(&app);
    notice_jobs_done(&app, 1).await;
    assert_eq!(notices_to(&tg, 3007, "Your free actions are back: 3"), 1);
    assert_eq!(notices_to(&tg, 3008, "free actions are back"), 0);
}

#[tokio::test]
async fn the_sweep_forgets_bot_update_ids_older_than_a_few_days() {
    let (app, tg) = bot_app_with(&[]).await;
    push(&app, &tg, &text_update(7, 3009, "en", "/help")).await;
    let mut conn = app.conn().await;
    let old = chrono::Utc::now() - chrono::Duration::days(4);
    diesel::insert_into(bot_updates::table)
        .values((
            bot_updates::update_id.eq(6),
            bot_updates::handled_at.eq(old),
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    let pruned = atelier::jobs::sweeper::prune_bot_updates(&app.state, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(pruned, 1);
    let left: Vec<i64> = bot_updates::table
        .select(bot_updates::update_id)
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, vec![7]);
}
