//! Which credentials and headers a connection gets, resolved at each sync:
//!
//! * `--repo` (the very URL): `--username` / URL credentials (a password
//!   file read now), or the `--askpass-url` answer (asked now), or the
//!   GitHub App installation token (cached, refreshed before expiry); at
//!   most one of these is configured.
//! * any URL (and `--repo` when none of the above is set): the
//!   `--credential` entry that matches it best (see
//!   [`credentials::match_len`]); the longest matching path wins,
//!   then the first given; then `--repo`'s own credentials on its origin;
//!   last, the first entry for the URL's host whatever its path (git-sync's
//!   entries live in git's credential cache, which keeps them per host).
//! * headers: `--git-config http.extraHeader` and the bearer token only go
//!   to `--repo`'s scheme, host and port (git sends extra headers
//!   everywhere), so that a submodule on another host, which a repository's
//!   `.gitmodules` names, never sees them.
//!
//! Blocking (askpass and GitHub are HTTP requests): called from the sync
//! pass on the blocking pool. Secrets only travel in [`Credentials`] and
//! [`HttpSettings`], whose `Debug` hides them.

pub mod askpass;
mod bounded;
pub mod credentials;
pub mod github_app;
pub use crate::git::http_settings;
mod settings;

use std::sync::Arc;

pub use crate::git::HttpSettings;
pub use credentials::{match_len, Credentials};
pub use github_app::GithubApp;
pub use settings::{Access, HttpAuth, PasswordSource, UrlCredential};

use crate::git::{Budget, Remote};
use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A password or token file could not be read (names flag and path).
    #[error("{0}")]
    Secret(String),
    #[error(transparent)]
    Askpass(#[from] askpass::Error),
    #[error(transparent)]
    GithubApp(#[from] github_app::Error),
}

/// How much of a `--credential` entry's URL must match.
#[derive(Clone, Copy)]
enum Reach {
    /// Its path too (git's `credential.<url>` rules).
    Path,
    /// Scheme, host, port and user only.
    Host,
}

/// Resolves credentials per URL; shared by the engine and its restarts (the
/// GitHub token cache lives here).
pub struct Resolver {
    repo: Remote,
    auth: Option<HttpAuth>,
    access: Access,
    /// `--credential` urls parsed once (checked at start-up).
    credential_urls: Vec<Option<Remote>>,
    github_token: github_app::TokenCache,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("auth", &self.auth)
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

impl Resolver {
    pub fn new(
        repo: Remote,
        auth: Option<HttpAuth>,
        access: Access,
        metrics: Arc<Metrics>,
    ) -> Self {
        let credential_urls = access
            .credentials
            .iter()
            .map(|c| Remote::parse(&c.url).ok())
            .collect();
        Self {
            repo,
            auth,
            access,
            credential_urls,
            github_token: github_app::TokenCache::default(),
            metrics,
        }
    }

    /// The credentials for a connection to `url` (see the module docs).
    pub fn credentials_for(
        &self,
        url: &Remote,
        budget: &Budget,
    ) -> Result<Option<Credentials>, Error> {
        if *url == self.repo {
            if let Some(found) = self.repo_credentials(budget)? {
                return Ok(Some(found));
            }
        }
        if let Some(found) = self.matching_credential(url, Reach::Path)? {
            return Ok(Some(found));
        }
        // Another repository on --repo's server (a submodule): git-sync's
        // credentials, cached by git per host, answer for it too.
        if *url != self.repo && self.same_origin(url) {
            if let Some(found) = self.repo_credentials(budget)? {
                return Ok(Some(found));
            }
        }
        // git-sync hands each --credential to git's credential cache, which
        // drops http paths (credential.useHttpPath is off): an entry then
        // answers for its whole host.
        self.matching_credential(url, Reach::Host)
    }

    /// Proxy, TLS and headers for a connection to `url`: headers only on
    /// `--repo`'s origin; a bearer token file is read now.
    pub fn http_settings_for(&self, url: &Remote) -> Result<HttpSettings, Error> {
        let mut settings = self.access.http.clone();
        if !self.same_origin(url) {
            settings.extra_headers.clear();
            return Ok(settings);
        }
        if let Some(bearer) = &self.access.bearer {
            let token = bearer.read().map_err(Error::Secret)?;
            settings
                .extra_headers
                .push(format!("Authorization: Bearer {token}"));
        }
        Ok(settings)
    }

    fn same_origin(&self, url: &Remote) -> bool {
        match_len(&self.repo.origin(), url).is_some()
    }

    fn repo_credentials(&self, budget: &Budget) -> Result<Option<Credentials>, Error> {
        let remaining = budget.remaining();
        if let Some(auth) = &self.auth {
            let password = auth.password().map_err(Error::Secret)?;
            return Ok(Some(Credentials {
                username: auth.username.clone(),
                password,
            }));
        }
        if let Some(url) = &self.access.askpass_url {
            let answer = askpass::ask(
                url.expose(),
                &self.access.http,
                remaining.min(askpass::TIMEOUT),
            );
            self.metrics.askpass_call(answer.is_ok());
            return Ok(Some(answer?));
        }
        if let Some(app) = &self.access.github_app {
            let token = self.github_token.get(
                || github_app::mint(app, &self.access.http, remaining),
                |ok| self.metrics.github_app_token_refresh(ok),
            )?;
            return Ok(Some(Credentials {
                username: github_app::TOKEN_USER.into(),
                password: token.token,
            }));
        }
        Ok(None)
    }

    /// The best `--credential` for `url`, its password read now: by
    /// [`Reach::Path`], the longest path matching, then the first given;
    /// by [`Reach::Host`], the first given for `url`'s host.
    fn matching_credential(
        &self,
        url: &Remote,
        reach: Reach,
    ) -> Result<Option<Credentials>, Error> {
        let mut best: Option<(usize, usize)> = None;
        for (i, cred_url) in self.credential_urls.iter().enumerate() {
            let Some(cred_url) = cred_url else { continue };
            let matched = match reach {
                Reach::Path => match_len(cred_url, url),
                Reach::Host => match_len(&cred_url.origin(), url),
            };
            let Some(len) = matched else {
                continue;
            };
            if best.is_none_or(|(_, best_len)| len > best_len) {
                best = Some((i, len));
            }
        }
        let Some((i, _)) = best else {
            return Ok(None);
        };
        let credential = &self.access.credentials[i];
        Ok(Some(Credentials {
            username: credential.username.clone(),
            password: credential.password.read().map_err(Error::Secret)?,
        }))
    }
}
