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
use crate::git::Remote;

const DEFAULT_KEY_FILE: &str = "/etc/git-secret/ssh";
const DEFAULT_KNOWN_HOSTS_FILE: &str = "/etc/git-secret/known_hosts";

impl Checker<'_> {
    /// The SSH options (always built: they only matter for ssh remotes).
    pub(super) fn ssh(&mut self, repo: Option<&Remote>) -> Options {
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
        if let Some(repo) = repo.filter(|r| repo_scheme(r.expose()).as_deref() == Some("ssh")) {
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
        super::absolute_reread(Path::new(raw)).unwrap_or_else(|e| {
            self.fail(id, format!("cannot make {raw:?} absolute: {e}"));
            PathBuf::from(raw)
        })
    }

    fn check_ssh_repo(&mut self, repo: &Remote, opts: &Options) {
        if repo.password().is_some() {
            self.fail(
                "repo",
                "an ssh URL must not hold a password: ssh authenticates with --ssh-key-file",
            );
            return;
        }
        let target = match Target::from_remote(repo) {
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

#[cfg(test)]
mod tests {
    use super::super::tests::{config, problems};
    use super::*;

    const REPO: &str = "--repo=git@example.com:org/site.git";

    fn ssh_config(extra: &[&str], env: &[(&str, &str)]) -> super::super::Config {
        let mut args = vec![REPO, "--root=/srv/git"];
        args.extend_from_slice(extra);
        config(&args, env)
    }

    #[test]
    fn git_sync_defaults() {
        let c = ssh_config(&[], &[]);
        assert_eq!(c.ssh.key_files, [PathBuf::from(DEFAULT_KEY_FILE)]);
        assert_eq!(
            c.ssh.known_hosts,
            Some(PathBuf::from(DEFAULT_KNOWN_HOSTS_FILE))
        );
        assert_eq!(c.ssh.command, None);
        // Missing files are named in warnings: every sync will fail.
        let warnings = c.warnings.join("\n");
        assert!(
            warnings
                .contains("--ssh-key-file (GITSYNC_SSH_KEY_FILE): cannot use /etc/git-secret/ssh"),
            "{warnings}"
        );
    }

    #[test]
    fn legacy_names_relative_paths_and_git_ssh_command() {
        let c = ssh_config(
            &["--ssh-key-file=rel/key"],
            &[
                ("GIT_KNOWN_HOSTS", "false"),
                ("GIT_SSH_KNOWN_HOSTS_FILE", "/kh"),
                ("GIT_SSH_COMMAND", "ssh -v"),
            ],
        );
        let cwd = std::env::current_dir().expect("cwd");
        assert_eq!(c.ssh.key_files, [cwd.join("rel/key")]);
        assert_eq!(c.ssh.known_hosts, None, "GIT_KNOWN_HOSTS=false");
        assert_eq!(c.ssh.command.as_deref(), Some("ssh -v"));
        let warnings = c.warnings.join("\n");
        assert!(
            warnings.contains("any ssh host key is accepted"),
            "{warnings}"
        );
        // With GIT_SSH_COMMAND, ssh reads the files itself: not checked here.
        assert!(!warnings.contains("cannot use"), "{warnings}");

        let c = ssh_config(&[], &[("GIT_SSH_KEY_FILE", "/a:/b")]);
        assert_eq!(c.ssh.key_files, [PathBuf::from("/a"), PathBuf::from("/b")]);
    }

    #[test]
    fn bad_values_are_errors_naming_the_flag() {
        let p = problems(
            &[
                "--repo=ssh://git:pw@example.com/site.git",
                "--root=/r",
                "--ssh-known-hosts=maybe",
            ],
            &[],
        );
        let all = p.join("\n");
        assert!(
            all.contains("--ssh-known-hosts (GITSYNC_SSH_KNOWN_HOSTS)"),
            "{all}"
        );
        assert!(all.contains("must not hold a password"), "{all}");
        assert!(!all.contains("pw@"), "{all}");
        let p = problems(
            &["--repo=host:-oProxyCommand=x", "--root=/r", "--link=l"],
            &[],
        );
        assert!(p[0].contains("must not start with '-'"), "{p:?}");
    }

    #[test]
    fn other_repositories_ignore_the_ssh_settings() {
        let c = config(
            &[
                "--repo=https://h/r",
                "--root=/r",
                "--ssh-key-file=/nonexistent",
            ],
            &[],
        );
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert_eq!(c.ssh.key_files, [PathBuf::from("/nonexistent")]);
    }
}
