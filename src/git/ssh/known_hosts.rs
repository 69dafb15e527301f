//! OpenSSH `known_hosts`: which keys a file lists for a host, and the verdict
//! on the key a server showed. Our own reader, because russh's ignores
//! markers, wildcards and negations and treats an unreadable file as empty
//! (a strict check must fail closed instead).
//!
//! Supported: comments, `|1|salt|hash` hashed names, `[host]:port` for
//! ports other than 22, `*`/`?` wildcards, `!` negations, `@revoked`.
//! `@cert-authority` lines name no host key (we never ask for host
//! certificates): a host listed only by one is told apart in the error.
//! Lines whose key does not parse are skipped, as OpenSSH does.

use std::path::{Path, PathBuf};

use hmac::{KeyInit, Mac};
use russh::keys::ssh_key::{Algorithm, HashAlg, PublicKey};

/// Largest known_hosts file read (a real one is a few KiB).
const MAX_FILE: u64 = 4 * 1024 * 1024;

/// A parsed known_hosts file.
#[derive(Debug, Clone)]
pub struct KnownHosts {
    path: PathBuf,
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    line: usize,
    revoked: bool,
    /// `@cert-authority`: a CA for host certificates, which we do not check.
    authority: bool,
    patterns: String,
    key: PublicKey,
}

/// What the file says about a server's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Known,
    /// No line names the host.
    Unknown,
    /// The host is listed, with other keys; `line` is the first such line.
    Changed {
        line: usize,
    },
    /// The key is marked `@revoked`.
    Revoked {
        line: usize,
    },
    /// Only a `@cert-authority` line names the host (host certificates
    /// are not supported); `line` is the first such line.
    OnlyCertAuthority {
        line: usize,
    },
}

impl KnownHosts {
    /// Reads and parses `path`. Unreadable is an error, never "no hosts".
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = read_limited(path)?;
        Ok(Self::parse(path, &text))
    }

    fn parse(path: &Path, text: &str) -> Self {
        let entries = text
            .lines()
            .enumerate()
            .filter_map(|(i, line)| parse_line(i + 1, line))
            .collect();
        Self {
            path: path.to_path_buf(),
            entries,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The verdict on `key` offered by `host` on `port`.
    pub fn check(&self, host: &str, port: u16, key: &PublicKey) -> Verdict {
        let name = host_port(host, port);
        let listed: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| matches_host(&e.patterns, &name))
            .collect();
        let same = |e: &&&Entry| e.key.key_data() == key.key_data();
        if let Some(e) = listed.iter().filter(|e| e.revoked).find(same) {
            return Verdict::Revoked { line: e.line };
        }
        let valid: Vec<&&Entry> = listed
            .iter()
            .filter(|e| !e.revoked && !e.authority)
            .collect();
        if valid.iter().any(|e| e.key.key_data() == key.key_data()) {
            return Verdict::Known;
        }
        // Point at a line with a key of the same type if there is one.
        let changed = valid
            .iter()
            .find(|e| same_key_type(&e.key.algorithm(), &key.algorithm()))
            .or(valid.first());
        match (changed, listed.iter().find(|e| e.authority)) {
            (Some(e), _) => Verdict::Changed { line: e.line },
            (None, Some(ca)) => Verdict::OnlyCertAuthority { line: ca.line },
            (None, None) => Verdict::Unknown,
        }
    }

    /// Key algorithms listed for the host, so the client can ask the server
    /// for one of them first (as OpenSSH does).
    pub fn algorithms_for(&self, host: &str, port: u16) -> Vec<Algorithm> {
        let name = host_port(host, port);
        self.entries
            .iter()
            .filter(|e| !e.revoked && !e.authority && matches_host(&e.patterns, &name))
            .map(|e| e.key.algorithm())
            .collect()
    }
}

/// The name OpenSSH looks up: `host`, or `[host]:port` off port 22.
pub fn host_port(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_ascii_lowercase()
    } else {
        format!("[{}]:{port}", host.to_ascii_lowercase())
    }
}

/// True when both are the same kind of key (RSA regardless of signature hash).
pub fn same_key_type(a: &Algorithm, b: &Algorithm) -> bool {
    a == b || matches!((a, b), (Algorithm::Rsa { .. }, Algorithm::Rsa { .. }))
}

/// `SHA256:...` of a key, for messages.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

fn read_limited(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut text = String::new();
    file.take(MAX_FILE)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    Ok(text)
}

fn parse_line(line: usize, text: &str) -> Option<Entry> {
    let text = text.trim();
    if text.is_empty() || text.starts_with('#') {
        return None;
    }
    let mut fields = text.split_whitespace();
    let mut first = fields.next()?;
    let (mut revoked, mut authority) = (false, false);
    if let Some(marker) = first.strip_prefix('@') {
        match marker {
            "revoked" => revoked = true,
            "cert-authority" => authority = true,
            _ => return None,
        }
        first = fields.next()?;
    }
    let (kind, blob) = (fields.next()?, fields.next()?);
    let key = PublicKey::from_openssh(&format!("{kind} {blob}")).ok()?;
    Some(Entry {
        line,
        revoked,
        authority,
        patterns: first.to_string(),
        key,
    })
}

/// OpenSSH's host-list match: any positive pattern matches and no negated one.
fn matches_host(patterns: &str, name: &str) -> bool {
    let mut matched = false;
    for pattern in patterns.split(',') {
        if let Some(hashed) = pattern.strip_prefix("|1|") {
            matched |= hashed_matches(hashed, name);
        } else if let Some(negated) = pattern.strip_prefix('!') {
            if wildcard_matches(&negated.to_ascii_lowercase(), name) {
                return false;
            }
        } else {
            matched |= wildcard_matches(&pattern.to_ascii_lowercase(), name);
        }
    }
    matched
}

/// `salt|hash`, both base64: HMAC-SHA1 of the name keyed with the salt.
fn hashed_matches(hashed: &str, name: &str) -> bool {
    use base64::engine::general_purpose::STANDARD as BASE64;
    use base64::Engine as _;
    let Some((salt, hash)) = hashed.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (
        BASE64.decode(salt.as_bytes()),
        BASE64.decode(hash.as_bytes()),
    ) else {
        return false;
    };
    let Ok(mac) = hmac::Hmac::<sha1::Sha1>::new_from_slice(&salt) else {
        return false;
    };
    mac.chain_update(name.as_bytes())
        .verify_slice(&hash)
        .is_ok()
}

/// `*` any run of characters, `?` exactly one.
fn wildcard_matches(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKqwvEe5pQNA+TPBkZHGALxTa7Gmh0XQfepzLtqTqGxO";
    const ED2: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMFBmUL0m04Zw5rDH7wZn+HYAeJwtikIfLtbLp5Khi7e";

    fn key(text: &str) -> PublicKey {
        PublicKey::from_openssh(text).expect("test key parses")
    }

    fn file(text: &str) -> KnownHosts {
        KnownHosts::parse(Path::new("/kh"), text)
    }

    #[test]
    fn plain_and_bracketed_entries() {
        let kh = file(&format!(
            "# c\n\nexample.com {ED}\n[127.0.0.1]:2222 {ED2}\n"
        ));
        assert_eq!(kh.check("example.com", 22, &key(ED)), Verdict::Known);
        assert_eq!(kh.check("EXAMPLE.com", 22, &key(ED)), Verdict::Known);
        assert_eq!(kh.check("127.0.0.1", 2222, &key(ED2)), Verdict::Known);
        assert_eq!(kh.check("127.0.0.1", 22, &key(ED2)), Verdict::Unknown);
        assert_eq!(kh.check("example.com", 2222, &key(ED)), Verdict::Unknown);
        assert_eq!(
            kh.check("127.0.0.1", 2222, &key(ED)),
            Verdict::Changed { line: 4 }
        );
    }

    #[test]
    fn hashed_entry_matches_only_its_host() {
        // `ssh-keygen -H` form of "[127.0.0.1]:2222", salt and HMAC-SHA1 computed here.
        use base64::engine::general_purpose::STANDARD as BASE64;
        use base64::Engine as _;
        let salt = b"0123456789abcdefghij";
        let mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(salt)
            .expect("any key length")
            .chain_update(b"[127.0.0.1]:2222")
            .finalize()
            .into_bytes();
        let line = format!("|1|{}|{} {ED}", BASE64.encode(salt), BASE64.encode(mac));
        let kh = file(&line);
        assert_eq!(kh.check("127.0.0.1", 2222, &key(ED)), Verdict::Known);
        assert_eq!(kh.check("127.0.0.2", 2222, &key(ED)), Verdict::Unknown);
    }

    #[test]
    fn wildcards_negations_and_revocations() {
        let kh = file(&format!(
            "*.example.com,!bad.example.com {ED}\n@revoked * {ED2}\n@cert-authority * {ED}\n"
        ));
        assert_eq!(kh.check("a.example.com", 22, &key(ED)), Verdict::Known);
        // Only the @cert-authority line names them; the CA's own key is
        // no host key.
        let only_ca = Verdict::OnlyCertAuthority { line: 3 };
        assert_eq!(kh.check("bad.example.com", 22, &key(ED)), only_ca);
        assert_eq!(kh.check("example.com", 22, &key(ED)), only_ca);
        assert!(kh.algorithms_for("example.com", 22).is_empty());
        let no_ca = file(&format!("*.example.com {ED}\n"));
        assert_eq!(no_ca.check("example.com", 22, &key(ED)), Verdict::Unknown);
        assert_eq!(
            kh.check("a.example.com", 22, &key(ED2)),
            Verdict::Revoked { line: 2 }
        );
        assert!(wildcard_matches("h?st*", "host-1"));
        assert!(!wildcard_matches("h?st", "hoost"));
    }

    #[test]
    fn unparseable_lines_are_skipped_and_a_missing_file_is_an_error() {
        let kh = file(&format!("broken line\nhost ssh-ed25519 !!!\nhost {ED}\n"));
        assert_eq!(kh.check("host", 22, &key(ED)), Verdict::Known);
        assert!(KnownHosts::load(Path::new("/nonexistent/known_hosts")).is_err());
    }

    #[test]
    fn algorithms_for_lists_the_hosts_key_types() {
        let kh = file(&format!("host {ED}\nother {ED2}\n"));
        assert_eq!(kh.algorithms_for("host", 22), vec![Algorithm::Ed25519]);
        assert!(kh.algorithms_for("nobody", 22).is_empty());
    }
}
