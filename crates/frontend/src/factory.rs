//! The factory: creates a world's replica machine on its first subscriber and destroys it
//! a grace period after the last one left.
//!
//! Creation subscribes upstream (a `Subscribe` to the hosting game server); destruction
//! unsubscribes upstream. A machine without subscribers is kept (and kept fed) for the
//! grace period, so a client that unsubscribes and subscribes again does not make the game
//! server encode a full snapshot each time: a subscriber arriving in time reuses it with no
//! upstream traffic. The factory owns the replica machines, indexed by world id.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use flotilla_wire::{FrontendToGame, Message, WorldId};
use flotilla_world::{Position, RingLimits};

use crate::ids::{ConnId, GameId};
use crate::replica::{ReplicaMachine, Serve};
use flotilla_conn::Instant;

/// A lifecycle step the factory took, with the upstream frame to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FactoryEvent {
    /// A replica machine was created: send `frame` (a `Subscribe`) to `game`.
    Created {
        /// The world.
        world: WorldId,
        /// Its game server.
        game: GameId,
        /// The upstream `Subscribe` frame.
        frame: Bytes,
    },
    /// The machine had no subscriber for the grace period and was destroyed: send `frame`
    /// (an `Unsubscribe`) to `game`.
    Destroyed {
        /// The world.
        world: WorldId,
        /// Its game server.
        game: GameId,
        /// The upstream `Unsubscribe` frame.
        frame: Bytes,
    },
}

/// Owner of the replica machines of game worlds.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Factory {
    replicas: BTreeMap<WorldId, ReplicaMachine>,
    /// Machines without subscribers, with the time their last subscriber left.
    idle_since: BTreeMap<WorldId, Instant>,
    grace_period: Duration,
    ring: RingLimits,
    max_frame_len: usize,
    max_snapshot_bytes: usize,
}

impl Factory {
    /// No replicas yet; new ones get these ring limits and frame limit. The grace period
    /// is zero (a machine is destroyed as its last subscriber leaves) until
    /// [`set_grace_period`](Self::set_grace_period).
    pub fn new(ring: RingLimits, max_frame_len: usize) -> Self {
        Self {
            replicas: BTreeMap::new(),
            idle_since: BTreeMap::new(),
            grace_period: Duration::ZERO,
            ring,
            max_frame_len,
            max_snapshot_bytes: flotilla_wire::DEFAULT_MAX_SNAPSHOT_BYTES,
        }
    }

    /// New machines refuse upstream snapshots larger than `max_bytes` (keys and values).
    pub fn set_max_snapshot_bytes(&mut self, max_bytes: usize) {
        self.max_snapshot_bytes = max_bytes;
    }

    /// Keeps a machine without subscribers for `grace_period` before destroying it (the
    /// front-end's [`replica_grace_period`](crate::FrontendConfig::replica_grace_period)).
    pub fn set_grace_period(&mut self, grace_period: Duration) {
        self.grace_period = grace_period;
    }

    /// Subscribes `conn` to `world` hosted by `game`, creating the replica machine if there
    /// is none (an idle machine kept for its grace period is reused as it is). Returns the
    /// creation event (if any) and what to send `conn`.
    pub fn attach(
        &mut self,
        world: &WorldId,
        game: GameId,
        conn: ConnId,
        since: Option<Position>,
        congested: bool,
    ) -> (Option<FactoryEvent>, Serve) {
        let mut event = None;
        let machine = self.replicas.entry(world.clone()).or_insert_with(|| {
            event = Some(FactoryEvent::Created {
                world: world.clone(),
                game,
                frame: FrontendToGame::Subscribe {
                    world: world.clone(),
                    since: None,
                }
                .encode_to_bytes(),
            });
            let mut machine =
                ReplicaMachine::new(world.clone(), Some(game), self.ring, self.max_frame_len);
            machine.set_max_snapshot_bytes(self.max_snapshot_bytes);
            machine
        });
        let serve = machine.subscribe(conn, since, congested);
        self.idle_since.remove(world);
        (event, serve)
    }

    /// Subscribes `conn` to the existing machine of `world` (one waiting for its game
    /// server), without creating one; `None` when there is none.
    pub fn attach_existing(
        &mut self,
        world: &WorldId,
        conn: ConnId,
        since: Option<Position>,
        congested: bool,
    ) -> Option<Serve> {
        let serve = self
            .replicas
            .get_mut(world)?
            .subscribe(conn, since, congested);
        self.idle_since.remove(world);
        Some(serve)
    }

    /// Unsubscribes `conn` from `world` at `now`. After the last subscriber the machine
    /// is idle: it is destroyed by [`reap`](Self::reap) once the grace period has passed
    /// with no new subscriber, or at once (the returned event) if the grace period is zero.
    pub fn detach(&mut self, world: &WorldId, conn: ConnId, now: Instant) -> Option<FactoryEvent> {
        let machine = self.replicas.get_mut(world)?;
        machine.unsubscribe(conn);
        if !machine.has_no_subscribers() {
            return None;
        }
        if self.grace_period.is_zero() {
            return self.destroy_idle(world);
        }
        self.idle_since.entry(world.clone()).or_insert(now);
        None
    }

    /// Destroys the machines that have had no subscriber for the grace period at `now`;
    /// returns the upstream `Unsubscribe` of each.
    pub fn reap(&mut self, now: Instant) -> Vec<FactoryEvent> {
        let expired: Vec<WorldId> = self
            .idle_since
            .iter()
            .filter(|(_, since)| now - **since >= self.grace_period)
            .map(|(world, _)| world.clone())
            .collect();
        expired
            .iter()
            .filter_map(|world| self.destroy_idle(world))
            .collect()
    }

    /// When [`reap`](Self::reap) next has a machine to destroy, if any.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.idle_since
            .values()
            .min()
            .map(|since| *since + self.grace_period)
    }

    /// True when `world`'s machine has no subscriber and waits out its grace period.
    pub fn is_idle(&self, world: &WorldId) -> bool {
        self.idle_since.contains_key(world)
    }

    /// Destroys `world`'s machine (without subscribers) and makes its upstream
    /// `Unsubscribe`.
    fn destroy_idle(&mut self, world: &WorldId) -> Option<FactoryEvent> {
        self.idle_since.remove(world);
        let machine = self.replicas.remove(world)?;
        let game = machine.host()?;
        Some(FactoryEvent::Destroyed {
            world: world.clone(),
            game,
            frame: FrontendToGame::Unsubscribe {
                world: world.clone(),
            }
            .encode_to_bytes(),
        })
    }

    /// Destroys `world`'s machine at once (world removed, game server lost), returning it so
    /// its subscribers can be told. No upstream frame: the world is gone there.
    pub fn destroy(&mut self, world: &WorldId) -> Option<ReplicaMachine> {
        self.idle_since.remove(world);
        self.replicas.remove(world)
    }

    /// The worlds whose machines are fed by `game`.
    pub fn worlds_of(&self, game: GameId) -> Vec<WorldId> {
        self.replicas
            .iter()
            .filter(|(_, machine)| machine.host() == Some(game))
            .map(|(world, _)| world.clone())
            .collect()
    }

    /// The machine of `world`.
    pub fn get(&self, world: &WorldId) -> Option<&ReplicaMachine> {
        self.replicas.get(world)
    }

    /// The machine of `world`, mutably.
    pub fn get_mut(&mut self, world: &WorldId) -> Option<&mut ReplicaMachine> {
        self.replicas.get_mut(world)
    }

    /// The number of replica machines (idle ones waiting out their grace period included).
    pub fn len(&self) -> usize {
        self.replicas.len()
    }

    /// True when no replica machine exists.
    pub fn is_empty(&self) -> bool {
        self.replicas.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_wire::{Decoder, FrontendToGame};

    fn decode(frame: &Bytes) -> FrontendToGame {
        let mut decoder = Decoder::default();
        decoder.feed(frame);
        decoder.next_message().unwrap().unwrap()
    }

    #[test]
    fn created_on_first_subscriber_and_destroyed_after_the_last() {
        let arena = WorldId::new("arena").unwrap();
        let mut factory = Factory::new(RingLimits::default(), 1 << 20);
        let (event, serve) = factory.attach(&arena, GameId(3), ConnId(1), None, false);
        assert_eq!(serve, Serve::Pending);
        let Some(FactoryEvent::Created { game, frame, .. }) = event else {
            panic!("not created: {event:?}")
        };
        assert_eq!(game, GameId(3));
        assert_eq!(
            decode(&frame),
            FrontendToGame::Subscribe {
                world: arena.clone(),
                since: None
            }
        );
        let (event, _) = factory.attach(&arena, GameId(3), ConnId(2), None, false);
        assert_eq!(event, None, "the second subscriber reuses the machine");
        assert_eq!(factory.get(&arena).unwrap().subscriber_count(), 2);

        assert_eq!(factory.detach(&arena, ConnId(1), Instant::ZERO), None);
        let Some(FactoryEvent::Destroyed { game, frame, .. }) =
            factory.detach(&arena, ConnId(2), Instant::ZERO)
        else {
            panic!("not destroyed")
        };
        assert_eq!(game, GameId(3));
        assert_eq!(
            decode(&frame),
            FrontendToGame::Unsubscribe {
                world: arena.clone()
            }
        );
        assert!(factory.is_empty());
        assert_eq!(
            factory.detach(&arena, ConnId(2), Instant::ZERO),
            None,
            "already gone"
        );
    }

    #[test]
    fn an_idle_machine_is_kept_for_the_grace_period_and_reused() {
        const SECOND: Duration = Duration::from_secs(1);
        let t = Instant::from_duration;
        let arena = WorldId::new("arena").unwrap();
        let mut factory = Factory::new(RingLimits::default(), 1 << 20);
        factory.set_grace_period(5 * SECOND);
        let (event, _) = factory.attach(&arena, GameId(3), ConnId(1), None, false);
        assert!(matches!(event, Some(FactoryEvent::Created { .. })));
        // The last subscriber leaves at 10 s: kept, nothing upstream.
        assert_eq!(factory.detach(&arena, ConnId(1), t(10 * SECOND)), None);
        assert!(factory.is_idle(&arena));
        assert_eq!(factory.reap(t(14 * SECOND)), Vec::new());
        // A subscriber within the grace period reuses it: no creation, no upstream frame.
        let (event, _) = factory.attach(&arena, GameId(3), ConnId(2), None, false);
        assert_eq!(event, None);
        assert!(!factory.is_idle(&arena));
        assert_eq!(
            factory.reap(t(100 * SECOND)),
            Vec::new(),
            "it has a subscriber"
        );
        // It leaves at 100 s: destroyed on the first reap 5 s later.
        assert_eq!(factory.detach(&arena, ConnId(2), t(100 * SECOND)), None);
        assert_eq!(factory.reap(t(104 * SECOND)), Vec::new());
        assert_eq!(factory.len(), 1);
        let reaped = factory.reap(t(105 * SECOND));
        let [FactoryEvent::Destroyed { game, frame, .. }] = &reaped[..] else {
            panic!("not destroyed: {reaped:?}")
        };
        assert_eq!(*game, GameId(3));
        assert_eq!(
            decode(frame),
            FrontendToGame::Unsubscribe {
                world: arena.clone()
            }
        );
        assert!(factory.is_empty());
        assert!(!factory.is_idle(&arena));
        // Destroying an idle machine at once (world removed) forgets it too.
        factory.attach(&arena, GameId(3), ConnId(3), None, false);
        factory.detach(&arena, ConnId(3), t(200 * SECOND));
        assert!(factory.destroy(&arena).is_some());
        assert!(!factory.is_idle(&arena));
        assert_eq!(factory.reap(t(300 * SECOND)), Vec::new());
    }

    #[test]
    fn destroy_and_worlds_of_follow_the_host() {
        let mut factory = Factory::new(RingLimits::default(), 1 << 20);
        let a = WorldId::new("a").unwrap();
        let b = WorldId::new("b").unwrap();
        factory.attach(&a, GameId(1), ConnId(1), None, false);
        factory.attach(&b, GameId(2), ConnId(1), None, false);
        assert_eq!(factory.worlds_of(GameId(1)), vec![a.clone()]);
        let machine = factory.destroy(&a).unwrap();
        assert_eq!(
            machine.subscriber_conns().collect::<Vec<_>>(),
            vec![ConnId(1)]
        );
        assert_eq!(factory.len(), 1);
    }
}
