//! Local git servers and network fault injectors. Everything binds
//! 127.0.0.1 with an OS-chosen port and is stopped when dropped.
//!
//! * [`GitDaemon`]: `git://` via `git daemon --inetd`, one process per connection.
//! * [`HttpGit`]: smart HTTP via `git http-backend` run as CGI by a tiny
//!   threaded HTTP/1.1 server (basic auth, protocol-v0-only mode, counters).
//! * [`StallProxy`]: a TCP proxy that can stop forwarding server→client bytes
//!   (after N bytes, or now) while keeping the sockets open, and resume.
//! * [`BlackHole`]: accepts connections and never answers.
//! * [`FaultProxy`]: a proxy whose connections can be reset (at once, after
//!   the request or mid-response) or answered with garbage, switchable at
//!   run time so one port goes from hostile to healthy.
//! * [`Nginx`]: a real nginx (Debian's `/usr/sbin/nginx`) serving a directory.
//! * [`NginxGit`]: `git http-backend` under fcgiwrap behind a real nginx.
//! * [`Squid`]: a real squid forward proxy with Debian's configuration.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

mod fault;
mod git_daemon;
mod http_git;
mod nginx;
mod nginx_git;
mod squid;
mod stall;
mod tls;

// Not every target uses every server (`packaging` uses few).
#[allow(unused_imports)]
pub use fault::*;
#[allow(unused_imports)]
pub use git_daemon::*;
#[allow(unused_imports)]
pub use http_git::*;
#[allow(unused_imports)]
pub use nginx::*;
#[allow(unused_imports)]
pub use nginx_git::*;
#[allow(unused_imports)]
pub use squid::*;
#[allow(unused_imports)]
pub use stall::*;
#[allow(unused_imports)]
pub use tls::*;

/// The only address anything in this harness listens on or connects to.
pub const LOCALHOST: &str = "127.0.0.1";

fn bind_local() -> TcpListener {
    TcpListener::bind((LOCALHOST, 0)).expect("binding a TCP listener on 127.0.0.1:0")
}

/// A port on 127.0.0.1 that was free a moment ago and has nothing listening
/// on it now (connections to it are refused, barring a race with another test).
pub fn free_port() -> u16 {
    let l = bind_local();
    l.local_addr().expect("local_addr").port()
}

/// Runs the accept loop of a listener on its own thread until `stop` is set;
/// dropping the returned guard stops it (by setting the flag and connecting
/// once to wake the blocked `accept`).
struct Acceptor {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Acceptor {
    fn start(name: &str, mut on_conn: impl FnMut(TcpStream) + Send + 'static) -> Self {
        let listener = bind_local();
        let addr = listener.local_addr().expect("local_addr");
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("{name}-accept"))
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop2.load(Ordering::SeqCst) {
                        break;
                    }
                    match conn {
                        Ok(stream) => on_conn(stream),
                        Err(_) => continue,
                    }
                }
            })
            .expect("spawning accept thread");
        Acceptor {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
