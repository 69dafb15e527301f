//! Secrets as every module holds them: [`SecretBytes`] (never in `Debug`)
//! and [`read_secret_file`], the one way a password, token or key file is
//! read (at start-up, and again at each sync for rotated Secrets).

use std::io::Read;

/// A secret file larger than this is a mistake, not a secret.
const MAX_SECRET_FILE: u64 = 64 * 1024;

/// A secret value; `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBytes(REDACTED)")
    }
}

/// Reads a secret (or token) file: trailing whitespace (newlines) is removed;
/// an empty, unreadable or oversized file is an error naming the path, never
/// the content.
pub fn read_secret_file(path: &str) -> Result<SecretBytes, String> {
    if path.is_empty() {
        return Err("the path must not be empty".to_string());
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_SECRET_FILE + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read {path:?}: {e}"))?;
    if bytes.len() as u64 > MAX_SECRET_FILE {
        return Err(format!("{path:?} is larger than 64KiB"));
    }
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    bytes.truncate(end);
    if bytes.is_empty() {
        return Err(format!("{path:?} is empty"));
    }
    Ok(SecretBytes::new(bytes))
}
