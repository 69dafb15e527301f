//! Critical signature subpackets (RFC 9580 §5.2.3.7): a signer marks a
//! subpacket critical so that a verifier that does not implement it refuses
//! the signature rather than ignore it; gpg (and so `git verify-commit`)
//! then reports "assuming bad signature … due to an unknown critical bit".
//! rPGP refuses critical subpackets of a type it does not know, but not a
//! critical notation (it parses every notation, whatever its name) nor the
//! types it parses without acting on them. Which critical subpackets a data
//! signature may carry is decided here.

use pgp::packet::{Notation, Signature, SubpacketData};

/// The first critical subpacket in `sig`'s hashed area that git-sidecar
/// does not implement, described for the refusal; `None` when every
/// critical subpacket is one it honours or that cannot change the verdict.
pub(super) fn unimplemented(sig: &Signature) -> Option<String> {
    sig.config()?
        .hashed_subpackets()
        .filter(|p| p.is_critical)
        .find_map(|p| describe(&p.data))
}

/// `None` for the subpackets that may be critical: those the verdict uses
/// (creation and expiration times, issuer, key flags) and declarations
/// that say nothing about this signature's validity (preferences, features,
/// policy URI, key server, revocation key, trust and regular expression,
/// which only matter in third-party certifications, never used here).
fn describe(data: &SubpacketData) -> Option<String> {
    match data {
        // No notation is known: its meaning is whatever its name says.
        SubpacketData::Notation(notation) => {
            Some(format!("a critical notation {}", named(notation)))
        }
        SubpacketData::Experimental(kind, _) | SubpacketData::Other(kind, _) => {
            Some(format!("a critical subpacket of unknown type {kind}"))
        }
        SubpacketData::SignatureTarget(..) => Some("a critical signature target subpacket".into()),
        SubpacketData::IntendedRecipientFingerprint(_) => {
            Some("a critical intended recipient subpacket".into())
        }
        _ => None,
    }
}

/// `name=value`, the value shown when the signer marked it human-readable.
fn named(notation: &Notation) -> String {
    let name = String::from_utf8_lossy(&notation.name);
    let value = String::from_utf8_lossy(&notation.value);
    if notation.readable && value.chars().count() <= 64 && !value.contains(char::is_control) {
        format!("{name}={value}")
    } else {
        name.into_owned()
    }
}
