//! [`Credentials`] for one connection (decided by [`crate::auth`]) and the
//! gix adapter that hands them over: the one source of credentials gix
//! may use. Every connection gets [`callback`], so gix never falls back to its own cascade (git config
//! `credential.helper` programs, askpass, a terminal prompt): nothing is
//! spawned, and without configured credentials a server's 401 simply fails
//! the sync.

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

/// Answers gix's credential requests: `Get` with `credentials` (or nothing),
/// `Store`/`Erase` (after the server accepted or refused them) with nothing.
pub fn callback(
    credentials: Option<Credentials>,
) -> impl FnMut(Action) -> gix::Result<Option<Outcome>> + 'static {
    move |action| match (action, &credentials) {
        (Action::Get(context), Some(c)) => Ok(Some(Outcome {
            identity: gix::sec::identity::Account {
                username: c.username.clone(),
                password: c.password.clone(),
                oauth_refresh_token: None,
            },
            next: NextAction::from(context),
        })),
        (Action::Get(_), None) | (Action::Store(_) | Action::Erase(_), _) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get() -> Action {
        Action::get_for_url("https://example.com/r")
    }

    #[test]
    fn answers_get_with_the_credentials_and_nothing_else() {
        let mut cb = callback(Some(Credentials {
            username: "u".into(),
            password: "p".into(),
        }));
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
        assert!(callback(None)(get()).expect("no error").is_none());
    }
}
