//! Local stand-ins for the paid providers, used when their keys are not configured (which
//! configuration refuses in production), so that `make run` shows every flow on a fresh
//! checkout: images composed locally, a deterministic assistant, and payments confirmed on a
//! local page.

mod assistant;
mod images;
mod payments;

pub use assistant::SandboxAssistant;
pub use images::SandboxProvider;
pub use payments::SandboxPayments;
