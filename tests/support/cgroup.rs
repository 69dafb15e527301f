//! A cgroup with a CPU quota or a memory limit, made in the host's own
//! cgroup hierarchy (cgroup v1's controller, or v2 with the controller
//! enabled), for a process the tests start in it (`Sidecar::cgroup`), as a
//! pod's `resources.limits` do. Needs root; a host without a writable
//! controller fails the test saying so.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh cgroup of one controller; removed when dropped (the processes
/// started in it must have exited by then).
pub struct Cgroup {
    dir: PathBuf,
    v2: bool,
}

const PERIOD_US: u64 = 100_000;

impl Cgroup {
    /// A cgroup limited to `cpus` CPUs (`cpu.max`, or v1's CFS quota).
    pub fn cpu_quota(cpus: u64) -> Self {
        let group = Self::new("cpu");
        let quota = cpus * PERIOD_US;
        if group.v2 {
            group.write("cpu.max", &format!("{quota} {PERIOD_US}"));
        } else {
            group.write("cpu.cfs_period_us", &PERIOD_US.to_string());
            group.write("cpu.cfs_quota_us", &quota.to_string());
        }
        group
    }

    /// A cgroup whose memory (page cache included) is limited to `bytes`,
    /// with no swap to spill into (`memory.max`, or v1's limit).
    pub fn memory_limit(bytes: u64) -> Self {
        let group = Self::new("memory");
        if group.v2 {
            group.write("memory.max", &bytes.to_string());
            group.write("memory.swap.max", "0");
        } else {
            group.write("memory.limit_in_bytes", &bytes.to_string());
            // Absent when the kernel keeps no swap accounting: harmless
            // without swap, but with swap a process over the limit would be
            // swapped out instead of killed, and the test could not fail.
            let memsw = fs::write(
                group.dir.join("memory.memsw.limit_in_bytes"),
                bytes.to_string(),
            );
            if memsw.is_err() && swap_is_on() {
                panic!(
                    "this host has swap but no cgroup v1 swap accounting, so a memory limit \
                     cannot stop a process from swapping: boot with swapaccount=1 or swapoff -a"
                );
            }
        }
        group
    }

    /// How many processes the kernel's OOM killer killed in this cgroup.
    pub fn oom_kills(&self) -> u64 {
        let file = match self.v2 {
            true => "memory.events",
            false => "memory.oom_control",
        };
        let text = fs::read_to_string(self.dir.join(file))
            .unwrap_or_else(|e| panic!("reading {}/{file}: {e}", self.dir.display()));
        text.lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no oom_kill count in {file}:\n{text}"))
    }

    /// The directory whose `cgroup.procs` a process joins.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn new(controller: &str) -> Self {
        let (mount, v2) = controller_mount(controller).unwrap_or_else(|| {
            panic!(
                "no cgroup `{controller}` controller found in /proc/self/mountinfo: run the tests \
                 as root on a host with cgroup v1's `{controller}` controller or cgroup v2 with \
                 `{controller}` in cgroup.controllers"
            )
        });
        static MADE: AtomicUsize = AtomicUsize::new(0);
        // Below the test's own cgroup, so the child keeps whatever limits the
        // CI job runs under.
        let dir = mount.join(own_path(controller, v2)).join(format!(
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
        Cgroup { dir, v2 }
    }

    fn write(&self, name: &str, value: &str) {
        fs::write(self.dir.join(name), value)
            .unwrap_or_else(|e| panic!("writing {value} to {}/{name}: {e}", self.dir.display()))
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.dir);
    }
}

/// This process's cgroup in `controller`'s hierarchy, relative to its mount
/// (`/proc/self/cgroup`; "" for the root).
fn own_path(controller: &str, v2: bool) -> PathBuf {
    let cgroups = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let path = cgroups.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let ours = match v2 {
            true => controllers.is_empty(),
            false => controllers.split(',').any(|c| c == controller),
        };
        ours.then(|| path.trim_start_matches('/').to_string())
    });
    PathBuf::from(path.unwrap_or_default())
}

/// Whether `/proc/swaps` lists any swap area.
fn swap_is_on() -> bool {
    fs::read_to_string("/proc/swaps").is_ok_and(|text| text.lines().count() > 1)
}

/// Where `controller` is mounted, and whether that is cgroup v2.
fn controller_mount(controller: &str) -> Option<(PathBuf, bool)> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut v2_mount = None;
    for line in mountinfo.lines() {
        // `... <mount point> <options> - <fs type> <source> <super options>`
        let Some((before, after)) = line.split_once(" - ") else {
            continue;
        };
        let Some(point) = before.split(' ').nth(4) else {
            continue;
        };
        let mut after = after.split(' ');
        let fs_type = after.next().unwrap_or("");
        let super_options = after.nth(1).unwrap_or("");
        match fs_type {
            "cgroup" if super_options.split(',').any(|o| o == controller) => {
                return Some((PathBuf::from(point), false))
            }
            "cgroup2" => v2_mount = Some(PathBuf::from(point)),
            _ => {}
        }
    }
    let mount = v2_mount?;
    let controllers = fs::read_to_string(mount.join("cgroup.controllers")).ok()?;
    if !controllers.split_whitespace().any(|c| c == controller) {
        return None;
    }
    // A child gets the controller's files only if its parent passes it down.
    let _ = fs::write(
        mount.join("cgroup.subtree_control"),
        format!("+{controller}"),
    );
    Some((mount, true))
}
