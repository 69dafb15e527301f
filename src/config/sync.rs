//! The sync loop's flags: `--period`, `--init-period`, `--sync-timeout`,
//! `--one-time`, `--max-failures`, `--init-max-failures`, `--sync-on-signal`,
//! `--depth`, with the v3 `--wait`, `--timeout` and `--max-sync-failures`
//! folded in.

use crate::cli::Flag;
use std::time::Duration;

use super::checker::{default_bool, default_duration, default_int};
use super::syntax::{non_empty, parse_signal};
use super::Checker;

const MIN_PERIOD: Duration = Duration::from_millis(10);

/// The sync loop's timing and fetch settings, with their defaults applied.
pub(super) struct Schedule {
    pub period: Duration,
    pub init_period: Duration,
    pub sync_timeout: Duration,
    pub one_time: bool,
    pub max_failures: i64,
    pub init_max_failures: i64,
    pub sync_on_signal: Option<i32>,
    pub depth: u32,
}

impl Checker<'_> {
    /// Reads the loop's flags, the v3 forms folded in; invalid values are
    /// reported and replaced by the defaults.
    pub(super) fn schedule(&mut self) -> Schedule {
        // --period (--wait overrides when non-zero)
        let mut period_id = Flag::Period;
        let mut period = self.duration_or(Flag::Period, default_duration(Flag::Period));
        if let Some(wait) = self.float(Flag::Wait) {
            if wait != 0.0 {
                period_id = Flag::Wait;
                // As git-sync: truncate to whole milliseconds.
                let ms = (wait * 1000.0).trunc();
                period = if ms < 0.0 {
                    self.fail(Flag::Wait, format!("must not be negative, got {wait}"));
                    None
                } else {
                    Some(Duration::from_millis(ms as u64))
                };
            }
        }
        self.at_least(period_id, period, MIN_PERIOD);
        let period = period.unwrap_or(default_duration(Flag::Period));

        // --init-period (defaults to the period). Only checked when set: a
        // too-short --period is reported once, under its own name.
        let init_period = self.duration_or(Flag::InitPeriod, period);
        if self.value(Flag::InitPeriod).is_some() {
            self.at_least(Flag::InitPeriod, init_period, MIN_PERIOD);
        }
        let init_period = init_period.unwrap_or(period);

        // --sync-timeout (--timeout overrides when non-zero)
        let mut timeout_id = Flag::SyncTimeout;
        let mut sync_timeout =
            self.duration_or(Flag::SyncTimeout, default_duration(Flag::SyncTimeout));
        if let Some(secs) = self.int(Flag::Timeout) {
            if secs != 0 {
                timeout_id = Flag::Timeout;
                sync_timeout = match u64::try_from(secs) {
                    Ok(secs) => Some(Duration::from_secs(secs)),
                    Err(_) => {
                        self.fail(Flag::Timeout, format!("must not be negative, got {secs}"));
                        None
                    }
                };
            }
        }
        self.at_least(timeout_id, sync_timeout, MIN_PERIOD);
        let sync_timeout = sync_timeout.unwrap_or(default_duration(Flag::SyncTimeout));

        let one_time = self
            .bool(Flag::OneTime)
            .unwrap_or_else(|| default_bool(Flag::OneTime));

        // --max-failures (--max-sync-failures overrides when non-zero)
        let mut max_failures = self
            .int(Flag::MaxFailures)
            .unwrap_or_else(|| default_int(Flag::MaxFailures));
        if let Some(v) = self.int(Flag::MaxSyncFailures) {
            if v != 0 {
                max_failures = v;
            }
        }
        let init_max_failures = self.int(Flag::InitMaxFailures).unwrap_or(max_failures);

        let sync_on_signal = match non_empty(self.cli.sync_on_signal.as_deref()) {
            None => None,
            Some(raw) => match parse_signal(raw) {
                Ok(n) => match stops_the_process(n) {
                    Some(why) => {
                        // git-sync accepts it (by its source; not measured):
                        // a warning, so that its configuration still starts.
                        let label = self.cli.label(Flag::SyncOnSignal);
                        self.warnings.push(format!("{label}: {why}; it is ignored"));
                        None
                    }
                    None => Some(n),
                },
                Err(e) => {
                    self.fail(Flag::SyncOnSignal, e);
                    None
                }
            },
        };

        let depth = match self.int(Flag::Depth) {
            None => default_int(Flag::Depth),
            Some(d) => u32::try_from(d).unwrap_or_else(|_| {
                if d < 0 {
                    self.fail(
                        Flag::Depth,
                        format!("must be 0 or more (0 = full history), got {d}"),
                    );
                } else {
                    self.fail(Flag::Depth, format!("too large: {d}"));
                }
                default_int(Flag::Depth)
            }),
        };
        Schedule {
            period,
            init_period,
            sync_timeout,
            one_time,
            max_failures,
            init_max_failures,
            sync_on_signal,
            depth,
        }
    }
}

/// Why `signal` cannot be `--sync-on-signal`: SIGTERM and SIGINT stop
/// git-sidecar.
fn stops_the_process(signal: i32) -> Option<String> {
    use nix::sys::signal::Signal;
    match Signal::try_from(signal) {
        Ok(stop @ (Signal::SIGTERM | Signal::SIGINT)) => Some(format!(
            "{} stops git-sidecar (Kubernetes stops containers with SIGTERM), so it cannot also \
             trigger a sync; use another signal, such as SIGHUP or SIGUSR1",
            stop.as_str()
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::super::*;
    use super::*;
    use nix::sys::signal::Signal;

    #[test]
    fn duration_minimums_and_negatives() {
        let p = problems(
            &with(&["--period=5ms", "--sync-timeout=0", "--init-period=1ms"]),
            &[],
        );
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(
            p[0].starts_with("--period (GITSYNC_PERIOD): must be at least 10ms"),
            "{p:?}"
        );
        assert!(
            p[1].starts_with("--init-period (GITSYNC_INIT_PERIOD): must be at least"),
            "{p:?}"
        );
        assert!(
            p[2].starts_with("--sync-timeout (GITSYNC_SYNC_TIMEOUT): must be at least"),
            "{p:?}"
        );
        let p = problems(
            &with(&["--stale-worktree-timeout=-1s", "--period=-1s"]),
            &[],
        );
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p.iter().all(|l| l.contains("must not be negative")),
            "{p:?}"
        );
        let p = problems(&with(&["--period="]), &[]);
        assert_eq!(
            p,
            vec!["--period (GITSYNC_PERIOD): invalid duration \"\"".to_string()]
        );
    }

    #[test]
    fn v3_wait_timeout_max_sync_failures_dest() {
        let c = config(
            &with(&[
                "--wait=0.5",
                "--period=1h",
                "--timeout=30",
                "--max-sync-failures=4",
                "--max-failures=1",
                "--dest=www",
            ]),
            &[],
        );
        assert_eq!(c.period, Duration::from_millis(500));
        assert_eq!(c.init_period, Duration::from_millis(500));
        assert_eq!(c.sync_timeout, Duration::from_secs(30));
        assert_eq!(c.max_failures, 4);
        assert_eq!(c.init_max_failures, 4);
        assert_eq!(c.link, PathBuf::from("/srv/git/www"));
        assert_eq!(c.warnings.len(), 4, "{:?}", c.warnings);

        let c = config(
            &base(),
            &[("GIT_SYNC_WAIT", "2.25"), ("GIT_SYNC_DEST", "/abs/link")],
        );
        assert_eq!(c.period, Duration::from_millis(2250));
        assert_eq!(c.link, PathBuf::from("/abs/link"));

        // Zero values do not override.
        let c = config(
            &with(&[
                "--wait=0",
                "--timeout=0",
                "--max-sync-failures=0",
                "--max-failures=2",
            ]),
            &[],
        );
        assert_eq!(c.period, Duration::from_secs(10));
        assert_eq!(c.sync_timeout, Duration::from_secs(120));
        assert_eq!(c.max_failures, 2);

        let p = problems(&with(&["--wait=0.001", "--wait=abc"]), &[]);
        assert_eq!(
            p,
            vec!["--wait (GIT_SYNC_WAIT): invalid number \"abc\" (seconds, e.g. 1.5)".to_string()]
        );
        let p = problems(&with(&["--wait=0.001"]), &[]);
        assert!(
            p[0].starts_with("--wait (GIT_SYNC_WAIT): must be at least 10ms"),
            "{p:?}"
        );
    }

    #[test]
    fn submodules_default_to_recursive_as_in_git_sync() {
        assert_eq!(config(&with(&[]), &[]).submodules, SubmoduleMode::Recursive);
        for (raw, mode) in [
            ("recursive", SubmoduleMode::Recursive),
            ("shallow", SubmoduleMode::Shallow),
            ("off", SubmoduleMode::Off),
        ] {
            let flag = format!("--submodules={raw}");
            assert_eq!(config(&with(&[&flag]), &[]).submodules, mode);
            let env = config(&with(&[]), &[("GIT_SYNC_SUBMODULES", raw)]);
            assert_eq!(env.submodules, mode);
        }
    }

    #[test]
    fn sync_on_signal_forms() {
        let hup = Signal::SIGHUP as i32;
        for form in ["HUP", "SIGHUP", "hup", "sighup", "1", "0x1"] {
            assert_eq!(parse_signal(form), Ok(hup), "{form}");
        }
        assert_eq!(parse_signal("usr2"), Ok(Signal::SIGUSR2 as i32));
        assert!(parse_signal("bogus").is_err());
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("999").is_err());
        assert!(parse_signal("KILL")
            .unwrap_err()
            .contains("cannot be caught"));
        assert!(parse_signal("SIGSTOP").is_err());
        assert!(parse_signal("9").is_err());
        // Accepted as git-sync does, with a warning, and never a trigger.
        for stop in ["TERM", "SIGINT", "15"] {
            let c = config(&with(&[&format!("--sync-on-signal={stop}")]), &[]);
            assert_eq!(c.sync_on_signal, None, "{stop}");
            let w = &c.warnings;
            assert!(
                w.len() == 1 && w[0].contains("stops git-sidecar") && w[0].contains("ignored"),
                "{w:?}"
            );
        }
        let c = config(&with(&["--sync-on-signal=SIGHUP"]), &[]);
        assert_eq!(c.sync_on_signal, Some(hup));
        let p = problems(&with(&["--sync-on-signal=bogus"]), &[]);
        assert_eq!(
            p,
            vec!["--sync-on-signal (GITSYNC_SYNC_ON_SIGNAL): unknown signal \"bogus\"".to_string()]
        );
    }

    #[test]
    fn a_short_period_is_not_also_blamed_on_init_period() {
        let p = problems(&with(&["--period=5ms"]), &[]);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("--period (GITSYNC_PERIOD): must be at least 10ms"));
        let p = problems(&with(&["--period=5ms", "--init-period=5ms"]), &[]);
        assert_eq!(p.len(), 2, "set by the user: reported: {p:?}");
    }
}
