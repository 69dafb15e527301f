//! `GIT_SSH_COMMAND`: run it the way git does (`sh -c '<cmd> "$@"' <cmd>
//! args...`) with git-sync's options: `-i <key>` per `--ssh-key-file`, then
//! `-o StrictHostKeyChecking=yes -o UserKnownHostsFile=<file>` or
//! `-o StrictHostKeyChecking=no`, `-o SendEnv=GIT_PROTOCOL`, `-p <port>`
//! when the URL has one, `[user@]host` and `git-upload-pack '<path>'`.
//! Needs `sh` and the command in the image; the built-in client needs neither.

use std::ffi::OsString;
use std::process::Command;

use super::{Options, Target};

/// The `sh -c` command line for `ssh_command` reaching `target`.
pub fn build(ssh_command: &str, target: &Target, opts: &Options) -> Command {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("{ssh_command} \"$@\""))
        .arg(ssh_command)
        .args(arguments(target, opts))
        .env("GIT_PROTOCOL", "version=2");
    command
}

/// `GIT_SSH_COMMAND` for the git an exec hook runs, as git-sync exports it
/// to its hooks: `ssh`, `-i <key>` per `--ssh-key-file`, and the host key
/// check of `--ssh-known-hosts(-file)`, each path quoted for the shell git
/// runs it with. A `GIT_SSH_COMMAND` of the environment gets the same
/// options after it, as git-sync and our own spawned ssh do.
pub fn for_hooks(opts: &Options) -> Option<String> {
    let mut command = opts.command.clone().unwrap_or_else(|| "ssh".to_string());
    for key in &opts.key_files {
        command.push_str(" -i ");
        command.push_str(&shell_quoted(&key.to_string_lossy()));
    }
    match &opts.known_hosts {
        Some(file) => {
            command.push_str(" -o StrictHostKeyChecking=yes -o UserKnownHostsFile=");
            command.push_str(&shell_quoted(&file.to_string_lossy()));
        }
        None => command.push_str(" -o StrictHostKeyChecking=no"),
    }
    Some(command)
}

/// `word` as one word for `sh`: as it is when it holds nothing the shell
/// treats specially, else in single quotes.
fn shell_quoted(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@".contains(&b));
    match plain {
        true => word.to_string(),
        false => format!("'{}'", word.replace('\'', "'\\''")),
    }
}

/// Everything after the command itself.
fn arguments(target: &Target, opts: &Options) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    for key in &opts.key_files {
        args.push("-i".into());
        args.push(key.into());
    }
    match &opts.known_hosts {
        Some(file) => {
            args.extend(["-o".into(), "StrictHostKeyChecking=yes".into(), "-o".into()]);
            let mut option = OsString::from("UserKnownHostsFile=");
            option.push(file);
            args.push(option);
        }
        None => args.extend(["-o".into(), "StrictHostKeyChecking=no".into()]),
    }
    args.extend(["-o".into(), "SendEnv=GIT_PROTOCOL".into()]);
    if let Some(port) = target.port {
        args.extend(["-p".into(), port.to_string().into()]);
    }
    args.push(match &target.user {
        Some(user) => format!("{user}@{}", target.host).into(),
        None => target.host.clone().into(),
    });
    args.push(target.upload_pack_command().into());
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn strings(args: Vec<OsString>) -> Vec<String> {
        args.into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    /// What git-sync exports to its hooks, paths quoted for the shell.
    #[test]
    fn the_hooks_get_git_syncs_ssh_command() {
        let opts = |known_hosts: Option<&str>, command: Option<&str>| Options {
            key_files: vec![
                PathBuf::from("/etc/git-secret/ssh"),
                PathBuf::from("/keys/a key"),
            ],
            known_hosts: known_hosts.map(PathBuf::from),
            command: command.map(str::to_string),
            skipped_keys: Default::default(),
        };
        assert_eq!(
            for_hooks(&opts(Some("/etc/git-secret/known_hosts"), None)).as_deref(),
            Some(
                "ssh -i /etc/git-secret/ssh -i '/keys/a key' -o StrictHostKeyChecking=yes \
                 -o UserKnownHostsFile=/etc/git-secret/known_hosts"
            )
        );
        assert_eq!(
            for_hooks(&opts(None, None)).as_deref(),
            Some("ssh -i /etc/git-secret/ssh -i '/keys/a key' -o StrictHostKeyChecking=no")
        );
        assert_eq!(
            for_hooks(&opts(None, Some("ssh -v"))).as_deref(),
            Some("ssh -v -i /etc/git-secret/ssh -i '/keys/a key' -o StrictHostKeyChecking=no"),
            "the user's own, with the options after it"
        );
        assert_eq!(shell_quoted("it's"), "'it'\\''s'");
    }

    #[test]
    fn strict_with_keys_port_and_user() {
        let target = Target {
            user: Some("git".into()),
            host: "h".into(),
            port: Some(2222),
            path: "/r.git".into(),
        };
        let opts = Options {
            key_files: vec![PathBuf::from("/k1"), PathBuf::from("/k2")],
            known_hosts: Some(PathBuf::from("/kh")),
            command: None,
            ..Default::default()
        };
        assert_eq!(
            strings(arguments(&target, &opts)),
            [
                "-i",
                "/k1",
                "-i",
                "/k2",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "UserKnownHostsFile=/kh",
                "-o",
                "SendEnv=GIT_PROTOCOL",
                "-p",
                "2222",
                "git@h",
                "git-upload-pack '/r.git'"
            ]
        );
    }

    #[test]
    fn lax_without_user_or_port() {
        let target = Target {
            user: None,
            host: "h".into(),
            port: None,
            path: "r.git".into(),
        };
        let args = strings(arguments(&target, &Options::default()));
        assert_eq!(
            args,
            [
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "SendEnv=GIT_PROTOCOL",
                "h",
                "git-upload-pack 'r.git'"
            ]
        );
    }
}
