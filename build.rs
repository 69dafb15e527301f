//! Build script: hands the linker the functions an idle git-sidecar runs,
//! then those of its first sync (build/code.order, written by
//! scripts/code-order), so that a release build of the program places them
//! next to each other in that order. A process keeps each 64 KiB window of
//! code it touched resident (src/memory.rs): together, those functions fill
//! a few windows instead of most of the text.
//!
//! Needs LLD, the linker rustc uses on x86_64-unknown-linux-gnu since 1.90
//! (`--symbol-ordering-file`); with another linker configured, build with
//! `GIT_SIDECAR_CODE_ORDER=off`. Names the list has and the build does not
//! (the list was made from older code) are skipped without a warning.

use std::env;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build/code.order");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=GIT_SIDECAR_CODE_ORDER");
    if env::var("GIT_SIDECAR_CODE_ORDER").as_deref() == Ok("off") {
        return;
    }
    let release = env::var("PROFILE").as_deref() == Ok("release");
    // The one target whose default linker is LLD.
    let lld = env::var("TARGET").as_deref() == Ok("x86_64-unknown-linux-gnu");
    let Ok(dir) = env::var("CARGO_MANIFEST_DIR") else {
        return;
    };
    let order = Path::new(&dir).join("build").join("code.order");
    if !(release && lld && order.is_file()) {
        return;
    }
    println!(
        "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
        order.display()
    );
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    // A static-pie relocates itself at start-up from a table the size of
    // its pointers (1.1 MiB here), all of it read, so resident through the
    // first sync. RELR packs it into a few KiB; glibc's static start-up
    // reads it since 2.36. Not for the dynamic build: it would need the
    // same of whatever glibc runs it.
    let static_crt = env::var("CARGO_CFG_TARGET_FEATURE")
        .is_ok_and(|features| features.split(',').any(|f| f == "crt-static"));
    if static_crt {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
