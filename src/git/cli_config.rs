//! The git configuration the git programs we start see: the `git
//! upload-pack` spawned for file:// repositories and the git CLI that exec
//! hooks run. git-sync writes `--git-config` into a private global config
//! file (`GIT_CONFIG_GLOBAL`); we pass the same pairs through git's
//! `GIT_CONFIG_COUNT` / `GIT_CONFIG_KEY_<n>` / `GIT_CONFIG_VALUE_<n>`
//! environment instead: no file to write (a read-only root filesystem
//! works), nothing left behind, and the values are "command line" scope,
//! which is protected config, so `safe.directory` in them counts (git
//! ignores it in a repository's own config).
//!
//! Pairs already in our environment's `GIT_CONFIG_COUNT` are kept: ours are
//! numbered after them.

/// The `--git-config` pairs, in order, for the git programs we start.
/// `Debug` shows the keys only (a value may be an `Authorization` header).
#[derive(Clone, Default)]
pub struct GitConfigPairs(pub Vec<(String, String)>);

impl std::fmt::Debug for GitConfigPairs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| k))
            .finish()
    }
}

/// The environment that gives a git program `pairs` on top of what our own
/// environment's `GIT_CONFIG_COUNT` (`inherited`) already holds.
pub fn env(pairs: &[(String, String)], inherited: Option<&str>) -> Vec<(String, String)> {
    if pairs.is_empty() {
        return Vec::new();
    }
    let first = inherited
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut out = Vec::with_capacity(pairs.len() * 2 + 1);
    for (i, (key, value)) in pairs.iter().enumerate() {
        out.push((format!("GIT_CONFIG_KEY_{}", first + i), key.clone()));
        out.push((format!("GIT_CONFIG_VALUE_{}", first + i), value.clone()));
    }
    out.push((
        "GIT_CONFIG_COUNT".to_string(),
        (first + pairs.len()).to_string(),
    ));
    out
}

/// [`env`] for the `--git-config` pairs `user` followed by `extra`, on top
/// of our own environment.
pub fn env_with(user: &GitConfigPairs, extra: &[(String, String)]) -> Vec<(String, String)> {
    let mut pairs = user.0.clone();
    pairs.extend_from_slice(extra);
    env(&pairs, std::env::var("GIT_CONFIG_COUNT").ok().as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_after_inherited_pairs() {
        let p = |k: &str, v: &str| (k.to_string(), v.to_string());
        let pairs = [p("a.b", "1"), p("c.d", "2")];
        assert_eq!(
            env(&pairs, Some("3")),
            vec![
                p("GIT_CONFIG_KEY_3", "a.b"),
                p("GIT_CONFIG_VALUE_3", "1"),
                p("GIT_CONFIG_KEY_4", "c.d"),
                p("GIT_CONFIG_VALUE_4", "2"),
                p("GIT_CONFIG_COUNT", "5"),
            ]
        );
        assert_eq!(env(&pairs, None)[0], p("GIT_CONFIG_KEY_0", "a.b"));
        assert!(env(&[], Some("2")).is_empty());
    }
}
