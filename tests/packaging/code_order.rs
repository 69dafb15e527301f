//! The functions an idle git-sidecar runs, and then those of its first sync,
//! sit together in the static build the image ships: build.rs hands the
//! linker `build/code.order` (written by
//! `scripts/code-order`; why it matters: src/memory.rs). Fails when the list
//! is not applied, or when it went stale (new dependency versions, another
//! toolchain) and names little of what the build has.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

/// A symbol of the build: start address and size.
struct Placed {
    start: u64,
    size: u64,
}

/// Defined symbols with a size, by name (`nm --print-size`).
fn symbols(binary: &Path) -> HashMap<String, Placed> {
    let out = Command::new("nm")
        .args(["--defined-only", "--print-size"])
        .arg(binary)
        .output()
        .expect("running nm (Debian: apt-get install binutils)");
    assert!(out.status.success(), "nm {binary:?} failed: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let [start, size, kind, name] = f[..] else {
                return None;
            };
            if !matches!(kind, "t" | "T" | "w" | "W") {
                return None;
            }
            let start = u64::from_str_radix(start, 16).ok()?;
            let size = u64::from_str_radix(size, 16).ok()?;
            Some((name.to_owned(), Placed { start, size }))
        })
        .collect()
}

#[test]
fn the_functions_of_idle_passes_and_the_first_sync_are_placed_together() {
    let shipped = super::image::build_static_binary();
    // build-static strips a copy; cargo's build beside it keeps the names.
    let built = shipped
        .parent()
        .expect("build-static's output directory")
        .join("x86_64-unknown-linux-gnu/release/git-sidecar");
    let order_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("build/code.order");
    let listed = std::fs::read_to_string(&order_file).expect("reading build/code.order");
    let listed: Vec<&str> = listed.lines().filter(|l| !l.is_empty()).collect();
    let symbols = symbols(&built);

    let found: Vec<&Placed> = listed.iter().filter_map(|n| symbols.get(*n)).collect();
    // The list holds the names of both release builds (cargo's and the
    // static one); each finds its own half.
    assert!(
        found.len() * 3 >= listed.len(),
        "build/code.order is stale: {} of its {} names are in {built:?}; run scripts/code-order",
        found.len(),
        listed.len()
    );
    let start = found.iter().map(|p| p.start).min().expect("some found");
    let end = found
        .iter()
        .map(|p| p.start + p.size)
        .max()
        .expect("some found");
    let code: u64 = found.iter().map(|p| p.size).sum();
    let span = end - start;
    // Together: the listed functions fill their span but for alignment
    // padding. Left to the linker, they spread over the whole text.
    assert!(
        span <= code + code / 4,
        "the {} listed functions ({} KiB of code) spread over {} KiB of {built:?}: \
         is build.rs's --symbol-ordering-file reaching the linker?",
        found.len(),
        code / 1024,
        span / 1024
    );
}
