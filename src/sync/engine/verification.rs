//! `--verify-signatures` in a pass: after the fetch, before anything is
//! written, the commit to publish (and, in the `tag` modes, the annotated
//! tag `--ref` names) must be signed by a key of the key files, which are
//! read again at every pass (Secrets rotate, like `--password-file`).
//!
//! A verdict is remembered for (commit, tag, digest of the key files): a
//! pass that finds the same pair again neither verifies nor logs again, it
//! fails fast with the remembered refusal (or goes on, when accepted). The
//! ref moving or any key file changing gives a new pair, verified afresh.
//! A refusal that depends on the time (`expired`, which covers "not yet
//! valid") is checked again after a minute.
//! Verification costs well under a millisecond per object, but the memory
//! is what keeps a refused commit from being fetched, logged and counted
//! again every period (see `Engine::sync_once`: a refusal is not undone
//! from the store, and the next fetch reports the refused commit unchanged).
//! Key file entries that are skipped (see [`verify::Skipped`]) are warned
//! about once per content of the key files.

use std::path::Path;
use std::time::SystemTime;

use super::{Engine, Error};
use crate::git::{CommitId, Repo, TagId};
use crate::types::CommitHash;
use crate::verify::{
    self, Check, KeyFile, KeyFileKind, KeyFiles, ObjectKind, Refusal, SignedObject, Trust,
};

/// A key file larger than this is a mistake.
pub const MAX_KEY_FILE: u64 = 4 * 1024 * 1024;

/// The last verdict and what it was about.
#[derive(Debug, Clone)]
pub(super) struct Memory {
    commit: CommitId,
    tag: Option<TagId>,
    digest: [u8; 32],
    /// `None`: accepted.
    refused: Option<Refused>,
    /// When the verdict was reached: a refusal that depends on the time
    /// is only remembered for [`RECHECK_TIME_BOUND`].
    at: std::time::Instant,
    /// The key files' digest whose skipped entries were warned about.
    warned: Option<[u8; 32]>,
}

/// How long an `expired` refusal (which covers "not yet valid": a signer
/// line whose `valid-after` is minutes ahead, a clock behind) is trusted
/// before the signature is checked again. Other refusals last until the
/// ref moves or a key file changes.
pub(super) const RECHECK_TIME_BOUND: std::time::Duration = std::time::Duration::from_secs(60);

/// A refusal as the error and `/status` report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// What carried (or lacked) the signature.
    pub object: ObjectKind,
    /// The object's id (the commit's, or the tag's).
    pub id: String,
    pub refusal: Refusal,
}

impl Refused {
    /// "commit <hash>", or "tag <id> (commit <hash>)".
    pub fn describe(&self, hash: &CommitHash) -> String {
        match self.object {
            ObjectKind::Commit => format!("commit {hash}"),
            ObjectKind::Tag => format!("tag {} (commit {hash})", self.id),
        }
    }
}

impl Memory {
    /// A time-dependent refusal older than [`RECHECK_TIME_BOUND`].
    fn expired_by_time(&self) -> bool {
        matches!(
            self.refused.as_ref().map(|r| &r.refusal),
            Some(Refusal::Expired { .. })
        ) && self.at.elapsed() >= RECHECK_TIME_BOUND
    }

    /// The commit a remembered refusal is about (the next fetch may report
    /// it unchanged instead of fetching it again).
    pub(super) fn refused_commit(&self) -> Option<CommitId> {
        self.refused.as_ref().map(|_| self.commit)
    }
}

/// Reads one key file (at start-up by `config`, and at every pass); the
/// error does not repeat the path.
pub fn read_key_file(kind: KeyFileKind, path: &Path) -> Result<KeyFile, String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_KEY_FILE + 1).read_to_end(&mut bytes))
        .map_err(|e| {
            format!("cannot read it: {e} (mount the Secret holding it, or fix the path)")
        })?;
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err("larger than 4MiB: not a key file".into());
    }
    Ok(KeyFile {
        kind,
        name: path.display().to_string(),
        bytes,
    })
}

/// Every key file of the settings, read now.
fn read_key_files(settings: &verify::Settings) -> Result<KeyFiles, verify::TrustError> {
    let ssh = settings
        .allowed_signers
        .iter()
        .map(|p| (KeyFileKind::AllowedSigners, p));
    let pgp = settings
        .pgp_keyrings
        .iter()
        .map(|p| (KeyFileKind::PgpKeyring, p));
    let files = ssh
        .chain(pgp)
        .map(|(kind, path)| {
            read_key_file(kind, path).map_err(|message| verify::TrustError {
                file: path.display().to_string(),
                message,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(KeyFiles(files))
}

/// The key files, parsed at most once per pass (and not at all when the
/// object is unsigned: that refusal needs no key).
struct LazyTrust<'a> {
    files: &'a KeyFiles,
    trust: Option<Trust>,
}

impl LazyTrust<'_> {
    fn get(&mut self) -> Result<&Trust, verify::TrustError> {
        if self.trust.is_none() {
            self.trust = Some(self.files.trust()?);
        }
        self.trust.as_ref().ok_or_else(|| verify::TrustError {
            file: String::new(),
            message: "internal error: no trust".into(),
        })
    }
}

impl Engine {
    /// `Err(Error::Refused)` unless the signatures `--verify-signatures`
    /// asks for are valid; `tag` is the annotated tag `--ref` names.
    pub(super) fn check_signatures(
        &mut self,
        repo: &Repo,
        commit: CommitId,
        hash: &CommitHash,
        tag: Option<TagId>,
        published: Option<&CommitHash>,
    ) -> Result<(), Error> {
        let settings = &self.opts.verify;
        if settings.mode == verify::Mode::None {
            return Ok(());
        }
        let files = read_key_files(settings).map_err(Error::Trust)?;
        let digest = files.digest();
        let warned = self.signatures.as_ref().and_then(|m| m.warned);
        if let Some(memory) = self
            .signatures
            .as_ref()
            .filter(|m| m.commit == commit && m.tag == tag && m.digest == digest)
            .filter(|m| !m.expired_by_time())
        {
            return match &memory.refused {
                None => Ok(()),
                Some(refused) => Err(refused_error(refused, hash, published, false)),
            };
        }
        let check = Check {
            require_signer_email: settings.committers,
            now: SystemTime::now(),
        };
        let mut trust = LazyTrust {
            files: &files,
            trust: None,
        };
        let verdict = self.verdict(repo, commit, tag, &mut trust, check)?;
        let warned = match &trust.trust {
            Some(parsed) if warned != Some(digest) => {
                warn_skipped(parsed);
                Some(digest)
            }
            _ => warned,
        };
        self.signatures = Some(Memory {
            commit,
            tag,
            digest,
            refused: verdict.clone(),
            at: std::time::Instant::now(),
            warned,
        });
        match verdict {
            None => Ok(()),
            Some(refused) => Err(refused_error(&refused, hash, published, true)),
        }
    }

    /// The tag (in the `tag` modes), then the commit (in the `head` modes):
    /// the first refusal, or `None` when everything asked for is valid.
    fn verdict(
        &self,
        repo: &Repo,
        commit: CommitId,
        tag: Option<TagId>,
        trust: &mut LazyTrust<'_>,
        check: Check,
    ) -> Result<Option<Refused>, Error> {
        let mode = self.opts.verify.mode;
        if mode.checks_tag() {
            let Some(tag) = tag else {
                return Ok(Some(self.counted(Refused {
                    object: ObjectKind::Commit,
                    id: commit.to_string(),
                    refusal: Refusal::NotATag,
                })));
            };
            // The server says which commit the tag peels to; what the tag
            // object itself names is what its signature covers.
            if repo.tag_commit(tag).map_err(Error::Signed)? != commit {
                return Ok(Some(self.counted(Refused {
                    object: ObjectKind::Tag,
                    id: tag.to_string(),
                    refusal: Refusal::Malformed(format!(
                        "the tag does not point at commit {commit}, which the server advertised for it"
                    )),
                })));
            }
            let object = repo.signed_tag(tag).map_err(Error::Signed)?;
            // The signature covers the tag's own name: a signed tag of an
            // older release moved under --ref's name (a rollback) is refused.
            let named = verify::tag_name(&object).unwrap_or("");
            if !verify::ref_names_tag(&self.opts.git_ref, named) {
                return Ok(Some(self.counted(Refused {
                    object: ObjectKind::Tag,
                    id: tag.to_string(),
                    refusal: Refusal::Malformed(format!(
                        "the signed tag is named {named:?}, but --ref is {:?}: a ref pointing at another \
                         tag's object (an older release's, say) is refused; sign a tag with that name",
                        self.opts.git_ref
                    )),
                })));
            }
            if let Some(refused) = self.verify_object(&object, trust, check)? {
                return Ok(Some(refused));
            }
        }
        if mode.checks_commit() {
            let object = repo.signed_commit(commit).map_err(Error::Signed)?;
            if let Some(refused) = self.verify_object(&object, trust, check)? {
                return Ok(Some(refused));
            }
        }
        Ok(None)
    }

    /// A refusal made without a signature check, counted in the metric too.
    fn counted(&self, refused: Refused) -> Refused {
        self.metrics.signature_verification(refused.refusal.label());
        refused
    }

    fn verify_object(
        &self,
        object: &SignedObject,
        trust: &mut LazyTrust<'_>,
        check: Check,
    ) -> Result<Option<Refused>, Error> {
        let result = match object.signature {
            None => Err(Refusal::Unsigned(object.kind.as_str())),
            Some(_) => trust.get().map_err(Error::Trust)?.verify(object, check),
        };
        let label = match &result {
            Ok(_) => "valid",
            Err(refusal) => refusal.label(),
        };
        self.metrics.signature_verification(label);
        Ok(match result {
            Ok(accepted) => {
                tracing::info!(
                    object = object.kind.as_str(),
                    id = %object.id,
                    key = %accepted.key,
                    signer = %accepted.signer,
                    "signature verified"
                );
                None
            }
            Err(refusal) => Some(Refused {
                object: object.kind,
                id: object.id.clone(),
                refusal,
            }),
        })
    }
}

/// One warning per skipped key file entry.
fn warn_skipped(trust: &Trust) {
    for skipped in &trust.skipped {
        tracing::warn!(file = %skipped.file, entry = %skipped.entry, "{skipped}");
    }
}

fn refused_error(
    refused: &Refused,
    hash: &CommitHash,
    published: Option<&CommitHash>,
    fresh: bool,
) -> Error {
    Error::Refused {
        hash: hash.clone(),
        refused: Box::new(refused.clone()),
        published: published.cloned(),
        fresh,
    }
}

/// What a refusal means for readers, in its message.
pub(super) fn refusal_consequence(hash: &CommitHash, published: Option<&CommitHash>) -> String {
    match published {
        None => "nothing is published until a commit passes verification".into(),
        Some(p) if p == hash => format!(
            "{p} stays published (it was published before this check); \
             it is checked again when the ref moves or a key file changes"
        ),
        Some(p) => format!(
            "the previous content ({p}) stays published; the commit is checked again \
             when the ref moves or a key file changes"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn memory(refusal: Refusal, age: Duration) -> Memory {
        Memory {
            commit: CommitId::parse(&"ab".repeat(20)).expect("a commit id"),
            tag: None,
            digest: [0; 32],
            refused: Some(Refused {
                object: ObjectKind::Commit,
                id: "ab".repeat(20),
                refusal,
            }),
            at: Instant::now()
                .checked_sub(age)
                .expect("the clock started long enough ago"),
            warned: None,
        }
    }

    /// A "not yet valid" refusal is checked again after a minute; an unknown
    /// key is not (only a moved ref or a changed key file clears it).
    #[test]
    fn only_time_dependent_refusals_are_forgotten_with_time() {
        let expired = || Refusal::Expired {
            key: "SHA256:x".into(),
            detail: "valid after 2030".into(),
        };
        let late = RECHECK_TIME_BOUND + Duration::from_secs(1);
        assert!(!memory(expired(), Duration::ZERO).expired_by_time());
        assert!(memory(expired(), late).expired_by_time());
        let unknown = Refusal::UnknownKey {
            key: "SHA256:x".into(),
        };
        assert!(!memory(unknown, late).expired_by_time());
    }
}
