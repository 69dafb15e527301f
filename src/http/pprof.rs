//! `/debug/pprof/` (`--http-pprof`): a real CPU profile of this process in
//! pprof's protobuf format (`go tool pprof` and `pprof` read it), sampled
//! for `?seconds=N` (default 30, at most 300). One profile at a time.

use axum::extract::Query;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use pprof::protos::Message;
use serde::Deserialize;

pub async fn index() -> Html<&'static str> {
    Html(
        "<html><body><h1>/debug/pprof/</h1>\
         <p><a href=\"profile?seconds=30\">profile</a>: CPU profile (pprof protobuf), \
         <code>?seconds=N</code> (1 to 300)</p></body></html>",
    )
}

#[derive(Deserialize)]
pub struct ProfileParams {
    seconds: Option<u64>,
}

pub async fn profile(Query(params): Query<ProfileParams>) -> Response {
    let seconds = params.seconds.unwrap_or(30).clamp(1, 300);
    let sampled = tokio::task::spawn_blocking(move || sample(seconds)).await;
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
        Ok(Err(e)) => (StatusCode::CONFLICT, format!("could not profile: {e}\n")).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("profiler failed: {e}\n"),
        )
            .into_response(),
    }
}

/// Samples all threads at 99 Hz for `seconds`, then encodes the profile.
fn sample(seconds: u64) -> Result<Vec<u8>, String> {
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(99)
        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
        .build()
        .map_err(|e| e.to_string())?;
    std::thread::sleep(std::time::Duration::from_secs(seconds));
    let report = guard.report().build().map_err(|e| e.to_string())?;
    let profile = report.pprof().map_err(|e| e.to_string())?;
    Ok(profile.encode_to_vec())
}
