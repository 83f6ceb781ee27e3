//! Parsing: zero-copy views ([`ParsedMessage`]) borrowed from the input, a strict RFC
//! 5424 parser ([`parse_strict`]) and a lenient one for what real senders emit
//! ([`parse_lenient`]: RFC 5424, RFC 3164, or an unstructured line).

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;

use crate::emit::MONTHS;
use crate::error::{Error, Field};
use crate::message::{
    BOM, MAX_APP_NAME_LEN, MAX_HOSTNAME_LEN, MAX_MSG_ID_LEN, MAX_PROC_ID_LEN, MAX_SD_NAME_LEN,
    Message, SdElement, SdParam, check_sd_id_form, is_print_ascii, is_sd_name_byte,
};
use crate::priority::{Facility, Severity, split_priority};
use crate::timestamp::{DateTimeParts, TimeStrictness, Timestamp, parse_rfc3339};

/// Which syntax a parsed message was read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// RFC 5424 (`<PRI>1 ...`).
    Rfc5424,
    /// RFC 3164 / BSD syslog (`<PRI>Mmm dd hh:mm:ss HOST TAG: MSG`, or `<PRI>` + content).
    Rfc3164,
    /// Nothing recognised: the whole line is MSG, with the default facility/severity.
    Unstructured,
}

/// A message borrowed from the bytes it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedMessage<'a> {
    /// Facility (the default one when the input had no PRI).
    pub facility: Facility,
    /// Severity (the default one when the input had no PRI).
    pub severity: Severity,
    /// TIMESTAMP, `None` for the NILVALUE or none at all.
    pub timestamp: Option<Timestamp>,
    /// HOSTNAME.
    pub hostname: Option<&'a str>,
    /// APP-NAME (the TAG of RFC 3164).
    pub app_name: Option<&'a str>,
    /// PROCID (the `[PID]` of RFC 3164).
    pub proc_id: Option<&'a str>,
    /// MSGID.
    pub msg_id: Option<&'a str>,
    /// STRUCTURED-DATA, as a lazily iterated view; empty for the NILVALUE.
    pub structured_data: StructuredData<'a>,
    /// MSG, without the BOM.
    pub msg: &'a [u8],
    /// MSG started with the UTF-8 BOM (and the rest is valid UTF-8).
    pub msg_bom: bool,
    /// Which syntax was recognised.
    pub format: Format,
}

impl<'a> ParsedMessage<'a> {
    /// Copies the view into an owned [`Message`] (unescaping PARAM-VALUEs).
    pub fn to_owned(&self) -> Message {
        Message {
            facility: self.facility,
            severity: self.severity,
            timestamp: self.timestamp,
            hostname: self.hostname.map(String::from),
            app_name: self.app_name.map(String::from),
            proc_id: self.proc_id.map(String::from),
            msg_id: self.msg_id.map(String::from),
            structured_data: structured_data_to_owned(&self.structured_data),
            msg: self.msg.to_vec(),
            msg_bom: self.msg_bom,
        }
    }

    /// MSG as text, when it is valid UTF-8.
    pub fn msg_str(&self) -> Option<&'a str> {
        core::str::from_utf8(self.msg).ok()
    }
}

/// The STRUCTURED-DATA part of a parsed message: the raw text of its elements
/// (`[id k="v"]...`, `""` for the NILVALUE), iterated on demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct StructuredData<'a> {
    raw: &'a str,
}

impl<'a> StructuredData<'a> {
    /// The raw text of all elements as on the wire (escapes kept); `""` when none.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The elements in order.
    pub fn iter(&self) -> SdElementIter<'a> {
        SdElementIter { rest: self.raw }
    }

    /// The first element with this SD-ID.
    pub fn get(&self, id: &str) -> Option<SdElementRef<'a>> {
        self.iter().find(|element| element.id == id)
    }
}

impl<'a> IntoIterator for StructuredData<'a> {
    type Item = SdElementRef<'a>;
    type IntoIter = SdElementIter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over the elements of [`StructuredData`].
#[derive(Debug, Clone)]
pub struct SdElementIter<'a> {
    rest: &'a str,
}

impl<'a> Iterator for SdElementIter<'a> {
    type Item = SdElementRef<'a>;
    fn next(&mut self) -> Option<Self::Item> {
        let bytes = self.rest.as_bytes();
        if bytes.first() != Some(&b'[') {
            return None;
        }
        let id_end = 1 + bytes
            .get(1..)?
            .iter()
            .position(|&b| matches!(b, b' ' | b']'))?;
        let end = scan_params_end(bytes, id_end)?;
        let element = SdElementRef {
            id: self.rest.get(1..id_end)?,
            raw_params: self.rest.get(id_end..end)?,
        };
        self.rest = self.rest.get(end + 1..)?;
        Some(element)
    }
}

/// From just after the SD-ID, the index of the closing `]` (quotes and escapes respected).
fn scan_params_end(bytes: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    let mut in_value = false;
    while let Some(&b) = bytes.get(i) {
        match (in_value, b) {
            (true, b'\\') => i += 1,
            (true, b'"') | (false, b'"') => in_value = !in_value,
            (false, b']') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// One element of parsed STRUCTURED-DATA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SdElementRef<'a> {
    /// The SD-ID.
    pub id: &'a str,
    raw_params: &'a str,
}

impl<'a> SdElementRef<'a> {
    /// The parameters in order.
    pub fn params(&self) -> SdParamIter<'a> {
        SdParamIter {
            rest: self.raw_params,
        }
    }

    /// The first parameter with this name.
    pub fn param(&self, name: &str) -> Option<SdParamRef<'a>> {
        self.params().find(|param| param.name == name)
    }
}

/// Iterator over the parameters of an [`SdElementRef`].
#[derive(Debug, Clone)]
pub struct SdParamIter<'a> {
    rest: &'a str,
}

impl<'a> Iterator for SdParamIter<'a> {
    type Item = SdParamRef<'a>;
    fn next(&mut self) -> Option<Self::Item> {
        let bytes = self.rest.as_bytes();
        let mut i = 0;
        while bytes.get(i) == Some(&b' ') {
            i += 1;
        }
        let name_start = i;
        let eq = name_start + bytes.get(name_start..)?.iter().position(|&b| b == b'=')?;
        if bytes.get(eq + 1) != Some(&b'"') {
            return None;
        }
        let value_start = eq + 2;
        let mut j = value_start;
        loop {
            match bytes.get(j)? {
                b'\\' => j += 2,
                b'"' => break,
                _ => j += 1,
            }
        }
        let param = SdParamRef {
            name: self.rest.get(name_start..eq)?,
            raw_value: self.rest.get(value_start..j)?,
        };
        self.rest = self.rest.get(j + 1..)?;
        Some(param)
    }
}

/// One parameter of parsed STRUCTURED-DATA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SdParamRef<'a> {
    /// PARAM-NAME.
    pub name: &'a str,
    /// PARAM-VALUE as on the wire, escapes included.
    pub raw_value: &'a str,
}

impl<'a> SdParamRef<'a> {
    /// PARAM-VALUE with escapes resolved (borrowed when there are none).
    pub fn value(&self) -> Cow<'a, str> {
        unescape_param_value(self.raw_value)
    }
}

/// Resolves the PARAM-VALUE escapes `\"`, `\\` and `\]`; any other backslash is kept
/// as a regular character (RFC 5424 6.3.3). Borrows when there is nothing to resolve.
pub fn unescape_param_value(raw: &str) -> Cow<'_, str> {
    if !raw.contains('\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\'
            && let Some(&next @ ('"' | '\\' | ']')) = chars.peek()
        {
            out.push(next);
            chars.next();
            continue;
        }
        out.push(c);
    }
    Cow::Owned(out)
}

/// Parses one RFC 5424 message exactly as the RFC's ABNF and rules say (nothing is
/// trimmed; a trailing LF belongs to MSG). Rejects: a PRI with a leading zero or above
/// 191, a VERSION other than 1, more than 6 fraction digits, leap seconds, lowercase
/// `t`/`z`, header fields that are too long or not printable US-ASCII, malformed or
/// duplicate or unregistered SD-IDs, unescaped `]` in a PARAM-VALUE, non-UTF-8
/// PARAM-VALUEs, and a BOM followed by invalid UTF-8. MSG without a BOM is opaque.
///
/// Whatever this accepts, `to_owned()` turns into a [`Message`] that validates.
pub fn parse_strict(input: &[u8]) -> Result<ParsedMessage<'_>, Error> {
    if input.is_empty() {
        return Err(Error::EmptyInput);
    }
    let (pri, mut pos) = parse_pri_strict(input)?;
    let (facility, severity) = split_priority(pri).ok_or(Error::InvalidPriority {
        offset: 1,
        reason: "above 191",
    })?;
    match input.get(pos) {
        Some(b'1') => {}
        Some(b) if b.is_ascii_digit() => return Err(Error::UnsupportedVersion { offset: pos }),
        _ => {
            return Err(Error::Expected {
                offset: pos,
                expected: "VERSION 1",
            });
        }
    }
    pos += 1;
    if input.get(pos).is_some_and(u8::is_ascii_digit) {
        return Err(Error::UnsupportedVersion { offset: pos - 1 });
    }
    pos = expect_sp(input, pos)?;
    let (ts_token, next) = token(input, pos);
    let timestamp = if ts_token == b"-" {
        None
    } else if ts_token.is_empty() {
        return Err(Error::Expected {
            offset: pos,
            expected: "TIMESTAMP",
        });
    } else {
        Some(parse_rfc3339(ts_token, pos, TimeStrictness::Strict)?)
    };
    pos = expect_sp(input, next)?;
    let (hostname, next) = strict_header_field(input, pos, Field::Hostname, MAX_HOSTNAME_LEN)?;
    pos = expect_sp(input, next)?;
    let (app_name, next) = strict_header_field(input, pos, Field::AppName, MAX_APP_NAME_LEN)?;
    pos = expect_sp(input, next)?;
    let (proc_id, next) = strict_header_field(input, pos, Field::ProcId, MAX_PROC_ID_LEN)?;
    pos = expect_sp(input, next)?;
    let (msg_id, next) = strict_header_field(input, pos, Field::MsgId, MAX_MSG_ID_LEN)?;
    pos = expect_sp(input, next)?;
    let sd_start = pos;
    match input.get(pos) {
        Some(b'-') => pos += 1,
        Some(b'[') => {
            while input.get(pos) == Some(&b'[') {
                let end = scan_sd_element(input, pos, true)?;
                // SD-IDs are unique: compare with the elements before this one.
                let id_end = 1
                    + pos
                    + input
                        .get(pos + 1..)
                        .and_then(|rest| rest.iter().position(|&b| matches!(b, b' ' | b']')))
                        .unwrap_or(0);
                let id = input.get(pos + 1..id_end).unwrap_or_default();
                let earlier = core::str::from_utf8(input.get(sd_start..pos).unwrap_or_default())
                    .unwrap_or_default();
                if (StructuredData { raw: earlier })
                    .iter()
                    .any(|element| element.id.as_bytes() == id)
                {
                    return Err(Error::DuplicateSdId { offset: pos + 1 });
                }
                pos = end;
            }
        }
        _ => {
            return Err(Error::Expected {
                offset: pos,
                expected: "STRUCTURED-DATA ('[' or '-')",
            });
        }
    }
    let structured_data = if input.get(sd_start) == Some(&b'[') {
        let raw = input.get(sd_start..pos).unwrap_or_default();
        StructuredData {
            raw: core::str::from_utf8(raw).map_err(|e| Error::InvalidUtf8 {
                field: Field::StructuredData,
                offset: sd_start + e.valid_up_to(),
            })?,
        }
    } else {
        StructuredData::default()
    };
    let (msg, msg_bom) = match input.get(pos) {
        None => (&input[input.len()..], false),
        Some(b' ') => {
            let msg = input.get(pos + 1..).unwrap_or_default();
            match msg.strip_prefix(BOM) {
                Some(text) => {
                    if let Err(e) = core::str::from_utf8(text) {
                        return Err(Error::BomWithInvalidUtf8 {
                            offset: pos + 1 + BOM.len() + e.valid_up_to(),
                        });
                    }
                    (text, true)
                }
                None => (msg, false),
            }
        }
        Some(_) => {
            return Err(Error::Expected {
                offset: pos,
                expected: "SP before MSG, or the end",
            });
        }
    };
    Ok(ParsedMessage {
        facility,
        severity,
        timestamp,
        hostname,
        app_name,
        proc_id,
        msg_id,
        structured_data,
        msg,
        msg_bom,
        format: Format::Rfc5424,
    })
}

/// `<PRI>` by RFC 5424 6.2.1: 1-3 digits, no leading zero except `<0>`, at most 191.
fn parse_pri_strict(input: &[u8]) -> Result<(u8, usize), Error> {
    if input.first() != Some(&b'<') {
        return Err(Error::Expected {
            offset: 0,
            expected: "'<' starting PRI",
        });
    }
    let digits = input
        .get(1..)
        .unwrap_or_default()
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 {
        return Err(Error::InvalidPriority {
            offset: 1,
            reason: "no digits",
        });
    }
    if digits > 3 {
        return Err(Error::InvalidPriority {
            offset: 1,
            reason: "more than 3 digits",
        });
    }
    if digits > 1 && input.get(1) == Some(&b'0') {
        return Err(Error::InvalidPriority {
            offset: 1,
            reason: "leading zero",
        });
    }
    let value = input
        .get(1..1 + digits)
        .unwrap_or_default()
        .iter()
        .fold(0u32, |acc, &b| acc * 10 + u32::from(b - b'0'));
    if input.get(1 + digits) != Some(&b'>') {
        return Err(Error::Expected {
            offset: 1 + digits,
            expected: "'>' ending PRI",
        });
    }
    if value > 191 {
        return Err(Error::InvalidPriority {
            offset: 1,
            reason: "above 191",
        });
    }
    Ok((value as u8, 2 + digits))
}

/// `<PRI>` as senders write it: 1-3 digits (leading zeros tolerated), at most 191.
fn parse_pri_lenient(input: &[u8]) -> Option<(u8, usize)> {
    if input.first() != Some(&b'<') {
        return None;
    }
    let digits = input
        .get(1..)?
        .iter()
        .take(4)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if !(1..=3).contains(&digits) || input.get(1 + digits) != Some(&b'>') {
        return None;
    }
    let value = input
        .get(1..1 + digits)?
        .iter()
        .fold(0u32, |acc, &b| acc * 10 + u32::from(b - b'0'));
    u8::try_from(value)
        .ok()
        .filter(|&v| v <= 191)
        .map(|v| (v, 2 + digits))
}

fn expect_sp(input: &[u8], pos: usize) -> Result<usize, Error> {
    if input.get(pos) == Some(&b' ') {
        Ok(pos + 1)
    } else {
        Err(Error::Expected {
            offset: pos,
            expected: "SP",
        })
    }
}

/// The bytes from `pos` up to the next SP (or the end), and the index after them.
fn token(input: &[u8], pos: usize) -> (&[u8], usize) {
    let rest = input.get(pos..).unwrap_or_default();
    let len = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
    (rest.get(..len).unwrap_or_default(), pos + len)
}

fn strict_header_field(
    input: &[u8],
    pos: usize,
    field: Field,
    max: usize,
) -> Result<(Option<&str>, usize), Error> {
    let (bytes, next) = token(input, pos);
    check_token(field, bytes, pos, max, is_print_ascii)?;
    if bytes == b"-" {
        return Ok((None, next));
    }
    let text = core::str::from_utf8(bytes).map_err(|e| Error::InvalidUtf8 {
        field,
        offset: pos + e.valid_up_to(),
    })?;
    Ok((Some(text), next))
}

/// Scans an SD-NAME (an SD-ID or a PARAM-NAME) from `start` to the next delimiter (SP,
/// `]`, `=`, `"`) and returns its end. `strict` applies every RFC 5424 rule to it;
/// otherwise it only must not be empty.
fn scan_sd_name(input: &[u8], start: usize, strict: bool, field: Field) -> Result<usize, Error> {
    let mut end = start;
    while input
        .get(end)
        .is_some_and(|&b| !matches!(b, b' ' | b']' | b'=' | b'"'))
    {
        end += 1;
    }
    let name = input.get(start..end).unwrap_or_default();
    if strict {
        check_sd_name_at(field, name, start)?;
    } else if name.is_empty() {
        return Err(Error::FieldEmpty { field });
    }
    Ok(end)
}

/// Scans one SD-ELEMENT starting at `pos` (which holds `[`); returns the index after
/// its `]`. `strict` applies every RFC 5424 rule; otherwise only the delimiters count.
fn scan_sd_element(input: &[u8], pos: usize, strict: bool) -> Result<usize, Error> {
    let id_start = pos + 1;
    let mut i = scan_sd_name(input, id_start, strict, Field::SdId)?;
    if strict {
        let id = input.get(id_start..i).unwrap_or_default();
        check_sd_id_form(id).map_err(|reason| Error::InvalidSdId {
            offset: id_start,
            reason,
        })?;
    }
    loop {
        match input.get(i) {
            Some(b']') => return Ok(i + 1),
            Some(b' ') => i += 1,
            _ => {
                return Err(Error::Expected {
                    offset: i,
                    expected: "SP or ']' in an SD-ELEMENT",
                });
            }
        }
        i = scan_sd_name(input, i, strict, Field::SdParamName)?;
        if input.get(i) != Some(&b'=') {
            return Err(Error::Expected {
                offset: i,
                expected: "'=' after PARAM-NAME",
            });
        }
        if input.get(i + 1) != Some(&b'"') {
            return Err(Error::Expected {
                offset: i + 1,
                expected: "'\"' opening PARAM-VALUE",
            });
        }
        i += 2;
        let value_start = i;
        loop {
            match input.get(i) {
                None => {
                    return Err(Error::Expected {
                        offset: i,
                        expected: "'\"' closing PARAM-VALUE",
                    });
                }
                Some(b'\\') => i += 2,
                Some(b'"') => break,
                Some(b']') if strict => {
                    return Err(Error::ForbiddenByte {
                        field: Field::SdParamValue,
                        offset: i,
                        byte: b']',
                    });
                }
                Some(_) => i += 1,
            }
        }
        let value = input.get(value_start..i).unwrap_or_default();
        if let Err(e) = core::str::from_utf8(value) {
            return Err(Error::InvalidUtf8 {
                field: Field::SdParamValue,
                offset: value_start + e.valid_up_to(),
            });
        }
        i += 1;
    }
}

fn check_sd_name_at(field: Field, name: &[u8], at: usize) -> Result<(), Error> {
    check_token(field, name, at, MAX_SD_NAME_LEN, is_sd_name_byte)
}

/// The rules shared by header fields and SD names: not empty, every byte `allowed`
/// (the first offender reported at its offset `at + i`), at most `max` bytes.
fn check_token(
    field: Field,
    bytes: &[u8],
    at: usize,
    max: usize,
    allowed: fn(u8) -> bool,
) -> Result<(), Error> {
    if bytes.is_empty() {
        return Err(Error::FieldEmpty { field });
    }
    if let Some(i) = bytes.iter().position(|&b| !allowed(b)) {
        return Err(Error::ForbiddenByte {
            field,
            offset: at + i,
            byte: bytes.get(i).copied().unwrap_or(0),
        });
    }
    if bytes.len() > max {
        return Err(Error::FieldTooLong {
            field,
            len: bytes.len(),
            max,
        });
    }
    Ok(())
}

/// What [`parse_lenient`] assumes where the input says nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LenientDefaults {
    /// Facility when there is no valid PRI (RFC 3164 4.3.3: user).
    pub facility: Facility,
    /// Severity when there is no valid PRI (RFC 3164 4.3.3: notice).
    pub severity: Severity,
    /// When the message was received. An RFC 3164 timestamp (no year) gets the year,
    /// among `now`'s year and the ones before and after it, that puts it closest to
    /// `now` (so a "Dec 31" received on Jan 1 lands in the previous year).
    pub now: Option<Timestamp>,
    /// The year of RFC 3164 timestamps when `now` is `None`.
    pub fallback_year: u16,
    /// The UTC offset (minutes east) of RFC 3164 timestamps and of RFC 3339 ones that
    /// lack an offset.
    pub utc_offset_minutes: i16,
}

impl Default for LenientDefaults {
    fn default() -> Self {
        LenientDefaults {
            facility: Facility::User,
            severity: Severity::Notice,
            now: None,
            fallback_year: 1970,
            utc_offset_minutes: 0,
        }
    }
}

/// Parses whatever a real sender emitted; only an empty input is an error.
///
/// Steps:
/// 1. Trailing LF, CR and NUL bytes are trimmed; nothing left is [`Error::EmptyInput`].
/// 2. `<PRI>` (1-3 digits, leading zeros tolerated, at most 191) is read if present;
///    otherwise the defaults' facility and severity apply (user.notice by default).
/// 3. **RFC 5424** if a VERSION and SP follow and the TIMESTAMP is `-` or RFC 3339 with
///    these allowances: lowercase `t`/`z`, any number of fraction digits (truncated to
///    nanoseconds), second 60 read as 59.999999999, no offset meaning the defaults'
///    offset. Header fields are any non-SP UTF-8 runs of any length (so IPv6 addresses
///    and long names pass); missing trailing fields are `None`. STRUCTURED-DATA needs
///    only its delimiters (duplicates allowed); if it does not scan, or is absent, there
///    is none and MSG starts where it would have.
/// 4. Otherwise **RFC 3164**: an optional `Mmm dd hh:mm:ss` timestamp (day space- or
///    zero-padded or single-digit, month case-insensitive, an optional `yyyy ` before
///    the time, an optional fraction), or an RFC 3339 one; the year and zone follow
///    [`LenientDefaults`]; then HOSTNAME unless the next word is already a TAG; then
///    `TAG[PID]: ` or `TAG: ` (TAG 1-48 printable characters other than `[`, `:`);
///    the rest is MSG. A message with neither PRI nor a timestamp is
///    **Unstructured**: the whole line is MSG.
///
/// MSG may be any bytes; it has `msg_bom` set only when a BOM is followed by valid
/// UTF-8 (otherwise the BOM bytes stay in MSG).
pub fn parse_lenient<'a>(
    input: &'a [u8],
    defaults: &LenientDefaults,
) -> Result<ParsedMessage<'a>, Error> {
    let end = input
        .iter()
        .rposition(|&b| !matches!(b, b'\n' | b'\r' | 0))
        .map_or(0, |i| i + 1);
    let input = input.get(..end).unwrap_or_default();
    if input.is_empty() {
        return Err(Error::EmptyInput);
    }
    let pri = parse_pri_lenient(input);
    let (facility, severity) = pri
        .and_then(|(value, _)| split_priority(value))
        .unwrap_or((defaults.facility, defaults.severity));
    let body = input
        .get(pri.map_or(0, |(_, end)| end)..)
        .unwrap_or_default();
    let mut parsed = lenient_5424(body, defaults)
        .or_else(|| lenient_3164(body, pri.is_some(), defaults))
        .unwrap_or_else(|| ParsedMessage {
            facility,
            severity,
            timestamp: None,
            hostname: None,
            app_name: None,
            proc_id: None,
            msg_id: None,
            structured_data: StructuredData::default(),
            msg: body,
            msg_bom: false,
            format: Format::Unstructured,
        });
    parsed.facility = facility;
    parsed.severity = severity;
    if let Some(text) = parsed.msg.strip_prefix(BOM)
        && core::str::from_utf8(text).is_ok()
    {
        parsed.msg = text;
        parsed.msg_bom = true;
    }
    Ok(parsed)
}

/// A non-empty run of non-SP bytes at `pos` as UTF-8, `None` for `-`; the outer `None`
/// means the run is not UTF-8.
fn lenient_field(body: &[u8], pos: usize) -> Option<(Option<&str>, usize)> {
    let (bytes, next) = token(body, pos);
    if bytes.is_empty() || bytes == b"-" {
        return Some((None, next));
    }
    Some((Some(core::str::from_utf8(bytes).ok()?), next))
}

fn lenient_5424<'a>(body: &'a [u8], defaults: &LenientDefaults) -> Option<ParsedMessage<'a>> {
    let version_digits = body
        .iter()
        .take(4)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if !(1..=3).contains(&version_digits) || body.first() == Some(&b'0') {
        return None;
    }
    let mut pos = version_digits;
    if body.get(pos) != Some(&b' ') {
        return None;
    }
    pos += 1;
    let (ts_token, next) = token(body, pos);
    let timestamp = match ts_token {
        b"-" => None,
        _ => Some(
            parse_rfc3339(
                ts_token,
                pos,
                TimeStrictness::Lenient {
                    default_offset: defaults.utc_offset_minutes,
                },
            )
            .ok()?,
        ),
    };
    let mut parsed = ParsedMessage {
        facility: defaults.facility,
        severity: defaults.severity,
        timestamp,
        hostname: None,
        app_name: None,
        proc_id: None,
        msg_id: None,
        structured_data: StructuredData::default(),
        msg: &body[body.len()..],
        msg_bom: false,
        format: Format::Rfc5424,
    };
    pos = next;
    let mut fields: [Option<&'a str>; 4] = [None; 4];
    let mut complete = true;
    for field in &mut fields {
        if body.get(pos) != Some(&b' ') {
            complete = false;
            break;
        }
        let (value, next) = lenient_field(body, pos + 1)?;
        *field = value;
        pos = next;
    }
    [
        parsed.hostname,
        parsed.app_name,
        parsed.proc_id,
        parsed.msg_id,
    ] = fields;
    if !complete {
        return Some(parsed);
    }
    if body.get(pos) != Some(&b' ') {
        return Some(parsed);
    }
    pos += 1;
    let sd_start = pos;
    match body.get(pos) {
        Some(b'-') if matches!(body.get(pos + 1), None | Some(b' ')) => pos += 1,
        Some(b'[') => {
            let mut end = pos;
            while body.get(end) == Some(&b'[') {
                match scan_sd_element(body, end, false) {
                    Ok(next) => end = next,
                    Err(_) => break,
                }
            }
            if end > sd_start
                && let Ok(raw) = core::str::from_utf8(body.get(sd_start..end).unwrap_or_default())
            {
                parsed.structured_data = StructuredData { raw };
                pos = end;
            }
        }
        _ => {}
    }
    if body.get(pos) == Some(&b' ') {
        pos += 1;
    }
    parsed.msg = body.get(pos..).unwrap_or_default();
    Some(parsed)
}

fn lenient_3164<'a>(
    body: &'a [u8],
    has_pri: bool,
    defaults: &LenientDefaults,
) -> Option<ParsedMessage<'a>> {
    let mut parsed = ParsedMessage {
        facility: defaults.facility,
        severity: defaults.severity,
        timestamp: None,
        hostname: None,
        app_name: None,
        proc_id: None,
        msg_id: None,
        structured_data: StructuredData::default(),
        msg: body,
        msg_bom: false,
        format: Format::Rfc3164,
    };
    let mut pos = 0;
    let header = bsd_timestamp(body, defaults).or_else(|| {
        let (ts_token, next) = token(body, 0);
        let strictness = TimeStrictness::Lenient {
            default_offset: defaults.utc_offset_minutes,
        };
        parse_rfc3339(ts_token, 0, strictness)
            .ok()
            .map(|ts| (Some(ts), next))
    });
    match header {
        Some((timestamp, next)) => {
            parsed.timestamp = timestamp;
            pos = next;
            if body.get(pos) == Some(&b' ') {
                pos += 1;
            }
            let (word, after_word) = token(body, pos);
            if !word.is_empty()
                && parse_tag(word).is_none_or(|(_, _, used)| used != word.len())
                && let Ok(hostname) = core::str::from_utf8(word)
            {
                parsed.hostname = (hostname != "-").then_some(hostname);
                pos = after_word;
                if body.get(pos) == Some(&b' ') {
                    pos += 1;
                }
            }
        }
        None if !has_pri => return None,
        None => {}
    }
    let rest = body.get(pos..).unwrap_or_default();
    match parse_tag(rest) {
        Some((tag, pid, used)) => {
            parsed.app_name = Some(tag);
            parsed.proc_id = pid;
            parsed.msg = rest.get(used..).unwrap_or_default();
        }
        None => parsed.msg = rest,
    }
    Some(parsed)
}

/// `TAG[PID]: `, `TAG[PID] `, `TAG: ` (the colon followed by SP or the end); returns
/// the tag, the pid and the bytes used including one SP after it.
fn parse_tag(input: &[u8]) -> Option<(&str, Option<&str>, usize)> {
    let tag_len = input
        .iter()
        .take(MAX_APP_NAME_LEN + 1)
        .take_while(|&&b| is_print_ascii(b) && b != b'[' && b != b':')
        .count();
    if tag_len == 0 || tag_len > MAX_APP_NAME_LEN {
        return None;
    }
    let tag = core::str::from_utf8(input.get(..tag_len)?).ok()?;
    let mut i = tag_len;
    let mut pid = None;
    if input.get(i) == Some(&b'[') {
        let pid_len = input
            .get(i + 1..)?
            .iter()
            .take(MAX_PROC_ID_LEN + 1)
            .take_while(|&&b| is_print_ascii(b) && b != b']')
            .count();
        if pid_len == 0 || pid_len > MAX_PROC_ID_LEN || input.get(i + 1 + pid_len) != Some(&b']') {
            return None;
        }
        pid = Some(core::str::from_utf8(input.get(i + 1..i + 1 + pid_len)?).ok()?);
        i += pid_len + 2;
        if input.get(i) == Some(&b':') {
            i += 1;
        }
    } else if input.get(i) == Some(&b':') {
        i += 1;
    } else {
        return None;
    }
    match input.get(i) {
        None => Some((tag, pid, i)),
        Some(b' ') => Some((tag, pid, i + 1)),
        Some(_) => None,
    }
}

/// `Mmm dd [yyyy ]hh:mm:ss[.frac]` followed by SP or the end. The outer `None` means
/// the syntax did not match; the inner timestamp is `None` when the date does not exist
/// in the chosen year (Feb 29).
fn bsd_timestamp(body: &[u8], defaults: &LenientDefaults) -> Option<(Option<Timestamp>, usize)> {
    let name = body.get(..3)?;
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(name))? as u8 + 1;
    if body.get(3) != Some(&b' ') {
        return None;
    }
    let digit = |i: usize| body.get(i).filter(|b| b.is_ascii_digit()).map(|b| b - b'0');
    let (day, mut pos) = match (body.get(4), digit(4), digit(5)) {
        (Some(b' '), _, _) => (digit(5)?, 6),
        (_, Some(tens), Some(ones)) => (tens * 10 + ones, 6),
        (_, Some(ones), None) => (ones, 5),
        _ => return None,
    };
    if body.get(pos) != Some(&b' ') || !(1..=31).contains(&day) {
        return None;
    }
    pos += 1;
    let mut year = None;
    if (0..4).all(|k| digit(pos + k).is_some()) && body.get(pos + 4) == Some(&b' ') {
        year = Some((0..4).fold(0u16, |acc, k| {
            acc * 10 + u16::from(digit(pos + k).unwrap_or(0))
        }));
        pos += 5;
    }
    let two = |i: usize| Some(digit(i)? * 10 + digit(i + 1)?);
    let hour = two(pos)?;
    let minute = two(pos + 3)?;
    let second = two(pos + 6)?;
    if body.get(pos + 2) != Some(&b':') || body.get(pos + 5) != Some(&b':') {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    pos += 8;
    let mut nanos = 0u32;
    if body.get(pos) == Some(&b'.') && digit(pos + 1).is_some() {
        pos += 1;
        let mut scale = 100_000_000u32;
        while let Some(d) = digit(pos) {
            nanos += u32::from(d) * scale;
            scale /= 10;
            pos += 1;
        }
    }
    if !matches!(body.get(pos), None | Some(b' ')) {
        return None;
    }
    let (second, nanos) = if second == 60 {
        (59, 999_999_999)
    } else {
        (second, nanos)
    };
    let at_year = |year: u16| {
        Timestamp::from_local_parts(
            DateTimeParts {
                year,
                month,
                day,
                hour,
                minute,
                second,
            },
            nanos,
            defaults.utc_offset_minutes,
        )
        .ok()
    };
    let timestamp = match (year, defaults.now) {
        (Some(year), _) => at_year(year),
        (None, None) => at_year(defaults.fallback_year),
        (None, Some(now)) => {
            let local_year = now
                .with_offset_minutes(defaults.utc_offset_minutes)
                .unwrap_or(now)
                .local_parts()
                .year;
            [
                local_year.checked_sub(1),
                Some(local_year),
                local_year.checked_add(1),
            ]
            .into_iter()
            .flatten()
            .filter_map(at_year)
            .min_by_key(|ts| (ts.unix_seconds() - now.unix_seconds()).unsigned_abs())
        }
    };
    Some((timestamp, pos))
}

/// Collects the elements of a parsed STRUCTURED-DATA into owned ones (helper for
/// callers who want a `Vec`).
pub fn structured_data_to_owned(sd: &StructuredData<'_>) -> Vec<SdElement> {
    sd.iter()
        .map(|element| SdElement {
            id: String::from(element.id),
            params: element
                .params()
                .map(|param| SdParam::new(param.name, param.value().into_owned()))
                .collect(),
        })
        .collect()
}
