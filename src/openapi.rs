//! The OpenAPI document, generated from the handlers and DTOs. `openapi.yaml` at the
//! repository root is this document; a test fails when they differ.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Atelier API",
        version = "1.0.0",
        description = "Backend of the Atelier Telegram Mini App: AI virtual try-on and photo editing paid with credits. \
                       Every error is application/problem+json with a stable `code`."
    ),
    paths(
        routes::auth::login,
        routes::me::me,
        routes::me::balance,
        routes::privacy::erase,
        routes::privacy::export,
        routes::uploads::fitting_upload,
        routes::uploads::editing_upload,
        routes::uploads::get_upload,
        routes::generations::fitting_generate,
        routes::generations::editing_generate,
        routes::generations::get,
        routes::generations::list,
        routes::generations::cancel,
        routes::editing::chat,
        routes::editing::list_sessions,
        routes::editing::get_session,
        routes::editing::reset,
        crate::realtime::ws::connect,
        routes::payments::list_products,
        routes::payments::create,
        routes::payments::get,
        routes::payments::stars_invoice,
        routes::payments::webhook,
        routes::telegram_webhook::webhook,
        routes::referrals::get,
        routes::ledger::list,
        routes::admin::stats::get,
        routes::admin::queue::get,
        routes::admin::users::get,
        routes::admin::users::credits,
        routes::admin::users::block,
        routes::admin::users::unblock,
        routes::admin::income_csv,
        routes::health::health,
        routes::health::ready,
        routes::demo::sign_init_data,
    ),
    components(schemas(crate::error::Problem)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "auth", description = "Login with Telegram initData"),
        (name = "me", description = "The signed-in user"),
        (name = "uploads", description = "Photos for fitting and editing"),
        (name = "generations", description = "Try-ons and edits: charged once, refunded on failure"),
        (name = "editing", description = "The editing assistant: a chat that proposes three edit prompts per message"),
        (name = "operations", description = "Health and readiness"),
        (name = "payments", description = "Credit packs and plans: YooKassa (or its sandbox) and Telegram Stars"),
        (name = "admin", description = "Operators, with X-Admin-API-Key"),
        (name = "dev", description = "Development only (404 in production): the demo page's helpers"),
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "tma",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "`tma <initData>`: Telegram Mini App initData instead of a token",
            ))),
        );
    }
}

/// The document as YAML, as committed in `openapi.yaml`.
pub fn yaml() -> anyhow::Result<String> {
    Ok(ApiDoc::openapi().to_yaml()?)
}
