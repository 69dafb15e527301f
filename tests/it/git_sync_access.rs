//! Access as git-sync deployments have it (issue 13): a source repository
//! on a shared volume that another UID wrote, `--git-config` keys git-sync
//! hands to its git (any valid key), and cookies (`http.cookieFile`,
//! `--cookie-file`) sent to a server that requires them.

use std::fs;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::sidecar::describe_output;
use crate::support::*;

const RUN_TIMEOUT: Duration = Duration::from_secs(60);
/// The sidecar's arbitrary UID (a container's `runAsUser`, no passwd entry).
const UID: u32 = 54_321;
/// Whoever wrote the source repository (a CI job, another pod).
const OWNER: u32 = 54_322;

fn upstream() -> Upstream {
    let up = Upstream::new();
    up.commit_file("index.html", "hello\n", "initial");
    up
}

/// `chown -R uid:uid dir`, and everything readable (a shared volume).
fn give_to(dir: &Path, uid: u32) {
    for (rel, meta) in walk_tree(dir) {
        let path = dir.join(&rel);
        if !meta.file_type().is_symlink() {
            chown(&path, Some(uid), Some(uid)).expect("chown");
        }
    }
    chown(dir, Some(uid), Some(uid)).expect("chown");
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A scratch area whose root the sidecar's UID owns.
fn scratch_for_uid() -> Scratch {
    let s = Scratch::new();
    fs::set_permissions(s.dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::create_dir(&s.root).expect("mkdir root");
    chown(&s.root, Some(UID), Some(UID)).expect("chown root");
    s
}

fn assert_ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "must succeed\n{}",
        describe_output(out)
    );
}

/// git refuses a repository another UID owns ("detected dubious ownership");
/// git-sync passes `safe.directory` to its git, so the `git upload-pack` we
/// spawn must get it for the repository (and submodule) we were told to
/// fetch, whether `--repo` is a file:// URL or a plain path.
#[test]
fn a_local_repository_another_uid_owns_is_synced_by_an_unprivileged_uid() {
    let up = upstream();
    let sub = up.sibling("sub");
    let s1 = sub.commit_file("lib.txt", "lib\n", "sub");
    let modules = gitmodules(&[("lib", "lib", "../sub")]);
    let head = up.commit_gitlinks(&modules, &[("lib", &s1)], "add lib");
    give_to(up.base(), OWNER);

    for repo in [up.file_url(), up.path().display().to_string()] {
        let s = scratch_for_uid();
        let out = s
            .sidecar(&repo)
            .arg("--one-time")
            .user(UID, UID)
            .current_dir(s.dir.path())
            .run(RUN_TIMEOUT);
        assert_ok(&out);
        assert_eq!(s.published().as_deref(), Some(head.as_str()), "{repo}");
        assert_eq!(
            fs::read_to_string(s.link().join("lib/lib.txt"))
                .ok()
                .as_deref(),
            Some("lib\n"),
            "the submodule, owned by another UID too, is checked out"
        );
    }
}

/// git-sync's `--git-config` accepts any valid key and its git sees all of
/// them. Here: keys git-sidecar has no use for start fine, are named once at
/// start-up, reach the `git upload-pack` for file:// (`transfer.hideRefs`
/// hides the branch) and the git an exec hook runs (`git config --get`).
#[test]
fn every_git_config_key_reaches_upload_pack_and_the_hooks_git() {
    let up = upstream();
    let s = Scratch::new();
    let report = s.dir.path().join("hook-saw");
    let hook = s.dir.path().join("hook.sh");
    fs::write(
        &hook,
        format!(
            "#!/bin/sh\n{{ git config --get http.postBuffer; git config --get sect.key; \
             git config --get-all 'url.https://mirror.example/.insteadOf'; }} > {}\n",
            report.display()
        ),
    )
    .expect("write hook");
    fs::set_permissions(&hook, fs::Permissions::from_mode(0o755)).expect("chmod hook");
    let config =
        "http.postBuffer:524288000,sect.key:\"a,b\",\"url.https://mirror.example/.insteadOf\":https://x/";
    let out = s
        .sidecar(&up.file_url())
        .arg("--one-time")
        .arg(format!("--git-config={config}"))
        .arg("--exechook-command")
        .arg(&hook)
        .run(RUN_TIMEOUT);
    assert_ok(&out);
    assert_eq!(s.published(), Some(up.head()));
    assert_eq!(
        fs::read_to_string(&report).expect("the hook ran"),
        "524288000\na,b\nhttps://x/\n"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let named: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("no effect inside git-sidecar"))
        .collect();
    assert_eq!(named.len(), 1, "{stderr}");
    assert!(
        named[0].contains("http.postBuffer, sect.key, url.https://mirror.example/.insteadOf"),
        "{stderr}"
    );

    // The same pairs configure the upload-pack we spawn.
    let s = Scratch::new();
    let out = s
        .sidecar(&up.file_url())
        .args(["--one-time", "--ref", "main"])
        .arg("--git-config=transfer.hideRefs:refs/heads/main")
        .run(RUN_TIMEOUT);
    assert!(!out.status.success(), "{}", describe_output(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("couldn't find remote ref"),
        "{}",
        describe_output(&out)
    );
}

fn cookie_line(domain: &str, path: &str, name: &str, value: &str) -> String {
    format!("{domain}\tFALSE\t{path}\tFALSE\t0\t{name}\t{value}\n")
}

/// A server behind a cookie-authenticating front end (403 without the
/// session cookie). The cookie file is curl's Netscape format, as git reads
/// it for `http.cookieFile`; only cookies matching the host and path go out;
/// the file is read again at each sync (a rotated secret).
#[test]
fn http_cookie_file_cookies_reach_a_server_that_requires_them() {
    let up = upstream();
    let git = HttpGit::start(
        up.base(),
        HttpOpts {
            required_cookie: Some("session=c00kie".into()),
            ..Default::default()
        },
    );
    let s = Scratch::new();
    let jar = s.dir.path().join("cookies.txt");
    let write_jar = |extra: &str| {
        let text = format!(
            "# Netscape HTTP Cookie File\n{}{}{}{extra}",
            cookie_line("127.0.0.1", "/", "session", "c00kie"),
            cookie_line("elsewhere.example", "/", "leak", "no"),
            cookie_line("127.0.0.1", "/other-repo", "wrongpath", "no"),
        );
        fs::write(&jar, text).expect("write cookie file");
    };
    write_jar("");

    // Without cookies: refused (the server is real about it).
    let refused = Scratch::new();
    let out = refused
        .sidecar(&git.url(up.name()))
        .arg("--one-time")
        .run(RUN_TIMEOUT);
    assert!(!out.status.success(), "{}", describe_output(&out));

    let run = s
        .sidecar(&git.url(up.name()))
        .args(["--period", "200ms"])
        .arg(format!("--git-config=http.cookieFile:{}", jar.display()))
        .spawn();
    run.wait_for_link_hash(&s.link(), &up.head());
    let sent = git.cookies();
    assert!(!sent.is_empty());
    assert!(sent.iter().all(|c| c == "session=c00kie"), "{sent:?}");

    write_jar(&cookie_line("127.0.0.1", "/", "rotated", "2"));
    let next = up.commit_file("index.html", "two\n", "second");
    run.wait_for_link_hash(&s.link(), &next);
    run.wait_until(DEADLINE, "the rewritten cookie file is read", || {
        git.cookies()
            .iter()
            .any(|c| c.split("; ").any(|p| p == "rotated=2"))
    });
}

/// Removes git-sync's fixed cookie file (and the directory, if we made it).
struct FixedCookieFile {
    made_dir: Option<PathBuf>,
}

impl Drop for FixedCookieFile {
    fn drop(&mut self) {
        let _ = fs::remove_file("/etc/git-secret/cookie_file");
        if let Some(dir) = &self.made_dir {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// git-sync's `--cookie-file` is a switch for the fixed file
/// `/etc/git-secret/cookie_file` (a mounted Secret). The test writes that
/// file (CI runs as root) and removes it afterwards.
#[test]
fn the_cookie_file_switch_reads_the_git_secret_volume() {
    let dir = Path::new("/etc/git-secret");
    let file = dir.join("cookie_file");
    assert!(
        !file.exists(),
        "{} exists: this test writes it; remove it first",
        file.display()
    );
    let _cleanup = FixedCookieFile {
        made_dir: (!dir.exists()).then(|| dir.to_path_buf()),
    };
    fs::create_dir_all(dir).expect("mkdir /etc/git-secret (the test needs root)");
    fs::write(&file, cookie_line("127.0.0.1", "/", "session", "c00kie"))
        .expect("write the cookie file");

    let up = upstream();
    let git = HttpGit::start(
        up.base(),
        HttpOpts {
            required_cookie: Some("session=c00kie".into()),
            ..Default::default()
        },
    );
    let s = Scratch::new();
    let out = s
        .sidecar(&git.url(up.name()))
        .args(["--one-time", "--cookie-file"])
        .run(RUN_TIMEOUT);
    assert_ok(&out);
    assert_eq!(s.published(), Some(up.head()));
}

/// A fresh ext4 PersistentVolume mounted at `--root` holds `lost+found`,
/// root's own with mode 0700. A sidecar running as another UID can neither
/// read nor delete it: the root counts as empty with it, and it stays.
#[test]
fn lost_and_found_of_a_fresh_volume_is_left_alone() {
    let up = upstream();
    let s = scratch_for_uid();
    let lost = s.root.join("lost+found");
    fs::create_dir(&lost).expect("mkdir lost+found");
    fs::set_permissions(&lost, fs::Permissions::from_mode(0o700)).expect("chmod 0700");
    let out = s
        .sidecar(&up.file_url())
        .arg("--one-time")
        .user(UID, UID)
        .current_dir(s.dir.path())
        .run(RUN_TIMEOUT);
    assert_ok(&out);
    assert_eq!(s.published(), Some(up.head()));
    assert!(lost.is_dir(), "lost+found was removed");
}

/// `--link` in a directory this UID cannot write (root's, mode 0755): found
/// at start-up, naming the flag and the directory, not after every fetch and
/// checkout (each of which was undone, so every retry downloaded it again).
#[test]
fn a_link_directory_this_uid_cannot_write_is_refused_at_start_up() {
    let up = upstream();
    let s = scratch_for_uid();
    let theirs = s.dir.path().join("roots-only");
    fs::create_dir(&theirs).expect("mkdir");
    fs::set_permissions(&theirs, fs::Permissions::from_mode(0o755)).expect("chmod");
    let link = theirs.join("new/site");
    let out = s
        .sidecar(&up.file_url())
        .args(["--one-time", "--link"])
        .arg(&link)
        .user(UID, UID)
        .current_dir(s.dir.path())
        .run(RUN_TIMEOUT);
    let said = describe_output(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("--link (GITSYNC_LINK)")
            && said.contains(&format!(
                "{} is not writable by uid {UID}",
                theirs.display()
            )),
        "{said}"
    );
    assert!(!said.contains("sync failed"), "{said}");
}

/// A touch file another UID made (a pod that ran as another user before),
/// writable by this one (here: by everyone): its time is bumped, as `touch`
/// would; setting the mtime alone needs the file's owner.
#[test]
fn a_writable_touch_file_of_another_owner_is_touched() {
    use std::os::unix::fs::MetadataExt;
    let up = upstream();
    let s = scratch_for_uid();
    let touch = s.dir.path().join("touched");
    fs::write(&touch, "").expect("touch file");
    fs::set_permissions(&touch, fs::Permissions::from_mode(0o666)).expect("chmod");
    let old = filetime_of(&touch);
    let file = fs::File::options().write(true).open(&touch).expect("open");
    file.set_modified(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000))
        .expect("an old mtime");
    assert!(fs::metadata(&touch).expect("stat").mtime() < old);
    let out = s
        .sidecar(&up.file_url())
        .arg("--one-time")
        .arg("--touch-file")
        .arg(&touch)
        .user(UID, UID)
        .current_dir(s.dir.path())
        .run(RUN_TIMEOUT);
    assert_ok(&out);
    let said = describe_output(&out);
    assert!(!said.contains("could not touch"), "{said}");
    assert!(fs::metadata(&touch).expect("stat").mtime() >= old, "{said}");
}

fn filetime_of(path: &Path) -> i64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).expect("stat").mtime()
}

/// `--add-user` as git-sync does it, for a UID without a passwd entry
/// (OpenShift's arbitrary UIDs): the entry is appended, so the ssh of
/// `GIT_SSH_COMMAND` or of a hook finds one; where `/etc/passwd` cannot be
/// written the run goes on with a warning saying what will fail. The file
/// is a copy bound over `/etc/passwd` in a private mount namespace.
#[test]
fn add_user_appends_a_passwd_entry_as_git_sync_does() {
    let up = upstream();
    let tool = |name: &str| {
        crate::support::sshd::which(name)
            .unwrap_or_else(|| panic!("{name} not found: apt-get install util-linux"))
    };
    let script = r#"mount --make-rprivate / && mount --bind "$1" /etc/passwd &&
        exec "$2" --reuid="$3" --regid="$3" --clear-groups "$4" --repo "$5" --root "$6" --one-time --add-user"#;
    for writable in [true, false] {
        let s = scratch_for_uid();
        let passwd = s.dir.path().join("passwd");
        fs::copy("/etc/passwd", &passwd).expect("a copy of /etc/passwd");
        let mode = if writable { 0o666 } else { 0o644 };
        fs::set_permissions(&passwd, fs::Permissions::from_mode(mode)).expect("chmod");
        let out = crate::support::sidecar::Sidecar::program(tool("unshare"))
            .args(["--mount", "sh", "-c", script, "sh"])
            .arg(&passwd)
            .arg(tool("setpriv"))
            .arg(UID.to_string())
            .arg(crate::support::sidecar::bin())
            .arg(up.file_url())
            .arg(&s.root)
            .current_dir(s.dir.path())
            .run(RUN_TIMEOUT);
        assert_ok(&out);
        let said = describe_output(&out);
        let text = fs::read_to_string(&passwd).expect("passwd");
        let added = text.lines().any(|l| {
            l.starts_with(&format!("git-sync:x:{UID}:{UID}::")) && l.ends_with(":/sbin/nologin")
        });
        assert_eq!(added, writable, "{text}\n{said}");
        assert_eq!(
            said.contains("could not add a passwd entry"),
            !writable,
            "{said}"
        );
    }
}

/// A limit on processes and threads (RLIMIT_NPROC here; a pod's pids limit
/// or cgroup pids.max alike) reached before or during a sync: the sync
/// fails saying so, and nothing panics (tokio's first `spawn_blocking`
/// did, exit 101 with a backtrace; a reader thread's did, "a bug").
#[test]
fn a_process_and_thread_limit_fails_the_sync_cleanly() {
    let up = upstream();
    let prlimit = crate::support::sshd::which("prlimit")
        .expect("prlimit not found: apt-get install util-linux");
    for nproc in [1, 2, 3, 4] {
        let s = scratch_for_uid();
        let out = crate::support::sidecar::Sidecar::program(&prlimit)
            .arg(format!("--nproc={nproc}"))
            .arg(crate::support::sidecar::bin())
            .args(["--repo", &up.file_url(), "--root"])
            .arg(&s.root)
            .arg("--one-time")
            .user(UID, UID)
            .current_dir(s.dir.path())
            .run(RUN_TIMEOUT);
        let said = describe_output(&out);
        assert_eq!(out.status.code(), Some(1), "nproc {nproc}: {said}");
        assert!(!said.contains("panicked"), "nproc {nproc}: {said}");
        assert!(
            said.contains("the limit on processes and threads"),
            "nproc {nproc}: {said}"
        );
    }
}
