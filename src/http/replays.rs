//! Webhook deliveries seen lately, by the SHA-256 of their body, so that
//! the same delivery accepted twice (a forge's redelivery, or a captured
//! delivery replayed: GitHub's and Gitea's signatures cover the body only,
//! with no time in them) starts nothing the first did not. Without it, a
//! replay naming an older commit set it as awaited again (up to five
//! fetches before giving up) and was announced to every peer (one fetch
//! each), for as long as a replayer kept sending it.
//!
//! Remembered for [`REMEMBERED_FOR`] only: two honest pushes can have the
//! same body (a branch moved back and forth between the same two commits,
//! where a forge puts no time in its payload), and the second must not be
//! ignored for long; polling covers it meanwhile.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// How long a delivery is remembered.
pub(super) const REMEMBERED_FOR: Duration = Duration::from_secs(10 * 60);
/// The most deliveries remembered at once (32 bytes and a time each).
const CAPACITY: usize = 4096;

type Fingerprint = [u8; 32];

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
    /// Records the delivery whose body is `body`; `None` when it is new,
    /// else how long ago the same body was accepted (it is not recorded
    /// again, so a replayer cannot keep it remembered).
    pub(super) fn seen_before(&self, body: &[u8], now: Instant) -> Option<Duration> {
        let fingerprint: Fingerprint = Sha256::digest(body).into();
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

    #[test]
    fn the_same_body_is_seen_until_it_is_forgotten() {
        let recent = RecentDeliveries::default();
        let start = Instant::now();
        assert_eq!(recent.seen_before(b"push A", start), None);
        assert_eq!(recent.seen_before(b"push B", start), None, "another body");
        let later = start + Duration::from_secs(30);
        assert_eq!(
            recent.seen_before(b"push A", later),
            Some(Duration::from_secs(30))
        );
        // A replay does not renew the memory: forgotten after the first.
        let after = start + REMEMBERED_FOR;
        assert_eq!(recent.seen_before(b"push A", after), None);
        assert_eq!(
            recent.seen_before(b"push A", after + Duration::from_secs(1)),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn at_capacity_the_oldest_is_forgotten_first() {
        let recent = RecentDeliveries::default();
        let now = Instant::now();
        for n in 0..CAPACITY {
            assert_eq!(recent.seen_before(n.to_string().as_bytes(), now), None);
        }
        assert_eq!(recent.seen_before(b"one more", now), None);
        assert_eq!(recent.seen_before(b"0", now), None, "the oldest went");
        assert!(recent.seen_before(b"2", now).is_some(), "the rest stay");
        let seen = recent.seen.lock().expect("not poisoned");
        assert_eq!((seen.at.len(), seen.order.len()), (CAPACITY, CAPACITY));
    }
}
