//! The OpenSSH `allowed_signers` file (ssh-keygen(1), ALLOWED SIGNERS):
//! `principals [options] keytype base64-key [comment]` per line, `#`
//! comments and blank lines. Follows OpenSSH's sshsig.c and auth-options.c;
//! where ssh-keygen logs a bad line and skips it, we refuse the file, naming
//! the line, so a typo cannot silently drop (or keep) a signer. A line that
//! parses but asks for what we do not support (`cert-authority`) is skipped
//! and reported: leaving it out can only refuse its signers, and the other
//! lines keep working, as in ssh-keygen.

use ssh_key::{Algorithm, HashAlg, PublicKey};

use super::{pattern, time};

/// One usable line of an `allowed_signers` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedSigner {
    /// The file the line came from, for messages: the parser leaves it
    /// `None`; a caller reading several files may set it.
    pub file: Option<String>,
    /// The line's number in its file (1-based), for messages.
    pub line: usize,
    /// The principals pattern list (e-mail patterns), split at commas;
    /// negations keep their `!`.
    pub principals: Vec<String>,
    /// `namespaces="…"`, split at commas; `None` when the line has none
    /// (then the key counts for every namespace, git included).
    pub namespaces: Option<Vec<String>>,
    /// `valid-after`, seconds since the Unix epoch.
    pub valid_after: Option<u64>,
    /// `valid-before`, seconds since the Unix epoch.
    pub valid_before: Option<u64>,
    /// The public key in OpenSSH format (`ssh-ed25519 AAAA…`, no comment).
    pub key: String,
    /// The key, decoded once here so verification only compares.
    pub public_key: PublicKey,
    /// The key's `SHA256:…` fingerprint.
    pub fingerprint: String,
}

impl AllowedSigner {
    /// Whether the line's `namespaces` let the key sign git objects.
    pub fn allows_git(&self) -> bool {
        self.namespaces
            .as_deref()
            .is_none_or(|list| pattern::match_list(super::GIT_NAMESPACE, list).is_some())
    }

    /// Whether `now` (Unix seconds) is inside the line's validity window
    /// (both ends included, as ssh-keygen checks them).
    pub fn valid_at(&self, now: u64) -> bool {
        self.valid_after.is_none_or(|after| now >= after)
            && self.valid_before.is_none_or(|before| now <= before)
    }
}

/// A line of an `allowed_signers` file that cannot be used. The caller adds
/// the file's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

/// A line that parses but cannot be used (see the module's comment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedLine {
    pub line: usize,
    pub why: String,
}

/// The usable lines of one file, and those skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedSigners {
    pub signers: Vec<AllowedSigner>,
    pub skipped: Vec<SkippedLine>,
}

/// What one line is.
enum Line {
    Blank,
    Signer(Box<AllowedSigner>),
    Skipped(String),
}

/// Parses the text of one `allowed_signers` file.
pub fn parse_allowed_signers(text: &str) -> Result<AllowedSigners, ParseError> {
    let mut parsed = AllowedSigners::default();
    for (index, line) in text.split('\n').enumerate() {
        let line_number = index + 1;
        let failed = |message| ParseError {
            line: line_number,
            message,
        };
        if let Some(hint) = other_format(line) {
            return Err(failed(hint.to_string()));
        }
        match parse_line(line, line_number).map_err(failed)? {
            Line::Signer(signer) => parsed.signers.push(*signer),
            Line::Skipped(why) => parsed.skipped.push(SkippedLine {
                line: line_number,
                why,
            }),
            Line::Blank => {}
        }
    }
    Ok(parsed)
}

/// A line that shows the file is something else than allowed_signers.
fn other_format(line: &str) -> Option<&'static str> {
    line.trim_start().starts_with("-----BEGIN PGP").then_some(
        "this is an OpenPGP key (ASCII armour), not an allowed_signers file: \
         give it to --verify-pgp-keyring",
    )
}

/// What the messages tell an operator a line looks like.
const LINE_FORMAT: &str = "expected `principals [options] keytype base64-key [comment]`, \
     e.g. `alice@example.com namespaces=\"git\" ssh-ed25519 AAAA…`";

/// Why a `cert-authority` line is skipped, and what works instead.
pub(super) const CERT_AUTHORITY: &str = "cert-authority is not supported: git-sidecar cannot \
     verify signatures made with SSH certificates; for these signers to be accepted they must \
     sign with their plain key (git config user.signingkey naming the key itself, not its \
     -cert.pub) and their own public key must be listed on a line of its own";

/// A line that is a comment or blank gives [`Line::Blank`].
fn parse_line(line: &str, line_number: usize) -> Result<Line, String> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let rest = skip_blanks(line);
    if rest.is_empty() || rest.starts_with('#') {
        return Ok(Line::Blank);
    }
    let (principals, rest) = principals(rest)?;
    if is_known_key_type(principals) {
        return Err(format!(
            "the line starts with the key type {principals}: this looks like a public key \
             (.pub) file; an allowed_signers line starts with the signer's principals \
             (e-mail), e.g. `alice@example.com {principals} AAAA…`"
        ));
    }
    let rest = skip_blanks(rest);
    if rest.is_empty() {
        return Err(format!("no key after the principals; {LINE_FORMAT}"));
    }
    let mut options = Options::default();
    let rest = if is_key_type(first_token(rest)) {
        rest
    } else {
        skip_blanks(options.parse(rest)?)
    };
    let (key, public_key) = key(rest)?;
    if options.cert_authority {
        return Ok(Line::Skipped(CERT_AUTHORITY.into()));
    }
    let fingerprint = public_key.fingerprint(HashAlg::Sha256).to_string();
    Ok(Line::Signer(Box::new(AllowedSigner {
        file: None,
        line: line_number,
        principals: principals.split(',').map(str::to_owned).collect(),
        namespaces: options.namespaces,
        valid_after: options.valid_after,
        valid_before: options.valid_before,
        key,
        public_key,
        fingerprint,
    })))
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn skip_blanks(s: &str) -> &str {
    s.trim_start_matches(is_blank)
}

fn first_token(s: &str) -> &str {
    s.split(is_blank).next().unwrap_or(s)
}

/// The principals field, quoted (`"a@x, b@y"`, which allows blanks) or not,
/// and the rest of the line.
fn principals(s: &str) -> Result<(&str, &str), String> {
    let (principals, rest) = if let Some(quoted) = s.strip_prefix('"') {
        let end = quoted
            .find('"')
            .ok_or("the principals' opening quote has no closing quote")?;
        let rest = &quoted[end + 1..];
        if rest.starts_with(|c: char| !is_blank(c)) {
            return Err(format!(
                "a blank must follow the quoted principals \"{}\"",
                &quoted[..end]
            ));
        }
        (&quoted[..end], rest)
    } else {
        let token = first_token(s);
        if token.contains('"') {
            return Err(format!(
                "a quote inside the principals {token:?}: quote the whole list, \
                 e.g. \"a@example.com,b@example.com\""
            ));
        }
        (token, &s[token.len()..])
    };
    if principals.is_empty() {
        return Err(format!("the principals are empty; {LINE_FORMAT}"));
    }
    Ok((principals, rest))
}

/// Whether `token` names a key type (rather than starting the options).
fn is_key_type(token: &str) -> bool {
    Algorithm::new(token).is_ok() || is_certificate_type(token)
}

/// Whether `token` is the name of a key type OpenSSH makes (not just one
/// of the form `name@domain`, which is how anything may be named).
fn is_known_key_type(token: &str) -> bool {
    matches!(Algorithm::new(token), Ok(a) if !matches!(a, Algorithm::Other(_)))
        || is_certificate_type(token)
}

fn is_certificate_type(token: &str) -> bool {
    token.ends_with("-cert-v01@openssh.com")
}

/// `keytype base64-key [comment]`: the key as `keytype base64-key`, decoded.
fn key(s: &str) -> Result<(String, PublicKey), String> {
    let key_type = first_token(s);
    if is_certificate_type(key_type) {
        return Err(format!(
            "{key_type} is a certificate: certificates are not supported as allowed keys; \
             list the signer's plain public key instead"
        ));
    }
    if !is_key_type(key_type) {
        return Err(format!("unknown key type {key_type:?}; {LINE_FORMAT}"));
    }
    let base64 = first_token(skip_blanks(&s[key_type.len()..]));
    if base64.is_empty() {
        return Err(format!("no base64 key data after the key type {key_type}"));
    }
    let key = format!("{key_type} {base64}");
    let public_key = PublicKey::from_openssh(&key)
        .map_err(|e| format!("invalid {key_type} key {base64:?}: {e}"))?;
    Ok((key, public_key))
}

/// The options a line may carry (keywords case-insensitive, as in OpenSSH).
#[derive(Default)]
struct Options {
    /// The line is a CA key's: parsed in full, then skipped.
    cert_authority: bool,
    namespaces: Option<Vec<String>>,
    valid_after: Option<u64>,
    valid_before: Option<u64>,
}

impl Options {
    /// Parses `name[="value"],…` up to the first blank outside quotes and
    /// returns what follows.
    fn parse<'a>(&mut self, mut s: &'a str) -> Result<&'a str, String> {
        loop {
            s = self.option(s)?;
            match s.chars().next() {
                None => return Ok(s),
                Some(c) if is_blank(c) => return Ok(s),
                Some(',') => s = &s[1..],
                Some(c) => {
                    return Err(format!(
                        "unexpected {c:?} after an option: options are separated by commas, \
                         without blanks, and values are quoted (namespaces=\"git\")"
                    ))
                }
            }
            if s.is_empty() || s.starts_with(is_blank) {
                return Err("the options end with a comma".into());
            }
        }
    }

    /// One option at the start of `s`; returns what follows it.
    fn option<'a>(&mut self, s: &'a str) -> Result<&'a str, String> {
        if let Some(rest) = strip_prefix_ignore_case(s, "cert-authority") {
            if rest.is_empty() || rest.starts_with(|c: char| c == ',' || is_blank(c)) {
                self.cert_authority = true;
                return Ok(rest);
            }
        }
        if let Some(rest) = strip_prefix_ignore_case(s, "namespaces=") {
            let (value, rest) = dequote(rest, "namespaces")?;
            if self.namespaces.is_some() {
                return Err("namespaces is given twice".into());
            }
            self.namespaces = Some(value.split(',').map(str::to_owned).collect());
            return Ok(rest);
        }
        for (name, is_after) in [("valid-after", true), ("valid-before", false)] {
            let Some(rest) = strip_prefix_ignore_case(s, name).and_then(|r| r.strip_prefix('='))
            else {
                continue;
            };
            let (value, rest) = dequote(rest, name)?;
            let seconds = time::parse(&value).map_err(|e| format!("{name}: {e}"))?;
            let slot = if is_after {
                &mut self.valid_after
            } else {
                &mut self.valid_before
            };
            if slot.replace(seconds).is_some() {
                return Err(format!("{name} is given twice"));
            }
            if let (Some(after), Some(before)) = (self.valid_after, self.valid_before) {
                if before <= after {
                    return Err(format!(
                        "valid-before ({}) is not after valid-after ({})",
                        time::format(before),
                        time::format(after)
                    ));
                }
            }
            return Ok(rest);
        }
        let name = s
            .split(|c: char| c == ',' || c == '=' || is_blank(c))
            .next()
            .unwrap_or(s);
        Err(format!(
            "{name:?} is neither a key type nor an option \
             (namespaces=\"…\", valid-after=\"…\", valid-before=\"…\"); {LINE_FORMAT}"
        ))
    }
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.as_bytes()
        .get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    // `prefix` is ASCII, so a match ends on a character boundary.
    starts_with_ignore_case(s, prefix).then(|| &s[prefix.len()..])
}

/// A double-quoted option value (`\"` stands for a quote inside it), and
/// what follows the closing quote.
fn dequote<'a>(s: &'a str, name: &str) -> Result<(String, &'a str), String> {
    let Some(body) = s.strip_prefix('"') else {
        return Err(format!(
            "the value of {name} must be in double quotes, e.g. {name}=\"…\""
        ));
    };
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &body[at + 1..])),
            '\\' if body[at + 1..].starts_with('"') => {
                chars.next();
                value.push('"');
            }
            c => value.push(c),
        }
    }
    Err(format!("the value of {name} has no closing quote"))
}
