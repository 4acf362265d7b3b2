//! Photo uploads (fitting: person + item; editing: one source), their metadata, and the signed
//! `/media` links that serve stored photos to the owner and to providers.

use std::collections::HashMap;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Duration, Utc};
use diesel_async::AsyncConnection as _;
use futures_util::TryStreamExt as _;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::extractor::AuthUser;
use crate::db::models::{Upload, User};
use crate::db::uploads;
use crate::domain::vocabulary::UploadPurpose;
use crate::error::{AppError, AppResult, Problem};
use crate::http::multipart_guard::{self, Guard};
use crate::media::image_pipeline::{self, Limits, MediaError, Normalized};
use crate::media::pool::PoolError;
use crate::media::signed_url::{self, LinkError};
use crate::media::storage;
use crate::state::AppState;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/fitting/upload").route(web::post().to(fitting_upload)))
        .service(web::resource("/editing/upload").route(web::post().to(editing_upload)))
        .service(
            web::resource("/uploads/{id}")
                .route(web::get().to(get_upload))
                .route(web::delete().to(delete_upload)),
        );
}

/// Outside `/api/v1`: the signed media links.
pub fn media_config(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/media/{key:.+}").route(web::get().to(media)));
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UploadDto {
    pub id: Uuid,
    pub purpose: UploadPurpose,
    /// `image/jpeg`, or `image/png` for photos with transparency.
    pub mime: String,
    pub width: i32,
    pub height: i32,
    pub bytes: i64,
    pub created_at: DateTime<Utc>,
    /// When the photo is erased.
    pub expires_at: DateTime<Utc>,
    /// A signed link to the stored photo; it expires.
    pub url: String,
}

impl UploadDto {
    pub fn of(u: &Upload, state: &AppState) -> Self {
        Self {
            id: u.id,
            purpose: u.purpose,
            mime: u.mime.clone(),
            width: u.width,
            height: u.height,
            bytes: u.bytes,
            created_at: u.created_at,
            expires_at: u.expires_at,
            url: state.media_url(&u.storage_key),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FittingUploadDto {
    pub person: UploadDto,
    pub item: UploadDto,
}

/// Multipart body of a fitting upload.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[expect(
    dead_code,
    reason = "only describes the multipart form in the OpenAPI document"
)]
pub struct FittingUploadForm {
    /// The person's photo (JPEG, PNG or WEBP).
    #[schema(value_type = String, format = Binary, min_length = 1)]
    person: Vec<u8>,
    /// The garment or accessory (JPEG, PNG or WEBP).
    #[schema(value_type = String, format = Binary, min_length = 1)]
    item: Vec<u8>,
}

/// Multipart body of an editing upload.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[expect(
    dead_code,
    reason = "only describes the multipart form in the OpenAPI document"
)]
pub struct EditingUploadForm {
    /// The photo to edit (JPEG, PNG or WEBP).
    #[schema(value_type = String, format = Binary, min_length = 1)]
    image: Vec<u8>,
}

/// Uploads the two photos of a try-on. Both are validated from their bytes (JPEG, PNG, WEBP),
/// normalised (orientation applied, metadata stripped, downscaled) and kept for 24 h.
#[utoipa::path(post, path = "/api/v1/fitting/upload", tag = "uploads", security(("bearer" = []), ("tma" = [])),
    request_body(content = FittingUploadForm, content_type = "multipart/form-data"),
    responses((status = 201, body = FittingUploadDto),
              (status = 400, description = "missing, unknown or repeated fields; `too_many_parts`, `part_header_too_large`, `preamble_too_long`, `invalid_multipart`", body = Problem, content_type = "application/problem+json"),
              (status = 408, description = "`request_timeout`: the body was not received in time", body = Problem, content_type = "application/problem+json"),
              (status = 413, description = "`file_too_large` (one file), `payload_too_large` (the whole request)", body = Problem, content_type = "application/problem+json"),
              (status = 415, description = "`unsupported_media_type`", body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "`image_too_large`, `image_too_small`, `invalid_image`", body = Problem, content_type = "application/problem+json"),
              (status = 429, description = "`rate_limited`", body = Problem, content_type = "application/problem+json")))]
pub async fn fitting_upload(
    req: HttpRequest,
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    body: web::Payload,
) -> AppResult<HttpResponse> {
    limit_uploads(&state, &user).await?;
    let mut files = read_files(&req, body, &["person", "item"], &state).await?;
    let (Some(person), Some(item)) = (files.remove("person"), files.remove("item")) else {
        return Err(AppError::bad_request(
            "missing_field",
            "both `person` and `item` files are required",
        ));
    };
    let (person, item) = tokio::try_join!(
        process("person", person, &state),
        process("item", item, &state)
    )?;
    let ttl = state.settings.media.fitting_upload_ttl_secs;
    let mut stored = store(
        &state,
        user.id,
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
    Ok(HttpResponse::Created().json(FittingUploadDto {
        person: UploadDto::of(&person, &state),
        item: UploadDto::of(&item, &state),
    }))
}

/// Uploads the photo to edit. Validated and normalised like fitting photos; kept with its chat
/// session (30 days after the last message).
#[utoipa::path(post, path = "/api/v1/editing/upload", tag = "uploads", security(("bearer" = []), ("tma" = [])),
    request_body(content = EditingUploadForm, content_type = "multipart/form-data"),
    responses((status = 201, body = UploadDto),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 408, body = Problem, content_type = "application/problem+json"),
              (status = 413, body = Problem, content_type = "application/problem+json"),
              (status = 415, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json"),
              (status = 429, description = "`rate_limited`", body = Problem, content_type = "application/problem+json")))]
pub async fn editing_upload(
    req: HttpRequest,
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    body: web::Payload,
) -> AppResult<HttpResponse> {
    limit_uploads(&state, &user).await?;
    let mut files = read_files(&req, body, &["image"], &state).await?;
    let image = files
        .remove("image")
        .ok_or_else(|| AppError::bad_request("missing_field", "the `image` file is required"))?;
    let image = process("image", image, &state).await?;
    let ttl = state.settings.media.editing_upload_ttl_secs;
    let stored = store(
        &state,
        user.id,
        vec![(image, UploadPurpose::EditingSource, ttl)],
    )
    .await?;
    let upload = stored
        .first()
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("no upload came back")))?;
    Ok(HttpResponse::Created().json(UploadDto::of(upload, &state)))
}

/// Counts an upload request against the user's hourly limit before its body is read.
async fn limit_uploads(state: &AppState, user: &User) -> AppResult<()> {
    let limit = state.settings.limits.uploads_per_user;
    crate::ratelimit::hit(state, "uploads", &user.id.to_string(), limit).await
}

/// One of the user's uploads, with a fresh signed link. Another user's upload is a 404.
#[utoipa::path(get, path = "/api/v1/uploads/{id}", tag = "uploads", security(("bearer" = []), ("tma" = [])),
    params(("id" = Uuid, Path, description = "upload id")),
    responses((status = 200, body = UploadDto), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_upload(
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let mut conn = state.db.get().await?;
    let upload = uploads::find_owned(&mut conn, user.id, *id)
        .await?
        .ok_or_else(|| AppError::not_found("no such upload"))?;
    Ok(HttpResponse::Ok().json(UploadDto::of(&upload, &state)))
}

#[derive(Debug, Deserialize)]
pub struct MediaQuery {
    exp: i64,
    sig: String,
}

/// Serves a stored photo through a signed, expiring link.
pub async fn media(
    state: web::Data<AppState>,
    key: web::Path<String>,
    query: web::Query<MediaQuery>,
) -> AppResult<HttpResponse> {
    let secret = state.settings.media.url_secret.expose_secret().as_bytes();
    let now = Utc::now().timestamp();
    signed_url::verify(secret, &key, query.exp, &query.sig, now).map_err(|e| match e {
        LinkError::BadSignature => {
            AppError::forbidden("invalid_signature", "the link's signature is invalid")
        }
        LinkError::Expired => {
            AppError::forbidden("link_expired", "the link has expired; ask for a new one")
        }
    })?;
    if !storage::is_valid_key(&key) {
        return Err(AppError::not_found("no such media"));
    }
    let bytes = state
        .storage
        .get(&key)
        .await?
        .ok_or_else(|| AppError::not_found("no such media"))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, storage::content_type(&key)))
        .insert_header((
            header::CACHE_CONTROL,
            format!("private, max-age={}", (query.exp - now).max(0)),
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CONTENT_DISPOSITION, "inline"))
        .body(bytes))
}

fn too_large(detail: String) -> AppError {
    AppError::Client {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        code: "file_too_large",
        detail,
    }
}

/// Reads the expected file fields of a multipart body through the guard
/// ([`multipart_guard`]), which bounds the raw body; the per-file cap is checked here.
async fn read_files(
    req: &HttpRequest,
    body: web::Payload,
    expected: &[&'static str],
    state: &AppState,
) -> AppResult<HashMap<&'static str, (Vec<u8>, Option<String>)>> {
    let cap = state.settings.media.upload_max_request_bytes;
    let (mut body, guard) = multipart_guard::open(req.headers(), body, expected.len(), cap)?;
    let result = read_fields(&mut body, &guard, expected, state).await;
    if let Err(AppError::Client {
        code: "file_too_large",
        ..
    }) = &result
    {
        // Read (and drop) the rest of a refused body, still through the guard (so never more
        // than the request cap), so that the client receives the 413 instead of a reset
        // connection.
        while let Ok(Some(mut field)) = body.try_next().await {
            while let Ok(Some(_)) = field.try_next().await {}
        }
    }
    result
}

async fn read_fields(
    body: &mut actix_multipart::Multipart,
    guard: &Guard,
    expected: &[&'static str],
    state: &AppState,
) -> AppResult<HashMap<&'static str, (Vec<u8>, Option<String>)>> {
    let media = &state.settings.media;
    // The guard's reason first: the parser only sees a failed stream.
    let bad_multipart = |e: actix_multipart::MultipartError| match guard.refusal() {
        Some(refusal) => AppError::from(refusal),
        None => AppError::bad_request("invalid_multipart", e.to_string()),
    };
    let mut files = HashMap::new();
    while let Some(mut field) = body.try_next().await.map_err(bad_multipart)? {
        let name = field.name().unwrap_or_default().to_owned();
        let Some(&slot) = expected.iter().find(|e| **e == name) else {
            return Err(AppError::bad_request(
                "unknown_field",
                format!(
                    "unexpected field {name:?}; expected {}",
                    expected.join(", ")
                ),
            ));
        };
        if files.contains_key(slot) {
            return Err(AppError::bad_request(
                "too_many_files",
                format!("field {slot:?} was sent more than once"),
            ));
        }
        let declared_type = field.content_type().map(|m| m.essence_str().to_owned());
        let mut bytes = Vec::new();
        while let Some(chunk) = field.try_next().await.map_err(bad_multipart)? {
            if bytes.len() + chunk.len() > media.upload_max_bytes {
                return Err(too_large(format!(
                    "{slot:?} is larger than {} bytes",
                    media.upload_max_bytes
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        if bytes.is_empty() {
            return Err(AppError::bad_request(
                "empty_file",
                format!("{slot:?} is empty"),
            ));
        }
        files.insert(slot, (bytes, declared_type));
    }
    Ok(files)
}

/// Validates and normalises one photo off the async executor, at most `IMAGE_WORKERS` at once.
async fn process(
    field: &'static str,
    (bytes, declared): (Vec<u8>, Option<String>),
    state: &AppState,
) -> AppResult<Normalized> {
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
                    "invalid_image",
                    format!("{field:?} could not be decoded"),
                ),
                PoolError::Stopped => AppError::Internal(anyhow::anyhow!("image task failed: {e}")),
            }
        })?
        .map_err(|e| media_error(field, e))?;
    if let Some(declared) = declared.filter(|d| d != normalized.source.mime()) {
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
        code: e.code(),
        detail,
    }
}

/// Stores the objects, then inserts their rows in one transaction; objects of a failed insert
/// are removed again.
async fn store(
    state: &AppState,
    user_id: i64,
    photos: Vec<(Normalized, UploadPurpose, u64)>,
) -> AppResult<Vec<Upload>> {
    let now = Utc::now();
    let mut rows = Vec::with_capacity(photos.len());
    for (photo, purpose, ttl) in photos {
        let id = Uuid::new_v4();
        let ext = if photo.mime == "image/png" {
            "png"
        } else {
            "jpg"
        };
        let key = format!("u/{id}.{ext}");
        let bytes = i64::try_from(photo.bytes.len()).map_err(anyhow::Error::from)?;
        state.storage.put(&key, photo.bytes).await?;
        rows.push(Upload {
            id,
            user_id,
            purpose,
            storage_key: key,
            mime: photo.mime.to_owned(),
            width: i32::try_from(photo.width).map_err(anyhow::Error::from)?,
            height: i32::try_from(photo.height).map_err(anyhow::Error::from)?,
            bytes,
            sha256: photo.sha256,
            created_at: now,
            expires_at: now + Duration::seconds(i64::try_from(ttl).unwrap_or(i64::MAX / 4)),
            deleted_at: None,
        });
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

/// Erases one of the user's photos at once (the stored image; the record is marked deleted).
/// Finished generations keep their results; new ones cannot use it (404). A photo a queued or
/// running generation still reads is `upload_in_use` (409).
#[utoipa::path(delete, path = "/api/v1/uploads/{id}", operation_id = "delete_upload", tag = "uploads", security(("bearer" = []), ("tma" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 204, description = "Erased"),
              (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
              (status = 409, description = "`upload_in_use`: a queued or running generation uses it", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn delete_upload(
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    crate::privacy::delete_upload(&state, user.id, *id).await?;
    Ok(HttpResponse::NoContent().finish())
}
