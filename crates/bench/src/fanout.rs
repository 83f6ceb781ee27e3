//! `flotilla bench fanout`: one world, N observers, 100-byte changes, at a fixed rate and
//! at saturation, through a flotilla front-end and through nats-server, measured by the
//! same harness.
//!
//! Layout (the same on both sides):
//!
//! - **Server under test** in its own process: a front-end worker (connected to the game
//!   server) or nats-server. Its CPU (utime + stime from `/proc/PID/stat`) is measured
//!   over the window.
//! - **Publisher** in this process: the flotilla game server committing one batch per
//!   change (one upsert of a 100-byte value), or a raw NATS socket sending
//!   `PUB fanout 100`. The value starts with the publish time (CLOCK_REALTIME, ns).
//! - **Observers** in worker processes (at most `per_process` connections each, each
//!   process connecting from its own 127.0.0.x), one TCP connection per observer, read
//!   by the same `mio` loop and the lean decoders of [`crate::lean`].
//!
//! Fixed rate: the publisher paces itself (one change per write). Saturation: the
//! publisher goes as fast as it can: the NATS publisher writes 64 messages per `write`
//! on a blocking socket (TCP pushes back); the game server queues each commit for its
//! writer task and the publisher keeps at most [`SATURATION_WINDOW`] batches not yet
//! written to the front-end's socket (the game SDK closes a front-end link whose queue
//! passes 64 MiB, so an unbounded publisher would measure that, not fan-out).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::BenchError;
use crate::game_side::BenchGame;
use crate::lean::{Protocol, payload, unix_now_ns};
use crate::observe::{ObserverReport, ReportTotals};
use crate::procstat::{CpuMeter, clock_ticks_per_second};
use crate::stats::Percentiles;
use crate::transport::Transport;
use crate::workers::{FrontendWorker, GroupSpec, ObserverGroup, WorkerLauncher};

/// At saturation, the most batches committed but not yet written to the front-end.
pub const SATURATION_WINDOW: u64 = 4096;

/// The world / subject name.
const TARGET: &str = "fanout";

/// Messages per write of the NATS publisher at saturation.
const NATS_BATCH: usize = 64;

/// Settings of the fan-out benchmark.
#[derive(Debug, Clone)]
pub struct FanoutConfig {
    /// Observer counts to run.
    pub observers: Vec<usize>,
    /// Changes per second at the fixed rate; `None`: `deliveries_per_second / N`.
    pub rate: Option<u64>,
    /// Total deliveries per second aimed at by the fixed rate when `rate` is `None`.
    pub deliveries_per_second: u64,
    /// Measured seconds per run.
    pub seconds: f64,
    /// Seconds of publishing before each measurement window.
    pub warmup_seconds: f64,
    /// Bytes of each change's value / message payload.
    pub payload_len: usize,
    /// Observer connections per worker process at most.
    pub per_process: usize,
    /// Reader threads per observer process.
    pub threads: usize,
    /// Which systems to run.
    pub systems: Vec<Protocol>,
    /// How flotilla's observers reach the front-end (NATS always uses TCP). Every one runs
    /// against a fresh front-end; the TLS and WebSocket ones are compared with TCP.
    pub transports: Vec<Transport>,
}

impl Default for FanoutConfig {
    fn default() -> Self {
        Self {
            observers: vec![1_000, 10_000],
            rate: None,
            deliveries_per_second: 1_000_000,
            seconds: 5.0,
            warmup_seconds: 1.0,
            payload_len: 100,
            per_process: 5_000,
            threads: 1,
            systems: vec![Protocol::Flotilla, Protocol::Nats],
            transports: vec![Transport::Tcp],
        }
    }
}

/// Fixed rate or saturation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The publisher paces itself.
    Fixed,
    /// The publisher goes as fast as it can.
    Saturation,
}

/// The figures of one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunFigures {
    /// flotilla or nats.
    pub system: Protocol,
    /// How the observers reached the server.
    pub transport: Transport,
    /// Observers (connections) asked for.
    pub observers: usize,
    /// Observers connected and subscribed before the run.
    pub subscribed: usize,
    /// Fixed rate or saturation.
    pub mode: Mode,
    /// Changes per second asked for (fixed rate only).
    pub offered_rate: Option<u64>,
    /// Changes published per second during the window.
    pub published_per_second: f64,
    /// Changes delivered per second, summed over observers.
    pub delivered_per_second: f64,
    /// delivered / (published x subscribed observers).
    pub delivery_ratio: f64,
    /// Publish-to-receive latency.
    pub latency: Percentiles,
    /// CPU of the server process (front-end or nats-server), % of one core.
    pub server_cpu_percent: f64,
    /// CPU of this process (publisher; for flotilla also the game server), % of one core.
    pub publisher_cpu_percent: f64,
    /// CPU of the observer processes together, % of one core.
    pub observers_cpu_percent: f64,
    /// flotilla: snapshots received after the first (slow observers resynced).
    pub resyncs: u64,
    /// Error frames / `-ERR` lines received by observers.
    pub server_errors: u64,
    /// Observer connections the server closed (since connecting).
    pub closed_connections: u64,
}

/// flotilla against NATS for one observer count.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Observers.
    pub observers: usize,
    /// flotilla saturation delivered/s divided by NATS's.
    pub saturation_throughput_ratio: f64,
    /// flotilla's p99 at the fixed rate, microseconds.
    pub fixed_p99_flotilla_us: f64,
    /// NATS's p99 at the fixed rate, microseconds.
    pub fixed_p99_nats_us: f64,
    /// flotilla delivered at least as much at saturation.
    pub meets_throughput_target: bool,
    /// flotilla's fixed-rate p99 no worse than NATS's.
    pub meets_latency_target: bool,
}

/// flotilla over TLS or WebSocket against flotilla over raw TCP, for one observer count.
#[derive(Debug, Clone, Serialize)]
pub struct TransportComparison {
    /// Observers.
    pub observers: usize,
    /// tls, ws or wss.
    pub transport: Transport,
    /// Delivered per second at saturation, this transport / TCP.
    pub saturation_throughput_ratio: f64,
    /// Front-end CPU per delivered batch at saturation, this transport / TCP.
    pub saturation_cpu_per_delivery_ratio: f64,
    /// Front-end CPU per delivered batch at the fixed rate, this transport / TCP.
    pub fixed_cpu_per_delivery_ratio: f64,
    /// The fixed rate's p99, this transport and TCP, microseconds.
    pub fixed_p99_us: f64,
    /// TCP's fixed-rate p99, microseconds.
    pub fixed_p99_tcp_us: f64,
    /// At most 1.5x TCP's front-end CPU per delivered batch, at both rates.
    pub meets_cpu_target: bool,
}

/// The fan-out benchmark's result.
#[derive(Debug, Clone, Serialize)]
pub struct FanoutReport {
    /// Always `"fanout"`.
    pub bench: &'static str,
    /// Bytes per change value / message payload.
    pub payload_bytes: usize,
    /// Measured seconds per run.
    pub seconds: f64,
    /// Every run.
    pub runs: Vec<RunFigures>,
    /// flotilla against NATS, per observer count (when both ran).
    pub comparisons: Vec<Comparison>,
    /// flotilla over TLS and WebSocket against raw TCP (when they ran).
    pub transport_comparisons: Vec<TransportComparison>,
}

/// Publishes one change at a time.
pub(crate) trait Publisher: Send {
    /// Publishes a change stamped `now_ns`.
    fn publish(&mut self, now_ns: u64) -> Result<(), BenchError>;
    /// Publishes a burst of changes as fast as allowed (saturation); returns how many.
    fn publish_burst(&mut self) -> Result<u64, BenchError>;
}

/// Commits changes to the bench game's world.
pub(crate) struct FlotillaPublisher {
    game: Arc<BenchGame>,
    payload_len: usize,
}

impl FlotillaPublisher {
    /// Commits `payload_len`-byte values (stamped with their commit time) to `game`'s world.
    pub(crate) fn new(game: Arc<BenchGame>, payload_len: usize) -> Self {
        Self { game, payload_len }
    }
}

impl Publisher for FlotillaPublisher {
    fn publish(&mut self, now_ns: u64) -> Result<(), BenchError> {
        let mut tx = self.game.world.begin();
        tx.set("k", payload(now_ns, self.payload_len));
        tx.commit()
            .map_err(|e| BenchError::Server(format!("commit: {e}")))?;
        Ok(())
    }

    fn publish_burst(&mut self) -> Result<u64, BenchError> {
        let stats = self.game.server.stats();
        let backlog = stats.batches_committed.saturating_sub(stats.batches_sent);
        if backlog >= SATURATION_WINDOW {
            // The window is full: wait for the game server to write some (never spin
            // here, on a small box a spinning publisher steals the front-end's core).
            std::thread::sleep(Duration::from_millis(1));
            return Ok(0);
        }
        let burst = (SATURATION_WINDOW - backlog).min(64);
        for _ in 0..burst {
            self.publish(unix_now_ns())?;
        }
        Ok(burst)
    }
}

struct NatsPublisher {
    stream: TcpStream,
    header: Vec<u8>,
    payload_len: usize,
    buf: Vec<u8>,
}

impl NatsPublisher {
    fn connect(server: SocketAddr, payload_len: usize) -> Result<Self, BenchError> {
        let mut stream =
            TcpStream::connect(server).map_err(BenchError::io("connecting to nats-server"))?;
        stream
            .set_nodelay(true)
            .map_err(BenchError::io("setting TCP_NODELAY"))?;
        stream
            .write_all(
                b"CONNECT {\"verbose\":false,\"pedantic\":false,\"name\":\"bench-publisher\"}\r\n",
            )
            .map_err(BenchError::io("sending CONNECT"))?;
        // Answer the server's pings and drop the rest (INFO), on a thread of its own.
        let mut reader = stream
            .try_clone()
            .map_err(BenchError::io("cloning the publisher socket"))?;
        let mut writer = stream
            .try_clone()
            .map_err(BenchError::io("cloning the publisher socket"))?;
        std::thread::Builder::new()
            .name("nats-publisher-reader".into())
            .spawn(move || {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = reader.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if buf
                        .get(..n)
                        .is_some_and(|b| b.windows(4).any(|w| w == b"PING"))
                    {
                        let _ = writer.write_all(b"PONG\r\n");
                    }
                }
            })
            .map_err(BenchError::io("spawning the publisher reader"))?;
        Ok(Self {
            stream,
            header: format!("PUB {TARGET} {payload_len}\r\n").into_bytes(),
            payload_len,
            buf: Vec::with_capacity(NATS_BATCH * (payload_len + 32)),
        })
    }

    fn append(&mut self, now_ns: u64) {
        self.buf.extend_from_slice(&self.header);
        self.buf
            .extend_from_slice(&payload(now_ns, self.payload_len));
        self.buf.extend_from_slice(b"\r\n");
    }

    fn flush(&mut self) -> Result<(), BenchError> {
        self.stream
            .write_all(&self.buf)
            .map_err(BenchError::io("publishing to nats-server"))?;
        self.buf.clear();
        Ok(())
    }
}

impl Publisher for NatsPublisher {
    fn publish(&mut self, now_ns: u64) -> Result<(), BenchError> {
        self.append(now_ns);
        self.flush()
    }

    fn publish_burst(&mut self) -> Result<u64, BenchError> {
        for _ in 0..NATS_BATCH {
            self.append(unix_now_ns());
        }
        self.flush()?;
        Ok(NATS_BATCH as u64)
    }
}

/// A publisher thread: runs until told to stop, counting what it published.
pub(crate) struct PublisherThread {
    stop: Arc<AtomicBool>,
    published: Arc<AtomicU64>,
    /// The longest time between two commits at a fixed rate, in microseconds.
    longest_gap_us: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<Result<(), BenchError>>>,
}

impl PublisherThread {
    /// Starts publishing `rate` changes a second (as fast as allowed with `None`).
    pub(crate) fn start(
        mut publisher: Box<dyn Publisher>,
        rate: Option<u64>,
    ) -> Result<Self, BenchError> {
        let stop = Arc::new(AtomicBool::new(false));
        let published = Arc::new(AtomicU64::new(0));
        let longest_gap_us = Arc::new(AtomicU64::new(0));
        let (stop_flag, count, gap) = (
            Arc::clone(&stop),
            Arc::clone(&published),
            Arc::clone(&longest_gap_us),
        );
        let thread = std::thread::Builder::new()
            .name("bench-publisher".into())
            .spawn(move || -> Result<(), BenchError> {
                match rate {
                    Some(rate) => {
                        let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
                        let mut next = Instant::now();
                        let mut last: Option<Instant> = None;
                        while !stop_flag.load(Ordering::Relaxed) {
                            let now = Instant::now();
                            if now < next {
                                std::thread::sleep(next - now);
                            }
                            publisher.publish(unix_now_ns())?;
                            let published_at = Instant::now();
                            if let Some(last) = last {
                                let us = (published_at - last).as_micros() as u64;
                                gap.fetch_max(us, Ordering::Relaxed);
                            }
                            last = Some(published_at);
                            count.fetch_add(1, Ordering::Relaxed);
                            next += interval;
                        }
                    }
                    None => {
                        while !stop_flag.load(Ordering::Relaxed) {
                            let n = publisher.publish_burst()?;
                            count.fetch_add(n, Ordering::Relaxed);
                        }
                    }
                }
                Ok(())
            })
            .map_err(BenchError::io("spawning the publisher"))?;
        Ok(Self {
            stop,
            published,
            longest_gap_us,
            thread: Some(thread),
        })
    }

    /// Changes published so far.
    pub(crate) fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// The longest time between two commits so far at a fixed rate (the publisher itself
    /// held up: a starved harness), and restarts the measure.
    pub(crate) fn take_longest_gap(&self) -> Duration {
        Duration::from_micros(self.longest_gap_us.swap(0, Ordering::Relaxed))
    }

    /// Stops publishing; the publisher's error, if it failed.
    pub(crate) fn finish(mut self) -> Result<(), BenchError> {
        self.stop.store(true, Ordering::SeqCst);
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(BenchError::Server("the publisher thread panicked".into())),
            None => Ok(()),
        }
    }
}

impl Drop for PublisherThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What stays up across the two runs of one system and observer count.
struct Setup {
    transport: Transport,
    // Field order = drop order: observers first, then the server, then the game.
    observers: ObserverGroup,
    subscribed: usize,
    server_pid: u32,
    _frontend: Option<FrontendWorker>,
    _nats: Option<flotilla_testkit::NatsServer>,
    game: Option<Arc<BenchGame>>,
    nats_addr: Option<SocketAddr>,
}

fn set_up(
    system: Protocol,
    transport: Transport,
    count: usize,
    config: &FanoutConfig,
    launcher: &WorkerLauncher,
    pki: Option<&flotilla_testkit::TestPki>,
) -> Result<Setup, BenchError> {
    let (server, server_pid, frontend, nats, game) = match system {
        Protocol::Flotilla => {
            let game = Arc::new(BenchGame::start(TARGET, false, 1)?);
            // Every batch to every observer, as nats-server delivers every message.
            let frontend = FrontendWorker::start_every_batch(launcher, game.addr(), pki)?;
            frontend.wait_for_world(TARGET, Duration::from_secs(20))?;
            let (addr, pid) = (frontend.addr_for(transport)?, frontend.worker.pid());
            (addr, pid, Some(frontend), None, Some(game))
        }
        Protocol::Nats => {
            let nats = flotilla_testkit::NatsServer::start()
                .map_err(|e| BenchError::Nats(e.to_string()))?;
            let pid = nats
                .pid()
                .ok_or_else(|| BenchError::Nats("no pid".into()))?;
            (nats.addr(), pid, None, Some(nats), None)
        }
    };
    let spec = GroupSpec {
        transport,
        ca: pki.map(|pki| pki.ca_pem_path().to_owned()),
        ping_every: None,
        poll_every: Duration::ZERO,
        protocol: system,
        server,
        target: TARGET.into(),
        count,
        per_process: config.per_process,
        threads: config.threads,
    };
    let (observers, counts) = ObserverGroup::start(launcher, &spec)?;
    eprintln!(
        "fanout: {system:?} over {} x {count}: {} connected, {} subscribed, {} failed",
        transport.name(),
        counts.connected,
        counts.subscribed,
        counts.failed
    );
    if counts.subscribed == 0 {
        return Err(BenchError::Worker("no observer got subscribed".into()));
    }
    Ok(Setup {
        transport,
        observers,
        subscribed: counts.subscribed,
        server_pid,
        _frontend: frontend,
        _nats: nats,
        nats_addr: (system == Protocol::Nats).then_some(server),
        game,
    })
}

fn measure(
    setup: &mut Setup,
    system: Protocol,
    count: usize,
    mode: Mode,
    config: &FanoutConfig,
) -> Result<RunFigures, BenchError> {
    let offered_rate = match mode {
        Mode::Fixed => Some(
            config
                .rate
                .unwrap_or_else(|| (config.deliveries_per_second / count.max(1) as u64).max(1)),
        ),
        Mode::Saturation => None,
    };
    let publisher: Box<dyn Publisher> = match (system, &setup.game, setup.nats_addr) {
        (Protocol::Flotilla, Some(game), _) => Box::new(FlotillaPublisher {
            game: Arc::clone(game),
            payload_len: config.payload_len,
        }),
        (Protocol::Nats, _, Some(addr)) => {
            Box::new(NatsPublisher::connect(addr, config.payload_len)?)
        }
        _ => return Err(BenchError::Server("setup does not match the system".into())),
    };
    let ticks = clock_ticks_per_second();
    let publishing = PublisherThread::start(publisher, offered_rate)?;
    std::thread::sleep(Duration::from_secs_f64(config.warmup_seconds));
    setup.observers.start_measuring()?;
    let published_before = publishing.published();
    let server_cpu = CpuMeter::start(setup.server_pid, ticks)?;
    let own_cpu = CpuMeter::start(std::process::id(), ticks)?;
    let observer_cpu = setup
        .observers
        .pids()
        .into_iter()
        .map(|pid| CpuMeter::start(pid, ticks))
        .collect::<Result<Vec<_>, _>>()?;
    let window = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(config.seconds));
    let reports: Vec<ObserverReport> = setup.observers.stop_measuring()?;
    let elapsed = window.elapsed().as_secs_f64();
    let published = publishing.published() - published_before;
    let server_cpu_percent = server_cpu.percent()?;
    let publisher_cpu_percent = own_cpu.percent()?;
    let observers_cpu_percent = observer_cpu
        .iter()
        .map(CpuMeter::percent)
        .sum::<Result<f64, _>>()?;
    publishing.finish()?;
    // Let queues drain before the next run.
    std::thread::sleep(Duration::from_millis(1500));

    let ReportTotals {
        histogram,
        delivered,
        resyncs,
        server_errors: errors,
        closed,
        measured_seconds: measured,
        ..
    } = ReportTotals::of(&reports);
    let measured = if measured > 0.0 { measured } else { elapsed };
    let expected = published as f64 * setup.subscribed as f64;
    let figures = RunFigures {
        system,
        transport: setup.transport,
        observers: count,
        subscribed: setup.subscribed,
        mode,
        offered_rate,
        published_per_second: published as f64 / elapsed,
        delivered_per_second: delivered as f64 / measured,
        delivery_ratio: if expected > 0.0 {
            delivered as f64 / expected
        } else {
            0.0
        },
        latency: histogram.percentiles(),
        server_cpu_percent,
        publisher_cpu_percent,
        observers_cpu_percent,
        resyncs,
        server_errors: errors,
        closed_connections: closed,
    };
    eprintln!(
        "fanout: {system:?} over {} x {count} {mode:?}: {:.0} delivered/s, p50 {:.0} us, p99 {:.0} us, server CPU {:.0}%",
        setup.transport.name(),
        figures.delivered_per_second,
        figures.latency.p50_us,
        figures.latency.p99_us,
        figures.server_cpu_percent
    );
    Ok(figures)
}

/// Runs the fan-out benchmark (servers and observers in processes started by
/// `launcher`; nats-server from the system, installed if needed).
pub fn run_fanout(
    config: &FanoutConfig,
    launcher: &WorkerLauncher,
) -> Result<FanoutReport, BenchError> {
    if config.observers.is_empty() || config.observers.contains(&0) {
        return Err(BenchError::InvalidConfig(
            "observer counts must be above 0".into(),
        ));
    }
    if !(config.seconds.is_finite() && config.seconds > 0.0 && config.seconds <= 600.0) {
        return Err(BenchError::InvalidConfig(
            "--seconds must be in (0, 600]".into(),
        ));
    }
    if !(config.warmup_seconds.is_finite() && (0.0..=60.0).contains(&config.warmup_seconds)) {
        return Err(BenchError::InvalidConfig(
            "warm-up must be in [0, 60] s".into(),
        ));
    }
    if config.payload_len < crate::lean::TIMESTAMP_LEN {
        return Err(BenchError::InvalidConfig(
            "payload must hold an 8-byte timestamp".into(),
        ));
    }
    if config.rate == Some(0) || config.deliveries_per_second == 0 {
        return Err(BenchError::InvalidConfig("rates must be above 0".into()));
    }
    if config.transports.is_empty() {
        return Err(BenchError::InvalidConfig("no transport to run".into()));
    }
    let edge = config
        .transports
        .iter()
        .any(|transport| *transport != Transport::Tcp);
    let pki = if edge {
        Some(flotilla_testkit::TestPki::generate().map_err(|e| BenchError::Server(e.to_string()))?)
    } else {
        None
    };
    let mut runs = Vec::new();
    for &count in &config.observers {
        for &system in &config.systems {
            let transports = match system {
                Protocol::Flotilla => config.transports.clone(),
                Protocol::Nats => vec![Transport::Tcp],
            };
            for transport in transports {
                let mut setup = set_up(system, transport, count, config, launcher, pki.as_ref())?;
                for mode in [Mode::Fixed, Mode::Saturation] {
                    runs.push(measure(&mut setup, system, count, mode, config)?);
                }
            }
        }
    }
    let find_over = |system, transport, count, mode| {
        runs.iter().find(|r: &&RunFigures| {
            r.system == system && r.transport == transport && r.observers == count && r.mode == mode
        })
    };
    let find = |system, count, mode| find_over(system, Transport::Tcp, count, mode);
    let mut comparisons = Vec::new();
    for &count in &config.observers {
        let (Some(ff), Some(fs), Some(nf), Some(ns)) = (
            find(Protocol::Flotilla, count, Mode::Fixed),
            find(Protocol::Flotilla, count, Mode::Saturation),
            find(Protocol::Nats, count, Mode::Fixed),
            find(Protocol::Nats, count, Mode::Saturation),
        ) else {
            continue;
        };
        let throughput = if ns.delivered_per_second > 0.0 {
            fs.delivered_per_second / ns.delivered_per_second
        } else {
            f64::INFINITY
        };
        comparisons.push(Comparison {
            observers: count,
            saturation_throughput_ratio: throughput,
            fixed_p99_flotilla_us: ff.latency.p99_us,
            fixed_p99_nats_us: nf.latency.p99_us,
            meets_throughput_target: throughput >= 1.0,
            meets_latency_target: ff.latency.p99_us <= nf.latency.p99_us,
        });
    }
    let cpu_per_delivery = |run: &RunFigures| {
        if run.delivered_per_second > 0.0 {
            run.server_cpu_percent / run.delivered_per_second
        } else {
            f64::INFINITY
        }
    };
    let mut transport_comparisons = Vec::new();
    for &count in &config.observers {
        for &transport in &config.transports {
            let (Some(tf), Some(ts), Some(ff), Some(fs)) = (
                find(Protocol::Flotilla, count, Mode::Fixed),
                find(Protocol::Flotilla, count, Mode::Saturation),
                find_over(Protocol::Flotilla, transport, count, Mode::Fixed),
                find_over(Protocol::Flotilla, transport, count, Mode::Saturation),
            ) else {
                continue;
            };
            if transport == Transport::Tcp {
                continue;
            }
            let saturation_cpu = cpu_per_delivery(fs) / cpu_per_delivery(ts);
            let fixed_cpu = cpu_per_delivery(ff) / cpu_per_delivery(tf);
            transport_comparisons.push(TransportComparison {
                observers: count,
                transport,
                saturation_throughput_ratio: fs.delivered_per_second / ts.delivered_per_second,
                saturation_cpu_per_delivery_ratio: saturation_cpu,
                fixed_cpu_per_delivery_ratio: fixed_cpu,
                fixed_p99_us: ff.latency.p99_us,
                fixed_p99_tcp_us: tf.latency.p99_us,
                meets_cpu_target: saturation_cpu <= 1.5 && fixed_cpu <= 1.5,
            });
        }
    }
    Ok(FanoutReport {
        bench: "fanout",
        payload_bytes: config.payload_len,
        seconds: config.seconds,
        runs,
        comparisons,
        transport_comparisons,
    })
}
