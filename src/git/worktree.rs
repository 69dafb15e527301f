//! Linked worktrees the git CLI understands, written without the git CLI.
//!
//! A worktree for commit `<sha>` is a directory whose `.git` file says
//! `gitdir: ../../.git/worktrees/<sha>` (relative, as git-sync writes it), and
//! an admin directory `<root>/.git/worktrees/<sha>/` with `HEAD` (detached at
//! the commit), `commondir`, `gitdir` and `index` (stat data of the checkout,
//! so `git status` is clean without rehashing). Files are written into a
//! staging directory first; the caller moves it into place. A new worktree is
//! either checked out in full or rewritten from a retired one, touching only
//! what changed, after removing whatever was written into it since it was
//! built (see [`survey`]).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use gix::bstr::{BStr, BString};
use gix::ObjectId;

use super::sparse::Patterns;
use super::symlinks::Links;
use super::transport::Budget;
use crate::types::SymlinkPolicy;

mod dir_record;
mod index_file;
mod survey;
#[cfg(test)]
mod tests;
pub(crate) mod watch;

pub(crate) use index_file::{read_index, write_index};
#[cfg(test)]
pub(crate) use survey::exact;
pub(crate) use survey::{held, Held};

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
    #[error("cannot reuse the retired worktree: {message}")]
    Retired { message: String },
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

/// Keeps an entry of the commit in the index but off the disk (sparse
/// patterns, a skipped symlink): `git status` stays clean, as git's own
/// sparse checkout has it.
pub(crate) fn leave_out(entry: &mut gix::index::Entry) {
    entry.flags.insert(NOT_ON_DISK);
}

/// What building a worktree did.
#[derive(Default)]
pub struct Built {
    /// Entries written (files, symlinks).
    pub written: usize,
    /// Files kept from the retired worktree that was rewritten.
    pub kept: usize,
    /// The index as written to the admin dir, for the submodule step
    /// (reading 40,000 entries back cost as much as writing them).
    pub(crate) index: Option<gix::index::File>,
}

/// Reads the commit's tree into an index and applies the safety checks.
pub fn plan(
    repo: &gix::Repository,
    commit: ObjectId,
    policy: SymlinkPolicy,
) -> Result<Planned, Error> {
    let tree = tree_of(repo, commit)?;
    let index = repo.index_from_tree(&tree).map_err(|e| {
        let message = crate::types::error_chain(&e);
        if message.contains("is invalid") {
            Error::UnsafePath { commit, message }
        } else {
            Error::Commit { commit, message }
        }
    })?;
    planned(repo, commit, index, policy)
}

/// The plan of `commit` whose entries are `index`: the symlink policy applied.
fn planned(
    repo: &gix::Repository,
    commit: ObjectId,
    mut index: gix::index::File,
    policy: SymlinkPolicy,
) -> Result<Planned, Error> {
    let skipped_links = apply_symlink_policy(repo, commit, &mut index, policy)?;
    Ok(Planned {
        commit,
        index,
        skipped_links,
        sparse: None,
    })
}

/// [`plan`], from the index of an earlier commit's worktree: `base`'s
/// entries (the index [`finish`] wrote for `base_commit`, whose tree it
/// holds) changed by the diff of the two trees, so that only the trees that
/// differ are read (a 1-file change in a 40,000-file tree: a few trees, not
/// 330). New and changed paths are held to the same path rules as
/// [`plan`]'s; the result is the index [`plan`] makes (a test compares
/// them).
pub fn plan_from(
    repo: &gix::Repository,
    base: &Inspection,
    base_commit: ObjectId,
    commit: ObjectId,
    policy: SymlinkPolicy,
) -> Result<Planned, Error> {
    // Only an index as we wrote it holds exactly its commit's tree: `git
    // add` or `git rm --cached` in the worktree would carry their changes
    // into every later tree. (A refresh by `git status` also rewrites it:
    // the whole tree is read then, as before.)
    if !index_file::written_by_us(&base.old_admin.join("index"), &base.old) {
        return Err(Error::Commit {
            commit,
            message: "the spare's index is not the one written for it".into(),
        });
    }
    let base = &base.old;
    let changes = super::tree_diff::changes(repo, base_commit, commit)
        .map_err(|message| Error::Commit { commit, message })?;
    let mut gone = Vec::new();
    let mut added = Vec::new();
    use gix::bstr::ByteSlice;
    use gix::diff::tree::recorder::Change;
    for change in &changes {
        let (before, after) = match change {
            Change::Deletion {
                entry_mode, path, ..
            } => (Some((entry_mode, path)), None),
            Change::Addition {
                entry_mode,
                oid,
                path,
                ..
            } => (None, Some((entry_mode, oid, path))),
            Change::Modification {
                previous_entry_mode,
                entry_mode,
                oid,
                path,
                ..
            } => (
                Some((previous_entry_mode, path)),
                Some((entry_mode, oid, path)),
            ),
        };
        // Trees are not index entries: what they hold is listed on its own.
        if let Some((_, path)) = before.filter(|(m, _)| !m.is_tree()) {
            gone.push(path.as_bstr());
        }
        if let Some((mode, oid, path)) = after.filter(|(m, _, _)| !m.is_tree()) {
            check_path(path.as_bstr(), mode.is_link())
                .map_err(|message| Error::UnsafePath { commit, message })?;
            added.push((path.as_bstr(), *oid, index_mode(*mode)));
        }
    }
    gone.sort_unstable();
    // The base's entries in one copy, less those that went; stat data and
    // flags as `plan` leaves them (the rewrite and checkout fill them in).
    let mut state = gix::index::State::clone(base);
    state.remove_tree();
    state.remove_resolve_undo();
    // Conflict stages live in the flags: dropped before the flags are.
    if state.entries().iter().any(|e| e.stage_raw() != 0) {
        state.remove_entries(|_, _, entry| entry.stage_raw() != 0);
    }
    for entry in state.entries_mut() {
        entry.stat = Default::default();
        entry.flags = gix::index::entry::Flags::empty();
    }
    // A path that stays (a changed file) changes in place: removing and
    // adding it would move every entry and sort 40,000 of them again.
    let mut stays = vec![false; gone.len()];
    let mut new_paths = Vec::new();
    for (path, id, mode) in added {
        let at = gone.binary_search(&path).ok().and_then(|g| {
            let at = state.entry_index_by_path(path).ok()?;
            Some((g, at))
        });
        match at {
            Some((g, at)) => {
                stays[g] = true;
                let entry = &mut state.entries_mut()[at];
                entry.id = id;
                entry.mode = mode;
            }
            None => new_paths.push((path, id, mode)),
        }
    }
    let gone: Vec<_> = gone
        .into_iter()
        .zip(stays)
        .filter_map(|(path, stays)| (!stays).then_some(path))
        .collect();
    if !gone.is_empty() {
        state.remove_entries(|_, path, _| gone.binary_search(&path).is_ok());
    }
    let unsorted = !new_paths.is_empty();
    for (path, id, mode) in new_paths {
        state.dangerously_push_entry(
            Default::default(),
            id,
            gix::index::entry::Flags::empty(),
            mode,
            path,
        );
    }
    if unsorted {
        state.sort_entries();
    }
    planned(
        repo,
        commit,
        gix::index::File::from_state(state, repo.index_path()),
        policy,
    )
}

/// The index mode of a tree entry that is not a tree.
fn index_mode(mode: gix::objs::tree::EntryMode) -> gix::index::entry::Mode {
    use gix::index::entry::Mode;
    use gix::objs::tree::EntryKind;
    match mode.kind() {
        EntryKind::BlobExecutable => Mode::FILE_EXECUTABLE,
        EntryKind::Link => Mode::SYMLINK,
        EntryKind::Commit => Mode::COMMIT,
        EntryKind::Blob | EntryKind::Tree => Mode::FILE,
    }
}

/// The path rules [`plan`] applies through gix (`gix::Repository`'s
/// protect options as our isolated config leaves them: NTFS names on,
/// Windows and HFS+ off; `store::open` sets no protect option), to each
/// component of a new path.
fn check_path(path: &gix::bstr::BStr, link: bool) -> Result<(), String> {
    use gix::bstr::ByteSlice;
    use gix::validate::path::component;
    let options = component::Options {
        protect_windows: false,
        protect_hfs: false,
        protect_ntfs: true,
    };
    let mut parts = path.split_str("/").peekable();
    while let Some(part) = parts.next() {
        let leaf = parts.peek().is_none();
        let mode = (leaf && link).then_some(component::Mode::Symlink);
        component(part.as_bstr(), mode, options)
            .map_err(|e| format!("The path \"{path}\" is invalid: {e}"))?;
    }
    Ok(())
}

impl Planned {
    /// Sparse checkout: entries `patterns` do not include stay in the index
    /// (so `git status` in the worktree is clean) but are not written.
    /// When the patterns keep submodules ([`Patterns::keeps_submodules`]),
    /// a submodule is not judged by them: git-sync's `git submodule update
    /// --init` after the sparse `read-tree` checks every one of them out.
    pub fn restrict(&mut self, patterns: &Patterns) {
        let submodules = patterns.keeps_submodules();
        for (entry, path) in self.index.entries_mut_with_paths() {
            let kept_submodule = submodules && entry.mode == gix::index::entry::Mode::COMMIT;
            if !(kept_submodule || patterns.includes(path)) {
                leave_out(entry);
            }
        }
        self.sparse = Some(patterns.clone());
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
    // Left out like a sparse path: removing the entry would show in
    // `git status` as a staged deletion.
    let skip: std::collections::HashSet<&str> = escaping.iter().map(|(p, _)| p.as_str()).collect();
    for (entry, path) in index.entries_mut_with_paths() {
        if skip.contains(String::from_utf8_lossy(path).as_ref()) {
            leave_out(entry);
        }
    }
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
        ..
    } = planned;
    // Never `create_dir_all`: a leftover there (what a consumer running as
    // another user wrote) would be checked out into as if it were empty.
    fs::create_dir(&placement.staging).map_err(io_err(&placement.staging))?;
    let written = checkout_files(repo, commit, &mut index, &placement.staging, true, budget)?;
    finish(commit, &mut index, sparse.as_ref(), placement)?;
    Ok(Built {
        written,
        kept: 0,
        index: Some(index),
    })
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
    let built = Built {
        written,
        kept: 0,
        index: None,
    };
    Ok((built, index))
}

/// A retired worktree held against the index it was built with: which of
/// its entries are on disk as recorded at checkout, and what else is there.
/// It does not depend on the next commit, so it can be taken while that
/// commit is being fetched; [`rewrite`] then keeps only entries that are
/// intact and unchanged in the new commit. Before it is used on a tree that
/// was moved or waited on since, [`Inspection::still_describes`] checks that
/// no directory changed (nothing created, removed, renamed or replaced by a
/// link in any of them) and, where the tree is watched ([`inspect_and_park`]),
/// that inotify reported no change at all, which also covers a write made
/// in place through an already open file after the walk looked at that
/// file. Unwatched, like git's stat check, it cannot see such a write;
/// nothing can see one made after the rewrite either.
pub struct Inspection {
    old_admin: PathBuf,
    old: gix::index::File,
    /// Every directory of the tree, watched since before the walk.
    watch: Option<watch::Watch>,
    found: Found,
}

/// What the walk of a retired worktree found, kept with its index
/// ([`Inspection`]) or without it while the process idles ([`Parked`]).
struct Found {
    /// By position in the index: on disk as recorded.
    intact: Vec<bool>,
    /// What the index does not account for, relative to the worktree:
    /// untracked paths and entries no longer as recorded (nothing below those).
    strays: Vec<PathBuf>,
    /// Every directory walked, relative (`""` the worktree itself).
    dirs: Vec<survey::Walked>,
    /// How many of them were trusted (by the record of their index), not read.
    trusted: usize,
    /// The names in the worktree's own directory (`.git` aside) with their
    /// inode numbers, sorted.
    top_names: Vec<(Vec<u8>, u64)>,
    /// When the walk began.
    started: std::time::SystemTime,
}

/// How far a directory's mtime may lag the clock: kernels stamp files with a
/// coarse clock (one tick, 1–10 ms). A directory modified later than this
/// before the walk could be modified again with the same mtime.
const COARSE_CLOCK: std::time::Duration = std::time::Duration::from_millis(50);

/// Surveys the retired worktree at `dir` against its index in `old_admin`
/// (one `lstat` per entry, content read only for racily clean ones), on up
/// to `threads` threads.
pub fn inspect(dir: &Path, old_admin: &Path, threads: usize) -> Result<Inspection, Error> {
    let started = std::time::SystemTime::now();
    let index_path = old_admin.join("index");
    let old = read_index(&index_path).ok_or_else(|| Error::Retired {
        message: format!("cannot read its index {}", index_path.display()),
    })?;
    // Elsewhere (a network filesystem) times may come from another clock,
    // in coarser steps, and attributes from a cache.
    let record = match watch::is_local(dir) {
        true => dir_record::read(old_admin, old.checksum()),
        false => Default::default(),
    };
    let found = {
        let mut wanted = survey::Wanted::new(&old);
        if !record.is_empty() {
            wanted.trust(|dir| record.get(dir).copied());
        }
        let since = survey::Since::of(&old);
        survey::survey(dir, &wanted, true, threads, |entry, meta, path| {
            survey::as_recorded(entry, meta, path, since)
        })
        .map_err(io_err(dir))?
    };
    let mut intact = vec![false; old.entries().len()];
    for &i in &found.kept {
        intact[i] = true;
    }
    let relative = |path: PathBuf| {
        path.strip_prefix(dir)
            .map(Path::to_path_buf)
            .map_err(|_| Error::Retired {
                message: format!("{} is not below {}", path.display(), dir.display()),
            })
    };
    let strays = found
        .strays
        .into_iter()
        .map(relative)
        .collect::<Result<_, _>>()?;
    let dirs = found
        .dirs
        .into_iter()
        .map(|walked| relative(walked.path).map(|path| survey::Walked { path, ..walked }))
        .collect::<Result<_, _>>()?;
    Ok(Inspection {
        old_admin: old_admin.to_path_buf(),
        old,
        watch: None,
        found: Found {
            intact,
            strays,
            dirs,
            trusted: found.trusted,
            top_names: found.top_names,
            started,
        },
    })
}

/// [`inspect`] of a tree watched from before the walk on (see [`watch`]),
/// kept for later without its index ([`Parked`]). `None`, without a walk,
/// where inotify cannot promise to see every change (a network
/// filesystem, no watch left), or if the walk fails.
pub fn inspect_and_park(dir: &Path, old_admin: &Path, threads: usize) -> Option<Parked> {
    let watch = watch::Watch::start(dir)
        .inspect_err(|e| tracing::debug!(error = %e, dir = %dir.display(), "not watching the retired worktree"))
        .ok()?;
    let inspection = inspect(dir, old_admin, threads)
        .inspect_err(
            |e| tracing::debug!(error = %e, "inspecting the retired worktree while idle failed"),
        )
        .ok()?;
    Some(Parked {
        checksum: inspection.old.checksum()?,
        watch,
        old_admin: inspection.old_admin,
        found: inspection.found,
    })
}

/// An inspection kept while the process idles, without its index (a
/// 40,000-entry index is 5 MB of memory): [`Parked::resume`] reads it again.
pub struct Parked {
    old_admin: PathBuf,
    /// The index's checksum: the file read again must be the same.
    checksum: gix::ObjectId,
    watch: watch::Watch,
    found: Found,
}

impl Inspection {
    /// The worktree now at `dir` is the one inspected, and no directory in
    /// it changed since: each is still the same directory (not a link) with
    /// the same mtime, and none was modified so shortly before the walk
    /// that a later change could have left its mtime the same (unless it
    /// is watched: then any later change is reported); if it is watched,
    /// nothing at all was reported but its own move (the claim). The tree's
    /// own directory is listed again instead, names and inode numbers, so
    /// its mtime need not be settled: the park dropped its `.git` just
    /// before, when a `--one-time` run follows the last closely.
    pub fn still_describes(&mut self, dir: &Path) -> bool {
        let watched = self.watch.is_some();
        // Checked once, then dropped: the rewrite's own writes are no news.
        if self.watch.take().is_some_and(|mut w| !w.unchanged(true)) {
            return false;
        }
        let walk = &self.found;
        let settled = walk.started.checked_sub(COARSE_CLOCK);
        walk.dirs.iter().all(|walked| {
            let (rel, stamp) = (&walked.path, &walked.stamp);
            let top = rel.as_os_str().is_empty();
            let now = survey::Lstat::of(&dir.join(rel)).ok();
            let now = now
                .filter(survey::Lstat::is_dir)
                .map(|m| survey::DirStamp::of(&m));
            // The claim renamed the worktree itself: its ctime moved, so
            // its names are listed again (an mtime set back hides a change).
            let same = now.is_some_and(|now| match top {
                true => {
                    now.same_but_moved(stamp)
                        && survey::names_in(dir, true).is_ok_and(|n| n == walk.top_names)
                }
                false => now == *stamp,
            });
            let settled_before_walk = || settled.is_some_and(|s| stamp.modified() < s);
            same && (watched || top || settled_before_walk())
        })
    }

    /// How many directories the walk trusted to hold what the index puts
    /// there (recorded when the tree was last rewritten), without reading them.
    pub fn trusted_dirs(&self) -> usize {
        self.found.trusted
    }

    /// Records, beside the index (`checksum`) written for the tree now at `dir` (the
    /// inspected one, rewritten), the directories that hold nothing but
    /// what that index puts there: clean when walked, settled before the
    /// walk, and left as they were by the rewrite (see [`dir_record`]).
    /// Lost, it only means the next walk reads them.
    fn record_clean_dirs(&self, checksum: ObjectId, dir: &Path, admin: &Path) {
        use std::os::unix::ffi::OsStrExt;
        if !watch::is_local(dir) {
            return;
        }
        let walk = &self.found;
        let clean: Vec<(&[u8], survey::DirStamp)> = walk
            .dirs
            .iter()
            .filter(|w| w.clean && !w.path.as_os_str().is_empty())
            .filter(|w| dir_record::recordable(&w.stamp, walk.started))
            .filter(|w| {
                survey::Lstat::of(&dir.join(&w.path))
                    .is_ok_and(|now| now.is_dir() && survey::DirStamp::of(&now) == w.stamp)
            })
            .map(|w| (w.path.as_os_str().as_bytes(), w.stamp))
            .collect();
        if let Err(e) = dir_record::write(admin, checksum, &clean) {
            tracing::debug!(error = %e, "could not record the worktree's clean directories");
        }
    }
}

impl Parked {
    /// The inspection again, if nothing in the tree was reported since it
    /// was taken (not even its own move: it has not been claimed yet) and
    /// its index file is the one it was taken against.
    pub fn resume(mut self) -> Result<Inspection, Error> {
        let stale = |message: &str| Error::Retired {
            message: format!("its inspection no longer holds: {message}"),
        };
        if !self.watch.unchanged(false) {
            return Err(stale("the tree changed"));
        }
        let index_path = self.old_admin.join("index");
        let old = read_index(&index_path)
            .filter(|old| old.checksum() == Some(self.checksum))
            .ok_or_else(|| stale("its index is not the one inspected"))?;
        Ok(Inspection {
            old_admin: self.old_admin,
            old,
            watch: Some(self.watch),
            found: self.found,
        })
    }
}

/// Turns a retired worktree (already renamed to `placement.staging`,
/// inspected by [`inspect`]) into the planned commit's: files intact and
/// unchanged in content and mode stay as they are; everything else is
/// unlinked (also what consumers or hooks wrote into the tree) and what is
/// missing is written afresh (new inodes, so a reader holding an old file
/// open keeps reading the old content). The cost follows the change, plus
/// the inspection's `lstat` per entry.
pub fn rewrite(
    repo: &gix::Repository,
    planned: Planned,
    placement: &Placement,
    inspection: Inspection,
    published: Option<ObjectId>,
    budget: &Budget,
) -> Result<Built, Error> {
    let Planned {
        commit,
        mut index,
        sparse,
        ..
    } = planned;
    let started = std::time::Instant::now();
    let dir = placement.staging.as_path();
    let keep = Keep::judge(repo, &inspection, &index, commit, published);
    let kept = prune(&inspection, &mut index, dir, &keep)?;
    let pruned = started.elapsed();
    let written = checkout_files(repo, commit, &mut index, dir, false, budget)?;
    let checked_out = started.elapsed();
    let entries = index.entries_mut();
    for i in &kept {
        entries[*i].flags.remove(NOT_ON_DISK);
    }
    let checksum = finish(commit, &mut index, sparse.as_ref(), placement)?;
    inspection.record_clean_dirs(checksum, dir, &placement.admin_dir);
    tracing::debug!(
        prune_ms = pruned.as_millis(),
        checkout_ms = (checked_out - pruned).as_millis(),
        index_ms = (started.elapsed() - checked_out).as_millis(),
        "rewrote the retired worktree"
    );
    let old_admin = inspection.old_admin.as_path();
    if old_admin != placement.admin_dir {
        super::submodules::carry_records(old_admin, &placement.admin_dir)
            .map_err(io_err(&placement.admin_dir))?;
        fs::remove_dir_all(old_admin).map_err(io_err(old_admin))?;
    }
    Ok(Built {
        written,
        kept: kept.len(),
        index: Some(index),
    })
}

/// Which of the spare's files a rewrite may keep, beyond "same blob, same
/// mode, found as recorded": a file is written as git would write it only
/// if the rules that turn its blob into bytes are the same, and a consumer
/// revalidating by `Last-Modified` sees the change only if what changed
/// since the published tree gets a new time.
enum Keep {
    /// Every file the spare has right but the few paths (sorted) that
    /// changed since the published commit.
    Unchanged { since_published: Vec<BString> },
    /// None: a `.gitattributes` differs (eol, `ident`, filters change
    /// bytes of files whose blob did not), or the spare was written under
    /// another `--group-write` (its modes).
    Nothing,
}

impl Keep {
    fn judge(
        repo: &gix::Repository,
        inspection: &Inspection,
        new: &gix::index::File,
        commit: ObjectId,
        published: Option<ObjectId>,
    ) -> Self {
        if attributes_of(&inspection.old) != attributes_of(new) {
            tracing::debug!("the .gitattributes files changed: no file of the spare is kept");
            return Keep::Nothing;
        }
        if !built_under_current_umask(&inspection.old_admin) {
            tracing::debug!(
                "the spare was written under another --group-write: no file of it is kept"
            );
            return Keep::Nothing;
        }
        // A file the spare has right but the published tree has not (a
        // revert) is written anew: its time must not go back.
        let since_published = match published.map(|p| super::tree_diff::changes(repo, p, commit)) {
            Some(Ok(changes)) => {
                let mut paths: Vec<BString> = changes.into_iter().map(changed_path).collect();
                paths.sort_unstable();
                paths
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "no diff with the published commit: no file of the spare is kept");
                return Keep::Nothing;
            }
            None => Vec::new(),
        };
        Keep::Unchanged { since_published }
    }

    fn may_keep(&self, path: &BStr) -> bool {
        match self {
            // A binary search in a handful: no hashing of 40,000 paths.
            Keep::Unchanged { since_published } => since_published
                .binary_search_by(|p| p.as_slice().cmp(path.as_ref()))
                .is_err(),
            Keep::Nothing => false,
        }
    }
}

fn changed_path(change: gix::diff::tree::recorder::Change) -> BString {
    use gix::diff::tree::recorder::Change;
    match change {
        Change::Addition { path, .. }
        | Change::Deletion { path, .. }
        | Change::Modification { path, .. } => path,
    }
}

/// The `.gitattributes` files an index holds: path and blob.
fn attributes_of(index: &gix::index::File) -> Vec<(&BStr, ObjectId)> {
    index
        .entries()
        .iter()
        .map(|e| (e.path(index), e.id))
        .filter(|(path, _)| *path == ".gitattributes" || path.ends_with(b"/.gitattributes"))
        .collect()
}

/// Same path, same blob, same mode, on disk in both: the file is already
/// right if nobody touched it. A submodule at the same commit keeps its
/// directory; [`super::submodules`] judges what is in it.
fn unchanged(old: &gix::index::Entry, new: &gix::index::Entry) -> bool {
    old.id == new.id && old.mode == new.mode && on_disk(old) && on_disk(new)
}

/// Removes from the inspected worktree at `dir` everything the new index
/// does not keep: the strays, intact entries the new commit changed or
/// dropped, and directories the walk found that the new commit has no
/// use for. Removal never follows a link on the way (see
/// [`crate::fsutil::remove_beneath`]). Marks the kept entries so the
/// checkout skips them, with the stat data of the untouched file; returns
/// their positions, to unmark them after the checkout.
fn prune(
    inspection: &Inspection,
    new: &mut gix::index::File,
    dir: &Path,
    keep: &Keep,
) -> Result<Vec<usize>, Error> {
    let old = &inspection.old;
    let mut kept = Vec::new();
    let mut kept_old = vec![false; old.entries().len()];
    for (n, o) in same_paths(old, new) {
        let (old_entry, new_entry) = (&old.entries()[o], &new.entries()[n]);
        if inspection.found.intact[o]
            && unchanged(old_entry, new_entry)
            && keep.may_keep(new_entry.path(new))
        {
            kept.push((n, o));
            kept_old[o] = true;
        }
    }
    let root = fs::File::open(dir).map_err(io_err(dir))?;
    let remove = |rel: &Path| {
        crate::fsutil::remove_beneath(&root, rel).map_err(|source| Error::Io {
            path: dir.join(rel),
            source,
        })
    };
    for stray in &inspection.found.strays {
        remove(stray)?;
    }
    for (o, entry) in old.entries().iter().enumerate() {
        if inspection.found.intact[o] && !kept_old[o] {
            remove(rel_path(entry.path(old)))?;
        }
    }
    // Directories the walk found that the new commit has no use for.
    use gix::bstr::ByteSlice;
    use std::os::unix::ffi::OsStrExt;
    let wanted = survey::dirs_of(new);
    for walked in &inspection.found.dirs {
        let name = walked.path.as_os_str().as_bytes();
        if !name.is_empty() && !wanted.contains(name.as_bstr()) {
            remove(&walked.path)?;
        }
    }
    let entries = new.entries_mut();
    for &(n, o) in &kept {
        entries[n].stat = old.entries()[o].stat;
        leave_out(&mut entries[n]);
    }
    Ok(kept.into_iter().map(|(n, _)| n).collect())
}

/// An index path as a relative filesystem path (bytes as they are: unix).
fn rel_path(path: &gix::bstr::BStr) -> &Path {
    use std::os::unix::ffi::OsStrExt;
    Path::new(std::ffi::OsStr::from_bytes(path))
}

/// Pairs of positions (new, old) of stage-0 entries at the same path: one
/// pass over both indexes, which are sorted by path.
fn same_paths(old: &gix::index::File, new: &gix::index::File) -> Vec<(usize, usize)> {
    use std::cmp::Ordering;
    let (olds, news) = (old.entries(), new.entries());
    let mut pairs = Vec::with_capacity(news.len());
    let (mut o, mut n) = (0, 0);
    while o < olds.len() && n < news.len() {
        match olds[o].path(old).cmp(news[n].path(new)) {
            Ordering::Less => o += 1,
            Ordering::Greater => n += 1,
            Ordering::Equal => {
                if olds[o].stage_raw() == 0 && news[n].stage_raw() == 0 {
                    pairs.push((n, o));
                }
                o += 1;
                n += 1;
            }
        }
    }
    pairs
}

/// Admin files and the index with the checkout's stat data.
fn finish(
    commit: ObjectId,
    index: &mut gix::index::File,
    sparse: Option<&Patterns>,
    placement: &Placement,
) -> Result<ObjectId, Error> {
    write_admin(commit, placement)?;
    if let Some(patterns) = sparse {
        record_sparse(&placement.admin_dir, patterns)?;
    }
    record_umask(&placement.admin_dir)?;
    write_index(index, &placement.admin_dir.join("index")).map_err(|e| Error::Checkout {
        commit,
        message: format!("writing the index: {e}"),
    })
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

/// Below this many files to write, a checkout runs on one thread: starting
/// and joining gix's threads costs more than they save (measured on a
/// 1-file change; gix splits all entries, skipped ones too, among them).
const FEW_FILES: usize = 100;

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
    // An empty tree (a commit that removes everything) has nothing to
    // write; gix would also trip over the path storage an index planned
    // from the spare's keeps ("cannot take out backing multiple times").
    if index.entries().is_empty() {
        return Ok(0);
    }
    // The checkout counts the entries it skips as done.
    let skipped = index.entries().iter().filter(|e| !on_disk(e)).count();
    let mut opts = repo
        .checkout_options(gix::worktree::stack::state::attributes::Source::IdMapping)
        .map_err(|e| err(e.to_string()))?;
    opts.destination_is_initially_empty = initially_empty;
    opts.overwrite_existing = false;
    // gix would start one thread per core of the node, whatever the quota;
    // a rewrite's few changed files need none (see FEW_FILES).
    let to_write = index.entries().len() - skipped;
    opts.thread_limit = Some(match to_write < FEW_FILES {
        true => 1,
        false => super::store::threads(repo),
    });
    // What gix is handed (tests/it/resource_limits.rs reads it).
    tracing::debug!(
        files = to_write,
        threads = opts.thread_limit,
        "checking out"
    );
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
    // gix's error names no file: say at least where it was writing.
    .map_err(|e| {
        let why = crate::types::error_chain(&e);
        err(format!("writing the files into {}: {why}", dir.display()))
    });
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
    Ok(outcome.files_updated.saturating_sub(skipped))
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
    // A retired tree's `.git` may have been replaced by a link (or a hard
    // link) to a file outside the tree: unlink it, never write through it.
    crate::fsutil::remove_any(&dot_git).map_err(io_err(&dot_git))?;
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
    fs::write(&path, patterns.record()).map_err(io_err(&path))
}

/// Where we record the umask a worktree was written under (`--group-write`).
fn umask_file(admin_dir: &Path) -> PathBuf {
    admin_dir.join("git-sidecar-umask")
}

fn record_umask(admin_dir: &Path) -> Result<(), Error> {
    let path = umask_file(admin_dir);
    fs::write(&path, format!("{:04o}\n", crate::fsutil::umask())).map_err(io_err(&path))
}

/// Whether the worktree of `admin_dir` was written under today's umask; one
/// written before the record existed was written under the default 0022.
fn built_under_current_umask(admin_dir: &Path) -> bool {
    let recorded = match fs::read_to_string(umask_file(admin_dir)) {
        Ok(text) => u32::from_str_radix(text.trim(), 8).ok(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Some(0o022),
        Err(_) => None,
    };
    recorded == Some(crate::fsutil::umask())
}

/// Whether the worktree was built with `sparse` (or, for `None`, in full).
pub fn built_with(admin_dir: &Path, sparse: Option<&Patterns>) -> bool {
    match (fs::read(sparse_file(admin_dir)), sparse) {
        (Ok(recorded), Some(p)) => recorded == p.record(),
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
    commit: super::CommitId,
    sparse: Option<&Patterns>,
) -> bool {
    let name = commit.to_string();
    let dot_git_ok =
        fs::read_to_string(worktree.join(".git")).is_ok_and(|s| s == expected_dot_git(&name));
    let head_ok = fs::read_to_string(admin_dir.join("HEAD")).is_ok_and(|s| s.trim() == name);
    dot_git_ok && head_ok && admin_dir.join("index").is_file() && built_with(admin_dir, sparse)
}

/// Thorough check (at start-up): every entry of the index is on disk as
/// recorded at checkout (stat data, mode; what is inside submodule
/// directories is [`super::submodules::intact`]'s job). What was added
/// (an exec hook's output, a consumer's cache) does not fail it: it makes
/// no tracked file wrong, git-sync keeps it across a restart too, and
/// rebuilding would take it away from readers until the hook ran again;
/// the next commit's tree is made without it ([`rewrite`]).
pub fn matches_index(
    worktree: &Path,
    admin_dir: &Path,
    commit: super::CommitId,
    sparse: Option<&Patterns>,
    threads: usize,
) -> bool {
    if !looks_intact(worktree, admin_dir, commit, sparse) {
        return false;
    }
    let Some(index) = read_index(&admin_dir.join("index")) else {
        return false;
    };
    holds_tracked(worktree, &index, true, threads)
}

/// Whether `dir` holds every entry of `index` as recorded ([`held`]),
/// additions aside (said in the log).
pub(crate) fn holds_tracked(
    dir: &Path,
    index: &gix::index::File,
    top_level: bool,
    threads: usize,
) -> bool {
    match held(dir, index, top_level, threads) {
        Held::Exactly => true,
        Held::WithAdditions(added) => {
            tracing::info!(
                dir = %dir.display(),
                added,
                "the published worktree holds files its commit does not (an exec hook's or a \
                 consumer's); left in place, as git-sync leaves them: the next commit's tree is \
                 made without them"
            );
            true
        }
        Held::Not => false,
    }
}
