//! A minimal init for when we are PID 1 (the normal case in a container), as
//! git-sync's `pkg/pid1` does it: the process forks before anything else;
//! the child runs the sidecar, and the parent stays PID 1 and only
//! - reaps every child that exits: processes that hooks leave behind (a
//!   double-forked daemon, the `sleep` of a killed script) are re-parented to
//!   PID 1 and would otherwise stay zombies, filling the PID table;
//! - forwards every signal it gets to the sidecar (PID 1 ignores signals it
//!   has no handler for, so the runtime's SIGTERM would otherwise be lost
//!   before our handlers are installed);
//! - exits with the sidecar's exit code, or 128+signal if it was killed.
//!
//! Splitting the roles is what keeps reaping correct: the sidecar's own
//! children (git, ssh, hooks) are waited for by tokio and std, and a reaper
//! inside that process calling `waitpid(-1)` would steal their exit statuses.
//! The init process has exactly one child of its own, so it can reap
//! everything with `waitpid(-1)`.

use std::process::ExitCode;

use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, getpid, ForkResult, Pid};

/// When we are PID 1: forks, and returns `Some(exit code)` in the parent
/// (which has done its job as init by then), `None` in the child, which
/// goes on to be the sidecar. `None` straight away when we are not PID 1.
///
/// Call it first thing in `main`, while the process has a single thread:
/// fork copies only the calling thread.
pub fn init_if_pid1() -> Option<ExitCode> {
    if getpid().as_raw() != 1 {
        return None;
    }
    // Block every signal before the fork, so none sent in between is lost:
    // the init collects them with sigwait, the child unblocks them.
    let old = match SigSet::all().thread_swap_mask(SigmaskHow::SIG_SETMASK) {
        Ok(old) => old,
        Err(e) => {
            eprintln!("git-sidecar: running as PID 1 without an init (blocking signals: {e})");
            return None;
        }
    };
    match split() {
        Ok(ForkResult::Child) => {
            restore(old);
            None
        }
        Ok(ForkResult::Parent { child }) => Some(supervise(child)),
        Err(e) => {
            restore(old);
            eprintln!("git-sidecar: running as PID 1 without an init (fork: {e})");
            None
        }
    }
}

// fork(2) is the one unsafe call.
#[allow(unsafe_code)]
fn split() -> nix::Result<ForkResult> {
    // SAFETY: called while the process has one thread (see `init_if_pid1`),
    // so the child's memory holds no lock another thread was holding; the
    // child returns into ordinary single-threaded code.
    unsafe { fork() }
}

fn restore(mask: SigSet) {
    if let Err(e) = mask.thread_set_mask() {
        eprintln!("git-sidecar: could not unblock signals after fork: {e}");
    }
}

/// The init's whole life: wait for a signal; on SIGCHLD reap, otherwise
/// pass it on to the sidecar; return once the sidecar has exited.
fn supervise(sidecar: Pid) -> ExitCode {
    let all = SigSet::all();
    loop {
        match all.wait() {
            Ok(Signal::SIGCHLD) => {
                if let Some(code) = reap(sidecar) {
                    return ExitCode::from(code);
                }
            }
            Ok(signal) => {
                let _ = kill(sidecar, signal);
            }
            // A real-time signal (nix has no name for it): nothing to forward.
            Err(_) => {}
        }
    }
}

/// Reaps every exited child; the sidecar's exit code once it is among them.
fn reap(sidecar: Pid) -> Option<u8> {
    let mut sidecar_code = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == sidecar => {
                sidecar_code = Some(u8::try_from(code).unwrap_or(1));
            }
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == sidecar => {
                sidecar_code = Some(exit_code_for_signal(signal));
            }
            // An orphan reaped (or a status we did not ask for): go on.
            Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => {}
            // Nothing more has exited, or no child is left.
            Ok(_) | Err(_) => return sidecar_code,
        }
    }
}

/// 128 + the signal's number, as shells and git-sync report a death by signal.
fn exit_code_for_signal(signal: Signal) -> u8 {
    u8::try_from(128 + signal as i32).unwrap_or(u8::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn death_by_signal_is_128_plus_its_number() {
        assert_eq!(exit_code_for_signal(Signal::SIGTERM), 143);
        assert_eq!(exit_code_for_signal(Signal::SIGKILL), 137);
    }

    #[test]
    fn not_pid_1_means_no_init() {
        // The test process is never PID 1: nothing forks, nothing is blocked.
        assert!(init_if_pid1().is_none());
        let mask = SigSet::thread_get_mask().expect("reading the signal mask");
        assert!(!mask.contains(Signal::SIGTERM));
    }
}
