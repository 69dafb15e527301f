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
//!
//! The executable's own pages are the other half of idle memory: start-up,
//! the clone and the first checkout run most of the binary once, and the
//! kernel's read-around and fault-around map it in large runs, so most of
//! the text stayed mapped for the process's life while an idle poll needs
//! far less. [`release_code_pages`] hands those pages back once the first
//! sync is done (38k-file tree, static build: idle VmRSS 12.1 -> 7.9 MiB
//! on a disk with 8 MiB read-ahead, 11.5 -> 7.0 MiB with 128 KiB, 12.8 ->
//! 8.7 MiB with a probe and a metrics scrape every second; all of it
//! file-backed: the polls and requests map 5.7-6.5 MiB of text back), and
//! before the first full checkout, a first sync's memory peak with the
//! whole pack mapped.
//!
//! What an idle process maps back is every 64 KiB window of code its polls
//! and probes touch, so the release builds place those functions together
//! (build.rs, build/code.order; docs/architecture.md, "Build", has how and
//! the figures).
//!
//! What that saves, honestly: the pages are clean page cache of the binary.
//! They leave the page cache (unless another process maps them) and the
//! container's memory cgroup is charged that much less, but they were
//! inactive file pages, which Kubernetes' working set (usage minus
//! inactive_file) already left out and which the kernel drops first under
//! pressure. Anonymous memory does not change. The cost: the code a later
//! pass needs is read from the binary again (about 50 major faults on the
//! next publish), once.

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

/// Why the executable's pages could not be given back.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("madvise({advice}) on {len} bytes of our executable at {start:#x} failed (Linux 5.4 or later is needed for MADV_PAGEOUT): {source}")]
    Madvise {
        advice: &'static str,
        start: usize,
        len: usize,
        source: std::io::Error,
    },
}

/// A read-only part of our executable's image (text, read-only data,
/// relocation tables): file-backed and never written, so the kernel can
/// drop its pages and read them back from the file when they are next used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub start: usize,
    pub len: usize,
    pub executable: bool,
}

/// The loaded segments of our executable that are not writable, shrunk to
/// whole pages. The writable ones (and the RELRO part of them, written by
/// relocation before it was sealed) hold private copies: giving those back
/// would mean swapping them, so they are left alone.
#[cfg(target_os = "linux")]
pub fn own_readonly_segments() -> Vec<Segment> {
    // SAFETY: called with a valid page-size name.
    #[allow(unsafe_code)]
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        p if p > 0 => p as usize,
        _ => 4096,
    };
    let mut segments: Vec<Segment> = Vec::new();
    // SAFETY: dl_iterate_phdr calls `first_object` synchronously with valid
    // `dl_phdr_info` pointers; `data` is the Vec above, alive for the call.
    #[allow(unsafe_code)]
    unsafe {
        libc::dl_iterate_phdr(
            Some(first_object),
            (&mut segments as *mut Vec<Segment>).cast(),
        );
    }
    segments
        .into_iter()
        .filter_map(|s| {
            let start = s.start.div_ceil(page) * page;
            let end = (s.start + s.len) / page * page;
            (end > start).then_some(Segment {
                start,
                len: end - start,
                ..s
            })
        })
        .collect()
}

/// `dl_iterate_phdr` reports the program itself first (dynamic or static):
/// collect its non-writable `PT_LOAD` segments and stop.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
unsafe extern "C" fn first_object(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: see own_readonly_segments; the program headers are
    // `dlpi_phnum` entries at `dlpi_phdr`, mapped for the process's life.
    let (info, out) = unsafe { (&*info, &mut *data.cast::<Vec<Segment>>()) };
    if info.dlpi_phdr.is_null() {
        return 1;
    }
    // SAFETY: as above.
    let headers = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
    for h in headers {
        if h.p_type == libc::PT_LOAD && h.p_flags & libc::PF_W == 0 {
            out.push(Segment {
                start: info.dlpi_addr as usize + h.p_vaddr as usize,
                len: h.p_memsz as usize,
                executable: h.p_flags & libc::PF_X != 0,
            });
        }
    }
    1
}

/// Gives the kernel back our executable's resident read-only pages:
/// MADV_PAGEOUT unmaps them and drops them from the page cache (unless
/// another process maps them too), and the rest of the file's clean cache,
/// read ahead but never mapped, goes as well (else fault-around would map
/// it straight back). The read-only data (constants, unwind and relocation
/// tables) is also marked for random access: a later access reads the page
/// it needs, not a read-ahead window around it. The text is not: the 6.18
/// kernel measured here reads around executable faults regardless, and a
/// kernel that honoured it would fault a publish's code in page by page.
///
/// Call it once the first sync is done: start-up, option parsing, the
/// clone and the first full checkout are most of the code that ran; and
/// before that first full checkout, whose whole pack is mapped meanwhile.
#[cfg(target_os = "linux")]
pub fn release_code_pages() -> Result<(), Error> {
    for s in own_readonly_segments() {
        if !s.executable {
            advise(s, libc::MADV_RANDOM, "MADV_RANDOM")?;
        }
        advise(s, libc::MADV_PAGEOUT, "MADV_PAGEOUT")?;
    }
    drop_unmapped_cache();
    Ok(())
}

/// MADV_PAGEOUT only reaches the pages we have mapped; read-around brought
/// more of the binary into the page cache, and fault-around would map
/// those back on the next fault. Drop the clean, unmapped rest too.
#[cfg(target_os = "linux")]
fn drop_unmapped_cache() {
    use std::os::fd::AsRawFd as _;
    if let Ok(exe) = std::fs::File::open("/proc/self/exe") {
        // SAFETY: a valid descriptor; the advice only drops clean cache.
        #[allow(unsafe_code)]
        unsafe {
            libc::posix_fadvise(exe.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
        }
    }
}

#[cfg(target_os = "linux")]
fn advise(s: Segment, advice: libc::c_int, name: &'static str) -> Result<(), Error> {
    // SAFETY: the range is a page-aligned, read-only, file-backed mapping of
    // our own executable; both advices only change paging, never contents.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::madvise(s.start as *mut libc::c_void, s.len, advice) };
    if rc == 0 {
        return Ok(());
    }
    Err(Error::Madvise {
        advice: name,
        start: s.start,
        len: s.len,
        source: std::io::Error::last_os_error(),
    })
}

/// Elsewhere the executable's pages are left as they are.
#[cfg(not(target_os = "linux"))]
pub fn release_code_pages() -> Result<(), Error> {
    Ok(())
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

#[cfg(all(test, target_os = "linux"))]
mod code_tests {
    use super::*;

    /// Resident KiB of the mapping that holds `addr` (from /proc/self/smaps).
    fn mapping_rss_kib(addr: usize) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ') {
                if let Some((lo, hi)) = range.split_once('-') {
                    if let (Ok(lo), Ok(hi)) =
                        (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
                    {
                        inside = (lo..hi).contains(&addr);
                        continue;
                    }
                }
            }
            if inside {
                if let Some(v) = line.strip_prefix("Rss:") {
                    return v
                        .split_whitespace()
                        .next()
                        .expect("kB")
                        .parse()
                        .expect("number");
                }
            }
        }
        panic!("no mapping holds {addr:#x}");
    }

    /// Reads one byte of every page of `s`, so all of it is mapped.
    fn touch(s: Segment) {
        for at in (s.start..s.start + s.len).step_by(4096) {
            // SAFETY: a readable page of our own loaded image.
            #[allow(unsafe_code)]
            std::hint::black_box(unsafe { std::ptr::read_volatile(at as *const u8) });
        }
    }

    /// Fraction of our executable's file that is in the page cache.
    fn cached_fraction_of_exe() -> f64 {
        use std::os::fd::AsRawFd as _;
        let exe = std::fs::File::open("/proc/self/exe").expect("/proc/self/exe");
        let len = exe.metadata().expect("metadata").len() as usize;
        // SAFETY: a fresh read-only mapping, never dereferenced, only
        // queried with mincore and unmapped again.
        #[allow(unsafe_code)]
        unsafe {
            let map = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                exe.as_raw_fd(),
                0,
            );
            assert_ne!(map, libc::MAP_FAILED, "mmap of our executable");
            let pages = len.div_ceil(4096);
            let mut vec = vec![0u8; pages];
            assert_eq!(libc::mincore(map, len, vec.as_mut_ptr()), 0, "mincore");
            libc::munmap(map, len);
            vec.iter().filter(|b| *b & 1 == 1).count() as f64 / pages as f64
        }
    }

    fn on_tmpfs(file: &std::fs::File) -> bool {
        use std::os::fd::AsRawFd as _;
        const TMPFS_MAGIC: i64 = 0x0102_1994;
        // SAFETY: fstatfs fills the zeroed struct for a valid descriptor.
        #[allow(unsafe_code)]
        unsafe {
            let mut st: libc::statfs = std::mem::zeroed();
            libc::fstatfs(file.as_raw_fd(), &mut st) == 0 && st.f_type as i64 == TMPFS_MAGIC
        }
    }

    #[test]
    fn our_own_image_has_an_executable_and_a_read_only_segment() {
        let segments = own_readonly_segments();
        assert!(segments.iter().any(|s| s.executable), "{segments:?}");
        assert!(segments.iter().any(|s| !s.executable), "{segments:?}");
        let here = our_own_image_has_an_executable_and_a_read_only_segment as *const () as usize;
        assert!(
            segments
                .iter()
                .any(|s| s.executable && (s.start..s.start + s.len).contains(&here)),
            "this test's code at {here:#x} is not in {segments:?}"
        );
    }

    /// After the first sync the process gives its executable's pages back:
    /// the text, read in full, is no longer mapped, and the file's pages
    /// (also those read ahead but never mapped) leave the page cache. The
    /// file is flushed first: a just-linked test binary may still be dirty,
    /// and the kernel keeps dirty pages (a deployed image's never are).
    ///
    /// Measured in a child running a private copy of this test binary:
    /// other test threads would fault the text straight back in, and pages
    /// another process maps (the parent, running the same file) are not
    /// paged out.
    #[test]
    fn releasing_code_pages_unmaps_the_text_and_drops_it_from_the_page_cache() {
        const CHILD: &str = "GIT_SIDECAR_CODE_PAGES_CHILD";
        const NAME: &str =
            "memory::code_tests::releasing_code_pages_unmaps_the_text_and_drops_it_from_the_page_cache";
        if std::env::var_os(CHILD).is_some() {
            return measure_release_in_this_process();
        }
        let exe = std::env::current_exe().expect("current_exe");
        let copy = exe.with_file_name(format!("code-pages-{}", std::process::id()));
        std::fs::copy(&exe, &copy).expect("copy the test binary");
        let out = std::process::Command::new(&copy)
            .args(["--exact", NAME, "--test-threads", "1", "--nocapture"])
            .env(CHILD, "1")
            .output();
        let _ = std::fs::remove_file(&copy);
        let out = out.expect("run the copy");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{said}");
        assert!(said.contains("1 passed"), "the child ran no test: {said}");
    }

    fn measure_release_in_this_process() {
        let text = own_readonly_segments()
            .into_iter()
            .find(|s| s.executable)
            .expect("an executable segment");
        let exe = std::fs::File::open("/proc/self/exe").expect("/proc/self/exe");
        assert!(
            !on_tmpfs(&exe),
            "the test binary lives on tmpfs, whose pages cannot be paged out without swap: \
             build the tests in a disk-backed CARGO_TARGET_DIR"
        );
        exe.sync_all().expect("fsync our executable");
        std::io::copy(&mut &exe, &mut std::io::sink()).expect("read our executable");
        touch(text);
        let before = mapping_rss_kib(text.start);
        assert!(
            before * 1024 >= text.len as u64 * 9 / 10,
            "touching the text left only {before} KiB of {} resident",
            text.len / 1024
        );
        assert!(
            cached_fraction_of_exe() > 0.9,
            "the executable was just read"
        );

        release_code_pages().expect("release");

        let after = mapping_rss_kib(text.start);
        let cached = cached_fraction_of_exe();
        assert!(
            after < before / 2,
            "text still {after} KiB resident of {before} KiB"
        );
        assert!(
            cached < 0.5,
            "{:.0}% of the executable is still in the page cache",
            cached * 100.0
        );
    }
}
