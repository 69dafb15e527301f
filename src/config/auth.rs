//! The flags of the credentials `--repo` is fetched with, checked and
//! turned into [`crate::auth`]'s and [`crate::git::ssh`]'s types.
//!
//! ## HTTP(S)
//!
//! `--username` with `GITSYNC_PASSWORD` (or v3's
//! `--password`) or `--password-file`, or `user:password@` in an http(s)
//! `--repo`. Owns git-sync's rules for them (checked with every other flag)
//! and the reading of the password for each sync.
//!
//! * `--username` needs exactly one of `GITSYNC_PASSWORD` / `--password-file`;
//!   a password without `--username` is an error, and so are credentials in
//!   `--repo` together with `--username` (any URL scheme, as git-sync).
//! * Credentials in an http(s) `--repo` are taken out of the URL (as
//!   git-sync does): the rest of the program only ever sees the URL without
//!   them. A user without a password gets an empty one (git-sync answers
//!   git's password prompt with `true`, i.e. nothing).
//! * `--password-file` is made absolute (relative to the current directory,
//!   as git-sync reads it) and read before every sync, so a rotated token is
//!   used from the next sync on. A file that cannot be read fails that sync,
//!   not the start-up (only warned about then). As the other secret files:
//!   trailing whitespace removed, at most 64 KiB, not empty.
//! * Environment passwords lose trailing whitespace too; a blank one is an error.
//!
//! ## SSH
//!
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

use super::checker::default_str;
use crate::cli::Flag;
use std::path::{Path, PathBuf};

use super::{repo_scheme, Checker, SecretBytes};
use crate::auth::{HttpAuth, PasswordSource};
use crate::git::ssh::{self, keys, known_hosts::KnownHosts, Options, Target};
use crate::git::Remote;

fn is_http(repo: &str) -> bool {
    matches!(repo_scheme(repo).as_deref(), Some("http" | "https"))
}

impl Checker<'_> {
    /// git-sync's credential rules (every problem reported); `Some` when
    /// credentials are configured and valid. `repo` is the raw `--repo`.
    pub(super) fn http_auth(&mut self, repo: Option<&Remote>) -> Option<HttpAuth> {
        let username = self.raw(Flag::Username).map(str::to_string);
        let value = self.password_value();
        let file = self.password_file();
        let in_url = repo.and_then(Remote::credentials);
        let auth = match username {
            Some(username) => self.with_username(username, value, file, in_url.is_some()),
            None => self.without_username(value, file, in_url),
        }?;
        self.warn_about_transport(repo);
        Some(auth)
    }

    /// `--username` given: exactly one password source, nothing in the URL.
    fn with_username(
        &mut self,
        username: String,
        value: Option<(Flag, SecretBytes)>,
        file: Option<Result<PathBuf, ()>>,
        in_url: bool,
    ) -> Option<HttpAuth> {
        if in_url {
            let repo = self.cli.label(Flag::Repo);
            self.fail(
                Flag::Username,
                format!("cannot be combined with credentials in {repo}; use one or the other"),
            );
        }
        let password = match (value, file) {
            (None, None) => {
                let (env, file) = (
                    self.cli.label(Flag::EnvPassword),
                    self.cli.label(Flag::PasswordFile),
                );
                self.fail(
                    Flag::Username,
                    format!("requires a password: set {env} or {file}"),
                );
                return None;
            }
            (Some((id, _)), Some(_)) => {
                let file = self.cli.label(Flag::PasswordFile);
                self.fail(id, format!("cannot be combined with {file}; set only one"));
                return None;
            }
            (Some((_, secret)), None) => PasswordSource::Value(secret),
            (None, Some(Ok(path))) => PasswordSource::File {
                path,
                label: self.cli.label(Flag::PasswordFile),
            },
            (None, Some(Err(()))) => return None,
        };
        (!in_url).then_some(HttpAuth { username, password })
    }

    /// No `--username`: a password alone is an error; an http(s) URL may
    /// carry the credentials.
    fn without_username(
        &mut self,
        value: Option<(Flag, SecretBytes)>,
        file: Option<Result<PathBuf, ()>>,
        in_url: Option<(String, Option<String>)>,
    ) -> Option<HttpAuth> {
        let username = self.cli.label(Flag::Username);
        let mut refused = false;
        if let Some((id, _)) = value {
            self.fail(id, format!("requires {username}"));
            refused = true;
        }
        if file.is_some() {
            self.fail(Flag::PasswordFile, format!("requires {username}"));
            refused = true;
        }
        let (user, password) = in_url.filter(|_| !refused)?;
        let repo = self.raw(Flag::Repo)?;
        is_http(repo).then(|| HttpAuth {
            username: user,
            password: PasswordSource::Value(SecretBytes::new(password.unwrap_or_default())),
        })
    }

    /// The password given as a value: v3's `--password` (wins, as in
    /// git-sync) or `GITSYNC_PASSWORD`, with the id that supplied it.
    fn password_value(&mut self) -> Option<(Flag, SecretBytes)> {
        let flag = self.env_secret(Flag::DeprecatedPassword);
        let env = self.env_secret(Flag::EnvPassword);
        match (flag, env) {
            (Some(flag), env) => {
                if env.is_some() {
                    let (flag, env) = (
                        self.cli.label(Flag::DeprecatedPassword),
                        self.cli.label(Flag::EnvPassword),
                    );
                    self.warnings.push(format!("{flag} overrides {env}"));
                }
                Some((Flag::DeprecatedPassword, flag))
            }
            (None, Some(env)) => Some((Flag::EnvPassword, env)),
            (None, None) => None,
        }
    }

    /// `--password-file` made absolute: `Err` when that failed (reported).
    /// Only warned about when it cannot be read now: each sync reads it.
    fn password_file(&mut self) -> Option<Result<PathBuf, ()>> {
        let raw = self.raw(Flag::PasswordFile)?;
        Some(self.secret_path(Flag::PasswordFile, raw).ok_or(()))
    }

    /// Credentials only go to http(s) servers, and over http:// unencrypted.
    fn warn_about_transport(&mut self, repo: Option<&Remote>) {
        let Some(scheme) = repo.and_then(|r| repo_scheme(r.expose())) else {
            return;
        };
        let repo = self.cli.label(Flag::Repo);
        match scheme.as_str() {
            "https" => {}
            "http" => self.warnings.push(format!(
                "{repo} is http://: the password is sent unencrypted; prefer https://"
            )),
            _ => self.warnings.push(format!(
                "{}: credentials are only used for http:// and https:// repositories",
                self.cli.label(Flag::Username)
            )),
        }
    }
}

impl Checker<'_> {
    /// The SSH options (always built: they only matter for ssh remotes).
    pub(super) fn ssh(&mut self, repo: Option<&Remote>) -> Options {
        let opts = Options {
            key_files: self.ssh_key_files(),
            known_hosts: self.bool(Flag::SshKnownHosts).unwrap_or(true).then(|| {
                self.ssh_path(
                    Flag::SshKnownHostsFile,
                    default_str(Flag::SshKnownHostsFile),
                )
            }),
            command: self
                .raw(Flag::EnvGitSshCommand)
                .filter(|c| !c.trim().is_empty())
                .map(str::to_string),
            skipped_keys: Default::default(),
        };
        if let Some(repo) = repo.filter(|r| repo_scheme(r.expose()).as_deref() == Some("ssh")) {
            self.check_ssh_repo(repo, &opts);
        }
        opts
    }

    fn ssh_key_files(&mut self) -> Vec<PathBuf> {
        let given: Vec<String> = self.cli.ssh_key_file.clone();
        let given = given.iter().map(String::as_str).filter(|p| !p.is_empty());
        let mut files: Vec<PathBuf> = given.map(|p| self.absolute(Flag::SshKeyFile, p)).collect();
        if files.is_empty() {
            files.push(PathBuf::from(default_str(Flag::SshKeyFile)));
        }
        files
    }

    fn ssh_path(&mut self, id: Flag, default: &str) -> PathBuf {
        match self.raw(id) {
            Some(raw) => self.absolute(id, raw),
            None => PathBuf::from(default),
        }
    }

    /// `raw` made absolute against the current directory, symlinks kept.
    fn absolute(&mut self, id: Flag, raw: &str) -> PathBuf {
        super::absolute_reread(Path::new(raw)).unwrap_or_else(|e| {
            self.fail(id, format!("cannot make {raw:?} absolute: {e}"));
            PathBuf::from(raw)
        })
    }

    fn check_ssh_repo(&mut self, repo: &Remote, opts: &Options) {
        if repo.password().is_some() {
            self.fail(
                Flag::Repo,
                "an ssh URL must not hold a password: ssh authenticates with --ssh-key-file",
            );
            return;
        }
        let target = match Target::from_remote(repo) {
            Ok(target) => target,
            Err(e) => return self.fail(Flag::Repo, e),
        };
        if opts.known_hosts.is_none() {
            let label = self.cli.label(Flag::SshKnownHosts);
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
                self.warn_unusable(Flag::SshKeyFile, path, &why);
            }
        }
        if let Some(path) = &opts.known_hosts {
            self.check_known_hosts(path, &target);
        }
    }

    fn check_known_hosts(&mut self, path: &Path, target: &Target) {
        match KnownHosts::load(path) {
            Err(why) => self.warn_unusable(Flag::SshKnownHostsFile, path, &why),
            Ok(kh)
                if kh
                    .algorithms_for(&target.host, target.port_or_default())
                    .is_empty() =>
            {
                let name = ssh::known_hosts::host_port(&target.host, target.port_or_default());
                let why = format!("it lists no key for {name}");
                self.warn_unusable(Flag::SshKnownHostsFile, path, &why);
            }
            Ok(_) => {}
        }
    }

    fn warn_unusable(&mut self, id: Flag, path: &Path, why: &str) {
        let label = self.cli.label(id);
        self.warnings.push(format!(
            "{label}: cannot use {} now ({why}); every sync fails until it can",
            path.display()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{base, config, problems, with};
    use super::*;

    const SECRET: &str = "s3cret-Pa55";

    fn auth(c: &super::super::Config) -> &HttpAuth {
        c.auth.as_ref().expect("credentials configured")
    }

    #[test]
    fn username_with_env_password() {
        for (user_env, pass_env) in [
            ("GITSYNC_USERNAME", "GITSYNC_PASSWORD"),
            ("GIT_SYNC_USERNAME", "GIT_SYNC_PASSWORD"),
        ] {
            let c = config(
                &base(),
                &[(user_env, "alice"), (pass_env, &format!("{SECRET}\n"))],
            );
            assert_eq!(auth(&c).username, "alice");
            assert_eq!(auth(&c).password().as_deref(), Ok(SECRET));
            assert_eq!(c.repo.expose(), "https://example.com/org/site.git");
            let dbg = format!("{c:?}");
            assert!(!dbg.contains(SECRET) && !dbg.contains("alice"), "{dbg}");
        }
        // The hidden test flag and v3's --password (which wins, with warnings).
        let c = config(
            &with(&["--username=a", "--__env__GITSYNC_PASSWORD=pw1"]),
            &[],
        );
        assert_eq!(auth(&c).password().as_deref(), Ok("pw1"));
        let c = config(
            &with(&["--username=a", "--password=pw2"]),
            &[("GITSYNC_PASSWORD", "pw1")],
        );
        assert_eq!(auth(&c).password().as_deref(), Ok("pw2"));
        let w = c.warnings.join("\n");
        assert!(w.contains("flag --password has been deprecated"), "{w}");
        assert!(
            w.contains("--password overrides GITSYNC_PASSWORD (environment only)"),
            "{w}"
        );
    }

    #[test]
    fn password_file_is_absolute_and_read_at_each_call() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "first\n").unwrap();
        let arg = format!("--password-file={}", file.display());
        let c = config(&with(&["--username=git", &arg]), &[]);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let a = auth(&c);
        assert_eq!(a.password().as_deref(), Ok("first"));
        std::fs::write(&file, "second").unwrap();
        assert_eq!(a.password().as_deref(), Ok("second"), "re-read");
        std::fs::remove_file(&file).unwrap();
        let e = a.password().unwrap_err();
        assert!(
            e.starts_with(&format!(
                "--password-file (GITSYNC_PASSWORD_FILE): cannot read {:?}",
                file.display().to_string()
            )),
            "{e}"
        );
        std::fs::write(&file, " \n").unwrap();
        assert!(a.password().unwrap_err().ends_with("is empty"));

        // Relative to the current directory; missing at start-up = a warning.
        let c = config(
            &with(&["--username=git"]),
            &[("GIT_SYNC_PASSWORD_FILE", "no/such/token")],
        );
        let PasswordSource::File { path, label } = &auth(&c).password else {
            panic!("expected a file");
        };
        assert_eq!(
            path,
            &std::env::current_dir().unwrap().join("no/such/token")
        );
        assert_eq!(label, "--password-file (GIT_SYNC_PASSWORD_FILE)");
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("every sync fails until it can")),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn credentials_in_an_http_url_move_to_auth() {
        let c = config(
            &[
                "--repo",
                "https://bob:p%40ss@example.com/r.git",
                "--root",
                "/g",
            ],
            &[],
        );
        assert_eq!(auth(&c).username, "bob");
        assert_eq!(auth(&c).password().as_deref(), Ok("p@ss"));
        assert_eq!(c.repo.expose(), "https://example.com/r.git");
        // A lone user (often a token) gets an empty password.
        let c = config(&["--repo", "http://t0ken@h:8080/r", "--root", "/g"], &[]);
        assert_eq!(auth(&c).username, "t0ken");
        assert_eq!(auth(&c).password().as_deref(), Ok(""));
        assert_eq!(c.repo.expose(), "http://h:8080/r");
        assert!(!format!("{c:?}").contains("t0ken"));
        let w = c.warnings.join("\n");
        assert!(w.contains("the password is sent unencrypted"), "{w}");
        // Only http(s): a git:// user stays in the URL, unused.
        let c = config(&["--repo", "git://u@h/r", "--root", "/g"], &[]);
        assert!(c.auth.is_none());
        assert_eq!(c.repo.expose(), "git://u@h/r");
    }

    #[test]
    fn conflicts_are_all_reported_naming_flag_and_variable() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, SECRET).unwrap();
        let arg = format!("--password-file={}", file.display());
        let p = problems(
            &[
                "--repo=https://u:url-s3cret@h/r",
                "--root=/g",
                "--username=alice",
                &arg,
                "--period=x",
            ],
            &[("GITSYNC_PASSWORD", SECRET)],
        );
        assert_eq!(
            p,
            [
                "--username (GITSYNC_USERNAME): cannot be combined with credentials in --repo \
                 (GITSYNC_REPO); use one or the other",
                "GITSYNC_PASSWORD (environment only): cannot be combined with --password-file \
                 (GITSYNC_PASSWORD_FILE); set only one",
                "--period (GITSYNC_PERIOD): invalid duration \"x\"",
            ]
        );
        let p = problems(
            &base(),
            &[
                ("GIT_SYNC_PASSWORD", SECRET),
                ("GITSYNC_PASSWORD_FILE", "/t"),
            ],
        );
        assert_eq!(
            p,
            [
                "GIT_SYNC_PASSWORD (environment only): requires --username (GITSYNC_USERNAME)",
                "--password-file (GITSYNC_PASSWORD_FILE): requires --username (GITSYNC_USERNAME)",
            ]
        );
        let p = problems(&with(&["--username=alice"]), &[]);
        assert_eq!(
            p,
            [
                "--username (GITSYNC_USERNAME): requires a password: set GITSYNC_PASSWORD \
              (environment only) or --password-file (GITSYNC_PASSWORD_FILE)"
            ]
        );
        let p = problems(
            &with(&["--username=alice"]),
            &[("GITSYNC_PASSWORD", "  \n")],
        );
        assert_eq!(
            p[0],
            "GITSYNC_PASSWORD (environment only): must not be blank"
        );
        // Password without --username, with the credentials in the URL: still an error.
        let p = problems(
            &["--repo=https://u:p@h/r", "--root=/g"],
            &[("GITSYNC_PASSWORD", SECRET)],
        );
        assert_eq!(p.len(), 1, "{p:?}");
        let all = format!("{p:?}");
        assert!(
            !all.contains(SECRET) && !all.contains("url-s3cret"),
            "{all}"
        );
    }

    #[test]
    fn non_http_repositories_warn_that_credentials_are_unused() {
        let c = config(
            &["--repo=git://h/r", "--root=/g", "--username=a"],
            &[("GITSYNC_PASSWORD", "p")],
        );
        assert!(c.auth.is_some());
        let w = c.warnings.join("\n");
        assert!(
            w.contains("--username (GITSYNC_USERNAME): credentials are only used for http://"),
            "{w}"
        );
    }

    #[test]
    fn an_unparsable_repo_is_a_configuration_error_without_its_password() {
        let p = problems(
            &["--repo", "https://u:s3cret@[::1/r", "--root", "/srv/git"],
            &[],
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("--repo (GITSYNC_REPO): invalid repository URL https://u:REDACTED@"),
            "{p:?}"
        );
        assert!(!p[0].contains("s3cret"), "{p:?}");
    }

    #[test]
    fn strip_userinfo_only_touches_the_authority() {
        for (url, stripped) in [
            ("https://u:p@h/r", "https://h/r"),
            ("https://tok@h:8443/a/b", "https://h:8443/a/b"),
            ("https://h/a@b", "https://h/a@b"),
            ("https://u:p%40q@h/x@y", "https://h/x@y"),
            ("https://u:p@h", "https://h"),
            ("/local/path@x", "/local/path@x"),
        ] {
            let remote = Remote::parse(url).expect("parses");
            assert_eq!(remote.without_userinfo().expose(), stripped, "{url}");
        }
    }

    #[test]
    fn url_userinfo_is_decoded() {
        let url_userinfo = |url: &str| Remote::parse(url).expect("parses").credentials();
        assert_eq!(
            url_userinfo("https://al%40ice:p%40ss@h/r"),
            Some(("al@ice".to_string(), Some("p@ss".to_string())))
        );
        assert_eq!(
            url_userinfo("https://t0ken@h/r"),
            Some(("t0ken".to_string(), None))
        );
        assert_eq!(url_userinfo("https://h/r"), None);
        assert_eq!(url_userinfo("git@github.com:org/r.git"), None);
    }
}

#[cfg(test)]
mod ssh_tests {
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
        assert_eq!(
            c.ssh.key_files,
            [PathBuf::from(default_str(Flag::SshKeyFile))]
        );
        assert_eq!(
            c.ssh.known_hosts,
            Some(PathBuf::from(default_str(Flag::SshKnownHostsFile)))
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
