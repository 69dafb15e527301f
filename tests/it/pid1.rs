//! The sidecar as PID 1 of its own PID namespace, as in a container without
//! an init: started through `unshare --pid --fork --mount-proc` (util-linux;
//! needs root, which CI is). Processes that hooks leave behind are re-parented
//! to PID 1 and must be reaped there, and a hook killed at its timeout must
//! leave nothing behind, zombies included. Processes of the namespace are
//! read from the host's /proc (descendants of the `unshare` process).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::support::sidecar::{bin, describe_status};
use crate::support::*;

/// One process as /proc/<pid>/stat shows it.
#[derive(Debug)]
struct Proc {
    pid: i32,
    ppid: i32,
    state: char,
    comm: String,
}

/// Every process on the host (those that vanish while we read are skipped).
fn all_procs() -> Vec<Proc> {
    let entries = fs::read_dir("/proc").expect("reading /proc");
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // "pid (comm) S ppid ...": comm may hold spaces and parentheses.
            let (head, tail) = stat.rsplit_once(')')?;
            let comm = head.split_once('(')?.1.to_string();
            let mut fields = tail.split_whitespace();
            let state = fields.next()?.chars().next()?;
            let ppid = fields.next()?.parse().ok()?;
            Some(Proc {
                pid,
                ppid,
                state,
                comm,
            })
        })
        .collect()
}

/// The processes below `ancestor` (not itself).
fn descendants(ancestor: Pid) -> Vec<Proc> {
    let procs = all_procs();
    let mut inside = vec![ancestor.as_raw()];
    let mut found = Vec::new();
    let mut grew = true;
    let mut rest = procs;
    while grew {
        let (now, later): (Vec<Proc>, Vec<Proc>) =
            rest.into_iter().partition(|p| inside.contains(&p.ppid));
        grew = !now.is_empty();
        inside.extend(now.iter().map(|p| p.pid));
        found.extend(now);
        rest = later;
    }
    found
}

/// `unshare`'s path, or a panic saying what to install.
fn unshare() -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("unshare"))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!("unshare not found: install util-linux (Debian/Ubuntu: apt-get install util-linux)")
    })
}

/// The standard arguments, run as PID 1 of a new PID namespace; the
/// namespace dies with `unshare` (`--kill-child`), so with the test.
fn sidecar_as_pid1(s: &Scratch, repo_url: &str) -> Sidecar {
    Sidecar::program(unshare())
        .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(bin())
        .args(["--repo", repo_url, "--root"])
        .arg(&s.root)
        .args(["--link", LINK])
}

/// The namespace's PID 1 (unshare's one child), once it exists.
fn namespace_init(run: &Running) -> Pid {
    let mut init = None;
    run.wait_until(DEADLINE, "the namespace's PID 1", || {
        init = all_procs()
            .into_iter()
            .find(|p| p.ppid == run.pid().as_raw())
            .map(|p| Pid::from_raw(p.pid));
        init.is_some()
    });
    init.expect("found")
}

/// Writes an executable `/bin/sh` script `<scratch>/<name>` with `body`.
fn script(s: &Scratch, name: &str, body: &str) -> PathBuf {
    let p = s.dir.path().join(name);
    fs::write(&p, format!("#!/bin/sh\n{body}")).expect("writing a hook script");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod 0755");
    p
}

fn text(p: &Path) -> String {
    p.to_str().expect("utf-8 temp path").to_string()
}

/// Waits until no process named `sleep` is left in the namespace (running
/// or zombie), and panics with the namespace's processes if one stays.
fn assert_no_sleep_left(run: &Running, what: &str) {
    let gone = poll_until(DEADLINE, || {
        !descendants(run.pid()).iter().any(|p| p.comm == "sleep")
    });
    let left = descendants(run.pid());
    assert!(
        gone,
        "{what}: processes remain in the namespace (state Z = an unreaped zombie):\n{left:#?}\n{}",
        run.logs()
    );
}

/// An exec hook that double-forks a short-lived child on every publish (as
/// a script starting a daemon does): the orphans end up as children of PID 1
/// and, once they exit, must not stay zombies. SIGTERM to PID 1 still stops
/// the sidecar cleanly.
#[test]
fn orphans_left_by_hooks_are_reaped_as_pid1() {
    let up = Upstream::new();
    let first = up.commit_file("f", "1", "a");
    let s = Scratch::new();
    let marker = s.dir.path().join("hook-ran");
    let hook = script(
        &s,
        "hook.sh",
        &format!(
            "( sleep 0.1 >/dev/null 2>&1 & )\necho \"$GITSYNC_HASH\" >> '{}'\n",
            text(&marker)
        ),
    );
    let run = sidecar_as_pid1(&s, &up.file_url())
        .args(["--period", "100ms", "--exechook-command"])
        .arg(&hook)
        .spawn();
    let mut published = vec![first];
    for i in 2..=3 {
        let hash = published.last().expect("a commit").clone();
        run.wait_until(DEADLINE, &format!("the hook for {hash}"), || {
            fs::read_to_string(&marker).is_ok_and(|t| t.contains(&hash))
        });
        published.push(up.commit_file("f", i.to_string(), &format!("c{i}")));
    }
    let last = published.last().expect("a commit").clone();
    run.wait_until(DEADLINE, "the last hook", || {
        fs::read_to_string(&marker).is_ok_and(|t| t.contains(&last))
    });
    assert_no_sleep_left(&run, "after three hooks that left orphans");
    let zombies: Vec<Proc> = descendants(run.pid())
        .into_iter()
        .filter(|p| p.state == 'Z')
        .collect();
    assert!(zombies.is_empty(), "zombies: {zombies:#?}\n{}", run.logs());

    kill(namespace_init(&run), Signal::SIGTERM).expect("SIGTERM to the namespace's PID 1");
    let status = run
        .wait_timeout(DEADLINE)
        .unwrap_or_else(|| panic!("SIGTERM to PID 1 did not stop the sidecar\n{}", run.logs()));
    assert!(
        status.success(),
        "SIGTERM: {}\n{}",
        describe_status(status),
        run.logs()
    );
}

/// An exec hook that starts `sleep 1000` children (one of them double-forked)
/// and never finishes: at `--exechook-timeout` it is killed with all of
/// them, and as PID 1 none stays behind as a zombie either.
#[test]
fn timed_out_hook_leaves_no_process_as_pid1() {
    let up = Upstream::new();
    up.commit_file("f", "1", "a");
    let s = Scratch::new();
    let marker = s.dir.path().join("hook-started");
    let hook = script(
        &s,
        "hook.sh",
        &format!(
            "sleep 1000 >/dev/null 2>&1 &\n( sleep 1000 >/dev/null 2>&1 & )\n\
             echo started > '{}'\nwait\n",
            text(&marker)
        ),
    );
    let run = sidecar_as_pid1(&s, &up.file_url())
        .args(["--period", "1h", "--exechook-timeout", "1s"])
        .args(["--exechook-backoff", "1h", "--exechook-command"])
        .arg(&hook)
        .spawn();
    run.wait_until(DEADLINE, "the hook to start", || marker.exists());
    run.wait_until(DEADLINE, "the hook's timeout to be logged", || {
        run.stderr().contains("did not finish within")
    });
    assert_no_sleep_left(&run, "after the hook's timeout");
    let left: Vec<Proc> = descendants(run.pid())
        .into_iter()
        .filter(|p| p.comm == "sh" || p.state == 'Z')
        .collect();
    assert!(left.is_empty(), "left: {left:#?}\n{}", run.logs());
    run.assert_running();
}
