//! What the HTTP endpoint is told to serve ([`HttpConfig`] and its parts):
//! built and validated by `config`, owned here, where they are used.

use std::time::Duration;

use crate::secret::SecretSet;
use crate::status::ReadinessConfig;

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
    /// Bearer tokens accepted by `POST /sync`; empty = the endpoint is
    /// disabled. Token files are read again when they change.
    pub trigger_tokens: SecretSet,
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

/// Incoming (forge → us) webhooks.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// URL path, starting with `/` (default `/webhook`).
    pub path: String,
    /// Active secrets (several during a rotation; files are read again
    /// when they change). Empty and not `allow_unsigned` = incoming
    /// webhooks are disabled.
    pub secrets: SecretSet,
    /// Accept requests without any signature (explicit operator opt-out).
    pub allow_unsigned: bool,
    /// Only pushes whose payload names this repository (loosely matched).
    pub repo_filter: Option<String>,
    /// Bodies above this are answered 413 before parsing.
    pub max_body_bytes: usize,
    /// Requests per minute allowed per client address (burst of the same size).
    pub rate_limit_per_minute: u32,
}
