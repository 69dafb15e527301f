//! The reload hook: signal a process found by name in `/proc`.
//!
//! Among the processes whose `/proc/PID/comm` equals the name, only those
//! whose parent has a different name are signalled: for nginx that is the
//! master, not its workers. Needs a shared process namespace in a pod
//! (`shareProcessNamespace: true`) and the same UID as the target (or
//! `CAP_KILL`).

use std::path::Path;

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// `/proc/PID/comm` holds at most this many bytes of the name.
const COMM_MAX: usize = 15;

/// Sends `signal` to every top-level process named `name`.
pub(super) fn signal_by_name(name: &str, signal: i32) -> Result<(), String> {
    signal_by_name_in(Path::new("/proc"), name, signal)
}

fn signal_by_name_in(proc: &Path, name: &str, signal: i32) -> Result<(), String> {
    let signal = Signal::try_from(signal).map_err(|_| format!("invalid signal number {signal}"))?;
    let wanted = comm_of_name(name);
    let own = std::process::id();
    let targets = find_targets(proc, wanted, own)?;
    let mut signalled = Vec::new();
    let mut errors = Vec::new();
    for pid in targets {
        match kill(Pid::from_raw(pid), signal) {
            Ok(()) => signalled.push(pid),
            // It exited since we looked.
            Err(Errno::ESRCH) => {}
            Err(Errno::EPERM) => errors.push(permission_denied(name, pid)),
            Err(e) => errors.push(format!("signalling {name} (pid {pid}): {e}")),
        }
    }
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    if signalled.is_empty() {
        return Err(not_found(name));
    }
    tracing::debug!(hook = "reload", process = name, signal = signal.as_str(), pids = ?crate::logging::json(&signalled), "signalled");
    Ok(())
}

fn permission_denied(name: &str, pid: i32) -> String {
    format!(
        "permission denied signalling {name} (pid {pid}): it runs as a different user; \
         run git-sidecar with the same UID or grant CAP_KILL"
    )
}

fn not_found(name: &str) -> String {
    format!("no process named {name} found (is shareProcessNamespace: true set?)")
}

/// The name as the kernel stores it in `comm` (cut to 15 bytes).
fn comm_of_name(name: &str) -> &[u8] {
    let bytes = name.as_bytes();
    &bytes[..bytes.len().min(COMM_MAX)]
}

/// PIDs named `wanted` whose parent is named otherwise, except `own`.
fn find_targets(proc: &Path, wanted: &[u8], own: u32) -> Result<Vec<i32>, String> {
    let entries =
        std::fs::read_dir(proc).map_err(|e| format!("cannot list {}: {e}", proc.display()))?;
    let mut targets = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == own || comm(proc, pid).as_deref() != Some(wanted) {
            continue;
        }
        // Processes vanish between the listing and here, and zombies cannot
        // act on a signal: skip both.
        let Some((state, parent)) = state_and_parent(proc, pid) else {
            continue;
        };
        if state == "Z" || state == "X" {
            continue;
        }
        if parent != 0 && comm(proc, parent).as_deref() == Some(wanted) {
            continue;
        }
        if let Ok(pid) = i32::try_from(pid) {
            targets.push(pid);
        }
    }
    targets.sort_unstable();
    Ok(targets)
}

/// `/proc/PID/comm` without its newline.
fn comm(proc: &Path, pid: u32) -> Option<Vec<u8>> {
    let mut bytes = std::fs::read(proc.join(pid.to_string()).join("comm")).ok()?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    Some(bytes)
}

/// The 3rd and 4th fields of `/proc/PID/stat`, state and parent PID (after
/// the parenthesised name, which may itself hold spaces and parentheses).
fn state_and_parent(proc: &Path, pid: u32) -> Option<(String, u32)> {
    let stat = std::fs::read(proc.join(pid.to_string()).join("stat")).ok()?;
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.to_string();
    let parent = fields.next()?.parse().ok()?;
    Some((state, parent))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake `/proc`: (pid, comm, state, parent).
    fn fake_proc(entries: &[(u32, &str, &str, u32)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for &(pid, comm, state, parent) in entries {
            let d = dir.path().join(pid.to_string());
            std::fs::create_dir(&d).expect("mkdir");
            std::fs::write(d.join("comm"), format!("{comm}\n")).expect("comm");
            std::fs::write(
                d.join("stat"),
                format!("{pid} ({comm}) {state} {parent} {pid} {pid} 0 -1 4194560 0 0"),
            )
            .expect("stat");
        }
        std::fs::create_dir(dir.path().join("self")).expect("self");
        std::fs::write(dir.path().join("uptime"), "1 1").expect("uptime");
        dir
    }

    #[test]
    fn picks_masters_not_workers_zombies_or_ourselves() {
        let proc = fake_proc(&[
            (1, "tini", "S", 0),
            (10, "nginx", "S", 1),
            (11, "nginx", "S", 10),
            (12, "nginx", "R", 10),
            (20, "nginx", "Z", 1),
            (30, "sleep", "S", 10),
            (40, "nginx", "S", 30),
            (50, "nginx", "S", 1),
            (60, "a) b (c", "S", 1),
            (70, "a) b (c", "S", 60),
        ]);
        assert_eq!(
            find_targets(proc.path(), b"nginx", 999),
            Ok(vec![10, 40, 50])
        );
        assert_eq!(find_targets(proc.path(), b"nginx", 50), Ok(vec![10, 40]));
        assert_eq!(find_targets(proc.path(), b"a) b (c", 999), Ok(vec![60]));
        assert_eq!(find_targets(proc.path(), b"httpd", 999), Ok(vec![]));
    }

    #[test]
    fn a_parent_in_another_namespace_counts_as_different() {
        let proc = fake_proc(&[(7, "nginx", "S", 0), (8, "nginx", "S", 5)]);
        assert_eq!(find_targets(proc.path(), b"nginx", 999), Ok(vec![7, 8]));
    }

    #[test]
    fn long_names_are_matched_as_the_kernel_cuts_them() {
        assert_eq!(comm_of_name("a-very-long-process-name"), b"a-very-long-pro");
        assert_eq!(comm_of_name("nginx"), b"nginx");
    }

    #[test]
    fn errors_say_what_to_do() {
        let e = permission_denied("nginx", 42);
        assert!(
            e.contains("pid 42") && e.contains("same UID") && e.contains("CAP_KILL"),
            "{e}"
        );
        let e = not_found("nginx");
        assert!(
            e.contains("no process named nginx") && e.contains("shareProcessNamespace: true"),
            "{e}"
        );
        let e = signal_by_name_in(Path::new("/proc"), "nginx", 12345).expect_err("bad signal");
        assert!(e.contains("12345"), "{e}");
    }
}
