//! One OpenPGP certificate (a primary key, its user IDs and subkeys) and
//! what its self-signatures say: which user IDs are valid, whether the key
//! and each subkey are revoked, when they expire, which may sign. rPGP
//! checks each signature; the policy (RFC 9580 §5.2.3 and §10.1) is here.
//!
//! - The newest valid self-signature of a component decides its state (a
//!   user ID re-certified after a revocation is valid again; a newer
//!   expiry replaces an older one).
//! - Any valid revocation of the primary key or a subkey by the primary key
//!   revokes it, whatever its reason: a deploy gate does not guess whether
//!   "superseded" was meant for old signatures. Revocations by designated
//!   revokers are not honoured: remove the key from the keyring instead.
//! - A subkey may sign only with a valid binding signature carrying the
//!   signing flag and a valid back-signature (primary key binding), as
//!   GnuPG requires: otherwise anyone could claim someone else's subkey.
//! - A self-signature or binding carrying a critical subpacket that is
//!   not implemented ([`critical`]) is no signature, as for GnuPG
//!   ("unknown critical bit"): the next newest one decides; a subkey left
//!   with none may not sign, and a key left with none is skipped with a
//!   warning ([`Unusable::Unsupported`]), as GnuPG ignores it: the file's
//!   other keys still count. The newest binding's
//!   back-signature carrying one leaves its subkey unable to sign (no
//!   older binding takes over, as in GnuPG). A revocation counts whatever
//!   it carries: a deploy gate errs on the side of refusing.
//! - Every signature is checked through [`low_s`], so that secp256k1
//!   signatures verify whichever half of the group order their S is in.
//! - A key of an algorithm rPGP cannot check (brainpool curves, an
//!   encryption-only algorithm) is unusable, not invalid: the keyring skips
//!   it with a warning ([`Unusable::Unsupported`]); a subkey of such an
//!   algorithm may not sign.

use std::borrow::Cow;

use pgp::composed::{SignedPublicKey, SignedPublicSubKey};
use pgp::packet::{PublicKey, Signature, SignatureType, SubpacketData};
use pgp::types::{
    EcdsaPublicParams, EddsaLegacyPublicParams, Fingerprint, KeyDetails, KeyId, PublicParams, Tag,
    Timestamp,
};

use super::{critical, low_s};

/// Why a primary key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Unusable {
    /// Its algorithm, or every self-signature, cannot be checked here:
    /// skipped, with a warning.
    Unsupported(String),
    /// It is broken (no valid self-signature): the file is refused.
    Invalid(String),
}

const NO_SELF_SIGNATURE: &str = "it has no valid self-signature (no user ID certified by the \
     key itself); export it again with gpg --export --armor KEYID";

/// Why `key`'s algorithm cannot make signatures rPGP checks, if it cannot.
pub(super) fn unsupported(key: &impl KeyDetails) -> Option<String> {
    let id = u8::from(key.algorithm());
    match key.public_params() {
        PublicParams::ECDSA(EcdsaPublicParams::Unsupported { curve, .. })
        | PublicParams::EdDSALegacy(EddsaLegacyPublicParams::Unsupported { curve, .. }) => {
            Some(format!("{} keys are not supported", curve.name()))
        }
        PublicParams::ECDH(_)
        | PublicParams::X25519(_)
        | PublicParams::X448(_)
        | PublicParams::Elgamal(_) => Some(format!(
            "public-key algorithm {id} is for encryption only and cannot sign"
        )),
        PublicParams::Unknown { .. } => Some(format!("public-key algorithm {id} is not supported")),
        _ => None,
    }
}

/// Whether `sig` carries no critical subpacket left unimplemented.
fn honoured(sig: &Signature) -> bool {
    critical::unimplemented(sig).is_none()
}

/// Why the first of `sigs` (each verified, `which` signature of the key)
/// is not honoured, for a key or subkey left without a valid one.
fn unhonoured<'a>(which: &str, mut sigs: impl Iterator<Item = &'a Signature>) -> Option<String> {
    sigs.find_map(critical::unimplemented).map(|why| {
        format!(
            "its {which} carries {why}, which is not implemented (gpg calls the signature bad: \
             \"unknown critical bit\")"
        )
    })
}

/// Whether a revocation of `key` by its own primary key verifies.
fn revoked_by_itself(key: &SignedPublicKey) -> bool {
    let primary = &key.primary_key;
    key.details
        .revocation_signatures
        .iter()
        .any(|s| by(s, primary).verify_key(primary).is_ok())
}

/// `sig` as rPGP can check it against `signer` (see [`low_s`]).
fn by<'a>(sig: &'a Signature, signer: &impl KeyDetails) -> Cow<'a, Signature> {
    low_s::for_key(sig, signer)
}

/// A primary key with what its self-signatures establish.
#[derive(Debug)]
pub(super) struct Cert {
    pub key: SignedPublicKey,
    pub primary: KeyState,
    pub subkeys: Vec<KeyState>,
    /// Valid, unrevoked user IDs, the primary one first.
    pub user_ids: Vec<String>,
}

/// The state of the primary key or of one subkey.
#[derive(Debug)]
pub(super) struct KeyState {
    pub fingerprint: Fingerprint,
    pub key_id: KeyId,
    /// `None` for the primary key, else the index in `public_subkeys`.
    pub subkey: Option<usize>,
    pub created: u64,
    pub expires: Option<u64>,
    pub revoked: bool,
    /// Why the key may not make data signatures, if it may not.
    pub cannot_sign: Option<String>,
    /// Why rPGP cannot check the key's signatures (a subkey of an
    /// unsupported algorithm; a primary key is never kept then).
    pub unsupported: Option<String>,
}

impl Cert {
    /// Works out what `key`'s self-signatures establish; an error when the
    /// key's algorithm is not supported or the key has no valid
    /// self-signature at all (nothing binds it to anyone).
    pub fn new(key: SignedPublicKey) -> Result<Cert, Unusable> {
        let primary = &key.primary_key;
        if let Some(why) = unsupported(primary) {
            return Err(Unusable::Unsupported(why));
        }
        let verified_direct: Vec<&Signature> = key
            .details
            .direct_signatures
            .iter()
            .filter(|s| s.typ() == Some(SignatureType::Key) && s.created().is_some())
            .filter(|s| by(s, primary).verify_key(primary).is_ok())
            .collect();
        let mut verified_all = verified_direct.clone();
        let mut self_sigs: Vec<&Signature> = verified_direct
            .into_iter()
            .filter(|s| honoured(s))
            .collect();
        let mut user_ids = Vec::new();
        for user in &key.details.users {
            let verified: Vec<&Signature> = user
                .signatures
                .iter()
                .filter(|s| {
                    by(s, primary)
                        .verify_certification(primary, Tag::UserId, &user.id)
                        .is_ok()
                })
                .collect();
            verified_all.extend(&verified);
            // A revocation counts whatever it carries.
            let newest = newest(
                verified
                    .into_iter()
                    .filter(|s| s.typ() == Some(SignatureType::CertRevocation) || honoured(s)),
            );
            if let Some(sig) = newest.filter(|s| s.typ() != Some(SignatureType::CertRevocation)) {
                user_ids.push((
                    String::from_utf8_lossy(user.id.id()).into_owned(),
                    sig.is_primary(),
                ));
                self_sigs.push(sig);
            }
        }
        let Some(newest_self) = newest(self_sigs.into_iter()) else {
            // Self-signatures that verify but carry what is not implemented
            // leave a key gpg lists and ignores: skipped, like a key of an
            // unsupported algorithm; none that verifies is a broken export.
            let unhonoured = || {
                unhonoured(
                    "self-signature",
                    verified_all
                        .into_iter()
                        .filter(|s| s.typ() != Some(SignatureType::CertRevocation)),
                )
            };
            // Skipped, a revoked key's revocation would be lost to another
            // copy of it elsewhere in the keyring, which would then count
            // unrevoked: such a key refuses its file instead.
            return Err(match unverifiable(&key).or_else(unhonoured) {
                Some(why) if revoked_by_itself(&key) => Unusable::Invalid(format!(
                    "{why}, and the key is revoked: remove it from the keyring (skipped, its \
                     revocation would not count against another copy of it)"
                )),
                Some(why) => Unusable::Unsupported(why),
                None => Unusable::Invalid(NO_SELF_SIGNATURE.into()),
            });
        };
        // The primary user ID first; `sort_by_key` is stable.
        user_ids.sort_by_key(|(_, primary)| !primary);
        let revoked = revoked_by_itself(&key);
        let cannot_sign =
            (has_key_flags(newest_self) && !newest_self.key_flags().sign()).then(|| {
                "its self-signature does not give it the signing capability (key flags)".to_string()
            });
        let state = KeyState {
            fingerprint: primary.fingerprint(),
            key_id: primary.legacy_key_id(),
            subkey: None,
            created: secs(primary.created_at()),
            expires: expiry(primary.created_at(), newest_self),
            revoked,
            cannot_sign,
            unsupported: None,
        };
        let subkeys = key
            .public_subkeys
            .iter()
            .enumerate()
            .map(|(i, sub)| subkey_state(primary, i, sub))
            .collect();
        Ok(Cert {
            primary: state,
            subkeys,
            user_ids: user_ids.into_iter().map(|(id, _)| id).collect(),
            key,
        })
    }

    /// The primary key and the subkeys.
    pub fn keys(&self) -> impl Iterator<Item = &KeyState> {
        std::iter::once(&self.primary).chain(&self.subkeys)
    }

    /// Checks the data signature cryptographically with `key`'s material.
    pub fn verify_data(
        &self,
        key: &KeyState,
        sig: &Signature,
        payload: &[u8],
    ) -> pgp::errors::Result<()> {
        match key.subkey.and_then(|i| self.key.public_subkeys.get(i)) {
            Some(sub) => by(sig, &sub.key).verify(&sub.key, payload),
            None => by(sig, &self.key.primary_key).verify(&self.key.primary_key, payload),
        }
    }

    /// The valid user ID whose e-mail is `email` (case-insensitively: the
    /// domain is, and no mail system treats local parts differently).
    pub fn user_id_for(&self, email: &str) -> Option<String> {
        self.user_ids
            .iter()
            .find(|id| email_of(id).is_some_and(|e| e.eq_ignore_ascii_case(email.trim())))
            .cloned()
    }
}

/// The e-mail of a user ID: `Name (comment) <email>` or a bare address.
pub(super) fn email_of(user_id: &str) -> Option<&str> {
    match (user_id.rfind('<'), user_id.rfind('>')) {
        (Some(open), Some(close)) if open < close => Some(&user_id[open + 1..close]),
        _ if user_id.contains('@') && !user_id.contains(char::is_whitespace) => Some(user_id),
        _ => None,
    }
}

/// Why the self-signatures do not verify when rPGP cannot check them
/// (an algorithm or parameter it does not implement), as rPGP words it.
fn unverifiable(key: &SignedPublicKey) -> Option<String> {
    let primary = &key.primary_key;
    let user = key.details.users.first()?;
    let sig = user.signatures.first()?;
    match by(sig, primary).verify_certification(primary, Tag::UserId, &user.id) {
        Err(
            pgp::errors::Error::Unsupported { message, .. }
            | pgp::errors::Error::Unimplemented { message, .. },
        ) => Some(format!("rPGP cannot check its signatures: {message}")),
        _ => None,
    }
}

fn subkey_state(primary: &PublicKey, index: usize, sub: &SignedPublicSubKey) -> KeyState {
    let verified = |typ| {
        sub.signatures
            .iter()
            .filter(move |s| s.typ() == Some(typ))
            .filter(|s| {
                by(s, primary)
                    .verify_subkey_binding(primary, &sub.key)
                    .is_ok()
            })
    };
    let of_type = |typ| verified(typ).filter(|s| honoured(s));
    let revoked = verified(SignatureType::SubkeyRevocation).next().is_some();
    let binding = newest(of_type(SignatureType::SubkeyBinding));
    let unsupported = unsupported(&sub.key);
    let cannot_sign = match binding {
        _ if unsupported.is_some() => unsupported.clone(),
        None => Some(
            unhonoured("binding signature", verified(SignatureType::SubkeyBinding))
                .unwrap_or_else(|| "it has no valid binding signature from its primary key".into()),
        ),
        Some(b) if !b.key_flags().sign() => {
            Some("its binding signature does not give it the signing capability (key flags)".into())
        }
        Some(b) => match b.embedded_signature() {
            None => Some("it is not cross-certified (no back-signature in its binding)".into()),
            Some(back)
                if by(back, &sub.key)
                    .verify_primary_key_binding(&sub.key, primary)
                    .is_err() =>
            {
                Some("its back-signature (primary key binding) does not verify".into())
            }
            Some(back) if !honoured(back) => unhonoured("back-signature", std::iter::once(back)),
            Some(_) => None,
        },
    };
    KeyState {
        fingerprint: sub.key.fingerprint(),
        key_id: sub.key.legacy_key_id(),
        subkey: Some(index),
        created: secs(sub.key.created_at()),
        expires: binding.and_then(|b| expiry(sub.key.created_at(), b)),
        revoked,
        cannot_sign,
        unsupported,
    }
}

/// The newest of `sigs` (by creation time; one without is invalid).
fn newest<'a>(sigs: impl Iterator<Item = &'a Signature>) -> Option<&'a Signature> {
    sigs.filter(|s| s.created().is_some())
        .max_by_key(|s| s.created())
}

/// When a key created at `created` expires by `sig`'s key expiration time
/// (absent or zero: never).
fn expiry(created: Timestamp, sig: &Signature) -> Option<u64> {
    sig.key_expiration_time()
        .map(|d| u64::from(d.as_secs()))
        .filter(|&d| d > 0)
        .map(|d| secs(created) + d)
}

/// Whether `sig` carries key flags at all: a self-signature without them
/// (old keys) does not restrict the key.
fn has_key_flags(sig: &Signature) -> bool {
    sig.config().is_some_and(|c| {
        c.hashed_subpackets()
            .any(|p| matches!(p.data, SubpacketData::KeyFlags(_)))
    })
}

fn secs(t: Timestamp) -> u64 {
    u64::from(t.as_secs())
}

/// `extra` merged into `base` (the same primary key from two files, or a
/// key and its revocation): signatures and components are unioned.
pub(super) fn merge(mut base: SignedPublicKey, extra: SignedPublicKey) -> SignedPublicKey {
    let details = &mut base.details;
    union(
        &mut details.revocation_signatures,
        extra.details.revocation_signatures,
    );
    union(
        &mut details.direct_signatures,
        extra.details.direct_signatures,
    );
    for user in extra.details.users {
        match details.users.iter_mut().find(|u| u.id == user.id) {
            Some(known) => union(&mut known.signatures, user.signatures),
            None => details.users.push(user),
        }
    }
    for sub in extra.public_subkeys {
        match base.public_subkeys.iter_mut().find(|s| s.key == sub.key) {
            Some(known) => union(&mut known.signatures, sub.signatures),
            None => base.public_subkeys.push(sub),
        }
    }
    base
}

fn union(into: &mut Vec<Signature>, more: Vec<Signature>) {
    for sig in more {
        if !into.contains(&sig) {
            into.push(sig);
        }
    }
}
