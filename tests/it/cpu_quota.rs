//! Pack indexing and checkout threads follow the CPU quota of the cgroup the
//! sidecar runs in (a pod's `resources.limits.cpu`), not the node's cores:
//! the process is started in a real cgroup of the host's with a quota, and
//! the checkout's own log line says how many threads it was given.

use std::time::Duration;

use crate::support::cgroup::CpuQuota;
use crate::support::*;

/// The `threads` of the first JSON log line whose message is `msg`.
fn threads_logged(stderr: &str, msg: &str) -> Option<u64> {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["msg"] == msg)
        .and_then(|v| v["threads"].as_u64())
}

/// A one-time sync of `url` at `-v 1`, in `quota`'s cgroup if given:
/// (threads the process chose, threads the checkout was given).
fn sync_once(url: &str, quota: Option<&CpuQuota>) -> (u64, u64) {
    let s = Scratch::new();
    let mut sidecar = s.sidecar(url).args(["--one-time", "-v", "1"]);
    if let Some(quota) = quota {
        sidecar = sidecar.cgroup(quota.dir());
    }
    let out = sidecar.run(Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "one-time sync failed:\n{stderr}");
    let chosen = threads_logged(&stderr, "threads for pack indexing and checkout")
        .unwrap_or_else(|| panic!("no thread count logged:\n{stderr}"));
    let checkout = threads_logged(&stderr, "checking out")
        .unwrap_or_else(|| panic!("no checkout logged:\n{stderr}"));
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
            (
                format!("docs/{:02}/page-{i}.md", i % 20),
                format!("# page {i}\n").into_bytes(),
            )
        })
        .collect();
    let files: Vec<(&str, &[u8])> = pages
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_slice()))
        .collect();
    up.commit_files(&files, "three hundred pages");

    assert_eq!(
        sync_once(&up.file_url(), None),
        (cores, cores),
        "without a quota, one thread per core"
    );
    let quota = CpuQuota::new(1);
    assert_eq!(
        sync_once(&up.file_url(), Some(&quota)),
        (1, 1),
        "under a quota of one CPU, one thread whatever the cores"
    );
}
