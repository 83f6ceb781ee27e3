//! `flotilla bench logd`: the log service against rsyslog (and ripgrep), side by side in
//! one run, with the figures of the log-service issue:
//!
//! 1. **ingest**: syslog-ng's `loggen` (TCP, RFC 5424, octet counting, ~200-byte messages,
//!    2 connections, N seconds) into rsyslog (imptcp → omfile) and into a `flotilla logd`
//!    process; every message must be in rsyslog's file and, for logd, counted back by a
//!    query. logd's resident memory is sampled meanwhile.
//! 2. **durable ingest over RELP**: the same RELP load (window 128, 2 connections) into
//!    rsyslog (imrelp → omfile) and into logd (acknowledged after the fsync); the time until
//!    every message is acknowledged.
//! 3. **query and disk**: M realistic messages (varied hosts, apps, templates, a unique
//!    request id each) sent to both; then bytes on disk per message, and rare-token
//!    queries (one unique id each) through logd's HTTP API against `rg -F -w` over rsyslog's
//!    file; a query bounded in time, with the number of segments it read.
//! 4. **three nodes** (`--peers`) holding M messages each against one node holding M: the
//!    same queries through one node ([`nodes`]).
//! 5. **fleet view and alerts** on 10,000 services (heartbeats every 10 s, boots,
//!    traffic): ingest rate and CPU with them against `--no-watch`, interleaved rounds;
//!    crash message → alert in a real Alertmanager ([`fleet`]).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flotilla_relp::{RelpClientConfig, RelpClientEvent, RelpClientSession};
use flotilla_testkit::{LoggenOptions, LoggenTransport, Rsyslog, RsyslogSink};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::BenchError;

pub mod fleet;
pub mod nodes;

pub use fleet::{FleetBenchConfig, FleetFigures, FleetRound};
pub use nodes::{NodeQueryFigures, NodesBenchConfig, NodesFigures};

/// What to run.
#[derive(Debug, Clone)]
pub struct LogdBenchConfig {
    /// The `flotilla` binary (logd runs as `flotilla logd`).
    pub flotilla: PathBuf,
    /// Seconds of loggen per target and round.
    pub ingest_seconds: u64,
    /// Interleaved ingest rounds (rsyslog, logd, rsyslog, logd, ...).
    pub ingest_rounds: usize,
    /// loggen connections.
    pub connections: usize,
    /// loggen message size.
    pub message_size: usize,
    /// RELP messages per target.
    pub relp_messages: u64,
    /// Realistic messages stored for the query and disk figures.
    pub query_messages: u64,
    /// Rare-token queries timed (each for a different id).
    pub queries: usize,
    /// Seed of the realistic generator.
    pub seed: u64,
    /// Services of the fleet part (0: no fleet part).
    pub fleet_services: usize,
    /// Seconds of load per fleet round.
    pub fleet_seconds: u64,
    /// Pairs of fleet rounds (`--no-watch`, then the fleet view and alerts).
    pub fleet_rounds: usize,
    /// Crash messages per fleet round.
    pub fleet_crashes_per_round: usize,
    /// Messages on each of the 3 nodes of the multi-node part (0: no multi-node part;
    /// equal to `query_messages`: node A is the query part's data directory).
    pub node_messages: u64,
}

impl LogdBenchConfig {
    /// The sizes: 10 s of loggen, 200,000 RELP messages, 10 million stored.
    pub fn full(flotilla: PathBuf) -> Self {
        LogdBenchConfig {
            flotilla,
            ingest_seconds: 10,
            ingest_rounds: 3,
            connections: 2,
            message_size: 200,
            relp_messages: 200_000,
            query_messages: 10_000_000,
            queries: 5,
            seed: 0x1065,
            fleet_services: 10_000,
            fleet_seconds: 10,
            fleet_rounds: 3,
            fleet_crashes_per_round: 25,
            node_messages: 10_000_000,
        }
    }
}

/// One target's ingest figures.
#[derive(Debug, Clone, Serialize)]
pub struct IngestFigures {
    /// Messages loggen sent.
    pub sent: u64,
    /// Messages found stored afterwards (rsyslog: lines in its file; logd: a query's count).
    pub stored: u64,
    /// Messages per second over loggen's run.
    pub rate: f64,
}

/// One target's RELP figures.
#[derive(Debug, Clone, Serialize)]
pub struct RelpFigures {
    /// Messages acknowledged.
    pub acked: u64,
    /// Messages found stored afterwards.
    pub stored: u64,
    /// Acknowledged messages per second.
    pub rate: f64,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct LogdBenchReport {
    /// Always `"logd"`.
    pub bench: &'static str,
    /// loggen → rsyslog (imptcp → omfile): the median round.
    pub ingest_rsyslog: IngestFigures,
    /// loggen → logd: the median round.
    pub ingest_logd: IngestFigures,
    /// Median logd rate / median rsyslog rate (target ≥ 1.0).
    pub ingest_ratio: f64,
    /// logd rate / rsyslog rate of each round.
    pub ingest_round_ratios: Vec<f64>,
    /// Every round's rates: rsyslog, logd.
    pub ingest_round_rates: Vec<(f64, f64)>,
    /// logd's largest resident set while ingesting, MiB (target ≤ 256).
    pub logd_max_rss_mib: f64,
    /// RELP → rsyslog (imrelp → omfile; acknowledged before any fsync).
    pub relp_rsyslog: RelpFigures,
    /// RELP → logd (acknowledged after the fsync).
    pub relp_logd: RelpFigures,
    /// logd / rsyslog (target ≥ 1.0).
    pub relp_ratio: f64,
    /// logd's group commits during the RELP run, and records per fsync.
    pub relp_logd_syncs: u64,
    /// Records per fsync in that run.
    pub relp_logd_records_per_sync: f64,
    /// Realistic messages stored in both.
    pub query_messages: u64,
    /// Mean raw size of those messages, bytes.
    pub mean_message_bytes: f64,
    /// rsyslog's file, bytes per message.
    pub rsyslog_bytes_per_message: f64,
    /// logd's data directory, bytes per message.
    pub logd_bytes_per_message: f64,
    /// logd / rsyslog (target ≤ 0.25).
    pub disk_ratio: f64,
    /// Median time of a rare-token query through logd's HTTP API, ms (target ≤ 100).
    pub logd_query_ms_median: f64,
    /// Every query's time, ms.
    pub logd_query_ms: Vec<f64>,
    /// Blocks logd opened per query.
    pub logd_blocks_opened: Vec<u64>,
    /// Median time of `rg -F -w -c TOKEN` over rsyslog's file, ms.
    pub rg_query_ms_median: f64,
    /// Every rg run's time, ms.
    pub rg_query_ms: Vec<f64>,
    /// rg / logd (target ≥ 20).
    pub query_speedup: f64,
    /// Segments logd had, and how many a query bounded to one second read.
    pub segments_total: u64,
    /// Segments read by the time-bounded query.
    pub segments_read_by_bounded_query: u64,
    /// The fleet view and alerts under 10,000 services' load (issue 8 §6): ingest with
    /// them against `--no-watch`, and crash → Alertmanager latency.
    pub fleet: Option<FleetFigures>,
    /// Three nodes with `--peers` against one (issue 8 §6).
    pub nodes: Option<NodesFigures>,
    /// Whether every target is met.
    pub meets_targets: bool,
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
    BenchError::io(context)
}

fn server(e: impl std::fmt::Display) -> BenchError {
    BenchError::Server(e.to_string())
}

/// A `flotilla logd` child process.
pub struct LogdProcess {
    child: Child,
    /// Its data directory.
    pub data: PathBuf,
    /// Every listener URL with its bound address.
    pub listeners: Vec<String>,
    /// TCP listener (the first), if any.
    pub tcp: SocketAddr,
    /// RELP listener (the first), if any.
    pub relp: SocketAddr,
    /// HTTP API.
    pub http: SocketAddr,
    /// Where its stderr goes.
    pub stderr_path: PathBuf,
}

impl LogdProcess {
    /// Starts `flotilla logd` with TCP and RELP on free loopback ports.
    pub fn start(flotilla: &Path, data: &Path, extra: &[&str]) -> Result<LogdProcess, BenchError> {
        Self::spawn(
            flotilla,
            data,
            "tcp://127.0.0.1:0,relp://127.0.0.1:0",
            "127.0.0.1:0",
            extra,
        )
    }

    /// Starts `flotilla logd --data DATA --listen LISTEN --http HTTP EXTRA...` and waits
    /// for its ready line; stderr goes to `DATA.stderr`.
    pub fn spawn(
        flotilla: &Path,
        data: &Path,
        listen: &str,
        http: &str,
        extra: &[&str],
    ) -> Result<LogdProcess, BenchError> {
        let stderr_path = data.with_extension("stderr");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr_path)
            .map_err(io(format!("opening {}", stderr_path.display())))?;
        let mut child = Command::new(flotilla)
            .arg("logd")
            .arg("--data")
            .arg(data)
            .args(["--listen", listen])
            .args(["--http", http])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(io(format!("starting {} logd", flotilla.display())))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| server("logd has no stdout"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) if !l.is_empty() => l,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                let err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                return Err(BenchError::Timeout(format!(
                    "logd did not get ready in 30 s: {err}"
                )));
            }
        };
        let ready: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| server(format!("logd's ready line {line:?}: {e}")))?;
        let listeners: Vec<String> = ready["listeners"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|u| u.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let first = |scheme: &str| -> SocketAddr {
            listeners
                .iter()
                .find_map(|u| u.strip_prefix(&format!("{scheme}://")))
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
        };
        let http = ready["http"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| server(format!("no http address in {line}")))?;
        Ok(LogdProcess {
            tcp: first("tcp"),
            relp: first("relp"),
            http,
            data: data.to_path_buf(),
            listeners,
            stderr_path,
            child,
        })
    }

    /// The first listener of a scheme (`udp`, `tcp`, `tls`, `relp`).
    pub fn addr(&self, scheme: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find_map(|u| u.strip_prefix(&format!("{scheme}://")))
            .and_then(|a| a.parse().ok())
    }

    /// What it printed on stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Kills it with SIGKILL (no chance to sync or seal) and reaps it.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// GET on the HTTP API; returns (body, headers of interest).
    pub fn get(&self, path_and_query: &str) -> Result<(String, Vec<(String, String)>), BenchError> {
        http_get(self.http, path_and_query)
    }

    /// `/api/stats` as JSON.
    pub fn stats(&self) -> Result<serde_json::Value, BenchError> {
        let (body, _) = self.get("/api/stats")?;
        serde_json::from_str(&body).map_err(|e| server(format!("/api/stats: {e}")))
    }

    /// Waits until logd has stored at least `n` records.
    pub fn wait_for_records(&self, n: u64, timeout: Duration) -> Result<u64, BenchError> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.stats()?["records"].as_u64().unwrap_or(0);
            if got >= n {
                return Ok(got);
            }
            if Instant::now() > deadline {
                return Err(BenchError::Timeout(format!(
                    "logd stored {got} of {n} records"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then waits for a clean exit (sync and seal).
    pub fn stop(mut self) -> Result<(), BenchError> {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32)
            .ok_or_else(|| server("bad pid"))?;
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().map_err(io("waiting for logd"))? {
                return if status.success() {
                    Ok(())
                } else {
                    Err(server(format!("logd exited with {status}")))
                };
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return Err(BenchError::Timeout("logd did not stop in 60 s".into()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for LogdProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 GET (loopback, `Connection: close`).
pub fn http_get(
    addr: SocketAddr,
    path_and_query: &str,
) -> Result<(String, Vec<(String, String)>), BenchError> {
    let mut s = TcpStream::connect(addr).map_err(io(format!("connecting to {addr}")))?;
    s.set_read_timeout(Some(Duration::from_secs(120)))
        .map_err(io("setting a timeout"))?;
    write!(
        s,
        "GET {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(io("sending a request"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(io("reading a response"))?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| server(format!("bad HTTP response to {path_and_query}")))?;
    let mut lines = head.lines();
    let status = lines.next().unwrap_or_default();
    if !status.contains(" 200 ") {
        return Err(server(format!("GET {path_and_query}: {status}: {body}")));
    }
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect::<Vec<_>>();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((body, headers))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Realistic syslog lines: 40 hosts, 12 apps, a dozen message shapes, numbers, IPs,
/// durations, and a unique request id in each (`req-<16 hex>`).
pub struct RealisticLog {
    rng: SmallRng,
    /// Start time of the timestamps (µs since the epoch).
    pub start_micros: i64,
}

const APPS: [&str; 12] = [
    "nginx",
    "api",
    "worker",
    "postgres",
    "auth",
    "cron",
    "kernel",
    "redis",
    "billing",
    "search",
    "mailer",
    "scheduler",
];
const PATHS: [&str; 8] = [
    "/api/v1/users",
    "/api/v1/orders",
    "/health",
    "/api/v2/search",
    "/static/app.js",
    "/login",
    "/api/v1/cart",
    "/metrics",
];
const USERS: [&str; 10] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
];

impl RealisticLog {
    /// A generator with a seed.
    pub fn new(seed: u64) -> Self {
        RealisticLog {
            rng: SmallRng::seed_from_u64(seed),
            start_micros: 1_767_225_600_000_000,
        }
    }

    /// The unique token of message `i` (also embedded in it).
    pub fn token(seed: u64, i: u64) -> String {
        let mixed = (i ^ seed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(17)
            ^ seed;
        format!("req-{mixed:016x}")
    }

    /// Message `i` (RFC 5424, no framing).
    pub fn line(&mut self, seed: u64, i: u64) -> String {
        self.line_as(seed, i, None)
    }

    /// Message `i` as sent by `service` (HOSTNAME, APP-NAME) instead of a random one of
    /// the 40 hosts and 12 apps (the rest of the message is what [`RealisticLog::line`]
    /// makes: the generator draws the same numbers either way).
    pub fn line_as(&mut self, seed: u64, i: u64, service: Option<(&str, &str)>) -> String {
        let r = &mut self.rng;
        let mut host = format!("web-{:02}.prod.example.com", r.random_range(0..40));
        let mut app: &str = APPS[r.random_range(0..APPS.len())];
        if let Some((h, a)) = service {
            host.clear();
            host.push_str(h);
            app = a;
        }
        let pid = r.random_range(100..32_000);
        let sev = [6u8, 6, 6, 6, 5, 4, 3, 7][r.random_range(0..8)];
        let pri = 16 * 8 + sev;
        let ts = self.start_micros + i as i64 * 7;
        let secs = ts / 1_000_000;
        let (y, mo, d) = flotilla_syslog::civil_from_days(secs.div_euclid(86_400));
        let sod = secs.rem_euclid(86_400);
        let stamp = format!(
            "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
            sod / 3600,
            sod / 60 % 60,
            sod % 60,
            ts % 1_000_000
        );
        let token = Self::token(seed, i);
        let ip = format!(
            "10.{}.{}.{}",
            r.random_range(0..8),
            r.random_range(0..256),
            r.random_range(1..255)
        );
        let ms = r.random_range(1..900);
        let user = USERS[r.random_range(0..USERS.len())];
        let (msgid, sd, msg) = match r.random_range(0..8) {
            0 | 1 => (
                "ACCESS",
                format!(
                    "[http@32473 status=\"{}\" ms=\"{ms}\"]",
                    [200, 200, 200, 304, 404, 500][r.random_range(0..6)]
                ),
                format!(
                    "{ip} - {user} \"GET {}/{} HTTP/1.1\" {} bytes req={token} ua=\"Mozilla/5.0 (X11; Linux x86_64)\"",
                    PATHS[r.random_range(0..PATHS.len())],
                    r.random_range(1..100_000),
                    r.random_range(200..90_000)
                ),
            ),
            2 => (
                "AUTH",
                "-".to_string(),
                format!("user {user} logged in from {ip} session={token} mfa=totp"),
            ),
            3 => (
                "JOB",
                format!("[job@32473 id=\"{}\"]", r.random_range(1..5000)),
                format!(
                    "job nightly-export-{} finished in {ms} ms, {} rows processed req={token}",
                    r.random_range(1..50),
                    r.random_range(0..1_000_000)
                ),
            ),
            4 => (
                "-",
                "-".to_string(),
                format!(
                    "connection reset by peer {ip}:{} while reading response header from upstream req={token}",
                    r.random_range(1024..65535)
                ),
            ),
            5 => (
                "CACHE",
                "-".to_string(),
                format!(
                    "cache miss key=user:{}:profile shard={} latency_us={} req={token}",
                    r.random_range(1..1_000_000),
                    r.random_range(0..16),
                    r.random_range(50..5000)
                ),
            ),
            6 => (
                "SQL",
                format!(
                    "[db@32473 table=\"orders\" rows=\"{}\"]",
                    r.random_range(0..500)
                ),
                format!(
                    "duration: {}.{:03} ms  statement: SELECT * FROM orders WHERE customer_id = {} req={token}",
                    ms,
                    r.random_range(0..1000),
                    r.random_range(1..200_000)
                ),
            ),
            _ => (
                "WARN",
                "-".to_string(),
                format!(
                    "retrying payment provider call attempt={} backoff_ms={} error=\"timeout after 3000 ms\" req={token}",
                    r.random_range(1..5),
                    r.random_range(100..3200)
                ),
            ),
        };
        format!("<{pri}>1 {stamp} {host} {app} {pid} {msgid} {sd} {msg}")
    }
}

/// Sends `count` realistic messages (octet-counted, over `connections` TCP connections)
/// to `addr`; returns the total raw bytes.
pub fn send_realistic(
    addr: SocketAddr,
    seed: u64,
    count: u64,
    connections: usize,
) -> Result<u64, BenchError> {
    let per = count.div_ceil(connections as u64);
    let mut threads = Vec::new();
    for c in 0..connections as u64 {
        let from = c * per;
        let to = ((c + 1) * per).min(count);
        threads.push(std::thread::spawn(move || -> Result<u64, BenchError> {
            let mut s = TcpStream::connect(addr).map_err(io(format!("connecting to {addr}")))?;
            let mut generator = RealisticLog::new(seed ^ c);
            let mut buf = Vec::with_capacity(1 << 20);
            let mut raw = 0u64;
            for i in from..to {
                let line = generator.line(seed, i);
                raw += line.len() as u64;
                buf.extend_from_slice(format!("{} ", line.len()).as_bytes());
                buf.extend_from_slice(line.as_bytes());
                if buf.len() >= 1 << 20 {
                    s.write_all(&buf).map_err(io("sending"))?;
                    buf.clear();
                }
            }
            s.write_all(&buf).map_err(io("sending"))?;
            Ok(raw)
        }));
    }
    let mut raw = 0;
    for t in threads {
        raw += t.join().map_err(|_| server("a sender thread panicked"))??;
    }
    Ok(raw)
}

/// RELP load: `count` messages over `connections` connections, window 128; returns
/// (acknowledged, seconds).
pub fn relp_load(
    addr: SocketAddr,
    count: u64,
    connections: usize,
    size: usize,
) -> Result<(u64, f64), BenchError> {
    let started = Instant::now();
    let per = count.div_ceil(connections as u64);
    let mut threads = Vec::new();
    for c in 0..connections as u64 {
        let n = per.min(count.saturating_sub(c * per));
        threads.push(std::thread::spawn(move || -> Result<u64, BenchError> {
            let mut session = RelpClientSession::new(RelpClientConfig::default())
                .map_err(|e| server(format!("RELP: {e}")))?;
            let mut sock = TcpStream::connect(addr).map_err(io(format!("connecting to {addr}")))?;
            sock.set_read_timeout(Some(Duration::from_secs(30)))
                .map_err(io("timeout"))?;
            let _ = sock.set_nodelay(true);
            session.connect();
            let pad = "x".repeat(size.saturating_sub(60));
            let (mut sent, mut acked) = (0u64, 0u64);
            let mut buf = vec![0u8; 65536];
            let mut out = Vec::new();
            while acked < n {
                while sent < n && session.is_open() && session.free_capacity() > 0 {
                    session
                        .send(
                            format!("<13>1 - relp-bench load {c} SEQ - {sent} {pad}").into_bytes(),
                        )
                        .map_err(|e| server(format!("RELP send: {e}")))?;
                    sent += 1;
                }
                out.clear();
                session.poll_transmit(&mut out);
                if !out.is_empty() {
                    sock.write_all(&out).map_err(io("RELP write"))?;
                }
                let k = sock.read(&mut buf).map_err(io("RELP read"))?;
                if k == 0 {
                    return Err(server("the RELP server closed the connection"));
                }
                session
                    .handle_input(&buf[..k])
                    .map_err(|e| server(format!("RELP: {e}")))?;
                while let Some(ev) = session.poll_event() {
                    if let RelpClientEvent::Acked { count, .. } = ev {
                        acked += count;
                    }
                }
            }
            Ok(acked)
        }));
    }
    let mut acked = 0;
    for t in threads {
        acked += t.join().map_err(|_| server("a RELP thread panicked"))??;
    }
    Ok((acked, started.elapsed().as_secs_f64()))
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                total += dir_bytes(&p);
            } else if let Ok(m) = e.metadata() {
                total += m.len();
            }
        }
    }
    total
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(0.0)
}

fn count_stored(data: &Path, query: flotilla_logd::Query) -> Result<u64, BenchError> {
    let store = flotilla_logd::Store::open_read_only(data).map_err(server)?;
    let matcher = flotilla_logd::Matcher::new(query).map_err(server)?;
    let stats = store
        .scan(&matcher, false, &mut |_, _| true)
        .map_err(server)?;
    Ok(stats.matched)
}

/// Runs the whole benchmark.
pub fn run_logd_bench(config: &LogdBenchConfig) -> Result<LogdBenchReport, BenchError> {
    let tmp = tempfile::tempdir().map_err(io("creating a temporary folder"))?;
    let loggen = |target: SocketAddr| -> Result<flotilla_testkit::LoggenReport, BenchError> {
        let mut o = LoggenOptions::new(target);
        o.transport = LoggenTransport::Tcp;
        o.rfc5424 = true;
        o.size = config.message_size;
        o.connections = config.connections;
        o.duration_secs = Some(config.ingest_seconds);
        o.count = None;
        flotilla_testkit::run_loggen(&o).map_err(server)
    };

    // 1. ingest: rsyslog and logd in interleaved rounds (the machine's speed drifts;
    //    medians of side-by-side rounds are what compare).
    let max_rss = Arc::new(AtomicU64::new(0));
    let mut rsyslog_rounds = Vec::new();
    let mut logd_rounds = Vec::new();
    for round in 0..config.ingest_rounds.max(1) {
        let sink: RsyslogSink = Rsyslog::sink().start().map_err(server)?;
        let r = loggen(sink.tcp_addr())?;
        let stored = sink
            .wait_for_line_count(r.count, Duration::from_secs(120))
            .map_err(server)?;
        rsyslog_rounds.push(IngestFigures {
            sent: r.count,
            stored,
            rate: r.count as f64 / r.elapsed.as_secs_f64(),
        });
        sink.stop().map_err(server)?;

        let data = tmp.path().join(format!("ingest-{round}"));
        let logd = LogdProcess::start(&config.flotilla, &data, &[])?;
        let pid = logd.pid();
        let sampling = Arc::new(AtomicBool::new(true));
        let sampler = {
            let sampling = sampling.clone();
            let max_rss = max_rss.clone();
            std::thread::spawn(move || {
                while sampling.load(Ordering::Relaxed) {
                    if let Ok(m) = crate::procstat::read_memory(pid) {
                        max_rss.fetch_max(m.rss, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        let l = loggen(logd.tcp)?;
        logd.wait_for_records(l.count, Duration::from_secs(120))?;
        sampling.store(false, Ordering::Relaxed);
        let _ = sampler.join();
        logd.stop()?;
        let stored = count_stored(&data, flotilla_logd::Query::default())?;
        let _ = std::fs::remove_dir_all(&data);
        logd_rounds.push(IngestFigures {
            sent: l.count,
            stored,
            rate: l.count as f64 / l.elapsed.as_secs_f64(),
        });
    }
    let median_round = |rounds: &[IngestFigures]| -> IngestFigures {
        let mut sorted = rounds.to_vec();
        sorted.sort_by(|a, b| a.rate.total_cmp(&b.rate));
        sorted[sorted.len() / 2].clone()
    };
    let ingest_rsyslog = median_round(&rsyslog_rounds);
    let ingest_logd = median_round(&logd_rounds);
    let ingest_round_ratios: Vec<f64> = rsyslog_rounds
        .iter()
        .zip(&logd_rounds)
        .map(|(r, l)| l.rate / r.rate)
        .collect();
    let every_round_stored = logd_rounds.iter().all(|l| l.stored == l.sent)
        && rsyslog_rounds.iter().all(|r| r.stored == r.sent);

    // 2. RELP.
    let relp_sink = Rsyslog::sink().relp().start().map_err(server)?;
    let relp_addr = relp_sink
        .relp_addr()
        .ok_or_else(|| server("the sink has no RELP input"))?;
    let (acked, secs) = relp_load(relp_addr, config.relp_messages, 2, config.message_size)?;
    let stored = relp_sink
        .wait_for_line_count(acked, Duration::from_secs(60))
        .map_err(server)?;
    let relp_rsyslog = RelpFigures {
        acked,
        stored,
        rate: acked as f64 / secs,
    };
    relp_sink.stop().map_err(server)?;
    let data = tmp.path().join("relp");
    let logd = LogdProcess::start(&config.flotilla, &data, &[])?;
    let (acked, secs) = relp_load(logd.relp, config.relp_messages, 2, config.message_size)?;
    let st = logd.stats()?;
    let relp_logd_syncs = st["syncs"].as_u64().unwrap_or(0);
    let relp_logd_records_per_sync = st["records_per_sync"].as_f64().unwrap_or(0.0);
    logd.stop()?;
    let relp_logd = RelpFigures {
        acked,
        stored: count_stored(&data, flotilla_logd::Query::default())?,
        rate: acked as f64 / secs,
    };

    // 3. query and disk: the same realistic messages into both.
    let sink = Rsyslog::sink().start().map_err(server)?;
    let data = tmp.path().join("query");
    let logd = LogdProcess::start(&config.flotilla, &data, &[])?;
    let n = config.query_messages;
    let seed = config.seed;
    let (a, b) = (sink.tcp_addr(), logd.tcp);
    let to_rsyslog = std::thread::spawn(move || send_realistic(a, seed, n, 2));
    let raw_bytes = send_realistic(b, seed, n, 2)?;
    to_rsyslog.join().map_err(|_| server("sender panicked"))??;
    sink.wait_for_line_count(n, Duration::from_secs(300))
        .map_err(server)?;
    logd.wait_for_records(n, Duration::from_secs(300))?;
    let rsyslog_file = sink.output_path().to_path_buf();
    let rsyslog_bytes = std::fs::metadata(&rsyslog_file)
        .map_err(io("reading rsyslog's file size"))?
        .len();
    logd.stop()?;
    let logd_bytes = dir_bytes(&data);
    let logd = LogdProcess::start(&config.flotilla, &data, &[])?;
    let mut rng = SmallRng::seed_from_u64(seed ^ 0xABCD);
    let mut logd_ms = Vec::new();
    let mut blocks = Vec::new();
    let mut rg_ms = Vec::new();
    let rg = "rg";
    for q in 0..=config.queries {
        let i = rng.random_range(0..n);
        let token = RealisticLog::token(seed, i);
        let t = Instant::now();
        let (body, headers) = logd.get(&format!("/api/query?grep={token}&limit=100"))?;
        let took = t.elapsed().as_secs_f64() * 1e3;
        let lines = body.lines().filter(|l| !l.is_empty()).count();
        if lines != 1 {
            return Err(server(format!(
                "logd found {lines} records for {token}, expected 1"
            )));
        }
        let t = Instant::now();
        let out = Command::new(rg)
            .args(["-F", "-w", "-c", &token])
            .arg(&rsyslog_file)
            .output()
            .map_err(io("running rg"))?;
        let rg_took = t.elapsed().as_secs_f64() * 1e3;
        let count = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if count != "1" {
            return Err(server(format!(
                "rg counted {count:?} for {token}, expected 1"
            )));
        }
        // The first round warms both caches and is not counted.
        if q > 0 {
            logd_ms.push(took);
            rg_ms.push(rg_took);
            blocks.push(
                headers
                    .iter()
                    .find(|(k, _)| k == "x-flotilla-blocks-opened")
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0),
            );
        }
    }
    // A query bounded to one second in the middle of the run.
    let st = logd.stats()?;
    let segments_total = st["segments"].as_u64().unwrap_or(0);
    let (body, _) = logd.get("/api/query?limit=1")?;
    let newest: serde_json::Value = serde_json::from_str(body.lines().next().unwrap_or("{}"))
        .map_err(|e| server(format!("newest record: {e}")))?;
    let newest_ns = newest["received_at_ns"].as_i64().unwrap_or(0);
    let since = newest_ns - 3_000_000_000;
    let (_, headers) = logd.get(&format!(
        "/api/query?since=@{}&until=@{}&limit=10",
        since as f64 / 1e9,
        (since + 1_000_000_000) as f64 / 1e9
    ))?;
    let segments_read_by_bounded_query = headers
        .iter()
        .find(|(k, _)| k == "x-flotilla-segments-in-range")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(u64::MAX);
    logd.stop()?;
    sink.stop().map_err(server)?;

    // 4. three nodes with --peers against one (node A: the query part's directory when
    //    the sizes match).
    let nodes = if config.node_messages > 0 {
        let reuse = (config.node_messages == n).then(|| data.clone());
        let nodes = nodes::run_nodes(
            &NodesBenchConfig {
                flotilla: config.flotilla.clone(),
                messages_per_node: config.node_messages,
                queries: config.queries,
                seed,
                node_a_data: reuse,
            },
            tmp.path(),
        )?;
        let _ = std::fs::remove_dir_all(&data);
        Some(nodes)
    } else {
        None
    };

    // 5. fleet view and alerts under load.
    let fleet = if config.fleet_services > 0 {
        Some(fleet::run_fleet(
            &FleetBenchConfig {
                flotilla: config.flotilla.clone(),
                services: config.fleet_services,
                seconds: config.fleet_seconds,
                rounds: config.fleet_rounds,
                crashes_per_round: config.fleet_crashes_per_round,
                connections: config.connections,
                seed,
            },
            tmp.path(),
        )?)
    } else {
        None
    };

    let ingest_ratio = ingest_logd.rate / ingest_rsyslog.rate;
    let relp_ratio = relp_logd.rate / relp_rsyslog.rate;
    let rsyslog_bpm = rsyslog_bytes as f64 / n as f64;
    let logd_bpm = logd_bytes as f64 / n as f64;
    let disk_ratio = logd_bpm / rsyslog_bpm;
    let logd_query_ms_median = median(&logd_ms);
    let rg_query_ms_median = median(&rg_ms);
    let query_speedup = rg_query_ms_median / logd_query_ms_median.max(1e-9);
    let logd_max_rss_mib = max_rss.load(Ordering::Relaxed) as f64 / (1 << 20) as f64;
    let meets_targets = ingest_ratio >= 1.0
        && every_round_stored
        && relp_ratio >= 1.0
        && relp_logd.stored >= relp_logd.acked
        && disk_ratio <= 0.25
        && logd_query_ms_median <= 100.0
        && query_speedup >= 20.0
        && logd_max_rss_mib <= 256.0
        && fleet.as_ref().is_none_or(|f| f.meets_targets)
        && nodes.as_ref().is_none_or(|x| x.meets_targets);
    Ok(LogdBenchReport {
        bench: "logd",
        ingest_rsyslog,
        ingest_logd,
        ingest_ratio,
        ingest_round_ratios,
        ingest_round_rates: rsyslog_rounds
            .iter()
            .zip(&logd_rounds)
            .map(|(r, l)| (r.rate, l.rate))
            .collect(),
        logd_max_rss_mib,
        relp_rsyslog,
        relp_logd,
        relp_ratio,
        relp_logd_syncs,
        relp_logd_records_per_sync,
        query_messages: n,
        mean_message_bytes: raw_bytes as f64 / n as f64,
        rsyslog_bytes_per_message: rsyslog_bpm,
        logd_bytes_per_message: logd_bpm,
        disk_ratio,
        logd_query_ms_median,
        logd_query_ms: logd_ms,
        logd_blocks_opened: blocks,
        rg_query_ms_median,
        rg_query_ms: rg_ms,
        query_speedup,
        segments_total,
        segments_read_by_bounded_query,
        fleet,
        nodes,
        meets_targets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realistic_lines_parse_and_carry_their_token() {
        let mut g = RealisticLog::new(7);
        let mut total = 0;
        for i in 0..2000 {
            let line = g.line(7, i);
            total += line.len();
            assert!(line.contains(&RealisticLog::token(7, i)), "{line}");
            let p = flotilla_syslog::parse_lenient(line.as_bytes(), &Default::default()).unwrap();
            assert_eq!(p.format, flotilla_syslog::Format::Rfc5424, "{line}");
            assert!(p.hostname.is_some() && p.app_name.is_some());
        }
        let mean = total / 2000;
        assert!((120..320).contains(&mean), "mean line length {mean}");
    }

    #[test]
    fn chunked_bodies() {
        assert_eq!(
            dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
    }
}
