//! Payments: YooKassa or its sandbox, Telegram Stars, tax accounting and referrals
//! (`YOOKASSA_*`, `NPD_TAX_RATE_BPS`, `PAYMENT*`, `REFERRAL_*`, `TELEGRAM_MINI_APP_URL`,
//! `TELEGRAM_WEBHOOK_SECRET`). Checked as they are read.

use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};

use super::ConfigError;
use super::env::{Env, bad};

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

impl PaymentSettings {
    pub(super) fn read(env: &Env<'_>, production: bool) -> Result<Self, ConfigError> {
        let yookassa = yookassa_keys(env)?;
        let mini_app_url = env.string_or("TELEGRAM_MINI_APP_URL", "https://t.me/atelier_bot/app");
        let networks = env.string_or(
            "YOOKASSA_ALLOWED_NETWORKS",
            crate::domain::payments::YOOKASSA_NETWORKS,
        );
        let allowed_networks = crate::domain::payments::parse_networks(&networks)
            .map_err(|e| bad("YOOKASSA_ALLOWED_NETWORKS", &e))?;
        let vat_code: u8 = env.parse("YOOKASSA_VAT_CODE", 1)?;
        if !(1..=12).contains(&vat_code) {
            return Err(bad(
                "YOOKASSA_VAT_CODE",
                "must be a YooKassa vat_code, 1 to 12",
            ));
        }
        let payment_subject = env.string_or("YOOKASSA_PAYMENT_SUBJECT", "service");
        if !payment_subject
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'_')
        {
            return Err(bad(
                "YOOKASSA_PAYMENT_SUBJECT",
                "must be a YooKassa payment_subject such as service",
            ));
        }
        let telegram_webhook_secret = webhook_secret(env)?;
        let settings = Self {
            yookassa,
            yookassa_base_url: env.string_or("YOOKASSA_BASE_URL", "https://api.yookassa.ru/v3"),
            yookassa_timeout_secs: env.parse("YOOKASSA_TIMEOUT_SECS", 35)?,
            return_url: env.string_or("YOOKASSA_RETURN_URL", &mini_app_url),
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
        settings.check(production)?;
        Ok(settings)
    }

    fn check(&self, production: bool) -> Result<(), ConfigError> {
        if self.tax_bps + self.commission_bps > 10_000 {
            return Err(bad(
                "NPD_TAX_RATE_BPS",
                "tax and commission together must not exceed 10000 (100 %)",
            ));
        }
        if self.referral_bonus_credits < 0 || self.referral_daily_cap < 0 {
            return Err(bad(
                "REFERRAL_BONUS_CREDITS",
                "REFERRAL_BONUS_CREDITS and REFERRAL_DAILY_CAP must not be negative",
            ));
        }
        for (var, url) in [
            ("TELEGRAM_MINI_APP_URL", &self.mini_app_url),
            ("YOOKASSA_RETURN_URL", &self.return_url),
        ] {
            let http_allowed = !production && url.starts_with("http://");
            if !url.starts_with("https://") && !http_allowed {
                return Err(bad(
                    var,
                    "must start with https:// (or http:// outside production)",
                ));
            }
        }
        if self.yookassa_timeout_secs == 0 || self.reconcile_after_secs == 0 {
            return Err(bad(
                "YOOKASSA_TIMEOUT_SECS",
                "YOOKASSA_TIMEOUT_SECS and PAYMENT_RECONCILE_AFTER_SECS must be at least 1",
            ));
        }
        Ok(())
    }
}

/// Both keys or neither (the sandbox; refused in production with every other missing variable).
fn yookassa_keys(env: &Env<'_>) -> Result<Option<YooKassaKeys>, ConfigError> {
    match (
        env.string("YOOKASSA_SHOP_ID"),
        env.secret("YOOKASSA_SECRET_KEY")?,
    ) {
        (Some(shop_id), Some(secret_key)) => Ok(Some(YooKassaKeys {
            shop_id,
            secret_key,
        })),
        (None, None) => Ok(None),
        (Some(_), None) => Err(bad("YOOKASSA_SECRET_KEY", "required with YOOKASSA_SHOP_ID")),
        (None, Some(_)) => Err(bad("YOOKASSA_SHOP_ID", "required with YOOKASSA_SECRET_KEY")),
    }
}

/// `secret_token` of `setWebhook`: 1-256 characters Telegram accepts.
fn webhook_secret(env: &Env<'_>) -> Result<Option<SecretString>, ConfigError> {
    let secret = env.secret("TELEGRAM_WEBHOOK_SECRET")?;
    if let Some(secret) = &secret {
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
    Ok(secret)
}
