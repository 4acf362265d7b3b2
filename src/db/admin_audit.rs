//! The audit trail of `/admin`: who changed what, written in the transaction of the change.

use crate::domain::ids::UserId;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::Prepare as _;
use super::schema::admin_audit;

pub async fn record(
    conn: &mut AsyncPgConnection,
    actor: &str,
    action: &str,
    user_id: UserId,
    details: serde_json::Value,
) -> QueryResult<usize> {
    diesel::insert_into(admin_audit::table)
        .values((
            admin_audit::actor.eq(actor),
            admin_audit::action.eq(action),
            admin_audit::user_id.eq(user_id),
            admin_audit::details.eq(details),
        ))
        .prepared()
        .execute(conn)
        .await
}

/// The details of the `action` on `user_id` recorded with this idempotency key, if any.
pub async fn details_for_key(
    conn: &mut AsyncPgConnection,
    action: &str,
    user_id: UserId,
    idempotency_key: &str,
) -> QueryResult<Option<serde_json::Value>> {
    use diesel::sql_types::{Bool, Text};
    admin_audit::table
        .filter(admin_audit::action.eq(action))
        .filter(admin_audit::user_id.eq(user_id))
        .filter(
            diesel::dsl::sql::<Bool>("details ->> 'idempotency_key' = ")
                .bind::<Text, _>(idempotency_key),
        )
        .order(admin_audit::id)
        .select(admin_audit::details)
        .first(conn)
        .await
        .optional()
}
