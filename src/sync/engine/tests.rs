//! The real [`Engine`], in-process, against `file://` upstreams made with
//! the git CLI in a temporary directory: what one pass does on disk.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use super::*;
use crate::git::test_git::git;
use crate::rootlock::{self, Attempt};

/// An upstream repository and a root to sync it into.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let up = dir.path().join("up");
        fs::create_dir(&up).expect("mkdir up");
        git(&up, &["init", "-q", "-b", "main"]);
        Self { dir }
    }

    fn upstream(&self) -> PathBuf {
        self.dir.path().join("up")
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn link(&self) -> PathBuf {
        self.root().join("link")
    }

    /// Commits `content` as `f` upstream; the new commit's hash.
    fn commit(&self, content: &str) -> CommitHash {
        let up = self.upstream();
        fs::write(up.join("f"), content).expect("write f");
        git(&up, &["add", "f"]);
        git(&up, &["commit", "-q", "-m", content]);
        CommitHash::parse(&git(&up, &["rev-parse", "HEAD"])).expect("a commit hash")
    }

    fn options(&self) -> Options {
        Options {
            repo: crate::git::Remote::parse(&format!("file://{}", self.upstream().display()))
                .expect("a file:// url"),
            root: self.root(),
            link: self.link(),
            git_ref: "main".into(),
            depth: 1,
            stale_worktree_timeout: Duration::ZERO,
            escaping_symlinks: SymlinkPolicy::default(),
            gc: GcMode::default(),
            sparse: None,
            filter: None,
            pre_publish: None,
            auth: None,
            ssh: git::ssh::Options::default(),
            submodules: SubmoduleMode::default(),
            access: Access::default(),
            verify: Default::default(),
            threads: 2,
        }
    }

    /// What the link shows of `f`.
    fn published_f(&self) -> String {
        fs::read_to_string(self.link().join("f")).expect("read the published f")
    }
}

/// An engine as a process starts one (it holds the root's lock). The lock
/// of an engine just dropped can stay held for a moment: a process another
/// test forks at that time shares the lock file's descriptor until it execs.
fn engine(opts: Options) -> Engine {
    let give_up = std::time::Instant::now() + Duration::from_secs(30);
    let lock = loop {
        match rootlock::try_acquire(&opts.root).expect("locking the root") {
            Attempt::Acquired(lock) => break lock,
            Attempt::Held { holder } if std::time::Instant::now() > give_up => {
                panic!("the root is still locked by {holder}")
            }
            Attempt::Held { .. } => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    Engine::new(opts, Arc::new(Metrics::new()), lock).expect("an engine")
}

fn budget() -> Budget {
    Budget::for_tests()
}

/// A budget whose interrupt flag is up already (shutdown came).
fn interrupted_budget(timeout: Duration) -> Budget {
    Budget::new(timeout, Arc::new(AtomicBool::new(true)))
}

/// (path, inode, size, mtime, ctime) of everything below `dir`, sorted.
fn snapshot(dir: &Path) -> Vec<(PathBuf, u64, u64, i64, i64, i64, i64)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(path) = todo.pop() {
        let m = fs::symlink_metadata(&path).expect("stat");
        if m.is_dir() {
            for entry in fs::read_dir(&path).expect("read_dir") {
                todo.push(entry.expect("entry").path());
            }
        }
        let times = (m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec());
        out.push((path, m.ino(), m.size(), times.0, times.1, times.2, times.3));
    }
    out.sort();
    out
}

/// What `.worktrees/` holds, but the published worktree.
fn leftovers(f: &Fixture, published: &CommitHash) -> Vec<String> {
    let dir = f.root().join(".worktrees");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .expect("read .worktrees")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name != published.as_str())
        .collect();
    names.sort();
    names
}

/// The first pass publishes the upstream's commit; passes that find nothing
/// new change nothing on disk (not a file, not a lock, not a directory
/// entry); a new commit is published over the old one.
#[test]
fn publishes_then_idle_passes_write_nothing_then_publishes_the_next_commit() {
    let f = Fixture::new();
    let a = f.commit("a");
    let mut e = engine(f.options());
    let outcome = e.sync_once(&budget()).expect("the first pass");
    assert!(
        matches!(&outcome, Outcome::Published { hash, previous: None, .. } if *hash == a),
        "{outcome:?}"
    );
    assert_eq!(e.layout().current(), Some(a.clone()));
    assert_eq!(f.published_f(), "a");

    assert_eq!(
        e.sync_once(&budget()).expect("an idle pass"),
        Outcome::Unchanged { hash: a.clone() }
    );
    let before = (snapshot(&f.root()), snapshot(&f.upstream()));
    for _ in 0..5 {
        assert_eq!(
            e.sync_once(&budget()).expect("an idle pass"),
            Outcome::Unchanged { hash: a.clone() }
        );
    }
    assert_eq!(
        before,
        (snapshot(&f.root()), snapshot(&f.upstream())),
        "idle passes changed the disk"
    );

    let b = f.commit("b");
    let outcome = e.sync_once(&budget()).expect("the pass after a commit");
    assert!(
        matches!(&outcome, Outcome::Published { hash, previous: Some(p), .. } if *hash == b && *p == a),
        "{outcome:?}"
    );
    assert_eq!(f.published_f(), "b");
}

/// Each publish of a `--depth 1` store adds a shallow line; the upkeep
/// keeps the file from growing with every publish (each fetch sends all
/// of it), with `--git-gc=off` too (trimming rewrites no object).
#[test]
fn the_shallow_file_stays_short_whatever_the_gc_mode() {
    let lines = |root: &Path| {
        fs::read_to_string(root.join(".git/shallow"))
            .expect("shallow file")
            .lines()
            .count()
    };
    for gc in [GcMode::Auto, GcMode::Off] {
        let f = Fixture::new();
        f.commit("0");
        let mut e = engine(Options { gc, ..f.options() });
        for n in 1..40 {
            let hash = f.commit(&n.to_string());
            let outcome = e.sync_once(&budget()).expect("a pass");
            assert!(
                matches!(&outcome, Outcome::Published { hash: h, .. } if *h == hash),
                "{gc:?} {n}: {outcome:?}"
            );
        }
        let count = lines(&f.root());
        assert!(
            count <= 20,
            "{gc:?}: {count} shallow lines after 39 publishes"
        );
    }
}

/// `--git-config` belongs to each engine, not to the process: in one
/// process, the engine given `transfer.hideRefs` for `main` does not see the
/// branch through its file:// upload-pack, nor does its gate's git miss the
/// key it was given, while an engine without them syncs and is refused by
/// the same gate.
#[test]
fn git_config_reaches_upload_pack_and_the_gates_git_per_engine() {
    use crate::git::cli_config::GitConfigPairs;
    let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
    let gate = |pairs: &GitConfigPairs| ExecHookConfig {
        command: PathBuf::from("/bin/sh"),
        args: vec![
            "-c".into(),
            "test \"$(git config --get sidecar.gate)\" = open".into(),
        ],
        timeout: Duration::from_secs(30),
        backoff: Duration::from_secs(3600),
        git_config: pairs.clone(),
        ssh_command: None,
    };
    let (hidden, open, plain) = (Fixture::new(), Fixture::new(), Fixture::new());
    for f in [&hidden, &open, &plain] {
        f.commit("a");
    }
    let mut opts = hidden.options();
    opts.access.git_config = GitConfigPairs(vec![pair("transfer.hideRefs", "refs/heads/main")]);
    let error = engine(opts)
        .sync_once(&budget())
        .expect_err("main is hidden");
    let hidden_ref = "couldn't find remote ref \"main\"";
    assert!(error.to_string().contains(hidden_ref), "{error}");

    let mut opts = open.options();
    opts.access.git_config = GitConfigPairs(vec![pair("sidecar.gate", "open")]);
    opts.pre_publish = Some(gate(&opts.access.git_config));
    engine(opts)
        .sync_once(&budget())
        .expect("its gate's git sees the key");

    let mut opts = plain.options();
    opts.pre_publish = Some(gate(&opts.access.git_config));
    let mut e = engine(opts);
    match e.sync_once(&budget()) {
        Err(Error::Gate { .. }) => {}
        other => panic!("the gate's git has no sidecar.gate here: {other:?}"),
    }
}

/// A refusing pre-publish gate keeps the published commit; while its
/// backoff runs, passes report the refusal without running it again; a
/// good commit after it is published at once.
#[test]
fn a_refusing_gate_keeps_the_published_commit() {
    let f = Fixture::new();
    let a = f.commit("good a");
    let mut opts = f.options();
    opts.pre_publish = Some(ExecHookConfig {
        command: PathBuf::from("/bin/sh"),
        args: vec!["-c".into(), "! grep -q bad f".into()],
        timeout: Duration::from_secs(30),
        backoff: Duration::from_secs(3600),
        git_config: Default::default(),
        ssh_command: None,
    });
    let mut e = engine(opts);
    e.sync_once(&budget()).expect("a passes the gate");

    let b = f.commit("bad b");
    for ran in [true, false] {
        match e.sync_once(&budget()) {
            Err(Error::Gate {
                hash,
                published,
                ran: r,
                ..
            }) => {
                assert_eq!((hash, published, r), (b.clone(), Some(a.clone()), ran));
            }
            other => panic!("expected the gate's refusal (ran: {ran}), got {other:?}"),
        }
        assert_eq!(e.layout().current(), Some(a.clone()));
        assert_eq!(f.published_f(), "good a");
    }

    let c = f.commit("good c");
    let outcome = e.sync_once(&budget()).expect("c passes the gate");
    assert!(
        matches!(&outcome, Outcome::Published { hash, previous: Some(p), .. } if *hash == c && *p == a),
        "{outcome:?}"
    );
    assert_eq!(f.published_f(), "good c");
}

/// A restart finds the published tree modified on disk: its first pass
/// checks it file by file and rebuilds it from its commit.
#[test]
fn a_tampered_published_tree_is_repaired_by_the_next_process() {
    let f = Fixture::new();
    let a = f.commit("a");
    let mut e = engine(f.options());
    e.sync_once(&budget()).expect("the first pass");
    drop(e);

    fs::write(f.link().join("f"), "tampered").expect("tamper");
    let mut e = engine(f.options());
    let outcome = e.sync_once(&budget()).expect("the repairing pass");
    assert!(
        matches!(&outcome, Outcome::Published { hash, previous: Some(p), .. } if *hash == a && *p == a),
        "a rebuild of the same commit: {outcome:?}"
    );
    assert_eq!(f.published_f(), "a");
    assert_eq!(leftovers(&f, &a), Vec::<String>::new());
}

/// A checkout stopped by shutdown (the interrupt flag) leaves the published
/// link and nothing half-written; it is an interruption, not a failure.
/// Out of time, it is a failure. The next pass finishes the job. (The ref
/// is the commit's full hash, so the pass needs no network and the first
/// thing to see the flag is the checkout.)
#[test]
fn an_interrupted_checkout_leaves_nothing_half_done_and_the_next_pass_recovers() {
    let f = Fixture::new();
    let a = f.commit("a");
    let mut opts = f.options();
    opts.git_ref = a.to_string();
    let mut e = engine(opts.clone());
    e.sync_once(&budget()).expect("the first pass");
    drop(e);
    fs::remove_file(f.link().join("f")).expect("tamper");

    let mut e = engine(opts);
    let err = e
        .sync_once(&interrupted_budget(Duration::from_secs(60)))
        .expect_err("an interrupted pass");
    assert!(
        matches!(err, Error::Worktree(worktree::Error::Interrupted)),
        "{err}"
    );
    assert!(err.is_interrupted(), "{err}");
    assert_eq!(e.layout().current(), Some(a.clone()));
    assert_eq!(
        leftovers(&f, &a),
        Vec::<String>::new(),
        "half-written trees"
    );

    let err = e
        .sync_once(&interrupted_budget(Duration::ZERO))
        .expect_err("a pass out of time");
    assert!(
        matches!(err, Error::Worktree(worktree::Error::Timeout)),
        "{err}"
    );
    assert!(!err.is_interrupted(), "a timeout is a failure: {err}");
    assert_eq!(
        leftovers(&f, &a),
        Vec::<String>::new(),
        "half-written trees"
    );

    let outcome = e.sync_once(&budget()).expect("the recovering pass");
    assert!(
        matches!(&outcome, Outcome::Published { hash, .. } if *hash == a),
        "{outcome:?}"
    );
    assert_eq!(f.published_f(), "a");
}

/// Shutdown in the middle of writing a worktree: a watcher raises the
/// interrupt flag as soon as the first files of the new commit appear in
/// its staging directory. The pass stops as interrupted, the old commit
/// stays published and intact, no staging directory is left, and the next
/// pass publishes the new commit complete.
#[test]
fn a_checkout_interrupted_half_way_leaves_the_old_tree_and_the_next_pass_completes_it() {
    use std::sync::atomic::Ordering;
    const FILES: usize = 4000;
    let f = Fixture::new();
    let a = f.commit("a");
    let mut e = engine(f.options());
    e.sync_once(&budget()).expect("the first pass");
    assert_eq!(e.layout().current(), Some(a.clone()));

    let up = f.upstream();
    fs::create_dir(up.join("d")).expect("mkdir d");
    for i in 0..FILES {
        fs::write(up.join("d").join(format!("{i:05}")), format!("{i}\n")).expect("write");
    }
    git(&up, &["add", "d"]);
    let b = f.commit("b");

    let flag = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let staged = e.layout().staging(&b).join("d");
    let watcher = {
        let (flag, seen) = (flag.clone(), seen.clone());
        std::thread::spawn(move || {
            let give_up = std::time::Instant::now() + Duration::from_secs(60);
            while std::time::Instant::now() < give_up {
                let n = fs::read_dir(&staged).map(|d| d.count()).unwrap_or(0);
                if n > 0 {
                    seen.store(n, Ordering::SeqCst);
                    flag.store(true, Ordering::SeqCst);
                    return;
                }
                std::thread::yield_now();
            }
        })
    };
    let result = e.sync_once(&Budget::new(Duration::from_secs(60), flag.clone()));
    // Stop the watcher if the pass ended without it (the assertions say why).
    flag.store(true, Ordering::SeqCst);
    watcher.join().expect("the watcher");
    let seen = seen.load(Ordering::SeqCst);
    assert!(
        seen > 0,
        "the watcher never saw the staging directory fill: {result:?}"
    );
    let err = result.expect_err("the checkout finished before the interrupt landed");
    assert!(err.is_interrupted(), "{err}");
    assert!(
        seen < FILES,
        "the interrupt came after the last file ({seen})"
    );
    assert_eq!(e.layout().current(), Some(a.clone()));
    assert_eq!(f.published_f(), "a");
    assert!(!f.link().join("d").exists(), "the old tree was touched");
    assert_eq!(
        leftovers(&f, &a),
        Vec::<String>::new(),
        "half-written trees"
    );

    let outcome = e.sync_once(&budget()).expect("the recovering pass");
    assert!(
        matches!(&outcome, Outcome::Published { hash, .. } if *hash == b),
        "{outcome:?}"
    );
    assert_eq!(f.published_f(), "b");
    let written = fs::read_dir(f.link().join("d")).expect("d").count();
    assert_eq!(written, FILES);
    for i in [0, FILES / 2, FILES - 1] {
        let content = fs::read_to_string(f.link().join("d").join(format!("{i:05}")));
        assert_eq!(content.ok(), Some(format!("{i}\n")));
    }
}

mod verify;
