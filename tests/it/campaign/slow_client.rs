//! Slow and idle HTTP clients, as an attacker (or a broken proxy) sends
//! them: hundreds of connections that send part of a request and stall,
//! one that trickles its headers a byte at a time, one that sends requests
//! but never reads the answers, and a flood of
//! connections that never send anything while the sidecar runs with a
//! small open-file limit. The endpoint must close the slow ones after
//! `--http-header-timeout`, keep answering `/healthz` meanwhile, and the
//! sync must keep working: an HTTP flood never costs the sync its file
//! descriptors.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use super::start_with_http;
use crate::support::client;
use crate::support::*;

/// Connections that send part of a request and stall.
const HALF_SENT: usize = 300;
/// Idle connections opened against a sidecar limited to [`NOFILE`] files.
const IDLE_FLOOD: usize = 600;
const NOFILE: u64 = 256;

/// Parts of requests that never complete.
const PARTIAL: [&[u8]; 5] = [
    b"G",
    b"GET /status HT",
    b"GET /readyz HTTP/1.1\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nUser-Agent: slow",
    b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n",
];

fn connect(addr: &str) -> std::io::Result<TcpStream> {
    let sock: SocketAddr = addr.parse().expect("sidecar address");
    TcpStream::connect_timeout(&sock, Duration::from_secs(2))
}

/// Whether the server closed `stream` before `deadline` (EOF or reset).
fn closed_by(stream: &mut TcpStream, deadline: Instant) -> bool {
    let mut buf = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        stream.set_read_timeout(Some(left)).expect("read timeout");
        match stream.read(&mut buf) {
            Ok(0) => return true,
            // A 408 or similar before the close is fine: keep reading to EOF.
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(e) => panic!("reading a stalled connection: {e}"),
        }
    }
}

/// `GET /healthz` on a new connection answers 200.
fn assert_healthz(addr: &str, context: &str) {
    let r = client::get(addr, "/healthz").unwrap_or_else(|e| panic!("GET /healthz {context}: {e}"));
    assert_eq!(r.status, 200, "/healthz {context}: {r}");
}

/// Our own soft open-file limit up to the hard one: the flood needs more
/// sockets than a test process gets by default.
fn raise_own_open_file_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("raising our open-file limit");
    }
}

#[test]
fn half_sent_requests_are_closed_after_the_header_timeout_while_healthz_answers() {
    raise_own_open_file_limit();
    let up = Upstream::new();
    let first = up.commit_file("index.html", "one\n", "one");
    let s = Scratch::new();
    let (run, addr) = start_with_http(s.sidecar(&up.file_url()).args([
        "--period",
        "1s",
        "--http-header-timeout",
        "2s",
    ]));
    run.wait_for_link_hash(&s.link(), &first);
    // Ready once the pass that flipped the link has reported, a moment after
    // the flip (on a loaded machine, after this test's first probe).
    run.wait_until(DEADLINE, "GET /healthz ready after the first sync", || {
        client::get(&addr, "/healthz").is_ok_and(|r| r.status == 200)
    });

    let mut stalled: Vec<TcpStream> = (0..HALF_SENT)
        .map(|i| {
            let mut c = connect(&addr).unwrap_or_else(|e| panic!("connection {i}: {e}"));
            c.write_all(PARTIAL[i % PARTIAL.len()])
                .unwrap_or_else(|e| panic!("connection {i}: {e}"));
            c
        })
        .collect();
    // Trickling one byte a second keeps sending but never finishes: the
    // header deadline counts from the first byte, not the last.
    let trickler = {
        let addr = addr.clone();
        thread::spawn(move || {
            let mut c = connect(&addr).expect("trickling connection");
            let started = Instant::now();
            for byte in b"GET /status HTTP/1.1\r\nX-Slow: ".iter().cycle() {
                if c.write_all(&[*byte]).is_err() || started.elapsed() > DEADLINE {
                    break;
                }
                thread::sleep(Duration::from_millis(300));
            }
            started.elapsed()
        })
    };
    for round in 0..3 {
        assert_healthz(
            &addr,
            &format!("with {HALF_SENT} stalled connections (round {round})"),
        );
    }

    let deadline = Instant::now() + DEADLINE;
    let still_open = stalled
        .iter_mut()
        .filter_map(|c| (!closed_by(c, deadline)).then_some(()))
        .count();
    assert_eq!(
        still_open,
        0,
        "{still_open} of {HALF_SENT} half-sent requests were still open {DEADLINE:?} after \
         they stalled (--http-header-timeout 2s)\n{}",
        run.logs()
    );
    let trickled = trickler.join().expect("trickling thread");
    assert!(
        trickled < DEADLINE,
        "a connection trickling its headers was never closed\n{}",
        run.logs()
    );

    let second = up.commit_file("index.html", "two\n", "two");
    run.wait_for_link_hash(&s.link(), &second);
    assert_healthz(&addr, "after the stalled connections");
    run.assert_running();
}

#[test]
fn an_idle_connection_flood_never_costs_the_sync_its_file_descriptors() {
    raise_own_open_file_limit();
    let up = Upstream::new();
    let first = up.commit_file("index.html", "one\n", "one");
    let s = Scratch::new();
    // soft = hard: the sidecar cannot raise it; 256 is what some container
    // runtimes and systemd units still give.
    let (run, addr) = start_with_http(
        s.sidecar(&up.file_url())
            .args(["--period", "1s"])
            .open_file_limit(NOFILE, NOFILE),
    );
    run.wait_for_link_hash(&s.link(), &first);

    // Far more idle connections than the process has descriptors. Those the
    // kernel queues but the sidecar has not accepted yet count as well.
    let flood: Vec<TcpStream> = (0..IDLE_FLOOD)
        .filter_map(|_| connect(&addr).ok())
        .collect();
    assert!(
        flood.len() > NOFILE as usize,
        "only {} of {IDLE_FLOOD} connections were established",
        flood.len()
    );
    // Probes get through during the flood (idle connections make room).
    run.wait_until(DEADLINE, "GET /healthz answering during the flood", || {
        client::get(&addr, "/healthz").is_ok_and(|r| r.status == 200)
    });

    // Syncing needs descriptors: a new commit is still published.
    for round in 0..3 {
        let next = up.commit_file("index.html", format!("round {round}\n"), "next");
        run.wait_for_link_hash(&s.link(), &next);
    }
    run.assert_running();
    let logs = run.logs();
    assert!(
        !logs.contains("Too many open files"),
        "a sync ran out of descriptors:\n{logs}"
    );
    drop(flood);
    assert_healthz(&addr, "after the flood");
}

#[test]
fn the_open_file_limit_is_raised_to_the_hard_limit_at_start() {
    let up = Upstream::new();
    let first = up.commit_file("index.html", "one\n", "one");
    let s = Scratch::new();
    let (run, _addr) = start_with_http(
        s.sidecar(&up.file_url())
            .args(["--period", "10m"])
            .open_file_limit(NOFILE, 4096),
    );
    run.wait_for_link_hash(&s.link(), &first);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", run.pid()))
        .expect("reading /proc/<pid>/limits");
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a 'Max open files' line");
    let numbers: Vec<&str> = open_files.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers, ["4096", "4096"], "{open_files}");
}

#[test]
fn a_client_that_never_reads_its_answers_is_closed_after_the_idle_timeout() {
    let up = Upstream::new();
    let first = up.commit_file("index.html", "one\n", "one");
    let s = Scratch::new();
    let (run, addr) = start_with_http(s.sidecar(&up.file_url()).args([
        "--period",
        "10m",
        "--http-idle-timeout",
        "3s",
    ]));
    run.wait_for_link_hash(&s.link(), &first);

    // Pipelined requests, no reads: the answers fill both socket buffers,
    // the sidecar's writes block, then it stops reading and ours block.
    let mut c = connect(&addr).expect("connecting");
    c.set_write_timeout(Some(Duration::from_secs(2)))
        .expect("write timeout");
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let started = Instant::now();
    let mut sent = 0usize;
    // The sidecar may close it while we are still filling our side (its
    // receive buffer grows large on loopback): a reset then is the answer.
    let mut closed = false;
    loop {
        match c.write_all(request.as_bytes()) {
            Ok(()) => sent += 1,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(_) => {
                closed = true;
                break;
            }
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{sent} requests were written without filling the buffers"
        );
    }

    // Once the sidecar closes it (with our requests unread), writes fail.
    c.set_write_timeout(Some(Duration::from_millis(200)))
        .expect("write timeout");
    let blocked = Instant::now();
    closed = closed
        || poll_until(DEADLINE, || match c.write(b"G") {
            Ok(_) => false,
            Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        });
    assert!(
        closed,
        "a connection whose client reads nothing was still open {:?} after {sent} pipelined \
         requests filled its buffers (--http-idle-timeout 3s)\n{}",
        blocked.elapsed(),
        run.logs()
    );
    assert_healthz(&addr, "after the non-reading client");
    run.assert_running();
}
