//! How many threads the CPU-bound git work (pack indexing, checkout) gets:
//! the CPUs the cgroup's CPU quota pays for, not the node's cores. A pod
//! limited to one CPU on a 64-core node that starts 64 indexing threads is
//! throttled for most of each CFS period and uses 64 stacks and buffers.
//!
//! The quota is read from cgroup v2 (`cpu.max`) or v1 (`cpu.cfs_quota_us` /
//! `cpu.cfs_period_us`), at the process's own cgroup and at every ancestor
//! up to the mount point (the smallest wins), found through
//! `/proc/self/cgroup` and `/proc/self/mountinfo` as the kernel reports them
//! inside a container. A fraction is rounded down (1.5 CPUs: 1 thread), but
//! never below one thread.
//!
//! Rust's `std::thread::available_parallelism`, which this starts from,
//! applies the quota as well (v1 and v2): with the reading below removed,
//! the end-to-end test in a real v1 cgroup (`tests/it/resource_limits.rs`)
//! still passes, so that test checks what the two give together and cannot
//! catch a fault in this module's reading alone; the unit tests below do
//! (every ancestor, both versions, a container's mount roots).

use std::path::{Path, PathBuf};

/// Threads for pack indexing and checkout: the cgroup CPU quota, the
/// affinity mask and the online cores, whichever is smallest, read anew on
/// each call. The app calls it once, at start-up, for the engine's
/// `threads` option, which opens the repository with it (see
/// [`crate::git::store::open`]).
pub fn worker_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let threads = choose(cores, quota_cpus_under(Path::new("/")));
    tracing::debug!(cores, threads, "threads for pack indexing and checkout");
    threads
}

/// The thread count for `cores` usable cores and a quota of `quota` CPUs.
fn choose(cores: usize, quota: Option<usize>) -> usize {
    quota.map_or(cores, |q| q.min(cores)).max(1)
}

/// The CPUs the cgroup quotas allow, read below `root` (`/` in production,
/// a fixture directory in tests); `None` when no quota is set.
pub(crate) fn quota_cpus_under(root: &Path) -> Option<usize> {
    let cgroups = std::fs::read_to_string(root.join("proc/self/cgroup")).ok()?;
    let mountinfo = std::fs::read_to_string(root.join("proc/self/mountinfo")).ok()?;
    let mounts: Vec<Mount> = mountinfo.lines().filter_map(Mount::parse).collect();
    cgroups
        .lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            let v2 = controllers.is_empty();
            if !v2 && !controllers.split(',').any(|c| c == "cpu") {
                return None;
            }
            let mount = mounts.iter().find(|m| m.serves(v2))?;
            let quota = |dir: &Path| match v2 {
                true => read(&dir.join("cpu.max")).and_then(|t| parse_cpu_max(&t)),
                false => parse_cfs(
                    &read(&dir.join("cpu.cfs_quota_us"))?,
                    &read(&dir.join("cpu.cfs_period_us"))?,
                ),
            };
            mount.dirs_up(root, path).filter_map(|d| quota(&d)).min()
        })
        .min()
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// A cgroup file system in `/proc/self/mountinfo`.
struct Mount {
    /// The cgroup path the mount shows at its top (`/` unless namespaced oddly).
    root: String,
    mount_point: PathBuf,
    v2: bool,
    /// v1: the controllers mounted there (`cpu,cpuacct`).
    options: String,
}

impl Mount {
    /// `36 35 0:30 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu`
    fn parse(line: &str) -> Option<Self> {
        let (before, after) = line.split_once(" - ")?;
        let mut fields = before.split(' ');
        let root = fields.nth(3)?.to_string();
        let mount_point = PathBuf::from(unescape(fields.next()?));
        let mut after = after.split(' ');
        let fs_type = after.next()?;
        let options = after.nth(1).unwrap_or_default().to_string();
        Some(Self {
            root,
            mount_point,
            v2: fs_type == "cgroup2",
            options,
        })
        .filter(|_| fs_type == "cgroup" || fs_type == "cgroup2")
    }

    fn serves(&self, v2: bool) -> bool {
        match v2 {
            true => self.v2,
            false => !self.v2 && self.options.split(',').any(|o| o == "cpu"),
        }
    }

    /// The directory of cgroup `path` and of each ancestor visible in this
    /// mount, innermost first, below `root`.
    fn dirs_up<'a>(&'a self, root: &'a Path, path: &str) -> impl Iterator<Item = PathBuf> + 'a {
        let relative = path
            .strip_prefix(self.root.as_str())
            .unwrap_or(path)
            .trim_matches('/');
        let top = root.join(
            self.mount_point
                .strip_prefix("/")
                .unwrap_or(&self.mount_point),
        );
        let parts: Vec<String> = relative
            .split('/')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect();
        (0..=parts.len())
            .rev()
            .map(move |n| parts[..n].iter().fold(top.clone(), |d, p| d.join(p)))
    }
}

/// mountinfo escapes spaces and the like as `\040`.
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// cgroup v2 `cpu.max`: `<quota> <period>` in µs, or `max <period>`.
fn parse_cpu_max(text: &str) -> Option<usize> {
    let mut fields = text.split_whitespace();
    let quota = fields.next()?.parse().ok()?;
    let period = fields.next().map_or(Some(100_000), |p| p.parse().ok())?;
    cpus(quota, period)
}

/// cgroup v1: `cpu.cfs_quota_us` is -1 when unlimited.
fn parse_cfs(quota: &str, period: &str) -> Option<usize> {
    cpus(quota.trim().parse().ok()?, period.trim().parse().ok()?)
}

fn cpus(quota: u64, period: u64) -> Option<usize> {
    if period == 0 {
        return None;
    }
    usize::try_from(quota / period).ok().map(|n| n.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A fixture root holding `/proc/self/{cgroup,mountinfo}` and the
    /// cgroup files at their paths below it.
    fn fixture(cgroup: &str, mountinfo: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |rel: &str, content: &str| {
            let path = dir.path().join(rel);
            fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            fs::write(path, content).expect("write");
        };
        write("proc/self/cgroup", cgroup);
        write("proc/self/mountinfo", mountinfo);
        for (rel, content) in files {
            write(rel, content);
        }
        dir
    }

    const V2_MOUNT: &str = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n";

    #[test]
    fn v2_quota_of_the_process_cgroup() {
        let root = fixture(
            "0::/kubepods/pod1/ctr\n",
            V2_MOUNT,
            &[
                ("sys/fs/cgroup/kubepods/pod1/ctr/cpu.max", "250000 100000\n"),
                ("sys/fs/cgroup/kubepods/pod1/cpu.max", "max 100000\n"),
            ],
        );
        assert_eq!(
            quota_cpus_under(root.path()),
            Some(2),
            "2.5 CPUs round down"
        );
    }

    #[test]
    fn v2_smallest_quota_among_the_ancestors_wins() {
        let root = fixture(
            "0::/kubepods/pod1/ctr\n",
            V2_MOUNT,
            &[
                ("sys/fs/cgroup/kubepods/pod1/ctr/cpu.max", "max 100000\n"),
                ("sys/fs/cgroup/kubepods/pod1/cpu.max", "50000 100000\n"),
                ("sys/fs/cgroup/kubepods/cpu.max", "800000 100000\n"),
            ],
        );
        assert_eq!(
            quota_cpus_under(root.path()),
            Some(1),
            "half a CPU: one thread"
        );
    }

    #[test]
    fn v2_without_quota_and_a_namespaced_mount() {
        let unlimited = fixture(
            "0::/\n",
            V2_MOUNT,
            &[("sys/fs/cgroup/cpu.max", "max 100000\n")],
        );
        assert_eq!(quota_cpus_under(unlimited.path()), None);
        // In a cgroup namespace the process sees its own cgroup as `/`.
        let namespaced = fixture(
            "0::/\n",
            V2_MOUNT,
            &[("sys/fs/cgroup/cpu.max", "300000 100000\n")],
        );
        assert_eq!(quota_cpus_under(namespaced.path()), Some(3));
    }

    #[test]
    fn v1_cfs_quota_through_the_cpu_controller_mount() {
        let mountinfo = "\
35 25 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
36 25 0:30 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
37 25 0:31 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
";
        let root = fixture(
            "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n",
            mountinfo,
            &[
                (
                    "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us",
                    "300000\n",
                ),
                (
                    "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us",
                    "100000\n",
                ),
                ("sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "-1\n"),
                ("sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n"),
                ("sys/fs/cgroup/unified/cpu.max", "max 100000\n"),
            ],
        );
        assert_eq!(quota_cpus_under(root.path()), Some(3));
    }

    #[test]
    fn v1_unlimited_and_missing_files_mean_no_quota() {
        let mountinfo = "36 25 0:30 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n";
        let root = fixture(
            "2:cpu:/\n",
            mountinfo,
            &[
                ("sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1\n"),
                ("sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n"),
            ],
        );
        assert_eq!(quota_cpus_under(root.path()), None);
        let empty = tempfile::tempdir().expect("tempdir");
        assert_eq!(quota_cpus_under(empty.path()), None);
    }

    #[test]
    fn the_quota_caps_the_cores_and_never_goes_below_one() {
        assert_eq!(choose(64, Some(2)), 2);
        assert_eq!(choose(2, Some(8)), 2, "a quota above the cores: the cores");
        assert_eq!(choose(4, None), 4);
        assert_eq!(choose(0, Some(0)), 1);
    }

    #[test]
    fn mount_points_with_escaped_spaces() {
        assert_eq!(unescape(r"/a\040b/c"), "/a b/c");
        assert_eq!(unescape(r"/plain\x"), r"/plain\x");
    }
}
