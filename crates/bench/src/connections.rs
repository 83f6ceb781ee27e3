//! `flotilla bench connections`: user-space memory per idle observer on one front-end.
//!
//! A game server (this process) hosts one quiet world; a front-end runs in a worker
//! process; observer worker processes (at most `per_process` connections each, from
//! 127.0.0.2, .3, …) connect, say hello and subscribe, then stay idle (pinging every 20 s
//! and answering the front-end's pings, which come after 20 s of quiet: a window shorter
//! than that measures connections at rest). The front-end's `/proc/PID/smaps_rollup` is
//! read before the
//! observers connect and after they are all subscribed and have been idle for a while;
//! the difference of `Private_Dirty` (the process's own written pages: heap, stacks),
//! divided by the number of connections, is the cost per connection. RSS is reported
//! too.

use std::time::Duration;

use serde::Serialize;

use crate::BenchError;
use crate::game_side::BenchGame;
use crate::lean::Protocol;
use crate::procstat::{MemoryFigures, open_fds, read_memory};
use crate::transport::Transport;
use crate::workers::{FrontendWorker, GroupSpec, ObserverGroup, WorkerLauncher};

/// Settings of the connections benchmark.
#[derive(Debug, Clone)]
pub struct ConnectionsConfig {
    /// Idle observers.
    pub count: usize,
    /// Connections per observer process at most (a process may hold 20,000 fds here).
    pub per_process: usize,
    /// Seconds the observers stay idle before the second measurement (past 20 s, the
    /// front-end's and the observers' keep-alive pings are part of it).
    pub idle_seconds: f64,
    /// How the observers connect: raw TCP, TLS, WebSocket, WebSocket over TLS.
    pub transport: Transport,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        Self {
            count: 15_000,
            per_process: 10_000,
            idle_seconds: 3.0,
            transport: Transport::Tcp,
        }
    }
}

/// The connections benchmark's result.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionsReport {
    /// Always `"connections"`.
    pub bench: &'static str,
    /// How the observers connected.
    pub transport: Transport,
    /// Observers asked for.
    pub count: usize,
    /// Observers connected and subscribed.
    pub subscribed: usize,
    /// Observer connections still open at the second measurement.
    pub open_at_end: usize,
    /// File descriptors the front-end gained (about one per connection).
    pub frontend_fds_added: i64,
    /// The front-end's memory before the observers connected.
    pub before: MemoryFigures,
    /// The front-end's memory with every observer connected and idle.
    pub after: MemoryFigures,
    /// (after - before) Private_Dirty / subscribed, bytes.
    pub private_dirty_per_connection: f64,
    /// (after - before) RSS / subscribed, bytes.
    pub rss_per_connection: f64,
    /// The target of `private_dirty_per_connection`: 8 KiB over raw TCP, 12 KiB over TLS
    /// and WebSocket.
    pub target_bytes: f64,
    /// private_dirty_per_connection at most `target_bytes`.
    pub meets_target: bool,
}

/// Runs the connections benchmark.
pub fn run_connections(
    config: &ConnectionsConfig,
    launcher: &WorkerLauncher,
) -> Result<ConnectionsReport, BenchError> {
    if config.count == 0 || config.per_process == 0 {
        return Err(BenchError::InvalidConfig("--count must be above 0".into()));
    }
    if config.per_process > 19_000 {
        return Err(BenchError::InvalidConfig(
            "at most 19,000 connections per process (20,000 fds)".into(),
        ));
    }
    if !(config.idle_seconds.is_finite() && (0.0..=600.0).contains(&config.idle_seconds)) {
        return Err(BenchError::InvalidConfig(
            "idle seconds must be in [0, 600]".into(),
        ));
    }
    let game = BenchGame::start("quiet", false, 1)?;
    let pki = match config.transport {
        Transport::Tcp => None,
        _ => Some(
            flotilla_testkit::TestPki::generate().map_err(|e| BenchError::Server(e.to_string()))?,
        ),
    };
    let frontend = match &pki {
        Some(pki) => FrontendWorker::start_edge(launcher, game.addr(), pki)?,
        None => FrontendWorker::start(launcher, game.addr())?,
    };
    let pid = frontend.worker.pid();
    eprintln!("connections: front-end on {} (pid {pid})", frontend.addr);
    // Let the front-end connect to the game server, learn the world and settle.
    frontend.wait_for_world("quiet", Duration::from_secs(20))?;
    std::thread::sleep(Duration::from_millis(1500));
    let before = read_memory(pid)?;
    let fds_before = open_fds(pid)?;
    let spec = GroupSpec {
        transport: config.transport,
        ca: pki.as_ref().map(|pki| pki.ca_pem_path().to_owned()),
        ping_every: None,
        poll_every: Duration::ZERO,
        protocol: Protocol::Flotilla,
        server: frontend.addr_for(config.transport)?,
        target: "quiet".into(),
        count: config.count,
        per_process: config.per_process,
        threads: 1,
    };
    let (mut observers, counts) = ObserverGroup::start(launcher, &spec)?;
    eprintln!(
        "connections: {} connected, {} subscribed, {} failed; idle for {} s",
        counts.connected, counts.subscribed, counts.failed, config.idle_seconds
    );
    std::thread::sleep(Duration::from_secs_f64(config.idle_seconds));
    let after = read_memory(pid)?;
    let fds_after = open_fds(pid)?;
    let end_counts = observers.counts()?;
    drop(observers);
    drop(frontend);
    drop(game);
    if counts.subscribed == 0 {
        return Err(BenchError::Worker("no observer got subscribed".into()));
    }
    let per = |a: u64, b: u64| (a as f64 - b as f64) / counts.subscribed as f64;
    let private_dirty_per_connection = per(after.private_dirty, before.private_dirty);
    let target_bytes = match config.transport {
        Transport::Tcp => 8192.0,
        _ => 12.0 * 1024.0,
    };
    Ok(ConnectionsReport {
        bench: "connections",
        transport: config.transport,
        count: config.count,
        subscribed: counts.subscribed,
        open_at_end: end_counts.connected.saturating_sub(end_counts.closed),
        frontend_fds_added: fds_after as i64 - fds_before as i64,
        before,
        after,
        private_dirty_per_connection,
        rss_per_connection: per(after.rss, before.rss),
        target_bytes,
        meets_target: private_dirty_per_connection <= target_bytes,
    })
}
