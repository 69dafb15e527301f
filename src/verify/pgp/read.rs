//! Reading a keyring file into public keys: ASCII armour (any number of
//! `PGP PUBLIC KEY BLOCK`s, text around them ignored) or binary packets.
//! Secret keys are refused before their packets are parsed: their bytes are
//! skipped, never decoded, kept or printed.

use std::io::Read;

use pgp::armor::Dearmor;
use pgp::composed::{Deserializable, SignedPublicKey};
use pgp::packet::PacketParser;
use pgp::types::Tag;

use super::KeyringError;

const SECRET: &str = "this is a secret key; give the public key: gpg --export --armor KEYID";
const HOW: &str = "expected an OpenPGP public key, ASCII-armoured (gpg --export --armor KEYID) or binary (gpg --export KEYID)";

/// The public keys in one keyring file.
pub(super) fn public_keys(bytes: &[u8]) -> Result<Vec<SignedPublicKey>, KeyringError> {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace());
    let Some(start) = start else {
        return Err(KeyringError(format!("the file is empty; {HOW}")));
    };
    // OpenPGP packets start with a byte whose high bit is set; armour is text.
    if bytes[start] & 0x80 != 0 {
        return from_binary(&bytes[start..], "the binary keyring");
    }
    let blocks = armour_blocks(bytes);
    if blocks.is_empty() {
        return Err(KeyringError(not_armour_hint(bytes)));
    }
    let mut keys = Vec::new();
    for (n, (label, block)) in blocks.into_iter().enumerate() {
        let what = format!("armour block {} ({label})", n + 1);
        match label {
            "PGP PUBLIC KEY BLOCK" => keys.extend(from_binary(&dearmour(block, &what)?, &what)?),
            "PGP PRIVATE KEY BLOCK" => return Err(KeyringError(format!("{what}: {SECRET}"))),
            _ => {
                return Err(KeyringError(format!(
                    "{what} is not a public key block; {HOW}"
                )))
            }
        }
    }
    Ok(keys)
}

/// Each `-----BEGIN …-----` line's label and the block from it to its
/// `-----END` line. A line that does not start with the dashes (gpg's revocation
/// certificates are disarmed with a leading `:`) is not a block.
fn armour_blocks(bytes: &[u8]) -> Vec<(&str, &[u8])> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    let starts: Vec<usize> = (0..bytes.len())
        .filter(|&i| (i == 0 || bytes[i - 1] == b'\n') && bytes[i..].starts_with(BEGIN))
        .collect();
    let ends = starts.iter().skip(1).copied().chain([bytes.len()]);
    starts
        .iter()
        .zip(ends)
        .map(|(&from, to)| {
            let block = &bytes[from..to];
            // Up to the end of the `-----END …-----` line: rPGP's armour
            // reader refuses text after the footer.
            let block = match block.windows(9).position(|w| w == b"-----END ") {
                Some(end) => {
                    let eol = block[end..].iter().position(|&b| b == b'\n');
                    &block[..eol.map_or(block.len(), |eol| end + eol + 1)]
                }
                None => block,
            };
            let label = &block[BEGIN.len()..];
            let label = &label[..label.windows(5).position(|w| w == b"-----").unwrap_or(0)];
            (std::str::from_utf8(label).unwrap_or("?"), block)
        })
        .collect()
}

fn dearmour(block: &[u8], what: &str) -> Result<Vec<u8>, KeyringError> {
    let mut binary = Vec::new();
    Dearmor::new(block)
        .read_to_end(&mut binary)
        .map_err(|e| KeyringError(format!("{what}: broken armour: {e}")))?;
    Ok(binary)
}

/// The keys in binary packets; secret key packets refused unparsed.
fn from_binary(bytes: &[u8], what: &str) -> Result<Vec<SignedPublicKey>, KeyringError> {
    refuse_secret(bytes).map_err(|e| KeyringError(format!("{what}: {e}")))?;
    let keys = SignedPublicKey::from_bytes_many(bytes)
        .and_then(|keys| keys.collect::<Result<Vec<_>, _>>())
        .map_err(|e| KeyringError(format!("{what}: not a readable OpenPGP public key: {e}")))?;
    if keys.is_empty() {
        return Err(KeyringError(format!("{what} holds no public key; {HOW}")));
    }
    Ok(keys)
}

/// Walks the packet headers, skipping bodies, and refuses at the first
/// secret key or subkey packet.
fn refuse_secret(bytes: &[u8]) -> Result<(), &'static str> {
    let mut packets = PacketParser::new(bytes);
    while let Some(Ok(mut body)) = packets.next_ref() {
        if matches!(
            body.packet_header().tag(),
            Tag::SecretKey | Tag::SecretSubkey
        ) {
            return Err(SECRET);
        }
        if std::io::copy(&mut body, &mut std::io::sink()).is_err() {
            break;
        }
    }
    Ok(())
}

/// What to say about a text file without armour.
fn not_armour_hint(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    if ["ssh-ed25519", "ssh-rsa", "ecdsa-sha2-", "sk-ssh-"]
        .iter()
        .any(|k| text.contains(k))
    {
        return format!("this looks like SSH keys: give them to --verify-allowed-signers; {HOW}");
    }
    format!("no -----BEGIN PGP PUBLIC KEY BLOCK----- armour and not binary OpenPGP data; {HOW}")
}
