//! A pod's `resources.limits`, as the kernel applies them: the sidecar is
//! started in a real cgroup of the host's, with a CPU quota or a memory
//! limit, as a container runtime starts it.
//!
//! * Checkout threads follow the CPU quota, not the node's cores: the
//!   checkout's own log line says what thread limit it handed gix (pack
//!   indexing gets the same number; that it is used is gix's part).
//! * The received pack streams to disk: a repository whose pack is larger
//!   than the memory limit syncs inside it, with no OOM kill.

use std::time::Duration;

use crate::support::cgroup::Cgroup;
use crate::support::sidecar::describe_output;
use crate::support::*;

/// The `threads` of the first JSON log line whose message is `msg`.
fn threads_logged(stderr: &str, msg: &str) -> Option<u64> {
    logged(stderr, msg).and_then(|v| v["threads"].as_u64())
}

/// A one-time sync of `url` at `-v 1`, in `group` if given: (threads the
/// process chose, threads the checkout was given).
fn threads_of_a_sync(url: &str, group: Option<&Cgroup>) -> (u64, u64) {
    let s = Scratch::new();
    let mut sidecar = s.sidecar(url).args(["--one-time", "-v", "1"]);
    if let Some(group) = group {
        sidecar = sidecar.cgroup(group.dir());
    }
    let out = sidecar.run(Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "one-time sync failed:\n{stderr}");
    let chosen = threads_logged(&stderr, "threads for pack indexing and checkout")
        .unwrap_or_else(|| panic!("no thread count logged:\n{stderr}"));
    let checkout = threads_logged(&stderr, "checking out")
        .unwrap_or_else(|| panic!("no checkout logged with the threads gix was given:\n{stderr}"));
    (chosen, checkout)
}

#[test]
fn a_quota_of_one_cpu_gives_the_checkout_one_thread_on_a_bigger_node() {
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as u64;
    assert!(
        cores >= 2,
        "this test needs at least 2 cores to tell a quota of one CPU from the core count; \
         this machine has {cores}"
    );
    let up = Upstream::new();
    // More files than a checkout writes on one thread anyway (FEW_FILES).
    let pages: Vec<(String, Vec<u8>)> = (0..300)
        .map(|i| {
            let path = format!("docs/{:02}/page-{i}.md", i % 20);
            (path, format!("# page {i}\n").into_bytes())
        })
        .collect();
    let files: Vec<(&str, &[u8])> = pages
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_slice()))
        .collect();
    up.commit_files(&files, "three hundred pages");

    assert_eq!(
        threads_of_a_sync(&up.file_url(), None),
        (cores, cores),
        "without a quota, one thread per core"
    );
    let quota = Cgroup::cpu_quota(1);
    assert_eq!(
        threads_of_a_sync(&up.file_url(), Some(&quota)),
        (1, 1),
        "under a quota of one CPU, one thread whatever the cores"
    );
}

const MIB: usize = 1 << 20;

/// `count` files of one MiB of pseudo-random bytes each, in one commit on
/// `main`: a pack of `count` MiB that neither zlib nor deltas shrink.
fn commit_random_files(up: &Upstream, count: usize) -> String {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut random_mib = move || {
        let mut content = Vec::with_capacity(MIB);
        for _ in 0..MIB / 8 {
            // xorshift64: fast, and nothing zlib can shrink.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            content.extend_from_slice(&state.to_le_bytes());
        }
        content
    };
    let files = (1..=count).map(|mark| (format!("data/{mark:03}.bin"), random_mib()));
    up.commit_generated(files, "large")
}

/// The first sync of a repository whose pack (96 MiB) is half as large
/// again as the memory limit (64 MiB, page cache included, no swap): it
/// passes with no OOM kill only if the pack streams to disk as it arrives
/// and is read back through the page cache, never held whole in memory.
/// Served by `git daemon`, so upload-pack runs outside the cgroup.
#[test]
fn a_pack_larger_than_the_memory_limit_syncs_inside_it() {
    let up = Upstream::new();
    // Already incompressible: the server need not search for deltas.
    up.git(&["config", "pack.window", "0"]);
    let sha = commit_random_files(&up, 96);
    let daemon = GitDaemon::start(up.base());
    let s = Scratch::new();
    let on_tmpfs = nix::sys::statfs::statfs(s.dir.path())
        .is_ok_and(|fs| fs.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC);
    assert!(
        !on_tmpfs,
        "{} is on tmpfs, whose pages count as memory the kernel cannot evict: set TMPDIR \
         to a directory on a disk for this test",
        s.dir.path().display()
    );
    let limit = Cgroup::memory_limit(64 * MIB as u64);

    let out = s
        .sidecar(&daemon.url(up.name()))
        .arg("--one-time")
        .cgroup(limit.dir())
        .run(Duration::from_secs(120));
    let logs = describe_output(&out);
    assert_eq!(limit.oom_kills(), 0, "the OOM killer struck:\n{logs}");
    assert!(out.status.success(), "{logs}");
    assert_eq!(s.published().as_deref(), Some(sha.as_str()));
    assert_tree_matches_commit(&s.link(), &up, &sha);
}
