//! Local git servers and network fault injectors. Everything binds
//! 127.0.0.1 with an OS-chosen port and is stopped when dropped.
//!
//! * [`GitDaemon`]: `git://` via `git daemon --inetd`, one process per connection.
//! * [`HttpGit`]: smart HTTP via `git http-backend` run as CGI by a tiny
//!   threaded HTTP/1.1 server (basic auth, protocol-v0-only mode, counters).
//! * [`StallProxy`]: a TCP proxy that can stop forwarding server→client bytes
//!   (after N bytes, or now) while keeping the sockets open, and resume.
//! * [`BlackHole`]: accepts connections and never answers.
//! * [`FaultProxy`]: a proxy whose connections can be reset (at once, after
//!   the request or mid-response) or answered with garbage, switchable at
//!   run time so one port goes from hostile to healthy.
//! * [`Nginx`]: a real nginx (Debian's `/usr/sbin/nginx`) serving a directory.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::git::{isolate, require_git_program};

/// The only address anything in this harness listens on or connects to.
pub const LOCALHOST: &str = "127.0.0.1";

fn bind_local() -> TcpListener {
    TcpListener::bind((LOCALHOST, 0)).expect("binding a TCP listener on 127.0.0.1:0")
}

/// A port on 127.0.0.1 that was free a moment ago and has nothing listening
/// on it now (connections to it are refused, barring a race with another test).
pub fn free_port() -> u16 {
    let l = bind_local();
    l.local_addr().expect("local_addr").port()
}

/// Runs the accept loop of a listener on its own thread until `stop` is set;
/// dropping the returned guard stops it (by setting the flag and connecting
/// once to wake the blocked `accept`).
struct Acceptor {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Acceptor {
    fn start(name: &str, mut on_conn: impl FnMut(TcpStream) + Send + 'static) -> Self {
        let listener = bind_local();
        let addr = listener.local_addr().expect("local_addr");
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("{name}-accept"))
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop2.load(Ordering::SeqCst) {
                        break;
                    }
                    match conn {
                        Ok(stream) => on_conn(stream),
                        Err(_) => continue,
                    }
                }
            })
            .expect("spawning accept thread");
        Acceptor {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------
// git daemon

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
        Self::start_with(base_dir, false)
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
        Self::start_with(base_dir, true)
    }

    fn start_with(base_dir: &Path, v0: bool) -> Self {
        require_git_program(
            "daemon",
            "install git's daemon (Debian/Ubuntu: apt-get install git, which ships git-daemon)",
        );
        let log_dir = super::tempdir("git-daemon-log");
        let log_path = log_dir.path().join("daemon.log");
        let v0_path = v0.then(|| v0_only_path(log_dir.path()));
        let base = base_dir.to_path_buf();
        let children: Arc<Mutex<Vec<Child>>> = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (children2, connections2) = (children.clone(), connections.clone());
        let acceptor = Acceptor::start("git-daemon", move |stream| {
            connections2.fetch_add(1, Ordering::SeqCst);
            match spawn_inetd_daemon(stream, &base, &log_path, v0_path.as_deref()) {
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
    let real_git = super::sshd::which("git").expect("git on PATH");
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
) -> io::Result<Child> {
    let input: OwnedFd = stream.try_clone()?.into();
    let output: OwnedFd = stream.into();
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)?;
    let mut cmd = match v0_path {
        None => Command::new("git"),
        Some(_) => Command::new(super::git::git_exec_path().join("git-daemon")),
    };
    isolate(&mut cmd);
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

fn kill_group(child: &mut Child) {
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
        let log_dir = super::tempdir("git-daemon6-log");
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
        let up = super::poll_until(super::DEADLINE, || {
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

// ---------------------------------------------------------------------------
// HTTP (git http-backend as CGI)

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

/// Counters shared with the serving threads.
#[derive(Default)]
struct HttpStats {
    requests: AtomicUsize,
    unauthorized: AtomicUsize,
    bytes_sent: AtomicU64,
    log: Mutex<Vec<String>>,
    /// Every `Authorization` header received, accepted or not.
    authorizations: Mutex<Vec<String>>,
    /// Every `Cookie` header received, accepted or not.
    cookies: Mutex<Vec<String>>,
}

/// Smart-HTTP git server: `http://127.0.0.1:PORT/<repo>` backed by
/// `git http-backend` with GIT_PROJECT_ROOT = the given directory.
pub struct HttpGit {
    acceptor: Option<Acceptor>,
    stats: Arc<HttpStats>,
    log_dir: tempfile::TempDir,
    /// The credentials required now (starts as `HttpOpts::basic_auth`).
    basic_auth: Arc<Mutex<Option<(String, String)>>>,
}

impl HttpGit {
    pub fn start(project_root: &Path, opts: HttpOpts) -> Self {
        require_git_program(
            "http-backend",
            "install git's http-backend (Debian/Ubuntu: apt-get install git, which ships git-http-backend)",
        );
        let log_dir = super::tempdir("http-git-log");
        let basic_auth = Arc::new(Mutex::new(opts.basic_auth.clone()));
        let ctx = Arc::new(HttpCtx {
            root: project_root.to_path_buf(),
            basic_auth: basic_auth.clone(),
            opts,
            stats: Arc::new(HttpStats::default()),
            cgi_log: log_dir.path().join("http-backend.log"),
            port: AtomicU64::new(0),
        });
        let stats = ctx.stats.clone();
        let ctx2 = ctx.clone();
        let acceptor = Acceptor::start("http-git", move |stream| {
            let ctx = ctx2.clone();
            let _ = std::thread::Builder::new()
                .name("http-git-conn".into())
                .spawn(move || {
                    if let Err(e) = serve_http_conn(stream, &ctx) {
                        ctx.stats
                            .log
                            .lock()
                            .expect("log lock")
                            .push(format!("connection error: {e}"));
                    }
                });
        });
        ctx.port
            .store(acceptor.addr.port() as u64, Ordering::SeqCst);
        HttpGit {
            acceptor: Some(acceptor),
            stats,
            log_dir,
            basic_auth,
        }
    }

    /// Requires other basic-auth credentials from the next request on (a
    /// rotated password or token).
    pub fn set_basic_auth(&self, user: &str, pass: &str) {
        *self.basic_auth.lock().expect("auth lock") = Some((user.into(), pass.into()));
    }

    pub fn addr(&self) -> SocketAddr {
        self.acceptor.as_ref().expect("running").addr
    }

    pub fn port(&self) -> u16 {
        self.addr().port()
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
        self.stats.requests.load(Ordering::SeqCst)
    }

    /// Requests answered with 401.
    pub fn unauthorized(&self) -> usize {
        self.stats.unauthorized.load(Ordering::SeqCst)
    }

    /// Bytes written to clients (status line, headers and bodies).
    pub fn bytes_sent(&self) -> u64 {
        self.stats.bytes_sent.load(Ordering::SeqCst)
    }

    /// One line per request: `METHOD path?query status git-protocol=<header>`.
    pub fn request_log(&self) -> Vec<String> {
        self.stats.log.lock().expect("log lock").clone()
    }

    /// Every `Authorization` header received (accepted or not), so a test
    /// can tell which secrets reached this server.
    pub fn authorizations(&self) -> Vec<String> {
        self.stats
            .authorizations
            .lock()
            .expect("auth log lock")
            .clone()
    }

    /// Every `Cookie` header received (accepted or not).
    pub fn cookies(&self) -> Vec<String> {
        self.stats.cookies.lock().expect("cookie log lock").clone()
    }

    /// What http-backend wrote on stderr.
    pub fn cgi_log(&self) -> String {
        std::fs::read_to_string(self.log_dir.path().join("http-backend.log")).unwrap_or_default()
    }
}

impl Drop for HttpGit {
    fn drop(&mut self) {
        drop(self.acceptor.take());
    }
}

struct HttpCtx {
    root: PathBuf,
    opts: HttpOpts,
    basic_auth: Arc<Mutex<Option<(String, String)>>>,
    stats: Arc<HttpStats>,
    cgi_log: PathBuf,
    port: AtomicU64,
}

struct Request {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn bad_data(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn read_line_crlf(r: &mut impl BufRead) -> io::Result<String> {
    let mut buf = Vec::new();
    let n = r.take(64 * 1024).read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    String::from_utf8(buf).map_err(|_| bad_data("non-UTF-8 header line"))
}

fn read_request(reader: &mut BufReader<TcpStream>, writer: &mut TcpStream) -> io::Result<Request> {
    let line = read_line_crlf(reader)?;
    let mut parts = line.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts
        .next()
        .ok_or_else(|| bad_data(format!("bad request line {line:?}")))?
        .to_string();
    let (raw_path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target.clone(), String::new()),
    };
    let mut headers = Vec::new();
    loop {
        let h = read_line_crlf(reader)?;
        if h.is_empty() {
            break;
        }
        let (k, v) = h
            .split_once(':')
            .ok_or_else(|| bad_data(format!("bad header {h:?}")))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let mut req = Request {
        method,
        path: percent_decode(&raw_path),
        query,
        headers,
        body: Vec::new(),
    };
    if req
        .header("Expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let chunked = req
        .header("Transfer-Encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        req.body = read_chunked(reader)?;
    } else if let Some(len) = req.header("Content-Length") {
        let len: usize = len.parse().map_err(|_| bad_data("bad Content-Length"))?;
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        req.body = body;
    }
    Ok(req)
}

fn read_chunked(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line_crlf(reader)?;
        let size_hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| bad_data(format!("bad chunk size {line:?}")))?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                if read_line_crlf(reader)?.is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let crlf = read_line_crlf(reader)?;
        if !crlf.is_empty() {
            return Err(bad_data("chunk not followed by CRLF"));
        }
    }
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

/// Standard base64 (with padding), for basic-auth headers.
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.len();
        let v = (chunk[0] as u32) << 16
            | (*chunk.get(1).unwrap_or(&0) as u32) << 8
            | *chunk.get(2).unwrap_or(&0) as u32;
        out.push(T[(v >> 18) as usize & 63] as char);
        out.push(T[(v >> 12) as usize & 63] as char);
        out.push(if n > 1 {
            T[(v >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if n > 2 {
            T[v as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

fn write_response(
    stream: &mut TcpStream,
    stats: &HttpStats,
    status: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {status}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    stream.write_all(head.as_bytes())?;
    stats
        .bytes_sent
        .fetch_add(head.len() as u64, Ordering::SeqCst);
    // Write the body in pieces so the byte counter follows the transfer.
    for piece in body.chunks(64 * 1024) {
        stream.write_all(piece)?;
        stats
            .bytes_sent
            .fetch_add(piece.len() as u64, Ordering::SeqCst);
    }
    stream.flush()
}

fn serve_http_conn(stream: TcpStream, ctx: &HttpCtx) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let peer = stream.peer_addr()?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let req = read_request(&mut reader, &mut writer)?;
    ctx.stats.requests.fetch_add(1, Ordering::SeqCst);
    let git_protocol = req.header("Git-Protocol").map(str::to_string);
    if let Some(authorization) = req.header("Authorization") {
        let mut seen = ctx.stats.authorizations.lock().expect("auth log lock");
        seen.push(authorization.to_string());
    }
    let cookies: Vec<String> = req
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("cookie"))
        .map(|(_, v)| v.clone())
        .collect();
    ctx.stats
        .cookies
        .lock()
        .expect("cookie log lock")
        .extend(cookies.iter().cloned());
    if let Some(wanted) = &ctx.opts.required_cookie {
        let sent = cookies
            .iter()
            .flat_map(|h| h.split(';'))
            .any(|pair| pair.trim() == wanted);
        if !sent {
            ctx.stats.log.lock().expect("log lock").push(format!(
                "{} {}?{} 403 git-protocol={:?}",
                req.method, req.path, req.query, git_protocol
            ));
            write_response(
                &mut writer,
                &ctx.stats,
                "403 Forbidden",
                &[("Content-Type".into(), "text/plain".into())],
                b"a session cookie is required\n",
            )?;
            return linger_close(writer, reader);
        }
    }

    let mut remote_user = None;
    let basic_auth = ctx.basic_auth.lock().expect("auth lock").clone();
    let bearer = ctx
        .opts
        .bearer_token
        .as_ref()
        .map(|t| ("bearer".to_string(), t.clone()));
    if let Some((user, pass)) = basic_auth.as_ref().or(bearer.as_ref()) {
        let expected = match &bearer {
            Some((_, token)) => format!("Bearer {token}"),
            None => format!("Basic {}", base64(format!("{user}:{pass}").as_bytes())),
        };
        if req.header("Authorization").map(str::trim) != Some(expected.as_str()) {
            ctx.stats.unauthorized.fetch_add(1, Ordering::SeqCst);
            ctx.stats.log.lock().expect("log lock").push(format!(
                "{} {}?{} 401 git-protocol={:?}",
                req.method, req.path, req.query, git_protocol
            ));
            write_response(
                &mut writer,
                &ctx.stats,
                "401 Unauthorized",
                &[
                    ("WWW-Authenticate".into(), "Basic realm=\"x\"".into()),
                    ("Content-Type".into(), "text/plain".into()),
                ],
                b"authentication required\n",
            )?;
            return linger_close(writer, reader);
        }
        remote_user = Some(user.clone());
    }

    let (status, headers, body) = run_http_backend(
        ctx,
        &req,
        peer,
        remote_user.as_deref(),
        git_protocol.as_deref(),
    )?;
    ctx.stats.log.lock().expect("log lock").push(format!(
        "{} {}?{} {} git-protocol={:?}",
        req.method, req.path, req.query, status, git_protocol
    ));
    write_response(&mut writer, &ctx.stats, &status, &headers, &body)?;
    linger_close(writer, reader)
}

/// Half-closes and drains whatever the client still sends, so the response
/// is not cut by a TCP reset when we close with unread input.
fn linger_close(writer: TcpStream, mut reader: BufReader<TcpStream>) -> io::Result<()> {
    let _ = writer.shutdown(Shutdown::Write);
    let _ = writer.set_read_timeout(Some(Duration::from_secs(2)));
    let mut sink = [0u8; 4096];
    while let Ok(n) = reader.read(&mut sink) {
        if n == 0 {
            break;
        }
    }
    Ok(())
}

type CgiResponse = (String, Vec<(String, String)>, Vec<u8>);

fn run_http_backend(
    ctx: &HttpCtx,
    req: &Request,
    peer: SocketAddr,
    remote_user: Option<&str>,
    git_protocol: Option<&str>,
) -> io::Result<CgiResponse> {
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
        .env("PATH_INFO", &req.path)
        .env("QUERY_STRING", &req.query)
        .env("REMOTE_ADDR", peer.ip().to_string())
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
    if let (Some(p), false) = (git_protocol, ctx.opts.protocol_v0_only) {
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

    // CGI response: header lines, blank line, body.
    let (head_end, sep_len) = match (find(&out, b"\r\n\r\n"), find(&out, b"\n\n")) {
        (Some(a), Some(b)) if b < a => (b, 2),
        (Some(a), _) => (a, 4),
        (None, Some(b)) => (b, 2),
        (None, None) => return Err(bad_data("http-backend produced no CGI header")),
    };
    let head = String::from_utf8_lossy(&out[..head_end]).into_owned();
    let body = out[head_end + sep_len..].to_vec();
    let mut status = "200 OK".to_string();
    let mut headers = Vec::new();
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
            status = v.to_string();
        } else if !["content-length", "transfer-encoding", "connection"]
            .contains(&k.to_ascii_lowercase().as_str())
        {
            headers.push((k.to_string(), v.to_string()));
        }
    }
    Ok((status, headers, body))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------
// Stall proxy

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Forward,
    /// Forward this many more server→client bytes, then stall.
    StallAfter(u64),
    Stalled,
}

struct ProxyShared {
    mode: Mutex<Mode>,
    cv: Condvar,
    stop: AtomicBool,
    from_server: AtomicU64,
    stall_hits: AtomicUsize,
    connections: AtomicUsize,
    streams: Mutex<Vec<TcpStream>>,
}

/// TCP proxy on 127.0.0.1:0 in front of `target`. Client→server bytes always
/// flow; server→client bytes can be held back (sockets stay open), which
/// looks to the client like a server stalling mid-transfer.
pub struct StallProxy {
    acceptor: Option<Acceptor>,
    shared: Arc<ProxyShared>,
}

impl StallProxy {
    pub fn start(target: SocketAddr) -> Self {
        assert!(
            target.ip().is_loopback(),
            "StallProxy only forwards to 127.0.0.1, got {target}"
        );
        let shared = Arc::new(ProxyShared {
            mode: Mutex::new(Mode::Forward),
            cv: Condvar::new(),
            stop: AtomicBool::new(false),
            from_server: AtomicU64::new(0),
            stall_hits: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            streams: Mutex::new(Vec::new()),
        });
        let shared2 = shared.clone();
        let acceptor = Acceptor::start("stall-proxy", move |client| {
            shared2.connections.fetch_add(1, Ordering::SeqCst);
            let server = match TcpStream::connect(target) {
                Ok(s) => s,
                Err(_) => return, // client sees the connection close
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            if let (Ok(c), Ok(s)) = (client.try_clone(), server.try_clone()) {
                let mut streams = shared2.streams.lock().expect("streams lock");
                streams.push(c);
                streams.push(s);
            }
            let closed = Arc::new(AtomicBool::new(false));
            let (c_rd, s_wr) = match (client.try_clone(), server.try_clone()) {
                (Ok(a), Ok(b)) => (a, b),
                _ => return,
            };
            let (sh, cl) = (shared2.clone(), closed.clone());
            let _ = std::thread::Builder::new()
                .name("stall-proxy-up".into())
                .spawn(move || pump_up(c_rd, s_wr, &sh, &cl));
            let (sh, cl) = (shared2.clone(), closed);
            let _ = std::thread::Builder::new()
                .name("stall-proxy-down".into())
                .spawn(move || pump_down(server, client, &sh, &cl));
        });
        StallProxy {
            acceptor: Some(acceptor),
            shared,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.acceptor.as_ref().expect("running").addr
    }

    pub fn port(&self) -> u16 {
        self.addr().port()
    }

    /// `git://127.0.0.1:PORT/<name>` (when the target is a [`GitDaemon`]).
    pub fn git_url(&self, name: &str) -> String {
        format!("git://{LOCALHOST}:{}/{name}", self.port())
    }

    /// `http://127.0.0.1:PORT/<name>` (when the target is an [`HttpGit`]).
    pub fn http_url(&self, name: &str) -> String {
        format!("http://{LOCALHOST}:{}/{name}", self.port())
    }

    fn set_mode(&self, m: Mode) {
        *self.shared.mode.lock().expect("mode lock") = m;
        self.shared.cv.notify_all();
    }

    /// Forward `n` more bytes from server to client (summed over all
    /// connections), then stop forwarding while keeping the sockets open.
    pub fn stall_after(&self, n: u64) {
        self.set_mode(if n == 0 {
            Mode::Stalled
        } else {
            Mode::StallAfter(n)
        });
    }

    /// Stop forwarding server→client bytes now.
    pub fn stall_now(&self) {
        self.set_mode(Mode::Stalled);
    }

    /// Forward everything again, including what was held back.
    pub fn resume(&self) {
        self.set_mode(Mode::Forward);
    }

    /// Whether server→client forwarding is currently stopped.
    pub fn is_stalled(&self) -> bool {
        *self.shared.mode.lock().expect("mode lock") == Mode::Stalled
    }

    /// How many times a connection had server bytes to forward but was held
    /// back: > 0 means a client is really hanging on the stall.
    pub fn stall_hits(&self) -> usize {
        self.shared.stall_hits.load(Ordering::SeqCst)
    }

    /// Server→client bytes forwarded so far.
    pub fn bytes_from_server(&self) -> u64 {
        self.shared.from_server.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

impl Drop for StallProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.cv.notify_all();
        drop(self.acceptor.take());
        if let Ok(streams) = self.shared.streams.lock() {
            for s in streams.iter() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}

fn close_both(a: &TcpStream, b: &TcpStream, closed: &AtomicBool, shared: &ProxyShared) {
    closed.store(true, Ordering::SeqCst);
    let _ = a.shutdown(Shutdown::Both);
    let _ = b.shutdown(Shutdown::Both);
    shared.cv.notify_all();
}

/// client → server: always forwarded. The client going away closes both sides.
fn pump_up(
    mut client: TcpStream,
    mut server: TcpStream,
    shared: &ProxyShared,
    closed: &AtomicBool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if server.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    close_both(&client, &server, closed, shared);
}

/// Blocks until `want` bytes (or part of them) may be forwarded; `None` when
/// the connection or the proxy is closing.
fn gate(shared: &ProxyShared, closed: &AtomicBool, want: usize) -> Option<usize> {
    let mut counted = false;
    let mut mode = shared.mode.lock().expect("mode lock");
    loop {
        if shared.stop.load(Ordering::SeqCst) || closed.load(Ordering::SeqCst) {
            return None;
        }
        match *mode {
            Mode::Forward => return Some(want),
            Mode::StallAfter(rem) => {
                let allowed = (want as u64).min(rem);
                *mode = if rem == allowed {
                    Mode::Stalled
                } else {
                    Mode::StallAfter(rem - allowed)
                };
                if allowed > 0 {
                    return Some(allowed as usize);
                }
            }
            Mode::Stalled => {
                if !counted {
                    counted = true;
                    shared.stall_hits.fetch_add(1, Ordering::SeqCst);
                }
                mode = shared
                    .cv
                    .wait_timeout(mode, Duration::from_millis(100))
                    .expect("mode lock")
                    .0;
            }
        }
    }
}

/// server → client, subject to the stall switch.
fn pump_down(
    mut server: TcpStream,
    mut client: TcpStream,
    shared: &ProxyShared,
    closed: &AtomicBool,
) {
    let mut buf = vec![0u8; 16 * 1024];
    'outer: loop {
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut off = 0;
        while off < n {
            let Some(allowed) = gate(shared, closed, n - off) else {
                break 'outer;
            };
            if client.write_all(&buf[off..off + allowed]).is_err() {
                break 'outer;
            }
            shared
                .from_server
                .fetch_add(allowed as u64, Ordering::SeqCst);
            off += allowed;
        }
    }
    close_both(&server, &client, closed, shared);
}

// ---------------------------------------------------------------------------
// Black hole

/// Accepts TCP connections on 127.0.0.1 and never answers (reads and
/// discards whatever arrives, keeps the connection open).
pub struct BlackHole {
    acceptor: Option<Acceptor>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
    connections: Arc<AtomicUsize>,
}

impl BlackHole {
    pub fn start() -> Self {
        let streams: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (streams2, connections2) = (streams.clone(), connections.clone());
        let acceptor = Acceptor::start("black-hole", move |mut stream| {
            connections2.fetch_add(1, Ordering::SeqCst);
            if let Ok(c) = stream.try_clone() {
                streams2.lock().expect("streams lock").push(c);
            }
            let _ = std::thread::Builder::new()
                .name("black-hole-conn".into())
                .spawn(move || {
                    let mut sink = [0u8; 4096];
                    while let Ok(n) = stream.read(&mut sink) {
                        if n == 0 {
                            break;
                        }
                    }
                });
        });
        BlackHole {
            acceptor: Some(acceptor),
            streams,
            connections,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.acceptor.as_ref().expect("running").addr
    }

    pub fn port(&self) -> u16 {
        self.addr().port()
    }

    pub fn git_url(&self, name: &str) -> String {
        format!("git://{LOCALHOST}:{}/{name}", self.port())
    }

    pub fn http_url(&self, name: &str) -> String {
        format!("http://{LOCALHOST}:{}/{name}", self.port())
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        drop(self.acceptor.take());
        if let Ok(streams) = self.streams.lock() {
            for s in streams.iter() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// TLS: a throw-away CA and a TLS-terminating proxy

/// Panics with an installation hint unless `program` runs (`program <version_arg>`).
fn require_tool(program: &str, version_arg: &str, hint: &str) {
    let ok = Command::new(program)
        .arg(version_arg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        panic!("`{program}` is not usable (`{program} {version_arg}` failed): {hint}");
    }
}

const OPENSSL_HINT: &str = "install the OpenSSL CLI (Debian/Ubuntu: apt-get install openssl)";

/// OpenSSL configuration for [`TestCa`]: self-contained, so the host's
/// openssl.cnf plays no part. Sections are chosen with `-extensions`.
const TEST_CA_OPENSSL_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no

[dn]
CN = git-sidecar-it (overridden by -subj)

[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash

[server_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
";

/// A certificate authority made for one test with the `openssl` CLI: a
/// self-signed CA (`ca_pem`) and a server certificate for 127.0.0.1
/// (subjectAltName `IP:127.0.0.1`, `DNS:localhost`) signed by it
/// (`cert_pem`, private key `key_pem`). EC P-256 keys, valid for two days.
/// The files live in a temporary directory removed on drop.
pub struct TestCa {
    pub dir: tempfile::TempDir,
    /// The CA certificate: what a client must trust.
    pub ca_pem: PathBuf,
    /// The server certificate (leaf only; the CA is the trust anchor).
    pub cert_pem: PathBuf,
    /// The server certificate's private key (PKCS#8, unencrypted).
    pub key_pem: PathBuf,
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    pub fn new() -> Self {
        require_tool("openssl", "version", OPENSSL_HINT);
        let dir = super::tempdir("test-ca");
        let d = dir.path();
        let cnf = d.join("openssl.cnf");
        std::fs::write(&cnf, TEST_CA_OPENSSL_CNF).expect("writing openssl.cnf");
        let p = |name: &str| d.join(name).to_string_lossy().into_owned();
        let cnf_s = p("openssl.cnf");
        // A distinct name per CA: two CAs sharing a subject would make a
        // verifier holding the wrong one report a bad signature instead of
        // an unknown issuer.
        let ca_subject = format!(
            "/CN=git-sidecar-it throw-away CA {:016x}",
            fastrand::u64(..)
        );
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        openssl(
            d,
            &[
                &["req", "-x509", "-config", &cnf_s, "-extensions", "ca_ext"][..],
                &["-subj", &ca_subject][..],
                &ec[..],
                &["-nodes", "-keyout", &p("ca.key"), "-out", &p("ca.pem")],
                &["-days", "2"],
            ]
            .concat(),
        );
        openssl(
            d,
            &[
                &["req", "-new", "-config", &cnf_s, "-subj", "/CN=127.0.0.1"][..],
                &ec[..],
                &[
                    "-nodes",
                    "-keyout",
                    &p("server.key"),
                    "-out",
                    &p("server.csr"),
                ],
            ]
            .concat(),
        );
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &p("server.csr"),
                "-CA",
                &p("ca.pem"),
                "-CAkey",
                &p("ca.key"),
                "-set_serial",
                &format!("0x{:016x}", fastrand::u64(1..)),
                "-days",
                "2",
                "-extfile",
                &cnf_s,
                "-extensions",
                "server_ext",
                "-out",
                &p("server.pem"),
            ],
        );
        TestCa {
            ca_pem: d.join("ca.pem"),
            cert_pem: d.join("server.pem"),
            key_pem: d.join("server.key"),
            dir,
        }
    }
}

/// Runs `openssl <args>` in `dir` (isolated from the host's OPENSSL_CONF),
/// panicking with its output on failure.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .env("OPENSSL_CONF", dir.join("openssl.cnf"))
        .env("RANDFILE", dir.join(".rnd"))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl ({e}): {OPENSSL_HINT}"));
    if !out.status.success() {
        panic!(
            "openssl {} failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The TLS proxy run by [`TlsProxy`]: `python3 - CERT KEY TARGET_PORT`.
/// Listens on 127.0.0.1:0, prints the port, then for each connection (one
/// thread each) does the TLS handshake and relays decrypted bytes to and
/// from 127.0.0.1:TARGET_PORT in a single select loop (an SSL object must
/// not be used from two threads at once). Logs one line per event on
/// stderr; exits when its stdin closes (the test process went away).
const TLS_PROXY_PY: &str = r#"
import os, select, socket, ssl, sys, threading

cert, key, target_port = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.minimum_version = ssl.TLSVersion.TLSv1_2
ctx.load_cert_chain(cert, key)

def log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()

def send_all_tls(tls, data):
    view = memoryview(data)
    while view:
        try:
            n = tls.send(view)
            view = view[n:]
        except ssl.SSLWantWriteError:
            select.select([], [tls], [], 30)
        except ssl.SSLWantReadError:
            select.select([tls], [], [], 30)

def relay(tls, plain):
    tls.setblocking(False)
    while True:
        if tls.pending():
            readable = [tls]
        else:
            readable, _, _ = select.select([tls, plain], [], [], 120)
            if not readable:
                log("idle connection closed")
                return
        if tls in readable:
            try:
                data = tls.recv(64 * 1024)
            except ssl.SSLWantReadError:
                data = None
            except (ssl.SSLError, OSError) as e:
                log("client read error: %s" % e)
                return
            if data == b"":
                return
            if data:
                plain.sendall(data)
        if plain in readable:
            data = plain.recv(64 * 1024)
            if not data:
                return
            send_all_tls(tls, data)

def serve(conn, peer):
    tls = plain = None
    try:
        conn.settimeout(30)
        try:
            tls = ctx.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError) as e:
            log("handshake failed from %s:%d: %s" % (peer[0], peer[1], e))
            return
        log("handshake ok from %s:%d (%s)" % (peer[0], peer[1], tls.version()))
        plain = socket.create_connection(("127.0.0.1", target_port), timeout=30)
        plain.settimeout(None)
        relay(tls, plain)
    except Exception as e:
        log("relay error: %r" % (e,))
    finally:
        for s in (tls, plain, conn):
            if s is not None:
                try:
                    s.close()
                except Exception:
                    pass

def watch_stdin():
    while sys.stdin.buffer.read(4096):
        pass
    os._exit(0)

listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", 0))
listener.listen(128)
threading.Thread(target=watch_stdin, daemon=True).start()
print(listener.getsockname()[1], flush=True)
while True:
    conn, peer = listener.accept()
    threading.Thread(target=serve, args=(conn, peer), daemon=True).start()
"#;

const PYTHON_HINT: &str =
    "install Python 3 with its ssl module (Debian/Ubuntu: apt-get install python3 openssl)";

/// A TLS-terminating TCP proxy on 127.0.0.1:0 in front of `target` (e.g. an
/// [`HttpGit`], which makes `https://127.0.0.1:PORT/<name>` work). It is a
/// `python3` process using the `ssl` module (no TLS crate among the test
/// dependencies); it is killed when this value is dropped.
pub struct TlsProxy {
    child: Child,
    addr: SocketAddr,
    log_dir: tempfile::TempDir,
}

impl TlsProxy {
    /// Serves the certificate chain `cert_pem` with key `key_pem` (PEM files)
    /// and forwards decrypted bytes to `target`, which must be on 127.0.0.1.
    pub fn start(target: SocketAddr, cert_pem: &Path, key_pem: &Path) -> Self {
        assert!(
            target.ip().is_loopback(),
            "TlsProxy only forwards to 127.0.0.1, got {target}"
        );
        require_tool("python3", "--version", PYTHON_HINT);
        let log_dir = super::tempdir("tls-proxy");
        let script = log_dir.path().join("tls_proxy.py");
        std::fs::write(&script, TLS_PROXY_PY).expect("writing the TLS proxy script");
        let log_path = log_dir.path().join("tls-proxy.log");
        let log = std::fs::File::create(&log_path).expect("creating the TLS proxy log");
        let mut child = Command::new("python3")
            .arg("-u")
            .arg(&script)
            .arg(cert_pem)
            .arg(key_pem)
            .arg(target.port().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start python3 ({e}): {PYTHON_HINT}"));
        let mut line = String::new();
        let read = BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut line);
        let port = match (read, line.trim().parse::<u16>()) {
            (Ok(_), Ok(port)) => port,
            (read, _) => {
                let _ = child.kill();
                let status = child.wait();
                panic!(
                    "the TLS proxy (python3 {}) did not report its port (read: {read:?}, \
                     line: {line:?}, exit: {status:?}); {PYTHON_HINT}\n--- its stderr ---\n{}",
                    script.display(),
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
        };
        TlsProxy {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log_dir,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `https://127.0.0.1:PORT/<name>`.
    pub fn url(&self, name: &str) -> String {
        format!("https://{LOCALHOST}:{}/{name}", self.port())
    }

    /// What the proxy logged: one line per handshake (ok or failed) and per error.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_dir.path().join("tls-proxy.log")).unwrap_or_default()
    }

    /// Completed TLS handshakes so far.
    pub fn handshakes_ok(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.starts_with("handshake ok"))
            .count()
    }

    /// Failed TLS handshakes so far (e.g. the client rejected the certificate).
    pub fn handshakes_failed(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.starts_with("handshake failed"))
            .count()
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// Fault proxy: resets and garbage

/// What a [`FaultProxy`] does with a connection accepted while it is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Relay both ways to the target: a healthy server.
    Forward,
    /// Reset (RST, SO_LINGER 0) as soon as the connection is accepted.
    ResetOnAccept,
    /// Read the client's first bytes, then reset.
    ResetAfterRequest,
    /// Relay this many server→client bytes, then reset both sides.
    ResetMidResponse(u64),
    /// Read the client's first bytes, answer 4 KiB of random bytes, close.
    Garbage,
    /// Read the request, answer `200 OK` with a git content type and a
    /// random body (for http://: well-formed HTTP, nonsense git).
    GarbageHttp200,
}

struct FaultShared {
    fault: Mutex<Fault>,
    connections: AtomicUsize,
}

/// TCP proxy on 127.0.0.1:0 in front of `target` that misbehaves as told
/// by [`FaultProxy::set`]; each connection follows the fault in force when
/// it was accepted.
pub struct FaultProxy {
    acceptor: Option<Acceptor>,
    shared: Arc<FaultShared>,
}

impl FaultProxy {
    pub fn start(target: SocketAddr) -> Self {
        assert!(
            target.ip().is_loopback(),
            "FaultProxy only forwards to 127.0.0.1, got {target}"
        );
        let shared = Arc::new(FaultShared {
            fault: Mutex::new(Fault::Forward),
            connections: AtomicUsize::new(0),
        });
        let shared2 = shared.clone();
        // No copies of the client sockets are kept: a reset only happens
        // when the last descriptor of a socket is closed.
        let acceptor = Acceptor::start("fault-proxy", move |client| {
            let n = shared2.connections.fetch_add(1, Ordering::SeqCst);
            let fault = *shared2.fault.lock().expect("fault lock");
            let _ = std::thread::Builder::new()
                .name("fault-proxy-conn".into())
                .spawn(move || serve_fault(client, target, fault, n as u64));
        });
        FaultProxy {
            acceptor: Some(acceptor),
            shared,
        }
    }

    /// Changes the behaviour for connections accepted from now on.
    pub fn set(&self, fault: Fault) {
        *self.shared.fault.lock().expect("fault lock") = fault;
    }

    pub fn port(&self) -> u16 {
        self.acceptor.as_ref().expect("running").addr.port()
    }

    pub fn git_url(&self, name: &str) -> String {
        format!("git://{LOCALHOST}:{}/{name}", self.port())
    }

    pub fn http_url(&self, name: &str) -> String {
        format!("http://{LOCALHOST}:{}/{name}", self.port())
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        drop(self.acceptor.take());
    }
}

fn serve_fault(mut client: TcpStream, target: SocketAddr, fault: Fault, seed: u64) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(10)));
    match fault {
        Fault::Forward => relay(client, target, None),
        Fault::ResetMidResponse(n) => relay(client, target, Some(n)),
        Fault::ResetOnAccept => reset(client),
        Fault::ResetAfterRequest => {
            read_some(&mut client);
            reset(client);
        }
        Fault::Garbage => {
            read_some(&mut client);
            let _ = client.write_all(&random_bytes(seed, 4096));
        }
        Fault::GarbageHttp200 => {
            read_some(&mut client);
            let body = random_bytes(seed, 4096);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/x-git-upload-pack-advertisement\r\n\
                 Cache-Control: no-cache\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = client.write_all(head.as_bytes());
            let _ = client.write_all(&body);
        }
    }
}

fn random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x6a72_6261_6765);
    let mut v = vec![0u8; n];
    rng.fill(&mut v);
    v
}

/// Waits for the client's first bytes (its request), whatever they are.
fn read_some(client: &mut TcpStream) {
    let mut buf = [0u8; 4096];
    let _ = client.read(&mut buf);
}

/// Closes with a TCP reset instead of a FIN: SO_LINGER on with a zero
/// timeout, then a read shutdown that wakes a thread blocked reading a
/// copy of the socket (so that copy is dropped too: the reset is sent when
/// the last descriptor closes).
fn reset(stream: TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the fd is open (owned by `stream`) and the option value is a
    // `linger` of exactly the size passed.
    unsafe {
        nix::libc::setsockopt(
            stream.as_raw_fd(),
            nix::libc::SOL_SOCKET,
            nix::libc::SO_LINGER,
            (&linger as *const nix::libc::linger).cast(),
            std::mem::size_of::<nix::libc::linger>() as nix::libc::socklen_t,
        );
    }
    let _ = stream.shutdown(Shutdown::Read);
    drop(stream);
}

/// Relays between `client` and a new connection to `target`; with `cut`,
/// resets both after that many server→client bytes.
fn relay(client: TcpStream, target: SocketAddr, cut: Option<u64>) {
    let Ok(server) = TcpStream::connect(target) else {
        return reset(client);
    };
    let _ = client.set_read_timeout(None);
    let (Ok(mut c_rd), Ok(mut s_wr)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let up = std::thread::spawn(move || {
        let _ = io::copy(&mut c_rd, &mut s_wr);
        let _ = s_wr.shutdown(Shutdown::Write);
    });
    relay_down(server, client, cut);
    let _ = up.join();
}

fn relay_down(mut server: TcpStream, mut client: TcpStream, cut: Option<u64>) {
    let mut left = cut.unwrap_or(u64::MAX);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n.min(usize::try_from(left).unwrap_or(usize::MAX)),
        };
        if client.write_all(&buf[..n]).is_err() {
            break;
        }
        left -= n as u64;
        if left == 0 {
            let _ = server.shutdown(Shutdown::Both);
            return reset(client);
        }
    }
    let _ = client.shutdown(Shutdown::Write);
}

// ---------------------------------------------------------------------------
// nginx

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
        let dir = super::tempdir("nginx");
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
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
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

fn spawn_nginx(mut cmd: Command) -> Child {
    cmd.process_group(0);
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Some(nix::sys::signal::Signal::SIGKILL))
                .map_err(io::Error::from)
        });
    }
    cmd.spawn()
        .unwrap_or_else(|e| panic!("cannot start {NGINX}: {e}"))
}

/// True once something accepts on 127.0.0.1:`port`; false if nginx exits first.
fn wait_for_listener(child: &mut Child, port: u16) -> bool {
    super::poll_until(super::DEADLINE, || {
        if !matches!(child.try_wait(), Ok(None)) {
            return true;
        }
        TcpStream::connect((LOCALHOST, port)).is_ok()
    }) && matches!(child.try_wait(), Ok(None))
}
