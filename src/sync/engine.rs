//! One sync pass, blocking: poll the remote, check out a new commit into a
//! staging directory, move it into place, swap the link, clean up. Runs on
//! tokio's blocking pool; everything slow honours the [`Budget`].
//!
//! Order matters for crash safety: the link only ever moves to a worktree
//! that is complete on disk, and nothing the link points at is touched
//! except by an atomic directory exchange.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use crate::auth;
use crate::auth::{Access, HttpAuth};
use crate::auth::{Credentials, HttpSettings};
use crate::git::sparse::Patterns;
use crate::git::{
    self, compact, fetch, store, submodules, worktree, Budget, CommitId, Remote, Repo,
    SubmoduleStores,
};
use crate::hooks;
use crate::hooks::ExecHookConfig;
use crate::metrics::Metrics;
use crate::publish::{self, Layout};
use crate::rootlock::RootLock;
use crate::types::{CommitHash, GcMode, SubmoduleMode, SymlinkPolicy};

use super::last_sync;
use std::sync::Arc;

mod early_inspection;
pub mod verification;

/// What the engine needs from the configuration.
#[derive(Debug, Clone)]
pub struct Options {
    pub repo: Remote,
    pub root: PathBuf,
    pub link: PathBuf,
    pub git_ref: String,
    pub depth: u32,
    pub stale_worktree_timeout: Duration,
    /// `--escaping-symlinks`.
    pub escaping_symlinks: SymlinkPolicy,
    /// `--git-gc`: when the object store is compacted.
    pub gc: GcMode,
    /// `--sparse-checkout-file`: only matching paths are written.
    pub sparse: Option<Patterns>,
    /// `--filter`: partial clone; blobs are fetched when a checkout needs them.
    pub filter: Option<git::partial::Filter>,
    /// `--pre-publish-exechook-command`: must exit 0 before the link moves.
    pub pre_publish: Option<ExecHookConfig>,
    /// HTTP(S) credentials; a password file is read at each fetch.
    pub auth: Option<HttpAuth>,
    /// SSH keys, known_hosts and `GIT_SSH_COMMAND`; read at each fetch.
    pub ssh: git::ssh::Options,
    /// `--submodules`.
    pub submodules: SubmoduleMode,
    /// `--credential`, askpass, bearer token, GitHub App, `--git-config` http settings.
    pub access: Access,
    /// `--verify-signatures` and its key files (read at every pass).
    pub verify: crate::verify::Settings,
    /// Threads for pack indexing, checkout and the spare's walk: what the
    /// cgroup's CPU quota pays for (see `app::worker_threads`).
    pub threads: usize,
}

/// The result of a successful pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The published commit is still the wanted one (and intact).
    Unchanged { hash: CommitHash },
    /// A new (or rebuilt) worktree was published.
    Published {
        hash: CommitHash,
        previous: Option<CommitHash>,
        fetched_bytes: u64,
    },
}

impl Outcome {
    pub fn hash(&self) -> &CommitHash {
        match self {
            Outcome::Unchanged { hash } | Outcome::Published { hash, .. } => hash,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Fetch(#[from] fetch::Error),
    /// Credentials could not be had (a password file unreadable, askpass
    /// or GitHub failed).
    #[error(transparent)]
    Auth(#[from] auth::Error),
    #[error(transparent)]
    Worktree(#[from] worktree::Error),
    #[error(transparent)]
    Submodule(#[from] submodules::Error),
    #[error(transparent)]
    Publish(#[from] publish::Error),
    /// The root's lock file was replaced and another instance has it.
    #[error(transparent)]
    RootLock(#[from] crate::rootlock::Error),
    /// The pass panicked, or its thread could not start: the words say which.
    #[error("{0}")]
    Panic(String),
    /// `--verify-signatures` refused the commit (or the tag `--ref` names).
    #[error(
        "signature verification refused {}: {}; {}",
        refused.describe(hash),
        refused.refusal,
        verification::refusal_consequence(hash, published.as_ref())
    )]
    Refused {
        hash: CommitHash,
        refused: Box<verification::Refused>,
        /// What stays published.
        published: Option<CommitHash>,
        /// Verified in this pass (false: a remembered refusal).
        fresh: bool,
    },
    /// A key file could not be read or parsed.
    #[error("signature verification: {0}")]
    Trust(crate::verify::TrustError),
    /// The signed object could not be read from the store.
    #[error("signature verification: {0}")]
    Signed(git::signed::Error),
    #[error("the pre-publish hook refused {hash}; {}: {message}", gate_consequence(published.is_none()))]
    Gate {
        hash: CommitHash,
        message: String,
        /// What stays published (nothing yet: nothing "stays published").
        published: Option<CommitHash>,
        /// When the gate is due to run again for `hash` (its backoff after
        /// the refusal), unless the ref moves first.
        retry_in: Duration,
        /// The gate ran in this pass (false: an earlier refusal still holds).
        ran: bool,
    },
}

/// What a gate refusal means for readers, in the refusal's message.
fn gate_consequence(first: bool) -> &'static str {
    if first {
        "nothing is published until a commit passes the hook (fix the commit or the hook)"
    } else {
        "the previous content stays published"
    }
}

impl Error {
    /// True when the pass stopped because of shutdown, not because something failed.
    pub fn is_interrupted(&self) -> bool {
        matches!(
            self,
            Error::Fetch(fetch::Error::Interrupted) | Error::Worktree(worktree::Error::Interrupted)
        ) || matches!(self, Error::Submodule(e) if e.is_interrupted())
    }
}

/// A refusal of the pre-publish gate.
#[derive(Debug, Clone)]
struct Refusal {
    hash: CommitHash,
    message: String,
    /// When the refusing run ended (the backoff counts from there).
    at: Instant,
}

/// State kept between passes.
pub struct Engine {
    opts: Options,
    layout: Layout,
    repo: Option<Repo>,
    /// The commit the pre-publish gate refused last: while the remote points
    /// at it, the gate runs again once its backoff has passed since the
    /// refusal (as git-sync's hook runner retries); passes in between
    /// report the refusal without rebuilding anything.
    rejected: Option<Refusal>,
    /// For the gate's `git_sync_hook_run_count_total{name="pre-publish-exechook"}`.
    metrics: Arc<Metrics>,
    /// The depth recorded in `<root>/.git/config` (read once when opening).
    fetched_depth: Option<u32>,
    /// The worktree this process built or verified file by file: only such a
    /// worktree, once retired, is rewritten for a later commit.
    trusted: Option<CommitHash>,
    /// A retired, trusted worktree kept on disk to be rewritten in place for
    /// the next commit (cost follows the change instead of the tree).
    spare: Option<Spare>,
    /// The spare, inspected and watched since the last publish.
    prepared: Option<early_inspection::Prepared>,
    /// The executable's pages were given back before a full checkout
    /// (atomic: set while the open repository borrows the engine).
    code_released: std::sync::atomic::AtomicBool,
    /// The commits the last clean-up kept (worktrees on disk, the published one).
    kept: Vec<CommitId>,
    /// The last signature verdict (`--verify-signatures`), not repeated while
    /// the commit and the key files stay the same.
    signatures: Option<verification::Memory>,
    /// Estimated bytes of objects no kept commit needs since the last compaction.
    garbage_bytes: u64,
    /// Shallow lines the last trim left (see [`compact::trim_shallow`]).
    shallow_lines: usize,
    /// The submodule stores the worktree just published uses, for the upkeep after it.
    submodule_stores: Option<SubmoduleStores>,
    /// Credentials and http settings per URL (keeps the GitHub token cache).
    resolver: Arc<auth::Resolver>,
    /// The last success this process recorded in the root, and when.
    recorded: Option<(CommitHash, Instant)>,
    /// Held for as long as any engine (or a pass still running) may write:
    /// all the clean-up of "stale" things relies on it.
    root_lock: Arc<RootLock>,
}

impl Engine {
    /// Only the holder of the root's lock can make an engine.
    pub fn new(opts: Options, metrics: Arc<Metrics>, root_lock: RootLock) -> Result<Self, Error> {
        let resolver = Arc::new(auth::Resolver::new(
            opts.repo.clone(),
            opts.auth.clone(),
            opts.access.clone(),
            metrics.clone(),
        ));
        Ok(Self::with_resolver(
            opts,
            metrics,
            resolver,
            Arc::new(root_lock),
        ))
    }

    /// A new engine with the same options, for after a panic lost the old one.
    pub fn fresh(&self) -> Self {
        Self::with_resolver(
            self.opts.clone(),
            self.metrics.clone(),
            self.resolver.clone(),
            self.root_lock.clone(),
        )
    }

    fn with_resolver(
        opts: Options,
        metrics: Arc<Metrics>,
        resolver: Arc<auth::Resolver>,
        root_lock: Arc<RootLock>,
    ) -> Self {
        Self {
            layout: Layout::new(opts.root.clone(), opts.link.clone()),
            opts,
            repo: None,
            rejected: None,
            metrics,
            fetched_depth: None,
            trusted: None,
            spare: None,
            prepared: None,
            code_released: std::sync::atomic::AtomicBool::new(false),
            kept: Vec::new(),
            signatures: None,
            garbage_bytes: 0,
            shallow_lines: 0,
            submodule_stores: None,
            resolver,
            recorded: None,
            root_lock,
        }
    }

    /// See [`super::SyncPass::accounts_for`].
    pub fn accounts_for(&self, announced: &str) -> bool {
        let published = self.layout.current().and_then(|h| CommitId::of(&h));
        match (published, self.repo.as_ref()) {
            (Some(published), Some(repo)) => repo.accounts_for(published, announced),
            _ => false,
        }
    }

    /// The repository opened by the first pass.
    fn open_repo(&self) -> Result<&Repo, Error> {
        self.repo.as_ref().ok_or_else(|| {
            Error::Store(store::Error::Open {
                path: self.opts.root.clone(),
                message: "repository not open".into(),
            })
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// One pass. The first pass of a process also repairs the root and
    /// checks the published worktree file by file.
    pub fn sync_once(&mut self, budget: &Budget) -> Result<Outcome, Error> {
        // Nothing in the root is touched without the lock.
        if self.root_lock.keep()? == crate::rootlock::Kept::Retaken {
            tracing::warn!(
                root = %self.opts.root.display(),
                "the root's lock file was removed (with the root?); locked it again, and the root \
                 is opened, checked and repaired as at start-up"
            );
            self.repo = None;
        }
        let first_pass = self.repo.is_none();
        if first_pass {
            self.open()?;
        }
        let before = self.before_pass();
        let result = self.sync_with_repo(first_pass, budget);
        if let Ok(outcome) = &result {
            if last_sync::due(self.recorded.as_ref(), outcome.hash(), Instant::now()) {
                self.record_success(outcome.hash());
            }
        }
        // A refused commit's objects stay in the store, so that the next
        // fetch finds the ref unchanged instead of downloading them again.
        if result.is_err() && !matches!(result, Err(Error::Refused { .. })) {
            self.undo(before);
        }
        let local_trouble = match &result {
            Err(Error::Store(_) | Error::Worktree(_) | Error::Publish(_)) => true,
            // A received pack that cannot be indexed may rest on a damaged
            // object of ours: read in full, the store is emptied if so, and
            // the next fetch brings everything again.
            Err(Error::Fetch(e)) if e.store_may_be_damaged() => {
                let partial = self.opts.filter.is_some();
                let checked = self
                    .repo
                    .as_ref()
                    .map(|r| r.empty_if_damaged(partial, budget));
                if let Some(Err(e)) = checked {
                    tracing::warn!(error = %e, "could not empty the damaged object store");
                }
                true
            }
            _ => false,
        };
        if local_trouble {
            // Next pass re-opens, repairs and re-verifies. (A network
            // failure leaves nothing to repair.)
            self.repo = None;
        }
        result
    }

    /// Notes the time of this success in the root, for [`Engine::restore`]
    /// after a restart. Failing to is logged: the sync itself succeeded.
    fn record_success(&mut self, hash: &CommitHash) {
        let record = last_sync::Record {
            hash: hash.clone(),
            at: SystemTime::now(),
            settings: Some(self.settings_digest()),
        };
        self.recorded = Some((hash.clone(), Instant::now()));
        if let Err(e) = last_sync::write(&self.opts.root, &record) {
            tracing::warn!(error = %e, "could not record the time of this sync in the root; after a restart, readiness waits for a sync");
        }
    }

    /// At start-up, before any network: when the published worktree is the
    /// one the last recorded success published and it verifies against its
    /// index, the time of that success (how old the content really is).
    /// Opens the repository as a first pass would; if the check fails, the
    /// first pass repeats it and repairs what it must.
    pub fn restore(&mut self, budget: &Budget) -> Option<SystemTime> {
        let record = last_sync::read(&self.opts.root)?;
        let Some(current) = self.layout.current() else {
            // Turned elsewhere while no process ran (by hand, or by a
            // consumer): set again by the next successful sync, not before.
            // Missing is no news (a new --link, say).
            if self.layout.link().symlink_metadata().is_ok() {
                tracing::warn!(
                    link = %self.layout.link().display(),
                    recorded = %record.hash,
                    "--link does not point at a worktree of this root, as the last sync left it; \
                     it is set again at the next successful sync, and this process is not ready until then"
                );
            }
            return None;
        };
        let same_settings = record
            .settings
            .as_ref()
            .is_none_or(|s| *s == self.settings_digest());
        if current != record.hash || !same_settings {
            return None;
        }
        // A clock behind the one that wrote the record (another node's):
        // the content is as fresh as it can be, not of unknown age.
        let at = record.at.min(SystemTime::now());
        let commit = CommitId::of(&current)?;
        if let Err(e) = self.open() {
            tracing::debug!(error = %crate::types::error_chain(&e), "could not open the root at start-up");
            self.repo = None;
            return None;
        }
        if self.worktree_is_healthy(&current, commit, true) {
            return Some(at);
        }
        // Changed on disk while no process ran: rebuilt from the store, it
        // is again the content the record vouches for (as it would be at
        // the next restart), so an outage does not keep it unready.
        if let Err(reason) = self.repairable(&current, commit, budget) {
            tracing::warn!(
                hash = %current,
                reason,
                "the published worktree does not match its commit (changed on disk while no process \
                 ran), and is not rebuilt now; it stays published as it is until the next successful \
                 sync, and this process is not ready until then"
            );
        } else if self.rebuild_from_the_store(&current, commit, budget) {
            tracing::info!(hash = %current, "repaired the published worktree from the store at start-up");
            return Some(at);
        }
        self.repo = None;
        None
    }

    /// What a success is recorded under: `--repo` and `--ref`.
    fn settings_digest(&self) -> String {
        last_sync::settings_digest(self.opts.repo.expose(), &self.opts.git_ref)
    }

    fn open(&mut self) -> Result<(), Error> {
        let depth = store::recorded_depth(&self.opts.root).unwrap_or(self.opts.depth);
        let (repo, opened) = Repo::open_or_init(
            &self.opts.root,
            &origin_url(&self.opts.repo),
            depth,
            self.filter_spec(),
            self.opts.threads,
        )?;
        self.fetched_depth = Some(depth);
        if opened.repaired() {
            tracing::info!(
                reinitialized = opened.reinitialized,
                objects_reset = opened.objects_reset,
                stale_locks = opened.stale_locks,
                "repaired the root repository"
            );
        }
        self.layout.prepare()?;
        if self.spare.is_none() {
            // A spare parked by an earlier run (`--one-time` from cron, a
            // restart): its files are judged against its index as it is
            // rewritten, like this process's own spare.
            self.spare = self.adopt_parked_spare();
        }
        if !self.spare.as_ref().is_some_and(|s| s.parked) {
            // Any other leftover spare goes (the clean-up retries what
            // fails here).
            if let Err(e) = publish::remove_any(&self.layout.spare()) {
                tracing::warn!(error = %e, "could not remove a leftover spare");
            }
            if let Err(e) = store::discard_spare_admin(&self.opts.root) {
                tracing::warn!(error = %e, "could not remove a leftover spare's admin files");
            }
        }
        self.repo = Some(repo);
        if self.kept.is_empty() {
            self.kept = self.keep_set(None);
        }
        Ok(())
    }

    /// The store before a pass, for [`Engine::undo`].
    fn before_pass(&self) -> BeforePass {
        BeforePass {
            checkpoint: store::Checkpoint::take(&self.opts.root.join(".git")),
            published: self.layout.current(),
            published_in_store: self.published_in_store(),
        }
    }

    fn published_in_store(&self) -> bool {
        let current = self.layout.current();
        let id = current.and_then(|h| CommitId::of(&h));
        match (&self.repo, id) {
            (Some(repo), Some(id)) => repo.has_commit(id),
            _ => false,
        }
    }

    /// After a failed pass, deletes the packs it fetched and restores the
    /// shallow file and recorded depth, so that retries and restarts start
    /// from the same store. Not with `--depth=0`: a fetch then never downloads
    /// objects it has, so the pack is what lets the next pass finish (say,
    /// a checkout that timed out), and is never duplicated. Never when the
    /// published content may need the new objects: the link moved before
    /// the pass failed (an fsync error after the rename), or the pass
    /// brought the published commit back into an emptied store.
    fn undo(&mut self, before: BeforePass) {
        let moved = self.layout.current() != before.published;
        let restored = !before.published_in_store && self.published_in_store();
        if self.opts.depth == 0 || moved || restored {
            return;
        }
        let checkpoint = before.checkpoint;
        let undone = checkpoint.roll_back();
        if undone.is_empty() {
            return;
        }
        tracing::info!(
            undone = ?crate::logging::json(&undone),
            "removed what the failed sync wrote into the object store"
        );
        self.fetched_depth =
            Some(store::recorded_depth(&self.opts.root).unwrap_or(self.opts.depth));
        // The object database handle still lists the deleted packs.
        self.unmap_packs();
    }

    fn sync_with_repo(&mut self, first_pass: bool, budget: &Budget) -> Result<Outcome, Error> {
        let current = self.layout.current();
        let current_id = current.as_ref().and_then(CommitId::of);
        let depth_changed = self.fetched_depth != Some(self.opts.depth);
        let mut laps = super::timing::Laps::start();
        let prepared = std::cell::RefCell::new(self.prepared.take());
        let repo = self.open_repo()?;

        // While a refusal holds, a remote still at the refused commit is "unchanged".
        let have = self
            .signatures
            .as_ref()
            .and_then(verification::Memory::refused_commit)
            .or(current_id);

        // A full SHA that is already published needs no network at all.
        let pinned = CommitId::parse(&self.opts.git_ref);
        // Once the refs show a new commit, the spare is inspected beside the download.
        let early = std::cell::RefCell::new(None);
        let start_inspection = || {
            *early.borrow_mut() = self.inspect_spare(prepared.borrow_mut().take());
        };
        let polled = match pinned {
            Some(id) if current_id == Some(id) && repo.has_commit(id) && !depth_changed => {
                Ok(fetch::Polled {
                    outcome: fetch::Outcome::Unchanged(id),
                    tag: None,
                })
            }
            // Errors go to the repair below, credentials' too.
            _ => (|| {
                let credentials = self.credentials_for(&self.opts.repo, budget)?;
                let http = self.http_settings_for(&self.opts.repo)?;
                Ok(repo.fetch(
                    &fetch::Options {
                        url: &self.opts.repo,
                        git_ref: &self.opts.git_ref,
                        depth: self.opts.depth,
                        have,
                        force: depth_changed,
                        credentials: credentials.as_ref(),
                        ssh: &self.opts.ssh,
                        http: &http,
                        git_config: &self.opts.access.git_config,
                        filter: self.opts.filter.as_ref(),
                        on_change: Some(&start_inspection),
                    },
                    budget,
                )?)
            })(),
        };
        // No change: what was prepared while idle still waits for one.
        self.prepared = prepared.into_inner();
        let polled = match polled {
            Ok(polled) => polled,
            Err(e) => {
                drop(early);
                self.repair_without_the_remote(current.as_ref(), first_pass, budget);
                return Err(e);
            }
        };
        let fetch::Polled {
            outcome: fetched,
            tag,
        } = polled;
        laps.lap("fetch");
        let (commit, fetched_bytes) = match fetched {
            fetch::Outcome::Unchanged(id) => (id, None),
            fetch::Outcome::Fetched { commit, pack_bytes } => {
                // Counted as received, whatever the pass does next: a
                // checkout that fails (a full disk) fetches it again.
                self.metrics.add_fetched_bytes(pack_bytes);
                (commit, Some(pack_bytes))
            }
        };
        if depth_changed {
            store::record_depth(
                &self.opts.root,
                &origin_url(&self.opts.repo),
                self.opts.depth,
                self.filter_spec(),
            )?;
            self.fetched_depth = Some(self.opts.depth);
        }
        let hash = commit.hash().ok_or_else(|| store::Error::Open {
            path: self.opts.root.clone(),
            message: format!("unexpected object id {commit}"),
        })?;

        // Before anything is written (also for the published commit: the
        // key files may have changed since it was published).
        self.open_repo()?;
        laps.lap("open");
        if let Some(repo) = self.repo.take() {
            let checked = self.check_signatures(&repo, commit, &hash, tag, current.as_ref());
            self.repo = Some(repo);
            checked?;
        }
        // Key files read and signatures checked (the benchmark reads it).
        laps.lap("verify");

        let healthy =
            current.as_ref() == Some(&hash) && self.worktree_is_healthy(&hash, commit, first_pass);
        if healthy {
            // Even after a fetch for the published commit (a depth change,
            // objects restored) the intact worktree is kept, not rebuilt under readers.
            self.upkeep(commit, &hash, budget, depth_changed);
            return Ok(Outcome::Unchanged { hash });
        }
        if current.as_ref() == Some(&hash) {
            self.log_rebuild(&hash);
        }
        let early = early.into_inner();
        self.build_and_publish(commit, &hash, current.as_ref(), budget, &mut laps, early)?;
        if let Some(prev) = current.as_ref().filter(|p| **p != hash) {
            self.layout.mark_retired(prev);
            // A first pass (`--one-time`, a restart) did not build `prev`:
            // it becomes the spare all the same if whole, so the next run's
            // cost follows its change (see `adopt_parked_spare`).
            if self.trusted.as_ref() == Some(prev) || (first_pass && self.looks_whole(prev)) {
                self.spare = Some(Spare {
                    hash: prev.clone(),
                    parked: false,
                });
            }
        }
        self.trusted = Some(hash.clone());
        self.upkeep(commit, &hash, budget, depth_changed);
        if let Some(repo) = &self.repo {
            // The next start-up then skips its walk of the whole history.
            let depth = self.fetched_depth.unwrap_or(self.opts.depth);
            repo.record_verified(depth, self.opts.filter.is_some());
        }
        self.unmap_packs();
        laps.lap("upkeep");
        laps.log("pass timings");
        Ok(Outcome::Published {
            hash,
            previous: current,
            fetched_bytes: fetched_bytes.unwrap_or(0),
        })
    }

    /// Builds the worktree of `commit` (from the spare `early` inspected,
    /// if any), lets the pre-publish gate judge it and points the link at
    /// it.
    fn build_and_publish(
        &mut self,
        commit: CommitId,
        hash: &CommitHash,
        current: Option<&CommitHash>,
        budget: &Budget,
        laps: &mut super::timing::Laps,
        early: Option<early_inspection::Early>,
    ) -> Result<(), Error> {
        self.held_by_gate(hash, current)?;
        let submodule_stores = self.build_worktree(commit, hash, current, budget, laps, early)?;
        laps.lap("build");
        self.run_gate(hash, current)?;
        self.layout.publish(hash)?;
        laps.lap("publish");
        self.submodule_stores = Some(submodule_stores);
        Ok(())
    }

    /// After a failed fetch: if the published worktree was deleted or
    /// changed on disk, rebuilds it from the store, which holds its commit,
    /// rather than serving a broken tree until the remote answers again.
    /// Not when signatures are verified and this process has not verified
    /// that commit itself (after a restart): the verdict may need the
    /// remote's tag. Whatever happens, the pass still fails with the fetch's
    /// error.
    fn repair_without_the_remote(
        &mut self,
        current: Option<&CommitHash>,
        first_pass: bool,
        budget: &Budget,
    ) {
        let Some((hash, commit)) = current.and_then(|h| Some((h, CommitId::of(h)?))) else {
            return;
        };
        if self.repairable(hash, commit, budget).is_ok()
            && !self.worktree_is_healthy(hash, commit, first_pass)
            && self.rebuild_from_the_store(hash, commit, budget)
        {
            tracing::info!(%hash, "repaired the published worktree from the store; the sync itself still fails");
        }
    }

    /// Whether the published `hash` may be rebuilt without the remote: in
    /// time (a pass out of time, a remote that hangs, or shutting down
    /// leaves it to a pass that fails sooner), in the store, and verified
    /// by this process when signatures are (the verdict may need the
    /// remote's tag). `Err` says why not.
    fn repairable(
        &self,
        hash: &CommitHash,
        commit: CommitId,
        budget: &Budget,
    ) -> Result<(), &'static str> {
        if !self.repo.as_ref().is_some_and(|r| r.has_commit(commit)) {
            Err("the store no longer holds its commit: it cannot be rebuilt without the remote")
        } else if self.opts.verify.mode != crate::verify::Mode::None
            && self.trusted.as_ref() != Some(hash)
        {
            Err("--verify-signatures: its signature is checked again first, at the next sync")
        } else if budget.is_expired() || budget.is_interrupted() {
            Err("no time was left to rebuild it")
        } else {
            Ok(())
        }
    }

    /// Rebuilds and publishes the published `hash`, found missing or
    /// changed on disk, from the store (the caller checked
    /// [`Self::repairable`]): whether it now is whole.
    fn rebuild_from_the_store(
        &mut self,
        hash: &CommitHash,
        commit: CommitId,
        budget: &Budget,
    ) -> bool {
        self.log_rebuild(hash);
        // A gate's refusal of another commit keeps its backoff.
        let refused = self.rejected.clone();
        let mut laps = super::timing::Laps::start();
        let current = Some(hash.clone());
        let rebuilt =
            self.build_and_publish(commit, hash, current.as_ref(), budget, &mut laps, None);
        if refused.as_ref().is_some_and(|r| r.hash != *hash) {
            self.rejected = refused;
        }
        match rebuilt {
            Ok(()) => {
                self.trusted = Some(hash.clone());
                true
            }
            Err(e) => {
                tracing::warn!(%hash, error = %crate::types::error_chain(&e), "could not repair the published worktree");
                false
            }
        }
    }

    /// The credentials for a connection to `url` (`--repo` or any other,
    /// e.g. a submodule's), resolved now: password files are read, askpass
    /// asked, a GitHub token minted when due. See [`auth`].
    pub fn credentials_for(
        &self,
        url: &Remote,
        budget: &Budget,
    ) -> Result<Option<Credentials>, Error> {
        Ok(self.resolver.credentials_for(url, budget)?)
    }

    /// Proxy, TLS and extra headers (the bearer token for `--repo`'s host)
    /// for a connection to `url`.
    pub fn http_settings_for(&self, url: &Remote) -> Result<HttpSettings, Error> {
        Ok(self.resolver.http_settings_for(url)?)
    }

    /// Moves the branch to the published commit and cleans up. Runs once the
    /// link points where it should, so a failure here is logged, never turned
    /// into a failed sync (that would hide a successful publish from hooks
    /// and could crash-loop on, say, an undeletable old worktree).
    fn upkeep(
        &mut self,
        commit: CommitId,
        hash: &CommitHash,
        budget: &Budget,
        force_compact: bool,
    ) {
        if let Some(repo) = self.repo.as_ref() {
            if repo.branch_commit() != Some(commit) {
                if let Err(e) = repo.set_branch(commit) {
                    tracing::warn!(error = %e, "could not move the git-sync branch");
                }
            }
        }
        if let Err(e) = self.cleanup(budget, hash, force_compact) {
            tracing::warn!(error = %crate::types::error_chain(&e), "cleanup after the sync failed; will retry");
            self.repo = None;
        }
    }

    /// Drops the object database's memory maps (a checkout touches much of
    /// every pack, and those pages would stay resident while idle) by opening
    /// the repository afresh. Idle polls only talk refs with the remote.
    fn unmap_packs(&mut self) {
        if self.repo.is_none() {
            return;
        }
        match Repo::open(&self.opts.root, self.opts.threads) {
            Ok(repo) => self.repo = Some(repo),
            Err(e) => {
                tracing::warn!(error = %e, "could not reopen the repository; will repair on the next pass");
                self.repo = None;
            }
        }
    }

    /// `Err` while an earlier refusal of `hash` holds (its backoff has not
    /// passed yet). Once the ref has moved, the refusal is forgotten: the new
    /// commit is tried at once, and a later return to the refused one is
    /// judged afresh. When the backoff has passed, the pass goes on and
    /// rebuilds the worktree (the gate may have written into the old one)
    /// and runs the gate again.
    fn held_by_gate(
        &mut self,
        hash: &CommitHash,
        published: Option<&CommitHash>,
    ) -> Result<(), Error> {
        if self.rejected.as_ref().is_some_and(|r| r.hash != *hash) {
            self.rejected = None;
        }
        let (Some(refusal), Some(gate)) = (&self.rejected, &self.opts.pre_publish) else {
            return Ok(());
        };
        let since = refusal.at.elapsed();
        if since >= gate.backoff {
            return Ok(());
        }
        Err(Error::Gate {
            hash: hash.clone(),
            message: refusal.message.clone(),
            published: published.cloned(),
            retry_in: gate.backoff - since,
            ran: false,
        })
    }

    /// The pre-publish gate, in the new worktree, before the link moves.
    fn run_gate(&mut self, hash: &CommitHash, previous: Option<&CommitHash>) -> Result<(), Error> {
        let Some(gate) = &self.opts.pre_publish else {
            return Ok(());
        };
        let backoff = gate.backoff;
        let publish = hooks::Publish {
            hash: hash.to_string(),
            previous: previous.map(|p| p.to_string()),
            git_ref: self.opts.git_ref.clone(),
            repo_redacted: self.opts.repo.redacted(),
            worktree: self.layout.worktree(hash),
        };
        let verdict = hooks::run_gate(gate, &publish);
        self.metrics
            .hook_run("pre-publish-exechook", verdict.is_ok());
        verdict.map_err(|message| {
            self.rejected = Some(Refusal {
                hash: hash.clone(),
                message: message.clone(),
                at: Instant::now(),
            });
            Error::Gate {
                hash: hash.clone(),
                message,
                published: previous.cloned(),
                retry_in: backoff,
                ran: true,
            }
        })?;
        self.rejected = None;
        Ok(())
    }

    fn worktree_is_healthy(&mut self, hash: &CommitHash, commit: CommitId, deep: bool) -> bool {
        let path = self.layout.worktree(hash);
        let admin = store::admin_dir(&self.opts.root, hash.as_str());
        if deep {
            let threads = self.opts.threads;
            let sparse = self.opts.sparse.as_ref();
            let intact = worktree::matches_index(&path, &admin, commit, sparse, threads)
                && submodules::intact(&path, &admin, self.opts.submodules, threads);
            if intact {
                self.trusted = Some(hash.clone());
            }
            intact
        } else {
            worktree::looks_intact(&path, &admin, commit, self.opts.sparse.as_ref())
        }
    }

    /// Says why the published `hash` is rebuilt: a change of settings (the
    /// sparse patterns, `--submodules`, or a tree git-sync built) is no
    /// alarm; anything else is a change on disk nobody asked for.
    fn log_rebuild(&self, hash: &CommitHash) {
        let admin = store::admin_dir(&self.opts.root, hash.as_str());
        let path = self.layout.worktree(hash);
        let settings = if !path.join(".git").is_file() {
            None
        } else if !worktree::built_with(&admin, self.opts.sparse.as_ref()) {
            Some("it was checked out with other sparse-checkout patterns (or none)")
        } else if !submodules::built_for(&admin, self.opts.submodules) {
            Some("its submodules were checked out under another --submodules, or by git-sync")
        } else {
            None
        };
        match settings {
            Some(reason) => tracing::info!(%hash, "rebuilding the published worktree: {reason}"),
            None => {
                tracing::warn!(%hash, "published worktree is missing or was modified; rebuilding it")
            }
        }
    }

    /// The retired `prev` and its admin files are whole (no file looked
    /// at: a rewrite verifies each file it keeps, see `adopt_parked_spare`).
    fn looks_whole(&self, prev: &CommitHash) -> bool {
        CommitId::of(prev).is_some_and(|id| {
            let admin = store::admin_dir(&self.opts.root, prev.as_str());
            worktree::looks_intact(
                &self.layout.worktree(prev),
                &admin,
                id,
                self.opts.sparse.as_ref(),
            )
        })
    }

    /// The spare an earlier process parked, if it and its admin files are
    /// whole. Not verified here, and need not be: a rewrite is itself the
    /// file-by-file check (the survey's exactness test): it keeps only files
    /// whose stat data (inode, size, mtime, ctime, mode, owner) are as the
    /// index recorded at checkout, comparing content when that is racy, and
    /// whose blob and mode are unchanged; it deletes everything else.
    fn adopt_parked_spare(&self) -> Option<Spare> {
        if !self.layout.spare().is_dir() {
            return None;
        }
        let hash =
            store::parked_spare_commit(&self.opts.root).and_then(|h| CommitHash::parse(&h))?;
        Some(Spare { hash, parked: true })
    }

    /// Builds (or rewrites) the worktree of `commit` and checks its
    /// submodules out; returns the submodule stores it uses.
    fn build_worktree(
        &mut self,
        commit: CommitId,
        hash: &CommitHash,
        current: Option<&CommitHash>,
        budget: &Budget,
        laps: &mut super::timing::Laps,
        early: Option<early_inspection::Early>,
    ) -> Result<SubmoduleStores, Error> {
        // A pass that found no new commit (rebuilding a damaged published
        // tree, a commit refused before and now verified) takes up what was
        // prepared while idle here.
        let early = early.or_else(|| {
            let prepared = self.prepared.take();
            self.inspect_spare(prepared)
        });
        let spare = self.spare.take();
        let repo = self.open_repo()?;
        self.fetch_missing_blobs(repo, commit, budget)?;
        // Waited for before the plan, which starts from its index, and
        // before the claim renames the spare under the inspecting threads.
        let inspected = match (&spare, early) {
            (Some(old), Some(early)) => early.finish(&old.hash, old.parked),
            _ => None,
        };
        laps.lap("spare");
        let base = spare.as_ref().zip(inspected.as_ref());
        let base = base.and_then(|(old, (i, _))| CommitId::of(&old.hash).map(|id| (i, id)));
        // Refusals (unsafe paths, escaping symlinks) happen before any write.
        let planned = self.plan(repo, commit, base)?;
        laps.lap("plan");
        if !planned.skipped_links.is_empty() {
            tracing::warn!(
                %hash,
                links = ?crate::logging::json(&planned.skipped_links),
                "left out symlinks that point outside the worktree (--escaping-symlinks=skip)"
            );
        }
        let place = self.placement(hash);
        self.layout.discard(&place.staging)?;
        // How the spare was inspected, for the log: while idle, beside the
        // fetch, after the claim, or not reused.
        let mut inspection = "none";
        let built = match spare.filter(|old| self.claim(old, hash)) {
            Some(old) => {
                let old_admin = self.spare_admin(&old);
                // Moved since, and waited on: used only if nothing in it changed.
                let inspected = inspected.and_then(|(mut i, when)| {
                    i.still_describes(&place.staging).then_some((i, when))
                });
                inspection = inspected
                    .as_ref()
                    .map_or("after the claim", |(_, when)| when.describe());
                let inspected = inspected.map(|(i, _)| i);
                let reuse = Reuse {
                    old_admin: &old_admin,
                    inspected,
                    published: current.and_then(CommitId::of),
                };
                self.rewrite_or_checkout(repo, planned, commit, &place, reuse, budget)
            }
            None => {
                // The first full checkout is a first sync's peak of memory:
                // the whole pack mapped while every blob is written. The code
                // that fetched and indexed it is done; hand it back first.
                let released = &self.code_released;
                if !released.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    super::release_code_pages(
                        "gave the executable's pages back before the first full checkout",
                    );
                }
                repo.materialize(planned, &place, budget)
                    .map_err(Error::from)
            }
        };
        laps.lap("checkout");
        let built = built.and_then(|mut built| {
            let populated = self.populate_submodules(repo, commit, &place, budget, &mut built)?;
            Ok((built, populated))
        });
        laps.lap("submodules");
        let (built, populated) = match built {
            Ok(built) => built,
            Err(e) => {
                let _ = self.layout.discard(&place.staging);
                // Its admin files too (git's `worktrees/<sha>`): they name
                // objects the failed pass may have rolled back, and `git
                // fsck` (git-sync's start-up check) fails on them. Not the
                // published tree's, when rebuilding that one failed.
                if current != Some(hash) {
                    let _ = publish::remove_any(&place.admin_dir);
                }
                return Err(e);
            }
        };
        tracing::debug!(%hash, written = built.written, kept = built.kept, inspection, "worktree built");
        if populated.written + populated.kept > 0 {
            tracing::debug!(%hash, written = populated.written, kept = populated.kept, "submodules checked out");
        }
        self.layout.install(hash)?;
        laps.lap("install");
        // With --submodules=off no store is in use: the upkeep deletes any left over.
        Ok(populated.stores)
    }

    /// Checks the submodules out into the freshly built worktree (with
    /// `--submodules=off` it only empties gitlink directories a rewritten
    /// worktree had written into).
    fn populate_submodules(
        &self,
        repo: &Repo,
        commit: CommitId,
        place: &worktree::Placement,
        budget: &Budget,
        built: &mut worktree::Built,
    ) -> Result<submodules::Populated, Error> {
        let superproject_url = origin_url(&self.opts.repo);
        let credentials_for =
            |url: &Remote| self.credentials_for(url, budget).map_err(|e| e.to_string());
        let http_settings_for =
            |url: &Remote| self.http_settings_for(url).map_err(|e| e.to_string());
        let settings = submodules::Settings {
            mode: self.opts.submodules,
            depth: self.opts.depth,
            symlinks: self.opts.escaping_symlinks,
            superproject_url: &superproject_url,
            credentials_for: &credentials_for,
            http_settings_for: &http_settings_for,
            ssh: &self.opts.ssh,
            git_config: &self.opts.access.git_config,
        };
        let git_dir = self.opts.root.join(".git");
        let target = submodules::Target {
            git_dir: &git_dir,
            worktree: &place.staging,
            admin: &place.admin_dir,
        };
        Ok(repo.populate_submodules(commit, &target, &settings, budget, built)?)
    }

    /// `--filter`: the spec recorded in the store's config.
    fn filter_spec(&self) -> Option<&str> {
        self.opts.filter.as_ref().map(git::partial::Filter::spec)
    }

    /// In a partial clone, fetches the blobs the checkout of `commit` needs
    /// (the sparse cone, or the whole tree) in one request.
    fn fetch_missing_blobs(
        &self,
        repo: &Repo,
        commit: CommitId,
        budget: &Budget,
    ) -> Result<(), Error> {
        if self.opts.filter.is_none() {
            return Ok(());
        }
        let credentials = self.credentials_for(&self.opts.repo, budget)?;
        let http = self.http_settings_for(&self.opts.repo)?;
        let opts = fetch::Options {
            url: &self.opts.repo,
            git_ref: &self.opts.git_ref,
            depth: self.opts.depth,
            have: None,
            force: false,
            credentials: credentials.as_ref(),
            ssh: &self.opts.ssh,
            http: &http,
            git_config: &self.opts.access.git_config,
            filter: None,
            on_change: None,
        };
        let sparse = self.opts.sparse.as_ref();
        repo.complete_checkout(commit, sparse, &opts, budget)?;
        Ok(())
    }

    /// What the worktree of `commit` will hold: safety checks, then sparse
    /// patterns. From the index of the inspected spare (`base`) if its
    /// commit's tree is still in the store, reading only the trees that differ.
    fn plan(
        &self,
        repo: &Repo,
        commit: CommitId,
        base: Option<(&worktree::Inspection, CommitId)>,
    ) -> Result<worktree::Planned, worktree::Error> {
        let policy = self.opts.escaping_symlinks;
        let from_base = base.map(|base| repo.plan_from(base, commit, policy));
        let mut planned = match from_base {
            Some(Ok(planned)) => planned,
            // The spare's commit no longer in the store, say.
            Some(Err(e @ worktree::Error::Commit { .. })) => {
                tracing::debug!(error = %e, "planning from the spare's index failed; reading the whole tree");
                repo.plan(commit, policy)?
            }
            // A refusal: reading the whole tree would refuse it too.
            Some(Err(e)) => return Err(e),
            None => repo.plan(commit, policy)?,
        };
        if let Some(patterns) = &self.opts.sparse {
            planned.restrict(patterns);
        }
        Ok(planned)
    }

    fn placement(&self, hash: &CommitHash) -> worktree::Placement {
        worktree::Placement {
            staging: self.layout.staging(hash),
            final_path: self.layout.worktree(hash),
            admin_dir: store::admin_dir(&self.opts.root, hash.as_str()),
        }
    }

    /// Inspects and watches the spare while the process idles, so that the
    /// next change need not walk it (see [`early_inspection`]). For a
    /// process that stays: `--one-time` would only wait for it at exit.
    pub fn prepare_spare(&mut self) {
        let target = self.spare_to_inspect();
        let current = self
            .prepared
            .as_ref()
            .map(early_inspection::Prepared::target);
        if target.as_ref() != current {
            self.prepared = target.and_then(early_inspection::Prepared::start);
        }
    }

    /// Starts the inspection of the spare the next build will claim,
    /// taking up `prepared` if it still holds.
    fn inspect_spare(
        &self,
        prepared: Option<early_inspection::Prepared>,
    ) -> Option<early_inspection::Early> {
        self.spare_to_inspect()
            .and_then(|target| early_inspection::Early::start(target, prepared))
    }

    /// The spare the next build will claim, if it may claim it (parked, or
    /// retired past its stale timeout), with where it is now.
    fn spare_to_inspect(&self) -> Option<early_inspection::Target> {
        let spare = self.spare.as_ref()?;
        let dir = if spare.parked {
            self.layout.spare()
        } else if self
            .layout
            .is_stale(&spare.hash, self.opts.stale_worktree_timeout)
        {
            self.layout.worktree(&spare.hash)
        } else {
            return None;
        };
        Some(early_inspection::Target {
            hash: spare.hash.clone(),
            parked: spare.parked,
            dir,
            admin: self.spare_admin(spare),
            threads: self.opts.threads,
        })
    }

    /// Where the admin files (index, submodule records) of `spare` are.
    fn spare_admin(&self, spare: &Spare) -> PathBuf {
        if spare.parked {
            store::spare_admin_dir(&self.opts.root)
        } else {
            store::admin_dir(&self.opts.root, spare.hash.as_str())
        }
    }

    /// Moves the spare to the staging place of `hash`, if allowed: a parked
    /// one always, a retired one once its stale timeout has passed.
    fn claim(&self, old: &Spare, hash: &CommitHash) -> bool {
        let stale_after = self.opts.stale_worktree_timeout;
        let claimed = if old.parked {
            self.layout.claim_spare(hash)
        } else {
            self.layout.claim_retired(&old.hash, hash, stale_after)
        };
        claimed.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "could not reuse the retired worktree; checking out in full");
                false
            })
    }

    /// Rewrites the claimed spare (inspected beside the fetch, or now); if
    /// that fails for any reason but shutdown, starts over with a full
    /// checkout in a new directory (what could not be deleted of the old one
    /// is moved aside, never checked out into).
    fn rewrite_or_checkout(
        &self,
        repo: &Repo,
        planned: worktree::Planned,
        commit: CommitId,
        place: &worktree::Placement,
        reuse: Reuse<'_>,
        budget: &Budget,
    ) -> Result<worktree::Built, Error> {
        let old_admin = reuse.old_admin;
        let inspection = match reuse.inspected {
            Some(inspection) => Ok(inspection),
            None => worktree::inspect(&place.staging, old_admin, self.opts.threads),
        };
        match inspection.and_then(|i| repo.rewrite(planned, place, i, reuse.published, budget)) {
            Err(e @ (worktree::Error::Interrupted | worktree::Error::Timeout)) => Err(e.into()),
            Err(e) => {
                tracing::warn!(error = %e, "rewriting the retired worktree failed; checking out in full");
                self.layout.discard(&place.staging)?;
                let _ = publish::remove_any(old_admin);
                let planned = self.plan(repo, commit, None)?;
                Ok(repo.materialize(planned, place, budget)?)
            }
            Ok(built) => Ok(built),
        }
    }

    /// Removes stale worktrees and their admin dirs (parking the spare
    /// instead), and compacts the object store when it has grown or holds
    /// enough that no kept commit needs. Failures here are logged, not
    /// fatal: the new content is already published.
    fn cleanup(
        &mut self,
        budget: &Budget,
        current: &CommitHash,
        force_compact: bool,
    ) -> Result<(), Error> {
        self.park_spare();
        let keep_spare = self.spare.as_ref().is_some_and(|s| s.parked);
        let removed = self
            .layout
            .remove_stale(self.opts.stale_worktree_timeout, keep_spare)?;
        if !removed.is_empty() {
            tracing::info!(removed = ?crate::logging::json(&removed), "removed stale worktrees");
        }
        if !keep_spare {
            if let Err(e) = store::discard_spare_admin(&self.opts.root) {
                tracing::warn!(error = %e, "could not remove the spare's admin files");
            }
        }
        self.layout.remove_trash(false);
        store::prune_worktree_admin(&self.opts.root, &self.layout.worktrees_dir());
        if let Some(used) = self.submodule_stores.take() {
            let git_dir = self.opts.root.join(".git");
            submodules::upkeep(&git_dir, &used, self.opts.gc, budget, self.opts.threads);
        }
        let keep = self.keep_set(Some(current));
        self.count_garbage(&keep);
        let Some(repo) = self.repo.as_ref() else {
            return Ok(());
        };
        let stats = compact::stats(repo.git_dir());
        let due = compact::due(self.opts.gc, repo.git_dir(), stats, self.garbage_bytes);
        let due = match force_compact {
            true => compact::Upkeep::Compact,
            false => due,
        };
        // A compaction prunes the shallow file itself. Trimming rewrites no
        // object, so `off` trims too: its requests would grow without end.
        if due != compact::Upkeep::Compact {
            match repo.trim_shallow(&keep, self.shallow_lines) {
                Ok(None) => {}
                Ok(Some(trimmed)) => {
                    if trimmed.dropped > 0 {
                        tracing::debug!(
                            dropped = trimmed.dropped,
                            "dropped shallow lines no walk needs"
                        );
                    }
                    self.shallow_lines = trimmed.left;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not trim the shallow file; will retry later")
                }
            }
        }
        match repo.upkeep(due, &keep, budget) {
            Ok(compact::Done::Nothing) => return Ok(()),
            Ok(compact::Done::Compacted(after)) => {
                tracing::info!(
                    before_bytes = stats.bytes,
                    before_packs = stats.packs,
                    garbage_bytes = self.garbage_bytes,
                    after_bytes = after.bytes,
                    "compacted the object store"
                );
                self.garbage_bytes = 0;
            }
            Ok(compact::Done::Merged(after)) => tracing::info!(
                before_packs = stats.packs,
                after_packs = after.packs,
                after_bytes = after.bytes,
                "merged the object store's small packs"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "object store upkeep failed; will retry later");
                return Ok(());
            }
        }
        // The odb handle caches the pack list; start from a fresh one.
        self.repo = Some(Repo::open(&self.opts.root, self.opts.threads)?);
        Ok(())
    }

    /// Once the retired spare's stale timeout has passed, moves it out of
    /// `.worktrees/<sha>` and its admin dir out of `.git/worktrees`: to
    /// readers and to git it is deleted, as git-sync deletes it, but its
    /// files still save a full checkout of the next commit. If that fails,
    /// it is deleted for real.
    fn park_spare(&mut self) {
        let stale_after = self.opts.stale_worktree_timeout;
        let Some(spare) = self.spare.as_mut().filter(|s| !s.parked) else {
            return;
        };
        if !self.layout.worktree(&spare.hash).is_dir() {
            self.spare = None;
            return;
        }
        if !self.layout.is_stale(&spare.hash, stale_after) {
            return;
        }
        // The old spare's admin files go first: a crash between the two
        // moves must not pair them with the new spare's files.
        let parked = store::discard_spare_admin(&self.opts.root).map_err(|e| e.to_string());
        let parked = parked.and_then(|()| self.layout.park(&spare.hash).map_err(|e| e.to_string()));
        let parked = parked.and_then(|()| {
            store::park_admin(&self.opts.root, spare.hash.as_str()).map_err(|e| e.to_string())
        });
        match parked {
            Ok(()) => spare.parked = true,
            Err(e) => {
                tracing::warn!(error = %e, "could not set the retired worktree aside for reuse; deleting it");
                self.spare = None;
            }
        }
    }

    /// The commits whose objects compaction keeps: every worktree on disk
    /// under its commit's name, and the published one.
    fn keep_set(&self, current: Option<&CommitHash>) -> Vec<CommitId> {
        let mut keep: Vec<CommitId> = self
            .layout
            .worktree_hashes()
            .iter()
            .chain(current)
            .filter_map(CommitId::of)
            .collect();
        keep.sort();
        keep.dedup();
        keep
    }

    /// Adds what the commits kept last time but not now leave behind.
    fn count_garbage(&mut self, keep: &[CommitId]) {
        let dropped: Vec<CommitId> = self
            .kept
            .iter()
            .filter(|k| !keep.contains(k))
            .copied()
            .collect();
        if let Some(repo) = self.repo.as_ref() {
            for commit in dropped {
                let bytes = repo.dropped_bytes(commit, keep);
                tracing::debug!(%commit, bytes, "no longer kept");
                self.garbage_bytes = self.garbage_bytes.saturating_add(bytes);
            }
        }
        self.kept = keep.to_vec();
    }
}

/// The claimed spare's admin files and its inspection, if taken beside the fetch.
struct Reuse<'a> {
    old_admin: &'a std::path::Path,
    inspected: Option<worktree::Inspection>,
    /// The commit published now: what changed since is written anew.
    published: Option<CommitId>,
}

/// A retired worktree kept to be rewritten for a later commit.
#[derive(Debug, Clone)]
struct Spare {
    hash: CommitHash,
    /// Moved to `.worktrees/.spare` after its stale timeout (see
    /// [`Engine::park_spare`]); before that, still `.worktrees/<hash>`.
    parked: bool,
}

/// What [`Engine::undo`] needs to know about the state before a pass.
struct BeforePass {
    checkpoint: store::Checkpoint,
    published: Option<CommitHash>,
    published_in_store: bool,
}

/// `--repo` without credentials, for `remote.origin.url`.
fn origin_url(repo: &Remote) -> String {
    repo.without_credentials()
}

#[cfg(test)]
mod tests;
