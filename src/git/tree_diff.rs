//! What changed between two commits' trees: gix's plain tree diff, reading
//! only the trees that differ. (`Repository::diff_tree_to_tree` would first
//! load attributes, building an index of the whole tree for them.)

use gix::diff::tree::recorder::Change;
use gix::ObjectId;

/// The changes from `from`'s tree to `to`'s, with full paths; an added or
/// changed tree is listed, then what it holds. Fails if a commit or a tree
/// the diff needs cannot be read.
pub(crate) fn changes(
    repo: &gix::Repository,
    from: ObjectId,
    to: ObjectId,
) -> Result<Vec<Change>, String> {
    let tree = |id: ObjectId| {
        repo.find_commit(id)
            .and_then(|c| c.tree())
            .map_err(|e| format!("reading {id}'s tree: {e}"))
    };
    let (old, new) = (tree(from)?, tree(to)?);
    let mut changes = gix::diff::tree::Recorder::default();
    gix::diff::tree(
        gix::objs::TreeRefIter::from_bytes(&old.data, old.id.kind()),
        gix::objs::TreeRefIter::from_bytes(&new.data, new.id.kind()),
        gix::diff::tree::State::default(),
        &repo.objects,
        &mut changes,
    )
    .map_err(|e| format!("comparing {from}'s tree with {to}'s: {e}"))?;
    Ok(changes.records)
}
