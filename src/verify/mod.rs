//! Signature verification (`--verify-signatures`): decides whether a signed
//! git object (the commit to publish, or the annotated tag `--ref` names) was
//! signed by a key the operator trusts. Pure: it knows nothing of gix, tokio
//! or the filesystem layout. `src/git` extracts the signed payload and the
//! armoured signature from the object; the key files are read by the caller
//! at every sync and handed here as bytes.
//!
//! - [`ssh`]: OpenSSH `allowed_signers` files and SSHSIG signatures
//!   (`gpg.format=ssh`), through the `ssh-key` crate.
//! - [`pgp`]: OpenPGP keyrings and signatures, through rPGP (`pgp` crate).

pub mod pgp;
pub mod ssh;

use std::path::PathBuf;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

/// What `--verify-signatures` requires before a commit is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Publish whatever the ref points at (git-sync's behaviour).
    #[default]
    None,
    /// The commit to publish carries a valid signature by an allowed key.
    Head,
    /// `--ref` is an annotated tag whose tag object is validly signed.
    Tag,
    /// Both of the above.
    TagAndHead,
}

impl Mode {
    /// The `--verify-signatures` value.
    pub fn parse(raw: &str) -> Option<Mode> {
        match raw {
            "none" => Some(Mode::None),
            "head" => Some(Mode::Head),
            "tag" => Some(Mode::Tag),
            "tag-and-head" => Some(Mode::TagAndHead),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::None => "none",
            Mode::Head => "head",
            Mode::Tag => "tag",
            Mode::TagAndHead => "tag-and-head",
        }
    }

    /// The commit to publish must be signed.
    pub fn checks_commit(self) -> bool {
        matches!(self, Mode::Head | Mode::TagAndHead)
    }

    /// `--ref` must be a signed annotated tag.
    pub fn checks_tag(self) -> bool {
        matches!(self, Mode::Tag | Mode::TagAndHead)
    }
}

/// The `--verify-*` flags, validated (built by `config`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub mode: Mode,
    /// `--verify-allowed-signers`: absolute paths, re-read at every sync.
    pub allowed_signers: Vec<PathBuf>,
    /// `--verify-pgp-keyring`: absolute paths, re-read at every sync.
    pub pgp_keyrings: Vec<PathBuf>,
    /// `--verify-committers`.
    pub committers: bool,
}

/// What a key file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFileKind {
    AllowedSigners,
    PgpKeyring,
}

/// One key file as read for one sync (the caller reads; this module parses).
#[derive(Debug, Clone)]
pub struct KeyFile {
    pub kind: KeyFileKind,
    /// The path, for messages.
    pub name: String,
    pub bytes: Vec<u8>,
}

/// The key files of one sync.
#[derive(Debug, Clone, Default)]
pub struct KeyFiles(pub Vec<KeyFile>);

/// An entry of a key file that is understood but cannot be used here (a
/// `cert-authority` line, an OpenPGP key of an algorithm rPGP cannot check,
/// GitHub's placeholder for a user without keys): it is left out with a
/// warning and the file's other entries still count. Leaving a key out can
/// only cause refusals, never an acceptance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub file: String,
    /// `line 3`, `key 5EB2…`, `armour block 2`.
    pub entry: String,
    pub why: String,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} is skipped: {}; the file's other entries are used",
            self.file, self.entry, self.why
        )
    }
}

/// A key file that cannot be used: the sync fails, naming it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {message}")]
pub struct TrustError {
    pub file: String,
    pub message: String,
}

impl KeyFiles {
    /// A digest of every file's kind, name and content: a refusal is
    /// remembered for this digest, and forgotten when any file changes.
    pub fn digest(&self) -> [u8; 32] {
        let mut hash = Sha256::new();
        for file in &self.0 {
            let kind: &[u8] = match file.kind {
                KeyFileKind::AllowedSigners => b"ssh\0",
                KeyFileKind::PgpKeyring => b"pgp\0",
            };
            hash.update(kind);
            for part in [file.name.as_bytes(), &file.bytes] {
                hash.update((part.len() as u64).to_le_bytes());
                hash.update(part);
            }
        }
        hash.finalize().into()
    }

    /// Parses every file into what the operator trusts; entries that are
    /// understood but unusable are listed in [`Trust::skipped`].
    pub fn trust(&self) -> Result<Trust, TrustError> {
        let mut trust = Trust::default();
        for file in &self.0 {
            let failed = |message: String| TrustError {
                file: file.name.clone(),
                message,
            };
            let skipped = match file.kind {
                KeyFileKind::AllowedSigners => trust.add_allowed_signers(file).map_err(failed)?,
                KeyFileKind::PgpKeyring => trust.pgp.add_file(&file.bytes).map_err(|e| {
                    failed(format!(
                        "OpenPGP keyring: {e} (fix the file; it is read again at the next sync)"
                    ))
                })?,
            };
            trust
                .skipped
                .extend(skipped.into_iter().map(|(entry, why)| Skipped {
                    file: file.name.clone(),
                    entry,
                    why,
                }));
        }
        Ok(trust)
    }
}

/// The `tag` header of an annotated tag's payload: the name the signer gave
/// the tag (what `git tag -s NAME` wrote), `None` if it has none.
pub fn tag_name(object: &SignedObject) -> Option<&str> {
    object
        .payload
        .split(|&b| b == b'\n')
        .take_while(|line| !line.is_empty())
        .find_map(|line| line.strip_prefix(b"tag "))
        .and_then(|name| std::str::from_utf8(name).ok())
}

/// Whether `--ref` names the tag called `name`: `v1`, `tags/v1` and
/// `refs/tags/v1` all name the tag `v1`.
pub fn ref_names_tag(git_ref: &str, name: &str) -> bool {
    let short = git_ref
        .strip_prefix("refs/tags/")
        .or_else(|| git_ref.strip_prefix("tags/"))
        .unwrap_or(git_ref);
    short == name
}

/// Which kind of git object carried the signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Commit,
    Tag,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Commit => "commit",
            ObjectKind::Tag => "tag",
        }
    }

    /// Who the object names as its maker.
    pub fn signer_role(self) -> &'static str {
        match self {
            ObjectKind::Commit => "committer",
            ObjectKind::Tag => "tagger",
        }
    }
}

/// A git object as far as verification is concerned: the bytes that were
/// signed, the signature (armoured, as git stores it) and who the object
/// says made it.
#[derive(Debug, Clone)]
pub struct SignedObject {
    pub kind: ObjectKind,
    /// Hex object id, for messages and `/status`.
    pub id: String,
    /// The object with its signature removed: what the signer signed.
    pub payload: Vec<u8>,
    /// The armoured signature (`-----BEGIN SSH SIGNATURE-----` or
    /// `-----BEGIN PGP SIGNATURE-----` …), `None` when unsigned.
    pub signature: Option<Vec<u8>>,
    /// The committer's (commit) or tagger's (tag) e-mail, without `<>`.
    pub signer_email: Option<String>,
}

/// The signature was valid and made by an allowed key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// SSH: `SHA256:…` fingerprint; OpenPGP: the signing key's fingerprint.
    pub key: String,
    /// SSH: the allowed_signers principal that matched; OpenPGP: the
    /// primary user ID.
    pub signer: String,
}

/// Why a signature does not count. Each variant names what an operator
/// needs to see in `/status` and the log; `key` is a fingerprint or key id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "unsigned: the {0} carries no signature (sign it with git commit -S or git tag -s and \
         push; GitHub signs web edits and merges with its web-flow key, see docs/verify.md)"
    )]
    Unsigned(&'static str),
    #[error("signed by unknown key {key}: not in any --verify-allowed-signers or --verify-pgp-keyring file")]
    UnknownKey { key: String },
    /// The key is listed, but only for other SSHSIG namespaces (labelled
    /// `unknown_key`: it is not a key trusted for git).
    #[error("signed by key {key}, which is not allowed to sign git objects: {detail}")]
    NotForGit { key: String, detail: String },
    #[error("bad signature by key {key}: {detail}")]
    BadSignature { key: String, detail: String },
    #[error("key {key} is expired or not yet valid ({detail})")]
    Expired { key: String, detail: String },
    /// The signature's own expiration time has passed (the key may be fine).
    #[error(
        "the signature by key {key} expired at {at} (its signature expiration time); sign again"
    )]
    SignatureExpired { key: String, at: String },
    #[error("key {key} is revoked")]
    Revoked { key: String },
    /// `role`: "committer" for a commit, "tagger" for a tag.
    #[error("key {key} does not belong to the {role} {email} (--verify-committers)")]
    CommitterMismatch {
        key: String,
        email: String,
        role: &'static str,
    },
    #[error(
        "--ref is not an annotated tag (--verify-signatures=tag needs a signed annotated tag)"
    )]
    NotATag,
    #[error("unsupported signature format: {0}")]
    Unsupported(String),
    #[error("malformed signature: {0}")]
    Malformed(String),
}

impl Refusal {
    /// The key id or fingerprint the refusal names, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            Refusal::UnknownKey { key }
            | Refusal::NotForGit { key, .. }
            | Refusal::BadSignature { key, .. }
            | Refusal::Expired { key, .. }
            | Refusal::SignatureExpired { key, .. }
            | Refusal::Revoked { key }
            | Refusal::CommitterMismatch { key, .. } => Some(key),
            _ => None,
        }
    }

    /// The short label used as the metric's `result` value and in `/status`.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::Unsigned(_) => "unsigned",
            Refusal::UnknownKey { .. } | Refusal::NotForGit { .. } => "unknown_key",
            Refusal::BadSignature { .. } => "bad_signature",
            Refusal::Expired { .. } | Refusal::SignatureExpired { .. } => "expired",
            Refusal::Revoked { .. } => "revoked",
            Refusal::CommitterMismatch { .. } => "committer_mismatch",
            Refusal::NotATag => "not_a_tag",
            Refusal::Unsupported(_) => "unsupported",
            Refusal::Malformed(_) => "malformed",
        }
    }

    /// Whether time alone may lift the refusal (a key or signature not yet
    /// valid or expired): such a verdict is checked again at later passes.
    pub fn depends_on_time(&self) -> bool {
        self.label() == "expired"
    }

    /// The refusal about an object of `kind`: a tag's signer is its tagger.
    fn about(self, kind: ObjectKind) -> Refusal {
        match self {
            Refusal::CommitterMismatch { key, email, .. } => Refusal::CommitterMismatch {
                key,
                email,
                role: kind.signer_role(),
            },
            other => other,
        }
    }
}

/// What the operator trusts, parsed from the key files of one sync.
#[derive(Debug, Default)]
pub struct Trust {
    pub ssh: Vec<ssh::AllowedSigner>,
    pub pgp: pgp::Keyring,
    /// Entries left out, each to be warned about once.
    pub skipped: Vec<Skipped>,
}

/// Options of one verification.
#[derive(Debug, Clone, Copy)]
pub struct Check {
    /// `--verify-committers`: the key must belong to the object's signer e-mail.
    pub require_signer_email: bool,
    /// The time validity windows are checked at (the sync's time).
    pub now: SystemTime,
}

impl Trust {
    /// Adds one `allowed_signers` file; returns the skipped lines.
    fn add_allowed_signers(&mut self, file: &KeyFile) -> Result<Vec<(String, String)>, String> {
        let text =
            std::str::from_utf8(&file.bytes).map_err(|e| ssh::not_text_hint(&file.bytes, e))?;
        let parsed = ssh::parse_allowed_signers(text).map_err(|e| {
            format!("allowed_signers {e} (fix the file; it is read again at the next sync)")
        })?;
        // Names the file in an expired line's detail.
        self.ssh
            .extend(parsed.signers.into_iter().map(|mut signer| {
                signer.file = Some(file.name.clone());
                signer
            }));
        Ok(parsed
            .skipped
            .into_iter()
            .map(|s| (format!("line {}", s.line), s.why))
            .collect())
    }

    /// Verifies `object`'s signature, choosing SSH or OpenPGP by its armour.
    pub fn verify(&self, object: &SignedObject, check: Check) -> Result<Accepted, Refusal> {
        let what = object.kind.as_str();
        let Some(signature) = object.signature.as_deref() else {
            return Err(Refusal::Unsigned(what));
        };
        let email = object
            .signer_email
            .as_deref()
            .filter(|_| check.require_signer_email);
        let accepted = self
            .verify_signature(object, signature, email, check.now)
            .map_err(|r| r.about(object.kind))?;
        // A tag may have no tagger line: with --verify-committers there is
        // then nobody the key could belong to.
        if check.require_signer_email && object.signer_email.is_none() {
            let role = object.kind.signer_role();
            return Err(Refusal::CommitterMismatch {
                key: accepted.key,
                email: format!("(none: the {what} has no {role} e-mail)"),
                role,
            });
        }
        Ok(accepted)
    }

    fn verify_signature(
        &self,
        object: &SignedObject,
        signature: &[u8],
        email: Option<&str>,
        now: SystemTime,
    ) -> Result<Accepted, Refusal> {
        if signature.starts_with(b"-----BEGIN SSH SIGNATURE-----") {
            ssh::verify(&self.ssh, &object.payload, signature, email, now)
        } else if signature.starts_with(b"-----BEGIN PGP SIGNATURE-----") {
            self.pgp.verify(&object.payload, signature, email, now)
        } else if signature.starts_with(b"-----BEGIN SIGNED MESSAGE-----") {
            Err(Refusal::Unsupported(
                "X.509 (gpgsm) signatures are not supported; sign with SSH or OpenPGP".into(),
            ))
        } else {
            Err(Refusal::Malformed("no SSH or PGP signature armour".into()))
        }
    }
}

#[cfg(test)]
mod tag_name_tests {
    use super::*;

    fn tag(payload: &[u8]) -> SignedObject {
        SignedObject {
            kind: ObjectKind::Tag,
            id: "0".repeat(40),
            payload: payload.to_vec(),
            signature: None,
            signer_email: None,
        }
    }

    #[test]
    fn the_tag_header_names_the_tag_and_the_message_does_not() {
        let t = tag(b"object 1234\ntype commit\ntag v0.9\ntagger A <a@x> 1 +0000\n\ntag v2.0\n");
        assert_eq!(tag_name(&t), Some("v0.9"));
        assert_eq!(
            tag_name(&tag(b"object 1234\ntype commit\n\ntag v2.0\n")),
            None
        );
    }

    #[test]
    fn short_and_full_refs_name_the_same_tag() {
        for r in ["v1", "tags/v1", "refs/tags/v1"] {
            assert!(ref_names_tag(r, "v1"), "{r}");
        }
        assert!(!ref_names_tag("v2", "v1"));
        assert!(!ref_names_tag("refs/tags/v1.0", "v1"));
    }
}
