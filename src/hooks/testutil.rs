//! Test helpers: a real loopback HTTP server, hook scripts, polling.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Publish;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub(super) struct Request {
    pub method: String,
    pub path: String,
    /// Names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Names as sent, in order.
    pub names_sent: Vec<String>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A one-thread HTTP/1.1 server on 127.0.0.1 that answers each request with
/// the next status of a list (the last one repeats), or never answers.
pub(super) struct Server {
    pub addr: std::net::SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Server {
    pub fn answering(statuses: &[u16]) -> Self {
        Self::start(Some(statuses.to_vec()))
    }

    /// Accepts connections and reads requests but never answers.
    pub fn silent() -> Self {
        Self::start(None)
    }

    fn start(statuses: Option<Vec<u16>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(stream) = stream else { continue };
                let Some(request) = read_request(&stream) else {
                    continue;
                };
                seen.lock().expect("lock").push(request);
                match &statuses {
                    Some(statuses) => {
                        let status = statuses.get(n).or(statuses.last()).copied().unwrap_or(200);
                        answer(stream, status);
                    }
                    None => held.push(stream),
                }
            }
        });
        Self { addr, requests }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("lock").clone()
    }
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    let mut names_sent = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        names_sent.push(name.trim().to_string());
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        path,
        headers,
        names_sent,
        body,
    })
}

fn answer(mut stream: TcpStream, status: u16) {
    let body = format!("status {status} body");
    let _ = write!(
        stream,
        "HTTP/1.1 {status} Whatever\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
}

/// Writes an executable `#!/bin/sh` script. Tests run it as `/bin/sh
/// <script>` where possible: exec'ing a file just written races with forks
/// in other test threads (ETXTBSY).
pub(super) fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

pub(super) fn publish(hash: &str, worktree: &Path) -> Publish {
    Publish {
        hash: hash.to_string(),
        previous: None,
        git_ref: "main".to_string(),
        repo_redacted: "https://user:REDACTED@example.com/r.git".to_string(),
        worktree: worktree.to_path_buf(),
    }
}

/// Polls `check` every 10 ms for up to 10 s.
pub(super) async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Lines of a file (none when it does not exist).
pub(super) fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|s| s.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// `git_sync_hook_run_count_total{name,status}` from the text exposition.
pub(super) fn hook_count(metrics: &crate::metrics::Metrics, name: &str, status: &str) -> u64 {
    metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("git_sync_hook_run_count_total{"))
        .filter(|l| {
            l.contains(&format!("name=\"{name}\"")) && l.contains(&format!("status=\"{status}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Whether the process is gone (or a zombie nobody reaped yet).
pub(super) fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
    }
}
