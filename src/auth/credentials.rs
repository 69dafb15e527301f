//! Which `--credential` entry
//! applies to a URL ([`match_len`], git's `credential.<url>` rules).

pub use crate::git::Credentials;
use crate::git::Remote;

/// How well a credential's `url` matches the URL of a connection: `None`
/// when it does not apply, else the number of path bytes it matched (more
/// is more specific). The rules (as git's `credential.<url>` matching):
/// * scheme and port equal (a missing port is the scheme's default), host
///   equal ignoring ASCII case;
/// * a user in the credential URL must equal the connection's user;
/// * a credential path, trailing `/` and `.git` ignored, must equal the
///   connection's path or be a prefix of it ending at a `/`; no path (or
///   `/`) matches every path on that host.
pub fn match_len(credential: &Remote, url: &Remote) -> Option<usize> {
    let same_origin = credential.scheme() == url.scheme()
        && credential.port() == url.port()
        && credential
            .host()
            .zip(url.host())
            .is_some_and(|(a, b)| a.eq_ignore_ascii_case(b));
    let user_ok = credential.user().is_none() || credential.user() == url.user();
    if !(same_origin && user_ok) {
        return None;
    }
    let want = normalized_path(credential);
    let have = normalized_path(url);
    let prefix = want.is_empty()
        || have == want
        || (have.starts_with(&want) && have.as_bytes().get(want.len()) == Some(&b'/'));
    prefix.then_some(want.len())
}

/// The path without trailing `/` and `.git`, so `/org/site` and
/// `/org/site.git/` compare equal.
fn normalized_path(url: &Remote) -> String {
    let path = url.path();
    let path = path.trim_end_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    path.trim_end_matches('/').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Remote {
        Remote::parse(s).expect("valid URL")
    }

    #[test]
    fn matching_is_scheme_host_port_and_path_prefix() {
        let m = |cred: &str, target: &str| match_len(&url(cred), &url(target));
        assert_eq!(
            m("https://h.example", "https://H.example/org/r.git"),
            Some(0)
        );
        assert_eq!(m("https://h.example/", "https://h.example/r"), Some(0));
        assert_eq!(
            m("https://h.example:443/org", "https://h.example/org/r"),
            Some(4)
        );
        assert_eq!(
            m("https://h.example/org/r", "https://h.example/org/r.git"),
            Some(6)
        );
        assert_eq!(
            m("https://h.example/org/r.git/", "https://h.example/org/r"),
            Some(6)
        );
        // Not on a segment boundary, another scheme, port, host or user.
        assert_eq!(m("https://h.example/or", "https://h.example/org/r"), None);
        assert_eq!(m("https://h.example/org/r", "https://h.example/org"), None);
        assert_eq!(m("http://h.example", "https://h.example/r"), None);
        assert_eq!(m("https://h.example:8443", "https://h.example/r"), None);
        assert_eq!(m("https://other.example", "https://h.example/r"), None);
        assert_eq!(m("https://bob@h.example", "https://h.example/r"), None);
        assert_eq!(
            m("https://bob@h.example", "https://bob@h.example/r"),
            Some(0)
        );
    }

    #[test]
    fn debug_hides_both() {
        let c = Credentials {
            username: "t0ken-user".into(),
            password: "s3cret".into(),
        };
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("t0ken") && !dbg.contains("s3cret"), "{dbg}");
    }
}
