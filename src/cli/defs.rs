//! The flag table ("defs"): one entry per flag, from which [`flags!`]
//! derives the raw [`Cli`] struct, [`Flag`] and its lookups. To add a flag,
//! add an entry here (see docs/adding-a-flag.md); the help text's
//! `[default: …]` comes from the entry's `default`/`shown`.

use clap::ArgAction;

use super::table::{flags, pick, show_default};
use super::{Provenance, Secret, UrlArg};

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
    GIT_SSL_CAINFO                   a PEM CA bundle trusted instead of the system's, as git
                                     reads it (beats --git-config http.sslCAInfo)
    GIT_SSL_NO_VERIFY                any non-empty value: accept any server certificate, as git
                                     (beats http.sslVerify; warned about)
    GITSYNC_WEBHOOK_SIGNING_SECRET   secret that signs --webhook-url requests (instead of
                                     --webhook-signing-secret-file)

  Repeatable flags in the environment: GITSYNC_EXECHOOK_ARG and
  GITSYNC_PRE_PUBLISH_EXECHOOK_ARG take a JSON array of strings ([\"-s\", \"reload\"]),
  GITSYNC_WEBHOOK_HEADER one \"Name: value\" per line,
  GITSYNC_INCOMING_WEBHOOK_SECRET_FILE and GITSYNC_SYNC_TRIGGER_TOKEN_FILE a
  comma-separated list, GITSYNC_SSH_KEY_FILE, GITSYNC_VERIFY_ALLOWED_SIGNERS and
  GITSYNC_VERIFY_PGP_KEYRING a colon-separated one.

  Durations are Go-style: 100ms, 10s, 1m30s, 1h, 1.5s, 0.
  Booleans: --flag, --flag=true|false; values 1/t/T/TRUE/true/True and
  0/f/F/FALSE/false/False.";

const HTTP: &str = "HTTP endpoint (health, metrics, incoming webhooks)";

const HOOKS: &str = "Hooks (after publishing)";

const AUTH: &str = "Credentials (http:// and https:// repositories)";

const SSH: &str = "SSH (ssh:// and user@host:path repositories)";

const VERIFY: &str = "Signature verification (publish only signed commits or tags)";

const NOT_YET: &str = "Accepted for git-sync compatibility, ignored";

flags! {
    /// Raw flags. All values are unparsed strings; see the module docs for how
    /// environment variables are applied.
    #[derive(Debug, Clone, clap::Parser)]
    #[command(
        name = "git-sidecar",
        version,
        about = "Keeps a directory in step with a git repository and publishes each \
                 commit through an atomically swapped symlink (a git-sync v4 drop-in).",
        after_help = AFTER_HELP,
        args_override_self = true,
        mut_args = show_default
    )]
    pub struct Cli {
        /// The git repository to sync (required): https://, http://, git://, ssh://,
        /// user@host:path, file:// or a local path
        #[arg(long, env = "GITSYNC_REPO", value_name = "URL")]
        repo: Option<UrlArg> => Repo {
            legacy: ["GIT_SYNC_REPO", "GIT_REPO"],
        },

        /// The directory git-sidecar owns (required); created if missing. One
        /// instance per root: a second one waits for the first to exit
        #[arg(long, env = "GITSYNC_ROOT", value_name = "PATH")]
        root: Option<String> => Root {
            legacy: ["GIT_SYNC_ROOT"],
        },

        /// The branch, tag or full 40-hex commit to sync; HEAD is the remote's default
        /// branch
        #[arg(long = "ref", env = "GITSYNC_REF", value_name = "REF")]
        git_ref: Option<String> => Ref {
            default: "HEAD" as Ref,
        },

        /// Path (absolute, or relative to --root) of the symlink that points at the
        /// checked-out commit
        #[arg(long, env = "GITSYNC_LINK", value_name = "PATH")]
        link: Option<String> => Link {
            legacy: ["GIT_SYNC_LINK"],
            shown: "last path element of --repo",
        },

        /// How long to wait between syncs, at least 10ms
        #[arg(long, env = "GITSYNC_PERIOD", value_name = "DURATION")]
        period: Option<String> => Period {
            legacy: ["GIT_SYNC_PERIOD"],
            default: "10s" as Duration,
        },

        /// How long to wait between attempts until the first sync succeeds, at least
        /// 10ms
        #[arg(long, env = "GITSYNC_INIT_PERIOD", value_name = "DURATION")]
        init_period: Option<String> => InitPeriod {
            shown: "--period",
        },

        /// Time allowed for one complete sync, at least 10ms
        #[arg(long, env = "GITSYNC_SYNC_TIMEOUT", value_name = "DURATION")]
        sync_timeout: Option<String> => SyncTimeout {
            legacy: ["GIT_SYNC_SYNC_TIMEOUT"],
            default: "120s" as Duration,
        },

        /// Exit after the first successful sync; exit 1 at once if another
        /// instance holds the root
        #[arg(
            long,
            env = "GITSYNC_ONE_TIME",
            value_name = "BOOL",
            num_args = 0..=1,
            require_equals = true,
            default_missing_value = "true"
        )]
        one_time: Option<String> => OneTime {
            legacy: ["GIT_SYNC_ONE_TIME"],
            default: "false" as Bool,
        },

        /// Consecutive failed syncs tolerated before exiting, over at least as many periods (retries in between do not shorten it); negative retries forever
        #[arg(
            long,
            env = "GITSYNC_MAX_FAILURES",
            value_name = "INT",
            allow_negative_numbers = true
        )]
        max_failures: Option<String> => MaxFailures {
            legacy: ["GIT_SYNC_MAX_FAILURES"],
            default: "0" as Int,
        },

        /// Like --max-failures, but only until the first successful sync (over --init-period)
        #[arg(
            long,
            env = "GITSYNC_INIT_MAX_FAILURES",
            value_name = "INT",
            allow_negative_numbers = true
        )]
        init_max_failures: Option<String> => InitMaxFailures {
            shown: "--max-failures",
        },

        /// Sync at once on receipt of this signal: a name (HUP, SIGHUP) or a number (1); TERM and INT stop git-sidecar and are ignored here
        #[arg(long, env = "GITSYNC_SYNC_ON_SIGNAL", value_name = "SIGNAL")]
        sync_on_signal: Option<String> => SyncOnSignal {
            legacy: ["GIT_SYNC_SYNC_ON_SIGNAL"],
        },

        /// Shallow-fetch this many commits; 0 fetches the full history
        #[arg(
            long,
            env = "GITSYNC_DEPTH",
            value_name = "INT",
            allow_negative_numbers = true
        )]
        depth: Option<String> => Depth {
            legacy: ["GIT_SYNC_DEPTH"],
            default: "1" as Int,
        },

        /// File (absolute, or relative to --root) whose mtime is bumped after the
        /// first sync and after each sync that published a new commit
        #[arg(long, env = "GITSYNC_TOUCH_FILE", value_name = "PATH")]
        touch_file: Option<String> => TouchFile {
            legacy: ["GIT_SYNC_TOUCH_FILE"],
        },

        /// File (absolute, or relative to --root) holding the last error; removed
        /// after a good sync
        #[arg(long, env = "GITSYNC_ERROR_FILE", value_name = "PATH")]
        error_file: Option<String> => ErrorFile {
            legacy: ["GIT_SYNC_ERROR_FILE"],
        },

        /// How long to keep worktrees that are no longer published
        #[arg(long, env = "GITSYNC_STALE_WORKTREE_TIMEOUT", value_name = "DURATION")]
        stale_worktree_timeout: Option<String> => StaleWorktreeTimeout {
            default: "0" as Duration,
        },

        /// What to do with a symlink in the repository that is absolute or
        /// resolves outside the worktree (a web server would serve what it points
        /// at): "refuse" the commit, "skip" such links, or "allow" them as git
        /// does
        #[arg(long, env = "GITSYNC_ESCAPING_SYMLINKS", value_name = "POLICY")]
        escaping_symlinks: Option<String> => EscapingSymlinks {
            default: "refuse" as SymlinkPolicy,
        },

        /// Make everything written group-writable
        #[arg(
            long,
            env = "GITSYNC_GROUP_WRITE",
            value_name = "BOOL",
            num_args = 0..=1,
            require_equals = true,
            default_missing_value = "true"
        )]
        group_write: Option<String> => GroupWrite {
            legacy: ["GIT_SYNC_GROUP_WRITE"],
            default: "false" as Bool,
        },

        /// Log verbosity, 0 to 9: 0 info, 1-5 debug, 6-8 trace, 9 trace including
        /// dependencies (RUST_LOG overrides)
        #[arg(
            short = 'v',
            long,
            env = "GITSYNC_VERBOSE",
            value_name = "LEVEL",
            allow_negative_numbers = true
        )]
        verbose: Option<String> => Verbose {
            default: "0" as Int,
        },

        /// Log format: json (one object per line, like git-sync) or text
        #[arg(long, env = "GITSYNC_LOG_FORMAT", value_name = "FORMAT")]
        log_format: Option<String> => LogFormat {
            default: "json" as LogFormat,
        },

        // ---- HTTP endpoint -----------------------------------------------------------------------
        /// Serve HTTP on this address: /livez, /readyz, /status, the incoming webhook and
        /// the optional /metrics, /debug/pprof/ and POST /sync. Forms: host:port with an IP
        /// address or "localhost" (127.0.0.1; no other host name is resolved), :port for all
        /// interfaces (IPv6 and IPv4, as git-sync), [::1]:port; port 0 picks a free port
        #[arg(long, env = "GITSYNC_HTTP_BIND", value_name = "ADDR", help_heading = HTTP)]
        http_bind: Option<String> => HttpBind {
            legacy: ["GIT_SYNC_HTTP_BIND"],
            shown: "none, no HTTP server",
        },

        /// Serve Prometheus metrics at /metrics; requires --http-bind
        #[arg(
            long,
            env = "GITSYNC_HTTP_METRICS",
            value_name = "BOOL",
            num_args = 0..=1,
            require_equals = true,
            default_missing_value = "true",
            help_heading = HTTP
        )]
        http_metrics: Option<String> => HttpMetrics {
            legacy: ["GIT_SYNC_HTTP_METRICS"],
            default: "false" as Bool,
        },

        /// Serve profiling data at /debug/pprof/; requires --http-bind and a binary
        /// built with the `pprof` cargo feature (on by default)
        #[cfg_attr(
            not(feature = "pprof"),
            arg(help = "Unavailable: this binary was built without the `pprof` cargo feature, \
                        so --http-pprof is refused")
        )]
        #[arg(
            long,
            env = "GITSYNC_HTTP_PPROF",
            value_name = "BOOL",
            num_args = 0..=1,
            require_equals = true,
            default_missing_value = "true",
            help_heading = HTTP
        )]
        http_pprof: Option<String> => HttpPprof {
            legacy: ["GIT_SYNC_HTTP_PPROF"],
            default: "false" as Bool,
        },

        /// Time a client has to send a request's line and headers, counted from its
        /// first byte; slower connections are closed; requires --http-bind
        #[arg(
            long,
            env = "GITSYNC_HTTP_HEADER_TIMEOUT",
            value_name = "DURATION",
            help_heading = HTTP
        )]
        http_header_timeout: Option<String> => HttpHeaderTimeout {
            default: "10s" as Duration,
        },

        /// Time a keep-alive connection may wait for its next request (and a new one for
        /// its first byte) before it is closed; keep it above a proxy's upstream keep-alive
        /// timeout (ingress-nginx: 60s); requires --http-bind
        #[arg(
            long,
            env = "GITSYNC_HTTP_IDLE_TIMEOUT",
            value_name = "DURATION",
            help_heading = HTTP
        )]
        http_idle_timeout: Option<String> => HttpIdleTimeout {
            default: "90s" as Duration,
        },

        /// Most HTTP connections open at once, at least 1, lowered to half the open-file
        /// limit so that syncing always has descriptors left; at the cap, the oldest
        /// connection not in a request is closed for each new one; requires --http-bind
        #[arg(
            long,
            env = "GITSYNC_HTTP_MAX_CONNECTIONS",
            value_name = "INT",
            allow_negative_numbers = true,
            help_heading = HTTP
        )]
        http_max_connections: Option<String> => HttpMaxConnections {
            default: "1024" as Int,
        },

        /// After the first publish, /readyz answers 503 when the last successful sync is
        /// older than this; must be more than 0; requires --http-bind
        #[arg(
            long,
            env = "GITSYNC_READINESS_MAX_STALENESS",
            value_name = "DURATION",
            help_heading = HTTP
        )]
        readiness_max_staleness: Option<String> => ReadinessMaxStaleness {
            shown: "5 × --period + --sync-timeout",
        },

        /// After the first publish, /readyz answers 503 after this many consecutive failed
        /// syncs spanning one period fewer (quick retries after a failure do not count
        /// sooner); 0 means failures alone never make it unready; requires --http-bind
        #[arg(
            long,
            env = "GITSYNC_READINESS_MAX_FAILURES",
            value_name = "INT",
            allow_negative_numbers = true,
            help_heading = HTTP
        )]
        readiness_max_failures: Option<String> => ReadinessMaxFailures {
            default: "3" as Int,
        },

        /// URL path of the incoming push webhook (GitHub, GitLab, Gitea...), which triggers
        /// a sync at once; must start with "/" and not clash with the other endpoints;
        /// requires --http-bind
        #[arg(
            long,
            env = "GITSYNC_INCOMING_WEBHOOK_PATH",
            value_name = "PATH",
            help_heading = HTTP
        )]
        incoming_webhook_path: Option<String> => IncomingWebhookPath {
            default: "/webhook" as WebhookPath,
        },

        /// File holding a secret that incoming webhooks are verified with; trailing
        /// whitespace is ignored. Read again when it changes (a rotated Secret needs no
        /// restart; the previous secret is still accepted for 5 minutes). Repeatable (several
        /// secrets are accepted); the environment variable takes a comma-separated list. Also
        /// GITSYNC_INCOMING_WEBHOOK_SECRET. Without a secret the webhook is disabled unless
        /// --incoming-webhook-allow-unsigned; requires --http-bind
        #[arg(
            long,
            env = "GITSYNC_INCOMING_WEBHOOK_SECRET_FILE",
            value_name = "PATH",
            action = ArgAction::Append,
            help_heading = HTTP
        )]
        incoming_webhook_secret_file: Vec<String> => IncomingWebhookSecretFile {
            list: Comma,
        },

        /// Environment-only GITSYNC_INCOMING_WEBHOOK_SECRET; this flag exists for tests
        #[arg(
            long = "__env__GITSYNC_INCOMING_WEBHOOK_SECRET",
            env = "GITSYNC_INCOMING_WEBHOOK_SECRET",
            value_name = "SECRET",
            hide = true
        )]
        env_incoming_webhook_secret: Option<Secret> => EnvIncomingWebhookSecret {},

        /// Accept incoming webhooks that carry no signature (an explicit opt-out, for
        /// trusted networks only); signed requests are still checked against the secrets;
        /// requires --http-bind
        #[arg(
            long,
            env = "GITSYNC_INCOMING_WEBHOOK_ALLOW_UNSIGNED",
            value_name = "BOOL",
            num_args = 0..=1,
            require_equals = true,
            default_missing_value = "true",
            help_heading = HTTP
        )]
        incoming_webhook_allow_unsigned: Option<String> => IncomingWebhookAllowUnsigned {
            default: "false" as Bool,
        },

        /// Only act on incoming webhooks whose payload names this repository: its
        /// URL (e.g. https://github.com/org/site; scheme, user, ".git" and
        /// git@host:path forms don't matter); requires --http-bind
        #[arg(
            long,
            env = "GITSYNC_INCOMING_WEBHOOK_REPO",
            value_name = "URL",
            help_heading = HTTP
        )]
        incoming_webhook_repo: Option<String> => IncomingWebhookRepo {
            shown: "any repository",
        },

        /// Largest incoming webhook body accepted, in bytes, optionally with a KiB or MiB
        /// suffix; 1KiB to 64MiB; requires --http-bind
        #[arg(
            long,
            env = "GITSYNC_INCOMING_WEBHOOK_MAX_BODY",
            value_name = "SIZE",
            help_heading = HTTP
        )]
        incoming_webhook_max_body: Option<String> => IncomingWebhookMaxBody {
            default: "5MiB" as ByteSize,
        },

        /// Failed incoming webhook and POST /sync requests (unauthenticated, oversized, too
        /// slow) allowed per minute per client address before 429; authenticated requests
        /// are never limited; at least 1; requires --http-bind
        #[arg(
            long,
            env = "GITSYNC_INCOMING_WEBHOOK_RATE_LIMIT",
            value_name = "INT",
            allow_negative_numbers = true,
            help_heading = HTTP
        )]
        incoming_webhook_rate_limit: Option<String> => IncomingWebhookRateLimit {
            default: "60" as Int,
        },

        /// File holding a bearer token that enables POST /sync (an immediate sync);
        /// trailing whitespace is ignored. Read again when it changes (the previous token is
        /// still accepted for 5 minutes). Repeatable; the environment variable takes a
        /// comma-separated list. Also GITSYNC_SYNC_TRIGGER_TOKEN. Without a token POST /sync
        /// is disabled; requires --http-bind
        #[arg(
            long,
            env = "GITSYNC_SYNC_TRIGGER_TOKEN_FILE",
            value_name = "PATH",
            action = ArgAction::Append,
            help_heading = HTTP
        )]
        sync_trigger_token_file: Vec<String> => SyncTriggerTokenFile {
            list: Comma,
        },

        /// Environment-only GITSYNC_SYNC_TRIGGER_TOKEN; this flag exists for tests
        #[arg(
            long = "__env__GITSYNC_SYNC_TRIGGER_TOKEN",
            env = "GITSYNC_SYNC_TRIGGER_TOKEN",
            value_name = "TOKEN",
            hide = true
        )]
        env_sync_trigger_token: Option<Secret> => EnvSyncTriggerToken {},

        /// The other replicas, told at once when this one accepts a verified webhook or
        /// POST /sync (deliveries that name no commit: at most one hint per 10 s, the last
        /// always sent): a DNS name with the port of their --http-bind (e.g. a headless
        /// Service, site-peers:8081, a short name resolving in the pod's namespace; resolved
        /// again for every delivery, all A and AAAA records), or a comma-separated list of
        /// host:port. This instance's own addresses are skipped. Requires --peer-secret-file
        /// and --http-bind
        #[arg(long, env = "GITSYNC_PEERS", value_name = "LIST", help_heading = HTTP)]
        peers: Option<String> => Peers {
            shown: "no peers",
        },

        /// File holding the secret shared by the replicas, which signs and verifies peer
        /// hints (read again when it changes); trailing whitespace is ignored. Required
        /// with --peers
        #[arg(long, env = "GITSYNC_PEER_SECRET_FILE", value_name = "PATH", help_heading = HTTP)]
        peer_secret_file: Option<String> => PeerSecretFile {},

        // ---- hooks ---------------------------------------------------------------------------------
        /// Program run after each publish (and after the first sync at start-up), with
        /// $GITSYNC_HASH set, in the new worktree, without a shell; the path is used as
        /// given, as by git-sync. A failure is retried. v3's --sync-hook-command
        /// (GIT_SYNC_HOOK_COMMAND) sets it too, and wins
        #[arg(long, env = "GITSYNC_EXECHOOK_COMMAND", value_name = "PATH", help_heading = HOOKS)]
        exechook_command: Option<String> => ExechookCommand {
            legacy: ["GIT_SYNC_EXECHOOK_COMMAND"],
        },

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
        exechook_arg: Vec<String> => ExechookArg {},

        /// Time allowed for one run of --exechook-command, at least 1s; the program is
        /// killed after it
        #[arg(long, env = "GITSYNC_EXECHOOK_TIMEOUT", value_name = "DURATION", help_heading = HOOKS)]
        exechook_timeout: Option<String> => ExechookTimeout {
            legacy: ["GIT_SYNC_EXECHOOK_TIMEOUT"],
            default: "30s" as Duration,
        },

        /// Wait before each retry of a failed --exechook-command, at least 1s; every retry
        /// waits exactly this, as in git-sync
        #[arg(long, env = "GITSYNC_EXECHOOK_BACKOFF", value_name = "DURATION", help_heading = HOOKS)]
        exechook_backoff: Option<String> => ExechookBackoff {
            legacy: ["GIT_SYNC_EXECHOOK_BACKOFF"],
            default: "3s" as Duration,
        },

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
        pre_publish_exechook_command: Option<String> => PrePublishExechookCommand {},

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
        pre_publish_exechook_arg: Vec<String> => PrePublishExechookArg {},

        /// Time allowed for one run of --pre-publish-exechook-command, at least 1s
        #[arg(
            long,
            env = "GITSYNC_PRE_PUBLISH_EXECHOOK_TIMEOUT",
            value_name = "DURATION",
            help_heading = HOOKS
        )]
        pre_publish_exechook_timeout: Option<String> => PrePublishExechookTimeout {
            default: "30s" as Duration,
        },

        /// Wait before each retry of a failed --pre-publish-exechook-command (same commit),
        /// at least 1s; every retry waits exactly this, as in git-sync
        #[arg(
            long,
            env = "GITSYNC_PRE_PUBLISH_EXECHOOK_BACKOFF",
            value_name = "DURATION",
            help_heading = HOOKS
        )]
        pre_publish_exechook_backoff: Option<String> => PrePublishExechookBackoff {
            default: "3s" as Duration,
        },

        /// URL (http:// or https://) requested after each publish (and after the first
        /// sync at start-up), with the header Gitsync-Hash: <hash>; a failure is retried
        #[arg(long, env = "GITSYNC_WEBHOOK_URL", value_name = "URL", help_heading = HOOKS)]
        webhook_url: Option<UrlArg> => WebhookUrl {
            legacy: ["GIT_SYNC_WEBHOOK_URL"],
        },

        /// HTTP method of the --webhook-url request (upper-cased)
        #[arg(long, env = "GITSYNC_WEBHOOK_METHOD", value_name = "METHOD", help_heading = HOOKS)]
        webhook_method: Option<String> => WebhookMethod {
            legacy: ["GIT_SYNC_WEBHOOK_METHOD"],
            default: "POST" as HttpMethod,
        },

        /// HTTP status of a successful --webhook-url response, 100 to 599; 0 (or -1)
        /// accepts any response (failed connections are still retried)
        #[arg(
            long,
            env = "GITSYNC_WEBHOOK_SUCCESS_STATUS",
            value_name = "INT",
            allow_negative_numbers = true,
            help_heading = HOOKS
        )]
        webhook_success_status: Option<String> => WebhookSuccessStatus {
            legacy: ["GIT_SYNC_WEBHOOK_SUCCESS_STATUS"],
            default: "200" as Int,
        },

        /// Time allowed for one --webhook-url request, at least 1s
        #[arg(long, env = "GITSYNC_WEBHOOK_TIMEOUT", value_name = "DURATION", help_heading = HOOKS)]
        webhook_timeout: Option<String> => WebhookTimeout {
            legacy: ["GIT_SYNC_WEBHOOK_TIMEOUT"],
            default: "1s" as Duration,
        },

        /// Wait before each retry of a failed --webhook-url request, at least 1s; every
        /// retry waits exactly this, as in git-sync
        #[arg(long, env = "GITSYNC_WEBHOOK_BACKOFF", value_name = "DURATION", help_heading = HOOKS)]
        webhook_backoff: Option<String> => WebhookBackoff {
            legacy: ["GIT_SYNC_WEBHOOK_BACKOFF"],
            default: "3s" as Duration,
        },

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
        webhook_header: Vec<Secret> => WebhookHeader {
            list: Line,
        },

        /// Send a JSON body (hash, previous hash, ref, repo, time) with the --webhook-url
        /// request instead of git-sync's empty one
        #[arg(
            long,
            env = "GITSYNC_WEBHOOK_JSON_BODY",
            value_name = "BOOL",
            num_args = 0..=1,
            require_equals = true,
            default_missing_value = "true",
            help_heading = HOOKS
        )]
        webhook_json_body: Option<String> => WebhookJsonBody {
            default: "false" as Bool,
        },

        /// File holding a secret that signs each --webhook-url request: header
        /// X-Git-Sidecar-Signature-256: sha256=<hex HMAC-SHA256 of the body>; trailing
        /// whitespace is ignored. Or GITSYNC_WEBHOOK_SIGNING_SECRET (not both)
        #[arg(
            long,
            env = "GITSYNC_WEBHOOK_SIGNING_SECRET_FILE",
            value_name = "PATH",
            help_heading = HOOKS
        )]
        webhook_signing_secret_file: Option<String> => WebhookSigningSecretFile {},

        /// Environment-only GITSYNC_WEBHOOK_SIGNING_SECRET; this flag exists for tests
        #[arg(
            long = "__env__GITSYNC_WEBHOOK_SIGNING_SECRET",
            env = "GITSYNC_WEBHOOK_SIGNING_SECRET",
            value_name = "SECRET",
            hide = true
        )]
        env_webhook_signing_secret: Option<Secret> => EnvWebhookSigningSecret {},

        /// After each publish, send --reload-signal to every process with this name, as
        /// in /proc/PID/comm (at most 15 bytes, e.g. nginx); the pod needs
        /// shareProcessNamespace: true
        #[arg(long, env = "GITSYNC_RELOAD_PROCESS", value_name = "NAME", help_heading = HOOKS)]
        reload_process: Option<String> => ReloadProcess {},

        /// Signal sent to --reload-process: a name (HUP, SIGHUP) or a number (1)
        #[arg(long, env = "GITSYNC_RELOAD_SIGNAL", value_name = "SIGNAL", help_heading = HOOKS)]
        reload_signal: Option<String> => ReloadSignal {
            default: "HUP" as Signal,
        },

        // ---- credentials ---------------------------------------------------------------------------
        /// User name for http:// and https:// repositories; the password comes from
        /// GITSYNC_PASSWORD or --password-file (exactly one). Credentials may instead be
        /// given in --repo (https://user:token@host/...), not both
        #[arg(long, env = "GITSYNC_USERNAME", value_name = "NAME", help_heading = AUTH)]
        username: Option<String> => Username {
            legacy: ["GIT_SYNC_USERNAME"],
        },

        /// Environment-only GITSYNC_PASSWORD; this flag exists for tests, as in git-sync
        #[arg(
            long = "__env__GITSYNC_PASSWORD",
            env = "GITSYNC_PASSWORD",
            value_name = "PASSWORD",
            hide = true
        )]
        env_password: Option<Secret> => EnvPassword {
            legacy: ["GIT_SYNC_PASSWORD"],
        },

        /// File holding the password or token for --username, read again before every
        /// sync (a rotated token is used from the next sync on; while the file cannot be
        /// read, syncs fail); trailing whitespace is ignored
        #[arg(long, env = "GITSYNC_PASSWORD_FILE", value_name = "PATH", help_heading = AUTH)]
        password_file: Option<String> => PasswordFile {
            legacy: ["GIT_SYNC_PASSWORD_FILE"],
        },

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
        credential: Vec<Secret> => Credential {},

        /// URL asked (GET, 5s timeout, no redirects) before each sync for
        /// username=/password= lines, used for --repo; any answer but 200 fails the sync
        #[arg(long, env = "GITSYNC_ASKPASS_URL", value_name = "URL", help_heading = AUTH)]
        askpass_url: Option<UrlArg> => AskpassUrl {
            legacy: ["GIT_SYNC_ASKPASS_URL", "GIT_ASKPASS_URL"],
        },

        /// File holding a token sent as "Authorization: Bearer <token>" to the host of
        /// --repo, read again before every sync (or env-only GITSYNC_BEARER_TOKEN)
        #[arg(long, env = "GITSYNC_BEARER_TOKEN_FILE", value_name = "PATH", help_heading = AUTH)]
        bearer_token_file: Option<String> => BearerTokenFile {},

        /// Environment-only GITSYNC_BEARER_TOKEN; this flag exists for tests
        #[arg(
            long = "__env__GITSYNC_BEARER_TOKEN",
            env = "GITSYNC_BEARER_TOKEN",
            value_name = "TOKEN",
            hide = true
        )]
        env_bearer_token: Option<Secret> => EnvBearerToken {},

        /// GitHub API base URL for GitHub App authentication
        #[arg(long, env = "GITSYNC_GITHUB_BASE_URL", value_name = "URL", help_heading = AUTH)]
        github_base_url: Option<String> => GithubBaseUrl {
            default: "https://api.github.com/" as HttpUrl,
        },

        /// Environment-only GITSYNC_GITHUB_APP_PRIVATE_KEY; this flag exists for tests
        #[arg(
            long = "__env__GITSYNC_GITHUB_APP_PRIVATE_KEY",
            env = "GITSYNC_GITHUB_APP_PRIVATE_KEY",
            value_name = "PEM",
            hide = true
        )]
        env_github_app_private_key: Option<Secret> => EnvGithubAppPrivateKey {},

        /// GitHub App private key file (PEM); or env-only GITSYNC_GITHUB_APP_PRIVATE_KEY
        #[arg(
            long,
            env = "GITSYNC_GITHUB_APP_PRIVATE_KEY_FILE",
            value_name = "PATH",
            help_heading = AUTH
        )]
        github_app_private_key_file: Option<String> => GithubAppPrivateKeyFile {},

        /// GitHub App application ID (or --github-app-client-id)
        #[arg(
            long,
            env = "GITSYNC_GITHUB_APP_APPLICATION_ID",
            value_name = "INT",
            help_heading = AUTH
        )]
        github_app_application_id: Option<String> => GithubAppApplicationId {},

        /// GitHub App client ID (or --github-app-application-id)
        #[arg(long, env = "GITSYNC_GITHUB_APP_CLIENT_ID", value_name = "ID", help_heading = AUTH)]
        github_app_client_id: Option<String> => GithubAppClientId {},

        /// GitHub App installation ID; with the key and one of the IDs above, an
        /// installation token is minted and refreshed before it expires
        #[arg(
            long,
            env = "GITSYNC_GITHUB_APP_INSTALLATION_ID",
            value_name = "INT",
            help_heading = AUTH
        )]
        github_app_installation_id: Option<String> => GithubAppInstallationId {},

        /// Git config as key:value,key:value (git-sync's grammar). Every key reaches the git
        /// upload-pack run for file:// repositories and the git exec hooks run; used here:
        /// http.proxy, http.sslCAInfo, http.sslVerify, http.extraHeader, http.cookieFile
        #[arg(long, env = "GITSYNC_GIT_CONFIG", value_name = "CONFIG", help_heading = AUTH)]
        git_config: Option<String> => GitConfig {
            legacy: ["GIT_SYNC_GIT_CONFIG"],
        },

        /// Submodules to check out: "recursive" (all, nested too), "shallow" (the
        /// repository's own submodules, not nested ones) or "off" (empty directories)
        #[arg(long, env = "GITSYNC_SUBMODULES", value_name = "MODE")]
        submodules: Option<String> => Submodules {
            legacy: ["GIT_SYNC_SUBMODULES"],
            default: "recursive" as Submodules,
        },

        /// Sparse checkout: a file of git's non-cone patterns (gitignore syntax, "!"
        /// negates); only matching paths are written into each worktree. Read at
        /// start-up; changed patterns apply after a restart
        #[arg(long, env = "GITSYNC_SPARSE_CHECKOUT_FILE", value_name = "PATH")]
        sparse_checkout_file: Option<String> => SparseCheckoutFile {
            legacy: ["GIT_SYNC_SPARSE_CHECKOUT_FILE"],
        },

        /// Partial clone: a fetch filter, "blob:none" or "blob:limit=<n>[k|m|g]"; the
        /// blobs a checkout needs (the sparse cone, or the whole tree) are fetched
        /// by id. The server must allow filters (uploadpack.allowFilter) and, over
        /// protocol v0/v1, fetches by id (uploadpack.allowAnySHA1InWant)
        #[arg(long, env = "GITSYNC_FILTER", value_name = "SPEC")]
        filter: Option<String> => Filter {},

        /// Object-store upkeep (there is no git gc to run; ours rewrites the store as one pack
        /// of what is still needed): auto and always compact when the packs have grown
        /// (past twice their compacted size + 1 MiB) and merge all packs but the largest
        /// at 16 packs, aggressive compacts after every fetch, off never (except after a
        /// --depth change); the submodules' stores alike. In every mode the shallow file
        /// drops the lines no walk needs once it has grown by 16
        #[arg(long, env = "GITSYNC_GIT_GC", value_name = "MODE")]
        git_gc: Option<String> => GitGc {
            legacy: ["GIT_SYNC_GIT_GC"],
            default: "always" as GitGc,
        },

        /// Add an /etc/passwd entry for this UID if it has none, as git-sync does (the
        /// built-in SSH client needs none; GIT_SSH_COMMAND's ssh and hooks' do); a
        /// warning if /etc/passwd cannot be written
        #[arg(
            long,
            env = "GITSYNC_ADD_USER",
            value_name = "BOOL",
            num_args = 0..=1,
            require_equals = true,
            default_missing_value = "true"
        )]
        add_user: Option<String> => AddUser {
            legacy: ["GIT_SYNC_ADD_USER"],
        },

        /// SSH private key file, repeatable; tried in order
        #[arg(
            long,
            env = "GITSYNC_SSH_KEY_FILE",
            value_name = "PATH",
            action = ArgAction::Append,
            help_heading = SSH
        )]
        ssh_key_file: Vec<String> => SshKeyFile {
            legacy: ["GIT_SYNC_SSH_KEY_FILE", "GIT_SSH_KEY_FILE"],
            default: "/etc/git-secret/ssh" as AbsolutePath,
            list: Colon,
        },

        /// Strict SSH host-key checking against --ssh-known-hosts-file
        #[arg(
            long,
            env = "GITSYNC_SSH_KNOWN_HOSTS",
            value_name = "BOOL",
            num_args = 0..=1,
            require_equals = true,
            default_missing_value = "true",
            help_heading = SSH
        )]
        ssh_known_hosts: Option<String> => SshKnownHosts {
            legacy: ["GIT_SYNC_KNOWN_HOSTS", "GIT_KNOWN_HOSTS"],
            default: "true" as Bool,
        },

        /// SSH known_hosts file (OpenSSH format)
        #[arg(long, env = "GITSYNC_SSH_KNOWN_HOSTS_FILE", value_name = "PATH", help_heading = SSH)]
        ssh_known_hosts_file: Option<String> => SshKnownHostsFile {
            legacy: ["GIT_SYNC_SSH_KNOWN_HOSTS_FILE", "GIT_SSH_KNOWN_HOSTS_FILE"],
            default: "/etc/git-secret/known_hosts" as AbsolutePath,
        },

        /// Environment-only GIT_SSH_COMMAND; this flag exists for tests
        #[arg(
            long = "__env__GIT_SSH_COMMAND",
            env = "GIT_SSH_COMMAND",
            value_name = "COMMAND",
            hide = true
        )]
        env_git_ssh_command: Option<String> => EnvGitSshCommand {},

        /// Environment-only GIT_SSL_CAINFO; this flag exists for tests
        #[arg(
            long = "__env__GIT_SSL_CAINFO",
            env = "GIT_SSL_CAINFO",
            value_name = "PATH",
            hide = true
        )]
        env_git_ssl_cainfo: Option<String> => EnvGitSslCaInfo {},

        /// Environment-only GIT_SSL_NO_VERIFY; this flag exists for tests
        #[arg(
            long = "__env__GIT_SSL_NO_VERIFY",
            env = "GIT_SSL_NO_VERIFY",
            value_name = "ANY",
            hide = true
        )]
        env_git_ssl_no_verify: Option<String> => EnvGitSslNoVerify {},

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
        cookie_file: Option<String> => CookieFile {
            legacy: ["GIT_SYNC_COOKIE_FILE", "GIT_COOKIE_FILE"],
        },

        // ---- signature verification ----------------------------------------------------------------
        /// Publish only what trusted keys signed: "none" (no check), "head" (the commit
        /// to publish carries a valid signature by an allowed key), "tag" (--ref is an
        /// annotated tag whose tag object is validly signed) or "tag-and-head" (both).
        /// Checked after the fetch, before anything is written; a refused commit is a
        /// failed sync and the previous content stays published. Needs
        /// --verify-allowed-signers or --verify-pgp-keyring, and "tag" a --ref naming
        /// the tag (see docs/verify.md)
        #[arg(long, env = "GITSYNC_VERIFY_SIGNATURES", value_name = "MODE", help_heading = VERIFY)]
        verify_signatures: Option<String> => VerifySignatures {
            default: "none" as VerifyMode,
        },

        /// OpenSSH allowed_signers file (as for `ssh-keygen -Y verify`, git's
        /// gpg.ssh.allowedSignersFile) trusted for SSH signatures; repeatable. Re-read at
        /// every sync (mount it from a Secret). The environment variable takes a
        /// colon-separated list
        #[arg(
            long,
            env = "GITSYNC_VERIFY_ALLOWED_SIGNERS",
            value_name = "PATH",
            action = ArgAction::Append,
            help_heading = VERIFY
        )]
        verify_allowed_signers: Vec<String> => VerifyAllowedSigners {
            list: Colon,
        },

        /// OpenPGP public keys (ASCII-armoured or binary, e.g. `gpg --export`) trusted
        /// for OpenPGP signatures; repeatable. Signing subkeys count; expired and revoked
        /// keys do not. Re-read at every sync. The environment variable takes a
        /// colon-separated list
        #[arg(
            long,
            env = "GITSYNC_VERIFY_PGP_KEYRING",
            value_name = "PATH",
            action = ArgAction::Append,
            help_heading = VERIFY
        )]
        verify_pgp_keyring: Vec<String> => VerifyPgpKeyring {
            list: Colon,
        },

        /// A signature only counts when the key belongs to the committer (tagger, for a
        /// tag): the object's e-mail must match a principal of the key's allowed_signers
        /// line (an OpenSSH pattern list, case-sensitive: `*@example.com` matches anyone
        /// there) or equal an e-mail of the OpenPGP key's user IDs (case-insensitive).
        /// Needs --verify-signatures
        #[arg(
            long,
            env = "GITSYNC_VERIFY_COMMITTERS",
            value_name = "BOOL",
            num_args = 0..=1,
            require_equals = true,
            default_missing_value = "true",
            help_heading = VERIFY
        )]
        verify_committers: Option<String> => VerifyCommitters {
            default: "false" as Bool,
        },

        /// The git executable; ignored: http(s)://, git:// and ssh:// run no git, and file:// or
        /// local-path repositories use the git on PATH
        #[arg(long, env = "GITSYNC_GIT", value_name = "PATH", help_heading = NOT_YET)]
        git: Option<String> => Git {
            legacy: ["GIT_SYNC_GIT"],
        },

        // ---- deprecated git-sync v3 flags (hidden) -------------------------------------------------
        /// DEPRECATED: use --ref
        #[arg(long, hide = true)]
        branch: Option<String> => Branch {
            legacy: ["GIT_SYNC_BRANCH"],
            v3: "use --ref instead",
        },

        /// DEPRECATED: use --ref
        #[arg(long, hide = true)]
        rev: Option<String> => Rev {
            legacy: ["GIT_SYNC_REV"],
            v3: "use --ref instead",
        },

        /// DEPRECATED: use --link
        #[arg(long, hide = true)]
        dest: Option<String> => Dest {
            legacy: ["GIT_SYNC_DEST"],
            v3: "use --link instead",
        },

        /// DEPRECATED: use --period (float seconds)
        #[arg(long, hide = true, allow_negative_numbers = true)]
        wait: Option<String> => Wait {
            legacy: ["GIT_SYNC_WAIT"],
            v3: "use --period instead",
        },

        /// DEPRECATED: use --sync-timeout (integer seconds)
        #[arg(long, hide = true, allow_negative_numbers = true)]
        timeout: Option<String> => Timeout {
            legacy: ["GIT_SYNC_TIMEOUT"],
            v3: "use --sync-timeout instead",
        },

        /// DEPRECATED: use --max-failures
        #[arg(long, hide = true, allow_negative_numbers = true)]
        max_sync_failures: Option<String> => MaxSyncFailures {
            legacy: ["GIT_SYNC_MAX_SYNC_FAILURES"],
            v3: "use --max-failures instead",
        },

        /// DEPRECATED: use --exechook-command
        #[arg(long, hide = true)]
        sync_hook_command: Option<String> => SyncHookCommand {
            legacy: ["GIT_SYNC_HOOK_COMMAND"],
            v3: "use --exechook-command instead",
        },

        /// DEPRECATED: use --password-file or $GITSYNC_PASSWORD
        #[arg(long = "password", hide = true)]
        deprecated_password: Option<Secret> => DeprecatedPassword {
            v3: "use --password-file or $GITSYNC_PASSWORD instead",
        },

        /// DEPRECATED: use -v or --verbose
        #[arg(long = "v", hide = true, allow_negative_numbers = true)]
        deprecated_v: Option<String> => DeprecatedV {
            v3: "use -v or --verbose instead",
        },

        /// DEPRECATED: no longer necessary
        #[arg(
            long,
            hide = true,
            num_args = 0..=1,
            require_equals = true,
            default_missing_value = "true"
        )]
        ssh: Option<String> => Ssh {
            v3: "it is no longer necessary",
        },

        /// DEPRECATED: use --group-write
        #[arg(long, hide = true, allow_negative_numbers = true)]
        change_permissions: Option<String> => ChangePermissions {
            legacy: ["GIT_SYNC_PERMISSIONS"],
            v3: "use --group-write instead",
        },
        ;

        /// Print help (git-sync's -? spelling)
        #[arg(short = '?', action = ArgAction::Help, hide = true)]
        help_alias: Option<bool>,

        /// Print the full manual (every flag, the on-disk layout, hooks, webhooks) and exit
        #[arg(long, action = ArgAction::SetTrue)]
        pub man: bool,

        /// Words that belong to no flag (`--one-time true`: a boolean flag takes
        /// no separate value). git-sync ignores them; so do we, with a warning.
        #[arg(hide = true, value_name = "IGNORED", num_args = 0..)]
        pub stray: Vec<String>,

        /// Filled by [`Cli::try_parse_with_env`].
        #[arg(skip)]
        pub provenance: Provenance,
    }
}
