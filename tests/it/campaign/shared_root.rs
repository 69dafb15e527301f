//! Shared root: two instances on one `--root`, as a rolling update on a
//! ReadWriteMany volume, two sidecars with different refs on one volume, or
//! an operator's `--one-time` by hand produce them. The first keeps serving
//! and nothing of it is deleted; the second waits (not ready, still alive,
//! stops on SIGTERM) or, with `--one-time`, exits saying who holds the root;
//! when the holder goes, the waiter takes over.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::start_with_http;
use crate::support::client;
use crate::support::sidecar::describe_output;
use crate::support::*;

/// What the waiter logs, naming the holder's PID.
fn waiting_line(holder: &Running) -> String {
    format!("pid {} on ", holder.pid())
}

/// Waits until `waiter` has logged that `holder` holds the root.
fn wait_for_waiting(waiter: &Running, holder: &Running) {
    let needle = waiting_line(holder);
    waiter.wait_until(DEADLINE, "the waiting-for-the-root-lock log line", || {
        let err = waiter.stderr();
        err.contains("holds the lock on this root") && err.contains(&needle)
    });
}

/// `GET path` → (status, body).
fn get(addr: &str, path: &str) -> (u16, String) {
    let r = client::get(addr, path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
    (r.status, r.text())
}

/// The published worktree and everything under it, by path and inode.
fn published_inodes(s: &Scratch) -> std::collections::HashMap<String, u64> {
    let sha = s.published().expect("something is published");
    inodes(&s.worktrees().join(sha))
}

#[test]
fn a_second_instance_with_another_ref_waits_and_takes_over() {
    let up = Upstream::new();
    let v1 = up.commit_rich_tree("v1");
    up.branch("other");
    let s = Scratch::new();
    let (first, _) = start_with_http(s.sidecar(&up.file_url()).args(["--period", "200ms"]));
    first.wait_for_link_hash(&s.link(), &v1);
    let before = published_inodes(&s);

    let other_link = s.root.join("other-site");
    let (second, addr) = start_with_http(
        Sidecar::new()
            .args(["--repo", &up.file_url(), "--ref", "other", "--link"])
            .arg(&other_link)
            .arg("--root")
            .arg(&s.root)
            .args(["--period", "200ms"]),
    );
    wait_for_waiting(&second, &first);
    let (code, body) = get(&addr, "/readyz");
    assert_eq!(code, 503, "a waiter is not ready: {body}");
    assert!(body.contains("waiting for the lock on --root"), "{body}");
    assert!(body.contains(&waiting_line(&first)), "{body}");
    assert_eq!(get(&addr, "/livez").0, 200, "a waiter is alive");

    assert_eq!(published_inodes(&s), before, "the waiter touched the tree");
    assert!(!other_link.exists(), "the waiter published nothing");

    // The first keeps fetching and publishing (its locks were left alone).
    let v2 = up.commit_file("v2.txt", "v2\n", "v2");
    first.wait_for_link_hash(&s.link(), &v2);
    assert_tree_matches_commit(&s.link(), &up, &v2);
    assert!(!other_link.exists(), "the waiter published nothing");
    first.assert_running();
    second.assert_running();

    // The holder dies; the waiter takes over.
    first.kill9();
    second.wait_for_link_hash(&other_link, &v1);
    assert_tree_matches_commit(&other_link, &up, &v1);
    second.wait_until(DEADLINE, "/readyz 200 after the take-over", || {
        get(&addr, "/readyz").0 == 200
    });
    assert!(second.stderr().contains("got the root lock"));
}

#[test]
fn one_time_by_hand_against_a_running_instance_exits_and_touches_nothing() {
    let up = Upstream::new();
    let v1 = up.commit_rich_tree("v1");
    let s = Scratch::new();
    let (first, addr) = start_with_http(s.sidecar(&up.file_url()).args(["--period", "200ms"]));
    first.wait_for_link_hash(&s.link(), &v1);
    let before = published_inodes(&s);
    let root_entries = list_dir(&s.root);

    let out = s
        .sidecar(&up.file_url())
        .arg("--one-time")
        .run(Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", describe_output(&out));
    for needle in [
        "holds the lock on --root",
        "--one-time does not wait",
        &waiting_line(&first),
    ] {
        assert!(stderr.contains(needle), "{needle:?} missing:\n{stderr}");
    }
    assert_eq!(published_inodes(&s), before, "the published tree changed");
    assert_eq!(list_dir(&s.root), root_entries);

    // The running instance still fetches and publishes.
    let v2 = up.commit_file("v2.txt", "v2\n", "v2");
    first.wait_for_link_hash(&s.link(), &v2);
    assert_tree_matches_commit(&s.link(), &up, &v2);
    assert_eq!(get(&addr, "/readyz").0, 200);

    // Once it has exited, the same command succeeds.
    first.signal(Signal::SIGTERM);
    assert!(first.wait_timeout(DEADLINE).is_some(), "{}", first.logs());
    let out = s
        .sidecar(&up.file_url())
        .arg("--one-time")
        .run(Duration::from_secs(60));
    assert!(out.status.success(), "{}", describe_output(&out));
    assert_eq!(s.published().as_deref(), Some(v2.as_str()));
}

#[test]
fn a_waiter_stops_on_sigterm() {
    let up = Upstream::new();
    let v1 = up.commit_rich_tree("v1");
    let s = Scratch::new();
    let first = s.sidecar(&up.file_url()).spawn();
    first.wait_for_link_hash(&s.link(), &v1);
    let second = s.sidecar(&up.file_url()).spawn();
    wait_for_waiting(&second, &first);
    second.signal(Signal::SIGTERM);
    let status = second.wait_timeout(DEADLINE);
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", second.logs());
    first.assert_running();
}

/// Watches `link` from another thread: every look must find a directory
/// whose `version.txt` holds a version no older than the last one seen.
struct Watcher {
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<Result<usize, String>>>,
}

impl Watcher {
    fn start(link: PathBuf) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = thread::spawn(move || watch(&link, &flag));
        Watcher {
            stop,
            handle: Some(handle),
        }
    }

    /// Panics with the first broken look, if there was one yet.
    fn assert_unbroken(&mut self, old: &Running, new: &Running) {
        if self.handle.as_ref().is_some_and(|h| h.is_finished()) {
            let handle = self.handle.take().expect("checked");
            let verdict = handle.join().unwrap_or_else(|_| Err("panicked".into()));
            panic!(
                "the link broke: {verdict:?}\n--- old ---\n{}\n--- new ---\n{}",
                old.logs(),
                new.logs()
            );
        }
    }

    /// Stops watching; the number of looks, or the first broken one.
    fn finish(mut self) -> Result<usize, String> {
        self.stop.store(true, Ordering::Relaxed);
        let handle = self.handle.take().expect("joined once");
        handle
            .join()
            .unwrap_or_else(|_| Err("the watcher panicked".into()))
    }
}

fn watch(link: &Path, stop: &AtomicBool) -> Result<usize, String> {
    let mut last = 0u64;
    let mut looks = 0;
    while !stop.load(Ordering::Relaxed) {
        // One open through the link: resolved atomically by the kernel.
        let text = fs::read_to_string(link.join("version.txt"))
            .map_err(|e| format!("look {looks}: {}/version.txt: {e}", link.display()))?;
        let version: u64 = text
            .trim()
            .parse()
            .map_err(|e| format!("look {looks}: version.txt holds {text:?}: {e}"))?;
        if version < last {
            return Err(format!("went back from version {last} to {version}"));
        }
        last = version;
        looks += 1;
        thread::sleep(Duration::from_millis(2));
    }
    Ok(looks)
}

/// A rolling update on a shared volume: the new instance starts while the
/// old one publishes a commit every few hundred milliseconds; the old one
/// gets SIGTERM as the kubelet sends it, the new one takes over. The link
/// never breaks and never points at a missing tree.
#[test]
fn rolling_update_on_a_shared_root_never_breaks_the_link() {
    let up = Upstream::new();
    // Enough files that a checkout takes a while for the other to trip on.
    for i in 0..300 {
        up.write_file(&format!("pages/{}/{i}.html", i % 10), format!("page {i}\n"));
    }
    let mut version = 1u64;
    let head = up.commit_file("version.txt", "1\n", "version 1");
    let s = Scratch::new();
    let args = ["--period", "100ms", "--max-failures", "-1"];
    let old = s.sidecar(&up.file_url()).args(args).spawn();
    old.wait_for_link_hash(&s.link(), &head);
    let mut watcher = Watcher::start(s.link());
    let mut commit_next = || {
        version += 1;
        up.commit_file(
            "version.txt",
            format!("{version}\n"),
            &format!("version {version}"),
        )
    };
    let publish_next = |run: &Running, commit: &mut dyn FnMut() -> String| {
        let head = commit();
        run.wait_for_link_hash(&s.link(), &head);
        head
    };
    for _ in 0..5 {
        publish_next(&old, &mut commit_next);
    }
    let new = s.sidecar(&up.file_url()).args(args).spawn();
    // Both run side by side while commits come faster than the polls.
    for _ in 0..40 {
        commit_next();
        thread::sleep(Duration::from_millis(30));
        watcher.assert_unbroken(&old, &new);
    }
    publish_next(&old, &mut commit_next);
    watcher.assert_unbroken(&old, &new);
    for run in [&old, &new] {
        run.assert_running();
        assert!(!run.stderr().contains("sync failed"), "{}", run.logs());
    }
    wait_for_waiting(&new, &old);
    old.signal(Signal::SIGTERM);
    assert!(old.wait_timeout(DEADLINE).is_some(), "{}", old.logs());
    for _ in 0..10 {
        publish_next(&new, &mut commit_next);
    }
    let last = publish_next(&new, &mut commit_next);
    let looks = watcher.finish().unwrap_or_else(|e| {
        panic!(
            "the link broke: {e}\n--- old ---\n{}\n--- new ---\n{}",
            old.logs(),
            new.logs()
        )
    });
    assert_tree_matches_commit(&s.link(), &up, &last);
    assert_published_layout(&s.root, &s.link());
    println!("{looks} looks through the link, {version} versions, never broken");
}

/// Someone deletes the lock file of a running instance (a clean-up script,
/// an operator tidying the volume) and a second instance starts on the
/// root: its lock on the new file is real, so the first must stop touching
/// the root, say why, and leave the second to sync and publish alone. With
/// failures allowed it stays up, not ready; by default (`--max-failures 0`)
/// it exits, and its restart waits for the lock.
#[test]
fn a_deleted_lock_file_lets_no_two_instances_write_the_root() {
    let up = Upstream::new();
    let v1 = up.commit_rich_tree("v1");
    let s = Scratch::new();
    let (first, first_addr) = start_with_http(s.sidecar(&up.file_url()).args([
        "--period",
        "200ms",
        "--max-failures",
        "-1",
    ]));
    first.wait_for_link_hash(&s.link(), &v1);
    let second = second_after_the_lock_file_is_gone(&first, &s, &up);
    first.wait_until(DEADLINE, "the first's lost-lock error", || {
        first
            .stderr()
            .contains("was removed or replaced while this instance held it")
    });
    assert!(
        first
            .stderr()
            .contains(&format!("pid {} on ", second.pid())),
        "the error names the new holder: {}",
        first.logs()
    );
    let v2 = up.commit_file("v2.txt", "v2\n", "v2");
    second.wait_for_link_hash(&s.link(), &v2);
    assert_tree_matches_commit(&s.link(), &up, &v2);
    // Not ready once its failures pass `--readiness-max-failures`.
    first.wait_until(DEADLINE, "the first to turn unready", || {
        get(&first_addr, "/readyz").0 == 503
    });
    first.assert_running();

    // By default the first failure ends the process.
    let s = Scratch::new();
    let (first, _) = start_with_http(s.sidecar(&up.file_url()).args(["--period", "200ms"]));
    first.wait_for_link_hash(&s.link(), &v2);
    let second = second_after_the_lock_file_is_gone(&first, &s, &up);
    let status = first.wait_timeout(DEADLINE).expect("the first exits");
    assert!(!status.success(), "{}", first.logs());
    assert!(
        first
            .stderr()
            .contains(&format!("pid {} on ", second.pid())),
        "{}",
        first.logs()
    );
    second.assert_running();
}

/// With `first` stopped (so that its next pass cannot lock the new file
/// first), removes the root's lock file, starts a second instance on the
/// root and waits until it has synced; then lets `first` go on.
fn second_after_the_lock_file_is_gone(first: &Running, s: &Scratch, up: &Upstream) -> Running {
    first.signal(Signal::SIGSTOP);
    fs::remove_file(s.root.join(".git-sidecar.lock")).expect("removing the lock file");
    let (second, addr) = start_with_http(s.sidecar(&up.file_url()).args(["--period", "200ms"]));
    second.wait_until(DEADLINE, "the second's first sync", || {
        get(&addr, "/readyz").0 == 200
    });
    first.signal(Signal::SIGCONT);
    second
}

/// The whole root deleted under a running instance (a volume wiped by
/// hand): the next pass locks a new root, clones again and publishes,
/// instead of failing on the missing store for ever.
#[test]
fn a_deleted_root_is_locked_again_and_synced_from_scratch() {
    let up = Upstream::new();
    let v1 = up.commit_rich_tree("v1");
    let s = Scratch::new();
    let (first, addr) = start_with_http(s.sidecar(&up.file_url()).args(["--period", "200ms"]));
    first.wait_for_link_hash(&s.link(), &v1);
    // As `rm -rf` by hand: again while the instance writes in it.
    while let Err(e) = fs::remove_dir_all(&s.root) {
        assert_eq!(e.kind(), std::io::ErrorKind::DirectoryNotEmpty, "{e}");
    }
    first.wait_for_link_hash(&s.link(), &v1);
    assert_tree_matches_commit(&s.link(), &up, &v1);
    assert!(
        first.stderr().contains("the root's lock file was removed"),
        "{}",
        first.logs()
    );
    let v2 = up.commit_file("v2.txt", "v2\n", "v2");
    first.wait_for_link_hash(&s.link(), &v2);
    assert_eq!(get(&addr, "/readyz").0, 200);
}
