//! A private `dnsmasq` (Debian package) answering DNS on a free loopback port, for the
//! clients' "every address of a DNS name" front-end lists.
//!
//! It serves only the records given to it (from a hosts file in its own folder: several
//! lines for one name give several A/AAAA records), forwards nothing (`--no-resolv`),
//! reads neither `/etc/hosts` nor `/etc/dnsmasq.conf`, and answers with TTL 0 so a
//! resolver asks again every time. [`Dnsmasq::set_records`] rewrites the records and
//! restarts it on the same port.

use crate::install::system_program;
use crate::ports::{Listener, free_port};
use crate::process::{PeerProcess, Spawn};
use crate::{Error, ensure_peers_installed};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// A running dnsmasq serving fixed records on `127.0.0.1:port` (UDP and TCP). Dropping it
/// kills the process and waits for it.
#[derive(Debug)]
pub struct Dnsmasq {
    process: PeerProcess,
    port: u16,
    dir: TempDir,
    hosts_path: PathBuf,
}

impl Dnsmasq {
    /// Installs the peers if needed, writes `records` (name, address) and starts dnsmasq
    /// on a free loopback port, waiting (at most [`crate::READY_TIMEOUT`]) until it
    /// listens.
    pub fn start(records: &[(&str, IpAddr)]) -> Result<Self, Error> {
        ensure_peers_installed()?;
        let port = free_port()?;
        let dir = tempfile::Builder::new()
            .prefix("flotilla-dnsmasq-")
            .tempdir()
            .map_err(Error::io("creating dnsmasq's temporary folder"))?;
        let hosts_path = dir.path().join("hosts");
        write_hosts(&hosts_path, records)?;
        let pid_path = dir.path().join("dnsmasq.pid");
        let arg = |text: String| -> std::ffi::OsString { text.into() };
        let spawn = Spawn {
            peer: "dnsmasq",
            program: system_program("dnsmasq")?,
            args: vec![
                arg("--keep-in-foreground".into()),
                arg("--conf-file=/dev/null".into()),
                arg("--no-resolv".into()),
                arg("--no-hosts".into()),
                arg("--no-poll".into()),
                arg("--bind-interfaces".into()),
                arg("--listen-address=127.0.0.1".into()),
                arg(format!("--port={port}")),
                arg(format!("--addn-hosts={}", hosts_path.display())),
                arg("--local-ttl=0".into()),
                // Stay root: the hosts file is in a folder only root can read.
                arg("--user=root".into()),
                arg(format!("--pid-file={}", pid_path.display())),
                arg("--log-facility=-".into()),
                arg("--log-queries".into()),
            ],
            listeners: vec![Listener::udp(port), Listener::tcp(port)],
            log_path: dir.path().join("dnsmasq.log"),
            stale_files: vec![pid_path],
            env: Vec::new(),
            current_dir: None,
        };
        let process = PeerProcess::start(spawn)?;
        Ok(Dnsmasq {
            process,
            port,
            dir,
            hosts_path,
        })
    }

    /// Replaces the records and restarts dnsmasq on the same port.
    pub fn set_records(&mut self, records: &[(&str, IpAddr)]) -> Result<(), Error> {
        write_hosts(&self.hosts_path, records)?;
        self.process.restart()
    }

    /// The DNS port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server address (127.0.0.1:port), for a resolver's name-server list.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The private folder (hosts file, pid file, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The end of dnsmasq's own output (it logs every query).
    pub fn log(&self) -> String {
        self.process.log_tail()
    }

    /// Stops dnsmasq gracefully (SIGTERM, at most 5 s, then SIGKILL).
    pub fn stop(mut self) -> Result<(), Error> {
        self.process.stop()
    }
}

/// Writes `records` as a hosts file, one `address name` line each.
fn write_hosts(path: &Path, records: &[(&str, IpAddr)]) -> Result<(), Error> {
    let mut text = String::new();
    for (name, address) in records {
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '#') {
            return Err(Error::Config(format!("not a host name: {name:?}")));
        }
        let _ = writeln!(text, "{address} {name}");
    }
    std::fs::write(path, text).map_err(Error::io(format!("writing {}", path.display())))
}
