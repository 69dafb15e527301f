//! SSH signatures (`gpg.format=ssh`): the OpenSSH `allowed_signers` file
//! format ([`parse_allowed_signers`]) and SSHSIG verification in the `git`
//! namespace ([`verify`]), as `ssh-keygen -Y verify` decides them, in-process
//! through the `ssh-key` crate (ed25519, ECDSA P-256/384/521, RSA with
//! SHA-256/512; `sk-` security-key variants are left to ssh-key, untested
//! here for want of an authenticator). Principals and namespaces are
//! OpenSSH pattern lists, matched case-sensitively as ssh-keygen does.
//!
//! Where we differ from ssh-keygen, on purpose:
//! - a malformed line makes the whole file an error naming the line
//!   (ssh-keygen logs it and skips it);
//! - certificates are not supported: `cert-authority` lines are skipped
//!   with a warning, and a signature made with a certificate is refused as
//!   `unsupported`, naming the certified key as `ssh-keygen -l` shows it;
//! - `valid-after`/`valid-before` without `Z` are read as UTC (ssh-keygen
//!   uses the local time zone), see `ssh/time.rs`;
//! - RSA signatures with SHA-1 (`ssh-rsa`) are refused (ssh-keygen never
//!   makes them for SSHSIG);
//! - the validity window is checked at the `now` the caller passes (the
//!   sync's time), where `git verify-commit` passes the committer's date,
//!   which whoever made the commit chose.

mod allowed;
mod pattern;
mod time;

#[cfg(test)]
mod tests;

use std::time::{SystemTime, UNIX_EPOCH};

use ssh_key::{Algorithm, HashAlg, SshSig};

use super::{Accepted, Refusal};

pub use allowed::{parse_allowed_signers, AllowedSigner, AllowedSigners, ParseError, SkippedLine};

/// The SSHSIG namespace git signs commits and tags in (`git commit -S`
/// runs `ssh-keygen -Y sign -n git`).
pub const GIT_NAMESPACE: &str = "git";

/// Verifies an armoured SSHSIG `signature` over `payload` against the
/// allowed signers; `email`, when given, must match a principal of the line.
///
/// Cost: one PEM decode, one hash of the payload and one signature check;
/// the lines are only compared (their keys were decoded by the parser).
pub fn verify(
    allowed: &[AllowedSigner],
    payload: &[u8],
    signature: &[u8],
    email: Option<&str>,
    now: SystemTime,
) -> Result<Accepted, Refusal> {
    let sig = decode(signature)?;
    if let Some(cert) = sig.public_key().certificate() {
        return Err(certificate_refusal(cert));
    }
    let key = sig.public_key().fingerprint(HashAlg::Sha256).to_string();
    if sig.namespace() != GIT_NAMESPACE {
        return Err(Refusal::BadSignature {
            key,
            detail: format!(
                "made for the namespace {:?}, git signatures use {GIT_NAMESPACE:?}",
                sig.namespace()
            ),
        });
    }
    if sig.signature().algorithm() == (Algorithm::Rsa { hash: None }) {
        return Err(Refusal::Unsupported(format!(
            "RSA signature with SHA-1 (ssh-rsa) by key {key}; sign with rsa-sha2-512 \
             (what ssh-keygen -Y sign makes) or an ed25519 key"
        )));
    }
    let listed: Vec<&AllowedSigner> = allowed
        .iter()
        .filter(|line| line.public_key.key_data() == sig.public_key())
        .collect();
    let lines: Vec<&AllowedSigner> = listed.iter().copied().filter(|l| l.allows_git()).collect();
    let Some(first) = lines.first() else {
        return Err(if listed.is_empty() {
            Refusal::UnknownKey { key }
        } else {
            Refusal::NotForGit {
                detail: namespaces(&listed),
                key,
            }
        });
    };
    first
        .public_key
        .verify(GIT_NAMESPACE, payload, &sig)
        .map_err(|e| Refusal::BadSignature {
            key: key.clone(),
            detail: format!("it does not match the signed content ({e})"),
        })?;
    accept(&lines, key, email, unix_seconds(now))
}

/// The signature is good: picks the line that accepts it, by e-mail first
/// (a line of another person never counts), then by time.
fn accept(
    lines: &[&AllowedSigner],
    key: String,
    email: Option<&str>,
    now: u64,
) -> Result<Accepted, Refusal> {
    let owned: Vec<&AllowedSigner> = match email {
        Some(email) => lines
            .iter()
            .copied()
            .filter(|line| pattern::match_list(email, &line.principals).is_some())
            .collect(),
        None => lines.to_vec(),
    };
    if owned.is_empty() {
        let email = email.unwrap_or_default().to_owned();
        return Err(Refusal::CommitterMismatch {
            key,
            email,
            role: "committer",
        });
    }
    match owned.iter().find(|line| line.valid_at(now)) {
        Some(line) => Ok(Accepted {
            key,
            signer: email.map_or_else(|| line.principals.join(","), str::to_owned),
        }),
        None => Err(Refusal::Expired {
            detail: windows(&owned, now),
            key,
        }),
    }
}

/// Where the key is listed and which namespaces its lines allow, for a key
/// listed only for namespaces other than git (as `ssh-keygen -Y verify`
/// says "key is not permitted for use in signature namespace git").
fn namespaces(lines: &[&AllowedSigner]) -> String {
    let each: Vec<String> = lines
        .iter()
        .map(|line| {
            format!(
                "{} line {} has namespaces=\"{}\"",
                line.file.as_deref().unwrap_or("allowed_signers"),
                line.line,
                line.namespaces.as_deref().unwrap_or_default().join(",")
            )
        })
        .collect();
    format!(
        "{}, which does not include {GIT_NAMESPACE:?} (add git to namespaces, or drop the option)",
        each.join("; ")
    )
}

/// A signature made with an SSH certificate (`user.signingkey` naming a
/// `-cert.pub`): named by the certified key's fingerprint, the one
/// `ssh-keygen -l` prints for the certificate and for the plain key.
fn certificate_refusal(cert: &ssh_key::Certificate) -> Refusal {
    let key = cert.public_key().fingerprint(HashAlg::Sha256);
    Refusal::Unsupported(format!(
        "signed with an SSH certificate ({}) of key {key}; signatures made with SSH \
         certificates cannot be verified: sign with the plain key (git config user.signingkey \
         naming the key, not its -cert.pub) and list that key in --verify-allowed-signers",
        cert.algorithm().to_certificate_type()
    ))
}

/// Why an `allowed_signers` file that is not UTF-8 text was refused, with
/// what it probably is.
pub fn not_text_hint(bytes: &[u8], e: std::str::Utf8Error) -> String {
    let what = if super::pgp::is_keybox(bytes) {
        "it is gpg's keybox (pubring.kbx); OpenPGP keys go to --verify-pgp-keyring, \
         exported: gpg --export --armor KEYID > keyring.asc"
    } else if bytes.first().is_some_and(|b| b & 0x80 != 0) {
        "it looks like binary OpenPGP data (gpg --export): give it to --verify-pgp-keyring"
    } else {
        "an allowed_signers file is text, one `principals [options] keytype base64-key` per line"
    };
    format!("not UTF-8 text ({e}): {what}")
}

/// Why no line's window contains `now`, for the Expired refusal.
fn windows(lines: &[&AllowedSigner], now: u64) -> String {
    let each: Vec<String> = lines
        .iter()
        .map(|line| {
            let after = line
                .valid_after
                .map(|t| format!(" valid-after {}", time::format(t)));
            let before = line
                .valid_before
                .map(|t| format!(" valid-before {}", time::format(t)));
            format!(
                "{} line {}:{}{}",
                line.file.as_deref().unwrap_or("allowed_signers"),
                line.line,
                after.unwrap_or_default(),
                before.unwrap_or_default()
            )
        })
        .collect();
    format!(
        "checked at {}; {} ({})",
        time::format(now),
        each.join("; "),
        time::UTC_NOTE
    )
}

/// The armoured signature as git stores it (`-----BEGIN SSH SIGNATURE-----`).
fn decode(signature: &[u8]) -> Result<SshSig, Refusal> {
    let text = std::str::from_utf8(signature)
        .map_err(|_| Refusal::Malformed("the SSH signature armour is not UTF-8 text".into()))?;
    SshSig::from_pem(text.trim())
        .map_err(|e| Refusal::Malformed(format!("cannot decode the SSH signature: {e}")))
}

fn unix_seconds(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}
