//! The repository at `<root>/.git`: opening it, making a new one, repairing
//! one left behind by a crash, and keeping its object store small.
//!
//! We are the only writer of this repository (the caller holds the root
//! lock, see [`crate::rootlock`]), so at start-up any `*.lock` file is stale
//! (a `kill -9` leaves them) and is removed. The config file is
//! ours too and is rewritten whole: reflogs off (they would grow forever) and
//! `remote.origin.url` without credentials, as git-sync does.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use gix::ObjectId;

/// The branch the root's HEAD points at, as in git-sync (`git init -b git-sync`).
pub const BRANCH: &str = "refs/heads/git-sync";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("could not initialise a repository in {path}: {message}")]
    Init { path: PathBuf, message: String },
    #[error("could not open the repository in {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error("could not update {name}: {message}")]
    Ref { name: &'static str, message: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Root(#[from] crate::rootlock::RootError),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What `open_or_init` had to do.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The root was empty (a first start): a repository was made in it,
    /// nothing repaired.
    pub created: bool,
    /// The root was not a usable repository; its contents were deleted.
    pub reinitialized: bool,
    /// The object store was inconsistent and was emptied (worktrees were kept).
    pub objects_reset: bool,
    /// Stale lock files that were removed.
    pub stale_locks: usize,
}

impl Opened {
    /// Whether anything was repaired (a new repository in an empty root
    /// is not a repair).
    pub fn repaired(&self) -> bool {
        self.reinitialized || self.objects_reset || self.stale_locks > 0
    }
}

/// Opens the repository at `root`, creating or repairing it as needed.
/// `origin_url` is written as `remote.origin.url` (must carry no secrets).
/// `filter` (`--filter`) makes the root a partial clone: origin is the
/// promisor remote, and blobs may be missing from the store.
pub fn open_or_init(
    root: &Path,
    origin_url: &str,
    depth: u32,
    filter: Option<&str>,
    threads: usize,
) -> Result<(gix::Repository, Opened), Error> {
    crate::rootlock::prepare_root(root)?;
    let mut opened = Opened::default();
    let git_dir = root.join(".git");
    if !is_usable(root) {
        let empty = is_empty(root);
        if empty {
            tracing::info!(root = %root.display(), "initialising a new root");
        } else {
            tracing::warn!(root = %root.display(), "root is not a usable repository; emptying it and starting over");
        }
        empty_dir_except(root, ROOT_KEEPS)?;
        init(root)?;
        opened.created = empty;
        opened.reinitialized = !empty;
    }
    opened.stale_locks = remove_stale_locks(&git_dir);
    widen_modes(&git_dir);
    write_config(&git_dir, origin_url, depth, filter)?;
    let repo = open(root, threads)?;
    let fresh = opened.created || opened.reinitialized;
    if !fresh && !checked_or_unchanged(&repo, depth, filter.is_some()) {
        tracing::warn!(root = %root.display(), "object store is missing objects; emptying it (published worktrees are kept)");
        reset_objects(&git_dir)?;
        opened.objects_reset = true;
        return Ok((open(root, threads)?, opened));
    }
    Ok((repo, opened))
}

/// The delta-base cache of each thread that reads objects (checkout,
/// compaction): gix's 64-slot cache, capped at this many bytes instead of
/// 96 MiB per thread. (Not `core.deltaBaseCacheLimit`: that switches gix to
/// a cache that fills up to its cap, and the initial sync's anonymous peak
/// went from 11 to 43 MiB on a 40k-file tree.)
pub const DELTA_BASE_CACHE_BYTES: usize = 16 << 20;

/// Opens without reading the user's or system's git config, so the host's
/// configuration cannot change what we do. Pack indexing and checkout get
/// `threads` (the cgroup's CPU quota's, see [`crate::cgroup`]), not one per
/// core of the node: it is the repository's `pack.threads`, read back by
/// [`threads`]. Each thread's cache of delta bases is capped at
/// [`DELTA_BASE_CACHE_BYTES`] (gix's default is 96 MiB per thread).
pub fn open(root: &Path, threads: usize) -> Result<gix::Repository, Error> {
    let options = gix::open::Options::isolated().config_overrides([
        "gitoxide.credentials.terminalPrompt=false".to_string(),
        "protocol.version=2".to_string(),
        format!("pack.threads={}", threads.max(1)),
        format!("gitoxide.core.deltaBaseCacheLimit={DELTA_BASE_CACHE_BYTES}"),
    ]);
    gix::open_opts(root, options).map_err(|e| Error::Open {
        path: root.to_path_buf(),
        message: e.to_string(),
    })
}

/// The threads `repo` was opened with for pack indexing and checkout (see
/// [`open`]): its `pack.threads`, one if it has none.
pub fn threads(repo: &gix::Repository) -> usize {
    let configured = repo.config_snapshot().integer("pack.threads");
    configured
        .and_then(|n| usize::try_from(n).ok())
        .map_or(1, |n| n.max(1))
}

/// Usable = `<root>/.git` is a non-bare repository whose work tree is `root`.
fn is_usable(root: &Path) -> bool {
    let git_dir = root.join(".git");
    if !git_dir.is_dir() || !git_dir.join("HEAD").is_file() || !git_dir.join("objects").is_dir() {
        return false;
    }
    // Opened only to look at, never used: one thread.
    match open(root, 1) {
        Ok(repo) => repo.workdir().is_some_and(|w| same_dir(w, root)),
        Err(_) => false,
    }
}

/// What a root may hold that is not ours, and stays when it is emptied:
/// the root lock (deleting it while held would let a second instance in),
/// and the `lost+found` of an ext2/3/4 volume mounted at the root (a fresh
/// PersistentVolume's; root's own, mode 0700, which a non-root sidecar
/// can neither read nor delete, and fsck wants there).
const ROOT_KEEPS: &[&str] = &[crate::rootlock::FILE_NAME, "lost+found"];

/// Nothing in the root but (perhaps) what [`ROOT_KEEPS`] names.
fn is_empty(dir: &Path) -> bool {
    fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .all(|e| ROOT_KEEPS.iter().any(|k| e.file_name() == *k))
        })
        .unwrap_or(false)
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Deletes everything inside `dir` but not `dir` itself (it may be a mount point).
fn empty_dir(dir: &Path) -> Result<(), Error> {
    empty_dir_except(dir, &[])
}

/// Like [`empty_dir`], keeping the entries named in `keep`.
fn empty_dir_except(dir: &Path, keep: &[&str]) -> Result<(), Error> {
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        if keep.iter().any(|k| entry.file_name() == *k) {
            continue;
        }
        let path = entry.path();
        crate::fsutil::remove_any(&path).map_err(io_err(&path))?;
    }
    Ok(())
}

fn init(root: &Path) -> Result<(), Error> {
    gix::init(root).map_err(|e| Error::Init {
        path: root.to_path_buf(),
        message: e.to_string(),
    })?;
    let head = root.join(".git/HEAD");
    fs::write(&head, format!("ref: {BRANCH}\n")).map_err(io_err(&head))
}

/// Gives every file and directory in the git dir that this user owns the
/// mode the umask asks for (see [`crate::fsutil`]): earlier versions left
/// packs, the config and the shallow file 0600, which another user of the
/// group (`--group-write`) cannot read. Best effort: only what needs it is
/// changed, and files of other users are left alone.
fn widen_modes(git_dir: &Path) {
    let uid = nix::unistd::geteuid().as_raw();
    let mut stack = vec![git_dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            use std::os::unix::fs::MetadataExt;
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            }
            if meta.uid() == uid && (meta.is_dir() || meta.is_file()) {
                let _ = crate::fsutil::apply_umask(&entry.path());
            }
        }
    }
}

/// Removes `*.lock` files a killed process may have left in the git dir.
fn remove_stale_locks(git_dir: &Path) -> usize {
    let mut removed = 0;
    let mut stack = vec![git_dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() && entry.file_name() != "objects" {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "lock")
                && fs::remove_file(&path).is_ok()
            {
                tracing::info!(path = %path.display(), "removed stale lock file");
                removed += 1;
            }
        }
    }
    removed + remove_pack_temporaries(&git_dir.join("objects/pack"))
}

/// A killed fetch can leave temporary files next to the packs, and a
/// `.keep` file on a pack it wrote (gix creates one with the pack; the fetch
/// removes it once the pack is in place, see [`super::pack_in`]).
/// We are the only writer, so no keep file guards anything of ours, and
/// nothing else would ever remove it.
fn remove_pack_temporaries(pack_dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(pack_dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            !(name.starts_with("pack-")
                && (name.ends_with(".pack")
                    || name.ends_with(".idx")
                    || name.ends_with(".promisor")
                    || name.ends_with(".rev")))
        })
        .filter(|e| fs::remove_file(e.path()).is_ok())
        .count()
}

fn write_config(
    git_dir: &Path,
    origin_url: &str,
    depth: u32,
    filter: Option<&str>,
) -> Result<(), Error> {
    // What `git clone --filter` writes: a partial clone needs format version 1.
    let (version, promisor) = match filter {
        Some(spec) => (
            1,
            format!(
                "\tpromisor = true\n\tpartialclonefilter = {}\n[extensions]\n\tpartialClone = origin\n",
                quote_config_value(spec)
            ),
        ),
        None => (0, String::new()),
    };
    let content = format!(
        "[core]\n\trepositoryformatversion = {version}\n\tfilemode = true\n\tbare = false\n\tlogallrefupdates = false\n\
         [gc]\n\tauto = 0\n\
         [remote \"origin\"]\n\turl = {}\n{promisor}\
         [gitsidecar]\n\tdepth = {depth}\n",
        quote_config_value(origin_url)
    );
    let path = git_dir.join("config");
    if fs::read_to_string(&path).is_ok_and(|old| old == content) {
        return Ok(());
    }
    crate::fsutil::write_atomic(&path, content.as_bytes()).map_err(io_err(&path))
}

fn quote_config_value(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The depth the objects were last fetched with, from our config section.
pub fn recorded_depth(root: &Path) -> Option<u32> {
    let text = fs::read_to_string(root.join(".git/config")).ok()?;
    let section = text.split("[gitsidecar]").nth(1)?;
    let line = section
        .lines()
        .find(|l| l.trim_start().starts_with("depth"))?;
    line.split('=').nth(1)?.trim().parse().ok()
}

/// Records `depth` as the depth the current objects were fetched with.
pub fn record_depth(
    root: &Path,
    origin_url: &str,
    depth: u32,
    filter: Option<&str>,
) -> Result<(), Error> {
    write_config(&root.join(".git"), origin_url, depth, filter)
}

/// The commit `refs/heads/git-sync` points at.
pub fn branch_commit(repo: &gix::Repository) -> Option<ObjectId> {
    repo.find_reference(BRANCH)
        .ok()
        .and_then(|r| r.target().try_id().map(|id| id.to_owned()))
}

/// Points `refs/heads/git-sync` (and so HEAD) at `commit`, like `git reset --soft`.
pub fn set_branch(repo: &gix::Repository, commit: ObjectId) -> Result<(), Error> {
    repo.reference(
        BRANCH,
        commit,
        gix::refs::transaction::PreviousValue::Any,
        "git-sidecar: sync",
    )
    .map(|_| ())
    .map_err(|e| Error::Ref {
        name: BRANCH,
        message: e.to_string(),
    })
}

/// Where the last state of the store known to hold the branch's whole
/// history is recorded (see [`Verified`]).
const VERIFIED_FILE: &str = "git-sidecar-verified";

/// A state of the object store in which the branch's commit, its tree and
/// its history down to the shallow boundary were all there: the tip, the
/// depth and filter fetched with, and what any change to the store alters:
/// each pack and index file (name, size, mtime, inode), each loose-object
/// directory (mtime, inode: adding or removing an object changes it), the
/// shallow file and the alternates. While all of that is unchanged, so is
/// the answer of [`history_is_complete`], and start-up skips the walk (a
/// tenth of a `--one-time` run on a 40,000-file tree).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Verified {
    tip: ObjectId,
    depth: u32,
    partial: bool,
    /// One line per pack file, loose directory, shallow file, alternates.
    store: Vec<String>,
}

impl Verified {
    fn now(git_dir: &Path, tip: ObjectId, depth: u32, partial: bool) -> Option<Self> {
        Some(Self {
            tip,
            depth,
            partial,
            store: store_state(git_dir).ok()?,
        })
    }

    fn read(git_dir: &Path) -> Option<Self> {
        let text = fs::read_to_string(git_dir.join(VERIFIED_FILE)).ok()?;
        let mut lines = text.lines();
        let mut field = |name: &str| {
            lines
                .next()
                .and_then(|l| l.strip_prefix(name))
                .map(str::to_owned)
        };
        let tip = ObjectId::from_hex(field("tip ")?.as_bytes()).ok()?;
        let depth = field("depth ")?.parse().ok()?;
        let partial = field("partial ")? == "true";
        let store = lines.map(str::to_owned).collect();
        Some(Self {
            tip,
            depth,
            partial,
            store,
        })
    }

    fn write(&self, git_dir: &Path) -> io::Result<()> {
        let mut text = format!(
            "tip {}\ndepth {}\npartial {}\n",
            self.tip, self.depth, self.partial
        );
        for line in &self.store {
            text.push_str(line);
            text.push('\n');
        }
        crate::fsutil::write_atomic(&git_dir.join(VERIFIED_FILE), text.as_bytes())
    }

    /// No record: the next start-up walks the history.
    fn forget(git_dir: &Path) -> io::Result<()> {
        crate::fsutil::remove_any(&git_dir.join(VERIFIED_FILE))
    }

    /// Every object of `self` is still in the store `now` describes: no
    /// pack file went or changed (packs may have been added), and the loose
    /// object directories are the same.
    fn still_held_in(&self, now: &Verified) -> bool {
        self.lines("pack").all(|l| now.store.contains(l))
            && self.lines("loose").eq(now.lines("loose"))
    }

    /// The store lines of one kind (`pack`, `loose`, `shallow`, `alternates`).
    fn lines<'v>(&'v self, kind: &'v str) -> impl Iterator<Item = &'v String> + 'v {
        self.store
            .iter()
            .filter(move |l| l.split(' ').next() == Some(kind))
    }
}

/// The store's state as [`Verified`] records it, sorted.
fn store_state(git_dir: &Path) -> io::Result<Vec<String>> {
    use std::os::unix::fs::MetadataExt;
    let stamp = |meta: &fs::Metadata| {
        format!(
            "{} {}.{:09} {}",
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ino()
        )
    };
    let mut lines = Vec::new();
    let objects = git_dir.join("objects");
    for entry in fs::read_dir(&objects)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_loose_object_dir(&name) {
            lines.push(format!("loose {name} {}", stamp(&entry.metadata()?)));
        }
    }
    for entry in fs::read_dir(objects.join("pack"))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".pack") || name.ends_with(".idx") {
            lines.push(format!("pack {name} {}", stamp(&entry.metadata()?)));
        }
    }
    for (kind, path) in [
        ("shallow", git_dir.join("shallow")),
        ("alternates", objects.join("info/alternates")),
    ] {
        match fs::symlink_metadata(&path) {
            Ok(meta) => lines.push(format!("{kind} {}", stamp(&meta))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    lines.sort();
    Ok(lines)
}

/// [`history_is_complete`], unless the store is as it was when its
/// history was last found complete (then nothing can be missing). A
/// complete history is recorded.
fn checked_or_unchanged(repo: &gix::Repository, depth: u32, partial: bool) -> bool {
    let Some(tip) = branch_commit(repo) else {
        return true; // nothing synced yet
    };
    let git_dir = repo.git_dir();
    let now = Verified::now(git_dir, tip, depth, partial);
    if now.is_some() && Verified::read(git_dir) == now {
        return true;
    }
    let _ = Verified::forget(git_dir);
    let complete = history_is_complete(repo, partial);
    if let Some(now) = now.filter(|_| complete) {
        if let Err(e) = now.write(git_dir) {
            tracing::debug!(error = %e, "could not record the verified state of the store");
        }
    }
    complete
}

/// After a received pack could not be indexed (its deltas may rest on
/// our objects): reads every commit of the branch's history with its root
/// tree, and every object of the tip's tree, in full (the start-up check
/// only sees that each is there, not that its content decompresses). If
/// one cannot be read, empties the object store as the start-up repair
/// does, so that the next fetch brings everything again; the published
/// worktrees stay. Stops, emptying nothing, when `budget` runs out.
/// Returns whether it emptied the store.
pub fn empty_if_damaged(
    repo: &gix::Repository,
    partial: bool,
    budget: &super::Budget,
) -> Result<bool, Error> {
    tracing::info!("checking the object store: a received pack could not be indexed against it");
    if contents_are_readable(repo, partial, budget) != Some(false) {
        return Ok(false);
    }
    tracing::warn!(
        git_dir = %repo.git_dir().display(),
        "an object of the store cannot be read (damaged on disk); emptying it (published worktrees are kept)"
    );
    let _ = Verified::forget(repo.git_dir());
    reset_objects(repo.git_dir())?;
    Ok(true)
}

/// `Some(false)` when an object cannot be read, `None` when `budget` ran
/// out first.
fn contents_are_readable(
    repo: &gix::Repository,
    partial: bool,
    budget: &super::Budget,
) -> Option<bool> {
    let out_of_time = || budget.is_expired() || budget.is_interrupted();
    let Some(tip) = branch_commit(repo) else {
        return Some(true);
    };
    let Ok(walk) = repo.rev_walk([tip]).all() else {
        return Some(false);
    };
    for info in walk {
        if out_of_time() {
            return None;
        }
        let Ok(info) = info else { return Some(false) };
        if repo.find_commit(info.id).and_then(|c| c.tree()).is_err() {
            return Some(false);
        }
    }
    let Ok(tree) = repo.find_commit(tip).and_then(|c| c.tree()) else {
        return Some(false);
    };
    let Some(ids) = objects_of(&tree, partial) else {
        return Some(false);
    };
    for id in ids {
        if out_of_time() {
            return None;
        }
        match repo.find_object(id) {
            Ok(_) => {}
            // A partial clone's blob that never came is no damage.
            Err(_) if partial && !repo.has_object(id) => {}
            Err(_) => return Some(false),
        }
    }
    Some(true)
}

/// After a pass moved the branch to `tip`: if the store still holds all
/// it held when the previous tip's history was found complete, checks only
/// what is new (the trees and blobs `tip`'s tree does not share with the
/// previous tip's, and the commits down to the previous tip or the shallow
/// boundary) and records the store as verified for `tip`. Otherwise the
/// record goes, and the next start-up walks everything. Costs what changed.
pub fn record_verified(repo: &gix::Repository, tip: ObjectId, depth: u32, partial: bool) {
    let git_dir = repo.git_dir();
    let Some(now) = Verified::now(git_dir, tip, depth, partial) else {
        let _ = Verified::forget(git_dir);
        return;
    };
    let before = Verified::read(git_dir);
    if before.as_ref() == Some(&now) {
        return;
    }
    // Objects of another store could go without this one changing.
    let alternates = now.store.iter().any(|l| l.starts_with("alternates "));
    let holds = !alternates
        && before.is_some_and(|before| {
            before.depth == depth
                && before.partial == partial
                && before.still_held_in(&now)
                && new_history_is_complete(repo, before.tip, tip, partial)
        });
    let recorded = if holds {
        now.write(git_dir)
    } else {
        Verified::forget(git_dir)
    };
    if let Err(e) = recorded {
        tracing::debug!(error = %e, "could not record the verified state of the store");
    }
}

/// A record of the store at `git_dir` that still vouches for it, and the
/// store's state when that was found: every pack the record lists is there
/// unchanged (packs may have been added since), and so are the loose
/// objects and the shallow file. Taken before a merge of packs, to
/// [`carry_verified`] after it.
pub(super) struct HeldRecord {
    record: Verified,
    snapshot: Verified,
}

/// The store's record, if it still holds and no alternates are in play (their
/// objects could go without this store changing; [`record_verified`] too
/// refuses to vouch then). A moved shallow boundary is left to
/// [`record_verified`]'s walk: nothing is carried over it.
pub(super) fn held_record(git_dir: &Path) -> Option<HeldRecord> {
    let record = Verified::read(git_dir)?;
    let snapshot = Verified::now(git_dir, record.tip, record.depth, record.partial)?;
    let alternates = snapshot.lines("alternates").next().is_some();
    let same_shallow = record.lines("shallow").eq(snapshot.lines("shallow"));
    (!alternates && same_shallow && record.still_held_in(&snapshot))
        .then_some(HeldRecord { record, snapshot })
}

/// After a merge of packs, which moves objects and drops none: what `held`
/// vouched for is still there, so it is recorded for the store as it is now
/// (the next start-up skips its walk, and the next pass checks only what
/// its tip adds). Only if the merge is the one change since `held` was
/// taken: the packs named by `removed` (file stems) gone, the pack `added`
/// new, every other line as it was; anything else (a `git gc` or `git
/// prune` run meanwhile by a hook or a person) voids the record.
pub(super) fn carry_verified(git_dir: &Path, held: HeldRecord, removed: &[String], added: &str) {
    let HeldRecord { record, snapshot } = held;
    let stem = |line: &str| -> Option<String> {
        let name = line.strip_prefix("pack ")?.split(' ').next()?;
        Some(Path::new(name).file_stem()?.to_string_lossy().into_owned())
    };
    let now = Verified::now(git_dir, record.tip, record.depth, record.partial);
    let only_merged = now.as_ref().is_some_and(|now| {
        let mut expected: Vec<&String> = snapshot
            .store
            .iter()
            .filter(|l| stem(l).is_none_or(|s| !removed.contains(&s)))
            .chain(
                now.store
                    .iter()
                    .filter(|l| stem(l).as_deref() == Some(added)),
            )
            .collect();
        expected.sort();
        expected.dedup();
        expected == now.store.iter().collect::<Vec<_>>()
    });
    let recorded = match now.filter(|_| only_merged) {
        Some(now) => now.write(git_dir),
        None => Verified::forget(git_dir),
    };
    if let Err(e) = recorded {
        tracing::debug!(error = %e, "could not record the verified state of the store");
    }
}

/// What `tip` adds to the history of `verified` (complete) is there: its
/// commits down to `verified` or the shallow boundary, and the entries of
/// its tree that differ from `verified`'s (a shared subtree is complete).
fn new_history_is_complete(
    repo: &gix::Repository,
    verified: ObjectId,
    tip: ObjectId,
    partial: bool,
) -> bool {
    // In a shallow store, every commit down to the boundary (`--depth`
    // of them): a fetch may have moved the boundary deeper behind the old
    // tip, where nothing was checked. Otherwise, not the commits `verified`
    // reaches (merged branches included): they were all checked.
    let shallow = repo.git_dir().join("shallow").exists();
    let walk = if shallow {
        repo.rev_walk([tip]).all()
    } else {
        repo.rev_walk([tip]).with_hidden([verified]).all()
    };
    let Ok(walk) = walk else {
        return false;
    };
    if walk.into_iter().any(|info| info.is_err()) {
        return false;
    }
    // Every added or changed tree was read by the diff; blobs are looked up.
    use gix::diff::tree::recorder::Change;
    let Ok(changes) = super::tree_diff::changes(repo, verified, tip) else {
        return false;
    };
    changes.iter().all(|change| match change {
        Change::Deletion { .. } => true,
        Change::Addition {
            entry_mode, oid, ..
        }
        | Change::Modification {
            entry_mode, oid, ..
        } => {
            entry_mode.is_tree() || !expected_in_store(*entry_mode, partial) || repo.has_object(oid)
        }
    })
}

/// Whether an entry of a tree must be in this store: gitlinks are other
/// stores' commits; a partial clone lacks blobs.
fn expected_in_store(mode: gix::objs::tree::EntryMode, partial: bool) -> bool {
    !(mode.is_commit() || partial && mode.is_blob_or_symlink())
}

/// The branch's commit, its tree and its history down to the shallow
/// boundary must all be readable; a crash mid-fetch must not leave a
/// repository that `git log` cannot read.
/// In a partial clone (`partial`) blobs may be missing: they are fetched
/// when a checkout needs them.
fn history_is_complete(repo: &gix::Repository, partial: bool) -> bool {
    let Some(tip) = branch_commit(repo) else {
        return true; // nothing synced yet
    };
    let Ok(walk) = repo.rev_walk([tip]).all() else {
        return false;
    };
    // Every commit down to the shallow boundary, and the tip's whole tree.
    if walk.into_iter().any(|info| info.is_err()) {
        return false;
    }
    let Ok(tree) = repo.find_commit(tip).and_then(|c| c.tree()) else {
        return false;
    };
    tree_is_complete(repo, &tree, partial)
}

fn tree_is_complete(repo: &gix::Repository, tree: &gix::Tree<'_>, partial: bool) -> bool {
    objects_of(tree, partial).is_some_and(|ids| ids.iter().all(|id| repo.has_object(id)))
}

/// The objects below `tree` the store must hold (not submodule commits,
/// nor a partial clone's blobs); `None` if the tree cannot be walked.
fn objects_of(tree: &gix::Tree<'_>, partial: bool) -> Option<Vec<ObjectId>> {
    let mut recorder = gix::traverse::tree::Recorder::default();
    tree.traverse().breadthfirst(&mut recorder).ok()?;
    let ids = recorder
        .records
        .into_iter()
        .filter(|e| expected_in_store(e.mode, partial))
        .map(|e| e.oid)
        .collect();
    Some(ids)
}

/// Deletes all objects, the shallow file and our branch; the next fetch is a full one.
fn reset_objects(git_dir: &Path) -> Result<(), Error> {
    let objects = git_dir.join("objects");
    for entry in fs::read_dir(&objects).map_err(io_err(&objects))?.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "info" {
            continue;
        }
        if path.is_dir() {
            if name == "pack" {
                empty_dir(&path)?;
            } else {
                fs::remove_dir_all(&path).map_err(io_err(&path))?;
            }
        }
    }
    for file in [
        git_dir.join("shallow"),
        git_dir.join(BRANCH),
        git_dir.join("packed-refs"),
        git_dir.join(super::compact::BASELINE_FILE),
    ] {
        if file.exists() {
            fs::remove_file(&file).map_err(io_err(&file))?;
        }
    }
    Ok(())
}

/// The parts of the store a pass changes before it publishes (the packs its
/// fetch adds, the shallow file, the depth recorded in the config) as they
/// were when the pass started, so that a failed pass can be undone. A shallow
/// fetch is never skipped by gix, so without this every retry of a commit
/// that cannot be checked out (a full disk) adds another copy of its pack,
/// and the copies survive a restart, until the fetch itself fails.
#[derive(Debug)]
pub struct Checkpoint {
    git_dir: PathBuf,
    packs: HashSet<OsString>,
    shallow: Option<Vec<u8>>,
    config: Option<Vec<u8>>,
}

impl Checkpoint {
    pub fn take(git_dir: &Path) -> Self {
        Self {
            git_dir: git_dir.to_path_buf(),
            packs: pack_dir_entries(git_dir).into_iter().collect(),
            shallow: fs::read(git_dir.join("shallow")).ok(),
            config: fs::read(git_dir.join("config")).ok(),
        }
    }

    /// Deletes the files that appeared in the pack directory since and puts
    /// the shallow file and the config back. Nothing the checkpoint saw is
    /// touched, so whatever the published worktree needed then is still
    /// there. Best effort; returns the names of what was undone.
    pub fn roll_back(&self) -> Vec<String> {
        let pack_dir = self.git_dir.join("objects/pack");
        let mut new: Vec<OsString> = pack_dir_entries(&self.git_dir)
            .into_iter()
            .filter(|name| !self.packs.contains(name))
            .collect();
        // The index first: a pack without one is invisible, the reverse is an error.
        new.sort_by_key(|name| !name.to_string_lossy().ends_with(".idx"));
        let mut undone: Vec<String> = new
            .into_iter()
            .filter(|name| fs::remove_file(pack_dir.join(name)).is_ok())
            .map(|name| name.to_string_lossy().into_owned())
            .collect();
        for (name, before) in [("shallow", &self.shallow), ("config", &self.config)] {
            if restore(&self.git_dir.join(name), before.as_deref()) {
                undone.push(name.to_string());
            }
        }
        undone
    }
}

fn pack_dir_entries(git_dir: &Path) -> Vec<OsString> {
    fs::read_dir(git_dir.join("objects/pack"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default()
}

/// Puts `path` back to `before` (`None`: absent); true if it had changed.
fn restore(path: &Path, before: Option<&[u8]>) -> bool {
    let now = fs::read(path).ok();
    if now.as_deref() == before {
        return false;
    }
    match before {
        Some(content) => crate::fsutil::write_atomic(path, content).is_ok(),
        None => fs::remove_file(path).is_ok(),
    }
}

/// Removes `<root>/.git/worktrees/<name>` for every worktree directory that
/// no longer exists (git's `worktree prune`).
pub fn prune_worktree_admin(root: &Path, worktrees_dir: &Path) -> usize {
    let admin_root = root.join(".git/worktrees");
    let Ok(entries) = fs::read_dir(&admin_root) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| !worktrees_dir.join(e.file_name()).is_dir())
        .filter(|e| fs::remove_dir_all(e.path()).is_ok())
        .count()
}

/// Whether `name`, in a store's `objects` directory, is one of the 256
/// directories loose objects live in (`00` to `ff`).
pub(crate) fn is_loose_object_dir(name: &str) -> bool {
    name.len() == 2 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Admin directory of the worktree named `name`.
pub fn admin_dir(root: &Path, name: &str) -> PathBuf {
    root.join(".git/worktrees").join(name)
}

/// Where the parked spare's admin files (its index, submodule records) are
/// kept: outside `.git/worktrees`, so `git worktree list` and `git fsck`
/// do not see a worktree that is gone, and nothing there keeps its objects.
pub fn spare_admin_dir(root: &Path) -> PathBuf {
    root.join(".git/git-sidecar-spare")
}

/// Moves the admin directory of the worktree `name` to [`spare_admin_dir`]
/// (replacing what was there).
pub fn park_admin(root: &Path, name: &str) -> io::Result<()> {
    let to = spare_admin_dir(root);
    crate::fsutil::remove_any(&to)?;
    fs::rename(admin_dir(root, name), &to)
}

/// The commit a spare parked by an earlier process was checked out for,
/// when its admin files are whole (a `HEAD` naming it and an index): only
/// then can its files be judged against that index and rewritten.
pub fn parked_spare_commit(root: &Path) -> Option<String> {
    let admin = spare_admin_dir(root);
    let head = fs::read_to_string(admin.join("HEAD")).ok()?;
    admin
        .join("index")
        .is_file()
        .then(|| head.trim().to_string())
}

/// Removes the parked spare's admin files, if any.
pub fn discard_spare_admin(root: &Path) -> io::Result<()> {
    crate::fsutil::remove_any(&spare_admin_dir(root))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::test_git::{git, git_with_input};

    /// Packs the objects `rev-list --objects <args>` lists (but `leave_out`)
    /// from the repository at `from` into the store at `git_dir`.
    fn pack_into(from: &Path, git_dir: &Path, args: &[&str], leave_out: Option<&str>) {
        let mut list_args = vec!["rev-list", "--objects"];
        list_args.extend_from_slice(args);
        let listed = git(from, &list_args);
        let ids: String = listed
            .lines()
            .filter_map(|l| l.split(' ').next())
            .filter(|id| Some(*id) != leave_out)
            .map(|id| format!("{id}\n"))
            .collect();
        let prefix = git_dir.join("objects/pack/pack");
        let prefix = prefix.to_string_lossy();
        git_with_input(from, &["pack-objects", "-q", &prefix], ids.as_bytes());
    }

    /// The root's repository, opened afresh (one thread).
    fn reopen(root: &Path) -> gix::Repository {
        open(root, 1).expect("open")
    }

    /// An upstream with two commits (the second changes a file and adds
    /// one in a new directory) and a root store holding the first.
    fn two_commits() -> (tempfile::TempDir, ObjectId, ObjectId, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let up = dir.path().join("up");
        fs::create_dir(&up).expect("mkdir");
        git(&up, &["init", "-q", "-b", "main"]);
        fs::create_dir(up.join("a")).expect("mkdir");
        fs::write(up.join("a/x.txt"), "x\n").expect("write");
        fs::write(up.join("b.txt"), "b\n").expect("write");
        git(&up, &["add", "-A"]);
        git(&up, &["commit", "-q", "-m", "one"]);
        let one = git(&up, &["rev-parse", "HEAD"]);
        fs::write(up.join("a/x.txt"), "x2\n").expect("write");
        fs::create_dir(up.join("c")).expect("mkdir");
        fs::write(up.join("c/new.txt"), "new\n").expect("write");
        git(&up, &["add", "-A"]);
        git(&up, &["commit", "-q", "-m", "two"]);
        let two = git(&up, &["rev-parse", "HEAD"]);
        let new_blob = git(&up, &["rev-parse", "HEAD:c/new.txt"]);
        let root = dir.path().join("root");
        fs::create_dir(&root).expect("mkdir");
        open_or_init(&root, "https://example.com/r", 0, None, 1).expect("init");
        pack_into(&up, &root.join(".git"), &[&one], None);
        let id = |hex: &str| ObjectId::from_hex(hex.as_bytes()).expect("id");
        (dir, id(&one), id(&two), new_blob)
    }

    /// Start-up walks the history once and records the store; while the
    /// store is unchanged the record is trusted (shown by a record made for
    /// a store that lacks an object), and any change to a pack voids it.
    #[test]
    fn start_up_trusts_a_verified_store_only_while_it_is_unchanged() {
        let (dir, one, two, new_blob) = two_commits();
        let root = dir.path().join("root");
        let git_dir = root.join(".git");
        set_branch(&reopen(&root), one).expect("branch");
        assert!(checked_or_unchanged(&reopen(&root), 0, false));
        let recorded = Verified::read(&git_dir).expect("recorded");
        assert_eq!(recorded.tip, one);

        // The second commit without its new blob: its history is incomplete.
        pack_into(
            &dir.path().join("up"),
            &git_dir,
            &[&two.to_string(), "--not", &one.to_string()],
            Some(&new_blob),
        );
        let repo = reopen(&root);
        set_branch(&repo, two).expect("branch");
        assert!(!history_is_complete(&repo, false));
        assert!(!checked_or_unchanged(&repo, 0, false), "the walk found it");
        // A record says otherwise: trusted while nothing changes...
        let recorded_complete = || {
            let record = Verified::now(&git_dir, two, 0, false).expect("state");
            record.write(&git_dir).expect("write");
            assert!(
                checked_or_unchanged(&repo, 0, false),
                "the record was not used"
            );
        };
        recorded_complete();
        assert!(!checked_or_unchanged(&repo, 1, false), "another depth");
        // ...and no longer once a pack changes (recorded again first: the
        // walk at another depth removed the record).
        recorded_complete();
        let pack = fs::read_dir(git_dir.join("objects/pack"))
            .expect("ls")
            .flatten()
            .find(|e| e.file_name().to_string_lossy().ends_with(".idx"))
            .expect("an index");
        crate::fsutil::touch_mtime(&pack.path()).expect("touch");
        assert!(!checked_or_unchanged(&repo, 0, false));
    }

    /// After a pass, only what the new tip adds is checked: the record
    /// moves to it when all of that is there, and goes when a new blob is
    /// missing (the next start-up then walks everything).
    #[test]
    fn a_pass_records_the_new_tip_only_when_what_it_adds_is_there() {
        for complete in [true, false] {
            let (dir, one, two, new_blob) = two_commits();
            let root = dir.path().join("root");
            let git_dir = root.join(".git");
            set_branch(&reopen(&root), one).expect("branch");
            assert!(checked_or_unchanged(&reopen(&root), 0, false));
            let leave_out = (!complete).then_some(new_blob.as_str());
            pack_into(
                &dir.path().join("up"),
                &git_dir,
                &[&two.to_string(), "--not", &one.to_string()],
                leave_out,
            );
            let repo = reopen(&root);
            set_branch(&repo, two).expect("branch");
            record_verified(&repo, two, 0, false);
            let recorded = Verified::read(&git_dir).map(|v| v.tip);
            assert_eq!(recorded, complete.then_some(two), "complete: {complete}");
            assert_eq!(checked_or_unchanged(&repo, 0, false), complete);
        }
    }

    /// A merge of small packs keeps every object, so the record still
    /// vouches for the store after it (the merged packs' names would void
    /// it); a record void before the merge stays void.
    #[test]
    fn a_merge_of_packs_carries_the_record_over() {
        use crate::git::compact;
        for held in [true, false] {
            let (dir, one, two, new_blob) = two_commits();
            let (up, root) = (dir.path().join("up"), dir.path().join("root"));
            let git_dir = root.join(".git");
            set_branch(&reopen(&root), one).expect("branch");
            assert!(checked_or_unchanged(&reopen(&root), 0, false));
            let range = [two.to_string(), "--not".into(), one.to_string()];
            let range: Vec<&str> = range.iter().map(String::as_str).collect();
            pack_into(&up, &git_dir, &range, None);
            pack_into(&up, &git_dir, &range, Some(&new_blob));
            if !held {
                let recorded = Verified::read(&git_dir).expect("recorded");
                let pack = recorded.store.iter().find(|l| l.starts_with("pack "));
                let name = pack.and_then(|l| l.split(' ').nth(1)).expect("a pack line");
                crate::fsutil::touch_mtime(&git_dir.join("objects/pack").join(name))
                    .expect("touch");
            }
            let repo = reopen(&root);
            let budget = crate::git::transport::Budget::for_tests();
            let done = compact::carry_out(&repo, compact::Upkeep::MergeSmallPacks, &[one], &budget);
            assert!(matches!(done, Ok(compact::Done::Merged(after)) if after.packs == 2));
            let current = Verified::now(&git_dir, one, 0, false);
            assert_eq!(Verified::read(&git_dir) == current, held, "held: {held}");
        }
    }

    /// The record is carried over a merge only when the merge is the one
    /// change: an object written meanwhile (a `git gc` or a hook in the
    /// root) voids it, as does a moved shallow boundary before the merge.
    #[test]
    fn a_record_is_not_carried_over_other_changes() {
        let (dir, one, two, _) = two_commits();
        let (up, root) = (dir.path().join("up"), dir.path().join("root"));
        let git_dir = root.join(".git");
        set_branch(&reopen(&root), one).expect("branch");
        assert!(checked_or_unchanged(&reopen(&root), 0, false));
        let (one_s, two_s) = (one.to_string(), two.to_string());
        pack_into(&up, &git_dir, &[&two_s, "--not", &one_s], None);
        let added = fs::read_dir(git_dir.join("objects/pack"))
            .expect("ls")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".pack"))
            .map(|n| n.trim_end_matches(".pack").to_string())
            .collect::<Vec<_>>();
        // Nothing but the new pack since: carried.
        let held = held_record(&git_dir).expect("held");
        carry_verified(&git_dir, held, &[], &added[0]);
        assert_eq!(Verified::read(&git_dir).map(|v| v.tip), Some(one));
        // A loose object written in between: voided.
        let held = held_record(&git_dir).expect("held");
        git_with_input(&root, &["hash-object", "-w", "--stdin"], b"meddling\n");
        carry_verified(&git_dir, held, &[], &added[0]);
        assert!(
            Verified::read(&git_dir).is_none(),
            "carried over a loose object"
        );
        // A record whose shallow file has changed since is not held at all.
        assert!(checked_or_unchanged(&reopen(&root), 0, false));
        fs::write(git_dir.join("shallow"), format!("{one}\n")).expect("shallow");
        assert!(
            held_record(&git_dir).is_none(),
            "held over a moved boundary"
        );
    }

    #[test]
    fn a_parked_spare_is_adopted_only_with_its_head_and_index(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let root = tempfile::tempdir()?;
        let admin = spare_admin_dir(root.path());
        assert_eq!(parked_spare_commit(root.path()), None);
        fs::create_dir_all(&admin)?;
        let sha = "0123456789abcdef0123456789abcdef01234567";
        fs::write(admin.join("HEAD"), format!("{sha}\n"))?;
        assert_eq!(parked_spare_commit(root.path()), None, "no index");
        fs::write(admin.join("index"), b"")?;
        assert_eq!(parked_spare_commit(root.path()).as_deref(), Some(sha));
        discard_spare_admin(root.path())?;
        assert_eq!(parked_spare_commit(root.path()), None);
        Ok(())
    }

    #[test]
    fn wiping_a_corrupt_root_keeps_the_root_lock() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        let lock = root.join(crate::rootlock::FILE_NAME);
        fs::write(&lock, "pid 1 on host\n")?;
        fs::write(root.join("junk"), "x")?;
        fs::create_dir(root.join(".git"))?;
        let (_, opened) = open_or_init(root, "https://example.com/r", 1, None, 1)?;
        assert!(opened.reinitialized && !opened.created);
        assert!(!root.join("junk").exists());
        assert_eq!(fs::read_to_string(&lock)?, "pid 1 on host\n");
        Ok(())
    }

    /// gix would start one indexing thread per core of the node, and give
    /// each reading thread a 96 MiB delta-base cache.
    #[test]
    fn pack_threads_are_those_given_and_delta_caches_are_bounded(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let (repo, _) = open_or_init(dir.path(), "https://example.com/r", 1, None, 3)?;
        assert_eq!(threads(&repo), 3);
        let isolated = gix::open::Options::isolated();
        let elsewhere = gix::open_opts(dir.path(), isolated)?;
        assert_eq!(threads(&elsewhere), 1, "no pack.threads: one");
        let config = repo.config_snapshot();
        let cache = config.integer("gitoxide.core.deltaBaseCacheLimit");
        assert_eq!(cache, Some(DELTA_BASE_CACHE_BYTES as i64));
        Ok(())
    }

    /// A fetch killed between writing its pack and settling it leaves the
    /// pack's `.keep` file; the next start removes it and keeps the pack.
    #[test]
    fn keep_files_left_by_a_killed_fetch_are_removed_at_start(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        open_or_init(dir.path(), "https://example.com/r", 1, None, 1)?;
        let pack_dir = dir.path().join(".git/objects/pack");
        // An empty store with a stray pack would be emptied as incomplete
        // only if a branch needed objects: there is no branch yet.
        for name in ["pack-1.pack", "pack-1.idx", "pack-1.keep"] {
            fs::write(pack_dir.join(name), "")?;
        }
        let (_, opened) = open_or_init(dir.path(), "https://example.com/r", 1, None, 1)?;
        assert_eq!(opened.stale_locks, 1);
        let mut left = pack_dir_entries(&dir.path().join(".git"));
        left.sort();
        assert_eq!(left, ["pack-1.idx", "pack-1.pack"]);
        Ok(())
    }

    /// A first start makes the repository; that is not a repair.
    #[test]
    fn an_empty_root_is_created_not_reinitialized() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let (_, opened) = open_or_init(dir.path(), "https://example.com/r", 1, None, 1)?;
        let created = Opened {
            created: true,
            ..Opened::default()
        };
        assert_eq!(opened, created);
        let (_, reopened) = open_or_init(dir.path(), "https://example.com/r", 1, None, 1)?;
        assert_eq!(reopened, Opened::default());
        Ok(())
    }

    #[test]
    fn a_root_holding_only_the_lock_counts_as_empty() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        fs::write(dir.path().join(crate::rootlock::FILE_NAME), "")?;
        assert!(is_empty(dir.path()));
        fs::write(dir.path().join("x"), "")?;
        assert!(!is_empty(dir.path()));
        Ok(())
    }

    #[test]
    fn roll_back_removes_only_what_came_after_the_checkpoint(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let git_dir = dir.path();
        let pack_dir = git_dir.join("objects/pack");
        fs::create_dir_all(&pack_dir)?;
        for name in ["pack-old.pack", "pack-old.idx"] {
            fs::write(pack_dir.join(name), "old")?;
        }
        fs::write(git_dir.join("config"), "depth = 1")?;
        let checkpoint = Checkpoint::take(git_dir);
        for name in ["pack-new.pack", "pack-new.idx", "pack-new.rev"] {
            fs::write(pack_dir.join(name), "new")?;
        }
        fs::write(git_dir.join("shallow"), "abc\n")?;
        fs::write(git_dir.join("config"), "depth = 5")?;
        let mut undone = checkpoint.roll_back();
        undone.sort();
        assert_eq!(
            undone,
            [
                "config",
                "pack-new.idx",
                "pack-new.pack",
                "pack-new.rev",
                "shallow"
            ]
        );
        let mut left = pack_dir_entries(git_dir);
        left.sort();
        assert_eq!(left, ["pack-old.idx", "pack-old.pack"]);
        assert!(!git_dir.join("shallow").exists());
        assert_eq!(fs::read_to_string(git_dir.join("config"))?, "depth = 1");
        assert!(checkpoint.roll_back().is_empty(), "nothing left to undo");
        Ok(())
    }
}
