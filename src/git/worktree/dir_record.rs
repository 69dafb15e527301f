//! Which directories of a worktree hold nothing but what its index puts
//! there, recorded beside that index (`index.dirs`), so that the next walk
//! of the worktree (once it is the spare to rewrite) `lstat`s the names it
//! wants in them without reading them: reading directories is about a
//! fifth of the walk's time on a 40,000-file tree.
//!
//! A directory is recorded with its stamp (device, inode, mtime, ctime) as
//! the walk found it before reading it, if the walk found nothing else in
//! it, if the rewrite that followed left it as it was, and if its ctime is
//! older than the walk by more than the kernel's coarse clock. Creating,
//! removing or renaming anything in it, or changing the directory itself
//! (even setting its mtime back), then gives it a later ctime, which no
//! call sets back. The record names the index's checksum and is used for
//! that index only.

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::survey::DirStamp;

const HEADER: &str = "git-sidecar-dirs 2";

/// Where the record of the index in `admin` is.
fn path_in(admin: &Path) -> PathBuf {
    admin.join("index.dirs")
}

/// A stamp the walk that started at `walk_started` took may be recorded:
/// its ctime is older than the walk by more than a clock tick, so that
/// any later change gives the directory another one.
pub(crate) fn recordable(stamp: &DirStamp, walk_started: SystemTime) -> bool {
    walk_started
        .checked_sub(super::COARSE_CLOCK)
        .is_some_and(|settled| stamp.changed() < settled)
}

/// Records `dirs` (relative paths, `/`-separated, and stamps) for the index
/// whose checksum is `checksum`, in `admin`. A temporary file renamed over
/// the old record: a reader sees one or the other.
pub(crate) fn write(
    admin: &Path,
    checksum: gix::ObjectId,
    dirs: &[(&[u8], DirStamp)],
) -> io::Result<()> {
    let path = path_in(admin);
    let mut out = Vec::with_capacity(64 + dirs.len() * 64);
    writeln!(out, "{HEADER} {checksum}")?;
    for (dir, s) in dirs {
        // Paths hold no NUL (git refuses them), but any other byte.
        write!(
            out,
            "{} {} {} {} {} {} {} {} ",
            s.dev, s.ino, s.mtime.0, s.mtime.1, s.ctime.0, s.ctime.1, s.size, s.nlink
        )?;
        out.extend_from_slice(dir);
        out.push(0);
    }
    let mut file = crate::fsutil::temp_file_beside(&path)?;
    file.write_all(&out)?;
    file.persist(&path).map_err(|e| e.error)?;
    Ok(())
}

/// The directories recorded in `admin` for the index whose checksum is
/// `checksum`; empty if there is no record, or one for another index, or
/// one that does not parse.
pub(crate) fn read(admin: &Path, checksum: Option<gix::ObjectId>) -> HashMap<Vec<u8>, DirStamp> {
    let Some(checksum) = checksum else {
        return HashMap::new();
    };
    std::fs::read(path_in(admin))
        .ok()
        .and_then(|bytes| parse(&bytes, checksum))
        .unwrap_or_default()
}

fn parse(bytes: &[u8], checksum: gix::ObjectId) -> Option<HashMap<Vec<u8>, DirStamp>> {
    let newline = bytes.iter().position(|&b| b == b'\n')?;
    let header = format!("{HEADER} {checksum}");
    if &bytes[..newline] != header.as_bytes() {
        return None;
    }
    let mut dirs = HashMap::new();
    let mut rest = &bytes[newline + 1..];
    while !rest.is_empty() {
        let end = rest.iter().position(|&b| b == 0)?;
        let (stamp, path) = parse_line(&rest[..end])?;
        dirs.insert(path.to_vec(), stamp);
        rest = &rest[end + 1..];
    }
    Some(dirs)
}

/// `dev ino msec mnsec csec cnsec size nlink path`
fn parse_line(line: &[u8]) -> Option<(DirStamp, &[u8])> {
    let mut fields = line.splitn(9, |&b| b == b' ');
    let mut next = || fields.next().and_then(|f| std::str::from_utf8(f).ok());
    let stamp = DirStamp {
        dev: next()?.parse().ok()?,
        ino: next()?.parse().ok()?,
        mtime: (next()?.parse().ok()?, next()?.parse().ok()?),
        ctime: (next()?.parse().ok()?, next()?.parse().ok()?),
        size: next()?.parse().ok()?,
        nlink: next()?.parse().ok()?,
    };
    let path = fields.next()?;
    Some((stamp, path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn stamp(ctime: (i64, i64)) -> DirStamp {
        DirStamp {
            dev: 2049,
            ino: u64::MAX - 1,
            mtime: (1_700_000_000, 5),
            ctime,
            size: 4096,
            nlink: 3,
        }
    }

    fn id(hex: &str) -> gix::ObjectId {
        gix::ObjectId::from_hex(hex.as_bytes()).expect("hex")
    }

    #[test]
    fn a_record_reads_back_for_its_index_only() {
        let admin = tempfile::tempdir().expect("tempdir");
        let ours = id("0123456789abcdef0123456789abcdef01234567");
        let other = id("89abcdef0123456789abcdef0123456789abcdef");
        let odd: &[u8] = b"a dir/with\nnewline \xff";
        let dirs = [(&b"docs"[..], stamp((1, 2))), (odd, stamp((3, 4)))];
        write(admin.path(), ours, &dirs).expect("write");
        let read_back = read(admin.path(), Some(ours));
        assert_eq!(read_back.len(), 2);
        assert_eq!(read_back.get(&b"docs"[..]), Some(&stamp((1, 2))));
        assert_eq!(read_back.get(odd), Some(&stamp((3, 4))));
        assert!(read(admin.path(), Some(other)).is_empty());
        assert!(read(admin.path(), None).is_empty());
    }

    #[test]
    fn a_damaged_record_is_no_record() {
        let admin = tempfile::tempdir().expect("tempdir");
        let ours = id("0123456789abcdef0123456789abcdef01234567");
        write(admin.path(), ours, &[(&b"docs"[..], stamp((1, 2)))]).expect("write");
        let path = path_in(admin.path());
        let mut bytes = std::fs::read(&path).expect("read");
        bytes.truncate(bytes.len() - 1); // the last path's NUL
        std::fs::write(&path, &bytes).expect("write");
        assert!(read(admin.path(), Some(ours)).is_empty());
        std::fs::write(&path, b"nonsense").expect("write");
        assert!(read(admin.path(), Some(ours)).is_empty());
    }

    /// A directory changed within a clock tick of the walk could change
    /// again and keep its ctime: not recorded.
    #[test]
    fn only_directories_settled_before_the_walk_are_recordable() {
        let walk = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_100);
        let at = |t: SystemTime| {
            let since = t.duration_since(SystemTime::UNIX_EPOCH).expect("after");
            stamp((since.as_secs() as i64, i64::from(since.subsec_nanos())))
        };
        assert!(recordable(&at(walk - Duration::from_secs(60)), walk));
        assert!(recordable(
            &at(walk - super::super::COARSE_CLOCK - Duration::from_millis(1)),
            walk
        ));
        assert!(!recordable(&at(walk - Duration::from_millis(10)), walk));
        assert!(!recordable(&at(walk), walk));
        assert!(!recordable(&at(walk + Duration::from_secs(1)), walk));
    }
}
