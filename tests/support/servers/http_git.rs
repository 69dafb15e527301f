//! [`HttpGit`]: smart HTTP via `git http-backend` run as CGI behind the
//! shared [`TestServer`] (basic or bearer auth, a required cookie,
//! protocol-v0-only mode, counters).

use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use super::LOCALHOST;
use crate::support::git::{isolate, require_git_program};
use crate::support::http_server::{Answer, Request, TestServer};

/// Options of [`HttpGit`].
#[derive(Clone, Debug, Default)]
pub struct HttpOpts {
    /// Require HTTP basic auth with this user and password (401 otherwise).
    pub basic_auth: Option<(String, String)>,
    /// Drop the client's `Git-Protocol` header: the server then speaks v0.
    pub protocol_v0_only: bool,
    /// Require `Authorization: Bearer <token>` (401 otherwise).
    pub bearer_token: Option<String>,
    /// Require this `name=value` among the request's cookies (403
    /// otherwise), as a cookie-authenticating front end does.
    pub required_cookie: Option<String>,
}

/// What the request closure shares with the [`HttpGit`] handle.
struct HttpCtx {
    root: PathBuf,
    opts: HttpOpts,
    /// The credentials required now (starts as `HttpOpts::basic_auth`).
    basic_auth: Mutex<Option<(String, String)>>,
    unauthorized: AtomicUsize,
    log: Mutex<Vec<String>>,
    cgi_log: PathBuf,
    port: AtomicU16,
}

/// Smart-HTTP git server: `http://127.0.0.1:PORT/<repo>` backed by
/// `git http-backend` with GIT_PROJECT_ROOT = the given directory.
pub struct HttpGit {
    server: TestServer,
    ctx: Arc<HttpCtx>,
    _log_dir: tempfile::TempDir,
}

impl HttpGit {
    pub fn start(project_root: &Path, opts: HttpOpts) -> Self {
        require_git_program(
            "http-backend",
            "install git's http-backend (Debian/Ubuntu: apt-get install git, which ships git-http-backend)",
        );
        let log_dir = crate::support::tempdir("http-git-log");
        let ctx = Arc::new(HttpCtx {
            root: project_root.to_path_buf(),
            basic_auth: Mutex::new(opts.basic_auth.clone()),
            opts,
            unauthorized: AtomicUsize::new(0),
            log: Mutex::default(),
            cgi_log: log_dir.path().join("http-backend.log"),
            port: AtomicU16::new(0),
        });
        let handler_ctx = ctx.clone();
        let server = TestServer::start(move |_, req| serve(&handler_ctx, req));
        ctx.port.store(server.port(), Ordering::SeqCst);
        HttpGit {
            server,
            ctx,
            _log_dir: log_dir,
        }
    }

    /// Requires other basic-auth credentials from the next request on (a
    /// rotated password or token).
    pub fn set_basic_auth(&self, user: &str, pass: &str) {
        *self.ctx.basic_auth.lock().expect("auth lock") = Some((user.into(), pass.into()));
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// `http://127.0.0.1:PORT/<name>`.
    pub fn url(&self, name: &str) -> String {
        format!("http://{LOCALHOST}:{}/{name}", self.port())
    }

    /// `http://user:pass@127.0.0.1:PORT/<name>`.
    pub fn url_with_auth(&self, user: &str, pass: &str, name: &str) -> String {
        format!("http://{user}:{pass}@{LOCALHOST}:{}/{name}", self.port())
    }

    /// Requests received (including rejected ones).
    pub fn requests(&self) -> usize {
        self.server.count()
    }

    /// Requests answered with 401.
    pub fn unauthorized(&self) -> usize {
        self.ctx.unauthorized.load(Ordering::SeqCst)
    }

    /// Body bytes sent to clients.
    pub fn bytes_sent(&self) -> u64 {
        self.server.bytes_sent()
    }

    /// One line per request: `METHOD path?query status git-protocol=<header>`.
    pub fn request_log(&self) -> Vec<String> {
        self.ctx.log.lock().expect("log lock").clone()
    }

    /// Every `Authorization` header received (accepted or not), so a test
    /// can tell which secrets reached this server.
    pub fn authorizations(&self) -> Vec<String> {
        self.headers_received("authorization")
    }

    /// Every `Cookie` header received (accepted or not).
    pub fn cookies(&self) -> Vec<String> {
        self.headers_received("cookie")
    }

    fn headers_received(&self, name: &str) -> Vec<String> {
        let requests = self.server.requests();
        let values = requests.iter().flat_map(|r| r.headers_named(name));
        values.map(str::to_string).collect()
    }

    /// What http-backend wrote on stderr.
    pub fn cgi_log(&self) -> String {
        std::fs::read_to_string(&self.ctx.cgi_log).unwrap_or_default()
    }
}

/// Checks the cookie and the credentials, then runs http-backend.
fn serve(ctx: &HttpCtx, req: &Request) -> Answer {
    let git_protocol = req.header("Git-Protocol");
    let log = |status: &str| {
        let line = format!(
            "{} {}?{} {status} git-protocol={git_protocol:?}",
            req.method,
            percent_decode(req.path()),
            req.query()
        );
        ctx.log.lock().expect("log lock").push(line);
    };
    if let Some(wanted) = &ctx.opts.required_cookie {
        let sent = req
            .headers_named("cookie")
            .flat_map(|h| h.split(';'))
            .any(|pair| pair.trim() == wanted);
        if !sent {
            log("403");
            return Answer::new(403, "a session cookie is required\n").content_type("text/plain");
        }
    }
    let remote_user = match authorized(ctx, req) {
        Ok(user) => user,
        Err(()) => {
            ctx.unauthorized.fetch_add(1, Ordering::SeqCst);
            log("401");
            return Answer::new(401, "authentication required\n")
                .content_type("text/plain")
                .header("WWW-Authenticate", "Basic realm=\"x\"");
        }
    };
    match run_http_backend(ctx, req, remote_user.as_deref()) {
        Ok(answer) => {
            log(&answer.status.to_string());
            answer
        }
        Err(e) => {
            log("500");
            Answer::new(500, format!("running git http-backend: {e}\n")).content_type("text/plain")
        }
    }
}

/// `Ok(Some(user))` when credentials were required and sent, `Ok(None)`
/// when none are required, `Err` when they are missing or wrong.
fn authorized(ctx: &HttpCtx, req: &Request) -> Result<Option<String>, ()> {
    let basic_auth = ctx.basic_auth.lock().expect("auth lock").clone();
    let (user, expected) = match (&ctx.opts.bearer_token, basic_auth) {
        (Some(token), _) => ("bearer".to_string(), format!("Bearer {token}")),
        (None, Some((user, pass))) => {
            let expected = format!("Basic {}", BASE64.encode(format!("{user}:{pass}")));
            (user, expected)
        }
        (None, None) => return Ok(None),
    };
    if req.header("Authorization").map(str::trim) == Some(expected.as_str()) {
        Ok(Some(user))
    } else {
        Err(())
    }
}

fn run_http_backend(ctx: &HttpCtx, req: &Request, remote_user: Option<&str>) -> io::Result<Answer> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&ctx.cgi_log)?;
    let mut cmd = Command::new("git");
    isolate(&mut cmd);
    cmd.arg("http-backend")
        .env("GIT_PROJECT_ROOT", &ctx.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("SERVER_SOFTWARE", "git-sidecar-it")
        .env("SERVER_NAME", LOCALHOST)
        .env("SERVER_PORT", ctx.port.load(Ordering::SeqCst).to_string())
        .env("REQUEST_METHOD", &req.method)
        .env("PATH_INFO", percent_decode(req.path()))
        .env("QUERY_STRING", req.query())
        .env("REMOTE_ADDR", req.peer.ip().to_string())
        .env("CONTENT_LENGTH", req.body.len().to_string())
        .current_dir(&ctx.root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log));
    if let Some(ct) = req.header("Content-Type") {
        cmd.env("CONTENT_TYPE", ct);
    }
    if let Some(enc) = req.header("Content-Encoding") {
        // http-backend inflates gzip request bodies itself.
        cmd.env("HTTP_CONTENT_ENCODING", enc);
    }
    if let (Some(p), false) = (req.header("Git-Protocol"), ctx.opts.protocol_v0_only) {
        cmd.env("HTTP_GIT_PROTOCOL", p);
    }
    if let Some(user) = remote_user {
        cmd.env("REMOTE_USER", user).env("AUTH_TYPE", "Basic");
    }
    let mut child = cmd.spawn()?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let body = req.body.clone();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let mut out = Vec::new();
    child
        .stdout
        .take()
        .expect("piped stdout")
        .read_to_end(&mut out)?;
    let _ = feeder.join();
    child.wait()?;
    cgi_answer(&out)
}

/// A CGI response (header lines, a blank line, the body) as an [`Answer`].
fn cgi_answer(out: &[u8]) -> io::Result<Answer> {
    let (head_end, sep_len) = match (find(out, b"\r\n\r\n"), find(out, b"\n\n")) {
        (Some(a), Some(b)) if b < a => (b, 2),
        (Some(a), _) => (a, 4),
        (None, Some(b)) => (b, 2),
        (None, None) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "http-backend produced no CGI header",
            ))
        }
    };
    let head = String::from_utf8_lossy(&out[..head_end]).into_owned();
    let mut answer = Answer::new(200, out[head_end + sep_len..].to_vec()).content_type("");
    for line in head
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty())
    {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("Status") {
            let code = v.split(' ').next().unwrap_or_default();
            answer.status = code.parse().map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidData, format!("CGI Status {v:?}"))
            })?;
        } else if !["content-length", "transfer-encoding", "connection"]
            .contains(&k.to_ascii_lowercase().as_str())
        {
            answer = answer.header(k, v);
        }
    }
    Ok(answer)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
