//! Submodules, checked out in-process: gix 0.90 leaves an empty directory
//! for a gitlink. For each gitlink of a new worktree the `.gitmodules` of the
//! same commit (read from its tree, never from disk) gives the submodule's
//! name and URL; a relative URL (`./x`, `../x`) resolves against the
//! superproject's URL as git resolves it. The recorded commit is fetched by
//! SHA into the submodule's own object store, with `--depth`, through
//! [`fetch`] (same transports, budget and credentials), and checked out into
//! the gitlink's directory with the top level's safety checks; nested
//! submodules follow for `--submodules=recursive`.
//!
//! Layout, all under `<root>/.git`, so nothing of it is ever served:
//! - `<root>/.git/modules/<name>/`: a bare repository per submodule name (a
//!   nested one in `<its parent's store>/modules/<name>/`, as git nests
//!   them). The name is encoded into a single path component.
//! - `<admin>/submodules/<path>/`: per worktree (`<admin>` is
//!   `.git/worktrees/<sha>`) and per submodule (its path from the worktree's
//!   root, encoded): `HEAD` (the commit checked out), `store` (the store,
//!   relative to `<root>/.git`) and `index` (stat data of the checkout). The
//!   start-up check verifies submodule content against it, and a rewritten
//!   worktree keeps the submodules whose commit did not change and whose
//!   files are exactly as recorded (one written into since is checked out
//!   afresh).
//!
//! No `.git` file is written into a submodule directory: a web server has
//! no use for it, and without it `git status` in the worktree stays clean
//! (git takes a gitlink without a repository as unchanged).

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use gix::bstr::{BStr, BString, ByteSlice, ByteVec};
use gix::ObjectId;

use super::transport::Budget;
use super::{compact, fetch, store, worktree};
use crate::git::Credentials;
use crate::types::{redact_url, GcMode, SubmoduleMode, SymlinkPolicy};

mod links;

/// Per-worktree records, inside the worktree's admin directory.
const RECORDS: &str = "submodules";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `.gitmodules` is missing or wrong for this gitlink, or its name or URL is refused.
    #[error("submodule {path}: {message}")]
    Config { path: String, message: String },
    #[error("submodule {path} ({url}): could not fetch commit {commit}: {source}{hint}")]
    Fetch {
        path: String,
        url: String,
        commit: ObjectId,
        source: Box<fetch::Error>,
        hint: &'static str,
    },
    #[error("submodule {path} ({url}): {source}")]
    Checkout {
        path: String,
        url: String,
        source: Box<worktree::Error>,
    },
    #[error("submodule {path}: object store {store}: {message}")]
    Store {
        path: String,
        store: PathBuf,
        message: String,
    },
    #[error(
        "commit {commit} with its submodules has a symbolic link that points outside the \
         worktree: {path} -> {target}{more}; refusing to publish it (--escaping-symlinks=skip \
         leaves such links out, =allow writes them)"
    )]
    EscapingSymlink {
        commit: ObjectId,
        path: String,
        target: String,
        more: String,
    },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl Error {
    /// True when the sync stopped because of shutdown.
    pub fn is_interrupted(&self) -> bool {
        match self {
            Error::Fetch { source, .. } => matches!(**source, fetch::Error::Interrupted),
            Error::Checkout { source, .. } => matches!(**source, worktree::Error::Interrupted),
            _ => false,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What the engine decides for every submodule.
pub struct Settings<'a> {
    pub mode: SubmoduleMode,
    /// `--depth` for the submodules' fetches (0 = full history).
    pub depth: u32,
    pub symlinks: SymlinkPolicy,
    /// `--repo` without credentials: relative submodule URLs resolve against it.
    pub superproject_url: &'a str,
    /// The credentials for a submodule's URL (an error when they cannot be had).
    pub credentials_for: &'a dyn Fn(&super::Remote) -> Result<Option<Credentials>, String>,
    /// Proxy, CA and headers for a submodule's http(s) URL.
    pub http_settings_for: &'a dyn Fn(&super::Remote) -> Result<crate::git::HttpSettings, String>,
    /// How to reach ssh remotes (the same keys and known_hosts as `--repo`).
    pub ssh: &'a super::ssh::Options,
    /// `--git-config`, for the `git upload-pack` of a file:// submodule.
    pub git_config: &'a super::cli_config::GitConfigPairs,
}

/// Where a worktree being built lives.
pub struct Target<'a> {
    /// `<root>/.git`: the top-level stores go in its `modules/`.
    pub git_dir: &'a Path,
    /// The worktree's directory (its staging path while being built).
    pub worktree: &'a Path,
    /// `<root>/.git/worktrees/<sha>`, holding the worktree's `index`.
    pub admin: &'a Path,
}

/// What [`populate`] did.
#[derive(Debug, Default)]
pub struct Populated {
    /// Every store in use by the worktree and the commit it must keep.
    pub stores: super::SubmoduleStores,
    /// Submodules checked out now.
    pub written: usize,
    /// Submodules kept from the retired worktree.
    pub kept: usize,
    /// Escaping symlinks removed under `--escaping-symlinks=skip`.
    pub skipped_links: Vec<String>,
}

/// One level of the tree of submodules: the superproject or a submodule.
struct Level<'r> {
    repo: &'r gix::Repository,
    commit: ObjectId,
    index: gix::index::File,
    /// The level's path from the worktree's root (empty at the top).
    prefix: BString,
    /// The level's remote URL, which its relative submodule URLs resolve against.
    url: String,
    /// The directory whose `modules/` holds this level's submodule stores.
    store_parent: PathBuf,
    /// Levels of submodules still to check out below this one.
    depth_left: usize,
}

/// Checks out the submodules of the worktree at `target` (already checked
/// out, its index written), keeping those whose record says they are right.
pub fn populate(
    repo: &gix::Repository,
    commit: ObjectId,
    target: &Target<'_>,
    settings: &Settings<'_>,
    budget: &Budget,
    written: Option<gix::index::File>,
) -> Result<Populated, Error> {
    let index_path = target.admin.join("index");
    let index = written
        .or_else(|| worktree::read_index(&index_path))
        .ok_or_else(|| Error::Io {
            path: index_path.clone(),
            source: io::Error::other("cannot read the worktree's index"),
        })?;
    let top = Level {
        repo,
        commit,
        index,
        prefix: BString::default(),
        url: settings.superproject_url.to_string(),
        store_parent: target.git_dir.to_path_buf(),
        depth_left: settings.mode.levels(),
    };
    let mut walk = Walk {
        target,
        settings,
        budget,
        threads: store::threads(repo),
        done: Populated::default(),
        visited: HashSet::new(),
    };
    walk.level(&top)?;
    prune_records(target.admin, &walk.visited).map_err(io_err(target.admin))?;
    let mut done = walk.done;
    // Without submodules the top level's own check (before writing) was complete.
    if !walk.visited.is_empty() {
        done.skipped_links =
            links::check(target, commit, top.index, &walk.visited, settings.symlinks)?;
    }
    if !done.skipped_links.is_empty() {
        tracing::warn!(
            %commit,
            links = ?crate::logging::json(&done.skipped_links),
            "left out symlinks that point outside the worktree with its submodules \
             (--escaping-symlinks=skip)"
        );
    }
    Ok(done)
}

/// State of one [`populate`].
struct Walk<'a> {
    target: &'a Target<'a>,
    settings: &'a Settings<'a>,
    budget: &'a Budget,
    /// The superproject's threads for pack indexing and checkout.
    threads: usize,
    done: Populated,
    /// Record keys (submodule paths from the worktree's root) still valid.
    visited: HashSet<BString>,
}

/// One submodule as `.gitmodules` describes it.
struct Submodule {
    /// Path from the worktree's root.
    full: BString,
    commit: ObjectId,
    url: String,
    store: PathBuf,
    /// `update = none` in `.gitmodules`: git leaves it out, so do we.
    skip: bool,
}

impl Walk<'_> {
    fn level(&mut self, level: &Level<'_>) -> Result<(), Error> {
        let links = gitlinks(&level.index);
        if level.depth_left == 0 {
            return self.leave_empty(level, &links);
        }
        if links.is_empty() {
            return Ok(());
        }
        let modules = read_gitmodules(level.repo, level.commit);
        for (path, commit) in links {
            let sub = describe(
                modules.as_ref(),
                level,
                path.as_ref(),
                commit,
                self.settings,
            )?;
            self.visited.insert(sub.full.clone());
            let dir = self.prepare_dir(&sub)?;
            let record_dir = record_dir(self.target.admin, sub.full.as_ref());
            if still_right(self.target, &sub, level.depth_left, self.threads) {
                self.keep(&sub)?;
                continue;
            }
            clear(&dir, self.target.admin, sub.full.as_ref())?;
            if sub.skip {
                write_record(&record_dir, commit, None, self.relative_store(&sub.store))?;
                continue;
            }
            let child = self.check_out(&sub, &dir, &record_dir)?;
            self.done.written += 1;
            self.done.stores.0.push((sub.store.clone(), commit));
            let child_level = Level {
                repo: &child.0,
                commit,
                index: child.1,
                prefix: sub.full.clone(),
                url: sub.url.clone(),
                store_parent: sub.store.clone(),
                depth_left: level.depth_left - 1,
            };
            self.level(&child_level)?;
        }
        Ok(())
    }

    /// Below the last level checked out, a gitlink's directory stays empty
    /// (as git leaves it): whatever was written into it goes.
    fn leave_empty(&self, level: &Level<'_>, links: &[(BString, ObjectId)]) -> Result<(), Error> {
        for (path, _) in links {
            let full = join_path(level.prefix.as_ref(), path.as_ref());
            let Some(dir) = to_path(full.as_ref()).map(|p| self.target.worktree.join(p)) else {
                continue;
            };
            if fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) && !is_empty_dir(&dir) {
                clear(&dir, self.target.admin, full.as_ref())?;
            }
        }
        Ok(())
    }

    /// The submodule's directory in the worktree, made sure to be a real
    /// directory inside it (no symlink on the way).
    fn prepare_dir(&self, sub: &Submodule) -> Result<PathBuf, Error> {
        let relative = to_path(sub.full.as_ref())
            .ok_or_else(|| config_err(sub, "the path is not valid on this system"))?;
        let mut dir = self.target.worktree.to_path_buf();
        for part in relative.components() {
            let std::path::Component::Normal(name) = part else {
                return Err(config_err(sub, "the path is not a plain relative path"));
            };
            dir.push(name);
            match fs::symlink_metadata(&dir) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => return Err(config_err(sub, "the path leads through a non-directory")),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&dir).map_err(io_err(&dir))?
                }
                Err(e) => return Err(io_err(&dir)(e)),
            }
        }
        Ok(dir)
    }

    /// An unchanged submodule: its directory and everything below it stay,
    /// and so do the records below it.
    fn keep(&mut self, sub: &Submodule) -> Result<(), Error> {
        self.done.kept += 1;
        for (key, record) in records_at_or_below(self.target.admin, sub.full.as_ref()) {
            if !record.skip {
                let store = self.target.git_dir.join(&record.store);
                self.done.stores.0.push((store, record.commit));
            }
            self.visited.insert(key);
        }
        Ok(())
    }

    fn relative_store<'p>(&self, store: &'p Path) -> &'p Path {
        store.strip_prefix(self.target.git_dir).unwrap_or(store)
    }

    /// Fetches (if needed) and checks out the submodule into `dir` (empty).
    fn check_out(
        &self,
        sub: &Submodule,
        dir: &Path,
        record_dir: &Path,
    ) -> Result<(gix::Repository, gix::index::File), Error> {
        let repo = open_store(sub, self.threads)?;
        if !repo.has_object(sub.commit) {
            self.fetch(&repo, sub)?;
        }
        let checkout_err = |source| Error::Checkout {
            path: sub.full.to_string(),
            url: redact_url(&sub.url),
            source: Box::new(source),
        };
        // Symlinks are judged by [`links::check`] once every level is on
        // disk, against the whole worktree: `../shared` may be fine, and
        // only the whole tree shows links that combine across levels.
        let planned =
            worktree::plan(&repo, sub.commit, SymlinkPolicy::Allow).map_err(checkout_err)?;
        let (_, mut index) =
            worktree::checkout_into(&repo, planned, dir, self.budget).map_err(checkout_err)?;
        let store = self.relative_store(&sub.store);
        write_record(record_dir, sub.commit, Some(&mut index), store)?;
        Ok((repo, index))
    }

    fn fetch(&self, repo: &gix::Repository, sub: &Submodule) -> Result<(), Error> {
        let fetch_err = |source: fetch::Error| {
            let hint = hint_for(&source, self.settings.depth);
            Error::Fetch {
                path: sub.full.to_string(),
                url: redact_url(&sub.url),
                commit: sub.commit,
                source: Box::new(source),
                hint,
            }
        };
        let url = super::Remote::parse(&sub.url)
            .map_err(|e| fetch_err(fetch::Error::Url(e.to_string())))?;
        let credentials = (self.settings.credentials_for)(&url).map_err(|message| {
            config_err(
                sub,
                &format!("credentials for {}: {message}", redact_url(&sub.url)),
            )
        })?;
        let http = (self.settings.http_settings_for)(&url).map_err(|message| {
            config_err(
                sub,
                &format!("http settings for {}: {message}", redact_url(&sub.url)),
            )
        })?;
        let wanted = sub.commit.to_string();
        let opts = |git_ref| fetch::Options {
            url: &url,
            git_ref,
            depth: self.settings.depth,
            have: None,
            force: false,
            credentials: credentials.as_ref(),
            ssh: self.settings.ssh,
            http: &http,
            git_config: self.settings.git_config,
            // Submodule stores stay complete: their checkout has no backfill.
            filter: None,
            on_change: None,
        };
        let pack_bytes = match fetch::fetch(repo, &opts(&wanted), self.budget) {
            Ok(outcome) => outcome.pack_bytes(),
            // A v0 server sends only ref tips by SHA (sshd in its default
            // configuration passes no GIT_PROTOCOL). With the whole history
            // wanted, git's `submodule update` finds the commit among the
            // branches it fetched: so do we.
            Err(e) if self.settings.depth == 0 && refuses_by_sha(&e) => {
                match self.find_in_branches(repo, sub, &opts(&wanted)) {
                    Ok(Some(pack_bytes)) => pack_bytes,
                    Ok(None) => return Err(fetch_err(e)),
                    // What failed is the fetch of the branches, not the SHA.
                    Err(fallback) => return Err(fetch_err(fallback)),
                }
            }
            Err(e) => return Err(fetch_err(e)),
        };
        tracing::info!(submodule = %sub.full, commit = %sub.commit, pack_bytes, "fetched submodule");
        Ok(())
    }

    /// Fetches the submodule's default branch in full, then, if the commit
    /// is not in it, every branch: the packs' size, `None` if the commit is
    /// in none, or the error of the fetch of every branch.
    fn find_in_branches(
        &self,
        repo: &gix::Repository,
        sub: &Submodule,
        opts: &fetch::Options<'_>,
    ) -> Result<Option<u64>, fetch::Error> {
        tracing::info!(
            submodule = %sub.full,
            commit = %sub.commit,
            "the server sends no commit by SHA that is not a ref's tip; fetching the submodule's branches in full to find it"
        );
        let default_branch = match fetch::fetch(
            repo,
            &fetch::Options {
                git_ref: "HEAD",
                ..*opts
            },
            self.budget,
        ) {
            Ok(outcome) => outcome.pack_bytes(),
            // An unborn or odd HEAD: every branch is fetched next anyway.
            Err(e) => {
                tracing::debug!(submodule = %sub.full, error = %e, "fetching the default branch failed");
                0
            }
        };
        if repo.has_object(sub.commit) {
            return Ok(Some(default_branch));
        }
        let bytes = fetch::fetch_branches(repo, opts, self.budget)?;
        Ok(repo
            .has_object(sub.commit)
            .then_some(default_branch + bytes))
    }
}

/// Whether the server refused to send a commit by its SHA.
fn refuses_by_sha(e: &fetch::Error) -> bool {
    let text = e.to_string();
    text.contains("not our ref") || text.contains("unadvertised object")
}

/// Hints for the errors a fetch by SHA meets (at `depth`).
fn hint_for(e: &fetch::Error, depth: u32) -> &'static str {
    match (refuses_by_sha(e), depth) {
        (false, _) => "",
        (true, 0) => {
            "; the server does not have this commit or refuses to send it by SHA, and it is \
             in none of the submodule's branches either (with git protocol v2 any reachable \
             commit can be fetched; v0/v1 servers need uploadpack.allowReachableSHA1InWant): \
             was the submodule commit pushed?"
        }
        (true, _) => {
            "; the server does not have this commit or refuses to send it by SHA (with git \
             protocol v2 any reachable commit can be fetched; v0/v1 servers need \
             uploadpack.allowReachableSHA1InWant, or --depth 0 to find it in the submodule's \
             branches): was the submodule commit pushed?"
        }
    }
}

fn config_err(sub: &Submodule, message: &str) -> Error {
    Error::Config {
        path: sub.full.to_string(),
        message: message.to_string(),
    }
}

/// Name, URL and store of the submodule at `path` of `level`.
fn describe(
    modules: Option<&Result<gix::submodule::File, String>>,
    level: &Level<'_>,
    path: &BStr,
    commit: ObjectId,
    settings: &Settings<'_>,
) -> Result<Submodule, Error> {
    let full = join_path(level.prefix.as_ref(), path);
    let err = |message: String| Error::Config {
        path: full.to_string(),
        message,
    };
    let modules = match modules {
        None => return Err(err(format!("commit {} has no .gitmodules", level.commit))),
        Some(Err(message)) => {
            return Err(err(format!(".gitmodules of {}: {message}", level.commit)))
        }
        Some(Ok(m)) => m,
    };
    let name = modules.name_by_path(path).ok_or_else(|| {
        err(format!(
            ".gitmodules of commit {} has no submodule with path {path:?}",
            level.commit
        ))
    })?;
    gix::validate::submodule::name(name).map_err(|e| {
        err(format!(
            "refusing the submodule name {name:?} (it would leave .git/modules): {e}"
        ))
    })?;
    let raw_url = modules
        .config()
        .string_by("submodule", Some(name), "url")
        .filter(|u| !u.is_empty())
        .ok_or_else(|| err(format!("submodule {name:?} has no url in .gitmodules")))?;
    let url = resolve_url(&raw_url.to_str_lossy(), &level.url).map_err(&err)?;
    check_scheme(&url, settings.superproject_url).map_err(&err)?;
    let skip = matches!(
        modules.update(name),
        Ok(Some(gix::submodule::config::Update::None))
    );
    let store = level
        .store_parent
        .join("modules")
        .join(encode_component(name.as_bytes()));
    Ok(Submodule {
        full,
        commit,
        url,
        store,
        skip,
    })
}

/// A relative submodule URL resolved against its superproject's URL; any
/// other URL as it is.
fn resolve_url(raw: &str, base: &str) -> Result<String, String> {
    if raw.starts_with("./") || raw.starts_with("../") {
        relative_url(base, raw)
    } else {
        Ok(raw.to_string())
    }
}

/// A local repository (file:// or a path) is only fetched from when
/// `--repo` is one too: a repository from a server must not be able to
/// publish any repository of this machine (git refuses file:// submodules
/// by default for the same reason).
fn check_scheme(url: &str, superproject: &str) -> Result<(), String> {
    let is_local = |u: &str| {
        super::parse_url(u)
            .map(|u| u.scheme == gix::url::Scheme::File)
            .unwrap_or(false)
    };
    if is_local(url) && !is_local(superproject) {
        return Err(format!(
            "refusing the local repository {}: a submodule may use file:// or a local path \
             only when --repo is a local repository too",
            redact_url(url)
        ));
    }
    Ok(())
}

/// git's `relative_url()` (builtin/submodule--helper.c): each leading `../`
/// strips one component off `remote` (at a `/`, else at the `:` of an
/// scp-like URL), `./` is dropped, and the rest is appended.
pub fn relative_url(remote: &str, url: &str) -> Result<String, String> {
    let mut remote = remote.strip_suffix('/').unwrap_or(remote).to_string();
    let is_relative = is_local_not_ssh(&remote) && !remote.starts_with('/');
    if is_relative && !remote.starts_with("./") && !remote.starts_with("../") {
        remote = format!("./{remote}");
    }
    let mut rest = url;
    let mut colon = false;
    loop {
        if let Some(r) = rest.strip_prefix("../") {
            rest = r;
            colon |= chop_last_dir(&mut remote, is_relative)?;
        } else if let Some(r) = rest.strip_prefix("./") {
            rest = r;
        } else {
            break;
        }
    }
    let mut out = format!("{remote}{}{rest}", if colon { ":" } else { "/" });
    if rest.ends_with('/') {
        out.pop();
    }
    Ok(match out.strip_prefix("./") {
        Some(stripped) => stripped.to_string(),
        None => out,
    })
}

/// git's `url_is_local_not_ssh()`: no `scheme://` and not `host:path`.
fn is_local_not_ssh(url: &str) -> bool {
    match (url.find(':'), url.find('/')) {
        (None, _) => true,
        (Some(colon), Some(slash)) => slash < colon,
        (Some(_), None) => false,
    }
}

/// Strips the last component; true when it was cut at a `:` (scp-like).
fn chop_last_dir(remote: &mut String, is_relative: bool) -> Result<bool, String> {
    if let Some(i) = remote.rfind('/') {
        remote.truncate(i);
        return Ok(false);
    }
    if let Some(i) = remote.rfind(':') {
        remote.truncate(i);
        return Ok(true);
    }
    if is_relative || remote == "." {
        return Err(format!("cannot strip one component off url {remote:?}"));
    }
    *remote = ".".to_string();
    Ok(false)
}

/// The `.gitmodules` of `commit`'s tree; `None` when there is none.
fn read_gitmodules(
    repo: &gix::Repository,
    commit: ObjectId,
) -> Option<Result<gix::submodule::File, String>> {
    let tree = match repo.find_commit(commit).map(|c| c.tree()) {
        Ok(Ok(tree)) => tree,
        Ok(Err(e)) => return Some(Err(e.to_string())),
        Err(e) => return Some(Err(e.to_string())),
    };
    let entry = tree.find_entry(".gitmodules")?;
    if !entry.mode().is_blob() {
        return Some(Err("is not a regular file".into()));
    }
    let id = entry.oid().to_owned();
    Some((|| {
        let blob = repo.find_object(id).map_err(|e| e.to_string())?;
        let config = gix::config::File::new(gix::config::file::Metadata::api());
        gix::submodule::File::from_bytes(&blob.data, None, &config).map_err(|e| e.to_string())
    })())
}

/// The gitlinks of an index that are on disk (not left out by sparse
/// patterns): (path, commit).
fn gitlinks(index: &gix::index::File) -> Vec<(BString, ObjectId)> {
    index
        .entries()
        .iter()
        .filter(|e| e.mode == gix::index::entry::Mode::COMMIT)
        .filter(|e| !e.flags.contains(gix::index::entry::Flags::SKIP_WORKTREE))
        .map(|e| (e.path(index).to_owned(), e.id))
        .collect()
}

fn to_path(path: &BStr) -> Option<PathBuf> {
    gix::path::from_bstr(path).ok().map(|p| p.into_owned())
}

fn join_path(prefix: &BStr, path: &BStr) -> BString {
    let mut full = BString::from(prefix);
    if !full.is_empty() {
        full.push(b'/');
    }
    full.push_str(path);
    full
}

/// Opens the submodule's store, or makes a new one when it is missing or
/// unusable (it only caches objects; a fetch fills it again).
fn open_store(sub: &Submodule, threads: usize) -> Result<gix::Repository, Error> {
    let err = |message: String| Error::Store {
        path: sub.full.to_string(),
        store: sub.store.clone(),
        message,
    };
    if sub.store.join("HEAD").is_file() {
        match store::open(&sub.store, threads) {
            Ok(repo) => return Ok(repo),
            Err(e) => tracing::warn!(error = %e, "submodule store unusable; starting it afresh"),
        }
    }
    crate::fsutil::remove_any(&sub.store).map_err(|e| err(e.to_string()))?;
    fs::create_dir_all(&sub.store).map_err(|e| err(e.to_string()))?;
    gix::init_bare(&sub.store).map_err(|e| err(e.to_string()))?;
    store::open(&sub.store, threads).map_err(|e| err(e.to_string()))
}

/// Empties a submodule's directory and forgets its records (and those below it).
fn clear(dir: &Path, admin: &Path, full: &BStr) -> Result<(), Error> {
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        crate::fsutil::remove_any(&path).map_err(io_err(&path))?;
    }
    for (key, _) in records_at_or_below(admin, full) {
        let path = record_dir(admin, key.as_ref());
        crate::fsutil::remove_any(&path).map_err(io_err(&path))?;
    }
    Ok(())
}

// ---- records ------------------------------------------------------------------------------

/// What a worktree's record says about one submodule.
struct Record {
    commit: ObjectId,
    /// The store, relative to `<root>/.git`.
    store: PathBuf,
    /// Left out (`update = none`): the directory stays empty.
    skip: bool,
}

fn record_dir(admin: &Path, full: &BStr) -> PathBuf {
    admin.join(RECORDS).join(encode_component(full.as_bytes()))
}

fn write_record(
    dir: &Path,
    commit: ObjectId,
    index: Option<&mut gix::index::File>,
    store: &Path,
) -> Result<(), Error> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    if let Some(index) = index {
        let path = dir.join("index");
        index.set_path(&path);
        index
            .write(gix::index::write::Options::default())
            .map_err(|e| io_err(&path)(io::Error::other(e.to_string())))?;
    } else {
        let path = dir.join("skipped");
        fs::write(&path, "").map_err(io_err(&path))?;
    }
    let path = dir.join("store");
    // ASCII: made of "modules" and encoded names.
    fs::write(&path, store.to_string_lossy().as_bytes()).map_err(io_err(&path))?;
    // HEAD last: a record without it is ignored.
    let path = dir.join("HEAD");
    fs::write(&path, format!("{commit}\n")).map_err(io_err(&path))
}

/// The submodule is as wanted (`update = none` or not) and exactly as
/// recorded, with the submodules below it (`depth_left`: levels still
/// checked out from its own).
fn still_right(target: &Target<'_>, sub: &Submodule, depth_left: usize, threads: usize) -> bool {
    let dir = record_dir(target.admin, sub.full.as_ref());
    let checked = Checked {
        worktree: target.worktree,
        admin: target.admin,
        threads,
    };
    read_record(&dir).is_some_and(|r| r.skip == sub.skip)
        && checked.intact_at(sub.full.as_ref(), sub.commit, depth_left)
}

fn read_record(dir: &Path) -> Option<Record> {
    let head = fs::read_to_string(dir.join("HEAD")).ok()?;
    let commit = ObjectId::from_hex(head.trim().as_bytes()).ok()?;
    let store = PathBuf::from(fs::read_to_string(dir.join("store")).ok()?);
    let skip = dir.join("skipped").is_file();
    Some(Record {
        commit,
        store,
        skip,
    })
}

/// The records of the submodule at `full` and of those below it.
fn records_at_or_below(admin: &Path, full: &BStr) -> Vec<(BString, Record)> {
    let Ok(entries) = fs::read_dir(admin.join(RECORDS)) else {
        return Vec::new();
    };
    let mut below = BString::from(full);
    below.push(b'/');
    entries
        .flatten()
        .filter_map(|e| decode_component(e.file_name().as_encoded_bytes()))
        .filter(|key| key == full || key.starts_with(below.as_slice()))
        .filter_map(|key| read_record(&record_dir(admin, key.as_ref())).map(|r| (key, r)))
        .collect()
}

/// Removes the records of submodules that are no longer there.
fn prune_records(admin: &Path, keep: &HashSet<BString>) -> io::Result<()> {
    let Ok(entries) = fs::read_dir(admin.join(RECORDS)) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let key = decode_component(entry.file_name().as_encoded_bytes());
        if !key.is_some_and(|k| keep.contains(&k)) {
            crate::fsutil::remove_any(&entry.path())?;
        }
    }
    Ok(())
}

/// Moves a retired worktree's records to the worktree rewritten from it.
pub fn carry_records(old_admin: &Path, new_admin: &Path) -> io::Result<()> {
    let from = old_admin.join(RECORDS);
    if !from.is_dir() {
        return Ok(());
    }
    let to = new_admin.join(RECORDS);
    crate::fsutil::remove_any(&to)?;
    fs::rename(from, to)
}

/// Start-up check: below every gitlink of the worktree, exactly what `mode`
/// checks out, as recorded (commit, files with size and mtime); empty
/// directories where `mode` checks nothing out.
/// Each submodule's files are walked on up to `threads` threads.
pub fn intact(worktree: &Path, admin: &Path, mode: SubmoduleMode, threads: usize) -> bool {
    let top = Checked {
        worktree,
        admin,
        threads,
    };
    worktree::read_index(&admin.join("index"))
        .is_some_and(|index| top.level_intact(BStr::new(""), &index, mode.levels()))
}

/// The worktree [`intact`] checks, where its records are, and the walk's threads.
struct Checked<'a> {
    worktree: &'a Path,
    admin: &'a Path,
    threads: usize,
}

impl Checked<'_> {
    fn level_intact(&self, prefix: &BStr, index: &gix::index::File, depth_left: usize) -> bool {
        gitlinks(index).into_iter().all(|(path, commit)| {
            let full = join_path(prefix, path.as_ref());
            self.intact_at(full.as_ref(), commit, depth_left)
        })
    }

    /// The gitlink at `full` (from the worktree's root) holds `commit` exactly
    /// as recorded: its files (stat data, nothing more) and, `depth_left`
    /// levels deep, its own submodules; an empty directory where nothing is
    /// checked out.
    fn intact_at(&self, full: &BStr, commit: ObjectId, depth_left: usize) -> bool {
        let Some(dir) = to_path(full).map(|p| self.worktree.join(p)) else {
            return false;
        };
        if depth_left == 0 {
            return is_empty_dir(&dir);
        }
        let record_dir = record_dir(self.admin, full);
        let Some(record) = read_record(&record_dir).filter(|r| r.commit == commit) else {
            return false;
        };
        if record.skip {
            return is_empty_dir(&dir);
        }
        worktree::read_index(&record_dir.join("index")).is_some_and(|sub| {
            worktree::holds_tracked(&dir, &sub, false, self.threads)
                && self.level_intact(full, &sub, depth_left - 1)
        })
    }
}

/// Whether a worktree's gitlinks were checked out under `mode`, from the
/// records alone (no file looked at): false when the records show another
/// `--submodules` (a recorded checkout where `mode` checks out nothing, no
/// record where it checks one out), as after a change of the flag or in a
/// tree git-sync built. What `intact` finds wrong in a tree built under
/// `mode` is a change on disk, not a change of settings.
pub fn built_for(admin: &Path, mode: SubmoduleMode) -> bool {
    worktree::read_index(&admin.join("index"))
        .is_none_or(|index| level_built_for(admin, BStr::new(""), &index, mode.levels()))
}

fn level_built_for(
    admin: &Path,
    prefix: &BStr,
    index: &gix::index::File,
    depth_left: usize,
) -> bool {
    gitlinks(index).into_iter().all(|(path, commit)| {
        let full = join_path(prefix, path.as_ref());
        let record_dir = record_dir(admin, full.as_ref());
        let record = read_record(&record_dir);
        if depth_left == 0 {
            return record.is_none();
        }
        match record.filter(|r| r.commit == commit) {
            None => false,
            Some(r) if r.skip => true,
            Some(_) => worktree::read_index(&record_dir.join("index"))
                .is_none_or(|sub| level_built_for(admin, full.as_ref(), &sub, depth_left - 1)),
        }
    })
}

/// Missing counts as empty: a gitlink's directory holds nothing either way.
fn is_empty_dir(dir: &Path) -> bool {
    match fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    }
}

// ---- store upkeep -------------------------------------------------------------------------

/// After a publish: deletes the stores the new worktree does not use,
/// trims the shallow files of those in use (see [`compact::trim_shallow`]),
/// and compacts or merges their packs as `--git-gc=gc` says for the root's
/// store (see [`compact::due`]; growth counted from each store's own record).
pub fn upkeep(
    git_dir: &Path,
    used: &super::SubmoduleStores,
    gc: GcMode,
    budget: &Budget,
    threads: usize,
) {
    let used = &used.0;
    let in_use: HashSet<&Path> = used.iter().map(|(p, _)| p.as_path()).collect();
    prune_stores(&git_dir.join("modules"), &in_use);
    for store_path in in_use {
        let keep: Vec<ObjectId> = used
            .iter()
            .filter(|(p, _)| p == store_path)
            .map(|(_, c)| *c)
            .collect();
        let stats = compact::stats(store_path);
        let due = compact::due(gc, store_path, stats, 0);
        // A compaction prunes the shallow file itself.
        let trim = due != compact::Upkeep::Compact
            && compact::shallow_past_slack(store_path, keep.len(), 0);
        if due == compact::Upkeep::Nothing && !trim {
            continue;
        }
        let done = store::open(store_path, threads)
            .map_err(|e| e.to_string())
            .and_then(|repo| {
                if trim {
                    compact::trim_shallow(&repo, &keep, 0).map_err(|e| e.to_string())?;
                }
                compact::carry_out(&repo, due, &keep, budget).map_err(|e| e.to_string())
            });
        if let Err(e) = done {
            tracing::warn!(store = %store_path.display(), error = %e, "submodule store upkeep failed; will retry later")
        }
    }
}

/// Removes the stores below `modules` that are not in use (nested stores
/// of a store in use are looked at in turn).
fn prune_stores(modules: &Path, in_use: &HashSet<&Path>) {
    let Ok(entries) = fs::read_dir(modules) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if in_use.contains(path.as_path()) {
            prune_stores(&path.join("modules"), in_use);
        } else if let Err(e) = crate::fsutil::remove_any(&path) {
            tracing::warn!(store = %path.display(), error = %e, "could not remove an unused submodule store");
        } else {
            tracing::info!(store = %path.display(), "removed an unused submodule store");
        }
    }
}

// ---- names as path components -------------------------------------------------------------

/// One path component for any name: `/`, `%`, control bytes, non-ASCII and
/// a leading `.` are percent-encoded, so `.`, `..` and nesting cannot happen.
fn encode_component(name: &[u8]) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, &b) in name.iter().enumerate() {
        let plain = b.is_ascii_alphanumeric() || b"-_+=,@".contains(&b) || (b == b'.' && i > 0);
        if plain {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn decode_component(encoded: &[u8]) -> Option<BString> {
    let mut out = BString::default();
    let mut bytes = encoded.iter();
    while let Some(&b) = bytes.next() {
        if b == b'%' {
            let hex = [*bytes.next()?, *bytes.next()?];
            let text = std::str::from_utf8(&hex).ok()?;
            out.push(u8::from_str_radix(text, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_urls_resolve_as_git_resolves_them() {
        let cases = [
            (
                "https://host/org/site.git",
                "../theme.git",
                "https://host/org/theme.git",
            ),
            (
                "https://host/org/site.git/",
                "../theme",
                "https://host/org/theme",
            ),
            (
                "https://host/org/site",
                "./sub",
                "https://host/org/site/sub",
            ),
            (
                "https://host/org/site",
                "../../other/x",
                "https://host/other/x",
            ),
            (
                "git://127.0.0.1:9418/site",
                "../sub.git",
                "git://127.0.0.1:9418/sub.git",
            ),
            (
                "git@host:org/site.git",
                "../theme.git",
                "git@host:org/theme.git",
            ),
            ("git@host:site.git", "../theme.git", "git@host:theme.git"),
            ("ssh://git@host/org/site", "../t", "ssh://git@host/org/t"),
            ("file:///srv/git/site", "../sub", "file:///srv/git/sub"),
            ("/srv/git/site", "../sub/", "/srv/git/sub"),
            ("site", "../sub", "sub"),
        ];
        for (base, url, want) in cases {
            assert_eq!(
                relative_url(base, url).as_deref(),
                Ok(want),
                "{base} + {url}"
            );
        }
        assert!(relative_url("site", "../../x").is_err());
    }

    #[test]
    fn only_dot_prefixed_urls_are_relative() {
        let base = "https://host/org/site";
        assert_eq!(
            resolve_url("https://other/x", base).as_deref(),
            Ok("https://other/x")
        );
        assert_eq!(resolve_url("sub", base).as_deref(), Ok("sub"));
        assert_eq!(
            resolve_url("../x", base).as_deref(),
            Ok("https://host/org/x")
        );
    }

    #[test]
    fn local_submodules_only_under_a_local_superproject() {
        assert!(check_scheme("/etc/secret-repo", "https://host/site").is_err());
        assert!(check_scheme("file:///etc/r", "git://127.0.0.1/site").is_err());
        assert!(check_scheme("file:///srv/sub", "file:///srv/site").is_ok());
        assert!(check_scheme("https://host/sub", "https://host/site").is_ok());
    }

    #[test]
    fn names_become_one_component_and_back() {
        for name in [
            "lib",
            "lib/foo",
            ".",
            "..",
            "../../etc",
            "a%2Fb",
            "théme",
            ".hidden",
        ] {
            let enc = encode_component(name.as_bytes());
            assert!(
                !enc.contains('/') && !enc.starts_with('.'),
                "{name} -> {enc}"
            );
            assert_eq!(
                decode_component(enc.as_bytes()),
                Some(BString::from(name)),
                "{name}"
            );
        }
        assert_eq!(encode_component(b"lib.js"), "lib.js");
    }
}
