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
    modifiers(&SecuritySchemes, &CommonResponses, &Links),
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

/// How one answer leads to the next request (OpenAPI links): an upload to the generations and
/// chats that use it, a generation to reading and cancelling it, a chat turn to its session, a
/// payment to its status. Clients and stateful contract runs follow them.
struct Links;

/// (from operation, status, link name, to operation, parameters, request body)
type LinkSpec = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    Option<&'static [(&'static str, &'static str)]>,
);

const LINKS: &[LinkSpec] = &[
    (
        "editing_upload",
        "201",
        "GetUpload",
        "get_upload",
        &[("id", "$response.body#/id")],
        None,
    ),
    (
        "editing_upload",
        "201",
        "DeleteUpload",
        "delete_upload",
        &[("id", "$response.body#/id")],
        None,
    ),
    (
        "editing_upload",
        "201",
        "Edit",
        "editing_generate",
        &[],
        Some(&[("upload_id", "$response.body#/id")]),
    ),
    (
        "editing_upload",
        "201",
        "Chat",
        "chat",
        &[],
        Some(&[("upload_id", "$response.body#/id")]),
    ),
    (
        "fitting_upload",
        "201",
        "GetPerson",
        "get_upload",
        &[("id", "$response.body#/person/id")],
        None,
    ),
    (
        "fitting_upload",
        "201",
        "GetItem",
        "get_upload",
        &[("id", "$response.body#/item/id")],
        None,
    ),
    (
        "fitting_upload",
        "201",
        "TryOn",
        "fitting_generate",
        &[],
        Some(&[
            ("person_upload_id", "$response.body#/person/id"),
            ("item_upload_id", "$response.body#/item/id"),
        ]),
    ),
    (
        "fitting_generate",
        "202",
        "GetGeneration",
        "get_generation",
        &[("id", "$response.body#/generation/id")],
        None,
    ),
    (
        "fitting_generate",
        "202",
        "Cancel",
        "cancel",
        &[("id", "$response.body#/generation/id")],
        None,
    ),
    (
        "fitting_generate",
        "202",
        "DeleteGeneration",
        "delete_generation",
        &[("id", "$response.body#/generation/id")],
        None,
    ),
    (
        "editing_generate",
        "202",
        "GetGeneration",
        "get_generation",
        &[("id", "$response.body#/generation/id")],
        None,
    ),
    (
        "editing_generate",
        "202",
        "Cancel",
        "cancel",
        &[("id", "$response.body#/generation/id")],
        None,
    ),
    (
        "editing_generate",
        "202",
        "DeleteGeneration",
        "delete_generation",
        &[("id", "$response.body#/generation/id")],
        None,
    ),
    (
        "chat",
        "200",
        "GetSession",
        "get_session",
        &[("session_id", "$response.body#/session_id")],
        None,
    ),
    (
        "chat",
        "200",
        "Continue",
        "chat",
        &[],
        Some(&[("session_id", "$response.body#/session_id")]),
    ),
    (
        "chat",
        "200",
        "Reset",
        "reset",
        &[],
        Some(&[("session_id", "$response.body#/session_id")]),
    ),
    (
        "chat",
        "200",
        "RunVariant",
        "editing_generate",
        &[],
        Some(&[("session_id", "$response.body#/session_id")]),
    ),
    (
        "create",
        "201",
        "GetPayment",
        "get_payment",
        &[("id", "$response.body#/payment_id")],
        None,
    ),
    (
        "create",
        "200",
        "GetPayment",
        "get_payment",
        &[("id", "$response.body#/payment_id")],
        None,
    ),
    (
        "stars_invoice",
        "201",
        "GetPayment",
        "get_payment",
        &[("id", "$response.body#/payment_id")],
        None,
    ),
];

impl Modify for Links {
    /// utoipa 5.5 writes a `Link` with snake_case keys (`operation_id`), which no tool reads:
    /// the links are written out here as JSON under `components.links`, and each answer refers
    /// to its own.
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use serde_json::{Map, Value, json};
        use utoipa::openapi::{Ref, RefOr};
        let mut components = Map::new();
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in operations.into_iter().flatten() {
                let Some(id) = op.operation_id.clone() else {
                    continue;
                };
                for (from, status, name, to, parameters, body) in LINKS {
                    let Some(RefOr::T(response)) = op.responses.responses.get_mut(*status) else {
                        continue;
                    };
                    if *from != id {
                        continue;
                    }
                    let key = format!("{from}_{status}_{name}");
                    let mut link = json!({ "operationId": to });
                    if !parameters.is_empty() {
                        let parameters: Map<String, Value> = parameters
                            .iter()
                            .map(|(k, v)| ((*k).to_owned(), (*v).into()))
                            .collect();
                        link["parameters"] = parameters.into();
                    }
                    if let Some(fields) = body {
                        let fields: Map<String, Value> = fields
                            .iter()
                            .map(|(k, v)| ((*k).to_owned(), (*v).into()))
                            .collect();
                        link["requestBody"] = fields.into();
                    }
                    components.insert(key.clone(), link);
                    response.links.insert(
                        (*name).to_owned(),
                        RefOr::Ref(Ref::new(format!("#/components/links/{key}"))),
                    );
                }
            }
        }
        let extensions = openapi
            .components
            .get_or_insert_with(Default::default)
            .extensions
            .get_or_insert_with(Default::default);
        extensions.insert("links".to_owned(), components.into());
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every declared link starts at a documented answer and ends at an operation that exists.
    #[test]
    fn links_join_documented_operations() {
        let document = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let operations: Vec<&serde_json::Value> = document["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .collect();
        let by_id = |id: &str| {
            operations
                .iter()
                .find(|op| op["operationId"] == id)
                .unwrap_or_else(|| panic!("no operation {id}"))
        };
        for (from, status, name, to, _, _) in LINKS {
            let reference = &by_id(from)["responses"][*status]["links"][*name]["$ref"];
            let key = reference
                .as_str()
                .and_then(|r| r.strip_prefix("#/components/links/"))
                .unwrap_or_else(|| panic!("{from} {status} {name}: {reference}"));
            let link = &document["components"]["links"][key];
            assert_eq!(link["operationId"], *to, "{from} {status} {name}");
            by_id(to);
        }
    }
}
