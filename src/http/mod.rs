//! The HTTP surface on `--http-bind`. It reads the shared [`StatusHandle`],
//! encodes [`Metrics`] and fires the sync [`Trigger`]; it never touches git
//! or the files under the root.
//!
//! Routes:
//! - `GET /livez`: 200 while the loop is not wedged (remote failures don't count)
//! - `GET /readyz`: 200 when content is published, fresh and syncs aren't failing
//! - `GET /status`: JSON snapshot of the loop
//! - `GET /metrics` (`--http-metrics`): Prometheus text
//! - `GET /debug/pprof/`, `/debug/pprof/profile` (`--http-pprof`): CPU profile
//! - `POST <--incoming-webhook-path>`: signed forge webhooks → sync
//! - `POST /sync`: bearer-token trigger for CI and operators
//! - `POST /peers/hint` (`--peers`): a signed hint from another replica → sync
//! - anything else: git-sync's health answer (503 `repo is not ready` until
//!   the first successful sync of this process, then 200)

mod incoming_webhook;
mod peer_hint;
#[cfg(feature = "pprof")]
mod pprof;
mod ratelimit;
mod replays;
mod serve;
mod settings;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use crate::metrics::{self, Metrics};
use crate::secret::SecretBytes;
use crate::status::{StatusHandle, StatusReport};
use crate::sync::Trigger;
pub use ratelimit::RateLimiter;
pub use settings::{ConnectionLimits, HttpConfig, WebhookConfig};

/// Everything the handlers share.
pub struct HttpState {
    pub config: HttpConfig,
    pub status: StatusHandle,
    pub metrics: Arc<Metrics>,
    pub trigger: Trigger,
    pub repo_redacted: String,
    pub git_ref: String,
    pub sync_timeout: Duration,
    limiter: RateLimiter,
    body_buffer: incoming_webhook::BodyBuffer,
    /// `--peers`: told of each accepted webhook and `POST /sync`.
    peers: Option<Arc<crate::peers::Peers>>,
    /// Refused unsigned hints, logged sparingly.
    hint_junk: peer_hint::JunkLog,
    /// Webhook deliveries accepted lately: a replay starts nothing.
    recent_deliveries: replays::RecentDeliveries,
}

impl HttpState {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: HttpConfig,
        status: StatusHandle,
        metrics: Arc<Metrics>,
        trigger: Trigger,
        repo_redacted: String,
        git_ref: String,
        sync_timeout: Duration,
    ) -> Self {
        let limiter = RateLimiter::new(config.webhook.rate_limit_per_minute);
        let body_buffer = incoming_webhook::BodyBuffer::new(config.webhook.max_body_bytes);
        Self {
            config,
            status,
            metrics,
            trigger,
            repo_redacted,
            git_ref,
            sync_timeout,
            limiter,
            body_buffer,
            peers: None,
            hint_junk: peer_hint::JunkLog::default(),
            recent_deliveries: replays::RecentDeliveries::default(),
        }
    }

    /// The incoming webhooks' secrets as they are now: a rotated Secret's
    /// file is read again (and its previous content still accepted for a
    /// while).
    fn webhook_secrets(&self) -> crate::forge::Secrets {
        crate::forge::Secrets::new(
            self.config
                .webhook
                .secrets
                .accepted()
                .iter()
                .map(|s| s.expose().to_vec())
                .collect(),
        )
    }

    /// With peer fan-out: accepted triggers are announced to `peers`, and
    /// their hints are received.
    pub fn with_peers(self, peers: Arc<crate::peers::Peers>) -> Self {
        Self {
            peers: Some(peers),
            ..self
        }
    }

    /// A verified trigger was accepted: the peers hear of it (never called
    /// for a peer's own hint).
    fn announce(&self, expected: Option<String>) {
        if let Some(peers) = &self.peers {
            peers.announce(expected);
        }
    }
}

type Shared = Arc<HttpState>;

/// The routes, without a socket (tests drive it with `oneshot`).
pub fn router(state: Shared) -> Router {
    let mut router = Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/sync", post(trigger_sync))
        .route(crate::peers::ENDPOINT, post(peer_hint::handle))
        .route(&state.config.webhook.path, post(incoming_webhook::handle));
    if state.config.metrics {
        router = router.route("/metrics", get(metrics_text));
    }
    #[cfg(feature = "pprof")]
    if state.config.pprof {
        router = router
            .route("/debug/pprof/", get(pprof::index))
            .route("/debug/pprof/profile", get(pprof::profile));
    }
    router.fallback(git_sync_health).with_state(state)
}

/// Binds `addr` (before the first sync, as git-sync does). `[::]` (what
/// `--http-bind :PORT` means) listens on IPv6 and IPv4 alike, as Go's `:PORT`
/// does, whatever the host's `net.ipv6.bindv6only`; a pod without IPv6 gets
/// `0.0.0.0` instead.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    if addr.ip() != IpAddr::V6(Ipv6Addr::UNSPECIFIED) {
        return tokio::net::TcpListener::bind(addr).await;
    }
    match dual_stack(addr) {
        Ok(listener) => tokio::net::TcpListener::from_std(listener),
        Err(e) if no_ipv6(&e) => {
            tracing::info!(error = %e, "no IPv6 here; listening on IPv4 only");
            tokio::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, addr.port())).await
        }
        Err(e) => Err(e),
    }
}

/// An IPv6 listener that also takes IPv4 connections (IPV6_V6ONLY off), set
/// up as tokio's own `bind` does (SO_REUSEADDR, non-blocking).
fn dual_stack(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_only_v6(false)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// tokio's (mio's) backlog for `TcpListener::bind`.
const LISTEN_BACKLOG: i32 = 1024;

/// IPv6 is off in this kernel or network namespace (`ipv6.disable=1`, or no
/// IPv6 address to bind at all).
fn no_ipv6(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL | libc::EPROTONOSUPPORT)
    )
}

/// Serves until `cancel`, within `limits` (see [`serve`](serve::serve)).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: ConnectionLimits,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    serve::serve(listener, router, limits, cancel).await
}

/// git-sync's catch-all: any path answers as health. A forge's delivery
/// sent to a near-miss path (`/webhook/`, `/Webhook`) would get 200, and the
/// forge would show success for a push that synced nothing: 404 instead,
/// naming the webhook's path.
async fn git_sync_health(
    State(state): State<Shared>,
    method: axum::http::Method,
    headers: HeaderMap,
) -> Response {
    if method == axum::http::Method::POST && crate::forge::looks_like_a_delivery(&headers) {
        let path = &state.config.webhook.path;
        return (
            StatusCode::NOT_FOUND,
            format!("no webhook here: the incoming webhook's path is {path}\n"),
        )
            .into_response();
    }
    if state.status.snapshot().synced_once {
        StatusCode::OK.into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "repo is not ready").into_response()
    }
}

async fn livez(State(state): State<Shared>) -> Response {
    match state.status.liveness(state.sync_timeout) {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason + "\n").into_response(),
    }
}

async fn readyz(State(state): State<Shared>) -> Response {
    match state.status.readiness(&state.config.readiness) {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason + "\n").into_response(),
    }
}

async fn status(State(state): State<Shared>) -> Response {
    let snapshot = state.status.snapshot();
    let readiness = state.status.readiness(&state.config.readiness);
    let report = StatusReport::new(&snapshot, &state.repo_redacted, &state.git_ref, readiness);
    let Some(peers) = &state.peers else {
        return Json(report).into_response();
    };
    // The last fan-out (`--peers`) next to the loop's own fields.
    let mut body = serde_json::to_value(report).unwrap_or_default();
    if let Some(object) = body.as_object_mut() {
        object.insert(
            "peers".into(),
            json!({ "last_fan_out": peers.last_fan_out() }),
        );
    }
    Json(body).into_response()
}

/// OpenMetrics for a scraper that asks for it (Prometheus does), the
/// Prometheus text format otherwise (curl, older parsers; what git-sync's
/// Go handler always serves).
async fn metrics_text(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let (content_type, body) = match prefers_openmetrics(accept) {
        true => (metrics::CONTENT_TYPE, state.metrics.encode()),
        false => (metrics::TEXT_CONTENT_TYPE, state.metrics.encode_text()),
    };
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// Whether the `Accept` header values rank OpenMetrics 1.0.0 at least as
/// high as the text format (RFC 9110 §12.5.1: media types in any case,
/// `q` weights, `q=0` meaning "not acceptable", the more specific range
/// first). An OpenMetrics range of another version than ours does not
/// count; no `Accept` at all is the text format.
fn prefers_openmetrics<'a>(accept: impl Iterator<Item = &'a str>) -> bool {
    let best = |slot: &mut Option<f32>, q: f32| *slot = Some(slot.map_or(q, |p| p.max(q)));
    let (mut openmetrics, mut text, mut wildcard) = (None, None, None);
    for range in accept.flat_map(|v| v.split(',')) {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let (mut q, mut version) = (1.0_f32, None);
        for (name, value) in parts.filter_map(|p| p.split_once('=')) {
            let value = value.trim().trim_matches('"');
            match name.trim().to_ascii_lowercase().as_str() {
                "q" => q = value.parse().unwrap_or(0.0),
                "version" => version = Some(value),
                _ => {}
            }
        }
        match media.as_str() {
            "application/openmetrics-text" if version.is_none_or(|v| v == "1.0.0") => {
                best(&mut openmetrics, q)
            }
            "text/plain" if version.is_none_or(|v| v == "0.0.4") => best(&mut text, q),
            "text/*" | "*/*" => best(&mut wildcard, q),
            _ => {}
        }
    }
    // An exact range outweighs a wildcard, whatever their order.
    let text = text.or(wildcard).unwrap_or(0.0);
    openmetrics.is_some_and(|om| om > 0.0 && om >= text)
}

/// `POST /sync` with `Authorization: Bearer <token>` (the scheme in any
/// case, RFC 7235). Like webhooks, only failed requests spend the client's
/// budget, so others' failures never lock out a caller with the token.
async fn trigger_sync(
    State(state): State<Shared>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let reply = |code: StatusCode, result: &'static str, reason: &str| {
        state.metrics.webhook_request("trigger", result);
        (code, Json(json!({ "result": result, "reason": reason }))).into_response()
    };
    if state.config.trigger_tokens.is_empty() {
        return reply(
            StatusCode::FORBIDDEN,
            "disabled",
            "the sync trigger is disabled: no --sync-trigger-token-file or GITSYNC_SYNC_TRIGGER_TOKEN",
        );
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .unwrap_or_default();
    if !token_matches(
        presented.as_bytes(),
        &state.config.trigger_tokens.accepted(),
    ) {
        if let Err(wait) = state.limiter.charge_failure(client.ip()) {
            return retry_after(
                reply(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "too many failed requests from this client (missing or wrong bearer token)",
                ),
                wait,
            );
        }
        return reply(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token: send Authorization: Bearer <the content of --sync-trigger-token-file>",
        );
    }
    state.trigger.fire();
    state.announce(None);
    reply(StatusCode::ACCEPTED, "ok", "sync triggered")
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is
/// case-insensitive and followed by one or more spaces (RFC 7235, 6750).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' ').trim_end())
}

/// Constant-time comparison against every token (digests make lengths equal).
/// Adds `Retry-After` to a 429: whole seconds, rounded up (a client that
/// waits that long has a request in its budget again).
fn retry_after(mut response: Response, wait: Duration) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    response.headers_mut().insert(
        header::RETRY_AFTER,
        axum::http::HeaderValue::from(seconds.max(1)),
    );
    response
}

fn token_matches(presented: &[u8], tokens: &[SecretBytes]) -> bool {
    let presented = Sha256::digest(presented);
    let mut matched = subtle::Choice::from(0);
    for token in tokens {
        matched |= presented.ct_eq(&Sha256::digest(token.expose()));
    }
    bool::from(matched) && !tokens.is_empty()
}

#[cfg(test)]
mod tests;
