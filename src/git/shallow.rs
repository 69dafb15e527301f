//! The shallow file (`<git dir>/shallow`): the commits whose parents the
//! store does not hold, one hex id per line. Read and written here for the
//! fetch (which cuts history itself, see [`super::fetch`]) and the
//! compaction (which drops boundaries of commits it deletes).

use std::collections::HashSet;
use std::io;
use std::path::Path;

use gix::ObjectId;

/// The lines of the file (none if there is no file), each parsed.
pub(super) fn read(path: &Path) -> io::Result<Vec<Result<ObjectId, String>>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text
            .lines()
            .map(|line| ObjectId::from_hex(line.trim().as_bytes()).map_err(|e| e.to_string()))
            .collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Replaces the file atomically with `ids` (sorted, as git writes it), or
/// removes it if there are none. Its mtime moves forward: gix rereads the
/// file only when it looks newer than what it read last, which on a coarse
/// clock a rewrite in the same tick would not.
pub(super) fn write(path: &Path, ids: HashSet<ObjectId>) -> io::Result<()> {
    if ids.is_empty() {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    let before = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let mut ids: Vec<_> = ids.into_iter().collect();
    ids.sort();
    let text: String = ids.iter().map(|id| format!("{id}\n")).collect();
    crate::fsutil::write_atomic(path, text.as_bytes())?;
    let after = std::fs::metadata(path)?.modified()?;
    match before {
        Some(before) if after <= before => std::fs::File::options()
            .write(true)
            .open(path)?
            .set_modified(before + std::time::Duration::from_millis(1)),
        _ => Ok(()),
    }
}
