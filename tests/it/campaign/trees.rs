//! Hostile trees, crafted as raw tree objects git itself would refuse to
//! commit, and symlinks that lead out of the worktree.
//!
//! * Unsafe names (`..`, `.git` in any case and at any depth, NTFS's
//!   `git~1`, absolute names, names with slashes; a NUL cannot occur, it
//!   ends a name in the tree format): the commit is refused with
//!   `unsafe path` and the name, nothing is written outside the root (the
//!   root's parent, with a sentinel directory, is compared before and
//!   after), and the old content stays published.
//! * `--escaping-symlinks` (default `refuse`): absolute links, links that
//!   climb out, a link that escapes only through another link of the same
//!   tree, and a link to a directory outside. `refuse` keeps the commit out,
//!   `skip` publishes it without them, `allow` writes them as git does; a
//!   real nginx shows what each means for a visitor.

use std::fs;

use super::{
    assert_still_published, find_names, snapshot, start_with_http, wait_for_error, Snapshot,
};
use crate::support::client;
use crate::support::git::RawEntry;
use crate::support::servers::Nginx;
use crate::support::*;

const PAGE: &str = "<p>the page</p>\n";
const SECRET: &str = "outside the worktree: must never be served\n";

/// A scratch area with a sentinel directory and an `etc/passwd` beside the
/// root, where escaping names and links would land.
struct Site {
    up: Upstream,
    s: Scratch,
    base: String,
}

impl Site {
    fn new() -> Self {
        let s = Scratch::new();
        for rel in ["sentinel/keep.txt", "etc/passwd"] {
            let p = s.dir.path().join(rel);
            fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            fs::write(&p, SECRET).expect("writing a sentinel");
        }
        let up = Upstream::new();
        up.write_file("index.html", "<p>index</p>\n");
        up.write_file("docs/page.html", PAGE);
        std::os::unix::fs::symlink("docs/page.html", up.path().join("inner"))
            .expect("creating the inner symlink");
        let base = up.commit_all("base");
        Site { up, s, base }
    }

    /// The root's parent, minus the root: what must never change.
    fn outside(&self) -> Snapshot {
        snapshot(self.s.dir.path(), &["root"])
    }

    fn blob(&self, content: &str) -> String {
        self.up.write_blob(content.as_bytes())
    }

    fn symlink(&self, name: &str, target: &str) -> RawEntry {
        RawEntry::new("120000", name, &self.blob(target))
    }

    /// A tree entry `name` holding `entries`.
    fn dir(&self, name: impl AsRef<[u8]>, entries: &[RawEntry]) -> RawEntry {
        RawEntry::new("40000", name, &self.up.write_raw_tree(entries))
    }

    fn pwned(&self, name: impl AsRef<[u8]>) -> RawEntry {
        RawEntry::new("100644", name, &self.blob("pwned\n"))
    }

    /// A commit of the base tree plus `extra`, pushed to `main`.
    fn push(&self, extra: &[RawEntry], msg: &str) -> String {
        self.up.commit_with_entries(&self.base, extra, msg)
    }
}

/// Each hostile tree: what it is, its entries, the name the error must show.
fn unsafe_cases(site: &Site) -> Vec<(&'static str, Vec<RawEntry>, String)> {
    let dotdot = site.dir("..", &[site.pwned("pwned")]);
    let dotdot = site.dir("..", &[site.dir("..", &[dotdot])]);
    let git_dir = |name: &str| site.dir(name, &[site.pwned("config"), site.pwned("pwned")]);
    let absolute = format!("{}/sentinel/pwned-absolute", site.s.dir.path().display());
    vec![
        ("`..` three levels deep", vec![dotdot], "..".into()),
        (".git as a tree", vec![git_dir(".git")], ".git".into()),
        (".git as a blob", vec![site.pwned(".git")], ".git".into()),
        (".GIT as a tree", vec![git_dir(".GIT")], ".GIT".into()),
        (
            "docs/.git",
            vec![site.dir("docs", &[git_dir(".git")])],
            "docs/.git".into(),
        ),
        (
            "NTFS short name git~1",
            vec![site.pwned("git~1")],
            "git~1".into(),
        ),
        (
            "a/../../escape",
            vec![site.pwned("a/../../../pwned")],
            "a/../../../pwned".into(),
        ),
        (
            "an absolute name",
            vec![site.pwned(&absolute)],
            absolute.clone(),
        ),
        (
            "a name with a slash",
            vec![site.pwned("x/pwned")],
            "x/pwned".into(),
        ),
    ]
}

#[test]
fn unsafe_paths_are_refused_and_nothing_is_written_outside_the_root() {
    let site = Site::new();
    let s = &site.s;
    let (run, addr) = start_with_http(s.sidecar(&site.up.file_url()).args([
        "--period",
        "100ms",
        "--max-failures",
        "-1",
    ]));
    run.wait_for_link_hash(&s.link(), &site.base);
    let outside = site.outside();
    let git_config = fs::read(s.root.join(".git/config")).expect("reading the root's config");

    for (what, entries, name) in unsafe_cases(&site) {
        let sha = site.push(&entries, what);
        let error = wait_for_error(&run, &addr, &sha);
        println!("{what}: {error}");
        let context = format!("{what}: {error}\n{}", run.logs());
        assert!(error.contains("unsafe path"), "{context}");
        assert!(
            error.contains(&format!("\"{name}\"")),
            "the error must name {name:?}: {context}"
        );
        assert_still_published(s, site.up.path(), &site.base, &context);
        assert_eq!(
            site.outside(),
            outside,
            "something changed beside the root: {context}"
        );
        let pwned = find_names(&s.root, |n| n.contains("pwned"));
        assert!(
            pwned.is_empty(),
            "written into the root: {pwned:?}; {context}"
        );
        let config = fs::read(s.root.join(".git/config")).expect("reading the root's config");
        assert_eq!(
            config, git_config,
            "the root's .git/config changed: {context}"
        );
    }
    // A good commit on top of the hostile ones is published.
    let fixed = site.up.commit_file("index.html", "<p>fixed</p>\n", "fixed");
    run.wait_for_link_hash(&s.link(), &fixed);
    assert_tree_matches_commit(&s.link(), &site.up, &fixed);
    assert_eq!(site.outside(), outside);
}

/// The escaping links: (path, entry to add), plus what nginx would serve
/// through each under `allow` (URL path, expected body).
struct Escapes {
    entries: Vec<(&'static str, RawEntry)>,
    /// `d/s -> ..` stays inside: it is written under every policy.
    inside: RawEntry,
}

fn escapes(site: &Site) -> Escapes {
    let outdir = "../../../sentinel";
    Escapes {
        entries: vec![
            ("abs", site.symlink("abs", "/etc/passwd")),
            ("up", site.symlink("up", "../../../etc/passwd")),
            ("outdir", site.symlink("outdir", outdir)),
            (
                "d/x",
                site.dir(
                    "d",
                    &[site.symlink("s", ".."), site.symlink("x", "s/../..")],
                ),
            ),
        ],
        inside: site.dir("d", &[site.symlink("s", "..")]),
    }
}

/// URL paths through the escaping links, with what `allow` serves there.
fn escape_urls(s: &Scratch) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "/abs",
            fs::read("/etc/passwd").expect("reading /etc/passwd"),
        ),
        ("/up", SECRET.into()),
        ("/outdir/keep.txt", SECRET.into()),
        (
            "/d/x/.git/HEAD",
            fs::read(s.root.join(".git/HEAD")).expect("reading the root's HEAD"),
        ),
    ]
}

fn get(nginx: &Nginx, path: &str) -> client::Response {
    client::get(&nginx.addr(), path).unwrap_or_else(|e| panic!("GET {path} from nginx: {e}"))
}

/// Nothing outside the worktree is served; the inside link still is.
fn assert_nothing_outside_served(nginx: &Nginx, s: &Scratch, context: &str) {
    for (path, _) in escape_urls(s) {
        let r = get(nginx, path);
        assert_eq!(r.status, 404, "nginx served {path}: {r}\n{context}");
    }
    let r = get(nginx, "/inner");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, PAGE),
        "/inner: {context}"
    );
}

#[test]
fn escaping_symlinks_are_refused_by_default() {
    let site = Site::new();
    let s = &site.s;
    let (run, addr) = start_with_http(s.sidecar(&site.up.file_url()).args([
        "--period",
        "100ms",
        "--max-failures",
        "-1",
    ]));
    run.wait_for_link_hash(&s.link(), &site.base);
    let nginx = Nginx::start(&s.link());
    let esc = escapes(&site);
    for (path, entry) in &esc.entries {
        let sha = site.push(std::slice::from_ref(entry), &format!("escaping {path}"));
        let error = wait_for_error(&run, &addr, &sha);
        println!("refused {path}: {error}");
        let context = format!("{path}: {error}\n{}", run.logs());
        assert!(error.contains("points outside the worktree"), "{context}");
        assert!(
            error.contains(&format!("{path} -> ")),
            "the error must name {path}: {context}"
        );
        assert_still_published(s, site.up.path(), &site.base, &context);
        assert_nothing_outside_served(&nginx, s, &context);
    }
    // Links that stay inside are written, also under `refuse`.
    let inside = site.push(std::slice::from_ref(&esc.inside), "inside links only");
    run.wait_for_link_hash(&s.link(), &inside);
    assert_tree_matches_commit(&s.link(), &site.up, &inside);
    let r = get(&nginx, "/d/s/docs/page.html");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, PAGE),
        "through d/s -> .."
    );
    assert_nothing_outside_served(&nginx, s, &run.logs());
    // Loops lead nowhere (the kernel answers ELOOP): written, as git does.
    let loops = [
        site.symlink("self", "self"),
        site.dir("l1", &[site.symlink("x", "../l2/x")]),
        site.dir("l2", &[site.symlink("x", "../l1/x")]),
    ];
    let looped = site.push(&loops, "symlink loops");
    run.wait_for_link_hash(&s.link(), &looped);
    assert_tree_matches_commit(&s.link(), &site.up, &looped);
    assert_ne!(get(&nginx, "/self").status, 200, "{}", run.logs());
    assert_nothing_outside_served(&nginx, s, &run.logs());
}

#[test]
fn skip_publishes_the_commit_without_its_escaping_symlinks() {
    let site = Site::new();
    let s = &site.s;
    let run = s
        .sidecar(&site.up.file_url())
        .args(["--period", "100ms", "--max-failures", "-1"])
        .env("GITSYNC_ESCAPING_SYMLINKS", "skip")
        .spawn();
    run.wait_for_link_hash(&s.link(), &site.base);
    let nginx = Nginx::start(&s.link());
    let esc = escapes(&site);
    let all: Vec<RawEntry> = esc.entries.iter().map(|(_, e)| e.clone()).collect();
    let sha = site.push(&all, "every kind of escaping link");
    run.wait_for_link_hash(&s.link(), &sha);

    // What must be on disk: the same commit without the escaping links.
    let without = site
        .up
        .write_raw_tree(&[site.up.top_entries(&site.base), vec![esc.inside.clone()]].concat());
    let without = site.up.commit_tree(&without, &[], "expected after skip");
    if let Some(problem) = tree_mismatch(&s.link(), site.up.path(), &without) {
        panic!(
            "skip must publish everything but the escaping links: {problem}\n{}",
            run.logs()
        );
    }
    for (path, _) in &esc.entries {
        assert!(
            run.stderr().contains(path),
            "the warning must name {path}\n{}",
            run.logs()
        );
    }
    assert!(run.stderr().contains("left out symlinks"), "{}", run.logs());
    assert_nothing_outside_served(&nginx, s, &run.logs());
    // The links are left out of the disk, not out of the commit: git sees a clean tree.
    let status = git(&["status", "--porcelain"], &s.link());
    assert!(status.is_empty(), "git status after skip:\n{status}");
    // Also in a tree rewritten from a retired one.
    for i in 0..2 {
        let sha = site.push(&all, &format!("links again {i}"));
        run.wait_for_link_hash(&s.link(), &sha);
        let status = git(&["status", "--porcelain"], &s.link());
        assert!(
            status.is_empty(),
            "git status after skip, rewrite {i}:\n{status}"
        );
        assert!(!s.link().join("abs").is_symlink() && !s.link().join("up").is_symlink());
    }
}

#[test]
fn allow_writes_escaping_symlinks_as_git_does_and_nginx_follows_them() {
    let site = Site::new();
    let s = &site.s;
    let run = s
        .sidecar(&site.up.file_url())
        .args(["--period", "100ms", "--escaping-symlinks", "allow"])
        .spawn();
    run.wait_for_link_hash(&s.link(), &site.base);
    let nginx = Nginx::start(&s.link());
    let esc = escapes(&site);
    let all: Vec<RawEntry> = esc.entries.iter().map(|(_, e)| e.clone()).collect();
    let sha = site.push(&all, "every kind of escaping link");
    run.wait_for_link_hash(&s.link(), &sha);
    assert_tree_matches_commit(&s.link(), &site.up, &sha);
    // git-sync's behaviour, and why it is not the default: nginx serves
    // whatever the links reach.
    for (path, body) in escape_urls(s) {
        let r = get(&nginx, path);
        assert_eq!(
            (r.status, &r.body),
            (200, &body),
            "GET {path} under allow: {r}"
        );
    }
    assert!(s.link().join("abs").is_symlink());
}
