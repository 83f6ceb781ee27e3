//! The one error type of this crate.

use std::net::SocketAddr;

/// Why the front-end could not start or was configured wrongly.
///
/// The machines never fail as a whole: a bad frame on a connection closes that connection
/// (with an `Error` frame) and is reported through [`Output`](crate::Output)s, not here.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrontendError {
    /// The configuration is inconsistent (for example a zero send budget).
    #[error("invalid front-end configuration: {0}")]
    InvalidConfig(&'static str),
    /// The client listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// No seed could be drawn from the operating system's random source.
    #[error("no random seed available: {0}")]
    Entropy(String),
    /// A session-token key (file) is not 64 hex digits, or is all zero.
    #[error("invalid token key{}: {reason}", .source_name.as_deref().map(|s| format!(" in {s}")).unwrap_or_default())]
    InvalidTokenKey {
        /// Where it came from (a file path), if anywhere.
        source_name: Option<String>,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A join-token public key is not 64 hex digits (`--join-key`, a key file).
    #[error("invalid join key: {0}")]
    InvalidJoinKey(&'static str),
    /// A join-token signing key could not be read, written or used (`flotilla keygen
    /// --join`, `flotilla join-token`).
    #[error("join signing key: {0}")]
    InvalidJoinSigner(String),
    /// The TLS certificate or key could not be read or used.
    #[error("TLS: {0}")]
    Tls(String),
    /// A recording could not be written or read (`--record`, `flotilla replay`).
    #[error("recording: {0}")]
    Record(String),
    /// Another I/O failure of the shell.
    #[error("front-end I/O error: {0}")]
    Io(#[from] std::io::Error),
}
