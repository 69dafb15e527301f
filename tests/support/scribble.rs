//! Writes into a checked-out tree of the kinds consumers and hooks make
//! (worktrees are meant to be read-only, but nothing enforces it): new
//! files, new and empty directories, a tracked file changed in place with
//! its size and mtime put back, a mode change, a file replaced by a
//! directory, a symlink retargeted. Every operation may fail when the tree
//! changes under it (a link swap): failures are counted, not fatal.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use super::git::git_output;

/// The tracked entries of the worktree `tree` (its index): (mode, path).
pub fn tracked(tree: &Path) -> Vec<(String, PathBuf)> {
    if !tree.join(".git").exists() {
        // The parked spare has no `.git` file (git would find the root's
        // repository instead): what it holds on disk is what it had tracked.
        return on_disk(tree);
    }
    let out = git_output(&["ls-files", "-s", "-z"], tree);
    if !out.status.success() {
        return Vec::new();
    }
    out.stdout
        .split(|b| *b == 0)
        .filter_map(|rec| {
            let rec = std::str::from_utf8(rec).ok()?;
            let (meta, path) = rec.split_once('\t')?;
            let mode = meta.split(' ').next()?.to_string();
            Some((mode, PathBuf::from(path)))
        })
        .collect()
}

/// The files and symlinks below `tree`, as (mode, path) like `git ls-files -s`.
fn on_disk(tree: &Path) -> Vec<(String, PathBuf)> {
    super::walk_tree(tree)
        .into_iter()
        .filter_map(|(rel, meta)| {
            let mode = if meta.file_type().is_symlink() {
                "120000"
            } else if !meta.is_file() {
                return None;
            } else if meta.permissions().mode() & 0o111 != 0 {
                "100755"
            } else {
                "100644"
            };
            Some((mode.to_string(), PathBuf::from(rel)))
        })
        .collect()
}

/// One round of writes into `tree`, varied by `round`; returns how many
/// operations succeeded.
pub fn scribble(tree: &Path, round: usize) -> usize {
    let mut done = 0;
    let mut count = |r: io::Result<()>| done += usize::from(r.is_ok());
    count(fs::write(
        tree.join(format!("untracked-{round}.txt")),
        "untracked\n",
    ));
    let deep = tree.join(format!("cache/{round}/deep"));
    count(fs::create_dir_all(&deep).and_then(|_| fs::write(deep.join("file.txt"), "cached\n")));
    count(fs::create_dir(tree.join(format!("empty-{round}"))));
    let entries = tracked(tree);
    let files: Vec<&PathBuf> = entries
        .iter()
        .filter(|(mode, _)| mode.starts_with("100"))
        .map(|(_, p)| p)
        .collect();
    if !files.is_empty() {
        let pick = |k: usize| tree.join(files[(round + k) % files.len()]);
        count(change_in_place(&pick(0)));
        count(toggle_exec(&pick(1)));
        count(file_to_dir(&pick(2)));
        let stray = pick(3).with_file_name(format!("stray-{round}.txt"));
        count(fs::write(stray, "stray\n"));
    }
    if let Some((_, link)) = entries.iter().find(|(mode, _)| mode == "120000") {
        let link = tree.join(link);
        count(fs::remove_file(&link).and_then(|_| symlink(format!("elsewhere-{round}"), &link)));
    }
    done
}

/// Overwrites the file with as many different bytes and puts its mtime
/// back: only ctime and content tell.
pub fn change_in_place(path: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if !meta.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    let mut content = fs::read(path)?;
    if content.is_empty() {
        content.push(b'x');
    }
    for b in &mut content {
        *b = if *b == b'#' { b'%' } else { b'#' };
    }
    let mut file = fs::OpenOptions::new().write(true).open(path)?;
    file.write_all(&content)?;
    file.set_modified(meta.modified()?)
}

/// Flips the owner's executable bit.
pub fn toggle_exec(path: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if !meta.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    let mode = meta.permissions().mode() ^ 0o100;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

/// Replaces the file with a directory holding a file.
pub fn file_to_dir(path: &Path) -> io::Result<()> {
    fs::remove_file(path)?;
    fs::create_dir(path)?;
    fs::write(path.join("inside.txt"), "was a file\n")
}
