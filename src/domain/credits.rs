//! Credit rules: ledger reasons, the free monthly allowance and how a charge is paid.
//! Everything here is pure; `db::ledger` applies these decisions inside a transaction.

use chrono::{Datelike, NaiveDate};
use serde::Serialize;

/// Why credits moved. Stored as text in `credit_ledger.reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    SignupBonus,
    FreeAllowance,
    Purchase,
    Subscription,
    ReferralBonus,
    Charge,
    Refund,
    AdminGrant,
    AdminDebit,
    /// The credits of a refunded purchase, taken back.
    PurchaseRefund,
    /// A referral bonus earned by a payment that was refunded, taken back.
    ReferralRefund,
}

impl Reason {
    pub const ALL: [Reason; 11] = [
        Reason::SignupBonus,
        Reason::FreeAllowance,
        Reason::Purchase,
        Reason::Subscription,
        Reason::ReferralBonus,
        Reason::Charge,
        Reason::Refund,
        Reason::AdminGrant,
        Reason::AdminDebit,
        Reason::PurchaseRefund,
        Reason::ReferralRefund,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::SignupBonus => "signup_bonus",
            Reason::FreeAllowance => "free_allowance",
            Reason::Purchase => "purchase",
            Reason::Subscription => "subscription",
            Reason::ReferralBonus => "referral_bonus",
            Reason::Charge => "charge",
            Reason::Refund => "refund",
            Reason::AdminGrant => "admin_grant",
            Reason::AdminDebit => "admin_debit",
            Reason::PurchaseRefund => "purchase_refund",
            Reason::ReferralRefund => "referral_refund",
        }
    }

    pub fn parse(s: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Reasons that add credits (a grant).
    pub fn is_grant(self) -> bool {
        matches!(
            self,
            Reason::SignupBonus
                | Reason::Purchase
                | Reason::Subscription
                | Reason::ReferralBonus
                | Reason::AdminGrant
        )
    }
}

pub use super::vocabulary::PaidWith;

/// The first day of the calendar month (UTC) that `day` falls in: free actions reset then.
pub fn month_start(day: NaiveDate) -> NaiveDate {
    day.with_day(1).unwrap_or(day)
}

/// The first day of the next calendar month: when the allowance resets next.
pub fn next_month_start(day: NaiveDate) -> NaiveDate {
    let (y, m) = if day.month() == 12 {
        (day.year() + 1, 1)
    } else {
        (day.year(), day.month() + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(day)
}

/// The free allowance as seen on `today`, given what is stored on the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    /// Free actions already used in the current month.
    pub used: i32,
    pub limit: i32,
    pub resets_on: NaiveDate,
}

impl Allowance {
    /// `used` counts for `period_start`'s month only: an older period means nothing is used yet.
    pub fn on(today: NaiveDate, used: i32, period_start: NaiveDate, limit: i32) -> Self {
        let current = month_start(today);
        let used = if period_start >= current { used } else { 0 };
        Allowance {
            used,
            limit,
            resets_on: next_month_start(today),
        }
    }

    pub fn left(&self) -> i32 {
        (self.limit - self.used).max(0)
    }
}

/// What a charge of `price` credits does, given the allowance and the balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargeDecision {
    /// One free action is used; the balance stays.
    UseFreeAction,
    /// `price` credits are taken from the balance.
    TakeCredits(i64),
    Insufficient {
        required: i64,
        available: i64,
    },
}

/// The free allowance is used first; one free action pays for one action of any price.
pub fn decide_charge(price: i64, balance: i64, allowance: &Allowance) -> ChargeDecision {
    if allowance.left() > 0 {
        ChargeDecision::UseFreeAction
    } else if balance >= price {
        ChargeDecision::TakeCredits(price)
    } else {
        ChargeDecision::Insufficient {
            required: price,
            available: balance,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn month_boundaries() {
        assert_eq!(month_start(d(2026, 11, 21)), d(2026, 11, 1));
        assert_eq!(next_month_start(d(2026, 11, 21)), d(2026, 12, 1));
        assert_eq!(next_month_start(d(2026, 12, 31)), d(2027, 1, 1));
    }

    #[test]
    fn allowance_resets_with_the_month() {
        let a = Allowance::on(d(2026, 11, 21), 7, d(2026, 11, 1), 10);
        assert_eq!(a.left(), 3);
        let b = Allowance::on(d(2026, 12, 1), 10, d(2026, 11, 1), 10);
        assert_eq!(b.left(), 10);
        assert_eq!(b.resets_on, d(2027, 1, 1));
        let over = Allowance::on(d(2026, 11, 2), 12, d(2026, 11, 1), 10);
        assert_eq!(over.left(), 0);
    }

    #[test]
    fn free_actions_come_first_then_credits() {
        let free = Allowance::on(d(2026, 11, 2), 0, d(2026, 11, 1), 1);
        let none = Allowance::on(d(2026, 11, 2), 1, d(2026, 11, 1), 1);
        assert_eq!(decide_charge(2, 0, &free), ChargeDecision::UseFreeAction);
        assert_eq!(decide_charge(2, 5, &none), ChargeDecision::TakeCredits(2));
        assert_eq!(
            decide_charge(2, 1, &none),
            ChargeDecision::Insufficient {
                required: 2,
                available: 1
            }
        );
    }

    #[test]
    fn reasons_round_trip() {
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(r));
        }
        assert!(Reason::Purchase.is_grant());
        assert!(!Reason::Charge.is_grant());
    }
}
