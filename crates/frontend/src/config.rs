//! The front-end's settings, shared by the machines and the shell.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::Duration;

use flotilla_world::RingLimits;

use crate::error::FrontendError;

/// The secret key that signs session tokens (HMAC-SHA256).
///
/// A token is `session id || HMAC(key, session id)`: only a front-end holding the key can
/// mint one, and a resume is accepted only when the MAC verifies. **All the front-ends of
/// one fleet must share the key**, or a client that fails over to another front-end gets
/// a new session instead of resuming. [`Default`] is a key drawn from the operating
/// system once per process: fine for one front-end, or several in one process (tests,
/// demos), not for a fleet of processes.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenKey([u8; 32]);

impl TokenKey {
    /// A key from 32 secret bytes.
    pub const fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A key from its text form: 64 hex digits (e.g. `openssl rand -hex 32`), surrounding
    /// whitespace ignored. The all-zero key is refused.
    pub fn from_hex(text: &str) -> Result<Self, FrontendError> {
        let invalid = |reason| FrontendError::InvalidTokenKey {
            source_name: None,
            reason,
        };
        let key = Self(parse_hex32(text).ok_or_else(|| {
            invalid("expected 64 hex digits (32 bytes), e.g. from `openssl rand -hex 32`")
        })?);
        if key.is_zero() {
            return Err(invalid("the all-zero key is refused"));
        }
        Ok(key)
    }

    /// Reads a key file holding [`TokenKey::from_hex`]'s text form.
    pub fn read_file(path: &std::path::Path) -> Result<Self, FrontendError> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            std::io::Error::new(
                error.kind(),
                format!("reading the token key file {}: {error}", path.display()),
            )
        })?;
        Self::from_hex(&text).map_err(|error| match error {
            FrontendError::InvalidTokenKey { reason, .. } => FrontendError::InvalidTokenKey {
                source_name: Some(path.display().to_string()),
                reason,
            },
            other => other,
        })
    }

    /// A new random key from the operating system's secure random source (what
    /// `flotilla keygen` writes for a fleet).
    pub fn generate() -> Result<Self, FrontendError> {
        let mut key = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
            .map_err(|_| FrontendError::Entropy("the OS random source failed".into()))?;
        Ok(Self(key))
    }

    /// The text form [`TokenKey::from_hex`] reads: 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    /// True for the all-zero key, which [`FrontendConfig::validate`] refuses (the
    /// per-process default is all zero only if the OS had no entropy).
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 32]
    }
}

impl Default for TokenKey {
    fn default() -> Self {
        static PROCESS_KEY: OnceLock<[u8; 32]> = OnceLock::new();
        Self(*PROCESS_KEY.get_or_init(|| {
            let mut key = [0u8; 32];
            let random = ring::rand::SystemRandom::new();
            if ring::rand::SecureRandom::fill(&random, &mut key).is_err() {
                key = [0; 32];
            }
            key
        }))
    }
}

/// 32 bytes from 64 hex digits (surrounding whitespace ignored); `None` for anything
/// else. The text form of session-token keys and join-token public keys.
pub(crate) fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    let hex = text.trim().as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (byte, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
        let digit = |d: u8| (d as char).to_digit(16);
        let high = pair.first().copied().and_then(digit)?;
        let low = pair.get(1).copied().and_then(digit)?;
        *byte = u8::try_from(high * 16 + low).ok()?;
    }
    Some(bytes)
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKey(<secret>)")
    }
}

/// Everything a front-end can be tuned with. [`Default`] gives the recommended values of
/// `PROTOCOL.md` (keep-alives, 1 MiB frames, rings of 256 batches / 1 MiB).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FrontendConfig {
    /// Where clients connect. Default `127.0.0.1:7400`.
    pub listen: SocketAddr,
    /// The game servers to connect to (`host:port`, resolved at every attempt).
    pub game_servers: Vec<String>,
    /// This front-end's id, sent in `Welcome` and `GameHello`. Default `"frontend"`.
    pub server_id: String,
    /// Ping a client after this long without sending it anything. Default 20 s: the
    /// kernel watches the connection meanwhile (see
    /// [`client_transport_timeout`](Self::client_transport_timeout)).
    pub client_ping_interval: Duration,
    /// Close a welcomed client connection after this long without receiving a frame.
    /// Default 60 s: a backstop only, since a vanished client is found by the kernel in
    /// [`client_transport_timeout`](Self::client_transport_timeout).
    pub client_idle_timeout: Duration,
    /// Close a client connection that has not said `Hello` this long after it was
    /// accepted. Default 6 s.
    #[serde(default = "default_client_handshake_timeout")]
    pub client_handshake_timeout: Duration,
    /// The kernel closes a client connection whose TCP acknowledges nothing for this
    /// long: neither the data sent to it (`TCP_USER_TIMEOUT`, Linux) nor, while the
    /// connection is quiet, TCP keep-alive probes (the first after 2 s of quiet,
    /// [`FRONTEND_CLIENT_PROBE_AFTER`](flotilla_wire::FRONTEND_CLIENT_PROBE_AFTER), then
    /// one a second).
    /// Default 6 s. Zero leaves the sockets' TCP settings alone (the frame-silence
    /// backstop is then all there is).
    #[serde(default = "default_client_transport_timeout")]
    pub client_transport_timeout: Duration,
    /// Ping a game server after this long without sending it anything. Default 1 s.
    pub game_ping_interval: Duration,
    /// Close a game-server link after this long without receiving anything. Default 3 s.
    /// Also how long a game-server link may stay over
    /// [`max_game_queued_bytes`](Self::max_game_queued_bytes) without any byte written to
    /// it (a game server that pings but does not read) before it is closed with
    /// `Error{Overloaded}`.
    pub game_idle_timeout: Duration,
    /// Bytes a client connection may have queued (sent by the machine, not yet written to
    /// its socket) before its change batches are dropped and it is resynced from a
    /// snapshot once it drains. Default 128 KiB.
    pub send_budget: usize,
    /// Hard limit of a client connection's queued bytes for every kind of frame (control
    /// frames, snapshots, game outputs; batches past the send budget are dropped instead):
    /// a frame that would take the connection past it closes the connection with
    /// `Error{Overloaded}`. Default 4 MiB.
    pub max_queued_bytes: usize,
    /// Bytes queued for an observer that is behind (its queue has waited unwritten for
    /// 20 ms, [`COALESCE_AFTER_WAITING`](crate::COALESCE_AFTER_WAITING)) past
    /// which its queued change batches and snapshots give way to the world's latest
    /// state: the shell drops them and one fresh snapshot takes their place (the latest
    /// state wins). The threshold is the larger of this and the world's snapshot size, so
    /// the batches replaced outweigh the snapshot (a frame already partly written stays);
    /// it only matters below
    /// [`send_budget`](Self::send_budget). Under load an observer then gets fewer bytes,
    /// and its replica converges all the same, and fresher: it is not handed batches that
    /// waited a pass. 0 never coalesces. Default 512 B (the snapshot's size decides for
    /// all but the smallest worlds). Until the big final's floor measurements it was
    /// 4 KiB, twice the snapshot and 100 ms (BENCHMARKS.md).
    pub coalesce_above: usize,
    /// Most client connections held at once. A client past it gets `Error{Overloaded}`
    /// and is closed at once, so it picks another front-end instead of waiting for a
    /// timeout. The server lowers it to what the process's file-descriptor limit holds
    /// while keeping descriptors for the listener and its game links
    /// ([`client_cap`](crate::server::client_cap)). Default 100,000.
    pub max_clients: usize,
    /// Most client connections held at once from one IP address (0: no such cap). A
    /// connection past it gets `Error{Overloaded}` and is closed at once, so one address
    /// cannot take the whole front-end. Default 0 here (tests and benchmarks connect
    /// thousands from one loopback address); `flotilla frontend` uses 1,000.
    #[serde(default)]
    pub max_clients_per_ip: usize,
    /// How long the address of a connection closed for exceeding its input budget is
    /// refused, so that a flooder cannot simply reconnect and burst again (zero: not at
    /// all). An IPv4 address's connection attempts are dropped by the listeners' kernel
    /// filter (they go unanswered); others are accepted and told `Error{Overloaded}`.
    /// Every client behind that address (a NAT) is refused meanwhile; connections already
    /// open are not touched. Default 10 s.
    #[serde(default = "default_input_flood_penalty")]
    pub input_flood_penalty: Duration,
    /// Bounds of each world replica's ring of recent batches.
    #[serde(with = "ring_limits")]
    pub ring: RingLimits,
    /// The largest frame accepted or produced (type byte + body). Default 1 MiB.
    pub max_frame_len: usize,
    /// The largest frame a client may send after its hello. Default 64 KiB
    /// (`flotilla_wire::CLIENT_MAX_FRAME_LEN`).
    pub max_client_frame_len: usize,
    /// The largest first frame (the `Hello`) of a client. Default 4 KiB.
    pub max_hello_frame_len: usize,
    /// Bytes queued for one game server (client inputs not yet written to it) past which
    /// the front-end stops reading clients until it is under half. While clients are not
    /// read they are not timed out for silence. A link that stays past this limit with
    /// nothing written to it for [`game_idle_timeout`](Self::game_idle_timeout) is closed
    /// with `Error{Overloaded}` (its worlds fall back to another host or end with
    /// `Unavailable`), so reading resumes. Default 8 MiB.
    pub max_game_queued_bytes: usize,
    /// The largest upstream snapshot, all parts: keys, values and
    /// [`SNAPSHOT_ENTRY_OVERHEAD_BYTES`](flotilla_wire::SNAPSHOT_ENTRY_OVERHEAD_BYTES) per
    /// entry, and while parts are being collected also the part frames held. A game
    /// server sending a bigger one is closed with `Error{Overloaded}`. Default 256 MiB.
    pub max_snapshot_bytes: usize,
    /// How long a world's replica is kept after its last subscriber left before it is
    /// destroyed and unsubscribed upstream, so that a client
    /// unsubscribing and subscribing again does not make the game server encode a full
    /// snapshot each time: a subscriber arriving within this time reuses the replica
    /// with no upstream traffic. Zero destroys it at once. Default 5 s.
    pub replica_grace_period: Duration,
    /// How long the replicas of worlds whose game link was lost are kept, with their
    /// subscribers, waiting for a game server to announce them again (the link reconnects
    /// after a blip, or the game server restarts): a world announced again within this
    /// time is resubscribed upstream from its replica's position and its observers carry
    /// on with the batches they missed (or a new snapshot), never unsubscribed. Past it they
    /// get `Unsubscribed{Unavailable}`. Zero ends them at once. Default 5 s.
    #[serde(default = "default_game_resume_grace")]
    pub game_resume_grace: Duration,
    /// Inputs a client connection may send a second on average (a token bucket with
    /// [`input_burst`](Self::input_burst)); a connection past it is closed with
    /// `Error{Overloaded}`, so one flooder cannot take the front-end's time from the other
    /// clients. 0: no limit. Default 2,000 (about 30 times a 60 Hz game's inputs; a
    /// flooder paced just under 50,000 a second still tripled another player's round trip
    /// on a 2-core machine, `flotilla bench flood`). Raise it for clients that send
    /// back-to-back (the `hop` benchmark turns it off).
    #[serde(default = "default_input_budget")]
    pub max_inputs_per_second: u32,
    /// Inputs a connection may send at once above that rate. Default 2,000.
    #[serde(default = "default_input_budget")]
    pub input_burst: u32,
    /// After handling traffic, the event loop keeps polling its sockets for this long
    /// before it sleeps, so that the answer to a message it just routed (a game
    /// server's output, a client's next input) finds it awake instead of paying a
    /// thread wake-up, which on small virtual machines costs tens of microseconds
    /// per hop. Only after a turn shorter than this (routing, not a large fan-out),
    /// and only while traffic flows: the loop sleeps this long after the last event.
    /// The spinning yields the core between polls, so a thread sharing the core is not
    /// held up by it. Zero turns it off. Default 100 µs.
    pub busy_poll: Duration,
    /// First reconnect backoff ceiling for a lost game server (full jitter). Default 100 ms.
    pub reconnect_base: Duration,
    /// Largest reconnect backoff ceiling. Default 5 s.
    pub reconnect_cap: Duration,
    /// Give up a game-server connection attempt after this long. Default 2 s.
    pub connect_timeout: Duration,
    /// The key signing session tokens; share it across the front-ends of a fleet.
    /// Default: drawn once per process (see [`TokenKey`]).
    pub token_key: TokenKey,
    /// The operator's public keys for join tokens (PROTOCOL.md, "Join tokens"). Empty (the
    /// default): no token is needed, every session may watch and play every world. Not
    /// empty: a session's `Input` for a world needs an unexpired player token for it (one
    /// signed by any of these keys, presented with `Join` on that connection), and a
    /// `Subscribe` needs an observer or player token unless
    /// [`anonymous_observers`](Self::anonymous_observers). Several keys let the operator
    /// rotate: add the new one, wait out the old tokens, remove the old one. The front-end
    /// needs the wall-clock time to check expiries ([`Input::WallClock`](crate::Input)).
    #[serde(default)]
    pub join_keys: Vec<crate::join::JoinKey>,
    /// With [`join_keys`](Self::join_keys): anyone may watch (subscribe) without a token,
    /// only inputs need one. Default true. `$directory` is always open.
    #[serde(default = "default_anonymous_observers")]
    pub anonymous_observers: bool,
    /// Seed of the machines' generator (session ids, tokens, directory epoch). `None`: drawn
    /// from the operating system. Set it only for replayable tests.
    pub seed: Option<u64>,
    /// Record the machine's inputs (and a digest of its outputs) for `flotilla replay`.
    /// `None` (the default): no recording. Not part of a recording's header.
    #[serde(skip)]
    pub record: Option<crate::record::RecordSettings>,
    /// The client listeners besides raw TCP (TLS, WebSocket) and the observer page's
    /// settings. Default: none. Not part of a recording's header (the machine does not
    /// see how a client's bytes travel).
    #[serde(skip)]
    pub edge: crate::edge::EdgeConfig,
}

/// The default of [`FrontendConfig::game_resume_grace`] (also for recordings made before
/// the setting existed).
fn default_input_flood_penalty() -> Duration {
    Duration::from_secs(10)
}

fn default_anonymous_observers() -> bool {
    true
}

fn default_client_handshake_timeout() -> Duration {
    flotilla_wire::FRONTEND_HANDSHAKE_TIMEOUT
}

fn default_client_transport_timeout() -> Duration {
    flotilla_wire::FRONTEND_CLIENT_TRANSPORT_TIMEOUT
}

fn default_game_resume_grace() -> Duration {
    Duration::from_secs(5)
}

/// The default of [`FrontendConfig::max_inputs_per_second`] and
/// [`FrontendConfig::input_burst`] (also for recordings made before they existed).
fn default_input_budget() -> u32 {
    2_000
}

impl Default for FrontendConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 7400)),
            game_servers: Vec::new(),
            server_id: "frontend".to_owned(),
            client_ping_interval: flotilla_wire::FRONTEND_PING_INTERVAL,
            client_idle_timeout: flotilla_wire::FRONTEND_CLIENT_IDLE_TIMEOUT,
            client_handshake_timeout: default_client_handshake_timeout(),
            client_transport_timeout: default_client_transport_timeout(),
            game_ping_interval: flotilla_wire::GAME_PING_INTERVAL,
            game_idle_timeout: flotilla_wire::GAME_IDLE_TIMEOUT,
            send_budget: 128 * 1024,
            max_queued_bytes: 4 << 20,
            coalesce_above: 512,
            ring: RingLimits::default(),
            max_frame_len: flotilla_wire::DEFAULT_MAX_FRAME_LEN,
            max_snapshot_bytes: flotilla_wire::DEFAULT_MAX_SNAPSHOT_BYTES,
            max_client_frame_len: flotilla_wire::CLIENT_MAX_FRAME_LEN,
            max_hello_frame_len: flotilla_wire::HELLO_MAX_FRAME_LEN,
            max_game_queued_bytes: 8 << 20,
            max_clients: 100_000,
            max_clients_per_ip: 0,
            input_flood_penalty: default_input_flood_penalty(),
            replica_grace_period: Duration::from_secs(5),
            game_resume_grace: default_game_resume_grace(),
            max_inputs_per_second: default_input_budget(),
            input_burst: default_input_budget(),
            busy_poll: Duration::from_micros(100),
            reconnect_base: Duration::from_millis(100),
            reconnect_cap: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            token_key: TokenKey::default(),
            join_keys: Vec::new(),
            anonymous_observers: default_anonymous_observers(),
            seed: None,
            record: None,
            edge: crate::edge::EdgeConfig::default(),
        }
    }
}

impl FrontendConfig {
    /// Checks the settings that would make the front-end misbehave.
    pub fn validate(&self) -> Result<(), FrontendError> {
        if self.send_budget == 0 {
            return Err(FrontendError::InvalidConfig("send_budget must be above 0"));
        }
        if self.max_clients == 0 {
            return Err(FrontendError::InvalidConfig("max_clients must be above 0"));
        }
        if self.max_queued_bytes < self.send_budget {
            return Err(FrontendError::InvalidConfig(
                "max_queued_bytes must be at least send_budget",
            ));
        }
        if self.max_frame_len < 64 {
            return Err(FrontendError::InvalidConfig(
                "max_frame_len must be at least 64 bytes",
            ));
        }
        if self.max_client_frame_len < 64 || self.max_hello_frame_len < 64 {
            return Err(FrontendError::InvalidConfig(
                "client frame limits must be at least 64 bytes",
            ));
        }
        if self.max_game_queued_bytes == 0 {
            return Err(FrontendError::InvalidConfig(
                "max_game_queued_bytes must be above 0",
            ));
        }
        if self.client_idle_timeout.is_zero()
            || self.client_handshake_timeout.is_zero()
            || self.game_idle_timeout.is_zero()
        {
            return Err(FrontendError::InvalidConfig(
                "idle timeouts must be above 0",
            ));
        }
        if self.client_ping_interval >= self.client_idle_timeout
            || self.game_ping_interval >= self.game_idle_timeout
        {
            return Err(FrontendError::InvalidConfig(
                "ping intervals must be shorter than idle timeouts (a quiet but healthy peer would be closed before it is pinged)",
            ));
        }
        if self.token_key.is_zero() {
            return Err(FrontendError::InvalidConfig(
                "token_key must not be all zero (no OS entropy for the default?)",
            ));
        }
        if self.server_id.is_empty() {
            return Err(FrontendError::InvalidConfig("server_id must not be empty"));
        }
        Ok(())
    }

    /// The queued-bytes level under which a congested connection counts as drained and is
    /// resynced: a quarter of the send budget.
    pub fn resync_watermark(&self) -> usize {
        self.send_budget / 4
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn token_keys_read_from_hex_and_refuse_everything_else() {
        let key = TokenKey::from_hex(&format!("  {}\n", "0f".repeat(32))).unwrap();
        assert_eq!(key.as_bytes(), &[0x0f; 32]);
        assert_eq!(TokenKey::from_hex(&key.to_hex()).unwrap(), key);
        for bad in [
            "",
            "0f",
            &"0g".repeat(32),
            &"0f".repeat(33),
            &"00".repeat(32),
            "é".repeat(32).as_str(),
        ] {
            let error = TokenKey::from_hex(bad).unwrap_err();
            assert!(
                matches!(error, FrontendError::InvalidTokenKey { .. }),
                "{bad:?}: {error}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "zz").unwrap();
        let error = TokenKey::read_file(&path).unwrap_err().to_string();
        assert!(error.contains(&path.display().to_string()), "{error}");
        let error = TokenKey::read_file(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("missing"), "{error}");
    }

    use super::*;

    #[test]
    fn defaults_are_valid_and_follow_the_protocol() {
        let config = FrontendConfig::default();
        config.validate().unwrap();
        assert_eq!(config.client_idle_timeout, Duration::from_secs(60));
        assert_eq!(config.client_handshake_timeout, Duration::from_secs(6));
        assert_eq!(config.client_transport_timeout, Duration::from_secs(6));
        assert_eq!(config.game_ping_interval, Duration::from_secs(1));
        assert_eq!(config.max_frame_len, 1 << 20);
    }

    #[test]
    fn inconsistent_settings_are_rejected() {
        let config = FrontendConfig {
            send_budget: 0,
            ..FrontendConfig::default()
        };
        assert!(matches!(
            config.validate(),
            Err(FrontendError::InvalidConfig(_))
        ));
        let config = FrontendConfig {
            max_queued_bytes: 10,
            ..FrontendConfig::default()
        };
        assert!(config.validate().is_err());
        // A quiet but healthy peer would be closed before it is pinged.
        let config = FrontendConfig {
            client_idle_timeout: Duration::from_secs(1),
            ..FrontendConfig::default()
        };
        assert!(config.validate().is_err());
        let config = FrontendConfig {
            game_ping_interval: Duration::from_secs(3),
            ..FrontendConfig::default()
        };
        assert!(config.validate().is_err());
    }
}

/// [`RingLimits`] as `{"max_batches": N, "max_bytes": N}` (recordings' headers).
mod ring_limits {
    use flotilla_world::RingLimits;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Limits {
        max_batches: usize,
        max_bytes: usize,
    }

    pub(super) fn serialize<S: Serializer>(ring: &RingLimits, s: S) -> Result<S::Ok, S::Error> {
        Limits {
            max_batches: ring.max_batches,
            max_bytes: ring.max_bytes,
        }
        .serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<RingLimits, D::Error> {
        let limits = Limits::deserialize(d)?;
        Ok(RingLimits {
            max_batches: limits.max_batches,
            max_bytes: limits.max_bytes,
        })
    }
}

/// A key is written as its 64 hex digits (only recordings' headers do: they must replay
/// the same tokens, so a recording is as secret as the key file).
impl serde::Serialize for TokenKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for TokenKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        TokenKey::from_hex(&text).map_err(serde::de::Error::custom)
    }
}
