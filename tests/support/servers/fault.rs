//! [`FaultProxy`]: connections reset (at once, after the request or
//! mid-response) or answered with garbage, switchable at run time.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;

/// What a [`FaultProxy`] does with a connection accepted while it is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Relay both ways to the target: a healthy server.
    Forward,
    /// Reset (RST, SO_LINGER 0) as soon as the connection is accepted.
    ResetOnAccept,
    /// Read the client's first bytes, then reset.
    ResetAfterRequest,
    /// Relay this many server→client bytes, then reset both sides.
    ResetMidResponse(u64),
    /// Relay this many server→client bytes, then close both sides cleanly
    /// (a FIN: a server or proxy that gave up, say on a timeout).
    CloseMidResponse(u64),
    /// Read the client's first bytes, answer 4 KiB of random bytes, close.
    Garbage,
    /// Read the request, answer `200 OK` with a git content type and a
    /// random body (for http://: well-formed HTTP, nonsense git).
    GarbageHttp200,
}

struct FaultShared {
    fault: Mutex<Fault>,
    /// From this connection on (counted from 0), this fault instead.
    from: Mutex<Option<(usize, Fault)>>,
    connections: AtomicUsize,
}

/// TCP proxy on 127.0.0.1:0 in front of `target` that misbehaves as told
/// by [`FaultProxy::set`]; each connection follows the fault in force when
/// it was accepted.
pub struct FaultProxy {
    acceptor: Option<Acceptor>,
    shared: Arc<FaultShared>,
}

impl FaultProxy {
    pub fn start(target: SocketAddr) -> Self {
        assert!(
            target.ip().is_loopback(),
            "FaultProxy only forwards to 127.0.0.1, got {target}"
        );
        let shared = Arc::new(FaultShared {
            fault: Mutex::new(Fault::Forward),
            from: Mutex::new(None),
            connections: AtomicUsize::new(0),
        });
        let shared2 = shared.clone();
        // No copies of the client sockets are kept: a reset only happens
        // when the last descriptor of a socket is closed.
        let acceptor = Acceptor::start("fault-proxy", move |client| {
            let n = shared2.connections.fetch_add(1, Ordering::SeqCst);
            let from = *shared2.from.lock().expect("fault lock");
            let fault = match from {
                Some((first, fault)) if n >= first => fault,
                _ => *shared2.fault.lock().expect("fault lock"),
            };
            let _ = std::thread::Builder::new()
                .name("fault-proxy-conn".into())
                .spawn(move || serve_fault(client, target, fault, n as u64));
        });
        FaultProxy {
            acceptor: Some(acceptor),
            shared,
        }
    }

    /// Changes the behaviour for connections accepted from now on.
    pub fn set(&self, fault: Fault) {
        *self.shared.fault.lock().expect("fault lock") = fault;
    }

    /// Connection number `first` (counted from 0) and every one after it
    /// get `fault`: a server that goes away part way through a sync's
    /// several connections.
    pub fn set_from(&self, first: usize, fault: Fault) {
        *self.shared.from.lock().expect("fault lock") = Some((first, fault));
    }

    pub fn port(&self) -> u16 {
        self.acceptor.as_ref().expect("running").addr.port()
    }

    pub fn git_url(&self, name: &str) -> String {
        format!("git://{LOCALHOST}:{}/{name}", self.port())
    }

    pub fn http_url(&self, name: &str) -> String {
        format!("http://{LOCALHOST}:{}/{name}", self.port())
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        drop(self.acceptor.take());
    }
}

fn serve_fault(mut client: TcpStream, target: SocketAddr, fault: Fault, seed: u64) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(10)));
    match fault {
        Fault::Forward => relay(client, target, None),
        Fault::ResetMidResponse(n) => relay(client, target, Some((n, End::Reset))),
        Fault::CloseMidResponse(n) => relay(client, target, Some((n, End::Close))),
        Fault::ResetOnAccept => reset(client),
        Fault::ResetAfterRequest => {
            read_some(&mut client);
            reset(client);
        }
        Fault::Garbage => {
            read_some(&mut client);
            let _ = client.write_all(&random_bytes(seed, 4096));
        }
        Fault::GarbageHttp200 => {
            read_some(&mut client);
            let body = random_bytes(seed, 4096);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/x-git-upload-pack-advertisement\r\n\
                 Cache-Control: no-cache\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = client.write_all(head.as_bytes());
            let _ = client.write_all(&body);
        }
    }
}

fn random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x6a72_6261_6765);
    let mut v = vec![0u8; n];
    rng.fill(&mut v);
    v
}

/// Waits for the client's first bytes (its request), whatever they are.
fn read_some(client: &mut TcpStream) {
    let mut buf = [0u8; 4096];
    let _ = client.read(&mut buf);
}

/// Closes with a TCP reset instead of a FIN: SO_LINGER on with a zero
/// timeout, then a read shutdown that wakes a thread blocked reading a
/// copy of the socket (so that copy is dropped too: the reset is sent when
/// the last descriptor closes).
fn reset(stream: TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the fd is open (owned by `stream`) and the option value is a
    // `linger` of exactly the size passed.
    unsafe {
        nix::libc::setsockopt(
            stream.as_raw_fd(),
            nix::libc::SOL_SOCKET,
            nix::libc::SO_LINGER,
            (&linger as *const nix::libc::linger).cast(),
            std::mem::size_of::<nix::libc::linger>() as nix::libc::socklen_t,
        );
    }
    let _ = stream.shutdown(Shutdown::Read);
    drop(stream);
}

/// How a cut connection ends.
#[derive(Clone, Copy)]
enum End {
    Reset,
    Close,
}

/// Relays between `client` and a new connection to `target`; with `cut`,
/// ends both after that many server→client bytes.
fn relay(client: TcpStream, target: SocketAddr, cut: Option<(u64, End)>) {
    let Ok(server) = TcpStream::connect(target) else {
        return reset(client);
    };
    let _ = client.set_read_timeout(None);
    let (Ok(mut c_rd), Ok(mut s_wr)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let up = std::thread::spawn(move || {
        let _ = io::copy(&mut c_rd, &mut s_wr);
        let _ = s_wr.shutdown(Shutdown::Write);
    });
    relay_down(server, client, cut);
    let _ = up.join();
}

fn relay_down(mut server: TcpStream, mut client: TcpStream, cut: Option<(u64, End)>) {
    let mut left = cut.map_or(u64::MAX, |(n, _)| n);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n.min(usize::try_from(left).unwrap_or(usize::MAX)),
        };
        if client.write_all(&buf[..n]).is_err() {
            break;
        }
        left -= n as u64;
        if left == 0 {
            let _ = server.shutdown(Shutdown::Both);
            if let Some((_, End::Close)) = cut {
                let _ = client.shutdown(Shutdown::Both);
                return;
            }
            return reset(client);
        }
    }
    let _ = client.shutdown(Shutdown::Write);
}
