//! Linked worktrees the git CLI understands, written without the git CLI.
//!
//! A worktree for commit `<sha>` is a directory whose `.git` file says
//! `gitdir: ../../.git/worktrees/<sha>` (relative, as git-sync writes it), and
//! an admin directory `<root>/.git/worktrees/<sha>/` with `HEAD` (detached at
//! the commit), `commondir`, `gitdir` and `index` (stat data of the checkout,
//! so `git status` is clean without rehashing). Files are written into a
//! staging directory first; the caller moves it into place.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use gix::ObjectId;

use super::transport::Budget;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("could not read commit {commit}: {message}")]
    Commit { commit: ObjectId, message: String },
    #[error("checkout of {commit} failed: {message}")]
    Checkout { commit: ObjectId, message: String },
    #[error("checkout interrupted")]
    Interrupted,
    #[error("sync timeout exceeded during checkout")]
    Timeout,
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where a worktree lives: its final path and its admin directory.
pub struct Placement<'a> {
    /// The directory files are written to now (does not exist yet).
    pub staging: &'a Path,
    /// Where the directory will be renamed to (`<root>/.worktrees/<sha>`).
    pub final_path: &'a Path,
    /// `<root>/.git/worktrees/<sha>`.
    pub admin_dir: &'a Path,
}

/// Checks `commit` out into `placement.staging` and writes the admin files.
pub fn materialize(
    repo: &gix::Repository,
    commit: ObjectId,
    placement: &Placement<'_>,
    budget: &Budget,
) -> Result<(), Error> {
    let tree = tree_of(repo, commit)?;
    let mut index = repo.index_from_tree(&tree).map_err(|e| Error::Commit {
        commit,
        message: e.to_string(),
    })?;
    fs::create_dir_all(placement.staging).map_err(io_err(placement.staging))?;
    checkout_files(repo, commit, &mut index, placement.staging, budget)?;
    write_admin(commit, placement)?;
    index.set_path(placement.admin_dir.join("index"));
    index
        .write(gix::index::write::Options::default())
        .map_err(|e| Error::Checkout {
            commit,
            message: format!("writing the index: {e}"),
        })?;
    Ok(())
}

fn tree_of(repo: &gix::Repository, commit: ObjectId) -> Result<ObjectId, Error> {
    let err = |e: &dyn std::fmt::Display| Error::Commit {
        commit,
        message: e.to_string(),
    };
    let commit_obj = repo.find_commit(commit).map_err(|e| err(&e))?;
    commit_obj
        .tree_id()
        .map(|id| id.detach())
        .map_err(|e| err(&e))
}

fn checkout_files(
    repo: &gix::Repository,
    commit: ObjectId,
    index: &mut gix::index::File,
    dir: &Path,
    budget: &Budget,
) -> Result<(), Error> {
    let err = |message: String| Error::Checkout { commit, message };
    let mut opts = repo
        .checkout_options(gix::worktree::stack::state::attributes::Source::IdMapping)
        .map_err(|e| err(e.to_string()))?;
    opts.destination_is_initially_empty = true;
    let objects = repo
        .objects
        .clone()
        .into_arc()
        .map_err(|e| err(e.to_string()))?;
    let outcome = gix::worktree::state::checkout(
        index,
        dir,
        objects,
        &gix::progress::Discard,
        &gix::progress::Discard,
        budget.interrupt_flag(),
        opts,
    )
    .map_err(|e| err(e.to_string()));
    // An interrupted checkout returns Ok with a partial tree: check the flag.
    if budget.is_interrupted() {
        return Err(if budget.is_expired() {
            Error::Timeout
        } else {
            Error::Interrupted
        });
    }
    let outcome = outcome?;
    if let Some(first) = outcome.errors.first() {
        return Err(err(format!(
            "{} file(s) could not be written, first: {}: {}",
            outcome.errors.len(),
            first.path,
            first.error
        )));
    }
    if !outcome.collisions.is_empty() {
        return Err(err(format!(
            "{} path collision(s)",
            outcome.collisions.len()
        )));
    }
    Ok(())
}

fn write_admin(commit: ObjectId, placement: &Placement<'_>) -> Result<(), Error> {
    let admin = placement.admin_dir;
    if admin.exists() {
        fs::remove_dir_all(admin).map_err(io_err(admin))?;
    }
    fs::create_dir_all(admin).map_err(io_err(admin))?;
    let name = placement
        .final_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let write = |file: &str, content: String| {
        let path = admin.join(file);
        fs::write(&path, content).map_err(io_err(&path))
    };
    write("HEAD", format!("{commit}\n"))?;
    write("commondir", "../..\n".to_string())?;
    write(
        "gitdir",
        format!("{}\n", placement.final_path.join(".git").display()),
    )?;
    let dot_git = placement.staging.join(".git");
    fs::write(&dot_git, format!("gitdir: ../../.git/worktrees/{name}\n")).map_err(io_err(&dot_git))
}

/// The `.git` file content we expect in a worktree named `name`.
fn expected_dot_git(name: &str) -> String {
    format!("gitdir: ../../.git/worktrees/{name}\n")
}

/// Cheap check for every poll: the worktree and its admin files exist and
/// point at `commit`. Does not look at the checked-out files.
pub fn looks_intact(worktree: &Path, admin_dir: &Path, commit: ObjectId) -> bool {
    let name = commit.to_string();
    let dot_git_ok =
        fs::read_to_string(worktree.join(".git")).is_ok_and(|s| s == expected_dot_git(&name));
    let head_ok = fs::read_to_string(admin_dir.join("HEAD")).is_ok_and(|s| s.trim() == name);
    dot_git_ok && head_ok && admin_dir.join("index").is_file()
}

/// Thorough check (at start-up): every file in the index is present with the
/// size and mtime recorded at checkout, and no other file exists.
pub fn matches_index(worktree: &Path, admin_dir: &Path, commit: ObjectId) -> bool {
    if !looks_intact(worktree, admin_dir, commit) {
        return false;
    }
    let Ok(index) = gix::index::File::at(
        admin_dir.join("index"),
        gix::hash::Kind::Sha1,
        false,
        Default::default(),
    ) else {
        return false;
    };
    let mut expected = 0usize;
    for entry in index.entries() {
        let Ok(relative) = gix::path::from_bstr(entry.path(&index)) else {
            return false;
        };
        let path = worktree.join(relative.as_ref());
        if entry.mode == gix::index::entry::Mode::COMMIT {
            continue; // submodules are not checked out
        }
        let Ok(meta) = fs::symlink_metadata(&path) else {
            return false;
        };
        let size_ok = entry.stat.size == meta.len() as u32;
        let mtime_ok = i64::from(entry.stat.mtime.secs) == meta.mtime()
            && i64::from(entry.stat.mtime.nsecs) == meta.mtime_nsec();
        if !(size_ok && mtime_ok) {
            return false;
        }
        expected += 1;
    }
    count_files(worktree).is_ok_and(|n| n == expected)
}

/// Counts non-directory entries below `dir`, skipping the top-level `.git` file.
fn count_files(dir: &Path) -> io::Result<usize> {
    let mut count = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d)? {
            let entry = entry?;
            if d == dir && entry.file_name() == ".git" {
                continue;
            }
            if entry.file_type()?.is_dir() {
                stack.push(entry.path());
            } else {
                count += 1;
            }
        }
    }
    Ok(count)
}
