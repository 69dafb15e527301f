//! Validated configuration ("HiArgs"): built from the raw [`Cli`], with every
//! cross-flag rule checked and every mistake reported at once.
//!
//! # API
//!
//! * [`load`]`(args: Vec<OsString>, env) -> Result<Config, LoadError>`: what
//!   `main` calls, with `std::env::args_os()` and a `std::env::var` lookup.
//! * [`Config::from_args_and_env`]: the same, generic over the arguments
//!   (program name first); tests pass a map as the environment.
//! * [`Config::from_process`]: the process's own arguments and environment.
//! * [`Config::from_cli`]: validate an already parsed [`Cli`] (normally one
//!   from [`Cli::try_parse_with_env`]).
//!
//! All return [`ConfigError`] (alias [`LoadError`]). [`ConfigError::Clap`] is
//! clap's own outcome (`--help`, `--version`, unknown flag, missing value):
//! call `err.exit()`. [`ConfigError::Invalid`] holds every problem found
//! ([`Problems`], displayed one per line), each naming the flag and its
//! environment variable, e.g. `--period (GITSYNC_PERIOD): invalid duration
//! "abc"`; when a value came from a legacy variable, that one is named.
//! [`ConfigError::exit`] handles both (exit code 1 for invalid values, as
//! git-sync).
//!
//! # Value syntax (as git-sync, i.e. Go)
//!
//! * Durations: Go `time.ParseDuration`: `100ms`, `10s`, `1m30s`, `1h`, `1.5s`,
//!   `0`; units `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`.
//! * Booleans: Go `strconv.ParseBool`: `1 t T TRUE true True 0 f F FALSE false False`.
//! * Integers: Go `strconv.ParseInt(s, 0, 64)`: decimal, `0x` hex, `0o`/leading
//!   `0` octal, `0b` binary, `_` separators (so `--depth=010` is 8, as in git-sync).
//!
//! # Rules beyond git-sync
//!
//! * `-v` above 9 is clamped to 9 (with a warning); a negative level is an
//!   error. The deprecated `--v` overrides `-v` when it is 0 or more.
//! * `--ref`: an all-hex string of 7 to 39 characters is refused as an
//!   abbreviated SHA; refs must otherwise be valid git ref names.
//! * The default `--link` of a `user@host:path` repo is the part after the last
//!   `/` or `:` (git-sync would use the whole string).
//! * `--link` must not be `--root`, one of its parents, or inside its `.git` or
//!   `.worktrees` directories. `--touch-file` and `--error-file` (relative to
//!   `--root`, or absolute) must not be the link or lead through it, nor be
//!   `--root`, one of its parents, or inside its `.git` or `.worktrees`,
//!   also once symlinks on the way are resolved.
//! * `--sync-on-signal` must name a signal that can be caught (not KILL/STOP).
//! * `--repo` must be https://, http://, git://, ssh://, `user@host:path`,
//!   file:// or a local path. SSH settings: see [`ssh`].
//! * The HTTP surface (git-sync has `--http-bind`, `--http-metrics` and
//!   `--http-pprof`; the rest is git-sidecar's own) is described below.
//! * Flags of features not implemented yet are accepted by the parser but
//!   refused here when the user set them; `--git` is accepted with a
//!   warning. `--git-gc` picks when the object store is compacted
//!   ([`GcMode`]); `--sparse-checkout-file` and `--filter`: see [`checkout`].
//! * HTTP(S) credentials (`--username`, `GITSYNC_PASSWORD`, `--password-file`,
//!   or in `--repo`): see [`auth`]. Credentials in an http(s) `--repo` end up
//!   in [`Config::auth`], and [`Config::repo`] is the URL without them.
//!
//! # HTTP endpoint ([`HttpConfig`])
//!
//! [`Config::http`] is `Some` exactly when `--http-bind` is set (non-empty).
//!
//! * `--http-bind`: `ip:port` (`127.0.0.1:8080`, `[::1]:8080`), `:port` for
//!   all interfaces, IPv6 and IPv4 (`[::]:port`, dual stack, as Go's `:port`;
//!   IPv4 only where the pod has no IPv6), or `localhost:port`, taken as
//!   `127.0.0.1:port`. No other host name is accepted: nothing is resolved
//!   through DNS. Port 0 asks the system for a free port. An empty value
//!   means "no HTTP endpoint", as in git-sync.
//! * `--http-metrics`, `--http-pprof` set to true, and every flag below set
//!   at all (a boolean: set to true), without `--http-bind`, are errors
//!   ("requires --http-bind"). Their values are still checked.
//! * `--http-header-timeout` (default 10s), `--http-idle-timeout` (90s):
//!   durations above 0; `--http-max-connections` (1024): 1 or more
//!   ([`ConnectionLimits`]).
//! * `--readiness-max-staleness`: a duration above 0, by default
//!   `5 × --period + --sync-timeout` (the effective values, v3 forms
//!   included). Not more than `--period` is accepted with a warning.
//!   `--readiness-max-failures`: 0 or more, default 3; 0 = failures alone
//!   never make `/readyz` unready.
//! * `--incoming-webhook-path` (default `/webhook`): starts with `/`, only
//!   letters, digits and `-._~/` (so nothing a router could take for a
//!   parameter or wildcard), no empty/`.`/`..` segment, and not one of the
//!   paths served by the endpoint itself: `/`, `/livez`, `/readyz`,
//!   `/status`, `/metrics`, `/sync`, `/debug` and anything under `/debug/`
//!   (compared without a trailing `/`).
//! * Secrets and tokens (`--incoming-webhook-secret-file`,
//!   `--sync-trigger-token-file`, both repeatable; their environment
//!   variables take comma-separated lists): each file is read here, at most
//!   64 KiB, trailing whitespace (newlines) removed; an empty, oversized or
//!   unreadable file is an error naming the flag and the path. Then the
//!   environment-only `GITSYNC_INCOMING_WEBHOOK_SECRET` /
//!   `GITSYNC_SYNC_TRIGGER_TOKEN` (trailing whitespace removed) is appended.
//!   Values are kept in [`SecretBytes`] and never appear in `Debug` output,
//!   errors or warnings. A value that looks like a placeholder (`CHANGE-ME`,
//!   shorter than 16 bytes, ...: see `config/placeholder.rs`) is warned about, naming
//!   the flag and the file (the webhook signing secret too).
//! * `--incoming-webhook-allow-unsigned`: requests without a signature are
//!   accepted; signed ones are still checked against the secrets. Warned
//!   about whenever set. Setting webhook options with neither a secret nor
//!   this flag warns that incoming webhooks are disabled.
//! * `--incoming-webhook-max-body`: bytes, optionally with a `KiB` or `MiB`
//!   suffix (any case; also `B`), from 1 KiB to 64 MiB, default 5 MiB.
//!   `--incoming-webhook-rate-limit`: failed requests per minute per client,
//!   at least 1, default 60. `--incoming-webhook-repo`: optional filter
//!   (trimmed; empty = none).
//!
//! # Hooks ([`HooksConfig`])
//!
//! Each hook is `Some` exactly when its main flag is set (non-empty, as in
//! git-sync: an empty value means "no hook").
//!
//! * Exec hooks ([`ExecHookConfig`]): `--exechook-command` (run after each
//!   publish) and `--pre-publish-exechook-command` (run before the link
//!   moves; unlike git-sync's, it gates publishing). The command is kept as
//!   given (a path, or a bare name); a blank one is an error. The v3
//!   `--sync-hook-command` / `GIT_SYNC_HOOK_COMMAND` overrides
//!   `--exechook-command` (as in git-sync; deprecation warning, plus a warning
//!   when both are set). Arguments: `--exechook-arg` /
//!   `--pre-publish-exechook-arg`, repeatable; their environment variables
//!   take a JSON array of strings (`["-s","reload"]`); arguments without the
//!   command are an error. `--*-timeout` default 30s, `--*-backoff` default
//!   3s, both at least 1s.
//! * Outgoing webhook ([`OutgoingWebhookConfig`]): `--webhook-url` must be an
//!   `http://` or `https://` URL with a host. `--webhook-method` (default
//!   `POST`) is upper-cased and must be an HTTP token.
//!   `--webhook-success-status` (default 200): 0 or -1 = any response
//!   (`None`), otherwise 100 to 599. `--webhook-timeout` default 1s,
//!   `--webhook-backoff` default 3s, both at least 1s. git-sidecar's own:
//!   `--webhook-header "Name: value"` (repeatable; the environment variable
//!   takes one per line; the name must be an HTTP token and not one
//!   git-sidecar sets itself or that frames the body: `Gitsync-Hash`,
//!   `X-Git-Sidecar-Signature-256`, `Content-Length`, `Transfer-Encoding`;
//!   the value, trimmed, must not contain control
//!   characters other than tab, so no CR/LF; values never appear in messages
//!   or `Debug` output), `--webhook-json-body` (default false: no body, as
//!   git-sync), and the signing secret from `--webhook-signing-secret-file`
//!   (read like the incoming webhook secrets) or the environment-only
//!   `GITSYNC_WEBHOOK_SIGNING_SECRET`, not both. These four require
//!   `--webhook-url`.
//! * Like git-sync, the timing, status and method flags of a hook that is not
//!   configured are parsed (a bad duration or integer is still an error) but
//!   their ranges are only checked when the hook is on.
//! * Retries wait exactly `backoff` each time (as git-sync: no growth, no
//!   jitter; there is deliberately no flag for either).
//! * Reload ([`ReloadConfig`]): `--reload-process` is a process name as in
//!   `/proc/PID/comm` (no `/`, no control characters, at most 15 bytes, the
//!   kernel's limit); `--reload-signal` (default HUP) is parsed like
//!   `--sync-on-signal` and requires `--reload-process`.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::cli::{Cli, EnvLookup, Origin, Secret, UrlArg};
use crate::types::{GcMode, RepoUrl, SubmoduleMode, SymlinkPolicy};

pub mod access;
pub mod auth;
mod checkout;
pub mod git_config;
pub mod github_app;
mod placeholder;
mod ssh;
pub use access::{Access, GithubApp, UrlCredential};
pub use auth::{HttpAuth, PasswordSource};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// Everything the sync engine needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Remote URL (credentials inside are redacted in Display; those of an
    /// http(s) URL were moved to `auth`).
    pub repo: RepoUrl,
    /// HTTP(S) credentials: `--username` + password, or from `--repo`.
    pub auth: Option<HttpAuth>,
    /// SSH keys, known_hosts and `GIT_SSH_COMMAND` (see [`ssh`]).
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
    /// 0..=9 as git-sync's -v.
    pub verbosity: u8,
    pub log_format: LogFormat,
    /// Deprecation warnings (legacy env vars, v3 flags) to log once tracing is up.
    pub warnings: Vec<String>,
    /// The HTTP endpoint; `None` without `--http-bind`.
    pub http: Option<HttpConfig>,
    /// What runs after (and just before) publishing.
    pub hooks: HooksConfig,
}

/// Hooks: all optional.
#[derive(Debug, Clone, Default)]
pub struct HooksConfig {
    /// `--exechook-command` (+ `--exechook-arg`), run after each publish.
    pub exec: Option<ExecHookConfig>,
    /// `--webhook-url` and friends (outgoing), sent after each publish.
    pub webhook: Option<OutgoingWebhookConfig>,
    /// `--pre-publish-exechook-command`: gates publishing (non-zero exit = keep the old content).
    pub pre_publish: Option<ExecHookConfig>,
    /// `--reload-process` + `--reload-signal`, after each publish.
    pub reload: Option<ReloadConfig>,
}

/// A program run without a shell.
#[derive(Debug, Clone)]
pub struct ExecHookConfig {
    pub command: PathBuf,
    pub args: Vec<String>,
    pub timeout: Duration,
    /// The wait before each retry (fixed, as in git-sync).
    pub backoff: Duration,
}

/// An outgoing HTTP notification. `Debug` shows header names only (values
/// may hold tokens) and never the signing secret.
#[derive(Clone)]
pub struct OutgoingWebhookConfig {
    pub url: RepoUrl,
    pub method: String,
    /// `None` = any response counts as success (git-sync's 0 or -1).
    pub success_status: Option<u16>,
    pub timeout: Duration,
    /// The wait before each retry (fixed, as in git-sync).
    pub backoff: Duration,
    /// Extra `Name: value` headers.
    pub headers: Vec<(String, String)>,
    /// Send a JSON body (hash, previous hash, ref, repo, time) instead of none.
    pub json_body: bool,
    /// Sign the body: header `X-Git-Sidecar-Signature-256: sha256=<hex HMAC>`.
    pub signing_secret: Option<SecretBytes>,
}

impl std::fmt::Debug for OutgoingWebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        struct Headers<'h>(&'h [(String, String)]);
        impl std::fmt::Debug for Headers<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_list()
                    .entries(self.0.iter().map(|(name, _)| format!("{name}: REDACTED")))
                    .finish()
            }
        }
        f.debug_struct("OutgoingWebhookConfig")
            .field("url", &self.url.shown())
            .field("method", &self.method)
            .field("success_status", &self.success_status)
            .field("timeout", &self.timeout)
            .field("backoff", &self.backoff)
            .field("headers", &Headers(&self.headers))
            .field("json_body", &self.json_body)
            .field("signing_secret", &self.signing_secret)
            .finish()
    }
}

/// Signal a process found by name (needs `shareProcessNamespace: true`).
#[derive(Debug, Clone)]
pub struct ReloadConfig {
    /// Matched against /proc/<pid>/comm (the executable name, e.g. `nginx`).
    pub process: String,
    /// Signal number.
    pub signal: i32,
}

/// `--http-bind` and everything served there.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub bind: std::net::SocketAddr,
    /// `--http-metrics`: serve `/metrics`.
    pub metrics: bool,
    /// `--http-pprof`: serve `/debug/pprof/`.
    pub pprof: bool,
    pub readiness: ReadinessConfig,
    pub webhook: WebhookConfig,
    /// Bearer tokens accepted by `POST /sync`; empty = the endpoint is disabled.
    pub trigger_tokens: Vec<SecretBytes>,
    pub connections: ConnectionLimits,
}

/// What one HTTP client may hold: `--http-header-timeout`,
/// `--http-idle-timeout`, `--http-max-connections`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// From a request's first byte to its last header line.
    pub header_timeout: Duration,
    /// Between requests on one connection (and before the first byte).
    pub idle_timeout: Duration,
    /// Connections open at once (before the open-file limit lowers it).
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_timeout: DEFAULT_HTTP_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_HTTP_IDLE_TIMEOUT,
            max_connections: DEFAULT_HTTP_MAX_CONNECTIONS,
        }
    }
}

/// When `/readyz` turns 503 again after the first publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadinessConfig {
    /// Not ready when the last successful sync is older than this.
    pub max_staleness: Duration,
    /// Not ready after this many consecutive failures; 0 = never for failures.
    pub max_failures: u32,
}

/// Incoming (forge → us) webhooks.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// URL path, starting with `/` (default `/webhook`).
    pub path: String,
    /// Active secrets (several during a rotation). Empty and not `allow_unsigned`
    /// = incoming webhooks are disabled.
    pub secrets: Vec<SecretBytes>,
    /// Accept requests without any signature (explicit operator opt-out).
    pub allow_unsigned: bool,
    /// Only pushes whose payload names this repository (loosely matched).
    pub repo_filter: Option<String>,
    /// Bodies above this are answered 413 before parsing.
    pub max_body_bytes: usize,
    /// Requests per minute allowed per client address (burst of the same size).
    pub rate_limit_per_minute: u32,
}

/// A secret value; `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBytes(REDACTED)")
    }
}

/// Why no [`Config`] could be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// clap's own outcome: `--help`/`--version` output or a usage error
    /// (unknown flag, missing value). Handle with `err.exit()`.
    #[error(transparent)]
    Clap(#[from] clap::Error),
    /// Every problem found in the values (`Display`: one per line).
    #[error("{0}")]
    Invalid(Problems),
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

impl ConfigError {
    /// The problems found (empty for [`ConfigError::Clap`]).
    pub fn problems(&self) -> &[String] {
        match self {
            ConfigError::Clap(_) => &[],
            ConfigError::Invalid(problems) => &problems.0,
        }
    }

    /// Prints the error and exits: clap's exit for [`ConfigError::Clap`]
    /// (0 for help/version, 2 for usage errors), 1 for invalid values.
    pub fn exit(&self) -> ! {
        match self {
            ConfigError::Clap(e) => e.exit(),
            ConfigError::Invalid(problems) => {
                eprintln!("git-sidecar: invalid configuration:\n{problems}");
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

const MIN_PERIOD: Duration = Duration::from_millis(10);
const DEFAULT_PERIOD: Duration = Duration::from_secs(10);
const DEFAULT_SYNC_TIMEOUT: Duration = Duration::from_secs(120);
const MAX_VERBOSITY: i64 = 9;
/// Default `--readiness-max-staleness`: this many periods plus the sync timeout.
const DEFAULT_READINESS_STALENESS_PERIODS: u32 = 5;
const DEFAULT_READINESS_MAX_FAILURES: u32 = 3;
const DEFAULT_WEBHOOK_PATH: &str = "/webhook";
const DEFAULT_WEBHOOK_MAX_BODY: u64 = 5 * MIB;
const MIN_WEBHOOK_MAX_BODY: u64 = KIB;
const MAX_WEBHOOK_MAX_BODY: u64 = 64 * MIB;
const DEFAULT_WEBHOOK_RATE_LIMIT: u32 = 60;
/// Headers arrive in milliseconds from kubelet and from a proxy.
const DEFAULT_HTTP_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Above ingress-nginx's and most load balancers' upstream keep-alive (60 s),
/// so the proxy, not us, closes an idle connection (no 502 race).
const DEFAULT_HTTP_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
const DEFAULT_HTTP_MAX_CONNECTIONS: usize = 1024;
const DEFAULT_EXECHOOK_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_HOOK_BACKOFF: Duration = Duration::from_secs(3);
/// Hook timeouts and backoffs are at least this (as git-sync).
const MIN_HOOK_DURATION: Duration = Duration::from_secs(1);
const DEFAULT_WEBHOOK_METHOD: &str = "POST";
const DEFAULT_WEBHOOK_SUCCESS_STATUS: u16 = 200;
/// Header names `--webhook-header` must not set: git-sidecar sets them itself
/// or they frame the body.
const RESERVED_WEBHOOK_HEADERS: &[&str] = &[
    "gitsync-hash",
    "x-git-sidecar-signature-256",
    "content-length",
    "transfer-encoding",
];
/// The longest name /proc/PID/comm holds (TASK_COMM_LEN 16, less the NUL).
const MAX_PROCESS_NAME: usize = 15;
/// Secret and token files larger than this are refused (not a secret, surely).
const MAX_SECRET_FILE: u64 = 64 * KIB;
const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;
/// Paths served by the HTTP endpoint itself, which the webhook must not take.
const RESERVED_HTTP_PATHS: &[&str] = &["/", "/livez", "/readyz", "/status", "/metrics", "/sync"];

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

        // --repo
        let repo = non_empty(cli.repo.as_ref().map(UrlArg::expose));
        match repo.map(repo_scheme) {
            None => c.fail("repo", "must be specified"),
            Some(None) => {}
            Some(Some(scheme)) if SUPPORTED_SCHEMES.contains(&scheme.as_str()) => {}
            Some(Some(scheme)) => c.fail(
                "repo",
                format!(
                    "{scheme:?} repositories are not supported yet \
                     (supported: https://, http://, git://, ssh://, user@host:path, file:// \
                     and local paths)"
                ),
            ),
        }
        let auth = c.http_auth(repo);
        let ssh = c.ssh(repo);
        let access = c.access(auth.is_some());

        // --root
        let root = match non_empty(cli.root.as_deref()) {
            None => {
                c.fail("root", "must be specified");
                None
            }
            Some(raw) => match absolutize(Path::new(raw)) {
                Ok(p) => Some(p),
                Err(e) => {
                    c.fail("root", format!("cannot make {raw:?} absolute: {e}"));
                    None
                }
            },
        };

        let git_ref = c.git_ref();

        // --link (--dest overrides)
        let (link_id, link_raw) = match non_empty(cli.dest.as_deref()) {
            Some(dest) => ("dest", Some(dest.to_string())),
            None => ("link", non_empty(cli.link.as_deref()).map(str::to_string)),
        };
        let link_raw = match (link_raw, repo) {
            (Some(l), _) => Some(l),
            (None, Some(repo)) => match default_link_name(repo) {
                Some(name) => Some(name),
                None => {
                    c.fail(
                        "link",
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

        // --period (--wait overrides when non-zero)
        let mut period_id = "period";
        let mut period = c.duration_or("period", DEFAULT_PERIOD);
        if let Some(wait) = c.float("wait") {
            if wait != 0.0 {
                period_id = "wait";
                // As git-sync: truncate to whole milliseconds.
                let ms = (wait * 1000.0).trunc();
                period = if ms < 0.0 {
                    c.fail("wait", format!("must not be negative, got {wait}"));
                    None
                } else {
                    Some(Duration::from_millis(ms as u64))
                };
            }
        }
        c.at_least(period_id, period, MIN_PERIOD);
        let period = period.unwrap_or(DEFAULT_PERIOD);

        // --init-period (defaults to the period). Only checked when set: a
        // too-short --period is reported once, under its own name.
        let init_period = c.duration_or("init_period", period);
        if c.value("init_period").is_some() {
            c.at_least("init_period", init_period, MIN_PERIOD);
        }
        let init_period = init_period.unwrap_or(period);

        // --sync-timeout (--timeout overrides when non-zero)
        let mut timeout_id = "sync_timeout";
        let mut sync_timeout = c.duration_or("sync_timeout", DEFAULT_SYNC_TIMEOUT);
        if let Some(secs) = c.int("timeout") {
            if secs != 0 {
                timeout_id = "timeout";
                sync_timeout = match u64::try_from(secs) {
                    Ok(secs) => Some(Duration::from_secs(secs)),
                    Err(_) => {
                        c.fail("timeout", format!("must not be negative, got {secs}"));
                        None
                    }
                };
            }
        }
        c.at_least(timeout_id, sync_timeout, MIN_PERIOD);
        let sync_timeout = sync_timeout.unwrap_or(DEFAULT_SYNC_TIMEOUT);

        let one_time = c.bool("one_time").unwrap_or(false);

        // --max-failures (--max-sync-failures overrides when non-zero)
        let mut max_failures = c.int("max_failures").unwrap_or(0);
        if let Some(v) = c.int("max_sync_failures") {
            if v != 0 {
                max_failures = v;
            }
        }
        let init_max_failures = c.int("init_max_failures").unwrap_or(max_failures);

        let sync_on_signal = match non_empty(cli.sync_on_signal.as_deref()) {
            None => None,
            Some(raw) => match parse_signal(raw) {
                Ok(n) => Some(n),
                Err(e) => {
                    c.fail("sync_on_signal", e);
                    None
                }
            },
        };

        let depth = match c.int("depth") {
            None => 1,
            Some(d) => u32::try_from(d).unwrap_or_else(|_| {
                if d < 0 {
                    c.fail(
                        "depth",
                        format!("must be 0 or more (0 = full history), got {d}"),
                    );
                } else {
                    c.fail("depth", format!("too large: {d}"));
                }
                1
            }),
        };

        let touch_file = c.file_under_root("touch_file", root.as_deref(), link.as_deref());
        let error_file = c.file_under_root("error_file", root.as_deref(), link.as_deref());

        let stale_worktree_timeout = c
            .duration_or("stale_worktree_timeout", Duration::ZERO)
            .unwrap_or(Duration::ZERO);

        let escaping_symlinks = match c.raw("escaping_symlinks") {
            None => SymlinkPolicy::Refuse,
            Some(raw) => SymlinkPolicy::parse(raw).unwrap_or_else(|| {
                c.fail(
                    "escaping_symlinks",
                    format!("must be \"refuse\", \"skip\" or \"allow\", got {raw:?}"),
                );
                SymlinkPolicy::Refuse
            }),
        };

        let git_gc = match c.raw("git_gc") {
            None => GcMode::default(),
            Some(raw) => GcMode::parse(raw).unwrap_or_else(|| {
                c.fail(
                    "git_gc",
                    format!(
                        "must be one of \"auto\", \"always\", \"aggressive\" or \"off\", got {raw:?}"
                    ),
                );
                GcMode::default()
            }),
        };
        let sparse_checkout = c.sparse_checkout();
        let filter = c.filter();
        let submodules = match c.raw("submodules") {
            None => SubmoduleMode::Recursive,
            Some(raw) => SubmoduleMode::parse(raw).unwrap_or_else(|| {
                c.fail(
                    "submodules",
                    format!("must be one of \"recursive\", \"shallow\" or \"off\", got {raw:?}"),
                );
                SubmoduleMode::Recursive
            }),
        };

        let group_write = c.bool("group_write").unwrap_or(false);
        let verbosity = c.verbosity();
        let log_format = match c.raw("log_format") {
            None => LogFormat::Json,
            Some(raw) if raw.eq_ignore_ascii_case("json") => LogFormat::Json,
            Some(raw) if raw.eq_ignore_ascii_case("text") => LogFormat::Text,
            Some(raw) => {
                c.fail(
                    "log_format",
                    format!("must be \"json\" or \"text\", got {raw:?}"),
                );
                LogFormat::Json
            }
        };

        let http = c.http(period, sync_timeout);
        let hooks = c.hooks();

        c.unsupported();

        let Checker {
            errors, warnings, ..
        } = c;
        if !errors.is_empty() {
            return Err(ConfigError::Invalid(Problems(errors)));
        }
        let (Some(repo), Some(root), Some(link)) = (repo, root, link) else {
            return Err(ConfigError::Invalid(Problems(vec![
                "internal error: configuration incomplete without a reported problem".into(),
            ])));
        };
        // Credentials found in the URL now live in `auth` only.
        let repo = match auth {
            Some(_) => auth::strip_userinfo(repo),
            None => repo.to_string(),
        };
        Ok(Config {
            repo: RepoUrl::new(repo),
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
            verbosity,
            log_format,
            warnings,
            http,
            hooks,
        })
    }
}

/// Collects problems while reading the raw flags.
struct Checker<'a> {
    cli: &'a Cli,
    errors: Vec<String>,
    warnings: Vec<String>,
}

impl<'a> Checker<'a> {
    fn fail(&mut self, id: &str, msg: impl std::fmt::Display) {
        self.errors.push(format!("{}: {msg}", self.cli.label(id)));
    }

    /// The raw string of a single-valued argument, if set and non-empty.
    /// Strings and paths treat an explicitly empty value as unset.
    fn raw(&self, id: &str) -> Option<&'a str> {
        non_empty(self.value(id))
    }

    /// The raw string of a single-valued argument as given, possibly empty:
    /// typed flags report `--period=` as invalid rather than ignore it. (An
    /// empty environment variable never gets here: it counts as unset.)
    fn value(&self, id: &str) -> Option<&'a str> {
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
    fn duration_or(&mut self, id: &str, default: Duration) -> Option<Duration> {
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
    fn at_least(&mut self, id: &str, value: Option<Duration>, min: Duration) {
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
    fn int(&mut self, id: &str) -> Option<i64> {
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
    fn bool(&mut self, id: &str) -> Option<bool> {
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
    fn float(&mut self, id: &str) -> Option<f64> {
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
    fn git_ref(&mut self) -> String {
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

    fn link(&mut self, id: &str, root: &Path, raw: &str) -> Option<PathBuf> {
        let link = clean_join(root, Path::new(raw));
        let inside = |dir: &str| link.starts_with(root.join(dir));
        if root.starts_with(&link) {
            self.fail(
                id,
                format!("{raw:?} must not be --root or one of its parent directories"),
            );
            None
        } else if inside(".git") || inside(".worktrees") {
            self.fail(
                id,
                format!("{raw:?} must not be inside --root's .git or .worktrees directory"),
            );
            None
        } else if link == root.join(crate::rootlock::FILE_NAME) {
            self.fail(id, format!("{raw:?} is the root's lock file"));
            None
        } else {
            Some(link)
        }
    }

    /// `--touch-file` / `--error-file`: joined onto root when relative. Both
    /// are written and removed by the sidecar, so neither may be (or lead
    /// through) the link, root or a parent of it, or anything in `.git` or
    /// `.worktrees`, checked both as written and with symlinks resolved.
    fn file_under_root(
        &mut self,
        id: &str,
        root: Option<&Path>,
        link: Option<&Path>,
    ) -> Option<PathBuf> {
        let raw = self.raw(id)?;
        let root = root?;
        let path = clean_join(root, Path::new(raw));
        let resolved = resolve_lenient(&path);
        let problem = [path.as_path(), resolved.as_path()]
            .into_iter()
            .find_map(|p| state_file_clash(p, root, link));
        match problem {
            Some(why) => {
                self.fail(
                    id,
                    format!(
                        "{raw:?} {why}; git-sidecar writes and deletes this file, so \
                         choose a path of its own, e.g. outside --root or directly in it \
                         under a name other than the link's"
                    ),
                );
                None
            }
            None => Some(path),
        }
    }

    fn verbosity(&mut self) -> u8 {
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

    /// `--http-bind` and everything served there; `None` without `--http-bind`
    /// (or when something is invalid: reported). Every value is checked even
    /// without `--http-bind`, so that all mistakes show up at once.
    fn http(&mut self, period: Duration, sync_timeout: Duration) -> Option<HttpConfig> {
        let cli: &'a Cli = self.cli;
        let bind_given = self.raw("http_bind").is_some();
        let bind = self
            .raw("http_bind")
            .and_then(|raw| match parse_http_bind(raw) {
                Ok(addr) => Some(addr),
                Err(e) => {
                    self.fail("http_bind", e);
                    None
                }
            });
        let metrics = self.bool("http_metrics").unwrap_or(false);
        let pprof = self.bool("http_pprof").unwrap_or(false);

        // Readiness.
        let default_staleness = period
            .saturating_mul(DEFAULT_READINESS_STALENESS_PERIODS)
            .saturating_add(sync_timeout);
        let max_staleness = match self.duration_or("readiness_max_staleness", default_staleness) {
            Some(d) if d.is_zero() => {
                self.fail("readiness_max_staleness", "must be > 0");
                default_staleness
            }
            Some(d) => {
                if self.value("readiness_max_staleness").is_some() && d <= period {
                    self.warnings.push(format!(
                        "{}: {} is not longer than --period ({}); /readyz may turn \
                         unready between two syncs",
                        self.cli.label("readiness_max_staleness"),
                        fmt_duration(d),
                        fmt_duration(period)
                    ));
                }
                d
            }
            None => default_staleness,
        };
        let max_failures = match self.int("readiness_max_failures") {
            None => DEFAULT_READINESS_MAX_FAILURES,
            Some(v) => u32::try_from(v).unwrap_or_else(|_| {
                let msg = if v < 0 {
                    format!("must be 0 or more (0 = failures never make /readyz unready), got {v}")
                } else {
                    format!("too large: {v}")
                };
                self.fail("readiness_max_failures", msg);
                DEFAULT_READINESS_MAX_FAILURES
            }),
        };

        // Incoming webhooks.
        let path = match self.raw("incoming_webhook_path") {
            None => DEFAULT_WEBHOOK_PATH.to_string(),
            Some(raw) => {
                if let Err(e) = validate_webhook_path(raw) {
                    self.fail("incoming_webhook_path", e);
                }
                raw.to_string()
            }
        };
        let mut secrets = self.secret_files(
            "incoming_webhook_secret_file",
            &cli.incoming_webhook_secret_file,
        );
        secrets.extend(self.env_secret("env_incoming_webhook_secret"));
        let allow_unsigned = self
            .bool("incoming_webhook_allow_unsigned")
            .unwrap_or(false);
        let repo_filter = self
            .raw("incoming_webhook_repo")
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_string);
        let max_body_bytes = match self.raw("incoming_webhook_max_body") {
            None => DEFAULT_WEBHOOK_MAX_BODY,
            Some(raw) => match parse_byte_size(raw) {
                Ok(n) if (MIN_WEBHOOK_MAX_BODY..=MAX_WEBHOOK_MAX_BODY).contains(&n) => n,
                Ok(_) => {
                    self.fail(
                        "incoming_webhook_max_body",
                        format!("must be between 1KiB and 64MiB, got {raw:?}"),
                    );
                    DEFAULT_WEBHOOK_MAX_BODY
                }
                Err(e) => {
                    self.fail("incoming_webhook_max_body", e);
                    DEFAULT_WEBHOOK_MAX_BODY
                }
            },
        };
        let rate_limit_per_minute = match self.int("incoming_webhook_rate_limit") {
            None => DEFAULT_WEBHOOK_RATE_LIMIT,
            Some(v) => match u32::try_from(v) {
                Ok(n) if n >= 1 => n,
                _ => {
                    self.fail(
                        "incoming_webhook_rate_limit",
                        format!("must be between 1 and {}, got {v}", u32::MAX),
                    );
                    DEFAULT_WEBHOOK_RATE_LIMIT
                }
            },
        };

        let connections = self.connection_limits();

        // POST /sync.
        let mut trigger_tokens =
            self.secret_files("sync_trigger_token_file", &cli.sync_trigger_token_file);
        trigger_tokens.extend(self.env_secret("env_sync_trigger_token"));

        if !bind_given {
            let mut given: Vec<&str> = Vec::new();
            if metrics {
                given.push("http_metrics");
            }
            if pprof {
                given.push("http_pprof");
            }
            for id in [
                "http_header_timeout",
                "http_idle_timeout",
                "http_max_connections",
                "readiness_max_staleness",
                "readiness_max_failures",
                "incoming_webhook_path",
            ] {
                if self.value(id).is_some() {
                    given.push(id);
                }
            }
            if !cli.incoming_webhook_secret_file.is_empty() {
                given.push("incoming_webhook_secret_file");
            }
            if self.raw("env_incoming_webhook_secret").is_some() {
                given.push("env_incoming_webhook_secret");
            }
            if allow_unsigned {
                given.push("incoming_webhook_allow_unsigned");
            }
            for id in [
                "incoming_webhook_repo",
                "incoming_webhook_max_body",
                "incoming_webhook_rate_limit",
            ] {
                if self.value(id).is_some() {
                    given.push(id);
                }
            }
            if !cli.sync_trigger_token_file.is_empty() {
                given.push("sync_trigger_token_file");
            }
            if self.raw("env_sync_trigger_token").is_some() {
                given.push("env_sync_trigger_token");
            }
            for id in given {
                self.fail(id, "requires --http-bind");
            }
            return None;
        }

        let unsigned_label = self.cli.label("incoming_webhook_allow_unsigned");
        if allow_unsigned && secrets.is_empty() {
            self.warnings.push(format!(
                "{unsigned_label}: incoming webhooks are accepted without any authentication"
            ));
        } else if allow_unsigned {
            self.warnings.push(format!(
                "{unsigned_label}: unsigned incoming webhooks are accepted; signed ones are \
                 still checked against the secrets"
            ));
        } else if secrets.is_empty()
            && [
                "incoming_webhook_path",
                "incoming_webhook_repo",
                "incoming_webhook_max_body",
                "incoming_webhook_rate_limit",
            ]
            .iter()
            .any(|id| self.value(id).is_some())
        {
            self.warnings.push(
                "incoming webhooks are disabled: no --incoming-webhook-secret-file, no \
                 $GITSYNC_INCOMING_WEBHOOK_SECRET and no --incoming-webhook-allow-unsigned"
                    .to_string(),
            );
        }

        Some(HttpConfig {
            bind: bind?,
            metrics,
            pprof,
            readiness: ReadinessConfig {
                max_staleness,
                max_failures,
            },
            webhook: WebhookConfig {
                path,
                secrets,
                allow_unsigned,
                repo_filter,
                // At most 64 MiB, so it fits any usize we build for.
                max_body_bytes: usize::try_from(max_body_bytes).unwrap_or(usize::MAX),
                rate_limit_per_minute,
            },
            trigger_tokens,
            connections,
        })
    }

    /// `--http-header-timeout`, `--http-idle-timeout` (both above 0) and
    /// `--http-max-connections` (at least 1).
    fn connection_limits(&mut self) -> ConnectionLimits {
        let defaults = ConnectionLimits::default();
        let positive =
            |this: &mut Self, id: &str, default: Duration| match this.duration_or(id, default) {
                Some(d) if d.is_zero() => {
                    this.fail(id, "must be more than 0");
                    default
                }
                Some(d) => d,
                None => default,
            };
        let header_timeout = positive(self, "http_header_timeout", defaults.header_timeout);
        let idle_timeout = positive(self, "http_idle_timeout", defaults.idle_timeout);
        let max_connections = match self.int("http_max_connections") {
            None => defaults.max_connections,
            Some(v) => match usize::try_from(v) {
                Ok(n) if n >= 1 => n,
                _ => {
                    self.fail(
                        "http_max_connections",
                        format!("must be 1 or more, got {v}"),
                    );
                    defaults.max_connections
                }
            },
        };
        ConnectionLimits {
            header_timeout,
            idle_timeout,
            max_connections,
        }
    }

    /// Reads every secret file of a repeatable argument (reporting each bad one).
    fn secret_files(&mut self, id: &str, paths: &[String]) -> Vec<SecretBytes> {
        let mut out = Vec::new();
        for path in paths {
            match read_secret_file(path) {
                Ok(secret) => {
                    self.warn_if_placeholder(id, Some(path), &secret);
                    out.push(secret);
                }
                Err(e) => self.fail(id, e),
            }
        }
        out
    }

    /// An environment-only secret, trailing whitespace removed; `None` when
    /// unset or blank (reported). Its value never goes into a message.
    fn env_secret(&mut self, id: &str) -> Option<SecretBytes> {
        let raw = self.raw(id)?;
        let trimmed = raw.trim_end();
        if trimmed.is_empty() {
            self.fail(id, "must not be blank");
            return None;
        }
        let secret = SecretBytes::new(trimmed.as_bytes());
        self.warn_if_placeholder(id, None, &secret);
        Some(secret)
    }

    /// Warns when a secret from `id` (the file `path`, or the environment)
    /// looks like a placeholder (the shipped `CHANGE-ME`): anyone can forge
    /// what it authenticates. Names the source, never the value.
    fn warn_if_placeholder(&mut self, id: &str, path: Option<&str>, secret: &SecretBytes) {
        let Some(reason) = placeholder::placeholder_reason(secret.expose()) else {
            return;
        };
        let source = match path {
            Some(path) => format!("{}: {path:?}", self.cli.label(id)),
            None => self.cli.label(id),
        };
        self.warnings.push(format!(
            "{source} looks like a placeholder, not a secret ({reason}): anyone who guesses \
             it can forge what it authenticates; replace it with a random value, e.g. the \
             output of `openssl rand -hex 32`"
        ));
    }

    /// Every hook flag (see the module docs). Values are checked even when
    /// something else is wrong, so that all mistakes show up at once.
    fn hooks(&mut self) -> HooksConfig {
        let cli: &'a Cli = self.cli;
        let exec = self.exec_hook(
            ExecHookIds {
                command: "exechook_command",
                v3_command: Some("sync_hook_command"),
                args: "exechook_arg",
                timeout: "exechook_timeout",
                backoff: "exechook_backoff",
            },
            &cli.exechook_arg,
        );
        let pre_publish = self.exec_hook(
            ExecHookIds {
                command: "pre_publish_exechook_command",
                v3_command: None,
                args: "pre_publish_exechook_arg",
                timeout: "pre_publish_exechook_timeout",
                backoff: "pre_publish_exechook_backoff",
            },
            &cli.pre_publish_exechook_arg,
        );
        let webhook = self.outgoing_webhook();
        let reload = self.reload();
        HooksConfig {
            exec,
            webhook,
            pre_publish,
            reload,
        }
    }

    fn exec_hook(&mut self, ids: ExecHookIds, raw_args: &[String]) -> Option<ExecHookConfig> {
        let mut command = self.raw(ids.command).map(|c| (ids.command, c));
        if let Some(v3) = ids.v3_command {
            if let Some(raw) = self.raw(v3) {
                if command.is_some() {
                    self.warnings.push(format!(
                        "{} overrides {}",
                        self.cli.label(v3),
                        self.cli.label(ids.command)
                    ));
                }
                command = Some((v3, raw));
            }
        }
        let timeout = self.duration_or(ids.timeout, DEFAULT_EXECHOOK_TIMEOUT);
        let backoff = self.duration_or(ids.backoff, DEFAULT_HOOK_BACKOFF);
        let args = self.hook_args(ids.args, raw_args);

        let Some((command_id, command)) = command else {
            if !raw_args.is_empty() {
                let needed = self.cli.label(ids.command);
                self.fail(ids.args, format!("requires {needed}"));
            }
            return None;
        };
        if command.trim().is_empty() {
            self.fail(command_id, "must not be blank");
        }
        self.at_least(ids.timeout, timeout, MIN_HOOK_DURATION);
        self.at_least(ids.backoff, backoff, MIN_HOOK_DURATION);
        let (timeout, backoff) = (timeout?, backoff?);
        Some(ExecHookConfig {
            command: PathBuf::from(command),
            args,
            timeout,
            backoff,
        })
    }

    /// The arguments of an exec hook: as given on the command line, or decoded
    /// from the JSON array in the environment variable.
    fn hook_args(&mut self, id: &str, raw: &[String]) -> Vec<String> {
        let from_env = matches!(self.cli.provenance.origin(id), Some(Origin::Env(_)));
        if !from_env {
            return raw.to_vec();
        }
        let Some(json) = raw.first() else {
            return Vec::new();
        };
        match serde_json::from_str::<Vec<String>>(json) {
            Ok(args) => args,
            Err(e) => {
                self.fail(
                    id,
                    format!(
                        "must be a JSON array of strings, e.g. [\"-s\",\"reload\"] ({e}); \
                         on the command line, repeat the flag instead"
                    ),
                );
                Vec::new()
            }
        }
    }

    fn outgoing_webhook(&mut self) -> Option<OutgoingWebhookConfig> {
        let cli: &'a Cli = self.cli;
        let url = self.raw("webhook_url");
        if let Some(raw) = url {
            if let Err(e) = validate_outgoing_webhook_url(raw) {
                self.fail("webhook_url", e);
            }
        }
        let timeout = self.duration_or("webhook_timeout", DEFAULT_WEBHOOK_TIMEOUT);
        let backoff = self.duration_or("webhook_backoff", DEFAULT_HOOK_BACKOFF);
        let status = self.int("webhook_success_status");
        let headers = self.webhook_headers(&cli.webhook_header);
        let json_body = self.bool("webhook_json_body").unwrap_or(false);

        let secret_file = self.raw("webhook_signing_secret_file");
        let mut signing_secret = secret_file.and_then(|path| match read_secret_file(path) {
            Ok(secret) => {
                self.warn_if_placeholder("webhook_signing_secret_file", Some(path), &secret);
                Some(secret)
            }
            Err(e) => {
                self.fail("webhook_signing_secret_file", e);
                None
            }
        });
        if let Some(secret) = self.env_secret("env_webhook_signing_secret") {
            if secret_file.is_some() {
                let other = self.cli.label("webhook_signing_secret_file");
                self.fail(
                    "env_webhook_signing_secret",
                    format!("cannot be combined with {other}; set only one"),
                );
            }
            signing_secret = Some(secret);
        }

        let Some(url) = url else {
            let mut given: Vec<&str> = Vec::new();
            if !cli.webhook_header.is_empty() {
                given.push("webhook_header");
            }
            if json_body {
                given.push("webhook_json_body");
            }
            if secret_file.is_some() {
                given.push("webhook_signing_secret_file");
            }
            if self.raw("env_webhook_signing_secret").is_some() {
                given.push("env_webhook_signing_secret");
            }
            let needed = self.cli.label("webhook_url");
            for id in given {
                self.fail(id, format!("requires {needed}"));
            }
            return None;
        };

        let method = match self.raw("webhook_method") {
            None => DEFAULT_WEBHOOK_METHOD.to_string(),
            Some(raw) => match parse_http_method(raw) {
                Ok(m) => m,
                Err(e) => {
                    self.fail("webhook_method", e);
                    DEFAULT_WEBHOOK_METHOD.to_string()
                }
            },
        };
        let success_status = match status {
            None => Some(DEFAULT_WEBHOOK_SUCCESS_STATUS),
            // git-sync: 0, and -1 for backwards compatibility, accept any status.
            Some(0 | -1) => None,
            Some(n) => match u16::try_from(n) {
                Ok(code) if (100..=599).contains(&code) => Some(code),
                _ => {
                    self.fail(
                        "webhook_success_status",
                        format!("must be an HTTP status from 100 to 599, or 0 for any, got {n}"),
                    );
                    None
                }
            },
        };
        self.at_least("webhook_timeout", timeout, MIN_HOOK_DURATION);
        self.at_least("webhook_backoff", backoff, MIN_HOOK_DURATION);
        let (timeout, backoff) = (timeout?, backoff?);
        Some(OutgoingWebhookConfig {
            url: RepoUrl::new(url),
            method,
            success_status,
            timeout,
            backoff,
            headers,
            json_body,
            signing_secret,
        })
    }

    /// `--webhook-header` entries; each bad one is reported without its value.
    fn webhook_headers(&mut self, raw: &[Secret]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (i, header) in raw.iter().enumerate() {
            match parse_webhook_header(header.expose()) {
                Ok(h) => out.push(h),
                Err(e) => self.fail("webhook_header", format!("header #{}: {e}", i + 1)),
            }
        }
        out
    }

    fn reload(&mut self) -> Option<ReloadConfig> {
        let process = self.raw("reload_process");
        if let Some(name) = process {
            if let Err(e) = validate_process_name(name) {
                self.fail("reload_process", e);
            }
        }
        let signal = match self.raw("reload_signal") {
            None => Some(Signal::SIGHUP as i32),
            Some(raw) => match parse_signal(raw) {
                Ok(n) => Some(n),
                Err(e) => {
                    self.fail("reload_signal", e);
                    None
                }
            },
        };
        let Some(process) = process else {
            if self.raw("reload_signal").is_some() {
                let needed = self.cli.label("reload_process");
                self.fail("reload_signal", format!("requires {needed}"));
            }
            return None;
        };
        Some(ReloadConfig {
            process: process.to_string(),
            signal: signal?,
        })
    }

    /// Flags of features that are not implemented: refused when set.
    fn unsupported(&mut self) {
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

/// The argument ids of one exec hook.
struct ExecHookIds {
    command: &'static str,
    /// A deprecated flag that overrides `command` when set (v3's `--sync-hook-command`).
    v3_command: Option<&'static str>,
    args: &'static str,
    timeout: &'static str,
    backoff: &'static str,
}

/// Checks `--webhook-url`: an absolute `http://` or `https://` URL with a
/// host. Messages show the URL without password, query or fragment.
pub fn validate_outgoing_webhook_url(raw: &str) -> Result<(), String> {
    let shown = crate::types::shown_url(raw);
    let url = reqwest::Url::parse(raw).map_err(|e| format!("invalid URL {shown:?}: {e}"))?;
    match url.scheme() {
        "http" | "https" => {}
        other => {
            return Err(format!(
                "{shown:?}: must be an http:// or https:// URL, not {other}://"
            ))
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{shown:?} has no host"));
    }
    Ok(())
}

/// Upper-cases `--webhook-method` and checks that it is an HTTP token.
pub fn parse_http_method(raw: &str) -> Result<String, String> {
    let method = raw.trim().to_ascii_uppercase();
    if method.is_empty() {
        return Err("must not be blank".to_string());
    }
    http::Method::from_bytes(method.as_bytes()).map_err(|_| {
        format!("{raw:?} is not a valid HTTP method (letters, digits and !#$%&'*+-.^_`|~)")
    })?;
    Ok(method)
}

/// Parses one `--webhook-header` entry, `Name: value`: the name (trimmed) must
/// be an HTTP token and not reserved; the value is trimmed and must not
/// contain control characters other than tab (so no CR or LF). Errors never
/// include the value.
pub fn parse_webhook_header(raw: &str) -> Result<(String, String), String> {
    let Some((name, value)) = raw.split_once(':') else {
        return Err("expected \"Name: value\" (no ':' found)".to_string());
    };
    let name = name.trim();
    if name.is_empty() {
        return Err("expected \"Name: value\" (the name is empty)".to_string());
    }
    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(format!(
            "{name:?} is not a valid header name (letters, digits and !#$%&'*+-.^_`|~)"
        ));
    }
    if RESERVED_WEBHOOK_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(format!("{name:?} is set by git-sidecar itself"));
    }
    let value = value.trim_matches([' ', '\t']);
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(format!(
            "the value of {name:?} must not contain control characters (such as CR or LF)"
        ));
    }
    Ok((name.to_string(), value.to_string()))
}

/// Checks `--reload-process`: a name as /proc/PID/comm shows it.
pub fn validate_process_name(name: &str) -> Result<(), String> {
    if name.contains('/') {
        return Err(format!(
            "{name:?} must be a process name as in /proc/PID/comm (e.g. nginx), not a path"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("{name:?} must not contain control characters"));
    }
    if name.len() > MAX_PROCESS_NAME {
        let mut end = MAX_PROCESS_NAME;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        return Err(format!(
            "{name:?} is longer than {MAX_PROCESS_NAME} bytes, the most /proc/PID/comm holds; \
             the kernel shows its first {MAX_PROCESS_NAME} bytes (e.g. {:?})",
            &name[..end]
        ));
    }
    Ok(())
}

const SUPPORTED_SCHEMES: &[&str] = &["https", "http", "git", "ssh", "file"];

/// The transport a repo string names, lower-cased: the URL scheme, `ssh` for
/// git's scp-like `[user@]host:path` form, `None` for a local path.
fn repo_scheme(repo: &str) -> Option<String> {
    if let Some(i) = repo.find("://") {
        return Some(repo[..i].to_ascii_lowercase());
    }
    match (repo.find(':'), repo.find('/')) {
        (Some(colon), Some(slash)) if colon < slash => Some("ssh".into()),
        (Some(_), None) => Some("ssh".into()),
        _ => None,
    }
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

fn nanos_to_duration(ns: i64) -> Option<Duration> {
    u64::try_from(ns).ok().map(Duration::from_nanos)
}

fn fmt_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Parses a Go duration string (`time.ParseDuration`) into signed
/// nanoseconds: `[-+]?([0-9]*(\.[0-9]*)?unit)+` or a bare `0`.
pub fn parse_go_duration(s: &str) -> Result<i64, String> {
    let invalid = || format!("invalid duration {s:?}");
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    const LIMIT: u128 = 1 << 63;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let int_digits = &rest[..int_end];
        rest = &rest[int_end..];
        let mut frac_digits = "";
        if let Some(after_dot) = rest.strip_prefix('.') {
            let frac_end = after_dot
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(after_dot.len());
            frac_digits = &after_dot[..frac_end];
            rest = &after_dot[frac_end..];
            if int_digits.is_empty() && frac_digits.is_empty() {
                return Err(invalid());
            }
        } else if int_digits.is_empty() {
            return Err(invalid());
        }
        let unit_end = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let unit_ns: u128 = match unit {
            "" => {
                return Err(format!(
                    "invalid duration {s:?}: missing unit (ns, us, ms, s, m or h)"
                ))
            }
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            other => return Err(format!("invalid duration {s:?}: unknown unit {other:?}")),
        };
        let overflow = || format!("invalid duration {s:?}: too large");
        let int: u128 = if int_digits.is_empty() {
            0
        } else {
            int_digits.parse().map_err(|_| overflow())?
        };
        // Fractional digits beyond 18 cannot matter at nanosecond resolution.
        let frac_digits = &frac_digits[..frac_digits.len().min(18)];
        let frac_ns = if frac_digits.is_empty() {
            0
        } else {
            let frac: u128 = frac_digits.parse().map_err(|_| invalid())?;
            frac * unit_ns / 10u128.pow(frac_digits.len() as u32)
        };
        total = int
            .checked_mul(unit_ns)
            .and_then(|v| v.checked_add(frac_ns))
            .and_then(|v| v.checked_add(total))
            .filter(|v| *v <= LIMIT)
            .ok_or_else(overflow)?;
    }
    if neg {
        // -(2^63) is representable.
        Ok(i64::try_from(-(total as i128)).map_err(|_| invalid())?)
    } else {
        i64::try_from(total).map_err(|_| format!("invalid duration {s:?}: too large"))
    }
}

/// Go `strconv.ParseBool`.
pub fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("invalid boolean {s:?} (use true or false)")),
    }
}

/// Go `strconv.ParseInt(s, 0, 64)`: optional sign, then decimal, `0x` hex,
/// `0o` or leading-`0` octal, `0b` binary, with `_` allowed between digits.
pub fn parse_go_int(s: &str) -> Result<i64, String> {
    let invalid = || format!("invalid integer {s:?}");
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits, prefixed) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d, true)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d, true)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d, true)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..], true)
    } else {
        (10, lower.as_str(), false)
    };
    // Underscores: only between digits, or right after a base prefix.
    if digits.contains('_') {
        let bytes = digits.as_bytes();
        let bad_start = bytes.first() == Some(&b'_') && !prefixed;
        if bad_start || bytes.last() == Some(&b'_') || digits.contains("__") {
            return Err(invalid());
        }
    }
    let digits: String = digits.chars().filter(|c| *c != '_').collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(invalid());
    }
    let magnitude = u64::from_str_radix(&digits, radix).map_err(|e| {
        use std::num::IntErrorKind::PosOverflow;
        if *e.kind() == PosOverflow {
            format!("integer {s:?} is out of range")
        } else {
            invalid()
        }
    })?;
    let value = if neg {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    };
    value.ok_or_else(|| format!("integer {s:?} is out of range"))
}

/// A signal name (`HUP`, `SIGHUP`, any case) or number (`1`) to its number.
/// SIGKILL and SIGSTOP are refused as they cannot be caught.
pub fn parse_signal(s: &str) -> Result<i32, String> {
    let signal = match parse_go_int(s) {
        Ok(n) => i32::try_from(n)
            .ok()
            .and_then(|n| Signal::try_from(n).ok())
            .ok_or_else(|| format!("unknown signal number {n}"))?,
        Err(_) => {
            let upper = s.trim().to_ascii_uppercase();
            let name = if upper.starts_with("SIG") {
                upper
            } else {
                format!("SIG{upper}")
            };
            Signal::from_str(&name).map_err(|_| format!("unknown signal {s:?}"))?
        }
    };
    if matches!(signal, Signal::SIGKILL | Signal::SIGSTOP) {
        return Err(format!("{} cannot be caught", signal.as_str()));
    }
    Ok(signal as i32)
}

/// Parses `--http-bind`: `ip:port` (`127.0.0.1:8080`, `[::1]:8080`),
/// `:port` (all interfaces: `[::]`, which [`crate::http::bind`] opens dual
/// stack, IPv6 and IPv4, as Go does for `:port`) or `localhost:port` (`127.0.0.1`; no other host name is resolved). The port
/// is a decimal number, 0 meaning "any free port".
pub fn parse_http_bind(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let usage = "use host:port, :port or [ipv6]:port, e.g. :8080 or 127.0.0.1:8080";
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("{s:?} has no port; {usage}"));
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{s:?}: invalid port {port:?}; {usage}"));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{s:?}: port {port} is out of range (0 to 65535)"))?;
    let ip: IpAddr = if host.is_empty() {
        Ipv6Addr::UNSPECIFIED.into()
    } else if host.eq_ignore_ascii_case("localhost") {
        Ipv4Addr::LOCALHOST.into()
    } else if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        inner
            .parse::<Ipv6Addr>()
            .map_err(|_| format!("{s:?}: invalid IPv6 address {inner:?}"))?
            .into()
    } else if host.contains(':') {
        return Err(format!(
            "{s:?}: an IPv6 address needs brackets, e.g. [::1]:8080"
        ));
    } else if let Ok(ip) = host.parse::<IpAddr>() {
        ip
    } else {
        return Err(format!(
            "{s:?}: {host:?} is not an IP address (host names other than localhost \
             are not resolved)"
        ));
    };
    Ok(SocketAddr::new(ip, port))
}

/// Checks `--incoming-webhook-path`: starts with `/`; only letters, digits and
/// `-._~/`; no empty, `.` or `..` segment; not a path the HTTP endpoint serves
/// itself (`/`, `/livez`, `/readyz`, `/status`, `/metrics`, `/sync`,
/// `/debug` and everything under it; a trailing `/` does not make a difference).
pub fn validate_webhook_path(p: &str) -> Result<(), String> {
    if !p.starts_with('/') {
        return Err(format!("{p:?} must start with \"/\""));
    }
    if let Some(c) = p
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-._~/".contains(*c)))
    {
        return Err(format!(
            "{p:?} must contain only letters, digits and \"-._~/\", found {c:?}"
        ));
    }
    let trimmed = p.trim_end_matches('/');
    if trimmed
        .split('/')
        .skip(1)
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(format!(
            "{p:?} must not contain \"//\" or \".\" or \"..\" segments"
        ));
    }
    let reserved = RESERVED_HTTP_PATHS.contains(&trimmed)
        || trimmed.is_empty()
        || trimmed == "/debug"
        || trimmed.starts_with("/debug/");
    if reserved {
        return Err(format!(
            "{p:?} is served by git-sidecar itself; reserved: {}, /debug/",
            RESERVED_HTTP_PATHS.join(", ")
        ));
    }
    Ok(())
}

/// Parses a size in bytes: a decimal number, optionally followed by `KiB` or
/// `MiB` (any case, optionally after a space), or `B`.
pub fn parse_byte_size(s: &str) -> Result<u64, String> {
    let invalid =
        || format!("invalid size {s:?} (bytes, or a number with a KiB or MiB suffix, e.g. 5MiB)");
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits_end);
    if number.is_empty() {
        return Err(invalid());
    }
    let multiplier = match unit.trim_start().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => KIB,
        "mib" => MIB,
        _ => return Err(invalid()),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// Reads a secret (or token) file: trailing whitespace (newlines) is removed;
/// an empty, unreadable or oversized file is an error naming the path, never
/// the content.
fn read_secret_file(path: &str) -> Result<SecretBytes, String> {
    use std::io::Read;
    if path.is_empty() {
        return Err("the path must not be empty".to_string());
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_SECRET_FILE + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read {path:?}: {e}"))?;
    if bytes.len() as u64 > MAX_SECRET_FILE {
        return Err(format!("{path:?} is larger than 64KiB"));
    }
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    bytes.truncate(end);
    if bytes.is_empty() {
        return Err(format!("{path:?} is empty"));
    }
    Ok(SecretBytes::new(bytes))
}

/// Checks a `--ref`: `HEAD`, a full 40-hex SHA, or a valid git ref name.
pub fn validate_ref(r: &str) -> Result<(), String> {
    if r.is_empty() {
        return Err("must not be empty".into());
    }
    if r == "HEAD" {
        return Ok(());
    }
    if r.bytes().all(|b| b.is_ascii_hexdigit()) {
        match r.len() {
            40 => return Ok(()),
            7..=39 => {
                return Err(format!(
                    "{r:?} looks like an abbreviated SHA; abbreviated SHAs are not supported; \
                     use the full 40-hex SHA"
                ))
            }
            _ => {}
        }
    }
    if let Some(c) = r.chars().find(|c| c.is_control()) {
        return Err(format!("{r:?} must not contain control characters ({c:?})"));
    }
    if r.contains(' ') {
        return Err(format!("{r:?} must not contain spaces"));
    }
    if let Some(c) = r.chars().find(|c| "~^:?*[\\".contains(*c)) {
        return Err(format!("{r:?} must not contain {c:?}"));
    }
    if r.contains("..") {
        return Err(format!("{r:?} must not contain \"..\""));
    }
    if r.contains("@{") || r == "@" {
        return Err(format!("{r:?} is not a valid ref name"));
    }
    if r.starts_with('/') || r.ends_with('/') || r.contains("//") {
        return Err(format!(
            "{r:?} must not start or end with '/' or contain \"//\""
        ));
    }
    if r.ends_with('.') {
        return Err(format!("{r:?} must not end with '.'"));
    }
    if r.split('/')
        .any(|c| c.starts_with('.') || c.ends_with(".lock"))
    {
        return Err(format!(
            "{r:?}: ref components must not start with '.' or end with \".lock\""
        ));
    }
    Ok(())
}

/// The default `--link`: the last path element of the repo (trailing `/`
/// removed, a trailing `.git` kept). For URLs with a scheme only the path is
/// considered; for `user@host:path` the part after the last `/` or `:`.
pub fn default_link_name(repo: &str) -> Option<String> {
    let trimmed = repo.trim_end_matches('/');
    let name = match trimmed.find("://") {
        Some(i) => {
            let after_scheme = &trimmed[i + 3..];
            let path = &after_scheme[after_scheme.find('/')?..];
            path.rsplit('/').next()?
        }
        None => trimmed.rsplit(['/', ':']).next()?,
    };
    (!name.is_empty() && name != "." && name != "..").then(|| name.to_string())
}

/// Makes `p` absolute against the current directory and resolves symlinks in
/// the longest prefix that exists; the rest is normalised lexically.
/// A file read again at every sync, made absolute without resolving
/// symlinks: in a Kubernetes Secret volume the file is a symlink into a
/// timestamped directory that every update of the Secret replaces.
fn absolute_reread(p: &Path) -> std::io::Result<PathBuf> {
    std::path::absolute(p)
}

fn absolutize(p: &Path) -> std::io::Result<PathBuf> {
    let abs = std::path::absolute(p)?;
    for existing in abs.ancestors() {
        if let Ok(canonical) = existing.canonicalize() {
            let rest = abs.strip_prefix(existing).unwrap_or(Path::new(""));
            return Ok(clean_join(&canonical, rest));
        }
    }
    Ok(clean_join(Path::new("/"), &abs))
}

/// Why a touch or error file at `path` would damage the root's layout
/// (`None` when it would not). `path` and `link` are absolute.
fn state_file_clash(path: &Path, root: &Path, link: Option<&Path>) -> Option<String> {
    let roots = [root.to_path_buf(), resolve_lenient(root)];
    let links = link
        .into_iter()
        .flat_map(|l| [l.to_path_buf(), resolve_lenient_parent(l)]);
    if roots.iter().any(|r| r.starts_with(path)) {
        return Some("is --root or one of its parent directories".into());
    }
    for link in links {
        if path == link {
            return Some("is the published link (--link)".into());
        }
        if path.starts_with(&link) {
            return Some(
                "is inside the published link (--link), a tree replaced at every sync".into(),
            );
        }
    }
    for dir in [".git", ".worktrees"] {
        if roots.iter().any(|r| path.starts_with(r.join(dir))) {
            return Some(format!("is inside --root's {dir} directory"));
        }
    }
    None
}

/// `p` with every symlink on the way resolved, also those whose target does
/// not exist yet (unlike `canonicalize`, which needs the whole path): what
/// the path will reach when the sidecar writes it. Lexical `..` after a
/// resolved component applies to the target, as the kernel does.
fn resolve_lenient(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    let mut todo: Vec<std::ffi::OsString> = rev_components(p);
    let mut hops = 0;
    while let Some(comp) = todo.pop() {
        match comp.to_str() {
            Some(".") => continue,
            Some("..") => {
                out.pop();
                continue;
            }
            _ => {}
        }
        let next = out.join(&comp);
        let target = std::fs::symlink_metadata(&next)
            .ok()
            .filter(|m| m.file_type().is_symlink())
            .and_then(|_| std::fs::read_link(&next).ok());
        match target {
            // 40 as the kernel's limit: a loop ends up as written.
            Some(target) if hops < 40 => {
                hops += 1;
                if target.is_absolute() {
                    out = PathBuf::from("/");
                }
                todo.extend(rev_components(&target));
            }
            _ => out = next,
        }
    }
    out
}

/// `p`'s parent resolved, its last name kept: where a symlink at `p` lives.
fn resolve_lenient_parent(p: &Path) -> PathBuf {
    match (p.parent(), p.file_name()) {
        (Some(parent), Some(name)) => resolve_lenient(parent).join(name),
        _ => p.to_path_buf(),
    }
}

/// The components of `p` other than the root, last first (a stack).
fn rev_components(p: &Path) -> Vec<std::ffi::OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::CurDir => Some(".".into()),
            Component::ParentDir => Some("..".into()),
            Component::RootDir | Component::Prefix(_) => None,
        })
        .rev()
        .collect()
}

/// Joins `p` onto `base` (an absolute `p` replaces it) and removes `.` and
/// `..` lexically, like Go's `filepath.Join`.
fn clean_join(base: &Path, p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for comp in base.join(p).components() {
        match comp {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
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
            Err(ConfigError::Invalid(p)) => p.0,
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
    fn go_duration_forms() {
        let ok = |s: &str, d: Duration| {
            assert_eq!(
                parse_go_duration(s).map(nanos_to_duration),
                Ok(Some(d)),
                "{s}"
            )
        };
        ok("100ms", Duration::from_millis(100));
        ok("10s", Duration::from_secs(10));
        ok("1m30s", Duration::from_secs(90));
        ok("1h", Duration::from_secs(3600));
        ok("0s", Duration::ZERO);
        ok("0", Duration::ZERO);
        ok("1.5s", Duration::from_millis(1500));
        ok(".5s", Duration::from_millis(500));
        ok("1h2m3.25s", Duration::from_millis(3_723_250));
        ok("10us", Duration::from_micros(10));
        ok("10µs", Duration::from_micros(10));
        ok("7ns", Duration::from_nanos(7));
        ok("+3s", Duration::from_secs(3));
        assert_eq!(parse_go_duration("-1s"), Ok(-1_000_000_000));
        for bad in [
            "",
            "abc",
            "10",
            "1x",
            "s",
            ".s",
            "1.2.3s",
            "1 s",
            "-",
            "9999999999999h",
        ] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?} should be invalid");
        }
        assert_eq!(
            parse_go_duration("abc"),
            Err("invalid duration \"abc\"".to_string())
        );

        // Through the flags: every form accepted where the minimum allows it.
        for (form, d) in [
            ("100ms", Duration::from_millis(100)),
            ("10s", Duration::from_secs(10)),
            ("1m30s", Duration::from_secs(90)),
            ("1h", Duration::from_secs(3600)),
            ("1.5s", Duration::from_millis(1500)),
        ] {
            let arg = format!("--period={form}");
            let c = config(&with(&[&arg]), &[]);
            assert_eq!(c.period, d, "{form}");
        }
        for zero in ["0s", "0"] {
            let c = config(&base(), &[("GITSYNC_STALE_WORKTREE_TIMEOUT", zero)]);
            assert_eq!(c.stale_worktree_timeout, Duration::ZERO);
        }
    }

    #[test]
    fn duration_minimums_and_negatives() {
        let p = problems(
            &with(&["--period=5ms", "--sync-timeout=0", "--init-period=1ms"]),
            &[],
        );
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(
            p[0].starts_with("--period (GITSYNC_PERIOD): must be at least 10ms"),
            "{p:?}"
        );
        assert!(
            p[1].starts_with("--init-period (GITSYNC_INIT_PERIOD): must be at least"),
            "{p:?}"
        );
        assert!(
            p[2].starts_with("--sync-timeout (GITSYNC_SYNC_TIMEOUT): must be at least"),
            "{p:?}"
        );
        let p = problems(
            &with(&["--stale-worktree-timeout=-1s", "--period=-1s"]),
            &[],
        );
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p.iter().all(|l| l.contains("must not be negative")),
            "{p:?}"
        );
        let p = problems(&with(&["--period="]), &[]);
        assert_eq!(
            p,
            vec!["--period (GITSYNC_PERIOD): invalid duration \"\"".to_string()]
        );
    }

    #[test]
    fn bool_forms() {
        assert!(config(&with(&["--one-time"]), &[]).one_time);
        assert!(config(&with(&["--one-time=true"]), &[]).one_time);
        assert!(!config(&with(&["--one-time=false"]), &[]).one_time);
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert!(config(&base(), &[("GITSYNC_ONE_TIME", t)]).one_time, "{t}");
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert!(!config(&base(), &[("GITSYNC_ONE_TIME", f)]).one_time, "{f}");
        }
        // The flag beats the env.
        assert!(
            !config(
                &with(&["--one-time=false"]),
                &[("GITSYNC_ONE_TIME", "true")]
            )
            .one_time
        );
        let p = problems(&base(), &[("GITSYNC_GROUP_WRITE", "yes")]);
        assert_eq!(
            p,
            vec![
                "--group-write (GITSYNC_GROUP_WRITE): invalid boolean \"yes\" (use true or false)"
                    .to_string()
            ]
        );
        let p = problems(&with(&["--one-time="]), &[]);
        assert_eq!(p.len(), 1, "{p:?}");
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
    fn v3_wait_timeout_max_sync_failures_dest() {
        let c = config(
            &with(&[
                "--wait=0.5",
                "--period=1h",
                "--timeout=30",
                "--max-sync-failures=4",
                "--max-failures=1",
                "--dest=www",
            ]),
            &[],
        );
        assert_eq!(c.period, Duration::from_millis(500));
        assert_eq!(c.init_period, Duration::from_millis(500));
        assert_eq!(c.sync_timeout, Duration::from_secs(30));
        assert_eq!(c.max_failures, 4);
        assert_eq!(c.init_max_failures, 4);
        assert_eq!(c.link, PathBuf::from("/srv/git/www"));
        assert_eq!(c.warnings.len(), 4, "{:?}", c.warnings);

        let c = config(
            &base(),
            &[("GIT_SYNC_WAIT", "2.25"), ("GIT_SYNC_DEST", "/abs/link")],
        );
        assert_eq!(c.period, Duration::from_millis(2250));
        assert_eq!(c.link, PathBuf::from("/abs/link"));

        // Zero values do not override.
        let c = config(
            &with(&[
                "--wait=0",
                "--timeout=0",
                "--max-sync-failures=0",
                "--max-failures=2",
            ]),
            &[],
        );
        assert_eq!(c.period, Duration::from_secs(10));
        assert_eq!(c.sync_timeout, Duration::from_secs(120));
        assert_eq!(c.max_failures, 2);

        let p = problems(&with(&["--wait=0.001", "--wait=abc"]), &[]);
        assert_eq!(
            p,
            vec!["--wait (GIT_SYNC_WAIT): invalid number \"abc\" (seconds, e.g. 1.5)".to_string()]
        );
        let p = problems(&with(&["--wait=0.001"]), &[]);
        assert!(
            p[0].starts_with("--wait (GIT_SYNC_WAIT): must be at least 10ms"),
            "{p:?}"
        );
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
    fn unsupported_flags_are_refused_by_name() {
        let p = problems(&with(&["--filter=tree:0"]), &[]);
        let all = p.join("\n");
        let expected = "--filter (GITSYNC_FILTER): \"tree:0\" is not supported; supported filters: blob:none and blob:limit";
        assert!(all.contains(expected), "missing {expected:?} in\n{all}");
        assert_eq!(p.len(), 1, "{all}");
        assert!(!all.contains("s3cret"), "secret leaked: {all}");
    }

    #[test]
    fn submodules_default_to_recursive_as_in_git_sync() {
        assert_eq!(config(&with(&[]), &[]).submodules, SubmoduleMode::Recursive);
        for (raw, mode) in [
            ("recursive", SubmoduleMode::Recursive),
            ("shallow", SubmoduleMode::Shallow),
            ("off", SubmoduleMode::Off),
        ] {
            let flag = format!("--submodules={raw}");
            assert_eq!(config(&with(&[&flag]), &[]).submodules, mode);
            let env = config(&with(&[]), &[("GIT_SYNC_SUBMODULES", raw)]);
            assert_eq!(env.submodules, mode);
        }
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
        let w = c.warnings.join("\n");
        assert!(
            w.contains("--add-user (GITSYNC_ADD_USER) is ignored: the built-in SSH client needs no /etc/passwd entry"),
            "{w}"
        );
    }

    #[test]
    fn sync_on_signal_forms() {
        let hup = Signal::SIGHUP as i32;
        for form in ["HUP", "SIGHUP", "hup", "sighup", "1", "0x1"] {
            assert_eq!(parse_signal(form), Ok(hup), "{form}");
        }
        assert_eq!(parse_signal("usr2"), Ok(Signal::SIGUSR2 as i32));
        assert!(parse_signal("bogus").is_err());
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("999").is_err());
        assert!(parse_signal("KILL")
            .unwrap_err()
            .contains("cannot be caught"));
        assert!(parse_signal("SIGSTOP").is_err());
        assert!(parse_signal("9").is_err());
        let c = config(&with(&["--sync-on-signal=SIGHUP"]), &[]);
        assert_eq!(c.sync_on_signal, Some(hup));
        let p = problems(&with(&["--sync-on-signal=bogus"]), &[]);
        assert_eq!(
            p,
            vec!["--sync-on-signal (GITSYNC_SYNC_ON_SIGNAL): unknown signal \"bogus\"".to_string()]
        );
    }

    #[test]
    fn link_default_from_various_urls() {
        for (repo, link) in [
            ("https://github.com/org/repo.git", "repo.git"),
            ("https://github.com/org/repo", "repo"),
            ("https://github.com/org/repo/", "repo"),
            ("https://user:pw@host:8443/a/b/c", "c"),
            ("ssh://git@host:22/org/repo.git", "repo.git"),
            ("git@github.com:org/repo.git", "repo.git"),
            ("git@github.com:repo.git", "repo.git"),
            ("file:///tmp/repos/site", "site"),
            ("/tmp/repos/site/", "site"),
            ("site", "site"),
        ] {
            assert_eq!(default_link_name(repo).as_deref(), Some(link), "{repo}");
        }
        for repo in ["https://host", "https://host/", "file:///", "/", "x:.."] {
            assert_eq!(default_link_name(repo), None, "{repo}");
        }
        let p = problems(&["--repo=https://host", "--root=/r"], &[]);
        assert!(
            p[0].starts_with("--link (GITSYNC_LINK): cannot derive a default"),
            "{p:?}"
        );
        let c = config(&["--repo=https://host", "--root=/r", "--link=x"], &[]);
        assert_eq!(c.link, PathBuf::from("/r/x"));
    }

    #[test]
    fn link_must_not_clobber_root() {
        for bad in [
            ".",
            "/srv/git",
            "/srv",
            "..",
            "sub/..",
            ".git",
            ".worktrees/abc",
            ".git-sidecar.lock",
            "/",
        ] {
            let arg = format!("--link={bad}");
            let p = problems(&with(&[&arg]), &[]);
            assert_eq!(p.len(), 1, "{bad}: {p:?}");
            assert!(p[0].starts_with("--link (GITSYNC_LINK): "), "{p:?}");
        }
        let c = config(&with(&["--link=../published/site"]), &[]);
        assert_eq!(c.link, PathBuf::from("/srv/published/site"));
    }

    #[test]
    fn touch_and_error_files_must_not_clobber_the_layout() {
        // base(): root /srv/git, link /srv/git/site.git.
        for bad in [
            "site.git",
            "/srv/git/site.git",
            "site.git/error.json",
            "./site.git/sub/../x",
            ".git/config",
            ".git",
            "/srv/git/.worktrees/abc/x",
            ".worktrees",
            ".",
            "/srv",
            "..",
            "/",
        ] {
            for id in ["error-file", "touch-file"] {
                let arg = format!("--{id}={bad}");
                let p = problems(&with(&[&arg]), &[]);
                assert_eq!(p.len(), 1, "{arg}: {p:?}");
                assert!(p[0].starts_with(&format!("--{id} (GITSYNC_")), "{p:?}");
                assert!(p[0].contains("choose a path of its own"), "{p:?}");
            }
        }
        let p = problems(&with(&["--error-file=site.git"]), &[]);
        assert!(
            p[0].contains("\"site.git\" is the published link (--link)"),
            "{p:?}"
        );
        let p = problems(&with(&["--error-file=.git/config"]), &[]);
        assert!(p[0].contains("inside --root's .git"), "{p:?}");
        // An absolute link elsewhere is guarded too; other paths are fine.
        let p = problems(
            &with(&["--link=/pub/site", "--touch-file=/pub/site/t"]),
            &[],
        );
        assert!(p[0].contains("inside the published link"), "{p:?}");
        let c = config(
            &with(&[
                "--error-file=/var/err.json",
                "--touch-file=site.git.touched",
            ]),
            &[],
        );
        assert_eq!(c.error_file, Some(PathBuf::from("/var/err.json")));
        assert_eq!(
            c.touch_file,
            Some(PathBuf::from("/srv/git/site.git.touched"))
        );
    }

    #[test]
    fn touch_and_error_files_are_checked_with_symlinks_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        let root = base.join("root");
        std::fs::create_dir_all(root.join(".git")).unwrap();
        // An innocent-looking absolute path that leads into .git, and one
        // through the link whose target does not exist yet.
        std::os::unix::fs::symlink(root.join(".git"), base.join("state")).unwrap();
        std::os::unix::fs::symlink(root.join("site"), base.join("pub")).unwrap();
        let root_arg = format!("--root={}", root.display());
        let into_git = format!("--error-file={}", base.join("state/config").display());
        let into_link = format!("--touch-file={}", base.join("pub/x").display());
        let args = ["--repo=https://h/site", &root_arg, &into_git, &into_link];
        let p = problems(&args, &[]);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("inside the published link"), "{p:?}");
        assert!(p[1].contains("inside --root's .git"), "{p:?}");
        // Both are reported together with an unrelated mistake.
        let p = problems(&[&args[..], &["--period=abc"]].concat(), &[]);
        assert_eq!(p.len(), 3, "{p:?}");
        // Resolved paths that land elsewhere are accepted.
        let fine = format!("--error-file={}", base.join("state2/x").display());
        config(&["--repo=https://h/site", &root_arg, &fine], &[]);
    }

    #[test]
    fn a_short_period_is_not_also_blamed_on_init_period() {
        let p = problems(&with(&["--period=5ms"]), &[]);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("--period (GITSYNC_PERIOD): must be at least 10ms"));
        let p = problems(&with(&["--period=5ms", "--init-period=5ms"]), &[]);
        assert_eq!(p.len(), 2, "set by the user: reported: {p:?}");
    }

    #[test]
    fn root_is_made_absolute_and_files_join_onto_it() {
        let cwd = std::env::current_dir().unwrap().canonicalize().unwrap();
        let c = config(
            &[
                "--repo=https://h/r",
                "--root=some/dir",
                "--touch-file=t",
                "--error-file=../e",
            ],
            &[],
        );
        assert_eq!(c.root, cwd.join("some/dir"));
        assert_eq!(c.link, cwd.join("some/dir/r"));
        assert_eq!(c.touch_file, Some(cwd.join("some/dir/t")));
        assert_eq!(c.error_file, Some(cwd.join("some/e")));
    }

    #[test]
    fn existing_root_symlinks_are_resolved() {
        let dir = std::env::temp_dir().join(format!("clicfg-{}", std::process::id()));
        let real = dir.join("real");
        std::fs::create_dir_all(&real).unwrap();
        let link = dir.join("alias");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let root_arg = format!("--root={}", link.join("sub").display());
        let c = config(&["--repo=https://h/r", &root_arg], &[]);
        assert_eq!(c.root, real.canonicalize().unwrap().join("sub"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ref_validation() {
        let sha = "0123456789abcdef0123456789ABCDEF01234567";
        for good in [
            "HEAD",
            "main",
            "release/v1.2",
            "refs/heads/main",
            "v1.0.0",
            "beef",
            sha,
        ] {
            assert_eq!(validate_ref(good), Ok(()), "{good}");
        }
        assert!(validate_ref("deadbeef")
            .unwrap_err()
            .contains("abbreviated SHAs are not supported"));
        assert!(validate_ref(&sha[..39])
            .unwrap_err()
            .contains("use the full 40-hex SHA"));
        for bad in [
            "", "a b", "a..b", "a\tb", "a~1", "a^", "a:b", "-", "/a", "a/", "a//b", "a.", ".a",
            "a/.b", "a.lock", "@", "a@{1}", "a*", "a[", "a\\b",
        ] {
            if bad == "-" {
                continue; // a valid (if odd) ref name
            }
            assert!(validate_ref(bad).is_err(), "{bad:?} should be invalid");
        }
        let c = config(&with(&["--ref", sha]), &[]);
        assert_eq!(c.git_ref, sha);
        let p = problems(&with(&["--ref=abc1234"]), &[]);
        assert!(
            p[0].starts_with("--ref (GITSYNC_REF): \"abc1234\" looks like an abbreviated SHA"),
            "{p:?}"
        );
        let p = problems(&with(&["--ref="]), &[]);
        assert_eq!(
            p,
            vec!["--ref (GITSYNC_REF): must not be empty".to_string()]
        );
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
    fn go_int_forms() {
        assert_eq!(parse_go_int("42"), Ok(42));
        assert_eq!(parse_go_int("-7"), Ok(-7));
        assert_eq!(parse_go_int("+7"), Ok(7));
        assert_eq!(parse_go_int("0x1F"), Ok(31));
        assert_eq!(parse_go_int("010"), Ok(8));
        assert_eq!(parse_go_int("0o17"), Ok(15));
        assert_eq!(parse_go_int("0b101"), Ok(5));
        assert_eq!(parse_go_int("1_000"), Ok(1000));
        assert_eq!(parse_go_int("0"), Ok(0));
        assert_eq!(parse_go_int("-9223372036854775808"), Ok(i64::MIN));
        for bad in [
            "",
            "-",
            "x",
            "1.5",
            "08",
            "_1",
            "1_",
            "1__0",
            "0x",
            "--1",
            "+-1",
            "9223372036854775808",
        ] {
            assert!(parse_go_int(bad).is_err(), "{bad:?} should be invalid");
        }
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
            LoadError::Invalid(p) => assert_eq!(
                p.to_string(),
                "--repo (GITSYNC_REPO): must be specified\n--root (GITSYNC_ROOT): must be specified"
            ),
            LoadError::Clap(e) => panic!("{e}"),
        }
    }

    fn http_of(c: &Config) -> &HttpConfig {
        c.http.as_ref().expect("--http-bind set, so http is Some")
    }

    #[test]
    fn http_bind_forms() {
        let addr = |s: &str| parse_http_bind(s).map(|a| a.to_string());
        assert_eq!(addr(":8080"), Ok("[::]:8080".into()));
        assert_eq!(addr("127.0.0.1:0"), Ok("127.0.0.1:0".into()));
        assert_eq!(addr("0.0.0.0:80"), Ok("0.0.0.0:80".into()));
        assert_eq!(addr("[::1]:9000"), Ok("[::1]:9000".into()));
        assert_eq!(addr("[::]:9000"), Ok("[::]:9000".into()));
        assert_eq!(addr("localhost:8080"), Ok("127.0.0.1:8080".into()));
        assert_eq!(addr("LOCALHOST:1"), Ok("127.0.0.1:1".into()));
        for bad in [
            "",
            "8080",
            ":",
            ":abc",
            ":+80",
            ":65536",
            "::1:80",
            "[::1]",
            "[nope]:80",
            "1.2.3.4:",
            "example.com:80",
            "1.2.3.256:80",
        ] {
            assert!(parse_http_bind(bad).is_err(), "{bad:?} should be invalid");
        }

        // Through the flag, with every default.
        let c = config(&with(&["--http-bind=:8080"]), &[]);
        let h = http_of(&c);
        assert_eq!(h.bind, "[::]:8080".parse().unwrap());
        assert!(!h.metrics);
        assert!(!h.pprof);
        assert_eq!(
            h.readiness,
            ReadinessConfig {
                max_staleness: Duration::from_secs(5 * 10 + 120),
                max_failures: 3,
            }
        );
        assert_eq!(h.webhook.path, "/webhook");
        assert!(h.webhook.secrets.is_empty());
        assert!(!h.webhook.allow_unsigned);
        assert_eq!(h.webhook.repo_filter, None);
        assert_eq!(h.webhook.max_body_bytes, 5_242_880);
        assert_eq!(h.webhook.rate_limit_per_minute, 60);
        assert!(h.trigger_tokens.is_empty());
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);

        // No --http-bind (or an empty one): no HTTP endpoint.
        assert!(config(&base(), &[]).http.is_none());
        assert!(config(&with(&["--http-bind="]), &[]).http.is_none());

        // The legacy variable, and errors naming where the value came from.
        let c = config(&base(), &[("GIT_SYNC_HTTP_BIND", "[::1]:0")]);
        assert_eq!(http_of(&c).bind, "[::1]:0".parse().unwrap());
        let p = problems(&with(&["--http-bind=8080"]), &[]);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("--http-bind (GITSYNC_HTTP_BIND): \"8080\" has no port"),
            "{p:?}"
        );
        let p = problems(&base(), &[("GITSYNC_HTTP_BIND", "web:80")]);
        assert!(
            p[0].starts_with("--http-bind (GITSYNC_HTTP_BIND): \"web:80\""),
            "{p:?}"
        );
        assert!(p[0].contains("not resolved"), "{p:?}");
    }

    #[test]
    fn connection_limits_default_parse_and_check() {
        let c = config(&with(&["--http-bind=127.0.0.1:0"]), &[]);
        assert_eq!(http_of(&c).connections, ConnectionLimits::default());
        assert_eq!(
            ConnectionLimits::default(),
            ConnectionLimits {
                header_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(90),
                max_connections: 1024,
            }
        );
        let c = config(
            &with(&[
                "--http-bind=127.0.0.1:0",
                "--http-header-timeout=2s",
                "--http-max-connections=50",
            ]),
            &[("GITSYNC_HTTP_IDLE_TIMEOUT", "1m30s")],
        );
        assert_eq!(
            http_of(&c).connections,
            ConnectionLimits {
                header_timeout: Duration::from_secs(2),
                idle_timeout: Duration::from_secs(90),
                max_connections: 50,
            }
        );
        let p = problems(
            &with(&[
                "--http-bind=:1",
                "--http-header-timeout=0s",
                "--http-idle-timeout=-1s",
                "--http-max-connections=0",
            ]),
            &[],
        );
        assert_eq!(
            p,
            vec![
                "--http-header-timeout (GITSYNC_HTTP_HEADER_TIMEOUT): must be more than 0"
                    .to_string(),
                "--http-idle-timeout (GITSYNC_HTTP_IDLE_TIMEOUT): must not be negative, got \"-1s\""
                    .to_string(),
                "--http-max-connections (GITSYNC_HTTP_MAX_CONNECTIONS): must be 1 or more, got 0"
                    .to_string(),
            ]
        );
        let p = problems(&with(&["--http-max-connections=10"]), &[]);
        assert_eq!(
            p,
            vec![
                "--http-max-connections (GITSYNC_HTTP_MAX_CONNECTIONS): requires --http-bind"
                    .to_string()
            ]
        );
    }

    #[test]
    fn metrics_and_pprof_require_http_bind() {
        let p = problems(&with(&["--http-metrics", "--http-pprof=true"]), &[]);
        assert_eq!(
            p,
            vec![
                "--http-metrics (GITSYNC_HTTP_METRICS): requires --http-bind".to_string(),
                "--http-pprof (GITSYNC_HTTP_PPROF): requires --http-bind".to_string(),
            ]
        );
        let p = problems(&base(), &[("GIT_SYNC_HTTP_METRICS", "true")]);
        assert_eq!(
            p,
            vec!["--http-metrics (GIT_SYNC_HTTP_METRICS): requires --http-bind".to_string()]
        );
        // false is what happens anyway.
        config(&with(&["--http-metrics=false", "--http-pprof=false"]), &[]);
        let c = config(
            &with(&["--http-bind=127.0.0.1:0", "--http-metrics", "--http-pprof"]),
            &[],
        );
        assert!(http_of(&c).metrics);
        assert!(http_of(&c).pprof);
        let p = problems(&with(&["--http-bind=:1", "--http-metrics=yes"]), &[]);
        assert!(p[0].starts_with("--http-metrics (GITSYNC_HTTP_METRICS): invalid boolean"));
    }

    #[test]
    fn webhook_secret_files_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, content: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, content).unwrap();
            path.display().to_string()
        };
        let a = write("a", "s3cret-a\n\n");
        let b = write("b", "s3cret-b \r\n");
        let bind = "--http-bind=:8080";

        // One file: read and trimmed.
        let arg = format!("--incoming-webhook-secret-file={a}");
        let c = config(&with(&[bind, &arg]), &[]);
        let secrets = &http_of(&c).webhook.secrets;
        assert_eq!(secrets.len(), 1);
        assert_eq!(secrets[0].expose(), b"s3cret-a");

        // Several files (repeated flag), then the environment-only secret.
        let arg_b = format!("--incoming-webhook-secret-file={b}");
        let c = config(
            &with(&[bind, &arg, &arg_b]),
            &[("GITSYNC_INCOMING_WEBHOOK_SECRET", "s3cret-env\n")],
        );
        let got: Vec<&[u8]> = http_of(&c)
            .webhook
            .secrets
            .iter()
            .map(SecretBytes::expose)
            .collect();
        assert_eq!(
            got,
            vec![&b"s3cret-a"[..], &b"s3cret-b"[..], &b"s3cret-env"[..]]
        );

        // The environment takes a comma-separated list of files.
        let list = format!("{a},{b}");
        let c = config(
            &with(&[bind]),
            &[("GITSYNC_INCOMING_WEBHOOK_SECRET_FILE", list.as_str())],
        );
        assert_eq!(http_of(&c).webhook.secrets.len(), 2);

        // The env secret alone.
        let c = config(
            &with(&[bind]),
            &[("GITSYNC_INCOMING_WEBHOOK_SECRET", "alone")],
        );
        assert_eq!(http_of(&c).webhook.secrets[0].expose(), b"alone");

        // Never in Debug output.
        let dbg = format!("{c:?} {:?}", config(&with(&[bind, &arg, &arg_b]), &[]));
        assert!(!dbg.contains("alone"), "{dbg}");
        assert!(!dbg.contains("s3cret"), "{dbg}");
        assert!(dbg.contains("REDACTED"), "{dbg}");

        // Empty and missing files: errors name the flag and the path.
        let empty = write("empty", " \n\n");
        let missing = dir.path().join("missing").display().to_string();
        let p = problems(
            &with(&[
                bind,
                &format!("--incoming-webhook-secret-file={empty}"),
                &format!("--incoming-webhook-secret-file={missing}"),
                &arg,
            ]),
            &[("GITSYNC_INCOMING_WEBHOOK_SECRET", "  ")],
        );
        assert_eq!(p.len(), 3, "{p:?}");
        assert_eq!(
            p[0],
            format!(
                "--incoming-webhook-secret-file (GITSYNC_INCOMING_WEBHOOK_SECRET_FILE): \
                 {empty:?} is empty"
            )
        );
        assert!(
            p[1].starts_with(&format!(
                "--incoming-webhook-secret-file (GITSYNC_INCOMING_WEBHOOK_SECRET_FILE): \
                 cannot read {missing:?}"
            )),
            "{p:?}"
        );
        assert_eq!(
            p[2],
            "GITSYNC_INCOMING_WEBHOOK_SECRET (environment only): must not be blank"
        );
        assert!(!p.join("\n").contains("s3cret"), "{p:?}");

        // A directory is not a secret file.
        let dir_arg = format!("--sync-trigger-token-file={}", dir.path().display());
        let p = problems(&with(&[bind, &dir_arg]), &[]);
        assert!(
            p[0].starts_with(
                "--sync-trigger-token-file (GITSYNC_SYNC_TRIGGER_TOKEN_FILE): cannot read"
            ),
            "{p:?}"
        );
    }

    #[test]
    fn sync_trigger_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let t1 = dir.path().join("t1");
        std::fs::write(&t1, "tok-1\n").unwrap();
        let arg = format!("--sync-trigger-token-file={}", t1.display());
        let c = config(
            &with(&["--http-bind=:8080", &arg]),
            &[("GITSYNC_SYNC_TRIGGER_TOKEN", "tok-env")],
        );
        let got: Vec<&[u8]> = http_of(&c)
            .trigger_tokens
            .iter()
            .map(SecretBytes::expose)
            .collect();
        assert_eq!(got, vec![&b"tok-1"[..], &b"tok-env"[..]]);
        assert!(http_of(&c).webhook.secrets.is_empty());
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("tok-"), "{dbg}");
    }

    #[test]
    fn readiness_flags() {
        // Default: 5 × period + sync timeout, after --period/--sync-timeout (and v3 forms).
        let c = config(
            &with(&["--http-bind=:1", "--period=2s", "--sync-timeout=30s"]),
            &[],
        );
        assert_eq!(http_of(&c).readiness.max_staleness, Duration::from_secs(40));
        let c = config(&with(&["--http-bind=:1", "--wait=1", "--timeout=5"]), &[]);
        assert_eq!(http_of(&c).readiness.max_staleness, Duration::from_secs(10));

        let c = config(
            &with(&[
                "--http-bind=:1",
                "--readiness-max-staleness=10m",
                "--readiness-max-failures=0",
            ]),
            &[],
        );
        assert_eq!(
            http_of(&c).readiness,
            ReadinessConfig {
                max_staleness: Duration::from_secs(600),
                max_failures: 0,
            }
        );
        let c = config(
            &with(&["--http-bind=:1"]),
            &[
                ("GITSYNC_READINESS_MAX_STALENESS", "90s"),
                ("GITSYNC_READINESS_MAX_FAILURES", "7"),
            ],
        );
        assert_eq!(
            http_of(&c).readiness,
            ReadinessConfig {
                max_staleness: Duration::from_secs(90),
                max_failures: 7,
            }
        );

        // Not longer than the period: accepted, with a warning.
        let c = config(
            &with(&["--http-bind=:1", "--readiness-max-staleness=5s"]),
            &[],
        );
        assert!(
            c.warnings[0].starts_with(
                "--readiness-max-staleness (GITSYNC_READINESS_MAX_STALENESS): 5s is not longer"
            ),
            "{:?}",
            c.warnings
        );

        let p = problems(
            &with(&[
                "--http-bind=:1",
                "--readiness-max-staleness=0",
                "--readiness-max-failures=-1",
            ]),
            &[],
        );
        assert_eq!(
            p,
            vec![
                "--readiness-max-staleness (GITSYNC_READINESS_MAX_STALENESS): must be > 0"
                    .to_string(),
                "--readiness-max-failures (GITSYNC_READINESS_MAX_FAILURES): must be 0 or more \
                 (0 = failures never make /readyz unready), got -1"
                    .to_string(),
            ]
        );
        let p = problems(
            &with(&[
                "--http-bind=:1",
                "--readiness-max-staleness=soon",
                "--readiness-max-failures=4294967296",
            ]),
            &[],
        );
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("invalid duration \"soon\""), "{p:?}");
        assert!(p[1].contains("too large"), "{p:?}");
    }

    #[test]
    fn webhook_path_validation() {
        for good in [
            "/webhook",
            "/hooks/github",
            "/webhook/",
            "/a-b_c.d~e",
            "/debugger",
            "/sync2",
        ] {
            assert_eq!(validate_webhook_path(good), Ok(()), "{good}");
        }
        for bad in [
            "webhook",
            "",
            "/",
            "/livez",
            "/readyz",
            "/readyz/",
            "/status",
            "/metrics",
            "/sync",
            "/debug",
            "/debug/",
            "/debug/pprof",
            "/debug/x",
            "//",
            "/a//b",
            "/a/./b",
            "/a/..",
            "/{x}",
            "/a?b",
            "/a b",
            "/:id",
            "/*rest",
            "/%41",
        ] {
            assert!(
                validate_webhook_path(bad).is_err(),
                "{bad:?} should be invalid"
            );
        }
        let c = config(
            &with(&["--http-bind=:1", "--incoming-webhook-path=/hooks/push"]),
            &[("GITSYNC_INCOMING_WEBHOOK_SECRET", "x")],
        );
        assert_eq!(http_of(&c).webhook.path, "/hooks/push");
        let p = problems(
            &with(&["--http-bind=:1"]),
            &[("GITSYNC_INCOMING_WEBHOOK_PATH", "/metrics")],
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with(
                "--incoming-webhook-path (GITSYNC_INCOMING_WEBHOOK_PATH): \"/metrics\" is served"
            ),
            "{p:?}"
        );
        let p = problems(
            &with(&["--http-bind=:1", "--incoming-webhook-path=hook"]),
            &[],
        );
        assert!(p[0].contains("must start with \"/\""), "{p:?}");
    }

    #[test]
    fn webhook_flags_require_http_bind() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s");
        std::fs::write(&f, "x").unwrap();
        let secret_file = format!("--incoming-webhook-secret-file={}", f.display());
        let token_file = format!("--sync-trigger-token-file={}", f.display());
        let p = problems(
            &with(&[
                "--readiness-max-staleness=1m",
                "--readiness-max-failures=1",
                "--incoming-webhook-path=/hook",
                &secret_file,
                "--incoming-webhook-allow-unsigned",
                "--incoming-webhook-repo=org/site",
                "--incoming-webhook-max-body=1MiB",
                "--incoming-webhook-rate-limit=10",
                &token_file,
            ]),
            &[
                ("GITSYNC_INCOMING_WEBHOOK_SECRET", "x"),
                ("GITSYNC_SYNC_TRIGGER_TOKEN", "y"),
            ],
        );
        assert_eq!(
            p,
            [
                "--readiness-max-staleness (GITSYNC_READINESS_MAX_STALENESS)",
                "--readiness-max-failures (GITSYNC_READINESS_MAX_FAILURES)",
                "--incoming-webhook-path (GITSYNC_INCOMING_WEBHOOK_PATH)",
                "--incoming-webhook-secret-file (GITSYNC_INCOMING_WEBHOOK_SECRET_FILE)",
                "GITSYNC_INCOMING_WEBHOOK_SECRET (environment only)",
                "--incoming-webhook-allow-unsigned (GITSYNC_INCOMING_WEBHOOK_ALLOW_UNSIGNED)",
                "--incoming-webhook-repo (GITSYNC_INCOMING_WEBHOOK_REPO)",
                "--incoming-webhook-max-body (GITSYNC_INCOMING_WEBHOOK_MAX_BODY)",
                "--incoming-webhook-rate-limit (GITSYNC_INCOMING_WEBHOOK_RATE_LIMIT)",
                "--sync-trigger-token-file (GITSYNC_SYNC_TRIGGER_TOKEN_FILE)",
                "GITSYNC_SYNC_TRIGGER_TOKEN (environment only)",
            ]
            .map(|label| format!("{label}: requires --http-bind"))
        );
        // Values are still checked without --http-bind.
        let p = problems(&with(&["--incoming-webhook-max-body=huge"]), &[]);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("invalid size"), "{p:?}");
        assert!(p[1].ends_with("requires --http-bind"), "{p:?}");
        // The default false is harmless.
        config(&with(&["--incoming-webhook-allow-unsigned=false"]), &[]);
    }

    #[test]
    fn placeholder_secrets_are_warned_about_by_source_never_by_value() {
        let dir = tempfile::tempdir().unwrap();
        let shipped = dir.path().join("secret");
        std::fs::write(&shipped, "CHANGE-ME\n").unwrap();
        let good = dir.path().join("good");
        std::fs::write(&good, "3f9c1a7be04d52e8a6c0f1d29b7e4a5c\n").unwrap();
        let file_arg = |p: &Path| format!("--incoming-webhook-secret-file={}", p.display());
        let token_arg = format!("--sync-trigger-token-file={}", shipped.display());
        let c = config(
            &with(&["--http-bind=:1", &file_arg(&shipped), &token_arg]),
            &[("GITSYNC_INCOMING_WEBHOOK_SECRET", "changeme")],
        );
        let all = c.warnings.join("\n");
        let flagged = |label: &str| {
            c.warnings
                .iter()
                .any(|w| w.starts_with(label) && w.contains("looks like a placeholder"))
        };
        assert!(flagged("--incoming-webhook-secret-file"), "{all}");
        assert!(
            all.contains(&format!("{:?}", shipped.display().to_string())),
            "{all}"
        );
        assert!(flagged("--sync-trigger-token-file"), "{all}");
        assert!(flagged("GITSYNC_INCOMING_WEBHOOK_SECRET"), "{all}");
        assert!(
            !all.contains("CHANGE-ME") && !all.contains("changeme"),
            "{all}"
        );
        // A random value: no warning.
        let c = config(&with(&["--http-bind=:1", &file_arg(&good)]), &[]);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn webhook_options() {
        let c = config(
            &with(&[
                "--http-bind=:1",
                "--incoming-webhook-allow-unsigned",
                "--incoming-webhook-repo=org/site",
                "--incoming-webhook-max-body=64KiB",
                "--incoming-webhook-rate-limit=5",
            ]),
            &[],
        );
        let w = &http_of(&c).webhook;
        assert!(w.allow_unsigned);
        assert_eq!(w.repo_filter.as_deref(), Some("org/site"));
        assert_eq!(w.max_body_bytes, 65_536);
        assert_eq!(w.rate_limit_per_minute, 5);
        assert!(
            c.warnings[0].contains("accepted without any authentication"),
            "{:?}",
            c.warnings
        );
        let c = config(
            &with(&["--http-bind=:1", "--incoming-webhook-allow-unsigned"]),
            &[("GITSYNC_INCOMING_WEBHOOK_SECRET", "x")],
        );
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("signed ones are still checked")),
            "{:?}",
            c.warnings
        );
        let c = config(
            &with(&["--http-bind=:1", "--incoming-webhook-repo=o/r"]),
            &[],
        );
        assert!(
            c.warnings[0].starts_with("incoming webhooks are disabled"),
            "{:?}",
            c.warnings
        );
        let p = problems(
            &with(&["--http-bind=:1", "--incoming-webhook-rate-limit=0"]),
            &[("GITSYNC_INCOMING_WEBHOOK_MAX_BODY", "65MiB")],
        );
        assert_eq!(
            p,
            vec![
                "--incoming-webhook-max-body (GITSYNC_INCOMING_WEBHOOK_MAX_BODY): must be between \
                 1KiB and 64MiB, got \"65MiB\""
                    .to_string(),
                "--incoming-webhook-rate-limit (GITSYNC_INCOMING_WEBHOOK_RATE_LIMIT): must be \
                 between 1 and 4294967295, got 0"
                    .to_string(),
            ]
        );
    }

    #[test]
    fn max_body_suffixes() {
        for (form, n) in [
            ("1024", 1024),
            ("5242880", 5 * MIB),
            ("2048B", 2048),
            ("1KiB", KIB),
            ("16kib", 16 * KIB),
            ("5MiB", 5 * MIB),
            ("64 MiB", 64 * MIB),
            (" 3MIB ", 3 * MIB),
        ] {
            assert_eq!(parse_byte_size(form), Ok(n), "{form}");
        }
        for bad in [
            "", "MiB", "-1", "+5", "1.5MiB", "5MB", "5M", "5k", "5 GiB", "0x10", "abc",
        ] {
            assert!(parse_byte_size(bad).is_err(), "{bad:?} should be invalid");
        }
        assert!(parse_byte_size("99999999999999999999MiB")
            .unwrap_err()
            .contains("too large"));
        for (form, n) in [("1KiB", 1024), ("5MiB", 5_242_880), ("64MiB", 67_108_864)] {
            let arg = format!("--incoming-webhook-max-body={form}");
            let c = config(&with(&["--http-bind=:1", &arg]), &[]);
            assert_eq!(http_of(&c).webhook.max_body_bytes, n, "{form}");
        }
        for out_of_range in ["1023", "0", "64MiB1", "67108865"] {
            let arg = format!("--incoming-webhook-max-body={out_of_range}");
            let p = problems(&with(&["--http-bind=:1", &arg]), &[]);
            assert_eq!(p.len(), 1, "{p:?}");
            assert!(
                p[0].starts_with(
                    "--incoming-webhook-max-body (GITSYNC_INCOMING_WEBHOOK_MAX_BODY): "
                ),
                "{p:?}"
            );
        }
    }

    fn exec_of(c: &Config) -> &ExecHookConfig {
        c.hooks.exec.as_ref().expect("--exechook-command set")
    }

    fn webhook_of(c: &Config) -> &OutgoingWebhookConfig {
        c.hooks.webhook.as_ref().expect("--webhook-url set")
    }

    #[test]
    fn hook_defaults() {
        let c = config(
            &with(&[
                "--exechook-command=/hooks/post",
                "--pre-publish-exechook-command=check",
                "--webhook-url=https://example.com/notify",
                "--reload-process=nginx",
            ]),
            &[],
        );
        let e = exec_of(&c);
        assert_eq!(e.command, PathBuf::from("/hooks/post"));
        assert!(e.args.is_empty());
        assert_eq!(e.timeout, Duration::from_secs(30));
        assert_eq!(e.backoff, Duration::from_secs(3));
        let p = c.hooks.pre_publish.as_ref().expect("pre-publish set");
        assert_eq!(p.command, PathBuf::from("check"));
        assert!(p.args.is_empty());
        assert_eq!(p.timeout, Duration::from_secs(30));
        assert_eq!(p.backoff, Duration::from_secs(3));
        let w = webhook_of(&c);
        assert_eq!(w.url.expose(), "https://example.com/notify");
        assert_eq!(w.method, "POST");
        assert_eq!(w.success_status, Some(200));
        assert_eq!(w.timeout, Duration::from_secs(1));
        assert_eq!(w.backoff, Duration::from_secs(3));
        assert!(w.headers.is_empty());
        assert!(!w.json_body);
        assert!(w.signing_secret.is_none());
        let r = c.hooks.reload.as_ref().expect("reload set");
        assert_eq!(r.process, "nginx");
        assert_eq!(r.signal, Signal::SIGHUP as i32);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);

        // An empty value means "no hook", as in git-sync.
        let c = config(&with(&["--exechook-command=", "--webhook-url="]), &[]);
        assert!(c.hooks.exec.is_none() && c.hooks.webhook.is_none());
    }

    #[test]
    fn hook_flags_set_and_from_env() {
        let c = config(
            &with(&[
                "--exechook-command=/bin/sh",
                "--exechook-arg=-c",
                "--exechook-arg",
                "-x",
                "--exechook-arg=echo $GITSYNC_HASH",
                "--exechook-timeout=1m",
                "--exechook-backoff=1s",
                "--webhook-method=put",
                "--webhook-success-status=204",
                "--webhook-timeout=5s",
                "--webhook-backoff=20s",
                "--webhook-json-body",
                "--reload-signal=USR2",
            ]),
            &[
                ("GITSYNC_WEBHOOK_URL", "http://svc:8080/hook?x=1"),
                ("GITSYNC_PRE_PUBLISH_EXECHOOK_COMMAND", "/bin/check"),
                ("GITSYNC_PRE_PUBLISH_EXECHOOK_ARG", r#"["--strict", "a b"]"#),
                ("GITSYNC_PRE_PUBLISH_EXECHOOK_TIMEOUT", "2s"),
                ("GITSYNC_PRE_PUBLISH_EXECHOOK_BACKOFF", "10m"),
                ("GITSYNC_RELOAD_PROCESS", "httpd"),
            ],
        );
        let e = exec_of(&c);
        assert_eq!(e.command, PathBuf::from("/bin/sh"));
        assert_eq!(e.args, ["-c", "-x", "echo $GITSYNC_HASH"]);
        assert_eq!(e.timeout, Duration::from_secs(60));
        assert_eq!(e.backoff, Duration::from_secs(1));
        let p = c.hooks.pre_publish.as_ref().unwrap();
        assert_eq!(p.command, PathBuf::from("/bin/check"));
        assert_eq!(p.args, ["--strict", "a b"]);
        assert_eq!(p.timeout, Duration::from_secs(2));
        assert_eq!(p.backoff, Duration::from_secs(600));
        let w = webhook_of(&c);
        assert_eq!(w.url.expose(), "http://svc:8080/hook?x=1");
        assert_eq!(w.method, "PUT");
        assert_eq!(w.success_status, Some(204));
        assert_eq!(w.timeout, Duration::from_secs(5));
        assert_eq!(w.backoff, Duration::from_secs(20));
        assert!(w.json_body);
        let r = c.hooks.reload.as_ref().unwrap();
        assert_eq!(r.process, "httpd");
        assert_eq!(r.signal, Signal::SIGUSR2 as i32);

        // git-sync's legacy names.
        let c = config(
            &base(),
            &[
                ("GIT_SYNC_EXECHOOK_COMMAND", "/x"),
                ("GIT_SYNC_EXECHOOK_TIMEOUT", "3s"),
                ("GIT_SYNC_EXECHOOK_BACKOFF", "2s"),
                ("GIT_SYNC_WEBHOOK_URL", "https://h/"),
                ("GIT_SYNC_WEBHOOK_METHOD", "GET"),
                ("GIT_SYNC_WEBHOOK_SUCCESS_STATUS", "0"),
                ("GIT_SYNC_WEBHOOK_TIMEOUT", "2s"),
                ("GIT_SYNC_WEBHOOK_BACKOFF", "4s"),
            ],
        );
        assert_eq!(exec_of(&c).timeout, Duration::from_secs(3));
        assert_eq!(exec_of(&c).backoff, Duration::from_secs(2));
        let w = webhook_of(&c);
        assert_eq!((w.method.as_str(), w.success_status), ("GET", None));
        assert_eq!(
            (w.timeout, w.backoff),
            (Duration::from_secs(2), Duration::from_secs(4))
        );
        assert_eq!(c.warnings.len(), 8, "{:?}", c.warnings);
    }

    #[test]
    fn hook_duration_minimums() {
        let p = problems(
            &with(&[
                "--exechook-command=/x",
                "--exechook-timeout=999ms",
                "--exechook-backoff=0",
                "--pre-publish-exechook-command=/y",
                "--pre-publish-exechook-timeout=0s",
                "--pre-publish-exechook-backoff=500ms",
                "--webhook-url=http://h/",
                "--webhook-timeout=100ms",
                "--webhook-backoff=0",
            ]),
            &[],
        );
        let labels = [
            "--exechook-timeout (GITSYNC_EXECHOOK_TIMEOUT)",
            "--exechook-backoff (GITSYNC_EXECHOOK_BACKOFF)",
            "--pre-publish-exechook-timeout (GITSYNC_PRE_PUBLISH_EXECHOOK_TIMEOUT)",
            "--pre-publish-exechook-backoff (GITSYNC_PRE_PUBLISH_EXECHOOK_BACKOFF)",
            "--webhook-timeout (GITSYNC_WEBHOOK_TIMEOUT)",
            "--webhook-backoff (GITSYNC_WEBHOOK_BACKOFF)",
        ];
        assert_eq!(p.len(), labels.len(), "{p:?}");
        for (line, label) in p.iter().zip(labels) {
            assert!(
                line.starts_with(&format!("{label}: must be at least 1s")),
                "{line}"
            );
        }
        // As git-sync: ranges only matter when the hook is on; syntax always does.
        let c = config(
            &with(&[
                "--exechook-timeout=1ms",
                "--webhook-backoff=0",
                "--webhook-success-status=999",
                "--webhook-method=B@D",
            ]),
            &[],
        );
        assert!(c.hooks.exec.is_none() && c.hooks.webhook.is_none());
        let p = problems(
            &with(&["--exechook-timeout=soon", "--webhook-success-status=ok"]),
            &[],
        );
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("invalid duration \"soon\""), "{p:?}");
        assert!(p[1].contains("invalid integer \"ok\""), "{p:?}");
    }

    #[test]
    fn webhook_success_status_and_method() {
        let url = "--webhook-url=https://h/x";
        for any in ["0", "-1"] {
            let arg = format!("--webhook-success-status={any}");
            assert_eq!(
                webhook_of(&config(&with(&[url, &arg]), &[])).success_status,
                None
            );
        }
        for (form, code) in [("100", 100), ("599", 599), ("0xc8", 200)] {
            let arg = format!("--webhook-success-status={form}");
            let c = config(&with(&[url, &arg]), &[]);
            assert_eq!(webhook_of(&c).success_status, Some(code), "{form}");
        }
        for bad in ["99", "600", "-2", "70000"] {
            let arg = format!("--webhook-success-status={bad}");
            let p = problems(&with(&[url, &arg]), &[]);
            assert_eq!(
                p,
                vec![format!(
                    "--webhook-success-status (GITSYNC_WEBHOOK_SUCCESS_STATUS): must be an \
                     HTTP status from 100 to 599, or 0 for any, got {bad}"
                )]
            );
        }

        for (form, method) in [("post", "POST"), ("Patch", "PATCH"), ("PURGE", "PURGE")] {
            let arg = format!("--webhook-method={form}");
            assert_eq!(webhook_of(&config(&with(&[url, &arg]), &[])).method, method);
        }
        for bad in ["GE T", "P(OST)", "PO\"ST", "é", " "] {
            let arg = format!("--webhook-method={bad}");
            let p = problems(&with(&[url, &arg]), &[]);
            assert_eq!(p.len(), 1, "{bad}: {p:?}");
            assert!(
                p[0].starts_with("--webhook-method (GITSYNC_WEBHOOK_METHOD): "),
                "{p:?}"
            );
        }
    }

    #[test]
    fn webhook_url_must_be_http() {
        for good in [
            "http://h",
            "https://h:8443/a?b=c",
            "HTTPS://H/x",
            "http://[::1]:80/",
        ] {
            assert_eq!(validate_outgoing_webhook_url(good), Ok(()), "{good}");
        }
        for bad in [
            "ftp://h/x",
            "file:///tmp/x",
            "h/x",
            "https://",
            "http://:80/",
            "mailto:a@b",
        ] {
            let arg = format!("--webhook-url={bad}");
            let p = problems(&with(&[&arg]), &[]);
            assert_eq!(p.len(), 1, "{bad}: {p:?}");
            assert!(
                p[0].starts_with("--webhook-url (GITSYNC_WEBHOOK_URL): "),
                "{p:?}"
            );
        }
        let p = problems(&with(&["--webhook-url=ftp://h/x"]), &[]);
        assert!(p[0].contains("must be an http:// or https:// URL"), "{p:?}");
        // A password in the URL is never shown.
        let p = problems(&base(), &[("GITSYNC_WEBHOOK_URL", "ftp://u:hunter2@h/")]);
        assert!(!p[0].contains("hunter2"), "{p:?}");
        let c = config(&with(&["--webhook-url=https://u:hunter2@h/"]), &[]);
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn webhook_headers() {
        assert_eq!(
            parse_webhook_header("Authorization:  Bearer abc \t"),
            Ok(("Authorization".into(), "Bearer abc".into()))
        );
        assert_eq!(
            parse_webhook_header(" X-Empty :"),
            Ok(("X-Empty".into(), String::new()))
        );
        assert_eq!(
            parse_webhook_header("X-Url: http://a:b/c"),
            Ok(("X-Url".into(), "http://a:b/c".into()))
        );
        assert_eq!(
            parse_webhook_header("X-Tab: a\tb"),
            Ok(("X-Tab".into(), "a\tb".into()))
        );
        for bad in [
            "NoColon",
            ": v",
            "Bad Name: v",
            "Bad(Name): v",
            "X-A: a\r\nX-Injected: b",
            "X-A: a\nb",
            "X-A: a\u{0}",
            "Gitsync-Hash: x",
            "content-length: 0",
            "X-Git-Sidecar-Signature-256: sha256=00",
            "Transfer-Encoding: chunked",
        ] {
            assert!(
                parse_webhook_header(bad).is_err(),
                "{bad:?} should be invalid"
            );
        }

        let url = "--webhook-url=https://h/";
        let c = config(
            &with(&[url, "--webhook-header=X-A: 1", "--webhook-header", "X-B:2"]),
            &[],
        );
        assert_eq!(
            webhook_of(&c).headers,
            vec![("X-A".into(), "1".into()), ("X-B".into(), "2".into())]
        );
        // The environment takes one header per line.
        let c = config(
            &with(&[url]),
            &[(
                "GITSYNC_WEBHOOK_HEADER",
                "X-A: 1\r\n\nAuthorization: Bearer t0ken\n",
            )],
        );
        let w = webhook_of(&c);
        assert_eq!(w.headers.len(), 2);
        assert_eq!(
            w.headers[1],
            ("Authorization".into(), "Bearer t0ken".into())
        );
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("t0ken"), "{dbg}");
        assert!(dbg.contains("Authorization: REDACTED"), "{dbg}");

        // Errors say which entry is wrong, never its value.
        let p = problems(
            &with(&[
                url,
                "--webhook-header=X-A: ok",
                "--webhook-header=s3cret-token",
            ]),
            &[],
        );
        assert_eq!(
            p,
            vec![
                "--webhook-header (GITSYNC_WEBHOOK_HEADER): header #2: expected \"Name: value\" \
                 (no ':' found)"
                    .to_string()
            ]
        );
        let p = problems(&with(&[url, "--webhook-header=X-A: s3cret\u{7f}"]), &[]);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("must not contain control characters"),
            "{p:?}"
        );
        assert!(!p[0].contains("s3cret"), "{p:?}");
    }

    #[test]
    fn webhook_signing_secret() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("sign");
        std::fs::write(&f, "s3cret-sign\n").unwrap();
        let file_arg = format!("--webhook-signing-secret-file={}", f.display());
        let url = "--webhook-url=https://h/";

        let c = config(&with(&[url, &file_arg]), &[]);
        assert_eq!(
            webhook_of(&c)
                .signing_secret
                .as_ref()
                .map(SecretBytes::expose),
            Some(&b"s3cret-sign"[..])
        );
        let c = config(
            &with(&[url]),
            &[("GITSYNC_WEBHOOK_SIGNING_SECRET", "s3cret-env\n")],
        );
        assert_eq!(
            webhook_of(&c)
                .signing_secret
                .as_ref()
                .map(SecretBytes::expose),
            Some(&b"s3cret-env"[..])
        );
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("s3cret"), "{dbg}");
        assert!(
            dbg.contains("signing_secret: Some(SecretBytes(REDACTED))"),
            "{dbg}"
        );

        // Both, a missing file, an empty file, and no URL.
        let p = problems(
            &with(&[url, &file_arg]),
            &[("GITSYNC_WEBHOOK_SIGNING_SECRET", "s3cret-env")],
        );
        assert_eq!(
            p,
            vec![format!(
                "GITSYNC_WEBHOOK_SIGNING_SECRET (environment only): cannot be combined with \
                 --webhook-signing-secret-file (GITSYNC_WEBHOOK_SIGNING_SECRET_FILE); set only one"
            )]
        );
        let missing = dir.path().join("missing").display().to_string();
        let p = problems(
            &with(&[url]),
            &[("GITSYNC_WEBHOOK_SIGNING_SECRET_FILE", missing.as_str())],
        );
        assert!(
            p[0].starts_with(&format!(
                "--webhook-signing-secret-file (GITSYNC_WEBHOOK_SIGNING_SECRET_FILE): \
                 cannot read {missing:?}"
            )),
            "{p:?}"
        );
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let p = problems(
            &with(&[
                url,
                &format!("--webhook-signing-secret-file={}", empty.display()),
            ]),
            &[],
        );
        assert!(p[0].ends_with("is empty"), "{p:?}");
        let p = problems(&base(), &[("GITSYNC_WEBHOOK_SIGNING_SECRET", "s3cret")]);
        assert_eq!(
            p,
            vec![
                "GITSYNC_WEBHOOK_SIGNING_SECRET (environment only): requires --webhook-url \
                 (GITSYNC_WEBHOOK_URL)"
                    .to_string()
            ]
        );
    }

    #[test]
    fn new_hook_flags_require_their_hook() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("sign");
        std::fs::write(&f, "x").unwrap();
        let file_arg = format!("--webhook-signing-secret-file={}", f.display());
        let p = problems(
            &with(&[
                "--exechook-arg=a",
                "--pre-publish-exechook-arg=b",
                "--webhook-header=X-A: 1",
                "--webhook-json-body",
                &file_arg,
                "--reload-signal=TERM",
            ]),
            &[],
        );
        assert_eq!(
            p,
            vec![
                "--exechook-arg (GITSYNC_EXECHOOK_ARG): requires --exechook-command \
                 (GITSYNC_EXECHOOK_COMMAND)",
                "--pre-publish-exechook-arg (GITSYNC_PRE_PUBLISH_EXECHOOK_ARG): requires \
                 --pre-publish-exechook-command (GITSYNC_PRE_PUBLISH_EXECHOOK_COMMAND)",
                "--webhook-header (GITSYNC_WEBHOOK_HEADER): requires --webhook-url \
                 (GITSYNC_WEBHOOK_URL)",
                "--webhook-json-body (GITSYNC_WEBHOOK_JSON_BODY): requires --webhook-url \
                 (GITSYNC_WEBHOOK_URL)",
                "--webhook-signing-secret-file (GITSYNC_WEBHOOK_SIGNING_SECRET_FILE): requires \
                 --webhook-url (GITSYNC_WEBHOOK_URL)",
                "--reload-signal (GITSYNC_RELOAD_SIGNAL): requires --reload-process \
                 (GITSYNC_RELOAD_PROCESS)",
            ]
        );
        // The default false is harmless.
        config(&with(&["--webhook-json-body=false"]), &[]);
    }

    #[test]
    fn exec_hook_args_from_env_are_a_json_array() {
        let c = config(
            &with(&["--exechook-command=/bin/echo"]),
            &[("GITSYNC_EXECHOOK_ARG", r#"["a", "--b", ""]"#)],
        );
        assert_eq!(exec_of(&c).args, ["a", "--b", ""]);
        // The command line replaces the environment.
        let c = config(
            &with(&["--exechook-command=/bin/echo", "--exechook-arg=[x]"]),
            &[("GITSYNC_EXECHOOK_ARG", r#"["a"]"#)],
        );
        assert_eq!(exec_of(&c).args, ["[x]"]);
        for bad in ["reload", r#"["a", 1]"#, r#"{"a": "b"}"#, "[", r#""a""#] {
            let p = problems(
                &with(&["--exechook-command=/bin/echo"]),
                &[("GITSYNC_EXECHOOK_ARG", bad)],
            );
            assert_eq!(p.len(), 1, "{bad}: {p:?}");
            assert!(
                p[0].starts_with(
                    "--exechook-arg (GITSYNC_EXECHOOK_ARG): must be a JSON array of strings"
                ),
                "{p:?}"
            );
        }
        let p = problems(&with(&["--exechook-command=   "]), &[]);
        assert_eq!(
            p,
            vec!["--exechook-command (GITSYNC_EXECHOOK_COMMAND): must not be blank".to_string()]
        );
    }

    #[test]
    fn v3_sync_hook_command_maps_to_exechook_command() {
        let c = config(&with(&["--sync-hook-command=/hooks/v3"]), &[]);
        assert_eq!(exec_of(&c).command, PathBuf::from("/hooks/v3"));
        assert_eq!(
            c.warnings,
            vec![
                "flag --sync-hook-command has been deprecated, use --exechook-command instead"
                    .to_string()
            ]
        );
        let c = config(&base(), &[("GIT_SYNC_HOOK_COMMAND", "/hooks/env")]);
        assert_eq!(exec_of(&c).command, PathBuf::from("/hooks/env"));
        assert_eq!(
            c.warnings,
            vec![
                "env $GIT_SYNC_HOOK_COMMAND has been deprecated, use --exechook-command instead"
                    .to_string()
            ]
        );
        // It overrides --exechook-command, as in git-sync, with a warning.
        let c = config(
            &with(&["--exechook-command=/new", "--exechook-arg=x"]),
            &[("GIT_SYNC_HOOK_COMMAND", "/old")],
        );
        assert_eq!(exec_of(&c).command, PathBuf::from("/old"));
        assert_eq!(exec_of(&c).args, ["x"]);
        assert!(
            c.warnings.contains(
                &"--sync-hook-command (GIT_SYNC_HOOK_COMMAND) overrides --exechook-command \
                  (GITSYNC_EXECHOOK_COMMAND)"
                    .to_string()
            ),
            "{:?}",
            c.warnings
        );
        // The exechook timings apply to it.
        let p = problems(
            &with(&["--sync-hook-command=/x", "--exechook-timeout=10ms"]),
            &[],
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("--exechook-timeout"), "{p:?}");
        let p = problems(&with(&["--sync-hook-command= "]), &[]);
        assert_eq!(
            p,
            vec!["--sync-hook-command (GIT_SYNC_HOOK_COMMAND): must not be blank".to_string()]
        );
    }

    #[test]
    fn reload_process_and_signal() {
        for good in ["nginx", "caddy", "php-fpm: maste", "x", "a.b c_d-123456"] {
            assert_eq!(validate_process_name(good), Ok(()), "{good}");
        }
        let long = "sixteen-bytes-xx";
        assert_eq!(long.len(), 16);
        let e = validate_process_name(long).unwrap_err();
        assert!(e.contains("longer than 15 bytes"), "{e}");
        assert!(e.contains("\"sixteen-bytes-x\""), "{e}");
        // Truncation suggestions stay on a character boundary.
        let e = validate_process_name("ééééééééé").unwrap_err();
        assert!(e.contains("\"ééééééé\""), "{e}");
        for bad in ["/usr/sbin/nginx", "a/b", "a\nb"] {
            assert!(validate_process_name(bad).is_err(), "{bad:?}");
        }

        let c = config(
            &base(),
            &[
                ("GITSYNC_RELOAD_PROCESS", "nginx"),
                ("GITSYNC_RELOAD_SIGNAL", "sigquit"),
            ],
        );
        let r = c.hooks.reload.as_ref().unwrap();
        assert_eq!(
            (r.process.as_str(), r.signal),
            ("nginx", Signal::SIGQUIT as i32)
        );
        assert_eq!(
            config(
                &with(&["--reload-process=nginx", "--reload-signal=10"]),
                &[]
            )
            .hooks
            .reload
            .unwrap()
            .signal,
            10
        );

        let p = problems(&with(&["--reload-signal=HUP"]), &[]);
        assert_eq!(
            p,
            vec![
                "--reload-signal (GITSYNC_RELOAD_SIGNAL): requires --reload-process \
                 (GITSYNC_RELOAD_PROCESS)"
                    .to_string()
            ]
        );
        let p = problems(
            &with(&["--reload-process=/usr/sbin/nginx", "--reload-signal=KILL"]),
            &[],
        );
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].starts_with("--reload-process (GITSYNC_RELOAD_PROCESS): "),
            "{p:?}"
        );
        assert_eq!(
            p[1],
            "--reload-signal (GITSYNC_RELOAD_SIGNAL): SIGKILL cannot be caught"
        );
        let p = problems(
            &with(&["--reload-process=nginx", "--reload-signal=bogus"]),
            &[],
        );
        assert_eq!(
            p,
            vec!["--reload-signal (GITSYNC_RELOAD_SIGNAL): unknown signal \"bogus\"".to_string()]
        );
    }

    #[test]
    fn hook_errors_are_reported_together() {
        let p = problems(
            &with(&[
                "--exechook-command=/x",
                "--exechook-timeout=0",
                "--pre-publish-exechook-command=/y",
                "--pre-publish-exechook-backoff=later",
                "--webhook-url=gopher://h/",
                "--webhook-method=GE T",
                "--webhook-header=oops",
                "--reload-process=/bin/nginx",
                "--period=abc",
            ]),
            &[],
        );
        let all = p.join("\n");
        for expected in [
            "--period (GITSYNC_PERIOD): invalid duration",
            "--exechook-timeout (GITSYNC_EXECHOOK_TIMEOUT): must be at least 1s",
            "--pre-publish-exechook-backoff (GITSYNC_PRE_PUBLISH_EXECHOOK_BACKOFF): invalid duration",
            "--webhook-url (GITSYNC_WEBHOOK_URL): ",
            "--webhook-method (GITSYNC_WEBHOOK_METHOD): ",
            "--webhook-header (GITSYNC_WEBHOOK_HEADER): header #1",
            "--reload-process (GITSYNC_RELOAD_PROCESS): ",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in\n{all}");
        }
        assert_eq!(p.len(), 7, "{all}");
    }

    #[test]
    fn hook_secrets_are_not_debug_printed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("sign");
        std::fs::write(&f, "s3cret-file").unwrap();
        let file_arg = format!("--webhook-signing-secret-file={}", f.display());
        let c = config(
            &with(&[
                "--webhook-url=https://user:hunter2@h/",
                "--webhook-header=Authorization: Bearer t0ken-flag",
                &file_arg,
            ]),
            &[("GITSYNC_WEBHOOK_HEADER", "X-Api-Key: t0ken-env")],
        );
        let dbg = format!("{c:?}");
        for secret in ["hunter2", "t0ken", "s3cret"] {
            assert!(!dbg.contains(secret), "{secret} in {dbg}");
        }
        assert!(dbg.contains("Authorization: REDACTED"), "{dbg}");
        let cli =
            Cli::try_parse_with_env(["git-sidecar", "--webhook-header=X: t0ken"], &|k: &str| {
                (k == "GITSYNC_WEBHOOK_SIGNING_SECRET").then(|| "s3cret".to_string())
            })
            .unwrap();
        let dbg = format!("{cli:?}");
        assert!(!dbg.contains("t0ken") && !dbg.contains("s3cret"), "{dbg}");
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
