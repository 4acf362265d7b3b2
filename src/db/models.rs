//! Rows as stored. These are never serialised to clients: routes map them to DTOs.

use crate::domain::ids::{TelegramId, UserId};
use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;

use super::schema::{credit_ledger, generations, payments, products, uploads, users};
use crate::domain::vocabulary::{
    GenerationKind, GenerationProviderName, GenerationStatus, PaidWith, PaymentProviderName,
    PaymentStatus, UploadPurpose,
};

#[derive(Debug, Clone, Queryable, Selectable, QueryableByName)]
#[diesel(table_name = users)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct User {
    pub id: UserId,
    pub telegram_id: TelegramId,
    pub username: Option<String>,
    pub first_name: String,
    pub last_name: Option<String>,
    pub language_code: Option<String>,
    pub is_premium: bool,
    pub photo_url: Option<String>,
    pub allows_write_to_pm: bool,
    pub balance_credits: i64,
    pub subscription_plan: Option<String>,
    pub subscription_until: Option<DateTime<Utc>>,
    pub free_actions_used: i32,
    pub free_period_start: NaiveDate,
    pub referral_code: String,
    pub referred_by: Option<UserId>,
    pub is_blocked: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub erased_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = credit_ledger)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct LedgerEntry {
    pub id: i64,
    pub user_id: UserId,
    pub delta: i64,
    pub balance_after: i64,
    pub reason: String,
    pub ref_type: Option<String>,
    pub ref_id: Option<String>,
    pub idempotency_key: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = products)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct Product {
    pub id: String,
    pub kind: String,
    pub title: String,
    pub credits: i64,
    pub plan: Option<String>,
    pub period_days: Option<i32>,
    pub price_minor: i64,
    pub currency: String,
    pub active: bool,
    pub sort_order: i32,
    pub price_stars: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = uploads)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct Upload {
    pub id: uuid::Uuid,
    pub user_id: UserId,
    pub purpose: UploadPurpose,
    pub storage_key: String,
    pub mime: String,
    pub width: i32,
    pub height: i32,
    pub bytes: i64,
    pub sha256: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = generations)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct Generation {
    pub id: uuid::Uuid,
    pub user_id: UserId,
    pub kind: GenerationKind,
    pub status: GenerationStatus,
    pub zone: Option<String>,
    pub prompt: String,
    pub person_upload_id: Option<uuid::Uuid>,
    pub item_upload_id: Option<uuid::Uuid>,
    pub source_upload_id: Option<uuid::Uuid>,
    pub chat_session_id: Option<uuid::Uuid>,
    pub result_key: Option<String>,
    pub result_width: Option<i32>,
    pub result_height: Option<i32>,
    pub credits_spent: i64,
    pub paid_with: PaidWith,
    pub charge_key: String,
    pub provider: GenerationProviderName,
    pub provider_task_id: Option<String>,
    pub attempts: i32,
    pub progress: i16,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub client_request_id: String,
    pub job_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// See [`crate::domain::idempotency`].
    pub request_fingerprint: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = payments)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct Payment {
    pub id: uuid::Uuid,
    pub user_id: UserId,
    pub provider: PaymentProviderName,
    pub provider_payment_id: Option<String>,
    pub product_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub status: PaymentStatus,
    pub credits: i64,
    pub plan: Option<String>,
    pub period_days: Option<i32>,
    pub tax_minor: Option<i64>,
    pub commission_minor: Option<i64>,
    pub net_minor: Option<i64>,
    pub idempotency_key: String,
    pub client_key: Option<String>,
    pub create_request: Option<serde_json::Value>,
    pub confirmation_url: Option<String>,
    pub refund_shortfall: i64,
    pub last_error: Option<String>,
    pub checked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
}
