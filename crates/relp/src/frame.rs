//! RELP frames on the wire: the [`Frame`] model and its encoder, the incremental
//! [`FrameDecoder`] (bytes may arrive in any chunking), and the `rsp` data format
//! ([`Response`]).
//!
//! ```text
//! RELP-FRAME = TXNR SP COMMAND SP DATALEN [SP DATA] TRAILER
//! TXNR       = 1*9DIGIT        ; 1..=999999999, 0 only for hints such as serverclose
//! COMMAND    = 1*32ALPHA
//! DATALEN    = 1*9DIGIT        ; if 0, neither SP nor DATA follow
//! TRAILER    = LF
//! ```
//!
//! The decoder is as strict as librelp's own parser (`relpframe.c`): digits only in the
//! numbers, letters only in the command, a single SP between fields, and LF right after the
//! data. Leading zeros in numbers are accepted, as librelp does.

use alloc::vec::Vec;

use crate::error::{Error, FrameField};

/// The largest transaction number; the one after it is 1 (0 is reserved for hints).
pub const MAX_TXNR: u32 = 999_999_999;

/// The largest DATALEN the frame syntax can express (9 digits).
pub const MAX_DATALEN: usize = 999_999_999;

/// librelp's default maximum data size (128 KiB), used as this crate's default too.
pub const DEFAULT_MAX_DATA_LEN: usize = 128 * 1024;

/// The longest command name the syntax allows.
pub const MAX_COMMAND_LEN: usize = 32;

const MAX_DIGITS: usize = 9;

/// The transaction number that follows `txnr`: one more, wrapping from 999,999,999 (and from
/// any out-of-range value) back to 1, as the RELP specification says.
pub fn next_txnr(txnr: u32) -> u32 {
    if txnr >= MAX_TXNR { 1 } else { txnr + 1 }
}

/// A RELP command name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command<'a> {
    /// `open`: the client's session start, carrying its offers.
    Open,
    /// `syslog`: one syslog message in DATA.
    Syslog,
    /// `rsp`: the response to a command, with the same TXNR.
    Rsp,
    /// `close`: the client's graceful end of the session.
    Close,
    /// `serverclose`: the server's hint (TXNR 0) that it is closing the connection.
    ServerClose,
    /// Any other command name (validated as 1 to 32 ASCII letters when encoded).
    Other(&'a str),
}

impl<'a> Command<'a> {
    /// The command for a name as it appears on the wire (case-sensitive, like librelp).
    pub fn from_name(name: &'a str) -> Self {
        match name {
            "open" => Command::Open,
            "syslog" => Command::Syslog,
            "rsp" => Command::Rsp,
            "close" => Command::Close,
            "serverclose" => Command::ServerClose,
            other => Command::Other(other),
        }
    }

    /// The name as written on the wire.
    pub fn as_str(&self) -> &'a str {
        match self {
            Command::Open => "open",
            Command::Syslog => "syslog",
            Command::Rsp => "rsp",
            Command::Close => "close",
            Command::ServerClose => "serverclose",
            Command::Other(name) => name,
        }
    }
}

/// One RELP frame; `data` borrows from the caller (encoding) or the decoder (decoding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The transaction number (0 for hints).
    pub txnr: u32,
    /// The command.
    pub command: Command<'a>,
    /// The command data (empty when DATALEN is 0).
    pub data: &'a [u8],
}

impl<'a> Frame<'a> {
    /// A frame from its parts.
    pub fn new(txnr: u32, command: Command<'a>, data: &'a [u8]) -> Self {
        Frame {
            txnr,
            command,
            data,
        }
    }

    /// Number of octets [`Frame::encode`] appends.
    pub fn encoded_len(&self) -> usize {
        encoded_len(self.txnr, self.command.as_str().len(), self.data.len())
    }

    /// Appends the wire form to `out` and returns the number of octets appended. Nothing is
    /// appended when the frame is invalid: TXNR above 999,999,999, a command that is not 1 to
    /// 32 ASCII letters, or data longer than 999,999,999 octets.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<usize, Error> {
        if self.txnr > MAX_TXNR {
            return Err(Error::InvalidTxnr { txnr: self.txnr });
        }
        let name = self.command.as_str();
        if name.is_empty()
            || name.len() > MAX_COMMAND_LEN
            || !name.bytes().all(|b| b.is_ascii_alphabetic())
        {
            return Err(Error::InvalidCommand);
        }
        if self.data.len() > MAX_DATALEN {
            return Err(Error::DataTooLong {
                len: self.data.len(),
            });
        }
        Ok(encode_unchecked(out, self.txnr, name.as_bytes(), self.data))
    }

    /// Decodes one frame from the start of `input`. Returns `Ok(None)` while `input` holds
    /// only a valid beginning of a frame, or the frame and the number of octets it took.
    /// Errors are reported as soon as the offending byte is seen, and a DATALEN above
    /// `max_data_len` is refused before any data is waited for.
    pub fn decode(input: &'a [u8], max_data_len: usize) -> Result<Option<(Self, usize)>, Error> {
        let Some(txnr_end) = scan_number(input, 0, FrameField::Txnr)? else {
            return Ok(None);
        };
        let txnr = number_value(input, 0, txnr_end.end);
        expect_byte(input, txnr_end.end, b' ', FrameField::Txnr)?;

        let command_start = txnr_end.end + 1;
        let Some(command_end) = scan_command(input, command_start)? else {
            return Ok(None);
        };
        let name = input
            .get(command_start..command_end)
            .and_then(|bytes| core::str::from_utf8(bytes).ok())
            .ok_or(Error::InvalidFrameByte {
                field: FrameField::Command,
                byte: b' ',
            })?;

        let len_start = command_end + 1;
        let Some(len_end) = scan_number(input, len_start, FrameField::DataLen)? else {
            return Ok(None);
        };
        let data_len = number_value(input, len_start, len_end.end) as usize;
        let (data_start, data_end) = if data_len == 0 {
            // No SP and no DATA: the trailer follows DATALEN directly.
            (len_end.end, len_end.end)
        } else {
            if data_len > max_data_len {
                return Err(Error::FrameTooLarge {
                    data_len,
                    max: max_data_len,
                });
            }
            expect_byte(input, len_end.end, b' ', FrameField::DataSeparator)?;
            (len_end.end + 1, len_end.end + 1 + data_len)
        };
        let Some(&trailer) = input.get(data_end) else {
            return Ok(None);
        };
        if trailer != b'\n' {
            return Err(Error::InvalidFrameByte {
                field: FrameField::Trailer,
                byte: trailer,
            });
        }
        let data = input.get(data_start..data_end).unwrap_or_default();
        Ok(Some((
            Frame {
                txnr,
                command: Command::from_name(name),
                data,
            },
            data_end + 1,
        )))
    }
}

/// Where a scanned number ended: `end` is the index of the byte after the last digit (which
/// is present in the input).
struct NumberEnd {
    end: usize,
}

/// Scans 1 to 9 digits starting at `start`, up to the first non-digit, which must be present.
fn scan_number(input: &[u8], start: usize, field: FrameField) -> Result<Option<NumberEnd>, Error> {
    let mut index = start;
    loop {
        let Some(&byte) = input.get(index) else {
            return Ok(None);
        };
        if byte.is_ascii_digit() {
            if index - start == MAX_DIGITS {
                return Err(Error::FieldTooLong { field });
            }
            index += 1;
        } else if index == start {
            return Err(Error::InvalidFrameByte { field, byte });
        } else {
            return Ok(Some(NumberEnd { end: index }));
        }
    }
}

/// The value of the (at most 9, all-digit) bytes in `start..end`.
fn number_value(input: &[u8], start: usize, end: usize) -> u32 {
    input
        .get(start..end)
        .unwrap_or_default()
        .iter()
        .fold(0u32, |value, digit| value * 10 + u32::from(digit - b'0'))
}

/// Scans 1 to 32 letters starting at `start`, then the SP that must follow; returns the
/// index of that SP.
fn scan_command(input: &[u8], start: usize) -> Result<Option<usize>, Error> {
    let mut index = start;
    loop {
        let Some(&byte) = input.get(index) else {
            return Ok(None);
        };
        if byte.is_ascii_alphabetic() {
            if index - start == MAX_COMMAND_LEN {
                return Err(Error::FieldTooLong {
                    field: FrameField::Command,
                });
            }
            index += 1;
        } else if byte == b' ' && index > start {
            return Ok(Some(index));
        } else {
            return Err(Error::InvalidFrameByte {
                field: FrameField::Command,
                byte,
            });
        }
    }
}

/// Checks the byte at `index` (known to be present) is `expected`.
fn expect_byte(input: &[u8], index: usize, expected: u8, field: FrameField) -> Result<(), Error> {
    match input.get(index) {
        Some(&byte) if byte != expected => Err(Error::InvalidFrameByte { field, byte }),
        _ => Ok(()),
    }
}

fn decimal_digits(mut value: usize) -> usize {
    let mut digits = 1;
    while value >= 10 {
        value /= 10;
        digits += 1;
    }
    digits
}

fn encoded_len(txnr: u32, command_len: usize, data_len: usize) -> usize {
    let data_part = if data_len > 0 { 1 + data_len } else { 0 };
    decimal_digits(txnr as usize) + 1 + command_len + 1 + decimal_digits(data_len) + data_part + 1
}

fn push_decimal(out: &mut Vec<u8>, value: usize) {
    let mut digits = [0u8; 20];
    let mut index = digits.len();
    let mut rest = value;
    loop {
        index -= 1;
        if let Some(slot) = digits.get_mut(index) {
            *slot = b'0' + (rest % 10) as u8;
        }
        rest /= 10;
        if rest == 0 || index == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(index..).unwrap_or_default());
}

/// Writes a frame whose parts the caller has already validated; returns the octets written.
pub(crate) fn encode_unchecked(out: &mut Vec<u8>, txnr: u32, command: &[u8], data: &[u8]) -> usize {
    let before = out.len();
    out.reserve(encoded_len(txnr, command.len(), data.len()));
    push_decimal(out, txnr as usize);
    out.push(b' ');
    out.extend_from_slice(command);
    out.push(b' ');
    push_decimal(out, data.len());
    if !data.is_empty() {
        out.push(b' ');
        out.extend_from_slice(data);
    }
    out.push(b'\n');
    out.len() - before
}

/// Reassembles frames from bytes that arrive in arbitrary chunks.
///
/// Feed bytes with [`push`](FrameDecoder::push), then call
/// [`next_frame`](FrameDecoder::next_frame) until it returns `Ok(None)`. After an error the
/// decoder stays failed (every later call returns the same error and pushed bytes are
/// dropped) until [`reset`](FrameDecoder::reset): RELP's answer to a framing error is to drop
/// the connection. Memory held is what was pushed and not yet decoded; a frame whose DATALEN
/// exceeds the maximum is refused before its data is buffered.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    buffer: Vec<u8>,
    start: usize,
    max_data_len: usize,
    failure: Option<Error>,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new(DEFAULT_MAX_DATA_LEN)
    }
}

impl FrameDecoder {
    /// A decoder that refuses frames with more than `max_data_len` data octets (capped at
    /// 999,999,999).
    pub fn new(max_data_len: usize) -> Self {
        FrameDecoder {
            buffer: Vec::new(),
            start: 0,
            max_data_len: max_data_len.min(MAX_DATALEN),
            failure: None,
        }
    }

    /// The largest DATALEN accepted.
    pub fn max_data_len(&self) -> usize {
        self.max_data_len
    }

    /// Appends received bytes (ignored once the decoder has failed).
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failure.is_some() {
            return;
        }
        if self.start > 0 {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed, or the framing error.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, Error> {
        if let Some(error) = &self.failure {
            return Err(error.clone());
        }
        let pending = self.buffer.get(self.start..).unwrap_or_default();
        match Frame::decode(pending, self.max_data_len) {
            Ok(Some((frame, used))) => {
                self.start += used;
                Ok(Some(frame))
            }
            Ok(None) => Ok(None),
            Err(error) => {
                // The buffered bytes are released by `reset`.
                self.failure = Some(error.clone());
                Err(error)
            }
        }
    }

    /// Bytes received and not yet returned as frames (0 once failed).
    pub fn buffered_len(&self) -> usize {
        if self.failure.is_some() {
            return 0;
        }
        self.buffer.len().saturating_sub(self.start)
    }

    /// Whether the decoder has failed (and needs a [`reset`](FrameDecoder::reset)).
    pub fn has_failed(&self) -> bool {
        self.failure.is_some()
    }

    /// Forgets buffered bytes and any failure, for a new connection.
    pub fn reset(&mut self) {
        self.buffer.clear();
        self.start = 0;
        self.failure = None;
    }
}

/// The data of an `rsp` frame: `CODE [SP TEXT] [LF DATA]`.
///
/// `200` means success; every other code is an error (rsyslog sends `500`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response<'a> {
    /// The three-digit status code.
    pub code: u16,
    /// The human-readable text (no LF).
    pub text: &'a [u8],
    /// Command-specific data after the LF (the server's offers for `open`).
    pub data: &'a [u8],
}

impl<'a> Response<'a> {
    /// The success code.
    pub const OK: u16 = 200;
    /// The error code rsyslog uses.
    pub const ERROR: u16 = 500;

    /// Parses `rsp` data. Accepts a bare code, a code with text, and either followed by LF
    /// and data; the code must be three digits.
    pub fn parse(data: &'a [u8]) -> Result<Self, Error> {
        let code_bytes = data.get(..3).ok_or(Error::MalformedResponse)?;
        if !code_bytes.iter().all(u8::is_ascii_digit) {
            return Err(Error::MalformedResponse);
        }
        let code = code_bytes
            .iter()
            .fold(0u16, |value, digit| value * 10 + u16::from(digit - b'0'));
        let rest = data.get(3..).unwrap_or_default();
        let (text, data) = match rest.first() {
            None => (rest, rest),
            Some(b'\n') => (&[][..], rest.get(1..).unwrap_or_default()),
            Some(b' ') => {
                let after_space = rest.get(1..).unwrap_or_default();
                match after_space.iter().position(|&b| b == b'\n') {
                    Some(lf) => (
                        after_space.get(..lf).unwrap_or_default(),
                        after_space.get(lf + 1..).unwrap_or_default(),
                    ),
                    None => (after_space, &[][..]),
                }
            }
            Some(_) => return Err(Error::MalformedResponse),
        };
        Ok(Response { code, text, data })
    }

    /// Whether the code is 200.
    pub fn is_ok(&self) -> bool {
        self.code == Self::OK
    }

    /// Appends `CODE SP TEXT`, then `LF DATA` if there is data. `code` is written as three
    /// digits (values above 999 are written as 999).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let code = self.code.min(999);
        out.extend_from_slice(&[
            b'0' + (code / 100) as u8,
            b'0' + (code / 10 % 10) as u8,
            b'0' + (code % 10) as u8,
            b' ',
        ]);
        out.extend(self.text.iter().copied().filter(|&b| b != b'\n'));
        if !self.data.is_empty() {
            out.push(b'\n');
            out.extend_from_slice(self.data);
        }
    }
}
