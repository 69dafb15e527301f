//! `--verify-signatures` against the built binary, with signatures made by
//! the real tools (`git commit -S` / `git tag -s` with ssh-keygen and gpg
//! keys, see `support::signing`), served over file:// and git daemon:
//! valid SSH (ed25519, ECDSA, RSA) and OpenPGP (RSA, ed25519, a signing
//! subkey) signatures publish; unsigned commits, unknown keys, expired and
//! revoked keys, forged and modified objects, committer mismatches and
//! branches in the `tag` modes are refused: nothing is written, the previous
//! content stays published, `/status` and the metric say why, `--one-time`
//! exits non-zero, and the refusal holds (without a log line per period)
//! until the ref moves or a key file changes.

use std::fs;
use std::path::{Path, PathBuf};

use crate::support::client::{self, wait_for_http_address};
use crate::support::signing::{signature_header, with_signature_header, Gpg, Signer, SshKey};
use crate::support::*;

/// The committer of every fixture commit (see `support::git::isolate`).
const COMMITTER: &str = "committer@example.invalid";

/// Writes a key file as a Secret volume updates it: a new file renamed
/// over the old one.
fn write_key_file(path: &Path, content: impl AsRef<[u8]>) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, content).expect("writing a key file");
    fs::rename(&tmp, path).expect("renaming the key file into place");
}

fn key_file(s: &Scratch, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
    let path = s.dir.path().join(name);
    write_key_file(&path, content);
    path
}

/// Starts the sidecar polling every 100ms with /status and /metrics.
fn start(s: &Scratch, url: &str, args: &[&std::ffi::OsStr]) -> (Running, String) {
    let run = s
        .sidecar(url)
        .args([
            "--period",
            "100ms",
            "--http-bind",
            "127.0.0.1:0",
            "--http-metrics",
        ])
        .args(args)
        .spawn();
    let addr = wait_for_http_address(&run);
    (run, addr)
}

fn os(args: &[&str]) -> Vec<std::ffi::OsString> {
    args.iter().map(std::ffi::OsString::from).collect()
}

fn refs(v: &[std::ffi::OsString]) -> Vec<&std::ffi::OsStr> {
    v.iter().map(|a| a.as_os_str()).collect()
}

fn status(addr: &str) -> serde_json::Value {
    client::get(addr, "/status").expect("GET /status").json()
}

/// `git_sidecar_signature_verifications_total{result="<result>"}`, 0 when absent.
fn verifications(addr: &str, result: &str) -> u64 {
    let text = client::get(addr, "/metrics").expect("GET /metrics").text();
    let sample = format!("git_sidecar_signature_verifications_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&sample))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

/// Waits until `/status` reports a refusal of `commit` with `result`.
fn wait_for_refusal(run: &Running, addr: &str, commit: &str, result: &str) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    run.wait_until(
        DEADLINE,
        &format!("/status refuses {commit} ({result})"),
        || {
            last = status(addr);
            last["signature_refusal"]["commit"] == commit
                && last["signature_refusal"]["result"] == result
        },
    );
    last
}

/// `--one-time` with `args`: the exit status and the stderr.
fn one_time(s: &Scratch, url: &str, args: &[&str]) -> (std::process::ExitStatus, String) {
    let out = s.sidecar(url).arg("--one-time").args(args).run(DEADLINE);
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The default: nothing is verified, unsigned commits publish.
#[test]
fn mode_none_publishes_unsigned_commits() {
    let up = Upstream::new();
    let a = up.commit_file("f", "a", "a");
    let s = Scratch::new();
    let (status, stderr) = one_time(&s, &up.file_url(), &[]);
    assert!(status.success(), "{stderr}");
    assert_eq!(s.published().as_deref(), Some(a.as_str()));
    assert!(!stderr.contains("signature"), "{stderr}");
}

/// An unsigned commit: nothing is written (no worktree), `/status` names
/// the commit and the reason, the metric counts it, the error file says
/// so; the refusal is remembered (no log line or metric per period, the
/// process does not exit with the default --max-failures=0), and a new
/// commit is verified again at once.
#[test]
fn unsigned_commit_is_refused_once_and_remembered_until_the_ref_moves() {
    let up = Upstream::new();
    let a = up.commit_file("f", "a", "a");
    let s = Scratch::new();
    let key = SshKey::generate("ed25519");
    let allowed = key_file(&s, "allowed_signers", key.allowed(COMMITTER));
    let args = os(&["--verify-signatures", "head", "--verify-allowed-signers"]);
    let mut args = args;
    args.push(allowed.into_os_string());
    args.push("--error-file".into());
    args.push(s.error_file().into_os_string());
    let (run, addr) = start(&s, &up.file_url(), &refs(&args));
    let st = wait_for_refusal(&run, &addr, &a, "unsigned");
    assert_eq!(st["signature_refusal"]["object"], "commit", "{st}");
    assert_eq!(
        st["signature_refusal"]["key"],
        serde_json::Value::Null,
        "{st}"
    );
    assert!(
        st["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("unsigned")),
        "{st}"
    );
    assert_eq!(st["ready"], false, "{st}");
    assert_eq!(s.published(), None, "nothing is published");
    let worktrees: Vec<_> = fs::read_dir(s.worktrees())
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        worktrees.iter().all(|n| !n.to_string_lossy().contains(&a)),
        "nothing of the refused commit was written: {worktrees:?}"
    );
    run.wait_until(DEADLINE, "the error file names the refusal", || {
        read_error_file(&s.error_file()).is_some_and(|v| v["Err"].to_string().contains("unsigned"))
    });

    // Several more periods: still refused, not verified or logged again.
    run.wait_until(DEADLINE, "three more failed passes", || {
        status(&addr)["consecutive_failures"].as_u64() >= Some(4)
    });
    run.assert_running();
    assert_eq!(verifications(&addr, "unsigned"), 1, "verified once");
    let logged = run
        .logs()
        .lines()
        .filter(|l| l.contains("signature refused"))
        .count();
    assert_eq!(logged, 1, "one error line for one refusal\n{}", run.logs());

    // The ref moves: the new commit is verified at once.
    let b = up.commit_file("f", "b", "b");
    wait_for_refusal(&run, &addr, &b, "unsigned");
    assert_eq!(verifications(&addr, "unsigned"), 2);
    assert_eq!(s.published(), None);
}

/// `--one-time` exits non-zero on a refused commit and says why.
#[test]
fn one_time_exits_non_zero_on_a_refused_commit() {
    let up = Upstream::new();
    let a = up.commit_file("f", "a", "a");
    let s = Scratch::new();
    let key = SshKey::generate("ed25519");
    let allowed = key_file(&s, "allowed_signers", key.allowed(COMMITTER));
    let (status, stderr) = one_time(
        &s,
        &up.file_url(),
        &[
            "--verify-signatures=head",
            "--verify-allowed-signers",
            allowed.to_str().unwrap(),
        ],
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&a) && stderr.contains("unsigned"),
        "{stderr}"
    );
    assert_eq!(s.published(), None);
}

/// `tag` modes with a branch, a lightweight tag or an unsigned annotated
/// tag: refused (the branch is only known to be one after the fetch).
#[test]
fn tag_mode_refuses_branches_lightweight_and_unsigned_tags() {
    let up = Upstream::new();
    up.commit_file("f", "a", "a");
    up.tag_light("light");
    up.tag_annotated("plain", "unsigned");
    let s = Scratch::new();
    let key = SshKey::generate("ed25519");
    let allowed = key_file(&s, "allowed_signers", key.allowed(COMMITTER));
    let allowed = allowed.to_str().unwrap();
    for (git_ref, mode, why) in [
        ("main", "tag", "not an annotated tag"),
        ("light", "tag-and-head", "not an annotated tag"),
        ("plain", "tag", "unsigned: the tag"),
    ] {
        let (status, stderr) = one_time(
            &s,
            &up.file_url(),
            &[
                "--ref",
                git_ref,
                "--verify-signatures",
                mode,
                "--verify-allowed-signers",
                allowed,
            ],
        );
        assert_eq!(status.code(), Some(1), "{git_ref}: {stderr}");
        assert!(stderr.contains(why), "{git_ref}: {stderr}");
        assert_eq!(s.published(), None, "{git_ref}");
    }
}

/// Missing key files and a mode without keys: start-up refuses, naming each.
#[test]
fn unreadable_key_files_are_configuration_errors() {
    let up = Upstream::new();
    up.commit_file("f", "a", "a");
    let s = Scratch::new();
    let (status, stderr) = one_time(
        &s,
        &up.file_url(),
        &[
            "--verify-signatures=head",
            "--verify-allowed-signers=/nonexistent/allowed_signers",
            "--verify-pgp-keyring=/nonexistent/keyring.asc",
        ],
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("/nonexistent/allowed_signers")
            && stderr.contains("/nonexistent/keyring.asc"),
        "{stderr}"
    );
    let (status, stderr) = one_time(&s, &up.file_url(), &["--verify-signatures=tag"]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("needs at least one key file"), "{stderr}");
}

/// A key file that does not parse fails the sync, naming the file and line.
#[test]
fn a_key_file_that_does_not_parse_fails_the_sync_naming_file_and_line() {
    let up = Upstream::new();
    let key = SshKey::generate("ed25519");
    up.commit_signed(&Signer::Ssh(&key), "f", "a", "a");
    let s = Scratch::new();
    let allowed = key_file(
        &s,
        "allowed_signers",
        "this is not an allowed_signers line\n",
    );
    let (status, stderr) = one_time(
        &s,
        &up.file_url(),
        &[
            "--verify-signatures=head",
            "--verify-allowed-signers",
            allowed.to_str().unwrap(),
        ],
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(allowed.to_str().unwrap()) && stderr.contains("line 1"),
        "{stderr}"
    );
}

// ---- acceptance: these need the SSH and OpenPGP verifiers ------------------------------------

/// SSH signatures by ed25519, ECDSA and RSA keys publish, each in turn;
/// history below the tip is unsigned and never looked at (shallow clone).
#[test]
fn ssh_signed_commits_publish_ed25519_ecdsa_rsa() {
    let up = Upstream::new();
    up.commit_file("f", "unsigned history", "0");
    let keys: Vec<SshKey> = ["ed25519", "ecdsa", "rsa"].map(SshKey::generate).into();
    let s = Scratch::new();
    let lines: String = keys.iter().map(|k| k.allowed(COMMITTER)).collect();
    let allowed = key_file(&s, "allowed_signers", lines);
    let mut args = os(&[
        "--verify-signatures=head",
        "--verify-committers",
        "--verify-allowed-signers",
    ]);
    args.push(allowed.into_os_string());
    let first = up.commit_signed(&Signer::Ssh(&keys[0]), "f", "ed25519", "ed25519");
    let (run, addr) = start(&s, &up.file_url(), &refs(&args));
    run.wait_for_link_hash(&s.link(), &first);
    for key in &keys[1..] {
        let next = up.commit_signed(&Signer::Ssh(key), "f", &key.public, "next");
        run.wait_for_link_hash(&s.link(), &next);
    }
    assert_eq!(verifications(&addr, "valid"), 3);
    assert!(status(&addr)["signature_refusal"].is_null());
}

/// OpenPGP signatures by RSA and ed25519 primary keys and by a signing
/// subkey publish, from an armoured and a binary keyring, over git daemon.
#[test]
fn gpg_signed_commits_publish_rsa_ed25519_and_subkey_over_git_daemon() {
    let up = Upstream::new();
    let gpg = Gpg::new();
    let rsa = gpg.generate(
        "Rsa <rsa@example.invalid>",
        "rsa3072",
        "sign",
        "never",
        None,
    );
    let ed = gpg.generate("Ed <ed@example.invalid>", "ed25519", "sign", "never", None);
    let primary = gpg.generate(
        "Sub <sub@example.invalid>",
        "ed25519",
        "cert",
        "never",
        None,
    );
    let subkey = gpg.add_signing_subkey(&primary);
    let s = Scratch::new();
    let armoured = key_file(&s, "keyring.asc", gpg.export(&rsa, true));
    let mut binary = gpg.export(&ed, false);
    binary.extend(gpg.export(&primary, false));
    let binary = key_file(&s, "keyring.gpg", binary);
    let daemon = GitDaemon::start(up.base());
    let mut args = os(&["--verify-signatures=head", "--verify-pgp-keyring"]);
    args.push(armoured.into_os_string());
    args.push("--verify-pgp-keyring".into());
    args.push(binary.into_os_string());
    let a = up.commit_signed(&Signer::Gpg(&gpg, &rsa, None), "f", "rsa", "rsa");
    let (run, addr) = start(&s, &daemon.url(up.name()), &refs(&args));
    run.wait_for_link_hash(&s.link(), &a);
    let b = up.commit_signed(&Signer::Gpg(&gpg, &ed, None), "f", "ed", "ed");
    run.wait_for_link_hash(&s.link(), &b);
    let c = up.commit_signed(
        &Signer::Gpg(&gpg, &format!("{subkey}!"), None),
        "f",
        "sub",
        "sub",
    );
    run.wait_for_link_hash(&s.link(), &c);
    assert_eq!(verifications(&addr, "valid"), 3);
}

/// Expired and revoked OpenPGP keys do not count.
#[test]
fn expired_and_revoked_gpg_keys_are_refused() {
    let gpg = Gpg::new();
    let old = gpg.generate(
        "Old <old@example.invalid>",
        "ed25519",
        "sign",
        "1d",
        Some("20200101T000000"),
    );
    let gone = gpg.generate(
        "Gone <gone@example.invalid>",
        "ed25519",
        "sign",
        "never",
        None,
    );
    for (key, time, why) in [
        (&old, Some("20200101T010000"), "expired"),
        (&gone, None, "revoked"),
    ] {
        let up = Upstream::new();
        up.commit_signed(&Signer::Gpg(&gpg, key, time), "f", "x", "x");
        if why == "revoked" {
            gpg.revoke(key);
        }
        let s = Scratch::new();
        let keyring = key_file(&s, "keyring.asc", gpg.export(key, true));
        let (status, stderr) = one_time(
            &s,
            &up.file_url(),
            &[
                "--verify-signatures=head",
                "--verify-pgp-keyring",
                keyring.to_str().unwrap(),
            ],
        );
        assert_eq!(status.code(), Some(1), "{why}: {stderr}");
        assert!(stderr.contains(why), "{why}: {stderr}");
        assert_eq!(s.published(), None, "{why}");
    }
}

/// A signed annotated tag publishes in the `tag` mode (the commit itself
/// unsigned), over git daemon; `tag-and-head` also wants the commit signed.
#[test]
fn signed_tags_publish_in_tag_mode_over_git_daemon() {
    let up = Upstream::new();
    let key = SshKey::generate("ed25519");
    let a = up.commit_file("f", "a", "unsigned commit");
    up.tag_signed(&Signer::Ssh(&key), "v1", "release 1");
    let s = Scratch::new();
    let allowed = key_file(&s, "allowed_signers", key.allowed(COMMITTER));
    let daemon = GitDaemon::start(up.base());
    let url = daemon.url(up.name());
    let allowed = allowed.to_str().unwrap();
    let (status, stderr) = one_time(
        &s,
        &url,
        &[
            "--ref",
            "v1",
            "--verify-signatures=tag",
            "--verify-allowed-signers",
            allowed,
        ],
    );
    assert!(status.success(), "{stderr}");
    assert_eq!(s.published().as_deref(), Some(a.as_str()));

    let s = Scratch::new();
    let (status, stderr) = one_time(
        &s,
        &url,
        &[
            "--ref",
            "v1",
            "--verify-signatures=tag-and-head",
            "--verify-allowed-signers",
            allowed,
        ],
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("unsigned: the commit"), "{stderr}");
    let b = up.commit_signed(&Signer::Ssh(&key), "f", "b", "signed commit");
    up.tag_signed(&Signer::Ssh(&key), "v1", "release 2");
    let (status, stderr) = one_time(
        &s,
        &url,
        &[
            "--ref",
            "v1",
            "--verify-signatures=tag-and-head",
            "--verify-allowed-signers",
            allowed,
        ],
    );
    assert!(status.success(), "{stderr}");
    assert_eq!(s.published().as_deref(), Some(b.as_str()));
}

/// A rollback: `refs/tags/v2` moved to the signed tag object of `v1` (an
/// older release). The signature is valid but names the tag `v1`: refused.
#[test]
fn a_signed_tag_moved_under_another_name_is_refused() {
    let up = Upstream::new();
    let key = SshKey::generate("ed25519");
    up.commit_file("f", "old", "old release");
    let old_tag = up.tag_signed(&Signer::Ssh(&key), "v1", "release 1");
    up.commit_file("f", "new", "new release");
    up.git(&["update-ref", "refs/tags/v2", &old_tag]);
    let s = Scratch::new();
    let allowed = key_file(&s, "allowed_signers", key.allowed(COMMITTER));
    let allowed = allowed.to_str().unwrap();
    for git_ref in ["v2", "refs/tags/v2"] {
        let (status, stderr) = one_time(
            &s,
            &up.file_url(),
            &[
                "--ref",
                git_ref,
                "--verify-signatures=tag",
                "--verify-allowed-signers",
                allowed,
            ],
        );
        assert_eq!(status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(r#"the signed tag is named \"v1\""#), // JSON-escaped quotes
            "{stderr}"
        );
        assert_eq!(s.published(), None);
    }
    let (status, stderr) = one_time(
        &s,
        &up.file_url(),
        &[
            "--ref",
            "refs/tags/v1",
            "--verify-signatures=tag",
            "--verify-allowed-signers",
            allowed,
        ],
    );
    assert!(status.success(), "{stderr}");
}

/// Valid signature bytes from another commit grafted onto a commit, and a
/// signed commit whose content was edited afterwards: bad signatures. The
/// signed commit A stays published meanwhile.
#[test]
fn forged_and_modified_signatures_are_refused_and_the_old_content_stays() {
    let up = Upstream::new();
    let key = SshKey::generate("ed25519");
    let a = up.commit_signed(&Signer::Ssh(&key), "f", "a", "a");
    let s = Scratch::new();
    let mut args = os(&["--verify-signatures=head", "--verify-allowed-signers"]);
    args.push(key_file(&s, "allowed_signers", key.allowed(COMMITTER)).into_os_string());
    let (run, addr) = start(&s, &up.file_url(), &refs(&args));
    run.wait_for_link_hash(&s.link(), &a);

    // Forged: B's object with A's signature header.
    let b = up.commit_file("f", "b", "b");
    let forged = with_signature_header(
        &up.commit_object(&b),
        &signature_header(&up.commit_object(&a)),
    );
    let forged = up.write_commit_object(&forged);
    let st = wait_for_refusal(&run, &addr, &forged, "bad_signature");
    assert!(
        st["signature_refusal"]["key"]
            .as_str()
            .is_some_and(|k| k.starts_with("SHA256:")),
        "{st}"
    );
    assert_eq!(s.published().as_deref(), Some(a.as_str()));

    // Modified: a signed commit whose message was changed afterwards.
    // (Made with commit-tree, on no branch: on the synced one the valid C
    // could be published first.)
    let tree = up.rev_parse("HEAD^{tree}");
    let head = up.head();
    let c = up.git_signing(
        &Signer::Ssh(&key),
        &["commit-tree", "-S", "-p", &head, "-m", "c", &tree],
    );
    let edited = String::from_utf8(up.commit_object(&c))
        .expect("utf-8")
        .replace("\n\nc\n", "\n\nnot c\n");
    let modified = up.write_commit_object(edited.as_bytes());
    wait_for_refusal(&run, &addr, &modified, "bad_signature");
    assert_eq!(s.published().as_deref(), Some(a.as_str()));
    run.assert_running();
}

/// A key that is in no file, and (with --verify-committers) a key whose
/// principal is not the committer: refused.
#[test]
fn unknown_keys_and_committer_mismatches_are_refused() {
    let up = Upstream::new();
    let known = SshKey::generate("ed25519");
    let stranger = SshKey::generate("ed25519");
    let s = Scratch::new();
    let allowed = key_file(
        &s,
        "allowed_signers",
        known.allowed("someone-else@example.invalid"),
    );
    let allowed = allowed.to_str().unwrap();
    up.commit_signed(&Signer::Ssh(&stranger), "f", "a", "a");
    let (status, stderr) = one_time(
        &s,
        &up.file_url(),
        &[
            "--verify-signatures=head",
            "--verify-allowed-signers",
            allowed,
        ],
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("unknown key"), "{stderr}");

    let b = up.commit_signed(&Signer::Ssh(&known), "f", "b", "b");
    let (status, stderr) = one_time(
        &s,
        &up.file_url(),
        &[
            "--verify-signatures=head",
            "--verify-committers",
            "--verify-allowed-signers",
            allowed,
        ],
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("does not belong to the committer"),
        "{stderr}"
    );
    // Without --verify-committers the same signature counts.
    let (status, stderr) = one_time(
        &s,
        &up.file_url(),
        &[
            "--verify-signatures=head",
            "--verify-allowed-signers",
            allowed,
        ],
    );
    assert!(status.success(), "{stderr}");
    assert_eq!(s.published().as_deref(), Some(b.as_str()));
}

/// A commit signed by a key not yet allowed is refused; once the
/// allowed_signers file (a Secret) is updated, the same commit publishes
/// without a restart.
#[test]
fn a_rotated_allowed_signers_file_publishes_the_refused_commit_without_restart() {
    let up = Upstream::new();
    let old = SshKey::generate("ed25519");
    let new = SshKey::generate("ecdsa");
    let a = up.commit_signed(&Signer::Ssh(&old), "f", "a", "a");
    let s = Scratch::new();
    let allowed = key_file(&s, "allowed_signers", old.allowed(COMMITTER));
    let mut args = os(&["--verify-signatures=head", "--verify-allowed-signers"]);
    args.push(allowed.clone().into_os_string());
    let (run, addr) = start(&s, &up.file_url(), &refs(&args));
    run.wait_for_link_hash(&s.link(), &a);
    let b = up.commit_signed(&Signer::Ssh(&new), "f", "b", "b");
    wait_for_refusal(&run, &addr, &b, "unknown_key");
    assert_eq!(s.published().as_deref(), Some(a.as_str()));
    write_key_file(
        &allowed,
        format!("{}{}", old.allowed(COMMITTER), new.allowed(COMMITTER)),
    );
    run.wait_for_link_hash(&s.link(), &b);
    // The status is updated once the pass that moved the link returns.
    run.wait_until(DEADLINE, "the refusal leaves /status", || {
        status(&addr)["signature_refusal"].is_null()
    });
}

/// GitHub signs web merges with its "web-flow" key: allowed as a keyring
/// entry, a merge commit it signed publishes. A stand-in key with GitHub's
/// user ID plays that role (the real private key is GitHub's).
#[test]
fn merges_signed_by_a_web_flow_stand_in_key_publish() {
    let up = Upstream::new();
    up.commit_file("f", "a", "a");
    up.checkout_new("feature");
    up.commit_file("g", "feature", "feature");
    up.checkout("main");
    let gpg = Gpg::new();
    let web_flow = gpg.generate(
        "GitHub <noreply@github.com>",
        "rsa3072",
        "sign",
        "never",
        None,
    );
    up.git_signing(
        &Signer::Gpg(&gpg, &web_flow, None),
        &[
            "merge",
            "-q",
            "--no-ff",
            "-S",
            "-m",
            "Merge pull request #1 from feature",
            "feature",
        ],
    );
    let merge = up.head();
    let s = Scratch::new();
    let keyring = key_file(&s, "web-flow.gpg", gpg.export(&web_flow, true));
    let (status, stderr) = one_time(
        &s,
        &up.file_url(),
        &[
            "--verify-signatures=head",
            "--verify-pgp-keyring",
            keyring.to_str().unwrap(),
        ],
    );
    assert!(status.success(), "{stderr}");
    assert_eq!(s.published().as_deref(), Some(merge.as_str()));
}

/// `YYYYMMDDHHMMSSZ` (an allowed_signers time) of `secs` from now.
fn allowed_signers_time(secs: u64) -> String {
    let at = std::time::SystemTime::now() + std::time::Duration::from_secs(secs);
    let rfc3339 = humantime::format_rfc3339_seconds(at).to_string();
    let digits: String = rfc3339.chars().filter(char::is_ascii_digit).collect();
    format!("{digits}Z")
}

/// The stderr lines that contain `needle`.
fn log_lines(run: &Running, needle: &str) -> usize {
    run.stderr().lines().filter(|l| l.contains(needle)).count()
}

/// A commit signed by a key whose `valid-after` is a few seconds ahead is
/// refused as `expired`, checked again at each poll, and published once the
/// time has come, without a restart; the refusal is logged and counted once,
/// not at every poll (probe-9 F1: it waited for a restart).
#[test]
fn a_not_yet_valid_key_publishes_once_its_time_comes_without_restart() {
    let up = Upstream::new();
    let key = SshKey::generate("ed25519");
    let a = up.commit_signed(&Signer::Ssh(&key), "f", "a", "a");
    let s = Scratch::new();
    let line = format!(
        "{COMMITTER} valid-after=\"{}\" {}\n",
        allowed_signers_time(4),
        key.public
    );
    let allowed = key_file(&s, "allowed_signers", line);
    let mut args = os(&["--verify-signatures=head", "--verify-allowed-signers"]);
    args.push(allowed.into_os_string());
    let (run, addr) = start(&s, &up.file_url(), &refs(&args));
    let st = wait_for_refusal(&run, &addr, &a, "expired");
    assert!(
        st["signature_refusal"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("valid-after")),
        "{st}"
    );
    assert_eq!(s.published(), None);
    run.wait_for_link_hash(&s.link(), &a);
    run.wait_until(DEADLINE, "the refusal leaves /status", || {
        status(&addr)["signature_refusal"].is_null()
    });
    assert_eq!(verifications(&addr, "expired"), 1, "counted once");
    assert_eq!(verifications(&addr, "valid"), 1);
    assert_eq!(log_lines(&run, "signature refused"), 1, "{}", run.logs());
    assert_eq!(log_lines(&run, "signature verified"), 1, "{}", run.logs());
}

/// Half-made configurations do not start (probe-9 F7, F14): key files or
/// --verify-committers without a mode, and the tag mode on the default
/// --ref (HEAD, a branch); each message says what to add.
#[test]
fn half_configured_verification_fails_to_start() {
    let up = Upstream::new();
    up.commit_file("f", "a", "a");
    let s = Scratch::new();
    let key = SshKey::generate("ed25519");
    let allowed = key_file(&s, "allowed_signers", key.allowed(COMMITTER));
    let allowed = allowed.to_str().unwrap();
    let (status, stderr) = one_time(
        &s,
        &up.file_url(),
        &["--verify-allowed-signers", allowed, "--verify-committers"],
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("nothing would be verified")
            && stderr.contains("needs --verify-signatures"),
        "{stderr}"
    );
    assert_eq!(s.published(), None, "nothing unverified is published");
    let (status, stderr) = one_time(
        &s,
        &up.file_url(),
        &[
            "--verify-signatures=tag",
            "--verify-allowed-signers",
            allowed,
        ],
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("needs --ref to name an annotated tag"),
        "{stderr}"
    );
    assert_eq!(s.published(), None);
}

/// An allowed_signers file with a `cert-authority` line (understood, not
/// supported) and a plain line: the plain line's signer publishes, and the
/// skipped line is warned about once, naming the file and the line, not at
/// every poll (probe-9 F11: the whole file was refused).
#[test]
fn a_cert_authority_line_is_skipped_with_one_warning_and_the_others_publish() {
    let up = Upstream::new();
    let ca = SshKey::generate("ed25519");
    let alice = SshKey::generate("ed25519");
    let a = up.commit_signed(&Signer::Ssh(&alice), "f", "a", "a");
    let s = Scratch::new();
    let allowed = key_file(
        &s,
        "allowed_signers",
        format!(
            "*@example.com cert-authority {}\n{}",
            ca.public,
            alice.allowed(COMMITTER)
        ),
    );
    let path = allowed.to_str().unwrap().to_owned();
    let mut args = os(&["--verify-signatures=head", "--verify-allowed-signers"]);
    args.push(allowed.into_os_string());
    let (run, addr) = start(&s, &up.file_url(), &refs(&args));
    run.wait_for_link_hash(&s.link(), &a);
    // Two more signed commits: the file is parsed again for each.
    let b = up.commit_signed(&Signer::Ssh(&ca), "f", "b", "b");
    wait_for_refusal(&run, &addr, &b, "unknown_key");
    let c = up.commit_signed(&Signer::Ssh(&alice), "f", "c", "c");
    run.wait_for_link_hash(&s.link(), &c);
    let warned = run
        .stderr()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| {
            l["msg"] == "key file entry skipped; the file's other entries are used"
                && l["file"] == path.as_str()
                && l["entry"] == "line 1"
                && l["why"]
                    .as_str()
                    .is_some_and(|w| w.starts_with("cert-authority is not supported"))
        })
        .count();
    assert_eq!(warned, 1, "{}", run.logs());
}
