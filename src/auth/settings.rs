//! What authentication is configured with: the `--username` password,
//! `--credential` entries, askpass, the bearer token, the GitHub App and
//! the http(s) settings. These types belong to `auth`; [`crate::config`]
//! builds them from the flags (checking git-sync's rules) and nothing here
//! knows about flags.

use std::path::PathBuf;

use super::github_app::GithubApp;
use super::http_settings::HttpSettings;
use crate::git::cli_config::GitConfigPairs;
use crate::secret::{read_secret_file, SecretBytes};
use crate::types::SecretUrl;

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

/// Everything about authentication and http(s) transport beyond
/// [`HttpAuth`].
#[derive(Clone, Debug, Default)]
pub struct Access {
    /// `--credential` entries, in the order given.
    pub credentials: Vec<UrlCredential>,
    pub askpass_url: Option<SecretUrl>,
    /// The bearer token (a file is read at each sync).
    pub bearer: Option<PasswordSource>,
    pub github_app: Option<GithubApp>,
    /// Proxy, CA bundle, certificate checking, extra headers, cookie file
    /// (`--git-config`, `--cookie-file`).
    pub http: HttpSettings,
    /// Every `--git-config` pair (and `--cookie-file`'s), for the git
    /// programs we start.
    pub git_config: GitConfigPairs,
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
