//! Serving under load: a real nginx serves the published link while the
//! sidecar publishes 500 generations, one after the other, and a few
//! keep-alive clients send a fixed number of GETs spread over that window.
//! Every page carries its generation at its start and its end with tens of
//! KB of generation-specific bytes between, so a torn read or a mix of two
//! commits cannot pass: every response must be 200 and byte-identical to
//! the page of one generation that was published while it was in flight.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::start_with_http;
use crate::support::client;
use crate::support::servers::Nginx;
use crate::support::*;

/// Generations published after the first.
const GENERATIONS: usize = 500;
/// Requests sent in total, by all clients together.
const REQUESTS: usize = 40_000;
const CLIENTS: usize = 4;
/// Pages and their approximate sizes; `index.html` changes in every
/// generation, the others in about every third.
const PAGES: [(&str, usize); 6] = [
    ("index.html", 2_000),
    ("a.html", 20_000),
    ("b.html", 50_000),
    ("c.html", 100_000),
    ("docs/d.html", 8_000),
    ("style.css", 3_000),
];
const TOKEN: &str = "campaign-serving-token";

/// The page `page` as generation `generation` writes it.
fn page_content(page: usize, generation: usize) -> Vec<u8> {
    let (name, size) = PAGES[page];
    let mut out = format!("<!-- START {name} generation {generation:04} -->\n");
    let mut line = 0;
    while out.len() < size {
        out.push_str(&format!(
            "<p>{name} generation {generation:04} line {line:06}</p>\n"
        ));
        line += 1;
    }
    out.push_str(&format!("<!-- END {name} generation {generation:04} -->\n"));
    out.into_bytes()
}

/// Whether `page` changes in `generation` (generation 0 writes them all).
fn changes(page: usize, generation: usize) -> bool {
    generation == 0 || page == 0 || (generation + page).is_multiple_of(3)
}

/// Every version of every page, and the commit of every generation.
struct Site {
    /// Per page: (generation that wrote it, content), ascending.
    versions: Vec<Vec<(usize, Vec<u8>)>>,
    commits: Vec<String>,
}

impl Site {
    /// All generations as commits in `up` (one `git fast-import`), no ref moved yet.
    fn import(up: &Upstream) -> Self {
        let mut versions = vec![Vec::new(); PAGES.len()];
        let mut stream = Vec::new();
        for generation in 0..=GENERATIONS {
            let msg = format!("generation {generation}\n");
            stream.extend(
                format!(
                    "commit refs/heads/staging\nmark :{}\n\
                     committer Test <t@example.invalid> {} +0000\ndata {}\n{msg}",
                    generation + 1,
                    1_700_000_000 + generation,
                    msg.len()
                )
                .into_bytes(),
            );
            for (page, list) in versions.iter_mut().enumerate() {
                if changes(page, generation) {
                    let content = page_content(page, generation);
                    stream.extend(
                        format!(
                            "M 100644 inline {}\ndata {}\n",
                            PAGES[page].0,
                            content.len()
                        )
                        .into_bytes(),
                    );
                    stream.extend_from_slice(&content);
                    stream.push(b'\n');
                    list.push((generation, content));
                }
            }
        }
        let commits = up.fast_import(&stream);
        assert_eq!(commits.len(), GENERATIONS + 1, "one commit per generation");
        Site { versions, commits }
    }

    /// Checks one response for `page` sent while generations `lo..=hi`
    /// may have been published; returns the generation that wrote the body.
    fn judge(
        &self,
        page: usize,
        status: u16,
        body: &[u8],
        lo: usize,
        hi: usize,
    ) -> Result<usize, String> {
        let name = PAGES[page].0;
        if status != 200 {
            return Err(format!("{name}: status {status}"));
        }
        let list = &self.versions[page];
        let start = String::from_utf8_lossy(&body[..body.len().min(64)]).into_owned();
        let Some(i) = list.iter().position(|(g, c)| {
            start.starts_with(&format!("<!-- START {name} generation {g:04} -->")) && c == body
        }) else {
            return Err(format!(
                "{name}: {} bytes matching no published version (starts {start:?}, ends {:?})",
                body.len(),
                String::from_utf8_lossy(&body[body.len().saturating_sub(48)..])
            ));
        };
        let written = list[i].0;
        let replaced = list.get(i + 1).map_or(usize::MAX, |(g, _)| *g);
        if written > hi || replaced <= lo {
            return Err(format!(
                "{name}: generation {written} (live until {replaced}) served while {lo}..={hi} were current"
            ));
        }
        Ok(written)
    }
}

/// How far publishing has got, shared with the clients.
struct Progress {
    /// Newest generation whose ref was moved (it may be published any moment).
    pushed: AtomicUsize,
    /// Newest generation seen published by the test.
    confirmed: AtomicUsize,
    finished: AtomicBool,
    started: Instant,
    last_confirmed_at: Mutex<Instant>,
}

impl Progress {
    fn new() -> Self {
        Progress {
            pushed: AtomicUsize::new(0),
            confirmed: AtomicUsize::new(0),
            finished: AtomicBool::new(false),
            started: Instant::now(),
            last_confirmed_at: Mutex::new(Instant::now()),
        }
    }

    fn confirm(&self, generation: usize) {
        *self.last_confirmed_at.lock().expect("progress lock") = Instant::now();
        self.confirmed.store(generation, Ordering::SeqCst);
    }

    /// Publishing progress in generations, interpolated between two
    /// publishes from the average publish time so far.
    fn position(&self) -> f64 {
        let done = self.confirmed.load(Ordering::SeqCst);
        let last = *self.last_confirmed_at.lock().expect("progress lock");
        let average = (last - self.started).as_secs_f64() / done.max(1) as f64;
        let since = last.elapsed().as_secs_f64();
        done as f64 + (since / average.max(1e-3)).min(1.0)
    }

    /// Blocks until the request at `share` (0..1) of a client's quota is due:
    /// requests are spread evenly over the publishing window.
    fn wait_turn(&self, share: f64) {
        let due = share * GENERATIONS as f64;
        while !self.finished.load(Ordering::SeqCst) && self.position() < due {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// What one client saw.
#[derive(Default)]
struct Tally {
    requests: usize,
    /// Requests resent after the server closed an idle keep-alive connection.
    resent: usize,
    failures: Vec<String>,
    /// (page, generation that wrote the body) pairs served.
    versions: BTreeSet<(usize, usize)>,
}

/// A keep-alive HTTP/1.1 connection to nginx. Raw on purpose: the test
/// needs one connection reused across link swaps and to see when nginx
/// closes it, which an HTTP client's pool hides.
struct KeepAlive {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl KeepAlive {
    fn connect(addr: &str) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(client::IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(KeepAlive {
            writer: stream.try_clone()?,
            reader: BufReader::new(stream),
        })
    }

    /// `GET path`; returns the status and the body (Content-Length
    /// delimited). A connection closed before the first byte of the answer
    /// is `ConnectionAborted`.
    fn get(&mut self, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
        let aborted =
            |_: std::io::Error| std::io::Error::from(std::io::ErrorKind::ConnectionAborted);
        write!(
            self.writer,
            "GET /{path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        )
        .map_err(aborted)?;
        let mut first = String::new();
        if self.reader.read_line(&mut first).map_err(aborted)? == 0 {
            return Err(std::io::ErrorKind::ConnectionAborted.into());
        }
        let status = first
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3)?.parse().ok())
            .unwrap_or(0);
        let mut length = 0;
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        Ok((status, body))
    }
}

/// One client: its share of [`REQUESTS`], paced over the publishing window.
fn run_client(id: usize, addr: String, site: Arc<Site>, progress: Arc<Progress>) -> Tally {
    let quota = REQUESTS / CLIENTS;
    let mut rng = fastrand::Rng::with_seed(0x10ad + id as u64);
    let mut tally = Tally::default();
    let mut conn = None;
    for k in 0..quota {
        progress.wait_turn((k as f64 + id as f64 / CLIENTS as f64) / quota as f64);
        let page = rng.usize(..PAGES.len());
        let lo = progress.confirmed.load(Ordering::SeqCst);
        let answer = fetch(&mut conn, &addr, PAGES[page].0, &mut tally.resent);
        let hi = progress.pushed.load(Ordering::SeqCst);
        tally.requests += 1;
        match answer {
            Ok((status, body)) => match site.judge(page, status, &body, lo, hi) {
                Ok(generation) => {
                    tally.versions.insert((page, generation));
                }
                Err(e) => tally.failures.push(e),
            },
            Err(e) => tally.failures.push(format!("{}: {e}", PAGES[page].0)),
        }
    }
    tally
}

/// `GET path` on the open connection, or a new one. When the server closed
/// a reused keep-alive connection before answering (nginx does when its
/// workers are replaced, e.g. another test's sidecar signals every nginx
/// master), the request is sent once more on a new connection, as HTTP
/// clients do for idempotent requests.
fn fetch(
    conn: &mut Option<KeepAlive>,
    addr: &str,
    path: &str,
    resent: &mut usize,
) -> std::io::Result<(u16, Vec<u8>)> {
    if let Some(mut c) = conn.take() {
        match c.get(path) {
            Ok(answer) => {
                *conn = Some(c);
                return Ok(answer);
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => *resent += 1,
            Err(e) => return Err(e),
        }
    }
    let mut c = KeepAlive::connect(addr)?;
    let answer = c.get(path)?;
    *conn = Some(c);
    Ok(answer)
}

/// Moves `main` to each generation in turn, asks for a sync and waits until
/// the link shows it. Returns the time each publish took.
fn publish_all(
    up: &Upstream,
    site: &Site,
    s: &Scratch,
    run: &Running,
    addr: &str,
    progress: &Progress,
) -> Vec<Duration> {
    let auth = format!("Bearer {TOKEN}");
    let mut took = Vec::with_capacity(GENERATIONS);
    for generation in 1..=GENERATIONS {
        let sha = &site.commits[generation];
        let t0 = Instant::now();
        progress.pushed.store(generation, Ordering::SeqCst);
        up.update_ref("refs/heads/main", sha);
        let r = client::post(addr, "/sync", &[("Authorization", &auth)], b"")
            .unwrap_or_else(|e| panic!("POST /sync: {e}\n{}", run.logs()));
        assert_eq!(r.status, 202, "POST /sync: {r}");
        let published = poll_fine(DEADLINE, || s.published().as_deref() == Some(sha.as_str()));
        assert!(
            published,
            "generation {generation} ({sha}) not published within {DEADLINE:?}\n{}",
            run.logs()
        );
        progress.confirm(generation);
        took.push(t0.elapsed());
    }
    took
}

/// Like [`poll_until`] with a 2 ms interval: publish latency is part of what is measured.
fn poll_fine(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}

#[test]
fn nginx_serves_only_whole_commits_during_500_publishes() {
    let up = Upstream::new();
    let t0 = Instant::now();
    let site = Arc::new(Site::import(&up));
    up.update_ref("refs/heads/main", &site.commits[0]);
    println!(
        "imported {} commits in {:?}",
        site.commits.len(),
        t0.elapsed()
    );

    let s = Scratch::new();
    let token = s.dir.path().join("token");
    std::fs::write(&token, TOKEN).expect("writing the token file");
    let (run, addr) = start_with_http(
        s.sidecar(&up.file_url())
            .args(["--period", "1s", "--incoming-webhook-rate-limit", "1000000"])
            .arg("--sync-trigger-token-file")
            .arg(&token),
    );
    run.wait_for_link_hash(&s.link(), &site.commits[0]);
    let mut nginx = Nginx::start(&s.link());

    let progress = Arc::new(Progress::new());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let (addr, site, progress) = (nginx.addr(), site.clone(), progress.clone());
            std::thread::spawn(move || run_client(id, addr, site, progress))
        })
        .collect();
    let window = Instant::now();
    let took = publish_all(&up, &site, &s, &run, &addr, &progress);
    let window = window.elapsed();
    progress.finished.store(true, Ordering::SeqCst);
    let tallies: Vec<Tally> = clients
        .into_iter()
        .map(|c| c.join().expect("client thread"))
        .collect();

    report_and_check(&tallies, &took, window, &mut nginx, &run);
    let last = site.commits.last().expect("commits");
    assert_tree_matches_commit(&s.link(), &up, last);
    run.assert_running();
}

fn report_and_check(
    tallies: &[Tally],
    took: &[Duration],
    window: Duration,
    nginx: &mut Nginx,
    run: &Running,
) {
    let requests: usize = tallies.iter().map(|t| t.requests).sum();
    let resent: usize = tallies.iter().map(|t| t.resent).sum();
    let failures: Vec<&String> = tallies.iter().flat_map(|t| &t.failures).collect();
    let versions: BTreeSet<(usize, usize)> = tallies
        .iter()
        .flat_map(|t| t.versions.iter().copied())
        .collect();
    let index_generations = versions.iter().filter(|(p, _)| *p == 0).count();
    let mut sorted = took.to_vec();
    sorted.sort();
    println!(
        "serving under load: {GENERATIONS} publishes in {window:?} (median {:?}, max {:?}); \
         {requests} requests from {CLIENTS} keep-alive clients ({resent} resent on a new \
         connection), {} failed; \
         {} distinct page versions served, index.html of {index_generations} distinct generations",
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1],
        failures.len(),
        versions.len(),
    );
    assert_eq!(requests, REQUESTS, "every client sent its whole quota");
    assert!(
        failures.is_empty(),
        "{} of {requests} responses were not a whole published page, first ones:\n{}\n{}",
        failures.len(),
        failures
            .iter()
            .take(10)
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        nginx.error_log()
    );
    // The load overlapped the publishing: most generations were seen live.
    assert!(
        index_generations > GENERATIONS / 2,
        "only {index_generations} generations of index.html were served: the load missed the publishing window\n{}",
        run.logs()
    );
    assert!(nginx.is_running(), "nginx died\n{}", nginx.error_log());
}
