//! Gives the memory the C allocator keeps after a burst back to the operating system.
//!
//! glibc's `malloc` returns freed memory to the system only from the top of its heaps (and
//! for blocks of 128 KiB or more, which it maps one by one). Blocks freed in the middle of
//! a heap stay mapped: a front-end that held 2,000 connections with a partial 64 KiB frame
//! each stayed at 139 MB resident after every one of them was closed (8 MB before).
//! `malloc_trim(0)` walks the heaps and releases every free page (`madvise(DONTNEED)`);
//! measured on that burst, the front-end went back to 17 MB.
//!
//! Why a crate of its own: the call takes one `unsafe` FFI call, and the workspace keeps
//! `unsafe` in small crates that do one thing (see also `flotilla-tcpinfo`). Replacing the
//! allocator was measured too: mimalloc kept the pages (it purges them lazily, on later
//! allocations of the same thread, which an idle front-end does not make) unless told to
//! purge at once, which costs on every free of the fan-out's hot path.
//!
//! On systems without glibc, [`release_free_memory`] answers `false` and does nothing.

/// Returns the free pages of the C allocator's heaps to the operating system. Returns
/// whether it could (glibc) and the allocator released something. It walks every heap
/// with each one's lock held, so call it now and then (after connections closed), not on
/// a hot path.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn release_free_memory() -> bool {
    #[allow(unsafe_code)]
    // SAFETY: `malloc_trim` takes a byte count and touches only the allocator's own state,
    // under the allocator's locks; it is safe to call from any thread at any time.
    let released = unsafe { libc::malloc_trim(0) };
    released != 0
}

/// Returns the free pages of the C allocator's heaps to the operating system: not
/// possible here (not glibc), so nothing is done.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_memory() -> bool {
    false
}

#[cfg(test)]
mod tests {
    #[test]
    fn trimming_after_freeing_a_burst_does_not_disturb_the_heap() {
        let burst: Vec<Vec<u8>> = (0..512).map(|i| vec![i as u8; 64 * 1024]).collect();
        let kept: Vec<Vec<u8>> = burst.iter().step_by(64).cloned().collect();
        drop(burst);
        let _ = super::release_free_memory();
        // What is still allocated is intact.
        for (index, block) in kept.iter().enumerate() {
            assert!(block.iter().all(|&byte| byte == (index * 64) as u8));
        }
    }
}
