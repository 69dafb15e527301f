//! SSH signatures (`gpg.format=ssh`): the OpenSSH `allowed_signers` file
//! format and SSHSIG verification in the `git` namespace.
//! (Skeleton: the parser and the verifier are being written.)

use std::time::SystemTime;

use super::{Accepted, Refusal};

/// One line of an `allowed_signers` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedSigner {
    /// The principals (e-mail patterns) the line lists.
    pub principals: Vec<String>,
    /// The public key in OpenSSH format (`ssh-ed25519 AAAA…`).
    pub key: String,
}

/// A line of an `allowed_signers` file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

/// Parses the text of one `allowed_signers` file.
pub fn parse_allowed_signers(text: &str) -> Result<Vec<AllowedSigner>, ParseError> {
    let _ = text;
    Err(ParseError {
        line: 0,
        message: "the allowed_signers parser is not built yet".into(),
    })
}

/// Verifies an armoured SSHSIG `signature` over `payload` against the
/// allowed signers; `email`, when given, must match a principal of the line.
pub fn verify(
    allowed: &[AllowedSigner],
    payload: &[u8],
    signature: &[u8],
    email: Option<&str>,
    now: SystemTime,
) -> Result<Accepted, Refusal> {
    let _ = (allowed, payload, signature, email, now);
    Err(Refusal::Unsupported(
        "SSH signature verification is not built yet".into(),
    ))
}
