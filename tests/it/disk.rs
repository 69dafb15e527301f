//! Disk usage stays bounded while following many large, incompressible
//! commits, and `--git-gc` decides when the object store is compacted.

use std::time::Instant;

use crate::support::sidecar::describe_output;
use crate::support::*;

const MIB: u64 = 1024 * 1024;
const BLOB: usize = 3 * 1024 * 1024;
const COMMITS: usize = 50;

#[test]
fn disk_usage_stays_bounded_over_many_large_commits() {
    let mut rng = fastrand::Rng::with_seed(0xd15c);
    let mut blob = vec![0u8; BLOB];
    let up = Upstream::new();
    up.commit_rich_tree("base");
    rng.fill(&mut blob);
    let first = up.commit_file("blob.bin", &blob, "blob 0");

    let s = Scratch::new();
    let run = s.sidecar(&up.file_url()).args(["--period", "50ms"]).spawn();
    run.wait_for_link_hash(&s.link(), &first);

    let started = Instant::now();
    let mut last = first;
    for i in 1..=COMMITS {
        rng.fill(&mut blob);
        last = up.commit_file("blob.bin", &blob, &format!("blob {i}"));
        run.wait_for_link_hash(&s.link(), &last);
    }
    let follow_time = started.elapsed();
    assert_tree_matches_commit(&s.link(), &up, &last);

    let checkout = checkout_size(&s.link());
    let limit = 4 * (checkout + BLOB as u64);
    let report = |root_size: u64| {
        format!(
            "root {:.1} MiB (.git {:.1} MiB, .worktrees {:.1} MiB, {} worktree(s)); checkout {:.1} MiB; limit {:.1} MiB; \
             {COMMITS} commits followed in {follow_time:?}",
            root_size as f64 / MIB as f64,
            dir_size(&s.root.join(".git")) as f64 / MIB as f64,
            dir_size(&s.worktrees()) as f64 / MIB as f64,
            list_dir(&s.worktrees()).len(),
            checkout as f64 / MIB as f64,
            limit as f64 / MIB as f64,
        )
    };
    // Clean-up (worktree removal, gc) may trail the publication a little.
    let mut size = dir_size(&s.root);
    let ok = poll_until(DEADLINE, || {
        size = dir_size(&s.root);
        size < limit
    });
    println!("disk usage: {}", report(size));
    assert!(
        ok,
        "disk usage is not bounded: {}\n{}",
        report(size),
        run.logs()
    );
    run.assert_running();
}

/// Packs after following `commits` small commits with `--git-gc=<mode>`
/// (None = the default), once `settled` holds (upkeep runs just after a
/// publish) or 10 s have passed; and whether the pack of the first sync
/// is still among them.
fn packs_after_commits(
    mode: Option<&str>,
    commits: usize,
    settled: fn(usize) -> bool,
) -> (usize, bool) {
    let up = Upstream::new();
    // Content that compresses poorly: the first sync's pack is the largest.
    let mut x: u64 = 1;
    let noise: String = (0..20_000)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            format!("{:x}", x >> 60)
        })
        .collect();
    up.commit_file("noise.txt", noise, "noise");
    let first = up.commit_file("f.txt", "0\n", "0");
    let s = Scratch::new();
    let mut sidecar = s.sidecar(&up.file_url()).args(["--period", "50ms"]);
    if let Some(mode) = mode {
        sidecar = sidecar.arg(format!("--git-gc={mode}"));
    }
    let run = sidecar.spawn();
    run.wait_for_link_hash(&s.link(), &first);
    let cloned = pack_data_files(&s.root.join(".git"));
    for i in 1..=commits {
        let sha = up.commit_file("f.txt", format!("{i}\n"), &i.to_string());
        run.wait_for_link_hash(&s.link(), &sha);
    }
    poll_until(std::time::Duration::from_secs(10), || {
        settled(pack_data_files(&s.root.join(".git")).len())
    });
    let now = pack_data_files(&s.root.join(".git"));
    let kept = cloned.iter().all(|p| now.contains(p));
    (now.len(), kept)
}

#[test]
fn git_gc_modes_decide_when_the_store_is_compacted() {
    // Each publish fetches one small pack; at 16 packs, the default merges
    // all but the largest (the first sync's), which stays as it is.
    let (off, _) = packs_after_commits(Some("off"), 17, |_| true);
    assert_eq!(off, 18, "--git-gc=off must never compact");
    let (default, cloned_kept) = packs_after_commits(None, 17, |n| n < 16);
    assert!(
        (2..16).contains(&default),
        "the default merges packs once 16 pile up: {default} packs"
    );
    assert!(cloned_kept, "the first sync's pack was rewritten, not kept");
    let (aggressive, _) = packs_after_commits(Some("aggressive"), 5, |n| n == 1);
    assert_eq!(
        aggressive, 1,
        "--git-gc=aggressive compacts after every fetch"
    );
}

/// A cron job: `--one-time` runs at depth 1, each replacing a 512 KiB
/// incompressible file, so each leaves half a MiB that no kept commit needs
/// (under the 1 MiB a single process counts as garbage). Each process is new,
/// and small packs are only merged: the store is rewritten because the size
/// after its last rewrite is kept on disk, and stays bounded.
#[test]
fn one_time_runs_keep_the_store_bounded() {
    const SIZE: usize = 512 * 1024;
    let mut rng = fastrand::Rng::with_seed(0x0e7e);
    let mut blob = vec![0u8; SIZE];
    let up = Upstream::new();
    let s = Scratch::new();
    let runs = 14;
    for i in 0..runs {
        rng.fill(&mut blob);
        let sha = up.commit_file("blob.bin", &blob, &format!("blob {i}"));
        let out = s
            .sidecar(&up.file_url())
            .arg("--one-time")
            .run(std::time::Duration::from_secs(60));
        assert!(out.status.success(), "{}", describe_output(&out));
        assert_eq!(s.published().as_deref(), Some(sha.as_str()));
    }
    let store = dir_size(&s.root.join(".git/objects"));
    // Each run adds one file; the growth rule allows twice the rewritten
    // store plus 1 MiB. Without it: all 14 files (7 MiB).
    assert!(
        store < 4 * SIZE as u64 + MIB,
        "{:.1} MiB of objects after {runs} one-time runs",
        store as f64 / MIB as f64
    );
}

/// A sidecar started on an empty root: its first sync's pack (2 MiB here)
/// is the size the store grows from. A small commit after it is no reason
/// to rewrite the whole store (it was: the store had been empty when opened).
#[test]
fn a_fresh_root_is_not_rewritten_at_its_second_publish() {
    let mut rng = fastrand::Rng::with_seed(0xf7e5);
    let mut blob = vec![0u8; 2 * MIB as usize];
    rng.fill(&mut blob);
    let up = Upstream::new();
    let first = up.commit_file("blob.bin", &blob, "large");
    let s = Scratch::new();
    let run = s.sidecar(&up.file_url()).args(["--period", "50ms"]).spawn();
    run.wait_for_link_hash(&s.link(), &first);
    let cloned = pack_data_files(&s.root.join(".git"));
    for i in 1..=2 {
        let sha = up.commit_file("small.txt", format!("{i}\n"), &i.to_string());
        run.wait_for_link_hash(&s.link(), &sha);
    }
    // The second publish's upkeep ran before the third publish; a rewrite
    // would have replaced the first sync's pack.
    let now = pack_data_files(&s.root.join(".git"));
    assert!(
        cloned.iter().all(|p| now.contains(p)),
        "the store was rewritten: {cloned:?} -> {now:?}"
    );
}

/// `--root` on a volume mounted read-only (`readOnly: true` on the
/// volumeMount): the start-up error says so, not that this user lacks
/// permissions (here root, owning the directory). A private mount
/// namespace (util-linux's `unshare`) makes the bind mount read-only.
#[test]
fn a_read_only_root_volume_is_named_as_such() {
    let up = Upstream::new();
    up.commit_file("index.html", "1\n", "one");
    let s = Scratch::new();
    std::fs::create_dir_all(&s.root).expect("mkdir root");
    let script = r#"mount --make-rprivate / && mount --bind "$1" "$1" &&
        mount -o remount,bind,ro "$1" && exec "$2" --repo "$3" --root "$1" --one-time"#;
    let unshare = crate::support::sshd::which("unshare")
        .expect("unshare not found: apt-get install util-linux");
    let out = crate::support::sidecar::Sidecar::program(unshare)
        .args(["--mount", "sh", "-c", script, "sh"])
        .arg(&s.root)
        .arg(crate::support::sidecar::bin())
        .arg(up.file_url())
        .run(std::time::Duration::from_secs(60));
    let said = describe_output(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains(&format!(
            "{} is on a read-only filesystem",
            s.root.display()
        )) && !said.contains("fsGroup"),
        "{said}"
    );
}
