//! Structured logs on stderr: JSON by default (as git-sync), or text.
//! `-v` sets the level (0 = info, 1-5 = debug, 6+ = trace); `RUST_LOG`, when
//! set, overrides it with a full filter.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. Call once, from `main`.
pub fn init(format: LogFormat, verbosity: u8) {
    let level = match verbosity {
        0 => "info",
        1..=5 => "debug",
        _ => "trace",
    };
    // Keep dependencies quiet unless asked for at high verbosity.
    let default = if verbosity >= 9 {
        level.to_string()
    } else {
        format!("warn,git_sidecar={level}")
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
