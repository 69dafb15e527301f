//! Sparse checkout (`--sparse-checkout-file`): which paths of a tree are
//! written, decided by git's non-cone pattern syntax (the gitignore syntax:
//! `!` negates, a trailing `/` matches directories only, a leading or inner
//! `/` anchors to the root, otherwise the pattern matches a name at any depth).
//!
//! As git's `path_in_sparse_checkout`: the last pattern matching the file's
//! path decides (a negative one excludes it); when none matches, the parent
//! directories are tried as directories, deepest first; a path no pattern
//! decides is left out.

use gix::bstr::{BStr, ByteSlice};
use gix_glob::pattern::Case;
use gix_glob::wildmatch::Mode;

/// Parsed patterns. `Debug` shows the source lines.
#[derive(Clone)]
pub struct Patterns {
    source: Vec<u8>,
    patterns: Vec<gix_glob::Pattern>,
    /// Submodules are checked out whatever the patterns say (see
    /// [`Patterns::keeping_submodules`]).
    keeps_submodules: bool,
}

/// The line [`Patterns::record`] adds when submodules are kept: a comment
/// to git's sparse checkout, which reads the same file.
const KEEPS_SUBMODULES: &[u8] =
    b"\n# git-sidecar: submodules are checked out whatever these patterns say\n";

impl std::fmt::Debug for Patterns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Patterns")
            .field(&self.source.as_bstr())
            .finish()
    }
}

impl Patterns {
    /// `None` when the text holds no pattern (only blank lines and comments).
    pub fn parse(source: &[u8]) -> Option<Self> {
        let patterns: Vec<_> = gix_ignore::parse(source, false)
            .map(|(pattern, _, _)| pattern)
            .collect();
        (!patterns.is_empty()).then(|| Self {
            source: source.to_vec(),
            patterns,
            keeps_submodules: false,
        })
    }

    /// The same patterns, with submodules checked out whatever they say
    /// (`keep`), as git-sync's `git submodule update` after its sparse
    /// `read-tree` does, or judged by them (`--submodules=off`).
    pub fn keeping_submodules(mut self, keep: bool) -> Self {
        self.keeps_submodules = keep;
        self
    }

    pub fn keeps_submodules(&self) -> bool {
        self.keeps_submodules
    }

    /// What is recorded next to each worktree (git's
    /// `info/sparse-checkout`): the file as given, and a comment line when
    /// submodules are kept, so that a worktree built under the other rule
    /// is rebuilt.
    pub fn record(&self) -> Vec<u8> {
        let mut record = self.source.clone();
        if self.keeps_submodules {
            record.extend_from_slice(KEEPS_SUBMODULES);
        }
        record
    }

    /// Whether the file at `path` (relative, `/`-separated) is checked out.
    pub fn includes(&self, path: &[u8]) -> bool {
        let mut candidate: &[u8] = path;
        let mut is_dir = false;
        loop {
            if let Some(included) = self.decide(candidate.as_bstr(), is_dir) {
                return included;
            }
            match candidate.rfind_byte(b'/') {
                Some(slash) => candidate = &candidate[..slash],
                None => return false,
            }
            is_dir = true;
        }
    }

    /// The verdict of the last pattern matching `path`, if any matches.
    fn decide(&self, path: &BStr, is_dir: bool) -> Option<bool> {
        let basename = path.rfind_byte(b'/').map(|p| p + 1);
        self.patterns
            .iter()
            .rev()
            .find(|p| {
                p.matches_repo_relative_path(
                    path,
                    basename,
                    Some(is_dir),
                    Case::Sensitive,
                    Mode::NO_MATCH_SLASH_LITERAL,
                )
            })
            .map(|p| !p.is_negative())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(text: &str) -> Patterns {
        Patterns::parse(text.as_bytes()).expect("patterns")
    }

    fn included(p: &Patterns, paths: &[&str]) -> Vec<String> {
        paths
            .iter()
            .filter(|path| p.includes(path.as_bytes().as_bstr()))
            .map(|s| s.to_string())
            .collect()
    }

    const TREE: &[&str] = &[
        "README.md",
        "index.html",
        "docs/index.html",
        "docs/api/ref.html",
        "src/main.rs",
        "src/docs/notes.md",
        "assets/logo.png",
        "assets/big/video.mp4",
    ];

    #[test]
    fn no_patterns_is_none() {
        assert!(Patterns::parse(b"").is_none());
        assert!(Patterns::parse(b"# only a comment\n\n").is_none());
    }

    #[test]
    fn an_anchored_directory_takes_everything_below_it() {
        let p = patterns("/docs/\n");
        assert_eq!(included(&p, TREE), ["docs/index.html", "docs/api/ref.html"]);
    }

    #[test]
    fn an_unanchored_directory_matches_at_any_depth() {
        let p = patterns("docs/\n");
        assert_eq!(
            included(&p, TREE),
            ["docs/index.html", "docs/api/ref.html", "src/docs/notes.md"]
        );
    }

    #[test]
    fn top_level_files_only_then_one_directory() {
        // git's documented "root files plus one directory" non-cone idiom.
        let p = patterns("/*\n!/*/\n/assets/\n!/assets/big/\n");
        assert_eq!(
            included(&p, TREE),
            ["README.md", "index.html", "assets/logo.png"]
        );
    }

    #[test]
    fn the_last_matching_pattern_wins() {
        let p = patterns("*.html\n!docs/api/*.html\n");
        assert_eq!(included(&p, TREE), ["index.html", "docs/index.html"]);
        let p = patterns("!docs/api/*.html\n*.html\n");
        assert_eq!(
            included(&p, TREE),
            ["index.html", "docs/index.html", "docs/api/ref.html"]
        );
    }

    #[test]
    fn a_file_decision_beats_its_directory() {
        // The file's own match decides before its parent is looked at.
        let p = patterns("/src/\n!main.rs\n");
        assert_eq!(included(&p, TREE), ["src/docs/notes.md"]);
    }

    #[test]
    fn exclude_everything_then_include_one_file() {
        let p = patterns("!/*\n/docs/api/ref.html\n");
        assert_eq!(included(&p, TREE), ["docs/api/ref.html"]);
    }

    #[test]
    fn a_directory_only_pattern_never_matches_a_file_of_that_name() {
        let p = patterns("index.html/\n");
        assert!(included(&p, TREE).is_empty());
    }

    #[test]
    fn comments_escapes_and_trailing_spaces() {
        let p = patterns("# comment\n\\#hash\nREADME.md   \n");
        assert_eq!(
            included(&p, &["#hash", "README.md", "comment"]),
            ["#hash", "README.md"]
        );
    }

    #[test]
    fn debug_shows_the_source() {
        assert_eq!(
            format!("{:?}", patterns("/docs/\n")),
            "Patterns(\"/docs/\\n\")"
        );
    }
}
