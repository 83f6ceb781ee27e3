//! The fleet view and alerts under load (issue 8 §6), part of `flotilla bench logd`.
//!
//! N services (distinct HOSTNAME + APP-NAME pairs) each boot once (the flotilla logger's
//! `BOOT` frame: `[boot@32473 …][ip@32473 …][meta sequenceId=…]`), then heartbeat every
//! 10 s (`HEARTBEAT` + `[heartbeat@32473 uptime_s delivered dropped interval_ms="10000"]`,
//! spread evenly over the interval on one connection) while realistic traffic from the
//! same services ([`RealisticLog::line_as`], pre-encoded, cycled) is sent as fast as logd
//! takes it over `connections` TCP connections, for `seconds`. Meanwhile a few services
//! send a `CRASH` frame (`[crash@32473 message location thread]`) on a connection of their
//! own, evenly spaced.
//!
//! Rounds alternate `flotilla logd --no-watch` and `flotilla logd --alertmanager URL`
//! (fleet view and built-in alerts on), each a fresh process and data directory, the same
//! load in both (the Alertmanager is polled in both, so its cost is the same). A round
//! ends when logd has stored every record sent and, with the watcher, when the watcher
//! has fed every one of them to its machines (`/api/stats` `"watch"`); its rate is the
//! messages sent in the timed part over that time, its CPU the user + system time of the
//! logd process (`/proc/PID/stat`) over the same span.
//!
//! Crash to alert: the time from writing the crash frame to the first poll (every 5 ms)
//! of a real Prometheus Alertmanager's `/api/v2/alerts` that lists `ServiceCrashed` for
//! that service (logd → Alertmanager v2 API; Alertmanager's `group_wait` is not involved:
//! it delays notifications, not the API).

use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::{APPS, LogdProcess, RealisticLog, http_get, io, median, server};
use crate::BenchError;

/// The heartbeat period of every service, ms (the flotilla logger's `interval_ms`).
pub const HEARTBEAT_INTERVAL_MS: u64 = 10_000;
/// How often the Alertmanager is polled.
const POLL_EVERY: Duration = Duration::from_millis(5);
/// How often logd's `/api/stats` is polled for the end of a round.
const STATS_EVERY: Duration = Duration::from_millis(10);

/// What to run.
#[derive(Debug, Clone)]
pub struct FleetBenchConfig {
    /// The `flotilla` binary.
    pub flotilla: PathBuf,
    /// Services (distinct host + app pairs).
    pub services: usize,
    /// Seconds of load per round.
    pub seconds: u64,
    /// Pairs of rounds (without the watcher, with it).
    pub rounds: usize,
    /// Crash messages per round.
    pub crashes_per_round: usize,
    /// Traffic connections.
    pub connections: usize,
    /// Seed of the traffic.
    pub seed: u64,
}

/// One round's figures.
#[derive(Debug, Clone, Serialize)]
pub struct FleetRound {
    /// Whether the fleet view and alerts ran (`--alertmanager URL`) or not (`--no-watch`).
    pub watch: bool,
    /// Messages sent in the timed part: traffic + heartbeats + crashes.
    pub sent: u64,
    /// Heartbeats among them.
    pub heartbeats: u64,
    /// Crash messages among them.
    pub crashes: u64,
    /// Records stored at the end (the boots sent before the timed part included).
    pub stored: u64,
    /// Seconds from the start of the load until every record was stored (and, with the
    /// watcher, fed to it).
    pub seconds: f64,
    /// `sent / seconds`.
    pub rate: f64,
    /// logd's user + system CPU over those seconds.
    pub cpu_seconds: f64,
    /// CPU per message, µs.
    pub cpu_us_per_message: f64,
    /// Records the watcher fed to its machines (0 without it).
    pub watch_records: u64,
    /// Times the watcher fell behind the store's stream (and read back from the store).
    pub watch_lagged: u64,
    /// How long after the last record was stored the watcher had fed it, ms.
    pub watch_behind_ms: f64,
    /// Services in `/api/fleet` at the end (0 without the watcher).
    pub fleet_services: u64,
    /// Of them, in state `crashed`.
    pub fleet_crashed: u64,
}

/// The figures of the fleet part.
#[derive(Debug, Clone, Serialize)]
pub struct FleetFigures {
    /// Services.
    pub services: usize,
    /// Their heartbeat period, s.
    pub heartbeat_interval_s: u64,
    /// Seconds of load per round.
    pub seconds_per_round: u64,
    /// Median rate without the watcher (`--no-watch`), msg/s.
    pub rate_no_watch: f64,
    /// Median rate with the fleet view and alerts, msg/s.
    pub rate_watch: f64,
    /// `rate_watch / rate_no_watch` (target ≥ 0.90: at most 10% slower).
    pub rate_ratio: f64,
    /// Each pair of rounds' ratio.
    pub round_rate_ratios: Vec<f64>,
    /// Median CPU per message without the watcher, µs.
    pub cpu_us_per_message_no_watch: f64,
    /// Median CPU per message with it, µs.
    pub cpu_us_per_message_watch: f64,
    /// `cpu_us_per_message_watch / cpu_us_per_message_no_watch`.
    pub cpu_ratio: f64,
    /// Every watch round: the watcher fed every record stored, and `/api/fleet` listed
    /// every service with every crashed one `crashed`.
    pub watch_kept_up: bool,
    /// Every round, in the order run.
    pub rounds: Vec<FleetRound>,
    /// Crash messages sent with the watcher on.
    pub crashes: usize,
    /// Of them, seen as `ServiceCrashed` in the Alertmanager.
    pub crash_alerts_seen: usize,
    /// Crash frame written → alert listed by the Alertmanager's API, ms: median.
    pub crash_alert_ms_p50: f64,
    /// 90th percentile.
    pub crash_alert_ms_p90: f64,
    /// 99th percentile (nearest rank; target ≤ 1,000).
    pub crash_alert_ms_p99: f64,
    /// Largest.
    pub crash_alert_ms_max: f64,
    /// Every crash's time, ms, in the order sent.
    pub crash_alert_ms: Vec<f64>,
    /// Polls of the Alertmanager's API answered (all rounds; one every 5 ms + its time).
    pub alertmanager_polls: u64,
    /// Every target met.
    pub meets_targets: bool,
}

/// Service `i`: (HOSTNAME, APP-NAME); 12 apps per host.
pub fn service(i: usize) -> (String, &'static str) {
    (
        format!("node-{:04}.prod.example.com", i / APPS.len()),
        APPS[i % APPS.len()],
    )
}

fn pid_of(i: usize) -> usize {
    1000 + (i * 37) % 30_000
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// RFC 3339 UTC with microseconds.
fn stamp(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let micros = ns.rem_euclid(1_000_000_000) / 1000;
    let (y, mo, d) = flotilla_syslog::civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// The flotilla logger's boot message of service `i` (RFC 5424, no framing).
pub fn boot_frame(i: usize) -> String {
    let (host, app) = service(i);
    let pid = pid_of(i);
    let ip = format!(
        "10.{}.{}.{}/16",
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff
    );
    format!(
        "<13>1 {} {host} {app} {pid} BOOT [boot@32473 version=\"2.4.1\" hostname=\"{host}\" \
         pid=\"{pid}\" logger=\"0.1.0\"][ip@32473 eth0=\"{ip}\" lo=\"127.0.0.1/8\"]\
         [meta sequenceId=\"1\"] booted and awake: {app} 2.4.1 on {host}, pid {pid}, ip \
         eth0={ip} lo=127.0.0.1/8",
        stamp(now_ns())
    )
}

/// The flotilla logger's heartbeat of service `i`.
pub fn heartbeat_frame(i: usize, uptime_s: u64, delivered: u64, sequence: u64) -> String {
    let (host, app) = service(i);
    let pid = pid_of(i);
    format!(
        "<14>1 {} {host} {app} {pid} HEARTBEAT [heartbeat@32473 uptime_s=\"{uptime_s}\" \
         delivered=\"{delivered}\" dropped=\"0\" interval_ms=\"{HEARTBEAT_INTERVAL_MS}\"]\
         [meta sequenceId=\"{sequence}\"] heartbeat: up {uptime_s} s, {delivered} delivered, \
         0 dropped",
        stamp(now_ns())
    )
}

/// The flotilla logger's "about to crash" of service `i`.
pub fn crash_frame(i: usize, sequence: u64) -> String {
    let (host, app) = service(i);
    let pid = pid_of(i);
    let message = "index out of bounds: the len is 3 but the index is 7";
    let location = "src/worker.rs:214:17";
    format!(
        "<10>1 {} {host} {app} {pid} CRASH [crash@32473 message=\"{message}\" \
         location=\"{location}\" thread=\"worker-3\"][meta sequenceId=\"{sequence}\"] about \
         to crash: panic in thread 'worker-3' at {location}: {message}",
        stamp(now_ns())
    )
}

fn frame(out: &mut Vec<u8>, line: &str) {
    out.extend_from_slice(format!("{} ", line.len()).as_bytes());
    out.extend_from_slice(line.as_bytes());
}

/// Pre-encoded traffic: chunks of whole octet-counted frames, and how many each holds.
struct Pool {
    chunks: Vec<(Vec<u8>, u64)>,
}

impl Pool {
    /// `lines` realistic lines, line `k` from service `k % services`.
    fn build(seed: u64, services: usize, lines: usize) -> Pool {
        let mut generator = RealisticLog::new(seed);
        let mut chunks = Vec::new();
        let mut buf = Vec::with_capacity(1 << 18);
        let mut n = 0u64;
        for k in 0..lines {
            let (host, app) = service(k % services);
            let line = generator.line_as(seed, k as u64, Some((&host, app)));
            frame(&mut buf, &line);
            n += 1;
            if buf.len() >= 1 << 18 {
                chunks.push((std::mem::take(&mut buf), n));
                n = 0;
            }
        }
        if n > 0 {
            chunks.push((buf, n));
        }
        Pool { chunks }
    }
}

fn connect(addr: SocketAddr) -> Result<TcpStream, BenchError> {
    let s = TcpStream::connect(addr).map_err(io(format!("connecting to {addr}")))?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

/// Sends every service's boot message.
fn send_boots(addr: SocketAddr, services: usize) -> Result<(), BenchError> {
    let mut s = connect(addr)?;
    let mut buf = Vec::with_capacity(1 << 20);
    for i in 0..services {
        frame(&mut buf, &boot_frame(i));
        if buf.len() >= 1 << 18 {
            s.write_all(&buf).map_err(io("sending boots"))?;
            buf.clear();
        }
    }
    s.write_all(&buf).map_err(io("sending boots"))
}

/// Cycles through the pool from `first` until `deadline`; returns the frames sent.
fn send_traffic(
    addr: SocketAddr,
    pool: &Pool,
    first: usize,
    deadline: Instant,
) -> Result<u64, BenchError> {
    let mut s = TcpStream::connect(addr).map_err(io(format!("connecting to {addr}")))?;
    let mut sent = 0;
    let mut c = first;
    while Instant::now() < deadline {
        let (buf, n) = &pool.chunks[c % pool.chunks.len()];
        s.write_all(buf).map_err(io("sending traffic"))?;
        sent += n;
        c += 1;
    }
    Ok(sent)
}

/// Every service heartbeats once per interval, spread evenly (one connection, written
/// every 5 ms); returns the heartbeats sent.
fn send_heartbeats(
    addr: SocketAddr,
    services: usize,
    start: Instant,
    deadline: Instant,
) -> Result<u64, BenchError> {
    let mut s = connect(addr)?;
    let per_second = services as f64 * 1000.0 / HEARTBEAT_INTERVAL_MS as f64;
    let mut sent = 0u64;
    let mut buf = Vec::new();
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let elapsed = now.duration_since(start);
        let due = (elapsed.as_secs_f64() * per_second) as u64;
        while sent < due {
            let i = (sent % services as u64) as usize;
            let beat = sent / services as u64;
            frame(
                &mut buf,
                &heartbeat_frame(i, elapsed.as_secs(), 40 * (beat + 1), beat + 2),
            );
            sent += 1;
        }
        if !buf.is_empty() {
            s.write_all(&buf).map_err(io("sending heartbeats"))?;
            buf.clear();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(sent)
}

/// Sends a crash for each service of `which`, evenly spaced over `span` from `start`;
/// returns when each was written.
fn send_crashes(
    addr: SocketAddr,
    which: &[usize],
    start: Instant,
    span: Duration,
) -> Result<Vec<(usize, Instant)>, BenchError> {
    let mut s = connect(addr)?;
    let mut out = Vec::new();
    for (j, &i) in which.iter().enumerate() {
        let at = start + span.mul_f64((j as f64 + 0.5) / which.len() as f64);
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let mut buf = Vec::new();
        frame(&mut buf, &crash_frame(i, 1_000_000 + j as u64));
        let written = Instant::now();
        s.write_all(&buf).map_err(io("sending a crash"))?;
        out.push((i, written));
    }
    Ok(out)
}

/// Polls the Alertmanager's `/api/v2/alerts` every 5 ms and notes when each service's
/// `ServiceCrashed` alert was first listed.
struct AlertPoller {
    seen: Arc<Mutex<HashMap<(String, String), Instant>>>,
    stop: Arc<AtomicBool>,
    polls: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AlertPoller {
    fn start(addr: SocketAddr) -> AlertPoller {
        let seen = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let polls = Arc::new(AtomicU64::new(0));
        let thread = {
            let (seen, stop, polls) = (seen.clone(), stop.clone(), polls.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((body, _)) = http_get(addr, "/api/v2/alerts") {
                        let at = Instant::now();
                        polls.fetch_add(1, Ordering::Relaxed);
                        if let Ok(serde_json::Value::Array(list)) =
                            serde_json::from_str::<serde_json::Value>(&body)
                            && let Ok(mut seen) = seen.lock()
                        {
                            for a in &list {
                                let l = &a["labels"];
                                if l["alertname"] == "ServiceCrashed" {
                                    let key = (
                                        l["host"].as_str().unwrap_or_default().to_string(),
                                        l["app"].as_str().unwrap_or_default().to_string(),
                                    );
                                    seen.entry(key).or_insert(at);
                                }
                            }
                        }
                    }
                    std::thread::sleep(POLL_EVERY);
                }
            })
        };
        AlertPoller {
            seen,
            stop,
            polls,
            thread: Some(thread),
        }
    }

    fn seen_at(&self, i: usize) -> Option<Instant> {
        let (host, app) = service(i);
        self.seen
            .lock()
            .ok()
            .and_then(|s| s.get(&(host, app.to_string())).copied())
    }
}

impl Drop for AlertPoller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn cpu_seconds(pid: u32, ticks_per_second: u64) -> Result<f64, BenchError> {
    Ok(crate::procstat::read_cpu_ticks(pid)?.total() as f64 / ticks_per_second as f64)
}

/// Polls `/api/stats` until `ok` holds (at most `timeout`).
fn wait_stats(
    logd: &LogdProcess,
    timeout: Duration,
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> Result<(Instant, serde_json::Value), BenchError> {
    let deadline = Instant::now() + timeout;
    loop {
        let st = logd.stats()?;
        if ok(&st) {
            return Ok((Instant::now(), st));
        }
        if Instant::now() > deadline {
            return Err(BenchError::Timeout(format!("{what}: {st}")));
        }
        std::thread::sleep(STATS_EVERY);
    }
}

/// Percentile by nearest rank.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Runs the fleet part: alternating rounds without and with the watcher.
pub fn run_fleet(config: &FleetBenchConfig, tmp: &Path) -> Result<FleetFigures, BenchError> {
    let services = config.services.max(1);
    let am = flotilla_testkit::Alertmanager::start(None).map_err(server)?;
    let am_url = am.url();
    let poller = AlertPoller::start(am.addr());
    let pool = Arc::new(Pool::build(
        config.seed,
        services,
        (services * 10).clamp(50_000, 1_000_000),
    ));
    let ticks = crate::procstat::clock_ticks_per_second();
    let span = Duration::from_secs(config.seconds.max(1));
    let mut rounds = Vec::new();
    let mut crash_ms = Vec::new();
    let mut crashes_sent = 0usize;
    let mut next_crash = 0usize;
    let mut watch_kept_up = true;
    for round in 0..config.rounds.max(1) {
        for watch in [false, true] {
            let data = tmp.join(format!(
                "fleet-{round}-{}",
                if watch { "watch" } else { "off" }
            ));
            let extra: Vec<&str> = if watch {
                vec!["--alertmanager", &am_url]
            } else {
                vec!["--no-watch"]
            };
            eprintln!(
                "bench logd: fleet round {}/{} ({})",
                round + 1,
                config.rounds.max(1),
                if watch {
                    "fleet view and alerts"
                } else {
                    "--no-watch"
                }
            );
            let logd = LogdProcess::start(&config.flotilla, &data, &extra)?;
            let addr = logd.tcp;
            send_boots(addr, services)?;
            let boots = services as u64;
            wait_stats(&logd, Duration::from_secs(60), "boots stored", |st| {
                st["records"].as_u64().unwrap_or(0) >= boots
                    && (!watch || st["watch"]["records"].as_u64().unwrap_or(0) >= boots)
            })?;
            // Each round's crashes are new services (the Alertmanager keeps earlier
            // rounds' alerts).
            let which: Vec<usize> = (0..config.crashes_per_round)
                .map(|j| (next_crash + j) % services)
                .collect();
            next_crash += which.len();

            let cpu0 = cpu_seconds(logd.pid(), ticks)?;
            let start = Instant::now();
            let deadline = start + span;
            let mut traffic = Vec::new();
            for c in 0..config.connections.max(1) {
                let pool = pool.clone();
                let first = c * pool.chunks.len() / config.connections.max(1);
                traffic.push(std::thread::spawn(move || {
                    send_traffic(addr, &pool, first, deadline)
                }));
            }
            let beats =
                std::thread::spawn(move || send_heartbeats(addr, services, start, deadline));
            let crashes = send_crashes(addr, &which, start, span)?;
            let mut sent = crashes.len() as u64;
            for t in traffic {
                sent += t
                    .join()
                    .map_err(|_| server("a traffic thread panicked"))??;
            }
            let heartbeats = beats
                .join()
                .map_err(|_| server("the heartbeat thread panicked"))??;
            sent += heartbeats;
            let total = boots + sent;
            // Both kinds of round end when every record is durable *and searchable*: the
            // watcher is fed by the indexer, so a watch round cannot end before indexing
            // does, and a round without it must not end sooner either.
            let (stored_at, st) =
                wait_stats(&logd, Duration::from_secs(600), "records indexed", |st| {
                    st["records"].as_u64().unwrap_or(0) >= total
                        && st["indexed"].as_u64().unwrap_or(0) >= total
                })?;
            let stored = st["records"].as_u64().unwrap_or(0);
            let (end, st) = if watch {
                wait_stats(&logd, Duration::from_secs(600), "records watched", |st| {
                    st["watch"]["records"].as_u64().unwrap_or(0) >= stored
                })?
            } else {
                (stored_at, st)
            };
            let cpu = cpu_seconds(logd.pid(), ticks)? - cpu0;
            let seconds = end.duration_since(start).as_secs_f64();
            let mut r = FleetRound {
                watch,
                sent,
                heartbeats,
                crashes: crashes.len() as u64,
                stored,
                seconds,
                rate: sent as f64 / seconds,
                cpu_seconds: cpu,
                cpu_us_per_message: cpu * 1e6 / sent as f64,
                watch_records: st["watch"]["records"].as_u64().unwrap_or(0),
                watch_lagged: st["watch"]["lagged"].as_u64().unwrap_or(0),
                watch_behind_ms: end.duration_since(stored_at).as_secs_f64() * 1e3,
                fleet_services: 0,
                fleet_crashed: 0,
            };
            if watch {
                // The crashes' alerts (at most 10 s more for the last ones).
                let wait_until = Instant::now() + Duration::from_secs(10);
                while Instant::now() < wait_until
                    && crashes.iter().any(|(i, _)| poller.seen_at(*i).is_none())
                {
                    std::thread::sleep(POLL_EVERY);
                }
                for (i, written) in &crashes {
                    crashes_sent += 1;
                    if let Some(seen) = poller.seen_at(*i) {
                        crash_ms.push(seen.saturating_duration_since(*written).as_secs_f64() * 1e3);
                    }
                }
                let (body, _) = logd.get("/api/fleet")?;
                let fleet: serde_json::Value =
                    serde_json::from_str(&body).map_err(|e| server(format!("/api/fleet: {e}")))?;
                let rows = fleet["services"].as_array().cloned().unwrap_or_default();
                r.fleet_services = rows.len() as u64;
                r.fleet_crashed = rows.iter().filter(|s| s["state"] == "crashed").count() as u64;
                watch_kept_up &= r.watch_records == r.stored
                    && r.fleet_services == services as u64
                    && r.fleet_crashed == r.crashes;
            }
            logd.stop()?;
            let _ = std::fs::remove_dir_all(&data);
            rounds.push(r);
        }
    }
    let alertmanager_polls = poller.polls.load(Ordering::Relaxed);
    drop(poller);
    am.stop().map_err(server)?;

    // One figure of the rounds with (or without) the watcher.
    let of = |w: bool, figure: fn(&FleetRound) -> f64| -> Vec<f64> {
        rounds.iter().filter(|r| r.watch == w).map(figure).collect()
    };
    let rates = |w: bool| of(w, |r| r.rate);
    let cpus = |w: bool| of(w, |r| r.cpu_us_per_message);
    let rate_no_watch = median(&rates(false));
    let rate_watch = median(&rates(true));
    let round_rate_ratios = rounds
        .chunks(2)
        .map(|p| p[1].rate / p[0].rate)
        .collect::<Vec<_>>();
    let cpu_no = median(&cpus(false));
    let cpu_watch = median(&cpus(true));
    let crash_alerts_seen = crash_ms.len();
    let mut sorted = crash_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let p99 = percentile(&sorted, 99.0);
    let rate_ratio = rate_watch / rate_no_watch;
    let meets_targets = rate_ratio >= 0.90
        && watch_kept_up
        && crash_alerts_seen == crashes_sent
        && crashes_sent > 0
        && p99 <= 1000.0;
    Ok(FleetFigures {
        services,
        heartbeat_interval_s: HEARTBEAT_INTERVAL_MS / 1000,
        seconds_per_round: config.seconds.max(1),
        rate_no_watch,
        rate_watch,
        rate_ratio,
        round_rate_ratios,
        cpu_us_per_message_no_watch: cpu_no,
        cpu_us_per_message_watch: cpu_watch,
        cpu_ratio: cpu_watch / cpu_no,
        watch_kept_up,
        rounds,
        crashes: crashes_sent,
        crash_alerts_seen,
        crash_alert_ms_p50: percentile(&sorted, 50.0),
        crash_alert_ms_p90: percentile(&sorted, 90.0),
        crash_alert_ms_p99: p99,
        crash_alert_ms_max: sorted.last().copied().unwrap_or(f64::NAN),
        crash_alert_ms: crash_ms,
        alertmanager_polls,
        meets_targets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_logd::fleet::{ObservationKind, observe};
    use flotilla_logd::record::{Record, Source};

    fn record(line: &str) -> Record {
        Record {
            received_at: 1,
            source: Source::LOCAL,
            flags: 0,
            raw: bytes::Bytes::from(line.to_string()),
        }
    }

    #[test]
    fn frames_are_what_the_fleet_recognises() {
        let r = record(&boot_frame(7));
        let o = observe(1, &r);
        assert!(matches!(o.kind, ObservationKind::Boot { .. }), "{o:?}");
        let r = record(&heartbeat_frame(7, 10, 40, 2));
        let o = observe(2, &r);
        assert!(
            matches!(
                o.kind,
                ObservationKind::Heartbeat {
                    interval_ns: Some(10_000_000_000)
                }
            ),
            "{o:?}"
        );
        let r = record(&crash_frame(7, 3));
        let o = observe(3, &r);
        assert!(matches!(o.kind, ObservationKind::Crash { .. }), "{o:?}");
        let mut g = RealisticLog::new(1);
        let (h, a) = service(7);
        let line = g.line_as(1, 0, Some((&h, a)));
        assert!(
            line.contains(" node-0000.prod.example.com redis "),
            "{line}"
        );
        let r = record(&line);
        let o = observe(4, &r);
        assert_eq!((o.host, o.app), ("node-0000.prod.example.com", "redis"));
    }

    #[test]
    fn percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[3.0], 99.0), 3.0);
    }
}
