//! `--verify-signatures` in the real engine: a refusal writes nothing, is
//! remembered for (commit, key files) without fetching the commit again,
//! and is forgotten when the ref moves or a key file changes; the `tag`
//! modes refuse a branch. Plus the (ignored) timing of a verification.

use super::*;
use crate::verify::{Mode, Refusal, Settings};

/// The packs of the root's store: (name, inode), sorted.
fn packs(f: &Fixture) -> Vec<(String, u64)> {
    let mut packs: Vec<(String, u64)> = fs::read_dir(f.root().join(".git/objects/pack"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
                .map(|e| {
                    let ino = e.metadata().map(|m| m.ino()).unwrap_or(0);
                    (e.file_name().to_string_lossy().into_owned(), ino)
                })
                .collect()
        })
        .unwrap_or_default();
    packs.sort();
    packs
}

fn verifying(f: &Fixture, mode: Mode, key_file: &Path) -> Options {
    let mut opts = f.options();
    opts.verify = Settings {
        mode,
        allowed_signers: vec![key_file.to_path_buf()],
        pgp_keyrings: Vec::new(),
        committers: false,
    };
    opts
}

/// (fresh, refusal, refused commit) of a pass that must be refused.
fn refused(e: &mut Engine) -> (bool, Refusal, CommitHash) {
    match e.sync_once(&budget()) {
        Err(Error::Refused {
            fresh,
            refused,
            hash,
            published,
        }) => {
            assert_eq!(published, None, "nothing was published");
            (fresh, refused.refusal, hash)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn an_unsigned_commit_is_refused_once_remembered_and_retried_when_ref_or_keys_change() {
    let f = Fixture::new();
    let a = f.commit("a");
    let keys = f.dir.path().join("allowed_signers");
    fs::write(&keys, "# no keys yet\n").expect("write");
    let mut e = engine(verifying(&f, Mode::Head, &keys));

    assert_eq!(
        refused(&mut e),
        (true, Refusal::Unsigned("commit"), a.clone())
    );
    assert_eq!(e.layout().current(), None);
    assert!(
        !f.root().join(".worktrees").join(a.as_str()).exists() && leftovers_of(&f).is_empty(),
        "nothing of the refused commit is written: {:?}",
        leftovers_of(&f)
    );
    let kept = packs(&f);
    assert!(!kept.is_empty(), "the refused commit's objects are kept");

    // Same commit, same keys: remembered, and not fetched again.
    assert_eq!(
        refused(&mut e),
        (false, Refusal::Unsigned("commit"), a.clone())
    );
    assert_eq!(
        packs(&f),
        kept,
        "not downloaded again for a remembered refusal"
    );

    // A key file changes: verified again.
    fs::write(&keys, "# still no keys\n").expect("write");
    assert_eq!(
        refused(&mut e),
        (true, Refusal::Unsigned("commit"), a.clone())
    );
    assert!(!refused(&mut e).0, "remembered again");

    // The ref moves: the new commit is verified at once.
    let b = f.commit("b");
    assert_eq!(refused(&mut e), (true, Refusal::Unsigned("commit"), b));
}

#[test]
fn tag_modes_refuse_a_branch_after_the_fetch() {
    let f = Fixture::new();
    let a = f.commit("a");
    let keys = f.dir.path().join("allowed_signers");
    fs::write(&keys, "").expect("write");
    for mode in [Mode::Tag, Mode::TagAndHead] {
        let mut e = engine(verifying(&f, mode, &keys));
        assert_eq!(
            refused(&mut e),
            (true, Refusal::NotATag, a.clone()),
            "{mode:?}"
        );
        let metrics = e.metrics.encode();
        assert!(
            metrics.contains("git_sidecar_signature_verifications_total{result=\"not_a_tag\"} 1"),
            "{metrics}"
        );
        drop(e);
    }
}

#[test]
fn mode_none_reads_no_key_file() {
    let f = Fixture::new();
    let a = f.commit("a");
    let mut e = engine(verifying(&f, Mode::None, Path::new("/nonexistent/keys")));
    let outcome = e
        .sync_once(&budget())
        .expect("published without verification");
    assert_eq!(outcome.hash(), &a);
}

fn leftovers_of(f: &Fixture) -> Vec<String> {
    fs::read_dir(f.root().join(".worktrees"))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}
