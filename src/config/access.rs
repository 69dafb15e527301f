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

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{absolute_reread, read_secret_file, Checker, PasswordSource, SecretBytes};
use crate::auth::github_app::AppKey;
use crate::git::http_settings::HttpSettings;
use crate::types::RepoUrl;

/// Everything about authentication and http(s) transport beyond
/// [`super::HttpAuth`].
#[derive(Clone, Debug, Default)]
pub struct Access {
    /// `--credential` entries, in the order given.
    pub credentials: Vec<UrlCredential>,
    pub askpass_url: Option<RepoUrl>,
    /// The bearer token (a file is read at each sync).
    pub bearer: Option<PasswordSource>,
    pub github_app: Option<GithubApp>,
    /// Proxy, CA bundle, certificate checking, extra headers, cookie file
    /// (`--git-config`, `--cookie-file`).
    pub http: HttpSettings,
    /// Every `--git-config` pair (and `--cookie-file`'s), for the git
    /// programs we start.
    pub git_config: super::git_config::GitConfigPairs,
}

/// One `--credential` entry. `Debug` shows the url (redacted) only.
#[derive(Clone)]
pub struct UrlCredential {
    pub url: String,
    pub username: String,
    pub password: PasswordSource,
}

impl std::fmt::Debug for UrlCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "UrlCredential({}, REDACTED)",
            crate::types::redact_url(&self.url)
        )
    }
}

/// GitHub App authentication, validated. `Debug` hides the key.
#[derive(Clone)]
pub struct GithubApp {
    /// API base URL, without a trailing `/`.
    pub base_url: String,
    pub key: Arc<AppKey>,
    /// The JWT issuer: the client ID or the application ID.
    pub issuer: String,
    pub installation_id: u64,
}

impl std::fmt::Debug for GithubApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubApp")
            .field("base_url", &self.base_url)
            .field("key", &"REDACTED")
            .field("issuer", &self.issuer)
            .field("installation_id", &self.installation_id)
            .finish()
    }
}

impl PasswordSource {
    /// The secret now: a file is read at each call. Errors name the flag and
    /// the path, never the content.
    pub fn read(&self) -> Result<String, String> {
        let bytes = match self {
            PasswordSource::Value(secret) => secret.clone(),
            PasswordSource::File { path, label } => {
                read_secret_file(&path.to_string_lossy()).map_err(|e| format!("{label}: {e}"))?
            }
        };
        String::from_utf8(bytes.expose().to_vec()).map_err(|_| match self {
            PasswordSource::File { path, label } => {
                format!("{label}: {:?} is not valid UTF-8", path.display())
            }
            PasswordSource::Value(_) => "the secret is not valid UTF-8".to_string(),
        })
    }
}

impl std::fmt::Debug for PasswordSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PasswordSource::Value(_) => f.write_str("REDACTED"),
            PasswordSource::File { path, .. } => write!(f, "file {}", path.display()),
        }
    }
}

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
                "bearer_token_file",
                "cannot be combined with an Authorization header in --git-config http.extraHeader",
            );
        }
        access
    }

    /// At most one source of `--repo` credentials, every conflict reported.
    fn one_repo_source(&mut self, access: &Access, has_http_auth: bool) {
        let mut set: Vec<String> = Vec::new();
        if has_http_auth {
            set.push(match self.raw("username") {
                Some(_) => self.cli.label("username"),
                None => format!("credentials in {}", self.cli.label("repo")),
            });
        }
        if access.askpass_url.is_some() {
            set.push(self.cli.label("askpass_url"));
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
        match self.raw("bearer_token_file") {
            Some(_) => self.cli.label("bearer_token_file"),
            None => self.cli.label("env_bearer_token"),
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
                    "credential",
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
            self.fail("credential", "an entry has no \"url\"");
            return None;
        };
        let shown = crate::types::redact_url(&url);
        match crate::git::Remote::parse(&url) {
            Ok(u) if u.password().is_some() => {
                self.fail(
                    "credential",
                    format!("{shown}: put the password in \"password\", not in the url"),
                );
                return None;
            }
            Ok(u) if u.is_http() => {}
            Ok(_) => {
                self.fail(
                    "credential",
                    format!("{shown}: only http:// and https:// urls take credentials"),
                );
                return None;
            }
            Err(e) => {
                self.fail("credential", format!("{shown}: invalid url: {e}"));
                return None;
            }
        }
        let Some(username) = raw.username.filter(|u| !u.is_empty()) else {
            self.fail("credential", format!("{shown}: \"username\" is required"));
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
                    "credential",
                    format!(
                        "{shown}: exactly one of \"password\" and \"password-file\" is required"
                    ),
                );
                None
            }
            (Some(p), None) => Some(PasswordSource::Value(SecretBytes::new(p))),
            (None, Some(f)) => {
                let label = format!("{} {shown} password-file", self.cli.label("credential"));
                self.secret_path("credential", &f)
                    .map(|path| PasswordSource::File { path, label })
            }
        }
    }

    /// A secret file's absolute path; only warned about when unreadable now
    /// (each sync reads it).
    pub(super) fn secret_path(&mut self, id: &str, raw: &str) -> Option<PathBuf> {
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

    fn askpass_url(&mut self) -> Option<RepoUrl> {
        let raw = self.raw("askpass_url")?;
        match reqwest::Url::parse(raw) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Some(RepoUrl::new(raw)),
            _ => {
                // The query may hold a token, as in the requests themselves.
                let shown = crate::types::shown_url(raw);
                self.fail(
                    "askpass_url",
                    format!("must be an http:// or https:// URL, got {shown:?}"),
                );
                None
            }
        }
    }

    fn bearer(&mut self) -> Option<PasswordSource> {
        let value = self.env_secret("env_bearer_token");
        let file = self.raw("bearer_token_file");
        match (value, file) {
            (Some(_), Some(_)) => {
                let env = self.cli.label("env_bearer_token");
                self.fail(
                    "bearer_token_file",
                    format!("cannot be combined with {env}; set only one"),
                );
                None
            }
            (Some(secret), None) => Some(PasswordSource::Value(secret)),
            (None, Some(raw)) => {
                let label = self.cli.label("bearer_token_file");
                self.secret_path("bearer_token_file", raw)
                    .map(|path| PasswordSource::File { path, label })
            }
            (None, None) => None,
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
