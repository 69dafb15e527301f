//! Submodules (`--submodules`): checked out into each worktree from their own
//! servers, across syncs (add, update, rewind, remove), nested per mode,
//! with relative and absolute URLs, `--depth`, clear failures that leave the
//! old content published, reuse of unchanged submodules and the start-up
//! check of a worktree holding them, and symlinks judged across the
//! submodule boundary.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use crate::support::servers::{Fault, FaultProxy};
use crate::support::sidecar::describe_output;
use crate::support::*;

/// A superproject and a submodule repository next to it (same server).
struct Pair {
    site: Upstream,
    sub: Upstream,
}

impl Pair {
    fn new() -> Self {
        let site = Upstream::named("site");
        let sub = site.sibling("sub.git");
        Pair { site, sub }
    }
}

/// The published submodule directory matches `commit` of `sub` exactly.
fn assert_submodule(s: &Scratch, path: &str, sub: &Upstream, commit: &str) {
    assert_tree_matches_commit(&s.link().join(path), sub, commit);
}

/// The store git-sidecar keeps for the submodule named `name`.
fn store(s: &Scratch, name: &str) -> PathBuf {
    s.root.join(".git/modules").join(name)
}

#[test]
fn add_update_rewind_and_remove_across_syncs() {
    let p = Pair::new();
    let s1 = p.sub.commit_file("style.css", "v1\n", "sub one");
    let s2 = p.sub.commit_file("style.css", "v2\n", "sub two");
    let daemon = GitDaemon::start(p.site.base());
    let first = p.site.commit_file("index.html", "hi\n", "no submodule yet");
    let s = Scratch::new();
    let run = s
        .sidecar(&daemon.url("site"))
        .args(["--period", "100ms"])
        .spawn();
    run.wait_for_link_hash(&s.link(), &first);

    let modules = gitmodules(&[("theme", "theme", "../sub.git")]);
    let added = p.site.commit_gitlinks(&modules, &[("theme", &s1)], "add");
    run.wait_for_link_hash(&s.link(), &added);
    assert_published_layout(&s.root, &s.link());
    assert_tree_matches_commit(&s.link(), &p.site, &added);
    assert_submodule(&s, "theme", &p.sub, &s1);
    assert!(
        !s.link().join("theme/.git").exists(),
        "no .git in a submodule"
    );

    let updated = p
        .site
        .commit_gitlinks(&modules, &[("theme", &s2)], "update");
    run.wait_for_link_hash(&s.link(), &updated);
    assert_submodule(&s, "theme", &p.sub, &s2);

    let rewound = p
        .site
        .commit_gitlinks(&modules, &[("theme", &s1)], "rewind");
    run.wait_for_link_hash(&s.link(), &rewound);
    assert_submodule(&s, "theme", &p.sub, &s1);
    assert_published_layout(&s.root, &s.link());
    assert!(store(&s, "theme").is_dir(), "{}", run.logs());

    let removed = p.site.commit_gitlink_removal("theme", "", "remove");
    run.wait_for_link_hash(&s.link(), &removed);
    assert!(
        !s.link().join("theme").exists(),
        "the submodule's directory stays"
    );
    assert_tree_matches_commit(&s.link(), &p.site, &removed);
    run.wait_until(DEADLINE, "the unused store is deleted", || {
        !store(&s, "theme").exists()
    });
}

/// site -> lib (sub.git) -> inner (inner.git), all file:// URLs.
fn nested() -> (Pair, Upstream, String) {
    let p = Pair::new();
    let inner = p.site.sibling("inner.git");
    let i1 = inner.commit_file("inner.txt", "inner\n", "inner");
    p.sub.commit_file("lib.txt", "lib\n", "lib");
    let inner_url = inner.file_url();
    let lib_modules = gitmodules(&[("inner", "deep/inner", &inner_url)]);
    let l1 = p
        .sub
        .commit_gitlinks(&lib_modules, &[("deep/inner", &i1)], "nest");
    let site_modules = gitmodules(&[("lib", "vendor/lib", &p.sub.file_url())]);
    let top = p
        .site
        .commit_gitlinks(&site_modules, &[("vendor/lib", &l1)], "top");
    (p, inner, top)
}

#[test]
fn nested_submodules_follow_the_mode() {
    let (p, _inner, top) = nested();
    for (mode, lib, inner) in [
        ("recursive", true, true),
        ("shallow", true, false),
        ("off", false, false),
    ] {
        let s = Scratch::new();
        let out = s
            .sidecar(&p.site.file_url())
            .arg(format!("--submodules={mode}"))
            .arg("--one-time")
            .run(Duration::from_secs(60));
        assert!(out.status.success(), "{mode}: {}", describe_output(&out));
        assert_eq!(s.published().as_deref(), Some(top.as_str()));
        let lib_dir = s.link().join("vendor/lib");
        let inner_dir = lib_dir.join("deep/inner");
        assert_eq!(lib_dir.join("lib.txt").is_file(), lib, "{mode}");
        assert_eq!(inner_dir.join("inner.txt").is_file(), inner, "{mode}");
        // What is not checked out is an empty directory, as git leaves it.
        if !lib {
            assert!(list_dir(&lib_dir).is_empty(), "{mode}");
        } else if !inner {
            assert!(
                inner_dir.is_dir() && list_dir(&inner_dir).is_empty(),
                "{mode}"
            );
        }
        assert_published_layout(&s.root, &s.link());
        let nested_store = store(&s, "lib").join("modules/inner");
        assert_eq!(nested_store.is_dir(), inner, "{mode}: nested store");
    }
}

#[test]
fn absolute_url_over_http_and_idle_polls_leave_the_submodule_server_alone() {
    let site = Upstream::named("site");
    let sub = Upstream::named("sub");
    let s1 = sub.commit_file("a.txt", "from another server\n", "sub");
    let site_http = HttpGit::start(site.base(), HttpOpts::default());
    let sub_http = HttpGit::start(sub.base(), HttpOpts::default());
    let modules = gitmodules(&[("other", "other", &sub_http.url("sub"))]);
    let top = site.commit_gitlinks(&modules, &[("other", &s1)], "absolute url");
    let s = Scratch::new();
    let run = s
        .sidecar(&site_http.url("site"))
        .args(["--period", "50ms", "-v", "1"])
        .spawn();
    run.wait_for_link_hash(&s.link(), &top);
    assert_tree_matches_commit(&s.link().join("other"), &sub, &s1);
    let served = sub_http.requests();
    assert!(served > 0);
    let polls_before = site_http.requests();
    run.wait_until(DEADLINE, "ten more polls of the superproject", || {
        site_http.requests() >= polls_before + 10
    });
    assert_eq!(
        sub_http.requests(),
        served,
        "idle polls asked the submodule's server"
    );
}

#[test]
fn depth_applies_to_the_submodule_store() {
    let p = Pair::new();
    let subs = p.sub.commit_many(3, "history");
    let daemon = GitDaemon::start(p.site.base());
    let modules = gitmodules(&[("h", "h", "./../sub.git")]);
    let top = p.site.commit_gitlinks(&modules, &[("h", &subs[2])], "top");
    for (depth, count) in [("1", 1), ("0", 3)] {
        let s = Scratch::new();
        let out = s
            .sidecar(&daemon.url("site"))
            .args(["--depth", depth, "--one-time"])
            .run(Duration::from_secs(60));
        assert!(out.status.success(), "{}", describe_output(&out));
        assert_eq!(s.published().as_deref(), Some(top.as_str()));
        assert_submodule(&s, "h", &p.sub, &subs[2]);
        let store = store(&s, "h");
        let commits = git(&["rev-list", "--count", &subs[2]], &store);
        assert_eq!(commits, count.to_string(), "--depth {depth}");
        assert_eq!(
            store.join("shallow").is_file(),
            count == 1,
            "--depth {depth}"
        );
    }
}

#[test]
fn a_missing_submodule_commit_fails_the_sync_and_keeps_the_old_content() {
    let p = Pair::new();
    let s1 = p.sub.commit_file("a.txt", "one\n", "one");
    let daemon = GitDaemon::start(p.site.base());
    let modules = gitmodules(&[("lib", "lib", "../sub.git")]);
    let good = p.site.commit_gitlinks(&modules, &[("lib", &s1)], "good");
    let s = Scratch::new();
    let run = s
        .sidecar(&daemon.url("site"))
        .args(["--period", "100ms", "--error-file"])
        .arg(s.error_file())
        .spawn();
    run.wait_for_link_hash(&s.link(), &good);

    let missing = "0123456789abcdef0123456789abcdef01234567";
    p.site
        .commit_gitlinks(&modules, &[("lib", missing)], "unpushed");
    let sub_url = daemon.url("sub.git");
    run.wait_until(DEADLINE, "the failure is logged", || {
        run.stderr().contains(&format!("submodule lib ({sub_url})"))
    });
    let logs = run.stderr();
    assert!(
        logs.contains(missing) && logs.contains("not our ref"),
        "{logs}"
    );
    assert!(logs.contains("was the submodule commit pushed?"), "{logs}");
    // The error file is written just after the log line.
    run.wait_until(DEADLINE, "the error file records it", || {
        error_file_has_err(&s.error_file())
    });
    assert_eq!(s.published().as_deref(), Some(good.as_str()));
    assert_submodule(&s, "lib", &p.sub, &s1);
}

#[test]
fn an_unreachable_submodule_server_fails_the_sync_naming_it() {
    let site = Upstream::named("site");
    let url = format!("http://127.0.0.1:{}/sub", free_port());
    let modules = gitmodules(&[("gone", "gone", &url)]);
    let fake = site.commit_file("x", "x", "some commit");
    site.commit_gitlinks(&modules, &[("gone", &fake)], "server down");
    let s = Scratch::new();
    let out = s
        .sidecar(&site.file_url())
        .args(["--one-time", "--sync-timeout", "20s"])
        .run(Duration::from_secs(60));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", describe_output(&out));
    assert!(err.contains(&format!("submodule gone ({url})")), "{err}");
    assert!(s.published().is_none());
}

#[test]
fn bad_gitmodules_are_refused_before_anything_is_fetched() {
    let site = Upstream::named("site");
    let daemon = GitDaemon::start(site.base());
    let c = site.commit_file("f", "f", "f");
    let cases = [
        (
            gitmodules(&[("../../../escape", "lib", "../sub.git")]),
            "refusing the submodule name",
        ),
        (
            gitmodules(&[("lib", "elsewhere", "../sub.git")]),
            "has no submodule with path",
        ),
        (
            gitmodules(&[("lib", "lib", "/etc/some-local-repo")]),
            "only when --repo is a local repository too",
        ),
        (String::new(), "has no submodule with path"),
    ];
    for (modules, expected) in cases {
        site.commit_gitlinks(&modules, &[("lib", &c)], "bad");
        let s = Scratch::new();
        let out = s
            .sidecar(&daemon.url("site"))
            .arg("--one-time")
            .run(Duration::from_secs(60));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{}", describe_output(&out));
        assert!(
            err.contains("submodule lib: ") && err.contains(expected),
            "{err}"
        );
        assert!(s.published().is_none());
        assert!(!s.root.join(".git/modules").exists(), "nothing fetched");
        assert!(!s.dir.path().join("escape").exists());
    }
}

#[test]
fn rewriting_a_worktree_keeps_unchanged_submodules() {
    let p = Pair::new();
    for i in 0..20 {
        p.sub.write_file(&format!("f{i}.txt"), format!("{i}\n"));
    }
    let s1 = p.sub.commit_all("twenty files");
    let s2 = p.sub.commit_file("f0.txt", "changed\n", "one changed");
    let modules = gitmodules(&[("lib", "lib", &p.sub.file_url())]);
    let mut shas = vec![p.site.commit_gitlinks(&modules, &[("lib", &s1)], "one")];
    let s = Scratch::new();
    let run = s
        .sidecar(&p.site.file_url())
        .args(["--period", "100ms"])
        .spawn();
    run.wait_for_link_hash(&s.link(), &shas[0]);
    let mut trees = vec![inodes(&s.link().join("lib"))];
    // Two top-level-only commits (the second rewrites the first worktree),
    // then the submodule moves.
    for (i, sub_commit) in [(1, &s1), (2, &s1), (3, &s2)] {
        let sha = match i {
            3 => p
                .site
                .commit_gitlinks(&modules, &[("lib", sub_commit)], "move"),
            _ => p.site.commit_file("top.txt", format!("{i}\n"), "top only"),
        };
        run.wait_for_link_hash(&s.link(), &sha);
        assert_submodule(&s, "lib", &p.sub, sub_commit);
        assert_published_layout(&s.root, &s.link());
        trees.push(inodes(&s.link().join("lib")));
        shas.push(sha);
    }
    // Publish 2 was rewritten from publish 0: same submodule commit, same
    // inodes. (Publish 3, rewritten from 1 with another submodule commit, was
    // checked for content above.)
    assert_eq!(trees[0].len(), 20);
    assert_eq!(
        trees[2], trees[0],
        "unchanged submodule files were rewritten"
    );
}

#[test]
fn a_restart_keeps_a_verified_worktree_with_submodules_and_repairs_a_modified_one() {
    let (p, _inner, top) = nested();
    let s = Scratch::new();
    let start = || {
        s.sidecar(&p.site.file_url())
            .args(["--period", "100ms", "-v", "1"])
            .spawn()
    };
    let run = start();
    run.wait_for_link_hash(&s.link(), &top);
    let inner_file = s.link().join("vendor/lib/deep/inner/inner.txt");
    let before = inodes(&s.link());
    run.kill9();

    let run = start();
    run.wait_until(DEADLINE, "a poll after the restart", || {
        run.stderr().contains("no change")
    });
    assert_eq!(inodes(&s.link()), before, "{}", run.logs());
    assert!(!run.stderr().contains("rebuilding it"), "{}", run.logs());
    run.kill9();

    fs::write(&inner_file, "tampered\n").expect("tamper");
    let run = start();
    run.wait_until(DEADLINE, "the tampered file is restored", || {
        fs::read_to_string(&inner_file).is_ok_and(|c| c == "inner\n")
    });
    assert!(
        run.stderr().contains("was modified; rebuilding it"),
        "{}",
        run.logs()
    );
    run.kill9();

    // Another --submodules is a change of settings, not tampering: said
    // so, without the warning.
    for mode in ["off", "shallow", "recursive"] {
        let out = s
            .sidecar(&p.site.file_url())
            .args(["--submodules", mode, "--one-time"])
            .run(Duration::from_secs(60));
        assert!(out.status.success(), "{mode}: {}", describe_output(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("its submodules were checked out under another --submodules")
                && !err.contains("was modified"),
            "{mode}: {err}"
        );
    }
}

/// A symlink committed in `up`'s work tree (not yet committed).
fn link_in(up: &Upstream, rel: &str, target: &str) {
    std::os::unix::fs::symlink(target, up.path().join(rel)).expect("symlink in upstream");
    up.git(&["add", "--", rel]);
}

/// The submodule's `l -> .` (harmless alone), as `sub`; returns the commit.
fn with_self_link(p: &Pair) -> String {
    link_in(&p.sub, "l", ".");
    let s1 = p.sub.commit_file("page.html", "sub\n", "a link to itself");
    let modules = gitmodules(&[("sub", "sub", &p.sub.file_url())]);
    p.site.commit_gitlinks(&modules, &[("sub", &s1)], "add sub")
}

/// The superproject's `a -> sub/l/l/../../../.git/config`, harmless alone
/// (it sees `sub/l` as a directory); with the submodule's `l -> .`, `a`
/// reaches `<root>/.git/config`.
fn commit_escape(p: &Pair) -> String {
    link_in(&p.site, "a", "sub/l/l/../../../.git/config");
    p.site.git(&["commit", "-q", "-m", "escape through sub/l"]);
    p.site.head()
}

#[test]
fn a_link_escaping_through_a_submodules_link_is_refused_and_the_old_content_stays() {
    let p = Pair::new();
    with_self_link(&p);
    let s = Scratch::new();
    let run = s
        .sidecar(&p.site.file_url())
        .args(["--period", "100ms", "--error-file"])
        .arg(s.error_file())
        .spawn();
    // Two publishes first, so the hostile commit rewrites a retired
    // worktree and keeps the unchanged submodule (only the top level changes).
    let mut good = String::new();
    for i in 0..2 {
        good = p
            .site
            .commit_file("index.html", format!("{i}\n"), "top only");
        run.wait_for_link_hash(&s.link(), &good);
    }
    commit_escape(&p);
    run.wait_until(DEADLINE, "the refusal is logged", || {
        run.stderr()
            .contains("a -> sub/l/l/../../../.git/config; refusing to publish it")
    });
    assert!(
        run.stderr().contains("points outside the worktree"),
        "{}",
        run.logs()
    );
    // The error file is written just after the log line.
    run.wait_until(DEADLINE, "the error file records it", || {
        error_file_has_err(&s.error_file())
    });
    assert_eq!(s.published().as_deref(), Some(good.as_str()));
    assert!(
        !list_dir(&s.root.join(".worktrees"))
            .iter()
            .any(|n| n.starts_with('.')),
        "staging left"
    );
}

#[test]
fn escaping_symlinks_allow_and_skip_across_the_submodule_boundary() {
    let p = Pair::new();
    with_self_link(&p);
    let top = commit_escape(&p);
    for policy in ["allow", "skip"] {
        let s = Scratch::new();
        let out = s
            .sidecar(&p.site.file_url())
            .arg(format!("--escaping-symlinks={policy}"))
            .arg("--one-time")
            .run(Duration::from_secs(60));
        assert!(out.status.success(), "{policy}: {}", describe_output(&out));
        assert_eq!(s.published().as_deref(), Some(top.as_str()), "{policy}");
        let a = s.link().join("a");
        assert!(s.link().join("sub/l").is_symlink(), "{policy}");
        if policy == "allow" {
            // What the default refuses really leaves the worktree.
            let config = fs::read_to_string(s.root.join(".git/config")).expect("config");
            assert_eq!(fs::read_to_string(&a).ok(), Some(config));
        } else {
            assert!(!a.is_symlink(), "skip left the escaping link in place");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("left out symlinks"), "{err}");
            let status = git(&["status", "--porcelain"], &s.link());
            assert!(status.is_empty(), "git status after skip:\n{status}");
            // The index says so too: the start-up check finds the tree intact.
            let again = s
                .sidecar(&p.site.file_url())
                .args(["--escaping-symlinks=skip", "--one-time"])
                .run(Duration::from_secs(60));
            let err = String::from_utf8_lossy(&again.stderr);
            assert!(again.status.success(), "{}", describe_output(&again));
            assert!(!err.contains("rebuilding it"), "{err}");
        }
    }
}

#[test]
fn submodule_links_are_judged_within_the_whole_worktree() {
    let p = Pair::new();
    link_in(&p.sub, "up", "../index.html");
    let inside = p
        .sub
        .commit_file("page.html", "sub\n", "a link into the superproject");
    p.site.write_file("index.html", "top\n");
    p.site.git(&["add", "--", "index.html"]);
    let modules = gitmodules(&[("sub", "sub", &p.sub.file_url())]);
    let top = p
        .site
        .commit_gitlinks(&modules, &[("sub", &inside)], "inside");
    let s = Scratch::new();
    let sync = |s: &Scratch| {
        s.sidecar(&p.site.file_url())
            .arg("--one-time")
            .run(Duration::from_secs(60))
    };
    let out = sync(&s);
    assert!(out.status.success(), "{}", describe_output(&out));
    assert_eq!(s.published().as_deref(), Some(top.as_str()));
    let up = fs::read_to_string(s.link().join("sub/up")).ok();
    assert_eq!(up.as_deref(), Some("top\n"));

    // One more level up leaves the worktree.
    link_in(&p.sub, "out", "../../x");
    let outside = p.sub.commit_all("a link out");
    p.site
        .commit_gitlinks(&modules, &[("sub", &outside)], "outside");
    let s = Scratch::new();
    let out = sync(&s);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", describe_output(&out));
    assert!(err.contains("sub/out -> ../../x; refusing"), "{err}");
    assert!(s.published().is_none());

    // skip leaves it out of the submodule; its record agrees at start-up.
    let s = Scratch::new();
    for _ in 0..2 {
        let out = s
            .sidecar(&p.site.file_url())
            .args(["--escaping-symlinks=skip", "--one-time"])
            .run(Duration::from_secs(60));
        assert!(out.status.success(), "{}", describe_output(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("rebuilding it"), "{err}");
    }
    assert!(!s.link().join("sub/out").is_symlink());
    assert!(s.link().join("sub/up").is_symlink());
}

/// Changes a consumer makes inside a submodule that size and mtime do not
/// show: an empty directory, a chmod, same-size content with the mtime put back.
fn tamper_quietly(dir: &std::path::Path, round: usize) {
    use crate::support::scribble::{change_in_place, toggle_exec};
    fs::create_dir(dir.join(format!("empty-{round}"))).expect("mkdir in the submodule");
    toggle_exec(&dir.join("f1.txt")).expect("chmod in the submodule");
    change_in_place(&dir.join("f2.txt")).expect("edit in the submodule");
}

#[test]
fn writes_into_submodules_do_not_reach_later_trees() {
    let p = Pair::new();
    for i in 0..6 {
        p.sub.write_file(&format!("f{i}.txt"), format!("{i}\n"));
    }
    let s1 = p.sub.commit_all("six files");
    let modules = gitmodules(&[("lib", "lib", &p.sub.file_url())]);
    let mut sha = p.site.commit_gitlinks(&modules, &[("lib", &s1)], "one");
    let s = Scratch::new();
    let run = s
        .sidecar(&p.site.file_url())
        .args(["--period", "100ms"])
        .spawn();
    run.wait_for_link_hash(&s.link(), &sha);
    // Top-level commits only: the submodule's commit never changes, so a
    // rewrite would keep its directory if it looked right.
    for i in 0..3 {
        let tree = fs::canonicalize(s.link()).expect("the published tree");
        tamper_quietly(&tree.join("lib"), i);
        sha = p.site.commit_file("top.txt", format!("{i}\n"), "top only");
        run.wait_for_link_hash(&s.link(), &sha);
        assert_submodule(&s, "lib", &p.sub, &s1);
        assert_published_layout(&s.root, &s.link());
    }

    // With --submodules=off the gitlink's directory stays empty.
    let s = Scratch::new();
    let run = s
        .sidecar(&p.site.file_url())
        .args(["--period", "100ms", "--submodules", "off"])
        .spawn();
    run.wait_for_link_hash(&s.link(), &sha);
    for i in 0..3 {
        let tree = fs::canonicalize(s.link()).expect("the published tree");
        fs::write(tree.join("lib/stray.txt"), "stray\n").expect("write into lib");
        sha = p
            .site
            .commit_file("top.txt", format!("off {i}\n"), "top only");
        run.wait_for_link_hash(&s.link(), &sha);
        assert_eq!(
            list_dir(&s.link().join("lib")),
            Vec::<String>::new(),
            "round {i}"
        );
        assert_tree_matches_commit(&s.link(), &p.site, &sha);
    }
}

/// The submodule store's pack data files and shallow lines after
/// `updates` submodule commits, each published, with `--git-gc=<mode>`
/// (None = the default), once `settled` holds for them (the upkeep runs
/// just after a publish) or 10 s passed.
fn submodule_store_after_updates(
    mode: Option<&str>,
    updates: usize,
    settled: fn(usize, usize) -> bool,
) -> (usize, usize) {
    let p = Pair::new();
    let modules = gitmodules(&[("lib", "lib", "../sub.git")]);
    let first = p.sub.commit_file("v.txt", "0\n", "sub 0");
    let top = p.site.commit_gitlinks(&modules, &[("lib", &first)], "add");
    let daemon = GitDaemon::start(p.site.base());
    let s = Scratch::new();
    let mut sidecar = s.sidecar(&daemon.url("site")).args(["--period", "50ms"]);
    if let Some(mode) = mode {
        sidecar = sidecar.arg(format!("--git-gc={mode}"));
    }
    let run = sidecar.spawn();
    run.wait_for_link_hash(&s.link(), &top);
    for i in 1..=updates {
        let sub = p
            .sub
            .commit_file("v.txt", format!("{i}\n"), &format!("sub {i}"));
        let top = p.site.commit_gitlinks(&modules, &[("lib", &sub)], "bump");
        run.wait_for_link_hash(&s.link(), &top);
    }
    let now = || {
        let shallow = std::fs::read_to_string(store(&s, "lib").join("shallow"));
        let lines = shallow.unwrap_or_default().lines().count();
        (pack_data_files(&store(&s, "lib")).len(), lines)
    };
    poll_until(Duration::from_secs(10), || {
        let (packs, lines) = now();
        settled(packs, lines)
    });
    run.assert_running();
    now()
}

/// `--git-gc` governs the submodules' stores as it does the root's: `off`
/// leaves even 18 packs alone (each update fetched one), while the default
/// merges them once 16 pile up. Either way the shallow file, one line
/// longer after each fetch, is trimmed once it passes 17 lines, as the
/// root's is.
#[test]
fn git_gc_governs_the_submodule_stores_too() {
    fn trimmed(lines: usize) -> bool {
        (1..=3).contains(&lines)
    }
    let (off, off_lines) = submodule_store_after_updates(Some("off"), 17, |_, l| trimmed(l));
    assert_eq!(off, 18, "--git-gc=off must never rewrite a submodule store");
    let (default, lines) = submodule_store_after_updates(None, 17, |n, l| n < 16 && trimmed(l));
    assert!(
        (1..16).contains(&default),
        "the default merges a submodule store's packs once 16 pile up: {default} packs"
    );
    for (mode, lines) in [("off", off_lines), ("the default", lines)] {
        assert!(
            trimmed(lines),
            "{mode}: {lines} shallow lines after 18 fetches"
        );
    }
}

/// A protocol v0 server (sshd in its default configuration, a git daemon
/// answering v0) sends a commit by SHA only if it is a ref's tip, unless
/// `uploadpack.allowReachableSHA1InWant` is set; a submodule pinned to an
/// older commit is the usual case. With `--depth 0`, as git's `submodule
/// update` finds the commit among the branches it fetched, the submodule's
/// default branch is fetched in full and the commit found there, or else
/// in another branch; with `--depth 1` (git fails too) the error says
/// what to set.
#[test]
fn a_v0_server_refusing_an_older_submodule_commit_is_read_through_its_branch_at_depth_0() {
    let p = Pair::new();
    let pinned = p.sub.commit_file("style.css", "v1\n", "sub one");
    p.sub
        .commit_file("style.css", "v2\n", "sub two: the pinned commit is no tip");
    let modules = gitmodules(&[("theme", "theme", "../sub.git")]);
    let site = p
        .site
        .commit_gitlinks(&modules, &[("theme", &pinned)], "pinned");
    // git's defaults, which the test harness's server configuration relaxes.
    let daemon = GitDaemon::start_v0_with_config(
        p.site.base(),
        &[
            ("uploadpack.allowReachableSHA1InWant", "false"),
            ("uploadpack.allowAnySHA1InWant", "false"),
        ],
    );

    let s = Scratch::new();
    let out = s
        .sidecar(&daemon.url("site"))
        .arg("--one-time")
        .run(Duration::from_secs(60));
    assert!(!out.status.success(), "{}", describe_output(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("allowReachableSHA1InWant"),
        "{}",
        describe_output(&out)
    );

    let depth_0 = |s: &Scratch| {
        s.sidecar(&daemon.url("site"))
            .args(["--one-time", "--depth", "0"])
            .run(Duration::from_secs(60))
    };
    let s = Scratch::new();
    let out = depth_0(&s);
    assert!(out.status.success(), "{}", describe_output(&out));
    assert_eq!(s.published().as_deref(), Some(site.as_str()));
    assert_submodule(&s, "theme", &p.sub, &pinned);

    // A commit on a release branch only, no longer its tip: in the root
    // that has the default branch already, and in a new one.
    p.sub.git(&["checkout", "-q", "-b", "release", &pinned]);
    let on_release = p.sub.commit_file("style.css", "v1.1\n", "release fix");
    p.sub
        .commit_file("style.css", "v1.2\n", "the next release fix");
    p.sub.checkout("main");
    let site = p
        .site
        .commit_gitlinks(&modules, &[("theme", &on_release)], "release fix");
    for s in [&s, &Scratch::new()] {
        let out = depth_0(s);
        assert!(out.status.success(), "{}", describe_output(&out));
        assert_eq!(s.published().as_deref(), Some(site.as_str()));
        assert_submodule(s, "theme", &p.sub, &on_release);
    }
}

/// The same v0 server goes away once the submodule's commit was refused
/// by SHA and its default branch fetched: the fetch of every branch fails,
/// and that failure is the error, not a claim that the commit is in no
/// branch.
#[test]
fn a_failed_search_of_the_submodules_branches_is_the_error() {
    let p = Pair::new();
    let base = p.sub.commit_file("style.css", "v1\n", "sub one");
    p.sub.git(&["checkout", "-q", "-b", "release", &base]);
    let on_release = p.sub.commit_file("style.css", "v1.1\n", "release fix");
    p.sub
        .commit_file("style.css", "v1.2\n", "the next release fix");
    p.sub.checkout("main");
    let daemon = GitDaemon::start_v0_with_config(
        p.site.base(),
        &[
            ("uploadpack.allowReachableSHA1InWant", "false"),
            ("uploadpack.allowAnySHA1InWant", "false"),
        ],
    );
    let proxy = FaultProxy::start(daemon.addr());
    // The SHA refused, the default branch fetched, then the server is gone.
    proxy.set_from(2, Fault::ResetOnAccept);
    let modules = gitmodules(&[("theme", "theme", &proxy.git_url("sub.git"))]);
    p.site
        .commit_gitlinks(&modules, &[("theme", &on_release)], "release fix");
    let s = Scratch::new();
    let out = s
        .sidecar(&daemon.url("site"))
        .args(["--one-time", "--depth", "0"])
        .run(Duration::from_secs(60));
    assert!(!out.status.success(), "{}", describe_output(&out));
    assert_eq!(proxy.connections(), 3, "{}", describe_output(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("in none of the submodule's branches") && !stderr.contains("not our ref"),
        "{}",
        describe_output(&out)
    );
    // The reset reaches the client while it connects or while it lists,
    // as the scheduler has it: the branch search's own failure either way.
    assert!(
        stderr.contains("could not list remote refs: Connection reset by peer")
            || stderr.contains(": Connection reset by peer (os error 104)"),
        "{}",
        describe_output(&out)
    );
    assert!(s.published().is_none());
}

/// A sync that fails at the submodule step (its repository is missing)
/// leaves no admin files of the tree it did not publish: they named
/// objects the failed pass rolled back, `git fsck` (git-sync's start-up
/// check) failed on them, and one piled up per failing commit.
#[test]
fn a_failed_submodule_step_leaves_no_admin_files_behind() {
    let up = Upstream::new();
    let a = up.commit_file("index.html", "a\n", "a");
    let sub = up.sibling("sub");
    let s1 = sub.commit_file("lib.txt", "lib\n", "sub");
    let s = Scratch::new();
    let run = s
        .sidecar(&up.file_url())
        .args(["--period", "200ms", "--max-failures", "-1"])
        .spawn();
    run.wait_for_link_hash(&s.link(), &a);
    let modules = gitmodules(&[("lib", "lib", "../missing")]);
    let b = up.commit_gitlinks(
        &modules,
        &[("lib", &s1)],
        "a submodule that cannot be fetched",
    );
    run.wait_until(DEADLINE, "two failed syncs", || {
        run.stderr().matches("\"msg\":\"sync failed\"").count() >= 2
    });
    let admin = list_dir(&s.root.join(".git/worktrees"));
    assert!(!admin.contains(&b), "{admin:?}\n{}", run.logs());
    assert_eq!(admin, std::slice::from_ref(&a), "{}", run.logs());
    let fsck = std::process::Command::new("git")
        .args(["--git-dir"])
        .arg(s.root.join(".git"))
        .args(["fsck", "--no-progress"])
        .output()
        .expect("git fsck");
    assert!(fsck.status.success(), "{fsck:?}\n{}", run.logs());
    assert_eq!(s.published().as_deref(), Some(a.as_str()));
}
