//! Tests of the OpenPGP verifier with keys and signatures made by the real
//! `gpg` (GnuPG), each key in its own temporary GNUPGHOME, signing the way
//! git does (`gpg -bsau KEY` over the object's bytes on stdin). The keys
//! are generated once per test process ([`fixture`]): generation is the
//! slow part.

use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::SystemTime;

use proptest::prelude::*;

use super::Keyring;
use crate::verify::{Accepted, Check, ObjectKind, Refusal, SignedObject, Trust};

/// A commit object as git hands it to gpg (the signature header removed).
const PAYLOAD: &[u8] = b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\
author Alice Example <alice@example.org> 1764800000 +0000\n\
committer Alice Example <alice@example.org> 1764800000 +0000\n\
\n\
Publish the new landing page\n";

/// Another commit by the same people.
const OTHER: &[u8] = b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\
author Alice Example <alice@example.org> 1764800100 +0000\n\
committer Alice Example <alice@example.org> 1764800100 +0000\n\
\n\
Replace the landing page with something else\n";

/// One GnuPG home directory (deleted, its agent stopped, when dropped).
struct Gpg {
    home: tempfile::TempDir,
}

impl Gpg {
    fn new() -> Self {
        let home = tempfile::Builder::new()
            .prefix("gpg-")
            .tempdir()
            .expect("tempdir");
        std::fs::set_permissions(
            home.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .expect("chmod");
        Gpg { home }
    }

    /// Runs gpg non-interactively (empty passphrases) and returns stdout.
    fn run(&self, args: &[&str], stdin: &[u8]) -> Vec<u8> {
        let mut child = Command::new("gpg")
            .env("GNUPGHOME", self.home.path())
            .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run gpg: {e}; install GnuPG (Debian/Ubuntu: apt-get install gnupg)")
            });
        let mut input = child.stdin.take().expect("stdin");
        std::io::Write::write_all(&mut input, stdin).expect("gpg stdin");
        drop(input);
        let out = child.wait_with_output().expect("gpg");
        assert!(
            out.status.success(),
            "gpg {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// `gpg --quick-gen-key`; returns the primary fingerprint.
    fn generate(
        &self,
        uid: &str,
        algo: &str,
        usage: &str,
        expire: &str,
        faked: Option<&str>,
    ) -> String {
        let mut args = Vec::new();
        if let Some(time) = faked {
            args.extend(["--faked-system-time", time]);
        }
        args.extend(["--quick-gen-key", uid, algo, usage, expire]);
        self.run(&args, b"");
        self.fingerprints(uid)[0].clone()
    }

    /// The fingerprints of `who`'s primary key and subkeys, in order.
    fn fingerprints(&self, who: &str) -> Vec<String> {
        let listing = self.run(&["--with-colons", "--list-keys", who], b"");
        String::from_utf8_lossy(&listing)
            .lines()
            .filter(|l| l.starts_with("fpr:"))
            .map(|l| l.split(':').nth(9).expect("fpr field").to_string())
            .collect()
    }

    /// A detached signature as git makes it (`-bsau`), armoured or binary.
    fn sign(&self, key: &str, payload: &[u8], extra: &[&str]) -> Vec<u8> {
        let mut args = extra.to_vec();
        args.extend(["--detach-sign", "--local-user", key]);
        self.run(&args, payload)
    }

    fn export(&self, armour: bool) -> Vec<u8> {
        if armour {
            self.run(&["--export", "--armor"], b"")
        } else {
            self.run(&["--export"], b"")
        }
    }

    /// Imports the revocation certificate gpg wrote at key generation
    /// (disarmed with a leading `:` so it is not imported by mistake).
    fn revoke(&self, fingerprint: &str) {
        let path = self
            .home
            .path()
            .join(format!("openpgp-revocs.d/{fingerprint}.rev"));
        let cert = std::fs::read_to_string(&path).expect("revocation certificate");
        self.run(
            &["--import"],
            cert.replace(":-----BEGIN", "-----BEGIN").as_bytes(),
        );
    }

    /// Revokes subkey number `n` (1-based) with `--edit-key`.
    fn revoke_subkey(&self, fingerprint: &str, n: usize) {
        let script = format!("key {n}\nrevkey\ny\n0\n\ny\nsave\n");
        self.run(
            &["--command-fd", "0", "--edit-key", fingerprint],
            script.as_bytes(),
        );
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "all"])
            .status();
    }
}

/// A key as the tests use it: its exports and signatures over [`PAYLOAD`].
struct Party {
    /// Primary key fingerprint (hex upper, as gpg prints it).
    fpr: String,
    /// The signing (sub)key's fingerprint.
    signer: String,
    armoured: Vec<u8>,
    binary: Vec<u8>,
    /// `gpg -bsa` over [`PAYLOAD`].
    sig: Vec<u8>,
}

struct Fixture {
    /// ed25519, `Alice Example <alice@example.org>`.
    alice: Party,
    /// Alice's signature over [`OTHER`] (a "forged" signature's source).
    alice_other: Vec<u8>,
    /// Alice's text-mode signature (`--textmode`) over [`PAYLOAD`].
    alice_text: Vec<u8>,
    /// Alice's binary signature (for mutations) over [`PAYLOAD`].
    alice_binary_sig: Vec<u8>,
    /// Alice's secret key, armoured and binary (for refusals).
    alice_secret: (Vec<u8>, Vec<u8>),
    /// RSA 3072, `GitHub <noreply@github.com>`: the stand-in for GitHub's
    /// web-flow key (the real one is RSA 4096).
    github: Party,
    /// ed25519 primary that may only certify, signing with an ed25519 subkey.
    carol: Party,
    /// Created 2020-01-01 with a one-day expiry, signed on that day.
    dave: Party,
    /// Signed, then revoked with gpg's own revocation certificate; the
    /// export from before the revocation is in `erin_before`.
    erin: Party,
    erin_before: Vec<u8>,
    /// A signature by carol's certify-only primary key (made by rPGP).
    carol_primary: Vec<u8>,
    /// Like carol, but the signing subkey is revoked after signing.
    frank: Party,
    /// ed25519 signing primary with an ed25519 authentication subkey; `sig`
    /// is made by rPGP with the authentication subkey (gpg refuses to),
    /// `grace_primary` by rPGP with the primary key.
    grace: Party,
    grace_primary: Vec<u8>,
    /// The GitHub stand-in's signature with `--digest-algo SHA1`.
    github_sha1: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        std::thread::scope(|s| {
            let alice = s.spawn(alice);
            let github = s.spawn(github);
            let carol = s.spawn(carol);
            let frank = s.spawn(|| with_subkey("Frank <frank@example.org>", true).0);
            let dave = s.spawn(dave);
            let erin = s.spawn(erin);
            let grace = s.spawn(grace);
            let (alice, alice_other, alice_text, alice_binary_sig, alice_secret) =
                alice.join().expect("alice");
            let (erin, erin_before) = erin.join().expect("erin");
            let (grace, grace_primary) = grace.join().expect("grace");
            let (carol, carol_primary) = carol.join().expect("carol");
            let (github, github_sha1) = github.join().expect("github");
            Fixture {
                alice,
                alice_other,
                alice_text,
                alice_binary_sig,
                alice_secret,
                github,
                github_sha1,
                grace,
                grace_primary,
                carol,
                carol_primary,
                dave: dave.join().expect("dave"),
                erin,
                erin_before,
                frank: frank.join().expect("frank"),
            }
        })
    })
}

fn party(gpg: &Gpg, fpr: String, signer: String, sig: Vec<u8>) -> Party {
    Party {
        fpr,
        signer,
        armoured: gpg.export(true),
        binary: gpg.export(false),
        sig,
    }
}

fn github() -> (Party, Vec<u8>) {
    let gpg = Gpg::new();
    let fpr = gpg.generate(
        "GitHub <noreply@github.com>",
        "rsa3072",
        "sign",
        "never",
        None,
    );
    let sig = gpg.sign(&fpr, PAYLOAD, &["--armor"]);
    let sha1 = gpg.sign(&fpr, PAYLOAD, &["--armor", "--digest-algo", "SHA1"]);
    (party(&gpg, fpr.clone(), fpr, sig), sha1)
}

/// A key whose authentication subkey signs a document: gpg will not, so
/// rPGP does it with the secret keys gpg exports (unprotected: empty
/// passphrase). The primary key's rPGP signature is the control.
fn grace() -> (Party, Vec<u8>) {
    use pgp::composed::{Deserializable, SignedSecretKey};
    let gpg = Gpg::new();
    let fpr = gpg.generate(
        "Grace <grace@example.org>",
        "ed25519",
        "sign",
        "never",
        None,
    );
    gpg.run(&["--quick-add-key", &fpr, "ed25519", "auth", "never"], b"");
    let auth = gpg.fingerprints(&fpr)[1].clone();
    let secret = gpg.run(&["--export-secret-keys"], b"");
    let secret = SignedSecretKey::from_bytes(&secret[..]).expect("gpg's secret key");
    let by_auth = rpgp_sign(&secret.secret_subkeys[0].key, PAYLOAD);
    let by_primary = rpgp_sign(&secret.primary_key, PAYLOAD);
    (party(&gpg, fpr, auth, by_auth), by_primary)
}

/// A binary document signature by `key` with the subpackets gpg writes.
fn rpgp_sign<K: pgp::types::SigningKey + pgp::types::KeyDetails>(
    key: &K,
    payload: &[u8],
) -> Vec<u8> {
    use pgp::composed::{ArmorOptions, DetachedSignature};
    use pgp::crypto::hash::HashAlgorithm;
    use pgp::packet::{SignatureConfig, SignatureType, Subpacket, SubpacketData};
    use pgp::types::{Password, Timestamp};
    let mut config = SignatureConfig::v4(
        SignatureType::Binary,
        key.algorithm(),
        HashAlgorithm::Sha256,
    );
    config.hashed_subpackets = vec![
        Subpacket::regular(SubpacketData::IssuerFingerprint(key.fingerprint())).expect("subpacket"),
        Subpacket::regular(SubpacketData::SignatureCreationTime(Timestamp::now()))
            .expect("subpacket"),
    ];
    config.unhashed_subpackets =
        vec![
            Subpacket::regular(SubpacketData::IssuerKeyId(key.legacy_key_id())).expect("subpacket"),
        ];
    let sig = config
        .sign(key, &Password::empty(), payload)
        .expect("rPGP signs");
    DetachedSignature::new(sig)
        .to_armored_bytes(ArmorOptions::default())
        .expect("armour")
}

#[allow(clippy::type_complexity)]
fn alice() -> (Party, Vec<u8>, Vec<u8>, Vec<u8>, (Vec<u8>, Vec<u8>)) {
    let gpg = Gpg::new();
    let fpr = gpg.generate(
        "Alice Example <alice@example.org>",
        "ed25519",
        "sign",
        "never",
        None,
    );
    let sig = gpg.sign(&fpr, PAYLOAD, &["--armor"]);
    let other = gpg.sign(&fpr, OTHER, &["--armor"]);
    let text = gpg.sign(&fpr, PAYLOAD, &["--armor", "--textmode"]);
    let binary = gpg.sign(&fpr, PAYLOAD, &[]);
    let secret = (
        gpg.run(&["--export-secret-keys", "--armor"], b""),
        gpg.run(&["--export-secret-keys"], b""),
    );
    (
        party(&gpg, fpr.clone(), fpr, sig),
        other,
        text,
        binary,
        secret,
    )
}

/// A certify-only primary key with a signing subkey that makes the
/// signature (gpg picks it for `-u PRIMARY`); the subkey revoked after
/// signing when `revoke`.
fn with_subkey(uid: &str, revoke: bool) -> (Party, Gpg) {
    let gpg = Gpg::new();
    let fpr = gpg.generate(uid, "ed25519", "cert", "never", None);
    gpg.run(&["--quick-add-key", &fpr, "ed25519", "sign", "never"], b"");
    let sub = gpg.fingerprints(&fpr)[1].clone();
    let sig = gpg.sign(&fpr, PAYLOAD, &["--armor"]);
    if revoke {
        gpg.revoke_subkey(&fpr, 1);
    }
    (party(&gpg, fpr, sub, sig), gpg)
}

/// Carol, and a signature by her primary key, which may only certify
/// (made by rPGP: gpg will not).
fn carol() -> (Party, Vec<u8>) {
    use pgp::composed::{Deserializable, SignedSecretKey};
    let (carol, gpg) = with_subkey("Carol <carol@example.org>", false);
    let secret = gpg.run(&["--export-secret-keys"], b"");
    let secret = SignedSecretKey::from_bytes(&secret[..]).expect("gpg's secret key");
    (carol, rpgp_sign(&secret.primary_key, PAYLOAD))
}

/// A key made on 2020-01-01 (gpg's faked clock) valid for one day, and a
/// signature made an hour later: good then, expired now.
fn dave() -> Party {
    let gpg = Gpg::new();
    let uid = "Dave <dave@example.org>";
    let fpr = gpg.generate(uid, "ed25519", "sign", "1d", Some("20200101T000000!"));
    let sig = gpg.sign(
        &fpr,
        PAYLOAD,
        &["--armor", "--faked-system-time", "20200101T010000!"],
    );
    party(&gpg, fpr.clone(), fpr, sig)
}

fn erin() -> (Party, Vec<u8>) {
    let gpg = Gpg::new();
    let fpr = gpg.generate("Erin <erin@example.org>", "ed25519", "sign", "never", None);
    let sig = gpg.sign(&fpr, PAYLOAD, &["--armor"]);
    let before = gpg.export(true);
    gpg.revoke(&fpr);
    (party(&gpg, fpr.clone(), fpr, sig), before)
}

fn keyring(files: &[&[u8]]) -> Keyring {
    let mut keyring = Keyring::default();
    for file in files {
        keyring.add_file(file).expect("keyring file");
    }
    keyring
}

fn now() -> SystemTime {
    SystemTime::now()
}

fn at(rfc3339: &str) -> SystemTime {
    humantime::parse_rfc3339(rfc3339).expect("time")
}

#[test]
fn ed25519_signature_by_an_armoured_key_is_accepted() {
    let f = fixture();
    let keys = keyring(&[&f.alice.armoured]);
    assert_eq!(
        keys.verify(PAYLOAD, &f.alice.sig, None, now()),
        Ok(Accepted {
            key: f.alice.fpr.clone(),
            signer: "Alice Example <alice@example.org>".into()
        })
    );
}

#[test]
fn rsa3072_signature_by_a_binary_key_is_accepted() {
    let f = fixture();
    let keys = keyring(&[&f.github.binary]);
    let accepted = keys
        .verify(PAYLOAD, &f.github.sig, None, now())
        .expect("accepted");
    assert_eq!(accepted.key, f.github.fpr);
}

/// GitHub signs merge commits and web edits with its web-flow key; the
/// operator allows them by adding GitHub's public key (here a stand-in RSA
/// key with GitHub's user ID) to the keyring.
#[test]
fn github_web_flow_stand_in_counts_once_its_key_is_in_the_keyring() {
    let f = fixture();
    let mut keys = keyring(&[&f.alice.armoured]);
    assert_eq!(
        keys.verify(PAYLOAD, &f.github.sig, None, now()),
        Err(Refusal::UnknownKey {
            key: f.github.fpr.clone()
        })
    );
    keys.add_file(&f.github.armoured).expect("web-flow key");
    assert_eq!(
        keys.verify(PAYLOAD, &f.github.sig, Some("noreply@github.com"), now()),
        Ok(Accepted {
            key: f.github.fpr.clone(),
            signer: "GitHub <noreply@github.com>".into()
        })
    );
}

#[test]
fn signing_subkey_counts_and_is_named() {
    let f = fixture();
    assert_ne!(f.carol.fpr, f.carol.signer, "gpg signed with the subkey");
    let keys = keyring(&[&f.carol.armoured]);
    assert_eq!(
        keys.verify(PAYLOAD, &f.carol.sig, Some("carol@example.org"), now()),
        Ok(Accepted {
            key: f.carol.signer.clone(),
            signer: "Carol <carol@example.org>".into()
        })
    );
}

#[test]
fn expired_key_is_refused_now_but_was_good_when_it_signed() {
    let f = fixture();
    let keys = keyring(&[&f.dave.armoured]);
    match keys.verify(PAYLOAD, &f.dave.sig, None, now()) {
        Err(Refusal::Expired { key, detail }) => {
            assert_eq!(key, f.dave.fpr);
            assert!(detail.contains("2020-01-02T00:00:00Z"), "{detail}");
        }
        other => panic!("expected Expired, got {other:?}"),
    }
    // The same checks at a time inside the key's day accept it: the
    // refusal above is about time, nothing else.
    let accepted = keys.verify(PAYLOAD, &f.dave.sig, None, at("2020-01-01T12:00:00Z"));
    assert_eq!(accepted.map(|a| a.key), Ok(f.dave.fpr.clone()));
}

#[test]
fn revoked_key_is_refused_even_when_an_older_copy_is_also_given() {
    let f = fixture();
    let before = keyring(&[&f.erin_before]);
    assert!(before.verify(PAYLOAD, &f.erin.sig, None, now()).is_ok());
    let revoked = Err(Refusal::Revoked {
        key: f.erin.fpr.clone(),
    });
    assert_eq!(
        keyring(&[&f.erin.armoured]).verify(PAYLOAD, &f.erin.sig, None, now()),
        revoked
    );
    // The revocation in one file wins over an unrevoked copy in another,
    // in either order.
    for files in [
        [&f.erin_before, &f.erin.binary],
        [&f.erin.binary, &f.erin_before],
    ] {
        let keys = keyring(&[files[0], files[1]]);
        assert_eq!(keys.len(), 1);
        assert_eq!(keys.verify(PAYLOAD, &f.erin.sig, None, now()), revoked);
    }
    // And within one file (two armour blocks), in either order.
    for (first, second) in [
        (&f.erin_before, &f.erin.armoured),
        (&f.erin.armoured, &f.erin_before),
    ] {
        let keys = keyring(&[&[first.as_slice(), second].concat()]);
        assert_eq!(keys.len(), 1);
        assert_eq!(keys.verify(PAYLOAD, &f.erin.sig, None, now()), revoked);
    }
}

#[test]
fn revoked_signing_subkey_is_refused() {
    let f = fixture();
    let keys = keyring(&[&f.frank.armoured]);
    assert_eq!(
        keys.verify(PAYLOAD, &f.frank.sig, None, now()),
        Err(Refusal::Revoked {
            key: f.frank.signer.clone()
        })
    );
}

/// Only subkeys whose binding gives them the signing flag count: an
/// authentication subkey's valid signature is refused, the primary's (made
/// the same way) accepted.
#[test]
fn subkey_without_the_signing_flag_does_not_count() {
    let f = fixture();
    let keys = keyring(&[&f.grace.armoured]);
    match keys.verify(PAYLOAD, &f.grace.sig, None, now()) {
        Err(Refusal::BadSignature { key, detail }) => {
            assert_eq!(key, f.grace.signer);
            assert!(
                detail.contains("may not sign") && detail.contains("key flags"),
                "{detail}"
            );
        }
        other => panic!("expected a refusal of the authentication subkey, got {other:?}"),
    }
    let accepted = keys.verify(PAYLOAD, &f.grace_primary, None, now());
    assert_eq!(accepted.map(|a| a.key), Ok(f.grace.fpr.clone()));
}

/// A self-signature or binding carrying a critical notation is no
/// signature to gpg ("unknown critical bit"; it lists the key or subkey as
/// invalid): a subkey whose only binding carries one may not sign (rPGP
/// makes its signature: gpg will not), the primary key still may; a key
/// whose only self-signature carries one is skipped, saying why, and the
/// file's other keys still count (probe-14 F3: one such key in the
/// keyring Secret stopped every sync).
#[test]
fn a_binding_or_self_signature_with_a_critical_notation_does_not_count() {
    use pgp::composed::{Deserializable, SignedSecretKey};
    let critical = ["--cert-notation", "!x@example.com=1"];
    let listed = |gpg: &Gpg, fpr: &str| {
        let listing = gpg.run(&["--with-colons", "--list-keys", fpr], b"");
        String::from_utf8_lossy(&listing).into_owned()
    };

    let gpg = Gpg::new();
    let fpr = gpg.generate("Ivan <ivan@example.org>", "ed25519", "sign", "never", None);
    let mut args = critical.to_vec();
    args.extend(["--quick-add-key", &fpr, "ed25519", "sign", "never"]);
    gpg.run(&args, b"");
    let sub = gpg.fingerprints(&fpr)[1].clone();
    assert!(
        listed(&gpg, &fpr).contains("\nsub:i:"),
        "{}",
        listed(&gpg, &fpr)
    );
    let secret = gpg.run(&["--export-secret-keys"], b"");
    let secret = SignedSecretKey::from_bytes(&secret[..]).expect("gpg's secret key");
    let keys = keyring(&[&gpg.export(true)]);
    let by_sub = rpgp_sign(&secret.secret_subkeys[0].key, PAYLOAD);
    match keys.verify(PAYLOAD, &by_sub, None, now()) {
        Err(Refusal::BadSignature { key, detail }) => {
            assert_eq!(key, sub);
            assert!(
                detail.contains("binding signature carries a critical notation x@example.com=1"),
                "{detail}"
            );
        }
        other => panic!("expected a refusal of the subkey, got {other:?}"),
    }
    let by_primary = gpg.sign(&format!("{fpr}!"), PAYLOAD, &["--armor"]);
    assert_eq!(
        keys.verify(PAYLOAD, &by_primary, None, now())
            .map(|a| a.key),
        Ok(fpr.clone())
    );

    // Revocations count whatever they carry: a user ID's, then the
    // subkey's (made valid again by a plain binding first).
    let old_uid = "Ivan Old <old@example.org>";
    gpg.run(&["--quick-add-uid", &fpr, old_uid], b"");
    let mut args = critical.to_vec();
    args.extend(["--quick-revoke-uid", &fpr, old_uid]);
    gpg.run(&args, b"");
    let keys = keyring(&[&gpg.export(true)]);
    assert_eq!(
        keys.verify(PAYLOAD, &by_primary, Some("old@example.org"), now()),
        Err(Refusal::CommitterMismatch {
            key: fpr.clone(),
            email: "old@example.org".into(),
            role: "committer",
        })
    );

    let gpg = Gpg::new();
    let mut args = critical.to_vec();
    args.extend([
        "--quick-gen-key",
        "Judy <judy@example.org>",
        "ed25519",
        "sign",
        "never",
    ]);
    gpg.run(&args, b"");
    let fpr = gpg.fingerprints("Judy")[0].clone();
    assert!(
        listed(&gpg, &fpr).contains("\npub:i:"),
        "{}",
        listed(&gpg, &fpr)
    );
    // gpg will not sign with it ("unusable secret key"); rPGP does.
    let secret = gpg.run(&["--export-secret-keys"], b"");
    let secret = SignedSecretKey::from_bytes(&secret[..]).expect("gpg's secret key");
    let by_judy = rpgp_sign(&secret.primary_key, PAYLOAD);
    let f = fixture();
    let mut file = gpg.export(true);
    file.extend_from_slice(&f.alice.armoured);
    let mut keys = Keyring::default();
    let skipped = keys.add_file(&file).expect("Alice's key is used");
    assert_eq!(keys.len(), 1);
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    let (entry, why) = &skipped[0];
    assert_eq!(entry, &format!("key {fpr} (\"Judy <judy@example.org>\")"));
    assert!(
        why.contains("self-signature carries a critical notation x@example.com=1"),
        "{why}"
    );
    assert!(keys.verify(PAYLOAD, &f.alice.sig, None, now()).is_ok());
    assert_eq!(
        keys.verify(PAYLOAD, &by_judy, None, now()),
        Err(Refusal::UnknownKey { key: fpr })
    );
}

/// A revoked key whose only remaining self-signature carries a critical
/// notation refuses its file: skipped, its revocation would not count
/// against another copy of the key in a later file, which would then be
/// taken unrevoked (found by review).
#[test]
fn a_revoked_key_left_with_a_void_self_signature_refuses_its_file() {
    let gpg = Gpg::new();
    let fpr = gpg.generate("Lee <lee@example.org>", "ed25519", "sign", "never", None);
    gpg.run(
        &[
            "--cert-notation",
            "!x@example.com=1",
            "--quick-add-uid",
            &fpr,
            "Lee Two <lee2@example.org>",
        ],
        b"",
    );
    gpg.revoke(&fpr);
    let mut key = parse_public(&gpg.export(true));
    // Only the user ID whose self-signature is void is left.
    key.details
        .users
        .retain(|u| u.id.id().starts_with(b"Lee Two"));
    assert_eq!(key.details.users.len(), 1);
    assert!(!key.details.revocation_signatures.is_empty());
    let err = add_error(&armoured(&key));
    assert!(err.contains("critical notation x@example.com=1"), "{err}");
    assert!(err.contains("the key is revoked"), "{err}");
}

fn parse_public(armoured: &[u8]) -> pgp::composed::SignedPublicKey {
    use pgp::composed::{Deserializable, SignedPublicKey};
    SignedPublicKey::from_armor_single(armoured)
        .expect("gpg's public key")
        .0
}

fn armoured(key: &pgp::composed::SignedPublicKey) -> Vec<u8> {
    key.to_armored_bytes(pgp::composed::ArmorOptions::default())
        .expect("armour")
}

/// A key whose user IDs carry only someone else's certifications (here
/// the GitHub stand-in's user ID and signatures grafted onto Alice's key)
/// is bound to nobody: the file is refused.
#[test]
fn key_without_a_valid_self_signature_is_refused() {
    let f = fixture();
    let mut alice = parse_public(&f.alice.armoured);
    alice.details.users = parse_public(&f.github.armoured).details.users;
    let err = add_error(&armoured(&alice));
    assert!(err.starts_with(&format!("key {} (", f.alice.fpr)), "{err}");
    assert!(err.contains("): it has no valid self-signature"), "{err}");
}

/// Someone who grafts Carol's signing subkey (with its binding signature by
/// Carol's primary key) onto Alice's key does not get Carol's signatures
/// accepted as Alice's: the binding does not verify with Alice's key.
#[test]
fn subkey_grafted_onto_another_key_does_not_count() {
    let f = fixture();
    let mut alice = parse_public(&f.alice.armoured);
    alice.public_subkeys = parse_public(&f.carol.armoured).public_subkeys;
    let keys = keyring(&[&armoured(&alice)]);
    match keys.verify(PAYLOAD, &f.carol.sig, None, now()) {
        Err(Refusal::BadSignature { key, detail }) => {
            assert_eq!(key, f.carol.signer);
            assert!(detail.contains("no valid binding signature"), "{detail}");
        }
        other => panic!("expected a refusal of the grafted subkey, got {other:?}"),
    }
}

/// A primary key whose self-signature gives it only the certification
/// flag (gpg's `cert` usage) does not count for documents either.
#[test]
fn certify_only_primary_key_does_not_count() {
    let f = fixture();
    let keys = keyring(&[&f.carol.armoured]);
    match keys.verify(PAYLOAD, &f.carol_primary, None, now()) {
        Err(Refusal::BadSignature { key, detail }) => {
            assert_eq!(key, f.carol.fpr);
            assert!(detail.contains("may not sign"), "{detail}");
        }
        other => panic!("expected a refusal of the certify-only key, got {other:?}"),
    }
}

#[test]
fn sha1_signature_is_refused() {
    let f = fixture();
    let keys = keyring(&[&f.github.armoured]);
    let refusal = keys.verify(PAYLOAD, &f.github_sha1, None, now());
    assert!(
        matches!(&refusal, Err(Refusal::Unsupported(why)) if why.contains("SHA1")),
        "{refusal:?}"
    );
}

#[test]
fn signature_of_another_commit_is_bad() {
    let f = fixture();
    let keys = keyring(&[&f.alice.armoured]);
    match keys.verify(PAYLOAD, &f.alice_other, None, now()) {
        Err(Refusal::BadSignature { key, .. }) => assert_eq!(key, f.alice.fpr),
        other => panic!("expected BadSignature, got {other:?}"),
    }
}

#[test]
fn modified_payload_is_bad() {
    let f = fixture();
    let keys = keyring(&[&f.alice.armoured, &f.github.armoured]);
    let modified = String::from_utf8_lossy(PAYLOAD).replace("landing", "landlng");
    for sig in [&f.alice.sig, &f.github.sig] {
        let refusal = keys.verify(modified.as_bytes(), sig, None, now());
        assert!(
            matches!(refusal, Err(Refusal::BadSignature { .. })),
            "{refusal:?}"
        );
    }
}

#[test]
fn unknown_key_is_named_by_fingerprint() {
    let f = fixture();
    let keys = keyring(&[&f.github.armoured, &f.carol.binary]);
    assert_eq!(
        keys.verify(PAYLOAD, &f.alice.sig, None, now()),
        Err(Refusal::UnknownKey {
            key: f.alice.fpr.clone()
        })
    );
}

#[test]
fn committer_email_must_be_a_user_id_of_the_key() {
    let f = fixture();
    let keys = keyring(&[&f.alice.armoured]);
    assert_eq!(
        keys.verify(PAYLOAD, &f.alice.sig, Some("mallory@example.org"), now()),
        Err(Refusal::CommitterMismatch {
            key: f.alice.fpr.clone(),
            email: "mallory@example.org".into(),
            role: "committer",
        })
    );
    let accepted = keys.verify(PAYLOAD, &f.alice.sig, Some("Alice@EXAMPLE.org"), now());
    assert_eq!(
        accepted.map(|a| a.signer),
        Ok("Alice Example <alice@example.org>".into())
    );
}

#[test]
fn text_mode_signature_is_accepted() {
    let f = fixture();
    let keys = keyring(&[&f.alice.armoured]);
    assert!(keys.verify(PAYLOAD, &f.alice_text, None, now()).is_ok());
}

#[test]
fn trust_routes_pgp_armour_to_the_keyring() {
    let f = fixture();
    let trust = Trust {
        pgp: keyring(&[&f.alice.armoured]),
        ..Trust::default()
    };
    let object = SignedObject {
        kind: ObjectKind::Commit,
        id: "0".repeat(40),
        payload: PAYLOAD.to_vec(),
        signature: Some(f.alice.sig.clone()),
        signer_email: Some("alice@example.org".into()),
    };
    let check = Check {
        require_signer_email: true,
        now: now(),
    };
    assert_eq!(
        trust.verify(&object, check).map(|a| a.key),
        Ok(f.alice.fpr.clone())
    );
    // A tag without a tagger line names nobody the key could belong to.
    let untagged = SignedObject {
        kind: ObjectKind::Tag,
        signer_email: None,
        ..object
    };
    match trust.verify(&untagged, check) {
        Err(refusal @ Refusal::CommitterMismatch { .. }) => {
            assert_eq!(refusal.key(), Some(f.alice.fpr.as_str()));
            assert!(
                refusal
                    .to_string()
                    .contains("the tagger (none: the tag has no tagger"),
                "{refusal}"
            );
        }
        other => panic!("expected a committer mismatch, got {other:?}"),
    }
    // A tag signed by a key of another person: the tagger is named as such
    // (probe-9 F16: it said "committer").
    let other_tagger = SignedObject {
        kind: ObjectKind::Tag,
        signer_email: Some("mallory@example.org".into()),
        ..untagged.clone()
    };
    match trust.verify(&other_tagger, check) {
        Err(refusal @ Refusal::CommitterMismatch { .. }) => assert!(
            refusal
                .to_string()
                .contains("does not belong to the tagger mallory@example.org"),
            "{refusal}"
        ),
        other => panic!("expected a tagger mismatch, got {other:?}"),
    }
    let lenient = Check {
        require_signer_email: false,
        ..check
    };
    assert!(trust.verify(&untagged, lenient).is_ok());
}

#[test]
fn several_keys_in_one_armour_and_several_armour_blocks() {
    let f = fixture();
    // One armour holding two keys: gpg exports everything it has.
    let gpg = Gpg::new();
    gpg.run(&["--import"], &f.alice.binary);
    gpg.run(&["--import"], &f.github.binary);
    let both = gpg.export(true);
    assert_eq!(
        String::from_utf8_lossy(&both).matches("-----BEGIN").count(),
        1
    );
    let keys = keyring(&[&both]);
    assert_eq!(keys.len(), 2);
    // Two armour blocks with text around them, as people paste them.
    let mut pasted = b"Alice's key:\n".to_vec();
    pasted.extend_from_slice(&f.alice.armoured);
    pasted.extend_from_slice(b"\nand the web-flow key:\n\n");
    pasted.extend_from_slice(&f.github.armoured);
    // With CRLF line ends (a Secret made from a file edited on Windows).
    let pasted = String::from_utf8(pasted)
        .expect("armour is text")
        .replace('\n', "\r\n");
    let pasted = keyring(&[pasted.as_bytes()]);
    assert_eq!(pasted.len(), 2);
    for keys in [keys, pasted] {
        assert!(keys.verify(PAYLOAD, &f.alice.sig, None, now()).is_ok());
        assert!(keys.verify(PAYLOAD, &f.github.sig, None, now()).is_ok());
    }
}

fn add_error(bytes: &[u8]) -> String {
    let mut keys = Keyring::default();
    let err = keys.add_file(bytes).expect_err("refused");
    assert!(keys.is_empty(), "a refused file adds nothing");
    err.0
}

#[test]
fn secret_keys_are_refused_without_using_them() {
    let f = fixture();
    let (armoured, binary) = &f.alice_secret;
    for file in [armoured, binary] {
        let err = add_error(file);
        assert!(
            err.contains("this is a secret key; give the public key: gpg --export --armor KEYID"),
            "{err}"
        );
    }
    // A secret block after a good public one refuses the whole file.
    let mut mixed = f.github.armoured.clone();
    mixed.extend_from_slice(armoured);
    assert!(add_error(&mixed).contains("secret key"));
}

#[test]
fn files_without_a_usable_key_say_what_is_wrong() {
    let f = fixture();
    assert!(add_error(b"").contains("empty"));
    assert!(add_error(b"  \n").contains("empty"));
    assert!(add_error(b"hello\n").contains("no -----BEGIN PGP PUBLIC KEY BLOCK-----"));
    assert!(add_error(b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA alice\n")
        .contains("--verify-allowed-signers"));
    assert!(add_error(&f.alice.sig).contains("(PGP SIGNATURE) is not a public key block"));
    assert!(add_error(&f.alice_binary_sig).contains("holds no public key"));
    assert!(add_error(&[0x99, 0x00, 0x05, 1, 2]).contains("binary keyring"));
    let truncated = &f.alice.armoured[..f.alice.armoured.len() / 2];
    let err = add_error(truncated);
    assert!(
        err.starts_with("armour block 1 (PGP PUBLIC KEY BLOCK)"),
        "{err}"
    );
}

#[test]
fn malformed_signatures_are_refused_as_such() {
    let f = fixture();
    let keys = keyring(&[&f.alice.armoured]);
    let garbage =
        b"-----BEGIN PGP SIGNATURE-----\n\nnot base64 at all\n-----END PGP SIGNATURE-----\n";
    for sig in [&garbage[..], &f.alice.armoured, &f.alice_binary_sig, b""] {
        let refusal = keys.verify(PAYLOAD, sig, None, now());
        assert!(matches!(refusal, Err(Refusal::Malformed(_))), "{refusal:?}");
    }
}

/// Flips, inserts or deletes bytes of `base` at the proptest's positions.
fn mutate(base: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut bytes = base.to_vec();
    for &(pos, kind, value) in edits {
        let pos = pos % (bytes.len() + 1);
        match kind % 3 {
            0 if pos < bytes.len() => bytes[pos] ^= value | 1,
            1 => bytes.insert(pos, value),
            _ if pos < bytes.len() => {
                bytes.remove(pos);
            }
            _ => {}
        }
    }
    bytes
}

fn armour_signature(binary: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(binary);
    format!("-----BEGIN PGP SIGNATURE-----\n\n{body}\n-----END PGP SIGNATURE-----\n").into_bytes()
}

fn edits() -> impl Strategy<Value = Vec<(usize, u8, u8)>> {
    prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// Arbitrary bytes as a keyring file or a signature: an error, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Err(e) = Keyring::default().add_file(&bytes) {
            prop_assert!(!has_debug_dump(&e.0), "{}", e.0);
        }
        let keys = keyring(&[&fixture().alice.armoured]);
        for sig in [bytes.clone(), armour_signature(&bytes)] {
            if let Err(refusal) = keys.verify(PAYLOAD, &sig, None, now()) {
                prop_assert!(!has_debug_dump(&refusal.to_string()), "{}", refusal);
            }
        }
    }

    /// Valid keyrings (armoured and binary) with a few bytes flipped,
    /// inserted or removed: an error or fewer keys, never a panic; when the
    /// result is accepted, the key is the one that signed.
    #[test]
    fn mutated_keyrings_never_panic(edits in edits(), which in 0usize..4) {
        let f = fixture();
        let base = [&f.alice.armoured, &f.alice.binary, &f.carol.binary, &f.github.binary][which];
        let mut keys = Keyring::default();
        let added = keys.add_file(&mutate(base, &edits));
        if let Err(e) = &added {
            prop_assert!(!has_debug_dump(&e.0), "{}", e.0);
        }
        if added.is_ok() {
            for sig in [&f.alice.sig, &f.carol.sig, &f.github.sig] {
                if let Ok(accepted) = keys.verify(PAYLOAD, sig, None, now()) {
                    prop_assert!([&f.alice.fpr, &f.carol.signer, &f.github.fpr].contains(&&accepted.key));
                }
            }
        }
    }

    /// Valid signatures with a few bytes changed (in the armour, or in the
    /// packet, re-armoured): refused or, if the change missed everything
    /// signed (e.g. the unhashed issuer subpacket), still Alice's.
    #[test]
    fn mutated_signatures_never_panic(edits in edits(), packet in any::<bool>()) {
        let f = fixture();
        let keys = keyring(&[&f.alice.armoured, &f.github.binary]);
        let sig = if packet {
            armour_signature(&mutate(&f.alice_binary_sig, &edits))
        } else {
            mutate(&f.alice.sig, &edits)
        };
        if let Ok(accepted) = keys.verify(PAYLOAD, &sig, None, now()) {
            prop_assert_eq!(accepted.key, f.alice.fpr.clone());
        }
    }
}

/// Whether an error text carries a Rust `Debug` dump (a struct, a backtrace).
/// A mutation proptest found (CI, 2026-12-06): rPGP's error for a bad
/// revocation class came through with its `Debug` dump.
#[test]
fn a_bad_revocation_class_is_said_without_a_dump() {
    let f = fixture();
    let mut keys = Keyring::default();
    let edits = [(7085714255838058686usize, 91u8, 12u8)];
    let err = keys
        .add_file(&mutate(&f.alice.binary, &edits))
        .expect_err("refused");
    assert!(!has_debug_dump(&err.0), "{}", err.0);
}

fn has_debug_dump(text: &str) -> bool {
    text.contains(" { ")
        || text.to_ascii_lowercase().contains("backtrace")
        || super::struct_start(text).is_some()
        || text.contains('\n')
}

/// A signature by a key of the same home with `extra` gpg options.
fn signed_with(gpg: &Gpg, key: &str, extra: &[&str]) -> Vec<u8> {
    let mut args = vec!["--armor"];
    args.extend_from_slice(extra);
    gpg.sign(key, PAYLOAD, &args)
}

/// A critical notation the verifier does not know makes gpg (and git)
/// call the signature bad; it is refused as `unsupported`, naming the
/// notation. A non-critical notation, or a critical subpacket that is
/// understood (gpg makes the creation time critical), changes nothing
/// (probe-9 F2).
#[test]
fn a_critical_notation_is_refused_and_a_plain_one_is_not() {
    let gpg = Gpg::new();
    let fpr = gpg.generate(
        "Heidi <heidi@example.org>",
        "ed25519",
        "sign",
        "never",
        None,
    );
    let keys = keyring(&[&gpg.export(true)]);
    let critical = signed_with(&gpg, &fpr, &["--sig-notation", "!critical@example.com=x"]);
    let refusal = keys
        .verify(PAYLOAD, &critical, None, now())
        .expect_err("a critical notation");
    assert_eq!(refusal.label(), "unsupported", "{refusal}");
    assert!(
        refusal
            .to_string()
            .contains("carries a critical notation critical@example.com=x"),
        "{refusal}"
    );
    for extra in [
        &["--sig-notation", "note@example.com=y"][..],
        &["--sig-policy-url", "!https://example.com/policy"],
        &[],
    ] {
        let sig = signed_with(&gpg, &fpr, extra);
        assert_eq!(
            keys.verify(PAYLOAD, &sig, None, now()).map(|a| a.key),
            Ok(fpr.clone()),
            "{extra:?}"
        );
    }
}

/// A signature whose own expiration time has passed is refused as
/// `expired`, worded as the signature's expiry, not the key's (probe-9
/// F16); inside its lifetime it is good.
#[test]
fn an_expired_signature_is_named_as_such() {
    let gpg = Gpg::new();
    let uid = "Ivan <ivan@example.org>";
    let fpr = gpg.generate(uid, "ed25519", "sign", "never", Some("20190101T000000!"));
    let keys = keyring(&[&gpg.export(true)]);
    let sig = signed_with(
        &gpg,
        &fpr,
        &[
            "--faked-system-time",
            "20200101T000000!",
            "--default-sig-expire",
            "1d",
        ],
    );
    let refusal = keys
        .verify(PAYLOAD, &sig, None, now())
        .expect_err("expired");
    assert_eq!(
        refusal,
        Refusal::SignatureExpired {
            key: fpr.clone(),
            at: "2020-01-02T00:00:00Z".into()
        }
    );
    assert_eq!(refusal.label(), "expired");
    assert!(
        refusal.to_string().starts_with(&format!(
            "the signature by key {fpr} expired at 2020-01-02T00:00:00Z"
        )),
        "{refusal}"
    );
    assert!(!refusal.to_string().contains("key {fpr} is expired"));
    let accepted = keys.verify(PAYLOAD, &sig, None, at("2020-01-01T12:00:00Z"));
    assert_eq!(accepted.map(|a| a.key), Ok(fpr));
}

/// `sig` with S set to the low (`high` false) or the high half's value of
/// the same signature: (r, s) and (r, n − s) are both valid ECDSA.
fn with_s(sig: &pgp::packet::Signature, high: bool) -> pgp::packet::Signature {
    use pgp::types::{Mpi, SignatureBytes};
    let Some(SignatureBytes::Mpis(mpis)) = sig.signature() else {
        panic!("an ECDSA signature")
    };
    let field = |m: &Mpi| {
        let b: &[u8] = m.as_ref();
        let mut f = k256::FieldBytes::default();
        f[32 - b.len()..].copy_from_slice(b);
        f
    };
    let ecdsa = k256::ecdsa::Signature::from_scalars(field(&mpis[0]), field(&mpis[1]))
        .expect("an (r, s) pair");
    let low = ecdsa.normalize_s().unwrap_or(ecdsa);
    let (r, s) = low.split_bytes();
    let s = if high { (-*low.s()).to_bytes() } else { s };
    pgp::packet::Signature::from_config(
        sig.config().expect("v4").clone(),
        sig.signed_hash_value().expect("v4"),
        SignatureBytes::Mpis(vec![Mpi::from_slice(&r), Mpi::from_slice(&s)]),
    )
    .expect("a signature")
}

fn armour_detached(sig: pgp::packet::Signature) -> Vec<u8> {
    use pgp::composed::{ArmorOptions, DetachedSignature};
    DetachedSignature::new(sig)
        .to_armored_bytes(ArmorOptions::default())
        .expect("armour")
}

/// secp256k1: gpg's signatures and self-signatures are accepted whichever
/// half S falls in (k256 alone refuses a high S: half of gpg's signatures
/// were called forgeries and such keys refused, probe-9 F3); a signature
/// of other content is still bad with either S.
#[test]
fn secp256k1_signatures_verify_with_a_high_or_a_low_s() {
    use pgp::composed::{Deserializable, DetachedSignature};
    let gpg = Gpg::new();
    let fpr = gpg.generate(
        "Kim <kim@example.org>",
        "secp256k1",
        "sign,cert",
        "never",
        None,
    );
    let key = parse_public(&gpg.export(true));
    let sig = gpg.sign(&fpr, PAYLOAD, &["--armor"]);
    let sig = DetachedSignature::from_armor_single(&sig[..])
        .expect("gpg's signature")
        .0
        .signature;
    for self_high in [false, true] {
        let mut key = key.clone();
        for user in &mut key.details.users {
            user.signatures = user
                .signatures
                .iter()
                .map(|s| with_s(s, self_high))
                .collect();
        }
        let keys = keyring(&[&armoured(&key)]);
        for high in [false, true] {
            let variant = armour_detached(with_s(&sig, high));
            assert_eq!(
                keys.verify(PAYLOAD, &variant, None, now()).map(|a| a.key),
                Ok(fpr.clone()),
                "self-signature S high: {self_high}, signature S high: {high}"
            );
            let refusal = keys
                .verify(OTHER, &variant, None, now())
                .expect_err("other content");
            assert_eq!(refusal.label(), "bad_signature", "{refusal}");
        }
    }
    // The revocation counts whichever half its S is in (ignoring a high S
    // would accept a revoked key).
    gpg.revoke(&fpr);
    let revoked = parse_public(&gpg.export(true));
    for high in [false, true] {
        let mut key = revoked.clone();
        key.details.revocation_signatures = key
            .details
            .revocation_signatures
            .iter()
            .map(|s| with_s(s, high))
            .collect();
        let keys = keyring(&[&armoured(&key)]);
        let sig = armour_detached(with_s(&sig, high));
        assert_eq!(
            keys.verify(PAYLOAD, &sig, None, now()),
            Err(Refusal::Revoked { key: fpr.clone() }),
            "revocation S high: {high}"
        );
    }
}

/// A secp256k1 signing subkey whose back-signature (made by the subkey,
/// inside the hashed binding, so it cannot be rewritten here) has a high S
/// counts, and so does its binding signature with either S.
#[test]
fn a_secp256k1_subkey_with_a_high_s_back_signature_signs() {
    let gpg = Gpg::new();
    let fpr = gpg.generate("Lee <lee@example.org>", "secp256k1", "cert", "never", None);
    let high_back = |key: &pgp::composed::SignedPublicKey| {
        let binding = &key.public_subkeys.last().expect("a subkey").signatures[0];
        let back = binding.embedded_signature().expect("a back-signature");
        with_s(back, true).signature() == back.signature()
    };
    let mut key = parse_public(&gpg.export(true));
    // gpg's S is in either half at random: add subkeys until one is high.
    for _ in 0..24 {
        gpg.run(
            &["--quick-add-key", &fpr, "secp256k1/ecdsa", "sign", "never"],
            b"",
        );
        key = parse_public(&gpg.export(true));
        if high_back(&key) {
            break;
        }
    }
    assert!(high_back(&key), "no high-S back-signature in 24 subkeys");
    let subkey = gpg.fingerprints(&fpr).pop().expect("the newest subkey");
    // `!`: this very subkey (gpg picks among same-second subkeys otherwise).
    let sig = gpg.sign(&format!("{subkey}!"), PAYLOAD, &["--armor"]);
    let sig =
        <pgp::composed::DetachedSignature as pgp::composed::Deserializable>::from_armor_single(
            &sig[..],
        )
        .expect("gpg's signature")
        .0
        .signature;
    for (binding_high, high) in [(false, false), (true, false), (false, true)] {
        let mut key = key.clone();
        for sub in &mut key.public_subkeys {
            sub.signatures = sub
                .signatures
                .iter()
                .map(|s| with_s(s, binding_high))
                .collect();
        }
        let keys = keyring(&[&armoured(&key)]);
        let sig = armour_detached(with_s(&sig, high));
        assert_eq!(
            keys.verify(PAYLOAD, &sig, None, now()).map(|a| a.key),
            Ok(subkey.clone()),
            "binding S high: {binding_high}, signature S high: {high}"
        );
    }
}

/// A key of an algorithm rPGP cannot check (brainpool) is skipped with a
/// reason naming it; the file's other keys still count, and the skipped
/// key's signatures are refused (probe-9 F9).
#[test]
fn a_key_of_an_unsupported_algorithm_is_skipped_and_the_others_count() {
    let f = fixture();
    let gpg = Gpg::new();
    let uid = "Bea <bea@example.org>";
    let bea = gpg.generate(uid, "brainpoolP256r1", "sign,cert", "never", None);
    let bea_sig = gpg.sign(&bea, PAYLOAD, &["--armor"]);
    let mut file = gpg.export(true);
    file.extend_from_slice(&f.alice.armoured);
    let mut keys = Keyring::default();
    let skipped = keys.add_file(&file).expect("the other key is used");
    assert_eq!(keys.len(), 1);
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    let (entry, why) = &skipped[0];
    assert_eq!(entry, &format!("key {bea} (\"{uid}\")"));
    assert_eq!(why, "brainpoolP256r1 keys are not supported");
    assert!(keys.verify(PAYLOAD, &f.alice.sig, None, now()).is_ok());
    let refusal = keys
        .verify(PAYLOAD, &bea_sig, None, now())
        .expect_err("skipped");
    assert_eq!(refusal, Refusal::UnknownKey { key: bea });
    // Through the key files: the skipped key is reported with its file.
    let files = crate::verify::KeyFiles(vec![crate::verify::KeyFile {
        kind: crate::verify::KeyFileKind::PgpKeyring,
        name: "/keys/team.asc".into(),
        bytes: file,
    }]);
    let trust = files.trust().expect("usable");
    assert_eq!(trust.skipped.len(), 1);
    // A brainpool signing subkey of a supported primary key: its signature
    // is unsupported, not a forgery.
    let fpr = gpg.generate("Cy <cy@example.org>", "ed25519", "sign,cert", "never", None);
    gpg.run(
        &[
            "--quick-add-key",
            &fpr,
            "brainpoolP256r1/ecdsa",
            "sign",
            "never",
        ],
        b"",
    );
    let subkey = gpg.fingerprints(&fpr).pop().expect("the subkey");
    let sig = gpg.sign(&format!("{subkey}!"), PAYLOAD, &["--armor"]);
    let keys = keyring(&[&gpg.export(true)]);
    let refusal = keys
        .verify(PAYLOAD, &sig, None, now())
        .expect_err("unsupported");
    assert_eq!(
        refusal,
        Refusal::Unsupported(format!(
            "signed by subkey {subkey}: brainpoolP256r1 keys are not supported"
        ))
    );
    assert_eq!(
        trust.skipped[0].to_string(),
        format!(
            "/keys/team.asc: key {} (\"{uid}\") is skipped: brainpoolP256r1 keys are not \
             supported; the file's other entries are used",
            trust.skipped[0]
                .entry
                .split(' ')
                .nth(1)
                .expect("a fingerprint")
        )
    );
}

/// What `curl https://github.com/<user>.gpg` returns for a user without
/// GPG keys.
const GITHUB_NO_KEYS: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\
Note: This user hasn't uploaded any GPG keys.\n\
\n\
=twTO\n\
-----END PGP PUBLIC KEY BLOCK-----\n";

/// GitHub's placeholder block is skipped with a warning, alone or among
/// real keys (probe-9 F10: the whole keyring was refused).
#[test]
fn githubs_placeholder_for_a_user_without_keys_is_skipped() {
    let f = fixture();
    let mut file = f.alice.armoured.clone();
    file.extend_from_slice(GITHUB_NO_KEYS.as_bytes());
    file.extend_from_slice(&f.github.armoured);
    let mut keys = Keyring::default();
    let skipped = keys.add_file(&file).expect("the keys are used");
    assert_eq!(keys.len(), 2);
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].0, "armour block 2");
    assert!(
        skipped[0].1.contains("GitHub's placeholder"),
        "{:?}",
        skipped[0]
    );
    assert!(keys.verify(PAYLOAD, &f.github.sig, None, now()).is_ok());
    let mut alone = Keyring::default();
    assert_eq!(
        alone.add_file(GITHUB_NO_KEYS.as_bytes()).map(|s| s.len()),
        Ok(1)
    );
    assert!(alone.is_empty());
    // An empty block without GitHub's note is still an error.
    let empty = GITHUB_NO_KEYS.replace("Note: This user hasn't uploaded any GPG keys.\n", "");
    assert!(add_error(empty.as_bytes()).contains("holds no public key"));
}

/// Files mistaken for a keyring are named for what they are, with what to
/// do, and no message carries a Rust `Debug` dump (probe-9 F10).
#[test]
fn files_mistaken_for_a_keyring_say_what_they_are() {
    let f = fixture();
    let gpg = Gpg::new();
    let fpr = gpg.generate("Rev <rev@example.org>", "ed25519", "sign", "never", None);
    let rev = std::fs::read_to_string(gpg.home.path().join(format!("openpgp-revocs.d/{fpr}.rev")))
        .expect("gpg's revocation certificate");
    let err = add_error(rev.as_bytes());
    assert!(err.contains("a revocation certificate"), "{err}");
    let armed = rev.replace(":-----", "-----");
    let err = add_error(armed.as_bytes());
    assert!(
        err.starts_with("armour block 1 (PGP PUBLIC KEY BLOCK) is a revocation certificate"),
        "{err}"
    );
    assert!(err.contains("gpg --import"), "{err}");
    let keybox = std::fs::read(gpg.home.path().join("pubring.kbx")).expect("gpg's keybox");
    let err = add_error(&keybox);
    assert!(err.contains("gpg's keybox (pubring.kbx)"), "{err}");
    // `cat key.gpg key.asc`: binary, then armour.
    let mut mixed = f.alice.binary.clone();
    mixed.extend_from_slice(&f.github.armoured);
    let err = add_error(&mixed);
    assert!(err.contains("followed by ASCII armour"), "{err}");
    let mut trailing = f.alice.binary.clone();
    trailing.extend_from_slice(b"trailing words\n");
    for err in [err, add_error(&trailing)] {
        assert!(!has_debug_dump(&err), "{err}");
    }
    // The same files given to --verify-allowed-signers.
    for (bytes, says) in [
        (keybox, "gpg's keybox"),
        (f.alice.binary.clone(), "binary OpenPGP data"),
    ] {
        let files = crate::verify::KeyFiles(vec![crate::verify::KeyFile {
            kind: crate::verify::KeyFileKind::AllowedSigners,
            name: "/keys/allowed_signers".into(),
            bytes,
        }]);
        let err = files.trust().expect_err("not allowed_signers").to_string();
        assert!(
            err.contains(says) && err.contains("--verify-pgp-keyring"),
            "{err}"
        );
    }
}

/// rPGP formats some inner errors with `{:?}`: only the words are kept.
#[test]
fn rpgp_debug_dumps_are_cut_to_their_message() {
    let dump = "error while parsing composed key: IO { source: Custom { kind: InvalidInput, \
                error: \"unknown packet header version 101101\" }, backtrace: Some(Backtrace \
                [{ fn: \"<pgp::errors::Error as core::convert::From<std::io::error::Error>>::from\" }]) }";
    assert_eq!(
        super::plain(dump),
        "error while parsing composed key: unknown packet header version 101101"
    );
    assert_eq!(super::plain("invalid input"), "invalid input");
    assert_eq!(
        super::plain("Invalid Packet Content Message { x: 1 }"),
        "Invalid Packet Content"
    );
    assert_eq!(
        super::plain("invalid revocation class: TryFromPrimitiveError { number: 27 }"),
        "invalid revocation class"
    );
    assert_eq!(
        super::plain("Unexpected Packet type InvalidTag(15)"),
        "Unexpected Packet type InvalidTag(15)"
    );
    assert_eq!(
        super::plain("failed reading: armor footer Error(Error { input: [100, 109], code: Tag })"),
        "failed reading: armor footer"
    );
    assert_eq!(
        super::plain("Unsupported: curve brainpoolP256r1 for ECDSA"),
        "Unsupported: curve brainpoolP256r1 for ECDSA"
    );
}
