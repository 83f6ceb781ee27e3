//! Turns queued [`Record`]s into syslog bytes on the sender thread.
//!
//! The header fields that never change (facility, hostname, app-name, procid) live
//! in one template [`Message`] that is reused for every record, so encoding does not
//! allocate once the buffers have grown. Every message is sanitised with
//! [`Message::sanitize`] (the documented lossy rule of `flotilla-syslog`), because a
//! log call must never fail: a bad field name is cleaned, not refused.

use std::time::{SystemTime, UNIX_EPOCH};

use flotilla_syslog::{Message, Rfc3164Options, SdElement, SdParam, Timestamp};

use crate::config::Format;
use crate::record::Record;

/// Reusable encoder state.
pub(crate) struct Encoder {
    template: Message,
    fields_sd_id: String,
    rfc3164: Rfc3164Options,
}

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
        }
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
        assert_eq!(text, "<157>1 - host-1 svc 42 - - two");
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
