//! The client's settings.

use std::time::Duration;

use bytes::Bytes;
use flotilla_wire::{CLIENT_IDLE_TIMEOUT, CLIENT_PING_INTERVAL, DEFAULT_MAX_FRAME_LEN};

use crate::session::ReplicaMode;

/// Settings of a [`Client`](crate::Client). `Default` gives the recommended values.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// A name for the front-end's logs (sent in `Hello`).
    pub client_name: String,
    /// A session token from an earlier `Welcome`, to resume that session.
    pub session_token: Option<Bytes>,
    /// Full replicas, or lean per-world counters only.
    pub mode: ReplicaMode,
    /// Send a `Ping` after this long without sending anything.
    pub ping_interval: Duration,
    /// Close after this long without receiving anything (also bounds the handshake).
    pub idle_timeout: Duration,
    /// Give up connecting after this long.
    pub connect_timeout: Duration,
    /// The maximum frame length (type byte + body) accepted.
    pub max_frame_len: usize,
    /// The most bytes queued for sending; past it the connection closes.
    pub max_queued_bytes: usize,
    /// Capacity of the event queue; events that find it full are dropped (counted in
    /// [`ClientStats::events_dropped`](crate::ClientStats)).
    pub event_queue: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            client_name: "flotilla-client".to_owned(),
            session_token: None,
            mode: ReplicaMode::Full,
            ping_interval: CLIENT_PING_INTERVAL,
            idle_timeout: CLIENT_IDLE_TIMEOUT,
            connect_timeout: Duration::from_secs(5),
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            max_queued_bytes: 4 << 20,
            event_queue: 4096,
        }
    }
}
