//! The on-disk layout consumers rely on, and the atomic publish. Knows
//! nothing of git: worktrees are directories named by commit hash.
//!
//! ```text
//! <root>/.worktrees/<sha>/          one checked-out commit
//! <root>/.worktrees/.staging-<sha>  a checkout in progress (never published)
//! <root>/.worktrees/.spare          a retired tree past its stale timeout, kept
//!                                   only to be rewritten for the next commit
//! <root>/.worktrees/.trash-<sha>-<n> what could not be deleted (never published)
//! <link> -> .worktrees/<sha>        relative symlink, swapped with rename(2)
//! ```
//!
//! The link is the source of truth for what is published: its target's
//! basename is the commit hash. Publishing makes a temporary symlink next to
//! the link and renames it over the link, then fsyncs the directory, so a
//! reader (or a `kill -9`) sees the old tree or the new one, never neither.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::fsutil;
use crate::types::CommitHash;

const WORKTREES: &str = ".worktrees";
const STAGING_PREFIX: &str = ".staging-";
/// Not a commit's name: once its stale timeout has passed, a retired tree is
/// gone from `.worktrees/<sha>` (as with git-sync) but still saves a full
/// checkout of the next commit.
const SPARE: &str = ".spare";
const TRASH_PREFIX: &str = ".trash-";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "--link {link} is a directory, not a symlink: git-sidecar replaces --link with a \
         symlink to the published worktree and never deletes a directory it did not make; \
         remove it, or point --link elsewhere (the web server then serves that link)"
    )]
    LinkIsADirectory { link: PathBuf },
    #[error(
        "cannot write the link {link} in its directory {dir}: {source}; git-sidecar needs \
         write access to the directory of --link (in Kubernetes: put the link on the shared \
         volume, e.g. inside --root)"
    )]
    LinkDir {
        link: PathBuf,
        dir: PathBuf,
        source: io::Error,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Paths of one root and its published link.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
    link: PathBuf,
}

impl Layout {
    /// `root` and `link` must be absolute.
    pub fn new(root: PathBuf, link: PathBuf) -> Self {
        Self { root, link }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn link(&self) -> &Path {
        &self.link
    }

    pub fn worktrees_dir(&self) -> PathBuf {
        self.root.join(WORKTREES)
    }

    pub fn worktree(&self, hash: &CommitHash) -> PathBuf {
        self.worktrees_dir().join(hash.as_str())
    }

    pub fn staging(&self, hash: &CommitHash) -> PathBuf {
        self.worktrees_dir().join(format!("{STAGING_PREFIX}{hash}"))
    }

    /// Where the spare is parked (see [`Layout::park`]).
    pub fn spare(&self) -> PathBuf {
        self.worktrees_dir().join(SPARE)
    }

    /// The published commit: the basename of the link's target, if it is a hash.
    pub fn current(&self) -> Option<CommitHash> {
        let target = fs::read_link(&self.link).ok()?;
        CommitHash::parse(&target.file_name()?.to_string_lossy())
    }

    /// Makes sure `.worktrees/` exists and holds no half-written checkout.
    pub fn prepare(&self) -> Result<(), Error> {
        let dir = self.worktrees_dir();
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        for entry in fs::read_dir(&dir).map_err(io_err("read", &dir))?.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(STAGING_PREFIX)
            {
                self.discard(&entry.path())?;
            }
        }
        self.remove_trash(true);
        Ok(())
    }

    /// Removes `path` (below `.worktrees/`). What cannot be removed (a
    /// consumer running as another user wrote a directory of its own into
    /// a worktree) is renamed to `.worktrees/.trash-<name>-<n>` with a
    /// warning saying who owns it: nothing is ever served or checked out
    /// from there, and its removal is retried at every cleanup. Either way
    /// `path` is gone afterwards.
    pub fn discard(&self, path: &Path) -> Result<(), Error> {
        let Err(error) = fsutil::remove_any(path) else {
            return Ok(());
        };
        let trash = self.trash_place(path);
        if let Err(e) = fs::rename(path, &trash) {
            return Err(io_err("remove", path)(io::Error::new(
                error.kind(),
                format!(
                    "{error}; moving it aside to {} failed too: {e}",
                    trash.display()
                ),
            )));
        }
        self.remove_trash(false);
        let blocker = fsutil::blocker(&trash);
        tracing::warn!(
            path = %path.display(),
            moved_to = %trash.display(),
            error = %error,
            "could not remove a worktree; moved it aside, where it is never served and its removal is retried at every cleanup: {}",
            advice(blocker.as_ref())
        );
        Ok(())
    }

    /// A free `.worktrees/.trash-<name>-<n>` for `path`.
    fn trash_place(&self, path: &Path) -> PathBuf {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = name.strip_prefix(STAGING_PREFIX).unwrap_or(&name);
        let dir = self.worktrees_dir();
        (0..)
            .map(|n| dir.join(format!("{TRASH_PREFIX}{name}-{n}")))
            .find(|p| fs::symlink_metadata(p).is_err())
            .unwrap_or_else(|| dir.join(format!("{TRASH_PREFIX}{name}")))
    }

    /// Retries removing what [`Layout::discard`] moved aside; with `warn`
    /// (at start-up), says what is still there and why.
    pub fn remove_trash(&self, warn: bool) {
        let Ok(entries) = fs::read_dir(self.worktrees_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with(TRASH_PREFIX) {
                continue;
            }
            let path = entry.path();
            // Each entry on its own: `remove_dir_all` stops at its first
            // failure, which would keep all the rest of the tree on disk.
            fsutil::remove_entries(&path);
            match fsutil::remove_any(&path) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "removed a worktree that could not be removed before")
                }
                Err(error) if warn => tracing::warn!(
                    path = %path.display(),
                    error = %error,
                    "a worktree moved aside earlier still cannot be removed (it is never served): {}",
                    advice(fsutil::blocker(&path).as_ref())
                ),
                Err(_) => {}
            }
        }
    }

    /// Moves a finished checkout from its staging directory to its final
    /// place. If a directory is already there (a rebuild of a damaged
    /// worktree), the two are exchanged atomically and the old one deleted.
    pub fn install(&self, hash: &CommitHash) -> Result<PathBuf, Error> {
        let staging = self.staging(hash);
        let target = self.worktree(hash);
        if fs::symlink_metadata(&target).is_ok() {
            exchange(&staging, &target)?;
            self.discard(&staging)?;
        } else {
            fs::rename(&staging, &target).map_err(io_err("rename", &staging))?;
        }
        fsutil::fsync_dir(&self.worktrees_dir()).map_err(io_err("fsync", &self.worktrees_dir()))?;
        Ok(target)
    }

    /// Points the link at the worktree of `hash`, atomically. The link is
    /// relative (the volume may be mounted elsewhere in the web server's
    /// container), worked out between the real directories: the kernel
    /// follows it from where the link really is, which is not where the
    /// path says if a directory on the way is a symlink.
    pub fn publish(&self, hash: &CommitHash) -> Result<(), Error> {
        let link_dir = self.link.parent().unwrap_or(Path::new("/"));
        fs::create_dir_all(link_dir).map_err(io_err("create", link_dir))?;
        let real = |p: &Path| fs::canonicalize(p).map_err(io_err("resolve", p));
        let worktrees = self.worktrees_dir();
        let target = relative_path(&real(link_dir)?, &real(&worktrees)?.join(hash.as_str()));
        let name = self
            .link
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if fs::symlink_metadata(&self.link).is_ok_and(|m| m.is_dir()) {
            return Err(Error::LinkIsADirectory {
                link: self.link.clone(),
            });
        }
        // A v3 worktree that stops being published starts its stale timer
        // now (also when the commit stays the same: the migration).
        let leaving_v3 = self.published_v3_worktree();
        let tmp = link_dir.join(format!(".{name}.tmp-link"));
        let in_dir = |source: io::Error| Error::LinkDir {
            link: self.link.clone(),
            dir: link_dir.to_path_buf(),
            source,
        };
        remove_any(&tmp)?;
        std::os::unix::fs::symlink(&target, &tmp).map_err(in_dir)?;
        if let Err(e) = fs::rename(&tmp, &self.link) {
            let _ = fs::remove_file(&tmp);
            return Err(in_dir(e));
        }
        if let Some(v3) = leaving_v3 {
            let _ = fsutil::touch_mtime(&v3);
        }
        fsutil::fsync_dir(link_dir).map_err(io_err("fsync", link_dir))
    }

    /// Starts the stale timer of a worktree that is no longer published
    /// (a git-sync v3 one's starts in [`Layout::publish`]).
    pub fn mark_retired(&self, hash: &CommitHash) {
        let _ = fsutil::touch_mtime(&self.worktree(hash));
    }

    /// git-sync v3 checked each commit out directly into the root:
    /// `<root>/<sha>`, a worktree the link led to, whose `.git` file is the
    /// one `git worktree add` wrote for this root's repository (`gitdir:
    /// <root>/.git/worktrees/<sha>`). git-sync v4 deletes it when it
    /// migrates the root (reference §2.1); we do once it is past
    /// `--stale-worktree-timeout`. Nothing else in the root qualifies.
    fn v3_worktree(&self, name: &str) -> Option<PathBuf> {
        CommitHash::parse(name)?;
        let path = self.root.join(name);
        if !fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            return None;
        }
        let dot_git = fs::read_to_string(path.join(".git")).ok()?;
        let gitdir = Path::new(dot_git.strip_prefix("gitdir: ")?.trim_end());
        let admin = self.root.join(".git/worktrees").join(name);
        // Relative to the worktree, or absolute (as `git worktree add` writes it).
        (fsutil::clean_join(&path, gitdir) == admin).then_some(path)
    }

    /// The git-sync v3 worktree the link leads to now, if any.
    fn published_v3_worktree(&self) -> Option<PathBuf> {
        let target = fs::canonicalize(&self.link).ok()?;
        let name = target.file_name()?.to_string_lossy().into_owned();
        self.v3_worktree(&name).filter(|v3| *v3 == target)
    }

    /// Removes git-sync v3 worktrees (see [`Layout::v3_worktree`]) the link
    /// no longer leads to, once retired for `stale_after`.
    fn remove_v3_worktrees(&self, stale_after: Duration) -> Result<Vec<String>, Error> {
        let published = self.published_v3_worktree();
        let Ok(entries) = fs::read_dir(&self.root) else {
            return Ok(Vec::new());
        };
        let mut removed = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(path) = self.v3_worktree(&name) else {
                continue;
            };
            if published.as_ref() == Some(&path) || age(&path) < stale_after {
                continue;
            }
            self.discard(&path)?;
            removed.push(name);
        }
        Ok(removed)
    }

    /// Deletes everything in `.worktrees/` except the published worktree,
    /// the parked spare (if `keep_spare`) and anything younger than
    /// `stale_after` (by mtime), and git-sync v3 worktrees in the root by
    /// the same rule. Returns what was removed.
    pub fn remove_stale(
        &self,
        stale_after: Duration,
        keep_spare: bool,
    ) -> Result<Vec<String>, Error> {
        let current = self.current();
        let dir = self.worktrees_dir();
        let mut removed = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err("read", &dir))?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let published = current.as_ref().is_some_and(|c| c.as_str() == name);
            if published || (keep_spare && name == SPARE) || name.starts_with(TRASH_PREFIX) {
                continue;
            }
            if age(&entry.path()) >= stale_after {
                self.discard(&entry.path())?;
                removed.push(name);
            }
        }
        removed.extend(self.remove_v3_worktrees(stale_after)?);
        Ok(removed)
    }

    /// Whether the retired worktree of `hash` has been retired for at
    /// least `stale_after` (and is not published).
    pub fn is_stale(&self, hash: &CommitHash, stale_after: Duration) -> bool {
        let path = self.worktree(hash);
        self.current().as_ref() != Some(hash) && path.is_dir() && age(&path) >= stale_after
    }

    /// Renames the retired worktree of `hash` to the spare's place (replacing
    /// any spare there), and drops its `.git` file: what is left is no
    /// worktree any more, only files to be rewritten for the next commit.
    pub fn park(&self, hash: &CommitHash) -> Result<(), Error> {
        let from = self.worktree(hash);
        let to = self.spare();
        remove_any(&to)?;
        fs::rename(&from, &to).map_err(io_err("rename", &from))?;
        remove_any(&to.join(".git"))
    }

    /// Moves the parked spare to the staging place of `new`, to be
    /// rewritten there. Returns whether there was one.
    pub fn claim_spare(&self, new: &CommitHash) -> Result<bool, Error> {
        let from = self.spare();
        if !from.is_dir() {
            return Ok(false);
        }
        let to = self.staging(new);
        remove_any(&to)?;
        fs::rename(&from, &to).map_err(io_err("rename", &from))?;
        Ok(true)
    }

    /// Moves the retired worktree of `old` to the staging place of `new`, to
    /// be rewritten there, if it exists, is not published and has been
    /// retired for at least `stale_after`. Returns whether it was moved.
    pub fn claim_retired(
        &self,
        old: &CommitHash,
        new: &CommitHash,
        stale_after: Duration,
    ) -> Result<bool, Error> {
        let from = self.worktree(old);
        let published = self.current().as_ref() == Some(old);
        if old == new || published || age(&from) < stale_after || !from.is_dir() {
            return Ok(false);
        }
        let to = self.staging(new);
        self.discard(&to)?;
        fs::rename(&from, &to).map_err(io_err("rename", &from))?;
        Ok(true)
    }

    /// Hashes of the worktrees on disk (published or not yet stale).
    pub fn worktree_hashes(&self) -> Vec<CommitHash> {
        let Ok(entries) = fs::read_dir(self.worktrees_dir()) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| CommitHash::parse(&e.file_name().to_string_lossy()))
            .collect()
    }
}

/// Time since `path` was last modified (retired); unknown counts as old.
/// A time in the future (the clock stepped back, a file server's clock
/// ahead of ours) counts as just retired, as git-sync has it: such a tree
/// was deleted at once, whatever `--stale-worktree-timeout` said.
fn age(path: &Path) -> Duration {
    match fs::symlink_metadata(path).and_then(|m| m.modified()) {
        Ok(modified) => SystemTime::now()
            .duration_since(modified)
            .unwrap_or(Duration::ZERO),
        Err(_) => Duration::MAX,
    }
}

/// What to do about a tree that could not be removed, from what blocked it.
fn advice(blocker: Option<&fsutil::Blocker>) -> String {
    let me = nix::unistd::geteuid();
    match blocker {
        Some(b) => format!(
            "{} belongs to uid {} (mode {:o}) and this process (uid {me}) may not delete what is in it: \
             either git-sidecar itself ran as that uid before (a changed runAsUser: use --group-write \
             and one group for every uid of a root), or a consumer or hook running as another user wrote \
             into a worktree (have consumers treat worktrees as read-only, or run them as uid {me}). \
             Delete it as uid {} or root",
            b.path.display(),
            b.uid,
            b.mode,
            b.uid
        ),
        None => format!("delete it by hand (this process runs as uid {me})"),
    }
}

/// Removes a file, symlink or directory tree; missing is fine.
pub fn remove_any(path: &Path) -> Result<(), Error> {
    fsutil::remove_any(path).map_err(io_err("remove", path))
}

/// Swaps two paths: atomically with Linux `renameat2(RENAME_EXCHANGE)`, or,
/// on filesystems without it, with two renames (a short window in which `b`
/// is missing; only used to rebuild a worktree that was already damaged).
fn exchange(a: &Path, b: &Path) -> Result<(), Error> {
    use nix::errno::Errno;
    match nix::fcntl::renameat2(
        nix::fcntl::AT_FDCWD,
        a,
        nix::fcntl::AT_FDCWD,
        b,
        nix::fcntl::RenameFlags::RENAME_EXCHANGE,
    ) {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => {
            let aside = a.with_extension("old");
            remove_any(&aside)?;
            fs::rename(b, &aside).map_err(io_err("rename", b))?;
            fs::rename(a, b).map_err(io_err("rename", a))?;
            fs::rename(&aside, a).map_err(io_err("rename", &aside))
        }
        Err(e) => Err(io_err("exchange", a)(io::Error::from(e))),
    }
}

/// The path of `to` relative to the directory `from` (both absolute).
pub fn relative_path(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component> = from.components().collect();
    let to_parts: Vec<Component> = to.components().collect();
    let common = from
        .iter()
        .zip(&to_parts)
        .take_while(|(a, b)| a == b)
        .count();
    let mut rel = PathBuf::new();
    for _ in common..from.len() {
        rel.push("..");
    }
    for part in &to_parts[common..] {
        rel.push(part);
    }
    rel
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(c: char) -> CommitHash {
        CommitHash::parse(&c.to_string().repeat(40)).expect("valid hash")
    }

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative_path(Path::new("/r"), Path::new("/r/.worktrees/x")),
            Path::new(".worktrees/x")
        );
        assert_eq!(
            relative_path(Path::new("/srv/www"), Path::new("/r/.worktrees/x")),
            Path::new("../../r/.worktrees/x")
        );
    }

    /// `--link` naming a directory (the web server's old document root,
    /// say): a clear error, nothing of ours left in it, and the directory
    /// untouched.
    #[test]
    fn a_link_that_is_a_directory_is_refused_and_nothing_is_left(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let link = dir.path().join("www/html");
        fs::create_dir_all(&link)?;
        fs::write(link.join("index.html"), "old site")?;
        let layout = Layout::new(dir.path().join("root"), link.clone());
        layout.prepare()?;
        let h = hash('a');
        fs::create_dir_all(layout.staging(&h))?;
        layout.install(&h)?;
        let e = layout.publish(&h).expect_err("a directory is no link");
        assert!(
            e.to_string().contains("is a directory, not a symlink"),
            "{e}"
        );
        assert_eq!(fs::read_to_string(link.join("index.html"))?, "old site");
        let mut left: Vec<_> = fs::read_dir(dir.path().join("www"))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        left.sort();
        assert_eq!(left, ["html"]);
        Ok(())
    }

    /// `--link /srv/www/site` where `/srv/www` is a symlink to a directory
    /// elsewhere: the link works from where it really is.
    #[test]
    fn a_link_in_a_directory_reached_through_a_symlink_resolves(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        fs::create_dir_all(dir.path().join("real/deeper"))?;
        std::os::unix::fs::symlink("real/deeper", dir.path().join("www"))?;
        let link = dir.path().join("www/site");
        let layout = Layout::new(dir.path().join("root"), link.clone());
        layout.prepare()?;
        let h = hash('a');
        fs::create_dir_all(layout.staging(&h))?;
        fs::write(layout.staging(&h).join("f"), "content")?;
        layout.install(&h)?;
        layout.publish(&h)?;
        assert_eq!(fs::read_to_string(link.join("f"))?, "content");
        assert_eq!(layout.current(), Some(h));
        Ok(())
    }

    #[test]
    fn publish_swaps_a_relative_link_and_current_follows() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let layout = Layout::new(dir.path().to_path_buf(), dir.path().join("site"));
        layout.prepare()?;
        assert_eq!(layout.current(), None);
        for h in [hash('a'), hash('b')] {
            fs::create_dir_all(layout.staging(&h))?;
            fs::write(layout.staging(&h).join("f"), h.as_str())?;
            layout.install(&h)?;
            layout.publish(&h)?;
            assert_eq!(layout.current(), Some(h.clone()));
            assert_eq!(
                fs::read_link(layout.link())?,
                Path::new(".worktrees").join(h.as_str())
            );
            assert_eq!(fs::read_to_string(layout.link().join("f"))?, h.as_str());
        }
        assert!(!dir.path().join(".site.tmp-link").exists());
        Ok(())
    }

    #[test]
    fn install_over_an_existing_worktree_replaces_it() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let layout = Layout::new(dir.path().to_path_buf(), dir.path().join("site"));
        layout.prepare()?;
        let h = hash('c');
        fs::create_dir_all(layout.worktree(&h))?;
        fs::write(layout.worktree(&h).join("f"), "damaged")?;
        fs::create_dir_all(layout.staging(&h))?;
        fs::write(layout.staging(&h).join("f"), "fresh")?;
        layout.install(&h)?;
        assert_eq!(fs::read_to_string(layout.worktree(&h).join("f"))?, "fresh");
        assert!(!layout.staging(&h).exists());
        Ok(())
    }

    #[test]
    fn remove_stale_keeps_the_published_and_young_ones() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let layout = Layout::new(dir.path().to_path_buf(), dir.path().join("site"));
        layout.prepare()?;
        for h in [hash('a'), hash('b')] {
            fs::create_dir_all(layout.worktree(&h))?;
        }
        fs::write(layout.worktrees_dir().join("junk"), "x")?;
        layout.publish(&hash('a'))?;
        assert!(layout
            .remove_stale(Duration::from_secs(3600), false)?
            .is_empty());
        let mut removed = layout.remove_stale(Duration::ZERO, false)?;
        removed.sort();
        assert_eq!(removed, vec![hash('b').to_string(), "junk".to_string()]);
        assert!(layout.worktree(&hash('a')).exists());
        Ok(())
    }

    /// A retirement time in the future (the clock stepped back since) is
    /// "just retired", not "old": the tree waits out the timeout.
    #[test]
    fn a_tree_retired_in_the_future_is_not_stale() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let layout = Layout::new(dir.path().to_path_buf(), dir.path().join("site"));
        layout.prepare()?;
        for h in [hash('a'), hash('b')] {
            fs::create_dir_all(layout.worktree(&h))?;
        }
        layout.publish(&hash('a'))?;
        let later = SystemTime::now() + Duration::from_secs(600);
        fs::File::open(layout.worktree(&hash('b')))?.set_modified(later)?;
        assert!(!layout.is_stale(&hash('b'), Duration::from_secs(30)));
        assert!(layout
            .remove_stale(Duration::from_secs(30), false)?
            .is_empty());
        assert!(
            layout.is_stale(&hash('b'), Duration::ZERO),
            "no timeout: stale"
        );
        Ok(())
    }

    #[test]
    fn a_git_sync_v3_worktree_in_the_root_goes_once_the_link_leads_elsewhere(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let layout = Layout::new(dir.path().to_path_buf(), dir.path().join("site"));
        layout.prepare()?;
        // v3: <root>/<sha> with a `.git` file, the link pointing at it.
        let v3_worktree = |h: char| -> Result<PathBuf, Box<dyn std::error::Error>> {
            let path = dir.path().join(hash(h).as_str());
            fs::create_dir_all(&path)?;
            let admin = dir.path().join(".git/worktrees").join(hash(h).as_str());
            fs::write(path.join(".git"), format!("gitdir: {}\n", admin.display()))?;
            Ok(path)
        };
        let v3 = v3_worktree('a')?;
        std::os::unix::fs::symlink(hash('a').as_str(), dir.path().join("site"))?;
        // Not a worktree of this root (another `.git` file, none), or not
        // a hash: never touched.
        let other = dir.path().join(hash('c').as_str());
        fs::create_dir_all(&other)?;
        let foreign = dir.path().join(hash('d').as_str());
        fs::create_dir_all(&foreign)?;
        fs::write(
            foreign.join(".git"),
            "gitdir: /elsewhere/.git/worktrees/x\n",
        )?;
        fs::create_dir_all(dir.path().join("notes"))?;
        fs::write(dir.path().join("notes/.git"), "x")?;
        assert!(layout.remove_stale(Duration::ZERO, false)?.is_empty());
        assert!(v3.exists(), "published: kept");

        fs::create_dir_all(layout.worktree(&hash('b')))?;
        layout.publish(&hash('b'))?;
        assert!(layout
            .remove_stale(Duration::from_secs(3600), false)?
            .is_empty());
        layout.mark_retired(&hash('a'));
        assert!(layout
            .remove_stale(Duration::from_secs(1), false)?
            .is_empty());
        assert!(v3.exists(), "kept while younger than the stale timeout");
        assert_eq!(
            layout.remove_stale(Duration::ZERO, false)?,
            vec![hash('a').to_string()]
        );
        assert!(!v3.exists());
        assert!(other.exists() && foreign.exists() && dir.path().join("notes").exists());

        // The migration of the same commit: its stale timer starts when
        // the link moves, however old the v3 directory is.
        let same = v3_worktree('e')?;
        let old = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        fs::File::open(&same)?.set_modified(old)?;
        std::os::unix::fs::symlink(hash('e').as_str(), dir.path().join("site.tmp"))?;
        fs::rename(dir.path().join("site.tmp"), dir.path().join("site"))?;
        fs::create_dir_all(layout.worktree(&hash('e')))?;
        layout.publish(&hash('e'))?;
        assert!(layout
            .remove_stale(Duration::from_secs(3600), false)?
            .is_empty());
        assert!(same.exists(), "just retired: kept for the stale timeout");
        Ok(())
    }

    #[test]
    fn a_parked_spare_is_no_worktree_and_is_claimed_once() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let layout = Layout::new(dir.path().to_path_buf(), dir.path().join("site"));
        layout.prepare()?;
        for h in [hash('a'), hash('b'), hash('c')] {
            fs::create_dir_all(layout.worktree(&h))?;
            fs::write(layout.worktree(&h).join(".git"), "gitdir: x\n")?;
            fs::write(layout.worktree(&h).join("f"), h.as_str())?;
        }
        layout.publish(&hash('a'))?;
        assert!(!layout.is_stale(&hash('a'), Duration::ZERO), "published");
        assert!(layout.is_stale(&hash('b'), Duration::ZERO));
        layout.park(&hash('b'))?;
        assert!(!layout.worktree(&hash('b')).exists());
        assert!(!layout.spare().join(".git").exists());
        assert!(layout.worktree_hashes().iter().all(|h| *h != hash('b')));
        let removed = layout.remove_stale(Duration::ZERO, true)?;
        assert_eq!(removed, vec![hash('c').to_string()]);
        let new = hash('d');
        assert!(layout.claim_spare(&new)?);
        assert_eq!(
            fs::read_to_string(layout.staging(&new).join("f"))?,
            hash('b').as_str()
        );
        assert!(!layout.claim_spare(&new)?, "claimed once");
        // Without a spare to keep, a leftover `.spare` is junk.
        fs::create_dir(layout.spare())?;
        let removed = layout.remove_stale(Duration::ZERO, false)?;
        assert!(removed.contains(&SPARE.to_string()), "{removed:?}");
        assert!(!layout.spare().exists());
        Ok(())
    }

    #[test]
    fn claim_retired_moves_only_an_unpublished_stale_worktree(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let layout = Layout::new(dir.path().to_path_buf(), dir.path().join("site"));
        layout.prepare()?;
        for h in [hash('a'), hash('b')] {
            fs::create_dir_all(layout.worktree(&h))?;
            fs::write(layout.worktree(&h).join("f"), h.as_str())?;
        }
        layout.publish(&hash('a'))?;
        let new = hash('c');
        // Published: never claimed.
        assert!(!layout.claim_retired(&hash('a'), &new, Duration::ZERO)?);
        // Retired too recently for the stale timeout: kept for its readers.
        layout.mark_retired(&hash('b'));
        assert!(!layout.claim_retired(&hash('b'), &new, Duration::from_secs(3600))?);
        assert!(layout.claim_retired(&hash('b'), &new, Duration::ZERO)?);
        assert!(!layout.worktree(&hash('b')).exists());
        assert_eq!(
            fs::read_to_string(layout.staging(&new).join("f"))?,
            hash('b').as_str()
        );
        // Gone: nothing to claim.
        assert!(!layout.claim_retired(&hash('b'), &new, Duration::ZERO)?);
        Ok(())
    }

    #[test]
    fn prepare_removes_leftover_staging_dirs() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let layout = Layout::new(dir.path().to_path_buf(), dir.path().join("site"));
        fs::create_dir_all(layout.staging(&hash('d')).join("sub"))?;
        layout.prepare()?;
        assert!(!layout.staging(&hash('d')).exists());
        Ok(())
    }
}
