//! Signature verification (`--verify-signatures`, `--verify-allowed-signers`,
//! `--verify-pgp-keyring`, `--verify-committers`), built into
//! [`crate::verify::Settings`]. The key files must be readable at start-up
//! (an error otherwise); whether they parse is checked too, but only warned
//! about: they are Secrets that rotate, and every sync reads and parses them
//! again (a file that does not parse then fails the sync, naming the line).
//!
//! A half-made configuration fails to start rather than run unverified: key
//! files or `--verify-committers` without a mode, and a `tag` mode whose
//! `--ref` can never be a tag (`HEAD`, `refs/heads/…`). Whether another
//! `--ref` is an annotated tag is only known after the fetch (`tag` modes
//! then refuse a branch with `not_a_tag`).

use std::path::PathBuf;

use super::Checker;
use crate::cli::Flag;
use crate::sync::engine::verification::read_key_file;
use crate::verify::{KeyFileKind, KeyFiles, Mode, Settings};

impl Checker<'_> {
    /// The validated `--verify-*` flags.
    pub(super) fn verify(&mut self, git_ref: &str) -> Settings {
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
        // An invalid mode is reported as such, not as "none".
        if self
            .raw(Flag::VerifySignatures)
            .is_none_or(|raw| Mode::parse(raw).is_some())
        {
            self.check_half_configured(&settings, git_ref);
        }
        settings
    }

    /// Verification flags that only make sense with a mode, or a `tag` mode
    /// with a `--ref` that is never a tag: fail safe, refuse to start.
    fn check_half_configured(&mut self, settings: &Settings, git_ref: &str) {
        let has_keys = !settings.allowed_signers.is_empty() || !settings.pgp_keyrings.is_empty();
        if settings.mode == Mode::None && has_keys {
            self.fail(
                Flag::VerifySignatures,
                "key files are given (--verify-allowed-signers or --verify-pgp-keyring) but the \
                 mode is \"none\" (the default), so nothing would be verified; add \
                 --verify-signatures=head (signed commits), tag (the signed tag --ref names) or \
                 tag-and-head, or remove the key files",
            );
        }
        if settings.mode == Mode::None && settings.committers {
            self.fail(
                Flag::VerifyCommitters,
                "needs --verify-signatures: without it no signature is checked, so no key is \
                 matched to a committer; add --verify-signatures=head (or tag, tag-and-head) and \
                 a key file",
            );
        }
        if settings.mode.checks_tag() && never_a_tag(git_ref) {
            self.fail(
                Flag::VerifySignatures,
                format!(
                    "{:?} needs --ref to name an annotated tag (e.g. --ref=v1.4.2), but --ref is \
                     {git_ref:?}, a branch, which is never a tag; set --ref to the signed tag, or \
                     use --verify-signatures=head to verify the branch's commits",
                    settings.mode.as_str()
                ),
            );
        }
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

/// `HEAD` (the remote's default branch) and `refs/heads/…` name branches.
fn never_a_tag(git_ref: &str) -> bool {
    git_ref == "HEAD" || git_ref.starts_with("refs/heads/")
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
        ] {
            let c = config(
                &with(&[
                    "--verify-signatures",
                    raw,
                    "--verify-allowed-signers",
                    a,
                    "--ref",
                    "v1.0",
                ]),
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
                ("GITSYNC_REF", "refs/tags/v1.0"),
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

    /// Half-made configurations fail safe (probe-9 F7, F14): key files or
    /// --verify-committers without a mode, a tag mode on a branch ref; all
    /// reported at once, each saying what to add.
    #[test]
    fn half_configured_verification_is_refused_at_start_up() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let a = tmp.path().join("allowed_signers");
        std::fs::write(&a, "").expect("write");
        let a = a.to_str().expect("utf-8");
        let got = problems(
            &with(&["--verify-allowed-signers", a, "--verify-committers"]),
            &[],
        );
        let all = got.join("\n");
        assert_eq!(got.len(), 2, "{all}");
        assert!(
            all.contains("--verify-signatures")
                && all.contains("nothing would be verified")
                && all.contains("--verify-signatures=head"),
            "{all}"
        );
        assert!(
            all.contains("--verify-committers") && all.contains("needs --verify-signatures"),
            "{all}"
        );
        let got = problems(
            &with(&["--verify-signatures=none", "--verify-pgp-keyring", a]),
            &[],
        );
        assert!(
            got.join("\n").contains("nothing would be verified"),
            "{got:?}"
        );
        for (mode, git_ref) in [
            ("tag", None),
            ("tag-and-head", Some("HEAD")),
            ("tag", Some("refs/heads/main")),
        ] {
            let mut args = vec!["--verify-signatures", mode, "--verify-allowed-signers", a];
            if let Some(r) = git_ref {
                args.extend(["--ref", r]);
            }
            let got = problems(&with(&args), &[]).join("\n");
            assert!(
                got.contains("needs --ref to name an annotated tag") && got.contains("never a tag"),
                "{mode} {git_ref:?}: {got}"
            );
        }
        // A tag, or a name that may be one, is only judged after the fetch.
        for git_ref in ["v1.0", "refs/tags/v1.0", "release"] {
            let c = config(
                &with(&[
                    "--verify-signatures=tag",
                    "--verify-allowed-signers",
                    a,
                    "--ref",
                    git_ref,
                ]),
                &[],
            );
            assert_eq!(c.verify.mode, Mode::Tag);
        }
        // --verify-committers=false without a mode is fine.
        config(&with(&["--verify-committers=false"]), &[]);
    }
}
