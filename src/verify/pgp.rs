//! OpenPGP signatures: keyrings (`--verify-pgp-keyring`, armoured or
//! binary) and detached signatures over git objects, through rPGP (`pgp`).
//!
//! rPGP checks single signatures (a data signature against a key, a binding
//! signature against a primary key); which keys count is decided here and in
//! [`cert`]: a key counts while it is not revoked, not expired (at the
//! signature's time and now) and allowed to sign; a subkey also needs a valid
//! binding signature with the signing flag and a back-signature.
//!
//! GitHub's web-flow key (merge commits and web edits on github.com are
//! signed by `GitHub <noreply@github.com>`, not by their author): to allow
//! them, add GitHub's public key to a keyring Secret, e.g.
//!
//! ```text
//! curl -fsSL https://github.com/web-flow.gpg > web-flow.asc
//! gpg --show-keys web-flow.asc     # check the fingerprint GitHub documents
//! kubectl create secret generic git-keys --from-file=web-flow.asc \
//!     --from-file=team.asc=<(gpg --export --armor KEYID...)
//! # then: --verify-pgp-keyring=/etc/git-keys/web-flow.asc
//! #       --verify-pgp-keyring=/etc/git-keys/team.asc
//! ```
//!
//! The file may hold several keys (GitHub rotates the key; the older one
//! expires): all are added, and an expired one stops counting by itself.
//! Fetch the file again when GitHub announces a new key.

mod cert;
mod critical;
mod low_s;
mod read;
#[cfg(test)]
mod tests;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{Signature, SignatureType};
use pgp::types::{Fingerprint, KeyDetails, KeyId};

use super::{Accepted, Refusal};
use cert::{Cert, KeyState, Unusable};

/// The public keys of every `--verify-pgp-keyring` file of one sync.
#[derive(Debug, Default)]
pub struct Keyring {
    /// One entry per primary key: the same key given twice (in two files,
    /// or once with its revocation) is merged, so a revocation anywhere wins.
    certs: Vec<Cert>,
}

/// A keyring file that cannot be used (the caller adds the file name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyringError(pub String);

impl Keyring {
    /// Adds the public keys of one keyring file: ASCII-armoured (one or
    /// several `PGP PUBLIC KEY BLOCK`s, each with one or several keys) or
    /// binary (`gpg --export`). Refuses secret keys, files without a key and
    /// keys without a valid self-signature; skips (and returns, as entry and
    /// reason) keys of an algorithm that cannot be checked here and
    /// GitHub's placeholder for a user without keys.
    pub fn add_file(&mut self, bytes: &[u8]) -> Result<Vec<(String, String)>, KeyringError> {
        let read = read::public_keys(bytes)?;
        let mut skipped = read.skipped;
        // The file's keys, each merged with its other copies in the file
        // and with the keyring's copy, so no revocation is lost.
        let mut keys: Vec<SignedPublicKey> = Vec::new();
        for key in read.keys {
            let fingerprint = key.primary_key.fingerprint();
            let merged = match keys
                .iter()
                .position(|k| k.primary_key.fingerprint() == fingerprint)
            {
                Some(i) => cert::merge(keys.swap_remove(i), key),
                None => match self.position(&fingerprint) {
                    Some(i) => cert::merge(self.certs[i].key.clone(), key),
                    None => key,
                },
            };
            keys.push(merged);
        }
        let mut certs = Vec::new();
        for key in keys {
            let named = key_name(&key);
            match Cert::new(key) {
                Ok(cert) => certs.push(cert),
                Err(Unusable::Unsupported(why)) => skipped.push((named, why)),
                Err(Unusable::Invalid(why)) => return Err(KeyringError(format!("{named}: {why}"))),
            }
        }
        // Only once the whole file is good: a bad file adds nothing.
        for cert in certs {
            match self.position(&cert.primary.fingerprint) {
                Some(i) => self.certs[i] = cert,
                None => self.certs.push(cert),
            }
        }
        Ok(skipped)
    }

    /// How many primary keys the keyring holds.
    pub fn len(&self) -> usize {
        self.certs.len()
    }

    /// Whether the keyring holds no key.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    fn position(&self, fingerprint: &Fingerprint) -> Option<usize> {
        self.certs
            .iter()
            .position(|c| c.primary.fingerprint == *fingerprint)
    }

    /// Verifies an armoured OpenPGP `signature` (`-----BEGIN PGP
    /// SIGNATURE-----`, a detached signature as git stores it) over
    /// `payload`; `email`, when given, must be the e-mail of one of the
    /// key's valid user IDs (compared case-insensitively).
    pub fn verify(
        &self,
        payload: &[u8],
        signature: &[u8],
        email: Option<&str>,
        now: SystemTime,
    ) -> Result<Accepted, Refusal> {
        let sig = parse_signature(signature)?;
        let issuer = Issuer::of(&sig)?;
        let candidates: Vec<(&Cert, &KeyState)> = self
            .certs
            .iter()
            .flat_map(|c| c.keys().map(move |k| (c, k)))
            .filter(|(_, k)| issuer.names(k))
            .collect();
        if candidates.is_empty() {
            return Err(Refusal::UnknownKey {
                key: issuer.to_string(),
            });
        }
        let when = Times::of(&sig, now)?;
        let mut refusals = Vec::new();
        for (cert, key) in candidates {
            match check(cert, key, &sig, payload, email, when) {
                Ok(accepted) => return Ok(accepted),
                Err(refusal) => refusals.push(refusal),
            }
        }
        // Several candidates only with a key id collision or a key listed as
        // primary and subkey: a refusal about a key that did make the
        // signature says more than "bad signature" from the others.
        let pos = refusals
            .iter()
            .position(|r| !matches!(r, Refusal::BadSignature { .. }))
            .unwrap_or(0);
        Err(refusals.swap_remove(pos))
    }
}

/// `key 5EB2… ("K <k@example.com>")`: the fingerprint and the first user ID
/// the key claims (not verified: only to recognise it).
fn key_name(key: &SignedPublicKey) -> String {
    let fingerprint = hex_upper(&key.primary_key.fingerprint());
    match key.details.users.first() {
        Some(user) => format!(
            "key {fingerprint} ({:?})",
            String::from_utf8_lossy(user.id.id())
        ),
        None => format!("key {fingerprint}"),
    }
}

/// Whether `bytes` is gpg's keybox (`pubring.kbx`): its first blob, the
/// header, has the magic `KBXf` at offset 8.
pub(crate) fn is_keybox(bytes: &[u8]) -> bool {
    bytes.get(8..12) == Some(b"KBXf")
}

/// An rPGP error in words. Some of its messages embed an inner error with
/// `{:?}`, which prints a struct and, when backtraces are enabled, dozens
/// of frames: that is cut, and the innermost message kept.
pub(crate) fn describe(e: &pgp::errors::Error) -> String {
    plain(&e.to_string())
}

/// `text` on one line, up to the first struct `Debug` renders in it
/// (`Name {`, and the `Name(` wrapping it), with the message quoted inside
/// it (`error: "…"`, `message: "…"`). Short tuple variants (`InvalidTag(15)`)
/// are kept: they say what was wrong.
pub(crate) fn plain(text: &str) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let Some(at) = struct_start(&text) else {
        return text;
    };
    // "error while parsing composed key: IO { source: Custom { kind: …,
    // error: \"unknown packet header version 101101\" }, backtrace: … }"
    let mut head = text[..at].trim_end_matches([':', ' ', '(']);
    // What wrapped the struct: `Error(` in `… Error(Error { … })`.
    let before = text[..at].trim_end();
    if let Some(wrapper) = before
        .rsplit(' ')
        .next()
        .filter(|w| w.ends_with('(') && is_camel_case(w))
    {
        head = before[..before.len() - wrapper.len()].trim_end_matches([':', ' ', '(']);
    }
    let inner = ["error: \"", "message: \""].iter().find_map(|field| {
        let start = text.find(field)? + field.len();
        let len = text[start..].find('"')?;
        Some(&text[start..start + len])
    });
    match inner {
        Some(inner) if head.is_empty() => inner.to_string(),
        Some(inner) => format!("{head}: {inner}"),
        None => head.to_string(),
    }
}

/// Where a CamelCase name followed by ` {` starts: a struct as `Debug`
/// prints it.
fn struct_start(text: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(brace) = text[from..].find(" {").map(|b| b + from) {
        let name_start = text[..brace]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(0, |i| i + 1);
        if is_camel_case(&text[name_start..brace]) {
            return Some(name_start);
        }
        from = brace + 2;
    }
    None
}

/// `IO`, `Error`, `Custom`: a type or variant name (a wrapper when followed
/// by `(`, as in `Error(`).
fn is_camel_case(word: &str) -> bool {
    let word = word.trim_end_matches('(');
    word.starts_with(|c: char| c.is_ascii_uppercase())
        && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Reads the one signature of a git object's `-----BEGIN PGP SIGNATURE-----`
/// armour and checks it is a document signature with a strong hash and no
/// critical subpacket left unimplemented.
fn parse_signature(armour: &[u8]) -> Result<Signature, Refusal> {
    let sig = read_signature(armour)?;
    if let Some(what) = critical::unimplemented(&sig) {
        return Err(Refusal::Unsupported(format!(
            "the OpenPGP signature carries {what}, which git-sidecar does not implement; the \
             signer marked it critical so that verifiers which do not understand it refuse the \
             signature (gpg reports it as a BAD signature): sign without it"
        )));
    }
    Ok(sig)
}

/// The one signature of the armour, of a document type and a strong hash.
fn read_signature(armour: &[u8]) -> Result<Signature, Refusal> {
    let malformed = |e: pgp::errors::Error| {
        Refusal::Malformed(format!(
            "cannot read the OpenPGP signature: {}",
            describe(&e)
        ))
    };
    let (sigs, _) = DetachedSignature::from_armor_many(armour).map_err(malformed)?;
    let mut sigs = sigs.collect::<Result<Vec<_>, _>>().map_err(malformed)?;
    let sig = match sigs.len() {
        1 => sigs.remove(0).signature,
        0 => {
            return Err(Refusal::Malformed(
                "the PGP SIGNATURE armour holds no signature".into(),
            ))
        }
        n => {
            return Err(Refusal::Malformed(format!(
                "the PGP SIGNATURE armour holds {n} signatures; git writes one"
            )))
        }
    };
    match sig.typ() {
        // git signs the object bytes (binary); a text signature (gpg
        // --textmode) is checked over CRLF-normalised lines by rPGP.
        Some(SignatureType::Binary | SignatureType::Text) => {}
        other => {
            return Err(Refusal::Unsupported(format!(
                "OpenPGP signature of type {other:?}; a git object needs a document signature (binary, 0x00)"
            )))
        }
    }
    match sig.hash_alg() {
        Some(
            HashAlgorithm::Sha256
            | HashAlgorithm::Sha384
            | HashAlgorithm::Sha512
            | HashAlgorithm::Sha224
            | HashAlgorithm::Sha3_256
            | HashAlgorithm::Sha3_512,
        ) => Ok(sig),
        // SHA-1 and MD5 have collisions: someone who had one harmless
        // commit signed could transplant the signature onto another.
        other => Err(Refusal::Unsupported(format!(
            "the signature's hash algorithm {} is too weak; sign with SHA-256 or better (gpg --personal-digest-preferences SHA512)",
            other.map_or_else(|| "(unknown)".to_string(), |h| h.to_string())
        ))),
    }
}

/// Who the signature says made it (issuer fingerprint and key id
/// subpackets; only hints, the cryptographic check decides).
struct Issuer {
    fingerprints: Vec<Fingerprint>,
    key_ids: Vec<KeyId>,
}

impl Issuer {
    fn of(sig: &Signature) -> Result<Self, Refusal> {
        let issuer = Issuer {
            fingerprints: sig.issuer_fingerprint().into_iter().cloned().collect(),
            key_ids: sig.issuer_key_id().into_iter().cloned().collect(),
        };
        if issuer.fingerprints.is_empty() && issuer.key_ids.is_empty() {
            return Err(Refusal::Malformed(
                "the OpenPGP signature names no issuer key".into(),
            ));
        }
        Ok(issuer)
    }

    fn names(&self, key: &KeyState) -> bool {
        self.fingerprints.contains(&key.fingerprint) || self.key_ids.contains(&key.key_id)
    }
}

impl std::fmt::Display for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.fingerprints.first(), self.key_ids.first()) {
            (Some(fp), _) => f.write_str(&hex_upper(fp)),
            (None, Some(id)) => f.write_str(&hex_upper(id)),
            (None, None) => f.write_str("(none)"),
        }
    }
}

/// The moments a key must be valid at: when the signature was made, and
/// now (the sync's time); in seconds since the epoch, as OpenPGP counts.
#[derive(Clone, Copy)]
struct Times {
    signed: u64,
    now: u64,
    /// When the signature itself expires (signature expiration subpacket).
    sig_expires: Option<u64>,
}

impl Times {
    fn of(sig: &Signature, now: SystemTime) -> Result<Self, Refusal> {
        let signed = sig.created().ok_or_else(|| {
            Refusal::Malformed("the OpenPGP signature has no creation time".into())
        })?;
        let signed = u64::from(signed.as_secs());
        let sig_expires = sig
            .signature_expiration_time()
            .map(|d| u64::from(d.as_secs()))
            .filter(|&d| d > 0)
            .map(|d| signed + d);
        let now = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        Ok(Times {
            signed,
            now,
            sig_expires,
        })
    }
}

/// Checks `sig` against one candidate key: cryptography first (a forged
/// signature is "bad", whatever the key's state), then the key's state at
/// the signature's time and now, then the committer's e-mail.
fn check(
    cert: &Cert,
    key: &KeyState,
    sig: &Signature,
    payload: &[u8],
    email: Option<&str>,
    when: Times,
) -> Result<Accepted, Refusal> {
    let fingerprint = hex_upper(&key.fingerprint);
    if let Some(why) = &key.unsupported {
        return Err(Refusal::Unsupported(format!(
            "signed by subkey {fingerprint}: {why}"
        )));
    }
    cert.verify_data(key, sig, payload)
        .map_err(|e| Refusal::BadSignature {
            key: fingerprint.clone(),
            detail: format!("it does not match the signed content ({})", describe(&e)),
        })?;
    for state in [&cert.primary, key] {
        usable(state, when)?;
    }
    if let Some(why) = &key.cannot_sign {
        return Err(Refusal::BadSignature {
            key: fingerprint,
            detail: format!("the signature verifies, but this key may not sign: {why}"),
        });
    }
    if let Some(end) = when.sig_expires.filter(|&end| end <= when.now) {
        return Err(Refusal::SignatureExpired {
            key: fingerprint,
            at: date(end),
        });
    }
    let signer = match email {
        None => cert.user_ids.first().cloned(),
        Some(email) => Some(
            cert.user_id_for(email)
                .ok_or_else(|| Refusal::CommitterMismatch {
                    key: fingerprint.clone(),
                    email: email.to_string(),
                    role: "committer",
                })?,
        ),
    };
    Ok(Accepted {
        signer: signer.unwrap_or_else(|| hex_upper(&cert.primary.fingerprint)),
        key: fingerprint,
    })
}

/// Refuses a revoked key, one created after the signature, or one expired
/// at the signature's time or now.
fn usable(key: &KeyState, when: Times) -> Result<(), Refusal> {
    let fingerprint = || hex_upper(&key.fingerprint);
    if key.revoked {
        return Err(Refusal::Revoked { key: fingerprint() });
    }
    if key.created > when.signed {
        return Err(Refusal::Expired {
            key: fingerprint(),
            detail: format!(
                "the signature ({}) is older than the key ({})",
                date(when.signed),
                date(key.created)
            ),
        });
    }
    match key.expires {
        Some(end) if end <= when.signed => Err(Refusal::Expired {
            key: fingerprint(),
            detail: format!(
                "expired at {}, before the signature ({})",
                date(end),
                date(when.signed)
            ),
        }),
        Some(end) if end <= when.now => Err(Refusal::Expired {
            key: fingerprint(),
            detail: format!("expired at {}", date(end)),
        }),
        _ => Ok(()),
    }
}

fn date(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

fn hex_upper(bytes: &impl AsRef<[u8]>) -> String {
    hex::encode_upper(bytes.as_ref())
}
