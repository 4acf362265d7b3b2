//! Pure rules with no I/O: credit pricing and the free allowance, referral codes.

pub mod credits;
pub mod referral;
