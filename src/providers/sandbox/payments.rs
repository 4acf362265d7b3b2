//! The payment provider without YooKassa keys: it keeps its payments in `sandbox_payments` (as
//! YooKassa keeps them on its side; through [`crate::db::sandbox_payments`], never touching
//! our own tables) and confirms them on a local page. Configuration refuses it in production.

use chrono::Utc;
use serde_json::Value;

use crate::db::PgPool;
use crate::db::sandbox_payments::{self as store, NewSandboxPayment, SandboxPayment};
use crate::domain::payments::{Fetched, RemoteStatus, parse_amount};
use crate::providers::{BoxFuture, Created, PaymentError, PaymentProvider, Refund};

/// How long a sandbox payment waits for its button before it expires.
const EXPIRY: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// See the module. Cheap to clone.
#[derive(Clone)]
pub struct SandboxPayments {
    db: PgPool,
    public_base_url: String,
}

fn unknown(e: impl std::fmt::Display) -> PaymentError {
    PaymentError::Unknown(format!("sandbox database: {e}"))
}

impl SandboxPayments {
    pub fn new(db: PgPool, public_base_url: &str) -> Self {
        Self {
            db,
            public_base_url: public_base_url.to_owned(),
        }
    }

    fn confirmation_url(&self, id: &str) -> String {
        format!("{}/sandbox/payments/{id}", self.public_base_url)
    }

    async fn conn(&self) -> Result<crate::db::PgConn, PaymentError> {
        self.db.get().await.map_err(unknown)
    }

    async fn create_payment(&self, key: &str, body: &Value) -> Result<Created, PaymentError> {
        let rejected = |description: &str, parameter: &str| PaymentError::Rejected {
            status: 400,
            code: "invalid_request".into(),
            description: description.into(),
            parameter: Some(parameter.into()),
        };
        let amount_minor = body["amount"]["value"]
            .as_str()
            .and_then(parse_amount)
            .filter(|a| *a > 0)
            .ok_or_else(|| rejected("bad amount", "amount.value"))?;
        let currency = body["amount"]["currency"]
            .as_str()
            .ok_or_else(|| rejected("no currency", "amount.currency"))?;
        let return_url = body["confirmation"]["return_url"]
            .as_str()
            .ok_or_else(|| rejected("no return_url", "confirmation.return_url"))?;
        let mut conn = self.conn().await?;
        let payment = match store::find_by_key(&mut conn, key).await.map_err(unknown)? {
            Some(p) if p.request != *body => {
                return Err(rejected("Idempotence key duplicated", "Idempotence-Key"));
            }
            Some(p) => p,
            None => {
                let new = NewSandboxPayment {
                    id: uuid::Uuid::new_v4().to_string(),
                    idempotence_key: key,
                    request: body,
                    amount_minor,
                    currency,
                    description: body["description"].as_str().unwrap_or(""),
                    metadata: &body["metadata"],
                    return_url,
                };
                store::insert(&mut conn, &new).await.map_err(unknown)?
            }
        };
        Ok(Created {
            confirmation_url: Some(self.confirmation_url(&payment.id)),
            status: RemoteStatus::parse(&payment.status).unwrap_or(RemoteStatus::Pending),
            id: payment.id,
        })
    }

    /// A sandbox payment, for its confirmation page.
    pub async fn find(&self, id: &str) -> Result<Option<SandboxPayment>, PaymentError> {
        let mut conn = self.conn().await?;
        store::find(&mut conn, id).await.map_err(unknown)
    }

    /// What the payer's button does: a pending payment becomes `succeeded` or `canceled`
    /// (final states stay). Returns whether it changed.
    pub async fn complete(&self, id: &str, succeed: bool) -> Result<bool, PaymentError> {
        let mut conn = self.conn().await?;
        let to = if succeed {
            RemoteStatus::Succeeded
        } else {
            RemoteStatus::Canceled
        };
        store::finish_pending(&mut conn, id, to.as_str())
            .await
            .map_err(unknown)
    }

    async fn payment(&self, id: &str) -> Result<Fetched, PaymentError> {
        let mut conn = self.conn().await?;
        // As at YooKassa, a payment nobody confirmed expires (canceled, expired_on_confirmation).
        store::expire_pending(&mut conn, id, Utc::now() - EXPIRY)
            .await
            .map_err(unknown)?;
        let p = store::find(&mut conn, id)
            .await
            .map_err(unknown)?
            .ok_or_else(|| PaymentError::NotFound(id.to_owned()))?;
        Ok(Fetched {
            status: RemoteStatus::parse(&p.status)
                .ok_or_else(|| PaymentError::Protocol(format!("status {:?}", p.status)))?,
            amount_minor: p.amount_minor,
            currency: p.currency,
            our_payment_id: p.metadata["payment_id"].as_str().map(str::to_owned),
            id: p.id,
        })
    }
}

impl PaymentProvider for SandboxPayments {
    fn name(&self) -> crate::domain::vocabulary::PaymentProviderName {
        crate::domain::vocabulary::PaymentProviderName::Sandbox
    }

    fn create<'a>(
        &'a self,
        idempotence_key: &'a str,
        body: &'a Value,
    ) -> BoxFuture<'a, Result<Created, PaymentError>> {
        Box::pin(self.create_payment(idempotence_key, body))
    }

    fn get_payment<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Fetched, PaymentError>> {
        Box::pin(self.payment(id))
    }

    fn get_refund<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Refund, PaymentError>> {
        // The sandbox takes no refunds.
        Box::pin(async move { Err(PaymentError::NotFound(id.to_owned())) })
    }
}
