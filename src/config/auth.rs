//! HTTP(S) credentials: `--username` with `GITSYNC_PASSWORD` (or v3's
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

use std::path::PathBuf;

use super::{read_secret_file, repo_scheme, Checker, SecretBytes};
use crate::git::Remote;

/// Who git-sidecar is to an http(s) server. `Debug` shows neither the
/// password nor the user name (a URL's lone user is often a token).
#[derive(Clone)]
pub struct HttpAuth {
    pub username: String,
    pub password: PasswordSource,
}

/// Where the password comes from.
#[derive(Clone)]
pub enum PasswordSource {
    /// `GITSYNC_PASSWORD`, `--password` or the URL: fixed for the process's life.
    Value(SecretBytes),
    /// `--password-file` (absolute): read before every sync. `label` names
    /// the flag and the environment variable it came from, for errors.
    File { path: PathBuf, label: String },
}

impl std::fmt::Debug for HttpAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let password = match &self.password {
            PasswordSource::Value(_) => "REDACTED".to_string(),
            PasswordSource::File { path, .. } => format!("file {}", path.display()),
        };
        f.debug_struct("HttpAuth")
            .field("username", &"REDACTED")
            .field("password", &password)
            .finish()
    }
}

impl HttpAuth {
    /// The password for one sync: `--password-file` is read now. Errors
    /// name the flag and the path, never the content.
    pub fn password(&self) -> Result<String, String> {
        let bytes = match &self.password {
            PasswordSource::Value(secret) => secret.clone(),
            PasswordSource::File { path, label } => {
                read_secret_file(&path.to_string_lossy()).map_err(|e| format!("{label}: {e}"))?
            }
        };
        String::from_utf8(bytes.expose().to_vec()).map_err(|_| match &self.password {
            PasswordSource::File { path, label } => {
                format!("{label}: {:?} is not valid UTF-8", path.display())
            }
            PasswordSource::Value(_) => "the password is not valid UTF-8".to_string(),
        })
    }
}

fn is_http(repo: &str) -> bool {
    matches!(repo_scheme(repo).as_deref(), Some("http" | "https"))
}

impl Checker<'_> {
    /// git-sync's credential rules (every problem reported); `Some` when
    /// credentials are configured and valid. `repo` is the raw `--repo`.
    pub(super) fn http_auth(&mut self, repo: Option<&Remote>) -> Option<HttpAuth> {
        let username = self.raw("username").map(str::to_string);
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
        value: Option<(&'static str, SecretBytes)>,
        file: Option<Result<PathBuf, ()>>,
        in_url: bool,
    ) -> Option<HttpAuth> {
        if in_url {
            let repo = self.cli.label("repo");
            self.fail(
                "username",
                format!("cannot be combined with credentials in {repo}; use one or the other"),
            );
        }
        let password = match (value, file) {
            (None, None) => {
                let (env, file) = (
                    self.cli.label("env_password"),
                    self.cli.label("password_file"),
                );
                self.fail(
                    "username",
                    format!("requires a password: set {env} or {file}"),
                );
                return None;
            }
            (Some((id, _)), Some(_)) => {
                let file = self.cli.label("password_file");
                self.fail(id, format!("cannot be combined with {file}; set only one"));
                return None;
            }
            (Some((_, secret)), None) => PasswordSource::Value(secret),
            (None, Some(Ok(path))) => PasswordSource::File {
                path,
                label: self.cli.label("password_file"),
            },
            (None, Some(Err(()))) => return None,
        };
        (!in_url).then_some(HttpAuth { username, password })
    }

    /// No `--username`: a password alone is an error; an http(s) URL may
    /// carry the credentials.
    fn without_username(
        &mut self,
        value: Option<(&'static str, SecretBytes)>,
        file: Option<Result<PathBuf, ()>>,
        in_url: Option<(String, Option<String>)>,
    ) -> Option<HttpAuth> {
        let username = self.cli.label("username");
        let mut refused = false;
        if let Some((id, _)) = value {
            self.fail(id, format!("requires {username}"));
            refused = true;
        }
        if file.is_some() {
            self.fail("password_file", format!("requires {username}"));
            refused = true;
        }
        let (user, password) = in_url.filter(|_| !refused)?;
        let repo = self.raw("repo")?;
        is_http(repo).then(|| HttpAuth {
            username: user,
            password: PasswordSource::Value(SecretBytes::new(password.unwrap_or_default())),
        })
    }

    /// The password given as a value: v3's `--password` (wins, as in
    /// git-sync) or `GITSYNC_PASSWORD`, with the id that supplied it.
    fn password_value(&mut self) -> Option<(&'static str, SecretBytes)> {
        let flag = self.env_secret("deprecated_password");
        let env = self.env_secret("env_password");
        match (flag, env) {
            (Some(flag), env) => {
                if env.is_some() {
                    let (flag, env) = (
                        self.cli.label("deprecated_password"),
                        self.cli.label("env_password"),
                    );
                    self.warnings.push(format!("{flag} overrides {env}"));
                }
                Some(("deprecated_password", flag))
            }
            (None, Some(env)) => Some(("env_password", env)),
            (None, None) => None,
        }
    }

    /// `--password-file` made absolute: `Err` when that failed (reported).
    /// Only warned about when it cannot be read now: each sync reads it.
    fn password_file(&mut self) -> Option<Result<PathBuf, ()>> {
        let raw = self.raw("password_file")?;
        Some(self.secret_path("password_file", raw).ok_or(()))
    }

    /// Credentials only go to http(s) servers, and over http:// unencrypted.
    fn warn_about_transport(&mut self, repo: Option<&Remote>) {
        let Some(scheme) = repo.and_then(|r| repo_scheme(r.expose())) else {
            return;
        };
        let repo = self.cli.label("repo");
        match scheme.as_str() {
            "https" => {}
            "http" => self.warnings.push(format!(
                "{repo} is http://: the password is sent unencrypted; prefer https://"
            )),
            _ => self.warnings.push(format!(
                "{}: credentials are only used for http:// and https:// repositories",
                self.cli.label("username")
            )),
        }
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
