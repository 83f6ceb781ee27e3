//! A peer process: spawned in the foreground with its output going to files in its
//! folder, waited on until all its ports are bound, killed and reaped on drop. And a
//! one-shot tool run ([`ToolRun`]: loggen, logger): output captured in files, bounded
//! by a timeout, killed and reaped on drop.

use crate::ports::{Listener, Transport, is_bound};
use crate::{Error, READY_TIMEOUT};
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

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
    /// Extra environment variables.
    pub env: Vec<(OsString, OsString)>,
    /// The working directory (`None`: the test's own).
    pub current_dir: Option<PathBuf>,
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
        let mut command = Command::new(&spawn.program);
        command.args(&spawn.args).envs(spawn.env.iter().cloned());
        if let Some(dir) = &spawn.current_dir {
            command.current_dir(dir);
        }
        let child = command
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

/// How often a one-shot tool is polled for its exit.
const TOOL_POLL_INTERVAL: Duration = Duration::from_millis(5);

/// What a finished one-shot tool left.
#[derive(Debug)]
pub(crate) struct ToolOutput {
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it wrote on stdout (lossy UTF-8).
    pub stdout: String,
    /// Everything it wrote on stderr (lossy UTF-8).
    pub stderr: String,
    /// From spawn to observed exit.
    pub elapsed: Duration,
}

impl ToolOutput {
    /// The end of stderr then stdout, for error messages.
    pub fn tail(&self) -> String {
        output_tail(&self.stderr, &self.stdout)
    }
}

/// A running one-shot tool (loggen, logger): stdin closed, stdout and stderr going to
/// files in a private folder. Dropping it kills the process and reaps it.
#[derive(Debug)]
pub(crate) struct ToolRun {
    program: &'static str,
    child: Option<Child>,
    started: Instant,
    timeout: Duration,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    // Last: the folder outlives the process.
    _dir: TempDir,
}

impl ToolRun {
    /// Spawns `command` (its stdio is replaced); [`ToolRun::wait`] gives up after
    /// `timeout` from now.
    pub fn spawn(
        program: &'static str,
        mut command: Command,
        timeout: Duration,
    ) -> Result<Self, Error> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("flotilla-{program}-"))
            .tempdir()
            .map_err(Error::io(format!("creating {program}'s temporary folder")))?;
        let stdout_path = dir.path().join("stdout");
        let stderr_path = dir.path().join("stderr");
        let stdout = File::create(&stdout_path)
            .map_err(Error::io(format!("creating {}", stdout_path.display())))?;
        let stderr = File::create(&stderr_path)
            .map_err(Error::io(format!("creating {}", stderr_path.display())))?;
        let started = Instant::now();
        let child = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(Error::io(format!("starting {program}")))?;
        Ok(ToolRun {
            program,
            child: Some(child),
            started,
            timeout,
            stdout_path,
            stderr_path,
            _dir: dir,
        })
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Waits for the tool to exit (whatever its status) and returns its output; kills
    /// it and fails with [`Error::Program`] when the timeout passes first.
    pub fn wait(&mut self) -> Result<ToolOutput, Error> {
        let program = self.program;
        let Some(child) = self.child.as_mut() else {
            return Err(Error::Config(format!("{program} was already waited for")));
        };
        let deadline = self.started + self.timeout;
        let status = loop {
            if let Some(status) = child
                .try_wait()
                .map_err(Error::io(format!("waiting for {program}")))?
            {
                break status;
            }
            if Instant::now() >= deadline {
                self.kill()?;
                let (stdout, stderr) = self.read_output()?;
                return Err(Error::Program {
                    program,
                    reason: format!("still running after {:?}: killed", self.timeout),
                    output: output_tail(&stderr, &stdout),
                });
            }
            std::thread::sleep(TOOL_POLL_INTERVAL);
        };
        let elapsed = self.started.elapsed();
        self.child = None;
        let (stdout, stderr) = self.read_output()?;
        Ok(ToolOutput {
            status,
            stdout,
            stderr,
            elapsed,
        })
    }

    /// Kills the tool (SIGKILL) and reaps it. No-op when it is not running.
    pub fn kill(&mut self) -> Result<(), Error> {
        if let Some(mut child) = self.child.take() {
            match child.kill() {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::InvalidInput => {}
                Err(error) => return Err(Error::io(format!("killing {}", self.program))(error)),
            }
            child
                .wait()
                .map_err(Error::io(format!("waiting for {}", self.program)))?;
        }
        Ok(())
    }

    fn read_output(&self) -> Result<(String, String), Error> {
        let read = |path: &Path| {
            std::fs::read(path)
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                .map_err(Error::io(format!("reading {}", path.display())))
        };
        Ok((read(&self.stdout_path)?, read(&self.stderr_path)?))
    }
}

impl Drop for ToolRun {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// The last few KiB of a tool's stderr and stdout, labelled.
fn output_tail(stderr: &str, stdout: &str) -> String {
    let tail = |text: &str| {
        let limit = usize::try_from(LOG_TAIL_BYTES).unwrap_or(usize::MAX);
        let mut start = text.len().saturating_sub(limit);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        text[start..].to_string()
    };
    format!("[stderr]\n{}[stdout]\n{}", tail(stderr), tail(stdout))
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
