//! The game server's sans-I/O machines: the rules of one front-end link and of the session
//! registry, and what a subscribing front-end is sent. The tokio shell
//! ([`connection`](crate::connection), [`server`](crate::server)) and the simulator
//! (`flotilla-sim`) both run them, so the rules are written once.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use flotilla_conn::{KeepAliveConfig, negotiate_version};
use flotilla_wire::{
    ErrorCode, FrontendToGame, GameToFrontend, Message, PROTOCOL_VERSION, RawFrame, SessionId,
    WorldId, change_batch_frame, encode_snapshot,
};
use flotilla_world::{BatchRing, CatchUp, Position, WorldState};

use crate::events::FrontendId;

/// Where a front-end link is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkPhase {
    /// Connected; the front-end's `GameHello` has not arrived.
    AwaitingHello,
    /// Welcomed: the front-end gave this id in its hello.
    Ready {
        /// The front-end's own id.
        name: String,
        /// The protocol version both sides speak (negotiated from the hello's offer).
        version: u32,
    },
    /// Closed by the machine.
    Closed,
}

/// What the owner must do after a link handled a frame or a timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// Nothing.
    Nothing,
    /// Send this frame (a pong, a keep-alive ping).
    Reply(Bytes),
    /// A valid hello: send [`FrontendLink::welcome`] and a `WorldAdded` per hosted world,
    /// and start serving.
    Hello {
        /// The front-end's own id.
        name: String,
    },
    /// A message to act on (subscribe, unsubscribe, input, session changes).
    Message(FrontendToGame),
    /// Close the link after sending `error` (as an `Error` frame) if given.
    Close {
        /// The `Error` frame's code and text.
        error: Option<(ErrorCode, String)>,
        /// Why, for logs.
        reason: String,
    },
}

/// The game side of one front-end link: the handshake and pings (PROTOCOL.md sections 2
/// and 7). Its keep-alive is a [`flotilla_conn::KeepAlive`] its owner holds (the tokio
/// shell keeps it in the link's outbox, where every task's sends are counted), with the
/// intervals [`keep_alive`](Self::keep_alive) gives for the link's phase.
#[derive(Debug, Clone)]
pub struct FrontendLink {
    phase: LinkPhase,
}

impl Default for FrontendLink {
    fn default() -> Self {
        Self::new()
    }
}

impl FrontendLink {
    /// A link just accepted.
    pub fn new() -> Self {
        Self {
            phase: LinkPhase::AwaitingHello,
        }
    }

    /// Where the link is.
    pub fn phase(&self) -> &LinkPhase {
        &self.phase
    }

    /// The keep-alive intervals for the link's phase: until the hello only silence counts
    /// (a front-end that has not said hello is not pinged; PROTOCOL.md section 2), then
    /// `ready`.
    pub fn keep_alive(&self, ready: KeepAliveConfig) -> KeepAliveConfig {
        match self.phase {
            LinkPhase::Ready { .. } => ready,
            _ => KeepAliveConfig::new(std::time::Duration::ZERO, ready.close_after_silence),
        }
    }

    /// The `GameWelcome` answering the hello, naming this server `server_id` and carrying
    /// the version negotiated from the hello (this side's newest before the hello).
    pub fn welcome(&self, server_id: &str) -> Bytes {
        let version = match self.phase {
            LinkPhase::Ready { version, .. } => version,
            _ => PROTOCOL_VERSION,
        };
        GameToFrontend::Welcome {
            version,
            server_id: server_id.to_owned(),
        }
        .encode_to_bytes()
    }

    /// Handles one whole frame (the owner counts it as heard).
    pub fn handle_frame(&mut self, frame: &RawFrame) -> LinkEvent {
        if self.phase == LinkPhase::Closed {
            return LinkEvent::Nothing;
        }
        let message = match FrontendToGame::decode(frame) {
            Ok(message) => message,
            Err(error) => return self.fail(error.code(), error.to_string()),
        };
        match (&self.phase, message) {
            (
                LinkPhase::AwaitingHello,
                FrontendToGame::Hello {
                    version,
                    frontend_id,
                },
            ) => {
                let version = match negotiate_version(version, PROTOCOL_VERSION..=PROTOCOL_VERSION)
                {
                    Ok(version) => version,
                    Err(error) => {
                        return self.fail(ErrorCode::UnsupportedVersion, error.to_string());
                    }
                };
                self.phase = LinkPhase::Ready {
                    name: frontend_id.clone(),
                    version,
                };
                LinkEvent::Hello { name: frontend_id }
            }
            (_, FrontendToGame::Error { code, text }) => {
                self.phase = LinkPhase::Closed;
                LinkEvent::Close {
                    error: None,
                    reason: format!("front-end sent Error {code:?}: {text}"),
                }
            }
            (LinkPhase::AwaitingHello, _) => self.fail(
                ErrorCode::UnexpectedFrame,
                "expected GameHello first".into(),
            ),
            (_, FrontendToGame::Hello { .. }) => {
                self.fail(ErrorCode::UnexpectedFrame, "second GameHello".into())
            }
            (_, FrontendToGame::Ping { nonce }) => {
                LinkEvent::Reply(GameToFrontend::Pong { nonce }.encode_to_bytes())
            }
            (_, FrontendToGame::Pong { .. }) => LinkEvent::Nothing,
            (_, message) => LinkEvent::Message(message),
        }
    }

    /// The shell's decoder could not frame the front-end's bytes.
    pub fn handle_malformed(&mut self, error: &flotilla_wire::WireError) -> LinkEvent {
        if self.phase == LinkPhase::Closed {
            return LinkEvent::Nothing;
        }
        self.fail(error.code(), error.to_string())
    }

    /// What a keep-alive action means on this link: a ping frame to send, or a close with
    /// `Error{Timeout}`.
    pub fn on_keep_alive(&mut self, action: flotilla_conn::KeepAliveAction) -> LinkEvent {
        match action {
            flotilla_conn::KeepAliveAction::Ping { nonce } => {
                LinkEvent::Reply(GameToFrontend::Ping { nonce }.encode_to_bytes())
            }
            flotilla_conn::KeepAliveAction::Close { silent_for } => {
                self.fail(ErrorCode::Timeout, flotilla_conn::silence_text(silent_for))
            }
        }
    }

    fn fail(&mut self, code: ErrorCode, text: String) -> LinkEvent {
        self.phase = LinkPhase::Closed;
        LinkEvent::Close {
            reason: format!("{code:?}: {text}"),
            error: Some((code, text)),
        }
    }
}

/// What [`SessionRegistry::held`] found for a session a front-end announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Unknown until now: that front-end carries it (a new session for the game).
    Registered,
    /// Already carried by that front-end.
    Known,
    /// Another front-end carries it (the client resumed there while this one's link was
    /// down): answer `GameToFrontend::SessionMoved` to the announcing front-end, whose
    /// connection for it is stale.
    Elsewhere(FrontendId),
}

/// Which front-end carries each session: the rule of PROTOCOL.md section 2 for sessions
/// that move between front-ends.
#[derive(Debug, Clone, Default)]
pub struct SessionRegistry {
    sessions: HashMap<SessionId, FrontendId>,
}

impl SessionRegistry {
    /// No sessions.
    pub fn new() -> Self {
        Self::default()
    }

    /// `SessionOpened` from `frontend`: it carries the session now (a session that moved
    /// is taken over). Returns the front-end that carried it before, if another: send it
    /// `GameToFrontend::SessionMoved`, so that it closes the connection still carrying the
    /// session there with `Error{SessionMoved}`.
    pub fn opened(&mut self, session: SessionId, frontend: FrontendId) -> Option<FrontendId> {
        self.sessions
            .insert(session, frontend)
            .filter(|before| *before != frontend)
    }

    /// `SessionHeld` from `frontend` (sessions announced when its link comes up: not a
    /// resume, so it never moves a session). See [`Held`].
    pub fn held(&mut self, session: SessionId, frontend: FrontendId) -> Held {
        match self.sessions.get(&session) {
            None => {
                self.sessions.insert(session, frontend);
                Held::Registered
            }
            Some(carrier) if *carrier == frontend => Held::Known,
            Some(carrier) => Held::Elsewhere(*carrier),
        }
    }

    /// An input from `session` on `frontend`'s link. Only `SessionOpened` moves a session:
    /// an input still in flight on the link of the front-end it left does not route it
    /// back there; an input of an unknown session registers it.
    pub fn input(&mut self, session: SessionId, frontend: FrontendId) {
        self.sessions.entry(session).or_insert(frontend);
    }

    /// `SessionClosed` from `frontend`: true if that front-end carried it (the session is
    /// gone); false for a session that already moved elsewhere (nothing changes).
    pub fn closed(&mut self, session: SessionId, frontend: FrontendId) -> bool {
        if self.sessions.get(&session) == Some(&frontend) {
            self.sessions.remove(&session);
            true
        } else {
            false
        }
    }

    /// `frontend`'s link is gone: the sessions it carried, now closed (sorted).
    pub fn frontend_lost(&mut self, frontend: FrontendId) -> Vec<SessionId> {
        let mut closed = Vec::new();
        self.sessions.retain(|session, carrier| {
            if *carrier == frontend {
                closed.push(*session);
                false
            } else {
                true
            }
        });
        closed.sort_unstable();
        closed
    }

    /// The front-end carrying `session`.
    pub fn frontend_of(&self, session: SessionId) -> Option<FrontendId> {
        self.sessions.get(&session).copied()
    }

    /// Sessions known.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// True when no session is known.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

/// One item to queue for a subscribing front-end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscribeFrame {
    /// One `ChangeBatch` frame.
    Batch(Bytes),
    /// A snapshot of this many frames.
    Snapshot(Bytes, usize),
}

/// What a front-end subscribing to `world` from `since` is sent: the ring's missing
/// batches when it has them (as the very bytes first sent), otherwise a (possibly
/// multi-part) snapshot; nothing when it is up to date. An encoding failure of the
/// snapshot is returned as its text.
pub fn subscribe_frames(
    world: &WorldId,
    state: &WorldState,
    ring: &BatchRing,
    since: Option<Position>,
    max_frame_len: usize,
) -> Result<Vec<SubscribeFrame>, String> {
    let catch_up = match since {
        None => CatchUp::Snapshot(std::sync::Arc::new(state.snapshot())),
        Some(from) => state.catch_up(ring, from),
    };
    Ok(match catch_up {
        CatchUp::UpToDate | CatchUp::Pending => Vec::new(),
        CatchUp::Batches(batches) => batches
            .into_iter()
            .map(|recent| {
                SubscribeFrame::Batch(
                    recent
                        .encoded
                        .unwrap_or_else(|| change_batch_frame(world, &recent.batch)),
                )
            })
            .collect(),
        CatchUp::Snapshot(snapshot) => {
            let mut out = BytesMut::new();
            let frames = encode_snapshot(world, &snapshot, max_frame_len, &mut out)
                .map_err(|error| error.to_string())?;
            vec![SubscribeFrame::Snapshot(out.freeze(), frames)]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn raw(message: &FrontendToGame) -> RawFrame {
        RawFrame::parse(message.encode_to_bytes(), 1 << 20).unwrap()
    }

    #[test]
    fn a_link_says_hello_once_and_pings_only_once_ready() {
        let ready = KeepAliveConfig::new(Duration::from_secs(1), Duration::from_secs(3));
        let mut link = FrontendLink::new();
        assert_eq!(
            link.keep_alive(ready),
            KeepAliveConfig::new(Duration::ZERO, Duration::from_secs(3)),
            "no ping before the hello"
        );
        let hello = FrontendToGame::Hello {
            version: PROTOCOL_VERSION,
            frontend_id: "fe-1".into(),
        };
        assert_eq!(
            link.handle_frame(&raw(&hello)),
            LinkEvent::Hello {
                name: "fe-1".into()
            }
        );
        assert_eq!(link.keep_alive(ready), ready);
        assert!(matches!(
            link.handle_frame(&raw(&FrontendToGame::Ping { nonce: 3 })),
            LinkEvent::Reply(_)
        ));
        assert!(matches!(
            link.handle_frame(&raw(&hello)),
            LinkEvent::Close {
                error: Some((ErrorCode::UnexpectedFrame, _)),
                ..
            }
        ));
        let mut link = FrontendLink::new();
        assert!(matches!(
            link.handle_frame(&raw(&FrontendToGame::Ping { nonce: 3 })),
            LinkEvent::Close {
                error: Some((ErrorCode::UnexpectedFrame, _)),
                ..
            }
        ));
        let mut link = FrontendLink::new();
        let newer = FrontendToGame::Hello {
            version: 9,
            frontend_id: "fe".into(),
        };
        assert!(matches!(
            link.handle_frame(&raw(&newer)),
            LinkEvent::Close {
                error: Some((ErrorCode::UnsupportedVersion, _)),
                ..
            }
        ));
    }

    #[test]
    fn sessions_move_with_session_opened_only() {
        let mut registry = SessionRegistry::new();
        let (a, b) = (FrontendId(1), FrontendId(2));
        let s = SessionId(7);
        assert_eq!(registry.opened(s, a), None);
        // An input in flight on b's link does not move it.
        registry.input(s, b);
        assert_eq!(registry.frontend_of(s), Some(a));
        assert_eq!(registry.opened(s, b), Some(a));
        // The old front-end's close is ignored; the new one's counts.
        assert!(!registry.closed(s, a));
        assert_eq!(registry.frontend_of(s), Some(b));
        registry.input(SessionId(8), a);
        assert_eq!(registry.frontend_lost(b), vec![s]);
        assert_eq!(registry.frontend_lost(a), vec![SessionId(8)]);
        assert!(registry.is_empty());
    }

    #[test]
    fn a_held_session_never_moves_and_a_stale_holder_is_told() {
        let mut registry = SessionRegistry::new();
        let (a, b) = (FrontendId(1), FrontendId(2));
        let s = SessionId(7);
        // A link coming up announces its sessions: unknown ones are registered...
        assert_eq!(registry.held(s, a), Held::Registered);
        assert_eq!(registry.held(s, a), Held::Known);
        // ...the client resumes on b (a real move)...
        assert_eq!(registry.opened(s, b), Some(a));
        // ...and a's link, back after a partition, still holds it: a is told, b keeps it.
        assert_eq!(registry.held(s, a), Held::Elsewhere(b));
        assert_eq!(registry.frontend_of(s), Some(b));
    }

    #[test]
    fn a_subscriber_gets_the_missing_batches_or_a_snapshot() {
        let world = WorldId::new("arena").unwrap();
        let mut state = WorldState::new(5);
        let mut ring = BatchRing::new(flotilla_world::RingLimits::default());
        let first = state.position();
        for i in 0..3u8 {
            let mut tx = state.begin();
            tx.set(Bytes::from(vec![i]), Bytes::from_static(b"v"));
            let batch = tx.commit().unwrap();
            let frame = change_batch_frame(&world, &batch);
            ring.push(flotilla_world::RecentBatch::with_encoded(
                std::sync::Arc::new(batch),
                frame,
            ));
        }
        let frames = subscribe_frames(&world, &state, &ring, Some(first), 1 << 20).unwrap();
        assert_eq!(frames.len(), 3);
        assert!(frames.iter().all(|f| matches!(f, SubscribeFrame::Batch(_))));
        let frames = subscribe_frames(&world, &state, &ring, None, 1 << 20).unwrap();
        assert!(matches!(&frames[..], [SubscribeFrame::Snapshot(_, 1)]));
        let up_to_date =
            subscribe_frames(&world, &state, &ring, Some(state.position()), 1 << 20).unwrap();
        assert!(up_to_date.is_empty());
    }
}
