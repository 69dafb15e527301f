//! Packaging checks (`cargo test --test packaging`): how git-sidecar is
//! shipped and deployed rather than what it does. The container image
//! (built from `scripts/build-static`, run with rootful podman), the
//! Kubernetes manifests in `manifests/` (validated, their programs and
//! configs run for real), the files in `examples/`, and `scripts/bench`
//! (it still runs and prints its targets). The product's own
//! suite is `cargo test --test it`; `cargo test --all-targets` (what
//! `.ci/run` runs) runs both.
//!
//! Uses the same harness as `it` (`tests/support/`), with the same rules:
//! loopback only, own temporary directories and ports per test.

#[path = "../support/mod.rs"]
mod support;

mod bench;
mod code_order;
mod examples;
mod image;
mod manifests;
mod static_binary;
