//! Where the benchmark's threads run: pinning the harness's threads and its worker
//! processes to one CPU, and undoing it.
//!
//! On a small virtual machine a thread woken on another, halted vCPU pays a trip through
//! the hypervisor (tens of microseconds here), while a thread woken on the vCPU it
//! shares with the waker pays a context switch (a few microseconds). A latency
//! benchmark whose paths involve different numbers of parties is then measuring where
//! the scheduler happened to put them; pinning every party to one CPU gives every path
//! the same kind of wake-up. The `hop` benchmark runs both ways and reports both.

use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};

use crate::BenchError;

/// The CPUs the calling thread may run on, in ascending order.
pub fn allowed_cpus() -> Result<Vec<usize>, BenchError> {
    let set = sched_getaffinity(None)
        .map_err(|errno| BenchError::io("reading the CPU affinity")(errno.into()))?;
    Ok((0..CpuSet::MAX_CPU)
        .filter(|cpu| set.is_set(*cpu))
        .collect())
}

/// Confines the calling thread (and the threads and processes it starts from now on,
/// which inherit its mask) to `cpu`.
pub fn pin_current_thread(cpu: usize) -> Result<(), BenchError> {
    if cpu >= CpuSet::MAX_CPU {
        return Err(BenchError::InvalidConfig(format!(
            "CPU {cpu} is beyond the largest CPU number {}",
            CpuSet::MAX_CPU - 1
        )));
    }
    let mut set = CpuSet::new();
    set.set(cpu);
    sched_setaffinity(None, &set)
        .map_err(|errno| BenchError::io(format!("pinning to CPU {cpu}"))(errno.into()))
}

/// The calling thread pinned to one CPU until dropped, when its previous mask is put
/// back (threads it started meanwhile keep the single CPU).
#[derive(Debug)]
pub struct PinnedThread {
    previous: CpuSet,
    cpu: usize,
}

impl PinnedThread {
    /// Pins the calling thread to `cpu`, remembering its current mask.
    pub fn pin(cpu: usize) -> Result<Self, BenchError> {
        let previous = sched_getaffinity(None)
            .map_err(|errno| BenchError::io("reading the CPU affinity")(errno.into()))?;
        pin_current_thread(cpu)?;
        Ok(Self { previous, cpu })
    }

    /// The CPU the thread is pinned to.
    pub fn cpu(&self) -> usize {
        self.cpu
    }
}

impl Drop for PinnedThread {
    fn drop(&mut self) {
        if let Err(error) = sched_setaffinity(None, &self.previous) {
            eprintln!("could not restore the CPU affinity: {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinning_confines_the_thread_and_dropping_restores_it() {
        // In a thread of its own, so the test runner's threads keep their mask.
        std::thread::spawn(|| {
            let before = allowed_cpus().unwrap();
            let cpu = *before.last().unwrap();
            {
                let pinned = PinnedThread::pin(cpu).unwrap();
                assert_eq!(pinned.cpu(), cpu);
                assert_eq!(allowed_cpus().unwrap(), vec![cpu]);
                // A thread started now inherits the single CPU.
                let inherited = std::thread::spawn(allowed_cpus).join().unwrap().unwrap();
                assert_eq!(inherited, vec![cpu]);
            }
            assert_eq!(allowed_cpus().unwrap(), before);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_cpu_beyond_the_mask_size_is_an_error() {
        let error = pin_current_thread(CpuSet::MAX_CPU).unwrap_err();
        assert!(matches!(error, BenchError::InvalidConfig(_)), "{error}");
    }
}
