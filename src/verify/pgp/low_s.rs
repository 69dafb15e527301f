//! secp256k1 ECDSA signatures whose S is in the upper half of the group
//! order. OpenPGP has no low-S rule and libgcrypt (gpg) makes either half,
//! but rPGP checks secp256k1 through `k256`, which enforces Bitcoin's low-S
//! rule and so refuses about half of gpg's valid signatures (self-signatures
//! included). In ECDSA, (r, s) and (r, n − s) verify for exactly the same
//! key and message: s enters verification only as s⁻¹, and negating it
//! negates the point whose x coordinate must equal r. So a high S is
//! replaced by n − s before rPGP checks the signature, which gives the
//! verdict of standard ECDSA; the signature's MPIs are not part of what it
//! hashes, so nothing else changes. Other curves are left alone (their
//! crates accept both halves).

use std::borrow::Cow;

use pgp::packet::Signature;
use pgp::types::{EcdsaPublicParams, KeyDetails, Mpi, PublicParams, SignatureBytes};

/// `sig` as rPGP can check it against `signer`: for a secp256k1 key, with
/// a high S replaced by n − s; otherwise unchanged.
pub(super) fn for_key<'a>(sig: &'a Signature, signer: &impl KeyDetails) -> Cow<'a, Signature> {
    let secp256k1 = matches!(
        signer.public_params(),
        PublicParams::ECDSA(EcdsaPublicParams::Secp256k1 { .. })
    );
    match normalised(sig).filter(|_| secp256k1) {
        Some(low) => Cow::Owned(low),
        None => Cow::Borrowed(sig),
    }
}

/// The signature with S replaced by n − s, `None` when S is already low
/// (or the signature is not a well-formed secp256k1 (r, s) pair, which
/// rPGP then refuses as it is).
fn normalised(sig: &Signature) -> Option<Signature> {
    let Some(SignatureBytes::Mpis(mpis)) = sig.signature() else {
        return None;
    };
    let [r, s] = mpis.as_slice() else {
        return None;
    };
    let ecdsa = k256::ecdsa::Signature::from_scalars(field(r)?, field(s)?).ok()?;
    let (r, s) = ecdsa.normalize_s()?.split_bytes();
    let mpis = vec![Mpi::from_slice(&r), Mpi::from_slice(&s)];
    let config = sig.config()?.clone();
    Signature::from_config(config, sig.signed_hash_value()?, SignatureBytes::Mpis(mpis)).ok()
}

/// An MPI (big-endian, leading zeros stripped) as a 32-byte field element.
fn field(mpi: &Mpi) -> Option<k256::FieldBytes> {
    let bytes: &[u8] = mpi.as_ref();
    let mut field = k256::FieldBytes::default();
    let start = field.len().checked_sub(bytes.len())?;
    field[start..].copy_from_slice(bytes);
    Some(field)
}
