//! A whole logd node in one value: the store, the listeners and the HTTP API on a tokio
//! runtime of their own. `flotilla logd` runs one; the demo and the tests run one in
//! process.

// An I/O shell (the process): it starts threads and runtimes and waits for them.
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;

use tokio::runtime::Runtime;

use std::sync::Arc;

use crate::error::Error;
use crate::forward::Forwarder;
use crate::http::{HttpState, serve};
use crate::listen::{ListenOptions, ListenSpec, ListenerSnapshot, Listeners};
use crate::store::{Store, StoreConfig};
use crate::watch::{Watch, WatchConfig};

/// What to run.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The store's settings (data directory, group commit, retention).
    pub store: StoreConfig,
    /// Listeners.
    pub listen: Vec<ListenSpec>,
    /// Listener settings (frame limit, connection limit).
    pub listen_options: ListenOptions,
    /// Address of the HTTP API, if any.
    pub http: Option<SocketAddr>,
    /// Worker threads of the runtime (listeners and HTTP); the store has its own thread.
    pub worker_threads: usize,
    /// Where sealed segments are archived (a directory or `s3://…`; see `archive`).
    pub archive: Option<String>,
    /// How often the archiver looks for newly sealed segments.
    pub archive_every: std::time::Duration,
    /// Relay records to upstream syslog servers.
    pub forward: Option<crate::forward::ForwardConfig>,
    /// The HTTP addresses of the other nodes (`http://HOST:PORT`; this node's own may be
    /// among them): queries and tails then cover every node (see [`crate::peers`]).
    /// Needs `http`.
    pub peers: Vec<String>,
    /// Run the fleet view and alerts (on by default, with the built-in alerts).
    pub watch: bool,
    /// Alert rules (TOML, see [`crate::alerts`]); `None`: the built-ins only.
    pub alerts: Option<std::path::PathBuf>,
    /// Alertmanagers to deliver alerts to, besides the rules' `[[notify]]` targets.
    pub alertmanager: Vec<String>,
}

impl ServerConfig {
    /// Defaults for a data directory: loopback listeners on `udp://127.0.0.1:5514`,
    /// `tcp://127.0.0.1:5514`, `relp://127.0.0.1:2514` and HTTP on `127.0.0.1:7480`.
    pub fn new(data_dir: impl Into<std::path::PathBuf>) -> Self {
        ServerConfig {
            store: StoreConfig::new(data_dir),
            listen: DEFAULT_LISTEN
                .iter()
                .filter_map(|u| ListenSpec::parse(u).ok())
                .collect(),
            listen_options: ListenOptions::default(),
            http: DEFAULT_HTTP.parse().ok(),
            worker_threads: 2,
            archive: None,
            archive_every: std::time::Duration::from_secs(5),
            forward: None,
            peers: Vec::new(),
            watch: true,
            alerts: None,
            alertmanager: Vec::new(),
        }
    }
}

/// This node's id for a data directory: the one in its `node.id` file, created the first
/// time as `<host name>-<8 random hex digits>`, so that two nodes on one host (each with
/// its own data directory) never share an id, and a node keeps its id across restarts.
/// Archive object keys start with it, so nodes sharing a bucket never collide.
pub fn persistent_node_id(data_dir: &std::path::Path) -> Result<String, Error> {
    let path = data_dir.join("node.id");
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    }
    std::fs::create_dir_all(data_dir)
        .map_err(|e| Error::io(format!("creating {}", data_dir.display()), e))?;
    let id = format!(
        "{}-{:08x}",
        crate::store::default_node_id(),
        random_u32(data_dir)
    );
    // Written whole then renamed: a crash leaves either no file or the whole id.
    let tmp = data_dir.join("node.id.tmp");
    std::fs::write(&tmp, format!("{id}\n"))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    Ok(id)
}

/// 32 random bits: from the OS, else from the clock, the process and the directory.
fn random_u32(salt: &std::path::Path) -> u32 {
    use std::io::Read as _;
    let mut bytes = [0u8; 4];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok()
    {
        return u32::from_le_bytes(bytes);
    }
    let seed = format!(
        "{:?}{}{}",
        std::time::SystemTime::now(),
        std::process::id(),
        salt.display()
    );
    xxhash_rust::xxh3::xxh3_64(seed.as_bytes()) as u32
}

/// The listeners of `flotilla logd` without `--listen`.
pub const DEFAULT_LISTEN: [&str; 3] = [
    "udp://127.0.0.1:5514",
    "tcp://127.0.0.1:5514",
    "relp://127.0.0.1:2514",
];

/// The HTTP address of `flotilla logd` without `--http`.
pub const DEFAULT_HTTP: &str = "127.0.0.1:7480";

/// A running node.
pub struct Server {
    runtime: Option<Runtime>,
    store: Store,
    listeners: Option<Listeners>,
    http_addr: Option<SocketAddr>,
    http_stop: Option<tokio::sync::oneshot::Sender<()>>,
    http_task: Option<tokio::task::JoinHandle<()>>,
    forwarder: Option<Arc<Forwarder>>,
    watch: Option<Arc<Watch>>,
}

impl Server {
    /// Opens the store, binds every listener and the HTTP API, and starts serving.
    pub fn start(config: ServerConfig) -> Result<Server, Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.worker_threads.max(1))
            .thread_name("logd-io")
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the runtime", e))?;
        let archive = config
            .archive
            .as_deref()
            .map(crate::archive::ArchiveTarget::parse)
            .transpose()?;
        // Alert rules are checked before anything is opened or bound.
        let rules = match (&config.alerts, config.watch) {
            (_, false) => None,
            (Some(path), true) => Some(
                crate::alerts::RuleSet::parse(&std::fs::read_to_string(path).map_err(|e| {
                    Error::io(format!("reading the alert rules {}", path.display()), e)
                })?)
                .map_err(|e| Error::Config(format!("alert rules {}: {e}", path.display())))?,
            ),
            (None, true) => Some(crate::alerts::RuleSet::builtin_only()),
        };
        let mut store_config = config.store.clone();
        store_config.keep_until_archived |= archive.is_some();
        let store = Store::open(store_config)?;
        let started = runtime.block_on(async {
            let mut http_listener = None;
            if let Some(addr) = config.http {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| Error::io(format!("binding http://{addr}"), e))?;
                let local = listener
                    .local_addr()
                    .map_err(|e| Error::io("reading the HTTP address", e))?;
                http_listener = Some((listener, local));
            }
            if http_listener.is_none() && !config.peers.is_empty() {
                return Err(Error::Config(
                    "peers need the HTTP API (it is how nodes ask each other)".into(),
                ));
            }
            let peers = match &http_listener {
                Some((_, local)) if !config.peers.is_empty() => {
                    Some(Arc::new(crate::peers::Peers::new(
                        &config.peers,
                        store.config().node_id.clone(),
                        Some(*local),
                    )?))
                }
                _ => None,
            };
            let watch = match rules {
                Some(mut rules) => {
                    for url in &config.alertmanager {
                        rules
                            .notify
                            .push(crate::alerts::NotifyTarget::Alertmanager { url: url.clone() });
                    }
                    let generator_url = http_listener
                        .as_ref()
                        .map(|(_, a)| format!("http://{a}/#alerts"))
                        .unwrap_or_default();
                    Some(Arc::new(Watch::start(
                        &store,
                        WatchConfig {
                            rules,
                            fleet: crate::fleet::FleetConfig::default(),
                            node: store.config().node_id.clone(),
                            generator_url,
                            peers: peers.clone(),
                        },
                        &tokio::runtime::Handle::current(),
                    )?))
                }
                None => None,
            };
            let listeners = Listeners::start(
                &config.listen,
                store.ingest(),
                config.listen_options.clone(),
            )
            .await?;
            let forwarder = match &config.forward {
                Some(f) => Some(Arc::new(Forwarder::start(&store, f.clone())?)),
                None => None,
            };
            let listener_stats = listeners.stats_fn();
            let extra_stats: Arc<dyn Fn() -> serde_json::Value + Send + Sync> = match &forwarder {
                None => listener_stats,
                Some(f) => {
                    let f = f.clone();
                    Arc::new(move || {
                        let mut v = listener_stats();
                        if let Some(o) = v.as_object_mut() {
                            o.insert(
                                "forward".into(),
                                serde_json::to_value(f.snapshot()).unwrap_or_default(),
                            );
                        }
                        v
                    })
                }
            };
            let mut http = None;
            if let Some((listener, local)) = http_listener {
                let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
                let state = HttpState {
                    store: store.clone(),
                    extra_stats: extra_stats.clone(),
                    peers,
                    watch: watch.clone(),
                };
                let task = tokio::spawn(async move {
                    let stop = async move {
                        let _ = stop_rx.await;
                    };
                    if let Err(e) = serve(listener, state, stop).await {
                        tracing::error!(error = %e, "HTTP API stopped");
                    }
                });
                http = Some((local, stop_tx, task));
            }
            if let Some(target) = archive {
                tokio::spawn(crate::archive::run_archiver(
                    store.clone(),
                    target,
                    config.archive_every,
                ));
            }
            Ok::<_, Error>((listeners, http, forwarder, watch))
        });
        let (listeners, http, forwarder, watch) = match started {
            Ok(x) => x,
            Err(e) => {
                store.shutdown();
                return Err(e);
            }
        };
        let (http_addr, http_stop, http_task) = match http {
            Some((a, s, t)) => (Some(a), Some(s), Some(t)),
            None => (None, None, None),
        };
        Ok(Server {
            runtime: Some(runtime),
            store,
            listeners: Some(listeners),
            http_addr,
            http_stop,
            http_task,
            forwarder,
            watch,
        })
    }

    /// The fleet view and alerts, unless they were turned off.
    pub fn watch(&self) -> Option<&Arc<Watch>> {
        self.watch.as_ref()
    }

    /// The forwarder's counters, when forwarding.
    pub fn forward_stats(&self) -> Option<crate::forward::ForwardSnapshot> {
        self.forwarder.as_ref().map(|f| f.snapshot())
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// `(url, bound address)` of each listener.
    pub fn listener_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.listeners
            .as_ref()
            .map(|l| l.addrs().to_vec())
            .unwrap_or_default()
    }

    /// The bound address of the first listener of a scheme.
    pub fn addr_of(&self, scheme: &str) -> Option<SocketAddr> {
        self.listeners.as_ref().and_then(|l| l.addr_of(scheme))
    }

    /// The HTTP API's address.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The listeners' counters.
    pub fn listener_stats(&self) -> Vec<ListenerSnapshot> {
        self.listeners
            .as_ref()
            .map(Listeners::snapshot)
            .unwrap_or_default()
    }

    /// Stops listening, makes everything accepted durable, seals the open segment and
    /// stops. Idempotent.
    pub fn shutdown(&mut self) {
        if let Some(mut l) = self.listeners.take() {
            l.shutdown();
        }
        if let Some(stop) = self.http_stop.take() {
            let _ = stop.send(());
        }
        if let (Some(rt), Some(task)) = (self.runtime.as_ref(), self.http_task.take()) {
            let _ = rt.block_on(async {
                tokio::time::timeout(std::time::Duration::from_secs(2), task).await
            });
        }
        self.store.shutdown();
        if let Some(w) = self.watch.take() {
            // Feeds what the store made durable last, then saves the fleet view.
            w.shutdown();
            if let Some(rt) = self.runtime.as_ref()
                && !rt.block_on(w.drain_deliveries(std::time::Duration::from_secs(2)))
            {
                // Said, not hidden: these notifications were never delivered.
                for d in w.deliveries().iter().filter(|d| d.pending > 0) {
                    tracing::warn!(
                        target = %d.target,
                        pending = d.pending,
                        last_error = d.last_error.as_deref().unwrap_or("none"),
                        "stopping with alert notifications not delivered"
                    );
                }
            }
        }
        if let Some(f) = self.forwarder.take() {
            // What the store accepted last is relayed before the logger stops.
            std::thread::sleep(std::time::Duration::from_millis(50));
            f.shutdown(std::time::Duration::from_secs(5));
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(std::time::Duration::from_secs(1));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}
