//! `--ssh-key-file`: reading and parsing private keys (OpenSSH, PEM RSA and
//! PKCS#8; ed25519, ECDSA and RSA). Errors name the file and never quote
//! its content. Passphrase-protected keys are refused: there is nobody to
//! type the passphrase.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use russh::keys::{Certificate, PrivateKey};

/// Larger files are not private keys (an RSA 16384 key is ~12 KiB).
const MAX_KEY_FILE: u64 = 64 * 1024;

/// A private key and the file it came from. `Debug` shows only the path.
pub struct KeyFile {
    pub path: PathBuf,
    pub key: PrivateKey,
    /// `<path>-cert.pub`, a certificate of this key: offered before the
    /// plain key, as OpenSSH does (a server trusting a user CA has no
    /// `authorized_keys` line for the key).
    pub cert: Option<Certificate>,
}

impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFile")
            .field("path", &self.path)
            .field("algorithm", &self.key.algorithm().as_str())
            .field("cert", &self.cert.as_ref().map(|c| c.key_id().to_string()))
            .finish()
    }
}

/// Reads and parses one key file. The message names what is wrong, not the path.
pub fn load(path: &Path) -> Result<KeyFile, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut text = String::new();
    file.take(MAX_KEY_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("{e} (a private key is a text file)"))?;
    if text.len() as u64 > MAX_KEY_FILE {
        return Err(format!(
            "larger than {MAX_KEY_FILE} bytes: not a private key"
        ));
    }
    let key = match russh::keys::decode_secret_key(&text, None) {
        Ok(key) => key,
        // russh's ssh-key refuses a P-256 scalar with a leading zero byte.
        // An encrypted PKCS#8 key is only "unsupported" to the decoder.
        Err(_) if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") => {
            return Err(describe(russh::keys::Error::KeyIsEncrypted))
        }
        Err(e) => super::short_scalar::decode(&text).ok_or_else(|| describe(e))?,
    };
    Ok(KeyFile {
        path: path.to_path_buf(),
        key,
        cert: None,
    })
}

/// Where OpenSSH looks for a key's certificate: `<key>-cert.pub`.
pub fn cert_path(key: &Path) -> PathBuf {
    let mut path = key.as_os_str().to_owned();
    path.push("-cert.pub");
    PathBuf::from(path)
}

/// The certificate beside `key`: `Ok(None)` when there is no such file,
/// `Err(why)` when it is not a certificate of that key (OpenSSH then
/// offers the key alone).
fn load_cert(key: &KeyFile) -> Result<Option<Certificate>, String> {
    let path = cert_path(&key.path);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let cert = Certificate::from_openssh(text.trim())
        .map_err(|e| format!("not an OpenSSH certificate ({e})"))?;
    if cert.public_key() != key.key.public_key().key_data() {
        return Err(format!(
            "a certificate of another key than {}",
            key.path.display()
        ));
    }
    Ok(Some(cert))
}

/// The keys of `paths` that load, in order, and why the others did not:
/// as OpenSSH with several `-i`, one bad file does not keep the others
/// from being offered. `Err` with the first failure when none loads.
pub fn load_usable(paths: &[PathBuf]) -> Result<Usable, (PathBuf, String)> {
    let mut usable = Usable::default();
    for path in paths {
        match load(path) {
            Ok(mut key) => {
                match load_cert(&key) {
                    Ok(cert) => key.cert = cert,
                    Err(why) => usable.ignored_certs.push((cert_path(path), why)),
                }
                usable.keys.push(key)
            }
            Err(why) => usable.skipped.push((path.clone(), why)),
        }
    }
    match (usable.keys.is_empty(), usable.skipped.first()) {
        (true, Some(first)) => Err(first.clone()),
        _ => Ok(usable),
    }
}

/// The key files whose skipping the log has reported, each with why: a
/// key skipped at every poll is named once, not every 10 seconds, and again
/// only if why changes or after it has loaded in between. Not configuration:
/// every set equals every other, so options compare by what they say.
#[derive(Clone, Default)]
pub struct SkipNotices(Arc<Mutex<HashMap<PathBuf, String>>>);

impl SkipNotices {
    /// The files of this attempt's `(path, why)` list not yet reported as
    /// they are now; forgets the files the list no longer has.
    pub fn new_since_last(&self, found: &[(PathBuf, String)]) -> Vec<(PathBuf, String)> {
        let mut said = self.0.lock().unwrap_or_else(|e| e.into_inner());
        said.retain(|path, _| found.iter().any(|(p, _)| p == path));
        let fresh: Vec<_> = found
            .iter()
            .filter(|(path, why)| said.get(path) != Some(why))
            .cloned()
            .collect();
        said.extend(fresh.iter().cloned());
        fresh
    }
}

impl PartialEq for SkipNotices {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for SkipNotices {}

impl std::fmt::Debug for SkipNotices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SkipNotices")
    }
}

/// What [`load_usable`] found.
#[derive(Debug, Default)]
pub struct Usable {
    pub keys: Vec<KeyFile>,
    /// Files that could not be used: `(path, why)`.
    pub skipped: Vec<(PathBuf, String)>,
    /// `<key>-cert.pub` files that are not a certificate of their key.
    pub ignored_certs: Vec<(PathBuf, String)>,
}

fn describe(e: russh::keys::Error) -> String {
    match e {
        russh::keys::Error::KeyIsEncrypted => {
            "the key is protected by a passphrase, which is not supported \
             (remove it with `ssh-keygen -p -N ''`)"
                .to_string()
        }
        russh::keys::Error::UnsupportedKeyType {
            key_type_string, ..
        } => {
            format!("unsupported key type {key_type_string:?} (use ed25519, ecdsa or rsa)")
        }
        _ => "not a private key in a supported format (OpenSSH, PEM RSA or PKCS#8)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skipped(files: &[(&str, &str)]) -> Vec<(PathBuf, String)> {
        files
            .iter()
            .map(|(p, why)| (PathBuf::from(p), why.to_string()))
            .collect()
    }

    /// Each poll loads the keys again: a file skipped at every poll is
    /// reported once; again when why changes, or when it breaks again
    /// after it loaded.
    #[test]
    fn a_skipped_key_is_reported_once_until_something_changes() {
        let notices = SkipNotices::default();
        let names = |found: &[(PathBuf, String)]| -> Vec<String> {
            let fresh = notices.new_since_last(found);
            fresh
                .iter()
                .map(|(p, w)| format!("{}: {w}", p.display()))
                .collect()
        };
        let broken = skipped(&[("/k1", "missing"), ("/k2", "passphrase")]);
        assert_eq!(names(&broken), ["/k1: missing", "/k2: passphrase"]);
        assert!(names(&broken).is_empty(), "the next poll says nothing");
        let k2_changed = skipped(&[("/k1", "missing"), ("/k2", "unsupported")]);
        assert_eq!(names(&k2_changed), ["/k2: unsupported"]);
        let k1_loads = skipped(&[("/k2", "unsupported")]);
        assert!(names(&k1_loads).is_empty());
        assert_eq!(names(&k2_changed), ["/k1: missing"], "broken again");
    }

    /// Made by `ssh-keygen -t ecdsa -b 256` (the 846th try): its private
    /// scalar is 00 2c 13 a1 ..., stored as a 31-byte mpint. A throwaway key.
    const P256_LEADING_ZERO: &str = "\
-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAaAAAABNlY2RzYS
1zaGEyLW5pc3RwMjU2AAAACG5pc3RwMjU2AAAAQQRpOgAZAIfpBSRcL9DV3G/HG0DJdrWa
nFLsyTTmR/zrjNyMySB6qwbQFwlLW9BfkHR1s4Khp7m9JjkaAjkwFMX8AAAAqMPWJArD1i
QKAAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBGk6ABkAh+kFJFwv
0NXcb8cbQMl2tZqcUuzJNOZH/OuM3IzJIHqrBtAXCUtb0F+QdHWzgqGnub0mORoCOTAUxf
wAAAAfLBOhlevCOELQypEaeZPDRLfvBtkbOTBCtOE3aIgZYAAAAAxsZWFkaW5nLXplcm8B
AgMEBQ==
-----END OPENSSH PRIVATE KEY-----
";
    const P256_LEADING_ZERO_PUB: &str = "ecdsa-sha2-nistp256 \
        AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBGk6ABkAh+kFJFwv0NXcb8cbQMl2tZqcUuzJNOZH\
        /OuM3IzJIHqrBtAXCUtb0F+QdHWzgqGnub0mORoCOTAUxfw=";

    /// `<type> <base64>` of a key's public half.
    fn public_of(key: &PrivateKey) -> String {
        let line = key.public_key().to_openssh().expect("encodable");
        line.split(' ').take(2).collect::<Vec<_>>().join(" ")
    }

    /// `ssh-keygen -t <kind> [-b <bits>]` into `dir`: the key file and its public line.
    fn ssh_keygen(dir: &Path, kind: &str, bits: Option<&str>, extra: &[&str]) -> (PathBuf, String) {
        let path = dir.join(format!("id_{kind}_{}", bits.unwrap_or("default")));
        let mut cmd = std::process::Command::new("ssh-keygen");
        cmd.args(["-q", "-N", "", "-C", "test", "-t", kind])
            .args(extra);
        if let Some(bits) = bits {
            cmd.args(["-b", bits]);
        }
        let out = cmd.arg("-f").arg(&path).output().unwrap_or_else(|e| {
            panic!("ssh-keygen: {e}; install it (Debian/Ubuntu: apt-get install openssh-client)")
        });
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let public = std::fs::read_to_string(path.with_extension("pub")).expect("the .pub file");
        let public = public.split(' ').take(2).collect::<Vec<_>>().join(" ");
        (path, public)
    }

    #[test]
    fn every_key_type_ssh_keygen_makes_loads_with_its_public_half() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (kind, bits) in [
            ("ed25519", None),
            ("ecdsa", Some("256")),
            ("ecdsa", Some("384")),
            ("ecdsa", Some("521")),
            ("rsa", Some("2048")),
        ] {
            let (path, public) = ssh_keygen(dir.path(), kind, bits, &[]);
            let loaded = load(&path).unwrap_or_else(|e| panic!("{kind} {bits:?}: {e}"));
            assert_eq!(public_of(&loaded.key), public, "{kind} {bits:?}");
        }
    }

    #[test]
    fn pem_keys_load_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (kind, bits, format) in [("rsa", "2048", "PEM"), ("ecdsa", "256", "PKCS8")] {
            let (path, public) = ssh_keygen(dir.path(), kind, Some(bits), &["-m", format]);
            let loaded = load(&path).unwrap_or_else(|e| panic!("{kind} {format}: {e}"));
            assert_eq!(public_of(&loaded.key), public, "{kind} {format}");
        }
    }

    #[test]
    fn a_p256_key_whose_scalar_starts_with_a_zero_byte_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("id_ecdsa");
        std::fs::write(&path, P256_LEADING_ZERO).expect("write");
        let loaded = load(&path).unwrap_or_else(|e| panic!("refused: {e}"));
        assert_eq!(
            public_of(&loaded.key),
            P256_LEADING_ZERO_PUB
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        );
        let ecdsa = loaded.key.key_data().ecdsa().expect("an ECDSA key");
        assert_eq!(&ecdsa.private_key_bytes()[..4], [0x00, 0x2c, 0x13, 0xa1]);
    }

    #[test]
    fn a_short_scalar_that_does_not_match_its_public_point_is_refused() {
        // The same file with one byte of the scalar changed.
        let tampered = P256_LEADING_ZERO.replace("LBOhlevC", "LBOhlevD");
        assert_ne!(tampered, P256_LEADING_ZERO);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("id_ecdsa");
        std::fs::write(&path, tampered).expect("write");
        let err = load(&path).expect_err("inconsistent key");
        assert!(err.contains("not a private key"), "{err}");
    }

    /// `ssh-keygen -p` on `path`: the passphrase `passphrase`, in `format`'s
    /// encoding (`None`: the key's own).
    fn set_passphrase(path: &Path, passphrase: &str, format: Option<&str>) {
        let mut cmd = std::process::Command::new("ssh-keygen");
        cmd.args(["-q", "-p", "-P", "", "-N", passphrase]);
        if let Some(format) = format {
            cmd.args(["-m", format]);
        }
        let out = cmd.arg("-f").arg(path).output().expect("ssh-keygen -p");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn passphrase_protected_keys_are_still_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, _) = ssh_keygen(dir.path(), "ecdsa", Some("256"), &[]);
        set_passphrase(&path, "s3cret", None);
        let err = load(&path).expect_err("encrypted");
        assert!(err.contains("passphrase"), "{err}");

        // PKCS#8 with a passphrase (`-----BEGIN ENCRYPTED PRIVATE KEY-----`).
        let (path, _) = ssh_keygen(dir.path(), "rsa", Some("2048"), &["-m", "PKCS8"]);
        set_passphrase(&path, "pass phrase", Some("PKCS8"));
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains("BEGIN ENCRYPTED PRIVATE KEY"), "{text:.40}");
        let err = load(&path).expect_err("encrypted");
        assert!(err.contains("passphrase"), "{err}");
    }

    #[test]
    fn errors_say_what_is_wrong_without_the_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let garbage = dir.path().join("garbage");
        std::fs::write(&garbage, "s3cret-not-a-key\n").expect("write");
        let err = load(&garbage).expect_err("garbage is no key");
        assert!(err.contains("not a private key"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
        let missing = load(&dir.path().join("missing")).expect_err("missing file");
        assert!(missing.contains("No such file"), "{missing}");
    }
}
