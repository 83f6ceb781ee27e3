//! `flotilla demo`: the main job, on one machine.
//!
//! One game server hosts a few "arena" worlds (entities moving on a 2D field at 20
//! ticks/s); three front-ends connect to it; bot players and observers are
//! [`FleetClient`]s holding the same front-end list: each picks a front-end at random
//! (client-side random balancing, OS-seeded), subscribes to a world and keeps a replica;
//! bots join and steer their entity with inputs. Half-way through, one front-end is shut
//! down: its clients fail over to the others at random, resume their sessions and their
//! replicas carry on (`--kill-frontend-at`, `--no-kill`). Every role logs through the
//! flotilla logger, with its own APP-NAME and a heartbeat, to an in-process log service
//! (a logd node with its fleet view, built-in alerts and web page, see
//! [`crate::demo_logd`]) whose data directory outlives the demo. A second game server,
//! `game-2`, runs as a process of its own (`flotilla game --crash-after`) beside the
//! fleet (no front-end uses it, so the players keep playing on `game-1`) and crashes on
//! purpose early in the run (`--no-crash`). After the run the demo waits (bounded) until
//! logd shows the crashed game server as `crashed` with ServiceCrashed firing and the
//! shut-down front-end as `silent` with HeartbeatStopped firing. A status line per second
//! (clients per front-end, batches/s delivered, observer lag p50/p99) and a final
//! summary: the run's figures, the messages each role logged, a ready-to-run query of
//! them, logd's fleet view and alerts and the URL of its page, which stays up for
//! `--linger S` seconds after the summary; `--json` prints the summary as one JSON
//! object.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use flotilla_client::{Client, ClientConfig, ClientEvent, FleetClient, FleetConfig, ReplicaMode};
use flotilla_frontend::{FrontendConfig, FrontendServer};
use flotilla_game::{GameConfig, GameServer, WorldId};
use flotilla_logd::fleet::ServiceState;
use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::arena::{self, CommitLog};
use crate::demo_logd::{DemoLogs, Expected, FRONTEND_APP, GAME_APP, LogdSummary, as_frontend};

/// Arguments of `flotilla demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// How long the game runs, in seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Arena worlds on the game server.
    #[arg(long, default_value_t = 3)]
    worlds: usize,
    /// Front-end servers.
    #[arg(long, default_value_t = 3)]
    frontends: usize,
    /// Bot players (each joins a world and steers).
    #[arg(long, default_value_t = 30)]
    bots: usize,
    /// Observers (each watches a world).
    #[arg(long, default_value_t = 300)]
    observers: usize,
    /// Wandering entities per world.
    #[arg(long, default_value_t = 20)]
    npcs: usize,
    /// Shut the first front-end down after this many seconds (default: half the
    /// duration); its clients fail over to the others.
    #[arg(long)]
    kill_frontend_at: Option<f64>,
    /// Keep every front-end up.
    #[arg(long, conflicts_with = "kill_frontend_at")]
    no_kill: bool,
    /// Do not run the game server that crashes on purpose (`game-2`, a `flotilla game
    /// --crash-after` process beside the fleet).
    #[arg(long)]
    no_crash: bool,
    /// Keep the demo's logd (its HTTP API and web page) up this many seconds after the
    /// summary (Ctrl-C ends it sooner). The roles have stopped playing by then; their
    /// loggers keep heartbeating, so the page shows the fleet as the summary does.
    #[arg(long, value_name = "S", default_value_t = 0.0)]
    linger: f64,
    /// Print the final summary as one JSON object (and no status lines).
    #[arg(long)]
    json: bool,
}

/// The demo's final summary.
#[derive(Debug, Serialize)]
pub struct DemoSummary {
    /// Seconds the game ran.
    pub seconds: f64,
    /// Clients (bots + observers) connected to each front-end at the start, by front-end id.
    pub clients_per_frontend: BTreeMap<String, u64>,
    /// Clients connected to each front-end at the end, by front-end id.
    pub clients_per_frontend_at_end: BTreeMap<String, u64>,
    /// The front-end shut down mid-run and how its clients failed over (absent with
    /// `--no-kill`).
    pub failover: Option<FailoverSummary>,
    /// Change batches the game server committed (all worlds).
    pub batches_committed: u64,
    /// Change batches the game server sent to each front-end, by front-end id: one per
    /// commit per subscribed world, whatever the number of observers behind it.
    pub game_batches_sent_per_frontend: BTreeMap<String, u64>,
    /// Change batches delivered to clients (all clients, all worlds).
    pub batches_delivered: u64,
    /// Observers and bots at the end.
    pub clients: u64,
    /// Clients whose replica equals the game server's state at the end (digest).
    pub replicas_in_sync: u64,
    /// Publish (commit) to client-apply lag, milliseconds.
    pub lag_ms_p50: f64,
    /// 99th percentile of the lag, milliseconds.
    pub lag_ms_p99: f64,
    /// How late the demo's own 200 ms loop (in the process that also runs every client)
    /// woke at worst, milliseconds.
    pub harness_late_ms_max: f64,
    /// CPU used by the demo's own runtime (every client and bot, and the game server),
    /// percent of its 2 threads' capacity over the run.
    pub harness_cpu_percent: f64,
    /// True when that runtime was nearly always busy (≥ 85%) or its loop woke over 50 ms
    /// late: the harness, not the system, was saturated, and the lag figures include the
    /// clients' own delay (the summary then says so).
    pub harness_saturated: bool,
    /// Outputs the bots received from the game server (their "you are ..." replies).
    pub outputs_received: u64,
    /// Log messages the log service (logd) stored from the roles.
    pub log_messages: u64,
    /// Boot messages among them.
    pub boot_messages: u64,
    /// The game server that crashed on purpose (absent with `--no-crash`).
    pub crashed_game: Option<CrashSummary>,
    /// The log service: data directory, records per role (APP-NAME), a ready-to-run
    /// query, its page's URL, its fleet view and alerts.
    pub logd: Option<LogdSummary>,
    /// When Ctrl-C ended the run early: after how many seconds (the summary covers the
    /// run so far, and the demo fails).
    pub interrupted_at_seconds: Option<f64>,
    /// Whether every check passed (replicas equal the game's state, game-2 crashed as
    /// planned, logd shows both, not interrupted).
    pub ok: bool,
    /// The checks that failed, in words (empty when `ok`).
    pub problems: Vec<String>,
}

/// The game server that crashes on purpose: `flotilla game --crash-after`, a process of
/// its own logging to the demo's logd as HOSTNAME `game-2`.
#[derive(Debug, Serialize)]
pub struct CrashSummary {
    /// HOSTNAME it logs under (its row in logd's fleet view, with APP-NAME
    /// `flotilla-game`).
    pub host: String,
    /// Its process id.
    pub pid: Option<u32>,
    /// The command that ran it.
    pub command: String,
    /// Seconds after its start when it panics.
    pub crash_after_seconds: f64,
    /// Seconds into the run when it was seen to exit.
    pub exited_at_seconds: Option<f64>,
    /// Its exit code: 101 after the panic (absent if it did not exit by itself).
    pub exit_code: Option<i32>,
    /// Its standard error (the panic message), for the error when it did not crash as
    /// planned.
    #[serde(skip)]
    pub stderr: String,
}

/// How the clients of the front-end shut down mid-run moved to the others.
#[derive(Debug, Serialize)]
pub struct FailoverSummary {
    /// The front-end's id.
    pub frontend: String,
    /// Seconds into the run when it was shut down.
    pub at_seconds: f64,
    /// Clients it carried then.
    pub clients_on_it: u64,
    /// Connections lost (`FrontendLost` events) from the shutdown on, all clients.
    pub lost: u64,
    /// Reconnections to another front-end from the shutdown on.
    pub reconnected: u64,
    /// Of those, the ones whose `Welcome` said the session was resumed.
    pub resumed: u64,
    /// The game server's view: of the clients that were on the shut-down front-end, those
    /// whose session (the same session id) the game server now routes through another
    /// front-end. Equal to `clients_on_it` when every moved session carried on.
    pub resumed_at_game: u64,
    /// Of the bots that were on it, those whose player entity (`p/<session id>`) is still
    /// in their arena at the end (the game kept it across the move).
    pub bots_kept_entity: u64,
    /// Bots that were on it.
    pub bots_on_it: u64,
    /// Time from the start of the shutdown to a moved client's next welcome, median,
    /// milliseconds.
    pub outage_ms_p50: f64,
    /// The longest such time, milliseconds.
    pub outage_ms_max: f64,
}

struct Shared {
    delivered: AtomicU64,
    /// When the front-end shutdown started (failover events count from then on).
    killed_at: Mutex<Option<Instant>>,
    lost: AtomicU64,
    reconnected: AtomicU64,
    resumed: AtomicU64,
    outages: Mutex<Histogram<u64>>,
    outputs: AtomicU64,
    lag: Mutex<Histogram<u64>>,
    window_lag: Mutex<Histogram<u64>>,
    commits: Arc<CommitLog>,
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> Result<()> {
    if !(args.duration.is_finite() && args.duration > 0.0)
        || args.worlds == 0
        || args.frontends == 0
    {
        bail!("--duration, --worlds and --frontends must be positive");
    }
    if let Some(at) = args.kill_frontend_at {
        if !(at.is_finite() && at >= 0.0 && at < args.duration) {
            bail!("--kill-frontend-at must be between 0 and --duration");
        }
        if args.frontends < 2 {
            bail!("--kill-frontend-at needs at least 2 front-ends (--frontends)");
        }
    }
    if !(args.linger.is_finite() && args.linger >= 0.0) {
        bail!("--linger must be 0 or more seconds");
    }
    // The roles log through the flotilla logger to an in-process logd; it runs its own
    // runtime, so it starts and stops outside the demo's. Heartbeats: short enough that
    // the shut-down front-end falls silent (3 intervals) within the run.
    let heartbeat = Duration::from_secs_f64((args.duration / 10.0).clamp(0.5, 1.0));
    let logs = DemoLogs::start(args.frontends, heartbeat)?;
    let (json, linger) = (args.json, args.linger);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(HARNESS_THREADS)
        .thread_name(HARNESS_THREAD_NAME)
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(demo(args, &logs));
    runtime.shutdown_timeout(Duration::from_secs(1));
    let mut summary = match outcome {
        Ok(summary) => summary,
        Err(e) => {
            logs.finish();
            return Err(e);
        }
    };
    // What logd must show: the shut-down front-end silent, the crashed game server
    // crashed, each with its built-in alert firing.
    let mut expected = Vec::new();
    if let Some(f) = &summary.failover {
        expected.push(Expected {
            host: f.frontend.clone(),
            app: FRONTEND_APP,
            state: ServiceState::Silent,
            alert: "HeartbeatStopped",
        });
    }
    if let Some(c) = &summary.crashed_game {
        expected.push(Expected {
            host: c.host.clone(),
            app: GAME_APP,
            state: ServiceState::Crashed,
            alert: "ServiceCrashed",
        });
    }
    // An interrupted run cannot expect logd to show what did not happen yet.
    let fleet_wait = if summary.interrupted_at_seconds.is_some() {
        Duration::ZERO
    } else {
        heartbeat * 3 + Duration::from_secs(3)
    };
    let missing = logs.wait_for_fleet(&expected, fleet_wait);
    let logd = match logs.summary() {
        Ok(logd) => logd,
        Err(e) => {
            logs.finish();
            return Err(e);
        }
    };
    summary.log_messages = logd.records;
    summary.boot_messages = logd.boot_messages;
    summary.logd = Some(logd);
    summary.problems = problems(&summary, &missing);
    summary.ok = summary.problems.is_empty();
    print_summary(&summary, json, linger)?;
    if linger > 0.0 {
        linger_for(Duration::from_secs_f64(linger));
    }
    logs.finish();
    if !summary.ok {
        bail!("the demo failed: {}", summary.problems.join("; "));
    }
    Ok(())
}

/// The checks of the summary that failed, in words.
fn problems(summary: &DemoSummary, missing: &[Expected]) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(at) = summary.interrupted_at_seconds {
        problems.push(format!("interrupted by Ctrl-C after {at:.1} s"));
    }
    if summary.replicas_in_sync != summary.clients {
        problems.push(format!(
            "only {} of {} replicas equal the game server's state",
            summary.replicas_in_sync, summary.clients
        ));
    }
    if let Some(f) = &summary.failover
        && summary.interrupted_at_seconds.is_none()
        && (f.resumed_at_game != f.clients_on_it || f.bots_kept_entity != f.bots_on_it)
    {
        problems.push(format!(
            "the game server saw {} of {} moved sessions carry on through another front-end, and {} of {} moved bots keep their entity",
            f.resumed_at_game, f.clients_on_it, f.bots_kept_entity, f.bots_on_it
        ));
    }
    if let Some(c) = &summary.crashed_game
        && c.exit_code != Some(101)
        && summary.interrupted_at_seconds.is_none()
    {
        problems.push(format!(
            "{} ({}) did not crash as planned: exit code {:?}; its stderr: {}",
            c.host,
            c.command,
            c.exit_code,
            c.stderr.trim()
        ));
    }
    if !missing.is_empty() && summary.interrupted_at_seconds.is_none() {
        let missing: Vec<String> = missing.iter().map(ToString::to_string).collect();
        problems.push(format!(
            "logd's fleet view and alerts did not show {}",
            missing.join("; ")
        ));
    }
    problems
}

/// Keeps the process (and so logd and its page) up for `time`, or until Ctrl-C.
fn linger_for(time: Duration) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        std::thread::sleep(time);
        return;
    };
    runtime.block_on(async {
        tokio::select! {
            () = tokio::time::sleep(time) => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    });
}

/// The game server that crashes on purpose, while it runs.
struct CrashingGame {
    child: tokio::process::Child,
    stderr: Option<tokio::task::JoinHandle<String>>,
    summary: CrashSummary,
}

impl CrashingGame {
    /// Starts `flotilla game --crash-after` (this very binary), logging to `log`.
    fn spawn(
        log: std::net::SocketAddr,
        heartbeat: Duration,
        crash_after: f64,
    ) -> Result<CrashingGame> {
        let host = "game-2";
        let args = [
            "game".to_owned(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--worlds".into(),
            "1".into(),
            "--npcs".into(),
            "5".into(),
            "--log".into(),
            format!("tcp://{log}"),
            "--log-heartbeat-ms".into(),
            heartbeat.as_millis().to_string(),
            "--log-hostname".into(),
            host.into(),
            "--crash-after".into(),
            format!("{crash_after:.1}"),
        ];
        let exe = std::env::current_exe().context("finding this binary")?;
        let mut child = tokio::process::Command::new(&exe)
            .args(&args)
            .env_remove("FLOTILLA_LOG")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} game", exe.display()))?;
        let stderr = child.stderr.take().map(|mut pipe| {
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt as _;
                let mut text = String::new();
                let _ = pipe.read_to_string(&mut text).await;
                text
            })
        });
        Ok(CrashingGame {
            summary: CrashSummary {
                host: host.into(),
                pid: child.id(),
                command: format!("flotilla {}", args.join(" ")),
                crash_after_seconds: crash_after,
                exited_at_seconds: None,
                exit_code: None,
                stderr: String::new(),
            },
            child,
            stderr,
        })
    }

    /// Notes its exit if it has exited; returns `true` the first time.
    fn poll_exit(&mut self, start: Instant) -> bool {
        if self.summary.exited_at_seconds.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.summary.exited_at_seconds = Some(start.elapsed().as_secs_f64());
                self.summary.exit_code = status.code();
                true
            }
            _ => false,
        }
    }

    /// Waits (at most `within`) for it to exit, kills it otherwise, and returns its
    /// summary.
    async fn finish(mut self, start: Instant, within: Duration) -> CrashSummary {
        if self.summary.exited_at_seconds.is_none() {
            match tokio::time::timeout(within, self.child.wait()).await {
                Ok(Ok(status)) => {
                    self.summary.exited_at_seconds = Some(start.elapsed().as_secs_f64());
                    self.summary.exit_code = status.code();
                }
                _ => {
                    let _ = self.child.kill().await;
                }
            }
        }
        if let Some(task) = self.stderr.take()
            && let Ok(Ok(text)) = tokio::time::timeout(Duration::from_secs(1), task).await
        {
            self.summary.stderr = text;
        }
        self.summary
    }
}

/// Runs the roles and the clients; the summary's log fields are filled in afterwards.
async fn demo(args: DemoArgs, logs: &DemoLogs) -> Result<DemoSummary> {
    let game = Arc::new(
        GameServer::bind(
            "127.0.0.1:0",
            GameConfig {
                server_id: "game-1".into(),
                ..GameConfig::default()
            },
        )
        .await?,
    );
    let game_addr = game.local_addr();
    let events = game.take_events().context("game events already taken")?;
    let commits = Arc::new(CommitLog::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let game_task = tokio::spawn(arena::run(
        game.clone(),
        events,
        args.worlds,
        args.npcs,
        Duration::from_millis(50),
        commits.clone(),
        stop_rx,
    ));

    let mut frontends = Vec::new();
    for i in 1..=args.frontends {
        let config = FrontendConfig {
            listen: "127.0.0.1:0".parse()?,
            game_servers: vec![game_addr.to_string()],
            server_id: format!("fe-{i}"),
            ..FrontendConfig::default()
        };
        frontends.push(as_frontend(i - 1, FrontendServer::bind(config)).await?);
    }
    let fe_addrs: Vec<_> = frontends.iter().map(|f| f.local_addr()).collect();
    if !args.json {
        let fe_list: Vec<String> = (1..)
            .zip(&fe_addrs)
            .map(|(i, addr)| format!("fe-{i} {addr}"))
            .collect();
        println!(
            "flotilla demo: game server {game_addr}, {} worlds; front-ends {}; {} bots, {} observers, {} s",
            args.worlds,
            fe_list.join(", "),
            args.bots,
            args.observers,
            args.duration
        );
        let or_none = |a: Option<std::net::SocketAddr>| a.map_or("-".into(), |a| a.to_string());
        println!(
            "flotilla demo: every role logs to logd at tcp://{} with a heartbeat every {:.1} s (data {}; follow it live: {} logs tail -f --logd http://{}, or its page {})",
            or_none(logs.tcp_addr()),
            logs.heartbeat().as_secs_f64(),
            logs.data_dir().display(),
            crate::demo_logd::flotilla_command(),
            or_none(logs.http_addr()),
            logs.page_url().unwrap_or_else(|| "-".into())
        );
    }
    // Wait until every front-end has connected to the game server and learnt its
    // worlds, watching each one's `$directory` world the way any client discovers games.
    let arenas: Vec<WorldId> = (1..=args.worlds)
        .map(|n| WorldId::new(&format!("arena-{n}")))
        .collect::<Result<_, _>>()?;
    for &addr in &fe_addrs {
        wait_for_worlds(addr, &arenas, Duration::from_secs(10)).await?;
    }

    let shared = Arc::new(Shared {
        delivered: AtomicU64::new(0),
        killed_at: Mutex::new(None),
        lost: AtomicU64::new(0),
        reconnected: AtomicU64::new(0),
        resumed: AtomicU64::new(0),
        outages: Mutex::new(Histogram::new(3)?),
        outputs: AtomicU64::new(0),
        lag: Mutex::new(Histogram::new(3)?),
        window_lag: Mutex::new(Histogram::new(3)?),
        commits,
    });
    // Client-side random balancing: every client holds the same front-end list and
    // picks one uniformly at random (its own OS-seeded generator); on a failure it
    // picks another at random and resumes its session there.
    // The demo's own choices (worlds, steering) come from another OS-seeded generator.
    let seed = flotilla_balance::seed_from_os_entropy().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut clients = Vec::new();
    for i in 0..(args.bots + args.observers) {
        let is_bot = i < args.bots;
        let world = WorldId::new(&format!("arena-{}", rng.random_range(1..=args.worlds)))?;
        let config = ClientConfig {
            client_name: format!("{}-{i}", if is_bot { "bot" } else { "observer" }),
            mode: ReplicaMode::Full,
            ..ClientConfig::default()
        };
        let client = FleetClient::connect(FleetConfig {
            client: config,
            ..FleetConfig::new(fe_addrs.clone())
        })
        .await
        .with_context(|| format!("client {i}"))?;
        client.subscribe(world.clone(), None)?;
        if is_bot {
            client.send_input(&world, Bytes::from_static(b"J"))?;
        }
        let mut events = client.take_events().context("client events")?;
        let shared2 = shared.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                match event {
                    ClientEvent::BatchApplied {
                        world,
                        position,
                        received,
                    } => {
                        shared2.delivered.fetch_add(1, Ordering::Relaxed);
                        if let Some(at) = shared2.commits.committed_at(world.as_str(), position.seq)
                        {
                            let received = flotilla_conn::Clock::process().to_std(received);
                            let micros = received.saturating_duration_since(at).as_micros() as u64;
                            if let Ok(mut h) = shared2.lag.lock() {
                                let _ = h.record(micros.max(1));
                            }
                            if let Ok(mut h) = shared2.window_lag.lock() {
                                let _ = h.record(micros.max(1));
                            }
                        }
                    }
                    ClientEvent::Output { .. } => {
                        shared2.outputs.fetch_add(1, Ordering::Relaxed);
                    }
                    ClientEvent::FrontendLost { .. } if shared2.killed_since().is_some() => {
                        shared2.lost.fetch_add(1, Ordering::Relaxed);
                    }
                    ClientEvent::Reconnected { resumed, .. } => {
                        if let Some(killed_at) = shared2.killed_since() {
                            shared2.reconnected.fetch_add(1, Ordering::Relaxed);
                            if resumed {
                                shared2.resumed.fetch_add(1, Ordering::Relaxed);
                            }
                            let outage = killed_at.elapsed().as_micros() as u64;
                            if let Ok(mut h) = shared2.outages.lock() {
                                let _ = h.record(outage.max(1));
                            }
                        }
                    }
                    ClientEvent::Disconnected { .. } => break,
                    _ => {}
                }
            }
        });
        clients.push((client, world, is_bot));
    }
    log::info!(clients = clients.len(), frontends = fe_addrs.len(); "demo clients connected");
    let per_frontend = clients_per_frontend(&clients);
    let mut frontends: Vec<(String, Option<FrontendServer>)> = frontends
        .into_iter()
        .enumerate()
        .map(|(i, fe)| (format!("fe-{}", i + 1), Some(fe)))
        .collect();
    // With one front-end there is nowhere to fail over to: then nothing is shut down.
    let kill_at = match (args.no_kill || args.frontends < 2, args.kill_frontend_at) {
        (true, _) => None,
        (false, Some(at)) => Some(Duration::from_secs_f64(at)),
        (false, None) => Some(Duration::from_secs_f64(args.duration / 2.0)),
    };
    let mut failover: Option<FailoverSummary> = None;

    // Beside the fleet, a game server of its own process that crashes on purpose early
    // in the run: no front-end uses it (it would take the worlds over from game-1), so
    // the players keep playing.
    let mut crashing = if args.no_crash {
        None
    } else {
        let log = logs.tcp_addr().context("logd has no TCP listener")?;
        let crash_after = (args.duration * 0.3 * 10.0).round() / 10.0;
        let game = CrashingGame::spawn(log, logs.heartbeat(), crash_after)?;
        if !args.json {
            println!(
                "  t= 0.0s started game-2 (pid {}), beside the fleet, to crash on purpose: {}",
                game.summary.pid.map_or("?".into(), |p| p.to_string()),
                game.summary.command
            );
        }
        Some(game)
    };
    let start = Instant::now();
    let total = Duration::from_secs_f64(args.duration);
    let mut last_delivered = 0;
    let mut steer = tokio::time::interval(Duration::from_millis(200));
    let mut next_status = start + Duration::from_secs(1);
    // The clients on the front-end shut down: index, session, its front-end at the game.
    let mut moved: Vec<(
        usize,
        flotilla_game::SessionId,
        Option<flotilla_game::FrontendId>,
    )> = Vec::new();
    // Ctrl-C ends the run early: the summary then covers what ran.
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    let mut interrupted_at_seconds = None;
    let mut harness_late = Duration::ZERO;
    let harness_cpu_before = harness_cpu_seconds();
    let harness_wall = Instant::now();
    while start.elapsed() < total {
        tokio::select! {
            scheduled = steer.tick() => {
                // How late the clients' own process woke: a busy harness shows here.
                harness_late = harness_late.max(scheduled.elapsed());
            }
            _ = &mut interrupt => {
                let at = start.elapsed().as_secs_f64();
                if !args.json {
                    println!("  t={at:>4.1}s interrupted (Ctrl-C): stopping, the summary covers the run so far");
                }
                interrupted_at_seconds = Some(at);
                break;
            }
        }
        if let Some(at) = kill_at
            && failover.is_none()
            && start.elapsed() >= at
            && let Some((id, slot)) = frontends.first_mut()
            && let Some(fe) = slot.take()
        {
            let clients_on_it = fe.stats().machine.connections;
            let at_seconds = start.elapsed().as_secs_f64();
            // Who is on it, as the game server sees them, before it goes.
            moved = clients
                .iter()
                .enumerate()
                .filter(|(_, (c, _, _))| c.server_id().as_deref() == Some(id.as_str()))
                .filter_map(|(i, (c, _, _))| {
                    let session = session_of(c)?;
                    Some((i, session, game.session_frontend(session)))
                })
                .collect();
            log::warn!(frontend = id.as_str(), clients = clients_on_it; "demo: shutting a front-end down");
            if !args.json {
                println!("  t={at_seconds:>4.1}s shutting {id} down ({clients_on_it} clients)");
            }
            if let Ok(mut killed_at) = shared.killed_at.lock() {
                *killed_at = Some(Instant::now());
            }
            fe.shutdown().await;
            // Its logger stops with it, as it would with its process: its heartbeats
            // stop and logd's fleet view will show it silent.
            if let Some(logger) = logs.frontend_logger(0) {
                let _ = tokio::task::spawn_blocking(move || {
                    logger.shutdown(Duration::from_millis(500))
                })
                .await;
            }
            failover = Some(FailoverSummary {
                frontend: id.clone(),
                at_seconds,
                clients_on_it,
                lost: 0,
                reconnected: 0,
                resumed: 0,
                resumed_at_game: 0,
                bots_kept_entity: 0,
                bots_on_it: 0,
                outage_ms_p50: 0.0,
                outage_ms_max: 0.0,
            });
        }
        for (client, world, is_bot) in &clients {
            if *is_bot {
                let dx = rng.random_range(-100i8..=100) as u8;
                let dy = rng.random_range(-100i8..=100) as u8;
                let _ = client.send_input(world, Bytes::from(vec![b'S', dx, dy]));
            }
        }
        if let Some(game) = crashing.as_mut()
            && game.poll_exit(start)
            && !args.json
        {
            let how = match game.summary.exit_code {
                Some(101) => "crashed on purpose (exit code 101)".to_owned(),
                Some(code) => format!("exited unexpectedly (exit code {code})"),
                None => "was killed by a signal".to_owned(),
            };
            println!("  t={:>4.1}s game-2 {how}", start.elapsed().as_secs_f64());
        }
        if !args.json && Instant::now() >= next_status {
            next_status += Duration::from_secs(1);
            let delivered = shared.delivered.load(Ordering::Relaxed);
            let (p50, p99) = match shared.window_lag.lock() {
                Ok(mut h) => {
                    let r = (h.value_at_quantile(0.5), h.value_at_quantile(0.99));
                    h.reset();
                    r
                }
                Err(_) => (0, 0),
            };
            let per_fe: Vec<String> = frontends
                .iter()
                .map(|(id, f)| match f {
                    Some(f) => format!("{id} {}", f.stats().machine.connections),
                    None => format!("{id} down"),
                })
                .collect();
            println!(
                "  t={:>4.1}s clients per front-end: {}  batches/s delivered {:>6}  lag p50 {:.1} ms p99 {:.1} ms",
                start.elapsed().as_secs_f64(),
                per_fe.join(", "),
                delivered - last_delivered,
                p50 as f64 / 1000.0,
                p99 as f64 / 1000.0
            );
            last_delivered = delivered;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let harness_cpu_percent = 100.0 * (harness_cpu_seconds() - harness_cpu_before)
        / (harness_wall.elapsed().as_secs_f64() * HARNESS_THREADS as f64).max(1e-9);
    // The crashing game server has crashed by now, or will within its --crash-after.
    let crashed_game = match crashing {
        // Interrupted: no waiting for the planned crash.
        Some(game) if interrupted_at_seconds.is_some() => {
            Some(game.finish(start, Duration::ZERO).await)
        }
        Some(game) => {
            let due = Duration::from_secs_f64(game.summary.crash_after_seconds)
                .saturating_sub(start.elapsed());
            Some(game.finish(start, due + Duration::from_secs(5)).await)
        }
        None => None,
    };
    // The game server's view of the move: the same sessions, now through another
    // front-end; and the bots' entities kept.
    if let Some(f) = failover.as_mut() {
        for (i, session, before) in &moved {
            let Some((client, world, is_bot)) = clients.get(*i) else {
                continue;
            };
            let now = game.session_frontend(*session);
            if session_of(client) == Some(*session) && now.is_some() && now != *before {
                f.resumed_at_game += 1;
            }
            if *is_bot {
                f.bots_on_it += 1;
                let key = format!("p/{}", session.0);
                if game
                    .world(world)
                    .is_some_and(|w| w.get(key.as_bytes()).is_some())
                {
                    f.bots_kept_entity += 1;
                }
            }
        }
    }
    // Stop the game; let the last batches reach everyone.
    let _ = stop_tx.send(true);
    game_task.await.context("game task")??;
    let positions: BTreeMap<String, (flotilla_game::Position, u64)> = game
        .world_ids()
        .into_iter()
        .filter_map(|id| {
            game.world(&id)
                .map(|w| (id.as_str().to_owned(), (w.position(), w.digest())))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    let in_sync = loop {
        let in_sync = clients
            .iter()
            .filter(|(c, world, _)| {
                let want = positions.get(world.as_str());
                want.is_some_and(|(pos, digest)| {
                    c.position(world) == Some(*pos) && c.digest(world) == Some(*digest)
                })
            })
            .count() as u64;
        if in_sync == clients.len() as u64 || Instant::now() > deadline {
            break in_sync;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let game_stats = game.stats();
    let game_batches_sent_per_frontend = game_stats
        .frontends
        .iter()
        .map(|f| (f.name.clone(), f.batches_sent))
        .collect();
    let (lag_ms_p50, lag_ms_p99) = match shared.lag.lock() {
        Ok(h) => (
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
        ),
        Err(_) => (0.0, 0.0),
    };
    let clients_per_frontend_at_end = clients_per_frontend(&clients);
    if let Some(failover) = failover.as_mut() {
        failover.lost = shared.lost.load(Ordering::Relaxed);
        failover.reconnected = shared.reconnected.load(Ordering::Relaxed);
        failover.resumed = shared.resumed.load(Ordering::Relaxed);
        if let Ok(h) = shared.outages.lock()
            && !h.is_empty()
        {
            failover.outage_ms_p50 = h.value_at_quantile(0.5) as f64 / 1000.0;
            failover.outage_ms_max = h.max() as f64 / 1000.0;
        }
    }
    for (client, _, _) in &clients {
        client.close();
    }
    for (_, fe) in frontends {
        if let Some(fe) = fe {
            fe.shutdown().await;
        }
    }
    game.shutdown();
    Ok(DemoSummary {
        seconds,
        clients_per_frontend: per_frontend,
        clients_per_frontend_at_end,
        failover,
        batches_committed: game_stats.batches_committed,
        game_batches_sent_per_frontend,
        batches_delivered: shared.delivered.load(Ordering::Relaxed),
        clients: clients.len() as u64,
        replicas_in_sync: in_sync,
        lag_ms_p50,
        lag_ms_p99,
        harness_late_ms_max: harness_late.as_secs_f64() * 1000.0,
        harness_cpu_percent,
        harness_saturated: harness_late > Duration::from_millis(50) || harness_cpu_percent >= 85.0,
        outputs_received: shared.outputs.load(Ordering::Relaxed),
        log_messages: 0,
        boot_messages: 0,
        crashed_game,
        logd: None,
        interrupted_at_seconds,
        ok: false,
        problems: Vec::new(),
    })
}

fn print_summary(summary: &DemoSummary, json: bool, linger: f64) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(summary)?);
    } else {
        println!("flotilla demo: summary");
        println!(
            "  clients per front-end:            {}",
            by_frontend(&summary.clients_per_frontend)
        );
        println!(
            "  clients per front-end at the end: {}",
            by_frontend(&summary.clients_per_frontend_at_end)
        );
        if let Some(f) = &summary.failover {
            println!(
                "  failover: {} shut down at {:.1} s with {} clients; {} reconnected elsewhere ({} resumed), welcomed again p50 {:.0} ms, max {:.0} ms after the shutdown began",
                f.frontend,
                f.at_seconds,
                f.clients_on_it,
                f.reconnected,
                f.resumed,
                f.outage_ms_p50,
                f.outage_ms_max
            );
            println!(
                "  the game server's view:           {} of those {} sessions now through another front-end (same session id); {} of {} bots kept their entity",
                f.resumed_at_game, f.clients_on_it, f.bots_kept_entity, f.bots_on_it
            );
        }
        if let Some(c) = &summary.crashed_game {
            println!(
                "  crash on purpose:                 {} (pid {}) exited {} with code {}: {}",
                c.host,
                c.pid.map_or("?".into(), |p| p.to_string()),
                c.exited_at_seconds
                    .map_or("never (killed)".into(), |t| format!("at {t:.1} s")),
                c.exit_code.map_or("none".into(), |c| c.to_string()),
                c.command
            );
        }
        println!(
            "  batches committed by the game:    {}",
            summary.batches_committed
        );
        println!(
            "  batches sent per front-end:       {}",
            by_frontend(&summary.game_batches_sent_per_frontend)
        );
        println!(
            "  batches delivered to clients:     {}",
            summary.batches_delivered
        );
        println!(
            "  replicas equal to the game state: {} of {}",
            summary.replicas_in_sync, summary.clients
        );
        println!(
            "  lag commit -> client p50 {:.2} ms, p99 {:.2} ms",
            summary.lag_ms_p50, summary.lag_ms_p99
        );
        if summary.harness_saturated {
            println!(
                "    (the demo's own runtime, which runs every client, was saturated: {:.0}% of its {HARNESS_THREADS} threads busy, its loop up to {:.0} ms late; so this lag includes the clients' own delay, not only the system's; fewer --observers measure the system)",
                summary.harness_cpu_percent, summary.harness_late_ms_max
            );
        }
        println!(
            "  outputs received by bots:         {}",
            summary.outputs_received
        );
        println!(
            "  log messages stored by logd:      {} ({} boot)",
            summary.log_messages, summary.boot_messages
        );
        if let Some(logd) = &summary.logd {
            for (app, n) in &logd.per_app {
                println!("    {app:<20} {n:>7}");
            }
            println!(
                "  logd data directory (kept):       {}",
                logd.data_dir.display()
            );
            println!("  query it:  {}", logd.query);
        }
        if let Some(logd) = &summary.logd {
            print_fleet(logd);
            match &logd.page {
                Some(page) if linger > 0.0 => println!(
                    "  page: {page}  (search, tail, fleet, alerts; up {linger} s more: --linger, Ctrl-C ends it)"
                ),
                Some(page) => println!(
                    "  page: {page}  (search, tail, fleet, alerts; gone when the demo exits: --linger S keeps it up)"
                ),
                None => {}
            }
        }
        if summary.ok {
            println!(
                "flotilla demo: PASS (every replica equals the game server's state{}{})",
                if summary.crashed_game.is_some() {
                    "; game-2 crashed as planned"
                } else {
                    ""
                },
                if summary.failover.is_some() || summary.crashed_game.is_some() {
                    "; logd shows it"
                } else {
                    ""
                }
            );
        } else {
            println!("flotilla demo: FAIL: {}", summary.problems.join("; "));
        }
    }
    Ok(())
}

/// `fe-1 42, fe-2 33`: a count per front-end, in id order.
fn by_frontend(counts: &BTreeMap<String, u64>) -> String {
    if counts.is_empty() {
        return "none".into();
    }
    counts
        .iter()
        .map(|(id, n)| format!("{id} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// logd's fleet view and alerts, as tables.
fn print_fleet(logd: &LogdSummary) {
    println!("  logd's fleet view:");
    let header = [
        "STATE",
        "HOST",
        "APP",
        "BOOTS/1h",
        "CRASHES",
        "LAST HEARTBEAT",
    ]
    .map(String::from);
    let rows: Vec<[String; 6]> = logd
        .fleet
        .iter()
        .map(|r| {
            [
                r.state.clone(),
                r.host.clone(),
                r.app.clone(),
                r.boots_last_hour.to_string(),
                r.crashes.to_string(),
                r.last_heartbeat_ago_s
                    .map_or("-".into(), |s| format!("{s:.1} s ago")),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::from("    ");
        for (cell, w) in row.iter().zip(widths) {
            line.push_str(&format!("{cell:<w$}  "));
        }
        println!("{}", line.trim_end());
    }
    for r in &logd.fleet {
        if let Some(crash) = &r.last_crash {
            println!("    {}/{} last crash: {crash}", r.host, r.app);
        }
    }
    if logd.alerts.firing.is_empty() {
        println!("  logd's alerts firing: none");
    } else {
        println!("  logd's alerts firing:");
        for a in &logd.alerts.firing {
            println!("    {:<17} {}", a.name, a.summary);
        }
    }
    if !logd.alerts.recent.is_empty() {
        println!("  logd's recent alert notifications (oldest first):");
        for a in &logd.alerts.recent {
            let (status, at) = match a.ends_at {
                Some(end) => ("resolved", end),
                None => ("firing", a.starts_at),
            };
            println!(
                "    {}  {status:<8}  {:<17} {}",
                flotilla_logd::query::format_ns(at),
                a.name,
                a.summary
            );
        }
    }
}

impl Shared {
    /// When the front-end shutdown started, once it has.
    fn killed_since(&self) -> Option<Instant> {
        self.killed_at.lock().ok().and_then(|at| *at)
    }
}

/// How many clients each front-end carries now, by front-end id.
/// Threads of the demo's own runtime (clients, bots, the game server).
const HARNESS_THREADS: usize = 2;
/// Their name, to find their CPU time in /proc.
const HARNESS_THREAD_NAME: &str = "demo-harness";

/// CPU seconds used so far by the threads of the demo's own runtime (Linux /proc; 0
/// elsewhere).
fn harness_cpu_seconds() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let ticks_per_second = flotilla_bench::procstat::clock_ticks_per_second().max(1) as f64;
    let mut ticks = 0u64;
    for task in tasks.flatten() {
        let path = task.path();
        let is_harness = std::fs::read_to_string(path.join("comm"))
            .is_ok_and(|comm| comm.trim() == HARNESS_THREAD_NAME);
        if !is_harness {
            continue;
        }
        if let Ok(stat) = std::fs::read_to_string(path.join("stat"))
            && let Ok(cpu) = flotilla_bench::procstat::parse_stat(&stat)
        {
            ticks += cpu.total();
        }
    }
    ticks as f64 / ticks_per_second
}

/// A client's session id: the first 8 bytes of its token (PROTOCOL.md §2).
fn session_of(client: &FleetClient) -> Option<flotilla_game::SessionId> {
    let token = client.session_token()?;
    let id: [u8; 8] = token.get(..8)?.try_into().ok()?;
    Some(flotilla_game::SessionId(u64::from_be_bytes(id)))
}

fn clients_per_frontend(clients: &[(FleetClient, WorldId, bool)]) -> BTreeMap<String, u64> {
    let mut per_frontend = BTreeMap::new();
    for (client, _, _) in clients {
        let id = client
            .server_id()
            .unwrap_or_else(|| "(between front-ends)".into());
        *per_frontend.entry(id).or_default() += 1;
    }
    per_frontend
}

/// Watches `frontend`'s `$directory` world until it lists every one of `worlds`.
async fn wait_for_worlds(
    frontend: std::net::SocketAddr,
    worlds: &[WorldId],
    within: Duration,
) -> Result<()> {
    let config = ClientConfig {
        client_name: "demo-directory".into(),
        mode: ReplicaMode::Full,
        ..ClientConfig::default()
    };
    let client = Client::connect(frontend, config)
        .await
        .with_context(|| format!("watching the directory of {frontend}"))?;
    client.subscribe(WorldId::DIRECTORY, None)?;
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let listed = worlds.iter().all(|world| {
            client
                .get(&WorldId::DIRECTORY, world.as_str().as_bytes())
                .is_some()
        });
        if listed {
            client.close();
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            client.close();
            bail!(
                "front-end {frontend} did not list all {} worlds within {within:?}",
                worlds.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
