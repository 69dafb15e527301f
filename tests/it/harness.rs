//! Self-tests of the harness, against the real git CLI only (they do not
//! need the sidecar binary to work): fixtures, tree checker, servers,
//! fault injectors and the process runner.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::git::{git_cmd, git_output};
use crate::support::*;
use crate::support::{client, raw_http};

/// Clones `url` into `dest` with the isolated git CLI; returns the output.
fn clone(url: &str, dest: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["clone", "-q"];
    args.extend_from_slice(extra);
    args.push(url);
    let dest_s = dest.to_str().expect("utf-8 path");
    args.push(dest_s);
    git_output(&args, Path::new("/"))
}

fn assert_ok(out: &std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Upstream with a rich tree plus one big incompressible file, so that a
/// transfer is long enough to be stalled in the middle.
fn upstream_with_big_file(bytes: usize) -> (Upstream, String) {
    let up = Upstream::new();
    up.commit_rich_tree("rich");
    let mut rng = fastrand::Rng::with_seed(7);
    let mut data = vec![0u8; bytes];
    rng.fill(&mut data);
    let sha = up.commit_file("big.bin", &data, "big");
    (up, sha)
}

#[test]
fn upstream_fixture_helpers() -> TestResult {
    let up = Upstream::new();
    let c1 = up.commit_rich_tree("first");
    assert!(is_hex40(&c1), "head is a sha: {c1}");
    let shas = up.commit_many(3, "many");
    assert_eq!(shas.len(), 3);
    assert_eq!(up.head(), shas[2]);
    assert_ne!(shas[0], shas[1], "successive commits differ");

    let light = up.tag_light("v-light");
    assert_eq!(light, shas[2]);
    let tag_obj = up.tag_annotated("v-annotated", "annotated");
    assert_ne!(
        tag_obj, shas[2],
        "annotated tag object differs from the commit"
    );
    assert_eq!(up.rev_parse("v-annotated^{commit}"), shas[2]);

    up.branch("side");
    up.checkout("side");
    let side = up.commit_file("side.txt", "side\n", "side");
    up.checkout("main");
    assert_eq!(up.head(), shas[2]);
    assert_eq!(up.rev_parse("side"), side);

    up.force_reset(&c1);
    assert_eq!(up.head(), c1);
    assert!(up.file_url().starts_with("file:///"));
    assert_eq!(up.path().file_name().and_then(|n| n.to_str()), Some("repo"));
    Ok(())
}

#[test]
fn tree_checker_accepts_exact_checkout_and_spots_differences() -> TestResult {
    let up = Upstream::new();
    let sha = up.commit_rich_tree("tree");
    let tmp = tempdir("clone");
    let dest = tmp.path().join("c");
    assert_ok(&clone(&up.file_url(), &dest, &[]), "git clone file://");
    assert_tree_matches_commit(&dest, &up, &sha);

    let check = |expect: &str| {
        let msg = tree_mismatch(&dest, up.path(), &sha)
            .unwrap_or_else(|| panic!("difference not detected: {expect}"));
        assert!(msg.contains(expect), "expected {expect:?} in:\n{msg}");
        git(&["checkout", "-q", "-f", "HEAD", "--", "."], &dest);
        git(&["clean", "-q", "-fdx"], &dest);
        assert!(
            tree_mismatch(&dest, up.path(), &sha).is_none(),
            "restored clone matches again"
        );
    };

    std::fs::write(dest.join("README.md"), "changed\n")?;
    check("content differs: README.md");

    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dest.join("bin/run.sh"),
        std::fs::Permissions::from_mode(0o644),
    )?;
    check("executable bit of bin/run.sh");

    std::fs::write(dest.join("extra.txt"), "x")?;
    check("unexpected file: extra.txt");

    std::fs::remove_file(dest.join("link-to-readme"))?;
    std::fs::write(dest.join("link-to-readme"), "README.md")?;
    check("not a symlink: link-to-readme");

    std::fs::remove_file(dest.join("link-to-dir"))?;
    std::os::unix::fs::symlink("dir", dest.join("link-to-dir"))?;
    check("symlink target of link-to-dir differs");

    std::fs::create_dir(dest.join("stray"))?;
    check("unexpected directory: stray");

    std::fs::remove_file(dest.join("dir/sub/deep.txt"))?;
    check("missing: dir/sub/deep.txt");
    Ok(())
}

#[test]
fn git_daemon_serves_protocol_v2_and_v0() -> TestResult {
    let up = Upstream::new();
    up.commit_many(3, "c");
    let head = up.head();
    let daemon = GitDaemon::start(up.base());
    let url = daemon.url(up.name());
    assert!(url.starts_with("git://127.0.0.1:"));

    let out = git_cmd(Path::new("/"))
        .env("GIT_TRACE_PACKET", "1")
        .args(["-c", "protocol.version=2", "ls-remote", &url])
        .output()?;
    assert_ok(&out, "git ls-remote over git:// (v2)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("{head}\trefs/heads/main")),
        "ls-remote output: {stdout}"
    );
    let trace = String::from_utf8_lossy(&out.stderr);
    assert!(
        trace.contains("< version 2"),
        "server did not speak protocol v2:\n{trace}\n{}",
        daemon.log()
    );

    let out = git_cmd(Path::new("/"))
        .args(["-c", "protocol.version=0", "ls-remote", &url])
        .output()?;
    assert_ok(&out, "git ls-remote over git:// (v0)");

    let tmp = tempdir("clone");
    let dest = tmp.path().join("c");
    assert_ok(
        &clone(&url, &dest, &["--depth", "1"]),
        "shallow git clone over git://",
    );
    assert_eq!(rev_list_count(&dest), 1);
    assert_tree_matches_commit(&dest, &up, &head);
    assert!(daemon.connections() >= 3);
    Ok(())
}

#[test]
fn http_git_serves_v2_and_counts() -> TestResult {
    let up = Upstream::new();
    up.commit_rich_tree("one");
    up.commit_many(3, "c");
    let head = up.head();
    let http = HttpGit::start(up.base(), HttpOpts::default());
    let url = http.url(up.name());
    assert!(url.starts_with("http://127.0.0.1:"));

    let out = git_cmd(Path::new("/"))
        .env("GIT_TRACE_PACKET", "1")
        .args(["-c", "protocol.version=2", "ls-remote", &url])
        .output()?;
    assert_ok(&out, "git ls-remote over http (v2)");
    let trace = String::from_utf8_lossy(&out.stderr);
    assert!(
        trace.contains("< version 2"),
        "server did not speak v2:\n{trace}\n{}",
        http.cgi_log()
    );

    let tmp = tempdir("clone");
    let dest = tmp.path().join("c");
    assert_ok(
        &clone(&url, &dest, &["--depth", "1"]),
        "shallow clone over http",
    );
    assert_eq!(rev_list_count(&dest), 1);
    assert_tree_matches_commit(&dest, &up, &head);

    let full = tmp.path().join("full");
    assert_ok(&clone(&url, &full, &[]), "full clone over http");
    assert_eq!(rev_list_count(&full), 4);

    assert!(
        http.requests() >= 4,
        "requests counted: {}",
        http.requests()
    );
    assert!(
        http.bytes_sent() > 1000,
        "bytes counted: {}",
        http.bytes_sent()
    );
    let log = http.request_log();
    assert!(
        log.iter()
            .any(|l| l.contains("POST /repo/git-upload-pack") && l.contains("version=2")),
        "request log: {log:#?}"
    );
    Ok(())
}

#[test]
fn http_git_v0_only_mode_still_serves_shallow_v0() -> TestResult {
    let up = Upstream::new();
    up.commit_many(4, "c");
    let head = up.head();
    let http = HttpGit::start(
        up.base(),
        HttpOpts {
            protocol_v0_only: true,
            ..Default::default()
        },
    );
    let url = http.url(up.name());
    let out = git_cmd(Path::new("/"))
        .env("GIT_TRACE_PACKET", "1")
        .args(["-c", "protocol.version=2", "ls-remote", &url])
        .output()?;
    assert_ok(&out, "ls-remote against v0-only server");
    let trace = String::from_utf8_lossy(&out.stderr);
    assert!(
        !trace.contains("< version 2"),
        "v0-only server spoke v2:\n{trace}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&head));

    let tmp = tempdir("clone");
    let dest = tmp.path().join("c");
    assert_ok(
        &clone(&url, &dest, &["--depth", "1"]),
        "shallow clone over v0 http",
    );
    assert_eq!(rev_list_count(&dest), 1);
    Ok(())
}

#[test]
fn http_git_basic_auth() -> TestResult {
    let up = Upstream::new();
    up.commit_many(1, "c");
    let http = HttpGit::start(
        up.base(),
        HttpOpts {
            basic_auth: Some(("alice".into(), "s3cret".into())),
            ..Default::default()
        },
    );
    let out = git_output(&["ls-remote", &http.url(up.name())], Path::new("/"));
    assert!(!out.status.success(), "unauthenticated ls-remote must fail");
    assert!(http.unauthorized() >= 1);
    let out = git_output(
        &[
            "ls-remote",
            &http.url_with_auth("alice", "wrong", up.name()),
        ],
        Path::new("/"),
    );
    assert!(!out.status.success(), "wrong password must fail");
    let out = git_output(
        &[
            "ls-remote",
            &http.url_with_auth("alice", "s3cret", up.name()),
        ],
        Path::new("/"),
    );
    assert_ok(&out, "authenticated ls-remote");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&up.head()));
    Ok(())
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// gzip with "stored" (uncompressed) deflate blocks: valid gzip, no deflate encoder needed.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    let chunks: Vec<&[u8]> = if data.is_empty() {
        vec![&[][..]]
    } else {
        data.chunks(65535).collect()
    };
    for (i, c) in chunks.iter().enumerate() {
        out.push(if i + 1 == chunks.len() { 1 } else { 0 });
        let len = c.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(c);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn pkt(s: &str) -> String {
    format!("{:04x}{s}", s.len() + 4)
}

/// Sends one raw HTTP request to 127.0.0.1 and returns (status line, body).
/// Raw on purpose: the tests below choose the exact framing (chunked,
/// `Expect: 100-continue`, gzip) that git's clients send, which an HTTP
/// client library would pick for itself.
fn raw_http(
    addr: std::net::SocketAddr,
    head: &str,
    body: &[u8],
) -> std::io::Result<(String, Vec<u8>)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let end = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response has headers");
    let headers = String::from_utf8_lossy(&resp[..end]).into_owned();
    let status = headers.lines().next().unwrap_or_default().to_string();
    Ok((status, resp[end + 4..].to_vec()))
}

#[test]
fn http_git_accepts_chunked_and_gzip_request_bodies() -> TestResult {
    let up = Upstream::new();
    up.commit_many(1, "c");
    let http = HttpGit::start(up.base(), HttpOpts::default());
    let body = format!(
        "{}{}{}0000",
        pkt("command=ls-refs\n"),
        "0001",
        pkt("symrefs\n")
    );

    let plain = format!(
        "POST /repo/git-upload-pack HTTP/1.1\r\nHost: 127.0.0.1\r\nGit-Protocol: version=2\r\n\
         Content-Type: application/x-git-upload-pack-request\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let (status, resp) = raw_http(http.addr(), &plain, body.as_bytes())?;
    assert!(status.starts_with("HTTP/1.1 200"), "status {status}");
    assert!(
        String::from_utf8_lossy(&resp).contains("refs/heads/main"),
        "{}",
        String::from_utf8_lossy(&resp)
    );

    // Same request, gzip-compressed and sent with chunked transfer encoding.
    let gz = gzip_stored(body.as_bytes());
    let mut chunked = Vec::new();
    for c in gz.chunks(7) {
        chunked.extend_from_slice(format!("{:x};ext=1\r\n", c.len()).as_bytes());
        chunked.extend_from_slice(c);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\nX-Trailer: t\r\n\r\n");
    let head =
        "POST /repo/git-upload-pack HTTP/1.1\r\nHost: 127.0.0.1\r\nGit-Protocol: version=2\r\n\
                Content-Type: application/x-git-upload-pack-request\r\nContent-Encoding: gzip\r\n\
                Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n";
    let (status, resp) = raw_http(http.addr(), head, &chunked)?;
    // The interim "100 Continue" comes first; the final answer follows it.
    let text = String::from_utf8_lossy(&resp);
    assert!(status.starts_with("HTTP/1.1 100"), "status {status}");
    assert!(
        text.contains("HTTP/1.1 200"),
        "final status missing: {text}"
    );
    assert!(
        text.contains("refs/heads/main"),
        "{text}\n{}",
        http.cgi_log()
    );

    let (status, _) = raw_http(
        http.addr(),
        "GET /nope/info/refs?service=git-upload-pack HTTP/1.1\r\n\r\n",
        b"",
    )?;
    assert!(status.starts_with("HTTP/1.1 404"), "status {status}");
    Ok(())
}

fn spawn_clone(url: &str, dest: &Path) -> Child {
    git_cmd(Path::new("/"))
        .args(["clone", "-q", url, dest.to_str().expect("utf-8")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning git clone")
}

fn child_stderr(child: &mut Child) -> String {
    let mut s = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut s);
    }
    s
}

/// A clone through the proxy hangs on a stall, can be aborted, and a clone
/// that is stalled and then resumed completes intact.
fn stall_proxy_round_trip(
    url_of: impl Fn(&StallProxy) -> String,
    target: std::net::SocketAddr,
    up: &Upstream,
    head: &str,
) {
    let proxy = StallProxy::start(target);
    let url = url_of(&proxy);
    let tmp = tempdir("clone");

    // Pass-through works.
    let dest0 = tmp.path().join("c0");
    assert_ok(&clone(&url, &dest0, &[]), "clone through proxy");
    assert_tree_matches_commit(&dest0, up, head);
    assert!(proxy.bytes_from_server() > 1024 * 1024);

    // Stall mid-transfer, then abort the client.
    proxy.stall_after(32 * 1024);
    let mut c1 = spawn_clone(&url, &tmp.path().join("c1"));
    wait_until(
        DEADLINE,
        "the clone to hang on the stall",
        || proxy.stall_hits() > 0,
        String::new,
    );
    assert!(proxy.is_stalled());
    assert!(
        matches!(c1.try_wait(), Ok(None)),
        "clone finished despite the stall"
    );
    let _ = c1.kill();
    let _ = c1.wait();

    // Stall again; resume; the clone completes with the held-back bytes.
    let hits = proxy.stall_hits();
    proxy.stall_after(16 * 1024);
    let dest2 = tmp.path().join("c2");
    let mut c2 = spawn_clone(&url, &dest2);
    wait_until(
        DEADLINE,
        "the second clone to hang",
        || proxy.stall_hits() > hits,
        String::new,
    );
    assert!(
        matches!(c2.try_wait(), Ok(None)),
        "clone finished despite the stall"
    );
    proxy.resume();
    let mut status = None;
    wait_until(
        DEADLINE,
        "the resumed clone to finish",
        || {
            status = c2.try_wait().ok().flatten();
            status.is_some()
        },
        String::new,
    );
    let status = status.expect("status");
    assert!(
        status.success(),
        "resumed clone failed: {}",
        child_stderr(&mut c2)
    );
    assert_tree_matches_commit(&dest2, up, head);
}

#[test]
fn stall_proxy_in_front_of_git_daemon() {
    let (up, head) = upstream_with_big_file(2 * 1024 * 1024);
    let daemon = GitDaemon::start(up.base());
    stall_proxy_round_trip(|p| p.git_url(up.name()), daemon.addr(), &up, &head);
}

#[test]
fn stall_proxy_in_front_of_http() {
    let (up, head) = upstream_with_big_file(2 * 1024 * 1024);
    let http = HttpGit::start(up.base(), HttpOpts::default());
    stall_proxy_round_trip(|p| p.http_url(up.name()), http.addr(), &up, &head);
}

#[test]
fn black_hole_accepts_and_never_answers() -> TestResult {
    let hole = BlackHole::start();
    let mut s = TcpStream::connect(hole.addr())?;
    s.write_all(b"0032git-upload-pack /repo\0host=127.0.0.1\0")?;
    s.set_read_timeout(Some(Duration::from_millis(300)))?;
    let mut buf = [0u8; 16];
    match s.read(&mut buf) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) => {}
        other => panic!("black hole answered: {other:?}"),
    }
    assert!(poll_until(DEADLINE, || hole.connections() == 1));
    assert!(hole.git_url("r").starts_with("git://127.0.0.1:"));
    Ok(())
}

#[test]
fn free_port_is_closed() {
    let port = free_port();
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "something listens on the 'free' port {port}"
    );
}

#[test]
fn runner_captures_output_signals_and_exit() {
    let sh = "/bin/sh";
    let running = Sidecar::program(sh)
        .args([
            "-c",
            "trap 'echo got-term >&2; exit 3' TERM; echo \"out HOME=$HOME\"; echo err-line >&2; \
             while :; do sleep 0.05; done",
        ])
        .env("EXTRA", "1")
        .spawn();
    running.wait_until(DEADLINE, "output captured", || {
        running.stdout().contains("out HOME=") && running.stderr().contains("err-line")
    });
    assert!(
        running.stdout().contains("git-sidecar-it-sidecar"),
        "HOME is a temp dir: {}",
        running.stdout()
    );
    running.signal(Signal::SIGTERM);
    let status = running
        .wait_timeout(Duration::from_secs(10))
        .expect("exits after SIGTERM");
    assert_eq!(status.code(), Some(3));
    assert!(running.stderr().contains("got-term"));
    assert!(running.logs().contains("exit code 3"));

    let out = Sidecar::program(sh)
        .args(["-c", "echo hi; exit 4"])
        .run(Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");

    let running = Sidecar::program(sh).args(["-c", "exec sleep 30"]).spawn();
    let status = running.kill9();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );

    // The environment is cleared: nothing from the outer process but the basics.
    let running = Sidecar::program(sh)
        .args(["-c", "env; exec sleep 30"])
        .env("GITSYNC_FROM_TEST", "x")
        .spawn();
    running.wait_until(DEADLINE, "env printed", || {
        running.stdout().contains("PATH=")
    });
    let env = running.stdout();
    assert!(env.contains("GITSYNC_FROM_TEST=x"));
    for line in env.lines() {
        let name = line.split('=').next().unwrap_or_default();
        assert!(
            !name.starts_with("CARGO") || name.is_empty(),
            "outer environment leaked into the child: {line}"
        );
    }
}

#[test]
fn raw_http_parses_content_length_and_chunked_bodies() {
    let r =
        raw_http::parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello")
            .expect("parse");
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
    assert_eq!(r.header("x-a"), Some("b"));
    let r = raw_http::parse_response(
        b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
    )
    .expect("parse");
    assert_eq!((r.status, r.text().as_str()), (503, "abcde"));
    let r = raw_http::parse_response(b"HTTP/1.0 404 Not Found\r\n\r\nuntil eof").expect("parse");
    assert_eq!(r.text(), "until eof");
}

#[test]
fn receiver_records_requests_and_follows_its_script() {
    use crate::support::receiver::{Receiver, Reply};
    let r = Receiver::scripted(
        vec![Reply::status(500), Reply::slow(Duration::from_millis(300))],
        Reply::status(204),
    );
    let addr = r.addr().to_string();
    let first = client::post(&addr, "/hook?x=1", &[("X-Test", "a b")], b"{\"k\":1}")
        .expect("first request");
    assert_eq!(first.status, 500);
    let t = std::time::Instant::now();
    let second = client::get(&addr, "/").expect("second request");
    assert_eq!(second.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(300), "not slow");
    let third = client::get(&addr, "/").expect("third request");
    assert_eq!(third.status, 204);
    let reqs = r.requests();
    assert_eq!(reqs.len(), 3, "{}", r.describe());
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].target, "/hook?x=1");
    assert_eq!(reqs[0].header("x-test"), Some("a b"));
    assert_eq!(reqs[0].json()["k"], 1);
    assert_eq!(reqs[1].method, "GET");
    assert!(reqs[1].body.is_empty());
}
