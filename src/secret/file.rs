//! A secret file read again when it changes ([`SecretFile`]): a rotated
//! Kubernetes Secret (the kubelet swaps the `..data` symlink, so the file's
//! inode changes) is used from the next request on, without a restart. The
//! file is only stat'ed per use; it is read when its identity or mtime
//! changes.
//!
//! The two ends of a rotation never change at the same moment (the pods
//! see the new Secret up to the kubelet's sync period apart; a forge's
//! webhook secret is changed by hand), so a replaced secret is still
//! accepted for [`ROTATION_GRACE`] after it was replaced; what we sign
//! uses the current one. Every secret replaced within the grace is kept
//! (up to [`MAX_REPLACED`]), not only the last: a file changed twice in a
//! row (a typo in the new Secret fixed) must not drop the secret the forge
//! still signs with. A secret that its replacement, written into the same
//! file (same inode) within [`PARTIAL_WRITE_WINDOW`] of it (by the file's
//! mtime), extends was the file caught half-written (`echo >`): it is not
//! kept, since a short prefix of a key is a key an attacker can guess. A
//! rotation by the kubelet (a new file under a swapped symlink) is never
//! taken for one, nor an old secret extended in place long after it was
//! written.

use std::collections::VecDeque;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

// tokio's clock (the system's outside a runtime): tests pause and advance it.
use tokio::time::Instant;

use super::{read_secret_file, SecretBytes};

/// How long a replaced secret is still accepted after the change.
pub const ROTATION_GRACE: Duration = Duration::from_secs(300);

/// At most this many replaced secrets are kept within the grace (the
/// oldest goes first): a file rewritten in a loop is a mistake, and each
/// one kept is one more value a request may be signed with.
const MAX_REPLACED: usize = 8;

/// A secret whose file was written again this soon (by mtime), with one
/// that starts with it, was read from a file being written: it is dropped,
/// not kept for the grace.
const PARTIAL_WRITE_WINDOW: Duration = Duration::from_secs(10);

/// What identifies one version of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    mtime: i64,
    mtime_nsec: i64,
    len: u64,
}

impl Stamp {
    /// Which file (device, inode): the same one written again, or another.
    fn file(self) -> (u64, u64) {
        (self.dev, self.ino)
    }

    /// When this version was written (its mtime, in nanoseconds).
    fn written(self) -> i128 {
        i128::from(self.mtime) * 1_000_000_000 + i128::from(self.mtime_nsec)
    }
}

#[derive(Debug)]
struct Cached {
    stamp: Option<Stamp>,
    current: SecretBytes,
    /// Which file (device, inode) `current` was read from, and when that
    /// version was written (see [`Stamp::written`]).
    current_from: Option<(u64, u64)>,
    current_written: Option<i128>,
    /// The secrets replaced within the grace and when each stopped being
    /// current, the latest first; never `current` itself.
    replaced: VecDeque<(SecretBytes, Instant)>,
}

impl Cached {
    /// `secret` becomes current; the one before joins [`Cached::replaced`],
    /// and those out of the grace (or beyond [`MAX_REPLACED`]) go.
    fn replace(&mut self, secret: SecretBytes, read: Option<Stamp>, now: Instant) {
        let (from, written) = (read.map(Stamp::file), read.map(Stamp::written));
        let old = std::mem::replace(&mut self.current, secret);
        let old_from = std::mem::replace(&mut self.current_from, from);
        let old_written = std::mem::replace(&mut self.current_written, written);
        // A secret current again (a rotation undone) is no longer a replaced one.
        let current = &self.current;
        self.replaced.retain(|(s, _)| s != current);
        let window = PARTIAL_WRITE_WINDOW.as_nanos() as i128;
        let written_soon_after = written
            .zip(old_written)
            .is_some_and(|(new, old)| (0..window).contains(&(new - old)));
        let half_written = from.is_some()
            && old_from == from
            && written_soon_after
            && current.expose().starts_with(old.expose());
        if !half_written {
            self.replaced.push_front((old, now));
        }
        self.forget_expired(now);
    }

    fn forget_expired(&mut self, now: Instant) {
        self.replaced
            .retain(|(_, since)| now.saturating_duration_since(*since) < ROTATION_GRACE);
        self.replaced.truncate(MAX_REPLACED);
    }
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
    /// by the flag `label`. The file is read again at the first use: it may
    /// have been half-written when configuration read it.
    pub fn new(path: PathBuf, label: impl Into<String>, initial: SecretBytes) -> Self {
        let read = stamp(&path);
        SecretFile {
            path,
            label: label.into(),
            cached: Mutex::new(Cached {
                stamp: None,
                current: initial,
                current_from: read.map(Stamp::file),
                current_written: read.map(Stamp::written),
                replaced: VecDeque::new(),
            }),
        }
    }

    /// The secret to sign with.
    pub fn current(&self) -> SecretBytes {
        self.refresh().current.clone()
    }

    /// The secrets accepted now: the current one, then each one replaced
    /// within [`ROTATION_GRACE`] (the latest first).
    pub fn accepted(&self) -> Vec<SecretBytes> {
        let mut cached = self.refresh();
        cached.forget_expired(Instant::now());
        let mut out = vec![cached.current.clone()];
        out.extend(cached.replaced.iter().map(|(s, _)| s.clone()));
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
                    cached.replace(secret, now, Instant::now());
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

    /// As the kubelet does: a new file renamed over (a new inode).
    fn rotate(path: &std::path::Path, value: &str) {
        let next = path.with_extension("new");
        std::fs::write(&next, format!("{value}\n")).unwrap();
        std::fs::rename(&next, path).unwrap();
    }

    fn accepted(file: &SecretFile) -> Vec<String> {
        file.accepted()
            .iter()
            .map(|s| String::from_utf8_lossy(s.expose()).into_owned())
            .collect()
    }

    /// A second change soon after the first (a typo fixed) keeps the
    /// first secret too, each replaced
    /// secret expiring `ROTATION_GRACE` after it was replaced.
    #[tokio::test(start_paused = true)]
    async fn every_secret_replaced_within_the_grace_is_accepted_until_its_own_grace_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "one\n").unwrap();
        let file = SecretFile::new(path.clone(), "--x-file", SecretBytes::new(b"one".to_vec()));
        rotate(&path, "tw");
        assert_eq!(accepted(&file), ["tw", "one"]);
        tokio::time::advance(Duration::from_secs(60)).await;
        rotate(&path, "two");
        assert_eq!(accepted(&file), ["two", "tw", "one"]);
        // "one" was replaced first, and goes first.
        tokio::time::advance(ROTATION_GRACE - Duration::from_secs(61)).await;
        assert_eq!(accepted(&file), ["two", "tw", "one"]);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(accepted(&file), ["two", "tw"]);
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(accepted(&file), ["two"]);
        // A rotation undone: the secret current again is listed once.
        rotate(&path, "one");
        assert_eq!(accepted(&file), ["one", "two"]);
        rotate(&path, "two");
        assert_eq!(accepted(&file), ["two", "one"]);
    }

    /// Rewritten in a loop, the file leaves at most `MAX_REPLACED` old
    /// secrets accepted, the latest ones; none shows in `Debug`.
    #[tokio::test(start_paused = true)]
    async fn replaced_secrets_are_capped_the_oldest_dropped_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let secret = |n: u32| format!("Kq9-rotated-{n}");
        std::fs::write(&path, secret(0)).unwrap();
        let file = SecretFile::new(path.clone(), "--x-file", SecretBytes::new(secret(0)));
        for n in 1..=12 {
            rotate(&path, &secret(n));
            assert_eq!(file.current().expose(), secret(n).as_bytes());
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        let expected: Vec<String> = (4..=12).rev().map(secret).collect();
        assert_eq!(accepted(&file), expected);
        let debug = format!("{file:?}");
        assert!(!debug.contains("Kq9"), "{debug}");
    }

    /// A file read while being written (its first bytes), then whole: the
    /// prefix is not kept as a replaced secret, the secret before it is.
    /// A secret in use for longer than that, or replaced by a new file (the
    /// kubelet's rotation), is kept even if the next one extends it.
    #[tokio::test(start_paused = true)]
    async fn a_secret_read_half_written_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "old-secret\n").unwrap();
        let file = SecretFile::new(path.clone(), "--x-file", SecretBytes::new("old-secret"));
        tokio::time::advance(Duration::from_secs(3600)).await;
        // Written in place, as `echo > file` does, and read twice.
        std::fs::write(&path, "n").unwrap();
        assert_eq!(accepted(&file), ["n", "old-secret"]);
        tokio::time::advance(Duration::from_millis(5)).await;
        std::fs::write(&path, "new-se").unwrap();
        assert_eq!(accepted(&file), ["new-se", "old-secret"]);
        tokio::time::advance(Duration::from_millis(5)).await;
        std::fs::write(&path, "new-secret\n").unwrap();
        assert_eq!(accepted(&file), ["new-secret", "old-secret"]);
        tokio::time::advance(PARTIAL_WRITE_WINDOW).await;
        rotate(&path, "new-secret-2");
        assert_eq!(
            accepted(&file),
            ["new-secret-2", "new-secret", "old-secret"]
        );
        rotate(&path, "new-secret-2b");
        assert_eq!(
            accepted(&file),
            ["new-secret-2b", "new-secret-2", "new-secret", "old-secret"]
        );
    }

    /// A token written an hour ago and extended in place now (an operator's
    /// `echo >>`, moments after start-up) was whole: the old one is kept for
    /// the grace. The window counts from when the file was written, not from
    /// when it was read (probe-14 F7).
    #[test]
    fn an_old_secret_extended_in_place_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "token\n").unwrap();
        set_written_an_hour_ago(&path);
        let file = SecretFile::new(path.clone(), "--x-file", SecretBytes::new("token"));
        assert_eq!(accepted(&file), ["token"]);
        std::fs::write(&path, "token-2026\n").unwrap();
        assert_eq!(accepted(&file), ["token-2026", "token"]);
    }

    fn set_written_an_hour_ago(path: &std::path::Path) {
        let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(hour_ago)
            .unwrap();
    }

    /// Rewritten in place with an older mtime kept (`cp -p`, a restore)
    /// and a value that extends the old one: not a half-written file, the
    /// old secret is kept (found by review).
    #[test]
    fn a_rewrite_that_keeps_an_older_mtime_is_no_half_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "token\n").unwrap();
        let file = SecretFile::new(path.clone(), "--x-file", SecretBytes::new("token"));
        assert_eq!(accepted(&file), ["token"]);
        std::fs::write(&path, "token-2026\n").unwrap();
        set_written_an_hour_ago(&path);
        assert_eq!(accepted(&file), ["token-2026", "token"]);
    }

    /// Configuration read the file half-written; it is whole by the first
    /// use: the whole secret is used, the half one not kept.
    #[test]
    fn a_file_completed_after_start_up_is_read_at_the_first_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "new-secret\n").unwrap();
        let file = SecretFile::new(path.clone(), "--x-file", SecretBytes::new("new-se"));
        assert_eq!(accepted(&file), ["new-secret"]);
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
