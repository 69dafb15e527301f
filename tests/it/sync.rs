//! The basic sync loop over file://: layout, one-time mode, following
//! updates, touch/error files, signals, restarts and self-repair.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::support::sidecar::describe_output;
use crate::support::*;

const RUN_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn one_time_publishes_head_with_the_documented_layout() {
    let up = Upstream::new();
    let sha = up.commit_rich_tree("first");
    let s = Scratch::new();
    let out = s.sidecar(&up.file_url()).arg("--one-time").run(RUN_TIMEOUT);
    assert!(out.status.success(), "{}", describe_output(&out));

    let published = assert_published_layout(&s.root, &s.link());
    assert_eq!(published, sha);
    assert_eq!(
        fs::read_link(s.link()).expect("link"),
        std::path::Path::new(".worktrees").join(&sha)
    );
    assert!(s.worktrees().join(&sha).is_dir());
    assert_tree_matches_commit(&s.link(), &up, &sha);
    // The root repo itself is readable by the git CLI.
    let root_git = git(&["rev-parse", "--git-dir"], &s.root);
    assert_eq!(root_git, ".git");
    let listed = git(&["worktree", "list", "--porcelain"], &s.root);
    assert!(
        listed.contains(&sha),
        "git worktree list knows the worktree:\n{listed}"
    );
}

#[test]
fn default_link_name_is_the_last_component_of_the_repo() {
    let up = Upstream::named("site");
    let sha = up.commit_file("index.html", "hi\n", "c");
    let s = Scratch::new();
    let out = Sidecar::new()
        .args(["--repo", &up.file_url(), "--one-time"])
        .arg("--root")
        .arg(&s.root)
        .run(RUN_TIMEOUT);
    assert!(out.status.success(), "{}", describe_output(&out));
    assert_eq!(assert_published_layout(&s.root, &s.root.join("site")), sha);
}

#[test]
fn one_time_with_a_nonexistent_ref_fails_without_a_link() {
    let up = Upstream::new();
    up.commit_file("a", "a", "a");
    let s = Scratch::new();
    let out = s
        .sidecar(&up.file_url())
        .args(["--ref", "no-such-branch", "--one-time"])
        .run(RUN_TIMEOUT);
    assert!(
        !out.status.success(),
        "must fail\n{}",
        describe_output(&out)
    );
    assert!(
        fs::symlink_metadata(s.link()).is_err(),
        "no link may be created"
    );
    let hashes: Vec<String> = list_dir(&s.worktrees())
        .into_iter()
        .filter(|n| is_hex40(n))
        .collect();
    assert!(hashes.is_empty(), "no worktree expected, found {hashes:?}");
}

#[test]
fn one_time_against_an_unreachable_remote_fails() {
    let s = Scratch::new();
    let url = format!("git://127.0.0.1:{}/repo", free_port());
    let out = s
        .sidecar(&url)
        .args(["--one-time", "--sync-timeout", "10s"])
        .run(RUN_TIMEOUT);
    assert!(
        !out.status.success(),
        "must fail\n{}",
        describe_output(&out)
    );
    assert!(s.published().is_none());
}

#[test]
fn follows_new_commits_and_drops_old_worktrees() {
    let up = Upstream::new();
    let a = up.commit_rich_tree("a");
    let s = Scratch::new();
    let run = s
        .sidecar(&up.file_url())
        .args(["--period", "100ms"])
        .spawn();
    run.wait_for_link_hash(&s.link(), &a);
    assert_tree_matches_commit(&s.link(), &up, &a);

    let b = up.commit_file("dir/new.txt", "new\n", "b");
    run.wait_for_link_hash(&s.link(), &b);
    assert_published_layout(&s.root, &s.link());
    assert_tree_matches_commit(&s.link(), &up, &b);

    let c = up.commit_chmod("bin/run.sh", false, "c");
    run.wait_for_link_hash(&s.link(), &c);
    assert_tree_matches_commit(&s.link(), &up, &c);

    // --stale-worktree-timeout defaults to 0: old worktrees go away at once
    // (the one just retired, b, is kept as the hidden spare, `.spare`).
    run.wait_until(
        DEADLINE,
        "only the current worktree and the spare left in .worktrees",
        || list_dir(&s.worktrees()) == [".spare".to_string(), c.clone()],
    );
    run.assert_running();
}

#[test]
fn touch_file_is_bumped_after_first_sync_and_each_change() {
    let up = Upstream::new();
    let a = up.commit_file("f", "1", "a");
    let s = Scratch::new();
    let touch = s.touch_file();
    let run = s
        .sidecar(&up.file_url())
        .args(["--period", "100ms"])
        .arg("--touch-file")
        .arg(&touch)
        .spawn();
    run.wait_for_link_hash(&s.link(), &a);
    run.wait_until(DEADLINE, "touch file created after the first sync", || {
        touch.exists()
    });
    let first = mtime(&touch).expect("mtime");

    let b = up.commit_file("f", "2", "b");
    run.wait_for_link_hash(&s.link(), &b);
    run.wait_until(DEADLINE, "touch file mtime bumped after a change", || {
        mtime(&touch).is_some_and(|m| m > first)
    });
}

#[test]
fn error_file_is_written_on_failure_and_removed_after_success() {
    let up = Upstream::new();
    up.commit_file("f", "1", "a");
    let s = Scratch::new();
    let err = s.error_file();
    let run = s
        .sidecar(&up.file_url())
        .args([
            "--ref",
            "later",
            "--period",
            "100ms",
            "--max-failures",
            "-1",
        ])
        .arg("--error-file")
        .arg(&err)
        .spawn();
    run.wait_until(DEADLINE, "error file with a non-empty \"Err\"", || {
        error_file_has_err(&err)
    });
    assert!(s.published().is_none(), "a failing sync must not publish");
    let json = read_error_file(&err).expect("error file is JSON");
    assert!(json.is_object(), "error file holds a JSON object: {json}");

    // The ref appears upstream: the next sync succeeds and clears the error.
    up.branch("later");
    let sha = up.rev_parse("later");
    run.wait_for_link_hash(&s.link(), &sha);
    run.wait_until(
        DEADLINE,
        "error file removed after a successful sync",
        || !err.exists(),
    );
    run.assert_running();
}

#[test]
fn sync_on_signal_triggers_an_immediate_sync() {
    let up = Upstream::new();
    let a = up.commit_file("f", "1", "a");
    let s = Scratch::new();
    let run = s
        .sidecar(&up.file_url())
        .args(["--period", "1h", "--sync-on-signal", "SIGHUP"])
        .spawn();
    run.wait_for_link_hash(&s.link(), &a);

    let b = up.commit_file("f", "2", "b");
    run.signal(Signal::SIGHUP);
    run.wait_for_link_hash(&s.link(), &b);
    assert_tree_matches_commit(&s.link(), &up, &b);
    run.assert_running();

    // And again: signals are not one-shot.
    let c = up.commit_file("f", "3", "c");
    run.signal(Signal::SIGHUP);
    run.wait_for_link_hash(&s.link(), &c);
}

#[test]
fn sigterm_stops_an_idle_sidecar_quickly() {
    stops_an_idle_sidecar_quickly(Signal::SIGTERM);
}

#[test]
fn sigint_stops_an_idle_sidecar_quickly() {
    stops_an_idle_sidecar_quickly(Signal::SIGINT);
}

fn stops_an_idle_sidecar_quickly(signal: Signal) {
    let up = Upstream::new();
    let a = up.commit_file("f", "1", "a");
    let s = Scratch::new();
    let run = s
        .sidecar(&up.file_url())
        .args(["--period", "100ms"])
        .spawn();
    run.wait_for_link_hash(&s.link(), &a);
    let t0 = Instant::now();
    run.signal(signal);
    let status = run.wait_timeout(Duration::from_secs(3));
    assert!(
        status.is_some(),
        "still running {:?} after {signal:?}\n{}",
        t0.elapsed(),
        run.logs()
    );
    assert_eq!(
        s.published().as_deref(),
        Some(a.as_str()),
        "the link survives shutdown"
    );
    assert_tree_matches_commit(&s.link(), &up, &a);
}

#[test]
fn restart_reuses_the_existing_root() {
    let up = Upstream::new();
    let a = up.commit_rich_tree("a");
    let s = Scratch::new();
    let out = s.sidecar(&up.file_url()).arg("--one-time").run(RUN_TIMEOUT);
    assert!(out.status.success(), "{}", describe_output(&out));
    let wt = s.worktrees().join(&a);
    let wt_ino = fs::metadata(&wt).expect("worktree").ino();
    let git_ino = fs::metadata(s.root.join(".git")).expect(".git").ino();

    let out = s.sidecar(&up.file_url()).arg("--one-time").run(RUN_TIMEOUT);
    assert!(out.status.success(), "{}", describe_output(&out));
    assert_eq!(assert_published_layout(&s.root, &s.link()), a);
    assert_eq!(
        fs::metadata(&wt).expect("worktree").ino(),
        wt_ino,
        "worktree dir was recreated"
    );
    assert_eq!(
        fs::metadata(s.root.join(".git")).expect(".git").ino(),
        git_ino,
        "root repo was recreated"
    );
    assert_tree_matches_commit(&s.link(), &up, &a);
}

#[test]
fn removed_worktree_is_recreated() {
    let up = Upstream::new();
    let a = up.commit_rich_tree("a");
    let s = Scratch::new();
    let run = s
        .sidecar(&up.file_url())
        .args(["--period", "100ms"])
        .spawn();
    run.wait_for_link_hash(&s.link(), &a);

    // Move it away atomically, then delete it: the sidecar never sees a half-deleted dir.
    let trash = s.dir.path().join("trash");
    fs::rename(s.worktrees().join(&a), &trash).expect("moving the worktree away");
    fs::remove_dir_all(&trash).expect("deleting the worktree");
    run.wait_until(
        DEADLINE,
        "the worktree to be recreated and to match its commit",
        || {
            s.published().as_deref() == Some(a.as_str())
                && tree_mismatch(&s.link(), up.path(), &a).is_none()
        },
    );
    assert_published_layout(&s.root, &s.link());
    run.assert_running();
}

#[test]
fn modified_worktree_is_restored_on_restart() {
    let up = Upstream::new();
    let a = up.commit_rich_tree("a");
    let s = Scratch::new();
    let out = s.sidecar(&up.file_url()).arg("--one-time").run(RUN_TIMEOUT);
    assert!(out.status.success(), "{}", describe_output(&out));

    let wt = s.worktrees().join(&a);
    fs::write(wt.join("README.md"), "defaced\n").expect("modifying a file");
    fs::remove_file(wt.join("dir/sub/deep.txt")).expect("deleting a file");
    fs::set_permissions(wt.join("bin/run.sh"), fs::Permissions::from_mode(0o644)).expect("chmod");
    assert!(tree_mismatch(&s.link(), up.path(), &a).is_some());

    let out = s.sidecar(&up.file_url()).arg("--one-time").run(RUN_TIMEOUT);
    assert!(out.status.success(), "{}", describe_output(&out));
    assert_eq!(s.published().as_deref(), Some(a.as_str()));
    assert_tree_matches_commit(&s.link(), &up, &a);
}

/// Anything in `.worktrees/` that is not the published worktree (a stray
/// file, a directory that is not a hash, a leftover staging dir) is deleted.
#[test]
fn junk_in_the_worktrees_dir_is_cleaned_up() {
    let up = Upstream::new();
    let a = up.commit_file("f", "a", "a");
    let s = Scratch::new();
    let run = s.sidecar(&up.file_url()).args(["--period", "50ms"]).spawn();
    run.wait_for_link_hash(&s.link(), &a);
    fs::write(s.worktrees().join("stray-file"), "x").expect("write junk file");
    fs::create_dir_all(s.worktrees().join("not-a-hash/sub")).expect("mkdir junk dir");
    fs::create_dir_all(s.worktrees().join(".staging-0123")).expect("mkdir fake staging");
    run.wait_until(DEADLINE, "only the published worktree left", || {
        list_dir(&s.worktrees()) == vec![a.clone()]
    });
    assert_tree_matches_commit(&s.link(), &up, &a);
}
