//! [`CommitId`]: a commit's object id, as the rest of the program holds it
//! (gix's `ObjectId` stays inside `git/`).

use std::fmt;

use crate::types::CommitHash;

/// A SHA-1 commit id. `Display` is the 40 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommitId(pub(crate) gix::ObjectId);

impl CommitId {
    /// Exactly 40 hex digits (either case); anything else is `None`.
    pub fn parse(hex: &str) -> Option<Self> {
        if hex.len() != 40 {
            return None;
        }
        gix::ObjectId::from_hex(hex.as_bytes()).ok().map(Self)
    }

    /// The id of a published commit's name.
    pub fn of(hash: &CommitHash) -> Option<Self> {
        Self::parse(hash.as_str())
    }

    /// The name a worktree of this commit gets.
    pub fn hash(&self) -> Option<CommitHash> {
        CommitHash::parse(&self.0.to_string())
    }
}

impl From<gix::ObjectId> for CommitId {
    fn from(id: gix::ObjectId) -> Self {
        Self(id)
    }
}

impl fmt::Display for CommitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for CommitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CommitId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exactly_40_hex_and_displays_lowercase() {
        let upper = "A".repeat(40);
        let id = CommitId::parse(&upper).expect("40 hex");
        assert_eq!(id.to_string(), "a".repeat(40));
        assert_eq!(id.hash().map(|h| h.to_string()), Some("a".repeat(40)));
        assert_eq!(CommitId::of(&id.hash().expect("hash")), Some(id));
        assert!(CommitId::parse(&"a".repeat(39)).is_none());
        assert!(CommitId::parse(&"a".repeat(64)).is_none());
        assert!(CommitId::parse(&"g".repeat(40)).is_none());
    }
}
