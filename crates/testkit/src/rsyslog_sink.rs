//! rsyslog as a BENCHMARK SINK: a private `rsyslogd` whose imptcp input (and optionally
//! imudp) writes every message, as fast as rsyslog can, as one full RFC 5424 line into a
//! plain file (`received.log` in its folder), and a way to know when N lines are there.
//!
//! Each line is rsyslog's built-in `RSYSLOG_SyslogProtocol23Format`:
//! `<%PRI%>1 %TIMESTAMP:::date-rfc3339% %HOSTNAME% %APP-NAME% %PROCID% %MSGID% %STRUCTURED-DATA% %msg%\n`.
//! Control characters are escaped on reception (rsyslog's default, an LF inside a message
//! becomes `#012`) and a trailing LF of a frame is dropped, so the file has exactly one LF
//! per message and [`RsyslogSink::line_count`] counts messages.
//!
//! Tuned for throughput the way rsyslog's performance notes suggest, without losing
//! anything TCP delivered:
//!
//! ```text
//! global(maxMessageSize="64k" workDirectory="DIR/work")
//! main_queue(queue.type="Direct")
//! module(load="imptcp" threads="T")                 # T: RsyslogSinkBuilder::tcp_threads, 2
//! ruleset(name="sink" queue.type="FixedArray" queue.size="200000"
//!         queue.dequeueBatchSize="4096" queue.workerThreads="1"
//!         queue.timeoutEnqueue="60000") {
//!   action(type="omfile" file="DIR/received.log" template="RSYSLOG_SyslogProtocol23Format"
//!          asyncWriting="on" ioBufferSize="1m" flushInterval="1" flushOnTXEnd="off")
//! }
//! input(type="imptcp" address="127.0.0.1" port="P" ruleset="sink"
//!       rateLimit.interval="0" supportOctetCountedFraming="on")
//! ```
//!
//! (plus `module(load="imudp" threads="1")` and an imudp input with the same ruleset and
//! `rcvbufSize="16m"` when [`RsyslogSinkBuilder::udp`]: with the kernel's default 208 KiB
//! receive buffer, a burst of a few hundred datagrams overflows it whenever rsyslog is
//! not scheduled for a moment). The ruleset queue decouples the inputs from the single
//! file writer; a full queue pushes back on TCP senders (imptcp is a delayable input)
//! instead of dropping; UDP cannot be pushed back, so UDP messages beyond the queue or
//! the socket buffer are lost. With `asyncWriting` and `flushInterval="1"`, a line reaches the file at most
//! about a second after rsyslog received it (at once on [`RsyslogSink::stop`]).

use crate::install::system_program;
use crate::output;
use crate::ports::{Listener, free_port};
use crate::process::{PeerProcess, Spawn};
use crate::receiver::quotable_path;
use crate::{Error, ensure_peers_installed};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How often [`RsyslogSink::wait_for_line_count`] looks at the file.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How many lines from the end of the file a timeout error quotes.
const TAIL_LINES: usize = 5;

/// Chooses the sink's inputs and threads; [`RsyslogSinkBuilder::start`] runs it. Made
/// by [`crate::Rsyslog::sink`].
#[derive(Debug, Clone)]
pub struct RsyslogSinkBuilder {
    tcp_threads: usize,
    udp: bool,
    relp: bool,
}

impl Default for RsyslogSinkBuilder {
    fn default() -> Self {
        RsyslogSinkBuilder {
            tcp_threads: 2,
            udp: false,
            relp: false,
        }
    }
}

impl RsyslogSinkBuilder {
    /// The number of imptcp worker threads (module parameter `threads`; default 2, at
    /// least 1).
    pub fn tcp_threads(mut self, threads: usize) -> Self {
        self.tcp_threads = threads.max(1);
        self
    }

    /// Also receives UDP (imudp on its own free port) into the same file.
    pub fn udp(mut self) -> Self {
        self.udp = true;
        self
    }

    /// Also receives RELP (imrelp on its own free port) into the same file. imrelp
    /// acknowledges a message once it is in the ruleset's queue (before it is written).
    pub fn relp(mut self) -> Self {
        self.relp = true;
        self
    }

    /// Installs the peers if needed, writes the configuration into a fresh temporary
    /// folder, validates it (`rsyslogd -N1`), starts rsyslogd and waits (at most
    /// [`crate::READY_TIMEOUT`]) until its ports are bound.
    pub fn start(self) -> Result<RsyslogSink, Error> {
        ensure_peers_installed()?;
        let tcp_port = free_port()?;
        let udp_port = self.udp.then(free_port).transpose()?;
        let relp_port = self.relp.then(free_port).transpose()?;
        let dir = tempfile::Builder::new()
            .prefix("flotilla-rsyslog-sink-")
            .tempdir()
            .map_err(Error::io("creating the rsyslog sink's temporary folder"))?;
        let config_path = dir.path().join("rsyslog.conf");
        let output_path = dir.path().join("received.log");
        let pid_path = dir.path().join("rsyslogd.pid");
        let work_dir = dir.path().join("work");
        std::fs::create_dir(&work_dir)
            .map_err(Error::io("creating the rsyslog sink's work folder"))?;
        let config = self.config(tcp_port, udp_port, relp_port, &work_dir, &output_path)?;
        std::fs::write(&config_path, config)
            .map_err(Error::io(format!("writing {}", config_path.display())))?;
        let rsyslogd = system_program("rsyslogd")?;
        crate::rsyslog::validate_config(&rsyslogd, &config_path)?;
        let mut listeners = vec![Listener::tcp(tcp_port)];
        listeners.extend(udp_port.map(Listener::udp));
        listeners.extend(relp_port.map(Listener::tcp));
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
            log_path: dir.path().join("rsyslogd.log"),
            stale_files: vec![pid_path],
            env: Vec::new(),
            current_dir: None,
        };
        let process = PeerProcess::start(spawn)?;
        Ok(RsyslogSink {
            process,
            tcp_port,
            udp_port,
            relp_port,
            config_path,
            output_path,
            counted: Mutex::new(LineCounter::default()),
            dir,
        })
    }

    fn config(
        &self,
        tcp_port: u16,
        udp_port: Option<u16>,
        relp_port: Option<u16>,
        work_dir: &Path,
        output: &Path,
    ) -> Result<String, Error> {
        let work_dir = quotable_path(work_dir)?;
        let output = quotable_path(output)?;
        let mut conf = format!(
            "global(maxMessageSize=\"64k\" workDirectory=\"{work_dir}\")\n\
             main_queue(queue.type=\"Direct\")\n\
             module(load=\"imptcp\" threads=\"{}\")\n",
            self.tcp_threads
        );
        if udp_port.is_some() {
            conf.push_str("module(load=\"imudp\" threads=\"1\")\n");
        }
        if relp_port.is_some() {
            conf.push_str("module(load=\"imrelp\")\n");
        }
        let _ = writeln!(
            conf,
            "ruleset(name=\"sink\" queue.type=\"FixedArray\" queue.size=\"200000\" \
             queue.dequeueBatchSize=\"4096\" queue.workerThreads=\"1\" \
             queue.timeoutEnqueue=\"60000\") {{\n  action(type=\"omfile\" file=\"{output}\" \
             template=\"RSYSLOG_SyslogProtocol23Format\" asyncWriting=\"on\" ioBufferSize=\"1m\" \
             flushInterval=\"1\" flushOnTXEnd=\"off\")\n}}"
        );
        let _ = writeln!(
            conf,
            "input(type=\"imptcp\" address=\"127.0.0.1\" port=\"{tcp_port}\" ruleset=\"sink\" \
             rateLimit.interval=\"0\" supportOctetCountedFraming=\"on\")"
        );
        if let Some(port) = udp_port {
            let _ = writeln!(
                conf,
                "input(type=\"imudp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"sink\" \
                 rateLimit.interval=\"0\" rcvbufSize=\"16m\")"
            );
        }
        if let Some(port) = relp_port {
            let _ = writeln!(
                conf,
                "input(type=\"imrelp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"sink\" \
                 maxDataSize=\"64k\")"
            );
        }
        Ok(conf)
    }
}

/// How far the output file has been counted.
#[derive(Debug, Default)]
struct LineCounter {
    /// Bytes of the file already read.
    offset: u64,
    /// LF bytes among them.
    lines: u64,
}

/// A running benchmark-sink rsyslogd (see the module docs). Dropping it kills the
/// process, waits for it, and deletes its folder (with the output file).
#[derive(Debug)]
pub struct RsyslogSink {
    process: PeerProcess,
    tcp_port: u16,
    udp_port: Option<u16>,
    relp_port: Option<u16>,
    config_path: PathBuf,
    output_path: PathBuf,
    counted: Mutex<LineCounter>,
    // Last: the folder outlives the process.
    dir: TempDir,
}

impl RsyslogSink {
    /// The imptcp port (octet-counted or LF framing).
    pub fn tcp_port(&self) -> u16 {
        self.tcp_port
    }

    /// The imrelp address, when [`RsyslogSinkBuilder::relp`] was asked for.
    pub fn relp_addr(&self) -> Option<SocketAddr> {
        self.relp_port
            .map(|p| SocketAddr::from((Ipv4Addr::LOCALHOST, p)))
    }

    /// The imptcp address, 127.0.0.1:port.
    pub fn tcp_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.tcp_port))
    }

    /// The imudp port, if enabled.
    pub fn udp_port(&self) -> Option<u16> {
        self.udp_port
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The private folder (configuration, pid file, work folder, output, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The generated configuration file.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The output file: one RFC 5424 line per received message.
    pub fn output_path(&self) -> &Path {
        &self.output_path
    }

    /// The end of rsyslogd's own stdout/stderr (its internal messages).
    pub fn log(&self) -> String {
        self.process.log_tail()
    }

    /// The number of LF bytes (complete lines) in the output file now. Reads only what
    /// was appended since the last call, so polling a large file stays cheap.
    pub fn line_count(&self) -> Result<u64, Error> {
        let mut counted = self.counted.lock().unwrap_or_else(PoisonError::into_inner);
        let mut file = match File::open(&self.output_path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(error) => {
                return Err(Error::io(format!("opening {}", self.output_path.display()))(error));
            }
        };
        let context = || format!("reading {}", self.output_path.display());
        let size = file.metadata().map_err(Error::io(context()))?.len();
        if size < counted.offset {
            // Truncated behind our back: count again from the start.
            *counted = LineCounter::default();
        }
        file.seek(SeekFrom::Start(counted.offset))
            .map_err(Error::io(context()))?;
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let read = file.read(&mut buffer).map_err(Error::io(context()))?;
            if read == 0 {
                break;
            }
            let lines = buffer[..read].iter().filter(|byte| **byte == b'\n').count();
            counted.lines += u64::try_from(lines).unwrap_or(u64::MAX);
            counted.offset += u64::try_from(read).unwrap_or(u64::MAX);
        }
        Ok(counted.lines)
    }

    /// Polls [`RsyslogSink::line_count`] until it is at least `wanted` and returns it
    /// (possibly more); [`Error::Timeout`] (quoting the last lines) after `timeout`.
    pub fn wait_for_line_count(&self, wanted: u64, timeout: Duration) -> Result<u64, Error> {
        let started = Instant::now();
        loop {
            let count = self.line_count()?;
            if count >= wanted {
                return Ok(count);
            }
            if started.elapsed() >= timeout {
                return Err(Error::Timeout {
                    path: self.output_path.clone(),
                    waited: started.elapsed(),
                    wanted: usize::try_from(wanted).unwrap_or(usize::MAX),
                    got: usize::try_from(count).unwrap_or(usize::MAX),
                    lines: self.tail_lines(),
                });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// The complete lines of the output file, lossy UTF-8, without their LF (reads the
    /// whole file: for checks on small runs).
    pub fn lines(&self) -> Result<Vec<String>, Error> {
        Ok(output::raw_lines(&self.output_path)?
            .iter()
            .map(|line| String::from_utf8_lossy(line).into_owned())
            .collect())
    }

    /// Kills rsyslogd (SIGKILL: what is still in its queue or write buffer is lost) and
    /// reaps it; [`RsyslogSink::restart`] brings it back.
    pub fn kill(&mut self) -> Result<(), Error> {
        self.process.kill()
    }

    /// Kills rsyslogd if running, starts it again on the same ports with the same
    /// output file (appended to), and waits until its ports are bound again.
    pub fn restart(&mut self) -> Result<(), Error> {
        self.process.restart()
    }

    /// Stops rsyslogd gracefully (SIGTERM: it drains its queue and flushes the file; at
    /// most 5 s, then SIGKILL) and keeps the handle, so the file can still be read.
    pub fn terminate(&mut self) -> Result<(), Error> {
        self.process.stop()
    }

    /// Stops rsyslogd gracefully (SIGTERM, at most 5 s, then SIGKILL).
    pub fn stop(mut self) -> Result<(), Error> {
        self.process.stop()
    }

    /// The last few lines of the output file (from its last few KiB only).
    fn tail_lines(&self) -> String {
        let tail = crate::process::log_tail(&self.output_path);
        let lines: Vec<&str> = tail.lines().collect();
        let skip = lines.len().saturating_sub(TAIL_LINES);
        lines[skip..].join("\n")
    }
}
