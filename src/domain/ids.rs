//! Numbers that mean different things and must not be mixed up: our user id, a Telegram
//! account id, an amount of credits. Each wraps an `i64` and is a `BigInt` column and a JSON
//! integer exactly as the bare number was, so rows and responses do not change; passing one
//! where another is expected is a compile error.

use std::fmt;

use diesel::deserialize::{self, FromSql};
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::BigInt;

macro_rules! bigint_newtype {
    ($(#[$meta:meta])* pub struct $name:ident;) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize, utoipa::ToSchema,
            diesel::deserialize::FromSqlRow, diesel::expression::AsExpression,
        )]
        #[serde(transparent)]
        #[diesel(sql_type = BigInt)]
        pub struct $name(pub i64);

        impl $name {
            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl From<i64> for $name {
            fn from(n: i64) -> Self {
                Self(n)
            }
        }

        impl From<$name> for i64 {
            fn from(n: $name) -> Self {
                n.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromSql<BigInt, Pg> for $name {
            fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
                <i64 as FromSql<BigInt, Pg>>::from_sql(bytes).map(Self)
            }
        }

        impl ToSql<BigInt, Pg> for $name {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
                <i64 as ToSql<BigInt, Pg>>::to_sql(&self.0, out)
            }
        }
    };
}

bigint_newtype! {
    /// Our id of a user (`users.id`, and every `user_id` column).
    pub struct UserId;
}

bigint_newtype! {
    /// A Telegram account's id (`users.telegram_id`, `bot_chats.telegram_id`): what initData
    /// and bot updates name a user by.
    pub struct TelegramId;
}

bigint_newtype! {
    /// An amount of credits: a balance, a price, or a ledger movement (negative for a charge).
    pub struct Credits;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_the_bare_number() {
        assert_eq!(serde_json::to_string(&UserId(42)).unwrap(), "42");
        assert_eq!(serde_json::to_string(&TelegramId(7)).unwrap(), "7");
        assert_eq!(serde_json::to_string(&Credits(-3)).unwrap(), "-3");
        let back: TelegramId = serde_json::from_str("9001").unwrap();
        assert_eq!(back, TelegramId(9001));
        assert_eq!(UserId(5).to_string(), "5");
        assert_eq!(i64::from(Credits(10)), 10);
    }
}
