//! OpenSSH pattern lists (ssh_config(5) PATTERNS, `match_pattern_list` in
//! OpenSSH's match.c): comma-separated patterns where `*` matches any run of
//! characters, `?` exactly one, and a pattern starting with `!` is a
//! negation that vetoes the whole list when it matches. Case-sensitive, as
//! `ssh-keygen -Y verify` matches principals and namespaces.

/// The positive pattern of `list` that matches `s`, or `None` when none
/// does or a negated pattern matches (a negation wins over any positive).
pub(super) fn match_list<'a>(s: &str, list: &'a [String]) -> Option<&'a str> {
    let mut positive = None;
    for pattern in list {
        match pattern.strip_prefix('!') {
            Some(negated) if matches(s.as_bytes(), negated.as_bytes()) => return None,
            Some(_) => {}
            None if positive.is_none() && matches(s.as_bytes(), pattern.as_bytes()) => {
                positive = Some(pattern.as_str());
            }
            None => {}
        }
    }
    positive
}

/// Glob match of the whole of `s` against `p` (`*`, `?`), byte-wise like
/// OpenSSH. Iterative with one backtrack point, so time is O(len(s)·len(p))
/// at worst and the stack never grows with hostile input.
pub(super) fn matches(s: &[u8], p: &[u8]) -> bool {
    let (mut si, mut pi) = (0, 0);
    // Where the last `*` was, and the position in `s` it currently covers up to.
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == s[si] => {
                si += 1;
                pi += 1;
            }
            _ => match star {
                // Let the last `*` swallow one more byte and retry.
                Some((star_p, star_s)) => {
                    star = Some((star_p, star_s + 1));
                    pi = star_p + 1;
                    si = star_s + 1;
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(text: &str) -> Vec<String> {
        text.split(',').map(str::to_owned).collect()
    }

    #[test]
    fn wildcards_match_as_in_openssh() {
        assert!(matches(b"alice@example.com", b"*@example.com"));
        assert!(matches(b"alice@example.com", b"alice@example.com"));
        assert!(matches(b"bob@example.com", b"?ob@*"));
        assert!(matches(b"", b"*"));
        assert!(matches(b"abc", b"a*b*c"));
        assert!(matches(b"aXbYc", b"a*b*c"));
        assert!(!matches(b"alice@example.com", b"*@example.org"));
        assert!(!matches(b"bob@example.com", b"?b@*"));
        assert!(!matches(b"", b"?"));
        assert!(!matches(b"abcd", b"a*b*c"));
        // Case-sensitive, like ssh-keygen's principal matching.
        assert!(!matches(b"Alice@example.com", b"alice@example.com"));
    }

    #[test]
    fn a_negation_vetoes_the_list() {
        let l = list("*@example.com,!mallory@example.com");
        assert_eq!(match_list("alice@example.com", &l), Some("*@example.com"));
        assert_eq!(match_list("mallory@example.com", &l), None);
        // Order does not matter: the negation wins even when it comes last.
        let l = list("!mallory@*,*");
        assert_eq!(match_list("mallory@x", &l), None);
        assert_eq!(match_list("eve@x", &l), Some("*"));
        // A list of negations only never matches.
        assert_eq!(match_list("eve@x", &list("!mallory@*")), None);
    }

    #[test]
    fn hostile_patterns_finish_quickly() {
        let s = vec![b'a'; 4096];
        let mut p = b"*a".repeat(200);
        p.push(b'b');
        assert!(!matches(&s, &p));
    }
}
