//! `--escaping-symlinks` over a whole worktree with its submodules. A link
//! of one level (the superproject or a submodule) can resolve through the
//! links of another: the superproject's `a -> sub/l/l/../../..` sees `sub/l`
//! as a directory, the submodule's `l -> .` is harmless alone, together `a`
//! leaves the worktree. So once every level is on disk, the links of all
//! levels are judged together, read from disk as the kernel will follow
//! them. Which paths are links comes from each level's index (no walk of
//! the tree).

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use gix::bstr::{BStr, BString, ByteSlice};
use gix::index::entry::{Flags, Mode};
use gix::ObjectId;

use super::{join_path, read_record, record_dir, to_path, Error, Target};
use crate::git::symlinks::Links;
use crate::git::worktree;
use crate::types::SymlinkPolicy;

/// One level's index (written back when `skip` left an entry out).
struct Level {
    /// Path from the worktree's root (empty at the top).
    prefix: BString,
    index: gix::index::File,
    /// An entry was left out: the file must be written back.
    changed: bool,
}

/// Judges together the links of the worktree of `commit` at `target`
/// (`top`: its index) and of the submodules in `submodules` (record keys):
/// `Refuse` fails on an escaping link, `Skip` removes it from disk, marks it
/// skip-worktree in its level's index and returns it.
pub(super) fn check(
    target: &Target<'_>,
    commit: ObjectId,
    top: gix::index::File,
    submodules: &HashSet<BString>,
    policy: SymlinkPolicy,
) -> Result<Vec<String>, Error> {
    if policy == SymlinkPolicy::Allow {
        return Ok(Vec::new());
    }
    let mut levels = read_levels(target, top, submodules)?;
    let mut links = Links::default();
    for level in &levels {
        collect(target.worktree, level, &mut links)?;
    }
    let escaping: Vec<(String, String)> = links
        .escaping()
        .into_iter()
        .map(|(p, t)| (lossy(p), lossy(t)))
        .collect();
    let Some((path, link_target)) = escaping.first() else {
        return Ok(Vec::new());
    };
    if policy == SymlinkPolicy::Refuse {
        return Err(Error::EscapingSymlink {
            commit,
            path: path.clone(),
            target: link_target.clone(),
            more: match escaping.len() {
                1 => String::new(),
                n => format!(" (and {} more)", n - 1),
            },
        });
    }
    let paths: Vec<String> = escaping.into_iter().map(|(p, _)| p).collect();
    for path in &paths {
        remove(target.worktree, &mut levels, BStr::new(path.as_bytes()))?;
    }
    write_changed(target, &mut levels)?;
    Ok(paths)
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The top level's index and that of every submodule checked out (a
/// submodule left out by `update = none` has none).
fn read_levels(
    target: &Target<'_>,
    top: gix::index::File,
    submodules: &HashSet<BString>,
) -> Result<Vec<Level>, Error> {
    let mut levels = vec![Level {
        prefix: BString::default(),
        index: top,
        changed: false,
    }];
    for key in submodules {
        let dir = record_dir(target.admin, key.as_ref());
        let record = read_record(&dir).ok_or_else(|| unreadable(&dir))?;
        if !record.skip {
            levels.push(Level {
                prefix: key.clone(),
                index: read(&dir.join("index"))?,
                changed: false,
            });
        }
    }
    Ok(levels)
}

fn read(path: &Path) -> Result<gix::index::File, Error> {
    worktree::read_index(path).ok_or_else(|| unreadable(path))
}

fn unreadable(path: &Path) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source: io::Error::other("cannot read it to check the worktree's symlinks"),
    }
}

/// Adds the level's links that are on disk, with their targets as written.
fn collect(worktree: &Path, level: &Level, links: &mut Links) -> Result<(), Error> {
    for entry in level.index.entries() {
        if entry.mode != Mode::SYMLINK || entry.flags.contains(Flags::SKIP_WORKTREE) {
            continue;
        }
        let full = join_path(level.prefix.as_ref(), entry.path(&level.index));
        let path = on_disk(worktree, full.as_ref())?;
        match fs::read_link(&path) {
            Ok(target) => links.insert(&full, target.as_os_str().as_bytes()),
            // Not a link on disk: nothing to follow.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::InvalidInput
                ) => {}
            Err(source) => return Err(Error::Io { path, source }),
        }
    }
    Ok(())
}

fn on_disk(worktree: &Path, full: &BStr) -> Result<PathBuf, Error> {
    to_path(full)
        .map(|p| worktree.join(p))
        .ok_or_else(|| Error::Io {
            path: worktree.to_path_buf(),
            source: io::Error::other(format!("{full:?} is not a valid path here")),
        })
}

/// Unlinks `full` and marks it off the disk in the index of the level that
/// holds it (the one with the longest prefix).
fn remove(worktree: &Path, levels: &mut [Level], full: &BStr) -> Result<(), Error> {
    let path = on_disk(worktree, full)?;
    fs::remove_file(&path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    let owner = levels
        .iter_mut()
        .filter(|l| l.prefix.is_empty() || is_below(full, l.prefix.as_ref()))
        .max_by_key(|l| l.prefix.len());
    if let Some(level) = owner {
        let skip = level.prefix.len() + usize::from(!level.prefix.is_empty());
        let relative = &full[skip..];
        // Kept in the index, off the disk: a removed entry would show in
        // `git status` of the worktree as a staged deletion.
        for (entry, p) in level.index.entries_mut_with_paths() {
            if p == relative {
                worktree::leave_out(entry);
            }
        }
        level.changed = true;
    }
    Ok(())
}

fn is_below(full: &BStr, prefix: &BStr) -> bool {
    full.strip_prefix(prefix.as_bytes())
        .is_some_and(|rest| rest.first() == Some(&b'/'))
}

/// Writes back the indexes entries were left out of, so the start-up check
/// and the reuse of kept submodules see the tree as it is on disk.
fn write_changed(target: &Target<'_>, levels: &mut [Level]) -> Result<(), Error> {
    for level in levels.iter_mut().filter(|l| l.changed) {
        let path = if level.prefix.is_empty() {
            target.admin.join("index")
        } else {
            record_dir(target.admin, level.prefix.as_ref()).join("index")
        };
        worktree::write_index(&mut level.index, &path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
    }
    Ok(())
}
