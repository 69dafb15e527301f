//! The loop's rules in tokio's paused time, against a scripted pass (the
//! loop's contract is [`SyncPass`]; the real [`Engine`] is driven in
//! `engine/tests.rs`). Virtual time is exact and free: a 10 s period takes
//! no real time, and the jitter shows as a range.

use std::collections::VecDeque;
use std::fs;
use std::sync::mpsc;
use std::sync::Mutex;

use tokio::sync::mpsc as tmpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant as VirtualInstant;

use super::*;
use crate::git::fetch;
use crate::status::ReadinessConfig;

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// What a failing pass ([`Step::Fail`]) is reported as.
const REF_NOT_FOUND: &str = "couldn't find remote ref \"main\"";

/// The failure count and last error the status holds.
fn last_failure(status: &StatusHandle) -> (u64, String) {
    let snapshot = status.snapshot();
    let error = snapshot.last_error.expect("a failure was recorded");
    assert_eq!(error, REF_NOT_FOUND);
    (snapshot.consecutive_failures, error)
}

fn hash(h: &str) -> CommitHash {
    CommitHash::parse(h).expect("40 hex")
}

/// One scripted pass.
enum Step {
    /// The remote moved to this commit: it is published.
    Publish(&'static str),
    /// Nothing new (what a pass does once the script has run out, too).
    Unchanged,
    /// The remote could not be read.
    Fail,
    /// The pre-publish gate refused `B`, due again in `retry_in`.
    Refused { retry_in: Duration },
    /// `--verify-signatures` refused `B` (`fresh`: verified in this pass).
    SignatureRefused { fresh: bool },
    /// Blocks (as a real pass on the blocking pool) until the test sends
    /// on the channel, then does the inner step.
    Hold(mpsc::Receiver<()>, Box<Step>),
    /// Runs until the budget's interrupt flag goes up, then ends as an
    /// interrupted pass does. Gives up after 10 s of real time (with
    /// nothing published), so that a broken rule fails a test instead of
    /// hanging it: virtual time stands still while a pass runs.
    UntilInterrupted,
    /// A bug.
    Panic,
}

/// What the scripted pass shares with the test.
#[derive(Default)]
struct Script {
    steps: VecDeque<Step>,
    published: Option<CommitHash>,
    restored: Option<SystemTime>,
    /// The budget of the pass that ran last (or runs now).
    budget: Option<Budget>,
}

#[derive(Clone)]
struct Scripted {
    script: Arc<Mutex<Script>>,
    t0: VirtualInstant,
    /// The virtual time at which each pass starts.
    starts: tmpsc::UnboundedSender<Duration>,
}

impl Scripted {
    fn lock(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script.lock().expect("script lock")
    }

    fn run(&self, step: Step, budget: &Budget) -> Result<Outcome, engine::Error> {
        match step {
            Step::Publish(h) => {
                let mut script = self.lock();
                let previous = script.published.replace(hash(h));
                Ok(Outcome::Published {
                    hash: hash(h),
                    previous,
                    fetched_bytes: 0,
                })
            }
            Step::Unchanged => match self.lock().published.clone() {
                Some(hash) => Ok(Outcome::Unchanged { hash }),
                None => Err(fetch::Error::RefNotFound("main".into()).into()),
            },
            Step::Fail => Err(fetch::Error::RefNotFound("main".into()).into()),
            Step::Refused { retry_in } => Err(engine::Error::Gate {
                hash: hash(B),
                message: "exit status 1".into(),
                published: self.lock().published.clone(),
                retry_in,
                ran: true,
            }),
            Step::SignatureRefused { fresh } => Err(engine::Error::Refused {
                hash: hash(B),
                refused: Box::new(engine::verification::Refused {
                    object: crate::verify::ObjectKind::Commit,
                    id: B.into(),
                    refusal: crate::verify::Refusal::Unsigned("commit"),
                }),
                published: self.lock().published.clone(),
                fresh,
            }),
            Step::Hold(release, then) => {
                release.recv().expect("the test releases the pass");
                self.run(*then, budget)
            }
            Step::UntilInterrupted => {
                let give_up = std::time::Instant::now() + secs(10);
                while !budget.is_interrupted() {
                    if std::time::Instant::now() > give_up {
                        return Err(engine::Error::Panic("never interrupted".into()));
                    }
                    std::thread::sleep(ms(1));
                }
                Err(fetch::Error::Interrupted.into())
            }
            Step::Panic => panic!("scripted panic"),
        }
    }
}

impl SyncPass for Scripted {
    fn sync_once(&mut self, budget: &Budget) -> Result<Outcome, engine::Error> {
        let step = {
            let mut script = self.lock();
            script.budget = Some(budget.clone());
            script.steps.pop_front().unwrap_or(Step::Unchanged)
        };
        let _ = self.starts.send(self.t0.elapsed());
        self.run(step, budget)
    }

    fn restore(&mut self, _budget: &Budget) -> Option<SystemTime> {
        self.lock().restored
    }

    fn fresh(&self) -> Self {
        self.clone()
    }

    fn published(&self) -> Option<CommitHash> {
        self.lock().published.clone()
    }

    fn worktree(&self, hash: &CommitHash) -> PathBuf {
        PathBuf::from("/root/.worktrees").join(hash.as_str())
    }
}

fn options() -> LoopOptions {
    LoopOptions {
        period: secs(10),
        init_period: secs(1),
        sync_timeout: secs(60),
        one_time: false,
        max_failures: -1,
        init_max_failures: -1,
        touch_file: None,
        error_file: None,
        repo_redacted: "file:///upstream".into(),
        git_ref: "main".into(),
    }
}

/// (hash, previous) of every publish the hooks ran for.
type Told = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A loop running a scripted pass, and what the test watches.
struct Harness {
    script: Arc<Mutex<Script>>,
    starts: tmpsc::UnboundedReceiver<Duration>,
    t0: VirtualInstant,
    status: StatusHandle,
    trigger: Trigger,
    cancel: CancellationToken,
    /// (hash, previous) of every publish the hooks were told of.
    hooked: Told,
    exit: JoinHandle<Exit>,
}

struct Setup {
    opts: LoopOptions,
    steps: Vec<Step>,
    published: Option<&'static str>,
    restored: Option<SystemTime>,
    hook_fails: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            opts: options(),
            steps: Vec::new(),
            published: None,
            restored: None,
            hook_fails: false,
        }
    }
}

fn start(setup: Setup) -> Harness {
    let t0 = VirtualInstant::now();
    let (starts_tx, starts) = tmpsc::unbounded_channel();
    let script = Arc::new(Mutex::new(Script {
        steps: setup.steps.into(),
        published: setup.published.map(hash),
        restored: setup.restored,
        budget: None,
    }));
    let pass = Scripted {
        script: script.clone(),
        t0,
        starts: starts_tx,
    };
    let status = StatusHandle::default();
    let reporter = Reporter {
        status: status.clone(),
        metrics: Arc::new(Metrics::new()),
    };
    let hooked: Told = Arc::default();
    let record = hooked.clone();
    let fails = setup.hook_fails;
    let cancel = CancellationToken::new();
    let hooks = Hooks::scripted(
        Arc::new(move |p: &Publish| {
            let mut record = record.lock().expect("lock");
            record.push((p.hash.clone(), p.previous.clone()));
            if fails {
                Err("scripted hook failure".into())
            } else {
                Ok(())
            }
        }),
        secs(1),
        setup.opts.one_time,
        cancel.clone(),
    );
    let trigger = Trigger::default();
    let exit = tokio::spawn(run(
        pass,
        setup.opts,
        trigger.clone(),
        reporter,
        hooks,
        cancel.clone(),
    ));
    Harness {
        script,
        starts,
        t0,
        status,
        trigger,
        cancel,
        hooked,
        exit,
    }
}

impl Harness {
    /// Waits (in virtual time) for the next pass; when it started.
    async fn next_pass(&mut self) -> Duration {
        self.starts.recv().await.expect("the loop is running")
    }

    /// Waits for the next pass to start and end (the passes these tests
    /// script take no virtual time, and the next one is due 250 ms later
    /// at the soonest); when it started.
    async fn pass(&mut self) -> Duration {
        let started = self.next_pass().await;
        settle().await;
        started
    }

    /// Lets virtual time run to `at` (since the start); the start times of
    /// all passes so far.
    async fn passes_until(&mut self, at: Duration) -> Vec<Duration> {
        tokio::time::sleep_until(self.t0 + at).await;
        let mut starts = Vec::new();
        while let Ok(start) = self.starts.try_recv() {
            starts.push(start);
        }
        starts
    }

    /// How the loop ended (within a virtual hour).
    async fn exit(self) -> Exit {
        tokio::time::timeout(secs(3600), self.exit)
            .await
            .expect("the loop ends within an hour")
            .expect("the loop does not panic")
    }

    async fn stop(self) -> Exit {
        self.cancel.cancel();
        self.exit().await
    }

    /// The budget of the pass that started last.
    fn budget(&self) -> Budget {
        let script = self.script.lock().expect("lock");
        script.budget.clone().expect("a pass has started")
    }

    fn hooked(&self) -> Vec<(String, Option<String>)> {
        self.hooked.lock().expect("lock").clone()
    }
}

/// Lets the loop finish what it is doing (1 ms of virtual time).
async fn settle() {
    tokio::time::sleep(ms(1)).await;
}

fn gaps(starts: &[Duration]) -> Vec<Duration> {
    starts.windows(2).map(|w| w[1] - w[0]).collect()
}

/// After the `k`-th consecutive failure the wait is in `[d/2, d]`, `d =
/// min(0.5 s · 2^(k-1), cap)`.
fn assert_backoff(gap: Duration, k: u32, cap: Duration) {
    let d = (ms(500) * 2u32.pow(k - 1)).min(cap);
    assert!(
        gap >= d / 2 && gap <= d,
        "wait after failure {k}: {gap:?}, expected {:?}..={d:?}",
        d / 2
    );
}

fn assert_period(gap: Duration, period: Duration) {
    assert!(
        gap >= period && gap <= period + period / 10,
        "wait after a success: {gap:?}, expected the period {period:?} plus up to 10%"
    );
}

// ---- backoff and period --------------------------------------------------------------------

#[test]
fn backoff_grows_and_is_capped_by_the_period() {
    let backoff = |period, failures| backoff::delay(BACKOFF_BASE, period, failures, Jitter::Equal);
    let period = Duration::from_secs(10);
    for failures in 1..30 {
        let wait = backoff(period, failures);
        assert!(wait <= period, "{failures}: {wait:?}");
        let raw = BACKOFF_BASE
            .saturating_mul(1 << (failures - 1).min(20))
            .min(period);
        assert!(wait >= raw / 2, "{failures}: {wait:?}");
    }
    assert!(backoff(period, 1) <= BACKOFF_BASE);
    assert!(backoff(period, 10) >= period / 2);
}

#[test]
fn period_jitter_is_small_and_never_negative() {
    let p = Duration::from_secs(10);
    for _ in 0..100 {
        let w = jittered_period(p);
        assert!(w >= p && w <= p + p / 10);
    }
}

/// The first pass runs at once; then one per period (plus jitter), and
/// nothing in between while nobody triggers.
#[tokio::test(start_paused = true)]
async fn the_first_pass_runs_at_once_then_one_per_period() {
    let mut h = start(Setup {
        steps: vec![Step::Publish(A)],
        ..Setup::default()
    });
    let starts = h.passes_until(secs(100)).await;
    assert_eq!(starts[0], Duration::ZERO);
    assert!((9..=10).contains(&gaps(&starts).len()), "{starts:?}");
    for gap in gaps(&starts) {
        assert_period(gap, secs(10));
    }
    assert_eq!(h.stop().await, Exit::Cancelled);
}

/// After a failure the wait doubles from 0.5 s, capped by `--init-period`
/// until the first success and by `--period` after it; a success resets it.
#[tokio::test(start_paused = true)]
async fn failures_back_off_from_half_a_second_capped_by_the_init_period_then_the_period() {
    let mut steps: Vec<Step> = (0..5).map(|_| Step::Fail).collect();
    steps.extend([Step::Publish(A), Step::Unchanged]);
    steps.extend((0..7).map(|_| Step::Fail));
    let mut h = start(Setup {
        steps,
        ..Setup::default()
    });
    let starts = h.passes_until(secs(200)).await;
    let gaps = gaps(&starts);
    for (k, gap) in (1..=5).zip(&gaps[0..5]) {
        assert_backoff(*gap, k, secs(1));
    }
    assert_period(gaps[5], secs(10));
    assert_period(gaps[6], secs(10));
    for (k, gap) in (1..=7).zip(&gaps[7..14]) {
        assert_backoff(*gap, k, secs(10));
    }
    h.stop().await;
}

// ---- failure limits ------------------------------------------------------------------------

/// `--max-failures N` tolerates N consecutive failures after a success (a
/// success resets the count) and ends the loop on the next one that comes
/// N periods or more after the first: git-sync waits a full period after
/// each failure, and the quicker retries of our backoff must not make an
/// outage end the process sooner than it would end git-sync.
#[tokio::test(start_paused = true)]
async fn max_failures_tolerates_n_consecutive_failures_and_n_periods_then_exits() {
    let mut opts = options();
    opts.max_failures = 2;
    let mut steps = vec![Step::Publish(A), Step::Fail, Step::Fail, Step::Unchanged];
    steps.extend((0..40).map(|_| Step::Fail));
    let mut h = start(Setup {
        opts,
        steps,
        ..Setup::default()
    });
    let status = h.status.clone();
    let t0 = h.t0;
    let exit = tokio::time::timeout(secs(3600), &mut h.exit).await;
    let ended = t0.elapsed();
    let starts = h.passes_until(ended).await;
    let (failures, error) = last_failure(&status);
    assert_eq!(
        exit.map(Result::ok),
        Ok(Some(Exit::TooManyFailures { failures, error }))
    );
    // The streak began with the 5th pass (after a publish, two failures
    // and a success); it ended the loop no sooner than 2 periods later.
    let first_failure = starts[4];
    assert!(failures >= 3, "{failures} failures");
    assert!(
        ended - first_failure >= secs(20),
        "exited {:?} after the first failure: {starts:?}",
        ended - first_failure
    );
    assert!(
        ended - first_failure < secs(35),
        "exited {:?} after the first failure: {starts:?}",
        ended - first_failure
    );
    assert_eq!(starts.len() as u64, 4 + failures);
}

/// Before the first success `--init-max-failures` is the limit, over
/// `--init-period`s (0: the first failure ends the loop); after it,
/// `--max-failures`.
#[tokio::test(start_paused = true)]
async fn init_max_failures_rules_until_the_first_success() {
    let mut opts = options();
    opts.init_max_failures = 1;
    opts.max_failures = 5;
    let mut h = start(Setup {
        opts: opts.clone(),
        steps: (0..10).map(|_| Step::Fail).collect(),
        ..Setup::default()
    });
    let t0 = h.t0;
    let status = h.status.clone();
    let exit = tokio::time::timeout(secs(3600), &mut h.exit).await;
    let ended = t0.elapsed();
    let (failures, error) = last_failure(&status);
    assert_eq!(
        exit.map(Result::ok),
        Ok(Some(Exit::TooManyFailures { failures, error }))
    );
    assert!(failures >= 2, "{failures} failures");
    assert!(
        (secs(1)..secs(3)).contains(&ended),
        "one init period (1 s) and the next retry: {ended:?}"
    );

    opts.init_max_failures = -1;
    opts.max_failures = 0;
    let mut steps: Vec<Step> = (0..20).map(|_| Step::Fail).collect();
    steps.extend([Step::Publish(A), Step::Fail]);
    let mut h = start(Setup {
        opts,
        steps,
        ..Setup::default()
    });
    let t0 = h.t0;
    let exit = tokio::time::timeout(secs(3600), &mut h.exit).await;
    assert_eq!(
        exit.map(Result::ok),
        Ok(Some(Exit::TooManyFailures {
            failures: 1,
            error: REF_NOT_FOUND.into()
        }))
    );
    let starts = h.passes_until(t0.elapsed()).await;
    assert_eq!(starts.len(), 22, "20 failures, a success, a failure");
}

/// A signature refusal is a failed sync (status, counters) that never
/// ends the loop, even with `--max-failures=0` (a restart cannot make the
/// commit pass); `/status` details it until a success. With `--one-time`
/// it ends the run with [`Exit::OneTimeRefused`].
#[tokio::test(start_paused = true)]
async fn signature_refusals_fail_syncs_but_never_exit_except_one_time() {
    let mut opts = options();
    opts.max_failures = 0;
    opts.init_max_failures = 0;
    let mut steps = vec![Step::Publish(A), Step::SignatureRefused { fresh: true }];
    steps.extend((0..5).map(|_| Step::SignatureRefused { fresh: false }));
    let mut h = start(Setup {
        opts: opts.clone(),
        steps,
        ..Setup::default()
    });
    let t0 = h.t0;
    let status = h.status.clone();
    // Published at 0 s; the first refusal ~10 s later (--period), then
    // retries with the failure backoff.
    let starts = h.passes_until(secs(15)).await;
    assert!(starts.len() >= 2, "{starts:?}");
    let snapshot = status.snapshot();
    assert!(snapshot.consecutive_failures >= 1, "{snapshot:?}");
    assert_eq!(
        snapshot.signature_refusal.map(|r| r.result),
        Some("unsigned".to_string())
    );
    let exit = tokio::time::timeout(secs(3600), &mut h.exit).await;
    assert!(exit.is_err(), "the loop must not exit: {exit:?}");
    assert!(h.passes_until(t0.elapsed()).await.len() >= 7);
    let snapshot = status.snapshot();
    assert_eq!(
        snapshot.consecutive_failures, 0,
        "the script ran out: success"
    );
    assert_eq!(snapshot.signature_refusal, None);
    h.cancel.cancel();

    opts.one_time = true;
    let h = start(Setup {
        opts,
        steps: vec![Step::SignatureRefused { fresh: true }],
        ..Setup::default()
    });
    let status = h.status.clone();
    assert_eq!(h.exit().await, Exit::OneTimeRefused);
    assert_eq!(status.snapshot().consecutive_failures, 1);
}

/// Refusals do not count toward `--max-failures`, also when other failures
/// come with them: an error, 20 refused polls (more than 2 periods) and
/// another error at `--max-failures=2` must not exit: 2 errors count, and
/// they span the periods the rule asks for.
#[tokio::test(start_paused = true)]
async fn refusals_between_errors_do_not_reach_max_failures() {
    let mut opts = options();
    opts.max_failures = 2;
    let mut steps = vec![
        Step::Publish(A),
        Step::Fail,
        Step::SignatureRefused { fresh: true },
    ];
    steps.extend((0..19).map(|_| Step::SignatureRefused { fresh: false }));
    steps.push(Step::Fail);
    let mut h = start(Setup {
        opts,
        steps,
        ..Setup::default()
    });
    let starts = h.passes_until(secs(7200)).await;
    assert!(starts.len() >= 23, "{} passes", starts.len());
    assert!(
        starts[22] - starts[1] > secs(20),
        "the refusals span 2 periods: {starts:?}"
    );
    assert!(!h.exit.is_finished(), "the loop exited: {:?}", h.exit);
    h.cancel.cancel();
}

/// `-1`: failures never end the loop.
#[tokio::test(start_paused = true)]
async fn max_failures_minus_one_retries_forever() {
    let mut h = start(Setup {
        steps: std::iter::once(Step::Publish(A))
            .chain((0..1000).map(|_| Step::Fail))
            .collect(),
        ..Setup::default()
    });
    let starts = h.passes_until(secs(3600)).await;
    assert!(starts.len() > 300, "{} passes in an hour", starts.len());
    assert!(!h.exit.is_finished());
    assert_eq!(
        h.status.snapshot().consecutive_failures as usize,
        starts.len() - 1
    );
    assert_eq!(h.stop().await, Exit::Cancelled);
}

/// A refusal of the pre-publish gate is no failure (no exit at
/// `--max-failures 0`, readiness kept); the next pass comes when the gate
/// is due again, or after the period if that is sooner.
#[tokio::test(start_paused = true)]
async fn a_gate_refusal_is_no_failure_and_the_next_pass_comes_when_the_gate_is_due() {
    let mut opts = options();
    opts.max_failures = 0;
    let mut h = start(Setup {
        opts,
        steps: vec![
            Step::Publish(A),
            Step::Refused { retry_in: secs(3) },
            Step::Refused { retry_in: secs(60) },
            Step::Unchanged,
        ],
        ..Setup::default()
    });
    let starts = h.passes_until(secs(30)).await;
    let gaps = gaps(&starts);
    assert_period(gaps[0], secs(10));
    assert_eq!(gaps[1], secs(3), "the gate was due in 3 s");
    assert_period(gaps[2], secs(10));
    let status = h.status.snapshot();
    assert_eq!(status.consecutive_failures, 0);
    let rules = ReadinessConfig {
        max_staleness: secs(60),
        max_failures: 1,
    };
    assert_eq!(h.status.readiness(&rules), Ok(()));
    assert_eq!(h.stop().await, Exit::Cancelled);
}

// ---- --one-time ----------------------------------------------------------------------------

/// `--one-time` retries failures (within the limits) and ends after the
/// first success, once the hooks' first run is in.
#[tokio::test(start_paused = true)]
async fn one_time_ends_after_the_first_success() {
    let mut opts = options();
    opts.one_time = true;
    let h = start(Setup {
        opts: opts.clone(),
        steps: vec![Step::Fail, Step::Fail, Step::Publish(A)],
        ..Setup::default()
    });
    let hooked = h.hooked.clone();
    assert_eq!(h.exit().await, Exit::OneTimeDone);
    assert_eq!(*hooked.lock().expect("lock"), vec![(A.to_string(), None)]);

    opts.init_max_failures = 0;
    let h = start(Setup {
        opts: opts.clone(),
        steps: vec![Step::Fail, Step::Publish(A)],
        ..Setup::default()
    });
    assert_eq!(
        h.exit().await,
        Exit::TooManyFailures {
            failures: 1,
            error: REF_NOT_FOUND.into()
        }
    );
}

/// A failed first hook run or a gate refusal ends `--one-time` as a failure.
#[tokio::test(start_paused = true)]
async fn one_time_fails_on_a_failed_hook_or_a_gate_refusal() {
    let mut opts = options();
    opts.one_time = true;
    let h = start(Setup {
        opts: opts.clone(),
        steps: vec![Step::Publish(A)],
        hook_fails: true,
        ..Setup::default()
    });
    assert_eq!(h.exit().await, Exit::OneTimeHooksFailed);
    let mut h = start(Setup {
        opts,
        steps: vec![Step::Refused { retry_in: secs(3) }],
        ..Setup::default()
    });
    assert_eq!((&mut h.exit).await.ok(), Some(Exit::OneTimeHooksFailed));
    assert_eq!(h.passes_until(Duration::ZERO).await.len(), 1);
}

// ---- triggers ------------------------------------------------------------------------------

/// A trigger (signal, webhook, `POST /sync`) starts a pass at once; the
/// period counts again from there.
#[tokio::test(start_paused = true)]
async fn a_trigger_starts_a_pass_at_once() {
    let mut h = start(Setup {
        steps: vec![Step::Publish(A)],
        ..Setup::default()
    });
    assert_eq!(h.next_pass().await, Duration::ZERO);
    tokio::time::sleep(secs(3)).await;
    h.trigger.fire();
    assert_eq!(h.next_pass().await, secs(3));
    let next = h.next_pass().await;
    assert_period(next - secs(3), secs(10));
    h.stop().await;
}

/// Triggers while a pass runs make one more pass right after it, however
/// many they were; passes never overlap.
#[tokio::test(start_paused = true)]
async fn triggers_during_a_pass_coalesce_into_one_more_pass() {
    let (release, held) = mpsc::channel();
    let mut h = start(Setup {
        steps: vec![Step::Hold(held, Box::new(Step::Publish(A)))],
        ..Setup::default()
    });
    assert_eq!(h.next_pass().await, Duration::ZERO);
    for _ in 0..5 {
        h.trigger.fire();
        tokio::task::yield_now().await;
    }
    release.send(()).expect("the pass waits");
    assert_eq!(h.next_pass().await, Duration::ZERO, "one more pass at once");
    let next = h.next_pass().await;
    assert_period(next, secs(10));
    h.stop().await;
}

/// A stop signal during a pass that then finishes within the shutdown
/// grace: what it did counts (the link may have moved). It is in /status,
/// and a `--one-time` run that synced is done, not stopped.
#[tokio::test(start_paused = true)]
async fn a_pass_that_finishes_within_the_shutdown_grace_counts() {
    for one_time in [false, true] {
        let (release, held) = mpsc::channel();
        let mut opts = options();
        opts.one_time = one_time;
        let mut h = start(Setup {
            opts,
            steps: vec![Step::Hold(held, Box::new(Step::Publish(A)))],
            ..Setup::default()
        });
        assert_eq!(h.next_pass().await, Duration::ZERO);
        let status = h.status.clone();
        h.cancel.cancel();
        release.send(()).expect("the pass waits");
        let exit = h.exit().await;
        assert_eq!(status.snapshot().published_hash.as_deref(), Some(A));
        let expected = match one_time {
            // The scripted hook's first result is cut short by the stop.
            true => [Exit::OneTimeDone, Exit::OneTimeStopped],
            false => [Exit::Cancelled, Exit::Cancelled],
        };
        assert!(expected.contains(&exit), "{one_time}: {exit:?}");
    }
}

#[tokio::test]
async fn a_burst_of_triggers_wakes_the_loop_once() {
    let trigger = Trigger::default();
    for _ in 0..5 {
        trigger.fire();
    }
    let first = tokio::time::timeout(Duration::from_millis(100), trigger.fired()).await;
    assert!(first.is_ok(), "a pending trigger wakes the loop");
    let second = tokio::time::timeout(Duration::from_millis(100), trigger.fired()).await;
    assert!(second.is_err(), "the burst was coalesced into one wake-up");
}

// ---- the commit a webhook announced --------------------------------------------------------

/// While an announced commit is not published, passes come after 1, 2, 4,
/// 8 s (capped by the period) and a fifth retry; then the announcement is
/// dropped and the period rules again.
#[tokio::test(start_paused = true)]
async fn an_announced_commit_not_yet_visible_is_retried_soon_then_given_up() {
    let mut h = start(Setup {
        steps: vec![Step::Publish(A)],
        ..Setup::default()
    });
    assert_eq!(h.next_pass().await, Duration::ZERO);
    tokio::time::sleep(secs(2)).await;
    h.status.expect(Some(B.to_string()));
    h.trigger.fire();
    let starts = h.passes_until(secs(60)).await;
    let expected: Vec<Duration> = [2, 3, 5, 9, 17, 27].map(secs).to_vec();
    assert_eq!(starts[..6], expected, "{starts:?}");
    assert_period(starts[6] - starts[5], secs(10));
    assert_eq!(h.status.snapshot().expected_hash, None, "given up");
    h.stop().await;
}

/// Once the announced commit is published, the quick retries stop.
#[tokio::test(start_paused = true)]
async fn the_quick_retries_stop_when_the_announced_commit_is_published() {
    let mut h = start(Setup {
        steps: vec![Step::Publish(A), Step::Unchanged, Step::Publish(B)],
        ..Setup::default()
    });
    assert_eq!(h.pass().await, Duration::ZERO);
    h.status.expect(Some(B.to_string()));
    h.trigger.fire();
    let announced = h.next_pass().await;
    assert_eq!(h.next_pass().await, announced + secs(1));
    let next = h.next_pass().await;
    assert_period(next - announced - secs(1), secs(10));
    assert_eq!(h.status.snapshot().expected_hash, None);
    assert_eq!(h.status.snapshot().published_hash.as_deref(), Some(B));
    h.stop().await;
}

// ---- readiness -----------------------------------------------------------------------------

const RULES: ReadinessConfig = ReadinessConfig {
    max_staleness: Duration::from_secs(30),
    max_failures: 3,
};

/// Not ready until the first success; unready at `--readiness-max-failures`
/// (3) consecutive failures once they span 2 periods of waiting (the quick
/// retries after a failure do not make it unready within a second of an
/// outage), and ready again after a success.
#[tokio::test(start_paused = true)]
async fn readiness_follows_the_first_success_and_the_failure_threshold() {
    let (release, held) = mpsc::channel();
    let mut steps = vec![Step::Hold(held, Box::new(Step::Publish(A)))];
    steps.extend((0..12).map(|_| Step::Fail));
    let mut h = start(Setup {
        steps,
        ..Setup::default()
    });
    h.next_pass().await;
    assert_eq!(
        h.status.readiness(&RULES),
        Err("no successful sync yet".into())
    );
    release.send(()).expect("the pass waits");
    settle().await;
    assert_eq!(h.status.readiness(&RULES), Ok(()));
    let first = h.pass().await;
    h.pass().await;
    let third = h.pass().await;
    assert!(third - first < secs(3), "{first:?} {third:?}");
    assert_eq!(
        h.status.readiness(&RULES),
        Ok(()),
        "3 quick failures span no period"
    );
    let unready_at = loop {
        let at = h.pass().await;
        if h.status.readiness(&RULES).is_err() {
            break at;
        }
        assert!(
            at - first < secs(45),
            "still ready {:?} into the outage",
            at - first
        );
    };
    assert!(unready_at - first >= secs(20), "{:?}", unready_at - first);
    assert!(h
        .status
        .readiness(&RULES)
        .is_err_and(|why| why.ends_with("consecutive sync failures")));
    // The script has run out: the next pass succeeds.
    loop {
        h.pass().await;
        if h.status.readiness(&RULES).is_ok() {
            break;
        }
    }
    h.stop().await;
}

/// Failures do not make old content fresh: `--readiness-max-staleness`
/// after the last success the content is not ready, failures or not.
#[tokio::test(start_paused = true)]
async fn content_goes_stale_while_passes_fail() {
    let wall0 = SystemTime::now();
    let rules = ReadinessConfig {
        max_failures: 0,
        ..RULES
    };
    let mut h = start(Setup {
        steps: std::iter::once(Step::Publish(A))
            .chain((0..100).map(|_| Step::Fail))
            .collect(),
        ..Setup::default()
    });
    h.passes_until(secs(29)).await;
    assert_eq!(h.status.readiness_at(&rules, wall0 + secs(29)), Ok(()));
    h.passes_until(secs(31)).await;
    let stale = h.status.readiness_at(&rules, wall0 + secs(31));
    assert!(stale.is_err_and(|e| e.contains("(limit 30s)")));
    h.stop().await;
}

/// Content verified at start-up (a restart during a forge outage) is ready
/// before the first pass has reached the remote.
#[tokio::test(start_paused = true)]
async fn restored_content_is_ready_before_the_first_pass_ends() {
    let (release, held) = mpsc::channel();
    let mut h = start(Setup {
        steps: vec![Step::Hold(held, Box::new(Step::Unchanged))],
        published: Some(A),
        restored: Some(SystemTime::now() - secs(5)),
        ..Setup::default()
    });
    h.next_pass().await;
    assert_eq!(h.status.readiness(&RULES), Ok(()));
    assert!(h.status.snapshot().restored);
    release.send(()).expect("the pass waits");
    h.stop().await;
}

// ---- hooks ---------------------------------------------------------------------------------

/// Hooks hear of every publish, and once of an unchanged first pass (a
/// restart never loses a notification); unchanged passes after it tell
/// them nothing.
#[tokio::test(start_paused = true)]
async fn hooks_hear_of_publishes_and_of_the_first_pass_only() {
    let mut h = start(Setup {
        steps: vec![
            Step::Unchanged,
            Step::Unchanged,
            Step::Unchanged,
            Step::Publish(B),
        ],
        published: Some(A),
        ..Setup::default()
    });
    h.passes_until(secs(100)).await;
    assert_eq!(
        h.hooked(),
        vec![(A.to_string(), None), (B.to_string(), Some(A.to_string()))]
    );
    h.stop().await;
}

/// The touch file is touched after a publish and after the first pass
/// only (idle passes leave it alone); the error file is written on a
/// failure and removed by the next success.
#[tokio::test(start_paused = true)]
async fn touch_and_error_files_follow_publishes_and_failures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (touch, error) = (dir.path().join("touch"), dir.path().join("error.json"));
    let mut opts = options();
    opts.touch_file = Some(touch.clone());
    opts.error_file = Some(error.clone());
    let mut h = start(Setup {
        opts,
        steps: vec![
            Step::Unchanged,
            Step::Unchanged,
            Step::Unchanged,
            Step::Fail,
            Step::Publish(B),
        ],
        published: Some(A),
        ..Setup::default()
    });
    h.pass().await;
    assert!(touch.exists(), "touched after the first pass");
    fs::remove_file(&touch).expect("remove the touch file");
    h.pass().await;
    h.pass().await;
    assert!(!touch.exists(), "touched by an idle pass");
    h.pass().await;
    let written = fs::read_to_string(&error).expect("the error file after a failure");
    assert!(written.contains("couldn't find remote ref"), "{written}");
    h.pass().await;
    assert!(touch.exists(), "touched after a publish");
    assert!(!error.exists(), "the error file outlived a success");
    h.stop().await;
}

// ---- the sync timeout, shutdown, panics ----------------------------------------------------

/// At `--sync-timeout` the interrupt flag goes up (the git layer's own loops stop on
/// it); the pass then fails and the loop goes on.
#[tokio::test(start_paused = true)]
async fn the_sync_timeout_raises_the_interrupt_flag() {
    let mut opts = options();
    opts.sync_timeout = secs(5);
    let mut h = start(Setup {
        opts,
        steps: vec![Step::Publish(A), Step::UntilInterrupted],
        ..Setup::default()
    });
    h.next_pass().await;
    let started = h.next_pass().await;
    let budget = h.budget();
    tokio::time::advance(ms(4800)).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!budget.is_interrupted(), "interrupted before the timeout");
    tokio::time::advance(ms(400)).await;
    settle().await;
    assert!(budget.is_interrupted());
    assert_eq!(h.status.snapshot().consecutive_failures, 1);
    let next = h.next_pass().await;
    assert_backoff(next - started - ms(5200), 1, secs(10));
    h.stop().await;
}

/// Shutdown during a pass raises the interrupt flag and ends the loop;
/// during the wait it ends the loop at once.
#[tokio::test(start_paused = true)]
async fn shutdown_interrupts_a_pass_or_ends_the_wait() {
    let mut h = start(Setup {
        steps: vec![Step::Publish(A), Step::UntilInterrupted],
        ..Setup::default()
    });
    h.next_pass().await;
    h.next_pass().await;
    let budget = h.budget();
    assert!(!budget.is_interrupted());
    assert_eq!(h.stop().await, Exit::Cancelled);
    assert!(budget.is_interrupted());

    let mut h = start(Setup {
        steps: vec![Step::Publish(A)],
        ..Setup::default()
    });
    h.next_pass().await;
    tokio::time::sleep(secs(5)).await;
    let t0 = h.t0;
    assert_eq!(h.stop().await, Exit::Cancelled);
    assert_eq!(t0.elapsed(), secs(5), "ended at once");
}

/// A panicking pass is a failure like any other: counted, reported, and
/// the loop goes on with a fresh engine.
#[tokio::test(start_paused = true)]
async fn a_panicking_pass_counts_as_a_failure_and_the_loop_goes_on() {
    let mut opts = options();
    opts.max_failures = 1;
    let mut h = start(Setup {
        opts,
        steps: vec![Step::Publish(A), Step::Panic],
        ..Setup::default()
    });
    h.next_pass().await;
    let panicked = h.pass().await;
    let status = h.status.snapshot();
    assert_eq!(status.consecutive_failures, 1);
    assert!(status
        .last_error
        .is_some_and(|e| e.contains("internal error") && e.contains("scripted panic")));
    let next = h.pass().await;
    assert_backoff(next - panicked, 1, secs(10));
    assert_eq!(h.status.snapshot().consecutive_failures, 0);
    assert_eq!(h.stop().await, Exit::Cancelled);
}
