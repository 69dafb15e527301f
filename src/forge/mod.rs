//! Incoming webhooks: verifying a forge's signed delivery and learning which
//! ref moved.
//!
//! This module owns the step between "a request reached the webhook endpoint"
//! and "this is what the request says", in two parts: what the headers alone
//! decide, before the body is read ([`authenticate_headers`]: provider
//! detection, a missing or malformed credential, GitLab's token), then the
//! HMAC over the raw body, once read into a bounded buffer, and payload
//! parsing ([`verify_body`]; [`verify_and_parse`] does both); and the two
//! filters the caller applies afterwards ([`ref_matches`], [`repo_matches`]).
//! It does no I/O, keeps
//! no state, never logs, and never panics on any input. Serving HTTP, capping
//! the body, rate limiting, deduplicating deliveries and triggering the sync are
//! the caller's.
//!
//! # Providers
//!
//! The provider is detected from the *event* header, in this order (Forgejo
//! and Gitea also send the GitHub and Gogs aliases):
//!
//! | provider | event header | credential accepted (the first one present with a digest is checked) | push events |
//! |---|---|---|---|
//! | Forgejo | `X-Forgejo-Event` | `X-Forgejo-Signature`, `X-Gitea-Signature`, `X-Gogs-Signature` (bare hex), `X-Hub-Signature-256` (`sha256=`) | `push` |
//! | Gitea | `X-Gitea-Event` | `X-Gitea-Signature`, `X-Gogs-Signature` (bare hex), `X-Hub-Signature-256` (`sha256=`) | `push` |
//! | GitHub | `X-GitHub-Event` | `X-Hub-Signature-256` (`sha256=`) | `push` (`ping` is [`Event::Ping`]) |
//! | GitLab | `X-Gitlab-Event` | `webhook-signature` (its signing token, Standard Webhooks), `X-Gitlab-Token` (the secret itself) | `Push Hook`, `Tag Push Hook`, push-kind `System Hook` |
//! | Bitbucket Server/DC | `X-Event-Key` with a Server key (`repo:refs_changed`, `diagnostics:ping`, `pr:*`, ...) | `X-Hub-Signature` (`sha256=`) | `repo:refs_changed` (`diagnostics:ping` is [`Event::Ping`]) |
//! | Bitbucket Cloud | any other `X-Event-Key` | `X-Hub-Signature` (`sha256=`) | `repo:push` |
//! | Generic | none of the above | `webhook-signature` (Standard Webhooks), `X-Signature` (`sha256=` or `sha512=`), `X-Hub-Signature-256`, `X-Hub-Signature` (`sha256=`), `X-Gogs-Signature`, `X-Gitlab-Token` | every request |
//!
//! `sha256=` means hex HMAC-SHA256(secret, raw body); `sha512=` HMAC-SHA512.
//! Prefixes and hex digits are accepted in either case.
//!
//! [Standard Webhooks](https://www.standardwebhooks.com/) (what GitLab's
//! signing token sends): `webhook-signature: v1,<base64 HMAC-SHA256 of
//! "<webhook-id>.<webhook-timestamp>.<raw body>">` (several signatures may
//! be sent, space-separated or on several lines; one matching is enough;
//! Svix's `svix-*` names for the three headers are read too), keyed with the
//! base64-decoded part of a `whsec_<base64>` secret, or with the secret's
//! bytes as they are. `webhook-timestamp` (Unix seconds) must be within
//! [`STANDARD_TOLERANCE_SECS`] of this machine's clock, which makes a
//! captured delivery useless after that. Hand-written on `hmac` and
//! `base64`: the `standardwebhooks` crate checks headers and body in one
//! call (we refuse on headers before reading a body), takes one secret,
//! and would add a second `base64` and `time`.
//!
//! # Security rules
//!
//! - The credential is checked over the exact raw bytes *before* the body is
//!   parsed. HMACs are compared with `hmac`'s constant-time `verify_slice`;
//!   GitLab's plain token is compared as SHA-256 digests with `subtle`, so
//!   neither its content nor its length leaks through timing. Every configured
//!   secret is tried, without stopping at the first match (rotation).
//! - Only SHA-256/512 HMACs are accepted. A request carrying only the legacy
//!   `X-Hub-Signature: sha1=...` is a [`Rejection::BadSignature`], never an
//!   unsigned request.
//! - Unsigned requests (no recognised credential header at all) are refused
//!   with [`Rejection::MissingSignature`] unless the caller allows them. A
//!   credential that is present but wrong is refused even then. A credential
//!   header with an empty digest (`X-Gitea-Signature: `, `sha256=`: what
//!   Gitea and Forgejo send for a hook without a secret) counts as absent.
//! - [`Secrets::new`] drops empty secrets: an empty key would let anyone
//!   compute a valid signature (or send an empty GitLab token).
//! - Error messages never quote the body (older Forgejo versions put the
//!   secret inside it) and [`Secrets`]' `Debug` shows only the count.
//! - Signatures other than Standard Webhooks' cover no timestamp, so a
//!   captured delivery can be replayed; that only causes a redundant fetch,
//!   which the caller should rate-limit.
//! - The payload's `after` is advisory: the caller fetches and resolves the ref
//!   itself, and may use `after` as the expected commit.
//!
//! Not supported: Standard Webhooks' asymmetric `v1a` (ed25519)
//! signatures, Azure DevOps (basic auth only), and form-encoded
//! (`payload=`) deliveries, GitHub's default content type (also offered by
//! Gitea and Forgejo): once verified they are [`Rejection::FormEncoded`],
//! whose message says to choose `application/json`. Generic senders are not
//! judged by their content type (`curl -d` labels JSON as form-encoded).

mod matching;
mod payload;
#[cfg(test)]
mod tests;

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;

use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, HeaderValue};
use sha2::{Digest, Sha256, Sha512};
use subtle::{Choice, ConstantTimeEq};

pub use matching::{ref_matches, repo_matches};

/// The forge (or generic sender) a delivery came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    GitHub,
    GitLab,
    Gitea,
    Forgejo,
    BitbucketCloud,
    BitbucketServer,
    Generic,
}

impl Provider {
    /// A stable lowercase name, for logs and metric labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            Provider::GitHub => "github",
            Provider::GitLab => "gitlab",
            Provider::Gitea => "gitea",
            Provider::Forgejo => "forgejo",
            Provider::BitbucketCloud => "bitbucket-cloud",
            Provider::BitbucketServer => "bitbucket-server",
            Provider::Generic => "generic",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Shared secrets; several may be active (rotation). Debug prints only the count.
///
/// Empty secrets are dropped by [`Secrets::new`] (an empty key authenticates
/// anyone), so [`Secrets::len`] counts the usable ones.
#[derive(Clone, Default)]
pub struct Secrets {
    secrets: Vec<Vec<u8>>,
}

impl Secrets {
    pub fn new(secrets: Vec<Vec<u8>>) -> Self {
        Secrets {
            secrets: secrets.into_iter().filter(|s| !s.is_empty()).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    pub fn len(&self) -> usize {
        self.secrets.len()
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("count", &self.secrets.len())
            .finish()
    }
}

/// What a verified request says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A push (or tag push). `git_ref` is the full ref name (refs/heads/x, refs/tags/y) when the payload has one.
    Push(Push),
    /// ping / diagnostics:ping / test events: answer 2xx, do nothing.
    Ping,
    /// Verified but not a push (e.g. issues, pull_request): acknowledged and ignored.
    ///
    /// `event` is the event header's value (visible ASCII, at most 128 bytes;
    /// empty when absent or unreadable).
    Other { event: String },
}

/// One push delivery.
///
/// Most forges send one delivery per ref. Bitbucket Cloud and Server can
/// report several ref changes in one delivery: the first becomes `git_ref` /
/// `after` / `deleted`, the rest go to `other_refs`, and [`ref_matches`]
/// considers all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Push {
    /// The full ref name (`refs/heads/x`, `refs/tags/y`); `None` only for a
    /// generic "sync now" request that names no ref.
    pub git_ref: Option<String>,
    /// New commit id if the payload names one (40 hex, lowercase); None for deletions/unknown.
    pub after: Option<String>,
    /// The ref was deleted (the payload says so, or `after` is all zeros).
    pub deleted: bool,
    /// Clone/web URLs of the repository found in the payload (for the optional repo filter).
    pub repo_urls: Vec<String>,
    /// The repository's default branch if the payload says (GitHub repository.default_branch, GitLab project.default_branch), short name.
    pub default_branch: Option<String>,
    /// Further refs changed by the same delivery (Bitbucket multi-ref pushes),
    /// in payload order: full ref name and new commit id (`None` when that
    /// ref was deleted or the payload names no commit).
    pub other_refs: Vec<(String, Option<String>)>,
}

impl Push {
    /// The new commit id of the first ref in this push that matches the
    /// configured `--ref` (see [`ref_matches`]), to log or export as the
    /// expected commit. `None` if nothing matches, the matching ref was
    /// deleted, or the payload names no commit.
    ///
    /// Use this rather than [`Push::after`] once a push has matched: in a
    /// multi-ref push the match may be one of [`Push::other_refs`].
    pub fn after_for(&self, configured: &str) -> Option<&str> {
        matching::first_match(configured, self)
            .ok()
            .flatten()
            .and_then(|m| m.after)
    }

    /// Whether the first ref in this push that matches the configured
    /// `--ref` was deleted (false if nothing matches or the push names no
    /// ref). Use this rather than [`Push::deleted`] once a push has matched.
    /// An entry of [`Push::other_refs`] counts as deleted when it names no
    /// commit (Bitbucket names one for every update).
    pub fn deleted_for(&self, configured: &str) -> bool {
        matching::first_match(configured, self)
            .ok()
            .flatten()
            .is_some_and(|m| m.deleted)
    }
}

/// Why a request was refused. Messages never quote the request body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// No recognised signature/token header, and unsigned webhooks are not allowed.
    #[error(
        "no webhook signature: expected X-Hub-Signature-256, X-Gitea-Signature, \
         X-Forgejo-Signature, X-Hub-Signature (sha256=), X-Signature, webhook-signature \
         (or svix-signature) or X-Gitlab-Token"
    )]
    MissingSignature,
    /// A signature/token is present but matches no configured secret, is
    /// malformed (bad hex, wrong prefix or length), uses an unsupported
    /// algorithm (sha1), or no secret is configured.
    #[error(
        "bad webhook signature: it matches no configured secret, is malformed, or is not \
         HMAC-SHA256 (the legacy sha1 X-Hub-Signature is not accepted: use X-Hub-Signature-256: sha256=...)"
    )]
    BadSignature,
    /// A Standard Webhooks delivery whose `webhook-timestamp` is more than
    /// [`STANDARD_TOLERANCE_SECS`] away from this machine's clock (its
    /// distance in seconds, negative in the future): a replay, or a clock
    /// out of step.
    #[error("{}", stale_message(*.0))]
    StaleTimestamp(i64),
    /// A Standard Webhooks `webhook-timestamp` that is not Unix seconds:
    /// what it was, cut short.
    #[error(
        "webhook-timestamp must be the time the delivery was sent, in Unix seconds; got {0:?}"
    )]
    BadTimestamp(String),
    /// A plain token (GitLab's `X-Gitlab-Token`) that matches no configured secret.
    #[error(
        "X-Gitlab-Token does not match --incoming-webhook-secret-file (or \
         GITSYNC_INCOMING_WEBHOOK_SECRET): GitLab sends the webhook's Secret token as it is; \
         check that it is exactly the content of that file (trailing newlines are ignored) \
         under Settings → Webhooks → Secret token, and that the sidecar mounts the secret you edited"
    )]
    BadToken,
    /// Verified, but sent form-encoded (GitHub's default content type).
    #[error(
        "the delivery is form-encoded (Content-Type: application/x-www-form-urlencoded, GitHub's \
         default); only JSON is read: in the webhook's settings (GitHub: Settings → Webhooks → \
         Edit) choose Content type application/json"
    )]
    FormEncoded,
    /// Verified, but the body is not usable JSON of the expected shape for a push.
    #[error("malformed webhook payload: {0}")]
    Malformed(String),
}

impl Rejection {
    /// A stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Rejection::MissingSignature => "missing_signature",
            Rejection::BadSignature | Rejection::BadToken => "bad_signature",
            Rejection::StaleTimestamp(_) => "stale",
            Rejection::BadTimestamp(_) => "malformed",
            Rejection::Malformed(_) | Rejection::FormEncoded => "malformed",
        }
    }
}

/// The words for a Standard Webhooks timestamp `distance` seconds from our
/// clock (negative: ahead of it). One sent in milliseconds is named so.
fn stale_message(distance: i64) -> String {
    let seconds = distance.unsigned_abs();
    let direction = if distance < 0 { "ahead of" } else { "behind" };
    let reason = if distance < 0 && seconds > MILLISECONDS_LOOK {
        "it looks like milliseconds: Standard Webhooks timestamps are Unix seconds"
    } else {
        "a replayed delivery, or a clock out of step (check NTP on the sender and here)"
    };
    format!(
        "webhook-timestamp is {seconds}s {direction} this machine's clock, more than the \
         {STANDARD_TOLERANCE_SECS}s allowed: {reason}"
    )
}

/// How far ahead a timestamp in milliseconds is (from 1973 on), and one in
/// seconds never is: about 100 years.
const MILLISECONDS_LOOK: u64 = 100 * 365 * 24 * 3600;

/// Detects the provider from headers, checks the signature over the RAW body in constant
/// time against every secret, then parses. With `allow_unsigned` and no signature headers,
/// skips verification (Provider detected from event headers, else Generic).
///
/// A request whose credential is present but unusable (wrong secret, bad hex,
/// sha1 only, or no secrets configured) is [`Rejection::BadSignature`]
/// ([`Rejection::BadToken`] for a plain token) even
/// with `allow_unsigned`. Ping and non-push events are returned without
/// looking at the body (except GitLab `System Hook`, whose body says whether
/// it is a push).
///
/// The same as [`authenticate_headers`] followed by [`verify_body`]; a
/// server should call those two itself, so that what the headers alone
/// refuse is refused before the body is read.
pub fn verify_and_parse(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &Secrets,
    allow_unsigned: bool,
) -> Result<(Provider, Event), (Provider, Rejection)> {
    let admitted = authenticate_headers(headers, secrets, allow_unsigned)?;
    verify_body(admitted, headers, body, secrets)
}

/// A delivery whose headers passed [`authenticate_headers`]: what is left to
/// check needs the body.
#[derive(Debug)]
pub struct Admitted {
    provider: Provider,
    event: String,
    proof: Proof,
}

impl Admitted {
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// What tells this delivery from another, as far as its credential
    /// binds it (see [`Identity`]).
    pub fn identity(&self) -> Identity {
        match &self.proof {
            Proof::Nothing => Identity::Unbound,
            Proof::Hmac(_) => Identity::Body,
            Proof::Standard { message_id, .. } => Identity::MessageId(message_id.clone()),
        }
    }
}

/// What the signature of a delivery binds, to tell a redelivery or a
/// replay from a new delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// Standard Webhooks: the signed message id, the same on a sender's
    /// retry, another for each new message.
    MessageId(String),
    /// An HMAC over the body alone (GitHub, Gitea, Forgejo, Bitbucket,
    /// `X-Signature`): only the body, so a captured delivery verifies for
    /// ever and the same body again may be a replay.
    Body,
    /// A plain token (GitLab's `X-Gitlab-Token`) or no credential: nothing
    /// is bound; whoever can replay can send anything.
    Unbound,
}

/// What the body still has to prove.
#[derive(Debug)]
enum Proof {
    /// Nothing: GitLab's token matched, or the delivery is unsigned and
    /// unsigned deliveries are allowed.
    Nothing,
    /// An HMAC over the raw body, to compare with this tag.
    Hmac(Tag),
    /// A Standard Webhooks HMAC-SHA256 over `signed_prefix` and the raw
    /// body, to compare with any of `tags`.
    Standard {
        signed_prefix: Vec<u8>,
        tags: Vec<[u8; 32]>,
        message_id: String,
    },
}

/// A decoded HMAC tag (the right length for its algorithm).
#[derive(Debug)]
enum Tag {
    Sha256([u8; 32]),
    Sha512([u8; 64]),
}

/// The first step, on headers alone: detects the provider and refuses what
/// can be refused without the body: no credential (unless `allow_unsigned`),
/// a credential the provider never sends (sha1 alone), a malformed digest,
/// a wrong GitLab token, no secret configured. An attacker's junk is mostly
/// refused here, before a byte of its body is buffered.
pub fn authenticate_headers(
    headers: &HeaderMap,
    secrets: &Secrets,
    allow_unsigned: bool,
) -> Result<Admitted, (Provider, Rejection)> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    authenticate_headers_at(headers, secrets, allow_unsigned, now)
}

/// [`authenticate_headers`] with the clock (Unix seconds) a Standard
/// Webhooks timestamp is compared with.
pub fn authenticate_headers_at(
    headers: &HeaderMap,
    secrets: &Secrets,
    allow_unsigned: bool,
    now: u64,
) -> Result<Admitted, (Provider, Rejection)> {
    let (provider, event) = detect(headers);
    let proof =
        header_proof(provider, headers, secrets, allow_unsigned, now).map_err(|r| (provider, r))?;
    Ok(Admitted {
        provider,
        event,
        proof,
    })
}

/// The second step: checks the HMAC the headers named over the RAW body
/// (constant time, every secret tried), then parses the payload.
pub fn verify_body(
    admitted: Admitted,
    headers: &HeaderMap,
    body: &[u8],
    secrets: &Secrets,
) -> Result<(Provider, Event), (Provider, Rejection)> {
    let Admitted {
        provider,
        event,
        proof,
    } = admitted;
    let authentic = match &proof {
        Proof::Nothing => true,
        Proof::Hmac(Tag::Sha256(tag)) => hmac_matches::<Hmac<Sha256>>(secrets, body, tag),
        Proof::Hmac(Tag::Sha512(tag)) => hmac_matches::<Hmac<Sha512>>(secrets, body, tag),
        Proof::Standard {
            signed_prefix,
            tags,
            ..
        } => standard_matches(secrets, signed_prefix, body, tags),
    };
    if !authentic {
        return Err((provider, Rejection::BadSignature));
    }
    if form_encoded(provider, headers) {
        return Err((provider, Rejection::FormEncoded));
    }
    let event = payload::parse(provider, event, body).map_err(|r| (provider, r))?;
    Ok((provider, event))
}

// Header names (HeaderMap lookups are case-insensitive).
const X_FORGEJO_EVENT: &str = "x-forgejo-event";
const X_GITEA_EVENT: &str = "x-gitea-event";
const X_GITHUB_EVENT: &str = "x-github-event";
const X_GITLAB_EVENT: &str = "x-gitlab-event";
const X_EVENT_KEY: &str = "x-event-key";

const X_FORGEJO_SIGNATURE: &str = "x-forgejo-signature";
const X_GITEA_SIGNATURE: &str = "x-gitea-signature";
const X_GOGS_SIGNATURE: &str = "x-gogs-signature";
const X_HUB_SIGNATURE_256: &str = "x-hub-signature-256";
const X_HUB_SIGNATURE: &str = "x-hub-signature";
const X_GITLAB_TOKEN: &str = "x-gitlab-token";
const X_SIGNATURE: &str = "x-signature";
const WEBHOOK_SIGNATURE: &str = "webhook-signature";
const WEBHOOK_ID: &str = "webhook-id";
const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
// Svix's own names for the same three headers (what it sends by default;
// its libraries and Standard Webhooks' accept both).
const SVIX_SIGNATURE: &str = "svix-signature";
const SVIX_ID: &str = "svix-id";
const SVIX_TIMESTAMP: &str = "svix-timestamp";

/// How far a Standard Webhooks timestamp may be from our clock, either way
/// (the specification's default, and its libraries').
pub const STANDARD_TOLERANCE_SECS: u64 = 300;

/// Every header that carries a credential, whatever the provider.
const CREDENTIAL_HEADERS: &[&str] = &[
    X_FORGEJO_SIGNATURE,
    X_GITEA_SIGNATURE,
    X_GOGS_SIGNATURE,
    X_HUB_SIGNATURE_256,
    X_HUB_SIGNATURE,
    X_GITLAB_TOKEN,
    X_SIGNATURE,
    WEBHOOK_SIGNATURE,
    SVIX_SIGNATURE,
];

/// The longest event name kept in [`Event::Other`].
const MAX_EVENT_LEN: usize = 128;

/// Bitbucket Server/Data Center event keys (everything else with
/// `X-Event-Key` is taken to be Bitbucket Cloud).
const BITBUCKET_SERVER_KEYS: &[&str] = &[
    "repo:refs_changed",
    "diagnostics:ping",
    "repo:modified",
    "repo:forked",
];
const BITBUCKET_SERVER_KEY_PREFIXES: &[&str] = &["pr:", "mirror:", "repo:comment:", "repo:secret"];

/// Whether a request's headers are a forge's delivery (an event header or
/// a signature), wherever it was sent.
pub fn looks_like_a_delivery(headers: &HeaderMap) -> bool {
    [
        X_FORGEJO_EVENT,
        X_GITEA_EVENT,
        X_GITHUB_EVENT,
        X_GITLAB_EVENT,
        X_EVENT_KEY,
    ]
    .iter()
    .chain(CREDENTIAL_HEADERS)
    .any(|name| headers.contains_key(*name))
}

/// The provider and the event header's value (sanitised; empty if absent).
fn detect(headers: &HeaderMap) -> (Provider, String) {
    let order = [
        (X_FORGEJO_EVENT, Provider::Forgejo),
        (X_GITEA_EVENT, Provider::Gitea),
        (X_GITHUB_EVENT, Provider::GitHub),
        (X_GITLAB_EVENT, Provider::GitLab),
    ];
    for (name, provider) in order {
        if let Some(value) = headers.get(name) {
            return (provider, event_name(value));
        }
    }
    if let Some(value) = headers.get(X_EVENT_KEY) {
        let key = event_name(value);
        let server = BITBUCKET_SERVER_KEYS
            .iter()
            .any(|k| key.eq_ignore_ascii_case(k))
            || BITBUCKET_SERVER_KEY_PREFIXES
                .iter()
                .any(|p| starts_with_ignore_case(&key, p));
        let provider = if server {
            Provider::BitbucketServer
        } else {
            Provider::BitbucketCloud
        };
        return (provider, key);
    }
    (Provider::Generic, String::new())
}

/// A header value as visible ASCII, trimmed and bounded; empty if unreadable.
fn event_name(value: &HeaderValue) -> String {
    let s = value.to_str().unwrap_or("").trim();
    // `to_str` only succeeds on visible ASCII, so every index is a char boundary.
    s.get(..MAX_EVENT_LEN).unwrap_or(s).to_owned()
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

/// How a credential header is encoded.
#[derive(Debug, Clone, Copy)]
enum Scheme {
    /// `sha256=<hex HMAC-SHA256>`.
    Sha256Prefixed,
    /// `<hex HMAC-SHA256>`.
    Sha256Bare,
    /// `sha256=<hex>` or `sha512=<hex HMAC-SHA512>`.
    Sha256Or512Prefixed,
    /// The secret itself (GitLab).
    Token,
    /// `v1,<base64>`, with `webhook-id` and `webhook-timestamp`.
    Standard,
}

/// The credential headers a provider's deliveries are checked with, most
/// specific first; the first one present with a digest is the one verified.
fn schemes(provider: Provider) -> &'static [(&'static str, Scheme)] {
    match provider {
        Provider::GitHub => &[(X_HUB_SIGNATURE_256, Scheme::Sha256Prefixed)],
        Provider::Gitea => &[
            (X_GITEA_SIGNATURE, Scheme::Sha256Bare),
            (X_GOGS_SIGNATURE, Scheme::Sha256Bare),
            (X_HUB_SIGNATURE_256, Scheme::Sha256Prefixed),
        ],
        Provider::Forgejo => &[
            (X_FORGEJO_SIGNATURE, Scheme::Sha256Bare),
            (X_GITEA_SIGNATURE, Scheme::Sha256Bare),
            (X_GOGS_SIGNATURE, Scheme::Sha256Bare),
            (X_HUB_SIGNATURE_256, Scheme::Sha256Prefixed),
        ],
        Provider::GitLab => &[
            (WEBHOOK_SIGNATURE, Scheme::Standard),
            (SVIX_SIGNATURE, Scheme::Standard),
            (X_GITLAB_TOKEN, Scheme::Token),
        ],
        Provider::BitbucketCloud | Provider::BitbucketServer => {
            &[(X_HUB_SIGNATURE, Scheme::Sha256Prefixed)]
        }
        Provider::Generic => &[
            (WEBHOOK_SIGNATURE, Scheme::Standard),
            (SVIX_SIGNATURE, Scheme::Standard),
            (X_SIGNATURE, Scheme::Sha256Or512Prefixed),
            (X_HUB_SIGNATURE_256, Scheme::Sha256Prefixed),
            (X_HUB_SIGNATURE, Scheme::Sha256Prefixed),
            (X_GOGS_SIGNATURE, Scheme::Sha256Bare),
            (X_GITLAB_TOKEN, Scheme::Token),
        ],
    }
}

/// What the headers say about the credential; see [`authenticate_headers`].
fn header_proof(
    provider: Provider,
    headers: &HeaderMap,
    secrets: &Secrets,
    allow_unsigned: bool,
    now: u64,
) -> Result<Proof, Rejection> {
    let credential = |name: &str| headers.get(name).filter(|value| !blank_credential(value));
    let chosen = schemes(provider)
        .iter()
        .find_map(|(name, scheme)| credential(name).map(|value| (value, *scheme)));
    match chosen {
        Some((value, Scheme::Token)) => {
            if !secrets.is_empty() && token_matches(value.as_bytes(), secrets) {
                Ok(Proof::Nothing)
            } else {
                Err(Rejection::BadToken)
            }
        }
        Some((_, Scheme::Standard)) if !secrets.is_empty() => standard_proof(headers, now),
        Some((value, scheme)) => match parse_tag(value, scheme) {
            Some(tag) if !secrets.is_empty() => Ok(Proof::Hmac(tag)),
            _ => Err(Rejection::BadSignature),
        },
        // A credential this provider's deliveries never use (typically
        // GitHub's legacy sha1 `X-Hub-Signature` alone) is not "unsigned".
        None if CREDENTIAL_HEADERS.iter().any(|h| credential(h).is_some()) => {
            Err(Rejection::BadSignature)
        }
        None if allow_unsigned => Ok(Proof::Nothing),
        None => Err(Rejection::MissingSignature),
    }
}

/// Whether a forge that offers a form-encoded content type (GitHub's
/// default; Gitea and Forgejo offer it too) sent one. Their form bodies are
/// `payload=<url-encoded JSON>`, which we do not read.
fn form_encoded(provider: Provider, headers: &HeaderMap) -> bool {
    let offers_form = matches!(
        provider,
        Provider::GitHub | Provider::Gitea | Provider::Forgejo
    );
    let media_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    offers_form
        && media_type.is_some_and(|t| t.eq_ignore_ascii_case("application/x-www-form-urlencoded"))
}

/// A credential header that carries no digest: empty, or a bare algorithm
/// prefix. Gitea and Forgejo send `X-Gitea-Signature: `, `X-Hub-Signature:
/// sha1=` and `X-Hub-Signature-256: sha256=` when the hook has no secret, so
/// these count as absent (an unsigned request), not as a wrong signature.
fn blank_credential(value: &HeaderValue) -> bool {
    let text = match value.to_str() {
        Ok(text) => text.trim(),
        Err(_) => return false,
    };
    text.is_empty()
        || ["sha1=", "sha256=", "sha512="]
            .iter()
            .any(|prefix| text.eq_ignore_ascii_case(prefix))
}

/// The HMAC tag an HMAC `scheme`'s header carries; `None` if malformed
/// (wrong prefix, bad hex, wrong length for the algorithm).
fn parse_tag(value: &HeaderValue, scheme: Scheme) -> Option<Tag> {
    let text = value.to_str().ok()?.trim();
    let sha256 = |hex_digest: &str| {
        let mut tag = [0u8; 32];
        hex::decode_to_slice(hex_digest, &mut tag).ok()?;
        Some(Tag::Sha256(tag))
    };
    match scheme {
        Scheme::Token | Scheme::Standard => None,
        Scheme::Sha256Bare => sha256(text),
        Scheme::Sha256Prefixed => sha256(strip_prefix_ignore_case(text, "sha256=")?),
        Scheme::Sha256Or512Prefixed => {
            if let Some(rest) = strip_prefix_ignore_case(text, "sha256=") {
                return sha256(rest);
            }
            let rest = strip_prefix_ignore_case(text, "sha512=")?;
            let mut tag = [0u8; 64];
            hex::decode_to_slice(rest, &mut tag).ok()?;
            Some(Tag::Sha512(tag))
        }
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    if starts_with_ignore_case(s, prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

/// Whether `tag` is the HMAC of `body` under any secret. Every secret is
/// tried (no early exit); each comparison is constant-time.
fn hmac_matches<M: Mac + KeyInit>(secrets: &Secrets, body: &[u8], tag: &[u8]) -> bool {
    let mut matched = false;
    for secret in &secrets.secrets {
        // HMAC accepts keys of any length, so this never fails in practice.
        if let Ok(mut mac) = <M as KeyInit>::new_from_slice(secret) {
            Mac::update(&mut mac, body);
            matched |= mac.verify_slice(tag).is_ok();
        }
    }
    matched
}

/// What a Standard Webhooks delivery's headers say: its id and timestamp
/// (refused when out of [`STANDARD_TOLERANCE_SECS`]) and its `v1`
/// signatures (`v1a` and other versions are skipped; none left is a bad
/// signature).
fn standard_proof(headers: &HeaderMap, now: u64) -> Result<Proof, Rejection> {
    // Each under its Standard Webhooks name, else under Svix's.
    let text = |name: &str, svix: &str| {
        [name, svix].into_iter().find_map(|name| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        })
    };
    let (Some(id), Some(timestamp)) = (
        text(WEBHOOK_ID, SVIX_ID),
        text(WEBHOOK_TIMESTAMP, SVIX_TIMESTAMP),
    ) else {
        return Err(Rejection::BadSignature);
    };
    let sent: u64 = timestamp
        .parse()
        .map_err(|_| Rejection::BadTimestamp(timestamp.chars().take(32).collect()))?;
    if now.abs_diff(sent) > STANDARD_TOLERANCE_SECS {
        let away = i64::try_from(now.abs_diff(sent)).unwrap_or(i64::MAX);
        return Err(Rejection::StaleTimestamp(if sent > now {
            -away
        } else {
            away
        }));
    }
    // Several header lines are one list (RFC 9110), space-separated here.
    let signatures = [WEBHOOK_SIGNATURE, SVIX_SIGNATURE]
        .into_iter()
        .flat_map(|name| headers.get_all(name))
        .filter_map(|value| value.to_str().ok());
    let tags: Vec<[u8; 32]> = signatures
        .flat_map(str::split_ascii_whitespace)
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|b64| {
            let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
            <[u8; 32]>::try_from(bytes).ok()
        })
        .collect();
    if tags.is_empty() {
        return Err(Rejection::BadSignature);
    }
    Ok(Proof::Standard {
        signed_prefix: format!("{id}.{timestamp}.").into_bytes(),
        tags,
        message_id: id.to_string(),
    })
}

/// The keys a secret may stand for in Standard Webhooks: the bytes a
/// `whsec_<base64>` secret encodes, and the secret as it is.
fn standard_keys(secret: &[u8]) -> Vec<Vec<u8>> {
    let mut keys = vec![secret.to_vec()];
    let decoded = secret
        .strip_prefix(b"whsec_")
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .filter(|key| !key.is_empty());
    keys.extend(decoded);
    keys
}

/// Whether any of `tags` is the HMAC-SHA256 of `signed_prefix` and `body`
/// under any secret. Every key and tag is tried (no early exit); each
/// comparison is constant-time.
fn standard_matches(
    secrets: &Secrets,
    signed_prefix: &[u8],
    body: &[u8],
    tags: &[[u8; 32]],
) -> bool {
    let mut matched = false;
    for key in secrets.secrets.iter().flat_map(|s| standard_keys(s)) {
        let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(&key) else {
            continue;
        };
        Mac::update(&mut mac, signed_prefix);
        Mac::update(&mut mac, body);
        let digest = mac.finalize().into_bytes();
        for tag in tags {
            matched |= bool::from(digest.as_slice().ct_eq(tag.as_slice()));
        }
    }
    matched
}

/// GitLab's plain token, compared as SHA-256 digests so that neither the
/// content nor the length of a secret shows in the timing.
fn token_matches(given: &[u8], secrets: &Secrets) -> bool {
    let given = Sha256::digest(given);
    let mut matched = Choice::from(0);
    for secret in &secrets.secrets {
        let expected = Sha256::digest(secret);
        matched |= expected.as_slice().ct_eq(given.as_slice());
    }
    matched.into()
}
