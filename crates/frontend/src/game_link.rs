//! The game link machine: one per connection to a game server.
//!
//! It sends the front-end's `GameHello`, waits for the `GameWelcome`, answers pings, pings
//! a quiet game server and closes a silent one, and closes one that stopped reading (its
//! outbound queue stays over the limit with nothing written). Everything else the game server says is
//! handed to the [`Frontend`](crate::Frontend) as a decoded message.

use bytes::Bytes;
use flotilla_wire::{
    ErrorCode, FrontendToGame, GameToFrontend, Message, PROTOCOL_VERSION, RawFrame,
};

use crate::frontend::CloseReason;
use crate::ids::GameId;
use flotilla_conn::{Instant, KeepAlive, KeepAliveAction, KeepAliveConfig, negotiate_version};

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
    /// Send this frame to the game server (a pong, a keep-alive ping).
    Reply(Bytes),
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
    keep_alive: KeepAlive,
    /// Bytes handed to the shell for this link and not yet reported written.
    queued_bytes: usize,
    /// Since when the queue is over the limit (reset when it goes under).
    over_limit_since: Option<Instant>,
    /// When bytes were last written to the game server's socket.
    last_written: Instant,
}

impl GameLink {
    /// A link connected at `now`, kept alive with `keep_alive`'s intervals; send
    /// [`hello`](Self::hello) first.
    pub fn new(game: GameId, now: Instant, keep_alive: KeepAliveConfig) -> Self {
        Self {
            game,
            state: LinkState::AwaitingWelcome,
            keep_alive: KeepAlive::new(keep_alive, now),
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

    /// Handles one frame received from the game server at `now`.
    pub fn handle_frame(&mut self, now: Instant, frame: &RawFrame) -> GameLinkEvent {
        if self.state == LinkState::Closed {
            return GameLinkEvent::Nothing;
        }
        self.keep_alive.on_received(now);
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
            (_, GameToFrontend::Ping { nonce }) => {
                GameLinkEvent::Reply(FrontendToGame::Pong { nonce }.encode_to_bytes())
            }
            (_, GameToFrontend::Pong { .. }) => GameLinkEvent::Nothing,
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

    /// The next instant [`on_timeout`](Self::on_timeout) has something to do: a
    /// keep-alive deadline, or the end of a stall's grace.
    pub fn deadline(&self, max_queued_bytes: usize) -> Option<Instant> {
        if self.state == LinkState::Closed {
            return None;
        }
        let stall = self
            .stalled_since(max_queued_bytes)
            .map(|since| since + self.keep_alive.config().close_after_silence);
        match (self.keep_alive.deadline(), stall) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Keep-alive at `now` ([`flotilla_conn::KeepAlive`]): a ping after the quiet interval,
    /// a close after the silence timeout, and a close with `Error{Overloaded}` when the
    /// outbound queue has stayed over `max_queued_bytes` with nothing written for the
    /// silence timeout (a game server that pings but does not read).
    pub fn on_timeout(&mut self, now: Instant, max_queued_bytes: usize) -> GameLinkEvent {
        if self.state == LinkState::Closed {
            return GameLinkEvent::Nothing;
        }
        let stall_limit = self.keep_alive.config().close_after_silence;
        if let Some(stalled_since) = self.stalled_since(max_queued_bytes)
            && now - stalled_since >= stall_limit
        {
            return self.fail(
                ErrorCode::Overloaded,
                format!(
                    "{} bytes queued and nothing written for {:.1} s: \
                         the game server does not read",
                    self.queued_bytes,
                    (now - stalled_since).as_secs_f64()
                ),
            );
        }
        match self.keep_alive.poll(now) {
            Some(KeepAliveAction::Close { silent_for }) => {
                match self.fail(ErrorCode::Timeout, flotilla_conn::silence_text(silent_for)) {
                    GameLinkEvent::Close { error_frame, .. } => GameLinkEvent::Close {
                        reason: CloseReason::IdleTimeout,
                        error_frame,
                    },
                    other => other,
                }
            }
            Some(KeepAliveAction::Ping { nonce }) => {
                GameLinkEvent::Reply(FrontendToGame::Ping { nonce }.encode_to_bytes())
            }
            None => GameLinkEvent::Nothing,
        }
    }

    /// Records that a frame of `len` bytes was handed to the shell for the game server at
    /// `now` (resets the ping timer; counts towards `max_queued_bytes`).
    pub fn note_sent(&mut self, now: Instant, len: usize, max_queued_bytes: usize) {
        self.keep_alive.on_sent(now);
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
        let mut link = GameLink::new(GameId(1), Instant::ZERO, keep());
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
        assert_eq!(
            link.handle_frame(t(Duration::ZERO), &raw(&welcome)),
            GameLinkEvent::Welcomed
        );
        assert!(link.is_ready());
        let added = GameToFrontend::WorldAdded {
            world: WorldId::new("a").unwrap(),
            info: Bytes::new(),
        };
        assert_eq!(
            link.handle_frame(t(SECOND), &raw(&added)),
            GameLinkEvent::Message(added.clone())
        );
        let GameLinkEvent::Reply(pong) =
            link.handle_frame(t(SECOND), &raw(&GameToFrontend::Ping { nonce: 5 }))
        else {
            panic!()
        };
        assert_eq!(decode(&pong), FrontendToGame::Pong { nonce: 5 });
    }

    #[test]
    fn anything_before_the_welcome_closes_the_link() {
        let mut link = GameLink::new(GameId(1), Instant::ZERO, keep());
        let event = link.handle_frame(
            t(Duration::ZERO),
            &raw(&GameToFrontend::WorldRemoved {
                world: WorldId::new("a").unwrap(),
            }),
        );
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
    fn a_silent_game_server_is_pinged_then_closed() {
        let mut link = GameLink::new(GameId(1), Instant::ZERO, keep());
        let max = 1 << 20;
        assert_eq!(link.on_timeout(t(SECOND / 2), max), GameLinkEvent::Nothing);
        assert!(matches!(
            link.on_timeout(t(SECOND), max),
            GameLinkEvent::Reply(_)
        ));
        link.note_sent(t(SECOND), 10, max);
        assert!(matches!(
            link.on_timeout(t(3 * SECOND), max),
            GameLinkEvent::Close {
                reason: CloseReason::IdleTimeout,
                ..
            }
        ));
    }

    fn pong(nonce: u64) -> RawFrame {
        raw(&GameToFrontend::Pong { nonce })
    }

    fn ready_link() -> GameLink {
        let mut link = GameLink::new(GameId(1), Instant::ZERO, keep());
        let welcome = raw(&GameToFrontend::Welcome {
            version: PROTOCOL_VERSION,
            server_id: "game".into(),
        });
        assert_eq!(
            link.handle_frame(t(Duration::ZERO), &welcome),
            GameLinkEvent::Welcomed
        );
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
            // The game server keeps talking: the link is not idle...
            link.handle_frame(t(now * SECOND), &pong(u64::from(now)));
            link.note_sent(t(now * SECOND), 0, max);
            assert_eq!(
                link.on_timeout(t(now * SECOND), max),
                GameLinkEvent::Nothing,
                "at {now} s"
            );
        }
        // ...but 3 s after the last write with the queue still over the limit, it is closed.
        link.handle_frame(t(5 * SECOND), &pong(5));
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
            link.handle_frame(t(now * SECOND), &pong(u64::from(now)));
            link.note_sent(t(now * SECOND), 0, max);
            assert_eq!(
                link.on_timeout(t(now * SECOND), max),
                GameLinkEvent::Nothing
            );
        }
        // Under the limit, a link is never closed for not writing.
        link.drained(t(10 * SECOND), 5000, max);
        link.handle_frame(t(20 * SECOND), &pong(20));
        link.note_sent(t(20 * SECOND), 0, max);
        assert_eq!(link.on_timeout(t(20 * SECOND), max), GameLinkEvent::Nothing);
        // Crossing the limit again starts the clock at the crossing.
        link.note_sent(t(20 * SECOND), 2000, max);
        link.handle_frame(t(22 * SECOND), &pong(22));
        link.note_sent(t(22 * SECOND), 0, max);
        assert_eq!(link.on_timeout(t(22 * SECOND), max), GameLinkEvent::Nothing);
        link.handle_frame(t(23 * SECOND), &pong(23));
        assert!(matches!(
            link.on_timeout(t(23 * SECOND), max),
            GameLinkEvent::Close { .. }
        ));
    }
}
