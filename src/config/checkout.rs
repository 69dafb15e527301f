//! What is checked out: `--sparse-checkout-file` (read and parsed once, at
//! start-up: a pattern change takes a restart, which also rebuilds the
//! published worktree with the new patterns) and `--filter` (partial clone:
//! the blob filters only, see [`crate::git::partial`]).

use super::Checker;
use crate::cli::Flag;
use crate::git::partial::Filter;
use crate::git::sparse::Patterns;

/// A pattern file larger than this is a mistake, not a pattern list.
const MAX_SPARSE_FILE: u64 = 1024 * 1024;

impl Checker<'_> {
    /// `--sparse-checkout-file`: the parsed patterns, or `None` when unset
    /// or invalid (then an error is recorded).
    pub(super) fn sparse_checkout(&mut self) -> Option<Patterns> {
        let path = self.raw(Flag::SparseCheckoutFile)?;
        match read_patterns(path) {
            Ok(patterns) => Some(patterns),
            Err(e) => {
                self.fail(Flag::SparseCheckoutFile, e);
                None
            }
        }
    }

    /// `--filter`: the parsed filter, or `None` when unset or not one we
    /// support (then an error naming the supported ones is recorded).
    pub(super) fn filter(&mut self) -> Option<Filter> {
        let spec = self.raw(Flag::Filter)?;
        match Filter::parse(spec) {
            Ok(filter) => Some(filter),
            Err(e) => {
                self.fail(Flag::Filter, e);
                None
            }
        }
    }
}

fn read_patterns(path: &str) -> Result<Patterns, String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_SPARSE_FILE + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read {path:?}: {e}"))?;
    if bytes.len() as u64 > MAX_SPARSE_FILE {
        return Err(format!("{path:?} is larger than 1MiB"));
    }
    Patterns::parse(&bytes).ok_or_else(|| {
        format!(
            "{path:?} has no patterns (only blank lines or comments): nothing would be checked out"
        )
    })
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{config, problems, with};

    fn file_with(content: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(f.path(), content).expect("write");
        f
    }

    #[test]
    fn blob_filters_are_accepted() {
        for spec in ["blob:none", "blob:limit=1m"] {
            let c = config(&with(&["--filter", spec]), &[]);
            assert_eq!(c.filter.as_ref().map(|f| f.spec()), Some(spec));
        }
    }

    #[test]
    fn sparse_patterns_are_read_at_start_up() {
        let f = file_with("/docs/\n");
        let path = f.path().to_string_lossy().into_owned();
        let c = config(&with(&["--sparse-checkout-file", &path]), &[]);
        let patterns = c.sparse_checkout.expect("patterns");
        assert!(patterns.includes(b"docs/a.html"));
        assert!(!patterns.includes(b"a.html"));
        let c = config(&with(&[]), &[("GIT_SYNC_SPARSE_CHECKOUT_FILE", &path)]);
        assert!(c.sparse_checkout.is_some());
    }

    #[test]
    fn a_missing_or_patternless_file_names_the_flag() {
        let empty = file_with("# nothing\n\n");
        let empty_path = empty.path().to_string_lossy().into_owned();
        let p = problems(&with(&["--sparse-checkout-file", &empty_path]), &[]);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("--sparse-checkout-file (GITSYNC_SPARSE_CHECKOUT_FILE): ")
                && p[0].contains("has no patterns"),
            "{p:?}"
        );
        let p = problems(&with(&["--sparse-checkout-file=/nonexistent/sparse"]), &[]);
        assert!(
            p[0].contains("cannot read \"/nonexistent/sparse\""),
            "{p:?}"
        );
    }

    #[test]
    fn unsupported_filters_are_refused_naming_the_supported_ones() {
        for spec in ["tree:0", "sparse:oid=abc", "blob:limit=lots"] {
            let p = problems(&with(&["--filter", spec]), &[]);
            assert_eq!(p.len(), 1, "{p:?}");
            assert!(p[0].starts_with("--filter (GITSYNC_FILTER): "), "{p:?}");
            assert!(p[0].contains(spec), "{p:?}");
        }
        let p = problems(&with(&["--filter=tree:0"]), &[]);
        assert!(p[0].contains("blob:none and blob:limit=<n>"), "{p:?}");
    }
}
