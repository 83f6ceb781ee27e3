//! Writing messages: RFC 5424 ([`emit_5424`]) and RFC 3164 ([`emit_3164`]), appended
//! to a caller's buffer with no allocation beyond that buffer's growth and no
//! `core::fmt` machinery (hand-written number formatting).

use alloc::vec::Vec;

use crate::error::Error;
use crate::message::{BOM, Message, SdElement};

/// Appends `<PRI>`.
fn write_pri(out: &mut Vec<u8>, pri: u8) {
    let mut buf = [b'<', 0, 0, 0, b'>'];
    let len = if pri >= 100 {
        buf[1] = b'0' + pri / 100;
        buf[2] = b'0' + pri / 10 % 10;
        buf[3] = b'0' + pri % 10;
        buf[4] = b'>';
        5
    } else if pri >= 10 {
        buf[1] = b'0' + pri / 10;
        buf[2] = b'0' + pri % 10;
        buf[3] = b'>';
        4
    } else {
        buf[1] = b'0' + pri;
        buf[2] = b'>';
        3
    };
    out.extend_from_slice(&buf[..len]);
}

/// Appends `value` with `"`, `\` and `]` escaped by a backslash (RFC 5424 6.3.3).
pub fn escape_param_value(value: &str, out: &mut Vec<u8>) {
    let bytes = value.as_bytes();
    let mut run_start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if matches!(b, b'"' | b'\\' | b']') {
            out.extend_from_slice(&bytes[run_start..i]);
            out.push(b'\\');
            run_start = i;
        }
    }
    out.extend_from_slice(&bytes[run_start..]);
}

fn write_sd_element(element: &SdElement, out: &mut Vec<u8>) {
    out.push(b'[');
    out.extend_from_slice(element.id.as_bytes());
    for param in &element.params {
        out.push(b' ');
        out.extend_from_slice(param.name.as_bytes());
        out.extend_from_slice(b"=\"");
        escape_param_value(&param.value, out);
        out.push(b'"');
    }
    out.push(b']');
}

fn write_header_field(value: Option<&str>, out: &mut Vec<u8>) {
    out.push(b' ');
    match value {
        Some(v) => out.extend_from_slice(v.as_bytes()),
        None => out.push(b'-'),
    }
}

/// An upper-bound-ish estimate of the emitted size, so that `out` grows at most once.
fn estimated_len(msg: &Message) -> usize {
    let header = 5
        + 2
        + 33
        + 4
        + msg.hostname.as_ref().map_or(1, |s| s.len())
        + msg.app_name.as_ref().map_or(1, |s| s.len())
        + msg.proc_id.as_ref().map_or(1, |s| s.len())
        + msg.msg_id.as_ref().map_or(1, |s| s.len());
    let sd: usize = msg
        .structured_data
        .iter()
        .map(|e| {
            2 + e.id.len()
                + e.params
                    .iter()
                    .map(|p| 4 + p.name.len() + p.value.len() + p.value.len() / 8)
                    .sum::<usize>()
        })
        .sum();
    header + sd.max(1) + 1 + BOM.len() + msg.msg.len()
}

/// Validates `msg` ([`Message::validate`]) and appends its RFC 5424 form to `out`:
/// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD [SP [BOM] MSG]`.
///
/// The timestamp keeps microseconds (trailing zeros dropped, see
/// [`crate::Timestamp::write_rfc3339`]). The ` MSG` part is left out when `msg` is
/// empty and `msg_bom` is clear. On error `out` is unchanged.
pub fn emit_5424(msg: &Message, out: &mut Vec<u8>) -> Result<(), Error> {
    msg.validate()?;
    out.reserve(estimated_len(msg));
    write_pri(out, msg.priority());
    out.extend_from_slice(b"1 ");
    match &msg.timestamp {
        Some(ts) => ts.write_rfc3339(out),
        None => out.push(b'-'),
    }
    write_header_field(msg.hostname.as_deref(), out);
    write_header_field(msg.app_name.as_deref(), out);
    write_header_field(msg.proc_id.as_deref(), out);
    write_header_field(msg.msg_id.as_deref(), out);
    out.push(b' ');
    if msg.structured_data.is_empty() {
        out.push(b'-');
    } else {
        for element in &msg.structured_data {
            write_sd_element(element, out);
        }
    }
    if msg.msg_bom || !msg.msg.is_empty() {
        out.push(b' ');
        if msg.msg_bom {
            out.extend_from_slice(BOM);
        }
        out.extend_from_slice(&msg.msg);
    }
    Ok(())
}

/// What [`emit_3164`] does with STRUCTURED-DATA, which RFC 3164 has no place for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StructuredDataIn3164 {
    /// Leave it out.
    Drop,
    /// Write it in RFC 5424 syntax (`[id k="v"]...`) at the start of the content,
    /// followed by a space when there is a MSG.
    #[default]
    PrependToMsg,
}

/// Options for [`emit_3164`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rfc3164Options {
    /// Maximum packet length in bytes (RFC 3164 4.1: 1024); longer output is cut.
    pub max_len: usize,
    /// What to do with structured data.
    pub structured_data: StructuredDataIn3164,
    /// Cut a domain name from HOSTNAME at its first `.` (RFC 3164 4.1.2: "the Domain
    /// Name MUST NOT be included"); IPv4 and IPv6 literals are kept whole.
    pub strip_domain: bool,
}

impl Default for Rfc3164Options {
    fn default() -> Self {
        Rfc3164Options {
            max_len: 1024,
            structured_data: StructuredDataIn3164::PrependToMsg,
            strip_domain: true,
        }
    }
}

/// The 3-letter English month abbreviations of RFC 3164.
pub(crate) const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

fn hostname_for_3164(hostname: &str, strip_domain: bool) -> &str {
    if !strip_domain
        || hostname.contains(':')
        || hostname.bytes().all(|b| b.is_ascii_digit() || b == b'.')
    {
        return hostname;
    }
    match hostname.split('.').next() {
        Some(short) if !short.is_empty() => short,
        _ => hostname,
    }
}

/// Validates `msg` and appends its RFC 3164 (BSD syslog) form to `out`:
/// `<PRI>Mmm dd hh:mm:ss HOSTNAME TAG[PID]: MSG`.
///
/// Rules (RFC 3164 leaves these to the sender):
/// - **Header**: `Mmm dd hh:mm:ss HOSTNAME ` in the timestamp's own UTC offset, the day
///   space-padded (`Oct  3`). It is written only when both the timestamp and the
///   hostname are present; otherwise the whole header is left out and the content
///   follows `<PRI>` directly (RFC 3164 4.3.2 lets a relay add it). The hostname loses
///   its domain when `opts.strip_domain` is set.
/// - **TAG**: the characters of APP-NAME that are ASCII alphanumeric or one of
///   `-`, `_`, `.`, `/`, in order, at most 32; others are dropped. RFC 3164 calls the
///   TAG alphanumeric, but real programs (`systemd-logind`, `postfix/smtpd`) use these
///   four and every receiver (rsyslog, syslog-ng) reads them as part of the TAG; it
///   ends at `[`, `:` or a space, which are never kept.
///   No TAG (no APP-NAME, or none of it allowed) means no `TAG[PID]: ` prefix.
/// - **PID**: `[PROCID]` after the TAG, keeping only its ASCII alphanumeric
///   characters; left out when none remain or there is no TAG.
/// - **MSGID** is dropped; STRUCTURED-DATA per `opts.structured_data`; the BOM is never
///   written (RFC 3164 has none); MSG octets are copied as they are.
/// - **Length**: the output is cut to `opts.max_len` bytes; if the cut would split a
///   UTF-8 character, it moves back to that character's start.
///
/// On error `out` is unchanged.
pub fn emit_3164(msg: &Message, opts: &Rfc3164Options, out: &mut Vec<u8>) -> Result<(), Error> {
    msg.validate()?;
    let start = out.len();
    out.reserve(estimated_len(msg).min(opts.max_len.saturating_add(8)));
    write_pri(out, msg.priority());
    if let (Some(ts), Some(hostname)) = (&msg.timestamp, &msg.hostname) {
        let parts = ts.local_parts();
        let month = MONTHS
            .get(usize::from(parts.month.saturating_sub(1)))
            .copied()
            .unwrap_or(b"Jan");
        let day_tens = if parts.day >= 10 {
            b'0' + parts.day / 10
        } else {
            b' '
        };
        let header = [
            month[0],
            month[1],
            month[2],
            b' ',
            day_tens,
            b'0' + parts.day % 10,
            b' ',
            b'0' + parts.hour / 10,
            b'0' + parts.hour % 10,
            b':',
            b'0' + parts.minute / 10,
            b'0' + parts.minute % 10,
            b':',
            b'0' + parts.second / 10,
            b'0' + parts.second % 10,
            b' ',
        ];
        out.extend_from_slice(&header);
        out.extend_from_slice(hostname_for_3164(hostname, opts.strip_domain).as_bytes());
        out.push(b' ');
    }
    let tag_start = out.len();
    if let Some(app) = &msg.app_name {
        out.extend(app.bytes().filter(|b| is_tag_byte(*b)).take(32));
    }
    if out.len() > tag_start {
        if let Some(pid) = &msg.proc_id {
            let pid_start = out.len();
            out.push(b'[');
            out.extend(pid.bytes().filter(u8::is_ascii_alphanumeric));
            if out.len() == pid_start + 1 {
                out.truncate(pid_start);
            } else {
                out.push(b']');
            }
        }
        out.extend_from_slice(b": ");
    }
    if opts.structured_data == StructuredDataIn3164::PrependToMsg && !msg.structured_data.is_empty()
    {
        for element in &msg.structured_data {
            write_sd_element(element, out);
        }
        if !msg.msg.is_empty() {
            out.push(b' ');
        }
    }
    out.extend_from_slice(&msg.msg);
    let written = out.len() - start;
    if written > opts.max_len {
        let cut = utf8_cut_point(&out[start..], opts.max_len);
        out.truncate(start + cut);
    }
    Ok(())
}

/// The largest cut point `<= max` that does not split a UTF-8 character (bytes that
/// are not valid UTF-8 are cut anywhere).
pub(crate) fn utf8_cut_point(bytes: &[u8], max: usize) -> usize {
    if max >= bytes.len() {
        return bytes.len();
    }
    // Look back at most 3 bytes for the lead byte of a character spanning `max`.
    for back in 1..=3usize {
        let Some(lead_at) = max.checked_sub(back) else {
            break;
        };
        let Some(&lead) = bytes.get(lead_at) else {
            break;
        };
        let width = match lead {
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            0x80..=0xBF => continue,
            _ => return max,
        };
        let Some(char_bytes) = bytes.get(lead_at..lead_at + width) else {
            return max;
        };
        return if width > back && core::str::from_utf8(char_bytes).is_ok() {
            lead_at
        } else {
            max
        };
    }
    max
}

/// Whether `b` may appear in an RFC 3164 TAG as emitted (see [`emit_3164`]).
fn is_tag_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pri_digits() {
        for (pri, text) in [
            (0u8, &b"<0>"[..]),
            (9, b"<9>"),
            (10, b"<10>"),
            (99, b"<99>"),
            (100, b"<100>"),
            (191, b"<191>"),
        ] {
            let mut out = Vec::new();
            write_pri(&mut out, pri);
            assert_eq!(out, text);
        }
    }

    #[test]
    fn escaping() {
        let mut out = Vec::new();
        escape_param_value(r#"a"b\c]d"#, &mut out);
        assert_eq!(out, br#"a\"b\\c\]d"#);
    }

    #[test]
    fn cut_points() {
        let text = "ab\u{e9}\u{20ac}".as_bytes(); // a b (2 bytes) (3 bytes)
        assert_eq!(utf8_cut_point(text, 7), 7);
        assert_eq!(utf8_cut_point(text, 6), 4);
        assert_eq!(utf8_cut_point(text, 5), 4);
        assert_eq!(utf8_cut_point(text, 4), 4);
        assert_eq!(utf8_cut_point(text, 3), 2);
        assert_eq!(utf8_cut_point(&[0x80, 0x80, 0x80, 0x80], 2), 2);
        assert_eq!(utf8_cut_point(&[0xE2, 0x82, 0x00], 1), 1);
    }
}
