//! The OpenAPI document, generated from the handlers and DTOs. `openapi.yaml` at the
//! repository root is this document; a test fails when they differ.
//!
//! Every error answer is the one `Problem` response (`#/components/responses/Problem`): a
//! handler declares `(status = 404, description = "...", body = Problem)` and
//! [`ProblemResponses`] turns it into a reference to that response, keeping the description
//! (OpenAPI 3.1 lets a reference override it), so that the media type is written once.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::error::PROBLEM_JSON;

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
    components(
        schemas(crate::error::Problem, crate::error::ErrorCode),
        responses(ProblemResponse)
    ),
    modifiers(&SecuritySchemes, &ProblemResponses, &CommonResponses, &Links),
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

/// The one error response: RFC 9457 problem+json, whose `code` says what went wrong. Its
/// description names the codes any operation can answer with, whatever its own responses say.
pub struct ProblemResponse;

const PROBLEM: &str = "Problem";

impl<'s> utoipa::ToResponse<'s> for ProblemResponse {
    fn response() -> (&'s str, RefOr<Response>) {
        let description = "An RFC 9457 problem: `code` (see `ErrorCode`) says what went wrong, \
                           `detail` says it in English for people. Besides the codes an \
                           operation names, any request can be answered with `not_found` (no \
                           such route), `method_not_allowed`, `bad_request`, `unauthorized` or \
                           `forbidden` (refused before a handler), `request_timeout` (the body \
                           arrived too slowly), `nul_character` (text holding U+0000), \
                           `conflict` (it would duplicate existing data), `internal_error`, or \
                           `error` (any other status). Routes outside this document answer \
                           too: a signed media link with `invalid_signature` (403) or \
                           `link_expired`, the kie.ai callback with `invalid_callback` or \
                           `invalid_signature` (401).";
        let response = ResponseBuilder::new()
            .description(description)
            .content(
                PROBLEM_JSON,
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name(PROBLEM)))
                    .build(),
            )
            .build();
        (PROBLEM, response.into())
    }
}

/// Every operation of the document, whatever its method.
fn operations(
    openapi: &mut utoipa::openapi::OpenApi,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    openapi.paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
    })
}

/// Turns every response a handler declares with `body = Problem` into a reference to the one
/// [`ProblemResponse`], keeping its description.
struct ProblemResponses;

impl Modify for ProblemResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let problem_schema = Ref::from_schema_name(PROBLEM).ref_location;
        for op in operations(openapi) {
            for response in op.responses.responses.values_mut() {
                let RefOr::T(declared) = response else {
                    continue;
                };
                let is_problem = declared.content.values().any(|c| {
                    matches!(&c.schema, Some(RefOr::Ref(r)) if r.ref_location == problem_schema)
                });
                if is_problem {
                    *response = problem(&declared.description);
                }
            }
        }
    }
}

/// The answers every operation of a kind can give, which the handlers' annotations leave out:
/// the auth extractor's, the JSON extractor's, the query extractor's, and 503 when PostgreSQL or
/// Redis is unavailable. Added where an annotation does not declare the status, and as the
/// description of one it declares without a description.
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::ParameterIn;
        for op in operations(openapi) {
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
                match op.responses.responses.get_mut(status) {
                    None => {
                        op.responses
                            .responses
                            .insert(status.to_owned(), problem(description));
                    }
                    // Declared without a word: these are the codes it stands for.
                    Some(RefOr::Ref(declared)) if declared.description.is_empty() => {
                        declared.description = description.to_owned();
                    }
                    Some(_) => {}
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
        for op in operations(openapi) {
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
        let extensions = openapi
            .components
            .get_or_insert_with(Default::default)
            .extensions
            .get_or_insert_with(Default::default);
        extensions.insert("links".to_owned(), components.into());
    }
}

/// A reference to the [`ProblemResponse`], with the operation's own description if it has one.
fn problem(description: &str) -> RefOr<Response> {
    let mut reference = Ref::from_response_name(PROBLEM);
    reference.description = description.to_owned();
    RefOr::Ref(reference)
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
