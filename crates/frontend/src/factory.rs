//! The factory: creates a world's replica machine on its first subscriber and destroys it
//! after the last one leaves.
//!
//! Creation subscribes upstream (a `Subscribe` to the hosting game server); destruction
//! unsubscribes upstream. The factory owns the replica machines, indexed by world id.

use std::collections::BTreeMap;

use bytes::Bytes;
use flotilla_wire::{FrontendToGame, Message, WorldId};
use flotilla_world::{Position, RingLimits};

use crate::ids::{ConnId, GameId};
use crate::replica::{ReplicaMachine, Serve};

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
    /// The last subscriber left and the machine was destroyed: send `frame` (an
    /// `Unsubscribe`) to `game`.
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
#[derive(Debug)]
pub struct Factory {
    replicas: BTreeMap<WorldId, ReplicaMachine>,
    ring: RingLimits,
    max_frame_len: usize,
    max_snapshot_bytes: usize,
}

impl Factory {
    /// No replicas yet; new ones get these ring limits and frame limit.
    pub fn new(ring: RingLimits, max_frame_len: usize) -> Self {
        Self {
            replicas: BTreeMap::new(),
            ring,
            max_frame_len,
            max_snapshot_bytes: flotilla_wire::DEFAULT_MAX_SNAPSHOT_BYTES,
        }
    }

    /// New machines refuse upstream snapshots larger than `max_bytes` (keys and values).
    pub fn set_max_snapshot_bytes(&mut self, max_bytes: usize) {
        self.max_snapshot_bytes = max_bytes;
    }

    /// Subscribes `conn` to `world` hosted by `game`, creating the replica machine if it is
    /// the first subscriber. Returns the creation event (if any) and what to send `conn`.
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
        (event, serve)
    }

    /// Unsubscribes `conn` from `world`; destroys the machine after its last subscriber.
    pub fn detach(&mut self, world: &WorldId, conn: ConnId) -> Option<FactoryEvent> {
        let machine = self.replicas.get_mut(world)?;
        machine.unsubscribe(conn);
        if !machine.has_no_subscribers() {
            return None;
        }
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

    /// The number of live replica machines.
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

        assert_eq!(factory.detach(&arena, ConnId(1)), None);
        let Some(FactoryEvent::Destroyed { game, frame, .. }) = factory.detach(&arena, ConnId(2))
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
        assert_eq!(factory.detach(&arena, ConnId(2)), None, "already gone");
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
