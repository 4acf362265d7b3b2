//! Money rules with no I/O: kopeck amounts as YooKassa writes them, the НПД tax and commission
//! split, checking a re-fetched payment against our row, YooKassa's notification networks
//! (checked with `domain::net`), and plan periods.
use chrono::{DateTime, Duration, Utc};

/// `12345` kopecks → `"123.45"`: YooKassa amounts are strings with two decimals.
pub fn format_amount(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// `"123.45"` → `12345`, exactly (never through a float). Accepts 0–2 decimals, no sign, no
/// exponent; anything else is `None`.
pub fn parse_amount(value: &str) -> Option<i64> {
    let (units, frac) = value.split_once('.').unwrap_or((value, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if units.is_empty() || units.len() > 15 || !digits(units) || frac.len() > 2 || !digits(frac) {
        return None;
    }
    if value.ends_with('.') {
        return None;
    }
    let units: i64 = units.parse().ok()?;
    let frac: i64 = match frac.len() {
        0 => 0,
        1 => frac.parse::<i64>().ok()? * 10,
        _ => frac.parse().ok()?,
    };
    units.checked_mul(100)?.checked_add(frac)
}

/// A rate in basis points (1/100 of a percent): 400 = 4 %, 280 = 2.8 %.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bps(pub u32);

impl Bps {
    /// `amount × rate`, rounded half up to the kopeck (amounts are never negative here).
    pub fn of(self, amount_minor: i64) -> i64 {
        let exact = i128::from(amount_minor.max(0)) * i128::from(self.0);
        i64::try_from((exact + 5_000) / 10_000).unwrap_or(i64::MAX)
    }
}

/// What one payment is worth to us: tax (НПД) and commission are each rounded half up to the
/// kopeck on the whole amount; `net` is what is left, so the three always add up to the amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    pub tax_minor: i64,
    pub commission_minor: i64,
    pub net_minor: i64,
}

pub fn split(amount_minor: i64, tax: Bps, commission: Bps) -> Split {
    let tax_minor = tax.of(amount_minor);
    let commission_minor = commission.of(amount_minor);
    Split {
        tax_minor,
        commission_minor,
        net_minor: amount_minor - tax_minor - commission_minor,
    }
}

/// Where the 54-FZ receipt is sent: the payer's e-mail or phone (digits, country code first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptContact {
    Email(String),
    Phone(String),
}

impl ReceiptContact {
    /// Exactly one of the two, in a shape YooKassa accepts.
    pub fn parse(email: Option<&str>, phone: Option<&str>) -> Result<Self, &'static str> {
        match (email.map(str::trim), phone.map(str::trim)) {
            (Some(email), None) => {
                let valid = (3..=254).contains(&email.len())
                    && !email.chars().any(|c| c.is_whitespace() || c.is_control())
                    && email.split_once('@').is_some_and(|(local, domain)| {
                        !local.is_empty()
                            && domain.contains('.')
                            && !domain.starts_with('.')
                            && !domain.ends_with('.')
                            && !domain.contains('@')
                    });
                if valid {
                    Ok(Self::Email(email.to_owned()))
                } else {
                    Err("email is not an e-mail address")
                }
            }
            (None, Some(phone)) => {
                let digits = phone.strip_prefix('+').unwrap_or(phone);
                if (10..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
                    Ok(Self::Phone(digits.to_owned()))
                } else {
                    Err("phone must be 10-15 digits with the country code, such as +79001234567")
                }
            }
            (Some(_), Some(_)) => Err("send either email or phone, not both"),
            (None, None) => Err("the receipt needs the payer's email or phone"),
        }
    }
}

/// A payment's state at the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteStatus {
    Pending,
    WaitingForCapture,
    Succeeded,
    Canceled,
}

impl RemoteStatus {
    pub const ALL: [Self; 4] = [
        Self::Pending,
        Self::WaitingForCapture,
        Self::Succeeded,
        Self::Canceled,
    ];

    /// The provider's word (also what the sandbox stores in `sandbox_payments.status`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::WaitingForCapture => "waiting_for_capture",
            Self::Succeeded => "succeeded",
            Self::Canceled => "canceled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// A payment as the provider answered a GET: the only truth a notification leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub id: String,
    pub status: RemoteStatus,
    pub amount_minor: i64,
    pub currency: String,
    /// `metadata.payment_id`: our id, echoed back.
    pub our_payment_id: Option<String>,
}

/// What our row says the payment must be.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    pub payment_id: &'a str,
    pub provider_payment_id: Option<&'a str>,
    pub amount_minor: i64,
    pub currency: &'a str,
}

/// What a verified payment allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Paid: grant, once.
    Succeeded,
    Canceled,
    /// Not final yet: nothing to do.
    NotFinal,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    #[error("metadata.payment_id is {found:?}, expected {expected}")]
    Metadata {
        expected: String,
        found: Option<String>,
    },
    #[error("provider id {found} differs from the recorded {expected}")]
    ProviderId { expected: String, found: String },
    #[error(
        "amount {found} {found_currency} differs from the price {expected} {expected_currency}"
    )]
    Amount {
        expected: i64,
        expected_currency: String,
        found: i64,
        found_currency: String,
    },
}

/// Checks a fetched payment against our row: its metadata must name our payment, its id the
/// one we recorded (if any), its amount and currency our price. Only then does its status count.
pub fn verify(expected: Expected<'_>, fetched: &Fetched) -> Result<Verdict, Mismatch> {
    if fetched.our_payment_id.as_deref() != Some(expected.payment_id) {
        return Err(Mismatch::Metadata {
            expected: expected.payment_id.to_owned(),
            found: fetched.our_payment_id.clone(),
        });
    }
    if let Some(recorded) = expected.provider_payment_id
        && recorded != fetched.id
    {
        return Err(Mismatch::ProviderId {
            expected: recorded.to_owned(),
            found: fetched.id.clone(),
        });
    }
    if fetched.amount_minor != expected.amount_minor || fetched.currency != expected.currency {
        return Err(Mismatch::Amount {
            expected: expected.amount_minor,
            expected_currency: expected.currency.to_owned(),
            found: fetched.amount_minor,
            found_currency: fetched.currency.clone(),
        });
    }
    Ok(match fetched.status {
        RemoteStatus::Succeeded => Verdict::Succeeded,
        RemoteStatus::Canceled => Verdict::Canceled,
        RemoteStatus::Pending | RemoteStatus::WaitingForCapture => Verdict::NotFinal,
    })
}

/// YooKassa's published notification sources.
pub const YOOKASSA_NETWORKS: &str = "185.71.76.0/27,185.71.77.0/27,77.75.153.0/25,77.75.156.11,77.75.156.35,77.75.154.128/25,2a02:5180::/32";

pub use super::net::{Network, parse_networks};

/// The end of a plan bought at `now`: the same plan still running is extended from its end,
/// anything else starts now.
pub fn plan_until(
    current_plan: Option<&str>,
    current_until: Option<DateTime<Utc>>,
    plan: &str,
    period_days: i32,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    let start = match (current_plan, current_until) {
        (Some(p), Some(until)) if p == plan && until > now => until,
        _ => now,
    };
    start + Duration::days(i64::from(period_days))
}

/// The end of a plan once a refunded period is taken off (never before `now`).
pub fn plan_until_after_refund(
    until: DateTime<Utc>,
    period_days: i32,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    (until - Duration::days(i64::from(period_days))).max(now)
}

/// The referral bonus of one more referral, when the referrer already earned `awarded_today`
/// bonuses today: nothing once the daily cap is reached.
pub fn referral_award(awarded_today: i64, daily_cap: i64, bonus: i64) -> i64 {
    if awarded_today < daily_cap { bonus } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn amounts_round_trip_exactly() {
        assert_eq!(format_amount(29900), "299.00");
        assert_eq!(format_amount(5), "0.05");
        assert_eq!(parse_amount("299.00"), Some(29900));
        assert_eq!(parse_amount("2.5"), Some(250));
        assert_eq!(parse_amount("7"), Some(700));
        for bad in [
            "", "1.", ".5", "1.234", "-1.00", "1e3", "1,00", " 1.00", "０.00",
        ] {
            assert_eq!(parse_amount(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn tax_and_commission_round_half_up() {
        // 299.00: 4 % = 11.96, 2.8 % = 8.372 → 8.37, net 278.67.
        let s = split(29900, Bps(400), Bps(280));
        assert_eq!(
            (s.tax_minor, s.commission_minor, s.net_minor),
            (1196, 837, 27867)
        );
        // 0.25 × 2.8 % = 0.7 kopeck → 1; 0.12 × 4 % = 0.48 → 0; 0.13 × 4 % = 0.52 → 1.
        assert_eq!(Bps(280).of(25), 1);
        assert_eq!(Bps(400).of(12), 0);
        assert_eq!(Bps(400).of(13), 1);
        // Exactly half a kopeck rounds up: 1.25 × 2.8 % = 3.5 kopecks → 4.
        assert_eq!(Bps(280).of(125), 4);
    }

    proptest! {
        #[test]
        fn the_split_adds_up_and_each_part_is_within_half_a_kopeck(amount in 1i64..10_000_000_000, tax in 0u32..2000, com in 0u32..2000) {
            let s = split(amount, Bps(tax), Bps(com));
            prop_assert_eq!(s.tax_minor + s.commission_minor + s.net_minor, amount);
            for (part, bps) in [(s.tax_minor, tax), (s.commission_minor, com)] {
                let exact = i128::from(amount) * i128::from(bps);
                let diff = i128::from(part) * 10_000 - exact;
                // Half up: an exact half (diff 5000) rounds up, never down.
                prop_assert!((-4_999..=5_000).contains(&diff), "{part} vs {exact}/10000");
            }
            prop_assert!(s.net_minor >= 0);
        }

        #[test]
        fn formatted_amounts_parse_back(amount in 0i64..1_000_000_000_000) {
            prop_assert_eq!(parse_amount(&format_amount(amount)), Some(amount));
        }
    }

    fn fetched(status: RemoteStatus, amount: i64) -> Fetched {
        Fetched {
            id: "2f0-yk".into(),
            status,
            amount_minor: amount,
            currency: "RUB".into(),
            our_payment_id: Some("ours".into()),
        }
    }

    #[test]
    fn a_fetched_payment_must_match_our_row() {
        let exp = Expected {
            payment_id: "ours",
            provider_payment_id: None,
            amount_minor: 29900,
            currency: "RUB",
        };
        assert_eq!(
            verify(exp, &fetched(RemoteStatus::Succeeded, 29900)),
            Ok(Verdict::Succeeded)
        );
        assert_eq!(
            verify(exp, &fetched(RemoteStatus::Pending, 29900)),
            Ok(Verdict::NotFinal)
        );
        assert_eq!(
            verify(exp, &fetched(RemoteStatus::WaitingForCapture, 29900)),
            Ok(Verdict::NotFinal)
        );
        assert_eq!(
            verify(exp, &fetched(RemoteStatus::Canceled, 29900)),
            Ok(Verdict::Canceled)
        );
        assert!(matches!(
            verify(exp, &fetched(RemoteStatus::Succeeded, 100)),
            Err(Mismatch::Amount { .. })
        ));
        let mut rub = fetched(RemoteStatus::Succeeded, 29900);
        rub.currency = "USD".into();
        assert!(matches!(verify(exp, &rub), Err(Mismatch::Amount { .. })));
        let mut other = fetched(RemoteStatus::Succeeded, 29900);
        other.our_payment_id = Some("someone-else".into());
        assert!(matches!(
            verify(exp, &other),
            Err(Mismatch::Metadata { .. })
        ));
        let recorded = Expected {
            provider_payment_id: Some("another-yk"),
            ..exp
        };
        assert!(matches!(
            verify(recorded, &fetched(RemoteStatus::Succeeded, 29900)),
            Err(Mismatch::ProviderId { .. })
        ));
    }

    #[test]
    fn receipt_contacts_are_checked() {
        assert_eq!(
            ReceiptContact::parse(Some("u@example.com"), None),
            Ok(ReceiptContact::Email("u@example.com".into()))
        );
        assert_eq!(
            ReceiptContact::parse(None, Some("+79001234567")),
            Ok(ReceiptContact::Phone("79001234567".into()))
        );
        for (email, phone) in [
            (Some("nope"), None),
            (Some("a b@example.com"), None),
            (Some("a@localhost"), None),
            (None, Some("12345")),
            (None, Some("+7 900 123")),
            (Some("u@example.com"), Some("79001234567")),
            (None, None),
        ] {
            assert!(
                ReceiptContact::parse(email, phone).is_err(),
                "{email:?} {phone:?}"
            );
        }
    }

    #[test]
    fn plans_extend_or_start_over() {
        let now = DateTime::parse_from_rfc3339("2026-11-21T10:00:00Z")
            .unwrap()
            .to_utc();
        let later = now + Duration::days(10);
        assert_eq!(
            plan_until(None, None, "pro", 30, now),
            now + Duration::days(30)
        );
        assert_eq!(
            plan_until(Some("pro"), Some(later), "pro", 30, now),
            later + Duration::days(30)
        );
        assert_eq!(
            plan_until(Some("basic"), Some(later), "pro", 30, now),
            now + Duration::days(30)
        );
        let lapsed = now - Duration::days(1);
        assert_eq!(
            plan_until(Some("pro"), Some(lapsed), "pro", 30, now),
            now + Duration::days(30)
        );
        assert_eq!(plan_until_after_refund(later, 30, now), now);
        assert_eq!(referral_award(0, 3, 10), 10);
        assert_eq!(referral_award(3, 3, 10), 0);
    }
}
