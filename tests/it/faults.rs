//! Faults: stalled and unreachable servers, sync timeouts, SIGTERM during a
//! fetch, a corrupt root, and kill -9 at random moments.

use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::support::sidecar::describe_output;
use crate::support::*;

const RUN_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug)]
enum Transport {
    Git,
    Http,
}

/// A git server for `up` of the given kind, kept alive by this value.
struct Served {
    _daemon: Option<GitDaemon>,
    _http: Option<HttpGit>,
    addr: SocketAddr,
}

fn serve(t: Transport, up: &Upstream) -> Served {
    match t {
        Transport::Git => {
            let d = GitDaemon::start(up.base());
            Served {
                addr: d.addr(),
                _daemon: Some(d),
                _http: None,
            }
        }
        Transport::Http => {
            let h = HttpGit::start(up.base(), HttpOpts::default());
            Served {
                addr: h.addr(),
                _daemon: None,
                _http: Some(h),
            }
        }
    }
}

fn proxy_url(t: Transport, proxy: &StallProxy, name: &str) -> String {
    match t {
        Transport::Git => proxy.git_url(name),
        Transport::Http => proxy.http_url(name),
    }
}

fn random_bytes(rng: &mut fastrand::Rng, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rng.fill(&mut v);
    v
}

/// The remote stalls in the middle of a pack: the sync fails within about
/// `--sync-timeout`, the published link is kept, and once the server
/// resumes a later sync succeeds.
fn sync_timeout_against_stalled_server(t: Transport) {
    let up = Upstream::new();
    let a = up.commit_rich_tree("a");
    let served = serve(t, &up);
    let proxy = StallProxy::start(served.addr);
    let s = Scratch::new();
    let err = s.error_file();
    let run = s
        .sidecar(&proxy_url(t, &proxy, up.name()))
        .args([
            "--period",
            "200ms",
            "--sync-timeout",
            "2s",
            "--max-failures",
            "-1",
        ])
        .arg("--error-file")
        .arg(&err)
        .spawn();
    run.wait_for_link_hash(&s.link(), &a);
    run.wait_until(DEADLINE, "no error file while syncs succeed", || {
        !err.exists()
    });

    // The next fetch (a 4 MiB incompressible blob) stalls after 64 KiB;
    // no-op polls before it move far fewer bytes than that.
    proxy.stall_after(64 * 1024);
    let mut rng = fastrand::Rng::with_seed(11);
    let b = up.commit_file("big.bin", random_bytes(&mut rng, 4 * 1024 * 1024), "big");
    run.wait_until(DEADLINE, "the fetch to hang on the stalled server", || {
        proxy.stall_hits() > 0
    });
    let stalled_at = Instant::now();
    run.wait_until(
        Duration::from_secs(15),
        "the stalled sync to time out (error file written)",
        || error_file_has_err(&err),
    );
    let failed_after = stalled_at.elapsed();
    println!("{t:?}: stalled sync failed after {failed_after:?} (--sync-timeout 2s)");
    assert_eq!(
        s.published().as_deref(),
        Some(a.as_str()),
        "a failed sync must not move the link"
    );
    assert_tree_matches_commit(&s.link(), &up, &a);
    run.assert_running();

    proxy.resume();
    run.wait_for_link_hash(&s.link(), &b);
    assert_tree_matches_commit(&s.link(), &up, &b);
    run.wait_until(DEADLINE, "error file removed after the recovery", || {
        !err.exists()
    });
}

#[test]
fn sync_timeout_with_stalled_git_daemon() {
    sync_timeout_against_stalled_server(Transport::Git);
}

#[test]
fn sync_timeout_with_stalled_http_server() {
    sync_timeout_against_stalled_server(Transport::Http);
}

/// SIGTERM while the first fetch hangs on a stalled server: the process
/// exits promptly and leaves no half-made worktree behind.
fn sigterm_during_stalled_fetch(t: Transport) {
    let up = Upstream::new();
    up.commit_rich_tree("a");
    let mut rng = fastrand::Rng::with_seed(12);
    up.commit_file("big.bin", random_bytes(&mut rng, 4 * 1024 * 1024), "big");
    let served = serve(t, &up);
    let proxy = StallProxy::start(served.addr);
    proxy.stall_after(32 * 1024);
    let s = Scratch::new();
    let run = s
        .sidecar(&proxy_url(t, &proxy, up.name()))
        .args(["--period", "100ms", "--sync-timeout", "60s"])
        .spawn();
    run.wait_until(
        DEADLINE,
        "the first fetch to hang on the stalled server",
        || proxy.stall_hits() > 0,
    );
    let t0 = Instant::now();
    run.signal(Signal::SIGTERM);
    let status = run.wait_timeout(Duration::from_secs(3));
    assert!(
        status.is_some(),
        "{t:?}: still running {:?} after SIGTERM mid-fetch\n{}",
        t0.elapsed(),
        run.logs()
    );
    println!("{t:?}: exited {:?} after SIGTERM", t0.elapsed());
    assert!(
        s.published().is_none(),
        "nothing was fetched, nothing may be published"
    );
    assert_only_complete_worktrees(&s, &up);
}

/// Every entry of `<root>/.worktrees` is a 40-hex directory matching its commit.
fn assert_only_complete_worktrees(s: &Scratch, up: &Upstream) {
    for name in list_dir(&s.worktrees()) {
        assert!(
            is_hex40(&name),
            "unexpected entry left in .worktrees: {name}"
        );
        if let Some(p) = tree_mismatch(&s.worktrees().join(&name), up.path(), &name) {
            panic!("incomplete worktree left behind: {p}");
        }
    }
}

#[test]
fn sigterm_during_stalled_git_fetch() {
    sigterm_during_stalled_fetch(Transport::Git);
}

#[test]
fn sigterm_during_stalled_http_fetch() {
    sigterm_during_stalled_fetch(Transport::Http);
}

fn black_hole_one_time(url_of: impl Fn(&BlackHole) -> String) {
    let hole = BlackHole::start();
    let s = Scratch::new();
    let t0 = Instant::now();
    let out = s
        .sidecar(&url_of(&hole))
        .args(["--one-time", "--sync-timeout", "1s"])
        .run(RUN_TIMEOUT);
    let took = t0.elapsed();
    assert!(!out.status.success(), "{}", describe_output(&out));
    assert!(
        took < Duration::from_secs(15),
        "a 1s sync timeout took {took:?}\n{}",
        describe_output(&out)
    );
    assert!(hole.connections() >= 1, "the sidecar never connected");
    assert!(s.published().is_none());
}

#[test]
fn silent_git_server_hits_the_sync_timeout() {
    black_hole_one_time(|h| h.git_url("repo"));
}

#[test]
fn silent_http_server_hits_the_sync_timeout() {
    black_hole_one_time(|h| h.http_url("repo"));
}

#[test]
fn failing_remote_keeps_the_published_link() {
    let up = Upstream::new();
    let a = up.commit_rich_tree("a");
    let s = Scratch::new();
    let err = s.error_file();
    let run = s
        .sidecar(&up.file_url())
        .args(["--period", "100ms", "--max-failures", "-1"])
        .arg("--error-file")
        .arg(&err)
        .spawn();
    run.wait_for_link_hash(&s.link(), &a);

    let away = up.base().join("moved-away");
    fs::rename(up.path(), &away).expect("hiding the upstream");
    run.wait_until(DEADLINE, "a failed sync recorded in the error file", || {
        error_file_has_err(&err)
    });
    assert_eq!(s.published().as_deref(), Some(a.as_str()));
    // The upstream now lives at `away`: compare against it there.
    if let Some(p) = tree_mismatch(&s.link(), &away, &a) {
        panic!("{p}");
    }
    run.assert_running();

    fs::rename(&away, up.path()).expect("restoring the upstream");
    let b = up.commit_file("b.txt", "b\n", "b");
    run.wait_for_link_hash(&s.link(), &b);
    run.wait_until(DEADLINE, "error file removed after recovery", || {
        !err.exists()
    });
}

#[test]
fn root_with_junk_and_a_garbage_git_file_is_reinitialised() {
    let up = Upstream::new();
    let a = up.commit_rich_tree("a");
    let s = Scratch::new();
    fs::create_dir_all(s.root.join("junk-dir/deeper")).expect("mkdir");
    fs::write(s.root.join("junk.txt"), "junk").expect("write");
    fs::write(s.root.join("junk-dir/deeper/x"), "junk").expect("write");
    fs::write(s.root.join(".git"), "this is not a repository\n").expect("write");

    let out = s.sidecar(&up.file_url()).arg("--one-time").run(RUN_TIMEOUT);
    assert!(out.status.success(), "{}", describe_output(&out));
    assert_eq!(assert_published_layout(&s.root, &s.link()), a);
    assert_tree_matches_commit(&s.link(), &up, &a);
    assert!(
        !s.root.join("junk.txt").exists(),
        "root must be emptied before re-initialising"
    );
    assert!(
        !s.root.join("junk-dir").exists(),
        "root must be emptied before re-initialising"
    );
}

fn truncate_all_files(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).expect("read_dir").flatten() {
            let p = entry.path();
            let md = fs::symlink_metadata(&p).expect("stat");
            if md.is_dir() {
                stack.push(p);
            } else if md.is_file() && md.len() > 0 {
                fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).expect("chmod");
                let f = fs::OpenOptions::new()
                    .write(true)
                    .open(&p)
                    .expect("open for truncation");
                f.set_len(md.len() / 2).expect("truncate");
                n += 1;
            }
        }
    }
    n
}

#[test]
fn truncated_object_store_is_repaired() {
    let up = Upstream::new();
    up.commit_rich_tree("a");
    let s = Scratch::new();
    let out = s.sidecar(&up.file_url()).arg("--one-time").run(RUN_TIMEOUT);
    assert!(out.status.success(), "{}", describe_output(&out));

    let truncated = truncate_all_files(&s.root.join(".git/objects"));
    assert!(truncated > 0, "nothing to truncate in the object store");
    let b = up.commit_file("b.txt", "b\n", "b");

    let out = s.sidecar(&up.file_url()).arg("--one-time").run(RUN_TIMEOUT);
    assert!(out.status.success(), "{}", describe_output(&out));
    assert_eq!(assert_published_layout(&s.root, &s.link()), b);
    assert_tree_matches_commit(&s.link(), &up, &b);
    git(&["ls-tree", "-r", "HEAD"], &s.link());
}

#[test]
fn leftover_lock_files_do_not_block_syncing() {
    let up = Upstream::new();
    up.commit_rich_tree("a");
    let s = Scratch::new();
    let out = s.sidecar(&up.file_url()).arg("--one-time").run(RUN_TIMEOUT);
    assert!(out.status.success(), "{}", describe_output(&out));
    // What a crash in the middle of a git operation leaves behind.
    for lock in ["shallow.lock", "index.lock", "HEAD.lock"] {
        fs::write(s.root.join(".git").join(lock), "").expect("creating lock file");
    }
    let b = up.commit_file("b.txt", "b\n", "b");
    let out = s.sidecar(&up.file_url()).arg("--one-time").run(RUN_TIMEOUT);
    assert!(out.status.success(), "{}", describe_output(&out));
    assert_eq!(assert_published_layout(&s.root, &s.link()), b);
    assert_tree_matches_commit(&s.link(), &up, &b);
}

fn random_text(rng: &mut fastrand::Rng) -> String {
    let lines = rng.usize(1..40);
    (0..lines)
        .map(|_| format!("{:016x} {}\n", rng.u64(..), "x".repeat(rng.usize(0..60))))
        .collect()
}

/// kill -9 at random moments, over and over, on the same root: whenever the
/// link exists it must resolve to a complete, exact checkout of its commit;
/// and a normal run afterwards must succeed.
#[test]
fn kill9_at_random_moments_never_publishes_a_broken_tree() {
    let seed: u64 = std::env::var("IT_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_2024);
    println!("crash test seed = {seed} (set IT_CRASH_SEED to reproduce another run)");
    let mut rng = fastrand::Rng::with_seed(seed);

    let up = Upstream::new();
    let mut files: Vec<String> = (0..300)
        .map(|i| format!("d{:02}/f{i:03}.txt", i % 12))
        .collect();
    for f in &files {
        up.write_file(f, random_text(&mut rng));
    }
    let mut commits = vec![up.commit_all("three hundred files")];

    // Calibration: how long a first sync of this repo takes here (debug
    // builds and busy machines are slow). Kill delays are drawn from
    // 0..=max(300 ms, 1.5 x that), so that some runs get killed before,
    // some during and some after publishing.
    let calibration = Scratch::new();
    let t0 = Instant::now();
    let run = calibration
        .sidecar(&up.file_url())
        .args(["--period", "50ms"])
        .spawn();
    run.wait_for_link_hash(&calibration.link(), &commits[0]);
    let first_sync = t0.elapsed();
    drop(run);
    let max_delay_ms = ((first_sync.as_millis() as u64) * 3 / 2).clamp(300, 3000);
    println!("first sync took {first_sync:?}; kill delays drawn from 0..={max_delay_ms} ms");

    let s = Scratch::new();
    let started = Instant::now();
    let (mut with_link, mut with_latest, mut iterations) = (0, 0, 0);

    for it in 0..40 {
        // Keep the whole test well under two minutes even on a slow machine.
        if started.elapsed() > Duration::from_secs(80) {
            println!("stopping after {it} iterations (time budget)");
            break;
        }
        iterations += 1;
        for _ in 0..3 {
            let f = &files[rng.usize(..files.len())];
            up.write_file(f, random_text(&mut rng));
        }
        if rng.u8(..10) < 3 {
            let gone = files.swap_remove(rng.usize(..files.len()));
            fs::remove_file(up.path().join(&gone)).expect("removing a file upstream");
            let new = format!("new/it{it:02}.txt");
            up.write_file(&new, random_text(&mut rng));
            files.push(new);
        }
        if rng.u8(..10) < 2 {
            let f = up.path().join(&files[rng.usize(..files.len())]);
            let mode = fs::metadata(&f).expect("stat").permissions().mode();
            fs::set_permissions(&f, fs::Permissions::from_mode(mode ^ 0o111)).expect("chmod");
        }
        let sha = up.commit_all(&format!("iteration {it}"));
        commits.push(sha);

        let run = s.sidecar(&up.file_url()).args(["--period", "50ms"]).spawn();
        let delay = rng.u64(0..=max_delay_ms);
        // Fault injection: the crash happens at a random moment (not a synchronisation sleep).
        std::thread::sleep(Duration::from_millis(delay));
        run.kill9();

        let link = s.link();
        if fs::symlink_metadata(&link).is_err() {
            continue;
        }
        with_link += 1;
        let context = || {
            format!(
                "seed {seed}, iteration {it}, kill after {delay} ms\n{}",
                run.logs()
            )
        };
        let target = fs::read_link(&link)
            .unwrap_or_else(|e| panic!("{} is not a symlink ({e}); {}", link.display(), context()));
        assert!(
            target.is_relative(),
            "link target {} not relative; {}",
            target.display(),
            context()
        );
        let hash = link_target_hash(&link).expect("hash");
        if Some(&hash) == commits.last() {
            with_latest += 1;
        }
        assert!(
            commits.contains(&hash),
            "link points to unknown commit {hash}; {}",
            context()
        );
        if let Some(problem) = tree_mismatch(&link, up.path(), &hash) {
            panic!("published tree is broken: {problem}\n{}", context());
        }
    }
    println!(
        "crash loop: {iterations} iterations; link present after {with_link}, \
         on the newest commit after {with_latest}; {:?}",
        started.elapsed()
    );

    assert!(
        with_link > 0,
        "no run lived long enough to publish (seed {seed}): the crash loop tested nothing"
    );

    let out = s.sidecar(&up.file_url()).arg("--one-time").run(RUN_TIMEOUT);
    assert!(
        out.status.success(),
        "final run after the crashes (seed {seed}): {}",
        describe_output(&out)
    );
    let latest = commits.last().expect("commits");
    assert_eq!(&assert_published_layout(&s.root, &s.link()), latest);
    assert_tree_matches_commit(&s.link(), &up, latest);
}
