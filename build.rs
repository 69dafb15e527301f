//! Build script: hands the linker the functions an idle git-sidecar runs
//! (build/idle.order, written by scripts/idle-order), so that a release
//! build of the program places them next to each other. After the first
//! sync the executable's pages are given back (src/memory.rs) and an idle
//! process maps back each 64 KiB window of code it touches: together, those
//! functions fill a few windows instead of most of the text.
//!
//! Needs LLD, the linker rustc uses on x86_64-unknown-linux-gnu since 1.90
//! (`--symbol-ordering-file`). Names the list has and the build does not
//! (the list was made from older code) are skipped without a warning.

use std::env;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build/idle.order");
    println!("cargo:rerun-if-changed=build.rs");
    let release = env::var("PROFILE").as_deref() == Ok("release");
    let linux = env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    let Ok(dir) = env::var("CARGO_MANIFEST_DIR") else {
        return;
    };
    let order = Path::new(&dir).join("build").join("idle.order");
    if !(release && linux && order.is_file()) {
        return;
    }
    println!(
        "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
        order.display()
    );
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
}
