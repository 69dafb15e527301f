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

/// Every entry of `<root>/.worktrees` is a 40-hex directory matching its
/// commit (or the hidden spare, files to be rewritten, never published).
fn assert_only_complete_worktrees(s: &Scratch, up: &Upstream) {
    for name in list_dir(&s.worktrees())
        .into_iter()
        .filter(|n| n != ".spare")
    {
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

/// kill -9s the crash loop must reach: a hard floor, not a time budget.
const CRASH_KILLS: usize = 200;

/// The upstream of the crash loop: a small tree that every iteration
/// changes a little (rewrites, a deletion plus an addition, a mode flip).
struct CrashUpstream {
    up: Upstream,
    files: Vec<String>,
    commits: Vec<String>,
}

impl CrashUpstream {
    fn new(rng: &mut fastrand::Rng) -> Self {
        let up = Upstream::new();
        let files: Vec<String> = (0..60).map(|i| format!("d{}/f{i:02}.txt", i % 6)).collect();
        for f in &files {
            up.write_file(f, random_text(rng));
        }
        let commits = vec![up.commit_all("sixty files")];
        CrashUpstream { up, files, commits }
    }

    /// Commits a random change; returns its sha.
    fn change(&mut self, rng: &mut fastrand::Rng, it: usize) -> String {
        for _ in 0..3 {
            let f = &self.files[rng.usize(..self.files.len())];
            self.up.write_file(f, random_text(rng));
        }
        if rng.u8(..10) < 3 {
            let gone = self.files.swap_remove(rng.usize(..self.files.len()));
            fs::remove_file(self.up.path().join(&gone)).expect("removing a file upstream");
            let new = format!("new/it{it:03}.txt");
            self.up.write_file(&new, random_text(rng));
            self.files.push(new);
        }
        if rng.u8(..10) < 2 {
            let f = self
                .up
                .path()
                .join(&self.files[rng.usize(..self.files.len())]);
            let mode = fs::metadata(&f).expect("stat").permissions().mode();
            fs::set_permissions(&f, fs::Permissions::from_mode(mode ^ 0o111)).expect("chmod");
        }
        let sha = self.up.commit_all(&format!("iteration {it}"));
        self.commits.push(sha.clone());
        sha
    }

    fn spawn(&self, s: &Scratch) -> Running {
        s.sidecar(&self.up.file_url())
            .args(["--period", "50ms"])
            .spawn()
    }
}

/// How long a restart on an existing root takes to publish a new commit
/// here (debug builds and busy machines are slow): the median of three.
fn restart_publish_time(cu: &mut CrashUpstream, rng: &mut fastrand::Rng) -> Duration {
    let s = Scratch::new();
    let run = cu.spawn(&s);
    run.wait_for_link_hash(&s.link(), cu.commits.last().expect("a commit"));
    drop(run);
    let mut times: Vec<Duration> = (0..3)
        .map(|i| {
            let sha = cu.change(rng, 900 + i);
            let t0 = Instant::now();
            let run = cu.spawn(&s);
            run.wait_for_link_hash(&s.link(), &sha);
            t0.elapsed()
        })
        .collect();
    times.sort();
    times[1]
}

/// Kill delays, drawn uniformly from `0..=max`, where `max` starts at 1.5x
/// the calibrated restart-to-publish time and follows the machine's pace:
/// a run of kills that all land before (or all after) the publish widens
/// (or narrows) the range, so kills keep landing before, during and after.
struct KillDelays {
    max_ms: u64,
    streak: i32,
}

impl KillDelays {
    fn new(restart: Duration) -> Self {
        let max_ms = (restart.as_millis() as u64 * 3 / 2).clamp(50, 5000);
        KillDelays { max_ms, streak: 0 }
    }

    fn draw(&self, rng: &mut fastrand::Rng) -> Duration {
        Duration::from_millis(rng.u64(0..=self.max_ms))
    }

    fn record(&mut self, published: bool) {
        self.streak = match (published, self.streak) {
            (true, n) if n > 0 => n + 1,
            (true, _) => 1,
            (false, n) if n < 0 => n - 1,
            (false, _) => -1,
        };
        if self.streak.abs() >= 15 {
            self.max_ms = if published {
                (self.max_ms * 2 / 3).max(20)
            } else {
                (self.max_ms * 3 / 2).min(10_000)
            };
            self.streak = 0;
        }
    }
}

/// kill -9 at random moments, at least [`CRASH_KILLS`] times, on the same
/// root: one sidecar per iteration, killed before, during or after it
/// publishes the newest commit; after each kill the link (present from the
/// first publish on) must resolve to a complete, exact checkout of a known
/// commit, and a normal run afterwards must succeed.
#[test]
fn kill9_at_random_moments_never_publishes_a_broken_tree() {
    let seed: u64 = std::env::var("IT_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_2024);
    println!("crash test seed = {seed} (set IT_CRASH_SEED to reproduce another run)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut cu = CrashUpstream::new(&mut rng);
    let restart = restart_publish_time(&mut cu, &mut rng);
    let mut delays = KillDelays::new(restart);
    println!(
        "a restart publishes in {restart:?}; kill delays start at 0..={} ms",
        delays.max_ms
    );

    let s = Scratch::new();
    let started = Instant::now();
    let (mut kills, mut with_link, mut with_latest) = (0, 0, 0);
    for it in 0..CRASH_KILLS {
        let sha = cu.change(&mut rng, it);
        let run = cu.spawn(&s);
        let delay = delays.draw(&mut rng);
        // Fault injection: the crash happens at a random moment (not a synchronisation sleep).
        std::thread::sleep(delay);
        let status = run.kill9();
        let context = || {
            format!(
                "seed {seed}, iteration {it}, kill after {delay:?}\n{}",
                run.logs()
            )
        };
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "the sidecar was not running when killed; {}",
            context()
        );
        kills += 1;
        let published = s.published();
        delays.record(published.as_deref() == Some(sha.as_str()));
        let Some(hash) = published else {
            // Once published, the link is swapped, never removed.
            assert_eq!(with_link, 0, "the link disappeared; {}", context());
            continue;
        };
        with_link += 1;
        with_latest += usize::from(hash == sha);
        check_link_after_crash(&s, &cu, &hash, &context);
    }
    println!(
        "crash loop: {kills} kill -9s in {:?}; link present after {with_link}, on the newest \
         commit after {with_latest}; final kill delays 0..={} ms",
        started.elapsed(),
        delays.max_ms
    );
    assert!(kills >= CRASH_KILLS, "only {kills} kill -9s (seed {seed})");
    assert!(
        with_latest > 0 && with_latest < kills,
        "kills must land both before and after publishing (seed {seed}): \
         {with_latest} of {kills} after"
    );

    let out = s
        .sidecar(&cu.up.file_url())
        .arg("--one-time")
        .run(RUN_TIMEOUT);
    assert!(
        out.status.success(),
        "final run after the crashes (seed {seed}): {}",
        describe_output(&out)
    );
    let latest = cu.commits.last().expect("commits");
    assert_eq!(&assert_published_layout(&s.root, &s.link()), latest);
    assert_tree_matches_commit(&s.link(), &cu.up, latest);
}

/// The link after a crash: relative, naming a commit we made, and resolving
/// to exactly that commit's tree.
fn check_link_after_crash(
    s: &Scratch,
    cu: &CrashUpstream,
    hash: &str,
    context: &dyn Fn() -> String,
) {
    let link = s.link();
    let target = fs::read_link(&link)
        .unwrap_or_else(|e| panic!("{} is not a symlink ({e}); {}", link.display(), context()));
    assert!(
        target.is_relative(),
        "link target {} not relative; {}",
        target.display(),
        context()
    );
    assert!(
        cu.commits.iter().any(|c| c == hash),
        "link points to unknown commit {hash}; {}",
        context()
    );
    if let Some(problem) = tree_mismatch(&link, cu.up.path(), hash) {
        panic!("published tree is broken: {problem}\n{}", context());
    }
}

/// `--one-time` (a cron job, a CI step, an init container) stopped by
/// SIGTERM before its sync finished must not exit 0: nothing new was
/// published, and the caller would take the run for a successful one.
#[test]
fn one_time_stopped_before_its_sync_exits_1() {
    let up = Upstream::new();
    up.commit_rich_tree("a");
    let mut rng = fastrand::Rng::with_seed(13);
    up.commit_file("big.bin", random_bytes(&mut rng, 4 * 1024 * 1024), "big");
    let served = serve(Transport::Git, &up);
    let proxy = StallProxy::start(served.addr);
    proxy.stall_after(32 * 1024);
    let s = Scratch::new();
    let run = s
        .sidecar(&proxy_url(Transport::Git, &proxy, up.name()))
        .args(["--one-time", "--sync-timeout", "60s"])
        .spawn();
    run.wait_until(DEADLINE, "the fetch to hang", || proxy.stall_hits() > 0);
    run.signal(Signal::SIGTERM);
    let status = run.wait_timeout(DEADLINE).expect("an exit after SIGTERM");
    assert_eq!(status.code(), Some(1), "{}", run.logs());
    assert!(
        run.stderr()
            .contains("stopped by a signal before the sync finished"),
        "{}",
        run.logs()
    );
}

/// The same run stopped while its hook runs (the sync is done): still 1,
/// and said as a stop, not as a failed hook.
#[test]
fn one_time_stopped_while_its_hook_runs_says_so() {
    let up = Upstream::new();
    let head = up.commit_rich_tree("a");
    let s = Scratch::new();
    let hook = script(&s, "slow-hook.sh", "#!/bin/sh\nexec sleep 30\n");
    let run = s
        .sidecar(&up.file_url())
        .arg("--one-time")
        .arg("--exechook-command")
        .arg(&hook)
        .spawn();
    run.wait_for_link_hash(&s.link(), &head);
    run.wait_until(DEADLINE, "the hook to start", || {
        run.stderr().contains("published new content")
    });
    run.signal(Signal::SIGTERM);
    let status = run.wait_timeout(DEADLINE).expect("an exit after SIGTERM");
    assert_eq!(status.code(), Some(1), "{}", run.logs());
    let err = run.stderr();
    assert!(err.contains("stopped by a signal"), "{}", run.logs());
    assert!(!err.contains("a hook failed"), "{}", run.logs());
}

/// A pack of the store damaged on disk (bit rot, a stray write) while the
/// sidecar runs: the next change's thin pack cannot be indexed against it.
/// The error says the local store may be at fault, and the next pass checks
/// the store, empties it and fetches everything again, as a restart does,
/// instead of failing every period until someone restarts the pod.
#[test]
fn a_damaged_pack_in_the_store_is_found_and_replaced_while_running() {
    let up = Upstream::new();
    // One large text file: the next commit's pack is a delta against it.
    let text: String = (0..20_000)
        .map(|i| format!("line {i} of a page\n"))
        .collect();
    let first = up.commit_file("page.txt", &text, "a large page");
    let daemon = GitDaemon::start(up.base());
    let s = Scratch::new();
    let run = s
        .sidecar(&daemon.url(up.name()))
        .args(["--period", "100ms", "--max-failures", "-1"])
        .spawn();
    run.wait_for_link_hash(&s.link(), &first);

    // 64 bytes in the middle of the pack (the large blob) overwritten.
    let packs = pack_files(&s.root);
    assert_eq!(packs.len(), 1, "{packs:?}");
    let mut bytes = fs::read(&packs[0]).expect("read pack");
    let middle = bytes.len() / 2;
    bytes[middle..middle + 64].fill(b'X');
    fs::write(&packs[0], &bytes).expect("damage the pack");

    let second = up.commit_file(
        "page.txt",
        format!("{text}one more line\n"),
        "one more line",
    );
    run.wait_for_link_hash(&s.link(), &second);
    let stderr = run.stderr();
    assert!(
        stderr.contains("could not index the received pack")
            && stderr.contains("damaged object of the local object store")
            && stderr.contains("checking the object store"),
        "{stderr}"
    );
    assert!(stderr.contains("emptying it"), "{stderr}");
    assert_tree_matches_commit(&s.link(), &up, &second);

    // The whole pack body overwritten: even our own commit is unreadable,
    // and the fetch fails before it asks for anything.
    let packs = pack_files(&s.root);
    assert_eq!(packs.len(), 1, "{packs:?}");
    let mut bytes = fs::read(&packs[0]).expect("read pack");
    let end = bytes.len() - 20;
    bytes[12..end].fill(b'X');
    fs::write(&packs[0], &bytes).expect("damage the pack");
    let third = up.commit_file("page.txt", format!("{text}a third version\n"), "third");
    run.wait_for_link_hash(&s.link(), &third);
    assert_tree_matches_commit(&s.link(), &up, &third);
}

fn pack_files(root: &Path) -> Vec<std::path::PathBuf> {
    fs::read_dir(root.join(".git/objects/pack"))
        .expect("pack dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "pack"))
        .collect()
}
