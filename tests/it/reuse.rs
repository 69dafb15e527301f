//! Publishing cost follows the change: a retired worktree is rewritten in
//! place for the next commit (unchanged files kept, changed ones written as
//! new inodes), and every published tree is still exactly its commit, also
//! when consumers wrote into the retired one.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{symlink, PermissionsExt};

use crate::support::scribble;
use crate::support::*;

fn assert_exact(s: &Scratch, up: &Upstream, sha: &str) {
    assert_eq!(&assert_published_layout(&s.root, &s.link()), sha);
    assert_tree_matches_commit(&s.link(), up, sha);
    let status = git(&["status", "--porcelain"], &s.link());
    assert!(status.is_empty(), "git status in the worktree: {status}");
}

/// A named change to the upstream work tree.
type Edit = (&'static str, Box<dyn Fn(&Upstream)>);

/// Upstream edits covering every kind of change a rewrite must apply.
fn edits() -> Vec<Edit> {
    let rm = |up: &Upstream, rel: &str| {
        let p = up.path().join(rel);
        if p.is_dir() {
            fs::remove_dir_all(p).expect("rm -r");
        } else {
            fs::remove_file(p).expect("rm");
        }
    };
    vec![
        (
            "modify one file",
            Box::new(|up| up.write_file("d0/f0.txt", "changed\n")),
        ),
        (
            "add a file in a new dir",
            Box::new(|up| up.write_file("new/deep/x.txt", "x\n")),
        ),
        ("delete a whole dir", Box::new(move |up| rm(up, "d1"))),
        (
            "file becomes a directory",
            Box::new(move |up| {
                rm(up, "d2/f2.txt");
                up.write_file("d2/f2.txt/inner.txt", "inner\n");
            }),
        ),
        (
            "directory becomes a file",
            Box::new(move |up| {
                rm(up, "new");
                up.write_file("new", "now a file\n");
            }),
        ),
        (
            "file becomes a symlink",
            Box::new(move |up| {
                rm(up, "d3/f3.txt");
                symlink("../d0/f0.txt", up.path().join("d3/f3.txt")).expect("symlink");
            }),
        ),
        (
            "executable bit flips",
            Box::new(|up| {
                let p = up.path().join("d4/f4.txt");
                fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod");
            }),
        ),
        (
            "symlink becomes a file",
            Box::new(move |up| {
                rm(up, "d3/f3.txt");
                up.write_file("d3/f3.txt", "file again\n");
            }),
        ),
    ]
}

#[test]
fn rewritten_worktrees_are_exact_and_keep_unchanged_files() {
    let up = Upstream::new();
    for i in 0..40 {
        up.write_file(&format!("d{}/f{i}.txt", i % 5), format!("file {i}\n"));
    }
    let first = up.commit_all("forty files");
    let s = Scratch::new();
    let run = s
        .sidecar(&up.file_url())
        .args(["--period", "100ms", "-v", "1"])
        .spawn();
    run.wait_for_link_hash(&s.link(), &first);
    assert_exact(&s, &up, &first);

    // Each commit's tree as first published, to compare with its rewrite two
    // publishes later (the retired worktree is the one before the current).
    let mut published: Vec<(String, HashMap<String, u64>)> =
        vec![(first.clone(), inodes(&s.link()))];
    let mut held_open = fs::File::open(s.link().join("d0/f0.txt")).expect("open");
    for (what, edit) in edits() {
        edit(&up);
        let sha = up.commit_all(what);
        run.wait_for_link_hash(&s.link(), &sha);
        assert_exact(&s, &up, &sha);
        published.push((sha.clone(), inodes(&s.link())));
        let names = list_dir(&s.worktrees());
        assert!(names.len() <= 2, "after {what:?}: worktrees {names:?}");
    }

    // A reader that opened a file before it changed still reads the old content.
    let mut old = String::new();
    held_open.read_to_string(&mut old).expect("read");
    assert_eq!(old, "file 0\n");

    // From the third publish on, the new tree was rewritten from the retired
    // one: files untouched since then kept their inode, changed ones did not.
    let (mut kept, mut rewritten) = (0, 0);
    for pair in published.windows(3) {
        let (before, after) = (&pair[0].1, &pair[2].1);
        for (path, ino) in after {
            match before.get(path) {
                Some(old_ino) if old_ino == ino => kept += 1,
                _ => rewritten += 1,
            }
        }
    }
    println!("files kept across rewrites: {kept}, written anew: {rewritten}");
    // Every rewrite used the inspection taken (and watched) while the
    // process idled after the publish before.
    let logs = run.stderr();
    let rewrites = logs.matches(r#""inspection":"while idle""#).count();
    assert_eq!(rewrites, edits().len() - 1, "{}", run.logs());
    assert!(!logs.contains("after the claim"), "{}", run.logs());
    assert!(
        kept > 10 * rewritten,
        "unchanged files were not reused: {kept} kept vs {rewritten} written"
    );
    let f0 = "d0/f0.txt";
    assert_ne!(
        published[0].1[f0], published[2].1[f0],
        "{f0} changed but kept its inode"
    );
}

#[test]
fn retired_worktrees_are_not_rewritten_before_the_stale_timeout() {
    let up = Upstream::new();
    let first = up.commit_file("a.txt", "one\n", "one");
    let s = Scratch::new();
    let run = s
        .sidecar(&up.file_url())
        .args(["--period", "100ms", "--stale-worktree-timeout", "1h"])
        .spawn();
    run.wait_for_link_hash(&s.link(), &first);
    let first_tree = s.worktrees().join(&first);
    for i in 2..5 {
        let sha = up.commit_file("a.txt", format!("{i}\n"), &format!("{i}"));
        run.wait_for_link_hash(&s.link(), &sha);
        assert_exact(&s, &up, &sha);
    }
    // Still there for readers that resolved the link before the swaps.
    assert_tree_matches_commit(&first_tree, &up, &first);
    assert_eq!(list_dir(&s.worktrees()).len(), 4);
}

#[test]
fn writes_into_published_trees_and_spares_are_gone_from_later_trees() {
    let up = Upstream::new();
    for i in 0..12 {
        up.write_file(&format!("d{}/f{i}.txt", i % 4), format!("file {i}\n"));
    }
    symlink("d0/f0.txt", up.path().join("latest")).expect("symlink");
    let first = up.commit_all("twelve files");
    let s = Scratch::new();
    // A directory outside the root holding a name the commits change.
    let outside = s.dir.path().join("outside");
    fs::create_dir(&outside).expect("mkdir outside");
    fs::write(outside.join("f3.txt"), "outside\n").expect("sentinel");
    let run = s
        .sidecar(&up.file_url())
        .args(["--period", "100ms"])
        .spawn();
    run.wait_for_link_hash(&s.link(), &first);
    let mut published = first;
    for i in 1..=4 {
        // The published tree, and (from the second round) the spare the
        // next commit rewrites.
        let wrote = scribble::scribble(&s.worktrees().join(&published), i);
        assert_eq!(wrote, 8, "round {i}: writes into the published tree");
        for name in list_dir(&s.worktrees()) {
            // The spare is hidden (`.spare`); staging dirs are not trees.
            if name == published || name.starts_with(".staging-") {
                continue;
            }
            let spare = s.worktrees().join(&name);
            assert_eq!(
                scribble::scribble(&spare, 100 + i),
                8,
                "round {i}: the spare"
            );
            if i == 4 {
                // A directory replaced by a link out of the root: the link
                // goes, nothing behind it is touched.
                fs::remove_dir_all(spare.join("d3")).expect("rm d3");
                symlink(&outside, spare.join("d3")).expect("symlink d3");
                // A `.git` made a link out of the root (the parked spare has
                // no `.git` file of its own): not written through.
                let _ = fs::remove_file(spare.join(".git"));
                symlink(outside.join("dotgit"), spare.join(".git")).expect("symlink .git");
            }
        }
        published = up.commit_file("d3/f3.txt", format!("{i}\n"), "change d3/f3.txt");
        run.wait_for_link_hash(&s.link(), &published);
        assert_exact(&s, &up, &published);
    }
    assert_eq!(list_dir(&outside), ["f3.txt"], "{}", run.logs());
    assert_eq!(
        fs::read_to_string(outside.join("f3.txt")).ok().as_deref(),
        Some("outside\n")
    );
    assert!(
        !run.stderr()
            .contains("rewriting the retired worktree failed"),
        "{}",
        run.logs()
    );
}

/// The sidecar's user and group (no passwd entry, as in a container).
const SIDECAR_UID: u32 = 54_331;
const GROUP: u32 = 54_330;
/// A consumer running as another user in the sidecar's group.
const CONSUMER_UID: u32 = 54_332;

/// As the consumer: `mkdir cache` (mode 0755, so the sidecar may not delete
/// what is in it) and a file in it, in the tree `dir`.
fn consumer_writes_cache(dir: &std::path::Path) {
    use std::os::unix::process::CommandExt;
    let out = std::process::Command::new("/bin/sh")
        .args(["-c", "umask 022 && mkdir cache && echo consumer > cache/x"])
        .current_dir(dir)
        .env_clear()
        .uid(CONSUMER_UID)
        .gid(GROUP)
        .output()
        .expect("running the consumer");
    assert!(
        out.status.success(),
        "the consumer could not write into {} (--group-write): {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// With `--group-write`, a consumer in the sidecar's group but running as
/// another user can write a directory the sidecar cannot empty. The
/// retired tree holding it cannot be rewritten nor deleted: it is moved
/// aside (with a warning naming the consumer's uid), never checked out
/// into, and every later tree is still exactly its commit; after a restart
/// the published tree holding it stays published (an addition), and is
/// moved aside the same way once retired.
#[test]
fn what_another_user_wrote_and_cannot_be_deleted_is_moved_aside() {
    use std::os::unix::fs::chown;
    let up = Upstream::new();
    for i in 0..8 {
        up.write_file(&format!("d{}/f{i}.txt", i % 2), format!("file {i}\n"));
    }
    let sha = up.commit_all("eight files");
    let daemon = GitDaemon::start(up.base());
    let s = Scratch::new();
    fs::set_permissions(s.dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::create_dir(&s.root).expect("mkdir root");
    chown(&s.root, Some(SIDECAR_UID), Some(GROUP)).expect("chown root");
    let start = || {
        s.sidecar(&daemon.url(up.name()))
            .args(["--period", "100ms", "--group-write"])
            .user(SIDECAR_UID, GROUP)
            .current_dir(s.dir.path())
            .spawn()
    };
    let advice = format!("belongs to uid {CONSUMER_UID} (mode 755)");
    let publish = |run: &Running, i: usize| {
        let sha = up.commit_file("d0/f0.txt", format!("{i}\n"), &format!("commit {i}"));
        run.wait_for_link_hash(&s.link(), &sha);
        assert_exact(&s, &up, &sha);
        sha
    };

    let run = start();
    run.wait_for_link_hash(&s.link(), &sha);
    consumer_writes_cache(&s.link());
    // The second commit retires that tree; the third one's rewrite of it fails.
    for i in 2..=5 {
        publish(&run, i);
    }
    let trash: Vec<String> = list_dir(&s.worktrees())
        .into_iter()
        .filter(|n| n.starts_with(".trash-"))
        .collect();
    assert_eq!(
        trash.len(),
        1,
        "{:?}\n{}",
        list_dir(&s.worktrees()),
        run.logs()
    );
    // All but what the consumer owns is gone from it.
    assert_eq!(
        list_dir(&s.worktrees().join(&trash[0])),
        ["cache"],
        "{}",
        run.logs()
    );
    let stderr = run.stderr();
    for expected in ["moved it aside", &advice, "Delete it as uid 54332 or root"] {
        assert!(
            stderr.contains(expected),
            "no {expected:?} in:\n{}",
            run.logs()
        );
    }
    assert!(!stderr.contains("sync failed"), "{}", run.logs());
    run.assert_running();

    // The published tree written into, then a restart: what was added
    // stays published, as with git-sync; once that tree is retired, its
    // rewrite moves it aside like the first one.
    consumer_writes_cache(&s.link());
    run.kill9();
    let run = start();
    run.wait_until(DEADLINE, "the restart's first pass", || {
        run.stderr().contains("nothing to do")
    });
    assert!(run.stderr().contains("left in place"), "{}", run.logs());
    assert!(s.link().join("cache").is_dir(), "{}", run.logs());
    for i in 6..=8 {
        publish(&run, i);
    }
    let trash = list_dir(&s.worktrees())
        .iter()
        .filter(|n| n.starts_with(".trash-"))
        .count();
    assert_eq!(trash, 2, "{:?}\n{}", list_dir(&s.worktrees()), run.logs());
    let stderr = run.stderr();
    assert!(stderr.contains("still cannot be removed"), "{}", run.logs());
    assert!(!stderr.contains("sync failed"), "{}", run.logs());
    run.assert_running();
}

/// A tree of the sidecar's own made unreadable (`chmod 000` by root on
/// the published worktree): it cannot be rewritten, and the sidecar gives
/// itself access back to delete it, instead of moving it aside for good
/// with advice to delete it as its own uid.
#[test]
fn an_unreadable_tree_of_the_sidecars_own_is_deleted_not_moved_aside() {
    use std::os::unix::fs::chown;
    let up = Upstream::new();
    for i in 0..4 {
        up.write_file(&format!("d{i}/f.txt"), format!("file {i}\n"));
    }
    let first = up.commit_all("four files");
    let daemon = GitDaemon::start(up.base());
    let s = Scratch::new();
    fs::set_permissions(s.dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::create_dir(&s.root).expect("mkdir root");
    chown(&s.root, Some(SIDECAR_UID), Some(GROUP)).expect("chown root");
    let run = s
        .sidecar(&daemon.url(up.name()))
        .args(["--period", "100ms"])
        .user(SIDECAR_UID, GROUP)
        .current_dir(s.dir.path())
        .spawn();
    run.wait_for_link_hash(&s.link(), &first);
    let tree = s.worktrees().join(&first);
    fs::set_permissions(tree.join("d0"), fs::Permissions::from_mode(0o000)).expect("chmod d0");
    fs::set_permissions(&tree, fs::Permissions::from_mode(0o000)).expect("chmod tree");
    for i in 2..=4 {
        let sha = up.commit_file("d1/f.txt", format!("{i}\n"), &format!("commit {i}"));
        run.wait_for_link_hash(&s.link(), &sha);
        assert_exact(&s, &up, &sha);
    }
    run.wait_until(DEADLINE, "the unreadable tree gone", || !tree.exists());
    let trash: Vec<String> = list_dir(&s.worktrees())
        .into_iter()
        .filter(|n| n.starts_with(".trash-"))
        .collect();
    assert!(trash.is_empty(), "{trash:?}\n{}", run.logs());
    assert!(!run.stderr().contains("moved it aside"), "{}", run.logs());
    run.assert_running();
}

/// A `--one-time` run that must publish `sha` exactly; returns its output.
fn one_time_run(s: &Scratch, up: &Upstream, sha: &str, args: &[&str]) -> String {
    let logs = one_time_publish(s, up, sha, args);
    assert_exact(s, up, sha);
    logs
}

/// A `--one-time` run that must publish `sha`; its logs.
fn one_time_publish(s: &Scratch, up: &Upstream, sha: &str, args: &[&str]) -> String {
    let out = s
        .sidecar(&up.file_url())
        .arg("--one-time")
        .args(args)
        .run(std::time::Duration::from_secs(60));
    let logs = crate::support::sidecar::describe_output(&out);
    assert!(out.status.success(), "{logs}");
    assert_eq!(&assert_published_layout(&s.root, &s.link()), sha, "{logs}");
    logs
}

/// `--one-time` on an existing root (cron jobs, CI, init containers) costs
/// what the change costs: each run keeps the tree it retires as the parked
/// spare, and the next run rewrites that spare instead of checking the whole
/// tree out (unchanged files keep their inode). What was written into the
/// spare between the runs is still gone: the new tree is exactly its commit.
#[test]
fn one_time_runs_rewrite_the_spare_the_previous_run_left() {
    let up = Upstream::new();
    for i in 0..60 {
        up.write_file(&format!("d{}/f{i}.txt", i % 6), format!("file {i}\n"));
    }
    let first = up.commit_all("sixty files");
    let s = Scratch::new();
    let one_time = |sha: &str| one_time_run(&s, &up, sha, &[]);
    one_time(&first);
    let mut first_tree = inodes(&s.link());
    first_tree.remove(".git"); // dropped when a tree is parked

    let second = up.commit_file("d0/f0.txt", "second\n", "change d0/f0.txt");
    one_time(&second);
    let spare = s.worktrees().join(".spare");
    assert_eq!(
        inodes(&spare),
        first_tree,
        "the retired tree of the first run is kept, untouched, as the spare"
    );
    // A consumer (or anyone) writes into the spare between the runs.
    let wrote = scribble::scribble(&spare, 7);
    assert!(wrote >= 6, "only {wrote} writes into the spare");

    let third = up.commit_file("d1/f1.txt", "third\n", "change d1/f1.txt");
    let logs = one_time(&third);
    assert!(!logs.contains("checking out in full"), "{logs}");
    let third_tree = inodes(&s.link());
    let kept = third_tree
        .iter()
        .filter(|(path, ino)| first_tree.get(*path) == Some(*ino))
        .count();
    assert!(
        kept + 10 >= third_tree.len(),
        "only {kept} of {} files were reused from the spare",
        third_tree.len()
    );
    // (The changed files' content is checked by `assert_exact`; their inode
    // numbers may be reused by the filesystem, so they prove nothing.)
}

/// A spare whose index cannot be read is neither trusted nor a dead end:
/// the inspection beside the fetch fails, so does the one after the claim,
/// and the run checks the commit out in full, exactly.
#[test]
fn a_spare_with_an_unreadable_index_is_replaced_by_a_full_checkout() {
    let up = Upstream::new();
    for i in 0..12 {
        up.write_file(&format!("d{}/f{i}.txt", i % 3), format!("file {i}\n"));
    }
    let first = up.commit_all("twelve files");
    let s = Scratch::new();
    let one_time = |sha: &str| one_time_run(&s, &up, sha, &["-v", "1"]);
    one_time(&first);
    let second = up.commit_file("d0/f0.txt", "second\n", "change d0/f0.txt");
    one_time(&second);
    let index = s.root.join(".git/git-sidecar-spare/index");
    assert!(
        index.is_file(),
        "no parked spare's index at {}",
        index.display()
    );
    fs::write(&index, "not an index").expect("corrupt the spare's index");

    let third = up.commit_file("d1/f1.txt", "third\n", "change d1/f1.txt");
    let logs = one_time(&third);
    assert!(
        logs.contains("inspecting the retired worktree beside the fetch failed"),
        "{logs}"
    );
    assert!(logs.contains("cannot reuse the retired worktree"), "{logs}");
    assert!(logs.contains("checking out in full"), "{logs}");
}

/// A consumer holding a file of the published tree open for writing
/// writes through it after the tree was retired, inspected and watched as
/// the spare (same size, so only the write itself tells): the next
/// rewrite does not trust the inspection taken before, and the published
/// tree is exactly the next commit.
#[test]
fn a_write_into_the_spare_after_its_inspection_is_not_kept() {
    let up = Upstream::new();
    for i in 0..20 {
        up.write_file(&format!("d{}/f{i}.txt", i % 4), format!("file {i}\n"));
    }
    let a = up.commit_all("twenty files");
    let s = Scratch::new();
    let run = s
        .sidecar(&up.file_url())
        .args(["--period", "100ms", "-v", "1"])
        .spawn();
    run.wait_for_link_hash(&s.link(), &a);
    let mut consumer = fs::File::options()
        .write(true)
        .open(s.worktrees().join(&a).join("d1/f1.txt"))
        .expect("open");
    let b = up.commit_file("d0/f0.txt", "changed 0\n", "change d0/f0.txt");
    run.wait_for_link_hash(&s.link(), &b);
    // Wait for the retired tree to be inspected and watched while idle
    // (without a watch the write would be found by a walk anyway).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !run
        .stderr()
        .contains(r#""inspected the spare while idle","#)
    {
        assert!(std::time::Instant::now() < deadline, "{}", run.logs());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        run.stderr().contains(r#""watched":true"#),
        "the spare was not watched (this filesystem must support inotify):\n{}",
        run.logs()
    );
    consumer.write_all(b"FILE 1\n").expect("write");
    drop(consumer);
    let c = up.commit_file("d2/f2.txt", "changed 2\n", "change d2/f2.txt");
    run.wait_for_link_hash(&s.link(), &c);
    assert_exact(&s, &up, &c);
    assert_eq!(
        fs::read_to_string(s.link().join("d1/f1.txt")).expect("read"),
        "file 1\n"
    );
    let logs = run.stderr();
    assert!(
        !logs.contains(r#""inspection":"while idle""#),
        "the inspection from before the write was used:\n{}",
        run.logs()
    );
}

/// Three `--one-time` runs, the third rewriting the spare the second left
/// (the first run's tree): the tree the third publishes.
fn third_run_through_the_spare(
    up: &Upstream,
    second: impl Fn(&Upstream) -> String,
    third: impl Fn(&Upstream) -> String,
    args_of_third: &[&str],
) -> (Scratch, String) {
    let s = Scratch::new();
    let first = up.head();
    one_time_run(&s, up, &first, &[]);
    let sha = second(up);
    one_time_run(&s, up, &sha, &[]);
    assert!(s.worktrees().join(".spare").is_dir(), "no spare to rewrite");
    let sha = third(up);
    let logs = one_time_publish(&s, up, &sha, args_of_third);
    assert!(!logs.contains("checking out in full"), "{logs}");
    (s, sha)
}

/// A commit that removes every file, built from the spare: the empty tree
/// is published (gix's checkout tripped over the planned index before).
#[test]
fn a_commit_removing_everything_is_published_from_the_spare() {
    let up = Upstream::new();
    up.commit_file("index.html", "1\n", "one");
    let (s, sha) = third_run_through_the_spare(
        &up,
        |up| up.commit_file("index.html", "2\n", "two"),
        |up| {
            fs::remove_file(up.path().join("index.html")).expect("rm");
            up.commit_all("remove everything")
        },
        &[],
    );
    assert_exact(&s, &up, &sha);
    let names: Vec<String> = list_dir(&s.link())
        .into_iter()
        .filter(|n| n != ".git")
        .collect();
    assert!(names.is_empty(), "{names:?} in the tree of {sha}");
}

/// `.gitattributes` added later changes the bytes of files whose blob did
/// not change (`eol=crlf`): the spare's copies are not kept, and the tree
/// is what a fresh checkout of the commit gives (git-sync's).
#[test]
fn a_gitattributes_change_rewrites_files_whose_blob_did_not_change() {
    let up = Upstream::new();
    up.commit_files(&[("a.txt", b"hello\n"), ("b.txt", b"one\n")], "one");
    let (s, _) = third_run_through_the_spare(
        &up,
        |up| up.commit_file("b.txt", "two\n", "two"),
        |up| up.commit_file(".gitattributes", "*.txt eol=crlf\n", "crlf"),
        &[],
    );
    assert_eq!(
        fs::read(s.link().join("a.txt")).expect("a.txt"),
        b"hello\r\n",
        "a.txt must be checked out under the new attributes"
    );
    assert_eq!(fs::read(s.link().join("b.txt")).expect("b.txt"), b"two\r\n");
}

/// `--group-write` turned on between runs: kept files would keep the modes
/// of the old setting; every file is written anew.
#[test]
fn turning_group_write_on_rewrites_the_spares_files() {
    use std::os::unix::fs::PermissionsExt;
    let up = Upstream::new();
    up.commit_files(&[("a.txt", b"a\n"), ("b.txt", b"one\n")], "one");
    let (s, sha) = third_run_through_the_spare(
        &up,
        |up| up.commit_file("b.txt", "two\n", "two"),
        |up| up.commit_file("b.txt", "three\n", "three"),
        &["--group-write"],
    );
    assert_exact(&s, &up, &sha);
    for name in ["a.txt", "b.txt"] {
        let mode = fs::metadata(s.link().join(name))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o020, 0o020, "{name}: {mode:o}");
    }
    // Under the same setting from then on, the spare's files are kept again
    // (the setting is recorded with each tree, and parked with it).
    for i in 0..2 {
        let sha = up.commit_file("b.txt", format!("more {i}\n"), "more");
        let logs = one_time_run(&s, &up, &sha, &["--group-write", "-v", "1"]);
        if i == 1 {
            assert!(logs.contains("\"written\":1,\"kept\":1"), "{logs}");
        }
    }
}

/// A revert: the third commit brings back the first's page, which the spare
/// (the first run's tree) still has. The published page must be newer than
/// the second's, or a client revalidating with `If-Modified-Since` keeps
/// the second's content (`Last-Modified` would go back).
#[test]
fn a_reverted_file_gets_a_new_time_not_the_spares() {
    use std::os::unix::fs::MetadataExt;
    let up = Upstream::new();
    up.commit_files(&[("page.html", b"A\n"), ("other", b"1\n")], "A");
    let s = Scratch::new();
    let mtime = |s: &Scratch| {
        let m = fs::metadata(s.link().join("page.html")).expect("stat");
        (m.mtime(), m.mtime_nsec())
    };
    let first = up.head();
    one_time_run(&s, &up, &first, &[]);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let second = up.commit_file("page.html", "B\n", "B");
    one_time_run(&s, &up, &second, &[]);
    let b_time = mtime(&s);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let third = up.commit_file("page.html", "A\n", "revert to A");
    let logs = one_time_run(&s, &up, &third, &[]);
    assert!(!logs.contains("checking out in full"), "{logs}");
    assert!(mtime(&s) > b_time, "page.html went back in time\n{logs}");
}

/// An upstream of twenty files in four directories, published by a
/// `--one-time` run into a new root.
fn twenty_files_published() -> (Upstream, Scratch, String) {
    let up = Upstream::new();
    for i in 0..20 {
        up.write_file(&format!("d{}/f{i}.txt", i % 4), format!("file {i}\n"));
    }
    let sha = up.commit_all("twenty files");
    let s = Scratch::new();
    one_time_run(&s, &up, &sha, &[]);
    (up, s, sha)
}

/// The kubelet's pass over a volume with an fsGroup at every mount (`chgrp
/// -R`, `chmod -R g+rwX`) changes every file's ctime and group, not its
/// content: a restart finds the published tree intact (its content read),
/// instead of rebuilding it with a warning that it was modified.
#[test]
fn a_recursive_chgrp_and_chmod_does_not_rebuild_the_published_tree() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let (up, s, sha) = twenty_files_published();
    let before = inodes(&s.link());
    for (rel, meta) in walk_tree(&s.link()) {
        let path = s.link().join(&rel);
        if meta.file_type().is_symlink() {
            continue;
        }
        std::os::unix::fs::lchown(&path, None, Some(2000)).expect("chgrp");
        let mode = meta.mode() | 0o060 | if meta.is_dir() { 0o010 } else { 0 };
        fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o7777)).expect("chmod");
    }
    let run = s
        .sidecar(&up.file_url())
        .args(["--period", "100ms"])
        .spawn();
    run.wait_until(DEADLINE, "a sync", || {
        run.stderr().contains("nothing to do")
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    let logs = run.logs();
    assert!(!logs.contains("was modified"), "{logs}");
    assert_eq!(inodes(&s.link()), before, "{logs}");
    assert_exact(&s, &up, &sha);
}

/// What an exec hook (or a consumer) added to the published tree, a
/// rendered page and a cache directory, is still served after a restart,
/// as with git-sync: the tree is not rebuilt, its files keep their inodes
/// (probe-16 F10: the restart rebuilt it, and readers got 404s until the
/// hook ran again; a hook that skips a hash it has seen never did). A file
/// of the commit changed in place is still repaired. The next commit's
/// tree is made without the additions.
#[test]
fn a_restart_keeps_what_was_added_to_the_published_tree_and_repairs_what_was_changed() {
    let (up, s, sha) = twenty_files_published();
    fs::write(s.link().join("index.html"), "rendered\n").expect("hook output");
    fs::create_dir_all(s.link().join("cache/pages")).expect("cache dir");
    fs::write(s.link().join("cache/pages/a"), "cached\n").expect("cache file");
    let before = inodes(&s.link());

    let out = s
        .sidecar(&up.file_url())
        .args(["--one-time", "-v", "1"])
        .run(std::time::Duration::from_secs(60));
    let logs = crate::support::sidecar::describe_output(&out);
    assert!(out.status.success(), "{logs}");
    assert_eq!(s.published().as_deref(), Some(sha.as_str()), "{logs}");
    assert!(!logs.contains("rebuilding it"), "{logs}");
    assert!(logs.contains("left in place"), "{logs}");
    assert_eq!(inodes(&s.link()), before, "{logs}");
    assert_eq!(
        fs::read_to_string(s.link().join("index.html"))
            .ok()
            .as_deref(),
        Some("rendered\n")
    );

    fs::write(s.link().join("d1/f1.txt"), "tampered\n").expect("tamper");
    let logs = one_time_publish(&s, &up, &sha, &[]);
    assert!(logs.contains("was modified; rebuilding it"), "{logs}");
    assert_exact(&s, &up, &sha);

    fs::write(s.link().join("index.html"), "rendered\n").expect("hook output");
    let next = up.commit_file("d0/f0.txt", "changed\n", "next");
    one_time_run(&s, &up, &next, &[]);
}
