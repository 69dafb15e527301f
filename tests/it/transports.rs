//! git:// (git daemon) and smart HTTP (git http-backend) transports, HTTP
//! basic auth, and shallow fetches against a protocol-v0-only server.

use std::time::Duration;

use crate::support::sidecar::describe_output;
use crate::support::*;

const RUN_TIMEOUT: Duration = Duration::from_secs(60);

fn history(n: usize) -> Upstream {
    let up = Upstream::new();
    up.commit_rich_tree("base");
    up.commit_many(n - 1, "history");
    up
}

/// `--one-time` from `url` succeeds and publishes `up`'s head exactly;
/// `server_log` is shown when it does not.
fn one_time_publishes_head(url: &str, up: &Upstream, server_log: impl Fn() -> String) -> Scratch {
    let s = Scratch::new();
    let out = s.sidecar(url).arg("--one-time").run(RUN_TIMEOUT);
    assert!(
        out.status.success(),
        "{}\nserver log:\n{}",
        describe_output(&out),
        server_log()
    );
    assert_eq!(assert_published_layout(&s.root, &s.link()), up.head());
    assert_tree_matches_commit(&s.link(), up, &up.head());
    s
}

/// A file:// URL with percent-escapes (`sp%20ace`, `r%C3%ABpo`), as git
/// takes it: the path is decoded.
#[test]
fn a_percent_encoded_file_url_is_decoded_as_git_does() {
    let up = history(2);
    let dir = tempdir("spaced");
    let bare = dir.path().join("sp ace").join("rëpo src.git");
    let out = std::process::Command::new("git")
        .args(["clone", "-q", "--bare"])
        .arg(up.path())
        .arg(&bare)
        .output()
        .expect("git clone --bare");
    assert!(out.status.success(), "{out:?}");
    let url = format!(
        "file://{}/sp%20ace/r%C3%ABpo%20src.git",
        dir.path().display()
    );
    one_time_publishes_head(&url, &up, String::new);
}

#[test]
fn git_daemon_one_time() {
    let up = history(3);
    let daemon = GitDaemon::start(up.base());
    let s = one_time_publishes_head(&daemon.url(up.name()), &up, || daemon.log());
    assert_eq!(rev_list_count(&s.link()), 1, "default depth 1 over git://");
    assert!(daemon.connections() >= 1);
}

/// `git://[::1]:PORT/...` against a real `git daemon --listen=::1`: an IPv6
/// literal in the URL is connected to, not looked up as a host name.
#[test]
fn git_daemon_on_ipv6_loopback() {
    require_ipv6_loopback();
    let up = history(2);
    let daemon = GitDaemonV6::start(up.base());
    one_time_publishes_head(&daemon.url(up.name()), &up, || daemon.log());
}

#[test]
fn git_daemon_follows_updates_and_depth() {
    let up = history(4);
    let daemon = GitDaemon::start(up.base());
    let s = Scratch::new();
    let run = s
        .sidecar(&daemon.url(up.name()))
        .args(["--period", "100ms", "--depth", "2"])
        .spawn();
    run.wait_for_link_hash(&s.link(), &up.head());
    assert_eq!(rev_list_count(&s.link()), 2);
    let next = up.commit_file("next.txt", "next\n", "next");
    run.wait_for_link_hash(&s.link(), &next);
    assert_tree_matches_commit(&s.link(), &up, &next);
    assert_eq!(rev_list_count(&s.link()), 2);
}

#[test]
fn http_one_time() {
    let up = history(3);
    let http = HttpGit::start(up.base(), HttpOpts::default());
    let s = Scratch::new();
    let out = s
        .sidecar(&http.url(up.name()))
        .arg("--one-time")
        .run(RUN_TIMEOUT);
    assert!(
        out.status.success(),
        "{}\nrequests: {:#?}\ncgi log:\n{}",
        describe_output(&out),
        http.request_log(),
        http.cgi_log()
    );
    assert_eq!(assert_published_layout(&s.root, &s.link()), up.head());
    assert_tree_matches_commit(&s.link(), &up, &up.head());
    assert_eq!(rev_list_count(&s.link()), 1);
    assert!(http.requests() >= 2, "requests: {:#?}", http.request_log());
}

#[test]
fn http_follows_updates() {
    let up = history(2);
    let http = HttpGit::start(up.base(), HttpOpts::default());
    let s = Scratch::new();
    let run = s
        .sidecar(&http.url(up.name()))
        .args(["--period", "100ms"])
        .spawn();
    run.wait_for_link_hash(&s.link(), &up.head());
    let next = up.commit_file("dir/next.txt", "next\n", "next");
    run.wait_for_link_hash(&s.link(), &next);
    assert_tree_matches_commit(&s.link(), &up, &next);
}

/// A v0-only server with `--depth 1` must not silently produce a full clone.
#[test]
fn http_protocol_v0_with_depth_is_shallow_or_fails_loudly() {
    let up = history(6);
    let http = HttpGit::start(
        up.base(),
        HttpOpts {
            protocol_v0_only: true,
            ..Default::default()
        },
    );
    let s = Scratch::new();
    let out = s
        .sidecar(&http.url(up.name()))
        .args(["--depth", "1", "--one-time"])
        .run(RUN_TIMEOUT);
    if out.status.success() {
        assert_eq!(assert_published_layout(&s.root, &s.link()), up.head());
        let count = rev_list_count(&s.link());
        assert_eq!(
            count, 1,
            "--depth 1 over protocol v0 fetched {count} commits (silently not shallow)"
        );
        let shallow = git(&["rev-parse", "--is-shallow-repository"], &s.link());
        assert_eq!(shallow, "true");
    } else {
        let text = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(
            text.contains("protocol"),
            "the failure must mention the protocol:\n{}",
            describe_output(&out)
        );
        assert!(s.published().is_none());
    }
}

#[test]
fn git_daemon_and_http_publish_identical_trees() {
    let up = history(2);
    let daemon = GitDaemon::start(up.base());
    let http = HttpGit::start(up.base(), HttpOpts::default());
    let head = up.head();
    for url in [daemon.url(up.name()), http.url(up.name()), up.file_url()] {
        let s = Scratch::new();
        let out = s.sidecar(&url).arg("--one-time").run(RUN_TIMEOUT);
        assert!(out.status.success(), "{url}: {}", describe_output(&out));
        assert_eq!(s.published().as_deref(), Some(head.as_str()), "{url}");
        assert_tree_matches_commit(&s.link(), &up, &head);
    }
}

/// A poll where the ref has not moved is one ref advertisement: over
/// smart HTTP v2 that is one GET (capabilities) and one POST (ls-refs); a
/// negotiation or fetch would add a second POST per poll. Nothing is written.
#[test]
fn idle_http_poll_is_one_ref_advertisement_round_trip() {
    let up = history(3);
    let http = HttpGit::start(up.base(), HttpOpts::default());
    let s = Scratch::new();
    let run = s
        .sidecar(&http.url(up.name()))
        .args(["--period", "50ms"])
        .spawn();
    run.wait_for_link_hash(&s.link(), &up.head());
    let packs_before = list_dir(&s.root.join(".git/objects/pack"));
    let start = http.request_log().len();
    let gets = |log: &[String]| log.iter().filter(|l| l.starts_with("GET ")).count();
    run.wait_until(DEADLINE, "ten idle polls", || {
        gets(&http.request_log()[start..]) >= 10
    });
    let window: Vec<String> = http.request_log()[start..].to_vec();
    let (get_count, post_count) = (
        gets(&window),
        window.iter().filter(|l| l.starts_with("POST ")).count(),
    );
    assert!(
        post_count <= get_count + 1,
        "{get_count} polls made {post_count} POSTs: idle polls must not negotiate\n{window:#?}"
    );
    assert_eq!(
        list_dir(&s.root.join(".git/objects/pack")),
        packs_before,
        "idle polls write no packs"
    );
    assert_eq!(s.published(), Some(up.head()));
}

/// A repository a static web server hands out (git's "dumb" HTTP protocol:
/// `git update-server-info`, then plain files, which `git clone` reads) is
/// not supported: the sync fails saying so and what to serve it with, not
/// that `--repo` is a web page.
#[test]
fn a_dumb_http_server_is_named_as_unsupported() {
    let up = history(2);
    up.git(&["update-server-info"]);
    let nginx = crate::support::servers::Nginx::start(up.base());
    let url = format!("http://{}/{}/.git", nginx.addr(), up.name());
    let clone = tempdir("dumb-clone");
    let target = clone.path().join("c");
    let cloned = crate::support::git::git_output(
        &["clone", "-q", &url, &target.to_string_lossy()],
        clone.path(),
    );
    assert!(
        cloned.status.success(),
        "git itself must clone over dumb HTTP: {}",
        String::from_utf8_lossy(&cloned.stderr)
    );
    let s = Scratch::new();
    let out = s
        .sidecar(&url)
        .arg("--one-time")
        .run(Duration::from_secs(60));
    assert!(!out.status.success(), "{}", describe_output(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("dumb")
            && stderr.contains("which git-sidecar does not support")
            && stderr.contains("git http-backend"),
        "{}",
        describe_output(&out)
    );
    assert!(!stderr.contains("web page"), "{}", describe_output(&out));
}

/// A full SHA the server does not have, over smart HTTP with protocol v0:
/// the server answers `ERR upload-pack: not our ref` where the pack should
/// start. The error says that the server refused, and to check --ref,
/// instead of only that a side-band line was malformed.
#[test]
fn http_protocol_v0_refusing_a_sha_says_so() {
    let up = history(2);
    let http = HttpGit::start(
        up.base(),
        HttpOpts {
            protocol_v0_only: true,
            ..Default::default()
        },
    );
    let s = Scratch::new();
    let out = s
        .sidecar(&http.url(up.name()))
        .args(["--one-time", "--ref", &"0123abcd".repeat(5)])
        .run(RUN_TIMEOUT);
    assert!(!out.status.success(), "{}", describe_output(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the server answered with an error (an ERR line)")
            && stderr.contains("check --ref"),
        "{}",
        describe_output(&out)
    );
}
