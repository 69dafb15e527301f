//! The HTTP endpoint ([`HttpConfig`]): `--http-bind` and everything served
//! there (metrics, pprof, readiness, the incoming webhook, POST /sync, the
//! connection limits). `Some` exactly when `--http-bind` is non-empty; every
//! flag is still checked without it, and set ones report "requires
//! --http-bind".

use crate::cli::Flag;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use super::checker::{default_bool, default_bytes, default_duration, default_int, default_str};
use super::syntax::{fmt_duration, parse_byte_size, KIB, MIB};
use super::Checker;
use crate::cli::Cli;
pub use crate::http::{ConnectionLimits, HttpConfig, WebhookConfig};
pub use crate::status::ReadinessConfig;

/// Default `--readiness-max-staleness`: this many periods plus the sync timeout.
const DEFAULT_READINESS_STALENESS_PERIODS: u32 = 5;
const MIN_WEBHOOK_MAX_BODY: u64 = KIB;
const MAX_WEBHOOK_MAX_BODY: u64 = 64 * MIB;
/// Paths served by the HTTP endpoint itself, which the webhook must not take.
const RESERVED_HTTP_PATHS: &[&str] = &[
    "/",
    "/livez",
    "/readyz",
    "/status",
    "/metrics",
    "/sync",
    "/peers/hint",
];

// Defaults from the flag table (the type is the HTTP layer's).
impl Default for crate::http::ConnectionLimits {
    fn default() -> Self {
        Self {
            header_timeout: default_duration(Flag::HttpHeaderTimeout),
            idle_timeout: default_duration(Flag::HttpIdleTimeout),
            max_connections: default_int(Flag::HttpMaxConnections),
        }
    }
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

impl<'a> Checker<'a> {
    /// `--http-bind` and everything served there; `None` without `--http-bind`
    /// (or when something is invalid: reported). Every value is checked even
    /// without `--http-bind`, so that all mistakes show up at once.
    pub(super) fn http(&mut self, period: Duration, sync_timeout: Duration) -> Option<HttpConfig> {
        let cli: &'a Cli = self.cli;
        let bind_given = self.raw(Flag::HttpBind).is_some();
        let bind = self
            .raw(Flag::HttpBind)
            .and_then(|raw| match parse_http_bind(raw) {
                Ok(addr) => Some(addr),
                Err(e) => {
                    self.fail(Flag::HttpBind, e);
                    None
                }
            });
        let metrics = self
            .bool(Flag::HttpMetrics)
            .unwrap_or_else(|| default_bool(Flag::HttpMetrics));
        let pprof = self
            .bool(Flag::HttpPprof)
            .unwrap_or_else(|| default_bool(Flag::HttpPprof));
        if pprof && !cfg!(feature = "pprof") {
            self.fail(
                Flag::HttpPprof,
                "this binary was built without the `pprof` cargo feature; \
                 rebuild with default features (or `--features pprof`) to serve /debug/pprof/",
            );
        }

        // Readiness.
        let default_staleness = period
            .saturating_mul(DEFAULT_READINESS_STALENESS_PERIODS)
            .saturating_add(sync_timeout);
        let max_staleness = match self.duration_or(Flag::ReadinessMaxStaleness, default_staleness) {
            Some(d) if d.is_zero() => {
                self.fail(Flag::ReadinessMaxStaleness, "must be > 0");
                default_staleness
            }
            Some(d) => {
                if self.value(Flag::ReadinessMaxStaleness).is_some() && d <= period {
                    self.warnings.push(format!(
                        "{}: {} is not longer than --period ({}); /readyz may turn \
                         unready between two syncs",
                        self.cli.label(Flag::ReadinessMaxStaleness),
                        fmt_duration(d),
                        fmt_duration(period)
                    ));
                }
                d
            }
            None => default_staleness,
        };
        let max_failures = match self.int(Flag::ReadinessMaxFailures) {
            None => default_int(Flag::ReadinessMaxFailures),
            Some(v) => u32::try_from(v).unwrap_or_else(|_| {
                let msg = if v < 0 {
                    format!("must be 0 or more (0 = failures never make /readyz unready), got {v}")
                } else {
                    format!("too large: {v}")
                };
                self.fail(Flag::ReadinessMaxFailures, msg);
                default_int(Flag::ReadinessMaxFailures)
            }),
        };

        // Incoming webhooks.
        let path = match self.raw(Flag::IncomingWebhookPath) {
            None => default_str(Flag::IncomingWebhookPath).to_string(),
            Some(raw) => {
                if let Err(e) = validate_webhook_path(raw) {
                    self.fail(Flag::IncomingWebhookPath, e);
                }
                raw.to_string()
            }
        };
        let secrets = self.secret_set(
            Flag::IncomingWebhookSecretFile,
            &cli.incoming_webhook_secret_file,
            Flag::EnvIncomingWebhookSecret,
        );
        let allow_unsigned = self
            .bool(Flag::IncomingWebhookAllowUnsigned)
            .unwrap_or_else(|| default_bool(Flag::IncomingWebhookAllowUnsigned));
        let repo_filter = self
            .raw(Flag::IncomingWebhookRepo)
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_string);
        let max_body_bytes = match self.raw(Flag::IncomingWebhookMaxBody) {
            None => default_bytes(Flag::IncomingWebhookMaxBody),
            Some(raw) => match parse_byte_size(raw) {
                Ok(n) if (MIN_WEBHOOK_MAX_BODY..=MAX_WEBHOOK_MAX_BODY).contains(&n) => n,
                Ok(_) => {
                    self.fail(
                        Flag::IncomingWebhookMaxBody,
                        format!("must be between 1KiB and 64MiB, got {raw:?}"),
                    );
                    default_bytes(Flag::IncomingWebhookMaxBody)
                }
                Err(e) => {
                    self.fail(Flag::IncomingWebhookMaxBody, e);
                    default_bytes(Flag::IncomingWebhookMaxBody)
                }
            },
        };
        let rate_limit_per_minute = match self.int(Flag::IncomingWebhookRateLimit) {
            None => default_int(Flag::IncomingWebhookRateLimit),
            Some(v) => match u32::try_from(v) {
                Ok(n) if n >= 1 => n,
                _ => {
                    self.fail(
                        Flag::IncomingWebhookRateLimit,
                        format!("must be between 1 and {}, got {v}", u32::MAX),
                    );
                    default_int(Flag::IncomingWebhookRateLimit)
                }
            },
        };

        let connections = self.connection_limits();

        // POST /sync.
        let trigger_tokens = self.secret_set(
            Flag::SyncTriggerTokenFile,
            &cli.sync_trigger_token_file,
            Flag::EnvSyncTriggerToken,
        );

        if !bind_given {
            let mut given: Vec<Flag> = Vec::new();
            if metrics {
                given.push(Flag::HttpMetrics);
            }
            if pprof {
                given.push(Flag::HttpPprof);
            }
            for id in [
                Flag::HttpHeaderTimeout,
                Flag::HttpIdleTimeout,
                Flag::HttpMaxConnections,
                Flag::ReadinessMaxStaleness,
                Flag::ReadinessMaxFailures,
                Flag::IncomingWebhookPath,
            ] {
                if self.value(id).is_some() {
                    given.push(id);
                }
            }
            if !cli.incoming_webhook_secret_file.is_empty() {
                given.push(Flag::IncomingWebhookSecretFile);
            }
            if self.raw(Flag::EnvIncomingWebhookSecret).is_some() {
                given.push(Flag::EnvIncomingWebhookSecret);
            }
            if allow_unsigned {
                given.push(Flag::IncomingWebhookAllowUnsigned);
            }
            for id in [
                Flag::IncomingWebhookRepo,
                Flag::IncomingWebhookMaxBody,
                Flag::IncomingWebhookRateLimit,
            ] {
                if self.value(id).is_some() {
                    given.push(id);
                }
            }
            if !cli.sync_trigger_token_file.is_empty() {
                given.push(Flag::SyncTriggerTokenFile);
            }
            if self.raw(Flag::EnvSyncTriggerToken).is_some() {
                given.push(Flag::EnvSyncTriggerToken);
            }
            for id in given {
                self.fail(id, "requires --http-bind");
            }
            return None;
        }

        let unsigned_label = self.cli.label(Flag::IncomingWebhookAllowUnsigned);
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
                Flag::IncomingWebhookPath,
                Flag::IncomingWebhookRepo,
                Flag::IncomingWebhookMaxBody,
                Flag::IncomingWebhookRateLimit,
            ]
            .iter()
            .any(|&id| self.value(id).is_some())
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
    pub(super) fn connection_limits(&mut self) -> ConnectionLimits {
        let defaults = ConnectionLimits::default();
        let positive =
            |this: &mut Self, id: Flag, default: Duration| match this.duration_or(id, default) {
                Some(d) if d.is_zero() => {
                    this.fail(id, "must be more than 0");
                    default
                }
                Some(d) => d,
                None => default,
            };
        let header_timeout = positive(self, Flag::HttpHeaderTimeout, defaults.header_timeout);
        let idle_timeout = positive(self, Flag::HttpIdleTimeout, defaults.idle_timeout);
        let max_connections = match self.int(Flag::HttpMaxConnections) {
            None => defaults.max_connections,
            Some(v) => match usize::try_from(v) {
                Ok(n) if n >= 1 => n,
                _ => {
                    self.fail(
                        Flag::HttpMaxConnections,
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
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::tests::*;
    use super::super::*;
    use super::*;

    pub(in crate::config) fn http_of(c: &Config) -> &HttpConfig {
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
    #[cfg(feature = "pprof")]
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

    /// Built without the `pprof` feature, `--http-pprof` is refused saying
    /// why (there is nothing to serve); built with it, accepted.
    #[test]
    fn http_pprof_needs_the_pprof_feature() {
        let args = with(&["--http-bind=127.0.0.1:0", "--http-pprof"]);
        if cfg!(feature = "pprof") {
            assert!(http_of(&config(&args, &[])).pprof);
        } else {
            let p = problems(&args, &[]);
            assert_eq!(p.len(), 1, "{p:?}");
            assert!(
                p[0].starts_with("--http-pprof (GITSYNC_HTTP_PPROF): this binary was built without the `pprof` cargo feature"),
                "{p:?}"
            );
        }
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
}
