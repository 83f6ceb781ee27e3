//! `flotilla-logd`: the flotilla log service.
//!
//! It receives syslog from anything that speaks it (UDP, TCP with either RFC 6587 framing,
//! TLS, RELP), makes every record durable in a write-ahead log with group commit, stores it
//! in immutable, compressed, filtered segments, and answers queries and live tails. The
//! on-disk format is described in `STORAGE.md` at the repository's root.
//!
//! Modules, from the bytes up:
//! - [`record`]: a received frame with its arrival time, source and flags;
//! - [`tokens`]: the words and field values the per-block filters hold;
//! - [`wal`]: the write-ahead log (CRC32C entries, group commit, torn-tail recovery);
//! - [`block`] and [`segment`]: compressed column blocks and the segment files that hold them;
//! - [`query`]: filters, pruning, matching, and the JSON form of a record;
//! - [`store`]: the data directory, its writer thread, queries and tails over it.
#![forbid(unsafe_code)]

pub mod alerts;
#[cfg(feature = "server")]
pub mod archive;
pub mod block;
pub mod error;
pub mod fleet;
#[cfg(feature = "server")]
pub mod forward;
#[cfg(feature = "server")]
pub mod http;
#[cfg(feature = "server")]
pub mod listen;
#[cfg(feature = "server")]
pub mod notify;
#[cfg(feature = "server")]
pub mod peers;
pub mod query;
pub mod record;
pub mod segment;
#[cfg(feature = "server")]
pub mod server;
pub mod sse;
pub mod store;
pub mod tokens;
pub mod wal;
#[cfg(feature = "server")]
pub mod watch;
#[cfg(feature = "server")]
pub mod watch_api;
#[cfg(feature = "server")]
pub mod web;

pub use error::Error;
pub use query::{Matcher, Query, QueryStats, RecordJson};
pub use record::{FLAG_TRUNCATED, Head, Record, Source, Transport};
pub use store::{DurableBatch, Ingest, Store, StoreConfig, StoreStats};

/// Largest record accepted anywhere (listeners truncate far below this; readers reject
/// larger lengths as corruption).
pub const MAX_RECORD_BYTES: usize = 16 << 20;
