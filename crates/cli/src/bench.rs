//! `flotilla bench …`: benchmarks that print one JSON object.
//!
//! `flotilla bench logger` measures, in one run and against the same loopback sink:
//! - flotilla's logger over TCP at a fixed offered rate (default 1,000,000 msg/s):
//!   delivered rate and drops;
//! - flotilla's logger at saturation (the application logs as fast as it can);
//! - the `syslog` crate's TCP logger on the same messages (synchronous: one
//!   formatted write and flush per message, no framing).
//!
//! Each message is "user logged in" plus two fields (`user`, `action`). flotilla's sink
//! is a log-service node in this process (`flotilla_logd`: TCP listener on loopback, a
//! temporary data directory): a message counts as received once it is stored, and the
//! delivered rate is measured at the sink from the records' received-at times (when the
//! listener read them), first to last. The `syslog` crate writes RFC 5424 with no
//! framing at all (no octet count, no LF), which no syslog receiver can split into
//! messages, logd included: its sink stays a plain TCP reader counting `<` bytes.
//!
//! `flotilla bench hop`, `fanout` and `connections` run the front-end benchmarks of
//! `flotilla-bench` (see that crate's docs for the harness): the front-end under test and
//! the observers run as `flotilla bench worker …` child processes (hidden subcommand),
//! killed when the benchmark ends.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use flotilla_bench::WorkerLauncher;
use flotilla_logd::listen::ListenSpec;
use flotilla_logd::record::now_nanos;
use flotilla_logd::server::{Server, ServerConfig};
use flotilla_logd::{Matcher, Query};
use flotilla_logger::{Config, DropPolicy, Logger};
use serde::Serialize;

/// Which benchmark to run.
#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// The logger: delivered messages/s over TCP and the cost of a log call,
    /// side by side with the `syslog` crate.
    Logger(LoggerArgs),
    /// Round trip input -> game server -> output through one front-end versus directly
    /// to the game server.
    Hop(HopArgs),
    /// One player's round trip through a front-end while another client floods it with
    /// inputs (flat-out, reconnecting when closed; and paced under the input budget),
    /// against the same round trip unloaded.
    Flood(FloodArgs),
    /// One world, N observers: delivered batches/s, latency and front-end CPU, at a
    /// fixed rate and at saturation, side by side with nats-server.
    Fanout(FanoutArgs),
    /// Idle observers on one front-end: user-space memory per connection.
    Connections(ConnectionsArgs),
    /// Many observers of one world over K front-end processes (a tournament final):
    /// subscribe time, deliveries, lag, game links lost, CPU and memory per connection,
    /// the game server's bytes per front-end link.
    Bigfinal(BigFinalArgs),
    /// A front-end process killed (or frozen) under its clients: how soon they notice,
    /// reconnect to another at random, resume and carry on.
    Failover(FailoverArgs),
    /// Client-side random balance on real processes: N fleet clients in P processes over
    /// K front-end processes, per-front-end counts and their spread in σ, before and after
    /// one front-end is killed.
    Spread(SpreadArgs),
    /// The log service against rsyslog and ripgrep: ingest (loggen over TCP), durable
    /// ingest over RELP, bytes on disk, rare-token queries, memory.
    Logd(LogdBenchArgs),
    /// A benchmark worker process (started by the benchmarks themselves).
    #[command(hide = true)]
    Worker {
        #[command(subcommand)]
        worker: flotilla_bench::WorkerArgs,
    },
}

/// Arguments of `flotilla bench logd`.
#[derive(clap::Args, Debug)]
pub struct LogdBenchArgs {
    /// Seconds of loggen per target and round.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Interleaved ingest rounds (rsyslog, logd, ...); the medians are compared.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Realistic messages stored in both for the query and disk figures.
    #[arg(long, default_value_t = 10_000_000)]
    messages: u64,
    /// RELP messages per target.
    #[arg(long, default_value_t = 200_000)]
    relp_messages: u64,
    /// Rare-token queries timed (and rounds of each multi-node query).
    #[arg(long, default_value_t = 5)]
    queries: usize,
    /// Services of the fleet part (boots, a heartbeat every 10 s, traffic; 0 skips it).
    #[arg(long, default_value_t = 10_000)]
    fleet_services: usize,
    /// Seconds of load per fleet round.
    #[arg(long, default_value_t = 10)]
    fleet_seconds: u64,
    /// Pairs of fleet rounds (--no-watch, then fleet view and alerts), interleaved.
    #[arg(long, default_value_t = 3)]
    fleet_rounds: usize,
    /// Crash messages per fleet round (timed to the Alertmanager alert in watch rounds).
    #[arg(long, default_value_t = 25)]
    crashes: usize,
    /// Messages on each of the 3 nodes of the multi-node query part (default: --messages,
    /// and node A is then the query part's data; 0 skips it).
    #[arg(long)]
    node_messages: Option<u64>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `flotilla bench failover`.
#[derive(clap::Args, Debug)]
pub struct FailoverArgs {
    /// Clients (FleetClients in this process), all watching one world.
    #[arg(long, default_value_t = 1_000)]
    clients: usize,
    /// Front-end processes; the first one fails.
    #[arg(long, default_value_t = 3)]
    frontends: usize,
    /// How it fails, in order, one run each: kill (SIGKILL) and/or hang (SIGSTOP).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "kill,hang")]
    mode: Vec<flotilla_bench::FailureMode>,
    /// The clients' keep-alive ping interval in milliseconds (default: the protocol's).
    #[arg(long)]
    ping_ms: Option<u64>,
    /// The clients' idle timeout in milliseconds: silence after which a front-end is
    /// given up (default: the protocol's).
    #[arg(long)]
    idle_ms: Option<u64>,
    /// Print the JSON object on one line.
    #[arg(long)]
    json: bool,
}

/// Arguments of `flotilla bench spread`.
#[derive(clap::Args, Debug)]
pub struct SpreadArgs {
    /// Fleet clients in all.
    #[arg(long, default_value_t = 12_000)]
    clients: usize,
    /// Front-end processes; the first one is killed.
    #[arg(long, default_value_t = 4)]
    frontends: usize,
    /// Client worker processes the clients are spread over.
    #[arg(long, default_value_t = 6)]
    processes: usize,
    /// Print the JSON object on one line.
    #[arg(long)]
    json: bool,
}

/// The reports of `flotilla bench failover`, one per failure mode.
#[derive(Debug, Serialize)]
pub struct FailoverRuns {
    /// Always `"failover"`.
    pub bench: &'static str,
    /// One report per mode, in the order run.
    pub runs: Vec<flotilla_bench::FailoverReport>,
}

/// Arguments of `flotilla bench flood`.
#[derive(clap::Args, Debug)]
pub struct FloodArgs {
    /// The player's measured round trips per phase.
    #[arg(long, default_value_t = 5_000)]
    requests: usize,
    /// Its unmeasured round trips first.
    #[arg(long, default_value_t = 500)]
    warmup: usize,
    /// Payload bytes per input.
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// The paced flooder's inputs a second (80% of the front-end's default budget).
    #[arg(long, default_value_t = 1_600)]
    paced_rate: u64,
    /// The player's round trips a second at most.
    #[arg(long, default_value_t = 1_000)]
    player_rate: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `flotilla bench hop`.
#[derive(clap::Args, Debug)]
pub struct HopArgs {
    /// Measured requests per path.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Unmeasured requests per path first.
    #[arg(long, default_value_t = 1_000)]
    warmup: usize,
    /// Payload bytes per request.
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Rounds the measured requests are split into (ratios per round, and their
    /// median).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Placements to measure, in order (the targets are judged on the first):
    /// `one-core` pins the harness, the game server and the front-end to one CPU, `free`
    /// leaves them to the scheduler.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "one-core,free"
    )]
    placement: Vec<flotilla_bench::Placement>,
    /// Print the JSON object on one line.
    #[arg(long)]
    json: bool,
}

/// Arguments of `flotilla bench fanout`.
#[derive(clap::Args, Debug)]
pub struct FanoutArgs {
    /// Observer counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    observers: Vec<usize>,
    /// Changes per second at the fixed rate (default: --deliveries / observers).
    #[arg(long)]
    rate: Option<u64>,
    /// Total deliveries per second the fixed rate aims at when --rate is not given.
    #[arg(long, default_value_t = 1_000_000)]
    deliveries: u64,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Observer connections per worker process at most.
    #[arg(long, default_value_t = 5_000)]
    per_process: usize,
    /// Reader threads per observer process.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Systems to run, comma-separated (flotilla, nats).
    #[arg(long, value_delimiter = ',', default_value = "flotilla,nats")]
    systems: Vec<flotilla_bench::lean::Protocol>,
    /// How flotilla's observers connect, comma-separated (tcp, tls, ws, wss); TLS and
    /// WebSocket runs are compared with TCP's (CPU per delivered batch, throughput, p99).
    #[arg(long, value_delimiter = ',', default_value = "tcp")]
    transports: Vec<flotilla_bench::transport::Transport>,
    /// Print the JSON object on one line.
    #[arg(long)]
    json: bool,
}

/// Arguments of `flotilla bench bigfinal`.
#[derive(clap::Args, Debug)]
pub struct BigFinalArgs {
    /// Observers in all.
    #[arg(long, default_value_t = 20_000)]
    observers: usize,
    /// Front-end processes (the observers are spread evenly).
    #[arg(long, default_value_t = 2)]
    frontends: usize,
    /// Changes per second of the world.
    #[arg(long, default_value_t = 20)]
    rate: u64,
    /// Bytes per change.
    #[arg(long, default_value_t = 300)]
    payload: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Observer connections per worker process at most.
    #[arg(long, default_value_t = 10_000)]
    per_process: usize,
    /// The front-ends' coalescing threshold in bytes (0: every batch is delivered);
    /// default the front-end's.
    #[arg(long)]
    coalesce_above: Option<usize>,
    /// How often each observer pings, in milliseconds (default 20,000: what the protocol
    /// asks of a receiving client); the front-ends then close clients silent for three
    /// times that (at least 60 s). A what-if for the observers' keep-alive budget.
    #[arg(long)]
    observer_ping_ms: Option<u64>,
    /// How often each observer worker thread polls its sockets at most, in milliseconds
    /// (0: at every arrival). A worker stands in for thousands of devices elsewhere;
    /// woken at every arrival it makes the front-ends pay its wake-ups (on loopback they
    /// run in the sender's write). Adds at most this much to the measured lag.
    #[arg(long, default_value_t = 5.0)]
    observer_poll_ms: f64,
    /// Then run the floor with the same observers: writer processes that do nothing but
    /// send each observer the latest state once per pass (no game link, no machine, no
    /// queues), the freshest replicas one TCP connection per observer allows here. Its
    /// figures go in the report's `floor`.
    #[arg(long)]
    floor: bool,
    /// Print the JSON object on one line.
    #[arg(long)]
    json: bool,
}

/// Arguments of `flotilla bench connections`.
#[derive(clap::Args, Debug)]
pub struct ConnectionsArgs {
    /// Idle observers.
    #[arg(long, default_value_t = 15_000)]
    count: usize,
    /// Observer connections per worker process at most.
    #[arg(long, default_value_t = 10_000)]
    per_process: usize,
    /// Seconds the observers stay idle before measuring.
    #[arg(long, default_value_t = 3.0)]
    idle_seconds: f64,
    /// How the observers connect (tcp, tls, ws, wss).
    #[arg(long, value_enum, default_value = "tcp")]
    transport: flotilla_bench::transport::Transport,
    /// Print the JSON object on one line.
    #[arg(long)]
    json: bool,
}

fn print_report(report: &impl Serialize, one_line: bool) -> Result<()> {
    if one_line {
        println!("{}", serde_json::to_string(report)?);
    } else {
        println!("{}", serde_json::to_string_pretty(report)?);
    }
    Ok(())
}

/// Arguments of `flotilla bench logger`.
#[derive(clap::Args, Debug)]
pub struct LoggerArgs {
    /// Offered rate for the fixed-rate run, messages per second.
    #[arg(long, default_value_t = 1_000_000)]
    rate: u64,
    /// Seconds per run.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Queue capacity of the flotilla logger.
    #[arg(long, default_value_t = 262_144)]
    queue: usize,
}

/// Runs a benchmark.
pub fn run(which: BenchCommand) -> Result<()> {
    match which {
        BenchCommand::Logger(args) => {
            let report = logger_bench(&args)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        BenchCommand::Hop(args) => {
            let config = flotilla_bench::HopConfig {
                requests: args.requests,
                warmup: args.warmup,
                payload_len: args.payload,
                rounds: args.rounds,
                placements: args.placement.clone(),
            };
            let report = flotilla_bench::run_hop(&config, &WorkerLauncher::flotilla_cli()?)?;
            print_report(&report, args.json)
        }
        BenchCommand::Flood(args) => {
            let config = flotilla_bench::FloodConfig {
                requests: args.requests,
                warmup: args.warmup,
                payload_len: args.payload,
                paced_rate: args.paced_rate,
                player_rate: args.player_rate,
            };
            let report = flotilla_bench::run_flood(&config, &WorkerLauncher::flotilla_cli()?)?;
            print_report(&report, args.json)
        }
        BenchCommand::Fanout(args) => {
            let config = flotilla_bench::FanoutConfig {
                observers: args.observers,
                rate: args.rate,
                deliveries_per_second: args.deliveries,
                seconds: args.seconds,
                per_process: args.per_process,
                threads: args.threads,
                systems: args.systems,
                transports: args.transports,
                ..flotilla_bench::FanoutConfig::default()
            };
            let report = flotilla_bench::run_fanout(&config, &WorkerLauncher::flotilla_cli()?)?;
            print_report(&report, args.json)
        }
        BenchCommand::Connections(args) => {
            let config = flotilla_bench::ConnectionsConfig {
                count: args.count,
                per_process: args.per_process,
                idle_seconds: args.idle_seconds,
                transport: args.transport,
            };
            let report =
                flotilla_bench::run_connections(&config, &WorkerLauncher::flotilla_cli()?)?;
            print_report(&report, args.json)
        }
        BenchCommand::Bigfinal(args) => {
            let config = flotilla_bench::BigFinalConfig {
                observers: args.observers,
                frontends: args.frontends,
                rate: args.rate,
                payload_len: args.payload,
                seconds: args.seconds,
                per_process: args.per_process,
                coalesce_above: args.coalesce_above,
                observer_ping: args.observer_ping_ms.map(std::time::Duration::from_millis),
                observer_poll: std::time::Duration::try_from_secs_f64(
                    args.observer_poll_ms / 1000.0,
                )
                .map_err(|error| anyhow::anyhow!("--observer-poll-ms: {error}"))?,
                floor: args.floor,
            };
            let report = flotilla_bench::run_bigfinal(&config, &WorkerLauncher::flotilla_cli()?)?;
            print_report(&report, args.json)
        }
        BenchCommand::Failover(args) => {
            let launcher = WorkerLauncher::flotilla_cli()?;
            let mut runs = Vec::with_capacity(args.mode.len());
            for &mode in &args.mode {
                let config = flotilla_bench::FailoverBenchConfig {
                    clients: args.clients,
                    frontends: args.frontends,
                    mode,
                    client_ping_interval: args.ping_ms.map(Duration::from_millis),
                    client_idle_timeout: args.idle_ms.map(Duration::from_millis),
                    ..flotilla_bench::FailoverBenchConfig::default()
                };
                runs.push(flotilla_bench::run_failover(&config, &launcher)?);
            }
            print_report(
                &FailoverRuns {
                    bench: "failover",
                    runs,
                },
                args.json,
            )
        }
        BenchCommand::Spread(args) => {
            let config = flotilla_bench::SpreadConfig {
                clients: args.clients,
                frontends: args.frontends,
                processes: args.processes,
                ..flotilla_bench::SpreadConfig::default()
            };
            let report = flotilla_bench::run_spread(&config, &WorkerLauncher::flotilla_cli()?)?;
            print_report(&report, args.json)
        }
        BenchCommand::Logd(args) => {
            let mut config = flotilla_bench::LogdBenchConfig::full(std::env::current_exe()?);
            config.ingest_seconds = args.seconds.max(1);
            config.ingest_rounds = args.rounds.max(1);
            config.query_messages = args.messages.max(1000);
            config.relp_messages = args.relp_messages.max(100);
            config.queries = args.queries.max(1);
            config.fleet_services = args.fleet_services;
            config.fleet_seconds = args.fleet_seconds.max(1);
            config.fleet_rounds = args.fleet_rounds.max(1);
            config.fleet_crashes_per_round = args.crashes;
            config.node_messages = args.node_messages.unwrap_or(config.query_messages);
            let report = flotilla_bench::run_logd_bench(&config)?;
            print_report(&report, args.json)
        }
        BenchCommand::Worker { worker } => Ok(flotilla_bench::worker_main(worker)?),
    }
}

/// One run's figures.
#[derive(Debug, Serialize)]
pub struct RunReport {
    /// What ran.
    pub name: String,
    /// Messages the application logged.
    pub logged: u64,
    /// Benchmark messages that reached the sink (the logger's own heartbeats and drop
    /// notices are not counted).
    pub received: u64,
    /// Benchmark messages that did not reach the sink: `logged - received`.
    pub dropped: u64,
    /// Of those, what the logger's own counter says it dropped (its bounded queue was
    /// full); for the `syslog` crate, its failed writes.
    pub dropped_by_sender: u64,
    /// Wall time of the application's logging loop, seconds.
    pub log_seconds: f64,
    /// Mean cost of one log call on the application thread, nanoseconds.
    pub ns_per_call: f64,
    /// Messages per second received by the sink, first to last byte.
    pub delivered_per_second: f64,
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct LoggerReport {
    /// Benchmark name.
    pub bench: &'static str,
    /// Offered rate of the fixed-rate run.
    pub offered_rate: u64,
    /// flotilla at the offered rate.
    pub flotilla_fixed_rate: RunReport,
    /// flotilla with the application logging as fast as it can.
    pub flotilla_saturation: RunReport,
    /// The `syslog` crate's TCP logger, as fast as it can.
    pub syslog_crate: RunReport,
    /// flotilla saturation delivered rate / syslog crate delivered rate.
    pub speedup_vs_syslog_crate: f64,
}

/// flotilla's sink: a logd node on loopback (TCP listener, temporary data directory).
/// Received means stored; the rate comes from the stored records' received-at times.
struct LogdSink {
    server: Server,
    addr: std::net::SocketAddr,
    /// Id of the current run's first record.
    base: u64,
    /// When the current run started (ns since the Unix epoch).
    since: i64,
    _dir: tempfile::TempDir,
}

impl LogdSink {
    fn start() -> Result<LogdSink> {
        let dir = tempfile::Builder::new()
            .prefix("flotilla-bench-logger-")
            .tempdir()
            .context("creating the sink's data directory")?;
        let mut config = ServerConfig::new(dir.path());
        config.listen = vec![ListenSpec::parse("tcp://127.0.0.1:0")?];
        config.http = None;
        // Room for a whole run's burst while the store writes: the listener reads at the
        // logger's pace instead of slowing it down (logd's default is 64 MiB).
        config.store.queue_bytes = 2 << 30;
        // One connection: one I/O thread, one core less taken from the logger under test.
        config.worker_threads = 1;
        let server = Server::start(config).context("starting the sink (logd)")?;
        let addr = server
            .addr_of("tcp")
            .context("the sink has no TCP listener")?;
        Ok(LogdSink {
            base: server.store().stats().next_id,
            server,
            addr,
            since: now_nanos(),
            _dir: dir,
        })
    }

    /// Records of this run stored so far (durable and visible to queries: ids are
    /// consecutive in arrival order).
    fn received(&self) -> u64 {
        self.server.store().stats().next_id - self.base
    }

    /// Waits until `expected` messages are stored or nothing arrived for a while.
    fn wait_for(&self, expected: u64, idle: Duration) -> u64 {
        let mut last_count = 0;
        let mut last_change = Instant::now();
        loop {
            let c = self.received();
            if c >= expected {
                return c;
            }
            if c != last_count {
                last_count = c;
                last_change = Instant::now();
            } else if last_change.elapsed() > idle {
                return c;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Starts counting afresh.
    fn reset(&mut self) {
        self.base = self.server.store().stats().next_id;
        self.since = now_nanos();
    }

    /// The benchmark's own messages stored in this run ("user logged in"; the logger's
    /// heartbeats and drop notices say other words).
    fn benchmark_messages(&self) -> u64 {
        let Ok(ours) = Matcher::new(Query {
            since: Some(self.since),
            grep: vec!["logged".to_owned()],
            ..Query::default()
        }) else {
            return 0;
        };
        let mut count = 0;
        let _ = self.server.store().scan(&ours, false, &mut |_, _| {
            count += 1;
            true
        });
        count
    }

    /// Benchmark messages of this run per second, from the first record's received-at
    /// time to the last one's.
    fn rate(&self) -> f64 {
        let Ok(this_run) = Matcher::new(Query {
            since: Some(self.since),
            ..Query::default()
        }) else {
            return 0.0;
        };
        let edge = |newest_first: bool| {
            let mut at = None;
            let _ = self
                .server
                .store()
                .scan(&this_run, newest_first, &mut |_, r| {
                    at = Some(r.received_at);
                    false
                });
            at
        };
        match (edge(false), edge(true)) {
            (Some(first), Some(last)) if last > first => {
                self.benchmark_messages() as f64 / ((last - first) as f64 / 1e9)
            }
            _ => 0.0,
        }
    }
}

/// The `syslog` crate's sink: a TCP reader on loopback counting `<` bytes, which start
/// each message and appear nowhere else in the benchmark's messages (the crate's stream
/// has no framing to split it by).
struct Sink {
    addr: std::net::SocketAddr,
    count: Arc<AtomicU64>,
    first: Arc<std::sync::Mutex<Option<Instant>>>,
    last: Arc<std::sync::Mutex<Option<Instant>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sink {
    fn start() -> Result<Sink> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let count = Arc::new(AtomicU64::new(0));
        let first = Arc::new(std::sync::Mutex::new(None));
        let last = Arc::new(std::sync::Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (count, first, last, stop) =
                (count.clone(), first.clone(), last.clone(), stop.clone());
            std::thread::Builder::new()
                .name("bench-sink".into())
                .spawn(move || {
                    listener.set_nonblocking(true).ok();
                    let mut conns: Vec<TcpStream> = Vec::new();
                    let mut buf = vec![0u8; 1 << 20];
                    while !stop.load(Ordering::SeqCst) {
                        if let Ok((s, _)) = listener.accept() {
                            s.set_read_timeout(Some(Duration::from_millis(20))).ok();
                            conns.push(s);
                        }
                        if conns.is_empty() {
                            std::thread::sleep(Duration::from_millis(1));
                            continue;
                        }
                        for stream in conns.iter_mut() {
                            let Ok(n) = stream.read(&mut buf) else {
                                continue;
                            };
                            if n == 0 {
                                continue;
                            }
                            let now = Instant::now();
                            if let Ok(mut f) = first.lock() {
                                f.get_or_insert(now);
                            }
                            let data = buf.get(..n).unwrap_or(&[]);
                            let frames = data.iter().filter(|&&b| b == b'<').count() as u64;
                            count.fetch_add(frames, Ordering::Relaxed);
                            if let Ok(mut l) = last.lock() {
                                *l = Some(now);
                            }
                        }
                    }
                })?
        };
        Ok(Sink {
            addr,
            count,
            first,
            last,
            stop,
            thread: Some(thread),
        })
    }

    /// Waits until `expected` messages arrived or nothing arrived for a while.
    fn wait_for(&self, expected: u64, idle: Duration) -> u64 {
        let mut last_count = 0;
        let mut last_change = Instant::now();
        loop {
            let c = self.count.load(Ordering::Relaxed);
            if c >= expected {
                return c;
            }
            if c != last_count {
                last_count = c;
                last_change = Instant::now();
            } else if last_change.elapsed() > idle {
                return c;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn rate(&self) -> f64 {
        let first = self.first.lock().ok().and_then(|f| *f);
        let last = self.last.lock().ok().and_then(|l| *l);
        match (first, last) {
            (Some(f), Some(l)) if l > f => {
                self.count.load(Ordering::Relaxed) as f64 / (l - f).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Logs one benchmark message through the `log` facade (the realistic path).
#[inline]
fn log_one(i: u64) {
    log::info!(user = i, action = "login"; "user logged in");
}

fn flotilla_run(
    name: &str,
    sink: &LogdSink,
    logger: &Logger,
    rate: Option<u64>,
    seconds: f64,
) -> RunReport {
    let before = logger.stats();
    let duration = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut logged = 0u64;
    let mut busy = Duration::ZERO;
    match rate {
        Some(rate) => {
            // Paced in 1 ms slices: each slice logs rate/1000 messages.
            let per_slice = (rate / 1000).max(1);
            let mut slice_start = start;
            while start.elapsed() < duration {
                let t0 = Instant::now();
                for _ in 0..per_slice {
                    log_one(logged);
                    logged += 1;
                }
                busy += t0.elapsed();
                slice_start += Duration::from_millis(1);
                while Instant::now() < slice_start {
                    std::hint::spin_loop();
                }
            }
        }
        None => {
            while start.elapsed() < duration {
                let t0 = Instant::now();
                for _ in 0..1000 {
                    log_one(logged);
                    logged += 1;
                }
                busy += t0.elapsed();
            }
        }
    }
    let log_seconds = start.elapsed().as_secs_f64();
    logger.flush(Duration::from_secs(30));
    let after = logger.stats();
    let dropped_by_sender = after.dropped - before.dropped;
    // Wait for everything the logger delivered (its own messages included), then count
    // only the benchmark's.
    let _ = sink.wait_for(logged - dropped_by_sender, Duration::from_secs(2));
    let received = sink.benchmark_messages();
    RunReport {
        name: name.to_owned(),
        logged,
        received,
        dropped: logged.saturating_sub(received),
        dropped_by_sender,
        log_seconds,
        ns_per_call: busy.as_nanos() as f64 / logged.max(1) as f64,
        delivered_per_second: sink.rate(),
    }
}

fn logger_bench(args: &LoggerArgs) -> Result<LoggerReport> {
    if !(args.seconds.is_finite() && args.seconds > 0.0) || args.rate == 0 {
        bail!("--seconds and --rate must be positive");
    }
    // flotilla, fixed rate then saturation, through the global `log` facade into
    // one logger and one sink (reset between the runs).
    let mut sink = LogdSink::start()?;
    let mut config = Config::with_collectors(&format!("tcp://{}", sink.addr))?;
    config.app_name = Some("bench".into());
    config.hostname = Some("bench-host".into());
    config.include_target = false;
    config.queue_capacity = args.queue;
    config.drop_policy = DropPolicy::DropNewest;
    let logger = Logger::start(config)?;
    log::set_boxed_logger(Box::new(logger.clone())).context("installing the global logger")?;
    log::set_max_level(log::LevelFilter::Info);
    let fixed = flotilla_run(
        "flotilla tcp, fixed rate",
        &sink,
        &logger,
        Some(args.rate),
        args.seconds,
    );
    sink.reset();
    let saturation = flotilla_run(
        "flotilla tcp, saturation",
        &sink,
        &logger,
        None,
        args.seconds,
    );
    logger.shutdown(Duration::from_secs(5));
    sink.server.shutdown();
    drop(sink);

    let syslog_crate = syslog_crate_run(args.seconds)?;
    let speedup = if syslog_crate.delivered_per_second > 0.0 {
        saturation.delivered_per_second / syslog_crate.delivered_per_second
    } else {
        0.0
    };
    Ok(LoggerReport {
        bench: "logger",
        offered_rate: args.rate,
        flotilla_fixed_rate: fixed,
        flotilla_saturation: saturation,
        syslog_crate,
        speedup_vs_syslog_crate: speedup,
    })
}

fn syslog_crate_run(seconds: f64) -> Result<RunReport> {
    let sink = Sink::start()?;
    let formatter = syslog::Formatter5424 {
        facility: syslog::Facility::LOG_USER,
        hostname: Some("bench-host".into()),
        process: "bench".into(),
        pid: std::process::id(),
    };
    let mut writer =
        syslog::tcp(formatter, sink.addr).map_err(|e| anyhow::anyhow!("syslog crate: {e}"))?;
    let duration = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut logged = 0u64;
    let mut failed = 0u64;
    while start.elapsed() < duration {
        for _ in 0..1000 {
            let mut data = std::collections::BTreeMap::new();
            let mut params = std::collections::BTreeMap::new();
            params.insert("user".to_owned(), logged.to_string());
            params.insert("action".to_owned(), "login".to_owned());
            data.insert("fields@32473".to_owned(), params);
            if writer.info((0u32, data, "user logged in")).is_err() {
                failed += 1;
            }
            logged += 1;
        }
    }
    let log_seconds = start.elapsed().as_secs_f64();
    let received = sink.wait_for(logged, Duration::from_secs(2));
    Ok(RunReport {
        name: "syslog crate tcp (synchronous)".into(),
        logged,
        received,
        dropped: logged.saturating_sub(received),
        dropped_by_sender: failed,
        log_seconds,
        ns_per_call: log_seconds * 1e9 / logged.max(1) as f64,
        delivered_per_second: sink.rate(),
    })
}
