//! The runnable examples in `examples/` run as tests: each shell script
//! starts the built sidecar and a real nginx on 127.0.0.1, must exit 0, and
//! must have printed what it observed (pages served, links, HTTP answers,
//! metrics) in the expected order. The scripts check every step themselves;
//! these tests also pin down what a reader of their output is shown.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::support::is_hex40;
use crate::support::sidecar::{bin, describe_output, Sidecar};

/// Bound for one script (a few seconds on an idle machine). On timeout the
/// harness kills the script's whole process group (sidecar and nginx too).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

/// Runs `examples/<name>` against the binary under test; panics with its
/// output unless it exits 0.
fn run_example(name: &str) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    let out: Output = Sidecar::program(script)
        .env("GIT_SIDECAR", bin())
        .run(SCRIPT_TIMEOUT);
    let report = describe_output(&out);
    assert!(out.status.success(), "{name} failed\n{report}");
    report
}

/// The rest of each output line that starts (after indentation) with `prefix`.
fn after<'a>(report: &'a str, prefix: &str) -> Vec<&'a str> {
    report
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix(prefix))
        .collect()
}

/// Headings of the pages nginx served, in order ("GET http://127.0.0.1:PORT/ -> ...").
fn pages_served(report: &str) -> Vec<&str> {
    after(report, "GET http://127.0.0.1:")
        .into_iter()
        .filter_map(|rest| rest.split_once("/ -> ").map(|(_, heading)| heading))
        .collect()
}

/// Hashes of the commits pushed upstream ("pushed revision N: <sha>"), in order.
fn pushed(report: &str) -> Vec<&str> {
    after(report, "pushed revision ")
        .into_iter()
        .filter_map(|rest| rest.split_once(": ").map(|(_, sha)| sha))
        .collect()
}

/// Hashes the published link pointed at ("root/site -> .worktrees/<sha>"), in order.
fn links_shown(report: &str) -> Vec<&str> {
    after(report, "root/site -> .worktrees/")
}

fn assert_two_commits(report: &str) -> Vec<&str> {
    let shas = pushed(report);
    assert!(
        shas.len() == 2 && shas.iter().all(|s| is_hex40(s)) && shas[0] != shas[1],
        "expected two distinct pushed commits, got {shas:?}\n{report}"
    );
    shas
}

#[test]
fn nginx_site_shows_the_pushed_commit() {
    let report = run_example("nginx-site.sh");
    let shas = assert_two_commits(&report);
    assert_eq!(
        pages_served(&report),
        ["Hello from revision 1", "Hello from revision 2"],
        "pages nginx served\n{report}"
    );
    assert_eq!(links_shown(&report), shas, "published links\n{report}");
}

#[test]
fn webhook_deploy_publishes_only_on_a_signed_push() {
    let report = run_example("webhook-deploy.sh");
    let shas = assert_two_commits(&report);
    // Before the push, after it, after the two refused deliveries, after the signed one.
    assert_eq!(
        pages_served(&report),
        [
            "Hello from revision 1",
            "Hello from revision 1",
            "Hello from revision 1",
            "Hello from revision 2"
        ],
        "pages nginx served\n{report}"
    );
    let codes: Vec<&str> = after(&report, "HTTP ")
        .into_iter()
        .map(|rest| rest.split(' ').next().unwrap_or_default())
        .collect();
    assert_eq!(codes, ["401", "401", "202"], "webhook answers\n{report}");
    assert_eq!(links_shown(&report), [shas[1]], "published link\n{report}");
    for result in ["missing_signature", "bad_signature", "ok"] {
        let line = format!(
            "git_sidecar_webhook_requests_total{{provider=\"github\",result=\"{result}\"}} 1"
        );
        assert!(
            after(&report, "").contains(&line.as_str()),
            "missing metric line {line}\n{report}"
        );
    }
}
