//! `--git-config`: git-sync's `key:value,key:value` grammar, and what each
//! key means here (git-sidecar runs no git binary, so there is no config
//! file to pass keys through to):
//!
//! * used: `http.proxy`, `http.sslCAInfo` (a PEM bundle trusted instead of
//!   the system roots, read at start-up), `http.sslVerify` (false = accept
//!   any certificate, warned about), `http.extraHeader` (repeatable; an
//!   empty value clears the list, as in git; unlike git, only sent to
//!   `--repo`'s origin, see [`crate::auth`]);
//! * accepted and ignored (logged): keys that only steer the git CLI, see
//!   [`IGNORED`];
//! * anything else is refused, naming the key and the lists above.
//!
//! Grammar (as git-sync): keys and values may be double-quoted; `\n`, `\t`,
//! `\"`, `\,` and `\\` are honoured in quoted keys and in all values; a key
//! containing `:` must be quoted; an unquoted value must escape commas; any
//! other escape is an error. Section and variable names are case-insensitive.

use std::path::Path;

use super::Checker;
use crate::git::http_settings::{CaBundle, HttpSettings};

/// The keys that are applied, as documented (lower case is what is compared).
pub const USED: &[&str] = &[
    "http.proxy",
    "http.sslCAInfo",
    "http.sslVerify",
    "http.extraHeader",
];

/// Keys that only matter to the git CLI: `*` stands for any subsection or name.
pub const IGNORED: &[&str] = &[
    "safe.directory",
    "protocol.allow",
    "protocol.*.allow",
    "core.askPass",
    "credential.helper",
    "gc.*",
    "maintenance.*",
];

/// Splits the `--git-config` value into `(key, value)` pairs.
pub fn parse(input: &str) -> Result<Vec<(String, String)>, String> {
    let mut chars = input.chars().peekable();
    let mut pairs = Vec::new();
    loop {
        let key = match chars.peek() {
            Some('"') => quoted(&mut chars)?,
            _ => take_until(&mut chars, ':'),
        };
        if key.is_empty() {
            return Err("empty key".into());
        }
        if chars.next() != Some(':') {
            return Err(format!("key {key:?} has no \":value\""));
        }
        let value = match chars.peek() {
            Some('"') => quoted(&mut chars)?,
            _ => unquoted_value(&mut chars)?,
        };
        pairs.push((key, value));
        match chars.next() {
            None => return Ok(pairs),
            Some(',') => {}
            Some(c) => return Err(format!("unexpected {c:?} after a quoted value")),
        }
    }
}

type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

fn take_until(chars: &mut Chars<'_>, stop: char) -> String {
    let mut out = String::new();
    while let Some(&c) = chars.peek() {
        if c == stop {
            break;
        }
        out.push(c);
        chars.next();
    }
    out
}

fn escaped(chars: &mut Chars<'_>) -> Result<char, String> {
    match chars.next() {
        Some('n') => Ok('\n'),
        Some('t') => Ok('\t'),
        Some(c @ ('"' | ',' | '\\')) => Ok(c),
        Some(c) => Err(format!("unsupported escape \\{c}")),
        None => Err("a trailing backslash".into()),
    }
}

/// A `"..."` string (the opening quote is next).
fn quoted(chars: &mut Chars<'_>) -> Result<String, String> {
    chars.next();
    let mut out = String::new();
    loop {
        match chars.next() {
            Some('"') => return Ok(out),
            Some('\\') => out.push(escaped(chars)?),
            Some(c) => out.push(c),
            None => return Err("unterminated quote".into()),
        }
    }
}

/// A value up to the next unescaped `,`.
fn unquoted_value(chars: &mut Chars<'_>) -> Result<String, String> {
    let mut out = String::new();
    while let Some(&c) = chars.peek() {
        match c {
            ',' => break,
            '\\' => {
                chars.next();
                out.push(escaped(chars)?);
            }
            c => {
                out.push(c);
                chars.next();
            }
        }
    }
    Ok(out)
}

/// `section.name` in lower case; a subsection keeps its case (as in git).
fn canonical(key: &str) -> String {
    let Some((section, rest)) = key.split_once('.') else {
        return key.to_ascii_lowercase();
    };
    match rest.rsplit_once('.') {
        Some((sub, name)) => format!(
            "{}.{sub}.{}",
            section.to_ascii_lowercase(),
            name.to_ascii_lowercase()
        ),
        None => format!(
            "{}.{}",
            section.to_ascii_lowercase(),
            rest.to_ascii_lowercase()
        ),
    }
}

fn is_ignored(key: &str) -> bool {
    let parts: Vec<&str> = key.split('.').collect();
    IGNORED.iter().any(|pattern| {
        let want: Vec<String> = pattern.split('.').map(str::to_ascii_lowercase).collect();
        match (want.last().map(String::as_str), want.len()) {
            (Some("*"), 2) => parts.len() >= 2 && parts[0] == want[0],
            _ => {
                want.len() == parts.len()
                    && want
                        .iter()
                        .zip(&parts)
                        .all(|(w, p)| w == "*" || w.eq_ignore_ascii_case(p))
            }
        }
    })
}

/// git's boolean values.
fn git_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" | "" => Some(false),
        _ => None,
    }
}

impl Checker<'_> {
    /// Reads `--git-config` into the http settings; every bad key is reported.
    pub(super) fn git_config(&mut self) -> HttpSettings {
        let mut http = HttpSettings::default();
        let Some(raw) = self.raw("git_config") else {
            return http;
        };
        let pairs = match parse(raw) {
            Ok(pairs) => pairs,
            Err(e) => {
                self.fail("git_config", format!("cannot parse: {e}"));
                return http;
            }
        };
        for (key, value) in pairs {
            self.git_config_key(&mut http, &key, value);
        }
        http
    }

    fn git_config_key(&mut self, http: &mut HttpSettings, key: &str, value: String) {
        let canonical = canonical(key);
        match canonical.as_str() {
            "http.proxy" => match HttpSettings::check_proxy(&value) {
                Ok(()) => http.proxy = Some(value).filter(|v| !v.is_empty()),
                Err(e) => self.fail("git_config", format!("http.proxy: {e}")),
            },
            "http.sslcainfo" => match CaBundle::read(Path::new(&value)) {
                Ok(bundle) => http.ca_bundle = Some(bundle),
                Err(e) => self.fail("git_config", format!("http.sslCAInfo: {e}")),
            },
            "http.sslverify" => match git_bool(&value) {
                Some(verify) => self.ssl_verify(http, verify),
                None => self.fail(
                    "git_config",
                    format!("http.sslVerify must be true or false, got {value:?}"),
                ),
            },
            "http.extraheader" if value.is_empty() => http.extra_headers.clear(),
            "http.extraheader" if !value.contains(':') => self.fail(
                "git_config",
                "http.extraHeader must be \"Name: value\" (the value is not shown)",
            ),
            "http.extraheader" => http.extra_headers.push(value),
            _ if is_ignored(&canonical) => {
                let label = self.cli.label("git_config");
                self.warnings.push(format!(
                    "{label}: {key:?} is ignored: it only matters to the git CLI, which git-sidecar does not run"
                ));
            }
            _ => self.fail(
                "git_config",
                format!(
                    "{key:?} is not supported (used: {}; accepted and ignored: {})",
                    USED.join(", "),
                    IGNORED.join(", ")
                ),
            ),
        }
    }

    fn ssl_verify(&mut self, http: &mut HttpSettings, verify: bool) {
        http.accept_invalid_certs = !verify;
        if !verify {
            let label = self.cli.label("git_config");
            self.warnings.push(format!(
                "{label}: http.sslVerify=false: any server certificate is accepted, \
                 so the connection can be intercepted; prefer http.sslCAInfo"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{config, problems, with};
    use super::*;

    fn pairs(input: &str) -> Vec<(String, String)> {
        parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"))
    }

    #[test]
    fn grammar_follows_git_sync() {
        let p = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(pairs("a.b:c"), vec![p("a.b", "c")]);
        assert_eq!(
            pairs("a.b:c,d.e:f\\,g"),
            vec![p("a.b", "c"), p("d.e", "f,g")]
        );
        assert_eq!(
            pairs("\"url.https://x/.insteadOf\":\"a,\\\"b\\\"\",x.y:"),
            vec![p("url.https://x/.insteadOf", "a,\"b\""), p("x.y", "")]
        );
        assert_eq!(
            pairs("a.b:tab\\there\\nnl"),
            vec![p("a.b", "tab\there\nnl")]
        );
        for bad in [
            "",
            "a.b",
            ":v",
            "a.b:\\q",
            "a.b:\"open",
            "a.b:\"x\"y",
            "a.b:x\\",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn keys_are_used_ignored_or_refused() {
        let c = config(
            &with(&[
                "--git-config=HTTP.Proxy:http://127.0.0.1:3128,safe.directory:*,\
                 protocol.file.allow:always,gc.auto:0,http.extraHeader:X-A: 1",
            ]),
            &[],
        );
        assert_eq!(
            c.access.http.proxy.as_deref(),
            Some("http://127.0.0.1:3128")
        );
        assert_eq!(c.access.http.extra_headers, vec!["X-A: 1".to_string()]);
        let w = c.warnings.join("\n");
        for key in ["safe.directory", "protocol.file.allow", "gc.auto"] {
            assert!(w.contains(&format!("{key:?} is ignored")), "{key}: {w}");
        }
        let p = problems(
            &with(&["--git-config=url.x.insteadOf:y,core.editor:vi,http.sslVerify:maybe"]),
            &[],
        );
        let all = p.join("\n");
        assert!(
            all.contains("\"url.x.insteadOf\" is not supported (used: http.proxy"),
            "{all}"
        );
        assert!(all.contains("\"core.editor\" is not supported"), "{all}");
        assert!(
            all.contains("http.sslVerify must be true or false"),
            "{all}"
        );
        assert!(
            all.starts_with("--git-config (GITSYNC_GIT_CONFIG): "),
            "{all}"
        );
        assert_eq!(p.len(), 3, "{all}");
    }

    #[test]
    fn ssl_settings_and_a_bad_ca_file() {
        let c = config(&with(&["--git-config=http.sslVerify:false"]), &[]);
        assert!(c.access.http.accept_invalid_certs);
        assert!(c
            .warnings
            .join("\n")
            .contains("any server certificate is accepted"));
        let p = problems(&with(&["--git-config=http.sslCAInfo:/no/such/ca.pem"]), &[]);
        assert!(
            p[0].contains("http.sslCAInfo: cannot read the CA bundle \"/no/such/ca.pem\""),
            "{p:?}"
        );
        // The extra header's value is a secret: never echoed in errors.
        let p = problems(
            &with(&["--git-config=http.extraHeader:s3cret-no-colon"]),
            &[],
        );
        assert!(!p.join("\n").contains("s3cret"), "{p:?}");
    }
}
