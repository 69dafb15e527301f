//! Which symlinks of a commit lead outside its worktree. A web server that
//! follows symlinks would otherwise serve whatever they point at
//! (`/etc/passwd`, a service account token), so `--escaping-symlinks` decides
//! what happens to them. Pure path logic over the tree's own links: a link is
//! resolved through the other links of the same tree, as the kernel would
//! resolve it once checked out.

use std::collections::{HashMap, HashSet, VecDeque};

/// How many links one resolution may follow before it counts as escaping
/// (Linux gives up with ELOOP after 40; a chain this long that is no loop
/// is refused rather than reasoned about).
const MAX_HOPS: usize = 40;

/// The symlinks of a tree: path (slash-separated, relative) to target.
#[derive(Debug, Default)]
pub struct Links {
    targets: HashMap<Vec<u8>, Vec<u8>>,
}

impl Links {
    pub fn insert(&mut self, path: &[u8], target: &[u8]) {
        self.targets.insert(path.to_vec(), target.to_vec());
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// The links that are absolute or resolve outside the tree, sorted.
    pub fn escaping(&self) -> Vec<(&[u8], &[u8])> {
        let mut out: Vec<_> = self
            .targets
            .iter()
            .filter(|(path, _)| self.escapes(path))
            .map(|(p, t)| (p.as_slice(), t.as_slice()))
            .collect();
        out.sort();
        out
    }

    /// True when following the link at `path` leaves the tree. A loop
    /// (`self -> self`, `a/x -> ../b/x` with `b/x -> ../a/x`) does not: the
    /// kernel answers ELOOP, as it does for git's checkout of it.
    fn escapes(&self, path: &[u8]) -> bool {
        let Some(target) = self.targets.get(path) else {
            return false;
        };
        if target.starts_with(b"/") {
            return true;
        }
        // Start in the link's directory and walk the target's components.
        let mut resolved: Vec<&[u8]> = components(path).collect();
        resolved.pop();
        let mut pending: VecDeque<&[u8]> = components(target).collect();
        let mut hops = 0;
        // Where each link was met and what was left to resolve then: the
        // same again is a loop, which never resolves.
        let mut seen: HashSet<(Vec<u8>, Vec<&[u8]>)> = HashSet::new();
        while let Some(part) = pending.pop_front() {
            match part {
                b"." => {}
                b".." => {
                    if resolved.pop().is_none() {
                        return true;
                    }
                }
                name => {
                    resolved.push(name);
                    let Some(next) = self.targets.get(&resolved.join(&b'/')) else {
                        continue;
                    };
                    let state = (resolved.join(&b'/'), pending.iter().copied().collect());
                    if !seen.insert(state) {
                        return false;
                    }
                    hops += 1;
                    if hops > MAX_HOPS || next.starts_with(b"/") {
                        return true;
                    }
                    resolved.pop();
                    for c in components(next).collect::<Vec<_>>().into_iter().rev() {
                        pending.push_front(c);
                    }
                }
            }
        }
        false
    }
}

/// Non-empty components of a slash-separated path.
fn components(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|b| *b == b'/').filter(|c| !c.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links(pairs: &[(&str, &str)]) -> Links {
        let mut l = Links::default();
        for (p, t) in pairs {
            l.insert(p.as_bytes(), t.as_bytes());
        }
        l
    }

    fn escaping(pairs: &[(&str, &str)]) -> Vec<String> {
        links(pairs)
            .escaping()
            .into_iter()
            .map(|(p, _)| String::from_utf8_lossy(p).into_owned())
            .collect()
    }

    #[test]
    fn links_inside_the_tree_are_fine() {
        assert!(escaping(&[
            ("latest", "v1.2"),
            ("docs/index.html", "../README.html"),
            ("a/b/c", "../../x/./y"),
            ("self", "."),
            ("sub/top", ".."),
            ("dangling", "does/not/exist"),
        ])
        .is_empty());
    }

    #[test]
    fn absolute_and_upward_links_escape() {
        assert_eq!(
            escaping(&[
                ("abs", "/etc/passwd"),
                ("up", "../etc/passwd"),
                ("deep/up", "../../x"),
                ("a/b", "../c/../../.."),
            ]),
            ["a/b", "abs", "deep/up", "up"]
        );
    }

    #[test]
    fn escape_through_another_link_is_found() {
        // d/s -> .. is the root; lexically d/x stays inside, really it does not.
        assert_eq!(escaping(&[("d/s", ".."), ("d/x", "s/../..")]), ["d/x"]);
        // A chain whose last hop is absolute.
        assert_eq!(escaping(&[("a", "b"), ("b", "/etc")]), ["a", "b"]);
        // Through a link to a directory that is itself an escape.
        assert_eq!(
            escaping(&[("dir", "../outside"), ("x", "dir/file")]),
            ["dir", "x"]
        );
    }

    /// git writes loops, and following one only gets ELOOP: no escape.
    /// A loop that leaves the tree on the way still escapes.
    #[test]
    fn loops_do_not_escape() {
        assert!(escaping(&[("a", "b"), ("b", "a")]).is_empty());
        assert!(escaping(&[("self", "self")]).is_empty());
        assert!(escaping(&[("a/x", "../b/x"), ("b/x", "../a/x")]).is_empty());
        assert!(escaping(&[("a", "b")]).is_empty());
        assert_eq!(escaping(&[("a", "../out/a"), ("b", "a")]), ["a", "b"]);
        assert_eq!(escaping(&[("d/l", "../../x/d/l")]), ["d/l"]);
        // A chain longer than the kernel follows, with no loop: refused.
        let chain: Vec<(String, String)> = (0..45)
            .map(|i| (format!("l{i}"), format!("l{}", i + 1)))
            .collect();
        let pairs: Vec<(&str, &str)> = chain
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        assert!(escaping(&pairs).contains(&"l0".to_string()));
    }
}
