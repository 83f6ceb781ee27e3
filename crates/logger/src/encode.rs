//! Turns queued [`Record`]s into syslog bytes on the sender thread.
//!
//! The header fields that never change (facility, hostname, app-name, procid) live
//! in one template [`Message`] that is reused for every record, so encoding does not
//! allocate once the buffers have grown. Every message is sanitised with
//! [`Message::sanitize`] (the documented lossy rule of `flotilla-syslog`), because a
//! log call must never fail: a bad field name is cleaned, not refused.
//!
//! Every RFC 5424 message ends its structured data with the IANA-registered element
//! `[meta sequenceId="N"]` (RFC 5424 §7.3.1): N counts the messages this logger
//! instance encoded, from 1 up to 2147483647, then wraps to 1. A log service uses it
//! to recognise a RELP resend after a failover (the RELP session keeps the encoded
//! bytes, so a resent message is byte-identical, number included). A record encoded
//! again after a failed plain TCP/TLS write gets a new number (stream transports do
//! not promise exactly-once). RFC 3164 has no structured data: messages in that format
//! carry no sequence id (and do not use up a number); pre-encoded messages (relayed
//! by logd) are sent as they are, and a record that brings its own `meta sequenceId`
//! keeps it (`flotilla log --count` numbers its messages itself).

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use flotilla_syslog::{Message, Rfc3164Options, SdElement, SdParam, Timestamp};

use crate::config::Format;
use crate::record::Record;

/// Reusable encoder state.
pub(crate) struct Encoder {
    template: Message,
    fields_sd_id: String,
    rfc3164: Rfc3164Options,
    /// The last `meta sequenceId` given (0: none yet).
    sequence_id: u32,
    /// The `[meta sequenceId="N"]` element, reused.
    meta: SdElement,
}

/// The largest `meta sequenceId` (RFC 5424 §7.3.1); the next one is 1 again.
pub(crate) const MAX_SEQUENCE_ID: u32 = 2_147_483_647;

impl Encoder {
    /// An encoder for messages from `app_name` on `hostname`.
    pub fn new(
        facility: flotilla_syslog::Facility,
        hostname: Option<String>,
        app_name: Option<String>,
        proc_id: Option<String>,
        fields_sd_id: String,
    ) -> Self {
        let mut template = Message::new(facility, flotilla_syslog::Severity::Notice, Vec::new());
        template.hostname = hostname;
        template.app_name = app_name;
        template.proc_id = proc_id;
        // Header fields are sanitised once here; per message only the variable parts.
        template.sanitize();
        Self {
            template,
            fields_sd_id,
            rfc3164: Rfc3164Options::default(),
            sequence_id: 0,
            meta: meta_element(),
        }
    }

    /// The next sequence id: 1, 2, …, [`MAX_SEQUENCE_ID`], 1, …
    fn next_sequence_id(&mut self) -> u32 {
        self.sequence_id = if self.sequence_id >= MAX_SEQUENCE_ID {
            1
        } else {
            self.sequence_id + 1
        };
        self.sequence_id
    }

    /// Appends the encoded `record` in `format` to `out` (no framing).
    pub fn encode(&mut self, record: &Record, format: Format, out: &mut Vec<u8>) {
        if record.pre_encoded {
            out.extend_from_slice(record.text.as_bytes());
            return;
        }
        let m = &mut self.template;
        m.severity = record.severity;
        m.timestamp = record.time.and_then(to_timestamp);
        match &record.msg_id {
            Some(id) => {
                let slot = m.msg_id.get_or_insert_with(String::new);
                slot.clear();
                slot.push_str(id);
            }
            None => m.msg_id = None,
        }
        m.msg.clear();
        m.msg.extend_from_slice(record.message().as_bytes());
        m.msg_bom = false;
        fill_structured_data(&mut m.structured_data, &self.fields_sd_id, record);
        // A sender that numbers its own messages (its own `meta sequenceId`) keeps its
        // numbers: two sequenceId parameters in one element would be ambiguous.
        let with_meta = format == Format::Rfc5424
            && !self
                .template
                .structured_data
                .iter()
                .any(|e| e.id == "meta" && e.params.iter().any(|p| p.name == "sequenceId"));
        if with_meta {
            // The element is kept between messages (no allocation): lent to the
            // template for this message and taken back below.
            let n = self.next_sequence_id();
            let value = &mut self.meta.params[0].value;
            value.clear();
            let _ = write!(value, "{n}");
            self.template
                .structured_data
                .push(std::mem::replace(&mut self.meta, empty_element()));
        }
        let m = &mut self.template;
        m.sanitize();
        let before = out.len();
        let result = match format {
            Format::Rfc5424 => flotilla_syslog::emit_5424(m, out),
            Format::Rfc3164 => flotilla_syslog::emit_3164(m, &self.rfc3164, out),
        };
        if result.is_err() {
            // Unreachable after sanitize(); if it ever happens, send the text alone
            // rather than lose the message.
            out.truncate(before);
            m.structured_data.clear();
            m.msg_id = None;
            let _ = flotilla_syslog::emit_5424(m, out);
        }
        if with_meta && let Some(meta) = self.template.structured_data.pop() {
            self.meta = meta;
        }
        if self.meta.id != "meta" || self.meta.params.len() != 1 {
            self.meta = meta_element();
        }
    }
}

/// Converts a wall-clock time to a syslog timestamp (UTC, microseconds emitted).
fn to_timestamp(time: SystemTime) -> Option<Timestamp> {
    let since = time.duration_since(UNIX_EPOCH).ok()?;
    let secs = i64::try_from(since.as_secs()).ok()?;
    Timestamp::from_unix(secs, since.subsec_nanos()).ok()
}

/// Rewrites `sd` in place to hold the record's fields and extra elements,
/// reusing the existing strings' capacity.
fn fill_structured_data(sd: &mut Vec<SdElement>, fields_sd_id: &str, record: &Record) {
    let mut used = 0;
    if !record.fields.is_empty() {
        let element = slot(sd, used);
        element.id.clear();
        element.id.push_str(fields_sd_id);
        let mut n = 0;
        for (name, value) in record.fields() {
            let param = param_slot(&mut element.params, n);
            param.name.clear();
            param.name.push_str(name);
            param.value.clear();
            param.value.push_str(value);
            n += 1;
        }
        element.params.truncate(n);
        used += 1;
    }
    for extra in &record.extra_sd {
        let element = slot(sd, used);
        element.id.clone_from(&extra.id);
        element.params.clone_from(&extra.params);
        used += 1;
    }
    sd.truncate(used);
}

/// `[meta sequenceId=""]`, to be filled in.
fn meta_element() -> SdElement {
    SdElement {
        id: "meta".to_string(),
        params: vec![SdParam {
            name: "sequenceId".to_string(),
            value: String::with_capacity(10),
        }],
    }
}

/// A placeholder that allocates nothing.
fn empty_element() -> SdElement {
    SdElement {
        id: String::new(),
        params: Vec::new(),
    }
}

fn slot(sd: &mut Vec<SdElement>, index: usize) -> &mut SdElement {
    if sd.len() <= index {
        sd.push(SdElement {
            id: String::new(),
            params: Vec::new(),
        });
    }
    let last = sd.len() - 1;
    &mut sd[index.min(last)]
}

fn param_slot(params: &mut Vec<SdParam>, index: usize) -> &mut SdParam {
    if params.len() <= index {
        params.push(SdParam {
            name: String::new(),
            value: String::new(),
        });
    }
    let last = params.len() - 1;
    &mut params[index.min(last)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_syslog::{Facility, Severity};

    fn encoder() -> Encoder {
        Encoder::new(
            Facility::Local3,
            Some("host-1".into()),
            Some("svc".into()),
            Some("42".into()),
            "fields@32473".into(),
        )
    }

    #[test]
    fn record_with_fields_becomes_structured_data() {
        let mut r = Record::new(Severity::Warning, None, "disk low".into());
        r.text.push_str("93");
        r.close_field(crate::record::FieldName::Static("percent"));
        r.text.push_str("a\"b]c");
        r.close_field(crate::record::FieldName::Static("bad name"));
        let mut out = Vec::new();
        encoder().encode(&r, Format::Rfc5424, &mut out);
        let text = String::from_utf8(out).unwrap();
        // local3 (19) * 8 + warning (4) = 156
        assert!(text.starts_with("<156>1 - host-1 svc 42 - "), "{text}");
        assert!(text.contains("percent=\"93\""), "{text}");
        assert!(text.contains("=\"a\\\"b\\]c\""), "{text}");
        assert!(text.ends_with(" disk low"), "{text}");
        let parsed = flotilla_syslog::parse_strict(text.as_bytes()).unwrap();
        assert_eq!(parsed.to_owned().structured_data[0].params.len(), 2);
    }

    #[test]
    fn buffers_are_reused_between_records() {
        let mut enc = encoder();
        let mut with = Record::new(Severity::Notice, None, "one".into());
        with.text.push('v');
        with.close_field(crate::record::FieldName::Static("k"));
        let without = Record::new(Severity::Notice, None, "two".into());
        let mut out = Vec::new();
        enc.encode(&with, Format::Rfc5424, &mut out);
        out.clear();
        enc.encode(&without, Format::Rfc5424, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "<157>1 - host-1 svc 42 - [meta sequenceId=\"2\"] two");
    }

    #[test]
    fn every_rfc5424_message_carries_a_sequence_id_that_wraps() {
        let mut enc = encoder();
        let mut r = Record::new(Severity::Informational, None, "hello".into());
        r.text.push('v');
        r.close_field(crate::record::FieldName::Static("k"));
        let seq = |enc: &mut Encoder, format| {
            let mut out = Vec::new();
            enc.encode(&r, format, &mut out);
            let parsed = flotilla_syslog::parse_strict(&out).unwrap().to_owned();
            assert_eq!(parsed.structured_data[0].id, "fields@32473");
            parsed
                .structured_data
                .iter()
                .find(|e| e.id == "meta")
                .map(|e| {
                    assert_eq!(e.params.len(), 1);
                    assert_eq!(e.params[0].name, "sequenceId");
                    e.params[0].value.parse::<u32>().unwrap()
                })
        };
        assert_eq!(seq(&mut enc, Format::Rfc5424), Some(1));
        assert_eq!(seq(&mut enc, Format::Rfc5424), Some(2));
        // RFC 3164 has no structured data: no number is used up.
        let mut out = Vec::new();
        enc.encode(&r, Format::Rfc3164, &mut out);
        assert!(!String::from_utf8(out).unwrap().contains("sequenceId"));
        assert_eq!(seq(&mut enc, Format::Rfc5424), Some(3));
        enc.sequence_id = MAX_SEQUENCE_ID - 1;
        assert_eq!(seq(&mut enc, Format::Rfc5424), Some(MAX_SEQUENCE_ID));
        assert_eq!(seq(&mut enc, Format::Rfc5424), Some(1));
        // A sender's own `meta` element is merged with ours, never duplicated.
        let mut own = Record::new(Severity::Informational, None, "x".into());
        own.extra_sd.push(SdElement {
            id: "meta".into(),
            params: vec![SdParam {
                name: "language".into(),
                value: "en".into(),
            }],
        });
        let mut out = Vec::new();
        enc.encode(&own, Format::Rfc5424, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("[meta language=\"en\" sequenceId=\"2\"]"),
            "{text}"
        );
        assert_eq!(seq(&mut enc, Format::Rfc5424), Some(3));
    }

    #[test]
    fn rfc3164_output() {
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_065_910_455); // 2003-10-11 22:14:15 UTC
        let r = Record::new(Severity::Critical, Some(t), "su failed".into());
        let mut out = Vec::new();
        encoder().encode(&r, Format::Rfc3164, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "<154>Oct 11 22:14:15 host-1 svc[42]: su failed");
    }
}
