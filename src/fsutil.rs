//! Small filesystem helpers: atomic file writes, directory fsync, touching,
//! removing whatever is at a path (and saying what stopped a removal, or
//! below a directory without following links on the way), and the
//! process's file-mode policy.
//!
//! File modes: `--group-write` is git-sync's umask 0002 (else 0022), set
//! once for the whole process before any thread starts. A umask is global
//! state, but that is what we want here: it covers every file and directory
//! anyone in the process creates (the git layer's checkouts, refs,
//! directories) and
//! the hooks we spawn inherit it, exactly as under git-sync. What the umask
//! cannot reach are files created with an explicit private mode (the
//! `tempfile` crate's 0600, which the git layer uses for packs): ours ask for
//! 0666 and let the umask decide; the git layer's are widened after the write with
//! [`apply_umask`], using the recorded mask (umask(2) cannot be read
//! without being set, which would race with other threads).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// The umask set by [`set_umask`] (0022 until then, the usual default).
static UMASK: AtomicU32 = AtomicU32::new(0o022);

/// The umask [`set_umask`] set (0022 before).
pub fn umask() -> u32 {
    UMASK.load(Ordering::SeqCst)
}

/// Sets the process umask: 0002 with `--group-write`, else 0022. Call
/// before any other thread exists.
pub fn set_umask(group_write: bool) {
    let mask = if group_write { 0o002 } else { 0o022 };
    UMASK.store(mask, Ordering::SeqCst);
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
}

/// The mode a file created with `mode` should have under `umask`: the
/// owner's bits granted to group and others too, minus the umask; bits are
/// only ever added (a read-only file stays read-only, an executable gains x
/// where it gains r).
pub fn widened_mode(mode: u32, umask: u32) -> u32 {
    let owner = (mode >> 6) & 0o7;
    let everyone = (owner << 6) | (owner << 3) | owner;
    mode | (everyone & !umask & 0o777)
}

/// Widens `path`'s mode to what the process umask would have given it had
/// it not been created private (see the module doc). Nothing is written
/// when the mode is already right, so calling it on every pass is free.
pub fn apply_umask(path: &Path) -> io::Result<()> {
    let mode = fs::symlink_metadata(path)?.permissions().mode();
    let wanted = widened_mode(mode, UMASK.load(Ordering::SeqCst));
    if wanted == mode {
        return Ok(());
    }
    fs::set_permissions(path, fs::Permissions::from_mode(wanted))
}

/// Removes the file, symlink or directory tree at `rel` below the open
/// directory `root`, following no symlink on the way: every directory
/// between is opened with `O_NOFOLLOW` from the one before, and a tree is
/// emptied through its own descriptors. A path that lies in a directory
/// someone replaced by a link fails (`ENOTDIR`) instead of deleting
/// what the link points at. Missing is fine.
pub fn remove_beneath(root: &fs::File, rel: &Path) -> io::Result<()> {
    use std::os::fd::AsFd;
    let Some(name) = rel.file_name() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: no file name to remove", rel.display()),
        ));
    };
    let parent = match open_dirs_beneath(root.as_fd(), rel.parent().unwrap_or(Path::new(""))) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        other => other?,
    };
    remove_at(&parent, name)
}

/// Opens the directory `rel` below `dir` one component at a time, never
/// through a symlink.
fn open_dirs_beneath(
    dir: std::os::fd::BorrowedFd<'_>,
    rel: &Path,
) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::AsFd;
    let mut fd: Option<std::os::fd::OwnedFd> = None;
    for part in rel.components() {
        let std::path::Component::Normal(part) = part else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a plain relative path", rel.display()),
            ));
        };
        let from = fd.as_ref().map_or(dir, |f| f.as_fd());
        fd = Some(open_dir_at(from, part)?);
    }
    match fd {
        Some(fd) => Ok(fd),
        None => Ok(dir.try_clone_to_owned()?),
    }
}

fn open_dir_at(
    dir: std::os::fd::BorrowedFd<'_>,
    name: &std::ffi::OsStr,
) -> io::Result<std::os::fd::OwnedFd> {
    use nix::fcntl::OFlag;
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    Ok(nix::fcntl::openat(
        dir,
        name,
        flags,
        nix::sys::stat::Mode::empty(),
    )?)
}

/// Removes `name` in `dir`: a directory through its descriptor, depth first.
fn remove_at(dir: &std::os::fd::OwnedFd, name: &std::ffi::OsStr) -> io::Result<()> {
    use nix::sys::stat::{fstatat, SFlag};
    use nix::unistd::{unlinkat, UnlinkatFlags};
    let stat = match fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Err(nix::errno::Errno::ENOENT) => return Ok(()),
        other => other?,
    };
    if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
        use std::os::fd::AsFd;
        let sub = open_dir_at(dir.as_fd(), name)?;
        let names = list_dir(&sub)?;
        for child in names {
            remove_at(&sub, &child)?;
        }
        unlinkat(dir, name, UnlinkatFlags::RemoveDir)?;
    } else {
        unlinkat(dir, name, UnlinkatFlags::NoRemoveDir)?;
    }
    Ok(())
}

/// The names in an open directory (without `.` and `..`).
fn list_dir(dir: &std::os::fd::OwnedFd) -> io::Result<Vec<std::ffi::OsString>> {
    use std::os::unix::ffi::OsStrExt;
    let mut listing = nix::dir::Dir::from_fd(dir.try_clone()?)?;
    let mut names = Vec::new();
    for entry in listing.iter() {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(std::ffi::OsStr::from_bytes(&name).to_os_string());
        }
    }
    Ok(names)
}

/// Removes a file, symlink or directory tree; missing is fine.
pub fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path).or_else(|e| {
            // A directory of ours someone made unreadable (`chmod 000` on
            // a published tree): we may give ourselves access back.
            match e.kind() == io::ErrorKind::PermissionDenied && open_own_dirs(path) > 0 {
                true => fs::remove_dir_all(path),
                false => Err(e),
            }
        }),
        Ok(_) => fs::remove_file(path),
    }
}

/// Adds `rwx` for the owner to every directory below `path` (itself
/// included) that this process owns and lacks it. The walk goes from
/// descriptor to descriptor (`openat` of each name, `O_PATH | O_NOFOLLOW`,
/// changed and listed through `/proc/self/fd`), so a directory swapped for
/// a link meanwhile is never entered; it stays on `path`'s filesystem and
/// stops after [`MAX_DIRS_OPENED`] directories. Returns how many it changed.
fn open_own_dirs(path: &Path) -> usize {
    use nix::fcntl::{open, openat, OFlag};
    use nix::sys::stat::Mode;
    use std::os::fd::{AsFd, AsRawFd, OwnedFd};
    use std::rc::Rc;
    let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let by_fd = |fd: &OwnedFd| PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    let Ok(top) = open(path, flags, Mode::empty()) else {
        return 0;
    };
    let Ok(device) = fs::metadata(by_fd(&top)).map(|m| m.dev()) else {
        return 0;
    };
    let euid = nix::unistd::geteuid().as_raw();
    let mut changed = 0;
    // Directories to visit: (parent, name), the parent kept open until its
    // last child is; the top is its own entry.
    let mut pending: Vec<(Rc<OwnedFd>, Option<std::ffi::OsString>)> = vec![(Rc::new(top), None)];
    for _ in 0..MAX_DIRS_OPENED {
        let Some((parent, name)) = pending.pop() else {
            break;
        };
        let dir = match name {
            None => parent,
            Some(name) => match openat(parent.as_fd(), name.as_os_str(), flags, Mode::empty()) {
                Ok(fd) => Rc::new(fd),
                Err(_) => continue,
            },
        };
        let here = by_fd(&dir);
        let Ok(meta) = fs::metadata(&here) else {
            continue;
        };
        if meta.dev() != device {
            continue;
        }
        if meta.uid() == euid && meta.mode() & 0o700 != 0o700 {
            let mode = (meta.mode() & 0o7777) | 0o700;
            if fs::set_permissions(&here, fs::Permissions::from_mode(mode)).is_ok() {
                changed += 1;
            }
        }
        let Ok(entries) = fs::read_dir(&here) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push((Rc::clone(&dir), Some(entry.file_name())));
            }
        }
    }
    changed
}

/// How many directories [`open_own_dirs`] looks at, at most.
const MAX_DIRS_OPENED: usize = 1_000_000;

/// Joins `p` onto `base` (an absolute `p` replaces it) and removes `.` and
/// `..` lexically, like Go's `filepath.Join`.
pub fn clean_join(base: &Path, p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for comp in base.join(p).components() {
        match comp {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Writes `content` to a temporary file next to `path` and renames it over
/// `path`, so readers see the old or the new content, never a mix.
pub fn write_atomic(path: &Path, content: &[u8]) -> io::Result<()> {
    let mut tmp = temp_file_beside(path)?;
    tmp.write_all(content)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// A temporary file in `path`'s directory, to be renamed over `path`:
/// 0666 minus the umask, as `open(2)` would give (tempfile's default is 0600).
pub fn temp_file_beside(path: &Path) -> io::Result<tempfile::NamedTempFile> {
    let dir = path.parent().unwrap_or(Path::new("."));
    tempfile::Builder::new()
        .permissions(fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)
}

/// Flushes a directory's entries (after a rename in it) to disk.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Sets the modification time of `path` (file or directory) to now.
pub fn touch_mtime(path: &Path) -> io::Result<()> {
    // Both times set to now, not mtime alone: that is the one change the
    // kernel lets anyone with write access make (a file another UID made,
    // group-writable, after a changed runAsUser); any other needs its owner.
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &nix::sys::time::TimeSpec::UTIME_NOW,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_dirs_get_rwx_back_but_never_through_a_link() {
        let base = tempfile::tempdir().expect("tempdir");
        let tree = base.path().join("tree");
        let outside = base.path().join("outside");
        fs::create_dir_all(tree.join("a/b")).expect("mkdir");
        fs::create_dir_all(&outside).expect("mkdir");
        std::os::unix::fs::symlink(&outside, tree.join("link")).expect("symlink");
        for dir in [tree.join("a/b"), tree.join("a"), outside.clone()] {
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o050)).expect("chmod");
        }
        let mode = |p: &Path| fs::metadata(p).expect("stat").mode() & 0o7777;
        assert_eq!(open_own_dirs(&tree), 2, "a and a/b");
        assert_eq!(mode(&tree.join("a")), 0o750);
        assert_eq!(mode(&tree.join("a/b")), 0o750);
        assert_eq!(mode(&outside), 0o050, "reached through the link");
        remove_any(&tree).expect("removable now");
        assert!(!tree.exists());
    }

    #[test]
    fn remove_beneath_removes_files_and_trees_and_never_goes_through_a_link() {
        let base = tempfile::tempdir().expect("tempdir");
        let tree = base.path().join("tree");
        let outside = base.path().join("outside");
        fs::create_dir_all(tree.join("d/e")).expect("mkdir");
        fs::create_dir_all(&outside).expect("mkdir");
        fs::write(tree.join("top.txt"), "x").expect("w");
        fs::write(tree.join("d/e/f.txt"), "x").expect("w");
        fs::write(outside.join("f.txt"), "keep me").expect("w");
        let root = fs::File::open(&tree).expect("open");

        remove_beneath(&root, Path::new("top.txt")).expect("file");
        assert!(!tree.join("top.txt").exists());
        remove_beneath(&root, Path::new("missing/below")).expect("missing is fine");
        // A directory swapped for a link to somewhere else: the removal of
        // a path below it fails, what the link points at stays.
        fs::rename(tree.join("d/e"), base.path().join("moved")).expect("mv");
        std::os::unix::fs::symlink(&outside, tree.join("d/e")).expect("ln");
        let err = remove_beneath(&root, Path::new("d/e/f.txt")).expect_err("through a link");
        // O_DIRECTORY|O_NOFOLLOW on a link: ENOTDIR (ELOOP without O_DIRECTORY).
        assert!(
            matches!(err.raw_os_error(), Some(libc::ENOTDIR | libc::ELOOP)),
            "{err}"
        );
        assert_eq!(
            fs::read_to_string(outside.join("f.txt")).expect("r"),
            "keep me"
        );
        // The link itself goes, not its target; then a whole tree.
        remove_beneath(&root, Path::new("d/e")).expect("link");
        assert!(outside.join("f.txt").exists());
        remove_beneath(&root, Path::new("d")).expect("tree");
        assert!(!tree.join("d").exists());
    }

    #[test]
    fn widened_mode_gives_the_group_what_the_owner_has() {
        assert_eq!(widened_mode(0o100600, 0o002), 0o100664);
        assert_eq!(widened_mode(0o100600, 0o022), 0o100644);
        assert_eq!(
            widened_mode(0o100400, 0o002),
            0o100444,
            "read-only stays so"
        );
        assert_eq!(widened_mode(0o040700, 0o002), 0o040775);
        assert_eq!(
            widened_mode(0o100664, 0o022),
            0o100664,
            "bits are never removed"
        );
    }
}
