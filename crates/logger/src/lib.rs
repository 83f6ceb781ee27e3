//! The flotilla logger: standard syslog from services that cannot be opened up.
//!
//! A sealed service (a unikernel, a tiny immutable container) keeps nothing locally;
//! its log stream is its operators' only window. This logger ships RFC 5424 or RFC
//! 3164 syslog over UDP, TCP, TLS, RELP or a local Unix socket to a list of
//! collectors, with random choice and failover between them, and it never blocks or
//! crashes the service it lives in:
//!
//! - a log call formats into a bounded queue and returns; one background thread
//!   does all I/O ([`sender`](crate::Logger));
//! - a full queue drops by a configured [`DropPolicy`], counts the drops and later
//!   sends one message saying how many were lost;
//! - [`Logger::boot`] sends "booted and awake" with the IP configuration, the panic
//!   hook sends "about to crash" synchronously within a bounded time, and
//!   [`Logger::error`] logs a caught error with its cause chain;
//! - a re-entrancy guard drops anything logged from inside the logger itself (for
//!   example by the TLS library), so it can never recurse;
//! - every connection attempt, host-name resolution included, is bounded by
//!   [`Config::connect_timeout`]: a name server that never answers costs one
//!   failed attempt, not a stuck sender (see [`Resolver`]);
//! - TLS collectors can require a client certificate (mutual TLS:
//!   `tls://HOST:PORT?ca=CA.pem&cert=CLIENT.pem&key=CLIENT.key`, see [`Config`]'s
//!   module for the URL syntax); a refusal is a failed connection, never a
//!   message counted as delivered into a connection the collector closes;
//! - the [`TracingLayer`] sends an event's fields and those of the spans it is in
//!   as RFC 5424 structured data;
//! - "delivered" ([`Stats`]) never claims more than the logger knows, and says what it
//!   means per transport: over RELP **acknowledged** by the collector; over TCP and TLS
//!   **taken by the collector's TCP** (every byte of the message acknowledged by it,
//!   read from the kernel with `TCP_INFO`; what it has not taken when a connection
//!   fails is sent again on the next one, and messages taken on a connection the
//!   collector then resets are counted as possibly unread); over UDP and Unix sockets
//!   **sent**, without feedback, with truncated datagrams counted.
//!
//! ```no_run
//! let config = flotilla_logger::Config::with_collectors("tcp://127.0.0.1:601")?;
//! let logger = flotilla_logger::init(config)?; // log + panic hook + boot message
//! log::info!("serving");
//! logger.shutdown(std::time::Duration::from_secs(2));
//! # Ok::<(), flotilla_logger::Error>(())
//! ```
#![forbid(unsafe_code)]

mod config;
mod encode;
mod lifecycle;
mod link;
mod log_adapter;
mod logger;
mod record;
mod resolve;
mod sender;
mod tracing_layer;

pub use config::{
    ClientIdentity, Collector, Config, DEFAULT_RELP_WINDOW, DEFAULT_UDP_MAX, DEFAULT_UNIX_MAX,
    DropPolicy, ENV_VAR, Format, MAX_PERIOD, MAX_UDP_SIZE, MAX_UNIX_SIZE, StreamFraming, Transport,
    parse_collector, parse_collectors,
};
pub use flotilla_syslog::{Facility, Severity};
pub use lifecycle::{install_panic_hook, ip_configuration};
pub use logger::{Logger, Stats, init, init_with};
pub use resolve::{ResolveFn, Resolver};
pub use tracing_layer::{MAX_SPANS, TracingLayer};

/// SD-ID suffix for flotilla's own structured data: `@32473` is the private
/// enterprise number that RFC 5612 reserves for documentation and examples.
pub const PEN_SUFFIX: &str = "@32473";

/// Everything that can go wrong when configuring or starting the logger.
/// Once started, the logger never returns errors to the application: failures
/// are counted in [`Stats`] and reported through the log stream itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A collector (a URL, or one built in code) is wrong.
    #[error("flotilla-logger configuration: collector {collector:?}: {reason}")]
    Collector {
        /// The collector's URL, or its address for one built in code.
        collector: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No collector was given: an empty configuration (`given: None`), or a list
    /// (`FLOTILLA_LOG`, `--to`) that names none.
    #[error("flotilla-logger configuration: {}", match given {
        Some(spec) => format!("no collector in {spec:?}"),
        None => "no collector configured".to_owned(),
    })]
    NoCollector {
        /// The list as given, if any.
        given: Option<String>,
    },
    /// The environment variable holding the collectors is not set.
    #[error(
        "flotilla-logger configuration: environment variable {var} is not set (example: {var}=tcp://127.0.0.1:514)"
    )]
    EnvNotSet {
        /// Its name (`FLOTILLA_LOG`).
        var: &'static str,
    },
    /// A setting other than the collectors is out of range or malformed.
    #[error("flotilla-logger configuration: {setting} {reason}")]
    Setting {
        /// The setting's name (`queue_capacity`, `heartbeat`, `fields_sd_id`, ...).
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// No seed could be drawn from the operating system's random source.
    #[error("flotilla-logger: no OS entropy to seed the collector choice: {0}")]
    Entropy(String),
    /// A TLS setting could not be loaded (a CA, client certificate or key file
    /// unreadable, empty or not PEM; a key that does not match its certificate).
    #[error("flotilla-logger TLS setup: {0}")]
    Tls(String),
    /// The background sender thread could not be started.
    #[error("flotilla-logger could not start its sender thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// Another `log` logger is already installed in this process.
    #[error("flotilla-logger: a global `log` logger is already installed")]
    AlreadyInstalled,
}
