//! Use cases of a user's account, with no HTTP in them: sign-up and its bonuses, login with
//! initData, the balance view, and the export of everything held about a user.

pub mod balance;

pub use balance::Balance;
