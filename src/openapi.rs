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
        routes::me::patch_me,
        routes::me::balance,
        routes::privacy::erase,
        routes::privacy::export,
        routes::uploads::fitting_upload,
        routes::uploads::editing_upload,
        routes::uploads::get_upload,
        routes::uploads::delete_upload,
        routes::generations::fitting_generate,
        routes::generations::editing_generate,
        routes::generations::get,
        routes::generations::list,
        routes::generations::cancel,
        routes::generations::delete,
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
    modifiers(&SecuritySchemes, &CommonResponses),
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

/// The answers every operation of a kind can give, which the handlers' annotations leave out:
/// the auth extractor's, the JSON extractor's, the query extractor's, and 503 when PostgreSQL or
/// Redis is unavailable. Added only where an annotation does not already describe the status.
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::ParameterIn;
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in operations.into_iter().flatten() {
                let mut add: Vec<(&str, &str)> = Vec::new();
                if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    add.push((
                        "401",
                        "`missing_credentials`, `invalid_token` or `token_expired`",
                    ));
                    add.push(("403", "`user_blocked`"));
                }
                let admin = op
                    .parameters
                    .iter()
                    .flatten()
                    .any(|p| p.name == "X-Admin-API-Key");
                if admin {
                    add.push(("401", "`missing_credentials`, `invalid_admin_key`"));
                    add.push(("403", "`not_admin`"));
                }
                let json_body = op
                    .request_body
                    .as_ref()
                    .is_some_and(|b| b.content.contains_key("application/json"));
                // The Telegram webhook acknowledges a body that is not JSON (Telegram would
                // resend it for ever on a 4xx).
                let acknowledges_any_body = op.operation_id.as_deref() == Some("telegram_webhook");
                if json_body && !acknowledges_any_body {
                    add.push(("400", "`invalid_json`: the body is not JSON"));
                    add.push(("415", "`unsupported_media_type`: send application/json"));
                }
                if json_body {
                    add.push(("413", "`payload_too_large`"));
                }
                let has_query = op
                    .parameters
                    .iter()
                    .flatten()
                    .any(|p| matches!(p.parameter_in, ParameterIn::Query));
                if has_query {
                    add.push(("400", "`invalid_query`"));
                }
                if op.operation_id.as_deref() != Some("health") {
                    add.push((
                        "503",
                        "`service_unavailable`: PostgreSQL or Redis cannot be reached; retry",
                    ));
                }
                for (status, description) in add {
                    if !op.responses.responses.contains_key(status) {
                        op.responses
                            .responses
                            .insert(status.to_owned(), problem(description).into());
                    }
                }
            }
        }
    }
}

fn problem(description: &str) -> utoipa::openapi::Response {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}

/// The document as YAML, as committed in `openapi.yaml`.
pub fn yaml() -> anyhow::Result<String> {
    Ok(ApiDoc::openapi().to_yaml()?)
}
