//! Which commit gets published for each kind of `--ref`, how updates
//! (forward, backward, force-pushed) are followed, and `--depth`.

use std::time::Duration;

use crate::support::sidecar::describe_output;
use crate::support::*;

const RUN_TIMEOUT: Duration = Duration::from_secs(60);

struct Refs {
    up: Upstream,
    /// main~1, tagged `v1` (lightweight).
    c1: String,
    /// main, tagged `v2` (annotated).
    c2: String,
    /// The `v2` tag object (not a commit).
    v2_tag_object: String,
    /// Tip of branch `feature` (not on main).
    feature: String,
}

fn refs_fixture() -> Refs {
    let up = Upstream::new();
    let c1 = up.commit_rich_tree("c1");
    assert_eq!(up.tag_light("v1"), c1);
    let c2 = up.commit_file("main.txt", "c2\n", "c2");
    let v2_tag_object = up.tag_annotated("v2", "release v2");
    up.checkout_new("feature");
    let feature = up.commit_file("feature.txt", "feature\n", "feature");
    up.checkout("main");
    assert_eq!(up.head(), c2);
    Refs {
        up,
        c1,
        c2,
        v2_tag_object,
        feature,
    }
}

/// Runs `--one-time` with `extra` args into a fresh root; returns the scratch
/// and the published hash after checking the layout.
fn publish_once(up: &Upstream, extra: &[&str]) -> (Scratch, String) {
    let s = Scratch::new();
    let out = s
        .sidecar(&up.file_url())
        .args(extra)
        .arg("--one-time")
        .run(RUN_TIMEOUT);
    assert!(out.status.success(), "{}", describe_output(&out));
    let hash = assert_published_layout(&s.root, &s.link());
    assert_tree_matches_commit(&s.link(), up, &hash);
    (s, hash)
}

#[test]
fn ref_head_publishes_the_default_branch() {
    let r = refs_fixture();
    let (_s, hash) = publish_once(&r.up, &["--ref", "HEAD"]);
    assert_eq!(hash, r.c2);
    let (_s, hash) = publish_once(&r.up, &[]);
    assert_eq!(hash, r.c2, "the default --ref is HEAD");
}

#[test]
fn ref_branch() {
    let r = refs_fixture();
    let (_s, hash) = publish_once(&r.up, &["--ref", "feature"]);
    assert_eq!(hash, r.feature);
}

#[test]
fn ref_lightweight_tag() {
    let r = refs_fixture();
    let (_s, hash) = publish_once(&r.up, &["--ref", "v1"]);
    assert_eq!(hash, r.c1);
}

#[test]
fn ref_annotated_tag_publishes_the_peeled_commit() {
    let r = refs_fixture();
    let (_s, hash) = publish_once(&r.up, &["--ref", "v2"]);
    assert_ne!(hash, r.v2_tag_object, "the tag object must be peeled");
    assert_eq!(hash, r.c2);
}

#[test]
fn ref_full_sha_of_a_non_tip_commit() {
    let r = refs_fixture();
    let (_s, hash) = publish_once(&r.up, &["--ref", &r.c1]);
    assert_eq!(hash, r.c1);
}

#[test]
fn follows_forward_backward_and_force_pushed_updates() {
    let up = Upstream::new();
    let a = up.commit_rich_tree("a");
    let s = Scratch::new();
    let run = s
        .sidecar(&up.file_url())
        .args(["--ref", "main", "--period", "100ms"])
        .spawn();
    run.wait_for_link_hash(&s.link(), &a);

    // Forward.
    let b = up.commit_file("b.txt", "b\n", "b");
    run.wait_for_link_hash(&s.link(), &b);
    assert_tree_matches_commit(&s.link(), &up, &b);

    // Backward: the branch is reset to an older commit.
    up.force_reset(&a);
    run.wait_for_link_hash(&s.link(), &a);
    assert_tree_matches_commit(&s.link(), &up, &a);

    // Rewritten history: a new commit on top of `a` replaces `b`.
    let b2 = up.commit_file("b.txt", "rewritten\n", "b rewritten");
    assert_ne!(b2, b);
    run.wait_for_link_hash(&s.link(), &b2);
    assert_tree_matches_commit(&s.link(), &up, &b2);
    let ancestor = git::git_output(&["merge-base", "--is-ancestor", &b, &b2], up.path());
    assert!(
        !ancestor.status.success(),
        "b must not be in the rewritten history"
    );

    // Rewritten to an unrelated (orphan) history.
    up.git(&["checkout", "-q", "--orphan", "tmp"]);
    up.git(&["rm", "-q", "-r", "-f", "."]);
    up.commit_file("orphan.txt", "orphan\n", "orphan");
    up.git(&["branch", "-f", "main", "tmp"]);
    up.checkout("main");
    let orphan = up.head();
    run.wait_for_link_hash(&s.link(), &orphan);
    assert_tree_matches_commit(&s.link(), &up, &orphan);
    run.assert_running();
}

#[test]
fn moved_tag_is_followed() {
    let up = Upstream::new();
    up.commit_file("f", "1", "a");
    let a = up.tag_light("stable");
    let s = Scratch::new();
    let run = s
        .sidecar(&up.file_url())
        .args(["--ref", "stable", "--period", "100ms"])
        .spawn();
    run.wait_for_link_hash(&s.link(), &a);
    up.commit_file("f", "2", "b");
    let b = up.retag_light("stable");
    run.wait_for_link_hash(&s.link(), &b);
    assert_tree_matches_commit(&s.link(), &up, &b);
}

const HISTORY: usize = 5;

fn long_history() -> Upstream {
    let up = Upstream::new();
    up.commit_rich_tree("base");
    up.commit_many(HISTORY - 1, "history");
    up
}

#[test]
fn depth_one() {
    let up = long_history();
    let (s, hash) = publish_once(&up, &["--depth", "1"]);
    assert_eq!(hash, up.head());
    assert_eq!(rev_list_count(&s.link()), 1);
}

#[test]
fn default_depth_is_one() {
    let up = long_history();
    let (s, _) = publish_once(&up, &[]);
    assert_eq!(rev_list_count(&s.link()), 1);
}

#[test]
fn depth_two() {
    let up = long_history();
    let (s, _) = publish_once(&up, &["--depth", "2"]);
    assert_eq!(rev_list_count(&s.link()), 2);
    let log = git(&["log", "--format=%s"], &s.link());
    assert_eq!(
        log.lines().count(),
        2,
        "git log works and shows 2 commits:\n{log}"
    );
}

#[test]
fn depth_zero_is_full_history() {
    let up = long_history();
    let (s, _) = publish_once(&up, &["--depth", "0"]);
    assert_eq!(rev_list_count(&s.link()), HISTORY);
    let shallow = git(&["rev-parse", "--is-shallow-repository"], &s.link());
    assert_eq!(shallow, "false");
}

#[test]
fn depth_changes_across_restarts() {
    let up = long_history();
    let head = up.head();
    let s = Scratch::new();
    for (depth, expected) in [("1", 1), ("2", 2), ("1", 1), ("0", HISTORY)] {
        let out = s
            .sidecar(&up.file_url())
            .args(["--depth", depth, "--one-time"])
            .run(RUN_TIMEOUT);
        assert!(
            out.status.success(),
            "--depth {depth}: {}",
            describe_output(&out)
        );
        assert_eq!(assert_published_layout(&s.root, &s.link()), head);
        assert_eq!(
            rev_list_count(&s.link()),
            expected,
            "rev-list --count after a run with --depth {depth}"
        );
    }
}

/// A depth change refetches history but keeps the published worktree in
/// place (same directory inode): it is intact, so it is not rebuilt under
/// the readers that may have it open.
#[test]
fn depth_change_keeps_the_published_worktree() {
    use std::os::unix::fs::MetadataExt;
    let up = Upstream::new();
    up.commit_many(3, "c");
    let head = up.head();
    let s = Scratch::new();
    let run = |depth: &str| {
        let out = s
            .sidecar(&up.file_url())
            .args(["--one-time", "--depth", depth])
            .run(std::time::Duration::from_secs(60));
        assert!(
            out.status.success(),
            "{}",
            crate::support::sidecar::describe_output(&out)
        );
    };
    run("1");
    let inode = std::fs::metadata(s.worktrees().join(&head))
        .expect("worktree")
        .ino();
    run("2");
    assert_eq!(rev_list_count(&s.link()), 2);
    assert_eq!(
        std::fs::metadata(s.worktrees().join(&head))
            .expect("worktree")
            .ino(),
        inode,
        "the intact worktree must not be rebuilt"
    );
}

/// A branch and a tag with the same name: `git fetch origin <name>` (what
/// git-sync runs) takes the tag, by git's rules for abbreviated names; so
/// must we. A full name still picks either.
#[test]
fn a_name_both_a_branch_and_a_tag_publishes_the_tag_as_git_does() {
    let up = Upstream::new();
    let tagged = up.commit_rich_tree("tagged");
    up.tag_light("amb");
    up.checkout_new("amb");
    let branch = up.commit_file("branch.txt", "branch\n", "on the branch");
    up.checkout("main");
    assert_ne!(tagged, branch);
    let (s, hash) = publish_once(&up, &["--ref", "amb"]);
    assert_eq!(hash, tagged, "the tag, as git fetch picks it");
    let branch_fetched =
        crate::support::git::git_output(&["cat-file", "-e", &branch], &s.root.join(".git"));
    assert!(
        !branch_fetched.status.success(),
        "the branch's commit came too"
    );
    let (_s, hash) = publish_once(&up, &["--ref", "refs/heads/amb"]);
    assert_eq!(hash, branch);
    let (_s, hash) = publish_once(&up, &["--ref", "refs/tags/amb"]);
    assert_eq!(hash, tagged);
}

/// A ref name made of hex digits (a date tag, a build number, a branch
/// called `deadbeef`) is fetched as a name, as `git fetch` (git-sync) does;
/// one that names nothing fails the sync, saying that abbreviated SHAs are
/// not supported.
#[test]
fn hex_looking_ref_names_are_names_and_abbreviated_shas_fail_the_sync() {
    let up = Upstream::new();
    let dated = up.commit_rich_tree("dated");
    assert_eq!(up.tag_light("20240115"), dated);
    up.checkout_new("deadbeef");
    let branch = up.commit_file("branch.txt", "branch\n", "on the branch");
    up.checkout("main");
    let (_s, hash) = publish_once(&up, &["--ref", "20240115"]);
    assert_eq!(hash, dated);
    let (_s, hash) = publish_once(&up, &["--ref", "deadbeef"]);
    assert_eq!(hash, branch);

    let s = Scratch::new();
    let out = s
        .sidecar(&up.file_url())
        .args(["--one-time", "--ref", &dated[..10]])
        .run(RUN_TIMEOUT);
    assert!(!out.status.success(), "{}", describe_output(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("couldn't find remote ref")
            && stderr.contains("abbreviated SHA")
            && stderr.contains("full 40-hex SHA"),
        "{}",
        describe_output(&out)
    );
}
