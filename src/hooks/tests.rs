//! Hook tests with real processes and a real loopback HTTP server.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{KeyInit as _, Mac as _};
use tokio_util::sync::CancellationToken;

use super::notify::{self, Webhook, SIGNATURE_HEADER};
use super::testutil::{eventually, hook_count, lines, process_gone, publish, script, Server};
use super::*;
use super::{OutgoingWebhookConfig, ReloadConfig};
use crate::secret::SecretBytes;
use crate::types::SecretUrl;

const SH: &str = "/bin/sh";
const HASH_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const HASH_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const HASH_C: &str = "cccccccccccccccccccccccccccccccccccccccc";

/// `/bin/sh <script> <args>` (see [`script`] for why not the script itself).
fn sh_hook(script: &Path, args: &[&str], timeout: Duration) -> ExecHookConfig {
    let mut all = vec![script.display().to_string()];
    all.extend(args.iter().map(|s| s.to_string()));
    ExecHookConfig {
        command: PathBuf::from(SH),
        args: all,
        timeout,
        backoff: Duration::from_millis(40),
        git_config: Default::default(),
        ssh_command: None,
    }
}

fn web_hook(url: &str) -> OutgoingWebhookConfig {
    OutgoingWebhookConfig {
        url: SecretUrl::new(url),
        method: "POST".to_string(),
        success_status: Some(200),
        timeout: Duration::from_secs(5),
        backoff: Duration::from_millis(40),
        headers: Vec::new(),
        json_body: false,
        signing_secret: None,
    }
}

fn start(config: &HooksConfig, one_time: bool) -> (Hooks, Arc<Metrics>, CancellationToken) {
    let metrics = Arc::new(Metrics::new());
    let cancel = CancellationToken::new();
    let hooks = Hooks::start(config, Arc::clone(&metrics), one_time, cancel.clone());
    (hooks, metrics, cancel)
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

// ---- backoff ---------------------------------------------------------------------------------

#[test]
fn reload_backoff_doubles_with_jitter_up_to_the_maximum() {
    let ms = Duration::from_millis;
    let base = ms(100);
    let max = ms(1000);
    for _ in 0..200 {
        let first = Retry::Growing { base, max }.wait(1);
        assert!((ms(100)..=ms(125)).contains(&first), "{first:?}");
        let third = Retry::Growing { base, max }.wait(3);
        assert!((ms(400)..=ms(500)).contains(&third), "{third:?}");
        let capped = Retry::Growing { base, max }.wait(4);
        assert!((ms(800)..=max).contains(&capped), "{capped:?}");
        assert_eq!(Retry::Growing { base, max }.wait(40), max);
    }
    assert_eq!(
        Retry::Growing {
            base: Duration::ZERO,
            max
        }
        .wait(5),
        Duration::ZERO
    );
    // No overflow with absurd settings (the wait is capped near 2^64 ns).
    let huge = Retry::Growing {
        base: Duration::MAX,
        max: Duration::MAX,
    }
    .wait(u32::MAX);
    assert!(
        huge >= Duration::from_secs(100 * 365 * 24 * 3600),
        "{huge:?}"
    );
}

/// Virtual time: when each attempt of a runner started, relative to `t0`.
type Attempts = Arc<std::sync::Mutex<Vec<Duration>>>;

/// The configured runners with their real retry policy, each attempt
/// replaced by one that records the (virtual) time and fails `failures`
/// times before succeeding.
fn scripted_runners(
    config: &HooksConfig,
    t0: tokio::time::Instant,
    failures: usize,
) -> (Vec<Runner>, Vec<(&'static str, Attempts)>) {
    let mut runners = runners(config);
    let mut seen = Vec::new();
    for runner in &mut runners {
        let attempts: Attempts = Arc::default();
        let record = Arc::clone(&attempts);
        runner.action = Action::Scripted(Arc::new(move |_: &Publish| {
            let mut record = record.lock().expect("lock");
            record.push(t0.elapsed());
            if record.len() > failures {
                Ok(())
            } else {
                Err("scripted failure".to_string())
            }
        }));
        seen.push((runner.name, attempts));
    }
    (runners, seen)
}

/// git-sync retries a failed exechook or webhook after exactly its
/// `--*-backoff`, every time: no growth, no jitter. Checked in paused time,
/// so the intervals are exact.
#[tokio::test(start_paused = true)]
async fn exechook_and_webhook_retry_at_exactly_their_backoff() {
    let mut exec = sh_hook(Path::new("/unused"), &[], Duration::from_secs(30));
    exec.backoff = Duration::from_secs(3);
    let mut web = web_hook("http://127.0.0.1:9/unused");
    web.backoff = Duration::from_secs(5);
    let config = HooksConfig {
        exec: Some(exec),
        webhook: Some(web),
        ..HooksConfig::default()
    };
    let t0 = tokio::time::Instant::now();
    let (runners, seen) = scripted_runners(&config, t0, 5);
    let metrics = Arc::new(Metrics::new());
    let hooks = Hooks::spawn(
        runners,
        Arc::clone(&metrics),
        false,
        CancellationToken::new(),
    );
    hooks.notify(publish(HASH_A, Path::new("/")));
    // Long enough for far more attempts than six if they were too close.
    tokio::time::sleep(Duration::from_secs(600)).await;
    let s = Duration::from_secs;
    for (name, attempts) in seen {
        let attempts = attempts.lock().expect("lock").clone();
        let step = if name == "exechook" { 3 } else { 5 };
        let expected: Vec<Duration> = (0..6).map(|k| s(k * step)).collect();
        assert_eq!(
            attempts, expected,
            "{name}: attempt times (5 failures, then success)"
        );
        assert_eq!(hook_count(&metrics, name, "error"), 5, "{name}");
        assert_eq!(hook_count(&metrics, name, "success"), 1, "{name}");
    }
}

/// A retry takes the newest publish, still after exactly the backoff.
#[tokio::test(start_paused = true)]
async fn a_retry_after_the_backoff_takes_the_newest_publish() {
    let mut exec = sh_hook(Path::new("/unused"), &[], Duration::from_secs(30));
    exec.backoff = Duration::from_secs(2);
    let config = HooksConfig {
        exec: Some(exec),
        ..HooksConfig::default()
    };
    let t0 = tokio::time::Instant::now();
    let mut runners = runners(&config);
    let attempts: Arc<std::sync::Mutex<Vec<(Duration, String)>>> = Arc::default();
    let record = Arc::clone(&attempts);
    runners[0].action = Action::Scripted(Arc::new(move |p: &Publish| {
        let mut record = record.lock().expect("lock");
        record.push((t0.elapsed(), p.hash.clone()));
        if p.hash == HASH_A {
            Err("A always fails".to_string())
        } else {
            Ok(())
        }
    }));
    let hooks = Hooks::spawn(
        runners,
        Arc::new(Metrics::new()),
        false,
        CancellationToken::new(),
    );
    hooks.notify(publish(HASH_A, Path::new("/")));
    tokio::time::sleep(Duration::from_millis(4500)).await;
    hooks.notify(publish(HASH_B, Path::new("/")));
    tokio::time::sleep(Duration::from_secs(60)).await;
    let ms = Duration::from_millis;
    assert_eq!(
        *attempts.lock().expect("lock"),
        vec![
            (ms(0), HASH_A.to_string()),
            (ms(2000), HASH_A.to_string()),
            (ms(4000), HASH_A.to_string()),
            // B arrived at 4.5 s, during the wait: it is tried when the wait ends.
            (ms(6000), HASH_B.to_string()),
        ]
    );
}

// ---- exechook --------------------------------------------------------------------------------

/// As git-sync exports it to its hooks: the git a hook runs reaches an ssh
/// remote with the sidecar's key and host key check (probe-16 F5).
#[tokio::test]
async fn exec_hook_gets_the_ssh_command_for_its_git() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = script(
        dir.path(),
        "hook.sh",
        r#"printf '%s\n' "$GIT_SSH_COMMAND" > "$1""#,
    );
    let out = dir.path().join("out.txt");
    let mut config = sh_hook(
        &hook,
        &[&out.display().to_string()],
        Duration::from_secs(10),
    );
    config.ssh_command = Some("ssh -i /etc/git-secret/ssh -o StrictHostKeyChecking=no".into());
    exec::run_async(
        &config,
        &publish(HASH_B, dir.path()),
        exec::EXECHOOK_ARG_FLAG,
    )
    .await
    .expect("hook succeeds");
    assert_eq!(
        lines(&out),
        ["ssh -i /etc/git-secret/ssh -o StrictHostKeyChecking=no"]
    );
}

#[tokio::test]
async fn exec_hook_gets_env_args_and_runs_in_the_worktree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let worktree = dir.path().join("worktree");
    std::fs::create_dir(&worktree).expect("mkdir");
    let hook = script(
        dir.path(),
        "hook.sh",
        r#"out=$1; shift
{ pwd -P; echo "HASH=$GITSYNC_HASH"; echo "PREV=$GITSYNC_PREVIOUS_HASH"; echo "REF=$GITSYNC_REF"
  echo "REPO=$GITSYNC_REPO"; echo "ARGC=$#"; for a in "$@"; do echo "ARG=$a"; done
  if read -r line; then echo "STDIN=$line"; else echo "STDIN-EMPTY"; fi
  echo "PATH-SET=${PATH:+yes}"; } > "$out"
echo "to stdout"; echo "to stderr" >&2"#,
    );
    let out = dir.path().join("out.txt");
    let out_arg = out.display().to_string();
    let config = sh_hook(
        &hook,
        &[&out_arg, "one", "two words"],
        Duration::from_secs(10),
    );
    let mut p = publish(HASH_B, &worktree);
    p.previous = Some(HASH_A.to_string());
    exec::run_async(&config, &p, exec::EXECHOOK_ARG_FLAG)
        .await
        .expect("hook succeeds");
    let expected_dir = worktree
        .canonicalize()
        .expect("canonical")
        .display()
        .to_string();
    assert_eq!(
        lines(&out),
        vec![
            expected_dir,
            format!("HASH={HASH_B}"),
            format!("PREV={HASH_A}"),
            "REF=main".to_string(),
            "REPO=https://user:REDACTED@example.com/r.git".to_string(),
            "ARGC=2".to_string(),
            "ARG=one".to_string(),
            "ARG=two words".to_string(),
            "STDIN-EMPTY".to_string(),
            "PATH-SET=yes".to_string(),
        ]
    );

    // No previous commit: the variable is set, and empty.
    let hook = script(
        dir.path(),
        "prev.sh",
        r#"[ "${GITSYNC_PREVIOUS_HASH+set}" = set ] && [ -z "$GITSYNC_PREVIOUS_HASH" ]"#,
    );
    let config = sh_hook(&hook, &[], Duration::from_secs(10));
    exec::run_async(
        &config,
        &publish(HASH_A, &worktree),
        exec::EXECHOOK_ARG_FLAG,
    )
    .await
    .expect("previous hash is set and empty");
}

#[tokio::test]
async fn exec_hook_failure_reports_status_and_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = script(
        dir.path(),
        "fail.sh",
        "echo partial work; echo 'it broke' >&2; exit 7",
    );
    let config = sh_hook(&hook, &[], Duration::from_secs(10));
    let error = exec::run_async(
        &config,
        &publish(HASH_A, dir.path()),
        exec::EXECHOOK_ARG_FLAG,
    )
    .await
    .expect_err("exit 7 fails");
    assert!(error.contains("exit code 7"), "{error}");
    assert!(error.contains("stderr: it broke"), "{error}");
    assert!(error.contains("stdout: partial work"), "{error}");
}

#[tokio::test]
async fn exec_hook_failure_is_retried_with_backoff_until_it_succeeds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let count = dir.path().join("count");
    let hook = script(
        dir.path(),
        "flaky.sh",
        r#"echo "$GITSYNC_HASH" >> "$1"; [ "$(wc -l < "$1")" -ge 3 ]"#,
    );
    let config = HooksConfig {
        exec: Some(sh_hook(
            &hook,
            &[&count.display().to_string()],
            Duration::from_secs(10),
        )),
        ..HooksConfig::default()
    };
    let (hooks, metrics, _cancel) = start(&config, false);
    let started = Instant::now();
    hooks.notify(publish(HASH_A, dir.path()));
    eventually("a successful run", || {
        hook_count(&metrics, "exechook", "success") == 1
    })
    .await;
    // Two failures, each followed by the 40 ms backoff.
    assert!(
        started.elapsed() >= Duration::from_millis(80),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(hook_count(&metrics, "exechook", "error"), 2);
    assert_eq!(lines(&count), vec![HASH_A; 3]);
    // Delivered: no more runs.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(lines(&count).len(), 3);
}

#[tokio::test]
async fn exec_hook_is_killed_at_the_timeout_with_its_children() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("pid");
    let hook = script(
        dir.path(),
        "slow.sh",
        r#"echo started; sleep 30 & echo $! > "$1"; wait"#,
    );
    let config = sh_hook(
        &hook,
        &[&pidfile.display().to_string()],
        Duration::from_millis(500),
    );
    let started = Instant::now();
    let error = exec::run_async(
        &config,
        &publish(HASH_A, dir.path()),
        exec::EXECHOOK_ARG_FLAG,
    )
    .await
    .expect_err("times out");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(error.contains("did not finish within 500ms"), "{error}");
    assert!(error.contains("stdout: started"), "{error}");
    let sleeper = read_pid(&pidfile).expect("the script wrote its child's pid");
    eventually("the script's sleep to be killed", || process_gone(sleeper)).await;
}

#[tokio::test]
async fn exec_hook_missing_command_says_there_is_no_shell() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = publish(HASH_A, dir.path());
    let mut config = sh_hook(Path::new("/unused"), &[], Duration::from_secs(5));
    config.args.clear();

    config.command = PathBuf::from("/usr/local/bin/reload-nginx -s reload");
    let error = exec::run_async(&config, &p, exec::EXECHOOK_ARG_FLAG)
        .await
        .expect_err("no such program");
    assert!(
        error.contains("/usr/local/bin/reload-nginx -s reload"),
        "{error}"
    );
    assert!(error.contains("no such file"), "{error}");
    assert!(error.contains("without a shell"), "{error}");
    assert!(error.contains("put arguments in --exechook-arg"), "{error}");

    config.command = PathBuf::from("/nonexistent/gsr-hook");
    let error = exec::run_async(&config, &p, exec::EXECHOOK_ARG_FLAG)
        .await
        .expect_err("no such program");
    assert!(
        error.contains("/nonexistent/gsr-hook: no such file"),
        "{error}"
    );
    assert!(error.contains("--exechook-arg"), "{error}");

    // A missing worktree is named as such, not blamed on the program.
    config.command = PathBuf::from(SH);
    let gone = publish(HASH_A, &dir.path().join("gone"));
    let error = exec::run_async(&config, &gone, exec::EXECHOOK_ARG_FLAG)
        .await
        .expect_err("no worktree");
    assert!(
        error.contains("working directory") && error.contains("gone"),
        "{error}"
    );

    // Not executable.
    let plain = dir.path().join("plain.txt");
    std::fs::write(&plain, "not a program").expect("write");
    config.command = plain;
    let error = exec::run_async(&config, &p, exec::EXECHOOK_ARG_FLAG)
        .await
        .expect_err("not executable");
    assert!(error.contains("permission denied"), "{error}");
}

#[tokio::test]
async fn exec_hook_latest_wins_while_a_run_is_in_flight() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let hook = script(
        dir.path(),
        "slow.sh",
        r#"echo "$GITSYNC_HASH" >> "$1"; sleep 0.4"#,
    );
    let config = HooksConfig {
        exec: Some(sh_hook(
            &hook,
            &[&log.display().to_string()],
            Duration::from_secs(10),
        )),
        ..HooksConfig::default()
    };
    let (hooks, metrics, _cancel) = start(&config, false);
    hooks.notify(publish(HASH_A, dir.path()));
    eventually("the run for A to start", || !lines(&log).is_empty()).await;
    hooks.notify(publish(HASH_B, dir.path()));
    hooks.notify(publish(HASH_C, dir.path()));
    eventually("two successful runs", || {
        hook_count(&metrics, "exechook", "success") == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(lines(&log), vec![HASH_A, HASH_C], "B was superseded by C");
    assert_eq!(hook_count(&metrics, "exechook", "success"), 2);
}

#[tokio::test]
async fn exec_hook_runs_once_per_hash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let hook = script(dir.path(), "log.sh", r#"echo "$GITSYNC_HASH" >> "$1""#);
    let config = HooksConfig {
        exec: Some(sh_hook(
            &hook,
            &[&log.display().to_string()],
            Duration::from_secs(10),
        )),
        ..HooksConfig::default()
    };
    let (hooks, metrics, _cancel) = start(&config, false);
    hooks.notify(publish(HASH_A, dir.path()));
    eventually("the run for A", || {
        hook_count(&metrics, "exechook", "success") == 1
    })
    .await;
    let mut again = publish(HASH_A, dir.path());
    again.previous = Some(HASH_C.to_string());
    hooks.notify(again);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(lines(&log), vec![HASH_A]);
    hooks.notify(publish(HASH_B, dir.path()));
    eventually("the run for B", || {
        hook_count(&metrics, "exechook", "success") == 2
    })
    .await;
    assert_eq!(lines(&log), vec![HASH_A, HASH_B]);
    assert_eq!(hook_count(&metrics, "exechook", "error"), 0);
}

#[tokio::test]
async fn cancel_kills_an_in_flight_exec_hook() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("pid");
    let hook = script(dir.path(), "slow.sh", r#"sleep 30 & echo $! > "$1"; wait"#);
    let config = HooksConfig {
        exec: Some(sh_hook(
            &hook,
            &[&pidfile.display().to_string()],
            Duration::from_secs(60),
        )),
        ..HooksConfig::default()
    };
    let (mut hooks, _metrics, cancel) = start(&config, true);
    hooks.notify(publish(HASH_A, dir.path()));
    eventually("the hook to start", || read_pid(&pidfile).is_some()).await;
    let sleeper = read_pid(&pidfile).expect("pid");
    cancel.cancel();
    eventually("the hook's sleep to be killed", || process_gone(sleeper)).await;
    assert!(
        !hooks.first_results().await,
        "a cancelled first run is not a success"
    );
}

// ---- webhook ---------------------------------------------------------------------------------

#[tokio::test]
async fn webhook_sends_hash_and_extra_headers() {
    let server = Server::answering(&[200]);
    let mut config = web_hook(&server.url("/hook"));
    config.headers = vec![
        ("Authorization".to_string(), "Bearer t0ken".to_string()),
        ("X-Extra".to_string(), "yes".to_string()),
    ];
    Webhook::new(config)
        .send(&publish(HASH_A, Path::new("/")))
        .await
        .expect("200 is success");
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/hook");
    assert_eq!(request.header("Gitsync-Hash"), Some(HASH_A));
    assert_eq!(request.header("Authorization"), Some("Bearer t0ken"));
    assert_eq!(request.header("X-Extra"), Some("yes"));
    assert_eq!(request.header(SIGNATURE_HEADER), None);
    assert!(request.body.is_empty());
    // As Go's client (git-sync's) sends it: front ends that answer 411
    // without a length, or receivers that match the header's case, accept it.
    assert_eq!(request.header("Content-Length"), Some("0"));
    assert!(
        request.names_sent.iter().any(|n| n == "Gitsync-Hash"),
        "{request:?}"
    );
    assert!(
        request.names_sent.iter().any(|n| n == "Content-Length"),
        "{request:?}"
    );
    let agent = request.header("User-Agent").unwrap_or_default();
    assert!(agent.starts_with("git-sidecar/"), "{request:?}");
}

#[tokio::test]
async fn webhook_method_is_used() {
    let server = Server::answering(&[204]);
    let mut config = web_hook(&server.url("/put"));
    config.method = "PUT".to_string();
    config.success_status = Some(204);
    Webhook::new(config)
        .send(&publish(HASH_A, Path::new("/")))
        .await
        .expect("204 is the success status");
    assert_eq!(server.requests()[0].method, "PUT");
}

#[tokio::test]
async fn webhook_failure_status_is_retried_until_success() {
    let server = Server::answering(&[500, 503, 200]);
    let config = HooksConfig {
        webhook: Some(web_hook(&server.url("/hook"))),
        ..HooksConfig::default()
    };
    let (hooks, metrics, _cancel) = start(&config, false);
    hooks.notify(publish(HASH_A, Path::new("/")));
    eventually("a successful request", || {
        hook_count(&metrics, "webhook", "success") == 1
    })
    .await;
    assert_eq!(hook_count(&metrics, "webhook", "error"), 2);
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    assert!(requests
        .iter()
        .all(|r| r.header("Gitsync-Hash") == Some(HASH_A)));
}

#[tokio::test]
async fn webhook_wrong_status_is_an_error_without_credentials() {
    let server = Server::answering(&[500]);
    let url = format!("http://alice:hunter2@{}/hook?token=q-t0ken", server.addr);
    let error = Webhook::new(web_hook(&url))
        .send(&publish(HASH_A, Path::new("/")))
        .await
        .expect_err("500 is not 200");
    assert!(
        error.contains("500") && error.contains("not 200"),
        "{error}"
    );
    assert!(error.contains("status 500 body"), "{error}");
    assert!(!error.contains("hunter2"), "{error}");
    assert!(!error.contains("q-t0ken"), "the query is shown: {error}");
    // Credentials in the URL are sent as Basic auth, not in the request line.
    let request = &server.requests()[0];
    assert_eq!(
        request.path, "/hook?token=q-t0ken",
        "the query is still sent"
    );
    assert_eq!(
        request.header("Authorization"),
        Some("Basic YWxpY2U6aHVudGVyMg==")
    );
}

#[tokio::test]
async fn webhook_without_success_status_accepts_any_response() {
    let server = Server::answering(&[500]);
    let mut config = web_hook(&server.url("/hook"));
    config.success_status = None;
    Webhook::new(config)
        .send(&publish(HASH_A, Path::new("/")))
        .await
        .expect("any completed response counts");
}

#[tokio::test]
async fn webhook_transport_errors_fail_even_without_success_status() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let mut config = web_hook(&format!("http://bob:s3cret@{addr}/hook"));
    config.success_status = None;
    let error = Webhook::new(config)
        .send(&publish(HASH_A, Path::new("/")))
        .await
        .expect_err("nobody listens");
    assert!(error.contains(&addr.to_string()), "{error}");
    assert!(!error.contains("s3cret"), "{error}");
}

#[tokio::test]
async fn webhook_json_body_is_signed_with_the_secret() {
    let server = Server::answering(&[200]);
    let secret = b"shh-its-a-secret";
    let mut config = web_hook(&server.url("/hook"));
    config.json_body = true;
    config.signing_secret = Some(SecretBytes::new(secret.to_vec()));
    let mut p = publish(HASH_B, Path::new("/"));
    p.previous = Some(HASH_A.to_string());
    Webhook::new(config).send(&p).await.expect("200");
    let request = &server.requests()[0];
    assert_eq!(request.header("Content-Type"), Some("application/json"));
    let body: serde_json::Value = serde_json::from_slice(&request.body).expect("JSON body");
    assert_eq!(body["hash"], HASH_B);
    assert_eq!(body["previous_hash"], HASH_A);
    assert_eq!(body["ref"], "main");
    assert_eq!(body["repo"], "https://user:REDACTED@example.com/r.git");
    let time = body["time"].as_str().expect("time is a string");
    humantime::parse_rfc3339(time).expect("time is RFC 3339");

    let signature = request.header(SIGNATURE_HEADER).expect("signed");
    let tag = hex::decode(signature.strip_prefix("sha256=").expect("sha256= prefix")).expect("hex");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(&request.body);
    mac.verify_slice(&tag)
        .expect("signature verifies with the secret");
}

#[tokio::test]
async fn webhook_empty_body_is_signed_too() {
    let server = Server::answering(&[200]);
    let mut config = web_hook(&server.url("/hook"));
    config.signing_secret = Some(SecretBytes::new(b"k".to_vec()));
    Webhook::new(config)
        .send(&publish(HASH_A, Path::new("/")))
        .await
        .expect("200");
    let request = &server.requests()[0];
    assert!(request.body.is_empty());
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"k").expect("key");
    mac.update(b"");
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(request.header(SIGNATURE_HEADER), Some(expected.as_str()));
    // No previous hash: JSON null.
    let body = notify::json_body(&publish(HASH_A, Path::new("/")), std::time::UNIX_EPOCH);
    let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert!(body["previous_hash"].is_null());
    assert_eq!(body["time"], "1970-01-01T00:00:00Z");
}

#[tokio::test]
async fn webhook_times_out_against_a_silent_server() {
    let server = Server::silent();
    let mut config = web_hook(&server.url("/hook"));
    config.timeout = Duration::from_millis(300);
    config.success_status = None;
    let started = Instant::now();
    let error = Webhook::new(config)
        .send(&publish(HASH_A, Path::new("/")))
        .await
        .expect_err("no answer");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(error.contains("no response within 300ms"), "{error}");
    eventually("the request to arrive", || server.requests().len() == 1).await;
}

// ---- reload ----------------------------------------------------------------------------------

/// Spawns the script at `path` directly (so its comm is its file name),
/// retrying while a concurrent fork in another test thread still holds the
/// freshly written file open for writing.
fn spawn_direct(path: &Path, arg: &Path) -> std::process::Child {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match std::process::Command::new(path).arg(arg).spawn() {
            Ok(child) => return child,
            Err(e) if e.raw_os_error() == Some(nix::libc::ETXTBSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("spawning {}: {e}", path.display()),
        }
    }
}

#[tokio::test]
async fn reload_signals_the_master_process_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Unique, and at most 15 bytes so comm holds it whole.
    let name = format!("gsr-{:010x}", fastrand::u64(..1 << 40));
    let path = script(
        dir.path(),
        &name,
        r#"out=$1
if [ -z "$GSR_CHILD" ]; then GSR_CHILD=1 "$0" "$out" & role=master; else role=child; fi
trap 'echo got > "$out.$role"; exit 0' USR1
echo ready > "$out.$role.ready"
while :; do sleep 0.05; done"#,
    );
    let out = dir.path().join("sig");
    let file = |suffix: &str| PathBuf::from(format!("{}.{suffix}", out.display()));
    let mut master = spawn_direct(&path, &out);
    eventually("both processes to be ready", || {
        file("master.ready").exists() && file("child.ready").exists()
    })
    .await;

    let config = HooksConfig {
        reload: Some(ReloadConfig {
            process: name.clone(),
            signal: nix::sys::signal::Signal::SIGUSR1 as i32,
        }),
        ..HooksConfig::default()
    };
    let (mut hooks, metrics, _cancel) = start(&config, true);
    hooks.notify(publish(HASH_A, dir.path()));
    assert!(hooks.first_results().await, "the reload succeeded");
    assert_eq!(hook_count(&metrics, "reload", "success"), 1);
    eventually("the master to get USR1", || file("master").exists()).await;
    let status = tokio::task::spawn_blocking(move || master.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(
        status.success(),
        "the master exited through its trap: {status}"
    );
    assert!(
        !file("child").exists(),
        "the child (a worker) was not signalled"
    );

    // Orphaned, the child is now the top process of that name.
    reload::signal_by_name(&name, nix::sys::signal::Signal::SIGUSR1 as i32)
        .expect("the child is found");
    eventually("the child to get USR1", || file("child").exists()).await;
}

#[tokio::test]
async fn reload_of_an_unknown_process_says_what_to_check() {
    let name = format!("gsr-{:010x}", fastrand::u64(..1 << 40));
    let error = reload::signal_by_name(&name, nix::sys::signal::Signal::SIGHUP as i32)
        .expect_err("no such process");
    assert!(
        error.contains(&format!("no process named {name} found"))
            && error.contains("shareProcessNamespace: true"),
        "{error}"
    );
}

// ---- one-time --------------------------------------------------------------------------------

#[tokio::test]
async fn one_time_first_results_are_true_when_all_succeed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::answering(&[200]);
    let hook = script(dir.path(), "ok.sh", "exit 0");
    let config = HooksConfig {
        exec: Some(sh_hook(&hook, &[], Duration::from_secs(10))),
        webhook: Some(web_hook(&server.url("/hook"))),
        ..HooksConfig::default()
    };
    let (mut hooks, metrics, _cancel) = start(&config, true);
    assert!(!hooks.is_empty());
    hooks.notify(publish(HASH_A, dir.path()));
    assert!(hooks.first_results().await);
    assert!(
        hooks.first_results().await,
        "asking again gives the same answer"
    );
    assert_eq!(hook_count(&metrics, "exechook", "success"), 1);
    assert_eq!(hook_count(&metrics, "webhook", "success"), 1);
}

#[tokio::test]
async fn one_time_failure_is_final_and_not_retried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::answering(&[200]);
    let count = dir.path().join("count");
    let hook = script(dir.path(), "fail.sh", r#"echo x >> "$1"; exit 1"#);
    let config = HooksConfig {
        exec: Some(sh_hook(
            &hook,
            &[&count.display().to_string()],
            Duration::from_secs(10),
        )),
        webhook: Some(web_hook(&server.url("/hook"))),
        ..HooksConfig::default()
    };
    let (mut hooks, metrics, _cancel) = start(&config, true);
    hooks.notify(publish(HASH_A, dir.path()));
    assert!(!hooks.first_results().await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(lines(&count).len(), 1, "no retry in one-time mode");
    assert_eq!(hook_count(&metrics, "exechook", "error"), 1);
    assert_eq!(hook_count(&metrics, "webhook", "success"), 1);
    // Later publishes are not delivered either: the runners have stopped.
    hooks.notify(publish(HASH_B, dir.path()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(lines(&count).len(), 1);
}

#[tokio::test]
async fn no_hooks_configured() {
    let (mut hooks, _metrics, _cancel) = start(&HooksConfig::default(), true);
    assert!(hooks.is_empty());
    hooks.notify(publish(HASH_A, Path::new("/")));
    assert!(hooks.first_results().await);
}

// ---- pre-publish gate ------------------------------------------------------------------------

#[test]
fn gate_passes_on_exit_zero_with_the_hook_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = script(
        dir.path(),
        "gate.sh",
        r#"[ "$GITSYNC_HASH" = "$1" ] && [ "$GITSYNC_REF" = main ] && [ "$(pwd -P)" = "$2" ]"#,
    );
    let worktree = dir.path().canonicalize().expect("canonical");
    let config = sh_hook(
        &hook,
        &[HASH_A, &worktree.display().to_string()],
        Duration::from_secs(10),
    );
    run_gate(&config, &publish(HASH_A, &worktree)).expect("gate passes");
    let error = run_gate(&config, &publish(HASH_B, &worktree)).expect_err("other hash");
    assert!(error.contains("exit code 1"), "{error}");
}

#[test]
fn gate_failure_names_the_exit_code_and_the_output_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = script(
        dir.path(),
        "gate.sh",
        r#"i=0; while [ $i -lt 3000 ]; do echo "noise line $i"; i=$((i+1)); done
echo "THE-END-OF-STDOUT"; echo "broken link in index.html" >&2; exit 3"#,
    );
    let config = sh_hook(&hook, &[], Duration::from_secs(20));
    let error = run_gate(&config, &publish(HASH_A, dir.path())).expect_err("exit 3");
    assert!(error.contains("exit code 3"), "{error}");
    assert!(
        error.contains("stderr: broken link in index.html"),
        "{error}"
    );
    assert!(error.contains("THE-END-OF-STDOUT"), "{error}");
    assert!(!error.contains("noise line 0\n"), "only the tail is kept");
    assert!(error.len() < 5 * 1024, "bounded: {} bytes", error.len());
}

#[test]
fn gate_is_killed_at_the_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("pid");
    let hook = script(
        dir.path(),
        "slow.sh",
        r#"echo checking; sleep 30 & echo $! > "$1"; wait"#,
    );
    let config = sh_hook(
        &hook,
        &[&pidfile.display().to_string()],
        Duration::from_millis(300),
    );
    let started = Instant::now();
    let error = run_gate(&config, &publish(HASH_A, dir.path())).expect_err("timeout");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(error.contains("did not finish within 300ms"), "{error}");
    assert!(error.contains("stdout: checking"), "{error}");
    let sleeper = read_pid(&pidfile).expect("pid");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !process_gone(sleeper) {
        assert!(Instant::now() < deadline, "the gate's sleep survived");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn gate_reports_signals_and_missing_programs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = script(dir.path(), "die.sh", "kill -TERM $$");
    let config = sh_hook(&hook, &[], Duration::from_secs(10));
    let error = run_gate(&config, &publish(HASH_A, dir.path())).expect_err("killed");
    assert!(error.contains("killed by signal 15 (SIGTERM)"), "{error}");
    assert!(error.contains("no output"), "{error}");

    let mut config = config;
    config.command = PathBuf::from("/nonexistent/check site");
    let error = run_gate(&config, &publish(HASH_A, dir.path())).expect_err("missing");
    assert!(error.contains("without a shell"), "{error}");
    assert!(error.contains("--pre-publish-exechook-arg"), "{error}");
}

#[test]
fn gate_returns_when_a_background_child_keeps_the_pipes_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("pid");
    let hook = script(
        dir.path(),
        "bg.sh",
        r#"sleep 30 & echo $! > "$1"; echo done"#,
    );
    let config = sh_hook(
        &hook,
        &[&pidfile.display().to_string()],
        Duration::from_secs(10),
    );
    let started = Instant::now();
    run_gate(&config, &publish(HASH_A, dir.path())).expect("exit 0");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    if let Some(pid) = read_pid(&pidfile) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}
