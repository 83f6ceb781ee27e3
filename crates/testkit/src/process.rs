//! A peer process: spawned in the foreground with its output going to files in its
//! folder, waited on until all its ports are bound, killed and reaped on drop.

use crate::ports::{Listener, Transport, is_bound};
use crate::{Error, READY_TIMEOUT};
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How often readiness and exit are polled.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How long a graceful stop (SIGTERM) may take before the process is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How much of the peer's log is quoted in errors.
const LOG_TAIL_BYTES: u64 = 4096;

/// How to (re)start one peer.
#[derive(Debug, Clone)]
pub(crate) struct Spawn {
    /// Name used in errors.
    pub peer: &'static str,
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// The ports it must bind before it counts as ready.
    pub listeners: Vec<Listener>,
    /// Its stdout and stderr go (appended) to this file.
    pub log_path: PathBuf,
    /// Files removed before every launch (e.g. a pid file left by a killed process).
    pub stale_files: Vec<PathBuf>,
}

/// A running (or killed, restartable) peer process.
#[derive(Debug)]
pub(crate) struct PeerProcess {
    spawn: Spawn,
    child: Option<Child>,
}

impl PeerProcess {
    /// Spawns the peer and waits until it is ready.
    pub fn start(spawn: Spawn) -> Result<Self, Error> {
        let mut process = PeerProcess { spawn, child: None };
        process.launch()?;
        Ok(process)
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The end of the peer's stdout/stderr log.
    pub fn log_tail(&self) -> String {
        log_tail(&self.spawn.log_path)
    }

    /// Kills the process (SIGKILL) and reaps it. No-op when not running.
    pub fn kill(&mut self) -> Result<(), Error> {
        if let Some(mut child) = self.child.take() {
            match child.kill() {
                Ok(()) => {}
                // Already exited: reaping below is all that is left.
                Err(error) if error.kind() == std::io::ErrorKind::InvalidInput => {}
                Err(error) => {
                    return Err(Error::io(format!("killing {}", self.spawn.peer))(error));
                }
            }
            child
                .wait()
                .map_err(Error::io(format!("waiting for {}", self.spawn.peer)))?;
        }
        Ok(())
    }

    /// Asks the process to stop (SIGTERM), waits up to 5 s, then kills it.
    pub fn stop(&mut self) -> Result<(), Error> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        // std has no SIGTERM; the `kill` utility sends it without unsafe code.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if child
                .try_wait()
                .map_err(Error::io(format!("waiting for {}", self.spawn.peer)))?
                .is_some()
            {
                self.child = None;
                return Ok(());
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        self.kill()
    }

    /// Kills the process if running, then starts it again with the same arguments
    /// (same ports, same files) and waits until it is ready.
    pub fn restart(&mut self) -> Result<(), Error> {
        self.kill()?;
        self.launch()
    }

    fn launch(&mut self) -> Result<(), Error> {
        let spawn = &self.spawn;
        for stale in &spawn.stale_files {
            match std::fs::remove_file(stale) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => {
                    return Err(Error::io(format!("removing {}", stale.display()))(error));
                }
            }
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spawn.log_path)
            .map_err(Error::io(format!("opening {}", spawn.log_path.display())))?;
        let log_for_stderr = log
            .try_clone()
            .map_err(Error::io("duplicating the log file handle"))?;
        let log_start = log
            .metadata()
            .map_err(Error::io("reading the log file size"))?
            .len();
        let child = Command::new(&spawn.program)
            .args(&spawn.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_for_stderr)
            .spawn()
            .map_err(Error::io(format!(
                "starting {} ({})",
                spawn.peer,
                spawn.program.display()
            )))?;
        self.child = Some(child);
        let ready = self.wait_until_ready(log_start);
        if ready.is_err() {
            let _ = self.kill();
        }
        ready
    }

    fn wait_until_ready(&mut self, log_start: u64) -> Result<(), Error> {
        let started = Instant::now();
        let peer = self.spawn.peer;
        loop {
            let Some(child) = self.child.as_mut() else {
                return Err(Error::Config(format!("{peer} is not running")));
            };
            if let Some(status) = child
                .try_wait()
                .map_err(Error::io(format!("waiting for {peer}")))?
            {
                self.child = None;
                return Err(Error::Exited {
                    peer,
                    status: status.to_string(),
                    stderr: log_since(&self.spawn.log_path, log_start),
                });
            }
            let mut missing = Vec::new();
            for listener in &self.spawn.listeners {
                if !is_bound(*listener)? {
                    missing.push(*listener);
                }
            }
            if missing.is_empty() {
                return Ok(());
            }
            if started.elapsed() >= READY_TIMEOUT {
                let missing: Vec<String> = missing
                    .iter()
                    .map(|listener| match listener.transport {
                        Transport::Tcp => format!("tcp/{}", listener.port),
                        Transport::Udp => format!("udp/{}", listener.port),
                    })
                    .collect();
                return Err(Error::NotReady {
                    peer,
                    waited: started.elapsed(),
                    reason: format!("not bound yet: {}", missing.join(", ")),
                    stderr: log_since(&self.spawn.log_path, log_start),
                });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// The last few KiB of a log file (empty if unreadable).
pub(crate) fn log_tail(path: &Path) -> String {
    let size = std::fs::metadata(path).map(|meta| meta.len()).unwrap_or(0);
    log_since(path, size.saturating_sub(LOG_TAIL_BYTES))
}

/// A log file from byte `start` on, at most the last few KiB (empty if unreadable).
fn log_since(path: &Path, start: u64) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let size = file.metadata().map(|meta| meta.len()).unwrap_or(0);
    let start = start.max(size.saturating_sub(LOG_TAIL_BYTES));
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_err() || file.read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    String::from_utf8_lossy(&bytes).into_owned()
}
