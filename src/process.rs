//! The process around the app, for the binary: logging, the git config of
//! the programs we start, the umask and open-file limit, a small tokio
//! runtime, and the exit code a run ends with.

use std::process::ExitCode;
use std::time::Duration;

use crate::config::Config;
use crate::sync::Exit;
use crate::{app, logging};

/// Sets the process up for `config`, runs the app and says how to exit.
pub fn run(config: Config) -> ExitCode {
    logging::init(config.log_format, config.verbosity);
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    // `--group-write` makes everything written group-writable (git-sync's umask 0002).
    crate::fsutil::set_umask(config.group_write);
    if config.add_user {
        crate::passwd::add_user_if_missing(std::path::Path::new(crate::passwd::PASSWD));
    }
    raise_open_file_limit();
    exit_code(run_on_runtime(config))
}

/// The exit code of a run: 0 for a finished one-time run or a shutdown.
fn exit_code(result: anyhow::Result<Exit>) -> ExitCode {
    match result {
        Ok(Exit::OneTimeDone | Exit::Cancelled) => ExitCode::SUCCESS,
        Ok(Exit::OneTimeHooksFailed) => {
            tracing::error!("--one-time: a hook failed");
            ExitCode::from(1)
        }
        Ok(Exit::OneTimeStopped) => {
            tracing::error!(
                "--one-time: stopped by a signal before the sync finished (or before its hooks did)"
            );
            ExitCode::from(1)
        }
        Ok(Exit::OneTimeRefused) => {
            tracing::error!("--one-time: the commit's signature was refused (--verify-signatures)");
            ExitCode::from(1)
        }
        Ok(Exit::TooManyFailures { failures, error }) => {
            tracing::error!(error, failures, "too many consecutive failures; exiting");
            ExitCode::from(1)
        }
        Err(e) => {
            // Each cause once: our errors often quote their source already.
            let error = crate::types::error_chain(e.as_ref() as &dyn std::error::Error);
            tracing::error!(error, "fatal error");
            ExitCode::from(1)
        }
    }
}

fn run_on_runtime(config: Config) -> anyhow::Result<Exit> {
    // One core's worth of runtime: a sidecar should be cheap. Git work runs
    // on the blocking pool, so health endpoints stay responsive.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(app::run(config));
    // Don't wait for a blocking pass stuck on a dead socket.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}

/// Soft RLIMIT_NOFILE up to the hard limit (container runtimes often give
/// 1024 soft and far more hard): HTTP clients and the sync share this
/// budget, and the HTTP side keeps at most half of it (src/http/serve.rs).
fn raise_open_file_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft < hard {
        if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            tracing::warn!(soft, hard, error = %e, "could not raise the open-file limit");
        }
    }
}
