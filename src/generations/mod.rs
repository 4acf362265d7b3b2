//! Generations as use cases, below the HTTP routes and the jobs: starting a try-on or an
//! edit (charged once), canceling one that has not started, failing one for good (refunded),
//! and waking its job when the provider calls back.

mod cancel;
mod fail;
mod start;
mod wake;

pub use cancel::{cancel, cancel_queued};
pub use fail::{announce_failed, fail_and_refund};
pub use start::{NewGeneration, start};
pub use wake::wake_task;
