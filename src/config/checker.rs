//! [`Checker`]: reads the raw flags of a [`Cli`] by argument id, parses them
//! with the `syntax` rules and collects every problem and warning; also the
//! flags that need no section of their own (`--ref`, `-v`, the refused and
//! ignored compatibility flags).

use std::time::Duration;

use super::syntax::{
    fmt_duration, nanos_to_duration, non_empty, parse_go_bool, parse_go_duration, parse_go_int,
    validate_ref,
};
use crate::cli::{Cli, Secret, UrlArg};

const MAX_VERBOSITY: i64 = 9;

/// Collects problems while reading the raw flags.
pub(super) struct Checker<'a> {
    pub(super) cli: &'a Cli,
    pub(super) errors: Vec<String>,
    pub(super) warnings: Vec<String>,
}

impl<'a> Checker<'a> {
    pub(super) fn fail(&mut self, id: &str, msg: impl std::fmt::Display) {
        self.errors.push(format!("{}: {msg}", self.cli.label(id)));
    }

    /// The raw string of a single-valued argument, if set and non-empty.
    /// Strings and paths treat an explicitly empty value as unset.
    pub(super) fn raw(&self, id: &str) -> Option<&'a str> {
        non_empty(self.value(id))
    }

    /// The raw string of a single-valued argument as given, possibly empty:
    /// typed flags report `--period=` as invalid rather than ignore it. (An
    /// empty environment variable never gets here: it counts as unset.)
    pub(super) fn value(&self, id: &str) -> Option<&'a str> {
        let cli: &'a Cli = self.cli;
        fn secret(s: &Option<Secret>) -> Option<&str> {
            s.as_ref().map(Secret::expose)
        }
        fn url(s: &Option<UrlArg>) -> Option<&str> {
            s.as_ref().map(UrlArg::expose)
        }
        let value = match id {
            "repo" => url(&cli.repo),
            "root" => cli.root.as_deref(),
            "git_ref" => cli.git_ref.as_deref(),
            "link" => cli.link.as_deref(),
            "period" => cli.period.as_deref(),
            "init_period" => cli.init_period.as_deref(),
            "sync_timeout" => cli.sync_timeout.as_deref(),
            "one_time" => cli.one_time.as_deref(),
            "max_failures" => cli.max_failures.as_deref(),
            "init_max_failures" => cli.init_max_failures.as_deref(),
            "sync_on_signal" => cli.sync_on_signal.as_deref(),
            "depth" => cli.depth.as_deref(),
            "touch_file" => cli.touch_file.as_deref(),
            "error_file" => cli.error_file.as_deref(),
            "stale_worktree_timeout" => cli.stale_worktree_timeout.as_deref(),
            "escaping_symlinks" => cli.escaping_symlinks.as_deref(),
            "group_write" => cli.group_write.as_deref(),
            "verbose" => cli.verbose.as_deref(),
            "log_format" => cli.log_format.as_deref(),
            "http_bind" => cli.http_bind.as_deref(),
            "http_metrics" => cli.http_metrics.as_deref(),
            "http_pprof" => cli.http_pprof.as_deref(),
            "http_header_timeout" => cli.http_header_timeout.as_deref(),
            "http_idle_timeout" => cli.http_idle_timeout.as_deref(),
            "http_max_connections" => cli.http_max_connections.as_deref(),
            "readiness_max_staleness" => cli.readiness_max_staleness.as_deref(),
            "readiness_max_failures" => cli.readiness_max_failures.as_deref(),
            "incoming_webhook_path" => cli.incoming_webhook_path.as_deref(),
            "env_incoming_webhook_secret" => secret(&cli.env_incoming_webhook_secret),
            "incoming_webhook_allow_unsigned" => cli.incoming_webhook_allow_unsigned.as_deref(),
            "incoming_webhook_repo" => cli.incoming_webhook_repo.as_deref(),
            "incoming_webhook_max_body" => cli.incoming_webhook_max_body.as_deref(),
            "incoming_webhook_rate_limit" => cli.incoming_webhook_rate_limit.as_deref(),
            "env_sync_trigger_token" => secret(&cli.env_sync_trigger_token),
            "filter" => cli.filter.as_deref(),
            "submodules" => cli.submodules.as_deref(),
            "sparse_checkout_file" => cli.sparse_checkout_file.as_deref(),
            "git_gc" => cli.git_gc.as_deref(),
            "add_user" => cli.add_user.as_deref(),
            "exechook_command" => cli.exechook_command.as_deref(),
            "exechook_timeout" => cli.exechook_timeout.as_deref(),
            "exechook_backoff" => cli.exechook_backoff.as_deref(),
            "pre_publish_exechook_command" => cli.pre_publish_exechook_command.as_deref(),
            "pre_publish_exechook_timeout" => cli.pre_publish_exechook_timeout.as_deref(),
            "pre_publish_exechook_backoff" => cli.pre_publish_exechook_backoff.as_deref(),
            "webhook_url" => url(&cli.webhook_url),
            "webhook_method" => cli.webhook_method.as_deref(),
            "webhook_success_status" => cli.webhook_success_status.as_deref(),
            "webhook_timeout" => cli.webhook_timeout.as_deref(),
            "webhook_backoff" => cli.webhook_backoff.as_deref(),
            "webhook_json_body" => cli.webhook_json_body.as_deref(),
            "webhook_signing_secret_file" => cli.webhook_signing_secret_file.as_deref(),
            "env_webhook_signing_secret" => secret(&cli.env_webhook_signing_secret),
            "reload_process" => cli.reload_process.as_deref(),
            "reload_signal" => cli.reload_signal.as_deref(),
            "username" => cli.username.as_deref(),
            "env_password" => secret(&cli.env_password),
            "password_file" => cli.password_file.as_deref(),
            "askpass_url" => url(&cli.askpass_url),
            "bearer_token_file" => cli.bearer_token_file.as_deref(),
            "env_bearer_token" => secret(&cli.env_bearer_token),
            "ssh_known_hosts" => cli.ssh_known_hosts.as_deref(),
            "ssh_known_hosts_file" => cli.ssh_known_hosts_file.as_deref(),
            "env_git_ssh_command" => cli.env_git_ssh_command.as_deref(),
            "cookie_file" => cli.cookie_file.as_deref(),
            "github_base_url" => cli.github_base_url.as_deref(),
            "env_github_app_private_key" => secret(&cli.env_github_app_private_key),
            "github_app_private_key_file" => cli.github_app_private_key_file.as_deref(),
            "github_app_application_id" => cli.github_app_application_id.as_deref(),
            "github_app_client_id" => cli.github_app_client_id.as_deref(),
            "github_app_installation_id" => cli.github_app_installation_id.as_deref(),
            "git" => cli.git.as_deref(),
            "git_config" => cli.git_config.as_deref(),
            "branch" => cli.branch.as_deref(),
            "rev" => cli.rev.as_deref(),
            "dest" => cli.dest.as_deref(),
            "wait" => cli.wait.as_deref(),
            "timeout" => cli.timeout.as_deref(),
            "max_sync_failures" => cli.max_sync_failures.as_deref(),
            "sync_hook_command" => cli.sync_hook_command.as_deref(),
            "deprecated_password" => secret(&cli.deprecated_password),
            "deprecated_v" => cli.deprecated_v.as_deref(),
            "ssh" => cli.ssh.as_deref(),
            "change_permissions" => cli.change_permissions.as_deref(),
            _ => None,
        };
        value
    }

    /// The duration, `default` when unset, `None` when invalid (reported).
    pub(super) fn duration_or(&mut self, id: &str, default: Duration) -> Option<Duration> {
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
    pub(super) fn at_least(&mut self, id: &str, value: Option<Duration>, min: Duration) {
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
    pub(super) fn int(&mut self, id: &str) -> Option<i64> {
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
    pub(super) fn bool(&mut self, id: &str) -> Option<bool> {
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
    pub(super) fn float(&mut self, id: &str) -> Option<f64> {
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
        let branch = self.raw("branch").map(str::to_string);
        let rev = self.raw("rev").map(str::to_string);
        let (id, value) = match (branch, rev) {
            (Some(b), None) => ("branch", Some(b)),
            (Some(b), Some(r)) if r == "HEAD" => ("branch", Some(b)),
            (None, Some(r)) => ("rev", Some(r)),
            (Some(_), Some(_)) => {
                let msg = format!(
                    "{} and {} cannot both be set (one or the other is OK); use --ref",
                    self.cli.label("branch"),
                    self.cli.label("rev")
                );
                self.errors.push(msg);
                return "HEAD".into();
            }
            (None, None) => ("git_ref", self.cli.git_ref.clone()),
        };
        let value = value.unwrap_or_else(|| "HEAD".into());
        if let Err(e) = validate_ref(&value) {
            self.fail(id, e);
        }
        value
    }

    pub(super) fn verbosity(&mut self) -> u8 {
        let mut id = "verbose";
        let mut level = self.int("verbose").unwrap_or(0);
        if let Some(v) = self.int("deprecated_v") {
            // git-sync: --v defaults to -1 and only a value >= 0 overrides -v.
            if v >= 0 {
                id = "deprecated_v";
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

    /// Flags of features that are not implemented: refused when set.
    pub(super) fn unsupported(&mut self) {
        // Booleans whose "false" is what we do anyway.
        if self.bool("add_user") == Some(true) {
            let label = self.cli.label("add_user");
            self.warnings.push(format!(
                "{label} is ignored: the built-in SSH client needs no /etc/passwd entry"
            ));
        }
        // v3 --ssh: accepted and ignored, but must still be a boolean.
        let _ = self.bool("ssh");

        if self.raw("git").is_some() {
            let label = self.cli.label("git");
            self.warnings.push(format!(
                "{label} is ignored: git-sidecar does not run the git binary"
            ));
        }
        if let Some(v) = self.int("change_permissions") {
            if v != 0 {
                self.fail(
                    "change_permissions",
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

    #[test]
    pub(super) fn legacy_env_alias_is_used_with_a_warning() {
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
    pub(super) fn legacy_env_beats_new_env_and_flag_beats_both() {
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
    pub(super) fn v3_branch_and_rev_fold_into_ref() {
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
    pub(super) fn unsupported_flags_are_refused_by_name() {
        let p = problems(&with(&["--filter=blob:none"]), &[]);
        let all = p.join("\n");
        let expected =
            "--filter (GITSYNC_FILTER): partial clone (\"blob:none\") is not supported: gix";
        assert!(all.contains(expected), "missing {expected:?} in\n{all}");
        assert_eq!(p.len(), 1, "{all}");
        assert!(!all.contains("s3cret"), "secret leaked: {all}");
    }

    #[test]
    pub(super) fn accepted_compat_flags() {
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
        let w = c.warnings.join("\n");
        assert!(
            w.contains("--add-user (GITSYNC_ADD_USER) is ignored: the built-in SSH client needs no /etc/passwd entry"),
            "{w}"
        );
    }

    #[test]
    pub(super) fn verbosity_forms() {
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
    pub(super) fn checker_reads_every_single_valued_argument() {
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
            assert_eq!(checker.value(id), Some("x"), "Checker::value misses {id}");
        }
    }
}
