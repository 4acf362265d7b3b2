//! Media: the image validation pipeline, the free-tier watermark, object storage and the
//! signed links through which clients and providers fetch private media.

pub mod image_pipeline;
pub mod pool;
pub mod signed_url;
pub mod storage;
pub mod watermark;
