//! The fault campaign: the sidecar under the conditions a production pod
//! meets, each against real parts on 127.0.0.1 (nginx, git daemon, git
//! http-backend, a tmpfs), each sized to run in well under a minute or two
//! in a debug build.
//!
//! * `serving` — a real nginx serves the link while 500 commits are
//!   published under a fixed-size keep-alive load: only whole commits, only 200s.
//! * `full_disk` — a small tmpfs root fills up during a checkout.
//! * `slow_client` — hundreds of half-sent requests and a trickling one
//!   are closed after `--http-header-timeout` while `/healthz` answers, a
//!   client that reads no answers after `--http-idle-timeout`; a
//!   flood of idle connections against a 256-file limit never makes a sync
//!   fail.
//! * `shared_root` — two instances on one root (a rolling update on a shared
//!   volume, another `--ref`, a `--one-time` by hand): the second waits or
//!   exits, the link never breaks.
//! * `remotes` — servers that reset or answer garbage (git:// and http://),
//!   a deleted branch, history rewritten and the repository replaced, over
//!   real transports.
//! * `webhook_budget` — junk POSTs from the one client address an Ingress
//!   gives everyone (unsigned, wrongly signed, oversized, beyond the rate
//!   limit, also during real deliveries) never block a signed delivery or
//!   `POST /sync` with the token; junk gets 429 once its budget is spent.
//! * `trees` — hostile trees (`..`, `.git`, absolute names, slashes in
//!   names) and escaping symlinks under `--escaping-symlinks`, checked on
//!   disk and through nginx.
//! * `untracked` — a consumer, an exec hook and the pre-publish gate write
//!   into worktrees (files, directories, in-place edits, chmod) and the
//!   test into spares while 30 commits are published: every new tree is
//!   exactly its commit (`git status` clean, no stray path).
//!
//! Covered elsewhere, not repeated here: stalled servers and silent ones
//! (`faults::sync_timeout_*`, `faults::silent_*`), an upstream that
//! disappears (`faults::failing_remote_keeps_the_published_link`), kill -9
//! at random moments (`faults::kill9_at_random_moments_never_publishes_a_broken_tree`),
//! history rewritten to an orphan over file:// (`refs_depth::follows_forward_backward_and_force_pushed_updates`),
//! a ref that never existed (`sync::one_time_with_a_nonexistent_ref_fails_without_a_link`).

mod full_disk;
mod remotes;
mod serving;
mod shared_root;
mod slow_client;
mod trees;
mod untracked;
mod webhook_budget;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::support::client::{self, wait_for_http_address};
use crate::support::*;

/// Starts `sidecar` with `--http-bind 127.0.0.1:0 --http-metrics`; returns it and its address.
fn start_with_http(sidecar: Sidecar) -> (Running, String) {
    let run = sidecar
        .args(["--http-bind", "127.0.0.1:0", "--http-metrics"])
        .spawn();
    let addr = wait_for_http_address(&run);
    (run, addr)
}

/// `GET /status` as JSON.
fn status(addr: &str) -> serde_json::Value {
    let r = client::get(addr, "/status").unwrap_or_else(|e| panic!("GET /status: {e}"));
    assert_eq!(r.status, 200, "/status: {r}");
    r.json()
}

/// `/status`'s `last_error`, or "" when there is none.
fn last_error(addr: &str) -> String {
    status(addr)["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The value of `git_sync_count_total{status="<which>"}` in `/metrics`.
fn sync_count(addr: &str, which: &str) -> u64 {
    let r = client::get(addr, "/metrics").unwrap_or_else(|e| panic!("GET /metrics: {e}"));
    assert_eq!(r.status, 200, "/metrics: {r}");
    let sample = format!("git_sync_count_total{{status=\"{which}\"}} ");
    r.text()
        .lines()
        .find_map(|l| l.strip_prefix(&sample)?.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no {sample} in /metrics:\n{}", r.text())) as u64
}

/// The value of `git_sidecar_fetched_bytes_total` in `/metrics`.
fn fetched_bytes(addr: &str) -> u64 {
    let r = client::get(addr, "/metrics").unwrap_or_else(|e| panic!("GET /metrics: {e}"));
    r.text()
        .lines()
        .find_map(|l| {
            l.strip_prefix("git_sidecar_fetched_bytes_total ")?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or_else(|| {
            panic!(
                "no git_sidecar_fetched_bytes_total in /metrics:\n{}",
                r.text()
            )
        }) as u64
}

/// Waits until `/status` reports a failure whose message contains `needle`; returns the message.
fn wait_for_error(run: &Running, addr: &str, needle: &str) -> String {
    let mut seen = String::new();
    run.wait_until(
        DEADLINE,
        &format!("a sync error mentioning {needle:?}"),
        || {
            seen = last_error(addr);
            seen.contains(needle)
        },
    );
    seen
}

/// Panics unless the link still points at `sha` and its tree is exactly that commit.
fn assert_still_published(s: &Scratch, repo: &Path, sha: &str, context: &str) {
    assert_eq!(
        s.published().as_deref(),
        Some(sha),
        "the published link moved: {context}"
    );
    if let Some(problem) = tree_mismatch(&s.link(), repo, sha) {
        panic!("the published tree changed: {problem}\n{context}");
    }
}

/// What a directory holds, recursively: path → (kind, size, mtime ns, inode),
/// without following symlinks; subtrees named in `skip` (relative) are left out.
type Snapshot = BTreeMap<PathBuf, (char, u64, i64, u64)>;

fn snapshot(dir: &Path, skip: &[&str]) -> Snapshot {
    let mut out = Snapshot::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let Ok(entries) = fs::read_dir(dir.join(&rel)) else {
            continue;
        };
        for entry in entries.flatten() {
            let r = rel.join(entry.file_name());
            if skip.iter().any(|s| Path::new(s) == r) {
                continue;
            }
            let Ok(md) = fs::symlink_metadata(entry.path()) else {
                continue;
            };
            let kind = match md.file_type() {
                t if t.is_dir() => 'd',
                t if t.is_symlink() => 'l',
                _ => 'f',
            };
            if kind == 'd' {
                stack.push(r.clone());
            }
            let mtime = md.mtime() * 1_000_000_000 + md.mtime_nsec();
            out.insert(r, (kind, md.len(), mtime, md.ino()));
        }
    }
    out
}

/// Every path below `dir` (symlinks not followed) whose file name satisfies `pred`.
fn find_names(dir: &Path, pred: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    snapshot(dir, &[])
        .into_keys()
        .filter(|p| p.file_name().is_some_and(|n| pred(&n.to_string_lossy())))
        .collect()
}
