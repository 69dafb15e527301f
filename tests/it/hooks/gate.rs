//! The pre-publish gate (`--pre-publish-exechook-command`): refusals keep
//! the old content and retry at their backoff; and the exechook's retries
//! coming at exactly `--exechook-backoff`.

use super::*;

/// A gate that keeps refusing B: A stays published, ready and healthy (a
/// refusal is no sync failure: git-sync's hooks never make it exit or look
/// unhealthy), the gate runs again every --pre-publish-exechook-backoff,
/// and once the ref moves to a good commit, that one is published.
#[test]
fn pre_publish_gate_refusing_keeps_old_content_and_retries_at_its_backoff() {
    let up = Upstream::new();
    let a = up.commit_file("f", "1", "a");
    let s = Scratch::new();
    let (gate_log, gate_log_s) = scratch_path(&s, "gate.log");
    let (post_log, post_log_s) = scratch_path(&s, "post.log");
    let gate = script(
        &s,
        "gate",
        &format!(
            "printf '%s\\t%s\\t%s\\n' \"$(date +%s.%N)\" \"$(pwd -P)\" \"$GITSYNC_HASH\" >> '{gate_log_s}'\n\
             [ ! -e BLOCK ]\n"
        ),
    );
    let post = script(
        &s,
        "post",
        &format!("echo \"$GITSYNC_HASH\" >> '{post_log_s}'\n"),
    );
    let (run, addr) = start_with_metrics(
        s.sidecar(&up.file_url())
            // Default --max-failures (0): a refusal is no sync failure, as in git-sync.
            .args(["--period", "100ms", "--pre-publish-exechook-backoff", "1s"])
            .arg("--error-file")
            .arg(s.error_file())
            .arg("--pre-publish-exechook-command")
            .arg(&gate)
            .arg("--exechook-command")
            .arg(&post),
    );
    let gate_runs = |hash: &str| {
        lines(&gate_log)
            .iter()
            .filter(|l| l.ends_with(&format!("\t{hash}")))
            .count()
    };
    run.wait_for_link_hash(&s.link(), &a);
    let ctx = || {
        format!(
            "--- gate runs ---\n{}\n--- post runs ---\n{}\n{}",
            lines(&gate_log).join("\n"),
            lines(&post_log).join("\n"),
            run.logs()
        )
    };
    assert_eq!(
        lines(&gate_log)
            .first()
            .and_then(|l| l.split_once('\t'))
            .map(|(_, l)| l.to_string()),
        Some(format!("{}\t{a}", worktree_of(&s, &a))),
        "the gate runs in the new worktree before A is published\n{}",
        ctx()
    );
    wait_for_lines(&run, &post_log, "the exechook for A", |l| l.len() == 1);

    // B carries BLOCK: refused, A stays published.
    let b = up.commit_file("BLOCK", "no\n", "b");
    wait_for_lines(&run, &gate_log, "the gate's run for B", |l| {
        l.iter().any(|l| l.ends_with(&b))
    });
    assert!(
        lines(&gate_log)
            .iter()
            .any(|l| l.ends_with(&format!("\t{}\t{b}", worktree_of(&s, &b)))),
        "the gate for B runs in B's worktree\n{}",
        ctx()
    );
    run.wait_until(DEADLINE, "the error file mentions pre-publish", || {
        read_error_file(&s.error_file())
            .is_some_and(|v| v["Err"].to_string().contains("pre-publish"))
    });
    let status = client::get(&addr, "/status").expect("GET /status").json();
    assert!(
        status["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("pre-publish")),
        "/status last_error: {status}\n{}",
        ctx()
    );
    assert_eq!(
        status["consecutive_failures"].as_u64(),
        Some(0),
        "a refusal is not a sync failure: /status: {status}"
    );
    assert_eq!(status["published_hash"], a.as_str(), "/status: {status}");
    assert_eq!(s.published().as_deref(), Some(a.as_str()), "{}", ctx());
    assert_published_layout(&s.root, &s.link());
    assert_tree_matches_commit(&s.link(), &up, &a);

    // Retried every --pre-publish-exechook-backoff (1s) while the ref stays
    // on B, not at every pass (--period 100ms); A stays published and ready.
    run.wait_until(DEADLINE, "three runs of the gate for B", || {
        gate_runs(&b) >= 3
    });
    let b_times: Vec<f64> = lines(&gate_log)
        .iter()
        .filter(|l| l.ends_with(&format!("\t{b}")))
        .map(|l| {
            l.split('\t')
                .next()
                .and_then(|t| t.parse().ok())
                .expect("gate log time")
        })
        .collect();
    for w in b_times.windows(2) {
        assert!(
            w[1] - w[0] >= 1.0,
            "the gate ran again {:.3}s after refusing, before its 1s backoff: {b_times:?}\n{}",
            w[1] - w[0],
            ctx()
        );
    }
    assert_eq!(s.published().as_deref(), Some(a.as_str()), "{}", ctx());
    let ready = client::get(&addr, "/readyz").expect("GET /readyz");
    assert_eq!(
        ready.status,
        200,
        "old content published, refusals are no failures: /readyz {ready}\n{}",
        ctx()
    );
    let health = client::get(&addr, "/").expect("GET /");
    assert_eq!(health.status, 200, "git-sync's health answer: {health}");
    let text = metrics_text(&addr);
    assert!(
        hook_runs(&addr, "pre-publish-exechook", "error") >= 2,
        "one error per refusing run:\n{text}"
    );
    assert_eq!(
        metric(&text, "git_sync_count_total{status=\"error\"}").unwrap_or(0.0),
        0.0,
        "refusals are no sync errors (git-sync's loop succeeds):\n{text}"
    );
    assert!(
        !lines(&post_log).contains(&b),
        "the exechook ran for the refused commit\n{}",
        ctx()
    );
    run.assert_running();

    // C drops BLOCK: published.
    up.git(&["rm", "-q", "BLOCK"]);
    let c = up.commit_all("c");
    run.wait_for_link_hash(&s.link(), &c);
    assert_tree_matches_commit(&s.link(), &up, &c);
    assert_eq!(gate_runs(&c), 1, "{}", ctx());
    wait_for_lines(&run, &post_log, "the exechook for C", |l| {
        l.last() == Some(&c)
    });
    assert_eq!(lines(&post_log), vec![a.clone(), c.clone()], "{}", ctx());
    run.wait_until(DEADLINE, "the error file is cleared", || {
        !error_file_has_err(&s.error_file())
    });
    let status = client::get(&addr, "/status").expect("GET /status").json();
    assert_eq!(status["last_error"], serde_json::Value::Null, "{status}");
    // Gate runs count like any hook run (metrics.rs names it pre-publish-exechook).
    assert!(
        hook_runs(&addr, "pre-publish-exechook", "error") == gate_runs(&b) as u64
            && hook_runs(&addr, "pre-publish-exechook", "success") == 2,
        "gate runs (A ok, B refused {} times, C ok) missing from the metrics:\n{}",
        gate_runs(&b),
        metrics_text(&addr)
    );
    run.assert_running();
}

/// git-sync's pre-publish hook (master, §4 of the reference): the same
/// executor as the exechook, `GITSYNC_HASH` = the new commit, run in the new
/// worktree, with git-sync's own environment. Here it also gates: while it
/// runs, the link still points at the old commit. A gate that fails twice
/// and then succeeds publishes that commit without the ref moving, each run
/// `--pre-publish-exechook-backoff` after the refusal before it.
#[test]
fn pre_publish_gate_failing_twice_publishes_the_same_commit_at_its_backoff() {
    let up = Upstream::new();
    let a = up.commit_file("f", "1", "a");
    let s = Scratch::new();
    let (gate_log, gate_log_s) = scratch_path(&s, "gate.log");
    let (_, count_s) = scratch_path(&s, "b-runs");
    let link_s = s.link().to_str().expect("utf-8 temp path").to_string();
    let gate = script(
        &s,
        "gate",
        &format!(
            "printf '%s\\t%s\\t%s\\t%s\\t%s\\n' \"$(date +%s.%N)\" \"$GITSYNC_HASH\" \"$(pwd -P)\" \
               \"$(readlink '{link_s}')\" \"${{GATE_PROBE-<unset>}}\" >> '{gate_log_s}'\n\
             [ -e f2 ] || exit 0\n\
             echo run >> '{count_s}'\n\
             [ \"$(wc -l < '{count_s}')\" -ge 3 ]\n"
        ),
    );
    let (run, addr) = start_with_metrics(
        s.sidecar(&up.file_url())
            .env("GATE_PROBE", "from the sidecar's environment")
            .args(["--period", "100ms", "--pre-publish-exechook-backoff", "1s"])
            .arg("--pre-publish-exechook-command")
            .arg(&gate),
    );
    run.wait_for_link_hash(&s.link(), &a);
    let b = up.commit_file("f2", "2", "b");
    run.wait_for_link_hash(&s.link(), &b);
    assert_eq!(up.head(), b, "the ref never moved after B");
    let ctx = || format!("{}\n{}", lines(&gate_log).join("\n"), run.logs());
    let runs: Vec<Vec<String>> = lines(&gate_log)
        .iter()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .filter(|f: &Vec<String>| f.get(1) == Some(&b))
        .collect();
    assert_eq!(runs.len(), 3, "two refusals, then success\n{}", ctx());
    for f in &runs {
        assert_eq!(f.len(), 5, "{}", ctx());
        assert_eq!(
            f[2],
            worktree_of(&s, &b),
            "runs in the new worktree\n{}",
            ctx()
        );
        assert!(
            f[3].ends_with(&format!(".worktrees/{a}")),
            "while the gate runs, the link still points at A: {}\n{}",
            f[3],
            ctx()
        );
        assert_eq!(
            f[4],
            "from the sidecar's environment",
            "inherits our environment\n{}",
            ctx()
        );
    }
    let times: Vec<f64> = runs.iter().map(|f| f[0].parse().expect("time")).collect();
    for w in times.windows(2) {
        assert!(
            w[1] - w[0] >= 1.0,
            "a gate run came {:.3}s after the refusal before it, under the 1s backoff\n{}",
            w[1] - w[0],
            ctx()
        );
    }
    assert_tree_matches_commit(&s.link(), &up, &b);
    assert_eq!(
        hook_runs(&addr, "pre-publish-exechook", "error"),
        2,
        "{}",
        metrics_text(&addr)
    );
    assert_eq!(
        hook_runs(&addr, "pre-publish-exechook", "success"),
        2,
        "{}",
        metrics_text(&addr)
    );
    run.assert_running();
}

/// git-sync retries a failed exechook after exactly `--exechook-backoff`,
/// every time (no growth, no jitter). The hook appends `date +%s.%N` per run
/// and fails four times: consecutive runs are at least the backoff apart,
/// and at most the backoff plus generous slack for scheduling (1.5 s); a
/// doubling backoff would put the fourth retry 8 s after the third.
#[test]
fn exechook_retries_come_at_exactly_the_backoff() {
    let up = Upstream::new();
    up.commit_file("f", "1", "a");
    let s = Scratch::new();
    let (log, log_s) = scratch_path(&s, "times");
    let hook = script(
        &s,
        "failing-hook",
        &format!(
            "date +%s.%N >> '{log_s}'\n\
             [ \"$(wc -l < '{log_s}')\" -ge 5 ]\n"
        ),
    );
    let run = s
        .sidecar(&up.file_url())
        .args(["--period", "100ms", "--exechook-backoff", "1s"])
        .arg("--exechook-command")
        .arg(&hook)
        .spawn();
    wait_for_lines(&run, &log, "five runs of the exechook", |l| l.len() >= 5);
    let times: Vec<f64> = lines(&log)
        .iter()
        .map(|l| l.parse().expect("time"))
        .collect();
    for w in times.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            (1.0..2.5).contains(&gap),
            "retries must come every 1s (slack upward only): gap {gap:.3}s in {times:?}\n{}",
            run.logs()
        );
    }
    run.assert_running();
}

/// The gate docs/hooks.md gives for a configuration kept in git (`nginx -t`
/// in the new worktree), taken from the docs' own words: a valid
/// nginx.conf is published, a broken one is refused and the old one stays.
/// Without `-p ./` nginx tests the file under its compiled-in prefix
/// instead, and this fails.
#[test]
fn the_documented_nginx_gate_tests_the_new_worktrees_configuration() {
    let nginx = crate::support::servers::NGINX;
    assert!(
        std::path::Path::new(nginx).exists(),
        "{nginx} not found: install it (Debian/Ubuntu: apt-get install nginx)"
    );
    let docs = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/hooks.md"))
        .expect("reading docs/hooks.md");
    let paragraph = docs
        .split("\n\n")
        .find(|p| p.starts_with("To test a new configuration"))
        .expect("the gate paragraph of docs/hooks.md");
    let flags: Vec<&str> = paragraph
        .split('`')
        .filter(|s| s.starts_with("--pre-publish-exechook-"))
        .flat_map(str::split_whitespace)
        .collect();
    assert!(flags.len() >= 3, "{flags:?}");
    let conf = |extra: &str| {
        format!(
            "error_log stderr;\nevents {{}}\nhttp {{\n {extra}\n server {{ listen 127.0.0.1:1; }}\n}}\n"
        )
    };
    let up = Upstream::new();
    let good = up.commit_file("nginx.conf", conf(""), "good");
    let s = Scratch::new();
    let one_time = || {
        s.sidecar(&up.file_url())
            .arg("--one-time")
            .args(&flags)
            .run(Duration::from_secs(60))
    };
    let out = one_time();
    assert!(out.status.success(), "{flags:?}: {}", describe_output(&out));
    assert_eq!(s.published().as_deref(), Some(good.as_str()));

    up.commit_file("nginx.conf", conf("bogus;"), "broken");
    let out = one_time();
    assert!(!out.status.success(), "a broken nginx.conf passed the gate");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown directive"), "{err}");
    assert_eq!(s.published().as_deref(), Some(good.as_str()));
}
