//! The benchmark harnesses behind `flotilla bench …`.
//!
//! Each benchmark is a function that runs to completion within bounded time and returns
//! a serde-serialisable report (the CLI prints it as one JSON object):
//!
//! - [`hop::run_hop`]: the round trip input -> game server -> output through one
//!   front-end versus the same echo sent directly to the game server, interleaved in one
//!   run.
//! - [`fanout::run_fanout`]: one world, N observers, 100-byte changes at a fixed rate and
//!   at saturation, against a flotilla front-end and against nats-server with the same
//!   lean readers.
//! - [`connections::run_connections`]: user-space memory per idle observer connection on
//!   one front-end.
//! - [`failover::run_failover`]: a front-end process killed or frozen under its clients:
//!   how soon they notice, reconnect elsewhere, resume and carry on.
//!
//! Servers under test and the observers live in their own processes: the harness spawns
//! worker processes ([`workers`]) — `flotilla bench worker …` from the CLI, or the
//! `flotilla-bench-worker` binary of this crate — and kills them when done, also on error.
//! Observers read with the lean decoders of [`lean`] (raw sockets, minimal parsing,
//! identical code paths for both systems).
#![forbid(unsafe_code)]

pub mod affinity;
pub mod bigfinal;
pub mod connections;
pub mod cpu_share;
pub mod failover;
pub mod fanout;
pub mod flood;
pub mod floor;
mod game_side;
pub mod hop;
pub mod lean;
pub mod logd;
mod observe;
pub mod procstat;
pub mod spread;
pub mod stats;
pub mod transport;
pub mod workers;

/// Everything that can make a benchmark fail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// A socket, file or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A setting is out of range.
    #[error("invalid setting: {0}")]
    InvalidConfig(String),
    /// A peer sent bytes the lean decoder cannot make sense of.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A worker process misbehaved (exited, printed garbage, never got ready).
    #[error("worker: {0}")]
    Worker(String),
    /// Something did not happen in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The game server or the front-end failed to start.
    #[error("server: {0}")]
    Server(String),
    /// nats-server could not be started.
    #[error("nats-server: {0}")]
    Nats(String),
    /// A /proc file could not be parsed.
    #[error("cannot parse {file}: {detail}")]
    ProcParse {
        /// The file.
        file: String,
        /// What was wrong.
        detail: String,
    },
    /// A report could not be (de)serialised.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

impl BenchError {
    /// A closure wrapping an I/O error with what was being done.
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
        let context = context.into();
        move |source| BenchError::Io { context, source }
    }
}

pub use bigfinal::{BigFinalConfig, BigFinalReport, run_bigfinal};
pub use connections::{ConnectionsConfig, ConnectionsReport, run_connections};
pub use failover::{FailoverBenchConfig, FailoverReport, FailureMode, run_failover};
pub use fanout::{FanoutConfig, FanoutReport, run_fanout};
pub use flood::{FloodConfig, FloodPhase, FloodReport, run_flood};
pub use hop::{HopConfig, HopReport, HopRound, HopRun, Placement, run_hop};
pub use logd::{LogdBenchConfig, LogdBenchReport, run_logd_bench};
pub use spread::{SpreadConfig, SpreadReport, run_spread};
pub use workers::{WorkerArgs, WorkerLauncher, worker_main};
