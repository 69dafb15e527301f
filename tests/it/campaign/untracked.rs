//! Untracked files: a consumer thread, an exec hook and the pre-publish
//! gate keep writing into worktrees (new files, new and empty directories,
//! tracked files changed in place with their mtime put back, chmod, a file
//! replaced by a directory, a symlink retargeted) and the test writes into
//! the spare, while many commits are published. Every new tree, whether
//! checked out in full or rewritten from a retired worktree full of those
//! writes, must be exactly its commit: the gate holds each one while the
//! test compares it (before anything can write into it).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::scribble::scribble;
use crate::support::*;

const COMMITS: usize = 30;

/// Writes an executable `/bin/sh` script `<scratch>/<name>`.
fn script(s: &Scratch, name: &str, body: &str) -> PathBuf {
    let p = s.dir.path().join(name);
    fs::write(&p, format!("#!/bin/sh\n{body}")).expect("writing a hook script");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod 0755");
    p
}

/// The gate tells `<sync>/ready-<hash>` when it runs, waits for
/// `<sync>/go-<hash>`, then writes its own files into the new tree.
fn gate(s: &Scratch, sync: &str) -> PathBuf {
    script(
        s,
        "gate",
        &format!(
            "echo \"$(pwd -P)\" > '{sync}/ready.tmp'\n\
             mv '{sync}/ready.tmp' \"{sync}/ready-$GITSYNC_HASH\"\n\
             while [ ! -e \"{sync}/go-$GITSYNC_HASH\" ]; do sleep 0.02; done\n\
             echo gate > \"generated-$GITSYNC_HASH.txt\"\n\
             mkdir -p cache/gate && echo gate > \"cache/gate/$GITSYNC_HASH\"\n"
        ),
    )
}

/// The exec hook writes into the published tree, then logs the hash.
fn hook(s: &Scratch, sync: &str) -> PathBuf {
    script(
        s,
        "hook",
        &format!(
            "echo hook > \"hook-$GITSYNC_HASH.txt\"\n\
             mkdir -p hook-dir/nested && echo hook > hook-dir/nested/file\n\
             echo 'appended by the hook' >> stable/appended.txt\n\
             chmod 0700 stable/chmodded.txt\n\
             rm -f stable/gone.txt\n\
             ln -sf /etc/passwd stable/escape\n\
             echo \"$GITSYNC_HASH\" >> '{sync}/hook.log'\n"
        ),
    )
}

/// The upstream's change for commit `i`: files modified, added in new
/// directories, deleted, made executable.
fn change(up: &Upstream, i: usize) {
    up.write_file(
        &format!("d{}/f{}.txt", i % 4, i % 10),
        format!("commit {i}\n"),
    );
    if i.is_multiple_of(3) {
        up.write_file(&format!("added/{i}/new.txt"), format!("added {i}\n"));
    }
    if i % 5 == 4 {
        fs::remove_dir_all(up.path().join("added")).expect("rm -r added");
    }
    if i % 4 == 1 {
        let p = up.path().join("d2/tool.sh");
        let mode = fs::metadata(&p).expect("tool.sh").permissions().mode() ^ 0o111;
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
    }
}

fn base(up: &Upstream) -> String {
    for d in 0..4 {
        for f in 0..10 {
            up.write_file(&format!("d{d}/f{f}.txt"), format!("{d}/{f}\n"));
        }
    }
    for name in ["appended", "chmodded", "gone", "untouched"] {
        up.write_file(&format!("stable/{name}.txt"), format!("{name}\n"));
    }
    up.write_file("d2/tool.sh", "#!/bin/sh\n");
    std::os::unix::fs::symlink("d0/f0.txt", up.path().join("latest")).expect("symlink");
    up.commit_all("base")
}

/// Writes through the link until told to stop; counts what it wrote. A
/// few rounds of every kind per published tree, then only new files: most
/// tracked files stay untouched, so rewrites have something to keep.
fn consumer(link: PathBuf, stop: Arc<AtomicBool>, written: Arc<AtomicUsize>) {
    let (mut round, mut last, mut in_tree) = (0, PathBuf::new(), 0);
    while !stop.load(Ordering::Relaxed) {
        // One resolution per round: the ops land in one published tree.
        if let Ok(tree) = fs::canonicalize(&link) {
            if tree != last {
                (last, in_tree) = (tree.clone(), 0);
            }
            let wrote = if in_tree < 3 {
                scribble(&tree, round)
            } else {
                usize::from(fs::write(tree.join(format!("late-{round}.txt")), "late\n").is_ok())
            };
            written.fetch_add(wrote, Ordering::Relaxed);
            in_tree += 1;
        }
        round += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn every_tree_is_its_commit_while_consumers_and_hooks_write_into_worktrees() {
    let up = Upstream::new();
    let first = base(&up);
    let s = Scratch::new();
    let sync_dir = s.dir.path().join("sync");
    fs::create_dir(&sync_dir).expect("mkdir sync");
    let sync = sync_dir.to_str().expect("utf-8 temp path").to_string();
    let (gate, hook) = (gate(&s, &sync), hook(&s, &sync));
    let run = s
        .sidecar(&up.file_url())
        .args([
            "--period",
            "100ms",
            "--pre-publish-exechook-timeout",
            "120s",
        ])
        .arg("--pre-publish-exechook-command")
        .arg(&gate)
        .arg("--exechook-command")
        .arg(&hook)
        .spawn();
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (link, stop, written) = (s.link(), stop.clone(), written.clone());
        std::thread::spawn(move || consumer(link, stop, written))
    };

    let mut sha = first;
    let mut inode_sets = Vec::new();
    for i in 0..=COMMITS {
        if i > 0 {
            spoil_spares(&s, &sha, i);
            change(&up, i);
            sha = up.commit_all(&format!("commit {i}"));
        }
        let tree = s.worktrees().join(&sha);
        wait_until(
            DEADLINE,
            &format!("the gate's run for commit {i} ({sha})"),
            || sync_dir.join(format!("ready-{sha}")).exists(),
            || run.logs(),
        );
        if let Some(problem) = tree_mismatch(&tree, up.path(), &sha) {
            panic!(
                "commit {i}: the new tree is not its commit: {problem}\n{}",
                run.logs()
            );
        }
        let status = git(&["status", "--porcelain", "--ignored"], &tree);
        assert!(
            status.is_empty(),
            "commit {i}: git status in the new tree:\n{status}"
        );
        inode_sets.push(inodes(&tree));
        fs::write(sync_dir.join(format!("go-{sha}")), "").expect("go");
        run.wait_for_link_hash(&s.link(), &sha);
        wait_until(
            DEADLINE,
            &format!("the exec hook's run for commit {i}"),
            || fs::read_to_string(sync_dir.join("hook.log")).is_ok_and(|l| l.contains(&sha)),
            || run.logs(),
        );
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("the consumer thread");

    let written = written.load(Ordering::Relaxed);
    assert!(
        written > 10 * COMMITS,
        "the consumer wrote only {written} times"
    );
    assert!(
        !run.stderr()
            .contains("rewriting the retired worktree failed"),
        "rewrites fell back to full checkouts:\n{}",
        run.logs()
    );
    // The retired trees were really rewritten: untouched files kept their inode.
    let kept: usize = inode_sets
        .windows(3)
        .map(|w| {
            w[2].iter()
                .filter(|(p, ino)| w[0].get(*p) == Some(*ino))
                .count()
        })
        .sum();
    assert!(
        kept > 10 * COMMITS,
        "only {kept} files kept across rewrites"
    );
    run.assert_running();
}

/// Writes into every retired worktree (the spare the next commit rewrites).
fn spoil_spares(s: &Scratch, published: &str, round: usize) {
    for name in list_dir(&s.worktrees()) {
        if name != published && !name.starts_with(".staging-") {
            let tree = s.worktrees().join(&name);
            let wrote = scribble(&tree, 1000 + round);
            assert!(wrote > 0, "could not write into the spare {name}");
        }
    }
}
