//! The router: which game server hosts which world, and which connection holds which
//! session.
//!
//! It learns worlds from the game servers' `WorldAdded`/`WorldRemoved` announcements and
//! sessions from the handshakes, and turns a client's input into the `SessionInput` frame
//! for the hosting game server, and a game server's output into the `Output` frame for the
//! session's connection.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use flotilla_wire::{FrontendToClient, FrontendToGame, Message, SessionId, WorldId};

use crate::ids::{ConnId, GameId, KeyedIdBuildHasher};

/// What a `WorldAdded` changed in the routing table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorldChange {
    /// A world not known before.
    New,
    /// Re-announced by the same game server (its description may have changed).
    Refreshed,
    /// Now hosted by this game server instead of `from`.
    Moved {
        /// The previous host.
        from: GameId,
    },
}

/// The routing tables of one front-end.
#[derive(Debug, Default)]
pub struct Router {
    games: BTreeSet<GameId>,
    worlds: BTreeMap<WorldId, GameId>,
    /// Keyed: session ids come back from clients in tokens.
    sessions: HashMap<SessionId, ConnId, KeyedIdBuildHasher>,
}

impl Router {
    /// Empty tables.
    pub fn new() -> Self {
        Self::default()
    }

    /// Empty tables whose session map is hashed with `key` (secret, from the seed).
    pub fn with_hash_key(key: u64) -> Self {
        Self {
            sessions: HashMap::with_hasher(KeyedIdBuildHasher::new(key)),
            ..Self::default()
        }
    }

    /// A game server completed its handshake.
    pub fn add_game(&mut self, game: GameId) {
        self.games.insert(game);
    }

    /// A game server is gone: forgets it and returns the worlds it hosted.
    pub fn remove_game(&mut self, game: GameId) -> Vec<WorldId> {
        self.games.remove(&game);
        let lost: Vec<WorldId> = self
            .worlds
            .iter()
            .filter(|(_, host)| **host == game)
            .map(|(world, _)| world.clone())
            .collect();
        for world in &lost {
            self.worlds.remove(world);
        }
        lost
    }

    /// The game servers that completed their handshake, in id order.
    pub fn games(&self) -> impl Iterator<Item = GameId> + '_ {
        self.games.iter().copied()
    }

    /// `game` announced `world`. The latest announcement wins.
    pub fn world_added(&mut self, game: GameId, world: WorldId) -> WorldChange {
        match self.worlds.insert(world, game) {
            None => WorldChange::New,
            Some(previous) if previous == game => WorldChange::Refreshed,
            Some(from) => WorldChange::Moved { from },
        }
    }

    /// `game` no longer hosts `world`. True if it was the host (the world is gone); an
    /// announcement from a server that is not the host changes nothing.
    pub fn world_removed(&mut self, game: GameId, world: &WorldId) -> bool {
        if self.worlds.get(world) == Some(&game) {
            self.worlds.remove(world);
            true
        } else {
            false
        }
    }

    /// The game server hosting `world`.
    pub fn host_of(&self, world: &WorldId) -> Option<GameId> {
        self.worlds.get(world).copied()
    }

    /// The number of worlds known.
    pub fn world_count(&self) -> usize {
        self.worlds.len()
    }

    /// `conn` now carries `session`. Returns the connection that carried it before, if
    /// any (a client resuming before its old connection timed out).
    pub fn attach_session(&mut self, session: SessionId, conn: ConnId) -> Option<ConnId> {
        self.sessions
            .insert(session, conn)
            .filter(|old| *old != conn)
    }

    /// `conn` no longer carries `session`. True if it did (false when the session already
    /// moved to another connection).
    pub fn detach_session(&mut self, session: SessionId, conn: ConnId) -> bool {
        if self.sessions.get(&session) == Some(&conn) {
            self.sessions.remove(&session);
            true
        } else {
            false
        }
    }

    /// The connection carrying `session`.
    pub fn conn_of(&self, session: SessionId) -> Option<ConnId> {
        self.sessions.get(&session).copied()
    }

    /// Every open session and its connection, in session order.
    pub fn sessions(&self) -> Vec<(SessionId, ConnId)> {
        let mut all: Vec<(SessionId, ConnId)> =
            self.sessions.iter().map(|(s, c)| (*s, *c)).collect();
        all.sort_unstable();
        all
    }

    /// A client's input: the game server to send it to and the `SessionInput` frame, or
    /// `None` when no game server hosts `world`.
    pub fn route_input(
        &self,
        session: SessionId,
        world: WorldId,
        payload: Bytes,
    ) -> Option<(GameId, Bytes)> {
        let game = self.host_of(&world)?;
        let frame = FrontendToGame::Input {
            world,
            session,
            payload,
        }
        .encode_to_bytes();
        Some((game, frame))
    }

    /// A game server's output: the connection to send it to and the `Output` frame, or
    /// `None` when the session is not on this front-end (any more).
    pub fn route_output(
        &self,
        session: SessionId,
        world: WorldId,
        payload: Bytes,
    ) -> Option<(ConnId, Bytes)> {
        let conn = self.conn_of(session)?;
        Some((
            conn,
            FrontendToClient::Output { world, payload }.encode_to_bytes(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_wire::{Decoder, FrontendToGame};

    fn world(name: &str) -> WorldId {
        WorldId::new(name).unwrap()
    }

    #[test]
    fn inputs_go_to_the_host_and_outputs_to_the_session_connection() {
        let mut router = Router::new();
        router.add_game(GameId(1));
        router.add_game(GameId(2));
        assert_eq!(router.world_added(GameId(1), world("a")), WorldChange::New);
        assert_eq!(router.world_added(GameId(2), world("b")), WorldChange::New);
        assert_eq!(router.attach_session(SessionId(10), ConnId(100)), None);

        let (game, frame) = router
            .route_input(SessionId(10), world("b"), Bytes::from_static(b"steer"))
            .unwrap();
        assert_eq!(game, GameId(2));
        let mut decoder = Decoder::default();
        decoder.feed(&frame);
        assert_eq!(
            decoder.next_message::<FrontendToGame>().unwrap().unwrap(),
            FrontendToGame::Input {
                world: world("b"),
                session: SessionId(10),
                payload: Bytes::from_static(b"steer")
            }
        );
        assert!(
            router
                .route_input(SessionId(10), world("zzz"), Bytes::new())
                .is_none()
        );

        let (conn, _) = router
            .route_output(SessionId(10), world("a"), Bytes::from_static(b"hi"))
            .unwrap();
        assert_eq!(conn, ConnId(100));
        assert!(
            router
                .route_output(SessionId(11), world("a"), Bytes::new())
                .is_none()
        );
    }

    #[test]
    fn announcements_move_and_remove_worlds() {
        let mut router = Router::new();
        router.world_added(GameId(1), world("a"));
        assert_eq!(
            router.world_added(GameId(1), world("a")),
            WorldChange::Refreshed
        );
        assert_eq!(
            router.world_added(GameId(2), world("a")),
            WorldChange::Moved { from: GameId(1) }
        );
        assert!(
            !router.world_removed(GameId(1), &world("a")),
            "not the host any more"
        );
        assert_eq!(router.host_of(&world("a")), Some(GameId(2)));
        router.world_added(GameId(2), world("b"));
        router.world_added(GameId(1), world("c"));
        assert_eq!(router.remove_game(GameId(2)), vec![world("a"), world("b")]);
        assert_eq!(router.world_count(), 1);
        assert!(router.world_removed(GameId(1), &world("c")));
        assert_eq!(router.host_of(&world("c")), None);
    }

    #[test]
    fn a_resumed_session_moves_to_its_new_connection() {
        let mut router = Router::new();
        router.attach_session(SessionId(5), ConnId(1));
        assert_eq!(
            router.attach_session(SessionId(5), ConnId(2)),
            Some(ConnId(1))
        );
        assert!(
            !router.detach_session(SessionId(5), ConnId(1)),
            "the old connection lost it"
        );
        assert_eq!(router.conn_of(SessionId(5)), Some(ConnId(2)));
        assert!(router.detach_session(SessionId(5), ConnId(2)));
        assert_eq!(router.sessions(), vec![]);
    }
}
