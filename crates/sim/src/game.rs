//! The simulated game server: one world committed on a fixed tick, served to front-ends
//! by the game SDK's own machines ([`FrontendLink`], [`SessionRegistry`],
//! [`subscribe_frames`]) with a [`KeepAlive`] per link, as its tokio shell does.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use flotilla_conn::{Instant, KeepAlive, KeepAliveConfig, Machine, Timeout};
use flotilla_game::FrontendId;
use flotilla_game::machine::{
    FrontendLink, Held, LinkEvent, SessionRegistry, SubscribeFrame, subscribe_frames,
};
use flotilla_wire::{
    Decoder, FrontendToGame, GameToFrontend, Message, WorldId, change_batch_frame,
};
use flotilla_world::{BatchRing, RecentBatch, RingLimits, WorldState};

/// What happens to the game server.
#[derive(Debug, Clone)]
pub(crate) enum GameInput {
    /// A front-end connected (link id).
    Opened(u64),
    /// Bytes from a front-end.
    Bytes(u64, Bytes),
    /// A front-end link ended.
    Closed(u64),
    /// The game loop's tick: commit one batch.
    Commit,
    /// A deadline came.
    Timeout,
}

impl From<Timeout> for GameInput {
    fn from(_: Timeout) -> Self {
        GameInput::Timeout
    }
}

/// What the game server's shell must do.
#[derive(Debug, Clone)]
pub(crate) enum GameOutput {
    /// Send bytes on a link.
    Send(u64, Bytes),
    /// Close a link (after what was sent).
    Close(u64),
}

struct Link {
    machine: FrontendLink,
    keep_alive: KeepAlive,
    decoder: Decoder,
}

/// The game server of a simulation.
pub(crate) struct GameNode {
    server_id: String,
    keep_alive: KeepAliveConfig,
    links: BTreeMap<u64, Link>,
    world: WorldId,
    state: WorldState,
    ring: BatchRing,
    subscribers: BTreeSet<u64>,
    sessions: SessionRegistry,
    tick: u64,
    outputs: VecDeque<GameOutput>,
    /// Inputs received from sessions.
    pub(crate) inputs: u64,
    /// `SessionOpened` for a session another front-end carried (a move).
    pub(crate) sessions_moved: u64,
    /// Links closed by the keep-alive rule or a protocol error.
    pub(crate) links_failed: u64,
}

impl GameNode {
    pub(crate) fn new(world: WorldId, epoch: u64, keep_alive: KeepAliveConfig) -> Self {
        Self {
            server_id: "sim-game".to_owned(),
            keep_alive,
            links: BTreeMap::new(),
            world,
            state: WorldState::new(epoch),
            ring: BatchRing::new(RingLimits::default()),
            subscribers: BTreeSet::new(),
            sessions: SessionRegistry::new(),
            tick: 0,
            outputs: VecDeque::new(),
            inputs: 0,
            sessions_moved: 0,
            links_failed: 0,
        }
    }

    /// The committed state's digest (replicas compare with it).
    pub(crate) fn digest(&self) -> u64 {
        self.state.digest()
    }

    fn send(&mut self, now: Instant, link: u64, bytes: Bytes) {
        if let Some(state) = self.links.get_mut(&link) {
            state.keep_alive.on_sent(now);
            self.outputs.push_back(GameOutput::Send(link, bytes));
        }
    }

    fn close(
        &mut self,
        now: Instant,
        link: u64,
        error: Option<(flotilla_wire::ErrorCode, String)>,
    ) {
        if let Some((code, text)) = error {
            self.send(
                now,
                link,
                GameToFrontend::Error { code, text }.encode_to_bytes(),
            );
            self.links_failed += 1;
        }
        self.outputs.push_back(GameOutput::Close(link));
        self.forget(link);
    }

    fn forget(&mut self, link: u64) {
        if self.links.remove(&link).is_some() {
            self.subscribers.remove(&link);
            self.sessions.frontend_lost(FrontendId(link));
        }
    }

    fn on_event(&mut self, now: Instant, link: u64, event: LinkEvent) {
        match event {
            LinkEvent::Nothing => {}
            LinkEvent::Reply(bytes) => self.send(now, link, bytes),
            LinkEvent::Hello { .. } => {
                let Some(state) = self.links.get_mut(&link) else {
                    return;
                };
                let config = state.machine.keep_alive(self.keep_alive);
                state.keep_alive.set_config(config);
                let welcome = state.machine.welcome(&self.server_id);
                self.send(now, link, welcome);
                let added = GameToFrontend::WorldAdded {
                    world: self.world.clone(),
                    info: Bytes::from_static(b"{\"kind\":\"sim\"}"),
                };
                self.send(now, link, added.encode_to_bytes());
            }
            LinkEvent::Close { error, .. } => self.close(now, link, error),
            LinkEvent::Message(message) => self.on_message(now, link, message),
        }
    }

    fn on_message(&mut self, now: Instant, link: u64, message: FrontendToGame) {
        match message {
            FrontendToGame::Subscribe { world, since } => {
                if world != self.world {
                    let removed = GameToFrontend::WorldRemoved { world };
                    return self.send(now, link, removed.encode_to_bytes());
                }
                self.subscribers.insert(link);
                let frames = subscribe_frames(&self.world, &self.state, &self.ring, since, 1 << 20);
                for frame in frames.into_iter().flatten() {
                    let bytes = match frame {
                        SubscribeFrame::Batch(bytes) | SubscribeFrame::Snapshot(bytes, _) => bytes,
                    };
                    self.send(now, link, bytes);
                }
            }
            FrontendToGame::Unsubscribe { .. } => {
                self.subscribers.remove(&link);
            }
            FrontendToGame::Input { session, .. } => {
                self.inputs += 1;
                self.sessions.input(session, FrontendId(link));
            }
            FrontendToGame::SessionOpened { session, .. } => {
                if let Some(FrontendId(before)) = self.sessions.opened(session, FrontendId(link)) {
                    self.sessions_moved += 1;
                    let moved = GameToFrontend::SessionMoved { session }.encode_to_bytes();
                    self.send(now, before, moved);
                }
            }
            FrontendToGame::SessionHeld { session, .. } => {
                if let Held::Elsewhere(_) = self.sessions.held(session, FrontendId(link)) {
                    let moved = GameToFrontend::SessionMoved { session }.encode_to_bytes();
                    self.send(now, link, moved);
                }
            }
            FrontendToGame::SessionClosed { session } => {
                self.sessions.closed(session, FrontendId(link));
            }
            FrontendToGame::Hello { .. }
            | FrontendToGame::Ping { .. }
            | FrontendToGame::Pong { .. }
            | FrontendToGame::Error { .. } => {}
        }
    }

    fn commit(&mut self, now: Instant) {
        self.tick += 1;
        let mut tx = self.state.begin();
        tx.set(
            Bytes::from_static(b"tick"),
            Bytes::from(self.tick.to_string()),
        );
        tx.set(
            Bytes::from(format!("entity-{}", self.tick % 16)),
            Bytes::from(format!(
                "x={} y={}",
                self.tick * 7 % 100,
                self.tick * 13 % 100
            )),
        );
        let Some(batch) = tx.commit() else { return };
        let frame = change_batch_frame(&self.world, &batch);
        self.ring
            .push(RecentBatch::with_encoded(Arc::new(batch), frame.clone()));
        let subscribers: Vec<u64> = self.subscribers.iter().copied().collect();
        for link in subscribers {
            self.send(now, link, frame.clone());
        }
    }
}

impl Machine for GameNode {
    type Input = GameInput;
    type Output = GameOutput;

    fn handle(&mut self, now: Instant, input: GameInput) {
        match input {
            GameInput::Opened(link) => {
                let machine = FrontendLink::new();
                let keep_alive = KeepAlive::new(machine.keep_alive(self.keep_alive), now);
                self.links.insert(
                    link,
                    Link {
                        machine,
                        keep_alive,
                        decoder: Decoder::default(),
                    },
                );
            }
            GameInput::Bytes(link, bytes) => {
                let Some(state) = self.links.get_mut(&link) else {
                    return;
                };
                state.decoder.feed(&bytes);
                loop {
                    let Some(state) = self.links.get_mut(&link) else {
                        return;
                    };
                    let event = match state.decoder.next_frame() {
                        Ok(Some(frame)) => {
                            state.keep_alive.on_received(now);
                            state.machine.handle_frame(&frame)
                        }
                        Ok(None) => return,
                        Err(error) => state.machine.handle_malformed(&error),
                    };
                    self.on_event(now, link, event);
                }
            }
            GameInput::Closed(link) => self.forget(link),
            GameInput::Commit => self.commit(now),
            GameInput::Timeout => {
                let due: Vec<u64> = self
                    .links
                    .iter()
                    .filter(|(_, l)| l.keep_alive.deadline().is_some_and(|at| at <= now))
                    .map(|(id, _)| *id)
                    .collect();
                for link in due {
                    let Some(state) = self.links.get_mut(&link) else {
                        continue;
                    };
                    if let Some(action) = state.keep_alive.poll(now) {
                        let event = state.machine.on_keep_alive(action);
                        self.on_event(now, link, event);
                    }
                }
            }
        }
    }

    fn poll_output(&mut self) -> Option<GameOutput> {
        self.outputs.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.links
            .values()
            .filter_map(|l| l.keep_alive.deadline())
            .min()
    }
}
