//! The domain's words that are stored as text: statuses, kinds, upload purposes, providers.
//! Each is an enum whose text is the database value and the JSON value alike, so a typo is a
//! compile error and a value the schema's CHECK does not allow cannot be written.
//!
//! The texts are fixed by the migrations' CHECK constraints and by the API's clients: change
//! one only with a migration and a new API version. Raw SQL that must spell a text out (to match
//! a partial index in a prepared statement) says so where it does.

use std::fmt;
use std::io::Write as _;

use diesel::deserialize::{self, FromSql};
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::Text;

/// Defines a text-valued enum: `as_str`/`parse`, `Display`, serde and OpenAPI names, and the
/// diesel mapping to a `Text` column (the way `jobs::queue::Status` is mapped).
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:tt ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash,
            serde::Serialize, serde::Deserialize, utoipa::ToSchema,
            diesel::deserialize::FromSqlRow, diesel::expression::AsExpression,
        )]
        #[diesel(sql_type = diesel::sql_types::Text)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $text)] $variant, )+
        }

        impl $name {
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($text => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromSql<Text, Pg> for $name {
            fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
                let raw = std::str::from_utf8(bytes.as_bytes())?;
                Self::parse(raw).ok_or_else(|| {
                    format!(concat!("unknown ", stringify!($name), " {:?}"), raw).into()
                })
            }
        }

        impl ToSql<Text, Pg> for $name {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
                out.write_all(self.as_str().as_bytes())?;
                Ok(IsNull::No)
            }
        }
    };
}

text_enum! {
    // `generations.status`
    /// Where a generation is: `queued` and `running` until it finishes as one of the others.
    pub enum GenerationStatus {
        Queued = "queued",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        Canceled = "canceled",
    }
}

impl GenerationStatus {
    /// Not finished: the worker may still change it (partial index `generations_active_idx`).
    pub const ACTIVE: [Self; 2] = [Self::Queued, Self::Running];
    pub const FINISHED: [Self; 3] = [Self::Succeeded, Self::Failed, Self::Canceled];

    pub fn is_active(self) -> bool {
        Self::ACTIVE.contains(&self)
    }
}

text_enum! {
    // `generations.kind`
    /// What a generation makes: a try-on (`fitting`) or an edited photo (`editing`).
    pub enum GenerationKind {
        /// A virtual try-on: a person photo and an item photo.
        Fitting = "fitting",
        /// An edit of one photo by a prompt.
        Editing = "editing",
    }
}

text_enum! {
    // `generations.provider`
    /// Who makes the image of a generation.
    pub enum GenerationProviderName {
        Kie = "kie",
        /// The built-in fake, when no KIE_API_KEY is set.
        Sandbox = "sandbox",
    }
}

text_enum! {
    // `generations.paid_with` and `chat_turns.paid_with`; the CHECK of generations also
    // admits `subscription`, which nothing writes.
    /// How a charge was paid.
    pub enum PaidWith {
        FreeAllowance = "free_allowance",
        Credits = "credits",
    }
}

text_enum! {
    // `chat_turns.status`
    /// Where a chat turn is: `pending` until it is answered or has failed.
    pub enum TurnStatus {
        Pending = "pending",
        Completed = "completed",
        Failed = "failed",
    }
}

text_enum! {
    // `uploads.purpose`
    /// What an uploaded photo is for.
    pub enum UploadPurpose {
        FittingPerson = "fitting_person",
        FittingItem = "fitting_item",
        EditingSource = "editing_source",
    }
}

text_enum! {
    // `payments.status`
    /// Where a payment stands: `pending` until the payer confirms.
    pub enum PaymentStatus {
        Pending = "pending",
        Succeeded = "succeeded",
        Canceled = "canceled",
        Refunded = "refunded",
    }
}

text_enum! {
    // `payments.provider` and `payment_events.provider`
    /// Who takes the payment.
    pub enum PaymentProviderName {
        Yookassa = "yookassa",
        /// The built-in fake of YooKassa, when no shop is configured.
        Sandbox = "sandbox",
        TelegramStars = "telegram_stars",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// serde writes and reads the same text as the database mapping.
    fn round_trips<T>(all: &[T])
    where
        T: Copy + PartialEq + fmt::Debug + fmt::Display + serde::Serialize,
        T: serde::de::DeserializeOwned,
    {
        for &v in all {
            let json = serde_json::to_value(v).unwrap();
            assert_eq!(json, serde_json::Value::String(v.to_string()), "{v:?}");
            assert_eq!(serde_json::from_value::<T>(json).unwrap(), v);
        }
    }

    #[test]
    fn texts_are_the_database_and_json_values() {
        round_trips(GenerationStatus::ALL);
        round_trips(GenerationKind::ALL);
        round_trips(GenerationProviderName::ALL);
        round_trips(PaidWith::ALL);
        round_trips(TurnStatus::ALL);
        round_trips(UploadPurpose::ALL);
        round_trips(PaymentStatus::ALL);
        round_trips(PaymentProviderName::ALL);
        for s in GenerationStatus::ALL {
            assert_eq!(GenerationStatus::parse(s.as_str()), Some(*s));
        }
        for s in PaymentStatus::ALL {
            assert_eq!(PaymentStatus::parse(s.as_str()), Some(*s));
        }
        assert_eq!(PaidWith::FreeAllowance.as_str(), "free_allowance");
        assert_eq!(UploadPurpose::EditingSource.as_str(), "editing_source");
        assert_eq!(
            PaymentProviderName::TelegramStars.as_str(),
            "telegram_stars"
        );
        assert_eq!(TurnStatus::parse("done"), None);
    }

    #[test]
    fn queued_and_running_are_active() {
        assert!(GenerationStatus::Queued.is_active());
        assert!(GenerationStatus::Running.is_active());
        assert!(GenerationStatus::FINISHED.iter().all(|s| !s.is_active()));
    }
}
