//! `flotilla logger-demo`: a sealed service's life as its operators see it.
//!
//! Two log-service nodes (in-process logd servers, each with a TCP listener on loopback
//! and a temporary data directory) are the collectors. A service logs through the
//! flotilla logger: the boot message with its IP configuration, a steady stream of
//! numbered messages with fields, a heartbeat, a caught error with its cause chain;
//! half-way the node in use is stopped and the logger fails over to the other; at the
//! end a thread panics on purpose and the "about to crash" message arrives. The summary
//! comes from queries of what each node stored.
//! Everything in it is real sockets, real storage and real parsing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use flotilla_logd::listen::{ListenSpec, ListenerSnapshot};
use flotilla_logd::server::{Server, ServerConfig};
use flotilla_logd::store::defaults_for;
use flotilla_logd::{Matcher, Query, RecordJson};
use flotilla_logger::Config;
use serde::Serialize;

/// Arguments of `flotilla logger-demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// How long the service runs, in seconds.
    #[arg(long, default_value_t = 6.0)]
    duration: f64,
    /// Messages per second the service logs.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Print the final summary as one JSON object.
    #[arg(long)]
    json: bool,
}

/// The demo's final summary.
#[derive(Debug, Serialize)]
pub struct DemoSummary {
    /// Numbered messages the service logged.
    pub logged: u64,
    /// Distinct numbered messages that reached a collector.
    pub received_distinct: u64,
    /// Numbered messages lost (plain TCP loses what sits in a dying connection's buffers).
    pub lost: u64,
    /// Messages received per collector.
    pub per_collector: Vec<(String, u64)>,
    /// The boot message arrived, with the IP configuration.
    pub boot_received: bool,
    /// The caught error arrived with its cause chain.
    pub error_received: bool,
    /// The "about to crash" message arrived.
    pub crash_received: bool,
    /// The boot, error and crash messages as a collector stored them (MSG and their
    /// structured data), for the reader to see what arrives.
    pub received: BTreeMap<String, String>,
    /// Heartbeats received.
    pub heartbeats: u64,
    /// The logger moved to the other collector after the first one stopped.
    pub failed_over: bool,
    /// Logger counters at the end.
    pub delivered: u64,
    /// Messages the logger dropped.
    pub dropped: u64,
    /// Frames the collectors could not decode or parse (should be 0): records stored
    /// unparsed or truncated, and framing errors.
    pub bad_frames: u64,
}

/// One collector: a logd node and its temporary data directory.
struct Collector {
    name: String,
    server: Server,
    /// The listeners' counters when the node stopped.
    listeners: Vec<ListenerSnapshot>,
    stopped: bool,
    _dir: tempfile::TempDir,
}

impl Collector {
    fn start() -> Result<Collector> {
        let dir = tempfile::Builder::new()
            .prefix("flotilla-logger-demo-")
            .tempdir()
            .context("creating a collector's data directory")?;
        let mut config = ServerConfig::new(dir.path());
        config.listen = vec![ListenSpec::parse("tcp://127.0.0.1:0")?];
        config.http = None;
        let server = Server::start(config).context("starting a collector (logd)")?;
        let addr = server
            .addr_of("tcp")
            .context("the collector has no TCP listener")?;
        Ok(Collector {
            name: format!("tcp://{addr}"),
            server,
            listeners: Vec::new(),
            stopped: false,
            _dir: dir,
        })
    }

    /// Records stored so far (durable ones).
    fn records(&self) -> u64 {
        self.server.store().stats().records
    }

    /// Stops the node: its listener and connections close, what it accepted is kept.
    fn stop(&mut self) {
        if !self.stopped {
            self.listeners = self.server.listener_stats();
            self.server.shutdown();
            self.stopped = true;
        }
    }

    /// Waits (up to `within`) until nobody is connected any more: every connection was
    /// read to its end and handed to the store.
    fn settle(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline
            && self
                .server
                .listener_stats()
                .iter()
                .any(|l| l.connections_open > 0)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Every stored record, in arrival order, with its parsed fields.
    fn stored(&self) -> Result<Vec<RecordJson>> {
        let mut out = Vec::new();
        self.server
            .store()
            .scan(&Matcher::new(Query::default())?, false, &mut |id, r| {
                out.push(RecordJson::from_record(id, r, &defaults_for(r.received_at)));
                true
            })?;
        Ok(out)
    }

    /// Records stored raw because they did not parse as syslog, truncated ones, and
    /// frames the listener could not read.
    fn bad_frames(&self) -> Result<u64> {
        let unparsed = Matcher::new(Query {
            unparsed_only: true,
            ..Query::default()
        })?;
        let mut bad = 0;
        self.server.store().scan(&unparsed, false, &mut |_, _| {
            bad += 1;
            true
        })?;
        bad += self.stored()?.iter().filter(|r| r.truncated).count() as u64;
        bad += self.listeners.iter().map(|l| l.frame_errors).sum::<u64>();
        Ok(bad)
    }
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> Result<()> {
    if !(args.duration.is_finite() && args.duration > 0.0) || args.rate == 0 {
        bail!("--duration and --rate must be positive");
    }
    let mut collectors = [Collector::start()?, Collector::start()?];
    let (a_name, b_name) = (collectors[0].name.clone(), collectors[1].name.clone());
    let mut config = Config::with_collectors(&format!("{a_name},{b_name}"))?;
    config.app_name = Some("flotilla-demo".into());
    config.app_version = Some(env!("CARGO_PKG_VERSION").into());
    config.heartbeat = Some(Duration::from_secs(1));
    // The worker's panic below is on purpose: one line for it instead of the default
    // hook's message and backtrace. The flotilla logger's hook (installed next) reports
    // it to the collectors first, then calls this one; any other panic keeps the
    // default report.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name() == Some("worker") {
            eprintln!(
                "flotilla logger-demo: the worker thread panicked on purpose ({}); the crash report went to the collectors",
                info.payload()
                    .downcast_ref::<&str>()
                    .copied()
                    .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
                    .unwrap_or("no message")
            );
        } else {
            default_hook(info);
        }
    }));
    let logger = flotilla_logger::init(config)?;
    if !args.json {
        println!(
            "flotilla logger-demo: collectors (logd) {a_name} and {b_name}; service logging {} msg/s for {} s",
            args.rate, args.duration
        );
    }

    let start = Instant::now();
    let total = Duration::from_secs_f64(args.duration);
    let interval = Duration::from_secs_f64(1.0 / f64::from(args.rate));
    let mut next = start;
    let mut logged = 0u64;
    let mut stopped: Option<String> = None;
    let mut last_status = start;
    while start.elapsed() < total {
        logged += 1;
        log::info!(seq = logged, phase = if stopped.is_some() { "after-failover" } else { "before-failover" }; "tick {logged}");
        if logged == 10 {
            let cause = std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "database refused the connection",
            );
            let err = DemoError::Load { source: cause };
            logger.error("loading the player table failed", &err);
        }
        // Half-way: stop the collector the logger is using (the one that stored the
        // most so far); it must fail over.
        if stopped.is_none()
            && start.elapsed() >= total / 2
            && let Some(in_use) = collectors.iter_mut().max_by_key(|c| c.records())
            && in_use.records() > 0
        {
            in_use.stop();
            if !args.json {
                println!(
                    "flotilla logger-demo: stopped collector {} (the one in use)",
                    in_use.name
                );
            }
            stopped = Some(in_use.name.clone());
        }
        if !args.json && last_status.elapsed() >= Duration::from_secs(1) {
            last_status = Instant::now();
            let s = logger.stats();
            let received: Vec<String> = collectors
                .iter()
                .map(|c| format!("{} {}", c.name, c.records()))
                .collect();
            println!(
                "  t={:>4.1}s logged={logged} delivered={} dropped={} stored: {}",
                start.elapsed().as_secs_f64(),
                s.delivered,
                s.dropped,
                received.join(", "),
            );
        }
        next += interval;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    // A worker thread panics on purpose: the panic hook reports it synchronously.
    let crashed = std::thread::Builder::new()
        .name("worker".into())
        .spawn(|| {
            let players: Vec<u32> = Vec::new();
            if players.is_empty() {
                panic!("on purpose: no player left in arena 7");
            }
        })?
        .join();
    if crashed.is_ok() {
        bail!("the demo's worker thread was supposed to panic");
    }
    logger.flush(Duration::from_secs(3));
    let stats = logger.stats();
    // The logger's connection closes; the collector reads it to its end, then stops
    // (making everything durable) and is queried.
    logger.shutdown(Duration::from_secs(2));
    let mut seen = Seen::default();
    let mut bad_frames = 0;
    for c in &mut collectors {
        c.settle(Duration::from_secs(3));
        c.stop();
        for record in c.stored()? {
            seen.take(&c.name, &record);
        }
        bad_frames += c.bad_frames()?;
    }

    let failed_over = match &stopped {
        Some(name) => seen.after_failover_at.iter().any(|c| c != name),
        None => false,
    };
    let received_distinct = seen.seqs.len() as u64;
    let summary = DemoSummary {
        logged,
        received_distinct,
        lost: logged.saturating_sub(received_distinct),
        per_collector: seen.per_collector.clone(),
        boot_received: seen.boot,
        error_received: seen.error,
        crash_received: seen.crash,
        received: seen.shown.clone(),
        heartbeats: seen.heartbeats,
        failed_over,
        delivered: stats.delivered,
        dropped: stats.dropped,
        bad_frames,
    };
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!("flotilla logger-demo: summary");
        println!(
            "  boot message with IP configuration: {}",
            yes(summary.boot_received)
        );
        println!(
            "  caught error with cause chain:       {}",
            yes(summary.error_received)
        );
        println!(
            "  about-to-crash message:              {}",
            yes(summary.crash_received)
        );
        for (id, text) in &summary.received {
            println!("    {id:<5} as received: {text}");
        }
        println!(
            "  heartbeats:                          {}",
            summary.heartbeats
        );
        println!(
            "  failed over after collector stop:    {}",
            yes(summary.failed_over)
        );
        println!(
            "  numbered messages: {} logged, {} received (distinct), {} lost: taken by the stopped collector's TCP but never stored (the logger resends what its TCP had not taken; RELP loses none)",
            summary.logged, summary.received_distinct, summary.lost
        );
        println!(
            "  the logger delivered {} messages in all: the numbered ones and its own (boot, heartbeats, the error, the crash report), and dropped {}",
            summary.delivered, summary.dropped
        );
        for (name, n) in &summary.per_collector {
            println!("  {name}: {n} messages");
        }
    }
    if summary.bad_frames > 0 {
        bail!(
            "the collectors saw {} undecodable frames",
            summary.bad_frames
        );
    }
    if !(summary.boot_received
        && summary.crash_received
        && summary.error_received
        && summary.failed_over)
    {
        bail!("the demo did not see everything it should have: {summary:?}");
    }
    Ok(())
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "NO" }
}

#[derive(Default)]
struct Seen {
    /// MSGID -> the first such record, as text (MSG and structured data).
    shown: BTreeMap<String, String>,
    seqs: BTreeSet<u64>,
    per_collector: Vec<(String, u64)>,
    after_failover_at: BTreeSet<String>,
    boot: bool,
    error: bool,
    crash: bool,
    heartbeats: u64,
}

impl Seen {
    /// Takes one record stored by collector `collector`.
    fn take(&mut self, collector: &str, m: &RecordJson) {
        match self.per_collector.iter_mut().find(|(n, _)| n == collector) {
            Some((_, count)) => *count += 1,
            None => self.per_collector.push((collector.to_owned(), 1)),
        }
        if let Some(id @ ("BOOT" | "ERROR" | "CRASH")) = m.msg_id.as_deref() {
            self.shown
                .entry(id.to_owned())
                .or_insert_with(|| as_received(m));
        }
        match m.msg_id.as_deref() {
            Some("BOOT") => self.boot = param(m, "ip@32473", "lo").is_some() || !m.msg.is_empty(),
            Some("ERROR") => {
                self.error =
                    param(m, "error@32473", "cause1") == Some("database refused the connection");
            }
            Some("CRASH") => {
                self.crash = m.msg.contains("about to crash") && m.msg.contains("arena 7");
            }
            Some("HEARTBEAT") => self.heartbeats += 1,
            _ => {}
        }
        if let Some(seq) = param(m, "fields@32473", "seq").and_then(|s| s.parse().ok()) {
            self.seqs.insert(seq);
            if param(m, "fields@32473", "phase") == Some("after-failover") {
                self.after_failover_at.insert(collector.to_owned());
            }
        }
    }
}

/// A record as a collector stored it: its MSG, then each structured-data element
/// `[id name="value" ...]`, cut at 400 characters.
fn as_received(m: &RecordJson) -> String {
    let mut text = m.msg.trim_end().to_owned();
    {
        for (id, params) in &m.structured_data {
            text.push_str(&format!(" [{id}"));
            if let Some(params) = params.as_object() {
                for (name, value) in params {
                    let value = value
                        .as_str()
                        .map_or_else(|| value.to_string(), str::to_owned);
                    text.push_str(&format!(" {name}={value:?}"));
                }
            }
            text.push(']');
        }
    }
    if text.chars().count() > 400 {
        text = text.chars().take(400).collect::<String>() + "…";
    }
    text
}

/// The value of parameter `name` in structured-data element `id`, if present.
fn param<'a>(m: &'a RecordJson, id: &str, name: &str) -> Option<&'a str> {
    m.structured_data.get(id)?.get(name)?.as_str()
}

/// The demo's own error type, to show a cause chain.
#[derive(Debug)]
enum DemoError {
    Load { source: std::io::Error },
}

impl std::fmt::Display for DemoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DemoError::Load { .. } => write!(f, "player table unavailable"),
        }
    }
}

impl std::error::Error for DemoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DemoError::Load { source } => Some(source),
        }
    }
}
