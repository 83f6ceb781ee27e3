//! A private `nats-server` (Debian package) on a free loopback port.

use crate::install::system_program;
use crate::ports::{Listener, free_port};
use crate::process::{PeerProcess, Spawn};
use crate::{Error, ensure_peers_installed};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use tempfile::TempDir;

/// A running nats-server (`nats-server -a 127.0.0.1 -p PORT`). Dropping it kills the
/// process and waits for it.
#[derive(Debug)]
pub struct NatsServer {
    process: PeerProcess,
    port: u16,
    dir: TempDir,
}

impl NatsServer {
    /// Installs the peers if needed, starts nats-server on a free loopback port and
    /// waits (at most [`crate::READY_TIMEOUT`]) until it listens.
    pub fn start() -> Result<Self, Error> {
        ensure_peers_installed()?;
        let port = free_port()?;
        let dir = tempfile::Builder::new()
            .prefix("flotilla-nats-")
            .tempdir()
            .map_err(Error::io("creating nats-server's temporary folder"))?;
        let pid_path = dir.path().join("nats-server.pid");
        let spawn = Spawn {
            peer: "nats-server",
            program: system_program("nats-server")?,
            args: vec![
                "-a".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string().into(),
                "-P".into(),
                pid_path.clone().into_os_string(),
            ],
            listeners: vec![Listener::tcp(port)],
            log_path: dir.path().join("nats-server.log"),
            stale_files: vec![pid_path],
            env: Vec::new(),
            current_dir: None,
        };
        let process = PeerProcess::start(spawn)?;
        Ok(NatsServer { process, port, dir })
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The client address (127.0.0.1:port).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The client URL, `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The private folder (pid file, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The end of nats-server's own output.
    pub fn log(&self) -> String {
        self.process.log_tail()
    }

    /// Kills nats-server if running and starts it again on the same port.
    pub fn restart(&mut self) -> Result<(), Error> {
        self.process.restart()
    }

    /// Stops nats-server gracefully (SIGTERM, at most 5 s, then SIGKILL).
    pub fn stop(mut self) -> Result<(), Error> {
        self.process.stop()
    }
}
