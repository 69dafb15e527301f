//! A remote repository URL (`--repo`, a `--credential` url, a submodule's
//! url), parsed once: scheme, host, port, user, path and the credentials it
//! carries, and how it may be shown. `Display` and `Debug` never print a
//! secret. Where the user-info of a URL starts and ends, and which user-info
//! is a secret, is decided by [`crate::types::url_userinfo`], the one rule
//! the free-text redaction ([`crate::types::redact_url`]) uses too.

use std::fmt;

use crate::types::{redact_url, url_userinfo, Userinfo};

/// A URL gix could not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(String);

/// A parsed remote. Equal when gix's parses are equal (the raw text may
/// differ, as `https://h/r` and `https://h:443/r` do not).
#[derive(Clone)]
pub struct Remote {
    raw: String,
    url: gix::Url,
}

impl Remote {
    /// Parses a URL, an scp-like `user@host:path` or a local path.
    /// gix's error quotes the input: its credentials are redacted.
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let url = super::parse_url(raw).map_err(|e| ParseError(redact_url(&e)))?;
        Ok(Self {
            raw: raw.to_string(),
            url,
        })
    }

    /// The parsed URL, for the transport (only inside `git/`).
    pub(crate) fn gix(&self) -> &gix::Url {
        &self.url
    }

    /// The URL as given, credentials included: only for the transport and
    /// for tests.
    pub fn expose(&self) -> &str {
        &self.raw
    }

    /// `https`, `ssh` (also for scp-like), `file`, ...
    pub fn scheme(&self) -> &str {
        self.url.scheme.as_str()
    }

    pub fn is_http(&self) -> bool {
        matches!(self.scheme(), "http" | "https")
    }

    /// The host as a resolver or `ssh` takes it: an IPv6 literal without its
    /// brackets (`git://[::1]:9418/r` connects to `::1`).
    pub fn host(&self) -> Option<&str> {
        super::url_host(&self.url)
    }

    /// The port, or the scheme's default one.
    pub fn port(&self) -> Option<u16> {
        self.url.port_or_default()
    }

    /// The user (percent-decoded), for scp-like URLs too.
    pub fn user(&self) -> Option<&str> {
        self.url.user()
    }

    /// The password (percent-decoded).
    pub fn password(&self) -> Option<&str> {
        self.url.password()
    }

    /// The path (lossily decoded as UTF-8).
    pub fn path(&self) -> String {
        String::from_utf8_lossy(self.url.path.as_slice()).into_owned()
    }

    /// `user` and `password` (decoded) of a `scheme://user:password@host/...`
    /// URL; `None` without a user-info part, and for scp-like `user@host:path`
    /// (whose user is a login, not a credential).
    pub fn credentials(&self) -> Option<(String, Option<String>)> {
        if !self.raw.contains("://") {
            return None;
        }
        match (self.user(), self.password()) {
            (None, None) => None,
            (user, password) => Some((
                user.unwrap_or_default().to_string(),
                password.map(str::to_string),
            )),
        }
    }

    /// The same remote with no user-info at all (once the credentials have
    /// been taken out of it).
    pub fn without_userinfo(&self) -> Self {
        let mut url = self.url.clone();
        if self.raw.contains("://") {
            url.set_user(None);
            url.set_password(None);
        }
        Self {
            raw: strip_userinfo(&self.raw, |_| true),
            url,
        }
    }

    /// The URL without a secret user-info (a password, or a lone user over
    /// http(s), usually a token); an ssh or git:// user is kept. For
    /// `remote.origin.url`, which other programs read.
    pub fn without_credentials(&self) -> String {
        strip_userinfo(&self.raw, |userinfo| userinfo.is_secret())
    }

    /// The URL with a secret user-info replaced by `REDACTED`.
    pub fn redacted(&self) -> String {
        redact_url(&self.raw)
    }

    /// The same scheme, host, port and user with the path `/`: a URL that
    /// every repository on the server matches.
    pub fn origin(&self) -> Self {
        let mut url = self.url.clone();
        url.path = "/".into();
        Self {
            raw: self.raw.clone(),
            url,
        }
    }
}

/// `raw` without its user-info when `strip` says so.
fn strip_userinfo(raw: &str, strip: impl Fn(&Userinfo<'_>) -> bool) -> String {
    match url_userinfo(raw) {
        Some(userinfo) if strip(&userinfo) => {
            format!("{}{}", &raw[..userinfo.start], &raw[userinfo.end + 1..])
        }
        _ => raw.to_string(),
    }
}

impl PartialEq for Remote {
    fn eq(&self, other: &Self) -> bool {
        self.url == other.url
    }
}

impl Eq for Remote {}

impl fmt::Display for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Remote({})", self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(raw: &str) -> Remote {
        Remote::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"))
    }

    #[test]
    fn userinfo_with_at_and_colon_splits_at_the_last_at_and_first_colon() {
        let r = remote("https://a%40b:c%3Ad@h.example/r.git");
        assert_eq!(r.host(), Some("h.example"));
        assert_eq!(
            r.credentials(),
            Some(("a@b".to_string(), Some("c:d".to_string())))
        );
        assert_eq!(r.redacted(), "https://a%40b:REDACTED@h.example/r.git");
        assert_eq!(r.without_credentials(), "https://h.example/r.git");
        assert_eq!(r.without_userinfo().expose(), "https://h.example/r.git");
        assert_eq!(r.without_userinfo().credentials(), None);
    }

    #[test]
    fn an_at_in_the_path_or_query_is_not_userinfo() {
        let r = remote("https://h.example/org/r@v1.git");
        assert_eq!(r.credentials(), None);
        assert_eq!(r.redacted(), "https://h.example/org/r@v1.git");
        assert_eq!(r.without_credentials(), "https://h.example/org/r@v1.git");
        let r = remote("https://u:pw@h.example/a@b");
        assert_eq!(r.without_credentials(), "https://h.example/a@b");
        assert_eq!(r.redacted(), "https://u:REDACTED@h.example/a@b");
        let r = remote("https://h.example/r?x=a@b");
        assert_eq!(r.without_userinfo().expose(), "https://h.example/r?x=a@b");
        assert_eq!(r.redacted(), "https://h.example/r?x=a@b");
    }

    #[test]
    fn scp_like_has_a_login_not_credentials() {
        let r = remote("git@github.com:org/r.git");
        assert_eq!(r.scheme(), "ssh");
        assert_eq!(r.user(), Some("git"));
        assert_eq!(r.host(), Some("github.com"));
        assert_eq!(r.credentials(), None);
        assert_eq!(r.redacted(), "git@github.com:org/r.git");
        assert_eq!(r.without_credentials(), "git@github.com:org/r.git");
        assert_eq!(r.without_userinfo().expose(), "git@github.com:org/r.git");
        assert_eq!(r.without_userinfo().user(), Some("git"));
    }

    /// git's scp-like forms with brackets: an IPv6 host with a user, and
    /// the old `[user@host:port]:path` form that names a port.
    #[test]
    fn bracketed_scp_like_forms_with_a_user_parse_as_git_does() {
        let r = remote("root@[::1]:/srv/r.git");
        assert_eq!(
            (r.scheme(), r.user(), r.host()),
            ("ssh", Some("root"), Some("::1"))
        );
        assert_eq!(r.path(), "/srv/r.git");
        let r = remote("[git@127.0.0.1:2222]:srv/r.git");
        assert_eq!(
            (r.user(), r.host(), r.port()),
            (Some("git"), Some("127.0.0.1"), Some(2222))
        );
        assert_eq!(r.path(), "srv/r.git");
        let r = remote("[127.0.0.1:2222]:srv/r.git");
        assert_eq!((r.user(), r.port()), (None, Some(2222)));
        assert_eq!(r.redacted(), "[127.0.0.1:2222]:srv/r.git");
    }

    /// As git: a file:// URL's path is percent-decoded, a plain path is not.
    #[test]
    fn file_urls_are_percent_decoded_plain_paths_are_not() {
        assert_eq!(
            remote("file:///srv/sp%20ace/r%C3%ABpo").path(),
            "/srv/sp ace/rëpo"
        );
        assert_eq!(remote("/srv/100%25/r").path(), "/srv/100%25/r");
    }

    #[test]
    fn ipv6_literals_keep_their_brackets_in_text_only() {
        let r = remote("https://u:pw@[::1]:8443/r.git");
        assert_eq!(r.host(), Some("::1"));
        assert_eq!(r.port(), Some(8443));
        assert_eq!(r.redacted(), "https://u:REDACTED@[::1]:8443/r.git");
        assert_eq!(r.without_credentials(), "https://[::1]:8443/r.git");
        let r = remote("git://[::1]/r");
        assert_eq!((r.host(), r.port()), (Some("::1"), Some(9418)));
        assert_eq!(r.credentials(), None);
    }

    #[test]
    fn percent_encoding_is_decoded_in_credentials_and_kept_in_text() {
        let r = remote("https://al%40ice:p%40ss@h/r");
        assert_eq!(
            r.credentials(),
            Some(("al@ice".to_string(), Some("p@ss".to_string())))
        );
        assert!(!r.to_string().contains("p%40ss"), "{r}");
        assert!(!format!("{r:?}").contains("p%40ss"), "{r:?}");
    }

    #[test]
    fn a_lone_user_is_a_secret_over_http_only() {
        let r = remote("https://t0ken@h/r");
        assert_eq!(r.credentials(), Some(("t0ken".to_string(), None)));
        assert_eq!(r.redacted(), "https://REDACTED@h/r");
        assert_eq!(r.without_credentials(), "https://h/r");
        for kept in ["ssh://git@h/r", "git://u@h/r"] {
            let r = remote(kept);
            assert_eq!(r.redacted(), kept);
            assert_eq!(r.without_credentials(), kept);
        }
        // Taken out of the URL all the same once moved into --username.
        assert_eq!(
            remote("git://u@h/r").without_userinfo().expose(),
            "git://h/r"
        );
        let r = remote("ssh://git:pw@h/r");
        assert_eq!(r.without_credentials(), "ssh://h/r");
        assert_eq!(r.redacted(), "ssh://git:REDACTED@h/r");
    }

    #[test]
    fn origin_matches_any_path_on_the_server() {
        let r = remote("https://h.example:8443/org/r.git");
        assert_eq!(r.origin().path(), "/");
        assert_eq!(r.origin().port(), Some(8443));
        assert_ne!(r.origin(), r);
        assert_eq!(remote("https://h/r"), remote("https://h/r"));
    }

    #[test]
    fn parse_errors_never_quote_a_password() {
        let e = Remote::parse("https://u:s3cret@[::1/r").expect_err("unclosed IPv6 literal");
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }

    #[test]
    fn local_paths_and_file_urls_parse() {
        assert_eq!(remote("/srv/r.git").scheme(), "file");
        assert_eq!(remote("file:///srv/r.git").path(), "/srv/r.git");
        assert_eq!(remote("file:///srv/r.git").credentials(), None);
    }
}
