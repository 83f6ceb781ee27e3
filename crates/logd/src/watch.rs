//! The watcher: the shell that drives the fleet view ([`crate::fleet`]) and the alert
//! engine ([`crate::alerts`]) from the store, and hands notifications to the notifier
//! ([`crate::notify`]).
//!
//! It runs on a thread of its own, so that neither the machines nor a slow delivery can
//! hold up ingest:
//! - it follows the store's stream of durable batches (the same one live tails use) and
//!   feeds each record to the fleet (`observe_with_head`, from the indexer's parse of
//!   its header) and, when there are user rules, to the alert engine; fleet events go to
//!   the engine, the engine's notifications to the notifier;
//! - it sleeps until the machines' next deadline (`poll_timeout`), never polls;
//! - when it falls behind the stream (the stream keeps 1,024 batches), it reads what it
//!   missed back from the store, so that no record escapes the fleet view;
//! - every [`SAVE_EVERY`] (and at shutdown) it saves both machines to `watch.json` in the
//!   data directory (written to a temporary file, synced, renamed). At start it restores
//!   them and replays the records stored after the saved point, so the fleet view and
//!   firing alerts survive a restart, even a `kill -9`;
//! - with peers, a task on the node's runtime asks them for their fleet rows every
//!   [`PEER_POLL`] (a slow or hung peer never holds up this thread) and hands them over;
//!   their liveness (last heartbeat, message, boot, crash) is fed to this node's fleet,
//!   so that a service whose logger failed over to another node is not taken for silent
//!   here. Only a node that holds a service's records alerts for it;
//! - time: records are fed at their received-at time; deadlines are judged
//!   [`TICK_LAG`] behind the wall clock, so that a record received just before a
//!   deadline (still on its way through the write-ahead log) counts;
//! - after a restart, services whose heartbeat deadline fell while logd was down get a
//!   new grace period ([`Fleet::resume`]) instead of all being called silent at once; a
//!   first start on a data directory without saved state replays its last day without
//!   notifying, then announces what is firing;
//! - RELP resends (same `meta sequenceId`, same bytes; see [`crate::peers::dup_key`])
//!   are fed once.

// The watcher's thread is the shell of the fleet and alert machines: it reads the
// clock for them and sleeps until their deadlines.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::alerts::{Alert, AlertEngine, AlertInput, AlertSnapshot, RuleSet};
use crate::error::{Error, IoContext as _};
use crate::fleet::{
    Fleet, FleetConfig, FleetInput, FleetSnapshot, ServiceRow, observe, observe_with_head,
};
use crate::notify::{ALERTMANAGER_RESEND, DeliveryStats, Notifier};
use crate::query::{Matcher, Query};
use crate::record::{Head, Record, now_nanos};
use crate::store::{DurableBatch, Store};

/// How often the machines are saved to `watch.json`.
pub const SAVE_EVERY: Duration = Duration::from_secs(5);

/// How often peers are asked for their fleet rows.
pub const PEER_POLL: Duration = Duration::from_secs(2);

/// How far behind the wall clock deadlines are judged.
pub const TICK_LAG: Duration = Duration::from_millis(250);

/// Batches fed at most per wake-up before time is judged again.
const DRAIN_BATCHES: usize = 256;

/// How long the watcher lets batches gather after feeding some.
const GATHER: Duration = Duration::from_millis(1);

/// Recent duplicate keys remembered (RELP resends arrive within seconds).
const DEDUP_WINDOW: usize = 65_536;

/// File name of the saved state in the data directory.
pub const STATE_FILE: &str = "watch.json";

/// How far back (before the saved point) records are read again at start, to cover
/// records stored after it but received (stamped) a little before.
const REPLAY_MARGIN_NS: i64 = 600 * 1_000_000_000;

/// How far back a fleet is rebuilt when a data directory has records but no saved state
/// (a data directory written by a logd without the watcher).
const FIRST_START_HISTORY_NS: i64 = 24 * 3600 * 1_000_000_000;

/// Records fed at once while reading back from the store.
const REPLAY_CHUNK: usize = 4096;

/// What the watcher runs with.
pub struct WatchConfig {
    /// Alert rules, built-ins and notification targets.
    pub rules: RuleSet,
    /// The fleet's settings (the boot-loop parameters come from the rules).
    pub fleet: FleetConfig,
    /// This node's id (alerts carry it).
    pub node: String,
    /// The URL put into alerts as their source (logd's page).
    pub generator_url: String,
    /// Other nodes of the cluster.
    pub peers: Option<Arc<crate::peers::Peers>>,
}

/// The saved state: both machines and the point they reached.
#[derive(Serialize, Deserialize)]
struct SavedState {
    format: u32,
    /// Wall clock when saved (ns).
    saved_at: i64,
    /// The last record id both machines saw.
    through_id: u64,
    fleet: FleetSnapshot,
    alerts: AlertSnapshot,
}

/// Counters of the watcher.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WatchStats {
    /// Records fed to the machines since start.
    pub records: u64,
    /// Records read back from the store (at start and after falling behind).
    pub replayed: u64,
    /// Times the watcher fell behind the store's stream.
    pub lagged: u64,
    /// The last record id seen.
    pub through_id: u64,
    /// Services in the fleet view.
    pub services: u64,
    /// Records of services beyond the fleet's cap.
    pub services_dropped: u64,
    /// Matches of user rules not tracked because a rule had too many groups.
    pub groups_dropped: u64,
    /// Notifications produced.
    pub notifications: u64,
    /// Failed saves of `watch.json`.
    pub save_failures: u64,
    /// The last save failure.
    pub save_error: Option<String>,
}

struct Shared {
    /// Lock order: `fleet` before `engine` (the watcher takes both; readers one).
    fleet: Mutex<Fleet>,
    engine: Mutex<AlertEngine>,
    stats: Mutex<WatchStats>,
    records: AtomicU64,
    stop: AtomicBool,
    wake: tokio::sync::Notify,
}

/// A running watcher. [`Watch::shutdown`] (or drop) stops it and saves its state.
pub struct Watch {
    shared: Arc<Shared>,
    notifier: Arc<Notifier>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    peer_poll: Option<tokio::task::JoinHandle<()>>,
    has_user_rules: bool,
}

impl Watch {
    /// Restores the saved state (if any), replays what the store holds after it, and
    /// starts following the store. Notifications are delivered by tasks on `runtime`.
    pub fn start(
        store: &Store,
        config: WatchConfig,
        runtime: &tokio::runtime::Handle,
    ) -> Result<Watch, Error> {
        let state_path = store.data_dir().join(STATE_FILE);
        let fleet_config = config.rules.fleet_config(config.fleet.clone());
        let notifier = Arc::new(Notifier::start(
            config.rules.notify.clone(),
            config.generator_url.clone(),
            runtime,
        ));
        let has_user_rules = !config.rules.rules.is_empty();
        let saved = load_state(&state_path)?;
        let first_start = saved.is_none();
        // `clock`: the machines' time when they were saved (they judged everything up
        // to it), or the start of the history a first start replays.
        let (fleet, engine, through_id, since, clock) = match saved {
            Some(s) => (
                Fleet::restore(s.fleet, fleet_config),
                AlertEngine::restore(s.alerts, config.rules, config.node.clone()),
                s.through_id,
                s.saved_at.saturating_sub(REPLAY_MARGIN_NS),
                s.saved_at,
            ),
            None => {
                let since = now_nanos().saturating_sub(FIRST_START_HISTORY_NS);
                (
                    Fleet::new(fleet_config),
                    AlertEngine::new(config.rules, config.node.clone()),
                    0,
                    since,
                    since,
                )
            }
        };
        let shared = Arc::new(Shared {
            fleet: Mutex::new(fleet),
            engine: Mutex::new(engine),
            stats: Mutex::new(WatchStats::default()),
            records: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
        });
        // Subscribed before the replay: nothing stored meanwhile is missed (what both
        // deliver is skipped by id).
        let rx = store.subscribe();
        let (peer_tx, peer_rx) = tokio::sync::mpsc::channel::<Vec<ServiceRow>>(2);
        let peer_poll = config
            .peers
            .clone()
            .map(|peers| runtime.spawn(poll_peers(peers, peer_tx)));
        let grace = if config.peers.is_some() {
            i64::try_from(PEER_POLL.as_nanos() * 2).unwrap_or(i64::MAX)
        } else {
            0
        };
        let mut runner = Runner {
            store: store.clone(),
            shared: shared.clone(),
            notifier: notifier.clone(),
            state_path,
            through_id,
            has_user_rules,
            dirty: true,
            deliver: !first_start,
            dedup: crate::peers::Dedup::new(DEDUP_WINDOW),
            last_received: since,
            clock,
        };
        // Restored engines may have resolutions queued (rules removed since).
        runner.drain_outputs(runner.clock);
        runner.replay(since)?;
        // The gap between the last record seen and now was not watched: deadlines that
        // fell in it start over.
        let now = now_nanos();
        if let Ok(mut fleet) = runner.shared.fleet.lock() {
            fleet.resume(runner.clock, now, grace);
        }
        runner.tick(now);
        if first_start {
            // A first start replays history quietly, then announces what fires now.
            runner.deliver = true;
            let firing = shared.engine.lock().map(|e| e.firing()).unwrap_or_default();
            notifier.send(&firing);
        }
        runner.save();
        let thread = std::thread::Builder::new()
            .name("logd-watch".into())
            .spawn(move || runner.run(rx, peer_rx))
            .map_err(|e| Error::io("starting the watcher thread", e))?;
        Ok(Watch {
            shared,
            notifier,
            thread: Mutex::new(Some(thread)),
            peer_poll,
            has_user_rules,
        })
    }

    /// The fleet view now, sorted by host and app.
    pub fn fleet_rows(&self) -> Vec<ServiceRow> {
        let now = now_nanos();
        self.shared
            .fleet
            .lock()
            .map(|f| f.rows(now))
            .unwrap_or_default()
    }

    /// The fleet's settings (for merging rows of several nodes).
    pub fn fleet_config(&self) -> FleetConfig {
        self.shared
            .fleet
            .lock()
            .map(|f| f.config().clone())
            .unwrap_or_default()
    }

    /// Firing alerts and the recent notifications (oldest first).
    pub fn alerts(&self) -> (Vec<Alert>, Vec<Alert>) {
        self.shared
            .engine
            .lock()
            .map(|e| (e.firing(), e.recent()))
            .unwrap_or_default()
    }

    /// The delivery targets' counters.
    pub fn deliveries(&self) -> Vec<DeliveryStats> {
        self.notifier.stats()
    }

    /// Whether user rules are loaded (besides the built-ins).
    pub fn has_user_rules(&self) -> bool {
        self.has_user_rules
    }

    /// The watcher's counters.
    pub fn stats(&self) -> WatchStats {
        let mut stats = self
            .shared
            .stats
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        stats.records = self.shared.records.load(Ordering::Relaxed);
        if let Ok(f) = self.shared.fleet.lock() {
            stats.services = f.len() as u64;
            stats.services_dropped = f.services_dropped();
        }
        if let Ok(e) = self.shared.engine.lock() {
            stats.groups_dropped = e.groups_dropped();
        }
        stats
    }

    /// Waits (at most `timeout`) until the watcher has seen every record up to `id`.
    pub fn wait_through(&self, id: u64, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if self.stats().through_id >= id {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits (at most `timeout`) until every queued notification was delivered.
    pub async fn drain_deliveries(&self, timeout: Duration) -> bool {
        self.notifier.drain(timeout).await
    }

    /// Stops the watcher after it has fed what the store delivered, and saves its state.
    /// Idempotent.
    pub fn shutdown(&self) {
        if let Some(task) = &self.peer_poll {
            task.abort();
        }
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake.notify_one();
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The watcher thread's state.
struct Runner {
    store: Store,
    shared: Arc<Shared>,
    notifier: Arc<Notifier>,
    state_path: PathBuf,
    /// The last record id fed.
    through_id: u64,
    has_user_rules: bool,
    /// Something changed since the last save.
    dirty: bool,
    /// Notifications go to the notifier (off while a first start replays history).
    deliver: bool,
    /// Recent RELP resends' keys.
    dedup: crate::peers::Dedup,
    /// The received-at time of the last record fed (where a re-read starts).
    last_received: i64,
    /// The machines' time: the latest of the records' received-at times and the wall
    /// clock at ticks (never goes back).
    clock: i64,
}

impl Runner {
    fn run(
        mut self,
        mut rx: broadcast::Receiver<Arc<DurableBatch>>,
        mut peer_rx: tokio::sync::mpsc::Receiver<Vec<ServiceRow>>,
    ) {
        // Timers only: the thread does no I/O of its own (peers are polled on the
        // node's runtime), and a runtime without an I/O driver wakes itself without a
        // system call.
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "watcher: no runtime; fleet view and alerts stopped");
                return;
            }
        };
        let shared = self.shared.clone();
        runtime.block_on(async move {
            let mut now = now_nanos();
            let mut next_save = now.saturating_add(ns(SAVE_EVERY));
            let mut next_resend = now.saturating_add(ns(ALERTMANAGER_RESEND));
            let mut peers_open = true;
            loop {
                if shared.stop.load(Ordering::Acquire) {
                    // What the store delivered before stopping is fed, then saved.
                    while let Ok(batch) = rx.try_recv() {
                        self.feed(&batch.records, &batch.heads);
                    }
                    break;
                }
                // One clock read per round; deadlines are judged TICK_LAG behind it.
                let deadline = self
                    .machine_deadline()
                    .map_or(next_save, |d| d.saturating_add(lag_ns()))
                    .min(next_save)
                    .min(next_resend);
                let wake_at = tokio::time::Instant::now()
                    + Duration::from_nanos(u64::try_from(deadline.saturating_sub(now)).unwrap_or(0))
                    + Duration::from_millis(1);
                let mut fed = false;
                tokio::select! {
                    received = rx.recv() => match received {
                        Ok(batch) => {
                            self.feed(&batch.records, &batch.heads);
                            // And whatever else is waiting, before time is judged once.
                            for _ in 0..DRAIN_BATCHES {
                                match rx.try_recv() {
                                    Ok(batch) => self.feed(&batch.records, &batch.heads),
                                    Err(_) => break,
                                }
                            }
                            fed = true;
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            if let Ok(mut s) = shared.stats.lock() {
                                s.lagged += 1;
                            }
                            let since = self.last_received.saturating_sub(REPLAY_MARGIN_NS / 10);
                            if let Err(e) = self.replay(since) {
                                tracing::error!(error = %e, "watcher: reading missed records back failed");
                            }
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                    rows = peer_rx.recv(), if peers_open => match rows {
                        Some(rows) => self.peer_rows(rows),
                        // No peers (or their task ended): a closed channel would
                        // otherwise be ready at once, every time.
                        None => peers_open = false,
                    },
                    () = tokio::time::sleep_until(wake_at) => {}
                    () = shared.wake.notified() => {}
                }
                now = now_nanos();
                if self
                    .machine_deadline()
                    .is_some_and(|d| d <= now.saturating_sub(lag_ns()))
                {
                    self.tick(now.saturating_sub(lag_ns()));
                }
                self.drain_outputs(self.clock);
                if now >= next_resend {
                    next_resend = now.saturating_add(ns(ALERTMANAGER_RESEND));
                    let firing = shared.engine.lock().map(|e| e.firing()).unwrap_or_default();
                    self.notifier.send_to_alertmanagers(&firing);
                }
                if now >= next_save {
                    next_save = now.saturating_add(ns(SAVE_EVERY));
                    if self.dirty {
                        self.save();
                    }
                }
                if fed {
                    // Under load, batches gather for a moment: one wake-up then feeds many
                    // (each wake-up costs far more than feeding a record).
                    std::thread::sleep(GATHER);
                }
            }
            self.tick(now_nanos());
            self.save();
        });
    }

    /// The machines' next deadline (ns), if any.
    fn machine_deadline(&self) -> Option<i64> {
        let fleet = self.shared.fleet.lock().ok().and_then(|f| f.poll_timeout());
        let engine = self
            .shared
            .engine
            .lock()
            .ok()
            .and_then(|e| e.poll_timeout());
        match (fleet, engine) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Feeds one durable batch (records already fed are skipped). Each record is fed at
    /// its received-at time (never going back), so that records read back after a
    /// restart are judged at the time they arrived: a heartbeat deadline that passed
    /// between two of them fires between them, not before both.
    /// `heads` are the indexer's parses of the records, as many as it made (a record
    /// without one is parsed here).
    fn feed(&mut self, batch: &[(u64, Record)], heads: &[Head]) {
        let mut fed = 0u64;
        {
            let Ok(mut fleet) = self.shared.fleet.lock() else {
                return;
            };
            let mut engine = if self.has_user_rules {
                self.shared.engine.lock().ok()
            } else {
                None
            };
            for (i, (id, record)) in batch.iter().enumerate() {
                // Ids start at 1: `through_id` 0 skips nothing.
                if *id <= self.through_id {
                    continue;
                }
                if !self.dedup.first(crate::peers::dup_key(&record.raw)) {
                    // A RELP resend of a record already fed.
                    self.through_id = *id;
                    continue;
                }
                let now = self.clock.max(record.received_at);
                self.clock = now;
                let observation = match heads.get(i) {
                    Some(head) => observe_with_head(*id, record, head),
                    None => observe(*id, record),
                };
                fleet.handle(now, FleetInput::Observe(observation));
                if let Some(engine) = engine.as_mut() {
                    engine.handle(now, AlertInput::Record(*id, record));
                }
                self.through_id = *id;
                self.last_received = self.last_received.max(record.received_at);
                fed += 1;
            }
        }
        if fed > 0 {
            self.dirty = true;
            self.shared.records.fetch_add(fed, Ordering::Relaxed);
            if let Ok(mut s) = self.shared.stats.lock() {
                s.through_id = self.through_id;
            }
        }
    }

    /// Lets time pass in both machines.
    fn tick(&mut self, now: i64) {
        let now = self.clock.max(now);
        self.clock = now;
        if let Ok(mut f) = self.shared.fleet.lock() {
            f.handle(now, FleetInput::Tick);
        }
        if let Ok(mut e) = self.shared.engine.lock() {
            e.handle(now, AlertInput::Tick);
        }
        self.drain_outputs(now);
    }

    /// Moves fleet events to the engine and the engine's notifications to the notifier.
    fn drain_outputs(&mut self, now: i64) {
        let events: Vec<_> = match self.shared.fleet.lock() {
            Ok(mut f) => std::iter::from_fn(|| f.poll_output()).collect(),
            Err(_) => return,
        };
        let notifications: Vec<Alert> = match self.shared.engine.lock() {
            Ok(mut e) => {
                for event in events {
                    e.handle(now, AlertInput::Fleet(event));
                }
                std::iter::from_fn(|| e.poll_output())
                    .map(|n| n.alert)
                    .collect()
            }
            Err(_) => return,
        };
        if notifications.is_empty() {
            return;
        }
        self.dirty = true;
        for n in &notifications {
            tracing::info!(
                alert = %n.name,
                status = ?n.status,
                summary = %n.summary,
                "alert"
            );
        }
        if let Ok(mut s) = self.shared.stats.lock() {
            s.notifications += notifications.len() as u64;
        }
        // Saved before delivery: a restart (even kill -9) right after does not replay
        // the records that caused them into the same notifications again.
        if self.deliver {
            self.save();
            self.notifier.send(&notifications);
        }
    }

    /// Reads the records stored after `through_id` (received since `since`) back from
    /// the store and feeds them.
    fn replay(&mut self, since: i64) -> Result<(), Error> {
        let matcher = Matcher::new(Query {
            since: Some(since),
            ..Query::default()
        })?;
        let store = self.store.clone();
        let before = self.shared.records.load(Ordering::Relaxed);
        let mut chunk: Vec<(u64, Record)> = Vec::with_capacity(REPLAY_CHUNK);
        store.scan(&matcher, false, &mut |id, record| {
            chunk.push((id, record.clone()));
            if chunk.len() >= REPLAY_CHUNK {
                // `feed` skips what was already fed.
                self.feed(&chunk, &[]);
                self.drain_outputs(self.clock);
                chunk.clear();
            }
            true
        })?;
        self.feed(&chunk, &[]);
        self.drain_outputs(self.clock);
        let replayed = self.shared.records.load(Ordering::Relaxed) - before;
        if replayed > 0 {
            tracing::info!(
                records = replayed,
                "watcher: records read back from the store"
            );
            if let Ok(mut s) = self.shared.stats.lock() {
                s.replayed += replayed;
            }
        }
        Ok(())
    }

    /// Feeds the peers' liveness of each service to the fleet.
    fn peer_rows(&mut self, rows: Vec<ServiceRow>) {
        let now = self.clock.max(now_nanos().saturating_sub(lag_ns()));
        self.clock = now;
        {
            let Ok(mut fleet) = self.shared.fleet.lock() else {
                return;
            };
            for row in rows {
                fleet.handle(
                    now,
                    FleetInput::PeerSeen {
                        key: row.key(),
                        last_heartbeat: row.last_heartbeat,
                        last_message: row.last_message,
                        last_boot: row.last_boot,
                        heartbeat_interval: row.heartbeat_interval,
                        last_crash: row.last_crash,
                    },
                );
            }
        }
        self.dirty = true;
        self.drain_outputs(now);
    }

    /// Writes both machines to `watch.json` (temporary file, fsync, rename).
    fn save(&mut self) {
        let state = {
            let (Ok(fleet), Ok(engine)) = (self.shared.fleet.lock(), self.shared.engine.lock())
            else {
                return;
            };
            SavedState {
                format: 1,
                saved_at: now_nanos(),
                through_id: self.through_id,
                fleet: fleet.snapshot(),
                alerts: engine.snapshot(),
            }
        };
        match write_state(&self.state_path, &state) {
            Ok(()) => self.dirty = false,
            Err(e) => {
                tracing::error!(error = %e, "watcher: saving the fleet view and alerts failed");
                if let Ok(mut s) = self.shared.stats.lock() {
                    s.save_failures += 1;
                    s.save_error = Some(e.to_string());
                }
            }
        }
    }
}

/// [`TICK_LAG`] in ns.
fn lag_ns() -> i64 {
    ns(TICK_LAG)
}

/// A duration in ns.
fn ns(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Asks the peers for their own fleet rows every [`PEER_POLL`] and hands them to the
/// watcher (dropped when the watcher has not taken the previous ones yet). Runs on the
/// node's runtime: a slow peer delays only this task.
async fn poll_peers(
    peers: Arc<crate::peers::Peers>,
    tx: tokio::sync::mpsc::Sender<Vec<ServiceRow>>,
) {
    let mut interval = tokio::time::interval(PEER_POLL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let mut rows = Vec::new();
        for answer in peers.get_json_all("/api/fleet?local=1").await {
            let Ok(mut body) = answer.result else {
                continue;
            };
            let services = body
                .get_mut("services")
                .map(serde_json::Value::take)
                .unwrap_or_default();
            match serde_json::from_value::<Vec<ServiceRow>>(services) {
                // Only what the peer knows from its own records.
                Ok(theirs) => rows.extend(theirs.into_iter().filter(|r| r.local)),
                Err(e) => {
                    tracing::warn!(peer = %answer.url, error = %e, "watcher: a peer's fleet rows do not parse")
                }
            }
        }
        if tx.is_closed() {
            return;
        }
        let _ = tx.try_send(rows);
    }
}

fn load_state(path: &Path) -> Result<Option<SavedState>, Error> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    match serde_json::from_slice::<SavedState>(&text) {
        Ok(s) if s.format == 1 => Ok(Some(s)),
        Ok(s) => {
            tracing::warn!(path = %path.display(), format = s.format, "watcher: unknown saved-state format; rebuilding the fleet view from the store");
            Ok(None)
        }
        Err(e) => {
            // A damaged file loses the alert history, not records: the fleet view is
            // rebuilt from the store.
            tracing::warn!(path = %path.display(), error = %e, "watcher: saved state unreadable; rebuilding the fleet view from the store");
            Ok(None)
        }
    }
}

fn write_state(path: &Path, state: &SavedState) -> Result<(), Error> {
    use std::io::Write as _;
    let tmp = path.with_extension("json.tmp");
    let body = serde_json::to_vec(state).map_err(|e| Error::Corrupt(e.to_string()))?;
    let mut file = std::fs::File::create(&tmp).ctx(|| format!("creating {}", tmp.display()))?;
    file.write_all(&body)
        .and_then(|()| file.sync_data())
        .ctx(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).ctx(|| format!("renaming {} to {}", tmp.display(), path.display()))
}
