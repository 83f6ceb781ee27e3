//! Worker processes: the front-end under test and the observers run in processes of
//! their own. The harness spawns `<program> <prefix…> <worker command>` (the CLI's
//! `flotilla bench worker …`, or this crate's `flotilla-bench-worker` binary), talks to
//! it with lines on stdin (`start`, `stop`) and reads JSON lines on stdout (`listening`,
//! `ready`, `report`); a [`Worker`] kills its process when dropped, error or not.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use flotilla_frontend::{FrontendConfig, FrontendServer};
use serde_json::{Value, json};

use crate::BenchError;
use crate::lean::Protocol;
use crate::observe::{ObserverPool, ObserverReport, ObserverSettings, ReadyCounts};
use crate::transport::Transport;

/// The hidden `worker` subcommands (run by the harness, not by people).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum WorkerArgs {
    /// Run a front-end connected to one game server; prints `{"event":"listening",…}`
    /// and serves until stdin closes.
    Frontend {
        /// The game server's address.
        #[arg(long)]
        game: String,
        /// Where to listen for clients.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Run every thread of the worker on this CPU only.
        #[arg(long)]
        cpu: Option<usize>,
        /// The fleet's session-token key file (64 hex digits); default: a key of this
        /// process only.
        #[arg(long)]
        token_key_file: Option<PathBuf>,
        /// Also listen for TLS, WebSocket and WebSocket-over-TLS clients (on free ports,
        /// printed in the `listening` line) with this certificate chain (PEM)...
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// ...and this key (PEM).
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Each client's input budget a second (0: none); default the front-end's.
        #[arg(long)]
        max_inputs_per_second: Option<u32>,
        /// Coalesce an observer's queued batches into the latest state past this many
        /// bytes (0: never, every batch is delivered); default the front-end's.
        #[arg(long)]
        coalesce_above: Option<usize>,
        /// Close a client silent this long (milliseconds); default the front-end's.
        #[arg(long)]
        client_idle_timeout_ms: Option<u64>,
    },
    /// Run observers: connect, handshake, subscribe, print `{"event":"ready",…}`, then
    /// obey `start` / `stop` lines on stdin (each `stop` prints a report) until stdin
    /// closes.
    Observers {
        /// flotilla or nats.
        #[arg(long, value_enum)]
        protocol: Protocol,
        /// The server's address.
        #[arg(long)]
        server: SocketAddr,
        /// The world (flotilla) or subject (NATS).
        #[arg(long)]
        target: String,
        /// Number of connections.
        #[arg(long)]
        count: usize,
        /// Reader threads.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Source addresses to connect from, comma-separated (127.0.0.x).
        #[arg(long, value_delimiter = ',', default_value = "127.0.0.1")]
        source: Vec<Ipv4Addr>,
        /// How to reach the server (flotilla only for other than tcp).
        #[arg(long, value_enum, default_value = "tcp")]
        transport: Transport,
        /// The authority that signs the server's certificate (TLS transports).
        #[arg(long)]
        ca: Option<PathBuf>,
        /// Each connection pings this often (milliseconds; flotilla); default what
        /// PROTOCOL.md section 7 asks of a receiving client (20 s).
        #[arg(long)]
        ping_ms: Option<u64>,
        /// Each thread polls its connections at most this often (microseconds; 0: as
        /// soon as anything arrives). See [`ObserverSettings::poll_every`].
        #[arg(long, default_value_t = 0)]
        poll_every_us: u64,
    },
    /// Run a floor writer (see [`crate::floor`]): prints `{"event":"listening",…}`, then
    /// answers `stats` and `quiet` lines until stdin closes.
    Floor {
        /// The world its observers subscribe to.
        #[arg(long)]
        world: String,
        /// Commits per second.
        #[arg(long)]
        rate: u64,
        /// Bytes of each commit's value.
        #[arg(long)]
        payload: usize,
    },
    /// Run fleet clients watching one world: print `{"event":"ready",…}` once each has
    /// its replica, answer `counts` with the clients per front-end, until `quit` or
    /// stdin closes.
    FleetClients {
        /// The fleet's front-ends, comma-separated.
        #[arg(long, value_delimiter = ',')]
        frontends: Vec<SocketAddr>,
        /// The world to watch.
        #[arg(long)]
        world: String,
        /// Number of clients.
        #[arg(long)]
        count: usize,
    },
}

/// Runs a worker until its stdin closes. Progress on stderr, results on stdout.
pub fn worker_main(args: WorkerArgs) -> Result<(), BenchError> {
    match args {
        WorkerArgs::Frontend {
            game,
            listen,
            cpu,
            token_key_file,
            tls_cert,
            tls_key,
            max_inputs_per_second,
            coalesce_above,
            client_idle_timeout_ms,
        } => frontend_worker(
            game,
            listen,
            cpu,
            token_key_file,
            tls_cert.zip(tls_key),
            (
                max_inputs_per_second,
                coalesce_above,
                client_idle_timeout_ms.map(Duration::from_millis),
            ),
        ),
        WorkerArgs::Observers {
            protocol,
            server,
            target,
            count,
            threads,
            source,
            transport,
            ca,
            ping_ms,
            poll_every_us,
        } => observers_worker(ObserverSettings {
            ping_every: ping_ms.map_or(crate::observe::KEEPALIVE_EVERY, Duration::from_millis),
            poll_every: Duration::from_micros(poll_every_us),
            transport,
            ca,
            protocol,
            server,
            target,
            count,
            threads,
            source_ips: source,
        }),
        WorkerArgs::FleetClients {
            frontends,
            world,
            count,
        } => crate::spread::fleet_clients_worker(frontends, world, count),
        WorkerArgs::Floor {
            world,
            rate,
            payload,
        } => crate::floor::floor_worker(world, rate, payload),
    }
}

/// Answers the harness's command lines on stdin with `handle` (given the trimmed line;
/// it returns `false` to stop) until stdin closes.
pub(crate) fn serve_commands(
    mut handle: impl FnMut(&str) -> Result<bool, BenchError>,
) -> Result<(), BenchError> {
    let stdin = std::io::stdin();
    let mut line = String::new();
    loop {
        line.clear();
        if stdin.lock().read_line(&mut line).unwrap_or(0) == 0 || !handle(line.trim())? {
            return Ok(());
        }
    }
}

/// Prints one JSON line on stdout (a worker's answer to the harness).
pub(crate) fn print_line(value: &Value) -> Result<(), BenchError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{value}").map_err(BenchError::io("writing to stdout"))?;
    out.flush().map_err(BenchError::io("flushing stdout"))
}

/// The front-end worker's log: its warnings and errors (a lost game link, a refused
/// client flood) on stderr, where the harness shows them.
struct WarningsOnStderr;

impl log::Log for WarningsOnStderr {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            eprintln!("front-end worker: {}: {}", record.level(), record.args());
        }
    }

    fn flush(&self) {}
}

fn frontend_worker(
    game: String,
    listen: SocketAddr,
    cpu: Option<usize>,
    token_key_file: Option<PathBuf>,
    tls: Option<(PathBuf, PathBuf)>,
    (max_inputs_per_second, coalesce_above, client_idle_timeout): (
        Option<u32>,
        Option<usize>,
        Option<Duration>,
    ),
) -> Result<(), BenchError> {
    // Only the first logger of the process counts; a worker has no other.
    if log::set_logger(&WarningsOnStderr).is_ok() {
        log::set_max_level(log::LevelFilter::Warn);
    }
    if let Some(cpu) = cpu {
        // Before any thread starts: the runtime's and the front-end's threads inherit it.
        crate::affinity::pin_current_thread(cpu)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(BenchError::io("starting the front-end runtime"))?;
    let config = FrontendConfig {
        listen,
        game_servers: vec![game],
        server_id: "bench-frontend".into(),
        token_key: match token_key_file {
            Some(path) => flotilla_frontend::TokenKey::read_file(&path)
                .map_err(|e| BenchError::Server(format!("front-end: {e}")))?,
            None => flotilla_frontend::TokenKey::default(),
        },
        max_inputs_per_second: max_inputs_per_second
            .unwrap_or(FrontendConfig::default().max_inputs_per_second),
        coalesce_above: coalesce_above.unwrap_or(FrontendConfig::default().coalesce_above),
        client_idle_timeout: client_idle_timeout
            .unwrap_or(FrontendConfig::default().client_idle_timeout),
        edge: match tls {
            Some((cert, key)) => {
                let any = Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
                flotilla_frontend::EdgeConfig {
                    tls_listen: any,
                    ws_listen: any,
                    wss_listen: any,
                    tls: Some(flotilla_frontend::TlsFiles { cert, key }),
                    ..flotilla_frontend::EdgeConfig::default()
                }
            }
            None => flotilla_frontend::EdgeConfig::default(),
        },
        ..FrontendConfig::default()
    };
    let server = runtime
        .block_on(FrontendServer::bind(config))
        .map_err(|e| BenchError::Server(format!("front-end: {e}")))?;
    print_line(&json!({
        "event": "listening",
        "addr": server.local_addr().to_string(),
        "tls": server.tls_addr().map(|addr| addr.to_string()),
        "ws": server.ws_addr().map(|addr| addr.to_string()),
        "wss": server.wss_addr().map(|addr| addr.to_string()),
        "pid": std::process::id(),
    }))?;
    // Serve until the harness closes our stdin (or kills us), answering `stats` with the
    // write counters. With `FLOTILLA_BENCH_TRACE` set, the front-end's counters go to
    // stderr once a second.
    let serving = std::sync::atomic::AtomicBool::new(true);
    let served = std::thread::scope(|scope| {
        if std::env::var_os(TRACE_ENV).is_some() {
            scope.spawn(|| trace_stats(&server, &serving));
        }
        let served = serve_commands(|command| {
            if command == "stats" {
                let stats = server.stats();
                print_line(&json!({
                    "event": "stats",
                    "write_calls": stats.write_calls,
                    "bytes_written": stats.bytes_written,
                }))?;
            }
            Ok(true)
        });
        serving.store(false, std::sync::atomic::Ordering::Relaxed);
        served
    });
    let _ = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(2), server.shutdown()).await });
    runtime.shutdown_timeout(Duration::from_secs(1));
    served
}

/// Set this environment variable to have the front-end worker print its counters.
const TRACE_ENV: &str = "FLOTILLA_BENCH_TRACE";

/// Prints the front-end's counters, and their rates, once a second while `serving`.
fn trace_stats(server: &FrontendServer, serving: &std::sync::atomic::AtomicBool) {
    let mut last = server.stats();
    while serving.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(Duration::from_secs(1));
        let now = server.stats();
        let writes = now.write_calls - last.write_calls;
        let bytes = now.bytes_written - last.bytes_written;
        eprintln!(
            "frontend trace: game frames/s {} batches forwarded/s {} dropped/s {} \
             congestions/s {} (coalesced {}) resyncs/s {} writev/s {writes} bytes/writev {}",
            now.machine.game_frames_in - last.machine.game_frames_in,
            now.machine.batches_forwarded - last.machine.batches_forwarded,
            now.machine.batches_dropped - last.machine.batches_dropped,
            now.machine.congestions - last.machine.congestions,
            now.machine.coalesced - last.machine.coalesced,
            now.machine.resyncs - last.machine.resyncs,
            bytes.checked_div(writes).unwrap_or(0),
        );
        last = now;
    }
}

fn observers_worker(settings: ObserverSettings) -> Result<(), BenchError> {
    let count = settings.count;
    let mut pool = ObserverPool::start(settings)?;
    let timeout = Duration::from_secs(60).max(Duration::from_millis(10 * count as u64));
    let started = Instant::now();
    let counts = pool.wait_ready(timeout);
    eprintln!(
        "observers worker: {} connected, {} subscribed in {:.1} s",
        counts.connected,
        counts.subscribed,
        started.elapsed().as_secs_f64()
    );
    print_line(&json!({"event": "ready", "counts": counts, "pid": std::process::id()}))?;
    serve_commands(|command| {
        match command {
            "start" => {
                pool.start_measuring();
                print_line(&json!({"event": "started"}))?;
            }
            "stop" => {
                let report = pool.stop_measuring();
                print_line(&json!({"event": "report", "report": report}))?;
            }
            "counts" => print_line(&json!({"event": "counts", "counts": pool.counts()}))?,
            "quiet" => {
                pool.stop_sampling();
                print_line(&json!({"event": "quiet"}))?;
            }
            "census" => {
                print_line(&json!({"event": "census", "latest_seen": pool.census()}))?;
            }
            "quit" => return Ok(false),
            other => eprintln!("observers worker: unknown command {other:?}"),
        }
        Ok(true)
    })
}

/// How to start a worker process.
#[derive(Debug, Clone)]
pub struct WorkerLauncher {
    program: PathBuf,
    prefix: Vec<OsString>,
}

impl WorkerLauncher {
    /// `<program> <prefix…> <worker args>`.
    pub fn new(program: impl Into<PathBuf>, prefix: Vec<OsString>) -> Self {
        Self {
            program: program.into(),
            prefix,
        }
    }

    /// This very executable with `bench worker` (the `flotilla` binary).
    pub fn flotilla_cli() -> Result<Self, BenchError> {
        let program =
            std::env::current_exe().map_err(BenchError::io("locating the current executable"))?;
        Ok(Self::new(program, vec!["bench".into(), "worker".into()]))
    }

    /// Spawns a worker with these arguments.
    pub(crate) fn spawn(&self, name: &str, args: &[String]) -> Result<Worker, BenchError> {
        let mut child = Command::new(&self.program)
            .args(&self.prefix)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(BenchError::io(format!(
                "spawning worker {name} ({})",
                self.program.display()
            )))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let (tx, lines) = std::sync::mpsc::channel();
        if let Some(stdout) = stdout {
            std::thread::Builder::new()
                .name(format!("worker-{name}-stdout"))
                .spawn(move || {
                    for line in BufReader::new(stdout).lines() {
                        let Ok(line) = line else { break };
                        if tx.send(line).is_err() {
                            break;
                        }
                    }
                })
                .map_err(BenchError::io("spawning a worker reader thread"))?;
        }
        Ok(Worker {
            name: name.to_owned(),
            child,
            stdin,
            lines,
        })
    }
}

/// A running worker process; killed and reaped on drop.
#[derive(Debug)]
pub(crate) struct Worker {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Worker {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends one command line.
    pub fn send(&mut self, command: &str) -> Result<(), BenchError> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| BenchError::Worker(format!("{}: stdin closed", self.name)))?;
        writeln!(stdin, "{command}")
            .and_then(|()| stdin.flush())
            .map_err(BenchError::io(format!("writing to worker {}", self.name)))
    }

    /// Waits for the next JSON line whose `event` is `event`.
    pub fn expect(&mut self, event: &str, timeout: Duration) -> Result<Value, BenchError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let Ok(value) = serde_json::from_str::<Value>(&line) else {
                        eprintln!("worker {}: {line}", self.name);
                        continue;
                    };
                    if value.get("event").and_then(Value::as_str) == Some(event) {
                        return Ok(value);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(BenchError::Timeout(format!(
                        "worker {} did not report {event:?} within {timeout:?}",
                        self.name
                    )));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
                    return Err(BenchError::Worker(format!(
                        "{} exited ({status}) before reporting {event:?}",
                        self.name
                    )));
                }
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long an observer worker may take to answer `stop` with its report: at saturation
/// its threads hold their tallies while they read (and decrypt, over TLS) a burst.
const REPORT_TIMEOUT: Duration = Duration::from_secs(60);

/// A front-end worker: its process and client address.
#[derive(Debug)]
pub(crate) struct FrontendWorker {
    pub worker: Worker,
    pub addr: SocketAddr,
    /// The TLS, WebSocket and WebSocket-over-TLS listeners (started with
    /// [`FrontendWorker::start_edge`]).
    pub edge: Vec<(Transport, SocketAddr)>,
}

impl FrontendWorker {
    /// The front-end's write calls so far (`writev`/`send` that wrote something).
    pub fn write_calls(&mut self) -> Result<u64, BenchError> {
        self.worker.send("stats")?;
        let line = self.worker.expect("stats", Duration::from_secs(10))?;
        line.get("write_calls")
            .and_then(Value::as_u64)
            .ok_or_else(|| BenchError::Worker(format!("front-end: no write_calls in {line}")))
    }

    /// Sends `signal` to the front-end's process (SIGKILL, SIGSTOP, SIGCONT: the failures
    /// the benchmarks inflict).
    pub fn signal(&self, signal: rustix::process::Signal) -> Result<(), BenchError> {
        let pid = i32::try_from(self.worker.pid())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .ok_or_else(|| BenchError::Worker("front-end pid out of range".into()))?;
        rustix::process::kill_process(pid, signal)
            .map_err(|errno| BenchError::io("signalling the front-end")(errno.into()))
    }

    /// Starts a front-end connected to `game`, on every CPU the harness may use.
    pub fn start(launcher: &WorkerLauncher, game: SocketAddr) -> Result<Self, BenchError> {
        Self::start_on(launcher, game, None, false)
    }

    /// Starts a front-end connected to `game`, its threads confined to `cpu` if given,
    /// with no input budget when `unlimited_inputs` (a client sending back-to-back).
    pub fn start_on(
        launcher: &WorkerLauncher,
        game: SocketAddr,
        cpu: Option<usize>,
        unlimited_inputs: bool,
    ) -> Result<Self, BenchError> {
        let mut args = vec!["frontend".into(), "--game".into(), game.to_string()];
        if let Some(cpu) = cpu {
            args.extend(["--cpu".into(), cpu.to_string()]);
        }
        if unlimited_inputs {
            args.extend(["--max-inputs-per-second".into(), "0".into()]);
        }
        Self::spawn(launcher, &args)
    }

    /// Starts a front-end connected to `game` that also listens for TLS, WebSocket and
    /// WebSocket-over-TLS clients with the server certificate of `pki`.
    pub fn start_edge(
        launcher: &WorkerLauncher,
        game: SocketAddr,
        pki: &flotilla_testkit::TestPki,
    ) -> Result<Self, BenchError> {
        Self::spawn(launcher, &Self::edge_args(game, pki))
    }

    fn edge_args(game: SocketAddr, pki: &flotilla_testkit::TestPki) -> Vec<String> {
        vec![
            "frontend".into(),
            "--game".into(),
            game.to_string(),
            "--tls-cert".into(),
            pki.server().cert_pem_path().display().to_string(),
            "--tls-key".into(),
            pki.server().key_pem_path().display().to_string(),
        ]
    }

    /// Starts a front-end connected to `game` that coalesces observers' queued batches past
    /// `coalesce_above` bytes (`None`: its default; 0: never) and closes clients silent for
    /// `client_idle_timeout` (`None`: its default).
    pub fn start_coalescing(
        launcher: &WorkerLauncher,
        game: SocketAddr,
        coalesce_above: Option<usize>,
        client_idle_timeout: Option<Duration>,
    ) -> Result<Self, BenchError> {
        let mut args = vec!["frontend".into(), "--game".into(), game.to_string()];
        if let Some(bytes) = coalesce_above {
            args.extend(["--coalesce-above".into(), bytes.to_string()]);
        }
        if let Some(idle) = client_idle_timeout {
            args.extend([
                "--client-idle-timeout-ms".into(),
                idle.as_millis().to_string(),
            ]);
        }
        Self::spawn(launcher, &args)
    }

    /// Starts a front-end for the fan-out comparison: it delivers every batch to every
    /// observer (no coalescing into the latest state), as the broker it is compared with
    /// does; with `pki`, it also has the TLS and WebSocket listeners of
    /// [`start_edge`](Self::start_edge).
    pub fn start_every_batch(
        launcher: &WorkerLauncher,
        game: SocketAddr,
        pki: Option<&flotilla_testkit::TestPki>,
    ) -> Result<Self, BenchError> {
        let mut args = match pki {
            Some(pki) => Self::edge_args(game, pki),
            None => vec!["frontend".into(), "--game".into(), game.to_string()],
        };
        args.extend(["--coalesce-above".into(), "0".into()]);
        Self::spawn(launcher, &args)
    }

    /// Where clients of `transport` connect.
    pub fn addr_for(&self, transport: Transport) -> Result<SocketAddr, BenchError> {
        if transport == Transport::Tcp {
            return Ok(self.addr);
        }
        self.edge
            .iter()
            .find(|(kind, _)| *kind == transport)
            .map(|(_, addr)| *addr)
            .ok_or_else(|| {
                BenchError::Worker(format!(
                    "the front-end has no {} listener",
                    transport.name()
                ))
            })
    }

    /// Starts a front-end connected to `game` with the fleet's token key from `key_file`
    /// (front-ends sharing it resume each other's sessions).
    pub fn start_with_key(
        launcher: &WorkerLauncher,
        game: SocketAddr,
        key_file: &std::path::Path,
    ) -> Result<Self, BenchError> {
        let args = vec![
            "frontend".into(),
            "--game".into(),
            game.to_string(),
            "--token-key-file".into(),
            key_file.display().to_string(),
        ];
        Self::spawn(launcher, &args)
    }

    fn spawn(launcher: &WorkerLauncher, args: &[String]) -> Result<Self, BenchError> {
        let mut worker = launcher.spawn("frontend", args)?;
        let listening = worker.expect("listening", Duration::from_secs(20))?;
        let addr = listening
            .get("addr")
            .and_then(Value::as_str)
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| BenchError::Worker(format!("bad listening line {listening}")))?;
        let edge = [Transport::Tls, Transport::Ws, Transport::Wss]
            .into_iter()
            .filter_map(|transport| {
                let addr = listening.get(transport.name())?.as_str()?.parse().ok()?;
                Some((transport, addr))
            })
            .collect();
        Ok(Self { worker, addr, edge })
    }

    /// Waits until the front-end serves `world` (it has connected to the game server and
    /// learnt the world): a probe client subscribes until a snapshot comes back.
    pub fn wait_for_world(&self, world: &str, timeout: Duration) -> Result<(), BenchError> {
        let handshake = Protocol::Flotilla.handshake(world)?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if probe_world(self.addr, &handshake)? {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(BenchError::Timeout(format!(
            "the front-end never served world {world:?}"
        )))
    }
}

/// One probe: true if a snapshot arrives, false on `Unsubscribed`, a close or 1 s of
/// silence.
fn probe_world(addr: SocketAddr, handshake: &[u8]) -> Result<bool, BenchError> {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(addr)
        .map_err(BenchError::io(format!("probing the front-end at {addr}")))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .and_then(|()| stream.write_all(handshake))
        .map_err(BenchError::io("probing the front-end"))?;
    let mut decoder = flotilla_wire::Decoder::default();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while let Ok(Some(frame)) = decoder.next_frame() {
            match frame.frame_type() {
                flotilla_wire::FrameType::Snapshot => return Ok(true),
                flotilla_wire::FrameType::Unsubscribed | flotilla_wire::FrameType::Error => {
                    return Ok(false);
                }
                _ => {}
            }
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return Ok(false),
            Ok(n) => decoder.feed(buf.get(..n).unwrap_or_default()),
        }
    }
}

/// The next observer source address: 127.0.0.2 to 127.0.0.251 in turn, for the whole
/// process.
fn next_source_address() -> Ipv4Addr {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let index = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ipv4Addr::new(127, 0, 0, 2 + (index % 250) as u8)
}

/// A group of observer worker processes sharing `count` connections.
#[derive(Debug)]
pub(crate) struct ObserverGroup {
    pub workers: Vec<Worker>,
}

/// Where the observers of one group connect and how they are spread.
#[derive(Debug, Clone)]
pub(crate) struct GroupSpec {
    pub protocol: Protocol,
    pub server: SocketAddr,
    pub target: String,
    pub count: usize,
    pub per_process: usize,
    pub threads: usize,
    /// How the observers reach the server.
    pub transport: Transport,
    /// The authority of the server's certificate (TLS transports).
    pub ca: Option<PathBuf>,
    /// How often each observer pings (`None`: what the protocol asks, 20 s).
    pub ping_every: Option<Duration>,
    /// How often each worker thread polls its connections at most (zero: as soon as
    /// anything arrives; see `ObserverSettings::poll_every`).
    pub poll_every: Duration,
}

impl ObserverGroup {
    /// Spawns the workers (each connecting from its own 127.0.0.x source address) and
    /// waits until all are ready; returns the group and the summed counts.
    pub fn start(
        launcher: &WorkerLauncher,
        spec: &GroupSpec,
    ) -> Result<(Self, ReadyCounts), BenchError> {
        let per_process = spec.per_process.max(1);
        let processes = spec.count.div_ceil(per_process);
        let mut workers = Vec::new();
        for index in 0..processes {
            let share = per_process.min(spec.count - index * per_process);
            // 127.0.0.2, .3, …: a fresh source address per process (across every group
            // of this harness), so ephemeral ports never run short, and `bind` does not
            // search a port space another group's thousands of connections already fill
            // (the kernel's search is linear in the ports in use: a second group on the
            // same address took a minute to connect 10,000 observers).
            let source = next_source_address();
            let protocol = match spec.protocol {
                Protocol::Flotilla => "flotilla",
                Protocol::Nats => "nats",
            };
            workers.push(
                launcher.spawn(
                    &format!("observers-{index}"),
                    &[
                        "observers".into(),
                        "--protocol".into(),
                        protocol.into(),
                        "--server".into(),
                        spec.server.to_string(),
                        "--target".into(),
                        spec.target.clone(),
                        "--count".into(),
                        share.to_string(),
                        "--threads".into(),
                        spec.threads.to_string(),
                        "--source".into(),
                        source.to_string(),
                        "--transport".into(),
                        spec.transport.name().into(),
                    ]
                    .into_iter()
                    .chain(
                        spec.ca
                            .iter()
                            .flat_map(|ca| ["--ca".to_owned(), ca.display().to_string()]),
                    )
                    .chain(
                        spec.ping_every.iter().flat_map(|every| {
                            ["--ping-ms".to_owned(), every.as_millis().to_string()]
                        }),
                    )
                    .chain([
                        "--poll-every-us".to_owned(),
                        spec.poll_every.as_micros().to_string(),
                    ])
                    .collect::<Vec<String>>(),
                )?,
            );
        }
        let mut group = Self { workers };
        let mut total = ReadyCounts::default();
        let timeout = Duration::from_secs(90).max(Duration::from_millis(12 * spec.count as u64));
        for worker in &mut group.workers {
            let ready = worker.expect("ready", timeout)?;
            total.add_reported(&ready)?;
        }
        Ok((group, total))
    }

    /// Starts a measurement window in every worker.
    pub fn start_measuring(&mut self) -> Result<(), BenchError> {
        for worker in &mut self.workers {
            worker.send("start")?;
        }
        for worker in &mut self.workers {
            worker.expect("started", Duration::from_secs(10))?;
        }
        Ok(())
    }

    /// Ends the window; returns every worker's report.
    pub fn stop_measuring(&mut self) -> Result<Vec<ObserverReport>, BenchError> {
        for worker in &mut self.workers {
            worker.send("stop")?;
        }
        let mut reports = Vec::new();
        for worker in &mut self.workers {
            let line = worker.expect("report", REPORT_TIMEOUT)?;
            let report = line
                .get("report")
                .cloned()
                .ok_or_else(|| BenchError::Worker(format!("report without figures: {line}")))?;
            reports.push(serde_json::from_value(report)?);
        }
        Ok(reports)
    }

    /// Stops sampling state ages in every worker (the world stopped changing).
    pub fn stop_sampling(&mut self) -> Result<(), BenchError> {
        for worker in &mut self.workers {
            worker.send("quiet")?;
        }
        for worker in &mut self.workers {
            worker.expect("quiet", Duration::from_secs(10))?;
        }
        Ok(())
    }

    /// The newest publish timestamp each observer of every worker has seen now:
    /// timestamp → observers.
    pub fn census(&mut self) -> Result<std::collections::BTreeMap<u64, u64>, BenchError> {
        for worker in &mut self.workers {
            worker.send("census")?;
        }
        let mut total = std::collections::BTreeMap::new();
        for worker in &mut self.workers {
            let line = worker.expect("census", Duration::from_secs(10))?;
            let seen: Vec<(u64, u64)> = line
                .get("latest_seen")
                .cloned()
                .map(serde_json::from_value)
                .transpose()?
                .unwrap_or_default();
            for (stamp, observers) in seen {
                *total.entry(stamp).or_default() += observers;
            }
        }
        Ok(total)
    }

    /// The counts of every worker, summed.
    pub fn counts(&mut self) -> Result<ReadyCounts, BenchError> {
        for worker in &mut self.workers {
            worker.send("counts")?;
        }
        let mut total = ReadyCounts::default();
        for worker in &mut self.workers {
            let line = worker.expect("counts", Duration::from_secs(10))?;
            total.add_reported(&line)?;
        }
        Ok(total)
    }

    /// The process ids.
    pub fn pids(&self) -> Vec<u32> {
        self.workers.iter().map(Worker::pid).collect()
    }
}
