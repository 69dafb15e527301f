//! One instance per root: an exclusive `flock(2)` on `<root>/.git-sidecar.lock`,
//! held for the life of the process. Everything that deletes things in the
//! root (stale lock files, staging directories, stale worktrees, a corrupt
//! root) assumes it is the only writer, so a second instance on the same
//! root (a rolling update on a shared volume, an operator's `--one-time`)
//! must wait for the lock before it touches anything.
//!
//! Why a file directly in the root and not in `.git`: `.git` does not exist
//! before the first start and is deleted and re-created when the root is
//! found corrupt, and a lock file that is deleted while held no longer
//! excludes anyone. The root itself is never deleted (it may be a mount
//! point); the root-wiping code keeps this one file. Consumers read through
//! the link, so they never see it. A regular file opened read-write (not a
//! directory) also works on NFS, where `flock` becomes a POSIX lock that
//! needs a writable descriptor; the kernel releases it when the holder dies,
//! however it dies. The file holds the holder's PID and host name for the
//! waiter's log line; it is left in place when the holder exits. Someone may
//! still delete it (or the root) by hand: each pass checks that the path
//! names the locked file ([`RootLock::keep`]) before it touches anything.
//! Limits of that check on NFS: the client's attribute cache may hide a
//! deletion for up to a minute, and a lock an NFSv4 client lost with its
//! lease leaves the file as it was, so `keep` cannot see it.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The lock file's name in the root.
pub const FILE_NAME: &str = ".git-sidecar.lock";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Root(#[from] RootError),
    #[error(
        "could not open the root lock {path}: {source} (the root must be a writable directory)"
    )]
    Open { path: PathBuf, source: io::Error },
    #[error(
        "could not lock {path}: {source} (the filesystem must support flock; on NFS, file locking must be enabled)"
    )]
    Lock { path: PathBuf, source: io::Error },
    #[error(
        "the lock file {path} was removed or replaced while this instance held it, and another \
         git-sidecar ({holder}) now holds the new one: this instance leaves the root alone until \
         that one exits (never delete the lock file of a running instance)"
    )]
    Lost { path: PathBuf, holder: String },
}

/// What is wrong with `--root` itself, said so the user can fix it.
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    #[error(
        "--root {path} exists but is not a directory: point --root at a directory \
         (git-sidecar creates it when missing) or remove what is there"
    )]
    NotADirectory { path: PathBuf },
    #[error(
        "could not create --root {path} as uid {uid}: {source}; make its parent directory \
         writable for this user, or create --root beforehand (in Kubernetes: mount a \
         volume there)"
    )]
    Create {
        path: PathBuf,
        uid: u32,
        source: io::Error,
    },
    #[error(
        "--root {path} is not writable by uid {uid} (it belongs to uid {owner}, mode {mode:o}): \
         {source}; give this user write access (in Kubernetes: securityContext.fsGroup, or \
         runAsUser set to the volume's owner)"
    )]
    NotWritable {
        path: PathBuf,
        uid: u32,
        owner: u32,
        mode: u32,
        source: io::Error,
    },
    #[error(
        "{path} in --root is not writable by uid {uid} (it belongs to uid {owner}, mode \
         {mode:o}): {source}; the root was written by another user (a changed runAsUser?): \
         give it to this one (chown -R {uid} {root}) or run as uid {owner}; for several users \
         of one root, --group-write and a common group (securityContext.fsGroup)"
    )]
    ContentNotWritable {
        path: PathBuf,
        root: PathBuf,
        uid: u32,
        owner: u32,
        mode: u32,
        source: io::Error,
    },
    #[error(
        "{path} in --root is not writable by uid {uid}, which owns it: its mode {mode:o} \
         lacks write permission for its owner; give it back (chmod -R u+rwX {root})"
    )]
    OwnNotWritable {
        path: PathBuf,
        root: PathBuf,
        uid: u32,
        mode: u32,
    },
    #[error(
        "{path} is on a read-only filesystem: git-sidecar writes its store and worktrees \
         there; mount --root read-write (in Kubernetes: no readOnly: true on the volumeMount, \
         a volume that is not read-only)"
    )]
    ReadOnly { path: PathBuf },
    #[error("could not look at --root {path}: {source}")]
    Stat { path: PathBuf, source: io::Error },
    #[error(
        "--root {path} is a symbolic link to {target}, which does not exist: create that \
         directory or point --root at one that exists"
    )]
    DanglingLink { path: PathBuf, target: PathBuf },
}

fn is_symlink(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// The directories of a root that every sync writes in (a lock file, a
/// pack, a worktree): checked at start-up, so that a root another user
/// wrote fails there, saying whose it is, and not at the next commit with
/// a lock error deep in the object store.
const WRITTEN_IN: &[&str] = &[
    ".git",
    ".git/objects",
    ".git/objects/pack",
    ".git/refs/heads",
    ".git/worktrees",
    ".git/modules",
    ".worktrees",
];

/// Creates `root` when missing and checks that this process may write in
/// it, so that a wrong `--root` is reported as such (not as whatever write
/// happens to fail first, with the reason lost).
pub fn prepare_root(root: &Path) -> Result<(), RootError> {
    use std::os::unix::fs::MetadataExt;
    let uid = nix::unistd::geteuid().as_raw();
    match fs::metadata(root) {
        Ok(meta) if !meta.is_dir() => {
            return Err(RootError::NotADirectory {
                path: root.to_path_buf(),
            })
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound && is_symlink(root) => {
            return Err(RootError::DanglingLink {
                path: root.to_path_buf(),
                target: fs::read_link(root).unwrap_or_default(),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(root).map_err(|source| RootError::Create {
                path: root.to_path_buf(),
                uid,
                source,
            })?;
        }
        Err(source) => {
            return Err(RootError::Stat {
                path: root.to_path_buf(),
                source,
            })
        }
    }
    let access = nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK;
    let owner_and_mode = |path: &Path| {
        let meta = fs::metadata(path).ok();
        (
            meta.as_ref().map_or(0, |m| m.uid()),
            meta.map_or(0, |m| m.mode() & 0o7777),
        )
    };
    nix::unistd::access(root, access).map_err(|errno| {
        let (owner, mode) = owner_and_mode(root);
        match errno {
            nix::errno::Errno::EROFS => RootError::ReadOnly {
                path: root.to_path_buf(),
            },
            _ => RootError::NotWritable {
                path: root.to_path_buf(),
                uid,
                owner,
                mode,
                source: io::Error::from(errno),
            },
        }
    })?;
    for dir in WRITTEN_IN.iter().map(|d| root.join(d)) {
        if !fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
            continue; // made when needed (or replaced by the repair)
        }
        nix::unistd::access(&dir, access).map_err(|errno| {
            let (owner, mode) = owner_and_mode(&dir);
            let root = root.to_path_buf();
            match errno {
                nix::errno::Errno::EROFS => RootError::ReadOnly { path: dir.clone() },
                _ if owner == uid => RootError::OwnNotWritable {
                    path: dir.clone(),
                    root,
                    uid,
                    mode,
                },
                _ => RootError::ContentNotWritable {
                    path: dir.clone(),
                    root,
                    uid,
                    owner,
                    mode,
                    source: io::Error::from(errno),
                },
            }
        })?;
    }
    Ok(())
}

/// The held lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct RootLock {
    root: PathBuf,
    /// Replaced when the lock is taken again ([`RootLock::keep`]).
    file: std::sync::Mutex<File>,
}

/// What [`RootLock::keep`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Kept {
    /// The lock file at the path is still the one this process locked.
    Held,
    /// It had been removed or replaced (the root deleted, say) and nobody
    /// held the new one: this process locked it. What was in the root may
    /// be gone with it.
    Retaken,
}

impl RootLock {
    /// Makes sure this process still holds the lock on its root, before a
    /// pass touches anything there. A lock file deleted while held no
    /// longer excludes anyone (a second instance creates and locks a new
    /// one), so the file at the path must be the one locked: if it is not,
    /// the lock is taken again, or [`Error::Lost`] if another instance
    /// already has it.
    pub fn keep(&self) -> Result<Kept, Error> {
        let path = self.root.join(FILE_NAME);
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if is_at(&file, &path) {
            return Ok(Kept::Held);
        }
        match try_acquire(&self.root)? {
            Attempt::Acquired(RootLock { file: fresh, .. }) => {
                *file = fresh
                    .into_inner()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                Ok(Kept::Retaken)
            }
            Attempt::Held { holder } => Err(Error::Lost { path, holder }),
        }
    }
}

/// Whether `path` (not followed) is the file `file` has open.
fn is_at(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::symlink_metadata(path)) {
        (Ok(held), Ok(there)) => held.dev() == there.dev() && held.ino() == there.ino(),
        _ => false,
    }
}

/// The result of one attempt.
#[derive(Debug)]
pub enum Attempt {
    Acquired(RootLock),
    /// Another process holds it; `holder` is what it wrote into the file.
    Held {
        holder: String,
    },
}

/// Tries once, without blocking, to lock `root` (created if missing).
pub fn try_acquire(root: &Path) -> Result<Attempt, Error> {
    prepare_root(root)?;
    let path = root.join(FILE_NAME);
    let mut file = open(&path)?;
    match file.try_lock() {
        Ok(()) => {
            // Best effort: the name is only for the waiter's log line.
            let _ = record_holder(&mut file);
            Ok(Attempt::Acquired(RootLock {
                root: root.to_path_buf(),
                file: std::sync::Mutex::new(file),
            }))
        }
        Err(TryLockError::WouldBlock) => Ok(Attempt::Held {
            holder: read_holder(&path),
        }),
        Err(TryLockError::Error(source)) => Err(Error::Lock { path, source }),
    }
}

/// Opens read-write (NFS needs it for an exclusive lock), never through a
/// symlink; read-only if the file belongs to another user (a local `flock`
/// does not need write access).
fn open(path: &Path) -> Result<File, Error> {
    let nofollow = nix::fcntl::OFlag::O_NOFOLLOW.bits();
    let read_write = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(nofollow)
        .open(path);
    match read_write {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => OpenOptions::new()
            .read(true)
            .custom_flags(nofollow)
            .open(path),
        other => other,
    }
    .map_err(|source| Error::Open {
        path: path.to_path_buf(),
        source,
    })
}

fn record_holder(file: &mut File) -> io::Result<()> {
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    file.set_len(0)?;
    writeln!(file, "pid {} on {}", std::process::id(), host.trim())
}

fn read_holder(path: &Path) -> String {
    match fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => text.trim().to_string(),
        _ => "an unknown process".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // flock locks belong to the open file description, so a second open in
    // the same process competes like another process would.
    #[test]
    fn a_second_attempt_sees_the_holder_until_it_is_released(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let root = dir.path().join("root");
        let Attempt::Acquired(lock) = try_acquire(&root)? else {
            panic!("a fresh root is free");
        };
        match try_acquire(&root)? {
            Attempt::Held { holder } => {
                assert!(
                    holder.starts_with(&format!("pid {} on ", std::process::id())),
                    "{holder}"
                );
            }
            Attempt::Acquired(_) => panic!("the lock is held"),
        }
        drop(lock);
        assert!(matches!(try_acquire(&root)?, Attempt::Acquired(_)));
        Ok(())
    }

    /// A lock file deleted while held excludes no one: `keep` sees that the
    /// path no longer names the locked file and takes the new one, or says
    /// who has it.
    #[test]
    fn a_removed_lock_file_is_taken_again_or_reported_lost(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let root = dir.path().join("root");
        let Attempt::Acquired(lock) = try_acquire(&root)? else {
            panic!("a fresh root is free");
        };
        assert_eq!(lock.keep()?, Kept::Held);
        // The whole root deleted: it comes back, locked by us.
        fs::remove_dir_all(&root)?;
        assert_eq!(lock.keep()?, Kept::Retaken);
        assert_eq!(lock.keep()?, Kept::Held);
        assert!(matches!(try_acquire(&root)?, Attempt::Held { .. }));
        // The file removed, and a second instance locked the new one.
        fs::remove_file(root.join(FILE_NAME))?;
        let Attempt::Acquired(second) = try_acquire(&root)? else {
            panic!("the removed file held no one off");
        };
        match lock.keep() {
            Err(Error::Lost { holder, .. }) => {
                assert!(holder.starts_with("pid "), "{holder}")
            }
            other => panic!("the lock is lost: {other:?}"),
        }
        drop(second);
        assert_eq!(lock.keep()?, Kept::Retaken);
        Ok(())
    }

    #[test]
    fn a_root_that_is_a_file_is_named() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let root = dir.path().join("root");
        fs::write(&root, "x")?;
        let e = try_acquire(&root).expect_err("a file is no root");
        assert!(e.to_string().contains("is not a directory"), "{e}");
        Ok(())
    }
}
