//! The API's responses as a client reads them: one struct per documented schema (the
//! `components.schemas` of `openapi.yaml`), written here rather than borrowed from the crate so
//! that a test fails when the wire format changes, whatever the server's own types say.
#![expect(
    dead_code,
    reason = "each struct mirrors its schema whole, so reading a response checks every field's \
              presence and type; a test reads only the fields it asserts on"
)]

use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

/// `LoginResponse`.
#[derive(Debug, Clone, Deserialize)]
pub struct Login {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: i64,
    pub user: User,
}

/// `UserDto`.
#[derive(Debug, Clone, Deserialize)]
pub struct User {
    pub id: i64,
    pub first_name: String,
    pub last_name: Option<String>,
    pub username: Option<String>,
    pub language_code: Option<String>,
    pub photo_url: Option<String>,
    pub is_premium: bool,
    pub allows_write_to_pm: bool,
    pub referral_code: String,
    pub created_at: DateTime<Utc>,
}

/// `BalanceDto`.
#[derive(Debug, Clone, Deserialize)]
pub struct Balance {
    pub balance_credits: i64,
    pub free_actions_limit: i64,
    pub free_actions_used: i64,
    pub free_actions_left: i64,
    /// As sent (RFC 3339, UTC, `Z`): tests compare its exact form.
    pub free_actions_reset_at: String,
    pub subscription_plan: Option<String>,
    pub subscription_until: Option<DateTime<Utc>>,
}

/// `UploadDto`.
#[derive(Debug, Clone, Deserialize)]
pub struct Upload {
    pub id: Uuid,
    pub purpose: String,
    pub mime: String,
    pub width: i64,
    pub height: i64,
    pub bytes: i64,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub url: String,
}

/// `FittingUploadDto`.
#[derive(Debug, Clone, Deserialize)]
pub struct FittingUpload {
    pub person: Upload,
    pub item: Upload,
}

/// `GenerationDto`.
#[derive(Debug, Clone, Deserialize)]
pub struct Generation {
    pub id: Uuid,
    pub kind: String,
    pub status: String,
    pub zone: Option<String>,
    pub prompt: Option<String>,
    pub person_upload_id: Option<Uuid>,
    pub item_upload_id: Option<Uuid>,
    pub source_upload_id: Option<Uuid>,
    pub progress: i64,
    pub credits_spent: i64,
    pub paid_with: String,
    pub result: Option<GenerationResult>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// `ResultDto`.
#[derive(Debug, Clone, Deserialize)]
pub struct GenerationResult {
    pub url: String,
    pub width: i64,
    pub height: i64,
}

/// `GenerationEnvelope`: what generate, get and cancel answer.
#[derive(Debug, Clone, Deserialize)]
pub struct GenerationEnvelope {
    pub generation: Generation,
}

/// `GenerationPage`.
#[derive(Debug, Clone, Deserialize)]
pub struct GenerationPage {
    pub items: Vec<Generation>,
    pub next_cursor: Option<String>,
}

/// `LedgerEntryDto`.
#[derive(Debug, Clone, Deserialize)]
pub struct LedgerEntry {
    pub id: i64,
    pub delta: i64,
    pub balance_after: i64,
    pub reason: String,
    pub description: String,
    pub ref_type: Option<String>,
    pub ref_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// `LedgerPage`.
#[derive(Debug, Clone, Deserialize)]
pub struct LedgerPage {
    pub items: Vec<LedgerEntry>,
    pub next_cursor: Option<String>,
}

/// `ChatReply`: the assistant's answer (also the `chat.reply` event's fields).
#[derive(Debug, Clone, Deserialize)]
pub struct ChatReply {
    pub session_id: Uuid,
    pub reply: String,
    pub variants: Vec<String>,
    pub usage: TokenUsage,
}

/// `TokenUsage`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TokenUsage {
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
}

/// `SessionDto`.
#[derive(Debug, Clone, Deserialize)]
pub struct Session {
    pub session_id: Uuid,
    pub upload_id: Option<Uuid>,
    pub image_url: Option<String>,
    pub messages: Vec<Message>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `MessageDto`.
#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
    pub image_url: Option<String>,
    /// Absent on user messages.
    #[serde(default)]
    pub variants: Vec<String>,
    pub timestamp: DateTime<Utc>,
    pub usage: Option<TokenUsage>,
}

/// `SessionPage`.
#[derive(Debug, Clone, Deserialize)]
pub struct SessionPage {
    pub items: Vec<SessionSummary>,
    pub next_cursor: Option<String>,
}

/// `SessionSummaryDto`.
#[derive(Debug, Clone, Deserialize)]
pub struct SessionSummary {
    pub session_id: Uuid,
    pub upload_id: Option<Uuid>,
    pub image_url: Option<String>,
    pub message_count: i64,
    pub last_message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `Catalogue`.
#[derive(Debug, Clone, Deserialize)]
pub struct Catalogue {
    pub packs: Vec<Product>,
    pub plans: Vec<Product>,
}

/// `ProductDto`.
#[derive(Debug, Clone, Deserialize)]
pub struct Product {
    pub id: String,
    pub kind: String,
    pub title: String,
    pub credits: i64,
    pub price_minor: i64,
    pub currency: String,
    pub price: String,
    pub plan: Option<String>,
    pub period_days: Option<i64>,
    pub price_stars: Option<i64>,
}

/// `PaymentCreated`.
#[derive(Debug, Clone, Deserialize)]
pub struct PaymentCreated {
    pub payment_id: Uuid,
    pub status: String,
    pub confirmation_url: Option<String>,
}

/// `PaymentDto`.
#[derive(Debug, Clone, Deserialize)]
pub struct Payment {
    pub payment_id: Uuid,
    pub status: String,
    pub provider: String,
    pub product_id: String,
    pub plan: Option<String>,
    pub amount_minor: i64,
    pub currency: String,
    pub credits: i64,
    pub confirmation_url: Option<String>,
    pub created_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
}

/// `StarsInvoice`.
#[derive(Debug, Clone, Deserialize)]
pub struct StarsInvoice {
    pub payment_id: Uuid,
    pub invoice_link: String,
    pub amount: i64,
}

/// `ReferralsDto`.
#[derive(Debug, Clone, Deserialize)]
pub struct Referrals {
    pub code: String,
    pub link: String,
    pub invited: i64,
    pub credits_earned: i64,
    pub bonus_credits: i64,
}

/// A WebSocket message: `type` and the fields of its kind (`snapshot` carries `generations`;
/// `generation.*` a `generation`, with `position`, `result_url` or `refunded` by kind;
/// `chat.delta` and `chat.reply` a `session_id` and their text).
#[derive(Debug, Clone, Deserialize)]
pub struct ServerEvent {
    #[serde(rename = "type")]
    pub kind: String,
    pub generations: Option<Vec<Generation>>,
    pub generation: Option<Generation>,
    pub position: Option<i64>,
    pub result_url: Option<String>,
    pub refunded: Option<bool>,
    pub session_id: Option<Uuid>,
    pub attempt: Option<i64>,
    pub text: Option<String>,
    pub reply: Option<String>,
    pub variants: Option<Vec<String>>,
    pub usage: Option<TokenUsage>,
}

impl ServerEvent {
    /// The generation of a `generation.*` event.
    pub fn generation(&self) -> &Generation {
        self.generation
            .as_ref()
            .unwrap_or_else(|| panic!("a {} event carries no generation", self.kind))
    }
}

/// `ErasureDto`: what `DELETE /api/v1/me` erased and kept.
#[derive(Debug, Clone, Deserialize)]
pub struct Erasure {
    pub erased: Erased,
    pub kept: Kept,
}

/// `ErasedDto`.
#[derive(Debug, Clone, Deserialize)]
pub struct Erased {
    pub uploads: i64,
    pub generations: i64,
    pub chat_sessions: i64,
    pub images: i64,
    pub profile: bool,
}

/// `KeptDto`.
#[derive(Debug, Clone, Deserialize)]
pub struct Kept {
    pub ledger_entries: i64,
    pub payments: i64,
    pub reason: String,
}

/// `ExportDto`: everything held about a user.
#[derive(Debug, Clone, Deserialize)]
pub struct Export {
    pub exported_at: DateTime<Utc>,
    pub user: User,
    pub balance: Balance,
    pub referral_code: String,
    pub registered_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub uploads: Vec<Upload>,
    pub generations: Vec<Generation>,
    pub ledger: Vec<LedgerEntry>,
    pub payments: Vec<Payment>,
    pub chat_sessions: Vec<Session>,
    pub referrals_invited: i64,
    pub referral_credits_earned: i64,
}

/// `AdminUserDto`: a user as the admin API shows them.
#[derive(Debug, Clone, Deserialize)]
pub struct AdminUser {
    pub user: User,
    pub balance: Balance,
    pub is_blocked: bool,
    pub referral_code: String,
    pub registered_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub ledger: Vec<LedgerEntry>,
    pub generations: Vec<Generation>,
    pub payments: Vec<Payment>,
}

/// `CreditsResult`: an admin's grant or debit.
#[derive(Debug, Clone, Deserialize)]
pub struct CreditsResult {
    pub entry: LedgerEntry,
    pub balance_credits: i64,
    pub replayed: bool,
}
