//! The one error type of the client SDK.

use flotilla_wire::{ErrorCode, FrameType, PROTOCOL_VERSION, WireError};

/// What went wrong in a [`Client`](crate::Client) call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Connecting, reading or writing failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The connection or the handshake took longer than allowed.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The front-end answered the hello with an `Error` (for example `Overloaded`).
    #[error("front-end refused the connection: {code:?}: {text}")]
    Refused {
        /// The error code.
        code: ErrorCode,
        /// Its text.
        text: String,
    },
    /// The front-end welcomed us with a protocol version we do not speak.
    #[error("front-end speaks protocol version {0}, this client speaks {PROTOCOL_VERSION}")]
    UnsupportedVersion(u32),
    /// The front-end sent something that is not valid protocol.
    #[error("protocol error: {0}")]
    Protocol(#[from] WireError),
    /// The front-end sent a valid frame that is not allowed here.
    #[error("unexpected {frame:?} frame from the front-end {during}")]
    UnexpectedFrame {
        /// The frame's type.
        frame: FrameType,
        /// When: `"before Welcome"`.
        during: &'static str,
    },
    /// The connection is closed (or closing).
    #[error("not connected")]
    NotConnected,
    /// The send queue is over its budget: the connection is closing.
    #[error("send queue over budget")]
    Overloaded,
    /// A setting is unusable (for example an empty front-end list).
    #[error("invalid configuration: {setting}: {reason}")]
    InvalidConfig {
        /// Which setting: `"front-end list"`, `"DNS front-ends"`.
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A [`FleetClient`](crate::FleetClient) could not reach any front-end for
    /// `failed_rounds` rounds in a row.
    #[error(
        "gave up after {failed_rounds} failed rounds over every front-end; last error: {last_error}"
    )]
    GaveUp {
        /// Consecutive rounds in which every front-end failed.
        failed_rounds: u32,
        /// The last connect or handshake error.
        last_error: String,
    },
    /// A [`FleetClient`](crate::FleetClient) whose front-ends come from DNS never got a list:
    /// the name did not resolve (or had no A/AAAA record, or the name servers did not
    /// answer in time) in `failed_rounds` rounds in a row.
    #[error(
        "could not resolve the front-end name {name:?} in {failed_rounds} rounds; last error: {error}"
    )]
    Unresolved {
        /// The DNS name.
        name: String,
        /// Consecutive rounds without a list.
        failed_rounds: u32,
        /// The last resolution error.
        error: String,
    },
    /// A [`FleetClient`](crate::FleetClient) is between front-ends and its queue of inputs
    /// waiting for the next connection is full; this input was not queued.
    #[error("input queue full while reconnecting ({inputs} inputs, {bytes} bytes queued)")]
    InputQueueFull {
        /// Inputs queued.
        inputs: usize,
        /// Their payload bytes.
        bytes: usize,
    },
}
