//! The store on a temporary directory: hourly segments, queries bounded in time that read
//! only their hours, retention by age and by size, the lock, reopening.

// Tests and benchmarks are shells: they drive real time, sockets and tasks.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests may unwrap: a panic is a test failure.

use std::time::{Duration, Instant};

use flotilla_logd::record::now_nanos;
use flotilla_logd::{Error, Matcher, Query, Record, Source, Store, StoreConfig};

const HOUR: i64 = 3_600_000_000_000;

fn records(at: i64, n: usize, tag: &str) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            received_at: at + i as i64 * 1000,
            source: Source::LOCAL,
            flags: 0,
            raw: format!("<13>1 - host-{tag} app - - - {tag} line {i} uid-{tag}-{i:05}")
                .into_bytes()
                .into(),
        })
        .collect()
}

fn count(store: &Store, q: Query) -> (usize, flotilla_logd::QueryStats) {
    let (found, stats) = store.query(&Matcher::new(q).unwrap(), None).unwrap();
    (found.len(), stats)
}

/// Records at four times one hour apart (3 h 1 min ago ... 1 min ago), so in four
/// different hours: one sealed segment each. Returns the four times.
fn four_hours(store: &Store) -> [i64; 4] {
    let now = now_nanos();
    let times = [0, 1, 2, 3].map(|h| now - (3 - h) * HOUR - 60_000_000_000);
    for (h, &at) in times.iter().enumerate() {
        store
            .ingest()
            .submit_blocking(records(at, 5000, &format!("h{h}")), true)
            .unwrap();
    }
    store.seal_now().unwrap();
    times
}

#[test]
fn segments_are_hourly_and_a_bounded_query_reads_only_its_hours() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    let times = four_hours(&store);
    assert_eq!(store.stats().segments, 4);
    let (n, stats) = count(
        &store,
        Query {
            since: Some(times[1]),
            until: Some(times[1] + HOUR / 6),
            ..Query::default()
        },
    );
    assert_eq!(n, 5000);
    assert_eq!(stats.segments_total, 4);
    assert_eq!(stats.segments_in_range, 1, "{stats:?}");
    // A rare word opens one block of 20.
    let (n, stats) = count(
        &store,
        Query {
            grep: vec!["uid-h2-01234".into()],
            ..Query::default()
        },
    );
    assert_eq!(n, 1);
    assert!(stats.blocks_opened <= 2, "{stats:?}");
    assert!(stats.blocks_in_range >= 8, "{stats:?}");
    // The newest N, in time order.
    let (found, _) = store
        .query(&Matcher::new(Query::default()).unwrap(), Some(3))
        .unwrap();
    let text: Vec<String> = found
        .iter()
        .map(|(_, r)| String::from_utf8_lossy(&r.raw).into_owned())
        .collect();
    assert!(
        text[0].ends_with("uid-h3-04997") && text[2].ends_with("uid-h3-04999"),
        "{text:?}"
    );
    store.shutdown();
    // Reopened: the same.
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    assert_eq!(count(&store, Query::default()).0, 20_000);
    store.shutdown();
}

#[test]
fn retention_by_age_drops_whole_old_hours() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StoreConfig::new(dir.path());
    config.retention_age = Some(Duration::from_secs(90 * 60));
    let store = Store::open(config).unwrap();
    four_hours(&store);
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.stats().segments > 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    // The two hours that ended more than 90 minutes ago are gone; the others are whole.
    let stats = store.stats();
    assert_eq!(stats.segments, 2, "{stats:?}");
    assert_eq!(stats.segments_dropped, 2, "{stats:?}");
    assert_eq!(count(&store, Query::default()).0, 10_000);
    let files = std::fs::read_dir(dir.path().join("segments"))
        .unwrap()
        .count();
    assert_eq!(files, 2);
    store.shutdown();
}

#[test]
fn retention_by_size_drops_the_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let probe = tempfile::tempdir().unwrap();
    // Measure one hour's segment, then allow a little more than two of them.
    let store = Store::open(StoreConfig::new(probe.path())).unwrap();
    four_hours(&store);
    let per_segment = store.stats().segment_bytes / 4;
    store.shutdown();
    let mut config = StoreConfig::new(dir.path());
    config.retention_bytes = Some(per_segment * 5 / 2);
    let store = Store::open(config).unwrap();
    four_hours(&store);
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.stats().segments > 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(store.stats().segments, 2);
    // The newest two hours remain.
    assert_eq!(
        count(
            &store,
            Query {
                host: vec!["host-h3".into()],
                ..Query::default()
            }
        )
        .0,
        5000
    );
    assert_eq!(
        count(
            &store,
            Query {
                host: vec!["host-h0".into()],
                ..Query::default()
            }
        )
        .0,
        0
    );
    store.shutdown();
}

#[test]
fn one_store_per_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    match Store::open(StoreConfig::new(dir.path())) {
        Err(Error::Locked(_)) => {}
        Err(e) => panic!("expected Locked, got {e}"),
        Ok(_) => panic!("a second store opened a locked directory"),
    }
    // A read-only opening is allowed and sees what is durable.
    store
        .ingest()
        .submit_blocking(records(now_nanos(), 10, "ro"), true)
        .unwrap();
    let ro = Store::open_read_only(dir.path()).unwrap();
    let (found, _) = ro
        .query(&Matcher::new(Query::default()).unwrap(), None)
        .unwrap();
    assert_eq!(found.len(), 10);
    store.shutdown();
    let again = Store::open(StoreConfig::new(dir.path())).unwrap();
    again.shutdown();
}
