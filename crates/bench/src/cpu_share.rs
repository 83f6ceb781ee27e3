//! CPU quotas for benchmark processes (Linux cgroups): holds a process to a share of the
//! machine's cores, so that several "machines" of equal size can be emulated on one.
//!
//! The multi-node logd benchmark uses it: three logd nodes on a 2-core machine share the
//! same two cores, so a CPU-bound query over all three takes three times the work on the
//! same CPUs; with each node held to a third of the machine (and the single node it is
//! compared with held to the same third), the comparison is the one three equal machines
//! would make. Works with cgroup v1 (the `cpu` controller at `/sys/fs/cgroup/cpu`) and v2
//! (`/sys/fs/cgroup` with `cpu` in `cgroup.controllers`); needs root.

use std::path::{Path, PathBuf};

/// CFS period: short, so that a throttled short query waits milliseconds, not 100 ms.
const PERIOD_US: u64 = 10_000;

/// A cgroup holding its processes to a CPU quota; removed when dropped (its processes
/// are moved back to the root group first).
#[derive(Debug)]
pub struct CpuQuota {
    dir: PathBuf,
    root: PathBuf,
    cores: f64,
}

impl CpuQuota {
    /// A new group named `name` whose processes together get at most `cores` CPUs' time
    /// (e.g. `0.67`). The error says why it cannot be had (no cgroup filesystem with a
    /// `cpu` controller, no permission).
    pub fn create(name: &str, cores: f64) -> Result<CpuQuota, String> {
        let quota_us = ((cores * PERIOD_US as f64).round() as u64).max(1_000);
        let v1 = Path::new("/sys/fs/cgroup/cpu");
        if v1.join("cpu.cfs_quota_us").exists() {
            let dir = v1.join(name);
            make_dir(&dir)?;
            write(&dir.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
            write(&dir.join("cpu.cfs_quota_us"), &quota_us.to_string())?;
            return Ok(CpuQuota {
                dir,
                root: v1.to_path_buf(),
                cores,
            });
        }
        let v2 = Path::new("/sys/fs/cgroup");
        let controllers = std::fs::read_to_string(v2.join("cgroup.controllers"))
            .map_err(|e| format!("no cgroup cpu controller (v1 or v2) on this machine: {e}"))?;
        if !controllers.split_whitespace().any(|c| c == "cpu") {
            return Err(format!(
                "the cgroup v2 root offers no cpu controller (it has: {})",
                controllers.trim()
            ));
        }
        write(&v2.join("cgroup.subtree_control"), "+cpu")?;
        let dir = v2.join(name);
        make_dir(&dir)?;
        write(&dir.join("cpu.max"), &format!("{quota_us} {PERIOD_US}"))?;
        Ok(CpuQuota {
            dir,
            root: v2.to_path_buf(),
            cores,
        })
    }

    /// The quota, in cores.
    pub fn cores(&self) -> f64 {
        self.cores
    }

    /// Moves process `pid` (all its threads) into the group.
    pub fn add(&self, pid: u32) -> Result<(), String> {
        write(&self.dir.join("cgroup.procs"), &pid.to_string())
    }

    /// Moves process `pid` back to the root group (no quota).
    pub fn remove(&self, pid: u32) -> Result<(), String> {
        write(&self.root.join("cgroup.procs"), &pid.to_string())
    }
}

impl Drop for CpuQuota {
    fn drop(&mut self) {
        if let Ok(procs) = std::fs::read_to_string(self.dir.join("cgroup.procs")) {
            for pid in procs.split_whitespace() {
                let _ = std::fs::write(self.root.join("cgroup.procs"), pid);
            }
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn make_dir(dir: &Path) -> Result<(), String> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("creating cgroup {}: {e}", dir.display())),
    }
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    std::fs::write(path, value).map_err(|e| format!("writing {value} to {}: {e}", path.display()))
}
