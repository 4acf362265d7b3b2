//! Typed settings, read once at start from the environment (and `.env`).
//! Every variable is listed with its default in `.env.example`; a malformed value stops the start
//! with the variable's name, and missing required values with all of their names at once. The
//! public development defaults stand only while no real credential is configured
//! ([`Settings::real_credentials`]), in any `APP_ENV`.

use std::fmt;
use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};

use crate::domain::rate::{Limit, LimitSpec};

/// Bot token used when none is configured outside production, so that `make run` and the
/// README walkthrough work on a fresh checkout. Not a real credential (the development secrets
/// may stand beside it); refused with `APP_ENV=production`.
pub const DEV_BOT_TOKEN: &str = "1000000001:atelier-development-bot-token";
const DEV_JWT_SECRET: &str = "atelier-development-jwt-secret-do-not-use-in-production";
const DEV_MEDIA_SECRET: &str = "atelier-development-media-link-secret-not-for-production";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnv {
    Development,
    Test,
    Production,
}

impl FromStr for AppEnv {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "development" | "dev" => Ok(Self::Development),
            "test" => Ok(Self::Test),
            "production" | "prod" => Ok(Self::Production),
            other => Err(format!(
                "expected development, test or production, got {other:?}"
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" | "pretty" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("expected text or json, got {other:?}")),
        }
    }
}

/// How initData signatures are checked: with the bot token (HMAC), or with Telegram's
/// Ed25519 key when the deployment only knows the bot id.
#[derive(Clone)]
pub enum InitDataKey {
    BotToken(SecretString),
    ThirdParty { bot_id: i64, public_key: String },
}

impl fmt::Debug for InitDataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BotToken(_) => f.write_str("BotToken([redacted])"),
            Self::ThirdParty { bot_id, public_key } => {
                write!(
                    f,
                    "ThirdParty {{ bot_id: {bot_id}, public_key: {public_key} }}"
                )
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub app_env: AppEnv,
    pub host: String,
    pub port: u16,
    /// The API's private listener of `/metrics` (and `/health`, `/ready`) in production, where
    /// the public port has no `/metrics`. `METRICS_PORT=0` picks a free port (the tests).
    pub metrics_host: String,
    pub metrics_port: u16,
    pub public_base_url: String,
    /// Networks of our proxies in front of the API (`TRUSTED_PROXIES`): `X-Forwarded-For` is
    /// read only from them (the YooKassa source check, per-address limits).
    pub trusted_proxies: Vec<crate::domain::net::Network>,
    pub database_url: SecretString,
    pub database_pool_size: usize,
    pub redis_url: SecretString,
    pub redis_key_prefix: String,
    /// Bot token, used for initData HMAC and for the Bot API. Optional only with a third-party key.
    pub telegram_bot_token: Option<SecretString>,
    /// Bot API base URL (results are delivered to the user's chat when a bot token is set).
    pub telegram_api_base_url: String,
    /// The https URL of the Mini App page, opened by the bot's `web_app` buttons and menu button.
    pub telegram_web_app_url: String,
    pub init_data_key: InitDataKey,
    pub init_data_max_age_secs: u64,
    pub jwt_secret: SecretString,
    pub jwt_previous_secret: Option<SecretString>,
    pub jwt_ttl_secs: u64,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub free_actions_per_month: i32,
    pub signup_bonus_credits: i64,
    pub cors_allowed_origins: Vec<String>,
    pub max_json_body_bytes: usize,
    /// How long a request may take to send its body, from its headers on.
    pub request_body_timeout_secs: u64,
    pub log_format: LogFormat,
    pub media: MediaSettings,
    pub worker: WorkerSettings,
    pub generation: GenerationSettings,
    pub ws: WsSettings,
    pub assistant: AssistantSettings,
    pub limits: LimitSettings,
    pub payments: PaymentSettings,
    /// `X-Admin-API-Key` of the `/admin` API; unset disables it (404).
    pub admin_api_key: Option<SecretString>,
    /// Telegram ids whose access tokens are accepted on `/admin` too.
    pub admin_ids: Vec<i64>,
    /// The operators' Telegram chat for alerts (`alerts`); unset sends none.
    pub admin_chat_id: Option<i64>,
    /// Each kind of operator alert goes out at most once per this many seconds.
    pub alert_interval_secs: u64,
    /// Jobs due and waiting above which the operators are alerted.
    pub alert_queue_backlog: i64,
    /// Failed generations in an hour above which the operators are alerted.
    pub alert_failed_generations_per_hour: i64,
    /// Error reporting; off without `SENTRY_DSN`.
    pub sentry: Option<SentrySettings>,
}

/// Where errors are reported (Sentry), and how events are tagged.
#[derive(Debug, Clone)]
pub struct SentrySettings {
    pub dsn: SecretString,
    pub environment: String,
    pub release: String,
}

impl AppEnv {
    pub fn name(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Test => "test",
            Self::Production => "production",
        }
    }
}

fn sentry_settings(env: &Env<'_>, app_env: AppEnv) -> Result<Option<SentrySettings>, ConfigError> {
    let environment = env
        .string("SENTRY_ENVIRONMENT")
        .unwrap_or_else(|| app_env.name().to_owned());
    let release = env
        .string("SENTRY_RELEASE")
        .unwrap_or_else(|| format!("atelier@{}", env!("CARGO_PKG_VERSION")));
    let Some(dsn) = env.secret("SENTRY_DSN")? else {
        return Ok(None);
    };
    if dsn.expose_secret().parse::<sentry::types::Dsn>().is_err() {
        return Err(ConfigError {
            var: "SENTRY_DSN",
            message: "is not a Sentry DSN (https://<key>@<host>/<project>)".into(),
        });
    }
    Ok(Some(SentrySettings {
        dsn,
        environment,
        release,
    }))
}

/// Abuse limits (sliding windows in Redis, shared by all replicas; `off` disables one).
#[derive(Debug, Clone)]
pub struct LimitSettings {
    pub login_per_ip: Option<Limit>,
    /// Failed logins (bad or expired initData) per IP; when full, every login from it waits.
    pub login_failures_per_ip: Option<Limit>,
    pub chat_per_user: Option<Limit>,
    pub uploads_per_user: Option<Limit>,
    /// New payments (YooKassa and Stars together) per user.
    pub payments_per_user: Option<Limit>,
}

/// Who earns a referral bonus when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferralTrigger {
    /// When the referred user first logs in.
    Signup,
    /// When the referred user's first payment succeeds.
    FirstPayment,
}

impl FromStr for ReferralTrigger {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "signup" => Ok(Self::Signup),
            "first_payment" => Ok(Self::FirstPayment),
            other => Err(format!("expected signup or first_payment, got {other:?}")),
        }
    }
}

/// YooKassa credentials: `shopId` and the secret key of HTTP Basic auth.
#[derive(Debug, Clone)]
pub struct YooKassaKeys {
    pub shop_id: String,
    pub secret_key: SecretString,
}

/// Payments (YooKassa or its sandbox, Telegram Stars), tax accounting and referrals.
#[derive(Debug, Clone)]
pub struct PaymentSettings {
    /// `None` runs the sandbox payment provider (refused in production).
    pub yookassa: Option<YooKassaKeys>,
    pub yookassa_base_url: String,
    pub yookassa_timeout_secs: u64,
    /// Where YooKassa sends the payer back (the Mini App).
    pub return_url: String,
    /// 54-FZ receipt: `vat_code` and `payment_subject` of every item.
    pub vat_code: u8,
    pub payment_subject: String,
    /// Notifications are accepted only from these networks.
    pub allowed_networks: Vec<crate::domain::payments::Network>,
    /// НПД and the provider's commission, in basis points of each payment.
    pub tax_bps: u32,
    pub commission_bps: u32,
    /// Payments still pending this long are re-fetched by the worker.
    pub reconcile_after_secs: u64,
    /// Unpaid payments a user may have opened in the last 24 h (429 `too_many_pending_payments`).
    pub max_pending_per_user: i64,
    /// The Mini App's deep link (`https://t.me/<bot>/<app>`); referral links add `startapp`.
    pub mini_app_url: String,
    pub referral_bonus_credits: i64,
    pub referral_trigger: ReferralTrigger,
    pub referral_daily_cap: i64,
    /// `X-Telegram-Bot-Api-Secret-Token` of the bot's webhook; unset disables it (404).
    pub telegram_webhook_secret: Option<SecretString>,
}

/// The editing assistant: OpenRouter (or the local sandbox assistant), prices and retention.
#[derive(Debug, Clone)]
pub struct AssistantSettings {
    /// `None` runs the sandbox assistant (refused in production).
    pub openrouter_api_key: Option<SecretString>,
    pub openrouter_base_url: String,
    pub openrouter_model: String,
    /// One call to OpenRouter.
    pub openrouter_timeout_secs: u64,
    /// Calls per turn at most, retries included (each one is billed by OpenRouter).
    pub openrouter_max_attempts: u32,
    /// Stream answers (SSE), so the reply reaches sockets as `chat.delta` while it is written.
    pub openrouter_stream: bool,
    pub price_credits: i64,
    pub message_max_chars: usize,
    /// Sessions (and their photos) are deleted this long after their last message.
    pub session_ttl_secs: u64,
    /// The assistant's whole part of a turn, retries included. A turn still pending twice as
    /// long after it was charged (a crashed process) is refunded by the sweeper.
    pub turn_timeout_secs: u64,
}

/// The live-progress WebSocket (`GET /api/v1/ws`).
#[derive(Debug, Clone)]
pub struct WsSettings {
    /// Sockets one user may hold open on one API process; the next is refused with 429.
    pub max_connections_per_user: usize,
    pub ping_interval_secs: u64,
    /// A socket that sends no frame at all (not even a pong) for this long is closed.
    pub idle_timeout_secs: u64,
    /// Largest frame or message accepted from a client.
    pub max_frame_bytes: usize,
}

/// Generations: prices, limits and the image provider (kie.ai, or the local sandbox).
#[derive(Debug, Clone)]
pub struct GenerationSettings {
    pub fitting_price_credits: i64,
    pub editing_price_credits: i64,
    pub max_tasks_per_user_per_hour: i64,
    pub max_active_tasks_per_user: i64,
    pub edit_prompt_max_chars: usize,
    /// kie.ai; `None` runs the local sandbox provider (refused in production).
    pub kie_api_key: Option<SecretString>,
    pub kie_base_url: String,
    pub kie_edit_model: String,
    pub kie_timeout_secs: u64,
    pub kie_webhook_hmac_key: Option<SecretString>,
    pub kie_callback_max_skew_secs: u64,
    pub kie_max_create_attempts: i32,
    pub task_deadline_secs: i64,
    pub result_max_bytes: usize,
    /// How long a sandbox generation takes, so progress can be watched.
    pub sandbox_duration_ms: u64,
}

/// The job runner of `atelier worker` (and `atelier dev`).
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Jobs run at once per process.
    pub concurrency: usize,
    /// Longest idle wait between looks at the queue (NOTIFY usually wakes a worker first).
    pub poll_interval_ms: u64,
    /// Lease of a claimed job; a running job extends it every third of this.
    pub lease_secs: u64,
    pub shutdown_grace_secs: u64,
    pub backoff_base_ms: u64,
    pub backoff_max_secs: u64,
    pub job_retention_hours: u64,
    /// `atelier worker` serves /health, /ready and /metrics here; 0 turns that off.
    pub metrics_port: u16,
}

/// Uploads, image limits, storage and signed media links.
#[derive(Debug, Clone)]
pub struct MediaSettings {
    pub storage_dir: String,
    /// `s3://<bucket>[/<prefix>]`: S3 (or compatible) instead of `storage_dir`.
    pub storage_url: Option<String>,
    pub url_secret: SecretString,
    pub url_ttl_secs: u64,
    pub upload_max_bytes: usize,
    pub upload_max_request_bytes: usize,
    pub image_max_pixels: u64,
    pub image_max_side: u32,
    pub image_min_side: u32,
    pub image_store_max_side: u32,
    /// Photos decoded at once; bounds memory (a 12 MP photo takes ~36 MB decoded).
    pub image_workers: usize,
    pub fitting_upload_ttl_secs: u64,
    pub editing_upload_ttl_secs: u64,
    /// Finished generations (row and result image) are erased this many days after creation.
    pub result_retention_days: u32,
    pub sweep_interval_secs: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

impl Settings {
    /// Reads the env file (`ENV_FILE`, default `.env`; empty: none) without overriding the real
    /// environment, then the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        load_env_file(std::env::var("ENV_FILE").ok())?;
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Builds settings from any key lookup; tests pass a map.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env { lookup: &lookup };
        let app_env: AppEnv = env.parse("APP_ENV", AppEnv::Development)?;
        let production = app_env == AppEnv::Production;

        let telegram_bot_token = env.secret("TELEGRAM_BOT_TOKEN")?;
        let bot_id: Option<i64> = env.optional("TELEGRAM_BOT_ID")?;
        let init_data_key = match (bot_id, env.string("TELEGRAM_PUBLIC_KEY")) {
            (Some(bot_id), Some(public_key)) => {
                crate::auth::initdata::Verifier::public_key_from_name_or_hex(&public_key).map_err(
                    |e| ConfigError {
                        var: "TELEGRAM_PUBLIC_KEY",
                        message: e.to_string(),
                    },
                )?;
                InitDataKey::ThirdParty { bot_id, public_key }
            }
            (None, Some(_)) => {
                return Err(missing(
                    "TELEGRAM_BOT_ID",
                    "required with TELEGRAM_PUBLIC_KEY",
                ));
            }
            _ => match &telegram_bot_token {
                Some(token) => {
                    check_bot_token(token.expose_secret())?;
                    InitDataKey::BotToken(token.clone())
                }
                // Refused below, with every other missing variable.
                None => InitDataKey::BotToken(SecretString::from(DEV_BOT_TOKEN)),
            },
        };

        let jwt_secret = env.secret_of_at_least("JWT_SECRET", 32)?;
        let media_secret = env.secret_of_at_least("MEDIA_URL_SECRET", 32)?;
        let (jwt_given, media_given) = (jwt_secret.is_some(), media_secret.is_some());
        let upload_max_bytes: usize = env.parse("UPLOAD_MAX_BYTES", 5 * 1024 * 1024)?;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let media = MediaSettings {
            storage_url: env.string("STORAGE_URL"),
            storage_dir: env
                .string("STORAGE_DIR")
                .unwrap_or_else(|| "data/media".into()),
            url_secret: media_secret.unwrap_or_else(|| SecretString::from(DEV_MEDIA_SECRET)),
            url_ttl_secs: env.parse("MEDIA_URL_TTL_SECS", 3600)?,
            upload_max_bytes,
            upload_max_request_bytes: env
                .parse("UPLOAD_MAX_REQUEST_BYTES", 2 * upload_max_bytes + 64 * 1024)?,
            image_max_pixels: env.parse("IMAGE_MAX_PIXELS", 40_000_000)?,
            image_max_side: env.parse("IMAGE_MAX_SIDE", 8192)?,
            image_min_side: env.parse("IMAGE_MIN_SIDE", 256)?,
            image_store_max_side: env.parse("IMAGE_STORE_MAX_SIDE", 2048)?,
            image_workers: env.parse("IMAGE_WORKERS", cores)?,
            fitting_upload_ttl_secs: env.parse("FITTING_UPLOAD_TTL_SECS", 86_400)?,
            editing_upload_ttl_secs: env.parse("EDITING_UPLOAD_TTL_SECS", 30 * 86_400)?,
            result_retention_days: env.parse("RESULT_RETENTION_DAYS", 30)?,
            sweep_interval_secs: env.parse("SWEEP_INTERVAL_SECS", 300)?,
        };

        let generation = GenerationSettings {
            fitting_price_credits: env.parse("FITTING_PRICE_CREDITS", 2)?,
            editing_price_credits: env.parse("EDITING_PRICE_CREDITS", 1)?,
            max_tasks_per_user_per_hour: env.parse("MAX_TASKS_PER_USER_PER_HOUR", 20)?,
            max_active_tasks_per_user: env.parse("MAX_ACTIVE_TASKS_PER_USER", 3)?,
            edit_prompt_max_chars: env.parse("EDIT_PROMPT_MAX_CHARS", 1000)?,
            kie_api_key: env.secret("KIE_API_KEY")?,
            kie_base_url: env
                .string("KIE_BASE_URL")
                .unwrap_or_else(|| "https://api.kie.ai".into()),
            kie_edit_model: env
                .string("KIE_EDIT_MODEL")
                .unwrap_or_else(|| "google/nano-banana-edit".into()),
            kie_timeout_secs: env.parse("KIE_TIMEOUT_SECS", 30)?,
            kie_webhook_hmac_key: env.secret("KIE_WEBHOOK_HMAC_KEY")?,
            kie_callback_max_skew_secs: env.parse("KIE_CALLBACK_MAX_SKEW_SECS", 300)?,
            kie_max_create_attempts: env.parse("KIE_MAX_CREATE_ATTEMPTS", 2)?,
            task_deadline_secs: env.parse("GENERATION_DEADLINE_SECS", 900)?,
            result_max_bytes: env.parse("GENERATION_RESULT_MAX_BYTES", 20 * 1024 * 1024)?,
            sandbox_duration_ms: env.parse("SANDBOX_GENERATION_MS", 3000)?,
        };
        let worker = WorkerSettings {
            concurrency: env.parse("WORKER_CONCURRENCY", 4)?,
            poll_interval_ms: env.parse("WORKER_POLL_INTERVAL_MS", 5000)?,
            lease_secs: env.parse("WORKER_LEASE_SECS", 60)?,
            shutdown_grace_secs: env.parse("WORKER_SHUTDOWN_GRACE_SECS", 20)?,
            backoff_base_ms: env.parse("WORKER_BACKOFF_BASE_MS", 2000)?,
            backoff_max_secs: env.parse("WORKER_BACKOFF_MAX_SECS", 600)?,
            job_retention_hours: env.parse("WORKER_JOB_RETENTION_HOURS", 168)?,
            metrics_port: env.parse("WORKER_METRICS_PORT", 9100)?,
        };

        let ws = WsSettings {
            max_connections_per_user: env.parse("WS_MAX_CONNECTIONS_PER_USER", 5)?,
            ping_interval_secs: env.parse("WS_PING_INTERVAL_SECS", 10)?,
            idle_timeout_secs: env.parse("WS_IDLE_TIMEOUT_SECS", 30)?,
            max_frame_bytes: env.parse("WS_MAX_FRAME_BYTES", 64 * 1024)?,
        };

        let limits = LimitSettings {
            login_per_ip: env
                .parse(
                    "RATE_LIMIT_LOGIN_PER_IP",
                    LimitSpec(Some(Limit::new(60, 60))),
                )?
                .0,
            login_failures_per_ip: env
                .parse(
                    "RATE_LIMIT_LOGIN_FAILURES_PER_IP",
                    LimitSpec(Some(Limit::new(20, 900))),
                )?
                .0,
            chat_per_user: env
                .parse(
                    "RATE_LIMIT_CHAT_PER_USER",
                    LimitSpec(Some(Limit::new(10, 60))),
                )?
                .0,
            uploads_per_user: env
                .parse(
                    "RATE_LIMIT_UPLOADS_PER_USER",
                    LimitSpec(Some(Limit::new(60, 3600))),
                )?
                .0,
            payments_per_user: env
                .parse(
                    "RATE_LIMIT_PAYMENTS_PER_USER",
                    LimitSpec(Some(Limit::new(10, 3600))),
                )?
                .0,
        };
        let payments = payment_settings(&env, production)?;
        let assistant = AssistantSettings {
            openrouter_api_key: env.secret("OPENROUTER_API_KEY")?,
            openrouter_base_url: env
                .string("OPENROUTER_BASE_URL")
                .unwrap_or_else(|| "https://openrouter.ai/api/v1".into()),
            openrouter_model: env
                .string("OPENROUTER_MODEL")
                .unwrap_or_else(|| "anthropic/claude-haiku-4.5".into()),
            openrouter_timeout_secs: env.parse("OPENROUTER_TIMEOUT_SECS", 30)?,
            openrouter_max_attempts: env.parse("OPENROUTER_MAX_ATTEMPTS", 3)?,
            openrouter_stream: env.parse("OPENROUTER_STREAM", true)?,
            price_credits: env.parse("CHAT_PRICE_CREDITS", 1)?,
            message_max_chars: env.parse("CHAT_MESSAGE_MAX_CHARS", 2000)?,
            session_ttl_secs: env.parse("CHAT_SESSION_TTL_SECS", 30 * 86_400)?,
            turn_timeout_secs: env.parse("CHAT_TURN_TIMEOUT_SECS", 90)?,
        };

        let port: u16 = env.parse("PORT", 8080)?;
        let host = env.string("HOST").unwrap_or_else(|| "127.0.0.1".into());
        let public_base_url = env
            .string("PUBLIC_BASE_URL")
            .unwrap_or_else(|| format!("http://127.0.0.1:{port}"))
            .trim_end_matches('/')
            .to_owned();
        if !(public_base_url.starts_with("http://") || public_base_url.starts_with("https://")) {
            return Err(ConfigError {
                var: "PUBLIC_BASE_URL",
                message: "must start with http:// or https://".into(),
            });
        }
        let telegram_web_app_url = env
            .string("TELEGRAM_WEB_APP_URL")
            .unwrap_or_else(|| format!("{public_base_url}/"));

        let settings = Settings {
            app_env,
            metrics_host: env.string("METRICS_HOST").unwrap_or_else(|| host.clone()),
            metrics_port: env.parse("METRICS_PORT", 9090)?,
            host,
            port,
            public_base_url,
            trusted_proxies: trusted_proxies(&env)?,
            database_url: env.secret("DATABASE_URL")?.unwrap_or_else(|| {
                SecretString::from("postgres://postgres@127.0.0.1:5432/atelier")
            }),
            database_pool_size: env.parse("DATABASE_POOL_SIZE", 16)?,
            redis_url: env
                .secret("REDIS_URL")?
                .unwrap_or_else(|| SecretString::from("redis://127.0.0.1:6379")),
            redis_key_prefix: env
                .string("REDIS_KEY_PREFIX")
                .unwrap_or_else(|| "atelier:".into()),
            telegram_bot_token,
            telegram_api_base_url: env
                .string("TELEGRAM_API_BASE_URL")
                .unwrap_or_else(|| "https://api.telegram.org".into()),
            telegram_web_app_url,
            init_data_key,
            init_data_max_age_secs: env.parse("INIT_DATA_MAX_AGE_SECS", 86_400)?,
            jwt_secret: jwt_secret.unwrap_or_else(|| SecretString::from(DEV_JWT_SECRET)),
            jwt_previous_secret: env.secret("JWT_PREVIOUS_SECRET")?,
            jwt_ttl_secs: env.parse("JWT_TTL_SECS", 86_400)?,
            jwt_issuer: env.string("JWT_ISSUER").unwrap_or_else(|| "atelier".into()),
            jwt_audience: env
                .string("JWT_AUDIENCE")
                .unwrap_or_else(|| "atelier-miniapp".into()),
            free_actions_per_month: env.parse("FREE_ACTIONS_PER_MONTH", 10)?,
            signup_bonus_credits: env.parse("SIGNUP_BONUS_CREDITS", 0)?,
            cors_allowed_origins: env
                .string("CORS_ALLOWED_ORIGINS")
                .map(|s| {
                    s.split(',')
                        .map(|o| o.trim().to_owned())
                        .filter(|o| !o.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            max_json_body_bytes: env.parse("MAX_JSON_BODY_BYTES", 64 * 1024)?,
            request_body_timeout_secs: env.parse("REQUEST_BODY_TIMEOUT_SECS", 60)?,
            log_format: env.parse("LOG_FORMAT", LogFormat::Text)?,
            media,
            worker,
            generation,
            ws,
            limits,
            payments,
            admin_api_key: env.secret("ADMIN_API_KEY")?,
            admin_ids: env
                .string("ADMIN_IDS")
                .map(|ids| {
                    ids.split(',')
                        .map(str::trim)
                        .filter(|id| !id.is_empty())
                        .map(|id| {
                            id.parse::<i64>().map_err(|_| ConfigError {
                                var: "ADMIN_IDS",
                                message: format!("{id:?} is not a Telegram id"),
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()?
                .unwrap_or_default(),
            admin_chat_id: env.optional("ADMIN_CHAT_ID")?,
            alert_interval_secs: env.parse("ALERT_INTERVAL_SECS", 3600)?,
            alert_queue_backlog: env.parse("ALERT_QUEUE_BACKLOG", 500)?,
            alert_failed_generations_per_hour: env
                .parse("ALERT_FAILED_GENERATIONS_PER_HOUR", 20)?,
            assistant,
            sentry: sentry_settings(&env, app_env)?,
        };
        settings.check()?;
        settings.require_own_secrets(jwt_given, media_given)?;
        Ok(settings)
    }

    /// The real credentials configured, by variable: a bot token other than [`DEV_BOT_TOKEN`],
    /// Telegram's public key, YooKassa's keys, a kie.ai or an OpenRouter key. The development
    /// defaults (JWT and media link secrets, the `/dev/init-data` signer) exist only while there
    /// is none, whatever `APP_ENV` says: they are public, and beside a real credential anyone
    /// could sign an access token (an admin's) or a media link with them.
    pub fn real_credentials(&self) -> Vec<&'static str> {
        let mut real = Vec::new();
        if self
            .telegram_bot_token
            .as_ref()
            .is_some_and(|t| t.expose_secret() != DEV_BOT_TOKEN)
        {
            real.push("TELEGRAM_BOT_TOKEN");
        }
        if matches!(self.init_data_key, InitDataKey::ThirdParty { .. }) {
            real.push("TELEGRAM_PUBLIC_KEY");
        }
        if self.payments.yookassa.is_some() {
            real.push("YOOKASSA_SECRET_KEY");
        }
        if self.generation.kie_api_key.is_some() {
            real.push("KIE_API_KEY");
        }
        if self.assistant.openrouter_api_key.is_some() {
            real.push("OPENROUTER_API_KEY");
        }
        real
    }

    /// Refuses, in one error naming every missing variable, a start that would use a development
    /// default beside a real credential, or a development default or sandbox in production.
    fn require_own_secrets(&self, jwt_given: bool, media_given: bool) -> Result<(), ConfigError> {
        let production = self.is_production();
        let real = self.real_credentials();
        let dev_token = self
            .telegram_bot_token
            .as_ref()
            .is_some_and(|t| t.expose_secret() == DEV_BOT_TOKEN);
        if production && dev_token {
            return Err(missing(
                "TELEGRAM_BOT_TOKEN",
                "the development bot token is refused in production",
            ));
        }
        let mut absent = Vec::new();
        let bot_known = self.telegram_bot_token.is_some()
            || matches!(self.init_data_key, InitDataKey::ThirdParty { .. });
        if production && !bot_known {
            absent.push("TELEGRAM_BOT_TOKEN");
        }
        if production || !real.is_empty() {
            if !jwt_given {
                absent.push("JWT_SECRET");
            }
            if !media_given {
                absent.push("MEDIA_URL_SECRET");
            }
        }
        if production {
            if self.generation.kie_api_key.is_none() {
                absent.push("KIE_API_KEY");
            }
            if self.payments.yookassa.is_none() {
                absent.extend(["YOOKASSA_SHOP_ID", "YOOKASSA_SECRET_KEY"]);
            }
            if self.assistant.openrouter_api_key.is_none() {
                absent.push("OPENROUTER_API_KEY");
            }
        }
        let Some(first) = absent.first() else {
            return Ok(());
        };
        let why = if production {
            "required in production, where no development default or sandbox provider is used"
                .to_owned()
        } else {
            format!(
                "required beside a real credential ({}): the development defaults are public",
                real.join(", ")
            )
        };
        Err(missing(
            first,
            &format!("missing {}; {why}", absent.join(", ")),
        ))
    }

    fn check(&self) -> Result<(), ConfigError> {
        let bad = |var, message: &str| {
            Err(ConfigError {
                var,
                message: message.into(),
            })
        };
        if self.database_pool_size == 0 {
            return bad("DATABASE_POOL_SIZE", "must be at least 1");
        }
        if self.jwt_ttl_secs == 0 {
            return bad("JWT_TTL_SECS", "must be at least 1");
        }
        if self.free_actions_per_month < 0 {
            return bad("FREE_ACTIONS_PER_MONTH", "must not be negative");
        }
        if self.signup_bonus_credits < 0 {
            return bad("SIGNUP_BONUS_CREDITS", "must not be negative");
        }
        let m = &self.media;
        if m.upload_max_bytes == 0 || m.upload_max_request_bytes < m.upload_max_bytes {
            return bad(
                "UPLOAD_MAX_REQUEST_BYTES",
                "must be at least UPLOAD_MAX_BYTES (and that above 0)",
            );
        }
        if m.image_workers == 0 {
            return bad("IMAGE_WORKERS", "must be at least 1");
        }
        if m.image_min_side == 0
            || m.image_store_max_side < m.image_min_side
            || m.image_max_side < m.image_min_side
        {
            return bad(
                "IMAGE_STORE_MAX_SIDE",
                "image sides must satisfy 0 < IMAGE_MIN_SIDE <= IMAGE_STORE_MAX_SIDE, IMAGE_MAX_SIDE",
            );
        }
        if m.result_retention_days == 0 {
            return bad("RESULT_RETENTION_DAYS", "must be at least 1");
        }
        if m.url_ttl_secs == 0 || m.sweep_interval_secs == 0 {
            return bad(
                "MEDIA_URL_TTL_SECS",
                "MEDIA_URL_TTL_SECS and SWEEP_INTERVAL_SECS must be at least 1",
            );
        }
        let w = &self.worker;
        if w.concurrency == 0 {
            return bad("WORKER_CONCURRENCY", "must be at least 1");
        }
        if w.poll_interval_ms == 0 {
            return bad("WORKER_POLL_INTERVAL_MS", "must be at least 1");
        }
        if w.lease_secs == 0 {
            return bad("WORKER_LEASE_SECS", "must be at least 1");
        }
        if w.backoff_base_ms == 0 || w.backoff_max_secs.saturating_mul(1000) < w.backoff_base_ms {
            return bad(
                "WORKER_BACKOFF_MAX_SECS",
                "must be at least WORKER_BACKOFF_BASE_MS (and that above 0)",
            );
        }
        if w.job_retention_hours == 0 {
            return bad("WORKER_JOB_RETENTION_HOURS", "must be at least 1");
        }
        let g = &self.generation;
        if g.fitting_price_credits < 1 || g.editing_price_credits < 1 {
            return bad(
                "FITTING_PRICE_CREDITS",
                "prices (FITTING_PRICE_CREDITS, EDITING_PRICE_CREDITS) must be at least 1",
            );
        }
        if g.max_active_tasks_per_user < 1 || g.max_tasks_per_user_per_hour < 1 {
            return bad(
                "MAX_ACTIVE_TASKS_PER_USER",
                "task limits must be at least 1",
            );
        }
        if g.kie_max_create_attempts < 1 || g.task_deadline_secs < 1 || g.edit_prompt_max_chars < 1
        {
            return bad(
                "KIE_MAX_CREATE_ATTEMPTS",
                "KIE_MAX_CREATE_ATTEMPTS, GENERATION_DEADLINE_SECS and EDIT_PROMPT_MAX_CHARS must be at least 1",
            );
        }
        let ws = &self.ws;
        if ws.max_connections_per_user == 0 {
            return bad("WS_MAX_CONNECTIONS_PER_USER", "must be at least 1");
        }
        if ws.ping_interval_secs == 0 || ws.idle_timeout_secs <= ws.ping_interval_secs {
            return bad(
                "WS_IDLE_TIMEOUT_SECS",
                "must be above WS_PING_INTERVAL_SECS (and that above 0), or answering pings would not keep a socket open",
            );
        }
        if ws.max_frame_bytes < 1024 {
            return bad("WS_MAX_FRAME_BYTES", "must be at least 1024");
        }
        if let Some(key) = &self.admin_api_key
            && key.expose_secret().len() < 16
        {
            return bad("ADMIN_API_KEY", "must be at least 16 bytes");
        }
        let a = &self.assistant;
        if a.price_credits < 1 {
            return bad("CHAT_PRICE_CREDITS", "must be at least 1");
        }
        if a.message_max_chars < 1 {
            return bad("CHAT_MESSAGE_MAX_CHARS", "must be at least 1");
        }
        if a.openrouter_max_attempts < 1 || a.openrouter_timeout_secs < 1 {
            return bad(
                "OPENROUTER_MAX_ATTEMPTS",
                "OPENROUTER_MAX_ATTEMPTS and OPENROUTER_TIMEOUT_SECS must be at least 1",
            );
        }
        if a.turn_timeout_secs < a.openrouter_timeout_secs {
            return bad(
                "CHAT_TURN_TIMEOUT_SECS",
                "must be at least OPENROUTER_TIMEOUT_SECS (one call has to fit)",
            );
        }
        if a.session_ttl_secs < 3600 {
            return bad("CHAT_SESSION_TTL_SECS", "must be at least 3600");
        }
        if let Some(prev) = &self.jwt_previous_secret
            && prev.expose_secret().len() < 32
        {
            return bad("JWT_PREVIOUS_SECRET", "must be at least 32 bytes");
        }
        Ok(())
    }

    pub fn is_production(&self) -> bool {
        self.app_env == AppEnv::Production
    }

    /// The address to bind (`PORT=0` picks a free port, as the tests do).
    pub fn bind_address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Where the production metrics listener binds (`METRICS_HOST`:`METRICS_PORT`).
    pub fn metrics_address(&self) -> String {
        format!("{}:{}", self.metrics_host, self.metrics_port)
    }
}

fn payment_settings(env: &Env<'_>, production: bool) -> Result<PaymentSettings, ConfigError> {
    let bad = |var, message: &str| ConfigError {
        var,
        message: message.into(),
    };
    let yookassa = match (
        env.string("YOOKASSA_SHOP_ID"),
        env.secret("YOOKASSA_SECRET_KEY")?,
    ) {
        (Some(shop_id), Some(secret_key)) => Some(YooKassaKeys {
            shop_id,
            secret_key,
        }),
        // Required in production: refused with every other missing variable.
        (None, None) => None,
        (Some(_), None) => {
            return Err(missing(
                "YOOKASSA_SECRET_KEY",
                "required with YOOKASSA_SHOP_ID",
            ));
        }
        (None, Some(_)) => {
            return Err(missing(
                "YOOKASSA_SHOP_ID",
                "required with YOOKASSA_SECRET_KEY",
            ));
        }
    };
    let mini_app_url = env
        .string("TELEGRAM_MINI_APP_URL")
        .unwrap_or_else(|| "https://t.me/atelier_bot/app".into());
    let networks = env
        .string("YOOKASSA_ALLOWED_NETWORKS")
        .unwrap_or_else(|| crate::domain::payments::YOOKASSA_NETWORKS.into());
    let allowed_networks = crate::domain::payments::parse_networks(&networks)
        .map_err(|e| bad("YOOKASSA_ALLOWED_NETWORKS", &e))?;
    let vat_code: u8 = env.parse("YOOKASSA_VAT_CODE", 1)?;
    if !(1..=12).contains(&vat_code) {
        return Err(bad(
            "YOOKASSA_VAT_CODE",
            "must be a YooKassa vat_code, 1 to 12",
        ));
    }
    let payment_subject = env
        .string("YOOKASSA_PAYMENT_SUBJECT")
        .unwrap_or_else(|| "service".into());
    if !payment_subject
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b == b'_')
    {
        return Err(bad(
            "YOOKASSA_PAYMENT_SUBJECT",
            "must be a YooKassa payment_subject such as service",
        ));
    }
    let telegram_webhook_secret = env.secret("TELEGRAM_WEBHOOK_SECRET")?;
    if let Some(secret) = &telegram_webhook_secret {
        let s = secret.expose_secret();
        let valid = s.len() <= 256
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(bad(
                "TELEGRAM_WEBHOOK_SECRET",
                "1-256 characters of A-Z, a-z, 0-9, _ and -",
            ));
        }
    }
    let settings = PaymentSettings {
        yookassa,
        yookassa_base_url: env
            .string("YOOKASSA_BASE_URL")
            .unwrap_or_else(|| "https://api.yookassa.ru/v3".into()),
        yookassa_timeout_secs: env.parse("YOOKASSA_TIMEOUT_SECS", 35)?,
        return_url: env
            .string("YOOKASSA_RETURN_URL")
            .unwrap_or_else(|| mini_app_url.clone()),
        vat_code,
        payment_subject,
        allowed_networks,
        tax_bps: env.parse("NPD_TAX_RATE_BPS", 400)?,
        commission_bps: env.parse("PAYMENT_COMMISSION_RATE_BPS", 280)?,
        reconcile_after_secs: env.parse("PAYMENT_RECONCILE_AFTER_SECS", 600)?,
        max_pending_per_user: env.parse("PAYMENTS_MAX_PENDING_PER_USER", 5)?,
        mini_app_url,
        referral_bonus_credits: env.parse("REFERRAL_BONUS_CREDITS", 10)?,
        referral_trigger: env.parse("REFERRAL_BONUS_TRIGGER", ReferralTrigger::Signup)?,
        referral_daily_cap: env.parse("REFERRAL_DAILY_CAP", 20)?,
        telegram_webhook_secret,
    };
    if settings.tax_bps + settings.commission_bps > 10_000 {
        return Err(bad(
            "NPD_TAX_RATE_BPS",
            "tax and commission together must not exceed 10000 (100 %)",
        ));
    }
    if settings.referral_bonus_credits < 0 || settings.referral_daily_cap < 0 {
        return Err(bad(
            "REFERRAL_BONUS_CREDITS",
            "REFERRAL_BONUS_CREDITS and REFERRAL_DAILY_CAP must not be negative",
        ));
    }
    for (var, url) in [
        ("TELEGRAM_MINI_APP_URL", &settings.mini_app_url),
        ("YOOKASSA_RETURN_URL", &settings.return_url),
    ] {
        let http_allowed = !production && url.starts_with("http://");
        if !url.starts_with("https://") && !http_allowed {
            return Err(bad(
                var,
                "must start with https:// (or http:// outside production)",
            ));
        }
    }
    if settings.yookassa_timeout_secs == 0 || settings.reconcile_after_secs == 0 {
        return Err(bad(
            "YOOKASSA_TIMEOUT_SECS",
            "YOOKASSA_TIMEOUT_SECS and PAYMENT_RECONCILE_AFTER_SECS must be at least 1",
        ));
    }
    Ok(settings)
}

fn trusted_proxies(env: &Env<'_>) -> Result<Vec<crate::domain::net::Network>, ConfigError> {
    if env.string("TRUSTED_PROXY_HOPS").is_some() {
        return Err(missing(
            "TRUSTED_PROXY_HOPS",
            "no longer read: set TRUSTED_PROXIES to the networks of your proxies instead \
             (e.g. 10.0.0.0/8,127.0.0.1/32), and remove TRUSTED_PROXY_HOPS",
        ));
    }
    let list = env.string("TRUSTED_PROXIES").unwrap_or_default();
    crate::domain::net::parse_networks(&list).map_err(|e| ConfigError {
        var: "TRUSTED_PROXIES",
        message: e,
    })
}

fn missing(var: &'static str, message: &str) -> ConfigError {
    ConfigError {
        var,
        message: message.into(),
    }
}

fn check_bot_token(token: &str) -> Result<(), ConfigError> {
    let valid = token
        .split_once(':')
        .is_some_and(|(id, rest)| id.parse::<i64>().is_ok() && !rest.is_empty());
    if valid {
        Ok(())
    } else {
        Err(missing(
            "TELEGRAM_BOT_TOKEN",
            "must look like <bot id>:<secret>",
        ))
    }
}

struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl Env<'_> {
    /// A non-empty value, trimmed; empty counts as unset.
    fn string(&self, var: &str) -> Option<String> {
        (self.lookup)(var)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn secret(&self, var: &'static str) -> Result<Option<SecretString>, ConfigError> {
        Ok(self.string(var).map(SecretString::from))
    }

    fn secret_of_at_least(
        &self,
        var: &'static str,
        bytes: usize,
    ) -> Result<Option<SecretString>, ConfigError> {
        match self.secret(var)? {
            Some(s) if s.expose_secret().len() < bytes => Err(ConfigError {
                var,
                message: format!("must be at least {bytes} bytes"),
            }),
            secret => Ok(secret),
        }
    }

    fn optional<T: FromStr>(&self, var: &'static str) -> Result<Option<T>, ConfigError>
    where
        T::Err: fmt::Display,
    {
        self.string(var)
            .map(|raw| {
                raw.parse::<T>().map_err(|e| ConfigError {
                    var,
                    message: format!("cannot parse {raw:?}: {e}"),
                })
            })
            .transpose()
    }

    fn parse<T: FromStr>(&self, var: &'static str, default: T) -> Result<T, ConfigError>
    where
        T::Err: fmt::Display,
    {
        Ok(self.optional(var)?.unwrap_or(default))
    }
}

/// Loads `path` (unset: `.env`, which may be missing; empty: nothing) into the environment,
/// below the variables already set. Scripts that choose every setting themselves (`make e2e`,
/// `make contract`, the benchmarks) set `ENV_FILE=` so that a developer's `.env` cannot add a real
/// provider's key or another database behind their back. A file that is there but malformed is
/// an error, not silently skipped.
fn load_env_file(path: Option<String>) -> Result<(), ConfigError> {
    let (path, required) = match path {
        None => (".env".to_owned(), false),
        Some(p) if p.is_empty() => return Ok(()),
        Some(p) => (p, true),
    };
    match dotenvy::from_path(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.not_found() && !required => Ok(()),
        Err(e) => Err(ConfigError {
            var: "ENV_FILE",
            message: format!("{path}: {e}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_work_outside_production() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.port, 8080);
        assert_eq!(s.free_actions_per_month, 10);
        assert_eq!(s.init_data_max_age_secs, 86_400);
        assert!(matches!(s.init_data_key, InitDataKey::BotToken(_)));
    }

    const REAL_BOT: (&str, &str) = ("TELEGRAM_BOT_TOKEN", "7000000001:AAreal-looking-token");

    /// The error of `pairs`, which must name exactly `vars` (in its message, `var` the first).
    fn refused_naming(pairs: &[(&str, &str)], vars: &[&str]) -> String {
        let err = settings(pairs).unwrap_err();
        assert_eq!(err.var, vars[0], "{err}");
        let shown = err.to_string();
        for var in vars {
            assert!(shown.contains(var), "{var} not named: {shown}");
        }
        shown
    }

    #[test]
    fn a_real_bot_token_needs_its_own_jwt_and_media_secrets_outside_production_too() {
        let shown = refused_naming(&[REAL_BOT], &["JWT_SECRET", "MEDIA_URL_SECRET"]);
        assert!(shown.contains("TELEGRAM_BOT_TOKEN"), "{shown}");
        // APP_ENV does not matter: the credential decides.
        refused_naming(
            &[("APP_ENV", "test"), REAL_BOT],
            &["JWT_SECRET", "MEDIA_URL_SECRET"],
        );
        let jwt = "j".repeat(40);
        let media = "m".repeat(40);
        refused_naming(&[REAL_BOT, ("JWT_SECRET", &jwt)], &["MEDIA_URL_SECRET"]);
        let err = settings(&[REAL_BOT, ("MEDIA_URL_SECRET", &media)]).unwrap_err();
        assert_eq!(err.var, "JWT_SECRET");
        assert!(!err.to_string().contains("MEDIA_URL_SECRET"), "{err}");
        let s = settings(&[REAL_BOT, ("JWT_SECRET", &jwt), ("MEDIA_URL_SECRET", &media)]).unwrap();
        assert_eq!(s.jwt_secret.expose_secret(), jwt);
        assert_eq!(s.media.url_secret.expose_secret(), media);
    }

    #[test]
    fn provider_keys_are_real_credentials_too() {
        let secrets = ["JWT_SECRET", "MEDIA_URL_SECRET"];
        for pairs in [
            &[("KIE_API_KEY", "kie-key")][..],
            &[("OPENROUTER_API_KEY", "sk-or-v1-x")][..],
            &[("YOOKASSA_SHOP_ID", "1"), ("YOOKASSA_SECRET_KEY", "live_x")][..],
            &[("TELEGRAM_BOT_ID", "1"), ("TELEGRAM_PUBLIC_KEY", "prod")][..],
        ] {
            refused_naming(pairs, &secrets);
        }
    }

    #[test]
    fn the_development_bot_token_keeps_the_development_defaults() {
        for pairs in [&[][..], &[("TELEGRAM_BOT_TOKEN", DEV_BOT_TOKEN)][..]] {
            let s = settings(pairs).unwrap();
            assert!(s.real_credentials().is_empty());
            assert_eq!(s.jwt_secret.expose_secret(), DEV_JWT_SECRET);
            assert_eq!(s.media.url_secret.expose_secret(), DEV_MEDIA_SECRET);
        }
        let err = settings(&[
            ("APP_ENV", "production"),
            ("TELEGRAM_BOT_TOKEN", DEV_BOT_TOKEN),
        ])
        .unwrap_err();
        assert_eq!(err.var, "TELEGRAM_BOT_TOKEN");
    }

    #[test]
    fn production_names_every_missing_variable_at_once() {
        refused_naming(
            &[("APP_ENV", "production")],
            &[
                "TELEGRAM_BOT_TOKEN",
                "JWT_SECRET",
                "MEDIA_URL_SECRET",
                "KIE_API_KEY",
                "YOOKASSA_SHOP_ID",
                "YOOKASSA_SECRET_KEY",
                "OPENROUTER_API_KEY",
            ],
        );
    }

    #[test]
    fn production_requires_secrets_and_names_them() {
        let err =
            settings(&[("APP_ENV", "production"), ("JWT_SECRET", &"x".repeat(40))]).unwrap_err();
        assert_eq!(err.var, "TELEGRAM_BOT_TOKEN");
        let err =
            settings(&[("APP_ENV", "production"), ("TELEGRAM_BOT_TOKEN", "1:abc")]).unwrap_err();
        assert_eq!(err.var, "JWT_SECRET");
    }

    #[test]
    fn the_env_file_is_optional_only_by_default_and_never_malformed() {
        assert!(
            load_env_file(Some(String::new())).is_ok(),
            "empty: no file is read"
        );
        let missing =
            std::env::temp_dir().join(format!("atelier-missing-{}.env", std::process::id()));
        let err = load_env_file(Some(missing.display().to_string())).unwrap_err();
        assert_eq!(err.var, "ENV_FILE", "a file named on purpose must be there");

        let file = std::env::temp_dir().join(format!("atelier-{}.env", std::process::id()));
        std::fs::write(
            &file,
            "ATELIER_ENV_FILE_TEST=from-file\nthis line has no equals sign\n",
        )
        .unwrap();
        let err = load_env_file(Some(file.display().to_string())).unwrap_err();
        assert_eq!(err.var, "ENV_FILE");
        std::fs::write(&file, "# a comment\nATELIER_ENV_FILE_TEST=from-file\n").unwrap();
        load_env_file(Some(file.display().to_string())).unwrap();
        std::fs::remove_file(&file).unwrap();
        assert_eq!(std::env::var("ATELIER_ENV_FILE_TEST").unwrap(), "from-file");
    }

    #[test]
    fn malformed_values_name_the_variable() {
        assert_eq!(settings(&[("PORT", "eighty")]).unwrap_err().var, "PORT");
        assert_eq!(
            settings(&[("APP_ENV", "staging")]).unwrap_err().var,
            "APP_ENV"
        );
        assert_eq!(
            settings(&[("JWT_SECRET", "short")]).unwrap_err().var,
            "JWT_SECRET"
        );
        assert_eq!(
            settings(&[("TELEGRAM_BOT_TOKEN", "nocolon")])
                .unwrap_err()
                .var,
            "TELEGRAM_BOT_TOKEN"
        );
        assert_eq!(
            settings(&[("TELEGRAM_PUBLIC_KEY", "prod")])
                .unwrap_err()
                .var,
            "TELEGRAM_BOT_ID"
        );
        assert_eq!(
            settings(&[("TELEGRAM_BOT_ID", "1"), ("TELEGRAM_PUBLIC_KEY", "zz")])
                .unwrap_err()
                .var,
            "TELEGRAM_PUBLIC_KEY"
        );
    }

    #[test]
    fn payment_settings_are_checked() {
        let s = settings(&[]).unwrap();
        assert!(s.payments.yookassa.is_none(), "sandbox without keys");
        assert!(!s.payments.allowed_networks.is_empty());
        assert_eq!(s.payments.return_url, s.payments.mini_app_url);
        assert_eq!(
            settings(&[("YOOKASSA_SHOP_ID", "1")]).unwrap_err().var,
            "YOOKASSA_SECRET_KEY"
        );
        assert_eq!(
            settings(&[("YOOKASSA_ALLOWED_NETWORKS", "10.0.0.0/99")])
                .unwrap_err()
                .var,
            "YOOKASSA_ALLOWED_NETWORKS"
        );
        assert_eq!(
            settings(&[("REFERRAL_BONUS_TRIGGER", "sometimes")])
                .unwrap_err()
                .var,
            "REFERRAL_BONUS_TRIGGER"
        );
        assert_eq!(
            settings(&[("TELEGRAM_WEBHOOK_SECRET", "has space")])
                .unwrap_err()
                .var,
            "TELEGRAM_WEBHOOK_SECRET"
        );
        let prod = settings(&[
            ("APP_ENV", "production"),
            ("TELEGRAM_BOT_TOKEN", "1:abc"),
            ("JWT_SECRET", &"j".repeat(40)),
            ("MEDIA_URL_SECRET", &"m".repeat(40)),
            ("KIE_API_KEY", "k"),
        ])
        .unwrap_err();
        assert_eq!(prod.var, "YOOKASSA_SHOP_ID");
    }

    #[test]
    fn trusted_proxies_are_networks_and_hop_counts_are_refused() {
        assert!(settings(&[]).unwrap().trusted_proxies.is_empty());
        let s = settings(&[("TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1/32,::1/128")]).unwrap();
        assert_eq!(s.trusted_proxies.len(), 3);
        assert!(s.trusted_proxies[0].contains("10.20.30.40".parse().unwrap()));
        assert_eq!(
            settings(&[("TRUSTED_PROXIES", "10.0.0.0/40")])
                .unwrap_err()
                .var,
            "TRUSTED_PROXIES"
        );
        let err = settings(&[("TRUSTED_PROXY_HOPS", "1")]).unwrap_err();
        assert_eq!(err.var, "TRUSTED_PROXY_HOPS");
        assert!(err.to_string().contains("TRUSTED_PROXIES"), "{err}");
    }

    #[test]
    fn debug_output_hides_secrets() {
        let s = settings(&[
            ("TELEGRAM_BOT_TOKEN", "42:very-secret-token"),
            ("JWT_SECRET", &"s".repeat(40)),
            ("MEDIA_URL_SECRET", &"s".repeat(40)),
        ])
        .unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("very-secret-token"));
        assert!(!shown.contains(&"s".repeat(40)));
    }

    #[test]
    fn production_refuses_the_sandbox_assistant_and_bad_chat_limits() {
        let secret = "x".repeat(40);
        let prod = [
            ("APP_ENV", "production"),
            ("TELEGRAM_BOT_TOKEN", "1:abc"),
            ("JWT_SECRET", secret.as_str()),
            ("MEDIA_URL_SECRET", secret.as_str()),
            ("KIE_API_KEY", "kie"),
            ("YOOKASSA_SHOP_ID", "100500"),
            ("YOOKASSA_SECRET_KEY", "test_secret"),
        ];
        assert_eq!(settings(&prod).unwrap_err().var, "OPENROUTER_API_KEY");
        let s = settings(&[
            ("OPENROUTER_API_KEY", "sk-or-v1-x"),
            ("JWT_SECRET", secret.as_str()),
            ("MEDIA_URL_SECRET", secret.as_str()),
        ])
        .unwrap();
        assert_eq!(s.assistant.openrouter_model, "anthropic/claude-haiku-4.5");
        assert_eq!(s.assistant.session_ttl_secs, 30 * 86_400);
        assert_eq!(
            settings(&[
                ("OPENROUTER_TIMEOUT_SECS", "60"),
                ("CHAT_TURN_TIMEOUT_SECS", "30")
            ])
            .unwrap_err()
            .var,
            "CHAT_TURN_TIMEOUT_SECS"
        );
        assert_eq!(
            settings(&[("CHAT_PRICE_CREDITS", "0")]).unwrap_err().var,
            "CHAT_PRICE_CREDITS"
        );
    }

    #[test]
    fn compose_keeps_the_production_image_in_production() {
        // A .env copied from .env.example says APP_ENV=development and HOST=127.0.0.1: the
        // compose file has to say otherwise, above it, and bring no development secret.
        let lines: Vec<&str> = include_str!("../docker-compose.yml")
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .collect();
        assert!(lines.contains(&"APP_ENV: production"));
        assert!(lines.contains(&"HOST: 0.0.0.0"));
        for line in &lines {
            assert!(!line.contains("development"), "{line}");
            for var in [
                "JWT_SECRET",
                "MEDIA_URL_SECRET",
                "TELEGRAM_BOT_TOKEN",
                "TRUSTED_PROXY_HOPS",
            ] {
                assert!(!line.contains(var), "secrets come from .env only: {line}");
            }
        }
        let dockerfile = include_str!("../Dockerfile");
        assert!(dockerfile.contains("APP_ENV=production"));
        assert!(dockerfile.contains("METRICS_PORT=9090"));
    }

    #[test]
    fn env_example_lists_exactly_the_variables_read() {
        let asked = std::cell::RefCell::new(std::collections::BTreeSet::new());
        Settings::from_lookup(|k| {
            asked.borrow_mut().insert(k.to_owned());
            None
        })
        .unwrap();
        let mut asked = asked.into_inner();
        asked.insert("RUST_LOG".into()); // read by the log filter
        asked.remove("TRUSTED_PROXY_HOPS"); // read only to refuse it
        let listed: std::collections::BTreeSet<String> = include_str!("../.env.example")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim().to_owned()))
            .collect();
        assert_eq!(asked, listed);
    }
}
