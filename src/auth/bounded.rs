//! HTTP requests of the credential sources (askpass, GitHub App token) that
//! end by a deadline. reqwest's blocking timeout bounds the wait for the
//! headers, but on the body it bounds each read only: a server trickling a
//! byte per read could hold a sync for hours. So the body is read in chunks
//! on a helper thread and waited for until the deadline only; the helper
//! stops after at most one more read (each bounded by the client timeout).

use std::io::Read;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};

use super::HttpSettings;

/// Shortest client timeout, so that an exhausted budget still makes a request
/// that fails at once rather than one without a timeout.
const MIN_TIMEOUT: Duration = Duration::from_millis(10);
const CHUNK: usize = 8 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the answer is larger than {0} bytes")]
    TooLarge(u64),
    #[error("reading the answer timed out")]
    TimedOut,
    #[error("reading the answer: {0}")]
    Read(String),
}

/// A client for `url` with `http`'s proxy and TLS settings, no redirects,
/// and `timeout` for connecting, the headers and each read. A URL of this
/// machine goes through no proxy, as Go's client (git-sync's) has it.
pub fn client(http: &HttpSettings, timeout: Duration, url: &str) -> Result<Client, String> {
    let configure = http.client_configurator().map_err(|e| e.to_string())?;
    let mut builder = configure(Client::builder());
    if crate::types::is_loopback_url(url) {
        builder = builder.no_proxy();
    }
    builder
        .timeout(timeout.max(MIN_TIMEOUT))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| crate::types::error_chain(&e.without_url()))
}

/// The body of `response`, at most `limit` bytes, all read by `deadline`.
pub fn read_body(response: Response, deadline: Instant, limit: u64) -> Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|len| len > limit) {
        return Err(BodyError::TooLarge(limit));
    }
    let (chunks, received) = mpsc::channel();
    std::thread::Builder::new()
        .name("body".into())
        .spawn(move || read_chunks(response, &chunks))
        .map_err(|e| BodyError::Read(format!("could not start a thread: {e}")))?;
    let mut body = Vec::new();
    loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        match received.recv_timeout(wait) {
            Ok(Ok(chunk)) if chunk.is_empty() => return Ok(body),
            Ok(Ok(chunk)) => body.extend_from_slice(&chunk),
            Ok(Err(e)) => return Err(BodyError::Read(e)),
            Err(RecvTimeoutError::Timeout) => return Err(BodyError::TimedOut),
            Err(RecvTimeoutError::Disconnected) => {
                return Err(BodyError::Read("the reader stopped".into()))
            }
        }
        if body.len() as u64 > limit {
            return Err(BodyError::TooLarge(limit));
        }
    }
}

/// Sends chunks until the end (an empty chunk), an error, or until nobody
/// listens any more (the deadline passed).
fn read_chunks(mut response: Response, chunks: &mpsc::Sender<Result<Vec<u8>, String>>) {
    let mut buf = vec![0; CHUNK];
    loop {
        let chunk = response
            .read(&mut buf)
            .map(|n| buf[..n].to_vec())
            .map_err(|e| e.to_string());
        let last = !matches!(&chunk, Ok(c) if !c.is_empty());
        if chunks.send(chunk).is_err() || last {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    /// Serves one answer without `Content-Length` (ended by closing), the
    /// body written in `pieces` with `pause` before each.
    fn serve(pieces: Vec<Vec<u8>>, pause: Duration) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept");
            let mut request = [0; 1024];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
            for piece in pieces {
                std::thread::sleep(pause);
                if stream.write_all(&piece).is_err() {
                    return;
                }
            }
        });
        format!("http://{addr}/")
    }

    fn get(url: &str, within: Duration, limit: u64) -> Result<Vec<u8>, BodyError> {
        let deadline = Instant::now() + within;
        let client = client(&HttpSettings::default(), within, url).expect("client");
        let response = client.get(url).send().expect("headers");
        read_body(response, deadline, limit)
    }

    #[test]
    fn a_body_without_length_is_cut_at_the_limit() {
        let url = serve(vec![vec![b'x'; 700], vec![b'x'; 700]], Duration::ZERO);
        let got = get(&url, Duration::from_secs(5), 1000);
        assert!(matches!(got, Err(BodyError::TooLarge(1000))), "{got:?}");
        let url = serve(vec![b"password=a\n".to_vec()], Duration::ZERO);
        let got = get(&url, Duration::from_secs(5), 1000).expect("body");
        assert_eq!(got, b"password=a\n");
    }

    #[test]
    fn a_trickling_body_ends_at_the_deadline() {
        let pieces = (0..50).map(|_| b"x".to_vec()).collect();
        let url = serve(pieces, Duration::from_millis(100));
        let started = Instant::now();
        let got = get(&url, Duration::from_millis(500), 1000);
        assert!(matches!(got, Err(BodyError::TimedOut)), "{got:?}");
        // 50 pieces at 100 ms would take 5 s to read to the end.
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}
