//! The queued form of one log message: what a log call captures on the application
//! thread, in as few allocations as possible, for the sender thread to encode.

use std::borrow::Cow;
use std::time::SystemTime;

use flotilla_syslog::{SdElement, Severity};

/// One message waiting in the queue.
///
/// The text and every field value share one `String` (`text`): the message is
/// `text[..msg_len]`, field `i` is `text[fields[i-1].end..fields[i].end]`. A log call
/// with two fields therefore costs two allocations (the text and the field list).
#[derive(Debug)]
pub(crate) struct Record {
    /// Severity of the message.
    pub severity: Severity,
    /// When the log call happened; `None` when the clock is not used.
    pub time: Option<SystemTime>,
    /// MSGID for the logger's own messages (`BOOT`, `CRASH`, ...).
    pub msg_id: Option<Cow<'static, str>>,
    /// Message text followed by the field values.
    pub text: String,
    /// Length of the message text within `text`.
    pub msg_len: usize,
    /// Field names and the end offset of each value within `text`.
    pub fields: Vec<(Cow<'static, str>, usize)>,
    /// Extra structured-data elements (boot, crash, heartbeat messages).
    pub extra_sd: Vec<SdElement>,
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
        }
    }

    /// The message text.
    pub fn message(&self) -> &str {
        self.text.get(..self.msg_len).unwrap_or(&self.text)
    }

    /// Iterates over `(name, value)` of the fields.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut start = self.msg_len;
        self.fields.iter().map(move |(name, end)| {
            let value = self.text.get(start..*end).unwrap_or("");
            start = *end;
            (name.as_ref(), value)
        })
    }

    /// Appends a field whose value is already in `text` after the previous one.
    pub fn close_field(&mut self, name: Cow<'static, str>) {
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
        r.close_field(Cow::Borrowed("user"));
        r.text.push_str("lo\"gin");
        r.close_field(Cow::Owned("action".to_owned()));
        r.close_field(Cow::Borrowed("empty"));
        assert_eq!(r.message(), "hello");
        let fields: Vec<_> = r.fields().collect();
        assert_eq!(
            fields,
            vec![("user", "42"), ("action", "lo\"gin"), ("empty", "")]
        );
    }
}
