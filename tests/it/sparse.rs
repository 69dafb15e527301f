//! Sparse checkout (`--sparse-checkout-file`): a published worktree holds
//! exactly the files git's own non-cone sparse checkout writes for the same
//! patterns, across rewrites of the retired worktree and restarts with
//! other patterns; `git status` in it stays clean.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::support::git::git_output;
use crate::support::scribble;
use crate::support::sidecar::describe_output;
use crate::support::*;

/// A named change to the upstream work tree.
type Edit = dyn Fn(&Upstream);

/// Root files, `docs/` except `docs/api/`, and every PNG anywhere.
const PATTERNS: &str = "/*\n!/*/\n/docs/\n!/docs/api/\n*.png\n";

fn populate(up: &Upstream) -> String {
    for (path, content) in [
        ("README.md", "readme\n"),
        ("index.html", "<h1>home</h1>\n"),
        ("docs/index.html", "docs\n"),
        ("docs/api/ref.html", "api\n"),
        ("docs/guide/start.html", "start\n"),
        ("src/main.rs", "fn main() {}\n"),
        ("src/docs/notes.md", "notes\n"),
        ("assets/logo.png", "png\n"),
        ("assets/big/video.mp4", "mp4\n"),
    ] {
        up.write_file(path, content);
    }
    std::os::unix::fs::symlink("docs/index.html", up.path().join("start.html")).expect("symlink");
    up.commit_all("a tree to thin out")
}

/// Files and symlinks below `dir` (the worktree's `.git` file aside).
fn files(dir: &Path) -> BTreeSet<String> {
    walk_tree(dir)
        .into_iter()
        .filter(|(rel, meta)| !meta.is_dir() && rel != ".git")
        .map(|(rel, _)| rel)
        .collect()
}

/// A `--no-checkout` clone of `url` in a new temporary directory, with
/// non-cone sparse checkout on and `patterns` as its sparse-checkout file.
fn sparse_clone(url: &str, patterns: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempdir("git-sparse");
    let clone = dir.path().join("clone");
    git(
        &[
            "clone",
            "-q",
            "--no-checkout",
            url,
            &clone.to_string_lossy(),
        ],
        dir.path(),
    );
    git(&["config", "core.sparseCheckout", "true"], &clone);
    git(&["config", "core.sparseCheckoutCone", "false"], &clone);
    fs::create_dir_all(clone.join(".git/info")).expect("mkdir info");
    fs::write(clone.join(".git/info/sparse-checkout"), patterns).expect("write patterns");
    (dir, clone)
}

/// What git's own (non-cone) sparse checkout of `sha` writes.
fn git_sparse_files(up: &Upstream, sha: &str, patterns: &str) -> BTreeSet<String> {
    let (_dir, clone) = sparse_clone(&up.file_url(), patterns);
    git(&["checkout", "-q", "--detach", sha], &clone);
    let mut out = files(&clone);
    out.retain(|p| !p.starts_with(".git"));
    out
}

fn pattern_file(s: &Scratch, name: &str, patterns: &str) -> String {
    let path = s.dir.path().join(name);
    fs::write(&path, patterns).expect("write pattern file");
    path.to_string_lossy().into_owned()
}

/// The published worktree is `sha`, holds what git would, and is clean.
fn assert_sparse(s: &Scratch, up: &Upstream, sha: &str, patterns: &str) {
    assert_eq!(s.published().as_deref(), Some(sha));
    let ours = files(&s.link());
    let gits = git_sparse_files(up, sha, patterns);
    assert_eq!(
        ours, gits,
        "published files vs git's sparse checkout of {sha}"
    );
    for rel in &ours {
        let path = s.link().join(rel);
        let content = match fs::read_link(&path) {
            Ok(target) => target.into_os_string().into_encoded_bytes(),
            Err(_) => fs::read(&path).expect("read"),
        };
        assert_eq!(content, git_blob(up, sha, rel), "{rel}");
    }
    let status = git(&["status", "--porcelain"], &s.link());
    assert!(
        status.is_empty(),
        "git status in the sparse worktree: {status}"
    );
}

/// The blob of `rel` in commit `sha` (a symlink's target for a link).
fn git_blob(up: &Upstream, sha: &str, rel: &str) -> Vec<u8> {
    git_output(&["cat-file", "-p", &format!("{sha}:{rel}")], up.path()).stdout
}

#[test]
fn sparse_worktrees_hold_what_git_writes_across_commits() {
    let up = Upstream::new();
    let first = populate(&up);
    let s = Scratch::new();
    let patterns = pattern_file(&s, "sparse", PATTERNS);
    let run = s
        .sidecar(&up.file_url())
        .args(["--period", "100ms", "--sparse-checkout-file", &patterns])
        .spawn();
    run.wait_for_link_hash(&s.link(), &first);
    assert_sparse(&s, &up, &first, PATTERNS);
    let published = files(&s.link());
    assert!(
        published.contains("docs/index.html") && !published.contains("src/main.rs"),
        "the patterns must both include and exclude here: {published:?}"
    );

    let edits: [(&str, &Edit); 5] = [
        ("change an included file", &|up| {
            up.write_file("docs/index.html", "docs v2\n")
        }),
        ("change an excluded file", &|up| {
            up.write_file("src/main.rs", "fn main() { }\n")
        }),
        ("add files both sides", &|up| {
            up.write_file("docs/new/page.html", "new\n");
            up.write_file("src/new.png", "png two\n");
            up.write_file("src/new.rs", "// new\n");
        }),
        ("delete an included dir", &|up| {
            fs::remove_dir_all(up.path().join("docs/guide")).expect("rm guide")
        }),
        ("an excluded dir becomes an included file", &|up| {
            fs::remove_dir_all(up.path().join("assets/big")).expect("rm big");
            up.write_file("assets/big", "now a file\n");
        }),
    ];
    for (what, edit) in edits {
        edit(&up);
        let sha = up.commit_all(what);
        run.wait_for_link_hash(&s.link(), &sha);
        assert_sparse(&s, &up, &sha, PATTERNS);
    }
}

#[test]
fn other_patterns_at_restart_rebuild_the_published_worktree() {
    let up = Upstream::new();
    let sha = populate(&up);
    let s = Scratch::new();
    // Each run says the patterns changed; none takes it for tampering.
    let one_time = |extra: &[&str]| {
        let out = s
            .sidecar(&up.file_url())
            .args(extra)
            .arg("--one-time")
            .run(Duration::from_secs(60));
        assert!(out.status.success(), "{}", describe_output(&out));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let changed = "rebuilding the published worktree: it was checked out with other \
                   sparse-checkout patterns";
    let first = pattern_file(&s, "first", PATTERNS);
    one_time(&["--sparse-checkout-file", &first]);
    assert_sparse(&s, &up, &sha, PATTERNS);

    let only_src = "/src/\n";
    let second = pattern_file(&s, "second", only_src);
    let err = one_time(&["--sparse-checkout-file", &second]);
    assert!(
        err.contains(changed) && !err.contains("was modified"),
        "{err}"
    );
    assert_sparse(&s, &up, &sha, only_src);
    assert_eq!(
        files(&s.link()),
        BTreeSet::from(["src/docs/notes.md".to_string(), "src/main.rs".to_string()])
    );

    // Without the flag the same commit is published in full again.
    let err = one_time(&[]);
    assert!(
        err.contains(changed) && !err.contains("was modified"),
        "{err}"
    );
    assert_eq!(assert_published_layout(&s.root, &s.link()), sha);
    assert_tree_matches_commit(&s.link(), &up, &sha);
}

#[test]
fn an_unreadable_pattern_file_stops_start_up_naming_the_flag() {
    let up = Upstream::new();
    up.commit_file("a.txt", "a\n", "one");
    let s = Scratch::new();
    let out = s
        .sidecar(&up.file_url())
        .args([
            "--sparse-checkout-file",
            "/nonexistent/patterns",
            "--one-time",
        ])
        .run(Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1), "{}", describe_output(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--sparse-checkout-file (GITSYNC_SPARSE_CHECKOUT_FILE): cannot read \"/nonexistent/patterns\""),
        "{stderr}"
    );
    assert!(!s.link().exists(), "nothing may be published");
}

#[test]
fn writes_into_sparse_worktrees_do_not_reach_later_ones() {
    let up = Upstream::new();
    let mut sha = populate(&up);
    let s = Scratch::new();
    let patterns = pattern_file(&s, "sparse", PATTERNS);
    let run = s
        .sidecar(&up.file_url())
        .args(["--period", "100ms", "--sparse-checkout-file", &patterns])
        .spawn();
    run.wait_for_link_hash(&s.link(), &sha);
    // The third publish rewrites the tree of the first, the fourth that of the second.
    for i in 0..3 {
        let tree = fs::canonicalize(s.link()).expect("the published tree");
        // Paths the patterns leave out, put there as a consumer would.
        for rel in ["src/main.rs", "assets/big/video.mp4", "docs/api/ref.html"] {
            let path = tree.join(rel);
            fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            fs::write(&path, "put back by hand\n").expect("write");
        }
        fs::create_dir_all(tree.join("src/empty")).expect("mkdir");
        assert!(scribble::scribble(&tree, i) >= 3, "round {i}");
        sha = up.commit_file("index.html", format!("<h1>{i}</h1>\n"), "next");
        run.wait_for_link_hash(&s.link(), &sha);
        assert_sparse(&s, &up, &sha, PATTERNS);
        let stray: Vec<String> = walk_tree(&s.link())
            .into_iter()
            .filter(|(rel, meta)| {
                meta.is_dir()
                    && !files(&s.link())
                        .iter()
                        .any(|f| f.starts_with(&format!("{rel}/")))
            })
            .map(|(rel, _)| rel)
            .collect();
        assert!(
            stray.is_empty(),
            "round {i}: directories with nothing of the commit: {stray:?}"
        );
    }
}

/// git-sync runs `git submodule update --init --recursive` after its sparse
/// `read-tree`, which checks every submodule out whatever the patterns say
/// (`theme/`, `*.md`: git's patterns would leave the gitlink out). The
/// published tree holds what that sequence writes, submodules included.
#[test]
fn submodules_are_checked_out_whatever_the_patterns_as_git_sync_does() {
    let site = Upstream::named("site");
    let sub = site.sibling("sub.git");
    let sub_commit = sub.commit_file("nest/n.txt", "n\n", "sub");
    site.write_file("docs/d.md", "d\n");
    site.write_file("readme.txt", "r\n");
    site.commit_all("docs");
    let modules = gitmodules(&[("theme", "theme", "../sub.git")]);
    let sha = site.commit_gitlinks(&modules, &[("theme", &sub_commit)], "add theme");
    let daemon = GitDaemon::start(site.base());
    for patterns in ["theme/\n", "*.md\n", "/docs/\n"] {
        let s = Scratch::new();
        let file = pattern_file(&s, "patterns", patterns);
        let out = s
            .sidecar(&daemon.url("site"))
            .args(["--one-time", "--sparse-checkout-file", &file])
            .run(Duration::from_secs(60));
        assert!(out.status.success(), "{}", describe_output(&out));
        assert_eq!(s.published().as_deref(), Some(sha.as_str()));
        let expected = git_sync_sparse_files(&daemon.url("site"), &sha, patterns);
        assert!(
            expected.contains("theme/nest/n.txt"),
            "{patterns:?}: {expected:?}"
        );
        assert_eq!(files(&s.link()), expected, "{patterns:?}");
    }

    // Built with --submodules=off (the gitlink judged by the patterns, so
    // left out), then restarted with submodules on and the same patterns:
    // the published tree is rebuilt with the submodule.
    let s = Scratch::new();
    let file = pattern_file(&s, "patterns", "/docs/\n");
    let run = |extra: &[&str]| {
        let out = s
            .sidecar(&daemon.url("site"))
            .args(["--one-time", "--sparse-checkout-file", &file])
            .args(extra)
            .run(Duration::from_secs(60));
        assert!(out.status.success(), "{}", describe_output(&out));
    };
    run(&["--submodules", "off"]);
    assert!(!files(&s.link()).contains("theme/nest/n.txt"));
    run(&[]);
    assert_eq!(
        files(&s.link()),
        git_sync_sparse_files(&daemon.url("site"), &sha, "/docs/\n")
    );
}

/// What git-sync's sequence writes: a sparse `read-tree -mu`, then
/// `git submodule update --init --recursive`.
fn git_sync_sparse_files(url: &str, sha: &str, patterns: &str) -> BTreeSet<String> {
    let (_dir, clone) = sparse_clone(url, patterns);
    git(&["read-tree", "-mu", sha], &clone);
    git(
        &["submodule", "update", "-q", "--init", "--recursive"],
        &clone,
    );
    files(&clone)
        .into_iter()
        .filter(|p| !p.starts_with(".git") && !p.ends_with("/.git"))
        .collect()
}
