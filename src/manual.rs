//! `--man`: the full manual on stdout, as git-sync's `--man` prints one.
//!
//! The OPTIONS and ENVIRONMENT sections are generated from the clap
//! definitions in [`crate::cli`] (help text, value name, environment
//! variable, legacy names, defaults as the help text states them), so the
//! manual cannot drift from the flags; the prose sections are short and
//! point at the README for the details.

use std::ffi::OsString;
use std::fmt::Write as _;

use clap::{ArgAction, CommandFactory};

use crate::cli::{self, Cli};

/// Width the text is wrapped to (a terminal's).
const WIDTH: usize = 80;
const INDENT: &str = "            ";

/// Whether `args` (program name first) ask for the manual: they parse, and
/// `--man` is among them. Any other mistake is left to the normal parse,
/// which reports it.
pub fn requested(args: &[OsString]) -> bool {
    Cli::try_parse_with_env(args.iter().cloned(), &|_| None).is_ok_and(|cli| cli.man)
}

/// The manual's text.
pub fn render() -> String {
    let mut cmd = Cli::command();
    // Adds clap's own --help and --version.
    cmd.build();
    let mut out = String::new();
    section(&mut out, "NAME");
    let about = cmd.get_about().map(ToString::to_string).unwrap_or_default();
    paragraph(&mut out, &format!("git-sidecar - {about}"));
    section(&mut out, "SYNOPSIS");
    paragraph(
        &mut out,
        "git-sidecar --repo=<repo> --root=<path> [OPTIONS]...",
    );
    section(&mut out, "DESCRIPTION");
    for text in DESCRIPTION {
        paragraph(&mut out, text);
    }
    section(&mut out, "OPTIONS");
    options(&mut out, &cmd);
    deprecated(&mut out, &cmd);
    section(&mut out, "ENVIRONMENT");
    if let Some(after) = cmd.get_after_help() {
        let text = after.to_string();
        let body = text
            .strip_prefix("ENVIRONMENT VARIABLES:\n")
            .unwrap_or(&text);
        out.push_str(body.trim_end());
        out.push_str("\n\n");
    }
    for (title, paragraphs) in SECTIONS {
        section(&mut out, title);
        for text in *paragraphs {
            paragraph(&mut out, text);
        }
    }
    out
}

/// Every visible flag, grouped under the headings `--help` uses.
fn options(out: &mut String, cmd: &clap::Command) {
    let mut headings: Vec<Option<&str>> = Vec::new();
    for arg in cmd.get_arguments() {
        if !headings.contains(&arg.get_help_heading()) {
            headings.push(arg.get_help_heading());
        }
    }
    for heading in headings {
        let _ = writeln!(out, "  {}:\n", heading.unwrap_or("General"));
        for arg in cmd.get_arguments() {
            if arg.get_help_heading() == heading && !arg.is_hide_set() {
                option(out, arg);
            }
        }
    }
}

/// One flag: its spellings, value, environment names, then its help text.
fn option(out: &mut String, arg: &clap::Arg) {
    let mut head = String::from("    ");
    if let Some(short) = arg.get_short() {
        let _ = write!(head, "-{short}, ");
    }
    if let Some(long) = arg.get_long() {
        let _ = write!(head, "--{long}");
    }
    if takes_value(arg) {
        let names = arg.get_value_names().unwrap_or_default();
        if let Some(name) = names.first() {
            let _ = write!(head, " <{name}>");
        }
    }
    if let Some(env) = arg.get_env() {
        let _ = write!(head, ", ${}", env.to_string_lossy());
    }
    out.push_str(&head);
    out.push('\n');
    let mut help = arg
        .get_long_help()
        .or(arg.get_help())
        .map(ToString::to_string)
        .unwrap_or_default();
    if matches!(arg.get_action(), ArgAction::Append) {
        help.push_str(" (repeatable)");
    }
    let legacy = cli::legacy_env_names(arg.get_id().as_str());
    if !legacy.is_empty() {
        let names: Vec<String> = legacy.iter().map(|n| format!("${n}")).collect();
        let _ = write!(help, ". Deprecated environment names: {}", names.join(", "));
    }
    wrap(out, &help, INDENT);
    out.push('\n');
}

fn takes_value(arg: &clap::Arg) -> bool {
    !matches!(
        arg.get_action(),
        ArgAction::SetTrue
            | ArgAction::SetFalse
            | ArgAction::Count
            | ArgAction::Help
            | ArgAction::HelpShort
            | ArgAction::HelpLong
            | ArgAction::Version
    )
}

/// The git-sync v3 flags, hidden from `--help`, still accepted.
fn deprecated(out: &mut String, cmd: &clap::Command) {
    section(out, "DEPRECATED FLAGS");
    paragraph(
        out,
        "Accepted for git-sync v3 compatibility, each with a warning saying what to use instead:",
    );
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        let Some(advice) = cli::v3_replacement(arg.get_id().as_str()) else {
            continue;
        };
        let mut head = format!("    --{long}");
        for env in cli::legacy_env_names(arg.get_id().as_str()) {
            let _ = write!(head, ", ${env}");
        }
        let _ = writeln!(out, "{head}");
        wrap(out, advice, INDENT);
        out.push('\n');
    }
}

fn section(out: &mut String, title: &str) {
    out.push_str(title);
    out.push_str("\n\n");
}

fn paragraph(out: &mut String, text: &str) {
    wrap(out, text, "    ");
    out.push('\n');
}

/// Appends `text` word-wrapped to [`WIDTH`], each line starting with `indent`.
fn wrap(out: &mut String, text: &str, indent: &str) {
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent.len() + line.len() + 1 + word.len() > WIDTH {
            let _ = writeln!(out, "{indent}{line}");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        let _ = writeln!(out, "{indent}{line}");
    }
}

const DESCRIPTION: &[&str] = &[
    "git-sidecar fetches a git repository (one ref: a branch, a tag, a full \
     commit hash or HEAD) into --root, checks each new commit out into its own \
     directory and publishes it by atomically swapping a symlink (--link), so \
     readers never see a half-written tree. It is a drop-in replacement for \
     git-sync v4: the same flags, environment variables, on-disk layout, \
     hooks and JSON logs. It runs no git binary: git is built in.",
    "It polls every --period; with --one-time it syncs once and exits. Failures \
     are retried; after --max-failures consecutive ones it exits 1.",
    "Flags take precedence over environment variables, which take precedence \
     over the defaults. Every flag has a $GITSYNC_* variable; the git-sync v3 \
     names ($GIT_SYNC_*) still work with a deprecation warning. A misspelled \
     flag is an error; a misspelled variable is silently ignored.",
];

const SECTIONS: &[(&str, &[&str])] = &[
    (
        "ON-DISK LAYOUT",
        &[
            "<root>/.git is a real git repository (branch \"git-sync\") holding \
             the objects; <root>/.worktrees/<sha> is one checked-out commit \
             (full 40-hex name) whose .git file points at \
             ../../.git/worktrees/<sha>; <link> is a symlink with a relative \
             target, .worktrees/<sha>.",
            "Readers go through the link: the base name of its target is the \
             commit hash. Everything else under --root is an implementation \
             detail. Retired worktrees are deleted after \
             --stale-worktree-timeout. One instance per root: \
             <root>/.git-sidecar.lock names the holder.",
        ],
    ),
    (
        "HOOKS",
        &[
            "After each publish, and once after start-up even when nothing \
             changed, git-sidecar runs --exechook-command (no shell, in the new \
             worktree, with $GITSYNC_HASH set), calls --webhook-url, and \
             signals --reload-process. Hooks run in the background: the sync \
             loop never waits for them. Each keeps only the newest commit and \
             retries a failure every --*-backoff, at exactly that interval (as \
             git-sync does). With --one-time, the exit code is 1 if a hook failed.",
            "--pre-publish-exechook-command runs in the new worktree before the \
             link moves: a non-zero exit keeps the old content published (and \
             ready), and the gate runs again for the same commit every \
             --pre-publish-exechook-backoff until it passes or the ref moves.",
        ],
    ),
    (
        "WEBHOOKS",
        &[
            "Outgoing: --webhook-url is called with --webhook-method and the \
             header Gitsync-Hash: <sha>; --webhook-success-status is success \
             (0: any answer).",
            "Incoming (with --http-bind): a forge's push webhook, signed with a \
             --incoming-webhook-secret-file secret, POSTed to \
             --incoming-webhook-path triggers a sync at once; POST /sync does \
             the same with a bearer token (--sync-trigger-token-file). Polling \
             continues as a backstop.",
        ],
    ),
    (
        "HTTP ENDPOINT",
        &[
            "With --http-bind: GET /livez, GET /readyz, GET /status (JSON), \
             /metrics (--http-metrics), /debug/pprof/ (--http-pprof); any other \
             path answers as git-sync's health check (503 until the first \
             successful sync, then 200).",
        ],
    ),
    (
        "LOGS",
        &[
            "One JSON object per line on stderr, as git-sync writes them: \
             logger, ts, caller, level (absent on errors), msg, error, then the \
             line's own keys. --log-format=text for people; -v for more.",
        ],
    ),
    (
        "EXIT STATUS",
        &[
            "0: --help, --version, --man, a successful --one-time run, or a \
             graceful stop (SIGTERM, SIGINT). 1: invalid configuration, too many \
             consecutive failures, a failed hook with --one-time. 2: an unknown \
             flag.",
        ],
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        std::iter::once("git-sidecar")
            .chain(list.iter().copied())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn man_is_requested_only_by_the_flag() {
        assert!(requested(&args(&["--man"])));
        assert!(requested(&args(&["--repo=x", "--man"])));
        assert!(!requested(&args(&["--repo=x"])));
        assert!(!requested(&args(&["--man", "--no-such-flag"])));
    }
}
