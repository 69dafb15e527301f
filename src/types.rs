//! Small value types shared across modules: commit hashes, and the one rule
//! for where credentials sit in a URL, so that no `Display` prints them.

use std::fmt;

/// A full 40-hex SHA-1 commit id, as used for worktree directory names.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommitHash(String);

impl CommitHash {
    /// Accepts exactly 40 lowercase or uppercase hex digits (stored lowercase).
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| Self(s.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CommitHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for CommitHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CommitHash({})", self.0)
    }
}

/// A URL that is not a repository (`--askpass-url`, `--webhook-url`) as the
/// user gave it. `Display`/`Debug` redact any password (and a username's
/// token-like value) embedded in it. Repositories are [`crate::git::remote::Remote`]s.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    /// The URL with credentials; only for handing to the HTTP client.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any `user:password@` part replaced by `user:REDACTED@`.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }

    /// For URLs that may carry a token in their query: see [`shown_url`].
    pub fn shown(&self) -> String {
        shown_url(&self.0)
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({})", self.redacted())
    }
}

/// The user-info of a `scheme://userinfo@host...` URL: `text[start..end]`,
/// `end` being the index of its `@`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Userinfo<'a> {
    pub start: usize,
    pub end: usize,
    pub value: &'a str,
    /// The scheme is http or https (any case).
    http: bool,
}

impl Userinfo<'_> {
    /// The user part (before the first `:`), as written (percent-encoded).
    pub fn user(&self) -> &str {
        self.value.split(':').next().unwrap_or("")
    }

    /// A password, or a lone user over http(s) (usually a token); an ssh or
    /// git:// user alone is a login, not a secret.
    pub fn is_secret(&self) -> bool {
        self.value.contains(':') || self.http
    }
}

/// The one rule for where a URL's user-info is, used by every redaction and
/// stripping of credentials: the authority runs from `://` to the first
/// `/`, `?` or `#` (RFC 3986; in free text also whitespace, `)` and quotes),
/// and the user-info is what comes before its last `@` (an unencoded `@`
/// in a password is tolerated, as git does). `sep` is the index of `://`;
/// returns the end of the authority too.
fn userinfo_at(text: &str, sep: usize) -> (usize, Option<Userinfo<'_>>) {
    let start = sep + 3;
    let tail = &text[start..];
    let authority_len = tail
        .find(|c: char| matches!(c, '/' | '?' | '#' | ')' | '"' | '\'') || c.is_whitespace())
        .unwrap_or(tail.len());
    let scheme = text[..sep]
        .rsplit(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
        .next()
        .unwrap_or("");
    let http = scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
    let userinfo = tail[..authority_len].rfind('@').map(|at| Userinfo {
        start,
        end: start + at,
        value: &tail[..at],
        http,
    });
    (start + authority_len, userinfo)
}

/// The user-info of `url` (`None` without `scheme://`, e.g. scp-like).
pub fn url_userinfo(url: &str) -> Option<Userinfo<'_>> {
    userinfo_at(url, url.find("://")?).1
}

/// Redacts the password (or a lone token user over http(s)) of every
/// `scheme://user:password@host/...` URL in `text`, wherever it appears (an
/// error chain can quote the same URL several times). Other text is kept.
pub fn redact_url(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut done = 0;
    let mut from = 0;
    while let Some(found) = text[from..].find("://") {
        let sep = from + found;
        let (authority_end, userinfo) = userinfo_at(text, sep);
        if let Some(userinfo) = userinfo.filter(Userinfo::is_secret) {
            out.push_str(&text[done..userinfo.start]);
            if userinfo.value.contains(':') {
                out.push_str(userinfo.user());
                out.push_str(":REDACTED");
            } else {
                out.push_str("REDACTED");
            }
            done = userinfo.end;
        }
        from = authority_end.max(sep + 3);
    }
    out.push_str(&text[done..]);
    out
}

/// `scheme://host[:port]/path` with credentials redacted and no query or
/// fragment, which often carry a token (`?token=`): how URLs that are not
/// repositories (`--askpass-url`, `--webhook-url`) appear in logs and errors.
pub fn shown_url(url: &str) -> String {
    let redacted = redact_url(url);
    match redacted.find(['?', '#']) {
        Some(end) => redacted[..end].to_string(),
        None => redacted,
    }
}

/// Whether `url` names this machine (`localhost`, 127.0.0.0/8, `::1`):
/// Go's HTTP client (git-sync's, for its webhook and askpass URL) never
/// sends such a request through a proxy from the environment.
pub fn is_loopback_url(url: &str) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    let Some(host) = parsed.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// `error: cause: cause`, like anyhow's `{:#}`: a TLS or DNS failure often
/// sits several levels down the chain, and the top message alone says little.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

/// What to do with a symlink in a commit that is absolute or resolves
/// outside the worktree (`--escaping-symlinks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SymlinkPolicy {
    /// Refuse to publish the commit (the default: fail closed).
    #[default]
    Refuse,
    /// Publish the commit without those symlinks.
    Skip,
    /// Write them as git does (git-sync's behaviour).
    Allow,
}

impl SymlinkPolicy {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw.to_ascii_lowercase().as_str() {
            "refuse" => Some(Self::Refuse),
            "skip" => Some(Self::Skip),
            "allow" => Some(Self::Allow),
            _ => None,
        }
    }
}

/// `--git-gc`: git-sync's garbage-collection modes, mapped onto our own
/// object-store compaction (there is no `git gc` in-process).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GcMode {
    /// Compact when the packs have grown (git-sync's `auto`).
    Auto,
    /// git-sync's default; the same as `Auto` here: compacting on growth
    /// bounds the disk as running `git gc` after every sync does, far cheaper.
    #[default]
    Always,
    /// Compact after every fetch that added a pack: the smallest store, the most CPU.
    Aggressive,
    /// Never compact, except after a `--depth` change (needed to prune the
    /// shallow boundary correctly).
    Off,
}

impl GcMode {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "auto" => Some(Self::Auto),
            "always" => Some(Self::Always),
            "aggressive" => Some(Self::Aggressive),
            "off" => Some(Self::Off),
            _ => None,
        }
    }
}

/// Which submodules are checked out (`--submodules`, git-sync's values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubmoduleMode {
    /// Submodules and their submodules, at any depth (git-sync's default).
    #[default]
    Recursive,
    /// Only the superproject's own submodules, not nested ones (not a history depth).
    Shallow,
    /// None: a submodule's directory stays empty.
    Off,
}

impl SubmoduleMode {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "recursive" => Some(Self::Recursive),
            "shallow" => Some(Self::Shallow),
            "off" => Some(Self::Off),
            _ => None,
        }
    }

    /// How many levels of submodules are checked out below the superproject.
    pub fn levels(self) -> usize {
        match self {
            Self::Recursive => usize::MAX,
            Self::Shallow => 1,
            Self::Off => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_are_told_apart() {
        for url in [
            "http://localhost:8080/x",
            "http://127.0.0.2/x",
            "http://[::1]:9/x",
            "https://LOCALHOST/",
        ] {
            assert!(is_loopback_url(url), "{url}");
        }
        for url in [
            "http://example.com/",
            "http://10.0.0.1/",
            "http://localhost.example/",
            "nonsense",
        ] {
            assert!(!is_loopback_url(url), "{url}");
        }
    }

    #[test]
    fn error_chain_joins_causes_without_repeats() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(error_chain(&e), "outer: inner");
        assert_eq!(error_chain(&std::io::Error::other("alone")), "alone");
    }

    #[test]
    fn shown_url_has_no_credentials_query_or_fragment() {
        assert_eq!(
            shown_url("http://u:pw@127.0.0.1:8200/creds?token=t0k#frag"),
            "http://u:REDACTED@127.0.0.1:8200/creds"
        );
        assert_eq!(shown_url("http://127.0.0.1/a#t0k?x"), "http://127.0.0.1/a");
        assert_eq!(shown_url("http://127.0.0.1/a"), "http://127.0.0.1/a");
        assert_eq!(
            SecretUrl::new("https://h/x?token=t0k").shown(),
            "https://h/x"
        );
    }

    #[test]
    fn commit_hash_requires_40_hex() {
        assert!(CommitHash::parse(&"a".repeat(40)).is_some());
        assert!(CommitHash::parse(&"a".repeat(39)).is_none());
        assert!(CommitHash::parse(&"g".repeat(40)).is_none());
        assert_eq!(
            CommitHash::parse(&"A".repeat(40)).map(|h| h.to_string()),
            Some("a".repeat(40))
        );
    }

    #[test]
    fn redacts_password_but_keeps_host_and_path() {
        assert_eq!(
            redact_url("https://bob:s3cret@example.com/r.git"),
            "https://bob:REDACTED@example.com/r.git"
        );
        assert_eq!(
            redact_url("https://tok3n@example.com/r.git"),
            "https://REDACTED@example.com/r.git"
        );
        assert_eq!(
            redact_url("ssh://git@example.com/r.git"),
            "ssh://git@example.com/r.git"
        );
        assert_eq!(redact_url("file:///tmp/r"), "file:///tmp/r");
        assert_eq!(redact_url("git@example.com:r.git"), "git@example.com:r.git");
        assert!(!format!("{}", SecretUrl::new("http://a:b@h/p")).contains(":b@"));
        // Any case of the scheme; an @ in the path or query is no user-info.
        assert_eq!(redact_url("HTTPS://tok@h/r"), "HTTPS://REDACTED@h/r");
        assert_eq!(redact_url("https://h/r@v1?x=a@b"), "https://h/r@v1?x=a@b");
        assert_eq!(redact_url("https://h?x=a@b"), "https://h?x=a@b");
        assert_eq!(
            redact_url("https://a@b:c@[::1]:80/r"),
            "https://a@b:REDACTED@[::1]:80/r"
        );
    }
}
