//! The game link's two machines: one per connection to a game server.
//!
//! - [`GameLink`] lives in the [`Frontend`](crate::Frontend): it sends the front-end's
//!   `GameHello`, waits for the `GameWelcome`, hands everything else the game server says
//!   to the front-end as decoded messages, and closes a link that stopped reading (its
//!   outbound queue stays over the limit with nothing written).
//! - [`GameLinkKeeper`] lives with the link's socket, on the shell's game-link thread: it
//!   answers the game server's pings, pings a quiet link, and closes a silent one
//!   ([`flotilla_conn::KeepAlive`], the rule of PROTOCOL.md section 7). It is apart from
//!   the front-end's machine on purpose: the front-end's event loop may be held for
//!   seconds by fan-out to tens of thousands of observers on a starved core, and a game
//!   server closes a link it has not heard from for 3 s. Keeping the link alive must not
//!   wait for that loop.
use bytes::Bytes;
use flotilla_wire::{
    ErrorCode, FrontendToGame, GameToFrontend, Message, PROTOCOL_VERSION, RawFrame,
};

use crate::frontend::CloseReason;
use crate::ids::GameId;
use flotilla_conn::{Instant, KeepAlive, KeepAliveAction, KeepAliveConfig, negotiate_version};
use flotilla_wire::FrameType;
use std::time::Duration;

/// Where a game link is in its life.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LinkState {
    /// `GameHello` sent, `GameWelcome` not received yet.
    AwaitingWelcome,
    /// Handshake done.
    Ready {
        /// The game server's id, for logs.
        server_id: String,
    },
    /// Closed by the machine (error, timeout).
    Closed,
}

/// What the [`Frontend`](crate::Frontend) must do after a game link handled an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GameLinkEvent {
    /// Nothing to do.
    Nothing,
    /// The handshake completed: the game server can be routed to.
    Welcomed,
    /// A message for the front-end: world announcements, snapshots, batches, outputs.
    Message(GameToFrontend),
    /// Close the link, after sending `error_frame` if there is one.
    Close {
        /// Why.
        reason: CloseReason,
        /// The `Error` frame to send first.
        error_frame: Option<Bytes>,
    },
}

/// The state of one game-server connection.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct GameLink {
    game: GameId,
    state: LinkState,
    /// How long the queue may stay over the limit with nothing written.
    stall_limit: Duration,
    /// Bytes handed to the shell for this link and not yet reported written.
    queued_bytes: usize,
    /// Since when the queue is over the limit (reset when it goes under).
    over_limit_since: Option<Instant>,
    /// When bytes were last written to the game server's socket.
    last_written: Instant,
}

impl GameLink {
    /// A link connected at `now`; send [`hello`](Self::hello) first. A link whose queue
    /// stays over the limit with nothing written for `stall_limit` is closed.
    pub fn new(game: GameId, now: Instant, stall_limit: Duration) -> Self {
        Self {
            game,
            state: LinkState::AwaitingWelcome,
            stall_limit,
            queued_bytes: 0,
            over_limit_since: None,
            last_written: now,
        }
    }

    /// The game-server connection this machine serves.
    pub fn game(&self) -> GameId {
        self.game
    }

    /// Where the link is in its life.
    pub fn state(&self) -> &LinkState {
        &self.state
    }

    /// True once the game server welcomed the front-end.
    pub fn is_ready(&self) -> bool {
        matches!(self.state, LinkState::Ready { .. })
    }

    /// The `GameHello` frame that opens the link.
    pub fn hello(&self, frontend_id: &str) -> Bytes {
        FrontendToGame::Hello {
            version: PROTOCOL_VERSION,
            frontend_id: frontend_id.to_owned(),
        }
        .encode_to_bytes()
    }

    /// Handles one frame received from the game server (pings and pongs are the
    /// [`GameLinkKeeper`]'s: the shell does not pass them on).
    pub fn handle_frame(&mut self, frame: &RawFrame) -> GameLinkEvent {
        if self.state == LinkState::Closed {
            return GameLinkEvent::Nothing;
        }
        let message = match GameToFrontend::decode(frame) {
            Ok(message) => message,
            Err(error) => return self.fail(error.code(), error.to_string()),
        };
        match (&self.state, message) {
            (LinkState::AwaitingWelcome, GameToFrontend::Welcome { version, server_id }) => {
                if let Err(error) = negotiate_version(version, PROTOCOL_VERSION..=PROTOCOL_VERSION)
                {
                    return self.fail(
                        ErrorCode::UnsupportedVersion,
                        format!("the game server answered with {error}"),
                    );
                }
                log::info!("game link {:?}: welcomed by {server_id}", self.game);
                self.state = LinkState::Ready { server_id };
                GameLinkEvent::Welcomed
            }
            (_, GameToFrontend::Error { code, text }) => {
                log::warn!(
                    "game link {:?}: game server sent error {code:?}: {text}",
                    self.game
                );
                self.state = LinkState::Closed;
                GameLinkEvent::Close {
                    reason: CloseReason::PeerError(code),
                    error_frame: None,
                }
            }
            (LinkState::AwaitingWelcome, other) => self.fail(
                ErrorCode::UnexpectedFrame,
                format!("expected GameWelcome, got {:?}", other.frame_type()),
            ),
            (_, GameToFrontend::Welcome { .. }) => self.fail(
                ErrorCode::UnexpectedFrame,
                "a second GameWelcome".to_owned(),
            ),
            (_, GameToFrontend::Ping { .. } | GameToFrontend::Pong { .. }) => {
                GameLinkEvent::Nothing
            }
            (_, message) => GameLinkEvent::Message(message),
        }
    }

    /// Handles bytes the shell's decoder could not frame: an `Error` frame and a close.
    pub fn handle_malformed(&mut self, error: &flotilla_wire::WireError) -> GameLinkEvent {
        if self.state == LinkState::Closed {
            return GameLinkEvent::Nothing;
        }
        self.fail(error.code(), error.to_string())
    }

    /// The next instant [`on_timeout`](Self::on_timeout) has something to do: the end
    /// of a stall's grace.
    pub fn deadline(&self, max_queued_bytes: usize) -> Option<Instant> {
        if self.state == LinkState::Closed {
            return None;
        }
        self.stalled_since(max_queued_bytes)
            .map(|since| since + self.stall_limit)
    }

    /// Closes the link with `Error{Overloaded}` when its outbound queue has stayed over
    /// `max_queued_bytes` with nothing written for the stall limit (a game server that
    /// pings but does not read).
    pub fn on_timeout(&mut self, now: Instant, max_queued_bytes: usize) -> GameLinkEvent {
        if self.state == LinkState::Closed {
            return GameLinkEvent::Nothing;
        }
        match self.stalled_since(max_queued_bytes) {
            Some(stalled_since) if now - stalled_since >= self.stall_limit => self.fail(
                ErrorCode::Overloaded,
                format!(
                    "{} bytes queued and nothing written for {:.1} s: \
                         the game server does not read",
                    self.queued_bytes,
                    (now - stalled_since).as_secs_f64()
                ),
            ),
            _ => GameLinkEvent::Nothing,
        }
    }

    /// Records that a frame of `len` bytes was handed to the shell for the game server at
    /// `now` (counts towards `max_queued_bytes`).
    pub fn note_sent(&mut self, now: Instant, len: usize, max_queued_bytes: usize) {
        self.queued_bytes = self.queued_bytes.saturating_add(len);
        if self.queued_bytes > max_queued_bytes && self.over_limit_since.is_none() {
            self.over_limit_since = Some(now);
        }
    }

    /// Records that `bytes` left the shell's queue for the game server at `now` (written,
    /// or discarded after a write error).
    pub fn drained(&mut self, now: Instant, bytes: usize, max_queued_bytes: usize) {
        self.queued_bytes = self.queued_bytes.saturating_sub(bytes);
        if bytes > 0 {
            self.last_written = now;
        }
        if self.queued_bytes <= max_queued_bytes {
            self.over_limit_since = None;
        }
    }

    /// Bytes handed to the shell for this link and not yet reported drained.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Since when the link is over `max_queued_bytes` with nothing written (the later of
    /// crossing the limit and the last write), or `None` while under it.
    fn stalled_since(&self, max_queued_bytes: usize) -> Option<Instant> {
        if self.queued_bytes <= max_queued_bytes {
            return None;
        }
        self.over_limit_since
            .map(|since| since.max(self.last_written))
    }

    fn fail(&mut self, code: ErrorCode, text: String) -> GameLinkEvent {
        log::warn!("closing game link {:?}: {code:?}: {text}", self.game);
        self.state = LinkState::Closed;
        GameLinkEvent::Close {
            reason: CloseReason::Protocol(code),
            error_frame: Some(FrontendToGame::Error { code, text }.encode_to_bytes()),
        }
    }
}

/// What the [`GameLinkKeeper`] makes of a frame from the game server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// A frame for the front-end's machine: pass it on.
    Forward,
    /// A ping: write this pong back (the front-end's machine never sees it).
    Answer(Bytes),
    /// A pong: it only proved the game server alive.
    Consumed,
}

/// What the [`GameLinkKeeper`] says to do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeeperAction {
    /// Write this `Ping` (the link was quiet for the ping interval).
    Ping(Bytes),
    /// The game server was silent for the silence timeout: write this `Error{Timeout}`
    /// and close the link.
    Close {
        /// The `Error` frame.
        error_frame: Bytes,
        /// Why, for the log.
        text: String,
    },
}

/// The liveness of one game link ([`flotilla_conn::KeepAlive`]), kept beside its
/// socket rather than in the front-end's machine (see the module comment).
///
/// Pings start once the game server's `GameWelcome` has passed (a ping before the
/// `GameHello` is answered would be a protocol error); the silence timeout runs from the
/// connection.
#[derive(Debug, Clone)]
pub struct GameLinkKeeper {
    keep_alive: KeepAlive,
    ready: KeepAliveConfig,
}

impl GameLinkKeeper {
    /// A link connected at `now`, to be kept alive with `ready`'s intervals once welcomed.
    pub fn new(now: Instant, ready: KeepAliveConfig) -> Self {
        Self {
            keep_alive: KeepAlive::new(
                KeepAliveConfig::new(Duration::ZERO, ready.close_after_silence),
                now,
            ),
            ready,
        }
    }

    /// A whole frame arrived from the game server at `now`.
    pub fn on_frame(&mut self, now: Instant, frame: &RawFrame) -> Heard {
        self.keep_alive.on_received(now);
        match frame.frame_type() {
            FrameType::GameWelcome => {
                self.keep_alive.set_config(self.ready);
                Heard::Forward
            }
            FrameType::Ping => match GameToFrontend::decode(frame) {
                Ok(GameToFrontend::Ping { nonce }) => {
                    Heard::Answer(FrontendToGame::Pong { nonce }.encode_to_bytes())
                }
                // A malformed ping is the machine's to report (it closes the link).
                _ => Heard::Forward,
            },
            FrameType::Pong => Heard::Consumed,
            _ => Heard::Forward,
        }
    }

    /// Bytes from the game server wait unread at `now` (the front-end is behind, not the
    /// game server silent): it counts as heard.
    pub fn on_bytes_waiting(&mut self, now: Instant) {
        self.keep_alive.on_received(now);
    }

    /// A frame was queued for the game server at `now` (the ping timer starts again).
    pub fn on_sent(&mut self, now: Instant) {
        self.keep_alive.on_sent(now);
    }

    /// When [`poll`](Self::poll) next has something to do.
    pub fn deadline(&self) -> Option<Instant> {
        self.keep_alive.deadline()
    }

    /// What to do at `now`: close for silence, ping, or nothing.
    pub fn poll(&mut self, now: Instant) -> Option<KeeperAction> {
        match self.keep_alive.poll(now)? {
            KeepAliveAction::Ping { nonce } => Some(KeeperAction::Ping(
                FrontendToGame::Ping { nonce }.encode_to_bytes(),
            )),
            KeepAliveAction::Close { silent_for } => {
                let text = flotilla_conn::silence_text(silent_for);
                Some(KeeperAction::Close {
                    error_frame: FrontendToGame::Error {
                        code: ErrorCode::Timeout,
                        text: text.clone(),
                    }
                    .encode_to_bytes(),
                    text,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_wire::{Decoder, WorldId};

    use std::time::Duration;

    const SECOND: Duration = Duration::from_secs(1);

    fn t(since_start: Duration) -> Instant {
        Instant::from_duration(since_start)
    }

    fn keep() -> KeepAliveConfig {
        KeepAliveConfig::new(SECOND, 3 * SECOND)
    }

    fn raw(message: &GameToFrontend) -> RawFrame {
        RawFrame::parse(message.encode_to_bytes(), 1 << 20).unwrap()
    }

    fn decode(bytes: &Bytes) -> FrontendToGame {
        let mut decoder = Decoder::default();
        decoder.feed(bytes);
        decoder.next_message().unwrap().unwrap()
    }

    #[test]
    fn handshake_then_messages_pass_through() {
        let mut link = GameLink::new(GameId(1), Instant::ZERO, 3 * SECOND);
        assert_eq!(
            decode(&link.hello("fe-1")),
            FrontendToGame::Hello {
                version: 1,
                frontend_id: "fe-1".into()
            }
        );
        let welcome = GameToFrontend::Welcome {
            version: 1,
            server_id: "game".into(),
        };
        assert_eq!(link.handle_frame(&raw(&welcome)), GameLinkEvent::Welcomed);
        assert!(link.is_ready());
        let added = GameToFrontend::WorldAdded {
            world: WorldId::new("a").unwrap(),
            info: Bytes::new(),
        };
        assert_eq!(
            link.handle_frame(&raw(&added)),
            GameLinkEvent::Message(added.clone())
        );
        // Pings and pongs are the keeper's: the machine ignores any that reach it.
        assert_eq!(
            link.handle_frame(&raw(&GameToFrontend::Ping { nonce: 5 })),
            GameLinkEvent::Nothing
        );
    }

    #[test]
    fn anything_before_the_welcome_closes_the_link() {
        let mut link = GameLink::new(GameId(1), Instant::ZERO, 3 * SECOND);
        let event = link.handle_frame(&raw(&GameToFrontend::WorldRemoved {
            world: WorldId::new("a").unwrap(),
        }));
        let GameLinkEvent::Close {
            reason: CloseReason::Protocol(ErrorCode::UnexpectedFrame),
            error_frame: Some(frame),
        } = event
        else {
            panic!("{event:?}")
        };
        assert!(matches!(
            decode(&frame),
            FrontendToGame::Error {
                code: ErrorCode::UnexpectedFrame,
                ..
            }
        ));
        assert_eq!(link.state(), &LinkState::Closed);
    }

    #[test]
    fn the_keeper_answers_pings_pings_a_quiet_link_once_welcomed_and_closes_a_silent_one() {
        let mut keeper = GameLinkKeeper::new(Instant::ZERO, keep());
        // Before the welcome: no pings, only the silence timeout.
        assert_eq!(keeper.deadline(), Some(t(3 * SECOND)));
        assert_eq!(keeper.poll(t(SECOND)), None);
        let welcome = raw(&GameToFrontend::Welcome {
            version: PROTOCOL_VERSION,
            server_id: "game".into(),
        });
        assert_eq!(keeper.on_frame(t(SECOND), &welcome), Heard::Forward);
        let Heard::Answer(answer) =
            keeper.on_frame(t(SECOND), &raw(&GameToFrontend::Ping { nonce: 5 }))
        else {
            panic!("a ping is answered")
        };
        assert_eq!(decode(&answer), FrontendToGame::Pong { nonce: 5 });
        keeper.on_sent(t(SECOND));
        assert_eq!(keeper.on_frame(t(SECOND), &pong(1)), Heard::Consumed);
        let batch = raw(&GameToFrontend::WorldRemoved {
            world: WorldId::new("a").unwrap(),
        });
        assert_eq!(keeper.on_frame(t(SECOND), &batch), Heard::Forward);
        // Quiet for 1 s: a ping.
        assert_eq!(keeper.poll(t(SECOND + SECOND / 2)), None);
        let Some(KeeperAction::Ping(ping)) = keeper.poll(t(2 * SECOND)) else {
            panic!("a quiet link is pinged")
        };
        assert_eq!(decode(&ping), FrontendToGame::Ping { nonce: 1 });
        // Nothing heard for 3 s: closed with Error{Timeout}.
        keeper.on_sent(t(3 * SECOND));
        let Some(KeeperAction::Close { error_frame, .. }) = keeper.poll(t(4 * SECOND)) else {
            panic!("a silent game server is closed")
        };
        assert!(matches!(
            decode(&error_frame),
            FrontendToGame::Error {
                code: ErrorCode::Timeout,
                ..
            }
        ));
    }

    #[test]
    fn bytes_waiting_unread_are_not_silence() {
        let mut keeper = GameLinkKeeper::new(Instant::ZERO, keep());
        // The front-end did not read for 5 s, but the game server's bytes wait.
        keeper.on_bytes_waiting(t(5 * SECOND));
        assert_eq!(keeper.poll(t(5 * SECOND)), None);
        assert_eq!(keeper.poll(t(7 * SECOND)), None);
        assert!(matches!(
            keeper.poll(t(8 * SECOND)),
            Some(KeeperAction::Close { .. })
        ));
    }

    fn pong(nonce: u64) -> RawFrame {
        raw(&GameToFrontend::Pong { nonce })
    }

    fn ready_link() -> GameLink {
        let mut link = GameLink::new(GameId(1), Instant::ZERO, 3 * SECOND);
        let welcome = raw(&GameToFrontend::Welcome {
            version: PROTOCOL_VERSION,
            server_id: "game".into(),
        });
        assert_eq!(link.handle_frame(&welcome), GameLinkEvent::Welcomed);
        link
    }

    #[test]
    fn a_game_server_that_pings_but_does_not_read_is_closed_as_overloaded() {
        let mut link = ready_link();
        let max = 1000;
        // Over the limit at 1 s; some bytes are written at 2 s, then nothing.
        link.note_sent(t(SECOND), 600, max);
        link.note_sent(t(SECOND), 600, max);
        link.drained(t(2 * SECOND), 100, max);
        assert_eq!(link.queued_bytes(), 1100);
        for now in [3, 4] {
            // Not stalled for 3 s yet...
            assert_eq!(
                link.on_timeout(t(now * SECOND), max),
                GameLinkEvent::Nothing,
                "at {now} s"
            );
        }
        // ...but 3 s after the last write with the queue still over the limit, it is closed.
        let GameLinkEvent::Close {
            reason,
            error_frame: Some(frame),
        } = link.on_timeout(t(5 * SECOND), max)
        else {
            panic!("not closed")
        };
        assert_eq!(reason, CloseReason::Protocol(ErrorCode::Overloaded));
        assert!(matches!(
            decode(&frame),
            FrontendToGame::Error {
                code: ErrorCode::Overloaded,
                ..
            }
        ));
    }

    #[test]
    fn a_slow_but_reading_game_server_is_kept() {
        let mut link = ready_link();
        let max = 1000;
        link.note_sent(t(Duration::ZERO), 5000, max);
        for now in 1..10 {
            // A little is written every second: over the limit all along, but not stuck.
            link.drained(t(now * SECOND), 10, max);
            assert_eq!(
                link.on_timeout(t(now * SECOND), max),
                GameLinkEvent::Nothing
            );
        }
        // Under the limit, a link is never closed for not writing.
        link.drained(t(10 * SECOND), 5000, max);
        assert_eq!(link.on_timeout(t(20 * SECOND), max), GameLinkEvent::Nothing);
        // Crossing the limit again starts the clock at the crossing.
        link.note_sent(t(20 * SECOND), 2000, max);
        assert_eq!(link.on_timeout(t(22 * SECOND), max), GameLinkEvent::Nothing);
        assert!(matches!(
            link.on_timeout(t(23 * SECOND), max),
            GameLinkEvent::Close { .. }
        ));
    }
}
