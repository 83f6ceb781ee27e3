//! syslog-ng's load generator `loggen` (syslog-ng 3.38, privately unpacked by
//! `scripts/install-peers.sh` and run through its wrapper, [`crate::install::loggen_wrapper`]),
//! run to completion against a loopback target, with its final summary parsed.
//!
//! The command line built from [`LoggenOptions`] ([`LoggenOptions::args`]):
//!
//! | option | loggen flag |
//! |---|---|
//! | `transport: Tcp` / `Udp` | `--inet --stream` / `--inet --dgram` |
//! | `rfc5424: true` | `--syslog-proto` (RFC 5424 `<38>1 TIMESTAMP localhost prg00000 1234 - - BOM seq: ..., thread: ..., runid: ..., stamp: ... PADD...`); `false`: RFC 3164 (`<38>TIMESTAMP localhost prg00000[1234]: seq: ...`) |
//! | `octet_counted: false` (RFC 5424 over TCP) | `--no-framing` (LF-terminated instead of RFC 6587 octet counting); always given for UDP, where loggen would otherwise put the octet count inside the datagram |
//! | `size` | `--size` (bytes of one message including its trailing LF, octet count excluded) |
//! | `rate` | `--rate` (messages per second PER CONNECTION; `None`: `--rate=100000000`, as fast as it can; loggen's default is 1000 and 0 crashes it) |
//! | `connections` | `--active-connections` |
//! | `duration_secs` | `--interval` |
//! | `count` | `--number` (messages PER CONNECTION; with `duration_secs` too, whichever comes first) |
//! | `sdata` | `--sdata` (RFC 5424 only) |
//! | `reconnect` | `--reconnect` |
//!
//! Every message ends with LF, inside the octet count when octet-counted, at the end of
//! the datagram over UDP. loggen rejects sizes below 140 bytes (RFC 5424) or 127 bytes
//! (RFC 3164) by silently sending longer messages with a WRONG octet count, so
//! [`LoggenOptions`] refuses them.
//!
//! The summary loggen prints on stderr at the end, which [`LoggenReport`] holds:
//!
//! ```text
//! average rate = 648132.84 msg/sec, count=648407, time=1.00042, (average) msg size=204, bandwidth=129120.21 kB/sec
//! ```
//!
//! or, when nothing could be sent, `Total runtime = 0.500114, count = 0`. loggen checks
//! its threads every 0.5 s, so its `time` (and thus `rate`) is coarse for short runs:
//! [`LoggenReport::elapsed`] is the wall-clock time of the whole run as measured here.

use crate::install::loggen_wrapper;
use crate::process::{ToolOutput, ToolRun};
use crate::{Error, ensure_peers_installed};
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

/// The `--rate` given when [`LoggenOptions::rate`] is `None` (per connection).
pub const UNLIMITED_RATE: u64 = 100_000_000;
/// The smallest `size` loggen honours for RFC 5424 messages.
pub const MIN_SIZE_RFC5424: usize = 140;
/// The smallest `size` loggen honours for RFC 3164 messages.
pub const MIN_SIZE_RFC3164: usize = 127;
/// Added to the expected run time to get the default timeout.
const TIMEOUT_MARGIN: Duration = Duration::from_secs(30);
/// The default timeout of a count-only run without a rate.
const COUNT_ONLY_TIMEOUT: Duration = Duration::from_secs(120);

/// The transport loggen sends over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoggenTransport {
    /// TCP (`--stream`).
    Tcp,
    /// UDP (`--dgram`).
    Udp,
}

/// What to run; see the module docs for the loggen flag of each field.
/// [`LoggenOptions::new`] gives the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggenOptions {
    /// The target (loopback only).
    pub target: SocketAddr,
    /// TCP or UDP.
    pub transport: LoggenTransport,
    /// RFC 5424 (`true`) or RFC 3164 messages.
    pub rfc5424: bool,
    /// RFC 5424 over TCP: octet-counted frames (`true`) or LF-terminated ones. Ignored
    /// for RFC 3164 (always LF) and UDP (one message per datagram).
    pub octet_counted: bool,
    /// Bytes per message including the trailing LF (at least [`MIN_SIZE_RFC5424`] or
    /// [`MIN_SIZE_RFC3164`]).
    pub size: usize,
    /// Messages per second per connection; `None`: as fast as possible.
    pub rate: Option<u64>,
    /// Number of parallel connections (threads), at least 1.
    pub connections: usize,
    /// Run for this many seconds.
    pub duration_secs: Option<u64>,
    /// Send this many messages per connection (the run ends at whichever of `count` and
    /// `duration_secs` comes first; at least one must be set).
    pub count: Option<u64>,
    /// RFC 5424 structured data to send, e.g. `[test@32473 k="v"]` (loggen's default is
    /// `-`).
    pub sdata: Option<String>,
    /// Reconnect when the target drops a TCP connection (`--reconnect`).
    pub reconnect: bool,
    /// Kill loggen after this long; `None`: the expected run time plus 30 s (120 s for
    /// a count without a rate).
    pub timeout: Option<Duration>,
}

impl LoggenOptions {
    /// RFC 5424 over TCP, octet-counted, 256-byte messages as fast as possible on one
    /// connection, 1000 messages; change fields as needed.
    pub fn new(target: SocketAddr) -> Self {
        LoggenOptions {
            target,
            transport: LoggenTransport::Tcp,
            rfc5424: true,
            octet_counted: true,
            size: 256,
            rate: None,
            connections: 1,
            duration_secs: None,
            count: Some(1000),
            sdata: None,
            reconnect: false,
            timeout: None,
        }
    }

    /// The loggen arguments for these options (after validating them).
    pub fn args(&self) -> Result<Vec<String>, Error> {
        self.validate()?;
        let mut args = vec!["--inet".to_string()];
        args.push(
            match self.transport {
                LoggenTransport::Tcp => "--stream",
                LoggenTransport::Udp => "--dgram",
            }
            .to_string(),
        );
        if self.rfc5424 {
            args.push("--syslog-proto".to_string());
            if self.transport == LoggenTransport::Udp || !self.octet_counted {
                args.push("--no-framing".to_string());
            }
            if let Some(sdata) = &self.sdata {
                args.push(format!("--sdata={sdata}"));
            }
        }
        args.push(format!("--size={}", self.size));
        args.push(format!("--rate={}", self.rate.unwrap_or(UNLIMITED_RATE)));
        args.push(format!("--active-connections={}", self.connections));
        if let Some(seconds) = self.duration_secs {
            args.push(format!("--interval={seconds}"));
        }
        if let Some(count) = self.count {
            args.push(format!("--number={count}"));
        }
        if self.reconnect {
            args.push("--reconnect".to_string());
        }
        args.push(self.target.ip().to_string());
        args.push(self.target.port().to_string());
        Ok(args)
    }

    /// The timeout the run gets: [`LoggenOptions::timeout`], or one derived from the
    /// duration, count and rate.
    pub fn effective_timeout(&self) -> Duration {
        if let Some(timeout) = self.timeout {
            return timeout;
        }
        let by_duration = self.duration_secs.map(Duration::from_secs);
        let by_count = match (self.count, self.rate) {
            (Some(count), Some(rate)) if rate > 0 => {
                Some(Duration::from_secs(count.div_ceil(rate)))
            }
            (Some(_), _) => Some(COUNT_ONLY_TIMEOUT.saturating_sub(TIMEOUT_MARGIN)),
            (None, _) => None,
        };
        let expected = match (by_duration, by_count) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => Duration::ZERO,
        };
        expected + TIMEOUT_MARGIN
    }

    fn validate(&self) -> Result<(), Error> {
        let problem = if !self.target.ip().is_loopback() || self.target.port() == 0 {
            Some(format!(
                "target {} is not a loopback address with a port",
                self.target
            ))
        } else if self.count.is_none() && self.duration_secs.is_none() {
            Some("set count or duration_secs (or both)".to_string())
        } else if self.count == Some(0) || self.duration_secs == Some(0) {
            Some("count and duration_secs must be at least 1".to_string())
        } else if self.rate == Some(0) {
            Some("rate 0 crashes loggen: use None for as fast as possible".to_string())
        } else if self.connections == 0 {
            Some("connections must be at least 1".to_string())
        } else if self.rfc5424 && self.size < MIN_SIZE_RFC5424 {
            Some(format!("RFC 5424 messages need size >= {MIN_SIZE_RFC5424}"))
        } else if !self.rfc5424 && self.size < MIN_SIZE_RFC3164 {
            Some(format!("RFC 3164 messages need size >= {MIN_SIZE_RFC3164}"))
        } else if self.sdata.is_some() && !self.rfc5424 {
            Some("sdata needs rfc5424".to_string())
        } else {
            None
        };
        match problem {
            Some(problem) => Err(Error::Config(format!("loggen: {problem}"))),
            None => Ok(()),
        }
    }
}

/// What a finished loggen run reported.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggenReport {
    /// Messages sent (all connections together): the summary's `count`.
    pub count: u64,
    /// The summary's `average rate` in messages per second (coarse, see the module docs).
    pub rate: f64,
    /// The summary's `time` in seconds (loggen's own measure).
    pub loggen_seconds: f64,
    /// The summary's `(average) msg size` in bytes on the wire (octet count included).
    pub average_size: Option<u64>,
    /// The summary's `bandwidth` in kB/s.
    pub bandwidth_kb_per_sec: Option<f64>,
    /// Wall-clock time from spawn to exit, measured by the testkit.
    pub elapsed: Duration,
    /// loggen's `error [...]` lines other than connection failures (e.g. a send error
    /// when the target went away), in order.
    pub errors: Vec<String>,
    /// Everything loggen printed (stderr, then stdout).
    pub output: String,
}

impl LoggenReport {
    /// `count` divided by the wall-clock [`LoggenReport::elapsed`] (messages per second,
    /// process start-up included).
    pub fn wall_rate(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.count as f64 / seconds
        } else {
            0.0
        }
    }
}

/// A running loggen. Dropping it kills loggen and reaps it.
#[derive(Debug)]
pub struct LoggenRun {
    run: ToolRun,
}

impl LoggenRun {
    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.run.pid()
    }

    /// Waits for loggen to finish (at most the options' timeout, then it is killed and
    /// this fails) and parses its summary. Fails with [`Error::Program`] when loggen
    /// exits with an error status, could not connect, or printed no summary.
    pub fn wait(mut self) -> Result<LoggenReport, Error> {
        let output = self.run.wait()?;
        report_from(&output)
    }
}

/// Starts loggen with `options` in the background (installing the peers first if needed).
pub fn spawn_loggen(options: &LoggenOptions) -> Result<LoggenRun, Error> {
    let args = options.args()?;
    ensure_peers_installed()?;
    let mut command = Command::new(loggen_wrapper());
    command.args(&args);
    let run = ToolRun::spawn("loggen", command, options.effective_timeout())?;
    Ok(LoggenRun { run })
}

/// Runs loggen with `options` to completion and returns its report (see
/// [`LoggenRun::wait`] for the failures).
pub fn run_loggen(options: &LoggenOptions) -> Result<LoggenReport, Error> {
    spawn_loggen(options)?.wait()
}

fn report_from(output: &ToolOutput) -> Result<LoggenReport, Error> {
    let fail = |reason: String| Error::Program {
        program: "loggen",
        reason,
        output: output.tail(),
    };
    if !output.status.success() {
        return Err(fail(format!("exited with {}", output.status)));
    }
    let text = format!("{}{}", output.stderr, output.stdout);
    if text
        .lines()
        .any(|line| line.contains("can not connect") || line.contains("error connecting socket"))
    {
        return Err(fail("could not connect to the target".to_string()));
    }
    let errors = text
        .lines()
        .filter(|line| line.starts_with("error [") && !line.contains("message length is too small"))
        .map(str::to_string)
        .collect();
    let summary = parse_summary(&text).ok_or_else(|| fail("no summary line".to_string()))?;
    Ok(LoggenReport {
        count: summary.count,
        rate: summary.rate,
        loggen_seconds: summary.seconds,
        average_size: summary.average_size,
        bandwidth_kb_per_sec: summary.bandwidth,
        elapsed: output.elapsed,
        errors,
        output: text,
    })
}

/// The numbers of loggen's final summary line.
#[derive(Debug, Clone, PartialEq)]
struct Summary {
    count: u64,
    rate: f64,
    seconds: f64,
    average_size: Option<u64>,
    bandwidth: Option<f64>,
}

/// Parses the last `average rate = R msg/sec, count=N, time=T, (average) msg size=S,
/// bandwidth=B kB/sec` or `Total runtime = T, count = N` line of `text`.
fn parse_summary(text: &str) -> Option<Summary> {
    let line = text.lines().rev().find(|line| {
        let line = line.trim_start();
        line.starts_with("average rate =") || line.starts_with("Total runtime =")
    })?;
    let mut fields = std::collections::HashMap::new();
    for piece in line.split(',') {
        if let Some((key, value)) = piece.split_once('=') {
            let value = value.split_whitespace().next().unwrap_or("");
            fields.insert(key.trim().to_string(), value.to_string());
        }
    }
    let number = |key: &str| fields.get(key).and_then(|value| value.parse::<f64>().ok());
    let count = fields.get("count")?.parse::<u64>().ok()?;
    if line.trim_start().starts_with("Total runtime") {
        let seconds = number("Total runtime")?;
        return Some(Summary {
            count,
            rate: if seconds > 0.0 {
                count as f64 / seconds
            } else {
                0.0
            },
            seconds,
            average_size: None,
            bandwidth: None,
        });
    }
    Some(Summary {
        count,
        rate: number("average rate")?,
        seconds: number("time")?,
        average_size: fields
            .get("(average) msg size")
            .and_then(|value| value.parse().ok()),
        bandwidth: number("bandwidth"),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn summary_lines_are_parsed() {
        let text = "count=648407, rate = 654460.88 msg/sec\n\
                    average rate = 648132.84 msg/sec, count=648407, time=1.00042, (average) msg size=204, bandwidth=129120.21 kB/sec\n";
        assert_eq!(
            parse_summary(text).unwrap(),
            Summary {
                count: 648_407,
                rate: 648_132.84,
                seconds: 1.00042,
                average_size: Some(204),
                bandwidth: Some(129_120.21),
            }
        );
        let tiny = parse_summary(
            "average rate = 25000000.00 msg/sec, count=100, time=4e-06, (average) msg size=204, bandwidth=4980468.75 kB/sec",
        )
        .unwrap();
        assert_eq!(tiny.count, 100);
        assert!((tiny.seconds - 4e-6).abs() < 1e-12);
        let nothing = parse_summary(
            "error [socket_plugin.c:active_thread_func:332] can not connect to 127.0.0.1:25514 (0x5628195ab180)\nTotal runtime = 0.500114, count = 0\n",
        )
        .unwrap();
        assert_eq!(nothing.count, 0);
        assert_eq!(nothing.rate, 0.0);
        assert!(parse_summary("ThreadId;Time;Rate;Count\n").is_none());
    }

    #[test]
    fn options_become_flags() {
        let target: SocketAddr = "127.0.0.1:5140".parse().unwrap();
        let mut options = LoggenOptions::new(target);
        assert_eq!(
            options.args().unwrap(),
            [
                "--inet",
                "--stream",
                "--syslog-proto",
                "--size=256",
                "--rate=100000000",
                "--active-connections=1",
                "--number=1000",
                "127.0.0.1",
                "5140"
            ]
        );
        options.transport = LoggenTransport::Udp;
        options.rate = Some(500);
        options.connections = 3;
        options.duration_secs = Some(2);
        options.count = None;
        options.sdata = Some("[a@1 k=\"v\"]".to_string());
        let args = options.args().unwrap();
        assert!(args.contains(&"--dgram".to_string()));
        assert!(
            args.contains(&"--no-framing".to_string()),
            "UDP: no octet count"
        );
        assert!(args.contains(&"--sdata=[a@1 k=\"v\"]".to_string()));
        assert!(args.contains(&"--interval=2".to_string()));
        assert_eq!(options.effective_timeout(), Duration::from_secs(32));

        for broken in [
            LoggenOptions {
                size: 139,
                ..LoggenOptions::new(target)
            },
            LoggenOptions {
                rate: Some(0),
                ..LoggenOptions::new(target)
            },
            LoggenOptions {
                count: None,
                ..LoggenOptions::new(target)
            },
            LoggenOptions::new("10.0.0.1:514".parse().unwrap()),
        ] {
            assert!(matches!(broken.args(), Err(Error::Config(_))), "{broken:?}");
        }
    }
}
