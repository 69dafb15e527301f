//! Servers for the credential tests, on 127.0.0.1 only:
//!
//! * [`FnServer`]: an HTTP/1.1 server whose answers come from a closure (an
//!   askpass endpoint that is slow, trickling, flaky or wrong; a
//!   GitHub-API-shaped token endpoint).
//! * [`ForwardProxy`]: a forward proxy (`CONNECT` tunnels and absolute-form
//!   `GET`/`POST`) that counts what went through it.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::servers::LOCALHOST;

/// One request as the closure sees it.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    /// As sent: a path, or an absolute URL (to a proxy).
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An answer: status, body, a wait before sending it, and a pause before
/// each byte of the body (a server that trickles).
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub delay: Duration,
    pub trickle: Option<Duration>,
    /// Extra `Name: value` headers (e.g. `Location`, `WWW-Authenticate`).
    pub headers: Vec<(String, String)>,
}

impl Answer {
    pub fn new(status: u16, body: impl Into<String>) -> Self {
        Answer {
            status,
            body: body.into(),
            delay: Duration::ZERO,
            trickle: None,
            headers: Vec::new(),
        }
    }

    /// The same answer with one more header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

type Handler = dyn Fn(usize, &Req) -> Answer + Send + Sync;

/// Serves each request (its index from 0, and the request) with `handler`.
pub struct FnServer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Req>>>,
}

impl FnServer {
    pub fn start(handler: impl Fn(usize, &Req) -> Answer + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind((LOCALHOST, 0)).expect("binding 127.0.0.1:0");
        let addr = listener.local_addr().expect("local_addr");
        let requests: Arc<Mutex<Vec<Req>>> = Arc::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let seen = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (handler, seen) = (handler.clone(), seen.clone());
                std::thread::spawn(move || {
                    let _ = serve_one(stream, &*handler, &seen);
                });
            }
        });
        FnServer { addr, requests }
    }

    /// `http://127.0.0.1:PORT<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn requests(&self) -> Vec<Req> {
        self.requests.lock().expect("lock").clone()
    }
}

fn serve_one(stream: TcpStream, handler: &Handler, seen: &Mutex<Vec<Req>>) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let req = read_request(&mut reader)?;
    let index = {
        let mut seen = seen.lock().expect("lock");
        seen.push(req.clone());
        seen.len() - 1
    };
    let answer = handler(index, &req);
    std::thread::sleep(answer.delay);
    let extra: String = answer
        .headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let head = format!(
        "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
        answer.status,
        answer.body.len()
    );
    // The client may have given up (a timeout): a write error is expected then.
    let _ = writer.write_all(head.as_bytes());
    let _ = match answer.trickle {
        Some(pause) => trickle(&mut writer, answer.body.as_bytes(), pause),
        None => writer.write_all(answer.body.as_bytes()),
    };
    let _ = writer.shutdown(Shutdown::Write);
    Ok(())
}

/// Writes `body` a byte at a time, `pause` before each; stops when the
/// client has gone.
fn trickle(writer: &mut TcpStream, body: &[u8], pause: Duration) -> io::Result<()> {
    for byte in body {
        std::thread::sleep(pause);
        writer.write_all(std::slice::from_ref(byte))?;
        writer.flush()?;
    }
    Ok(())
}

/// Reads a request line, headers and a `Content-Length` body.
pub fn read_request(reader: &mut impl BufRead) -> io::Result<Req> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = match (parts.next(), parts.next()) {
        (Some(m), Some(t)) => (m.to_string(), t.to_string()),
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "no request line",
            ))
        }
    };
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let mut req = Req {
        method,
        target,
        headers,
        body: Vec::new(),
    };
    let len: usize = req
        .header("Content-Length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    req.body.resize(len, 0);
    reader.read_exact(&mut req.body)?;
    Ok(req)
}

/// A forward proxy: `CONNECT host:port` becomes a TCP tunnel; an
/// absolute-form request (`GET http://host:port/path`) is sent on to the
/// host (loopback only) with an origin-form target, the answer copied back.
pub struct ForwardProxy {
    addr: SocketAddr,
    connects: Arc<AtomicUsize>,
    forwarded: Arc<AtomicUsize>,
}

impl ForwardProxy {
    pub fn start() -> Self {
        let listener = TcpListener::bind((LOCALHOST, 0)).expect("binding 127.0.0.1:0");
        let addr = listener.local_addr().expect("local_addr");
        let (connects, forwarded) = (Arc::<AtomicUsize>::default(), Arc::<AtomicUsize>::default());
        let (c, f) = (connects.clone(), forwarded.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (c, f) = (c.clone(), f.clone());
                std::thread::spawn(move || {
                    let _ = proxy_one(stream, &c, &f);
                });
            }
        });
        ForwardProxy {
            addr,
            connects,
            forwarded,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `CONNECT` tunnels opened.
    pub fn connects(&self) -> usize {
        self.connects.load(Ordering::SeqCst)
    }

    /// Absolute-form requests forwarded.
    pub fn forwarded(&self) -> usize {
        self.forwarded.load(Ordering::SeqCst)
    }
}

/// `host:port` of a loopback target; anything else is refused.
fn loopback_target(authority: &str) -> io::Result<SocketAddr> {
    let addr: SocketAddr = authority.parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not ip:port: {authority}"),
        )
    })?;
    if !addr.ip().is_loopback() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "loopback only",
        ));
    }
    Ok(addr)
}

fn proxy_one(client: TcpStream, connects: &AtomicUsize, forwarded: &AtomicUsize) -> io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut writer = client.try_clone()?;
    let mut reader = BufReader::new(client);
    let req = read_request(&mut reader)?;
    if req.method == "CONNECT" {
        let upstream = TcpStream::connect(loopback_target(&req.target)?)?;
        connects.fetch_add(1, Ordering::SeqCst);
        writer.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
        return tunnel(reader, writer, upstream);
    }
    let rest = req
        .target
        .strip_prefix("http://")
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not absolute-form"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut upstream = TcpStream::connect(loopback_target(authority)?)?;
    forwarded.fetch_add(1, Ordering::SeqCst);
    let mut head = format!(
        "{} {} HTTP/1.1\r\n",
        req.method,
        if path.is_empty() { "/" } else { path }
    );
    for (k, v) in &req.headers {
        if !k.eq_ignore_ascii_case("proxy-connection") && !k.eq_ignore_ascii_case("connection") {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    upstream.write_all(head.as_bytes())?;
    upstream.write_all(&req.body)?;
    io::copy(&mut upstream, &mut writer)?;
    writer.shutdown(Shutdown::Both)
}

fn tunnel(
    mut from_client: BufReader<TcpStream>,
    mut to_client: TcpStream,
    upstream: TcpStream,
) -> io::Result<()> {
    let mut to_upstream = upstream.try_clone()?;
    let mut from_upstream = upstream;
    from_client.get_ref().set_read_timeout(None)?;
    let up = std::thread::spawn(move || {
        let _ = io::copy(&mut from_client, &mut to_upstream);
        let _ = to_upstream.shutdown(Shutdown::Write);
    });
    let _ = io::copy(&mut from_upstream, &mut to_client);
    let _ = to_client.shutdown(Shutdown::Write);
    let _ = up.join();
    Ok(())
}
