//! Linked worktrees the git CLI understands, written without the git CLI.
//!
//! A worktree for commit `<sha>` is a directory whose `.git` file says
//! `gitdir: ../../.git/worktrees/<sha>` (relative, as git-sync writes it), and
//! an admin directory `<root>/.git/worktrees/<sha>/` with `HEAD` (detached at
//! the commit), `commondir`, `gitdir` and `index` (stat data of the checkout,
//! so `git status` is clean without rehashing). Files are written into a
//! staging directory first; the caller moves it into place. A new worktree is
//! either checked out in full or rewritten from a retired one, touching only
//! what changed.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use gix::ObjectId;

use super::sparse::Patterns;
use super::symlinks::Links;
use super::transport::Budget;
use crate::types::SymlinkPolicy;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("could not read commit {commit}: {message}")]
    Commit { commit: ObjectId, message: String },
    #[error("commit {commit} has an unsafe path, refusing to check it out: {message}")]
    UnsafePath { commit: ObjectId, message: String },
    #[error(
        "commit {commit} has a symbolic link that points outside the worktree: {path} -> {target}{more}; \
         refusing to publish it (--escaping-symlinks=skip leaves such links out, =allow writes them)"
    )]
    EscapingSymlink {
        commit: ObjectId,
        path: String,
        target: String,
        more: String,
    },
    #[error("checkout of {commit} failed: {message}")]
    Checkout { commit: ObjectId, message: String },
    #[error("checkout interrupted")]
    Interrupted,
    #[error("sync timeout exceeded during checkout")]
    Timeout,
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where a worktree lives: its final path and its admin directory.
pub struct Placement {
    /// The directory files are written to now: absent for [`materialize`],
    /// a retired worktree renamed here for [`rewrite`].
    pub staging: PathBuf,
    /// Where the directory will be renamed to (`<root>/.worktrees/<sha>`).
    pub final_path: PathBuf,
    /// `<root>/.git/worktrees/<sha>`.
    pub admin_dir: PathBuf,
}

/// The entries a commit's worktree will hold, checked before anything is
/// written: unsafe paths (`..`, `.git`, ...) are refused by gix's path
/// validation, escaping symlinks according to `policy`.
pub struct Planned {
    commit: ObjectId,
    index: gix::index::File,
    /// Escaping symlinks left out under `SymlinkPolicy::Skip`.
    pub skipped_links: Vec<String>,
    /// The sparse checkout patterns applied, if any (see [`Planned::restrict`]).
    sparse: Option<Patterns>,
    /// Entries the sparse patterns leave out.
    pub sparse_excluded: usize,
}

/// Marks an index entry that is not on disk, as git's sparse checkout does
/// (git reads the bit from the extended flags, hence both).
const NOT_ON_DISK: gix::index::entry::Flags =
    gix::index::entry::Flags::SKIP_WORKTREE.union(gix::index::entry::Flags::EXTENDED);

fn on_disk(entry: &gix::index::Entry) -> bool {
    !entry
        .flags
        .contains(gix::index::entry::Flags::SKIP_WORKTREE)
}

/// What building a worktree did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Built {
    /// Entries written (files, symlinks).
    pub written: usize,
    /// Files kept from the retired worktree that was rewritten.
    pub kept: usize,
}

/// Reads the commit's tree into an index and applies the safety checks.
pub fn plan(
    repo: &gix::Repository,
    commit: ObjectId,
    policy: SymlinkPolicy,
) -> Result<Planned, Error> {
    let tree = tree_of(repo, commit)?;
    let mut index = repo.index_from_tree(&tree).map_err(|e| {
        let message = crate::types::error_chain(&e);
        if message.contains("is invalid") {
            Error::UnsafePath { commit, message }
        } else {
            Error::Commit { commit, message }
        }
    })?;
    let skipped_links = apply_symlink_policy(repo, commit, &mut index, policy)?;
    Ok(Planned {
        commit,
        index,
        skipped_links,
        sparse: None,
        sparse_excluded: 0,
    })
}

impl Planned {
    /// Sparse checkout: entries `patterns` do not include stay in the index
    /// (so `git status` in the worktree is clean) but are not written.
    pub fn restrict(&mut self, patterns: &Patterns) {
        let mut excluded = 0;
        for (entry, path) in self.index.entries_mut_with_paths() {
            if !patterns.includes(path) {
                entry.flags.insert(NOT_ON_DISK);
                excluded += 1;
            }
        }
        self.sparse = Some(patterns.clone());
        self.sparse_excluded = excluded;
    }
}

fn apply_symlink_policy(
    repo: &gix::Repository,
    commit: ObjectId,
    index: &mut gix::index::File,
    policy: SymlinkPolicy,
) -> Result<Vec<String>, Error> {
    if policy == SymlinkPolicy::Allow {
        return Ok(Vec::new());
    }
    let mut links = Links::default();
    for entry in index.entries() {
        if entry.mode != gix::index::entry::Mode::SYMLINK {
            continue;
        }
        let blob = repo.find_object(entry.id).map_err(|e| Error::Commit {
            commit,
            message: format!("reading symlink {}: {e}", entry.path(index)),
        })?;
        links.insert(entry.path(index), &blob.data);
    }
    let escaping: Vec<(String, String)> = links
        .escaping()
        .into_iter()
        .map(|(p, t)| {
            (
                String::from_utf8_lossy(p).into_owned(),
                String::from_utf8_lossy(t).into_owned(),
            )
        })
        .collect();
    let Some((path, target)) = escaping.first() else {
        return Ok(Vec::new());
    };
    if policy == SymlinkPolicy::Refuse {
        let more = match escaping.len() {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        return Err(Error::EscapingSymlink {
            commit,
            path: path.clone(),
            target: target.clone(),
            more,
        });
    }
    let skip: std::collections::HashSet<&str> = escaping.iter().map(|(p, _)| p.as_str()).collect();
    index.remove_entries(|_, path, _| skip.contains(String::from_utf8_lossy(path).as_ref()));
    Ok(escaping.into_iter().map(|(p, _)| p).collect())
}

/// Checks the planned commit out into `placement.staging` (which must not
/// exist) and writes the admin files.
pub fn materialize(
    repo: &gix::Repository,
    planned: Planned,
    placement: &Placement,
    budget: &Budget,
) -> Result<Built, Error> {
    let Planned {
        commit,
        mut index,
        sparse,
        sparse_excluded,
        ..
    } = planned;
    fs::create_dir_all(&placement.staging).map_err(io_err(&placement.staging))?;
    // The checkout counts skipped entries as done.
    let written = checkout_files(repo, commit, &mut index, &placement.staging, true, budget)?
        .saturating_sub(sparse_excluded);
    finish(commit, &mut index, sparse.as_ref(), placement)?;
    Ok(Built { written, kept: 0 })
}

/// Checks the planned commit out into `dir` (an existing empty directory)
/// without admin files: a submodule's content. Returns the index with the
/// checkout's stat data.
pub fn checkout_into(
    repo: &gix::Repository,
    planned: Planned,
    dir: &Path,
    budget: &Budget,
) -> Result<(Built, gix::index::File), Error> {
    let Planned {
        commit, mut index, ..
    } = planned;
    let written = checkout_files(repo, commit, &mut index, dir, true, budget)?;
    Ok((Built { written, kept: 0 }, index))
}

/// Turns a retired worktree (already renamed to `placement.staging`, its old
/// admin dir at `old_admin`) into the planned commit's: files whose content
/// and mode are unchanged stay as they are; everything else is unlinked and
/// written afresh (new inodes, so a reader holding an old file open keeps
/// reading the old content). The cost follows the change, not the tree.
pub fn rewrite(
    repo: &gix::Repository,
    planned: Planned,
    placement: &Placement,
    old_admin: &Path,
    budget: &Budget,
) -> Result<Built, Error> {
    let Planned {
        commit,
        mut index,
        sparse,
        sparse_excluded,
        ..
    } = planned;
    let old = gix::index::File::at(
        old_admin.join("index"),
        gix::hash::Kind::Sha1,
        false,
        Default::default(),
    )
    .map_err(|e| Error::Checkout {
        commit,
        message: format!("reading the retired worktree's index: {e}"),
    })?;
    let dir = placement.staging.as_path();
    remove_changed(&old, &index, dir)?;
    let kept = keep_unchanged(&old, &mut index);
    // The checkout counts skipped entries as done.
    let written = checkout_files(repo, commit, &mut index, dir, false, budget)?
        .saturating_sub(kept.len() + sparse_excluded);
    let entries = index.entries_mut();
    for i in &kept {
        entries[*i].flags.remove(NOT_ON_DISK);
    }
    finish(commit, &mut index, sparse.as_ref(), placement)?;
    if old_admin != placement.admin_dir {
        super::submodules::carry_records(old_admin, &placement.admin_dir)
            .map_err(io_err(&placement.admin_dir))?;
        fs::remove_dir_all(old_admin).map_err(io_err(old_admin))?;
    }
    Ok(Built {
        written,
        kept: kept.len(),
    })
}

/// Same path, same blob, same mode, on disk in both: the file is already
/// right. A submodule at the same commit keeps its directory and what
/// [`super::submodules`] checked out in it.
fn unchanged(old: &gix::index::Entry, new: &gix::index::Entry) -> bool {
    old.id == new.id && old.mode == new.mode && on_disk(old) && on_disk(new)
}

/// Unlinks every old entry the new index does not hold unchanged, then the
/// directories that left empty (deepest first), so the checkout finds
/// nothing in its way.
fn remove_changed(old: &gix::index::File, new: &gix::index::File, dir: &Path) -> Result<(), Error> {
    let mut parents = std::collections::BTreeSet::new();
    for entry in old.entries().iter().filter(|e| on_disk(e)) {
        let path = entry.path(old);
        if new.entry_by_path(path).is_some_and(|n| unchanged(entry, n)) {
            continue;
        }
        let relative = gix::path::from_bstr(path).map_err(|e| Error::Io {
            path: dir.to_path_buf(),
            source: io::Error::other(format!("path {path}: {e}")),
        })?;
        let full = dir.join(relative.as_ref());
        crate::fsutil::remove_any(&full).map_err(io_err(&full))?;
        let mut parent = relative.parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            parents.insert(p.to_path_buf());
            parent = p.parent();
        }
    }
    let mut parents: Vec<PathBuf> = parents.into_iter().collect();
    parents.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in parents {
        // Still holding kept files (ENOTEMPTY) or already gone: both fine.
        let _ = fs::remove_dir(dir.join(p));
    }
    Ok(())
}

/// Marks unchanged entries so the checkout skips them, carrying over the
/// stat data of the untouched file (same inode, same stat); returns their
/// positions, to unmark them after the checkout.
fn keep_unchanged(old: &gix::index::File, new: &mut gix::index::File) -> Vec<usize> {
    let mut kept = Vec::new();
    for (i, (entry, path)) in new.entries_mut_with_paths().enumerate() {
        if let Some(o) = old.entry_by_path(path).filter(|o| unchanged(o, entry)) {
            entry.stat = o.stat;
            entry.flags.insert(NOT_ON_DISK);
            kept.push(i);
        }
    }
    kept
}

/// Admin files and the index with the checkout's stat data.
fn finish(
    commit: ObjectId,
    index: &mut gix::index::File,
    sparse: Option<&Patterns>,
    placement: &Placement,
) -> Result<(), Error> {
    write_admin(commit, placement)?;
    if let Some(patterns) = sparse {
        record_sparse(&placement.admin_dir, patterns)?;
    }
    index.set_path(placement.admin_dir.join("index"));
    index
        .write(gix::index::write::Options::default())
        .map_err(|e| Error::Checkout {
            commit,
            message: format!("writing the index: {e}"),
        })?;
    Ok(())
}

fn tree_of(repo: &gix::Repository, commit: ObjectId) -> Result<ObjectId, Error> {
    let err = |e: &dyn std::fmt::Display| Error::Commit {
        commit,
        message: e.to_string(),
    };
    let commit_obj = repo.find_commit(commit).map_err(|e| err(&e))?;
    commit_obj
        .tree_id()
        .map(|id| id.detach())
        .map_err(|e| err(&e))
}

/// Writes the index's entries (except those marked SKIP_WORKTREE) below
/// `dir`; returns how many were written.
fn checkout_files(
    repo: &gix::Repository,
    commit: ObjectId,
    index: &mut gix::index::File,
    dir: &Path,
    initially_empty: bool,
    budget: &Budget,
) -> Result<usize, Error> {
    let err = |message: String| Error::Checkout { commit, message };
    let mut opts = repo
        .checkout_options(gix::worktree::stack::state::attributes::Source::IdMapping)
        .map_err(|e| err(e.to_string()))?;
    opts.destination_is_initially_empty = initially_empty;
    opts.overwrite_existing = false;
    let objects = repo
        .objects
        .clone()
        .into_arc()
        .map_err(|e| err(e.to_string()))?;
    let outcome = gix::worktree::state::checkout(
        index,
        dir,
        objects,
        &gix::progress::Discard,
        &gix::progress::Discard,
        budget.interrupt_flag(),
        opts,
    )
    .map_err(|e| err(e.to_string()));
    // An interrupted checkout returns Ok with a partial tree: check the flag.
    if budget.is_interrupted() {
        return Err(if budget.is_expired() {
            Error::Timeout
        } else {
            Error::Interrupted
        });
    }
    let outcome = outcome?;
    if let Some(first) = outcome.errors.first() {
        return Err(err(format!(
            "{} file(s) could not be written, first: {}: {}",
            outcome.errors.len(),
            first.path,
            first.error
        )));
    }
    if !outcome.collisions.is_empty() {
        return Err(err(format!(
            "{} path collision(s)",
            outcome.collisions.len()
        )));
    }
    Ok(outcome.files_updated)
}

fn write_admin(commit: ObjectId, placement: &Placement) -> Result<(), Error> {
    let admin = placement.admin_dir.as_path();
    if admin.exists() {
        fs::remove_dir_all(admin).map_err(io_err(admin))?;
    }
    fs::create_dir_all(admin).map_err(io_err(admin))?;
    let name = placement
        .final_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let write = |file: &str, content: String| {
        let path = admin.join(file);
        fs::write(&path, content).map_err(io_err(&path))
    };
    write("HEAD", format!("{commit}\n"))?;
    write("commondir", "../..\n".to_string())?;
    write(
        "gitdir",
        format!("{}\n", placement.final_path.join(".git").display()),
    )?;
    let dot_git = placement.staging.join(".git");
    fs::write(&dot_git, format!("gitdir: ../../.git/worktrees/{name}\n")).map_err(io_err(&dot_git))
}

/// Where git keeps a worktree's sparse patterns; ours records what was applied.
fn sparse_file(admin_dir: &Path) -> PathBuf {
    admin_dir.join("info").join("sparse-checkout")
}

fn record_sparse(admin_dir: &Path, patterns: &Patterns) -> Result<(), Error> {
    let path = sparse_file(admin_dir);
    let info = admin_dir.join("info");
    fs::create_dir_all(&info).map_err(io_err(&info))?;
    fs::write(&path, patterns.source()).map_err(io_err(&path))
}

/// Whether the worktree was built with `sparse` (or, for `None`, in full).
fn built_with(admin_dir: &Path, sparse: Option<&Patterns>) -> bool {
    match (fs::read(sparse_file(admin_dir)), sparse) {
        (Ok(recorded), Some(p)) => recorded == p.source(),
        (Err(e), None) => e.kind() == io::ErrorKind::NotFound,
        _ => false,
    }
}

/// The `.git` file content we expect in a worktree named `name`.
fn expected_dot_git(name: &str) -> String {
    format!("gitdir: ../../.git/worktrees/{name}\n")
}

/// Cheap check for every poll: the worktree and its admin files exist and
/// point at `commit`, built with these sparse patterns (or none). Does not
/// look at the checked-out files.
pub fn looks_intact(
    worktree: &Path,
    admin_dir: &Path,
    commit: ObjectId,
    sparse: Option<&Patterns>,
) -> bool {
    let name = commit.to_string();
    let dot_git_ok =
        fs::read_to_string(worktree.join(".git")).is_ok_and(|s| s == expected_dot_git(&name));
    let head_ok = fs::read_to_string(admin_dir.join("HEAD")).is_ok_and(|s| s.trim() == name);
    dot_git_ok && head_ok && admin_dir.join("index").is_file() && built_with(admin_dir, sparse)
}

/// Thorough check (at start-up): every file in the index is present with the
/// size and mtime recorded at checkout, and no other file exists (what is
/// inside submodule directories is [`super::submodules::intact`]'s job).
pub fn matches_index(
    worktree: &Path,
    admin_dir: &Path,
    commit: ObjectId,
    sparse: Option<&Patterns>,
) -> bool {
    if !looks_intact(worktree, admin_dir, commit, sparse) {
        return false;
    }
    read_index(&admin_dir.join("index")).is_some_and(|index| files_match(worktree, &index))
}

/// Reads an index file written by [`finish`] or [`super::submodules`].
pub(crate) fn read_index(path: &Path) -> Option<gix::index::File> {
    gix::index::File::at(path, gix::hash::Kind::Sha1, false, Default::default()).ok()
}

/// The files below `dir` are exactly the index's, with the size and mtime
/// recorded at checkout; submodule directories are not looked into.
pub(crate) fn files_match(dir: &Path, index: &gix::index::File) -> bool {
    let mut expected = 0usize;
    let mut submodules = std::collections::HashSet::new();
    for entry in index.entries() {
        let Ok(relative) = gix::path::from_bstr(entry.path(index)) else {
            return false;
        };
        let path = dir.join(relative.as_ref());
        if !on_disk(entry) {
            continue; // left out by sparse patterns
        }
        if entry.mode == gix::index::entry::Mode::COMMIT {
            submodules.insert(path);
            continue;
        }
        let Ok(meta) = fs::symlink_metadata(&path) else {
            return false;
        };
        let size_ok = entry.stat.size == meta.len() as u32;
        let mtime_ok = i64::from(entry.stat.mtime.secs) == meta.mtime()
            && i64::from(entry.stat.mtime.nsecs) == meta.mtime_nsec();
        if !(size_ok && mtime_ok) {
            return false;
        }
        expected += 1;
    }
    count_files(dir, &submodules).is_ok_and(|n| n == expected)
}

/// Counts non-directory entries below `dir`, skipping the top-level `.git`
/// file and the directories in `skip`.
fn count_files(dir: &Path, skip: &std::collections::HashSet<PathBuf>) -> io::Result<usize> {
    let mut count = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d)? {
            let entry = entry?;
            if d == dir && entry.file_name() == ".git" {
                continue;
            }
            if entry.file_type()?.is_dir() {
                if !skip.contains(&entry.path()) {
                    stack.push(entry.path());
                }
            } else {
                count += 1;
            }
        }
    }
    Ok(count)
}
