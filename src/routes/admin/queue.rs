//! `GET /admin/queue`: the job queue at a glance.

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::extractor::AdminUser;
use crate::error::{AppResult, Problem};
use crate::jobs::queue;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct QueueDto {
    /// Jobs by kind and status.
    pub counts: Vec<KindCount>,
    /// Seconds the oldest due job has waited for a worker, per kind (0 when none waits).
    pub oldest_waiting_secs: Vec<KindAge>,
    /// The most recent jobs that failed for good, or are retrying after an error.
    pub failing: Vec<FailingJob>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KindCount {
    pub kind: String,
    pub status: String,
    pub count: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KindAge {
    pub kind: String,
    pub waiting: i64,
    pub oldest_waiting_secs: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FailingJob {
    pub id: i64,
    pub kind: String,
    pub status: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub last_error: Option<String>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// Jobs by kind and status, the oldest waiting age, and failing jobs with their last errors.
#[utoipa::path(get, path = "/admin/queue", operation_id = "admin_queue", tag = "admin",
    params(("X-Admin-API-Key" = Option<String>, Header)),
    responses((status = 200, body = QueueDto),
              (status = 401, body = Problem),
              (status = 403, body = Problem),
              (status = 404, body = Problem)))]
pub async fn get(state: web::Data<AppState>, _: AdminUser) -> AppResult<HttpResponse> {
    let mut conn = state.db.get().await?;
    let counts = queue::counts(&mut conn).await?;
    let depth = queue::depth(&mut conn).await?;
    let failing = queue::failing(&mut conn, 50).await?;
    Ok(HttpResponse::Ok().json(QueueDto {
        counts: counts
            .into_iter()
            .map(|(kind, status, count)| KindCount {
                kind,
                status,
                count,
            })
            .collect(),
        oldest_waiting_secs: depth
            .into_iter()
            .map(|(kind, waiting, oldest_waiting_secs)| KindAge {
                kind,
                waiting,
                oldest_waiting_secs,
            })
            .collect(),
        failing: failing
            .into_iter()
            .map(|j| FailingJob {
                id: j.id.0,
                kind: j.kind,
                status: j.status.as_str().to_owned(),
                attempts: j.attempts,
                max_attempts: j.max_attempts,
                last_error: j.last_error,
                updated_at: j.updated_at,
            })
            .collect(),
    }))
}
