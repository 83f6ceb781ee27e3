//! RFC 5424 / RFC 3164 syslog messages for flotilla: the owned [`Message`] model with
//! validation and sanitising, allocation-free emission into a caller's buffer
//! ([`emit_5424`], [`emit_3164`]), zero-copy parsing ([`parse_strict`],
//! [`parse_lenient`]) and RFC 6587 TCP framing ([`FrameDecoder`],
//! [`encode_octet_counted`], [`encode_lf`]).
//!
//! `no_std` + `alloc`; the `std` feature (default) only adds `std::error::Error` for
//! [`Error`].
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod emit;
mod error;
mod framing;
mod message;
mod parse;
mod priority;
mod timestamp;

pub use emit::{Rfc3164Options, StructuredDataIn3164, emit_3164, emit_5424, escape_param_value};
pub use error::{Error, Field};
pub use framing::{FrameDecoder, Framing, encode_lf, encode_octet_counted};
pub use message::{
    BOM, MAX_APP_NAME_LEN, MAX_HOSTNAME_LEN, MAX_MSG_ID_LEN, MAX_PROC_ID_LEN, MAX_SD_NAME_LEN,
    Message, REGISTERED_SD_IDS, SANITIZE_PEN, SdElement, SdParam,
};
pub use parse::{
    Format, LenientDefaults, ParsedMessage, SdElementIter, SdElementRef, SdParamIter, SdParamRef,
    StructuredData, parse_lenient, parse_strict, structured_data_to_owned, unescape_param_value,
};
pub use priority::{Facility, Severity, priority_value, split_priority};
pub use timestamp::{
    DateTimeParts, Timestamp, civil_from_days, days_from_civil, days_in_month, is_leap_year,
};
