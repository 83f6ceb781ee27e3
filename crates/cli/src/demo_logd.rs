//! The demo's logging: an in-process log-service node (`flotilla_logd::server::Server`) and
//! one flotilla logger per role, each with its own APP-NAME, as if every role ran as its
//! own process.
//!
//! The roles log through the `log` facade; one [`log::Log`] installed for the whole
//! process hands each record to its role's logger:
//! - records logged on a front-end's thread (`frontend-fe-N`), or inside
//!   [`as_frontend`] (its start-up), go to that front-end's logger: APP-NAME
//!   `flotilla-frontend`, HOSTNAME its id (`fe-1`, ...);
//! - records of the game-server SDK (`flotilla_game::…`) to `flotilla-game` (HOSTNAME
//!   `game-1`);
//! - records of the clients (`flotilla_client::…`) to `flotilla-client`;
//! - everything else (the demo itself) to `flotilla-demo`.
//!
//! Every logger sends its boot message and a heartbeat (an interval suited to the demo's
//! length, 0.5 to 1 s), and all of them send RFC 5424 over TCP to the node's listener.
//! The node runs logd's fleet view and built-in alerts (ServiceCrashed, HeartbeatStopped,
//! BootLoop) and serves its web page on the HTTP address. When the demo shuts a
//! front-end down, that front-end's logger stops with it, as it would with its process:
//! logd has no "stopped on purpose" state (a logger does not announce an exit, and to the
//! log service a front-end that was shut down and one that was killed look the same),
//! so its heartbeats stop, the fleet shows it `silent` and HeartbeatStopped fires. The
//! game server that crashes on purpose is a process of its own (see `crate::demo`) logging
//! to the same node.
//!
//! The node's data directory outlives the demo, so what the roles said can be queried
//! afterwards with `flotilla logs query --data DIR`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use flotilla_logd::alerts::Alert;
use flotilla_logd::fleet::{ServiceRow, ServiceState};
use flotilla_logd::listen::ListenSpec;
use flotilla_logd::query::format_ns;
use flotilla_logd::record::now_nanos;
use flotilla_logd::server::{Server, ServerConfig};
use flotilla_logd::store::defaults_for;
use flotilla_logd::{Matcher, Query};
use flotilla_logger::{Config, Logger};
use serde::Serialize;

/// APP-NAME of the demo's own messages.
pub const DEMO_APP: &str = "flotilla-demo";
/// APP-NAME of the game server's messages.
pub const GAME_APP: &str = "flotilla-game";
/// APP-NAME of the front-ends' messages.
pub const FRONTEND_APP: &str = "flotilla-frontend";
/// APP-NAME of the clients' messages.
pub const CLIENT_APP: &str = "flotilla-client";

/// What the log service stored during the demo (the `logd` part of the summary).
#[derive(Debug, Clone, Serialize)]
pub struct LogdSummary {
    /// The node's data directory (kept after the demo).
    pub data_dir: PathBuf,
    /// Records stored.
    pub records: u64,
    /// Records per APP-NAME (per role).
    pub per_app: BTreeMap<String, u64>,
    /// Boot messages among them (one per role's logger; the summary's `boot_messages`).
    #[serde(skip)]
    pub boot_messages: u64,
    /// A command that queries the stored records now.
    pub query: String,
    /// logd's web page (search, tail, fleet, alerts): `http://ADDR/`, served until the
    /// demo exits (`--linger S` keeps it up S seconds after the summary).
    pub page: Option<String>,
    /// logd's fleet view at the summary, one row per service (host + app), sorted by
    /// host and app.
    pub fleet: Vec<FleetRow>,
    /// logd's alerts at the summary (built-ins only; no delivery target configured).
    pub alerts: AlertsSummary,
}

/// One service of logd's fleet view, as the summary shows it.
#[derive(Debug, Clone, Serialize)]
pub struct FleetRow {
    /// HOSTNAME.
    pub host: String,
    /// APP-NAME.
    pub app: String,
    /// `up`, `silent` (no heartbeat for 3 intervals), `crashed`, `boot-looping`.
    pub state: String,
    /// Boots in the last hour.
    pub boots_last_hour: u64,
    /// Crash ("about to crash") messages.
    pub crashes: u64,
    /// The last heartbeat (RFC 3339), if any.
    pub last_heartbeat: Option<String>,
    /// Seconds between the last heartbeat and the summary.
    pub last_heartbeat_ago_s: Option<f64>,
    /// The heartbeat interval the service declared, in seconds.
    pub heartbeat_interval_s: Option<f64>,
    /// What the last crash message said.
    pub last_crash: Option<String>,
}

impl FleetRow {
    fn from_row(row: &ServiceRow, now: i64) -> FleetRow {
        let secs = |ns: i64| ns as f64 / 1e9;
        FleetRow {
            host: row.host.clone(),
            app: row.app.clone(),
            state: row.state.name().to_owned(),
            boots_last_hour: row.boots_last_hour,
            crashes: row.crashes,
            last_heartbeat: row.last_heartbeat.map(format_ns),
            last_heartbeat_ago_s: row.last_heartbeat.map(|t| secs(now.saturating_sub(t))),
            heartbeat_interval_s: row.heartbeat_interval.map(secs),
            last_crash: row.last_crash.as_ref().map(|c| c.message.clone()),
        }
    }
}

/// logd's alerts, as `/api/alerts` gives them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AlertsSummary {
    /// Alerts firing.
    pub firing: Vec<Alert>,
    /// The recent notifications (firing and resolved), oldest first.
    pub recent: Vec<Alert>,
}

/// What the demo expects logd's fleet view and alerts to show about one service.
#[derive(Debug, Clone)]
pub struct Expected {
    /// HOSTNAME.
    pub host: String,
    /// APP-NAME.
    pub app: &'static str,
    /// Its state in the fleet view.
    pub state: ServiceState,
    /// The built-in alert that must be firing for it.
    pub alert: &'static str,
}

impl Expected {
    /// Whether `rows` and the `firing` alerts show it.
    fn seen(&self, rows: &[ServiceRow], firing: &[Alert]) -> bool {
        let row = rows
            .iter()
            .any(|r| r.host == self.host && r.app == self.app && r.state == self.state);
        let alert = firing.iter().any(|a| {
            a.name == self.alert
                && a.labels.get("host").map(String::as_str) == Some(self.host.as_str())
                && a.labels.get("app").map(String::as_str) == Some(self.app)
        });
        row && alert
    }
}

impl std::fmt::Display for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} {} with {} firing",
            self.host, self.app, self.state, self.alert
        )
    }
}

/// The running node and the role loggers.
pub struct DemoLogs {
    server: Server,
    data_dir: PathBuf,
    router: Arc<Router>,
    heartbeat: Duration,
}

impl DemoLogs {
    /// Starts a node on a new data directory (kept after the demo) with a TCP listener,
    /// the HTTP API and web page on loopback, the fleet view and the built-in alerts,
    /// one logger per role (`frontends` front-ends named `fe-1`…) heartbeating every
    /// `heartbeat`, and installs them as the process's `log` logger and panic hook.
    ///
    /// Must be called outside any tokio runtime (the node runs its own).
    pub fn start(frontends: usize, heartbeat: Duration) -> Result<DemoLogs> {
        let data_dir = tempfile::Builder::new()
            .prefix("flotilla-demo-logd-")
            .tempdir()
            .context("creating the demo's logd data directory")?
            .keep();
        let mut config = ServerConfig::new(&data_dir);
        config.listen = vec![ListenSpec::parse("tcp://127.0.0.1:0")?];
        config.http = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        // A few hundred messages: one I/O thread, one less competing with the roles.
        config.worker_threads = 1;
        // The fleet view and the built-in alerts (logd's defaults, said here because the
        // demo's summary shows them); no delivery target.
        config.watch = true;
        config.alerts = None;
        let server = Server::start(config)
            .with_context(|| format!("starting logd on {}", data_dir.display()))?;
        let tcp = server.addr_of("tcp").context("logd has no TCP listener")?;
        let logger = |app: &str, hostname: Option<String>| -> Result<Logger> {
            let mut config = Config::with_collectors(&format!("tcp://{tcp}"))?;
            config.app_name = Some(app.into());
            config.app_version = Some(env!("CARGO_PKG_VERSION").into());
            config.hostname = hostname;
            config.heartbeat = Some(heartbeat);
            Ok(Logger::start(config)?)
        };
        let router = Arc::new(Router {
            max_level: log::LevelFilter::Info,
            demo: logger(DEMO_APP, None)?,
            game: logger(GAME_APP, Some("game-1".into()))?,
            client: logger(CLIENT_APP, None)?,
            frontends: (1..=frontends)
                .map(|i| {
                    let id = format!("fe-{i}");
                    Ok((format!("frontend-{id}"), logger(FRONTEND_APP, Some(id))?))
                })
                .collect::<Result<_>>()?,
        });
        log::set_boxed_logger(Box::new(RouterHandle(router.clone())))
            .context("installing the demo's logger")?;
        log::set_max_level(router.max_level);
        flotilla_logger::install_panic_hook(router.demo.clone());
        for logger in router.all() {
            logger.boot();
        }
        Ok(DemoLogs {
            server,
            data_dir,
            router,
            heartbeat,
        })
    }

    /// The node's TCP listener (where the roles log to).
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.server.addr_of("tcp")
    }

    /// The node's HTTP API.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.server.http_addr()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The node's web page, `http://ADDR/`.
    pub fn page_url(&self) -> Option<String> {
        self.server.http_addr().map(|a| format!("http://{a}/"))
    }

    /// The heartbeat interval of the roles' loggers.
    pub fn heartbeat(&self) -> Duration {
        self.heartbeat
    }

    /// Front-end `index`'s logger (0-based): the demo stops it when it shuts that
    /// front-end down.
    pub fn frontend_logger(&self, index: usize) -> Option<Logger> {
        self.router.frontends.get(index).map(|(_, l)| l.clone())
    }

    /// Waits (at most `within`) until logd's fleet view and firing alerts show every one
    /// of `expected`; returns the ones still missing then.
    pub fn wait_for_fleet(&self, expected: &[Expected], within: Duration) -> Vec<Expected> {
        let deadline = Instant::now() + within;
        loop {
            let missing: Vec<Expected> = match self.server.watch() {
                Some(watch) => {
                    let rows = watch.fleet_rows();
                    let (firing, _) = watch.alerts();
                    expected
                        .iter()
                        .filter(|e| !e.seen(&rows, &firing))
                        .cloned()
                        .collect()
                }
                None => expected.to_vec(),
            };
            if missing.is_empty() || Instant::now() >= deadline {
                return missing;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the node holds now: delivers what the roles logged so far (they keep
    /// running, and heartbeating), waits until the node stored what it received and its
    /// fleet view saw it, then counts the stored records per role and takes the fleet
    /// view and the alerts.
    ///
    /// Must be called outside any tokio runtime.
    pub fn summary(&self) -> Result<LogdSummary> {
        let deadline = Instant::now() + Duration::from_secs(3);
        for logger in self.router.all() {
            logger.flush(deadline.saturating_duration_since(Instant::now()));
        }
        // Delivered means written to the socket: let the listener read it and the
        // store make it durable (bounded; the summary is a snapshot anyway).
        std::thread::sleep(Duration::from_millis(20));
        let settle_by = Instant::now() + Duration::from_secs(2);
        while Instant::now() < settle_by {
            let received: u64 = self.server.listener_stats().iter().map(|l| l.frames).sum();
            if self.server.store().stats().records >= received {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let last_id = self.server.store().stats().next_id.saturating_sub(1);
        let mut summary = LogdSummary {
            data_dir: self.data_dir.clone(),
            records: 0,
            per_app: BTreeMap::new(),
            boot_messages: 0,
            query: query_command(&self.data_dir),
            page: self.page_url(),
            fleet: Vec::new(),
            alerts: AlertsSummary::default(),
        };
        if let Some(watch) = self.server.watch() {
            watch.wait_through(last_id, Duration::from_secs(2));
            let now = now_nanos();
            summary.fleet = watch
                .fleet_rows()
                .iter()
                .map(|r| FleetRow::from_row(r, now))
                .collect();
            let (firing, recent) = watch.alerts();
            summary.alerts = AlertsSummary { firing, recent };
        }
        let matcher = Matcher::new(Query::default())?;
        self.server
            .store()
            .scan(&matcher, false, &mut |_, record| {
                summary.records += 1;
                let parsed =
                    flotilla_syslog::parse_lenient(&record.raw, &defaults_for(record.received_at));
                let (app, msg_id) = match &parsed {
                    Ok(p) => (p.app_name.unwrap_or("-"), p.msg_id),
                    Err(_) => ("-", None),
                };
                *summary.per_app.entry(app.to_owned()).or_default() += 1;
                if msg_id == Some("BOOT") {
                    summary.boot_messages += 1;
                }
                true
            })?;
        Ok(summary)
    }

    /// Delivers what the roles logged, stops the loggers and the node: everything
    /// accepted made durable, the open segment sealed, so `flotilla logs query --data`
    /// reads it all.
    ///
    /// Must be called outside any tokio runtime.
    pub fn finish(mut self) {
        let deadline = Instant::now() + Duration::from_secs(3);
        for logger in self.router.all() {
            logger.flush(deadline.saturating_duration_since(Instant::now()));
        }
        // Closes every connection to the node: it reads each one to its end.
        for logger in self.router.all() {
            logger.shutdown(Duration::from_millis(500));
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline
            && self
                .server
                .listener_stats()
                .iter()
                .any(|l| l.connections_open > 0)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.server.shutdown();
    }
}

/// Runs `future` (a front-end's start-up) with its log records going to front-end
/// `index`'s logger (0-based), whichever thread polls it.
pub async fn as_frontend<F: Future>(index: usize, future: F) -> F::Output {
    FRONTEND.scope(index, future).await
}

tokio::task_local! {
    /// The front-end whose start-up the current task runs (see [`as_frontend`]).
    static FRONTEND: usize;
}

/// The role loggers and the rule that picks one for a record.
struct Router {
    max_level: log::LevelFilter,
    demo: Logger,
    game: Logger,
    client: Logger,
    /// `(thread name, logger)` per front-end, in id order.
    frontends: Vec<(String, Logger)>,
}

impl Router {
    fn all(&self) -> impl Iterator<Item = &Logger> {
        [&self.demo, &self.game, &self.client]
            .into_iter()
            .chain(self.frontends.iter().map(|(_, l)| l))
    }

    fn pick(&self, target: &str) -> &Logger {
        if let Ok(i) = FRONTEND.try_with(|i| *i)
            && let Some((_, logger)) = self.frontends.get(i)
        {
            return logger;
        }
        let thread = std::thread::current();
        if let Some(name) = thread.name()
            && name.starts_with("frontend-")
            && let Some((_, logger)) = self.frontends.iter().find(|(n, _)| n == name)
        {
            return logger;
        }
        let krate = target.split("::").next().unwrap_or(target);
        match krate {
            "flotilla_game" => &self.game,
            "flotilla_client" => &self.client,
            _ => &self.demo,
        }
    }
}

/// The installed `log` logger: a handle on the shared router.
struct RouterHandle(Arc<Router>);

impl log::Log for RouterHandle {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= self.0.max_level
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            log::Log::log(self.0.pick(record.target()), record);
        }
    }

    fn flush(&self) {
        for logger in self.0.all() {
            log::Log::flush(logger);
        }
    }
}

/// The ready-to-run command that queries the front-ends' stored messages.
fn query_command(data_dir: &Path) -> String {
    format!(
        "{} logs query --data {} --app {FRONTEND_APP}",
        flotilla_command(),
        shell_quote(&data_dir.display().to_string())
    )
}

/// `flotilla` when that name on `$PATH` is this very binary, else this binary's path
/// (quoted for a shell when it needs it).
pub fn flotilla_command() -> String {
    shell_quote(&flotilla_binary())
}

fn flotilla_binary() -> String {
    let Ok(me) = std::env::current_exe().and_then(|p| p.canonicalize()) else {
        return "flotilla".into();
    };
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("flotilla"))
            .find(|p| p.is_file())
    });
    match on_path.and_then(|p| p.canonicalize().ok()) {
        Some(p) if p == me => "flotilla".into(),
        _ => me.display().to_string(),
    }
}

/// Quotes `s` for a POSIX shell when it needs it.
fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@+,".contains(&b));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(
            shell_quote("/tmp/flotilla-demo-logd-x1"),
            "/tmp/flotilla-demo-logd-x1"
        );
        assert_eq!(shell_quote("/tmp/a b"), "'/tmp/a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
