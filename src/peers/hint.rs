//! The peer hint: what one replica tells the others after it accepted a
//! webhook ("repository R, ref F should now be at commit C"), signed with
//! the shared peer secret, and the receiving side's checks: the HMAC
//! (constant time), the timestamp window, the commit's form, and the memory
//! of deliveries already seen.
//!
//! Wire format: a JSON body (`{"v":1,"repo":..,"ref":..,"commit":..,"id":..,"ts":..}`)
//! and the header [`SIGNATURE_HEADER`] `sha256=<hex HMAC-SHA256 of the raw body>`.
//! The signature covers the exact bytes sent, so nothing is re-encoded
//! before it is checked.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit as _, Mac as _};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::secret::SecretBytes;

/// The header carrying the hint's signature.
pub const SIGNATURE_HEADER: &str = "x-git-sidecar-peer-signature";
/// How far a hint's timestamp may be from the receiver's clock, either way:
/// node clocks in a cluster agree within seconds (NTP), a captured hint is
/// useless after this long, and the delivery-id memory only has to cover it.
pub const WINDOW: Duration = Duration::from_secs(120);
/// Delivery ids remembered (the oldest are forgotten first). Only holders of
/// the secret can make ids, so only real traffic fills it.
const REMEMBERED_IDS: usize = 4096;
/// Largest hint body read: a hint is a few hundred bytes.
pub const MAX_BODY: usize = 4096;

/// What a hint says. `commit` is absent when the trigger carried none
/// (`POST /sync`): the peer then simply syncs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hint {
    pub v: u32,
    pub repo: String,
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub commit: Option<String>,
    /// Unique per delivery (random, 128 bits, hex).
    pub id: String,
    /// Unix seconds when the delivery was made.
    pub ts: u64,
}

impl Hint {
    /// A new delivery, stamped now with a fresh id.
    pub fn new(repo: &str, git_ref: &str, commit: Option<String>) -> Self {
        Hint {
            v: 1,
            repo: repo.to_string(),
            git_ref: git_ref.to_string(),
            commit,
            id: format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)),
            ts: unix_now(),
        }
    }

    /// The body and its signature header value.
    pub fn sign(&self, secret: &SecretBytes) -> (Vec<u8>, String) {
        // Serialising a struct of strings and integers cannot fail.
        let body = serde_json::to_vec(self).unwrap_or_default();
        let signature = format!("sha256={}", hex::encode(mac(secret, &body)));
        (body, signature)
    }
}

fn mac(secret: &SecretBytes, body: &[u8]) -> Vec<u8> {
    match <Hmac<Sha256>>::new_from_slice(secret.expose()) {
        Ok(mut mac) => {
            mac.update(body);
            mac.finalize().into_bytes().to_vec()
        }
        // HMAC takes keys of any length; unreachable, and an empty MAC never verifies.
        Err(_) => Vec::new(),
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Why a hint was refused; `label` is the metric's `result`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no {SIGNATURE_HEADER} header: peer hints must be signed with --peer-secret-file")]
    MissingSignature,
    #[error("the signature does not match: the sender's --peer-secret-file differs from ours")]
    BadSignature,
    #[error("not a peer hint: {0}")]
    Malformed(String),
    #[error("the hint's timestamp is {0}s away from this clock (allowed: {allowed}s); check the nodes' clocks", allowed = WINDOW.as_secs())]
    Stale(u64),
    #[error("the hint's commit {0} is not an object id (40 or 64 lowercase hex digits, or null)")]
    BadCommit(String),
}

impl Refusal {
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::MissingSignature => "missing_signature",
            Refusal::BadSignature => "bad_signature",
            Refusal::Malformed(_) => "malformed",
            Refusal::Stale(_) => "stale",
            // A body that parses but says nothing usable, as the HTTP
            // layer's own `bad_body` (too large, cut short).
            Refusal::BadCommit(_) => "bad_body",
        }
    }
}

/// Checks the signature (against each of `secrets`, in constant time per
/// comparison), then parses the body and checks the window around `now`.
pub fn verify(
    body: &[u8],
    signature: Option<&str>,
    secrets: &[SecretBytes],
    now: u64,
) -> Result<Hint, Refusal> {
    let signature = signature.ok_or(Refusal::MissingSignature)?;
    let presented = signature
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h.trim()).ok())
        .ok_or(Refusal::BadSignature)?;
    let genuine = secrets.iter().any(|secret| {
        <Hmac<Sha256>>::new_from_slice(secret.expose()).is_ok_and(|mut mac| {
            mac.update(body);
            // `verify_slice` compares in constant time.
            mac.verify_slice(&presented).is_ok()
        })
    });
    if !genuine {
        return Err(Refusal::BadSignature);
    }
    let hint: Hint = serde_json::from_slice(body).map_err(|e| Refusal::Malformed(e.to_string()))?;
    if hint.v != 1 {
        return Err(Refusal::Malformed(format!("unknown version {}", hint.v)));
    }
    let skew = hint.ts.abs_diff(now);
    if skew > WINDOW.as_secs() {
        return Err(Refusal::Stale(skew));
    }
    if let Some(commit) = hint.commit.as_deref().filter(|c| !is_object_id(c)) {
        return Err(Refusal::BadCommit(shown(commit)));
    }
    Ok(hint)
}

/// A commit id as a sender writes it (the forge's, lowercased): SHA-1 or
/// SHA-256. Anything else would end up as the expected commit in
/// `/status`, in logs, and in the loop's retries for a commit that cannot
/// exist.
fn is_object_id(commit: &str) -> bool {
    matches!(commit.len(), 40 | 64)
        && commit
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A refused value for a message: quoted, escaped, at most 80 characters.
fn shown(value: &str) -> String {
    const SHOWN: usize = 80;
    let cut: String = value.chars().take(SHOWN).collect();
    let more = if cut.len() < value.len() { "…" } else { "" };
    format!("{cut:?}{more}")
}

/// The delivery ids the receiver has seen, bounded. Commits are not
/// remembered here: whether a commit is news depends on what this replica
/// publishes or awaits now ([`super::Peers::receive`]), not on whether it
/// was hinted before (a rollback hints the previous commit again).
#[derive(Debug, Default)]
pub struct Seen {
    ids: HashSet<String>,
    id_order: VecDeque<String>,
}

/// Whether a verified hint is acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    New,
    /// This delivery id was seen before (a replay or a retried send).
    DuplicateDelivery,
    /// Its commit is the one this replica publishes, or already awaits.
    DuplicateCommit,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::New => "ok",
            Verdict::DuplicateDelivery => "duplicate_delivery",
            Verdict::DuplicateCommit => "duplicate_commit",
        }
    }
}

impl Seen {
    /// Records `hint`'s delivery id; [`Verdict::New`] the first time. An id
    /// is remembered whatever comes of the hint, so its replays stay
    /// duplicates.
    pub fn admit(&mut self, hint: &Hint) -> Verdict {
        if self.ids.contains(&hint.id) {
            return Verdict::DuplicateDelivery;
        }
        if self.id_order.len() >= REMEMBERED_IDS {
            if let Some(old) = self.id_order.pop_front() {
                self.ids.remove(&old);
            }
        }
        self.ids.insert(hint.id.clone());
        self.id_order.push_back(hint.id.clone());
        Verdict::New
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretBytes {
        SecretBytes::new(s.as_bytes())
    }

    fn hint(commit: Option<&str>) -> Hint {
        Hint::new(
            "https://example.com/site",
            "main",
            commit.map(str::to_string),
        )
    }

    #[test]
    fn a_signed_hint_verifies_and_round_trips() {
        let h = hint(Some("a".repeat(40).as_str()));
        let (body, sig) = h.sign(&secret("s3cret"));
        assert!(sig.starts_with("sha256="), "{sig}");
        let got = verify(&body, Some(&sig), &[secret("s3cret")], h.ts).unwrap();
        assert_eq!(got, h);
    }

    #[test]
    fn missing_wrong_and_tampered_signatures_are_refused() {
        let h = hint(None);
        let (body, sig) = h.sign(&secret("s3cret"));
        let now = h.ts;
        assert_eq!(
            verify(&body, None, &[secret("s3cret")], now),
            Err(Refusal::MissingSignature)
        );
        assert_eq!(
            verify(&body, Some(&sig), &[secret("other")], now),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            verify(&body, Some("sha256=zz"), &[secret("s3cret")], now),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            verify(
                &body,
                Some(sig.trim_start_matches("sha256=")),
                &[secret("s3cret")],
                now
            ),
            Err(Refusal::BadSignature)
        );
        let mut tampered = body.clone();
        let at = tampered.len() - 2;
        tampered[at] ^= 1;
        assert_eq!(
            verify(&tampered, Some(&sig), &[secret("s3cret")], now),
            Err(Refusal::BadSignature)
        );
        // No secret at all: nothing verifies.
        assert_eq!(
            verify(&body, Some(&sig), &[], now),
            Err(Refusal::BadSignature)
        );
    }

    #[test]
    fn the_previous_secret_still_verifies_during_a_rotation() {
        let h = hint(None);
        let (body, sig) = h.sign(&secret("old"));
        assert!(verify(&body, Some(&sig), &[secret("new"), secret("old")], h.ts).is_ok());
    }

    #[test]
    fn the_timestamp_window_is_enforced_both_ways() {
        let h = hint(None);
        let (body, sig) = h.sign(&secret("k"));
        let w = WINDOW.as_secs();
        assert!(verify(&body, Some(&sig), &[secret("k")], h.ts + w).is_ok());
        assert!(verify(&body, Some(&sig), &[secret("k")], h.ts - w).is_ok());
        assert_eq!(
            verify(&body, Some(&sig), &[secret("k")], h.ts + w + 1),
            Err(Refusal::Stale(w + 1))
        );
        assert_eq!(
            verify(&body, Some(&sig), &[secret("k")], h.ts - w - 1),
            Err(Refusal::Stale(w + 1))
        );
    }

    #[test]
    fn signed_garbage_is_malformed_not_accepted() {
        let body = b"{\"hello\":1}";
        let sig = format!("sha256={}", hex::encode(mac(&secret("k"), body)));
        assert!(matches!(
            verify(body, Some(&sig), &[secret("k")], unix_now()),
            Err(Refusal::Malformed(_))
        ));
    }

    #[test]
    fn a_commit_that_is_not_an_object_id_is_a_bad_body() {
        let sign = |commit: &str| {
            let h = hint(Some(commit));
            let (body, sig) = h.sign(&secret("k"));
            (verify(&body, Some(&sig), &[secret("k")], h.ts), h)
        };
        for good in ["a".repeat(40), "0123456789abcdef".repeat(4)] {
            let (verified, h) = sign(&good);
            assert_eq!(verified, Ok(h), "{good}");
        }
        for bad in [
            "../../etc/passwd".to_string(),
            "zz\"\n{\"msg\":\"forged\"}".to_string(),
            "A".repeat(40),
            "a".repeat(39),
            "a".repeat(41),
            "a".repeat(63),
            String::new(),
            "é".repeat(300),
        ] {
            let (verified, _) = sign(&bad);
            let refusal = verified.expect_err(&bad);
            assert!(
                matches!(refusal, Refusal::BadCommit(_)),
                "{bad}: {refusal:?}"
            );
            assert_eq!(refusal.label(), "bad_body");
            assert!(refusal.to_string().len() < 300, "{refusal}");
        }
        // No commit (a `POST /sync`) is fine.
        let h = hint(None);
        let (body, sig) = h.sign(&secret("k"));
        assert!(verify(&body, Some(&sig), &[secret("k")], h.ts).is_ok());
    }

    #[test]
    fn replayed_deliveries_are_recognised_whatever_their_commit() {
        let mut seen = Seen::default();
        let c = "b".repeat(40);
        let first = hint(Some(&c));
        assert_eq!(seen.admit(&first), Verdict::New);
        assert_eq!(seen.admit(&first), Verdict::DuplicateDelivery);
        // Another delivery of the same commit is not a replay: whether it
        // is news is the receiver's state's to say.
        assert_eq!(seen.admit(&hint(Some(&c))), Verdict::New);
        let bare = hint(None);
        assert_eq!(seen.admit(&bare), Verdict::New);
        assert_eq!(seen.admit(&hint(None)), Verdict::New);
        assert_eq!(seen.admit(&bare), Verdict::DuplicateDelivery);
    }

    #[test]
    fn the_memory_is_bounded() {
        let mut seen = Seen::default();
        let first = hint(None);
        seen.admit(&first);
        for i in 0..REMEMBERED_IDS + 10 {
            seen.admit(&hint(Some(&format!("{i:040x}"))));
        }
        assert_eq!(seen.ids.len(), REMEMBERED_IDS);
        assert_eq!(seen.id_order.len(), REMEMBERED_IDS);
        // The oldest id was forgotten first.
        assert!(!seen.ids.contains(&first.id));
    }
}
