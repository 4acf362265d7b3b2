//! Photo uploads as use cases: each photo is validated from its bytes and normalised off the
//! executor, then stored (objects first, then their rows in one transaction). Reading the
//! multipart body, and the hourly limit counted before it, stay with the route.

use crate::domain::ids::UserId;
use actix_web::http::StatusCode;
use chrono::{DateTime, Duration, Utc};
use diesel_async::AsyncConnection as _;
use uuid::Uuid;

use crate::db::models::Upload;
use crate::db::uploads;
use crate::domain::vocabulary::UploadPurpose;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::media::image_pipeline::{self, Limits, MediaError, Normalized};
use crate::media::pool::PoolError;
use crate::state::AppState;

/// One received photo file: the form field it came in, its bytes, and the type the client
/// declared (only logged: the type is read from the bytes). No `Debug`: a log must never dump
/// someone's photo.
pub struct PhotoFile {
    pub field: &'static str,
    pub bytes: Vec<u8>,
    pub declared_type: Option<String>,
}

/// The two photos of a try-on, kept `FITTING_UPLOAD_TTL_SECS`.
pub async fn upload_fitting(
    state: &AppState,
    user_id: UserId,
    person: PhotoFile,
    item: PhotoFile,
) -> AppResult<(Upload, Upload)> {
    let (person, item) = tokio::try_join!(process(person, state), process(item, state))?;
    let ttl = state.settings.media.fitting_upload_ttl_secs;
    let mut stored = store(
        state,
        user_id,
        vec![
            (person, UploadPurpose::FittingPerson, ttl),
            (item, UploadPurpose::FittingItem, ttl),
        ],
    )
    .await?
    .into_iter();
    let (Some(person), Some(item)) = (stored.next(), stored.next()) else {
        return Err(AppError::Internal(anyhow::anyhow!(
            "two uploads were stored, fewer came back"
        )));
    };
    Ok((person, item))
}

/// The photo to edit, kept `EDITING_UPLOAD_TTL_SECS` (and with its chat session).
pub async fn upload_editing(
    state: &AppState,
    user_id: UserId,
    image: PhotoFile,
) -> AppResult<Upload> {
    let image = process(image, state).await?;
    let ttl = state.settings.media.editing_upload_ttl_secs;
    store(
        state,
        user_id,
        vec![(image, UploadPurpose::EditingSource, ttl)],
    )
    .await?
    .into_iter()
    .next()
    .ok_or_else(|| AppError::Internal(anyhow::anyhow!("no upload came back")))
}

/// One of the user's uploads; another user's, or an erased one, is a 404.
pub async fn get(state: &AppState, user_id: UserId, id: Uuid) -> AppResult<Upload> {
    let mut conn = state.db.get().await?;
    uploads::find_owned(&mut conn, user_id, id)
        .await?
        .ok_or_else(|| AppError::not_found("no such upload"))
}

/// Validates and normalises one photo off the async executor, at most `IMAGE_WORKERS` at once.
async fn process(file: PhotoFile, state: &AppState) -> AppResult<Normalized> {
    let PhotoFile {
        field,
        bytes,
        declared_type,
    } = file;
    let m = &state.settings.media;
    let limits = Limits {
        max_pixels: m.image_max_pixels,
        max_side: m.image_max_side,
        min_side: m.image_min_side,
        store_max_side: m.image_store_max_side,
        ..Limits::default()
    };
    let normalized = state
        .images
        .run(move || image_pipeline::normalize(&bytes, &limits))
        .await
        .map_err(|e| {
            // A decoder panic on hostile bytes is the file's fault, not ours; it is still logged.
            tracing::error!(field, error = %e, "image task failed");
            match e {
                PoolError::Panicked => AppError::unprocessable(
                    ErrorCode::InvalidImage,
                    format!("{field:?} could not be decoded"),
                ),
                PoolError::Stopped => AppError::Internal(anyhow::anyhow!("image task failed: {e}")),
            }
        })?
        .map_err(|e| media_error(field, e))?;
    if let Some(declared) = declared_type.filter(|d| d != normalized.source.mime()) {
        tracing::info!(
            field,
            declared,
            detected = normalized.source.mime(),
            "content type differs from the bytes"
        );
    }
    Ok(normalized)
}

fn media_error(field: &str, e: MediaError) -> AppError {
    let status = match e {
        MediaError::Unsupported { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    let detail = match &e {
        MediaError::Unsupported { detected } => format!(
            "{field:?} is {}; accepted: image/jpeg, image/png, image/webp",
            detected.as_deref().unwrap_or("not a recognised image")
        ),
        other => format!("{field:?}: {other}"),
    };
    AppError::Client {
        status,
        code: ErrorCode::from(&e),
        detail,
    }
}

/// Stores the objects, then inserts their rows in one transaction; objects of a failed insert
/// are removed again.
async fn store(
    state: &AppState,
    user_id: UserId,
    photos: Vec<(Normalized, UploadPurpose, u64)>,
) -> AppResult<Vec<Upload>> {
    let now = Utc::now();
    let mut rows = Vec::with_capacity(photos.len());
    for (photo, purpose, ttl) in photos {
        let (row, bytes) = row(photo, user_id, purpose, now, ttl)?;
        state.storage.put(&row.storage_key, bytes).await?;
        rows.push(row);
    }
    let mut conn = state.db.get().await?;
    let inserted = conn
        .transaction(async |conn| {
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push(uploads::insert(conn, row).await?);
            }
            Ok::<_, AppError>(out)
        })
        .await;
    if inserted.is_err() {
        for row in &rows {
            let _ = state.storage.delete(&row.storage_key).await;
        }
    }
    inserted
}

/// The row of a new upload under a fresh id and storage key, and the bytes to store there.
fn row(
    photo: Normalized,
    user_id: UserId,
    purpose: UploadPurpose,
    now: DateTime<Utc>,
    ttl: u64,
) -> AppResult<(Upload, Vec<u8>)> {
    let id = Uuid::new_v4();
    let ext = if photo.mime == "image/png" {
        "png"
    } else {
        "jpg"
    };
    let row = Upload {
        id,
        user_id,
        purpose,
        storage_key: format!("u/{id}.{ext}"),
        mime: photo.mime.to_owned(),
        width: i32::try_from(photo.width).map_err(anyhow::Error::from)?,
        height: i32::try_from(photo.height).map_err(anyhow::Error::from)?,
        bytes: i64::try_from(photo.bytes.len()).map_err(anyhow::Error::from)?,
        sha256: photo.sha256,
        created_at: now,
        expires_at: now + Duration::seconds(i64::try_from(ttl).unwrap_or(i64::MAX / 4)),
        deleted_at: None,
    };
    Ok((row, photo.bytes))
}
