//! Composition root: builds the components from the validated [`Config`],
//! owns the one cancellation token, wires signals to it and to the sync
//! trigger, takes the root lock, and runs the sync loop until it ends.

use anyhow::Context as _;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Config, HttpConfig};
use crate::hooks::Hooks;
use crate::http;
use crate::metrics::Metrics;
use crate::rootlock::{self, Attempt, RootLock};
use crate::status::StatusHandle;
use crate::sync::{self, engine, Exit, Trigger};

/// Runs the sidecar until shutdown, `--one-time` completion or too many failures.
pub async fn run(config: Config) -> anyhow::Result<Exit> {
    let cancel = CancellationToken::new();
    let trigger = Trigger::default();
    spawn_shutdown_listener(cancel.clone())?;
    if let Some(signo) = config.sync_on_signal {
        spawn_sync_signal_listener(signo, trigger.clone(), cancel.clone())?;
    }
    let metrics = Arc::new(Metrics::new());
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
    let reporter = sync::Reporter {
        status: StatusHandle::default(),
        metrics,
    };
    let server = match &config.http {
        Some(http_config) => {
            Some(start_http(&config, http_config, &reporter, &trigger, &cancel).await?)
        }
        None => None,
    };
    let Some(root_lock) = lock_root(&config, &reporter.status, &cancel).await? else {
        return Ok(stop_server(server, stopped(&config)).await);
    };
    let engine = engine::Engine::new(engine_options(&config), reporter.metrics.clone(), root_lock)
        .context("could not set up the sync engine")?;
    let hooks = Hooks::start(
        &config.hooks,
        reporter.metrics.clone(),
        config.one_time,
        cancel.clone(),
    );
    let exit = sync::run(
        engine,
        loop_options(&config),
        trigger,
        reporter,
        hooks,
        cancel.clone(),
    )
    .await;
    cancel.cancel();
    let exit = if exit == Exit::Cancelled {
        stopped(&config)
    } else {
        exit
    };
    Ok(stop_server(server, exit).await)
}

/// How a run stopped by a signal ends: a failure for `--one-time` (a
/// cron job or an init container stopped before its sync must not pass
/// for one that synced), a clean stop otherwise.
fn stopped(config: &Config) -> Exit {
    if config.one_time {
        Exit::OneTimeStopped
    } else {
        Exit::Cancelled
    }
}

async fn stop_server(server: Option<tokio::task::JoinHandle<()>>, exit: Exit) -> Exit {
    if let Some(server) = server {
        // Graceful: in-flight requests get a moment, then we go regardless.
        let _ = tokio::time::timeout(Duration::from_millis(500), server).await;
    }
    exit
}

/// How often a waiting instance tries the root lock again.
const LOCK_RETRY: Duration = Duration::from_millis(500);
/// How often it repeats that it is still waiting.
const LOCK_LOG_EVERY: Duration = Duration::from_secs(60);

/// Takes the root lock before anything in the root is touched. While
/// another instance holds it: waits (not ready, still alive, stops on
/// shutdown with `None`), or with `--one-time` fails at once, since the
/// holder may never exit.
async fn lock_root(
    config: &Config,
    status: &StatusHandle,
    cancel: &CancellationToken,
) -> anyhow::Result<Option<RootLock>> {
    let root = config.root.display().to_string();
    let mut logged: Option<Instant> = None;
    loop {
        match rootlock::try_acquire(&config.root)? {
            Attempt::Acquired(lock) => {
                if logged.is_some() {
                    tracing::info!(root, "got the root lock; starting");
                }
                status.set_waiting(None);
                return Ok(Some(lock));
            }
            Attempt::Held { holder } if config.one_time => anyhow::bail!(
                "another git-sidecar ({holder}) holds the lock on --root {root}; --one-time does \
                 not wait: run it when that instance has exited, or use another --root"
            ),
            Attempt::Held { holder } => {
                if logged.is_none_or(|t| t.elapsed() >= LOCK_LOG_EVERY) {
                    tracing::warn!(
                        root,
                        holder,
                        "another git-sidecar holds the lock on this root; waiting for it to exit \
                         (nothing in the root is touched until then)"
                    );
                    logged = Some(Instant::now());
                }
                status.set_waiting(Some(format!(
                    "waiting for the lock on --root, held by {holder}"
                )));
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return Ok(None),
            _ = tokio::time::sleep(LOCK_RETRY) => {}
        }
    }
}

/// Binds `--http-bind` before the first sync (a bind failure is fatal, as in
/// git-sync) and serves until shutdown.
async fn start_http(
    config: &Config,
    http_config: &HttpConfig,
    reporter: &sync::Reporter,
    trigger: &Trigger,
    cancel: &CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = http::bind(http_config.bind)
        .await
        .with_context(|| format!("could not listen on --http-bind {}", http_config.bind))?;
    let local = listener.local_addr().context("reading the bound address")?;
    let state = http::HttpState::new(
        http_config.clone(),
        reporter.status.clone(),
        reporter.metrics.clone(),
        trigger.clone(),
        config.repo.redacted(),
        config.git_ref.clone(),
        config.sync_timeout,
    );
    let state = match &config.peers {
        Some(peers) => state.with_peers(start_peers(config, peers, local, reporter, cancel)),
        None => state,
    };
    if http_config.webhook.secrets.is_empty() && !http_config.webhook.allow_unsigned {
        tracing::info!("incoming webhooks are disabled (no secret configured)");
    }
    tracing::info!(address = %local, "serving HTTP");
    let router = http::router(Arc::new(state));
    let cancel = cancel.clone();
    let limits = http_config.connections;
    Ok(tokio::spawn(async move {
        if let Err(e) = http::serve(listener, router, limits, cancel).await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    }))
}

/// `--peers`: the fan-out, which knows this instance by the address the
/// HTTP server is bound to.
fn start_peers(
    config: &Config,
    peers: &crate::peers::PeersConfig,
    bound: std::net::SocketAddr,
    reporter: &sync::Reporter,
    cancel: &CancellationToken,
) -> Arc<crate::peers::Peers> {
    let names: Vec<String> = peers.names.iter().map(ToString::to_string).collect();
    tracing::info!(peers = %names.join(","), "peer fan-out on: accepted webhooks are passed on to the other replicas");
    crate::peers::Peers::start(
        peers,
        crate::peers::Me { bound },
        config.repo.redacted(),
        config.git_ref.clone(),
        reporter.metrics.clone(),
        cancel.clone(),
    )
}

fn engine_options(config: &Config) -> engine::Options {
    engine::Options {
        repo: config.repo.clone(),
        root: config.root.clone(),
        link: config.link.clone(),
        git_ref: config.git_ref.clone(),
        depth: config.depth,
        stale_worktree_timeout: config.stale_worktree_timeout,
        escaping_symlinks: config.escaping_symlinks,
        sparse: config.sparse_checkout.clone().map(|patterns| {
            patterns.keeping_submodules(config.submodules != crate::types::SubmoduleMode::Off)
        }),
        filter: config.filter.clone(),
        gc: config.git_gc,
        pre_publish: config.hooks.pre_publish.clone(),
        auth: config.auth.clone(),
        ssh: config.ssh.clone(),
        submodules: config.submodules,
        access: config.access.clone(),
        verify: config.verify.clone(),
        threads: worker_threads(),
    }
}

/// Threads for pack indexing, checkout and the spare's walk: what the
/// cgroup's CPU quota pays for (v1 or v2, the smallest along the cgroup's
/// ancestors, a fraction rounded down), the affinity mask and the online
/// cores, whichever is smallest. `available_parallelism` reads all of
/// these; a pod limited to one CPU on a 64-core node gets one thread, not 64.
/// `tests/it/resource_limits.rs` checks it in a real cgroup.
fn worker_threads() -> usize {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    tracing::debug!(threads, "threads for pack indexing and checkout");
    threads
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
