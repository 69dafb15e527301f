//! `--askpass-url`: before each sync, GET the URL (redirects not followed,
//! proxy and CA settings of `--git-config` applied) and have the whole
//! answer within [`TIMEOUT`] or what is left of the sync budget; any status
//! but 200 fails the sync. The body is `key=value` lines; `username` and
//! `password` are used (other keys ignored), `password` must be there.
//! git-sync waits 1 s; a cluster-local secret broker can take longer under
//! load, and the sync budget still bounds the whole sync. Errors show the
//! URL without credentials, query or fragment (tokens travel in `?token=`).

use std::time::{Duration, Instant};

use super::bounded::{self, BodyError};
use super::{Credentials, HttpSettings};

/// Longest wait for the askpass answer.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// A bigger answer is not a credential.
const MAX_BODY: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("askpass URL {url}: {message}")]
    Request { url: String, message: String },
    #[error("askpass URL {url} answered {status}, not 200")]
    Status { url: String, status: u16 },
    #[error("askpass URL {url} answered without a password= line")]
    NoPassword { url: String },
}

/// Asks `url` for credentials; the whole answer must arrive within `timeout`.
pub fn ask(url: &str, http: &HttpSettings, timeout: Duration) -> Result<Credentials, Error> {
    let deadline = Instant::now() + timeout;
    let shown = crate::types::shown_url(url);
    let fail = |message: String| Error::Request {
        url: shown.clone(),
        message,
    };
    let client = bounded::client(http, timeout, url).map_err(fail)?;
    let response = client
        .get(url)
        .send()
        .map_err(|e| fail(crate::types::error_chain(&e.without_url())))?;
    if response.status() != reqwest::StatusCode::OK {
        return Err(Error::Status {
            url: shown,
            status: response.status().as_u16(),
        });
    }
    let body = bounded::read_body(response, deadline, MAX_BODY)
        .map_err(|e: BodyError| fail(e.to_string()))?;
    parse(&String::from_utf8_lossy(&body)).ok_or(Error::NoPassword { url: shown })
}

/// `username=` and `password=` lines; `None` without a password.
fn parse(body: &str) -> Option<Credentials> {
    let mut username = String::new();
    let mut password = None;
    for line in body.lines().map(|l| l.trim_end_matches('\r')) {
        match line.split_once('=') {
            Some(("username", v)) => username = v.to_string(),
            Some(("password", v)) => password = Some(v.to_string()),
            _ => {}
        }
    }
    Some(Credentials {
        username,
        password: password?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_username_and_password_lines() {
        let c = parse("username=bot\r\npassword=p=w\nother=x\n").expect("credentials");
        assert_eq!((c.username.as_str(), c.password.as_str()), ("bot", "p=w"));
        let c = parse("password=only").expect("credentials");
        assert_eq!(c.username, "");
        assert!(parse("username=bot\n").is_none());
        assert!(parse("").is_none());
    }
}
