//! Command-line and environment configuration: errors are fatal, name the
//! offending flag, and are all reported at once; env vars work like flags.

use std::process::Output;
use std::time::Duration;

use crate::support::sidecar::describe_output;
use crate::support::*;

const RUN_TIMEOUT: Duration = Duration::from_secs(60);

fn stderr_lc(out: &Output) -> String {
    // Some CLIs print usage errors on stdout; accept either stream.
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    )
    .to_lowercase()
}

fn assert_config_error(out: &Output, names: &[&[&str]]) {
    assert!(
        !out.status.success(),
        "expected a configuration error\n{}",
        describe_output(out)
    );
    let text = stderr_lc(out);
    for alternatives in names {
        assert!(
            alternatives.iter().any(|n| text.contains(n)),
            "the error output should name {alternatives:?}\n{}",
            describe_output(out)
        );
    }
}

fn upstream() -> Upstream {
    let up = Upstream::new();
    up.commit_file("index.html", "hello\n", "initial");
    up
}

#[test]
fn bad_period_is_rejected_and_named() {
    let up = upstream();
    let s = Scratch::new();
    let out = s
        .sidecar(&up.file_url())
        .args(["--period", "bogus", "--one-time"])
        .run(RUN_TIMEOUT);
    assert_config_error(&out, &[&["period"]]);
    assert!(
        s.published().is_none(),
        "nothing may be published on a config error"
    );
}

#[test]
fn period_below_minimum_is_rejected() {
    let up = upstream();
    let s = Scratch::new();
    // git-sync: --period must be at least 10ms.
    let out = s
        .sidecar(&up.file_url())
        .args(["--period", "1ms", "--one-time"])
        .run(RUN_TIMEOUT);
    assert_config_error(&out, &[&["period"]]);
}

#[test]
fn missing_root_is_rejected_and_named() {
    let up = upstream();
    let out = Sidecar::new()
        .args(["--repo", &up.file_url(), "--one-time"])
        .run(RUN_TIMEOUT);
    assert_config_error(&out, &[&["root"]]);
}

#[test]
fn missing_repo_is_rejected_and_named() {
    let s = Scratch::new();
    let out = Sidecar::new()
        .arg("--root")
        .arg(&s.root)
        .arg("--one-time")
        .run(RUN_TIMEOUT);
    assert_config_error(&out, &[&["repo"]]);
    assert!(s.published().is_none());
}

/// A `--repo` gix cannot parse (an unclosed IPv6 literal): the parser's
/// message quotes its input, which once put the password into the fatal
/// error line. Now refused as configuration, the password redacted.
#[test]
fn unparsable_repo_is_refused_without_its_password() {
    let s = Scratch::new();
    let out = Sidecar::new()
        .args(["--repo", "https://u:s3cret-pw@[::1/r", "--one-time"])
        .arg("--root")
        .arg(&s.root)
        .run(RUN_TIMEOUT);
    assert_config_error(&out, &[&["repo"], &["invalid repository url"]]);
    assert!(
        !stderr_lc(&out).contains("s3cret-pw"),
        "the password must not be printed\n{}",
        describe_output(&out)
    );
}

#[test]
fn several_mistakes_are_all_reported() {
    let up = upstream();
    let out = Sidecar::new()
        .args([
            "--repo",
            &up.file_url(),
            "--period",
            "bogus",
            "--sync-timeout",
            "nope",
            "--one-time",
        ])
        .run(RUN_TIMEOUT);
    assert_config_error(
        &out,
        &[&["root"], &["period"], &["sync-timeout", "sync_timeout"]],
    );
}

#[test]
fn bad_env_value_is_rejected_and_named() {
    let up = upstream();
    let s = Scratch::new();
    let out = s
        .sidecar(&up.file_url())
        .arg("--one-time")
        .env("GITSYNC_PERIOD", "bogus")
        .run(RUN_TIMEOUT);
    assert_config_error(&out, &[&["period"]]);
}

#[test]
fn help_exits_zero() {
    let out = Sidecar::new().arg("--help").run(RUN_TIMEOUT);
    assert!(out.status.success(), "{}", describe_output(&out));
    let text = stderr_lc(&out);
    assert!(
        text.contains("--repo") && text.contains("--root"),
        "{}",
        describe_output(&out)
    );
}

#[test]
fn env_vars_configure_like_flags() {
    let up = upstream();
    let head = up.head();
    let s = Scratch::new();
    let out = Sidecar::new()
        .env("GITSYNC_REPO", up.file_url())
        .env("GITSYNC_ROOT", &s.root)
        .env("GITSYNC_LINK", LINK)
        .env("GITSYNC_ONE_TIME", "true")
        .env("GITSYNC_DEPTH", "1")
        .run(RUN_TIMEOUT);
    assert!(out.status.success(), "{}", describe_output(&out));
    assert_eq!(assert_published_layout(&s.root, &s.link()), head);
}

#[test]
fn flag_overrides_env() {
    let up = upstream();
    let head = up.head();
    let s = Scratch::new();
    let out = Sidecar::new()
        .env("GITSYNC_REPO", up.file_url())
        .env("GITSYNC_ROOT", &s.root)
        .env("GITSYNC_LINK", "from-env")
        .args(["--link", "from-flag", "--one-time"])
        .run(RUN_TIMEOUT);
    assert!(out.status.success(), "{}", describe_output(&out));
    assert_eq!(
        link_target_hash(&s.root.join("from-flag")).as_deref(),
        Some(head.as_str())
    );
    assert!(
        !s.root.join("from-env").exists(),
        "the env value must lose against the flag"
    );
}

/// Publishes once, then runs again with `--{flag} value`: the second run must
/// be refused before touching anything, naming the flag and the reason.
fn refused_state_file(flag: &str, value: &str, reason: &str) {
    let up = upstream();
    let s = Scratch::new();
    let first = s.sidecar(&up.file_url()).arg("--one-time").run(RUN_TIMEOUT);
    assert!(first.status.success(), "{}", describe_output(&first));
    let link_before = std::fs::read_link(s.link()).expect("published link");
    let config_before = std::fs::read(s.root.join(".git/config")).expect(".git/config");
    let listing_before = walk_tree(&s.root)
        .into_iter()
        .map(|(path, meta)| (path, meta.len()))
        .collect::<Vec<_>>();

    let out = s
        .sidecar(&up.file_url())
        .args([&format!("--{flag}"), value, "--one-time"])
        .run(RUN_TIMEOUT);
    assert_config_error(&out, &[&[&format!("--{flag}")], &[reason]]);
    assert_eq!(std::fs::read_link(s.link()).ok(), Some(link_before));
    assert_eq!(
        std::fs::read(s.root.join(".git/config")).ok(),
        Some(config_before)
    );
    let listing_after = walk_tree(&s.root)
        .into_iter()
        .map(|(path, meta)| (path, meta.len()))
        .collect::<Vec<_>>();
    assert_eq!(listing_after, listing_before, "nothing in the root changed");
}

#[test]
fn error_file_on_the_link_or_in_dot_git_is_refused_and_nothing_is_touched() {
    refused_state_file("error-file", LINK, "is the published link");
    refused_state_file("error-file", ".git/config", "inside --root's .git");
}

#[test]
fn touch_file_through_the_link_or_in_worktrees_is_refused_and_nothing_is_touched() {
    refused_state_file(
        "touch-file",
        &format!("{LINK}/index.html"),
        "inside the published link",
    );
    refused_state_file(
        "touch-file",
        ".worktrees/x",
        "inside --root's .worktrees directory",
    );
}

/// A configuration error also goes to `--error-file` (as git-sync writes
/// it there) when that flag itself is valid, relative to `--root` or
/// absolute, into a directory that exists (nothing is created for it, not
/// even `--root`); a bad `--error-file` leaves nothing behind.
#[test]
fn a_configuration_error_is_written_to_the_error_file() {
    let up = upstream();
    let s = Scratch::new();
    let out = s
        .sidecar(&up.file_url())
        .args(["--period", "5ms", "--error-file", "last.txt"])
        .run(RUN_TIMEOUT);
    assert_config_error(&out, &[&["--period"]]);
    assert!(!s.root.exists(), "--root was created for the error file");
    std::fs::create_dir(&s.root).expect("mkdir root");
    let out = s
        .sidecar(&up.file_url())
        .args(["--period", "5ms", "--error-file", "last.txt"])
        .run(RUN_TIMEOUT);
    assert_config_error(&out, &[&["--period"]]);
    let written = std::fs::read_to_string(s.root.join("last.txt"))
        .unwrap_or_else(|e| panic!("no error file ({e}): {}", describe_output(&out)));
    assert!(
        written.contains("invalid configuration") && written.contains("--period"),
        "{written}"
    );

    let absolute = s.dir.path().join("abs-err.txt");
    let out = s
        .sidecar(&up.file_url())
        .args(["--period", "5ms", "--error-file"])
        .arg(&absolute)
        .run(RUN_TIMEOUT);
    assert_config_error(&out, &[&["--period"]]);
    assert!(absolute.exists(), "{}", describe_output(&out));

    let out = s
        .sidecar(&up.file_url())
        .args(["--period", "5ms", "--error-file", ".git/x"])
        .run(RUN_TIMEOUT);
    assert_config_error(&out, &[&["--error-file"]]);
    assert!(!s.root.join(".git/x").exists());
}
