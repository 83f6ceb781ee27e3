//! What front-ends tell the game: inputs and session changes, as a queue of events.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use flotilla_wire::{SessionId, WorldId};
use tokio::sync::{Notify, mpsc};

/// The id this game server gives each front-end connection (unique per process).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FrontendId(pub u64);

/// One thing that happened on a front-end link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GameEvent {
    /// A session's input for a world.
    Input {
        /// The world the input is for.
        world: WorldId,
        /// The session that sent it: answer with
        /// [`GameServer::send_output`](crate::GameServer::send_output).
        session: SessionId,
        /// Opaque bytes from the client.
        payload: Bytes,
    },
    /// A session opened on a front-end. Sent again for a known session when it moves to
    /// another front-end (outputs then go through the new one).
    SessionOpened {
        /// The session.
        session: SessionId,
        /// The client's name from its hello.
        client_name: String,
        /// The front-end now carrying it.
        frontend: FrontendId,
    },
    /// A session is gone: closed by the front-end carrying it, or that front-end's link
    /// dropped. Not sent when an older front-end closes a session that already moved.
    SessionClosed {
        /// The session.
        session: SessionId,
    },
    /// A front-end completed its handshake.
    FrontendConnected {
        /// Its id here.
        frontend: FrontendId,
        /// The id it gave in its hello.
        name: String,
    },
    /// A front-end link closed.
    FrontendDisconnected {
        /// Its id here.
        frontend: FrontendId,
    },
}

/// The receiving end of a game server's events (taken once with
/// [`GameServer::take_events`](crate::GameServer::take_events)).
///
/// Session and front-end events are never dropped. Inputs are bounded by
/// [`GameConfig::event_queue`](crate::GameConfig::event_queue): while that many are
/// queued, the server stops reading its front-end links (TCP pushes back on them, and
/// they stop reading their clients), so no input is lost either.
#[derive(Debug)]
pub struct GameEvents {
    pub(crate) receiver: mpsc::UnboundedReceiver<GameEvent>,
    pub(crate) inputs: Arc<InputGauge>,
}

impl GameEvents {
    /// Waits for the next event; `None` once the server is gone.
    pub async fn recv(&mut self) -> Option<GameEvent> {
        let event = self.receiver.recv().await;
        self.taken(event.as_ref());
        event
    }

    /// The next event if one is queued (for a tick loop that drains inputs each tick).
    pub fn try_recv(&mut self) -> Option<GameEvent> {
        let event = self.receiver.try_recv().ok();
        self.taken(event.as_ref());
        event
    }

    fn taken(&self, event: Option<&GameEvent>) {
        if let Some(GameEvent::Input { .. }) = event {
            self.inputs.taken();
        }
    }
}

/// Inputs queued for the game and not yet taken, shared by the links (which wait for room)
/// and [`GameEvents`] (which makes room).
#[derive(Debug)]
pub(crate) struct InputGauge {
    queued: AtomicUsize,
    limit: usize,
    room: Notify,
}

impl InputGauge {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            queued: AtomicUsize::new(0),
            limit: limit.max(1),
            room: Notify::new(),
        }
    }

    /// Counts one input queued.
    pub(crate) fn queued(&self) {
        self.queued.fetch_add(1, Ordering::AcqRel);
    }

    /// Counts one input taken by the game (or lost with a gone receiver).
    pub(crate) fn taken(&self) {
        let before = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_sub(1))
            })
            .unwrap_or(0);
        if before == self.limit {
            self.room.notify_waiters();
        }
    }

    /// Inputs queued now.
    pub(crate) fn len(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// Waits until fewer than the limit are queued.
    pub(crate) async fn wait_for_room(&self) {
        loop {
            let notified = self.room.notified();
            if self.len() < self.limit {
                return;
            }
            notified.await;
        }
    }
}
