//! [`StallProxy`] (stops forwarding server→client bytes on demand, keeping
//! the sockets open) and [`BlackHole`] (accepts and never answers).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Forward,
    /// Forward this many more server→client bytes, then stall.
    StallAfter(u64),
    Stalled,
}

struct ProxyShared {
    mode: Mutex<Mode>,
    cv: Condvar,
    stop: AtomicBool,
    from_server: AtomicU64,
    stall_hits: AtomicUsize,
    connections: AtomicUsize,
    streams: Mutex<Vec<TcpStream>>,
}

/// TCP proxy on 127.0.0.1:0 in front of `target`. Client→server bytes always
/// flow; server→client bytes can be held back (sockets stay open), which
/// looks to the client like a server stalling mid-transfer.
pub struct StallProxy {
    acceptor: Option<Acceptor>,
    shared: Arc<ProxyShared>,
}

impl StallProxy {
    pub fn start(target: SocketAddr) -> Self {
        assert!(
            target.ip().is_loopback(),
            "StallProxy only forwards to 127.0.0.1, got {target}"
        );
        let shared = Arc::new(ProxyShared {
            mode: Mutex::new(Mode::Forward),
            cv: Condvar::new(),
            stop: AtomicBool::new(false),
            from_server: AtomicU64::new(0),
            stall_hits: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            streams: Mutex::new(Vec::new()),
        });
        let shared2 = shared.clone();
        let acceptor = Acceptor::start("stall-proxy", move |client| {
            shared2.connections.fetch_add(1, Ordering::SeqCst);
            let server = match TcpStream::connect(target) {
                Ok(s) => s,
                Err(_) => return, // client sees the connection close
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            if let (Ok(c), Ok(s)) = (client.try_clone(), server.try_clone()) {
                let mut streams = shared2.streams.lock().expect("streams lock");
                streams.push(c);
                streams.push(s);
            }
            let closed = Arc::new(AtomicBool::new(false));
            let (c_rd, s_wr) = match (client.try_clone(), server.try_clone()) {
                (Ok(a), Ok(b)) => (a, b),
                _ => return,
            };
            let (sh, cl) = (shared2.clone(), closed.clone());
            let _ = std::thread::Builder::new()
                .name("stall-proxy-up".into())
                .spawn(move || pump_up(c_rd, s_wr, &sh, &cl));
            let (sh, cl) = (shared2.clone(), closed);
            let _ = std::thread::Builder::new()
                .name("stall-proxy-down".into())
                .spawn(move || pump_down(server, client, &sh, &cl));
        });
        StallProxy {
            acceptor: Some(acceptor),
            shared,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.acceptor.as_ref().expect("running").addr
    }

    pub fn port(&self) -> u16 {
        self.addr().port()
    }

    /// `git://127.0.0.1:PORT/<name>` (when the target is a [`GitDaemon`]).
    pub fn git_url(&self, name: &str) -> String {
        format!("git://{LOCALHOST}:{}/{name}", self.port())
    }

    /// `http://127.0.0.1:PORT/<name>` (when the target is an [`HttpGit`]).
    pub fn http_url(&self, name: &str) -> String {
        format!("http://{LOCALHOST}:{}/{name}", self.port())
    }

    fn set_mode(&self, m: Mode) {
        *self.shared.mode.lock().expect("mode lock") = m;
        self.shared.cv.notify_all();
    }

    /// Forward `n` more bytes from server to client (summed over all
    /// connections), then stop forwarding while keeping the sockets open.
    pub fn stall_after(&self, n: u64) {
        self.set_mode(if n == 0 {
            Mode::Stalled
        } else {
            Mode::StallAfter(n)
        });
    }

    /// Stop forwarding server→client bytes now.
    pub fn stall_now(&self) {
        self.set_mode(Mode::Stalled);
    }

    /// Forward everything again, including what was held back.
    pub fn resume(&self) {
        self.set_mode(Mode::Forward);
    }

    /// Whether server→client forwarding is currently stopped.
    pub fn is_stalled(&self) -> bool {
        *self.shared.mode.lock().expect("mode lock") == Mode::Stalled
    }

    /// How many times a connection had server bytes to forward but was held
    /// back: > 0 means a client is really hanging on the stall.
    pub fn stall_hits(&self) -> usize {
        self.shared.stall_hits.load(Ordering::SeqCst)
    }

    /// Server→client bytes forwarded so far.
    pub fn bytes_from_server(&self) -> u64 {
        self.shared.from_server.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

impl Drop for StallProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.cv.notify_all();
        drop(self.acceptor.take());
        if let Ok(streams) = self.shared.streams.lock() {
            for s in streams.iter() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}

fn close_both(a: &TcpStream, b: &TcpStream, closed: &AtomicBool, shared: &ProxyShared) {
    closed.store(true, Ordering::SeqCst);
    let _ = a.shutdown(Shutdown::Both);
    let _ = b.shutdown(Shutdown::Both);
    shared.cv.notify_all();
}

/// client → server: always forwarded. The client going away closes both sides.
fn pump_up(
    mut client: TcpStream,
    mut server: TcpStream,
    shared: &ProxyShared,
    closed: &AtomicBool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if server.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    close_both(&client, &server, closed, shared);
}

/// Blocks until `want` bytes (or part of them) may be forwarded; `None` when
/// the connection or the proxy is closing.
fn gate(shared: &ProxyShared, closed: &AtomicBool, want: usize) -> Option<usize> {
    let mut counted = false;
    let mut mode = shared.mode.lock().expect("mode lock");
    loop {
        if shared.stop.load(Ordering::SeqCst) || closed.load(Ordering::SeqCst) {
            return None;
        }
        match *mode {
            Mode::Forward => return Some(want),
            Mode::StallAfter(rem) => {
                let allowed = (want as u64).min(rem);
                *mode = if rem == allowed {
                    Mode::Stalled
                } else {
                    Mode::StallAfter(rem - allowed)
                };
                if allowed > 0 {
                    return Some(allowed as usize);
                }
            }
            Mode::Stalled => {
                if !counted {
                    counted = true;
                    shared.stall_hits.fetch_add(1, Ordering::SeqCst);
                }
                mode = shared
                    .cv
                    .wait_timeout(mode, Duration::from_millis(100))
                    .expect("mode lock")
                    .0;
            }
        }
    }
}

/// server → client, subject to the stall switch.
fn pump_down(
    mut server: TcpStream,
    mut client: TcpStream,
    shared: &ProxyShared,
    closed: &AtomicBool,
) {
    let mut buf = vec![0u8; 16 * 1024];
    'outer: loop {
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut off = 0;
        while off < n {
            let Some(allowed) = gate(shared, closed, n - off) else {
                break 'outer;
            };
            if client.write_all(&buf[off..off + allowed]).is_err() {
                break 'outer;
            }
            shared
                .from_server
                .fetch_add(allowed as u64, Ordering::SeqCst);
            off += allowed;
        }
    }
    close_both(&server, &client, closed, shared);
}

// ---------------------------------------------------------------------------
// Black hole

/// Accepts TCP connections on 127.0.0.1 and never answers (reads and
/// discards whatever arrives, keeps the connection open).
pub struct BlackHole {
    acceptor: Option<Acceptor>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
    connections: Arc<AtomicUsize>,
}

impl BlackHole {
    pub fn start() -> Self {
        let streams: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (streams2, connections2) = (streams.clone(), connections.clone());
        let acceptor = Acceptor::start("black-hole", move |mut stream| {
            connections2.fetch_add(1, Ordering::SeqCst);
            if let Ok(c) = stream.try_clone() {
                streams2.lock().expect("streams lock").push(c);
            }
            let _ = std::thread::Builder::new()
                .name("black-hole-conn".into())
                .spawn(move || {
                    let mut sink = [0u8; 4096];
                    while let Ok(n) = stream.read(&mut sink) {
                        if n == 0 {
                            break;
                        }
                    }
                });
        });
        BlackHole {
            acceptor: Some(acceptor),
            streams,
            connections,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.acceptor.as_ref().expect("running").addr
    }

    pub fn port(&self) -> u16 {
        self.addr().port()
    }

    pub fn git_url(&self, name: &str) -> String {
        format!("git://{LOCALHOST}:{}/{name}", self.port())
    }

    pub fn http_url(&self, name: &str) -> String {
        format!("http://{LOCALHOST}:{}/{name}", self.port())
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        drop(self.acceptor.take());
        if let Ok(streams) = self.streams.lock() {
            for s in streams.iter() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}
