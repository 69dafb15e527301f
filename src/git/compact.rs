//! Object-store upkeep. gix writes one pack per fetch and has no gc, so the
//! store would grow with every sync (and keep force-pushed-away objects
//! forever). When the packs outgrow the last compacted size, we write one new
//! pack holding exactly the objects reachable from the commits we still need
//! (down to the shallow boundary), then delete every other pack and all loose
//! objects. A crash in between leaves extra packs, never missing objects: the
//! old packs are deleted only after the new pack and its index are in place.
//! When only the number of packs calls for upkeep (small fetches piling up),
//! the packs but the largest are merged into one instead ([`merge_small_packs`]):
//! what that costs follows what was fetched since, not the whole store (a
//! 54 MB store took 1.2 s to compact, every 15th `--one-time` run).
//!
//! The root must stay a repository the git CLI (and git-sync, after a
//! rollback) accepts: `git fsck --connectivity-only` also follows reflogs,
//! so entries naming dropped commits are dropped too (what git-sync's
//! `git reflog expire --expire-unreachable=all --all` does; a root that
//! git-sync made has reflogs, ours writes none), and the new pack gets no
//! `.keep` file and the mode the umask gives (see [`crate::fsutil`]).
//!
//! In a partial clone (`--filter`, see [`super::partial`]) the store lacks
//! blobs: the new pack holds the blobs that are there, and keeps the
//! `.promisor` marker, without which git would call the missing ones corrupt.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use gix::odb::pack;
use gix::ObjectId;

use super::transport::Budget;
use crate::types::GcMode;

type Expansion = gix_pack::data::output::count::objects::ObjectExpansion;

/// Compact when the packs hold more than this many bytes beyond
/// `GROWTH_FACTOR` times the size at the last compaction...
const SLACK_BYTES: u64 = 1 << 20;
const GROWTH_FACTOR: u64 = 2;
/// ...or when there are this many packs (each costs a file handle and a lookup).
const MAX_PACKS: usize = 16;
/// ...or when objects no kept commit needs outweigh this fraction of the
/// store (and `SLACK_BYTES`): what a kept commit no longer reaches goes,
/// as after git-sync's `git gc`, without a rewrite at every publish.
const GARBAGE_SHARE: u64 = 4;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("counting reachable objects failed: {0}")]
    Count(String),
    #[error("writing the compacted pack failed: {0}")]
    Write(String),
    #[error("compaction interrupted")]
    Interrupted,
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Sizes of the pack directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PackStats {
    pub packs: usize,
    pub bytes: u64,
    /// Loose object files (gix rarely writes them; git commands run by users might).
    pub loose: usize,
}

/// Measures `<git_dir>/objects`.
pub fn stats(git_dir: &Path) -> PackStats {
    let mut stats = PackStats::default();
    if let Ok(entries) = fs::read_dir(git_dir.join("objects/pack")) {
        for entry in entries.flatten() {
            if is_indexed_pack(&entry.path()) {
                stats.packs += 1;
            }
            stats.bytes += entry.metadata().map_or(0, |m| m.len());
        }
    }
    if let Ok(entries) = fs::read_dir(git_dir.join("objects")) {
        for entry in entries.flatten() {
            if entry.file_name().len() == 2 {
                stats.loose += fs::read_dir(entry.path()).map_or(0, |d| d.count());
            }
        }
    }
    stats
}

/// What the store's upkeep should be now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upkeep {
    Nothing,
    /// Only packs piled up: merge all but the largest ([`merge_small_packs`]).
    MergeSmallPacks,
    /// Rewrite the store as what the kept commits need ([`compact`]).
    Compact,
}

/// The store is worth compacting when it has grown past twice its size at
/// the last compaction (plus slack), or `garbage_bytes` (objects no kept
/// commit needs any more, see [`super::garbage`]) exceed a
/// [`GARBAGE_SHARE`]th of what is still needed (and the slack), or there
/// are loose objects; its small packs are worth merging at [`MAX_PACKS`]
/// packs.
pub fn upkeep(now: PackStats, baseline_bytes: u64, garbage_bytes: u64) -> Upkeep {
    let allowed = baseline_bytes
        .saturating_mul(GROWTH_FACTOR)
        .saturating_add(SLACK_BYTES);
    let grown = now.packs > 1 && now.bytes > allowed;
    let needed = now.bytes.saturating_sub(garbage_bytes);
    let wasteful = now.packs >= 1 && garbage_bytes > SLACK_BYTES.max(needed / GARBAGE_SHARE);
    if grown || wasteful || now.loose > 0 && now.packs >= 1 {
        Upkeep::Compact
    } else if has_many_packs(now) {
        Upkeep::MergeSmallPacks
    } else {
        Upkeep::Nothing
    }
}

/// What `--git-gc=mode` calls for in the store at `git_dir` holding
/// `stats`, `garbage_bytes` of it needed by no kept commit. The root's store
/// and each submodule's are judged alike: `off` never rewrites either
/// (only [`trim_shallow`], which rewrites no object, still runs).
pub fn due(mode: GcMode, git_dir: &Path, stats: PackStats, garbage_bytes: u64) -> Upkeep {
    match mode {
        // Read each time: a store opened empty grows from its first sync's
        // pack (see `baseline`).
        GcMode::Auto | GcMode::Always => upkeep(stats, baseline(git_dir, stats), garbage_bytes),
        GcMode::Aggressive if is_fragmented(stats) || garbage_bytes > 0 => Upkeep::Compact,
        GcMode::Aggressive | GcMode::Off => Upkeep::Nothing,
    }
}

/// Whether the packs are as many as call for a merge of the small ones.
fn has_many_packs(now: PackStats) -> bool {
    now.packs >= MAX_PACKS
}

/// What [`carry_out`] did.
pub enum Done {
    Nothing,
    Compacted(PackStats),
    Merged(PackStats),
}

/// Carries out `due` on the store of `repo` (keeping what `keep` needs).
/// A compaction that fails with [`MAX_PACKS`] packs (and not because it was
/// interrupted) merges the small packs instead: packs must not pile up while
/// compaction keeps failing.
pub fn carry_out(
    repo: &gix::Repository,
    due: Upkeep,
    keep: &[ObjectId],
    budget: &Budget,
) -> Result<Done, Error> {
    match due {
        Upkeep::Nothing => Ok(Done::Nothing),
        Upkeep::MergeSmallPacks => merge_keeping_record(repo, budget).map(Done::Merged),
        Upkeep::Compact => match compact(repo, keep, budget) {
            Ok(after) => Ok(Done::Compacted(after)),
            Err(e) if !budget.is_interrupted() && has_many_packs(stats(repo.git_dir())) => {
                tracing::warn!(error = %e, "object store compaction failed; merging its small packs instead");
                merge_keeping_record(repo, budget).map(Done::Merged)
            }
            Err(e) => Err(e),
        },
    }
}

/// [`merge_small_packs`], carrying the store's verified record over it
/// (see [`store::carry_verified`](super::store::carry_verified)).
fn merge_keeping_record(repo: &gix::Repository, budget: &Budget) -> Result<PackStats, Error> {
    let held = super::store::held_record(repo.git_dir());
    let merged = merge_small_packs(repo, budget)?;
    if let (Some(held), Some(added)) = (held, &merged.added) {
        super::store::carry_verified(repo.git_dir(), held, &merged.removed, added);
    }
    Ok(merged.stats)
}

/// What [`merge_small_packs`] did: the store's stats after it, the file
/// stems of the packs it deleted and of the pack it wrote (None: nothing to merge).
struct Merged {
    stats: PackStats,
    removed: Vec<String>,
    added: Option<String>,
}

/// Whether there is anything to compact at all: more than one pack, or loose objects.
pub fn is_fragmented(now: PackStats) -> bool {
    now.packs > 1 || now.loose > 0
}

/// Where a store's size after its last rewrite is kept, in its git dir.
pub(super) const BASELINE_FILE: &str = "git-sidecar-compacted";

/// The store's size after its last rewrite ([`compact`] records it), for
/// the growth rule of [`upkeep`]. Kept on disk, so that the rule holds
/// across processes: a `--one-time` run never doubles the store by itself,
/// and merging small packs drops nothing. A store we never rewrote counts
/// its largest pack with its index files (a clone's, which holds what its
/// commit needs), recorded from then on. A record larger than the store is
/// stale (someone else rewrote or emptied it: between our rewrites the store
/// only grows) and counts as none.
/// `now` is the store's [`stats`].
pub fn baseline(git_dir: &Path, now: PackStats) -> u64 {
    let recorded = fs::read_to_string(git_dir.join(BASELINE_FILE))
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
        .filter(|&bytes| bytes <= now.bytes);
    if let Some(bytes) = recorded.filter(|_| now.packs > 0) {
        return bytes;
    }
    let largest = largest_pack_bytes(&git_dir.join("objects/pack"));
    if largest > 0 {
        record_baseline(git_dir, largest);
    }
    largest
}

/// The largest pack's files (data, index, reverse index...), in bytes.
fn largest_pack_bytes(pack_dir: &Path) -> u64 {
    let Some((largest, _)) = data_files(pack_dir)
        .unwrap_or_default()
        .into_iter()
        .max_by_key(|(_, bytes)| *bytes)
    else {
        return 0;
    };
    pack_files(pack_dir)
        .unwrap_or_default()
        .iter()
        .filter(|path| path.file_stem() == largest.file_stem())
        .filter_map(|path| fs::metadata(path).ok())
        .map(|meta| meta.len())
        .sum()
}

fn record_baseline(git_dir: &Path, bytes: u64) {
    let path = git_dir.join(BASELINE_FILE);
    if let Err(e) = crate::fsutil::write_atomic(&path, bytes.to_string().as_bytes()) {
        tracing::debug!(error = %e, path = %path.display(), "could not record the store's compacted size");
    }
}

/// Rewrites the object store to hold only what `keep` needs. Returns the new size.
fn compact(repo: &gix::Repository, keep: &[ObjectId], budget: &Budget) -> Result<PackStats, Error> {
    let git_dir = repo.git_dir().to_path_buf();
    let pack_dir = git_dir.join("objects/pack");
    let old_packs = pack_files(&pack_dir)?;
    let commits = reachable_commits(repo, keep)?;
    let kept: std::collections::HashSet<ObjectId> = commits.iter().copied().collect();
    let partial = old_packs.iter().any(|p| has_extension(p, "promisor"));
    let new_pack = match partial {
        true => {
            let objects = present_objects(repo, &commits)?;
            let pack = write_pack(repo, objects, Expansion::AsIs, &pack_dir, budget)?;
            super::partial::mark_promisor(&pack).map_err(|source| Error::Io {
                path: pack.clone(),
                source,
            })?;
            pack
        }
        false => write_pack(repo, commits, Expansion::TreeContents, &pack_dir, budget)?,
    };
    if budget.is_interrupted() {
        return Err(Error::Interrupted);
    }
    // Before deleting anything: a shallow entry for a commit we drop would
    // make a later deepening fetch claim to have it, and never receive it.
    prune_shallow_file(&git_dir.join("shallow"), &kept)?;
    prune_reflogs(&git_dir, &kept)?;
    // The packs listed before the new one was written, each with its index
    // (a data file without one may be a git command's, being written now),
    // and indexes first: a crash part way leaves whole packs.
    let gone: Vec<_> = old_packs
        .iter()
        .filter(|p| has_extension(p, "idx") || is_old_orphan(p))
        .filter_map(|p| p.file_stem())
        .filter(|stem| Some(*stem) != new_pack.file_stem())
        .collect();
    remove_packs(&old_packs, &gone)?;
    remove_loose_objects(&git_dir.join("objects"))?;
    let after = stats(&git_dir);
    record_baseline(&git_dir, after.bytes);
    Ok(after)
}

/// Merges every pack but the largest into one pack holding all their
/// objects, then deletes them (with their index, reverse index and markers).
/// Nothing is dropped: what no kept commit needs any more goes at the next
/// [`compact`]. A partial clone's promisor marker is kept on the new pack.
/// Returns the new size.
fn merge_small_packs(repo: &gix::Repository, budget: &Budget) -> Result<Merged, Error> {
    let git_dir = repo.git_dir();
    let pack_dir = git_dir.join("objects/pack");
    let mut packs = data_files(&pack_dir)?;
    packs.sort_by_key(|(_, bytes)| *bytes);
    packs.pop(); // the largest stays as it is
    if packs.len() < 2 {
        return Ok(Merged {
            stats: stats(git_dir),
            removed: Vec::new(),
            added: None,
        });
    }
    let mut objects = Vec::new();
    for (pack, _) in &packs {
        let index = pack.with_extension("idx");
        let index = pack::index::File::at(&index, gix::hash::Kind::Sha1)
            .map_err(|e| Error::Count(format!("{}: {e}", index.display())))?;
        objects.extend(index.iter().map(|entry| entry.oid));
    }
    objects.sort_unstable();
    objects.dedup();
    let promisor = packs
        .iter()
        .any(|(pack, _)| pack.with_extension("promisor").exists());
    let new_pack = write_pack(repo, objects, Expansion::AsIs, &pack_dir, budget)?;
    if promisor {
        super::partial::mark_promisor(&new_pack).map_err(|source| Error::Io {
            path: new_pack.clone(),
            source,
        })?;
    }
    if budget.is_interrupted() {
        return Err(Error::Interrupted);
    }
    let merged: Vec<_> = packs
        .iter()
        .filter_map(|(pack, _)| pack.file_stem())
        .filter(|stem| Some(*stem) != new_pack.file_stem())
        .collect();
    remove_packs(&pack_files(&pack_dir)?, &merged)?;
    let stem_of = |stem: &std::ffi::OsStr| stem.to_string_lossy().into_owned();
    Ok(Merged {
        stats: stats(git_dir),
        removed: merged.iter().map(|s| stem_of(s)).collect(),
        added: new_pack.file_stem().map(stem_of),
    })
}

/// A pack data file without its index, untouched for an hour: what a crash
/// while deleting a pack left, not a pack a git command is writing.
fn is_old_orphan(path: &Path) -> bool {
    const GRACE: std::time::Duration = std::time::Duration::from_secs(3600);
    has_extension(path, "pack")
        && !is_indexed_pack(path)
        && fs::metadata(path)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > GRACE))
}

/// Deletes the files among `files` of the packs named by `stems`, each
/// pack's index first: without it a pack is invisible to git and to gix, so
/// a crash part way leaves whole packs and ignored leftovers.
fn remove_packs(files: &[PathBuf], stems: &[&std::ffi::OsStr]) -> Result<(), Error> {
    let (indexes, others): (Vec<_>, Vec<_>) = files
        .iter()
        .filter(|path| path.file_stem().is_some_and(|stem| stems.contains(&stem)))
        .partition(|path| has_extension(path, "idx"));
    for path in indexes.into_iter().chain(others) {
        remove_if_present(path)?;
    }
    Ok(())
}

/// Each pack's data file with its size. A data file without its index is
/// left out: invisible to git and gix, it is what a crash while deleting a
/// pack leaves, or a git command writing one right now ([`compact`] deletes
/// it after an hour).
fn data_files(pack_dir: &Path) -> Result<Vec<(PathBuf, u64)>, Error> {
    let mut packs = Vec::new();
    for path in pack_files(pack_dir)? {
        if !is_indexed_pack(&path) {
            continue;
        }
        let meta = fs::metadata(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        packs.push((path, meta.len()));
    }
    Ok(packs)
}

/// A pack's data file that has its index: a pack to git and gix (a data
/// file alone is invisible to them).
fn is_indexed_pack(path: &Path) -> bool {
    has_extension(path, "pack") && path.with_extension("idx").exists()
}

fn has_extension(path: &Path, extension: &str) -> bool {
    path.extension().is_some_and(|e| e == extension)
}

fn pack_files(pack_dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let entries = fs::read_dir(pack_dir).map_err(|source| Error::Io {
        path: pack_dir.to_path_buf(),
        source,
    })?;
    Ok(entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("pack-"))
        })
        .collect())
}

/// All commits reachable from `keep`, stopping at the shallow boundary.
///
/// Each kept commit is walked on its own: in one combined walk gix drops the
/// parents of shallow commits even when such a parent is itself a starting
/// point (a kept worktree one commit behind the published one), and its
/// objects would be deleted.
fn reachable_commits(repo: &gix::Repository, keep: &[ObjectId]) -> Result<Vec<ObjectId>, Error> {
    let mut seen = std::collections::HashSet::new();
    let mut commits = Vec::new();
    for tip in keep.iter().copied().filter(|id| repo.has_object(id)) {
        let walk = repo
            .rev_walk([tip])
            .all()
            .map_err(|e| Error::Count(e.to_string()))?;
        for info in walk {
            let id = info.map_err(|e| Error::Count(e.to_string()))?.id;
            if seen.insert(id) {
                commits.push(id);
            }
        }
    }
    Ok(commits)
}

/// The commits, all their trees, and those of their blobs the store holds
/// (a partial clone lacks some).
fn present_objects(repo: &gix::Repository, commits: &[ObjectId]) -> Result<Vec<ObjectId>, Error> {
    let count = |e: &dyn std::fmt::Display| Error::Count(e.to_string());
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    let lookup = super::partial::lookup_handle(repo);
    for commit in commits {
        let tree = repo
            .find_commit(*commit)
            .map_err(|e| count(&e))?
            .tree_id()
            .map_err(|e| count(&e))?
            .detach();
        out.push(*commit);
        if !seen.insert(tree) {
            continue;
        }
        out.push(tree);
        let mut recorder = gix::traverse::tree::Recorder::default();
        repo.find_tree(tree)
            .map_err(|e| count(&e))?
            .traverse()
            .breadthfirst(&mut recorder)
            .map_err(|e| count(&e))?;
        for entry in recorder.records {
            // Gitlinks name another store's commits.
            let wanted =
                !entry.mode.is_commit() && (entry.mode.is_tree() || lookup.has_object(entry.oid));
            if wanted && seen.insert(entry.oid) {
                out.push(entry.oid);
            }
        }
    }
    Ok(out)
}

/// Writes a pack with `objects` (with `TreeContents`: commits, expanded to
/// their trees and blobs), and indexes it into `pack_dir`.
fn write_pack(
    repo: &gix::Repository,
    objects: Vec<ObjectId>,
    expansion: Expansion,
    pack_dir: &Path,
    budget: &Budget,
) -> Result<PathBuf, Error> {
    let mut db = repo
        .objects
        .clone()
        .into_arc()
        .map_err(|e| Error::Write(e.to_string()))?
        .into_inner();
    // Pack generation refers to pack locations, which must stay loaded.
    db.prevent_pack_unload();
    let input = Box::new(objects.into_iter().map(Ok));
    let (counts, _) = gix_pack::data::output::count::objects(
        db.clone(),
        input,
        &gix::progress::Discard,
        budget.interrupt_flag(),
        gix_pack::data::output::count::objects::Options {
            thread_limit: Some(1),
            input_object_expansion: expansion,
            chunk_size: 50,
        },
    )
    .map_err(|e| Error::Count(e.to_string()))?;
    let num_entries = u32::try_from(counts.len()).map_err(|e| Error::Write(e.to_string()))?;
    let entries = gix_pack::data::output::entry::iter_from_counts(
        counts,
        db,
        Box::new(gix::progress::Discard),
        gix_pack::data::output::entry::iter_from_counts::Options {
            thread_limit: Some(1),
            mode: gix_pack::data::output::entry::iter_from_counts::Mode::PackCopyAndBaseObjects,
            allow_thin_pack: false,
            chunk_size: 50,
            version: pack::data::Version::V2,
            compression: Default::default(),
        },
    )
    .map_err(|e| Error::Write(e.to_string()))?;
    let mut tmp = tempfile::tempfile_in(pack_dir).map_err(|source| Error::Io {
        path: pack_dir.to_path_buf(),
        source,
    })?;
    let writer = gix_pack::data::output::bytes::FromEntriesIter::new(
        gix::parallel::InOrderIter::from(entries),
        &mut tmp,
        num_entries,
        pack::data::Version::V2,
        gix::hash::Kind::Sha1,
    );
    for chunk in writer {
        chunk.map_err(|e| Error::Write(e.to_string()))?;
        if budget.is_interrupted() {
            return Err(Error::Interrupted);
        }
    }
    tmp.seek(SeekFrom::Start(0)).map_err(|source| Error::Io {
        path: pack_dir.to_path_buf(),
        source,
    })?;
    let outcome = pack::Bundle::write_to_directory(
        &mut BufReader::new(tmp),
        Some(pack_dir),
        &mut gix::progress::Discard,
        budget.interrupt_flag(),
        None::<gix::objs::find::Never>,
        gix::hash::Kind::Sha1,
        // Indexing the new pack: the quota's threads, not one per core
        // (gix's default).
        pack::bundle::write::Options {
            thread_limit: Some(super::store::threads(repo)),
            ..Default::default()
        },
    )
    .map_err(|e| Error::Write(e.to_string()))?;
    // The keep file guards a fresh pack against a concurrent gc until refs
    // name its objects; we are the only writer, and git never removes it.
    if let Some(keep) = &outcome.keep_path {
        remove_if_present(keep)?;
    }
    let data_path = outcome
        .data_path
        .ok_or_else(|| Error::Write("the pack was not written to disk".into()))?;
    for path in [Some(&data_path), outcome.index_path.as_ref()]
        .into_iter()
        .flatten()
    {
        crate::fsutil::apply_umask(path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
    }
    Ok(data_path)
}

fn remove_if_present(path: &Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::Io {
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Drops every reflog entry (in `<git_dir>/logs` and each worktree's
/// `<git_dir>/worktrees/<name>/logs`) whose old or new value is a commit
/// that is not kept.
fn prune_reflogs(git_dir: &Path, kept: &std::collections::HashSet<ObjectId>) -> Result<(), Error> {
    let mut dirs = vec![git_dir.join("logs")];
    if let Ok(entries) = fs::read_dir(git_dir.join("worktrees")) {
        dirs.extend(entries.flatten().map(|e| e.path().join("logs")));
    }
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => dirs.push(path),
                Ok(kind) if kind.is_file() => prune_reflog(&path, kept)?,
                _ => {}
            }
        }
    }
    Ok(())
}

fn prune_reflog(path: &Path, kept: &std::collections::HashSet<ObjectId>) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let text = fs::read(path).map_err(io)?;
    let pruned: Vec<u8> = text
        .split_inclusive(|b| *b == b'\n')
        .filter(|line| reflog_entry_is_kept(line, kept))
        .flatten()
        .copied()
        .collect();
    if pruned == text {
        return Ok(());
    }
    crate::fsutil::write_atomic(path, &pruned).map_err(io)
}

/// `<old> <new> <identity> <time> <tz>\t<message>`: both ids must be null or kept.
fn reflog_entry_is_kept(line: &[u8], kept: &std::collections::HashSet<ObjectId>) -> bool {
    let mut fields = line.splitn(3, |b| *b == b' ');
    let mut kept_id = || {
        fields
            .next()
            .and_then(|hex| ObjectId::from_hex(hex).ok())
            .is_some_and(|id| id.is_null() || kept.contains(&id))
    };
    kept_id() && kept_id()
}

/// How many shallow lines more than were left last time [`trim_shallow`]
/// leaves alone: each fetch of a shallow store adds one.
const SHALLOW_SLACK: usize = 16;

/// What [`trim_shallow`] did, when it looked at the lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trimmed {
    pub dropped: usize,
    /// Lines left: the next call's `floor`.
    pub left: usize,
}

/// Drops the shallow lines no walk of the store needs, so that they do
/// not pile up between compactions: every fetch sends the server all of
/// them, and the server looks each one up (a one-time fetch of a 1-file
/// change: 24–34 ms with about 350 lines, 11–12 ms with 18).
/// Nothing is looked at (`None`) unless the file has more than `floor`
/// (what the last trim left, or the kept commits) plus [`SHALLOW_SLACK`]
/// lines.
///
/// A line stays for a commit reachable from `keep` (down to the boundary),
/// and for one from which a walk, stopping at the lines that stay, would
/// meet a commit the store lacks: a walk from any commit in the store,
/// kept again after a rollback, still stops where the history does, even
/// in a store an interrupted compaction left with a line missing. A line
/// for a commit the store no longer holds goes, as in a compaction.
pub fn trim_shallow(
    repo: &gix::Repository,
    keep: &[ObjectId],
    floor: usize,
) -> Result<Option<Trimmed>, Error> {
    let path = repo.git_dir().join("shallow");
    let io = |source| Error::Io {
        path: path.clone(),
        source,
    };
    let lines = super::shallow::read(&path).map_err(io)?;
    let count = lines.len();
    if !past_slack(count, keep.len(), floor) {
        return Ok(None);
    }
    let reachable: HashSet<ObjectId> = reachable_commits(repo, keep)?.into_iter().collect();
    let present: Vec<ObjectId> = lines
        .into_iter()
        .filter_map(Result::ok)
        .filter(|id| repo.has_object(id))
        .collect();
    let mut walks = Walks::new(repo);
    let (needed, candidates): (Vec<ObjectId>, Vec<ObjectId>) = present
        .into_iter()
        .partition(|id| reachable.contains(id) || !walks.parents_present(*id));
    let boundary: HashSet<ObjectId> = needed.into_iter().collect();
    let lined: HashSet<ObjectId> = candidates.iter().copied().collect();
    // A candidate goes if each walk down from it stops at the boundary, or
    // goes on through a candidate (which goes or stays by the same rule):
    // the lowest candidate above a commit without a line whose walk meets
    // a missing commit stays, and stops the walks of those above it.
    let mut needed = boundary.clone();
    for id in candidates {
        let parents = walks.parents_of(id).map(<[ObjectId]>::to_vec);
        let stops_short = parents.unwrap_or_default().into_iter().any(|p| {
            !boundary.contains(&p) && !lined.contains(&p) && !walks.complete(p, &boundary)
        });
        if stops_short {
            needed.insert(id);
        }
    }
    let left = needed.len();
    if left < count {
        super::shallow::write(&path, needed).map_err(io)?;
    }
    Ok(Some(Trimmed {
        dropped: count - left,
        left,
    }))
}

/// Whether [`trim_shallow`] would look at the store at `git_dir` (without
/// opening it: a submodule's store is opened only then).
pub fn shallow_past_slack(git_dir: &Path, keep: usize, floor: usize) -> bool {
    super::shallow::read(&git_dir.join("shallow"))
        .is_ok_and(|lines| past_slack(lines.len(), keep, floor))
}

fn past_slack(lines: usize, keep: usize, floor: usize) -> bool {
    lines > floor.max(keep) + SHALLOW_SLACK
}

/// Walks down a store's commits for [`trim_shallow`], each commit's
/// parents read once.
struct Walks<'r> {
    repo: &'r gix::Repository,
    /// A commit's parents; `None`: the store lacks it (or it is no commit).
    parents: HashMap<ObjectId, Option<Vec<ObjectId>>>,
    /// Whether every walk down from a commit stops at the boundary or a
    /// root before it meets a commit the store lacks (for the one boundary
    /// [`Walks::complete`] is always given).
    complete: HashMap<ObjectId, bool>,
}

impl<'r> Walks<'r> {
    fn new(repo: &'r gix::Repository) -> Self {
        Self {
            repo,
            parents: HashMap::new(),
            complete: HashMap::new(),
        }
    }

    fn parents_of(&mut self, id: ObjectId) -> Option<&[ObjectId]> {
        let repo = self.repo;
        self.parents
            .entry(id)
            .or_insert_with(|| {
                let commit = repo.find_commit(id).ok()?;
                Some(commit.parent_ids().map(|p| p.detach()).collect())
            })
            .as_deref()
    }

    /// Whether the store holds `id` and each of its parents.
    fn parents_present(&mut self, id: ObjectId) -> bool {
        let repo = self.repo;
        self.parents_of(id)
            .is_some_and(|parents| parents.iter().all(|p| repo.has_object(p)))
    }

    /// Whether `start` is complete (see [`Walks::complete`]) with the
    /// commits of `boundary` stopping the walk: depth first, without
    /// recursion (a history may be long).
    fn complete(&mut self, start: ObjectId, boundary: &HashSet<ObjectId>) -> bool {
        let mut stack = vec![start];
        while let Some(&id) = stack.last() {
            if self.complete.contains_key(&id) {
                stack.pop();
                continue;
            }
            let Some(parents) = self.parents_of(id).map(<[ObjectId]>::to_vec) else {
                self.complete.insert(id, false);
                stack.pop();
                continue;
            };
            let mut waiting = false;
            let mut complete = true;
            for parent in parents.into_iter().filter(|p| !boundary.contains(p)) {
                match self.complete.get(&parent) {
                    Some(known) => complete &= known,
                    None => {
                        stack.push(parent);
                        waiting = true;
                    }
                }
            }
            if !waiting {
                self.complete.insert(id, complete);
                stack.pop();
            }
        }
        self.complete.get(&start).copied().unwrap_or(false)
    }
}

/// Keeps only the shallow boundary commits that are still in the store.
fn prune_shallow_file(
    path: &Path,
    kept: &std::collections::HashSet<ObjectId>,
) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let lines = super::shallow::read(path).map_err(io)?;
    let count = lines.len();
    let pruned: std::collections::HashSet<ObjectId> = lines
        .into_iter()
        .filter_map(Result::ok)
        .filter(|id| kept.contains(id))
        .collect();
    if pruned.len() == count {
        return Ok(());
    }
    super::shallow::write(path, pruned).map_err(io)
}

fn remove_loose_objects(objects: &Path) -> Result<(), Error> {
    let Ok(entries) = fs::read_dir(objects) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        if super::store::is_loose_object_dir(&entry.file_name().to_string_lossy()) {
            let path = entry.path();
            fs::remove_dir_all(&path).map_err(|source| Error::Io { path, source })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::git::test_git::git;

    /// An empty repository made by git, in a temporary directory.
    fn init_repo() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        git(dir.path(), &["init", "-q", "-b", "main"]);
        dir
    }

    /// Every object of a repository, as the git CLI lists them.
    fn all_objects(root: &Path) -> Vec<String> {
        let listed = git(
            root,
            &[
                "cat-file",
                "--batch-all-objects",
                "--batch-check=%(objectname)",
            ],
        );
        listed.lines().map(str::to_owned).collect()
    }

    fn pack_names(root: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(root.join(".git/objects/pack"))
            .expect("pack dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// A large pack (as the first clone leaves it) and three small ones (as
    /// fetches leave them, one a partial clone's promisor pack): the three
    /// become one pack holding every object they held, the large one is not
    /// touched, and git finds the store whole.
    #[test]
    fn small_packs_merge_and_the_largest_stays() {
        let dir = init_repo();
        let root = dir.path();
        for n in 0..300 {
            let text = format!("file {n}\n{}", "line of text\n".repeat(n % 40));
            fs::write(root.join(format!("f{n}.md")), text).expect("write");
        }
        git(root, &["add", "."]);
        git(root, &["commit", "-qm", "base"]);
        git(root, &["repack", "-adq"]);
        let base: Vec<String> = pack_names(root);
        let original = fs::read(root.join("f2.md")).expect("read");
        for round in 0..3 {
            fs::write(root.join("f1.md"), format!("round {round}")).expect("write");
            fs::write(root.join(format!("new{round}.md")), "new").expect("write");
            // Back and forth: the second round's blob is also in the large pack.
            let f2 = match round {
                1 => original.clone(),
                _ => format!("f2, round {round}\n").repeat(50).into_bytes(),
            };
            fs::write(root.join("f2.md"), f2).expect("write");
            git(root, &["add", "."]);
            git(root, &["commit", "-qm", &format!("round {round}")]);
            // What the commit adds to its parent, some of it in the large
            // pack too (as a fetched pack may hold it).
            let list = git(root, &["rev-list", "--objects", "HEAD", "^HEAD~1"]);
            let objects: String = list.lines().map(|l| format!("{}\n", &l[..40])).collect();
            let pack = ["pack-objects", "-q", ".git/objects/pack/pack"];
            crate::git::test_git::git_with_input(root, &pack, objects.as_bytes());
            git(root, &["prune-packed"]);
        }
        let packs = pack_names(root);
        let small = packs
            .iter()
            .find(|n| n.ends_with(".pack") && !base.contains(n));
        let promisor = small.expect("a small pack").replace(".pack", ".promisor");
        fs::write(root.join(".git/objects/pack").join(&promisor), "").expect("promisor");
        // A crash while deleting a pack leaves its data without its index.
        let orphan = "pack-0000000000000000000000000000000000000000.pack";
        fs::write(root.join(".git/objects/pack").join(orphan), "PACK").expect("orphan");
        let before = all_objects(root);
        let count = |names: &[String]| names.iter().filter(|n| n.ends_with(".pack")).count();
        assert_eq!(count(&packs), 4, "{packs:?}");
        assert_eq!(stats(&root.join(".git")).packs, 4, "an orphan is no pack");
        let ids_in = |pack: &str| -> Vec<ObjectId> {
            let idx = root
                .join(".git/objects/pack")
                .join(pack.replace(".pack", ".idx"));
            let index = pack::index::File::at(&idx, gix::hash::Kind::Sha1).expect("idx");
            index.iter().map(|e| e.oid).collect()
        };
        let large = base
            .iter()
            .find(|n| n.ends_with(".pack"))
            .expect("the large pack");
        let in_large = ids_in(large);
        let shared = packs
            .iter()
            .filter(|n| n.ends_with(".pack") && *n != large)
            .flat_map(|n| ids_in(n))
            .filter(|id| in_large.contains(id))
            .count();
        assert!(
            shared > 0,
            "no object of the small packs is in the large one"
        );

        let repo = gix::open(root).expect("open");
        let after = merge_small_packs(&repo, &Budget::for_tests())
            .expect("merge")
            .stats;
        assert_eq!(after.packs, 2);
        let now = pack_names(root);
        assert!(now.contains(&orphan.to_string()), "left for a compaction");
        for name in &base {
            assert!(
                now.contains(name),
                "the large pack {name} was touched: {now:?}"
            );
        }
        assert_eq!(all_objects(root), before);
        assert!(
            now.iter().filter(|n| n.ends_with(".promisor")).count() == 1
                && !now.contains(&promisor),
            "the merged pack keeps the promisor marker: {now:?}"
        );
        assert!(!now.iter().any(|n| n.ends_with(".keep")), "{now:?}");
        git(root, &["fsck", "--full", "--no-progress"]);
    }

    /// Depth 1 after a publish of A then its child B: both are shallow
    /// boundaries, and both are kept (stale-worktree timeout). Whatever the
    /// order of the kept list, both commits must survive compaction.
    #[test]
    fn kept_parent_of_a_shallow_commit_is_not_dropped() {
        let dir = init_repo();
        let root = dir.path();
        std::fs::write(root.join("f"), "a").expect("write");
        git(root, &["add", "f"]);
        git(root, &["commit", "-qm", "a"]);
        let a = git(root, &["rev-parse", "HEAD"]);
        std::fs::write(root.join("f"), "b").expect("write");
        git(root, &["commit", "-qam", "b"]);
        let b = git(root, &["rev-parse", "HEAD"]);
        std::fs::write(root.join(".git/shallow"), format!("{a}\n{b}\n")).expect("shallow");
        let repo = gix::open(root).expect("open");
        let id = |h: &str| ObjectId::from_hex(h.as_bytes()).expect("hex");
        for keep in [vec![id(&b), id(&a)], vec![id(&a), id(&b)]] {
            let commits = reachable_commits(&repo, &keep).expect("walk");
            assert!(
                commits.contains(&id(&a)) && commits.contains(&id(&b)),
                "{keep:?} -> {commits:?}"
            );
        }
    }

    #[test]
    fn reflog_entries_naming_dropped_commits_are_dropped() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let (a, b, gone) = ("a".repeat(40), "b".repeat(40), "c".repeat(40));
        let null = "0".repeat(40);
        let line = |old: &str, new: &str| format!("{old} {new} t <t@t> 1 +0000\tsync\n");
        let keep_me = [line(&null, &a), line(&a, &b)].concat();
        let log = dir.path().join("worktrees/x/logs/HEAD");
        fs::create_dir_all(log.parent().expect("parent"))?;
        fs::write(
            &log,
            [line(&null, &gone), line(&gone, &a), keep_me.clone()].concat(),
        )?;
        let branch = dir.path().join("logs/refs/heads/git-sync");
        fs::create_dir_all(branch.parent().expect("parent"))?;
        fs::write(&branch, [keep_me.clone(), line(&b, &gone)].concat())?;
        let kept = [&a, &b]
            .iter()
            .map(|h| ObjectId::from_hex(h.as_bytes()))
            .collect::<Result<_, _>>()?;
        prune_reflogs(dir.path(), &kept)?;
        assert_eq!(fs::read_to_string(&log)?, keep_me);
        assert_eq!(fs::read_to_string(&branch)?, keep_me);
        Ok(())
    }

    #[test]
    fn due_when_packs_outgrow_the_baseline() {
        let s = |packs, bytes| PackStats {
            packs,
            bytes,
            loose: 0,
        };
        assert_eq!(
            upkeep(s(1, 100 << 20), 1 << 20, 0),
            Upkeep::Nothing,
            "one pack is already compact"
        );
        let within = upkeep(s(2, 3 << 20), 2 << 20, 0);
        assert_eq!(within, Upkeep::Nothing, "within 2x + slack");
        assert_eq!(upkeep(s(2, 10 << 20), 2 << 20, 0), Upkeep::Compact);
        // Many small packs: merged, not the whole store rewritten.
        assert_eq!(upkeep(s(MAX_PACKS, 1), 1, 0), Upkeep::MergeSmallPacks);
        assert_eq!(upkeep(s(MAX_PACKS - 1, 1), 1, 0), Upkeep::Nothing);
        assert_eq!(upkeep(s(MAX_PACKS, 10 << 20), 1, 0), Upkeep::Compact);
    }

    /// A 4 MiB file committed and reverted in a small repository: one pack,
    /// no growth since it was compacted with the file, but the file is garbage.
    /// The recorded size is the baseline while it can be ours; a store never
    /// rewritten counts its largest pack with its index; a record larger than
    /// the store (emptied or rewritten by someone else) counts as none.
    #[test]
    fn the_baseline_is_recorded_or_the_largest_pack() {
        let dir = tempfile::tempdir().expect("tempdir");
        let git_dir = dir.path();
        let pack_dir = git_dir.join("objects/pack");
        fs::create_dir_all(&pack_dir).expect("mkdir");
        assert_eq!(baseline(git_dir, stats(git_dir)), 0, "no packs");
        assert!(!git_dir.join(BASELINE_FILE).exists(), "nothing to record");
        for (name, bytes) in [("pack-a", 1000), ("pack-b", 300)] {
            fs::write(pack_dir.join(format!("{name}.pack")), vec![0u8; bytes]).expect("pack");
            fs::write(pack_dir.join(format!("{name}.idx")), vec![0u8; 100]).expect("idx");
        }
        assert_eq!(
            baseline(git_dir, stats(git_dir)),
            1100,
            "the largest pack and its index"
        );
        let recorded = fs::read_to_string(git_dir.join(BASELINE_FILE)).expect("record");
        assert_eq!(recorded, "1100");
        record_baseline(git_dir, 1200);
        assert_eq!(
            baseline(git_dir, stats(git_dir)),
            1200,
            "a record the store can hold"
        );
        record_baseline(git_dir, 5000);
        assert_eq!(
            baseline(git_dir, stats(git_dir)),
            1100,
            "a record larger than the store is stale"
        );
        let huge = upkeep(stats(git_dir), u64::MAX, 0);
        assert_eq!(huge, Upkeep::Nothing, "no overflow");
    }

    /// A compaction deletes the packs it replaced and a data file left
    /// without its index an hour ago, not one a git command is writing now.
    #[test]
    fn a_compaction_leaves_a_pack_being_written() {
        let dir = init_repo();
        let root = dir.path();
        for round in 0..2 {
            fs::write(root.join("f"), format!("{round}")).expect("write");
            git(root, &["add", "f"]);
            git(root, &["commit", "-qm", &round.to_string()]);
            git(root, &["repack", "-dq"]);
        }
        let pack_dir = root.join(".git/objects/pack");
        let fresh = pack_dir.join("pack-1111111111111111111111111111111111111111.pack");
        let old = pack_dir.join("pack-2222222222222222222222222222222222222222.pack");
        fs::write(&fresh, "PACK").expect("fresh");
        fs::write(&old, "PACK").expect("old");
        let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        let secs = two_hours_ago
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time")
            .as_secs();
        let t = nix::sys::time::TimeSpec::new(secs as i64, 0);
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &old,
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::FollowSymlink,
        )
        .expect("utimensat");
        let head = ObjectId::from_hex(git(root, &["rev-parse", "HEAD"]).as_bytes()).expect("id");
        let repo = gix::open(root).expect("open");
        let after = compact(&repo, &[head], &Budget::for_tests()).expect("compact");
        assert_eq!(after.packs, 1);
        assert!(fresh.exists(), "a pack being written was deleted");
        assert!(!old.exists(), "an hour-old leftover stayed");
        git(root, &["fsck", "--full", "--no-progress"]);
    }

    #[test]
    fn due_when_garbage_outweighs_what_is_needed() {
        let one = |bytes| PackStats {
            packs: 1,
            bytes,
            loose: 0,
        };
        let store = (4 << 20) + (100 << 10);
        let due = |bytes, garbage| upkeep(one(bytes), bytes, garbage) == Upkeep::Compact;
        assert!(!due(store, 0));
        assert!(due(store, 4 << 20));
        // Under the slack, or a small share of a large store: not yet.
        assert!(!due(store, 512 << 10));
        assert!(!due(100 << 20, 10 << 20));
        assert!(due(100 << 20, 30 << 20));
    }
}
