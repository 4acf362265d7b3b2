//! Pure rules with no I/O: credit pricing and the free allowance, referral codes, try-on zones.

pub mod assistant;
pub mod credits;
pub mod referral;
pub mod text;
pub mod zones;
