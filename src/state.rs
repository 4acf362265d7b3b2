//! Shared application state: pools, settings, keys, and every provider client, built once at
//! start. Cheap to clone (everything is behind Arcs).

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
use crate::providers::kie::KieClient;
use crate::providers::openrouter::OpenRouterClient;
use crate::providers::sandbox::{SandboxAssistant, SandboxPayments, SandboxProvider};
use crate::providers::telegram::TelegramClient;
use crate::providers::yookassa::YooKassaClient;
use crate::providers::{Assistant, GenerationProvider, PaymentProvider};
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
    pub payments: Arc<dyn PaymentProvider>,
    /// The sandbox payment provider behind `payments` when it is the one (its confirmation
    /// page needs more than the trait).
    pub sandbox_payments: Option<SandboxPayments>,
    /// The editing assistant's model (OpenRouter, or the sandbox).
    pub assistant: Arc<dyn Assistant>,
    /// The image provider of generations (kie.ai, or the sandbox), driven by the worker.
    pub image_provider: Arc<dyn GenerationProvider>,
    /// The Bot API client of the webhook (Stars answers, the bot's replies), when a bot token
    /// is set: short timeouts, as Telegram waits for the webhook's answer.
    pub telegram: Option<TelegramClient>,
    /// The Bot API client of the worker's deliveries (photos uploaded), when a bot token is
    /// set: a longer timeout than the webhook's.
    pub telegram_delivery: Option<TelegramClient>,
}

impl AppState {
    /// Builds pools, keys, storage and the provider clients; connections are opened lazily.
    pub fn build(settings: Settings) -> anyhow::Result<Self> {
        let db = db::build_pool(
            settings.database_url.expose_secret(),
            settings.database_pool_size,
        )?;
        let redis = build_redis_pool(settings.redis_url.expose_secret())?;
        let storage = match &settings.media.storage_url {
            Some(url) => Storage::from_url(url)?,
            None => Storage::local(&settings.media.storage_dir)?,
        };
        let images = ImagePool::new(settings.media.image_workers)?;
        let (payments, sandbox_payments) = payment_provider(&settings, &db)?;
        Ok(Self {
            payments,
            sandbox_payments,
            image_provider: image_provider(&settings, &storage, &images)?,
            storage,
            images,
            hub: Arc::new(Hub::new(settings.ws.clone())),
            assistant: assistant(&settings)?,
            telegram: telegram_client(&settings, Duration::from_secs(4))?
                .map(|c| c.with_max_total_wait(Duration::from_secs(2))),
            telegram_delivery: telegram_client(&settings, Duration::from_secs(30))?,
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

/// YooKassa with keys, else the sandbox (which configuration refuses in production), also
/// returned as itself for its confirmation page.
fn payment_provider(
    settings: &Settings,
    db: &PgPool,
) -> anyhow::Result<(Arc<dyn PaymentProvider>, Option<SandboxPayments>)> {
    let p = &settings.payments;
    Ok(match &p.yookassa {
        Some(keys) => {
            let client = YooKassaClient::new(
                &p.yookassa_base_url,
                &keys.shop_id,
                keys.secret_key.clone(),
                Duration::from_secs(p.yookassa_timeout_secs),
            )?;
            (Arc::new(client), None)
        }
        None => {
            let sandbox = SandboxPayments::new(db.clone(), &settings.public_base_url);
            (Arc::new(sandbox.clone()), Some(sandbox))
        }
    })
}

/// kie.ai with a key, else the local sandbox (which configuration refuses in production).
fn image_provider(
    settings: &Settings,
    storage: &Storage,
    images: &ImagePool,
) -> anyhow::Result<Arc<dyn GenerationProvider>> {
    let g = &settings.generation;
    Ok(match &g.kie_api_key {
        Some(key) => Arc::new(KieClient::new(
            &g.kie_base_url,
            key.clone(),
            Duration::from_secs(g.kie_timeout_secs),
        )?),
        None => Arc::new(SandboxProvider::new(
            storage.clone(),
            images.clone(),
            Duration::from_millis(g.sandbox_duration_ms),
        )),
    })
}

/// OpenRouter with a key, else the sandbox assistant (which configuration refuses in
/// production).
fn assistant(settings: &Settings) -> anyhow::Result<Arc<dyn Assistant>> {
    let a = &settings.assistant;
    Ok(match &a.openrouter_api_key {
        Some(key) => Arc::new(
            OpenRouterClient::new(
                &a.openrouter_base_url,
                key.clone(),
                &a.openrouter_model,
                Duration::from_secs(a.openrouter_timeout_secs),
            )?
            .with_attempts(
                a.openrouter_max_attempts,
                Duration::from_secs(a.turn_timeout_secs),
            )
            .with_referer(&settings.public_base_url)
            .with_streaming(a.openrouter_stream),
        ),
        None => Arc::new(SandboxAssistant),
    })
}

/// A Bot API client with `timeout` per call, when a bot token is configured.
fn telegram_client(
    settings: &Settings,
    timeout: Duration,
) -> anyhow::Result<Option<TelegramClient>> {
    let Some(token) = &settings.telegram_bot_token else {
        return Ok(None);
    };
    Ok(Some(TelegramClient::new(
        &settings.telegram_api_base_url,
        token.clone(),
        timeout,
    )?))
}
