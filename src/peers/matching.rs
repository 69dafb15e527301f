//! Whether a verified hint is about this replica's repository and ref. The
//! replicas of one Deployment may spell them differently (a rolling update
//! that adds `.git` to `--repo`, or writes `--ref=refs/heads/main` for
//! `main`), so both are compared as loosely as an incoming webhook's are.
//! A wrong match costs one sync; a wrong mismatch leaves a replica stale
//! until its next poll.

/// The same repository: the same string, or the same location by the
/// webhook rules ([`crate::forge::repo_matches`]: scheme, user info,
/// `.git`, trailing slashes, case). `file://` URLs compare as strings.
pub fn same_repo(ours: &str, theirs: &str) -> bool {
    ours == theirs || crate::forge::repo_matches(ours, &[theirs.to_string()])
}

/// The same ref: the same string, `HEAD` and the empty string (git-sync's
/// default), or a full name and the short name git would look up as it
/// (`refs/heads/x`, `refs/tags/x` or `refs/x` for `x`). `HEAD` and the
/// branch it names cannot be told apart without the remote: they differ
/// here, and the sender sees the peer's `ignored` answer.
pub fn same_ref(ours: &str, theirs: &str) -> bool {
    let (ours, theirs) = (head_if_empty(ours), head_if_empty(theirs));
    if ours == theirs {
        return true;
    }
    match (is_full(ours), is_full(theirs)) {
        (true, false) => names(ours, theirs),
        (false, true) => names(theirs, ours),
        _ => false,
    }
}

fn head_if_empty(r: &str) -> &str {
    if r.is_empty() {
        "HEAD"
    } else {
        r
    }
}

fn is_full(r: &str) -> bool {
    r.starts_with("refs/")
}

/// Whether git's lookup of the short name `short` can find `full`.
fn names(full: &str, short: &str) -> bool {
    short != "HEAD"
        && ["refs/", "refs/tags/", "refs/heads/"]
            .iter()
            .any(|prefix| full.strip_prefix(prefix) == Some(short))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_match_as_webhooks_do() {
        let ours = "https://github.com/org/site.git";
        for theirs in [
            ours,
            "https://github.com/org/site",
            "HTTPS://GitHub.com/org/site/",
            "git@github.com:org/site.git",
            "ssh://git@github.com/org/site",
            "https://x-access-token@github.com/org/site.git",
        ] {
            assert!(same_repo(ours, theirs), "{theirs}");
        }
        for theirs in [
            "https://github.com/org/other.git",
            "https://gitlab.com/org/site.git",
            "",
        ] {
            assert!(!same_repo(ours, theirs), "{theirs}");
        }
        assert!(same_repo(
            "git://127.0.0.1:9/site.git",
            "GIT://127.0.0.1:9/site"
        ));
        assert!(same_repo("file:///srv/site.git", "file:///srv/site.git"));
        assert!(!same_repo("file:///srv/site.git", "file:///srv/other.git"));
    }

    #[test]
    fn a_full_ref_and_its_short_name_are_the_same() {
        for (a, b) in [
            ("main", "main"),
            ("main", "refs/heads/main"),
            ("refs/heads/main", "main"),
            ("v1", "refs/tags/v1"),
            ("heads/main", "refs/heads/main"),
            ("HEAD", ""),
            ("HEAD", "HEAD"),
        ] {
            assert!(same_ref(a, b), "{a} {b}");
        }
        for (a, b) in [
            ("main", "dev"),
            ("refs/heads/main", "refs/tags/main"),
            ("refs/heads/main", "refs/heads/dev"),
            ("HEAD", "main"),
            ("HEAD", "refs/heads/main"),
            ("", "refs/heads/HEAD"),
            ("main", "refs/heads/main/x"),
        ] {
            assert!(!same_ref(a, b), "{a} {b}");
        }
    }
}
