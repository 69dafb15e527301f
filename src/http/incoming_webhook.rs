//! `POST <--incoming-webhook-path>`: authenticate what the headers allow,
//! then read the body within bounds, verify the signature over the raw
//! bytes, filter on event, repository and ref, and fire the sync trigger,
//! answering 202 at once. The payload's new SHA is only a hint, recorded as
//! the expected hash; the sync resolves the ref. The same delivery again
//! within minutes only triggers a sync: it is neither awaited again nor
//! announced to peers ([`super::replays`]).
//!
//! Memory is bounded before anything is verified:
//! - what the headers alone refuse (no credential while unsigned deliveries
//!   are not allowed, a malformed digest, a wrong GitLab token, a declared
//!   body over `--incoming-webhook-max-body`) is refused before a byte of
//!   the body is read;
//! - a body that must be read to be verified first takes its size (declared,
//!   else the maximum) from one [`BodyBuffer`] shared by all connections,
//!   waiting for room within the body timeout (then 503 + Retry-After).
//!   Waiting, not refusing: others' junk delays a real delivery, it cannot
//!   refuse it outright while the junk's own bodies are bounded in time.
//!
//! Only refusals before or at authentication (too large, too slow, an
//! unreadable body, a missing or wrong signature) are charged to the
//! client's failure budget; once it is spent they are answered 429. Behind
//! an Ingress every forge delivery shares its client address with whoever
//! sends junk, so a correctly signed delivery is never refused for others'
//! failures: its body is read and verified whatever the budget says.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::Shared;
use crate::forge::{self, Event, Rejection};

/// How long a client may take to send its body, counted from its headers
/// (waiting for room in the [`BodyBuffer`] included).
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// The least the [`BodyBuffer`] holds, whatever `--incoming-webhook-max-body`.
const MIN_BUFFER_BYTES: usize = 64 << 20;

/// The bytes of webhook bodies held before they are verified, across all
/// connections: max(64 MiB, twice `--incoming-webhook-max-body`), so that at
/// least two maximal deliveries fit at once. Without it, memory would only
/// be bounded by connections × maximum body.
pub(super) struct BodyBuffer {
    room: Arc<Semaphore>,
    total: u32,
    /// [`BODY_TIMEOUT`], shorter in tests.
    timeout: Duration,
}

impl BodyBuffer {
    pub(super) fn new(max_body: usize) -> Self {
        let total = MIN_BUFFER_BYTES
            .max(max_body.saturating_mul(2))
            .min(Semaphore::MAX_PERMITS)
            .min(u32::MAX as usize);
        // Lossless: bounded by u32::MAX just above.
        let total = total as u32;
        Self {
            room: Arc::new(Semaphore::new(total as usize)),
            total,
            timeout: BODY_TIMEOUT,
        }
    }

    /// The same with a shorter body timeout, for tests that wait it out.
    #[cfg(test)]
    pub(super) fn with_timeout(self, timeout: Duration) -> Self {
        Self { timeout, ..self }
    }

    /// Room for `bytes` (at most the whole buffer); waits for it, in order
    /// of arrival. Returned when the permit is dropped.
    async fn reserve(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let wanted = u32::try_from(bytes).unwrap_or(u32::MAX).min(self.total);
        self.room.clone().acquire_many_owned(wanted).await.ok()
    }

    /// The bytes not reserved now.
    #[cfg(test)]
    pub(super) fn available(&self) -> usize {
        self.room.available_permits()
    }

    /// The whole buffer, to fill it in tests.
    #[cfg(test)]
    pub(super) async fn reserve_all(&self) -> Option<OwnedSemaphorePermit> {
        self.reserve(self.total as usize).await
    }
}

/// Why a body could not be read.
enum ReadFailure {
    TooLarge,
    /// The client went away or sent a broken body (bad chunked encoding).
    Broken(String),
}

/// The body, at most `limit` bytes.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, ReadFailure> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(ReadFailure::TooLarge),
        Err(e) => Err(ReadFailure::Broken(broken_reason(&*e))),
    }
}

/// What went wrong with a body that is not too large, for the log and the
/// answer (no body bytes are quoted: hyper's errors carry none).
fn broken_reason(error: &(dyn std::error::Error + 'static)) -> String {
    let mut source = Some(error);
    while let Some(e) = source {
        let closed = e
            .downcast_ref::<hyper::Error>()
            .is_some_and(|h| h.is_incomplete_message())
            || e.downcast_ref::<std::io::Error>().is_some_and(|io| {
                use std::io::ErrorKind as K;
                matches!(
                    io.kind(),
                    K::UnexpectedEof | K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe
                )
            });
        if closed {
            return "the client closed the connection before sending the whole body".into();
        }
        source = e.source();
    }
    format!("the body could not be read: {error}")
}

pub async fn handle(
    State(state): State<Shared>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let timeout = state.body_buffer.timeout;
    let deadline = Instant::now() + timeout;
    let config = &state.config.webhook;
    let reply = |code: StatusCode, provider: &str, result: &'static str, reason: String| {
        state.metrics.webhook_request(provider, result);
        if code == StatusCode::TOO_MANY_REQUESTS || result == "duplicate_delivery" {
            // A junk or replay flood must not flood the log too; the metric counts it.
            tracing::debug!(provider, result, reason = %reason, client = %client.ip(), "incoming webhook");
        } else {
            tracing::info!(provider, result, reason = %reason, client = %client.ip(), "incoming webhook");
        }
        (code, Json(json!({ "result": result, "reason": reason }))).into_response()
    };
    // An unauthenticated refusal: charged to the client, 429 once its budget is spent.
    let refuse =
        |code: StatusCode, provider: &str, result: &'static str, reason: String| match state
            .limiter
            .charge_failure(client.ip())
        {
            Ok(()) => reply(code, provider, result, reason),
            Err(wait) => super::retry_after(
                reply(
                    StatusCode::TOO_MANY_REQUESTS,
                    provider,
                    "rate_limited",
                    format!("too many failed requests from this client ({reason})"),
                ),
                wait,
            ),
        };
    let rejected = |provider: forge::Provider, rejection: Rejection| {
        let (provider, result) = (provider.as_str(), rejection.metric_label());
        let reason = rejection.to_string();
        match rejection {
            // The sender is authenticated: never charged.
            Rejection::Malformed(_) => reply(StatusCode::BAD_REQUEST, provider, result, reason),
            Rejection::FormEncoded => {
                reply(StatusCode::UNSUPPORTED_MEDIA_TYPE, provider, result, reason)
            }
            Rejection::MissingSignature
            | Rejection::BadSignature
            | Rejection::BadToken
            | Rejection::StaleTimestamp(_)
            | Rejection::BadTimestamp(_) => {
                refuse(StatusCode::UNAUTHORIZED, provider, result, reason)
            }
        }
    };
    let secrets = state.webhook_secrets();
    if secrets.is_empty() && !config.allow_unsigned {
        return reply(
            StatusCode::FORBIDDEN,
            "unknown",
            "disabled",
            "incoming webhooks are disabled: no --incoming-webhook-secret-file or GITSYNC_INCOMING_WEBHOOK_SECRET".into(),
        );
    }
    // Whatever the headers alone refuse is refused before the body is read.
    let admitted = match forge::authenticate_headers(&headers, &secrets, config.allow_unsigned) {
        Ok(admitted) => admitted,
        Err((provider, rejection)) => return rejected(provider, rejection),
    };
    let provider = admitted.provider().as_str();
    let identity = admitted.identity();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || format!("the body exceeds {} bytes", config.max_body_bytes);
    if declared.is_some_and(|n| n > config.max_body_bytes as u64) {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            provider,
            "too_large",
            too_large(),
        );
    }
    // Lossless: at most max_body_bytes, a usize.
    let size = declared.map_or(config.max_body_bytes, |n| n as usize);
    let Ok(Some(_room)) = tokio::time::timeout_at(deadline, state.body_buffer.reserve(size)).await
    else {
        // Not the client's failure: not charged.
        let mut busy = reply(
            StatusCode::SERVICE_UNAVAILABLE,
            provider,
            "busy",
            format!(
                "too many webhook bodies are being received at once; none freed room within {}s; retry later",
                timeout.as_secs()
            ),
        );
        busy.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(timeout.as_secs().max(1)),
        );
        return busy;
    };
    // A client trickling its body must not hold the handler (or the room) for long.
    let read = read_body(body, config.max_body_bytes);
    let body = match tokio::time::timeout_at(deadline, read).await {
        Ok(Ok(body)) => body,
        Ok(Err(ReadFailure::TooLarge)) => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                provider,
                "too_large",
                too_large(),
            )
        }
        Ok(Err(ReadFailure::Broken(reason))) => {
            return refuse(StatusCode::BAD_REQUEST, provider, "bad_body", reason)
        }
        Err(_) => {
            let reason = format!("the body did not arrive within {}s", timeout.as_secs());
            return refuse(StatusCode::REQUEST_TIMEOUT, provider, "timeout", reason);
        }
    };

    let (provider, event) = match forge::verify_body(admitted, &headers, &body, &secrets) {
        Ok(parsed) => parsed,
        Err((provider, rejection)) => return rejected(provider, rejection),
    };
    let generic = provider == forge::Provider::Generic;
    let provider = provider.as_str();
    let push = match event {
        Event::Ping => return reply(StatusCode::OK, provider, "ping", "pong".into()),
        Event::Other { event } => {
            return reply(
                StatusCode::OK,
                provider,
                "ignored_event",
                format!("event {event:?} is not a push; ignored"),
            )
        }
        Event::Push(push) => push,
    };
    // A generic delivery may name no repository (an empty body, just `ref`
    // and `after`): signed with our secret, it is for us.
    let unnamed = generic && push.repo_urls.is_empty();
    if let Some(filter) = config.repo_filter.as_ref().filter(|_| !unnamed) {
        if !forge::repo_matches(filter, &push.repo_urls) {
            return reply(
                StatusCode::OK,
                provider,
                "ignored_repo",
                format!("the push is for another repository than {filter}; ignored"),
            );
        }
    }
    if let Err(reason) = forge::ref_matches(&state.git_ref, &push) {
        return reply(StatusCode::OK, provider, "ignored_ref", reason);
    }
    // In a multi-ref push (Bitbucket), judge by the ref that matched.
    if push.deleted_for(&state.git_ref) {
        return reply(
            StatusCode::OK,
            provider,
            "ignored_ref",
            "the ref was deleted; the published content is kept".into(),
        );
    }
    let expected = push.after_for(&state.git_ref).map(str::to_string);
    let fingerprint = super::replays::fingerprint(&identity, &body, expected.is_some());
    let now = Instant::now().into_std();
    if let Some(ago) = fingerprint.and_then(|f| state.recent_deliveries.seen_before(f, now)) {
        // A sync here costs a poll (coalesced) and publishes what the ref
        // names now, should an honest push have repeated a body; awaiting
        // its commit or telling the peers is what a replay must not cause.
        state.trigger.fire();
        return reply(
            StatusCode::ACCEPTED,
            provider,
            "duplicate_delivery",
            format!(
                "the same delivery was accepted {}s ago (a redelivery or a replay): a sync is \
                 triggered here, its commit not awaited again nor announced to peers",
                ago.as_secs()
            ),
        );
    }
    state.status.expect(expected.clone());
    state.trigger.fire();
    state.announce(expected.clone());
    let reason = match &expected {
        Some(after) => format!("sync triggered; expecting {after}"),
        None => "sync triggered".to_string(),
    };
    reply(StatusCode::ACCEPTED, provider, "ok", reason)
}
