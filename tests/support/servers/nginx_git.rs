//! [`NginxGit`]: smart HTTP as it is commonly deployed: `git http-backend`
//! run by fcgiwrap behind a real nginx, with nginx's defaults (a request
//! body of at most 1 MB, `client_max_body_size 1m`) and Debian's
//! `fastcgi_params`. The protocol version reaches git through
//! `GIT_PROTOCOL` from the `Git-Protocol` header, as git's documentation
//! has it for a web server. [`super::HttpGit`] is an in-process server
//! without any of those limits.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::git_daemon::kill_group;
use super::*;

/// Where Debian installs fcgiwrap, and nginx's FastCGI parameters.
pub const FCGIWRAP: &str = "/usr/sbin/fcgiwrap";
const FASTCGI_PARAMS: &str = "/etc/nginx/fastcgi_params";

/// nginx in front of fcgiwrap in front of `git http-backend`, serving the
/// repositories below a base directory as `/git/<name>`; both stopped when
/// dropped.
pub struct NginxGit {
    nginx: Nginx,
    fcgiwrap: Child,
    _dir: tempfile::TempDir,
}

impl NginxGit {
    pub fn start(base: &Path) -> Self {
        assert!(
            Path::new(FCGIWRAP).exists() && Path::new(FASTCGI_PARAMS).exists(),
            "{FCGIWRAP} or {FASTCGI_PARAMS} not found: this test runs git http-backend under \
             fcgiwrap behind nginx (apt-get install fcgiwrap nginx)"
        );
        let dir = crate::support::tempdir("nginx-git");
        let socket = dir.path().join("fcgiwrap.sock");
        let fcgiwrap = spawn_fcgiwrap(&socket);
        let backend = crate::support::git::git_exec_path().join("git-http-backend");
        let (base, socket) = (base.to_path_buf(), socket.clone());
        let nginx = Nginx::start_conf(move |conf_dir, port| {
            let d = conf_dir.display();
            one_server_conf(
                conf_dir,
                &format!(
                    "listen {LOCALHOST}:{port};\n\
                     access_log {d}/access.log;\n\
                     location ~ ^/git(/.*)$ {{\n\
                       include {FASTCGI_PARAMS};\n\
                       fastcgi_param SCRIPT_FILENAME {backend};\n\
                       fastcgi_param GIT_PROJECT_ROOT {base};\n\
                       fastcgi_param GIT_HTTP_EXPORT_ALL \"\";\n\
                       fastcgi_param GIT_PROTOCOL $http_git_protocol;\n\
                       fastcgi_param PATH_INFO $1;\n\
                       fastcgi_pass unix:{socket};\n\
                     }}\n",
                    backend = backend.display(),
                    base = base.display(),
                    socket = socket.display(),
                ),
            )
        });
        NginxGit {
            nginx,
            fcgiwrap,
            _dir: dir,
        }
    }

    /// `http://127.0.0.1:PORT/git/<name>`.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/git/{name}", self.nginx.addr())
    }

    /// nginx's access log: one line per request (`"POST /git/… HTTP/1.1" 200`).
    pub fn access_log(&self) -> String {
        self.nginx.file("access.log")
    }

    /// nginx's error log.
    pub fn error_log(&self) -> String {
        self.nginx.error_log()
    }
}

impl Drop for NginxGit {
    fn drop(&mut self) {
        kill_group(&mut self.fcgiwrap);
    }
}

fn spawn_fcgiwrap(socket: &Path) -> Child {
    let mut cmd = Command::new(FCGIWRAP);
    cmd.arg("-s")
        .arg(format!("unix:{}", socket.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = super::nginx::spawn_server(cmd, FCGIWRAP);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "fcgiwrap did not create {}",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}
