//! [`Repo`]: the root repository as the sync engine sees it. A small facade
//! over the store, fetch, worktree, submodule and compaction modules, so
//! that no gix type leaves `git/`: commits are [`CommitId`]s, remotes
//! [`Remote`]s.

use std::path::{Path, PathBuf};

use super::signed::{self, TagId};
use super::{compact, fetch, garbage, partial, store, submodules, worktree, Budget, CommitId};
use crate::types::SymlinkPolicy;
use crate::verify::SignedObject;

/// An open repository (the root's `.git`, or a submodule store).
pub struct Repo(gix::Repository);

/// The stores a worktree's submodules use, each with the commit it must keep.
#[derive(Debug, Default, Clone)]
pub struct SubmoduleStores(pub(crate) Vec<(PathBuf, gix::ObjectId)>);

/// How many of the published commit's ancestors [`Repo::accounts_for`]
/// looks through (a shallow store holds few; a full one may hold many).
const ANCESTRY_SEARCH: usize = 10_000;

impl Repo {
    /// Opens the repository at `root`, creating or repairing it as needed
    /// (see [`store::open_or_init`]).
    pub fn open_or_init(
        root: &Path,
        origin_url: &str,
        depth: u32,
        filter: Option<&str>,
        threads: usize,
    ) -> Result<(Self, store::Opened), store::Error> {
        store::open_or_init(root, origin_url, depth, filter, threads)
            .map(|(repo, opened)| (Self(repo), opened))
    }

    /// In a partial clone, fetches the blobs the checkout of `commit` needs
    /// (see [`partial::complete_checkout`]); returns how many.
    pub fn complete_checkout(
        &self,
        commit: CommitId,
        sparse: Option<&super::sparse::Patterns>,
        opts: &fetch::Options<'_>,
        budget: &Budget,
    ) -> Result<usize, partial::Error> {
        partial::complete_checkout(&self.0, commit.0, sparse, opts, budget)
    }

    /// Opens afresh (a new object database handle: no stale pack list, no
    /// maps), with `threads` for pack indexing and checkout.
    pub fn open(root: &Path, threads: usize) -> Result<Self, store::Error> {
        store::open(root, threads).map(Self)
    }

    pub fn git_dir(&self) -> &Path {
        self.0.git_dir()
    }

    /// The commit's object is in the store.
    pub fn has_commit(&self, commit: CommitId) -> bool {
        self.0.has_object(commit.0)
    }

    /// Whether `published` accounts for the object `announced` (hex) names,
    /// as far as the store knows: it is `published`, an annotated tag of
    /// it, or one of its ancestors (within [`ANCESTRY_SEARCH`] commits),
    /// the parents a walked commit names included, though the store may
    /// not hold them.
    pub fn accounts_for(&self, published: CommitId, announced: &str) -> bool {
        let Ok(id) = gix::ObjectId::from_hex(announced.as_bytes()) else {
            return false;
        };
        // An object the store lacks may still be a parent a commit names:
        // a shallow fetch (`--depth 1`) of a newer commit never brings its
        // parent, and a late delivery announces that parent.
        let target = match self.0.find_object(id) {
            Ok(object) => match object.peel_to_kind(gix::object::Kind::Commit) {
                Ok(commit) => commit.id,
                Err(_) => return false,
            },
            Err(_) => id,
        };
        if target == published.0 {
            return true;
        }
        let Ok(walk) = self.0.rev_walk([published.0]).all() else {
            return false;
        };
        walk.take(ANCESTRY_SEARCH)
            .map_while(Result::ok)
            .any(|info| info.id == target || info.parent_ids.contains(&target))
    }

    /// Polls the remote and fetches the wanted commit if needed; says
    /// which annotated tag `--ref` names, if it does.
    pub fn fetch(
        &self,
        opts: &fetch::Options<'_>,
        budget: &Budget,
    ) -> Result<fetch::Polled, fetch::Error> {
        fetch::poll(&self.0, opts, budget)
    }

    /// The commit as signature verification sees it (see [`signed`]).
    pub fn signed_commit(&self, commit: CommitId) -> Result<SignedObject, signed::Error> {
        signed::commit(&self.0, commit.0)
    }

    /// The commit the annotated tag peels to, by the objects in the store.
    pub fn tag_commit(&self, tag: TagId) -> Result<CommitId, signed::Error> {
        signed::tag_commit(&self.0, tag.0).map(CommitId)
    }

    /// The annotated tag as signature verification sees it.
    pub fn signed_tag(&self, tag: TagId) -> Result<SignedObject, signed::Error> {
        signed::tag(&self.0, tag.0)
    }

    /// Where the git-sync branch points.
    pub fn branch_commit(&self) -> Option<CommitId> {
        store::branch_commit(&self.0).map(CommitId)
    }

    pub fn set_branch(&self, commit: CommitId) -> Result<(), store::Error> {
        store::set_branch(&self.0, commit.0)
    }

    /// See [`store::empty_if_damaged`].
    pub fn empty_if_damaged(
        &self,
        partial: bool,
        budget: &super::Budget,
    ) -> Result<bool, store::Error> {
        store::empty_if_damaged(&self.0, partial, budget)
    }

    /// After the branch moved: records the store as holding its whole
    /// history, checking only what is new (see [`store::record_verified`]).
    pub fn record_verified(&self, depth: u32, partial: bool) {
        if let Some(tip) = store::branch_commit(&self.0) {
            store::record_verified(&self.0, tip, depth, partial);
        }
    }

    /// What the worktree of `commit` will hold (see [`worktree::plan`]).
    pub fn plan(
        &self,
        commit: CommitId,
        policy: SymlinkPolicy,
    ) -> Result<worktree::Planned, worktree::Error> {
        worktree::plan(&self.0, commit.0, policy)
    }

    /// The same, from the inspected worktree of `base` (see [`worktree::plan_from`]).
    pub fn plan_from(
        &self,
        base: (&worktree::Inspection, CommitId),
        commit: CommitId,
        policy: SymlinkPolicy,
    ) -> Result<worktree::Planned, worktree::Error> {
        worktree::plan_from(&self.0, base.0, base.1 .0, commit.0, policy)
    }

    /// See [`worktree::materialize`].
    pub fn materialize(
        &self,
        planned: worktree::Planned,
        placement: &worktree::Placement,
        budget: &Budget,
    ) -> Result<worktree::Built, worktree::Error> {
        worktree::materialize(&self.0, planned, placement, budget)
    }

    /// See [`worktree::rewrite`].
    pub fn rewrite(
        &self,
        planned: worktree::Planned,
        placement: &worktree::Placement,
        inspection: worktree::Inspection,
        published: Option<CommitId>,
        budget: &Budget,
    ) -> Result<worktree::Built, worktree::Error> {
        let published = published.map(|c| c.0);
        worktree::rewrite(&self.0, planned, placement, inspection, published, budget)
    }

    /// See [`submodules::populate`]; takes the index `built` wrote, if it kept it.
    pub fn populate_submodules(
        &self,
        commit: CommitId,
        target: &submodules::Target<'_>,
        settings: &submodules::Settings<'_>,
        budget: &Budget,
        built: &mut worktree::Built,
    ) -> Result<submodules::Populated, submodules::Error> {
        let index = built.index.take();
        submodules::populate(&self.0, commit.0, target, settings, budget, index)
    }

    /// Carries out the store's upkeep (see [`compact::carry_out`]).
    pub fn upkeep(
        &self,
        due: compact::Upkeep,
        keep: &[CommitId],
        budget: &Budget,
    ) -> Result<compact::Done, compact::Error> {
        compact::carry_out(&self.0, due, &object_ids(keep), budget)
    }

    /// See [`compact::trim_shallow`].
    pub fn trim_shallow(
        &self,
        keep: &[CommitId],
        floor: usize,
    ) -> Result<Option<compact::Trimmed>, compact::Error> {
        compact::trim_shallow(&self.0, &object_ids(keep), floor)
    }

    /// See [`garbage::dropped_bytes`].
    pub fn dropped_bytes(&self, dropped: CommitId, keep: &[CommitId]) -> u64 {
        garbage::dropped_bytes(&self.0, dropped.0, &object_ids(keep))
    }
}

fn object_ids(ids: &[CommitId]) -> Vec<gix::ObjectId> {
    ids.iter().map(|id| id.0).collect()
}
