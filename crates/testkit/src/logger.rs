//! util-linux's `logger` (2.38 on Debian 12, package bsdutils, [`LOGGER_PROGRAM`]) as a
//! sender of single hand-described syslog messages to a loopback target.
//!
//! [`run_logger`] runs it with raw arguments; [`Logger`] builds the common ones. Useful
//! flags (see `logger --help`): `--rfc5424[=notime,notq,nohost]` (the default for remote
//! targets) or `--rfc3164`, `-n HOST -P PORT`, `-T` (TCP) or `-d` (UDP), `--octet-count`
//! (RFC 6587 octet counting over TCP; LF-terminated without it), `-t TAG` (APP-NAME),
//! `-p FACILITY.LEVEL`, `--id[=PID]` (PROCID), `--msgid`, `--sd-id`, `--sd-param`
//! (`name="value"`, for the `--sd-id` before it), `-S SIZE`. logger adds
//! `[timeQuality tzKnown="1" isSynced="0"]` to every RFC 5424 message unless
//! `--rfc5424=notq`, and uses the machine's host name. Over TCP to a closed port it
//! exits with status 1 (`logger: failed to connect to 127.0.0.1 port P`); over UDP it
//! cannot tell.
//!
//! Every run must name its destination: a loopback `-n`/`--server`, a `-u`/`--socket`,
//! or `--no-act`, so a test never writes into the machine's own log by accident.

use crate::Error;
use crate::install::LOGGER_PROGRAM;
use crate::process::ToolRun;
use std::ffi::{OsStr, OsString};
use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::Duration;

/// How long one logger run may take.
pub const LOGGER_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs [`LOGGER_PROGRAM`] with `args` (at most [`LOGGER_TIMEOUT`]). `Ok` when it exits
/// with status 0; otherwise [`Error::Program`] with the exit status and its stderr.
/// [`Error::Config`] when the arguments name no loopback destination (see the module
/// docs).
pub fn run_logger<I, S>(args: I) -> Result<(), Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<OsString> = args
        .into_iter()
        .map(|arg| arg.as_ref().to_owned())
        .collect();
    check_destination(&args)?;
    let mut command = Command::new(LOGGER_PROGRAM);
    command.args(&args);
    let output = ToolRun::spawn("logger", command, LOGGER_TIMEOUT)?.wait()?;
    if output.status.success() {
        Ok(())
    } else {
        Err(Error::Program {
            program: "logger",
            reason: format!("exited with {}", output.status),
            output: output.stderr,
        })
    }
}

/// Refuses arguments that would make logger write to the system log or off the
/// machine.
fn check_destination(args: &[OsString]) -> Result<(), Error> {
    let mut destination = false;
    let mut iter = args.iter().map(|arg| arg.to_string_lossy());
    while let Some(arg) = iter.next() {
        let server = match arg.as_ref() {
            "-n" | "--server" => Some(
                iter.next()
                    .map(|value| value.into_owned())
                    .unwrap_or_default(),
            ),
            "-u" | "--socket" | "--no-act" => {
                destination = true;
                None
            }
            other => other
                .strip_prefix("--server=")
                .or_else(|| other.strip_prefix("-n").filter(|rest| !rest.is_empty()))
                .map(str::to_string),
        };
        if let Some(server) = server {
            let loopback = server == "localhost"
                || server
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                return Err(Error::Config(format!(
                    "logger: server {server:?} is not a loopback address"
                )));
            }
            destination = true;
        }
    }
    if destination {
        Ok(())
    } else {
        Err(Error::Config(
            "logger: give a loopback -n/--server, a -u/--socket or --no-act \
             (never the system log)"
                .to_string(),
        ))
    }
}

/// The transport of a [`Logger`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoggerTransport {
    Tcp,
    Udp,
}

/// Builds a logger command line for one loopback target: `Logger::tcp(addr)` or
/// `Logger::udp(addr)`, then format and header options, then [`Logger::send`].
#[derive(Debug, Clone)]
pub struct Logger {
    target: SocketAddr,
    transport: LoggerTransport,
    options: Vec<OsString>,
}

impl Logger {
    /// Sends over TCP (`-n IP -P PORT -T`), LF-terminated unless
    /// [`Logger::octet_count`].
    pub fn tcp(target: SocketAddr) -> Self {
        Logger {
            target,
            transport: LoggerTransport::Tcp,
            options: Vec::new(),
        }
    }

    /// Sends over UDP (`-n IP -P PORT -d`).
    pub fn udp(target: SocketAddr) -> Self {
        Logger {
            target,
            transport: LoggerTransport::Udp,
            options: Vec::new(),
        }
    }

    fn with(mut self, args: &[&str]) -> Self {
        self.options.extend(args.iter().map(OsString::from));
        self
    }

    /// RFC 5424 (`--rfc5424`; logger's default for remote targets).
    pub fn rfc5424(self) -> Self {
        self.with(&["--rfc5424"])
    }

    /// RFC 5424 leaving parts out: `--rfc5424=SNIP` with SNIP a comma-separated list of
    /// `notime`, `notq` (no timeQuality SD element), `nohost`.
    pub fn rfc5424_without(self, snip: &str) -> Self {
        self.with(&[&format!("--rfc5424={snip}")])
    }

    /// RFC 3164 (`--rfc3164`).
    pub fn rfc3164(self) -> Self {
        self.with(&["--rfc3164"])
    }

    /// RFC 6587 octet counting over TCP (`--octet-count`).
    pub fn octet_count(self) -> Self {
        self.with(&["--octet-count"])
    }

    /// The tag, i.e. APP-NAME (`-t`).
    pub fn tag(self, tag: &str) -> Self {
        self.with(&["-t", tag])
    }

    /// The priority as `facility.level`, e.g. `local0.err` (`-p`).
    pub fn priority(self, priority: &str) -> Self {
        self.with(&["-p", priority])
    }

    /// The PROCID (`--id=ID`).
    pub fn procid(self, id: &str) -> Self {
        self.with(&[&format!("--id={id}")])
    }

    /// The MSGID (`--msgid`).
    pub fn msgid(self, msgid: &str) -> Self {
        self.with(&["--msgid", msgid])
    }

    /// Starts a structured-data element (`--sd-id`); add its parameters with
    /// [`Logger::sd_param`].
    pub fn sd_id(self, id: &str) -> Self {
        self.with(&["--sd-id", id])
    }

    /// A parameter `name="value"` of the last [`Logger::sd_id`] (`--sd-param`).
    pub fn sd_param(self, param: &str) -> Self {
        self.with(&["--sd-param", param])
    }

    /// Any other logger argument, passed as is.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.options.push(arg.into());
        self
    }

    /// The full argument list for `message`.
    pub fn args(&self, message: &str) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "-n".into(),
            self.target.ip().to_string().into(),
            "-P".into(),
            self.target.port().to_string().into(),
            match self.transport {
                LoggerTransport::Tcp => "-T",
                LoggerTransport::Udp => "-d",
            }
            .into(),
        ];
        args.extend(self.options.iter().cloned());
        args.push("--".into());
        args.push(message.into());
        args
    }

    /// Runs logger once to send `message` (see [`run_logger`]).
    pub fn send(&self, message: &str) -> Result<(), Error> {
        run_logger(self.args(message))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn check(args: &[&str]) -> Result<(), Error> {
        check_destination(&args.iter().map(OsString::from).collect::<Vec<_>>())
    }

    #[test]
    fn destination_must_be_loopback_and_explicit() {
        assert!(check(&["-n", "127.0.0.1", "-P", "514", "hi"]).is_ok());
        assert!(check(&["--server=::1", "hi"]).is_ok());
        assert!(check(&["-nlocalhost", "hi"]).is_ok());
        assert!(check(&["--no-act", "hi"]).is_ok());
        assert!(check(&["-u", "/tmp/x.sock", "hi"]).is_ok());
        assert!(matches!(check(&["hi"]), Err(Error::Config(_))));
        assert!(matches!(
            check(&["-n", "192.0.2.1", "hi"]),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            check(&["--server", "example.com"]),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn builder_arguments() {
        let args = Logger::tcp("127.0.0.1:5140".parse().unwrap())
            .rfc5424()
            .octet_count()
            .tag("app")
            .sd_id("a@32473")
            .sd_param("k=\"v\"")
            .args("hello");
        let args: Vec<String> = args
            .iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "-n",
                "127.0.0.1",
                "-P",
                "5140",
                "-T",
                "--rfc5424",
                "--octet-count",
                "-t",
                "app",
                "--sd-id",
                "a@32473",
                "--sd-param",
                "k=\"v\"",
                "--",
                "hello"
            ]
        );
    }
}
