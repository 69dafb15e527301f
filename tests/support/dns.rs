//! A real DNS server for tests that resolve names: `dnsmasq` (Debian
//! package `dnsmasq-base`) answering from a hosts file the test writes,
//! as a headless Service's DNS answers with one A record per ready pod.
//!
//! How the program under test is pointed at it, without touching the
//! machine: dnsmasq listens on port 53 of a loopback address of the test's
//! own (`127.X.Y.1`, see [`Subnet`]), and the sidecar runs with
//! [`Sidecar::resolv_conf`](super::Sidecar::resolv_conf): a private mount
//! namespace in which [`Dnsmasq::resolv_conf`] (`nameserver 127.X.Y.1`) is
//! bind-mounted over `/etc/resolv.conf`, so glibc's `getaddrinfo` (what the
//! product uses) asks dnsmasq. Port 53, because resolv.conf cannot name
//! another port; root, for port 53 and the mount namespace (tests run as
//! root). Each test gets a distinct 127.X.Y.0/24 (all of 127/8 is loopback
//! on Linux), so tests run in parallel without sharing a port or an address.
//!
//! [`FakeDns`] is a scripted server for what dnsmasq cannot do: lose a
//! lookup, or deny a name.
//!
//! Membership changes: [`Dnsmasq::set_hosts`] rewrites the hosts file and
//! sends SIGHUP (dnsmasq re-reads `--addn-hosts` files), then waits for the
//! log line saying it did.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{poll_until, wait_until, DEADLINE};

/// A 127.X.Y.0/24 of this test's own: `.1` is the DNS server, the others
/// are for the test's servers.
#[derive(Debug, Clone, Copy)]
pub struct Subnet {
    x: u8,
    y: u8,
}

impl Subnet {
    /// A /24 no other test of this process uses (and, by X from the PID,
    /// most likely none of a concurrently running test binary).
    pub fn new() -> Self {
        static NEXT: AtomicU8 = AtomicU8::new(1);
        let y = NEXT.fetch_add(1, Ordering::SeqCst);
        assert!(y < 255, "more than 254 DNS subnets in one test process");
        let x = 100 + (std::process::id() % 150) as u8;
        Subnet { x, y }
    }

    /// `127.X.Y.host`.
    pub fn ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, self.x, self.y, host)
    }
}

impl Default for Subnet {
    fn default() -> Self {
        Self::new()
    }
}

/// A running dnsmasq answering `name` from a hosts file; killed on drop.
pub struct Dnsmasq {
    child: Child,
    dir: tempfile::TempDir,
    listen: Ipv4Addr,
}

fn require_dnsmasq() -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        let p = Path::new(dir).join("dnsmasq");
        if p.exists() {
            return p;
        }
    }
    panic!(
        "dnsmasq not found: these tests need a real DNS server; install it with \
         `apt-get install -y dnsmasq-base`"
    );
}

impl Dnsmasq {
    /// Starts dnsmasq on `subnet.ip(1)`:53 answering `name` with `ips`
    /// (A records), nothing else (no upstream, no /etc/hosts).
    pub fn start(subnet: Subnet, name: &str, ips: &[Ipv4Addr]) -> Self {
        let program = require_dnsmasq();
        let dir = super::tempdir("dnsmasq");
        let listen = subnet.ip(1);
        let hosts = dir.path().join("hosts");
        write_hosts(dir.path(), name, ips);
        fs::write(
            dir.path().join("resolv.conf"),
            format!("nameserver {listen}\noptions timeout:1 attempts:2\n"),
        )
        .expect("writing resolv.conf");
        let log = fs::File::create(dir.path().join("log")).expect("creating the dnsmasq log");
        let child = Command::new(program)
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--no-poll",
                "--bind-interfaces",
                "--port=53",
                "--user=root",
                "--pid-file=",
                "--local-ttl=0",
                "--log-facility=-",
            ])
            .arg(format!("--listen-address={listen}"))
            .arg(format!("--addn-hosts={}", hosts.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start dnsmasq: {e}"));
        let mut dns = Dnsmasq { child, dir, listen };
        let started = poll_until(DEADLINE, || dns.reads() >= 1 || dns.exited());
        assert!(started, "dnsmasq did not start:\n{}", dns.log());
        assert!(!dns.exited(), "dnsmasq exited at start:\n{}", dns.log());
        dns
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    fn hosts_path(&self) -> PathBuf {
        self.dir.path().join("hosts")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    /// Adds a `search` list to the resolv.conf, as a pod's has
    /// (`<namespace>.svc.cluster.local svc.cluster.local cluster.local`,
    /// `ndots:5`): a short name is tried under each domain.
    pub fn search(&self, domains: &str) {
        fs::write(
            self.resolv_conf(),
            format!(
                "nameserver {}\nsearch {domains}\noptions ndots:5 timeout:1 attempts:2\n",
                self.listen
            ),
        )
        .expect("writing resolv.conf");
    }

    /// The resolv.conf naming this server (for `Sidecar::resolv_conf`).
    pub fn resolv_conf(&self) -> PathBuf {
        self.dir.path().join("resolv.conf")
    }

    /// What dnsmasq logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// How many times dnsmasq has read the hosts file.
    fn reads(&self) -> usize {
        let needle = format!("read {}", self.hosts_path().display());
        self.log().matches(&needle).count()
    }

    /// Changes the answer for `name` (pods added or gone) and waits until
    /// dnsmasq has read it.
    pub fn set_hosts(&self, name: &str, ips: &[Ipv4Addr]) {
        let before = self.reads();
        write_hosts(self.dir.path(), name, ips);
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGHUP).expect("SIGHUP to dnsmasq");
        wait_until(
            DEADLINE,
            "dnsmasq re-reading its hosts file",
            || self.reads() > before,
            || format!("dnsmasq did not re-read its hosts file:\n{}", self.log()),
        );
    }

    /// The address it listens on (port 53).
    pub fn address(&self) -> Ipv4Addr {
        self.listen
    }
}

/// `<dir>/hosts`: one line per address, renamed into place (dnsmasq never
/// reads half a file).
fn write_hosts(dir: &Path, name: &str, ips: &[Ipv4Addr]) {
    let text: String = ips.iter().map(|ip| format!("{ip} {name}\n")).collect();
    let tmp = dir.join("hosts.tmp");
    fs::write(&tmp, text).expect("writing the hosts file");
    fs::rename(&tmp, dir.join("hosts")).expect("renaming the hosts file");
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What [`FakeDns`] does with a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeMode {
    /// Answers: A records for its name, nothing (NOERROR) for AAAA, and
    /// NXDOMAIN for any other name.
    Answer,
    /// Never answers the next lookup it sees (every query from that
    /// lookup's socket, for good: a lost packet, a resolver that hangs),
    /// then answers again ([`FakeMode::Answer`]). Each `getaddrinfo` call
    /// has a socket (a source port) of its own, its retransmissions
    /// included.
    LoseNextLookup,
    /// NXDOMAIN for everything (a Service without endpoints).
    NxDomain,
}

/// A DNS server on UDP port 53 of an address of the test's own, scripted
/// by the test where dnsmasq cannot be: it loses a lookup, or denies a
/// name, and records which lookups (source ports) it saw. Stopped on drop.
pub struct FakeDns {
    dir: tempfile::TempDir,
    state: std::sync::Arc<std::sync::Mutex<FakeState>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug)]
struct FakeState {
    name: String,
    ips: Vec<Ipv4Addr>,
    mode: FakeMode,
    /// Source ports never answered.
    dropped: std::collections::HashSet<u16>,
    /// Source ports seen, in order of first query.
    lookups: Vec<u16>,
    /// Every query's name, in order.
    names: Vec<String>,
}

impl FakeDns {
    /// Listens on `listen`:53, answering `name` with `ips` as `mode`
    /// says; its resolv.conf has `options`.
    pub fn start(
        listen: Ipv4Addr,
        name: &str,
        ips: &[Ipv4Addr],
        mode: FakeMode,
        options: &str,
    ) -> Self {
        let socket = std::net::UdpSocket::bind((listen, 53))
            .unwrap_or_else(|e| panic!("binding {listen}:53 (tests run as root): {e}"));
        socket
            .set_read_timeout(Some(std::time::Duration::from_millis(50)))
            .expect("read timeout");
        let dir = super::tempdir("fake-dns");
        fs::write(
            dir.path().join("resolv.conf"),
            format!("nameserver {listen}\noptions {options}\n"),
        )
        .expect("writing resolv.conf");
        let state = std::sync::Arc::new(std::sync::Mutex::new(FakeState {
            name: name.trim_end_matches('.').to_ascii_lowercase(),
            ips: ips.to_vec(),
            mode,
            dropped: Default::default(),
            lookups: Vec::new(),
            names: Vec::new(),
        }));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || serve_dns(&socket, &state, &stop))
        };
        FakeDns {
            dir,
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// The resolv.conf naming this server (for `Sidecar::resolv_conf`).
    pub fn resolv_conf(&self) -> PathBuf {
        self.dir.path().join("resolv.conf")
    }

    /// The lookups (`getaddrinfo` calls) seen so far.
    pub fn lookups(&self) -> u64 {
        self.state.lock().expect("fake DNS state").lookups.len() as u64
    }

    /// The names asked, one per query (A and AAAA apart), in order.
    pub fn names(&self) -> Vec<String> {
        self.state.lock().expect("fake DNS state").names.clone()
    }

    /// Adds a pod's `search` list to the resolv.conf (see
    /// [`Dnsmasq::search`]), with `options`.
    pub fn search(&self, domains: &str, options: &str) {
        let text = fs::read_to_string(self.resolv_conf()).expect("reading resolv.conf");
        let nameserver = text.lines().next().unwrap_or_default();
        fs::write(
            self.resolv_conf(),
            format!("{nameserver}\nsearch {domains}\noptions {options}\n"),
        )
        .expect("writing resolv.conf");
    }

    pub fn set_mode(&self, mode: FakeMode) {
        self.state.lock().expect("fake DNS state").mode = mode;
    }
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve_dns(
    socket: &std::net::UdpSocket,
    state: &std::sync::Mutex<FakeState>,
    stop: &std::sync::atomic::AtomicBool,
) {
    let mut buf = [0u8; 1500];
    while !stop.load(Ordering::SeqCst) {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let answer = {
            let mut state = state.lock().expect("fake DNS state");
            state.answer(&buf[..n], from.port())
        };
        if let Some(answer) = answer {
            let _ = socket.send_to(&answer, from);
        }
    }
}

impl FakeState {
    fn answer(&mut self, query: &[u8], port: u16) -> Option<Vec<u8>> {
        if !self.lookups.contains(&port) {
            self.lookups.push(port);
            if self.mode == FakeMode::LoseNextLookup {
                self.dropped.insert(port);
                self.mode = FakeMode::Answer;
            }
        }
        if self.dropped.contains(&port) {
            return None;
        }
        let (qname, qtype, question_end) = parse_question(query)?;
        self.names.push(qname.clone());
        let known = qname == self.name && self.mode != FakeMode::NxDomain;
        let ips: &[Ipv4Addr] = if known && qtype == 1 { &self.ips } else { &[] };
        let rcode = if known { 0 } else { 3 };
        Some(dns_response(query, question_end, rcode, ips))
    }
}

/// The first question's name (lowercase, no trailing dot), type, and
/// where it ends.
fn parse_question(query: &[u8]) -> Option<(String, u16, usize)> {
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*query.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    Some((labels.join("."), qtype, at + 4))
}

fn dns_response(query: &[u8], question_end: usize, rcode: u8, ips: &[Ipv4Addr]) -> Vec<u8> {
    let recursion_desired = query[2] & 0x01;
    let mut out = Vec::with_capacity(question_end + ips.len() * 16);
    out.extend_from_slice(&query[..2]);
    out.push(0x80 | recursion_desired); // QR, RD copied
    out.push(0x80 | rcode); // RA, rcode
    out.extend_from_slice(&[0, 1]);
    out.extend_from_slice(&(ips.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&query[12..question_end]);
    for ip in ips {
        // Name: a pointer to the question's; type A, class IN, TTL 0.
        out.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4]);
        out.extend_from_slice(&ip.octets());
    }
    out
}
