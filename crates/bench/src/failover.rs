//! `flotilla bench failover`: how long the clients of a front-end that dies are without
//! one, and whether they carry on where they were.
//!
//! - A game server (in this process, its own runtime) hosts one world and commits a batch
//!   every [`FailoverBenchConfig::commit_interval`].
//! - [`FailoverBenchConfig::frontends`] front-ends run in worker processes of their own,
//!   sharing one session-token key (a fleet), each connected to the game server.
//! - [`FailoverBenchConfig::clients`] `FleetClient`s (this process, a tokio runtime of
//!   two threads) hold the same front-end list, pick one at random and subscribe.
//! - Once every client has its replica, the first front-end's process fails: killed with
//!   SIGKILL ([`FailureMode::Kill`]: the kernel closes its sockets) or frozen with
//!   SIGSTOP ([`FailureMode::Hang`]: its sockets stay open and silent, so clients notice
//!   only by their idle timeout).
//! - For every client that was on it, measured from the failure: when it noticed
//!   (`FrontendLost`), when another front-end welcomed it (`Reconnected`, resumed or
//!   not), and when its replica took its next batch or snapshot there (it carries on).
//!   At the end every replica is compared with the game's state (digest and position).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flotilla_client::{ClientConfig, ClientEvent, FleetClient, FleetConfig, ReplicaMode};
use flotilla_frontend::TokenKey;
use rustix::process::Signal;
use serde::Serialize;

use crate::BenchError;
use crate::game_side::BenchGame;
use crate::spread::worst_sigma;
use crate::stats::{LatencyHistogram, Percentiles};
use crate::workers::{FrontendWorker, WorkerLauncher};

/// How the front-end fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum FailureMode {
    /// SIGKILL: the process is gone and the kernel resets its connections.
    Kill,
    /// SIGSTOP: the process is frozen; its connections stay open and go silent.
    Hang,
}

/// Settings of the failover benchmark.
#[derive(Debug, Clone)]
pub struct FailoverBenchConfig {
    /// Clients, all on one world.
    pub clients: usize,
    /// Front-end processes (at least 2).
    pub frontends: usize,
    /// How the first front-end fails.
    pub mode: FailureMode,
    /// The game server commits a batch this often.
    pub commit_interval: Duration,
    /// How long the clients of the failed front-end may take to carry on before the
    /// run ends without them.
    pub recovery_timeout: Duration,
    /// The clients' keep-alive ping interval (`None`: the protocol default).
    pub client_ping_interval: Option<Duration>,
    /// The clients' idle timeout: silence after which a front-end is given up (`None`:
    /// the protocol default).
    pub client_idle_timeout: Option<Duration>,
}

impl Default for FailoverBenchConfig {
    fn default() -> Self {
        Self {
            clients: 1_000,
            frontends: 3,
            mode: FailureMode::Kill,
            commit_interval: Duration::from_millis(50),
            recovery_timeout: Duration::from_secs(15),
            client_ping_interval: None,
            client_idle_timeout: None,
        }
    }
}

/// The failover benchmark's result.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverReport {
    /// Always `"failover"`.
    pub bench: &'static str,
    /// How the front-end failed.
    pub mode: FailureMode,
    /// Clients in the run.
    pub clients: usize,
    /// Front-end processes.
    pub frontends: usize,
    /// The clients' ping interval, milliseconds.
    pub client_ping_interval_ms: u128,
    /// The clients' idle timeout, milliseconds.
    pub client_idle_timeout_ms: u128,
    /// Clients on each front-end before the failure (the random spread).
    pub clients_per_frontend: Vec<usize>,
    /// The largest deviation of a front-end's count from N/K before the failure, in σ of
    /// a binomial count (sqrt(N p (1 - p)), p = 1/K): random choice promises a few σ.
    pub spread_sigma_before: f64,
    /// Clients on each front-end once the failed one's clients moved (the failed one
    /// counts 0).
    pub clients_per_frontend_after: Vec<usize>,
    /// The same deviation among the survivors, from N/(K-1).
    pub spread_sigma_after: f64,
    /// Every front-end within ±4σ before, and every survivor within ±4σ after.
    pub balanced_within_4_sigma: bool,
    /// Clients on the failed front-end.
    pub clients_on_failed: usize,
    /// Of those, how many noticed the loss.
    pub lost: usize,
    /// How many were welcomed by another front-end.
    pub reconnected: usize,
    /// How many of those resumed their session: the welcome says so and the session id
    /// in the client's token is the one it had before the failure.
    pub resumed: usize,
    /// How many took a batch or snapshot on their new front-end (carried on).
    pub carried_on: usize,
    /// How many carried on within 2 s of the failure.
    pub carried_on_within_2s: usize,
    /// Failure to `FrontendLost`.
    pub noticed: Percentiles,
    /// Failure to `Reconnected`.
    pub reconnected_after: Percentiles,
    /// Failure to the first batch or snapshot on the new front-end.
    pub carried_on_after: Percentiles,
    /// Clients on the other front-ends that lost theirs during the run (collateral
    /// failovers; 0 when the survivors kept up).
    pub lost_elsewhere: usize,
    /// Clients (all of them) whose replica equals the game's state at the end.
    pub replicas_in_sync: usize,
    /// Clients that received their replica's data again from a full snapshot rather
    /// than only the missing batches after the move (counted from `SnapshotApplied`).
    pub snapshots_after_move: usize,
}

/// What one client went through, from its event stream.
#[derive(Debug, Default, Clone)]
struct Track {
    ready: bool,
    /// The session token before the failure, to check the session resumed.
    token_before: Option<Bytes>,
    lost_at: Option<Instant>,
    reconnected_at: Option<Instant>,
    resumed: bool,
    carried_on_at: Option<Instant>,
    snapshot_after_move: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs the failover benchmark (front-ends in worker processes started by `launcher`).
pub fn run_failover(
    config: &FailoverBenchConfig,
    launcher: &WorkerLauncher,
) -> Result<FailoverReport, BenchError> {
    if config.frontends < 2 {
        return Err(BenchError::InvalidConfig(
            "--frontends must be at least 2 (one fails, the others take over)".into(),
        ));
    }
    if config.clients == 0 {
        return Err(BenchError::InvalidConfig(
            "--clients must be above 0".into(),
        ));
    }
    let game = BenchGame::start("failover", false, 1)?;
    let world = game.world_id.clone();

    // The fleet's session-token key, shared by every front-end process.
    let key_dir = tempfile::Builder::new()
        .prefix("flotilla-bench-failover-")
        .tempdir()
        .map_err(BenchError::io("creating a folder for the token key"))?;
    let key_path = key_dir.path().join("token.key");
    let mut key = [0u8; 32];
    for chunk in key.chunks_exact_mut(8) {
        let random = flotilla_balance::seed_from_os_entropy()
            .map_err(|e| BenchError::Server(format!("no OS entropy: {e}")))?;
        chunk.copy_from_slice(&random.to_le_bytes());
    }
    std::fs::write(&key_path, TokenKey::new(key).to_hex())
        .map_err(BenchError::io("writing the token key"))?;

    let mut workers = Vec::with_capacity(config.frontends);
    for _ in 0..config.frontends {
        let worker = FrontendWorker::start_with_key(launcher, game.addr(), &key_path)?;
        worker.wait_for_world(world.as_str(), Duration::from_secs(20))?;
        workers.push(worker);
    }
    let addrs: Vec<SocketAddr> = workers.iter().map(|w| w.addr).collect();
    eprintln!(
        "failover: game server on {}, front-ends {addrs:?}",
        game.addr()
    );

    // The game ticks until the end of the run.
    let ticking = Arc::new(AtomicBool::new(true));
    let ticker = {
        let ticking = Arc::clone(&ticking);
        let world = game.world.clone();
        let interval = config.commit_interval;
        std::thread::Builder::new()
            .name("failover-ticks".into())
            .spawn(move || {
                let mut tick: u64 = 0;
                while ticking.load(Ordering::Relaxed) {
                    tick += 1;
                    let mut tx = world.begin();
                    tx.set("tick", Bytes::from(tick.to_be_bytes().to_vec()));
                    tx.set(
                        format!("entity/{}", tick % 16),
                        crate::lean::payload(tick, 64),
                    );
                    if tx.commit().is_err() {
                        break;
                    }
                    std::thread::sleep(interval);
                }
            })
            .map_err(BenchError::io("starting the ticking thread"))?
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("failover-clients")
        .enable_all()
        .build()
        .map_err(BenchError::io("starting the clients' runtime"))?;
    let result = runtime.block_on(measure(
        config,
        &addrs,
        &world,
        &mut workers,
        &game,
        &ticking,
    ));
    ticking.store(false, Ordering::Relaxed);
    let _ = ticker.join();
    drop(workers);
    drop(game);
    result
}

async fn measure(
    config: &FailoverBenchConfig,
    addrs: &[SocketAddr],
    world: &flotilla_game::WorldId,
    workers: &mut [FrontendWorker],
    game: &BenchGame,
    ticking: &AtomicBool,
) -> Result<FailoverReport, BenchError> {
    let mut client_config = ClientConfig {
        mode: ReplicaMode::Full,
        ..ClientConfig::default()
    };
    if let Some(ping) = config.client_ping_interval {
        client_config.ping_interval = ping;
    }
    if let Some(idle) = config.client_idle_timeout {
        client_config.idle_timeout = idle;
    }
    let (ping_ms, idle_ms) = (
        client_config.ping_interval.as_millis(),
        client_config.idle_timeout.as_millis(),
    );

    let mut clients = Vec::with_capacity(config.clients);
    let mut tracks = Vec::with_capacity(config.clients);
    for i in 0..config.clients {
        let client = FleetClient::connect(FleetConfig {
            client: ClientConfig {
                client_name: format!("failover-{i}"),
                ..client_config.clone()
            },
            ..FleetConfig::new(addrs.to_vec())
        })
        .await
        .map_err(|e| BenchError::Server(format!("client {i}: {e}")))?;
        client
            .subscribe(world.clone(), None)
            .map_err(|e| BenchError::Server(format!("client {i} subscribing: {e}")))?;
        let mut events = client
            .take_events()
            .ok_or_else(|| BenchError::Server("client events already taken".into()))?;
        let track = Arc::new(Mutex::new(Track::default()));
        let track2 = Arc::clone(&track);
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                let now = Instant::now();
                let mut track = lock(&track2);
                match event {
                    ClientEvent::SnapshotApplied { .. } | ClientEvent::BatchApplied { .. } => {
                        track.ready = true;
                        if track.reconnected_at.is_some() && track.carried_on_at.is_none() {
                            track.carried_on_at = Some(now);
                        }
                        if track.lost_at.is_some()
                            && matches!(event, ClientEvent::SnapshotApplied { .. })
                        {
                            track.snapshot_after_move = true;
                        }
                    }
                    ClientEvent::FrontendLost { .. } => {
                        track.lost_at.get_or_insert(now);
                    }
                    ClientEvent::Reconnected { resumed, .. } if track.reconnected_at.is_none() => {
                        track.reconnected_at = Some(now);
                        track.resumed = resumed;
                    }
                    ClientEvent::Disconnected { .. } => break,
                    _ => {}
                }
            }
        });
        clients.push(client);
        tracks.push(track);
    }
    // Every client has its replica before anything fails.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !tracks.iter().all(|t| lock(t).ready) {
        if Instant::now() > deadline {
            return Err(BenchError::Timeout(
                "not every client received its world within 30 s".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let count_per_frontend = |clients: &[FleetClient]| -> Vec<usize> {
        addrs
            .iter()
            .map(|addr| {
                clients
                    .iter()
                    .filter(|c| c.frontend_addr() == Some(*addr))
                    .count()
            })
            .collect()
    };
    let clients_per_frontend = count_per_frontend(&clients);
    let victim_addr = addrs
        .first()
        .copied()
        .ok_or_else(|| BenchError::InvalidConfig("no front-end".into()))?;
    let on_victim: Vec<usize> = (0..clients.len())
        .filter(|&i| clients.get(i).and_then(FleetClient::frontend_addr) == Some(victim_addr))
        .collect();
    let victim = workers
        .first_mut()
        .ok_or_else(|| BenchError::InvalidConfig("no front-end".into()))?;
    let signal = match config.mode {
        FailureMode::Kill => Signal::KILL,
        FailureMode::Hang => Signal::STOP,
    };
    eprintln!(
        "failover: {} clients per front-end {clients_per_frontend:?}; {:?} of front-end {victim_addr} with {} clients",
        clients.len(),
        config.mode,
        on_victim.len()
    );
    // Only what happens from the failure on counts: a client that moved earlier (none
    // should have) starts clean, with its session token as it is now.
    for (track, client) in tracks.iter().zip(&clients) {
        let mut track = lock(track);
        *track = Track {
            ready: true,
            token_before: client.session_token(),
            ..Track::default()
        };
    }
    let failed_at = Instant::now();
    victim.signal(signal)?;

    let deadline = failed_at + config.recovery_timeout;
    loop {
        let done = on_victim.iter().all(|&i| {
            tracks
                .get(i)
                .is_some_and(|t| lock(t).carried_on_at.is_some())
        });
        if done || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if config.mode == FailureMode::Hang {
        // Let it run again (and be killed when the workers are dropped).
        let _ = victim.signal(Signal::CONT);
    }

    // Stop the game, let the last batches arrive, then compare every replica with it.
    ticking.store(false, Ordering::Relaxed);
    tokio::time::sleep(config.commit_interval * 2).await;
    let (position, digest) = (game.world.position(), game.world.digest());
    let in_sync_deadline = Instant::now() + Duration::from_secs(5);
    let replicas_in_sync = loop {
        let in_sync = clients
            .iter()
            .filter(|c| c.position(world) == Some(position) && c.digest(world) == Some(digest))
            .count();
        if in_sync == clients.len() || Instant::now() > in_sync_deadline {
            break in_sync;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let mut noticed = LatencyHistogram::new();
    let mut reconnected_after = LatencyHistogram::new();
    let mut carried_on_after = LatencyHistogram::new();
    let (mut lost, mut reconnected, mut resumed, mut carried_on, mut within_2s, mut snapshots) =
        (0, 0, 0, 0, 0, 0);
    let since_failure = |at: Instant| {
        u64::try_from(at.saturating_duration_since(failed_at).as_nanos()).unwrap_or(u64::MAX)
    };
    for &i in &on_victim {
        let Some(track) = tracks.get(i).map(|t| lock(t).clone()) else {
            continue;
        };
        if let Some(at) = track.lost_at {
            lost += 1;
            noticed.record(since_failure(at));
        }
        if let Some(at) = track.reconnected_at {
            reconnected += 1;
            let token_after = clients.get(i).and_then(FleetClient::session_token);
            let same_session = match (&track.token_before, &token_after) {
                (Some(before), Some(after)) => before.get(..8) == after.get(..8),
                _ => false,
            };
            resumed += usize::from(track.resumed && same_session);
            reconnected_after.record(since_failure(at));
        }
        if let Some(at) = track.carried_on_at {
            carried_on += 1;
            carried_on_after.record(since_failure(at));
            within_2s +=
                usize::from(at.saturating_duration_since(failed_at) <= Duration::from_secs(2));
        }
        snapshots += usize::from(track.snapshot_after_move);
    }
    let clients_per_frontend_after = count_per_frontend(&clients);
    let spread_sigma_before = worst_sigma(&clients_per_frontend);
    let spread_sigma_after = worst_sigma(clients_per_frontend_after.get(1..).unwrap_or(&[]));
    let lost_elsewhere = (0..tracks.len())
        .filter(|i| !on_victim.contains(i))
        .filter(|&i| tracks.get(i).is_some_and(|t| lock(t).lost_at.is_some()))
        .count();
    for client in &clients {
        client.close();
    }
    Ok(FailoverReport {
        bench: "failover",
        mode: config.mode,
        clients: clients.len(),
        frontends: addrs.len(),
        client_ping_interval_ms: ping_ms,
        client_idle_timeout_ms: idle_ms,
        clients_per_frontend,
        spread_sigma_before,
        clients_per_frontend_after,
        spread_sigma_after,
        balanced_within_4_sigma: spread_sigma_before <= 4.0 && spread_sigma_after <= 4.0,
        clients_on_failed: on_victim.len(),
        lost,
        reconnected,
        resumed,
        carried_on,
        carried_on_within_2s: within_2s,
        noticed: noticed.percentiles(),
        reconnected_after: reconnected_after.percentiles(),
        carried_on_after: carried_on_after.percentiles(),
        lost_elsewhere,
        replicas_in_sync,
        snapshots_after_move: snapshots,
    })
}
