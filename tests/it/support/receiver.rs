//! A real HTTP/1.1 receiver on 127.0.0.1:0 for the outgoing webhook
//! (`--webhook-url`): it records every request (method, path, headers, body,
//! arrival time) as soon as it has been read, then answers according to a
//! script: per request a status and an optional delay before answering, e.g.
//! "500 twice, then 200" or "the first answer takes 3 s".
//!
//! Each connection is served on its own thread, so a slow answer never
//! delays the next request; every answer carries `Connection: close`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::servers::LOCALHOST;

/// How one request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// Sleep this long after reading the request, before answering.
    pub delay: Duration,
}

impl Reply {
    /// Answer `status` at once.
    pub fn status(status: u16) -> Self {
        Reply {
            status,
            delay: Duration::ZERO,
        }
    }

    /// Answer 200, but only after `delay`.
    pub fn slow(delay: Duration) -> Self {
        Reply { status: 200, delay }
    }
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// Request target as sent (path and query).
    pub target: String,
    /// Header names as sent (compare case-insensitively with [`Received::header`]).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When the request had been read completely.
    pub at: Instant,
}

impl Received {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "request body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

struct State {
    /// Replies for the first requests, in order.
    script: Vec<Reply>,
    /// The reply once the script is used up.
    then: Reply,
    received: Mutex<Vec<Received>>,
    /// Requests that could not be parsed, for failure messages.
    errors: Mutex<Vec<String>>,
}

impl State {
    /// Records `req` and returns how to answer it.
    fn record(&self, req: Received) -> Reply {
        let mut received = self.received.lock().expect("receiver lock");
        let reply = self
            .script
            .get(received.len())
            .copied()
            .unwrap_or(self.then);
        received.push(req);
        reply
    }
}

/// The receiver; stops accepting when dropped.
pub struct Receiver {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    /// Answers every request with 200.
    pub fn start() -> Self {
        Self::scripted(Vec::new(), Reply::status(200))
    }

    /// Answers every request with `status`.
    pub fn answering(status: u16) -> Self {
        Self::scripted(Vec::new(), Reply::status(status))
    }

    /// Answers the first `n` requests with `status`, then 200.
    pub fn failing_first(n: usize, status: u16) -> Self {
        Self::scripted(vec![Reply::status(status); n], Reply::status(200))
    }

    /// Answers the first `n` requests with 200 after `delay`, then 200 at once.
    pub fn slow_first(n: usize, delay: Duration) -> Self {
        Self::scripted(vec![Reply::slow(delay); n], Reply::status(200))
    }

    /// Answers request `i` with `script[i]`, and later ones with `then`.
    pub fn scripted(script: Vec<Reply>, then: Reply) -> Self {
        let listener =
            TcpListener::bind((LOCALHOST, 0)).expect("binding the receiver on 127.0.0.1:0");
        let addr = listener.local_addr().expect("local_addr");
        let state = Arc::new(State {
            script,
            then,
            received: Mutex::new(Vec::new()),
            errors: Mutex::new(Vec::new()),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (state2, stop2) = (state.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("receiver-accept".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop2.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = conn else { continue };
                    let state = state2.clone();
                    let _ = std::thread::Builder::new()
                        .name("receiver-conn".into())
                        .spawn(move || {
                            if let Err(e) = serve(stream, &state) {
                                state
                                    .errors
                                    .lock()
                                    .expect("receiver lock")
                                    .push(e.to_string());
                            }
                        });
                }
            })
            .expect("spawning the receiver thread");
        Receiver {
            addr,
            state,
            stop,
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request received so far, in order of arrival.
    pub fn requests(&self) -> Vec<Received> {
        self.state.received.lock().expect("receiver lock").clone()
    }

    /// How many requests were received so far.
    pub fn count(&self) -> usize {
        self.state.received.lock().expect("receiver lock").len()
    }

    /// A summary of what was received, for failure messages.
    pub fn describe(&self) -> String {
        let start = self.requests().first().map(|r| r.at);
        let mut s = format!("--- receiver {} ---\n", self.addr);
        for (i, r) in self.requests().iter().enumerate() {
            let t = start.map(|s| r.at.duration_since(s)).unwrap_or_default();
            s.push_str(&format!(
                "#{i} +{t:?} {} {} headers={:?} body={:?}\n",
                r.method,
                r.target,
                r.headers,
                String::from_utf8_lossy(&r.body)
            ));
        }
        for e in self.state.errors.lock().expect("receiver lock").iter() {
            s.push_str(&format!("unparsed request: {e}\n"));
        }
        s
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocked accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut buf = Vec::new();
    if r.take(64 * 1024).read_until(b'\n', &mut buf)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    String::from_utf8(buf).map_err(|_| bad("non-UTF-8 header line"))
}

/// Reads one request, records it, answers it and closes the connection.
fn serve(stream: TcpStream, state: &State) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let line = match read_line(&mut reader) {
        Ok(l) => l,
        // A connection that sends nothing (e.g. the wake-up on drop).
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut parts = line.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts
        .next()
        .ok_or_else(|| bad(format!("bad request line {line:?}")))?
        .to_string();
    let mut headers = Vec::new();
    loop {
        let h = read_line(&mut reader)?;
        if h.is_empty() {
            break;
        }
        let (k, v) = h
            .split_once(':')
            .ok_or_else(|| bad(format!("bad header {h:?}")))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let mut req = Received {
        method,
        target,
        headers,
        body: Vec::new(),
        at: Instant::now(),
    };
    if req
        .header("Expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    if req
        .header("Transfer-Encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        req.body = read_chunked(&mut reader)?;
    } else if let Some(len) = req.header("Content-Length") {
        let len: usize = len.parse().map_err(|_| bad("bad Content-Length"))?;
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        req.body = body;
    }
    req.at = Instant::now();
    let reply = state.record(req);
    if !reply.delay.is_zero() {
        std::thread::sleep(reply.delay);
    }
    let body = format!("receiver says {}\n", reply.status);
    let head = format!(
        "HTTP/1.1 {} Status{}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reply.status,
        reply.status,
        body.len()
    );
    // The client may have given up (timeout): a failed write is not an error here.
    let _ = writer.write_all(head.as_bytes());
    let _ = writer.write_all(body.as_bytes());
    let _ = writer.flush();
    Ok(())
}

fn read_chunked(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader)?;
        let size_hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| bad(format!("bad chunk size {line:?}")))?;
        if size == 0 {
            while !read_line(reader)?.is_empty() {}
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        if !read_line(reader)?.is_empty() {
            return Err(bad("chunk not followed by CRLF"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::client;

    #[test]
    fn records_requests_and_follows_its_script() {
        let r = Receiver::scripted(
            vec![Reply::status(500), Reply::slow(Duration::from_millis(300))],
            Reply::status(204),
        );
        let addr = r.addr().to_string();
        let first = client::post(&addr, "/hook?x=1", &[("X-Test", "a b")], b"{\"k\":1}")
            .expect("first request");
        assert_eq!(first.status, 500);
        let t = Instant::now();
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
}
