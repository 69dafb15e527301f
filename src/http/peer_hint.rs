//! `POST /peers/hint`: a hint from another replica (`--peers`). The
//! signature is checked by [`crate::peers`]; a verified, new hint fires the
//! sync trigger with its expected commit, exactly as a webhook does
//! (coalesced with every other trigger). Nothing here sends a hint: a hint
//! is never forwarded, so replicas cannot loop.
//!
//! Every request is counted once, by the result it is answered with, and
//! logged. An unsigned or wrongly signed request (or a body that cannot be
//! read) is refused (401/400) and charged to the client's failure budget,
//! like a webhook with a bad signature; past the budget the answer is 429
//! `rate_limited`. Those are logged at most once a minute ([`JunkLog`]):
//! anyone can send them. A signed hint that is ignored or stale says that
//! the replicas' configuration or clocks differ: logged at info.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::Shared;
use crate::peers::{hint, Received, Refusal, SIGNATURE_HEADER};

/// How long a peer may take to send its (small) body.
const BODY_TIMEOUT: Duration = Duration::from_secs(5);

/// How a request ends.
enum Outcome {
    /// Without `--peers`.
    Disabled,
    /// Verified and acted on, or not (a duplicate, another repository).
    Received(Received),
    /// Refused before the sender was known to hold the secret: anyone's
    /// junk. Charged to the client's failure budget.
    Unauthenticated(StatusCode, &'static str, String),
    /// Signed, but unusable (stale, malformed): a peer's problem.
    Refused(StatusCode, Refusal),
}

pub async fn handle(
    State(state): State<Shared>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let outcome = decide(&state, &headers, body).await;
    finish(&state, client, outcome)
}

async fn decide(state: &Shared, headers: &HeaderMap, body: Body) -> Outcome {
    let Some(peers) = &state.peers else {
        return Outcome::Disabled;
    };
    let Some(signature) = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()) else {
        // Refused before a byte of the body is read.
        let refusal = Refusal::MissingSignature;
        return Outcome::Unauthenticated(
            StatusCode::UNAUTHORIZED,
            refusal.label(),
            refusal.to_string(),
        );
    };
    let read = axum::body::to_bytes(body, hint::MAX_BODY);
    let Ok(Ok(body)) = tokio::time::timeout(BODY_TIMEOUT, read).await else {
        let reason = format!(
            "the body is larger than {} bytes, broken, or slower than {}s",
            hint::MAX_BODY,
            BODY_TIMEOUT.as_secs()
        );
        return Outcome::Unauthenticated(StatusCode::BAD_REQUEST, "bad_body", reason);
    };
    match peers.receive(&body, Some(signature), |c| state.status.settled(c)) {
        Ok(received) => Outcome::Received(received),
        Err(refusal @ (Refusal::MissingSignature | Refusal::BadSignature)) => {
            Outcome::Unauthenticated(
                StatusCode::UNAUTHORIZED,
                refusal.label(),
                refusal.to_string(),
            )
        }
        Err(refusal @ Refusal::Stale(_)) => Outcome::Refused(StatusCode::FORBIDDEN, refusal),
        Err(refusal @ (Refusal::Malformed(_) | Refusal::BadCommit(_))) => {
            Outcome::Refused(StatusCode::BAD_REQUEST, refusal)
        }
    }
}

/// Acts on, counts, logs and answers `outcome`.
fn finish(state: &Shared, client: SocketAddr, outcome: Outcome) -> Response {
    let client = client.ip();
    let reply = |code: StatusCode, result: &'static str, reason: String| {
        state.metrics.peer_hint_received(result);
        (code, Json(json!({ "result": result, "reason": reason }))).into_response()
    };
    match outcome {
        Outcome::Disabled => {
            tracing::debug!(%client, "peer hint, but no --peers");
            reply(
                StatusCode::FORBIDDEN,
                "disabled",
                "peer hints are disabled: no --peers".into(),
            )
        }
        Outcome::Received(Received::Sync(commit)) => {
            tracing::info!(%client, commit = commit.as_deref().unwrap_or(""), "peer hint: syncing");
            state.status.expect(commit);
            state.trigger.fire();
            reply(StatusCode::ACCEPTED, "ok", "sync triggered".into())
        }
        Outcome::Received(duplicate @ Received::Duplicate(_)) => {
            let label = duplicate.label();
            tracing::debug!(%client, result = label, "peer hint: nothing to do");
            reply(StatusCode::OK, label, format!("nothing to do ({label})"))
        }
        Outcome::Received(Received::Foreign { repo, git_ref }) => {
            let reason = format!(
                "for {repo} {git_ref}, not this replica's {} {}",
                state.repo_redacted, state.git_ref
            );
            tracing::info!(%client, reason, "peer hint ignored: the replicas' --repo or --ref differ");
            reply(StatusCode::OK, "ignored", reason)
        }
        Outcome::Refused(code, refusal) => {
            let (label, reason) = (refusal.label(), refusal.to_string());
            match refusal {
                Refusal::Stale(_) => {
                    tracing::info!(%client, result = label, reason, "peer hint refused")
                }
                _ => tracing::warn!(%client, result = label, reason, "peer hint refused"),
            }
            reply(code, label, reason)
        }
        Outcome::Unauthenticated(code, label, reason) => {
            let Err(wait) = state.limiter.charge_failure(client) else {
                state.hint_junk.log(client, label, &reason);
                return reply(code, label, reason);
            };
            let reason = format!("too many failed requests from this client ({reason})");
            state.hint_junk.log(client, "rate_limited", &reason);
            super::retry_after(
                reply(StatusCode::TOO_MANY_REQUESTS, "rate_limited", reason),
                wait,
            )
        }
    }
}

/// The log of refused unauthenticated hints: anyone who can reach the
/// port can send them, so at most one line per [`JunkLog::EVERY`], saying
/// how many were left out before it (each one is counted in the metrics).
#[derive(Debug, Default)]
pub struct JunkLog {
    state: Mutex<JunkState>,
}

#[derive(Debug, Default)]
struct JunkState {
    last: Option<Instant>,
    left_out: u64,
}

impl JunkLog {
    /// Often enough to notice a misconfigured peer at once; rarely enough
    /// that a flood costs one line a minute.
    const EVERY: Duration = Duration::from_secs(60);

    fn log(&self, client: std::net::IpAddr, result: &'static str, reason: &str) {
        if let Some(left_out) = self.admit(Instant::now()) {
            // `left_out`: refusals since the last line, not logged.
            tracing::warn!(%client, result, reason, left_out, "peer hint refused");
        }
    }

    /// `Some(left out since the last line)` when a line may be written now.
    fn admit(&self, now: Instant) -> Option<u64> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let due = state
            .last
            .is_none_or(|last| now.duration_since(last) >= Self::EVERY);
        if !due {
            state.left_out += 1;
            return None;
        }
        state.last = Some(now);
        Some(std::mem::take(&mut state.left_out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junk_is_logged_once_a_minute_with_what_was_left_out() {
        let log = JunkLog::default();
        let t0 = Instant::now();
        assert_eq!(log.admit(t0), Some(0));
        for i in 1..=5 {
            assert_eq!(log.admit(t0 + Duration::from_secs(i)), None);
        }
        assert_eq!(log.admit(t0 + JunkLog::EVERY), Some(5));
        assert_eq!(log.admit(t0 + JunkLog::EVERY), None);
        assert_eq!(log.admit(t0 + JunkLog::EVERY * 3), Some(1));
    }
}
