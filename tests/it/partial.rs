//! Partial clone (`--filter`): with `blob:none` and a sparse checkout, the
//! blobs outside the cone are never downloaded, on every transport (counted
//! in the root's object store, and in the bytes an http server sent); the
//! root is a partial clone the git CLI works in (promisor packs and config);
//! a second commit publishes incrementally; `blob:limit` leaves out only
//! large blobs; a server without `uploadpack.allowFilter` gets a normal fetch
//! and a warning; compaction keeps the promisor markers; submodules of a
//! filtered superproject are checked out.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::support::git::git_cmd;
use crate::support::sidecar::describe_output;
use crate::support::sshd::{keygen, ssh_args, KeyPair, Sshd};
use crate::support::*;

const RUN_TIMEOUT: Duration = Duration::from_secs(90);

/// The cone: `app/` and the root's files.
const PATTERNS: &str = "/*\n!/*/\n/app/\n";

/// Size of each large blob outside the cone: larger than everything else
/// the fetch would send, and incompressible.
const BIG: usize = 256 * 1024;

/// Pseudo-random (incompressible) bytes, different per `seed`.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A small monorepo: the cone `app/` (with a symlink), root files, and
/// outside it two large blobs and some small files.
fn monorepo(up: &Upstream, round: u64) -> String {
    up.write_file("README.md", format!("readme {round}\n"));
    up.write_file(".gitattributes", "*.txt text\n");
    up.write_file("app/main.txt", format!("main {round}\n"));
    up.write_file("app/lib/util.txt", "util\n");
    let link = up.path().join("app/current.txt");
    if !link.exists() {
        std::os::unix::fs::symlink("main.txt", &link).expect("symlink");
    }
    up.write_file("data/big-a.bin", noise(round * 2, BIG));
    up.write_file("data/big-b.bin", noise(round * 2 + 1, BIG));
    for i in 0..5 {
        up.write_file(&format!("tools/t{i}.txt"), format!("tool {i} {round}\n"));
    }
    up.commit_all(&format!("round {round}"))
}

/// The blob ids of `commit`'s files under `prefix` in the upstream.
fn blobs_under(up: &Upstream, commit: &str, prefix: &str) -> BTreeSet<String> {
    up.git(&["ls-tree", "-r", commit, "--", prefix])
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_string))
        .collect()
}

/// The objects in the root's store (no lazy fetch: `--batch-all-objects`
/// lists only what is there).
fn stored_objects(root: &Path) -> BTreeSet<String> {
    git(
        &[
            "cat-file",
            "--batch-all-objects",
            "--batch-check=%(objectname)",
        ],
        root,
    )
    .lines()
    .map(str::to_string)
    .collect()
}

/// git in `dir`, failing instead of fetching a missing object from origin.
fn git_offline(args: &[&str], dir: &Path) -> String {
    let out = git_cmd(dir)
        .env("GIT_NO_LAZY_FETCH", "1")
        .args(args)
        .output()
        .expect("git must be installed (apt-get install git)");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn pattern_file(s: &Scratch) -> String {
    let path = s.dir.path().join("sparse");
    fs::write(&path, PATTERNS).expect("write patterns");
    path.to_string_lossy().into_owned()
}

fn one_time(s: &Scratch, url: &str, args: &[String]) -> Output {
    let out = s.sidecar(url).args(args).arg("--one-time").run(RUN_TIMEOUT);
    assert!(out.status.success(), "{}", describe_output(&out));
    out
}

/// The root is a partial clone as `git clone --filter` makes one, and the
/// git CLI reads it without fetching anything.
fn assert_git_partial_clone(s: &Scratch, spec: &str) {
    let config = |key: &str| git(&["config", key], &s.root);
    assert_eq!(config("remote.origin.promisor"), "true");
    assert_eq!(config("remote.origin.partialclonefilter"), spec);
    assert_eq!(config("extensions.partialclone"), "origin");
    assert_eq!(config("core.repositoryformatversion"), "1");
    let packs: Vec<String> = fs::read_dir(s.root.join(".git/objects/pack"))
        .expect("pack dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for pack in packs.iter().filter(|p| p.ends_with(".pack")) {
        let marker = pack.replace(".pack", ".promisor");
        assert!(packs.contains(&marker), "{pack} has no {marker}: {packs:?}");
    }
    let log = git_offline(&["log", "--oneline"], &s.link());
    assert!(!log.is_empty(), "git log in the worktree printed nothing");
    let status = git_offline(&["status", "--porcelain"], &s.link());
    assert!(status.is_empty(), "git status in the worktree: {status}");
    git_offline(&["fsck", "--connectivity-only"], &s.root);
}

/// `blob:none` + sparse over `url`: the cone is published with the right
/// content and the store holds none of the blobs outside it; then a second
/// commit publishes the same way (an incremental fetch).
fn blob_none_with_sparse(up: &Upstream, url: &str, extra: &[String]) -> Scratch {
    let first = monorepo(up, 1);
    let s = Scratch::new();
    let mut args = vec![
        "--filter=blob:none".to_string(),
        "--sparse-checkout-file".to_string(),
        pattern_file(&s),
    ];
    args.extend_from_slice(extra);
    one_time(&s, url, &args);
    assert_eq!(s.published().as_deref(), Some(first.as_str()));
    let second = monorepo(up, 2);
    let out = one_time(&s, url, &args);
    // The missing blobs are expected, not a damaged store to empty.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("missing objects"),
        "{}",
        describe_output(&out)
    );
    assert_eq!(s.published().as_deref(), Some(second.as_str()));

    assert_eq!(
        fs::read_to_string(s.link().join("app/main.txt"))
            .ok()
            .as_deref(),
        Some("main 2\n")
    );
    assert_eq!(
        fs::read_link(s.link().join("app/current.txt")).ok(),
        Some("main.txt".into())
    );
    assert!(s.link().join("README.md").is_file());
    assert!(!s.link().join("data").exists() && !s.link().join("tools").exists());
    let stored = stored_objects(&s.root);
    for commit in [&first, &second] {
        let outside: BTreeSet<String> = ["data", "tools"]
            .iter()
            .flat_map(|p| blobs_under(up, commit, p))
            .collect();
        let fetched: Vec<&String> = outside.intersection(&stored).collect();
        assert!(
            fetched.is_empty(),
            "blobs outside the cone were downloaded: {fetched:?}"
        );
    }
    for id in blobs_under(up, &second, "app") {
        assert!(stored.contains(&id), "cone blob {id} is not in the store");
    }
    assert_git_partial_clone(&s, "blob:none");
    s
}

#[test]
fn blob_none_with_sparse_over_file_urls() {
    let up = Upstream::new();
    blob_none_with_sparse(&up, &up.file_url(), &[]);
}

#[test]
fn blob_none_with_sparse_over_git_daemon() {
    let up = Upstream::new();
    let daemon = GitDaemon::start(up.base());
    blob_none_with_sparse(&up, &daemon.url(up.name()), &[]);
}

/// Over http the server's byte count shows it: two commits with two
/// incompressible 256 KiB blobs each outside the cone, and less than one
/// such blob's size sent in all.
#[test]
fn blob_none_with_sparse_over_http() {
    let up = Upstream::new();
    let http = HttpGit::start(up.base(), HttpOpts::default());
    blob_none_with_sparse(&up, &http.url(up.name()), &[]);
    assert!(
        http.bytes_sent() < BIG as u64,
        "the server sent {} bytes; the blobs outside the cone alone are {}",
        http.bytes_sent(),
        4 * BIG
    );
}

/// [`blob_none_with_sparse`] over an sshd made by `start`, with the
/// built-in ssh client.
fn blob_none_with_sparse_over_sshd(start: fn(&[&KeyPair]) -> Sshd) {
    let up = Upstream::new();
    let keys = tempdir("partial-ssh");
    let key = keygen(keys.path(), "id_ed25519", "ed25519", "");
    let sshd = start(&[&key]);
    let kh = keys.path().join("known_hosts");
    fs::write(&kh, sshd.known_hosts_line(sshd.port()) + "\n").expect("known_hosts");
    blob_none_with_sparse(&up, &sshd.url(up.path()), &ssh_args(&[&key], &kh));
}

#[test]
fn blob_none_with_sparse_over_ssh() {
    blob_none_with_sparse_over_sshd(Sshd::start);
}

/// Without sparse patterns every blob of the published commit is fetched,
/// but with full history (`--depth=0`) none of the older commits' blobs.
/// `--git-gc=aggressive` compacts after each fetch: the compacted pack
/// keeps the promisor marker and the root stays a valid partial clone.
#[test]
fn blob_none_without_sparse_fetches_only_the_published_commits_blobs() {
    let up = Upstream::new();
    let old = monorepo(&up, 1);
    let head = monorepo(&up, 2);
    let s = Scratch::new();
    let args: Vec<String> = ["--filter=blob:none", "--depth=0", "--git-gc=aggressive"]
        .map(String::from)
        .to_vec();
    one_time(&s, &up.file_url(), &args);
    assert_eq!(s.published().as_deref(), Some(head.as_str()));
    assert_tree_matches_commit(&s.link(), &up, &head);
    let stored = stored_objects(&s.root);
    let old_only: BTreeSet<String> = blobs_under(&up, &old, "data")
        .difference(&blobs_under(&up, &head, "data"))
        .cloned()
        .collect();
    assert_eq!(old_only.len(), 2);
    assert!(
        old_only.is_disjoint(&stored),
        "older commits' blobs were downloaded"
    );
    assert!(
        stored.contains(&old),
        "full history: the older commit is there"
    );
    assert_eq!(
        pack_count(&s.root),
        1,
        "aggressive gc compacts into one pack"
    );
    for dir in ["app", "data", "tools"] {
        let present = blobs_under(&up, &head, dir);
        assert!(
            present.is_subset(&stored),
            "compaction dropped blobs of {dir}/"
        );
    }
    assert_git_partial_clone(&s, "blob:none");

    let third = up.commit_file("app/main.txt", "main 3\n", "round 3");
    one_time(&s, &up.file_url(), &args);
    assert_eq!(s.published().as_deref(), Some(third.as_str()));
    assert_tree_matches_commit(&s.link(), &up, &third);
    assert_git_partial_clone(&s, "blob:none");
}

/// A partial clone (no sparse patterns) of a tree of 25,000 files from
/// `git http-backend` under fcgiwrap behind nginx, all at their defaults:
/// the list of blobs to fetch by id (50 bytes each, 1.25 MB) is larger
/// than the request body nginx takes (1 MB); asked for in one request it
/// got a 413, under a hint blaming the server's settings (probe-15 F2).
/// The blobs are asked for in requests under the limit, and everything
/// is published. git's own `clone --filter=blob:none` fails there ("HTTP
/// 413").
#[test]
fn a_partial_clone_behind_nginx_asks_for_its_blobs_under_the_body_limit() {
    const FILES: usize = 25_000;
    let up = Upstream::new();
    let files = (1..=FILES).map(|i| {
        (
            format!("d{:03}/f{i}.txt", i % 250),
            format!("file {i}\n").into_bytes(),
        )
    });
    let head = up.commit_generated(files, "files");
    let server = servers::NginxGit::start(up.base());
    let s = Scratch::new();
    let out = s
        .sidecar(&server.url(up.name()))
        .args(["--filter=blob:none", "--one-time"])
        .run(RUN_TIMEOUT);
    assert!(
        out.status.success(),
        "{}\n--- nginx error.log ---\n{}",
        describe_output(&out),
        server.error_log()
    );
    assert_eq!(s.published().as_deref(), Some(head.as_str()));
    assert_tree_matches_commit(&s.link(), &up, &head);
    let log = server.access_log();
    let fetches = log
        .lines()
        .filter(|l| l.contains("POST /git/repo/git-upload-pack"))
        .count();
    assert!(
        fetches >= 4,
        "the commit, its trees and 3 requests of blobs:\n{log}"
    );
    assert!(!log.contains("\" 413 "), "{log}");
}

fn pack_count(root: &Path) -> usize {
    fs::read_dir(root.join(".git/objects/pack"))
        .expect("pack dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".pack"))
        .count()
}

/// Protocol v0 (an http server that drops `Git-Protocol`): the filter goes
/// with the capabilities of the first want line, and the blobs are fetched
/// by id (`uploadpack.allowAnySHA1InWant`); with the default `--depth=1`
/// and with the full history.
#[test]
fn blob_none_with_sparse_over_protocol_v0() {
    for depth in [None, Some("--depth=0".to_string())] {
        let up = Upstream::new();
        let opts = HttpOpts {
            protocol_v0_only: true,
            ..HttpOpts::default()
        };
        let http = HttpGit::start(up.base(), opts);
        let extra: Vec<String> = depth.into_iter().collect();
        blob_none_with_sparse(&up, &http.url(up.name()), &extra);
        assert!(
            http.bytes_sent() < BIG as u64,
            "sent {} bytes",
            http.bytes_sent()
        );
    }
}

/// A git daemon that answers protocol v0 (the stateful git:// transport, as
/// git before 2.18 serves it), default `--depth=1`.
#[test]
fn blob_none_with_sparse_over_a_protocol_v0_git_daemon() {
    let up = Upstream::new();
    let daemon = GitDaemon::start_v0(up.base());
    blob_none_with_sparse(&up, &daemon.url(up.name()), &[]);
}

/// sshd with its default configuration (no `AcceptEnv GIT_PROTOCOL`, so
/// upload-pack speaks v0), the built-in ssh client, default `--depth=1`.
#[test]
fn blob_none_with_sparse_over_ssh_without_accept_env() {
    blob_none_with_sparse_over_sshd(Sshd::start_without_accept_env);
}

/// `blob:limit=1k` with the sparse cone: small blobs come whether in the
/// cone or not, large ones only when the checkout needs them.
#[test]
fn blob_limit_leaves_out_only_large_blobs_outside_the_cone() {
    let up = Upstream::new();
    let head = monorepo(&up, 1);
    let s = Scratch::new();
    let args = vec![
        "--filter=blob:limit=1k".to_string(),
        "--sparse-checkout-file".to_string(),
        pattern_file(&s),
    ];
    one_time(&s, &up.file_url(), &args);
    assert_eq!(s.published().as_deref(), Some(head.as_str()));
    let stored = stored_objects(&s.root);
    assert!(
        blobs_under(&up, &head, "tools").is_subset(&stored),
        "small blobs are fetched"
    );
    assert!(
        blobs_under(&up, &head, "data").is_disjoint(&stored),
        "large blobs are not"
    );
    assert_git_partial_clone(&s, "blob:limit=1k");
}

/// A server that does not allow filters (`uploadpack.allowFilter` unset,
/// git's default) gets a normal fetch: everything arrives, and the log says
/// the filter was not used. (file://: the upload-pack the sidecar starts
/// reads only the repository's config; the harness's servers force
/// allowFilter on.)
#[test]
fn a_server_without_filter_support_gets_a_normal_fetch_and_a_warning() {
    let up = Upstream::new();
    up.git(&["config", "uploadpack.allowFilter", "false"]);
    let head = monorepo(&up, 1);
    let s = Scratch::new();
    let args = vec![
        "--filter=blob:none".to_string(),
        "--sparse-checkout-file".to_string(),
        pattern_file(&s),
    ];
    let out = one_time(&s, &up.file_url(), &args);
    assert_eq!(s.published().as_deref(), Some(head.as_str()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("does not support --filter"),
        "no warning about the ignored filter:\n{}",
        describe_output(&out)
    );
    let stored = stored_objects(&s.root);
    assert!(
        blobs_under(&up, &head, "data").is_subset(&stored),
        "the full content arrived"
    );
    assert!(s.link().join("app/main.txt").is_file());
}

/// The superproject is fetched with the filter; its submodule (a complete
/// store of its own) is checked out as without one.
#[test]
fn submodules_of_a_filtered_superproject_are_checked_out() {
    let site = Upstream::named("site");
    let sub = site.sibling("sub.git");
    let theme = sub.commit_file("style.css", "v1\n", "sub one");
    monorepo(&site, 1);
    let modules = gitmodules(&[("theme", "app/theme", "../sub.git")]);
    let head = site.commit_gitlinks(&modules, &[("app/theme", &theme)], "add");
    let daemon = GitDaemon::start(site.base());
    let s = Scratch::new();
    let args = vec![
        "--filter=blob:none".to_string(),
        "--sparse-checkout-file".to_string(),
        pattern_file(&s),
    ];
    one_time(&s, &daemon.url("site"), &args);
    assert_eq!(s.published().as_deref(), Some(head.as_str()));
    assert_tree_matches_commit(&s.link().join("app/theme"), &sub, &theme);
    assert!(blobs_under(&site, &head, "data").is_disjoint(&stored_objects(&s.root)));
    assert_git_partial_clone(&s, "blob:none");
}

/// A running sidecar (`--period 100ms`) publishes commit after commit by
/// rewriting the retired worktree in place (the spare): the new blobs of the
/// cone come by id each time, those outside it never.
#[test]
fn a_running_sidecar_rewrites_the_spare_with_fetched_blobs() {
    let up = Upstream::new();
    let first = monorepo(&up, 1);
    let s = Scratch::new();
    let patterns = pattern_file(&s);
    let run = s
        .sidecar(&up.file_url())
        .args([
            "--period",
            "100ms",
            "--filter=blob:none",
            "--sparse-checkout-file",
            &patterns,
        ])
        .spawn();
    run.wait_for_link_hash(&s.link(), &first);
    let mut commits = vec![first];
    for round in 2..=4 {
        let sha = monorepo(&up, round);
        run.wait_for_link_hash(&s.link(), &sha);
        assert_eq!(
            fs::read_to_string(s.link().join("app/main.txt")).ok(),
            Some(format!("main {round}\n"))
        );
        commits.push(sha);
    }
    let stored = stored_objects(&s.root);
    for commit in &commits {
        let outside = blobs_under(&up, commit, "data");
        assert!(
            outside.is_disjoint(&stored),
            "blobs outside the cone of {commit} were downloaded"
        );
    }
    assert!(!s.link().join("data").exists());
    assert_git_partial_clone(&s, "blob:none");
}
