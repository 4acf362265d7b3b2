//! The OpenAPI document (`/openapi.yaml`, `/openapi.json`) and its UI at `/docs`.

use actix_web::{HttpResponse, web};
use utoipa::OpenApi as _;
use utoipa_swagger_ui::SwaggerUi;

use crate::openapi::ApiDoc;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/openapi.yaml").route(web::get().to(yaml)))
        .service(SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", ApiDoc::openapi()));
}

async fn yaml() -> HttpResponse {
    match crate::openapi::yaml() {
        Ok(text) => HttpResponse::Ok()
            .content_type("application/yaml")
            .body(text),
        Err(e) => actix_web::ResponseError::error_response(&crate::error::AppError::Internal(e)),
    }
}
