//! `POST <--incoming-webhook-path>`: cap the body, verify the signature over
//! the raw bytes, filter on event, repository and ref, then fire the sync
//! trigger and answer 202 at once. The payload's new SHA is only a hint,
//! recorded as the expected hash; the sync resolves the ref.
//!
//! Only refusals before or at authentication (too large, too slow, missing
//! or wrong signature) are charged to the client's failure budget; once it
//! is spent they are answered 429. The body is always read (it is bounded)
//! and verified first: behind an Ingress, every forge delivery shares its
//! client address with whoever sends junk, so a correctly signed delivery is
//! never refused for others' failures.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::Shared;

/// How long a client may take to send its body.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
use crate::webhook::{self, Event, Rejection};

pub async fn handle(
    State(state): State<Shared>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let config = &state.config.webhook;
    let reply = |code: StatusCode, provider: &str, result: &'static str, reason: String| {
        state.metrics.webhook_request(provider, result);
        if code == StatusCode::TOO_MANY_REQUESTS {
            // A junk flood must not flood the log too; the metric counts it.
            tracing::debug!(provider, result, reason = %reason, client = %client.ip(), "incoming webhook");
        } else {
            tracing::info!(provider, result, reason = %reason, client = %client.ip(), "incoming webhook");
        }
        (code, Json(json!({ "result": result, "reason": reason }))).into_response()
    };
    // An unauthenticated refusal: charged to the client, 429 once its budget is spent.
    let refuse = |code: StatusCode, provider: &str, result: &'static str, reason: String| {
        if state.limiter.charge_failure(client.ip()) {
            reply(code, provider, result, reason)
        } else {
            reply(
                StatusCode::TOO_MANY_REQUESTS,
                provider,
                "rate_limited",
                format!("too many failed requests from this client ({reason})"),
            )
        }
    };
    if state.secrets.is_empty() && !config.allow_unsigned {
        return reply(
            StatusCode::FORBIDDEN,
            "unknown",
            "disabled",
            "incoming webhooks are disabled: no --incoming-webhook-secret-file or GITSYNC_INCOMING_WEBHOOK_SECRET".into(),
        );
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || format!("the body exceeds {} bytes", config.max_body_bytes);
    if declared.is_some_and(|n| n > config.max_body_bytes as u64) {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "unknown",
            "too_large",
            too_large(),
        );
    }
    // A client trickling its body must not hold the handler for long.
    let read = axum::body::to_bytes(body, config.max_body_bytes);
    let body = match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Ok(Ok(body)) => body,
        Ok(Err(_)) => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "unknown",
                "too_large",
                too_large(),
            )
        }
        Err(_) => {
            let reason = format!("the body did not arrive within {}s", BODY_TIMEOUT.as_secs());
            return refuse(StatusCode::REQUEST_TIMEOUT, "unknown", "timeout", reason);
        }
    };

    let (provider, event) =
        match webhook::verify_and_parse(&headers, &body, &state.secrets, config.allow_unsigned) {
            Ok(parsed) => parsed,
            Err((provider, rejection)) => {
                let (provider, result) = (provider.as_str(), rejection.metric_label());
                let reason = rejection.to_string();
                return match rejection {
                    // The sender is authenticated: never charged.
                    Rejection::Malformed(_) => {
                        reply(StatusCode::BAD_REQUEST, provider, result, reason)
                    }
                    Rejection::FormEncoded => {
                        reply(StatusCode::UNSUPPORTED_MEDIA_TYPE, provider, result, reason)
                    }
                    Rejection::MissingSignature | Rejection::BadSignature | Rejection::BadToken => {
                        refuse(StatusCode::UNAUTHORIZED, provider, result, reason)
                    }
                };
            }
        };
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
    if let Some(filter) = &config.repo_filter {
        if !webhook::repo_matches(filter, &push.repo_urls) {
            return reply(
                StatusCode::OK,
                provider,
                "ignored_repo",
                format!("the push is for another repository than {filter}; ignored"),
            );
        }
    }
    if let Err(reason) = webhook::ref_matches(&state.git_ref, &push) {
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
    state.status.expect(expected.clone());
    state.trigger.fire();
    let reason = match &expected {
        Some(after) => format!("sync triggered; expecting {after}"),
        None => "sync triggered".to_string(),
    };
    reply(StatusCode::ACCEPTED, provider, "ok", reason)
}
