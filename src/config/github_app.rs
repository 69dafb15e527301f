//! GitHub App flags (git-sync §1.2): `--github-app-installation-id`
//! (required), exactly one of `--github-app-application-id` /
//! `--github-app-client-id`, exactly one key source
//! (`GITSYNC_GITHUB_APP_PRIVATE_KEY` or `--github-app-private-key-file`), and
//! `--github-base-url` (default `https://api.github.com/`). The key is read
//! and parsed at start-up, so a bad one is a configuration error naming its
//! source (git-sync exits hard deep inside instead).

use crate::cli::Flag;
use std::sync::Arc;

use super::access::GithubApp;
use super::checker::default_str;
use super::{read_secret_file, Checker, SecretBytes};
use crate::auth::github_app::AppKey;

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
