//! The sandbox image provider, used when no kie.ai key is configured (never in production): it
//! composes the input photos locally so `make run` shows the whole flow. It keeps no state in
//! the process: the task id carries its start time, the composed result sits in storage, so any
//! worker can poll any task.

use std::time::Duration;

use image::{DynamicImage, Rgb, imageops};
use uuid::Uuid;

use crate::media::image_pipeline::{self, Limits};
use crate::media::pool::ImagePool;
use crate::media::storage::Storage;
use crate::providers::{
    BoxFuture, CreateTask, ErrorAction, GenerationProvider, ProviderError, TaskId, TaskInfo,
    TaskState,
};

const PREFIX: &str = "sandbox_";
const RESULT_SCHEME: &str = "sandbox:";

pub struct SandboxProvider {
    storage: Storage,
    images: ImagePool,
    duration: Duration,
}

impl SandboxProvider {
    pub fn new(storage: Storage, images: ImagePool, duration: Duration) -> Self {
        Self {
            storage,
            images,
            duration,
        }
    }
}

fn error(action: ErrorAction, code: &'static str, message: impl Into<String>) -> ProviderError {
    ProviderError::new("sandbox", action, code, message)
}

/// The storage key behind one of our signed `/media/<key>?…` links.
fn key_of(url: &str) -> Option<&str> {
    let rest = &url[url.find("/media/")? + "/media/".len()..];
    Some(rest.split('?').next().unwrap_or(rest))
}

fn result_key(task: &str) -> String {
    format!("sandbox/{task}.img")
}

/// Try-on: the person with the item inset in a white frame; edit: the photo warmed and framed.
/// Composed in RGB (a photo has no transparency; an input's alpha is flattened), which spares
/// the encoder a conversion pass.
fn compose(inputs: Vec<DynamicImage>) -> DynamicImage {
    let mut inputs = inputs.into_iter();
    let Some(base) = inputs.next() else {
        return DynamicImage::new_rgb8(1, 1);
    };
    let mut out = base.into_rgb8();
    match inputs.next() {
        Some(item) => {
            let (w, h) = out.dimensions();
            let inset = item.thumbnail(w / 3, h / 3).into_rgb8();
            let border = (w / 150).max(2);
            let (iw, ih) = inset.dimensions();
            let frame =
                image::RgbImage::from_pixel(iw + 2 * border, ih + 2 * border, Rgb([255, 255, 255]));
            let x = i64::from(w.saturating_sub(iw + 2 * border + border * 3));
            let y = i64::from(h.saturating_sub(ih + 2 * border + border * 3));
            imageops::overlay(&mut out, &frame, x, y);
            imageops::overlay(
                &mut out,
                &inset,
                x + i64::from(border),
                y + i64::from(border),
            );
        }
        None => {
            for p in out.pixels_mut() {
                p[0] = p[0].saturating_add(18);
                p[2] = p[2].saturating_sub(12);
            }
        }
    }
    DynamicImage::ImageRgb8(out)
}

impl GenerationProvider for SandboxProvider {
    fn create<'a>(&'a self, req: &'a CreateTask) -> BoxFuture<'a, Result<TaskId, ProviderError>> {
        Box::pin(async move {
            let mut inputs = Vec::with_capacity(req.image_urls.len());
            for url in &req.image_urls {
                let key = key_of(url).ok_or_else(|| {
                    error(
                        ErrorAction::Final,
                        "invalid_input",
                        "not one of our media links",
                    )
                })?;
                let bytes = self
                    .storage
                    .get(key)
                    .await
                    .map_err(|e| error(ErrorAction::Retry, "storage_unavailable", e.to_string()))?
                    .ok_or_else(|| {
                        error(
                            ErrorAction::Final,
                            "input_gone",
                            format!("input {key} no longer exists"),
                        )
                    })?;
                inputs.push(bytes);
            }
            let png = self
                .images
                .run(move || -> Result<Vec<u8>, ProviderError> {
                    let limits = Limits {
                        min_side: 1,
                        ..Limits::default()
                    };
                    let images = inputs
                        .iter()
                        .map(|b| image_pipeline::decode_for_processing(b, &limits))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| error(ErrorAction::Final, "invalid_input", e.to_string()))?;
                    // JPEG unless there is transparency: PNG's deflate cost a fifth of the
                    // pipeline's CPU (measured with perf in make bench-pipeline).
                    let (bytes, _) = image_pipeline::encode(&compose(images))
                        .map_err(|e| error(ErrorAction::Final, "compose_failed", e.to_string()))?;
                    Ok(bytes)
                })
                .await
                .map_err(|e| error(ErrorAction::Final, "compose_failed", e.to_string()))??;
            let task = format!(
                "{PREFIX}{}_{}",
                chrono::Utc::now().timestamp_millis(),
                Uuid::new_v4().simple()
            );
            self.storage
                .put(&result_key(&task), png)
                .await
                .map_err(|e| error(ErrorAction::Retry, "storage_unavailable", e.to_string()))?;
            Ok(TaskId::new(task))
        })
    }

    /// At once when results are instant; otherwise soon, so that progress shows.
    fn first_poll_after(&self) -> Duration {
        self.duration.min(Duration::from_millis(500))
    }

    fn poll<'a>(&'a self, task_id: &'a TaskId) -> BoxFuture<'a, Result<TaskInfo, ProviderError>> {
        Box::pin(async move {
            let started_ms: i64 = task_id
                .as_str()
                .strip_prefix(PREFIX)
                .and_then(|rest| rest.split('_').next())
                .and_then(|ms| ms.parse().ok())
                .ok_or_else(|| error(ErrorAction::Final, "task_not_found", "not a sandbox task"))?;
            let elapsed =
                u128::try_from(chrono::Utc::now().timestamp_millis() - started_ms).unwrap_or(0);
            let total = self.duration.as_millis();
            let state = if elapsed >= total {
                TaskState::Success {
                    result_urls: vec![format!("{RESULT_SCHEME}{}", result_key(task_id.as_str()))],
                }
            } else {
                TaskState::Generating
            };
            let progress = u8::try_from((elapsed * 100 / total.max(1)).min(100)).unwrap_or(100);
            Ok(TaskInfo {
                task_id: task_id.clone(),
                state,
                progress: Some(progress),
            })
        })
    }

    fn fetch_result<'a>(
        &'a self,
        url: &'a str,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<Vec<u8>, ProviderError>> {
        Box::pin(async move {
            let key = url.strip_prefix(RESULT_SCHEME).ok_or_else(|| {
                error(
                    ErrorAction::Final,
                    "result_unavailable",
                    "not a sandbox result",
                )
            })?;
            let bytes = self
                .storage
                .get(key)
                .await
                .map_err(|e| error(ErrorAction::Retry, "storage_unavailable", e.to_string()))?
                .ok_or_else(|| {
                    error(
                        ErrorAction::Final,
                        "result_unavailable",
                        "the result is gone",
                    )
                })?;
            if bytes.len() > max_bytes {
                return Err(error(
                    ErrorAction::Final,
                    "result_too_large",
                    "the result is too large",
                ));
            }
            // The composed copy lives only until it is fetched into the generation's own key.
            let _ = self.storage.delete(key).await;
            Ok(bytes.to_vec())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::GenericImageView;

    #[test]
    fn media_keys_are_read_from_signed_links() {
        assert_eq!(
            key_of("http://x/media/u/a.jpg?exp=1&sig=2"),
            Some("u/a.jpg")
        );
        assert_eq!(key_of("http://x/other/u/a.jpg"), None);
    }

    use image::Rgba;

    #[test]
    fn compose_insets_the_item_in_the_person_photo() {
        let person = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
            300,
            400,
            Rgba([0, 0, 255, 255]),
        ));
        let item = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
            100,
            100,
            Rgba([255, 0, 0, 255]),
        ));
        let out = compose(vec![person, item]);
        assert_eq!(out.dimensions(), (300, 400));
        assert!(
            matches!(out, DynamicImage::ImageRgb8(_)),
            "a photo: no alpha"
        );
        let reds = out
            .to_rgba8()
            .pixels()
            .filter(|p| p[0] == 255 && p[1] == 0)
            .count();
        assert!(reds > 1000, "the item is visible ({reds} red pixels)");
        assert_eq!(
            out.get_pixel(5, 5),
            Rgba([0, 0, 255, 255]),
            "the person stays"
        );
    }
}
