//! The one error type of the testkit.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while installing, starting, stopping or reading a peer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `scripts/install-peers.sh` failed (or could not be run); holds its output.
    #[error("installing the test peers failed: {0}")]
    Install(String),
    /// An I/O operation failed; `context` says what the testkit was doing.
    #[error("I/O error while {context}: {source}")]
    Io {
        /// What the testkit was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The peer did not listen on all its ports in time.
    #[error("{peer} was not ready after {waited:?}: {reason}\n--- {peer} stderr ---\n{stderr}")]
    NotReady {
        /// Which peer (`rsyslogd`, `syslog-ng`, `nats-server`).
        peer: &'static str,
        /// How long the testkit waited.
        waited: Duration,
        /// What was still missing.
        reason: String,
        /// The end of the peer's stderr/stdout.
        stderr: String,
    },
    /// The peer exited while the testkit waited for it to become ready.
    #[error("{peer} exited during start-up ({status})\n--- {peer} stderr ---\n{stderr}")]
    Exited {
        /// Which peer.
        peer: &'static str,
        /// Its exit status, as text.
        status: String,
        /// The end of the peer's stderr/stdout.
        stderr: String,
    },
    /// Fewer output lines than wanted arrived before the deadline.
    #[error("timed out after {waited:?} waiting for {wanted} lines in {}: got {got}:\n{lines}", path.display())]
    Timeout {
        /// The output file.
        path: PathBuf,
        /// How long the testkit waited.
        waited: Duration,
        /// Lines wanted.
        wanted: usize,
        /// Complete lines present at the deadline.
        got: usize,
        /// Those lines, for the test log.
        lines: String,
    },
    /// A complete output line is not a JSON object.
    #[error("line {line_number} of {} is not JSON ({reason}): {line}", path.display())]
    BadOutput {
        /// The output file.
        path: PathBuf,
        /// 1-based line number.
        line_number: usize,
        /// The parser's complaint.
        reason: String,
        /// The line itself (lossy UTF-8).
        line: String,
    },
    /// No loopback port free for both TCP and UDP was found.
    #[error("no loopback port free for both TCP and UDP after {attempts} attempts")]
    NoFreePort {
        /// How many ports were tried.
        attempts: usize,
    },
    /// The requested peer configuration cannot work (e.g. no input at all).
    #[error("invalid peer configuration: {0}")]
    Config(String),
    /// Generating a test certificate failed.
    #[error("generating a test certificate failed: {0}")]
    Certificate(String),
    /// A one-shot tool (`loggen`, `logger`) failed, timed out, or printed something the
    /// testkit could not read.
    #[error("{program} failed: {reason}\n--- {program} output ---\n{output}")]
    Program {
        /// Which tool.
        program: &'static str,
        /// What went wrong (exit status, timeout, missing summary line).
        reason: String,
        /// The end of the tool's stderr and stdout.
        output: String,
    },
    /// An HTTP request to a peer (weed's S3 endpoint) failed or got an unexpected answer.
    #[error("HTTP {request} failed: {reason}")]
    Http {
        /// The request, e.g. `PUT http://127.0.0.1:8333/bucket`.
        request: String,
        /// What went wrong (I/O error, status and body of the answer, bad XML).
        reason: String,
    },
}

impl Error {
    /// Wraps an I/O error with what the testkit was doing.
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}
