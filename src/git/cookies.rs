//! `http.cookieFile` (and `--cookie-file`, git-sync's switch for the file at
//! `/etc/git-secret/cookie_file`): cookies in the Netscape format that git
//! hands to curl, sent with each http(s) request whose URL they match, as
//! curl does. gix's reqwest backend has no cookie support, so the transport
//! adds a `Cookie` header per request (see [`Jar::header_for`]). The file is
//! read again at each connection, so a rotated secret is picked up.
//!
//! Format, one cookie per line, tab-separated: domain, include-subdomains
//! (`TRUE`/`FALSE`), path, secure (`TRUE`/`FALSE`), expiry (Unix seconds;
//! 0 = a session cookie, which curl also sends), name, value. Lines starting
//! with `#HttpOnly_` are cookies (the prefix marks the flag); other `#` lines
//! and blank lines are comments. Malformed lines are skipped, as curl does.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
#[error("cannot read the cookie file {path:?} (http.cookieFile / --cookie-file): {source}")]
pub struct Error {
    path: PathBuf,
    source: std::io::Error,
}

/// One cookie from the file. Never logged (the value is a secret).
#[derive(Clone, PartialEq, Eq)]
struct Cookie {
    /// Lower case, without a leading dot.
    domain: String,
    include_subdomains: bool,
    path: String,
    secure: bool,
    /// Unix seconds; 0 = no expiry.
    expires: u64,
    name: String,
    value: String,
}

/// The cookies of one file.
#[derive(Clone, Default)]
pub struct Jar {
    cookies: Vec<Cookie>,
}

impl std::fmt::Debug for Jar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Jar({} cookies)", self.cookies.len())
    }
}

impl Jar {
    /// Reads and parses the file; only an unreadable file is an error.
    pub fn read(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read(path).map_err(|source| Error {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self::parse(&String::from_utf8_lossy(&text)))
    }

    fn parse(text: &str) -> Self {
        let cookies = text.lines().filter_map(parse_line).collect();
        Self { cookies }
    }

    /// The `Cookie` header value for a request to `url` now, if any cookie matches.
    pub fn header_for(&self, url: &reqwest::Url) -> Option<String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.header_at(url, now)
    }

    fn header_at(&self, url: &reqwest::Url, now: u64) -> Option<String> {
        let host = url.host_str()?.to_ascii_lowercase();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let https = url.scheme() == "https";
        let mut matching: Vec<&Cookie> = self
            .cookies
            .iter()
            .filter(|c| c.expires == 0 || c.expires > now)
            .filter(|c| https || !c.secure)
            .filter(|c| domain_matches(c, host))
            .filter(|c| path_matches(&c.path, url.path()))
            .collect();
        if matching.is_empty() {
            return None;
        }
        // As curl: longer (more specific) paths first.
        matching.sort_by_key(|c| std::cmp::Reverse(c.path.len()));
        let pairs: Vec<String> = matching
            .iter()
            .map(|c| format!("{}={}", c.name, c.value))
            .collect();
        Some(pairs.join("; "))
    }
}

fn parse_line(line: &str) -> Option<Cookie> {
    let line = line.trim_end_matches('\r');
    let line = match line.strip_prefix("#HttpOnly_") {
        Some(rest) => rest,
        None if line.starts_with('#') => return None,
        None => line,
    };
    let fields: Vec<&str> = line.split('\t').collect();
    // curl accepts a missing value (6 fields).
    if fields.len() != 7 && fields.len() != 6 {
        return None;
    }
    let flag = |s: &str| s.eq_ignore_ascii_case("TRUE");
    let name = fields[5].to_string();
    let value = fields.get(6).copied().unwrap_or_default().to_string();
    let safe = |s: &str| !s.bytes().any(|b| b.is_ascii_control() || b == b';');
    if name.is_empty() || !safe(&name) || !safe(&value) {
        return None;
    }
    let path = if fields[2].starts_with('/') {
        fields[2].to_string()
    } else {
        "/".to_string()
    };
    Some(Cookie {
        domain: fields[0].trim_start_matches('.').to_ascii_lowercase(),
        include_subdomains: flag(fields[1]),
        path,
        secure: flag(fields[3]),
        expires: fields[4].trim().parse().ok()?,
        name,
        value,
    })
}

fn domain_matches(cookie: &Cookie, host: &str) -> bool {
    if cookie.domain.is_empty() {
        return false;
    }
    host == cookie.domain
        || (cookie.include_subdomains
            && host
                .strip_suffix(cookie.domain.as_str())
                .is_some_and(|head| head.ends_with('.')))
}

/// RFC 6265 §5.1.4 path-match.
fn path_matches(cookie_path: &str, request_path: &str) -> bool {
    request_path == cookie_path
        || (request_path.starts_with(cookie_path)
            && (cookie_path.ends_with('/')
                || request_path.as_bytes().get(cookie_path.len()) == Some(&b'/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# Netscape HTTP Cookie File\n\
        git.example.com\tFALSE\t/\tFALSE\t0\tsession\ts1\n\
        .example.com\tTRUE\t/repo.git\tFALSE\t4000000000\tscoped\ts2\n\
        #HttpOnly_git.example.com\tFALSE\t/\tTRUE\t0\tsecure\ts3\n\
        git.example.com\tFALSE\t/\tFALSE\t1000\texpired\tgone\n\
        other.org\tFALSE\t/\tFALSE\t0\tother\tx\n\
        broken line\n";

    fn header(url: &str) -> Option<String> {
        let url = reqwest::Url::parse(url).expect("url");
        Jar::parse(FILE).header_at(&url, 2_000_000_000)
    }

    #[test]
    fn domain_path_secure_and_expiry_select_cookies() {
        assert_eq!(
            header("https://git.example.com/repo.git/info/refs").as_deref(),
            Some("scoped=s2; session=s1; secure=s3")
        );
        assert_eq!(
            header("http://git.example.com/repo.git").as_deref(),
            Some("scoped=s2; session=s1")
        );
        assert_eq!(
            header("http://git.example.com/repo.gitx/a").as_deref(),
            Some("session=s1")
        );
        assert_eq!(
            header("http://deep.git.example.com/repo.git/x").as_deref(),
            Some("scoped=s2")
        );
        assert_eq!(header("http://notexample.com/repo.git/x"), None);
        assert_eq!(header("http://127.0.0.1/"), None);
    }

    #[test]
    fn an_unreadable_file_names_it_and_debug_hides_values() {
        let e = Jar::read(Path::new("/no/such/cookies"))
            .expect_err("missing file")
            .to_string();
        assert!(e.contains("/no/such/cookies"), "{e}");
        let dbg = format!("{:?}", Jar::parse(FILE));
        assert!(!dbg.contains("s1"), "{dbg}");
    }
}
