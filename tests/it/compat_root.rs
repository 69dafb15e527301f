//! The root stays a repository that the git CLI and git-sync v4.7.1 accept,
//! in both directions of a migration: git-sidecar adopts a root git-sync
//! made, and after git-sidecar has compacted the object store, `git fsck`
//! and git-sync's start-up checks still pass (so a rollback to git-sync
//! keeps serving instead of wiping and re-cloning). `--group-write` makes
//! the whole root usable by a second user of the same group.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::sidecar::describe_output;
use crate::support::*;

const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// The settings git-sync v4.7.1 writes into its private global git config
/// at start-up (reference §2.3), before any user `--git-config`.
const GIT_SYNC_CONFIG: &str = "[gc]\n\tautoDetach = false\n\tpruneExpire = now\n\
    [credential]\n\thelper = cache --timeout 3600\n\
    [core]\n\taskPass = true\n\
    [safe]\n\tdirectory = *\n";

/// Runs git the way git-sync v4.7.1 runs it: a clean environment whose
/// global config is git-sync's private file and no system config.
struct GitSyncGit {
    config: PathBuf,
    home: tempfile::TempDir,
}

impl GitSyncGit {
    fn new() -> Self {
        let home = tempdir("git-sync-home");
        let config = home.path().join("gitconfig");
        fs::write(&config, GIT_SYNC_CONFIG).expect("writing git-sync's git config");
        GitSyncGit { config, home }
    }

    fn output(&self, cwd: &Path, args: &[&str]) -> std::process::Output {
        Command::new("git")
            .args(args)
            .current_dir(cwd)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("LANG", "C")
            .env("GIT_CONFIG_GLOBAL", &self.config)
            .env("GIT_CONFIG_NOSYSTEM", "true")
            .output()
            .expect("the git CLI must be installed for this test (apt-get install git)")
    }

    /// Runs and returns trimmed stdout, or the failure as text.
    fn run(&self, cwd: &Path, args: &[&str]) -> Result<String, String> {
        let out = self.output(cwd, args);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(format!(
                "git {args:?} in {} failed ({}): {}{}",
                cwd.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            ))
        }
    }

    fn must(&self, cwd: &Path, args: &[&str]) -> String {
        self.run(cwd, args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Makes `root` the way git-sync v4.7.1's first sync does (reference
    /// §2.1 and §2.4): `git init -b git-sync`, remote `origin`, a depth-1
    /// fetch of `HEAD`, `reset --soft`, `worktree add --no-checkout`, the
    /// worktree's `.git` file made relative, `reset --hard` in it, and the
    /// link swapped in through `tmp-link`. Returns the published hash.
    fn make_root(&self, root: &Path, repo: &str, link: &str) -> String {
        fs::create_dir_all(root).expect("mkdir root");
        self.must(root, &["init", "-b", "git-sync"]);
        self.must(root, &["remote", "add", "origin", repo]);
        self.must(
            root,
            &[
                "fetch",
                repo,
                "HEAD",
                "--verbose",
                "--no-progress",
                "--prune",
                "--no-auto-gc",
                "--depth",
                "1",
            ],
        );
        let sha = self.must(root, &["rev-parse", "FETCH_HEAD^{}"]);
        self.must(root, &["reset", "--soft", &sha]);
        let wt = root.join(".worktrees").join(&sha);
        let wt_arg = wt.to_string_lossy().into_owned();
        self.must(
            root,
            &[
                "worktree",
                "add",
                "--force",
                "--detach",
                &wt_arg,
                &sha,
                "--no-checkout",
            ],
        );
        fs::write(
            wt.join(".git"),
            format!("gitdir: ../../.git/worktrees/{sha}\n"),
        )
        .expect("rewriting the worktree's .git file");
        self.must(&wt, &["reset", "--hard", &sha]);
        let tmp = root.join("tmp-link");
        std::os::unix::fs::symlink(Path::new(".worktrees").join(&sha), &tmp).expect("tmp-link");
        fs::rename(&tmp, root.join(link)).expect("swapping the link");
        sha
    }

    /// Makes `root` as git-sync v3 left it: the worktree directly in the
    /// root (`<root>/<sha>`, git's own absolute `.git` file) and the link a
    /// relative `<sha>`. Returns the published hash.
    fn make_v3_root(&self, root: &Path, repo: &str, link: &str) -> String {
        fs::create_dir_all(root).expect("mkdir root");
        self.must(root, &["init", "-b", "git-sync"]);
        self.must(root, &["remote", "add", "origin", repo]);
        self.must(root, &["fetch", repo, "HEAD", "--depth", "1"]);
        let sha = self.must(root, &["rev-parse", "FETCH_HEAD^{}"]);
        let wt = root.join(&sha).to_string_lossy().into_owned();
        self.must(root, &["worktree", "add", "--detach", &wt, &sha]);
        std::os::unix::fs::symlink(&sha, root.join(link)).expect("the link");
        sha
    }

    /// Emulation of git-sync v4.7.1's checks on an existing root, in its
    /// order (reference §2.1 and §2.4 steps 2, 3 and 6; `sanityCheckRepo`
    /// and `sanityCheckWorktree` in its main.go). git-sync wipes the root
    /// and clones again when any of the repository checks fails, and
    /// recreates the worktree when a worktree check fails. Returns what
    /// failed.
    fn startup_checks(&self, root: &Path, link: &Path, repo: &str) -> Result<(), String> {
        if fs::read_dir(root)
            .map_err(|e| e.to_string())?
            .next()
            .is_none()
        {
            return Err("root is empty".into());
        }
        // sanityCheckRepo: the root is its own top level...
        let top = self.run(root, &["rev-parse", "--show-toplevel"])?;
        let canonical = root.canonicalize().map_err(|e| e.to_string())?;
        if Path::new(&top) != canonical {
            return Err(format!("rev-parse --show-toplevel says {top}"));
        }
        // ...is consistent...
        self.run(root, &["fsck", "--no-progress", "--connectivity-only"])?;
        // ...and is not in the middle of a shallow fetch.
        if root.join(".git/shallow.lock").exists() {
            return Err(".git/shallow.lock exists".into());
        }
        // The remote is --repo (git-sync would set-url otherwise; check it anyway).
        let url = self.run(root, &["remote", "get-url", "origin"])?;
        if url != repo {
            return Err(format!("remote.origin.url is {url}, not {repo}"));
        }
        // The link's target basename is the current hash; sanityCheckWorktree on it.
        let target = fs::read_link(link).map_err(|e| format!("reading the link: {e}"))?;
        let hash = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or("link target has no basename")?;
        let wt = root.join(".worktrees").join(&hash);
        if fs::read_dir(&wt)
            .map_err(|e| format!("{}: {e}", wt.display()))?
            .next()
            .is_none()
        {
            return Err(format!("worktree {} is empty", wt.display()));
        }
        let head = self.run(&wt, &["rev-parse", "HEAD"])?;
        if head != hash {
            return Err(format!("worktree HEAD is {head}, link says {hash}"));
        }
        self.run(&wt, &["fsck", "--no-progress", "--connectivity-only"])?;
        Ok(())
    }
}

fn inode(path: &Path) -> u64 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .ino()
}

/// Every `*.keep` file below `dir`.
fn keep_files(dir: &Path) -> Vec<String> {
    walk_tree(dir)
        .into_iter()
        .map(|(rel, _)| rel)
        .filter(|rel| rel.ends_with(".keep"))
        .collect()
}

/// git-sidecar started on a root that git-sync made (built with the git
/// CLI exactly as git-sync's first sync does) keeps it: the same `.git`,
/// no wipe, and it publishes the next commit there.
#[test]
fn a_root_made_by_git_sync_is_adopted_without_recloning() {
    let up = Upstream::new();
    let a = up.commit_rich_tree("a");
    let daemon = GitDaemon::start(up.base());
    let repo = daemon.url(up.name());
    let s = Scratch::new();
    let gs = GitSyncGit::new();
    assert_eq!(gs.make_root(&s.root, &repo, LINK), a);
    let git_ino = inode(&s.root.join(".git"));

    let out = s.sidecar(&repo).arg("--one-time").run(RUN_TIMEOUT);
    assert!(out.status.success(), "{}", describe_output(&out));
    let logs = describe_output(&out);
    assert!(!logs.contains("emptying"), "the root was wiped:\n{logs}");
    assert_eq!(assert_published_layout(&s.root, &s.link()), a);
    assert_eq!(inode(&s.root.join(".git")), git_ino, ".git was recreated");

    let b = up.commit_file("new.txt", "b", "b");
    let out = s.sidecar(&repo).arg("--one-time").run(RUN_TIMEOUT);
    assert!(out.status.success(), "{}", describe_output(&out));
    assert_eq!(assert_published_layout(&s.root, &s.link()), b);
    assert_tree_matches_commit(&s.link(), &up, &b);
    assert_eq!(inode(&s.root.join(".git")), git_ino, ".git was recreated");
}

/// A root git-sync v3 left (the worktree at `<root>/<sha>`) is migrated as
/// git-sync v4 does it: the commit is checked out under `.worktrees/`, the
/// link moves there, and the old directory goes instead of staying on the
/// volume for good.
#[test]
fn a_git_sync_v3_worktree_in_the_root_is_migrated_and_removed() {
    let up = Upstream::new();
    let a = up.commit_rich_tree("a");
    let daemon = GitDaemon::start(up.base());
    let repo = daemon.url(up.name());
    let s = Scratch::new();
    let gs = GitSyncGit::new();
    assert_eq!(gs.make_v3_root(&s.root, &repo, LINK), a);
    assert!(s.root.join(&a).join(".git").is_file(), "a v3 worktree");

    let out = s.sidecar(&repo).arg("--one-time").run(RUN_TIMEOUT);
    assert!(out.status.success(), "{}", describe_output(&out));
    assert_eq!(assert_published_layout(&s.root, &s.link()), a);
    assert_tree_matches_commit(&s.link(), &up, &a);
    assert!(
        !s.root.join(&a).exists(),
        "the v3 worktree is still in the root: {}",
        describe_output(&out)
    );

    let b = up.commit_file("new.txt", "b", "b");
    let out = s.sidecar(&repo).arg("--one-time").run(RUN_TIMEOUT);
    assert!(out.status.success(), "{}", describe_output(&out));
    assert_eq!(assert_published_layout(&s.root, &s.link()), b);
}

/// The rollback path: git-sync → git-sidecar (many force-pushed publishes
/// at depth 1, each followed by a compaction that drops the old commits) →
/// git-sync again. Afterwards `git fsck` (full and connectivity-only)
/// passes, no `.keep` file is left on a pack, and the emulated git-sync
/// v4.7.1 start-up checks ([`GitSyncGit::startup_checks`]) all pass, so
/// git-sync would keep serving the root rather than wipe it.
#[test]
fn a_compacted_root_passes_git_fsck_and_git_syncs_startup_checks() {
    let up = Upstream::new();
    let first = up.commit_file("f", "first", "first");
    up.commit_file("f", "published by git-sync", "git-sync's");
    let daemon = GitDaemon::start(up.base());
    let repo = daemon.url(up.name());
    let s = Scratch::new();
    let gs = GitSyncGit::new();
    gs.make_root(&s.root, &repo, LINK);
    gs.startup_checks(&s.root, &s.link(), &repo)
        .expect("git-sync's own root passes its checks");

    let mut compactions = 0;
    for i in 0..5 {
        // A force-push: the previous tip is gone from the remote and, at
        // depth 1, from what the store must keep.
        up.force_reset(&first);
        let sha = up.commit_file("f", format!("rewrite {i}"), &format!("rewrite {i}"));
        let out = s
            .sidecar(&repo)
            .args(["--one-time", "--git-gc", "aggressive"])
            .run(RUN_TIMEOUT);
        assert!(out.status.success(), "{}", describe_output(&out));
        compactions += describe_output(&out)
            .matches("compacted the object store")
            .count();
        assert_eq!(s.published().as_deref(), Some(sha.as_str()));
    }
    assert!(compactions >= 4, "compaction ran {compactions} times");

    let fsck = gs.run(&s.root, &["fsck", "--connectivity-only"]);
    assert!(fsck.is_ok(), "{fsck:?}");
    let full = gs.run(&s.root, &["fsck", "--no-progress"]);
    assert!(full.is_ok(), "{full:?}");
    assert_eq!(keep_files(&s.root.join(".git")), Vec::<String>::new());
    if let Err(e) = gs.startup_checks(&s.root, &s.link(), &repo) {
        panic!("git-sync would wipe and re-clone this root: {e}");
    }
}

/// UIDs for the shared-volume test: two users whose primary group is GID.
const UID_A: u32 = 54_401;
const UID_B: u32 = 54_402;
const GID: u32 = 54_400;

/// Entries below `root` (not the worktrees' checked-out content, which the
/// umask already covered) that the group cannot use like the owner: a file
/// without g+rw, a directory without g+rwx. Symlinks have no mode.
fn not_group_usable(root: &Path) -> Vec<String> {
    walk_tree(root)
        .into_iter()
        .filter(|(_, m)| !m.file_type().is_symlink())
        .filter(|(_, m)| {
            let want = if m.is_dir() { 0o070 } else { 0o060 };
            m.mode() & want != want
        })
        .map(|(rel, m)| format!("{rel} {:o}", m.mode() & 0o7777))
        .collect()
}

fn pack_names(root: &Path) -> Vec<String> {
    list_dir(&root.join(".git/objects/pack"))
}

/// `--group-write` on a shared volume (a Kubernetes fsGroup: the root is
/// group-owned and setgid): everything the first user writes is
/// group-readable and -writable, so a second user of the group takes over
/// the same root without finding objects "missing" or fetching again, can
/// take the root lock, and publishes the next commit there.
#[test]
fn group_write_lets_a_second_user_of_the_group_share_the_root() {
    let up = Upstream::new();
    let a = up.commit_rich_tree("a");
    let daemon = GitDaemon::start(up.base());
    let repo = daemon.url(up.name());
    let s = Scratch::new();
    fs::set_permissions(s.dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod scratch");
    fs::create_dir(&s.root).expect("mkdir root");
    nix::unistd::chown(&s.root, None, Some(nix::unistd::Gid::from_raw(GID))).expect("chgrp root");
    fs::set_permissions(&s.root, fs::Permissions::from_mode(0o2775)).expect("chmod root");
    let run_as = |uid: u32| {
        s.sidecar(&repo)
            .args(["--one-time", "--group-write"])
            .user(uid, GID)
            .current_dir(s.dir.path())
            .run(RUN_TIMEOUT)
    };

    let out = run_as(UID_A);
    assert!(out.status.success(), "{}", describe_output(&out));
    assert_eq!(s.published().as_deref(), Some(a.as_str()));
    assert_eq!(
        not_group_usable(&s.root),
        Vec::<String>::new(),
        "with --group-write"
    );
    let lock = fs::metadata(s.root.join(".git-sidecar.lock")).expect("root lock");
    assert_eq!((lock.uid(), lock.mode() & 0o777), (UID_A, 0o664));
    let packs = pack_names(&s.root);
    let git_ino = inode(&s.root.join(".git"));

    let out = run_as(UID_B);
    let logs = describe_output(&out);
    assert!(out.status.success(), "{logs}");
    assert!(!logs.contains("missing"), "{logs}");
    assert!(!logs.contains("emptying"), "{logs}");
    assert_eq!(pack_names(&s.root), packs, "the second user fetched again");
    assert_eq!(inode(&s.root.join(".git")), git_ino);
    assert_eq!(s.published().as_deref(), Some(a.as_str()));

    let b = up.commit_file("next.txt", "b", "b");
    let out = run_as(UID_B);
    assert!(out.status.success(), "{}", describe_output(&out));
    // Before any git command of ours: `git status` (as root, umask 0022)
    // would rewrite the worktree's index 0644.
    assert_eq!(not_group_usable(&s.root), Vec::<String>::new());
    assert_eq!(assert_published_layout(&s.root, &s.link()), b);
    assert_tree_matches_commit(&s.link(), &up, &b);

    // A lock file left by a run without --group-write (0644, the first
    // user's): the second user opens it read-only, and flock still works.
    let lock = s.root.join(".git-sidecar.lock");
    fs::set_permissions(&lock, fs::Permissions::from_mode(0o644)).expect("chmod lock");
    let out = run_as(UID_B);
    assert!(out.status.success(), "{}", describe_output(&out));
    assert_eq!(s.published().as_deref(), Some(b.as_str()));
}

/// After a changed runAsUser (`--group-write`, one group): the next commit
/// is written into a tree the first user made (the recycled spare), so it
/// belongs to that user. An exec hook running git in it must not meet
/// git's "dubious ownership" refusal (git-sync v4.7.1's hooks trust every
/// directory; ours trust the worktree they run in).
#[test]
fn an_exec_hooks_git_works_in_a_tree_another_uid_of_the_group_wrote() {
    let up = Upstream::new();
    up.commit_rich_tree("a");
    let s = Scratch::new();
    fs::set_permissions(s.dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod scratch");
    fs::create_dir(&s.root).expect("mkdir root");
    nix::unistd::chown(&s.root, None, Some(nix::unistd::Gid::from_raw(GID))).expect("chgrp root");
    fs::set_permissions(&s.root, fs::Permissions::from_mode(0o2775)).expect("chmod root");
    let out_dir = s.dir.path().join("hook-out");
    fs::create_dir(&out_dir).expect("mkdir");
    fs::set_permissions(&out_dir, fs::Permissions::from_mode(0o777)).expect("chmod");
    let hook = s.dir.path().join("hook.sh");
    fs::write(
        &hook,
        format!(
            "#!/bin/sh
git rev-parse HEAD > {}/head 2>&1
",
            out_dir.display()
        ),
    )
    .expect("hook");
    fs::set_permissions(&hook, fs::Permissions::from_mode(0o755)).expect("chmod hook");
    let run_as = |uid: u32| {
        let out = s
            .sidecar(&up.file_url())
            .args(["--one-time", "--group-write", "--exechook-command"])
            .arg(&hook)
            .user(uid, GID)
            .current_dir(s.dir.path())
            .run(RUN_TIMEOUT);
        assert!(out.status.success(), "{}", describe_output(&out));
        fs::read_to_string(out_dir.join("head")).expect("the hook's output")
    };
    run_as(UID_A);
    up.commit_file("b.txt", "b", "b");
    run_as(UID_A);
    let c = up.commit_file("c.txt", "c", "c");
    let said = run_as(UID_B);
    let owner = fs::metadata(s.link()).expect("published tree").uid();
    assert_eq!(
        owner, UID_A,
        "the tree was not recycled from the first user's"
    );
    assert_eq!(said.trim(), c, "the hook's git said: {said}");
}

/// `--error-file` is written 0644, or 0664 with `--group-write`, as git-sync does.
#[test]
fn the_error_file_mode_follows_group_write() {
    let up = Upstream::new();
    up.commit_file("f", "a", "a");
    for (flag, mode) in [(false, 0o644), (true, 0o664)] {
        let s = Scratch::new();
        let mut cmd = s
            .sidecar(&up.file_url())
            .args(["--one-time", "--ref", "no-such-branch", "--error-file"])
            .arg(s.error_file());
        if flag {
            cmd = cmd.arg("--group-write");
        }
        let out = cmd.run(RUN_TIMEOUT);
        assert!(!out.status.success(), "{}", describe_output(&out));
        let meta = fs::metadata(s.error_file()).expect("the error file is written");
        assert_eq!(
            meta.mode() & 0o777,
            mode,
            "error file with --group-write={flag}"
        );
    }
}
