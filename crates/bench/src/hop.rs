//! `flotilla bench hop`: the round trip input -> game server -> output through one
//! front-end, against the same echo sent directly to the game server, in one run.
//!
//! - The game server (flotilla-game, in this process on its own runtime) echoes every
//!   input as an output to the same session.
//! - The front-end runs in a worker process of its own.
//! - **Via the front-end**: a client connection (`Hello`, then `Input` frames; the
//!   answer is an `Output` frame).
//! - **Direct**: a connection to the game server itself, speaking the front-end's side of
//!   the game link (`GameHello`, `SessionOpened`, then `SessionInput` frames; the answer
//!   is a `SessionOutput` frame). Same game server code, same framing, same payload,
//!   one hop fewer: the closest equivalent of "the same echo, directly".
//! - The measuring side is one thread with two blocking std sockets (TCP_NODELAY) and the
//!   same frame decoder on both; requests alternate between the paths (direct first on
//!   even requests, via the front-end first on odd ones), so drift affects both alike.
//! - **Rounds**: the measured requests are split into [`HopConfig::rounds`] rounds, each
//!   interleaved as above, with ratios per round. This box's latency is bimodal (whole
//!   stretches of a run are fast or slow, for both paths alike but not always at once),
//!   so the report also gives the median over rounds of the per-round p50 and p99
//!   ratios, which one unlucky stretch cannot move; the targets are judged on them.
//! - **Placements**: the whole measurement runs once per [`Placement`]. `one-core` pins
//!   every party (this thread, the game server's runtime, the front-end's process) to one
//!   CPU, so that every wake-up on both paths is a same-CPU context switch; `free` lets
//!   the scheduler place them. On a 2-vCPU virtual machine the direct path's two parties
//!   share a vCPU either way, but the front-end path's three cannot, and a wake-up on
//!   another, halted vCPU costs tens of microseconds in the hypervisor (see
//!   [`crate::affinity`]): unpinned, the ratio measures that, not the hop. The targets
//!   are judged on the first placement run (`one-core` by default); every placement's
//!   figures are in the report.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flotilla_wire::{
    ClientToFrontend, Decoder, FrameType, FrontendToClient, FrontendToGame, GameToFrontend,
    Message, PROTOCOL_VERSION, SessionId, WorldId,
};
use serde::Serialize;

use crate::BenchError;
use crate::affinity::{PinnedThread, allowed_cpus};
use crate::game_side::BenchGame;
use crate::stats::{LatencyHistogram, Percentiles, ratio};
use crate::workers::{FrontendWorker, WorkerLauncher};

/// The session id the direct client claims on the game link (front-ends draw theirs at
/// random; a collision is practically impossible).
const DIRECT_SESSION: SessionId = SessionId(0xbe9c_0000_0000_0001);

/// Settings of the hop benchmark.
#[derive(Debug, Clone)]
pub struct HopConfig {
    /// Measured requests per path.
    pub requests: usize,
    /// Unmeasured requests per path first.
    pub warmup: usize,
    /// Payload bytes per request (at least 8: a request counter).
    pub payload_len: usize,
    /// Rounds the measured requests are split into (each has its own ratios).
    pub rounds: usize,
    /// The placements to measure, in order; the targets are judged on the first.
    pub placements: Vec<Placement>,
}

impl Default for HopConfig {
    fn default() -> Self {
        Self {
            requests: 20_000,
            warmup: 1_000,
            payload_len: 64,
            rounds: 5,
            placements: vec![Placement::OneCore, Placement::Free],
        }
    }
}

/// Where the parties of a hop measurement run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Placement {
    /// The measuring thread, the game server and the front-end all on one CPU.
    OneCore,
    /// Wherever the scheduler puts them.
    Free,
}

/// The hop benchmark's result: one run per placement.
#[derive(Debug, Clone, Serialize)]
pub struct HopReport {
    /// Always `"hop"`.
    pub bench: &'static str,
    /// Measured requests per path and placement.
    pub requests: usize,
    /// Payload bytes per request.
    pub payload_bytes: usize,
    /// How the two paths were scheduled.
    pub schedule: &'static str,
    /// The placement the targets are judged on (the first one run).
    pub judged_on: Placement,
    /// Median ratio at most 2.2 and p99 ratio at most 3.0 in the `judged_on` run.
    pub meets_targets: bool,
    /// One run per placement, in the order measured.
    pub runs: Vec<HopRun>,
}

/// The figures of one placement.
#[derive(Debug, Clone, Serialize)]
pub struct HopRun {
    /// Where the parties ran.
    pub placement: Placement,
    /// The CPU every party was pinned to (`one-core` only).
    pub cpu: Option<usize>,
    /// Round trips sent directly to the game server.
    pub direct: Percentiles,
    /// Round trips through the front-end.
    pub via_frontend: Percentiles,
    /// via_frontend p50 / direct p50.
    pub ratio_p50: f64,
    /// via_frontend p90 / direct p90.
    pub ratio_p90: f64,
    /// via_frontend p99 / direct p99.
    pub ratio_p99: f64,
    /// Median ratio at most 2.2 and p99 ratio at most 3.0, judged on the medians over
    /// rounds (`median_ratio_p50`, `median_ratio_p99`).
    pub meets_targets: bool,
    /// Rounds run.
    pub rounds: usize,
    /// The figures of each round.
    pub per_round: Vec<HopRound>,
    /// The median over rounds of the per-round p50 ratios.
    pub median_ratio_p50: f64,
    /// The median over rounds of the per-round p99 ratios.
    pub median_ratio_p99: f64,
    /// The targets judged on the ratios of all requests pooled (`ratio_p50`,
    /// `ratio_p99`).
    pub pooled_meets_targets: bool,
}

/// The figures of one round of the hop benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct HopRound {
    /// Round number, from 0.
    pub round: usize,
    /// Measured requests per path in this round.
    pub requests: usize,
    /// Direct p50, microseconds.
    pub direct_p50_us: f64,
    /// Direct p99, microseconds.
    pub direct_p99_us: f64,
    /// Via the front-end p50, microseconds.
    pub via_frontend_p50_us: f64,
    /// Via the front-end p99, microseconds.
    pub via_frontend_p99_us: f64,
    /// via_frontend p50 / direct p50 in this round.
    pub ratio_p50: f64,
    /// via_frontend p99 / direct p99 in this round.
    pub ratio_p99: f64,
}

/// The median of `values` (the mean of the middle two for an even count); `None` when
/// empty or when a value is not a number.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.iter().any(|value| value.is_nan()) {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        len if len % 2 == 1 => sorted.get(middle).copied(),
        _ => Some((sorted.get(middle - 1)? + sorted.get(middle)?) / 2.0),
    }
}

/// Meets the hop targets: median ratio at most 2.2, p99 ratio at most 3.0.
fn meets_hop_targets(ratio_p50: f64, ratio_p99: f64) -> bool {
    ratio_p50 <= 2.2 && ratio_p99 <= 3.0
}

/// Measured requests of round `round` out of `rounds`: `requests` split as evenly as
/// possible (the first rounds take the remainder).
fn requests_in_round(requests: usize, rounds: usize, round: usize) -> usize {
    let rounds = rounds.max(1);
    requests / rounds + usize::from(round < requests % rounds)
}

/// One blocking connection that sends a request frame and waits for its echo.
pub(crate) struct EchoLink {
    stream: TcpStream,
    decoder: Decoder,
    buf: Vec<u8>,
    reply: FrameType,
    /// Encodes a pong for a ping nonce, in this link's direction.
    pong: fn(u64) -> Bytes,
    /// The payload of a reply frame.
    payload_of: fn(&flotilla_wire::RawFrame) -> Result<Bytes, BenchError>,
}

impl EchoLink {
    pub(crate) fn connect(
        addr: SocketAddr,
        hello: &[u8],
        reply: FrameType,
    ) -> Result<Self, BenchError> {
        let mut stream =
            TcpStream::connect(addr).map_err(BenchError::io(format!("connecting to {addr}")))?;
        stream
            .set_nodelay(true)
            .map_err(BenchError::io("setting TCP_NODELAY"))?;
        stream
            .write_all(hello)
            .map_err(BenchError::io("sending the hello"))?;
        let (pong, payload_of): (fn(u64) -> Bytes, _) = if reply == FrameType::Output {
            (
                |nonce| ClientToFrontend::Pong { nonce }.encode_to_bytes(),
                client_payload as fn(&flotilla_wire::RawFrame) -> Result<Bytes, BenchError>,
            )
        } else {
            (
                |nonce| FrontendToGame::Pong { nonce }.encode_to_bytes(),
                game_payload as fn(&flotilla_wire::RawFrame) -> Result<Bytes, BenchError>,
            )
        };
        Ok(Self {
            stream,
            decoder: Decoder::default(),
            buf: vec![0; 64 * 1024],
            reply,
            pong,
            payload_of,
        })
    }

    /// Reads until a frame of type `wanted` arrives (answering pings), or `Ok(false)` when
    /// the socket's read timeout expires first.
    fn wait_for(&mut self, wanted: FrameType, counter: Option<u64>) -> Result<bool, BenchError> {
        loop {
            while let Some(frame) = self
                .decoder
                .next_frame()
                .map_err(|e| BenchError::Protocol(e.to_string()))?
            {
                let frame_type = frame.frame_type();
                if frame_type == wanted {
                    match counter {
                        None => return Ok(true),
                        Some(expected) => {
                            let payload = (self.payload_of)(&frame)?;
                            if payload.get(..8) == Some(expected.to_be_bytes().as_slice()) {
                                return Ok(true);
                            }
                            // A late echo of an earlier (retried) request: skip it.
                        }
                    }
                } else if frame_type == FrameType::Ping {
                    let nonce = frame
                        .body()
                        .get(..8)
                        .and_then(|n| <[u8; 8]>::try_from(n).ok())
                        .map(u64::from_be_bytes)
                        .unwrap_or(0);
                    self.stream
                        .write_all(&(self.pong)(nonce))
                        .map_err(BenchError::io("answering a ping"))?;
                } else if frame_type == FrameType::Error {
                    let said = match FrontendToClient::decode(&frame) {
                        Ok(FrontendToClient::Error { code, text }) => format!("{code:?}: {text}"),
                        _ => format!("{} bytes", frame.len()),
                    };
                    return Err(BenchError::Protocol(format!(
                        "the server sent an error frame ({said})"
                    )));
                }
            }
            match self.stream.read(&mut self.buf) {
                Ok(0) => return Err(BenchError::Protocol("connection closed".into())),
                Ok(n) => self.decoder.feed(self.buf.get(..n).unwrap_or_default()),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(false);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(BenchError::io("reading an echo")(e)),
            }
        }
    }

    /// Sends `request` and waits for the echo of `counter`; returns the round trip.
    pub(crate) fn round_trip(
        &mut self,
        request: &[u8],
        counter: u64,
    ) -> Result<Duration, BenchError> {
        let start = Instant::now();
        self.stream
            .write_all(request)
            .map_err(BenchError::io("sending a request"))?;
        if self.wait_for(self.reply, Some(counter))? {
            Ok(start.elapsed())
        } else {
            Err(BenchError::Timeout(format!("no echo of request {counter}")))
        }
    }
    /// For a client connection to a front-end (hello sent): waits for the welcome, then
    /// probes with inputs for `world` until one is echoed (the front-end has connected to
    /// the game server and learnt the world), within 15 s.
    pub(crate) fn route_first(
        &mut self,
        world: &WorldId,
        payload_len: usize,
    ) -> Result<(), BenchError> {
        self.stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(BenchError::io("setting a read timeout"))?;
        if !self.wait_for(FrameType::Welcome, None)? {
            return Err(BenchError::Timeout("no Welcome from the front-end".into()));
        }
        self.stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(BenchError::io("setting a read timeout"))?;
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut probe = u64::MAX;
        loop {
            let request = ClientToFrontend::Input {
                world: world.clone(),
                payload: request_payload(probe, payload_len),
            }
            .encode_to_bytes();
            self.stream
                .write_all(&request)
                .map_err(BenchError::io("probing the front-end"))?;
            if self.wait_for(FrameType::Output, Some(probe))? {
                break;
            }
            if Instant::now() >= deadline {
                return Err(BenchError::Timeout(
                    "the front-end never routed an input to the game server".into(),
                ));
            }
            probe -= 1;
        }
        self.stream
            .set_read_timeout(None)
            .map_err(BenchError::io("clearing the read timeout"))
    }
}

fn client_payload(frame: &flotilla_wire::RawFrame) -> Result<Bytes, BenchError> {
    match FrontendToClient::decode(frame) {
        Ok(FrontendToClient::Output { payload, .. }) => Ok(payload),
        Ok(_) => Err(BenchError::Protocol("not an Output".into())),
        Err(e) => Err(BenchError::Protocol(e.to_string())),
    }
}

fn game_payload(frame: &flotilla_wire::RawFrame) -> Result<Bytes, BenchError> {
    match GameToFrontend::decode(frame) {
        Ok(GameToFrontend::Output { payload, .. }) => Ok(payload),
        Ok(_) => Err(BenchError::Protocol("not a SessionOutput".into())),
        Err(e) => Err(BenchError::Protocol(e.to_string())),
    }
}

pub(crate) fn request_payload(counter: u64, len: usize) -> Bytes {
    let mut payload = vec![0u8; len.max(8)];
    if let Some(head) = payload.get_mut(..8) {
        head.copy_from_slice(&counter.to_be_bytes());
    }
    Bytes::from(payload)
}

/// Runs the hop benchmark once per placement (front-end in a worker process started by
/// `launcher`).
pub fn run_hop(config: &HopConfig, launcher: &WorkerLauncher) -> Result<HopReport, BenchError> {
    let Some(&judged_on) = config.placements.first() else {
        return Err(BenchError::InvalidConfig(
            "at least one placement is needed".into(),
        ));
    };
    check_config(config)?;
    let mut runs = Vec::with_capacity(config.placements.len());
    for &placement in &config.placements {
        let run = match placement {
            Placement::Free => run_placement(config, launcher, placement, None)?,
            Placement::OneCore => {
                // The last CPU this thread may use: CPU 0 usually takes more interrupts.
                let cpu = allowed_cpus()?
                    .last()
                    .copied()
                    .ok_or_else(|| BenchError::InvalidConfig("no CPU is allowed".into()))?;
                // Pinned from before the game server's runtime starts (its threads
                // inherit the mask) until after it is dropped.
                let pinned = PinnedThread::pin(cpu)?;
                let run = run_placement(config, launcher, placement, Some(pinned.cpu()))?;
                drop(pinned);
                run
            }
        };
        runs.push(run);
    }
    let meets_targets = runs
        .first()
        .is_some_and(|run| run.placement == judged_on && run.meets_targets);
    Ok(HopReport {
        bench: "hop",
        requests: config.requests,
        payload_bytes: config.payload_len.max(8),
        schedule: "interleaved (alternating which path goes first)",
        judged_on,
        meets_targets,
        runs,
    })
}

fn check_config(config: &HopConfig) -> Result<(), BenchError> {
    if config.requests == 0 {
        return Err(BenchError::InvalidConfig(
            "--requests must be above 0".into(),
        ));
    }
    if config.rounds == 0 || config.rounds > config.requests {
        return Err(BenchError::InvalidConfig(
            "--rounds must be between 1 and --requests".into(),
        ));
    }
    Ok(())
}

/// One measurement with the parties placed as `placement` says; `cpu` is the CPU the
/// calling thread is pinned to, if any (the front-end worker is pinned to it too).
fn run_placement(
    config: &HopConfig,
    launcher: &WorkerLauncher,
    placement: Placement,
    cpu: Option<usize>,
) -> Result<HopRun, BenchError> {
    let game = BenchGame::start("echo", true, 1)?;
    let world: WorldId = game.world_id.clone();
    eprintln!(
        "hop ({}): game server on {}",
        placement_name(placement, cpu),
        game.addr()
    );
    // Back-to-back round trips are far above a player's input budget: none here.
    let frontend = FrontendWorker::start_on(launcher, game.addr(), cpu, true)?;
    eprintln!(
        "hop: front-end on {} (pid {})",
        frontend.addr,
        frontend.worker.pid()
    );

    // Via the front-end: hello, welcome, then wait until inputs are routed (the
    // front-end has connected to the game server and learnt the world).
    let hello = ClientToFrontend::Hello {
        version: PROTOCOL_VERSION,
        session_token: None,
        client_name: "bench-hop".into(),
    }
    .encode_to_bytes();
    let mut via = EchoLink::connect(frontend.addr, &hello, FrameType::Output)?;
    via.route_first(&world, config.payload_len)?;
    let via_request = |counter: u64| {
        ClientToFrontend::Input {
            world: world.clone(),
            payload: request_payload(counter, config.payload_len),
        }
        .encode_to_bytes()
    };

    // Direct: this process plays the front-end's side of the game link.
    let mut direct_hello = FrontendToGame::Hello {
        version: PROTOCOL_VERSION,
        frontend_id: "bench-direct".into(),
    }
    .encode_to_bytes()
    .to_vec();
    direct_hello.extend_from_slice(
        &FrontendToGame::SessionOpened {
            session: DIRECT_SESSION,
            client_name: "bench-hop-direct".into(),
        }
        .encode_to_bytes(),
    );
    let mut direct = EchoLink::connect(game.addr(), &direct_hello, FrameType::SessionOutput)?;
    direct
        .stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(BenchError::io("setting a read timeout"))?;
    if !direct.wait_for(FrameType::GameWelcome, None)? {
        return Err(BenchError::Timeout(
            "no GameWelcome from the game server".into(),
        ));
    }
    direct
        .stream
        .set_read_timeout(None)
        .map_err(BenchError::io("clearing the read timeout"))?;
    let direct_request = |counter: u64| {
        FrontendToGame::Input {
            world: world.clone(),
            session: DIRECT_SESSION,
            payload: request_payload(counter, config.payload_len),
        }
        .encode_to_bytes()
    };

    eprintln!(
        "hop: {} warm-up + {} measured requests per path in {} rounds, interleaved",
        config.warmup, config.requests, config.rounds
    );
    let mut direct_histogram = LatencyHistogram::new();
    let mut via_histogram = LatencyHistogram::new();
    let mut counter: u64 = 0;
    let mut one_request = |measure: Option<(&mut LatencyHistogram, &mut LatencyHistogram)>|
     -> Result<(), BenchError> {
        let (direct_frame, via_frame) = (direct_request(counter), via_request(counter));
        let (d, v) = if counter.is_multiple_of(2) {
            let d = direct.round_trip(&direct_frame, counter)?;
            (d, via.round_trip(&via_frame, counter)?)
        } else {
            let v = via.round_trip(&via_frame, counter)?;
            (direct.round_trip(&direct_frame, counter)?, v)
        };
        counter += 1;
        if let Some((direct_round, via_round)) = measure {
            direct_round.record(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
            via_round.record(u64::try_from(v.as_nanos()).unwrap_or(u64::MAX));
        }
        Ok(())
    };
    for _ in 0..config.warmup {
        one_request(None)?;
    }
    let mut per_round = Vec::with_capacity(config.rounds);
    for round in 0..config.rounds {
        let requests = requests_in_round(config.requests, config.rounds, round);
        let mut direct_round = LatencyHistogram::new();
        let mut via_round = LatencyHistogram::new();
        for _ in 0..requests {
            one_request(Some((&mut direct_round, &mut via_round)))?;
        }
        direct_histogram.merge(&direct_round);
        via_histogram.merge(&via_round);
        let (d, v) = (direct_round.percentiles(), via_round.percentiles());
        let figures = HopRound {
            round,
            requests,
            direct_p50_us: d.p50_us,
            direct_p99_us: d.p99_us,
            via_frontend_p50_us: v.p50_us,
            via_frontend_p99_us: v.p99_us,
            ratio_p50: ratio(v.p50_us, d.p50_us)?,
            ratio_p99: ratio(v.p99_us, d.p99_us)?,
        };
        eprintln!(
            "hop: round {round}: p50 {:.1} / {:.1} us (ratio {:.2}), p99 {:.1} / {:.1} us (ratio {:.2})",
            figures.via_frontend_p50_us,
            figures.direct_p50_us,
            figures.ratio_p50,
            figures.via_frontend_p99_us,
            figures.direct_p99_us,
            figures.ratio_p99
        );
        per_round.push(figures);
    }
    drop(frontend);
    drop(game);

    let direct = direct_histogram.percentiles();
    let via_frontend = via_histogram.percentiles();
    let ratio_p50 = ratio(via_frontend.p50_us, direct.p50_us)?;
    let ratio_p90 = ratio(via_frontend.p90_us, direct.p90_us)?;
    let ratio_p99 = ratio(via_frontend.p99_us, direct.p99_us)?;
    let round_ratios = |pick: fn(&HopRound) -> f64| {
        median(&per_round.iter().map(pick).collect::<Vec<_>>())
            .ok_or_else(|| BenchError::Protocol("no round ratios to take a median of".into()))
    };
    let median_ratio_p50 = round_ratios(|round| round.ratio_p50)?;
    let median_ratio_p99 = round_ratios(|round| round.ratio_p99)?;
    Ok(HopRun {
        placement,
        cpu,
        direct,
        via_frontend,
        ratio_p50,
        ratio_p90,
        ratio_p99,
        meets_targets: meets_hop_targets(median_ratio_p50, median_ratio_p99),
        rounds: config.rounds,
        per_round,
        median_ratio_p50,
        median_ratio_p99,
        pooled_meets_targets: meets_hop_targets(ratio_p50, ratio_p99),
    })
}

fn placement_name(placement: Placement, cpu: Option<usize>) -> String {
    match (placement, cpu) {
        (Placement::OneCore, Some(cpu)) => format!("every party on CPU {cpu}"),
        (Placement::OneCore, None) => "one core".into(),
        (Placement::Free, _) => "placed by the scheduler".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_round_ratios_ignores_one_outlier() {
        assert_eq!(median(&[2.0, 9.0, 2.1, 1.9, 2.05]), Some(2.05));
        assert_eq!(median(&[3.0, 1.0]), Some(2.0));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[1.0, f64::NAN]), None);
    }

    #[test]
    fn requests_are_split_over_rounds_without_loss() {
        for (requests, rounds) in [(20_000, 5), (7, 3), (5, 5), (1, 1)] {
            let split: Vec<usize> = (0..rounds)
                .map(|round| requests_in_round(requests, rounds, round))
                .collect();
            assert_eq!(split.iter().sum::<usize>(), requests);
            let (min, max) = (split.iter().min(), split.iter().max());
            assert!(max.zip(min).is_some_and(|(max, min)| max - min <= 1));
        }
    }

    #[test]
    fn targets_need_both_ratios() {
        assert!(meets_hop_targets(2.2, 3.0));
        assert!(!meets_hop_targets(2.3, 2.0));
        assert!(!meets_hop_targets(2.0, 3.1));
    }
}
