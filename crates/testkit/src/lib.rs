//! Test support for flotilla: installs and runs REAL peers (rsyslog, syslog-ng,
//! nats-server, dnsmasq) in private temporary folders, on loopback ports, from Rust tests.
//!
//! Every test that needs a peer calls [`ensure_peers_installed`] first; it runs
//! `scripts/install-peers.sh` once per process. Then:
//!
//! - [`Rsyslog::builder`] starts `rsyslogd` with the chosen inputs (imudp, imptcp,
//!   imrelp, imtcp over GnuTLS) and writes every received message as one JSON object
//!   per line (see [`rsyslog`] for the field names);
//! - [`SyslogNg::builder`] starts the privately unpacked `syslog-ng` with RFC 5424 and
//!   RFC 3164 sources, also writing JSON lines (see [`syslog_ng`]);
//! - [`NatsServer::start`] starts `nats-server`;
//! - [`Dnsmasq::start`] starts `dnsmasq` serving given A/AAAA records;
//! - [`TestCertificate::generate`] makes a self-signed certificate for TLS peers,
//!   [`TestPki::generate`] a CA with server and client certificates for mutual TLS.
//!
//! Every start waits for readiness for at most [`READY_TIMEOUT`]; every handle kills its
//! process and waits for it on drop, so a panicking test leaks no process.
#![forbid(unsafe_code)]

pub mod dnsmasq;
pub mod error;
pub mod install;
pub mod nats;
pub mod output;
pub mod ports;
mod process;
mod receiver;
pub mod rsyslog;
pub mod syslog_ng;
pub mod tls;

pub use dnsmasq::Dnsmasq;
pub use error::Error;
pub use install::{ensure_peers_installed, peers_dir, syslog_ng_wrapper};
pub use nats::NatsServer;
pub use ports::free_port;
pub use rsyslog::{Rsyslog, RsyslogBuilder, RsyslogHandle, RsyslogPorts};
pub use syslog_ng::{SyslogNg, SyslogNgBuilder, SyslogNgHandle, SyslogNgSource};
pub use tls::{IssuedCertificate, TestCertificate, TestPki};

use std::time::Duration;

/// How long a peer may take to become ready (listening on all its ports).
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
