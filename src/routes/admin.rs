//! The operators' API under `/admin`, for `X-Admin-API-Key` (compared in constant time with
//! `ADMIN_API_KEY`; unset turns the whole scope off with 404) or an admin's access token
//! (`ADMIN_IDS`): stats, the queue, users (lookup, credits, blocks) and the income register
//! for «Мой налог».

pub mod queue;
pub mod stats;
pub mod users;

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use chrono::NaiveDate;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::extractor::AdminUser;
use crate::billing;
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

#[derive(Debug, Deserialize, IntoParams)]
pub struct IncomeQuery {
    /// First day, `YYYY-MM-DD` (Moscow time), included.
    pub from: NaiveDate,
    /// Last day, `YYYY-MM-DD` (Moscow time), included.
    pub to: NaiveDate,
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
    let register = billing::income::register(&state, query.from, query.to).await?;
    let filename = format!("income-{}-{}.csv", query.from, query.to);
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/csv; charset=utf-8"))
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{filename}\""),
        ))
        .body(register.to_csv()))
}
