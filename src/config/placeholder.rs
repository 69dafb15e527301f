//! Secrets that look like placeholders: the shipped `CHANGE-ME`, `changeme`,
//! `example`, very short or near-constant values. Such a value is accepted
//! (it may be deliberate in a test cluster) but warned about at start-up,
//! naming the flag and the file, never the value. Secrets are read once, at
//! start-up, so this is the only time they are judged.

/// Shorter than this is guessable (an HMAC key should be 32 random bytes).
const MIN_LEN: usize = 16;
/// Fewer distinct bytes than this: `xxxxxxxxxxxxxxxx`, `0000…`, `abababab…`.
const MIN_DISTINCT: usize = 5;
/// Lower-case letters and digits of common placeholders; a secret whose
/// letters and digits contain one of them is taken for a placeholder.
const MARKERS: &[&str] = &[
    "changeme",
    "changeit",
    "changethis",
    "replaceme",
    "replacethis",
    "placeholder",
    "example",
    "yoursecret",
    "yourtoken",
    "insertsecret",
    "secrethere",
    "tokenhere",
    "fixme",
    "todo",
];

/// Why `secret` looks like a placeholder, in words that never quote it;
/// `None` when it looks like a real secret.
pub(super) fn placeholder_reason(secret: &[u8]) -> Option<&'static str> {
    let letters: String = secret
        .iter()
        .filter(|b| b.is_ascii_alphanumeric())
        .map(|b| char::from(b.to_ascii_lowercase()))
        .collect();
    if letters.is_empty() {
        return Some("it has no letters or digits");
    }
    if MARKERS.iter().any(|m| letters.contains(m)) {
        return Some("it contains a word commonly used as a placeholder");
    }
    if secret.len() < MIN_LEN {
        return Some("it is shorter than 16 bytes");
    }
    let mut seen = [false; 256];
    for &b in secret {
        seen[usize::from(b)] = true;
    }
    if seen.iter().filter(|s| **s).count() < MIN_DISTINCT {
        return Some("it repeats fewer than 5 distinct characters");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_and_common_placeholders_are_recognised() {
        for value in [
            "CHANGE-ME",
            "changeme",
            "Change_Me_Before_Deploying_1234",
            "example-secret-value-123",
            "<your-secret-here>",
            "REPLACE ME with something long",
            "short",
            "----------------",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "abababababababababab",
        ] {
            assert!(
                placeholder_reason(value.as_bytes()).is_some(),
                "{value:?} passed as a real secret"
            );
        }
    }

    #[test]
    fn random_values_pass() {
        for value in [
            "3f9c1a7be04d52e8a6c0f1d29b7e4a5c",
            "kQ7v+Zr2Jx9/LmA0pWs4Tn8Ue1Hy6Bd3",
            "it-webhook-secret-a-long-one",
        ] {
            assert_eq!(placeholder_reason(value.as_bytes()), None, "{value:?}");
        }
    }

    #[test]
    fn the_reason_never_quotes_the_value() {
        for value in [
            "CHANGE-ME",
            "changeme",
            "example",
            "tiny",
            "zzzzzzzzzzzzzzzzzzzz",
        ] {
            let reason = placeholder_reason(value.as_bytes()).expect("a placeholder");
            assert!(!reason.contains(value), "{reason}");
        }
    }
}
