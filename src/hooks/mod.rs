//! Post-publish hooks (git-sync §4) and the pre-publish gate.
//!
//! Each configured hook (exechook, outgoing webhook, reload signal) gets one
//! runner task. The sync loop hands every publish to all runners through a
//! "latest value wins" [`tokio::sync::watch`] and never waits for them. A
//! runner remembers the last hash it delivered successfully and skips a
//! trigger for the same hash; on failure it logs, waits and retries with
//! whatever publish is newest by then (intermediate hashes may be skipped,
//! so hooks must be idempotent). The exechook and the webhook wait exactly
//! their `--*-backoff` before every retry, as git-sync does (no growth, no
//! jitter: deployments time their checks by it); only the reload hook, which
//! has no flags, backs off exponentially (see [`Retry`]).
//!
//! In `--one-time` mode a runner makes one attempt, reports it through
//! [`Hooks::first_results`] and stops.
//!
//! The pre-publish gate ([`run_gate`]) is synchronous: the blocking sync pass
//! runs it just before the link swap and keeps the old content on failure.
//!
//! Submodules: [`exec`] (programs, async and blocking), [`notify`]
//! (outgoing HTTP), [`reload`] (signal a process found by name), [`output`]
//! (bounded output capture, shared by both program runners).

mod exec;
mod notify;
mod output;
mod reload;
mod settings;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

pub use exec::run_gate;
pub use settings::{ExecHookConfig, HooksConfig, OutgoingWebhookConfig, ReloadConfig};

/// Retry delays of the reload hook, which has no flags of its own.
const RELOAD_BACKOFF: Duration = Duration::from_secs(1);
const RELOAD_BACKOFF_MAX: Duration = Duration::from_secs(60);

/// What a hook needs to know about a publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    /// The published commit (40 hex).
    pub hash: String,
    /// The commit published before, if any.
    pub previous: Option<String>,
    /// The ref that was synced (e.g. `main`).
    pub git_ref: String,
    /// The repository URL without credentials.
    pub repo_redacted: String,
    /// The new worktree (`<root>/.worktrees/<hash>`).
    pub worktree: PathBuf,
}

/// The running post-publish hooks; dropping it lets the runners finish their
/// current work and stop (cancel the token to stop them at once).
pub struct Hooks {
    latest: watch::Sender<Option<Publish>>,
    /// How many runners were started.
    runners: usize,
    /// One receiver per runner for the result of its first attempt.
    first: Vec<(&'static str, oneshot::Receiver<bool>)>,
    /// Combined first results once [`Hooks::first_results`] has collected them.
    first_outcome: Option<bool>,
}

impl Hooks {
    /// Starts one runner task per configured hook (exechook, webhook, reload)
    /// on the current tokio runtime. `one_time`: each runner tries once,
    /// reports, and stops (no retries).
    ///
    /// Must be called within a tokio runtime.
    pub fn start(
        config: &HooksConfig,
        metrics: Arc<Metrics>,
        one_time: bool,
        cancel: CancellationToken,
    ) -> Self {
        Self::spawn(runners(config), metrics, one_time, cancel)
    }

    /// Starts the given runners (also used by tests with a scripted action).
    fn spawn(
        runners: Vec<Runner>,
        metrics: Arc<Metrics>,
        one_time: bool,
        cancel: CancellationToken,
    ) -> Self {
        let (latest, _) = watch::channel(None);
        let mut first = Vec::with_capacity(runners.len());
        for runner in runners {
            let (report, result) = oneshot::channel();
            first.push((runner.name, result));
            tokio::spawn(runner.run(
                latest.subscribe(),
                Arc::clone(&metrics),
                one_time,
                cancel.clone(),
                report,
            ));
        }
        Self {
            latest,
            runners: first.len(),
            first,
            first_outcome: None,
        }
    }

    /// Latest-wins: hands the newest publish to every runner (never blocks,
    /// never waits for hooks).
    pub fn notify(&self, publish: Publish) {
        self.latest.send_replace(Some(publish));
    }

    /// Waits for the result of the first attempt of every configured hook
    /// (meant for `--one-time`); true if all succeeded, true if none are
    /// configured. A runner stopped by cancellation before its first attempt
    /// finished counts as failed. Later calls return the same answer at once.
    ///
    /// Waits until [`Hooks::notify`] has been called (or the token is cancelled).
    pub async fn first_results(&mut self) -> bool {
        if let Some(outcome) = self.first_outcome {
            return outcome;
        }
        let mut all_ok = true;
        for (name, result) in self.first.drain(..) {
            match result.await {
                Ok(true) => {}
                Ok(false) => all_ok = false,
                Err(_) => {
                    tracing::warn!(hook = name, "hook stopped before its first run finished");
                    all_ok = false;
                }
            }
        }
        self.first_outcome = Some(all_ok);
        all_ok
    }

    /// True when no post-publish hook is configured.
    pub fn is_empty(&self) -> bool {
        self.runners == 0
    }
}

/// Tests only: hooks whose one runner (the exechook's retry policy) makes
/// its attempts in-process, so that what the sync loop hands over, and
/// when, can be checked in tokio's paused time.
#[cfg(test)]
impl Hooks {
    pub(crate) fn scripted(
        attempt: Arc<ScriptedAttempt>,
        backoff: Duration,
        one_time: bool,
        cancel: CancellationToken,
    ) -> Self {
        let runner = Runner {
            name: "exechook",
            retry: Retry::Fixed(backoff),
            action: Action::Scripted(attempt),
        };
        Self::spawn(vec![runner], Arc::new(Metrics::new()), one_time, cancel)
    }
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("runners", &self.runners)
            .field("first_outcome", &self.first_outcome)
            .finish_non_exhaustive()
    }
}

/// One runner per configured hook.
fn runners(config: &HooksConfig) -> Vec<Runner> {
    let mut runners = Vec::new();
    if let Some(exec) = &config.exec {
        runners.push(Runner {
            name: "exechook",
            retry: Retry::Fixed(exec.backoff),
            action: Action::Exec(exec.clone()),
        });
    }
    if let Some(hook) = &config.webhook {
        runners.push(Runner {
            name: "webhook",
            retry: Retry::Fixed(hook.backoff),
            action: Action::Webhook(Box::new(notify::Webhook::new(hook.clone()))),
        });
    }
    if let Some(reload) = &config.reload {
        runners.push(Runner {
            name: "reload",
            retry: Retry::Growing {
                base: RELOAD_BACKOFF,
                max: RELOAD_BACKOFF_MAX,
            },
            action: Action::Reload(reload.clone()),
        });
    }
    runners
}

/// What one runner does per attempt.
enum Action {
    Exec(ExecHookConfig),
    Webhook(Box<notify::Webhook>),
    Reload(ReloadConfig),
    /// Tests only: an in-process attempt, so the runner's timing can be
    /// checked in tokio's paused (virtual) time, where real programs and
    /// sockets cannot run.
    #[cfg(test)]
    Scripted(Arc<ScriptedAttempt>),
}

/// Tests only: one in-process attempt.
#[cfg(test)]
pub(crate) type ScriptedAttempt = dyn Fn(&Publish) -> Result<(), String> + Send + Sync;

impl Action {
    async fn run(&self, publish: &Publish) -> Result<(), String> {
        match self {
            Self::Exec(config) => exec::run_async(config, publish, exec::EXECHOOK_ARG_FLAG).await,
            Self::Webhook(hook) => hook.send(publish).await,
            Self::Reload(config) => reload::signal_by_name(&config.process, config.signal),
            #[cfg(test)]
            Self::Scripted(attempt) => attempt(publish),
        }
    }
}

/// One hook's delivery loop.
struct Runner {
    /// Metric and log name: `exechook`, `webhook` or `reload`.
    name: &'static str,
    retry: Retry,
    action: Action,
}

/// How long a runner waits before retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Exactly this before every retry (git-sync's `--*-backoff`).
    Fixed(Duration),
    /// Doubling from `base` up to `max`, plus up to a quarter more
    /// ([`crate::backoff::delay`]).
    Growing { base: Duration, max: Duration },
}

impl Retry {
    /// The wait after the `failures`-th consecutive failure.
    fn wait(self, failures: u32) -> Duration {
        match self {
            Self::Fixed(backoff) => backoff,
            Self::Growing { base, max } => crate::backoff::delay(
                base,
                max,
                u64::from(failures),
                crate::backoff::Jitter::UpToAQuarterMore,
            ),
        }
    }
}

impl Runner {
    async fn run(
        self,
        mut latest: watch::Receiver<Option<Publish>>,
        metrics: Arc<Metrics>,
        one_time: bool,
        cancel: CancellationToken,
        report: oneshot::Sender<bool>,
    ) {
        let mut report = Some(report);
        let mut delivered: Option<String> = None;
        let mut failures: u32 = 0;
        loop {
            tokio::select! {
                biased;
                () = cancel.cancelled() => return,
                changed = latest.changed() => {
                    if changed.is_err() {
                        // `Hooks` was dropped; nothing new will come.
                        return;
                    }
                }
            }
            // Deliver the newest publish, retrying until it (or a newer one) succeeds.
            loop {
                let Some(publish) = latest.borrow_and_update().clone() else {
                    break;
                };
                if delivered.as_deref() == Some(publish.hash.as_str()) {
                    tracing::debug!(hook = self.name, hash = %publish.hash, "hook already ran for this hash");
                    break;
                }
                let started = std::time::Instant::now();
                let result = tokio::select! {
                    biased;
                    () = cancel.cancelled() => return,
                    result = self.action.run(&publish) => result,
                };
                let ok = result.is_ok();
                metrics.hook_run(self.name, ok);
                if let Some(report) = report.take() {
                    let _ = report.send(ok);
                }
                match result {
                    Ok(()) => {
                        tracing::info!(
                            hook = self.name,
                            hash = %publish.hash,
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            "hook succeeded"
                        );
                        delivered = Some(publish.hash);
                        failures = 0;
                        if one_time {
                            return;
                        }
                        // A publish that arrived meanwhile shows as `changed`.
                        break;
                    }
                    Err(error) => {
                        if one_time {
                            tracing::error!(hook = self.name, hash = %publish.hash, %error, "hook failed");
                            return;
                        }
                        failures = failures.saturating_add(1);
                        let wait = self.retry.wait(failures);
                        tracing::error!(
                            hook = self.name,
                            hash = %publish.hash,
                            failures,
                            retry_in = %humantime::format_duration(round_ms(wait)),
                            %error,
                            "hook failed; will retry with the newest commit"
                        );
                        tokio::select! {
                            biased;
                            () = cancel.cancelled() => return,
                            () = tokio::time::sleep(wait) => {}
                        }
                    }
                }
            }
        }
    }
}

/// Durations in log lines: whole milliseconds are plenty.
fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The variables every hook program gets on top of our own environment.
/// Our own secrets, which a hook has no business seeing (it inherits the
/// rest of our environment, as in git-sync).
const SECRET_ENV: &[&str] = &[
    "GITSYNC_INCOMING_WEBHOOK_SECRET",
    "GITSYNC_SYNC_TRIGGER_TOKEN",
    "GITSYNC_WEBHOOK_SIGNING_SECRET",
    "GITSYNC_PASSWORD",
    "GIT_SYNC_PASSWORD",
    "GITSYNC_GITHUB_APP_PRIVATE_KEY",
    "GITSYNC_BEARER_TOKEN",
    // An askpass URL may carry a token in its query.
    "GITSYNC_ASKPASS_URL",
    "GIT_SYNC_ASKPASS_URL",
    "GIT_ASKPASS_URL",
    // Credential JSON holds passwords; git config may hold an Authorization header.
    "GITSYNC_CREDENTIAL",
    "GITSYNC_GIT_CONFIG",
    "GIT_SYNC_GIT_CONFIG",
    // May carry credentials in the URL; GITSYNC_REPO is set redacted instead.
    "GIT_SYNC_REPO",
    "GIT_REPO",
];

fn hook_env(publish: &Publish) -> [(&'static str, &str); 4] {
    [
        ("GITSYNC_HASH", publish.hash.as_str()),
        (
            "GITSYNC_PREVIOUS_HASH",
            publish.previous.as_deref().unwrap_or(""),
        ),
        ("GITSYNC_REF", publish.git_ref.as_str()),
        ("GITSYNC_REPO", publish.repo_redacted.as_str()),
    ]
}
