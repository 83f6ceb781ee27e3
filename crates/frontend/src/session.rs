//! The session machine: one per client connection.
//!
//! It decodes the client's frames, runs the handshake (`Hello` -> `Welcome`), answers
//! pings, pings a quiet client and closes a silent one, remembers the connection's
//! subscriptions and the grants of its join tokens, and keeps the connection's send budget
//! (bytes handed to the shell and not yet written). It does not know other machines: it returns a [`SessionEvent`] for
//! the [`Frontend`](crate::Frontend) to act on.

use std::collections::BTreeSet;

use bytes::Bytes;
use flotilla_conn::{
    Instant, KeepAlive, KeepAliveAction, KeepAliveConfig, RateBudget, negotiate_version,
};
use flotilla_wire::{
    ClientToFrontend, ErrorCode, FrontendToClient, Message, PROTOCOL_VERSION, RawFrame, Role,
    SessionId, WorldId,
};
use flotilla_world::Position;

use crate::frontend::CloseReason;
use crate::ids::ConnId;

/// The most join-token grants one connection holds at once (one per world; a token for a
/// world already granted replaces its grant). Past it a `Join` is refused.
pub const MAX_GRANTS_PER_CONNECTION: usize = 32;

/// `Join`s a connection may send a second on average (each costs a signature check)...
pub const JOINS_PER_SECOND: u32 = 8;

/// ... with bursts of this many (a client joining its worlds after a `Welcome`). Past
/// them the connection is closed with `Error{Overloaded}`, like an input flooder.
pub const JOIN_BURST: u32 = 64;

/// What a join token granted a connection: a role in one world until an expiry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Grant {
    /// The token's world.
    pub world: WorldId,
    /// Player (inputs) or observer.
    pub role: Role,
    /// The token's expiry, in seconds since the Unix epoch.
    pub expires_unix: u64,
}

impl Grant {
    /// True while the grant holds at `unix_now` (never when the time is unknown).
    pub fn is_valid_at(&self, unix_now: Option<u64>) -> bool {
        unix_now.is_some_and(|now| now < self.expires_unix)
    }
}

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SessionPhase {
    /// Connected; the client's `Hello` has not arrived yet.
    AwaitingHello,
    /// Welcomed: the connection carries this session.
    Open {
        /// The session's id on the game links.
        session: SessionId,
    },
    /// Closed by the machine (error, timeout); nothing more is accepted.
    Closed,
}

/// What the [`Frontend`](crate::Frontend) must do after a session handled an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// Nothing to do.
    Nothing,
    /// Send this frame to the client (a pong, a keep-alive ping).
    Reply(Bytes),
    /// A valid `Hello`: resolve the session (new or resumed) and call
    /// [`Session::open`].
    Hello {
        /// The token of the session to resume, if the client gave one.
        session_token: Option<Bytes>,
        /// The client's name, for logs and `SessionOpened`.
        client_name: String,
    },
    /// The client wants a world, resuming from `since` if given.
    Subscribe {
        /// The world.
        world: WorldId,
        /// The last position the client saw.
        since: Option<Position>,
    },
    /// The client no longer wants a world.
    Unsubscribe {
        /// The world.
        world: WorldId,
    },
    /// Input for the game server hosting `world`.
    Input {
        /// The world.
        world: WorldId,
        /// Opaque to the front-end.
        payload: Bytes,
    },
    /// The client presents a join token: check it and [`Session::grant`] what it says.
    Join {
        /// The token's bytes.
        token: Bytes,
    },
    /// Close the connection, after sending `error_frame` if there is one.
    Close {
        /// Why.
        reason: CloseReason,
        /// The `Error` frame to send first.
        error_frame: Option<Bytes>,
    },
}

/// The kind of a frame offered to a connection, which decides how the send budget
/// treats it. Every kind counts against the hard limit (`max_queued_bytes`): past it the
/// connection is closed with `Error{Overloaded}`, so a client that never reads cannot
/// make the front-end queue pongs, `Unsubscribed` answers or snapshots without bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traffic {
    /// Handshake, keep-alive, errors, `Unsubscribed`: queued up to the hard limit.
    Control,
    /// A snapshot (first subscription or resync): queued up to the hard limit regardless
    /// of the send budget; a congested connection may lose it while unsent (it is then
    /// resynced with a newer one).
    Snapshot,
    /// A change batch: dropped once the connection is past its send budget.
    Batch,
    /// A snapshot in place of batches an observer missed while its socket was full (they
    /// left the ring): held to the send budget like the batches it replaces, so repeated
    /// stalls never pile snapshots up; past it the connection is congested and resynced
    /// once it drains.
    CatchUp,
    /// A game output: cannot be dropped; past the hard limit the connection is closed.
    Output,
}

/// The budget's answer to [`Session::offer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Queue it.
    Accepted,
    /// Do not send it: the connection is congested. `newly_congested` is true for the
    /// offer that crossed the budget (drop the queued batches, mark subscriptions for
    /// resync).
    Dropped {
        /// True when this offer made the connection congested.
        newly_congested: bool,
    },
    /// The connection is past its hard limit: close it with `Error{Overloaded}`.
    Overloaded,
}

/// The worlds a connection is subscribed to, in order. The first is kept inline: the
/// front-end visits a connection's subscriptions at every write to it, nearly every
/// connection has one, and a set's node is one more allocation to fetch from memory per
/// write (measurable at 100,000 observers). Serialised as a sequence, as a set is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscriptions {
    /// The smallest world, if any.
    first: Option<WorldId>,
    /// The others, all greater than `first`.
    rest: BTreeSet<WorldId>,
}

impl Subscriptions {
    /// The first world in order.
    pub fn first(&self) -> Option<&WorldId> {
        self.first.as_ref()
    }

    /// The first world in order after `world`.
    pub fn after(&self, world: &WorldId) -> Option<&WorldId> {
        use std::ops::Bound::{Excluded, Unbounded};
        match &self.first {
            Some(first) if first > world => Some(first),
            _ => self
                .rest
                .range::<WorldId, _>((Excluded(world), Unbounded))
                .next(),
        }
    }

    /// How many worlds.
    pub fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    /// True when `world` is one of them.
    pub fn contains(&self, world: &WorldId) -> bool {
        self.first.as_ref() == Some(world) || self.rest.contains(world)
    }

    /// Adds `world`; false if it was there already.
    pub fn insert(&mut self, world: WorldId) -> bool {
        match &self.first {
            None => {
                self.first = Some(world);
                true
            }
            Some(first) if *first == world => false,
            Some(first) if world < *first => {
                let previous = self.first.replace(world);
                previous.is_some_and(|previous| self.rest.insert(previous))
            }
            Some(_) => self.rest.insert(world),
        }
    }

    /// Removes `world`; false if it was not there.
    pub fn remove(&mut self, world: &WorldId) -> bool {
        if self.first.as_ref() == Some(world) {
            self.first = self.rest.pop_first();
            true
        } else {
            self.rest.remove(world)
        }
    }

    /// The worlds in order.
    pub fn iter(&self) -> impl Iterator<Item = &WorldId> {
        self.first.iter().chain(&self.rest)
    }
}

impl<'a> IntoIterator for &'a Subscriptions {
    type Item = &'a WorldId;
    type IntoIter = std::iter::Chain<
        std::option::Iter<'a, WorldId>,
        std::collections::btree_set::Iter<'a, WorldId>,
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.first.iter().chain(&self.rest)
    }
}

impl IntoIterator for Subscriptions {
    type Item = WorldId;
    type IntoIter = std::iter::Chain<
        std::option::IntoIter<WorldId>,
        std::collections::btree_set::IntoIter<WorldId>,
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.first.into_iter().chain(self.rest)
    }
}

impl serde::Serialize for Subscriptions {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> serde::Deserialize<'de> for Subscriptions {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let worlds = Vec::<WorldId>::deserialize(deserializer)?;
        let mut subscriptions = Self::default();
        for world in worlds {
            subscriptions.insert(world);
        }
        Ok(subscriptions)
    }
}

/// The state of one client connection.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Session {
    conn: ConnId,
    phase: SessionPhase,
    client_name: String,
    /// The protocol version negotiated from the hello's offer (the `Welcome` carries it).
    version: u32,
    keep_alive: KeepAlive,
    /// The instant this session's live entry in the front-end's deadline heap is at.
    pub(crate) timer_at: Option<Instant>,
    subscriptions: Subscriptions,
    queued_bytes: usize,
    /// Since when bytes have been queued unwritten (`None` while nothing is queued): how
    /// far behind the connection's writes are.
    #[serde(default)]
    unwritten_since: Option<Instant>,
    congested: bool,
    /// The connection's input budget (`None`: no limit).
    input_budget: Option<RateBudget>,
    /// What the connection's join tokens granted (at most
    /// [`MAX_GRANTS_PER_CONNECTION`]; a linear scan is cheaper than a map at that size).
    grants: Vec<Grant>,
    /// The connection's `Join` budget ([`JOINS_PER_SECOND`], [`JOIN_BURST`]).
    join_budget: RateBudget,
}

impl Session {
    /// A fresh connection, accepted at `now`, kept alive with `keep_alive`'s intervals.
    pub fn new(conn: ConnId, now: Instant, keep_alive: KeepAliveConfig) -> Self {
        Self {
            conn,
            phase: SessionPhase::AwaitingHello,
            client_name: String::new(),
            version: PROTOCOL_VERSION,
            keep_alive: KeepAlive::new(keep_alive, now),
            timer_at: None,
            subscriptions: Subscriptions::default(),
            queued_bytes: 0,
            unwritten_since: None,
            congested: false,
            input_budget: None,
            grants: Vec::new(),
            join_budget: RateBudget::new(JOINS_PER_SECOND, JOIN_BURST, now),
        }
    }

    /// Limits the connection's inputs to `per_second` on average with bursts of `burst`
    /// (0 `per_second`: no limit), from `now`.
    pub fn limit_inputs(&mut self, per_second: u32, burst: u32, now: Instant) {
        self.input_budget = (per_second > 0).then(|| RateBudget::new(per_second, burst, now));
    }

    /// Takes one input from the connection's budget at `now`: false when it is spent.
    pub fn take_input(&mut self, now: Instant) -> bool {
        self.input_budget
            .as_mut()
            .is_none_or(|budget| budget.take(now))
    }

    /// Takes one `Join` from the connection's budget at `now`: false when it is spent.
    pub fn take_join(&mut self, now: Instant) -> bool {
        self.join_budget.take(now)
    }

    /// Records what a verified join token grants: `role` in `world` until `expires_unix`,
    /// replacing an earlier grant for that world. Refused when the connection holds
    /// [`MAX_GRANTS_PER_CONNECTION`] grants for other worlds still valid at `unix_now`.
    pub fn grant(
        &mut self,
        world: WorldId,
        role: Role,
        expires_unix: u64,
        unix_now: Option<u64>,
    ) -> Result<(), &'static str> {
        let grant = Grant {
            world,
            role,
            expires_unix,
        };
        if let Some(held) = self.grants.iter_mut().find(|g| g.world == grant.world) {
            *held = grant;
            return Ok(());
        }
        if self.grants.len() >= MAX_GRANTS_PER_CONNECTION {
            self.grants.retain(|g| g.is_valid_at(unix_now));
        }
        if self.grants.len() >= MAX_GRANTS_PER_CONNECTION {
            return Err("this connection holds the most join tokens it may (32 worlds)");
        }
        self.grants.push(grant);
        Ok(())
    }

    /// The grant this connection holds for `world`, if any (valid or not).
    pub fn grant_for(&self, world: &WorldId) -> Option<&Grant> {
        self.grants.iter().find(|g| g.world == *world)
    }

    /// True when the connection holds a grant for `world` valid at `unix_now` that allows
    /// inputs (`input`) or watching (any role).
    pub fn allows(&self, world: &WorldId, unix_now: Option<u64>, input: bool) -> bool {
        self.grant_for(world).is_some_and(|grant| {
            grant.is_valid_at(unix_now) && (!input || grant.role.may_send_inputs())
        })
    }

    /// The connection this session machine serves.
    pub fn conn(&self) -> ConnId {
        self.conn
    }

    /// Where the session is in its life.
    pub fn phase(&self) -> SessionPhase {
        self.phase
    }

    /// The session id once welcomed.
    pub fn session_id(&self) -> Option<SessionId> {
        match self.phase {
            SessionPhase::Open { session } => Some(session),
            _ => None,
        }
    }

    /// The name the client gave in its hello.
    pub fn client_name(&self) -> &str {
        &self.client_name
    }

    /// The worlds this connection is subscribed to.
    pub fn subscriptions(&self) -> &Subscriptions {
        &self.subscriptions
    }

    /// Records a subscription; false if it was already there.
    pub fn add_subscription(&mut self, world: WorldId) -> bool {
        self.subscriptions.insert(world)
    }

    /// Forgets a subscription; false if there was none.
    pub fn remove_subscription(&mut self, world: &WorldId) -> bool {
        self.subscriptions.remove(world)
    }

    /// Takes every subscription (on close).
    pub fn take_subscriptions(&mut self) -> Subscriptions {
        std::mem::take(&mut self.subscriptions)
    }

    /// Bytes handed to the shell for this connection and not yet reported drained.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Since when bytes have been queued for the connection and not reported written
    /// (`None` while nothing is queued).
    pub fn unwritten_since(&self) -> Option<Instant> {
        self.unwritten_since
    }

    /// True while the connection is past its send budget (batches are dropped).
    pub fn is_congested(&self) -> bool {
        self.congested
    }

    /// Handles one frame received from the client at `now`.
    pub fn handle_frame(&mut self, now: Instant, frame: &RawFrame) -> SessionEvent {
        if self.phase == SessionPhase::Closed {
            return SessionEvent::Nothing;
        }
        self.keep_alive.on_received(now);
        let message = match ClientToFrontend::decode(frame) {
            Ok(message) => message,
            Err(error) => return self.fail(error.code(), error.to_string()),
        };
        match (self.phase, message) {
            (
                SessionPhase::AwaitingHello,
                ClientToFrontend::Hello {
                    version,
                    session_token,
                    client_name,
                },
            ) => {
                match negotiate_version(version, PROTOCOL_VERSION..=PROTOCOL_VERSION) {
                    Ok(version) => self.version = version,
                    Err(error) => {
                        return self.fail(ErrorCode::UnsupportedVersion, error.to_string());
                    }
                }
                self.client_name.clone_from(&client_name);
                SessionEvent::Hello {
                    session_token,
                    client_name,
                }
            }
            (_, ClientToFrontend::Error { code, text }) => {
                log::debug!("client {:?} sent error {code:?}: {text}", self.conn);
                self.phase = SessionPhase::Closed;
                SessionEvent::Close {
                    reason: CloseReason::PeerError(code),
                    error_frame: None,
                }
            }
            (SessionPhase::AwaitingHello, other) => self.fail(
                ErrorCode::UnexpectedFrame,
                format!("expected Hello, got {:?}", other.frame_type()),
            ),
            (_, ClientToFrontend::Hello { .. }) => {
                self.fail(ErrorCode::UnexpectedFrame, "a second Hello".to_owned())
            }
            (_, ClientToFrontend::Ping { nonce }) => {
                SessionEvent::Reply(FrontendToClient::Pong { nonce }.encode_to_bytes())
            }
            (_, ClientToFrontend::Pong { .. }) => SessionEvent::Nothing,
            (_, ClientToFrontend::Subscribe { world, since }) => {
                SessionEvent::Subscribe { world, since }
            }
            (_, ClientToFrontend::Unsubscribe { world }) => SessionEvent::Unsubscribe { world },
            (_, ClientToFrontend::Input { world, payload }) => {
                SessionEvent::Input { world, payload }
            }
            (_, ClientToFrontend::Join { token }) => SessionEvent::Join { token },
        }
    }

    /// Handles a frame the shell's decoder could not even frame (bad length, unknown
    /// type): an `Error` frame and a close.
    pub fn handle_malformed(&mut self, error: &flotilla_wire::WireError) -> SessionEvent {
        if self.phase == SessionPhase::Closed {
            return SessionEvent::Nothing;
        }
        self.fail(error.code(), error.to_string())
    }

    /// Completes the handshake after [`SessionEvent::Hello`]: the connection now carries
    /// `session` and is kept alive with `keep_alive` (the welcomed client's intervals,
    /// which replace the handshake's). Returns the `Welcome` frame to send.
    pub fn open(
        &mut self,
        session: SessionId,
        session_token: Bytes,
        resumed: bool,
        server_id: &str,
        keep_alive: KeepAliveConfig,
    ) -> Bytes {
        self.phase = SessionPhase::Open { session };
        self.keep_alive.set_config(keep_alive);
        FrontendToClient::Welcome {
            version: self.version,
            session_token,
            resumed,
            server_id: server_id.to_owned(),
        }
        .encode_to_bytes()
    }

    /// The next instant [`on_timeout`](Self::on_timeout) has something to do.
    pub fn deadline(&self) -> Option<Instant> {
        if self.phase == SessionPhase::Closed {
            return None;
        }
        self.keep_alive.deadline()
    }

    /// Keep-alive at `now` ([`flotilla_conn::KeepAlive`]): a ping after the quiet interval
    /// (only once welcomed), a close with `Error{Timeout}` after the silence timeout.
    pub fn on_timeout(&mut self, now: Instant) -> SessionEvent {
        if self.phase == SessionPhase::Closed {
            return SessionEvent::Nothing;
        }
        match self.keep_alive.poll(now) {
            Some(KeepAliveAction::Close { silent_for }) => self
                .fail(ErrorCode::Timeout, flotilla_conn::silence_text(silent_for))
                .with_reason(CloseReason::IdleTimeout),
            Some(KeepAliveAction::Ping { nonce })
                if matches!(self.phase, SessionPhase::Open { .. }) =>
            {
                SessionEvent::Reply(FrontendToClient::Ping { nonce }.encode_to_bytes())
            }
            _ => SessionEvent::Nothing,
        }
    }

    /// The shell stopped reading every client (backpressure from a full game link): this
    /// client's silence does not count until [`reading_resumed`](Self::reading_resumed).
    pub fn reading_paused(&mut self) {
        self.keep_alive.pause();
    }

    /// The shell reads this connection again at `now`: the time the front-end did not read
    /// counts as activity, not as the client's silence.
    pub fn reading_resumed(&mut self, now: Instant) {
        self.keep_alive.resume(now);
    }

    /// Records that something was sent to the client at `now` (resets the ping timer).
    pub fn note_sent(&mut self, now: Instant) {
        if self.unwritten_since.is_none() {
            self.unwritten_since = Some(now);
        }
        self.keep_alive.on_sent(now);
    }

    /// Asks the send budget whether a frame of `len` bytes of kind `traffic` may be queued;
    /// accepted frames are counted as queued.
    pub fn offer(
        &mut self,
        len: usize,
        traffic: Traffic,
        send_budget: usize,
        max_queued_bytes: usize,
    ) -> Offer {
        match traffic {
            Traffic::Batch | Traffic::CatchUp if self.congested => {
                return Offer::Dropped {
                    newly_congested: false,
                };
            }
            Traffic::Batch | Traffic::CatchUp
                if self.queued_bytes.saturating_add(len) > send_budget =>
            {
                self.congested = true;
                return Offer::Dropped {
                    newly_congested: true,
                };
            }
            _ if self.queued_bytes.saturating_add(len) > max_queued_bytes => {
                return Offer::Overloaded;
            }
            _ => {}
        }
        self.queued_bytes = self.queued_bytes.saturating_add(len);
        Offer::Accepted
    }

    /// Records that `bytes` were discarded from the shell's queue (dropped batches). They
    /// no longer count against the budget, but a congested connection stays congested
    /// until its socket actually takes data again ([`drained`](Self::drained)).
    pub fn discarded(&mut self, bytes: usize) {
        self.queued_bytes = self.queued_bytes.saturating_sub(bytes);
        if self.queued_bytes == 0 {
            self.unwritten_since = None;
        }
    }

    /// Records that `bytes` were written to the socket (0 when the socket proved writable
    /// with nothing left to write). Returns true when a congested connection has drained
    /// to `watermark` or below: it is no longer congested and its subscriptions must be
    /// resynced.
    pub fn drained(&mut self, bytes: usize, watermark: usize) -> bool {
        self.queued_bytes = self.queued_bytes.saturating_sub(bytes);
        if self.queued_bytes == 0 {
            self.unwritten_since = None;
        }
        if self.congested && self.queued_bytes <= watermark {
            self.congested = false;
            return true;
        }
        false
    }

    fn fail(&mut self, code: ErrorCode, text: String) -> SessionEvent {
        log::debug!("closing client {:?}: {code:?}: {text}", self.conn);
        self.phase = SessionPhase::Closed;
        SessionEvent::Close {
            reason: CloseReason::Protocol(code),
            error_frame: Some(FrontendToClient::Error { code, text }.encode_to_bytes()),
        }
    }
}

impl SessionEvent {
    fn with_reason(self, new_reason: CloseReason) -> Self {
        match self {
            SessionEvent::Close { error_frame, .. } => SessionEvent::Close {
                reason: new_reason,
                error_frame,
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use flotilla_wire::{Decoder, FrontendToClient};

    use std::time::Duration;

    fn at(secs: u64) -> Instant {
        Instant::from_millis(secs * 1000)
    }

    #[test]
    fn subscriptions_keep_the_order_and_the_encoding_of_a_set() {
        let world = |name: &str| WorldId::new(name).unwrap();
        let mut subscriptions = Subscriptions::default();
        let mut set = BTreeSet::new();
        for name in ["m", "c", "x", "a", "c", "m", "b"] {
            assert_eq!(
                subscriptions.insert(world(name)),
                set.insert(world(name)),
                "{name}"
            );
        }
        assert!(subscriptions.iter().eq(set.iter()));
        assert_eq!(subscriptions.len(), set.len());
        assert_eq!(subscriptions.first(), set.first());
        for world_at in &set {
            assert!(subscriptions.contains(world_at));
            let next = set
                .range::<WorldId, _>((
                    std::ops::Bound::Excluded(world_at),
                    std::ops::Bound::Unbounded,
                ))
                .next();
            assert_eq!(subscriptions.after(world_at), next);
        }
        assert_eq!(subscriptions.after(&world("0")), Some(&world("a")));
        // Checkpoints hold the same bytes as they did with a set.
        let encoded = postcard::to_stdvec(&subscriptions).unwrap();
        assert_eq!(encoded, postcard::to_stdvec(&set).unwrap());
        assert_eq!(
            postcard::from_bytes::<Subscriptions>(&encoded).unwrap(),
            subscriptions
        );
        for name in ["a", "q", "m", "b"] {
            assert_eq!(
                subscriptions.remove(&world(name)),
                set.remove(&world(name)),
                "{name}"
            );
            assert!(subscriptions.iter().eq(set.iter()));
            assert_eq!(subscriptions.first(), set.first());
        }
        assert!(subscriptions.into_iter().eq(set));
    }

    fn keep_alive(ping_secs: u64, idle_secs: u64) -> KeepAliveConfig {
        KeepAliveConfig::new(
            Duration::from_secs(ping_secs),
            Duration::from_secs(idle_secs),
        )
    }

    fn raw(message: &ClientToFrontend) -> RawFrame {
        RawFrame::parse(message.encode_to_bytes(), 1 << 20).unwrap()
    }

    fn hello(token: Option<&'static [u8]>) -> RawFrame {
        raw(&ClientToFrontend::Hello {
            version: PROTOCOL_VERSION,
            session_token: token.map(Bytes::from_static),
            client_name: "tester".into(),
        })
    }

    fn decode(bytes: &Bytes) -> FrontendToClient {
        let mut decoder = Decoder::default();
        decoder.feed(bytes);
        decoder.next_message().unwrap().unwrap()
    }

    fn error_code(event: &SessionEvent) -> ErrorCode {
        match event {
            SessionEvent::Close {
                error_frame: Some(frame),
                ..
            } => match decode(frame) {
                FrontendToClient::Error { code, .. } => code,
                other => panic!("not an error: {other:?}"),
            },
            other => panic!("not a close with error: {other:?}"),
        }
    }

    #[test]
    fn handshake_then_ping_is_answered_with_the_same_nonce() {
        let mut session = Session::new(ConnId(1), at(0), keep_alive(2, 6));
        let event = session.handle_frame(at(0), &hello(Some(b"token")));
        assert_eq!(
            event,
            SessionEvent::Hello {
                session_token: Some(Bytes::from_static(b"token")),
                client_name: "tester".into()
            }
        );
        let welcome = session.open(
            SessionId(9),
            Bytes::from_static(b"t"),
            true,
            "fe-1",
            keep_alive(2, 60),
        );
        assert_eq!(
            decode(&welcome),
            FrontendToClient::Welcome {
                version: 1,
                session_token: Bytes::from_static(b"t"),
                resumed: true,
                server_id: "fe-1".into()
            }
        );
        assert_eq!(session.session_id(), Some(SessionId(9)));
        let event = session.handle_frame(at(1), &raw(&ClientToFrontend::Ping { nonce: 77 }));
        let SessionEvent::Reply(pong) = event else {
            panic!("no pong: {event:?}")
        };
        assert_eq!(decode(&pong), FrontendToClient::Pong { nonce: 77 });
    }

    #[test]
    fn frames_before_hello_and_wrong_versions_are_refused() {
        let mut session = Session::new(ConnId(1), at(0), keep_alive(2, 6));
        let event = session.handle_frame(at(0), &raw(&ClientToFrontend::Ping { nonce: 1 }));
        assert_eq!(error_code(&event), ErrorCode::UnexpectedFrame);
        assert_eq!(session.phase(), SessionPhase::Closed);
        // Closed sessions ignore everything after.
        assert_eq!(
            session.handle_frame(at(0), &hello(None)),
            SessionEvent::Nothing
        );

        let mut session = Session::new(ConnId(2), at(0), keep_alive(2, 6));
        let event = session.handle_frame(
            at(0),
            &raw(&ClientToFrontend::Hello {
                version: 2,
                session_token: None,
                client_name: String::new(),
            }),
        );
        assert_eq!(error_code(&event), ErrorCode::UnsupportedVersion);
    }

    #[test]
    fn a_frame_of_the_wrong_direction_is_an_unexpected_frame_error() {
        let mut session = Session::new(ConnId(1), at(0), keep_alive(2, 6));
        session.handle_frame(at(0), &hello(None));
        session.open(SessionId(1), Bytes::new(), false, "fe", keep_alive(2, 60));
        // A Welcome is a front-end-to-client frame: not allowed from a client.
        let mut out = BytesMut::new();
        FrontendToClient::Welcome {
            version: 1,
            session_token: Bytes::new(),
            resumed: false,
            server_id: String::new(),
        }
        .encode(&mut out);
        let event = session.handle_frame(at(1), &RawFrame::parse(out.freeze(), 1 << 20).unwrap());
        assert_eq!(error_code(&event), ErrorCode::UnexpectedFrame);
    }

    #[test]
    fn keep_alive_pings_a_quiet_client_and_closes_a_silent_one() {
        let mut session = Session::new(ConnId(1), at(0), keep_alive(2, 6));
        session.handle_frame(at(0), &hello(None));
        session.open(SessionId(1), Bytes::new(), false, "fe", keep_alive(2, 6));
        session.note_sent(at(0));
        assert_eq!(session.deadline(), Some(at(2)));
        assert_eq!(session.on_timeout(at(1)), SessionEvent::Nothing);
        let SessionEvent::Reply(ping) = session.on_timeout(at(2)) else {
            panic!("no ping")
        };
        assert_eq!(decode(&ping), FrontendToClient::Ping { nonce: 1 });
        // Receiving anything resets the idle timer.
        session.handle_frame(at(5), &raw(&ClientToFrontend::Pong { nonce: 1 }));
        session.note_sent(at(5));
        assert_eq!(session.deadline(), Some(at(7)));
        let SessionEvent::Reply(ping) = session.on_timeout(at(10)) else {
            panic!("no second ping")
        };
        assert_eq!(decode(&ping), FrontendToClient::Ping { nonce: 2 });
        assert_eq!(session.deadline(), Some(at(11)));
        let event = session.on_timeout(at(11));
        assert_eq!(error_code(&event), ErrorCode::Timeout);
        assert!(matches!(
            event,
            SessionEvent::Close {
                reason: CloseReason::IdleTimeout,
                ..
            }
        ));
        assert_eq!(session.deadline(), None, "closed");
    }

    #[test]
    fn time_not_read_by_the_front_end_is_not_silence() {
        let mut session = Session::new(ConnId(1), at(0), keep_alive(10, 6));
        session.handle_frame(at(0), &hello(None));
        session.open(SessionId(1), Bytes::new(), false, "fe", keep_alive(10, 6));
        // Reading was paused from 1 s to 20 s: the idle timer starts again at 20 s.
        session.reading_paused();
        // Paused, it still pings (at 10 s), but is not closed for the silence.
        assert!(matches!(session.on_timeout(at(19)), SessionEvent::Reply(_)));
        assert_eq!(session.on_timeout(at(19)), SessionEvent::Nothing);
        session.reading_resumed(at(20));
        session.note_sent(at(20));
        assert_eq!(session.on_timeout(at(25)), SessionEvent::Nothing);
        let event = session.on_timeout(at(26));
        assert_eq!(error_code(&event), ErrorCode::Timeout);
        // A resume older than the last frame does not move the timer back.
        let mut session = Session::new(ConnId(2), at(0), keep_alive(1, 6));
        session.handle_frame(at(10), &hello(None));
        session.reading_paused();
        session.reading_resumed(at(5));
        assert_eq!(session.deadline(), Some(at(1)), "the ping, not the close");
        assert_eq!(session.on_timeout(at(15)), SessionEvent::Nothing);
    }

    #[test]
    fn the_welcome_replaces_the_handshake_timeout_with_the_welcomed_clients_backstop() {
        // Until its Hello a client has 6 s; once welcomed, a client that only listens
        // (its kernel answers for it) is closed by the frame-silence backstop, 60 s.
        let mut session = Session::new(ConnId(1), at(0), keep_alive(2, 6));
        session.handle_frame(at(5), &hello(None));
        session.open(SessionId(1), Bytes::new(), false, "fe", keep_alive(2, 60));
        for t in 6..65 {
            // The front-end writes to it all the time: no pings, no close.
            session.note_sent(at(t));
            assert_eq!(session.on_timeout(at(t)), SessionEvent::Nothing, "at {t} s");
        }
        let event = session.on_timeout(at(65));
        assert_eq!(error_code(&event), ErrorCode::Timeout);
    }

    #[test]
    fn a_connection_that_never_says_hello_times_out() {
        let mut session = Session::new(ConnId(1), at(3), keep_alive(1, 6));
        assert_eq!(
            session.on_timeout(at(8)),
            SessionEvent::Nothing,
            "no ping before the handshake"
        );
        let event = session.on_timeout(at(9));
        assert_eq!(error_code(&event), ErrorCode::Timeout);
    }

    #[test]
    fn grants_replace_per_world_expire_and_are_bounded() {
        let mut session = Session::new(ConnId(1), at(0), keep_alive(2, 6));
        let arena = WorldId::new("arena").unwrap();
        assert!(!session.allows(&arena, Some(10), false));
        session
            .grant(arena.clone(), Role::Observer, 100, Some(10))
            .unwrap();
        assert!(session.allows(&arena, Some(10), false));
        assert!(
            !session.allows(&arena, Some(10), true),
            "observers send no input"
        );
        assert!(!session.allows(&arena, Some(100), false), "expired");
        assert!(!session.allows(&arena, None, false), "time unknown");
        session
            .grant(arena.clone(), Role::Player, 200, Some(10))
            .unwrap();
        assert!(session.allows(&arena, Some(150), true));
        for i in 1..MAX_GRANTS_PER_CONNECTION {
            let world = WorldId::new(&format!("w{i}")).unwrap();
            session.grant(world, Role::Player, 50, Some(10)).unwrap();
        }
        let extra = WorldId::new("extra").unwrap();
        assert!(
            session
                .grant(extra.clone(), Role::Player, 300, Some(10))
                .is_err()
        );
        // Once the others expired, their room is taken back.
        session
            .grant(extra.clone(), Role::Player, 300, Some(60))
            .unwrap();
        assert!(session.allows(&extra, Some(60), true));
        assert!(session.allows(&arena, Some(60), true));
        // Joins have a budget of their own.
        let mut session = Session::new(ConnId(2), at(0), keep_alive(2, 6));
        assert!((0..JOIN_BURST).all(|_| session.take_join(at(0))));
        assert!(!session.take_join(at(0)));
        assert!(session.take_join(at(1)));
    }

    #[test]
    fn budget_drops_batches_past_the_limit_and_recovers_under_the_watermark() {
        let mut session = Session::new(ConnId(1), at(0), keep_alive(2, 6));
        assert_eq!(
            session.offer(60, Traffic::Batch, 100, 1000),
            Offer::Accepted
        );
        assert_eq!(
            session.offer(60, Traffic::Batch, 100, 1000),
            Offer::Dropped {
                newly_congested: true
            }
        );
        assert!(session.is_congested());
        // Small batches are dropped too while congested; control frames still go.
        assert_eq!(
            session.offer(1, Traffic::Batch, 100, 1000),
            Offer::Dropped {
                newly_congested: false
            }
        );
        assert_eq!(
            session.offer(500, Traffic::Snapshot, 100, 1000),
            Offer::Accepted
        );
        // Nothing passes the hard limit, not even control frames or snapshots.
        assert_eq!(
            session.offer(500, Traffic::Snapshot, 100, 1000),
            Offer::Overloaded
        );
        assert_eq!(
            session.offer(1000, Traffic::Control, 100, 1000),
            Offer::Overloaded
        );
        assert_eq!(
            session.offer(10, Traffic::Control, 100, 1000),
            Offer::Accepted
        );
        assert_eq!(session.queued_bytes(), 570);
        assert_eq!(
            session.offer(500, Traffic::Output, 100, 1000),
            Offer::Overloaded
        );
        assert!(
            !session.drained(500, 25),
            "570 - 500 = 70 is above the watermark"
        );
        assert!(session.drained(50, 25));
        assert!(!session.is_congested());
        assert_eq!(
            session.offer(60, Traffic::Batch, 100, 1000),
            Offer::Accepted
        );
    }
}
