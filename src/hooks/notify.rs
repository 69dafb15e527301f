//! The outgoing webhook: one HTTP request per attempt.
//!
//! Always sends `Gitsync-Hash: <hash>` plus the configured extra headers;
//! with `json_body`, a JSON body (`hash`, `previous_hash`, `ref`, `repo`,
//! `time`); with a signing secret, `X-Git-Sidecar-Signature-256:
//! sha256=<hex HMAC-SHA256 of the exact body bytes>` (an empty body is signed
//! too). The URL's credentials, query and fragment (which may hold tokens)
//! and the secret never reach a log line or an error message.

use hmac::{Hmac, KeyInit as _, Mac as _};
use reqwest::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use sha2::Sha256;

use super::OutgoingWebhookConfig;
use super::Publish;
use crate::types::error_chain;

/// The header carrying the signature.
pub(super) const SIGNATURE_HEADER: &str = "X-Git-Sidecar-Signature-256";

/// Response bytes read (and logged) at most.
const BODY_LOG_BYTES: usize = 1024;

pub(super) struct Webhook {
    config: OutgoingWebhookConfig,
    /// The client, or why none could be built (reported by every attempt).
    client: Result<reqwest::Client, String>,
}

impl Webhook {
    pub(super) fn new(config: OutgoingWebhookConfig) -> Self {
        // As Go's client (git-sync's) sends a request: a user agent and
        // header names in their canonical case, which receivers matching
        // `Gitsync-Hash` byte for byte expect.
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .user_agent(concat!("git-sidecar/", env!("CARGO_PKG_VERSION")))
            .http1_title_case_headers();
        // Nor does it send a request for this machine through a proxy
        // from the environment (a reload endpoint on localhost).
        if crate::types::is_loopback_url(config.url.expose()) {
            builder = builder.no_proxy();
        }
        let client = builder.build().map_err(|e| {
            format!(
                "could not set up the HTTP client: {}",
                error_chain(&e.without_url())
            )
        });
        Self { config, client }
    }

    /// One request; `Ok` when the response status is the configured success
    /// status (any completed response when none is configured).
    pub(super) async fn send(&self, publish: &Publish) -> Result<(), String> {
        let client = self.client.as_ref().map_err(Clone::clone)?;
        // Tokens often travel in the query (`?token=`): shown without it.
        let url = self.config.url.shown();
        let method = reqwest::Method::from_bytes(self.config.method.as_bytes())
            .map_err(|_| format!("invalid HTTP method {:?}", self.config.method))?;
        let body = if self.config.json_body {
            json_body(publish, std::time::SystemTime::now())
        } else {
            Vec::new()
        };
        use reqwest::Method;
        let sends_a_body = matches!(method, Method::POST | Method::PUT | Method::PATCH);
        let mut request = client
            .request(method, self.config.url.expose())
            .header("Gitsync-Hash", publish.hash.as_str());
        for (name, value) in &self.config.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("invalid webhook header name {name:?}"))?;
            // The value may be a credential: never quote it.
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("invalid value for webhook header {name}"))?;
            request = request.header(name, value);
        }
        if self.config.json_body {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        if let Some(secret) = &self.config.signing_secret {
            request = request.header(SIGNATURE_HEADER, signature(secret.expose(), &body));
        }
        // An empty body goes without a length unless told; front ends that
        // answer 411 Length Required want one for these methods, and Go's
        // client sends `Content-Length: 0`.
        if body.is_empty() && sends_a_body {
            request = request.header(CONTENT_LENGTH, 0);
        }
        let mut response = request.body(body).send().await.map_err(|e| {
            if e.is_timeout() {
                format!(
                    "{url}: no response within {}",
                    humantime::format_duration(self.config.timeout)
                )
            } else {
                format!("{url}: {}", error_chain(&e.without_url()))
            }
        })?;
        let status = response.status();
        let body = read_some(&mut response, BODY_LOG_BYTES).await;
        let body = String::from_utf8_lossy(&body);
        let body = body.trim();
        tracing::debug!(hook = "webhook", url = %url, status = status.as_u16(), body, "webhook response");
        match self.config.success_status {
            Some(expected) if status.as_u16() != expected => Err(format!(
                "{url} answered {status}, not {expected}{}",
                if body.is_empty() {
                    String::new()
                } else {
                    format!(": {body}")
                }
            )),
            _ => Ok(()),
        }
    }
}

/// `{"hash","previous_hash","ref","repo","time"}` (time in RFC 3339, UTC).
pub(super) fn json_body(publish: &Publish, now: std::time::SystemTime) -> Vec<u8> {
    let value = serde_json::json!({
        "hash": publish.hash,
        "previous_hash": publish.previous,
        "ref": publish.git_ref,
        "repo": publish.repo_redacted,
        "time": humantime::format_rfc3339_seconds(now).to_string(),
    });
    value.to_string().into_bytes()
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`.
pub(super) fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length; the error case cannot happen.
    match <Hmac<Sha256>>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(body);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        }
        Err(_) => String::from("sha256="),
    }
}

/// Up to `max` bytes of the response body; the rest is not read. Errors
/// (including the timeout) end it with what arrived so far.
async fn read_some(response: &mut reqwest::Response, max: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < max {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let take = chunk.len().min(max - body.len());
                body.extend_from_slice(&chunk[..take]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    body
}
