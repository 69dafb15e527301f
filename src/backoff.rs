//! Exponential backoff with jitter: the one rule for every wait that grows
//! with consecutive failures (the sync loop after a failed pass, the reload
//! hook after a failed signal). Fixed waits (git-sync's `--*-backoff`) do
//! not come here.

use std::time::Duration;

/// How the random part of a [`delay`] is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// "Equal jitter": half of the wait fixed, half random, in `[d/2, d]`,
    /// so replicas failing together spread out and the wait never
    /// collapses to zero (the sync loop).
    Equal,
    /// Up to a quarter more than the wait, in `[d, 1.25·d]` but never above
    /// the cap (the reload hook).
    UpToAQuarterMore,
}

/// The wait after the `failures`-th consecutive failure: `d = min(base ·
/// 2^(failures-1), max)`, with `jitter` applied; never above `max`.
pub fn delay(base: Duration, max: Duration, failures: u64, jitter: Jitter) -> Duration {
    let exponent = u32::try_from(failures.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(31);
    let full = base
        .checked_mul(1u32 << exponent)
        .unwrap_or(Duration::MAX)
        .min(max);
    match jitter {
        Jitter::Equal => (full / 2)
            .saturating_add(full.mul_f64(fastrand::f64() * 0.5))
            .min(full),
        Jitter::UpToAQuarterMore => {
            let low = u64::try_from(full.as_nanos()).unwrap_or(u64::MAX);
            let cap = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
            let high = low.saturating_add(low / 4).min(cap).max(low);
            Duration::from_nanos(fastrand::u64(low..=high))
        }
    }
}
