//! Peer fan-out (`--peers`, `--peer-secret-file`): every replica hears the
//! webhook. The replica that accepts a verified forge webhook (or an
//! authenticated `POST /sync`) syncs itself and sends a signed [`Hint`] to
//! every other replica, found by resolving `--peers` again for each
//! delivery (a headless Service lists every ready pod). A replica that
//! receives a hint verifies it, deduplicates it (a replayed delivery, or a
//! commit it publishes or awaits already), and fires its own sync trigger
//! with the expected commit, as a webhook would; it never sends hints of
//! its own for it.
//!
//! Why this cannot loop or amplify:
//! - only [`Peers::announce`] sends, and only the HTTP layer calls it, after
//!   a forge signature or a sync-trigger token was verified; the hint
//!   endpoint ([`Peers::receive`]) never announces;
//! - one announcement → at most one hint to each resolved peer other than
//!   this instance (at most N−1); each peer has its own queue, in which a
//!   newer hint replaces a waiting one of its kind, so a burst of webhooks
//!   costs a slow peer at most three hints (`lanes.rs`), and fan-outs beyond
//!   [`send::FAN_OUTS_AT_ONCE`] coalesce likewise;
//! - announcements without a commit, which no peer can deduplicate, fan out
//!   at most once per [`window::WINDOW`] (plus one at once after a quiet
//!   spell), the last always followed by one;
//! - without the peer secret, nothing passes [`hint::verify`].
//!
//! Polling (`--period`) stays on as the safety net: a lost hint only
//! delays a replica until its next poll.

pub mod fanout;
pub mod hint;
mod lanes;
mod matching;
pub mod resolve;
mod send;
mod window;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::secret::SecretBytes;
pub use fanout::PeerOutcome;
pub use hint::{Hint, Refusal, Verdict, SIGNATURE_HEADER};
pub use resolve::{Me, PeerName};

/// The path peers send hints to (on `--http-bind`).
pub const ENDPOINT: &str = "/peers/hint";

/// `--peers` and `--peer-secret-file`, validated.
#[derive(Debug, Clone)]
pub struct PeersConfig {
    pub names: Vec<PeerName>,
    pub secret_file: PathBuf,
    /// Read at start-up; read again when the file changes.
    pub secret: SecretBytes,
}

/// The last fan-out, for `/status`.
#[derive(Debug, Clone, Serialize)]
pub struct FanOut {
    /// RFC 3339.
    pub at: String,
    pub delivery: String,
    pub commit: Option<String>,
    pub peers: Vec<PeerOutcome>,
    /// This instance's own addresses found in the answer, not sent to.
    pub skipped_self: Vec<SocketAddr>,
    /// Names that did not resolve (with why).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unresolved: Vec<String>,
}

/// What the hint endpoint should do with a verified hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// Sync, expecting this commit (if any).
    Sync(Option<String>),
    /// Already acted on (the label says how it was recognised).
    Duplicate(Verdict),
    /// For another repository or ref than ours (a Secret shared by two
    /// Deployments, or replicas configured differently): ignored. The
    /// hint's repository and ref, for the log.
    Foreign { repo: String, git_ref: String },
}

impl Received {
    pub fn label(&self) -> &'static str {
        match self {
            Received::Sync(_) => "ok",
            Received::Duplicate(v) => v.label(),
            Received::Foreign { .. } => "ignored",
        }
    }
}

/// The fan-out component: owned by the app, shared with the HTTP layer.
pub struct Peers {
    names: Vec<PeerName>,
    secret: crate::secret::SecretFile,
    me: Me,
    repo: String,
    git_ref: String,
    client: Option<reqwest::Client>,
    metrics: Arc<Metrics>,
    /// Ends every fan-out and send at shutdown.
    cancel: CancellationToken,
    seen: Mutex<hint::Seen>,
    /// The last delivery queued, for `/status`.
    last: Mutex<Option<Arc<send::Delivery>>>,
    /// Numbers the announcements (newer is higher).
    seq: AtomicU64,
    dispatch: Mutex<send::Dispatch>,
    lanes: Mutex<lanes::Lanes<Arc<send::Delivery>>>,
    /// Collapses commit-less announcements.
    window: Mutex<window::Window>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Peers {
    /// Builds the component; what it sends stops on `cancel`. `me` is the
    /// bound HTTP address; `repo` (redacted) and `git_ref` identify what
    /// the hints are about.
    pub fn start(
        config: &PeersConfig,
        me: Me,
        repo: String,
        git_ref: String,
        metrics: Arc<Metrics>,
        cancel: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Self::new(config, me, repo, git_ref, metrics, cancel))
    }

    fn new(
        config: &PeersConfig,
        me: Me,
        repo: String,
        git_ref: String,
        metrics: Arc<Metrics>,
        cancel: CancellationToken,
    ) -> Self {
        // Peers are pod addresses: never through an HTTP proxy from the environment.
        // Never redirected: a hint goes to the resolved address only, and
        // whatever answers there must not steer signed POSTs elsewhere.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(fanout::ATTEMPT_TIMEOUT)
            .connect_timeout(fanout::ATTEMPT_TIMEOUT)
            .no_proxy()
            .build()
            .map_err(|e| tracing::error!(error = %e, "cannot set up the HTTP client for peer hints; none will be sent"))
            .ok();
        Self {
            names: config.names.clone(),
            secret: crate::secret::SecretFile::new(
                config.secret_file.clone(),
                "--peer-secret-file",
                config.secret.clone(),
            ),
            me,
            repo,
            git_ref,
            client,
            metrics,
            cancel,
            seen: Mutex::new(hint::Seen::default()),
            last: Mutex::new(None),
            seq: AtomicU64::new(1),
            dispatch: Mutex::new(send::Dispatch::default()),
            lanes: Mutex::new(lanes::Lanes::default()),
            window: Mutex::new(window::Window::default()),
        }
    }

    /// A verified webhook (or an authenticated `POST /sync`) was accepted:
    /// tell the peers, in the background. Without a commit, the
    /// announcement may wait for the end of the current window, and share
    /// its fan-out with others ([`window`]).
    pub fn announce(self: &Arc<Self>, commit: Option<String>) {
        if commit.is_some() {
            return self.dispatch(commit);
        }
        let admitted = lock(&self.window).admit(std::time::Instant::now());
        match admitted {
            window::Admit::Now => self.dispatch(None),
            window::Admit::At(when) => {
                let peers = self.clone();
                self.spawn(async move {
                    tokio::time::sleep_until(when.into()).await;
                    lock(&peers.window).fired(std::time::Instant::now());
                    peers.dispatch(None);
                });
            }
            window::Admit::Collapsed => {
                tracing::debug!(
                    "a commit-less announcement joins the fan-out due at the window's end"
                );
            }
        }
    }

    /// Checks a hint that arrived at [`ENDPOINT`]. The caller counts it
    /// (it alone knows whether a refusal became a 429), and fires the sync
    /// trigger for [`Received::Sync`], nothing else.
    /// `settled(commit)` says whether this replica already publishes that
    /// commit (no pass running) or awaits it: only then is a hint for it a
    /// duplicate. Having been hinted a commit before says nothing: after
    /// A → B, a rollback hints A again, and must be acted on.
    pub fn receive(
        &self,
        body: &[u8],
        signature: Option<&str>,
        settled: impl FnOnce(&str) -> bool,
    ) -> Result<Received, Refusal> {
        let now = hint::unix_now();
        let verified = hint::verify(body, signature, &self.secret.accepted(), now);
        verified.map(|hint| {
            if !matching::same_repo(&self.repo, &hint.repo)
                || !matching::same_ref(&self.git_ref, &hint.git_ref)
            {
                return Received::Foreign {
                    repo: hint.repo,
                    git_ref: hint.git_ref,
                };
            }
            match lock(&self.seen).admit(&hint) {
                Verdict::New => match hint.commit {
                    Some(commit) if settled(&commit) => {
                        Received::Duplicate(Verdict::DuplicateCommit)
                    }
                    commit => Received::Sync(commit),
                },
                duplicate => Received::Duplicate(duplicate),
            }
        })
    }

    /// The last fan-out, if any.
    pub fn last_fan_out(&self) -> Option<FanOut> {
        lock(&self.last).as_ref().map(|d| d.record())
    }
}

#[cfg(test)]
mod tests;
