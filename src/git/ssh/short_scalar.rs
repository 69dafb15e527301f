//! ECDSA P-256 keys whose private scalar starts with a zero byte (about 1 in
//! 256 of the keys `ssh-keygen -t ecdsa` makes). OpenSSH stores the scalar
//! as an `mpint`, which drops leading zeros, so it is 31 bytes long; the
//! `ssh-key` release russh pins (0.7.0-rc.11) wants at least 32 and refuses
//! the key, while OpenSSH uses it.
//!
//! When `ssh-key` has refused an unencrypted OpenSSH key, this reads the
//! same file with `ssh-key`'s own PEM and wire decoders (`ssh-encoding`),
//! and, for a P-256 key, rebuilds the key pair from the scalar with `p256`:
//! the public point is computed from the scalar and must equal the one in
//! the file. Every other key stays refused as before. Drop this module once
//! russh moves to an `ssh-key` that accepts short scalars.

use russh::keys::ssh_key::encoding::{self, Decode, Mpint, Reader};
use russh::keys::ssh_key::private::{EcdsaKeypair, KeypairData};
use russh::keys::ssh_key::PrivateKey;

/// The OpenSSH private key envelope ("openssh-key-v1"), as far as it matters here.
struct Envelope {
    cipher: String,
    /// The unencrypted private section (checkints, key, comment, padding).
    private: Vec<u8>,
}

const MAGIC: &[u8] = b"openssh-key-v1\0";
const P256: &str = "ecdsa-sha2-nistp256";

impl encoding::pem::PemLabel for Envelope {
    const PEM_LABEL: &'static str = "OPENSSH PRIVATE KEY";
}

impl Decode for Envelope {
    type Error = encoding::Error;

    fn decode(reader: &mut impl Reader) -> Result<Self, encoding::Error> {
        let mut magic = [0u8; MAGIC.len()];
        reader.read(&mut magic)?;
        if magic != MAGIC {
            return Err(encoding::Error::Length);
        }
        let cipher = String::decode(reader)?;
        let _kdf = String::decode(reader)?;
        let _kdf_options = Vec::<u8>::decode(reader)?;
        if u32::decode(reader)? != 1 {
            return Err(encoding::Error::Length);
        }
        let _public = Vec::<u8>::decode(reader)?;
        let private = Vec::<u8>::decode(reader)?;
        Ok(Self { cipher, private })
    }
}

/// The key in `text`, if it is an unencrypted OpenSSH P-256 key whose scalar
/// is shorter than 32 bytes (and consistent with its public point).
pub fn decode(text: &str) -> Option<PrivateKey> {
    use encoding::DecodePem;
    let envelope = Envelope::decode_pem(text).ok()?;
    if envelope.cipher != "none" {
        return None;
    }
    let mut section = envelope.private.as_slice();
    let (check1, check2) = (
        u32::decode(&mut section).ok()?,
        u32::decode(&mut section).ok()?,
    );
    if check1 != check2 || String::decode(&mut section).ok()? != P256 {
        return None;
    }
    let _curve = String::decode(&mut section).ok()?;
    let public = Vec::<u8>::decode(&mut section).ok()?;
    let scalar = Mpint::decode(&mut section).ok()?;
    let comment = String::decode(&mut section).ok()?;
    let scalar = scalar.as_positive_bytes()?;
    if scalar.len() >= 32 {
        return None; // not this case: ssh-key's refusal stands
    }
    let secret = p256::SecretKey::from_slice(scalar).ok()?;
    // As ssh-key's own key generation does: the point computed from the scalar.
    let keypair = EcdsaKeypair::NistP256 {
        public: secret.public_key().into(),
        private: secret.into(),
    };
    let EcdsaKeypair::NistP256 {
        public: computed, ..
    } = &keypair
    else {
        return None;
    };
    if computed.as_bytes() != public.as_slice() {
        return None; // the scalar is not the file's public key's
    }
    PrivateKey::new(KeypairData::Ecdsa(keypair), comment).ok()
}
