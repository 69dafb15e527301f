//! Announcements without a commit (`POST /sync`, a generic "sync now"
//! webhook) are collapsed per sender: the first after a quiet spell fans
//! out at once, and any more within [`WINDOW`] of it become one fan-out at
//! the window's end (the trailing edge), so the last delivery is always
//! followed by a hint and no update is lost.
//!
//! Why: a peer cannot deduplicate such a hint (there is no commit to
//! compare), every one makes every peer fetch, and a generic delivery's
//! signature covers a constant body, so a captured one can be replayed at
//! will. Hints naming a commit need none of this: a peer drops those for
//! the commit it has.

use std::time::{Duration, Instant};

/// git-sync's and git-sidecar's default `--period`: however many
/// commit-less deliveries arrive, each peer fetches for them at most as
/// often as a replica polling at the default period would (once per
/// window per sender), and the trailing hint is at most this late.
pub const WINDOW: Duration = Duration::from_secs(10);

/// What to do with a commit-less announcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Fan out now.
    Now,
    /// Fan out at this instant (the window's end), then call
    /// [`Window::fired`].
    At(Instant),
    /// A fan-out at the window's end is already due: it covers this one.
    Collapsed,
}

/// When the last commit-less fan-out went out, and whether one is due.
#[derive(Debug, Default)]
pub struct Window {
    last: Option<Instant>,
    due: bool,
}

impl Window {
    pub fn admit(&mut self, now: Instant) -> Admit {
        if self.due {
            return Admit::Collapsed;
        }
        match self.last {
            Some(last) if now < last + WINDOW => {
                self.due = true;
                Admit::At(last + WINDOW)
            }
            _ => {
                self.last = Some(now);
                Admit::Now
            }
        }
    }

    /// The fan-out due at the window's end goes out now; the next window
    /// starts.
    pub fn fired(&mut self, now: Instant) {
        self.due = false;
        self.last = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_one_fan_out_at_once_and_one_at_the_windows_end() {
        let mut window = Window::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_millis(s);
        assert_eq!(window.admit(at(0)), Admit::Now);
        assert_eq!(window.admit(at(100)), Admit::At(t0 + WINDOW));
        for ms in [200, 5_000, 9_999] {
            assert_eq!(window.admit(at(ms)), Admit::Collapsed, "{ms}");
        }
        // Fired at the window's end: another window begins there.
        window.fired(t0 + WINDOW);
        assert_eq!(window.admit(at(10_001)), Admit::At(t0 + WINDOW * 2));
        window.fired(t0 + WINDOW * 2);
        // Quiet for a window: at once again.
        assert_eq!(window.admit(t0 + WINDOW * 3), Admit::Now);
    }
}
