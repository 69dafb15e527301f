//! Where things go on disk: `--root` made absolute, `--link` and its default,
//! and the state files (`--touch-file`, `--error-file`), which must not
//! clash with the link, the root or its `.git`/`.worktrees` directories,
//! also once symlinks on the way are resolved.

use crate::cli::Flag;
use std::path::{Component, Path, PathBuf};

use super::Checker;

/// The default `--link`: the last path element of the repo (trailing `/`
/// removed, a trailing `.git` kept). For URLs with a scheme only the path is
/// considered; for `user@host:path` the part after the last `/` or `:`.
pub fn default_link_name(repo: &str) -> Option<String> {
    let trimmed = repo.trim_end_matches('/');
    let name = match trimmed.find("://") {
        Some(i) => {
            let after_scheme = &trimmed[i + 3..];
            let path = &after_scheme[after_scheme.find('/')?..];
            path.rsplit('/').next()?
        }
        None => trimmed.rsplit(['/', ':']).next()?,
    };
    (!name.is_empty() && name != "." && name != "..").then(|| name.to_string())
}

/// Makes `p` absolute against the current directory and resolves symlinks in
/// the longest prefix that exists; the rest is normalised lexically.
/// A file read again at every sync, made absolute without resolving
/// symlinks: in a Kubernetes Secret volume the file is a symlink into a
/// timestamped directory that every update of the Secret replaces.
pub(super) fn absolute_reread(p: &Path) -> std::io::Result<PathBuf> {
    std::path::absolute(p)
}

pub(super) fn absolutize(p: &Path) -> std::io::Result<PathBuf> {
    let abs = std::path::absolute(p)?;
    for existing in abs.ancestors() {
        if let Ok(canonical) = existing.canonicalize() {
            let rest = abs.strip_prefix(existing).unwrap_or(Path::new(""));
            return Ok(clean_join(&canonical, rest));
        }
    }
    Ok(clean_join(Path::new("/"), &abs))
}

/// Why a touch or error file at `path` would damage the root's layout
/// (`None` when it would not). `path` and `link` are absolute.
pub(super) fn state_file_clash(path: &Path, root: &Path, link: Option<&Path>) -> Option<String> {
    let roots = [root.to_path_buf(), resolve_lenient(root)];
    let links = link
        .into_iter()
        .flat_map(|l| [l.to_path_buf(), resolve_lenient_parent(l)]);
    if roots.iter().any(|r| r.starts_with(path)) {
        return Some("is --root or one of its parent directories".into());
    }
    for link in links {
        if path == link {
            return Some("is the published link (--link)".into());
        }
        if path.starts_with(&link) {
            return Some(
                "is inside the published link (--link), a tree replaced at every sync".into(),
            );
        }
    }
    for dir in [".git", ".worktrees"] {
        if roots.iter().any(|r| path.starts_with(r.join(dir))) {
            return Some(format!("is inside --root's {dir} directory"));
        }
    }
    None
}

/// `p` with every symlink on the way resolved, also those whose target does
/// not exist yet (unlike `canonicalize`, which needs the whole path): what
/// the path will reach when the sidecar writes it. Lexical `..` after a
/// resolved component applies to the target, as the kernel does.
pub(super) fn resolve_lenient(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    let mut todo: Vec<std::ffi::OsString> = rev_components(p);
    let mut hops = 0;
    while let Some(comp) = todo.pop() {
        match comp.to_str() {
            Some(".") => continue,
            Some("..") => {
                out.pop();
                continue;
            }
            _ => {}
        }
        let next = out.join(&comp);
        let target = std::fs::symlink_metadata(&next)
            .ok()
            .filter(|m| m.file_type().is_symlink())
            .and_then(|_| std::fs::read_link(&next).ok());
        match target {
            // 40 as the kernel's limit: a loop ends up as written.
            Some(target) if hops < 40 => {
                hops += 1;
                if target.is_absolute() {
                    out = PathBuf::from("/");
                }
                todo.extend(rev_components(&target));
            }
            _ => out = next,
        }
    }
    out
}

/// `p`'s parent resolved, its last name kept: where a symlink at `p` lives.
pub(super) fn resolve_lenient_parent(p: &Path) -> PathBuf {
    match (p.parent(), p.file_name()) {
        (Some(parent), Some(name)) => resolve_lenient(parent).join(name),
        _ => p.to_path_buf(),
    }
}

/// The components of `p` other than the root, last first (a stack).
pub(super) fn rev_components(p: &Path) -> Vec<std::ffi::OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::CurDir => Some(".".into()),
            Component::ParentDir => Some("..".into()),
            Component::RootDir | Component::Prefix(_) => None,
        })
        .rev()
        .collect()
}

pub(super) use crate::fsutil::clean_join;

/// The first of `dir` and its parents that exists, if nothing can be
/// created in it, and why: not a directory (nor a link to one), on a
/// read-only filesystem, or not writable by this user.
fn not_a_directory_on_the_way(dir: &Path) -> Option<(PathBuf, String)> {
    let existing = dir
        .ancestors()
        .find(|d| std::fs::symlink_metadata(d).is_ok())?;
    let dangling = std::fs::symlink_metadata(existing).is_ok_and(|m| m.is_symlink())
        && std::fs::metadata(existing).is_err();
    let why = match (existing.is_dir(), dangling) {
        (true, _) => not_writable(existing)?,
        (false, true) => "is a symbolic link to nothing".to_string(),
        (false, false) => "is not a directory".to_string(),
    };
    Some((existing.to_path_buf(), why))
}

/// Why this process cannot create entries in the directory `dir`, if so.
fn not_writable(dir: &Path) -> Option<String> {
    use nix::unistd::AccessFlags;
    match nix::unistd::access(dir, AccessFlags::W_OK | AccessFlags::X_OK) {
        Ok(()) => None,
        Err(nix::errno::Errno::EROFS) => Some("is on a read-only filesystem".to_string()),
        Err(e) => Some(format!(
            "is not writable by uid {} ({})",
            nix::unistd::geteuid(),
            std::io::Error::from(e)
        )),
    }
}

impl<'a> Checker<'a> {
    pub(super) fn link(&mut self, id: Flag, root: &Path, raw: &str) -> Option<PathBuf> {
        let link = clean_join(root, Path::new(raw));
        let inside = |dir: &str| link.starts_with(root.join(dir));
        if root.starts_with(&link) {
            self.fail(
                id,
                format!("{raw:?} must not be --root or one of its parent directories"),
            );
            None
        } else if inside(".git") || inside(".worktrees") {
            self.fail(
                id,
                format!("{raw:?} must not be inside --root's .git or .worktrees directory"),
            );
            None
        } else if link == root.join(crate::rootlock::FILE_NAME) {
            self.fail(id, format!("{raw:?} is the root's lock file"));
            None
        } else if std::fs::symlink_metadata(&link).is_ok_and(|m| m.is_dir()) {
            // Said as the publish step says it, when it finds one later.
            let refused = crate::publish::Error::LinkIsADirectory { link };
            self.fail(id, refused.to_string());
            None
        } else if let Some((blocker, why)) = link
            .parent()
            .and_then(not_a_directory_on_the_way)
            // --root itself or above: its own check says it better.
            .filter(|(b, _)| !root.starts_with(b))
        {
            // Found now, not after the first fetch and checkout.
            self.fail(
                id,
                format!(
                    "{raw:?}: {} {why}, so the link cannot be made there; point --link \
                     elsewhere, or make that directory writable for this user",
                    blocker.display()
                ),
            );
            None
        } else {
            Some(link)
        }
    }

    /// `--touch-file` / `--error-file`: joined onto root when relative. Both
    /// are written and removed by the sidecar, so neither may be (or lead
    /// through) the link, root or a parent of it, or anything in `.git` or
    /// `.worktrees`, checked both as written and with symlinks resolved.
    pub(super) fn file_under_root(
        &mut self,
        id: Flag,
        root: Option<&Path>,
        link: Option<&Path>,
    ) -> Option<PathBuf> {
        let raw = self.raw(id)?;
        let root = root?;
        let path = clean_join(root, Path::new(raw));
        let resolved = resolve_lenient(&path);
        let problem = [path.as_path(), resolved.as_path()]
            .into_iter()
            .find_map(|p| state_file_clash(p, root, link));
        match problem {
            Some(why) => {
                self.fail(
                    id,
                    format!(
                        "{raw:?} {why}; git-sidecar writes and deletes this file, so \
                         choose a path of its own, e.g. outside --root or directly in it \
                         under a name other than the link's"
                    ),
                );
                None
            }
            None => Some(path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::super::*;
    use super::*;

    #[test]
    fn link_default_from_various_urls() {
        for (repo, link) in [
            ("https://github.com/org/repo.git", "repo.git"),
            ("https://github.com/org/repo", "repo"),
            ("https://github.com/org/repo/", "repo"),
            ("https://user:pw@host:8443/a/b/c", "c"),
            ("ssh://git@host:22/org/repo.git", "repo.git"),
            ("git@github.com:org/repo.git", "repo.git"),
            ("git@github.com:repo.git", "repo.git"),
            ("file:///tmp/repos/site", "site"),
            ("/tmp/repos/site/", "site"),
            ("site", "site"),
        ] {
            assert_eq!(default_link_name(repo).as_deref(), Some(link), "{repo}");
        }
        for repo in ["https://host", "https://host/", "file:///", "/", "x:.."] {
            assert_eq!(default_link_name(repo), None, "{repo}");
        }
        let p = problems(&["--repo=https://host", "--root=/r"], &[]);
        assert!(
            p[0].starts_with("--link (GITSYNC_LINK): cannot derive a default"),
            "{p:?}"
        );
        let c = config(&["--repo=https://host", "--root=/r", "--link=x"], &[]);
        assert_eq!(c.link, PathBuf::from("/r/x"));
    }

    #[test]
    fn a_link_below_a_file_is_refused_at_start_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("afile");
        std::fs::write(&file, "x").expect("write");
        let link = file.join("deep/site");
        let p = problems(&with(&["--link", &link.to_string_lossy()]), &[]);
        assert!(
            p.iter().any(|l| l.starts_with("--link (GITSYNC_LINK)")
                && l.contains(&format!("{} is not a directory", file.display()))),
            "{p:?}"
        );
        // A directory that does not exist yet is made when publishing.
        let fine = dir.path().join("nodir/sub/site");
        let c = config(&with(&["--link", &fine.to_string_lossy()]), &[]);
        assert_eq!(c.link, fine);
    }

    #[test]
    fn link_must_not_clobber_root() {
        for bad in [
            ".",
            "/srv/git",
            "/srv",
            "..",
            "sub/..",
            ".git",
            ".worktrees/abc",
            ".git-sidecar.lock",
            "/",
        ] {
            let arg = format!("--link={bad}");
            let p = problems(&with(&[&arg]), &[]);
            assert_eq!(p.len(), 1, "{bad}: {p:?}");
            assert!(p[0].starts_with("--link (GITSYNC_LINK): "), "{p:?}");
        }
        let c = config(&with(&["--link=../published/site"]), &[]);
        assert_eq!(c.link, PathBuf::from("/srv/published/site"));
        let dir = tempfile::tempdir().expect("tempdir");
        let arg = format!("--link={}", dir.path().display());
        let p = problems(&with(&[&arg]), &[]);
        assert!(
            p.len() == 1 && p[0].contains("is a directory, not a symlink"),
            "{p:?}"
        );
    }

    #[test]
    fn touch_and_error_files_must_not_clobber_the_layout() {
        // base(): root /srv/git, link /srv/git/site.git.
        for bad in [
            "site.git",
            "/srv/git/site.git",
            "site.git/error.json",
            "./site.git/sub/../x",
            ".git/config",
            ".git",
            "/srv/git/.worktrees/abc/x",
            ".worktrees",
            ".",
            "/srv",
            "..",
            "/",
        ] {
            for id in ["error-file", "touch-file"] {
                let arg = format!("--{id}={bad}");
                let p = problems(&with(&[&arg]), &[]);
                assert_eq!(p.len(), 1, "{arg}: {p:?}");
                assert!(p[0].starts_with(&format!("--{id} (GITSYNC_")), "{p:?}");
                assert!(p[0].contains("choose a path of its own"), "{p:?}");
            }
        }
        let p = problems(&with(&["--error-file=site.git"]), &[]);
        assert!(
            p[0].contains("\"site.git\" is the published link (--link)"),
            "{p:?}"
        );
        let p = problems(&with(&["--error-file=.git/config"]), &[]);
        assert!(p[0].contains("inside --root's .git"), "{p:?}");
        // An absolute link elsewhere is guarded too; other paths are fine.
        let p = problems(
            &with(&["--link=/pub/site", "--touch-file=/pub/site/t"]),
            &[],
        );
        assert!(p[0].contains("inside the published link"), "{p:?}");
        let c = config(
            &with(&[
                "--error-file=/var/err.json",
                "--touch-file=site.git.touched",
            ]),
            &[],
        );
        assert_eq!(c.error_file, Some(PathBuf::from("/var/err.json")));
        assert_eq!(
            c.touch_file,
            Some(PathBuf::from("/srv/git/site.git.touched"))
        );
    }

    #[test]
    fn touch_and_error_files_are_checked_with_symlinks_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        let root = base.join("root");
        std::fs::create_dir_all(root.join(".git")).unwrap();
        // An innocent-looking absolute path that leads into .git, and one
        // through the link whose target does not exist yet.
        std::os::unix::fs::symlink(root.join(".git"), base.join("state")).unwrap();
        std::os::unix::fs::symlink(root.join("site"), base.join("pub")).unwrap();
        let root_arg = format!("--root={}", root.display());
        let into_git = format!("--error-file={}", base.join("state/config").display());
        let into_link = format!("--touch-file={}", base.join("pub/x").display());
        let args = ["--repo=https://h/site", &root_arg, &into_git, &into_link];
        let p = problems(&args, &[]);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("inside the published link"), "{p:?}");
        assert!(p[1].contains("inside --root's .git"), "{p:?}");
        // Both are reported together with an unrelated mistake.
        let p = problems(&[&args[..], &["--period=abc"]].concat(), &[]);
        assert_eq!(p.len(), 3, "{p:?}");
        // Resolved paths that land elsewhere are accepted.
        let fine = format!("--error-file={}", base.join("state2/x").display());
        config(&["--repo=https://h/site", &root_arg, &fine], &[]);
    }

    #[test]
    fn root_is_made_absolute_and_files_join_onto_it() {
        let cwd = std::env::current_dir().unwrap().canonicalize().unwrap();
        let c = config(
            &[
                "--repo=https://h/r",
                "--root=some/dir",
                "--touch-file=t",
                "--error-file=../e",
            ],
            &[],
        );
        assert_eq!(c.root, cwd.join("some/dir"));
        assert_eq!(c.link, cwd.join("some/dir/r"));
        assert_eq!(c.touch_file, Some(cwd.join("some/dir/t")));
        assert_eq!(c.error_file, Some(cwd.join("some/e")));
    }

    #[test]
    fn existing_root_symlinks_are_resolved() {
        let dir = std::env::temp_dir().join(format!("clicfg-{}", std::process::id()));
        let real = dir.join("real");
        std::fs::create_dir_all(&real).unwrap();
        let link = dir.join("alias");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let root_arg = format!("--root={}", link.join("sub").display());
        let c = config(&["--repo=https://h/r", &root_arg], &[]);
        assert_eq!(c.root, real.canonicalize().unwrap().join("sub"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
