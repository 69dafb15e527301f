//! Full disk: the root lives on an 8 MiB tmpfs that fills up during a
//! checkout. The old content stays published, `/status` and `/metrics`
//! report the failure, and once space is back the next sync succeeds with
//! nothing left behind. Space comes back in the two ways it does in a pod:
//! something else on the shared volume frees what it used (a filler file
//! here), or a commit removes the files that could never fit.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{find_names, last_error, start_with_http, status, sync_count};
use crate::support::*;

const MIB: usize = 1024 * 1024;
/// The root lock file: kept for good, unlike git's lock files.
const ROOT_LOCK: &str = ".git-sidecar.lock";

/// A tmpfs mounted on a fresh temporary directory; unmounted on drop
/// (lazily if something still holds it).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempdir("tmpfs");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run mount ({e}): install util-linux's mount (Debian: apt-get install mount)"));
        assert!(
            out.status.success(),
            "`mount -t tmpfs` failed ({}): this test needs root or CAP_SYS_ADMIN to mount a small tmpfs\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Bytes still available to an unprivileged writer.
    fn available(&self) -> u64 {
        let st = nix::sys::statvfs::statvfs(self.path()).expect("statvfs on the tmpfs");
        st.blocks_available() * st.fragment_size()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let umount = |lazy: bool| {
            let mut cmd = Command::new("umount");
            if lazy {
                cmd.arg("-l");
            }
            cmd.arg(self.dir.path())
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if !umount(false) && !umount(true) {
            eprintln!("could not unmount {}", self.dir.path().display());
        }
    }
}

/// `n` bytes that compress to almost nothing: the pack fits easily, the
/// checked-out file does not.
fn compressible(n: usize) -> Vec<u8> {
    b"all work and no play makes a big file\n"
        .iter()
        .copied()
        .cycle()
        .take(n)
        .collect()
}

/// Nothing a failed or interrupted sync could leave: no staging directory,
/// no temporary link or file, no git lock; only worktrees of published commits
/// (the current one and at most one retired one), each with its admin
/// directory, and the hidden spare kept for reuse.
fn assert_nothing_left_behind(root: &Path, published: &[String], current: &str) {
    let mut worktrees = list_dir(&root.join(".worktrees"));
    worktrees.retain(|w| w != ".spare");
    assert!(
        worktrees.iter().any(|w| w == current),
        "the published worktree is missing: {worktrees:?}"
    );
    assert!(
        worktrees.len() <= 2 && worktrees.iter().all(|w| published.contains(w)),
        "unexpected entries in .worktrees: {worktrees:?} (published: {published:?})"
    );
    let admin = list_dir(&root.join(".git/worktrees"));
    assert!(
        admin.iter().all(|a| worktrees.contains(a)),
        "admin dirs without a worktree: {admin:?} vs {worktrees:?}"
    );
    let junk = find_names(root, |n| {
        let git_lock = n.ends_with(".lock") && n != ROOT_LOCK;
        n.starts_with(".staging-") || n.contains("tmp") || git_lock
    });
    assert!(junk.is_empty(), "left behind in the root: {junk:?}");
}

/// The sidecar on a tmpfs root, with the status and metrics checks this test repeats.
/// Fields drop in order: the sidecar dies before the tmpfs is unmounted.
struct Disk {
    run: Running,
    addr: String,
    fs: Tmpfs,
    s: Scratch,
    up: Upstream,
    published: Vec<String>,
}

impl Disk {
    fn start() -> Self {
        let up = Upstream::new();
        let mut s = Scratch::new();
        let fs = Tmpfs::mount("8m");
        s.root = fs.path().join("root");
        let v1 = up.commit_rich_tree("v1");
        let (run, addr) = Self::spawn(&s, &up);
        run.wait_for_link_hash(&s.link(), &v1);
        Disk {
            up,
            s,
            fs,
            run,
            addr,
            published: vec![v1],
        }
    }

    fn spawn(s: &Scratch, up: &Upstream) -> (Running, String) {
        start_with_http(s.sidecar(&up.file_url()).args([
            "--period",
            "200ms",
            "--max-failures",
            "-1",
        ]))
    }

    /// SIGTERM (as a pod's restart sends it), then the same command again.
    fn restart(&mut self) {
        self.run.signal(nix::sys::signal::Signal::SIGTERM);
        let exited = self.run.wait_timeout(DEADLINE);
        assert!(
            exited.is_some(),
            "no exit after SIGTERM\n{}",
            self.run.logs()
        );
        (self.run, self.addr) = Self::spawn(&self.s, &self.up);
    }

    /// The names in `<root>/.git/objects/pack`.
    fn packs(&self) -> Vec<String> {
        list_dir(&self.s.root.join(".git/objects/pack"))
    }

    fn current(&self) -> &str {
        self.published.last().expect("published")
    }

    /// Waits for a failed sync of `sha` with ENOSPC; checks that the previous
    /// commit is still published, intact, and the failure is reported.
    fn expect_full(&self, sha: &str, errors_before: u64) -> String {
        let mut error = String::new();
        self.run
            .wait_until(DEADLINE, "a sync failing with ENOSPC", || {
                error = last_error(&self.addr);
                sync_count(&self.addr, "error") > errors_before
                    && error.contains("No space left on device")
            });
        let st = status(&self.addr);
        let context = format!("/status {st}\n{}", self.run.logs());
        assert!(
            error.contains(
                "the volume holding --root is full (or --link's, if elsewhere): free space there"
            ),
            "the error says what to do: {error}"
        );
        assert!(
            !error.contains("damaged object of the local object store"),
            "a full volume is no damage: {error}"
        );
        assert_eq!(st["published_hash"], self.current(), "{context}");
        assert!(st["consecutive_failures"].as_u64() >= Some(1), "{context}");
        super::assert_still_published(&self.s, self.up.path(), self.current(), &context);
        assert_ne!(self.s.published().as_deref(), Some(sha));
        let staging = find_names(&self.s.root, |n| n.starts_with(".staging-"));
        assert!(staging.is_empty(), "a failed checkout left {staging:?}");
        error
    }

    /// Waits for `sha` to be published after space came back; checks it and the root.
    fn expect_recovered(&mut self, sha: &str) {
        self.run.wait_for_link_hash(&self.s.link(), sha);
        self.published.push(sha.to_string());
        assert_tree_matches_commit(&self.s.link(), &self.up, sha);
        self.run
            .wait_until(DEADLINE, "/status without an error", || {
                last_error(&self.addr).is_empty()
            });
        assert_nothing_left_behind(&self.s.root, &self.published, sha);
    }
}

#[test]
fn full_tmpfs_keeps_the_old_content_and_recovers_cleanly() {
    let mut d = Disk::start();

    // 1. Another writer on the volume leaves 1.5 MiB; the commit needs 2.5.
    let filler: PathBuf = d.fs.path().join("filler");
    let leave = 3 * MIB as u64 / 2;
    let fill = d.fs.available().saturating_sub(leave);
    std::fs::write(&filler, vec![0u8; fill as usize]).expect("writing the filler");
    let v2 =
        d.up.commit_file("big/v2.txt", compressible(5 * MIB / 2), "v2: 2.5 MiB");
    let error = d.expect_full(&v2, 0);
    println!(
        "filler left {} KiB free; v2 failed with: {error}",
        d.fs.available() / 1024
    );
    std::fs::remove_file(&filler).expect("freeing the filler");
    d.expect_recovered(&v2);

    // 2. A commit bigger than the whole volume; the fix is a commit that
    // removes it (v2's 2.5 MiB stay: old and new worktree hold 5 MiB then).
    let errors = sync_count(&d.addr, "error");
    let v3 =
        d.up.commit_file("big/v3.txt", compressible(12 * MIB), "v3: 12 MiB");
    let error = d.expect_full(&v3, errors);
    println!("v3 (bigger than the volume) failed with: {error}");
    d.up.git(&["rm", "-q", "big/v3.txt"]);
    let v4 = d.up.commit_all("v4: drop the 12 MiB file");
    d.expect_recovered(&v4);
    println!(
        "error syncs counted: {}; tmpfs free at the end: {} KiB",
        sync_count(&d.addr, "error"),
        d.fs.available() / 1024
    );
    d.run.assert_running();
}

/// `n` random bytes: the pack is as big as the checked-out file.
fn incompressible(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    fastrand::Rng::with_seed(9).fill(&mut v);
    v
}

/// The pack fits, the checkout does not: each failed pass must take its
/// pack away again. Before, the first pass's pack stayed (surviving
/// restarts) and every later pass failed already at fetch time, since a
/// shallow fetch downloads the whole pack again; freeing as much space as
/// the commit needs was not enough.
#[test]
fn a_failed_checkout_takes_its_pack_away_and_a_restart_publishes() {
    let mut d = Disk::start();
    d.run.wait_until(DEADLINE, "the first sync reported", || {
        sync_count(&d.addr, "success") >= 1
    });
    let packs_before = d.packs();

    // 3 MiB free: the 2 MiB pack fits, its 2 MiB checkout does not.
    let filler: PathBuf = d.fs.path().join("filler");
    let fill = d.fs.available().saturating_sub(3 * MIB as u64);
    std::fs::write(&filler, vec![0u8; fill as usize]).expect("writing the filler");
    let fetched_before = super::fetched_bytes(&d.addr);
    let v2 =
        d.up.commit_file("big/random.bin", incompressible(2 * MIB), "v2: 2 MiB");
    let error = d.expect_full(&v2, 0);
    // gix names no file: the error says at least where it was writing.
    assert!(error.contains("writing the files into "), "{error}");
    d.run.wait_until(DEADLINE, "three failed syncs", || {
        sync_count(&d.addr, "error") >= 3
    });
    // Each failed pass downloaded the pack, and the metric says so.
    let fetched = super::fetched_bytes(&d.addr) - fetched_before;
    assert!(
        fetched >= 3 * 2 * MIB as u64,
        "{fetched} bytes counted\n{}",
        d.run.logs()
    );
    // Between passes the store is as it was before v2 was fetched.
    let mut packs = Vec::new();
    d.run
        .wait_until(DEADLINE, "no pack of the failed passes left", || {
            packs = d.packs();
            packs == packs_before
        });
    d.expect_full(&v2, sync_count(&d.addr, "error"));

    // A restart with 2 MiB more: exactly what the commit needs beyond the 3.
    d.restart();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&filler)
        .expect("opening the filler");
    file.set_len(fill.saturating_sub(2 * MIB as u64))
        .expect("shrinking the filler");
    d.expect_recovered(&v2);
    d.run.assert_running();
}
