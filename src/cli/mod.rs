//! Raw command-line surface ("LowArgs"): every git-sync v4 flag (and the
//! hidden v3 leftovers) as clap sees it, with no interpretation.
//!
//! Values are kept as the strings the user typed; parsing and validation
//! happen in [`crate::config`], so that every mistake can be reported at once.
//!
//! # Where a value comes from
//!
//! Precedence, highest first (git-sync ≥ 4.4):
//!
//! 1. the command line (`--period=5s`);
//! 2. a legacy environment variable (`GIT_SYNC_PERIOD`, sometimes `GIT_*`),
//!    with a deprecation warning, plus an "overridden" warning when the
//!    canonical name is set too;
//! 3. the canonical environment variable (`GITSYNC_PERIOD`);
//! 4. nothing: the field stays `None` and `config` applies the default.
//!
//! The clap `env = "GITSYNC_..."` attributes are there so that `--help`
//! names the variable. [`Cli::try_parse_with_env`] keeps only the values that
//! clap took from the command line ([`clap::parser::ValueSource`]) and then
//! resolves every environment variable, canonical or legacy, through the
//! lookup closure it is given. Production passes [`process_env`], which is the
//! only place in the crate that reads the process environment; tests pass a
//! map. An environment variable set to the empty string counts as unset.
//!
//! Repeatable flags take several values from one environment variable: a
//! colon-separated list (`GITSYNC_SSH_KEY_FILE`), a comma-separated list (the
//! secret and token files), one value per line (`GITSYNC_WEBHOOK_HEADER`), or,
//! for `GITSYNC_EXECHOOK_ARG` and `GITSYNC_PRE_PUBLISH_EXECHOOK_ARG`, a JSON
//! array of strings that is kept here as the one raw string (its
//! [`Provenance::origin`] is then [`Origin::Env`]) and decoded by
//! [`crate::config`], which can report a malformed array.
//!
//! Use [`Cli::try_parse_with_env`] (or [`Cli::try_parse_process`]), not the
//! derived `Cli::parse*` methods: those read `GITSYNC_*` through clap alone,
//! ignore the legacy names and record no provenance.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory, FromArgMatches};

/// Looks up one environment variable by name.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, for [`Cli::try_parse_with_env`]. Values that are
/// not valid UTF-8 are converted lossily.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
}

mod defs;
mod table;

pub use defs::{Cli, Flag};
pub use table::{EnvList, RawValue, Syntax};

/// Legacy environment names of a clap argument id (empty if none); for
/// code that walks clap's arguments (the manual). Code naming one flag uses
/// [`Flag::legacy_env`].
pub fn legacy_env_names(id: &str) -> &'static [&'static str] {
    Flag::from_id(id).map_or(&[], Flag::legacy_env)
}

/// For the clap argument id of a deprecated v3 flag, the advice ("use --ref
/// instead"); see [`Flag::v3_advice`].
pub fn v3_replacement(id: &str) -> Option<&'static str> {
    Flag::from_id(id).and_then(Flag::v3_advice)
}

/// Where a value was taken from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    CommandLine,
    /// The environment variable (canonical or legacy) that supplied it.
    Env(String),
}

/// What [`Cli::try_parse_with_env`] learnt besides the values.
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    resolved: bool,
    origins: BTreeMap<Flag, Origin>,
    /// Deprecation warnings (legacy environment names, v3 flags).
    pub warnings: Vec<String>,
}

impl Provenance {
    /// Whether the values went through [`Cli::try_parse_with_env`]. If not,
    /// any value present is treated as set on the command line.
    pub fn is_resolved(&self) -> bool {
        self.resolved
    }

    /// Where the value of `flag` came from; `None` when it was not set at
    /// all (or provenance is unknown).
    pub fn origin(&self, flag: Flag) -> Option<&Origin> {
        self.origins.get(&flag)
    }
}

/// A value that must not show up in `Debug` output (passwords, keys,
/// credential JSON).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(REDACTED)")
    }
}

/// A URL whose `Debug` output has any embedded password redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct UrlArg(String);

impl UrlArg {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for UrlArg {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl fmt::Debug for UrlArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Also --askpass-url and --webhook-url, whose queries may hold tokens.
        write!(f, "UrlArg({})", crate::types::shown_url(&self.0))
    }
}

/// Splits an environment value that holds several entries.
fn split_env_list(form: EnvList, value: &str) -> Vec<String> {
    match form {
        EnvList::One => vec![value.to_string()],
        EnvList::Colon => value.split(':').map(str::to_string).collect(),
        EnvList::Comma => value
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .collect(),
        EnvList::Line => value
            .split('\n')
            .map(|line| line.strip_suffix('\r').unwrap_or(line))
            .filter(|line| !line.trim().is_empty())
            .map(str::to_string)
            .collect(),
    }
}

/// The arguments that are no setting: those that print something and exit
/// (`--help`, `--version`, `--man`) and the words that belong to no flag
/// (`stray`). No environment variable, no table entry.
pub fn is_help_or_version(arg: &clap::Arg) -> bool {
    matches!(
        arg.get_action(),
        ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
    ) || matches!(arg.get_id().as_str(), "man" | "stray")
}

/// The canonical environment name of an argument (from its clap `env`).
fn canonical_env(arg: &clap::Arg) -> Option<String> {
    arg.get_env().map(|e| e.to_string_lossy().into_owned())
}

impl Cli {
    /// Parses `args` (including the program name) and applies the environment
    /// through `env`; see the module docs for the precedence. Errors are clap's
    /// own (`--help`, `--version`, unknown flag, missing value): call
    /// `err.exit()` on them.
    pub fn try_parse_with_env<I, T>(args: I, env: EnvLookup<'_>) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        // Never print environment values in --help: GITSYNC_REPO may hold a token.
        let mut cmd = Cli::command().mut_args(|a| a.hide_env_values(true));
        let matches = cmd.try_get_matches_from_mut(args)?;
        let mut cli = Cli::from_arg_matches(&matches)?;
        cli.resolve_env(&cmd, &matches, env);
        Ok(cli)
    }

    /// [`Cli::try_parse_with_env`] on the process's own arguments and environment.
    pub fn try_parse_process() -> Result<Cli, clap::Error> {
        Cli::try_parse_with_env(std::env::args_os(), &process_env)
    }

    fn resolve_env(&mut self, cmd: &clap::Command, matches: &ArgMatches, env: EnvLookup<'_>) {
        let mut prov = Provenance {
            resolved: true,
            ..Provenance::default()
        };
        let lookup = |name: &str| env(name).filter(|v| !v.is_empty());

        for arg in cmd.get_arguments().filter(|a| !is_help_or_version(a)) {
            // Every other argument has a table entry (a unit test checks).
            let Some(flag) = Flag::from_id(arg.get_id().as_str()) else {
                continue;
            };
            let from_cli = matches.value_source(flag.id()) == Some(ValueSource::CommandLine);
            let replacement = flag.v3_advice();
            let canonical = canonical_env(arg);

            if from_cli {
                if let (Some(long), Some(replacement)) = (arg.get_long(), replacement) {
                    prov.warnings
                        .push(format!("flag --{long} has been deprecated, {replacement}"));
                }
            }

            // Environment: canonical first, then the legacy names; the last one found wins.
            let mut found: Option<(String, String)> = None;
            if let Some(name) = &canonical {
                if let Some(value) = lookup(name) {
                    found = Some((name.clone(), value));
                }
            }
            for &legacy in flag.legacy_env() {
                let Some(value) = lookup(legacy) else {
                    continue;
                };
                let advice = match (&canonical, replacement) {
                    (Some(c), _) => format!("use ${c} instead"),
                    (None, Some(r)) => r.to_string(),
                    (None, None) => "use the matching GITSYNC_ variable instead".to_string(),
                };
                prov.warnings
                    .push(format!("env ${legacy} has been deprecated, {advice}"));
                if let Some((previous, _)) = &found {
                    prov.warnings
                        .push(format!("env ${previous} was overridden by ${legacy}"));
                }
                found = Some((legacy.to_string(), value));
            }

            if from_cli {
                prov.origins.insert(flag, Origin::CommandLine);
                continue;
            }
            let values = match &found {
                None => Vec::new(),
                Some((_, value)) => split_env_list(flag.env_list(), value),
            };
            if let Some((name, _)) = found {
                prov.origins.insert(flag, Origin::Env(name));
            }
            flag.set(self, values);
        }
        self.provenance = prov;
    }

    /// Names an argument for messages: `--period (GITSYNC_PERIOD)`. When the
    /// value came from a legacy variable, that variable is named instead; for
    /// environment-only settings only the variable is named.
    pub fn label(&self, flag: Flag) -> String {
        let id = flag.id();
        let cmd = Cli::command();
        let Some(arg) = cmd.get_arguments().find(|a| a.get_id() == id) else {
            return id.to_string();
        };
        let env = match self.provenance.origin(flag) {
            Some(Origin::Env(name)) => Some(name.clone()),
            _ => canonical_env(arg).or_else(|| flag.legacy_env().first().map(|s| s.to_string())),
        };
        match (arg.get_long(), env) {
            (Some(long), Some(env)) if long.starts_with("__env__") => {
                format!("{env} (environment only)")
            }
            (Some(long), Some(env)) => format!("--{long} ({env})"),
            (Some(long), None) => format!("--{long}"),
            (None, Some(env)) => env,
            (None, None) => id.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Cli {
        let map: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut argv = vec!["git-sidecar"];
        argv.extend_from_slice(args);
        Cli::try_parse_with_env(argv, &|k: &str| map.get(k).cloned()).unwrap()
    }

    #[test]
    fn command_is_well_formed() {
        Cli::command().debug_assert();
    }

    fn upper_snake(long: &str) -> String {
        long.replace('-', "_").to_ascii_uppercase()
    }

    #[test]
    fn every_visible_long_flag_has_its_gitsync_env() {
        let cmd = Cli::command();
        let mut checked = 0;
        for arg in cmd.get_arguments() {
            if arg.is_hide_set() || is_help_or_version(arg) {
                continue;
            }
            let long = arg.get_long().expect("visible args are long flags");
            let expected = format!("GITSYNC_{}", upper_snake(long));
            assert_eq!(
                canonical_env(arg).as_deref(),
                Some(expected.as_str()),
                "--{long}"
            );
            checked += 1;
        }
        assert!(checked > 40, "only {checked} flags checked");
    }

    #[test]
    fn every_argument_has_a_table_entry_and_every_entry_an_argument() {
        let cmd = Cli::command();
        let ids: Vec<&str> = cmd
            .get_arguments()
            .filter(|a| !is_help_or_version(a))
            .map(|a| a.get_id().as_str())
            .collect();
        for id in &ids {
            assert!(Flag::from_id(id).is_some(), "no table entry for {id}");
        }
        assert_eq!(ids.len(), Flag::ALL.len(), "a table entry has no argument");
        for flag in Flag::ALL {
            assert!(ids.contains(&flag.id()), "{flag:?} has no argument");
            for n in flag.legacy_env() {
                assert!(n.starts_with("GIT_"), "{n}");
            }
        }
        // Hidden (v3 and test-only) args must not show up in help.
        for arg in cmd.get_arguments() {
            if v3_replacement(arg.get_id().as_str()).is_some() {
                assert!(arg.is_hide_set(), "{} should be hidden", arg.get_id());
            }
        }
    }

    #[test]
    fn help_defaults_come_from_the_table() {
        let cmd = Cli::command();
        let help = |id: &str| {
            let arg = cmd.get_arguments().find(|a| a.get_id() == id).unwrap();
            arg.get_help().unwrap().to_string()
        };
        assert!(help("period").ends_with("at least 10ms [default: 10s]"));
        assert!(help("init_period").ends_with("[default: --period]"));
        assert!(help("git_ref").ends_with("default branch [default: HEAD]"));
        let mut shown = 0;
        for flag in Flag::ALL {
            let Some(default) = flag.shown_default() else {
                continue;
            };
            let text = help(flag.id());
            assert!(text.ends_with(&format!(" [default: {default}]")), "{text}");
            assert_eq!(text.matches("[default:").count(), 1, "{text}");
            shown += 1;
        }
        assert!(shown > 40, "only {shown} defaults shown");
    }

    #[test]
    fn command_line_values_only_come_from_argv_and_env_from_the_closure() {
        let cli = parse(
            &["--period=5s", "--one-time"],
            &[("GITSYNC_ROOT", "/r"), ("GITSYNC_PERIOD", "7s")],
        );
        assert_eq!(cli.period.as_deref(), Some("5s"));
        assert_eq!(cli.one_time.as_deref(), Some("true"));
        assert_eq!(cli.root.as_deref(), Some("/r"));
        assert_eq!(
            cli.provenance.origin(Flag::Root),
            Some(&Origin::Env("GITSYNC_ROOT".into()))
        );
        assert_eq!(
            cli.provenance.origin(Flag::Period),
            Some(&Origin::CommandLine)
        );
        assert_eq!(cli.provenance.origin(Flag::Link), None);
        assert!(cli.provenance.warnings.is_empty());
    }

    #[test]
    fn empty_env_counts_as_unset() {
        let cli = parse(&[], &[("GITSYNC_PERIOD", ""), ("GIT_SYNC_PERIOD", "")]);
        assert_eq!(cli.period, None);
        assert!(cli.provenance.warnings.is_empty());
    }

    #[test]
    fn later_legacy_name_wins_and_all_are_warned() {
        let cli = parse(
            &[],
            &[
                ("GITSYNC_ASKPASS_URL", "http://a"),
                ("GIT_SYNC_ASKPASS_URL", "http://b"),
                ("GIT_ASKPASS_URL", "http://c"),
            ],
        );
        assert_eq!(
            cli.askpass_url.as_ref().map(UrlArg::expose),
            Some("http://c")
        );
        let w = cli.provenance.warnings.join("\n");
        assert!(
            w.contains("$GIT_SYNC_ASKPASS_URL has been deprecated"),
            "{w}"
        );
        assert!(w.contains("$GIT_ASKPASS_URL has been deprecated"), "{w}");
        assert!(
            w.contains("$GIT_SYNC_ASKPASS_URL was overridden by $GIT_ASKPASS_URL"),
            "{w}"
        );
        assert_eq!(
            cli.label(Flag::AskpassUrl),
            "--askpass-url (GIT_ASKPASS_URL)"
        );
    }

    #[test]
    fn repeatable_and_colon_list_values() {
        let cli = parse(&["--credential", "{}", "--credential", "[]"], &[]);
        assert_eq!(cli.credential.len(), 2);
        let cli = parse(&[], &[("GITSYNC_SSH_KEY_FILE", "/a:/b")]);
        assert_eq!(cli.ssh_key_file, vec!["/a".to_string(), "/b".to_string()]);
        let cli = parse(
            &["--ssh-key-file", "/c"],
            &[("GITSYNC_SSH_KEY_FILE", "/a:/b")],
        );
        assert_eq!(cli.ssh_key_file, vec!["/c".to_string()]);
    }

    #[test]
    fn comma_list_env_values() {
        let cli = parse(
            &[],
            &[
                ("GITSYNC_INCOMING_WEBHOOK_SECRET_FILE", "/a, /b,,"),
                ("GITSYNC_SYNC_TRIGGER_TOKEN_FILE", "/t"),
            ],
        );
        assert_eq!(
            cli.incoming_webhook_secret_file,
            vec!["/a".to_string(), "/b".to_string()]
        );
        assert_eq!(cli.sync_trigger_token_file, vec!["/t".to_string()]);
        assert_eq!(
            cli.provenance.origin(Flag::IncomingWebhookSecretFile),
            Some(&Origin::Env("GITSYNC_INCOMING_WEBHOOK_SECRET_FILE".into()))
        );
        // Repeated on the command line; a comma there is part of the path.
        let cli = parse(
            &[
                "--incoming-webhook-secret-file=/x,y",
                "--incoming-webhook-secret-file",
                "/z",
            ],
            &[("GITSYNC_INCOMING_WEBHOOK_SECRET_FILE", "/a")],
        );
        assert_eq!(
            cli.incoming_webhook_secret_file,
            vec!["/x,y".to_string(), "/z".to_string()]
        );
    }

    #[test]
    fn http_flags_and_env_only_secrets() {
        let cli = parse(
            &["--http-bind=:8080", "--http-metrics"],
            &[
                ("GIT_SYNC_HTTP_PPROF", "true"),
                ("GITSYNC_INCOMING_WEBHOOK_SECRET", "s3cret"),
                ("GITSYNC_SYNC_TRIGGER_TOKEN", "t0ken"),
            ],
        );
        assert_eq!(cli.http_bind.as_deref(), Some(":8080"));
        assert_eq!(cli.http_metrics.as_deref(), Some("true"));
        assert_eq!(cli.http_pprof.as_deref(), Some("true"));
        assert_eq!(
            cli.env_incoming_webhook_secret.as_ref().map(Secret::expose),
            Some("s3cret")
        );
        assert_eq!(
            cli.label(Flag::EnvIncomingWebhookSecret),
            "GITSYNC_INCOMING_WEBHOOK_SECRET (environment only)"
        );
        assert_eq!(
            cli.label(Flag::EnvSyncTriggerToken),
            "GITSYNC_SYNC_TRIGGER_TOKEN (environment only)"
        );
        assert_eq!(
            cli.label(Flag::HttpPprof),
            "--http-pprof (GIT_SYNC_HTTP_PPROF)"
        );
        let dbg = format!("{cli:?}");
        assert!(!dbg.contains("s3cret"), "{dbg}");
        assert!(!dbg.contains("t0ken"), "{dbg}");

        let help = Cli::command().render_help().to_string();
        let http = help
            .find("HTTP endpoint (health, metrics, incoming webhooks):")
            .expect("HTTP section");
        let not_yet = help
            .find("Accepted for git-sync compatibility, ignored")
            .expect("NOT_YET section");
        assert!(http < not_yet, "{help}");
        for flag in [
            "--http-bind",
            "--http-metrics",
            "--http-header-timeout",
            "--http-idle-timeout",
            "--http-max-connections",
            "--readiness-max-staleness",
            "--incoming-webhook-secret-file",
            "--sync-trigger-token-file",
        ] {
            let at = help.find(flag).unwrap_or_else(|| panic!("{flag}: {help}"));
            assert!(http < at && at < not_yet, "{flag} not in the HTTP section");
        }
        assert!(!help.contains("__env__"), "{help}");
        assert!(help.contains("GITSYNC_INCOMING_WEBHOOK_SECRET "), "{help}");
    }

    #[test]
    fn hook_flags_help_section_and_env_forms() {
        let cli = parse(
            &[
                "--exechook-command=/bin/sh",
                "--exechook-arg",
                "-c",
                "--exechook-arg=echo hi",
                "--webhook-header=X-A: 1",
            ],
            &[
                ("GITSYNC_PRE_PUBLISH_EXECHOOK_ARG", r#"["a","b"]"#),
                (
                    "GITSYNC_WEBHOOK_HEADER",
                    "X-B: 2\r\n\n  \nAuthorization: Bearer t0ken\n",
                ),
                ("GITSYNC_WEBHOOK_SIGNING_SECRET", "s3cret"),
                ("GITSYNC_RELOAD_PROCESS", "nginx"),
                ("GIT_SYNC_HOOK_COMMAND", "/v3"),
            ],
        );
        assert_eq!(cli.exechook_arg, ["-c", "echo hi"]);
        assert_eq!(
            cli.provenance.origin(Flag::ExechookArg),
            Some(&Origin::CommandLine)
        );
        // JSON arrays stay raw here; config decodes them.
        assert_eq!(cli.pre_publish_exechook_arg, [r#"["a","b"]"#]);
        assert_eq!(
            cli.provenance.origin(Flag::PrePublishExechookArg),
            Some(&Origin::Env("GITSYNC_PRE_PUBLISH_EXECHOOK_ARG".into()))
        );
        // The command line replaces the environment's list.
        let headers: Vec<&str> = cli.webhook_header.iter().map(Secret::expose).collect();
        assert_eq!(headers, ["X-A: 1"]);
        let cli2 = parse(
            &[],
            &[("GITSYNC_WEBHOOK_HEADER", "X-B: 2\r\n\n  \nX-C: 3\n")],
        );
        let headers: Vec<&str> = cli2.webhook_header.iter().map(Secret::expose).collect();
        assert_eq!(headers, ["X-B: 2", "X-C: 3"]);
        assert_eq!(
            cli.env_webhook_signing_secret.as_ref().map(Secret::expose),
            Some("s3cret")
        );
        assert_eq!(
            cli.label(Flag::EnvWebhookSigningSecret),
            "GITSYNC_WEBHOOK_SIGNING_SECRET (environment only)"
        );
        assert_eq!(cli.reload_process.as_deref(), Some("nginx"));
        assert_eq!(cli.sync_hook_command.as_deref(), Some("/v3"));
        assert_eq!(
            cli.label(Flag::SyncHookCommand),
            "--sync-hook-command (GIT_SYNC_HOOK_COMMAND)"
        );
        assert!(
            cli.provenance.warnings.contains(
                &"env $GIT_SYNC_HOOK_COMMAND has been deprecated, use --exechook-command instead"
                    .to_string()
            ),
            "{:?}",
            cli.provenance.warnings
        );
        let dbg = format!("{cli:?}");
        assert!(!dbg.contains("t0ken") && !dbg.contains("s3cret"), "{dbg}");

        let help = Cli::command().render_help().to_string();
        let http = help.find("HTTP endpoint (").expect("HTTP section");
        let hooks = help
            .find("Hooks (after publishing):")
            .unwrap_or_else(|| panic!("hooks section: {help}"));
        let not_yet = help
            .find("Accepted for git-sync compatibility, ignored")
            .expect("NOT_YET section");
        assert!(http < hooks && hooks < not_yet, "{help}");
        for flag in [
            "--exechook-command",
            "--exechook-arg",
            "--exechook-timeout",
            "--exechook-backoff",
            "--pre-publish-exechook-command",
            "--pre-publish-exechook-arg",
            "--pre-publish-exechook-timeout",
            "--pre-publish-exechook-backoff",
            "--webhook-url",
            "--webhook-method",
            "--webhook-success-status",
            "--webhook-timeout",
            "--webhook-backoff",
            "--webhook-header",
            "--webhook-json-body",
            "--webhook-signing-secret-file",
            "--reload-process",
            "--reload-signal",
        ] {
            let at = [" ", "["]
                .iter()
                .find_map(|next| help.find(&format!("      {flag}{next}")))
                .unwrap_or_else(|| panic!("{flag}: {help}"));
            assert!(
                hooks < at && at < not_yet,
                "{flag} not in the hooks section"
            );
        }
        assert!(help.contains("GITSYNC_WEBHOOK_SIGNING_SECRET "), "{help}");
        assert!(!help.contains("      --sync-hook-command"), "{help}");
    }

    #[test]
    fn repeated_single_flag_last_wins() {
        let cli = parse(&["--period=1s", "--period=2s"], &[]);
        assert_eq!(cli.period.as_deref(), Some("2s"));
    }

    #[test]
    fn short_and_v3_verbosity_forms() {
        assert_eq!(parse(&["-v", "2"], &[]).verbose.as_deref(), Some("2"));
        assert_eq!(parse(&["-v3"], &[]).verbose.as_deref(), Some("3"));
        assert_eq!(parse(&["--verbose=4"], &[]).verbose.as_deref(), Some("4"));
        let cli = parse(&["--v=5"], &[]);
        assert_eq!(cli.deprecated_v.as_deref(), Some("5"));
        assert!(cli.provenance.warnings[0].contains("flag --v has been deprecated"));
    }

    #[test]
    fn bool_flag_does_not_swallow_the_next_word() {
        let argv = ["git-sidecar", "--one-time", "false"];
        let cli = Cli::try_parse_with_env(argv, &|_: &str| None).unwrap();
        assert_eq!(cli.one_time.as_deref(), Some("true"));
        assert_eq!(
            cli.stray,
            ["false"],
            "a word of its own (refused by config)"
        );
        let argv = ["git-sidecar", "--one-time", "--root", "/x"];
        let cli = Cli::try_parse_with_env(argv, &|_: &str| None).unwrap();
        assert_eq!(cli.one_time.as_deref(), Some("true"));
        assert_eq!(cli.root.as_deref(), Some("/x"));
    }

    #[test]
    fn help_version_and_unknown_flags_are_clap_errors() {
        use clap::error::ErrorKind;
        let kind = |args: &[&str]| {
            let mut argv = vec!["git-sidecar"];
            argv.extend_from_slice(args);
            Cli::try_parse_with_env(argv, &|_: &str| None)
                .err()
                .map(|e| e.kind())
        };
        assert_eq!(kind(&["--help"]), Some(ErrorKind::DisplayHelp));
        assert_eq!(kind(&["-?"]), Some(ErrorKind::DisplayHelp));
        assert_eq!(kind(&["--version"]), Some(ErrorKind::DisplayVersion));
        assert_eq!(kind(&["--no-such-flag"]), Some(ErrorKind::UnknownArgument));
    }

    #[test]
    fn credential_flags_have_their_own_help_section() {
        let help = Cli::command().render_help().to_string();
        let hooks = help.find("Hooks (after publishing):").expect("hooks");
        let auth = help
            .find("Credentials (http:// and https:// repositories):")
            .unwrap_or_else(|| panic!("credentials section: {help}"));
        let not_yet = help
            .find("Accepted for git-sync compatibility, ignored")
            .expect("NOT_YET");
        assert!(hooks < auth && auth < not_yet, "{help}");
        for flag in [
            "--username",
            "--password-file",
            "--credential",
            "--askpass-url",
            "--bearer-token-file",
            "--github-app-installation-id",
            "--git-config",
        ] {
            let at = help
                .find(&format!("      {flag} "))
                .unwrap_or_else(|| panic!("{flag}: {help}"));
            assert!(
                auth < at && at < not_yet,
                "{flag} not in the credentials section"
            );
        }
        assert!(
            !help.contains("for --username (not supported yet)"),
            "{help}"
        );
    }

    #[test]
    fn help_mentions_env_vars() {
        let help = Cli::command().render_help().to_string();
        assert!(help.contains("GITSYNC_PERIOD"), "{help}");
        assert!(help.contains("GITSYNC_PASSWORD"), "{help}");
        assert!(!help.contains("--branch"), "{help}");
    }

    #[test]
    fn secrets_are_not_debug_printed() {
        let cli = parse(
            &["--repo", "https://u:hunter2@h/r", "--password", "pw1"],
            &[("GITSYNC_PASSWORD", "pw2")],
        );
        let dbg = format!("{cli:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(!dbg.contains("pw1"), "{dbg}");
        assert!(!dbg.contains("pw2"), "{dbg}");
    }
}
