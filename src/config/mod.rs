//! Typed settings, read once at start from the environment (and `.env`), a section per file:
//! each reads its own variables into its own struct and checks them. Every variable is listed
//! with its default in `.env.example`; a malformed value stops the start with the variable's
//! name, and missing required values with all of their names at once. The public development
//! defaults stand only while no real credential is configured ([`Settings::real_credentials`]),
//! in any `APP_ENV`.

mod alerts;
mod assistant;
mod env;
mod generation;
mod limits;
mod media;
mod payments;
mod sentry;
mod server;
mod telegram;
mod worker;
mod ws;

use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};

pub use alerts::AlertSettings;
pub use assistant::AssistantSettings;
use env::{Env, bad};
pub use generation::GenerationSettings;
pub use limits::LimitSettings;
pub use media::MediaSettings;
pub use payments::{PaymentSettings, ReferralTrigger, YooKassaKeys};
pub use sentry::SentrySettings;
pub use telegram::{DEV_BOT_TOKEN, InitDataKey};
pub use worker::WorkerSettings;
pub use ws::WsSettings;

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

impl AppEnv {
    pub fn name(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Test => "test",
            Self::Production => "production",
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
    /// Operator alerts to `ADMIN_CHAT_ID`.
    pub alerts: AlertSettings,
    /// Error reporting; off without `SENTRY_DSN`.
    pub sentry: Option<SentrySettings>,
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
        env::load_env_file(std::env::var("ENV_FILE").ok())?;
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Builds settings from any key lookup; tests pass a map. Sections are read in a fixed
    /// order (the first malformed value is the one named), then checked, then the production
    /// rules are applied to the whole.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env { lookup: &lookup };
        let app_env: AppEnv = env.parse("APP_ENV", AppEnv::Development)?;
        let (telegram_bot_token, init_data_key) = telegram::credentials(&env)?;
        let jwt_secret = env.secret_of_at_least("JWT_SECRET", 32)?;
        let media_secret = env.secret_of_at_least("MEDIA_URL_SECRET", 32)?;
        let (jwt_given, media_given) = (jwt_secret.is_some(), media_secret.is_some());
        let media = MediaSettings::read(
            &env,
            media_secret.unwrap_or_else(|| SecretString::from(DEV_MEDIA_SECRET)),
        )?;
        let generation = GenerationSettings::read(&env)?;
        let worker = WorkerSettings::read(&env)?;
        let ws = WsSettings::read(&env)?;
        let limits = LimitSettings::read(&env)?;
        let payments = PaymentSettings::read(&env, app_env == AppEnv::Production)?;
        let assistant = AssistantSettings::read(&env)?;
        let port: u16 = env.parse("PORT", 8080)?;
        let host = env.string_or("HOST", "127.0.0.1");
        let public_base_url = server::public_base_url(&env, port)?;
        let settings = Settings {
            app_env,
            telegram_web_app_url: env
                .string("TELEGRAM_WEB_APP_URL")
                .unwrap_or_else(|| format!("{public_base_url}/")),
            metrics_host: env.string_or("METRICS_HOST", &host),
            metrics_port: env.parse("METRICS_PORT", 9090)?,
            host,
            port,
            public_base_url,
            trusted_proxies: server::trusted_proxies(&env)?,
            database_url: SecretString::from(
                env.string_or("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/atelier"),
            ),
            database_pool_size: env.parse("DATABASE_POOL_SIZE", 16)?,
            redis_url: SecretString::from(env.string_or("REDIS_URL", "redis://127.0.0.1:6379")),
            redis_key_prefix: env.string_or("REDIS_KEY_PREFIX", "atelier:"),
            telegram_bot_token,
            telegram_api_base_url: env
                .string_or("TELEGRAM_API_BASE_URL", "https://api.telegram.org"),
            init_data_key,
            init_data_max_age_secs: env.parse("INIT_DATA_MAX_AGE_SECS", 86_400)?,
            jwt_secret: jwt_secret.unwrap_or_else(|| SecretString::from(DEV_JWT_SECRET)),
            jwt_previous_secret: env.secret("JWT_PREVIOUS_SECRET")?,
            jwt_ttl_secs: env.parse("JWT_TTL_SECS", 86_400)?,
            jwt_issuer: env.string_or("JWT_ISSUER", "atelier"),
            jwt_audience: env.string_or("JWT_AUDIENCE", "atelier-miniapp"),
            free_actions_per_month: env.parse("FREE_ACTIONS_PER_MONTH", 10)?,
            signup_bonus_credits: env.parse("SIGNUP_BONUS_CREDITS", 0)?,
            cors_allowed_origins: server::cors_allowed_origins(&env),
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
            admin_ids: admin_ids(&env)?,
            alerts: AlertSettings::read(&env)?,
            assistant,
            sentry: SentrySettings::read(&env, app_env)?,
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
            return Err(bad(
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
        Err(bad(first, &format!("missing {}; {why}", absent.join(", "))))
    }

    /// The top-level values' checks and each section's, in a fixed order (the first broken
    /// rule is the one named).
    fn check(&self) -> Result<(), ConfigError> {
        if self.database_pool_size == 0 {
            return Err(bad("DATABASE_POOL_SIZE", "must be at least 1"));
        }
        if self.jwt_ttl_secs == 0 {
            return Err(bad("JWT_TTL_SECS", "must be at least 1"));
        }
        if self.free_actions_per_month < 0 {
            return Err(bad("FREE_ACTIONS_PER_MONTH", "must not be negative"));
        }
        if self.signup_bonus_credits < 0 {
            return Err(bad("SIGNUP_BONUS_CREDITS", "must not be negative"));
        }
        self.media.check()?;
        self.worker.check()?;
        self.generation.check()?;
        self.ws.check()?;
        if let Some(key) = &self.admin_api_key
            && key.expose_secret().len() < 16
        {
            return Err(bad("ADMIN_API_KEY", "must be at least 16 bytes"));
        }
        self.assistant.check()?;
        if let Some(prev) = &self.jwt_previous_secret
            && prev.expose_secret().len() < 32
        {
            return Err(bad("JWT_PREVIOUS_SECRET", "must be at least 32 bytes"));
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

/// `ADMIN_IDS`: comma-separated Telegram ids.
fn admin_ids(env: &Env<'_>) -> Result<Vec<i64>, ConfigError> {
    let Some(ids) = env.string("ADMIN_IDS") else {
        return Ok(Vec::new());
    };
    ids.split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(|id| {
            id.parse::<i64>().map_err(|_| ConfigError {
                var: "ADMIN_IDS",
                message: format!("{id:?} is not a Telegram id"),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
