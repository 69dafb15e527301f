//! A secret file read again when it changes ([`SecretFile`]): a rotated
//! Kubernetes Secret (the kubelet swaps the `..data` symlink, so the file's
//! inode changes) is used from the next request on, without a restart. The
//! file is only stat'ed per use; it is read when its identity or mtime
//! changes.
//!
//! The two ends of a rotation never change at the same moment (the pods
//! see the new Secret up to the kubelet's sync period apart; a forge's
//! webhook secret is changed by hand), so the previous secret is still
//! accepted for [`ROTATION_GRACE`] after the change; what we sign uses the
//! current one.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{read_secret_file, SecretBytes};

/// How long the previous secret is still accepted after a change.
pub const ROTATION_GRACE: Duration = Duration::from_secs(300);

/// What identifies one version of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    mtime: i64,
    mtime_nsec: i64,
    len: u64,
}

#[derive(Debug)]
struct Cached {
    stamp: Option<Stamp>,
    current: SecretBytes,
    previous: Option<(SecretBytes, Instant)>,
}

/// One secret file, and what was last read from it.
#[derive(Debug)]
pub struct SecretFile {
    path: PathBuf,
    /// The flag that names it, for the log lines.
    label: String,
    cached: Mutex<Cached>,
}

impl SecretFile {
    /// `initial` is what configuration read at start-up from `path`, given
    /// by the flag `label`.
    pub fn new(path: PathBuf, label: impl Into<String>, initial: SecretBytes) -> Self {
        let stamp = stamp(&path);
        SecretFile {
            path,
            label: label.into(),
            cached: Mutex::new(Cached {
                stamp,
                current: initial,
                previous: None,
            }),
        }
    }

    /// The secret to sign with.
    pub fn current(&self) -> SecretBytes {
        self.refresh().current.clone()
    }

    /// The secrets accepted now: the current one, and the previous one
    /// within [`ROTATION_GRACE`] of the change.
    pub fn accepted(&self) -> Vec<SecretBytes> {
        let cached = self.refresh();
        let mut out = vec![cached.current.clone()];
        if let Some((previous, since)) = &cached.previous {
            if since.elapsed() < ROTATION_GRACE {
                out.push(previous.clone());
            }
        }
        out
    }

    /// Re-reads the file if it changed. While it cannot be read (a
    /// half-updated mount, an emptied file), the last good secret stays in
    /// use, and that is logged once per version of the file.
    fn refresh(&self) -> std::sync::MutexGuard<'_, Cached> {
        let mut cached = self
            .cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = stamp(&self.path);
        if now.is_some() && now != cached.stamp {
            match read_secret_file(&self.path.to_string_lossy()) {
                Ok(secret) if secret != cached.current => {
                    tracing::info!(
                        path = %self.path.display(),
                        "{} changed; using the new secret (the previous one is still accepted for {}s)",
                        self.label,
                        ROTATION_GRACE.as_secs()
                    );
                    let old = std::mem::replace(&mut cached.current, secret);
                    cached.previous = Some((old, Instant::now()));
                    cached.stamp = now;
                }
                Ok(_) => cached.stamp = now,
                Err(e) => {
                    cached.stamp = now;
                    tracing::warn!(
                        error = %e,
                        "cannot read {} again; keeping the secret read before",
                        self.label
                    )
                }
            }
        }
        cached
    }
}

fn stamp(path: &std::path::Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        dev: m.dev(),
        ino: m.ino(),
        mtime: m.mtime(),
        mtime_nsec: m.mtime_nsec(),
        len: m.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_is_read_again_and_the_old_secret_kept_for_a_while() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "one\n").unwrap();
        let file = SecretFile::new(path.clone(), "--x-file", SecretBytes::new(b"one".to_vec()));
        assert_eq!(file.current().expose(), b"one");
        assert_eq!(file.accepted().len(), 1);
        // As the kubelet does: a new file renamed over (new inode).
        let next = dir.path().join("secret.new");
        std::fs::write(&next, "two\n").unwrap();
        std::fs::rename(&next, &path).unwrap();
        assert_eq!(file.current().expose(), b"two");
        let accepted: Vec<Vec<u8>> = file
            .accepted()
            .iter()
            .map(|s| s.expose().to_vec())
            .collect();
        assert_eq!(accepted, [b"two".to_vec(), b"one".to_vec()]);
    }

    #[test]
    fn an_unreadable_file_keeps_the_last_good_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "one").unwrap();
        let file = SecretFile::new(path.clone(), "--x-file", SecretBytes::new(b"one".to_vec()));
        std::fs::write(&path, "").unwrap();
        assert_eq!(file.current().expose(), b"one");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(file.current().expose(), b"one");
    }
}
