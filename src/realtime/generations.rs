//! Generation events and the generation as clients see it (the API's responses and the
//! WebSocket's events share this shape). Below both the routes and the worker, which publish them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Event, publish};
use crate::db::models::Generation;
use crate::domain::vocabulary::{GenerationKind, GenerationStatus, PaidWith};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct ResultDto {
    /// A signed link to the stored result; it expires (fetch the generation again for a new one).
    pub url: String,
    pub width: i32,
    pub height: i32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GenerationDto {
    pub id: Uuid,
    pub kind: GenerationKind,
    pub status: GenerationStatus,
    pub zone: Option<String>,
    /// The edit prompt (try-on prompts are ours and not shown).
    pub prompt: Option<String>,
    pub person_upload_id: Option<Uuid>,
    pub item_upload_id: Option<Uuid>,
    pub source_upload_id: Option<Uuid>,
    /// 0–100 while running.
    pub progress: i16,
    pub credits_spent: i64,
    /// Results of free actions carry a watermark.
    pub paid_with: PaidWith,
    pub result: Option<ResultDto>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl GenerationDto {
    pub fn of(g: &Generation, state: &AppState) -> Self {
        let result = match (&g.result_key, g.result_width, g.result_height) {
            (Some(key), Some(width), Some(height)) if g.status == GenerationStatus::Succeeded => {
                Some(ResultDto {
                    url: state.media_url(key),
                    width,
                    height,
                })
            }
            _ => None,
        };
        Self {
            id: g.id,
            kind: g.kind,
            status: g.status,
            zone: g.zone.clone(),
            prompt: (g.kind == GenerationKind::Editing).then(|| g.prompt.clone()),
            person_upload_id: g.person_upload_id,
            item_upload_id: g.item_upload_id,
            source_upload_id: g.source_upload_id,
            progress: g.progress,
            credits_spent: g.credits_spent,
            paid_with: g.paid_with,
            result,
            error_code: g.error_code.clone(),
            error_message: g
                .error_code
                .as_deref()
                .map(|code| user_message(code, g.error_message.as_deref())),
            created_at: g.created_at,
            started_at: g.started_at,
            finished_at: g.finished_at,
        }
    }
}

/// What a user reads about a failure. The stored detail is for operators (it may name files,
/// hosts or our provider account); only the provider's own words about a failed generation
/// (external-apis §1.4) and our reason for a cancellation are shown as they are.
fn user_message(code: &str, detail: Option<&str>) -> String {
    let shown = match code {
        "generation_failed" | "canceled" => detail.filter(|d| !d.is_empty()),
        _ => None,
    };
    let fixed = match code {
        "generation_failed" => "the image service could not make this picture",
        "canceled" => "canceled",
        "upload_gone" => "a photo of this generation is no longer available",
        "invalid_result" | "result_too_large" | "result_unavailable" | "result_bad_url" => {
            "the image service returned no usable picture"
        }
        c if c.starts_with("provider_") => "the image service is not available; try again later",
        _ => "something went wrong on our side; try again later",
    };
    shown.unwrap_or(fixed).to_owned()
}

/// Publishes a generation event to its owner's sockets, without waiting and without failing
/// the caller: the next snapshot carries the state anyway.
pub fn notify(
    state: &AppState,
    g: &Generation,
    type_: &str,
    mut data: serde_json::Map<String, serde_json::Value>,
) {
    if let Ok(serde_json::Value::Object(dto)) = serde_json::to_value(GenerationDto::of(g, state)) {
        data.insert("generation".into(), serde_json::Value::Object(dto));
    }
    let event = Event {
        type_: type_.to_owned(),
        data,
    };
    let state = state.clone();
    let user_id = g.user_id;
    tokio::spawn(async move {
        if let Err(e) = publish(&state, user_id, &event).await {
            tracing::warn!(error = %e, "publishing a generation event failed");
        }
    });
}

pub fn notify_failed(state: &AppState, g: &Generation, refunded: bool) {
    let mut data = serde_json::Map::new();
    data.insert("refunded".into(), refunded.into());
    notify(state, g, super::types::GENERATION_FAILED, data);
}

#[cfg(test)]
mod tests {
    use super::user_message;

    #[test]
    fn users_read_the_providers_words_on_a_failed_generation_and_ours_on_anything_else() {
        let failed = user_message(
            "generation_failed",
            Some("content policy (provider code 500)"),
        );
        assert_eq!(failed, "content policy (provider code 500)");
        assert_eq!(
            user_message("generation_failed", Some("")),
            "the image service could not make this picture"
        );
        assert_eq!(
            user_message("canceled", Some("canceled by the user")),
            "canceled by the user"
        );
        let internal = user_message(
            "internal_error",
            Some("storage: /var/lib/atelier/x: EACCES"),
        );
        assert_eq!(
            internal,
            "something went wrong on our side; try again later"
        );
        let transport = user_message("provider_unreachable", Some("kie.ai unreachable: 10.0.0.7"));
        assert_eq!(
            transport,
            "the image service is not available; try again later"
        );
        assert_eq!(
            user_message("upload_gone", Some("uploads/abc.jpg: not found")),
            "a photo of this generation is no longer available"
        );
    }
}
