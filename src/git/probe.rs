//! Why an http(s) server did not answer like a git server. gix only says
//! "Didn't find 'application/x-git-upload-pack-advertisement' header"; the
//! usual causes are a redirect (to a login page when the credentials were
//! refused, or to another site when `--repo` is a web page's URL) and an
//! HTML page. Only then, this asks the server once more, the same way
//! (credentials, proxy, TLS, headers) but without following redirects, and
//! puts what it answered into words. Locations are shown without user
//! info, query or fragment (they may hold tokens).

use std::time::Duration;

use super::transport::Budget;
use super::{Credentials, HttpSettings};

/// The probe never takes longer than this (or what is left of the budget).
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// True when gix's error means "the answer was not a git advertisement".
pub fn is_not_git_answer(message: &str) -> bool {
    message.contains("application/x-git-upload-pack-advertisement")
}

/// What the server answers to `GET <url>/info/refs?service=git-upload-pack`
/// instead of an advertisement, in words; `None` when the probe fails or
/// shows nothing wrong.
pub fn explain(
    url: &gix::Url,
    credentials: Option<&Credentials>,
    http: &HttpSettings,
    budget: &Budget,
) -> Option<String> {
    let configure = http.client_configurator().ok()?;
    let timeout = budget.remaining().min(PROBE_TIMEOUT);
    if timeout.is_zero() {
        return None;
    }
    let client = configure(
        reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout),
    )
    .build()
    .ok()?;
    let base = url.to_bstring().to_string();
    let target = reqwest::Url::parse(&format!(
        "{}/info/refs?service=git-upload-pack",
        base.trim_end_matches('/')
    ))
    .ok()?;
    let cookies = http
        .cookie_file
        .as_deref()
        .and_then(|path| super::cookies::Jar::read(path).ok())
        .and_then(|jar| jar.header_for(&target));
    let mut request = client.get(target).header("Git-Protocol", "version=2");
    if let Some(cookies) = cookies {
        request = request.header(reqwest::header::COOKIE, cookies);
    }
    for line in &http.extra_headers {
        if let Some((name, value)) = line.split_once(':') {
            request = request.header(name.trim(), value.trim());
        }
    }
    if let Some(c) = credentials {
        request = request.basic_auth(&c.username, Some(&c.password));
    }
    let response = request.send().ok()?;
    let status = response.status();
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let sent = credentials.is_some() || http.sends_authorization();
    if status.is_redirection() {
        let location = header(reqwest::header::LOCATION)?;
        let target = response
            .url()
            .join(&location)
            .map(|u| without_secrets(&u))
            .unwrap_or_else(|_| "an unreadable location".into());
        let downgrade = base.starts_with("https://") && target.starts_with("http://");
        if downgrade {
            return Some(downgrade_message(status.as_u16(), &target));
        }
        return Some(redirect_message(status.as_u16(), &target, sent));
    }
    let content_type = header(reqwest::header::CONTENT_TYPE).unwrap_or_default();
    if !status.is_success() || content_type.starts_with("application/x-git-") {
        return None;
    }
    let mut start = Vec::new();
    let _ = std::io::Read::read_to_end(
        &mut std::io::Read::take(response, DUMB_PROBE_BYTES),
        &mut start,
    );
    if is_dumb_refs_file(&start) {
        return Some(DUMB_HTTP.to_string());
    }
    Some(format!(
        "the server answered with a {} page instead of a git advertisement: --repo \
         is probably a web page's URL, not the repository's clone URL",
        if content_type.is_empty() {
            "content-type-less"
        } else {
            content_type.split(';').next().unwrap_or_default()
        }
    ))
}

/// Bytes of a non-git answer read to tell a dumb server's `info/refs`.
const DUMB_PROBE_BYTES: u64 = 4096;

const DUMB_HTTP: &str = "the server offers the repository as static files (git's \"dumb\" \
     HTTP protocol: `info/refs` as a plain file), which git-sidecar does not support; serve \
     it with `git http-backend` (smart HTTP, what forges speak), `git daemon` or SSH";

/// Whether `start` opens like the `info/refs` file `git update-server-info`
/// writes, which a static web server hands out as is: `<40-hex>\t<ref>`
/// lines (an empty repository's is empty, which says nothing).
fn is_dumb_refs_file(start: &[u8]) -> bool {
    let Some(line) = start.split(|&b| b == b'\n').next() else {
        return false;
    };
    match line.split_at_checked(40) {
        Some((id, rest)) => {
            id.iter().all(u8::is_ascii_hexdigit)
                && rest.starts_with(b"\t")
                && (rest[1..].starts_with(b"refs/") || rest[1..].starts_with(b"HEAD"))
        }
        None => false,
    }
}

fn redirect_message(status: u16, target: &str, credentials_sent: bool) -> String {
    let when = if credentials_sent {
        " when sent the credentials"
    } else {
        ""
    };
    format!(
        "the server redirected{when} (HTTP {status}) to {target} instead of answering as a git \
         server: the URL or the credentials are probably wrong (a redirect to a login page \
         usually means the credentials were refused); check --repo (the clone URL) and the \
         credentials"
    )
}

/// git follows a redirect from https to http with a warning; we do not:
/// what the server says after it could be anyone's.
fn downgrade_message(status: u16, target: &str) -> String {
    format!(
        "the server redirected (HTTP {status}) from https to {target}: git-sidecar does not \
         follow a redirect from https to plain http (anyone on the way could answer it); if \
         that is really where the repository is, put that URL in --repo"
    )
}

/// `scheme://host[:port]/path`: no user info, query or fragment.
fn without_secrets(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_lose_user_info_query_and_fragment() {
        let url = reqwest::Url::parse("https://u:secret@login.example.com:8443/sso?token=abc#x")
            .expect("url");
        assert_eq!(without_secrets(&url), "https://login.example.com:8443/sso");
    }

    #[test]
    fn a_dumb_servers_refs_file_is_told_from_a_web_page() {
        let id = "0123456789abcdef0123456789abcdef01234567";
        assert!(is_dumb_refs_file(
            format!("{id}\trefs/heads/main\n{id}\trefs/tags/v1\n").as_bytes()
        ));
        assert!(!is_dumb_refs_file(b"<!DOCTYPE html><html>"));
        assert!(!is_dumb_refs_file(b""));
        assert!(!is_dumb_refs_file(
            format!("{id} refs/heads/main\n").as_bytes()
        ));
        assert!(DUMB_HTTP.contains("not support") && DUMB_HTTP.contains("http-backend"));
    }

    #[test]
    fn the_redirect_message_says_where_and_what_to_check() {
        let m = redirect_message(302, "https://login.example.com/sso", true);
        assert!(m.contains("redirected when sent the credentials (HTTP 302)"));
        assert!(m.contains("to https://login.example.com/sso"));
        assert!(m.contains("check --repo"));
        assert!(is_not_git_answer(
            "Didn't find 'application/x-git-upload-pack-advertisement' header"
        ));
    }
}
