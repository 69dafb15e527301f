//! Transports with a deadline. gix has no read timeout on git:// and on the
//! pipes of a spawned `git upload-pack` (file://), and its interrupt flag does
//! not unblock a stalled read. Here every read first polls the socket or pipe
//! in short slices, checking the sync's [`Budget`] (deadline + interrupt flag)
//! between slices, so a stalled server costs at most the sync timeout and a
//! shutdown is noticed within ~100 ms. http(s) goes through gix's reqwest
//! backend with a client timeout set to the remaining budget.
//!
//! Every transport is wrapped in [`Spy`], which records the protocol version
//! and the capabilities the server answered with, and corrects the
//! capabilities gix requests over protocol v0/v1 (see [`super::v1_capabilities`]:
//! without that, gix 0.90 silently fetches full history when asked for a
//! shallow fetch over v0/v1).

use std::borrow::Cow;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gix::bstr::BStr;
use gix::protocol::transport::client::blocking_io::{http, SetServiceResponse, Transport};
use gix::protocol::transport::client::{
    self, git as git_transport, MessageKind, TransportWithoutIO, WriteMode,
};
use gix::protocol::transport::{Protocol, Service};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::git::cli_config::GitConfigPairs;
use crate::git::HttpSettings;

/// Longest time a read blocks before it re-checks the deadline and interrupt flag.
const POLL_SLICE: Duration = Duration::from_millis(100);
/// Upper bound for establishing a TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The time and cancellation budget of one sync.
#[derive(Clone, Debug)]
pub struct Budget {
    deadline: Instant,
    timeout: Duration,
    interrupt: Arc<AtomicBool>,
}

impl Budget {
    pub fn new(timeout: Duration, interrupt: Arc<AtomicBool>) -> Self {
        Self {
            deadline: Instant::now() + timeout,
            timeout,
            interrupt,
        }
    }

    /// A minute, never interrupted: what a test's sync needs.
    #[cfg(test)]
    pub(crate) fn for_tests() -> Self {
        Self::new(Duration::from_secs(60), Arc::new(AtomicBool::new(false)))
    }

    /// The whole budget (`--sync-timeout`), for messages.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The flag gix checks between units of work.
    pub fn interrupt_flag(&self) -> &AtomicBool {
        &self.interrupt
    }

    pub fn is_interrupted(&self) -> bool {
        self.interrupt.load(Ordering::Relaxed)
    }

    pub fn is_expired(&self) -> bool {
        Instant::now() >= self.deadline
    }

    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// `Err` once the sync was interrupted or ran out of time.
    pub fn check(&self) -> io::Result<()> {
        if self.is_expired() {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "sync timeout exceeded",
            ))
        } else if self.is_interrupted() {
            Err(io::Error::other("interrupted by shutdown"))
        } else {
            Ok(())
        }
    }
}

/// A reader that never blocks longer than [`POLL_SLICE`] without checking
/// its budget.
pub(super) struct DeadlineReader<R> {
    inner: R,
    budget: Budget,
}

/// [`DeadlineReader`] behind a read-ahead buffer: servers send a pack in
/// pkt-lines of up to 8 KiB (git's upload-pack) and gix reads each as its
/// 4-byte length, then its payload. Unbuffered, that was two reads (each
/// with its poll, and a quick-ack for `git://`) per pkt-line: 42,000 system
/// calls for a 54 MB pack. Reading up to [`READ_AHEAD`] at once takes one of
/// each per read of what has arrived: 5,600 instead of 14,000 reads for that
/// pack on loopback (about 10 KiB each, as fast as the server sends).
pub(super) type Deadline<R> = io::BufReader<DeadlineReader<R>>;

/// The write side of every transport (`git://`, a spawned `upload-pack` or
/// `GIT_SSH_COMMAND`, the built-in ssh client's socket pair): a request is
/// sent with one write when gix flushes it, at the end of each request
/// (`RequestWriter::into_read`) and after the daemon's first line. gix
/// writes each pkt-line in three pieces (length, text, newline): a fetch
/// with 300 `shallow` lines was 900 `send`s, each its own TCP segment under
/// `TCP_NODELAY` (or ssh packet) and a wakeup of the server.
///
/// Unlike a `BufWriter`, nothing is written when it is dropped, and what a
/// failed write left is dropped with the error: a connection given up on
/// does not block again for a write timeout.
pub(super) struct Batched<W: Write> {
    inner: W,
    pending: Vec<u8>,
}

/// Large enough for any request but one naming thousands of commits,
/// which then goes in a few writes.
const REQUEST_BUFFER: usize = 64 * 1024;

pub(super) fn batched<W: Write>(inner: W) -> Batched<W> {
    Batched {
        inner,
        pending: Vec::new(),
    }
}

impl<W: Write> Batched<W> {
    fn send(&mut self) -> io::Result<()> {
        let pending = std::mem::take(&mut self.pending);
        self.inner.write_all(&pending)
    }
}

impl<W: Write> Write for Batched<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.pending.len() + buf.len() > REQUEST_BUFFER {
            self.send()?;
        }
        if buf.len() >= REQUEST_BUFFER {
            return self.inner.write(buf);
        }
        self.pending.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()?;
        self.inner.flush()
    }
}

/// How much one read may take from the peer at most.
const READ_AHEAD: usize = 64 * 1024;

impl<R: Read + AsFd> DeadlineReader<R> {
    pub(super) fn new(inner: R, budget: Budget) -> Deadline<R> {
        io::BufReader::with_capacity(READ_AHEAD, Self { inner, budget })
    }
}

impl<R: Read + AsFd> Read for DeadlineReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            self.budget.check()?;
            let slice = self.budget.remaining().min(POLL_SLICE);
            let millis = u16::try_from(slice.as_millis()).unwrap_or(u16::MAX).max(1);
            let mut fds = [PollFd::new(self.inner.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(millis)) {
                Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
                Ok(_) => return self.inner.read(buf),
                Err(e) => return Err(io::Error::from(e)),
            }
        }
    }
}

/// The stdout of a spawned `git upload-pack`; kills the process when dropped.
pub(super) struct UploadPackOutput {
    stdout: ChildStdout,
    child: Child,
    /// Ends when the thread copying the child's stderr into the
    /// [`StderrBuffer`] has copied all of it.
    stderr_drained: Arc<Drained>,
}

/// How long the end of stdout waits for the child's last stderr words, at
/// most (never past the sync's deadline, see [`settle_limit`], and never
/// once shutdown began).
const STDERR_SETTLE: Duration = Duration::from_millis(500);
/// How often that wait looks at the interrupt flag.
const SETTLE_SLICE: Duration = Duration::from_millis(20);

/// The wait for a child's last stderr words at `now`: [`STDERR_SETTLE`], or
/// what is left until `deadline` if that is less.
fn settle_limit(deadline: Instant, now: Instant) -> Duration {
    STDERR_SETTLE.min(deadline.saturating_duration_since(now))
}

impl Read for UploadPackOutput {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stdout.read(buf)?;
        if n == 0 {
            self.settle_stderr();
        }
        Ok(n)
    }
}

impl UploadPackOutput {
    /// At the end of stdout the child is exiting, and the error about to be
    /// reported should carry what it said (`ssh: No user exists for uid …`):
    /// give the stderr thread a moment to copy the rest, not forever (a
    /// grandchild may hold the pipe open).
    fn settle_stderr(&mut self) {
        self.stderr_drained.settle();
    }
}

/// Set once a child's stderr is copied to the end; waited on before an
/// error is reported, so that the error carries the child's last words.
pub(super) struct Drained {
    done: Mutex<bool>,
    ended: std::sync::Condvar,
    /// The sync's budget: no wait goes past its deadline or its interrupt.
    budget: Budget,
}

/// Why a wait for a child's last words ended.
#[derive(Debug, PartialEq, Eq)]
enum Settled {
    /// The copy of its stderr ended (or was waited for before).
    Copied,
    /// Shutdown began: the error goes without those words.
    Interrupted,
    /// [`settle_limit`] passed: a grandchild may hold the pipe open.
    TimedOut,
}

impl Drained {
    fn new(budget: Budget) -> Self {
        Self {
            done: Mutex::new(false),
            ended: std::sync::Condvar::new(),
            budget,
        }
    }

    /// [`Self::wait`] as long as [`settle_limit`] allows.
    fn settle(&self) -> Settled {
        self.wait(settle_limit(self.budget.deadline, Instant::now()))
    }

    fn set(&self) {
        if let Ok(mut done) = self.done.lock() {
            *done = true;
        }
        self.ended.notify_all();
    }

    /// Waits until the copy ended, for at most `limit`, once: a grandchild
    /// holding the pipe open delays one error, not every later read. Stops
    /// early once the sync is interrupted (looked at every [`SETTLE_SLICE`]).
    fn wait(&self, limit: Duration) -> Settled {
        let until = Instant::now() + limit;
        let Ok(mut done) = self.done.lock() else {
            return Settled::Copied;
        };
        let settled = loop {
            if *done {
                break Settled::Copied;
            }
            if self.budget.is_interrupted() {
                break Settled::Interrupted;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Settled::TimedOut;
            }
            match self.ended.wait_timeout(done, left.min(SETTLE_SLICE)) {
                Ok((guard, _)) => done = guard,
                Err(_) => return Settled::Copied,
            }
        };
        *done = true;
        settled
    }
}

impl AsFd for UploadPackOutput {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.stdout.as_fd()
    }
}

impl Drop for UploadPackOutput {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Text a spawned `git upload-pack` wrote to stderr, kept for error messages.
pub type StderrBuffer = Arc<Mutex<String>>;

/// A transport that remembers which protocol version the server answered with.
pub struct Spy<T> {
    inner: T,
    protocol: Arc<AtomicU8>,
    shallow: Arc<AtomicBool>,
}

/// What the caller can read back from a [`Spy`] after the handshake.
#[derive(Clone, Default)]
pub struct SpyReport {
    protocol: Arc<AtomicU8>,
    shallow: Arc<AtomicBool>,
    stderr: StderrBuffer,
}

impl SpyReport {
    /// The server's protocol version, once the handshake happened.
    pub fn protocol(&self) -> Option<Protocol> {
        match self.protocol.load(Ordering::Relaxed) {
            1 => Some(Protocol::V1),
            2 => Some(Protocol::V2),
            3 => Some(Protocol::V0),
            _ => None,
        }
    }

    /// Whether the server offered shallow fetches (`shallow` capability; with
    /// v2, of its `fetch` command), once the handshake happened.
    pub fn offers_shallow(&self) -> bool {
        self.shallow.load(Ordering::Relaxed)
    }

    /// Where words of the server for an error message go: a local `git
    /// upload-pack`'s stderr, and what any server says on the side band
    /// (see [`super::upload_pack::Listed::receive`]).
    pub fn server_words(&self) -> StderrBuffer {
        self.stderr.clone()
    }

    /// What the server said for an error message: a local `git
    /// upload-pack`'s stderr (file://), and any server's side-band words.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }
}

impl<T> Spy<T> {
    fn new(inner: T, stderr: StderrBuffer) -> (Self, SpyReport) {
        let protocol = Arc::new(AtomicU8::new(0));
        let shallow = Arc::new(AtomicBool::new(false));
        let report = SpyReport {
            protocol: protocol.clone(),
            shallow: shallow.clone(),
            stderr,
        };
        let spy = Self {
            inner,
            protocol,
            shallow,
        };
        (spy, report)
    }
}

/// Whether the server offers `feature` for fetches: v0/v1 servers list it
/// among their capabilities, v2 servers among the values of `fetch`.
pub(super) fn offers_for_fetch(
    protocol: Protocol,
    capabilities: &client::Capabilities,
    feature: &str,
) -> bool {
    match protocol {
        Protocol::V2 => capabilities
            .capability("fetch")
            .and_then(|c| c.supports(feature))
            .unwrap_or(false),
        Protocol::V0 | Protocol::V1 => capabilities.contains(feature),
    }
}

fn offers_shallow(protocol: Protocol, capabilities: &client::Capabilities) -> bool {
    offers_for_fetch(protocol, capabilities, "shallow")
}

/// `TransportWithoutIO` for a wrapper `$wrapper<T>` whose `inner: T` does the
/// work (the wrappers only change the handshake and the requests).
macro_rules! forward_transport_without_io {
    ($wrapper:ident) => {
        impl<T: TransportWithoutIO> TransportWithoutIO for $wrapper<T> {
            fn set_identity(
                &mut self,
                identity: gix::sec::identity::Account,
            ) -> Result<(), client::Error> {
                self.inner.set_identity(identity)
            }

            fn to_url(&self) -> Cow<'_, BStr> {
                self.inner.to_url()
            }

            fn supported_protocol_versions(&self) -> &[Protocol] {
                self.inner.supported_protocol_versions()
            }

            fn connection_persists_across_multiple_requests(&self) -> bool {
                self.inner.connection_persists_across_multiple_requests()
            }

            fn configure(&mut self, config: &dyn std::any::Any) -> gix::Result<()> {
                self.inner.configure(config)
            }
        }
    };
}
pub(super) use forward_transport_without_io;

forward_transport_without_io!(Spy);

impl<T: Transport> Transport for Spy<T> {
    fn handshake<'a>(
        &mut self,
        service: Service,
        extra_parameters: &'a [(&'a str, Option<&'a str>)],
    ) -> Result<SetServiceResponse<'_>, client::Error> {
        let mut response = self.inner.handshake(service, extra_parameters)?;
        let protocol = response.actual_protocol;
        let code = match protocol {
            Protocol::V1 => 1,
            Protocol::V2 => 2,
            Protocol::V0 => 3,
        };
        self.protocol.store(code, Ordering::Relaxed);
        self.shallow.store(
            offers_shallow(protocol, &response.capabilities),
            Ordering::Relaxed,
        );
        response.capabilities = super::v1_capabilities::for_fetch(protocol, response.capabilities);
        Ok(response)
    }

    fn request(
        &mut self,
        write_mode: WriteMode,
        on_into_read: MessageKind,
        trace: bool,
    ) -> Result<client::blocking_io::RequestWriter<'_>, client::Error> {
        self.inner.request(write_mode, on_into_read, trace)
    }
}

/// Errors while establishing a connection.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("could not resolve {host}: {source}")]
    Resolve { host: String, source: io::Error },
    #[error("could not connect to {host}:{port}: {source}")]
    Connect {
        host: String,
        port: u16,
        source: io::Error,
    },
    #[error("could not start `git upload-pack` for a file:// repository (file:// needs the git binary; http(s):// and git:// do not): {0}")]
    Spawn(io::Error),
    #[error("--repo {path:?} {why}: point --repo at a git repository, or at its URL")]
    NotARepository { path: PathBuf, why: &'static str },
    #[error(
        "the '{0}' URL scheme is not supported (supported: file://, git://, http://, https://, ssh://)"
    )]
    UnsupportedScheme(String),
    #[error("sync timeout exceeded while connecting")]
    Timeout,
    #[error(transparent)]
    Ssh(#[from] super::ssh::Error),
    #[error(transparent)]
    HttpSettings(#[from] crate::git::http_settings::Error),
    #[error(transparent)]
    Cookies(#[from] super::cookies::Error),
}

/// A boxed transport.
pub type BoxedTransport = Box<dyn Transport + Send>;

/// A connected transport, what its spy records, and the options gix must
/// apply to it (gix would otherwise configure it from git config during the
/// handshake, replacing our timeouts).
pub struct Connected {
    pub transport: BoxedTransport,
    pub report: SpyReport,
    pub options: Option<Box<dyn std::any::Any>>,
}

/// Opens a transport for `url`, bounded by `budget`; `ssh` says how to
/// reach ssh:// and scp-like remotes, `http` applies to http(s) only, and
/// the `git upload-pack` of a file:// remote sees `git_config`.
pub fn connect(
    url: &gix::Url,
    budget: &Budget,
    ssh: &super::ssh::Options,
    http: &HttpSettings,
    git_config: &GitConfigPairs,
) -> Result<Connected, ConnectError> {
    let stderr = StderrBuffer::default();
    let (transport, options): (BoxedTransport, Option<Box<dyn std::any::Any>>) = match url.scheme {
        gix::url::Scheme::Git => (Box::new(connect_daemon(url, budget)?), None),
        gix::url::Scheme::File => (
            Box::new(spawn_upload_pack(url, budget, git_config, stderr.clone())?),
            None,
        ),
        gix::url::Scheme::Http | gix::url::Scheme::Https => {
            let t = http::connect::<http::reqwest::Remote>(url.clone(), Protocol::V2, false);
            (Box::new(t), Some(Box::new(http_options(budget, http)?)))
        }
        gix::url::Scheme::Ssh => (super::ssh::connect(url, ssh, budget, stderr.clone())?, None),
        ref other => return Err(ConnectError::UnsupportedScheme(other.as_str().to_string())),
    };
    let mut connected = spied(transport, stderr);
    connected.options = options;
    Ok(connected)
}

/// `transport` wrapped in a [`Spy`], with no options.
pub(super) fn spied(transport: BoxedTransport, stderr: StderrBuffer) -> Connected {
    let (spy, report) = Spy::new(transport, stderr);
    Connected {
        transport: Box::new(spy),
        report,
        options: None,
    }
}

fn connect_daemon(
    url: &gix::Url,
    budget: &Budget,
) -> Result<
    git_transport::blocking_io::Connection<Deadline<QuickAckStream>, Batched<ExplainedWrites>>,
    ConnectError,
> {
    let host = super::url_host(url).unwrap_or("localhost").to_string();
    let port = url.port.unwrap_or(9418);
    let stream = connect_tcp(&host, port, || budget.remaining().min(CONNECT_TIMEOUT))?;
    daemon_connection(stream, url, host, port, budget)
}

/// A TCP connection to the first address of `host:port` that accepts one,
/// each attempt given `left()` (zero: out of time).
pub(super) fn connect_tcp(
    host: &str,
    port: u16,
    left: impl Fn() -> Duration,
) -> Result<TcpStream, ConnectError> {
    let addrs = (host, port)
        .to_socket_addrs()
        .map_err(|source| ConnectError::Resolve {
            host: host.to_string(),
            source,
        })?;
    let mut last_err = io::Error::new(io::ErrorKind::NotFound, "no address");
    for addr in addrs {
        let timeout = left();
        if timeout.is_zero() {
            return Err(ConnectError::Timeout);
        }
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => return Ok(stream),
            Err(e) => last_err = e,
        }
    }
    Err(ConnectError::Connect {
        host: host.to_string(),
        port,
        source: last_err,
    })
}

fn daemon_connection(
    stream: TcpStream,
    url: &gix::Url,
    host: String,
    port: u16,
    budget: &Budget,
) -> Result<
    git_transport::blocking_io::Connection<Deadline<QuickAckStream>, Batched<ExplainedWrites>>,
    ConnectError,
> {
    let io_err = |source| ConnectError::Connect {
        host: host.clone(),
        port,
        source,
    };
    tune_daemon_socket(&stream, budget).map_err(io_err)?;
    let reader = stream.try_clone().map_err(io_err)?;
    let reader = DeadlineReader::new(QuickAckStream(reader), budget.clone());
    let port = url.port;
    // `host=` as git sends it: an IPv6 literal keeps its brackets.
    let virtual_host = url.host().map_or(host, str::to_string);
    Ok(git_transport::blocking_io::Connection::new(
        reader,
        batched(ExplainedWrites(stream)),
        Protocol::V2,
        url.path.clone(),
        Some((virtual_host, port)),
        git_transport::ConnectMode::Daemon,
        false,
    )
    .custom_url(Some(url.to_bstring())))
}

/// A bound keeps a dead peer from blocking forever, and `TCP_NODELAY`
/// sends each request (one write, see [`Batched`]) at once: with Nagle's
/// algorithm every exchange waited for the daemon's delayed ACK (~40 ms).
/// reqwest (http, its default) and our ssh client
/// (`ssh::session::connect_to`) set it too.
fn tune_daemon_socket(stream: &TcpStream, budget: &Budget) -> io::Result<()> {
    stream.set_write_timeout(Some(budget.remaining().max(Duration::from_millis(10))))?;
    stream.set_nodelay(true)
}

/// The read side of a `git://` connection, acknowledging at once what it
/// receives. git never sets `TCP_NODELAY`, so with Nagle's algorithm each
/// small write of `upload-pack` after one we have not acknowledged yet
/// waits for our ACK, and Linux delays that ACK up to 40 ms while we have
/// nothing to send: the fetch answer (`shallow-info`, then the pack)
/// stalled that long on every change. Quick-ack mode does not stick
/// (`tcp(7)`), so it is switched on again before each read.
pub(super) struct QuickAckStream(TcpStream);

impl Read for QuickAckStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Best effort: a socket that refuses it still works, only slower.
        let _ = socket2::SockRef::from(&self.0).set_tcp_quickack(true);
        self.0.read(buf)
    }
}

impl AsFd for QuickAckStream {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// The write side of a `git://` connection. upload-pack refuses a `want`
/// it cannot serve (a submodule commit never pushed) with `ERR ...` and
/// hangs up, possibly while we are still writing (a request larger than
/// [`Batched`] holds goes in several writes): the write then fails with a
/// broken pipe while the server's reason waits unread in the socket. That
/// reason is added to the write's error.
pub(super) struct ExplainedWrites(TcpStream);

impl Write for ExplainedWrites {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(|e| explained(&self.0, e))
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(|e| explained(&self.0, e))
    }
}

/// `e` with the server's `ERR` line, if the peer hung up after sending one.
/// Peeked, not read: the reading side still gets everything.
fn explained(stream: &TcpStream, e: io::Error) -> io::Error {
    if !matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
    ) {
        return e;
    }
    // Without waiting: what is not there yet will not say more. (The
    // connection is dead; its blocking mode is put back all the same.)
    let mut buf = [0u8; 4096];
    let peeked = stream
        .set_nonblocking(true)
        .and_then(|()| stream.peek(&mut buf));
    let _ = stream.set_nonblocking(false);
    let Ok(n) = peeked else {
        return e;
    };
    let data = &buf[..n];
    match server_error(data) {
        Some(reason) => io::Error::new(e.kind(), format!("{e}; the server said: {reason}")),
        None => e,
    }
}

/// The text of the first `ERR` pkt-line in `data`, if any.
fn server_error(mut data: &[u8]) -> Option<String> {
    while data.len() >= 4 {
        let len = usize::from_str_radix(std::str::from_utf8(&data[..4]).ok()?, 16).ok()?;
        if len < 4 {
            data = &data[4..]; // flush, delimiter or response-end
            continue;
        }
        let line = data.get(4..len)?;
        if let Some(reason) = line.strip_prefix(b"ERR ") {
            return Some(String::from_utf8_lossy(reason).trim_end().to_string());
        }
        data = &data[len..];
    }
    None
}

/// Writes to the child's stdin; closes it on drop so the child sees EOF.
/// upload-pack refuses a `want` it cannot serve by dying (`fatal: git
/// upload-pack: not our ref ...` on stderr), possibly while we are still
/// writing: the write fails with a broken pipe, and the error about to be
/// reported must carry that reason, which the stderr thread may not have
/// copied yet. A broken pipe therefore waits for that copy (as the end of
/// stdout does, at most [`settle_limit`]).
pub(super) struct UploadPackInput {
    stdin: ChildStdin,
    stderr_drained: Arc<Drained>,
}

impl UploadPackInput {
    fn settled(&self, e: io::Error) -> io::Error {
        if e.kind() == io::ErrorKind::BrokenPipe {
            self.stderr_drained.settle();
        }
        e
    }
}

impl Write for UploadPackInput {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stdin.write(buf).map_err(|e| self.settled(e))
    }
    fn flush(&mut self) -> io::Result<()> {
        self.stdin.flush().map_err(|e| self.settled(e))
    }
}

/// A git connection to a spawned process's stdin/stdout.
pub(super) type ProcessConnection =
    git_transport::blocking_io::Connection<Deadline<UploadPackOutput>, Batched<UploadPackInput>>;

fn spawn_upload_pack(
    url: &gix::Url,
    budget: &Budget,
    git_config: &GitConfigPairs,
    stderr: StderrBuffer,
) -> Result<ProcessConnection, ConnectError> {
    let path = gix::path::from_bstr(gix::bstr::BStr::new(url.path.as_slice()))
        .map_err(|e| ConnectError::Spawn(io::Error::other(e.to_string())))?
        .into_owned();
    let git_dir = check_local_repository(&path)?;
    let mut command = Command::new("git");
    command
        .arg("upload-pack")
        .arg(&path)
        .env("GIT_PROTOCOL", "version=2")
        .envs(super::cli_config::env_with(
            git_config,
            &safe_directories(&git_dir),
        ));
    spawn_process(command, url, budget, stderr).map_err(ConnectError::Spawn)
}

/// `safe.directory` for the repository we were told to fetch from: on a
/// shared volume it is normally owned by another UID, and git then refuses
/// it ("detected dubious ownership"). Only this repository is trusted (git-sync
/// v4.7.1 trusts `*`; `--git-config safe.directory:*` still does that). git
/// compares against the git directory, as given and resolved, so both go.
fn safe_directories(git_dir: &Path) -> Vec<(String, String)> {
    let mut dirs = vec![git_dir.to_path_buf()];
    if let Ok(real) = git_dir.canonicalize() {
        dirs.push(real);
    }
    dirs.into_iter()
        .map(|d| {
            (
                "safe.directory".to_string(),
                d.to_string_lossy().into_owned(),
            )
        })
        .collect()
}

/// `git upload-pack` on a path that holds no repository only says so on
/// stderr and hangs up, which gix reports as "failed to fill whole buffer":
/// say it before spawning. The candidates are those git tries itself
/// (`enter_repo`): `<p>/.git`, `<p>`, `<p>.git/.git`, `<p>.git`; the first
/// git directory found is returned.
fn check_local_repository(path: &Path) -> Result<PathBuf, ConnectError> {
    let fail = |why| {
        Err(ConnectError::NotARepository {
            path: path.to_path_buf(),
            why,
        })
    };
    let mut dotgit = path.as_os_str().to_os_string();
    dotgit.push(".git");
    let dotgit = PathBuf::from(dotgit);
    let candidates = [
        path.join(".git"),
        path.to_path_buf(),
        dotgit.join(".git"),
        dotgit,
    ];
    if let Some(found) = candidates
        .into_iter()
        .find(|c| gix::discover::is_git(c).is_ok())
    {
        return Ok(found);
    }
    if !path.exists() {
        return fail("does not exist");
    }
    fail("is not a git repository (neither a bare repository nor a directory holding .git)")
}

/// Runs `command` (which speaks git on stdin/stdout) with deadline reads;
/// its stderr is kept in `stderr` for error messages.
pub(super) fn spawn_process(
    command: Command,
    url: &gix::Url,
    budget: &Budget,
    stderr: StderrBuffer,
) -> io::Result<ProcessConnection> {
    let (output, input) = spawn_piped(command, stderr, budget.clone())?;
    let reader = DeadlineReader::new(output, budget.clone());
    Ok(git_transport::blocking_io::Connection::new(
        reader,
        batched(input),
        Protocol::V2,
        url.path.clone(),
        None::<(String, Option<u16>)>,
        git_transport::ConnectMode::Process,
        false,
    )
    .custom_url(Some(url.to_bstring())))
}

/// Starts `command` with its stdin and stdout piped to us and its stderr
/// copied into `stderr` by a thread of its own; waits for that copy to end
/// within `budget`.
fn spawn_piped(
    mut command: Command,
    stderr: StderrBuffer,
    budget: Budget,
) -> io::Result<(UploadPackOutput, UploadPackInput)> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let (Some(stdin), Some(stdout), Some(mut err)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.kill();
        return Err(io::Error::other("child pipes missing"));
    };
    // Drain stderr on a thread so the child never blocks on it; keep the first 8 KiB.
    let stderr_drained = Arc::new(Drained::new(budget));
    let drained = stderr_drained.clone();
    let drain = std::thread::Builder::new()
        .name("stderr".into())
        .spawn(move || {
            let mut buf = [0u8; 1024];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut s) = stderr.lock() {
                    if s.len() < 8192 {
                        s.push_str(&String::from_utf8_lossy(&buf[..n]));
                    }
                }
            }
            drained.set();
        });
    if let Err(e) = drain {
        let _ = child.kill();
        let _ = child.wait();
        return Err(io::Error::new(
            e.kind(),
            format!("could not start a thread: {e}"),
        ));
    }
    let output = UploadPackOutput {
        stdout,
        child,
        stderr_drained: stderr_drained.clone(),
    };
    let input = UploadPackInput {
        stdin,
        stderr_drained,
    };
    Ok((output, input))
}

/// Bounds every HTTP request by what is left of the budget, and applies
/// the proxy, TLS and header settings.
fn http_options(budget: &Budget, settings: &HttpSettings) -> Result<http::Options, ConnectError> {
    let timeout = budget.remaining().max(Duration::from_millis(10));
    let connect_timeout = timeout.min(CONNECT_TIMEOUT);
    let configure = settings
        .client_configurator()
        .map_err(ConnectError::HttpSettings)?;
    let backend = http::reqwest::Options {
        configure_client: Some(Box::new(move |builder| {
            Ok(configure(
                builder.timeout(timeout).connect_timeout(connect_timeout),
            ))
        })),
        configure_request: cookie_request_hook(settings)?,
    };
    Ok(http::Options {
        connect_timeout: Some(connect_timeout),
        user_agent: Some(concat!("git-sidecar/", env!("CARGO_PKG_VERSION")).to_string()),
        backend: Some(Arc::new(Mutex::new(backend))),
        extra_headers: settings.extra_headers.clone(),
        ..Default::default()
    })
}

/// With a cookie file, a hook that gives each request the cookies matching
/// its URL (gix has no cookie support). The file is read now, once per
/// connection. gix refuses redirects once a request hook is set.
#[allow(clippy::type_complexity)]
fn cookie_request_hook(
    settings: &HttpSettings,
) -> Result<Option<Box<http::reqwest::ConfigureRequestFn>>, ConnectError> {
    let Some(path) = &settings.cookie_file else {
        return Ok(None);
    };
    let jar = super::cookies::Jar::read(path)?;
    Ok(Some(Box::new(
        move |request: &mut reqwest::blocking::Request| {
            if let Some(value) = jar.header_for(request.url()) {
                if let Ok(value) = reqwest::header::HeaderValue::from_str(&value) {
                    request.headers_mut().append(reqwest::header::COOKIE, value);
                }
            }
            Ok(())
        },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// upload-pack's refusal of a `want`: `ERR` and hang up, while the
    /// client is still writing. The write's error carries the reason.
    #[test]
    fn a_write_refused_by_a_hung_up_server_says_why() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().expect("accept");
            let mut first = [0u8; 16];
            conn.read_exact(&mut first).expect("the request's start");
            let reason = b"ERR upload-pack: not our ref 0123456789abcdef\n";
            conn.write_all(format!("{:04x}", reason.len() + 4).as_bytes())
                .expect("length");
            conn.write_all(reason).expect("reason");
            // Closing with unread data sends a reset, as upload-pack's exit does.
        });
        let stream = TcpStream::connect(addr).expect("connect");
        let mut writes = ExplainedWrites(stream);
        let chunk = [b'0'; 16];
        writes.write_all(&chunk).expect("the first write");
        server.join().expect("server");
        let error = (0..1000)
            .find_map(|_| {
                std::thread::sleep(Duration::from_millis(1));
                writes.write_all(&chunk).err()
            })
            .expect("a write fails once the server hung up");
        let text = error.to_string();
        assert!(
            text.contains("the server said: upload-pack: not our ref 0123456789abcdef"),
            "{text}"
        );
    }

    /// A local upload-pack that dies refusing a `want`: it stops reading,
    /// then says why on stderr (here late, as a loaded machine may copy
    /// it). The write's broken pipe waits for those words, so the error
    /// reported (which carries the stderr) says why.
    #[test]
    fn a_broken_pipe_to_a_local_process_waits_for_its_last_words() {
        let mut command = Command::new("sh");
        command.args([
            "-c",
            "exec 0<&-; sleep 0.1; echo 'fatal: git upload-pack: not our ref 0123' >&2",
        ]);
        let stderr = StderrBuffer::default();
        let (_output, mut input) =
            spawn_piped(command, stderr.clone(), Budget::for_tests()).expect("spawn sh");
        let chunk = [b'0'; 4096];
        let failed = (0..1000)
            .find_map(|_| input.write_all(&chunk).and_then(|()| input.flush()).err())
            .expect("writing to a closed stdin fails");
        assert_eq!(failed.kind(), io::ErrorKind::BrokenPipe, "{failed}");
        let said = stderr.lock().expect("stderr").clone();
        assert!(said.contains("not our ref 0123"), "stderr: {said:?}");
    }

    /// A child whose stdout ended while its stderr stays open (a grandchild
    /// holding it, say): once shutdown began, the wait for its last words
    /// ends at once instead of running out its limit; without shutdown it
    /// ends when the copy does.
    #[test]
    fn the_wait_for_last_words_ends_on_shutdown() {
        let held_open = || {
            let mut command = Command::new("sh");
            // `exec`: the sleep is the child itself, killed with it.
            command.args(["-c", "exec >/dev/null; exec sleep 30"]);
            command
        };
        let interrupt = Arc::new(AtomicBool::new(false));
        let budget = Budget::new(Duration::from_secs(60), interrupt.clone());
        let (output, _input) =
            spawn_piped(held_open(), StderrBuffer::default(), budget).expect("spawn sh");
        interrupt.store(true, Ordering::Relaxed);
        assert_eq!(output.stderr_drained.settle(), Settled::Interrupted);

        let mut command = Command::new("sh");
        command.args(["-c", "echo 'last words' >&2"]);
        let stderr = StderrBuffer::default();
        let (output, _input) =
            spawn_piped(command, stderr.clone(), Budget::for_tests()).expect("spawn sh");
        // Without a limit a loaded machine could reach: only the copy ends it.
        let ended = output.stderr_drained.wait(Duration::from_secs(60));
        assert_eq!(ended, Settled::Copied);
        assert_eq!(stderr.lock().expect("stderr").as_str(), "last words\n");
    }

    /// The wait for a child's last words never outlasts the sync.
    #[test]
    fn the_wait_for_last_words_ends_by_the_deadline() {
        let now = Instant::now();
        let far = now + Duration::from_secs(60);
        assert_eq!(settle_limit(far, now), STDERR_SETTLE);
        let near = now + Duration::from_millis(20);
        assert_eq!(settle_limit(near, now), Duration::from_millis(20));
        assert_eq!(
            settle_limit(now, now + Duration::from_secs(1)),
            Duration::ZERO
        );
    }

    #[test]
    fn server_error_reads_the_first_err_pkt_line() {
        assert_eq!(
            server_error(b"0000000dERR nope\n0009more"),
            Some("nope".to_string())
        );
        assert_eq!(server_error(b"0008abcd"), None);
        assert_eq!(server_error(b"0030ERR trunc"), None);
    }

    #[test]
    fn deadline_reader_gives_up_on_a_silent_peer() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let client = TcpStream::connect(addr).expect("connect");
        let _server = listener.accept().expect("accept");
        let budget = Budget::new(Duration::from_millis(300), Arc::new(AtomicBool::new(false)));
        let mut reader = DeadlineReader::new(client, budget);
        let started = Instant::now();
        let err = reader
            .read(&mut [0u8; 16])
            .expect_err("a silent peer must time out");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    /// Which advertisements allow `--depth` (else the sync fails saying so).
    #[test]
    fn shallow_is_offered_per_protocol_version() {
        let v2 = |fetch: &str| {
            let lines = format!("version 2\nagent=git/2.47.3\nls-refs=unborn\n{fetch}\n");
            client::Capabilities::from_lines(lines.into()).expect("v2 capabilities")
        };
        assert!(offers_shallow(
            Protocol::V2,
            &v2("fetch=shallow wait-for-done")
        ));
        assert!(!offers_shallow(Protocol::V2, &v2("fetch=wait-for-done")));
        assert!(!offers_shallow(Protocol::V2, &v2("fetch")));
        let v0 = |caps: &str| {
            client::Capabilities::from_bytes(format!("\0{caps}").as_bytes())
                .expect("v0 capabilities")
                .0
        };
        for protocol in [Protocol::V0, Protocol::V1] {
            assert!(offers_shallow(
                protocol,
                &v0("multi_ack shallow deepen-since")
            ));
            assert!(!offers_shallow(
                protocol,
                &v0("multi_ack ofs-delta agent=x")
            ));
        }
    }

    #[test]
    fn git_daemon_sockets_send_small_writes_at_once() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let budget = Budget::new(Duration::from_secs(5), Arc::new(AtomicBool::new(false)));
        tune_daemon_socket(&client, &budget).expect("tune");
        assert!(client.nodelay().expect("TCP_NODELAY readable"));
        assert!(client.write_timeout().expect("write timeout").is_some());
    }

    /// A writer that keeps what it is given and counts the writes.
    #[derive(Default, Clone)]
    struct CountedWrites(Arc<std::sync::Mutex<(Vec<u8>, usize)>>);

    impl Write for CountedWrites {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut seen = self.0.lock().expect("lock");
            seen.0.extend_from_slice(buf);
            seen.1 += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A writer whose writes fail, counting them.
    struct Failing(usize);

    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            self.0 += 1;
            Err(io::Error::from(io::ErrorKind::TimedOut))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A request whose send failed (a peer that stopped reading, past the
    /// write timeout) is not tried again when the connection is dropped:
    /// that would block for the timeout once more. A request too large for
    /// the buffer still goes whole, in order.
    #[test]
    fn a_failed_request_is_not_sent_again_and_a_large_one_goes_whole() {
        let mut failing = batched(Failing(0));
        failing.write_all(b"0009done\n").expect("buffered");
        assert!(failing.flush().is_err());
        assert!(failing.flush().is_ok(), "nothing left to send");
        let tries = failing.inner.0;
        drop(failing);
        assert_eq!(tries, 1);

        let writes = CountedWrites::default();
        let mut large = batched(writes.clone());
        let chunk = vec![b'x'; REQUEST_BUFFER / 3];
        let lines: Vec<Vec<u8>> = (0..7u8).map(|i| [&[i][..], &chunk].concat()).collect();
        for line in &lines {
            large.write_all(line).expect("write");
        }
        large.flush().expect("flush");
        let (sent, count) = writes.0.lock().expect("lock").clone();
        assert_eq!(sent, lines.concat());
        assert!(
            count < lines.len(),
            "{count} writes for {} lines",
            lines.len()
        );
    }

    /// A fetch request of 300 pkt-lines, written by gix through a
    /// connection as ours are built, reaches the socket in one write, and
    /// all of it by the time gix turns to read the answer (else the server
    /// would wait for the rest while we wait for it).
    #[test]
    fn a_request_is_one_write() {
        use gix::protocol::transport::client::{blocking_io::Transport, MessageKind, WriteMode};
        let writes = CountedWrites::default();
        let mut connection = git_transport::blocking_io::Connection::new(
            &b""[..],
            batched(writes.clone()),
            Protocol::V2,
            "/repo.git",
            None::<(String, Option<u16>)>,
            git_transport::ConnectMode::Process,
            false,
        );
        let lines: Vec<String> = (0..300).map(|i| format!("shallow {i:040x}")).collect();
        let mut request = connection
            .request(
                WriteMode::OneLfTerminatedLinePerWriteCall,
                MessageKind::Flush,
                false,
            )
            .expect("request");
        for line in &lines {
            request.write_all(line.as_bytes()).expect("line");
        }
        assert_eq!(
            writes.0.lock().expect("lock").1,
            0,
            "nothing sent before the end"
        );
        drop(request.into_read().expect("into_read"));
        let (sent, count) = writes.0.lock().expect("lock").clone();
        assert_eq!(count, 1, "{count} writes for one request");
        let expected: String = lines
            .iter()
            .map(|l| format!("{:04x}{l}\n", l.len() + 5))
            .collect();
        assert_eq!(String::from_utf8_lossy(&sent), expected + "0000");
    }

    /// A socket that counts the reads it serves.
    struct Counted(TcpStream, usize);

    impl Read for Counted {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.1 += 1;
            self.0.read(buf)
        }
    }

    impl AsFd for Counted {
        fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
            self.0.as_fd()
        }
    }

    /// 256 pkt-lines of 8 KiB (how upload-pack sends a pack), read as gix
    /// reads them (length, then payload): every byte arrives in order, in
    /// about one read of the socket per 64 KiB rather than two per line.
    #[test]
    fn deadline_reader_reads_ahead() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        let lines = 256;
        let payload = 8192 - 4;
        let line = |i: usize| -> Vec<u8> {
            let mut bytes = format!("{:04x}", payload + 4).into_bytes();
            bytes.extend((0..payload).map(|j| (i * 31 + j) as u8));
            bytes
        };
        let sent: Vec<u8> = (0..lines).flat_map(line).collect();
        let writer = std::thread::spawn(move || server.write_all(&sent).expect("send"));
        let budget = Budget::new(Duration::from_secs(30), Arc::new(AtomicBool::new(false)));
        let mut reader = DeadlineReader::new(Counted(client, 0), budget);
        for i in 0..lines {
            let mut len = [0u8; 4];
            reader.read_exact(&mut len).expect("length");
            let len =
                usize::from_str_radix(std::str::from_utf8(&len).expect("hex"), 16).expect("length");
            let mut data = vec![0u8; len - 4];
            reader.read_exact(&mut data).expect("payload");
            assert!(data == line(i)[4..], "line {i} differs");
        }
        writer.join().expect("writer");
        // Unbuffered: at least two per line. Ideally one per 64 KiB (32);
        // a loaded machine may hand over less per read.
        let reads = reader.get_ref().inner.1;
        assert!(
            reads < lines,
            "{reads} reads of the socket for {lines} lines"
        );
    }

    #[test]
    fn deadline_reader_stops_when_interrupted() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let _server = listener.accept().expect("accept");
        let flag = Arc::new(AtomicBool::new(false));
        let budget = Budget::new(Duration::from_secs(60), flag.clone());
        let setter = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            flag.store(true, Ordering::Relaxed);
        });
        let started = Instant::now();
        let mut reader = DeadlineReader::new(client, budget);
        assert!(reader.read(&mut [0u8; 16]).is_err());
        assert!(started.elapsed() < Duration::from_secs(2));
        setter.join().expect("setter thread");
    }
}
