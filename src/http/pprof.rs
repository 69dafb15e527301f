//! `/debug/pprof/` (`--http-pprof`): a real CPU profile of this process in
//! pprof's protobuf format (`go tool pprof` and `pprof` read it), sampled
//! for `?seconds=N` (default 30, at most 300).
//!
//! The profiler is process-wide, so one profile runs at a time. Another
//! request meanwhile gets 503 with `Retry-After` (the seconds left) and a
//! body saying so: the profiler is temporarily unavailable to everyone,
//! which is what 503 means; 409 would say the request itself conflicts
//! and 429 that this client asked too often. Go's own handler answers 500
//! here; `go tool pprof` prints the body either way, and `curl --retry`
//! waits for `Retry-After` on a 503. Requests are not queued: a queue would
//! hold connections for up to 300 s each.
//!
//! A profile stops when its client goes away: hyper drops the handler, the
//! handler's end of a channel goes with it, and the sampling thread wakes
//! up, stops the profiler and frees the slot.

use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::Query;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use pprof::protos::Message;
use serde::Deserialize;

const DEFAULT_SECONDS: u64 = 30;
const MAX_SECONDS: u64 = 300;

pub async fn index() -> Html<&'static str> {
    Html(
        "<html><body><h1>/debug/pprof/</h1>\
         <p><a href=\"profile?seconds=30\">profile</a>: CPU profile (pprof protobuf), \
         <code>?seconds=N</code> (1 to 300); one at a time</p></body></html>",
    )
}

#[derive(Deserialize)]
pub struct ProfileParams {
    seconds: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
enum ProfileError {
    #[error("the profiler failed: {0}")]
    Profiler(String),
    #[error("the client went away")]
    ClientGone,
}

pub async fn profile(Query(params): Query<ProfileParams>) -> Response {
    let seconds = params
        .seconds
        .unwrap_or(DEFAULT_SECONDS)
        .clamp(1, MAX_SECONDS);
    let length = Duration::from_secs(seconds);
    let claim = match Claim::take(length) {
        Ok(claim) => claim,
        Err(running) => return running.response(),
    };
    // Held across the await: when hyper drops this future (client gone),
    // the sender goes and the sampling thread stops at once.
    let (_client_here, client_gone) = mpsc::channel::<()>();
    let sampled = tokio::task::spawn_blocking(move || {
        let sampled = sample(length, &client_gone);
        drop(claim);
        sampled
    })
    .await;
    match sampled {
        Ok(Ok(bytes)) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"profile\"",
                ),
            ],
            bytes,
        )
            .into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the profiler failed: {e}\n"),
        )
            .into_response(),
    }
}

/// Samples all threads at 99 Hz for `length` (or until `client_gone`
/// disconnects), then encodes the profile.
fn sample(length: Duration, client_gone: &mpsc::Receiver<()>) -> Result<Vec<u8>, ProfileError> {
    let failed = |e: pprof::Error| ProfileError::Profiler(e.to_string());
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(99)
        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
        .build()
        .map_err(failed)?;
    if let Err(mpsc::RecvTimeoutError::Disconnected) = client_gone.recv_timeout(length) {
        drop(guard);
        tracing::info!("CPU profile stopped early: its client went away");
        return Err(ProfileError::ClientGone);
    }
    let report = guard.report().build().map_err(failed)?;
    let profile = report.pprof().map_err(failed)?;
    Ok(profile.encode_to_vec())
}

/// The profile running now: when it started and for how long.
#[derive(Debug, Clone, Copy)]
struct Running {
    started: Instant,
    length: Duration,
}

/// Process-wide, as the profiler it guards is (pprof's one SIGPROF handler
/// and sample buffer): per-server state would let a second server's
/// request start a profiler that cannot start.
static RUNNING: Mutex<Option<Running>> = Mutex::new(None);

impl Running {
    /// Whole seconds until it ends (at least 1).
    fn seconds_left(&self) -> u64 {
        let left = self.length.saturating_sub(self.started.elapsed());
        (left.as_secs() + u64::from(left.subsec_nanos() > 0)).max(1)
    }

    /// 503 with `Retry-After` and a body that says what to do.
    fn response(&self) -> Response {
        let left = self.seconds_left();
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, left.to_string())],
            format!(
                "a CPU profile is already running ({} s requested, about {left} s left); \
                 only one runs at a time: retry in {left} s\n",
                self.length.as_secs()
            ),
        )
            .into_response()
    }
}

/// The right to run the profiler; dropping it frees the slot.
#[derive(Debug)]
struct Claim;

impl Claim {
    fn take(length: Duration) -> Result<Self, Running> {
        let mut running = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(other) = *running {
            return Err(other);
        }
        *running = Some(Running {
            started: Instant::now(),
            length,
        });
        Ok(Claim)
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        *RUNNING.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_profile_is_refused_with_when_to_retry_until_the_first_ends() {
        let first = Claim::take(Duration::from_secs(30)).expect("nothing runs yet");
        let running = Claim::take(Duration::from_secs(5)).expect_err("one at a time");
        let response = running.response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let retry: u64 = response.headers()[header::RETRY_AFTER]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("seconds");
        assert!((29..=30).contains(&retry), "Retry-After {retry}");
        drop(first);
        drop(Claim::take(Duration::from_secs(5)).expect("free again once the first ends"));
    }

    #[test]
    fn seconds_left_rounds_up_and_is_never_zero() {
        let now = Instant::now();
        let at = |started, length| Running { started, length }.seconds_left();
        assert_eq!(at(now, Duration::from_millis(1500)), 2);
        assert_eq!(at(now - Duration::from_secs(10), Duration::from_secs(5)), 1);
    }
}
