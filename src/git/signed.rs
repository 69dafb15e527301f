//! Signed git objects, split the way git splits them before verifying
//! (`git verify-commit`, `git verify-tag`): the payload (what the signer
//! signed) and the armoured signature, plus the committer's or tagger's
//! e-mail. Handed to [`crate::verify`] as a [`SignedObject`]; nothing here
//! verifies anything, and no external program is run (gix's own
//! `verify_signature` shells out to gpg and ssh-keygen).
//!
//! The splitting mirrors git's C code byte for byte, since a signature only
//! verifies over exactly the bytes the signer hashed:
//! - commits: `parse_buffer_signed_by_header` (commit.c): every `gpgsig`
//!   header of this hash (SHA-1: `gpgsig`) is the signature, with the one
//!   leading space of its continuation lines removed; headers of the other
//!   hash (`gpgsig-sha256`) are dropped from the payload too; everything from
//!   the blank line after the headers on is copied untouched.
//! - tags: `parse_signed_buffer` (gpg-interface.c): the signature starts at
//!   the last line that begins with a known armour and runs to the end; the
//!   payload is everything before it, with any signature headers removed as
//!   `remove_signature` does.

use std::fmt;

use crate::verify::{ObjectKind, SignedObject};

/// The header git signs SHA-1 commits under.
const SIGNATURE_HEADER: &[u8] = b"gpgsig";

/// The armours git recognises at the start of a line (`get_format_by_sig`).
const ARMOURS: [&[u8]; 4] = [
    b"-----BEGIN PGP SIGNATURE-----",
    b"-----BEGIN PGP MESSAGE-----",
    b"-----BEGIN SIGNED MESSAGE-----",
    b"-----BEGIN SSH SIGNATURE-----",
];

/// An annotated tag's object id (`--ref` named a tag the server peeled).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TagId(pub(crate) gix::ObjectId);

impl fmt::Display for TagId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for TagId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TagId({})", self.0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {kind} {id} from the object store: {message}")]
    Read {
        kind: &'static str,
        id: String,
        message: String,
    },
    #[error("object {id} is a {found}, not a {kind}")]
    Kind {
        kind: &'static str,
        id: String,
        found: String,
    },
}

/// The commit `id` as verification sees it.
pub(crate) fn commit(repo: &gix::Repository, id: gix::ObjectId) -> Result<SignedObject, Error> {
    let raw = read(repo, id, gix::object::Kind::Commit)?;
    let (payload, signature) = split_commit(&raw);
    Ok(SignedObject {
        kind: ObjectKind::Commit,
        id: id.to_string(),
        payload,
        signature,
        signer_email: header_email(&raw, b"committer"),
    })
}

/// The annotated tag `id` as verification sees it.
pub(crate) fn tag(repo: &gix::Repository, id: gix::ObjectId) -> Result<SignedObject, Error> {
    let raw = read(repo, id, gix::object::Kind::Tag)?;
    let (payload, signature) = split_tag(&raw);
    Ok(SignedObject {
        kind: ObjectKind::Tag,
        id: id.to_string(),
        payload,
        signature,
        signer_email: header_email(&raw, b"tagger"),
    })
}

/// The commit the annotated tag `id` peels to, by the objects in the store.
pub(crate) fn tag_commit(
    repo: &gix::Repository,
    id: gix::ObjectId,
) -> Result<gix::ObjectId, Error> {
    let failed = |message: String| Error::Read {
        kind: "tag",
        id: id.to_string(),
        message,
    };
    let object = repo.find_object(id).map_err(|e| failed(e.to_string()))?;
    let commit = object.peel_to_commit().map_err(|e| failed(e.to_string()))?;
    Ok(commit.id)
}

fn read(
    repo: &gix::Repository,
    id: gix::ObjectId,
    kind: gix::object::Kind,
) -> Result<Vec<u8>, Error> {
    let name = kind_name(kind);
    let object = repo.find_object(id).map_err(|e| Error::Read {
        kind: name,
        id: id.to_string(),
        message: e.to_string(),
    })?;
    if object.kind != kind {
        return Err(Error::Kind {
            kind: name,
            id: id.to_string(),
            found: kind_name(object.kind).to_string(),
        });
    }
    Ok(object.data.clone())
}

fn kind_name(kind: gix::object::Kind) -> &'static str {
    match kind {
        gix::object::Kind::Commit => "commit",
        gix::object::Kind::Tag => "tag",
        gix::object::Kind::Tree => "tree",
        gix::object::Kind::Blob => "blob",
    }
}

/// The lines of `buf`, each with its `\n` (the last one may lack it).
fn lines(buf: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= buf.len() {
            return None;
        }
        let end = buf[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(buf.len(), |i| start + i + 1);
        let line = (start, &buf[start..end]);
        start = end;
        Some(line)
    })
}

/// git's `parse_buffer_signed_by_header` for a SHA-1 object: the payload
/// and, when the object has a `gpgsig` header, the signature.
pub(crate) fn split_commit(buf: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
    let mut payload = Vec::with_capacity(buf.len());
    let mut signature = Vec::new();
    let (mut in_signature, mut saw_signature, mut other_signature) = (false, false, false);
    for (start, line) in lines(buf) {
        let sig = if in_signature && line.first() == Some(&b' ') {
            Some(&line[1..])
        } else if line.starts_with(SIGNATURE_HEADER)
            && line.get(SIGNATURE_HEADER.len()) == Some(&b' ')
        {
            other_signature = false;
            Some(&line[SIGNATURE_HEADER.len() + 1..])
        } else {
            if line.starts_with(b"gpgsig") {
                other_signature = true;
            } else if other_signature && line.first() != Some(&b' ') {
                other_signature = false;
            }
            None
        };
        match sig {
            Some(sig) => {
                signature.extend_from_slice(sig);
                saw_signature = true;
                in_signature = true;
            }
            None => {
                if line.first() == Some(&b'\n') {
                    // The blank line after the headers: the rest is the message.
                    payload.extend_from_slice(&buf[start..]);
                    break;
                }
                if !other_signature {
                    payload.extend_from_slice(line);
                }
                in_signature = false;
            }
        }
    }
    (payload, saw_signature.then_some(signature))
}

/// git's `parse_signature` for a tag: the trailing signature block (from
/// the last line starting with a known armour) and what precedes it.
pub(crate) fn split_tag(buf: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
    let start = lines(buf)
        .filter(|(_, line)| ARMOURS.iter().any(|armour| line.starts_with(armour)))
        .map(|(start, _)| start)
        .last();
    match start {
        None => (buf.to_vec(), None),
        Some(start) => {
            let (payload, _) = split_commit(&buf[..start]);
            (payload, Some(buf[start..].to_vec()))
        }
    }
}

/// The e-mail of the `field` header (`committer`, `tagger`): between the
/// first `<` and the next `>`, as git's `split_ident_line` reads it.
pub(crate) fn header_email(buf: &[u8], field: &[u8]) -> Option<String> {
    for (_, line) in lines(buf) {
        if line.first() == Some(&b'\n') {
            return None;
        }
        let Some(ident) = line
            .strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(b" "))
        else {
            continue;
        };
        let open = ident.iter().position(|&b| b == b'<')?;
        let rest = &ident[open + 1..];
        let close = rest.iter().position(|&b| b == b'>')?;
        return Some(String::from_utf8_lossy(&rest[..close]).into_owned());
    }
    None
}

#[cfg(test)]
mod tests;
