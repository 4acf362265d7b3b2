//! Pure rules with no I/O: credit pricing and the free allowance, referral codes, try-on zones, abuse-limit specs,
//! networks and client addresses, the stored vocabulary (statuses, kinds,
//! providers) and the typed ids and amounts.

pub mod address;
pub mod assistant;
pub mod credits;
pub mod idempotency;
pub mod ids;
pub mod net;
pub mod payments;
pub mod rate;
pub mod referral;
pub mod text;
pub mod vocabulary;
pub mod zones;
