//! A private `syslog-ng` (Debian's syslog-ng-core 3.38, unpacked by
//! `scripts/install-peers.sh`, run through its wrapper) in the foreground (`-F`) with its
//! own config, persist file, pid file and control socket in a temporary folder. Every
//! source binds 127.0.0.1 on its own port; every received message is written as one
//! JSON object per line.
//!
//! Sources (each its own port; the source name is the `inputname` field):
//!
//! | builder method | `inputname` | syslog-ng source |
//! |---|---|---|
//! | [`SyslogNgBuilder::rfc5424_udp`] | `rfc5424_udp` | `network(transport("udp") flags(syslog-protocol))` |
//! | [`SyslogNgBuilder::rfc5424_tcp_octet_counted`] | `rfc5424_tcp_octet_counted` | `syslog(transport("tcp"))` (RFC 6587 octet counting ONLY) |
//! | [`SyslogNgBuilder::rfc5424_tcp_lf`] | `rfc5424_tcp_lf` | `network(transport("tcp") flags(syslog-protocol))` (LF framing ONLY) |
//! | [`SyslogNgBuilder::rfc5424_tls`] | `rfc5424_tls` | `syslog(transport("tls"))`, octet counting, client certificate not required |
//! | [`SyslogNgBuilder::rfc3164_udp`] | `rfc3164_udp` | `network(transport("udp"))` |
//! | [`SyslogNgBuilder::rfc3164_tcp_lf`] | `rfc3164_tcp_lf` | `network(transport("tcp"))` (LF framing) |
//!
//! Output fields (JSON keys; syslog-ng macro in parentheses): `pri` (`$PRI`, number),
//! `facility` (`$FACILITY_NUM`, number), `severity` (`$LEVEL_NUM`, number), `timestamp`
//! (`$ISODATE`, always 6 fraction digits, offset as sent, `Z` shown as `+00:00`; a NIL
//! timestamp becomes the reception time), `hostname` (`$HOST`; a NIL hostname becomes the
//! sender's IP), `app_name` (`$PROGRAM`), `procid` (`$PID`), `msgid` (`$MSGID`),
//! `structured_data` (`$SDATA`, re-serialized), `sd` (object: SD-ID -> param -> value,
//! parsed), `msg` (`$MSG`: a leading UTF-8 BOM is STRIPPED; for RFC 3164 the space after
//! `TAG:` is dropped), `rawmsg` (`$RAWMSG`, the frame payload as received, BOM included),
//! `legacy_msghdr` (`$LEGACY_MSGHDR`, e.g. `tag[77]: ` for RFC 3164), `inputname`
//! (`$SOURCE`), `fromhost_ip` (`$SOURCEIP`). NIL (`-`) fields of RFC 5424 are EMPTY
//! strings here (unlike rsyslog, which keeps `-`); absent keys in `sd`.

use crate::install::syslog_ng_wrapper;
use crate::ports::{Listener, free_port};
use crate::process::{PeerProcess, Spawn};
use crate::receiver::{Receiver, quotable_path};
use crate::{Error, ensure_peers_installed};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Entry point: `SyslogNg::builder()`.
#[derive(Debug, Clone, Copy)]
pub struct SyslogNg;

impl SyslogNg {
    /// A builder with no source selected yet.
    pub fn builder() -> SyslogNgBuilder {
        SyslogNgBuilder::default()
    }
}

/// One kind of syslog-ng source (see the module docs for the exact driver settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyslogNgSource {
    /// RFC 5424 over UDP.
    Rfc5424Udp,
    /// RFC 5424 over TCP, octet-counted frames.
    Rfc5424TcpOctetCounted,
    /// RFC 5424 over TCP, LF-terminated frames.
    Rfc5424TcpLf,
    /// RFC 5424 over TLS, octet-counted frames.
    Rfc5424Tls,
    /// RFC 3164 over UDP.
    Rfc3164Udp,
    /// RFC 3164 over TCP, LF-terminated frames.
    Rfc3164TcpLf,
}

impl SyslogNgSource {
    /// The source's name in the configuration, and the `inputname` output field.
    pub fn name(self) -> &'static str {
        match self {
            SyslogNgSource::Rfc5424Udp => "rfc5424_udp",
            SyslogNgSource::Rfc5424TcpOctetCounted => "rfc5424_tcp_octet_counted",
            SyslogNgSource::Rfc5424TcpLf => "rfc5424_tcp_lf",
            SyslogNgSource::Rfc5424Tls => "rfc5424_tls",
            SyslogNgSource::Rfc3164Udp => "rfc3164_udp",
            SyslogNgSource::Rfc3164TcpLf => "rfc3164_tcp_lf",
        }
    }

    fn is_udp(self) -> bool {
        matches!(
            self,
            SyslogNgSource::Rfc5424Udp | SyslogNgSource::Rfc3164Udp
        )
    }
}

/// Chooses syslog-ng's sources; [`SyslogNgBuilder::start`] runs it.
#[derive(Debug, Clone, Default)]
pub struct SyslogNgBuilder {
    sources: Vec<SyslogNgSource>,
    tls: Option<(PathBuf, PathBuf)>,
}

impl SyslogNgBuilder {
    fn with(mut self, source: SyslogNgSource) -> Self {
        if !self.sources.contains(&source) {
            self.sources.push(source);
        }
        self
    }

    /// Adds an RFC 5424 UDP source.
    pub fn rfc5424_udp(self) -> Self {
        self.with(SyslogNgSource::Rfc5424Udp)
    }

    /// Adds an RFC 5424 TCP source with octet-counted framing (RFC 6587 section 3.4.1).
    pub fn rfc5424_tcp_octet_counted(self) -> Self {
        self.with(SyslogNgSource::Rfc5424TcpOctetCounted)
    }

    /// Adds an RFC 5424 TCP source with LF framing (RFC 6587 section 3.4.2).
    pub fn rfc5424_tcp_lf(self) -> Self {
        self.with(SyslogNgSource::Rfc5424TcpLf)
    }

    /// Adds an RFC 5424 TLS source (octet counting, RFC 5425) with this server
    /// certificate and key (PEM); client certificates are not required.
    pub fn rfc5424_tls(
        mut self,
        cert_pem_path: impl Into<PathBuf>,
        key_pem_path: impl Into<PathBuf>,
    ) -> Self {
        self.tls = Some((cert_pem_path.into(), key_pem_path.into()));
        self.with(SyslogNgSource::Rfc5424Tls)
    }

    /// Adds an RFC 3164 (BSD) UDP source.
    pub fn rfc3164_udp(self) -> Self {
        self.with(SyslogNgSource::Rfc3164Udp)
    }

    /// Adds an RFC 3164 (BSD) TCP source with LF framing.
    pub fn rfc3164_tcp_lf(self) -> Self {
        self.with(SyslogNgSource::Rfc3164TcpLf)
    }

    /// Adds every plain (non-TLS) source.
    pub fn all_plain(self) -> Self {
        self.rfc5424_udp()
            .rfc5424_tcp_octet_counted()
            .rfc5424_tcp_lf()
            .rfc3164_udp()
            .rfc3164_tcp_lf()
    }

    /// Installs the peers if needed, writes the configuration into a fresh temporary
    /// folder, starts syslog-ng and waits (at most [`crate::READY_TIMEOUT`]) until every
    /// source's port is bound.
    pub fn start(self) -> Result<SyslogNgHandle, Error> {
        if self.sources.is_empty() {
            return Err(Error::Config(
                "syslog-ng needs at least one source".to_string(),
            ));
        }
        ensure_peers_installed()?;
        let mut ports = Vec::with_capacity(self.sources.len());
        for source in &self.sources {
            ports.push((*source, free_port()?));
        }
        let dir = tempfile::Builder::new()
            .prefix("flotilla-syslog-ng-")
            .tempdir()
            .map_err(Error::io("creating syslog-ng's temporary folder"))?;
        let config_path = dir.path().join("syslog-ng.conf");
        let output_path = dir.path().join("received.jsonl");
        let pid_path = dir.path().join("syslog-ng.pid");
        let config = self.config(&ports, &output_path)?;
        std::fs::write(&config_path, config)
            .map_err(Error::io(format!("writing {}", config_path.display())))?;
        let listeners = ports
            .iter()
            .map(|(source, port)| {
                if source.is_udp() {
                    Listener::udp(*port)
                } else {
                    Listener::tcp(*port)
                }
            })
            .collect();
        let spawn = Spawn {
            peer: "syslog-ng",
            program: syslog_ng_wrapper(),
            args: vec![
                "-F".into(),
                "-e".into(),
                "--no-caps".into(),
                "--cfgfile".into(),
                config_path.clone().into_os_string(),
                "--persist-file".into(),
                dir.path().join("syslog-ng.persist").into_os_string(),
                "--pidfile".into(),
                pid_path.clone().into_os_string(),
                "--control".into(),
                dir.path().join("syslog-ng.ctl").into_os_string(),
            ],
            listeners,
            log_path: dir.path().join("syslog-ng.log"),
            stale_files: vec![pid_path],
            env: Vec::new(),
            current_dir: None,
        };
        let process = PeerProcess::start(spawn)?;
        Ok(SyslogNgHandle {
            receiver: Receiver {
                process,
                output_path,
                dir,
            },
            ports,
            config_path,
        })
    }

    fn config(&self, ports: &[(SyslogNgSource, u16)], output: &Path) -> Result<String, Error> {
        let output = quotable_path(output)?;
        let mut conf = String::from(
            "@version: 3.38\n\
             options { keep-hostname(yes); chain-hostnames(no); use-dns(no); use-fqdn(no); \
             dns-cache(no); stats-freq(0); log-msg-size(65536); keep-timestamp(yes); \
             frac-digits(6); ts-format(iso); };\n",
        );
        const COMMON: &str = "ip(\"127.0.0.1\") max-connections(256) log-iw-size(100000)";
        for (source, port) in ports {
            let name = source.name();
            let driver = match source {
                SyslogNgSource::Rfc5424Udp => format!(
                    "network(ip(\"127.0.0.1\") port({port}) transport(\"udp\") \
                     flags(syslog-protocol, store-raw-message))"
                ),
                SyslogNgSource::Rfc5424TcpOctetCounted => format!(
                    "syslog({COMMON} port({port}) transport(\"tcp\") flags(store-raw-message))"
                ),
                SyslogNgSource::Rfc5424TcpLf => format!(
                    "network({COMMON} port({port}) transport(\"tcp\") \
                     flags(syslog-protocol, store-raw-message))"
                ),
                SyslogNgSource::Rfc5424Tls => {
                    let Some((cert, key)) = &self.tls else {
                        return Err(Error::Config("TLS source without certificate".to_string()));
                    };
                    let cert = quotable_path(cert)?;
                    let key = quotable_path(key)?;
                    format!(
                        "syslog({COMMON} port({port}) transport(\"tls\") \
                         tls(cert-file(\"{cert}\") key-file(\"{key}\") \
                         peer-verify(optional-untrusted)) flags(store-raw-message))"
                    )
                }
                SyslogNgSource::Rfc3164Udp => format!(
                    "network(ip(\"127.0.0.1\") port({port}) transport(\"udp\") \
                     flags(store-raw-message))"
                ),
                SyslogNgSource::Rfc3164TcpLf => format!(
                    "network({COMMON} port({port}) transport(\"tcp\") flags(store-raw-message))"
                ),
            };
            let _ = writeln!(conf, "source {name} {{ {driver}; }};");
        }
        let _ = writeln!(
            conf,
            "destination flotilla_out {{ file(\"{output}\" template(\"{TEMPLATE}\\n\")); }};"
        );
        conf.push_str("log { ");
        for (source, _) in ports {
            let _ = write!(conf, "source({}); ", source.name());
        }
        conf.push_str("destination(flotilla_out); };\n");
        Ok(conf)
    }
}

/// The output template (inside a double-quoted syslog-ng string).
const TEMPLATE: &str = "$(format-json pri=int($PRI) facility=int($FACILITY_NUM) \
    severity=int($LEVEL_NUM) timestamp=$ISODATE hostname=$HOST app_name=$PROGRAM \
    procid=$PID msgid=$MSGID structured_data=$SDATA msg=$MSG rawmsg=$RAWMSG \
    legacy_msghdr=$LEGACY_MSGHDR inputname=$SOURCE fromhost_ip=$SOURCEIP \
    --key .SDATA.* --rekey .SDATA.* --replace-prefix .SDATA.=sd.)";

/// A running syslog-ng. Dropping it kills the process, waits for it, and deletes its
/// folder.
#[derive(Debug)]
pub struct SyslogNgHandle {
    receiver: Receiver,
    ports: Vec<(SyslogNgSource, u16)>,
    config_path: PathBuf,
}

impl SyslogNgHandle {
    /// The port of `source`, if it was enabled.
    pub fn port(&self, source: SyslogNgSource) -> Option<u16> {
        self.ports
            .iter()
            .find(|(enabled, _)| *enabled == source)
            .map(|(_, port)| *port)
    }

    /// Every enabled source with its port.
    pub fn ports(&self) -> &[(SyslogNgSource, u16)] {
        &self.ports
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.receiver.process.pid()
    }

    /// The private folder (configuration, persist/pid files, control socket, output).
    pub fn dir(&self) -> &Path {
        self.receiver.dir()
    }

    /// The generated configuration file.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The output file: one JSON object per received message.
    pub fn output_path(&self) -> &Path {
        self.receiver.output_path()
    }

    /// The end of syslog-ng's own stdout/stderr (its internal messages).
    pub fn log(&self) -> String {
        self.receiver.process.log_tail()
    }

    /// The complete JSON lines received so far.
    pub fn lines(&self) -> Result<Vec<Value>, Error> {
        self.receiver.lines()
    }

    /// The complete output lines so far, as raw bytes.
    pub fn raw_lines(&self) -> Result<Vec<Vec<u8>>, Error> {
        self.receiver.raw_lines()
    }

    /// Waits until at least `wanted` JSON lines were written, returns all of them.
    pub fn wait_for_lines(&self, wanted: usize, timeout: Duration) -> Result<Vec<Value>, Error> {
        self.receiver.wait_for_lines(wanted, timeout)
    }

    /// Kills syslog-ng (SIGKILL) and reaps it; [`SyslogNgHandle::restart`] brings it back.
    pub fn kill(&mut self) -> Result<(), Error> {
        self.receiver.process.kill()
    }

    /// Kills syslog-ng if running, starts it again on the same ports with the same
    /// output file, and waits until every port is bound again.
    pub fn restart(&mut self) -> Result<(), Error> {
        self.receiver.process.restart()
    }

    /// Stops syslog-ng gracefully (SIGTERM, at most 5 s, then SIGKILL).
    pub fn stop(mut self) -> Result<(), Error> {
        self.receiver.process.stop()
    }
}
