//! The game server's settings.

use std::time::Duration;

use flotilla_wire::{DEFAULT_MAX_FRAME_LEN, GAME_IDLE_TIMEOUT, GAME_PING_INTERVAL};
use flotilla_world::RingLimits;

/// Settings of a [`GameServer`](crate::GameServer). `Default` gives the recommended values.
#[derive(Debug, Clone)]
pub struct GameConfig {
    /// This server's id, sent in `GameWelcome` (for logs).
    pub server_id: String,
    /// Send a `Ping` to a front-end after this long without sending it anything.
    pub ping_interval: Duration,
    /// Close a front-end link after this long without receiving anything (also bounds the
    /// handshake).
    pub idle_timeout: Duration,
    /// The maximum frame length (type byte + body) received, and sent: keep it at or below
    /// the front-ends' maximum. A batch larger than this is replaced by a multi-part
    /// snapshot.
    pub max_frame_len: usize,
    /// The bounds of each world's ring of recent batches, used to answer a resuming
    /// front-end with only the missing batches.
    pub ring: RingLimits,
    /// The most bytes queued for one front-end; past it the link is closed with
    /// `Error{Overloaded}` (the front-end reconnects and resumes).
    pub max_queued_bytes: usize,
    /// Inputs the event queue ([`GameEvents`](crate::GameEvents)) holds: while that many
    /// are queued the server stops reading its front-end links (backpressure, nothing is
    /// lost). Session and front-end events are never dropped nor limited.
    pub event_queue: usize,
    /// Accept front-end links over TLS with this configuration (e.g. from
    /// [`flotilla_link::stream::server_config_from_pem`]); `None` (the default): plain TCP.
    /// A link's TLS handshake is bounded by `idle_timeout`.
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
}

impl Default for GameConfig {
    fn default() -> Self {
        Self {
            server_id: "flotilla-game".to_owned(),
            ping_interval: GAME_PING_INTERVAL,
            idle_timeout: GAME_IDLE_TIMEOUT,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            ring: RingLimits::default(),
            max_queued_bytes: 64 << 20,
            event_queue: 65_536,
            tls: None,
        }
    }
}
