//! Signing keys made by the real tools, and signed commits and tags made by
//! `git commit -S` / `git tag -s` with them: SSH keys from `ssh-keygen`
//! (`gpg.format=ssh`) and OpenPGP keys in a throw-away `GNUPGHOME` (git
//! runs gpg through a wrapper script that sets it, since the harness clears
//! git's environment). A missing tool fails the test saying what to install.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::Upstream;

fn run_tool(cmd: &mut Command, program: &str, install: &str) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("`{program}` is needed for this test: {install} ({e})"));
    assert!(
        out.status.success(),
        "{program} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// An SSH signing key made by `ssh-keygen`.
pub struct SshKey {
    _dir: tempfile::TempDir,
    /// The private key file (what `user.signingkey` names).
    pub private: PathBuf,
    /// `ssh-ed25519 AAAA… comment`.
    pub public: String,
}

impl SshKey {
    /// `kind`: `ed25519`, `ecdsa` or `rsa`.
    pub fn generate(kind: &str) -> Self {
        let dir = super::tempdir("sshkey");
        let private = dir.path().join(format!("id_{kind}"));
        run_tool(
            Command::new("ssh-keygen")
                .args(["-q", "-t", kind, "-N", "", "-C", kind, "-f"])
                .arg(&private),
            "ssh-keygen",
            "apt-get install openssh-client",
        );
        let public = fs::read_to_string(private.with_extension("pub"))
            .expect("reading the public key")
            .trim()
            .to_string();
        SshKey {
            _dir: dir,
            private,
            public,
        }
    }

    /// An allowed_signers line for `principals` in the `git` namespace.
    pub fn allowed(&self, principals: &str) -> String {
        format!("{principals} namespaces=\"git\" {}\n", self.public)
    }

    /// The `-c` options that make git sign with this key.
    fn git_config(&self) -> [String; 4] {
        [
            "-c".into(),
            "gpg.format=ssh".into(),
            "-c".into(),
            format!("user.signingkey={}", self.private.display()),
        ]
    }
}

/// A throw-away GnuPG home with its own keys.
pub struct Gpg {
    dir: tempfile::TempDir,
}

impl Default for Gpg {
    fn default() -> Self {
        Self::new()
    }
}

impl Gpg {
    pub fn new() -> Self {
        let dir = super::tempdir("gnupg");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).expect("chmod 700");
        Gpg { dir }
    }

    pub fn home(&self) -> &Path {
        self.dir.path()
    }

    /// gpg in this home; `faked_time` (`20200101T000000`) runs it as of then.
    pub fn command(&self, faked_time: Option<&str>) -> Command {
        let mut cmd = Command::new("gpg");
        cmd.env("GNUPGHOME", self.home()).args([
            "--batch",
            "--yes",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ]);
        if let Some(t) = faked_time {
            cmd.arg("--faked-system-time").arg(format!("{t}!"));
        }
        cmd
    }

    pub fn gpg(&self, faked_time: Option<&str>, args: &[&str]) -> String {
        let out = run_tool(
            self.command(faked_time).args(args),
            "gpg",
            "apt-get install gnupg",
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Makes a primary key (`algo`: `rsa3072`, `ed25519`; `usage`: `sign`,
    /// `cert`; `expire`: `never`, `1d`) for `uid`; returns its fingerprint.
    pub fn generate(
        &self,
        uid: &str,
        algo: &str,
        usage: &str,
        expire: &str,
        faked_time: Option<&str>,
    ) -> String {
        self.gpg(faked_time, &["--quick-gen-key", uid, algo, usage, expire]);
        self.fingerprints(uid)[0].clone()
    }

    /// The fingerprints of `uid`'s key: the primary first, then the subkeys.
    pub fn fingerprints(&self, uid: &str) -> Vec<String> {
        let listing = self.gpg(
            None,
            &["--with-colons", "--fingerprint", "--list-keys", uid],
        );
        listing
            .lines()
            .filter(|l| l.starts_with("fpr:"))
            .filter_map(|l| l.split(':').nth(9).map(str::to_string))
            .collect()
    }

    /// Adds an ed25519 signing subkey to `primary`; returns its fingerprint.
    pub fn add_signing_subkey(&self, primary: &str) -> String {
        self.gpg(
            None,
            &["--quick-add-key", primary, "ed25519", "sign", "never"],
        );
        let fprs = self.fingerprints(primary);
        fprs.last().expect("a subkey").clone()
    }

    /// Revokes `fingerprint` with the revocation certificate gpg made with it.
    pub fn revoke(&self, fingerprint: &str) {
        let cert = self
            .home()
            .join("openpgp-revocs.d")
            .join(format!("{fingerprint}.rev"));
        let text = fs::read_to_string(&cert).expect("gpg's revocation certificate");
        // gpg writes it with the armour line escaped by a ':' against accidents.
        let text = text.replace(
            ":-----BEGIN PGP PUBLIC KEY BLOCK-----",
            "-----BEGIN PGP PUBLIC KEY BLOCK-----",
        );
        let path = self.home().join("revoke.asc");
        fs::write(&path, text).expect("write");
        self.gpg(None, &["--import", path.to_str().expect("utf-8")]);
    }

    /// `gpg --export` of `who` (armoured when `armour`).
    pub fn export(&self, who: &str, armour: bool) -> Vec<u8> {
        let mut cmd = self.command(None);
        if armour {
            cmd.arg("--armor");
        }
        run_tool(cmd.args(["--export", who]), "gpg", "apt-get install gnupg").stdout
    }

    /// A `gpg.program` for git: gpg in this home (as of `faked_time`).
    pub fn program(&self, faked_time: Option<&str>) -> PathBuf {
        let name = format!("gpg-{}", faked_time.unwrap_or("now"));
        let path = self.home().join(name);
        let faked = faked_time.map_or(String::new(), |t| format!("--faked-system-time '{t}!' "));
        fs::write(
            &path,
            format!(
                "#!/bin/sh\nGNUPGHOME='{}' exec gpg {faked}\"$@\"\n",
                self.home().display()
            ),
        )
        .expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        // The agent gpg started for this home would outlive the test.
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home())
            .args(["--kill", "gpg-agent"])
            .stdin(Stdio::null())
            .output();
    }
}

/// How a commit or tag is signed.
pub enum Signer<'a> {
    Ssh(&'a SshKey),
    /// gpg home, key (fingerprint or uid), faked time.
    Gpg(&'a Gpg, &'a str, Option<&'a str>),
}

impl Signer<'_> {
    fn git_config(&self) -> Vec<String> {
        match self {
            Signer::Ssh(key) => key.git_config().to_vec(),
            Signer::Gpg(gpg, key, time) => vec![
                "-c".into(),
                format!("gpg.program={}", gpg.program(*time).display()),
                "-c".into(),
                format!("user.signingkey={key}"),
            ],
        }
    }
}

impl Upstream {
    /// Runs git with the signing configuration of `signer` first.
    pub fn git_signing(&self, signer: &Signer<'_>, args: &[&str]) -> String {
        let mut all: Vec<String> = signer.git_config();
        all.extend(args.iter().map(|a| a.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        self.git(&all)
    }

    /// Commits `rel` with `content`, signed (`git commit -S`); the new HEAD.
    pub fn commit_signed(
        &self,
        signer: &Signer<'_>,
        rel: &str,
        content: &str,
        msg: &str,
    ) -> String {
        self.write_file(rel, content);
        self.git(&["add", "--", rel]);
        self.git_signing(signer, &["commit", "-q", "-S", "-m", msg]);
        self.head()
    }

    /// A signed annotated tag at HEAD (`git tag -s`); the tag object's id.
    pub fn tag_signed(&self, signer: &Signer<'_>, name: &str, msg: &str) -> String {
        self.git_signing(signer, &["tag", "-s", "-f", name, "-m", msg]);
        self.rev_parse(&format!("refs/tags/{name}"))
    }

    /// Writes the commit object `text` as is (`git hash-object -w -t commit`)
    /// and moves `main` to it; its id.
    pub fn write_commit_object(&self, text: &[u8]) -> String {
        let id = self.git_with_input(&["hash-object", "-w", "-t", "commit", "--stdin"], text);
        self.git(&["update-ref", "refs/heads/main", &id]);
        self.git(&["reset", "-q", "--hard", &id]);
        id
    }

    /// `git cat-file commit <rev>`, raw.
    pub fn commit_object(&self, rev: &str) -> Vec<u8> {
        let out = super::git::git_output(&["cat-file", "commit", rev], self.path());
        assert!(out.status.success(), "cat-file {rev}");
        out.stdout
    }
}

/// The `gpgsig` header (with its continuation lines) of a raw commit.
pub fn signature_header(commit: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(commit);
    let mut out = String::new();
    let mut inside = false;
    for line in text.split_inclusive('\n') {
        if line.starts_with("gpgsig ") {
            inside = true;
        } else if inside && !line.starts_with(' ') {
            break;
        }
        if inside {
            out.push_str(line);
        }
    }
    assert!(!out.is_empty(), "the commit is not signed:\n{text}");
    out.into_bytes()
}

/// `commit` with its `gpgsig` header replaced by `header` (inserted after
/// the committer line when it has none).
pub fn with_signature_header(commit: &[u8], header: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(commit).into_owned();
    let (head, message) = text.split_once("\n\n").expect("a commit object");
    let mut out = String::new();
    let mut inside = false;
    for line in head.split('\n') {
        if line.starts_with("gpgsig ") {
            inside = true;
            continue;
        }
        if inside && line.starts_with(' ') {
            continue;
        }
        inside = false;
        out.push_str(line);
        out.push('\n');
        if line.starts_with("committer ") {
            out.push_str(&String::from_utf8_lossy(header));
        }
    }
    out.push('\n');
    out.push_str(message);
    out.into_bytes()
}
