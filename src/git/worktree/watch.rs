//! Noticing any change to a tree from a point in time on: one inotify
//! watch per directory, set before the directory is listed, so that an
//! inspection taken while the process is idle still holds at the next
//! change if nothing was reported since. A write through a file opened
//! long before (which no `lstat` walk can tell from a clean file written in
//! the same clock tick) is reported too. Not reported by inotify: writes
//! through a shared memory mapping, and changes made by another machine to
//! a network filesystem; [`Watch::start`] refuses filesystems where the
//! second can happen.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

/// What counts as a change: anything that alters a file's bytes, mode,
/// owner, times or links, or a directory's entries, or moves or deletes a
/// watched directory. Reads (`IN_ACCESS`, `IN_OPEN`) do not.
const CHANGES: AddWatchFlags = AddWatchFlags::IN_MODIFY
    .union(AddWatchFlags::IN_ATTRIB)
    .union(AddWatchFlags::IN_CLOSE_WRITE)
    .union(AddWatchFlags::IN_CREATE)
    .union(AddWatchFlags::IN_DELETE)
    .union(AddWatchFlags::IN_MOVED_FROM)
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_DELETE_SELF)
    .union(AddWatchFlags::IN_MOVE_SELF)
    .union(AddWatchFlags::IN_DONT_FOLLOW)
    .union(AddWatchFlags::IN_ONLYDIR);

/// Filesystems whose changes all pass through this kernel (`statfs`
/// magic numbers): tmpfs, ext2/3/4, xfs, btrfs, overlayfs.
const LOCAL_FILESYSTEMS: [i64; 5] = [0x0102_1994, 0xEF53, 0x5846_5342, 0x9123_683E, 0x794C_7630];

/// `None` if `dir` is on a filesystem whose changes all pass through this
/// kernel (and whose times come from its clock, in nanoseconds), else the
/// filesystem's type.
fn not_local(dir: &Path) -> io::Result<Option<i64>> {
    let magic = nix::sys::statfs::statfs(dir)?.filesystem_type().0 as i64;
    Ok((!LOCAL_FILESYSTEMS.contains(&magic)).then_some(magic))
}

/// Whether `dir` is on a local filesystem (see [`LOCAL_FILESYSTEMS`]).
pub(crate) fn is_local(dir: &Path) -> bool {
    not_local(dir).is_ok_and(|other| other.is_none())
}

/// Every directory of a tree, watched since [`Watch::start`].
pub(crate) struct Watch {
    inotify: Inotify,
    root: WatchDescriptor,
    changed: bool,
}

impl Watch {
    /// Watches `dir` and every directory below it (links not followed).
    /// Fails where a change could go unreported: a network or unknown
    /// filesystem, no inotify instance or watch left (`max_user_instances`,
    /// `max_user_watches`), a directory that cannot be read.
    pub(crate) fn start(dir: &Path) -> io::Result<Self> {
        if let Some(magic) = not_local(dir)? {
            return Err(io::Error::other(format!(
                "filesystem type {magic:#x} may change without inotify seeing it"
            )));
        }
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        let root = inotify.add_watch(dir, CHANGES)?;
        let device = std::fs::symlink_metadata(dir)?.dev();
        // Each directory is watched before it is listed: what is created in
        // it after the listing is reported.
        let mut pending: Vec<PathBuf> = list_subdirs(dir, device)?;
        while let Some(next) = pending.pop() {
            inotify.add_watch(&next, CHANGES)?;
            pending.extend(list_subdirs(&next, device)?);
        }
        Ok(Self {
            inotify,
            root,
            changed: false,
        })
    }

    /// Nothing changed since [`Watch::start`] (once a change is seen, it
    /// stays seen). With `root_may_move`, the tree's own directory being
    /// renamed (the claim) does not count; everything else does, and so
    /// does a lost event (queue overflow).
    pub(crate) fn unchanged(&mut self, root_may_move: bool) -> bool {
        while !self.changed {
            match self.inotify.read_events() {
                Ok(events) if events.is_empty() => break,
                Ok(events) => {
                    self.changed = events.iter().any(|event| {
                        !(root_may_move
                            && event.wd == self.root
                            && event.mask == AddWatchFlags::IN_MOVE_SELF)
                    });
                }
                Err(nix::errno::Errno::EAGAIN) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => self.changed = true,
            }
        }
        !self.changed
    }
}

/// The directories directly in `dir` on `device` (another filesystem
/// mounted below would need its own check: refused).
fn list_subdirs(dir: &Path, device: u64) -> io::Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            if entry.metadata()?.dev() != device {
                return Err(io::Error::other(format!(
                    "{} is another filesystem",
                    entry.path().display()
                )));
            }
            dirs.push(entry.path());
        }
    }
    Ok(dirs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    fn tree() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(tmp.path().join("a/b")).expect("mkdir");
        fs::write(tmp.path().join("top.md"), "top").expect("write");
        fs::write(tmp.path().join("a/b/deep.md"), "deep").expect("write");
        tmp
    }

    /// Reading, listing and stat-ing the tree is not a change.
    #[test]
    fn reads_are_not_changes() {
        let tmp = tree();
        let mut watch = Watch::start(tmp.path()).expect("watch");
        fs::read(tmp.path().join("a/b/deep.md")).expect("read");
        fs::read_dir(tmp.path().join("a"))
            .expect("list")
            .for_each(drop);
        fs::symlink_metadata(tmp.path().join("top.md")).expect("stat");
        assert!(watch.unchanged(false));
    }

    /// Every kind of change, each on a fresh tree, is seen, also the write
    /// through a file opened before the watch began (in the same clock tick,
    /// same size, a stat walk can miss it) and one deep in the tree.
    #[test]
    fn every_kind_of_change_is_seen() {
        type Change = fn(&Path);
        let changes: [(&str, Change); 9] = [
            ("write in place", |d| {
                fs::write(d.join("a/b/deep.md"), "DEEP").expect("write")
            }),
            ("chmod", |d| {
                fs::set_permissions(d.join("top.md"), fs::Permissions::from_mode(0o755))
                    .expect("chmod")
            }),
            ("create", |d| {
                fs::write(d.join("a/new"), "x").expect("create")
            }),
            ("delete", |d| fs::remove_file(d.join("top.md")).expect("rm")),
            ("rename inside", |d| {
                fs::rename(d.join("top.md"), d.join("a/top.md")).expect("mv")
            }),
            ("new directory", |d| {
                fs::create_dir(d.join("a/b/c")).expect("mkdir")
            }),
            ("directory swapped for a link", |d| {
                fs::rename(d.join("a/b"), d.join("b-old")).expect("mv");
                std::os::unix::fs::symlink("/etc", d.join("a/b")).expect("ln");
            }),
            ("truncate", |d| {
                fs::File::options()
                    .write(true)
                    .truncate(true)
                    .open(d.join("top.md"))
                    .expect("truncate");
            }),
            ("hard link", |d| {
                fs::hard_link(d.join("top.md"), d.join("a/linked")).expect("ln")
            }),
        ];
        for (what, change) in changes {
            let tmp = tree();
            let mut watch = Watch::start(tmp.path()).expect("watch");
            change(tmp.path());
            assert!(!watch.unchanged(true), "{what} was not seen");
            assert!(!watch.unchanged(true), "{what}: a change must stay seen");
        }

        let tmp = tree();
        let mut open = fs::File::options()
            .write(true)
            .open(tmp.path().join("a/b/deep.md"))
            .expect("open");
        let mut watch = Watch::start(tmp.path()).expect("watch");
        assert!(watch.unchanged(false));
        open.write_all(b"DEEP").expect("write");
        assert!(
            !watch.unchanged(true),
            "a write through a file opened before the watch was not seen"
        );
    }

    /// The claim renames the tree's own directory: allowed only when asked.
    #[test]
    fn the_trees_own_rename_counts_only_when_not_allowed() {
        let outer = tempfile::tempdir().expect("tempdir");
        let (from, to) = (outer.path().join("spare"), outer.path().join("staging"));
        fs::create_dir_all(from.join("a")).expect("mkdir");
        let mut allowed = Watch::start(&from).expect("watch");
        let mut counted = Watch::start(&from).expect("watch");
        fs::rename(&from, &to).expect("rename");
        assert!(allowed.unchanged(true));
        assert!(!counted.unchanged(false));
        fs::write(to.join("a/x"), "x").expect("write");
        assert!(
            !allowed.unchanged(true),
            "a change after the move was not seen"
        );
    }
}
