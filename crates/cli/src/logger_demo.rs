//! `flotilla logger-demo`: a sealed service's life as its operators see it.
//!
//! Two local collectors (TCP receivers on loopback) stand in for a log service.
//! A service logs through the flotilla logger: the boot message with its IP
//! configuration, a steady stream of numbered messages with fields, a heartbeat,
//! a caught error with its cause chain; half-way the collector in use is stopped
//! and the logger fails over to the other; at the end a thread panics on purpose
//! and the "about to crash" message arrives.
//! Everything in it is real sockets and real parsing.

use std::collections::BTreeSet;
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use flotilla_logger::Config;
use serde::Serialize;

use crate::receive::{Listener, Received};

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
    /// Heartbeats received.
    pub heartbeats: u64,
    /// The logger moved to the other collector after the first one stopped.
    pub failed_over: bool,
    /// Logger counters at the end.
    pub delivered: u64,
    /// Messages the logger dropped.
    pub dropped: u64,
    /// Frames the collectors could not decode or parse (should be 0).
    pub bad_frames: u64,
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> Result<()> {
    if !(args.duration.is_finite() && args.duration > 0.0) || args.rate == 0 {
        bail!("--duration and --rate must be positive");
    }
    let (tx, rx) = channel();
    let a = Listener::start("tcp://127.0.0.1:0", tx.clone())?;
    let b = Listener::start("tcp://127.0.0.1:0", tx)?;
    let (a_name, b_name) = (format!("tcp://{}", a.addr), format!("tcp://{}", b.addr));
    let mut config = Config::with_collectors(&format!("{a_name},{b_name}"))?;
    config.app_name = Some("flotilla-demo".into());
    config.app_version = Some(env!("CARGO_PKG_VERSION").into());
    config.heartbeat = Some(Duration::from_secs(1));
    let logger = flotilla_logger::init(config)?;
    if !args.json {
        println!(
            "flotilla logger-demo: collectors {a_name} and {b_name}; service logging {} msg/s for {} s",
            args.rate, args.duration
        );
    }

    let mut collectors = vec![(a_name.clone(), Some(a)), (b_name.clone(), Some(b))];
    let mut seen = Seen::default();
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
        seen.drain(&rx);
        // Half-way: stop the collector the logger is using; it must fail over.
        if stopped.is_none()
            && start.elapsed() >= total / 2
            && let Some(in_use) = seen.busiest_since_start()
            && let Some(slot) = collectors.iter_mut().find(|(n, _)| *n == in_use)
            && let Some(listener) = slot.1.take()
        {
            listener.stop();
            if !args.json {
                println!("flotilla logger-demo: stopped collector {in_use} (the one in use)");
            }
            stopped = Some(in_use);
        }
        if !args.json && last_status.elapsed() >= Duration::from_secs(1) {
            last_status = Instant::now();
            let s = logger.stats();
            println!(
                "  t={:>4.1}s logged={logged} delivered={} dropped={} received={:?}",
                start.elapsed().as_secs_f64(),
                s.delivered,
                s.dropped,
                seen.per_collector
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
    // Give the receivers a moment to parse what is already on the wire.
    let settle = Instant::now() + Duration::from_millis(500);
    while Instant::now() < settle {
        seen.drain(&rx);
        std::thread::sleep(Duration::from_millis(20));
    }
    logger.shutdown(Duration::from_secs(2));
    seen.drain(&rx);
    let bad_frames = collectors
        .iter()
        .filter_map(|(_, l)| l.as_ref())
        .map(|l| l.errors.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    drop(collectors);

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
        println!(
            "  heartbeats:                          {}",
            summary.heartbeats
        );
        println!(
            "  failed over after collector stop:    {}",
            yes(summary.failed_over)
        );
        println!(
            "  numbered messages: {} logged, {} received, {} lost in the stopped collector's TCP buffers (RELP loses none)",
            summary.logged, summary.received_distinct, summary.lost
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
    seqs: BTreeSet<u64>,
    per_collector: Vec<(String, u64)>,
    after_failover_at: BTreeSet<String>,
    boot: bool,
    error: bool,
    crash: bool,
    heartbeats: u64,
}

impl Seen {
    fn drain(&mut self, rx: &Receiver<Received>) {
        while let Ok(m) = rx.try_recv() {
            self.take(m);
        }
    }

    fn take(&mut self, m: Received) {
        match self
            .per_collector
            .iter_mut()
            .find(|(n, _)| *n == m.listener)
        {
            Some((_, count)) => *count += 1,
            None => self.per_collector.push((m.listener.clone(), 1)),
        }
        match m.msg_id.as_deref() {
            Some("BOOT") => self.boot = m.param("ip@32473", "lo").is_some() || !m.msg.is_empty(),
            Some("ERROR") => {
                self.error =
                    m.param("error@32473", "cause1") == Some("database refused the connection");
            }
            Some("CRASH") => {
                self.crash = m.msg.contains("about to crash") && m.msg.contains("arena 7");
            }
            Some("HEARTBEAT") => self.heartbeats += 1,
            _ => {}
        }
        if let Some(seq) = m.param("fields@32473", "seq").and_then(|s| s.parse().ok()) {
            self.seqs.insert(seq);
            if m.param("fields@32473", "phase") == Some("after-failover") {
                self.after_failover_at.insert(m.listener.clone());
            }
        }
    }

    fn busiest_since_start(&self) -> Option<String> {
        self.per_collector
            .iter()
            .max_by_key(|(_, n)| *n)
            .map(|(name, _)| name.clone())
    }
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
