//! The `git-sidecar` binary: become init when PID 1, answer `--man`, parse
//! and validate flags, then hand over to [`git_sidecar::process`], which
//! sets the process up, runs the app and maps the result to an exit code.

use std::ffi::OsString;
use std::io::Write as _;
use std::process::ExitCode;

use git_sidecar::config::{self, LoadError};
use git_sidecar::manual;

fn main() -> ExitCode {
    // First, while there is one thread: as PID 1 the parent stays behind as
    // init (reaping orphans, forwarding signals) and the child goes on.
    if let Some(code) = git_sidecar::pid1::init_if_pid1() {
        return code;
    }
    git_sidecar::memory::limit_arenas();
    git_sidecar::nss::use_built_in_sources();
    let args: Vec<OsString> = std::env::args_os().collect();
    if manual::requested(&args) {
        // Like --help: to stdout, exit 0; a closed pipe (`| head`) is no error.
        let _ = std::io::stdout().write_all(manual::render().as_bytes());
        return ExitCode::SUCCESS;
    }
    match config::load(args, &|name| std::env::var(name).ok()) {
        Ok(config) => git_sidecar::process::run(config),
        Err(LoadError::Clap(e)) => e.exit(),
        Err(LoadError::Invalid(e, error_file)) => {
            eprintln!("git-sidecar: invalid configuration:\n{e}");
            e.write_error_file(error_file.as_deref());
            ExitCode::from(1)
        }
    }
}
