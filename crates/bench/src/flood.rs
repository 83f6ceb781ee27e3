//! `flotilla bench flood`: one player's round trip through a front-end while another
//! client floods the same front-end with inputs, against the same round trip unloaded,
//! in one run.
//!
//! - The game server (flotilla-game, in this process) echoes every input as an output to
//!   its session; the front-end runs in a worker process of its own, with its defaults
//!   (among them the per-connection input budget: 2,000 inputs a second, bursts of
//!   2,000).
//! - **The player**: one blocking connection sending one input and waiting for its echo,
//!   [`FloodConfig::requests`] times per phase, at most [`FloodConfig::player_rate`] a
//!   second (a busy player, within the budget that stops the flooder).
//! - **The flooder**: a thread with its own connection, from an address of its own, that
//!   sends input frames as fast as it can (`flat-out`, from 127.0.0.2) or paced under the
//!   budget (`paced`, at [`FloodConfig::paced_rate`], from 127.0.0.3); another thread
//!   reads and discards its echoes. When the front-end closes it (its input budget) or
//!   refuses it (its address flooded), it reconnects at once and floods again: an
//!   attacker does not give up.
//! - **Phases**, one after another: unloaded, flat-out flood, paced flood. The figure is
//!   the player's p99 under each flood against its unloaded p99; the target (issue 10) is
//!   at most 2x.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use flotilla_wire::{ClientToFrontend, FrameType, Message, PROTOCOL_VERSION, WorldId};
use serde::Serialize;

use crate::BenchError;
use crate::game_side::BenchGame;
use crate::hop::{EchoLink, request_payload};
use crate::stats::{LatencyHistogram, Percentiles, ratio};
use crate::workers::{FrontendWorker, WorkerLauncher};

/// Settings of the flood benchmark.
#[derive(Debug, Clone)]
pub struct FloodConfig {
    /// The player's measured round trips per phase.
    pub requests: usize,
    /// Its unmeasured round trips first.
    pub warmup: usize,
    /// Payload bytes of every input (the player's and the flooder's).
    pub payload_len: usize,
    /// The paced flooder's inputs a second: 80% of the front-end's default budget.
    pub paced_rate: u64,
    /// The player's round trips a second at most (half the default budget).
    pub player_rate: u64,
}

impl Default for FloodConfig {
    fn default() -> Self {
        Self {
            requests: 5_000,
            warmup: 500,
            payload_len: 64,
            paced_rate: 1_600,
            player_rate: 1_000,
        }
    }
}

/// One phase: the player's round trips while the flooder did what it did.
#[derive(Debug, Clone, Serialize)]
pub struct FloodPhase {
    /// `unloaded`, `flat-out` or `paced`.
    pub flooder: String,
    /// The player's round trips.
    pub round_trip: Percentiles,
    /// Inputs the flooder wrote into its sockets during the phase (also into connections
    /// the front-end was refusing: written is not received).
    pub flood_inputs: u64,
    /// Its inputs a second over the phase.
    pub flood_inputs_per_second: f64,
    /// Times the front-end closed or refused the flooder's connection, or left its
    /// connection attempt unanswered for a second (it tried again each time).
    pub flooder_closed: u64,
    /// The phase's length in seconds.
    pub seconds: f64,
}

/// The report of `flotilla bench flood`.
#[derive(Debug, Clone, Serialize)]
pub struct FloodReport {
    /// `"flood"`.
    pub bench: &'static str,
    /// Unloaded, flat-out, paced.
    pub phases: Vec<FloodPhase>,
    /// The player's p99 under the flat-out flood over its unloaded p99.
    pub p99_ratio_flat_out: f64,
    /// The same under the paced flood.
    pub p99_ratio_paced: f64,
    /// Both ratios at most 2.
    pub meets_targets: bool,
}

/// What the flooder threads count.
#[derive(Default)]
struct FloodCounters {
    inputs: AtomicU64,
    closed: AtomicU64,
}

/// Floods `addr` with inputs for `world` until `stop`: `rate` inputs a second, or as fast
/// as the socket takes them (`None`); reconnects whenever the front-end closes it.
fn flood(
    source: std::net::IpAddr,
    addr: SocketAddr,
    world: WorldId,
    payload_len: usize,
    rate: Option<u64>,
    stop: Arc<AtomicBool>,
    counters: Arc<FloodCounters>,
) {
    const PER_WRITE: u64 = 256;
    let mut batch = BytesMut::new();
    for n in 0..PER_WRITE {
        ClientToFrontend::Input {
            world: world.clone(),
            payload: request_payload(u64::MAX - n, payload_len),
        }
        .encode(&mut batch);
    }
    let hello = ClientToFrontend::Hello {
        version: PROTOCOL_VERSION,
        session_token: None,
        client_name: "bench-flooder".into(),
    }
    .encode_to_bytes();
    let started = Instant::now();
    let mut sent: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = connect_from(source, addr) else {
            // Refused, or no answer at all (a front-end whose kernel drops the flooder's
            // address): counted, and tried again at once.
            counters.closed.fetch_add(1, Ordering::Relaxed);
            thread::sleep(Duration::from_millis(5));
            continue;
        };
        let _ = stream.set_nodelay(true);
        // A front-end that stops reading a connection it closed must not hang the flooder.
        let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
        if stream.write_all(&hello).is_err() {
            continue;
        }
        // Read and discard everything (welcome, echoes), so that only the input budget
        // can stop this connection.
        let reader = stream.try_clone().ok().map(|mut reader| {
            thread::spawn(move || {
                let mut buf = vec![0u8; 256 * 1024];
                while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
            })
        });
        while !stop.load(Ordering::Relaxed) {
            if let Some(rate) = rate {
                // Paced: never ahead of `rate` since the flood began.
                let due = started.elapsed().as_secs_f64() * rate as f64;
                if (sent as f64) >= due {
                    thread::sleep(Duration::from_micros(500));
                    continue;
                }
            }
            if stream.write_all(&batch).is_err() {
                counters.closed.fetch_add(1, Ordering::Relaxed);
                break;
            }
            sent += PER_WRITE;
            counters.inputs.fetch_add(PER_WRITE, Ordering::Relaxed);
        }
        let _ = stream.shutdown(std::net::Shutdown::Both);
        if let Some(reader) = reader {
            let _ = reader.join();
        }
    }
}

/// Connects to `addr` from `source` (any port), giving up after [`CONNECT_WAIT`] (an
/// attacker does not wait for the kernel's SYN retries either).
fn connect_from(source: std::net::IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(source, 0).into())?;
    socket.connect_timeout(&addr.into(), CONNECT_WAIT)?;
    Ok(socket.into())
}

/// How long the flooder waits for a connection to be accepted.
const CONNECT_WAIT: Duration = Duration::from_secs(1);

/// Runs the three phases (front-end in a worker process started by `launcher`).
pub fn run_flood(
    config: &FloodConfig,
    launcher: &WorkerLauncher,
) -> Result<FloodReport, BenchError> {
    if config.requests == 0 {
        return Err(BenchError::InvalidConfig(
            "--requests must be above 0".into(),
        ));
    }
    let game = BenchGame::start("echo", true, 1)?;
    let world: WorldId = game.world_id.clone();
    let frontend = FrontendWorker::start(launcher, game.addr())?;
    eprintln!(
        "flood: game server on {}, front-end on {} (pid {})",
        game.addr(),
        frontend.addr,
        frontend.worker.pid()
    );
    let hello = ClientToFrontend::Hello {
        version: PROTOCOL_VERSION,
        session_token: None,
        client_name: "bench-player".into(),
    }
    .encode_to_bytes();
    let mut player = EchoLink::connect(frontend.addr, &hello, FrameType::Output)?;
    player.route_first(&world, config.payload_len)?;
    let request = |counter: u64| {
        ClientToFrontend::Input {
            world: world.clone(),
            payload: request_payload(counter, config.payload_len),
        }
        .encode_to_bytes()
    };
    let mut counter: u64 = 0;
    let spacing = Duration::from_secs_f64(1.0 / config.player_rate.max(1) as f64);
    let mut next_at = Instant::now();
    let mut pace = || {
        next_at += spacing;
        let now = Instant::now();
        if next_at > now {
            thread::sleep(next_at - now);
        } else {
            next_at = now;
        }
    };
    for _ in 0..config.warmup {
        counter += 1;
        pace();
        player.round_trip(&request(counter), counter)?;
    }
    let mut phases = Vec::new();
    // Each flooder from an address of its own (the player is on 127.0.0.1): the
    // front-end refuses a flooder's address for a while once it closed it.
    let flat_out_source = std::net::IpAddr::from([127, 0, 0, 2]);
    let paced_source = std::net::IpAddr::from([127, 0, 0, 3]);
    for (name, rate) in [
        ("unloaded", None),
        ("flat-out", Some((flat_out_source, None))),
        ("paced", Some((paced_source, Some(config.paced_rate)))),
    ] {
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(FloodCounters::default());
        let flooder = rate.map(|(source, rate)| {
            let (stop, counters, world) = (Arc::clone(&stop), Arc::clone(&counters), world.clone());
            let (addr, len) = (frontend.addr, config.payload_len);
            thread::spawn(move || flood(source, addr, world, len, rate, stop, counters))
        });
        if flooder.is_some() {
            // Let the flood get going before measuring.
            thread::sleep(Duration::from_millis(300));
        }
        let started = Instant::now();
        let inputs_before = counters.inputs.load(Ordering::Relaxed);
        let closed_before = counters.closed.load(Ordering::Relaxed);
        let mut histogram = LatencyHistogram::new();
        for _ in 0..config.requests {
            counter += 1;
            pace();
            let rtt = player.round_trip(&request(counter), counter)?;
            histogram.record(u64::try_from(rtt.as_nanos()).unwrap_or(u64::MAX));
        }
        let seconds = started.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        if let Some(flooder) = flooder {
            let _ = flooder.join();
        }
        let flood_inputs = counters.inputs.load(Ordering::Relaxed) - inputs_before;
        let phase = FloodPhase {
            flooder: name.to_owned(),
            round_trip: histogram.percentiles(),
            flood_inputs,
            flood_inputs_per_second: flood_inputs as f64 / seconds.max(1e-9),
            flooder_closed: counters.closed.load(Ordering::Relaxed) - closed_before,
            seconds,
        };
        eprintln!(
            "flood: {name}: player p50 {:.0} us, p99 {:.0} us; flooder {:.0} inputs/s, closed {} times",
            phase.round_trip.p50_us,
            phase.round_trip.p99_us,
            phase.flood_inputs_per_second,
            phase.flooder_closed
        );
        phases.push(phase);
    }
    let unloaded = phases[0].round_trip.p99_us;
    let p99_ratio_flat_out = ratio(phases[1].round_trip.p99_us, unloaded)?;
    let p99_ratio_paced = ratio(phases[2].round_trip.p99_us, unloaded)?;
    Ok(FloodReport {
        bench: "flood",
        phases,
        p99_ratio_flat_out,
        p99_ratio_paced,
        meets_targets: p99_ratio_flat_out <= 2.0 && p99_ratio_paced <= 2.0,
    })
}
