//! Shared test harness: real git fixtures, local git servers on 127.0.0.1,
//! and a runner for the `git-sidecar` binary.
//!
//! Rules the harness follows (and scenario tests should too):
//! * everything listens on 127.0.0.1 with an OS-chosen port, never another address
//!   (tests of IPv6 use `[::1]`, still loopback; the peer tests, which need
//!   one address per replica and DNS on port 53, use a 127.X.Y.0/24 of their
//!   own: `dns::Subnet`);
//! * every git invocation is isolated from the user's/system's configuration;
//! * no sleeps as synchronisation: poll a condition with [`poll_until`] /
//!   [`wait_until`] / `Running::wait_until` under a generous deadline;
//! * a missing tool panics with a message saying what to install.

#![allow(dead_code)]

pub mod cgroup;
pub mod client;
pub mod dns;
pub mod forward_proxy;
pub mod git;
pub mod http_server;
pub mod raw_http;
pub mod receiver;
pub mod scribble;
pub mod secret_volume;
pub mod servers;
pub mod sidecar;
pub mod signing;
pub mod sshd;

use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

// Not every target uses every re-export (`packaging` uses few).
#[allow(unused_imports)]
pub use git::{assert_tree_matches_commit, git, gitmodules, tree_mismatch, Upstream};
#[allow(unused_imports)]
pub use servers::{
    free_port, require_ipv6_loopback, BlackHole, GitDaemon, GitDaemonV6, HttpGit, HttpOpts,
    StallProxy,
};
#[allow(unused_imports)]
pub use sidecar::{link_target_hash, run_one_time, Running, Sidecar};

/// Standard base64 with padding (basic-auth headers), by the base64 crate.
pub fn base64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Result type used by the scenario tests.
pub type TestResult = Result<(), Box<dyn Error>>;

/// Default deadline for "eventually" conditions. Generous on purpose: the
/// machine running the tests may be slow and busy with parallel tests.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Interval between two evaluations of a polled condition (not a synchronisation sleep).
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Evaluates `cond` until it returns true or `timeout` has passed. Returns
/// whether the condition became true.
pub fn poll_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Like [`poll_until`] but panics on timeout with `what` and the text
/// produced by `context` (typically the sidecar's captured stderr).
pub fn wait_until(
    timeout: Duration,
    what: &str,
    cond: impl FnMut() -> bool,
    context: impl FnOnce() -> String,
) {
    if !poll_until(timeout, cond) {
        panic!(
            "timed out after {timeout:?} waiting for: {what}\n{}",
            context()
        );
    }
}

/// True for a full 40-hex (lowercase) SHA-1.
pub fn is_hex40(s: &str) -> bool {
    s.len() == 40
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Sum of the sizes of all regular files under `dir` (symlinks are not
/// followed and count for nothing; directories count for nothing).
pub fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(md) = fs::symlink_metadata(entry.path()) else {
                continue;
            };
            if md.is_dir() {
                stack.push(entry.path());
            } else if md.is_file() {
                total += md.len();
            }
        }
    }
    total
}

/// Same as [`dir_size`] but skips the top-level entry named `.git` (a
/// worktree's `.git` file or a repo's `.git` dir): the size of a checkout.
pub fn checkout_size(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_name() == ".git" {
                continue;
            }
            let Ok(md) = fs::symlink_metadata(entry.path()) else {
                continue;
            };
            if md.is_dir() {
                total += dir_size(&entry.path());
            } else if md.is_file() {
                total += md.len();
            }
        }
    }
    total
}

/// A scratch area for one test: the sidecar's root (not created: the
/// sidecar must create it), plus paths for the touch and error files.
pub struct Scratch {
    pub dir: tempfile::TempDir,
    /// `<scratch>/root` — not created.
    pub root: PathBuf,
}

/// Link name the scenario tests pass with `--link` unless they test the default.
pub const LINK: &str = "content";

impl Scratch {
    pub fn new() -> Self {
        let dir = tempdir("scratch");
        let root = dir.path().join("root");
        Scratch { dir, root }
    }

    /// `<root>/content`, the link the tests publish with `--link content`.
    pub fn link(&self) -> PathBuf {
        self.root.join(LINK)
    }

    /// An error-file path outside root.
    pub fn error_file(&self) -> PathBuf {
        self.dir.path().join("error.json")
    }

    /// A touch-file path outside root.
    pub fn touch_file(&self) -> PathBuf {
        self.dir.path().join("touched")
    }

    /// `<root>/.worktrees`.
    pub fn worktrees(&self) -> PathBuf {
        self.root.join(".worktrees")
    }

    /// The standard argument set: `--repo URL --root ROOT --link content`.
    pub fn sidecar(&self, repo_url: &str) -> Sidecar {
        Sidecar::new()
            .arg("--repo")
            .arg(repo_url)
            .arg("--root")
            .arg(&self.root)
            .arg("--link")
            .arg(LINK)
    }

    /// Hash currently published at `<root>/content`, if any.
    pub fn published(&self) -> Option<String> {
        link_target_hash(&self.link())
    }
}

/// Writes an executable `/bin/sh` script `<scratch>/<name>` with `body`
/// (hooks, gates, consumers).
pub fn script(s: &Scratch, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = s.dir.path().join(name);
    fs::write(&p, format!("#!/bin/sh\n{body}")).expect("writing a hook script");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod 0755");
    p
}

/// A fresh temporary directory with a recognisable prefix.
pub fn tempdir(what: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("git-sidecar-it-{what}-"))
        .tempdir()
        .expect("creating a temporary directory")
}

/// Inode of every regular file below `dir` (relative path → inode).
pub fn inodes(dir: &Path) -> std::collections::HashMap<String, u64> {
    use std::os::unix::fs::MetadataExt;
    walk_tree(dir)
        .into_iter()
        .filter(|(_, m)| m.is_file())
        .map(|(rel, m)| (rel, m.ino()))
        .collect()
}

/// Names of the entries of `dir` (empty if it does not exist), sorted.
/// Every entry below `dir` (not following symlinks), as (relative path,
/// lstat), sorted by path.
pub fn walk_tree(dir: &Path) -> Vec<(String, fs::Metadata)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).expect("read_dir").flatten() {
            let meta = fs::symlink_metadata(entry.path()).expect("lstat");
            if meta.is_dir() {
                stack.push(entry.path());
            }
            let rel = entry.path().strip_prefix(dir).expect("prefix").to_owned();
            out.push((rel.to_string_lossy().into_owned(), meta));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The pack data files of the store at `git_dir` (`<git_dir>/objects/pack/*.pack`), by name.
pub fn pack_data_files(git_dir: &Path) -> Vec<String> {
    let mut names = list_dir(&git_dir.join("objects/pack"));
    names.retain(|n| n.ends_with(".pack"));
    names
}

pub fn list_dir(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Checks the published-link contract for `link`: a relative symlink to
/// `.worktrees/<40-hex>` whose target is a directory, which is a checkout of
/// that very commit with a clean status. Returns the hash.
pub fn assert_published_layout(root: &Path, link: &Path) -> String {
    let target =
        fs::read_link(link).unwrap_or_else(|e| panic!("{} is not a symlink: {e}", link.display()));
    assert!(
        target.is_relative(),
        "link {} must be relative, got {}",
        link.display(),
        target.display()
    );
    let hash = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| panic!("link target {} has no basename", target.display()));
    assert!(
        is_hex40(&hash),
        "link target basename is not a 40-hex sha: {hash:?}"
    );
    if link.parent() == Some(root) {
        assert_eq!(
            target,
            Path::new(".worktrees").join(&hash),
            "a link inside root must point to .worktrees/<sha>"
        );
    }
    let resolved = link.parent().expect("link has a parent").join(&target);
    assert!(
        resolved.is_dir(),
        "link target {} is not a directory",
        resolved.display()
    );
    assert!(
        root.join(".git").is_dir(),
        "<root>/.git must be a directory (non-bare repo)"
    );
    let head = git(&["rev-parse", "HEAD"], link);
    assert_eq!(head, hash, "git rev-parse HEAD inside the published dir");
    let status = git(&["status", "--porcelain"], link);
    assert!(
        status.is_empty(),
        "git status --porcelain in the published dir is not empty:\n{status}"
    );
    let log = git(&["log", "--format=%H", "-n", "1"], link);
    assert_eq!(log, hash, "git log in the published dir");
    hash
}

/// Number of commits reachable from HEAD in `dir` (respects shallow boundaries).
pub fn rev_list_count(dir: &Path) -> usize {
    git(&["rev-list", "--count", "HEAD"], dir)
        .parse()
        .expect("rev-list --count prints a number")
}

/// Modification time of a file, if it exists.
pub fn mtime(path: &Path) -> Option<std::time::SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The JSON log lines in `stderr` (git-sidecar's default log format), in
/// order; lines that are not JSON are skipped.
pub fn log_lines(stderr: &str) -> impl Iterator<Item = serde_json::Value> + '_ {
    stderr.lines().filter_map(|l| serde_json::from_str(l).ok())
}

/// The first JSON log line in `stderr` whose message is `msg`.
pub fn logged(stderr: &str, msg: &str) -> Option<serde_json::Value> {
    log_lines(stderr).find(|v| v["msg"] == msg)
}

/// Reads an error file and returns its parsed JSON, if present and parseable.
pub fn read_error_file(path: &Path) -> Option<serde_json::Value> {
    let text = fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// True when `path` holds git-sync style error JSON with a non-empty "Err".
pub fn error_file_has_err(path: &Path) -> bool {
    read_error_file(path)
        .and_then(|v| {
            v.get("Err").map(|e| match e {
                serde_json::Value::String(s) => !s.is_empty(),
                serde_json::Value::Null => false,
                _ => true,
            })
        })
        .unwrap_or(false)
}
