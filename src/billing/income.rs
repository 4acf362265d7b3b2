//! The income register for «Мой налог»: the succeeded rouble payments paid between two Moscow
//! dates, with the НПД tax, the commission and the net of each, and the totals.

use chrono::{
    DateTime, Duration, FixedOffset, NaiveDate, NaiveTime, Offset as _, TimeZone as _, Utc,
};

use crate::db::models::Payment;
use crate::db::payments;
use crate::domain::payments::format_amount;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::state::AppState;

/// Dates of the register are Moscow dates (UTC+3 all year), as «Мой налог» counts them.
fn moscow() -> FixedOffset {
    FixedOffset::east_opt(3 * 3600).unwrap_or(Utc.fix())
}

fn moscow_midnight(day: NaiveDate) -> AppResult<DateTime<Utc>> {
    moscow()
        .from_local_datetime(&day.and_time(NaiveTime::MIN))
        .single()
        .map(|t| t.to_utc())
        .ok_or_else(|| AppError::bad_request(ErrorCode::InvalidQuery, "bad date"))
}

/// The payments of a register, in the order they were paid.
#[derive(Debug)]
pub struct Register {
    pub payments: Vec<Payment>,
}

/// The register of the days `from` to `to` (Moscow dates, both included).
pub async fn register(state: &AppState, from: NaiveDate, to: NaiveDate) -> AppResult<Register> {
    let from = moscow_midnight(from)?;
    let to = moscow_midnight(to)? + Duration::days(1);
    let mut conn = state.db.get().await?;
    Ok(Register {
        payments: payments::income(&mut conn, "RUB", from, to).await?,
    })
}

impl Register {
    /// The register as CSV: date, payment id, provider, product, amount, tax, commission, net
    /// (roubles with two decimals), and the totals on the last row.
    pub fn to_csv(&self) -> String {
        let mut csv =
            String::from("date,payment_id,provider,product_id,amount,tax,commission,net\n");
        let (mut amount, mut tax, mut commission, mut net) = (0i64, 0i64, 0i64, 0i64);
        for p in &self.payments {
            let paid = p.paid_at.unwrap_or(p.updated_at).with_timezone(&moscow());
            let (t, c, n) = (
                p.tax_minor.unwrap_or(0),
                p.commission_minor.unwrap_or(0),
                p.net_minor.unwrap_or(p.amount_minor),
            );
            csv.push_str(&format!(
                "{},{},{},{},{},{},{},{}\n",
                paid.format("%Y-%m-%d %H:%M:%S"),
                p.id,
                p.provider,
                p.product_id,
                format_amount(p.amount_minor),
                format_amount(t),
                format_amount(c),
                format_amount(n),
            ));
            amount += p.amount_minor;
            tax += t;
            commission += c;
            net += n;
        }
        csv.push_str(&format!(
            "total,{} payments,,,{},{},{},{}\n",
            self.payments.len(),
            format_amount(amount),
            format_amount(tax),
            format_amount(commission),
            format_amount(net),
        ));
        csv
    }
}
