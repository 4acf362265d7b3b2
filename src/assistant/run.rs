//! Running a turn: the model is asked (with the session's photo and recent history), its reply
//! streamed to the user's sockets as it is written, and the turn settled by the outcome.

use crate::domain::ids::UserId;
use std::time::Duration;

use uuid::Uuid;

use super::Reply;
use super::open::PendingTurn;
use super::settle::{self, TurnFailed};
use crate::domain::assistant::{self, Usage};
use crate::error::AppResult;
use crate::providers::openrouter::{AssistantError, AssistantRequest, Delta, FailureKind};
use crate::realtime::{self, Event};
use crate::state::AppState;

/// Asks the model, then settles the turn: completed with its history, or failed and refunded.
pub(super) async fn run(state: &AppState, turn: Box<PendingTurn>) -> AppResult<Reply> {
    let image_url = turn.photo.as_ref().map(|p| state.media_url(&p.storage_key));
    let (deltas, written) = tokio::sync::mpsc::unbounded_channel();
    let previews = tokio::spawn(publish_deltas(
        state.clone(),
        turn.user_id,
        turn.session_id,
        written,
    ));
    let request = AssistantRequest {
        language: turn.language.clone(),
        messages: assistant::build_messages(
            &turn.language,
            &turn.history,
            &turn.message,
            image_url.as_deref(),
        ),
        max_variant_chars: state.settings.generation.edit_prompt_max_chars,
        deltas: Some(deltas),
    };
    // The client bounds itself by the same budget; this only guards against a hung call.
    let budget = Duration::from_secs(state.settings.assistant.turn_timeout_secs + 5);
    let outcome = tokio::time::timeout(budget, state.assistant.complete(&request))
        .await
        .unwrap_or_else(|_| {
            Err(AssistantError {
                kind: FailureKind::Unavailable,
                message: "the turn ran out of time".into(),
                spent: Usage::default(),
                attempts: 0,
            })
        });
    // Closes the previews' channel: the publisher drains what is queued and ends.
    drop(request);
    match outcome {
        Ok(completion) => {
            let reply = settle::complete(state, &turn, completion).await?;
            publish_reply(state, turn.user_id, &reply, previews);
            Ok(reply)
        }
        Err(e) => {
            if e.alerts_operator() {
                tracing::error!(error = %e, "OpenRouter refused our account: an operator must act");
                metrics::counter!("operator_alerts_total", "source" => "openrouter").increment(1);
                crate::alerts::provider_account(state, "openrouter", &e.to_string()).await;
            } else if e.kind == FailureKind::Rejected {
                tracing::error!(error = %e, "OpenRouter rejected our request");
            } else {
                tracing::warn!(error = %e, "chat turn failed");
            }
            settle::failed(state, &turn, e.code(), e.attempts, e.spent).await?;
            Err(TurnFailed::from_code(e.code()).into())
        }
    }
}

/// Pushes the reply's text to the user's sockets while it is written, as `chat.delta` events
/// `{session_id, attempt, text}` (in order; pieces that queued up meanwhile go in one event).
/// Clients append `text` to the reply of `attempt`, and start over when the attempt changes
/// (a retried call); `chat.reply` has the final, checked text.
async fn publish_deltas(
    state: AppState,
    user_id: UserId,
    session_id: Uuid,
    mut written: tokio::sync::mpsc::UnboundedReceiver<Delta>,
) {
    while let Some(first) = written.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = written.try_recv() {
            match batch.last_mut() {
                Some(last) if last.attempt == more.attempt => last.text.push_str(&more.text),
                _ => batch.push(more),
            }
        }
        for delta in batch {
            let event = Event::new(realtime::types::CHAT_DELTA)
                .with("session_id", session_id.to_string())
                .with("attempt", delta.attempt)
                .with("text", delta.text);
            if let Err(e) = realtime::publish(&state, user_id, &event).await {
                tracing::debug!(error = %e, "publishing chat.delta failed");
            }
        }
    }
}

/// Pushes the answer to the user's sockets as `chat.reply` (the fields of the HTTP answer),
/// after the previews of it (`previews` ends once they are out), without holding up the
/// response and without failing the turn.
fn publish_reply(
    state: &AppState,
    user_id: UserId,
    reply: &Reply,
    previews: tokio::task::JoinHandle<()>,
) {
    let usage = serde_json::json!({
        "prompt_tokens": reply.usage.prompt_tokens,
        "completion_tokens": reply.usage.completion_tokens,
    });
    let event = Event::new(realtime::types::CHAT_REPLY)
        .with("session_id", reply.session_id.to_string())
        .with("reply", reply.reply.clone())
        .with("variants", reply.variants.clone())
        .with("usage", usage);
    let state = state.clone();
    tokio::spawn(async move {
        if tokio::time::timeout(Duration::from_secs(2), previews)
            .await
            .is_err()
        {
            tracing::warn!("chat.delta events still queued after 2 s; chat.reply goes out anyway");
        }
        if let Err(e) = realtime::publish(&state, user_id, &event).await {
            tracing::warn!(error = %e, "publishing chat.reply failed");
        }
    });
}
