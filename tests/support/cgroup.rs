//! A cgroup with a CPU quota, made in the host's own cgroup hierarchy (v1's
//! `cpu` controller or v2 with `cpu` enabled), for a process the tests start
//! in it (`Sidecar::cgroup`), as a pod's `resources.limits.cpu` does.
//! Needs root; a host without a writable CPU controller fails the test
//! saying so.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh cgroup limited to `cpus` CPUs; removed when dropped (the
/// processes started in it must have exited by then).
pub struct CpuQuota {
    dir: PathBuf,
}

const PERIOD_US: u64 = 100_000;

impl CpuQuota {
    pub fn new(cpus: u64) -> Self {
        let (mount, v2) = cpu_controller().unwrap_or_else(|| {
            panic!(
                "no cgroup CPU controller found in /proc/self/mountinfo: run the tests as root on a \
                 host with cgroup v1's `cpu` controller or cgroup v2 with `cpu` in cgroup.controllers"
            )
        });
        static MADE: AtomicUsize = AtomicUsize::new(0);
        let dir = mount.join(format!(
            "git-sidecar-test-{}-{}",
            std::process::id(),
            MADE.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir(&dir).unwrap_or_else(|e| {
            panic!(
                "cannot create the cgroup {} (the tests need root and a writable cgroup \
                 hierarchy): {e}",
                dir.display()
            )
        });
        let quota = cpus * PERIOD_US;
        let write = |name: &str, value: String| {
            fs::write(dir.join(name), &value)
                .unwrap_or_else(|e| panic!("writing {value} to {}/{name}: {e}", dir.display()))
        };
        if v2 {
            write("cpu.max", format!("{quota} {PERIOD_US}"));
        } else {
            write("cpu.cfs_period_us", PERIOD_US.to_string());
            write("cpu.cfs_quota_us", quota.to_string());
        }
        CpuQuota { dir }
    }

    /// The directory whose `cgroup.procs` a process joins.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for CpuQuota {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.dir);
    }
}

/// Where the CPU controller is mounted, and whether that is cgroup v2.
fn cpu_controller() -> Option<(PathBuf, bool)> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut v2_mount = None;
    for line in mountinfo.lines() {
        // `... <mount point> <options> - <fs type> <source> <super options>`
        let (before, after) = line.split_once(" - ")?;
        let point = before.split(' ').nth(4)?;
        let mut after = after.split(' ');
        let (fs_type, super_options) = (after.next()?, after.nth(1).unwrap_or(""));
        match fs_type {
            "cgroup" if super_options.split(',').any(|o| o == "cpu") => {
                return Some((PathBuf::from(point), false))
            }
            "cgroup2" => v2_mount = Some(PathBuf::from(point)),
            _ => {}
        }
    }
    let mount = v2_mount?;
    let controllers = fs::read_to_string(mount.join("cgroup.controllers")).ok()?;
    if !controllers.split_whitespace().any(|c| c == "cpu") {
        return None;
    }
    // A child gets `cpu.max` only if its parent passes the controller down.
    let _ = fs::write(mount.join("cgroup.subtree_control"), "+cpu");
    Some((mount, true))
}
