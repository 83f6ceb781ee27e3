//! The crate's one error type: everything that can go wrong while encoding, decoding or
//! driving a RELP session.

use alloc::string::String;
use core::fmt;

/// The part of a RELP frame (`TXNR SP COMMAND SP DATALEN [SP DATA] LF`) an error refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameField {
    /// The transaction number (1 to 9 digits).
    Txnr,
    /// The command name (1 to 32 ASCII letters).
    Command,
    /// The data length (1 to 9 digits).
    DataLen,
    /// The separator between DATALEN and DATA.
    DataSeparator,
    /// The trailing LF.
    Trailer,
}

impl fmt::Display for FrameField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FrameField::Txnr => "TXNR",
            FrameField::Command => "COMMAND",
            FrameField::DataLen => "DATALEN",
            FrameField::DataSeparator => "separator before DATA",
            FrameField::Trailer => "trailer",
        })
    }
}

/// Everything that can go wrong in this crate.
///
/// Decoding errors and peer protocol violations are fatal for the connection they happened
/// on (RELP's rule: the peer that detects a problem drops the connection); the sessions say
/// which of their methods return which variants.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A byte that cannot appear at this place of a frame (this includes an empty field,
    /// reported with the byte found where the field should have started).
    InvalidFrameByte {
        /// The field being read.
        field: FrameField,
        /// The offending byte.
        byte: u8,
    },
    /// TXNR or DATALEN has more than 9 digits, or COMMAND more than 32 letters.
    FieldTooLong {
        /// The field that overflowed.
        field: FrameField,
    },
    /// The frame announces more data than this side accepts.
    FrameTooLarge {
        /// The announced DATALEN.
        data_len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// Encoding: TXNR above 999,999,999.
    InvalidTxnr {
        /// The rejected transaction number.
        txnr: u32,
    },
    /// Encoding: a command name that is not 1 to 32 ASCII letters.
    InvalidCommand,
    /// Encoding: data longer than the 999,999,999 octets DATALEN can express.
    DataTooLong {
        /// The data length.
        len: usize,
    },
    /// The data of an `rsp` frame is not `CODE [SP TEXT] [LF DATA]` with a 3-digit code.
    MalformedResponse,
    /// The peer answered a transaction number that has no outstanding command.
    UnexpectedResponse {
        /// The transaction number of the stray `rsp`.
        txnr: u32,
    },
    /// The peer sent a command this side does not accept (for example `syslog` to a client).
    UnexpectedCommand {
        /// The command name as received.
        command: String,
    },
    /// Server side: a command arrived with a transaction number out of sequence.
    UnexpectedTxnr {
        /// The transaction number the session expected.
        expected: u32,
        /// The transaction number received.
        received: u32,
    },
    /// The server refused the `open` command.
    OpenRejected {
        /// The response code (not 200).
        code: u16,
        /// The server's human-readable text (lossily decoded).
        text: String,
    },
    /// The `open` exchange lacks an offer this side needs (`relp_version`, or `syslog` among
    /// `commands`).
    MissingOffer {
        /// What was missing.
        offer: &'static str,
    },
    /// A configuration value is out of range.
    InvalidConfig {
        /// Which value and why.
        reason: &'static str,
    },
    /// Client: the session already holds `capacity` unacknowledged messages.
    QueueFull {
        /// The configured capacity.
        capacity: usize,
    },
    /// Client: the message is longer than the configured maximum.
    MessageTooLarge {
        /// The message length.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// Server: `ack`/`reject` named a transaction number that is not awaiting a response.
    UnknownTxnr {
        /// The transaction number given.
        txnr: u32,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidFrameByte { field, byte } => {
                write!(f, "invalid byte 0x{byte:02x} in RELP frame {field}")
            }
            Error::FieldTooLong { field } => write!(f, "RELP frame {field} is too long"),
            Error::FrameTooLarge { data_len, max } => {
                write!(
                    f,
                    "RELP frame announces {data_len} data octets, more than the maximum {max}"
                )
            }
            Error::InvalidTxnr { txnr } => {
                write!(f, "RELP transaction number {txnr} is above 999999999")
            }
            Error::InvalidCommand => f.write_str("RELP command must be 1 to 32 ASCII letters"),
            Error::DataTooLong { len } => {
                write!(f, "RELP frame data of {len} octets exceeds 999999999")
            }
            Error::MalformedResponse => f.write_str("malformed RELP rsp data"),
            Error::UnexpectedResponse { txnr } => {
                write!(
                    f,
                    "RELP rsp for transaction {txnr}, which is not outstanding"
                )
            }
            Error::UnexpectedCommand { command } => {
                write!(f, "unexpected RELP command {command:?}")
            }
            Error::UnexpectedTxnr { expected, received } => write!(
                f,
                "RELP transaction number {received} out of sequence (expected {expected})"
            ),
            Error::OpenRejected { code, text } => {
                write!(f, "RELP server refused open: {code} {text}")
            }
            Error::MissingOffer { offer } => write!(f, "RELP open exchange lacks {offer}"),
            Error::InvalidConfig { reason } => write!(f, "invalid RELP configuration: {reason}"),
            Error::QueueFull { capacity } => write!(
                f,
                "RELP client already holds {capacity} unacknowledged messages"
            ),
            Error::MessageTooLarge { len, max } => {
                write!(
                    f,
                    "message of {len} octets exceeds the RELP maximum of {max}"
                )
            }
            Error::UnknownTxnr { txnr } => {
                write!(f, "RELP transaction {txnr} is not awaiting a response")
            }
        }
    }
}

impl core::error::Error for Error {}
