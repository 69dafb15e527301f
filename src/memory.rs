//! Keeps idle memory low. glibc's allocator keeps what a sync pass freed
//! (one arena per thread that ever allocated, free pages at the top of each
//! heap), so a sidecar that checked out a big tree would sit on several MiB
//! it no longer uses. We cap the arenas at start-up and hand free pages back
//! to the kernel after each pass. No-ops on other C libraries.

/// Limits malloc arenas (the default is 8 per core) before threads start.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called once at
    // start-up, it has no memory-safety preconditions.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Returns free heap pages of every arena to the kernel.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim is thread-safe and only releases memory the
    // allocator itself considers free.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}
