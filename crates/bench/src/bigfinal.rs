//! `flotilla bench bigfinal`: many observers of one world (a tournament final) over K
//! front-end processes.
//!
//! - **Game server** in this process ([`BenchGame`]): one world changing `rate` times a
//!   second (one upsert of a `payload`-byte value stamped with its commit time).
//! - **K front-ends**, each a worker process connected to the game server.
//! - **Observers**: lean observer worker processes (at most `per_process` connections each,
//!   each process from its own 127.0.0.x source address), `observers / K` per front-end.
//!
//! Reported: how many subscribed and how long that took, deliveries per observer against
//! what the world committed in the measured window, the lag (commit time to receipt, so
//! against the game server's own clock), game links lost during the run (a front-end that
//! loses its game link under client load is the failure this benchmark exists to catch),
//! each front-end's CPU and memory per connection, and the game server's CPU and bytes per
//! front-end link (the concentrator half: they must not grow with the observers).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::BenchError;
use crate::fanout::{FlotillaPublisher, PublisherThread};
use crate::game_side::BenchGame;
use crate::lean::Protocol;
use crate::observe::ReportTotals;
use crate::procstat::{CpuMeter, clock_ticks_per_second, read_memory};
use crate::stats::Percentiles;
use crate::workers::{FrontendWorker, GroupSpec, ObserverGroup, WorkerLauncher};

/// The world.
pub(crate) const WORLD: &str = "bigfinal";

/// After the world stops changing, how long the observers keep counting (the last
/// commits' way to every observer).
pub(crate) const SETTLE: Duration = Duration::from_secs(2);

/// How long the census waits, after the world stopped, for every observer to hold the
/// final state.
pub(crate) const CONVERGE_WITHIN: Duration = Duration::from_secs(30);

/// Settings of the big-final benchmark.
#[derive(Debug, Clone)]
pub struct BigFinalConfig {
    /// Observers in all.
    pub observers: usize,
    /// Front-end processes.
    pub frontends: usize,
    /// Changes per second of the world.
    pub rate: u64,
    /// Bytes of each change's value (at least the 8-byte timestamp).
    pub payload_len: usize,
    /// Measured seconds.
    pub seconds: f64,
    /// Observer connections per worker process at most.
    pub per_process: usize,
    /// The front-ends' coalescing threshold (`None`: their default; 0: every batch).
    pub coalesce_above: Option<usize>,
    /// How often each observer pings (`None`: every 20 s, what PROTOCOL.md section 7
    /// asks of a receiving client). Set, the front-ends close a silent client after three
    /// times that (at least their default 60 s): a what-if for the observers' keep-alive
    /// budget, not the protocol.
    pub observer_ping: Option<Duration>,
    /// How often each observer worker thread polls its connections at most (zero: at
    /// every arrival). Default 5 ms: a worker stands in for thousands of devices, and
    /// woken at every arrival it would make the front-ends pay for its wake-ups, which
    /// on loopback run in the sender's write. Adds at most this much to the lag.
    pub observer_poll: Duration,
    /// Also run the floor ([`crate::floor`]) with the same observers after the front-ends,
    /// for its figures side by side in the report.
    pub floor: bool,
}

/// The default of [`BigFinalConfig::observer_poll`].
pub const OBSERVER_POLL_EVERY: Duration = Duration::from_millis(5);

/// The front-ends' client silence timeout for observers pinging every `ping`: three
/// intervals, never under the default.
fn client_idle_timeout_for(ping: Duration) -> Duration {
    (ping * 3).max(flotilla_wire::FRONTEND_CLIENT_IDLE_TIMEOUT)
}

impl Default for BigFinalConfig {
    fn default() -> Self {
        Self {
            observers: 20_000,
            frontends: 2,
            rate: 20,
            payload_len: 300,
            seconds: 10.0,
            per_process: 10_000,
            coalesce_above: None,
            observer_ping: None,
            observer_poll: OBSERVER_POLL_EVERY,
            floor: false,
        }
    }
}

/// One front-end's figures.
#[derive(Debug, Clone, Serialize)]
pub struct FrontendFigures {
    /// Observers assigned to it.
    pub observers: usize,
    /// Of those, subscribed.
    pub subscribed: usize,
    /// CPU over the measured window, percent of one core.
    pub cpu_percent: f64,
    /// Its own written memory (Private_Dirty) gained since before its observers came,
    /// per subscribed observer.
    pub bytes_per_connection: f64,
    /// Its observers' deliveries over (committed x its subscribed observers).
    pub delivered_ratio: f64,
    /// Its observers' commit-to-receipt lag, median, milliseconds.
    pub lag_p50_ms: f64,
    /// The same, 99th percentile.
    pub lag_p99_ms: f64,
    /// Its write calls (`writev`/`send` that wrote something) per second in the window.
    pub writes_per_second: f64,
    /// Microseconds of its CPU per write call (all of its work over its writes).
    pub cpu_us_per_write: f64,
}

/// The big-final benchmark's result.
#[derive(Debug, Clone, Serialize)]
pub struct BigFinalReport {
    /// Always `"bigfinal"`.
    pub bench: &'static str,
    /// Observers asked for.
    pub observers: usize,
    /// Front-end processes.
    pub frontends: usize,
    /// Changes per second asked for.
    pub rate: u64,
    /// Bytes per change.
    pub payload_bytes: usize,
    /// How often each observer pinged, in milliseconds.
    pub observer_ping_ms: u128,
    /// How often each observer worker thread polled its connections at most, in
    /// milliseconds (0: at every arrival).
    pub observer_poll_ms: f64,
    /// Observers subscribed (snapshot received) in all.
    pub subscribed: usize,
    /// Seconds from the first observer process started to the last one ready.
    pub seconds_to_subscribe: f64,
    /// Measured seconds.
    pub seconds: f64,
    /// Changes the world committed in the window.
    pub committed: u64,
    /// Deliveries counted (from the window's start until [`SETTLE`] after the world
    /// stopped) over (committed in the window x subscribed): at or a little over 1 when
    /// every observer got every batch (commits just before the window that arrive in it
    /// count too), under 1 when batches never came or took longer than that.
    pub delivered_ratio: f64,
    /// Commit-to-receipt lag of every delivery in the window.
    pub lag: Percentiles,
    /// Game links lost (a front-end disconnected from the game server) from the first
    /// observer to the end.
    pub game_links_lost: u64,
    /// Snapshots the observers got after their first (resyncs: slow observers, or queued
    /// batches the front-end coalesced into the latest state).
    pub resyncs: u64,
    /// Of those, snapshots in the window carrying a timestamped state (their age counts in
    /// `lag`; a coalesced observer gets fewer deliveries, so `delivered_ratio` may be
    /// under 1 while every replica converges).
    pub states: u64,
    /// Observers whose newest state was the world's last commit (their replica equals the
    /// game's state: one key changes), [`SETTLE`] after the world stopped or, if some were
    /// not there yet, once all were or [`CONVERGE_WITHIN`] passed.
    pub converged: u64,
    /// Seconds from the world's last commit to the census that found `converged`.
    pub seconds_to_converge: f64,
    /// The longest time between two of the world's commits in the window (the tick is
    /// 1 / `rate`): a longer one is the harness's game held up (the box is shared), and
    /// shows in `state_age`, not in `lag`.
    pub longest_commit_gap_ms: f64,
    /// How stale the observers' replicas were: the age of the newest state each held
    /// (now minus its commit time), sampled over every observer every 100 ms while the
    /// world changed. Unlike `lag` it counts the time between deliveries (a coalesced observer
    /// gets fewer); it includes up to one tick (1 / `rate`) before the next commit.
    pub state_age: Percentiles,
    /// Error frames observers got.
    pub server_errors: u64,
    /// Observer connections the front-ends closed.
    pub closed_connections: u64,
    /// Per front-end.
    pub per_frontend: Vec<FrontendFigures>,
    /// The game server's process (this harness: the game, the publisher and the harness's
    /// idle threads) CPU over the window, percent of one core.
    pub game_cpu_percent: f64,
    /// Bytes the game server wrote per front-end link per second in the window, over the
    /// links that lasted the whole window; `None` when none did (it is then unknown, not
    /// zero).
    pub game_bytes_per_link_per_second: Option<f64>,
    /// The same with one observer on one front-end: the game server's cost of a link with
    /// a single subscriber (the concentrator's promise: the same at any scale).
    pub game_bytes_per_link_per_second_one_observer: Option<f64>,
    /// Every observer subscribed, no game link lost, every observer converged to the
    /// game's final state, lag and state age p99 at most 1 s.
    pub meets_target: bool,
    /// The floor with the same observers, run after the front-ends (`--floor`): the
    /// freshest replicas one TCP connection per observer allows on this machine.
    pub floor: Option<crate::floor::FloorFigures>,
}

/// Runs the benchmark (front-ends and observers in processes started by `launcher`), then
/// the floor if asked for (every process of the first part gone by then).
pub fn run_bigfinal(
    config: &BigFinalConfig,
    launcher: &WorkerLauncher,
) -> Result<BigFinalReport, BenchError> {
    let mut report = run_frontends(config, launcher)?;
    if config.floor {
        report.floor = Some(crate::floor::run_floor(config, launcher)?);
    }
    Ok(report)
}

/// The big final proper: the game server, the front-ends and their observers.
fn run_frontends(
    config: &BigFinalConfig,
    launcher: &WorkerLauncher,
) -> Result<BigFinalReport, BenchError> {
    if config.observers == 0 || config.frontends == 0 {
        return Err(BenchError::InvalidConfig(
            "--observers and --frontends must be above 0".into(),
        ));
    }
    if config.frontends > 64 {
        return Err(BenchError::InvalidConfig("at most 64 front-ends".into()));
    }
    if !(config.seconds.is_finite() && config.seconds > 0.0 && config.seconds <= 3600.0) {
        return Err(BenchError::InvalidConfig(
            "--seconds must be in (0, 3600]".into(),
        ));
    }
    if config.rate == 0 || config.rate > 10_000 {
        return Err(BenchError::InvalidConfig(
            "--rate must be in [1, 10000]".into(),
        ));
    }
    if config.payload_len < crate::lean::TIMESTAMP_LEN {
        return Err(BenchError::InvalidConfig(
            "the payload must hold an 8-byte timestamp".into(),
        ));
    }
    let ticks = clock_ticks_per_second();
    let game = Arc::new(BenchGame::start(WORLD, false, 1)?);
    let mut frontends = Vec::new();
    for _ in 0..config.frontends {
        let frontend = FrontendWorker::start_coalescing(
            launcher,
            game.addr(),
            config.coalesce_above,
            config.observer_ping.map(client_idle_timeout_for),
        )?;
        frontend.wait_for_world(WORLD, Duration::from_secs(30))?;
        frontends.push(frontend);
    }
    let publishing = PublisherThread::start(
        Box::new(FlotillaPublisher::new(
            Arc::clone(&game),
            config.payload_len,
        )),
        Some(config.rate),
    )?;

    // The concentrator's baseline: one observer on the first front-end.
    let one = measure_link_bytes(&game, launcher, &frontends[0], 2.0)?;
    match one {
        Some(bytes) => {
            eprintln!("bigfinal: one observer: the game server writes {bytes:.0} B/s per link");
        }
        None => eprintln!("bigfinal: one observer: no game link lasted the measurement"),
    }

    let lost_before = game.frontends_lost.load(Ordering::Relaxed);
    let memory_before = frontends
        .iter()
        .map(|f| read_memory(f.worker.pid()))
        .collect::<Result<Vec<_>, _>>()?;
    let started = Instant::now();
    let mut groups: Vec<(usize, ObserverGroup)> = Vec::new();
    let mut shares = Vec::new();
    let mut subscribed_per_frontend = Vec::new();
    for (index, frontend) in frontends.iter().enumerate() {
        let share = observer_share(config, index);
        shares.push(share);
        if share == 0 {
            subscribed_per_frontend.push(0);
            continue;
        }
        let spec = observer_spec(config, frontend.addr, share);
        let (group, counts) = ObserverGroup::start(launcher, &spec)?;
        eprintln!(
            "bigfinal: front-end {index}: {} connected, {} subscribed, {} failed, after {:.1} s",
            counts.connected,
            counts.subscribed,
            counts.failed,
            started.elapsed().as_secs_f64()
        );
        subscribed_per_frontend.push(counts.subscribed);
        groups.push((index, group));
    }
    let seconds_to_subscribe = started.elapsed().as_secs_f64();
    let subscribed: usize = subscribed_per_frontend.iter().sum();

    // Settle, then measure.
    std::thread::sleep(Duration::from_secs(1));
    for (_, group) in &mut groups {
        group.start_measuring()?;
    }
    let game_before = game.server.stats();
    let published_before = publishing.published();
    let game_cpu = CpuMeter::start(std::process::id(), ticks)?;
    let frontend_cpu = frontends
        .iter()
        .map(|f| CpuMeter::start(f.worker.pid(), ticks))
        .collect::<Result<Vec<_>, _>>()?;
    let writes_before = frontends
        .iter_mut()
        .map(FrontendWorker::write_calls)
        .collect::<Result<Vec<_>, _>>()?;
    let window = Instant::now();
    let _ = publishing.take_longest_gap();
    std::thread::sleep(Duration::from_secs_f64(config.seconds));
    let longest_commit_gap_ms = publishing.take_longest_gap().as_secs_f64() * 1000.0;
    // The window ends with the world: the last commits are then given time to reach every
    // observer before the observers stop counting, so that a delivery ratio under 1 means
    // batches that never came, not batches still on their way. (Deliveries of commits made
    // just before the window are counted too: a complete run is at or a little over 1.)
    let elapsed = window.elapsed().as_secs_f64();
    let committed = publishing.published() - published_before;
    let game_after = game.server.stats();
    let game_cpu_percent = game_cpu.percent()?;
    let frontend_cpu_percent = frontend_cpu
        .iter()
        .map(CpuMeter::percent)
        .collect::<Result<Vec<_>, _>>()?;
    let writes_per_second = frontends
        .iter_mut()
        .zip(&writes_before)
        .map(|(frontend, before)| {
            frontend
                .write_calls()
                .map(|after| after.saturating_sub(*before) as f64 / elapsed)
        })
        .collect::<Result<Vec<_>, _>>()?;
    publishing.finish()?;
    let stopped = Instant::now();
    for (_, group) in &mut groups {
        group.stop_sampling()?;
    }
    // The world's final state: the last commit's timestamp, at the front of its value.
    let final_ns = game
        .world
        .get(b"k")
        .and_then(|value| {
            value
                .get(..8)
                .and_then(|stamp| <[u8; 8]>::try_from(stamp).ok())
        })
        .map(u64::from_be_bytes);
    // Deliveries are counted for SETTLE after the last commit; meanwhile (and after, if
    // some observers are still behind) a census every 250 ms finds when every observer
    // holds the final state.
    let converged_now = |seen: &std::collections::BTreeMap<u64, u64>| {
        final_ns
            .and_then(|stamp| seen.get(&stamp).copied())
            .unwrap_or(0)
    };
    let mut converged;
    let mut converged_after: Option<f64> = None;
    let mut counting = true;
    let mut reports = Vec::new();
    let mut per_frontend_totals: Vec<Option<ReportTotals>> =
        (0..frontends.len()).map(|_| None).collect();
    loop {
        let mut seen = std::collections::BTreeMap::new();
        for (_, group) in &mut groups {
            for (stamp, observers) in group.census()? {
                *seen.entry(stamp).or_default() += observers;
            }
        }
        converged = converged_now(&seen);
        if converged >= subscribed as u64 && converged_after.is_none() {
            converged_after = Some(stopped.elapsed().as_secs_f64());
        }
        if counting && stopped.elapsed() >= SETTLE {
            counting = false;
            for (index, group) in &mut groups {
                let group_reports = group.stop_measuring()?;
                if let Some(slot) = per_frontend_totals.get_mut(*index) {
                    *slot = Some(ReportTotals::of(&group_reports));
                }
                reports.extend(group_reports);
            }
        }
        if !counting && (converged_after.is_some() || stopped.elapsed() >= CONVERGE_WITHIN) {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let seconds_to_converge = converged_after.unwrap_or_else(|| stopped.elapsed().as_secs_f64());
    let mut per_frontend = Vec::new();
    for (index, frontend) in frontends.iter().enumerate() {
        let after = read_memory(frontend.worker.pid())?;
        let gained = after
            .private_dirty
            .saturating_sub(memory_before[index].private_dirty);
        let subscribed = subscribed_per_frontend[index];
        let (delivered_ratio, lag_p50_ms, lag_p99_ms) = match &per_frontend_totals[index] {
            Some(totals) => {
                let lag = totals.histogram.percentiles();
                (
                    totals.delivered as f64 / (committed as f64 * subscribed.max(1) as f64),
                    lag.p50_us / 1000.0,
                    lag.p99_us / 1000.0,
                )
            }
            None => (0.0, 0.0, 0.0),
        };
        per_frontend.push(FrontendFigures {
            observers: shares[index],
            subscribed,
            cpu_percent: frontend_cpu_percent[index],
            bytes_per_connection: gained as f64 / subscribed.max(1) as f64,
            delivered_ratio,
            lag_p50_ms,
            lag_p99_ms,
            writes_per_second: writes_per_second[index],
            cpu_us_per_write: cpu_us_per(frontend_cpu_percent[index], writes_per_second[index]),
        });
    }
    let game_links_lost = game.frontends_lost.load(Ordering::Relaxed) - lost_before;

    let ReportTotals {
        histogram,
        delivered,
        resyncs,
        server_errors: errors,
        closed,
        states,
        state_age,
        ..
    } = ReportTotals::of(&reports);
    let state_age = state_age.percentiles();
    let expected = committed as f64 * subscribed as f64;
    let delivered_ratio = if expected > 0.0 {
        delivered as f64 / expected
    } else {
        0.0
    };
    let lag = histogram.percentiles();
    let per_link = link_deltas(&game_before, &game_after);
    let game_bytes_per_link_per_second = (!per_link.is_empty())
        .then(|| per_link.iter().sum::<u64>() as f64 / per_link.len() as f64 / elapsed);
    let meets_target = subscribed == config.observers
        && game_links_lost == 0
        && converged == subscribed as u64
        && lag.p99_us <= 1_000_000.0
        && state_age.p99_us <= 1_000_000.0;
    eprintln!(
        "bigfinal: {subscribed} of {} subscribed in {seconds_to_subscribe:.1} s; delivered {:.2}% \
         (+{states} latest states); {converged} converged {seconds_to_converge:.1} s after the \
         last commit; lag p50 {:.0} ms, p99 {:.0} ms; state age p50 {:.0} ms, p99 {:.0} ms; \
         {game_links_lost} game links lost",
        config.observers,
        delivered_ratio * 100.0,
        lag.p50_us / 1000.0,
        lag.p99_us / 1000.0,
        state_age.p50_us / 1000.0,
        state_age.p99_us / 1000.0
    );
    drop(groups);
    Ok(BigFinalReport {
        bench: "bigfinal",
        observer_ping_ms: config
            .observer_ping
            .unwrap_or(crate::observe::KEEPALIVE_EVERY)
            .as_millis(),
        observer_poll_ms: config.observer_poll.as_secs_f64() * 1000.0,
        observers: config.observers,
        frontends: config.frontends,
        rate: config.rate,
        payload_bytes: config.payload_len,
        subscribed,
        seconds_to_subscribe,
        seconds: elapsed,
        committed,
        delivered_ratio,
        lag,
        game_links_lost,
        resyncs,
        states,
        converged,
        seconds_to_converge,
        longest_commit_gap_ms,
        state_age,
        server_errors: errors,
        closed_connections: closed,
        per_frontend,
        game_cpu_percent,
        game_bytes_per_link_per_second,
        game_bytes_per_link_per_second_one_observer: one,
        meets_target,
        floor: None,
    })
}

/// The observers of the `index`th of `config.frontends` servers: an even share.
pub(crate) fn observer_share(config: &BigFinalConfig, index: usize) -> usize {
    config.observers / config.frontends + usize::from(index < config.observers % config.frontends)
}

/// The big final's observers of one server: `count` of them, paced as `config` says.
pub(crate) fn observer_spec(
    config: &BigFinalConfig,
    server: std::net::SocketAddr,
    count: usize,
) -> GroupSpec {
    GroupSpec {
        transport: crate::transport::Transport::Tcp,
        ca: None,
        ping_every: config.observer_ping,
        poll_every: config.observer_poll,
        protocol: Protocol::Flotilla,
        server,
        target: WORLD.into(),
        count,
        per_process: config.per_process,
        threads: 1,
    }
}

/// Microseconds of CPU per write of a process at `cpu_percent` (of one core) writing
/// `writes_per_second`; 0 when it wrote nothing.
pub(crate) fn cpu_us_per(cpu_percent: f64, writes_per_second: f64) -> f64 {
    if writes_per_second > 0.0 {
        cpu_percent / 100.0 / writes_per_second * 1e6
    } else {
        0.0
    }
}

/// The bytes per second the game server writes to each front-end link while one observer
/// watches the world on `frontend` (for `seconds`); `None` when no link lasted the window.
fn measure_link_bytes(
    game: &BenchGame,
    launcher: &WorkerLauncher,
    frontend: &FrontendWorker,
    seconds: f64,
) -> Result<Option<f64>, BenchError> {
    let spec = GroupSpec {
        transport: crate::transport::Transport::Tcp,
        ca: None,
        ping_every: None,
        poll_every: Duration::ZERO,
        protocol: Protocol::Flotilla,
        server: frontend.addr,
        target: WORLD.into(),
        count: 1,
        per_process: 1,
        threads: 1,
    };
    let (group, counts) = ObserverGroup::start(launcher, &spec)?;
    if counts.subscribed != 1 {
        return Err(BenchError::Worker(
            "the single observer did not subscribe".into(),
        ));
    }
    let before = game.server.stats();
    let window = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let after = game.server.stats();
    let elapsed = window.elapsed().as_secs_f64();
    drop(group);
    // The observer's front-end's link is the busiest (the others may still be subscribed
    // after their probe, or not).
    let busiest = link_deltas(&before, &after).into_iter().max();
    Ok(busiest.map(|bytes| bytes as f64 / elapsed))
}

/// The bytes written to each front-end link present in both `before` and `after`.
fn link_deltas(before: &flotilla_game::GameStats, after: &flotilla_game::GameStats) -> Vec<u64> {
    after
        .frontends
        .iter()
        .filter_map(|link| {
            before
                .frontends
                .iter()
                .find(|b| b.frontend == link.frontend)
                .map(|b| link.bytes_sent.saturating_sub(b.bytes_sent))
        })
        .collect()
}
