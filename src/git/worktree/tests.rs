//! Rewrites of a retired worktree into the next commit's, on a real
//! repository made by the git CLI: what the inspection sees, what the
//! prune keeps and removes, and when an inspection no longer describes the
//! tree it was taken of.

use super::*;
use crate::git::test_git::git;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

/// A repository whose commits are made by `edits`, each a closure on the
/// work tree; returns the repository and the commit ids.
struct Fixture {
    dir: tempfile::TempDir,
    commits: Vec<ObjectId>,
}

impl Fixture {
    fn new(edits: &[&dyn Fn(&Path)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let work = dir.path().join("src");
        fs::create_dir(&work).expect("mkdir");
        git(&work, &["init", "-q", "-b", "main"]);
        let mut commits = Vec::new();
        for (i, edit) in edits.iter().enumerate() {
            edit(&work);
            git(&work, &["add", "-A"]);
            git(
                &work,
                &["commit", "-q", "--allow-empty", "-m", &format!("c{i}")],
            );
            let id = git(&work, &["rev-parse", "HEAD"]);
            commits.push(ObjectId::from_hex(id.as_bytes()).expect("id"));
        }
        Self { dir, commits }
    }

    fn repo(&self) -> gix::Repository {
        gix::open(self.dir.path().join("src")).expect("open")
    }

    fn placement(&self, name: &str) -> Placement {
        Placement {
            staging: self.dir.path().join(format!("staging-{name}")),
            final_path: self.dir.path().join(format!("wt-{name}")),
            admin_dir: self.dir.path().join(format!("admin-{name}")),
        }
    }

    /// Commit `n` checked out in full at `placement("n")`, moved into place.
    fn checkout(&self, n: usize) -> Placement {
        let repo = self.repo();
        let place = self.placement(&n.to_string());
        let planned = plan(&repo, self.commits[n], SymlinkPolicy::Allow).expect("plan");
        materialize(&repo, planned, &place, &Budget::for_tests()).expect("checkout");
        fs::rename(&place.staging, &place.final_path).expect("install");
        place
    }

    /// Rewrites the worktree at `old` (inspected as `inspection`) into commit `n`.
    fn rewrite(&self, old: &Placement, inspection: Inspection, n: usize) -> (Placement, Built) {
        let repo = self.repo();
        let place = self.placement(&format!("{n}-from-old"));
        fs::rename(&old.final_path, &place.staging).expect("claim");
        let planned = plan(&repo, self.commits[n], SymlinkPolicy::Allow).expect("plan");
        let built = rewrite(
            &repo,
            planned,
            &place,
            inspection,
            None,
            &Budget::for_tests(),
        )
        .expect("rewrite");
        (place, built)
    }
}

/// Every path below `dir` (but `.git`), with a file's content or a link's target.
fn listing(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("read_dir") {
            let path = e.expect("entry").path();
            let rel = path.strip_prefix(dir).expect("below").display().to_string();
            if rel == ".git" {
                continue;
            }
            let meta = fs::symlink_metadata(&path).expect("lstat");
            if meta.file_type().is_symlink() {
                let target = fs::read_link(&path).expect("readlink");
                out.push((rel, format!("-> {}", target.display())));
            } else if meta.is_dir() {
                out.push((rel, "/".into()));
                stack.push(path);
            } else {
                out.push((rel, fs::read_to_string(&path).expect("read")));
            }
        }
    }
    out.sort();
    out
}

fn write(dir: &Path, rel: &str, content: &str) {
    let path = dir.join(rel);
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(path, content).expect("write");
}

/// Waits out the coarse clock: what the test writes now is older than the
/// walk that follows.
fn settle() {
    std::thread::sleep(COARSE_CLOCK * 2);
}

#[test]
fn a_rewrite_turns_the_old_tree_into_exactly_the_new_commit() {
    let f = Fixture::new(&[
        &|d| {
            write(d, "keep.txt", "keep\n");
            write(d, "change.txt", "one\n");
            write(d, "gone/a.txt", "a\n");
            write(d, "file-then-dir", "file\n");
            write(d, "dir-then-file/x.txt", "x\n");
            symlink("keep.txt", d.join("link")).expect("ln");
        },
        &|d| {
            write(d, "change.txt", "two\n");
            fs::remove_dir_all(d.join("gone")).expect("rm");
            fs::remove_file(d.join("file-then-dir")).expect("rm");
            write(d, "file-then-dir/y.txt", "y\n");
            fs::remove_dir_all(d.join("dir-then-file")).expect("rm");
            write(d, "dir-then-file", "now a file\n");
            fs::remove_file(d.join("link")).expect("rm");
            symlink("change.txt", d.join("link")).expect("ln");
            write(d, "new/deep/z.txt", "z\n");
        },
    ]);
    let old = f.checkout(0);
    let fresh = f.checkout(1);
    settle();
    // A consumer's file and a changed kept file in the old tree.
    write(&old.final_path, "cache/page.html", "consumer\n");
    fs::write(old.final_path.join("keep.txt"), "tampered\n").expect("w");
    let inspection = inspect(&old.final_path, &old.admin_dir, 2).expect("inspect");
    let (rewritten, built) = f.rewrite(&old, inspection, 1);
    assert_eq!(listing(&rewritten.staging), listing(&fresh.final_path));
    // keep.txt was tampered with and everything else changed: nothing kept.
    assert_eq!(built.kept, 0, "written {}", built.written);
    assert!(exact(
        &rewritten.staging,
        &read_index(&rewritten.admin_dir.join("index")).expect("index"),
        true,
        2
    ));
}

#[test]
fn untouched_unchanged_files_keep_their_inode() {
    let f = Fixture::new(&[
        &|d| {
            for i in 0..20 {
                write(d, &format!("d{}/f{i}.txt", i % 4), &format!("{i}\n"));
            }
        },
        &|d| write(d, "d0/f0.txt", "changed\n"),
    ]);
    let old = f.checkout(0);
    settle();
    let before = fs::metadata(old.final_path.join("d1/f1.txt"))
        .expect("lstat")
        .ino();
    let inspection = inspect(&old.final_path, &old.admin_dir, 2).expect("inspect");
    let (rewritten, built) = f.rewrite(&old, inspection, 1);
    assert_eq!(built.kept, 19);
    assert_eq!(built.written, 1);
    let after = fs::metadata(rewritten.staging.join("d1/f1.txt"))
        .expect("lstat")
        .ino();
    assert_eq!(before, after);
    assert_eq!(
        fs::read_to_string(rewritten.staging.join("d0/f0.txt")).expect("read"),
        "changed\n"
    );
}

#[test]
fn an_inspection_no_longer_describes_a_tree_changed_after_it() {
    type Change = fn(&Path, &Path);
    let cases: [(&str, Change); 8] = [
        ("a new file", |t, _| write(t, "d/new.txt", "x")),
        ("a removed file", |t, _| {
            fs::remove_file(t.join("d/e/f.txt")).expect("rm")
        }),
        ("a directory swapped for a link", |t, outside| {
            fs::rename(t.join("d/e"), outside.join("moved")).expect("mv");
            symlink(outside.join("moved"), t.join("d/e")).expect("ln");
        }),
        ("the whole tree swapped", |t, outside| {
            let copy = outside.join("copy");
            fs::rename(t, &copy).expect("mv");
            fs::create_dir_all(t.join("d/e")).expect("mkdir");
            fs::write(t.join("d/e/f.txt"), "f\n").expect("w");
        }),
        ("a file renamed", |t, _| {
            fs::rename(t.join("d/e/f.txt"), t.join("d/e/g.txt")).expect("mv")
        }),
        ("a new file, the directory's mtime set back", |t, _| {
            add_behind_mtime(&t.join("d/e"), "new.txt")
        }),
        (
            "a new file in the tree itself, its mtime set back",
            |t, _| add_behind_mtime(t, "new.txt"),
        ),
        (
            "a file in the tree itself replaced, its mtime set back",
            |t, outside| {
                let mtime = fs::metadata(t).and_then(|m| m.modified()).expect("mtime");
                fs::write(outside.join("other.txt"), "top\n").expect("write");
                fs::rename(outside.join("other.txt"), t.join("top.txt")).expect("mv");
                fs::File::open(t)
                    .and_then(|d| d.set_times(fs::FileTimes::new().set_modified(mtime)))
                    .expect("set the mtime back");
            },
        ),
    ];
    for (what, change) in cases {
        let f = Fixture::new(&[&|d| {
            write(d, "d/e/f.txt", "f\n");
            write(d, "top.txt", "top\n");
        }]);
        let old = f.checkout(0);
        let outside = f.dir.path().join("outside");
        fs::create_dir_all(&outside).expect("mkdir");
        settle();
        let mut inspection = inspect(&old.final_path, &old.admin_dir, 2).expect("inspect");
        assert!(
            inspection.still_describes(&old.final_path),
            "{what}: untouched"
        );
        // The claim's rename of the tree itself changes nothing it checks.
        let moved = f.dir.path().join("claimed");
        fs::rename(&old.final_path, &moved).expect("claim");
        assert!(inspection.still_describes(&moved), "{what}: renamed");
        settle();
        change(&moved, &outside);
        assert!(!inspection.still_describes(&moved), "{what}");
    }
}

/// Adds a file to `dir` and sets the directory's mtime back to what it
/// was, as `touch -r` or a careful tool can: only its ctime tells.
fn add_behind_mtime(dir: &Path, name: &str) {
    let mtime = fs::metadata(dir).and_then(|m| m.modified()).expect("mtime");
    fs::write(dir.join(name), "x").expect("write");
    fs::File::open(dir)
        .and_then(|d| d.set_times(fs::FileTimes::new().set_modified(mtime)))
        .expect("set the mtime back");
}

/// Nine directories (three, two in each), twelve files.
fn nine_dirs(d: &Path) {
    for i in 0..12 {
        let rel = format!("d{}/e{}/f{i}.txt", i % 3, i % 2);
        write(d, &rel, &format!("{i}\n"));
    }
}

/// Commit 0 checked out, rewritten into commit 1 (a change in `d0/e0`)
/// and moved into place, as the next run finds its spare: its index's
/// record lists the directories the rewrite left as they were.
fn rewritten_tree(f: &Fixture) -> Placement {
    let old = f.checkout(0);
    settle();
    let inspection = inspect(&old.final_path, &old.admin_dir, 2).expect("inspect");
    assert_eq!(
        inspection.trusted_dirs(),
        0,
        "a full checkout records nothing"
    );
    let (rewritten, _) = f.rewrite(&old, inspection, 1);
    fs::rename(&rewritten.staging, &rewritten.final_path).expect("install");
    settle();
    rewritten
}

#[test]
fn a_rewritten_tree_is_walked_without_reading_its_untouched_directories() {
    let f = Fixture::new(&[
        &nine_dirs,
        &|d| write(d, "d0/e0/f0.txt", "changed\n"),
        &|d| write(d, "d1/e1/f1.txt", "changed too\n"),
    ]);
    let place = rewritten_tree(&f);
    let inspection = inspect(&place.final_path, &place.admin_dir, 2).expect("inspect");
    // All but the top (always read) and d0/e0 (its file was replaced).
    assert_eq!(inspection.trusted_dirs(), 8);
    let (next, built) = f.rewrite(&place, inspection, 2);
    assert_eq!((built.written, built.kept), (1, 11));
    assert_eq!(listing(&next.staging), listing(&f.checkout(2).final_path));
}

/// A directory changed within a clock tick before the walk (a file made
/// and removed: clean, but its ctime recent) could change again without a
/// new ctime: it is not recorded, and the next walk reads it.
#[test]
fn a_directory_changed_just_before_the_walk_is_not_recorded() {
    let f = Fixture::new(&[
        &nine_dirs,
        &|d| write(d, "d0/e0/f0.txt", "changed\n"),
        &|d| write(d, "d0/e0/f0.txt", "changed again\n"),
    ]);
    let old = f.checkout(0);
    settle();
    write(&old.final_path, "d1/e1/tmp", "x");
    fs::remove_file(old.final_path.join("d1/e1/tmp")).expect("rm");
    let inspection = inspect(&old.final_path, &old.admin_dir, 2).expect("inspect");
    let (rewritten, _) = f.rewrite(&old, inspection, 1);
    fs::rename(&rewritten.staging, &rewritten.final_path).expect("install");
    settle();
    let inspection = inspect(&rewritten.final_path, &rewritten.admin_dir, 2).expect("inspect");
    // Not the top, d0/e0 (rewritten) or d1/e1 (changed just before).
    assert_eq!(inspection.trusted_dirs(), 7);
}

/// A directory the record trusts is read again once anything in it was
/// created, removed or renamed (even with its mtime set back); a file
/// written in place is still seen by its own `lstat`. Each tree rewritten
/// from there is exactly the next commit's.
#[test]
fn a_recorded_directory_changed_since_is_not_trusted() {
    type Change = fn(&Path);
    let cases: [(&str, Change, usize); 5] = [
        ("a new file", |t| write(t, "d1/e1/new.txt", "x"), 7),
        (
            "a new file, the mtime set back",
            |t| add_behind_mtime(&t.join("d1/e1"), "new.txt"),
            7,
        ),
        (
            "a removed file",
            |t| fs::remove_file(t.join("d2/e0/f2.txt")).expect("rm"),
            7,
        ),
        (
            "a directory replaced",
            |t| {
                fs::rename(t.join("d1/e1"), t.join("d1/old")).expect("mv");
                write(t, "d1/e1/f1.txt", "1\n");
                write(t, "d1/e1/stray.txt", "x");
            },
            6,
        ),
        (
            "a file written in place",
            |t| fs::write(t.join("d2/e0/f2.txt"), "other\n").expect("write"),
            8,
        ),
    ];
    for (what, change, trusted) in cases {
        let f = Fixture::new(&[
            &nine_dirs,
            &|d| write(d, "d0/e0/f0.txt", "changed\n"),
            &|d| write(d, "d0/e0/f0.txt", "changed again\n"),
        ]);
        let place = rewritten_tree(&f);
        change(&place.final_path);
        let inspection = inspect(&place.final_path, &place.admin_dir, 2).expect("inspect");
        assert_eq!(inspection.trusted_dirs(), trusted, "{what}");
        let (next, _) = f.rewrite(&place, inspection, 2);
        assert_eq!(
            listing(&next.staging),
            listing(&f.checkout(2).final_path),
            "{what}"
        );
    }
}

/// The park drops the spare's `.git` file, and a `--one-time` run that
/// follows closely walks the spare within the coarse clock of that: the
/// tree's own directory is listed again at the claim (names and inodes), so
/// its recent mtime does not void the inspection.
#[test]
fn a_spare_parked_just_before_the_walk_is_still_described_after_its_claim() {
    let f = Fixture::new(&[&|d| {
        write(d, "d/f.txt", "f\n");
        write(d, "top.txt", "top\n");
    }]);
    let old = f.checkout(0);
    settle();
    fs::remove_file(old.final_path.join(".git")).expect("the park drops .git");
    let mut inspection = inspect(&old.final_path, &old.admin_dir, 2).expect("inspect");
    let claimed = f.dir.path().join("claimed");
    fs::rename(&old.final_path, &claimed).expect("claim");
    assert!(inspection.still_describes(&claimed));
}

#[test]
fn a_tree_modified_just_before_the_walk_is_not_trusted_later() {
    let f = Fixture::new(&[&|d| write(d, "d/f.txt", "f\n")]);
    let old = f.checkout(0);
    // Modified within the coarse clock's tick before the walk: a later
    // change in the same tick could leave the mtime as recorded.
    write(&old.final_path, "d/late.txt", "x");
    let mut inspection = inspect(&old.final_path, &old.admin_dir, 2).expect("inspect");
    assert!(!inspection.still_describes(&old.final_path));
}

/// A watched inspection kept while idle ([`inspect_and_park`]) is used
/// again only if nothing in the tree changed and its index is the same;
/// a write of the same size, through a file opened before the walk, in
/// the same clock tick as the checkout (invisible to `lstat`), stops it,
/// and so does a new index. Resumed, it rewrites to an exact tree.
#[test]
fn a_parked_inspection_holds_only_while_nothing_changed() {
    let fixture = || {
        Fixture::new(&[
            &|d| {
                write(d, "d/e/f.txt", "f\n");
                write(d, "keep.txt", "k\n");
            },
            &|d| write(d, "d/e/f.txt", "F\n"),
        ])
    };
    let parked = |old: &Placement| {
        settle();
        inspect_and_park(&old.final_path, &old.admin_dir, 2)
            .expect("watched and inspected (the test's filesystem must support inotify)")
    };

    let f = fixture();
    let old = f.checkout(0);
    let resumed = parked(&old).resume().expect("nothing changed");
    let (new, built) = f.rewrite(&old, resumed, 1);
    assert_eq!(built.kept, 1, "keep.txt stays");
    assert_eq!(listing(&new.staging), listing(&f.checkout(1).final_path));

    let f = fixture();
    let old = f.checkout(0);
    let mut open = fs::File::options()
        .write(true)
        .open(old.final_path.join("keep.txt"))
        .expect("open");
    let idle = parked(&old);
    std::io::Write::write_all(&mut open, b"K\n").expect("write");
    assert!(idle.resume().is_err(), "an in-place write was not seen");

    let f = fixture();
    let old = f.checkout(0);
    let idle = parked(&old);
    let index_path = old.admin_dir.join("index");
    let index = read_index(&index_path).expect("index");
    let mut other = gix::index::File::from_state(index.into_parts().0, &index_path);
    other.entries_mut()[0].stat.size += 1;
    other.write(Default::default()).expect("write");
    assert!(idle.resume().is_err(), "another index was not noticed");
}

/// Planning from the index of another commit's worktree gives the index
/// [`plan`] makes from the tree alone, whatever changed between the two
/// (edits, additions in new directories, deletions, a file made a
/// directory and back, mode changes, links), in either direction.
#[test]
fn a_plan_from_another_commits_index_is_the_plan_from_its_tree() {
    let f = Fixture::new(&[
        &|d: &Path| {
            write(d, "a.txt", "a\n");
            write(d, "d/b.txt", "b\n");
            write(d, "d/e/run.sh", "#!/bin/sh\n");
            fs::set_permissions(d.join("d/e/run.sh"), fs::Permissions::from_mode(0o755))
                .expect("chmod");
            symlink("a.txt", d.join("link")).expect("symlink");
        },
        &|d: &Path| {
            write(d, "a.txt", "a2\n");
            write(d, "new/dir/f.txt", "f\n");
            fs::remove_file(d.join("d/b.txt")).expect("rm");
            fs::set_permissions(d.join("d/e/run.sh"), fs::Permissions::from_mode(0o644))
                .expect("chmod");
        },
        &|d: &Path| {
            fs::remove_dir_all(d.join("d/e")).expect("rm");
            write(d, "d/e", "now a file\n");
            symlink("d", d.join("link2")).expect("symlink");
            fs::remove_file(d.join("link")).expect("rm");
            write(d, "link", "a file where the link was\n");
        },
        &|d: &Path| {
            fs::remove_dir_all(d.join("new")).expect("rm");
            write(d, "new", "a file where the tree was\n");
            write(d, "a.txt", "a\n");
        },
        // Changes only: every entry stays where it is.
        &|d: &Path| {
            write(d, "a.txt", "a5\n");
            write(d, "link", "a file, changed\n");
        },
    ]);
    let repo = f.repo();
    let fields = |index: &gix::index::File| -> Vec<_> {
        index
            .entries()
            .iter()
            .map(|e| (e.path(index).to_owned(), e.id, e.mode, e.flags, e.stat))
            .collect()
    };
    for from in 0..f.commits.len() {
        let place = f.checkout(from);
        let base = inspect(&place.final_path, &place.admin_dir, 2).expect("inspect");
        for to in 0..f.commits.len() {
            let (base_commit, commit) = (f.commits[from], f.commits[to]);
            let derived = plan_from(&repo, &base, base_commit, commit, SymlinkPolicy::Allow)
                .expect("plan from the base");
            let direct = plan(&repo, commit, SymlinkPolicy::Allow).expect("plan");
            assert_eq!(
                fields(&derived.index),
                fields(&direct.index),
                "{from} -> {to}"
            );
            assert_eq!(derived.commit, direct.commit);
        }
    }
}

/// A new path that [`plan`] refuses is refused by [`plan_from`] too, with
/// the name; one it accepts is accepted.
#[test]
fn a_plan_from_another_index_refuses_the_unsafe_paths_plan_refuses() {
    let f = Fixture::new(&[&|d: &Path| write(d, "ok.txt", "ok\n")]);
    let work = f.dir.path().join("src");
    let blob = git(&work, &["rev-parse", "HEAD:ok.txt"]);
    let commit_with = |listing: String| {
        let tree = mktree(&work, &listing);
        let id = git(
            &work,
            &["commit-tree", &tree, "-p", "HEAD", "-m", "hostile"],
        );
        ObjectId::from_hex(id.as_bytes()).expect("id")
    };
    let place = f.checkout(0);
    let base = inspect(&place.final_path, &place.admin_dir, 2).expect("inspect");
    let repo = f.repo();
    let sub = |name: &str| mktree(&work, &format!("100644 blob {blob}\t{name}\n"));
    for (listing, name) in [
        (format!("100644 blob {blob}\t.git\n"), ".git"),
        (format!("100644 blob {blob}\tgit~1\n"), "git~1"),
        (format!("040000 tree {}\tdocs\n", sub(".GIT")), "docs/.GIT"),
        (format!("040000 tree {}\t..\n", sub("x")), ".."),
        (format!("100644 blob {blob}\tfine.txt\n"), ""),
    ] {
        let listing = format!("100644 blob {blob}\tok.txt\n{listing}");
        let commit = commit_with(listing);
        let direct = plan(&repo, commit, SymlinkPolicy::Allow);
        let derived = plan_from(&repo, &base, f.commits[0], commit, SymlinkPolicy::Allow);
        if name.is_empty() {
            assert!(direct.is_ok() && derived.is_ok());
            continue;
        }
        assert!(
            matches!(direct, Err(Error::UnsafePath { .. })),
            "{name}: plan accepted it"
        );
        match derived {
            Err(Error::UnsafePath { message, .. }) => {
                assert!(message.contains(name), "{name}: {message}")
            }
            Err(e) => panic!("{name}: {e}"),
            Ok(_) => panic!("{name}: accepted"),
        }
    }
}

/// `git mktree` of `listing` in the repository at `work`.
fn mktree(work: &Path, listing: &str) -> String {
    crate::git::test_git::git_with_input(work, &["mktree"], listing.as_bytes())
}

/// An index changed since we wrote it, here by a real `git add` of an
/// edited file run in the worktree (another blob, a valid checksum), is
/// not planned from: its change would be carried into the new tree. The
/// engine then reads the whole tree.
#[test]
fn an_index_rewritten_since_we_wrote_it_is_not_planned_from() {
    let f = Fixture::new(&[&|d: &Path| write(d, "a.txt", "a\n"), &|d: &Path| {
        write(d, "b.txt", "b\n")
    }]);
    let repo = f.repo();
    let place = f.checkout(0);
    // Where git looks for a linked worktree's admin files: below the
    // repository's own git dir, as in a root (`commondir` is `../..`).
    let linked = f.dir.path().join("src/.git/worktrees/wt-0");
    fs::create_dir_all(linked.parent().expect("parent")).expect("mkdir");
    fs::rename(&place.admin_dir, &linked).expect("move the admin dir");
    let dot_git = format!("gitdir: {}\n", linked.display());
    fs::write(place.final_path.join(".git"), dot_git).expect("point the worktree at it");
    write(&place.final_path, "a.txt", "edited\n");
    git(&place.final_path, &["add", "a.txt"]);
    fs::rename(&linked, &place.admin_dir).expect("move it back");
    let base = inspect(&place.final_path, &place.admin_dir, 2).expect("inspect");
    let planned = plan_from(
        &repo,
        &base,
        f.commits[0],
        f.commits[1],
        SymlinkPolicy::Allow,
    );
    assert!(
        matches!(planned, Err(Error::Commit { .. })),
        "planned from a changed index"
    );
}
