//! Readers of `/proc/PID/stat` (CPU time) and `/proc/PID/smaps_rollup` (memory), with the
//! parsing split from the reading so it can be tested on recorded text.

use std::process::Command;
use std::time::Instant;

use serde::Serialize;

use crate::BenchError;

/// CPU time a process has used, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTicks {
    /// Time in user mode.
    pub utime: u64,
    /// Time in kernel mode.
    pub stime: u64,
}

impl CpuTicks {
    /// User plus kernel ticks.
    pub fn total(&self) -> u64 {
        self.utime + self.stime
    }
}

/// Parses the text of `/proc/PID/stat`: fields 14 (utime) and 15 (stime), counted after
/// the `comm` field, which is in parentheses and may itself contain spaces or `)`.
pub fn parse_stat(text: &str) -> Result<CpuTicks, BenchError> {
    let bad = |detail: &str| BenchError::ProcParse {
        file: "/proc/PID/stat".into(),
        detail: detail.into(),
    };
    let after_comm = text
        .rfind(')')
        .and_then(|end| text.get(end + 1..))
        .ok_or_else(|| bad("no `)` closing the command name"))?;
    // After `comm`: field 3 (state) is the first; utime is field 14, stime field 15.
    let mut fields = after_comm.split_ascii_whitespace().skip(11);
    let mut next_number = |name: &str| {
        fields
            .next()
            .ok_or_else(|| bad(&format!("missing {name}")))?
            .parse::<u64>()
            .map_err(|_| bad(&format!("{name} is not a number")))
    };
    let utime = next_number("utime")?;
    let stime = next_number("stime")?;
    Ok(CpuTicks { utime, stime })
}

/// Reads the CPU ticks of process `pid`.
pub fn read_cpu_ticks(pid: u32) -> Result<CpuTicks, BenchError> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(BenchError::io(format!("reading {path}")))?;
    parse_stat(&text)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 when that cannot be asked).
pub fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse::<u64>().ok())
        .filter(|&ticks| ticks > 0)
        .unwrap_or(100)
}

/// Measures one process's CPU use between [`CpuMeter::start`] and [`CpuMeter::percent`].
#[derive(Debug, Clone, Copy)]
pub struct CpuMeter {
    pid: u32,
    start_ticks: CpuTicks,
    started: Instant,
    ticks_per_second: u64,
}

impl CpuMeter {
    /// Starts measuring process `pid`.
    pub fn start(pid: u32, ticks_per_second: u64) -> Result<Self, BenchError> {
        Ok(Self {
            pid,
            start_ticks: read_cpu_ticks(pid)?,
            started: Instant::now(),
            ticks_per_second: ticks_per_second.max(1),
        })
    }

    /// CPU used since the start, as a percentage of one core.
    pub fn percent(&self) -> Result<f64, BenchError> {
        let now = read_cpu_ticks(self.pid)?;
        let elapsed = self.started.elapsed().as_secs_f64();
        let used = now.total().saturating_sub(self.start_ticks.total()) as f64
            / self.ticks_per_second as f64;
        Ok(if elapsed > 0.0 {
            used / elapsed * 100.0
        } else {
            0.0
        })
    }
}

/// Memory figures of one process from `/proc/PID/smaps_rollup`, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MemoryFigures {
    /// Resident set size.
    pub rss: u64,
    /// Proportional set size.
    pub pss: u64,
    /// Private pages written to (heap, stacks, written data): the process's own memory.
    pub private_dirty: u64,
    /// Anonymous memory (heap and stacks).
    pub anonymous: u64,
}

/// Parses the text of `/proc/PID/smaps_rollup` (values in kB).
pub fn parse_smaps_rollup(text: &str) -> Result<MemoryFigures, BenchError> {
    let mut figures = MemoryFigures::default();
    let mut seen = 0;
    for line in text.lines() {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let slot = match name.trim() {
            "Rss" => &mut figures.rss,
            "Pss" => &mut figures.pss,
            "Private_Dirty" => &mut figures.private_dirty,
            "Anonymous" => &mut figures.anonymous,
            _ => continue,
        };
        let kib = rest
            .split_ascii_whitespace()
            .next()
            .and_then(|number| number.parse::<u64>().ok())
            .ok_or_else(|| BenchError::ProcParse {
                file: "/proc/PID/smaps_rollup".into(),
                detail: format!("bad value in line {line:?}"),
            })?;
        *slot = kib * 1024;
        seen += 1;
    }
    if seen < 4 {
        return Err(BenchError::ProcParse {
            file: "/proc/PID/smaps_rollup".into(),
            detail: "missing Rss, Pss, Private_Dirty or Anonymous".into(),
        });
    }
    Ok(figures)
}

/// Reads the memory figures of process `pid`.
pub fn read_memory(pid: u32) -> Result<MemoryFigures, BenchError> {
    let path = format!("/proc/{pid}/smaps_rollup");
    let text = std::fs::read_to_string(&path).map_err(BenchError::io(format!("reading {path}")))?;
    parse_smaps_rollup(&text)
}

/// Number of open file descriptors of process `pid`.
pub fn open_fds(pid: u32) -> Result<usize, BenchError> {
    let path = format!("/proc/{pid}/fd");
    Ok(std::fs::read_dir(&path)
        .map_err(BenchError::io(format!("listing {path}")))?
        .count())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (flot (il) a) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                        731 205 0 0 20 0 3 0 123456 1000000 500 18446744073709551615";

    #[test]
    fn stat_fields_after_a_tricky_command_name() {
        let ticks = parse_stat(STAT).unwrap();
        assert_eq!(
            ticks,
            CpuTicks {
                utime: 731,
                stime: 205
            }
        );
        assert_eq!(ticks.total(), 936);
    }

    #[test]
    fn stat_garbage_is_an_error() {
        assert!(parse_stat("no parenthesis").is_err());
        assert!(parse_stat("1 (x) S 1 2").is_err());
        assert!(parse_stat("1 (x) S 1 2 3 4 5 6 7 8 9 10 x y").is_err());
    }

    #[test]
    fn own_process_is_readable() {
        let ticks = read_cpu_ticks(std::process::id()).unwrap();
        assert!(ticks.total() < u64::MAX);
        let memory = read_memory(std::process::id()).unwrap();
        assert!(memory.rss > 0 && memory.private_dirty > 0);
        assert!(open_fds(std::process::id()).unwrap() >= 3);
        assert!(clock_ticks_per_second() >= 1);
    }

    #[test]
    fn smaps_rollup_values_in_bytes() {
        let text = "55d0c0000000-7ffd4b1f2000 ---p 00000000 00:00 0                          [rollup]\n\
                    Rss:               10240 kB\n\
                    Pss:                8000 kB\n\
                    Pss_Anon:           6000 kB\n\
                    Shared_Clean:       2048 kB\n\
                    Private_Dirty:      6144 kB\n\
                    Anonymous:          6100 kB\n\
                    Swap:                  0 kB\n";
        let figures = parse_smaps_rollup(text).unwrap();
        assert_eq!(
            figures,
            MemoryFigures {
                rss: 10240 * 1024,
                pss: 8000 * 1024,
                private_dirty: 6144 * 1024,
                anonymous: 6100 * 1024,
            }
        );
        assert!(parse_smaps_rollup("Rss: 10 kB\n").is_err());
        assert!(
            parse_smaps_rollup("Rss: x kB\nPss: 1 kB\nPrivate_Dirty: 1 kB\nAnonymous: 1 kB\n")
                .is_err()
        );
    }
}
