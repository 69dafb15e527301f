//! What is on disk below a worktree (or a submodule's directory), held
//! against the index that describes it: one walk of the directories and an
//! `lstat` per entry, no file content read. Anything the index does not put
//! on disk (a consumer's `cache/`, a hook's `generated-<sha>.txt`, a path
//! left out by sparse patterns or `--escaping-symlinks=skip`) is a stray; a
//! tracked file counts as found only when the caller accepts its stat data
//! (size, mtime, ctime, inode, owner and mode as recorded at checkout:
//! writing, `chmod` and replacing a file all change some of them). Stat data
//! alone cannot tell a same-size write made in the same timestamp tick as
//! the checkout (kernels keep coarse, jiffy- or second-granular file times):
//! as git does, an entry whose mtime is not strictly older than the index
//! file's own is "racily clean", and its content is compared with the blob
//! (few files by construction: those written in the index's last tick).
//! Submodule directories are not looked into: their content is judged
//! against their own index.

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, OsStr};
use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use nix::fcntl::{AtFlags, OFlag};

use gix::bstr::{BStr, ByteSlice};
use gix::index::entry::{stat, Mode, Stat};

/// The paths an index puts on disk, directory by directory: the walk looks
/// each name up among its own directory's names (a binary search in a
/// short, sorted list, read from a few cache lines) instead of hashing the
/// whole relative path and probing a 40,000-entry map (a tenth of the
/// walk's time on a 40,000-file tree, most of it cache misses).
pub(crate) struct Wanted<'i> {
    index: &'i gix::index::File,
    /// Every directory leading to an on-disk entry; [`Wanted::TOP`] first.
    dirs: Vec<Listing<'i>>,
    /// Each directory's path, relative, `/`-separated (`""` the top).
    paths: Vec<&'i [u8]>,
    /// By directory: the stamp under which it is known to hold exactly its
    /// listing (see [`Wanted::trust`]); such a directory is not read.
    trusted: Vec<Option<DirStamp>>,
}

/// What one directory holds, each list sorted by name.
#[derive(Default)]
struct Listing<'i> {
    /// Entries directly in it: name and position in the index.
    entries: Vec<(&'i [u8], usize)>,
    /// Directories directly in it: name and position in `Wanted::dirs`.
    subdirs: Vec<(&'i [u8], usize)>,
}

impl Listing<'_> {
    fn find(list: &[(&[u8], usize)], name: &[u8]) -> Option<usize> {
        let at = list.binary_search_by(|(n, _)| n.cmp(&name)).ok()?;
        Some(list[at].1)
    }
}

/// Paths are not chosen by an attacker who could exploit collisions: they
/// come from a commit that passed the repository's own checks, and a slow
/// walk is all a collision could cause.
type Fast = foldhash::fast::RandomState;

impl<'i> Wanted<'i> {
    /// The worktree's own directory.
    const TOP: usize = 0;

    pub(crate) fn new(index: &'i gix::index::File) -> Self {
        let mut wanted = Self {
            index,
            dirs: vec![Listing::default()],
            paths: vec![b""],
            trusted: Vec::new(),
        };
        // Directory paths to their position; entries come sorted by path,
        // so most share the previous entry's directory.
        let mut ids: HashMap<&'i [u8], usize, Fast> = HashMap::default();
        let mut last: (&'i [u8], usize) = (b"", Self::TOP);
        for (i, entry) in index.entries().iter().enumerate() {
            if !super::on_disk(entry) {
                continue;
            }
            let path: &'i [u8] = entry.path(index);
            let (dir, name) = match path.rfind_byte(b'/') {
                Some(slash) => (&path[..slash], &path[slash + 1..]),
                None => (&b""[..], path),
            };
            let id = if dir == last.0 {
                last.1
            } else {
                wanted.dir_id(dir, &mut ids)
            };
            last = (dir, id);
            let entries = &mut wanted.dirs[id].entries;
            // A path listed twice (conflict stages) counts once, as its last.
            match entries.last_mut() {
                Some(prev) if prev.0 == name => prev.1 = i,
                _ => entries.push((name, i)),
            }
        }
        for listing in &mut wanted.dirs {
            // A sorted index lists a directory's entries in name order
            // already (the sort is then one pass), but not its directories:
            // "a b/", "a-b/" and "a.md" sort before "a/". An index out of
            // order would otherwise make entries strays.
            listing.entries.sort_by(|a, b| a.0.cmp(b.0));
            listing.subdirs.sort_unstable_by(|a, b| a.0.cmp(b.0));
        }
        wanted
    }

    /// The position of directory `dir` (relative, `/`-separated), added
    /// with its parents if new.
    fn dir_id(&mut self, dir: &'i [u8], ids: &mut HashMap<&'i [u8], usize, Fast>) -> usize {
        if dir.is_empty() {
            return Self::TOP;
        }
        if let Some(&id) = ids.get(dir) {
            return id;
        }
        let (parent, name) = match dir.rfind_byte(b'/') {
            Some(slash) => (&dir[..slash], &dir[slash + 1..]),
            None => (&b""[..], dir),
        };
        let parent = self.dir_id(parent, ids);
        let id = self.dirs.len();
        self.dirs.push(Listing::default());
        self.paths.push(dir);
        self.dirs[parent].subdirs.push((name, id));
        ids.insert(dir, id);
        id
    }

    /// Takes `stamp_of`'s word for the directories it knows (by relative
    /// path): one whose stamp is still that holds exactly its listing, as
    /// when the stamp was recorded, so the walk `lstat`s the names it wants
    /// there without reading the directory. Nothing can be created, removed
    /// or renamed in a directory without changing its ctime, which no call
    /// sets back (see [`super::dir_record`] for when a stamp may be
    /// recorded). The top is always read: it holds `.git` and is renamed
    /// when claimed.
    pub(crate) fn trust(&mut self, stamp_of: impl Fn(&[u8]) -> Option<DirStamp>) {
        self.trusted = self.paths.iter().map(|path| stamp_of(path)).collect();
        if let Some(top) = self.trusted.get_mut(Self::TOP) {
            *top = None;
        }
    }

    /// Whether directory `id`, found with `stamp`, is trusted to hold its listing.
    fn trusts(&self, id: usize, stamp: &DirStamp) -> bool {
        self.trusted
            .get(id)
            .is_some_and(|t| t.as_ref() == Some(stamp))
    }

    /// How many entries are on disk.
    fn count(&self) -> usize {
        self.dirs.iter().map(|d| d.entries.len()).sum()
    }

    /// The position in the index of the on-disk entry `name` in directory `dir`.
    fn entry(&self, dir: usize, name: &[u8]) -> Option<usize> {
        Listing::find(&self.dirs[dir].entries, name)
    }

    /// The position of directory `name` in directory `dir`.
    fn subdir(&self, dir: usize, name: &[u8]) -> Option<usize> {
        Listing::find(&self.dirs[dir].subdirs, name)
    }
}

/// The directories leading to the entries `index` puts on disk.
pub(crate) fn dirs_of(index: &gix::index::File) -> HashSet<&BStr, Fast> {
    let mut dirs = HashSet::default();
    for entry in index.entries().iter().filter(|e| super::on_disk(e)) {
        let mut path = entry.path(index);
        while let Some(slash) = path.rfind_byte(b'/') {
            path = path[..slash].as_bstr();
            if !dirs.insert(path) {
                break; // its parents are in already
            }
        }
    }
    dirs
}

/// What a walk found.
#[derive(Debug, Default)]
pub(crate) struct Survey {
    /// Positions of the index entries found on disk and accepted.
    pub kept: Vec<usize>,
    /// Paths that are not as the index wants them: untracked files and
    /// directories, entries the caller did not accept, a non-directory
    /// where a directory belongs. Nothing below a stray is listed.
    pub strays: Vec<PathBuf>,
    /// Every directory walked, as it was when walked.
    pub dirs: Vec<Walked>,
    /// How many directories were taken as trusted, not read.
    pub trusted: usize,
    /// The names in `dir` itself (its `.git` aside with `top_level`), each
    /// with its inode number, sorted.
    pub top_names: Vec<(Vec<u8>, u64)>,
}

/// A directory the walk went through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Walked {
    pub path: PathBuf,
    /// As `lstat` found it, before it was read.
    pub stamp: DirStamp,
    /// It held its listing and nothing else (no stray, no entry changed).
    pub clean: bool,
}

/// What changes when anything is created, removed or renamed in a
/// directory, or when the directory itself is replaced: its identity and
/// its mtime (a rename of the directory itself changes only its ctime).
/// Its ctime changes then too, and with anything done to the directory
/// itself (a rename, `chmod`, or `utimensat` setting its mtime back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DirStamp {
    pub(super) dev: u64,
    pub(super) ino: u64,
    pub(super) mtime: (i64, i64),
    pub(super) ctime: (i64, i64),
    /// Grow or shrink with the entries on some filesystems (tmpfs, btrfs):
    /// one more witness beside the times.
    pub(super) size: i64,
    pub(super) nlink: u64,
}

impl DirStamp {
    pub(crate) fn of(lstat: &Lstat) -> Self {
        let st = &lstat.0;
        Self {
            dev: st.st_dev,
            ino: st.st_ino,
            mtime: (st.st_mtime, st.st_mtime_nsec),
            ctime: (st.st_ctime, st.st_ctime_nsec),
            size: st.st_size,
            nlink: st.st_nlink,
        }
    }

    /// The same directory with the same entries, its ctime aside: what a
    /// directory renamed as a whole (the claim of a spare) still is.
    pub(crate) fn same_but_moved(&self, other: &Self) -> bool {
        Self {
            ctime: other.ctime,
            ..*self
        } == *other
    }

    /// The directory's ctime, as a time.
    pub(crate) fn changed(&self) -> std::time::SystemTime {
        as_time(self.ctime)
    }

    /// The directory's mtime, as a time.
    pub(crate) fn modified(&self) -> std::time::SystemTime {
        as_time(self.mtime)
    }
}

fn as_time((secs, nsecs): (i64, i64)) -> std::time::SystemTime {
    let since = std::time::Duration::new(secs.max(0) as u64, nsecs.clamp(0, 999_999_999) as u32);
    std::time::UNIX_EPOCH + since
}

/// The most threads a walk uses, whatever count it is given.
const MAX_THREADS: usize = 8;

/// Walks `dir` (not following symlinks); `accept` decides, for an index
/// entry found on disk (with its metadata and path), whether it stays. With
/// `top_level`, the worktree's own `.git` file is not looked at. The walk
/// is one `lstat` per entry, bound by system calls: directories are shared
/// out to up to `threads` threads (those of pack indexing and checkout, at
/// most 8; fewer if the system refuses more), which share a queue of the
/// directories still to read.
pub(crate) fn survey(
    dir: &Path,
    wanted: &Wanted<'_>,
    top_level: bool,
    threads: usize,
    accept: impl Fn(&gix::index::Entry, &Lstat, &Found<'_>) -> bool + Sync,
) -> io::Result<Survey> {
    let walk = Walk {
        wanted,
        top_level,
        accept: &accept,
        queue: std::sync::Mutex::new(Queue {
            dirs: vec![(dir.to_path_buf(), Wanted::TOP, None)],
            busy: 0,
            failed: None,
        }),
        ready: std::sync::Condvar::new(),
    };
    let found: Vec<std::thread::Result<Survey>> = std::thread::scope(|s| {
        // A thread the system refuses (a cgroup's pids.max) is one fewer
        // helper, not a failure: the queue is shared.
        let helpers: Vec<_> = (1..threads.clamp(1, MAX_THREADS))
            .filter_map(|_| {
                std::thread::Builder::new()
                    .name("survey".into())
                    .spawn_scoped(s, || walk.work())
                    .ok()
            })
            .collect();
        let mut found = vec![Ok(walk.work())];
        found.extend(helpers.into_iter().map(|h| h.join()));
        found
    });
    let queue = walk
        .queue
        .into_inner()
        .map_err(|_| io::Error::other("a survey thread panicked"))?;
    if let Some(e) = queue.failed {
        return Err(e);
    }
    let mut all = Survey::default();
    for part in found {
        let part = part.map_err(|_| io::Error::other("a survey thread panicked"))?;
        all.kept.extend(part.kept);
        all.strays.extend(part.strays);
        all.dirs.extend(part.dirs);
        all.trusted += part.trusted;
        all.top_names.extend(part.top_names);
    }
    all.top_names.sort_unstable();
    Ok(all)
}

/// The directories still to read, how many threads are reading one (and
/// may add more), and the first error.
struct Queue {
    /// Each directory's path and its position in [`Wanted`].
    dirs: Vec<Queued>,
    busy: usize,
    failed: Option<io::Error>,
}

/// A directory to read: its path, its position in [`Wanted`], and the
/// device and inode its parent's `lstat` saw (none for the top).
type Queued = (PathBuf, usize, Option<(u64, u64)>);

/// What the index wants at a name's place in a directory.
#[derive(Clone, Copy)]
enum Wants {
    /// The entry at this position in the index.
    Entry(usize),
    /// The directory at this position in [`Wanted::dirs`].
    Dir(usize),
    Nothing,
}

struct Walk<'w, 'i, A> {
    wanted: &'w Wanted<'i>,
    top_level: bool,
    accept: &'w A,
    queue: std::sync::Mutex<Queue>,
    ready: std::sync::Condvar,
}

impl<A> Walk<'_, '_, A>
where
    A: Fn(&gix::index::Entry, &Lstat, &Found<'_>) -> bool + Sync,
{
    /// One thread's share: directories from the queue until none is left
    /// and no thread can add any.
    fn work(&self) -> Survey {
        let mut found = Survey::default();
        while let Some((abs, id, seen)) = self.next_dir() {
            let mut subdirs = Vec::new();
            // A panic must still release the others waiting on `busy`.
            let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.walk_dir(abs, id, seen, &mut found, &mut subdirs)
            }))
            .unwrap_or_else(|_| Err(io::Error::other("a survey thread panicked")));
            self.done_with(read, subdirs);
        }
        found
    }

    /// Reads directory `id` at `abs` (or, if trusted, the names it is
    /// wanted to hold) and notes it in `found`, with its stamp as `fstat`
    /// of the directory opened says before it is read. If that is not the
    /// directory its parent listed (`seen`: replaced since, or a directory
    /// above it swapped for a link), the walk fails rather than judge what
    /// it reached.
    fn walk_dir(
        &self,
        abs: PathBuf,
        id: usize,
        seen: Option<(u64, u64)>,
        found: &mut Survey,
        subdirs: &mut Vec<Queued>,
    ) -> io::Result<()> {
        let fd = Self::open_dir(&abs)?;
        let opened = Lstat(nix::sys::stat::fstat(&fd)?);
        if seen.is_some_and(|seen| seen != opened.identity()) {
            return Err(io::Error::other(format!(
                "{} was replaced while the tree was walked",
                abs.display()
            )));
        }
        let stamp = DirStamp::of(&opened);
        let strays = found.strays.len();
        if self.wanted.trusts(id, &stamp) {
            found.trusted += 1;
            self.read_listing(&fd, &abs, id, found, subdirs)?;
        } else {
            self.read_dir(&fd, &abs, id, found, subdirs)?;
        }
        let clean = found.strays.len() == strays;
        found.dirs.push(Walked {
            path: abs,
            stamp,
            clean,
        });
        Ok(())
    }

    fn next_dir(&self) -> Option<Queued> {
        let mut queue = self.queue.lock().ok()?;
        loop {
            if queue.failed.is_some() {
                return None;
            }
            if let Some(next) = queue.dirs.pop() {
                queue.busy += 1;
                return Some(next);
            }
            if queue.busy == 0 {
                return None;
            }
            queue = self.ready.wait(queue).ok()?;
        }
    }

    fn done_with(&self, read: io::Result<()>, subdirs: Vec<Queued>) {
        if let Ok(mut queue) = self.queue.lock() {
            queue.busy -= 1;
            queue.dirs.extend(subdirs);
            if let Err(e) = read {
                queue.failed.get_or_insert(e);
            }
        }
        self.ready.notify_all();
    }

    /// Never through a link: a directory swapped for one since its parent
    /// was read fails the walk (ELOOP), and never leads out.
    fn open_dir(abs: &Path) -> io::Result<std::os::fd::OwnedFd> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        Ok(nix::fcntl::open(abs, flags, nix::sys::stat::Mode::empty())?)
    }

    /// Reads directory `id`, open as `fd` at `abs`, and judges each name in it.
    fn read_dir(
        &self,
        fd: &std::os::fd::OwnedFd,
        abs: &Path,
        id: usize,
        found: &mut Survey,
        subdirs: &mut Vec<Queued>,
    ) -> io::Result<()> {
        let mut entries = nix::dir::Dir::from_fd(nix::unistd::dup(fd)?)?;
        // `lstat`s relative to the open directory (`fstatat`), not a walk
        // of the whole path from `/` per entry.
        for entry in entries.iter() {
            let entry = entry?;
            let name = entry.file_name();
            let bytes = name.to_bytes();
            if bytes == b"."
                || bytes == b".."
                || self.top_level && id == Wanted::TOP && bytes == b".git"
            {
                continue;
            }
            if id == Wanted::TOP {
                found.top_names.push((bytes.to_vec(), entry.ino()));
            }
            let child = Found {
                dir: fd.as_fd(),
                parent: abs,
                name,
            };
            let lstat = Lstat::at(&child)?;
            self.judge(id, &child, &lstat, found, subdirs);
        }
        Ok(())
    }

    /// Judges the names directory `id` (trusted to hold exactly them) is
    /// wanted to hold, without reading it; a name gone since counts as
    /// missing, as it would not have been listed.
    fn read_listing(
        &self,
        fd: &std::os::fd::OwnedFd,
        abs: &Path,
        id: usize,
        found: &mut Survey,
        subdirs: &mut Vec<Queued>,
    ) -> io::Result<()> {
        let listing = &self.wanted.dirs[id];
        // Each name's place is known here: no need to look it up again. A
        // name that is an entry and a directory at once (a damaged index)
        // is an entry, as a directory that was read judges it.
        let entries = listing.entries.iter().map(|&(n, i)| (n, Wants::Entry(i)));
        let subdirs_wanted = listing
            .subdirs
            .iter()
            .filter(|(n, _)| Listing::find(&listing.entries, n).is_none())
            .map(|&(n, d)| (n, Wants::Dir(d)));
        let mut name = Vec::new();
        for (bytes, wants) in entries.chain(subdirs_wanted) {
            name.clear();
            name.extend_from_slice(bytes);
            name.push(0);
            let Ok(name) = CStr::from_bytes_with_nul(&name) else {
                continue; // a NUL in a path: no such file can exist
            };
            let child = Found {
                dir: fd.as_fd(),
                parent: abs,
                name,
            };
            match Lstat::at(&child) {
                Ok(lstat) => self.sort(wants, &child, &lstat, found, subdirs),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Sorts a name found in directory `id`: a wanted entry kept (if the
    /// caller accepts it) or a stray, a wanted directory to walk, or a stray.
    fn judge(
        &self,
        id: usize,
        child: &Found<'_>,
        lstat: &Lstat,
        found: &mut Survey,
        subdirs: &mut Vec<Queued>,
    ) {
        let bytes = child.name.to_bytes();
        let wants = match self.wanted.entry(id, bytes) {
            Some(i) => Wants::Entry(i),
            None => self
                .wanted
                .subdir(id, bytes)
                .map_or(Wants::Nothing, Wants::Dir),
        };
        self.sort(wants, child, lstat, found, subdirs);
    }

    /// Sorts a name by what the index wants at its place.
    fn sort(
        &self,
        wants: Wants,
        child: &Found<'_>,
        lstat: &Lstat,
        found: &mut Survey,
        subdirs: &mut Vec<Queued>,
    ) {
        match wants {
            Wants::Entry(i) if (self.accept)(&self.wanted.index.entries()[i], lstat, child) => {
                found.kept.push(i)
            }
            Wants::Dir(sub) if lstat.is_dir() => {
                subdirs.push((child.path(), sub, Some(lstat.identity())))
            }
            _ => found.strays.push(child.path()),
        }
    }
}

/// The names in directory `dir`, with their inode numbers, as
/// [`Survey::top_names`] lists them.
pub(crate) fn names_in(dir: &Path, top_level: bool) -> io::Result<Vec<(Vec<u8>, u64)>> {
    use std::os::unix::fs::DirEntryExt;
    let mut names = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().into_vec();
        if !(top_level && name == b".git") {
            names.push((name, entry.ino()));
        }
    }
    names.sort_unstable();
    Ok(names)
}

/// An entry of a directory being read: the open directory and its name in it.
pub(crate) struct Found<'a> {
    dir: BorrowedFd<'a>,
    parent: &'a Path,
    name: &'a CStr,
}

impl Found<'_> {
    /// Its whole path (for what is reported, not for system calls).
    pub(crate) fn path(&self) -> PathBuf {
        self.parent.join(OsStr::from_bytes(self.name.to_bytes()))
    }
}

/// What `lstat` says of an entry (never following a link).
#[derive(Clone, Copy)]
pub(crate) struct Lstat(nix::sys::stat::FileStat);

impl Lstat {
    fn at(found: &Found<'_>) -> io::Result<Self> {
        Ok(Self(nix::sys::stat::fstatat(
            found.dir,
            found.name,
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )?))
    }

    pub(crate) fn of(path: &Path) -> io::Result<Self> {
        Ok(Self(nix::sys::stat::lstat(path)?))
    }

    /// Device and inode: which file it is.
    fn identity(&self) -> (u64, u64) {
        (self.0.st_dev, self.0.st_ino)
    }

    fn format(&self) -> nix::libc::mode_t {
        self.0.st_mode & nix::libc::S_IFMT
    }

    pub(crate) fn is_dir(&self) -> bool {
        self.format() == nix::libc::S_IFDIR
    }

    fn is_file(&self) -> bool {
        self.format() == nix::libc::S_IFREG
    }

    fn is_symlink(&self) -> bool {
        self.format() == nix::libc::S_IFLNK
    }

    fn executable(&self) -> bool {
        self.0.st_mode & 0o100 != 0
    }

    pub(crate) fn len(&self) -> u64 {
        self.0.st_size as u64
    }

    /// The index's stat data of the entry, truncated as the index stores it.
    fn index_stat(&self) -> Stat {
        let st = &self.0;
        let time = |secs: i64, nsecs: i64| stat::Time {
            secs: secs as u32,
            nsecs: nsecs as u32,
        };
        Stat {
            mtime: time(st.st_mtime, st.st_mtime_nsec),
            ctime: time(st.st_ctime, st.st_ctime_nsec),
            dev: st.st_dev as u32,
            ino: st.st_ino as u32,
            uid: st.st_uid,
            gid: st.st_gid,
            size: st.st_size as u32,
        }
    }
}

/// Whether `dir` holds what `index` puts on disk, each entry as recorded
/// (a submodule's directory only has to be a directory), and what else.
/// Walked on up to `threads` threads.
pub(crate) fn held(dir: &Path, index: &gix::index::File, top_level: bool, threads: usize) -> Held {
    let wanted = Wanted::new(index);
    let since = Since::of(index);
    let surveyed = survey(dir, &wanted, top_level, threads, |entry, meta, path| {
        as_recorded(entry, meta, path, since) || content_decides(entry, meta, path)
    });
    match surveyed {
        // Every entry as recorded: what is left over is only what was added.
        Ok(s) if s.kept.len() == wanted.count() => match s.strays.len() {
            0 => Held::Exactly,
            added => Held::WithAdditions(added),
        },
        _ => Held::Not,
    }
}

/// Whether `dir` holds exactly what `index` puts there ([`held`]).
#[cfg(test)]
pub(crate) fn exact(dir: &Path, index: &gix::index::File, top_level: bool, threads: usize) -> bool {
    matches!(held(dir, index, top_level, threads), Held::Exactly)
}

/// How a tree on disk stands against its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Held {
    /// Every entry as recorded, and nothing else.
    Exactly,
    /// Every entry as recorded, and this many paths the index does not
    /// account for (top-most ones: nothing below an added directory).
    WithAdditions(usize),
    /// An entry missing, changed or replaced (or the walk failed).
    Not,
}

/// A file whose owner, group or ctime changed but not its inode, size or
/// mtime (the kubelet's recursive chown and chmod for a volume's fsGroup at
/// every mount, an SELinux relabel): as git does for such an entry, its
/// content decides. Read once per start for each such file, instead of
/// rebuilding the whole tree.
fn content_decides(entry: &gix::index::Entry, lstat: &Lstat, found: &Found<'_>) -> bool {
    let (recorded, now) = (entry.stat, lstat.index_stat());
    kind_matches(entry, lstat)
        && entry.mode != Mode::COMMIT
        && (recorded.mtime, recorded.size, recorded.ino) == (now.mtime, now.size, now.ino)
        && holds_blob(entry, lstat, found)
}

/// An index's own timestamp (its file's mtime when it was read).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Since(stat::Time);

impl Since {
    pub(crate) fn of(index: &gix::index::File) -> Self {
        let t = index.timestamp();
        Since(stat::Time {
            secs: t.unix_seconds() as u32,
            nsecs: t.nanoseconds(),
        })
    }

    /// Stat data cannot be trusted: the entry's mtime is not strictly
    /// older than the index (a same-size write in that tick matches it).
    fn racy(self, entry: &gix::index::Entry) -> bool {
        let mtime = entry.stat.mtime;
        (mtime.secs, mtime.nsecs) >= (self.0.secs, self.0.nsecs)
    }
}

/// The entry found (`lstat`) is the one the index recorded: same kind,
/// same executable bit, same stat data, and the same content if the entry
/// is racily clean in an index written at `since`. A gitlink needs a
/// directory.
pub(crate) fn as_recorded(
    entry: &gix::index::Entry,
    lstat: &Lstat,
    found: &Found<'_>,
    since: Since,
) -> bool {
    if entry.mode == Mode::COMMIT {
        return lstat.is_dir();
    }
    kind_matches(entry, lstat)
        && entry.stat.matches(&lstat.index_stat(), COMPARE)
        && (!since.racy(entry) || holds_blob(entry, lstat, found))
}

/// Same kind (file, executable file, link; a gitlink a directory).
fn kind_matches(entry: &gix::index::Entry, lstat: &Lstat) -> bool {
    match entry.mode {
        Mode::COMMIT => lstat.is_dir(),
        Mode::FILE => lstat.is_file() && !lstat.executable(),
        Mode::FILE_EXECUTABLE => lstat.is_file() && lstat.executable(),
        Mode::SYMLINK => lstat.is_symlink(),
        _ => false,
    }
}

/// The content found (a file's bytes, a link's target) hashes to the
/// entry's blob. Files as checked out by gix without filters; a filtered
/// one (eol conversion) reads as changed and is rewritten, which is safe.
fn holds_blob(entry: &gix::index::Entry, lstat: &Lstat, found: &Found<'_>) -> bool {
    let kind = entry.id.kind();
    let id = if lstat.is_symlink() {
        nix::fcntl::readlinkat(found.dir, found.name)
            .ok()
            .and_then(|t| gix::objs::compute_hash(kind, gix::objs::Kind::Blob, t.as_bytes()).ok())
    } else {
        // Not through a link, and never blocking on a FIFO put there since
        // the lstat: the file opened must be the one `lstat` describes.
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let opened =
            nix::fcntl::openat(found.dir, found.name, flags, nix::sys::stat::Mode::empty())
                .ok()
                .map(fs::File::from)
                .filter(|f| {
                    f.metadata().is_ok_and(|m| {
                        m.is_file() && m.ino() == lstat.0.st_ino && m.dev() == lstat.0.st_dev
                    })
                });
        opened.and_then(|mut file| {
            gix::objs::compute_stream_hash(
                kind,
                gix::objs::Kind::Blob,
                &mut file,
                lstat.len(),
                &mut gix::progress::Discard,
                &AtomicBool::new(false),
            )
            .ok()
        })
    };
    id == Some(entry.id)
}

/// Every field git compares, but the device number (a volume mounted
/// again after a restart may get another one).
const COMPARE: stat::Options = stat::Options {
    trust_ctime: true,
    check_stat: true,
    use_nsec: true,
    use_stdev: false,
};

#[cfg(test)]
mod tests {
    use super::*;
    use gix::index::entry::Flags;
    use std::os::unix::fs::symlink;
    use std::os::unix::fs::PermissionsExt;

    /// A directory with a few files, a link and a path left out, and an
    /// index that records them as they are on disk.
    fn tree() -> (tempfile::TempDir, gix::index::File) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut state = gix::index::State::new(gix::hash::Kind::Sha1);
        let mut push = |rel: &str, mode: Mode, flags: Flags| {
            let path = dir.path().join(rel);
            let stat = Lstat::of(&path).map(|l| l.index_stat()).unwrap_or_default();
            let content = match fs::read_link(&path) {
                Ok(target) => target.as_os_str().as_bytes().to_vec(),
                Err(_) => fs::read(&path).unwrap_or_default(),
            };
            let id =
                gix::objs::compute_hash(gix::hash::Kind::Sha1, gix::objs::Kind::Blob, &content)
                    .expect("hash");
            state.dangerously_push_entry(stat, id, flags, mode, rel.as_bytes().as_bstr());
        };
        for (rel, mode) in [("a.txt", 0o644), ("d/b.txt", 0o644), ("d/e/run.sh", 0o755)] {
            let path = dir.path().join(rel);
            fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            fs::write(&path, rel).expect("write");
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
            let kind = if mode == 0o755 {
                Mode::FILE_EXECUTABLE
            } else {
                Mode::FILE
            };
            push(rel, kind, Flags::empty());
        }
        symlink("a.txt", dir.path().join("d/link")).expect("symlink");
        push("d/link", Mode::SYMLINK, Flags::empty());
        push("out/left.txt", Mode::FILE, super::super::NOT_ON_DISK);
        state.sort_entries();
        let index = gix::index::File::from_state(state, dir.path().join("index"));
        (dir, index)
    }

    /// Each name is found in its own directory, whichever order the index
    /// lists directories in ("a b/", "a-b/" and "a.md" sort before "a/").
    /// What an index wants at each path of `rels` (all files, content
    /// "f"), written below `dir`, with the stat data found.
    fn files(dir: &Path, rels: &[&str]) -> gix::index::File {
        let mut state = gix::index::State::new(gix::hash::Kind::Sha1);
        for rel in rels {
            let path = dir.join(rel);
            fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            fs::write(&path, "f").expect("write");
            let stat = Lstat::of(&path).expect("lstat").index_stat();
            let id = gix::ObjectId::null(gix::hash::Kind::Sha1);
            state.dangerously_push_entry(stat, id, Flags::empty(), Mode::FILE, (*rel).into());
        }
        gix::index::File::from_state(state, dir.join("index"))
    }

    /// The stamp of directory `rel` below `dir` as it is now.
    fn stamp_now(dir: &Path, rel: &[u8]) -> Option<DirStamp> {
        let path = dir.join(std::str::from_utf8(rel).ok()?);
        Some(DirStamp::of(&Lstat::of(&path).ok()?))
    }

    /// A directory replaced after its parent was read, before it is read
    /// itself (here: while the walk, on one thread, judges the other one),
    /// or one above it swapped for a link to a copy: the walk fails rather
    /// than judge what it reached (trusted on the old one's stamp, the new
    /// one's strays would be missed; through the link, another tree would
    /// be judged).
    #[test]
    fn a_directory_replaced_during_the_walk_fails_it() {
        type Swap = fn(&Path, &str);
        let swaps: [(&str, Swap); 2] = [
            ("replaced", |top, other| {
                let path = top.join(other);
                fs::rename(&path, top.join("old")).expect("mv");
                fs::create_dir_all(path.join("c")).expect("mkdir");
                fs::write(path.join("c/f"), "f").expect("write");
                fs::write(path.join("stray"), "x").expect("stray");
            }),
            ("its parent a link to a copy", |top, other| {
                let copy = top.join("copy");
                fs::create_dir_all(copy.join("c")).expect("mkdir");
                fs::write(copy.join("c/f"), "f").expect("write");
                fs::rename(top.join(other), top.join("old")).expect("mv");
                symlink(&copy, top.join(other)).expect("ln");
            }),
        ];
        for (what, swap) in swaps {
            let dir = tempfile::tempdir().expect("tempdir");
            let index = files(dir.path(), &["a/x", "a/c/f", "b/x", "b/c/f"]);
            let mut wanted = Wanted::new(&index);
            wanted.trust(|p| stamp_now(dir.path(), p));
            // One thread: `a` and `b` are found when the top is read; while
            // the first one's `x` is judged (its `c` found, not yet read),
            // the other one's `c` is swapped under it ("replaced") or the
            // first one itself ("its parent a link").
            let swapped = std::sync::Mutex::new(false);
            let walked = survey(dir.path(), &wanted, false, 1, |entry, _, _| {
                let mut swapped = swapped.lock().expect("lock");
                let path = entry.path(&index).to_string();
                if !*swapped && path.ends_with("/x") {
                    let (first, other) = if path.starts_with('a') {
                        ("a", "b")
                    } else {
                        ("b", "a")
                    };
                    match what {
                        "replaced" => swap(dir.path(), other),
                        _ => swap(dir.path(), first),
                    }
                    *swapped = true;
                }
                true
            });
            let e = walked
                .err()
                .unwrap_or_else(|| panic!("{what}: the walk went on"));
            assert!(
                e.to_string()
                    .contains("was replaced while the tree was walked"),
                "{what}: {e}"
            );
        }
    }

    /// A trusted directory is not read: only the names it is wanted to
    /// hold are looked up, a missing one is missing (not an error), on any
    /// number of threads. (What else it holds is not seen: a stamp that is
    /// still the recorded one says there is nothing else.)
    #[test]
    fn a_trusted_directory_is_looked_up_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rels: Vec<String> = (0..8)
            .flat_map(|d| ["f", "g"].map(|n| format!("d{d}/{n}")))
            .collect();
        let rels: Vec<&str> = rels.iter().map(String::as_str).collect();
        let index = files(dir.path(), &rels);
        for d in 0..8 {
            fs::remove_file(dir.path().join(format!("d{d}/g"))).expect("rm");
            fs::write(dir.path().join(format!("d{d}/stray")), "x").expect("stray");
        }
        // Stamps taken after the changes: trusted as they are now.
        let mut wanted = Wanted::new(&index);
        wanted.trust(|p| stamp_now(dir.path(), p));
        let found = survey(dir.path(), &wanted, false, 8, |_, m, _| m.len() > 0).expect("survey");
        assert_eq!(found.trusted, 8);
        assert_eq!(found.kept.len(), 8, "the f files, not the removed g ones");
        assert!(found.strays.is_empty(), "{:?}", found.strays);
        assert!(found.dirs.iter().all(|d| d.clean));
    }

    /// In a trusted directory, what replaced a wanted name is judged by
    /// what it is: a directory where a file was wanted and a file where a
    /// directory was wanted are strays, and neither is walked into.
    #[test]
    fn a_trusted_directory_judges_what_replaced_its_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = files(dir.path(), &["top/file", "top/sub/inner", "top/kept"]);
        fs::remove_file(dir.path().join("top/file")).expect("rm file");
        fs::create_dir(dir.path().join("top/file")).expect("dir for a file");
        fs::write(dir.path().join("top/file/inside"), "x").expect("inside");
        fs::remove_dir_all(dir.path().join("top/sub")).expect("rm sub");
        fs::write(dir.path().join("top/sub"), "x").expect("file for a dir");
        let mut wanted = Wanted::new(&index);
        wanted.trust(|p| stamp_now(dir.path(), p));
        let found = survey(dir.path(), &wanted, false, 2, |_, m, _| m.is_file()).expect("survey");
        assert_eq!(found.trusted, 1, "`top` (the top itself is always read)");
        assert_eq!(found.kept.len(), 1, "top/kept only");
        let mut strays: Vec<_> = found
            .strays
            .iter()
            .map(|p| p.strip_prefix(dir.path()).expect("below"))
            .collect();
        strays.sort();
        assert_eq!(strays, [Path::new("top/file"), Path::new("top/sub")]);
        assert!(found
            .dirs
            .iter()
            .all(|d| !d.path.ends_with("file") && !d.path.ends_with("sub")));
    }

    /// A damaged index that wants `t/a` as a file and as a directory (of
    /// `t/a/b`): in a trusted `t`, `a` is judged once, as the entry, as it
    /// is when `t` is read.
    #[test]
    fn a_name_wanted_as_file_and_directory_is_judged_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut index = files(dir.path(), &["t/a", "t/c"]);
        let id = gix::ObjectId::null(gix::hash::Kind::Sha1);
        let stat = Stat::default();
        index.dangerously_push_entry(stat, id, Flags::empty(), Mode::FILE, "t/a/b".into());
        index.sort_entries();
        let mut wanted = Wanted::new(&index);
        wanted.trust(|p| stamp_now(dir.path(), p));
        let found = survey(dir.path(), &wanted, false, 1, |_, m, _| m.is_file()).expect("survey");
        assert_eq!(found.trusted, 1);
        assert_eq!(found.kept.len(), 2, "t/a and t/c");
        assert!(found.strays.is_empty(), "{:?}", found.strays);
    }

    #[test]
    fn names_are_found_in_their_own_directory() {
        let mut state = gix::index::State::new(gix::hash::Kind::Sha1);
        let paths = [
            "a b/f",
            "a-b/f",
            "a.md",
            "a/f",
            "a/g/h/deep",
            "a0/f",
            "ab",
            "skipped/f",
        ];
        for path in paths {
            let flags = if path.starts_with("skipped") {
                super::super::NOT_ON_DISK
            } else {
                Flags::empty()
            };
            let id = gix::ObjectId::null(gix::hash::Kind::Sha1);
            state.dangerously_push_entry(Stat::default(), id, flags, Mode::FILE, path.into());
        }
        state.sort_entries();
        let index = gix::index::File::from_state(state, "index");
        let wanted = Wanted::new(&index);
        assert_eq!(wanted.count(), paths.len() - 1);
        let lookup = |path: &str| -> Option<String> {
            let mut dir = Wanted::TOP;
            let mut parts: Vec<&str> = path.split('/').collect();
            let name = parts.pop()?;
            for part in parts {
                dir = wanted.subdir(dir, part.as_bytes())?;
            }
            let i = wanted.entry(dir, name.as_bytes())?;
            Some(index.entries()[i].path(&index).to_string())
        };
        for path in paths.iter().filter(|p| !p.starts_with("skipped")) {
            assert_eq!(lookup(path).as_deref(), Some(*path));
        }
        for absent in ["a", "a/g", "skipped/f", "a/g/deep", "b", "a0/g"] {
            assert_eq!(lookup(absent), None, "{absent}");
        }
        assert_eq!(wanted.subdir(Wanted::TOP, b"skipped"), None);
    }

    /// `index` as read back from a file whose mtime is `mtime`.
    fn stamped(index: &gix::index::File, admin: &Path, mtime: stat::Time) -> gix::index::File {
        use nix::sys::stat::{utimensat, UtimensatFlags};
        use nix::sys::time::TimeSpec;
        let path = admin.join("index");
        let mut copy = index.clone();
        copy.set_path(&path);
        copy.write(Default::default()).expect("writing the index");
        let t = TimeSpec::new(i64::from(mtime.secs), i64::from(mtime.nsecs));
        utimensat(
            nix::fcntl::AT_FDCWD,
            &path,
            &t,
            &t,
            UtimensatFlags::FollowSymlink,
        )
        .expect("utimensat");
        super::super::read_index(&path).expect("reading the index")
    }

    fn strays(dir: &Path, index: &gix::index::File) -> Vec<String> {
        let since = Since::of(index);
        let found = survey(dir, &Wanted::new(index), false, 2, |e, m, p| {
            as_recorded(e, m, p, since)
        })
        .expect("survey");
        found
            .strays
            .iter()
            .map(|p| p.strip_prefix(dir).expect("below").display().to_string())
            .collect()
    }

    #[test]
    fn an_untouched_tree_is_exact() {
        let (dir, index) = tree();
        assert!(exact(dir.path(), &index, false, 2));
        assert_eq!(Wanted::new(&index).count(), 4);
    }

    #[test]
    fn every_kind_of_write_is_a_stray() {
        type Write = fn(&Path);
        let cases: [(&str, Write, &str); 9] = [
            (
                "a new file",
                |d| fs::write(d.join("d/new"), "x").expect("w"),
                "d/new",
            ),
            (
                "an empty directory",
                |d| fs::create_dir(d.join("d/e/x")).expect("w"),
                "d/e/x",
            ),
            (
                "a new tree",
                |d| fs::create_dir_all(d.join("c/c")).expect("w"),
                "c",
            ),
            (
                "a left-out path",
                |d| fs::create_dir(d.join("out")).expect("w"),
                "out",
            ),
            (
                "same size, mtime put back",
                |d| {
                    let p = d.join("a.txt");
                    let mtime = fs::metadata(&p).and_then(|m| m.modified()).expect("mtime");
                    fs::write(&p, "A.txt").expect("w");
                    let f = fs::File::options().write(true).open(&p).expect("open");
                    f.set_modified(mtime).expect("set mtime");
                },
                "a.txt",
            ),
            (
                "chmod",
                |d| {
                    fs::set_permissions(d.join("d/e/run.sh"), fs::Permissions::from_mode(0o644))
                        .expect("w")
                },
                "d/e/run.sh",
            ),
            (
                "a file made a directory",
                |d| {
                    fs::remove_file(d.join("d/b.txt")).expect("w");
                    fs::create_dir(d.join("d/b.txt")).expect("w");
                },
                "d/b.txt",
            ),
            (
                "a link retargeted",
                |d| {
                    fs::remove_file(d.join("d/link")).expect("w");
                    symlink("/etc/passwd", d.join("d/link")).expect("w");
                },
                "d/link",
            ),
            (
                "a directory made a link",
                |d| {
                    fs::rename(d.join("d/e"), d.join("elsewhere")).expect("w");
                    symlink("../elsewhere", d.join("d/e")).expect("w");
                },
                "d/e",
            ),
        ];
        for (what, write, stray) in cases {
            let (dir, index) = tree();
            write(dir.path());
            let found = strays(dir.path(), &index);
            assert!(found.iter().any(|s| s == stray), "{what}: {found:?}");
            assert!(!exact(dir.path(), &index, false, 2), "{what}");
        }
    }

    #[test]
    fn a_missing_file_is_not_exact_and_the_top_level_git_file_is_ignored() {
        let (dir, index) = tree();
        fs::write(dir.path().join(".git"), "gitdir: x\n").expect("w");
        assert!(exact(dir.path(), &index, true, 2));
        assert!(!exact(dir.path(), &index, false, 2));
        fs::remove_file(dir.path().join("a.txt")).expect("rm");
        assert!(!exact(dir.path(), &index, true, 2));
    }

    /// Racy git: with a coarse clock, a same-size write in the tick the
    /// checkout wrote a file leaves its stat data as the index recorded it
    /// (emulated here by recording the stat data after the write, while the
    /// entry's blob is the old content).
    /// A chmod (or chown) changes only ctime (and owner): the content
    /// decides, so the tree is still exact. A same-size write whose mtime
    /// was set back looks the same to stat, and is caught by its content.
    #[test]
    fn a_changed_ctime_is_judged_by_content() {
        let (dir, index) = tree();
        let a = dir.path().join("a.txt");
        let mode = fs::metadata(&a).expect("stat").permissions().mode();
        fs::set_permissions(&a, fs::Permissions::from_mode(mode | 0o020)).expect("chmod g+w");
        assert!(exact(dir.path(), &index, false, 2));
        let mtime = fs::metadata(&a).expect("stat").modified().expect("mtime");
        fs::write(&a, "A.txt").expect("same-size write");
        let file = fs::File::options().write(true).open(&a).expect("open");
        file.set_modified(mtime).expect("mtime set back");
        assert!(!exact(dir.path(), &index, false, 2));
    }

    #[test]
    fn racily_clean_entries_are_held_against_their_blob() {
        let (dir, mut index) = tree();
        let admin = tempfile::tempdir().expect("tempdir");
        // Every entry racily clean, none touched: all kept, by content.
        let earliest = index
            .entries()
            .iter()
            .filter(|e| super::super::on_disk(e))
            .map(|e| e.stat.mtime)
            .min_by_key(|t| (t.secs, t.nsecs))
            .expect("entries");
        assert!(exact(
            dir.path(),
            &stamped(&index, admin.path(), earliest),
            false,
            2
        ));

        let a = dir.path().join("a.txt");
        fs::write(&a, "A.txt").expect("same-size write");
        let recorded = Lstat::of(&a).expect("lstat").index_stat();
        let i = index.entry_index_by_path("a.txt".into()).expect("a.txt");
        index.entries_mut()[i].stat = recorded;
        // The index written in that same tick: a.txt is racily clean.
        let same_tick = stamped(&index, admin.path(), recorded.mtime);
        assert_eq!(strays(dir.path(), &same_tick), ["a.txt"]);
        assert!(!exact(dir.path(), &same_tick, false, 2));
        // Written a tick later, stat data is trusted (as git trusts it).
        let later = stat::Time {
            secs: recorded.mtime.secs + 1,
            nsecs: 0,
        };
        assert!(exact(
            dir.path(),
            &stamped(&index, admin.path(), later),
            false,
            2
        ));
    }

    /// A wide tree with strays here and there, surveyed by one thread and
    /// by eight sharing the queue: the same findings; a panic in `accept`
    /// is an error, not a hang.
    #[test]
    fn threads_share_the_walk_and_find_the_same() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut state = gix::index::State::new(gix::hash::Kind::Sha1);
        for d in 0..30 {
            for f in 0..20 {
                let rel = format!("d{d}/s{}/f{f}.txt", f % 3);
                let path = dir.path().join(&rel);
                fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
                fs::write(&path, &rel).expect("write");
                let stat = Lstat::of(&path).expect("lstat").index_stat();
                let id = gix::objs::compute_hash(
                    gix::hash::Kind::Sha1,
                    gix::objs::Kind::Blob,
                    rel.as_bytes(),
                )
                .expect("hash");
                state.dangerously_push_entry(
                    stat,
                    id,
                    Flags::empty(),
                    Mode::FILE,
                    rel.as_bytes().as_bstr(),
                );
            }
            fs::write(dir.path().join(format!("d{d}/stray")), "x").expect("stray");
        }
        state.sort_entries();
        let index = gix::index::File::from_state(state, dir.path().join("index"));
        let wanted = Wanted::new(&index);
        let run = |threads| {
            let mut found =
                survey(dir.path(), &wanted, false, threads, |_, m, _| m.len() > 0).expect("survey");
            found.kept.sort_unstable();
            found.strays.sort();
            found.dirs.sort_by(|a, b| a.path.cmp(&b.path));
            found
        };
        let (one, eight) = (run(1), run(8));
        assert_eq!(one.kept.len(), 600);
        assert_eq!(one.strays.len(), 30);
        assert_eq!(one.dirs.len(), 1 + 30 + 90);
        assert_eq!(one.kept, eight.kept);
        assert_eq!(one.strays, eight.strays);
        assert_eq!(one.dirs, eight.dirs);
        let panicked = survey(dir.path(), &wanted, false, 8, |e, _, _| {
            assert!(!e.path(&index).ends_with(b"f7.txt"), "accept panics");
            true
        });
        assert!(panicked.is_err());
    }

    /// A racily clean file replaced by a FIFO (or anything else) after its
    /// `lstat`: the content check says "changed" at once instead of
    /// blocking on the FIFO's open (which would hold the pass forever).
    #[test]
    fn a_file_swapped_for_a_fifo_after_its_lstat_is_changed_not_a_hang() {
        let (dir, index) = tree();
        let path = dir.path().join("a.txt");
        let lstat = Lstat::of(&path).expect("lstat");
        let entry = index.entry_by_path("a.txt".into()).expect("a.txt").clone();
        let parent = fs::File::open(dir.path()).expect("open the directory");
        let found = Found {
            dir: parent.as_fd(),
            parent: dir.path(),
            name: c"a.txt",
        };
        assert!(holds_blob(&entry, &lstat, &found));
        fs::remove_file(&path).expect("rm");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o644))
            .expect("mkfifo");
        assert!(!holds_blob(&entry, &lstat, &found));
        // Nor through a link to the same file.
        fs::remove_file(&path).expect("rm");
        symlink("d/b.txt", &path).expect("ln");
        assert!(!holds_blob(&entry, &lstat, &found));
    }
}
