//! What the sync loop knows about itself, shared with the HTTP layer: written
//! by the loop (and by webhooks, for the expected hash), read by `/status`,
//! `/readyz`, `/livez` and git-sync's `/`. A plain `RwLock`: every critical
//! section is a copy of a few fields.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

/// When `/readyz` turns 503 again after the first publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadinessConfig {
    /// Not ready when the last successful sync is older than this.
    pub max_staleness: Duration,
    /// Not ready after this many consecutive failures; 0 = never for failures.
    pub max_failures: u32,
}

/// How many published commits [`Status::recently_published`] keeps.
const RECENTLY_PUBLISHED: usize = 32;

/// A snapshot of the loop's state.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub published_hash: Option<String>,
    pub last_attempt: Option<SystemTime>,
    pub last_success: Option<SystemTime>,
    pub consecutive_failures: u64,
    pub last_error: Option<String>,
    /// The commit a webhook announced and we have not published yet.
    pub expected_hash: Option<String>,
    /// The last commits this process published, newest last: a delivery
    /// replayed or arriving late announces one of them.
    pub recently_published: std::collections::VecDeque<String>,
    /// A sync succeeded since this process started (git-sync's `/` semantics).
    pub synced_once: bool,
    /// At start-up the published content verified and its last successful
    /// sync (before the restart) was on record: `last_success` is that time.
    pub restored: bool,
    /// The commit `--verify-signatures` refused last; cleared by a success.
    pub signature_refusal: Option<SignatureRefusal>,
    /// Of `consecutive_failures`, the signature refusals: readiness leaves
    /// them out (an unsigned push must not take every replica out of the
    /// Service; the published content is the newest that may be served).
    pub refusals_in_a_row: u64,
    /// When a refusal last found the published content still the newest
    /// verified one: readiness counts staleness from here too.
    pub last_refusal: Option<SystemTime>,
    /// Of `consecutive_failures` (refusals left out), those readiness
    /// counts: at most one more than the periods waited between them, as
    /// the loop counts them for `--max-failures`, so that the backoff's
    /// quick retries do not make the content unready within a second of
    /// an outage (see `sync::spanned_failures`). Set to the count by
    /// [`StatusHandle::failed`], lowered by the loop.
    pub spanned_failures: u64,
    /// When the running pass started, if one is running.
    pass_started: Option<Instant>,
    /// Why no pass can run yet: another instance holds the root lock.
    waiting: Option<String>,
}

/// Why `--verify-signatures` refused a commit, as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignatureRefusal {
    /// The commit that was not published.
    pub commit: String,
    /// What carried (or lacked) the signature: "commit" or "tag".
    pub object: String,
    /// That object's id (the tag's, for a tag).
    pub object_id: String,
    /// The metric's `result` label: unsigned, unknown_key, bad_signature, ...
    pub result: String,
    /// The key id or fingerprint involved, if any.
    pub key: Option<String>,
    /// The full reason.
    pub reason: String,
}

/// Shared, cheaply cloneable handle.
#[derive(Clone, Default)]
pub struct StatusHandle(Arc<RwLock<Status>>);

impl StatusHandle {
    pub fn snapshot(&self) -> Status {
        self.read(Status::clone)
    }

    fn read<T>(&self, f: impl FnOnce(&Status) -> T) -> T {
        match self.0.read() {
            Ok(guard) => f(&guard),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    fn write(&self, f: impl FnOnce(&mut Status)) {
        match self.0.write() {
            Ok(mut guard) => f(&mut guard),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    pub fn pass_started(&self) {
        self.write(|s| {
            s.pass_started = Some(Instant::now());
            s.last_attempt = Some(SystemTime::now());
        });
    }

    /// A pass succeeded with `hash` published.
    pub fn succeeded(&self, hash: &str) {
        self.write(|s| {
            s.pass_started = None;
            s.published_hash = Some(hash.to_string());
            s.last_success = Some(SystemTime::now());
            s.consecutive_failures = 0;
            s.spanned_failures = 0;
            s.last_error = None;
            s.signature_refusal = None;
            s.refusals_in_a_row = 0;
            s.synced_once = true;
            if s.expected_hash.as_deref() == Some(hash) {
                s.expected_hash = None;
            }
            if s.recently_published.back().map(String::as_str) != Some(hash) {
                if s.recently_published.len() == RECENTLY_PUBLISHED {
                    s.recently_published.pop_front();
                }
                s.recently_published.push_back(hash.to_string());
            }
        });
    }

    pub fn failed(&self, error: &str, consecutive: u64) {
        self.write(|s| {
            s.pass_started = None;
            s.consecutive_failures = consecutive;
            // At most this; the loop lowers it (`set_spanned_failures`).
            s.spanned_failures = consecutive;
            s.last_error = Some(error.to_string());
        });
    }

    /// The failures readiness counts now (see [`Status::spanned_failures`]).
    pub fn set_spanned_failures(&self, spanned: u64) {
        self.write(|s| s.spanned_failures = spanned);
    }

    /// A failed pass whose commit `--verify-signatures` refused.
    pub fn signature_refused(&self, error: &str, consecutive: u64, refusal: SignatureRefusal) {
        self.failed(error, consecutive);
        self.write(|s| {
            s.signature_refusal = Some(refusal);
            s.refusals_in_a_row += 1;
            s.last_refusal = Some(SystemTime::now());
        });
    }

    /// The pre-publish gate held a new commit back: the remote was reached
    /// and what is published stays (fresh, as git-sync's health stays
    /// good); `error` says why the new commit is not published. Not a
    /// failure. Nothing published by this process (or verified at
    /// start-up) makes nothing fresh.
    pub fn held(&self, error: &str) {
        self.write(|s| {
            s.pass_started = None;
            s.consecutive_failures = 0;
            s.spanned_failures = 0;
            s.refusals_in_a_row = 0;
            s.last_error = Some(error.to_string());
            if s.synced_once || s.restored {
                s.last_success = Some(SystemTime::now());
            }
        });
    }

    /// The published commit as found on disk at start-up (before any sync).
    pub fn set_published(&self, hash: Option<String>) {
        self.write(|s| s.published_hash = hash);
    }

    /// The published content verified at start-up; its last successful sync
    /// (by an earlier process) was at `at`. Readiness counts its age from there.
    pub fn restored(&self, at: SystemTime) {
        self.write(|s| {
            if !s.synced_once {
                s.last_success = Some(at);
                s.restored = true;
            }
        });
    }

    /// Waiting for the root lock (`Some(why)`), or no longer (`None`).
    pub fn set_waiting(&self, why: Option<String>) {
        self.write(|s| s.waiting = why);
    }

    /// A webhook announced this commit: expected until published, unless
    /// it was published already (a replay, a late delivery).
    pub fn expect(&self, hash: Option<String>) {
        if let Some(hash) = hash {
            self.write(|s| {
                let seen = s.published_hash.as_deref() == Some(hash.as_str())
                    || s.recently_published.contains(&hash);
                if !seen {
                    s.expected_hash = Some(hash);
                }
            });
        }
    }

    /// Whether a new announcement of `hash` would change nothing: it is
    /// the commit awaited (the loop fetches until it is published), or the
    /// published one while no pass runs. A running pass may have fetched
    /// before the push being announced and publish something else (B, when
    /// a rollback to the published A is announced mid-pass).
    pub fn settled(&self, hash: &str) -> bool {
        self.read(|s| {
            s.expected_hash.as_deref() == Some(hash)
                || (s.pass_started.is_none() && s.published_hash.as_deref() == Some(hash))
        })
    }

    /// The commit a webhook announced and is not published yet.
    pub fn expected(&self) -> Option<String> {
        self.read(|s| s.expected_hash.clone())
    }

    /// Gives up waiting for an announced commit that never arrived.
    pub fn clear_expected(&self) {
        self.write(|s| s.expected_hash = None);
    }

    /// Ready: content published by this process, fresh, and not failing.
    pub fn readiness(&self, rules: &ReadinessConfig) -> Result<(), String> {
        self.read(|s| readiness_of(s, rules, SystemTime::now()))
    }

    /// [`Self::readiness`] as of `now` (tests look ahead in paused time).
    #[cfg(test)]
    pub(crate) fn readiness_at(
        &self,
        rules: &ReadinessConfig,
        now: SystemTime,
    ) -> Result<(), String> {
        self.read(|s| readiness_of(s, rules, now))
    }

    /// Alive unless a pass has been running far longer than the sync timeout
    /// allows (the loop is wedged). Remote failures never make us unalive.
    pub fn liveness(&self, sync_timeout: Duration) -> Result<(), String> {
        let limit = sync_timeout * 2 + Duration::from_secs(30);
        self.read(|s| match s.pass_started {
            Some(started) if started.elapsed() > limit => Err(format!(
                "a sync has been running for {}s (sync timeout {}s)",
                started.elapsed().as_secs(),
                sync_timeout.as_secs()
            )),
            _ => Ok(()),
        })
    }
}

fn readiness_of(s: &Status, rules: &ReadinessConfig, now: SystemTime) -> Result<(), String> {
    if let Some(why) = &s.waiting {
        return Err(why.clone());
    }
    if !s.synced_once && !s.restored {
        return Err("no successful sync yet".into());
    }
    let failures = s
        .spanned_failures
        .min(s.consecutive_failures.saturating_sub(s.refusals_in_a_row));
    if rules.max_failures > 0 && failures >= u64::from(rules.max_failures) {
        return Err(format!(
            "{} consecutive sync failures",
            s.consecutive_failures.saturating_sub(s.refusals_in_a_row)
        ));
    }
    let fresh = s.last_success.max(s.last_refusal);
    let age = age_of(fresh, now).unwrap_or_default();
    if age > rules.max_staleness {
        return Err(format!(
            "last successful sync was {}s ago (limit {}s)",
            age.as_secs(),
            rules.max_staleness.as_secs()
        ));
    }
    Ok(())
}

/// How long ago `t` was (zero if it is in the future).
fn age_of(t: Option<SystemTime>, now: SystemTime) -> Option<Duration> {
    t.map(|t| now.duration_since(t).unwrap_or_default())
}

/// `/status` body.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub repo: String,
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub published_hash: Option<String>,
    pub last_attempt: Option<String>,
    pub last_success: Option<String>,
    /// Seconds since `last_success` (also a success from before a restart).
    pub last_success_age_seconds: Option<u64>,
    pub consecutive_failures: u64,
    pub last_error: Option<String>,
    pub expected_hash: Option<String>,
    /// Set while `--verify-signatures` refuses the commit the ref points at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_refusal: Option<SignatureRefusal>,
    pub ready: bool,
    pub not_ready_reason: Option<String>,
}

impl StatusReport {
    pub fn new(
        status: &Status,
        repo_redacted: &str,
        git_ref: &str,
        readiness: Result<(), String>,
    ) -> Self {
        let time =
            |t: Option<SystemTime>| t.map(|t| humantime::format_rfc3339_millis(t).to_string());
        Self {
            repo: repo_redacted.to_string(),
            git_ref: git_ref.to_string(),
            published_hash: status.published_hash.clone(),
            last_attempt: time(status.last_attempt),
            last_success: time(status.last_success),
            last_success_age_seconds: age_of(status.last_success, SystemTime::now())
                .map(|age| age.as_secs()),
            consecutive_failures: status.consecutive_failures,
            last_error: status.last_error.clone(),
            expected_hash: status.expected_hash.clone(),
            signature_refusal: status.signature_refusal.clone(),
            ready: readiness.is_ok(),
            not_ready_reason: readiness.err(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: ReadinessConfig = ReadinessConfig {
        max_staleness: Duration::from_secs(60),
        max_failures: 3,
    };

    #[test]
    fn not_ready_until_the_first_success() {
        let h = StatusHandle::default();
        assert!(h.readiness(&RULES).is_err());
        h.succeeded("abc");
        assert!(h.readiness(&RULES).is_ok());
    }

    #[test]
    fn failures_make_it_unready_and_a_success_recovers() {
        let h = StatusHandle::default();
        h.succeeded("abc");
        h.failed("boom", 2);
        assert!(h.readiness(&RULES).is_ok(), "2 < 3 failures");
        h.failed("boom", 3);
        assert!(h.readiness(&RULES).unwrap_err().contains("3 consecutive"));
        h.succeeded("abc");
        assert!(h.readiness(&RULES).is_ok());
        assert_eq!(h.snapshot().last_error, None);
    }

    /// A signature refusal is a failure (counted for readiness) that
    /// `/status` details until a success clears it.
    #[test]
    fn a_signature_refusal_is_a_failure_shown_until_a_success() {
        let h = StatusHandle::default();
        h.succeeded("abc");
        let refusal = SignatureRefusal {
            commit: "def".into(),
            object: "commit".into(),
            object_id: "def".into(),
            result: "unknown_key".into(),
            key: Some("SHA256:x".into()),
            reason: "signed by unknown key SHA256:x".into(),
        };
        h.signature_refused("refused def", 3, refusal.clone());
        let s = h.snapshot();
        assert_eq!(s.signature_refusal.as_ref(), Some(&refusal));
        assert_eq!(s.last_error.as_deref(), Some("refused def"));
        // Still ready: the published content is the newest that may be served.
        assert!(h.readiness(&RULES).is_ok(), "{:?}", h.readiness(&RULES));
        let report = StatusReport::new(&s, "r", "main", h.readiness(&RULES));
        let json = serde_json::to_value(&report).expect("json");
        assert_eq!(json["signature_refusal"]["result"], "unknown_key");
        assert_eq!(json["published_hash"], "abc");
        h.succeeded("def");
        assert_eq!(h.snapshot().signature_refusal, None);
        let json = serde_json::to_value(StatusReport::new(&h.snapshot(), "r", "main", Ok(())))
            .expect("json");
        assert!(json.get("signature_refusal").is_none(), "{json}");
    }

    #[test]
    fn a_gate_refusal_keeps_published_content_ready_and_fresh_but_says_why() {
        let h = StatusHandle::default();
        h.held("the pre-publish hook refused bbb");
        assert!(h.readiness(&RULES).is_err(), "nothing published yet");
        h.succeeded("aaa");
        h.write(|s| s.last_success = Some(SystemTime::now() - Duration::from_secs(3600)));
        for _ in 0..5 {
            h.held("the pre-publish hook refused bbb");
        }
        assert!(h.readiness(&RULES).is_ok(), "{:?}", h.readiness(&RULES));
        let s = h.snapshot();
        assert_eq!(s.consecutive_failures, 0);
        assert_eq!(s.published_hash.as_deref(), Some("aaa"));
        assert!(s.last_error.is_some_and(|e| e.contains("refused bbb")));
    }

    /// An unsigned push refused at every poll: the pods keep serving the
    /// last verified content and stay ready (fresh: the forge was reached);
    /// other failures after the refusals still count.
    #[test]
    fn signature_refusals_keep_published_content_ready() {
        let refusal = || SignatureRefusal {
            commit: "bbb".into(),
            object: "commit".into(),
            object_id: "bbb".into(),
            result: "unsigned".into(),
            key: None,
            reason: "unsigned".into(),
        };
        let h = StatusHandle::default();
        h.signature_refused("refused bbb", 1, refusal());
        assert!(h.readiness(&RULES).is_err(), "nothing published yet");
        let h = StatusHandle::default();
        h.succeeded("aaa");
        h.write(|s| s.last_success = Some(SystemTime::now() - Duration::from_secs(3600)));
        for n in 1..=5 {
            h.signature_refused("refused bbb", n, refusal());
        }
        assert!(h.readiness(&RULES).is_ok(), "{:?}", h.readiness(&RULES));
        assert_eq!(h.snapshot().consecutive_failures, 5);
        for n in 6..=8 {
            h.failed("network down", n);
        }
        let why = h.readiness(&RULES).expect_err("3 real failures");
        assert!(why.starts_with("3 consecutive"), "{why}");
    }

    #[test]
    fn zero_max_failures_ignores_failures() {
        let rules = ReadinessConfig {
            max_failures: 0,
            ..RULES
        };
        let h = StatusHandle::default();
        h.succeeded("abc");
        h.failed("boom", 100);
        assert!(h.readiness(&rules).is_ok());
    }

    #[test]
    fn stale_content_is_not_ready() {
        let s = Status {
            synced_once: true,
            last_success: Some(SystemTime::now() - Duration::from_secs(120)),
            ..Default::default()
        };
        assert!(readiness_of(&s, &RULES, SystemTime::now())
            .unwrap_err()
            .contains("120s ago"));
    }

    #[test]
    fn content_verified_at_start_up_is_ready_until_its_recorded_sync_is_too_old() {
        let h = StatusHandle::default();
        let now = SystemTime::now();
        h.set_published(Some("abc".into()));
        assert!(h.readiness(&RULES).is_err(), "nothing known yet");
        h.restored(now - Duration::from_secs(50));
        let s = h.snapshot();
        assert!(!s.synced_once, "git-sync's / still waits for a sync");
        assert_eq!(readiness_of(&s, &RULES, now), Ok(()));
        // The forge stays down: the same content ages past the limit.
        let later = now + Duration::from_secs(11);
        assert!(readiness_of(&s, &RULES, later)
            .unwrap_err()
            .contains("61s ago (limit 60s)"));
        // The failures that keep it from syncing count as usual.
        h.failed("forge down", 3);
        assert!(h.readiness(&RULES).unwrap_err().contains("3 consecutive"));
        let report = StatusReport::new(&h.snapshot(), "r", "main", Ok(()));
        assert!(report.last_success_age_seconds.is_some_and(|a| a >= 50));
    }

    #[test]
    fn a_sync_since_start_up_wins_over_the_recorded_one() {
        let h = StatusHandle::default();
        h.succeeded("abc");
        h.restored(SystemTime::now() - Duration::from_secs(3600));
        assert!(h.readiness(&RULES).is_ok(), "the late restore is ignored");
        assert!(!h.snapshot().restored);
    }

    #[test]
    fn expected_hash_clears_when_published() {
        let h = StatusHandle::default();
        h.succeeded("old");
        h.expect(Some("new".into()));
        assert_eq!(h.snapshot().expected_hash.as_deref(), Some("new"));
        h.succeeded("new");
        assert_eq!(h.snapshot().expected_hash, None);
        h.expect(Some("new".into()));
        assert_eq!(h.snapshot().expected_hash, None, "already published");
        h.succeeded("newer");
        h.expect(Some("old".into()));
        assert_eq!(
            h.snapshot().expected_hash,
            None,
            "a replay of an earlier delivery"
        );
        h.expect(Some("unknown".into()));
        assert_eq!(h.snapshot().expected_hash.as_deref(), Some("unknown"));
        assert!(h.settled("unknown"), "awaited");
        assert!(h.settled("newer"), "published");
        assert!(!h.settled("old"), "published before, not now");
        h.pass_started();
        assert!(h.settled("unknown"), "still awaited");
        assert!(!h.settled("newer"), "the running pass may publish another");
    }

    #[test]
    fn waiting_for_the_root_lock_is_not_ready_but_alive() {
        let h = StatusHandle::default();
        h.succeeded("abc");
        h.set_waiting(Some("waiting for the root lock".into()));
        assert_eq!(
            h.readiness(&RULES).unwrap_err(),
            "waiting for the root lock"
        );
        assert!(h.liveness(Duration::from_secs(1)).is_ok());
        h.set_waiting(None);
        assert!(h.readiness(&RULES).is_ok());
    }

    #[test]
    fn a_wedged_pass_fails_liveness() {
        let h = StatusHandle::default();
        assert!(h.liveness(Duration::from_secs(1)).is_ok());
        h.write(|s| s.pass_started = Some(Instant::now() - Duration::from_secs(100)));
        assert!(h.liveness(Duration::from_secs(1)).is_err());
        assert!(h.liveness(Duration::from_secs(60)).is_ok());
    }
}
