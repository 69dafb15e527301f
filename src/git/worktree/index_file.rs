//! Writing a worktree's index file. The bytes are gix's (a test compares
//! them), laid out here 64 KiB at a time, each entry's fixed part at once:
//! gix's writer passes each of an entry's fifteen fields through its own
//! `write_all`, 3.8-5.1 ms for a 38,404-entry index (4.5 MB), written on
//! every rewrite and checkout; this takes 1.3-2.9 ms, and never holds the
//! whole index in memory (the first sync's peak). Indexes with extensions
//! (a tree cache, a sparse index: never ours) go through gix's writer.
//!
//! Reading one back: an index we wrote is recorded beside it with its
//! checksum and its file's identity and times, and read without hashing
//! its 4.5 MB again (2.5 ms of SHA-1 with collision detection, and a second
//! read of the file) while the file is still the one recorded.

use std::io::{self, Write};
use std::path::Path;

use gix::index::entry::Flags;

/// Writes `index` to `path` (a temporary file renamed over it, as git
/// does: a reader sees the old index or the new one), with its checksum,
/// and records that checksum beside it ([`written_by_us`]); returns it. Not through
/// git's `index.lock`: only admin dirs of worktrees being built are
/// written, which no git command uses yet.
/// Streamed in 64 KiB pieces: never the whole index (4.5 MB for 38,404
/// entries) in memory at once, at a first sync's peak.
pub(crate) fn write_index(index: &mut gix::index::File, path: &Path) -> io::Result<gix::ObjectId> {
    let mut file = crate::fsutil::temp_file_beside(path)?;
    let kind = index.object_hash();
    let checksum = std::thread::scope(|scope| {
        let mut out = HashedWriter::new(file.as_file_mut(), kind, scope);
        if !encode(index, &mut out)? {
            let options = gix::index::write::Options {
                skip_hash: true,
                ..Default::default()
            };
            // The state's writer: header, entries and extensions, no checksum.
            gix::index::State::write_to(index, &mut out, options)
                .map_err(|e| io::Error::other(e.to_string()))?;
        }
        out.finish()
    })?;
    file.write_all(checksum.as_slice())?;
    file.persist(path).map_err(|e| e.error)?;
    index.set_path(path);
    // After the index: a crash in between leaves a record that does not
    // match. Not synced, as the index is not: a record lost to a power cut
    // only means the next plan reads the whole tree.
    let record_path = written_record(path);
    let mut record = crate::fsutil::temp_file_beside(&record_path)?;
    write!(record, "{checksum} {}", FileStamp::of(path)?)?;
    record.persist(record_path).map_err(|e| e.error)?;
    Ok(checksum)
}

/// Writes to a file in pieces of [`CHUNK`] bytes, each piece hashed on a
/// thread of its own while the next is encoded and written: the SHA-1 of a
/// 4.5 MB index (2.5 ms, with collision detection) then adds little to the
/// write. At most four pieces exist at once (one filled, one queued, one
/// hashed, one hashed and waiting to be filled again): 256 KiB. Hashed
/// inline if no thread can be started (a cgroup's `pids.max`).
struct HashedWriter<'f, 'scope> {
    file: &'f mut std::fs::File,
    piece: Vec<u8>,
    hashing: Hashing<'scope>,
}

enum Hashing<'scope> {
    Thread {
        pieces: std::sync::mpsc::SyncSender<Vec<u8>>,
        hashed: std::sync::mpsc::Receiver<Vec<u8>>,
        thread: std::thread::ScopedJoinHandle<'scope, gix::hash::Hasher>,
    },
    Inline(gix::hash::Hasher),
}

impl<'f, 'scope> HashedWriter<'f, 'scope> {
    fn new<'env>(
        file: &'f mut std::fs::File,
        kind: gix::hash::Kind,
        scope: &'scope std::thread::Scope<'scope, 'env>,
    ) -> Self {
        let (pieces, to_hash) = std::sync::mpsc::sync_channel::<Vec<u8>>(1);
        let (give_back, hashed) = std::sync::mpsc::channel();
        let hasher = std::thread::Builder::new()
            .name("index-hash".into())
            .spawn_scoped(scope, move || {
                let mut hasher = gix::hash::hasher(kind);
                for piece in to_hash {
                    hasher.update(&piece);
                    let _ = give_back.send(piece);
                }
                hasher
            });
        let hashing = match hasher {
            Ok(thread) => Hashing::Thread {
                pieces,
                hashed,
                thread,
            },
            Err(_) => Hashing::Inline(gix::hash::hasher(kind)),
        };
        Self {
            file,
            piece: Vec::with_capacity(CHUNK),
            hashing,
        }
    }

    /// Writes the piece and hands it to be hashed.
    fn pass_on(&mut self) -> io::Result<()> {
        self.file.write_all(&self.piece)?;
        match &mut self.hashing {
            Hashing::Thread { pieces, hashed, .. } => {
                let next = hashed
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
                let piece = std::mem::replace(&mut self.piece, next);
                pieces.send(piece).map_err(|_| hasher_gone())?;
            }
            Hashing::Inline(hasher) => hasher.update(&self.piece),
        }
        self.piece.clear();
        Ok(())
    }

    /// Writes what is left and returns the checksum of all that was written.
    fn finish(mut self) -> io::Result<gix::ObjectId> {
        self.pass_on()?;
        let hasher = match self.hashing {
            Hashing::Thread { pieces, thread, .. } => {
                drop(pieces);
                thread.join().map_err(|_| hasher_gone())?
            }
            Hashing::Inline(hasher) => hasher,
        };
        hasher
            .try_finalize()
            .map_err(|e| io::Error::other(e.to_string()))
    }
}

fn hasher_gone() -> io::Error {
    io::Error::other("the index's hashing thread stopped")
}

impl Write for HashedWriter<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(CHUNK - self.piece.len());
        self.piece.extend_from_slice(&buf[..n]);
        if self.piece.len() == CHUNK {
            self.pass_on()?;
        }
        Ok(n)
    }

    /// Pieces are written whole; [`HashedWriter::finish`] writes the last.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads the index at `path`. One we wrote ([`write_index`]) and nobody
/// wrote to since is read without verifying its checksum: its stamp
/// (device, inode, size, mtime and ctime) is as recorded before and after
/// the read, and its checksum is the one recorded. A write through the
/// filesystem sets the ctime, a replacement (how git writes an index) brings
/// another inode. Otherwise the checksum is verified, as git does.
/// What the stamp cannot see, as for git's own stat checks of worktree
/// files: a change to the medium under the filesystem, and, on kernels
/// before 6.13 (which stamp files with a clock of 1-10 ms ticks, where
/// later ones refine a time once it was read), a same-size write in place
/// within the clock tick of our own write, while the worktree is still
/// being built and its admin dir known to no git command.
pub(crate) fn read_index(path: &Path) -> Option<gix::index::File> {
    let read = |skip_hash| {
        gix::index::File::at(path, gix::hash::Kind::Sha1, skip_hash, Default::default()).ok()
    };
    let Some(Record {
        checksum,
        stamp: Some(stamp),
    }) = Record::read(path)
    else {
        return read(false);
    };
    let unchanged = || FileStamp::of(path).is_ok_and(|now| now == stamp);
    if !unchanged() {
        return read(false);
    }
    match read(true) {
        Some(index) if unchanged() && index.checksum() == Some(checksum) => Some(index),
        _ => read(false),
    }
}

/// A file's identity and times, as the record keeps them.
#[derive(Debug, PartialEq, Eq)]
struct FileStamp([i64; 7]);

impl FileStamp {
    fn of(path: &Path) -> io::Result<Self> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::symlink_metadata(path)?;
        let id = |n: u64| n as i64;
        Ok(Self([
            id(m.dev()),
            id(m.ino()),
            id(m.size()),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
        ]))
    }

    fn parse<'a>(fields: impl Iterator<Item = &'a str>) -> Option<Self> {
        let values: Vec<i64> = fields.map(|f| f.parse().ok()).collect::<Option<_>>()?;
        Some(Self(values.try_into().ok()?))
    }
}

impl std::fmt::Display for FileStamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let fields: Vec<String> = self.0.iter().map(i64::to_string).collect();
        f.write_str(&fields.join(" "))
    }
}

/// What [`write_index`] recorded beside an index: its checksum, then its
/// stamp (a record from before stamps were kept has none).
struct Record {
    checksum: gix::ObjectId,
    stamp: Option<FileStamp>,
}

impl Record {
    fn read(index_path: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(written_record(index_path)).ok()?;
        let mut fields = text.split_ascii_whitespace();
        let checksum = gix::ObjectId::from_hex(fields.next()?.as_bytes()).ok()?;
        let stamp = FileStamp::parse(fields);
        Some(Self { checksum, stamp })
    }
}

/// Beside an index: the checksum of the index as we wrote it.
fn written_record(index_path: &Path) -> std::path::PathBuf {
    index_path.with_file_name("index.written")
}

/// `index` (read from `index_path`) is the one we wrote there: not
/// rewritten since by git (`git add`, `git rm --cached`, a refresh by
/// `git status`) or anything else.
pub(crate) fn written_by_us(index_path: &Path, index: &gix::index::File) -> bool {
    Record::read(index_path).is_some_and(|r| index.checksum() == Some(r.checksum))
}

const CHUNK: usize = 64 * 1024;

/// Writes the header and entries to `out` as gix writes them (version 2,
/// or 3 when an entry has extended flags); `false`, writing nothing, if the
/// index has extensions.
fn encode(state: &gix::index::State, out: &mut impl Write) -> io::Result<bool> {
    // (gix picks the version from all entries, those flagged REMOVE too:
    // the bytes differ only for such an entry, which ours never hold.)
    let sha1 = state.object_hash() == gix::hash::Kind::Sha1;
    if !sha1 || state.tree().is_some() || state.is_sparse() {
        return Ok(false);
    }
    const HEADER: usize = 12;
    let entries = state.entries();
    let written = || entries.iter().filter(|e| !e.flags.contains(Flags::REMOVE));
    let version: u32 = if written().any(|e| e.flags.contains(Flags::EXTENDED)) {
        3
    } else {
        2
    };
    let count = u32::try_from(written().count()).map_err(io::Error::other)?;
    let mut buf = Vec::with_capacity(CHUNK + 4096);
    buf.extend_from_slice(b"DIRC");
    buf.extend_from_slice(&version.to_be_bytes());
    buf.extend_from_slice(&count.to_be_bytes());
    // Where the entries start, as a multiple of eight: `buf` restarts at 0
    // after each flush, so padding counts from `base`.
    let mut base = HEADER;
    for entry in written() {
        let s = &entry.stat;
        let path = entry.path(state);
        // The fixed part in one piece: ten 32-bit fields, the id, then the
        // flags, whose low 12 bits hold the path's length (capped) and high
        // 4 the stage, extended and assume-valid bits.
        let mut fixed = [0u8; 64];
        let fields = [
            s.ctime.secs,
            s.ctime.nsecs,
            s.mtime.secs,
            s.mtime.nsecs,
            s.dev,
            s.ino,
            entry.mode.bits(),
            s.uid,
            s.gid,
            s.size,
        ];
        for (slot, field) in fixed.chunks_exact_mut(4).zip(fields) {
            slot.copy_from_slice(&field.to_be_bytes());
        }
        fixed[40..60].copy_from_slice(entry.id.as_bytes());
        let path_len = path.len().min(0x0fff) as u16;
        let stored = (entry.flags.bits() & 0xf000) as u16;
        fixed[60..62].copy_from_slice(&(stored | path_len).to_be_bytes());
        let mut len = 62;
        if entry.flags.contains(Flags::EXTENDED) {
            let extended =
                (entry.flags & (Flags::INTENT_TO_ADD | Flags::SKIP_WORKTREE)).bits() >> 16;
            fixed[62..64].copy_from_slice(&(extended as u16).to_be_bytes());
            len = 64;
        }
        buf.extend_from_slice(&fixed[..len]);
        buf.extend_from_slice(path);
        // At least one NUL, up to a multiple of eight from the first entry.
        buf.push(0);
        let padded = base + (buf.len() - base).div_ceil(8) * 8;
        buf.resize(padded, 0);
        if buf.len() >= CHUNK {
            out.write_all(&buf)?;
            buf.clear();
            base = 0;
        }
    }
    out.write_all(&buf)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gix::bstr::ByteSlice;
    use gix::index::entry::stat::Time;
    use gix::index::entry::{Mode, Stat};

    fn encoded(state: &gix::index::State) -> Vec<u8> {
        let mut bytes = Vec::new();
        assert!(encode(state, &mut bytes).expect("encode"), "no extensions");
        bytes
    }

    /// What gix writes (the state's writer adds no checksum).
    fn gix_bytes(state: &gix::index::State) -> Vec<u8> {
        let mut bytes = Vec::new();
        let options = gix::index::write::Options {
            skip_hash: true,
            ..Default::default()
        };
        state.write_to(&mut bytes, options).expect("gix writes");
        bytes
    }

    /// Every field, mode and flag an index of ours can hold, stages, paths
    /// of every padding length and one longer than the 12-bit length field:
    /// the bytes gix writes.
    #[test]
    fn entries_are_encoded_as_gix_encodes_them() {
        let mut state = gix::index::State::new(gix::hash::Kind::Sha1);
        let modes = [
            Mode::FILE,
            Mode::FILE_EXECUTABLE,
            Mode::SYMLINK,
            Mode::COMMIT,
        ];
        let flag_sets = [
            Flags::empty(),
            Flags::SKIP_WORKTREE | Flags::EXTENDED,
            Flags::ASSUME_VALID,
            Flags::INTENT_TO_ADD | Flags::EXTENDED,
        ];
        let long = "d/".repeat(2100) + "f";
        let mut paths: Vec<String> = (1..20).map(|n| "p".repeat(n)).collect();
        paths.push(long);
        for (i, path) in paths.iter().enumerate() {
            let t = |n: u32| Time {
                secs: 1_700_000_000 + n,
                nsecs: n * 7919,
            };
            let stat = Stat {
                mtime: t(i as u32),
                ctime: t(2 * i as u32),
                dev: 0xfd00 + i as u32,
                ino: 0xdead_0000 + i as u32,
                uid: 1000 + i as u32,
                gid: 2000,
                size: 0x1234_5678 ^ i as u32,
            };
            let id = gix::ObjectId::from_hex(format!("{:040x}", i * 0x1111_1111 + 1).as_bytes())
                .expect("id");
            let flags = flag_sets[i % flag_sets.len()];
            state.dangerously_push_entry(
                stat,
                id,
                flags,
                modes[i % modes.len()],
                path.as_bytes().as_bstr(),
            );
        }
        // A conflict's stages, as a merge leaves them.
        for stage in 1..=3u32 {
            let flags = Flags::from_bits_retain(stage << 12);
            state.dangerously_push_entry(
                Stat::default(),
                gix::ObjectId::null(gix::hash::Kind::Sha1),
                flags,
                Mode::FILE,
                "conflict".as_bytes().as_bstr(),
            );
        }
        // Enough entries to be written in several pieces.
        for n in 0..3000u32 {
            let path = format!("many/{}{n}", "x".repeat(n as usize % 13));
            let id = gix::ObjectId::null(gix::hash::Kind::Sha1);
            state.dangerously_push_entry(
                Stat::default(),
                id,
                Flags::empty(),
                Mode::FILE,
                path.as_bytes().as_bstr(),
            );
        }
        state.sort_entries();
        let ours = encoded(&state);
        assert!(ours.len() > 3 * CHUNK, "{} bytes", ours.len());
        assert!(ours == gix_bytes(&state), "not gix's bytes");

        // Version 2 without extended flags.
        let mut plain = gix::index::State::new(gix::hash::Kind::Sha1);
        plain.dangerously_push_entry(
            Stat::default(),
            gix::ObjectId::null(gix::hash::Kind::Sha1),
            Flags::empty(),
            Mode::FILE,
            "a".as_bytes().as_bstr(),
        );
        let ours = encoded(&plain);
        assert_eq!(&ours[4..8], &2u32.to_be_bytes());
        assert!(ours == gix_bytes(&plain), "not gix's bytes");
    }

    /// An index of three entries written to `dir/index` by [`write_index`].
    fn written(dir: &Path) -> std::path::PathBuf {
        let mut state = gix::index::State::new(gix::hash::Kind::Sha1);
        for name in ["a.txt", "b/c.txt", "b/d"] {
            state.dangerously_push_entry(
                Stat::default(),
                gix::ObjectId::null(gix::hash::Kind::Sha1),
                Flags::empty(),
                Mode::FILE,
                name.as_bytes().as_bstr(),
            );
        }
        let path = dir.join("index");
        let mut index = gix::index::File::from_state(state, &path);
        write_index(&mut index, &path).expect("write");
        path
    }

    /// Changes `b/c.txt` to `b/c.txu` in place: same size, same inode.
    fn edit_in_place(path: &Path) {
        let bytes = std::fs::read(path).expect("read");
        let at = bytes
            .windows(7)
            .position(|w| w == b"b/c.txt")
            .expect("path")
            + 6;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .expect("open");
        std::os::unix::fs::FileExt::write_at(&file, b"u", at as u64).expect("write");
    }

    fn paths(index: &gix::index::File) -> Vec<String> {
        index
            .entries()
            .iter()
            .map(|e| e.path(index).to_string())
            .collect()
    }

    /// A byte changed in place (same size and inode, as a careless tool
    /// leaves it) changes the ctime: the checksum is verified again and the
    /// index refused. (After a pause longer than a coarse clock's tick: the
    /// stamp cannot see a write within the tick of ours on kernels before
    /// 6.13, see [`read_index`].)
    #[test]
    fn an_index_written_to_since_is_verified() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = written(dir.path());
        assert!(read_index(&path).is_some());
        std::thread::sleep(std::time::Duration::from_millis(20));
        edit_in_place(&path);
        assert!(read_index(&path).is_none(), "a changed index was trusted");
    }

    /// While the file's stamp is the recorded one, its content is not hashed:
    /// shown by a record that vouches for an edited file (which only a
    /// stamp-trusting read accepts).
    #[test]
    fn an_index_as_recorded_is_read_without_hashing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = written(dir.path());
        let record = Record::read(&path).expect("record");
        edit_in_place(&path);
        let vouching = format!(
            "{} {}",
            record.checksum,
            FileStamp::of(&path).expect("stamp")
        );
        std::fs::write(written_record(&path), vouching).expect("record");
        let read = read_index(&path).expect("read on the record's word");
        assert_eq!(paths(&read), ["a.txt", "b/c.txu", "b/d"]);
    }

    /// A record from before stamps were kept (the checksum alone) still
    /// says the index is ours; the index is read with its checksum verified.
    #[test]
    fn a_record_without_a_stamp_still_names_the_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = written(dir.path());
        let record = Record::read(&path).expect("record");
        assert!(record.stamp.is_some());
        std::fs::write(written_record(&path), record.checksum.to_string()).expect("record");
        let read = read_index(&path).expect("read");
        assert!(written_by_us(&path, &read));
        edit_in_place(&path);
        assert!(
            read_index(&path).is_none(),
            "read without its stamp, yet not verified"
        );
    }

    /// Bytes written in pieces of every size through both ways of hashing
    /// (a thread of its own; inline, when none can be started) reach the
    /// file whole and in order, with the SHA-1 of all of them.
    #[test]
    fn pieces_are_written_and_hashed_in_order() {
        let bytes: Vec<u8> = (0..3 * CHUNK + 4321).map(|i| (i * 7 % 251) as u8).collect();
        let mut whole = gix::hash::hasher(gix::hash::Kind::Sha1);
        whole.update(&bytes);
        let expected = whole.try_finalize().expect("hash");
        for inline in [false, true] {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("out");
            let mut file = std::fs::File::create(&path).expect("create");
            let checksum = std::thread::scope(|scope| {
                let mut out = HashedWriter::new(&mut file, gix::hash::Kind::Sha1, scope);
                if inline {
                    let hasher = gix::hash::hasher(gix::hash::Kind::Sha1);
                    // Ends the thread (its queue closes), as if never started.
                    out.hashing = Hashing::Inline(hasher);
                }
                let mut rest = &bytes[..];
                let mut size = 1;
                while !rest.is_empty() {
                    let n = out.write(&rest[..size.min(rest.len())]).expect("write");
                    rest = &rest[n..];
                    size = size * 3 % 100_003 + 1;
                }
                out.finish().expect("finish")
            });
            assert_eq!(checksum, expected, "inline: {inline}");
            assert!(
                std::fs::read(&path).expect("read") == bytes,
                "inline: {inline}"
            );
        }
    }

    /// An index with an extension (git's cache tree, written by `git
    /// write-tree`; never one of ours) goes through gix's writer: it reads
    /// back with a valid checksum, the same entries and the extension.
    #[test]
    fn an_index_with_extensions_is_written_by_gix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        crate::git::test_git::git(root, &["init", "-q"]);
        for name in ["a.txt", "b/c.txt"] {
            let path = root.join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, name).expect("write");
        }
        crate::git::test_git::git(root, &["add", "."]);
        crate::git::test_git::git(root, &["write-tree"]);
        let theirs = root.join(".git/index");
        let mut index =
            gix::index::File::at(&theirs, gix::hash::Kind::Sha1, false, Default::default())
                .expect("git's index");
        assert!(index.tree().is_some(), "git wrote no cache tree");
        let path = dir.path().join("copy");
        write_index(&mut index, &path).expect("write");
        let read = gix::index::File::at(&path, gix::hash::Kind::Sha1, false, Default::default())
            .expect("read back, checksum verified");
        assert_eq!(paths(&read), ["a.txt", "b/c.txt"]);
        assert!(read.tree().is_some(), "the cache tree was dropped");
    }

    /// What is written reads back as the same entries, with a valid checksum.
    #[test]
    fn a_written_index_reads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = written(dir.path());
        let read = gix::index::File::at(&path, gix::hash::Kind::Sha1, false, Default::default())
            .expect("read back, checksum verified");
        assert_eq!(paths(&read), ["a.txt", "b/c.txt", "b/d"]);
    }
}
