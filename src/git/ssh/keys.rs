//! `--ssh-key-file`: reading and parsing private keys (OpenSSH, PEM RSA and
//! PKCS#8; ed25519, ECDSA and RSA). Errors name the file and never quote
//! its content. Passphrase-protected keys are refused: there is nobody to
//! type the passphrase.

use std::io::Read;
use std::path::{Path, PathBuf};

use russh::keys::PrivateKey;

/// Larger files are not private keys (an RSA 16384 key is ~12 KiB).
const MAX_KEY_FILE: u64 = 64 * 1024;

/// A private key and the file it came from. `Debug` shows only the path.
pub struct KeyFile {
    pub path: PathBuf,
    pub key: PrivateKey,
}

impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFile")
            .field("path", &self.path)
            .field("algorithm", &self.key.algorithm().as_str())
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
    let key = russh::keys::decode_secret_key(&text, None).map_err(describe)?;
    Ok(KeyFile {
        path: path.to_path_buf(),
        key,
    })
}

/// Loads every file in order, failing on the first bad one: `(path, why)`.
pub fn load_all(paths: &[PathBuf]) -> Result<Vec<KeyFile>, (PathBuf, String)> {
    paths
        .iter()
        .map(|p| load(p).map_err(|why| (p.clone(), why)))
        .collect()
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
