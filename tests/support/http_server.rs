//! The one HTTP server of the test harness: axum (hyper) on 127.0.0.1:0 on
//! its own tokio runtime. It records every request (method, target,
//! headers, body, peer, arrival time) as soon as its body has been read,
//! then answers with what a closure returns for it. The git smart-HTTP
//! server ([`super::servers::HttpGit`]), the outgoing-webhook receiver
//! ([`super::receiver::Receiver`]) and the askpass / token endpoints of the
//! credential tests are this server with different closures.
//!
//! The closure runs on tokio's blocking pool, so it may block (run a CGI
//! program, sleep): a slow answer never delays another request. Every
//! answer carries `Connection: close`, so each request is one connection,
//! as the tests that count connections expect.

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use http_body::Frame;

use super::servers::LOCALHOST;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The request target as sent: path and query.
    pub target: String,
    /// Header names are lowercase (compare with [`Request::header`]).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub peer: SocketAddr,
    /// When the request (body included) had been read.
    pub at: Instant,
}

impl Request {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of the headers named `name` (case-insensitive).
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The target's path (before `?`).
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }

    /// The target's query (after `?`; empty when there is none).
    pub fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
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

/// An answer: status, headers, body, a wait before sending it, and a pause
/// before each byte of the body (a server that trickles).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// `Content-Type` unless `headers` has one or this is empty.
    pub content_type: &'static str,
    /// Extra `Name: value` headers (e.g. `Location`, `WWW-Authenticate`).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub delay: Duration,
    pub trickle: Option<Duration>,
}

impl Answer {
    /// `status` with a JSON-typed `body`, at once.
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Answer {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: body.into(),
            delay: Duration::ZERO,
            trickle: None,
        }
    }

    /// The same answer with one more header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// The same answer with another `Content-Type`.
    pub fn content_type(mut self, value: &'static str) -> Self {
        self.content_type = value;
        self
    }

    /// The same answer, sent only after `delay`.
    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

type Handler = dyn Fn(usize, &Request) -> Answer + Send + Sync;

struct Shared {
    handler: Box<Handler>,
    requests: Mutex<Vec<Request>>,
    /// Requests whose body could not be read, for failure messages.
    errors: Mutex<Vec<String>>,
    /// Body bytes handed to the connection so far.
    bytes_sent: AtomicU64,
}

/// The server; stops (closing every connection) when dropped.
pub struct TestServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TestServer {
    /// Serves each request (its index from 0, and the request) with `handler`.
    pub fn start(handler: impl Fn(usize, &Request) -> Answer + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind((LOCALHOST, 0)).expect("binding 127.0.0.1:0");
        let addr = listener.local_addr().expect("local_addr");
        listener.set_nonblocking(true).expect("set_nonblocking");
        let shared = Arc::new(Shared {
            handler: Box::new(handler),
            requests: Mutex::default(),
            errors: Mutex::default(),
            bytes_sent: AtomicU64::new(0),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("test-http-server")
            .enable_all()
            .build()
            .expect("building the test server's runtime");
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone())
            .into_make_service_with_connect_info::<SocketAddr>();
        runtime.spawn(async move {
            let listener =
                tokio::net::TcpListener::from_std(listener).expect("tokio listener from std");
            let _ = axum::serve(listener, app).await;
        });
        TestServer {
            addr,
            shared,
            runtime: Some(runtime),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request received so far, in order of arrival.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().expect("requests lock").clone()
    }

    /// How many requests were received so far.
    pub fn count(&self) -> usize {
        self.shared.requests.lock().expect("requests lock").len()
    }

    /// Body bytes sent so far (they are counted as the connection takes them).
    pub fn bytes_sent(&self) -> u64 {
        self.shared.bytes_sent.load(Ordering::SeqCst)
    }

    /// A summary of what was received, for failure messages.
    pub fn describe(&self) -> String {
        let requests = self.requests();
        let start = requests.first().map(|r| r.at);
        let mut s = format!("--- test server {} ---\n", self.addr);
        for (i, r) in requests.iter().enumerate() {
            let t = start.map(|s| r.at.duration_since(s)).unwrap_or_default();
            s.push_str(&format!(
                "#{i} +{t:?} {} {} headers={:?} body={:?}\n",
                r.method,
                r.target,
                r.headers,
                String::from_utf8_lossy(&r.body)
            ));
        }
        for e in self.shared.errors.lock().expect("errors lock").iter() {
            s.push_str(&format!("unreadable request: {e}\n"));
        }
        s
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: axum::extract::Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(e) => {
            let msg = format!("{} {}: {e}", parts.method, parts.uri);
            shared.errors.lock().expect("errors lock").push(msg);
            return plain(StatusCode::BAD_REQUEST, Body::empty());
        }
    };
    let request = Request {
        method: parts.method.to_string(),
        target: parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (k.as_str().to_string(), v)
            })
            .collect(),
        body: body.to_vec(),
        peer,
        at: Instant::now(),
    };
    let index = {
        let mut requests = shared.requests.lock().expect("requests lock");
        requests.push(request.clone());
        requests.len() - 1
    };
    let handler = shared.clone();
    let answer = tokio::task::spawn_blocking(move || (handler.handler)(index, &request)).await;
    let answer = match answer {
        Ok(answer) => answer,
        // The closure panicked (an assertion in it): answer 500 and let the
        // test see it in `describe`.
        Err(e) => {
            let msg = format!("request #{index}: the handler panicked: {e}");
            shared.errors.lock().expect("errors lock").push(msg);
            return plain(StatusCode::INTERNAL_SERVER_ERROR, Body::empty());
        }
    };
    tokio::time::sleep(answer.delay).await;
    respond(answer, shared)
}

fn plain(status: StatusCode, body: Body) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut()
        .insert("connection", HeaderValue::from_static("close"));
    r
}

fn respond(answer: Answer, shared: Arc<Shared>) -> Response {
    let status = StatusCode::from_u16(answer.status)
        .unwrap_or_else(|_| panic!("not an HTTP status: {}", answer.status));
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let body = Body::new(ChannelBody(rx));
    let mut r = plain(status, body);
    let headers = r.headers_mut();
    let typed = answer
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
    if !typed && !answer.content_type.is_empty() {
        headers.insert(
            "content-type",
            HeaderValue::from_static(answer.content_type),
        );
    }
    for (k, v) in &answer.headers {
        let name = HeaderName::from_bytes(k.as_bytes()).expect("header name");
        headers.append(name, HeaderValue::from_str(v).expect("header value"));
    }
    headers.insert("content-length", HeaderValue::from(answer.body.len()));
    tokio::spawn(send_body(answer, tx, shared));
    r
}

/// Hands the body to the connection in pieces (a byte at a time, after a
/// pause each, when trickling), counting what was taken; stops when the
/// client has gone.
async fn send_body(answer: Answer, tx: tokio::sync::mpsc::Sender<Bytes>, shared: Arc<Shared>) {
    let piece = if answer.trickle.is_some() {
        1
    } else {
        64 * 1024
    };
    let body = Bytes::from(answer.body);
    let mut at = 0;
    while at < body.len() {
        if let Some(pause) = answer.trickle {
            tokio::time::sleep(pause).await;
        }
        let end = (at + piece).min(body.len());
        if tx.send(body.slice(at..end)).await.is_err() {
            return;
        }
        shared
            .bytes_sent
            .fetch_add((end - at) as u64, Ordering::SeqCst);
        at = end;
    }
}

/// A response body fed through a channel.
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|piece| piece.map(|b| Ok(Frame::data(b))))
    }
}
