//! How much of the object store has become garbage, estimated cheaply, so
//! that [`super::compact`] can rewrite the store when objects no kept commit
//! needs are worth dropping (a large file committed and reverted), without
//! rewriting it at every publish.
//!
//! When a commit stops being kept (its worktree was deleted, or parked as
//! the spare), the objects only it needed are garbage: its commit object,
//! and the trees and blobs of its tree that no kept commit's tree holds at
//! the same path. A tree diff finds them at a cost that follows the change,
//! not the tree. It is an estimate: a file moved to another path counts as
//! garbage, and sizes are those of the objects, not of their compressed
//! form in a pack, so it errs towards compacting early.

use std::collections::{HashMap, HashSet};

use gix::bstr::BString;
use gix::ObjectId;

/// Commits are walked back from kept ones this far past the dropped
/// commit's time, for clock skew between committers.
const CLOCK_SKEW_SECS: i64 = 24 * 3600;

/// Bytes of the objects only `dropped` needed, given that `keep` stay
/// (`0` if `dropped` is not in the store, or a kept commit reaches it:
/// compaction keeps the history of kept commits down to the shallow
/// boundary).
pub fn dropped_bytes(repo: &gix::Repository, dropped: ObjectId, keep: &[ObjectId]) -> u64 {
    let Ok(commit) = repo.find_commit(dropped) else {
        return 0;
    };
    let seconds = commit.time().map_or(0, |t| t.seconds);
    if keep.iter().any(|&tip| reaches(repo, tip, dropped, seconds)) {
        return 0;
    }
    let Some(tree) = commit.tree_id().ok().map(|id| id.detach()) else {
        return 0;
    };
    let mut only = None::<HashSet<ObjectId>>;
    for kept_tree in keep.iter().filter_map(|&k| tree_of(repo, k)) {
        let mut absent = HashSet::new();
        absent_from(repo, tree, Some(kept_tree), &mut absent);
        only = Some(match only {
            None => absent,
            Some(so_far) => so_far.intersection(&absent).copied().collect(),
        });
    }
    let only = only.unwrap_or_else(|| {
        let mut all = HashSet::new();
        absent_from(repo, tree, None, &mut all);
        all
    });
    let size = |id: &ObjectId| repo.find_header(*id).map_or(0, |h| h.size());
    size(&dropped) + only.iter().map(size).sum::<u64>()
}

/// Whether `target` is `tip` or one of its ancestors in the store (the walk
/// stops at the shallow boundary, and at commits older than `seconds`
/// minus the skew).
fn reaches(repo: &gix::Repository, tip: ObjectId, target: ObjectId, seconds: i64) -> bool {
    use gix::revision::walk::Sorting;
    use gix::traverse::commit::simple::CommitTimeOrder;
    if tip == target {
        return true;
    }
    let walk = repo
        .rev_walk([tip])
        .sorting(Sorting::ByCommitTimeCutoff {
            order: CommitTimeOrder::NewestFirst,
            seconds: seconds.saturating_sub(CLOCK_SKEW_SECS),
        })
        .all();
    let Ok(walk) = walk else {
        return false;
    };
    walk.map_while(Result::ok).any(|info| info.id == target)
}

fn tree_of(repo: &gix::Repository, commit: ObjectId) -> Option<ObjectId> {
    let commit = repo.find_commit(commit).ok()?;
    commit.tree_id().ok().map(|id| id.detach())
}

/// One tree entry, owned.
struct Entry {
    is_tree: bool,
    is_commit: bool,
    id: ObjectId,
}

fn entries(repo: &gix::Repository, tree: ObjectId) -> Vec<(BString, Entry)> {
    let Ok(tree) = repo.find_tree(tree) else {
        return Vec::new();
    };
    let Ok(decoded) = tree.decode() else {
        return Vec::new();
    };
    decoded
        .entries
        .iter()
        .map(|e| {
            let entry = Entry {
                is_tree: e.mode.is_tree(),
                is_commit: e.mode.is_commit(),
                id: e.oid.to_owned(),
            };
            (e.filename.to_owned(), entry)
        })
        .collect()
}

/// Adds to `out` the objects of `tree` that `other` does not hold at the
/// same path (all of them when `other` is `None`). Identical subtrees are
/// skipped without being read. Gitlinks are another store's objects.
fn absent_from(
    repo: &gix::Repository,
    tree: ObjectId,
    other: Option<ObjectId>,
    out: &mut HashSet<ObjectId>,
) {
    if other == Some(tree) || !out.insert(tree) {
        return;
    }
    let theirs: HashMap<BString, Entry> = other
        .map(|o| entries(repo, o).into_iter().collect())
        .unwrap_or_default();
    for (name, ours) in entries(repo, tree) {
        if ours.is_commit {
            continue;
        }
        let same_kind = theirs.get(&name).filter(|t| t.is_tree == ours.is_tree);
        match same_kind {
            Some(t) if t.id == ours.id => {}
            Some(t) if ours.is_tree => absent_from(repo, ours.id, Some(t.id), out),
            _ if ours.is_tree => absent_from(repo, ours.id, None, out),
            _ => {
                out.insert(ours.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::git::test_git::git;

    /// A: small files; B: A plus a 100 kB file in a new directory; C: B
    /// without it. Dropping B while C is kept frees the big blob (and B's
    /// trees and commit); dropping A frees almost nothing; at full depth
    /// an ancestor of a kept commit frees nothing.
    #[test]
    fn dropping_a_commit_counts_what_only_it_needed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        git(root, &["init", "-q", "-b", "main"]);
        std::fs::write(root.join("small"), "a").expect("write");
        git(root, &["add", "small"]);
        git(root, &["commit", "-qm", "a"]);
        let a = git(root, &["rev-parse", "HEAD"]);
        std::fs::create_dir(root.join("big")).expect("mkdir");
        let blob: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(root.join("big/file"), &blob).expect("write");
        git(root, &["add", "big/file"]);
        git(root, &["commit", "-qm", "b"]);
        let b = git(root, &["rev-parse", "HEAD"]);
        git(root, &["rm", "-rq", "big"]);
        git(root, &["commit", "-qm", "c"]);
        let c = git(root, &["rev-parse", "HEAD"]);
        let repo = gix::open(root).expect("open");
        let id = |h: &str| ObjectId::from_hex(h.as_bytes()).expect("hex");

        // Full history: B is C's parent, so nothing of it is garbage.
        assert_eq!(dropped_bytes(&repo, id(&b), &[id(&c)]), 0);
        // At depth 1, C is a shallow boundary: B is out of reach.
        std::fs::write(root.join(".git/shallow"), format!("{c}\n")).expect("shallow");
        let repo = gix::open(root).expect("open");
        let freed = dropped_bytes(&repo, id(&b), &[id(&c)]);
        assert!(
            (100_000..101_000).contains(&freed),
            "dropping B frees the big file, its trees and commit: {freed}"
        );
        // Still kept by another commit: not garbage.
        assert!(dropped_bytes(&repo, id(&b), &[id(&c), id(&b)]) == 0);
        let freed_a = dropped_bytes(&repo, id(&a), &[id(&c)]);
        assert!(freed_a < 1_000, "A's objects are mostly C's: {freed_a}");
    }
}
