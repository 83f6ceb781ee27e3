//! Server-Sent Events, the receiving side (the WHATWG rules for lines, fields and
//! events), written once for both readers of logd's tails: `flotilla logs tail -f` and a
//! node following its peers' tails. Sans-I/O: lines in, events out.

/// One event: its type (`message` when unnamed is left empty here), its id, its data
/// (several `data:` lines joined with `\n`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field (empty when absent).
    pub event: String,
    /// The `id:` field, when given.
    pub id: Option<String>,
    /// The `data:` fields, joined with `\n`.
    pub data: String,
}

/// Builds events from lines.
#[derive(Debug, Default)]
pub struct SseParser {
    event: SseEvent,
    has_fields: bool,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        SseParser::default()
    }

    /// Takes one line (its end of line may be left on); returns the event that a blank
    /// line completes. Comments (`:` first) are skipped.
    pub fn line(&mut self, line: &str) -> Option<SseEvent> {
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            if !self.has_fields {
                return None;
            }
            self.has_fields = false;
            return Some(std::mem::take(&mut self.event));
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        self.has_fields = true;
        match field {
            "event" => self.event.event = value.to_string(),
            "id" => self.event.id = Some(value.to_string()),
            "data" => {
                if !self.event.data.is_empty() {
                    self.event.data.push('\n');
                }
                self.event.data.push_str(value);
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_from_lines() {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for line in [
            ": keep-alive",
            "",
            "event: record",
            "id: 7",
            "data: {\"a\":1}",
            "data: more",
            "",
            "data:x\r\n",
            "\r\n",
        ] {
            out.extend(p.line(line));
        }
        assert_eq!(
            out,
            vec![
                SseEvent {
                    event: "record".into(),
                    id: Some("7".into()),
                    data: "{\"a\":1}\nmore".into(),
                },
                SseEvent {
                    event: String::new(),
                    id: None,
                    data: "x".into(),
                },
            ]
        );
    }
}
