//! [`Credentials`] for one connection (decided by [`crate::auth`]) and the
//! gix adapter that hands them over: the one source of credentials gix
//! may use. Every connection gets [`callback`], so gix never falls back to its own cascade (git config
//! `credential.helper` programs, askpass, a terminal prompt): nothing is
//! spawned, and without configured credentials a server's 401 simply fails
//! the sync. Credentials go only to the repository's own server: after a
//! redirect to another host (or port, or from https to http), a 401 there
//! fails the sync saying so, as git sends nothing there either.

use gix::credentials::helper::{Action, NextAction};
use gix::credentials::protocol::Outcome;

/// A user name and password for one sync. `Debug` shows neither.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(REDACTED)")
    }
}

/// Answers gix's credential requests for the repository at `repo`: `Get`
/// with `credentials` (or nothing) if the URL asked for is on `repo`'s
/// server ([`may_receive`]), an error naming both if it is not;
/// `Store`/`Erase` (after the server accepted or refused them) with nothing.
pub fn callback(
    credentials: Option<Credentials>,
    repo: &gix::Url,
) -> impl FnMut(Action) -> gix::Result<Option<Outcome>> + 'static {
    let repo = repo.clone();
    move |action| match (action, &credentials) {
        (Action::Get(context), Some(c)) => {
            let asked = context
                .url
                .as_ref()
                .and_then(|u| gix::url::parse(u.as_slice()).ok());
            match asked {
                Some(asked) if may_receive(&asked, &repo) => Ok(Some(Outcome {
                    identity: gix::sec::identity::Account {
                        username: c.username.clone(),
                        password: c.password.clone(),
                        oauth_refresh_token: None,
                    },
                    next: NextAction::from(context),
                })),
                _ => Err(gix::Error::from_error(std::io::Error::other(elsewhere(
                    asked.as_ref(),
                    &repo,
                )))),
            }
        }
        (Action::Get(_), None) | (Action::Store(_) | Action::Erase(_), _) => Ok(None),
    }
}

/// Whether credentials for `repo` may go to `asked` (where a redirect led):
/// the same host, and the same scheme and port, or http upgraded to https
/// on the same port or from 80 to 443. What git (through curl) and gix
/// allow an identity to follow.
fn may_receive(asked: &gix::Url, repo: &gix::Url) -> bool {
    use gix::url::Scheme::{Http, Https};
    let same_host = match (asked.host(), repo.host()) {
        (Some(a), Some(r)) => a.eq_ignore_ascii_case(r),
        _ => false,
    };
    let (asked_port, repo_port) = (asked.port_or_default(), repo.port_or_default());
    same_host
        && match (&repo.scheme, &asked.scheme) {
            (r, a) if r == a => asked_port == repo_port,
            (Http, Https) => {
                asked_port == repo_port || (repo_port, asked_port) == (Some(80), Some(443))
            }
            _ => false,
        }
}

/// The error of a 401 from a server the credentials are not for; names
/// both servers (without paths, which may carry tokens).
fn elsewhere(asked: Option<&gix::Url>, repo: &gix::Url) -> String {
    let origin = |u: &gix::Url| {
        let port = u.port.map(|p| format!(":{p}")).unwrap_or_default();
        format!(
            "{}://{}{port}",
            u.scheme.as_str(),
            u.host().unwrap_or_default()
        )
    };
    let asked = asked.map_or_else(|| "a URL that could not be read".to_owned(), origin);
    format!(
        "the server redirected to {asked}, which asks for credentials: git-sidecar sends them only to \
         {} (the repository's server), as git does; put the URL the repository is served from in --repo",
        origin(repo)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get() -> Action {
        Action::get_for_url("https://example.com/r")
    }

    fn url(s: &str) -> gix::Url {
        gix::url::parse(s.as_bytes()).expect("a URL")
    }

    fn credentials() -> Option<Credentials> {
        Some(Credentials {
            username: "u".into(),
            password: "p".into(),
        })
    }

    #[test]
    fn answers_get_with_the_credentials_and_nothing_else() {
        let mut cb = callback(credentials(), &url("https://example.com/r"));
        let outcome = cb(get()).expect("no error").expect("an identity");
        assert_eq!(outcome.identity.username, "u");
        assert_eq!(outcome.identity.password, "p");
        assert!(cb(outcome.next.clone().store())
            .expect("no error")
            .is_none());
        assert!(cb(outcome.next.erase()).expect("no error").is_none());
    }

    #[test]
    fn without_credentials_get_returns_nothing() {
        let repo = url("https://example.com/r");
        assert!(callback(None, &repo)(get()).expect("no error").is_none());
    }

    #[test]
    fn credentials_stay_with_the_repository_s_server() {
        let repo = url("http://git.example.com/org/site.git");
        for (asked, allowed) in [
            ("http://git.example.com/other/path.git", true),
            ("http://GIT.example.com/org/site.git", true),
            ("https://git.example.com/org/site.git", true),
            ("http://git.example.com:80/org/site.git", true),
            ("http://example.com/org/site.git", false),
            ("http://git.example.com:8080/org/site.git", false),
            ("https://git.example.com:8443/org/site.git", false),
            ("http://git.example.com.evil.test/org/site.git", false),
        ] {
            assert_eq!(may_receive(&url(asked), &repo), allowed, "{asked}");
        }
        let tls = url("https://git.example.com/org/site.git");
        assert!(!may_receive(
            &url("http://git.example.com/org/site.git"),
            &tls
        ));
        let mut cb = callback(credentials(), &repo);
        let refused = cb(Action::get_for_url("http://localhost:20015/r?token=t0k"))
            .expect_err("no credentials for another host");
        let said = refused.to_string();
        assert!(
            said.contains("redirected to http://localhost:20015,"),
            "{said}"
        );
        assert!(
            said.contains("only to http://git.example.com (the"),
            "{said}"
        );
        assert!(!said.contains("t0k"), "{said}");
    }
}
