//! git-sidecar: keeps a directory in step with a git repository and publishes
//! each commit by atomically swapping a symlink (a git-sync v4 compatible
//! sidecar with git in-process through gix).
//!
//! Module map (dependencies point downwards):
//! - [`cli`] raw flags and env vars; [`config`] the validated configuration
//! - [`app`] composition root: signals, cancellation, the sync loop
//! - [`sync`] the loop and one blocking sync pass ([`sync::engine`])
//! - [`git`] everything gix (fetch, worktrees, object store); [`publish`] the
//!   on-disk layout and the atomic link swap (no git knowledge)
//! - [`http`] health, readiness, status, metrics, pprof and triggers; reads
//!   [`status`] and [`metrics`], fires the sync trigger, never touches git
//! - [`webhook`] forge webhook verification and payload parsing (pure)
//! - [`auth`] which credentials and http settings each connection gets
//! - [`rootlock`] one instance per root (held before anything is touched)
//! - [`manual`] the `--man` text, generated from [`cli`]
//! - [`pid1`] a minimal init (reaper, signal forwarder) when started as PID 1
//! - [`logging`], [`fsutil`], [`memory`], [`types`], [`backoff`] leaves

// Unsafe code is denied everywhere but two allocator calls in `memory` and
// the fork in `pid1`.
#![deny(unsafe_code)]

pub mod app;
pub mod auth;
pub mod backoff;
pub mod cli;
pub mod config;
pub mod fsutil;
pub mod git;
pub mod hooks;
pub mod http;
pub mod logging;
pub mod manual;
pub mod memory;
pub mod metrics;
pub mod pid1;
pub mod publish;
pub mod rootlock;
pub mod status;
pub mod sync;
pub mod types;
pub mod webhook;
