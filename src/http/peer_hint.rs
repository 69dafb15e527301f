//! `POST /peers/hint`: a hint from another replica (`--peers`). The
//! signature is checked by [`crate::peers`]; a verified, new hint fires the
//! sync trigger with its expected commit, exactly as a webhook does
//! (coalesced with every other trigger). Nothing here sends a hint: a hint
//! is never forwarded, so replicas cannot loop.
//!
//! An unsigned or wrongly signed request is refused (401) and charged to
//! the client's failure budget, like a webhook with a bad signature.

use std::net::SocketAddr;
use std::time::Duration;

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

pub async fn handle(
    State(state): State<Shared>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let reply = |code: StatusCode, result: &'static str, reason: String| {
        tracing::debug!(result, reason = %reason, client = %client.ip(), "peer hint");
        (code, Json(json!({ "result": result, "reason": reason }))).into_response()
    };
    let refuse = |code: StatusCode, result: &'static str, reason: String| match state
        .limiter
        .charge_failure(client.ip())
    {
        Ok(()) => reply(code, result, reason),
        Err(wait) => super::retry_after(
            reply(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many failed requests from this client ({reason})"),
            ),
            wait,
        ),
    };
    let Some(peers) = &state.peers else {
        state.metrics.peer_hint_received("disabled");
        return reply(
            StatusCode::FORBIDDEN,
            "disabled",
            "peer hints are disabled: no --peers".into(),
        );
    };
    let signature = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    if signature.is_none() {
        // Refused before a byte of the body is read.
        let refusal = Refusal::MissingSignature;
        state.metrics.peer_hint_received(refusal.label());
        return refuse(
            StatusCode::UNAUTHORIZED,
            refusal.label(),
            refusal.to_string(),
        );
    }
    let read = axum::body::to_bytes(body, hint::MAX_BODY);
    let body = match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Ok(Ok(body)) => body,
        Ok(Err(_)) | Err(_) => {
            state.metrics.peer_hint_received("bad_body");
            return refuse(
                StatusCode::BAD_REQUEST,
                "bad_body",
                format!(
                    "the body is larger than {} bytes, broken, or slower than {}s",
                    hint::MAX_BODY,
                    BODY_TIMEOUT.as_secs()
                ),
            );
        }
    };
    match peers.receive(&body, signature, |c| state.status.settled(c)) {
        Ok(Received::Sync(commit)) => {
            tracing::info!(client = %client.ip(), commit = commit.as_deref().unwrap_or(""), "peer hint: syncing");
            state.status.expect(commit);
            state.trigger.fire();
            reply(StatusCode::ACCEPTED, "ok", "sync triggered".into())
        }
        Ok(other) => {
            let label = other.label();
            reply(StatusCode::OK, label, format!("nothing to do ({label})"))
        }
        Err(refusal @ (Refusal::MissingSignature | Refusal::BadSignature)) => refuse(
            StatusCode::UNAUTHORIZED,
            refusal.label(),
            refusal.to_string(),
        ),
        Err(refusal @ Refusal::Stale(_)) => {
            reply(StatusCode::FORBIDDEN, refusal.label(), refusal.to_string())
        }
        Err(refusal @ (Refusal::Malformed(_) | Refusal::BadCommit(_))) => reply(
            StatusCode::BAD_REQUEST,
            refusal.label(),
            refusal.to_string(),
        ),
    }
}
