//! Validated configuration ("HiArgs"): [`Config`], built from the raw
//! [`Cli`] with every cross-flag rule checked and every mistake reported at
//! once ([`ConfigError::Invalid`], one problem per line, each naming the flag
//! and its environment variable). [`load`] is what `main` calls.
//!
//! This file owns `Config`, `load`, the errors and the checkout policies
//! (`--escaping-symlinks`, `--git-gc`, `--submodules`, ...); the other rules
//! live by concern: `checker` (reading the raw flags), `syntax` (the Go-style
//! value parsers), `sync` (the loop's schedule and `--depth`), `paths` (root,
//! link and state-file clashes), `http` (the HTTP endpoint), `secret` (secret
//! and token files), `hooks` (exec hooks, outgoing webhook, reload), `verify`
//! (signature verification and its key files), and the
//! credential modules `auth`, `access`, `github_app`, `ssh`, `git_config`,
//! `checkout`. The flag reference is `docs/flags.md`.

use crate::cli::Flag;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::{Cli, EnvLookup, UrlArg};
use crate::git::Remote;
use crate::types::{GcMode, SubmoduleMode, SymlinkPolicy};

pub mod access;
pub mod auth;
mod checker;
mod checkout;
pub mod git_config;
mod hooks;
mod http;
mod paths;
mod peers;
mod placeholder;
mod secret;
mod sync;
mod syntax;
pub mod verify;

pub use crate::auth::{Access, GithubApp, HttpAuth, PasswordSource, UrlCredential};
pub use hooks::{ExecHookConfig, HooksConfig, OutgoingWebhookConfig, ReloadConfig};
pub use http::{ConnectionLimits, HttpConfig, ReadinessConfig, WebhookConfig};
pub use secret::SecretBytes;

pub use crate::logging::LogFormat;
use checker::{default_bool, default_duration, Checker};
use paths::{absolute_reread, absolutize, default_link_name};
use secret::read_secret_file;
use sync::Schedule;
use syntax::{non_empty, repo_scheme, SUPPORTED_SCHEMES};

/// Everything the sync engine needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Remote URL (credentials inside are redacted in Display; those of an
    /// http(s) URL were moved to `auth`).
    pub repo: Remote,
    /// HTTP(S) credentials: `--username` + password, or from `--repo`.
    pub auth: Option<HttpAuth>,
    /// SSH keys, known_hosts and `GIT_SSH_COMMAND` (see [`auth`]).
    pub ssh: crate::git::ssh::Options,
    /// Per-URL credentials, askpass, bearer token, GitHub App, `--git-config`.
    pub access: Access,
    /// Absolute root directory (symlinks in it resolved if it exists).
    pub root: PathBuf,
    /// The ref to sync: "HEAD", a branch, a tag, or a full 40-hex SHA.
    pub git_ref: String,
    /// Absolute path of the published symlink (relative `--link` is joined onto root).
    pub link: PathBuf,
    pub period: Duration,
    /// Wait between attempts until the first success (defaults to `period`).
    pub init_period: Duration,
    pub sync_timeout: Duration,
    pub one_time: bool,
    /// Consecutive failures tolerated (git-sync semantics: exit when count >= limit); negative = forever.
    pub max_failures: i64,
    /// Same, before the first success (defaults to `max_failures`).
    pub init_max_failures: i64,
    /// Signal number that triggers an immediate sync.
    pub sync_on_signal: Option<i32>,
    /// 0 = full history.
    pub depth: u32,
    /// Absolute path.
    pub touch_file: Option<PathBuf>,
    /// Absolute path.
    pub error_file: Option<PathBuf>,
    pub stale_worktree_timeout: Duration,
    /// `--escaping-symlinks`: symlinks that point outside the worktree.
    pub escaping_symlinks: SymlinkPolicy,
    /// `--git-gc`.
    pub git_gc: GcMode,
    /// `--sparse-checkout-file`, parsed.
    pub sparse_checkout: Option<crate::git::sparse::Patterns>,
    /// `--filter`: partial clone, validated.
    pub filter: Option<crate::git::partial::Filter>,
    /// `--submodules`: which submodules are checked out.
    pub submodules: SubmoduleMode,
    pub group_write: bool,
    /// `--add-user`: give this UID an `/etc/passwd` entry if it has none.
    pub add_user: bool,
    /// 0..=9 as git-sync's -v.
    pub verbosity: u8,
    pub log_format: LogFormat,
    /// Deprecation warnings (legacy env vars, v3 flags) to log once tracing is up.
    pub warnings: Vec<String>,
    /// The HTTP endpoint; `None` without `--http-bind`.
    pub http: Option<HttpConfig>,
    /// What runs after (and just before) publishing.
    pub hooks: HooksConfig,
    /// `--peers`: the replicas told of each accepted webhook.
    pub peers: Option<crate::peers::PeersConfig>,
    /// `--verify-signatures` and its key files.
    pub verify: crate::verify::Settings,
}

/// Why no [`Config`] could be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// clap's own outcome: `--help`/`--version` output or a usage error
    /// (unknown flag, missing value). Handle with `err.exit()`.
    #[error(transparent)]
    Clap(#[from] clap::Error),
    /// Every problem found in the values (`Display`: one per line), and
    /// `--error-file` if it was valid (see [`Problems::write_error_file`]).
    #[error("{0}")]
    Invalid(Problems, Option<PathBuf>),
}

/// The name `main` uses.
pub type LoadError = ConfigError;

/// All configuration problems found, in the order the flags are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<String>);

impl std::fmt::Display for Problems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

impl Problems {
    /// Writes the problems to `--error-file` when that flag itself was
    /// valid, as git-sync writes a configuration error there (the plain
    /// message): a tool that watches the file learns why nothing runs.
    /// Returns the path written, if any.
    pub fn write_error_file(&self, error_file: Option<&Path>) -> Option<PathBuf> {
        let path = error_file?;
        // Nothing is created for it (not even --root, which would miss the
        // lock and --group-write's mode).
        if !path.parent().is_some_and(Path::is_dir) {
            return None;
        }
        let text = format!("invalid configuration:\n{self}\n");
        crate::fsutil::write_atomic(path, text.as_bytes()).ok()?;
        Some(path.to_path_buf())
    }
}

impl ConfigError {
    /// The problems found (empty for [`ConfigError::Clap`]).
    pub fn problems(&self) -> &[String] {
        match self {
            ConfigError::Clap(_) => &[],
            ConfigError::Invalid(problems, _) => &problems.0,
        }
    }

    /// Prints the error and exits: clap's exit for [`ConfigError::Clap`]
    /// (0 for help/version, 2 for usage errors), 1 for invalid values.
    pub fn exit(&self) -> ! {
        match self {
            ConfigError::Clap(e) => e.exit(),
            ConfigError::Invalid(problems, error_file) => {
                eprintln!("git-sidecar: invalid configuration:\n{problems}");
                problems.write_error_file(error_file.as_deref());
                std::process::exit(1)
            }
        }
    }
}

/// Parses `args` (program name first) with `env` as the environment: what
/// `main` calls, with `std::env::args_os()` and a `std::env::var` lookup.
pub fn load(args: Vec<OsString>, env: EnvLookup<'_>) -> Result<Config, LoadError> {
    Config::from_args_and_env(args, env)
}

impl Config {
    /// Parses the process arguments and environment.
    pub fn from_process() -> Result<Config, ConfigError> {
        let cli = Cli::try_parse_process()?;
        Config::from_cli(cli)
    }

    /// Parses `args` (program name first) with `env` as the environment.
    pub fn from_args_and_env<I, T>(args: I, env: EnvLookup<'_>) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let cli = Cli::try_parse_with_env(args, env)?;
        Config::from_cli(cli)
    }

    /// Validates raw flags. The current directory is used to make a relative
    /// `--root` absolute; nothing is created on disk.
    pub fn from_cli(cli: Cli) -> Result<Config, ConfigError> {
        let mut c = Checker {
            cli: &cli,
            errors: Vec::new(),
            warnings: cli.provenance.warnings.clone(),
        };
        c.stray_words();

        // --repo
        let repo = non_empty(cli.repo.as_ref().map(UrlArg::expose));
        match repo.map(repo_scheme) {
            None => c.fail(Flag::Repo, "must be specified"),
            Some(None) => {}
            Some(Some(scheme)) if SUPPORTED_SCHEMES.contains(&scheme.as_str()) => {}
            Some(Some(scheme)) => c.fail(
                Flag::Repo,
                format!(
                    "{scheme:?} repositories are not supported yet \
                     (supported: https://, http://, git://, ssh://, user@host:path, file:// \
                     and local paths)"
                ),
            ),
        }
        // Parsed once; what the checks below read of it comes from here.
        let remote = match repo.map(Remote::parse) {
            Some(Err(e)) => {
                let shown = crate::types::redact_url(repo.unwrap_or_default());
                c.fail(Flag::Repo, format!("invalid repository URL {shown}: {e}"));
                None
            }
            parsed => parsed.and_then(Result::ok),
        };
        let auth = c.http_auth(remote.as_ref());
        let ssh = c.ssh(remote.as_ref());
        let access = c.access(auth.is_some());

        // --root
        let root = match non_empty(cli.root.as_deref()) {
            None => {
                c.fail(Flag::Root, "must be specified");
                None
            }
            Some(raw) => match absolutize(Path::new(raw)) {
                Ok(p) => Some(p),
                Err(e) => {
                    c.fail(Flag::Root, format!("cannot make {raw:?} absolute: {e}"));
                    None
                }
            },
        };

        let git_ref = c.git_ref();

        // --link (--dest overrides)
        let (link_id, link_raw) = match non_empty(cli.dest.as_deref()) {
            Some(dest) => (Flag::Dest, Some(dest.to_string())),
            None => (
                Flag::Link,
                non_empty(cli.link.as_deref()).map(str::to_string),
            ),
        };
        let link_raw = match (link_raw, repo) {
            (Some(l), _) => Some(l),
            (None, Some(repo)) => match default_link_name(repo) {
                Some(name) => Some(name),
                None => {
                    c.fail(
                        Flag::Link,
                        format!(
                            "cannot derive a default from --repo {:?}; set --link",
                            crate::types::redact_url(repo)
                        ),
                    );
                    None
                }
            },
            (None, None) => None,
        };
        let link = match (&root, link_raw) {
            (Some(root), Some(raw)) => c.link(link_id, root, &raw),
            _ => None,
        };

        let Schedule {
            period,
            init_period,
            sync_timeout,
            one_time,
            max_failures,
            init_max_failures,
            sync_on_signal,
            depth,
        } = c.schedule();

        let touch_file = c.file_under_root(Flag::TouchFile, root.as_deref(), link.as_deref());
        let error_file = c.file_under_root(Flag::ErrorFile, root.as_deref(), link.as_deref());

        let stale_worktree_timeout = c
            .duration_or(
                Flag::StaleWorktreeTimeout,
                default_duration(Flag::StaleWorktreeTimeout),
            )
            .unwrap_or_else(|| default_duration(Flag::StaleWorktreeTimeout));

        let escaping_symlinks = match c.raw(Flag::EscapingSymlinks) {
            None => SymlinkPolicy::Refuse,
            Some(raw) => SymlinkPolicy::parse(raw).unwrap_or_else(|| {
                c.fail(
                    Flag::EscapingSymlinks,
                    format!("must be \"refuse\", \"skip\" or \"allow\", got {raw:?}"),
                );
                SymlinkPolicy::Refuse
            }),
        };

        let git_gc = match c.raw(Flag::GitGc) {
            None => GcMode::default(),
            Some(raw) => GcMode::parse(raw).unwrap_or_else(|| {
                c.fail(
                    Flag::GitGc,
                    format!(
                        "must be one of \"auto\", \"always\", \"aggressive\" or \"off\", got {raw:?}"
                    ),
                );
                GcMode::default()
            }),
        };
        let sparse_checkout = c.sparse_checkout();
        let filter = c.filter();
        let submodules = match c.raw(Flag::Submodules) {
            None => SubmoduleMode::Recursive,
            Some(raw) => SubmoduleMode::parse(raw).unwrap_or_else(|| {
                c.fail(
                    Flag::Submodules,
                    format!("must be one of \"recursive\", \"shallow\" or \"off\", got {raw:?}"),
                );
                SubmoduleMode::Recursive
            }),
        };

        let group_write = c
            .bool(Flag::GroupWrite)
            .unwrap_or_else(|| default_bool(Flag::GroupWrite));
        let add_user = c.bool(Flag::AddUser).unwrap_or(false);
        let verbosity = c.verbosity();
        let log_format = match c.raw(Flag::LogFormat) {
            None => LogFormat::Json,
            Some(raw) if raw.eq_ignore_ascii_case("json") => LogFormat::Json,
            Some(raw) if raw.eq_ignore_ascii_case("text") => LogFormat::Text,
            Some(raw) => {
                c.fail(
                    Flag::LogFormat,
                    format!("must be \"json\" or \"text\", got {raw:?}"),
                );
                LogFormat::Json
            }
        };

        let http = c.http(period, sync_timeout);
        let mut hooks = c.hooks(&access.git_config);
        let ssh_command = crate::git::ssh::command::for_hooks(&ssh);
        for hook in [&mut hooks.exec, &mut hooks.pre_publish]
            .into_iter()
            .flatten()
        {
            hook.ssh_command = ssh_command.clone();
        }
        let peers = c.peers();
        let verify = c.verify(&git_ref);

        c.unsupported();

        let Checker {
            errors, warnings, ..
        } = c;
        if !errors.is_empty() {
            // Checked against the link only if that was valid.
            let error_file = error_file.filter(|_| link.is_some());
            return Err(ConfigError::Invalid(Problems(errors), error_file));
        }
        let (Some(repo), Some(root), Some(link)) = (remote, root, link) else {
            return Err(ConfigError::Invalid(
                Problems(vec![
                    "internal error: configuration incomplete without a reported problem".into(),
                ]),
                None,
            ));
        };
        // Credentials found in the URL now live in `auth` only.
        let repo = match auth {
            Some(_) => repo.without_userinfo(),
            None => repo,
        };
        Ok(Config {
            repo,
            auth,
            ssh,
            access,
            root,
            git_ref,
            link,
            period,
            init_period,
            sync_timeout,
            one_time,
            max_failures,
            init_max_failures,
            sync_on_signal,
            depth,
            touch_file,
            error_file,
            stale_worktree_timeout,
            escaping_symlinks,
            sparse_checkout,
            filter,
            git_gc,
            submodules,
            group_write,
            add_user,
            verbosity,
            log_format,
            warnings,
            http,
            hooks,
            peers,
            verify,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    pub(super) fn try_config(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map = env_of(env);
        let mut argv = vec!["git-sidecar"];
        argv.extend_from_slice(args);
        Config::from_args_and_env(argv, &|k: &str| map.get(k).cloned())
    }

    pub(super) fn config(args: &[&str], env: &[(&str, &str)]) -> Config {
        match try_config(args, env) {
            Ok(c) => c,
            Err(e) => panic!("unexpected error:\n{e}"),
        }
    }

    pub(super) fn problems(args: &[&str], env: &[(&str, &str)]) -> Vec<String> {
        match try_config(args, env) {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(ConfigError::Clap(e)) => panic!("unexpected clap error: {e}"),
            Err(ConfigError::Invalid(p, _)) => p.0,
        }
    }

    pub(super) fn base() -> Vec<&'static str> {
        vec![
            "--repo",
            "https://example.com/org/site.git",
            "--root",
            "/srv/git",
        ]
    }

    pub(super) fn with<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut v = base();
        v.extend_from_slice(extra);
        v
    }

    #[test]
    fn defaults() {
        let c = config(&base(), &[]);
        assert_eq!(c.repo.expose(), "https://example.com/org/site.git");
        assert_eq!(c.root, PathBuf::from("/srv/git"));
        assert_eq!(c.git_ref, "HEAD");
        assert_eq!(c.link, PathBuf::from("/srv/git/site.git"));
        assert_eq!(c.period, Duration::from_secs(10));
        assert_eq!(c.init_period, Duration::from_secs(10));
        assert_eq!(c.sync_timeout, Duration::from_secs(120));
        assert!(!c.one_time);
        assert_eq!(c.max_failures, 0);
        assert_eq!(c.init_max_failures, 0);
        assert_eq!(c.sync_on_signal, None);
        assert_eq!(c.depth, 1);
        assert_eq!(c.touch_file, None);
        assert_eq!(c.error_file, None);
        assert_eq!(c.stale_worktree_timeout, Duration::ZERO);
        assert!(!c.group_write);
        assert_eq!(c.verbosity, 0);
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(c.hooks.exec.is_none());
        assert!(c.hooks.webhook.is_none());
        assert!(c.hooks.pre_publish.is_none());
        assert!(c.hooks.reload.is_none());
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn all_implemented_flags_from_env() {
        let c = config(
            &[],
            &[
                ("GITSYNC_REPO", "file:///tmp/repo"),
                ("GITSYNC_ROOT", "/r"),
                ("GITSYNC_REF", "refs/heads/main"),
                ("GITSYNC_LINK", "/pub/site"),
                ("GITSYNC_PERIOD", "2s"),
                ("GITSYNC_INIT_PERIOD", "100ms"),
                ("GITSYNC_SYNC_TIMEOUT", "1m"),
                ("GITSYNC_ONE_TIME", "true"),
                ("GITSYNC_MAX_FAILURES", "-1"),
                ("GITSYNC_INIT_MAX_FAILURES", "3"),
                ("GITSYNC_SYNC_ON_SIGNAL", "USR1"),
                ("GITSYNC_DEPTH", "0"),
                ("GITSYNC_TOUCH_FILE", "touched"),
                ("GITSYNC_ERROR_FILE", "/var/err.json"),
                ("GITSYNC_STALE_WORKTREE_TIMEOUT", "5m"),
                ("GITSYNC_GROUP_WRITE", "1"),
                ("GITSYNC_VERBOSE", "6"),
                ("GITSYNC_LOG_FORMAT", "text"),
            ],
        );
        assert_eq!(c.git_ref, "refs/heads/main");
        assert_eq!(c.link, PathBuf::from("/pub/site"));
        assert_eq!(c.period, Duration::from_secs(2));
        assert_eq!(c.init_period, Duration::from_millis(100));
        assert_eq!(c.sync_timeout, Duration::from_secs(60));
        assert!(c.one_time);
        assert_eq!(c.max_failures, -1);
        assert_eq!(c.init_max_failures, 3);
        assert_eq!(c.sync_on_signal, Some(Signal::SIGUSR1 as i32));
        assert_eq!(c.depth, 0);
        assert_eq!(c.touch_file, Some(PathBuf::from("/r/touched")));
        assert_eq!(c.error_file, Some(PathBuf::from("/var/err.json")));
        assert_eq!(c.stale_worktree_timeout, Duration::from_secs(300));
        assert!(c.group_write);
        assert_eq!(c.verbosity, 6);
        assert_eq!(c.log_format, LogFormat::Text);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn many_errors_are_reported_at_once() {
        let err = try_config(
            &[
                "--repo",
                "https://h/r",
                "--period=abc",
                "--depth=-1",
                "--sync-on-signal=bogus",
            ],
            &[],
        )
        .unwrap_err();
        let p = err.problems().to_vec();
        assert_eq!(p.len(), 4, "{p:?}");
        assert_eq!(p[0], "--root (GITSYNC_ROOT): must be specified");
        assert_eq!(p[1], "--period (GITSYNC_PERIOD): invalid duration \"abc\"");
        assert!(p[2].starts_with("--sync-on-signal (GITSYNC_SYNC_ON_SIGNAL): unknown signal"));
        assert!(p[3].starts_with("--depth (GITSYNC_DEPTH): must be 0 or more"));
        // Display: one per line.
        assert_eq!(err.to_string().lines().count(), 4);

        let p = problems(&[], &[]);
        assert_eq!(
            p,
            vec![
                "--repo (GITSYNC_REPO): must be specified".to_string(),
                "--root (GITSYNC_ROOT): must be specified".to_string()
            ]
        );
    }

    #[test]
    fn clap_outcomes_are_a_distinct_variant() {
        assert!(matches!(
            try_config(&["--help"], &[]),
            Err(ConfigError::Clap(_))
        ));
        assert!(matches!(
            try_config(&["--version"], &[]),
            Err(ConfigError::Clap(_))
        ));
        assert!(matches!(
            try_config(&["--bogus"], &[]),
            Err(ConfigError::Clap(_))
        ));
        assert!(try_config(&["--bogus"], &[])
            .unwrap_err()
            .problems()
            .is_empty());
    }

    #[test]
    fn repo_transports() {
        for ok in [
            "https://h/r",
            "HTTP://h/r",
            "git://h/r",
            "file:///tmp/r",
            "/tmp/r",
            "rel/dir",
            "./a:b",
            "ssh://git@h/r.git",
            "git@github.com:org/r.git",
            "host:r",
        ] {
            let repo = format!("--repo={ok}");
            config(&[&repo, "--root=/r", "--link=l"], &[]);
        }
        for bad in ["s3://b/r", "git+ssh://h/r"] {
            let repo = format!("--repo={bad}");
            let p = problems(&[&repo, "--root=/r", "--link=l"], &[]);
            assert_eq!(p.len(), 1, "{bad}: {p:?}");
            assert!(p[0].starts_with("--repo (GITSYNC_REPO): "), "{p:?}");
            assert!(p[0].contains("not supported yet"), "{p:?}");
        }
    }

    #[test]
    fn load_is_the_main_entry_point() {
        let args: Vec<OsString> = ["git-sidecar", "--root=/r"]
            .iter()
            .map(OsString::from)
            .collect();
        let env = |k: &str| (k == "GIT_REPO").then(|| "https://h/site".to_string());
        let c = load(args.clone(), &env).unwrap();
        assert_eq!(c.link, PathBuf::from("/r/site"));
        let err = load(vec!["git-sidecar".into()], &|_: &str| None).unwrap_err();
        match err {
            LoadError::Invalid(p, _) => assert_eq!(
                p.to_string(),
                "--repo (GITSYNC_REPO): must be specified\n--root (GITSYNC_ROOT): must be specified"
            ),
            LoadError::Clap(e) => panic!("{e}"),
        }
    }
}
