//! The `git-sidecar` binary: parse and validate flags, set up logging, run
//! the app on a small tokio runtime, map the result to an exit code.

use std::ffi::OsString;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use git_sidecar::config::{self, Config};
use git_sidecar::sync::Exit;
use git_sidecar::{app, logging, manual};

fn main() -> ExitCode {
    // First, while there is one thread: as PID 1 the parent stays behind as
    // init (reaping orphans, forwarding signals) and the child goes on.
    if let Some(code) = git_sidecar::pid1::init_if_pid1() {
        return code;
    }
    git_sidecar::memory::limit_arenas();
    let args: Vec<OsString> = std::env::args_os().collect();
    if manual::requested(&args) {
        // Like --help: to stdout, exit 0; a closed pipe (`| head`) is no error.
        let _ = std::io::stdout().write_all(manual::render().as_bytes());
        return ExitCode::SUCCESS;
    }
    let config = match config::load(args, &|name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(config::LoadError::Clap(e)) => e.exit(),
        Err(config::LoadError::Invalid(e)) => {
            eprintln!("git-sidecar: invalid configuration:\n{e}");
            return ExitCode::from(1);
        }
    };
    logging::init(config.log_format, config.verbosity);
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    // The git programs we start (upload-pack, hooks' git) see --git-config.
    git_sidecar::git::cli_config::install(config.access.git_config.0.clone());
    set_umask(&config);
    raise_open_file_limit();
    match run(config) {
        Ok(Exit::OneTimeDone | Exit::Cancelled) => ExitCode::SUCCESS,
        Ok(Exit::OneTimeHooksFailed) => {
            tracing::error!("--one-time: a hook failed");
            ExitCode::from(1)
        }
        Ok(Exit::TooManyFailures { failures }) => {
            tracing::error!(failures, "too many consecutive failures; exiting");
            ExitCode::from(1)
        }
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "fatal error");
            ExitCode::from(1)
        }
    }
}

fn run(config: Config) -> anyhow::Result<Exit> {
    // One core's worth of runtime: a sidecar should be cheap. gix work runs
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

/// `--group-write` makes everything written group-writable (git-sync's umask 0002).
fn set_umask(config: &Config) {
    git_sidecar::fsutil::set_umask(config.group_write);
}
