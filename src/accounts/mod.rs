//! Use cases of a user's account, with no HTTP in them: sign-up and its bonuses, login with
//! initData, the balance view, and the export of everything held about a user.

pub mod balance;
pub mod export;
mod login;
mod sign_up;

pub use balance::Balance;
pub use export::{Export, export};
pub use login::{LoggedIn, login, user_for_init_data};
pub use sign_up::sign_in;
