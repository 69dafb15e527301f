//! The receiver of the outgoing webhook (`--webhook-url`): the shared
//! [`TestServer`] answering from a script, per request a status and an
//! optional delay before answering, e.g. "500 twice, then 200" or "the
//! first answer takes 3 s". Each request is recorded (method, path,
//! headers, body, arrival time) as soon as it has been read.

use std::net::SocketAddr;
use std::time::Duration;

use super::http_server::{Answer, TestServer};

/// A request as the receiver got it.
pub type Received = super::http_server::Request;

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

/// The receiver; stops when dropped.
pub struct Receiver {
    server: TestServer,
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
        let server = TestServer::start(move |i, _| {
            let reply = script.get(i).copied().unwrap_or(then);
            Answer::new(reply.status, format!("receiver says {}\n", reply.status))
                .content_type("text/plain")
                .delayed(reply.delay)
        });
        Receiver { server }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:PORT<path>`.
    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    /// Every request received so far, in order of arrival.
    pub fn requests(&self) -> Vec<Received> {
        self.server.requests()
    }

    /// How many requests were received so far.
    pub fn count(&self) -> usize {
        self.server.count()
    }

    /// A summary of what was received, for failure messages.
    pub fn describe(&self) -> String {
        self.server.describe()
    }
}
