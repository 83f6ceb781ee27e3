//! What front-ends tell the game: inputs and session changes, as a queue of events.

use bytes::Bytes;
use flotilla_wire::{SessionId, WorldId};
use tokio::sync::mpsc;

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
#[derive(Debug)]
pub struct GameEvents {
    pub(crate) receiver: mpsc::Receiver<GameEvent>,
}

impl GameEvents {
    /// Waits for the next event; `None` once the server is gone.
    pub async fn recv(&mut self) -> Option<GameEvent> {
        self.receiver.recv().await
    }

    /// The next event if one is queued (for a tick loop that drains inputs each tick).
    pub fn try_recv(&mut self) -> Option<GameEvent> {
        self.receiver.try_recv().ok()
    }
}
