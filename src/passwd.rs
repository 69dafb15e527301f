//! `--add-user`, as git-sync does it: a UID without an `/etc/passwd` entry
//! (OpenShift's arbitrary UIDs) gets `git-sync:x:<uid>:<gid>::<home>:/sbin/nologin`
//! appended. Our built-in SSH client needs no entry; OpenSSH does, so
//! `GIT_SSH_COMMAND=ssh` and hooks that run ssh fail without one ("No user
//! exists for uid ..."). An image whose `/etc/passwd` cannot be written
//! gets a warning saying what then fails, not a fatal error.

use std::io::Write;
use std::path::Path;

/// The file git-sync appends to.
pub const PASSWD: &str = "/etc/passwd";

/// Appends the entry to `passwd` unless the UID has one there already.
pub fn add_user_if_missing(passwd: &Path) {
    let (uid, gid) = (
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    );
    let text = std::fs::read_to_string(passwd).unwrap_or_default();
    if has_entry(&text, uid) {
        tracing::debug!(uid, "--add-user: this UID has a passwd entry already");
        return;
    }
    let line = entry(uid, gid, &home());
    match append(passwd, &text, &line) {
        Ok(()) => {
            tracing::info!(uid, gid, file = %passwd.display(), "--add-user: added a passwd entry for this UID")
        }
        Err(e) => tracing::warn!(
            uid,
            file = %passwd.display(),
            error = %e,
            "--add-user: could not add a passwd entry for this UID; the built-in SSH client needs \
             none, but GIT_SSH_COMMAND's ssh (and ssh run by hooks) will fail with \"No user \
             exists for uid\": make the file writable in the image, or run with a UID it lists"
        ),
    }
}

/// `$HOME`, else the working directory, as git-sync takes it.
fn home() -> String {
    std::env::var("HOME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::env::current_dir()
                .ok()
                .map(|d| d.display().to_string())
        })
        .unwrap_or_else(|| "/".to_string())
}

/// git-sync's line.
fn entry(uid: u32, gid: u32, home: &str) -> String {
    format!("git-sync:x:{uid}:{gid}::{home}:/sbin/nologin\n")
}

/// Whether a line of `text` has `uid` as its third field.
fn has_entry(text: &str, uid: u32) -> bool {
    let uid = uid.to_string();
    text.lines()
        .any(|line| line.split(':').nth(2) == Some(uid.as_str()))
}

/// Appends `line`, starting it on a line of its own.
fn append(passwd: &Path, text: &str, line: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new().append(true).open(passwd)?;
    let sep = if text.is_empty() || text.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    file.write_all(format!("{sep}{line}").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_added_once_as_git_sync_writes_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let passwd = dir.path().join("passwd");
        std::fs::write(&passwd, "root:x:0:0:root:/root:/bin/sh").expect("write");
        let (uid, gid) = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        add_user_if_missing(&passwd);
        add_user_if_missing(&passwd);
        let text = std::fs::read_to_string(&passwd).expect("read");
        if uid == 0 {
            assert_eq!(text, "root:x:0:0:root:/root:/bin/sh", "root is listed");
            return;
        }
        let line = format!("git-sync:x:{uid}:{gid}::{}:/sbin/nologin", home());
        assert_eq!(text, format!("root:x:0:0:root:/root:/bin/sh\n{line}\n"));
    }

    #[test]
    fn entries_are_found_by_uid() {
        let text = "root:x:0:0:root:/root:/bin/sh\nweb:x:101:101::/:/sbin/nologin\n";
        assert!(has_entry(text, 101) && has_entry(text, 0));
        assert!(!has_entry(text, 1000650000) && !has_entry(text, 10));
        assert_eq!(entry(7, 0, "/tmp"), "git-sync:x:7:0::/tmp:/sbin/nologin\n");
    }
}
