//! The time of the last successful sync, kept in `<root>/.git/` so that a
//! restarted process knows how old the published content really is: with the
//! forge down, the content verified at start-up is served (and `/readyz` is
//! 200) for as long as that time is within `--readiness-max-staleness`.
//!
//! One line, `<commit hash> <unix milliseconds> <settings>`, replaced atomically after
//! a publish, after the first success of a process, and after an unchanged
//! pass (it confirmed the remote) once the record is [`REFRESH`] old: idle
//! polls in between write nothing, and the age read after a restart is at
//! most that much older than the truth, never younger. Inside `.git`, so
//! consumers of the root never see it. `<settings>` is a digest of `--repo`
//! and `--ref`: a process started with others (a typo in `--ref`, another
//! repository) must not call the old content fresh. A record without it
//! (from before it was kept) is taken to match.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::fsutil;
use crate::types::CommitHash;

/// The file's name inside `<root>/.git/`.
const FILE: &str = "git-sidecar-last-sync";

/// How stale the record may get while nothing changes.
pub const REFRESH: Duration = Duration::from_secs(60);

/// Whether a success for `hash` at `now` must be recorded, given the last
/// record this process wrote (`None`: it has written none yet).
pub fn due(last: Option<&(CommitHash, Instant)>, hash: &CommitHash, now: Instant) -> bool {
    match last {
        Some((recorded, at)) => recorded != hash || now.duration_since(*at) >= REFRESH,
        None => true,
    }
}

/// Larger files are not ours (a line is about 55 bytes).
const MAX_LEN: u64 = 256;

/// What a successful pass left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The commit that was published when the pass succeeded.
    pub hash: CommitHash,
    pub at: SystemTime,
    /// [`settings_digest`] of the process that wrote it, if recorded.
    pub settings: Option<String>,
}

/// A short digest of `--repo` (as given: credentials are not kept in
/// clear) and `--ref`.
pub fn settings_digest(repo: &str, git_ref: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(repo.as_bytes())
        .chain_update(b"\n")
        .chain_update(git_ref.as_bytes())
        .finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn path(root: &Path) -> PathBuf {
    root.join(".git").join(FILE)
}

/// Replaces the record (write to a temporary file, rename).
pub fn write(root: &Path, record: &Record) -> std::io::Result<()> {
    let millis = record
        .at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let line = match &record.settings {
        Some(settings) => format!("{} {millis} {settings}\n", record.hash),
        None => format!("{} {millis}\n", record.hash),
    };
    fsutil::write_atomic(&path(root), line.as_bytes())
}

/// The record, if there is a well-formed one. Anything else (missing,
/// damaged, written by something else) counts as "age unknown".
pub fn read(root: &Path) -> Option<Record> {
    let path = path(root);
    if std::fs::metadata(&path).ok()?.len() > MAX_LEN {
        return None;
    }
    parse(&std::fs::read_to_string(&path).ok()?)
}

fn parse(text: &str) -> Option<Record> {
    let mut fields = text.split_ascii_whitespace();
    let hash = CommitHash::parse(fields.next()?)?;
    let millis: u64 = fields.next()?.parse().ok()?;
    let settings = fields.next().map(str::to_string);
    if fields.next().is_some() {
        return None;
    }
    let at = UNIX_EPOCH.checked_add(Duration::from_millis(millis))?;
    Some(Record { hash, at, settings })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn a_record_survives_a_round_trip_inside_dot_git() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(root.path().join(".git")).expect("mkdir .git");
        assert_eq!(read(root.path()), None, "no record yet");
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let mut record = Record {
            hash: CommitHash::parse(HASH).expect("a hash"),
            at,
            settings: Some(settings_digest("https://h/r.git", "main")),
        };
        write(root.path(), &record).expect("write");
        assert_eq!(read(root.path()), Some(record.clone()));
        // As written before the settings were kept: still read.
        record.settings = None;
        write(root.path(), &record).expect("write");
        assert_eq!(read(root.path()), Some(record));
        let names: Vec<_> = std::fs::read_dir(root.path().join(".git"))
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, [FILE], "no temporary file left behind");
    }

    #[test]
    fn idle_passes_rewrite_the_record_once_a_minute_a_new_commit_at_once() {
        let hash = CommitHash::parse(HASH).expect("a hash");
        let other = CommitHash::parse(&HASH.replace('0', "f")).expect("a hash");
        let then = Instant::now();
        assert!(due(None, &hash, then), "the first success of a process");
        let last = (hash.clone(), then);
        assert!(!due(Some(&last), &hash, then + Duration::from_secs(59)));
        assert!(due(Some(&last), &hash, then + REFRESH));
        assert!(due(Some(&last), &other, then), "a publish");
    }

    #[test]
    fn the_settings_digest_tells_repos_and_refs_apart() {
        let d = settings_digest("https://h/r.git", "main");
        assert_eq!(d.len(), 16);
        assert_ne!(d, settings_digest("https://h/r.git", "mian"));
        assert_ne!(d, settings_digest("https://h/other.git", "main"));
        assert_eq!(d, settings_digest("https://h/r.git", "main"));
    }

    #[test]
    fn damaged_records_mean_age_unknown() {
        for text in [
            "",
            HASH,
            "nothex 1700000000000\n",
            &format!("{HASH} soon\n"),
            &format!("{HASH} 1 2 3\n"),
            &format!("{HASH} -5\n"),
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
    }
}
