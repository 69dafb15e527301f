//! Secrets as every module holds them: [`SecretBytes`] (never in `Debug`),
//! [`read_secret_file`], the one way a password, token or key file is
//! read (at start-up, and again at each sync for rotated Secrets), and
//! [`SecretSet`], the secrets a request may carry, whose files are read
//! again when they change ([`SecretFile`]).

use std::io::Read;
use std::sync::Arc;

mod file;
pub use file::{SecretFile, ROTATION_GRACE};

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

/// The secrets a request may be authenticated with (incoming webhooks,
/// `POST /sync`): files, read again when they change, and fixed values
/// (the environment's). Cloning shares the files' state.
#[derive(Debug, Clone, Default)]
pub struct SecretSet {
    sources: Vec<Source>,
}

#[derive(Debug, Clone)]
enum Source {
    File(Arc<SecretFile>),
    Fixed(SecretBytes),
}

impl SecretSet {
    /// Fixed values only.
    pub fn fixed(secrets: impl IntoIterator<Item = SecretBytes>) -> Self {
        SecretSet {
            sources: secrets.into_iter().map(Source::Fixed).collect(),
        }
    }

    pub fn push_file(&mut self, file: SecretFile) {
        self.sources.push(Source::File(Arc::new(file)));
    }

    pub fn push_fixed(&mut self, secret: SecretBytes) {
        self.sources.push(Source::Fixed(secret));
    }

    /// No secret was configured.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Every secret accepted now: each file's current content (and, just
    /// after a change, its previous one) and the fixed values.
    pub fn accepted(&self) -> Vec<SecretBytes> {
        let mut out = Vec::with_capacity(self.sources.len());
        for source in &self.sources {
            match source {
                Source::File(file) => out.extend(file.accepted()),
                Source::Fixed(secret) => out.push(secret.clone()),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_answers_with_its_files_current_content_and_its_fixed_values() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        std::fs::write(&path, "one\n").expect("write");
        let mut set = SecretSet::fixed([SecretBytes::new("env")]);
        set.push_file(SecretFile::new(
            path.clone(),
            "--x-file",
            SecretBytes::new("one"),
        ));
        let shared = set.clone();
        let next = dir.path().join("secret.new");
        std::fs::write(&next, "two\n").expect("write");
        std::fs::rename(&next, &path).expect("rename");
        let accepted: Vec<Vec<u8>> = shared
            .accepted()
            .iter()
            .map(|s| s.expose().to_vec())
            .collect();
        assert_eq!(
            accepted,
            [b"env".to_vec(), b"two".to_vec(), b"one".to_vec()]
        );
        assert!(SecretSet::default().is_empty());
    }
}
