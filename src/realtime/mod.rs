//! Live progress: events published by any process (API or worker) through Redis pub/sub, and
//! delivered by every API process to the WebSockets of the user they concern.
//!
//! Wire format on Redis: one channel per deployment, `<REDIS_KEY_PREFIX>events`; each message is
//! `<internal user id>:<event JSON>`, and the event JSON is forwarded to the sockets verbatim.
//! Delivery is at most once; a client that (re)connects gets a snapshot of its active generations
//! first, so it never needs an event it missed.

pub mod generations;
pub mod hub;
pub mod ws;

use crate::domain::ids::UserId;
use std::time::Duration;

use anyhow::Context;
use futures_util::future::BoxFuture;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::state::AppState;

pub use hub::Hub;

/// Event types sent to clients. Any other string works too; these are the ones the app knows.
pub mod types {
    pub const SNAPSHOT: &str = "snapshot";
    pub const GENERATION_QUEUED: &str = "generation.queued";
    pub const GENERATION_RUNNING: &str = "generation.running";
    pub const GENERATION_PROGRESS: &str = "generation.progress";
    pub const GENERATION_SUCCEEDED: &str = "generation.succeeded";
    pub const GENERATION_FAILED: &str = "generation.failed";
    pub const CHAT_REPLY: &str = "chat.reply";
    pub const CHAT_DELTA: &str = "chat.delta";
    /// The answer to a client's `{"type":"ping"}`.
    pub const PONG: &str = "pong";
}

/// One message to a client: serialised flat, `{"type": "generation.running", ...data}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub type_: String,
    /// The other fields; a `type` key in here is ignored (the event's own type wins).
    pub data: Map<String, Value>,
}

impl Event {
    /// An event of any type, without fields yet.
    pub fn new(type_: impl Into<String>) -> Self {
        Self {
            type_: type_.into(),
            data: Map::new(),
        }
    }

    /// Adds (or replaces) one field: `Event::new("generation.queued").with("position", 3)`.
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.data.insert(key.into(), value.into());
        self
    }

    /// An event whose fields are those of `data`, which must serialise to a JSON object.
    pub fn from_serialize(type_: impl Into<String>, data: &impl Serialize) -> anyhow::Result<Self> {
        match serde_json::to_value(data)? {
            Value::Object(data) => Ok(Self {
                type_: type_.into(),
                data,
            }),
            other => anyhow::bail!("event data must be a JSON object, not {other}"),
        }
    }

    pub fn to_json(&self) -> String {
        // Serialising a map of JSON values with string keys cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let fields = self.data.iter().filter(|(k, _)| k.as_str() != "type");
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("type", &self.type_)?;
        for (k, v) in fields {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut data = Map::deserialize(deserializer)?;
        match data.remove("type") {
            Some(Value::String(type_)) => Ok(Self { type_, data }),
            _ => Err(D::Error::custom("an event needs a string `type`")),
        }
    }
}

/// The Redis channel of this deployment's events.
pub fn channel(redis_key_prefix: &str) -> String {
    format!("{redis_key_prefix}events")
}

const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);

/// Sends `event` to every socket of `user_id` (internal id), on whichever API process it is.
/// A failure only means the event is lost (the next snapshot carries the state): callers log it
/// and carry on, they never fail their own operation because of it.
pub async fn publish(state: &AppState, user_id: UserId, event: &Event) -> anyhow::Result<()> {
    send(state, format!("{user_id}:{}", event.to_json())).await?;
    metrics::counter!("ws_events_published_total").increment(1);
    Ok(())
}

/// One message on the deployment's channel (see [`hub::Hub::dispatch_payload`]).
async fn send(state: &AppState, payload: String) -> anyhow::Result<()> {
    let channel = channel(&state.settings.redis_key_prefix);
    tokio::time::timeout(PUBLISH_TIMEOUT, async {
        let mut conn = state.redis.get().await.context("Redis pool")?;
        let _receivers: i64 = deadpool_redis::redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(&payload)
            .query_async(&mut *conn)
            .await
            .context("PUBLISH")?;
        anyhow::Ok(())
    })
    .await
    .map_err(|_| anyhow::anyhow!("publishing to the event channel timed out"))?
}

/// Closes every socket of `user_id` (internal id), on whichever API process it is, with 1008
/// "account blocked": a blocked user's requests are refused at once, and so are their sockets.
pub async fn disconnect_blocked(state: &AppState, user_id: UserId) -> anyhow::Result<()> {
    send(state, format!("{user_id}:{}", hub::BLOCKED)).await
}

/// What a client is sent on connect (and after the hub lost Redis for a while): the user's
/// active generations, each as the generations API shows it.
pub trait SnapshotSource: Send + Sync {
    fn active<'a>(
        &'a self,
        state: &'a AppState,
        user_id: UserId,
    ) -> BoxFuture<'a, anyhow::Result<Vec<Value>>>;
}

/// The source until the generations module registers its own with
/// [`Hub::set_snapshot_source`]: nothing is active.
pub struct NoActiveGenerations;

impl SnapshotSource for NoActiveGenerations {
    fn active<'a>(
        &'a self,
        _: &'a AppState,
        _: UserId,
    ) -> BoxFuture<'a, anyhow::Result<Vec<Value>>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// The snapshot message of `user_id`.
pub async fn snapshot(state: &AppState, user_id: UserId) -> anyhow::Result<Event> {
    let source = state.hub.snapshot_source();
    let generations = source.active(state, user_id).await?;
    Ok(Event::new(types::SNAPSHOT).with("generations", generations))
}

/// Starts this process's Redis subscriber and closes every socket on SIGINT/SIGTERM. Called by
/// `Application::build`; `atelier worker` only publishes and never calls it.
pub fn start(state: &AppState) {
    state.hub.start_subscriber(
        state.settings.redis_url.clone(),
        &state.settings.redis_key_prefix,
    );
    let hub = std::sync::Arc::downgrade(&state.hub);
    tokio::spawn(async move {
        crate::shutdown::signal().await;
        if let Some(hub) = hub.upgrade() {
            hub.shutdown();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialise_flat_with_type_first() {
        let e = Event::new("generation.queued")
            .with("generation_id", "g1")
            .with("position", 3)
            .with("type", "ignored");
        assert_eq!(
            e.to_json(),
            r#"{"type":"generation.queued","generation_id":"g1","position":3}"#
        );
        let back: Event = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(back.type_, "generation.queued");
        assert_eq!(back.data["position"], 3);
        assert!(serde_json::from_str::<Event>(r#"{"position":3}"#).is_err());
    }

    #[test]
    fn events_from_structs() {
        #[derive(Serialize)]
        struct Failed {
            refunded: bool,
        }
        let e = Event::from_serialize("generation.failed", &Failed { refunded: true }).unwrap();
        assert_eq!(
            e.to_json(),
            r#"{"type":"generation.failed","refunded":true}"#
        );
        assert!(Event::from_serialize("x", &3).is_err());
    }
}
