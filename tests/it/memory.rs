//! Idle memory: once the first sync is done the sidecar gives its
//! executable's start-up pages back (src/memory.rs, `release_code_pages`).

use std::path::{Path, PathBuf};

use crate::support::*;

/// The `VmFlags` of the process's mapping of its own executable at file
/// offset 0 (read-only data: constants, unwind and relocation tables).
fn readonly_data_flags(pid: i32) -> Option<String> {
    let exe: PathBuf = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let mut inside = false;
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() >= 6 && fields[0].contains('-') && fields[1].len() == 4 {
            inside = fields[1] == "r--p"
                && fields[2].chars().all(|c| c == '0')
                && Path::new(fields[5]) == exe;
            continue;
        }
        if inside {
            if let Some(flags) = line.strip_prefix("VmFlags:") {
                return Some(flags.trim().to_string());
            }
        }
    }
    None
}

/// After the first sync the binary's read-only data is marked for random
/// access (`rr` in smaps' VmFlags), which `release_code_pages` does as it
/// pages the executable out; before that sync nothing marks it.
#[test]
fn after_the_first_sync_the_executable_gives_its_start_up_pages_back() {
    let up = Upstream::new();
    let sha = up.commit_file("f.txt", "one\n", "one");
    let s = Scratch::new();
    let run = s
        .sidecar(&up.file_url())
        .args(["--period", "100ms"])
        .spawn();
    let pid = run.pid().as_raw();
    // (Just after the spawn the child may not have exec'd yet: best effort.)
    let start = readonly_data_flags(pid).unwrap_or_default();
    run.wait_for_link_hash(&s.link(), &sha);
    let mut flags = String::new();
    let marked = poll_until(DEADLINE, || {
        flags = readonly_data_flags(pid).unwrap_or_default();
        flags.split_whitespace().any(|f| f == "rr")
    });
    assert!(
        marked,
        "after the first sync the read-only data's VmFlags are {flags:?} (at start: {start:?})\n{}",
        run.logs()
    );
    run.assert_running();
}
