//! The sandbox payment provider's own side (`sandbox_payments`): what YooKassa keeps for a
//! payment, kept here when no YooKassa keys are configured (never in production).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

use super::Prepare as _;
use super::schema::sandbox_payments;
use crate::domain::payments::RemoteStatus;

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = sandbox_payments)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct SandboxPayment {
    pub id: String,
    pub idempotence_key: String,
    pub request: Value,
    pub status: String,
    pub amount_minor: i64,
    pub currency: String,
    pub description: String,
    pub metadata: Value,
    pub return_url: String,
}

/// A payment created with `Idempotence-Key` `key`, and the request that created it.
pub struct NewSandboxPayment<'a> {
    pub id: String,
    pub idempotence_key: &'a str,
    pub request: &'a Value,
    pub amount_minor: i64,
    pub currency: &'a str,
    pub description: &'a str,
    pub metadata: &'a Value,
    pub return_url: &'a str,
}

pub async fn find(conn: &mut AsyncPgConnection, id: &str) -> QueryResult<Option<SandboxPayment>> {
    sandbox_payments::table
        .find(id)
        .select(SandboxPayment::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn find_by_key(
    conn: &mut AsyncPgConnection,
    key: &str,
) -> QueryResult<Option<SandboxPayment>> {
    sandbox_payments::table
        .filter(sandbox_payments::idempotence_key.eq(key))
        .select(SandboxPayment::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn insert(
    conn: &mut AsyncPgConnection,
    new: &NewSandboxPayment<'_>,
) -> QueryResult<SandboxPayment> {
    diesel::insert_into(sandbox_payments::table)
        .values((
            sandbox_payments::id.eq(&new.id),
            sandbox_payments::idempotence_key.eq(new.idempotence_key),
            sandbox_payments::request.eq(new.request),
            sandbox_payments::amount_minor.eq(new.amount_minor),
            sandbox_payments::currency.eq(new.currency),
            sandbox_payments::description.eq(new.description),
            sandbox_payments::metadata.eq(new.metadata),
            sandbox_payments::return_url.eq(new.return_url),
        ))
        .returning(SandboxPayment::as_returning())
        .prepared()
        .get_result(conn)
        .await
}

/// A pending payment becomes `to` (final states stay); whether it changed.
pub async fn finish_pending(conn: &mut AsyncPgConnection, id: &str, to: &str) -> QueryResult<bool> {
    let changed = diesel::update(
        sandbox_payments::table
            .find(id)
            .filter(sandbox_payments::status.eq(RemoteStatus::Pending.as_str())),
    )
    .set(sandbox_payments::status.eq(to))
    .prepared()
    .execute(conn)
    .await?;
    Ok(changed == 1)
}

/// Cancels the payment if it is still pending and was created before `created_before`.
pub async fn expire_pending(
    conn: &mut AsyncPgConnection,
    id: &str,
    created_before: DateTime<Utc>,
) -> QueryResult<()> {
    diesel::update(
        sandbox_payments::table
            .find(id)
            .filter(sandbox_payments::status.eq(RemoteStatus::Pending.as_str()))
            .filter(sandbox_payments::created_at.lt(created_before)),
    )
    .set(sandbox_payments::status.eq(RemoteStatus::Canceled.as_str()))
    .prepared()
    .execute(conn)
    .await?;
    Ok(())
}
