//! Small filesystem helpers: atomic file writes, directory fsync, touching,
//! removing whatever is at a path (and saying what stopped a removal).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Removes a file, symlink or directory tree; missing is fine.
pub fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
    }
}

/// Writes `content` to a temporary file next to `path` and renames it over
/// `path`, so readers see the old or the new content, never a mix.
pub fn write_atomic(path: &Path, content: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(content)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Flushes a directory's entries (after a rename in it) to disk.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Sets the modification time of `path` (file or directory) to now.
pub fn touch_mtime(path: &Path) -> io::Result<()> {
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &nix::sys::time::TimeSpec::UTIME_OMIT,
        &nix::sys::time::TimeSpec::UTIME_NOW,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(io::Error::from)
}

/// Creates `path` (and its parents) if missing, then bumps its mtime.
pub fn touch_file(path: &Path) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    touch_mtime(path)
}

/// A directory below a tree this process could not finish removing, and
/// who owns it: what an operator needs to clear it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocker {
    /// The directory whose entries could not be removed (or listed).
    pub path: PathBuf,
    pub uid: u32,
    pub mode: u32,
}

/// After a failed removal of `path`: the first directory left below it
/// whose entries this process may not delete (no write or search
/// permission for its effective user). Looks only, never follows symlinks.
pub fn blocker(path: &Path) -> Option<Blocker> {
    use nix::unistd::{eaccess, AccessFlags};
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&dir) else {
            continue;
        };
        if !meta.is_dir() {
            continue;
        }
        let may_delete = eaccess(&dir, AccessFlags::W_OK | AccessFlags::X_OK).is_ok();
        let listed = fs::read_dir(&dir).map(|rd| rd.flatten().collect::<Vec<_>>());
        match listed {
            Ok(entries) if may_delete || entries.is_empty() => stack.extend(
                entries
                    .iter()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            ),
            _ => {
                return Some(Blocker {
                    path: dir,
                    uid: meta.uid(),
                    mode: meta.mode() & 0o7777,
                })
            }
        }
    }
    None
}

/// Removes what can be removed of the entries of the directory `path`, each
/// on its own. A symlink put at `path` (by whoever may write its parent) is
/// not followed: the entries are reached through an `O_NOFOLLOW` descriptor
/// (`/proc/self/fd/<n>`; without `/proc` nothing is removed).
pub fn remove_entries(path: &Path) {
    use nix::fcntl::{open, OFlag};
    use std::os::fd::AsRawFd;
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let Ok(fd) = open(path, flags, nix::sys::stat::Mode::empty()) else {
        return;
    };
    let dir = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    for child in fs::read_dir(&dir).into_iter().flatten().flatten() {
        let _ = remove_any(&child.path());
    }
}
