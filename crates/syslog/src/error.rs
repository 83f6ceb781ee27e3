//! The crate's one error type: a variant per rule, naming the field, the rule and the
//! byte offset so that a rejected message says exactly what is wrong with it.

use core::fmt;

/// A part of a syslog message, named in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// `<PRI>`: facility and severity.
    Priority,
    /// The RFC 5424 VERSION (`1`).
    Version,
    /// TIMESTAMP.
    Timestamp,
    /// HOSTNAME (1-255 printable US-ASCII).
    Hostname,
    /// APP-NAME (1-48 printable US-ASCII).
    AppName,
    /// PROCID (1-128 printable US-ASCII).
    ProcId,
    /// MSGID (1-32 printable US-ASCII).
    MsgId,
    /// The STRUCTURED-DATA part as a whole.
    StructuredData,
    /// An SD-ID (1-32 printable US-ASCII except `=`, space, `]`, `"`).
    SdId,
    /// A PARAM-NAME (same rules as an SD-ID).
    SdParamName,
    /// A PARAM-VALUE (UTF-8, with `"`, `\` and `]` escaped on the wire).
    SdParamValue,
    /// MSG.
    Msg,
}

impl Field {
    /// The RFC 5424 name of the field, e.g. `"HOSTNAME"`.
    pub fn name(self) -> &'static str {
        match self {
            Field::Priority => "PRI",
            Field::Version => "VERSION",
            Field::Timestamp => "TIMESTAMP",
            Field::Hostname => "HOSTNAME",
            Field::AppName => "APP-NAME",
            Field::ProcId => "PROCID",
            Field::MsgId => "MSGID",
            Field::StructuredData => "STRUCTURED-DATA",
            Field::SdId => "SD-ID",
            Field::SdParamName => "PARAM-NAME",
            Field::SdParamValue => "PARAM-VALUE",
            Field::Msg => "MSG",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything that can go wrong in this crate.
///
/// `offset` is a byte offset: into the field's value when a [`crate::Message`] is
/// validated, into the input when bytes are parsed or decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The input holds no message (empty, or only trailing LF/CR/NUL in lenient mode).
    EmptyInput,
    /// A field is present (`Some`) but empty; RFC 5424 fields are at least 1 character.
    FieldEmpty {
        /// Which field.
        field: Field,
    },
    /// A header field is `Some("-")`, which is the NILVALUE on the wire: use `None`.
    FieldIsNilValue {
        /// Which field.
        field: Field,
    },
    /// A field is longer than RFC 5424 allows.
    FieldTooLong {
        /// Which field.
        field: Field,
        /// Its length in bytes.
        len: usize,
        /// The RFC 5424 maximum.
        max: usize,
    },
    /// A byte that the field's rule forbids (e.g. not printable US-ASCII, or one of
    /// `=`, space, `]`, `"` in an SD name).
    ForbiddenByte {
        /// Which field.
        field: Field,
        /// Offset of the byte (in the field when validating, in the input when parsing).
        offset: usize,
        /// The byte.
        byte: u8,
    },
    /// An SD-ID without `@` that is not registered with IANA (RFC 5424 6.3.2), or a
    /// `name@PEN` SD-ID whose part after `@` is not a private enterprise number.
    InvalidSdId {
        /// Offset of the SD-ID (element index when validating, input offset when parsing).
        offset: usize,
        /// Which part of the rule is broken.
        reason: &'static str,
    },
    /// The same SD-ID appears twice in one message (RFC 5424 6.3.2).
    DuplicateSdId {
        /// Offset of the second occurrence (element index when validating, input offset
        /// when parsing).
        offset: usize,
    },
    /// `msg_bom` is set but MSG is not valid UTF-8 (RFC 5424 6.4).
    BomWithInvalidUtf8 {
        /// Offset of the first invalid byte (in MSG when validating, in the input when
        /// parsing).
        offset: usize,
    },
    /// `msg_bom` is false but MSG itself starts with the BOM bytes EF BB BF: on the wire
    /// that reads as a UTF-8 MSG, so set `msg_bom` and drop the bytes instead.
    MsgStartsWithBom,
    /// A PARAM-VALUE or field that must be UTF-8 is not.
    InvalidUtf8 {
        /// Which field.
        field: Field,
        /// Offset of the first invalid byte in the input.
        offset: usize,
    },
    /// Nanoseconds of a timestamp are 1,000,000,000 or more.
    NanosOutOfRange {
        /// The value given.
        nanos: u32,
    },
    /// A timestamp falls outside years 0000-9999 (in UTC or in its own offset).
    TimestampOutOfRange,
    /// A UTC offset beyond +-23:59 (RFC 3339 `time-numoffset`).
    OffsetOutOfRange {
        /// The offset given, in minutes.
        minutes: i16,
    },
    /// The `<PRI>` part is malformed: not 1-3 digits, a leading zero, or above 191.
    InvalidPriority {
        /// Offset in the input.
        offset: usize,
        /// Which part of the rule is broken.
        reason: &'static str,
    },
    /// The VERSION is not `1`.
    UnsupportedVersion {
        /// Offset in the input.
        offset: usize,
    },
    /// A malformed RFC 3339 timestamp.
    InvalidTimestamp {
        /// Offset in the input.
        offset: usize,
        /// Which part of the rule is broken.
        reason: &'static str,
    },
    /// More than 6 fraction digits (RFC 5424 TIME-SECFRAC is 1-6 digits).
    TooManyFractionDigits {
        /// Offset of the 7th digit in the input.
        offset: usize,
    },
    /// Second 60: RFC 5424 6.2.3 forbids leap seconds.
    LeapSecond {
        /// Offset of the seconds in the input.
        offset: usize,
    },
    /// The syntax requires something else here.
    Expected {
        /// Offset in the input.
        offset: usize,
        /// What was expected, e.g. `"SP"`, `"'>'"`, `"'['"`.
        expected: &'static str,
    },
    /// `encode_lf` was given a frame that contains LF, which would split it in two.
    FrameContainsLf {
        /// Offset of the LF in the frame.
        offset: usize,
    },
    /// `encode_lf` was given an empty frame (the decoder skips empty lines).
    EmptyFrame,
    /// A frame is longer than the decoder's maximum; it was skipped.
    FrameTooLong {
        /// Its length (or, for LF framing, the length seen so far: at least this).
        len: usize,
        /// The decoder's maximum.
        max: usize,
    },
    /// An RFC 6587 octet count (`MSG-LEN SP`) is malformed: leading zero, not a
    /// number, or not followed by SP.
    InvalidOctetCount {
        /// Offset in the decoder's stream since its start.
        offset: u64,
        /// Which part of the rule is broken.
        reason: &'static str,
    },
    /// The stream ended inside an octet-counted frame.
    TruncatedFrame {
        /// Octets announced by the count.
        expected: usize,
        /// Octets that arrived.
        received: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::EmptyInput => f.write_str("empty input: no syslog message"),
            Error::FieldEmpty { field } => {
                write!(
                    f,
                    "{field} is empty: use None (NILVALUE) or at least 1 character"
                )
            }
            Error::FieldIsNilValue { field } => {
                write!(f, "{field} is \"-\", the NILVALUE: use None instead")
            }
            Error::FieldTooLong { field, len, max } => {
                write!(
                    f,
                    "{field} is {len} bytes long, RFC 5424 allows at most {max}"
                )
            }
            Error::ForbiddenByte {
                field,
                offset,
                byte,
            } => write!(
                f,
                "{field}: byte 0x{byte:02x} at offset {offset} is not allowed (printable US-ASCII 33-126 only; SD names also exclude '=', ' ', ']', '\"')"
            ),
            Error::InvalidSdId { offset, reason } => {
                write!(f, "SD-ID at {offset}: {reason} (RFC 5424 6.3.2)")
            }
            Error::DuplicateSdId { offset } => {
                write!(
                    f,
                    "SD-ID at {offset} repeats an earlier SD-ID (RFC 5424 6.3.2)"
                )
            }
            Error::BomWithInvalidUtf8 { offset } => write!(
                f,
                "MSG has a UTF-8 BOM but invalid UTF-8 at offset {offset} (RFC 5424 6.4)"
            ),
            Error::MsgStartsWithBom => f.write_str(
                "MSG starts with the BOM bytes while msg_bom is false: set msg_bom and drop them",
            ),
            Error::InvalidUtf8 { field, offset } => {
                write!(f, "{field}: invalid UTF-8 at offset {offset}")
            }
            Error::NanosOutOfRange { nanos } => {
                write!(
                    f,
                    "timestamp nanoseconds {nanos} are not below 1,000,000,000"
                )
            }
            Error::TimestampOutOfRange => {
                f.write_str("timestamp outside years 0000-9999 (RFC 3339 full-date)")
            }
            Error::OffsetOutOfRange { minutes } => {
                write!(f, "UTC offset of {minutes} minutes is beyond +-23:59")
            }
            Error::InvalidPriority { offset, reason } => {
                write!(f, "PRI at offset {offset}: {reason} (RFC 5424 6.2.1)")
            }
            Error::UnsupportedVersion { offset } => {
                write!(f, "VERSION at offset {offset} is not 1")
            }
            Error::InvalidTimestamp { offset, reason } => {
                write!(f, "TIMESTAMP at offset {offset}: {reason} (RFC 5424 6.2.3)")
            }
            Error::TooManyFractionDigits { offset } => write!(
                f,
                "TIMESTAMP: more than 6 fraction digits at offset {offset} (RFC 5424 TIME-SECFRAC)"
            ),
            Error::LeapSecond { offset } => write!(
                f,
                "TIMESTAMP: leap second 60 at offset {offset} is not allowed (RFC 5424 6.2.3)"
            ),
            Error::Expected { offset, expected } => {
                write!(f, "expected {expected} at offset {offset}")
            }
            Error::FrameContainsLf { offset } => write!(
                f,
                "frame contains LF at offset {offset}: LF framing would split it (RFC 6587 3.4.2); use octet counting"
            ),
            Error::EmptyFrame => f.write_str("empty frame: RFC 6587 has no encoding for it"),
            Error::FrameTooLong { len, max } => {
                write!(
                    f,
                    "frame of {len} octets exceeds the maximum of {max}; skipped"
                )
            }
            Error::InvalidOctetCount { offset, reason } => write!(
                f,
                "octet count at stream offset {offset}: {reason} (RFC 6587 3.4.1)"
            ),
            Error::TruncatedFrame { expected, received } => write!(
                f,
                "stream ended inside an octet-counted frame: {received} of {expected} octets"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}
