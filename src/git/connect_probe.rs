//! What an http proxy answers to the `CONNECT` an https:// request failed
//! on. reqwest only says that the tunnel was "unsuccessful" (or that the
//! proxy wants authorization) and keeps the proxy's status to itself, yet
//! the status is what tells a refusal by the proxy's rules (squid's default
//! configuration: 403 to any port but 443) from a git server the proxy could
//! not reach (502/503/504, tinyproxy's 500). [`ask`] sends the same
//! `CONNECT` once more and reads the status line; the tunnel, if the proxy
//! opens it this time, is closed unused. Nothing but the proxy's own
//! credentials goes out, to the proxy the request went to.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use super::http_settings::HttpProxy;

/// The question and its answer never take longer than this (or what the
/// caller allows).
pub const CONNECT_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The proxy's answer: its status code and reason phrase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub code: u16,
    pub reason: String,
}

/// Asks `proxy` for a tunnel to `host:port` (an IPv6 literal without
/// brackets) and returns its status line; `None` if it cannot be reached
/// or answers something that is not HTTP within `timeout`.
pub fn ask(proxy: &HttpProxy, host: &str, port: u16, timeout: Duration) -> Option<Answer> {
    let deadline = Instant::now() + timeout;
    let left = || deadline.saturating_duration_since(Instant::now());
    let mut socket = super::transport::connect_tcp(&proxy.host, proxy.port, left).ok()?;
    socket.set_write_timeout(Some(left())).ok()?;
    socket
        .write_all(request(proxy, host, port).as_bytes())
        .ok()?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.contains(&b'\n') && head.len() < 4096 {
        let left = left();
        if left.is_zero() {
            return None;
        }
        socket.set_read_timeout(Some(left)).ok()?;
        match socket.read(&mut buf).ok()? {
            0 => break,
            n => head.extend_from_slice(&buf[..n]),
        }
    }
    status_line(&head)
}

/// `host:port` as a `CONNECT` names it (an IPv6 literal in brackets).
pub fn authority(host: &str, port: u16) -> String {
    match host.contains(':') {
        true => format!("[{host}]:{port}"),
        false => format!("{host}:{port}"),
    }
}

fn request(proxy: &HttpProxy, host: &str, port: u16) -> String {
    let target = authority(host, port);
    let authorization = proxy
        .authorization
        .as_deref()
        .map(|a| format!("Proxy-Authorization: {a}\r\n"))
        .unwrap_or_default();
    format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{authorization}\r\n")
}

/// `HTTP/1.x CODE REASON` from the first line of `head`.
fn status_line(head: &[u8]) -> Option<Answer> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = String::from_utf8_lossy(line);
    let mut words = line.trim_end().splitn(3, ' ');
    if !words.next()?.starts_with("HTTP/") {
        return None;
    }
    let code = words
        .next()?
        .parse()
        .ok()
        .filter(|c| (100..600).contains(c))?;
    let reason = words.next().unwrap_or("").chars().take(80).collect();
    Some(Answer { code, reason })
}

/// What the proxy's refusal of the tunnel to `target` (`host:port`) means,
/// for the error; `None` when it opened the tunnel this time (a 2xx).
pub fn meaning(answer: &Answer, target: &str) -> Option<String> {
    let Answer { code, reason } = answer;
    let answered = format!(
        "asked again, the proxy answered CONNECT {target} with {code} {}",
        reason.trim()
    );
    let answered = answered.trim_end();
    let no_proxy = "NO_PROXY lists the hosts that bypass the proxy";
    Some(match code {
        200..=299 => return None,
        403 => format!(
            "{answered}: its rules refuse a tunnel there (squid's default configuration allows \
             CONNECT to port 443 only): allow it in the proxy's configuration, or use another \
             proxy; {no_proxy}"
        ),
        401 | 407 => format!(
            "{answered}: it wants a user and password, and did not accept what was sent (put \
             them in the proxy's URL, as user:password@ before its host, percent-encoded; \
             {no_proxy})"
        ),
        500 | 502..=504 => format!(
            "{answered}: the proxy may have failed to reach the git server (check that the git \
             server is up, and that the proxy can reach it and is allowed to; {no_proxy})"
        ),
        _ => format!("{answered} (the proxy refused the tunnel; {no_proxy})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_is_read_and_anything_else_is_not_an_answer() {
        let answer = |head: &[u8]| status_line(head);
        assert_eq!(
            answer(b"HTTP/1.1 403 Forbidden\r\nServer: squid\r\n"),
            Some(Answer {
                code: 403,
                reason: "Forbidden".into()
            })
        );
        assert_eq!(
            answer(b"HTTP/1.0 500 Unable to connect\r\n"),
            Some(Answer {
                code: 500,
                reason: "Unable to connect".into()
            })
        );
        assert_eq!(answer(b"HTTP/1.1 407\r\n").map(|a| a.code), Some(407));
        assert_eq!(answer(b"SSH-2.0-OpenSSH_9.2\r\n"), None);
        assert_eq!(answer(b"HTTP/1.1 abc Nope\r\n"), None);
        assert_eq!(answer(b""), None);
    }

    #[test]
    fn the_request_brackets_an_ipv6_target_and_carries_the_proxys_credentials() {
        let proxy = HttpProxy {
            host: "::1".into(),
            port: 3128,
            authorization: Some("Basic dTpw".into()),
        };
        assert_eq!(
            request(&proxy, "::1", 8443),
            "CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\nProxy-Authorization: Basic dTpw\r\n\r\n"
        );
    }

    #[test]
    fn an_opened_tunnel_means_nothing_and_a_refusal_says_whose_rules() {
        let said = |code, reason: &str| {
            meaning(
                &Answer {
                    code,
                    reason: reason.into(),
                },
                "git.example:8443",
            )
        };
        assert_eq!(said(200, "Connection established"), None);
        let refused = said(403, "Forbidden").expect("a refusal");
        assert!(
            refused.starts_with(
                "asked again, the proxy answered CONNECT git.example:8443 with 403 Forbidden: \
                 its rules refuse a tunnel there"
            ),
            "{refused}"
        );
        assert!(said(503, "Service Unavailable")
            .expect("a refusal")
            .contains("failed to reach the git server"));
        assert!(said(407, "")
            .expect("a refusal")
            .contains("with 407: it wants a user and password"));
    }
}
