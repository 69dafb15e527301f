//! Writes the pack a server sends into the object store, hashing each whole
//! object during the one pass that also finds where it ends.
//!
//! gix 0.90 inflates every received object twice before the checkout reads
//! it a third time: once to find where it ends in the stream, once more to
//! hash it for the index. git's `index-pack` hashes a whole object in its
//! first pass; so do we. A pack of whole objects (a shallow clone's usually
//! is) gets its index written here from those hashes; a pack with deltas is
//! indexed by gix from the written file (one more pass, as before). A pack
//! that may be thin (the server was told what the store has, so its deltas
//! may name bases the pack lacks) goes through gix's bundle writer as it
//! streams in, which completes it from the store: those are the small
//! packs of later fetches.

use std::fs::File;
use std::io::{self, BufRead, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use gix::hash::{Kind, ObjectId};
use gix::zlib::{Decompress, FlushDecompress, Status};
use gix_pack::data::{self, input};
use tempfile::NamedTempFile;

/// The pack and index now in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub pack: PathBuf,
    pub index: PathBuf,
}

/// What went wrong writing a received pack. Nothing is left in the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("could not write the received pack into {dir}: {source}")]
    Store { dir: PathBuf, source: io::Error },
    #[error("could not read the pack from the server: {0}")]
    Read(String),
    #[error("the received pack is damaged: {0}")]
    Damaged(String),
    #[error("could not index the received pack: {0}")]
    Index(String),
    #[error("interrupted")]
    Interrupted,
}

/// Where the pack goes, and what completes a thin pack.
pub struct Target<'a> {
    /// `objects/pack` of the store.
    pub dir: &'a Path,
    pub hash: Kind,
    /// Threads for indexing a pack with deltas.
    pub threads: Option<usize>,
    /// The store's objects, the bases of a thin pack's deltas.
    pub objects: &'a gix::OdbHandle,
    pub interrupt: &'a AtomicBool,
}

impl Target<'_> {
    fn store_error(&self, source: io::Error) -> Error {
        Error::Store {
            dir: self.dir.to_path_buf(),
            source,
        }
    }

    fn index_error(&self, e: &gix::Error) -> Error {
        match self.interrupt.load(Ordering::Relaxed) {
            true => Error::Interrupted,
            false => Error::Index(crate::types::error_chain(e)),
        }
    }

    fn temp_file(&self, suffix: &str) -> Result<NamedTempFile, Error> {
        tempfile::Builder::new()
            .prefix("incoming-")
            .suffix(suffix)
            .tempfile_in(self.dir)
            .map_err(|e| self.store_error(e))
    }
}

/// Reads a whole pack from `input` (header, entries, trailer) into the
/// store; `None` for a pack without objects. `may_be_thin`: the store holds
/// objects the server may have made deltas against (see [`holds_objects`]).
pub fn write(
    input: &mut dyn BufRead,
    may_be_thin: bool,
    target: &Target<'_>,
) -> Result<Option<Written>, Error> {
    let written = match may_be_thin {
        true => write_completing_thin(input, target)?,
        false => write_whole(input, target)?,
    };
    // Written 0600 (temporary files): the mode the umask gives everything
    // else, so that another user in the group (`--group-write`) can read it.
    for path in written.iter().flat_map(|w| [&w.pack, &w.index]) {
        crate::fsutil::apply_umask(path).map_err(|e| target.store_error(e))?;
    }
    Ok(written)
}

/// [`write`] for a pack that cannot be thin.
fn write_whole(input: &mut dyn BufRead, target: &Target<'_>) -> Result<Option<Written>, Error> {
    let pack = target.temp_file(".pack")?;
    let received = receive(input, pack.as_file(), target)?;
    if received.count() == 0 {
        return Ok(None);
    }
    let index = target.temp_file(".idx")?;
    let (objects, pack_id) = (received.count(), received.pack_id);
    match received.sorted_whole_objects() {
        Some(sorted) => {
            write_index(index.as_file(), &sorted, &pack_id).map_err(|e| target.store_error(e))?;
            tracing::debug!(
                objects,
                "indexed a pack of whole objects from the receiving pass"
            );
        }
        None => {
            index_with_deltas(pack.path(), index.as_file(), received, target)?;
            tracing::debug!(objects, "indexed a pack with deltas");
        }
    };
    persist(pack, index, &pack_id, target.dir)
        .map_err(|e| target.store_error(e))
        .map(Some)
}

/// Whether the store in `objects_dir` holds any object: only then can a
/// server send a thin pack, with deltas against objects the store has (the
/// `have` lines, but also the commits of a shallow boundary, which
/// upload-pack takes as bases without any `have`). Unreadable: assumed so.
pub fn holds_objects(objects_dir: &Path) -> bool {
    let has_entries = |dir: &Path, wanted: &dyn Fn(&str) -> bool| match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .flatten()
            .any(|e| wanted(&e.file_name().to_string_lossy())),
        Err(e) => e.kind() != io::ErrorKind::NotFound,
    };
    has_entries(&objects_dir.join("pack"), &|name| name.ends_with(".idx"))
        || has_entries(objects_dir, &|name| {
            super::store::is_loose_object_dir(name)
                && has_entries(&objects_dir.join(name), &|_| true)
        })
}

/// Entries per chunk of [`Received::chunks`]: the indexer frees each chunk
/// as it goes, so our records shrink while its delta tree fills.
const CHUNK: usize = 16 * 1024;

/// One entry as read: what the index, or gix's indexer, needs of it.
struct Record {
    header: data::entry::Header,
    /// A whole object's id (null for a delta, and for every object after
    /// the first delta: such a pack is indexed by gix).
    id: ObjectId,
    offset: u64,
    decompressed_size: u64,
    crc32: u32,
    header_size: u16,
}

/// A pack's entries as read.
struct Received {
    chunks: Vec<Vec<Record>>,
    /// Where the trailer starts (the end of the last entry).
    end: u64,
    pack_id: ObjectId,
}

impl Received {
    fn push(&mut self, record: Record) {
        match self.chunks.last_mut() {
            Some(chunk) if chunk.len() < CHUNK => chunk.push(record),
            _ => self.chunks.push(vec![record]),
        }
    }

    fn count(&self) -> usize {
        self.chunks.iter().map(Vec::len).sum()
    }

    fn records(&self) -> impl Iterator<Item = &Record> {
        self.chunks.iter().flatten()
    }

    /// (id, crc32, offset) by id, if the pack holds whole objects only, each once.
    fn sorted_whole_objects(&self) -> Option<Vec<(ObjectId, u32, u64)>> {
        if self.records().any(|r| r.header.is_delta()) {
            return None;
        }
        let mut sorted: Vec<_> = self.records().map(|r| (r.id, r.crc32, r.offset)).collect();
        sorted.sort_unstable_by_key(|(id, ..)| *id);
        let unique = sorted.windows(2).all(|pair| pair[0].0 != pair[1].0);
        unique.then_some(sorted)
    }

    /// The entries as gix's indexer takes them, each chunk freed once read.
    fn into_entries(self) -> Entries {
        Entries {
            left: self.count(),
            records: self.chunks.into_iter().flatten().peekable(),
            end: self.end,
            pack_id: self.pack_id,
        }
    }
}

/// [`Received`]'s records as gix's input entries, the last with the trailer.
struct Entries {
    records: std::iter::Peekable<std::iter::Flatten<std::vec::IntoIter<Vec<Record>>>>,
    left: usize,
    end: u64,
    pack_id: ObjectId,
}

impl Iterator for Entries {
    type Item = Result<input::Entry, gix::Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let record = self.records.next()?;
        self.left -= 1;
        let next = self.records.peek().map(|r| r.offset);
        let entry_end = next.unwrap_or(self.end);
        Some(Ok(input::Entry {
            header: record.header,
            header_size: record.header_size,
            pack_offset: record.offset,
            compressed: None,
            compressed_size: entry_end - record.offset - u64::from(record.header_size),
            crc32: Some(record.crc32),
            decompressed_size: record.decompressed_size,
            trailer: next.is_none().then_some(self.pack_id),
        }))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

/// Reads the pack into `file`, checking its trailer, hashing whole objects.
fn receive(input: &mut dyn BufRead, file: &File, target: &Target<'_>) -> Result<Received, Error> {
    let mut stream = Stream {
        input,
        out: Noting {
            inner: BufWriter::with_capacity(64 * 1024, file),
            error: None,
        },
        pack_hash: gix::hash::hasher(target.hash),
        offset: 0,
        scratch: vec![0; 64 * 1024],
        target,
        hashing: true,
    };
    let mut header = [0u8; data::header::SIZE];
    let read = Crc {
        stream: &mut stream,
        crc: &mut crc32fast::Hasher::new(),
    }
    .read_exact(&mut header);
    stream.check(read)?;
    let (_version, count) =
        data::header::decode(&header).map_err(|e| Error::Damaged(e.to_string()))?;
    let mut received = Received {
        chunks: Vec::new(),
        end: 0,
        pack_id: ObjectId::null(target.hash),
    };
    let mut inflate = Decompress::new();
    for _ in 0..count {
        if target.interrupt.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        received.push(stream.entry(&mut inflate)?);
    }
    received.end = stream.offset;
    received.pack_id = stream.finish()?;
    Ok(received)
}

/// The pack as it streams in: every byte read is written to the file and
/// hashed into the pack's checksum.
struct Stream<'a> {
    input: &'a mut dyn BufRead,
    /// Keeps a write error, told apart from a read error.
    out: Noting<BufWriter<&'a File>>,
    pack_hash: gix::hash::Hasher,
    offset: u64,
    scratch: Vec<u8>,
    /// Its interrupt flag is checked for every buffer of input: one entry
    /// may be gigabytes.
    target: &'a Target<'a>,
    /// Whole objects are hashed until the first delta.
    hashing: bool,
}

impl Stream<'_> {
    /// Takes `n` bytes of the input's buffer into the file and the checksum.
    fn keep(&mut self, n: usize, crc: &mut crc32fast::Hasher) -> io::Result<()> {
        let bytes = &self.input.fill_buf()?[..n];
        crc.update(bytes);
        self.pack_hash.update(bytes);
        self.out.write_all(bytes)?;
        self.input.consume(n);
        self.offset += n as u64;
        Ok(())
    }

    /// The error a failed read or write of the stream is.
    fn check<T>(&mut self, result: io::Result<T>) -> Result<T, Error> {
        let target = self.target;
        result.map_err(|e| match self.out.error.take() {
            Some(write) => target.store_error(write),
            None if target.interrupt.load(Ordering::Relaxed) => Error::Interrupted,
            None if e.kind() == io::ErrorKind::UnexpectedEof => {
                Error::Damaged(format!("it ended early, at byte {}", self.offset))
            }
            None if e.kind() == io::ErrorKind::InvalidData => {
                Error::Damaged(format!("{e}, at byte {}", self.offset))
            }
            None => Error::Read(crate::types::error_chain(&e)),
        })
    }

    /// One entry: its header, then its data inflated once, which finds its
    /// end, its CRC and, for a whole object, its id.
    fn entry(&mut self, inflate: &mut Decompress) -> Result<Record, Error> {
        let target = self.target;
        let pack_offset = self.offset;
        let mut crc = crc32fast::Hasher::new();
        let parsed = data::Entry::from_read(
            &mut Crc {
                stream: self,
                crc: &mut crc,
            },
            pack_offset,
            target.hash.len_in_bytes(),
        );
        // gix reports an unknown object type as `Other`, as the transport
        // reports an `ERR` line from the server: tell them apart.
        let parsed = parsed.map_err(|e| match e.to_string().starts_with("Object type") {
            true => io::Error::new(io::ErrorKind::InvalidData, e),
            false => e,
        });
        let parsed = self.check(parsed)?;
        // Once the pack shows a delta, gix indexes it (and hashes every
        // object itself): hashing more here would be wasted.
        self.hashing &= !parsed.header.is_delta();
        let kind = parsed.header.as_kind().filter(|_| self.hashing);
        let mut object = kind.map(|kind| {
            let mut hasher = gix::hash::hasher(target.hash);
            hasher.update(&gix::objs::encode::loose_header(
                kind,
                parsed.decompressed_size,
            ));
            hasher
        });
        inflate.reset();
        let sizes = self.inflate(inflate, &mut crc, object.as_mut(), parsed.decompressed_size);
        let decompressed_size = self.check(sizes)?;
        let id = match object {
            Some(hasher) => hasher
                .try_finalize()
                .map_err(|e| Error::Damaged(format!("object at byte {pack_offset}: {e}")))?,
            None => ObjectId::null(target.hash),
        };
        Ok(Record {
            header: parsed.header,
            id,
            offset: pack_offset,
            decompressed_size,
            crc32: crc.finalize(),
            header_size: parsed.header_size() as u16,
        })
    }

    /// Inflates one zlib stream, taking exactly its bytes from the input.
    /// Returns the decompressed size.
    fn inflate(
        &mut self,
        inflate: &mut Decompress,
        crc: &mut crc32fast::Hasher,
        mut object: Option<&mut gix::hash::Hasher>,
        expected: u64,
    ) -> io::Result<u64> {
        loop {
            if self.target.interrupt.load(Ordering::Relaxed) {
                return Err(io::Error::other("interrupted"));
            }
            let input = self.input.fill_buf()?;
            if input.is_empty() {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let (in_before, out_before) = (inflate.total_in(), inflate.total_out());
            let status = inflate
                .decompress(input, &mut self.scratch, FlushDecompress::None)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            let used = (inflate.total_in() - in_before) as usize;
            let produced = (inflate.total_out() - out_before) as usize;
            if let Some(hasher) = object.as_deref_mut() {
                hasher.update(&self.scratch[..produced]);
            }
            self.keep(used, crc)?;
            if inflate.total_out() > expected {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("an object inflates past its stated size of {expected} bytes"),
                ));
            }
            match status {
                Status::StreamEnd => break,
                _ if used == 0 && produced == 0 => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a zlib stream makes no progress",
                    ))
                }
                _ => {}
            }
        }
        if inflate.total_out() != expected {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "an object inflates to {} bytes, not its stated {expected}",
                    inflate.total_out()
                ),
            ));
        }
        Ok(inflate.total_out())
    }

    /// Reads the trailer, checks it against the bytes read, writes it.
    fn finish(mut self) -> Result<ObjectId, Error> {
        let target = self.target;
        let mut trailer = ObjectId::null(target.hash);
        let read = self.input.read_exact(trailer.as_mut_slice());
        self.check(read)?;
        let actual = std::mem::replace(&mut self.pack_hash, gix::hash::hasher(target.hash))
            .try_finalize()
            .map_err(|e| Error::Damaged(e.to_string()))?;
        if actual != trailer {
            return Err(Error::Damaged(format!(
                "its checksum says {trailer}, its bytes hash to {actual}"
            )));
        }
        self.out
            .write_all(trailer.as_slice())
            .and_then(|()| self.out.flush())
            .map_err(|e| target.store_error(e))?;
        Ok(actual)
    }
}

/// Reads through a [`Stream`] for an entry's header, adding to its CRC.
struct Crc<'s, 'a> {
    stream: &'s mut Stream<'a>,
    crc: &'s mut crc32fast::Hasher,
}

impl Read for Crc<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.stream.input.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.stream.keep(n, self.crc)?;
        Ok(n)
    }
}

/// Writes a version 2 pack index for `objects` sorted by id
/// (gitformat-pack(5)).
fn write_index(
    file: &File,
    objects: &[(ObjectId, u32, u64)],
    pack_id: &ObjectId,
) -> io::Result<()> {
    let buffered = BufWriter::with_capacity(64 * 1024, file);
    let mut out = gix::hash::io::Write::new(buffered, pack_id.kind());
    out.write_all(b"\xfftOc")?;
    out.write_all(&2u32.to_be_bytes())?;
    let mut fanout = [0u32; 256];
    for (id, ..) in objects {
        fanout[usize::from(id.first_byte())] += 1;
    }
    let mut total = 0u32;
    for count in fanout {
        total += count;
        out.write_all(&total.to_be_bytes())?;
    }
    for (id, ..) in objects {
        out.write_all(id.as_slice())?;
    }
    for (_, crc, _) in objects {
        out.write_all(&crc.to_be_bytes())?;
    }
    let mut large = Vec::new();
    for (.., offset) in objects {
        let small = match u32::try_from(*offset) {
            Ok(small) if small < 0x8000_0000 => small,
            _ => {
                large.push(*offset);
                0x8000_0000 | (large.len() as u32 - 1)
            }
        };
        out.write_all(&small.to_be_bytes())?;
    }
    for offset in large {
        out.write_all(&offset.to_be_bytes())?;
    }
    out.write_all(pack_id.as_slice())?;
    let own = out
        .hash
        .try_finalize()
        .map_err(|e| io::Error::other(e.to_string()))?;
    out.inner.write_all(own.as_slice())?;
    out.inner.flush()
}

/// Indexes a pack with deltas with gix, reading the written file.
fn index_with_deltas(
    pack: &Path,
    index: &File,
    received: Received,
    target: &Target<'_>,
) -> Result<(), Error> {
    let data = data::File::at(pack, target.hash).map_err(|e| target.index_error(&e))?;
    let mut out = Noting {
        inner: BufWriter::with_capacity(64 * 1024, index),
        error: None,
    };
    let indexed = gix_pack::index::write_data_iter_to_stream(
        gix_pack::index::Version::V2,
        || Ok((entry_slice, data)),
        &mut received.into_entries(),
        target.threads,
        &mut gix::progress::Discard,
        &mut out,
        target.interrupt,
        target.hash,
        None,
        data::Version::V2,
    );
    match (indexed, out.error.take()) {
        (Err(_), Some(write)) => Err(target.store_error(write)),
        (Err(e), None) => Err(target.index_error(&e)),
        (Ok(_), _) => out.inner.flush().map_err(|e| target.store_error(e)),
    }
}

/// A writer that keeps its first error: the pack's, told apart from a read
/// error, and the index's, which gix would hide in a message.
struct Noting<W> {
    inner: W,
    error: Option<io::Error>,
}

impl<W> Noting<W> {
    fn note<T>(&mut self, result: io::Result<T>) -> io::Result<T> {
        result.inspect_err(|e| {
            self.error
                .get_or_insert_with(|| io::Error::new(e.kind(), e.to_string()));
        })
    }
}

impl<W: Write> Write for Noting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf);
        self.note(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        // A small index reaches the disk only here.
        let flushed = self.inner.flush();
        self.note(flushed)
    }
}

/// The bytes of one entry of the written pack, for gix's indexer.
fn entry_slice(range: data::EntryRange, file: &data::File) -> Option<&[u8]> {
    file.entry_slice(range)
}

/// Writes a pack that may be thin with gix's bundle writer as it streams
/// in; it appends the bases the deltas name from the store.
fn write_completing_thin(
    input: &mut dyn BufRead,
    target: &Target<'_>,
) -> Result<Option<Written>, Error> {
    let options = gix_pack::bundle::write::Options {
        thread_limit: target.threads,
        ..Default::default()
    };
    let outcome = gix_pack::Bundle::write_to_directory(
        input,
        Some(target.dir),
        &mut gix::progress::Discard,
        target.interrupt,
        Some(target.objects.clone()),
        target.hash,
        options,
    )
    .map_err(|e| target.index_error(&e))?;
    // The keep file guards a fresh pack until refs name its objects; we
    // manage no refs it would wait for, and nothing else would remove it.
    if let Some(keep) = &outcome.keep_path {
        crate::fsutil::remove_any(keep).map_err(|e| target.store_error(e))?;
    }
    Ok(match (outcome.data_path, outcome.index_path) {
        (Some(pack), Some(index)) => Some(Written { pack, index }),
        _ => None,
    })
}

/// Names the pack and index by the pack's checksum, as git does; a pack
/// already there (same name, same bytes) stays.
fn persist(
    pack: NamedTempFile,
    index: NamedTempFile,
    pack_id: &ObjectId,
    dir: &Path,
) -> io::Result<Written> {
    let pack_path = dir.join(format!("pack-{}.pack", pack_id.to_hex()));
    let index_path = pack_path.with_extension("idx");
    // The pack first: a reader finds packs by their index.
    if !pack_path.is_file() {
        pack.persist(&pack_path).map_err(|e| e.error)?;
    }
    if !index_path.is_file() {
        index.persist(&index_path).map_err(|e| e.error)?;
    }
    Ok(Written {
        pack: pack_path,
        index: index_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::test_git::{git, git_bytes_with_input, git_with_input};

    /// `git pack-objects --stdout` of what `revs` names (its stdin).
    fn pack_of(dir: &Path, revs: &str, extra: &[&str]) -> Vec<u8> {
        let args = [&["pack-objects", "--stdout", "--revs", "-q"], extra].concat();
        git_bytes_with_input(dir, &args, revs.as_bytes())
    }

    /// A repository with a first commit of 40 similar text files and a
    /// second that edits two of them: their old versions are delta bases.
    fn upstream() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        git(dir.path(), &["init", "-q", "-b", "main"]);
        let text: String = (0..400).map(|i| format!("line {i} of a page\n")).collect();
        for i in 0..40 {
            std::fs::write(
                dir.path().join(format!("page{i}.md")),
                format!("# {i}\n{text}"),
            )
            .expect("write");
        }
        // Larger than the 64 KiB buffers on either side of the inflater.
        std::fs::write(dir.path().join("big.bin"), noise(300 * 1024)).expect("write");
        git(dir.path(), &["add", "-A"]);
        git(dir.path(), &["commit", "-qm", "one"]);
        for i in [3, 7] {
            let page = dir.path().join(format!("page{i}.md"));
            let old = std::fs::read_to_string(&page).expect("read");
            std::fs::write(&page, old.replace("line 200 ", "line two hundred ")).expect("write");
        }
        git(dir.path(), &["commit", "-qam", "two"]);
        dir
    }

    /// `len` bytes that do not compress.
    fn noise(len: usize) -> Vec<u8> {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    /// Serves `bytes` in 8 KiB reads; calls `at` with the count served so far.
    struct Served<'a, F: FnMut(usize) -> io::Result<()>> {
        bytes: &'a [u8],
        served: usize,
        at: F,
    }

    impl<F: FnMut(usize) -> io::Result<()>> Read for Served<'_, F> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            (self.at)(self.served)?;
            let n = buf.len().min(8192).min(self.bytes.len() - self.served);
            buf[..n].copy_from_slice(&self.bytes[self.served..self.served + n]);
            self.served += n;
            Ok(n)
        }
    }

    struct Store {
        dir: tempfile::TempDir,
        repo: gix::Repository,
        interrupt: AtomicBool,
    }

    impl Store {
        fn new() -> Store {
            let dir = tempfile::tempdir().expect("tempdir");
            git(dir.path(), &["init", "-q", "--bare"]);
            let repo = gix::open(dir.path()).expect("open");
            Store {
                dir,
                repo,
                interrupt: AtomicBool::new(false),
            }
        }

        fn pack_dir(&self) -> PathBuf {
            self.dir.path().join("objects/pack")
        }

        fn write(&self, bytes: &[u8]) -> Result<Option<Written>, Error> {
            self.write_as(bytes, false)
        }

        fn write_as(&self, bytes: &[u8], may_be_thin: bool) -> Result<Option<Written>, Error> {
            self.write_from(&mut io::BufReader::with_capacity(1000, bytes), may_be_thin)
        }

        fn write_from(
            &self,
            input: &mut dyn BufRead,
            may_be_thin: bool,
        ) -> Result<Option<Written>, Error> {
            let dir = self.pack_dir();
            let target = Target {
                dir: &dir,
                hash: Kind::Sha1,
                threads: Some(1),
                objects: &self.repo.objects,
                interrupt: &self.interrupt,
            };
            write(input, may_be_thin, &target)
        }

        fn files(&self) -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(self.pack_dir())
                .expect("pack dir")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }
    }

    /// The index `git index-pack` writes for `pack`.
    fn git_index(pack: &Path) -> Vec<u8> {
        let out = tempfile::tempdir().expect("tempdir");
        let idx = out.path().join("git.idx");
        let idx_arg = idx.to_string_lossy().into_owned();
        let pack_arg = pack.to_string_lossy().into_owned();
        git(out.path(), &["index-pack", "-o", &idx_arg, &pack_arg]);
        std::fs::read(idx).expect("git's idx")
    }

    #[test]
    fn a_pack_of_whole_objects_gets_the_index_git_writes() {
        let upstream = upstream();
        let bytes = pack_of(upstream.path(), "main\n", &["--window=0"]);
        let store = Store::new();
        let written = store.write(&bytes).expect("write").expect("a pack");
        assert_eq!(std::fs::read(&written.pack).expect("pack"), bytes);
        assert_eq!(
            std::fs::read(&written.index).expect("idx"),
            git_index(&written.pack)
        );
        let name = written
            .pack
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert_eq!(store.files(), [name.replace(".pack", ".idx"), name]);
        git(store.dir.path(), &["fsck", "--full", "--no-dangling"]);
    }

    /// A pack already in the store (the same fetch again after a crash
    /// before the refs moved) stays as it is; the new copy is dropped and
    /// leaves no temporary file behind.
    #[test]
    fn a_pack_already_in_the_store_is_kept_and_its_copy_dropped() {
        let upstream = upstream();
        let bytes = pack_of(upstream.path(), "main\n", &["--window=0"]);
        let store = Store::new();
        let first = store.write(&bytes).expect("write").expect("a pack");
        use std::os::unix::fs::MetadataExt;
        // A rename over it would bring another inode.
        let inode = |path: &Path| std::fs::metadata(path).expect("pack").ino();
        let before = inode(&first.pack);
        let files = store.files();
        let again = store.write(&bytes).expect("write again").expect("a pack");
        assert_eq!(again, first);
        assert_eq!(store.files(), files, "one pack, one index, nothing else");
        assert_eq!(
            inode(&first.pack),
            before,
            "the pack in place was not replaced"
        );
        git(store.dir.path(), &["fsck", "--full", "--no-dangling"]);
    }

    /// A pack that holds one whole object twice is taken, as `git
    /// index-pack` takes it without `--strict` (what `git fetch` runs): the
    /// same index, an entry for each copy, and the object reads back.
    /// (`git verify-pack` would refuse it.)
    #[test]
    fn a_pack_holding_an_object_twice_gets_the_index_git_writes() {
        let upstream = upstream();
        let blob = git(upstream.path(), &["rev-parse", "main:page1.md"]);
        let one = git_bytes_with_input(
            upstream.path(),
            &["pack-objects", "--stdout", "-q"],
            format!("{blob}\n").as_bytes(),
        );
        let entry = &one[12..one.len() - 20];
        let mut twice = [&one[..8], &2u32.to_be_bytes()[..], entry, entry].concat();
        let mut hasher = gix::hash::hasher(Kind::Sha1);
        hasher.update(&twice);
        twice.extend_from_slice(hasher.try_finalize().expect("sha1").as_slice());

        let store = Store::new();
        let written = store.write(&twice).expect("write").expect("a pack");
        let content = git(store.dir.path(), &["cat-file", "-p", &blob]);
        let page = std::fs::read_to_string(upstream.path().join("page1.md")).expect("page");
        assert_eq!(content.trim_end(), page.trim_end());
        assert_eq!(
            std::fs::read(&written.index).expect("idx"),
            git_index(&written.pack)
        );
    }

    #[test]
    fn packs_with_deltas_are_indexed_as_git_does() {
        let upstream = upstream();
        // Without --delta-base-offset, pack-objects names bases by id.
        for (extra, kind) in [
            (&[][..], "REF_DELTA"),
            (&["--delta-base-offset"][..], "OFS_DELTA"),
        ] {
            let bytes = pack_of(upstream.path(), "main\n", extra);
            let store = Store::new();
            let written = store.write(&bytes).expect("write").expect("a pack");
            let verify = git(
                store.dir.path(),
                &["verify-pack", "-v", &written.index.to_string_lossy()],
            );
            assert!(
                verify.contains("chain length = 1"),
                "{kind}: no deltas: {verify}"
            );
            assert_eq!(
                std::fs::read(&written.index).expect("idx"),
                git_index(&written.pack),
                "{kind}"
            );
        }
    }

    #[test]
    fn whole_objects_are_not_hashed_after_the_first_delta() {
        let upstream = upstream();
        let bytes = pack_of(upstream.path(), "main\n", &["--delta-base-offset"]);
        let store = Store::new();
        let dir = store.pack_dir();
        let target = Target {
            dir: &dir,
            hash: Kind::Sha1,
            threads: Some(1),
            objects: &store.repo.objects,
            interrupt: &store.interrupt,
        };
        let file = tempfile::tempfile().expect("tempfile");
        let received = receive(&mut &bytes[..], &file, &target).expect("receive");
        let records: Vec<_> = received.records().collect();
        let first_delta = records
            .iter()
            .position(|r| r.header.is_delta())
            .expect("a delta");
        assert!(records[..first_delta].iter().all(|r| !r.id.is_null()));
        let after = &records[first_delta..];
        assert!(
            after.iter().any(|r| !r.header.is_delta()),
            "whole objects after it"
        );
        assert!(after.iter().all(|r| r.id.is_null()));
    }

    #[test]
    fn a_thin_pack_is_completed_from_the_store() {
        let upstream = upstream();
        let store = Store::new();
        store
            .write(&pack_of(upstream.path(), "main~1\n", &[]))
            .expect("first")
            .expect("a pack");
        let thin = pack_of(upstream.path(), "main\n^main~1\n", &["--thin"]);
        // Taken for whole, it lacks its bases.
        let err = store.write(&thin).expect_err("a thin pack is not complete");
        assert!(matches!(err, Error::Index(_)), "{err}");
        let first_only = store.files();
        assert_eq!(first_only.len(), 2, "{first_only:?}");
        let written = store.write_as(&thin, true).expect("thin").expect("a pack");
        let verify = git(
            store.dir.path(),
            &["verify-pack", "-v", &written.index.to_string_lossy()],
        );
        assert!(verify.contains("chain length = 1"), "not thin: {verify}");
        assert!(store.files().iter().all(|f| !f.ends_with(".keep")));
        let tip = git(upstream.path(), &["rev-parse", "main"]);
        git(store.dir.path(), &["update-ref", "refs/heads/main", &tip]);
        git(store.dir.path(), &["fsck", "--full", "--no-dangling"]);
    }

    #[test]
    fn a_damaged_pack_is_refused_and_leaves_nothing() {
        let upstream = upstream();
        let bytes = pack_of(upstream.path(), "main\n", &["--window=0"]);
        let store = Store::new();
        let cases: [(&str, Vec<u8>); 5] = [
            ("ended early", bytes[..bytes.len() / 2].to_vec()),
            ("checksum", {
                let mut b = bytes.clone();
                let last = b.len() - 1;
                b[last] ^= 1;
                b
            }),
            ("", {
                let mut b = bytes.clone();
                let middle = b.len() / 2;
                b[middle] ^= 0x55;
                b
            }),
            ("Object type 5", {
                // The first entry's type bits set to 5, which git reserves.
                let mut b = bytes.clone();
                b[12] = (b[12] & 0x8f) | (5 << 4);
                b
            }),
            ("stated", {
                // The first entry's size, low bits (after the 12-byte header).
                let mut b = bytes.clone();
                b[12] ^= 1;
                b
            }),
        ];
        for (says, damaged) in cases {
            let err = store.write(&damaged).expect_err("damaged");
            assert!(matches!(err, Error::Damaged(_)), "{err}");
            assert!(err.to_string().contains(says), "{err}");
            assert!(store.files().is_empty(), "{:?}", store.files());
        }
    }

    #[test]
    fn an_interrupted_receive_leaves_nothing() {
        let upstream = upstream();
        let bytes = pack_of(upstream.path(), "main\n", &[]);
        let store = Store::new();
        store.interrupt.store(true, Ordering::Relaxed);
        assert!(matches!(store.write(&bytes), Err(Error::Interrupted)));
        assert!(store.files().is_empty());
    }

    #[test]
    fn an_empty_pack_writes_nothing() {
        let upstream = upstream();
        let bytes = pack_of(upstream.path(), "", &[]);
        let store = Store::new();
        assert_eq!(store.write(&bytes).expect("empty"), None);
        assert!(store.files().is_empty());
    }

    #[test]
    fn an_interrupt_stops_the_receive_inside_a_large_object() {
        let dir = tempfile::tempdir().expect("tempdir");
        git(dir.path(), &["init", "-q", "-b", "main"]);
        std::fs::write(dir.path().join("huge.bin"), noise(4 << 20)).expect("write");
        git(dir.path(), &["add", "-A"]);
        git(dir.path(), &["commit", "-qm", "huge"]);
        let bytes = pack_of(dir.path(), "main\n", &[]);
        let store = Store::new();
        let mut served = Served {
            bytes: &bytes,
            served: 0,
            at: |served| {
                if served >= 256 * 1024 {
                    store.interrupt.store(true, Ordering::Relaxed);
                }
                Ok(())
            },
        };
        let result = store.write_from(&mut io::BufReader::new(&mut served), false);
        assert!(matches!(result, Err(Error::Interrupted)), "{result:?}");
        // Stopped within a buffer or two, not at the end of the 4 MiB object.
        assert!(served.served < 512 * 1024, "read {} bytes", served.served);
        assert!(store.files().is_empty(), "{:?}", store.files());
    }

    #[test]
    fn a_connection_lost_mid_pack_says_so_and_leaves_nothing() {
        let upstream = upstream();
        let bytes = pack_of(upstream.path(), "main\n", &[]);
        let store = Store::new();
        let mut served = Served {
            bytes: &bytes,
            served: 0,
            at: |served| match served >= 64 * 1024 {
                true => Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "Connection reset by peer",
                )),
                false => Ok(()),
            },
        };
        let err = store
            .write_from(&mut io::BufReader::new(&mut served), false)
            .expect_err("reset");
        assert_read_error(&err, "Connection reset by peer", &store);
    }

    /// A failure to read the stream, saying `says`, that left nothing behind.
    fn assert_read_error(err: &Error, says: &str, store: &Store) {
        assert!(matches!(err, Error::Read(_)), "{err}");
        assert!(err.to_string().contains(says), "{err}");
        assert!(store.files().is_empty(), "{:?}", store.files());
    }

    #[test]
    fn an_error_from_the_server_mid_pack_is_not_called_damage() {
        let upstream = upstream();
        let bytes = pack_of(upstream.path(), "main\n", &[]);
        let store = Store::new();
        // The sideband reports the server's `ERR` as `Other`, as gix-pack
        // reports an unknown object type: here it comes where an entry's
        // header should.
        struct Refusing;
        impl Read for Refusing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("ERR upload-pack: not our ref"))
            }
        }
        let mut input = io::BufReader::new(Read::chain(&bytes[..12], Refusing));
        let err = store.write_from(&mut input, false).expect_err("refused");
        assert_read_error(&err, "ERR upload-pack: not our ref", &store);
    }

    #[test]
    fn only_a_store_with_objects_may_be_sent_a_thin_pack() {
        let upstream = upstream();
        let store = Store::new();
        let objects = store.dir.path().join("objects");
        assert!(!holds_objects(&objects), "a new store");
        store
            .write(&pack_of(upstream.path(), "main~1\n", &[]))
            .expect("write")
            .expect("a pack");
        assert!(holds_objects(&objects), "a packed object");
        let loose = Store::new();
        git_with_input(
            loose.dir.path(),
            &["hash-object", "-w", "--stdin"],
            b"loose",
        );
        assert!(
            holds_objects(&loose.dir.path().join("objects")),
            "a loose object"
        );
    }

    #[test]
    fn records_span_chunks_and_come_out_as_gix_entries_in_order() {
        let mut received = Received {
            chunks: Vec::new(),
            end: 0,
            pack_id: ObjectId::from_bytes_or_panic(&[7; 20]),
        };
        let count = CHUNK * 2 + 3;
        for i in 0..count as u64 {
            received.push(Record {
                header: data::entry::Header::Blob,
                id: ObjectId::null(Kind::Sha1),
                offset: 12 + i * 10,
                decompressed_size: i,
                crc32: i as u32,
                header_size: 2,
            });
        }
        received.end = 12 + count as u64 * 10;
        assert_eq!(received.chunks.len(), 3);
        let mut entries = received.into_entries();
        assert_eq!(entries.size_hint(), (count, Some(count)));
        let entries: Vec<_> = entries.by_ref().map(|e| e.expect("entry")).collect();
        assert_eq!(entries.len(), count);
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(e.pack_offset, 12 + i as u64 * 10);
            assert_eq!(e.compressed_size, 8, "entry {i}");
            assert_eq!(e.crc32, Some(i as u32));
            assert_eq!(e.trailer.is_some(), i == count - 1, "entry {i}");
        }
    }

    #[test]
    fn offsets_past_2_gib_go_to_the_large_offset_table() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pack-x.idx");
        let id = |byte| ObjectId::from_bytes_or_panic(&[byte; 20]);
        let objects = [(id(1), 7, 12), (id(2), 8, 0x8000_0000), (id(3), 9, 5 << 32)];
        write_index(&File::create(&path).expect("create"), &objects, &id(9)).expect("write");
        let index = gix_pack::index::File::at(&path, Kind::Sha1).expect("gix reads it");
        let read: Vec<_> = index
            .iter()
            .map(|e| (e.oid, e.crc32.expect("crc"), e.pack_offset))
            .collect();
        assert_eq!(read, objects);
    }
}
