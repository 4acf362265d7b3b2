//! Uploads, image limits, storage and signed media links (`STORAGE_*`, `MEDIA_URL_*`,
//! `UPLOAD_*`, `IMAGE_*`, retention).

use secrecy::SecretString;

use super::ConfigError;
use super::env::{Env, bad};

/// Uploads, image limits, storage and signed media links.
#[derive(Debug, Clone)]
pub struct MediaSettings {
    pub storage_dir: String,
    /// `s3://<bucket>[/<prefix>]`: S3 (or compatible) instead of `storage_dir`.
    pub storage_url: Option<String>,
    pub url_secret: SecretString,
    pub url_ttl_secs: u64,
    pub upload_max_bytes: usize,
    pub upload_max_request_bytes: usize,
    pub image_max_pixels: u64,
    pub image_max_side: u32,
    pub image_min_side: u32,
    pub image_store_max_side: u32,
    /// Photos decoded at once; bounds memory (a 12 MP photo takes ~36 MB decoded).
    pub image_workers: usize,
    pub fitting_upload_ttl_secs: u64,
    pub editing_upload_ttl_secs: u64,
    /// Finished generations (row and result image) are erased this many days after creation.
    pub result_retention_days: u32,
    pub sweep_interval_secs: u64,
}

impl MediaSettings {
    /// `url_secret` is `MEDIA_URL_SECRET` or the development default, decided by the caller
    /// (which also decides whether the default may stand).
    pub(super) fn read(env: &Env<'_>, url_secret: SecretString) -> Result<Self, ConfigError> {
        let upload_max_bytes: usize = env.parse("UPLOAD_MAX_BYTES", 5 * 1024 * 1024)?;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Self {
            storage_url: env.string("STORAGE_URL"),
            storage_dir: env.string_or("STORAGE_DIR", "data/media"),
            url_secret,
            url_ttl_secs: env.parse("MEDIA_URL_TTL_SECS", 3600)?,
            upload_max_bytes,
            upload_max_request_bytes: env
                .parse("UPLOAD_MAX_REQUEST_BYTES", 2 * upload_max_bytes + 64 * 1024)?,
            image_max_pixels: env.parse("IMAGE_MAX_PIXELS", 40_000_000)?,
            image_max_side: env.parse("IMAGE_MAX_SIDE", 8192)?,
            image_min_side: env.parse("IMAGE_MIN_SIDE", 256)?,
            image_store_max_side: env.parse("IMAGE_STORE_MAX_SIDE", 2048)?,
            image_workers: env.parse("IMAGE_WORKERS", cores)?,
            fitting_upload_ttl_secs: env.parse("FITTING_UPLOAD_TTL_SECS", 86_400)?,
            editing_upload_ttl_secs: env.parse("EDITING_UPLOAD_TTL_SECS", 30 * 86_400)?,
            result_retention_days: env.parse("RESULT_RETENTION_DAYS", 30)?,
            sweep_interval_secs: env.parse("SWEEP_INTERVAL_SECS", 300)?,
        })
    }

    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.upload_max_bytes == 0 || self.upload_max_request_bytes < self.upload_max_bytes {
            return Err(bad(
                "UPLOAD_MAX_REQUEST_BYTES",
                "must be at least UPLOAD_MAX_BYTES (and that above 0)",
            ));
        }
        if self.image_workers == 0 {
            return Err(bad("IMAGE_WORKERS", "must be at least 1"));
        }
        if self.image_min_side == 0
            || self.image_store_max_side < self.image_min_side
            || self.image_max_side < self.image_min_side
        {
            return Err(bad(
                "IMAGE_STORE_MAX_SIDE",
                "image sides must satisfy 0 < IMAGE_MIN_SIDE <= IMAGE_STORE_MAX_SIDE, IMAGE_MAX_SIDE",
            ));
        }
        if self.result_retention_days == 0 {
            return Err(bad("RESULT_RETENTION_DAYS", "must be at least 1"));
        }
        if self.url_ttl_secs == 0 || self.sweep_interval_secs == 0 {
            return Err(bad(
                "MEDIA_URL_TTL_SECS",
                "MEDIA_URL_TTL_SECS and SWEEP_INTERVAL_SECS must be at least 1",
            ));
        }
        Ok(())
    }
}
