//! The sync loop (git-sync v4 semantics): sync, record the outcome, wait,
//! repeat. `--init-period` until the first success, then `--period`, with a
//! little jitter so replicas don't poll in lockstep; after a failure the wait
//! backs off exponentially (with jitter) up to that period. A trigger (signal,
//! later webhooks) cuts the wait short; bursts coalesce into one sync, and
//! syncs never overlap because the loop awaits each one.
//!
//! The loop drives any [`SyncPass`]: the real one is [`Engine`]; the loop's
//! timing rules are tested with a scripted pass in tokio's paused time.

pub mod engine;
mod last_sync;
#[cfg(test)]
mod tests;
mod timing;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::backoff::{self, Jitter};
use crate::fsutil;
use crate::git::Budget;
use crate::hooks::{Hooks, Publish};
use crate::metrics::{Metrics, SyncResult};
use crate::status::StatusHandle;
use crate::types::CommitHash;
pub use engine::{Engine, Outcome};

/// How long shutdown waits for an interrupted pass to clean up after itself.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(700);
/// First retry delay after a failure (doubles per consecutive failure).
const BACKOFF_BASE: Duration = Duration::from_millis(500);

/// Loop settings.
#[derive(Debug, Clone)]
pub struct LoopOptions {
    pub period: Duration,
    pub init_period: Duration,
    pub sync_timeout: Duration,
    pub one_time: bool,
    pub max_failures: i64,
    pub init_max_failures: i64,
    pub touch_file: Option<PathBuf>,
    pub error_file: Option<PathBuf>,
    /// Printed into the error file's `Args`.
    pub repo_redacted: String,
    pub git_ref: String,
}

/// Why the loop ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    /// `--one-time` finished its sync.
    OneTimeDone,
    /// Shutdown was requested.
    Cancelled,
    /// More consecutive failures than allowed; `error` is the last one's
    /// message (as logged with "sync failed", redacted).
    TooManyFailures { failures: u64, error: String },
    /// `--one-time` synced, but a hook's first run failed.
    OneTimeHooksFailed,
    /// `--one-time`: `--verify-signatures` refused the commit.
    OneTimeRefused,
    /// `--one-time`: a signal stopped the run before its sync finished.
    OneTimeStopped,
}

/// Wakes the loop early; many notifications before it wakes count as one.
#[derive(Clone, Default)]
pub struct Trigger(Arc<Notify>);

impl Trigger {
    pub fn fire(&self) {
        self.0.notify_one();
    }

    pub(crate) async fn fired(&self) {
        self.0.notified().await;
    }
}

/// Where the loop reports what happened: the shared status and the metrics.
#[derive(Clone)]
pub struct Reporter {
    pub status: StatusHandle,
    pub metrics: Arc<Metrics>,
}

/// What the loop needs of the engine: one pass, and what is published.
/// [`Engine`] is the real one; the loop's tests script their own.
pub trait SyncPass: Send + Sized + 'static {
    /// One pass, blocking (the loop runs it on tokio's blocking pool);
    /// everything slow honours `budget`.
    fn sync_once(&mut self, budget: &Budget) -> Result<Outcome, engine::Error>;
    /// At start-up, before any network: the time of the last recorded
    /// success when the published content still verifies (or, changed on
    /// disk while no process ran, was rebuilt from the store within
    /// `budget`).
    fn restore(&mut self, budget: &Budget) -> Option<SystemTime>;
    /// A new one with the same settings, for after a panic lost this one.
    fn fresh(&self) -> Self;
    /// The commit the link points at.
    fn published(&self) -> Option<CommitHash>;
    /// Where the worktree of `hash` is (what hooks are told).
    fn worktree(&self, hash: &CommitHash) -> PathBuf;
    /// After each pass of a process that stays (not `--one-time`): work
    /// that makes the next pass shorter, in the background.
    fn prepare_next(&mut self) {}
    /// Whether what is published accounts for the commit a webhook
    /// announced: the same commit, an annotated tag of it (GitHub announces
    /// the tag object), or one of its ancestors (an older delivery, a
    /// replay) as far as the store knows. Runs after a pass, on its thread.
    fn accounts_for(&self, _announced: &str) -> bool {
        false
    }
}

impl SyncPass for Engine {
    fn sync_once(&mut self, budget: &Budget) -> Result<Outcome, engine::Error> {
        Engine::sync_once(self, budget)
    }

    fn restore(&mut self, budget: &Budget) -> Option<SystemTime> {
        Engine::restore(self, budget)
    }

    fn fresh(&self) -> Self {
        Engine::fresh(self)
    }

    fn published(&self) -> Option<CommitHash> {
        self.layout().current()
    }

    fn worktree(&self, hash: &CommitHash) -> PathBuf {
        self.layout().worktree(hash)
    }

    fn prepare_next(&mut self) {
        Engine::prepare_spare(self)
    }

    fn accounts_for(&self, announced: &str) -> bool {
        Engine::accounts_for(self, announced)
    }
}

/// Quick retries while a webhook's announced commit is not visible yet (a
/// lagging forge replica); after these the announcement is dropped.
const EXPECTED_RETRIES: u32 = 5;

/// Runs until `--one-time` is done, too many failures, or `cancel`.
pub async fn run<P: SyncPass>(
    mut engine: P,
    opts: LoopOptions,
    trigger: Trigger,
    reporter: Reporter,
    mut hooks: Hooks,
    cancel: CancellationToken,
) -> Exit {
    let mut failures: u64 = 0;
    // Of those, signature refusals: they never count toward --max-failures.
    let mut refusals: u64 = 0;
    // When the failures that count began, and how long their passes took
    // (not waiting): see `spanned_failures`.
    let mut failing_since: Option<tokio::time::Instant> = None;
    let mut failing_passes = Duration::ZERO;
    let mut synced_once = false;
    let mut expected_retries = 0u32;
    reporter
        .status
        .set_published(engine.published().map(|h| h.to_string()));
    // A `--one-time` run exits at its first success, so it has no use for
    // the restored readiness, and its first pass checks the published tree
    // anyway when it is still current: a walk of the whole tree saved.
    if !opts.one_time {
        match restore(engine, &reporter, opts.sync_timeout, &cancel).await {
            Some(restored) => engine = restored,
            None => return Exit::Cancelled,
        }
    }
    loop {
        reporter.status.pass_started();
        let started = Instant::now();
        let pass_began = tokio::time::Instant::now();
        let announced = reporter.status.expected();
        let result = match run_pass(engine, opts.sync_timeout, &cancel, announced).await {
            Ran::Done(returned, result, accounted) => {
                engine = returned;
                if accounted {
                    reporter.status.clear_expected();
                }
                result
            }
            Ran::Panicked(message, fresh) => {
                engine = fresh;
                Err(engine::Error::Panic(message))
            }
            Ran::Cancelled => return Exit::Cancelled,
        };
        crate::memory::release_free_memory();
        if result.is_ok() && !synced_once && !opts.one_time {
            // Most of the code that ran (start-up, the clone, the full
            // checkout) will not run again.
            release_code_pages("gave the executable's start-up pages back");
        }
        // Not after a stop: the inspection's thread would hold up the exit.
        if !opts.one_time && !cancel.is_cancelled() {
            engine.prepare_next();
        }
        let mut wait_override = None;
        match result {
            Ok(outcome) => {
                if failures > refusals {
                    tracing::info!(failures, "syncing again after failures");
                }
                failures = 0;
                refusals = 0;
                failing_since = None;
                failing_passes = Duration::ZERO;
                report_success(
                    &reporter,
                    &opts.git_ref,
                    &outcome,
                    !synced_once,
                    started.elapsed(),
                );
                on_success(&opts, &outcome, !synced_once);
                notify_hooks(&hooks, &engine, &opts, &outcome, !synced_once);
                synced_once = true;
                if opts.one_time {
                    return if hooks.first_results().await {
                        Exit::OneTimeDone
                    } else if cancel.is_cancelled() {
                        // The signal stopped the hooks, not their failure.
                        Exit::OneTimeStopped
                    } else {
                        Exit::OneTimeHooksFailed
                    };
                }
                wait_override = expected_retry(&reporter.status, &opts, &mut expected_retries);
            }
            Err(e) if e.is_interrupted() && cancel.is_cancelled() => return Exit::Cancelled,
            Err(e @ engine::Error::Gate { .. }) if opts.one_time => {
                // As git-sync's --one-time: the hook's first result is final.
                let message = on_failure(&opts, &e, 1);
                reporter.status.failed(&message, 1);
                return Exit::OneTimeHooksFailed;
            }
            Err(e @ engine::Error::Gate { .. }) => {
                failures = 0;
                refusals = 0;
                failing_since = None;
                failing_passes = Duration::ZERO;
                let retry_in = on_gate_refusal(&opts, &reporter, &e, started.elapsed());
                wait_override = Some(next_wait(&opts, synced_once, 0).min(retry_in));
            }
            Err(e @ engine::Error::Refused { .. }) => {
                // A failed sync, but never a --max-failures exit: a restart
                // cannot make the commit pass (the ref moving or a key file
                // changing can, and this process sees both), so exiting
                // would only crash-loop the pod. Readiness still follows
                // the failures and the staleness of the published content.
                failures += 1;
                refusals += 1;
                on_refusal(&opts, &reporter, &e, failures, started.elapsed());
                if let Some(since) = failing_since {
                    let counted = failures - refusals;
                    let spanned =
                        spanned_failures(&opts, synced_once, counted, since, failing_passes);
                    reporter.status.set_spanned_failures(spanned);
                }
                if opts.one_time {
                    return Exit::OneTimeRefused;
                }
            }
            Err(e) => {
                failures += 1;
                let since = *failing_since.get_or_insert(pass_began);
                failing_passes += pass_began.elapsed();
                let message = on_failure(&opts, &e, failures);
                reporter.status.failed(&message, failures);
                reporter
                    .metrics
                    .observe_sync(SyncResult::Error, started.elapsed());
                reporter.metrics.set_consecutive_failures(failures);
                let limit = if synced_once {
                    opts.max_failures
                } else {
                    opts.init_max_failures
                };
                let spanned = spanned_failures(
                    &opts,
                    synced_once,
                    failures - refusals,
                    since,
                    failing_passes,
                );
                reporter.status.set_spanned_failures(spanned);
                if limit >= 0 && spanned > limit as u64 {
                    return Exit::TooManyFailures {
                        failures,
                        error: message,
                    };
                }
            }
        }
        let wait = wait_override.unwrap_or_else(|| next_wait(&opts, synced_once, failures));
        tracing::debug!(wait_ms = wait.as_millis() as u64, "waiting for next sync");
        tokio::select! {
            _ = cancel.cancelled() => return Exit::Cancelled,
            _ = tokio::time::sleep(wait) => {}
            _ = trigger.fired() => tracing::info!("sync triggered"),
        }
    }
}

/// Before the first pass (which needs the remote): if the published content
/// verifies and its last successful sync is on record, readiness starts from
/// that sync's real time, so a restart during a forge outage keeps serving.
/// The start-up check ([`SyncPass::restore`]); `None` when shut down
/// meanwhile (a repair under way is interrupted).
async fn restore<P: SyncPass>(
    mut engine: P,
    reporter: &Reporter,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Option<P> {
    let spare = engine.fresh();
    let interrupt = Arc::new(AtomicBool::new(false));
    let budget = Budget::new(timeout, interrupt.clone());
    let checking = on_the_blocking_pool("restore", move || {
        let at = engine.restore(&budget);
        (engine, at)
    });
    let checked = tokio::select! {
        checked = checking => checked,
        () = cancel.cancelled() => {
            interrupt.store(true, Ordering::Relaxed);
            return None;
        }
    };
    Some(match checked {
        Ok((engine, Some(at))) => {
            let age = at.elapsed().unwrap_or_default().as_secs();
            tracing::info!(
                published = engine.published().map(|h| h.to_string()),
                last_success = %humantime::format_rfc3339_millis(at),
                age_seconds = age,
                "the published worktree is intact; its last successful sync is on record"
            );
            reporter.status.restored(at);
            reporter.metrics.set_last_success(at);
            engine
        }
        Ok((engine, None)) => engine,
        Err(e) => {
            tracing::error!(error = %e, "checking the published content at start-up failed");
            spare
        }
    })
}

/// Hooks fire after every publish, and once after start-up even when
/// nothing changed (so a restart never loses a notification).
fn notify_hooks(
    hooks: &Hooks,
    engine: &impl SyncPass,
    opts: &LoopOptions,
    outcome: &Outcome,
    first: bool,
) {
    let previous = match outcome {
        Outcome::Published { previous, .. } => previous.as_ref().map(|p| p.to_string()),
        Outcome::Unchanged { .. } if first => None,
        Outcome::Unchanged { .. } => return,
    };
    let hash = outcome.hash();
    hooks.notify(Publish {
        hash: hash.to_string(),
        previous,
        git_ref: opts.git_ref.clone(),
        repo_redacted: opts.repo_redacted.clone(),
        worktree: engine.worktree(hash),
    });
}

fn report_success(
    reporter: &Reporter,
    git_ref: &str,
    outcome: &Outcome,
    first: bool,
    took: Duration,
) {
    let hash = outcome.hash().to_string();
    let changed = matches!(outcome, Outcome::Published { .. });
    let metrics = &reporter.metrics;
    // git-sync counts the first sync of a process as a success even when nothing changed.
    let result = if changed || first {
        SyncResult::Success
    } else {
        SyncResult::Noop
    };
    metrics.observe_sync(result, took);
    if changed || first {
        metrics.inc_fetch();
    }
    metrics.set_last_success(std::time::SystemTime::now());
    metrics.set_published_revision(&hash, git_ref);
    metrics.set_consecutive_failures(0);
    reporter.status.succeeded(&hash);
}

/// Hands the executable's resident pages back (src/memory.rs), logging
/// `done` and how long it took.
pub(crate) fn release_code_pages(done: &'static str) {
    // Not in this crate's unit tests: the loop's tests run inside the test
    // binary whose pages src/memory.rs's own tests measure.
    if cfg!(test) {
        return;
    }
    let started = Instant::now();
    match crate::memory::release_code_pages() {
        Ok(()) => tracing::debug!(took_us = started.elapsed().as_micros() as u64, "{done}"),
        Err(e) => tracing::debug!(error = %e, "the executable's pages stay resident"),
    }
}

/// After a success: if a webhook announced a commit we still don't have,
/// come back soon (1 s, 2 s, 4 s … capped by the period), a few times.
fn expected_retry(
    status: &StatusHandle,
    opts: &LoopOptions,
    retries: &mut u32,
) -> Option<Duration> {
    let snapshot = status.snapshot();
    let Some(expected) = snapshot.expected_hash else {
        *retries = 0;
        return None;
    };
    if *retries >= EXPECTED_RETRIES {
        tracing::warn!(
            expected,
            published = snapshot.published_hash,
            "the announced commit never appeared; giving up on it"
        );
        status.clear_expected();
        *retries = 0;
        return None;
    }
    *retries += 1;
    let wait = (Duration::from_secs(1) * (1 << (*retries - 1))).min(opts.period);
    tracing::info!(
        expected,
        attempt = *retries,
        wait_ms = wait.as_millis() as u64,
        "announced commit not published yet; retrying soon"
    );
    Some(wait)
}

/// How a pass on the blocking pool ended.
enum Ran<P> {
    /// The pass's result, and whether the published commit accounts for
    /// the announced one (see [`SyncPass::accounts_for`]).
    Done(P, Result<Outcome, engine::Error>, bool),
    /// The pass panicked (a bug, or a library that could not start a
    /// thread) or could not start: why. Carries a fresh engine to continue with.
    Panicked(String, P),
    Cancelled,
}

/// Runs one pass on the blocking pool. At the deadline the watchdog raises
/// the interrupt flag (the readers check the deadline themselves; the flag
/// stops the git layer's own loops, pack indexing and checkout, too) and keeps
/// waiting: the pass then ends with its timeout error.
async fn run_pass<P: SyncPass>(
    mut engine: P,
    timeout: Duration,
    cancel: &CancellationToken,
    announced: Option<String>,
) -> Ran<P> {
    let spare = engine.fresh();
    let interrupt = Arc::new(AtomicBool::new(false));
    let budget = Budget::new(timeout, interrupt.clone());
    let deadline = tokio::time::sleep(budget.remaining());
    tokio::pin!(deadline);
    let mut handle = std::pin::pin!(on_the_blocking_pool("sync-pass", move || {
        let result = engine.sync_once(&budget);
        let accounted = result.is_ok() && announced.is_some_and(|a| engine.accounts_for(&a));
        (engine, result, accounted)
    }));
    let mut timed_out = false;
    loop {
        tokio::select! {
            joined = &mut handle => return match joined {
                Ok((engine, result, accounted)) => Ran::Done(engine, result, accounted),
                Err(e) => Ran::Panicked(e, spare),
            },
            () = &mut deadline, if !timed_out => {
                timed_out = true;
                interrupt.store(true, Ordering::Relaxed);
            }
            () = cancel.cancelled() => {
                interrupt.store(true, Ordering::Relaxed);
                // Give the pass a moment to delete its staging directory.
                // A pass that finished meanwhile (it may have moved the
                // link) is reported as any other: logged, in /status, and
                // a --one-time run that synced is done.
                return match tokio::time::timeout(SHUTDOWN_GRACE, handle).await {
                    Ok(Ok((engine, result @ Ok(_), accounted))) => Ran::Done(engine, result, accounted),
                    _ => Ran::Cancelled,
                };
            }
        }
    }
}

/// Runs `work` on tokio's blocking pool (which paused-time tests see) and
/// awaits it: `Err` says why when no thread could start or `work` panicked.
/// tokio's first `spawn_blocking` panics when it cannot start a thread (a
/// pod's pids limit reached, a seccomp profile refusing clone3), so a
/// thread is started and ended first: failing there fails the pass.
async fn on_the_blocking_pool<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let probe = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(|| ());
    match probe {
        Ok(thread) => drop(thread.join()),
        Err(e) => return Err(cannot_start_a_thread(&e.to_string())),
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| match e.try_into_panic() {
            Ok(payload) => panic_message(payload.as_ref()),
            Err(e) => e.to_string(),
        })
}

/// What a panic said; a thread that could not be started (inside a
/// library too) is a limit reached, not a bug.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let said = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string());
    match said.contains("failed to spawn thread") || said.contains("can't spawn") {
        true => cannot_start_a_thread(&said),
        false => format!("internal error (a bug, please report it): {said}"),
    }
}

fn cannot_start_a_thread(why: &str) -> String {
    format!(
        "could not start a thread ({why}): the limit on processes and threads is reached (the \
         pod's pids limit, cgroup pids.max, RLIMIT_NPROC), or a seccomp profile refuses clone3 \
         (older container runtimes); raise the limit or update the runtime"
    )
}

fn on_success(opts: &LoopOptions, outcome: &Outcome, first: bool) {
    match outcome {
        Outcome::Published {
            hash,
            previous: Some(previous),
            ..
        } if previous == hash => {
            tracing::info!(%hash, "rebuilt the published worktree from its commit");
        }
        Outcome::Published {
            hash,
            previous,
            fetched_bytes,
        } => {
            tracing::info!(%hash, previous = previous.as_ref().map(|p| p.to_string()), fetched_bytes, "published new content");
        }
        // Once per process (as git-sync), so a no-op start or --one-time run says what it found.
        Outcome::Unchanged { hash } if first => {
            tracing::info!(%hash, "content is already at {hash}; nothing to do")
        }
        Outcome::Unchanged { hash } => tracing::debug!(%hash, "no change"),
    }
    let changed = matches!(outcome, Outcome::Published { .. });
    if changed || first {
        if let Some(path) = &opts.touch_file {
            if let Err(e) = fsutil::touch_file(path) {
                tracing::warn!(path = %path.display(), error = %e, "could not touch the touch-file");
            }
        }
    }
    if let Some(path) = &opts.error_file {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(path = %path.display(), error = %e, "could not remove the error-file")
            }
            _ => {}
        }
    }
}

fn on_failure(opts: &LoopOptions, error: &engine::Error, failures: u64) -> String {
    let mut message = crate::types::redact_url(&crate::types::error_chain(error));
    message.push_str(advice_for(&message));
    tracing::error!(error = %message, failures, "sync failed");
    write_error_file(opts, "sync failed", &message, failures);
    message
}

/// What to do about a failure the lower layers can only name by its
/// errno (a full volume is reported wherever the write was).
fn advice_for(message: &str) -> &'static str {
    if message.contains("os error 28") {
        "; the volume holding --root is full (or --link's, if elsewhere): free space there or \
         give it more (the published content is unchanged; the sync retries)"
    } else if message.contains("not our ref") && !message.contains("allowReachableSHA1InWant") {
        "; the server does not have that commit, or does not send commits by SHA that are no \
         ref's tip (a git protocol v0/v1 server needs uploadpack.allowReachableSHA1InWant): \
         check --ref"
    } else if message.contains("Resource temporarily unavailable")
        && !message.contains("the limit on processes")
    {
        "; the limit on processes and threads may be reached (the pod's pids limit, cgroup \
         pids.max, RLIMIT_NPROC): raise it (the sync retries)"
    } else if message.contains("UnknownIssuer") {
        "; the server's certificate is signed by a CA this system does not trust: give that CA's \
         PEM bundle with --git-config http.sslCAInfo:<file> or GIT_SSL_CAINFO (or SSL_CERT_FILE)"
    } else if message.contains("HandshakeFailure") {
        "; the server offers no TLS version and cipher suite git-sidecar speaks: TLS 1.3, or TLS \
         1.2 with ECDHE key exchange and AES-GCM or ChaCha20-Poly1305 (no RSA key exchange, no \
         CBC ciphers); enable one of them on the server"
    } else if message.contains("InvalidContentType") {
        "; the server does not speak TLS on that port: check https:// against http:// and the \
         port in --repo"
    } else if message.contains("os error 122") {
        "; the disk quota of the volume holding --root is exhausted: raise it or free space \
         (the published content is unchanged; the sync retries)"
    } else {
        ""
    }
}

/// `--error-file`: `{Msg, Err, Args}` as git-sync writes it.
fn write_error_file(opts: &LoopOptions, msg: &str, message: &str, failures: u64) {
    if let Some(path) = &opts.error_file {
        let body = serde_json::json!({
            "Msg": msg,
            "Err": message,
            "Args": { "repo": opts.repo_redacted, "ref": opts.git_ref, "failures": failures },
        });
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        if let Err(e) = fsutil::write_atomic(path, body.to_string().as_bytes()) {
            tracing::warn!(path = %path.display(), error = %e, "could not write the error-file");
        }
    }
}

/// A pass whose commit `--verify-signatures` refused: a failed sync in
/// `/status` (with the refusal), the metrics and the error file. Logged as
/// an error when verified in this pass; a remembered refusal (same commit,
/// same key files) only at debug level, so a refused commit does not fill
/// the log every period.
fn on_refusal(
    opts: &LoopOptions,
    reporter: &Reporter,
    error: &engine::Error,
    failures: u64,
    took: Duration,
) {
    let engine::Error::Refused {
        hash,
        refused,
        fresh,
        ..
    } = error
    else {
        return;
    };
    let message = crate::types::redact_url(&crate::types::error_chain(error));
    if *fresh {
        tracing::error!(error = %message, failures, result = refused.refusal.label(), "sync failed: signature refused");
        write_error_file(opts, "signature verification failed", &message, failures);
    } else {
        tracing::debug!(error = %message, failures, "the signature refusal still holds");
    }
    let refusal = crate::status::SignatureRefusal {
        commit: hash.to_string(),
        object: refused.object.as_str().to_string(),
        object_id: refused.id.clone(),
        result: refused.refusal.label().to_string(),
        key: refused.refusal.key().map(str::to_string),
        reason: refused.refusal.to_string(),
    };
    reporter
        .status
        .signature_refused(&message, failures, refusal);
    reporter.metrics.observe_sync(SyncResult::Error, took);
    reporter.metrics.set_consecutive_failures(failures);
}

/// A pass the pre-publish gate held back: not a sync failure (git-sync's
/// hooks never are: no `--max-failures` exit, no readiness loss through
/// failures), since the remote was reached and the published content is the
/// newest that passed the gate. It shows in `last_error`, the error file,
/// the hook metric and the log; the next pass comes when the gate is due
/// again (its backoff), sooner if the period says so, to see the ref move.
/// Returns the time until the gate is due.
fn on_gate_refusal(
    opts: &LoopOptions,
    reporter: &Reporter,
    error: &engine::Error,
    took: Duration,
) -> Duration {
    let engine::Error::Gate {
        published,
        retry_in,
        ran,
        ..
    } = error
    else {
        return Duration::ZERO;
    };
    let message = crate::types::redact_url(&crate::types::error_chain(error));
    let retry = humantime::format_duration(Duration::from_millis(
        u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX),
    ));
    if *ran {
        tracing::error!(error = %message, retry_in = %retry, "pre-publish hook failed; it runs again after its backoff while the ref stays on this commit");
        write_error_file(opts, "pre-publish hook failed", &message, 0);
    } else {
        tracing::debug!(error = %message, retry_in = %retry, "the pre-publish hook's refusal still holds");
    }
    reporter.status.held(&message);
    let metrics = &reporter.metrics;
    metrics.observe_sync(SyncResult::Noop, took);
    metrics.set_consecutive_failures(0);
    if published.is_some() {
        metrics.set_last_success(std::time::SystemTime::now());
    }
    *retry_in
}

/// Of `counted` failures in a row (refusals left out) whose first pass
/// began at `since`, those that count for `--max-failures` and readiness:
/// at most one more than the periods waited between them (`passes`, the
/// time the failed passes themselves took, is not waiting). git-sync waits
/// a full period after each failure; our retries back off from half a
/// second, and are extra chances to recover, not a faster way to exit or
/// to go unready (a 15 s outage must not restart a sidecar set to ride
/// out 5 minutes). So `--max-failures N` exits only when more than N
/// failures span N periods of waiting, at least as long as git-sync.
fn spanned_failures(
    opts: &LoopOptions,
    synced_once: bool,
    counted: u64,
    since: tokio::time::Instant,
    passes: Duration,
) -> u64 {
    let period = if synced_once {
        opts.period
    } else {
        opts.init_period
    };
    let waited = since.elapsed().saturating_sub(passes);
    let periods = waited.as_nanos() / period.as_nanos().max(1);
    counted.min(u64::try_from(periods).unwrap_or(u64::MAX).saturating_add(1))
}

/// The wait before the next pass.
fn next_wait(opts: &LoopOptions, synced_once: bool, failures: u64) -> Duration {
    let period = if synced_once {
        opts.period
    } else {
        opts.init_period
    };
    if failures == 0 {
        jittered_period(period)
    } else {
        backoff::delay(BACKOFF_BASE, period, failures, Jitter::Equal)
    }
}

/// `period` plus up to 10% so many replicas spread out.
fn jittered_period(period: Duration) -> Duration {
    period + period.mul_f64(fastrand::f64() * 0.1)
}
