//! The sender's queues, as pure state (`send.rs` runs the sends): one lane
//! per peer address, with at most one send under way and, behind it, at
//! most one hint of each kind waiting (one naming a commit, one without).
//! A newer hint takes the place of the waiting one of its kind: a peer
//! needs only the latest (its sync fetches the ref's head; an older commit
//! would only be awaited in vain). The kinds never replace each other: a
//! hint without a commit makes the peer sync even if it has the commit
//! named by the other, and a hint with a commit makes the peer await it
//! (a sync without one does not wait for a forge that is slow to show a
//! push).
//!
//! So a peer that never answers holds up its own lane only, and a lane
//! holds at most three hints whatever the rate of deliveries.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::SocketAddr;

/// What the queues need to know of a job.
pub trait Job {
    /// Its place in the order of announcements (higher is newer).
    fn seq(&self) -> u64;
    fn has_commit(&self) -> bool;
}

fn kind(job: &impl Job) -> usize {
    usize::from(job.has_commit())
}

/// At most one job of each kind, the newer taking the older's place.
#[derive(Debug)]
pub struct Waiting<J> {
    slots: [Option<J>; 2],
}

impl<J> Default for Waiting<J> {
    fn default() -> Self {
        Waiting {
            slots: [None, None],
        }
    }
}

impl<J: Job> Waiting<J> {
    /// Adds `job`; returns the job it supersedes, if any (`job` itself
    /// when a newer one of its kind waits already).
    pub fn push(&mut self, job: J) -> Option<J> {
        let slot = &mut self.slots[kind(&job)];
        match slot.take() {
            Some(newer) if newer.seq() > job.seq() => {
                *slot = Some(newer);
                Some(job)
            }
            older => {
                *slot = Some(job);
                older
            }
        }
    }

    /// The older of the waiting jobs.
    pub fn pop(&mut self) -> Option<J> {
        let [without, with] = &self.slots;
        let first = match (without, with) {
            (Some(a), Some(b)) => usize::from(b.seq() < a.seq()),
            (None, Some(_)) => 1,
            _ => 0,
        };
        self.slots[first].take()
    }
}

/// Every peer's lane, and the newest job of each kind handed out.
#[derive(Debug)]
pub struct Lanes<J> {
    lanes: HashMap<SocketAddr, Waiting<J>>,
    newest: [Option<u64>; 2],
}

impl<J> Default for Lanes<J> {
    fn default() -> Self {
        Lanes {
            lanes: HashMap::new(),
            newest: [None, None],
        }
    }
}

/// Where [`Lanes::push`] put a job.
#[derive(Debug, PartialEq, Eq)]
pub enum Queued<J> {
    /// The lane was idle: the caller starts its sender with this job.
    Start(J),
    /// Behind the send under way; the job it superseded, if any.
    Waiting(Option<J>),
}

impl<J: Job> Lanes<J> {
    /// Whether `job` is still current: no newer job of its kind has been
    /// handed out (fan-outs resolve concurrently, and an older one may
    /// finish resolving last). Records it as the newest if so.
    pub fn admit(&mut self, job: &J) -> bool {
        let newest = &mut self.newest[kind(job)];
        if newest.is_some_and(|n| n > job.seq()) {
            return false;
        }
        *newest = Some(job.seq());
        true
    }

    pub fn push(&mut self, peer: SocketAddr, job: J) -> Queued<J> {
        match self.lanes.entry(peer) {
            Entry::Vacant(idle) => {
                idle.insert(Waiting::default());
                Queued::Start(job)
            }
            Entry::Occupied(mut busy) => Queued::Waiting(busy.get_mut().push(job)),
        }
    }

    /// The next job for `peer`'s sender; `None` closes the lane, and the
    /// sender ends.
    pub fn next(&mut self, peer: SocketAddr) -> Option<J> {
        let next = self.lanes.get_mut(&peer)?.pop();
        if next.is_none() {
            self.lanes.remove(&peer);
        }
        next
    }

    #[cfg(test)]
    pub fn busy(&self) -> usize {
        self.lanes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Eq)]
    struct J(u64, bool);

    impl Job for J {
        fn seq(&self) -> u64 {
            self.0
        }
        fn has_commit(&self) -> bool {
            self.1
        }
    }

    const A: &str = "10.0.0.1:8081";
    const B: &str = "10.0.0.2:8081";

    fn addr(a: &str) -> SocketAddr {
        a.parse().unwrap()
    }

    #[test]
    fn an_idle_lane_starts_at_once_and_a_busy_one_keeps_the_newest_of_each_kind() {
        let mut lanes = Lanes::default();
        assert_eq!(lanes.push(addr(A), J(1, true)), Queued::Start(J(1, true)));
        // Another peer's lane is independent of A's.
        assert_eq!(lanes.push(addr(B), J(1, true)), Queued::Start(J(1, true)));
        assert_eq!(lanes.push(addr(A), J(2, true)), Queued::Waiting(None));
        assert_eq!(lanes.push(addr(A), J(3, false)), Queued::Waiting(None));
        assert_eq!(
            lanes.push(addr(A), J(4, true)),
            Queued::Waiting(Some(J(2, true)))
        );
        assert_eq!(
            lanes.push(addr(A), J(5, false)),
            Queued::Waiting(Some(J(3, false)))
        );
        // Older first; then the lane closes.
        assert_eq!(lanes.next(addr(A)), Some(J(4, true)));
        assert_eq!(lanes.next(addr(A)), Some(J(5, false)));
        assert_eq!(lanes.next(addr(A)), None);
        assert_eq!(lanes.busy(), 1);
        assert_eq!(lanes.next(addr(B)), None);
        assert_eq!(lanes.busy(), 0);
        // Closed: the next job starts a sender again.
        assert_eq!(lanes.push(addr(A), J(6, true)), Queued::Start(J(6, true)));
    }

    #[test]
    fn a_job_older_than_one_waiting_of_its_kind_is_the_one_superseded() {
        let mut waiting = Waiting::default();
        assert_eq!(waiting.push(J(5, true)), None);
        assert_eq!(waiting.push(J(4, true)), Some(J(4, true)));
        assert_eq!(waiting.pop(), Some(J(5, true)));
        assert_eq!(waiting.pop(), None);
    }

    #[test]
    fn a_fan_out_that_resolved_after_a_newer_one_of_its_kind_is_not_admitted() {
        let mut lanes = Lanes::<J>::default();
        assert!(lanes.admit(&J(2, true)));
        assert!(!lanes.admit(&J(1, true)), "older, with a commit");
        assert!(lanes.admit(&J(1, false)), "the other kind");
        assert!(lanes.admit(&J(3, true)));
        assert!(!lanes.admit(&J(0, false)));
    }
}
