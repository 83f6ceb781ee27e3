//! `flotilla sim`: deterministic simulations of a fleet (the real machines over a virtual
//! network, one seed, virtual time). The report is a function of the seed and the flags:
//! the same command prints the same JSON. Wall time goes to stderr only.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use flotilla_sim::{FailoverScenario, run_failover};

/// The simulations.
#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Kill front-ends mid-run; report how clients moved, resumed and how long each was
    /// without a front-end (virtual ms), and whether every replica converged.
    Failover(FailoverArgs),
    /// Compare how clients spread over servers with the real choice code: OS-seeded random
    /// (flotilla), time-seeded random, DNS round-robin behind caching resolvers, two
    /// choices; and where they go when the busiest server dies.
    Balance(BalanceArgs),
}

/// Flags of `flotilla sim balance`.
#[derive(Debug, Args)]
pub struct BalanceArgs {
    /// Everything random comes from it.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Clients.
    #[arg(long, default_value_t = 12_000)]
    clients: usize,
    /// Servers (front-ends).
    #[arg(long, default_value_t = 4)]
    servers: usize,
    /// Clients arrive evenly over this many seconds.
    #[arg(long, default_value_t = 10)]
    arrival_seconds: u64,
    /// Caching resolvers the DNS clients are spread over.
    #[arg(long, default_value_t = 8)]
    resolvers: usize,
    /// How long a resolver keeps its answer, in seconds.
    #[arg(long, default_value_t = 60)]
    dns_ttl_seconds: u64,
    /// Write the chart (SVG) to this file.
    #[arg(long, value_name = "FILE")]
    svg: Option<std::path::PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Flags of `flotilla sim failover`.
#[derive(Debug, Args)]
pub struct FailoverArgs {
    /// Everything random comes from it; the same seed gives the same run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Front-ends.
    #[arg(long, default_value_t = 4)]
    frontends: usize,
    /// Clients (each watches the one world and sends an input a second).
    #[arg(long, default_value_t = 1_000)]
    clients: usize,
    /// Front-ends killed at --kill-at.
    #[arg(long, default_value_t = 1)]
    kill: usize,
    /// When the front-ends die, in virtual seconds.
    #[arg(long, default_value_t = 3.0)]
    kill_at: f64,
    /// Killed front-ends vanish without resets (a machine lost, not a process): clients
    /// only have silence to go by.
    #[arg(long)]
    silent: bool,
    /// Other front-ends cut off from everyone at --kill-at.
    #[arg(long, default_value_t = 0)]
    partition: usize,
    /// How long the partition lasts, in virtual milliseconds.
    #[arg(long, default_value_t = 1000)]
    partition_ms: u64,
    /// One-way network latency, in milliseconds.
    #[arg(long, default_value_t = 10.0)]
    latency_ms: f64,
    /// Up to this much more per send, uniformly, in milliseconds.
    #[arg(long, default_value_t = 5.0)]
    jitter_ms: f64,
    /// Probability that a send needs one retransmission (200 ms later).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// The whole run, in virtual seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Print the report as JSON (the same bytes for the same seed and flags).
    #[arg(long)]
    json: bool,
}

/// Runs a simulation.
pub fn run(command: SimCommand) -> Result<()> {
    match command {
        SimCommand::Failover(args) => failover(args),
        SimCommand::Balance(args) => balance(args),
    }
}

fn balance(args: BalanceArgs) -> Result<()> {
    let scenario = flotilla_sim::BalanceScenario {
        seed: args.seed,
        clients: args.clients,
        servers: args.servers,
        arrival: Duration::from_secs(args.arrival_seconds.max(1)),
        resolvers: args.resolvers,
        dns_ttl: Duration::from_secs(args.dns_ttl_seconds),
    };
    let report = flotilla_sim::run_balance(&scenario).map_err(anyhow::Error::msg)?;
    if let Some(path) = &args.svg {
        let svg = flotilla_sim::render_svg(&report).map_err(anyhow::Error::msg)?;
        std::fs::write(path, svg)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
        eprintln!("chart written to {}", path.display());
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "{} clients over {} servers (seed {}); a binomial count has σ = {:.1} at this size",
        report.clients,
        report.servers,
        report.seed,
        report
            .strategies
            .first()
            .map_or(0.0, |s| s.settled.expected_sigma)
    );
    println!(
        "{:<16} {:>10} {:>10} {:>9}   {:<28} {:>10} {:>9}",
        "strategy",
        "max/mean",
        "min/mean",
        "worst σ",
        "clients per server",
        "after kill",
        "worst σ"
    );
    for strategy in &report.strategies {
        println!(
            "{:<16} {:>10.3} {:>10.3} {:>9.1}   {:<28} {:>10.3} {:>9.1}",
            strategy.name,
            strategy.settled.max_over_mean,
            strategy.settled.min_over_mean,
            strategy.settled.worst_sigma,
            format!("{:?}", strategy.settled.per_server),
            strategy.after_kill.max_over_mean,
            strategy.after_kill.worst_sigma,
        );
    }
    println!(
        "(within ±4σ is what random choice promises; the busiest server dies for \"after kill\")"
    );
    Ok(())
}

fn millis(value: f64, what: &str) -> Result<Duration> {
    if !value.is_finite() || value < 0.0 {
        bail!("{what} must be a number of milliseconds, 0 or more (got {value})");
    }
    Ok(Duration::from_secs_f64(value / 1000.0))
}

fn failover(args: FailoverArgs) -> Result<()> {
    if !(0.0..=1.0).contains(&args.loss) {
        bail!("--loss must be between 0 and 1 (got {})", args.loss);
    }
    let duration = millis(args.seconds * 1000.0, "--seconds")?;
    let kill_at = millis(args.kill_at * 1000.0, "--kill-at")?;
    if kill_at + Duration::from_secs(2) >= duration {
        bail!(
            "--kill-at must be at least 2 s before the end of --seconds (the last 2 s let replicas settle)"
        );
    }
    let mut scenario = FailoverScenario {
        seed: args.seed,
        kill: args.kill,
        kill_at,
        partition: args.partition,
        partition_for: Duration::from_millis(args.partition_ms),
        duration,
        ..FailoverScenario::default()
    };
    scenario.shape.frontends = args.frontends;
    scenario.shape.clients = args.clients;
    scenario.shape.silent_kills = args.silent;
    scenario.shape.network.latency = millis(args.latency_ms, "--latency-ms")?;
    scenario.shape.network.jitter = millis(args.jitter_ms, "--jitter-ms")?;
    scenario.shape.network.loss = args.loss;
    #[allow(clippy::disallowed_methods)] // wall time of the run, reported on stderr only
    let started = Instant::now();
    let report = run_failover(&scenario).map_err(anyhow::Error::msg)?;
    let wall = started.elapsed();
    eprintln!(
        "simulated {:.1} s in {:.2} s of wall time ({:.3} s per simulated second, {} events)",
        duration.as_secs_f64(),
        wall.as_secs_f64(),
        wall.as_secs_f64() / duration.as_secs_f64(),
        report.events
    );
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "seed {}: {} clients over {} front-ends; killed {:?}{}",
        report.seed,
        report.clients,
        report.frontends,
        report.killed,
        if report.partitioned.is_empty() {
            String::new()
        } else {
            format!(", partitioned {:?}", report.partitioned)
        }
    );
    println!(
        "moved {}: resumed {}, new session {}, stranded {}; other clients that lost their front-end: {}; gave up: {}",
        report.moved,
        report.resumed,
        report.not_resumed,
        report.stranded,
        report.other_losses,
        report.gave_up
    );
    println!(
        "noticed after (virtual ms): p50 {:.0}, p99 {:.0}, max {:.0}",
        report.noticed.p50_ms, report.noticed.p99_ms, report.noticed.max_ms
    );
    println!(
        "without a front-end (virtual ms): p50 {:.0}, p99 {:.0}, max {:.0}",
        report.without_frontend.p50_ms,
        report.without_frontend.p99_ms,
        report.without_frontend.max_ms
    );
    println!(
        "replicas equal to the game server's state at the end: {} of {}",
        report.replicas_converged, report.clients
    );
    println!(
        "inputs: {} sent, {} received by the game server",
        report.inputs_sent, report.inputs_received
    );
    println!(
        "clients per front-end at the end: {}",
        report
            .clients_per_frontend
            .iter()
            .map(|(i, n)| format!("fe-{i}={n}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "event digest {} ({} events)",
        report.event_digest, report.events
    );
    Ok(())
}
