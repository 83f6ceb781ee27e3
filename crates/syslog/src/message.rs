//! The owned, validated message the logger builds and emits: [`Message`] with its
//! structured data, the RFC 5424 validation rules, and the documented lossy
//! [`Message::sanitize`] that turns any message into a valid one.

use alloc::string::String;
use alloc::vec::Vec;

use crate::error::{Error, Field};
use crate::priority::{Facility, Severity, priority_value};
use crate::timestamp::Timestamp;

/// The UTF-8 byte order mark that starts a UTF-8 MSG (RFC 5424 6.4).
pub const BOM: &[u8; 3] = b"\xEF\xBB\xBF";
/// Maximum HOSTNAME length (RFC 5424 6.2.4).
pub const MAX_HOSTNAME_LEN: usize = 255;
/// Maximum APP-NAME length (RFC 5424 6.2.5).
pub const MAX_APP_NAME_LEN: usize = 48;
/// Maximum PROCID length (RFC 5424 6.2.6).
pub const MAX_PROC_ID_LEN: usize = 128;
/// Maximum MSGID length (RFC 5424 6.2.7).
pub const MAX_MSG_ID_LEN: usize = 32;
/// Maximum SD-ID and PARAM-NAME length (RFC 5424 6.3).
pub const MAX_SD_NAME_LEN: usize = 32;
/// SD-IDs without `@` registered with IANA: `timeQuality`, `origin`, `meta` (RFC 5424
/// section 7), `ssign`, `ssign-cert` (RFC 5848) and `alarm` (RFC 5674). Any other SD-ID
/// must have the form `name@PEN`.
pub const REGISTERED_SD_IDS: [&str; 6] = [
    "timeQuality",
    "origin",
    "meta",
    "ssign",
    "ssign-cert",
    "alarm",
];
/// The private enterprise number [`Message::sanitize`] appends to SD-IDs that are neither
/// registered nor `name@PEN`: 32473, which RFC 5612 reserves for documentation.
pub const SANITIZE_PEN: &str = "32473";

/// One STRUCTURED-DATA element: `[id name="value" ...]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct SdElement {
    /// The SD-ID: a registered name (see [`REGISTERED_SD_IDS`]) or `name@PEN`.
    pub id: String,
    /// The parameters, in order; a name may repeat (RFC 5424 6.3.3).
    pub params: Vec<SdParam>,
}

/// One SD-PARAM: `name="value"`; the value is kept unescaped.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct SdParam {
    /// PARAM-NAME: 1-32 printable US-ASCII except `=`, space, `]`, `"`.
    pub name: String,
    /// PARAM-VALUE, unescaped (any UTF-8; escaping happens on emission).
    pub value: String,
}

impl SdParam {
    /// A parameter.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        SdParam {
            name: name.into(),
            value: value.into(),
        }
    }
}

impl SdElement {
    /// An element without parameters.
    pub fn new(id: impl Into<String>) -> Self {
        SdElement {
            id: id.into(),
            params: Vec::new(),
        }
    }

    /// Adds a parameter (builder style).
    pub fn with_param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push(SdParam::new(name, value));
        self
    }
}

/// An owned syslog message: what the logger builds and emits with
/// [`crate::emit_5424`] / [`crate::emit_3164`].
///
/// `None` header fields are the NILVALUE `-` on the wire. Rules are checked by
/// [`Message::validate`]; [`Message::sanitize`] repairs any message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Message {
    /// Facility (PRI = facility * 8 + severity).
    pub facility: Facility,
    /// Severity.
    pub severity: Severity,
    /// TIMESTAMP; `None` is the NILVALUE a clockless host must send.
    pub timestamp: Option<Timestamp>,
    /// HOSTNAME: 1-255 printable US-ASCII (FQDN, IP address, or hostname).
    pub hostname: Option<String>,
    /// APP-NAME: 1-48 printable US-ASCII.
    pub app_name: Option<String>,
    /// PROCID: 1-128 printable US-ASCII.
    pub proc_id: Option<String>,
    /// MSGID: 1-32 printable US-ASCII.
    pub msg_id: Option<String>,
    /// STRUCTURED-DATA elements; empty is the NILVALUE. SD-IDs are unique.
    pub structured_data: Vec<SdElement>,
    /// MSG: opaque octets (without the BOM, see `msg_bom`).
    pub msg: Vec<u8>,
    /// Emit the UTF-8 BOM before MSG, declaring it UTF-8; only valid when `msg` is UTF-8.
    pub msg_bom: bool,
}

impl Message {
    /// A message with no timestamp, no header fields, no structured data, no BOM.
    pub fn new(facility: Facility, severity: Severity, msg: impl Into<Vec<u8>>) -> Self {
        Message {
            facility,
            severity,
            timestamp: None,
            hostname: None,
            app_name: None,
            proc_id: None,
            msg_id: None,
            structured_data: Vec::new(),
            msg: msg.into(),
            msg_bom: false,
        }
    }

    /// Sets the timestamp (builder style).
    pub fn with_timestamp(mut self, timestamp: Timestamp) -> Self {
        self.timestamp = Some(timestamp);
        self
    }

    /// Sets HOSTNAME (builder style).
    pub fn with_hostname(mut self, hostname: impl Into<String>) -> Self {
        self.hostname = Some(hostname.into());
        self
    }

    /// Sets APP-NAME (builder style).
    pub fn with_app_name(mut self, app_name: impl Into<String>) -> Self {
        self.app_name = Some(app_name.into());
        self
    }

    /// Sets PROCID (builder style).
    pub fn with_proc_id(mut self, proc_id: impl Into<String>) -> Self {
        self.proc_id = Some(proc_id.into());
        self
    }

    /// Sets MSGID (builder style).
    pub fn with_msg_id(mut self, msg_id: impl Into<String>) -> Self {
        self.msg_id = Some(msg_id.into());
        self
    }

    /// Appends a STRUCTURED-DATA element (builder style).
    pub fn with_sd_element(mut self, element: SdElement) -> Self {
        self.structured_data.push(element);
        self
    }

    /// Sets whether the UTF-8 BOM precedes MSG (builder style).
    pub fn with_bom(mut self, msg_bom: bool) -> Self {
        self.msg_bom = msg_bom;
        self
    }

    /// The PRI value, `facility * 8 + severity` (0-191).
    pub fn priority(&self) -> u8 {
        priority_value(self.facility, self.severity)
    }

    /// Checks every RFC 5424 rule a sender must keep:
    /// - HOSTNAME 1-255, APP-NAME 1-48, PROCID 1-128, MSGID 1-32 bytes, each printable
    ///   US-ASCII (33-126), and not `"-"` (that is the NILVALUE: use `None`);
    /// - SD-ID and PARAM-NAME 1-32 printable US-ASCII except `=`, space, `]`, `"`;
    ///   an SD-ID is registered ([`REGISTERED_SD_IDS`]) or `name@PEN` (one `@`, a
    ///   non-empty name, PEN = digits with optional `.digits` parts); SD-IDs are unique;
    /// - `msg_bom` only with a UTF-8 `msg`; `msg` may not itself start with the BOM
    ///   bytes unless `msg_bom` is set (it would read back as a BOM).
    ///
    /// Offsets in errors are within the field (for SD-IDs: the element index).
    pub fn validate(&self) -> Result<(), Error> {
        check_header_field(Field::Hostname, self.hostname.as_deref(), MAX_HOSTNAME_LEN)?;
        check_header_field(Field::AppName, self.app_name.as_deref(), MAX_APP_NAME_LEN)?;
        check_header_field(Field::ProcId, self.proc_id.as_deref(), MAX_PROC_ID_LEN)?;
        check_header_field(Field::MsgId, self.msg_id.as_deref(), MAX_MSG_ID_LEN)?;
        for (index, element) in self.structured_data.iter().enumerate() {
            check_sd_name(Field::SdId, element.id.as_bytes())?;
            check_sd_id_form(element.id.as_bytes()).map_err(|reason| Error::InvalidSdId {
                offset: index,
                reason,
            })?;
            if self.structured_data[..index]
                .iter()
                .any(|earlier| earlier.id == element.id)
            {
                return Err(Error::DuplicateSdId { offset: index });
            }
            for param in &element.params {
                check_sd_name(Field::SdParamName, param.name.as_bytes())?;
            }
        }
        if self.msg_bom {
            if let Err(e) = core::str::from_utf8(&self.msg) {
                return Err(Error::BomWithInvalidUtf8 {
                    offset: e.valid_up_to(),
                });
            }
        } else if self.msg.starts_with(BOM) {
            return Err(Error::MsgStartsWithBom);
        }
        Ok(())
    }

    /// Makes any message valid, lossily, by these rules (a valid message is unchanged):
    /// - header fields: every character outside printable US-ASCII becomes `_` (one `_`
    ///   per character), then the value is cut to its maximum length; an empty value or
    ///   `"-"` becomes `None`;
    /// - SD-IDs and PARAM-NAMEs: every character outside printable US-ASCII, and each of
    ///   `=`, space, `]`, `"`, becomes `_`; cut to 32 bytes; empty becomes `_`;
    ///   an SD-ID that is neither registered nor a valid `name@PEN` gets its `@`s turned
    ///   into `_`, is cut to leave room, and gets `@32473` appended ([`SANITIZE_PEN`]);
    /// - duplicate SD-IDs are **merged**: the parameters of a later element with the
    ///   same SD-ID are appended to the first one, which keeps its position;
    /// - `msg_bom` is cleared when `msg` is not UTF-8; when `msg_bom` is clear and
    ///   `msg` starts with the BOM bytes, they are removed and `msg_bom` is set if the
    ///   rest is UTF-8 (so the bytes on the wire stay the same).
    pub fn sanitize(&mut self) {
        sanitize_header_field(&mut self.hostname, MAX_HOSTNAME_LEN);
        sanitize_header_field(&mut self.app_name, MAX_APP_NAME_LEN);
        sanitize_header_field(&mut self.proc_id, MAX_PROC_ID_LEN);
        sanitize_header_field(&mut self.msg_id, MAX_MSG_ID_LEN);
        for element in &mut self.structured_data {
            sanitize_sd_name(&mut element.id);
            if check_sd_id_form(element.id.as_bytes()).is_err() {
                let mut base: String = element
                    .id
                    .chars()
                    .map(|c| if c == '@' { '_' } else { c })
                    .collect();
                // All characters are ASCII now, so any byte index is a char boundary.
                base.truncate(MAX_SD_NAME_LEN - 1 - SANITIZE_PEN.len());
                base.push('@');
                base.push_str(SANITIZE_PEN);
                element.id = base;
            }
            for param in &mut element.params {
                sanitize_sd_name(&mut param.name);
            }
        }
        let mut index = 0;
        while index < self.structured_data.len() {
            let first = self.structured_data[..index]
                .iter()
                .position(|earlier| earlier.id == self.structured_data[index].id);
            match first {
                Some(first) => {
                    let duplicate = self.structured_data.remove(index);
                    self.structured_data[first].params.extend(duplicate.params);
                }
                None => index += 1,
            }
        }
        if self.msg_bom && core::str::from_utf8(&self.msg).is_err() {
            self.msg_bom = false;
        }
        while !self.msg_bom && self.msg.starts_with(BOM) {
            self.msg.drain(..BOM.len());
            self.msg_bom = core::str::from_utf8(&self.msg).is_ok();
        }
    }
}

/// Whether `b` is PRINTUSASCII (33-126).
#[inline]
pub(crate) fn is_print_ascii(b: u8) -> bool {
    (33..=126).contains(&b)
}

/// Whether `b` may appear in an SD-NAME.
#[inline]
pub(crate) fn is_sd_name_byte(b: u8) -> bool {
    is_print_ascii(b) && !matches!(b, b'=' | b']' | b'"')
}

fn check_header_field(field: Field, value: Option<&str>, max: usize) -> Result<(), Error> {
    let Some(value) = value else {
        return Ok(());
    };
    let bytes = value.as_bytes();
    if bytes.is_empty() {
        return Err(Error::FieldEmpty { field });
    }
    if bytes.len() > max {
        return Err(Error::FieldTooLong {
            field,
            len: bytes.len(),
            max,
        });
    }
    if let Some(offset) = bytes.iter().position(|&b| !is_print_ascii(b)) {
        return Err(Error::ForbiddenByte {
            field,
            offset,
            byte: bytes.get(offset).copied().unwrap_or(0),
        });
    }
    if bytes == b"-" {
        return Err(Error::FieldIsNilValue { field });
    }
    Ok(())
}

/// Checks the SD-NAME syntax: 1-32 printable US-ASCII except `=`, space, `]`, `"`.
pub(crate) fn check_sd_name(field: Field, bytes: &[u8]) -> Result<(), Error> {
    if bytes.is_empty() {
        return Err(Error::FieldEmpty { field });
    }
    if bytes.len() > MAX_SD_NAME_LEN {
        return Err(Error::FieldTooLong {
            field,
            len: bytes.len(),
            max: MAX_SD_NAME_LEN,
        });
    }
    if let Some(offset) = bytes.iter().position(|&b| !is_sd_name_byte(b)) {
        return Err(Error::ForbiddenByte {
            field,
            offset,
            byte: bytes.get(offset).copied().unwrap_or(0),
        });
    }
    Ok(())
}

/// Checks the SD-ID form (RFC 5424 6.3.2): registered, or `name@PEN`.
pub(crate) fn check_sd_id_form(id: &[u8]) -> Result<(), &'static str> {
    match id.iter().position(|&b| b == b'@') {
        None => {
            if REGISTERED_SD_IDS.iter().any(|r| r.as_bytes() == id) {
                Ok(())
            } else {
                Err("an SD-ID without '@' must be IANA-registered (timeQuality, origin, meta, ...)")
            }
        }
        Some(at) => {
            let (name, pen) = (&id[..at], &id[at + 1..]);
            if name.is_empty() {
                return Err("empty name before '@'");
            }
            if pen.is_empty()
                || pen
                    .split(|&b| b == b'.')
                    .any(|part| part.is_empty() || !part.iter().all(u8::is_ascii_digit))
            {
                return Err(
                    "the part after '@' must be a private enterprise number (digits, optional .digits)",
                );
            }
            Ok(())
        }
    }
}

fn sanitize_header_field(value: &mut Option<String>, max: usize) {
    let Some(text) = value.as_mut() else {
        return;
    };
    if !text.bytes().all(is_print_ascii) {
        *text = text
            .chars()
            .map(|c| {
                if c.is_ascii() && is_print_ascii(c as u8) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
    }
    text.truncate(max);
    if text.is_empty() || text == "-" {
        *value = None;
    }
}

fn sanitize_sd_name(name: &mut String) {
    if !name.bytes().all(is_sd_name_byte) {
        *name = name
            .chars()
            .map(|c| {
                if c.is_ascii() && is_sd_name_byte(c as u8) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
    }
    name.truncate(MAX_SD_NAME_LEN);
    if name.is_empty() {
        name.push('_');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::vec;

    fn base() -> Message {
        Message::new(Facility::User, Severity::Notice, "hi")
    }

    #[test]
    fn header_limits() {
        for (len, ok) in [(255, true), (256, false)] {
            let m = base().with_hostname("h".repeat(len));
            assert_eq!(m.validate().is_ok(), ok, "hostname {len}");
        }
        for (len, ok) in [(48, true), (49, false)] {
            assert_eq!(base().with_app_name("a".repeat(len)).validate().is_ok(), ok);
        }
        for (len, ok) in [(128, true), (129, false)] {
            assert_eq!(base().with_proc_id("p".repeat(len)).validate().is_ok(), ok);
        }
        for (len, ok) in [(32, true), (33, false)] {
            assert_eq!(base().with_msg_id("m".repeat(len)).validate().is_ok(), ok);
        }
        assert_eq!(
            base().with_msg_id("m".repeat(33)).validate(),
            Err(Error::FieldTooLong {
                field: Field::MsgId,
                len: 33,
                max: 32
            })
        );
        assert_eq!(
            base().with_hostname("").validate(),
            Err(Error::FieldEmpty {
                field: Field::Hostname
            })
        );
        assert_eq!(
            base().with_app_name("-").validate(),
            Err(Error::FieldIsNilValue {
                field: Field::AppName
            })
        );
        assert_eq!(
            base().with_hostname("a b").validate(),
            Err(Error::ForbiddenByte {
                field: Field::Hostname,
                offset: 1,
                byte: b' '
            })
        );
        assert!(base().with_hostname("h\u{e9}").validate().is_err());
        assert!(base().with_hostname("a\x7f").validate().is_err());
    }

    #[test]
    fn sd_rules() {
        let ok = base().with_sd_element(SdElement::new("a@32473.1").with_param("k", "v"));
        assert!(ok.validate().is_ok());
        assert!(
            base()
                .with_sd_element(SdElement::new("origin"))
                .validate()
                .is_ok()
        );
        for bad in [
            "unregistered",
            "@1",
            "a@",
            "a@x",
            "a@1..2",
            "a@1@2",
            "a b@1",
            "a=b@1",
            "a]@1",
            "a\"@1",
            "",
        ] {
            assert!(
                base()
                    .with_sd_element(SdElement::new(bad))
                    .validate()
                    .is_err(),
                "{bad}"
            );
        }
        assert!(
            base()
                .with_sd_element(SdElement::new(format!("{}@1", "x".repeat(30))))
                .validate()
                .is_ok()
        );
        assert!(
            base()
                .with_sd_element(SdElement::new(format!("{}@1", "x".repeat(31))))
                .validate()
                .is_err()
        );
        let dup = base()
            .with_sd_element(SdElement::new("a@1"))
            .with_sd_element(SdElement::new("a@1"));
        assert_eq!(dup.validate(), Err(Error::DuplicateSdId { offset: 1 }));
        let bad_param = base().with_sd_element(SdElement::new("a@1").with_param("k=", "v"));
        assert!(matches!(
            bad_param.validate(),
            Err(Error::ForbiddenByte {
                field: Field::SdParamName,
                offset: 1,
                ..
            })
        ));
    }

    #[test]
    fn bom_rules() {
        let mut m = Message::new(Facility::User, Severity::Notice, vec![0xff, 0xfe]).with_bom(true);
        assert_eq!(m.validate(), Err(Error::BomWithInvalidUtf8 { offset: 0 }));
        m.sanitize();
        assert!(!m.msg_bom);
        assert!(m.validate().is_ok());
        let mut lead = Message::new(
            Facility::User,
            Severity::Notice,
            b"\xEF\xBB\xBFhello".to_vec(),
        );
        assert_eq!(lead.validate(), Err(Error::MsgStartsWithBom));
        lead.sanitize();
        assert!(lead.msg_bom);
        assert_eq!(lead.msg, b"hello");
    }

    #[test]
    fn sanitize_rules() {
        let mut m = base()
            .with_hostname("h\u{e9} x")
            .with_app_name("a".repeat(60))
            .with_proc_id("-")
            .with_msg_id("")
            .with_sd_element(SdElement::new("my id").with_param("a=b", "v1"))
            .with_sd_element(SdElement::new("x@1").with_param("", "v"))
            .with_sd_element(SdElement::new("my_id@32473").with_param("c", "v2"));
        m.sanitize();
        assert_eq!(m.hostname.as_deref(), Some("h__x"));
        assert_eq!(m.app_name.as_deref().map(str::len), Some(48));
        assert_eq!(m.proc_id, None);
        assert_eq!(m.msg_id, None);
        assert_eq!(m.structured_data.len(), 2);
        assert_eq!(m.structured_data[0].id, "my_id@32473");
        assert_eq!(
            m.structured_data[0].params,
            vec![SdParam::new("a_b", "v1"), SdParam::new("c", "v2")]
        );
        assert_eq!(m.structured_data[1].params[0].name, "_");
        assert!(m.validate().is_ok());
        let before = m.clone();
        m.sanitize();
        assert_eq!(m, before, "sanitize is idempotent on valid messages");
    }
}
