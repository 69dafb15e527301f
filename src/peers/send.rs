//! The sending side of [`Peers`]: each announcement becomes a fan-out
//! (resolve `--peers`, skip this instance, sign one hint), and the hint is
//! queued for every peer in that peer's own lane ([`super::lanes`]), sent
//! by a task of its own ([`fanout::deliver`]). Nothing waits for anything
//! else: fan-outs run side by side (up to [`FAN_OUTS_AT_ONCE`]), so a DNS
//! server that does not answer holds up only the lookup it does not
//! answer, and a peer that does not answer holds up only its own lane.
//!
//! Order is kept per kind of hint (with a commit, without): a fan-out that
//! finishes resolving after a newer one of its kind was handed out is
//! dropped, so a peer never gets an older commit after a newer one.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::fanout::{self, PeerOutcome, Result as Sent};
use super::lanes::{Job, Queued, Waiting};
use super::{lock, resolve, FanOut, Hint, Peers};

/// Fan-outs resolving at once; more wait (one of each kind, the newest).
/// Each holds one lookup per name on the blocking pool, for up to ~16 s
/// when the DNS server does not answer (3 lookups of 5 s): 4 lets the next
/// deliveries resolve on their own while a lookup hangs, and bounds the
/// threads a flood of deliveries can hold.
pub const FAN_OUTS_AT_ONCE: usize = 4;

/// An accepted trigger, not resolved yet.
#[derive(Debug)]
pub struct Announcement {
    seq: u64,
    commit: Option<String>,
}

impl Job for Announcement {
    fn seq(&self) -> u64 {
        self.seq
    }
    fn has_commit(&self) -> bool {
        self.commit.is_some()
    }
}

/// The fan-outs running, and those waiting for a free slot.
#[derive(Debug, Default)]
pub struct Dispatch {
    running: usize,
    waiting: Waiting<Announcement>,
}

/// One signed hint on its way to the peers a fan-out found, and how each
/// send ended (`/status`, the summary log line).
#[derive(Debug)]
pub struct Delivery {
    seq: u64,
    hint: Hint,
    at: String,
    body: Vec<u8>,
    /// The current secret's signature first, then the previous secret's.
    signatures: Vec<String>,
    skipped_self: Vec<SocketAddr>,
    unresolved: Vec<String>,
    outcomes: Mutex<Vec<PeerOutcome>>,
    done: tokio::sync::watch::Sender<bool>,
}

impl Job for Arc<Delivery> {
    fn seq(&self) -> u64 {
        self.seq
    }
    fn has_commit(&self) -> bool {
        self.hint.commit.is_some()
    }
}

impl Delivery {
    /// The record `/status` shows.
    pub fn record(&self) -> FanOut {
        FanOut {
            at: self.at.clone(),
            delivery: self.hint.id.clone(),
            commit: self.hint.commit.clone(),
            peers: lock(&self.outcomes).clone(),
            skipped_self: self.skipped_self.clone(),
            unresolved: self.unresolved.clone(),
        }
    }

    /// Resolves once every peer's send has ended.
    #[cfg(test)]
    pub async fn done(&self) {
        let mut done = self.done.subscribe();
        let _ = done.wait_for(|d| *d).await;
    }

    /// `outcome` replaces the peer's `sending` entry; the last one logs
    /// the summary.
    fn finish(&self, outcome: PeerOutcome) {
        let mut outcomes = lock(&self.outcomes);
        if let Some(entry) = outcomes.iter_mut().find(|o| o.address == outcome.address) {
            *entry = outcome;
        }
        if outcomes.iter().any(|o| o.result == Sent::Sending) {
            return;
        }
        self.summarise(&outcomes);
    }

    fn summarise(&self, outcomes: &[PeerOutcome]) {
        let count = |r| outcomes.iter().filter(|o| o.result == r).count();
        let failed = outcomes
            .iter()
            .filter(|o| !o.result.reached() && o.result != Sent::Superseded)
            .count();
        tracing::info!(
            delivery = %self.hint.id,
            commit = self.hint.commit.as_deref().unwrap_or(""),
            peers = outcomes.len(),
            delivered = count(Sent::Ok),
            duplicate = count(Sent::Duplicate),
            ignored = count(Sent::Ignored),
            superseded = count(Sent::Superseded),
            failed,
            unresolved = self.unresolved.len(),
            "peer hints sent"
        );
        self.done.send_replace(true);
    }

    fn mark_superseded(&self, address: SocketAddr) {
        self.finish(PeerOutcome {
            address,
            result: Sent::Superseded,
            attempts: 0,
            detail: Some("a newer hint took its place before it was sent".into()),
        });
    }
}

impl Peers {
    /// Runs `announcement`'s fan-out now, or queues it if
    /// [`FAN_OUTS_AT_ONCE`] are running.
    pub(super) fn dispatch(self: &Arc<Self>, commit: Option<String>) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let announcement = Announcement { seq, commit };
        {
            let mut dispatch = lock(&self.dispatch);
            if dispatch.running >= FAN_OUTS_AT_ONCE {
                if let Some(dropped) = dispatch.waiting.push(announcement) {
                    tracing::debug!(
                        seq = dropped.seq,
                        "announcement superseded before its fan-out"
                    );
                }
                return;
            }
            dispatch.running += 1;
        }
        let peers = self.clone();
        self.spawn(async move { peers.fan_outs(announcement).await });
    }

    /// Runs fan-outs until none waits; frees the slot.
    async fn fan_outs(self: Arc<Self>, mut next: Announcement) {
        loop {
            self.fan_out(next).await;
            let mut dispatch = lock(&self.dispatch);
            match dispatch.waiting.pop() {
                Some(waiting) => next = waiting,
                None => {
                    dispatch.running -= 1;
                    return;
                }
            }
        }
    }

    /// One fan-out: resolve (with retries), skip this instance, sign, queue
    /// the hint for each peer. The delivery, unless there is no HTTP client
    /// or a newer fan-out of its kind got there first.
    pub(super) async fn fan_out(
        self: &Arc<Self>,
        announcement: Announcement,
    ) -> Option<Arc<Delivery>> {
        self.client.as_ref()?;
        let (addrs, unresolved) = resolve::resolve_retrying(&self.names).await;
        for error in &unresolved {
            self.metrics.peer_hint_sent("unresolved");
            tracing::warn!(
                error,
                attempts = fanout::ATTEMPTS,
                "cannot resolve --peers; those peers get no hint"
            );
        }
        let local = resolve::local_ips();
        let (skipped_self, others): (Vec<_>, Vec<_>) =
            addrs.into_iter().partition(|a| self.me.is(*a, &local));
        self.metrics.set_peers_seen(others.len() as u64);
        let delivery = Arc::new(self.sign(announcement, &others, skipped_self, unresolved)?);
        self.queue(&delivery, others).then_some(delivery)
    }

    /// The hint, signed with the current secret, and the previous one
    /// within the rotation grace: a peer whose Secret mount is not updated
    /// yet refuses the first and takes the second.
    fn sign(
        &self,
        announcement: Announcement,
        peers: &[SocketAddr],
        skipped_self: Vec<SocketAddr>,
        unresolved: Vec<String>,
    ) -> Option<Delivery> {
        let hint = Hint::new(&self.repo, &self.git_ref, announcement.commit);
        let mut signed = self.secret.accepted().into_iter().map(|s| hint.sign(&s));
        let (body, first) = signed.next()?;
        let signatures = std::iter::once(first)
            .chain(signed.map(|(_, s)| s))
            .collect();
        let sending = |&address| PeerOutcome {
            address,
            result: Sent::Sending,
            attempts: 0,
            detail: None,
        };
        Some(Delivery {
            seq: announcement.seq,
            hint,
            at: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            body,
            signatures,
            skipped_self,
            unresolved,
            outcomes: Mutex::new(peers.iter().map(sending).collect()),
            done: tokio::sync::watch::channel(false).0,
        })
    }

    /// Queues `delivery` in each peer's lane, starting the lanes that were
    /// idle; false (nothing queued) when a newer fan-out of its kind was
    /// queued first.
    fn queue(self: &Arc<Self>, delivery: &Arc<Delivery>, peers: Vec<SocketAddr>) -> bool {
        let mut lanes = lock(&self.lanes);
        if !lanes.admit(delivery) {
            // Rare (this fan-out's lookups were slow): worth a line.
            tracing::info!(
                delivery = %delivery.hint.id,
                commit = delivery.hint.commit.as_deref().unwrap_or(""),
                "peer hints not sent: a newer delivery's were sent while these waited for DNS"
            );
            return false;
        }
        *lock(&self.last) = Some(delivery.clone());
        if peers.is_empty() {
            delivery.summarise(&[]);
        }
        for peer in peers {
            match lanes.push(peer, delivery.clone()) {
                Queued::Start(job) => {
                    let sender = self.clone();
                    self.spawn(async move { sender.lane(peer, job).await });
                }
                Queued::Waiting(Some(superseded)) => superseded.mark_superseded(peer),
                Queued::Waiting(None) => {}
            }
        }
        true
    }

    /// `peer`'s sender: its jobs one after the other, until its lane is empty.
    async fn lane(self: Arc<Self>, peer: SocketAddr, mut job: Arc<Delivery>) {
        let Some(client) = &self.client else { return };
        loop {
            let outcome =
                fanout::deliver(client, &self.metrics, peer, &job.body, &job.signatures).await;
            self.metrics.peer_hint_sent(outcome.result.label());
            job.finish(outcome);
            match lock(&self.lanes).next(peer) {
                Some(next) => job = next,
                None => return,
            }
        }
    }

    /// A fan-out of `commit` now, past the dispatch; its record once
    /// every send has ended.
    #[cfg(test)]
    pub(super) async fn fan_out_and_wait(
        self: &Arc<Self>,
        commit: Option<String>,
    ) -> Option<FanOut> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let delivery = self.fan_out(Announcement { seq, commit }).await?;
        delivery.done().await;
        Some(delivery.record())
    }

    /// Runs `task` until it ends or the process shuts down.
    pub(super) fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let cancel = self.cancel.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                () = task => {}
            }
        });
    }
}
