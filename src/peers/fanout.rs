//! One hint to one peer: a short timeout per attempt and a few retries
//! with backoff ([`crate::backoff`]; resolving `--peers` is retried alike),
//! the peer's answer read and classified. Each peer has its own queue
//! (`send.rs`), so a dead or slow pod delays nobody else.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use super::hint::SIGNATURE_HEADER;
use super::ENDPOINT;
use crate::backoff::{self, Jitter};
use crate::metrics::Metrics;

/// How long one attempt may take (connect, send, answer): a peer is in the
/// same cluster, and the hint only saves waiting for the next poll.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// Attempts per peer and delivery (and lookups of `--peers` per delivery).
pub const ATTEMPTS: u64 = 3;
const BACKOFF_BASE: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// The wait after the `attempt`-th failed attempt (of a send or a lookup).
pub fn retry_delay(attempt: u64) -> Duration {
    backoff::delay(BACKOFF_BASE, BACKOFF_MAX, attempt, Jitter::Equal)
}

/// How one peer's delivery ended (the metric's `result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Result {
    /// The peer took the hint and syncs (its answer's `result` is `ok`).
    Ok,
    /// The peer had it already (`duplicate_delivery`, `duplicate_commit`).
    Duplicate,
    /// The peer ignored it: its `--repo` or `--ref` differs from ours.
    Ignored,
    /// 401/403: the peer's secret differs (from the current one and, within
    /// the rotation grace, the previous one), or its clock (a stale hint);
    /// not retried.
    Refused,
    /// Another 4xx; not retried.
    Rejected,
    /// No answer within [`ATTEMPT_TIMEOUT`], every attempt.
    Timeout,
    /// No connection or a 5xx, every attempt; or, not retried, an answer
    /// no git-sidecar gives: a redirect (never followed: a hint goes to
    /// the resolved address and nowhere else), or a 2xx without a peer's
    /// `result`. Not `refused`, which says the secret or the clock differ:
    /// a redirect says that what answers at that address is not a peer.
    Error,
    /// In `/status` only, never counted: the send is under way.
    Sending,
    /// In `/status` only, never counted: not sent, because a newer hint of
    /// the same kind (with a commit, or without) was waiting for this peer
    /// and took its place.
    Superseded,
}

impl Result {
    pub fn label(self) -> &'static str {
        match self {
            Result::Ok => "ok",
            Result::Duplicate => "duplicate",
            Result::Ignored => "ignored",
            Result::Refused => "refused",
            Result::Rejected => "rejected",
            Result::Timeout => "timeout",
            Result::Error => "error",
            Result::Sending => "sending",
            Result::Superseded => "superseded",
        }
    }

    /// The peer answered as a peer and has the hint (acted on or not).
    pub fn reached(self) -> bool {
        matches!(self, Result::Ok | Result::Duplicate | Result::Ignored)
    }
}

/// One attempt's outcome.
struct Attempt {
    result: Result,
    /// What went wrong (status code, the peer's reason, or the error).
    detail: Option<String>,
    /// Whether another attempt may go better (a timeout, a failed
    /// connection, a 5xx), as opposed to an answer that would be the same.
    retry: bool,
}

impl Attempt {
    fn new(result: Result, detail: Option<String>) -> Self {
        Attempt {
            result,
            detail,
            retry: false,
        }
    }

    fn retried(result: Result, detail: String) -> Self {
        Attempt {
            result,
            detail: Some(detail),
            retry: true,
        }
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

/// Sends `body` to `address` until it answers or the attempts run out;
/// counts the retries, not the outcome.
pub async fn deliver(
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
    let mut attempts = 0;
    loop {
        attempts += 1;
        let Attempt {
            result,
            detail,
            retry,
        } = attempt_once(client, &url, body, signature).await;
        if result == Result::Refused {
            if let Some(older) = signatures.next() {
                signature = older;
                continue;
            }
        }
        if !retry || attempts >= ATTEMPTS {
            log_outcome(address, result, attempts, detail.as_deref());
            return PeerOutcome {
                address,
                result,
                attempts,
                detail,
            };
        }
        metrics.peer_hint_retry();
        tokio::time::sleep(retry_delay(attempts)).await;
    }
}

fn log_outcome(peer: SocketAddr, result: Result, attempts: u64, detail: Option<&str>) {
    let detail = detail.unwrap_or("");
    match result {
        Result::Ok | Result::Duplicate => {}
        Result::Ignored => {
            tracing::warn!(%peer, detail, "the peer ignored the hint: its --repo or --ref differs from ours")
        }
        _ => {
            tracing::warn!(%peer, result = result.label(), attempts, detail, "peer hint not delivered")
        }
    }
}

async fn attempt_once(
    client: &reqwest::Client,
    url: &str,
    body: &[u8],
    signature: &str,
) -> Attempt {
    let sent = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature)
        .body(body.to_vec())
        .send()
        .await;
    match sent {
        Ok(response) => classify(response).await,
        Err(e) if e.is_timeout() => Attempt::retried(
            Result::Timeout,
            format!("no answer within {}s", ATTEMPT_TIMEOUT.as_secs()),
        ),
        Err(e) => Attempt::retried(Result::Error, error_chain(&e.without_url())),
    }
}

/// What a peer's answer means, from its status and its JSON `result` and
/// `reason` (`src/http/peer_hint.rs`).
async fn classify(mut response: reqwest::Response) -> Attempt {
    use reqwest::StatusCode;
    let status = response.status();
    let answer = read_answer(&mut response).await;
    let detail = format!("HTTP {}{}", status.as_u16(), answer.reason_suffix());
    if status.is_redirection() {
        let detail = format!("{detail}: a redirect, not followed (a peer never redirects)");
        return Attempt::new(Result::Error, Some(detail));
    }
    if status.is_success() {
        return match answer.result.as_deref() {
            Some("ok") => Attempt::new(Result::Ok, None),
            Some(label @ ("duplicate_delivery" | "duplicate_commit")) => {
                Attempt::new(Result::Duplicate, Some(label.to_string()))
            }
            Some("ignored") => Attempt::new(Result::Ignored, Some(detail)),
            _ => Attempt::new(
                Result::Error,
                Some(format!("{detail}, not a peer's answer")),
            ),
        };
    }
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            Attempt::new(Result::Refused, Some(detail))
        }
        StatusCode::TOO_MANY_REQUESTS => Attempt::retried(Result::Error, detail),
        s if s.is_client_error() => Attempt::new(Result::Rejected, Some(detail)),
        _ => Attempt::retried(Result::Error, detail),
    }
}

/// A peer's JSON answer, as far as it could be read.
#[derive(Default)]
struct Answer {
    result: Option<String>,
    reason: Option<String>,
}

impl Answer {
    fn reason_suffix(&self) -> String {
        self.reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default()
    }
}

/// Largest answer read: a peer's is well under this, and whatever else
/// answers gets no more of our memory.
const MAX_ANSWER: usize = 4096;
/// Longest reason kept from an answer (it ends up in `/status` and logs).
const MAX_REASON: usize = 200;

async fn read_answer(response: &mut reqwest::Response) -> Answer {
    let mut body = Vec::new();
    while body.len() < MAX_ANSWER {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return Answer::default();
    };
    let text = |key: &str| {
        let raw = value.get(key)?.as_str()?;
        Some(
            raw.chars()
                .filter(|c| !c.is_control())
                .take(MAX_REASON)
                .collect(),
        )
    };
    Answer {
        result: text("result"),
        reason: text("reason"),
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
