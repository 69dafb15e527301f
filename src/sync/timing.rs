//! Where a pass spends its time: named laps, logged at debug level when the
//! pass ends (`-v 1` shows them), so that a slow publish can be taken apart
//! in production without a profiler. Costs one `Instant::now()` per lap.

use std::time::Instant;

/// Laps of one pass, in order.
pub(crate) struct Laps {
    start: Instant,
    last: Instant,
    laps: Vec<(&'static str, u128)>,
}

impl Laps {
    pub(crate) fn start() -> Self {
        let now = Instant::now();
        Self {
            start: now,
            last: now,
            laps: Vec::with_capacity(8),
        }
    }

    /// Ends the lap `name` (the time since the previous lap or the start).
    pub(crate) fn lap(&mut self, name: &'static str) {
        let now = Instant::now();
        self.laps
            .push((name, now.duration_since(self.last).as_micros()));
        self.last = now;
    }

    /// `fetch=12.3ms plan=4.1ms ...`, and the total.
    pub(crate) fn summary(&self) -> String {
        // Hundredths: a signature check or an index write is well under 1 ms.
        let ms = |us: u128| format!("{}.{:02}ms", us / 1000, us % 1000 / 10);
        let mut out: Vec<String> = self
            .laps
            .iter()
            .map(|(name, us)| format!("{name}={}", ms(*us)))
            .collect();
        out.push(format!(
            "total={}",
            ms(self.last.duration_since(self.start).as_micros())
        ));
        out.join(" ")
    }

    /// Logs the laps at debug level.
    pub(crate) fn log(&self, what: &'static str) {
        tracing::debug!(laps = %self.summary(), "{what}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn laps_are_named_in_order_with_a_total() {
        let mut laps = Laps::start();
        laps.lap("fetch");
        laps.lap("build");
        let summary = laps.summary();
        let names: Vec<&str> = summary
            .split(' ')
            .filter_map(|part| part.split('=').next())
            .collect();
        assert_eq!(names, ["fetch", "build", "total"]);
        assert!(summary.split(' ').all(|p| p.ends_with("ms")), "{summary}");
    }
}
