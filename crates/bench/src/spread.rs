//! `flotilla bench spread`: the balance of client-side random choice, shown on real
//! processes. N `FleetClient`s, spread over P worker processes (a single process cannot
//! connect 12,000 fleet clients on this machine in reasonable time), each pick one of K
//! front-end processes at random (OS-seeded) and watch a ticking world. The report gives
//! the clients per front-end and the worst deviation from N/K in binomial standard
//! deviations (σ = √(N·(1/K)·(1−1/K))); then the first front-end is killed and its
//! clients move to the others at random: the same figures for the survivors against
//! N/(K−1). The claim checked: every front-end within ±4σ, before and after.
//!
//! Workers speak the harness's line protocol (see [`crate::workers`]): a `fleet-clients`
//! worker connects its clients, prints `{"event":"ready",…}` once each has its replica,
//! and answers `counts` with its clients per front-end.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use flotilla_frontend::TokenKey;
use rustix::process::Signal;
use serde::Serialize;

use crate::BenchError;
use crate::game_side::BenchGame;
use crate::workers::{FrontendWorker, Worker, WorkerLauncher};

/// Settings of `flotilla bench spread`.
#[derive(Debug, Clone)]
pub struct SpreadConfig {
    /// Fleet clients in all.
    pub clients: usize,
    /// Front-end processes.
    pub frontends: usize,
    /// Client worker processes.
    pub processes: usize,
    /// How long the moved clients get to be on another front-end.
    pub recovery_timeout: Duration,
}

impl Default for SpreadConfig {
    fn default() -> Self {
        SpreadConfig {
            clients: 12_000,
            frontends: 4,
            processes: 6,
            recovery_timeout: Duration::from_secs(60),
        }
    }
}

/// What `flotilla bench spread` found.
#[derive(Debug, Clone, Serialize)]
pub struct SpreadReport {
    /// Always `"spread"`.
    pub bench: &'static str,
    /// Fleet clients in all.
    pub clients: usize,
    /// Front-end processes.
    pub frontends: usize,
    /// Client worker processes.
    pub processes: usize,
    /// Seconds until every client had its replica.
    pub connect_seconds: f64,
    /// Clients per front-end (in front-end order) before the kill.
    pub clients_per_frontend: Vec<usize>,
    /// The worst deviation from N/K, in binomial σ.
    pub spread_sigma_before: f64,
    /// Clients on the killed front-end.
    pub moved: usize,
    /// Seconds until every client was on a surviving front-end again.
    pub recovery_seconds: Option<f64>,
    /// Clients per surviving front-end after the move.
    pub clients_per_frontend_after: Vec<usize>,
    /// Clients not on any front-end when the report was taken.
    pub between_frontends_after: usize,
    /// The worst deviation from N/(K−1) among the survivors, in binomial σ.
    pub spread_sigma_after: f64,
    /// Every front-end within ±4σ before, every survivor within ±4σ after, and every
    /// client back on a front-end.
    pub balanced_within_4_sigma: bool,
}

/// The worst |count − mean| over the counts, in binomial σ of their total over them.
pub fn worst_sigma(counts: &[usize]) -> f64 {
    let total: usize = counts.iter().sum();
    if counts.len() < 2 || total == 0 {
        return 0.0;
    }
    let k = counts.len() as f64;
    let mean = total as f64 / k;
    let sigma = (total as f64 * (1.0 / k) * (1.0 - 1.0 / k)).sqrt();
    counts
        .iter()
        .map(|n| (*n as f64 - mean).abs() / sigma)
        .fold(0.0, f64::max)
}

/// Sums the workers' `counts` answers: clients per front-end address, and between.
fn gather(workers: &mut [Worker]) -> Result<(BTreeMap<String, usize>, usize), BenchError> {
    let mut per_frontend = BTreeMap::new();
    let mut between = 0;
    for worker in workers.iter_mut() {
        worker.send("counts")?;
        let answer = worker.expect("counts", Duration::from_secs(30))?;
        if let Some(map) = answer["per_frontend"].as_object() {
            for (addr, n) in map {
                *per_frontend.entry(addr.clone()).or_default() += n.as_u64().unwrap_or(0) as usize;
            }
        }
        between += answer["between"].as_u64().unwrap_or(0) as usize;
    }
    Ok((per_frontend, between))
}

/// Runs the benchmark: front-ends and client workers in processes from `launcher`.
pub fn run_spread(
    config: &SpreadConfig,
    launcher: &WorkerLauncher,
) -> Result<SpreadReport, BenchError> {
    if config.frontends < 2 || config.clients == 0 || config.processes == 0 {
        return Err(BenchError::InvalidConfig(
            "spread needs at least 2 front-ends, 1 client and 1 process".into(),
        ));
    }
    let game = BenchGame::start("spread", false, 1)?;
    let key_dir = tempfile::Builder::new()
        .prefix("flotilla-bench-spread-")
        .tempdir()
        .map_err(BenchError::io("creating a folder for the token key"))?;
    let key_path = key_dir.path().join("token.key");
    let key = TokenKey::generate().map_err(|e| BenchError::Server(format!("token key: {e}")))?;
    std::fs::write(&key_path, key.to_hex()).map_err(BenchError::io("writing the token key"))?;
    let mut frontends = Vec::with_capacity(config.frontends);
    for _ in 0..config.frontends {
        let worker = FrontendWorker::start_with_key(launcher, game.addr(), &key_path)?;
        worker.wait_for_world(game.world_id.as_str(), Duration::from_secs(20))?;
        frontends.push(worker);
    }
    let addrs: Vec<SocketAddr> = frontends.iter().map(|w| w.addr).collect();
    // The world changes 10 times a second while the clients watch it.
    let ticking = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let ticker = {
        let ticking = ticking.clone();
        let world = game.world.clone();
        std::thread::spawn(move || {
            let mut tick: u64 = 0;
            while ticking.load(std::sync::atomic::Ordering::Relaxed) {
                tick += 1;
                let mut tx = world.begin();
                tx.set("tick", Bytes::from(tick.to_be_bytes().to_vec()));
                if tx.commit().is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let list = addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let started = Instant::now();
    let mut workers = Vec::with_capacity(config.processes);
    for p in 0..config.processes {
        let count =
            config.clients / config.processes + usize::from(p < config.clients % config.processes);
        workers.push(launcher.spawn(
            "fleet-clients",
            &[
                "fleet-clients".to_owned(),
                "--frontends".to_owned(),
                list.clone(),
                "--world".to_owned(),
                game.world_id.as_str().to_owned(),
                "--count".to_owned(),
                count.to_string(),
            ],
        )?);
    }
    let ready_within = Duration::from_secs(60).max(Duration::from_millis(
        20 * config.clients as u64 / config.processes as u64,
    ));
    for worker in &mut workers {
        worker.expect("ready", ready_within)?;
    }
    let connect_seconds = started.elapsed().as_secs_f64();
    let in_order = |map: &BTreeMap<String, usize>, of: &[SocketAddr]| -> Vec<usize> {
        of.iter()
            .map(|a| map.get(&a.to_string()).copied().unwrap_or(0))
            .collect()
    };
    let (before, _) = gather(&mut workers)?;
    let clients_per_frontend = in_order(&before, &addrs);
    let spread_sigma_before = worst_sigma(&clients_per_frontend);
    let moved = clients_per_frontend.first().copied().unwrap_or(0);
    eprintln!(
        "spread: {} clients in {connect_seconds:.1} s, per front-end {clients_per_frontend:?} \
         (worst {spread_sigma_before:.2} σ); killing the first front-end",
        config.clients
    );

    let victim = frontends
        .first()
        .ok_or_else(|| BenchError::InvalidConfig("no front-end".into()))?;
    let killed_at = Instant::now();
    victim.signal(Signal::KILL)?;
    let survivors = addrs.get(1..).unwrap_or(&[]).to_vec();
    let victim_addr = addrs.first().map(ToString::to_string).unwrap_or_default();
    let deadline = killed_at + config.recovery_timeout;
    let (after, between, recovery_seconds) = loop {
        let (after, between) = gather(&mut workers)?;
        let on_victim = after.get(&victim_addr).copied().unwrap_or(0);
        if on_victim == 0 && between == 0 {
            break (after, between, Some(killed_at.elapsed().as_secs_f64()));
        }
        if Instant::now() > deadline {
            break (after, between, None);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let clients_per_frontend_after = in_order(&after, &survivors);
    let spread_sigma_after = worst_sigma(&clients_per_frontend_after);
    ticking.store(false, std::sync::atomic::Ordering::Relaxed);
    let _ = ticker.join();
    for worker in &mut workers {
        let _ = worker.send("quit");
    }
    drop(workers);
    drop(frontends);
    Ok(SpreadReport {
        bench: "spread",
        clients: config.clients,
        frontends: config.frontends,
        processes: config.processes,
        connect_seconds,
        clients_per_frontend,
        spread_sigma_before,
        moved,
        recovery_seconds,
        clients_per_frontend_after,
        between_frontends_after: between,
        spread_sigma_after,
        balanced_within_4_sigma: spread_sigma_before <= 4.0
            && spread_sigma_after <= 4.0
            && recovery_seconds.is_some(),
    })
}

/// The `fleet-clients` worker: `count` fleet clients watching `world`.
pub(crate) fn fleet_clients_worker(
    frontends: Vec<SocketAddr>,
    world: String,
    count: usize,
) -> Result<(), BenchError> {
    use flotilla_client::{ClientConfig, ClientEvent, FleetClient, FleetConfig, WorldId};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let world = WorldId::new(&world).map_err(|e| BenchError::InvalidConfig(e.to_string()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(BenchError::io("starting the clients' runtime"))?;
    let ready = Arc::new(AtomicUsize::new(0));
    let clients: Vec<FleetClient> = runtime.block_on(async {
        let mut clients = Vec::with_capacity(count);
        // A few connections at a time, as a fleet's clients arrive: not all at once.
        for chunk_start in (0..count).step_by(64) {
            let mut pending = Vec::new();
            for i in chunk_start..(chunk_start + 64).min(count) {
                let config = FleetConfig {
                    client: ClientConfig {
                        client_name: format!("spread-{}-{i}", std::process::id()),
                        ..ClientConfig::default()
                    },
                    ..FleetConfig::new(frontends.clone())
                };
                pending.push(tokio::spawn(FleetClient::connect(config)));
            }
            for handle in pending {
                let client = handle
                    .await
                    .map_err(|e| BenchError::Server(format!("connect task: {e}")))?
                    .map_err(|e| BenchError::Server(format!("a client: {e}")))?;
                client
                    .subscribe(world.clone(), None)
                    .map_err(|e| BenchError::Server(format!("subscribing: {e}")))?;
                if let Some(mut events) = client.take_events() {
                    let ready = ready.clone();
                    tokio::spawn(async move {
                        let mut counted = false;
                        while let Some(event) = events.recv().await {
                            match event {
                                ClientEvent::SnapshotApplied { .. } if !counted => {
                                    counted = true;
                                    ready.fetch_add(1, Ordering::Relaxed);
                                }
                                ClientEvent::Disconnected { .. } => break,
                                _ => {}
                            }
                        }
                    });
                }
                clients.push(client);
            }
        }
        Ok::<_, BenchError>(clients)
    })?;
    let started = Instant::now();
    while ready.load(Ordering::Relaxed) < count {
        if started.elapsed() > Duration::from_secs(120) {
            return Err(BenchError::Timeout(format!(
                "{} of {count} clients got their world within 120 s",
                ready.load(Ordering::Relaxed)
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    crate::workers::print_line(&serde_json::json!({
        "event": "ready", "clients": count, "pid": std::process::id(),
    }))?;
    crate::workers::serve_commands(|command| {
        match command {
            "counts" => {
                let mut per_frontend: BTreeMap<String, u64> = BTreeMap::new();
                let mut between = 0u64;
                for client in &clients {
                    match client.frontend_addr() {
                        Some(addr) if client.is_connected() => {
                            *per_frontend.entry(addr.to_string()).or_default() += 1;
                        }
                        _ => between += 1,
                    }
                }
                crate::workers::print_line(&serde_json::json!({
                    "event": "counts", "per_frontend": per_frontend, "between": between,
                }))?;
            }
            "quit" => return Ok(false),
            other => eprintln!("fleet-clients worker: unknown command {other:?}"),
        }
        Ok(true)
    })?;
    for client in &clients {
        client.close();
    }
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}
