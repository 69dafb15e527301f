//! The filters applied to a verified push: does it move the configured ref,
//! and does it come from the configured repository?

use std::fmt::Write as _;

use super::Push;

/// Does a pushed full ref name match the configured `--ref`? Rules: configured "HEAD" matches
/// refs/heads/<default_branch> when the payload names the default branch, and otherwise any branch
/// push (document: we can't know the remote default otherwise; the fetch resolves the real ref anyway);
/// a full ref matches itself; a short name `x` matches refs/heads/x and refs/tags/x; a 40-hex SHA ref matches nothing
/// (pinned commits never move). Return a reason string when it doesn't match, for the HTTP response.
///
/// Details:
/// - Every ref of the push counts ([`Push::git_ref`] and [`Push::other_refs`]);
///   one match is enough.
/// - A push that names no ref (a generic "sync now") always matches, even a
///   pinned commit: the sender asked for a sync, and re-syncing a commit is
///   harmless.
/// - An empty `configured` is taken as `HEAD` (git-sync's default).
/// - A short name follows git's own lookup (`refs/<x>`, `refs/tags/<x>`,
///   `refs/heads/<x>`), so `heads/main` and `tags/v1` work too. When a branch
///   and a tag share a name, a push to either matches; the fetch resolves
///   which one `--ref` means.
/// - A 64-hex (SHA-256) commit id is treated like a 40-hex one.
/// - Deletions are not special here: a deleted ref that matches still
///   matches ([`Push::deleted`] is the caller's to act on).
pub fn ref_matches(configured: &str, push: &Push) -> Result<(), String> {
    first_match(configured, push).map(|_| ())
}

/// Loose repository match (Argo CD style): compare host + path, case-insensitive host, ignoring scheme
/// (https/http/ssh/git), user info, port? (ignore default ports only), trailing ".git" and "/", and scp-like
/// `git@host:owner/repo.git` forms. True if any of `urls` matches `filter`.
///
/// Details: the path is compared case-insensitively as well (forges treat
/// `Owner/Repo` and `owner/repo` as the same repository, and Argo CD's regex
/// is case-insensitive throughout); query strings, fragments and repeated
/// slashes are ignored; a URL without a scheme (`github.com/owner/repo`) is
/// accepted. Schemes other than http, https, ssh, git, git+ssh and ssh+git
/// (e.g. `file://`) never match. A non-default port must be equal on both
/// sides, so an ssh URL on port 7999 does not match the https URL of the
/// same repository.
pub fn repo_matches(filter: &str, urls: &[String]) -> bool {
    let Some(wanted) = Location::parse(filter) else {
        return false;
    };
    urls.iter()
        .any(|url| Location::parse(url).is_some_and(|loc| loc == wanted))
}

/// What the configured `--ref` asks for.
enum Wanted<'a> {
    Head,
    Commit,
    Full(&'a str),
    Short(&'a str),
}

impl<'a> Wanted<'a> {
    fn new(configured: &'a str) -> Self {
        if configured.is_empty() || configured == "HEAD" {
            Wanted::Head
        } else if (configured.len() == 40 || configured.len() == 64)
            && configured.bytes().all(|b| b.is_ascii_hexdigit())
        {
            Wanted::Commit
        } else if configured.starts_with("refs/") {
            Wanted::Full(configured)
        } else {
            Wanted::Short(configured)
        }
    }
}

/// The ref of a push that `--ref` matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Matched<'p> {
    pub(super) after: Option<&'p str>,
    pub(super) deleted: bool,
}

/// The first ref of `push` that `configured` matches (`Ok(None)` when the
/// push names no ref: "sync now"), or why nothing matches.
pub(super) fn first_match<'p>(
    configured: &str,
    push: &'p Push,
) -> Result<Option<Matched<'p>>, String> {
    let Some(primary) = push.git_ref.as_deref() else {
        return Ok(None); // "sync now"
    };
    let wanted = Wanted::new(configured);
    let primary = (
        primary,
        Matched {
            after: push.after.as_deref(),
            deleted: push.deleted,
        },
    );
    let others = push.other_refs.iter().map(|(name, after)| {
        let after = after.as_deref();
        let deleted = after.is_none();
        (name.as_str(), Matched { after, deleted })
    });
    let refs = std::iter::once(primary).chain(others);
    let default_branch = push.default_branch.as_deref();
    for (name, matched) in refs {
        let hit = match wanted {
            Wanted::Commit => false,
            Wanted::Head => match (name.strip_prefix("refs/heads/"), default_branch) {
                (Some(branch), Some(default)) => branch == default,
                (Some(_), None) => true,
                (None, _) => false,
            },
            Wanted::Full(full) => name == full,
            Wanted::Short(short) => ["refs/", "refs/tags/", "refs/heads/"]
                .iter()
                .any(|prefix| name.strip_prefix(prefix) == Some(short)),
        };
        if hit {
            return Ok(Some(matched));
        }
    }
    let pushed = describe_refs(push);
    Err(match wanted {
        Wanted::Commit => format!(
            "--ref {configured} is a commit id: a pinned commit never moves, so the push of \
             {pushed} does not change it"
        ),
        Wanted::Head => match default_branch {
            Some(default) => format!(
                "pushed {pushed}, not the default branch refs/heads/{default} that HEAD follows"
            ),
            None => format!("pushed {pushed}, which is not a branch (HEAD follows a branch)"),
        },
        Wanted::Full(_) | Wanted::Short(_) => {
            format!("pushed {pushed}, which does not match --ref {configured}")
        }
    })
}

/// The pushed ref names for a message, at most a few of them.
fn describe_refs(push: &Push) -> String {
    const SHOWN: usize = 3;
    let names: Vec<&str> = push
        .git_ref
        .iter()
        .map(String::as_str)
        .chain(push.other_refs.iter().map(|(name, _)| name.as_str()))
        .collect();
    let mut text = names
        .iter()
        .take(SHOWN)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        let _ = write!(text, " and {} more", names.len() - SHOWN);
    }
    text
}

/// A repository location reduced to what identifies it.
#[derive(Debug, PartialEq, Eq)]
struct Location {
    /// Lowercase, without user info or a trailing dot.
    host: String,
    /// `None` for the scheme's default port (and scp-like forms).
    port: Option<u16>,
    /// Lowercase, without leading/trailing slashes, `.git`, query or fragment.
    path: String,
}

impl Location {
    fn parse(url: &str) -> Option<Location> {
        let url = url.trim();
        if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return None;
        }
        let (host_port, path, default_port) = if let Some((scheme, rest)) = url.split_once("://") {
            let default_port = match scheme.to_ascii_lowercase().as_str() {
                "http" => 80,
                "https" => 443,
                "ssh" | "git+ssh" | "ssh+git" => 22,
                "git" => 9418,
                _ => return None,
            };
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            (host_port, path, Some(default_port))
        } else {
            match url.split_once(':') {
                // scp-like `[user@]host:path`
                Some((user_host, path)) if !user_host.contains('/') => {
                    let host = user_host.rsplit_once('@').map_or(user_host, |(_, h)| h);
                    (host, path, None)
                }
                Some(_) => return None,
                // `host/path` without a scheme
                None => {
                    let (host, path) = url.split_once('/')?;
                    (host, path, None)
                }
            }
        };
        let (host, port) = match default_port {
            Some(default) => split_port(host_port, default)?,
            None => (host_port, None),
        };
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if host.is_empty() || host.contains(['/', '@', '?', '#']) {
            return None;
        }
        let path = path.split(['?', '#']).next().unwrap_or("");
        let path = path.trim_end_matches('/');
        let path = strip_suffix_ignore_case(path, ".git").unwrap_or(path);
        let path = path
            .split('/')
            .filter(|segment| !segment.is_empty())
            .collect::<Vec<_>>()
            .join("/")
            .to_lowercase();
        if path.is_empty() {
            return None;
        }
        Some(Location { host, port, path })
    }
}

/// `host[:port]` (IPv6 hosts in brackets), the port dropped when it is the
/// scheme's default.
fn split_port(host_port: &str, default: u16) -> Option<(&str, Option<u16>)> {
    let (host, port) = if host_port.starts_with('[') {
        let end = host_port.find(']')?;
        let host = host_port.get(..=end)?;
        match host_port.get(end + 1..)? {
            "" => (host, None),
            rest => (host, Some(rest.strip_prefix(':')?)),
        }
    } else {
        match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    let port = match port {
        None | Some("") => None,
        Some(port) => {
            let port: u16 = port.parse().ok()?;
            (port != default).then_some(port)
        }
    };
    Some((host, port))
}

fn strip_suffix_ignore_case<'a>(s: &'a str, suffix: &str) -> Option<&'a str> {
    let cut = s.len().checked_sub(suffix.len())?;
    let tail = s.get(cut..)?;
    tail.eq_ignore_ascii_case(suffix)
        .then(|| s.get(..cut))
        .flatten()
}
