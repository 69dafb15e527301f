//! The split must be git's: objects signed by `git commit -S` / `git tag -s`
//! (with ssh-keygen and gpg keys), split here, verify with the real tools
//! (`ssh-keygen -Y verify`, `gpg --verify`) over our payload; a payload off
//! by one byte does not. Property tests cover the parser on arbitrary
//! objects.

use std::path::Path;
use std::process::{Command, Stdio};

use proptest::prelude::*;

use super::*;

/// Runs `program` in `dir` with no git system/user config; panics saying
/// what to install when it is missing, and with its stderr when it fails.
fn run(dir: &Path, program: &str, args: &[&str], envs: &[(&str, &Path)], install: &str) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Ann")
        .env("GIT_AUTHOR_EMAIL", "ann@example.com")
        .env("GIT_COMMITTER_NAME", "Ann")
        .env("GIT_COMMITTER_EMAIL", "ann@example.com")
        .envs(envs.iter().map(|(k, v)| (*k, *v)))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program} must be installed for this test ({install}): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn git(dir: &Path, args: &[&str], envs: &[(&str, &Path)]) -> String {
    run(dir, "git", args, envs, "apt-get install git")
}

/// A repository with one file, and an ed25519 key made by ssh-keygen.
fn ssh_repo(tmp: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let repo = tmp.join("repo");
    std::fs::create_dir(&repo).expect("mkdir");
    git(&repo, &["init", "-q", "-b", "main"], &[]);
    let key = tmp.join("id_ed25519");
    run(
        tmp,
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "ann",
            "-f",
            key.to_str().unwrap(),
        ],
        &[],
        "apt-get install openssh-client",
    );
    git(&repo, &["config", "gpg.format", "ssh"], &[]);
    git(
        &repo,
        &["config", "user.signingkey", key.to_str().unwrap()],
        &[],
    );
    std::fs::write(repo.join("f"), "one\n").expect("write");
    git(&repo, &["add", "f"], &[]);
    (repo, key)
}

/// `ssh-keygen -Y verify` of `payload` against `signature`, by `key`'s
/// public half for ann@example.com in the `git` namespace.
fn ssh_keygen_accepts(tmp: &Path, key: &Path, payload: &[u8], signature: &[u8]) -> bool {
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("public key");
    let allowed = tmp.join("allowed_signers");
    std::fs::write(&allowed, format!("ann@example.com {public}")).expect("write");
    let sig = tmp.join("sig");
    std::fs::write(&sig, signature).expect("write");
    let mut child = Command::new("ssh-keygen")
        .args(["-Y", "verify", "-n", "git", "-I", "ann@example.com", "-f"])
        .arg(&allowed)
        .arg("-s")
        .arg(&sig)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ssh-keygen must be installed (apt-get install openssh-client)");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(payload)
        .expect("write payload");
    child.wait().expect("wait").success()
}

#[test]
fn ssh_signed_commit_and_tag_split_as_git_verifies_them() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (repo, key) = ssh_repo(tmp.path());
    git(&repo, &["commit", "-q", "-S", "-m", "signed\n\nbody"], &[]);
    git(&repo, &["tag", "-s", "-m", "release", "v1"], &[]);
    let head = git(&repo, &["rev-parse", "HEAD"], &[]);
    let tag_id = git(&repo, &["rev-parse", "v1"], &[]);
    let store = gix::open(&repo).expect("open");

    let id = gix::ObjectId::from_hex(head.as_bytes()).expect("hex");
    let commit = commit(&store, id).expect("commit");
    let signature = commit.signature.clone().expect("signed");
    assert!(signature.starts_with(b"-----BEGIN SSH SIGNATURE-----"));
    assert_eq!(commit.signer_email.as_deref(), Some("ann@example.com"));
    assert!(ssh_keygen_accepts(
        tmp.path(),
        &key,
        &commit.payload,
        &signature
    ));
    let mut off = commit.payload.clone();
    off.push(b'\n');
    assert!(!ssh_keygen_accepts(tmp.path(), &key, &off, &signature));

    let tag_id = gix::ObjectId::from_hex(tag_id.as_bytes()).expect("hex");
    let tag = tag(&store, tag_id).expect("tag");
    assert_eq!(tag.kind, ObjectKind::Tag);
    assert_eq!(tag.signer_email.as_deref(), Some("ann@example.com"));
    let signature = tag.signature.clone().expect("signed tag");
    assert!(ssh_keygen_accepts(
        tmp.path(),
        &key,
        &tag.payload,
        &signature
    ));
    assert!(!ssh_keygen_accepts(
        tmp.path(),
        &key,
        &commit.payload,
        &signature
    ));
    assert_eq!(tag_commit(&store, tag_id).expect("peel"), id);
    assert!(matches!(
        super::commit(&store, tag_id),
        Err(Error::Kind { .. })
    ));
}

#[test]
fn gpg_signed_commit_splits_as_gpg_verifies_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let home = tmp.path().join("gnupg");
    std::fs::create_dir(&home).expect("mkdir");
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .expect("chmod");
    let gpg_env: [(&str, &Path); 1] = [("GNUPGHOME", &home)];
    run(
        tmp.path(),
        "gpg",
        &[
            "--batch",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--quick-gen-key",
            "Ann <ann@example.com>",
            "ed25519",
            "sign",
            "never",
        ],
        &gpg_env,
        "apt-get install gnupg",
    );
    let repo = tmp.path().join("repo");
    std::fs::create_dir(&repo).expect("mkdir");
    git(&repo, &["init", "-q", "-b", "main"], &[]);
    git(
        &repo,
        &["config", "user.signingkey", "ann@example.com"],
        &[],
    );
    std::fs::write(repo.join("f"), "one\n").expect("write");
    git(&repo, &["add", "f"], &[]);
    git(&repo, &["commit", "-q", "-S", "-m", "signed"], &gpg_env);
    let head = git(&repo, &["rev-parse", "HEAD"], &[]);
    let store = gix::open(&repo).expect("open");
    let id = gix::ObjectId::from_hex(head.as_bytes()).expect("hex");
    let commit = commit(&store, id).expect("commit");
    let signature = commit.signature.clone().expect("signed");
    assert!(signature.starts_with(b"-----BEGIN PGP SIGNATURE-----"));
    let verifies = |payload: &[u8]| {
        std::fs::write(tmp.path().join("payload"), payload).expect("write");
        std::fs::write(tmp.path().join("payload.sig"), &signature).expect("write");
        Command::new("gpg")
            .args(["--batch", "--verify", "payload.sig", "payload"])
            .current_dir(tmp.path())
            .env("GNUPGHOME", &home)
            .output()
            .expect("gpg must be installed (apt-get install gnupg)")
            .status
            .success()
    };
    assert!(verifies(&commit.payload));
    assert!(!verifies(&[&commit.payload[..], b"x"].concat()));
}

#[test]
fn unsigned_objects_are_their_own_payload() {
    let raw = b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor A <a@x> 1 +0000\ncommitter C <c@y> 1 +0000\n\nmsg\ngpgsig in the message\n";
    assert_eq!(split_commit(raw), (raw.to_vec(), None));
    assert_eq!(header_email(raw, b"committer").as_deref(), Some("c@y"));
    assert_eq!(header_email(raw, b"tagger"), None);
    let tag = b"object 4b825dc642cb6eb9a060e54bf8d69288fbee4904\ntype commit\ntag v1\ntagger T <t@z> 1 +0000\n\nmsg\n";
    assert_eq!(split_tag(tag), (tag.to_vec(), None));
    assert_eq!(header_email(tag, b"tagger").as_deref(), Some("t@z"));
}

#[test]
fn sha256_signature_headers_are_left_out_of_a_sha1_payload_as_git_does() {
    let raw = b"tree t\ngpgsig-sha256 -----BEGIN SSH SIGNATURE-----\n other\n -----END SSH SIGNATURE-----\ngpgsig -----BEGIN SSH SIGNATURE-----\n mine\n -----END SSH SIGNATURE-----\ncommitter C <c@y> 1 +0000\n\nmsg\n";
    let (payload, signature) = split_commit(raw);
    assert_eq!(payload, b"tree t\ncommitter C <c@y> 1 +0000\n\nmsg\n");
    assert_eq!(
        signature.as_deref(),
        Some(&b"-----BEGIN SSH SIGNATURE-----\nmine\n-----END SSH SIGNATURE-----\n"[..])
    );
}

/// A header line: a name and a value without line breaks.
fn header() -> impl Strategy<Value = Vec<u8>> {
    ("[a-z][a-z-]{0,8}", "[ -~]{0,30}")
        .prop_filter("not a signature header", |(name, _)| {
            !name.starts_with("gpgsig")
        })
        .prop_map(|(name, value)| format!("{name} {value}\n").into_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Inserting a `gpgsig` header anywhere among the headers and splitting
    /// gives back the unsigned object and the signature, for any message.
    #[test]
    fn a_commit_signature_header_splits_off_exactly(
        headers in proptest::collection::vec(header(), 0..6),
        at in 0usize..6,
        sig_lines in proptest::collection::vec("[ -~]{0,40}", 1..6),
        message in proptest::collection::vec(any::<u8>(), 0..80),
    ) {
        let mut unsigned: Vec<u8> = headers.concat();
        unsigned.push(b'\n');
        unsigned.extend_from_slice(&message);
        let at = at.min(headers.len());
        let mut signature = Vec::new();
        let mut field = b"gpgsig".to_vec();
        for (i, line) in sig_lines.iter().enumerate() {
            field.extend_from_slice(if i == 0 { b" " } else { b"\n " });
            field.extend_from_slice(line.as_bytes());
            signature.extend_from_slice(line.as_bytes());
            signature.push(b'\n');
        }
        field.push(b'\n');
        let signed = [&headers[..at].concat()[..], &field, &headers[at..].concat(), b"\n", &message].concat();
        let (payload, got) = split_commit(&signed);
        prop_assert_eq!(payload, unsigned.clone());
        prop_assert_eq!(got, Some(signature));
        prop_assert_eq!(split_commit(&unsigned), (unsigned, None));
    }

    /// A tag's trailing armour block splits off; the payload is the rest.
    #[test]
    fn a_tag_signature_block_splits_off_exactly(
        headers in proptest::collection::vec(header(), 1..5),
        message in "[ -~\n]{0,80}",
        armour in 0usize..4,
        body in "[A-Za-z0-9+/=\n]{0,80}",
    ) {
        let mut payload = headers.concat();
        payload.push(b'\n');
        payload.extend_from_slice(message.as_bytes());
        if !payload.ends_with(b"\n") {
            payload.push(b'\n');
        }
        let block = [ARMOURS[armour], b"\n", body.as_bytes(), b"\n-----END-----\n"].concat();
        let (got, signature) = split_tag(&[&payload[..], &block].concat());
        prop_assert_eq!(got, payload.clone());
        prop_assert_eq!(signature, Some(block));
        let any = split_tag(&payload);
        prop_assert_eq!(any.1.is_none(), !ARMOURS.iter().any(|a| payload.split(|&b| b == b'\n').any(|l| l.starts_with(a))));
    }

    /// Never panics, and the payload never holds more than the object.
    #[test]
    fn arbitrary_bytes_split_without_panicking(raw in proptest::collection::vec(any::<u8>(), 0..200)) {
        let (payload, signature) = split_commit(&raw);
        prop_assert!(payload.len() + signature.map_or(0, |s| s.len()) <= raw.len());
        let (payload, signature) = split_tag(&raw);
        prop_assert_eq!(payload.len() + signature.as_ref().map_or(0, Vec::len) <= raw.len(), true);
        let _ = header_email(&raw, b"committer");
    }
}
