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

/// Legacy environment names, per argument id, in lookup order: when several
/// are set, the last one wins (as in git-sync's `envString`). Each use adds a
/// deprecation warning. For v3-only flags there is no canonical name, so the
/// legacy one is the only environment source.
const LEGACY_ENV: &[(&str, &[&str])] = &[
    ("repo", &["GIT_SYNC_REPO", "GIT_REPO"]),
    ("root", &["GIT_SYNC_ROOT"]),
    ("link", &["GIT_SYNC_LINK"]),
    ("period", &["GIT_SYNC_PERIOD"]),
    ("sync_timeout", &["GIT_SYNC_SYNC_TIMEOUT"]),
    ("one_time", &["GIT_SYNC_ONE_TIME"]),
    ("max_failures", &["GIT_SYNC_MAX_FAILURES"]),
    ("sync_on_signal", &["GIT_SYNC_SYNC_ON_SIGNAL"]),
    ("depth", &["GIT_SYNC_DEPTH"]),
    ("touch_file", &["GIT_SYNC_TOUCH_FILE"]),
    ("error_file", &["GIT_SYNC_ERROR_FILE"]),
    ("group_write", &["GIT_SYNC_GROUP_WRITE"]),
    ("submodules", &["GIT_SYNC_SUBMODULES"]),
    ("sparse_checkout_file", &["GIT_SYNC_SPARSE_CHECKOUT_FILE"]),
    ("git_gc", &["GIT_SYNC_GIT_GC"]),
    ("add_user", &["GIT_SYNC_ADD_USER"]),
    ("exechook_command", &["GIT_SYNC_EXECHOOK_COMMAND"]),
    ("exechook_timeout", &["GIT_SYNC_EXECHOOK_TIMEOUT"]),
    ("exechook_backoff", &["GIT_SYNC_EXECHOOK_BACKOFF"]),
    ("webhook_url", &["GIT_SYNC_WEBHOOK_URL"]),
    ("webhook_method", &["GIT_SYNC_WEBHOOK_METHOD"]),
    (
        "webhook_success_status",
        &["GIT_SYNC_WEBHOOK_SUCCESS_STATUS"],
    ),
    ("webhook_timeout", &["GIT_SYNC_WEBHOOK_TIMEOUT"]),
    ("webhook_backoff", &["GIT_SYNC_WEBHOOK_BACKOFF"]),
    ("username", &["GIT_SYNC_USERNAME"]),
    ("env_password", &["GIT_SYNC_PASSWORD"]),
    ("password_file", &["GIT_SYNC_PASSWORD_FILE"]),
    ("askpass_url", &["GIT_SYNC_ASKPASS_URL", "GIT_ASKPASS_URL"]),
    (
        "ssh_key_file",
        &["GIT_SYNC_SSH_KEY_FILE", "GIT_SSH_KEY_FILE"],
    ),
    (
        "ssh_known_hosts",
        &["GIT_SYNC_KNOWN_HOSTS", "GIT_KNOWN_HOSTS"],
    ),
    (
        "ssh_known_hosts_file",
        &["GIT_SYNC_SSH_KNOWN_HOSTS_FILE", "GIT_SSH_KNOWN_HOSTS_FILE"],
    ),
    ("cookie_file", &["GIT_SYNC_COOKIE_FILE", "GIT_COOKIE_FILE"]),
    ("git", &["GIT_SYNC_GIT"]),
    ("git_config", &["GIT_SYNC_GIT_CONFIG"]),
    ("http_bind", &["GIT_SYNC_HTTP_BIND"]),
    ("http_metrics", &["GIT_SYNC_HTTP_METRICS"]),
    ("http_pprof", &["GIT_SYNC_HTTP_PPROF"]),
    // v3-only flags: these are their only environment names.
    ("branch", &["GIT_SYNC_BRANCH"]),
    ("rev", &["GIT_SYNC_REV"]),
    ("dest", &["GIT_SYNC_DEST"]),
    ("wait", &["GIT_SYNC_WAIT"]),
    ("timeout", &["GIT_SYNC_TIMEOUT"]),
    ("max_sync_failures", &["GIT_SYNC_MAX_SYNC_FAILURES"]),
    ("sync_hook_command", &["GIT_SYNC_HOOK_COMMAND"]),
    ("change_permissions", &["GIT_SYNC_PERMISSIONS"]),
];

/// Deprecated v3 flags and the advice given when one is used.
const V3_FLAGS: &[(&str, &str)] = &[
    ("branch", "use --ref instead"),
    ("rev", "use --ref instead"),
    ("dest", "use --link instead"),
    ("wait", "use --period instead"),
    ("timeout", "use --sync-timeout instead"),
    ("max_sync_failures", "use --max-failures instead"),
    ("sync_hook_command", "use --exechook-command instead"),
    (
        "deprecated_password",
        "use --password-file or $GITSYNC_PASSWORD instead",
    ),
    ("deprecated_v", "use -v or --verbose instead"),
    ("ssh", "it is no longer necessary"),
    ("change_permissions", "use --group-write instead"),
];

/// Arguments whose environment value is a colon-separated list.
const COLON_LIST_ENV: &[&str] = &["ssh_key_file"];

/// Arguments whose environment value is a comma-separated list (entries are
/// trimmed; empty ones are dropped).
const COMMA_LIST_ENV: &[&str] = &["incoming_webhook_secret_file", "sync_trigger_token_file"];

/// Arguments whose environment value holds one entry per line (a trailing CR
/// is dropped; blank lines are skipped). HTTP header lines cannot contain a
/// line break, so nothing needs escaping.
const LINE_LIST_ENV: &[&str] = &["webhook_header"];

/// Legacy environment names of an argument id (empty if none).
pub fn legacy_env_names(id: &str) -> &'static [&'static str] {
    LEGACY_ENV
        .iter()
        .find(|(i, _)| *i == id)
        .map_or(&[], |(_, names)| names)
}

/// For a deprecated v3 flag id, the advice ("use --ref instead").
pub fn v3_replacement(id: &str) -> Option<&'static str> {
    V3_FLAGS.iter().find(|(i, _)| *i == id).map(|(_, r)| *r)
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
    origins: BTreeMap<String, Origin>,
    /// Deprecation warnings (legacy environment names, v3 flags).
    pub warnings: Vec<String>,
}

impl Provenance {
    /// Whether the values went through [`Cli::try_parse_with_env`]. If not,
    /// any value present is treated as set on the command line.
    pub fn is_resolved(&self) -> bool {
        self.resolved
    }

    /// Where the value of argument `id` (the `Cli` field name) came from;
    /// `None` when it was not set at all (or provenance is unknown).
    pub fn origin(&self, id: &str) -> Option<&Origin> {
        self.origins.get(id)
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

const AFTER_HELP: &str = "\
ENVIRONMENT VARIABLES:
  Every flag can also be set through the environment variable shown with it.
  The git-sync v3 names (GIT_SYNC_*, and a few GIT_*) are still accepted with a
  deprecation warning; when both are set the legacy name wins. A command-line
  flag beats both.

  Settings that exist only as environment variables (secrets stay off argv):
    GITSYNC_PASSWORD                 password or token for --username (instead of
                                     --password-file)
    GITSYNC_BEARER_TOKEN             token sent as an Authorization: Bearer header (instead of
                                     --bearer-token-file)
    GITSYNC_GITHUB_APP_PRIVATE_KEY   GitHub App private key, PEM (instead of
                                     --github-app-private-key-file)
    GITSYNC_INCOMING_WEBHOOK_SECRET  one more incoming webhook secret (after the files)
    GITSYNC_SYNC_TRIGGER_TOKEN       one more bearer token for POST /sync (after the files)
    GIT_SSH_COMMAND                  run this ssh command (through sh) for ssh repositories
                                     instead of the built-in SSH client
    GITSYNC_WEBHOOK_SIGNING_SECRET   secret that signs --webhook-url requests (instead of
                                     --webhook-signing-secret-file)

  Repeatable flags in the environment: GITSYNC_EXECHOOK_ARG and
  GITSYNC_PRE_PUBLISH_EXECHOOK_ARG take a JSON array of strings ([\"-s\", \"reload\"]),
  GITSYNC_WEBHOOK_HEADER one \"Name: value\" per line,
  GITSYNC_INCOMING_WEBHOOK_SECRET_FILE and GITSYNC_SYNC_TRIGGER_TOKEN_FILE a
  comma-separated list, GITSYNC_SSH_KEY_FILE a colon-separated one.

  Durations are Go-style: 100ms, 10s, 1m30s, 1h, 1.5s, 0.
  Booleans: --flag, --flag=true|false; values 1/t/T/TRUE/true/True and
  0/f/F/FALSE/false/False.";

const HTTP: &str = "HTTP endpoint (health, metrics, incoming webhooks)";

const HOOKS: &str = "Hooks (after publishing)";

const AUTH: &str = "Credentials (http:// and https:// repositories)";

const SSH: &str = "SSH (ssh:// and user@host:path repositories)";

const NOT_YET: &str = "Accepted for git-sync compatibility, refused until implemented";

/// Raw flags. All values are unparsed strings; see the module docs for how
/// environment variables are applied.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "git-sidecar",
    version,
    about = "Keeps a directory in step with a git repository and publishes each \
             commit through an atomically swapped symlink (a git-sync v4 drop-in).",
    after_help = AFTER_HELP,
    args_override_self = true
)]
pub struct Cli {
    /// The git repository to sync (required): https://, http://, git://, ssh://,
    /// user@host:path, file:// or a local path
    #[arg(long, env = "GITSYNC_REPO", value_name = "URL")]
    pub repo: Option<UrlArg>,

    /// The directory git-sidecar owns (required); created if missing. One
    /// instance per root: a second one waits for the first to exit
    #[arg(long, env = "GITSYNC_ROOT", value_name = "PATH")]
    pub root: Option<String>,

    /// The branch, tag or full 40-hex commit to sync; HEAD is the remote's default
    /// branch [default: HEAD]
    #[arg(long = "ref", env = "GITSYNC_REF", value_name = "REF")]
    pub git_ref: Option<String>,

    /// Path (absolute, or relative to --root) of the symlink that points at the
    /// checked-out commit [default: last path element of --repo]
    #[arg(long, env = "GITSYNC_LINK", value_name = "PATH")]
    pub link: Option<String>,

    /// How long to wait between syncs, at least 10ms [default: 10s]
    #[arg(long, env = "GITSYNC_PERIOD", value_name = "DURATION")]
    pub period: Option<String>,

    /// How long to wait between attempts until the first sync succeeds, at least
    /// 10ms [default: --period]
    #[arg(long, env = "GITSYNC_INIT_PERIOD", value_name = "DURATION")]
    pub init_period: Option<String>,

    /// Time allowed for one complete sync, at least 10ms [default: 120s]
    #[arg(long, env = "GITSYNC_SYNC_TIMEOUT", value_name = "DURATION")]
    pub sync_timeout: Option<String>,

    /// Exit after the first successful sync; exit 1 at once if another
    /// instance holds the root [default: false]
    #[arg(
        long,
        env = "GITSYNC_ONE_TIME",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub one_time: Option<String>,

    /// Consecutive failed syncs tolerated before exiting; negative retries forever
    /// [default: 0]
    #[arg(
        long,
        env = "GITSYNC_MAX_FAILURES",
        value_name = "INT",
        allow_negative_numbers = true
    )]
    pub max_failures: Option<String>,

    /// Like --max-failures, but only until the first successful sync
    /// [default: --max-failures]
    #[arg(
        long,
        env = "GITSYNC_INIT_MAX_FAILURES",
        value_name = "INT",
        allow_negative_numbers = true
    )]
    pub init_max_failures: Option<String>,

    /// Sync at once on receipt of this signal: a name (HUP, SIGHUP) or a number (1)
    #[arg(long, env = "GITSYNC_SYNC_ON_SIGNAL", value_name = "SIGNAL")]
    pub sync_on_signal: Option<String>,

    /// Shallow-fetch this many commits; 0 fetches the full history [default: 1]
    #[arg(
        long,
        env = "GITSYNC_DEPTH",
        value_name = "INT",
        allow_negative_numbers = true
    )]
    pub depth: Option<String>,

    /// File (absolute, or relative to --root) whose mtime is bumped after the
    /// first sync and after each sync that published a new commit
    #[arg(long, env = "GITSYNC_TOUCH_FILE", value_name = "PATH")]
    pub touch_file: Option<String>,

    /// File (absolute, or relative to --root) holding the last error; removed
    /// after a good sync
    #[arg(long, env = "GITSYNC_ERROR_FILE", value_name = "PATH")]
    pub error_file: Option<String>,

    /// How long to keep worktrees that are no longer published [default: 0]
    #[arg(long, env = "GITSYNC_STALE_WORKTREE_TIMEOUT", value_name = "DURATION")]
    pub stale_worktree_timeout: Option<String>,

    /// What to do with a symlink in the repository that is absolute or
    /// resolves outside the worktree (a web server would serve what it points
    /// at): "refuse" the commit, "skip" such links, or "allow" them as git
    /// does [default: refuse]
    #[arg(long, env = "GITSYNC_ESCAPING_SYMLINKS", value_name = "POLICY")]
    pub escaping_symlinks: Option<String>,

    /// Make everything written group-writable [default: false]
    #[arg(
        long,
        env = "GITSYNC_GROUP_WRITE",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub group_write: Option<String>,

    /// Log verbosity, 0 to 9: 0 info, 1-5 debug, 6-8 trace, 9 trace including
    /// dependencies (RUST_LOG overrides) [default: 0]
    #[arg(
        short = 'v',
        long,
        env = "GITSYNC_VERBOSE",
        value_name = "LEVEL",
        allow_negative_numbers = true
    )]
    pub verbose: Option<String>,

    /// Log format: json (one object per line, like git-sync) or text [default: json]
    #[arg(long, env = "GITSYNC_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,

    // ---- HTTP endpoint -----------------------------------------------------------------------
    /// Serve HTTP on this address: /livez, /readyz, /status, the incoming webhook and
    /// the optional /metrics, /debug/pprof/ and POST /sync. Forms: host:port with an IP
    /// address or "localhost" (127.0.0.1), :port for all IPv4 interfaces (0.0.0.0),
    /// [::1]:port; port 0 picks a free port [default: none, no HTTP server]
    #[arg(long, env = "GITSYNC_HTTP_BIND", value_name = "ADDR", help_heading = HTTP)]
    pub http_bind: Option<String>,

    /// Serve Prometheus metrics at /metrics; requires --http-bind [default: false]
    #[arg(
        long,
        env = "GITSYNC_HTTP_METRICS",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        help_heading = HTTP
    )]
    pub http_metrics: Option<String>,

    /// Serve profiling data at /debug/pprof/; requires --http-bind [default: false]
    #[arg(
        long,
        env = "GITSYNC_HTTP_PPROF",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        help_heading = HTTP
    )]
    pub http_pprof: Option<String>,

    /// Time a client has to send a request's line and headers, counted from its
    /// first byte; slower connections are closed; requires --http-bind [default: 10s]
    #[arg(
        long,
        env = "GITSYNC_HTTP_HEADER_TIMEOUT",
        value_name = "DURATION",
        help_heading = HTTP
    )]
    pub http_header_timeout: Option<String>,

    /// Time a keep-alive connection may wait for its next request (and a new one for
    /// its first byte) before it is closed; keep it above a proxy's upstream keep-alive
    /// timeout (ingress-nginx: 60s); requires --http-bind [default: 90s]
    #[arg(
        long,
        env = "GITSYNC_HTTP_IDLE_TIMEOUT",
        value_name = "DURATION",
        help_heading = HTTP
    )]
    pub http_idle_timeout: Option<String>,

    /// Most HTTP connections open at once, at least 1, lowered to half the open-file
    /// limit so that syncing always has descriptors left; at the cap, idle connections
    /// are closed first; requires --http-bind [default: 1024]
    #[arg(
        long,
        env = "GITSYNC_HTTP_MAX_CONNECTIONS",
        value_name = "INT",
        allow_negative_numbers = true,
        help_heading = HTTP
    )]
    pub http_max_connections: Option<String>,

    /// After the first publish, /readyz answers 503 when the last successful sync is
    /// older than this; must be more than 0; requires --http-bind
    /// [default: 5 × --period + --sync-timeout]
    #[arg(
        long,
        env = "GITSYNC_READINESS_MAX_STALENESS",
        value_name = "DURATION",
        help_heading = HTTP
    )]
    pub readiness_max_staleness: Option<String>,

    /// After the first publish, /readyz answers 503 after this many consecutive failed
    /// syncs; 0 means failures alone never make it unready; requires --http-bind
    /// [default: 3]
    #[arg(
        long,
        env = "GITSYNC_READINESS_MAX_FAILURES",
        value_name = "INT",
        allow_negative_numbers = true,
        help_heading = HTTP
    )]
    pub readiness_max_failures: Option<String>,

    /// URL path of the incoming push webhook (GitHub, GitLab, Gitea...), which triggers
    /// a sync at once; must start with "/" and not clash with the other endpoints;
    /// requires --http-bind [default: /webhook]
    #[arg(
        long,
        env = "GITSYNC_INCOMING_WEBHOOK_PATH",
        value_name = "PATH",
        help_heading = HTTP
    )]
    pub incoming_webhook_path: Option<String>,

    /// File holding a secret that incoming webhooks are verified with; trailing
    /// whitespace is ignored. Repeatable (several secrets are accepted
    /// during a rotation); the environment variable takes a comma-separated list. Also
    /// GITSYNC_INCOMING_WEBHOOK_SECRET. Without a secret the webhook is disabled unless
    /// --incoming-webhook-allow-unsigned; requires --http-bind
    #[arg(
        long,
        env = "GITSYNC_INCOMING_WEBHOOK_SECRET_FILE",
        value_name = "PATH",
        action = ArgAction::Append,
        help_heading = HTTP
    )]
    pub incoming_webhook_secret_file: Vec<String>,

    /// Environment-only GITSYNC_INCOMING_WEBHOOK_SECRET; this flag exists for tests
    #[arg(
        long = "__env__GITSYNC_INCOMING_WEBHOOK_SECRET",
        env = "GITSYNC_INCOMING_WEBHOOK_SECRET",
        value_name = "SECRET",
        hide = true
    )]
    pub env_incoming_webhook_secret: Option<Secret>,

    /// Accept incoming webhooks that carry no signature (an explicit opt-out, for
    /// trusted networks only); signed requests are still checked against the secrets;
    /// requires --http-bind [default: false]
    #[arg(
        long,
        env = "GITSYNC_INCOMING_WEBHOOK_ALLOW_UNSIGNED",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        help_heading = HTTP
    )]
    pub incoming_webhook_allow_unsigned: Option<String>,

    /// Only act on incoming webhooks whose payload names this repository: its
    /// URL (e.g. https://github.com/org/site; scheme, user, ".git" and
    /// git@host:path forms don't matter); requires --http-bind [default: any
    /// repository]
    #[arg(
        long,
        env = "GITSYNC_INCOMING_WEBHOOK_REPO",
        value_name = "URL",
        help_heading = HTTP
    )]
    pub incoming_webhook_repo: Option<String>,

    /// Largest incoming webhook body accepted, in bytes, optionally with a KiB or MiB
    /// suffix; 1KiB to 64MiB; requires --http-bind [default: 5MiB]
    #[arg(
        long,
        env = "GITSYNC_INCOMING_WEBHOOK_MAX_BODY",
        value_name = "SIZE",
        help_heading = HTTP
    )]
    pub incoming_webhook_max_body: Option<String>,

    /// Incoming webhook requests allowed per minute per client address, at least 1;
    /// requires --http-bind [default: 60]
    #[arg(
        long,
        env = "GITSYNC_INCOMING_WEBHOOK_RATE_LIMIT",
        value_name = "INT",
        allow_negative_numbers = true,
        help_heading = HTTP
    )]
    pub incoming_webhook_rate_limit: Option<String>,

    /// File holding a bearer token that enables POST /sync (an immediate sync);
    /// trailing whitespace is ignored. Repeatable; the environment variable takes a
    /// comma-separated list. Also GITSYNC_SYNC_TRIGGER_TOKEN. Without a token POST /sync
    /// is disabled; requires --http-bind
    #[arg(
        long,
        env = "GITSYNC_SYNC_TRIGGER_TOKEN_FILE",
        value_name = "PATH",
        action = ArgAction::Append,
        help_heading = HTTP
    )]
    pub sync_trigger_token_file: Vec<String>,

    /// Environment-only GITSYNC_SYNC_TRIGGER_TOKEN; this flag exists for tests
    #[arg(
        long = "__env__GITSYNC_SYNC_TRIGGER_TOKEN",
        env = "GITSYNC_SYNC_TRIGGER_TOKEN",
        value_name = "TOKEN",
        hide = true
    )]
    pub env_sync_trigger_token: Option<Secret>,

    // ---- hooks ---------------------------------------------------------------------------------
    /// Program run after each publish (and after the first sync at start-up), with
    /// $GITSYNC_HASH set, in the new worktree, without a shell; the path is used as
    /// given, as by git-sync. A failure is retried. v3's --sync-hook-command
    /// (GIT_SYNC_HOOK_COMMAND) sets it too, and wins
    #[arg(long, env = "GITSYNC_EXECHOOK_COMMAND", value_name = "PATH", help_heading = HOOKS)]
    pub exechook_command: Option<String>,

    /// Argument for --exechook-command; repeatable, passed in order (git-sync passes
    /// none). The environment variable takes a JSON array of strings, e.g.
    /// ["-s","reload"]
    #[arg(
        long,
        env = "GITSYNC_EXECHOOK_ARG",
        value_name = "ARG",
        action = ArgAction::Append,
        allow_hyphen_values = true,
        help_heading = HOOKS
    )]
    pub exechook_arg: Vec<String>,

    /// Time allowed for one run of --exechook-command, at least 1s; the program is
    /// killed after it [default: 30s]
    #[arg(long, env = "GITSYNC_EXECHOOK_TIMEOUT", value_name = "DURATION", help_heading = HOOKS)]
    pub exechook_timeout: Option<String>,

    /// Wait before each retry of a failed --exechook-command, at least 1s; every retry
    /// waits exactly this, as in git-sync [default: 3s]
    #[arg(long, env = "GITSYNC_EXECHOOK_BACKOFF", value_name = "DURATION", help_heading = HOOKS)]
    pub exechook_backoff: Option<String>,

    /// Program run when a new commit is checked out, before the link moves, with
    /// $GITSYNC_HASH (the new commit) set, in the new worktree, without a shell. Unlike
    /// git-sync's, it gates publishing: until it succeeds (exit 0 within the timeout)
    /// the link keeps pointing at the old commit. A failure is retried every
    /// --pre-publish-exechook-backoff while the ref stays on that commit (a new commit
    /// is tried at once); it is not a sync failure (no --max-failures exit)
    #[arg(
        long,
        env = "GITSYNC_PRE_PUBLISH_EXECHOOK_COMMAND",
        value_name = "PATH",
        help_heading = HOOKS
    )]
    pub pre_publish_exechook_command: Option<String>,

    /// Argument for --pre-publish-exechook-command; repeatable, passed in order. The
    /// environment variable takes a JSON array of strings
    #[arg(
        long,
        env = "GITSYNC_PRE_PUBLISH_EXECHOOK_ARG",
        value_name = "ARG",
        action = ArgAction::Append,
        allow_hyphen_values = true,
        help_heading = HOOKS
    )]
    pub pre_publish_exechook_arg: Vec<String>,

    /// Time allowed for one run of --pre-publish-exechook-command, at least 1s
    /// [default: 30s]
    #[arg(
        long,
        env = "GITSYNC_PRE_PUBLISH_EXECHOOK_TIMEOUT",
        value_name = "DURATION",
        help_heading = HOOKS
    )]
    pub pre_publish_exechook_timeout: Option<String>,

    /// Wait before each retry of a failed --pre-publish-exechook-command (same commit),
    /// at least 1s; every retry waits exactly this, as in git-sync [default: 3s]
    #[arg(
        long,
        env = "GITSYNC_PRE_PUBLISH_EXECHOOK_BACKOFF",
        value_name = "DURATION",
        help_heading = HOOKS
    )]
    pub pre_publish_exechook_backoff: Option<String>,

    /// URL (http:// or https://) requested after each publish (and after the first
    /// sync at start-up), with the header Gitsync-Hash: <hash>; a failure is retried
    #[arg(long, env = "GITSYNC_WEBHOOK_URL", value_name = "URL", help_heading = HOOKS)]
    pub webhook_url: Option<UrlArg>,

    /// HTTP method of the --webhook-url request (upper-cased) [default: POST]
    #[arg(long, env = "GITSYNC_WEBHOOK_METHOD", value_name = "METHOD", help_heading = HOOKS)]
    pub webhook_method: Option<String>,

    /// HTTP status of a successful --webhook-url response, 100 to 599; 0 (or -1)
    /// accepts any response (failed connections are still retried) [default: 200]
    #[arg(
        long,
        env = "GITSYNC_WEBHOOK_SUCCESS_STATUS",
        value_name = "INT",
        allow_negative_numbers = true,
        help_heading = HOOKS
    )]
    pub webhook_success_status: Option<String>,

    /// Time allowed for one --webhook-url request, at least 1s [default: 1s]
    #[arg(long, env = "GITSYNC_WEBHOOK_TIMEOUT", value_name = "DURATION", help_heading = HOOKS)]
    pub webhook_timeout: Option<String>,

    /// Wait before each retry of a failed --webhook-url request, at least 1s; every
    /// retry waits exactly this, as in git-sync [default: 3s]
    #[arg(long, env = "GITSYNC_WEBHOOK_BACKOFF", value_name = "DURATION", help_heading = HOOKS)]
    pub webhook_backoff: Option<String>,

    /// Extra header "Name: value" sent with the --webhook-url request; repeatable. The
    /// environment variable takes one header per line. Values are kept out of
    /// configuration errors and debug output
    #[arg(
        long,
        env = "GITSYNC_WEBHOOK_HEADER",
        value_name = "HEADER",
        action = ArgAction::Append,
        help_heading = HOOKS
    )]
    pub webhook_header: Vec<Secret>,

    /// Send a JSON body (hash, previous hash, ref, repo, time) with the --webhook-url
    /// request instead of git-sync's empty one [default: false]
    #[arg(
        long,
        env = "GITSYNC_WEBHOOK_JSON_BODY",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        help_heading = HOOKS
    )]
    pub webhook_json_body: Option<String>,

    /// File holding a secret that signs each --webhook-url request: header
    /// X-Git-Sidecar-Signature-256: sha256=<hex HMAC-SHA256 of the body>; trailing
    /// whitespace is ignored. Or GITSYNC_WEBHOOK_SIGNING_SECRET (not both)
    #[arg(
        long,
        env = "GITSYNC_WEBHOOK_SIGNING_SECRET_FILE",
        value_name = "PATH",
        help_heading = HOOKS
    )]
    pub webhook_signing_secret_file: Option<String>,

    /// Environment-only GITSYNC_WEBHOOK_SIGNING_SECRET; this flag exists for tests
    #[arg(
        long = "__env__GITSYNC_WEBHOOK_SIGNING_SECRET",
        env = "GITSYNC_WEBHOOK_SIGNING_SECRET",
        value_name = "SECRET",
        hide = true
    )]
    pub env_webhook_signing_secret: Option<Secret>,

    /// After each publish, send --reload-signal to every process with this name, as
    /// in /proc/PID/comm (at most 15 bytes, e.g. nginx); the pod needs
    /// shareProcessNamespace: true
    #[arg(long, env = "GITSYNC_RELOAD_PROCESS", value_name = "NAME", help_heading = HOOKS)]
    pub reload_process: Option<String>,

    /// Signal sent to --reload-process: a name (HUP, SIGHUP) or a number (1)
    /// [default: HUP]
    #[arg(long, env = "GITSYNC_RELOAD_SIGNAL", value_name = "SIGNAL", help_heading = HOOKS)]
    pub reload_signal: Option<String>,

    // ---- credentials ---------------------------------------------------------------------------
    /// User name for http:// and https:// repositories; the password comes from
    /// GITSYNC_PASSWORD or --password-file (exactly one). Credentials may instead be
    /// given in --repo (https://user:token@host/...), not both
    #[arg(long, env = "GITSYNC_USERNAME", value_name = "NAME", help_heading = AUTH)]
    pub username: Option<String>,

    /// Environment-only GITSYNC_PASSWORD; this flag exists for tests, as in git-sync
    #[arg(
        long = "__env__GITSYNC_PASSWORD",
        env = "GITSYNC_PASSWORD",
        value_name = "PASSWORD",
        hide = true
    )]
    pub env_password: Option<Secret>,

    /// File holding the password or token for --username, read again before every
    /// sync (a rotated token is used from the next sync on; while the file cannot be
    /// read, syncs fail); trailing whitespace is ignored
    #[arg(long, env = "GITSYNC_PASSWORD_FILE", value_name = "PATH", help_heading = AUTH)]
    pub password_file: Option<String>,

    /// Per-URL credentials as JSON, repeatable: an object or a list of objects
    /// {"url": ..., "username": ..., "password": ... or "password-file": ...}; a
    /// connection uses the one whose url matches (scheme, host, port, path prefix)
    #[arg(
        long,
        env = "GITSYNC_CREDENTIAL",
        value_name = "JSON",
        action = ArgAction::Append,
        help_heading = AUTH
    )]
    pub credential: Vec<Secret>,

    /// URL asked (GET, 5s timeout, no redirects) before each sync for
    /// username=/password= lines, used for --repo; any answer but 200 fails the sync
    #[arg(long, env = "GITSYNC_ASKPASS_URL", value_name = "URL", help_heading = AUTH)]
    pub askpass_url: Option<UrlArg>,

    /// File holding a token sent as "Authorization: Bearer <token>" to the host of
    /// --repo, read again before every sync (or env-only GITSYNC_BEARER_TOKEN)
    #[arg(long, env = "GITSYNC_BEARER_TOKEN_FILE", value_name = "PATH", help_heading = AUTH)]
    pub bearer_token_file: Option<String>,

    /// Environment-only GITSYNC_BEARER_TOKEN; this flag exists for tests
    #[arg(
        long = "__env__GITSYNC_BEARER_TOKEN",
        env = "GITSYNC_BEARER_TOKEN",
        value_name = "TOKEN",
        hide = true
    )]
    pub env_bearer_token: Option<Secret>,

    /// GitHub API base URL for GitHub App authentication
    /// [default: https://api.github.com/]
    #[arg(long, env = "GITSYNC_GITHUB_BASE_URL", value_name = "URL", help_heading = AUTH)]
    pub github_base_url: Option<String>,

    /// Environment-only GITSYNC_GITHUB_APP_PRIVATE_KEY; this flag exists for tests
    #[arg(
        long = "__env__GITSYNC_GITHUB_APP_PRIVATE_KEY",
        env = "GITSYNC_GITHUB_APP_PRIVATE_KEY",
        value_name = "PEM",
        hide = true
    )]
    pub env_github_app_private_key: Option<Secret>,

    /// GitHub App private key file (PEM); or env-only GITSYNC_GITHUB_APP_PRIVATE_KEY
    #[arg(
        long,
        env = "GITSYNC_GITHUB_APP_PRIVATE_KEY_FILE",
        value_name = "PATH",
        help_heading = AUTH
    )]
    pub github_app_private_key_file: Option<String>,

    /// GitHub App application ID (or --github-app-client-id)
    #[arg(
        long,
        env = "GITSYNC_GITHUB_APP_APPLICATION_ID",
        value_name = "INT",
        help_heading = AUTH
    )]
    pub github_app_application_id: Option<String>,

    /// GitHub App client ID (or --github-app-application-id)
    #[arg(long, env = "GITSYNC_GITHUB_APP_CLIENT_ID", value_name = "ID", help_heading = AUTH)]
    pub github_app_client_id: Option<String>,

    /// GitHub App installation ID; with the key and one of the IDs above, an
    /// installation token is minted and refreshed before it expires
    #[arg(
        long,
        env = "GITSYNC_GITHUB_APP_INSTALLATION_ID",
        value_name = "INT",
        help_heading = AUTH
    )]
    pub github_app_installation_id: Option<String>,

    /// Git config as key:value,key:value (git-sync's grammar). Every key reaches the git
    /// upload-pack run for file:// repositories and the git exec hooks run; used here:
    /// http.proxy, http.sslCAInfo, http.sslVerify, http.extraHeader, http.cookieFile
    #[arg(long, env = "GITSYNC_GIT_CONFIG", value_name = "CONFIG", help_heading = AUTH)]
    pub git_config: Option<String>,

    // ---- accepted, refused until implemented -------------------------------------------------
    /// Submodules to check out: "recursive" (all, nested too), "shallow" (the
    /// repository's own submodules, not nested ones) or "off" (empty directories)
    /// [default: recursive]
    #[arg(long, env = "GITSYNC_SUBMODULES", value_name = "MODE")]
    pub submodules: Option<String>,

    /// Sparse checkout: a file of git's non-cone patterns (gitignore syntax, "!"
    /// negates); only matching paths are written into each worktree. Read at
    /// start-up; changed patterns apply after a restart
    #[arg(long, env = "GITSYNC_SPARSE_CHECKOUT_FILE", value_name = "PATH")]
    pub sparse_checkout_file: Option<String>,

    /// Partial clone: a fetch filter, "blob:none" or "blob:limit=<n>[k|m|g]"; the
    /// blobs a checkout needs (the sparse cone, or the whole tree) are fetched
    /// by id. The server must allow filters (uploadpack.allowFilter) and, over
    /// protocol v0/v1, fetches by id (uploadpack.allowAnySHA1InWant)
    #[arg(long, env = "GITSYNC_FILTER", value_name = "SPEC")]
    pub filter: Option<String>,

    /// Object-store upkeep (gix has no git gc; ours rewrites the store as one pack
    /// of what is still needed): auto and always compact when the packs have grown
    /// (past twice their compacted size + 1 MiB, or 16 packs), aggressive after
    /// every fetch, off never (except after a --depth change) [default: always]
    #[arg(long, env = "GITSYNC_GIT_GC", value_name = "MODE")]
    pub git_gc: Option<String>,

    /// git-sync adds the UID to /etc/passwd for ssh; accepted and ignored (with a
    /// warning): git-sidecar's built-in SSH client needs no passwd entry
    #[arg(
        long,
        env = "GITSYNC_ADD_USER",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub add_user: Option<String>,

    /// SSH private key file, repeatable; tried in order [default: /etc/git-secret/ssh]
    #[arg(
        long,
        env = "GITSYNC_SSH_KEY_FILE",
        value_name = "PATH",
        action = ArgAction::Append,
        help_heading = SSH
    )]
    pub ssh_key_file: Vec<String>,

    /// Strict SSH host-key checking against --ssh-known-hosts-file [default: true]
    #[arg(
        long,
        env = "GITSYNC_SSH_KNOWN_HOSTS",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        help_heading = SSH
    )]
    pub ssh_known_hosts: Option<String>,

    /// SSH known_hosts file (OpenSSH format) [default: /etc/git-secret/known_hosts]
    #[arg(long, env = "GITSYNC_SSH_KNOWN_HOSTS_FILE", value_name = "PATH", help_heading = SSH)]
    pub ssh_known_hosts_file: Option<String>,

    /// Environment-only GIT_SSH_COMMAND; this flag exists for tests
    #[arg(
        long = "__env__GIT_SSH_COMMAND",
        env = "GIT_SSH_COMMAND",
        value_name = "COMMAND",
        hide = true
    )]
    pub env_git_ssh_command: Option<String>,

    /// Send the cookies of /etc/git-secret/cookie_file (Netscape format, read at each sync) with http(s) requests, as git's http.cookieFile
    #[arg(
        long,
        env = "GITSYNC_COOKIE_FILE",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        help_heading = AUTH
    )]
    pub cookie_file: Option<String>,

    /// The git executable; accepted but ignored, git-sidecar does not run git
    #[arg(long, env = "GITSYNC_GIT", value_name = "PATH", help_heading = NOT_YET)]
    pub git: Option<String>,

    // ---- deprecated git-sync v3 flags (hidden) -------------------------------------------------
    /// DEPRECATED: use --ref
    #[arg(long, hide = true)]
    pub branch: Option<String>,

    /// DEPRECATED: use --ref
    #[arg(long, hide = true)]
    pub rev: Option<String>,

    /// DEPRECATED: use --link
    #[arg(long, hide = true)]
    pub dest: Option<String>,

    /// DEPRECATED: use --period (float seconds)
    #[arg(long, hide = true, allow_negative_numbers = true)]
    pub wait: Option<String>,

    /// DEPRECATED: use --sync-timeout (integer seconds)
    #[arg(long, hide = true, allow_negative_numbers = true)]
    pub timeout: Option<String>,

    /// DEPRECATED: use --max-failures
    #[arg(long, hide = true, allow_negative_numbers = true)]
    pub max_sync_failures: Option<String>,

    /// DEPRECATED: use --exechook-command
    #[arg(long, hide = true)]
    pub sync_hook_command: Option<String>,

    /// DEPRECATED: use --password-file or $GITSYNC_PASSWORD
    #[arg(long = "password", hide = true)]
    pub deprecated_password: Option<Secret>,

    /// DEPRECATED: use -v or --verbose
    #[arg(long = "v", hide = true, allow_negative_numbers = true)]
    pub deprecated_v: Option<String>,

    /// DEPRECATED: no longer necessary
    #[arg(
        long,
        hide = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub ssh: Option<String>,

    /// DEPRECATED: use --group-write
    #[arg(long, hide = true, allow_negative_numbers = true)]
    pub change_permissions: Option<String>,

    /// Print help (git-sync's -? spelling)
    #[arg(short = '?', action = ArgAction::Help, hide = true)]
    help_alias: Option<bool>,

    /// Print the full manual (every flag, the on-disk layout, hooks, webhooks) and exit
    #[arg(long, action = ArgAction::SetTrue)]
    pub man: bool,

    /// Filled by [`Cli::try_parse_with_env`].
    #[arg(skip)]
    pub provenance: Provenance,
}

/// Sets the field of `Cli` named by an argument id from raw strings (the last
/// value wins for single-valued fields; an empty list clears the field).
/// Returns false for an unknown id.
macro_rules! raw_setters {
    (single: [$($one:ident),* $(,)?], multi: [$($many:ident),* $(,)?] $(,)?) => {
        impl Cli {
            fn set_raw(&mut self, id: &str, values: Vec<String>) -> bool {
                match id {
                    $(stringify!($one) => {
                        self.$one = values.into_iter().last().map(Into::into);
                        true
                    })*
                    $(stringify!($many) => {
                        self.$many = values.into_iter().map(Into::into).collect();
                        true
                    })*
                    _ => false,
                }
            }
        }
    };
}

raw_setters! {
    single: [
        repo, root, git_ref, link, period, init_period, sync_timeout, one_time, max_failures,
        init_max_failures, sync_on_signal, depth, touch_file, error_file, stale_worktree_timeout,
        escaping_symlinks, group_write, verbose, log_format,
        http_bind, http_metrics, http_pprof, http_header_timeout, http_idle_timeout,
        http_max_connections, readiness_max_staleness, readiness_max_failures,
        incoming_webhook_path, env_incoming_webhook_secret, incoming_webhook_allow_unsigned,
        incoming_webhook_repo, incoming_webhook_max_body, incoming_webhook_rate_limit,
        env_sync_trigger_token,
        exechook_command, exechook_timeout, exechook_backoff, pre_publish_exechook_command,
        pre_publish_exechook_timeout, pre_publish_exechook_backoff, webhook_url, webhook_method,
        webhook_success_status, webhook_timeout, webhook_backoff, webhook_json_body,
        webhook_signing_secret_file, env_webhook_signing_secret, reload_process, reload_signal,
        filter, submodules, sparse_checkout_file, git_gc, add_user, username, env_password,
        password_file, askpass_url, bearer_token_file, env_bearer_token, ssh_known_hosts, ssh_known_hosts_file,
        env_git_ssh_command, cookie_file,
        github_base_url, env_github_app_private_key, github_app_private_key_file,
        github_app_application_id, github_app_client_id, github_app_installation_id, git,
        git_config,
        branch, rev, dest, wait, timeout, max_sync_failures, sync_hook_command,
        deprecated_password, deprecated_v, ssh, change_permissions,
    ],
    multi: [
        credential, ssh_key_file, incoming_webhook_secret_file, sync_trigger_token_file,
        exechook_arg, pre_publish_exechook_arg, webhook_header,
    ],
}

/// The arguments that print something and exit (`--help`, `--version`,
/// `--man`): no environment variable, no configuration.
pub fn is_help_or_version(arg: &clap::Arg) -> bool {
    matches!(
        arg.get_action(),
        ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
    ) || arg.get_id() == "man"
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
            let id = arg.get_id().as_str();
            let from_cli = matches.value_source(id) == Some(ValueSource::CommandLine);
            let replacement = v3_replacement(id);
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
            for &legacy in legacy_env_names(id) {
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
                prov.origins.insert(id.to_string(), Origin::CommandLine);
                continue;
            }
            let values = match &found {
                None => Vec::new(),
                Some((_, value)) if COLON_LIST_ENV.contains(&id) => {
                    value.split(':').map(str::to_string).collect()
                }
                Some((_, value)) if COMMA_LIST_ENV.contains(&id) => value
                    .split(',')
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(str::to_string)
                    .collect(),
                Some((_, value)) if LINE_LIST_ENV.contains(&id) => value
                    .split('\n')
                    .map(|line| line.strip_suffix('\r').unwrap_or(line))
                    .filter(|line| !line.trim().is_empty())
                    .map(str::to_string)
                    .collect(),
                Some((_, value)) => vec![value.clone()],
            };
            if let Some((name, _)) = found {
                prov.origins.insert(id.to_string(), Origin::Env(name));
            }
            let known = self.set_raw(id, values);
            debug_assert!(known, "Cli::set_raw does not know argument {id}");
        }
        self.provenance = prov;
    }

    /// Names an argument for messages: `--period (GITSYNC_PERIOD)`. When the
    /// value came from a legacy variable, that variable is named instead; for
    /// environment-only settings only the variable is named.
    pub fn label(&self, id: &str) -> String {
        let cmd = Cli::command();
        let Some(arg) = cmd.get_arguments().find(|a| a.get_id() == id) else {
            return id.to_string();
        };
        let env = match self.provenance.origin(id) {
            Some(Origin::Env(name)) => Some(name.clone()),
            _ => canonical_env(arg).or_else(|| legacy_env_names(id).first().map(|s| s.to_string())),
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
    fn every_argument_has_a_setter_and_every_table_entry_an_argument() {
        let cmd = Cli::command();
        let ids: Vec<&str> = cmd
            .get_arguments()
            .filter(|a| !is_help_or_version(a))
            .map(|a| a.get_id().as_str())
            .collect();
        let mut probe = parse(&[], &[]);
        for id in &ids {
            assert!(probe.set_raw(id, vec![]), "no setter for {id}");
        }
        for (id, names) in LEGACY_ENV {
            assert!(ids.contains(id), "LEGACY_ENV names unknown arg {id}");
            for n in *names {
                assert!(n.starts_with("GIT_"), "{n}");
            }
        }
        for (id, _) in V3_FLAGS {
            assert!(ids.contains(id), "V3_FLAGS names unknown arg {id}");
        }
        // Hidden (v3 and test-only) args must not show up in help.
        for arg in cmd.get_arguments() {
            if v3_replacement(arg.get_id().as_str()).is_some() {
                assert!(arg.is_hide_set(), "{} should be hidden", arg.get_id());
            }
        }
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
            cli.provenance.origin("root"),
            Some(&Origin::Env("GITSYNC_ROOT".into()))
        );
        assert_eq!(cli.provenance.origin("period"), Some(&Origin::CommandLine));
        assert_eq!(cli.provenance.origin("link"), None);
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
        assert_eq!(cli.label("askpass_url"), "--askpass-url (GIT_ASKPASS_URL)");
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
            cli.provenance.origin("incoming_webhook_secret_file"),
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
            cli.label("env_incoming_webhook_secret"),
            "GITSYNC_INCOMING_WEBHOOK_SECRET (environment only)"
        );
        assert_eq!(
            cli.label("env_sync_trigger_token"),
            "GITSYNC_SYNC_TRIGGER_TOKEN (environment only)"
        );
        assert_eq!(
            cli.label("http_pprof"),
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
            .find("refused until implemented")
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
            cli.provenance.origin("exechook_arg"),
            Some(&Origin::CommandLine)
        );
        // JSON arrays stay raw here; config decodes them.
        assert_eq!(cli.pre_publish_exechook_arg, [r#"["a","b"]"#]);
        assert_eq!(
            cli.provenance.origin("pre_publish_exechook_arg"),
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
            cli.label("env_webhook_signing_secret"),
            "GITSYNC_WEBHOOK_SIGNING_SECRET (environment only)"
        );
        assert_eq!(cli.reload_process.as_deref(), Some("nginx"));
        assert_eq!(cli.sync_hook_command.as_deref(), Some("/v3"));
        assert_eq!(
            cli.label("sync_hook_command"),
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
            .find("refused until implemented")
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
        assert!(Cli::try_parse_with_env(argv, &|_: &str| None).is_err());
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
        let not_yet = help.find("refused until implemented").expect("NOT_YET");
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
