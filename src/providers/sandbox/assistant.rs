//! The assistant without an OpenRouter key (refused in production): it answers at once and
//! deterministically, streaming its reply word by word as a model would.

use crate::domain::assistant::{self, Usage, estimate_tokens};
use crate::providers::{Assistant, AssistantError, AssistantRequest, BoxFuture, Completion, Delta};

/// Answers at once and deterministically from the user's message (see
/// [`assistant::sandbox_reply`]), so that `make run` shows the whole flow without a key.
#[derive(Debug, Clone, Copy, Default)]
pub struct SandboxAssistant;

impl Assistant for SandboxAssistant {
    fn model(&self) -> &str {
        "sandbox"
    }

    fn complete<'a>(
        &'a self,
        req: &'a AssistantRequest,
    ) -> BoxFuture<'a, Result<Completion, AssistantError>> {
        Box::pin(async move {
            let message = req.messages.last().map_or("", |m| m.text.as_str());
            let reply = assistant::sandbox_reply(&req.language, message, req.max_variant_chars);
            // Written out word by word, as a streaming model would, so `chat.delta` can be seen.
            if let Some(tx) = &req.deltas {
                for word in reply.reply.split_inclusive(' ') {
                    let _ = tx.send(Delta {
                        attempt: 1,
                        text: word.to_owned(),
                    });
                }
            }
            let prompt_tokens = req.messages.iter().map(|m| estimate_tokens(&m.text)).sum();
            Ok(Completion {
                usage: Usage {
                    prompt_tokens,
                    completion_tokens: estimate_tokens(&reply.to_json()),
                    cost_usd_micros: 0,
                },
                reply,
                attempts: 1,
            })
        })
    }
}
