//! Fixtures shared by the feature modules: the job runner in the test process, test photos,
//! credits granted straight into the ledger, an app wired to a fake YooKassa or to a fake Bot
//! API for Stars, and the Telegram updates a Stars payment sends.

use std::time::Duration;

use atelier::db::ledger::{self, Cause};
use atelier::domain::credits::Reason;
use atelier::jobs::runner::{Runner, RunnerConfig};
use atelier::shutdown;
use reqwest::multipart::Part;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{TestApp, spawn_app_with};
use crate::fakes::telegram::FakeTelegram;
use crate::fakes::yookassa::FakeYooKassa;

/// The worker's job runner inside the test process, stopped on drop.
pub struct Worker(Option<shutdown::Trigger>);

impl Worker {
    pub fn start(app: &TestApp) -> Self {
        let (trigger, stop) = shutdown::channel();
        let state = app.state.clone();
        let mut config = RunnerConfig::from_settings(&state.settings.worker);
        config.poll_interval = Duration::from_millis(200);
        let registry = atelier::jobs::registry(&state).unwrap();
        tokio::spawn(Runner::new(state, registry, config).run(stop));
        Self(Some(trigger))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            t.fire();
        }
    }
}

/// A `w`×`h` JPEG with a pattern tinted by `rgb`.
pub fn photo(w: u32, h: u32, rgb: [u8; 3]) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([rgb[0] ^ (x as u8), rgb[1] ^ (y as u8), rgb[2]])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

/// JPEG bytes as a form part.
pub fn photo_part(jpeg: Vec<u8>) -> Part {
    Part::bytes(jpeg)
        .file_name("p.jpg")
        .mime_str("image/jpeg")
        .unwrap()
}

/// Grants `amount` credits to the user with this Telegram id, straight into the ledger.
pub async fn grant_credits(app: &TestApp, telegram_id: i64, amount: i64) {
    let uid = app.user_id(telegram_id).await;
    let mut conn = app.conn().await;
    let key = format!("test-grant:{uid}:{amount}");
    ledger::grant(
        &mut conn,
        uid,
        amount,
        Reason::AdminGrant,
        Cause::new("test", "grant", &key),
    )
    .await
    .unwrap();
}

/// An app paid through a fake YooKassa (its notifications sent to the app's webhook).
pub async fn yk_app(extra: &[(&str, &str)]) -> (TestApp, FakeYooKassa) {
    let yk = FakeYooKassa::start().await;
    let mut env = yk.env();
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = spawn_app_with(&pairs).await;
    yk.set_webhook(&app.url("/api/v1/payments/webhook"));
    (app, yk)
}

/// The YooKassa webhook's URL.
pub fn webhook(app: &TestApp) -> String {
    app.url("/api/v1/payments/webhook")
}

/// Creates a payment for `product`; returns (our id, YooKassa's id).
pub async fn buy(user: &super::TestUser<'_>, product: &str) -> (Uuid, String) {
    let created = user.pay(product).await;
    let provider_id = payment_row(user.app, created.payment_id)
        .await
        .provider_payment_id
        .unwrap();
    (created.payment_id, provider_id)
}

/// The stored payment (for what the API does not show, such as the provider's id).
pub async fn payment_row(app: &TestApp, id: Uuid) -> atelier::db::models::Payment {
    let mut conn = app.state.db.get().await.unwrap();
    atelier::db::payments::find(&mut conn, id)
        .await
        .unwrap()
        .unwrap()
}

/// The Telegram webhook's secret token in the Stars apps.
pub const STARS_SECRET: &str = "stars-webhook-secret_123";

/// An app whose Bot API is a fake (Stars invoices), with the webhook secret set.
pub async fn stars_app() -> (TestApp, FakeTelegram) {
    stars_app_with(&[]).await
}

pub async fn stars_app_with(extra: &[(&str, &str)]) -> (TestApp, FakeTelegram) {
    let tg = FakeTelegram::start().await;
    let mut settings = vec![
        ("TELEGRAM_BOT_TOKEN", crate::fakes::telegram::BOT_TOKEN),
        ("TELEGRAM_API_BASE_URL", tg.base_url.as_str()),
        ("TELEGRAM_WEBHOOK_SECRET", STARS_SECRET),
    ];
    settings.extend_from_slice(extra);
    let app = spawn_app_with(&settings).await;
    (app, tg)
}

/// The user `id` of a Stars app: a bare profile signed with the fake's bot token.
pub fn stars_user(id: i64) -> super::NewUser {
    super::NewUser::id(id)
        .bare()
        .bot_token(crate::fakes::telegram::BOT_TOKEN)
}

/// The update asking to confirm a Stars payment of `total` for the invoice `payload`.
pub fn pre_checkout(query_id: &str, from: i64, total: i64, payload: &str) -> Value {
    json!({"update_id": 1, "pre_checkout_query": {
        "id": query_id, "from": {"id": from, "is_bot": false, "first_name": "Test"},
        "currency": "XTR", "total_amount": total, "invoice_payload": payload}})
}

/// The update telling that the Stars payment `charge` went through.
pub fn successful(from: i64, total: i64, payload: &str, charge: &str) -> Value {
    json!({"update_id": 2, "message": {"message_id": 5, "date": 1, "chat": {"id": from, "type": "private"},
        "from": {"id": from, "is_bot": false, "first_name": "Test"},
        "successful_payment": {"currency": "XTR", "total_amount": total, "invoice_payload": payload,
            "telegram_payment_charge_id": charge, "provider_payment_charge_id": ""}}})
}

/// The update telling that the Stars payment `charge` was refunded.
pub fn refunded(from: i64, total: i64, payload: &str, charge: &str) -> Value {
    json!({"update_id": 3, "message": {"message_id": 6, "date": 2, "chat": {"id": from, "type": "private"},
        "from": {"id": from, "is_bot": false, "first_name": "Test"},
        "refunded_payment": {"currency": "XTR", "total_amount": total, "invoice_payload": payload,
            "telegram_payment_charge_id": charge, "provider_payment_charge_id": ""}}})
}
