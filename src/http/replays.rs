//! Webhook deliveries seen lately, so that the same delivery accepted
//! twice (a forge's redelivery, or a captured delivery replayed: GitHub's
//! and Gitea's signatures cover the body only, with no time in them) is
//! neither awaited again nor announced to the peers. Without it, a replay
//! naming an older commit set it as awaited again (up to five fetches
//! before giving up) and was announced to every peer (one fetch each), for
//! as long as a replayer kept sending it.
//!
//! A delivery is known by what its signature binds ([`Identity`]): a
//! Standard Webhooks message by its signed id (new for each message), a
//! body-only HMAC by the SHA-256 of its body. Two honest pushes can have
//! the same body (a branch moved back and forth between the same two
//! commits, at a forge that puts no time in its payload), so bodies are
//! remembered for [`REMEMBERED_FOR`] only, and a duplicate still triggers
//! this replica's own sync.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::forge::Identity;

/// How long a delivery is remembered: longer than a Standard Webhooks
/// timestamp is accepted (its tolerance either way, whole seconds, and a
/// minute for a clock stepped back), so a message id is never forgotten
/// while a replay of it would still pass.
pub(super) const REMEMBERED_FOR: Duration = Duration::from_secs(11 * 60);
const _: () = assert!(REMEMBERED_FOR.as_secs() >= 2 * crate::forge::STANDARD_TOLERANCE_SECS + 60);
/// The most deliveries remembered at once (32 bytes and a time each).
const CAPACITY: usize = 4096;

pub(super) type Fingerprint = [u8; 32];

/// What a delivery is remembered by; `None` when it is not: nothing
/// signed binds it, or it is a body-only delivery naming no commit (a
/// generic sender may send the same "sync now" body every time, and each
/// must count).
pub(super) fn fingerprint(
    identity: &Identity,
    body: &[u8],
    names_a_commit: bool,
) -> Option<Fingerprint> {
    let mut hash = Sha256::new();
    match identity {
        Identity::MessageId(id) => {
            hash.update(b"message id\0");
            hash.update(id.as_bytes());
        }
        Identity::Body if names_a_commit => {
            hash.update(b"body\0");
            hash.update(body);
        }
        Identity::Body | Identity::Unbound => return None,
    }
    Some(hash.finalize().into())
}

/// The fingerprints of deliveries accepted within [`REMEMBERED_FOR`].
#[derive(Default)]
pub(super) struct RecentDeliveries {
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    at: HashMap<Fingerprint, Instant>,
    order: VecDeque<(Fingerprint, Instant)>,
}

impl RecentDeliveries {
    /// Records the delivery known by `fingerprint`; `None` when it is new,
    /// else how long ago the same delivery was accepted (it is not recorded
    /// again, so a replayer cannot keep it remembered).
    pub(super) fn seen_before(&self, fingerprint: Fingerprint, now: Instant) -> Option<Duration> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.forget_older_than(now);
        if let Some(at) = seen.at.get(&fingerprint) {
            return Some(now.saturating_duration_since(*at));
        }
        if seen.order.len() == CAPACITY {
            if let Some((oldest, _)) = seen.order.pop_front() {
                seen.at.remove(&oldest);
            }
        }
        seen.at.insert(fingerprint, now);
        seen.order.push_back((fingerprint, now));
        None
    }
}

impl Seen {
    fn forget_older_than(&mut self, now: Instant) {
        while let Some(&(fingerprint, at)) = self.order.front() {
            if now.saturating_duration_since(at) < REMEMBERED_FOR {
                break;
            }
            self.order.pop_front();
            self.at.remove(&fingerprint);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(b: &[u8]) -> Fingerprint {
        fingerprint(&Identity::Body, b, true).expect("a body naming a commit")
    }

    #[test]
    fn the_same_delivery_is_seen_until_it_is_forgotten() {
        let recent = RecentDeliveries::default();
        let start = Instant::now();
        assert_eq!(recent.seen_before(body(b"push A"), start), None);
        assert_eq!(
            recent.seen_before(body(b"push B"), start),
            None,
            "another body"
        );
        let later = start + Duration::from_secs(30);
        assert_eq!(
            recent.seen_before(body(b"push A"), later),
            Some(Duration::from_secs(30))
        );
        // A replay does not renew the memory: forgotten after the first.
        let after = start + REMEMBERED_FOR;
        assert_eq!(recent.seen_before(body(b"push A"), after), None);
        assert_eq!(
            recent.seen_before(body(b"push A"), after + Duration::from_secs(1)),
            Some(Duration::from_secs(1))
        );
    }

    /// A Standard Webhooks message is known by its signed id, whatever its
    /// body (a forge without time in its payloads sends the same body for
    /// two pushes between the same commits); a body-only signature by its
    /// body, when it names a commit; nothing signed, by nothing.
    #[test]
    fn deliveries_are_known_by_what_their_signature_binds() {
        let id = |s: &str| fingerprint(&Identity::MessageId(s.into()), b"same body", false);
        assert!(id("msg_1").is_some(), "commit-less messages too");
        assert_ne!(id("msg_1"), id("msg_2"));
        assert_eq!(id("msg_1"), id("msg_1"));
        assert_ne!(
            fingerprint(&Identity::MessageId("b".into()), b"", true),
            fingerprint(&Identity::Body, b"b", true),
            "an id and a body never share a fingerprint"
        );
        assert_eq!(fingerprint(&Identity::Body, b"sync now", false), None);
        assert_eq!(fingerprint(&Identity::Unbound, b"push", true), None);
    }

    #[test]
    fn at_capacity_the_oldest_is_forgotten_first() {
        let recent = RecentDeliveries::default();
        let now = Instant::now();
        for n in 0..CAPACITY {
            assert_eq!(
                recent.seen_before(body(n.to_string().as_bytes()), now),
                None
            );
        }
        assert_eq!(recent.seen_before(body(b"one more"), now), None);
        assert_eq!(recent.seen_before(body(b"0"), now), None, "the oldest went");
        assert!(
            recent.seen_before(body(b"2"), now).is_some(),
            "the rest stay"
        );
        let seen = recent.seen.lock().expect("not poisoned");
        assert_eq!((seen.at.len(), seen.order.len()), (CAPACITY, CAPACITY));
    }
}
