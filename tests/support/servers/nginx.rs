//! [`Nginx`]: a real nginx (Debian's `/usr/sbin/nginx`) serving a directory.

use std::io::{self};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::git_daemon::kill_group;
use super::*;

/// Where Debian installs nginx.
pub const NGINX: &str = "/usr/sbin/nginx";

/// A real nginx master (and its workers) in the foreground, serving one
/// directory on 127.0.0.1 with keep-alive and no open-file cache (a cache
/// would keep serving files of a retired tree). Killed with its process
/// group when dropped.
pub struct Nginx {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Serves `root` (typically a published link) as the document root.
    pub fn start(root: &Path) -> Self {
        Self::start_with(|dir, port| nginx_command(dir, root, port))
    }

    /// Runs nginx with a whole configuration made by `conf(dir, port)` (an
    /// example's template filled in), which must listen on 127.0.0.1:port
    /// and keep its files in `dir`.
    pub fn start_conf(conf: impl Fn(&Path, u16) -> String) -> Self {
        Self::start_with(|dir, port| {
            require_nginx();
            let conf_path = dir.join("nginx.conf");
            std::fs::write(&conf_path, conf(dir, port)).expect("writing nginx.conf");
            let mut cmd = Command::new(NGINX);
            cmd.arg("-p")
                .arg(dir)
                .arg("-c")
                .arg(&conf_path)
                .arg("-e")
                .arg(dir.join("error.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            cmd
        })
    }

    fn start_with(command: impl Fn(&Path, u16) -> Command) -> Self {
        let dir = crate::support::tempdir("nginx");
        // A port found free may be taken before nginx binds it: try a few.
        for _ in 0..5 {
            let port = free_port();
            let mut child = spawn_nginx(command(dir.path(), port));
            if wait_for_listener(&mut child, port) {
                return Nginx { child, port, dir };
            }
            kill_group(&mut child);
        }
        panic!(
            "nginx did not start listening on 127.0.0.1\n--- error.log ---\n{}",
            std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
        );
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("{LOCALHOST}:{}", self.port)
    }

    /// nginx's error log (for failure messages).
    pub fn error_log(&self) -> String {
        self.file("error.log")
    }

    /// A file nginx wrote in its directory (a log a configuration names).
    pub fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    /// Whether the master is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// A whole configuration for [`Nginx::start_conf`]: one `server { … }`
/// block whose body is `server` (it must listen on 127.0.0.1), everything
/// nginx writes in `dir`.
pub fn one_server_conf(dir: &Path, server: &str) -> String {
    let d = dir.display();
    // Root's files live in 0700 temporary directories: workers must run as root too.
    let user = if nix::unistd::geteuid().is_root() {
        "user root;\n"
    } else {
        ""
    };
    format!(
        "{user}daemon off;\n\
         master_process on;\n\
         worker_processes 1;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/error.log notice;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n\
           access_log off;\n\
           client_body_temp_path {d}/client;\n\
           proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fastcgi;\n\
           uwsgi_temp_path {d}/uwsgi;\n\
           scgi_temp_path {d}/scgi;\n\
           server {{ {server} }}\n\
         }}\n"
    )
}

fn nginx_conf(dir: &Path, root: &Path, port: u16) -> String {
    let d = dir.display();
    // Root's files live in 0700 temporary directories: workers must run as root too.
    let user = if nix::unistd::geteuid().is_root() {
        "user root;\n"
    } else {
        ""
    };
    format!(
        "{user}worker_processes 2;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n\
           access_log off;\n\
           default_type application/octet-stream;\n\
           keepalive_requests 1000000;\n\
           keepalive_timeout 120s;\n\
           client_body_temp_path {d}/client;\n\
           proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fastcgi;\n\
           uwsgi_temp_path {d}/uwsgi;\n\
           scgi_temp_path {d}/scgi;\n\
           server {{ listen {LOCALHOST}:{port}; root {}; location / {{ }} }}\n\
         }}\n",
        root.display()
    )
}

/// A foreground nginx with our test config in `dir`, serving `root` on
/// 127.0.0.1:`port` (config written, not started). Fails with an install
/// hint when nginx is missing.
pub fn nginx_command(dir: &Path, root: &Path, port: u16) -> Command {
    require_nginx();
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, nginx_conf(dir, root, port)).expect("writing nginx.conf");
    let d = dir.display();
    let mut cmd = Command::new(NGINX);
    cmd.arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf_path)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-g")
        .arg(format!(
            "daemon off; pid {d}/nginx.pid; error_log {d}/error.log notice;"
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

fn require_nginx() {
    if !Path::new(NGINX).exists() {
        panic!("nginx not found at {NGINX}: install it (Debian/Ubuntu: apt-get install nginx)");
    }
}

fn spawn_nginx(cmd: Command) -> Child {
    spawn_server(cmd, NGINX)
}

/// Starts a server in a process group of its own, killed if the test
/// process dies (the group is killed on drop otherwise).
pub(super) fn spawn_server(mut cmd: Command, name: &str) -> Child {
    cmd.process_group(0);
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Some(nix::sys::signal::Signal::SIGKILL))
                .map_err(io::Error::from)
        });
    }
    cmd.spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"))
}

/// True once something accepts on 127.0.0.1:`port`; false if `child` exits first.
pub(super) fn wait_for_listener(child: &mut Child, port: u16) -> bool {
    crate::support::poll_until(crate::support::DEADLINE, || {
        if !matches!(child.try_wait(), Ok(None)) {
            return true;
        }
        TcpStream::connect((LOCALHOST, port)).is_ok()
    }) && matches!(child.try_wait(), Ok(None))
}
