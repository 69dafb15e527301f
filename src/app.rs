//! Composition root: builds the components from the validated [`Config`],
//! owns the one cancellation token, wires signals to it and to the sync
//! trigger, and runs the sync loop until it ends.

use anyhow::Context as _;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::sync::{self, engine, Exit, Trigger};

/// Runs the sidecar until shutdown, `--one-time` completion or too many failures.
pub async fn run(config: Config) -> anyhow::Result<Exit> {
    let cancel = CancellationToken::new();
    let trigger = Trigger::default();
    spawn_shutdown_listener(cancel.clone())?;
    if let Some(signo) = config.sync_on_signal {
        spawn_sync_signal_listener(signo, trigger.clone(), cancel.clone())?;
    }
    let engine =
        engine::Engine::new(engine_options(&config)).context("could not set up the sync engine")?;
    tracing::info!(
        repo = %config.repo,
        root = %config.root.display(),
        link = %config.link.display(),
        r#ref = %config.git_ref,
        depth = config.depth,
        period_ms = config.period.as_millis() as u64,
        version = env!("CARGO_PKG_VERSION"),
        pid = std::process::id(),
        uid = nix::unistd::getuid().as_raw(),
        gid = nix::unistd::getgid().as_raw(),
        "starting git-sidecar"
    );
    let exit = sync::run(engine, loop_options(&config), trigger, cancel.clone()).await;
    cancel.cancel();
    Ok(exit)
}

fn engine_options(config: &Config) -> engine::Options {
    engine::Options {
        repo: config.repo.clone(),
        root: config.root.clone(),
        link: config.link.clone(),
        git_ref: config.git_ref.clone(),
        depth: config.depth,
        stale_worktree_timeout: config.stale_worktree_timeout,
    }
}

fn loop_options(config: &Config) -> sync::LoopOptions {
    sync::LoopOptions {
        period: config.period,
        init_period: config.init_period,
        sync_timeout: config.sync_timeout,
        one_time: config.one_time,
        max_failures: config.max_failures,
        init_max_failures: config.init_max_failures,
        touch_file: config.touch_file.clone(),
        error_file: config.error_file.clone(),
        repo_redacted: config.repo.redacted(),
        git_ref: config.git_ref.clone(),
    }
}

/// SIGTERM or SIGINT cancels everything; a second one exits at once.
fn spawn_shutdown_listener(cancel: CancellationToken) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutting down");
        cancel.cancel();
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        tracing::warn!("second signal: exiting immediately");
        std::process::exit(130);
    });
    Ok(())
}

/// `--sync-on-signal`: each delivery triggers a sync (coalesced).
fn spawn_sync_signal_listener(
    signo: i32,
    trigger: Trigger,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let mut stream = signal(SignalKind::from_raw(signo))
        .with_context(|| format!("installing a handler for signal {signo}"))?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                got = stream.recv() => match got {
                    Some(()) => trigger.fire(),
                    None => break,
                },
            }
        }
    });
    Ok(())
}
