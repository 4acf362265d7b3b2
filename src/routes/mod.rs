//! HTTP routes, one module per resource; each exposes `config(cfg)`.

pub mod admin;
pub mod auth;
pub mod demo;
pub mod docs;
pub mod editing;
pub mod generations;
pub mod health;
pub mod ledger;
pub mod me;
pub mod payments;
pub mod privacy;
pub mod referrals;
pub mod telegram_webhook;
pub mod uploads;

use actix_web::web;

/// Every route of the API.
pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.configure(health::config)
        .configure(docs::config)
        .configure(uploads::media_config)
        .configure(payments::sandbox_config)
        .configure(admin::config)
        .configure(demo::config)
        .service(
            web::scope("/api/v1")
                .configure(auth::config)
                .configure(me::config)
                .configure(privacy::config)
                .configure(crate::realtime::ws::config)
                .configure(uploads::config)
                .configure(generations::config)
                .configure(payments::config)
                .configure(referrals::config)
                .configure(ledger::config)
                .configure(telegram_webhook::config)
                .configure(editing::config),
        );
}
