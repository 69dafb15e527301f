//! Loop settings: failure limits, the init period, stale worktrees and
//! group-writable output.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::support::sidecar::describe_output;
use crate::support::*;

const RUN_TIMEOUT: Duration = Duration::from_secs(60);

fn failures_logged(logs: &str) -> usize {
    logs.lines()
        .filter(|l| l.contains("\"sync failed\""))
        .count()
}

/// `--max-failures N` tolerates N consecutive failures and N periods of
/// them (as git-sync, which waits a period after each), and exits 1 on the
/// next failure: the backoff's quicker retries do not make it exit sooner.
/// The exit line carries the last failure's error (what `kubectl logs
/// --previous` shows of a crash-looping pod).
#[test]
fn max_failures_tolerates_n_failures_over_n_periods_then_exits() {
    let s = Scratch::new();
    let missing = format!("file://{}/missing.git", s.dir.path().display());
    let started = std::time::Instant::now();
    let out = s
        .sidecar(&missing)
        .args(["--period", "1s", "--max-failures", "2"])
        .run(RUN_TIMEOUT);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", describe_output(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(failures_logged(&stderr) >= 3, "{stderr}");
    assert!(
        took >= Duration::from_secs(2),
        "exited after {took:?}: {stderr}"
    );
    assert!(s.published().is_none());
    let last = log_lines(&stderr)
        .filter(|l| l["msg"] == "sync failed")
        .last()
        .expect("a failure logged");
    let exit = logged(&stderr, "too many consecutive failures; exiting").expect("the exit logged");
    assert!(exit["error"].is_string(), "{exit}");
    assert_eq!(exit["error"], last["error"], "{stderr}");
}

/// Before the first success `--init-period`/`--init-max-failures` rule;
/// after it, `--period`/`--max-failures`.
#[test]
fn init_settings_apply_until_the_first_success() {
    let up = Upstream::new();
    let first = up.commit_file("f", "1", "first");
    let s = Scratch::new();
    let later = s.dir.path().join("later.git");
    let run = s
        .sidecar(&format!("file://{}", later.display()))
        .args(["--init-period", "20ms", "--init-max-failures", "-1"])
        .args(["--period", "1h", "--max-failures", "0"])
        .spawn();
    // Retries quickly and survives failures while nothing was synced yet.
    run.wait_until(DEADLINE, "three failures before the first success", || {
        failures_logged(&run.stderr()) >= 3
    });
    std::os::unix::fs::symlink(up.path(), &later).expect("symlink the upstream into place");
    run.wait_for_link_hash(&s.link(), &first);
    run.wait_until(DEADLINE, "the recovery logged", || {
        run.stderr().contains("syncing again after failures")
    });
    // Now --period (1h) rules: a new commit is not picked up by itself (the
    // timing: sync::tests::failures_back_off_from_half_a_second_capped_by_the_init_period_then_the_period).
    let second = up.commit_file("f", "2", "second");
    assert_eq!(s.published().as_deref(), Some(first.as_str()));
    run.assert_running();
    assert_ne!(first, second);
}

/// The old worktree survives `--stale-worktree-timeout` after it stops being
/// published, then goes.
#[test]
fn stale_worktree_timeout_keeps_the_previous_tree_for_a_while() {
    let up = Upstream::new();
    let a = up.commit_file("f", "a", "a");
    let s = Scratch::new();
    let run = s
        .sidecar(&up.file_url())
        .args(["--period", "50ms", "--stale-worktree-timeout", "2s"])
        .spawn();
    run.wait_for_link_hash(&s.link(), &a);
    let b = up.commit_file("f", "b", "b");
    run.wait_for_link_hash(&s.link(), &b);
    let c = up.commit_file("f", "c", "c");
    run.wait_for_link_hash(&s.link(), &c);
    // Both retired trees are kept, untouched, for readers still in them.
    for (sha, content) in [(&a, "a"), (&b, "b")] {
        let old = s.worktrees().join(sha);
        assert_eq!(
            fs::read_to_string(old.join("f")).expect("old content"),
            content
        );
    }
    // After the timeout both go from `.worktrees/<sha>` (the newest retired
    // one is kept as the hidden spare the next commit is rewritten from).
    run.wait_until(
        DEADLINE,
        "the retired worktrees are gone after the timeout",
        || !s.worktrees().join(&a).exists() && !s.worktrees().join(&b).exists(),
    );
    assert!(s.worktrees().join(&c).is_dir());
}

fn group_write_bit(path: &std::path::Path) -> bool {
    fs::metadata(path).expect("stat").permissions().mode() & 0o020 != 0
}

/// `--group-write` makes the checkout group-writable; without it, it is not.
#[test]
fn group_write_controls_the_group_write_bit() {
    let up = Upstream::new();
    up.commit_file("dir/f", "x", "a");
    for (flag, expected) in [(true, true), (false, false)] {
        let s = Scratch::new();
        let mut cmd = s.sidecar(&up.file_url()).arg("--one-time");
        if flag {
            cmd = cmd.arg("--group-write");
        }
        let out = cmd.run(RUN_TIMEOUT);
        assert!(out.status.success(), "{}", describe_output(&out));
        for path in [s.link().join("dir"), s.link().join("dir/f"), s.worktrees()] {
            assert_eq!(
                group_write_bit(&path),
                expected,
                "{} with --group-write={flag}",
                path.display()
            );
        }
    }
}

/// (path, inode, size, mtime, ctime) of everything below `dir`, sorted.
fn snapshot(dir: &std::path::Path) -> Vec<(String, u64, u64, i64, i64, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    walk_tree(dir)
        .into_iter()
        .map(|(rel, m)| {
            let t = (m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec());
            (rel, m.ino(), m.size(), t.0, t.1, t.2, t.3)
        })
        .collect()
}

/// A poll that finds nothing new writes nothing: not a file, not a lock, not
/// a directory entry (a created-and-removed temp file would change its
/// directory's mtime), with both an error file and a touch file configured.
#[test]
fn idle_polls_write_nothing_to_disk() {
    let up = Upstream::new();
    let sha = up.commit_rich_tree("one");
    let s = Scratch::new();
    let run = s
        .sidecar(&up.file_url())
        .args(["--period", "20ms", "-v", "1"])
        .arg("--error-file")
        .arg(s.error_file())
        .arg("--touch-file")
        .arg(s.touch_file())
        .spawn();
    run.wait_for_link_hash(&s.link(), &sha);
    // Once an idle poll has run the first pass is over, upkeep and all: look
    // twice, 20 polls apart (in-process: sync::engine::tests::
    // publishes_then_idle_passes_write_nothing_then_publishes_the_next_commit
    // and sync::tests::touch_and_error_files_follow_publishes_and_failures).
    let idle = || run.logs().matches("no change").count();
    run.wait_until(DEADLINE, "an idle poll", || idle() >= 1);
    let before = (snapshot(&s.root), snapshot(s.dir.path()));
    let seen = idle();
    run.wait_until(DEADLINE, "20 more idle polls", || idle() >= seen + 20);
    let after = (snapshot(&s.root), snapshot(s.dir.path()));
    run.assert_running();
    let polls = idle();
    assert_eq!(before, after, "idle polls changed the disk");
    assert!(polls >= 20, "only {polls} idle polls:\n{}", run.logs());
    println!("{polls} idle polls logged, nothing written");
}
