//! Integration tests of the product (`cargo test --test it`): the sidecar's
//! behaviour. How it is packaged and deployed (container image, manifests,
//! examples) is checked by the `packaging` target (`tests/packaging/`).
//!
//! * `../support/` — the harness shared with `packaging`: git fixtures, local
//!   servers on 127.0.0.1, the sidecar runner.
//! * `harness` — self-tests of the harness against the real git CLI (no sidecar involved).
//! * the other modules — scenarios against the built binary.
//!
//! Everything listens on and connects to 127.0.0.1 only (the peer tests: other
//! loopback addresses, see `support::dns`); each test has its own temporary
//! directories and ports, so tests run in parallel.
//! `IT_CRASH_SEED=<u64>` replays the kill -9 loop (`faults::kill9_*`) with
//! another seed; the seed in use is printed (`--nocapture`) and is part of
//! every failure message.

#[path = "../support/mod.rs"]
mod support;

mod harness;

mod auth;
mod auth_more;
mod campaign;
mod compat_root;
mod config;
mod disk;
mod faults;
mod git_sync_access;
mod gitsync_output;
mod hooks;
mod http;
mod https;
mod loop_semantics;
mod memory;
mod messages;
mod partial;
mod peers;
mod pid1;
mod refs_depth;
mod resource_limits;
mod retire;
mod reuse;
mod shallow_v0;
mod sparse;
mod ssh;
mod submodule_auth;
mod submodules;
mod sync;
mod transports;
mod verify;
