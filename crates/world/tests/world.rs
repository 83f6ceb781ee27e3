//! Behaviour of the authoritative world, replicas, the batch ring and the resume rule.

use std::sync::Arc;

use bytes::Bytes;
use flotilla_world::{
    ApplyOutcome, BatchRing, CatchUp, ChangeBatch, Position, RecentBatch, Replica, ReplicaConfig,
    RingLimits, WorldError, WorldState,
};
use proptest::prelude::*;

/// The writes of one tick: `(key index, Some(value) to set | None to remove)`.
type Tick = Vec<(u8, Option<Vec<u8>>)>;

/// One write of a random tick: `Some(value)` sets, `None` removes; keys from a small set so
/// ticks overwrite and remove existing keys often.
fn tick_strategy() -> impl Strategy<Value = Tick> {
    prop::collection::vec(
        (
            0u8..24,
            prop::option::weighted(0.7, prop::collection::vec(any::<u8>(), 0..12)),
        ),
        0..8,
    )
}

/// Runs `ticks` on `world`, returning the committed batches.
fn run_ticks(world: &mut WorldState, ticks: &[Tick]) -> Vec<ChangeBatch> {
    let mut batches = Vec::new();
    for tick in ticks {
        let mut tx = world.begin();
        for (key, value) in tick {
            let key = Bytes::from(vec![b'k', *key]);
            match value {
                Some(value) => tx.set(key, Bytes::from(value.clone())),
                None => tx.remove(key),
            }
        }
        if let Some(batch) = tx.commit() {
            batches.push(batch);
        }
    }
    batches
}

proptest! {
    #[test]
    fn replica_fed_batches_equals_authority(
        epoch in any::<u64>(),
        ticks in prop::collection::vec(tick_strategy(), 0..60),
    ) {
        let mut world = WorldState::new(epoch);
        let mut replica = Replica::new(ReplicaConfig::default());
        replica.apply_snapshot(world.snapshot());
        prop_assert_eq!(replica.digest(), world.digest());
        for tick in &ticks {
            let before = world.seq();
            for batch in run_ticks(&mut world, std::slice::from_ref(tick)) {
                prop_assert_eq!(batch.seq, before + 1);
                prop_assert_eq!(replica.apply_batch(batch), Ok(ApplyOutcome::Applied));
            }
            prop_assert_eq!(replica.digest(), world.digest());
            prop_assert_eq!(replica.len(), world.len());
            prop_assert_eq!(replica.snapshot().map(|s| s.digest()), Some(world.digest()));
            prop_assert_eq!(replica.approx_bytes() >= world.approx_bytes(), true);
        }
        // A replica built from a late snapshot agrees too.
        let mut late = Replica::new(ReplicaConfig::CLIENT);
        late.apply_snapshot(world.snapshot());
        prop_assert_eq!(late.digest(), world.digest());
    }

    #[test]
    fn catch_up_returns_exactly_the_missing_batches(
        ticks in prop::collection::vec(tick_strategy(), 1..80),
        max_batches in 0usize..40,
        max_bytes in 0usize..6000,
        from_pick in any::<prop::sample::Index>(),
    ) {
        let limits = RingLimits { max_batches, max_bytes };
        let mut world = WorldState::new(42);
        let mut replica = Replica::new(ReplicaConfig { ring: limits });
        replica.apply_snapshot(world.snapshot());
        // Remember the state at every seq, to start subscribers from there.
        let mut states = vec![world.clone()];
        for batch in run_ticks(&mut world, &ticks) {
            replica.apply_batch(batch).unwrap();
            states.push(world.clone());
            prop_assert!(replica.ring().len() <= max_batches);
            prop_assert!(replica.ring().approx_bytes() <= max_bytes);
        }
        let current = world.seq();
        let from_seq = from_pick.index(states.len()) as u64;
        let ring_first = replica.ring().first().map(|p| p.seq);
        match replica.catch_up(Position { epoch: 42, seq: from_seq }) {
            CatchUp::UpToDate => prop_assert_eq!(from_seq, current),
            CatchUp::Batches(batches) => {
                prop_assert!(from_seq < current);
                let seqs: Vec<u64> = batches.iter().map(|b| b.batch.seq).collect();
                let expected: Vec<u64> = (from_seq + 1..=current).collect();
                prop_assert_eq!(seqs, expected);
                // Applying them to a subscriber at from_seq reaches the authority's state.
                let mut subscriber = Replica::new(ReplicaConfig::CLIENT);
                subscriber.apply_snapshot(states[from_seq as usize].snapshot());
                for entry in batches {
                    subscriber.apply_batch((*entry.batch).clone()).unwrap();
                }
                prop_assert_eq!(subscriber.digest(), world.digest());
            }
            CatchUp::Snapshot(snapshot) => {
                // Only when the ring no longer reaches back to from_seq + 1.
                prop_assert!(from_seq < current);
                prop_assert!(ring_first.is_none_or(|first| first > from_seq + 1));
                prop_assert_eq!(snapshot.digest(), world.digest());
            }
            CatchUp::Pending => prop_assert!(false, "synced replica answered Pending"),
        }
        // Another epoch always gets a snapshot.
        match replica.catch_up(Position { epoch: 41, seq: from_seq }) {
            CatchUp::Snapshot(snapshot) => prop_assert_eq!(snapshot.digest(), world.digest()),
            other => prop_assert!(false, "other epoch answered {:?}", other),
        }
    }

    #[test]
    fn ring_stays_within_count_and_bytes(
        sizes in prop::collection::vec(0usize..3000, 0..100),
        max_batches in 0usize..20,
        max_bytes in 0usize..20_000,
    ) {
        let mut ring = BatchRing::new(RingLimits { max_batches, max_bytes });
        for (index, size) in sizes.iter().enumerate() {
            let batch = ChangeBatch {
                epoch: 1,
                seq: index as u64 + 1,
                upserts: vec![(Bytes::from_static(b"k"), Bytes::from(vec![0u8; *size]))],
                removes: Vec::new(),
            };
            ring.push(RecentBatch::with_encoded(Arc::new(batch), Bytes::from(vec![1u8; *size / 2])));
            prop_assert!(ring.len() <= max_batches);
            prop_assert!(ring.approx_bytes() <= max_bytes);
            let held: usize = ring.iter().map(RecentBatch::approx_bytes).sum();
            prop_assert_eq!(held, ring.approx_bytes());
            if let (Some(first), Some(last)) = (ring.first(), ring.last()) {
                prop_assert_eq!(last.seq, index as u64 + 1);
                prop_assert_eq!(last.seq - first.seq + 1, ring.len() as u64);
            }
        }
    }
}

fn batch(epoch: u64, seq: u64, key: &'static [u8], value: &'static [u8]) -> ChangeBatch {
    ChangeBatch {
        epoch,
        seq,
        upserts: vec![(Bytes::from_static(key), Bytes::from_static(value))],
        removes: Vec::new(),
    }
}

#[test]
fn replica_rejects_and_ignores_out_of_order_batches() {
    let mut replica = Replica::new(ReplicaConfig::default());
    assert_eq!(replica.catch_up(Position::default()), CatchUp::Pending);
    assert_eq!(replica.snapshot(), None);
    assert_eq!(
        replica.apply_batch(batch(5, 1, b"a", b"1")),
        Err(WorldError::NotSynced { epoch: 5, seq: 1 })
    );
    replica.apply_snapshot(WorldState::new(5).snapshot());
    assert_eq!(replica.position(), Some(Position { epoch: 5, seq: 0 }));
    assert_eq!(
        replica.apply_batch(batch(6, 1, b"a", b"1")),
        Err(WorldError::EpochMismatch {
            expected: 5,
            got: 6
        })
    );
    assert_eq!(
        replica.apply_batch(batch(5, 3, b"a", b"1")),
        Err(WorldError::Gap {
            expected: 1,
            got: 3
        })
    );
    assert_eq!(
        replica.apply_batch(batch(5, 1, b"a", b"1")),
        Ok(ApplyOutcome::Applied)
    );
    let digest = replica.digest();
    // A duplicate is ignored and changes nothing.
    assert_eq!(
        replica.apply_batch(batch(5, 1, b"a", b"other")),
        Ok(ApplyOutcome::AlreadyHad)
    );
    assert_eq!(replica.digest(), digest);
    assert_eq!(replica.get(b"a"), Some(&Bytes::from_static(b"1")));
    // Errors leave the replica unchanged.
    assert_eq!(replica.ring().len(), 1);
}

#[test]
fn subscriber_ahead_of_the_replica_is_up_to_date() {
    let mut replica = Replica::new(ReplicaConfig::default());
    replica.apply_snapshot(WorldState::new(9).snapshot());
    replica.apply_batch(batch(9, 1, b"a", b"1")).unwrap();
    assert_eq!(
        replica.catch_up(Position { epoch: 9, seq: 1 }),
        CatchUp::UpToDate
    );
    assert_eq!(
        replica.catch_up(Position { epoch: 9, seq: 5 }),
        CatchUp::UpToDate
    );
    assert!(matches!(
        replica.catch_up(Position { epoch: 8, seq: 1 }),
        CatchUp::Snapshot(_)
    ));
}

#[test]
fn ring_keeps_encoded_frames_and_resets_on_new_epoch() {
    let mut replica = Replica::new(ReplicaConfig::default());
    replica.apply_snapshot(WorldState::new(1).snapshot());
    let frame = Bytes::from_static(b"encoded frame");
    replica
        .apply_recent(RecentBatch::with_encoded(
            Arc::new(batch(1, 1, b"a", b"1")),
            frame.clone(),
        ))
        .unwrap();
    match replica.catch_up(Position { epoch: 1, seq: 0 }) {
        CatchUp::Batches(batches) => assert_eq!(batches[0].encoded.as_ref(), Some(&frame)),
        other => panic!("expected batches, got {other:?}"),
    }
    // A snapshot of a new history clears the ring: old positions need a snapshot.
    replica.apply_snapshot(WorldState::new(2).snapshot());
    assert!(replica.ring().is_empty());
    assert!(matches!(
        replica.catch_up(Position { epoch: 1, seq: 0 }),
        CatchUp::Snapshot(_)
    ));
    assert_eq!(replica.digest(), WorldState::new(2).digest());
}

#[test]
fn snapshot_is_shared_until_the_state_changes() {
    let mut replica = Replica::new(ReplicaConfig::default());
    replica.apply_snapshot(WorldState::new(1).snapshot());
    let first = replica.snapshot().unwrap();
    assert!(Arc::ptr_eq(&first, &replica.snapshot().unwrap()));
    replica.apply_batch(batch(1, 1, b"a", b"1")).unwrap();
    let second = replica.snapshot().unwrap();
    assert!(!Arc::ptr_eq(&first, &second));
    assert_eq!(second.seq, 1);
}

#[test]
fn transactions_conflate_and_drop_no_ops() {
    let mut world = WorldState::new(3);
    let mut tx = world.begin();
    tx.set("a", "1");
    tx.set("a", "2");
    tx.set("b", "x");
    tx.remove("b");
    tx.remove("never-existed");
    assert_eq!(tx.get(b"a"), Some(&Bytes::from_static(b"2")));
    assert_eq!(tx.get(b"b"), None);
    let committed = tx.commit().unwrap();
    assert_eq!(committed.seq, 1);
    assert_eq!(
        committed.upserts,
        vec![(Bytes::from_static(b"a"), Bytes::from_static(b"2"))]
    );
    assert!(committed.removes.is_empty());

    // Setting the same value again changes nothing: no batch, no seq.
    let mut tx = world.begin();
    tx.set("a", "2");
    assert_eq!(tx.commit(), None);
    assert_eq!(world.seq(), 1);

    // A dropped transaction is discarded.
    let mut tx = world.begin();
    tx.set("a", "3");
    drop(tx);
    assert_eq!(world.get(b"a"), Some(&Bytes::from_static(b"2")));

    let mut tx = world.begin();
    tx.remove("a");
    let removed = tx.commit().unwrap();
    assert_eq!(removed.removes, vec![Bytes::from_static(b"a")]);
    assert!(world.is_empty());
    assert_eq!(world.approx_bytes(), 0);
}

#[test]
fn authority_catch_up_uses_a_side_ring() {
    let mut world = WorldState::new(11);
    let mut ring = BatchRing::default();
    for value in [&b"1"[..], b"2", b"3"] {
        let mut tx = world.begin();
        tx.set("k", Bytes::copy_from_slice(value));
        ring.push(RecentBatch::new(Arc::new(tx.commit().unwrap())));
    }
    match world.catch_up(&ring, Position { epoch: 11, seq: 1 }) {
        CatchUp::Batches(batches) => {
            assert_eq!(
                batches.iter().map(|b| b.batch.seq).collect::<Vec<_>>(),
                vec![2, 3]
            );
        }
        other => panic!("expected batches, got {other:?}"),
    }
    assert_eq!(
        world.catch_up(&ring, Position { epoch: 11, seq: 3 }),
        CatchUp::UpToDate
    );
    assert!(matches!(
        world.catch_up(&ring, Position { epoch: 12, seq: 3 }),
        CatchUp::Snapshot(_)
    ));
}

#[test]
fn digest_depends_on_epoch_seq_and_entries() {
    let a = WorldState::with_entries(1, [("k", "v")]);
    let b = WorldState::with_entries(2, [("k", "v")]);
    let c = WorldState::with_entries(1, [("k", "w")]);
    let d = WorldState::with_entries(1, [("kv", "")]);
    let digests = [a.digest(), b.digest(), c.digest(), d.digest()];
    for i in 0..digests.len() {
        for j in i + 1..digests.len() {
            assert_ne!(digests[i], digests[j]);
        }
    }
    assert_eq!(a.digest(), a.snapshot().digest());
}
