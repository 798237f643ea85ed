//! glibc's allocator keeps what a burst allocated (large packages in flight, SQLite pages) in
//! per-thread arenas, so the process's memory stays at its peak long after the burst. Two
//! arenas instead of one per core and thread, and handing free memory back every few seconds,
//! keep the resident size close to what is in use. Other C libraries need neither.

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    use std::ffi::c_int;
    use std::time::Duration;

    unsafe extern "C" {
        fn mallopt(param: c_int, value: c_int) -> c_int;
        fn malloc_trim(pad: usize) -> c_int;
    }

    /// `M_ARENA_MAX` and `M_MMAP_THRESHOLD` in glibc's malloc.h.
    const M_ARENA_MAX: c_int = -8;
    const M_MMAP_THRESHOLD: c_int = -3;
    /// Blocks from this size up get pages of their own, returned to the OS when freed. glibc's
    /// default starts at 128 KiB and rises to the largest block freed so far (up to 32 MiB), so
    /// after one burst of large packages every later one lands in the heap, where a single
    /// block still in use pins the pages around it (F4: RSS 34 MiB above the start after a
    /// backlog of 600 packages of 30 KiB, trims notwithstanding).
    const MMAP_FROM: c_int = 16 * 1024;
    const TRIM_EVERY: Duration = Duration::from_secs(10);

    pub(crate) fn tune() {
        // SAFETY: mallopt and malloc_trim take plain integers and are thread-safe; called
        // before the runtime starts, mallopt changes only how new arenas are created.
        unsafe {
            mallopt(M_ARENA_MAX, 2);
            mallopt(M_MMAP_THRESHOLD, MMAP_FROM);
        }
        let spawned = std::thread::Builder::new()
            .name("malloc-trim".to_owned())
            .spawn(|| {
                loop {
                    std::thread::sleep(TRIM_EVERY);
                    // SAFETY: see above.
                    unsafe {
                        malloc_trim(0);
                    }
                }
            });
        if let Err(error) = spawned {
            log::warn!("cannot start the memory trimmer: {error}");
        }
    }
}

/// Sets the allocator up for a long-running server (a no-op where it is not glibc).
pub(crate) fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    glibc::tune();
}
