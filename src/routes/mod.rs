//! HTTP routes, one module per resource; each exposes `config(cfg)`.

pub mod auth;
pub mod docs;
pub mod editing;
pub mod generations;
pub mod health;
pub mod me;
pub mod uploads;

use actix_web::web;

/// Every route of the API.
pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.configure(health::config)
        .configure(docs::config)
        .configure(uploads::media_config)
        .service(
            web::scope("/api/v1")
                .configure(auth::config)
                .configure(me::config)
                .configure(crate::realtime::ws::config)
                .configure(uploads::config)
                .configure(generations::config)
                .configure(editing::config),
        );
}
