//! Hostile remotes over real transports (git daemon and git http-backend
//! behind a [`FaultProxy`] on one port): connections reset at once, after
//! the request or mid-pack, and answers of garbage. Each fails the sync with
//! an error in `/status`, keeps the published content, and once the same
//! port serves properly again the next sync recovers. Also a branch deleted
//! upstream, history rewritten to an unrelated root and the repository
//! replaced by an unrelated one at the same URL.

use std::net::SocketAddr;

use super::{assert_still_published, last_error, start_with_http, sync_count, wait_for_error};
use crate::support::servers::{Fault, FaultProxy};
use crate::support::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Git,
    Http,
}

/// A real git server for `up`'s base directory, kept alive by this value.
enum Server {
    Git(GitDaemon),
    Http(HttpGit),
}

impl Server {
    fn start(t: Transport, up: &Upstream) -> Self {
        match t {
            Transport::Git => Server::Git(GitDaemon::start(up.base())),
            Transport::Http => Server::Http(HttpGit::start(up.base(), HttpOpts::default())),
        }
    }

    fn addr(&self) -> SocketAddr {
        match self {
            Server::Git(d) => d.addr(),
            Server::Http(h) => h.addr(),
        }
    }

    fn url(&self, name: &str) -> String {
        match self {
            Server::Git(d) => d.url(name),
            Server::Http(h) => h.url(name),
        }
    }
}

fn proxy_url(t: Transport, proxy: &FaultProxy, name: &str) -> String {
    match t {
        Transport::Git => proxy.git_url(name),
        Transport::Http => proxy.http_url(name),
    }
}

/// The faults tried on `t`, in order, with what the error must say.
fn faults(t: Transport) -> Vec<(Fault, &'static str)> {
    let reset = "Connection reset by peer";
    let garbage = "could not list remote refs";
    let mut v = vec![
        (Fault::ResetOnAccept, reset),
        (Fault::ResetAfterRequest, reset),
        (Fault::ResetMidResponse(16 * 1024), reset),
        (Fault::Garbage, garbage),
    ];
    if t == Transport::Http {
        v.push((Fault::GarbageHttp200, garbage));
        // A clean close mid-pack is a transfer cut short, not damage here.
        v.push((
            Fault::CloseMidResponse(16 * 1024),
            "the connection ended before the whole pack arrived",
        ));
    }
    v
}

fn random_blob(seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut v = vec![0u8; 256 * 1024];
    rng.fill(&mut v);
    v
}

/// For each fault: a new commit (with 256 KiB that does not compress, so a
/// mid-pack reset really cuts a pack) is pushed while the port misbehaves;
/// at least two syncs fail, the old content stays; then the port serves
/// properly again and the commit is published.
fn hostile_server_then_recovery(t: Transport) {
    let up = Upstream::new();
    let mut good = up.commit_rich_tree("a");
    let server = Server::start(t, &up);
    let proxy = FaultProxy::start(server.addr());
    let s = Scratch::new();
    let (run, addr) = start_with_http(s.sidecar(&proxy_url(t, &proxy, up.name())).args([
        "--period",
        "200ms",
        "--max-failures",
        "-1",
        "--sync-timeout",
        "10s",
    ]));
    run.wait_for_link_hash(&s.link(), &good);
    for (i, (fault, expected)) in faults(t).into_iter().enumerate() {
        proxy.set(fault);
        let errors = sync_count(&addr, "error");
        let connections = proxy.connections();
        let next = up.commit_file("blob.bin", random_blob(i as u64), &format!("{fault:?}"));
        run.wait_until(
            DEADLINE,
            &format!("{t:?} {fault:?}: two failed syncs"),
            || sync_count(&addr, "error") >= errors + 2,
        );
        let error = last_error(&addr);
        println!(
            "{t:?} {fault:?}: {} connection(s); error: {error}",
            proxy.connections() - connections
        );
        let context = format!("{t:?} {fault:?}\n{}", run.logs());
        assert!(
            error.contains(expected),
            "the error must say {expected:?}: {error}\n{context}"
        );
        assert!(
            !error.contains("internal error") && !error.contains("panicked"),
            "a hostile server is not a bug in the sidecar: {error}\n{context}"
        );
        assert_still_published(&s, up.path(), &good, &context);
        run.assert_running();

        proxy.set(Fault::Forward);
        run.wait_for_link_hash(&s.link(), &next);
        assert_tree_matches_commit(&s.link(), &up, &next);
        run.wait_until(DEADLINE, "/status clear after the recovery", || {
            last_error(&addr).is_empty()
        });
        good = next;
    }
}

#[test]
fn git_daemon_that_resets_or_answers_garbage() {
    hostile_server_then_recovery(Transport::Git);
}

#[test]
fn http_server_that_resets_or_answers_garbage() {
    hostile_server_then_recovery(Transport::Http);
}

#[test]
fn deleted_branch_keeps_the_content_until_it_returns() {
    let up = Upstream::new();
    up.commit_rich_tree("a");
    up.checkout_new("feature");
    let a = up.commit_file("feature.txt", "f\n", "feature a");
    up.checkout("main");
    let server = Server::start(Transport::Http, &up);
    let s = Scratch::new();
    let (run, addr) = start_with_http(s.sidecar(&server.url(up.name())).args([
        "--ref",
        "feature",
        "--period",
        "200ms",
        "--max-failures",
        "-1",
    ]));
    run.wait_for_link_hash(&s.link(), &a);

    up.git(&["branch", "-D", "feature"]);
    let error = wait_for_error(&run, &addr, "feature");
    println!("branch deleted: {error}");
    let errors = sync_count(&addr, "error");
    run.wait_until(DEADLINE, "another failed sync", || {
        sync_count(&addr, "error") > errors
    });
    assert_still_published(&s, up.path(), &a, &run.logs());
    run.assert_running();

    up.checkout_new("feature");
    let b = up.commit_file("feature.txt", "f2\n", "feature b");
    run.wait_for_link_hash(&s.link(), &b);
    assert_tree_matches_commit(&s.link(), &up, &b);
}

/// Replaces `up`'s repository by a new, unrelated one at the same path
/// (same URL); returns the new repository's head.
fn replace_repository(up: &Upstream) -> String {
    let other = Upstream::named("other");
    other.commit_files(
        &[
            ("unrelated.txt", b"a different project\n"),
            ("dir/x.bin", &random_blob(99)),
        ],
        "unrelated root",
    );
    let head = other.head();
    let aside = up.base().join("replaced-away");
    std::fs::rename(up.path(), &aside).expect("moving the old repository away");
    std::fs::rename(other.path(), up.path()).expect("moving the new repository in");
    head
}

/// Force-push to an unrelated root commit, then the whole repository
/// swapped for another one behind the same URL: each new head is published
/// and equals its tree.
fn rewritten_and_replaced(t: Transport) {
    let up = Upstream::new();
    let a = up.commit_rich_tree("a");
    let server = Server::start(t, &up);
    let s = Scratch::new();
    let run = s
        .sidecar(&server.url(up.name()))
        .args(["--period", "200ms", "--max-failures", "-1"])
        .spawn();
    run.wait_for_link_hash(&s.link(), &a);

    up.git(&["checkout", "-q", "--orphan", "rewritten"]);
    up.git(&["rm", "-q", "-r", "-f", "."]);
    let orphan = up.commit_file("orphan.txt", "new root\n", "unrelated root");
    up.git(&["branch", "-f", "main", "rewritten"]);
    up.checkout("main");
    run.wait_for_link_hash(&s.link(), &orphan);
    assert_tree_matches_commit(&s.link(), &up, &orphan);

    let replaced = replace_repository(&up);
    run.wait_for_link_hash(&s.link(), &replaced);
    // `up.path()` now holds the new repository.
    assert_tree_matches_commit(&s.link(), &up, &replaced);
    assert_published_layout(&s.root, &s.link());
    run.assert_running();
}

#[test]
fn git_daemon_history_rewritten_and_repository_replaced() {
    rewritten_and_replaced(Transport::Git);
}

#[test]
fn http_history_rewritten_and_repository_replaced() {
    rewritten_and_replaced(Transport::Http);
}

/// During an outage of the remote, someone deletes the published worktree
/// (a clean-up job on the shared volume): its commit is in the store, so
/// the next pass rebuilds it from there instead of leaving the link broken
/// until the remote answers again. Likewise a restart during the outage
/// finds a tracked file changed and puts it right. The passes still fail
/// (the remote is down) and say why.
#[test]
fn the_published_tree_is_repaired_from_the_store_while_the_remote_is_down() {
    let up = Upstream::new();
    let good = up.commit_rich_tree("a");
    let server = Server::start(Transport::Git, &up);
    let proxy = FaultProxy::start(server.addr());
    let s = Scratch::new();
    let url = proxy_url(Transport::Git, &proxy, up.name());
    let args = ["--period", "200ms", "--max-failures", "-1"];
    let (run, addr) = start_with_http(s.sidecar(&url).args(args));
    run.wait_for_link_hash(&s.link(), &good);
    proxy.set(Fault::ResetOnAccept);
    let reset = "Connection reset by peer";
    wait_for_error(&run, &addr, reset);
    std::fs::remove_dir_all(s.worktrees().join(&good)).expect("deleting the published tree");
    let repaired = "repaired the published worktree from the store";
    run.wait_until(DEADLINE, "the tree rebuilt from the store", || {
        run.stderr().contains(repaired)
    });
    assert_tree_matches_commit(&s.link(), &up, &good);
    assert!(last_error(&addr).contains(reset), "{}", run.logs());
    run.assert_running();

    run.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(run.wait_timeout(DEADLINE).is_some(), "{}", run.logs());
    std::fs::write(s.link().join("README.md"), "defaced\n").expect("writing into the tree");
    let (run, addr) = start_with_http(s.sidecar(&url).args(args));
    run.wait_until(DEADLINE, "the restart's repair", || {
        run.stderr().contains(repaired)
    });
    assert_tree_matches_commit(&s.link(), &up, &good);
    assert!(last_error(&addr).contains(reset), "{}", run.logs());
}
