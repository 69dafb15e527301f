//! What git-sync users parse or read: the JSON log lines (log alerts match
//! on git-sync's keys `logger`, `ts`, `caller`, `level`, `msg`, `error`), the
//! text log format through a pipe, and `--man`.
//!
//! git-sync's line shape (go-logr funcr, from
//! ../shared/reference/git-sync-v4.md §2.5):
//! `{"logger":"","ts":"2024-01-01 12:00:00.000000","caller":{"file":"main.go","line":123},"level":0,"msg":"...",...}`,
//! with no `level` on error lines, which carry `"error"`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, CommandFactory};
use nix::sys::signal::Signal;
use serde_json::Value;

use crate::support::receiver::Receiver;
use crate::support::sidecar::describe_output;
use crate::support::*;

const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// Writes an executable `/bin/sh` script `<scratch>/<name>` with `body`.
fn script(s: &Scratch, name: &str, body: &str) -> PathBuf {
    let p = s.dir.path().join(name);
    fs::write(&p, format!("#!/bin/sh\n{body}")).expect("writing a hook script");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod 0755");
    p
}

/// funcr's timestamp: `2006-01-02 15:04:05.000000`.
fn is_funcr_timestamp(ts: &str) -> bool {
    let b = ts.as_bytes();
    b.len() == 26
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b' ',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            _ => c.is_ascii_digit(),
        })
}

/// The top-level keys of a JSON object line, in the order they are written.
fn keys_in_order(line: &str, value: &Value) -> Vec<String> {
    let mut keys: Vec<(usize, String)> = value
        .as_object()
        .map(|o| o.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|k| line.find(&format!("\"{k}\":")).map(|at| (at, k)))
        .collect();
    keys.sort();
    keys.into_iter().map(|(_, k)| k).collect()
}

/// Rust `Debug` text in a string value: a struct (`Opened { .. }`), a hash
/// type (`Sha1(..)`), an `Option`.
fn debug_text_in(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => ["{ ", " }", "Sha1(", "Some(", "ObjectId("]
            .iter()
            .any(|p| s.contains(p))
            .then(|| s.clone()),
        Value::Array(items) => items.iter().find_map(debug_text_in),
        Value::Object(map) => map.values().find_map(debug_text_in),
        _ => None,
    }
}

/// Checks one stderr line against git-sync's shape; returns it parsed.
fn assert_gitsync_line(line: &str) -> Value {
    let value: Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
    let keys = keys_in_order(line, &value);
    let is_error = value.get("level").is_none();
    let head: &[&str] = if is_error {
        &["logger", "ts", "caller", "msg", "error"]
    } else {
        &["logger", "ts", "caller", "level", "msg"]
    };
    assert_eq!(
        &keys[..head.len().min(keys.len())],
        head,
        "key order: {line}"
    );
    assert_eq!(value["logger"], "", "{line}");
    let ts = value["ts"].as_str().unwrap_or_default();
    assert!(is_funcr_timestamp(ts), "ts {ts:?}: {line}");
    let caller = value["caller"].as_object().expect("caller is an object");
    assert_eq!(caller.len(), 2, "caller has file and line: {line}");
    assert!(
        caller["file"].as_str().is_some_and(|f| !f.is_empty()),
        "{line}"
    );
    assert!(caller["line"].is_u64(), "caller.line is a number: {line}");
    if !is_error {
        assert!(value["level"].is_u64(), "level is a number: {line}");
    }
    assert!(value["msg"].is_string(), "msg is a string: {line}");
    if let Some(text) = debug_text_in(&value) {
        panic!("Rust Debug text {text:?} in: {line}");
    }
    value
}

/// A run that logs a lot: start-up, fetches and publishes of two commits,
/// junk removed from `.worktrees/`, a failing sync (the repository is gone for a
/// while), an exec hook that fails once, a webhook whose receiver fails
/// once, trace-level detail (`-v 6`) and a graceful stop. Every stderr line
/// must have git-sync's shape.
#[test]
fn every_json_log_line_has_git_syncs_keys_and_structured_values() {
    let up = Upstream::new();
    up.commit_file("index.html", "one\n", "one");
    let s = Scratch::new();
    let counter = s.dir.path().join("hook-runs");
    let hook = script(
        &s,
        "flaky-hook",
        &format!(
            "n=0\n[ -f '{c}' ] && read n < '{c}'\nn=$((n+1))\necho \"$n\" > '{c}'\n\
             echo \"hook run $n for $GITSYNC_HASH\"\n[ \"$n\" -gt 1 ]\n",
            c = counter.display()
        ),
    );
    let receiver = Receiver::failing_first(1, 500);
    let run = s
        .sidecar(&up.file_url())
        .args(["--period=200ms", "--max-failures=-1", "-v", "6"])
        .args(["--exechook-backoff=1s", "--webhook-backoff=1s"])
        .arg("--exechook-command")
        .arg(&hook)
        .arg("--webhook-url")
        .arg(receiver.url("/hook"))
        .spawn();
    run.wait_for_link_hash(&s.link(), &up.head());
    run.wait_until(DEADLINE, "the exec hook's retry", || {
        fs::read_to_string(&counter).is_ok_and(|n| n.trim() == "2")
    });
    run.wait_until(DEADLINE, "the webhook's retry", || receiver.count() >= 2);

    // A failing sync: the repository disappears for a while.
    let away = up.base().join("away");
    fs::rename(up.path(), &away).expect("moving the repository away");
    run.wait_until(DEADLINE, "a failed sync in the log", || {
        run.stderr().contains("\"sync failed\"")
    });
    fs::rename(&away, up.path()).expect("moving the repository back");

    // Junk in .worktrees/ is removed (as git-sync does) and logged as a list.
    for junk in ["junk-a", "junk-b"] {
        fs::create_dir_all(s.worktrees().join(junk)).expect("planting junk");
    }
    up.commit_file("index.html", "two\n", "two");
    run.wait_for_link_hash(&s.link(), &up.head());
    run.wait_until(DEADLINE, "a removed stale worktree in the log", || {
        run.stderr().contains("removed stale worktrees")
    });
    run.signal(Signal::SIGTERM);
    assert!(
        run.wait_timeout(RUN_TIMEOUT).is_some(),
        "no exit after SIGTERM\n{}",
        run.logs()
    );

    let stderr = run.stderr();
    let lines: Vec<Value> = stderr.lines().map(assert_gitsync_line).collect();
    assert!(lines.len() > 20, "too few lines\n{}", run.logs());

    let failed = lines
        .iter()
        .find(|l| l["msg"] == "sync failed")
        .unwrap_or_else(|| panic!("no \"sync failed\" line\n{}", run.logs()));
    assert!(
        failed.get("level").is_none(),
        "errors have no level: {failed}"
    );
    assert!(failed["error"].is_string(), "{failed}");
    let removed = lines
        .iter()
        .find(|l| l["msg"] == "removed stale worktrees")
        .expect("checked above");
    assert!(
        removed["removed"]
            .as_array()
            .is_some_and(|a| a.contains(&Value::from("junk-a"))),
        "a list is a JSON array: {removed}"
    );
    assert!(
        lines.iter().any(|l| l["level"] == 0)
            && lines.iter().any(|l| l["level"].as_u64() > Some(0)),
        "info lines are level 0, debug and trace lines above\n{}",
        run.logs()
    );
}

/// `--log-format text` into a file or pipe (a log collector, `kubectl logs`)
/// has no colour escape codes.
#[test]
fn text_logs_through_a_pipe_have_no_colour_codes() {
    let up = Upstream::new();
    up.commit_file("index.html", "one\n", "one");
    let s = Scratch::new();
    let out = s
        .sidecar(&up.file_url())
        .args(["--one-time", "--log-format=text", "-v", "6"])
        .run(RUN_TIMEOUT);
    assert!(out.status.success(), "{}", describe_output(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.lines().count() > 3, "{}", describe_output(&out));
    assert!(
        !stderr.contains('\u{1b}'),
        "escape codes in text logs\n{}",
        describe_output(&out)
    );
}

/// `--man` prints the manual on stdout and exits 0, as git-sync's does; it
/// names every flag the parser knows (with its environment variable), so it
/// cannot fall behind the flags.
#[test]
fn man_prints_a_manual_naming_every_flag() {
    let out = Sidecar::new().arg("--man").run(RUN_TIMEOUT);
    assert!(out.status.success(), "{}", describe_output(&out));
    assert!(out.stderr.is_empty(), "{}", describe_output(&out));
    let man = String::from_utf8_lossy(&out.stdout);
    for section in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "OPTIONS",
        "ON-DISK LAYOUT",
        "HOOKS",
        "WEBHOOKS",
    ] {
        assert!(
            man.lines().any(|l| l == section),
            "no {section} section\n{man}"
        );
    }
    let cmd = git_sidecar::cli::Cli::command();
    let mut checked = 0;
    for arg in cmd.get_arguments() {
        let long = arg.get_long().unwrap_or_default();
        let prints_and_exits = matches!(
            arg.get_action(),
            ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
        ) || long == "man";
        if prints_and_exits || long.is_empty() {
            continue;
        }
        // The hidden --__env__X flags exist for tests; the manual names X.
        if !long.starts_with("__env__") {
            assert!(man.contains(&format!("--{long}")), "--{long} missing");
        }
        if let Some(env) = arg.get_env() {
            let env = env.to_string_lossy();
            assert!(man.contains(env.as_ref()), "{env} missing (--{long})");
        }
        checked += 1;
    }
    assert!(checked > 60, "only {checked} flags");
    for spelling in ["    -h, --help", "    -V, --version", "    --man"] {
        assert!(
            man.lines().any(|l| l.starts_with(spelling)),
            "{spelling} missing"
        );
    }
}

/// A first start into an empty root says it makes a new root and reports no
/// repair; a root holding something else is emptied, and that is reported
/// as a repair (a warning, then the info line with `reinitialized`).
#[test]
fn a_first_start_reports_a_new_root_not_a_repair() {
    let up = Upstream::new();
    up.commit_file("index.html", "one\n", "one");
    let stderr_of = |s: &Scratch| -> String {
        let out = s.sidecar(&up.file_url()).arg("--one-time").run(RUN_TIMEOUT);
        assert!(out.status.success(), "{}", describe_output(&out));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };

    let fresh = stderr_of(&Scratch::new());
    assert!(
        logged(&fresh, "initialising a new root").is_some(),
        "{fresh}"
    );
    assert!(
        logged(&fresh, "repaired the root repository").is_none(),
        "{fresh}"
    );

    let littered = Scratch::new();
    fs::create_dir_all(&littered.root).expect("mkdir root");
    fs::write(littered.root.join("stray.txt"), "x").expect("write stray file");
    let stderr = stderr_of(&littered);
    let repaired = logged(&stderr, "repaired the root repository");
    assert_eq!(
        repaired.map(|l| l["reinitialized"].clone()),
        Some(Value::Bool(true)),
        "{stderr}"
    );
}
