//! Object storage through `object_store`: a local directory by default. Keys look like
//! `u/<uuid>.jpg`; nothing personal is in a key.

use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};

#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
}

impl Storage {
    /// A store rooted at `dir` (created if missing).
    pub fn local(dir: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the storage directory {dir}"))?;
        let fs = LocalFileSystem::new_with_prefix(dir)
            .with_context(|| format!("opening storage at {dir}"))?;
        Ok(Self {
            store: Arc::new(fs),
        })
    }

    /// The store `url` names: `s3://<bucket>[/<prefix>]` for S3 or an S3-compatible service
    /// (credentials, region and endpoint from the standard `AWS_*` variables, e.g.
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`), which needs the
    /// `s3` cargo feature.
    pub fn from_url(url: &str) -> anyhow::Result<Self> {
        let rest = url.strip_prefix("s3://").with_context(|| {
            format!("STORAGE_URL {url:?}: only s3://<bucket>[/<prefix>] is known")
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        anyhow::ensure!(!bucket.is_empty(), "STORAGE_URL {url:?} names no bucket");
        s3(bucket, prefix.trim_matches('/'))
    }

    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
        self.store
            .put(&path(key)?, PutPayload::from(bytes))
            .await
            .with_context(|| format!("storing {key}"))?;
        Ok(())
    }

    /// The object's bytes, or `None` when it does not exist (never stored, or erased).
    pub async fn get(&self, key: &str) -> anyhow::Result<Option<Bytes>> {
        match self.store.get(&path(key)?).await {
            Ok(result) => Ok(Some(result.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {key}")),
        }
    }

    /// Deletes the object; deleting a missing object succeeds (sweeps are idempotent).
    pub async fn delete(&self, key: &str) -> anyhow::Result<()> {
        match self.store.delete(&path(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("deleting {key}")),
        }
    }
}

#[cfg(feature = "s3")]
fn s3(bucket: &str, prefix: &str) -> anyhow::Result<Storage> {
    let store = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .build()
        .context("configuring S3 storage")?;
    let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
        Arc::new(store)
    } else {
        Arc::new(object_store::prefix::PrefixStore::new(store, prefix))
    };
    Ok(Storage { store })
}

#[cfg(not(feature = "s3"))]
fn s3(_bucket: &str, _prefix: &str) -> anyhow::Result<Storage> {
    anyhow::bail!("this build has no S3 support: build with `cargo build --release --features s3`")
}

/// Only keys we generate are valid: `[a-z0-9]/[0-9a-f-].(jpg|png)`-like, no `..`, no absolute paths.
pub fn is_valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 128
        && !key.contains("..")
        && !key.starts_with('/')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'.' | b'_'))
}

fn path(key: &str) -> anyhow::Result<Path> {
    anyhow::ensure!(is_valid_key(key), "invalid storage key {key:?}");
    Path::parse(key).with_context(|| format!("invalid storage key {key:?}"))
}

/// The content type of a stored key, from the extension we gave it.
pub fn content_type(key: &str) -> &'static str {
    match key.rsplit('.').next() {
        Some("jpg") => "image/jpeg",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod url_tests {
    use super::*;

    #[test]
    fn storage_urls_are_checked() {
        let err = |url: &str| Storage::from_url(url).err().map(|e| e.to_string());
        assert!(err("gs://bucket").unwrap().contains("only s3://"));
        assert!(err("s3://").unwrap().contains("no bucket"));
        #[cfg(not(feature = "s3"))]
        assert!(err("s3://bucket/media").unwrap().contains("--features s3"));
    }
}
