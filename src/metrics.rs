//! Prometheus metrics, exposed at `/metrics`.
//!
//! The git-sync v4 families keep git-sync's names, types and labels, so its
//! dashboards and its e2e scrapes (exact line prefixes such as
//! `git_sync_count_total{status="success"} 1`) keep working. Our own extras
//! are prefixed `git_sidecar_`, and the `process_*` figures use the names of
//! Go's process collector.
//!
//! The exposition is OpenMetrics text (prometheus-client's encoding, ending in
//! `# EOF`), served with [`CONTENT_TYPE`] to scrapers that ask for it, and
//! otherwise turned into the Prometheus text format git-sync serves
//! ([`to_prometheus_text`]). Two things prometheus-client cannot express
//! are handled here:
//!
//! * **Summary.** prometheus-client has no summary type, so
//!   `git_sync_duration_seconds` (a Go summary without objectives: only
//!   `_sum` and `_count`) is written by hand, in the same syntax, ahead of
//!   the registry's families and `# EOF`.
//! * **Counters without `_total`.** git-sync's `git_sync_askpass_calls` and
//!   `git_sync_refresh_github_app_token_count` are Go counters whose exposed
//!   sample names have no `_total`; OpenMetrics requires `_total` on counter
//!   samples. They are exposed with their exact git-sync sample names and
//!   `# TYPE … unknown` (valid OpenMetrics; PromQL's `rate()` works the same,
//!   only the metadata type differs from git-sync's `counter`).
//!
//! The `process_*` figures are read from `/proc/self` at scrape time (left
//! out where unreadable), with CPU ticks taken as 100 per second, as Go's
//! procfs does.

use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeMetric, MetricEncoder,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

/// The Content-Type of [`Metrics::encode`]'s output (OpenMetrics 1.0 text).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The Content-Type of [`Metrics::encode_text`]'s output: the Prometheus
/// text format, what git-sync's Go handler serves.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Buckets of `git_sidecar_sync_duration_seconds`, in seconds.
const SYNC_DURATION_BUCKETS: [f64; 13] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Linux's USER_HZ, the unit of the CPU times in `/proc/<pid>/stat`. It is 100
/// on every mainstream architecture; Go's procfs hard-codes it the same way.
const USER_HZ: f64 = 100.0;

/// How one sync-loop iteration ended (git-sync's `status` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SyncResult {
    /// Something was published: the hash changed, or this was the first sync.
    Success,
    /// The iteration failed.
    Error,
    /// Nothing to do.
    Noop,
}

impl SyncResult {
    const ALL: [SyncResult; 3] = [SyncResult::Success, SyncResult::Error, SyncResult::Noop];

    /// The `status` label value: `success`, `error` or `noop`.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncResult::Success => "success",
            SyncResult::Error => "error",
            SyncResult::Noop => "noop",
        }
    }

    fn index(self) -> usize {
        match self {
            SyncResult::Success => 0,
            SyncResult::Error => 1,
            SyncResult::Noop => 2,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HookLabels {
    name: String,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    provider: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RevisionLabels {
    sha: String,
    r#ref: String,
}

fn status_label(success: bool) -> &'static str {
    if success {
        "success"
    } else {
        "error"
    }
}

/// Locks, ignoring poisoning: the guarded data are plain numbers that are
/// never left half-updated.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A counter exposed under its exact registered name, without the `_total`
/// OpenMetrics forces on counters, and therefore typed `unknown`.
#[derive(Clone, Debug, Default)]
struct UnsuffixedCounter(Counter);

impl UnsuffixedCounter {
    fn inc(&self) {
        self.0.inc();
    }
}

impl TypedMetric for UnsuffixedCounter {
    const TYPE: MetricType = MetricType::Unknown;
}

impl EncodeMetric for UnsuffixedCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        // A gauge sample is `name{labels} value`, with no suffix.
        encoder.encode_gauge(&self.0.get())
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// `git_sidecar_published_revision_info`: one sample, for the revision
/// published now. Swapped under one lock, so a scrape never sees two
/// revisions, nor none between two.
#[derive(Clone, Debug, Default)]
struct RevisionInfo(Arc<Mutex<Option<RevisionLabels>>>);

impl TypedMetric for RevisionInfo {
    const TYPE: MetricType = MetricType::Gauge;
}

impl EncodeMetric for RevisionInfo {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        if let Some(labels) = lock(&self.0).as_ref() {
            encoder.encode_family(labels)?.encode_gauge(&1i64)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }

    fn is_empty(&self) -> bool {
        lock(&self.0).is_none()
    }
}

/// The peer fan-out's families (`--peers`).
#[derive(Debug)]
struct PeerMetrics {
    sent: Family<ResultLabels, Counter>,
    retries: Counter,
    received: Family<ResultLabels, Counter>,
    seen: Gauge<u64, std::sync::atomic::AtomicU64>,
}

impl PeerMetrics {
    fn register(registry: &mut Registry) -> Self {
        let this = PeerMetrics {
            sent: Family::default(),
            retries: Counter::default(),
            received: Family::default(),
            seen: Gauge::default(),
        };
        registry.register(
            "git_sidecar_peer_hints_sent",
            "Peer hints sent, one per peer and delivery, by outcome (ok: the peer syncs, duplicate, \
             ignored, refused, rejected, timeout, error), and one per name of --peers that did not \
             resolve at a delivery (unresolved)",
            this.sent.clone(),
        );
        registry.register(
            "git_sidecar_peer_hint_retries",
            "Peer hint attempts that failed and were retried",
            this.retries.clone(),
        );
        registry.register(
            "git_sidecar_peer_hints_received",
            "Peer hints received, by outcome (ok, duplicate_delivery, duplicate_commit, ignored, \
             missing_signature, bad_signature, malformed, stale, bad_body, rate_limited, disabled)",
            this.received.clone(),
        );
        registry.register(
            "git_sidecar_peers",
            "Peers found by the last resolution of --peers, this instance not counted",
            this.seen.clone(),
        );
        this
    }
}

/// Sum and count per [`SyncResult`], for the hand-written summary.
#[derive(Debug, Default)]
struct SummaryState {
    sum: [f64; 3],
    count: [u64; 3],
}

/// All metrics of the process. Cheap to share behind an `Arc`; every method
/// takes `&self`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    sync_summary: Mutex<SummaryState>,
    sync_count: Family<StatusLabels, Counter>,
    fetch_count: Counter,
    askpass_calls: Family<StatusLabels, UnsuffixedCounter>,
    github_app_token_refresh: Family<StatusLabels, UnsuffixedCounter>,
    hook_runs: Family<HookLabels, Counter>,
    last_success: Gauge<f64, std::sync::atomic::AtomicU64>,
    published_revision: RevisionInfo,
    consecutive_failures: Gauge<u64, std::sync::atomic::AtomicU64>,
    webhook_requests: Family<WebhookLabels, Counter>,
    sync_duration: Family<StatusLabels, Histogram>,
    fetched_bytes: Counter,
    peers: PeerMetrics,
    signature_verifications: Family<ResultLabels, Counter>,
}

fn new_sync_histogram() -> Histogram {
    Histogram::new(SYNC_DURATION_BUCKETS)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every family registered. The label values
    /// known up front (sync, askpass and GitHub-App statuses) start at zero,
    /// so their series exist from the first scrape.
    pub fn new() -> Self {
        let mut registry = Registry::default();

        // git-sync v4 families. prometheus-client appends `_total` to
        // counter samples, so counters are registered without it.
        let sync_count = Family::<StatusLabels, Counter>::default();
        registry.register(
            "git_sync_count",
            "How many git syncs completed, partitioned by state (success, error, noop)",
            sync_count.clone(),
        );
        let fetch_count = Counter::default();
        registry.register(
            "git_fetch_count",
            "How many git fetches were run",
            fetch_count.clone(),
        );
        let askpass_calls = Family::<StatusLabels, UnsuffixedCounter>::default();
        registry.register(
            "git_sync_askpass_calls",
            "How many git askpass calls completed, partitioned by state (success, error)",
            askpass_calls.clone(),
        );
        let github_app_token_refresh = Family::<StatusLabels, UnsuffixedCounter>::default();
        registry.register(
            "git_sync_refresh_github_app_token_count",
            "How many times the GitHub app token was refreshed, partitioned by state (success, error)",
            github_app_token_refresh.clone(),
        );
        let hook_runs = Family::<HookLabels, Counter>::default();
        registry.register(
            "git_sync_hook_run_count",
            "How many hook runs completed, partitioned by name and state (success, error)",
            hook_runs.clone(),
        );

        // Our own.
        let last_success = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "git_sidecar_last_success_timestamp_seconds",
            "Unix time of the last successful sync (published or no-op), 0 before the first",
            last_success.clone(),
        );
        let published_revision = RevisionInfo::default();
        registry.register(
            "git_sidecar_published_revision_info",
            "The published revision: 1 for the commit and ref the link points at now",
            published_revision.clone(),
        );
        let consecutive_failures = Gauge::<u64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "git_sidecar_consecutive_failures",
            "Sync failures since the last success",
            consecutive_failures.clone(),
        );
        let webhook_requests = Family::<WebhookLabels, Counter>::default();
        registry.register(
            "git_sidecar_webhook_requests",
            "Incoming webhook and trigger requests, by provider and outcome",
            webhook_requests.clone(),
        );
        let sync_duration = Family::<StatusLabels, Histogram>::new_with_constructor(
            new_sync_histogram as fn() -> Histogram,
        );
        registry.register(
            "git_sidecar_sync_duration_seconds",
            "Duration of sync-loop iterations, by outcome",
            sync_duration.clone(),
        );
        let fetched_bytes = Counter::default();
        registry.register(
            "git_sidecar_fetched_bytes",
            "Bytes received from the remote by fetches",
            fetched_bytes.clone(),
        );
        let peers = PeerMetrics::register(&mut registry);
        let signature_verifications = Family::<ResultLabels, Counter>::default();
        registry.register(
            "git_sidecar_signature_verifications",
            "Signature verifications (--verify-signatures) of commits and tags, by result: \
             valid, or why the signature was refused",
            signature_verifications.clone(),
        );
        registry.register_collector(Box::new(ProcessCollector));

        for result in SyncResult::ALL {
            let labels = StatusLabels {
                status: result.as_str(),
            };
            drop(sync_count.get_or_create(&labels));
            drop(sync_duration.get_or_create(&labels));
        }
        for success in [true, false] {
            let labels = StatusLabels {
                status: status_label(success),
            };
            drop(askpass_calls.get_or_create(&labels));
            drop(github_app_token_refresh.get_or_create(&labels));
        }

        Metrics {
            registry,
            sync_summary: Mutex::new(SummaryState::default()),
            sync_count,
            fetch_count,
            askpass_calls,
            github_app_token_refresh,
            hook_runs,
            last_success,
            published_revision,
            consecutive_failures,
            webhook_requests,
            sync_duration,
            fetched_bytes,
            peers,
            signature_verifications,
        }
    }

    /// `git_sidecar_signature_verifications_total{result}`: `valid` or a
    /// [`crate::verify::Refusal::label`] (a small fixed set).
    pub fn signature_verification(&self, result: &'static str) {
        self.signature_verifications
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// One loop iteration finished: updates `git_sync_duration_seconds`,
    /// `git_sync_count_total` and `git_sidecar_sync_duration_seconds`.
    pub fn observe_sync(&self, result: SyncResult, duration: Duration) {
        let secs = duration.as_secs_f64();
        {
            let mut summary = lock(&self.sync_summary);
            summary.sum[result.index()] += secs;
            summary.count[result.index()] += 1;
        }
        let labels = StatusLabels {
            status: result.as_str(),
        };
        self.sync_count.get_or_create(&labels).inc();
        self.sync_duration.get_or_create(&labels).observe(secs);
    }

    /// An update was required (the hash changed, or first sync):
    /// `git_fetch_count_total`.
    pub fn inc_fetch(&self) {
        self.fetch_count.inc();
    }

    /// Bytes received by a fetch: `git_sidecar_fetched_bytes_total`.
    pub fn add_fetched_bytes(&self, bytes: u64) {
        self.fetched_bytes.inc_by(bytes);
    }

    /// `git_sidecar_last_success_timestamp_seconds`.
    pub fn set_last_success(&self, at: SystemTime) {
        let secs = at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.last_success.set(secs);
    }

    /// `git_sidecar_published_revision_info{sha,ref} 1`, replacing the
    /// previous revision's series.
    pub fn set_published_revision(&self, sha: &str, git_ref: &str) {
        *lock(&self.published_revision.0) = Some(RevisionLabels {
            sha: sha.to_owned(),
            r#ref: git_ref.to_owned(),
        });
    }

    /// `git_sidecar_consecutive_failures`.
    pub fn set_consecutive_failures(&self, n: u64) {
        self.consecutive_failures.set(n);
    }

    /// `git_sidecar_webhook_requests_total{provider,result}`. Both values
    /// must come from small fixed sets (they are series labels).
    pub fn webhook_request(&self, provider: &str, result: &str) {
        self.webhook_requests
            .get_or_create(&WebhookLabels {
                provider: provider.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    /// `git_sync_hook_run_count_total{name,status}`; `name` is `exechook`,
    /// `webhook` or `pre-publish-exechook`.
    pub fn hook_run(&self, name: &str, success: bool) {
        self.hook_runs
            .get_or_create(&HookLabels {
                name: name.to_owned(),
                status: status_label(success),
            })
            .inc();
    }

    /// `git_sync_askpass_calls{status}`: one call of the askpass URL.
    pub fn askpass_call(&self, success: bool) {
        self.askpass_calls
            .get_or_create(&StatusLabels {
                status: status_label(success),
            })
            .inc();
    }

    /// `git_sync_refresh_github_app_token_count{status}`: one App-token mint.
    pub fn github_app_token_refresh(&self, success: bool) {
        self.github_app_token_refresh
            .get_or_create(&StatusLabels {
                status: status_label(success),
            })
            .inc();
    }

    /// `git_sidecar_peer_hints_sent_total{result}`: one peer's delivery ended.
    pub fn peer_hint_sent(&self, result: &'static str) {
        self.peers
            .sent
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// `git_sidecar_peer_hint_retries_total`: an attempt failed and is retried.
    pub fn peer_hint_retry(&self) {
        self.peers.retries.inc();
    }

    /// `git_sidecar_peer_hints_received_total{result}`.
    pub fn peer_hint_received(&self, result: &'static str) {
        self.peers
            .received
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// `git_sidecar_peers`: peers found by the last resolution (this instance not counted).
    pub fn set_peers_seen(&self, n: u64) {
        self.peers.seen.set(n);
    }

    /// The whole exposition, OpenMetrics text ending in `# EOF`; serve it
    /// with [`CONTENT_TYPE`].
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        match self.encode_into(&mut out) {
            Ok(()) => out,
            Err(_) => {
                // Writing to a String cannot fail; an encoder error is a bug.
                // Serve a valid, empty exposition rather than a truncated one.
                tracing::error!("encoding the metrics failed");
                String::from("# EOF\n")
            }
        }
    }

    /// The same figures in the Prometheus text format (0.0.4), for a
    /// scraper that does not ask for OpenMetrics (git-sync serves only
    /// this): see [`to_prometheus_text`].
    pub fn encode_text(&self) -> String {
        to_prometheus_text(&self.encode())
    }

    fn encode_into(&self, out: &mut String) -> fmt::Result {
        self.encode_sync_summary(out)?;
        encode_registry(out, &self.registry)?;
        encode_eof(out)
    }

    /// `git_sync_duration_seconds`, a summary without quantiles, written by
    /// hand (prometheus-client has no summary type).
    fn encode_sync_summary(&self, out: &mut String) -> fmt::Result {
        const NAME: &str = "git_sync_duration_seconds";
        let summary = lock(&self.sync_summary);
        writeln!(out, "# HELP {NAME} Summary of git_sync durations.")?;
        writeln!(out, "# TYPE {NAME} summary")?;
        for result in SyncResult::ALL {
            let status = result.as_str();
            let i = result.index();
            write!(out, "{NAME}_sum{{status=\"{status}\"}} ")?;
            write_f64(out, summary.sum[i])?;
            out.push('\n');
            writeln!(
                out,
                "{NAME}_count{{status=\"{status}\"}} {}",
                summary.count[i]
            )?;
        }
        Ok(())
    }
}

/// A float in exposition syntax.
fn write_f64(out: &mut String, v: f64) -> fmt::Result {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else if v == v.trunc() && v.abs() < 1e15 {
        // Keep a decimal point, as prometheus-client does: `0.0`, `3.0`.
        write!(out, "{v:.1}")?;
    } else {
        write!(out, "{v}")?;
    }
    Ok(())
}

/// The `process_*` families of Go's process collector, read from `/proc` at
/// scrape time. A figure that cannot be read (not Linux, no `/proc`) is left
/// out.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let p = ProcessStats::read();
        if let Some(v) = p.cpu_seconds {
            let m = ConstCounter::new(v);
            m.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                m.metric_type(),
            )?)?;
        }
        let gauges = [
            (
                "process_open_fds",
                "Number of open file descriptors.",
                p.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                p.max_fds,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                p.virtual_memory,
            ),
            (
                "process_virtual_memory_max_bytes",
                "Maximum amount of virtual memory available in bytes.",
                p.virtual_memory_max,
            ),
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                p.resident_memory,
            ),
        ];
        for (name, help, value) in gauges {
            encode_const_gauge(&mut encoder, name, help, value)?;
        }
        encode_const_gauge(
            &mut encoder,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            p.start_time,
        )
    }
}

fn encode_const_gauge<N: EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: Option<N>,
) -> fmt::Result {
    if let Some(v) = value {
        let m = ConstGauge::new(v);
        m.encode(encoder.encode_descriptor(name, help, None, m.metric_type())?)?;
    }
    Ok(())
}

/// One reading of `/proc/self`.
#[derive(Debug, Default, PartialEq)]
struct ProcessStats {
    cpu_seconds: Option<f64>,
    start_time: Option<f64>,
    virtual_memory: Option<u64>,
    resident_memory: Option<u64>,
    open_fds: Option<u64>,
    max_fds: Option<u64>,
    virtual_memory_max: Option<u64>,
}

impl ProcessStats {
    fn read() -> Self {
        let mut s = ProcessStats::default();
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            if let Some(f) = parse_stat(&stat) {
                s.cpu_seconds = Some((f.utime + f.stime) as f64 / USER_HZ);
                s.virtual_memory = Some(f.vsize);
                let boot = std::fs::read_to_string("/proc/stat")
                    .ok()
                    .and_then(|t| parse_boot_time(&t));
                s.start_time = boot.map(|b| b as f64 + f.starttime as f64 / USER_HZ);
            }
        }
        s.resident_memory = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|t| parse_status_kib(&t, "VmRSS:"))
            .map(|kib| kib.saturating_mul(1024));
        s.open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as u64);
        if let Ok(limits) = std::fs::read_to_string("/proc/self/limits") {
            s.max_fds = parse_limit(&limits, "Max open files");
            s.virtual_memory_max = parse_limit(&limits, "Max address space");
        }
        s
    }
}

/// The fields of `/proc/<pid>/stat` we use.
#[derive(Debug, PartialEq)]
struct StatFields {
    utime: u64,
    stime: u64,
    starttime: u64,
    vsize: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses
/// and may itself hold spaces and parentheses, so fields are counted from
/// the last `)`.
fn parse_stat(text: &str) -> Option<StatFields> {
    let rest = &text[text.rfind(')')? + 1..];
    // rest[0] is field 3 (state); field n is rest[n - 3].
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    Some(StatFields {
        utime: field(14)?,
        stime: field(15)?,
        starttime: field(22)?,
        vsize: field(23)?,
    })
}

/// `btime` of `/proc/stat`: boot time in Unix seconds.
fn parse_boot_time(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// A `Key:   1234 kB` line of `/proc/<pid>/status`, in KiB.
fn parse_status_kib(text: &str, key: &str) -> Option<u64> {
    let rest = text.lines().find_map(|l| l.strip_prefix(key))?;
    rest.split_whitespace().next()?.parse().ok()
}

/// The soft limit of a `/proc/<pid>/limits` row; `unlimited` is reported as
/// Go's procfs does, as the largest u64.
fn parse_limit(text: &str, row: &str) -> Option<u64> {
    let rest = text.lines().find_map(|l| l.strip_prefix(row))?;
    match rest.split_whitespace().next()? {
        "unlimited" => Some(u64::MAX),
        v => v.parse().ok(),
    }
}

/// OpenMetrics text as the Prometheus text format (0.0.4) has it, as Go's
/// handler writes it for git-sync: no `# EOF` or `# UNIT`; a counter's
/// `# HELP` and `# TYPE` name its samples (`…_total`); `unknown` is
/// `untyped`. Samples are the same in both.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .filter(|name| !name.ends_with("_total"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let rewritten = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            if counters.contains(name) {
                return Some(format!("{prefix}{name}_total {tail}"));
            }
            (tail == "unknown").then(|| format!("{prefix}{name} untyped"))
        });
        out.push_str(rewritten.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn sample_value(out: &str, prefix: &str) -> Option<String> {
        out.lines()
            .find_map(|l| l.strip_prefix(prefix)?.strip_prefix(' '))
            .map(str::to_owned)
    }

    /// A small OpenMetrics text checker: every family has HELP and TYPE
    /// before its samples, every sample line is `name{labels} value` with a
    /// float value, its name belongs to the current family given the type's
    /// suffixes, families are not interleaved, and the text ends in `# EOF`.
    fn check_exposition(text: &str) -> Result<(), String> {
        let lines: Vec<&str> = text.lines().collect();
        if lines.last() != Some(&"# EOF") {
            return Err("does not end in # EOF".into());
        }
        if !text.ends_with('\n') {
            return Err("no final newline".into());
        }
        let mut help: HashMap<&str, ()> = HashMap::new();
        let mut types: HashMap<&str, &str> = HashMap::new();
        let mut current: Option<&str> = None;
        let mut seen_families: Vec<&str> = Vec::new();
        for (i, line) in lines[..lines.len() - 1].iter().enumerate() {
            let err = |m: &str| format!("line {}: {m}: {line:?}", i + 1);
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, _) = rest.split_once(' ').ok_or_else(|| err("bad HELP"))?;
                if seen_families.contains(&name) {
                    return Err(err("family repeated"));
                }
                seen_families.push(name);
                help.insert(name, ());
                current = Some(name);
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, ty) = rest.split_once(' ').ok_or_else(|| err("bad TYPE"))?;
                if Some(name) != current {
                    return Err(err("TYPE without HELP just before"));
                }
                if ![
                    "counter",
                    "gauge",
                    "histogram",
                    "summary",
                    "unknown",
                    "info",
                ]
                .contains(&ty)
                {
                    return Err(err("unknown type"));
                }
                types.insert(name, ty);
                continue;
            }
            if line.starts_with('#') {
                return Err(err("unexpected comment"));
            }
            let family = current.ok_or_else(|| err("sample before any family"))?;
            let ty = *types
                .get(family)
                .ok_or_else(|| err("family without TYPE"))?;
            let (series, value) = line.rsplit_once(' ').ok_or_else(|| err("no value"))?;
            if value.parse::<f64>().is_err() && !["+Inf", "-Inf", "NaN"].contains(&value) {
                return Err(err("value is not a float"));
            }
            let (name, labels) = match series.find('{') {
                Some(b) => (&series[..b], Some(&series[b..])),
                None => (series, None),
            };
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                || name.starts_with(|c: char| c.is_ascii_digit())
            {
                return Err(err("bad metric name"));
            }
            if let Some(l) = labels {
                check_labels(l).map_err(|m| err(&m))?;
            }
            let suffixes: &[&str] = match ty {
                "counter" => &["_total", "_created"],
                "summary" => &["_sum", "_count", "_created", ""],
                "histogram" => &["_bucket", "_sum", "_count", "_created"],
                "info" => &["_info"],
                _ => &[""],
            };
            if !suffixes
                .iter()
                .any(|s| name.strip_suffix(s) == Some(family))
            {
                return Err(err("sample name does not belong to its family"));
            }
        }
        for name in help.keys() {
            if !types.contains_key(name) {
                return Err(format!("family {name} has HELP but no TYPE"));
            }
        }
        Ok(())
    }

    /// `{k="v",k2="v2"}` with escaped values.
    fn check_labels(l: &str) -> Result<(), String> {
        let inner = l
            .strip_prefix('{')
            .and_then(|s| s.strip_suffix('}'))
            .ok_or("labels not in braces")?;
        let mut chars = inner.chars().peekable();
        while chars.peek().is_some() {
            let mut key = String::new();
            for c in chars.by_ref() {
                if c == '=' {
                    break;
                }
                key.push(c);
            }
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("bad label name {key:?}"));
            }
            if chars.next() != Some('"') {
                return Err("label value not quoted".into());
            }
            loop {
                match chars.next() {
                    Some('\\') => {
                        if !matches!(chars.next(), Some('\\' | '"' | 'n')) {
                            return Err("bad escape".into());
                        }
                    }
                    Some('"') => break,
                    Some('\n') | None => return Err("unterminated label value".into()),
                    Some(_) => {}
                }
            }
            match chars.next() {
                Some(',') | None => {}
                Some(c) => return Err(format!("unexpected {c:?} after label value")),
            }
        }
        Ok(())
    }

    #[test]
    fn metrics_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Metrics>();
    }

    #[test]
    fn git_sync_families_as_git_sync_exposes_them() {
        let m = Metrics::new();
        m.observe_sync(SyncResult::Success, Duration::from_millis(250));
        m.observe_sync(SyncResult::Success, Duration::from_millis(500));
        m.observe_sync(SyncResult::Noop, Duration::from_millis(10));
        m.inc_fetch();
        let out = m.encode();
        let lines: Vec<&str> = out.lines().collect();

        assert!(
            lines.contains(&r#"git_sync_count_total{status="success"} 2"#),
            "{out}"
        );
        assert!(
            lines.contains(&r#"git_sync_count_total{status="noop"} 1"#),
            "{out}"
        );
        assert!(
            lines.contains(&r#"git_sync_count_total{status="error"} 0"#),
            "{out}"
        );
        assert!(
            lines.contains(&"# TYPE git_sync_duration_seconds summary"),
            "{out}"
        );
        assert!(lines.contains(&r#"git_sync_duration_seconds_count{status="success"} 2"#));
        assert!(lines.contains(&r#"git_sync_duration_seconds_sum{status="success"} 0.75"#));
        assert!(lines.contains(&r#"git_sync_duration_seconds_count{status="noop"} 1"#));
        assert!(lines.contains(&r#"git_sync_duration_seconds_sum{status="error"} 0.0"#));
        assert!(lines.contains(&"git_fetch_count_total 1"), "{out}");
        // The e2e's `grep "^$1 " | awk '{print $NF}'`.
        assert_eq!(
            sample_value(&out, r#"git_sync_count_total{status="success"}"#).as_deref(),
            Some("2")
        );
        assert_eq!(
            sample_value(&out, "git_fetch_count_total").as_deref(),
            Some("1")
        );
        // The summary has no quantiles, like Go's without objectives.
        assert!(!out.contains("quantile"));

        // The histogram saw the same observations.
        assert!(lines.contains(&r#"git_sidecar_sync_duration_seconds_count{status="success"} 2"#));
        assert!(lines
            .contains(&r#"git_sidecar_sync_duration_seconds_bucket{le="0.5",status="success"} 2"#));
        assert!(lines.contains(
            &r#"git_sidecar_sync_duration_seconds_bucket{le="0.25",status="success"} 1"#
        ));
        check_exposition(&out).unwrap();
    }

    #[test]
    fn askpass_and_github_app_names_have_no_total_suffix() {
        let m = Metrics::new();
        let out = m.encode();
        let lines: Vec<&str> = out.lines().collect();
        for name in [
            "git_sync_askpass_calls",
            "git_sync_refresh_github_app_token_count",
        ] {
            for status in ["success", "error"] {
                let line = format!(r#"{name}{{status="{status}"}} 0"#);
                assert!(lines.contains(&line.as_str()), "{line} missing:\n{out}");
            }
            assert!(!out.contains(&format!("{name}_total")), "{out}");
            assert!(lines.contains(&format!("# TYPE {name} unknown").as_str()));
        }
        m.askpass_call(true);
        m.github_app_token_refresh(false);
        let out = m.encode();
        assert!(out.contains("git_sync_askpass_calls{status=\"success\"} 1\n"));
        assert!(out.contains("git_sync_refresh_github_app_token_count{status=\"error\"} 1\n"));
        check_exposition(&out).unwrap();
    }

    #[test]
    fn hook_runs_and_webhook_requests() {
        let m = Metrics::new();
        assert!(!m.encode().contains("git_sync_hook_run_count"));
        m.hook_run("exechook", true);
        m.hook_run("exechook", true);
        m.hook_run("pre-publish-exechook", false);
        m.webhook_request("github", "ok");
        m.webhook_request("github", "bad_signature");
        m.webhook_request("github", "ok");
        let out = m.encode();
        let lines: Vec<&str> = out.lines().collect();
        assert!(
            lines.contains(&r#"git_sync_hook_run_count_total{name="exechook",status="success"} 2"#)
        );
        assert!(lines.contains(
            &r#"git_sync_hook_run_count_total{name="pre-publish-exechook",status="error"} 1"#
        ));
        assert!(lines
            .contains(&r#"git_sidecar_webhook_requests_total{provider="github",result="ok"} 2"#));
        assert!(lines.contains(
            &r#"git_sidecar_webhook_requests_total{provider="github",result="bad_signature"} 1"#
        ));
        check_exposition(&out).unwrap();
    }

    #[test]
    fn published_revision_keeps_only_the_latest() {
        let m = Metrics::new();
        assert!(!m.encode().contains("git_sidecar_published_revision_info"));
        m.set_published_revision("aaaa", "main");
        m.set_published_revision("bbbb", "refs/tags/v1");
        let out = m.encode();
        let samples: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("git_sidecar_published_revision_info{"))
            .collect();
        assert_eq!(
            samples,
            [r#"git_sidecar_published_revision_info{sha="bbbb",ref="refs/tags/v1"} 1"#]
        );
        check_exposition(&out).unwrap();
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.set_published_revision("abc", "we\"ird\\ref\nx");
        m.webhook_request("generic", "a\"b");
        check_exposition(&m.encode()).unwrap();
    }

    #[test]
    fn gauges_and_byte_counter() {
        let m = Metrics::new();
        m.set_last_success(UNIX_EPOCH + Duration::from_millis(1_700_000_000_500));
        m.set_consecutive_failures(3);
        m.add_fetched_bytes(1000);
        m.add_fetched_bytes(24);
        let out = m.encode();
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines.contains(&"git_sidecar_last_success_timestamp_seconds 1700000000.5"));
        assert!(lines.contains(&"git_sidecar_consecutive_failures 3"));
        assert!(lines.contains(&"git_sidecar_fetched_bytes_total 1024"));
        check_exposition(&out).unwrap();
    }

    #[test]
    fn fresh_exposition_is_well_formed() {
        let out = Metrics::new().encode();
        check_exposition(&out).unwrap();
        assert!(out.contains("# TYPE git_sync_count counter\n"));
        assert!(out.contains("git_sidecar_last_success_timestamp_seconds 0.0\n"));
    }

    #[test]
    fn checker_rejects_bad_text() {
        assert!(check_exposition("foo 1\n# EOF\n").is_err());
        assert!(check_exposition("# HELP foo x\n# TYPE foo gauge\nfoo x\n# EOF\n").is_err());
        assert!(check_exposition("# HELP foo x\n# TYPE foo gauge\nfoo 1\n").is_err());
        assert!(
            check_exposition("# HELP foo x\n# TYPE foo counter\nfoo 1\n# EOF\n").is_err(),
            "counter sample without _total"
        );
        assert!(check_exposition("# HELP foo x\n# TYPE foo gauge\nfoo{a=\"b} 1\n# EOF\n").is_err());
        assert!(
            check_exposition("# HELP foo x\n# TYPE foo gauge\nfoo{a=\"b\"} 1\n# EOF\n").is_ok()
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_figures_are_plausible() {
        let out = Metrics::new().encode();
        check_exposition(&out).unwrap();
        let value = |name: &str| -> f64 {
            sample_value(&out, name)
                .unwrap_or_else(|| panic!("{name} missing:\n{out}"))
                .parse()
                .unwrap()
        };
        assert!(value("process_resident_memory_bytes") > 1e5);
        assert!(value("process_virtual_memory_bytes") >= value("process_resident_memory_bytes"));
        assert!(value("process_open_fds") > 0.0);
        assert!(value("process_max_fds") >= value("process_open_fds"));
        assert!(value("process_cpu_seconds_total") >= 0.0);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = value("process_start_time_seconds");
        // Boot time is whole seconds and starttime is in ticks: allow slack.
        assert!(
            start > now - 7.0 * 86400.0 && start < now + 2.0,
            "{start} vs {now}"
        );
        assert!(out.contains("# TYPE process_cpu_seconds counter\n"));
        assert!(value("process_virtual_memory_max_bytes") > 0.0);
    }

    #[test]
    fn proc_parsers() {
        let stat = "1234 (my (odd) cmd) S 1 1234 1234 0 -1 4194560 100 0 0 0 \
                    250 75 0 0 20 0 4 0 123456 987654321 2000 18446744073709551615";
        assert_eq!(
            parse_stat(stat),
            Some(StatFields {
                utime: 250,
                stime: 75,
                starttime: 123456,
                vsize: 987654321,
            })
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(
            parse_boot_time("cpu 1 2 3\nbtime 1700000000\nprocesses 5\n"),
            Some(1700000000)
        );
        assert_eq!(
            parse_status_kib("Name:\tx\nVmRSS:\t   2048 kB\n", "VmRSS:"),
            Some(2048)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max address space         unlimited            unlimited            bytes     \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_limit(limits, "Max open files"), Some(1024));
        assert_eq!(parse_limit(limits, "Max address space"), Some(u64::MAX));
    }

    #[test]
    fn float_formatting() {
        let f = |v: f64| {
            let mut s = String::new();
            write_f64(&mut s, v).unwrap();
            s
        };
        assert_eq!(f(0.0), "0.0");
        assert_eq!(f(3.0), "3.0");
        assert_eq!(f(0.75), "0.75");
        assert_eq!(f(f64::INFINITY), "+Inf");
        assert!(f(1e-7).parse::<f64>().is_ok());
        assert!(f(1e20).parse::<f64>().is_ok());
    }
}
