//! Secrets and tokens read from files or the environment
//! ([`SecretBytes`]): at most 64 KiB, trailing whitespace removed, never in
//! `Debug` output, errors or warnings; placeholder-looking values are warned
//! about by source, never by value.

use super::{placeholder, Checker};
use crate::cli::Flag;
pub use crate::secret::{read_secret_file, SecretBytes};
use crate::secret::{SecretFile, SecretSet};

impl<'a> Checker<'a> {
    /// The secrets of a repeatable file argument `id` and of the
    /// environment-only `env`: each file is read now (reporting each bad
    /// one) and again whenever it changes (a rotated Secret).
    pub(super) fn secret_set(&mut self, id: Flag, paths: &[String], env: Flag) -> SecretSet {
        let mut set = SecretSet::default();
        let label = self.cli.label(id);
        for path in paths {
            match read_secret_file(path) {
                Ok(secret) => {
                    self.warn_if_placeholder(id, Some(path), &secret);
                    let path = std::path::absolute(path).unwrap_or_else(|_| path.into());
                    set.push_file(SecretFile::new(path, label.clone(), secret));
                }
                Err(e) => self.fail(id, e),
            }
        }
        if let Some(secret) = self.env_secret(env) {
            set.push_fixed(secret);
        }
        set
    }

    /// An environment-only secret, trailing whitespace removed; `None` when
    /// unset or blank (reported). Its value never goes into a message.
    pub(super) fn env_secret(&mut self, id: Flag) -> Option<SecretBytes> {
        let raw = self.raw(id)?;
        let trimmed = raw.trim_end();
        if trimmed.is_empty() {
            self.fail(id, "must not be blank");
            return None;
        }
        let secret = SecretBytes::new(trimmed.as_bytes());
        self.warn_if_placeholder(id, None, &secret);
        Some(secret)
    }

    /// Warns when a secret from `id` (the file `path`, or the environment)
    /// looks like a placeholder (the shipped `CHANGE-ME`): anyone can forge
    /// what it authenticates. Names the source, never the value.
    pub(super) fn warn_if_placeholder(
        &mut self,
        id: Flag,
        path: Option<&str>,
        secret: &SecretBytes,
    ) {
        let Some(reason) = placeholder::placeholder_reason(secret.expose()) else {
            return;
        };
        let source = match path {
            Some(path) => format!("{}: {path:?}", self.cli.label(id)),
            None => self.cli.label(id),
        };
        self.warnings.push(format!(
            "{source} looks like a placeholder, not a secret ({reason}): anyone who guesses \
             it can forge what it authenticates; replace it with a random value, e.g. the \
             output of `openssl rand -hex 32`"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::http::tests::http_of;
    use super::super::tests::*;
    use super::super::*;
    use super::*;

    #[test]
    fn webhook_secret_files_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, content: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, content).unwrap();
            path.display().to_string()
        };
        let a = write("a", "s3cret-a\n\n");
        let b = write("b", "s3cret-b \r\n");
        let bind = "--http-bind=:8080";

        // One file: read and trimmed.
        let arg = format!("--incoming-webhook-secret-file={a}");
        let c = config(&with(&[bind, &arg]), &[]);
        let secrets = http_of(&c).webhook.secrets.accepted();
        assert_eq!(secrets.len(), 1);
        assert_eq!(secrets[0].expose(), b"s3cret-a");

        // Several files (repeated flag), then the environment-only secret.
        let arg_b = format!("--incoming-webhook-secret-file={b}");
        let c = config(
            &with(&[bind, &arg, &arg_b]),
            &[("GITSYNC_INCOMING_WEBHOOK_SECRET", "s3cret-env\n")],
        );
        let got = http_of(&c).webhook.secrets.accepted();
        let got: Vec<&[u8]> = got.iter().map(SecretBytes::expose).collect();
        assert_eq!(
            got,
            vec![&b"s3cret-a"[..], &b"s3cret-b"[..], &b"s3cret-env"[..]]
        );

        // The environment takes a comma-separated list of files.
        let list = format!("{a},{b}");
        let c = config(
            &with(&[bind]),
            &[("GITSYNC_INCOMING_WEBHOOK_SECRET_FILE", list.as_str())],
        );
        assert_eq!(http_of(&c).webhook.secrets.accepted().len(), 2);

        // The env secret alone.
        let c = config(
            &with(&[bind]),
            &[("GITSYNC_INCOMING_WEBHOOK_SECRET", "alone")],
        );
        assert_eq!(http_of(&c).webhook.secrets.accepted()[0].expose(), b"alone");

        // Never in Debug output.
        let dbg = format!("{c:?} {:?}", config(&with(&[bind, &arg, &arg_b]), &[]));
        assert!(!dbg.contains("alone"), "{dbg}");
        assert!(!dbg.contains("s3cret"), "{dbg}");
        assert!(dbg.contains("REDACTED"), "{dbg}");

        // Empty and missing files: errors name the flag and the path.
        let empty = write("empty", " \n\n");
        let missing = dir.path().join("missing").display().to_string();
        let p = problems(
            &with(&[
                bind,
                &format!("--incoming-webhook-secret-file={empty}"),
                &format!("--incoming-webhook-secret-file={missing}"),
                &arg,
            ]),
            &[("GITSYNC_INCOMING_WEBHOOK_SECRET", "  ")],
        );
        assert_eq!(p.len(), 3, "{p:?}");
        assert_eq!(
            p[0],
            format!(
                "--incoming-webhook-secret-file (GITSYNC_INCOMING_WEBHOOK_SECRET_FILE): \
                 {empty:?} is empty"
            )
        );
        assert!(
            p[1].starts_with(&format!(
                "--incoming-webhook-secret-file (GITSYNC_INCOMING_WEBHOOK_SECRET_FILE): \
                 cannot read {missing:?}"
            )),
            "{p:?}"
        );
        assert_eq!(
            p[2],
            "GITSYNC_INCOMING_WEBHOOK_SECRET (environment only): must not be blank"
        );
        assert!(!p.join("\n").contains("s3cret"), "{p:?}");

        // A directory is not a secret file.
        let dir_arg = format!("--sync-trigger-token-file={}", dir.path().display());
        let p = problems(&with(&[bind, &dir_arg]), &[]);
        assert!(
            p[0].starts_with(
                "--sync-trigger-token-file (GITSYNC_SYNC_TRIGGER_TOKEN_FILE): cannot read"
            ),
            "{p:?}"
        );
    }

    #[test]
    fn sync_trigger_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let t1 = dir.path().join("t1");
        std::fs::write(&t1, "tok-1\n").unwrap();
        let arg = format!("--sync-trigger-token-file={}", t1.display());
        let c = config(
            &with(&["--http-bind=:8080", &arg]),
            &[("GITSYNC_SYNC_TRIGGER_TOKEN", "tok-env")],
        );
        let got = http_of(&c).trigger_tokens.accepted();
        let got: Vec<&[u8]> = got.iter().map(SecretBytes::expose).collect();
        assert_eq!(got, vec![&b"tok-1"[..], &b"tok-env"[..]]);
        assert!(http_of(&c).webhook.secrets.is_empty());
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("tok-"), "{dbg}");
    }

    #[test]
    fn placeholder_secrets_are_warned_about_by_source_never_by_value() {
        let dir = tempfile::tempdir().unwrap();
        let shipped = dir.path().join("secret");
        std::fs::write(&shipped, "CHANGE-ME\n").unwrap();
        let good = dir.path().join("good");
        std::fs::write(&good, "3f9c1a7be04d52e8a6c0f1d29b7e4a5c\n").unwrap();
        let file_arg = |p: &Path| format!("--incoming-webhook-secret-file={}", p.display());
        let token_arg = format!("--sync-trigger-token-file={}", shipped.display());
        let c = config(
            &with(&["--http-bind=:1", &file_arg(&shipped), &token_arg]),
            &[("GITSYNC_INCOMING_WEBHOOK_SECRET", "changeme")],
        );
        let all = c.warnings.join("\n");
        let flagged = |label: &str| {
            c.warnings
                .iter()
                .any(|w| w.starts_with(label) && w.contains("looks like a placeholder"))
        };
        assert!(flagged("--incoming-webhook-secret-file"), "{all}");
        assert!(
            all.contains(&format!("{:?}", shipped.display().to_string())),
            "{all}"
        );
        assert!(flagged("--sync-trigger-token-file"), "{all}");
        assert!(flagged("GITSYNC_INCOMING_WEBHOOK_SECRET"), "{all}");
        assert!(
            !all.contains("CHANGE-ME") && !all.contains("changeme"),
            "{all}"
        );
        // A random value: no warning.
        let c = config(&with(&["--http-bind=:1", &file_arg(&good)]), &[]);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }
}
