//! The queued form of one log message: what a log call captures on the application
//! thread, in as few allocations as possible, for the sender thread to encode.

use std::borrow::Cow;
use std::time::SystemTime;

use flotilla_syslog::{SdElement, Severity};

/// The name of one field: a `&'static str` (tracing field names), or inline in
/// the record's text buffer just before the value (names that are only borrowed,
/// such as `log` key-values), so that no field costs an allocation of its own.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FieldName {
    /// A static name.
    Static(&'static str),
    /// The name ends at this offset of `text`; it starts where the previous field
    /// (or the message) ends, and the value follows it.
    Inline(usize),
}

/// One message waiting in the queue.
///
/// The text, the field values and any borrowed field names share one `String`
/// (`text`): the message is `text[..msg_len]`, then each field's optional inline
/// name and its value follow in order. A log call with two fields therefore costs
/// two allocations (the text and the field list).
#[derive(Debug)]
pub(crate) struct Record {
    /// Severity of the message.
    pub severity: Severity,
    /// When the log call happened; `None` when the clock is not used.
    pub time: Option<SystemTime>,
    /// MSGID for the logger's own messages (`BOOT`, `CRASH`, ...).
    pub msg_id: Option<Cow<'static, str>>,
    /// Message text followed by the field names and values.
    pub text: String,
    /// Length of the message text within `text`.
    pub msg_len: usize,
    /// Field names and the end offset of each value within `text`.
    pub fields: Vec<(FieldName, usize)>,
    /// Extra structured-data elements (boot, crash, heartbeat messages).
    pub extra_sd: Vec<SdElement>,
    /// `text` is an already encoded message (handed back by a RELP session when
    /// failing over to a collector of another transport): send it as it is.
    pub pre_encoded: bool,
}

impl Record {
    /// A record with the given message text and no fields.
    pub fn new(severity: Severity, time: Option<SystemTime>, text: String) -> Self {
        let msg_len = text.len();
        Self {
            severity,
            time,
            msg_id: None,
            text,
            msg_len,
            fields: Vec::new(),
            extra_sd: Vec::new(),
            pre_encoded: false,
        }
    }

    /// A record holding an already encoded message.
    pub fn pre_encoded(bytes: Vec<u8>) -> Self {
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        let mut record = Self::new(Severity::Notice, None, text);
        record.pre_encoded = true;
        record
    }

    /// The message text.
    pub fn message(&self) -> &str {
        self.text.get(..self.msg_len).unwrap_or(&self.text)
    }

    /// Iterates over `(name, value)` of the fields.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut start = self.msg_len;
        self.fields.iter().map(move |(name, end)| {
            let (name, value_start) = match *name {
                FieldName::Static(name) => (name, start),
                FieldName::Inline(name_end) => {
                    (self.text.get(start..name_end).unwrap_or(""), name_end)
                }
            };
            let value = self.text.get(value_start..*end).unwrap_or("");
            start = *end;
            (name, value)
        })
    }

    /// Appends a borrowed field name to the text; the value must follow, then
    /// [`Record::close_field`] with the returned name.
    pub fn push_inline_name(&mut self, name: &str) -> FieldName {
        self.text.push_str(name);
        FieldName::Inline(self.text.len())
    }

    /// Ends a field whose value was just written to `text`.
    pub fn close_field(&mut self, name: FieldName) {
        self.fields.push((name, self.text.len()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_share_the_text_buffer() {
        let mut r = Record::new(Severity::Notice, None, "hello".to_owned());
        r.text.push_str("42");
        r.close_field(FieldName::Static("user"));
        let name = r.push_inline_name("action");
        r.text.push_str("lo\"gin");
        r.close_field(name);
        r.close_field(FieldName::Static("empty"));
        let name = r.push_inline_name("inline-empty");
        r.close_field(name);
        assert_eq!(r.message(), "hello");
        let fields: Vec<_> = r.fields().collect();
        assert_eq!(
            fields,
            vec![
                ("user", "42"),
                ("action", "lo\"gin"),
                ("empty", ""),
                ("inline-empty", "")
            ]
        );
    }
}
