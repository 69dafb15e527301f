//! Post-publish hooks against the built binary: the exechook (worktree,
//! environment, arguments, retries, timeout), the outgoing webhook (headers,
//! JSON body, signature, retries, timeout, success status), `--one-time`
//! exit codes, the start-up firing after a restart, the pre-publish gate and
//! `--reload-process` with a real nginx master. Hook programs are tiny
//! `/bin/sh` scripts written to the test's scratch directory; everything
//! listens on 127.0.0.1.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use sha2::Sha256;

use crate::support::client::{self, wait_for_http_address};
use crate::support::receiver::{Received, Receiver};
use crate::support::servers::nginx_command;
use crate::support::sidecar::describe_output;
use crate::support::*;

mod gate;
mod reload;

/// Short for the hook-relevant durations below.
fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// A path under the scratch directory (outside root) as a string for scripts.
fn scratch_path(s: &Scratch, name: &str) -> (PathBuf, String) {
    let p = s.dir.path().join(name);
    let text = p.to_str().expect("utf-8 temp path").to_string();
    assert!(!text.contains('\''), "no quotes in temp paths: {text}");
    (p, text)
}

/// The non-empty lines of a file (none when it does not exist yet).
fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Completed lines only: a line is complete once its newline is written.
fn line_count(path: &Path) -> usize {
    fs::read_to_string(path)
        .unwrap_or_default()
        .matches('\n')
        .count()
}

/// `<canonical root>/.worktrees/<sha>`, what `pwd -P` prints inside a worktree.
fn worktree_of(s: &Scratch, sha: &str) -> String {
    let root = fs::canonicalize(&s.root).expect("root exists once something is published");
    root.join(".worktrees")
        .join(sha)
        .to_string_lossy()
        .into_owned()
}

/// The value of the sample whose line is exactly `<sample> <value>`.
fn metric(text: &str, sample: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let v = l.strip_prefix(sample)?.strip_prefix(' ')?;
        v.trim().parse().ok()
    })
}

/// `git_sync_hook_run_count_total{name,status}`; 0 while the sample is absent.
fn hook_runs(addr: &str, name: &str, status: &str) -> u64 {
    let r = client::get(addr, "/metrics").unwrap_or_else(|e| panic!("GET /metrics: {e}"));
    assert_eq!(r.status, 200, "/metrics: {r}");
    metric(
        &r.text(),
        &format!("git_sync_hook_run_count_total{{name=\"{name}\",status=\"{status}\"}}"),
    )
    .unwrap_or(0.0) as u64
}

fn metrics_text(addr: &str) -> String {
    client::get(addr, "/metrics")
        .map(|r| r.text())
        .unwrap_or_else(|e| format!("<GET /metrics failed: {e}>"))
}

/// Starts `sidecar` with `--http-bind 127.0.0.1:0 --http-metrics`.
fn start_with_metrics(sidecar: Sidecar) -> (Running, String) {
    let run = sidecar
        .args(["--http-bind", "127.0.0.1:0", "--http-metrics"])
        .spawn();
    let addr = wait_for_http_address(&run);
    (run, addr)
}

/// `X-Git-Sidecar-Signature-256` value: `sha256=<hex HMAC-SHA256(secret, body)>`.
fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("hmac key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// True while `pid` exists and is not a zombie.
fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat_fields(&stat).is_some_and(|(state, _)| state != "Z"),
        Err(_) => false,
    }
}

/// (state, ppid) from the text of /proc/PID/stat (the comm may hold spaces).
fn stat_fields(stat: &str) -> Option<(String, i32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut it = rest.split_whitespace();
    let state = it.next()?.to_string();
    let ppid = it.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Live (non-zombie) children of `parent`, sorted.
fn children_of(parent: i32) -> Vec<i32> {
    let mut v: Vec<i32> = fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter(|pid| {
                    fs::read_to_string(format!("/proc/{pid}/stat"))
                        .ok()
                        .and_then(|s| stat_fields(&s))
                        .is_some_and(|(state, ppid)| ppid == parent && state != "Z")
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Waits for `pred` on the lines of `path`; panics with the sidecar's logs
/// and the file's content on timeout.
fn wait_for_lines(run: &Running, path: &Path, what: &str, pred: impl Fn(&[String]) -> bool) {
    let mut seen = Vec::new();
    let ok = poll_until(DEADLINE, || {
        seen = lines(path);
        pred(&seen)
    });
    if !ok {
        panic!(
            "timed out after {DEADLINE:?} waiting for: {what}\n--- {} ---\n{}\n{}",
            path.display(),
            seen.join("\n"),
            run.logs()
        );
    }
}

// ---------------------------------------------------------------------------
// exechook

/// One line per run: pwd, hash, previous hash (or <unset>), ref, repo, argc, args joined by ';'.
fn recording_hook(s: &Scratch, log: &str) -> PathBuf {
    script(
        s,
        "record-hook",
        &format!(
            "IFS=';'\n\
             printf '%s\\t%s\\t%s\\t%s\\t%s\\t%s\\t%s\\n' \"$(pwd -P)\" \"$GITSYNC_HASH\" \
             \"${{GITSYNC_PREVIOUS_HASH-<unset>}}\" \"$GITSYNC_REF\" \"$GITSYNC_REPO\" \"$#\" \"$*\" >> '{log}'\n"
        ),
    )
}

/// A parsed line of [`recording_hook`].
#[derive(Debug)]
struct HookRun {
    pwd: String,
    hash: String,
    previous: String,
    git_ref: String,
    repo: String,
    argc: String,
    args: String,
}

fn parse_run(line: &str) -> HookRun {
    let f: Vec<&str> = line.split('\t').collect();
    assert_eq!(f.len(), 7, "hook log line {line:?}");
    HookRun {
        pwd: f[0].into(),
        hash: f[1].into(),
        previous: f[2].into(),
        git_ref: f[3].into(),
        repo: f[4].into(),
        argc: f[5].into(),
        args: f[6].into(),
    }
}

#[test]
fn exechook_runs_in_the_new_worktree_with_env_and_args() {
    let up = Upstream::new();
    let a = up.commit_file("f", "1", "a");
    let s = Scratch::new();
    let (log, log_s) = scratch_path(&s, "hook.log");
    let hook = recording_hook(&s, &log_s);
    let run = s
        .sidecar(&up.file_url())
        .args(["--period", "100ms"])
        .arg("--exechook-command")
        .arg(&hook)
        .args(["--exechook-arg", "one", "--exechook-arg", "two words"])
        .args(["--exechook-arg", "--dashed"])
        .spawn();
    run.wait_for_link_hash(&s.link(), &a);
    wait_for_lines(&run, &log, "the exechook's first run", |l| !l.is_empty());

    let first = parse_run(&lines(&log)[0]);
    let ctx = || format!("{:#?}\n{}", lines(&log), run.logs());
    assert_eq!(
        first.pwd,
        worktree_of(&s, &a),
        "cwd of the first run\n{}",
        ctx()
    );
    assert_eq!(first.hash, a, "GITSYNC_HASH of the first run\n{}", ctx());
    assert_eq!(
        first.previous,
        "",
        "GITSYNC_PREVIOUS_HASH must be set and empty on the first run\n{}",
        ctx()
    );
    assert_eq!(first.git_ref, "HEAD", "GITSYNC_REF\n{}", ctx());
    assert_eq!(first.repo, up.file_url(), "GITSYNC_REPO\n{}", ctx());
    assert_eq!(
        (first.argc.as_str(), first.args.as_str()),
        ("3", "one;two words;--dashed"),
        "arguments, in order\n{}",
        ctx()
    );

    let b = up.commit_file("f", "2", "b");
    run.wait_for_link_hash(&s.link(), &b);
    wait_for_lines(&run, &log, "the exechook's run for the new commit", |l| {
        l.len() >= 2
    });
    let second = parse_run(&lines(&log)[1]);
    assert_eq!(
        second.pwd,
        worktree_of(&s, &b),
        "cwd of the second run\n{}",
        ctx()
    );
    assert_eq!(second.hash, b, "GITSYNC_HASH of the second run\n{}", ctx());
    assert_eq!(second.previous, a, "GITSYNC_PREVIOUS_HASH\n{}", ctx());
    assert_eq!(second.args, "one;two words;--dashed", "{}", ctx());

    // Unchanged passes fire nothing (sync::tests::hooks_hear_of_publishes_and_of_the_first_pass_only).
    assert_eq!(lines(&log).len(), 2, "runs without a publish\n{}", ctx());
    run.assert_running();
}

#[test]
fn exechook_failure_is_retried_then_succeeds() {
    let up = Upstream::new();
    let a = up.commit_file("f", "1", "a");
    let s = Scratch::new();
    let (_, counter_s) = scratch_path(&s, "counter");
    let (log, log_s) = scratch_path(&s, "hook.log");
    let hook = script(
        &s,
        "flaky-hook",
        &format!(
            "n=0\n\
             [ -f '{counter_s}' ] && read n < '{counter_s}'\n\
             n=$((n+1))\n\
             echo \"$n\" > '{counter_s}'\n\
             echo \"$n $GITSYNC_HASH\" >> '{log_s}'\n\
             [ \"$n\" -gt 2 ]\n"
        ),
    );
    let (run, addr) = start_with_metrics(
        s.sidecar(&up.file_url())
            .args(["--period", "100ms", "--exechook-backoff", "1s"])
            .arg("--exechook-command")
            .arg(&hook),
    );
    run.wait_for_link_hash(&s.link(), &a);

    // Note when each run shows up, to check the backoff between them.
    let mut seen_at: Vec<Instant> = Vec::new();
    run.wait_until(DEADLINE, "three runs of the exechook", || {
        while seen_at.len() < line_count(&log) {
            seen_at.push(Instant::now());
        }
        seen_at.len() >= 3
    });
    let runs = lines(&log);
    for (i, l) in runs.iter().enumerate() {
        assert_eq!(l, &format!("{} {a}", i + 1), "run {i}: {runs:?}");
    }
    for w in seen_at.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap >= secs(0.95),
            "a retry came {gap:?} after the failure, before --exechook-backoff 1s: {runs:?}\n{}",
            run.logs()
        );
    }
    run.wait_until(DEADLINE, "hook metrics: 2 errors, 1 success", || {
        hook_runs(&addr, "exechook", "error") >= 2 && hook_runs(&addr, "exechook", "success") >= 1
    });
    assert_eq!(
        hook_runs(&addr, "exechook", "error"),
        2,
        "{}",
        metrics_text(&addr)
    );

    // Delivered: no more runs for the same hash (in paused time:
    // hooks::tests::exechook_and_webhook_retry_at_exactly_their_backoff).
    assert_eq!(
        lines(&log).len(),
        3,
        "the exechook ran again after it succeeded\n{}",
        run.logs()
    );
    assert_eq!(
        hook_runs(&addr, "exechook", "success"),
        1,
        "{}",
        metrics_text(&addr)
    );
    run.assert_running();
}

#[test]
fn exechook_timeout_kills_it() {
    let up = Upstream::new();
    let a = up.commit_file("f", "1", "a");
    let s = Scratch::new();
    let (log, log_s) = scratch_path(&s, "hook.log");
    // The shell waits for a child, as real hook scripts do.
    let hook = script(
        &s,
        "slow-hook",
        &format!(
            "echo \"start $$\" >> '{log_s}'\n\
             sleep 30 &\n\
             echo \"child $!\" >> '{log_s}'\n\
             wait $!\n\
             echo \"end $$\" >> '{log_s}'\n"
        ),
    );
    let (run, addr) = start_with_metrics(
        s.sidecar(&up.file_url())
            .args(["--period", "100ms", "--max-failures", "-1"])
            .args(["--exechook-timeout", "1s", "--exechook-backoff", "1s"])
            .arg("--exechook-command")
            .arg(&hook),
    );
    run.wait_for_link_hash(&s.link(), &a);
    wait_for_lines(&run, &log, "the exechook's first run", |l| l.len() >= 2);
    let started = Instant::now();
    let pid_of = |prefix: &str| -> i32 {
        lines(&log)
            .iter()
            .find_map(|l| l.strip_prefix(prefix)?.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix:?} line in {:?}", lines(&log)))
    };
    let (shell, child) = (pid_of("start "), pid_of("child "));

    run.wait_until(DEADLINE, "an exechook error in the metrics", || {
        hook_runs(&addr, "exechook", "error") >= 1
    });
    let reported = started.elapsed();
    assert!(
        reported < secs(10.0),
        "the timeout (1s) was reported only after {reported:?}\n{}",
        run.logs()
    );
    run.wait_until(secs(5.0), "the timed-out hook process is gone", || {
        !alive(shell)
    });
    run.wait_until(
        secs(5.0),
        "the timed-out hook's child (sleep 30) is gone too",
        || !alive(child),
    );
    assert!(
        !lines(&log).iter().any(|l| l.starts_with("end ")),
        "{:?}",
        lines(&log)
    );
    let stderr = run.stderr();
    assert!(
        stderr.lines().any(|l| {
            let l = l.to_ascii_lowercase();
            (l.contains("\"warn\"") || l.contains("\"error\"")) && l.contains("hook")
        }),
        "the hook failure is not logged as a warning or error\n{}",
        run.logs()
    );

    // Syncing goes on while the hook keeps timing out, and it is retried.
    let b = up.commit_file("f", "2", "b");
    run.wait_for_link_hash(&s.link(), &b);
    wait_for_lines(&run, &log, "a retry of the exechook", |l| {
        l.iter().filter(|l| l.starts_with("start ")).count() >= 2
    });
    assert_eq!(hook_runs(&addr, "exechook", "success"), 0);
    run.assert_running();
}

// ---------------------------------------------------------------------------
// outgoing webhook

const SIGNING_SECRET: &str = "it-signing-secret";

/// Checks the JSON body of a `--webhook-json-body` request.
fn check_json_body(r: &Received, hash: &str, previous: Option<&str>, repo: &str, ctx: &str) {
    let v = r.json();
    assert_eq!(v["hash"], hash, "body.hash: {v}\n{ctx}");
    match previous {
        Some(p) => assert_eq!(v["previous_hash"], p, "body.previous_hash: {v}\n{ctx}"),
        None => assert!(
            v["previous_hash"].is_null() || v["previous_hash"] == "",
            "body.previous_hash on the first run: {v}\n{ctx}"
        ),
    }
    assert!(
        v.as_object()
            .is_some_and(|o| o.contains_key("previous_hash")),
        "no previous_hash key: {v}"
    );
    assert_eq!(v["ref"], "HEAD", "body.ref: {v}\n{ctx}");
    assert_eq!(v["repo"], repo, "body.repo: {v}\n{ctx}");
    let time_ok = match &v["time"] {
        serde_json::Value::String(t) => !t.is_empty(),
        serde_json::Value::Number(_) => true,
        _ => false,
    };
    assert!(time_ok, "body.time: {v}\n{ctx}");
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.contains("application/json")),
        "Content-Type of a JSON body: {:?}\n{ctx}",
        r.header("content-type")
    );
    assert_eq!(
        r.header("x-git-sidecar-signature-256"),
        Some(sign(SIGNING_SECRET, &r.body).as_str()),
        "signature over the body\n{ctx}"
    );
}

/// A webhook to this machine (a reload endpoint on localhost) goes through
/// no proxy from the environment, as Go's client (git-sync's) has it.
#[test]
fn a_webhook_to_this_machine_goes_through_no_proxy() {
    use crate::support::forward_proxy::ForwardProxy;
    let up = Upstream::new();
    let a = up.commit_file("f", "1", "a");
    let proxy = ForwardProxy::start();
    let s = Scratch::new();
    let recv = Receiver::start();
    let run = s
        .sidecar(&up.file_url())
        .args(["--period", "100ms"])
        .args(["--webhook-url", &recv.url("/hook")])
        .env("HTTP_PROXY", proxy.url())
        .env("http_proxy", proxy.url())
        .spawn();
    run.wait_for_link_hash(&s.link(), &a);
    run.wait_until(DEADLINE, "the webhook request", || recv.count() >= 1);
    assert_eq!(proxy.forwarded() + proxy.connects(), 0, "{}", run.logs());
}

#[test]
fn webhook_success_path_sends_hash_headers_json_and_signature() {
    let up = Upstream::new();
    let a = up.commit_file("f", "1", "a");
    let s = Scratch::new();
    let recv = Receiver::start();
    let secret = s.dir.path().join("signing-secret");
    fs::write(&secret, format!("{SIGNING_SECRET}\n")).expect("writing the secret");
    let run = s
        .sidecar(&up.file_url())
        .args(["--period", "100ms"])
        .args(["--webhook-url", &recv.url("/deploy?x=1")])
        .args(["--webhook-header", "X-Extra: hello world"])
        .args(["--webhook-header", "Authorization: Bearer it-token"])
        .arg("--webhook-json-body")
        .arg("--webhook-signing-secret-file")
        .arg(&secret)
        .spawn();
    run.wait_for_link_hash(&s.link(), &a);
    let ctx = || format!("{}\n{}", recv.describe(), run.logs());
    run.wait_until(DEADLINE, "the first webhook request", || recv.count() >= 1);

    let r = &recv.requests()[0];
    assert_eq!(r.method, "POST", "default method\n{}", ctx());
    assert_eq!(r.target, "/deploy?x=1", "{}", ctx());
    assert_eq!(r.header("gitsync-hash"), Some(a.as_str()), "{}", ctx());
    assert_eq!(r.header("x-extra"), Some("hello world"), "{}", ctx());
    assert_eq!(
        r.header("authorization"),
        Some("Bearer it-token"),
        "{}",
        ctx()
    );
    check_json_body(r, &a, None, &up.file_url(), &ctx());

    let b = up.commit_file("f", "2", "b");
    run.wait_for_link_hash(&s.link(), &b);
    run.wait_until(DEADLINE, "the webhook for the new commit", || {
        recv.count() >= 2
    });
    let r = &recv.requests()[1];
    assert_eq!(r.header("gitsync-hash"), Some(b.as_str()), "{}", ctx());
    check_json_body(r, &b, Some(&a), &up.file_url(), &ctx());

    // No request without a publish (sync::tests::hooks_hear_of_publishes_and_of_the_first_pass_only).
    assert_eq!(recv.count(), 2, "requests without a publish\n{}", ctx());
    assert!(
        !run.stderr().contains("it-token") && !run.stderr().contains(SIGNING_SECRET),
        "a header value or the secret was logged\n{}",
        run.logs()
    );
}

#[test]
fn webhook_failures_are_retried_with_backoff() {
    let up = Upstream::new();
    let a = up.commit_file("f", "1", "a");
    let s = Scratch::new();
    let recv = Receiver::failing_first(2, 500);
    let (run, addr) = start_with_metrics(
        s.sidecar(&up.file_url())
            .args(["--period", "100ms", "--webhook-backoff", "1s"])
            .args(["--webhook-url", &recv.url("/hook")]),
    );
    run.wait_for_link_hash(&s.link(), &a);
    let ctx = || format!("{}\n{}", recv.describe(), run.logs());
    run.wait_until(DEADLINE, "three webhook requests (500, 500, 200)", || {
        recv.count() >= 3
    });
    let reqs = recv.requests();
    for r in &reqs {
        assert_eq!(r.header("gitsync-hash"), Some(a.as_str()), "{}", ctx());
    }
    for w in reqs.windows(2) {
        let gap = w[1].at - w[0].at;
        assert!(
            gap >= secs(0.95),
            "a retry came {gap:?} after the failure, before --webhook-backoff 1s\n{}",
            ctx()
        );
    }
    run.wait_until(DEADLINE, "webhook metrics: 2 errors, 1 success", || {
        hook_runs(&addr, "webhook", "error") >= 2 && hook_runs(&addr, "webhook", "success") >= 1
    });
    // None after the success (hooks::tests::exechook_and_webhook_retry_at_exactly_their_backoff).
    assert_eq!(recv.count(), 3, "requests after the success\n{}", ctx());
    assert_eq!(
        hook_runs(&addr, "webhook", "error"),
        2,
        "{}",
        metrics_text(&addr)
    );
    assert_eq!(
        hook_runs(&addr, "webhook", "success"),
        1,
        "{}",
        metrics_text(&addr)
    );
}

#[test]
fn webhook_slower_than_its_timeout_fails_and_is_retried() {
    let up = Upstream::new();
    let a = up.commit_file("f", "1", "a");
    let s = Scratch::new();
    // The first answer would come after 4 s; the timeout is 1 s.
    let recv = Receiver::slow_first(1, secs(4.0));
    let (run, addr) = start_with_metrics(
        s.sidecar(&up.file_url())
            .args(["--period", "100ms"])
            .args(["--webhook-timeout", "1s", "--webhook-backoff", "1s"])
            .args(["--webhook-url", &recv.url("/hook")]),
    );
    run.wait_for_link_hash(&s.link(), &a);
    let ctx = || format!("{}\n{}", recv.describe(), run.logs());
    run.wait_until(DEADLINE, "a retried webhook request", || recv.count() >= 2);
    let reqs = recv.requests();
    let gap = reqs[1].at - reqs[0].at;
    assert!(
        gap >= secs(1.95) && gap < secs(4.0),
        "the retry came {gap:?} after the first request (1s timeout + 1s backoff; the slow \
         answer would have come at 4s)\n{}",
        ctx()
    );
    assert_eq!(
        reqs[1].header("gitsync-hash"),
        Some(a.as_str()),
        "{}",
        ctx()
    );
    run.wait_until(DEADLINE, "webhook metrics: 1 error, 1 success", || {
        hook_runs(&addr, "webhook", "error") >= 1 && hook_runs(&addr, "webhook", "success") >= 1
    });
    // None after the success (hooks::tests::exechook_and_webhook_retry_at_exactly_their_backoff).
    assert_eq!(recv.count(), 2, "requests after the success\n{}", ctx());
}

#[test]
fn webhook_success_status_0_accepts_any_answer() {
    let up = Upstream::new();
    let a = up.commit_file("f", "1", "a");
    let s = Scratch::new();
    let recv = Receiver::answering(500);
    let (run, addr) = start_with_metrics(
        s.sidecar(&up.file_url())
            .args(["--period", "100ms", "--webhook-backoff", "1s"])
            .args(["--webhook-success-status", "0", "--webhook-method", "put"])
            .args(["--webhook-url", &recv.url("/hook")]),
    );
    run.wait_for_link_hash(&s.link(), &a);
    let ctx = || format!("{}\n{}", recv.describe(), run.logs());
    run.wait_until(DEADLINE, "the webhook request", || recv.count() >= 1);
    let r = &recv.requests()[0];
    assert_eq!(r.method, "PUT", "--webhook-method put\n{}", ctx());
    assert_eq!(r.header("gitsync-hash"), Some(a.as_str()), "{}", ctx());
    assert!(
        r.body.is_empty(),
        "no body without --webhook-json-body\n{}",
        ctx()
    );
    run.wait_until(DEADLINE, "a webhook success in the metrics", || {
        hook_runs(&addr, "webhook", "success") >= 1
    });
    // A success is not retried (hooks::tests::webhook_without_success_status_accepts_any_response,
    // hooks::tests::exechook_and_webhook_retry_at_exactly_their_backoff).
    assert_eq!(
        recv.count(),
        1,
        "a 500 was retried despite status 0\n{}",
        ctx()
    );
    assert_eq!(
        hook_runs(&addr, "webhook", "error"),
        0,
        "{}",
        metrics_text(&addr)
    );
}

/// A token in `--webhook-url`'s query (`?token=`) is sent to the receiver,
/// but never appears on the sidecar's stderr (debug lines included), in
/// `/status` or in the start-up error for a bad URL: the URL is shown
/// without its query, as the askpass URL is.
#[test]
fn webhook_url_query_token_never_reaches_the_logs() {
    const QUERY_TOKEN: &str = "q7f3d0c2e9b1a8token";
    let up = Upstream::new();
    let a = up.commit_file("f", "1", "a");
    let s = Scratch::new();
    let recv = Receiver::failing_first(1, 500);
    let (run, addr) = start_with_metrics(
        s.sidecar(&up.file_url())
            .args(["--period", "100ms", "--webhook-backoff", "1s", "-v", "9"])
            .args([
                "--webhook-url",
                &recv.url(&format!("/hook?token={QUERY_TOKEN}#frag")),
            ]),
    );
    run.wait_for_link_hash(&s.link(), &a);
    run.wait_until(DEADLINE, "a failed, then a successful webhook run", || {
        hook_runs(&addr, "webhook", "error") >= 1 && hook_runs(&addr, "webhook", "success") >= 1
    });
    let ctx = || format!("{}\n{}", recv.describe(), run.logs());
    assert!(
        recv.requests()[0].target.contains(QUERY_TOKEN),
        "the query must still be sent\n{}",
        ctx()
    );
    let status = client::get(&addr, "/status").expect("GET /status").text();
    let stderr = run.stderr();
    assert!(
        stderr.contains("hook failed") && stderr.contains(&recv.url("/hook")),
        "the failure is logged with the URL's path\n{}",
        ctx()
    );
    assert!(!stderr.contains(QUERY_TOKEN), "token on stderr\n{}", ctx());
    assert!(
        !run.stdout().contains(QUERY_TOKEN),
        "token on stdout\n{}",
        ctx()
    );
    assert!(!status.contains(QUERY_TOKEN), "token in /status: {status}");

    let out = s
        .sidecar(&up.file_url())
        .args(["--one-time", "--webhook-url"])
        .arg(format!("ftp://127.0.0.1/hook?token={QUERY_TOKEN}"))
        .run(DEADLINE);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("--webhook-url"),
        "an ftp:// --webhook-url is refused\n{}",
        describe_output(&out)
    );
    assert!(
        !stderr.contains(QUERY_TOKEN),
        "token in the error\n{}",
        describe_output(&out)
    );
}

// ---------------------------------------------------------------------------
// --one-time

#[test]
fn one_time_exit_code_follows_hooks() {
    let up = Upstream::new();
    let a = up.commit_file("f", "1", "a");

    // A succeeding exechook: exit 0.
    let s = Scratch::new();
    let (log, log_s) = scratch_path(&s, "hook.log");
    let ok = script(
        &s,
        "ok-hook",
        &format!("echo \"$GITSYNC_HASH\" >> '{log_s}'\n"),
    );
    let out = s
        .sidecar(&up.file_url())
        .arg("--exechook-command")
        .arg(&ok)
        .arg("--one-time")
        .run(secs(25.0));
    assert_eq!(out.status.code(), Some(0), "{}", describe_output(&out));
    assert_eq!(lines(&log), vec![a.clone()], "{}", describe_output(&out));
    assert_eq!(s.published().as_deref(), Some(a.as_str()));

    // A failing exechook: exit 1, run once, and the content is published anyway.
    let s = Scratch::new();
    let (log, log_s) = scratch_path(&s, "hook.log");
    let bad = script(
        &s,
        "bad-hook",
        &format!("echo \"$GITSYNC_HASH\" >> '{log_s}'\nexit 3\n"),
    );
    let out = s
        .sidecar(&up.file_url())
        .arg("--exechook-command")
        .arg(&bad)
        .args(["--exechook-backoff", "1s", "--one-time"])
        .run(secs(25.0));
    assert_eq!(out.status.code(), Some(1), "{}", describe_output(&out));
    assert_eq!(
        lines(&log),
        vec![a.clone()],
        "runs: {}",
        describe_output(&out)
    );
    assert_eq!(s.published().as_deref(), Some(a.as_str()));
    assert_published_layout(&s.root, &s.link());
}

#[test]
fn one_time_exit_code_follows_the_webhook() {
    let up = Upstream::new();
    let a = up.commit_file("f", "1", "a");
    for (status, code) in [(200, 0), (500, 1)] {
        let s = Scratch::new();
        let recv = Receiver::answering(status);
        let out = s
            .sidecar(&up.file_url())
            .args([
                "--webhook-url",
                &recv.url("/hook"),
                "--webhook-backoff",
                "1s",
            ])
            .arg("--one-time")
            .run(secs(25.0));
        let ctx = format!("{}\n{}", recv.describe(), describe_output(&out));
        assert_eq!(
            out.status.code(),
            Some(code),
            "receiver answers {status}\n{ctx}"
        );
        assert_eq!(recv.count(), 1, "one attempt in --one-time mode\n{ctx}");
        assert_eq!(s.published().as_deref(), Some(a.as_str()), "{ctx}");
    }
}

// ---------------------------------------------------------------------------
// restart

#[test]
fn restart_with_unchanged_hash_fires_hooks_once_more() {
    let up = Upstream::new();
    let a = up.commit_file("f", "1", "a");
    let s = Scratch::new();
    let (log, log_s) = scratch_path(&s, "hook.log");
    let hook = recording_hook(&s, &log_s);
    let sidecar = || {
        s.sidecar(&up.file_url())
            .args(["--period", "100ms"])
            .arg("--exechook-command")
            .arg(&hook)
    };
    let first = sidecar().spawn();
    first.wait_for_link_hash(&s.link(), &a);
    wait_for_lines(&first, &log, "the exechook's first run", |l| l.len() == 1);
    first.kill9();

    let second = sidecar().spawn();
    wait_for_lines(&second, &log, "the exechook's run after the restart", |l| {
        l.len() >= 2
    });
    // Not again for later unchanged passes (sync::tests::hooks_hear_of_publishes_and_of_the_first_pass_only).
    let runs = lines(&log);
    assert_eq!(
        runs.len(),
        2,
        "the exechook must run exactly once more after a restart: {runs:#?}\n{}",
        second.logs()
    );
    let again = parse_run(&runs[1]);
    assert_eq!(again.hash, a, "{runs:#?}");
    assert_eq!(again.pwd, worktree_of(&s, &a), "{runs:#?}");
    assert_eq!(s.published().as_deref(), Some(a.as_str()));
    second.assert_running();
}
