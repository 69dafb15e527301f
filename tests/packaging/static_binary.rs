//! The shipped static binary outside its image: copied into a distribution's
//! base image or run on a host (cron, CI runners), where the host's
//! `/etc/nsswitch.conf` decides how users and host names are looked up.
//! Debian's default lists `systemd` beside `files` for users and groups, and
//! a statically linked glibc program that loads such a module crashes.

use std::fs;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use crate::support::servers::GitDaemon;
use crate::support::sidecar::{describe_output, link_target_hash, Sidecar};
use crate::support::{Scratch, Upstream, LINK};

/// Where Debian's `libnss-systemd` puts its module.
const SYSTEMD_MODULE: [&str; 2] = [
    "/usr/lib/x86_64-linux-gnu/libnss_systemd.so.2",
    "/lib/x86_64-linux-gnu/libnss_systemd.so.2",
];

/// A container's arbitrary UID, with no `/etc/passwd` entry.
const UID: u32 = 54_323;

/// Debian's own lines for users and groups (the module is consulted for a
/// UID `files` does not know).
const NSSWITCH: &str =
    "passwd: files systemd\ngroup: files systemd\nshadow: files\nhosts: files dns\n";

/// No HOME and no passwd entry: whoever looks the home directory up (gix
/// does, for the user's git config) gets to the module. Before the static
/// build stopped consulting the host's modules, this died of SIGSEGV in
/// `libnss_systemd.so.2` at the first sync, with no log line.
#[test]
fn a_uid_without_a_passwd_entry_syncs_where_nsswitch_lists_the_systemd_module() {
    assert!(
        SYSTEMD_MODULE.iter().any(|p| Path::new(p).exists()),
        "no libnss_systemd.so.2 (Debian: apt-get install libnss-systemd)"
    );
    let passwd = fs::read_to_string("/etc/passwd").expect("reading /etc/passwd");
    assert!(
        !passwd
            .lines()
            .any(|l| l.split(':').nth(2) == Some(&UID.to_string())),
        "uid {UID} must have no passwd entry for this test"
    );
    let binary = super::image::build_static_binary();
    let up = Upstream::new();
    let head = up.commit_file("index.html", "hello\n", "first");
    let daemon = GitDaemon::start(up.base());

    let s = Scratch::new();
    fs::set_permissions(s.dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::create_dir(&s.root).expect("mkdir root");
    chown(&s.root, Some(UID), Some(UID)).expect("chown root");
    let nsswitch = s.dir.path().join("nsswitch.conf");
    fs::write(&nsswitch, NSSWITCH).expect("writing nsswitch.conf");

    let out = Sidecar::program(binary)
        .arg("--repo")
        .arg(daemon.url(up.name()))
        .arg("--root")
        .arg(&s.root)
        .args(["--link", LINK, "--one-time"])
        .user(UID, UID)
        .nsswitch_conf(&nsswitch)
        .current_dir(s.dir.path())
        .run(Duration::from_secs(60));
    assert!(out.status.success(), "{}", describe_output(&out));
    assert_eq!(
        link_target_hash(&s.root.join(LINK)).as_deref(),
        Some(head.as_str())
    );
}
