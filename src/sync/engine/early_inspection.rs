//! The spare's inspection, taken before the rewrite needs it. Right after a
//! publish, while the process idles, the new spare is inspected and every
//! directory of it watched ([`Prepared`]); once a fetch knows a new commit
//! is coming, that inspection is taken up again if nothing was reported
//! since, or else the spare is surveyed beside the download ([`Early`]):
//! one `lstat` per file of a 40,000-file tree is about 60 ms of kernel
//! time, more than the fetch. The rewrite uses it if it was taken of the
//! spare it claims; otherwise it inspects after the claim, as before.

use std::path::PathBuf;
use std::thread::JoinHandle;

use crate::git::worktree;
use crate::types::CommitHash;

/// Which spare to inspect, and where it and its admin files are now.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Target {
    pub hash: CommitHash,
    pub parked: bool,
    pub dir: PathBuf,
    pub admin: PathBuf,
    /// The walk's threads (the engine's).
    pub threads: usize,
}

type Inspected = Result<worktree::Inspection, worktree::Error>;

/// A thread whose result is awaited when it is dropped unread: nothing
/// outlives its owner.
struct Joined<T>(Option<JoinHandle<T>>);

impl<T> Joined<T> {
    fn spawn(f: impl FnOnce() -> T + Send + 'static) -> Option<Self>
    where
        T: Send + 'static,
    {
        let thread = std::thread::Builder::new()
            .name("inspect-spare".into())
            .spawn(f)
            .ok()?;
        Some(Self(Some(thread)))
    }

    /// The thread's result (`None` if it panicked).
    fn join(mut self) -> Option<T> {
        self.0.take()?.join().ok()
    }
}

impl<T> Drop for Joined<T> {
    fn drop(&mut self) {
        if let Some(thread) = self.0.take() {
            let _ = thread.join();
        }
    }
}

/// A spare inspected and watched while the process idles. Dropping it
/// waits for its thread.
pub(super) struct Prepared {
    target: Target,
    thread: Joined<Option<worktree::Parked>>,
}

impl Prepared {
    /// Starts inspecting and watching `target` on a thread of its own.
    pub fn start(target: Target) -> Option<Self> {
        let (dir, admin, threads) = (target.dir.clone(), target.admin.clone(), target.threads);
        let thread = Joined::spawn(move || {
            let started = std::time::Instant::now();
            let parked = worktree::inspect_and_park(&dir, &admin, threads);
            tracing::debug!(
                ms = started.elapsed().as_secs_f64() * 1000.0,
                watched = parked.is_some(),
                "inspected the spare while idle"
            );
            // The walk's index and path maps, freed on this thread.
            crate::memory::release_free_memory();
            parked
        })?;
        Some(Self { target, thread })
    }

    /// What it inspects.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The inspection, if it was taken of `target` and still holds.
    fn resume(self, target: &Target) -> Option<worktree::Inspection> {
        let parked = self.thread.join()??;
        if self.target != *target {
            return None;
        }
        parked
            .resume()
            .inspect_err(|e| tracing::debug!(error = %e, "inspecting the spare again"))
            .ok()
    }
}

/// An inspection running (or done) on its own thread. Dropping it waits
/// for the thread: nothing outlives the pass that started it.
pub(super) struct Early {
    hash: CommitHash,
    parked: bool,
    thread: Joined<(Inspected, When)>,
}

/// When the inspection a rewrite uses was taken, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum When {
    WhileIdle,
    BesideTheFetch,
}

impl When {
    pub fn describe(self) -> &'static str {
        match self {
            When::WhileIdle => "while idle",
            When::BesideTheFetch => "beside the fetch",
        }
    }
}

impl Early {
    /// Takes up `prepared` if it was taken of `target` and still holds, or
    /// else starts inspecting `target`; `None` if no thread could be
    /// started (the rewrite then inspects after the claim).
    pub fn start(target: Target, prepared: Option<Prepared>) -> Option<Self> {
        let (hash, parked) = (target.hash.clone(), target.parked);
        let thread = Joined::spawn(move || {
            if let Some(inspection) = prepared.and_then(|p| p.resume(&target)) {
                return (Ok(inspection), When::WhileIdle);
            }
            let started = std::time::Instant::now();
            let inspected = worktree::inspect(&target.dir, &target.admin, target.threads);
            tracing::debug!(
                ms = started.elapsed().as_secs_f64() * 1000.0,
                trusted_dirs = inspected
                    .as_ref()
                    .map_or(0, worktree::Inspection::trusted_dirs),
                "inspected the spare beside the fetch"
            );
            (inspected, When::BesideTheFetch)
        })?;
        Some(Self {
            hash,
            parked,
            thread,
        })
    }

    /// The inspection, if it was taken of this spare and succeeded.
    pub fn finish(self, hash: &CommitHash, parked: bool) -> Option<(worktree::Inspection, When)> {
        let (done, when) = self.thread.join()?;
        if self.hash != *hash || self.parked != parked {
            return None;
        }
        match done {
            Ok(inspection) => Some((inspection, when)),
            Err(e) => {
                tracing::debug!(error = %e, "inspecting the retired worktree beside the fetch failed; inspecting it again");
                None
            }
        }
    }
}
