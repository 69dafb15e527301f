//! What a retired worktree leaves behind, as git-sync v4 users check it:
//! after `--stale-worktree-timeout` it is gone from `.worktrees/<sha>`, from
//! `git worktree list`, and its objects (once no kept commit needs them)
//! from the object store; the spare that makes the next publish cheap is
//! kept out of sight (`.worktrees/.spare`, admin files outside
//! `.git/worktrees`).

use std::path::Path;

use crate::support::git::git_output;
use crate::support::*;

/// Files in the test repository; each commit changes one of them.
const FILES: usize = 20;

fn commit_change(up: &Upstream, i: usize) -> String {
    up.commit_file("f0.txt", format!("version {i}\n"), &format!("change {i}"))
}

/// The entries of `.worktrees` that are not hidden (what `ls` shows).
fn visible_worktrees(s: &Scratch) -> Vec<String> {
    list_dir(&s.worktrees())
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .collect()
}

/// The worktree paths `git worktree list --porcelain` reports, root first.
fn git_worktree_list(root: &Path) -> Vec<String> {
    git(&["worktree", "list", "--porcelain"], root)
        .lines()
        .filter_map(|l| l.strip_prefix("worktree "))
        .map(str::to_string)
        .collect()
}

/// Whether git sees exactly the root and the worktrees of `shas`, and
/// `git worktree prune` would have nothing to do.
fn git_sees_only(s: &Scratch, shas: &[&str]) -> bool {
    let root = s.root.canonicalize().expect("root");
    let mut expected = vec![root.display().to_string()];
    for sha in shas {
        expected.push(root.join(".worktrees").join(sha).display().to_string());
    }
    let prune = git_output(&["worktree", "prune", "--dry-run", "--verbose"], &s.root);
    let prune_quiet = prune.status.success() && prune.stdout.is_empty() && prune.stderr.is_empty();
    let mut listed = git_worktree_list(&s.root);
    listed[1..].sort();
    expected[1..].sort();
    listed == expected && prune_quiet
}

fn describe(s: &Scratch, run: &Running) -> String {
    format!(
        ".worktrees: {:?}\n.git/worktrees: {:?}\ngit worktree list:\n{}\n{}",
        list_dir(&s.worktrees()),
        list_dir(&s.root.join(".git/worktrees")),
        git(&["worktree", "list"], &s.root),
        run.logs()
    )
}

/// The previous tree is gone, as git-sync leaves it, yet the next publish
/// still rewrote the retired tree: a file no commit changed keeps its inode
/// from the first tree (A) in the third (C, rewritten from A's parked tree).
fn assert_gone_but_reused(timeout: &str) {
    let up = Upstream::new();
    for i in 0..FILES {
        up.write_file(&format!("f{i}.txt"), format!("file {i}\n"));
    }
    let a = up.commit_all("A");
    let s = Scratch::new();
    let run = s
        .sidecar(&up.file_url())
        .args(["--period", "100ms", "--stale-worktree-timeout", timeout])
        .spawn();
    run.wait_for_link_hash(&s.link(), &a);
    let unchanged = "f7.txt";
    let first_inode = inodes(&s.link())[unchanged];
    let mut previous = a;
    for i in 1..=3 {
        let sha = commit_change(&up, i);
        run.wait_for_link_hash(&s.link(), &sha);
        assert_tree_matches_commit(&s.link(), &up, &sha);
        run.wait_until(
            DEADLINE,
            &format!("after publish {i} with --stale-worktree-timeout={timeout}: only {sha} in .worktrees and in git worktree list"),
            || visible_worktrees(&s) == [sha.clone()] && git_sees_only(&s, &[&sha]),
        );
        assert!(
            !s.worktrees().join(&previous).exists(),
            "{}",
            describe(&s, &run)
        );
        let hidden: Vec<String> = list_dir(&s.worktrees())
            .into_iter()
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(
            hidden.iter().all(|n| n == ".spare"),
            "only the spare may be hidden in .worktrees: {hidden:?}"
        );
        assert_eq!(
            list_dir(&s.root.join(".git/worktrees")),
            std::slice::from_ref(&sha),
            "admin dirs: {}",
            describe(&s, &run)
        );
        if i == 2 {
            // A's tree was parked after publish 1 and rewritten into this one.
            assert_eq!(
                inodes(&s.link())[unchanged],
                first_inode,
                "the retired tree was not rewritten (full checkout instead)\n{}",
                run.logs()
            );
        }
        previous = sha;
    }
    let fsck = git_output(&["fsck", "--connectivity-only", "--no-progress"], &s.root);
    assert!(
        fsck.status.success(),
        "git fsck: {}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
    run.assert_running();
}

/// git-sync's default: the retired worktree is deleted right after the publish.
#[test]
fn stale_timeout_zero_deletes_the_retired_worktree_at_once() {
    assert_gone_but_reused("0");
}

/// With a timeout the retired worktree stays for its readers, then goes.
#[test]
fn stale_timeout_deletes_the_retired_worktree_after_the_timeout() {
    assert_gone_but_reused("2s");
}

/// Within the timeout, the retired worktree is still a worktree git lists
/// (readers may still be in it), as with git-sync.
#[test]
fn within_the_stale_timeout_the_retired_worktree_is_still_listed() {
    let up = Upstream::new();
    let a = up.commit_file("f", "a\n", "a");
    let s = Scratch::new();
    let run = s
        .sidecar(&up.file_url())
        .args(["--period", "100ms", "--stale-worktree-timeout", "1h"])
        .spawn();
    run.wait_for_link_hash(&s.link(), &a);
    let b = up.commit_file("f", "b\n", "b");
    run.wait_for_link_hash(&s.link(), &b);
    run.wait_until(DEADLINE, "a and b listed by git", || {
        git_sees_only(&s, &[&a, &b])
    });
    let mut expected = vec![a, b];
    expected.sort();
    assert_eq!(visible_worktrees(&s), expected);
}

const MIB: u64 = 1024 * 1024;

/// `<root>/.git/objects`, as `du` counts it.
fn store_size(s: &Scratch) -> u64 {
    dir_size(&s.root.join(".git/objects"))
}

/// A 4 MiB incompressible file is committed, published, then reverted
/// (`revert` makes the new upstream commit; without it, `Upstream::force_reset`
/// force-pushes back to the commit before); once the retired worktree's
/// timeout has passed the store is back to about its size before, and git's
/// fsck passes. (git-sync gets there with `git gc` after deleting the worktree.)
fn assert_store_shrinks_back(timeout: &str, revert: bool) {
    let up = Upstream::new();
    up.commit_rich_tree("base");
    let a = up.commit_file("small.txt", "small\n", "A");
    let s = Scratch::new();
    let run = s
        .sidecar(&up.file_url())
        .args(["--period", "100ms", "--stale-worktree-timeout", timeout])
        .spawn();
    run.wait_for_link_hash(&s.link(), &a);
    let before = store_size(&s);

    let mut big = vec![0u8; 4 * MIB as usize];
    fastrand::Rng::with_seed(0x4b1d).fill(&mut big);
    let b = up.commit_file("big.bin", &big, "B: a large file");
    run.wait_for_link_hash(&s.link(), &b);
    assert!(store_size(&s) > before + 4 * MIB, "the file was fetched");

    let c = if revert {
        up.git(&["rm", "-q", "big.bin"]);
        up.commit_all("C: remove the large file")
    } else {
        up.force_reset(&a);
        a.clone()
    };
    run.wait_for_link_hash(&s.link(), &c);
    let margin = 256 * 1024;
    let mut size = store_size(&s);
    let shrunk = poll_until(DEADLINE, || {
        size = store_size(&s);
        size <= before + margin
    });
    assert!(
        shrunk,
        "--stale-worktree-timeout={timeout}: .git/objects is {size} bytes, {before} before the large file (margin {margin})\n{}",
        describe(&s, &run)
    );
    assert_tree_matches_commit(&s.link(), &up, &c);
    let fsck = git_output(&["fsck", "--connectivity-only", "--no-progress"], &s.root);
    assert!(
        fsck.status.success(),
        "git fsck after the store shrank: {}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
    run.assert_running();
}

#[test]
fn a_reverted_large_file_leaves_the_store() {
    assert_store_shrinks_back("0", true);
}

#[test]
fn a_force_pushed_away_large_file_leaves_the_store_after_the_timeout() {
    assert_store_shrinks_back("2s", false);
}

/// A spare parked by a previous process is adopted by the next one (a
/// restart, a `--one-time` run): it stays on disk, hidden from git, and the
/// next commit is rewritten from it, exact. A spare without its admin files
/// is removed at start-up.
#[test]
fn a_new_process_adopts_the_spare_it_finds() {
    let up = Upstream::new();
    let a = up.commit_file("f", "a\n", "a");
    let s = Scratch::new();
    let sidecar = || s.sidecar(&up.file_url()).args(["--period", "100ms"]);
    let run = sidecar().spawn();
    run.wait_for_link_hash(&s.link(), &a);
    let b = up.commit_file("f", "b\n", "b");
    run.wait_for_link_hash(&s.link(), &b);
    let spare_admin = s.root.join(".git/git-sidecar-spare");
    run.wait_until(DEADLINE, "a's tree parked as the spare", || {
        s.worktrees().join(".spare").is_dir() && spare_admin.join("index").is_file()
    });
    run.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(run.wait_timeout(DEADLINE).is_some(), "{}", run.logs());
    drop(run);

    // The touch file is touched after the first successful pass of a process.
    let touched = s.root.join("touched");
    let run = sidecar().args(["--touch-file", "touched"]).spawn();
    run.wait_until(DEADLINE, "a pass of the new process", || touched.exists());
    assert!(s.worktrees().join(".spare").is_dir(), "{}", run.logs());
    assert!(spare_admin.join("index").is_file(), "{}", run.logs());
    let c = up.commit_file("f", "c\n", "c");
    run.wait_for_link_hash(&s.link(), &c);
    assert_tree_matches_commit(&s.link(), &up, &c);
    run.wait_until(DEADLINE, "only c listed by git", || {
        git_sees_only(&s, &[&c])
    });
    assert!(
        !run.stderr().contains("checking out in full"),
        "{}",
        run.logs()
    );
    run.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(run.wait_timeout(DEADLINE).is_some(), "{}", run.logs());
    drop(run);

    // A spare whose admin files are gone is junk: removed at start-up.
    std::fs::remove_dir_all(&spare_admin).expect("rm the spare's admin dir");
    let run = sidecar().spawn();
    run.wait_until(DEADLINE, "the orphaned spare removed at start-up", || {
        !s.worktrees().join(".spare").exists()
    });
}
