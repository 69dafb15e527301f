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

pub mod reference;

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
    let cmd = command();
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
    out.push_str(&environment_text(&cmd));
    out.push_str("\n\n");
    for (title, paragraphs) in SECTIONS {
        section(&mut out, title);
        for text in *paragraphs {
            paragraph(&mut out, text);
        }
    }
    out
}

/// One visible flag as both renderers (this manual and `docs/flags.md`)
/// describe it, taken from its clap definition.
pub(crate) struct Flag {
    /// `-v, --verbose`, `--repo`.
    pub spellings: String,
    /// `URL`, for flags that take a value.
    pub value: Option<String>,
    /// The canonical environment variable.
    pub env: Option<String>,
    /// Deprecated environment names still read.
    pub legacy: &'static [&'static str],
    /// The help text, as `--help` shows it.
    pub help: String,
    pub repeatable: bool,
}

impl Flag {
    fn new(arg: &clap::Arg) -> Self {
        let mut spellings = Vec::new();
        if let Some(short) = arg.get_short() {
            spellings.push(format!("-{short}"));
        }
        if let Some(long) = arg.get_long() {
            spellings.push(format!("--{long}"));
        }
        let value = takes_value(arg)
            .then(|| {
                arg.get_value_names()
                    .unwrap_or_default()
                    .first()
                    .map(ToString::to_string)
            })
            .flatten();
        Flag {
            spellings: spellings.join(", "),
            value,
            env: arg.get_env().map(|e| e.to_string_lossy().into_owned()),
            legacy: cli::legacy_env_names(arg.get_id().as_str()),
            help: arg
                .get_long_help()
                .or(arg.get_help())
                .map(ToString::to_string)
                .unwrap_or_default(),
            repeatable: matches!(arg.get_action(), ArgAction::Append),
        }
    }
}

/// The built command (with clap's own `--help` and `--version`).
pub(crate) fn command() -> clap::Command {
    let mut cmd = Cli::command();
    cmd.build();
    cmd
}

/// Every visible flag, grouped under the headings `--help` uses ("General"
/// for those without one), in the order `--help` shows them.
pub(crate) fn flag_groups(cmd: &clap::Command) -> Vec<(&str, Vec<Flag>)> {
    let mut headings: Vec<Option<&str>> = Vec::new();
    for arg in cmd.get_arguments() {
        if !headings.contains(&arg.get_help_heading()) {
            headings.push(arg.get_help_heading());
        }
    }
    headings
        .into_iter()
        .map(|heading| {
            let flags = cmd
                .get_arguments()
                .filter(|arg| arg.get_help_heading() == heading && !arg.is_hide_set())
                .map(Flag::new)
                .collect();
            (heading.unwrap_or("General"), flags)
        })
        .collect()
}

/// The hidden git-sync v3 flags: `--long`, their legacy environment names
/// and the advice given when one is used.
pub(crate) fn deprecated_flags(
    cmd: &clap::Command,
) -> Vec<(String, &'static [&'static str], &'static str)> {
    cmd.get_arguments()
        .filter_map(|arg| {
            let long = arg.get_long()?;
            let advice = cli::v3_replacement(arg.get_id().as_str())?;
            Some((
                format!("--{long}"),
                cli::legacy_env_names(arg.get_id().as_str()),
                advice,
            ))
        })
        .collect()
}

/// The "ENVIRONMENT VARIABLES" text of `--help` (environment-only settings,
/// list syntax, durations, booleans), without its title.
pub(crate) fn environment_text(cmd: &clap::Command) -> String {
    let text = cmd
        .get_after_help()
        .map(ToString::to_string)
        .unwrap_or_default();
    text.strip_prefix("ENVIRONMENT VARIABLES:\n")
        .unwrap_or(&text)
        .trim_end()
        .to_string()
}

/// Every visible flag, grouped under the headings `--help` uses.
fn options(out: &mut String, cmd: &clap::Command) {
    for (heading, flags) in flag_groups(cmd) {
        let _ = writeln!(out, "  {heading}:\n");
        for flag in &flags {
            option(out, flag);
        }
    }
}

/// One flag: its spellings, value, environment names, then its help text.
fn option(out: &mut String, flag: &Flag) {
    let mut head = format!("    {}", flag.spellings);
    if let Some(value) = &flag.value {
        let _ = write!(head, " <{value}>");
    }
    if let Some(env) = &flag.env {
        let _ = write!(head, ", ${env}");
    }
    out.push_str(&head);
    out.push('\n');
    let mut help = flag.help.clone();
    if flag.repeatable {
        help.push_str(" (repeatable)");
    }
    if !flag.legacy.is_empty() {
        let names: Vec<String> = flag.legacy.iter().map(|n| format!("${n}")).collect();
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
    for (long, legacy, advice) in deprecated_flags(cmd) {
        let mut head = format!("    {long}");
        for env in legacy {
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
             consecutive failures, a failed hook with --one-time, a --one-time run \
             stopped by SIGTERM or SIGINT before its sync and hooks finished. 2: an unknown \
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
