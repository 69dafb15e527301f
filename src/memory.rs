//! Keeps idle memory low. glibc's allocator keeps what a sync pass freed
//! (one arena per thread that ever allocated, free pages at the top of each
//! heap), so a sidecar that checked out a big tree would sit on several MiB
//! it no longer uses. We cap the arenas at start-up and hand free pages back
//! to the kernel after each pass. No-ops on other C libraries.
//!
//! The trim and mmap thresholds are fixed too. By default glibc raises them
//! each time a large buffer is freed (up to 32 MiB and 64 MiB), and
//! `malloc_trim` never shrinks the top of a thread's arena, only the main
//! one: the blocking thread a pass runs on kept ~7 MiB of free heap resident
//! while idle (40k-file tree; `malloc_stats`: 0.5 MiB in use of 8.8 MiB).
//! With fixed thresholds `free` itself returns a thread arena's top beyond
//! [`TRIM_THRESHOLD`], and buffers above [`MMAP_THRESHOLD`] (big blobs)
//! are unmapped as soon as they are freed.

/// Free memory at the top of a heap beyond this goes back to the kernel.
pub const TRIM_THRESHOLD: usize = 2 << 20;
/// Allocations from this size up get their own mapping.
pub const MMAP_THRESHOLD: usize = 2 << 20;

/// Limits malloc arenas (the default is 8 per core) and fixes the trim and
/// mmap thresholds, before threads start.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called once at
    // start-up, it has no memory-safety preconditions.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD as libc::c_int);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int);
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

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    const CHILD: &str = "GIT_SIDECAR_MEMORY_TEST_CHILD";

    fn rss_anon_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("RssAnon:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("RssAnon in /proc/self/status")
    }

    /// What a pass does to a thread's arena: a big buffer freed (which by
    /// default raises glibc's thresholds), then many small allocations
    /// freed. Prints how much anonymous memory stayed resident (KiB).
    #[test]
    fn child_frees_a_pass_worth_of_heap() {
        if std::env::var_os(CHILD).is_none() {
            return; // only meaningful in the fresh process the test below starts
        }
        limit_arenas();
        drop(std::hint::black_box(vec![1u8; 16 << 20]));
        let before = rss_anon_kib();
        let small: Vec<Box<[u8; 4096]>> = (0..4096).map(|_| Box::new([7u8; 4096])).collect();
        drop(std::hint::black_box(small));
        release_free_memory();
        println!("KEPT_KIB={}", rss_anon_kib().saturating_sub(before));
    }

    /// In a fresh process (the allocator's thresholds are process-wide), a
    /// test thread's 16 MiB of freed small allocations go back to the
    /// kernel. With glibc's dynamic thresholds they stayed resident.
    #[test]
    fn freed_heap_of_a_thread_arena_goes_back_to_the_kernel() {
        let exe = std::env::current_exe().expect("test binary");
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "memory::tests::child_frees_a_pass_worth_of_heap",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .output()
            .expect("run the test binary");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let kept: u64 = stdout
            .lines()
            .find_map(|l| l.split_once("KEPT_KIB=").map(|(_, v)| v))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no figure from the child: {stdout}"));
        assert!(kept < 4 << 10, "{kept} KiB of freed heap stayed resident");
    }
}
