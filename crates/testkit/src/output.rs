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
/// them.
pub fn json_lines(path: &Path) -> Result<Vec<Value>, Error> {
    raw_lines(path)?
        .iter()
        .enumerate()
        .map(|(index, line)| {
            let text = String::from_utf8_lossy(line);
            serde_json::from_str(&text).map_err(|error| Error::BadOutput {
                path: path.to_path_buf(),
                line_number: index + 1,
                reason: error.to_string(),
                line: text.into_owned(),
            })
        })
        .collect()
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
