//! `--git-config`: git-sync's `key:value,key:value` grammar. As git-sync,
//! every syntactically valid git key is accepted (git's rules:
//! `section[.subsection].name`, section and name alphanumeric or `-`, the
//! name starting with a letter, no newline in the subsection). Every pair
//! reaches the git programs we start, in order (see
//! [`crate::git::cli_config`]): the `git upload-pack` run for file://
//! repositories and the git CLI exec hooks run.
//!
//! In-process (git-sidecar runs no git for fetching), only [`USED`] change
//! what we do: `http.proxy`, `http.sslCAInfo` (a PEM bundle trusted instead
//! of the system roots, read at start-up), `http.sslVerify` (false = accept
//! any certificate, warned about), `http.extraHeader` (repeatable; an empty
//! value clears the list, as in git; unlike git, only sent to `--repo`'s
//! origin, see [`crate::auth`]), `http.cookieFile` (see
//! [`crate::git::cookies`]). The others are named once at start-up.
//!
//! Grammar (as git-sync): keys and values may be double-quoted; `\n`, `\t`,
//! `\"`, `\,` and `\\` are honoured in quoted keys and in all values; a key
//! containing `:` must be quoted; an unquoted value must escape commas; any
//! other escape is an error. Section and variable names are case-insensitive.

use crate::cli::Flag;
use std::path::{Path, PathBuf};

use super::Checker;
use crate::auth::http_settings::{CaBundle, HttpSettings};
pub use crate::git::cli_config::GitConfigPairs;

/// The keys that change what git-sidecar itself does.
pub const USED: &[&str] = &[
    "http.proxy",
    "http.sslCAInfo",
    "http.sslVerify",
    "http.extraHeader",
    "http.cookieFile",
];

/// git-sync's `--cookie-file` (a switch): this file becomes `http.cookieFile`.
pub const COOKIE_FILE: &str = "/etc/git-secret/cookie_file";

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
            // A trailing comma ends the list, as in git-sync (templates
            // that emit `k:v,` per item leave one).
            None => return Ok(pairs),
            Some(',') if chars.peek().is_none() => return Ok(pairs),
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

/// Keys that change the bytes git writes at checkout, which git-sidecar
/// cannot honour: a start-up error rather than a tree that differs from
/// git-sync's (an LFS pointer published where git-lfs would write the file).
/// `.gitattributes` (eol, `ident`, `working-tree-encoding`) is honoured.
fn unsupported_conversion(key: &str, value: &str) -> Option<String> {
    let name = key.rsplit('.').next().unwrap_or_default();
    if key.starts_with("filter.") && matches!(name, "smudge" | "process") {
        return Some(format!(
            "{key}: checkout filters (smudge and process drivers, Git LFS) are not supported: \
             files are written as committed (an LFS pointer stays a pointer); remove the key, \
             or run the filter from an exec hook"
        ));
    }
    let crlf = match key {
        "core.autocrlf" => git_bool(value) == Some(true),
        "core.eol" => value.eq_ignore_ascii_case("crlf"),
        _ => false,
    };
    crlf.then(|| {
        format!(
            "{key}:{value}: converting line endings from git config is not supported; \
             .gitattributes is honoured (`* text=auto eol=crlf` in the repository)"
        )
    })
}

/// git's key syntax (`git_config_parse_key`): what `git config` accepts.
fn check_key(key: &str) -> Result<(), &'static str> {
    let (Some((section, _)), Some((middle, name))) = (key.split_once('.'), key.rsplit_once('.'))
    else {
        return Err("a key is section.name or section.subsection.name");
    };
    let keychar = |c: char| c.is_ascii_alphanumeric() || c == '-';
    if section.is_empty() || !section.chars().all(keychar) {
        return Err("the section must be letters, digits or '-'");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) || !name.chars().all(keychar) {
        return Err("the name must start with a letter and be letters, digits or '-'");
    }
    if middle.contains(['\n', '\0']) {
        return Err("the subsection may not contain a newline");
    }
    Ok(())
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
    /// Reads `--cookie-file` and `--git-config` into the http settings and
    /// the pairs for the git programs we start; every bad key is reported.
    pub(super) fn git_config(&mut self) -> (HttpSettings, GitConfigPairs) {
        let mut http = HttpSettings::default();
        let mut pairs = Vec::new();
        // git-sync sets it before the user's --git-config, which may override it.
        if self.bool(Flag::CookieFile) == Some(true) {
            pairs.push(("http.cookieFile".to_string(), COOKIE_FILE.to_string()));
        }
        if let Some(raw) = self.raw(Flag::GitConfig) {
            match parse(raw) {
                Ok(parsed) => pairs.extend(parsed),
                Err(e) => self.fail(Flag::GitConfig, format!("cannot parse: {e}")),
            }
        }
        let mut inert = Vec::new();
        for (key, value) in &pairs {
            if let Err(e) = check_key(key) {
                self.fail(
                    Flag::GitConfig,
                    format!("{key:?} is not a valid git key: {e}"),
                );
            } else if !self.git_config_key(&mut http, key, value) {
                inert.push(key.as_str());
            }
        }
        if !inert.is_empty() {
            let label = self.cli.label(Flag::GitConfig);
            self.warnings.push(format!(
                "{label}: no effect inside git-sidecar (given only to the git upload-pack run for \
                 file:// repositories and to the git that exec hooks run): {}",
                inert.join(", ")
            ));
        }
        self.git_ssl_environment(&mut http);
        (http, GitConfigPairs(pairs))
    }

    /// git's `GIT_SSL_CAINFO` and `GIT_SSL_NO_VERIFY`, which beat the
    /// config in git (`http.c` reads them after it): the way many pods
    /// trust a private CA.
    fn git_ssl_environment(&mut self, http: &mut HttpSettings) {
        if let Some(path) = self.raw(Flag::EnvGitSslCaInfo) {
            match CaBundle::read(Path::new(path)) {
                Ok(bundle) => http.ca_bundle = Some(bundle),
                Err(e) => self.fail(Flag::EnvGitSslCaInfo, e.to_string()),
            }
        }
        if self.raw(Flag::EnvGitSslNoVerify).is_some() {
            self.ssl_verify(
                http,
                false,
                Flag::EnvGitSslNoVerify,
                "GIT_SSL_NO_VERIFY is set",
            );
        }
    }

    /// Applies one pair; `false` when git-sidecar itself does not use the key.
    fn git_config_key(&mut self, http: &mut HttpSettings, key: &str, value: &str) -> bool {
        let value = value.to_string();
        match canonical(key).as_str() {
            "http.proxy" => match HttpSettings::check_proxy(&value) {
                Ok(()) => http.proxy = Some(value),
                Err(e) => self.fail(Flag::GitConfig, format!("http.proxy: {e}")),
            },
            "http.sslcainfo" => match CaBundle::read(Path::new(&value)) {
                Ok(bundle) => http.ca_bundle = Some(bundle),
                Err(e) => self.fail(Flag::GitConfig, format!("http.sslCAInfo: {e}")),
            },
            "http.sslverify" => match git_bool(&value) {
                Some(verify) => {
                    self.ssl_verify(http, verify, Flag::GitConfig, "http.sslVerify=false")
                }
                None => self.fail(
                    Flag::GitConfig,
                    format!("http.sslVerify must be true or false, got {value:?}"),
                ),
            },
            "http.extraheader" if value.is_empty() => http.extra_headers.clear(),
            "http.extraheader" if !value.contains(':') => self.fail(
                Flag::GitConfig,
                "http.extraHeader must be \"Name: value\" (the value is not shown)",
            ),
            "http.extraheader" => http.extra_headers.push(value),
            "http.cookiefile" => http.cookie_file = self.cookie_file(&value),
            key => {
                if let Some(why) = unsupported_conversion(key, &value) {
                    self.fail(Flag::GitConfig, why);
                }
                return false;
            }
        }
        true
    }

    /// The cookie file must exist at start-up (git-sync checks `--cookie-file`
    /// so); it is read at each sync. An empty value turns cookies off.
    fn cookie_file(&mut self, value: &str) -> Option<PathBuf> {
        if value.is_empty() {
            return None;
        }
        let path = PathBuf::from(value);
        if let Err(e) = std::fs::metadata(&path) {
            let flag = if value == COOKIE_FILE && self.raw(Flag::CookieFile).is_some() {
                Flag::CookieFile
            } else {
                Flag::GitConfig
            };
            self.fail(
                flag,
                format!(
                    "cannot access the cookie file {value:?} (http.cookieFile): {e}; mount it \
                     (git-sync's --cookie-file reads {COOKIE_FILE})"
                ),
            );
        }
        Some(path)
    }

    fn ssl_verify(&mut self, http: &mut HttpSettings, verify: bool, flag: Flag, what: &str) {
        http.accept_invalid_certs = !verify;
        if !verify {
            let label = self.cli.label(flag);
            self.warnings.push(format!(
                "{label}: {what}: any server certificate is accepted, \
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
        // A trailing comma ends the list, as in git-sync.
        assert_eq!(pairs("a.b:c,"), vec![p("a.b", "c")]);
        assert_eq!(pairs("a.b:\"x,y\","), vec![p("a.b", "x,y")]);
        for bad in [
            "",
            "a.b",
            ":v",
            "a.b:\\q",
            "a.b:\"open",
            "a.b:\"x\"y",
            "a.b:x\\",
            "a.b:c,,",
            ",",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn every_valid_key_is_accepted_and_kept_in_order() {
        let c = config(
            &with(&[
                "--git-config=HTTP.Proxy:http://127.0.0.1:3128,safe.directory:*,\
                 http.postBuffer:524288000,\"url.https://x/.insteadOf\":y,\
                 sect.key:v,http.extraHeader:X-A: 1",
            ]),
            &[],
        );
        assert_eq!(
            c.access.http.proxy.as_deref(),
            Some("http://127.0.0.1:3128")
        );
        assert_eq!(c.access.http.extra_headers, vec!["X-A: 1".to_string()]);
        let keys: Vec<&str> = c
            .access
            .git_config
            .0
            .iter()
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(
            keys,
            [
                "HTTP.Proxy",
                "safe.directory",
                "http.postBuffer",
                "url.https://x/.insteadOf",
                "sect.key",
                "http.extraHeader"
            ]
        );
        // One start-up line names the keys without an effect in-process.
        let inert: Vec<&String> = c
            .warnings
            .iter()
            .filter(|w| w.contains("no effect inside git-sidecar"))
            .collect();
        assert_eq!(inert.len(), 1, "{:?}", c.warnings);
        assert!(
            inert[0]
                .ends_with("safe.directory, http.postBuffer, url.https://x/.insteadOf, sect.key"),
            "{inert:?}"
        );
        // Debug never shows values (an extra header may be a token).
        assert!(!format!("{:?}", c.access).contains("X-A: 1"));
    }

    #[test]
    fn invalid_keys_are_refused_with_git_rules() {
        let p = problems(
            &with(&[
                "--git-config=nodot:y,a.1b:x,s_x.k:v,\"a.sub\\nline.k\":v,http.sslVerify:maybe",
            ]),
            &[],
        );
        let all = p.join("\n");
        for bad in ["\"nodot\"", "\"a.1b\"", "\"s_x.k\"", "\"a.sub\\nline.k\""] {
            assert!(
                all.contains(&format!("{bad} is not a valid git key")),
                "{bad}: {all}"
            );
        }
        assert!(
            all.contains("http.sslVerify must be true or false"),
            "{all}"
        );
        assert!(
            all.starts_with("--git-config (GITSYNC_GIT_CONFIG): "),
            "{all}"
        );
        assert_eq!(p.len(), 5, "{all}");
    }

    #[test]
    fn cookie_file_switch_and_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let jar = dir.path().join("jar");
        std::fs::write(&jar, "").expect("write");
        let c = config(
            &with(&[&format!("--git-config=http.cookieFile:{}", jar.display())]),
            &[],
        );
        assert_eq!(c.access.http.cookie_file.as_deref(), Some(jar.as_path()));
        // --cookie-file is git-sync's fixed path; missing, it stops start-up.
        if !Path::new(COOKIE_FILE).exists() {
            let p = problems(&with(&["--cookie-file"]), &[]);
            assert!(
                p.join("\n").starts_with(
                    "--cookie-file (GITSYNC_COOKIE_FILE): cannot access the cookie file \"/etc/git-secret/cookie_file\""
                ),
                "{p:?}"
            );
        }
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

    /// What would make the tree differ from git-sync's is refused, saying so.
    #[test]
    fn checkout_conversions_from_git_config_are_refused() {
        for pair in [
            "filter.lfs.smudge:git-lfs smudge -- %f",
            "filter.x.process:run",
            "core.autocrlf:true",
            "core.eol:crlf",
        ] {
            let p = problems(&with(&[&format!("--git-config={pair}")]), &[]);
            assert!(p.join("\n").contains("not supported"), "{pair}: {p:?}");
        }
        for pair in [
            "filter.lfs.clean:x",
            "core.autocrlf:input",
            "core.eol:lf",
            "core.autocrlf:false",
        ] {
            config(&with(&[&format!("--git-config={pair}")]), &[]);
        }
    }

    /// As git reads them, after (and over) the config.
    #[test]
    fn git_ssl_environment_variables_beat_the_config() {
        let c = config(
            &with(&["--git-config=http.sslVerify:true"]),
            &[("GIT_SSL_NO_VERIFY", "1")],
        );
        assert!(c.access.http.accept_invalid_certs);
        assert!(
            c.warnings.join("\n").contains(
                "GIT_SSL_NO_VERIFY (environment only): GIT_SSL_NO_VERIFY is set: any server \
                 certificate is accepted"
            ),
            "{:?}",
            c.warnings
        );
        let p = problems(&with(&[]), &[("GIT_SSL_CAINFO", "/no/such/ca.pem")]);
        assert!(
            p[0].starts_with(
                "GIT_SSL_CAINFO (environment only): cannot read the CA bundle \"/no/such/ca.pem\""
            ),
            "{p:?}"
        );
        let c = config(&with(&[]), &[]);
        assert!(!c.access.http.accept_invalid_certs && c.access.http.ca_bundle.is_none());
    }
}
