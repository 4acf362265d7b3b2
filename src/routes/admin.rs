//! The operators' API under `/admin`, for `X-Admin-API-Key` (compared in constant time with
//! `ADMIN_API_KEY`; unset turns the whole scope off with 404) or an admin's access token
//! (`ADMIN_IDS`): stats, the queue, users (lookup, credits, blocks) and the income register
//! for «Мой налог».

pub mod queue;
pub mod stats;
pub mod users;

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use chrono::{
    DateTime, Duration, FixedOffset, NaiveDate, NaiveTime, Offset as _, TimeZone as _, Utc,
};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::extractor::AdminUser;
use crate::db::payments;
use crate::domain::payments::format_amount;
use crate::error::{AppError, AppResult, ErrorCode, Problem};
use crate::state::AppState;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/admin")
            .service(web::resource("/stats").route(web::get().to(stats::get)))
            .service(web::resource("/queue").route(web::get().to(queue::get)))
            .service(web::resource("/users/{telegram_id}").route(web::get().to(users::get)))
            .service(
                web::resource("/users/{telegram_id}/credits").route(web::post().to(users::credits)),
            )
            .service(
                web::resource("/users/{telegram_id}/block").route(web::post().to(users::block)),
            )
            .service(
                web::resource("/users/{telegram_id}/unblock").route(web::post().to(users::unblock)),
            )
            .service(web::resource("/payments/income.csv").route(web::get().to(income_csv))),
    );
}

/// Dates of the register are Moscow dates (UTC+3 all year), as «Мой налог» counts them.
fn moscow() -> FixedOffset {
    FixedOffset::east_opt(3 * 3600).unwrap_or(Utc.fix())
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct IncomeQuery {
    /// First day, `YYYY-MM-DD` (Moscow time), included.
    pub from: NaiveDate,
    /// Last day, `YYYY-MM-DD` (Moscow time), included.
    pub to: NaiveDate,
}

fn moscow_midnight(day: NaiveDate) -> AppResult<DateTime<Utc>> {
    moscow()
        .from_local_datetime(&day.and_time(NaiveTime::MIN))
        .single()
        .map(|t| t.to_utc())
        .ok_or_else(|| AppError::bad_request(ErrorCode::InvalidQuery, "bad date"))
}

/// The income register for «Мой налог»: one row per succeeded rouble payment paid between
/// `from` and `to` (Moscow dates, inclusive) — date, payment id, amount, НПД tax, commission,
/// net — and the totals on the last row. Amounts in roubles with two decimals.
#[utoipa::path(get, path = "/admin/payments/income.csv", tag = "admin",
    params(IncomeQuery, ("X-Admin-API-Key" = String, Header)),
    responses((status = 200, description = "CSV", content_type = "text/csv"),
              (status = 401, body = Problem),
              (status = 404, description = "the admin API is off", body = Problem)))]
pub async fn income_csv(
    _: AdminUser,
    state: web::Data<AppState>,
    query: web::Query<IncomeQuery>,
) -> AppResult<HttpResponse> {
    if query.to < query.from {
        return Err(AppError::bad_request(
            ErrorCode::InvalidQuery,
            "to is before from",
        ));
    }
    let from = moscow_midnight(query.from)?;
    let to = moscow_midnight(query.to)? + Duration::days(1);
    let mut conn = state.db.get().await?;
    let rows = payments::income(&mut conn, "RUB", from, to).await?;
    let mut csv = String::from("date,payment_id,provider,product_id,amount,tax,commission,net\n");
    let (mut amount, mut tax, mut commission, mut net) = (0i64, 0i64, 0i64, 0i64);
    for p in &rows {
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
        rows.len(),
        format_amount(amount),
        format_amount(tax),
        format_amount(commission),
        format_amount(net),
    ));
    let filename = format!("income-{}-{}.csv", query.from, query.to);
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/csv; charset=utf-8"))
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{filename}\""),
        ))
        .body(csv))
}
