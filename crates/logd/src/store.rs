//! The store: one data directory, one writer thread, any number of readers.
//!
//! ```text
//! listeners ──Batch──▶ channel ──▶ store thread: ids → WAL append ─▶ group commit (fdatasync)
//!   (memory budget:                   │ after the sync: acknowledge waiters (RELP),
//!    back-pressure)                   │ index into the open block, publish to tails,
//!                                     ▼ full block → zstd + filter → open segment file
//!                                   seal (hour change, size) → .seg, WAL generations dropped
//! queries: snapshot of (sealed segments, open segment, unsealed records) → prune → scan
//! ```
//!
//! Records become visible to queries and tails right after the sync that makes them
//! durable, so nothing a query returns can be lost by a crash.

// An I/O component (files, fsync, threads): it times group commits and housekeeping.
#![allow(clippy::disallowed_methods)]

use std::collections::HashMap;
use std::fs::File;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, oneshot};

use crate::block::{BlockBuilder, BlockReader, DecodedBlock};
use crate::error::{Error, IoContext};
use crate::query::{Matcher, QueryStats};
use crate::record::{FLAG_TRUNCATED, Head, Record, now_nanos};
use crate::segment::{Segment, SegmentWriter, list_dir};
use crate::wal::Wal;

/// Settings of a [`Store`].
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The data directory (created if missing; one logd at a time).
    pub data_dir: PathBuf,
    /// Longest time a record waits for its fsync when nobody waits for it (RELP batches
    /// are synced as soon as the previous sync ends).
    pub commit_interval: Duration,
    /// zstd level of blocks.
    pub zstd_level: i32,
    /// A segment is sealed once its records' raw bytes reach this (or its hour ends).
    pub segment_target_bytes: u64,
    /// Drop sealed segments whose newest record is older than this.
    pub retention_age: Option<Duration>,
    /// Drop the oldest sealed segments while the segments take more than this.
    pub retention_bytes: Option<u64>,
    /// Memory for records received but not yet written (back-pressure past it).
    pub queue_bytes: usize,
    /// This node's name (archive object names, multi-node queries).
    pub node_id: String,
    /// Retention keeps segments not yet archived (set when an archive is configured).
    pub keep_until_archived: bool,
}

impl StoreConfig {
    /// Defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            data_dir: data_dir.into(),
            commit_interval: Duration::from_millis(10),
            zstd_level: 1,
            segment_target_bytes: 256 << 20,
            retention_age: None,
            retention_bytes: None,
            queue_bytes: 64 << 20,
            node_id: default_node_id(),
            keep_until_archived: false,
        }
    }
}

/// The machine's host name, or `logd`.
pub fn default_node_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "logd".to_string())
}

/// Records handed to the store together, with an optional durability waiter.
struct Batch {
    records: Vec<Record>,
    done: Option<oneshot::Sender<Result<(), Error>>>,
    _permit: Option<OwnedSemaphorePermit>,
}

enum Command {
    Batch(Batch),
    /// Seal the open block and segment now (tests, shutdown, archive on demand).
    Seal(oneshot::Sender<Result<(), Error>>),
}

/// Counters of one source address.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceCounters {
    /// Records stored.
    pub records: u64,
    /// Raw bytes stored.
    pub bytes: u64,
    /// Records stored raw because they did not parse.
    pub unparsed: u64,
    /// Records cut to the frame limit.
    pub truncated: u64,
    /// Received-at time of the last record (ns).
    pub last_received_ns: i64,
}

/// Most distinct sources counted one by one; others are summed under `other`.
const MAX_SOURCES: usize = 4096;

#[derive(Default)]
struct Counters {
    records: AtomicU64,
    indexed: AtomicU64,
    bytes: AtomicU64,
    batches: AtomicU64,
    syncs: AtomicU64,
    sync_nanos: AtomicU64,
    blocks_sealed: AtomicU64,
    segments_sealed: AtomicU64,
    segments_dropped: AtomicU64,
    unparsed: AtomicU64,
    truncated: AtomicU64,
    rejected_while_closed: AtomicU64,
    write_errors: AtomicU64,
    recovered_records: AtomicU64,
    torn_tail_bytes: AtomicU64,
}

/// What queries see: a consistent snapshot is taken under the read lock.
#[derive(Default)]
struct View {
    sealed: Vec<Arc<Segment>>,
    open: Option<Arc<Segment>>,
    /// Durable records not yet in a block.
    recent: Vec<(u64, Record)>,
}

/// Records that became durable and searchable together, as the store announces them to
/// its subscribers (live tails, the fleet watcher, forwarders).
#[derive(Debug, Clone, Default)]
pub struct DurableBatch {
    /// The records with their ids, in id order.
    pub records: Vec<(u64, Record)>,
    /// The header the indexer parsed from each record, in the same order (it may be
    /// shorter if indexing failed part-way: a missing head means "parse it yourself").
    pub heads: Vec<Head>,
}

struct Shared {
    config: StoreConfig,
    view: RwLock<View>,
    counters: Counters,
    sources: Mutex<HashMap<IpAddr, SourceCounters>>,
    other_sources: Mutex<SourceCounters>,
    tail: broadcast::Sender<Arc<DurableBatch>>,
    budget: Arc<Semaphore>,
    budget_units: u32,
    /// Why the store cannot write right now (e.g. a full disk), if it cannot.
    health: Mutex<Option<String>>,
    closing: AtomicBool,
    next_id: AtomicU64,
    started: Instant,
    /// File names of archived segments (kept in `archive.done`).
    archived: Mutex<std::collections::HashSet<String>>,
    archive_failures: AtomicU64,
    archive_error: Mutex<Option<String>>,
}

/// The log store. Cheap to clone; [`shutdown`](Store::shutdown) stops the writer thread.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Command>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
    /// The data directory's lock, released by `shutdown`.
    lock: Arc<Mutex<Option<File>>>,
}

/// A handle for listeners: submits batches with back-pressure.
#[derive(Clone)]
pub struct Ingest {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Command>,
}

/// Budget unit: 1 KiB of queued records.
const UNIT: usize = 1024;

fn units(records: &[Record], cap: u32) -> u32 {
    let bytes: usize = records.iter().map(Record::weight).sum();
    (bytes.div_ceil(UNIT) as u32).clamp(1, cap)
}

impl Ingest {
    /// Submits records, waiting while the store is behind (the caller stops reading:
    /// back-pressure). Returns once they are queued, not once they are durable.
    pub async fn submit(&self, records: Vec<Record>) -> Result<(), Error> {
        self.submit_inner(records, None).await
    }

    /// Submits records and returns a receiver that resolves once they are durable (after
    /// the fsync that covers them) and visible to queries, or with the reason they are not.
    pub async fn submit_durable(
        &self,
        records: Vec<Record>,
    ) -> Result<oneshot::Receiver<Result<(), Error>>, Error> {
        let (tx, rx) = oneshot::channel();
        self.submit_inner(records, Some(tx)).await?;
        Ok(rx)
    }

    async fn submit_inner(
        &self,
        records: Vec<Record>,
        done: Option<oneshot::Sender<Result<(), Error>>>,
    ) -> Result<(), Error> {
        if records.is_empty() {
            if let Some(done) = done {
                let _ = done.send(Ok(()));
            }
            return Ok(());
        }
        let n = units(&records, self.shared.budget_units);
        let permit = self
            .shared
            .budget
            .clone()
            .acquire_many_owned(n)
            .await
            .map_err(|_| Error::Closed)?;
        self.send(records, done, permit)
    }

    /// Submits records only if there is room now (UDP: a full queue drops and counts).
    pub fn try_submit(&self, records: Vec<Record>) -> Result<(), Error> {
        let n = units(&records, self.shared.budget_units);
        let permit = self
            .shared
            .budget
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| Error::NotDurable("the store's queue is full".into()))?;
        self.send(records, None, permit)
    }

    /// Blocking form of [`submit`](Self::submit) for threads outside a runtime; with
    /// `durable`, also waits for the fsync.
    pub fn submit_blocking(&self, records: Vec<Record>, durable: bool) -> Result<(), Error> {
        let n = units(&records, self.shared.budget_units);
        let permit = loop {
            match self.shared.budget.clone().try_acquire_many_owned(n) {
                Ok(p) => break p,
                Err(tokio::sync::TryAcquireError::Closed) => return Err(Error::Closed),
                Err(tokio::sync::TryAcquireError::NoPermits) => {
                    std::thread::sleep(Duration::from_micros(200))
                }
            }
        };
        if durable {
            let (tx, rx) = oneshot::channel();
            self.send(records, Some(tx), permit)?;
            rx.blocking_recv().map_err(|_| Error::Closed)?
        } else {
            self.send(records, None, permit)
        }
    }

    fn send(
        &self,
        records: Vec<Record>,
        done: Option<oneshot::Sender<Result<(), Error>>>,
        permit: OwnedSemaphorePermit,
    ) -> Result<(), Error> {
        if self.shared.closing.load(Ordering::Acquire) {
            self.shared
                .counters
                .rejected_while_closed
                .fetch_add(records.len() as u64, Ordering::Relaxed);
            return Err(Error::Closed);
        }
        self.tx
            .send(Command::Batch(Batch {
                records,
                done,
                _permit: Some(permit),
            }))
            .map_err(|_| Error::Closed)
    }
}

/// Store-wide statistics (the `stats` API and `/metrics`).
#[derive(Debug, Clone, Serialize)]
pub struct StoreStats {
    /// This node.
    pub node_id: String,
    /// The data directory.
    pub data_dir: String,
    /// Seconds since the store opened.
    pub uptime_secs: f64,
    /// Records stored since start (after their fsync).
    pub records: u64,
    /// Records made searchable since start (indexed after their fsync; `records` minus
    /// this is the indexer's backlog).
    pub indexed: u64,
    /// Raw bytes stored since start.
    pub bytes: u64,
    /// Batches received.
    pub batches: u64,
    /// Group commits (fdatasync calls of the write-ahead log).
    pub syncs: u64,
    /// Mean time of one sync, in microseconds.
    pub sync_mean_micros: f64,
    /// Records per sync, on average.
    pub records_per_sync: f64,
    /// Blocks written.
    pub blocks_sealed: u64,
    /// Segments sealed since start.
    pub segments_sealed: u64,
    /// Segments removed by retention since start.
    pub segments_dropped: u64,
    /// Sealed segments on disk.
    pub segments: u64,
    /// Bytes of sealed and open segment files.
    pub segment_bytes: u64,
    /// Records in sealed segments.
    pub stored_records: u64,
    /// Records stored raw (unparsed) since start.
    pub unparsed: u64,
    /// Records cut to the frame limit since start.
    pub truncated: u64,
    /// Failed writes or syncs (each retried).
    pub write_errors: u64,
    /// Records recovered from the write-ahead log at start.
    pub recovered_records: u64,
    /// Bytes cut from a torn write-ahead log tail at start.
    pub torn_tail_bytes: u64,
    /// Records refused because the store was closing.
    pub rejected_while_closed: u64,
    /// Memory budget for queued records, and how much of it is in use (bytes).
    pub queue_capacity_bytes: u64,
    /// Bytes of queued records.
    pub queue_used_bytes: u64,
    /// Why the store cannot write, when it cannot (e.g. "disk full").
    pub error: Option<String>,
    /// Id the next record gets.
    pub next_id: u64,
    /// Sealed segments archived (ever, as recorded in `archive.done`).
    pub archived_segments: u64,
    /// Failed archive attempts since start (each retried).
    pub archive_failures: u64,
    /// The last archive error, until an attempt succeeds.
    pub archive_error: Option<String>,
    /// Per source address.
    pub sources: Vec<(String, SourceCounters)>,
}

impl Store {
    /// Opens (or creates) the data directory: takes its lock, loads the sealed segments,
    /// replays the write-ahead log, and starts the writer thread.
    pub fn open(config: StoreConfig) -> Result<Store, Error> {
        let dir = config.data_dir.clone();
        std::fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
        let lock_path = dir.join("LOCK");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .ctx(|| format!("opening {}", lock_path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(Error::Locked(dir)),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::io(format!("locking {}", lock_path.display()), e));
            }
        }
        let seg_dir = dir.join("segments");
        let (sealed_paths, open_paths) = list_dir(&seg_dir)?;
        for p in open_paths {
            // Its records are still in the write-ahead log.
            std::fs::remove_file(&p).ctx(|| format!("removing {}", p.display()))?;
        }
        let mut sealed = Vec::new();
        for p in sealed_paths {
            match Segment::open_sealed(&p) {
                Ok(s) if !s.blocks.is_empty() => sealed.push(Arc::new(s)),
                Ok(_) => {}
                Err(e) => {
                    // Never delete data we cannot read: set it aside and say so.
                    let aside = p.with_extension("corrupt");
                    tracing::error!(segment = %p.display(), error = %e, "unreadable segment set aside as .corrupt");
                    std::fs::rename(&p, &aside).ctx(|| format!("renaming {}", p.display()))?;
                }
            }
        }
        sealed.sort_by_key(|s| s.first_id());
        let sealed_end = sealed.iter().filter_map(|s| s.end_id()).max().unwrap_or(1);
        let (wal, recovered) = Wal::open(&dir.join("wal"))?;
        let replay: Vec<(u64, Record)> = recovered
            .records
            .into_iter()
            .filter(|(id, _)| *id >= sealed_end)
            .collect();
        let next_id = replay
            .last()
            .map_or(sealed_end, |(id, _)| (*id + 1).max(sealed_end));
        let budget_units = (config.queue_bytes / UNIT).clamp(64, u32::MAX as usize >> 4) as u32;
        let (tail, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            view: RwLock::new(View {
                sealed,
                open: None,
                recent: Vec::new(),
            }),
            counters: Counters::default(),
            sources: Mutex::new(HashMap::new()),
            other_sources: Mutex::new(SourceCounters::default()),
            tail,
            budget: Arc::new(Semaphore::new(budget_units as usize)),
            budget_units,
            health: Mutex::new(None),
            closing: AtomicBool::new(false),
            next_id: AtomicU64::new(next_id),
            started: Instant::now(),
            archived: Mutex::new(load_archived(&dir)),
            archive_failures: AtomicU64::new(0),
            archive_error: Mutex::new(None),
            config,
        });
        shared
            .counters
            .recovered_records
            .store(replay.len() as u64, Ordering::Relaxed);
        shared
            .counters
            .torn_tail_bytes
            .store(recovered.torn_tail_bytes, Ordering::Relaxed);
        if !replay.is_empty() {
            tracing::info!(
                records = replay.len(),
                torn_tail_bytes = recovered.torn_tail_bytes,
                "write-ahead log replayed"
            );
        }
        let (tx, rx) = mpsc::channel();
        let (index_tx, index_rx) = mpsc::channel();
        let sealed_end = Arc::new(AtomicU64::new(sealed_end));
        let mut indexer = Indexer {
            shared: shared.clone(),
            seg_dir,
            builder: BlockBuilder::new(next_id),
            segment: None,
            current_hour: None,
            sealed_end: sealed_end.clone(),
        };
        // Recovered records go back into blocks (they are durable already).
        if !replay.is_empty() {
            indexer.builder = BlockBuilder::new(replay[0].0);
            indexer.index(&replay, &mut Vec::new())?;
        }
        let wal_writer = WalWriter {
            shared: shared.clone(),
            wal,
            to_index: index_tx,
            closed_generations: recovered
                .generations
                .iter()
                .map(|&g| (g, next_id.saturating_sub(1)))
                .collect(),
            wal_next_id: next_id,
            sealed_end,
        };
        let indexer_thread = std::thread::Builder::new()
            .name("logd-index".into())
            .spawn(move || indexer.run(index_rx))
            .map_err(|e| Error::io("starting the indexer thread", e))?;
        let thread = std::thread::Builder::new()
            .name("logd-wal".into())
            .spawn(move || {
                wal_writer.run(rx);
                // The indexer ends once the WAL thread's sender is gone and it has
                // indexed and sealed everything sent before.
                let _ = indexer_thread.join();
            })
            .map_err(|e| Error::io("starting the write-ahead log thread", e))?;
        Ok(Store {
            shared,
            tx,
            thread: Arc::new(Mutex::new(Some(thread))),
            lock: Arc::new(Mutex::new(Some(lock))),
        })
    }

    /// Opens a data directory for queries only, without its lock and without changing
    /// anything: sealed segments plus the write-ahead log's records read into memory. A
    /// running logd may be writing it meanwhile; the snapshot is as of this call.
    pub fn open_read_only(data_dir: &Path) -> Result<ReadOnlyStore, Error> {
        if !data_dir.join("segments").exists() && !data_dir.join("wal").exists() {
            return Err(Error::Config(format!(
                "{} is not a logd data directory (no segments/ or wal/)",
                data_dir.display()
            )));
        }
        let (sealed_paths, _) = list_dir(&data_dir.join("segments"))?;
        let mut sealed = Vec::new();
        for p in sealed_paths {
            match Segment::open_sealed(&p) {
                Ok(s) => sealed.push(Arc::new(s)),
                // Sealed and removed by retention meanwhile: skip it.
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        sealed.sort_by_key(|s| s.first_id());
        let sealed_end = sealed.iter().filter_map(|s| s.end_id()).max().unwrap_or(1);
        let recent = Wal::read_only(&data_dir.join("wal"))?
            .into_iter()
            .filter(|(id, _)| *id >= sealed_end)
            .collect();
        Ok(ReadOnlyStore {
            view: View {
                sealed,
                open: None,
                recent,
            },
        })
    }

    /// A handle for listeners.
    pub fn ingest(&self) -> Ingest {
        Ingest {
            shared: self.shared.clone(),
            tx: self.tx.clone(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &StoreConfig {
        &self.shared.config
    }

    /// Subscribes to records as they become durable (live tail). A subscriber that falls
    /// behind by more than 1,024 batches is told how many it missed.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<DurableBatch>> {
        self.shared.tail.subscribe()
    }

    /// Seals the open block and segment now.
    pub fn seal_now(&self) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::Seal(tx)).map_err(|_| Error::Closed)?;
        rx.blocking_recv().map_err(|_| Error::Closed)?
    }

    /// The sealed segments (for the archiver).
    pub fn sealed_segments(&self) -> Vec<Arc<Segment>> {
        self.shared
            .view
            .read()
            .map(|v| v.sealed.clone())
            .unwrap_or_default()
    }

    /// Whether a sealed segment was archived.
    pub fn is_archived(&self, path: &Path) -> bool {
        let name = file_name(path);
        self.shared
            .archived
            .lock()
            .map(|a| a.contains(&name))
            .unwrap_or(false)
    }

    /// Records that a sealed segment is archived (appended to `archive.done`, synced).
    pub fn mark_archived(&self, path: &Path) -> Result<(), Error> {
        use std::io::Write;
        let name = file_name(path);
        let done = self.shared.config.data_dir.join("archive.done");
        let mut f = File::options()
            .create(true)
            .append(true)
            .open(&done)
            .ctx(|| format!("opening {}", done.display()))?;
        f.write_all(format!("{name}\n").as_bytes())
            .and_then(|()| f.sync_data())
            .ctx(|| format!("writing {}", done.display()))?;
        if let Ok(mut a) = self.shared.archived.lock() {
            a.insert(name);
        }
        if let Ok(mut e) = self.shared.archive_error.lock() {
            *e = None;
        }
        Ok(())
    }

    /// Counts a failed archive attempt (shown in the stats until one succeeds).
    pub fn count_archive_failure(&self, error: &Error) {
        self.shared.archive_failures.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut e) = self.shared.archive_error.lock() {
            *e = Some(error.to_string());
        }
    }

    /// Runs a query: calls `emit` with each match, oldest first (or newest first), until
    /// it returns false.
    pub fn scan(
        &self,
        matcher: &Matcher,
        newest_first: bool,
        emit: &mut dyn FnMut(u64, &Record) -> bool,
    ) -> Result<QueryStats, Error> {
        let view = self
            .shared
            .view
            .read()
            .map_err(|_| Error::Corrupt("store view lock poisoned".into()))?;
        let (segments, recent) = view.snapshot();
        drop(view);
        scan_snapshot(&segments, &recent, matcher, newest_first, emit)
    }

    /// Runs a query and returns its matches in time order: all of them, or with a limit
    /// the newest `limit`.
    pub fn query(
        &self,
        matcher: &Matcher,
        limit: Option<usize>,
    ) -> Result<(Vec<(u64, Record)>, QueryStats), Error> {
        collect(limit, &mut |newest_first, emit| {
            self.scan(matcher, newest_first, emit)
        })
    }
    /// Statistics now.
    pub fn stats(&self) -> StoreStats {
        let c = &self.shared.counters;
        let (segments, segment_bytes, stored_records) = self
            .shared
            .view
            .read()
            .map(|v| {
                let open_bytes = v.open.as_ref().map_or(0, |o| o.file_bytes);
                (
                    v.sealed.len() as u64,
                    v.sealed.iter().map(|s| s.file_bytes).sum::<u64>() + open_bytes,
                    v.sealed.iter().map(|s| s.records()).sum::<u64>(),
                )
            })
            .unwrap_or_default();
        let syncs = c.syncs.load(Ordering::Relaxed);
        let records = c.records.load(Ordering::Relaxed);
        let mut sources: Vec<(String, SourceCounters)> = self
            .shared
            .sources
            .lock()
            .map(|m| {
                m.iter()
                    .map(|(ip, s)| (ip.to_string(), s.clone()))
                    .collect()
            })
            .unwrap_or_default();
        sources.sort_by_key(|s| std::cmp::Reverse(s.1.records));
        if let Ok(other) = self.shared.other_sources.lock()
            && other.records > 0
        {
            sources.push(("other".into(), other.clone()));
        }
        let available = self.shared.budget.available_permits() as u64;
        StoreStats {
            node_id: self.shared.config.node_id.clone(),
            data_dir: self.shared.config.data_dir.display().to_string(),
            uptime_secs: self.shared.started.elapsed().as_secs_f64(),
            records,
            indexed: c.indexed.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            syncs,
            sync_mean_micros: if syncs == 0 {
                0.0
            } else {
                c.sync_nanos.load(Ordering::Relaxed) as f64 / syncs as f64 / 1e3
            },
            records_per_sync: if syncs == 0 {
                0.0
            } else {
                records as f64 / syncs as f64
            },
            blocks_sealed: c.blocks_sealed.load(Ordering::Relaxed),
            segments_sealed: c.segments_sealed.load(Ordering::Relaxed),
            segments_dropped: c.segments_dropped.load(Ordering::Relaxed),
            segments,
            segment_bytes,
            stored_records,
            unparsed: c.unparsed.load(Ordering::Relaxed),
            truncated: c.truncated.load(Ordering::Relaxed),
            write_errors: c.write_errors.load(Ordering::Relaxed),
            recovered_records: c.recovered_records.load(Ordering::Relaxed),
            torn_tail_bytes: c.torn_tail_bytes.load(Ordering::Relaxed),
            rejected_while_closed: c.rejected_while_closed.load(Ordering::Relaxed),
            queue_capacity_bytes: u64::from(self.shared.budget_units) * UNIT as u64,
            queue_used_bytes: u64::from(self.shared.budget_units).saturating_sub(available)
                * UNIT as u64,
            error: self.shared.health.lock().ok().and_then(|h| h.clone()),
            next_id: self.shared.next_id.load(Ordering::Relaxed),
            archived_segments: self.shared.archived.lock().map_or(0, |a| a.len() as u64),
            archive_failures: self.shared.archive_failures.load(Ordering::Relaxed),
            archive_error: self
                .shared
                .archive_error
                .lock()
                .ok()
                .and_then(|e| e.clone()),
            sources,
        }
    }

    /// Stops accepting records, writes and syncs what was accepted, seals the open
    /// segment and stops the writer thread. Idempotent.
    pub fn shutdown(&self) {
        self.shared.closing.store(true, Ordering::Release);
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        let Some(handle) = handle else {
            return;
        };
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Seal(tx)).is_ok() {
            // The writer syncs, seals and exits once it sees `closing` after a seal.
            let _ = rx.blocking_recv();
        }
        self.shared.budget.close();
        let _ = handle.join();
        // Another logd may now use the directory.
        if let Ok(mut lock) = self.lock.lock() {
            lock.take();
        }
    }

    /// Path of the data directory.
    pub fn data_dir(&self) -> &Path {
        &self.shared.config.data_dir
    }
}

/// A store opened for queries only ([`Store::open_read_only`]).
pub struct ReadOnlyStore {
    view: View,
}

impl ReadOnlyStore {
    /// Like [`Store::scan`].
    pub fn scan(
        &self,
        matcher: &Matcher,
        newest_first: bool,
        emit: &mut dyn FnMut(u64, &Record) -> bool,
    ) -> Result<QueryStats, Error> {
        let (segments, recent) = self.view.snapshot();
        scan_snapshot(&segments, &recent, matcher, newest_first, emit)
    }

    /// Like [`Store::query`].
    pub fn query(
        &self,
        matcher: &Matcher,
        limit: Option<usize>,
    ) -> Result<(Vec<(u64, Record)>, QueryStats), Error> {
        collect(limit, &mut |newest_first, emit| {
            self.scan(matcher, newest_first, emit)
        })
    }
}

impl View {
    fn snapshot(&self) -> (Vec<Arc<Segment>>, Vec<(u64, Record)>) {
        let mut segments = self.sealed.clone();
        if let Some(open) = &self.open {
            segments.push(open.clone());
        }
        (segments, self.recent.clone())
    }
}

type ScanFn<'a> =
    dyn FnMut(bool, &mut dyn FnMut(u64, &Record) -> bool) -> Result<QueryStats, Error> + 'a;

/// Matches in time order: all, or the newest `limit`.
fn collect(
    limit: Option<usize>,
    scan: &mut ScanFn<'_>,
) -> Result<(Vec<(u64, Record)>, QueryStats), Error> {
    let mut out = Vec::new();
    let stats = match limit {
        Some(0) => QueryStats::default(),
        Some(n) => {
            let stats = scan(true, &mut |id, r| {
                out.push((id, r.clone()));
                out.len() < n
            })?;
            out.reverse();
            stats
        }
        None => scan(false, &mut |id, r| {
            out.push((id, r.clone()));
            true
        })?,
    };
    Ok((out, stats))
}

fn scan_snapshot(
    segments: &[Arc<Segment>],
    recent: &[(u64, Record)],
    matcher: &Matcher,
    newest_first: bool,
    emit: &mut dyn FnMut(u64, &Record) -> bool,
) -> Result<QueryStats, Error> {
    let mut stats = QueryStats {
        segments_total: segments.len() as u64,
        ..QueryStats::default()
    };
    let mut scanner = Scanner {
        matcher,
        newest_first,
        stats: &mut stats,
        emit,
        go_on: true,
    };
    if newest_first {
        for (id, r) in recent.iter().rev() {
            if !scanner.visit(*id, r) {
                break;
            }
        }
        let ordered: Vec<&Segment> = segments.iter().rev().map(|s| s.as_ref()).collect();
        scanner.segments(&ordered);
    } else {
        let ordered: Vec<&Segment> = segments.iter().map(|s| s.as_ref()).collect();
        scanner.segments(&ordered);
        for (id, r) in recent.iter() {
            if !scanner.visit(*id, r) {
                break;
            }
        }
    }
    Ok(stats)
}

/// One query's walk over segments, blocks and records.
struct Scanner<'a> {
    matcher: &'a Matcher,
    newest_first: bool,
    stats: &'a mut QueryStats,
    emit: &'a mut dyn FnMut(u64, &Record) -> bool,
    go_on: bool,
}

impl Scanner<'_> {
    /// Looks at record `i` of a block; only a match is copied out of it.
    fn visit_in_block(&mut self, block: &DecodedBlock, i: usize) -> bool {
        if !self.go_on {
            return false;
        }
        self.stats.records_scanned += 1;
        if self.matcher.matches(block.received_at(i), block.raw(i)) {
            self.stats.matched += 1;
            let (id, record) = block.record(i);
            self.go_on = (self.emit)(id, &record);
        }
        self.go_on
    }

    /// Looks at one record; false once the caller wants no more.
    fn visit(&mut self, id: u64, record: &Record) -> bool {
        if !self.go_on {
            return false;
        }
        self.stats.records_scanned += 1;
        if self.matcher.matches(record.received_at, &record.raw) {
            self.stats.matched += 1;
            self.go_on = (self.emit)(id, record);
        }
        self.go_on
    }

    /// Looks at the blocks of the segments (in the order given) that may match. The
    /// candidate blocks of all segments are read, decompressed and searched
    /// [`QUERY_THREADS`] at a time, in parallel; their records are then visited in order.
    fn segments(&mut self, segments: &[&Segment]) {
        let mut candidates: Vec<(&Segment, &crate::segment::BlockEntry)> = Vec::new();
        for &seg in segments {
            if !self
                .matcher
                .time_overlaps(seg.min_received(), seg.max_received())
            {
                continue;
            }
            self.stats.segments_in_range += 1;
            self.stats.blocks_in_range += seg.blocks.len() as u64;
            let n = seg.blocks.len();
            for k in 0..n {
                let entry = &seg.blocks[if self.newest_first { n - 1 - k } else { k }];
                if self.matcher.block_may_match(&entry.meta) {
                    candidates.push((seg, entry));
                }
            }
        }
        let matcher = self.matcher;
        let open = |(seg, entry): (&Segment, &crate::segment::BlockEntry),
                    reader: &mut BlockReader|
         -> OpenedBlock {
            let block = seg.read_block_with(entry, reader)?;
            let hits = matcher.prefilter().map(|f| block.records_containing(f));
            Ok((block, hits))
        };
        let mut readers: Vec<BlockReader> = Vec::new();
        for group in candidates.chunks(QUERY_THREADS) {
            if !self.go_on {
                return;
            }
            while readers.len() < group.len() {
                match BlockReader::new() {
                    Ok(r) => readers.push(r),
                    Err(e) => {
                        tracing::error!(error = %e, "query: no zstd context");
                        return;
                    }
                }
            }
            self.stats.blocks_opened += group.len() as u64;
            let opened: Vec<OpenedBlock> = if group.len() == 1 {
                vec![open(group[0], &mut readers[0])]
            } else {
                std::thread::scope(|scope| {
                    let handles: Vec<_> = group
                        .iter()
                        .zip(readers.iter_mut())
                        .map(|(&c, reader)| scope.spawn(move || open(c, reader)))
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| {
                            h.join().unwrap_or_else(|_| {
                                Err(Error::Corrupt("a query thread panicked".into()))
                            })
                        })
                        .collect()
                })
            };
            for (result, reader) in opened.into_iter().zip(readers.iter_mut()) {
                match result {
                    Ok((block, hits)) => {
                        self.block(&block, hits.as_deref());
                        reader.recycle(block);
                    }
                    Err(e) => {
                        self.stats.corrupt_blocks += 1;
                        tracing::error!(error = %e, "query: block skipped");
                    }
                }
                if !self.go_on {
                    return;
                }
            }
        }
    }

    /// Visits a block's records (only `hits`, when a prefilter found them).
    fn block(&mut self, block: &DecodedBlock, hits: Option<&[usize]>) {
        let all: Vec<usize>;
        let indexes: &[usize] = match hits {
            Some(h) => h,
            None => {
                all = (0..block.len()).collect();
                &all
            }
        };
        let n = indexes.len();
        for k in 0..n {
            let i = indexes[if self.newest_first { n - 1 - k } else { k }];
            // Time is checked before the record is materialised.
            if !self
                .matcher
                .time_overlaps(block.received_at(i), block.received_at(i))
            {
                continue;
            }
            if !self.visit_in_block(block, i) {
                return;
            }
        }
    }
}

/// A candidate block read and decoded, with the records its bytes search found (when the
/// query has a text to search for).
type OpenedBlock = Result<(DecodedBlock, Option<Vec<usize>>), Error>;

/// Blocks a query reads and searches at once (one thread each).
const QUERY_THREADS: usize = 2;

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn load_archived(dir: &Path) -> std::collections::HashSet<String> {
    std::fs::read_to_string(dir.join("archive.done"))
        .map(|s| s.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

pub use crate::query::defaults_for;

/// The hour (Unix seconds, floored) of a time in ns.
fn hour_of(ns: i64) -> i64 {
    ns.div_euclid(1_000_000_000).div_euclid(3600) * 3600
}

/// Durable records on their way from the WAL thread to the indexer.
enum IndexCommand {
    /// Records (first id, records), the waiter to tell once they are durable and
    /// visible, and the permit that returns their memory budget once indexed.
    Durable(
        u64,
        Vec<Record>,
        Option<oneshot::Sender<Result<(), Error>>>,
        Option<OwnedSemaphorePermit>,
    ),
    /// Seal the open block and segment, then answer.
    Seal(oneshot::Sender<Result<(), Error>>),
}

/// How long the WAL thread gathers batches before looking again, while records wait for
/// a sync that nobody waits for (RELP batches are synced at once).
const GATHER: Duration = Duration::from_millis(1);

/// A write-ahead log generation is closed (and a new one started) past this size; it is
/// removed once every record it holds is in a sealed segment.
const WAL_GENERATION_BYTES: u64 = 64 << 20;

/// The WAL thread: ids, appends, group commits, acknowledgements; then hands the durable
/// records to the indexer thread.
struct WalWriter {
    shared: Arc<Shared>,
    wal: Wal,
    to_index: mpsc::Sender<IndexCommand>,
    /// Closed write-ahead log generations and the highest id each may hold.
    closed_generations: Vec<(u64, u64)>,
    /// Id the next record appended to the write-ahead log gets.
    wal_next_id: u64,
    /// Id after the last record in a sealed segment (set by the indexer).
    sealed_end: Arc<AtomicU64>,
}

/// The indexer thread: blocks, segments, retention.
struct Indexer {
    shared: Arc<Shared>,
    seg_dir: PathBuf,
    builder: BlockBuilder,
    segment: Option<SegmentWriter>,
    /// The hour of the records in the open segment and block (set by the first record
    /// after a seal): a record of a later hour seals them first, so a segment never holds
    /// two hours, even when the hour's first block was sealed before its last records.
    current_hour: Option<i64>,
    sealed_end: Arc<AtomicU64>,
}

impl WalWriter {
    fn run(mut self, rx: mpsc::Receiver<Command>) {
        let interval = self.shared.config.commit_interval;
        // Appended to the WAL, waiting for the sync that covers them.
        let mut pending: Vec<(u64, Batch)> = Vec::new();
        let mut oldest_pending: Option<Instant> = None;
        let mut seal_waiters: Vec<oneshot::Sender<Result<(), Error>>> = Vec::new();
        loop {
            let timeout = match oldest_pending {
                Some(t) => interval.saturating_sub(t.elapsed()),
                None => Duration::from_secs(1),
            };
            let mut disconnected = false;
            let take = |cmd: Command,
                        pending: &mut Vec<(u64, Batch)>,
                        seal_waiters: &mut Vec<_>,
                        this: &mut WalWriter| match cmd {
                Command::Batch(batch) => {
                    let first = this.wal_next_id;
                    this.wal_next_id += batch.records.len() as u64;
                    this.wal.append(first, &batch.records);
                    pending.push((first, batch));
                }
                Command::Seal(done) => seal_waiters.push(done),
            };
            // With records already waiting for a sync that nobody waits for, gather more
            // for up to GATHER without being woken by each batch (a wake-up per batch
            // costs more CPU than the batch); then take everything queued at once.
            let someone_waits_now = pending.iter().any(|(_, b)| b.done.is_some());
            let first = if !pending.is_empty() && !someone_waits_now {
                std::thread::sleep(timeout.min(GATHER));
                match rx.try_recv() {
                    Ok(cmd) => Ok(cmd),
                    Err(mpsc::TryRecvError::Empty) => Err(mpsc::RecvTimeoutError::Timeout),
                    Err(mpsc::TryRecvError::Disconnected) => {
                        Err(mpsc::RecvTimeoutError::Disconnected)
                    }
                }
            } else {
                rx.recv_timeout(timeout)
            };
            match first {
                Ok(cmd) => {
                    take(cmd, &mut pending, &mut seal_waiters, &mut self);
                    // Take whatever else is queued: one sync covers it all.
                    let mut bytes = 0usize;
                    while bytes < (16 << 20) {
                        match rx.try_recv() {
                            Ok(cmd) => {
                                if let Command::Batch(b) = &cmd {
                                    bytes += b.records.iter().map(Record::weight).sum::<usize>();
                                }
                                take(cmd, &mut pending, &mut seal_waiters, &mut self);
                            }
                            Err(mpsc::TryRecvError::Empty) => break,
                            Err(mpsc::TryRecvError::Disconnected) => {
                                disconnected = true;
                                break;
                            }
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => disconnected = true,
            }
            if !pending.is_empty() && oldest_pending.is_none() {
                oldest_pending = Some(Instant::now());
            }
            let someone_waits = pending.iter().any(|(_, b)| b.done.is_some());
            let due = oldest_pending.is_some_and(|t| t.elapsed() >= interval);
            let closing = self.shared.closing.load(Ordering::Acquire);
            if !pending.is_empty()
                && (someone_waits || due || !seal_waiters.is_empty() || closing || disconnected)
            {
                if let Err(e) = self.wal.write_buffered() {
                    self.write_failed(&e);
                }
                self.sync_until_durable(&mut pending);
                oldest_pending = None;
                for (first, batch) in pending.drain(..) {
                    self.account(&batch.records);
                    let _ = self.to_index.send(IndexCommand::Durable(
                        first,
                        batch.records,
                        batch.done,
                        batch._permit,
                    ));
                }
                if self.wal.generation_bytes() >= WAL_GENERATION_BYTES {
                    match self.wal.rotate() {
                        Ok(closed) => self
                            .closed_generations
                            .push((closed, self.wal_next_id.saturating_sub(1))),
                        Err(e) => self.write_failed(&e),
                    }
                }
            } else if !pending.is_empty() {
                // Let the kernel start writing while more arrives.
                if let Err(e) = self.wal.write_buffered() {
                    self.write_failed(&e);
                }
            }
            self.remove_sealed_generations();
            if !seal_waiters.is_empty() && pending.is_empty() {
                // Seal through the indexer, then drop the WAL generations it covers (the
                // current one too: it is closed first, so nothing sealed stays in the WAL).
                if self.wal.generation_bytes() > 0 {
                    match self.wal.rotate() {
                        Ok(closed) => self
                            .closed_generations
                            .push((closed, self.wal_next_id.saturating_sub(1))),
                        Err(e) => self.write_failed(&e),
                    }
                }
                let (tx, rx) = oneshot::channel();
                let result = match self.to_index.send(IndexCommand::Seal(tx)) {
                    Ok(()) => rx.blocking_recv().unwrap_or(Err(Error::Closed)),
                    Err(_) => Err(Error::Closed),
                };
                self.remove_sealed_generations();
                for w in seal_waiters.drain(..) {
                    let _ = w.send(match &result {
                        Ok(()) => Ok(()),
                        Err(e) => Err(Error::NotDurable(e.to_string())),
                    });
                }
                if self.shared.closing.load(Ordering::Acquire) {
                    return;
                }
            }
            if disconnected && pending.is_empty() {
                return;
            }
        }
    }

    /// Removes the closed generations whose records are all in sealed segments.
    fn remove_sealed_generations(&mut self) {
        let sealed_end = self.sealed_end.load(Ordering::Acquire);
        let Some(through) = self
            .closed_generations
            .iter()
            .filter(|(_, max_id)| *max_id < sealed_end)
            .map(|(g, _)| *g)
            .max()
        else {
            return;
        };
        match self.wal.remove_through(through) {
            Ok(()) => self.closed_generations.retain(|(g, _)| *g > through),
            Err(e) => tracing::warn!(error = %e, "removing old write-ahead log files failed"),
        }
    }

    /// Syncs the write-ahead log, retrying (and saying so) until it works or the store
    /// closes. While it fails nothing is acknowledged and nothing more is read: the
    /// queue fills and listeners stop reading.
    fn sync_until_durable(&mut self, pending: &mut Vec<(u64, Batch)>) {
        let mut delay = Duration::from_millis(50);
        loop {
            let started = Instant::now();
            match self.wal.sync() {
                Ok(()) => {
                    let c = &self.shared.counters;
                    c.syncs.fetch_add(1, Ordering::Relaxed);
                    c.sync_nanos
                        .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    if let Ok(mut h) = self.shared.health.lock()
                        && h.take().is_some()
                    {
                        tracing::warn!("store: writing works again; acknowledging resumes");
                    }
                    return;
                }
                Err(e) => {
                    self.write_failed(&e);
                    if self.shared.closing.load(Ordering::Acquire) {
                        // Give up on these: their senders are told they are not durable.
                        for (_, batch) in pending.drain(..) {
                            if let Some(done) = batch.done {
                                let _ = done.send(Err(Error::NotDurable(e.to_string())));
                            }
                        }
                        return;
                    }
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    fn write_failed(&self, e: &Error) {
        write_failed(&self.shared, e);
    }

    fn account(&self, records: &[Record]) {
        let c = &self.shared.counters;
        c.batches.fetch_add(1, Ordering::Relaxed);
        c.records.fetch_add(records.len() as u64, Ordering::Relaxed);
        let bytes: u64 = records.iter().map(|r| r.raw.len() as u64).sum();
        c.bytes.fetch_add(bytes, Ordering::Relaxed);
        let truncated = records
            .iter()
            .filter(|r| r.flags & FLAG_TRUNCATED != 0)
            .count() as u64;
        c.truncated.fetch_add(truncated, Ordering::Relaxed);
        let Ok(mut sources) = self.shared.sources.lock() else {
            return;
        };
        // Records of one batch mostly share a source: one map lookup per run of them.
        let mut rest = records;
        while let Some(first) = rest.first() {
            let ip = first.source.addr.ip();
            let run = rest
                .iter()
                .position(|r| r.source.addr.ip() != ip)
                .unwrap_or(rest.len());
            let (same, tail) = rest.split_at(run);
            rest = tail;
            if sources.len() < MAX_SOURCES || sources.contains_key(&ip) {
                let counters = sources.entry(ip).or_default();
                for r in same {
                    bump(counters, r);
                }
            } else if let Ok(mut other) = self.shared.other_sources.lock() {
                for r in same {
                    bump(&mut other, r);
                }
            }
        }
    }
}

impl Indexer {
    fn run(mut self, rx: mpsc::Receiver<IndexCommand>) {
        let mut last_housekeeping = Instant::now();
        loop {
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(IndexCommand::Durable(first, records, done, permit)) => {
                    let indexed: Vec<(u64, Record)> = records
                        .into_iter()
                        .enumerate()
                        .map(|(i, r)| (first + i as u64, r))
                        .collect();
                    let mut heads = Vec::with_capacity(indexed.len());
                    // Searchable: every record of the batch, or, when indexing failed
                    // part-way, those that reached the open block (one head each; they
                    // are published before any block or segment is sealed).
                    let searchable = match self.index(&indexed, &mut heads) {
                        Ok(()) => indexed.len(),
                        Err(e) => {
                            write_failed(&self.shared, &e);
                            heads.len()
                        }
                    };
                    self.shared
                        .counters
                        .indexed
                        .fetch_add(searchable as u64, Ordering::Relaxed);
                    // Durable since the WAL sync; now also visible to queries.
                    if let Some(done) = done {
                        let _ = done.send(Ok(()));
                    }
                    drop(permit);
                    let _ = self.shared.tail.send(Arc::new(DurableBatch {
                        records: indexed,
                        heads,
                    }));
                }
                Ok(IndexCommand::Seal(done)) => {
                    let result = self.seal_segment();
                    let _ = done.send(result.map_err(|e| Error::NotDurable(e.to_string())));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    if let Err(e) = self.seal_segment() {
                        write_failed(&self.shared, &e);
                    }
                    return;
                }
            }
            if last_housekeeping.elapsed() >= Duration::from_secs(1) {
                last_housekeeping = Instant::now();
                self.housekeeping();
            }
        }
    }

    /// Adds durable records to the open block (sealing blocks and segments as needed)
    /// and makes them visible to queries; each record's parsed header goes to `heads`.
    fn index(&mut self, records: &[(u64, Record)], heads: &mut Vec<Head>) -> Result<(), Error> {
        let mut staged: Vec<(u64, Record)> = Vec::with_capacity(records.len());
        let mut defaults = (i64::MIN, defaults_for(0));
        for (id, record) in records {
            let hour = hour_of(record.received_at);
            if self.current_hour.is_some_and(|h| hour > h) {
                self.publish(&mut staged);
                self.seal_segment()?;
            }
            // A record arriving late (an earlier hour) joins the open hour.
            let hour = *self.current_hour.get_or_insert(hour);
            self.builder.start_at(*id);
            let unparsed_before = self.builder.unparsed();
            // The parsing defaults change once a second at most.
            let second = record.received_at.div_euclid(1_000_000_000);
            if defaults.0 != second {
                defaults = (second, defaults_for(record.received_at));
            }
            heads.push(self.builder.push(record, &defaults.1));
            if self.builder.unparsed() > unparsed_before {
                self.shared
                    .counters
                    .unparsed
                    .fetch_add(1, Ordering::Relaxed);
                if let Ok(mut s) = self.shared.sources.lock()
                    && let Some(c) = s.get_mut(&record.source.addr.ip())
                {
                    c.unparsed += 1;
                }
            }
            staged.push((*id, record.clone()));
            if self.builder.is_full() {
                self.publish(&mut staged);
                self.seal_block(hour)?;
            }
        }
        self.publish(&mut staged);
        if let Some((id, _)) = records.last() {
            self.shared.next_id.store(id + 1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Makes staged records visible to queries (they are in the open block).
    fn publish(&self, staged: &mut Vec<(u64, Record)>) {
        if staged.is_empty() {
            return;
        }
        if let Ok(mut view) = self.shared.view.write() {
            view.recent.append(staged);
        }
        staged.clear();
    }

    fn seal_block(&mut self, hour: i64) -> Result<(), Error> {
        if self.builder.is_empty() {
            return Ok(());
        }
        let first_id = self.builder.next_id() - self.builder.len() as u64;
        let block = self.builder.seal(self.shared.config.zstd_level)?;
        if self.segment.is_none() {
            self.segment = Some(SegmentWriter::create(&self.seg_dir, first_id, hour)?);
        }
        let Some(segment) = self.segment.as_mut() else {
            return Ok(());
        };
        let mut delay = Duration::from_millis(50);
        loop {
            match segment.append(&block) {
                Ok(()) => break,
                Err(e) => {
                    self.shared
                        .counters
                        .write_errors
                        .fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut h) = self.shared.health.lock() {
                        let m = format!("cannot write a segment block, retrying: {e}");
                        if h.as_deref() != Some(m.as_str()) {
                            tracing::error!("store: {m}");
                            eprintln!("flotilla logd: ERROR: {m}");
                        }
                        *h = Some(m);
                    }
                    if self.shared.closing.load(Ordering::Acquire) {
                        return Err(e);
                    }
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
            }
        }
        self.shared
            .counters
            .blocks_sealed
            .fetch_add(1, Ordering::Relaxed);
        let view_segment = Arc::new(segment.view());
        let raw: u64 = view_segment.blocks.iter().map(|b| b.meta.raw_bytes).sum();
        if let Ok(mut view) = self.shared.view.write() {
            view.open = Some(view_segment);
            let end = block.meta.first_id + u64::from(block.meta.count);
            view.recent.retain(|(id, _)| *id >= end);
        }
        if raw >= self.shared.config.segment_target_bytes {
            self.seal_segment()?;
        }
        Ok(())
    }

    /// Seals the open block and segment, rotates the write-ahead log and removes the
    /// generations whose records are now all in sealed segments.
    fn seal_segment(&mut self) -> Result<(), Error> {
        if !self.builder.is_empty() {
            let hour = self.current_hour.unwrap_or_else(|| hour_of(now_nanos()));
            self.seal_block(hour)?;
        }
        self.current_hour = None;
        let Some(mut writer) = self.segment.take() else {
            return Ok(());
        };
        let sealed = match writer.seal() {
            Ok(s) => s,
            Err(e) => {
                self.segment = Some(writer);
                return Err(e);
            }
        };
        let sealed_end = sealed.end_id().unwrap_or(0);
        if let Ok(mut view) = self.shared.view.write() {
            view.sealed.push(Arc::new(sealed));
            view.open = None;
        }
        self.shared
            .counters
            .segments_sealed
            .fetch_add(1, Ordering::Relaxed);
        // The WAL thread may now remove the generations this covers.
        self.sealed_end.fetch_max(sealed_end, Ordering::AcqRel);
        Ok(())
    }

    fn housekeeping(&mut self) {
        // A segment holds one hour: seal it once the hour is over.
        if self.current_hour.is_some_and(|h| hour_of(now_nanos()) > h)
            && let Err(e) = self.seal_segment()
        {
            write_failed(&self.shared, &e);
        }
        self.apply_retention();
    }

    fn apply_retention(&mut self) {
        let config = &self.shared.config;
        if config.retention_age.is_none() && config.retention_bytes.is_none() {
            return;
        }
        let now = now_nanos();
        let mut dropped = Vec::new();
        let archived = if config.keep_until_archived {
            self.shared.archived.lock().ok().map(|a| a.clone())
        } else {
            None
        };
        let droppable = |s: &Segment| {
            archived
                .as_ref()
                .is_none_or(|a| a.contains(&file_name(&s.path)))
        };
        if let Ok(mut view) = self.shared.view.write() {
            if let Some(age) = config.retention_age {
                let cutoff = now - age.as_nanos() as i64;
                view.sealed.retain(|s| {
                    let keep = s.max_received() >= cutoff || !droppable(s);
                    if !keep {
                        dropped.push(s.clone());
                    }
                    keep
                });
            }
            if let Some(max) = config.retention_bytes {
                let mut total: u64 = view.sealed.iter().map(|s| s.file_bytes).sum();
                while total > max {
                    // The oldest segment that may go (an unarchived one waits).
                    let Some(i) = view.sealed.iter().position(|s| droppable(s)) else {
                        break;
                    };
                    let s = view.sealed.remove(i);
                    total -= s.file_bytes;
                    dropped.push(s);
                }
            }
        }
        for s in dropped {
            match std::fs::remove_file(&s.path) {
                Ok(()) => {
                    self.shared
                        .counters
                        .segments_dropped
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::info!(segment = %s.path.display(), "retention: segment dropped");
                }
                Err(e) => {
                    tracing::error!(segment = %s.path.display(), error = %e, "retention: cannot remove")
                }
            }
        }
    }
}

/// Counts a failed write and says so (once per distinct message) on stderr and in the
/// log; `/health` reports it until a write succeeds.
fn write_failed(shared: &Shared, e: &Error) {
    shared.counters.write_errors.fetch_add(1, Ordering::Relaxed);
    let message = match e {
        Error::Io { source, .. } if source.raw_os_error() == Some(28) => {
            format!("disk full, not acknowledging until space is freed: {e}")
        }
        _ => format!("cannot write, not acknowledging: {e}"),
    };
    if let Ok(mut h) = shared.health.lock() {
        if h.as_deref() != Some(message.as_str()) {
            tracing::error!("store: {message}");
            eprintln!("flotilla logd: ERROR: {message}");
        }
        *h = Some(message);
    }
}

fn bump(c: &mut SourceCounters, r: &Record) {
    c.records += 1;
    c.bytes += r.raw.len() as u64;
    if r.flags & FLAG_TRUNCATED != 0 {
        c.truncated += 1;
    }
    c.last_received_ns = c.last_received_ns.max(r.received_at);
}
