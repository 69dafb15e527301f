//! Signature verification (`--verify-signatures`, `--verify-allowed-signers`,
//! `--verify-pgp-keyring`, `--verify-committers`), built into
//! [`crate::verify::Settings`]. The key files must be readable at start-up
//! (an error otherwise); whether they parse is checked too, but only warned
//! about: they are Secrets that rotate, and every sync reads and parses them
//! again (a file that does not parse then fails the sync, naming the line).
//! Whether `--ref` is an annotated tag is only known after the fetch
//! (`tag` modes then refuse a branch with `not_a_tag`).

use std::path::PathBuf;

use super::Checker;
use crate::cli::Flag;
use crate::sync::engine::verification::read_key_file;
use crate::verify::{KeyFileKind, KeyFiles, Mode, Settings};

impl Checker<'_> {
    /// The validated `--verify-*` flags.
    pub(super) fn verify(&mut self) -> Settings {
        let mode = match self.raw(Flag::VerifySignatures) {
            None => Mode::None,
            Some(raw) => Mode::parse(raw).unwrap_or_else(|| {
                self.fail(
                    Flag::VerifySignatures,
                    format!("must be \"none\", \"head\", \"tag\" or \"tag-and-head\", got {raw:?}"),
                );
                Mode::None
            }),
        };
        let allowed_signers = self.key_files(Flag::VerifyAllowedSigners);
        let pgp_keyrings = self.key_files(Flag::VerifyPgpKeyring);
        let committers = self
            .bool(Flag::VerifyCommitters)
            .unwrap_or_else(|| super::checker::default_bool(Flag::VerifyCommitters));
        let settings = Settings {
            mode,
            allowed_signers,
            pgp_keyrings,
            committers,
        };
        self.check_verify(&settings);
        settings
    }

    fn key_files(&mut self, id: Flag) -> Vec<PathBuf> {
        let given: Vec<String> = match id {
            Flag::VerifyAllowedSigners => self.cli.verify_allowed_signers.clone(),
            _ => self.cli.verify_pgp_keyring.clone(),
        };
        let mut files = Vec::new();
        for raw in given.iter().filter(|p| !p.is_empty()) {
            match super::absolute_reread(std::path::Path::new(raw)) {
                Ok(path) => files.push(path),
                Err(e) => self.fail(id, format!("cannot make {raw:?} absolute: {e}")),
            }
        }
        files
    }

    fn check_verify(&mut self, settings: &Settings) {
        let no_keys = settings.allowed_signers.is_empty() && settings.pgp_keyrings.is_empty();
        if settings.mode != Mode::None && no_keys {
            self.fail(
                Flag::VerifySignatures,
                format!(
                    "{:?} needs at least one key file: set {} or {}",
                    settings.mode.as_str(),
                    self.cli.label(Flag::VerifyAllowedSigners),
                    self.cli.label(Flag::VerifyPgpKeyring)
                ),
            );
        }
        if settings.mode == Mode::None && !no_keys {
            self.warnings.push(format!(
                "key files are given but {} is \"none\": nothing is verified",
                self.cli.label(Flag::VerifySignatures)
            ));
        }
        let files = [
            (
                Flag::VerifyAllowedSigners,
                KeyFileKind::AllowedSigners,
                &settings.allowed_signers,
            ),
            (
                Flag::VerifyPgpKeyring,
                KeyFileKind::PgpKeyring,
                &settings.pgp_keyrings,
            ),
        ];
        for (id, kind, paths) in files {
            for path in paths {
                match read_key_file(kind, path) {
                    Err(e) => self.fail(id, format!("{}: {e}", path.display())),
                    Ok(file) => {
                        if let Err(e) = KeyFiles(vec![file]).trust() {
                            let label = self.cli.label(id);
                            self.warnings
                                .push(format!("{label}: {e}; every sync fails until it parses"));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{config, problems, with};
    use crate::verify::Mode;

    #[test]
    fn off_by_default() {
        let c = config(&with(&[]), &[]);
        assert_eq!(c.verify.mode, Mode::None);
        assert!(c.verify.allowed_signers.is_empty() && c.verify.pgp_keyrings.is_empty());
        assert!(!c.verify.committers);
    }

    #[test]
    fn modes_flags_and_environment() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let a = tmp.path().join("allowed_signers");
        let b = tmp.path().join("second");
        let k = tmp.path().join("keyring.asc");
        for f in [&a, &b, &k] {
            std::fs::write(f, "").expect("write");
        }
        let (a, b, k) = (
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            k.to_str().unwrap(),
        );
        for (raw, mode) in [
            ("head", Mode::Head),
            ("tag", Mode::Tag),
            ("tag-and-head", Mode::TagAndHead),
            ("none", Mode::None),
        ] {
            let c = config(
                &with(&["--verify-signatures", raw, "--verify-allowed-signers", a]),
                &[],
            );
            assert_eq!(c.verify.mode, mode, "{raw}");
        }
        let both = format!("{a}:{b}");
        let c = config(
            &with(&[]),
            &[
                ("GITSYNC_VERIFY_SIGNATURES", "tag-and-head"),
                ("GITSYNC_VERIFY_ALLOWED_SIGNERS", &both),
                ("GITSYNC_VERIFY_PGP_KEYRING", k),
                ("GITSYNC_VERIFY_COMMITTERS", "true"),
            ],
        );
        assert_eq!(c.verify.mode, Mode::TagAndHead);
        assert_eq!(c.verify.allowed_signers.len(), 2);
        assert_eq!(c.verify.pgp_keyrings, vec![std::path::PathBuf::from(k)]);
        assert!(c.verify.committers);
        let c = config(
            &with(&[
                "--verify-signatures=head",
                "--verify-pgp-keyring",
                k,
                "--verify-pgp-keyring",
                a,
                "--verify-committers",
            ]),
            &[],
        );
        assert_eq!(c.verify.pgp_keyrings.len(), 2);
        assert!(c.verify.committers);
    }

    #[test]
    fn every_mistake_is_reported_at_once() {
        let got = problems(
            &with(&[
                "--verify-signatures",
                "sometimes",
                "--verify-allowed-signers",
                "/nonexistent/allowed_signers",
                "--verify-pgp-keyring",
                "/nonexistent/keyring.asc",
                "--verify-committers=maybe",
            ]),
            &[],
        );
        let all = got.join("\n");
        assert!(
            all.contains("--verify-signatures") && all.contains("\"sometimes\""),
            "{all}"
        );
        assert!(
            all.contains("/nonexistent/allowed_signers: cannot read it"),
            "{all}"
        );
        assert!(
            all.contains("/nonexistent/keyring.asc: cannot read it"),
            "{all}"
        );
        assert!(all.contains("--verify-committers"), "{all}");
        assert_eq!(got.len(), 4, "{all}");
    }

    #[test]
    fn a_mode_without_key_files_is_refused() {
        for mode in ["head", "tag", "tag-and-head"] {
            let got = problems(&with(&["--verify-signatures", mode]), &[]).join("\n");
            assert!(
                got.contains("needs at least one key file")
                    && got.contains("--verify-allowed-signers")
                    && got.contains("--verify-pgp-keyring"),
                "{mode}: {got}"
            );
        }
    }
}
