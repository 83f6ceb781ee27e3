//! The one error type of `flotilla-logd`.

use std::path::PathBuf;

/// Everything that can go wrong in the log service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation on a file or socket failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the data directory's lock.
    #[error("data directory {0} is in use by another logd (its lock file is held)")]
    Locked(PathBuf),
    /// Stored data failed a checksum or did not decode.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// A setting is wrong (a bad URL, a bad filter, a bad size).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A query was malformed.
    #[error("invalid query: {0}")]
    Query(String),
    /// The store is shutting down or stopped; nothing more is accepted.
    #[error("the store is closed")]
    Closed,
    /// The store could not make records durable (e.g. the disk is full); they were not
    /// acknowledged and are retried.
    #[error("not durable: {0}")]
    NotDurable(String),
    /// The archive (a directory or an S3-compatible store) failed.
    #[error("archive: {0}")]
    Archive(String),
}

impl Error {
    /// An [`Error::Io`] with a context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Adds a context to I/O results.
pub(crate) trait IoContext<T> {
    /// Maps an I/O error to [`Error::Io`] with the context `what`.
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, Error>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, Error> {
        self.map_err(|source| Error::Io {
            context: what(),
            source,
        })
    }
}
