//! A private `rsyslogd` (system package, 8.2302 on Debian 12) run in the foreground
//! (`rsyslogd -n -f CONF -i PIDFILE`) with the inputs a test asks for, all bound to
//! 127.0.0.1, writing every received message as one JSON object per line.
//!
//! Inputs: imudp ([`RsyslogBuilder::udp`]), imptcp with octet-counted or LF framing
//! ([`RsyslogBuilder::tcp_octet_counted_or_lf`]), imrelp ([`RsyslogBuilder::relp`]) and
//! imtcp over GnuTLS, anonymous auth mode ([`RsyslogBuilder::tls`]) or requiring a
//! valid client certificate ([`RsyslogBuilder::require_client_certificates`], auth
//! mode `x509/certvalid`: mutual TLS). Rate limiting is
//! off, `maxMessageSize` is 64 KiB, control characters are NOT escaped on reception
//! (`parser.escapeControlCharactersOnReceive="off"`), so the message arrives as sent.
//!
//! As a FORWARDER ([`RsyslogBuilder::forward_tcp`], [`RsyslogBuilder::forward_udp`],
//! [`RsyslogBuilder::forward_relp`], any number of each, to loopback targets only), every
//! message received on the inputs is, besides being written to the JSON output, sent on
//! to each target re-serialized as RFC 5424 with rsyslog's built-in template
//! `RSYSLOG_SyslogProtocol23Format`
//! (`<%PRI%>1 %TIMESTAMP:::date-rfc3339% %HOSTNAME% %APP-NAME% %PROCID% %MSGID% %STRUCTURED-DATA% %msg%\n`:
//! the original fields as parsed; a NIL timestamp becomes the reception time, NIL fields
//! stay `-`, an RFC 3164 message gets `-` for MSGID and SD; the template's trailing LF is
//! SENT, inside the octet count over TCP and RELP and at the end of each UDP datagram).
//! Each forwarding action has its own in-memory action queue (`LinkedList`, 100 000
//! messages) and retries forever (`action.resumeRetryCount="-1"`, every second), so
//! the inputs never block on a dead target and nothing queued is dropped:
//!
//! | method | action |
//! |---|---|
//! | `forward_tcp` | `omfwd`, `protocol="tcp"`, `TCP_Framing="octet-counted"` (RFC 6587 octet counting) |
//! | `forward_udp` | `omfwd`, `protocol="udp"` (one datagram per message) |
//! | `forward_relp` | `omrelp` (rsyslog-relp): acknowledged; when the target dies and comes back, what it did not acknowledge is sent again |
//!
//! [`crate::RsyslogSink`] (see [`crate::rsyslog_sink`]) is rsyslog tuned as a benchmark
//! sink instead.
//!
//! Output fields (JSON keys of each line; rsyslog property in parentheses):
//!
//! | key | rsyslog property | notes |
//! |---|---|---|
//! | `pri` | `pri` | number |
//! | `facility` | `syslogfacility` | number |
//! | `severity` | `syslogseverity` | number |
//! | `timestamp` | `timereported`, RFC 3339 | fraction as sent (up to 6 digits), offset as sent; a NIL timestamp becomes the reception time |
//! | `timegenerated` | `timegenerated`, RFC 3339 | reception time |
//! | `hostname` | `hostname` | NIL stays `"-"` |
//! | `app_name` | `app-name` | NIL stays `"-"`; the TAG for RFC 3164 |
//! | `procid` | `procid` | NIL stays `"-"` |
//! | `msgid` | `msgid` | NIL stays `"-"`; `"-"` for RFC 3164 |
//! | `structured_data` | `structured-data` | the SD text as sent; NIL stays `"-"` |
//! | `msg` | `msg` | a UTF-8 BOM is KEPT (U+FEFF first); for RFC 3164 the space after `TAG:` is kept |
//! | `rawmsg` | `rawmsg` | the whole frame payload as received (after framing) |
//! | `inputname` | `inputname` | `imudp`, `imptcp`, `imrelp` or `imtcp` |
//! | `protocol_version` | `protocol-version` | `"1"` for RFC 5424, `"0"` for RFC 3164 |
//! | `fromhost_ip` | `fromhost-ip` | sender address |

use crate::install::system_program;
use crate::ports::{Listener, free_port};
use crate::process::{PeerProcess, Spawn};
use crate::receiver::{Receiver, quotable_path};
use crate::rsyslog_sink::RsyslogSinkBuilder;
use crate::{Error, ensure_peers_installed};
use serde_json::Value;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Entry point: `Rsyslog::builder()`.
#[derive(Debug, Clone, Copy)]
pub struct Rsyslog;

impl Rsyslog {
    /// A builder with no input selected yet.
    pub fn builder() -> RsyslogBuilder {
        RsyslogBuilder::default()
    }

    /// A builder for rsyslog as a benchmark sink (imptcp to a plain file of RFC 5424
    /// lines, tuned for throughput; see [`crate::rsyslog_sink`]).
    pub fn sink() -> RsyslogSinkBuilder {
        RsyslogSinkBuilder::default()
    }
}

/// Chooses rsyslog's inputs; [`RsyslogBuilder::start`] runs it.
#[derive(Debug, Clone, Default)]
pub struct RsyslogBuilder {
    udp: bool,
    tcp: bool,
    relp: bool,
    tls: Option<(PathBuf, PathBuf)>,
    client_ca: Option<PathBuf>,
    forwards: Vec<RsyslogForward>,
}

/// Where a forwarding rsyslog sends every message it receives (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsyslogForward {
    /// `omfwd` over TCP, octet-counted framing.
    Tcp(SocketAddr),
    /// `omfwd` over UDP.
    Udp(SocketAddr),
    /// `omrelp`.
    Relp(SocketAddr),
}

impl RsyslogForward {
    /// The target address.
    pub fn target(self) -> SocketAddr {
        match self {
            RsyslogForward::Tcp(target)
            | RsyslogForward::Udp(target)
            | RsyslogForward::Relp(target) => target,
        }
    }

    /// The rsyslog action (one line) for this target.
    fn action(self, index: usize) -> String {
        let target = self.target();
        let (host, port) = (target.ip(), target.port());
        let (name, output) = match self {
            RsyslogForward::Tcp(_) => (
                "forward_tcp",
                format!(
                    "type=\"omfwd\" target=\"{host}\" port=\"{port}\" protocol=\"tcp\" \
                     TCP_Framing=\"octet-counted\""
                ),
            ),
            RsyslogForward::Udp(_) => (
                "forward_udp",
                format!("type=\"omfwd\" target=\"{host}\" port=\"{port}\" protocol=\"udp\""),
            ),
            RsyslogForward::Relp(_) => (
                "forward_relp",
                format!(
                    "type=\"omrelp\" target=\"{host}\" port=\"{port}\" timeout=\"5\" \
                     conn.timeout=\"2\""
                ),
            ),
        };
        format!(
            "  action(name=\"{name}_{index}\" {output} template=\"RSYSLOG_SyslogProtocol23Format\" \
             queue.type=\"LinkedList\" queue.size=\"100000\" queue.timeoutEnqueue=\"60000\" \
             action.resumeRetryCount=\"-1\" action.resumeInterval=\"1\")\n"
        )
    }
}

impl RsyslogBuilder {
    /// Adds an imudp input (RFC 5426, one message per datagram).
    pub fn udp(mut self) -> Self {
        self.udp = true;
        self
    }

    /// Adds an imptcp input: plain TCP, each frame octet-counted or LF-terminated
    /// (RFC 6587; rsyslog tells them apart per frame).
    pub fn tcp_octet_counted_or_lf(mut self) -> Self {
        self.tcp = true;
        self
    }

    /// Adds an imrelp input (RELP, acknowledged delivery).
    pub fn relp(mut self) -> Self {
        self.relp = true;
        self
    }

    /// Adds an imtcp input over TLS (GnuTLS driver, `StreamDriver.AuthMode="anon"`: the
    /// client's certificate is not checked, unless
    /// [`RsyslogBuilder::require_client_certificates`]) with this server certificate and
    /// key (PEM).
    pub fn tls(
        mut self,
        cert_pem_path: impl Into<PathBuf>,
        key_pem_path: impl Into<PathBuf>,
    ) -> Self {
        self.tls = Some((cert_pem_path.into(), key_pem_path.into()));
        self
    }

    /// Makes the TLS input require a client certificate signed by the CA in
    /// `ca_pem_path` (GnuTLS `StreamDriver.AuthMode="x509/certvalid"`: the chain is
    /// verified, the subject name is not checked). A client without one, or with
    /// one from another CA, is disconnected right after the handshake and nothing
    /// it sent is written. The same file is rsyslog's CA file, so the server
    /// certificate given to [`RsyslogBuilder::tls`] should be signed by that CA
    /// (see [`crate::TestPki`]). Needs [`RsyslogBuilder::tls`].
    pub fn require_client_certificates(mut self, ca_pem_path: impl Into<PathBuf>) -> Self {
        self.client_ca = Some(ca_pem_path.into());
        self
    }

    /// Makes this rsyslog a forwarder: every received message is also sent to `target`
    /// (loopback only) with `omfwd` over TCP, RFC 6587 octet-counted framing, as RFC 5424
    /// (`RSYSLOG_SyslogProtocol23Format`). Forwarding retries forever from an in-memory
    /// action queue; messages written to a connection the target then drops may be lost
    /// (plain TCP has no acknowledgements: use [`RsyslogBuilder::forward_relp`]).
    pub fn forward_tcp(mut self, target: SocketAddr) -> Self {
        self.forwards.push(RsyslogForward::Tcp(target));
        self
    }

    /// Makes this rsyslog a forwarder: every received message is also sent to `target`
    /// (loopback only) with `omfwd` over UDP, one RFC 5424 datagram per message.
    pub fn forward_udp(mut self, target: SocketAddr) -> Self {
        self.forwards.push(RsyslogForward::Udp(target));
        self
    }

    /// Makes this rsyslog a forwarder: every received message is also sent to `target`
    /// (loopback only) with `omrelp`, as RFC 5424. The action queue is in memory and
    /// retries forever, so when the target is killed and restarted, rsyslog reconnects
    /// (within about a second) and sends again every message the target had not
    /// acknowledged: nothing is lost, some may arrive twice.
    pub fn forward_relp(mut self, target: SocketAddr) -> Self {
        self.forwards.push(RsyslogForward::Relp(target));
        self
    }

    /// Installs the peers if needed, writes the configuration into a fresh temporary
    /// folder, validates it (`rsyslogd -N1`), starts rsyslogd and waits (at most
    /// [`crate::READY_TIMEOUT`]) until every input's port is bound. Forwarding targets
    /// need not be up: rsyslog connects when it has something to send, and retries.
    pub fn start(self) -> Result<RsyslogHandle, Error> {
        if !self.udp && !self.tcp && !self.relp && self.tls.is_none() {
            return Err(Error::Config(
                "rsyslog needs at least one input (udp, tcp, relp or tls)".to_string(),
            ));
        }
        if self.client_ca.is_some() && self.tls.is_none() {
            return Err(Error::Config(
                "require_client_certificates needs a TLS input (RsyslogBuilder::tls)".to_string(),
            ));
        }
        if let Some(forward) = self
            .forwards
            .iter()
            .find(|forward| !forward.target().ip().is_loopback() || forward.target().port() == 0)
        {
            return Err(Error::Config(format!(
                "rsyslog forwards to loopback addresses with a port only, not {forward:?}"
            )));
        }
        ensure_peers_installed()?;
        let ports = RsyslogPorts {
            udp: self.udp.then(free_port).transpose()?,
            tcp: self.tcp.then(free_port).transpose()?,
            relp: self.relp.then(free_port).transpose()?,
            tls: self.tls.is_some().then(free_port).transpose()?,
        };
        let dir = tempfile::Builder::new()
            .prefix("flotilla-rsyslog-")
            .tempdir()
            .map_err(Error::io("creating rsyslog's temporary folder"))?;
        let config_path = dir.path().join("rsyslog.conf");
        let output_path = dir.path().join("received.jsonl");
        let pid_path = dir.path().join("rsyslogd.pid");
        let log_path = dir.path().join("rsyslogd.log");
        let work_dir = dir.path().join("work");
        std::fs::create_dir(&work_dir).map_err(Error::io("creating rsyslog's work folder"))?;
        let config = self.config(&ports, &work_dir, &output_path)?;
        std::fs::write(&config_path, config)
            .map_err(Error::io(format!("writing {}", config_path.display())))?;
        let rsyslogd = system_program("rsyslogd")?;
        validate_config(&rsyslogd, &config_path)?;

        let mut listeners = Vec::new();
        listeners.extend(ports.udp.map(Listener::udp));
        listeners.extend(ports.tcp.map(Listener::tcp));
        listeners.extend(ports.relp.map(Listener::tcp));
        listeners.extend(ports.tls.map(Listener::tcp));
        let spawn = Spawn {
            peer: "rsyslogd",
            program: rsyslogd,
            args: vec![
                "-n".into(),
                "-f".into(),
                config_path.clone().into_os_string(),
                "-i".into(),
                pid_path.clone().into_os_string(),
            ],
            listeners,
            log_path,
            stale_files: vec![pid_path],
            env: Vec::new(),
            current_dir: None,
        };
        let process = PeerProcess::start(spawn)?;
        Ok(RsyslogHandle {
            receiver: Receiver {
                process,
                output_path,
                dir,
            },
            ports,
            config_path,
            forwards: self.forwards,
        })
    }

    fn config(
        &self,
        ports: &RsyslogPorts,
        work_dir: &Path,
        output: &Path,
    ) -> Result<String, Error> {
        let work_dir = quotable_path(work_dir)?;
        let output = quotable_path(output)?;
        let mut conf = String::new();
        let mut global = format!(
            "global(maxMessageSize=\"64k\" workDirectory=\"{work_dir}\" \
             parser.escapeControlCharactersOnReceive=\"off\""
        );
        if let Some((cert, key)) = &self.tls {
            // Anonymous mode: the self-signed server certificate is its own CA.
            let ca = quotable_path(self.client_ca.as_deref().unwrap_or(cert))?;
            let cert = quotable_path(cert)?;
            let key = quotable_path(key)?;
            let _ = write!(
                global,
                " defaultNetstreamDriverCAFile=\"{ca}\" defaultNetstreamDriverCertFile=\"{cert}\" \
                 defaultNetstreamDriverKeyFile=\"{key}\""
            );
        }
        global.push_str(")\n");
        conf.push_str(&global);
        // Direct queues: a message is written to the output file before the input
        // returns, so a RELP acknowledgement means "on disk (page cache)" and a
        // SIGKILL loses nothing rsyslog already acknowledged.
        conf.push_str("main_queue(queue.type=\"Direct\")\n");
        if ports.udp.is_some() {
            conf.push_str("module(load=\"imudp\")\n");
        }
        if ports.tcp.is_some() {
            conf.push_str("module(load=\"imptcp\")\n");
        }
        if ports.relp.is_some() {
            conf.push_str("module(load=\"imrelp\")\n");
        }
        if self
            .forwards
            .iter()
            .any(|forward| matches!(forward, RsyslogForward::Relp(_)))
        {
            conf.push_str("module(load=\"omrelp\")\n");
        }
        if ports.tls.is_some() {
            let auth_mode = if self.client_ca.is_some() {
                "x509/certvalid"
            } else {
                "anon"
            };
            let _ = writeln!(
                conf,
                "module(load=\"imtcp\" streamDriver.name=\"gtls\" streamDriver.mode=\"1\" \
                 streamDriver.authMode=\"{auth_mode}\")"
            );
        }
        conf.push_str(TEMPLATE);
        let _ = writeln!(
            conf,
            "ruleset(name=\"flotilla\") {{\n  action(type=\"omfile\" file=\"{output}\" \
             template=\"flotillaJson\" flushOnTXEnd=\"on\" asyncWriting=\"off\")"
        );
        for (index, forward) in self.forwards.iter().enumerate() {
            conf.push_str(&forward.action(index));
        }
        conf.push_str("}\n");
        if let Some(port) = ports.udp {
            let _ = writeln!(
                conf,
                "input(type=\"imudp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"flotilla\" \
                 rateLimit.interval=\"0\")"
            );
        }
        if let Some(port) = ports.tcp {
            let _ = writeln!(
                conf,
                "input(type=\"imptcp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"flotilla\" \
                 rateLimit.interval=\"0\" supportOctetCountedFraming=\"on\")"
            );
        }
        if let Some(port) = ports.relp {
            let _ = writeln!(
                conf,
                "input(type=\"imrelp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"flotilla\")"
            );
        }
        if let Some(port) = ports.tls {
            let _ = writeln!(
                conf,
                "input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"flotilla\" \
                 rateLimit.interval=\"0\")"
            );
        }
        Ok(conf)
    }
}

/// The output template: one JSON object per message (see the module docs).
const TEMPLATE: &str = r#"template(name="flotillaJson" type="list" option.jsonf="on") {
  property(outname="pri" name="pri" format="jsonf" datatype="number")
  property(outname="facility" name="syslogfacility" format="jsonf" datatype="number")
  property(outname="severity" name="syslogseverity" format="jsonf" datatype="number")
  property(outname="timestamp" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="timegenerated" name="timegenerated" dateFormat="rfc3339" format="jsonf")
  property(outname="hostname" name="hostname" format="jsonf")
  property(outname="app_name" name="app-name" format="jsonf")
  property(outname="procid" name="procid" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="structured_data" name="structured-data" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
  property(outname="rawmsg" name="rawmsg" format="jsonf")
  property(outname="inputname" name="inputname" format="jsonf")
  property(outname="protocol_version" name="protocol-version" format="jsonf")
  property(outname="fromhost_ip" name="fromhost-ip" format="jsonf")
}
"#;

/// Runs `rsyslogd -N1` so that a configuration mistake is a loud error, not an
/// ignored line.
pub(crate) fn validate_config(rsyslogd: &Path, config_path: &Path) -> Result<(), Error> {
    let output = Command::new(rsyslogd)
        .arg("-N1")
        .arg("-f")
        .arg(config_path)
        .output()
        .map_err(Error::io("running rsyslogd -N1"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let has_error = text.lines().any(|line| {
        line.contains("error") || line.contains("invalid") || line.contains("could not")
    });
    if !output.status.success() || has_error {
        let config = std::fs::read_to_string(config_path).unwrap_or_default();
        return Err(Error::Config(format!(
            "rsyslogd -N1 rejected the generated configuration ({}):\n{text}\n--- configuration ---\n{config}",
            output.status
        )));
    }
    Ok(())
}

/// The loopback ports of a running rsyslog's inputs (`None`: input not enabled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RsyslogPorts {
    /// imudp.
    pub udp: Option<u16>,
    /// imptcp (octet-counted or LF framing).
    pub tcp: Option<u16>,
    /// imrelp.
    pub relp: Option<u16>,
    /// imtcp over TLS.
    pub tls: Option<u16>,
}

/// A running rsyslogd. Dropping it kills the process, waits for it, and deletes its
/// folder.
#[derive(Debug)]
pub struct RsyslogHandle {
    receiver: Receiver,
    ports: RsyslogPorts,
    config_path: PathBuf,
    forwards: Vec<RsyslogForward>,
}

impl RsyslogHandle {
    /// The forwarding targets, in the order they were added.
    pub fn forwards(&self) -> &[RsyslogForward] {
        &self.forwards
    }

    /// All input ports.
    pub fn ports(&self) -> RsyslogPorts {
        self.ports
    }

    /// The imudp port, if enabled.
    pub fn udp_port(&self) -> Option<u16> {
        self.ports.udp
    }

    /// The imptcp port (octet-counted or LF framing), if enabled.
    pub fn tcp_port(&self) -> Option<u16> {
        self.ports.tcp
    }

    /// The imrelp port, if enabled.
    pub fn relp_port(&self) -> Option<u16> {
        self.ports.relp
    }

    /// The TLS (imtcp + gtls) port, if enabled.
    pub fn tls_port(&self) -> Option<u16> {
        self.ports.tls
    }

    /// The process id while running (`None` after [`RsyslogHandle::kill`]).
    pub fn pid(&self) -> Option<u32> {
        self.receiver.process.pid()
    }

    /// The private folder (configuration, pid file, work folder, output, log).
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

    /// The end of rsyslogd's own stdout/stderr (its internal messages).
    pub fn log(&self) -> String {
        self.receiver.process.log_tail()
    }

    /// The complete JSON lines received so far.
    pub fn lines(&self) -> Result<Vec<Value>, Error> {
        self.receiver.lines()
    }

    /// The complete output lines so far, as raw bytes (for non-UTF-8 content).
    pub fn raw_lines(&self) -> Result<Vec<Vec<u8>>, Error> {
        self.receiver.raw_lines()
    }

    /// Waits until at least `wanted` JSON lines were written, returns all of them.
    pub fn wait_for_lines(&self, wanted: usize, timeout: Duration) -> Result<Vec<Value>, Error> {
        self.receiver.wait_for_lines(wanted, timeout)
    }

    /// Kills rsyslogd (SIGKILL, no flush) and reaps it; [`RsyslogHandle::restart`]
    /// brings it back.
    pub fn kill(&mut self) -> Result<(), Error> {
        self.receiver.process.kill()
    }

    /// Kills rsyslogd if running, starts it again on the same ports with the same
    /// output file (appended to), and waits until every port is bound again.
    pub fn restart(&mut self) -> Result<(), Error> {
        self.receiver.process.restart()
    }

    /// Stops rsyslogd gracefully (SIGTERM, at most 5 s, then SIGKILL) and keeps the
    /// handle, so that [`RsyslogHandle::restart`] can bring it back.
    pub fn terminate(&mut self) -> Result<(), Error> {
        self.receiver.process.stop()
    }

    /// Stops rsyslogd gracefully (SIGTERM, at most 5 s, then SIGKILL).
    pub fn stop(mut self) -> Result<(), Error> {
        self.receiver.process.stop()
    }
}
