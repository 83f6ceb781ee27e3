//! Test support for flotilla: installs and runs REAL peers (rsyslog, syslog-ng,
//! nats-server, dnsmasq, SeaweedFS) and load tools (syslog-ng's `loggen`, util-linux's
//! `logger`) in private temporary folders, on loopback ports, from Rust tests and
//! benchmarks.
//!
//! Every test that needs a peer calls [`ensure_peers_installed`] first (the starters
//! below do it themselves); it runs `scripts/install-peers.sh` once per process. Then:
//!
//! - [`Rsyslog::builder`] starts `rsyslogd` with the chosen inputs (imudp, imptcp,
//!   imrelp, imtcp over GnuTLS) and writes every received message as one JSON object
//!   per line (see [`rsyslog`] for the field names); with
//!   [`RsyslogBuilder::forward_tcp`], [`RsyslogBuilder::forward_udp`] or
//!   [`RsyslogBuilder::forward_relp`] it is also a forwarder (omfwd, omrelp) of RFC 5424;
//! - [`Rsyslog::sink`] starts `rsyslogd` as a benchmark sink: imptcp to a plain file of
//!   RFC 5424 lines, tuned for throughput, with [`RsyslogSink::wait_for_line_count`]
//!   (see [`rsyslog_sink`]);
//! - [`SyslogNg::builder`] starts the privately unpacked `syslog-ng` with RFC 5424 and
//!   RFC 3164 sources, also writing JSON lines (see [`syslog_ng`]);
//! - [`NatsServer::start`] starts `nats-server`;
//! - [`Alertmanager::start`] starts Prometheus Alertmanager, optionally notifying a
//!   webhook of every firing and resolved alert (see [`alertmanager`]);
//! - [`Dnsmasq::start`] starts `dnsmasq` serving given A/AAAA records;
//! - [`Weed::start`] starts SeaweedFS (`weed server` with its S3 gateway) with a small
//!   anonymous S3 client: buckets, put, list, get (see [`weed`]);
//! - [`run_loggen`] runs syslog-ng's `loggen` against a target and parses its summary
//!   ([`LoggenOptions`], [`LoggenReport`]; see [`loggen`]);
//! - [`run_logger`] and [`Logger`] send single messages with util-linux's `logger`
//!   (see [`logger`]);
//! - [`TestCertificate::generate`] makes a self-signed certificate for TLS peers,
//!   [`TestPki::generate`] a CA with server and client certificates for mutual TLS.
//!
//! Every start waits for readiness for at most [`READY_TIMEOUT`]; every handle kills its
//! process and waits for it on drop, so a panicking test leaks no process. One-shot tools
//! (loggen, logger) run under a timeout and are killed on drop too.
#![forbid(unsafe_code)]

pub mod alertmanager;
pub mod chromium;
pub mod dnsmasq;
pub mod error;
mod http;
pub mod install;
pub mod loggen;
pub mod logger;
pub mod nats;
pub mod output;
pub mod ports;
mod process;
mod receiver;
pub mod rsyslog;
pub mod rsyslog_sink;
pub mod syslog_ng;
pub mod tls;
pub mod weed;

pub use alertmanager::Alertmanager;
pub use chromium::{Chromium, Page};
pub use dnsmasq::Dnsmasq;
pub use error::Error;
pub use install::{
    ensure_peers_installed, loggen_wrapper, peers_dir, syslog_ng_wrapper, weed_program,
};
pub use loggen::{
    LoggenOptions, LoggenReport, LoggenRun, LoggenTransport, run_loggen, spawn_loggen,
};
pub use logger::{Logger, run_logger};
pub use nats::NatsServer;
pub use ports::free_port;
pub use rsyslog::{Rsyslog, RsyslogBuilder, RsyslogForward, RsyslogHandle, RsyslogPorts};
pub use rsyslog_sink::{RsyslogSink, RsyslogSinkBuilder};
pub use syslog_ng::{SyslogNg, SyslogNgBuilder, SyslogNgHandle, SyslogNgSource};
pub use tls::{IssuedCertificate, TestCertificate, TestPki};
pub use weed::{Weed, WeedPorts};

use std::time::Duration;

/// How long a peer may take to become ready (listening on all its ports).
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
