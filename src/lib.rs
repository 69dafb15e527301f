//! git-sidecar: keeps a directory in step with a git repository and publishes
//! each commit by atomically swapping a symlink (a git-sync v4 compatible
//! sidecar with git in-process: no git binary for network remotes).
//!
//! Module map (dependencies point downwards; [`config`] builds the types
//! each component owns, and no component imports [`config`]):
//! - [`cli`] raw flags and env vars; [`config`] the validated configuration
//! - [`app`] composition root: signals, cancellation, the sync loop;
//!   [`process`] the binary's process set-up (umask, open-file limit, runtime,
//!   `--add-user`'s [`passwd`] entry)
//! - [`sync`] the loop and one blocking sync pass ([`sync::engine`])
//! - [`git`] the git library's only user: fetch, worktrees, object store,
//!   the [`git::Remote`] URL type, [`git::CommitId`] and the [`git::Repo`]
//!   facade; none of the library's types leaves it. [`publish`] the on-disk layout and the atomic link swap (no
//!   git knowledge)
//! - [`auth`] which credentials and http settings each connection gets, and
//!   the types authentication is configured with; what it hands over
//!   ([`git::Credentials`], [`git::HttpSettings`]) is `git`'s, so `auth`
//!   imports `git`, never the reverse
//! - [`hooks`] what runs after a publish: exechook, outgoing webhook
//!   (`hooks::notify`), reload signal; owns [`hooks::HooksConfig`]
//! - [`http`] health, readiness, status, metrics, pprof and triggers (the
//!   incoming webhook handler is `http::incoming_webhook`); reads [`status`]
//!   and [`metrics`], fires the sync trigger, never touches git; owns
//!   [`http::HttpConfig`] ([`status`] owns the readiness rule)
//! - [`peers`] peer fan-out (`--peers`): signed hints to the other replicas
//!   after an accepted webhook, their verification and deduplication
//! - [`forge`] incoming forge webhook verification and payload parsing (pure)
//! - [`verify`] commit and tag signature verification (pure: bytes in, verdict out)
//! - [`rootlock`] one instance per root (held before anything is touched)
//! - [`manual`] the `--man` text, generated from [`cli`]
//! - [`pid1`] a minimal init (reaper, signal forwarder) when started as PID 1
//! - [`logging`], [`fsutil`], [`memory`], [`secret`], [`types`], [`backoff`] leaves

// Unsafe code is denied everywhere but two allocator calls in `memory` and
// the fork in `pid1`.
#![deny(unsafe_code)]

pub mod app;
pub mod auth;
pub mod backoff;
pub mod cli;
pub mod config;
pub mod forge;
pub mod fsutil;
pub mod git;
pub mod hooks;
pub mod http;
pub mod logging;
pub mod manual;
pub mod memory;
pub mod metrics;
pub mod nss;
pub mod passwd;
pub mod peers;
pub mod pid1;
pub mod process;
pub mod publish;
pub mod rootlock;
pub mod secret;
pub mod status;
pub mod sync;
pub mod types;
pub mod verify;
