//! `scripts/bench` still runs end to end and prints issue 16's targets side
//! by side with their baselines: the shipped static binary, on a 300-page
//! corpus (seconds, not the benchmark's 38,000 pages), one run each. Asserts
//! what the report holds, never how fast anything was: the figures of a
//! run this small mean nothing, and speed is the benchmark's to measure.
//! The blob step runs with a 4 MiB blob, and the 64 MiB cgroup step in a
//! child of this process's own cgroup (root, as CI runs). Left out:
//! `cgroup_v2`, which boots a VM for about two minutes; the benchmark itself
//! runs it.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::support;

/// The first words of each row the run below must print, once each.
const ROWS: [&str; 12] = [
    "Peak RSS, initial sync",
    "Initial sync: client CPU / wall",
    "Peak RSS, one 4 MiB blob",
    "Sync + publish in a 64 MiB memory cgroup",
    "Idle RSS after the first sync",
    "SIGHUP → published",
    "`--one-time` publish of a 1-file change",
    "CPU of the same `--one-time` publish at both ends",
    "The floor of the spare's check",
    "Compaction of 16 packs",
    "Upkeep at 16 packs",
    "Soak (on the main corpus)",
];

/// Rows whose git-sidecar figure is memory: split into kinds.
const MEMORY_ROWS: [&str; 6] = [
    "Peak RSS, initial sync",
    "Peak RSS, one 4 MiB blob",
    "Sync + publish in a 64 MiB memory cgroup",
    "Idle RSS after the first sync",
    "Compaction of 16 packs",
    "Upkeep at 16 packs",
];

/// Rows with a figure of `git clone --depth 1` beside ours.
const GIT_ROWS: [&str; 4] = [
    "Peak RSS, initial sync",
    "Initial sync: client CPU / wall",
    "Peak RSS, one 4 MiB blob",
    "Sync + publish in a 64 MiB memory cgroup",
];

/// Rows with a figure of the git-sync emulation beside ours as well.
const EMULATION_ROWS: [&str; 2] = ["Peak RSS, initial sync", "Initial sync: client CPU / wall"];

/// The cells of the rows of the report's "Issue 16 targets" table.
fn target_rows(report: &str) -> Vec<Vec<String>> {
    let table = report
        .split("## Issue 16 targets, side by side")
        .nth(1)
        .expect("the report has the issue 16 table")
        .split("\n## ")
        .next()
        .unwrap_or_default();
    table
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| target |"))
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect()
}

fn run_bench(binary: &Path, work: &Path) -> String {
    let report = work.join("report.md");
    let out = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bench"))
        .args(["--quick", "--only", "targets,soak", "--target-steps"])
        .arg("initial,blob,cgroup,idle,signal,one_time_publish,compaction")
        .args(["--blob-mib", "4"])
        .args(["--docs-files", "300", "--docs-commits", "30"])
        .args(["--files", "300", "--commits", "30", "--soak", "40"])
        .args(["--runs", "1", "--fs", "tmpfs", "--bin"])
        .arg(binary)
        .arg("--cache-dir")
        .arg(work)
        .arg("--out")
        .arg(&report)
        .stdin(Stdio::null())
        .output()
        .expect("running scripts/bench (Debian: apt-get install python3 git git-daemon-run)");
    assert!(
        out.status.success(),
        "scripts/bench failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(&report).expect("scripts/bench wrote its report")
}

#[test]
fn the_benchmark_prints_every_target_beside_its_baselines() {
    let binary = super::image::build_static_binary();
    let work = support::tempdir("bench-smoke");
    let report = run_bench(&binary, work.path());
    let rows = target_rows(&report);
    let row = |name: &str| -> &Vec<String> {
        let found: Vec<_> = rows.iter().filter(|r| r[0].starts_with(name)).collect();
        assert_eq!(found.len(), 1, "one row {name:?} in:\n{report}");
        found[0]
    };
    for name in ROWS {
        let cells = row(name);
        assert_eq!(cells.len(), 6, "{cells:?}");
        let (figure, verdict) = (&cells[2], &cells[5]);
        assert!(!figure.starts_with("failed"), "{name}: {figure}");
        assert!(
            ["**met**", "**not met**", "reported"]
                .iter()
                .any(|v| verdict.starts_with(v)),
            "{name}: verdict {verdict:?}"
        );
    }
    for name in MEMORY_ROWS {
        let figure = &row(name)[2];
        assert!(
            figure.contains("anon ") && figure.contains("file "),
            "{name}: memory not split: {figure}"
        );
    }
    for name in GIT_ROWS {
        let cells = row(name);
        assert!(cells[3].starts_with("clone --depth 1"), "{name}: {cells:?}");
    }
    for name in EMULATION_ROWS {
        let cells = row(name);
        assert!(
            cells[4].contains(" s") || cells[4].contains("MiB"),
            "{name}: {cells:?}"
        );
    }
}
