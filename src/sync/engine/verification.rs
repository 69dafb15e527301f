//! `--verify-signatures` in a pass: after the fetch, before anything is
//! written, the commit to publish (and, in the `tag` modes, the annotated
//! tag `--ref` names) must be signed by a key of the key files, which are
//! read again at every pass (Secrets rotate, like `--password-file`).
//!
//! A verdict is remembered for (commit, tag, digest of the key files): a
//! pass that finds the same pair again neither verifies nor logs again, it
//! fails fast with the remembered refusal (or goes on, when accepted). The
//! ref moving or any key file changing gives a new pair, verified afresh.
//! A refusal that time alone may lift (`expired`: a key not yet valid or
//! expired, a signature expired) is checked again at every pass, against
//! the key files as parsed when it was made (one signature check), and only
//! a change of verdict is logged and counted: once a `valid-after` passes,
//! the commit publishes at the next poll.
//! Verification costs well under a millisecond per object, but the memory
//! is what keeps a refused commit from being fetched, logged and counted
//! again every period (see `Engine::sync_once`: a refusal is not undone
//! from the store, and the next fetch reports the refused commit unchanged).
//! Key file entries that are skipped (see [`verify::Skipped`]) are warned
//! about once per content of the key files.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use super::{Engine, Error};
use crate::git::{CommitId, Repo, TagId};
use crate::types::CommitHash;
use crate::verify::{
    self, Accepted, Check, KeyFile, KeyFileKind, KeyFiles, ObjectKind, Refusal, SignedObject, Trust,
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
    /// The key files as parsed, kept while the refusal depends on the time
    /// (it is checked again at every pass); `None` otherwise.
    trust: Option<Arc<Trust>>,
    /// The key files' digest whose skipped entries were warned about.
    warned: Option<[u8; 32]>,
}

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

impl Refused {
    /// The same verdict: the same object refused for the same reason by the
    /// same key (the words may differ: an `expired` one names the time).
    fn same_verdict(&self, other: &Refused) -> bool {
        self.object == other.object
            && self.id == other.id
            && self.refusal.label() == other.refusal.label()
            && self.refusal.key() == other.refusal.key()
    }
}

impl Memory {
    fn about(&self, commit: CommitId, tag: Option<TagId>, digest: &[u8; 32]) -> bool {
        self.commit == commit && self.tag == tag && self.digest == *digest
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
/// object is unsigned: that refusal needs no key), or kept from the last
/// pass for a refusal that depends on the time.
struct LazyTrust<'a> {
    files: &'a KeyFiles,
    trust: Option<Arc<Trust>>,
}

impl LazyTrust<'_> {
    fn get(&mut self) -> Result<&Trust, verify::TrustError> {
        if self.trust.is_none() {
            self.trust = Some(Arc::new(self.files.trust()?));
        }
        self.trust.as_deref().ok_or_else(|| verify::TrustError {
            file: String::new(),
            message: "internal error: no trust".into(),
        })
    }
}

/// What one verification found: the first refusal, if any, and each check
/// made (for the metric and the log, when the verdict is new).
#[derive(Default)]
struct Verdict {
    refused: Option<Refused>,
    checks: Vec<Checked>,
}

/// One check: its metric label and, when valid, who signed what.
struct Checked {
    label: &'static str,
    accepted: Option<(ObjectKind, String, Accepted)>,
}

impl Verdict {
    /// A refusal made without a signature check.
    fn refuse(refused: Refused) -> Verdict {
        Verdict {
            checks: vec![Checked {
                label: refused.refusal.label(),
                accepted: None,
            }],
            refused: Some(refused),
        }
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
        let remembered = self
            .signatures
            .as_ref()
            .filter(|m| m.about(commit, tag, &digest))
            .cloned();
        if let Some(memory) = &remembered {
            match (&memory.refused, &memory.trust) {
                (None, _) => return Ok(()),
                (Some(refused), None) => {
                    return Err(refused_error(refused, hash, published, false))
                }
                // Depends on the time: checked again below.
                (Some(_), Some(_)) => {}
            }
        }
        let check = Check {
            require_signer_email: settings.committers,
            now: SystemTime::now(),
        };
        let mut trust = LazyTrust {
            files: &files,
            trust: remembered.as_ref().and_then(|m| m.trust.clone()),
        };
        let verdict = self.verdict(repo, commit, tag, &mut trust, check)?;
        // A time-dependent refusal checked again is news only if it changed.
        let fresh = remembered
            .and_then(|m| m.refused)
            .zip(verdict.refused.as_ref())
            .is_none_or(|(before, now)| !before.same_verdict(now));
        if fresh {
            self.report(&verdict);
        }
        self.remember((commit, tag, digest), &verdict, trust.trust);
        match verdict.refused {
            None => Ok(()),
            Some(refused) => Err(refused_error(&refused, hash, published, fresh)),
        }
    }

    /// Keeps the verdict for the next passes, with the key files as parsed
    /// while it depends on the time; warns about skipped entries once per
    /// content of the key files.
    fn remember(
        &mut self,
        (commit, tag, digest): (CommitId, Option<TagId>, [u8; 32]),
        verdict: &Verdict,
        parsed: Option<Arc<Trust>>,
    ) {
        let mut warned = self.signatures.as_ref().and_then(|m| m.warned);
        if let Some(trust) = parsed.as_deref().filter(|_| warned != Some(digest)) {
            warn_skipped(trust);
            warned = Some(digest);
        }
        let time_bound = verdict
            .refused
            .as_ref()
            .is_some_and(|r| r.refusal.depends_on_time());
        self.signatures = Some(Memory {
            commit,
            tag,
            digest,
            refused: verdict.refused.clone(),
            trust: parsed.filter(|_| time_bound),
            warned,
        });
    }

    /// Counts each check and logs each valid signature.
    fn report(&self, verdict: &Verdict) {
        for checked in &verdict.checks {
            self.metrics.signature_verification(checked.label);
            if let Some((kind, id, accepted)) = &checked.accepted {
                tracing::info!(
                    object = kind.as_str(),
                    id = %id,
                    key = %accepted.key,
                    signer = %accepted.signer,
                    "signature verified"
                );
            }
        }
    }

    /// The tag (in the `tag` modes), then the commit (in the `head` modes):
    /// the first refusal, or none when everything asked for is valid.
    fn verdict(
        &self,
        repo: &Repo,
        commit: CommitId,
        tag: Option<TagId>,
        trust: &mut LazyTrust<'_>,
        check: Check,
    ) -> Result<Verdict, Error> {
        let mode = self.opts.verify.mode;
        let mut verdict = Verdict::default();
        if mode.checks_tag() {
            let Some(tag) = tag else {
                return Ok(Verdict::refuse(Refused {
                    object: ObjectKind::Commit,
                    id: commit.to_string(),
                    refusal: Refusal::NotATag,
                }));
            };
            // The server says which commit the tag peels to; what the tag
            // object itself names is what its signature covers.
            if repo.tag_commit(tag).map_err(Error::Signed)? != commit {
                return Ok(Verdict::refuse(Refused {
                    object: ObjectKind::Tag,
                    id: tag.to_string(),
                    refusal: Refusal::Malformed(format!(
                        "the tag does not point at commit {commit}, which the server advertised for it"
                    )),
                }));
            }
            let object = repo.signed_tag(tag).map_err(Error::Signed)?;
            // The signature covers the tag's own name: a signed tag of an
            // older release moved under --ref's name (a rollback) is refused.
            let named = verify::tag_name(&object).unwrap_or("");
            if !verify::ref_names_tag(&self.opts.git_ref, named) {
                return Ok(Verdict::refuse(Refused {
                    object: ObjectKind::Tag,
                    id: tag.to_string(),
                    refusal: Refusal::Malformed(format!(
                        "the signed tag is named {named:?}, but --ref is {:?}: a ref pointing at another \
                         tag's object (an older release's, say) is refused; sign a tag with that name",
                        self.opts.git_ref
                    )),
                }));
            }
            verify_object(&object, trust, check, &mut verdict)?;
            if verdict.refused.is_some() {
                return Ok(verdict);
            }
        }
        if mode.checks_commit() {
            let object = repo.signed_commit(commit).map_err(Error::Signed)?;
            verify_object(&object, trust, check, &mut verdict)?;
        }
        Ok(verdict)
    }
}

/// Checks one object's signature into `verdict`.
fn verify_object(
    object: &SignedObject,
    trust: &mut LazyTrust<'_>,
    check: Check,
    verdict: &mut Verdict,
) -> Result<(), Error> {
    let result = match object.signature {
        None => Err(Refusal::Unsigned(object.kind.as_str())),
        Some(_) => trust.get().map_err(Error::Trust)?.verify(object, check),
    };
    let (label, accepted) = match result {
        Ok(accepted) => ("valid", Some((object.kind, object.id.clone(), accepted))),
        Err(refusal) => {
            let label = refusal.label();
            verdict.refused = Some(Refused {
                object: object.kind,
                id: object.id.clone(),
                refusal,
            });
            (label, None)
        }
    };
    verdict.checks.push(Checked { label, accepted });
    Ok(())
}

/// One warning per skipped key file entry.
fn warn_skipped(trust: &Trust) {
    for skipped in &trust.skipped {
        tracing::warn!(
            file = %skipped.file,
            entry = %skipped.entry,
            why = %skipped.why,
            "key file entry skipped; the file's other entries are used"
        );
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
             it is checked again when the ref moves or a key file changes (at every poll \
             when only time can lift the refusal)"
        ),
        Some(p) => format!(
            "the previous content ({p}) stays published; the commit is checked again \
             when the ref moves or a key file changes (at every poll when only time can \
             lift the refusal)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(refusal: Refusal) -> Refused {
        Refused {
            object: ObjectKind::Commit,
            id: "ab".repeat(20),
            refusal,
        }
    }

    /// An `expired` refusal checked again with other words (the time it
    /// names) is the same verdict, not logged again; another key, another
    /// reason or another object is a new one.
    #[test]
    fn a_verdict_is_the_object_the_reason_and_the_key() {
        let expired = |key: &str, detail: &str| {
            refused(Refusal::Expired {
                key: key.into(),
                detail: detail.into(),
            })
        };
        let a = expired("SHA256:a", "checked at 2026-12-06T02:26:29Z");
        assert!(a.same_verdict(&expired("SHA256:a", "checked at 2026-12-06T02:26:31Z")));
        assert!(!a.same_verdict(&expired("SHA256:b", "checked at 2026-12-06T02:26:29Z")));
        assert!(!a.same_verdict(&refused(Refusal::Revoked {
            key: "SHA256:a".into()
        })));
        let mut tag = a.clone();
        tag.object = ObjectKind::Tag;
        assert!(!a.same_verdict(&tag));
    }

    /// Only refusals time may lift are checked again at every pass.
    #[test]
    fn only_expired_refusals_depend_on_the_time() {
        let expired = Refusal::Expired {
            key: "k".into(),
            detail: String::new(),
        };
        let signature = Refusal::SignatureExpired {
            key: "k".into(),
            at: String::new(),
        };
        assert!(expired.depends_on_time() && signature.depends_on_time());
        for other in [
            Refusal::UnknownKey { key: "k".into() },
            Refusal::Revoked { key: "k".into() },
            Refusal::Unsigned("commit"),
        ] {
            assert!(!other.depends_on_time(), "{other}");
        }
    }
}
