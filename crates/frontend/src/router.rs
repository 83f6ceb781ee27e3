//! The router: which game servers announce which world, which one hosts it, and which
//! connection holds which session.
//!
//! It learns worlds from the game servers' `WorldAdded`/`WorldRemoved` announcements and
//! sessions from the handshakes, and turns a client's input into the `SessionInput` frame
//! for the hosting game server, and a game server's output into the `Output` frame for the
//! session's connection.
//!
//! Several game servers may announce the same world. The router remembers all of them in
//! announcement order; the latest announcer hosts the world. When the host stops
//! announcing it (`WorldRemoved`, or its link is lost) the world falls back to the most
//! recent remaining announcer, and only when the last one is gone is the world gone.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use flotilla_wire::{FrontendToClient, FrontendToGame, Message, SessionId, WorldId};

use crate::ids::{ConnId, GameId, KeyedIdBuildHasher};

/// What an announcement ([`Router::world_added`]) or a withdrawal
/// ([`Router::world_removed`], [`Router::remove_game`]) changed in the routing table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorldChange {
    /// A world not known before (announced by its first game server).
    New,
    /// Re-announced by a game server that already announced it (its description may have
    /// changed). The host is unchanged: a re-announcement by a fallback does not take the
    /// world over.
    Refreshed,
    /// Now hosted by `to` instead of `from`: `to` announced the world after `from` did
    /// (the latest announcement wins), or the host `from` stopped announcing it and the
    /// world fell back to `to`, the most recent remaining announcer.
    Moved {
        /// The previous host.
        from: GameId,
        /// The new host.
        to: GameId,
    },
    /// A game server that announced the world but did not host it stopped announcing it.
    /// The host is unchanged.
    Withdrawn,
    /// The last game server announcing the world stopped: no game server hosts it now.
    Removed,
    /// Nothing changed: the game server never announced the world.
    Unchanged,
}

/// One game server's announcement of a world.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Announcement {
    game: GameId,
    /// The description the game server gave (`WorldAdded.info`).
    info: Bytes,
}

/// Removes `game`'s announcement from `announcers` (oldest first, the host last) and says
/// what that changed.
fn withdraw(announcers: &mut Vec<Announcement>, game: GameId) -> WorldChange {
    let Some(index) = announcers.iter().position(|a| a.game == game) else {
        return WorldChange::Unchanged;
    };
    let was_host = index + 1 == announcers.len();
    announcers.remove(index);
    match announcers.last() {
        None => WorldChange::Removed,
        Some(next) if was_host => WorldChange::Moved {
            from: game,
            to: next.game,
        },
        Some(_) => WorldChange::Withdrawn,
    }
}

/// The routing tables of one front-end.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Router {
    games: BTreeSet<GameId>,
    /// Every world's announcers, oldest first; the last one hosts the world. Never empty.
    worlds: BTreeMap<WorldId, Vec<Announcement>>,
    /// Keyed: session ids come back from clients in tokens.
    #[serde(with = "keyed_sessions")]
    sessions: HashMap<SessionId, ConnId, KeyedIdBuildHasher>,
}

/// The session map in a checkpoint: its hash key and its entries (a keyed map cannot be
/// made with a default hasher).
mod keyed_sessions {
    use super::{ConnId, HashMap, KeyedIdBuildHasher, SessionId};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    type Map = HashMap<SessionId, ConnId, KeyedIdBuildHasher>;

    pub(super) fn serialize<S: Serializer>(map: &Map, s: S) -> Result<S::Ok, S::Error> {
        let entries: Vec<(SessionId, ConnId)> = map.iter().map(|(k, v)| (*k, *v)).collect();
        (map.hasher().key(), entries).serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Map, D::Error> {
        let (key, entries) = <(u64, Vec<(SessionId, ConnId)>)>::deserialize(d)?;
        let mut map =
            HashMap::with_capacity_and_hasher(entries.len(), KeyedIdBuildHasher::new(key));
        map.extend(entries);
        Ok(map)
    }
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

    /// A game server is gone: forgets it and withdraws every world it announced. Returns
    /// those worlds in id order, each with what its withdrawal changed:
    /// [`WorldChange::Moved`] (it hosted the world, which falls back to another announcer),
    /// [`WorldChange::Withdrawn`] (another game server hosts it) or
    /// [`WorldChange::Removed`] (it was the last announcer).
    pub fn remove_game(&mut self, game: GameId) -> Vec<(WorldId, WorldChange)> {
        self.games.remove(&game);
        let mut changes = Vec::new();
        self.worlds.retain(|world, announcers| {
            let change = withdraw(announcers, game);
            if change != WorldChange::Unchanged {
                changes.push((world.clone(), change));
            }
            !announcers.is_empty()
        });
        changes
    }

    /// The game servers that completed their handshake, in id order.
    pub fn games(&self) -> impl Iterator<Item = GameId> + '_ {
        self.games.iter().copied()
    }

    /// `game` announced `world` with the description `info`. A first announcement by
    /// `game` makes it the host (the latest announcement wins): [`WorldChange::New`] or
    /// [`WorldChange::Moved`]. Announcing again is a refresh ([`WorldChange::Refreshed`]):
    /// the description is replaced and the host stays the same.
    pub fn world_added(&mut self, game: GameId, world: WorldId, info: Bytes) -> WorldChange {
        let announcers = self.worlds.entry(world).or_default();
        if let Some(known) = announcers.iter_mut().find(|a| a.game == game) {
            known.info = info;
            return WorldChange::Refreshed;
        }
        let previous_host = announcers.last().map(|a| a.game);
        announcers.push(Announcement { game, info });
        match previous_host {
            None => WorldChange::New,
            Some(from) => WorldChange::Moved { from, to: game },
        }
    }

    /// `game` no longer announces `world`: [`WorldChange::Moved`] when it was the host and
    /// the world falls back to the most recent remaining announcer,
    /// [`WorldChange::Withdrawn`] when another game server hosts it, [`WorldChange::Removed`]
    /// when `game` was the last announcer (the world is gone), and
    /// [`WorldChange::Unchanged`] when `game` never announced it.
    pub fn world_removed(&mut self, game: GameId, world: &WorldId) -> WorldChange {
        let Some(announcers) = self.worlds.get_mut(world) else {
            return WorldChange::Unchanged;
        };
        let change = withdraw(announcers, game);
        if announcers.is_empty() {
            self.worlds.remove(world);
        }
        change
    }

    /// The game server hosting `world`: its latest announcer still announcing it.
    pub fn host_of(&self, world: &WorldId) -> Option<GameId> {
        self.worlds.get(world)?.last().map(|a| a.game)
    }

    /// The description of `world` its host announced.
    pub fn host_info(&self, world: &WorldId) -> Option<&Bytes> {
        self.worlds.get(world)?.last().map(|a| &a.info)
    }

    /// The game servers announcing `world`, oldest announcement first (the last one is
    /// the host); empty for a world nobody announces.
    pub fn announcers_of(&self, world: &WorldId) -> impl Iterator<Item = GameId> + '_ {
        self.worlds.get(world).into_iter().flatten().map(|a| a.game)
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
    use proptest::prelude::*;

    fn world(name: &str) -> WorldId {
        WorldId::new(name).unwrap()
    }

    #[test]
    fn inputs_go_to_the_host_and_outputs_to_the_session_connection() {
        let mut router = Router::new();
        router.add_game(GameId(1));
        router.add_game(GameId(2));
        assert_eq!(
            router.world_added(GameId(1), world("a"), Bytes::new()),
            WorldChange::New
        );
        assert_eq!(
            router.world_added(GameId(2), world("b"), Bytes::new()),
            WorldChange::New
        );
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

    fn info(text: &str) -> Bytes {
        Bytes::copy_from_slice(text.as_bytes())
    }

    #[test]
    fn announcements_move_and_remove_worlds() {
        let mut router = Router::new();
        router.world_added(GameId(1), world("a"), info("1"));
        assert_eq!(
            router.world_added(GameId(1), world("a"), info("1")),
            WorldChange::Refreshed
        );
        assert_eq!(
            router.world_added(GameId(2), world("a"), info("2")),
            WorldChange::Moved {
                from: GameId(1),
                to: GameId(2)
            }
        );
        assert_eq!(
            router.world_removed(GameId(1), &world("a")),
            WorldChange::Withdrawn,
            "not the host any more"
        );
        assert_eq!(router.host_of(&world("a")), Some(GameId(2)));
        router.world_added(GameId(2), world("b"), info("b"));
        router.world_added(GameId(1), world("c"), info("c"));
        assert_eq!(
            router.remove_game(GameId(2)),
            vec![
                (world("a"), WorldChange::Removed),
                (world("b"), WorldChange::Removed)
            ]
        );
        assert_eq!(router.world_count(), 1);
        assert_eq!(
            router.world_removed(GameId(1), &world("c")),
            WorldChange::Removed
        );
        assert_eq!(router.host_of(&world("c")), None);
        assert_eq!(router.world_count(), 0);
    }

    #[test]
    fn the_latest_announcer_hosts_and_the_host_falls_back_when_it_withdraws() {
        let mut router = Router::new();
        assert_eq!(
            router.world_added(GameId(1), world("a"), info("from 1")),
            WorldChange::New
        );
        assert_eq!(
            router.world_added(GameId(2), world("a"), info("from 2")),
            WorldChange::Moved {
                from: GameId(1),
                to: GameId(2)
            }
        );
        assert_eq!(router.host_of(&world("a")), Some(GameId(2)));
        assert_eq!(router.host_info(&world("a")), Some(&info("from 2")));
        assert_eq!(
            router.announcers_of(&world("a")).collect::<Vec<_>>(),
            vec![GameId(1), GameId(2)]
        );

        // The host stops announcing the world: it falls back to game 1.
        assert_eq!(
            router.world_removed(GameId(2), &world("a")),
            WorldChange::Moved {
                from: GameId(2),
                to: GameId(1)
            }
        );
        assert_eq!(router.host_of(&world("a")), Some(GameId(1)));
        assert_eq!(router.host_info(&world("a")), Some(&info("from 1")));
        assert_eq!(router.world_count(), 1);
        let (game, _) = router
            .route_input(SessionId(1), world("a"), Bytes::new())
            .unwrap();
        assert_eq!(game, GameId(1), "inputs follow the fallback host");

        // The last announcer stops: the world is gone.
        assert_eq!(
            router.world_removed(GameId(1), &world("a")),
            WorldChange::Removed
        );
        assert_eq!(router.host_of(&world("a")), None);
        assert_eq!(router.host_info(&world("a")), None);
        assert_eq!(router.announcers_of(&world("a")).count(), 0);
        assert_eq!(router.world_count(), 0);
        assert!(
            router
                .route_input(SessionId(1), world("a"), Bytes::new())
                .is_none()
        );
    }

    #[test]
    fn the_most_recent_remaining_announcer_takes_over() {
        let mut router = Router::new();
        for game in 1..=3 {
            router.world_added(GameId(game), world("a"), info("x"));
        }
        // Game 2 (a fallback) leaves first: the order of the others is kept.
        assert_eq!(
            router.world_removed(GameId(2), &world("a")),
            WorldChange::Withdrawn
        );
        assert_eq!(
            router.world_removed(GameId(3), &world("a")),
            WorldChange::Moved {
                from: GameId(3),
                to: GameId(1)
            }
        );
        // Game 3 announces again: a new announcement, so it hosts again.
        assert_eq!(
            router.world_added(GameId(3), world("a"), info("x")),
            WorldChange::Moved {
                from: GameId(1),
                to: GameId(3)
            }
        );
        assert_eq!(
            router.announcers_of(&world("a")).collect::<Vec<_>>(),
            vec![GameId(1), GameId(3)]
        );
    }

    #[test]
    fn a_lost_link_moves_the_worlds_it_hosted_and_keeps_the_others() {
        let mut router = Router::new();
        router.add_game(GameId(1));
        router.add_game(GameId(2));
        router.world_added(GameId(1), world("a"), info("a1"));
        router.world_added(GameId(2), world("a"), info("a2"));
        router.world_added(GameId(2), world("b"), info("b2"));
        router.world_added(GameId(1), world("b"), info("b1"));
        router.world_added(GameId(1), world("c"), info("c1"));
        router.world_added(GameId(2), world("d"), info("d2"));

        // Game 1's link is lost while game 2 hosts "a": "a" is still game 2's.
        assert_eq!(
            router.remove_game(GameId(1)),
            vec![
                (world("a"), WorldChange::Withdrawn),
                (
                    world("b"),
                    WorldChange::Moved {
                        from: GameId(1),
                        to: GameId(2)
                    }
                ),
                (world("c"), WorldChange::Removed),
            ]
        );
        assert_eq!(router.games().collect::<Vec<_>>(), vec![GameId(2)]);
        assert_eq!(router.host_of(&world("a")), Some(GameId(2)));
        assert_eq!(router.host_of(&world("b")), Some(GameId(2)));
        assert_eq!(router.host_info(&world("b")), Some(&info("b2")));
        assert_eq!(router.host_of(&world("c")), None);
        assert_eq!(router.world_count(), 3);

        // Both gone: nothing left.
        assert_eq!(
            router.remove_game(GameId(2)),
            vec![
                (world("a"), WorldChange::Removed),
                (world("b"), WorldChange::Removed),
                (world("d"), WorldChange::Removed),
            ]
        );
        assert_eq!(router.world_count(), 0);
        assert_eq!(router.remove_game(GameId(2)), vec![]);
    }

    #[test]
    fn a_refresh_updates_the_description_without_moving_the_world() {
        let mut router = Router::new();
        router.world_added(GameId(1), world("a"), info("old 1"));
        router.world_added(GameId(2), world("a"), info("old 2"));
        // The fallback refreshes: it does not take the world over.
        assert_eq!(
            router.world_added(GameId(1), world("a"), info("new 1")),
            WorldChange::Refreshed
        );
        assert_eq!(router.host_of(&world("a")), Some(GameId(2)));
        assert_eq!(router.host_info(&world("a")), Some(&info("old 2")));
        // The host refreshes its description.
        assert_eq!(
            router.world_added(GameId(2), world("a"), info("new 2")),
            WorldChange::Refreshed
        );
        assert_eq!(router.host_info(&world("a")), Some(&info("new 2")));
        assert_eq!(
            router.announcers_of(&world("a")).collect::<Vec<_>>(),
            vec![GameId(1), GameId(2)],
            "refreshes keep the announcement order"
        );
        // The fallback's refreshed description is the one shown after a fallback.
        router.world_removed(GameId(2), &world("a"));
        assert_eq!(router.host_info(&world("a")), Some(&info("new 1")));
    }

    #[test]
    fn removal_by_a_game_that_never_announced_the_world_changes_nothing() {
        let mut router = Router::new();
        assert_eq!(
            router.world_removed(GameId(1), &world("a")),
            WorldChange::Unchanged,
            "unknown world"
        );
        router.world_added(GameId(1), world("a"), info("1"));
        router.world_added(GameId(2), world("a"), info("2"));
        assert_eq!(
            router.world_removed(GameId(3), &world("a")),
            WorldChange::Unchanged
        );
        assert_eq!(router.remove_game(GameId(3)), vec![]);
        assert_eq!(router.host_of(&world("a")), Some(GameId(2)));
        assert_eq!(
            router.announcers_of(&world("a")).collect::<Vec<_>>(),
            vec![GameId(1), GameId(2)]
        );
        // Withdrawing twice is a no-op the second time.
        assert_eq!(
            router.world_removed(GameId(1), &world("a")),
            WorldChange::Withdrawn
        );
        assert_eq!(
            router.world_removed(GameId(1), &world("a")),
            WorldChange::Unchanged
        );
        assert_eq!(router.host_of(&world("a")), Some(GameId(2)));
    }

    /// One step of a game servers' announcement history.
    #[derive(Debug, Clone)]
    enum Step {
        Add(u64, usize),
        Remove(u64, usize),
        Lose(u64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (1..4u64, 0..3usize).prop_map(|(game, w)| Step::Add(game, w)),
            (1..4u64, 0..3usize).prop_map(|(game, w)| Step::Remove(game, w)),
            (1..4u64).prop_map(Step::Lose),
        ]
    }

    /// What withdrawing `game` from a model list of announcers (oldest first) changes.
    fn model_withdraw(announcers: &mut Vec<u64>, game: u64) -> WorldChange {
        let Some(index) = announcers.iter().position(|g| *g == game) else {
            return WorldChange::Unchanged;
        };
        let was_host = index + 1 == announcers.len();
        announcers.remove(index);
        match announcers.last() {
            None => WorldChange::Removed,
            Some(next) if was_host => WorldChange::Moved {
                from: GameId(game),
                to: GameId(*next),
            },
            Some(_) => WorldChange::Withdrawn,
        }
    }

    proptest! {
        /// Against a model that keeps each world's announcers as a plain list: the host is
        /// always the latest announcer still announcing, and every reported change matches.
        #[test]
        fn the_host_is_always_the_latest_remaining_announcer(
            steps in proptest::collection::vec(step(), 0..60)
        ) {
            let names = ["a", "b", "c"];
            let mut router = Router::new();
            let mut model: Vec<Vec<u64>> = vec![Vec::new(); names.len()];
            for step in steps {
                match step {
                    Step::Add(game, w) => {
                        let announcers = &mut model[w];
                        let expected = if announcers.contains(&game) {
                            WorldChange::Refreshed
                        } else {
                            let previous = announcers.last().copied();
                            announcers.push(game);
                            match previous {
                                None => WorldChange::New,
                                Some(from) => WorldChange::Moved {
                                    from: GameId(from),
                                    to: GameId(game),
                                },
                            }
                        };
                        let change =
                            router.world_added(GameId(game), world(names[w]), info(names[w]));
                        prop_assert_eq!(change, expected);
                    }
                    Step::Remove(game, w) => {
                        let expected = model_withdraw(&mut model[w], game);
                        prop_assert_eq!(
                            router.world_removed(GameId(game), &world(names[w])),
                            expected
                        );
                    }
                    Step::Lose(game) => {
                        let mut expected = Vec::new();
                        for (w, announcers) in model.iter_mut().enumerate() {
                            let change = model_withdraw(announcers, game);
                            if change != WorldChange::Unchanged {
                                expected.push((world(names[w]), change));
                            }
                        }
                        prop_assert_eq!(router.remove_game(GameId(game)), expected);
                    }
                }
                for (w, announcers) in model.iter().enumerate() {
                    let id = world(names[w]);
                    prop_assert_eq!(router.host_of(&id), announcers.last().map(|g| GameId(*g)));
                    prop_assert_eq!(
                        router.announcers_of(&id).collect::<Vec<_>>(),
                        announcers.iter().map(|g| GameId(*g)).collect::<Vec<_>>()
                    );
                }
                prop_assert_eq!(
                    router.world_count(),
                    model.iter().filter(|a| !a.is_empty()).count()
                );
            }
        }
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
