//! Liveness, readiness and metrics.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use diesel_async::SimpleAsyncConnection;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ErrorCode, Problem};
use crate::state::AppState;

/// `/health` and `/ready`.
pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/health").route(web::get().to(health)))
        .service(web::resource("/ready").route(web::get().to(ready)));
}

/// `/metrics`: on the public port outside production only; in production it is served by the
/// metrics listener (`METRICS_PORT`) alone, never to the internet.
pub fn metrics_config(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/metrics").route(web::get().to(metrics)));
}

/// Everything a private probe listener serves (the API's `METRICS_PORT`, the worker's
/// `WORKER_METRICS_PORT`): `/health`, `/ready` and `/metrics`.
pub fn probes_config(cfg: &mut web::ServiceConfig) {
    cfg.configure(config).configure(metrics_config);
}

#[derive(Serialize, ToSchema)]
pub struct HealthDto {
    #[schema(example = "ok")]
    pub status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct ReadyDto {
    /// `ready`, or `degraded` while Redis is unavailable.
    #[schema(example = "ready")]
    pub status: &'static str,
    /// `ok` or what failed, per dependency (`unavailable: …`, for Redis `degraded: …`).
    pub postgres: String,
    pub redis: String,
}

/// The process is alive.
#[utoipa::path(get, path = "/health", tag = "operations", responses((status = 200, body = HealthDto)))]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(HealthDto { status: "ok" })
}

/// PostgreSQL answers: 503 (problem+json with the same fields) when it does not. Redis is
/// reported but never makes a process unready: without it the API still serves everything that
/// needs only PostgreSQL (abuse limits fail open, live events are not delivered),
/// and a Redis outage must not make the load balancer pull every replica at once. Then
/// `status` and `redis` say `degraded`.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses((status = 200, description = "ready, or degraded (Redis unavailable)", body = ReadyDto),
              (status = 503, description = "`not_ready`: PostgreSQL unavailable", body = Problem)))]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let (postgres, redis) = tokio::join!(check_postgres(&state), check_redis(&state));
    let dto = ReadyDto {
        status: if redis.is_ok() { "ready" } else { "degraded" },
        postgres: match &postgres {
            Ok(()) => "ok".to_owned(),
            Err(e) => format!("unavailable: {e}"),
        },
        redis: match &redis {
            Ok(()) => "ok".to_owned(),
            Err(e) => format!("degraded: {e}"),
        },
    };
    if postgres.is_ok() {
        return HttpResponse::Ok().json(dto);
    }
    let mut problem = Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::NotReady,
        "a dependency is unavailable",
    );
    problem
        .extensions
        .insert("postgres".into(), dto.postgres.into());
    problem.extensions.insert("redis".into(), dto.redis.into());
    problem.response()
}

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

async fn check_postgres(state: &AppState) -> anyhow::Result<()> {
    tokio::time::timeout(CHECK_TIMEOUT, async {
        let mut conn = state.db.get().await?;
        conn.batch_execute("SELECT 1").await?;
        anyhow::Ok(())
    })
    .await
    .map_err(|_| anyhow::anyhow!("timed out"))?
}

async fn check_redis(state: &AppState) -> anyhow::Result<()> {
    tokio::time::timeout(CHECK_TIMEOUT, async {
        let mut conn = state.redis.get().await?;
        let pong: String = deadpool_redis::redis::cmd("PING")
            .query_async(&mut conn)
            .await?;
        anyhow::ensure!(pong == "PONG", "unexpected reply {pong:?}");
        anyhow::Ok(())
    })
    .await
    .map_err(|_| anyhow::anyhow!("timed out"))?
}

/// Prometheus metrics of this process.
pub async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::telemetry::prometheus().render())
}
