//! The audit trail of `/admin`: who changed what, written in the transaction of the change.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::Prepare as _;
use super::schema::admin_audit;

pub async fn record(
    conn: &mut AsyncPgConnection,
    actor: &str,
    action: &str,
    user_id: i64,
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
