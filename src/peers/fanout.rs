//! One delivery to every peer: in parallel, each with a short timeout and a
//! few retries with backoff ([`crate::backoff`]), so a dead or slow pod
//! delays nobody else. The outcome of each peer is counted and kept for
//! `/status`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::hint::SIGNATURE_HEADER;
use super::ENDPOINT;
use crate::backoff::{self, Jitter};
use crate::metrics::Metrics;

/// How long one attempt may take (connect, send, answer): a peer is in the
/// same cluster, and the hint only saves waiting for the next poll.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// Attempts per peer and delivery.
pub const ATTEMPTS: u64 = 3;
const BACKOFF_BASE: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// How one peer's delivery ended (the metric's `result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Result {
    /// 2xx: the peer took it (or already had it).
    Ok,
    /// 401/403: the peer's secret differs (from the current one and, within
    /// the rotation grace, the previous one); not retried.
    Refused,
    /// Another 4xx; not retried.
    Rejected,
    /// No answer within [`ATTEMPT_TIMEOUT`], every attempt.
    Timeout,
    /// No connection, or a 5xx, every attempt.
    Error,
}

impl Result {
    pub fn label(self) -> &'static str {
        match self {
            Result::Ok => "ok",
            Result::Refused => "refused",
            Result::Rejected => "rejected",
            Result::Timeout => "timeout",
            Result::Error => "error",
        }
    }

    fn retried(self) -> bool {
        matches!(self, Result::Timeout | Result::Error)
    }
}

/// One peer's part of a fan-out.
#[derive(Debug, Clone, Serialize)]
pub struct PeerOutcome {
    pub address: SocketAddr,
    pub result: Result,
    pub attempts: u64,
    /// What went wrong last (status code or error), never a secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Sends `body` to every address in parallel; returns when each has
/// answered or given up.
pub async fn deliver_all(
    client: &reqwest::Client,
    metrics: &Arc<Metrics>,
    peers: impl IntoIterator<Item = SocketAddr>,
    body: Arc<Vec<u8>>,
    signatures: Arc<Vec<String>>,
) -> Vec<PeerOutcome> {
    let mut set = tokio::task::JoinSet::new();
    for address in peers {
        let (client, metrics) = (client.clone(), metrics.clone());
        let (body, signatures) = (body.clone(), signatures.clone());
        set.spawn(async move {
            let outcome = deliver(&client, &metrics, address, &body, &signatures).await;
            metrics.peer_hint_sent(outcome.result.label());
            outcome
        });
    }
    let mut outcomes = Vec::new();
    while let Some(joined) = set.join_next().await {
        if let Ok(outcome) = joined {
            outcomes.push(outcome);
        }
    }
    outcomes.sort_by_key(|o| o.address);
    outcomes
}

async fn deliver(
    client: &reqwest::Client,
    metrics: &Metrics,
    address: SocketAddr,
    body: &[u8],
    signatures: &[String],
) -> PeerOutcome {
    let url = format!("http://{address}{ENDPOINT}");
    // The current secret's signature first, then the previous secret's.
    let mut signatures = signatures.iter();
    let mut signature = signatures.next().map_or("", String::as_str);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (result, detail) = attempt_once(client, &url, body, signature).await;
        if result == Result::Refused {
            if let Some(older) = signatures.next() {
                signature = older;
                continue;
            }
        }
        if !result.retried() || attempt >= ATTEMPTS {
            if result != Result::Ok {
                tracing::warn!(peer = %address, result = result.label(), attempts = attempt, detail = detail.as_deref().unwrap_or(""), "peer hint not delivered");
            }
            return PeerOutcome {
                address,
                result,
                attempts: attempt,
                detail,
            };
        }
        metrics.peer_hint_retry();
        tokio::time::sleep(backoff::delay(
            BACKOFF_BASE,
            BACKOFF_MAX,
            attempt,
            Jitter::Equal,
        ))
        .await;
    }
}

async fn attempt_once(
    client: &reqwest::Client,
    url: &str,
    body: &[u8],
    signature: &str,
) -> (Result, Option<String>) {
    let sent = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature)
        .body(body.to_vec())
        .send()
        .await;
    match sent {
        Ok(response) => {
            let status = response.status();
            let detail = Some(format!("HTTP {}", status.as_u16()));
            if status.is_success() {
                (Result::Ok, None)
            } else if status == reqwest::StatusCode::UNAUTHORIZED
                || status == reqwest::StatusCode::FORBIDDEN
            {
                (Result::Refused, detail)
            } else if status.is_client_error() && status != reqwest::StatusCode::TOO_MANY_REQUESTS {
                (Result::Rejected, detail)
            } else {
                (Result::Error, detail)
            }
        }
        Err(e) if e.is_timeout() => (
            Result::Timeout,
            Some(format!("no answer within {}s", ATTEMPT_TIMEOUT.as_secs())),
        ),
        Err(e) => (Result::Error, Some(error_chain(&e.without_url()))),
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
