//! `git://` servers: [`GitDaemon`] on 127.0.0.1 and [`GitDaemonV6`] on `[::1]`,
//! both `git daemon --inetd` spawned per connection.

use std::fs::{File, OpenOptions};
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::git::{isolate, require_git_program};

use super::*;

/// `git://127.0.0.1:PORT/<name>` served by `git daemon --inetd`, spawned for
/// each accepted connection with the socket as its stdin and stdout. The
/// daemon passes the client's extra parameters on as GIT_PROTOCOL, so
/// protocol v2 works; [`GitDaemon::start_v0`] serves protocol v0 only.
pub struct GitDaemon {
    acceptor: Option<Acceptor>,
    children: Arc<Mutex<Vec<Child>>>,
    connections: Arc<AtomicUsize>,
    log_dir: tempfile::TempDir,
}

impl GitDaemon {
    /// Serves every repository under `base_dir` (`--base-path`, `--export-all`).
    pub fn start(base_dir: &Path) -> Self {
        Self::start_with(base_dir, false, &[])
    }

    /// Like [`GitDaemon::start`], with git configuration given to the
    /// daemon and the upload-packs it runs as command-line configuration
    /// (`GIT_CONFIG_COUNT`), which protected keys such as
    /// `uploadpack.packObjectsHook` are read from, as from the server's
    /// global configuration.
    pub fn start_with_config(base_dir: &Path, config: &[(&str, &str)]) -> Self {
        Self::start_with(base_dir, false, config)
    }

    /// Like [`GitDaemon::start`], but the server answers with protocol v0
    /// whatever the client asks for, as a daemon of git before 2.18 does.
    ///
    /// git has no server-side setting for this: upload-pack takes the
    /// version only from `GIT_PROTOCOL`, which the daemon fills from the
    /// client's request (`version=2` after the `host=` of the first line).
    /// The daemon starts upload-pack as `git upload-pack` through the `git`
    /// found on its PATH, so this one runs the real `git-daemon` (from
    /// `git --exec-path`, called directly so that git does not put its exec
    /// path first on PATH) with a `git` first on its PATH that drops
    /// `GIT_PROTOCOL` and runs the real git: the real upload-pack then sees
    /// no version request and answers v0 (no `version 2` line, capabilities
    /// on the first ref).
    pub fn start_v0(base_dir: &Path) -> Self {
        Self::start_with(base_dir, true, &[])
    }

    /// [`GitDaemon::start_v0`] with `config` as for
    /// [`GitDaemon::start_with_config`] (e.g. the `uploadpack.allow*` keys
    /// set back to git's defaults).
    pub fn start_v0_with_config(base_dir: &Path, config: &[(&str, &str)]) -> Self {
        Self::start_with(base_dir, true, config)
    }

    fn start_with(base_dir: &Path, v0: bool, config: &[(&str, &str)]) -> Self {
        require_git_program(
            "daemon",
            "install git's daemon (Debian/Ubuntu: apt-get install git, which ships git-daemon)",
        );
        let log_dir = crate::support::tempdir("git-daemon-log");
        let log_path = log_dir.path().join("daemon.log");
        let v0_path = v0.then(|| v0_only_path(log_dir.path()));
        let config: Vec<(String, String)> = config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let base = base_dir.to_path_buf();
        let children: Arc<Mutex<Vec<Child>>> = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (children2, connections2) = (children.clone(), connections.clone());
        let acceptor = Acceptor::start("git-daemon", move |stream| {
            connections2.fetch_add(1, Ordering::SeqCst);
            match spawn_inetd_daemon(stream, &base, &log_path, v0_path.as_deref(), &config) {
                Ok(child) => {
                    let mut kids = children2.lock().expect("children lock");
                    kids.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
                    kids.push(child);
                }
                Err(e) => eprintln!("GitDaemon: cannot spawn git daemon --inetd: {e}"),
            }
        });
        GitDaemon {
            acceptor: Some(acceptor),
            children,
            connections,
            log_dir,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.acceptor.as_ref().expect("running").addr
    }

    pub fn port(&self) -> u16 {
        self.addr().port()
    }

    /// `git://127.0.0.1:PORT/<name>`.
    pub fn url(&self, name: &str) -> String {
        format!("git://{LOCALHOST}:{}/{name}", self.port())
    }

    /// Number of connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// What the daemon processes logged (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_dir.path().join("daemon.log")).unwrap_or_default()
    }
}

/// A PATH for [`GitDaemon::start_v0`]: `<dir>/v0-bin` (holding a `git` that
/// drops `GIT_PROTOCOL`, then runs the real git) before the current PATH.
fn v0_only_path(dir: &Path) -> std::ffi::OsString {
    let real_git = crate::support::sshd::which("git").expect("git on PATH");
    let bin = dir.join("v0-bin");
    std::fs::create_dir_all(&bin).expect("creating the v0 wrapper directory");
    let wrapper = bin.join("git");
    let script = format!(
        "#!/bin/sh\n# The client's protocol request never reaches upload-pack.\n\
         unset GIT_PROTOCOL\nexec '{}' \"$@\"\n",
        real_git.display()
    );
    std::fs::write(&wrapper, script).expect("writing the v0 git wrapper");
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod the v0 git wrapper");
    let mut paths = vec![bin];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).expect("joining PATH")
}

fn spawn_inetd_daemon(
    stream: TcpStream,
    base: &Path,
    log_path: &Path,
    v0_path: Option<&std::ffi::OsStr>,
    config: &[(String, String)],
) -> io::Result<Child> {
    let input: OwnedFd = stream.try_clone()?.into();
    let output: OwnedFd = stream.into();
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)?;
    let mut cmd = match v0_path {
        None => Command::new("git"),
        Some(_) => Command::new(crate::support::git::git_exec_path().join("git-daemon")),
    };
    isolate(&mut cmd);
    // After the pairs `isolate` gave.
    let first = crate::support::git::GIT_CONFIG.len();
    if !config.is_empty() {
        cmd.env("GIT_CONFIG_COUNT", (first + config.len()).to_string());
        for (i, (key, value)) in config.iter().enumerate() {
            cmd.env(format!("GIT_CONFIG_KEY_{}", first + i), key)
                .env(format!("GIT_CONFIG_VALUE_{}", first + i), value);
        }
    }
    if let Some(path) = v0_path {
        cmd.env("PATH", path);
    } else {
        cmd.arg("daemon");
    }
    cmd.arg("--inetd")
        .arg("--export-all")
        .arg(format!("--base-path={}", base.display()))
        .arg("--enable=upload-pack")
        .arg("--informative-errors")
        .arg("--log-destination=stderr")
        .arg("--verbose")
        .current_dir(base)
        .stdin(Stdio::from(input))
        .stdout(Stdio::from(output))
        .stderr(Stdio::from(log))
        .process_group(0);
    // `cmd` (and with it our copies of the socket) is dropped right after the
    // spawn, so the connection closes as soon as the daemon exits.
    cmd.spawn()
}

pub(super) fn kill_group(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = child.kill();
    }
    let _ = child.wait();
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        drop(self.acceptor.take());
        if let Ok(mut kids) = self.children.lock() {
            for child in kids.iter_mut() {
                kill_group(child);
            }
            kids.clear();
        }
    }
}

// ---------------------------------------------------------------------------
// IPv6 loopback

/// Panics, saying what to fix, unless this host can listen on `[::1]`: the
/// IPv6 tests are failures, not skips, where IPv6 is missing.
pub fn require_ipv6_loopback() {
    if let Err(e) = TcpListener::bind("[::1]:0") {
        panic!(
            "cannot listen on [::1] ({e}): these tests need IPv6 on the loopback \
             interface (`ip -6 addr show lo` must list ::1; enable it with \
             `sysctl net.ipv6.conf.lo.disable_ipv6=0`, or run the container with IPv6)"
        );
    }
}

/// A port on `[::1]` that was free a moment ago.
pub fn free_port_v6() -> u16 {
    require_ipv6_loopback();
    TcpListener::bind("[::1]:0")
        .and_then(|l| l.local_addr())
        .expect("binding [::1]:0")
        .port()
}

/// A real `git daemon --listen=::1` (not inetd mode behind our acceptor):
/// `git://[::1]:PORT/<name>` for every repository under `base_dir`.
pub struct GitDaemonV6 {
    child: Child,
    port: u16,
    log_dir: tempfile::TempDir,
}

impl GitDaemonV6 {
    pub fn start(base_dir: &Path) -> Self {
        require_git_program(
            "daemon",
            "install git's daemon (Debian/Ubuntu: apt-get install git, which ships git-daemon)",
        );
        let port = free_port_v6();
        let log_dir = crate::support::tempdir("git-daemon6-log");
        let log = File::create(log_dir.path().join("daemon.log")).expect("creating daemon log");
        let mut cmd = Command::new("git");
        isolate(&mut cmd);
        cmd.arg("daemon")
            .args(["--listen=::1", &format!("--port={port}"), "--reuseaddr"])
            .args([
                "--export-all",
                "--enable=upload-pack",
                "--informative-errors",
            ])
            .arg(format!("--base-path={}", base_dir.display()))
            .args(["--log-destination=stderr", "--verbose"])
            .current_dir(base_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .process_group(0);
        let child = cmd.spawn().expect("spawning git daemon --listen=::1");
        let mut daemon = GitDaemonV6 {
            child,
            port,
            log_dir,
        };
        let addr: SocketAddr = format!("[::1]:{port}").parse().expect("address");
        let up = crate::support::poll_until(crate::support::DEADLINE, || {
            TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
                || !matches!(daemon.child.try_wait(), Ok(None))
        });
        if !up || !matches!(daemon.child.try_wait(), Ok(None)) {
            panic!(
                "git daemon did not listen on {addr}; its log:\n{}",
                daemon.log()
            );
        }
        daemon
    }

    /// `git://[::1]:PORT/<name>`.
    pub fn url(&self, name: &str) -> String {
        format!("git://[::1]:{}/{name}", self.port)
    }

    /// What the daemon logged (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_dir.path().join("daemon.log")).unwrap_or_default()
    }
}

impl Drop for GitDaemonV6 {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}
