//! [`Squid`]: a real squid (Debian's `/usr/sbin/squid`) with Debian's own
//! `/etc/squid/squid.conf`, changed only where it must be for a test: the
//! port (127.0.0.1 and a free one) and where it writes (pid file, logs).
//! Its access rules stay the distribution's: CONNECT only to port 443,
//! requests only from localhost.

use std::os::unix::fs::chown;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::git_daemon::kill_group;
use super::nginx::{spawn_server, wait_for_listener};
use super::*;

/// Where Debian installs squid and its configuration.
pub const SQUID: &str = "/usr/sbin/squid";
const SQUID_CONF: &str = "/etc/squid/squid.conf";

/// squid in the foreground (`-N`), killed with its process group when dropped.
pub struct Squid {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Squid {
    pub fn start() -> Self {
        assert!(
            Path::new(SQUID).exists() && Path::new(SQUID_CONF).exists(),
            "{SQUID} or {SQUID_CONF} not found: this test runs the real squid (apt-get install squid)"
        );
        let dir = crate::support::tempdir("squid");
        // squid drops root for its `proxy` user, which writes the logs.
        if let Ok(Some(user)) = nix::unistd::User::from_name("proxy") {
            chown(dir.path(), Some(user.uid.as_raw()), Some(user.gid.as_raw()))
                .expect("chown squid's directory");
        }
        for _ in 0..5 {
            let port = free_port();
            let conf = dir.path().join("squid.conf");
            std::fs::write(&conf, config(dir.path(), port)).expect("writing squid.conf");
            let mut child = spawn(&conf);
            if wait_for_listener(&mut child, port) {
                return Squid { child, port, dir };
            }
            kill_group(&mut child);
        }
        panic!(
            "squid did not start listening on 127.0.0.1\n--- cache.log ---\n{}",
            std::fs::read_to_string(dir.path().join("cache.log")).unwrap_or_default()
        );
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{LOCALHOST}:{}", self.port)
    }

    /// What squid logged of each request (`TCP_DENIED/403 … CONNECT …`).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }
}

impl Drop for Squid {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// Debian's configuration with the port and the files moved.
fn config(dir: &Path, port: u16) -> String {
    let debian = std::fs::read_to_string(SQUID_CONF).expect("reading squid.conf");
    let d = dir.display();
    let mut conf: String = debian
        .lines()
        .map(|line| match line.starts_with("http_port ") {
            true => format!("http_port {LOCALHOST}:{port}\n"),
            false => format!("{line}\n"),
        })
        .collect();
    conf.push_str(&format!(
        "pid_filename {d}/squid.pid\naccess_log stdio:{d}/access.log\ncache_log {d}/cache.log\n\
         coredump_dir {d}\nshutdown_lifetime 0 seconds\n"
    ));
    conf
}

fn spawn(conf: &Path) -> Child {
    let mut cmd = Command::new(SQUID);
    cmd.arg("-N")
        .arg("-f")
        .arg(conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    spawn_server(cmd, SQUID)
}
