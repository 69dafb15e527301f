//! git over SSH (`ssh://[user@]host[:port]/path`, `[user@]host:path`).
//!
//! Two ways, as git-sync users expect:
//! - built in ([`session`]): an in-process client (russh) that needs no ssh
//!   binary, no passwd entry and no `$HOME`: it authenticates with each
//!   `--ssh-key-file` in turn, checks the host key against
//!   `--ssh-known-hosts-file` ([`known_hosts`]) and runs `git-upload-pack`
//!   on an exec channel, bridged to gix through a socket pair;
//! - `GIT_SSH_COMMAND` set: that command is run through `sh -c` the way git
//!   runs it, with git-sync's `-i`/host-key options ([`command`]).
//!
//! The user is the URL's, or `git` when it has none: git would use the
//! local user name, which a container without a passwd entry has not, and
//! every hosted forge expects `git`.

pub mod command;
pub mod keys;
pub mod known_hosts;
pub mod session;
mod short_scalar;

use std::path::PathBuf;

use gix::protocol::transport::client::git as git_transport;
use gix::protocol::transport::Protocol;

use super::transport::{self, BoxedTransport, Budget, DeadlineReader, StderrBuffer};

/// The user when the URL names none (built-in client only).
pub const DEFAULT_USER: &str = "git";

/// How to reach SSH remotes: from `--ssh-key-file`, `--ssh-known-hosts`,
/// `--ssh-known-hosts-file` and `GIT_SSH_COMMAND`. Holds paths only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Tried in order.
    pub key_files: Vec<PathBuf>,
    /// `None`: any host key is accepted (`--ssh-known-hosts=false`).
    pub known_hosts: Option<PathBuf>,
    /// `GIT_SSH_COMMAND`: run it instead of the built-in client.
    pub command: Option<String>,
    /// Which skipped key files the log has named already.
    pub skipped_keys: keys::SkipNotices,
}

/// Errors of the SSH transports. None quotes key material.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid ssh URL: {0}")]
    Url(String),
    #[error("ssh key {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("cannot read the known_hosts file {path}: {message} (set --ssh-known-hosts-file, or --ssh-known-hosts=false to skip host key checks)")]
    KnownHostsFile { path: PathBuf, message: String },
    #[error("host key verification failed: {0}")]
    HostKey(String),
    #[error(
        "ssh authentication failed for {user}@{host}: none of the keys ({files}) was accepted"
    )]
    Auth {
        user: String,
        host: String,
        files: String,
    },
    #[error("could not resolve {host}: {source}")]
    Resolve {
        host: String,
        source: std::io::Error,
    },
    #[error("could not connect to {host}:{port}: {source}")]
    Connect {
        host: String,
        port: u16,
        source: std::io::Error,
    },
    #[error("ssh connection to {host}:{port} failed: {message}")]
    Protocol {
        host: String,
        port: u16,
        message: String,
    },
    #[error("could not run GIT_SSH_COMMAND through sh (it needs sh and the command in the image; unset GIT_SSH_COMMAND to use the built-in client): {0}")]
    Spawn(std::io::Error),
    #[error("sync timeout exceeded while connecting over ssh")]
    Timeout,
    #[error("the ssh session ended unexpectedly (see the log for its last error)")]
    SessionEnded,
    #[error("interrupted by shutdown")]
    Interrupted,
}

/// A git transport to an ssh remote: through `GIT_SSH_COMMAND` when set,
/// else the built-in client. Its stderr (the server's) goes to `stderr`.
pub fn connect(
    url: &gix::Url,
    opts: &Options,
    budget: &Budget,
    stderr: StderrBuffer,
) -> Result<BoxedTransport, Error> {
    let target = Target::from_url(url)?;
    if let Some(ssh_command) = &opts.command {
        let command = command::build(ssh_command, &target, opts);
        let connection =
            transport::spawn_process(command, url, budget, stderr).map_err(Error::Spawn)?;
        return Ok(Box::new(connection));
    }
    let socket = session::open(&target, opts, budget, stderr)?;
    // Writes are small (wants/haves); a bound keeps a stuck bridge from blocking forever.
    let writer = socket
        .try_clone()
        .and_then(|w| {
            w.set_write_timeout(Some(
                budget.remaining().max(std::time::Duration::from_millis(10)),
            ))?;
            Ok(w)
        })
        .map_err(|source| Error::Connect {
            host: target.host.clone(),
            port: target.port_or_default(),
            source,
        })?;
    let connection: git_transport::blocking_io::Connection<_, transport::Batched<_>> =
        git_transport::blocking_io::Connection::new(
            DeadlineReader::new(socket, budget.clone()),
            transport::batched(writer),
            Protocol::V2,
            url.path.clone(),
            None::<(String, Option<u16>)>,
            git_transport::ConnectMode::Process,
            false,
        )
        .custom_url(Some(url.to_bstring()));
    Ok(Box::new(connection))
}

/// Where to connect and what to run there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// From the URL, if it names one.
    pub user: Option<String>,
    pub host: String,
    /// From the URL, if it names one.
    pub port: Option<u16>,
    /// The repository path as git passes it to `git-upload-pack`.
    pub path: String,
}

impl Target {
    /// The target of an ssh remote (see [`Target::from_url`]).
    pub fn from_remote(remote: &crate::git::Remote) -> Result<Self, Error> {
        Self::from_url(remote.gix())
    }

    /// From an `ssh://` or scp-like URL. Refuses a host or path starting
    /// with `-` (it would be taken for an option), as git does.
    pub fn from_url(url: &gix::Url) -> Result<Self, Error> {
        let host = crate::git::url_host(url)
            .filter(|h| !h.is_empty())
            .ok_or_else(|| Error::Url("no host".into()))?
            .to_string();
        let path = remote_path(&String::from_utf8_lossy(url.path.as_slice()));
        let user = url.user().map(str::to_string).filter(|u| !u.is_empty());
        // As git's looks_like_command_line_option: GIT_SSH_COMMAND gets
        // `user@host` as one argument, which ssh would read as an option.
        let dashed = user.as_deref().unwrap_or(&host).starts_with('-');
        if dashed || host.starts_with('-') || path.starts_with('-') {
            return Err(Error::Url(
                "user, host and path must not start with '-'".into(),
            ));
        }
        if path.is_empty() {
            return Err(Error::Url("no repository path".into()));
        }
        Ok(Self {
            user,
            host,
            port: url.port,
            path,
        })
    }

    /// The user the built-in client logs in as.
    pub fn login(&self) -> &str {
        self.user.as_deref().unwrap_or(DEFAULT_USER)
    }

    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(22)
    }

    /// The remote command, as git sends it: `git-upload-pack '<path>'`.
    pub fn upload_pack_command(&self) -> String {
        format!("git-upload-pack {}", sq_quote(&self.path))
    }
}

/// git's path rule: `ssh://host/~user/x` means `~user/x`.
fn remote_path(path: &str) -> String {
    match path.strip_prefix('/') {
        Some(rest) if rest.starts_with('~') => rest.to_string(),
        _ => path.to_string(),
    }
}

/// Single-quotes for a POSIX shell, as git's `sq_quote_buf` (`'` and `!`
/// are closed over, since some shells expand `!` inside quotes).
pub fn sq_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' | '!' => {
                out.push_str("'\\");
                out.push(c);
                out.push('\'');
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Target {
        Target::from_url(&crate::git::parse_url(url).expect("url parses")).expect("ssh target")
    }

    #[test]
    fn url_forms() {
        let t = target("ssh://alice@host.example:2222/srv/repo.git");
        assert_eq!(t.user.as_deref(), Some("alice"));
        assert_eq!((t.host.as_str(), t.port), ("host.example", Some(2222)));
        assert_eq!(t.path, "/srv/repo.git");
        let t = target("git@github.com:org/repo.git");
        assert_eq!(t.user.as_deref(), Some("git"));
        assert_eq!((t.host.as_str(), t.port), ("github.com", None));
        assert_eq!(t.path, "org/repo.git");
        // IPv6 literals: bare, as ssh, the resolver and known_hosts take them.
        let t = target("ssh://git@[::1]:2222/srv/repo.git");
        assert_eq!((t.host.as_str(), t.port), ("::1", Some(2222)));
        assert_eq!(t.path, "/srv/repo.git");
        let t = target("ssh://[fe80::1]/srv/repo.git");
        assert_eq!((t.host.as_str(), t.port), ("fe80::1", None));
        let t = target("ssh://host/~bob/repo");
        assert_eq!((t.login(), t.path.as_str()), (DEFAULT_USER, "~bob/repo"));
    }

    #[test]
    fn option_like_hosts_and_paths_are_refused() {
        let url = crate::git::parse_url("ssh://host/-oProxyCommand=x").expect("parses");
        // The path keeps its leading slash here, so it is harmless and accepted.
        assert!(Target::from_url(&url).is_ok());
        let url = crate::git::parse_url("host:-oProxyCommand=x").expect("parses");
        assert!(Target::from_url(&url).is_err());
        // A user is the start of `user@host`, one argument to GIT_SSH_COMMAND.
        for raw in [
            "ssh://-oProxyCommand=touch%20x@host/r",
            "-oProxyCommand=x@host:r",
        ] {
            let url = crate::git::parse_url(raw).expect("parses");
            let err = Target::from_url(&url).expect_err(raw);
            assert!(err.to_string().contains("must not start with '-'"), "{err}");
        }
    }

    #[test]
    fn quoting_matches_git() {
        assert_eq!(sq_quote("/a b"), "'/a b'");
        assert_eq!(sq_quote("it's!"), "'it'\\''s'\\!''");
        let t = Target {
            user: None,
            host: "h".into(),
            port: None,
            path: "/r it's".into(),
        };
        assert_eq!(t.upload_pack_command(), "git-upload-pack '/r it'\\''s'");
    }
}
