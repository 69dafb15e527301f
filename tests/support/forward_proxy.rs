//! [`ForwardProxy`]: a forward proxy on 127.0.0.1 (`CONNECT` tunnels and
//! absolute-form `GET`/`POST`) that counts what went through it, for the
//! credential tests' `--http-proxy` cases. Like Squid, it answers a plain
//! request itself with 502 when the server cannot be reached, and with 407
//! when it requires a user and password ([`ForwardProxy::requiring`]) and
//! the request's `Proxy-Authorization` does not carry them.
//!
//! Raw sockets on purpose, not the shared [`super::http_server`]: after a
//! `CONNECT` the connection stops being HTTP and becomes a byte tunnel,
//! which an HTTP server framework does not hand over.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::servers::LOCALHOST;

/// A request as the proxy sees it.
struct Req {
    method: String,
    /// `host:port` (CONNECT) or an absolute URL.
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads a request line, headers and a `Content-Length` body.
fn read_request(reader: &mut impl BufRead) -> io::Result<Req> {
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

/// How the proxy behaves.
#[derive(Default)]
struct Rules {
    /// `Proxy-Authorization` it requires, if any.
    authorization: Option<String>,
    /// After this many forwarded requests the server counts as gone: 502.
    reachable_for: Option<usize>,
}

impl ForwardProxy {
    pub fn start() -> Self {
        Self::start_with(Rules::default())
    }

    /// A proxy that forwards `n` plain requests, then answers 502 to the
    /// next ones, as a proxy whose git server went away does (a server
    /// restarted between a fetch's listing and its pack request).
    pub fn losing_the_server_after(n: usize) -> Self {
        Self::start_with(Rules {
            reachable_for: Some(n),
            ..Rules::default()
        })
    }

    /// A proxy that answers 407 to any request without `Proxy-Authorization:
    /// Basic` for `user` and `password`.
    pub fn requiring(user: &str, password: &str) -> Self {
        let expected = format!(
            "Basic {}",
            super::base64(format!("{user}:{password}").as_bytes())
        );
        Self::start_with(Rules {
            authorization: Some(expected),
            ..Rules::default()
        })
    }

    fn start_with(rules: Rules) -> Self {
        let listener = TcpListener::bind((LOCALHOST, 0)).expect("binding 127.0.0.1:0");
        let addr = listener.local_addr().expect("local_addr");
        let (connects, forwarded) = (Arc::<AtomicUsize>::default(), Arc::<AtomicUsize>::default());
        let (c, f) = (connects.clone(), forwarded.clone());
        let rules = Arc::new(rules);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (c, f, r) = (c.clone(), f.clone(), rules.clone());
                std::thread::spawn(move || {
                    let _ = proxy_one(stream, &c, &f, &r);
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

/// The proxy's own answer: a status line, no body, the connection closed.
fn answer(mut writer: TcpStream, status: &str, extra: &str) -> io::Result<()> {
    write!(
        writer,
        "HTTP/1.1 {status}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    writer.shutdown(Shutdown::Both)
}

fn proxy_one(
    client: TcpStream,
    connects: &AtomicUsize,
    forwarded: &AtomicUsize,
    rules: &Rules,
) -> io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut writer = client.try_clone()?;
    let mut reader = BufReader::new(client);
    let req = read_request(&mut reader)?;
    let authorization = rules.authorization.as_deref();
    if authorization.is_some_and(|a| req.header("Proxy-Authorization") != Some(a)) {
        return answer(
            writer,
            "407 Proxy Authentication Required",
            "Proxy-Authenticate: Basic realm=\"test\"\r\n",
        );
    }
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
    let gone = rules
        .reachable_for
        .is_some_and(|n| forwarded.load(Ordering::SeqCst) >= n);
    let upstream = TcpStream::connect(loopback_target(authority)?);
    let (Ok(mut upstream), false) = (upstream, gone) else {
        return answer(writer, "502 Bad Gateway", "");
    };
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
