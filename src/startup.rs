//! `Application::build(settings)`: the one way to start the HTTP server, used by `main`
//! and by the tests (which bind port 0 and read the real port back).

use std::net::TcpListener;

use actix_cors::Cors;
use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceResponse};
use actix_web::http::{StatusCode, header};
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers, from_fn};
use actix_web::{App, HttpMessage as _, HttpResponse, HttpServer, web};
use anyhow::Context;
use tracing_actix_web::{RequestId, TracingLogger};

use crate::config::Settings;
use crate::error::{AppError, ErrorCode, PROBLEM_JSON, Problem};
use crate::state::AppState;

pub struct Application {
    port: u16,
    server: Server,
    state: AppState,
    /// Production's private `/metrics` listener: its port and server.
    metrics: Option<(u16, Server)>,
}

impl Application {
    /// Binds the listener, builds the state and starts serving. With `PORT=0` the real port is
    /// read back, and a `PUBLIC_BASE_URL` derived from the port follows it.
    pub async fn build(mut settings: Settings) -> anyhow::Result<Self> {
        let address = settings.bind_address();
        let listener = TcpListener::bind(&address).with_context(|| format!("binding {address}"))?;
        let port = listener.local_addr()?.port();
        if let Some(host) = settings
            .public_base_url
            .strip_suffix(":0")
            .filter(|_| settings.port == 0)
        {
            settings.public_base_url = format!("{host}:{port}");
        }
        let state = AppState::build(settings)?;
        state.hub.set_snapshot_source(std::sync::Arc::new(
            crate::routes::generations::ActiveGenerations,
        ));
        crate::realtime::start(&state);
        let metrics = if state.settings.is_production() {
            let address = state.settings.metrics_address();
            let listener = TcpListener::bind(&address)
                .with_context(|| format!("binding METRICS_HOST:METRICS_PORT {address}"))?;
            let port = listener.local_addr()?.port();
            Some((port, serve_probes(listener, state.clone())?))
        } else {
            None
        };
        let server = serve(listener, state.clone())?;
        Ok(Self {
            port,
            server,
            state,
            metrics,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the private `/metrics` listener (production only).
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics.as_ref().map(|(port, _)| *port)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub fn server_handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until the public server stops; the metrics listener stops with it.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let metrics = self.metrics.map(|(_, server)| {
            let handle = server.handle();
            (handle, tokio::spawn(server))
        });
        let result = self.server.await;
        if let Some((handle, server)) = metrics {
            handle.stop(true).await;
            let _ = server.await;
        }
        result
    }
}

/// `/health`, `/ready` and `/metrics` on a private listener, one worker, no signal handling of
/// its own (it stops with the server it belongs to).
pub fn serve_probes(listener: TcpListener, state: AppState) -> anyhow::Result<Server> {
    let data = web::Data::new(state);
    crate::telemetry::prometheus();
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .configure(crate::routes::health::probes_config)
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run())
}

fn serve(listener: TcpListener, state: AppState) -> anyhow::Result<Server> {
    let data = web::Data::new(state.clone());
    let json_limit = state.settings.max_json_body_bytes;
    let origins = state.settings.cors_allowed_origins.clone();
    let production = state.settings.is_production();
    crate::telemetry::prometheus();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(
                web::JsonConfig::default()
                    .limit(json_limit)
                    .error_handler(json_error),
            )
            .app_data(web::PayloadConfig::default().limit(json_limit))
            .app_data(web::QueryConfig::default().error_handler(|e, _| {
                AppError::bad_request(ErrorCode::InvalidQuery, e.to_string()).into()
            }))
            .app_data(
                web::PathConfig::default()
                    .error_handler(|e, _| AppError::not_found(e.to_string()).into()),
            )
            .configure(crate::routes::config)
            .configure(|cfg| {
                if !production {
                    crate::routes::health::metrics_config(cfg);
                }
            })
            .default_service(web::to(|| async {
                AppError::not_found("no such route").error_response_boxed()
            }))
            // Every body is read under REQUEST_BODY_TIMEOUT_SECS (408 after it).
            .wrap(from_fn(crate::http::deadline::body_deadline))
            .wrap(cors(&origins, production))
            // Outside CORS, so that its refusals become problem+json too.
            .wrap(ErrorHandlers::new().default_handler(problem_for_bare_errors))
            .wrap(from_fn(crate::telemetry::record_http_metrics))
            .wrap(from_fn(request_id_header))
            .wrap(TracingLogger::<crate::telemetry::RequestSpan>::new())
    })
    .listen(listener)?
    .shutdown_timeout(20)
    .run();
    Ok(server)
}

impl AppError {
    fn error_response_boxed(self) -> HttpResponse {
        actix_web::ResponseError::error_response(&self)
    }
}

fn cors(origins: &[String], production: bool) -> Cors {
    let base = Cors::default()
        .allowed_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static("idempotency-key"),
        ])
        .expose_headers([
            header::RETRY_AFTER,
            header::HeaderName::from_static("x-request-id"),
        ])
        .max_age(3600);
    match (origins.is_empty(), production) {
        (true, false) => base.allow_any_origin(),
        _ => origins
            .iter()
            .fold(base, |cors, origin| cors.allowed_origin(origin)),
    }
}

fn json_error(
    err: actix_web::error::JsonPayloadError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as E;
    let app = match &err {
        E::Overflow { .. } | E::OverflowKnownLength { .. } => AppError::Client {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: ErrorCode::PayloadTooLarge,
            detail: err.to_string(),
        },
        E::ContentType => AppError::Client {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: ErrorCode::UnsupportedMediaType,
            detail: "send the body as application/json".into(),
        },
        E::Deserialize(e) if e.is_data() => {
            AppError::unprocessable(ErrorCode::InvalidBody, e.to_string())
        }
        _ => AppError::bad_request(ErrorCode::InvalidJson, err.to_string()),
    };
    app.into()
}

/// Turns any error response that is not problem+json yet (actix's own 404/405/413, ...)
/// into one, keeping its status and headers.
fn problem_for_bare_errors<B: MessageBody + 'static>(
    res: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if is_problem {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let code = match status {
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        StatusCode::BAD_REQUEST => ErrorCode::BadRequest,
        StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
        StatusCode::FORBIDDEN => ErrorCode::Forbidden,
        StatusCode::REQUEST_TIMEOUT => ErrorCode::RequestTimeout,
        s if s.is_server_error() => ErrorCode::InternalError,
        _ => ErrorCode::Error,
    };
    let detail = match status {
        StatusCode::METHOD_NOT_ALLOWED => "this route does not accept that method".to_owned(),
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is too large".to_owned(),
        s if s.is_server_error() => "an internal error occurred".to_owned(),
        s => s.canonical_reason().unwrap_or("error").to_lowercase(),
    };
    let (req, old) = res.into_parts();
    let mut new = Problem::new(status, code, detail).response();
    for (name, value) in old.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            new.headers_mut().insert(name.clone(), value.clone());
        }
    }
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(req, new).map_into_right_body(),
    ))
}

/// Echoes the request id that `TracingLogger` put on the request span as `X-Request-Id`.
async fn request_id_header(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req.extensions().get::<RequestId>().copied();
    let mut res = next.call(req).await?;
    if let Some(id) = id
        && let Ok(value) = header::HeaderValue::from_str(&id.to_string())
    {
        res.headers_mut()
            .insert(header::HeaderName::from_static("x-request-id"), value);
    }
    Ok(res)
}
