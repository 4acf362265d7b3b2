//! The live-progress WebSocket, `GET /api/v1/ws` (`WS_*`).

use super::ConfigError;
use super::env::{Env, bad};

/// The live-progress WebSocket (`GET /api/v1/ws`).
#[derive(Debug, Clone)]
pub struct WsSettings {
    /// Sockets one user may hold open on one API process; the next is refused with 429.
    pub max_connections_per_user: usize,
    pub ping_interval_secs: u64,
    /// A socket that sends no frame at all (not even a pong) for this long is closed.
    pub idle_timeout_secs: u64,
    /// Largest frame or message accepted from a client.
    pub max_frame_bytes: usize,
}

impl WsSettings {
    pub(super) fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            max_connections_per_user: env.parse("WS_MAX_CONNECTIONS_PER_USER", 5)?,
            ping_interval_secs: env.parse("WS_PING_INTERVAL_SECS", 10)?,
            idle_timeout_secs: env.parse("WS_IDLE_TIMEOUT_SECS", 30)?,
            max_frame_bytes: env.parse("WS_MAX_FRAME_BYTES", 64 * 1024)?,
        })
    }

    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.max_connections_per_user == 0 {
            return Err(bad("WS_MAX_CONNECTIONS_PER_USER", "must be at least 1"));
        }
        if self.ping_interval_secs == 0 || self.idle_timeout_secs <= self.ping_interval_secs {
            return Err(bad(
                "WS_IDLE_TIMEOUT_SECS",
                "must be above WS_PING_INTERVAL_SECS (and that above 0), or answering pings would not keep a socket open",
            ));
        }
        if self.max_frame_bytes < 1024 {
            return Err(bad("WS_MAX_FRAME_BYTES", "must be at least 1024"));
        }
        Ok(())
    }
}
