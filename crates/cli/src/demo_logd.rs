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
//! Every logger sends its boot message, and all of them send RFC 5424 over TCP to the
//! node's listener. The node's data directory outlives the demo, so what the roles said
//! can be queried afterwards with `flotilla logs query --data DIR`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use flotilla_logd::listen::ListenSpec;
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
}

/// The running node and the role loggers.
pub struct DemoLogs {
    server: Server,
    data_dir: PathBuf,
    router: Arc<Router>,
}

impl DemoLogs {
    /// Starts a node on a new data directory (kept after the demo) with a TCP listener
    /// and the HTTP API on loopback, one logger per role (`frontends` front-ends
    /// named `fe-1`…), and installs them as the process's `log` logger and panic hook.
    ///
    /// Must be called outside any tokio runtime (the node runs its own).
    pub fn start(frontends: usize) -> Result<DemoLogs> {
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
        let server = Server::start(config)
            .with_context(|| format!("starting logd on {}", data_dir.display()))?;
        let tcp = server.addr_of("tcp").context("logd has no TCP listener")?;
        let logger = |app: &str, hostname: Option<String>| -> Result<Logger> {
            let mut config = Config::with_collectors(&format!("tcp://{tcp}"))?;
            config.app_name = Some(app.into());
            config.app_version = Some(env!("CARGO_PKG_VERSION").into());
            config.hostname = hostname;
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

    /// Delivers what the roles logged, stops the loggers and the node (everything
    /// accepted made durable, the open segment sealed, so `flotilla logs query --data`
    /// reads it all), then counts the stored records per role.
    ///
    /// Must be called outside any tokio runtime.
    pub fn finish(mut self) -> Result<LogdSummary> {
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
        let mut summary = LogdSummary {
            data_dir: self.data_dir.clone(),
            records: 0,
            per_app: BTreeMap::new(),
            boot_messages: 0,
            query: query_command(&self.data_dir),
        };
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
