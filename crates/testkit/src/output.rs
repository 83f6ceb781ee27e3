//! Reading a receiver's output file: one JSON object per received message.

use crate::Error;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

/// How often the output file is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// The complete lines (each ending in LF) of `path`, as raw bytes, without the LF.
/// A missing file has no lines; a trailing partial line is not returned yet.
pub fn raw_lines(path: &Path) -> Result<Vec<Vec<u8>>, Error> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(Error::io(format!("reading {}", path.display()))(error)),
    };
    let mut lines: Vec<Vec<u8>> = bytes
        .split(|byte| *byte == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    // The piece after the last LF is incomplete (or empty).
    lines.pop();
    Ok(lines)
}

/// The complete lines of `path`, each parsed as JSON. Bytes that are not UTF-8 (a peer
/// may copy them raw into its JSON) are replaced with U+FFFD; use [`raw_lines`] to see
/// them. A record glued after one torn by a killed receiver is recovered (see
/// [`record_after_a_kill`]); any other line that is not JSON is an error.
pub fn json_lines(path: &Path) -> Result<Vec<Value>, Error> {
    raw_lines(path)?
        .iter()
        .enumerate()
        .map(|(index, line)| {
            record_after_a_kill(line).ok_or_else(|| {
                let text = String::from_utf8_lossy(line);
                let reason = serde_json::from_str::<Value>(&text)
                    .err()
                    .map_or_else(String::new, |error| error.to_string());
                Error::BadOutput {
                    path: path.to_path_buf(),
                    line_number: index + 1,
                    reason,
                    line: text.into_owned(),
                }
            })
        })
        .collect()
}

/// The JSON record of one output line written by a receiver that may have been killed
/// (SIGKILL) mid-write: the killed process leaves a torn record without its LF, and the
/// restarted one appends its next record to it. Returns the line's record when it parses
/// whole; otherwise the complete record glued after the torn piece, if there is one; `None`
/// for a line holding no complete record. The torn piece itself is lost, as it is on disk.
pub fn record_after_a_kill(line: &[u8]) -> Option<Value> {
    let text = String::from_utf8_lossy(line);
    if let Ok(value) = serde_json::from_str(&text) {
        return Some(value);
    }
    // The first `{"` after the start from which the rest parses whole is the start of the
    // glued record (an inner object would leave the outer record's `}` unbalanced).
    text.match_indices("{\"")
        .filter(|(at, _)| *at > 0)
        .find_map(|(at, _)| serde_json::from_str(&text[at..]).ok())
}

/// Polls `path` until it has at least `wanted` complete JSON lines, and returns all of
/// them (possibly more than `wanted`); [`Error::Timeout`] after `timeout`.
pub fn wait_for_json_lines(
    path: &Path,
    wanted: usize,
    timeout: Duration,
) -> Result<Vec<Value>, Error> {
    let started = Instant::now();
    loop {
        let lines = json_lines(path)?;
        if lines.len() >= wanted {
            return Ok(lines);
        }
        if started.elapsed() >= timeout {
            return Err(Error::Timeout {
                path: path.to_path_buf(),
                waited: started.elapsed(),
                wanted,
                got: lines.len(),
                lines: lines
                    .iter()
                    .map(Value::to_string)
                    .collect::<Vec<_>>()
                    .join("\n"),
            });
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_record_glued_after_a_torn_one_is_recovered() {
        let whole = br#"{"msg":"n=1","sd":{"a":"b"}}"#;
        assert_eq!(record_after_a_kill(whole).unwrap()["msg"], "n=1");
        let glued = br#"{"msg":"n=2","sd":{"a{"msg":"n=3","sd":{"a":"b"}}"#;
        assert_eq!(record_after_a_kill(glued).unwrap()["msg"], "n=3");
        assert!(record_after_a_kill(br#"{"msg":"n=4","s"#).is_none());
    }

    #[test]
    fn partial_last_line_is_not_returned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        assert!(json_lines(&path).unwrap().is_empty());
        std::fs::write(&path, b"{\"a\":1}\n{\"b\":").unwrap();
        let lines = json_lines(&path).unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["a"], 1);
        let error = wait_for_json_lines(&path, 2, Duration::from_millis(50)).unwrap_err();
        assert!(matches!(
            error,
            Error::Timeout {
                got: 1,
                wanted: 2,
                ..
            }
        ));
    }

    #[test]
    fn non_json_line_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        std::fs::write(&path, b"{\"a\":1}\nnot json\n").unwrap();
        let error = json_lines(&path).unwrap_err();
        assert!(matches!(error, Error::BadOutput { line_number: 2, .. }));
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        std::fs::write(&path, b"{\"msg\":\"a\xffb\"}\n").unwrap();
        let lines = json_lines(&path).unwrap();
        assert_eq!(lines[0]["msg"], "a\u{fffd}b");
        assert_eq!(raw_lines(&path).unwrap()[0], b"{\"msg\":\"a\xffb\"}");
    }
}
