//! The crate's error type.

use core::fmt;

/// What the connection core can refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The peer's protocol version is not one this side speaks.
    UnsupportedVersion {
        /// The version the peer offered (or answered with).
        offered: u32,
        /// The oldest version this side speaks.
        oldest: u32,
        /// The newest version this side speaks.
        newest: u32,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::UnsupportedVersion {
                offered,
                oldest,
                newest,
            } if oldest == newest => write!(
                f,
                "protocol version {offered} is not supported (this side speaks {newest})"
            ),
            Error::UnsupportedVersion {
                offered,
                oldest,
                newest,
            } => write!(
                f,
                "protocol version {offered} is not supported (this side speaks {oldest} to {newest})"
            ),
        }
    }
}

impl core::error::Error for Error {}
