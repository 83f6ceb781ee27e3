//! The crate's one error type.

use core::fmt;

/// Everything that can go wrong in `flotilla-balance`.
///
/// The balancer itself never fails once built: only construction, the
/// [`pick_uniform`](crate::pick_uniform) helper and OS seeding report errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The server list is empty: there is nothing to choose from.
    NoServers,
    /// The server list is longer than [`MAX_SERVERS`](crate::MAX_SERVERS).
    TooManyServers {
        /// How many servers were given.
        count: usize,
        /// The largest accepted count.
        max: usize,
    },
    /// The operating system's random source could not produce a seed.
    #[cfg(feature = "std")]
    OsEntropy(getrandom::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoServers => f.write_str("the server list is empty"),
            Error::TooManyServers { count, max } => {
                write!(
                    f,
                    "the server list has {count} entries, more than the maximum of {max}"
                )
            }
            #[cfg(feature = "std")]
            Error::OsEntropy(cause) => {
                write!(f, "the OS random source could not produce a seed: {cause}")
            }
        }
    }
}

impl core::error::Error for Error {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            #[cfg(feature = "std")]
            Error::OsEntropy(cause) => Some(cause),
            _ => None,
        }
    }
}
