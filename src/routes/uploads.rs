//! Photo uploads (fitting: person + item; editing: one source), their metadata, and the signed
//! `/media` links that serve stored photos to the owner and to providers.

use std::collections::HashMap;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt as _;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::extractor::AuthUser;
use crate::db::models::{Upload, User};
use crate::domain::vocabulary::UploadPurpose;
use crate::error::{AppError, AppResult, ErrorCode, Problem};
use crate::http::multipart_guard::{self, Guard};
use crate::media::signed_url::{self, LinkError};
use crate::media::storage;
use crate::state::AppState;
use crate::uploads::{self, PhotoFile};

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
              (status = 400, description = "`missing_field`, `unknown_field`, `too_many_files` (a field sent twice), `empty_file`; `too_many_parts`, `part_header_too_large`, `preamble_too_long`, `epilogue_too_long`, `invalid_multipart`", body = Problem),
              (status = 408, description = "`request_timeout`: the body was not received in time", body = Problem),
              (status = 413, description = "`file_too_large` (one file), `payload_too_large` (the whole request)", body = Problem),
              (status = 415, description = "`unsupported_media_type`", body = Problem),
              (status = 422, description = "`image_too_large`, `image_too_small`, `invalid_image`", body = Problem),
              (status = 429, description = "`rate_limited`", body = Problem)))]
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
            ErrorCode::MissingField,
            "both `person` and `item` files are required",
        ));
    };
    let (person, item) = uploads::upload_fitting(&state, user.id, person, item).await?;
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
              (status = 400, body = Problem),
              (status = 408, body = Problem),
              (status = 413, body = Problem),
              (status = 415, body = Problem),
              (status = 422, body = Problem),
              (status = 429, description = "`rate_limited`", body = Problem)))]
pub async fn editing_upload(
    req: HttpRequest,
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    body: web::Payload,
) -> AppResult<HttpResponse> {
    limit_uploads(&state, &user).await?;
    let mut files = read_files(&req, body, &["image"], &state).await?;
    let image = files.remove("image").ok_or_else(|| {
        AppError::bad_request(ErrorCode::MissingField, "the `image` file is required")
    })?;
    let upload = uploads::upload_editing(&state, user.id, image).await?;
    Ok(HttpResponse::Created().json(UploadDto::of(&upload, &state)))
}

/// Counts an upload request against the user's hourly limit before its body is read.
async fn limit_uploads(state: &AppState, user: &User) -> AppResult<()> {
    let limit = state.settings.limits.uploads_per_user;
    crate::ratelimit::hit(state, "uploads", &user.id.to_string(), limit).await
}

/// One of the user's uploads, with a fresh signed link. Another user's upload is a 404.
#[utoipa::path(get, path = "/api/v1/uploads/{id}", tag = "uploads", security(("bearer" = []), ("tma" = [])),
    params(("id" = Uuid, Path, description = "upload id")),
    responses((status = 200, body = UploadDto), (status = 404, body = Problem)))]
pub async fn get_upload(
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let upload = uploads::get(&state, user.id, *id).await?;
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
        LinkError::BadSignature => AppError::forbidden(
            ErrorCode::InvalidSignature,
            "the link's signature is invalid",
        ),
        LinkError::Expired => AppError::forbidden(
            ErrorCode::LinkExpired,
            "the link has expired; ask for a new one",
        ),
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
        code: ErrorCode::FileTooLarge,
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
) -> AppResult<HashMap<&'static str, PhotoFile>> {
    let cap = state.settings.media.upload_max_request_bytes;
    let (mut body, guard) = multipart_guard::open(req.headers(), body, expected.len(), cap)?;
    let result = read_fields(&mut body, &guard, expected, state).await;
    if let Err(AppError::Client {
        code: ErrorCode::FileTooLarge,
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
) -> AppResult<HashMap<&'static str, PhotoFile>> {
    let mut files = HashMap::new();
    while let Some(field) = body.try_next().await.map_err(|e| bad_multipart(guard, e))? {
        let name = field.name().unwrap_or_default().to_owned();
        let Some(&slot) = expected.iter().find(|e| **e == name) else {
            return Err(AppError::bad_request(
                ErrorCode::UnknownField,
                format!(
                    "unexpected field {name:?}; expected {}",
                    expected.join(", ")
                ),
            ));
        };
        if files.contains_key(slot) {
            return Err(AppError::bad_request(
                ErrorCode::TooManyFiles,
                format!("field {slot:?} was sent more than once"),
            ));
        }
        let max = state.settings.media.upload_max_bytes;
        files.insert(slot, read_file(field, slot, guard, max).await?);
    }
    Ok(files)
}

/// The guard's reason first: the parser only sees a failed stream.
fn bad_multipart(guard: &Guard, e: actix_multipart::MultipartError) -> AppError {
    match guard.refusal() {
        Some(refusal) => AppError::from(refusal),
        None => AppError::bad_request(ErrorCode::InvalidMultipart, e.to_string()),
    }
}

/// Reads one file field of at most `max` bytes; an empty one is refused.
async fn read_file(
    mut field: actix_multipart::Field,
    slot: &'static str,
    guard: &Guard,
    max: usize,
) -> AppResult<PhotoFile> {
    let declared_type = field.content_type().map(|m| m.essence_str().to_owned());
    let mut bytes = Vec::new();
    while let Some(chunk) = field
        .try_next()
        .await
        .map_err(|e| bad_multipart(guard, e))?
    {
        if bytes.len() + chunk.len() > max {
            return Err(too_large(format!("{slot:?} is larger than {max} bytes")));
        }
        bytes.extend_from_slice(&chunk);
    }
    if bytes.is_empty() {
        return Err(AppError::bad_request(
            ErrorCode::EmptyFile,
            format!("{slot:?} is empty"),
        ));
    }
    Ok(PhotoFile {
        field: slot,
        bytes,
        declared_type,
    })
}

/// Erases one of the user's photos at once (the stored image; the record is marked deleted).
/// Finished generations keep their results; new ones cannot use it (404). A photo a queued or
/// running generation still reads is `upload_in_use` (409).
#[utoipa::path(delete, path = "/api/v1/uploads/{id}", operation_id = "delete_upload", tag = "uploads", security(("bearer" = []), ("tma" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 204, description = "Erased"),
              (status = 404, body = crate::error::Problem),
              (status = 409, description = "`upload_in_use`: a queued or running generation uses it", body = crate::error::Problem)))]
pub async fn delete_upload(
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    crate::privacy::delete_upload(&state, user.id, *id).await?;
    Ok(HttpResponse::NoContent().finish())
}
