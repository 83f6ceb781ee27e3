//! `flotilla frontend` and `flotilla game`: run one role as its own process, logging
//! through the flotilla logger (boot message with IP configuration, crash report)
//! when `--log`/`FLOTILLA_LOG` names collectors.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use flotilla_frontend::{FrontendConfig, FrontendServer, JoinKey, JoinSigner, TokenKey};
use flotilla_game::{GameConfig, GameServer};

/// Arguments of `flotilla frontend`.
#[derive(clap::Args, Debug)]
pub struct FrontendArgs {
    /// Address clients connect to.
    #[arg(long, default_value = "127.0.0.1:7400")]
    listen: String,
    /// Game servers to connect to: ADDR[,ADDR...].
    #[arg(long, value_delimiter = ',', required = true)]
    game: Vec<String>,
    /// This front-end's id (shown to clients and game servers, and in the logs). Default:
    /// HOSTNAME:PORT of --listen, unique per machine and port.
    #[arg(long)]
    id: Option<String>,
    /// Per-connection send budget in bytes; past it a slow observer is resynced.
    #[arg(long, default_value_t = 128 * 1024)]
    send_budget: usize,
    /// Most client connections at once; more are told `Overloaded` and closed (lowered to
    /// what the file-descriptor limit holds, keeping 256 + 4 per game server).
    #[arg(long, default_value_t = 100_000)]
    max_clients: usize,
    /// Most client connections at once from one IP address; more are told `Overloaded`
    /// and closed (0: no such cap). Clients behind one NAT share an address: raise it for
    /// them.
    #[arg(long, default_value_t = 1_000)]
    max_clients_per_ip: usize,
    /// File holding the fleet's session-token key: 64 hex digits (32 bytes; make one with
    /// `flotilla keygen --out FILE`). Every front-end of a fleet must use the same key, or
    /// clients that move between them get new sessions instead of resuming. Default: a
    /// key of this process only.
    #[arg(long, env = "FLOTILLA_TOKEN_KEY_FILE")]
    token_key_file: Option<std::path::PathBuf>,
    /// The operator's public join-token keys, 64 hex digits each (what `flotilla keygen
    /// --join` prints), comma-separated. With any: inputs need a player token of their
    /// world (`Join`), and subscribes need a token too with --no-anonymous-observers.
    /// Several keys: rotation (tokens of any of them are accepted).
    #[arg(long, value_delimiter = ',', value_name = "HEX")]
    join_key: Vec<String>,
    /// Or: a file of join-token public keys, one a line (`#` comments), read at start.
    #[arg(long, value_name = "FILE")]
    join_key_file: Option<std::path::PathBuf>,
    /// With join keys: watching a world needs a token too (observer or player); by
    /// default anyone may watch and only inputs need one. `$directory` stays open.
    #[arg(long)]
    no_anonymous_observers: bool,
    /// Logging through the flotilla logger.
    #[command(flatten)]
    log: LogArgs,
    /// Ping a client after this many milliseconds without sending it anything (default
    /// 20000, or a third of --client-idle-ms if that is shorter; the kernel probes a quiet
    /// connection after 2 s meanwhile).
    #[arg(long)]
    client_ping_ms: Option<u64>,
    /// Close a welcomed client connection after this many milliseconds without receiving
    /// a frame: a backstop, since the kernel notices a vanished client sooner (default
    /// 60000).
    #[arg(long)]
    client_idle_ms: Option<u64>,
    /// Close a client connection that has not said `Hello` this many milliseconds after
    /// it was accepted (default 6000).
    #[arg(long)]
    client_handshake_ms: Option<u64>,
    /// Have the kernel close a client connection whose TCP acknowledges nothing for this
    /// many milliseconds (TCP_USER_TIMEOUT and keep-alive probes); 0 leaves the sockets'
    /// TCP settings alone, for a front-end whose TCP peer is a proxy (default 6000).
    #[arg(long)]
    client_transport_timeout_ms: Option<u64>,
    /// Ping a game server after this many milliseconds without sending it anything
    /// (default 1000).
    #[arg(long)]
    game_ping_ms: Option<u64>,
    /// Close a game link after this many milliseconds without receiving anything, or
    /// with its queue over its limit and nothing written (default 3000).
    #[arg(long)]
    game_idle_ms: Option<u64>,
    /// Keep a world's replica (and its upstream subscription) this many milliseconds
    /// after its last subscriber leaves (default 5000; 0: drop it at once).
    #[arg(long)]
    replica_grace_ms: Option<u64>,
    /// Keep the worlds of a lost game link, with their observers, this many milliseconds
    /// for a game server to announce them again (a reconnect after a blip, a restart);
    /// they resume from their replicas' positions (default 5000; 0: end them at once).
    #[arg(long)]
    game_resume_grace_ms: Option<u64>,
    /// Bytes queued for an observer past which its queued change batches are replaced by
    /// the world's latest state, once they outweigh its snapshot (default 512; 0:
    /// never, every batch is delivered until the send budget is crossed).
    #[arg(long)]
    coalesce_above: Option<usize>,
    /// Inputs a client connection may send a second on average; a connection past it (and
    /// its --input-burst) is closed with `Overloaded` (default 2000; 0: no limit).
    #[arg(long)]
    max_inputs_per_second: Option<u32>,
    /// Inputs a client connection may send at once above that rate (default 50000).
    #[arg(long)]
    input_burst: Option<u32>,
    /// Milliseconds during which the address of a connection closed for flooding inputs is
    /// refused (default 10000; 0: never refused).
    #[arg(long)]
    input_flood_penalty_ms: Option<u64>,
    /// Keep polling this many microseconds after a short turn before sleeping, yielding
    /// the core between polls (default 100; 0: never spin).
    #[arg(long)]
    busy_poll_us: Option<u64>,
    /// Record every input of the front-end's machine (with its time) and a digest of its
    /// outputs into this directory, for `flotilla replay DIR`. The files hold the token
    /// key (mode 0600).
    #[arg(long, value_name = "DIR")]
    record: Option<std::path::PathBuf>,
    /// Keep at most this many MiB of recording: files rotate, the oldest are deleted, and
    /// a replay starts at the checkpoint the oldest file left begins with.
    #[arg(long, default_value_t = 1024)]
    record_max_mb: u64,
    /// Stop after this many seconds (default: run until killed).
    #[arg(long)]
    seconds: Option<f64>,
    /// Also accept clients over TLS here (`tls://`; needs --tls-cert and --tls-key).
    #[arg(long, value_name = "ADDR")]
    tls_listen: Option<std::net::SocketAddr>,
    /// Also accept WebSocket clients here (`ws://ADDR/ws`), and serve the browser
    /// observer page at `http://ADDR/`.
    #[arg(long, value_name = "ADDR")]
    ws: Option<std::net::SocketAddr>,
    /// Also accept WebSocket clients over TLS here (`wss://ADDR/ws`), and serve the page
    /// over HTTPS (needs --tls-cert and --tls-key).
    #[arg(long, value_name = "ADDR")]
    wss: Option<std::net::SocketAddr>,
    /// The TLS certificate chain (PEM), read again on SIGHUP.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The TLS private key (PEM), read again on SIGHUP.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// The front-ends the observer page balances over (ws:// or wss:// URLs, comma
    /// separated); default: this one alone.
    #[arg(long, value_delimiter = ',', value_name = "URL")]
    web_frontends: Vec<String>,
    /// The world the observer page watches unless its URL says `?world=` (default:
    /// `$directory`, the list of the worlds the fleet serves).
    #[arg(long)]
    web_world: Option<String>,
    /// Dial the game servers over TLS, trusting the authorities of this PEM file.
    #[arg(long, value_name = "PEM")]
    game_ca: Option<std::path::PathBuf>,
    /// The name the game servers' certificates carry (default: the host of the first
    /// --game address).
    #[arg(long, requires = "game_ca")]
    game_tls_name: Option<String>,
}

/// Arguments of `flotilla keygen`.
#[derive(clap::Args, Debug)]
pub struct KeygenArgs {
    /// Write the key to this file (created readable by its owner only; an existing file is
    /// kept unless --force). Without it the key goes to standard output.
    #[arg(long, required_if_eq("join", "true"))]
    out: Option<std::path::PathBuf>,
    /// Replace an existing --out file.
    #[arg(long, conflicts_with = "join")]
    force: bool,
    /// Make the operator's join-token signing key instead (Ed25519, PKCS#8 PEM, written to
    /// --out, never replaced) and print its public key (64 hex digits) for the front-ends'
    /// --join-key. Keep the private key off the front-ends.
    #[arg(long)]
    join: bool,
}

/// Runs `flotilla keygen`.
pub fn keygen(args: KeygenArgs) -> Result<()> {
    if args.join {
        let path = args.out.context("--join needs --out FILE")?;
        let signer = JoinSigner::generate()?;
        signer.write_new_file(&path)?;
        println!("{}", signer.public_key());
        eprintln!(
            "flotilla keygen: wrote a new join-token signing key to {} (keep it off the              front-ends; sign with `flotilla join-token --key {}`); its public key, for              `flotilla frontend --join-key`, is on standard output",
            path.display(),
            path.display()
        );
        return Ok(());
    }
    let key = TokenKey::generate()?.to_hex();
    let Some(path) = args.out else {
        println!("{key}");
        return Ok(());
    };
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(0o600);
    if args.force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(&path).with_context(|| {
        format!(
            "creating {} (an existing key is kept; --force replaces it)",
            path.display()
        )
    })?;
    writeln!(file, "{key}").with_context(|| format!("writing {}", path.display()))?;
    eprintln!(
        "flotilla keygen: wrote a new token key to {} (give every front-end of the fleet \
         --token-key-file {})",
        path.display(),
        path.display()
    );
    Ok(())
}

/// Arguments of `flotilla join-token`.
#[derive(clap::Args, Debug)]
pub struct JoinTokenArgs {
    /// The operator's signing key (from `flotilla keygen --join --out FILE`; PKCS#8 PEM or
    /// DER, e.g. also `openssl genpkey -algorithm ed25519`).
    #[arg(long, value_name = "FILE")]
    key: std::path::PathBuf,
    /// The world the token is for.
    #[arg(long)]
    world: String,
    /// `player` (inputs and watching) or `observer` (watching).
    #[arg(long, default_value = "player")]
    role: flotilla_client::Role,
    /// Seconds from now until the token expires (keep it short: a token is a bearer
    /// permission until then).
    #[arg(long, default_value_t = 3600)]
    ttl: u64,
    /// Whom it is for (the player's name, for logs; at most 64 bytes).
    #[arg(long)]
    subject: String,
}

/// Runs `flotilla join-token`: prints a signed token (base64url) on standard output.
pub fn join_token(args: JoinTokenArgs) -> Result<()> {
    let signer = JoinSigner::read_file(&args.key)?;
    let world = flotilla_client::WorldId::new(&args.world)
        .with_context(|| format!("--world {:?}", args.world))?;
    if world.is_reserved() {
        anyhow::bail!("--world {world}: worlds starting with `$` are the front-ends' own");
    }
    anyhow::ensure!(args.ttl > 0, "--ttl must be above 0");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs();
    let claims = flotilla_wire::JoinClaims {
        expires_unix: now.saturating_add(args.ttl),
        role: args.role,
        world,
        subject: args.subject,
    };
    let token = signer.sign(&claims)?;
    println!("{}", flotilla_wire::join_token_to_text(&token));
    Ok(())
}

/// The join keys of `--join-key` and `--join-key-file`, together.
fn join_keys(args: &FrontendArgs) -> Result<Vec<JoinKey>> {
    let mut keys = Vec::new();
    for key in &args.join_key {
        keys.push(JoinKey::from_hex(key).with_context(|| format!("--join-key {key:?}"))?);
    }
    if let Some(path) = &args.join_key_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading --join-key-file {}", path.display()))?;
        keys.extend(
            JoinKey::parse_list(&text)
                .with_context(|| format!("--join-key-file {}", path.display()))?,
        );
    }
    Ok(keys)
}

/// Reads a 32-byte key written as 64 hex digits (surrounding whitespace ignored).
pub fn read_token_key(path: &std::path::Path) -> Result<TokenKey> {
    Ok(TokenKey::read_file(path)?)
}

/// Arguments of `flotilla game`.
#[derive(clap::Args, Debug)]
pub struct GameArgs {
    /// Address front-ends connect to.
    #[arg(long, default_value = "127.0.0.1:7500")]
    listen: String,
    /// Arena worlds to host.
    #[arg(long, default_value_t = 3)]
    worlds: usize,
    /// Wandering entities per world.
    #[arg(long, default_value_t = 20)]
    npcs: usize,
    /// Logging through the flotilla logger.
    #[command(flatten)]
    log: LogArgs,
    /// Stop after this many seconds (default: run until killed).
    #[arg(long)]
    seconds: Option<f64>,
    /// Panic on purpose after this many seconds (the logger reports "about to crash"
    /// first): how the demo and the tests show a crashing sealed service.
    #[arg(long, value_name = "SECS")]
    crash_after: Option<f64>,
    /// Accept front-end links over TLS with this certificate chain (PEM)...
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// ...and this private key (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
}

/// How a role logs (the flotilla logger: boot message, heartbeats, crash report).
#[derive(clap::Args, Debug)]
pub struct LogArgs {
    /// Log collectors (see `flotilla log --help`); none: log to nowhere.
    #[arg(long, env = "FLOTILLA_LOG")]
    log: Option<String>,
    /// Send a heartbeat this often, in milliseconds (0: none), so that the log service
    /// notices when this process falls silent.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    log_heartbeat_ms: u64,
    /// HOSTNAME in the log messages (default: this machine's name). With the app name it
    /// identifies the service in the log service's fleet view.
    #[arg(long, value_name = "NAME")]
    log_hostname: Option<String>,
}

/// A role's `log` logger: warnings and errors on stderr (prefixed with the role), and
/// everything to the flotilla logger when the role has collectors.
struct RoleLog {
    role: String,
    logger: Option<flotilla_logger::Logger>,
}

impl log::Log for RoleLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Warn
            || self.logger.as_ref().is_some_and(|l| l.enabled(metadata))
    }

    fn log(&self, record: &log::Record<'_>) {
        if record.level() <= log::Level::Warn {
            let level = match record.level() {
                log::Level::Error => "error",
                _ => "warning",
            };
            eprintln!("flotilla {}: {level}: {}", self.role, record.args());
        }
        if let Some(logger) = &self.logger {
            log::Log::log(logger, record);
        }
    }

    fn flush(&self) {
        if let Some(logger) = &self.logger {
            log::Log::flush(logger);
        }
    }
}

/// Installs the role's `log` logger (see [`RoleLog`]); returns the flotilla logger when
/// `--log` names collectors.
fn start_logger(args: &LogArgs, app: &str) -> Result<Option<flotilla_logger::Logger>> {
    let role = app.trim_start_matches("flotilla-").to_owned();
    let Some(spec) = args.log.as_deref() else {
        // Without collectors, warnings still reach the operator.
        let _ = log::set_boxed_logger(Box::new(RoleLog { role, logger: None }));
        log::set_max_level(log::LevelFilter::Warn);
        return Ok(None);
    };
    let mut config = flotilla_logger::Config::with_collectors(spec)?;
    config.app_name = Some(app.to_owned());
    config.app_version = Some(env!("CARGO_PKG_VERSION").to_owned());
    config.heartbeat =
        (args.log_heartbeat_ms > 0).then(|| Duration::from_millis(args.log_heartbeat_ms));
    if let Some(h) = &args.log_hostname {
        config.hostname = Some(h.clone());
    }
    let logger = flotilla_logger::init_with(config, |logger| {
        Box::new(RoleLog {
            role: role.clone(),
            logger: Some(logger),
        })
    })?;
    warn_while_collectors_down(role, logger.clone());
    Ok(Some(logger))
}

/// Says on stderr when the role's log collectors cannot be reached, every 30 s while that
/// lasts, and once when they answer again. The logger itself stays silent (it lives in
/// services that may have no console); the role, which has one, speaks for it. Not sent
/// through `log`: those messages would only wait in the same queue.
fn warn_while_collectors_down(role: String, logger: flotilla_logger::Logger) {
    const CHECK: Duration = Duration::from_secs(1);
    const REMIND: Duration = Duration::from_secs(30);
    let watch = move || {
        let mut last = logger.stats();
        let mut down: Option<(std::time::Instant, std::time::Instant, u64)> = None;
        loop {
            std::thread::sleep(CHECK);
            let now = logger.stats();
            let failed = now.failures > last.failures;
            let progressed = now.delivered > last.delivered;
            let why = || logger.last_failure().unwrap_or_else(|| "no answer".into());
            match down {
                None if failed && !progressed => {
                    eprintln!(
                        "flotilla {role}: warning: cannot reach its log collectors ({}); its messages wait in the logger's queue and the oldest are dropped once it is full",
                        why()
                    );
                    let at = std::time::Instant::now();
                    down = Some((at, at, now.dropped));
                }
                Some((since, _, dropped_before)) if progressed => {
                    eprintln!(
                        "flotilla {role}: its log collectors answer again after {:.0} s ({} messages dropped meanwhile)",
                        since.elapsed().as_secs_f64(),
                        now.dropped.saturating_sub(dropped_before)
                    );
                    down = None;
                }
                Some((since, reminded, dropped_before)) if reminded.elapsed() >= REMIND => {
                    eprintln!(
                        "flotilla {role}: warning: still cannot reach its log collectors after {:.0} s ({} messages dropped so far; {})",
                        since.elapsed().as_secs_f64(),
                        now.dropped.saturating_sub(dropped_before),
                        why()
                    );
                    down = Some((since, std::time::Instant::now(), dropped_before));
                }
                _ => {}
            }
            last = now;
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name("log-collectors-watch".into())
        .spawn(watch)
    {
        eprintln!("flotilla: warning: cannot watch the log collectors: {e}");
    }
}

/// SIGINT and SIGTERM, caught from before a role says it is listening (a signal sent
/// as soon as it says so must not find the default action still in place).
struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> Result<StopSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt()).context("catching SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("catching SIGTERM")?,
        })
    }

    /// Waits until the run should end: `--seconds` elapsed, SIGINT or SIGTERM. Returns
    /// which.
    async fn run_for(&mut self, seconds: Option<f64>) -> &'static str {
        let timer = async {
            match seconds {
                Some(s) if s.is_finite() && s > 0.0 => {
                    tokio::time::sleep(Duration::from_secs_f64(s)).await;
                }
                _ => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = timer => "--seconds elapsed",
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

/// Says why a role stops, on stderr and in its log (the log service sees a clean stop,
/// not silence).
fn stopping(role: &str, why: &str) {
    eprintln!("flotilla {role}: {why}: shutting down");
    log::info!("shutting down: {why}");
}

/// Runs `flotilla frontend`.
pub fn frontend(args: FrontendArgs) -> Result<()> {
    let token_key = match &args.token_key_file {
        Some(path) => read_token_key(path)?,
        // One front-end per process: a fresh key is this process's own. Generated so
        // that a failing OS random source is an error, not a weak key.
        None => TokenKey::generate()?,
    };
    let listen: std::net::SocketAddr = args
        .listen
        .parse()
        .with_context(|| format!("--listen {:?}", args.listen))?;
    let join_keys = join_keys(&args)?;
    if args.no_anonymous_observers && join_keys.is_empty() {
        anyhow::bail!("--no-anonymous-observers needs --join-key or --join-key-file");
    }
    let id = args.id.clone().unwrap_or_else(|| {
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        let host = if host.is_empty() {
            listen.ip().to_string()
        } else {
            host
        };
        format!("{host}:{}", listen.port())
    });
    let logger = start_logger(&args.log, "flotilla-frontend")?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let config = FrontendConfig {
            token_key,
            listen,
            game_servers: args.game.clone(),
            server_id: id.clone(),
            send_budget: args.send_budget,
            max_clients: args.max_clients,
            max_clients_per_ip: args.max_clients_per_ip,
            join_keys,
            anonymous_observers: !args.no_anonymous_observers,
            ..FrontendConfig::default()
        };
        let millis = Duration::from_millis;
        let client_idle_timeout = args
            .client_idle_ms
            .map_or(config.client_idle_timeout, millis);
        let config = FrontendConfig {
            // Without --client-ping-ms, a shorter --client-idle-ms brings the ping in
            // (a third of it), so that a quiet client is pinged before it is closed.
            client_ping_interval: args.client_ping_ms.map_or_else(
                || config.client_ping_interval.min(client_idle_timeout / 3),
                millis,
            ),
            client_idle_timeout,
            client_handshake_timeout: args
                .client_handshake_ms
                .map_or(config.client_handshake_timeout, millis),
            client_transport_timeout: args
                .client_transport_timeout_ms
                .map_or(config.client_transport_timeout, millis),
            game_ping_interval: args.game_ping_ms.map_or(config.game_ping_interval, millis),
            game_idle_timeout: args.game_idle_ms.map_or(config.game_idle_timeout, millis),
            replica_grace_period: args
                .replica_grace_ms
                .map_or(config.replica_grace_period, millis),
            game_resume_grace: args
                .game_resume_grace_ms
                .map_or(config.game_resume_grace, millis),
            max_inputs_per_second: args
                .max_inputs_per_second
                .unwrap_or(config.max_inputs_per_second),
            coalesce_above: args.coalesce_above.unwrap_or(config.coalesce_above),
            input_burst: args.input_burst.unwrap_or(config.input_burst),
            input_flood_penalty: args
                .input_flood_penalty_ms
                .map_or(config.input_flood_penalty, Duration::from_millis),
            busy_poll: args
                .busy_poll_us
                .map_or(config.busy_poll, Duration::from_micros),
            record: args.record.clone().map(|dir| {
                flotilla_frontend::record::RecordSettings::new(
                    dir,
                    args.record_max_mb.saturating_mul(1 << 20),
                )
            }),
            edge: flotilla_frontend::EdgeConfig {
                tls_listen: args.tls_listen,
                ws_listen: args.ws,
                wss_listen: args.wss,
                tls: args.tls_cert.clone().zip(args.tls_key.clone()).map(|(cert, key)| {
                    flotilla_frontend::TlsFiles { cert, key }
                }),
                web_frontends: args.web_frontends.clone(),
                web_world: args.web_world.clone(),
                game_tls: args.game_ca.clone().map(|ca| flotilla_frontend::GameTls {
                    ca,
                    server_name: args.game_tls_name.clone().unwrap_or_else(|| {
                        let first = args.game.first().map(String::as_str).unwrap_or_default();
                        first
                            .rsplit_once(':')
                            .map_or(first, |(host, _)| host)
                            .to_owned()
                    }),
                }),
            },
            ..config
        };
        let mut signals = StopSignals::install()?;
        let server = std::sync::Arc::new(FrontendServer::bind(config).await?);
        eprintln!(
            "flotilla frontend {id} listening on {}{}{}{}",
            server.local_addr(),
            server
                .tls_addr()
                .map(|addr| format!(", tls://{addr}"))
                .unwrap_or_default(),
            server
                .ws_addr()
                .map(|addr| format!(", ws://{addr}/ws (page: http://{addr}/)"))
                .unwrap_or_default(),
            server
                .wss_addr()
                .map(|addr| format!(", wss://{addr}/ws"))
                .unwrap_or_default(),
        );
        let reloader = (args.tls_cert.is_some()).then(|| {
            let server = std::sync::Arc::clone(&server);
            tokio::spawn(async move {
                use tokio::signal::unix::{SignalKind, signal};
                let Ok(mut hangups) = signal(SignalKind::hangup()) else {
                    log::warn!("cannot catch SIGHUP: TLS files will not be reloaded");
                    return;
                };
                while hangups.recv().await.is_some() {
                    match server.reload_tls() {
                        Ok(()) => {
                            log::info!("SIGHUP: TLS certificate and key reloaded");
                            eprintln!("flotilla frontend: SIGHUP: TLS certificate and key reloaded");
                        }
                        Err(error) => {
                            log::error!("SIGHUP: TLS reload failed, keeping the old ones: {error}");
                            eprintln!(
                                "flotilla frontend: SIGHUP: TLS reload failed, keeping the old ones: {error}"
                            );
                        }
                    }
                }
            })
        });
        let why = signals.run_for(args.seconds).await;
        if let Some(reloader) = reloader {
            reloader.abort();
            let _ = reloader.await;
        }
        let server = std::sync::Arc::into_inner(server)
            .context("the front-end is still shared at shutdown")?;
        stopping(&format!("frontend {id}"), why);
        server.shutdown().await;
        anyhow::Ok(())
    })?;
    if let Some(logger) = logger {
        logger.shutdown(Duration::from_secs(2));
    }
    Ok(())
}

/// Runs `flotilla game`.
pub fn game(args: GameArgs) -> Result<()> {
    let logger = start_logger(&args.log, "flotilla-game")?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let mut signals = StopSignals::install()?;
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(Arc::new(
                flotilla_link::stream::server_config_from_pem(cert, key)?,
            )),
            _ => None,
        };
        let config = GameConfig {
            tls,
            ..GameConfig::default()
        };
        let server = Arc::new(GameServer::bind(&args.listen, config).await?);
        eprintln!("flotilla game listening on {}", server.local_addr());
        let events = server.take_events().context("events")?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(crate::arena::run(
            server.clone(),
            events,
            args.worlds,
            args.npcs,
            Duration::from_millis(50),
            Arc::default(),
            stop_rx,
        ));
        match args.crash_after {
            Some(after) if after.is_finite() && after >= 0.0 => {
                tokio::select! {
                    why = signals.run_for(args.seconds) => stopping("game", why),
                    () = tokio::time::sleep(Duration::from_secs_f64(after)) => {
                        // On purpose, from a task: the panic hook reports it, then the
                        // process ends like a sealed service that crashed.
                        let crash = std::thread::spawn(move || {
                            panic!("on purpose: --crash-after {after} s elapsed")
                        });
                        let _ = crash.join();
                        std::process::exit(101);
                    }
                }
            }
            Some(after) => anyhow::bail!("--crash-after {after}: expected seconds, 0 or more"),
            None => stopping("game", signals.run_for(args.seconds).await),
        }
        let _ = stop_tx.send(true);
        task.await??;
        server.shutdown();
        anyhow::Ok(())
    })?;
    if let Some(logger) = logger {
        logger.shutdown(Duration::from_secs(2));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_key_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good");
        std::fs::write(&good, format!("{}\n", "0f".repeat(32))).unwrap();
        assert_eq!(read_token_key(&good).unwrap().as_bytes(), &[0x0f; 32]);
        for (name, text) in [
            ("short", "abcd"),
            ("nothex", &"zz".repeat(32)),
            ("zero", &"00".repeat(32)),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            assert!(read_token_key(&path).is_err(), "{name}");
        }
        assert!(read_token_key(&dir.path().join("missing")).is_err());
    }
}

/// Arguments of `flotilla replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// A directory written by `flotilla frontend --record DIR`.
    dir: std::path::PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// `flotilla replay DIR`: re-runs a front-end's recording offline and checks every output;
/// exits 1 on the first difference.
pub fn replay(args: ReplayArgs) -> Result<()> {
    let report = flotilla_frontend::record::replay(&args.dir)
        .with_context(|| format!("replaying {}", args.dir.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "replayed {} inputs over {:.3} s from {} file(s), starting at {}; {} outputs and {} checkpoint(s) checked{}",
            report.inputs,
            report.span_ms as f64 / 1000.0,
            report.files,
            report.started_from,
            report.outputs_checked,
            report.checkpoints_checked,
            if report.torn_tail {
                " (the recording ends with a torn record: the front-end stopped mid-write)"
            } else {
                ""
            }
        );
        match &report.mismatch {
            None => println!("every output is identical to the recorded run"),
            Some(m) => println!(
                "DIFFERENT after input {} ({}): recorded {} outputs (digest {}), replayed {} (digest {})",
                m.after_input, m.input, m.recorded.0, m.recorded.1, m.replayed.0, m.replayed.1
            ),
        }
    }
    if report.mismatch.is_some() {
        anyhow::bail!("the replay differs from the recording");
    }
    Ok(())
}
