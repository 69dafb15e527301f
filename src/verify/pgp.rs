//! OpenPGP signatures: keyrings (`--verify-pgp-keyring`, armoured or
//! binary) and detached signatures over git objects.
//! (Skeleton: the keyring and the verifier are being written.)

use std::time::SystemTime;

use super::{Accepted, Refusal};

/// The public keys of every `--verify-pgp-keyring` file of one sync.
#[derive(Debug, Default)]
pub struct Keyring {}

/// A keyring file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyringError(pub String);

impl Keyring {
    /// Adds the public keys of one keyring file (armoured or binary).
    pub fn add_file(&mut self, bytes: &[u8]) -> Result<(), KeyringError> {
        let _ = bytes;
        Err(KeyringError(
            "OpenPGP keyrings are not supported yet".into(),
        ))
    }

    /// Verifies an armoured OpenPGP `signature` over `payload`; `email`,
    /// when given, must be the e-mail of one of the key's user IDs.
    pub fn verify(
        &self,
        payload: &[u8],
        signature: &[u8],
        email: Option<&str>,
        now: SystemTime,
    ) -> Result<Accepted, Refusal> {
        let _ = (payload, signature, email, now);
        Err(Refusal::Unsupported(
            "OpenPGP signature verification is not built yet".into(),
        ))
    }
}
