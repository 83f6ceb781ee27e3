//! The directory of worlds, `$directory`: a world the front-end publishes itself.
//!
//! Its keys are the ids of the worlds reachable through this front-end, its values the
//! `info` bytes the hosting game server announced. The directory is the authority of this
//! world (a [`WorldState`] with an epoch chosen at start) and serves its subscribers through
//! an ordinary [`ReplicaMachine`], so clients watch it exactly like a game world.

use bytes::{Bytes, BytesMut};
use flotilla_wire::{SnapshotPart, WorldId};
use flotilla_world::{RingLimits, WorldState};

use crate::replica::{BatchOutcome, ReplicaMachine};

/// The `$directory` world: its authoritative state and the machine serving it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Directory {
    state: WorldState,
    machine: ReplicaMachine,
}

impl Directory {
    /// An empty directory of history `epoch` (chosen at random by each front-end start).
    pub fn new(epoch: u64, ring: RingLimits, max_frame_len: usize) -> Self {
        let state = WorldState::new(epoch);
        let mut machine = ReplicaMachine::new(WorldId::DIRECTORY, None, ring, max_frame_len);
        let snapshot = state.snapshot();
        let mut frame = BytesMut::new();
        // An empty snapshot always fits in one frame.
        if flotilla_wire::encode_snapshot(&WorldId::DIRECTORY, &snapshot, max_frame_len, &mut frame)
            .is_ok()
            && let Err(error) =
                machine.apply_snapshot_part(frame.freeze(), SnapshotPart::Whole, snapshot)
        {
            log::error!("directory: initial snapshot refused: {error}");
        }
        Self { state, machine }
    }

    /// Sets `world`'s description. Returns the change batch frame to send to the
    /// directory's live subscribers, or `None` if nothing changed.
    pub fn set(&mut self, world: &WorldId, info: Bytes) -> Option<Bytes> {
        if self.state.get(world.as_bytes()) == Some(&info) {
            return None;
        }
        let mut tx = self.state.begin();
        tx.set(world.as_bytes().clone(), info);
        let batch = tx.commit()?;
        self.forward(batch)
    }

    /// Removes `world`. Returns the change batch frame, or `None` if it was not listed.
    pub fn remove(&mut self, world: &WorldId) -> Option<Bytes> {
        self.state.get(world.as_bytes())?;
        let mut tx = self.state.begin();
        tx.remove(world.as_bytes().clone());
        let batch = tx.commit()?;
        self.forward(batch)
    }

    /// The description of `world`, if listed.
    pub fn get(&self, world: &WorldId) -> Option<&Bytes> {
        self.state.get(world.as_bytes())
    }

    /// The authoritative state.
    pub fn state(&self) -> &WorldState {
        &self.state
    }

    /// The machine serving the directory's subscribers.
    pub fn machine(&self) -> &ReplicaMachine {
        &self.machine
    }

    /// The machine serving the directory's subscribers, mutably.
    pub fn machine_mut(&mut self) -> &mut ReplicaMachine {
        &mut self.machine
    }

    fn forward(&mut self, batch: flotilla_world::ChangeBatch) -> Option<Bytes> {
        let frame = flotilla_wire::change_batch_frame(&WorldId::DIRECTORY, &batch);
        match self.machine.apply_batch(frame, batch) {
            BatchOutcome::Forward(frame) => Some(frame),
            other => {
                log::error!("directory: own batch not applied: {other:?}");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ConnId;
    use crate::replica::Serve;
    use flotilla_wire::{Decoder, FrontendToClient};
    use flotilla_world::Position;

    #[test]
    fn announcements_become_batches_and_snapshots() {
        let mut directory = Directory::new(42, RingLimits::default(), 1 << 20);
        let arena = WorldId::new("arena-1").unwrap();
        let frame = directory
            .set(&arena, Bytes::from_static(b"{\"kind\":\"arena\"}"))
            .unwrap();
        let mut decoder = Decoder::default();
        decoder.feed(&frame);
        let FrontendToClient::ChangeBatch { world, batch } =
            decoder.next_message().unwrap().unwrap()
        else {
            panic!()
        };
        assert_eq!(world, WorldId::DIRECTORY);
        assert_eq!((batch.epoch, batch.seq), (42, 1));
        assert_eq!(batch.upserts[0].0.as_ref(), b"arena-1");
        // The same description again is not a change.
        assert_eq!(
            directory.set(&arena, Bytes::from_static(b"{\"kind\":\"arena\"}")),
            None
        );
        assert!(directory.remove(&WorldId::new("other").unwrap()).is_none());

        // A subscriber gets a snapshot with the world listed.
        let Serve::Snapshot(frames) = directory.machine_mut().subscribe(ConnId(1), None, false)
        else {
            panic!()
        };
        let mut decoder = Decoder::default();
        decoder.feed(&frames);
        let FrontendToClient::Snapshot { snapshot, .. } = decoder.next_message().unwrap().unwrap()
        else {
            panic!()
        };
        assert_eq!(snapshot.entries.len(), 1);
        assert_eq!(snapshot.digest(), directory.state().digest());

        // Removal is the next batch; a resume from seq 1 gets exactly it.
        let removal = directory.remove(&arena).unwrap();
        assert_eq!(
            directory.machine_mut().subscribe(
                ConnId(2),
                Some(Position { epoch: 42, seq: 1 }),
                false
            ),
            Serve::Batches(vec![removal])
        );
        assert_eq!(directory.get(&arena), None);
    }
}
