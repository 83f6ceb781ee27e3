//! The client's settings.

use std::time::Duration;

use bytes::Bytes;
use flotilla_wire::{
    CLIENT_IDLE_TIMEOUT, CLIENT_PING_INTERVAL, CLIENT_QUIET_PING_INTERVAL, DEFAULT_MAX_FRAME_LEN,
};

use crate::session::ReplicaMode;

/// Settings of a [`Client`](crate::Client). `Default` gives the recommended values.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// A name for the front-end's logs (sent in `Hello`).
    pub client_name: String,
    /// A session token from an earlier `Welcome`, to resume that session.
    pub session_token: Option<Bytes>,
    /// Join tokens (the operator's signed permissions to play or watch a world, from
    /// `flotilla join-token`; `flotilla_wire::join_token_from_text` reads their text form),
    /// presented with a `Join` after every `Welcome` (grants belong to the connection),
    /// before the subscribes and inputs. Each is answered with [`ClientEvent::Joined`] or
    /// [`ClientEvent::JoinRefused`](crate::ClientEvent). Default: none (front-ends without
    /// join keys need none).
    ///
    /// [`ClientEvent::Joined`]: crate::ClientEvent::Joined
    pub join_tokens: Vec<Bytes>,
    /// Full replicas, or lean per-world counters only.
    pub mode: ReplicaMode,
    /// Send a `Ping` after this long without receiving anything, unless a ping is already
    /// out since the last frame received (so a healthy front-end is heard within the idle
    /// timeout, whatever the client sends). Zero disables pings. Default 0.5 s.
    pub ping_interval: Duration,
    /// Also send a `Ping` after this long without sending anything, to feed the
    /// front-end's frame-silence backstop (60 s); a client that receives a stream sends
    /// only these. The front-end notices a vanished client sooner through its kernel
    /// (PROTOCOL.md section 7). Default 20 s.
    pub quiet_ping_interval: Duration,
    /// Close after this long without receiving anything (also bounds the handshake).
    pub idle_timeout: Duration,
    /// Give up connecting after this long.
    pub connect_timeout: Duration,
    /// The maximum frame length (type byte + body) accepted.
    pub max_frame_len: usize,
    /// The most bytes queued for sending; past it the connection closes.
    pub max_queued_bytes: usize,
    /// Capacity of the event queue. `Output` and `Unsubscribed` events are never dropped:
    /// while the queue is full the client stops reading its socket until the application
    /// takes events (TCP pushes back on the front-end). Replica notifications
    /// (`SnapshotApplied`, `BatchApplied`, `Resyncing`, `Resubscribing`) that find it full
    /// are dropped (counted in [`ClientStats::events_dropped`](crate::ClientStats)); the
    /// replica itself is always up to date.
    pub event_queue: usize,
    /// What to do when the front-end ends a subscription because the world's game server
    /// is unreachable: resubscribe after a backoff (the default) or give up.
    pub resubscribe: ResubscribePolicy,
    /// Reach the front-ends over TLS (`tls://`), trusting these authorities. `None` (the
    /// default): plain TCP.
    pub tls: Option<crate::ClientTls>,
}

/// How a client resubscribes a world whose game server went away.
///
/// A front-end that loses its game-server link answers every observer of its worlds with
/// `Unsubscribed{Unavailable}` (and a resubscribe before the world is back with
/// `Unsubscribed{UnknownWorld}`). With the policy enabled the client keeps the world's
/// replica and last position, marks it waiting, and sends `Subscribe{since: last
/// position}` after a full-jitter exponential backoff: a delay drawn uniformly from
/// `[0, min(cap, base * 2^attempt)]`, so a fleet of clients does not resubscribe in
/// lock-step. It keeps trying until the world answers, the application unsubscribes or
/// the connection ends (a world that is really gone costs one small frame per `cap`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResubscribePolicy {
    /// Resubscribe at all. `false`: `Unavailable` ends the subscription like any other code.
    pub enabled: bool,
    /// Ceiling of the first delay. Default 100 ms.
    pub base: Duration,
    /// Largest ceiling of a delay. Default 2 s.
    pub cap: Duration,
}

impl Default for ResubscribePolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
        }
    }
}

impl ResubscribePolicy {
    /// Never resubscribe: every `Unsubscribed` ends the subscription.
    pub const DISABLED: Self = Self {
        enabled: false,
        base: Duration::ZERO,
        cap: Duration::ZERO,
    };
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            client_name: "flotilla-client".to_owned(),
            session_token: None,
            join_tokens: Vec::new(),
            mode: ReplicaMode::Full,
            ping_interval: CLIENT_PING_INTERVAL,
            quiet_ping_interval: CLIENT_QUIET_PING_INTERVAL,
            idle_timeout: CLIENT_IDLE_TIMEOUT,
            connect_timeout: Duration::from_secs(5),
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            max_queued_bytes: 4 << 20,
            event_queue: 4096,
            resubscribe: ResubscribePolicy::default(),
            tls: None,
        }
    }
}
