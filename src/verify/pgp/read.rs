//! Reading a keyring file into public keys: ASCII armour (any number of
//! `PGP PUBLIC KEY BLOCK`s, text around them ignored) or binary packets.
//! Secret keys are refused before their packets are parsed: their bytes are
//! skipped, never decoded, kept or printed. GitHub's placeholder block for
//! a user without keys (what `curl https://github.com/<user>.gpg` gives for
//! someone who signs with SSH) is skipped; the files people mistake for a
//! keyring (gpg's keybox, a revocation certificate, binary keys with armour
//! appended) are refused saying what they are.

use std::io::Read;

use pgp::armor::Dearmor;
use pgp::composed::{Deserializable, SignedPublicKey};
use pgp::packet::{Packet, PacketParser, SignatureType};
use pgp::types::Tag;

use super::{describe, plain, KeyringError};

const SECRET: &str = "this is a secret key; give the public key: gpg --export --armor KEYID";
const HOW: &str = "expected an OpenPGP public key, ASCII-armoured (gpg --export --armor KEYID) or binary (gpg --export KEYID)";
const REVOCATION: &str = "a revocation certificate (gpg's openpgp-revocs.d/*.rev), not a key: \
     import it into gpg (gpg --import FILE, without the leading ':' of its armour line) and \
     export the key again (gpg --export --armor KEYID), which then carries the revocation";
/// The armour header of GitHub's `https://github.com/<user>.gpg` for a user
/// without GPG keys (the block holds no packet).
const GITHUB_NO_KEYS: &str = "Note: This user hasn't uploaded any GPG keys.";

/// The keys of one file, and the entries skipped (entry, reason).
pub(super) struct Keys {
    pub keys: Vec<SignedPublicKey>,
    pub skipped: Vec<(String, String)>,
}

/// The public keys in one keyring file.
pub(super) fn public_keys(bytes: &[u8]) -> Result<Keys, KeyringError> {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace());
    let Some(start) = start else {
        return Err(KeyringError(format!("the file is empty; {HOW}")));
    };
    if super::is_keybox(bytes) {
        return Err(KeyringError(format!(
            "this is gpg's keybox (pubring.kbx), not a keyring: export the keys with \
             gpg --export --armor KEYID > keyring.asc; {HOW}"
        )));
    }
    // OpenPGP packets start with a byte whose high bit is set; armour is text.
    if bytes[start] & 0x80 != 0 {
        let keys = from_binary(binary_only(&bytes[start..])?, "the binary keyring")?;
        return Ok(Keys {
            keys,
            skipped: Vec::new(),
        });
    }
    let blocks = armour_blocks(bytes);
    if blocks.is_empty() {
        return Err(KeyringError(not_armour_hint(bytes)));
    }
    let mut read = Keys {
        keys: Vec::new(),
        skipped: Vec::new(),
    };
    for (n, (label, block)) in blocks.into_iter().enumerate() {
        let what = format!("armour block {} ({label})", n + 1);
        match label {
            "PGP PUBLIC KEY BLOCK" if is_github_placeholder(block) => read.skipped.push((
                format!("armour block {}", n + 1),
                "it is GitHub's placeholder for a user without GPG keys (\"This user hasn't \
                 uploaded any GPG keys\"); that user's commits need an SSH key in \
                 --verify-allowed-signers, or an OpenPGP key uploaded to GitHub"
                    .into(),
            )),
            "PGP PUBLIC KEY BLOCK" => read
                .keys
                .extend(from_binary(&dearmour(block, &what)?, &what)?),
            "PGP PRIVATE KEY BLOCK" => return Err(KeyringError(format!("{what}: {SECRET}"))),
            _ => {
                return Err(KeyringError(format!(
                    "{what} is not a public key block; {HOW}"
                )))
            }
        }
    }
    Ok(read)
}

/// Binary keys, refused when ASCII armour follows them (`cat key.gpg
/// key.asc`): packets cannot be read across the two.
fn binary_only(bytes: &[u8]) -> Result<&[u8], KeyringError> {
    const BEGIN: &[u8] = b"-----BEGIN PGP ";
    match bytes.windows(BEGIN.len()).position(|w| w == BEGIN) {
        Some(at) => Err(KeyringError(format!(
            "binary OpenPGP data followed by ASCII armour (at byte {at}): the file mixes \
             gpg --export and gpg --export --armor output; export all keys the same way, \
             e.g. gpg --export --armor KEYID... > keyring.asc"
        ))),
        None => Ok(bytes),
    }
}

/// GitHub's "no keys" block: its note header and no packet at all.
fn is_github_placeholder(block: &[u8]) -> bool {
    let text = String::from_utf8_lossy(block);
    text.lines().any(|l| l.trim() == GITHUB_NO_KEYS)
        && dearmour(block, "").is_ok_and(|binary| binary.is_empty())
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
            // The label ends with the dashes, on the BEGIN line.
            let line = &block[BEGIN.len()..];
            let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
            let label = &line[..line.windows(5).position(|w| w == b"-----").unwrap_or(0)];
            (std::str::from_utf8(label).unwrap_or("?"), block)
        })
        .collect()
}

fn dearmour(block: &[u8], what: &str) -> Result<Vec<u8>, KeyringError> {
    let mut binary = Vec::new();
    Dearmor::new(block)
        .read_to_end(&mut binary)
        .map_err(|e| KeyringError(format!("{what}: broken armour: {}", plain(&e.to_string()))))?;
    Ok(binary)
}

/// The keys in binary packets; secret key packets refused unparsed.
fn from_binary(bytes: &[u8], what: &str) -> Result<Vec<SignedPublicKey>, KeyringError> {
    refuse_secret(bytes).map_err(|e| KeyringError(format!("{what}: {e}")))?;
    let keys = SignedPublicKey::from_bytes_many(bytes)
        .and_then(|keys| keys.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            // Cut again as a whole: a dump can come through what `describe`
            // saw of the error (a bad revocation class, found by the mutation proptest).
            KeyringError(super::plain(&format!(
                "{what}: not a readable OpenPGP public key: {}",
                describe(&e)
            )))
        })?;
    if keys.is_empty() {
        if is_revocation_only(bytes) {
            return Err(KeyringError(format!("{what} is {REVOCATION}")));
        }
        return Err(KeyringError(format!("{what} holds no public key; {HOW}")));
    }
    Ok(keys)
}

/// Whether the packets are key revocation signatures alone.
fn is_revocation_only(bytes: &[u8]) -> bool {
    let mut any = false;
    for packet in PacketParser::new(bytes) {
        match packet {
            Ok(Packet::Signature(sig)) if sig.typ() == Some(SignatureType::KeyRevocation) => {
                any = true
            }
            _ => return false,
        }
    }
    any
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
    // gpg writes the certificate with its armour lines disarmed by a ':'.
    if text.contains("This is a revocation certificate") || text.contains(":-----BEGIN PGP") {
        return format!("this is {REVOCATION}");
    }
    if ["ssh-ed25519", "ssh-rsa", "ecdsa-sha2-", "sk-ssh-"]
        .iter()
        .any(|k| text.contains(k))
    {
        return format!("this looks like SSH keys: give them to --verify-allowed-signers; {HOW}");
    }
    format!("no -----BEGIN PGP PUBLIC KEY BLOCK----- armour and not binary OpenPGP data; {HOW}")
}
