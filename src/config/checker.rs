//! [`Checker`]: reads the raw flags of a [`Cli`] by [`Flag`], parses them
//! with the `syntax` rules and collects every problem and warning; the flag
//! table's defaults, parsed (`default_*`); and the flags that need no section
//! of their own (`--ref`, `-v`, the refused and ignored compatibility flags).

use std::time::Duration;

use super::syntax::{
    fmt_duration, nanos_to_duration, non_empty, parse_byte_size, parse_go_bool, parse_go_duration,
    parse_go_int, validate_ref,
};
use crate::cli::{Cli, Flag};

// The flag table (`cli/defs.rs`) holds every default once; these read it.
// `every_default_parses_with_its_flags_parser` parses each default, so the
// fallbacks below are never used.

/// The table default of `flag`, as written (empty when it has none).
pub(super) fn default_str(flag: Flag) -> &'static str {
    flag.default_value().map_or("", |(raw, _)| raw)
}

/// The table default of a duration flag.
pub(super) fn default_duration(flag: Flag) -> Duration {
    parse_go_duration(default_str(flag))
        .ok()
        .and_then(nanos_to_duration)
        .unwrap_or(Duration::ZERO)
}

/// The table default of an integer flag, in the type the flag ends up as.
pub(super) fn default_int<T: TryFrom<i64> + Default>(flag: Flag) -> T {
    parse_go_int(default_str(flag))
        .ok()
        .and_then(|v| T::try_from(v).ok())
        .unwrap_or_default()
}

/// The table default of a boolean flag.
pub(super) fn default_bool(flag: Flag) -> bool {
    parse_go_bool(default_str(flag)).unwrap_or(false)
}

/// The table default of a byte-size flag.
pub(super) fn default_bytes(flag: Flag) -> u64 {
    parse_byte_size(default_str(flag)).unwrap_or(0)
}

const MAX_VERBOSITY: i64 = 9;

/// Collects problems while reading the raw flags.
pub(super) struct Checker<'a> {
    pub(super) cli: &'a Cli,
    pub(super) errors: Vec<String>,
    pub(super) warnings: Vec<String>,
}

impl<'a> Checker<'a> {
    pub(super) fn fail(&mut self, id: Flag, msg: impl std::fmt::Display) {
        self.errors.push(format!("{}: {msg}", self.cli.label(id)));
    }

    /// The raw string of a single-valued argument, if set and non-empty.
    /// Strings and paths treat an explicitly empty value as unset.
    pub(super) fn raw(&self, id: Flag) -> Option<&'a str> {
        non_empty(self.value(id))
    }

    /// The raw string of a single-valued argument as given, possibly empty:
    /// typed flags report `--period=` as invalid rather than ignore it. (An
    /// empty environment variable never gets here: it counts as unset.)
    pub(super) fn value(&self, flag: Flag) -> Option<&'a str> {
        flag.value(self.cli)
    }

    /// The duration, `default` when unset, `None` when invalid (reported).
    pub(super) fn duration_or(&mut self, id: Flag, default: Duration) -> Option<Duration> {
        let Some(raw) = self.value(id) else {
            return Some(default);
        };
        match parse_go_duration(raw) {
            Ok(ns) if ns < 0 => {
                self.fail(id, format!("must not be negative, got {raw:?}"));
                None
            }
            Ok(ns) => nanos_to_duration(ns),
            Err(e) => {
                self.fail(id, e);
                None
            }
        }
    }

    /// Reports `value < min` (a `None` value was already reported).
    pub(super) fn at_least(&mut self, id: Flag, value: Option<Duration>, min: Duration) {
        if let Some(v) = value {
            if v < min {
                self.fail(
                    id,
                    format!(
                        "must be at least {}, got {}",
                        fmt_duration(min),
                        fmt_duration(v)
                    ),
                );
            }
        }
    }

    /// `None` when unset or invalid (reported).
    pub(super) fn int(&mut self, id: Flag) -> Option<i64> {
        let raw = self.value(id)?;
        match parse_go_int(raw) {
            Ok(v) => Some(v),
            Err(e) => {
                self.fail(id, e);
                None
            }
        }
    }

    /// `None` when unset or invalid (reported).
    pub(super) fn bool(&mut self, id: Flag) -> Option<bool> {
        let raw = self.value(id)?;
        match parse_go_bool(raw) {
            Ok(v) => Some(v),
            Err(e) => {
                self.fail(id, e);
                None
            }
        }
    }

    /// `None` when unset or invalid (reported).
    pub(super) fn float(&mut self, id: Flag) -> Option<f64> {
        let raw = self.value(id)?;
        match raw.trim().parse::<f64>() {
            Ok(v) if v.is_finite() => Some(v),
            _ => {
                self.fail(id, format!("invalid number {raw:?} (seconds, e.g. 1.5)"));
                None
            }
        }
    }

    /// `--ref`, with the v3 `--branch`/`--rev` folded in.
    pub(super) fn git_ref(&mut self) -> String {
        let branch = self.raw(Flag::Branch).map(str::to_string);
        let rev = self.raw(Flag::Rev).map(str::to_string);
        let (id, value) = match (branch, rev) {
            (Some(b), None) => (Flag::Branch, Some(b)),
            (Some(b), Some(r)) if r == "HEAD" => (Flag::Branch, Some(b)),
            (None, Some(r)) => (Flag::Rev, Some(r)),
            (Some(_), Some(_)) => {
                let msg = format!(
                    "{} and {} cannot both be set (one or the other is OK); use --ref",
                    self.cli.label(Flag::Branch),
                    self.cli.label(Flag::Rev)
                );
                self.errors.push(msg);
                return "HEAD".into();
            }
            (None, None) => (Flag::Ref, self.cli.git_ref.clone()),
        };
        let value = value.unwrap_or_else(|| "HEAD".into());
        if let Err(e) = validate_ref(&value) {
            self.fail(id, e);
        }
        value
    }

    pub(super) fn verbosity(&mut self) -> u8 {
        let mut id = Flag::Verbose;
        let mut level = self
            .int(Flag::Verbose)
            .unwrap_or_else(|| default_int(Flag::Verbose));
        if let Some(v) = self.int(Flag::DeprecatedV) {
            // git-sync: --v defaults to -1 and only a value >= 0 overrides -v.
            if v >= 0 {
                id = Flag::DeprecatedV;
                level = v;
            }
        }
        if level < 0 {
            self.fail(
                id,
                format!("must be between 0 and {MAX_VERBOSITY}, got {level}"),
            );
            return 0;
        }
        if level > MAX_VERBOSITY {
            self.warnings.push(format!(
                "{}: {level} is above the highest level; using {MAX_VERBOSITY}",
                self.cli.label(id)
            ));
        }
        // Clamped to 0..=9, so the conversion cannot fail.
        u8::try_from(level.min(MAX_VERBOSITY)).unwrap_or(9)
    }

    /// Words on the command line that belong to no flag: ignored, as
    /// git-sync's flag parser leaves them unread, with a warning.
    ///
    /// A false-like word is refused: after a boolean flag (`--one-time
    /// false`) it would leave that flag true, the opposite of what was meant
    /// (git-sync does just that).
    pub(super) fn stray_words(&mut self) {
        for word in &self.cli.stray {
            if matches!(word.as_str(), "0" | "f" | "F" | "false" | "FALSE" | "False") {
                self.errors.push(format!(
                    "{word:?} belongs to no flag: a boolean flag takes no separate value, so \
                     `--one-time {word}` would mean --one-time; write --one-time={word}"
                ));
                continue;
            }
            self.warnings.push(format!(
                "ignoring {word:?}: it belongs to no flag (a boolean flag takes no separate \
                 value: write --one-time or --one-time=true, not --one-time true); git-sync \
                 ignores such words too"
            ));
        }
    }

    /// Flags of features that are not implemented: refused when set.
    pub(super) fn unsupported(&mut self) {
        // v3 --ssh: accepted and ignored, but must still be a boolean.
        let _ = self.bool(Flag::Ssh);

        if self.raw(Flag::Git).is_some() {
            let label = self.cli.label(Flag::Git);
            self.warnings.push(format!(
                "{label} is ignored: git-sidecar runs git only for file:// and local-path \
                 repositories, and takes it from PATH"
            ));
        }
        if let Some(v) = self.int(Flag::ChangePermissions) {
            if v != 0 {
                self.fail(
                    Flag::ChangePermissions,
                    "is no longer supported; use --group-write",
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::super::*;
    use super::*;
    use crate::cli::Syntax;

    /// `--one-time true` (a manifest's `args: ["--one-time", "true"]`) runs
    /// under git-sync, whose flag parser leaves the word unread; it was a
    /// usage error here (probe-16 F1). Ignored, with a warning naming it.
    #[test]
    fn a_word_that_belongs_to_no_flag_is_ignored_with_a_warning() {
        let c = config(
            &[
                "--repo",
                "https://h/r",
                "--root",
                "/r",
                "--one-time",
                "true",
                "--add-user",
                "yes",
            ],
            &[],
        );
        assert!(c.one_time && c.add_user);
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
        assert!(
            c.warnings[0].starts_with("ignoring \"true\": it belongs to no flag"),
            "{:?}",
            c.warnings
        );
        assert!(
            c.warnings[1].starts_with("ignoring \"yes\""),
            "{:?}",
            c.warnings
        );
        // Ignored, `false` would leave the flag true: refused.
        let p = problems(
            &[
                "--repo",
                "https://h/r",
                "--root",
                "/r",
                "--one-time",
                "false",
            ],
            &[],
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("write --one-time=false"), "{p:?}");
    }

    #[test]
    fn legacy_env_alias_is_used_with_a_warning() {
        let c = config(
            &[],
            &[
                ("GIT_SYNC_REPO", "https://h/r"),
                ("GIT_SYNC_ROOT", "/legacy"),
                ("GIT_SYNC_PERIOD", "3s"),
                ("GIT_SYNC_ONE_TIME", "true"),
            ],
        );
        assert_eq!(c.root, PathBuf::from("/legacy"));
        assert_eq!(c.period, Duration::from_secs(3));
        assert!(c.one_time);
        assert_eq!(c.warnings.len(), 4, "{:?}", c.warnings);
        assert!(c.warnings.contains(
            &"env $GIT_SYNC_PERIOD has been deprecated, use $GITSYNC_PERIOD instead".into()
        ));

        let c = config(&[], &[("GIT_REPO", "https://h/r"), ("GITSYNC_ROOT", "/r")]);
        assert_eq!(c.repo.expose(), "https://h/r");
        assert!(
            c.warnings[0].contains("$GIT_REPO has been deprecated"),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn legacy_env_beats_new_env_and_flag_beats_both() {
        let env = [("GITSYNC_PERIOD", "7s"), ("GIT_SYNC_PERIOD", "3s")];
        let c = config(&base(), &env);
        assert_eq!(c.period, Duration::from_secs(3));
        assert!(
            c.warnings
                .contains(&"env $GITSYNC_PERIOD was overridden by $GIT_SYNC_PERIOD".into()),
            "{:?}",
            c.warnings
        );
        let c = config(&with(&["--period", "1s"]), &env);
        assert_eq!(c.period, Duration::from_secs(1));

        // Errors name the variable the bad value came from.
        let p = problems(&base(), &[("GITSYNC_DEPTH", "2"), ("GIT_SYNC_DEPTH", "x")]);
        assert_eq!(
            p,
            vec!["--depth (GIT_SYNC_DEPTH): invalid integer \"x\"".to_string()]
        );
    }

    #[test]
    fn v3_branch_and_rev_fold_into_ref() {
        let c = config(&with(&["--branch", "release"]), &[]);
        assert_eq!(c.git_ref, "release");
        assert!(c.warnings[0].contains("flag --branch has been deprecated, use --ref"));
        assert_eq!(
            config(&with(&["--branch=main", "--rev=HEAD"]), &[]).git_ref,
            "main"
        );
        assert_eq!(config(&with(&["--rev=v1.2.3"]), &[]).git_ref, "v1.2.3");
        let c = config(&base(), &[("GIT_SYNC_BRANCH", "dev")]);
        assert_eq!(c.git_ref, "dev");
        assert!(c.warnings[0].contains("$GIT_SYNC_BRANCH has been deprecated, use --ref"));
        let p = problems(&with(&["--branch=main", "--rev=v1"]), &[]);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("--branch (GIT_SYNC_BRANCH) and --rev (GIT_SYNC_REV) cannot both be set")
        );
    }

    #[test]
    fn unsupported_flags_are_refused_by_name() {
        let p = problems(&with(&["--filter=tree:0"]), &[]);
        let all = p.join("\n");
        let expected = "--filter (GITSYNC_FILTER): \"tree:0\" is not supported; supported filters: blob:none and blob:limit";
        assert!(all.contains(expected), "missing {expected:?} in\n{all}");
        assert_eq!(p.len(), 1, "{all}");
        assert!(!all.contains("s3cret"), "secret leaked: {all}");
    }

    #[test]
    fn accepted_compat_flags() {
        // Defaults or harmless values are fine.
        let c = config(
            &with(&[
                "--submodules=off",
                "--git-gc=aggressive",
                "--add-user=false",
                "--http-pprof=false",
                "--git=/usr/bin/git",
                "--ssh",
                "--change-permissions=0",
            ]),
            &[("GITSYNC_GIT_GC", "auto")],
        );
        assert_eq!(c.git_gc, GcMode::Aggressive, "the flag wins over the env");
        let w = c.warnings.join("\n");
        assert!(w.contains("--git (GITSYNC_GIT) is ignored"), "{w}");
        assert!(w.contains("flag --ssh has been deprecated"), "{w}");
        assert!(
            w.contains("flag --change-permissions has been deprecated"),
            "{w}"
        );

        let p = problems(
            &with(&[
                "--git-gc=sometimes",
                "--submodules=all",
                "--change-permissions=0775",
            ]),
            &[],
        );
        let all = p.join("\n");
        assert!(
            all.contains("--git-gc (GITSYNC_GIT_GC): must be one of"),
            "{all}"
        );
        assert!(
            all.contains("--submodules (GITSYNC_SUBMODULES): must be one of"),
            "{all}"
        );
        assert!(
            all.contains("--change-permissions (GIT_SYNC_PERMISSIONS): is no longer supported; use --group-write"),
            "{all}"
        );
        assert_eq!(p.len(), 3, "{all}");
        let c = config(&with(&["--add-user"]), &[]);
        assert!(c.add_user && c.warnings.is_empty(), "{:?}", c.warnings);
        assert!(!config(&with(&["--add-user=false"]), &[]).add_user);
    }

    #[test]
    fn verbosity_forms() {
        assert_eq!(config(&with(&["-v", "2"]), &[]).verbosity, 2);
        assert_eq!(config(&with(&["-v5"]), &[]).verbosity, 5);
        assert_eq!(config(&base(), &[("GITSYNC_VERBOSE", "3")]).verbosity, 3);
        let c = config(&with(&["-v", "12"]), &[]);
        assert_eq!(c.verbosity, 9);
        assert!(c.warnings[0].contains("using 9"), "{:?}", c.warnings);
        assert_eq!(config(&with(&["-v", "2", "--v=4"]), &[]).verbosity, 4);
        assert_eq!(config(&with(&["-v", "2", "--v=-1"]), &[]).verbosity, 2);
        let p = problems(&with(&["-v", "-1"]), &[]);
        assert_eq!(
            p,
            vec!["--verbose (GITSYNC_VERBOSE): must be between 0 and 9, got -1".to_string()]
        );
        let p = problems(&with(&["--log-format=xml"]), &[]);
        assert!(
            p[0].starts_with("--log-format (GITSYNC_LOG_FORMAT): must be"),
            "{p:?}"
        );
        assert_eq!(
            config(&with(&["--log-format=TEXT"]), &[]).log_format,
            LogFormat::Text
        );
    }

    #[test]
    fn checker_reads_every_single_valued_argument() {
        use clap::CommandFactory;
        let cmd = Cli::command();
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            let Some(long) = arg.get_long() else { continue };
            let multi = [
                "credential",
                "ssh_key_file",
                "incoming_webhook_secret_file",
                "sync_trigger_token_file",
                "exechook_arg",
                "pre_publish_exechook_arg",
                "webhook_header",
                "verify_allowed_signers",
                "verify_pgp_keyring",
            ];
            if multi.contains(&id) || !arg.get_action().takes_values() {
                continue;
            }
            let flag = format!("--{long}=x");
            let cli = Cli::try_parse_with_env(["git-sidecar", &flag], &|_: &str| None).unwrap();
            let checker = Checker {
                cli: &cli,
                errors: Vec::new(),
                warnings: Vec::new(),
            };
            let flag = Flag::from_id(id).expect("every argument is in the flag table");
            assert_eq!(checker.value(flag), Some("x"), "Checker::value misses {id}");
        }
    }
    /// Parses `raw` with the parser `config` uses for flags of `syntax`.
    fn parses_as(syntax: Syntax, raw: &str) -> Result<(), String> {
        let known = |ok: bool| if ok { Ok(()) } else { Err(format!("{raw:?}")) };
        match syntax {
            Syntax::Duration => parse_go_duration(raw).and_then(|ns| known(ns >= 0)),
            Syntax::Bool => parse_go_bool(raw).map(drop),
            Syntax::Int => parse_go_int(raw).map(drop),
            Syntax::ByteSize => parse_byte_size(raw).map(drop),
            Syntax::Signal => super::super::syntax::parse_signal(raw).map(drop),
            Syntax::Ref => validate_ref(raw),
            Syntax::HttpMethod => super::super::hooks::parse_http_method(raw).map(drop),
            Syntax::WebhookPath => super::super::http::validate_webhook_path(raw),
            Syntax::LogFormat => known(["json", "text"].contains(&raw)),
            Syntax::SymlinkPolicy => known(SymlinkPolicy::parse(raw).is_some()),
            Syntax::Submodules => known(SubmoduleMode::parse(raw).is_some()),
            Syntax::GitGc => known(GcMode::parse(raw).is_some()),
            Syntax::AbsolutePath => known(std::path::Path::new(raw).is_absolute()),
            Syntax::HttpUrl => super::super::hooks::validate_outgoing_webhook_url(raw),
            Syntax::VerifyMode => known(crate::verify::Mode::parse(raw).is_some()),
        }
    }

    #[test]
    fn every_default_parses_with_its_flags_parser() {
        let mut checked = 0;
        for &flag in Flag::ALL {
            let Some((raw, syntax)) = flag.default_value() else {
                continue;
            };
            if let Err(e) = parses_as(syntax, raw) {
                panic!("default of {flag:?} does not parse as {syntax:?}: {e}");
            }
            checked += 1;
        }
        assert!(checked > 30, "only {checked} defaults");
    }

    #[test]
    fn unset_flags_take_the_table_defaults() {
        let c = config(&base(), &[]);
        let table = |flag: Flag| default_str(flag);
        assert_eq!(c.period, default_duration(Flag::Period));
        assert_eq!(c.period, Duration::from_secs(10));
        assert_eq!(c.sync_timeout, default_duration(Flag::SyncTimeout));
        assert_eq!(c.depth, default_int::<u32>(Flag::Depth));
        assert_eq!(c.git_ref, table(Flag::Ref));
        assert_eq!(
            Some(c.escaping_symlinks),
            SymlinkPolicy::parse(table(Flag::EscapingSymlinks))
        );
        assert_eq!(
            Some(c.submodules),
            SubmoduleMode::parse(table(Flag::Submodules))
        );
        assert_eq!(Some(c.git_gc), GcMode::parse(table(Flag::GitGc)));
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(table(Flag::LogFormat), "json");
        let limits = ConnectionLimits::default();
        assert_eq!(limits.header_timeout, Duration::from_secs(10));
        assert_eq!(limits.max_connections, 1024);
    }
}
