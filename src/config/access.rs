//! The ways to authenticate beyond `--username` (see [`super::auth`]), and
//! their rules, checked with every other flag:
//!
//! * `--credential` (repeatable, JSON object or list): each entry has `url`,
//!   `username` and exactly one of `password` / `password-file`; unknown
//!   fields are refused (as git-sync). The url must be http(s) and carry no
//!   credentials. A password file is made absolute and read at each sync.
//! * `--askpass-url`: asked before each sync for the `--repo` credentials.
//! * A bearer token, `--bearer-token-file` (read at each sync) or
//!   `GITSYNC_BEARER_TOKEN`: sent as `Authorization: Bearer` to `--repo`'s
//!   scheme, host and port only.
//! * A GitHub App: `--github-app-installation-id`, exactly one of
//!   `--github-app-application-id` / `--github-app-client-id`, exactly one
//!   key source (`GITSYNC_GITHUB_APP_PRIVATE_KEY` or
//!   `--github-app-private-key-file`, read and parsed at start-up).
//!
//! `--username` (or credentials in `--repo`), `--askpass-url`, the bearer
//! token and the GitHub App all answer for `--repo`: at most one of them may
//! be set (git-sync lets several race in its credential cache; we refuse).
//! `--credential` may be combined with any of them.
//!
//! ## GitHub App
//!
//! GitHub App flags (git-sync §1.2): `--github-app-installation-id`
//! (required), exactly one of `--github-app-application-id` /
//! `--github-app-client-id`, exactly one key source
//! (`GITSYNC_GITHUB_APP_PRIVATE_KEY` or `--github-app-private-key-file`), and
//! `--github-base-url` (default `https://api.github.com/`). The key is read
//! and parsed at start-up, so a bad one is a configuration error naming its
//! source (git-sync exits hard deep inside instead).

use super::checker::default_str;
use crate::cli::Flag;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{absolute_reread, read_secret_file, Checker, SecretBytes};
use crate::auth::github_app::{AppKey, GithubApp};
use crate::auth::{Access, PasswordSource, UrlCredential};
use crate::types::SecretUrl;

/// The fields a `--credential` entry may have.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredential {
    url: Option<String>,
    username: Option<String>,
    password: Option<String>,
    #[serde(rename = "password-file")]
    password_file: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(RawCredential),
    Many(Vec<RawCredential>),
}

impl Checker<'_> {
    /// Every setting of [`Access`]; `has_http_auth` says whether `--username`
    /// or URL credentials are configured (for the conflict rules).
    pub(super) fn access(&mut self, has_http_auth: bool) -> Access {
        let (http, git_config) = self.git_config();
        let access = Access {
            git_config,
            credentials: self.credentials(),
            askpass_url: self.askpass_url(),
            bearer: self.bearer(),
            github_app: self.github_app(),
            http,
        };
        self.one_repo_source(&access, has_http_auth);
        if access.bearer.is_some() && access.http.sends_authorization() {
            self.fail(
                Flag::BearerTokenFile,
                "cannot be combined with an Authorization header in --git-config http.extraHeader",
            );
        }
        access
    }

    /// At most one source of `--repo` credentials, every conflict reported.
    fn one_repo_source(&mut self, access: &Access, has_http_auth: bool) {
        let mut set: Vec<String> = Vec::new();
        if has_http_auth {
            set.push(match self.raw(Flag::Username) {
                Some(_) => self.cli.label(Flag::Username),
                None => format!("credentials in {}", self.cli.label(Flag::Repo)),
            });
        }
        if access.askpass_url.is_some() {
            set.push(self.cli.label(Flag::AskpassUrl));
        }
        if access.bearer.is_some() {
            set.push(self.bearer_label());
        }
        if access.github_app.is_some() {
            set.push("GitHub App authentication (--github-app-*)".into());
        }
        for (i, first) in set.iter().enumerate() {
            for second in &set[i + 1..] {
                self.errors.push(format!(
                    "{first} cannot be combined with {second}: use one way to authenticate to --repo"
                ));
            }
        }
    }

    fn bearer_label(&self) -> String {
        match self.raw(Flag::BearerTokenFile) {
            Some(_) => self.cli.label(Flag::BearerTokenFile),
            None => self.cli.label(Flag::EnvBearerToken),
        }
    }

    /// Every `--credential` value, each entry checked.
    fn credentials(&mut self) -> Vec<UrlCredential> {
        let cli = self.cli;
        let mut out = Vec::new();
        for raw in &cli.credential {
            match serde_json::from_str::<OneOrMany>(raw.expose()) {
                Ok(OneOrMany::One(c)) => out.extend(self.credential(c)),
                Ok(OneOrMany::Many(list)) => {
                    for c in list {
                        out.extend(self.credential(c));
                    }
                }
                // serde's message may quote the input: keep only its position.
                Err(e) => self.fail(
                    Flag::Credential,
                    format!(
                        "must be a JSON object or list of objects with \"url\", \"username\" and \
                         \"password\" or \"password-file\" (no other fields); error at line {} column {}",
                        e.line(),
                        e.column()
                    ),
                ),
            }
        }
        out
    }

    fn credential(&mut self, raw: RawCredential) -> Option<UrlCredential> {
        let url = raw.url.filter(|u| !u.is_empty());
        let Some(url) = url else {
            self.fail(Flag::Credential, "an entry has no \"url\"");
            return None;
        };
        let shown = crate::types::redact_url(&url);
        match crate::git::Remote::parse(&url) {
            Ok(u) if u.password().is_some() => {
                self.fail(
                    Flag::Credential,
                    format!("{shown}: put the password in \"password\", not in the url"),
                );
                return None;
            }
            Ok(u) if u.is_http() => {}
            Ok(_) => {
                self.fail(
                    Flag::Credential,
                    format!("{shown}: only http:// and https:// urls take credentials"),
                );
                return None;
            }
            Err(e) => {
                self.fail(Flag::Credential, format!("{shown}: invalid url: {e}"));
                return None;
            }
        }
        let Some(username) = raw.username.filter(|u| !u.is_empty()) else {
            self.fail(
                Flag::Credential,
                format!("{shown}: \"username\" is required"),
            );
            return None;
        };
        let password = self.credential_password(&shown, raw.password, raw.password_file)?;
        Some(UrlCredential {
            url,
            username,
            password,
        })
    }

    fn credential_password(
        &mut self,
        shown: &str,
        password: Option<String>,
        file: Option<String>,
    ) -> Option<PasswordSource> {
        match (password, file) {
            (Some(_), Some(_)) | (None, None) => {
                self.fail(
                    Flag::Credential,
                    format!(
                        "{shown}: exactly one of \"password\" and \"password-file\" is required"
                    ),
                );
                None
            }
            (Some(p), None) => Some(PasswordSource::Value(SecretBytes::new(p))),
            (None, Some(f)) => {
                let label = format!("{} {shown} password-file", self.cli.label(Flag::Credential));
                self.secret_path(Flag::Credential, &f)
                    .map(|path| PasswordSource::File { path, label })
            }
        }
    }

    /// A secret file's absolute path; only warned about when unreadable now
    /// (each sync reads it).
    pub(super) fn secret_path(&mut self, id: Flag, raw: &str) -> Option<PathBuf> {
        let path = match absolute_reread(Path::new(raw)) {
            Ok(path) => path,
            Err(e) => {
                self.fail(id, format!("cannot make {raw:?} absolute: {e}"));
                return None;
            }
        };
        if let Err(e) = std::fs::metadata(&path) {
            let label = self.cli.label(id);
            self.warnings.push(format!(
                "{label}: cannot read {:?} now ({e}); every sync fails until it can",
                path.display()
            ));
        }
        Some(path)
    }

    fn askpass_url(&mut self) -> Option<SecretUrl> {
        let raw = self.raw(Flag::AskpassUrl)?;
        match reqwest::Url::parse(raw) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Some(SecretUrl::new(raw)),
            _ => {
                // The query may hold a token, as in the requests themselves.
                let shown = crate::types::shown_url(raw);
                self.fail(
                    Flag::AskpassUrl,
                    format!("must be an http:// or https:// URL, got {shown:?}"),
                );
                None
            }
        }
    }

    fn bearer(&mut self) -> Option<PasswordSource> {
        let value = self.env_secret(Flag::EnvBearerToken);
        let file = self.raw(Flag::BearerTokenFile);
        match (value, file) {
            (Some(_), Some(_)) => {
                let env = self.cli.label(Flag::EnvBearerToken);
                self.fail(
                    Flag::BearerTokenFile,
                    format!("cannot be combined with {env}; set only one"),
                );
                None
            }
            (Some(secret), None) => Some(PasswordSource::Value(secret)),
            (None, Some(raw)) => {
                let label = self.cli.label(Flag::BearerTokenFile);
                self.secret_path(Flag::BearerTokenFile, raw)
                    .map(|path| PasswordSource::File { path, label })
            }
            (None, None) => None,
        }
    }
}

/// Flags that only make sense with GitHub App authentication.
const APP_FLAGS: &[Flag] = &[
    Flag::GithubAppInstallationId,
    Flag::GithubAppApplicationId,
    Flag::GithubAppClientId,
    Flag::GithubAppPrivateKeyFile,
    Flag::EnvGithubAppPrivateKey,
];

impl Checker<'_> {
    /// `Some` when GitHub App authentication is configured and valid.
    pub(super) fn github_app(&mut self) -> Option<GithubApp> {
        if !APP_FLAGS.iter().any(|&id| self.raw(id).is_some()) {
            if self.raw(Flag::GithubBaseUrl).is_some() {
                let needed = self.cli.label(Flag::GithubAppInstallationId);
                self.fail(Flag::GithubBaseUrl, format!("is only used with {needed}"));
            }
            return None;
        }
        let installation_id = self.app_installation_id();
        let issuer = self.app_issuer();
        let key = self.app_key();
        let base_url = self.app_base_url();
        Some(GithubApp {
            base_url: base_url?,
            key: Arc::new(key?),
            issuer: issuer?,
            installation_id: installation_id?,
        })
    }

    fn app_installation_id(&mut self) -> Option<u64> {
        let id = Flag::GithubAppInstallationId;
        match self.raw(id).map(str::parse::<u64>) {
            Some(Ok(n)) if n > 0 => Some(n),
            Some(_) => {
                self.fail(id, "must be a positive integer");
                None
            }
            None => {
                self.fail(id, "is required for GitHub App authentication");
                None
            }
        }
    }

    /// The JWT issuer: the client ID or the application ID, exactly one.
    fn app_issuer(&mut self) -> Option<String> {
        let app_id = self.raw(Flag::GithubAppApplicationId);
        let client_id = self.raw(Flag::GithubAppClientId);
        match (app_id, client_id) {
            (Some(_), Some(_)) => {
                let other = self.cli.label(Flag::GithubAppClientId);
                self.fail(
                    Flag::GithubAppApplicationId,
                    format!("cannot be combined with {other}; set one"),
                );
                None
            }
            (Some(app), None) => match app.parse::<u64>() {
                Ok(n) if n > 0 => Some(n.to_string()),
                _ => {
                    self.fail(Flag::GithubAppApplicationId, "must be a positive integer");
                    None
                }
            },
            (None, Some(client)) => Some(client.to_string()),
            (None, None) => {
                let (app, client) = (
                    self.cli.label(Flag::GithubAppApplicationId),
                    self.cli.label(Flag::GithubAppClientId),
                );
                self.fail(
                    Flag::GithubAppInstallationId,
                    format!("requires {app} or {client}"),
                );
                None
            }
        }
    }

    /// The private key, from exactly one source, parsed.
    fn app_key(&mut self) -> Option<AppKey> {
        let env = self.raw(Flag::EnvGithubAppPrivateKey);
        let file = self.raw(Flag::GithubAppPrivateKeyFile);
        let (id, pem) = match (env, file) {
            (Some(_), Some(_)) => {
                let other = self.cli.label(Flag::GithubAppPrivateKeyFile);
                self.fail(
                    Flag::EnvGithubAppPrivateKey,
                    format!("cannot be combined with {other}; set one"),
                );
                return None;
            }
            (Some(pem), None) => (
                Flag::EnvGithubAppPrivateKey,
                SecretBytes::new(pem.as_bytes()),
            ),
            (None, Some(path)) => match read_secret_file(path) {
                Ok(pem) => (Flag::GithubAppPrivateKeyFile, pem),
                Err(e) => {
                    self.fail(Flag::GithubAppPrivateKeyFile, e);
                    return None;
                }
            },
            (None, None) => {
                let (env, file) = (
                    self.cli.label(Flag::EnvGithubAppPrivateKey),
                    self.cli.label(Flag::GithubAppPrivateKeyFile),
                );
                self.fail(
                    Flag::GithubAppInstallationId,
                    format!("requires a private key: set {env} or {file}"),
                );
                return None;
            }
        };
        AppKey::from_pem(pem.expose())
            .map_err(|e| self.fail(id, e))
            .ok()
    }

    fn app_base_url(&mut self) -> Option<String> {
        let raw = self
            .raw(Flag::GithubBaseUrl)
            .unwrap_or(default_str(Flag::GithubBaseUrl));
        match reqwest::Url::parse(raw) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {
                Some(raw.trim_end_matches('/').to_string())
            }
            _ => {
                self.fail(
                    Flag::GithubBaseUrl,
                    format!("must be an http:// or https:// URL, got {raw:?}"),
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{base, config, problems, with};
    use super::*;

    const SECRET: &str = "cr3d-S3CRET";

    #[test]
    fn credential_json_object_or_list() {
        let one =
            format!(r#"{{"url":"https://a.example/org","username":"u1","password":"{SECRET}"}}"#);
        let list = r#"[{"url":"https://b.example","username":"u2","password-file":"rel/pw"}]"#;
        let c = config(&with(&["--credential", &one, "--credential", list]), &[]);
        let creds = &c.access.credentials;
        assert_eq!(creds.len(), 2);
        assert_eq!(creds[0].url, "https://a.example/org");
        assert_eq!(creds[0].password.read().as_deref(), Ok(SECRET));
        let PasswordSource::File { path, .. } = &creds[1].password else {
            panic!("a file");
        };
        assert_eq!(path, &std::env::current_dir().unwrap().join("rel/pw"));
        assert!(!format!("{c:?}").contains(SECRET));
    }

    #[test]
    fn credential_entries_are_checked() {
        let p = problems(
            &with(&[
                "--credential",
                &format!(r#"{{"url":"https://a","username":"u","password":"{SECRET}","extra":1}}"#),
                "--credential",
                r#"[{"username":"u","password":"p"},{"url":"https://b","password":"p"},
                   {"url":"https://c","username":"u"},
                   {"url":"git://d/r","username":"u","password":"p"},
                   {"url":"https://e","username":"u","password":"p","password-file":"/f"}]"#,
            ]),
            &[],
        );
        let all = p.join("\n");
        assert_eq!(p.len(), 6, "{all}");
        assert!(all.contains("no other fields"), "{all}");
        assert!(all.contains("an entry has no \"url\""), "{all}");
        assert!(all.contains("https://b: \"username\" is required"), "{all}");
        assert!(all.contains("https://c: exactly one of"), "{all}");
        assert!(
            all.contains("git://d/r: only http:// and https://"),
            "{all}"
        );
        assert!(all.contains("https://e: exactly one of"), "{all}");
        assert!(!all.contains(SECRET), "{all}");
    }

    #[test]
    fn repo_sources_conflict_with_each_other() {
        let p = problems(
            &with(&[
                "--username=u",
                "--askpass-url=http://127.0.0.1:1/pw",
                "--github-app-application-id=1",
                "--github-app-installation-id=2",
                "--github-app-private-key-file=/no/such/key.pem",
            ]),
            &[("GITSYNC_PASSWORD", "p"), ("GITSYNC_BEARER_TOKEN", SECRET)],
        );
        let all = p.join("\n");
        assert!(
            all.contains("--username (GITSYNC_USERNAME) cannot be combined with --askpass-url"),
            "{all}"
        );
        assert!(
            all.contains("cannot be combined with GITSYNC_BEARER_TOKEN (environment only)"),
            "{all}"
        );
        assert!(all.contains("/no/such/key.pem"), "{all}");
        assert!(!all.contains(SECRET), "{all}");
        let c = config(&with(&["--askpass-url=http://127.0.0.1:1/pw"]), &[]);
        assert!(c.access.askpass_url.is_some() && c.auth.is_none());
        let p = problems(&with(&["--askpass-url=ftp://x/?token=t0k"]), &[]);
        assert!(p[0].contains("must be an http:// or https:// URL"), "{p:?}");
        assert!(!p[0].contains("t0k"), "{p:?}");
    }

    #[test]
    fn bearer_from_file_or_environment_not_both() {
        let c = config(&base(), &[("GITSYNC_BEARER_TOKEN", &format!("{SECRET}\n"))]);
        assert_eq!(
            c.access.bearer.as_ref().map(|b| b.read()),
            Some(Ok(SECRET.to_string()))
        );
        let p = problems(
            &with(&["--bearer-token-file=/t"]),
            &[("GITSYNC_BEARER_TOKEN", SECRET)],
        );
        assert!(
            p[0].contains("cannot be combined with GITSYNC_BEARER_TOKEN"),
            "{p:?}"
        );
        let p = problems(
            &with(&["--git-config=http.extraHeader:Authorization: Basic eA=="]),
            &[("GITSYNC_BEARER_TOKEN", SECRET)],
        );
        assert!(p[0].contains("Authorization header"), "{p:?}");
    }
}

#[cfg(test)]
mod github_app_tests {
    use super::super::tests::{config, problems, with};

    /// A throwaway 2048-bit RSA key (PKCS#1, as GitHub hands them out),
    /// made with `openssl genrsa -traditional`; it guards nothing.
    pub const TEST_KEY: &str = include_str!("../../tests/it/fixtures/github-app-test-key.pem");

    #[test]
    fn app_from_env_key_and_client_id() {
        let c = config(
            &with(&[
                "--github-app-client-id=Iv1.abc",
                "--github-app-installation-id=42",
            ]),
            &[("GITSYNC_GITHUB_APP_PRIVATE_KEY", TEST_KEY)],
        );
        let app = c.access.github_app.as_ref().expect("app");
        assert_eq!(app.base_url, "https://api.github.com");
        assert_eq!((app.issuer.as_str(), app.installation_id), ("Iv1.abc", 42));
        assert!(!format!("{c:?}").contains("PRIVATE KEY"), "{c:?}");
    }

    #[test]
    fn app_rules_are_all_reported() {
        let p = problems(&with(&["--github-app-application-id=x"]), &[]);
        let all = p.join("\n");
        assert!(
            all.contains(
                "--github-app-installation-id (GITSYNC_GITHUB_APP_INSTALLATION_ID): is required"
            ),
            "{all}"
        );
        assert!(all.contains("--github-app-application-id (GITSYNC_GITHUB_APP_APPLICATION_ID): must be a positive integer"), "{all}");
        assert!(all.contains("requires a private key"), "{all}");
        let p = problems(
            &with(&[
                "--github-app-application-id=1",
                "--github-app-installation-id=2",
            ]),
            &[(
                "GITSYNC_GITHUB_APP_PRIVATE_KEY",
                "-----BEGIN RSA PRIVATE KEY-----\nnot-a-key\n-----END RSA PRIVATE KEY-----\n",
            )],
        );
        assert!(
            p[0].starts_with("GITSYNC_GITHUB_APP_PRIVATE_KEY (environment only): "),
            "{p:?}"
        );
        assert!(!p[0].contains("not-a-key"), "{p:?}");
        let p = problems(
            &with(&["--github-base-url=https://ghe.example/api/v3"]),
            &[],
        );
        assert!(
            p[0].contains("is only used with --github-app-installation-id"),
            "{p:?}"
        );
    }
}
