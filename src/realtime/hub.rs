//! The per-process hub: which local sockets belong to which user, one Redis subscriber that
//! feeds them (reconnecting with backoff while Redis is away), and the shutdown signal.
//! Sessions get events through a small bounded queue; a socket too slow to drain it is dropped
//! (its client reconnects and gets a fresh snapshot) rather than slowing everyone else.

use crate::domain::ids::UserId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, Weak};
use std::time::Duration;

use deadpool_redis::redis;
use futures_util::StreamExt as _;
use rand::Rng as _;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{mpsc, watch};

use super::{NoActiveGenerations, SnapshotSource};
use crate::config::WsSettings;

/// Events buffered per socket before it counts as too slow.
const QUEUE_PER_SOCKET: usize = 64;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often the subscriber checks that its Redis connection still answers.
const REDIS_HEALTH_INTERVAL: Duration = Duration::from_secs(15);
const REDIS_HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

/// The pub/sub message body that closes a user's sockets (an event body is a JSON object).
pub(super) const BLOCKED: &str = "blocked";

/// What the hub sends to one session.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// An event's JSON, sent as one text frame.
    Event(Arc<str>),
    /// Events may have been lost (Redis was away): send a fresh snapshot.
    Resync,
    /// The account was blocked: close the socket.
    Blocked,
}

struct Socket {
    id: u64,
    tx: mpsc::Sender<Outbound>,
}

pub struct Hub {
    settings: WsSettings,
    sockets: Mutex<HashMap<UserId, Vec<Socket>>>,
    next_id: AtomicU64,
    snapshot: RwLock<Arc<dyn SnapshotSource>>,
    closing: watch::Sender<bool>,
    subscriber_started: AtomicBool,
    /// Whether the subscriber currently holds a live subscription (for tests and readiness).
    subscribed: watch::Sender<bool>,
}

/// Why a socket was not registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The user already holds `WS_MAX_CONNECTIONS_PER_USER` sockets on this process.
    TooManyConnections,
    ShuttingDown,
}

/// A registered socket: its event queue; it leaves the hub when dropped.
pub struct Registration {
    hub: Arc<Hub>,
    user_id: UserId,
    id: u64,
    pub events: mpsc::Receiver<Outbound>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.remove(self.user_id, self.id);
        metrics::gauge!("ws_connections").decrement(1.0);
    }
}

impl Hub {
    pub fn new(settings: WsSettings) -> Self {
        Self {
            settings,
            sockets: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            snapshot: RwLock::new(Arc::new(NoActiveGenerations)),
            closing: watch::channel(false).0,
            subscriber_started: AtomicBool::new(false),
            subscribed: watch::channel(false).0,
        }
    }

    pub fn settings(&self) -> &WsSettings {
        &self.settings
    }

    /// The same hub with `source` as its snapshot source, for `AppState::build`:
    /// `Hub::new(settings.ws.clone()).with_snapshot_source(Arc::new(ActiveGenerations))`.
    #[must_use]
    pub fn with_snapshot_source(self, source: Arc<dyn SnapshotSource>) -> Self {
        self.set_snapshot_source(source);
        self
    }

    /// Replaces the snapshot source (the default reports no active generations). The generations
    /// module registers its own once, in `AppState::build` (see [`Hub::with_snapshot_source`]).
    pub fn set_snapshot_source(&self, source: Arc<dyn SnapshotSource>) {
        *self
            .snapshot
            .write()
            .unwrap_or_else(PoisonError::into_inner) = source;
    }

    pub fn snapshot_source(&self) -> Arc<dyn SnapshotSource> {
        self.snapshot
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<UserId, Vec<Socket>>> {
        self.sockets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a socket of `user_id`, unless the user is at the cap or the process is stopping.
    pub fn register(self: &Arc<Self>, user_id: UserId) -> Result<Registration, Refused> {
        if self.is_closing() {
            return Err(Refused::ShuttingDown);
        }
        let (tx, events) = mpsc::channel(QUEUE_PER_SOCKET);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut sockets = self.lock();
            let mine = sockets.entry(user_id).or_default();
            if mine.len() >= self.settings.max_connections_per_user {
                return Err(Refused::TooManyConnections);
            }
            mine.push(Socket { id, tx });
        }
        metrics::gauge!("ws_connections").increment(1.0);
        Ok(Registration {
            hub: self.clone(),
            user_id,
            id,
            events,
        })
    }

    fn remove(&self, user_id: UserId, id: u64) {
        let mut sockets = self.lock();
        if let Some(mine) = sockets.get_mut(&user_id) {
            mine.retain(|s| s.id != id);
            if mine.is_empty() {
                sockets.remove(&user_id);
            }
        }
    }

    /// Sockets open on this process, in all.
    pub fn connections(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    /// Hands an event to the local sockets of `user_id`. A socket whose queue is full is dropped
    /// from the hub, which ends its session (the client reconnects and gets a snapshot).
    pub fn dispatch(&self, user_id: UserId, message: Outbound) {
        let mut sockets = self.lock();
        let Some(mine) = sockets.get_mut(&user_id) else {
            return;
        };
        mine.retain(|socket| match socket.tx.try_send(message.clone()) {
            Ok(()) => {
                metrics::counter!("ws_events_delivered_total").increment(1);
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics::counter!("ws_sockets_dropped_total", "reason" => "lagging").increment(1);
                tracing::info!(%user_id, "dropping a WebSocket that does not keep up");
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        if mine.is_empty() {
            sockets.remove(&user_id);
        }
    }

    /// Asks every local socket to send a fresh snapshot.
    fn resync_all(&self) {
        let users: Vec<UserId> = self.lock().keys().copied().collect();
        for user_id in users {
            self.dispatch(user_id, Outbound::Resync);
        }
    }

    /// Handles one pub/sub message, `<user id>:<event JSON>`, or `<user id>:blocked`
    /// ([`super::disconnect_blocked`]).
    pub fn dispatch_payload(&self, payload: &[u8]) {
        let parsed = std::str::from_utf8(payload).ok().and_then(|text| {
            let (user, json) = text.split_once(':')?;
            Some((UserId(user.parse::<i64>().ok()?), json))
        });
        match parsed {
            Some((user_id, BLOCKED)) => self.dispatch(user_id, Outbound::Blocked),
            Some((user_id, json)) => self.dispatch(user_id, Outbound::Event(Arc::from(json))),
            None => tracing::warn!(len = payload.len(), "ignoring a malformed event message"),
        }
    }

    pub fn is_closing(&self) -> bool {
        *self.closing.borrow()
    }

    /// Resolves once [`Hub::shutdown`] has been called (or the hub is gone).
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Closes every local socket (1001 Going Away), refuses new ones, stops the subscriber.
    pub fn shutdown(&self) {
        self.closing.send_replace(true);
    }

    /// A receiver of whether the Redis subscription is live.
    pub fn subscribed(&self) -> watch::Receiver<bool> {
        self.subscribed.subscribe()
    }

    /// Spawns the Redis subscriber of this process (once; later calls do nothing). It holds the
    /// hub weakly and stops when the hub is dropped or shut down.
    pub fn start_subscriber(self: &Arc<Self>, redis_url: SecretString, key_prefix: &str) {
        if self.subscriber_started.swap(true, Ordering::SeqCst) {
            return;
        }
        let channel = super::channel(key_prefix);
        let hub = Arc::downgrade(self);
        let closing = self.closing();
        tokio::spawn(subscribe_loop(hub, redis_url, channel, closing));
    }
}

async fn subscribe_loop(
    hub: Weak<Hub>,
    url: SecretString,
    channel: String,
    mut closing: watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut lost_once = false;
    loop {
        if *closing.borrow() {
            return;
        }
        let outcome = tokio::select! {
            outcome = subscribe_once(&hub, &url, &channel, lost_once) => outcome,
            _ = closing.wait_for(|c| *c) => return,
        };
        let Some(hub_alive) = hub.upgrade() else {
            return;
        };
        hub_alive.subscribed.send_replace(false);
        drop(hub_alive);
        match outcome {
            Ok(Ended::HubGone) => return,
            Ok(Ended::ConnectionLost) => {
                // It was up: retry at once, with the backoff reset.
                backoff = BACKOFF_MIN;
                tracing::warn!("Redis subscription lost; resubscribing");
            }
            Err(e) => tracing::warn!(
                error = %format!("{e:#}"),
                retry_in_ms = backoff.as_millis() as u64,
                "cannot subscribe to Redis events"
            ),
        }
        lost_once = true;
        metrics::counter!("ws_redis_reconnects_total").increment(1);
        let jitter = rand::rng().random_range(0..=backoff.as_millis() as u64 / 2);
        let pause = backoff + Duration::from_millis(jitter);
        tokio::select! {
            _ = tokio::time::sleep(pause) => {},
            _ = closing.wait_for(|c| *c) => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

enum Ended {
    ConnectionLost,
    HubGone,
}

/// Subscribes and dispatches until the connection ends. After an outage (`resync`), every
/// local socket is sent a fresh snapshot once the subscription is back.
async fn subscribe_once(
    hub: &Weak<Hub>,
    url: &SecretString,
    channel: &str,
    resync: bool,
) -> anyhow::Result<Ended> {
    let client = redis::Client::open(url.expose_secret())?;
    let pubsub = tokio::time::timeout(REDIS_HEALTH_TIMEOUT, client.get_async_pubsub())
        .await
        .map_err(|_| anyhow::anyhow!("connecting timed out"))??;
    let (mut sink, mut stream) = pubsub.split();
    tokio::time::timeout(REDIS_HEALTH_TIMEOUT, sink.subscribe(channel))
        .await
        .map_err(|_| anyhow::anyhow!("SUBSCRIBE timed out"))??;
    {
        let Some(hub) = hub.upgrade() else {
            return Ok(Ended::HubGone);
        };
        hub.subscribed.send_replace(true);
        tracing::debug!(channel, "subscribed to Redis events");
        if resync {
            hub.resync_all();
        }
    }
    let mut health = tokio::time::interval(REDIS_HEALTH_INTERVAL);
    health.tick().await;
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(message) = message else {
                    return Ok(Ended::ConnectionLost);
                };
                let Some(hub) = hub.upgrade() else {
                    return Ok(Ended::HubGone);
                };
                hub.dispatch_payload(message.get_payload_bytes());
            }
            _ = health.tick() => {
                // A half-open TCP connection never ends the stream: ask Redis to answer.
                let ping = tokio::time::timeout(REDIS_HEALTH_TIMEOUT, sink.ping::<redis::Value>()).await;
                if !matches!(ping, Ok(Ok(_))) {
                    return Ok(Ended::ConnectionLost);
                }
                if hub.strong_count() == 0 {
                    return Ok(Ended::HubGone);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(max: usize) -> Arc<Hub> {
        Arc::new(Hub::new(WsSettings {
            max_connections_per_user: max,
            ping_interval_secs: 10,
            idle_timeout_secs: 30,
            max_frame_bytes: 65536,
        }))
    }

    #[tokio::test]
    async fn events_reach_only_the_sockets_of_their_user() {
        let hub = hub(5);
        let mut a1 = hub.register(UserId(1)).unwrap();
        let mut a2 = hub.register(UserId(1)).unwrap();
        let mut b = hub.register(UserId(2)).unwrap();
        hub.dispatch_payload(br#"1:{"type":"x"}"#);
        for r in [&mut a1, &mut a2] {
            match r.events.try_recv().unwrap() {
                Outbound::Event(json) => assert_eq!(&*json, r#"{"type":"x"}"#),
                other => panic!("{other:?}"),
            }
        }
        assert!(b.events.try_recv().is_err());
        hub.dispatch_payload(b"garbage");
        hub.dispatch_payload(b"x:{}");
        assert!(b.events.try_recv().is_err());
    }

    #[tokio::test]
    async fn the_cap_counts_live_sockets_only() {
        let hub = hub(2);
        let first = hub.register(UserId(7)).unwrap();
        let _second = hub.register(UserId(7)).unwrap();
        assert_eq!(
            hub.register(UserId(7)).err(),
            Some(Refused::TooManyConnections)
        );
        assert!(hub.register(UserId(8)).is_ok());
        drop(first);
        assert!(hub.register(UserId(7)).is_ok());
        hub.shutdown();
        assert_eq!(hub.register(UserId(9)).err(), Some(Refused::ShuttingDown));
    }

    #[tokio::test]
    async fn a_socket_that_falls_behind_is_dropped() {
        let hub = hub(5);
        let mut slow = hub.register(UserId(1)).unwrap();
        for _ in 0..QUEUE_PER_SOCKET {
            hub.dispatch_payload(br#"1:{"type":"x"}"#);
        }
        assert_eq!(hub.connections(), 1);
        hub.dispatch_payload(br#"1:{"type":"x"}"#);
        assert_eq!(hub.connections(), 0);
        // What was queued is still there; then the queue reports the end.
        for _ in 0..QUEUE_PER_SOCKET {
            assert!(slow.events.recv().await.is_some());
        }
        assert!(slow.events.recv().await.is_none());
    }
}
