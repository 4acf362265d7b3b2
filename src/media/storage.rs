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
