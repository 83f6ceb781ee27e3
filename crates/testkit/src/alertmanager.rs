//! A private Prometheus Alertmanager (Debian package `prometheus-alertmanager`) on a free
//! loopback port, with clustering off and its state in a temporary folder.
//!
//! Its one route sends every alert group to a webhook receiver when one is given
//! (`send_resolved: true`, `group_wait` and `group_interval` of 1 s), so a test can see
//! both what Alertmanager holds ([`Alertmanager::alerts`], its v2 API) and what it
//! notified, resolutions included.

use crate::install::system_program;
use crate::ports::{Listener, free_port};
use crate::process::{PeerProcess, Spawn};
use crate::{Error, ensure_peers_installed};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;
use tempfile::TempDir;

/// A running Alertmanager. Dropping it kills the process and waits for it.
#[derive(Debug)]
pub struct Alertmanager {
    process: PeerProcess,
    port: u16,
    dir: TempDir,
}

impl Alertmanager {
    /// Installs the peers if needed, starts Alertmanager on a free loopback port and
    /// waits (at most [`crate::READY_TIMEOUT`]) until it listens. With `webhook`, every
    /// notification (firing and resolved) is also POSTed there.
    pub fn start(webhook: Option<&str>) -> Result<Self, Error> {
        ensure_peers_installed()?;
        let port = free_port()?;
        let dir = tempfile::Builder::new()
            .prefix("flotilla-alertmanager-")
            .tempdir()
            .map_err(Error::io("creating Alertmanager's temporary folder"))?;
        let receiver = match webhook {
            Some(url) => format!(
                "  - name: main\n    webhook_configs:\n      - url: '{url}'\n        send_resolved: true\n"
            ),
            None => "  - name: main\n".to_string(),
        };
        let config = format!(
            "route:\n  receiver: main\n  group_by: ['alertname', 'host', 'app']\n  \
             group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
             receivers:\n{receiver}"
        );
        let config_path = dir.path().join("alertmanager.yml");
        std::fs::write(&config_path, config)
            .map_err(Error::io("writing Alertmanager's configuration"))?;
        let storage = dir.path().join("data");
        let spawn = Spawn {
            peer: "alertmanager",
            program: system_program("prometheus-alertmanager")?,
            args: vec![
                format!("--config.file={}", config_path.display()).into(),
                format!("--storage.path={}", storage.display()).into(),
                format!("--web.listen-address=127.0.0.1:{port}").into(),
                // No gossip port: one private instance.
                "--cluster.listen-address=".into(),
                "--log.level=warn".into(),
            ],
            listeners: vec![Listener::tcp(port)],
            log_path: dir.path().join("alertmanager.log"),
            stale_files: Vec::new(),
            env: Vec::new(),
            current_dir: None,
        };
        let process = PeerProcess::start(spawn)?;
        Ok(Alertmanager { process, port, dir })
    }

    /// The API address (127.0.0.1:port).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The alerts Alertmanager holds now (`GET /api/v2/alerts`: active, silenced and
    /// inhibited ones; resolved alerts are not listed), as JSON objects with `labels`,
    /// `annotations`, `startsAt`, `endsAt` and `status`.
    pub fn alerts(&self) -> Result<Vec<serde_json::Value>, Error> {
        let response = crate::http::request(
            self.addr(),
            "GET",
            "/api/v2/alerts",
            b"",
            Duration::from_secs(5),
        )?;
        let fail = |reason: String| Error::Http {
            request: crate::http::describe(self.addr(), "GET", "/api/v2/alerts"),
            reason,
        };
        if response.status != 200 {
            return Err(fail(format!(
                "status {}: {}",
                response.status,
                response.body_text()
            )));
        }
        match serde_json::from_slice(&response.body) {
            Ok(serde_json::Value::Array(list)) => Ok(list),
            Ok(other) => Err(fail(format!("not a JSON array: {other}"))),
            Err(e) => Err(fail(format!("not JSON: {e}"))),
        }
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The private folder (configuration, storage, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The end of Alertmanager's own output.
    pub fn log(&self) -> String {
        self.process.log_tail()
    }

    /// Stops Alertmanager gracefully (SIGTERM, at most 5 s, then SIGKILL).
    pub fn stop(mut self) -> Result<(), Error> {
        self.process.stop()
    }
}
