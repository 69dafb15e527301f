//! Build script: hands the linker the functions an idle git-sidecar runs,
//! then those of its first sync (build/code.order, written by
//! scripts/code-order), so that a release build of the program places them
//! next to each other in that order. A process keeps each 64 KiB window of
//! code it touched resident (src/memory.rs): together, those functions fill
//! a few windows instead of most of the text.
//!
//! Needs LLD, the linker rustc uses on x86_64-unknown-linux-gnu since 1.90
//! (`--symbol-ordering-file`): left out when another linker is configured
//! (a linker for the target, or linker flags in RUSTFLAGS), or with
//! `GIT_SIDECAR_CODE_ORDER=off`. Names the list has and the build does not
//! (the list was made from older code) are skipped without a warning.

use std::env;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build/code.order");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=GIT_SIDECAR_CODE_ORDER");
    if env::var("GIT_SIDECAR_CODE_ORDER").as_deref() == Ok("off") || !default_linker() {
        return;
    }
    let release = env::var("PROFILE").as_deref() == Ok("release");
    let Ok(dir) = env::var("CARGO_MANIFEST_DIR") else {
        return;
    };
    let order = Path::new(&dir).join("build").join("code.order");
    if !(release && order.is_file()) {
        return;
    }
    // Relative to the workspace root (this package's), where cargo runs
    // rustc and so the linker: an absolute path would be kept in the build
    // script's cached output and point at another checkout that shared this
    // target dir.
    println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file=build/code.order");
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    // A static-pie relocates itself at start-up from a table the size of
    // its pointers (1.1 MiB here), all of it read, so resident through the
    // first sync. RELR packs it into a few KiB. glibc's static start-up
    // applies it since 2.36; an older libc.a would leave it unapplied. Not
    // for the dynamic build: it would need as much of whatever glibc runs it.
    let static_crt = env::var("CARGO_CFG_TARGET_FEATURE")
        .is_ok_and(|features| features.split(',').any(|f| f == "crt-static"));
    if static_crt && glibc_at_least(2, 36) {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// LLD, rustc's own default on the one target where it is the default
/// (x86_64-unknown-linux-gnu, since 1.90), and no other linker asked for.
fn default_linker() -> bool {
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    env::var("TARGET").as_deref() == Ok("x86_64-unknown-linux-gnu")
        && env::var_os("RUSTC_LINKER").is_none()
        && !["linker", "fuse-ld", "link-self-contained"]
            .iter()
            .any(|f| flags.contains(f))
}

/// The build host's glibc (`getconf GNU_LIBC_VERSION`: "glibc 2.36"), whose
/// libc.a a static build links.
fn glibc_at_least(major: u32, minor: u32) -> bool {
    let Ok(out) = std::process::Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
    else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text
        .trim()
        .trim_start_matches("glibc ")
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    found >= (major, minor)
}
