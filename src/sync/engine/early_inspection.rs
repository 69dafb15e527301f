//! The spare's inspection, taken beside the download: once a fetch knows a
//! new commit is coming, the retired worktree the pass will rewrite is
//! surveyed on a thread of its own while the pack is negotiated and
//! received (one `lstat` per file of a 40,000-file tree costs as much as the
//! fetch itself). The rewrite uses it if it was taken of the spare it
//! claims; otherwise it inspects after the claim, as before.

use std::path::PathBuf;
use std::thread::JoinHandle;

use crate::git::worktree;
use crate::types::CommitHash;

/// Which spare to inspect, and where it and its admin files are now.
pub(super) struct Target {
    pub hash: CommitHash,
    pub parked: bool,
    pub dir: PathBuf,
    pub admin: PathBuf,
}

type Inspected = Result<worktree::Inspection, worktree::Error>;

/// An inspection running (or done) on its own thread. Dropping it waits
/// for the thread: nothing outlives the pass that started it.
pub(super) struct Early {
    hash: CommitHash,
    parked: bool,
    thread: Option<JoinHandle<Inspected>>,
}

impl Early {
    /// Starts inspecting `target`; `None` if no thread could be started
    /// (the rewrite then inspects after the claim).
    pub fn start(target: Target) -> Option<Self> {
        let Target {
            hash,
            parked,
            dir,
            admin,
        } = target;
        let thread = std::thread::Builder::new()
            .name("inspect-spare".into())
            .spawn(move || {
                let started = std::time::Instant::now();
                let inspected = worktree::inspect(&dir, &admin);
                tracing::debug!(
                    ms = started.elapsed().as_secs_f64() * 1000.0,
                    "inspected the spare beside the fetch"
                );
                inspected
            })
            .ok()?;
        Some(Self {
            hash,
            parked,
            thread: Some(thread),
        })
    }

    /// The inspection, if it was taken of this spare and succeeded.
    pub fn finish(mut self, hash: &CommitHash, parked: bool) -> Option<worktree::Inspection> {
        let done = self.thread.take()?.join().ok()?;
        if self.hash != *hash || self.parked != parked {
            return None;
        }
        match done {
            Ok(inspection) => Some(inspection),
            Err(e) => {
                tracing::debug!(error = %e, "inspecting the retired worktree beside the fetch failed; inspecting it again");
                None
            }
        }
    }
}

impl Drop for Early {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
