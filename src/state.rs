//! Shared application state: pools, settings, keys. Cheap to clone (everything is behind Arcs).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;

use crate::auth::initdata::Verifier;
use crate::auth::jwt::JwtKeys;
use crate::config::Settings;
use crate::db::{self, PgPool};
use crate::media::pool::ImagePool;
use crate::media::storage::Storage;
use crate::realtime::Hub;

#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: PgPool,
    pub redis: deadpool_redis::Pool,
    pub jwt: Arc<JwtKeys>,
    pub init_data: Arc<Verifier>,
    pub storage: Storage,
    /// The threads that decode and encode photos (bounds CPU and memory).
    pub images: ImagePool,
    /// This process's live-progress sockets; see `crate::realtime`.
    pub hub: Arc<Hub>,
    /// YooKassa, or the sandbox payment provider without keys.
    pub payments: Arc<dyn crate::providers::yookassa::PaymentProvider>,
    /// The editing assistant's model (OpenRouter, or the sandbox).
    pub assistant: Arc<dyn crate::providers::openrouter::Assistant>,
    /// The Bot API client of the webhook (Stars answers, the bot's replies), when a bot token
    /// is set: short timeouts, as Telegram waits for the webhook's answer.
    pub telegram: Option<crate::providers::telegram::TelegramClient>,
}

impl AppState {
    /// Builds pools, keys and storage; connections are opened lazily.
    pub fn build(settings: Settings) -> anyhow::Result<Self> {
        let db = db::build_pool(
            settings.database_url.expose_secret(),
            settings.database_pool_size,
        )?;
        let redis = build_redis_pool(settings.redis_url.expose_secret())?;
        Ok(Self {
            payments: crate::providers::payment_provider(&settings, &db)?,
            storage: match &settings.media.storage_url {
                Some(url) => Storage::from_url(url)?,
                None => Storage::local(&settings.media.storage_dir)?,
            },
            images: ImagePool::new(settings.media.image_workers)?,
            hub: Arc::new(Hub::new(settings.ws.clone())),
            assistant: crate::providers::openrouter::from_settings(
                &settings.assistant,
                &settings.public_base_url,
            )?,
            telegram: match &settings.telegram_bot_token {
                Some(token) => Some(
                    crate::providers::telegram::TelegramClient::new(
                        &settings.telegram_api_base_url,
                        token.clone(),
                        Duration::from_secs(4),
                    )?
                    .with_max_total_wait(Duration::from_secs(2)),
                ),
                None => None,
            },
            jwt: Arc::new(JwtKeys::from_settings(&settings)),
            init_data: Arc::new(crate::auth::verifier_from_settings(&settings)?),
            settings: Arc::new(settings),
            db,
            redis,
        })
    }

    /// An absolute, signed link to a stored object, valid for the configured TTL.
    pub fn media_url(&self, key: &str) -> String {
        let media = &self.settings.media;
        let exp = chrono::Utc::now().timestamp()
            + i64::try_from(media.url_ttl_secs).unwrap_or(i64::MAX / 2);
        crate::media::signed_url::url(
            &self.settings.public_base_url,
            media.url_secret.expose_secret().as_bytes(),
            key,
            exp,
        )
    }

    /// A Redis key in this deployment's namespace.
    pub fn redis_key(&self, key: &str) -> String {
        format!("{}{key}", self.settings.redis_key_prefix)
    }
}

fn build_redis_pool(url: &str) -> anyhow::Result<deadpool_redis::Pool> {
    let mut pool = deadpool_redis::PoolConfig::new(16);
    pool.timeouts = deadpool_redis::Timeouts {
        wait: Some(Duration::from_secs(2)),
        create: Some(Duration::from_secs(2)),
        recycle: Some(Duration::from_secs(2)),
    };
    let config = deadpool_redis::Config {
        url: Some(url.to_owned()),
        connection: None,
        pool: Some(pool),
    };
    config
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .context("building the Redis pool")
}
