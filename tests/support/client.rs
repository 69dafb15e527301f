//! The tests' HTTP client for the sidecar's HTTP surface (and nginx) on
//! 127.0.0.1: reqwest's blocking client, one request per connection, the
//! response read whole into a [`Response`] that failure messages can print.
//! Tests that need malformed or slow traffic write raw bytes on a
//! `TcpStream` themselves (and parse what comes back with
//! [`super::raw_http::parse_response`]).

use std::io;
use std::sync::OnceLock;
use std::time::Duration;

use super::sidecar::Running;
use super::DEADLINE;

/// Read/write timeout of one request.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names are lowercased; values are trimmed.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {:?}", self.text()))
    }
}

impl std::fmt::Display for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut body = self.text();
        if body.len() > 2000 {
            let mut cut = 2000;
            while !body.is_char_boundary(cut) {
                cut -= 1;
            }
            body.truncate(cut);
            body.push_str("[...]");
        }
        write!(f, "HTTP {} {:?}", self.status, body)
    }
}

/// The client every request goes through: no proxy from the environment,
/// no redirects followed (a test sees the 3xx itself), no kept-alive
/// connections (each request is one connection, so connection limits and
/// counts see what they expect).
fn http() -> &'static reqwest::blocking::Client {
    static CLIENT: OnceLock<reqwest::blocking::Client> = OnceLock::new();
    CLIENT.get_or_init(new_client)
}

fn new_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .connect_timeout(IO_TIMEOUT)
        .timeout(IO_TIMEOUT)
        .build()
        .expect("building the test HTTP client")
}

/// `GET path` with a client made now, whose connections therefore come
/// from this thread's network namespace: reqwest connects from a thread of
/// its own, which inherits the namespaces of the thread that built the
/// client, so the shared client would connect from the test's namespace
/// even after a `setns` (the image test reaches a container's loopback).
pub fn get_from_this_netns(addr: &str, path: &str) -> io::Result<Response> {
    request_with(&new_client(), addr, "GET", path, &[], b"")
}

/// Sends one request to `addr` (`host:port`) and reads the whole response.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    request_with(http(), addr, method, path, headers, body)
}

fn request_with(
    client: &reqwest::blocking::Client,
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    let method = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{method}: {e}")))?;
    let is_get = method == reqwest::Method::GET;
    let mut req = client.request(method, format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    // As any client: a POST says `Content-Length: 0` even when empty.
    if !body.is_empty() || !is_get {
        req = req.body(body.to_vec());
    }
    let other = |e: reqwest::Error| io::Error::other(format!("{e:#}"));
    let r = req.send().map_err(other)?;
    let status = r.status().as_u16();
    let headers = r
        .headers()
        .iter()
        .map(|(k, v)| {
            let v = String::from_utf8_lossy(v.as_bytes()).trim().to_string();
            (k.as_str().to_string(), v)
        })
        .collect();
    let body = r.bytes().map_err(other)?.to_vec();
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// `GET path`.
pub fn get(addr: &str, path: &str) -> io::Result<Response> {
    request(addr, "GET", path, &[], b"")
}

/// `POST path` with `headers` and `body`.
pub fn post(addr: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> io::Result<Response> {
    request(addr, "POST", path, headers, body)
}

/// The address from the sidecar's `"serving HTTP"` JSON log line, if logged yet.
pub fn http_address_in(stderr: &str) -> Option<String> {
    super::logged(stderr, "serving HTTP")
        .and_then(|v| v.get("address")?.as_str().map(str::to_string))
}

/// Waits (up to [`DEADLINE`]) for the sidecar to log the address it serves
/// HTTP on (`--http-bind 127.0.0.1:0`) and returns it.
pub fn wait_for_http_address(run: &Running) -> String {
    let mut addr = None;
    run.wait_until(DEADLINE, "the \"serving HTTP\" log line", || {
        addr = http_address_in(&run.stderr());
        addr.is_some()
    });
    let addr = addr.expect("address found");
    assert!(
        addr.starts_with("127.0.0.1:"),
        "the sidecar must serve on loopback only, got {addr}"
    );
    addr
}
