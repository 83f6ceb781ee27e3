//! `flotilla logd`: runs one log-service node (store, listeners, HTTP API) until SIGINT or
//! SIGTERM, then makes everything it accepted durable and seals its open segment.
//!
//! With no flags it works: the data directory is `$FLOTILLA_LOGD_DATA`, else
//! `$XDG_DATA_HOME/flotilla/logd`, else `$HOME/.local/share/flotilla/logd`; it listens on
//! `udp://127.0.0.1:5514`, `tcp://127.0.0.1:5514`, `relp://127.0.0.1:2514` and serves HTTP on
//! `127.0.0.1:7480`. It prints what it uses on stderr, and one JSON line on stdout once it is
//! ready (`{"event":"ready", ...}`: the bound addresses, for scripts and tests).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use flotilla_logd::listen::ListenSpec;
use flotilla_logd::query::parse_duration;
use flotilla_logd::server::{DEFAULT_HTTP, DEFAULT_LISTEN, Server, ServerConfig};

/// Arguments of `flotilla logd`.
#[derive(clap::Args, Debug)]
pub struct LogdArgs {
    /// Data directory (one logd per directory; it is locked).
    #[arg(long, env = "FLOTILLA_LOGD_DATA")]
    data: Option<PathBuf>,
    /// Listeners, comma-separated and/or repeated: udp://ADDR, tcp://ADDR,
    /// tls://ADDR?cert=PEM&key=PEM[&client_ca=PEM], relp://ADDR.
    /// Default: udp://127.0.0.1:5514,tcp://127.0.0.1:5514,relp://127.0.0.1:2514.
    #[arg(long)]
    listen: Vec<String>,
    /// HTTP API address (query, tail, stats, health, /metrics); `none` to disable.
    #[arg(long, default_value = DEFAULT_HTTP)]
    http: String,
    /// Longest a record waits for its fsync when nobody waits for it, in milliseconds
    /// (RELP messages are synced as soon as the previous sync ends).
    #[arg(long, default_value_t = 10)]
    commit_interval_ms: u64,
    /// Longest frame kept whole, in bytes; longer frames are stored cut to this and
    /// flagged truncated.
    #[arg(long, default_value_t = 64 * 1024)]
    max_frame: usize,
    /// Most stream connections at once over all listeners.
    #[arg(long, default_value_t = 16_000)]
    max_connections: usize,
    /// Drop data older than this (e.g. 30d, 12h); whole segments (at most an hour each)
    /// are dropped.
    #[arg(long)]
    retention_age: Option<String>,
    /// Keep segments under this size (e.g. 20GiB, 500MiB); the oldest are dropped first.
    #[arg(long)]
    retention_size: Option<String>,
    /// zstd level of stored blocks (1 compresses log lines as well as 3 here, faster; see
    /// BENCHMARKS.md).
    #[arg(long, default_value_t = 1)]
    zstd_level: i32,
    /// Memory for received records not yet written, in MiB; senders are slowed past it.
    #[arg(long, default_value_t = 64)]
    queue_mib: usize,
    /// This node's name (archive objects, multi-node queries). Default: the one kept in
    /// the data directory's `node.id`, created the first time as HOSTNAME-RANDOM (unique
    /// per data directory, so two nodes on one host differ).
    #[arg(long)]
    node_id: Option<String>,
    /// The HTTP addresses of every node of a multi-node logd, comma-separated and/or
    /// repeated (http://HOST:PORT; this node's own may be listed: it is recognised).
    /// A query or tail asked of this node then covers all of them, merged by time, with
    /// duplicates of RELP resends shown once and any node that is down reported.
    #[arg(long, value_delimiter = ',')]
    peers: Vec<String>,
    /// Archive sealed segments (zstd JSON Lines per hour) to a directory or an
    /// S3-compatible store: /DIR, file:///DIR or
    /// s3://BUCKET/PREFIX?endpoint=http://HOST:PORT[&region=R&access_key=K&secret_key=S].
    #[arg(long)]
    archive: Option<String>,
    /// How often to look for newly sealed segments to archive, in seconds.
    #[arg(long, default_value_t = 5)]
    archive_every_secs: u64,
    /// Relay records, as received, to upstream syslog servers through the flotilla
    /// logger (its URL syntax: relp://HOST:PORT,tcp://HOST:PORT,udp://..., tls://...?ca=PEM).
    #[arg(long)]
    forward: Option<String>,
    /// Forward only records of these apps (repeatable).
    #[arg(long)]
    forward_app: Vec<String>,
    /// Forward only records of these hosts (repeatable).
    #[arg(long)]
    forward_host: Vec<String>,
    /// Forward only records in this severity range (e.g. ..warning).
    #[arg(long)]
    forward_severity: Option<String>,
    /// Forward only records containing these words (repeatable; all must occur).
    #[arg(long)]
    forward_grep: Vec<String>,
    /// Messages held for a slow or absent upstream before the oldest is dropped (counted).
    #[arg(long, default_value_t = 100_000)]
    forward_queue: usize,
    /// Alert rules and notification targets (TOML; see the README's "Alerts"). Without
    /// it the built-in alerts run: a service about to crash, a heartbeat that stopped, a
    /// boot loop.
    #[arg(long)]
    alerts: Option<PathBuf>,
    /// Deliver alerts to this Prometheus Alertmanager (e.g. http://127.0.0.1:9093;
    /// repeatable), besides the rules' [[notify]] targets.
    #[arg(long)]
    alertmanager: Vec<String>,
    /// Run without the fleet view and alerts.
    #[arg(long)]
    no_watch: bool,
}

/// The default data directory.
pub fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("flotilla/logd");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h).join(".local/share/flotilla/logd");
    }
    PathBuf::from("flotilla-logd-data")
}

/// Parses `20GiB`, `500MiB`, `1G`, `4096` into bytes.
pub fn parse_size(spec: &str) -> Result<u64> {
    let s = spec.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().with_context(|| format!("bad size {spec:?}"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => bail!("bad size {spec:?}: use B, KiB, MiB, GiB or TiB"),
    };
    Ok((n * mult) as u64)
}

/// Builds the node's configuration from the flags.
pub fn config_from_args(args: &LogdArgs) -> Result<ServerConfig> {
    let data = args.data.clone().unwrap_or_else(default_data_dir);
    let mut config = ServerConfig::new(data);
    let urls: Vec<String> = if args.listen.is_empty() {
        DEFAULT_LISTEN.iter().map(|s| s.to_string()).collect()
    } else {
        args.listen.clone()
    };
    config.listen = Vec::new();
    for u in &urls {
        config.listen.extend(ListenSpec::parse_list(u)?);
    }
    config.http = match args.http.as_str() {
        "none" | "" => None,
        a => Some(
            a.parse()
                .with_context(|| format!("--http {a:?}: expected IP:PORT or none"))?,
        ),
    };
    if args.commit_interval_ms == 0 || args.commit_interval_ms > 10_000 {
        bail!("--commit-interval-ms must be 1-10000");
    }
    config.store.commit_interval = Duration::from_millis(args.commit_interval_ms);
    if args.max_frame < 480 || args.max_frame > flotilla_logd::MAX_RECORD_BYTES {
        bail!(
            "--max-frame must be 480-{} (RFC 5424 receivers must take 480)",
            flotilla_logd::MAX_RECORD_BYTES
        );
    }
    config.listen_options.max_frame = args.max_frame;
    config.listen_options.max_connections = args.max_connections.max(1);
    if let Some(a) = &args.retention_age {
        let ns = parse_duration(a)
            .with_context(|| format!("--retention-age {a:?}: use e.g. 30d, 12h, 90m"))?;
        config.store.retention_age = Some(Duration::from_nanos(ns.max(0) as u64));
    }
    if let Some(s) = &args.retention_size {
        config.store.retention_bytes = Some(parse_size(s)?);
    }
    if !(1..=19).contains(&args.zstd_level) {
        bail!("--zstd-level must be 1-19");
    }
    config.store.zstd_level = args.zstd_level;
    config.store.queue_bytes = args.queue_mib.max(1) << 20;
    match &args.node_id {
        Some(n)
            if n.is_empty()
                || n.contains([',', '=', '/'])
                || n.chars().any(char::is_whitespace) =>
        {
            bail!(
                "--node-id {n:?}: use letters, digits, '-', '_' or '.' (no ',', '=', '/' or spaces)"
            )
        }
        Some(n) => config.store.node_id = n.clone(),
        None => {
            config.store.node_id =
                flotilla_logd::server::persistent_node_id(&config.store.data_dir)
                    .context("the node id of the data directory")?;
        }
    }
    config.peers = args
        .peers
        .iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    if !config.peers.is_empty() && config.http.is_none() {
        bail!("--peers needs the HTTP API (--http): it is how nodes ask each other");
    }
    config.archive = args.archive.clone();
    if let Some(to) = &args.forward {
        let spec = flotilla_logd::query::QuerySpec {
            app: args.forward_app.clone(),
            host: args.forward_host.clone(),
            severity: args.forward_severity.clone(),
            grep: args.forward_grep.clone(),
            ..Default::default()
        };
        config.forward = Some(flotilla_logd::forward::ForwardConfig {
            to: to.clone(),
            filter: spec.to_query(0).context("--forward-* filter")?,
            queue: args.forward_queue,
        });
    } else if !args.forward_app.is_empty()
        || !args.forward_host.is_empty()
        || args.forward_severity.is_some()
        || !args.forward_grep.is_empty()
    {
        bail!("--forward-app/-host/-severity/-grep need --forward URL");
    }
    config.archive_every = Duration::from_secs(args.archive_every_secs.max(1));
    if args.no_watch && (args.alerts.is_some() || !args.alertmanager.is_empty()) {
        bail!("--alerts and --alertmanager need the fleet view and alerts (drop --no-watch)");
    }
    config.watch = !args.no_watch;
    config.alerts = args.alerts.clone();
    for url in &args.alertmanager {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!("--alertmanager {url:?}: expected http://HOST:PORT or https://HOST:PORT");
        }
    }
    config.alertmanager = args.alertmanager.clone();
    Ok(config)
}

/// Runs `flotilla logd`.
pub fn run(args: LogdArgs) -> Result<()> {
    let config = config_from_args(&args)?;
    let data_dir = config.store.data_dir.clone();
    let mut server = Server::start(config)
        .with_context(|| format!("starting logd with data directory {}", data_dir.display()))?;
    eprintln!("flotilla logd: data directory {}", data_dir.display());
    let stats = server.store().stats();
    if stats.recovered_records > 0 || stats.torn_tail_bytes > 0 {
        eprintln!(
            "flotilla logd: recovered {} records from the write-ahead log (torn tail cut: {} bytes)",
            stats.recovered_records, stats.torn_tail_bytes
        );
    }
    for (url, _) in server.listener_addrs() {
        eprintln!("flotilla logd: listening on {url}");
    }
    if let Some(f) = server.forward_stats() {
        eprintln!("flotilla logd: forwarding to {}", f.to);
    }
    if !args.peers.is_empty() {
        eprintln!(
            "flotilla logd: node {}; queries and tails cover the peers {}",
            server.store().config().node_id,
            args.peers.join(",")
        );
    }
    if let Some(w) = server.watch() {
        let stats = w.stats();
        eprintln!(
            "flotilla logd: fleet view of {} services, alerts on{}",
            stats.services,
            match (args.alerts.as_ref(), w.has_user_rules()) {
                (Some(p), true) => format!(" (built-ins and the rules of {})", p.display()),
                (Some(p), false) => format!(" (built-ins; {} has no [[rule]])", p.display()),
                (None, _) => " (built-ins)".to_string(),
            }
        );
        for d in w.deliveries() {
            eprintln!("flotilla logd: alerts go to {}", d.target);
        }
    }
    if let Some(h) = server.http_addr() {
        eprintln!(
            "flotilla logd: web page and HTTP API on http://{h}/ (try: curl 'http://{h}/api/query?since=1h&limit=10')"
        );
    }
    let ready = serde_json::json!({
        "event": "ready",
        "node": server.store().config().node_id,
        "data_dir": data_dir,
        "listeners": server.listener_addrs().iter().map(|(u, _)| u.clone()).collect::<Vec<_>>(),
        "http": server.http_addr().map(|a| a.to_string()),
        "pid": std::process::id(),
    });
    println!("{ready}");
    wait_for_signal()?;
    eprintln!("flotilla logd: stopping (syncing and sealing)");
    server.shutdown();
    eprintln!("flotilla logd: stopped");
    Ok(())
}

fn wait_for_signal() -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        Ok::<_, std::io::Error>(())
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("2KiB").unwrap(), 2048);
        assert_eq!(parse_size("1.5GiB").unwrap(), 1_610_612_736);
        assert!(parse_size("lots").is_err());
    }
}
