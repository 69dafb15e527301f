//! Fixture repositories made with the real `git` CLI, fully isolated from the
//! user's and the system's configuration, plus a checker that compares a
//! checked-out directory byte for byte with a commit. Also crafts what a
//! normal `git commit` refuses to make (raw tree objects with hostile names,
//! via `git hash-object --literally`) and long histories in one
//! `git fast-import`.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// Config every harness git process gets (through GIT_CONFIG_COUNT, so it
/// also reaches git-daemon / http-backend / upload-pack children).
pub(crate) const GIT_CONFIG: &[(&str, &str)] = &[
    ("protocol.file.allow", "always"),
    ("protocol.allow", "always"),
    ("init.defaultBranch", "main"),
    ("core.autocrlf", "false"),
    ("core.symlinks", "true"),
    ("commit.gpgSign", "false"),
    ("tag.gpgSign", "false"),
    ("gc.auto", "0"),
    ("gc.autoDetach", "false"),
    ("advice.detachedHead", "false"),
    ("safe.directory", "*"),
    ("uploadpack.allowFilter", "true"),
    ("uploadpack.allowAnySHA1InWant", "true"),
    ("daemon.uploadpack", "true"),
];

/// A throw-away HOME shared by all harness git processes of this test binary.
pub fn isolated_home() -> &'static Path {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        let dir = super::tempdir("home");
        // Kept for the life of the process (statics are never dropped anyway).
        dir.keep()
    })
}

/// Panics with an installation hint when the `git` CLI is unusable.
pub fn require_git() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        let ok = Command::new("git")
            .arg("--version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !ok {
            panic!("the `git` CLI is not on PATH: install it (Debian/Ubuntu: apt-get install git)");
        }
    });
}

/// `git --exec-path`, where git-daemon / git-http-backend / git-upload-pack live.
pub fn git_exec_path() -> PathBuf {
    static EXEC: OnceLock<PathBuf> = OnceLock::new();
    EXEC.get_or_init(|| {
        require_git();
        PathBuf::from(git(&["--exec-path"], Path::new("/")))
    })
    .clone()
}

/// Panics with an installation hint unless `git-<name>` exists in the exec path.
pub fn require_git_program(name: &str, package_hint: &str) {
    let p = git_exec_path().join(format!("git-{name}"));
    if !p.exists() {
        panic!("git {name} not found at {}: {package_hint}", p.display());
    }
}

/// Applies the isolation environment to a command that runs git (or a git
/// server program). The environment is cleared first so nothing leaks in from
/// the outer process (GIT_DIR from a hook, the user's config, ...).
pub fn isolate(cmd: &mut Command) -> &mut Command {
    let home = isolated_home();
    cmd.env_clear();
    for var in ["PATH", "TMPDIR", "SYSTEMROOT"] {
        if let Some(v) = std::env::var_os(var) {
            cmd.env(var, v);
        }
    }
    cmd.env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("LANG", "C")
        .env("LC_ALL", "C")
        .env("TZ", "UTC")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "Test Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.invalid")
        .env("GIT_COMMITTER_NAME", "Test Committer")
        .env("GIT_COMMITTER_EMAIL", "committer@example.invalid")
        .env("GIT_AUTHOR_DATE", "1700000000 +0000")
        .env("GIT_COMMITTER_DATE", "1700000000 +0000")
        .env("GIT_CONFIG_COUNT", GIT_CONFIG.len().to_string());
    for (i, (k, v)) in GIT_CONFIG.iter().enumerate() {
        cmd.env(format!("GIT_CONFIG_KEY_{i}"), k)
            .env(format!("GIT_CONFIG_VALUE_{i}"), v);
    }
    cmd
}

/// An isolated `git` command running in `cwd`.
pub fn git_cmd(cwd: &Path) -> Command {
    require_git();
    let mut cmd = Command::new("git");
    isolate(&mut cmd);
    cmd.current_dir(cwd).stdin(Stdio::null());
    cmd
}

/// Runs git in `cwd` and returns its stdout with trailing whitespace
/// removed; panics with stderr when git fails.
pub fn git(args: &[&str], cwd: &Path) -> String {
    let out = git_output(args, cwd);
    if !out.status.success() {
        panic!(
            "git {args:?} in {} failed ({}):\n{}{}",
            cwd.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

/// Runs git in `cwd` and returns the raw output, whatever the exit status.
pub fn git_output(args: &[&str], cwd: &Path) -> Output {
    git_cmd(cwd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run git {args:?}: {e}"))
}

/// A non-bare upstream repository in its own temporary directory, created
/// with `git init -b main`. Serve [`Upstream::base`] with `GitDaemon` or
/// `HttpGit`; the repo is then reachable as `/<name>`.
pub struct Upstream {
    /// `None` for a [`Upstream::sibling`], whose directory belongs to another.
    _dir: Option<tempfile::TempDir>,
    base: PathBuf,
    path: PathBuf,
    name: String,
    /// Seconds added to the fixed commit date, so successive commits differ.
    tick: Cell<u64>,
}

impl Default for Upstream {
    fn default() -> Self {
        Self::new()
    }
}

impl Upstream {
    /// An empty repo named `repo` (no commits yet).
    pub fn new() -> Self {
        Self::named("repo")
    }

    /// An empty repo whose directory (and so URL basename) is `name`.
    pub fn named(name: &str) -> Self {
        let dir = super::tempdir("upstream");
        let base = dir.path().to_path_buf();
        Self::init_in(Some(dir), base, name)
    }

    /// Another empty repo in the same base directory, so the same server
    /// serves both (and `../<name>` from this one reaches it). Must not
    /// outlive `self`.
    pub fn sibling(&self, name: &str) -> Self {
        Self::init_in(None, self.base.clone(), name)
    }

    fn init_in(dir: Option<tempfile::TempDir>, base: PathBuf, name: &str) -> Self {
        let path = base.join(name);
        git(
            &[
                "init",
                "-q",
                "-b",
                "main",
                path.to_str().expect("utf-8 temp path"),
            ],
            &base,
        );
        let up = Upstream {
            _dir: dir,
            base,
            path,
            name: name.to_string(),
            tick: Cell::new(0),
        };
        // Serving-side settings must live in the repo config too: the sidecar
        // spawns upload-pack for file:// with its own environment.
        for (k, v) in [
            ("uploadpack.allowFilter", "true"),
            ("uploadpack.allowAnySHA1InWant", "true"),
            ("uploadpack.allowReachableSHA1InWant", "true"),
            ("gc.auto", "0"),
            ("receive.denyCurrentBranch", "ignore"),
        ] {
            up.git(&["config", k, v]);
        }
        up
    }

    /// Directory containing the repo (the base path to serve).
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// The repo's working directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Last path component of the repo (what URLs end in).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `file:///abs/path/to/repo`.
    pub fn file_url(&self) -> String {
        format!("file://{}", self.path.display())
    }

    /// Runs git in the repo with a commit date one second later than the last.
    pub fn git(&self, args: &[&str]) -> String {
        let t = self.tick.get() + 1;
        self.tick.set(t);
        let date = format!("{} +0000", 1_700_000_000 + t);
        let out = git_cmd(&self.path)
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_DATE", &date)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run git {args:?}: {e}"));
        if !out.status.success() {
            panic!(
                "git {args:?} in {} failed ({}):\n{}",
                self.path.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    }

    /// Writes a file (creating parent directories) without committing.
    pub fn write_file(&self, rel: &str, content: impl AsRef<[u8]>) {
        let p = self.path.join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).expect("creating parent dirs in upstream");
        }
        // A previous symlink at the same path must not be followed.
        if fs::symlink_metadata(&p)
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false)
        {
            fs::remove_file(&p).expect("removing old symlink");
        }
        fs::write(&p, content).expect("writing upstream file");
    }

    /// Writes and commits one file; returns the new HEAD sha.
    pub fn commit_file(&self, rel: &str, content: impl AsRef<[u8]>, msg: &str) -> String {
        self.commit_files(&[(rel, content.as_ref())], msg)
    }

    /// Writes and commits several files in one commit; returns the new HEAD sha.
    pub fn commit_files(&self, files: &[(&str, &[u8])], msg: &str) -> String {
        for (rel, content) in files {
            self.write_file(rel, content);
            self.git(&["add", "--", rel]);
        }
        self.git(&["commit", "-q", "--allow-empty", "-m", msg]);
        self.head()
    }

    /// Stages everything in the work tree (additions, changes, deletions) and commits.
    pub fn commit_all(&self, msg: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", msg]);
        self.head()
    }

    /// `n` commits, each changing `<prefix>.txt`; returns their shas oldest first.
    pub fn commit_many(&self, n: usize, prefix: &str) -> Vec<String> {
        (0..n)
            .map(|i| {
                self.commit_file(
                    &format!("{prefix}.txt"),
                    format!("{prefix} {i}\n"),
                    &format!("{prefix} {i}"),
                )
            })
            .collect()
    }

    /// Commits a tree exercising what a checkout must reproduce: nested
    /// directories, an executable, a symlink (to a file and to a dir), an empty
    /// file and binary content. Returns the new HEAD sha.
    pub fn commit_rich_tree(&self, msg: &str) -> String {
        self.write_file("README.md", format!("# fixture\n{msg}\n"));
        self.write_file("empty", "");
        self.write_file("dir/sub/deep.txt", "deep\n");
        self.write_file(
            "dir/binary.bin",
            (0u8..=255).cycle().take(4096).collect::<Vec<u8>>(),
        );
        self.write_file("bin/run.sh", "#!/bin/sh\necho hi\n");
        let exe = self.path.join("bin/run.sh");
        let mut perm = fs::metadata(&exe).expect("stat run.sh").permissions();
        perm.set_mode(0o755);
        fs::set_permissions(&exe, perm).expect("chmod +x");
        for (link, target) in [("link-to-readme", "README.md"), ("link-to-dir", "dir/sub")] {
            let p = self.path.join(link);
            let _ = fs::remove_file(&p);
            std::os::unix::fs::symlink(target, &p).expect("creating symlink in upstream");
        }
        self.commit_all(msg)
    }

    /// Makes a committed file executable (or not) in a new commit.
    pub fn commit_chmod(&self, rel: &str, executable: bool, msg: &str) -> String {
        let p = self.path.join(rel);
        let mut perm = fs::metadata(&p).expect("stat").permissions();
        perm.set_mode(if executable { 0o755 } else { 0o644 });
        fs::set_permissions(&p, perm).expect("chmod");
        self.commit_all(msg)
    }

    /// `git rev-parse HEAD`.
    pub fn head(&self) -> String {
        self.rev_parse("HEAD")
    }

    /// `git rev-parse <rev>`.
    pub fn rev_parse(&self, rev: &str) -> String {
        self.git(&["rev-parse", "--verify", "-q", rev])
    }

    /// Creates branch `name` at HEAD (does not switch to it).
    pub fn branch(&self, name: &str) {
        self.git(&["branch", name]);
    }

    /// Switches to an existing branch.
    pub fn checkout(&self, name: &str) {
        self.git(&["checkout", "-q", name]);
    }

    /// Creates branch `name` at HEAD and switches to it.
    pub fn checkout_new(&self, name: &str) {
        self.git(&["checkout", "-q", "-b", name]);
    }

    /// Lightweight tag at HEAD; returns the commit sha it names.
    pub fn tag_light(&self, name: &str) -> String {
        self.git(&["tag", name]);
        self.rev_parse(&format!("{name}^{{commit}}"))
    }

    /// Annotated tag at HEAD; returns the TAG OBJECT sha (differs from the commit).
    pub fn tag_annotated(&self, name: &str, msg: &str) -> String {
        self.git(&["tag", "-a", name, "-m", msg]);
        self.rev_parse(&format!("refs/tags/{name}"))
    }

    /// Moves a tag to HEAD (force).
    pub fn retag_light(&self, name: &str) -> String {
        self.git(&["tag", "-f", name]);
        self.rev_parse(&format!("{name}^{{commit}}"))
    }

    /// The equivalent of a force-push: moves the current branch (and the
    /// work tree) to `sha` with `git reset --hard`.
    pub fn force_reset(&self, sha: &str) {
        self.git(&["reset", "-q", "--hard", sha]);
    }

    /// Commits `.gitmodules` with `gitmodules` as its content (see
    /// [`gitmodules`]) and a gitlink at each `(path, commit)` of `links`
    /// (nothing is cloned into the work tree); returns the new HEAD. Commit
    /// other files with `commit_file`, not `commit_all`, which would drop the
    /// gitlinks.
    pub fn commit_gitlinks(&self, gitmodules: &str, links: &[(&str, &str)], msg: &str) -> String {
        self.write_file(".gitmodules", gitmodules);
        self.git(&["add", "--", ".gitmodules"]);
        for (path, commit) in links {
            let info = format!("160000,{commit},{path}");
            self.git(&["update-index", "--add", "--cacheinfo", &info]);
        }
        self.git(&["commit", "-q", "-m", msg]);
        self.head()
    }

    /// Removes the gitlink at `path` and commits `gitmodules` as the new
    /// `.gitmodules`; returns the new HEAD.
    pub fn commit_gitlink_removal(&self, path: &str, gitmodules: &str, msg: &str) -> String {
        self.git(&["rm", "-q", "--cached", "--", path]);
        self.write_file(".gitmodules", gitmodules);
        self.git(&["add", "--", ".gitmodules"]);
        self.git(&["commit", "-q", "-m", msg]);
        self.head()
    }
}

/// `.gitmodules` content for `(name, path, url)` triples, as `git submodule add` writes it.
pub fn gitmodules(modules: &[(&str, &str, &str)]) -> String {
    modules
        .iter()
        .map(|(name, path, url)| {
            format!("[submodule \"{name}\"]\n\tpath = {path}\n\turl = {url}\n")
        })
        .collect()
}

/// One entry of a tree object, written as given: the name is not checked,
/// so it may be `..`, `.git`, absolute or contain slashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    /// `100644`, `100755`, `120000` (symlink) or `40000` (tree).
    pub mode: String,
    pub name: Vec<u8>,
    /// 40-hex object id.
    pub oid: String,
}

impl RawEntry {
    pub fn new(mode: &str, name: impl AsRef<[u8]>, oid: &str) -> Self {
        RawEntry {
            mode: mode.to_string(),
            name: name.as_ref().to_vec(),
            oid: oid.to_string(),
        }
    }

    fn is_tree(&self) -> bool {
        self.mode == "40000"
    }

    /// git's tree order: names compared as bytes, a tree's as if it ended in `/`.
    fn sort_key(&self) -> Vec<u8> {
        let mut k = self.name.clone();
        if self.is_tree() {
            k.push(b'/');
        }
        k
    }
}

impl Upstream {
    /// Runs git in the repo with `input` on its stdin; returns trimmed stdout.
    pub fn git_with_input(&self, args: &[&str], input: &[u8]) -> String {
        let mut child = git_cmd(&self.path)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run git {args:?}: {e}"));
        let mut stdin = child.stdin.take().expect("piped stdin");
        let input = input.to_vec();
        // A separate writer: git may answer before it has read everything.
        let writer = std::thread::spawn(move || stdin.write_all(&input));
        let out = child.wait_with_output().expect("waiting for git");
        let written = writer.join().expect("stdin writer thread");
        if !out.status.success() || written.is_err() {
            panic!(
                "git {args:?} in {} failed ({}, stdin: {written:?}):\n{}",
                self.path.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    }

    /// Writes a blob; returns its id.
    pub fn write_blob(&self, content: &[u8]) -> String {
        self.git_with_input(&["hash-object", "-w", "--stdin"], content)
    }

    /// Writes a tree object from `entries` (sorted as git sorts them, names
    /// unchecked); returns its id.
    pub fn write_raw_tree(&self, entries: &[RawEntry]) -> String {
        let mut sorted = entries.to_vec();
        sorted.sort_by_key(RawEntry::sort_key);
        let mut raw = Vec::new();
        for e in &sorted {
            raw.extend_from_slice(e.mode.as_bytes());
            raw.push(b' ');
            raw.extend_from_slice(&e.name);
            raw.push(0);
            raw.extend(hex::decode(&e.oid).expect("a 40-hex object id"));
        }
        let args = ["hash-object", "-t", "tree", "--literally", "-w", "--stdin"];
        self.git_with_input(&args, &raw)
    }

    /// The top-level entries of `rev`'s tree.
    pub fn top_entries(&self, rev: &str) -> Vec<RawEntry> {
        let out = git_output(&["ls-tree", "-z", rev], &self.path);
        assert!(out.status.success(), "git ls-tree {rev} failed");
        out.stdout
            .split(|b| *b == 0)
            .filter(|r| !r.is_empty())
            .map(|rec| {
                let tab = rec.iter().position(|b| *b == b'\t').expect("tab");
                let meta = String::from_utf8_lossy(&rec[..tab]).into_owned();
                let f: Vec<&str> = meta.split(' ').collect();
                RawEntry::new(f[0], &rec[tab + 1..], f[2])
            })
            .collect()
    }

    /// A commit of `tree` with `parents`; returns its id (no ref moves).
    pub fn commit_tree(&self, tree: &str, parents: &[&str], msg: &str) -> String {
        let mut args = vec!["commit-tree", tree, "-m", msg];
        for p in parents {
            args.extend(["-p", p]);
        }
        self.git(&args)
    }

    /// Points `refname` (e.g. `refs/heads/main`) at `sha`, as a push would.
    pub fn update_ref(&self, refname: &str, sha: &str) {
        self.git(&["update-ref", refname, sha]);
    }

    /// A commit whose parent is `main` and whose tree is `base`'s top level
    /// plus `extra` (an entry of the same name is replaced); moves `main` to
    /// it and returns it. The work tree is left alone: a later `commit_all`
    /// commits the work tree, which undoes the hostile entries.
    pub fn commit_with_entries(&self, base: &str, extra: &[RawEntry], msg: &str) -> String {
        let parent = self.rev_parse("refs/heads/main");
        let mut entries: Vec<RawEntry> = self
            .top_entries(base)
            .into_iter()
            .filter(|e| !extra.iter().any(|x| x.name == e.name))
            .collect();
        entries.extend_from_slice(extra);
        let tree = self.write_raw_tree(&entries);
        let commit = self.commit_tree(&tree, &[&parent], msg);
        self.update_ref("refs/heads/main", &commit);
        commit
    }

    /// One commit on `main` (no parent) holding `files` (path, content),
    /// made with `git fast-import`: quick for tens of thousands of files.
    /// Returns its id.
    pub fn commit_generated(
        &self,
        files: impl IntoIterator<Item = (String, Vec<u8>)>,
        msg: &str,
    ) -> String {
        let mut stream = Vec::new();
        let mut paths = Vec::new();
        for (mark, (path, content)) in (1..).zip(files) {
            stream.extend_from_slice(
                format!("blob\nmark :{mark}\ndata {}\n", content.len()).as_bytes(),
            );
            stream.extend_from_slice(&content);
            stream.push(b'\n');
            paths.push((mark, path));
        }
        let commit = paths.len() + 1;
        stream.extend_from_slice(
            format!(
                "commit refs/heads/main\nmark :{commit}\n\
                 committer T <t@example.com> 1700000000 +0000\ndata {}\n{msg}\n",
                msg.len()
            )
            .as_bytes(),
        );
        for (mark, path) in paths {
            stream.extend_from_slice(format!("M 100644 :{mark} {path}\n").as_bytes());
        }
        stream.push(b'\n');
        self.fast_import(&stream)[commit - 1].clone()
    }

    /// Feeds a `git fast-import` stream (use marks `:1`, `:2`, ... on the
    /// commits); returns the commit id of each mark (index 0 = mark 1).
    pub fn fast_import(&self, stream: &[u8]) -> Vec<String> {
        let marks = self.base.join("fast-import.marks");
        let export = format!("--export-marks={}", marks.display());
        self.git_with_input(&["fast-import", "--quiet", &export], stream);
        let text = fs::read_to_string(&marks).expect("reading fast-import marks");
        let mut ids: Vec<(usize, String)> = text
            .lines()
            .filter_map(|l| {
                let (mark, id) = l.strip_prefix(':')?.split_once(' ')?;
                Some((mark.parse().ok()?, id.to_string()))
            })
            .collect();
        ids.sort();
        ids.into_iter().map(|(_, id)| id).collect()
    }
}

/// One entry of `git ls-tree -r`.
#[derive(Debug, Clone)]
struct TreeEntry {
    mode: String,
    oid: String,
}

fn ls_tree(repo: &Path, sha: &str) -> BTreeMap<PathBuf, TreeEntry> {
    let out = git_cmd(repo)
        .args(["ls-tree", "-r", "-z", "--full-tree", sha])
        .output()
        .expect("running git ls-tree");
    if !out.status.success() {
        panic!(
            "git ls-tree {sha} in {} failed: {}",
            repo.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut map = BTreeMap::new();
    for rec in out.stdout.split(|b| *b == 0).filter(|r| !r.is_empty()) {
        let tab = rec
            .iter()
            .position(|b| *b == b'\t')
            .expect("ls-tree record has a tab");
        let meta = String::from_utf8_lossy(&rec[..tab]).into_owned();
        let path = PathBuf::from(OsStr::from_bytes(&rec[tab + 1..]));
        let mut parts = meta.split(' ');
        let mode = parts.next().expect("mode").to_string();
        let _kind = parts.next().expect("type");
        let oid = parts.next().expect("oid").to_string();
        map.insert(path, TreeEntry { mode, oid });
    }
    map
}

/// Reads many blobs with one `git cat-file --batch`.
fn read_blobs(repo: &Path, oids: &[String]) -> BTreeMap<String, Vec<u8>> {
    let mut child = git_cmd(repo)
        .args(["cat-file", "--batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning git cat-file --batch");
    let mut stdin = child.stdin.take().expect("cat-file stdin");
    let input: Vec<u8> = oids
        .iter()
        .flat_map(|o| format!("{o}\n").into_bytes())
        .collect();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
        // stdin dropped: cat-file sees EOF.
    });
    let mut reader = BufReader::new(child.stdout.take().expect("cat-file stdout"));
    let mut blobs = BTreeMap::new();
    for oid in oids {
        let mut header = String::new();
        reader
            .read_line(&mut header)
            .expect("reading cat-file header");
        let fields: Vec<&str> = header.split_whitespace().collect();
        if fields.len() != 3 {
            panic!("git cat-file --batch: unexpected header for {oid}: {header:?}");
        }
        let size: usize = fields[2].parse().expect("cat-file size");
        let mut data = vec![0u8; size + 1];
        reader.read_exact(&mut data).expect("reading blob");
        data.pop(); // trailing LF
        blobs.insert(oid.clone(), data);
    }
    writer.join().expect("cat-file writer thread");
    let _ = child.wait();
    blobs
}

/// Compares `dir` (ignoring its top-level `.git` entry) with the tree of
/// commit `sha` in repository `repo`: same set of paths, same bytes, same
/// executable bits, symlinks with the same targets, no stray directories.
/// Returns a description of the differences, or `None` if identical.
pub fn tree_mismatch(dir: &Path, repo: &Path, sha: &str) -> Option<String> {
    let expected = ls_tree(repo, sha);
    let blob_oids: Vec<String> = {
        let set: BTreeSet<&String> = expected
            .values()
            .filter(|e| e.mode != "160000")
            .map(|e| &e.oid)
            .collect();
        set.into_iter().cloned().collect()
    };
    let blobs = read_blobs(repo, &blob_oids);

    // Directories implied by the expected paths (and submodule roots, whose
    // contents are not compared).
    let mut expected_dirs: BTreeSet<PathBuf> = BTreeSet::new();
    let mut submodules: BTreeSet<PathBuf> = BTreeSet::new();
    for (path, entry) in &expected {
        let mut p = path.parent();
        while let Some(d) = p {
            if d.as_os_str().is_empty() {
                break;
            }
            expected_dirs.insert(d.to_path_buf());
            p = d.parent();
        }
        if entry.mode == "160000" {
            submodules.insert(path.clone());
        }
    }

    let mut problems: Vec<String> = Vec::new();
    if !dir.is_dir() {
        return Some(format!("{} is not a directory", dir.display()));
    }

    // Walk the actual directory.
    let mut actual: BTreeMap<PathBuf, fs::Metadata> = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let abs = dir.join(&rel);
        let rd = match fs::read_dir(&abs) {
            Ok(rd) => rd,
            Err(e) => {
                problems.push(format!("cannot read dir {}: {e}", abs.display()));
                continue;
            }
        };
        for entry in rd.flatten() {
            let name = entry.file_name();
            if rel.as_os_str().is_empty() && name == ".git" {
                continue;
            }
            let r = rel.join(&name);
            let md = match fs::symlink_metadata(entry.path()) {
                Ok(m) => m,
                Err(e) => {
                    problems.push(format!("cannot stat {}: {e}", r.display()));
                    continue;
                }
            };
            if md.is_dir() && !submodules.contains(&r) {
                stack.push(r.clone());
            }
            actual.insert(r, md);
        }
    }

    for (path, entry) in &expected {
        let Some(md) = actual.get(path) else {
            problems.push(format!("missing: {}", path.display()));
            continue;
        };
        let abs = dir.join(path);
        match entry.mode.as_str() {
            "100644" | "100755" => {
                if !md.is_file() {
                    problems.push(format!("not a regular file: {}", path.display()));
                    continue;
                }
                let want_exec = entry.mode == "100755";
                let is_exec = md.permissions().mode() & 0o111 != 0;
                if want_exec != is_exec {
                    problems.push(format!(
                        "executable bit of {}: expected {want_exec}, found mode {:o}",
                        path.display(),
                        md.permissions().mode()
                    ));
                }
                match fs::read(&abs) {
                    Ok(data) if Some(&data) == blobs.get(&entry.oid) => {}
                    Ok(data) => problems.push(format!(
                        "content differs: {} ({} bytes, expected {} bytes)",
                        path.display(),
                        data.len(),
                        blobs.get(&entry.oid).map(|b| b.len()).unwrap_or(0)
                    )),
                    Err(e) => problems.push(format!("cannot read {}: {e}", path.display())),
                }
            }
            "120000" => {
                if !md.file_type().is_symlink() {
                    problems.push(format!("not a symlink: {}", path.display()));
                    continue;
                }
                match fs::read_link(&abs) {
                    Ok(t)
                        if Some(t.as_os_str().as_bytes())
                            == blobs.get(&entry.oid).map(|b| b.as_slice()) => {}
                    Ok(t) => problems.push(format!(
                        "symlink target of {} differs: {}",
                        path.display(),
                        t.display()
                    )),
                    Err(e) => problems.push(format!("cannot readlink {}: {e}", path.display())),
                }
            }
            "160000" => {
                if !md.is_dir() {
                    problems.push(format!(
                        "submodule path is not a directory: {}",
                        path.display()
                    ));
                }
            }
            other => problems.push(format!("unexpected mode {other} for {}", path.display())),
        }
    }
    for (path, md) in &actual {
        if expected.contains_key(path) {
            continue;
        }
        if md.is_dir() && expected_dirs.contains(path) {
            continue;
        }
        if submodules.iter().any(|s| path.starts_with(s)) {
            continue;
        }
        let kind = if md.is_dir() {
            "directory"
        } else if md.file_type().is_symlink() {
            "symlink"
        } else {
            "file"
        };
        problems.push(format!("unexpected {kind}: {}", path.display()));
    }

    if problems.is_empty() {
        None
    } else {
        let total = problems.len();
        problems.truncate(20);
        Some(format!(
            "{} does not match commit {sha} ({total} problem(s)):\n  {}",
            dir.display(),
            problems.join("\n  ")
        ))
    }
}

/// Panics unless `dir` matches commit `sha` of `upstream` exactly (see [`tree_mismatch`]).
pub fn assert_tree_matches_commit(dir: &Path, upstream: &Upstream, sha: &str) {
    if let Some(problem) = tree_mismatch(dir, upstream.path(), sha) {
        panic!("{problem}");
    }
}
