//! Everything that touches git, through gix, blocking. No tokio here: the sync
//! loop calls these on the blocking pool with a [`Budget`] whose interrupt
//! flag it sets on shutdown or timeout.
//!
//! - [`remote`]: a remote URL parsed once ([`Remote`]); [`CommitId`]: a
//!   commit's id; [`Repo`]: the repository facade the sync engine uses
//! - [`transport`]: connections with deadlines (git://, file://, http(s)://)
//! - [`v1_capabilities`]: what gix may request over protocol v0/v1 (shallow fetches)
//! - [`fetch`]: resolve the ref, fetch only when it moved
//! - [`upload_pack`]: one conversation with a server: refs, negotiation, pack
//! - [`pack_in`]: write a received pack into the store, hashing as it inflates
//! - [`credential_callback`]: hands gix [`crate::auth`]'s credentials (no helper programs)
//! - [`ssh`]: ssh:// and scp-like remotes, built in or through `GIT_SSH_COMMAND`
//! - [`cookies`]: `http.cookieFile` cookies for http(s) requests
//! - [`probe`]: why an http(s) server did not answer as a git server
//! - [`tls_probe`]: whether a server speaks TLS on a port an http:// URL names
//! - [`worktree`]: linked worktrees the git CLI can read
//! - [`tree_diff`]: what changed between two commits' trees
//! - [`symlinks`]: which symlinks of a tree lead outside it
//! - [`sparse`]: which paths a sparse checkout writes
//! - [`partial`]: partial clone (`--filter`): the filter argument, blobs fetched by id
//! - [`signed`]: a commit's or tag's signed payload and signature, split as git does
//! - [`store`]: the root repository: open, init, repair, refs
//! - [`cli_config`]: the git config the git programs we start see
//! - [`compact`]: keep the object store bounded
//! - [`garbage`]: how much of the store no kept commit needs
//! - [`submodules`]: check submodules out into a worktree, their stores

pub mod cli_config;
mod commit_id;
pub mod compact;
mod connect_probe;
pub mod cookies;
pub mod credential_callback;
pub mod fetch;
pub mod garbage;
pub mod http_settings;
mod pack_in;
pub mod partial;
pub mod probe;
pub mod remote;
mod repo;
mod shallow;
pub mod signed;
pub mod sparse;
pub mod ssh;
pub mod store;
pub mod submodules;
pub mod symlinks;
mod tls_probe;
pub mod transport;
mod tree_diff;
mod upload_pack;
pub mod v1_capabilities;
pub mod worktree;

pub use commit_id::CommitId;
pub use credential_callback::Credentials;
pub use http_settings::HttpSettings;
pub use remote::Remote;
pub use repo::{Repo, SubmoduleStores};
pub use signed::TagId;
pub use transport::Budget;

/// Parses a user-supplied repository URL or local path.
pub(crate) fn parse_url(url: &str) -> Result<gix::Url, String> {
    if let Some(parsed) = bracketed_scp(url) {
        return parsed;
    }
    let mut parsed = gix::url::parse(gix::bstr::BStr::new(url)).map_err(|e| e.to_string())?;
    // git decodes a file:// URL's path (`sp%20ace`), not a plain path's.
    if url.starts_with("file://") && parsed.path.contains(&b'%') {
        let decoded: Vec<u8> = percent_encoding::percent_decode(&parsed.path).collect();
        parsed.path = decoded.into();
    }
    Ok(parsed)
}

/// git's scp-like forms with brackets that gix gets wrong or refuses:
/// `user@[::1]:path` (an IPv6 host with a user), and `[user@host:port]:path`
/// or `[host:port]:path` (the old form that names a port; gix takes
/// `host:port` for an IPv6 host). The path stays as written (relative to
/// the login's home unless it starts with `/`).
fn bracketed_scp(url: &str) -> Option<Result<gix::Url, String>> {
    if url.contains("://") {
        return None;
    }
    let (user, bracketed, path) = match url.strip_prefix('[') {
        Some(inner) => {
            let (bracketed, path) = inner.split_once("]:")?;
            match bracketed.rsplit_once('@') {
                Some((user, host)) => (Some(user), host, path),
                None => (None, bracketed, path),
            }
        }
        None => {
            let (user, rest) = url.split_once("@[")?;
            if user.is_empty() || user.contains(['/', ':']) {
                return None;
            }
            let (bracketed, path) = rest.split_once("]:")?;
            (Some(user), bracketed, path)
        }
    };
    // An IPv6 literal has several colons; `host:port` one.
    let (address, port) = match bracketed.split_once(':') {
        Some((host, port)) if !port.contains(':') => (host.to_string(), Some(port.parse().ok()?)),
        _ => (format!("[{bracketed}]"), None),
    };
    let parsed = gix::url::parse(gix::bstr::BStr::new(&format!("{address}:{path}")));
    Some(parsed.map_err(|e| e.to_string()).map(|mut url| {
        url.user = user.map(str::to_string);
        url.port = port.or(url.port);
        url
    }))
}

/// The URL's host as a resolver or `ssh` takes it: an IPv6 literal without
/// its brackets (`git://[::1]:9418/r` connects to `::1`), as git does.
pub(crate) fn url_host(url: &gix::Url) -> Option<&str> {
    let host = url.host()?;
    Some(
        host.strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host),
    )
}

/// `git` run in a test fixture with no system or user config; fails the
/// test, saying what to install, when git is missing.
#[cfg(test)]
pub(crate) mod test_git {
    use std::path::Path;
    use std::process::Command;

    pub(crate) fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .output()
            .expect("git must be installed for this test (apt-get install git)");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// [`git`] with `input` on its standard input.
    pub(crate) fn git_with_input(dir: &Path, args: &[&str], input: &[u8]) -> String {
        let out = git_bytes_with_input(dir, args, input);
        String::from_utf8_lossy(&out).trim().to_string()
    }

    /// [`git_with_input`]'s output as it is (a pack, say).
    pub(crate) fn git_bytes_with_input(dir: &Path, args: &[&str], input: &[u8]) -> Vec<u8> {
        use std::io::Write as _;
        let mut child = Command::new("git")
            .args(args)
            .current_dir(dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("git must be installed for this test (apt-get install git)");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input).expect("writing to git");
        drop(stdin);
        let out = child.wait_with_output().expect("git");
        assert!(out.status.success(), "git {args:?} failed");
        out.stdout
    }
}
