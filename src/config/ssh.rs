//! SSH settings, as git-sync's: `--ssh-key-file` (repeatable, default
//! `/etc/git-secret/ssh`), `--ssh-known-hosts` (default true),
//! `--ssh-known-hosts-file` (default `/etc/git-secret/known_hosts`) and the
//! environment-only `GIT_SSH_COMMAND`.
//!
//! * Paths are made absolute without resolving symlinks: a Kubernetes
//!   Secret volume swaps its files through a symlink, and the files are read
//!   again at every sync, so a rotated key is used without a restart.
//! * For an ssh `--repo` the files are checked now; one that cannot be read
//!   or parsed (or is passphrase-protected, or a known_hosts that lists no
//!   key for the host) is a warning naming the flag and the file: every sync
//!   fails with the same reason until the Secret is fixed. Not with
//!   `GIT_SSH_COMMAND`, whose ssh reads them itself (as git-sync: unchecked).
//! * A password in an ssh `--repo` is refused: ssh authenticates with keys.
//! * `--ssh-known-hosts=false` is warned about: any host key is accepted.

use std::path::{Path, PathBuf};

use super::{repo_scheme, Checker};
use crate::git::ssh::{self, keys, known_hosts::KnownHosts, Options, Target};

const DEFAULT_KEY_FILE: &str = "/etc/git-secret/ssh";
const DEFAULT_KNOWN_HOSTS_FILE: &str = "/etc/git-secret/known_hosts";

impl Checker<'_> {
    /// The SSH options (always built: they only matter for ssh remotes).
    pub(super) fn ssh(&mut self, repo: Option<&str>) -> Options {
        let opts = Options {
            key_files: self.ssh_key_files(),
            known_hosts: self
                .bool("ssh_known_hosts")
                .unwrap_or(true)
                .then(|| self.ssh_path("ssh_known_hosts_file", DEFAULT_KNOWN_HOSTS_FILE)),
            command: self
                .raw("env_git_ssh_command")
                .filter(|c| !c.trim().is_empty())
                .map(str::to_string),
        };
        if let Some(repo) = repo.filter(|r| repo_scheme(r).as_deref() == Some("ssh")) {
            self.check_ssh_repo(repo, &opts);
        }
        opts
    }

    fn ssh_key_files(&mut self) -> Vec<PathBuf> {
        let given: Vec<String> = self.cli.ssh_key_file.clone();
        let given = given.iter().map(String::as_str).filter(|p| !p.is_empty());
        let mut files: Vec<PathBuf> = given.map(|p| self.absolute("ssh_key_file", p)).collect();
        if files.is_empty() {
            files.push(PathBuf::from(DEFAULT_KEY_FILE));
        }
        files
    }

    fn ssh_path(&mut self, id: &str, default: &str) -> PathBuf {
        match self.raw(id) {
            Some(raw) => self.absolute(id, raw),
            None => PathBuf::from(default),
        }
    }

    /// `raw` made absolute against the current directory, symlinks kept.
    fn absolute(&mut self, id: &str, raw: &str) -> PathBuf {
        std::path::absolute(raw).unwrap_or_else(|e| {
            self.fail(id, format!("cannot make {raw:?} absolute: {e}"));
            PathBuf::from(raw)
        })
    }

    fn check_ssh_repo(&mut self, repo: &str, opts: &Options) {
        let target = match crate::git::parse_url(repo) {
            Ok(url) if url.password().is_some() => {
                self.fail(
                    "repo",
                    "an ssh URL must not hold a password: ssh authenticates with --ssh-key-file",
                );
                return;
            }
            Ok(url) => Target::from_url(&url),
            Err(e) => Err(ssh::Error::Url(e)),
        };
        let target = match target {
            Ok(target) => target,
            Err(e) => return self.fail("repo", e),
        };
        if opts.known_hosts.is_none() {
            let label = self.cli.label("ssh_known_hosts");
            self.warnings.push(format!(
                "{label} is false: any ssh host key is accepted, so anyone on the network path \
                 can impersonate {}",
                target.host
            ));
        }
        if opts.command.is_some() {
            return;
        }
        for path in &opts.key_files {
            if let Err(why) = keys::load(path) {
                self.warn_unusable("ssh_key_file", path, &why);
            }
        }
        if let Some(path) = &opts.known_hosts {
            self.check_known_hosts(path, &target);
        }
    }

    fn check_known_hosts(&mut self, path: &Path, target: &Target) {
        match KnownHosts::load(path) {
            Err(why) => self.warn_unusable("ssh_known_hosts_file", path, &why),
            Ok(kh)
                if kh
                    .algorithms_for(&target.host, target.port_or_default())
                    .is_empty() =>
            {
                let name = ssh::known_hosts::host_port(&target.host, target.port_or_default());
                let why = format!("it lists no key for {name}");
                self.warn_unusable("ssh_known_hosts_file", path, &why);
            }
            Ok(_) => {}
        }
    }

    fn warn_unusable(&mut self, id: &str, path: &Path, why: &str) {
        let label = self.cli.label(id);
        self.warnings.push(format!(
            "{label}: cannot use {} now ({why}); every sync fails until it can",
            path.display()
        ));
    }
}
