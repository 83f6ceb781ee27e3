//! What rsyslog and syslog-ng handles share: a private folder, an output file of JSON
//! lines, and the peer process.

use crate::Error;
use crate::output;
use crate::process::PeerProcess;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tempfile::TempDir;

/// A running syslog receiver. Field order matters: the process is killed before the
/// folder is deleted.
#[derive(Debug)]
pub(crate) struct Receiver {
    pub process: PeerProcess,
    pub output_path: PathBuf,
    pub dir: TempDir,
}

impl Receiver {
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn output_path(&self) -> &Path {
        &self.output_path
    }

    pub fn lines(&self) -> Result<Vec<Value>, Error> {
        output::json_lines(&self.output_path)
    }

    pub fn raw_lines(&self) -> Result<Vec<Vec<u8>>, Error> {
        output::raw_lines(&self.output_path)
    }

    pub fn wait_for_lines(&self, wanted: usize, timeout: Duration) -> Result<Vec<Value>, Error> {
        output::wait_for_json_lines(&self.output_path, wanted, timeout)
    }
}

/// Rejects a path that cannot be quoted safely in a peer's configuration file.
pub(crate) fn quotable_path(path: &Path) -> Result<String, Error> {
    let text = path
        .to_str()
        .ok_or_else(|| Error::Config(format!("path is not UTF-8: {}", path.display())))?;
    if text
        .chars()
        .any(|c| matches!(c, '"' | '\\' | '\'' | '\n' | '\r' | '\0'))
    {
        return Err(Error::Config(format!(
            "path contains a quote, backslash or control character: {text:?}"
        )));
    }
    Ok(text.to_string())
}
