//! The accept loop and the life of one connection, with the limits a
//! public endpoint needs (axum::serve has none of them):
//!
//! - a request's line and headers must arrive within `header_timeout` of
//!   its first byte (slow-header clients are closed);
//! - a connection waiting for its next request (or a new one for its first
//!   byte) is closed after `idle_timeout`, and so is one whose client has
//!   stopped reading its responses (writes blocked that long);
//! - at most `max_connections` are open, and never more than half the
//!   open-file limit: the sync needs descriptors too, and an HTTP flood
//!   must never make a fetch fail with "Too many open files". At the cap a
//!   newcomer is still accepted, and the oldest connection that is not in a
//!   request is closed to make room for it ([`Open`]); only when every one
//!   is in a request is the newcomer turned away. Connections are never
//!   left waiting in the kernel's accept queue, where a flood of slow
//!   clients larger than the cap kept kubelet's probes out (probe-17 F2:
//!   3,000 slow connections against 1,024 made 1 s probes fail 12 in 13);
//! - accept errors (EMFILE, ENFILE, ENOBUFS, ...) pause the loop instead of
//!   ending it;
//! - an answer given before the request's body was read (a webhook refused
//!   from its headers) says `Connection: close`, and the connection closes
//!   in stages (RFC 9112 §9.6): our side first, then what the client still
//!   sends is read and dropped for up to [`LINGER`] before the socket is
//!   closed. Closed at once, unread bytes make the kernel reset the
//!   connection, and the client (nginx, still sending the body) loses the
//!   answer: nginx told the forge 502 instead of our 401 or 413.
//!
//! A request being handled has no deadline here: the webhook bounds its
//! body read, and everything else answers at once or (pprof) within its
//! requested duration.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use http_body::Body as _;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ConnectionLimits;

/// At the cap, how long a newcomer waits for the connection closed to make
/// room to give its slot back (its task only has to run).
const MAKE_ROOM_WAIT: Duration = Duration::from_secs(1);
/// How long it waits for one before asking the next.
const MAKE_ROOM_RETRY: Duration = Duration::from_millis(50);
/// Accept errors back off from this to [`MAX_ACCEPT_PAUSE`], doubling.
const FIRST_ACCEPT_PAUSE: Duration = Duration::from_millis(50);
const MAX_ACCEPT_PAUSE: Duration = Duration::from_secs(1);
/// A cap that the open-file limit lowered to this is still served.
const MIN_CONNECTIONS: usize = 8;
/// How long, and how many bytes, a connection answered before its request
/// body was read goes on reading and dropping what the client sends.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 64 << 20;

/// Serves `router` on `listener` until `cancel`, then lets open requests
/// finish (idle connections close at once).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    cancel: CancellationToken,
) -> io::Result<()> {
    // u32: what a semaphore hands out at once (and far above any fd limit).
    let cap = effective_cap(limits.max_connections, open_file_limit()).min(u32::MAX as usize);
    let slots = Arc::new(Semaphore::new(cap));
    let open = Arc::new(Open::default());
    let mut pause = FIRST_ACCEPT_PAUSE;
    let mut warned_full = false;
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                pause = FIRST_ACCEPT_PAUSE;
                let Some(slot) = slot_for_newcomer(&slots, &open, &mut warned_full, cap).await
                else {
                    // Every connection is in a request: this one is turned away.
                    drop(stream);
                    continue;
                };
                // An IPv4 client of the dual-stack listener shows as
                // ::ffff:a.b.c.d; logs and rate limits see a.b.c.d.
                let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
                let activity = Arc::new(Activity::new());
                let evict = Arc::new(Notify::new());
                let listed = open.add(activity.clone(), evict.clone());
                let connection = Connection {
                    router: router.clone(),
                    limits,
                    peer,
                    activity,
                    evict,
                    cancel: cancel.clone(),
                    listed,
                    _slot: slot,
                };
                tokio::spawn(connection.run(stream));
            }
            Err(e) => {
                // Out of descriptors (or buffers): others free them soon;
                // dying here would take the sync down with us.
                tracing::warn!(error = %e, pause_ms = pause.as_millis() as u64, "HTTP accept failed; pausing");
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(MAX_ACCEPT_PAUSE);
            }
        }
    }
    // Every connection holds a slot until it ends: all slots back = all done.
    let _ = slots.acquire_many(cap as u32).await;
    Ok(())
}

/// A slot for a connection just accepted; at the cap, the oldest open
/// connection that is not in a request is closed to make room. `None` when
/// every one is in a request (or none gave its slot back in time).
async fn slot_for_newcomer(
    slots: &Arc<Semaphore>,
    open: &Open,
    warned_full: &mut bool,
    cap: usize,
) -> Option<OwnedSemaphorePermit> {
    if let Ok(slot) = slots.clone().try_acquire_owned() {
        return Some(slot);
    }
    if !*warned_full {
        tracing::warn!(
            max_connections = cap,
            "HTTP connection cap reached; closing the oldest connections that are not in a \
             request to make room (raise --http-max-connections if this is legitimate load)"
        );
        *warned_full = true;
    }
    let deadline = Instant::now() + MAKE_ROOM_WAIT;
    while Instant::now() < deadline {
        if !open.close_oldest_waiting() {
            return None;
        }
        // Its task gives the slot back as soon as it runs, unless a request
        // began there meanwhile: then the next one is asked.
        let wait = tokio::time::timeout(MAKE_ROOM_RETRY, slots.clone().acquire_owned());
        if let Ok(slot) = wait.await {
            return slot.ok();
        }
    }
    None
}

/// The open connections in the order they were accepted, with what each is
/// doing and how to close it.
#[derive(Default)]
struct Open {
    list: Mutex<std::collections::VecDeque<Listed>>,
    next_id: std::sync::atomic::AtomicU64,
}

struct Listed {
    id: u64,
    activity: Arc<Activity>,
    evict: Arc<Notify>,
    /// Told to close already (it stays listed until it does, or declines).
    chosen: bool,
}

impl Open {
    fn list(&self) -> MutexGuard<'_, std::collections::VecDeque<Listed>> {
        self.list.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lists a connection; it is taken off when the returned guard drops.
    fn add(self: &Arc<Self>, activity: Arc<Activity>, evict: Arc<Notify>) -> ListedGuard {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.list().push_back(Listed {
            id,
            activity,
            evict,
            chosen: false,
        });
        ListedGuard {
            open: self.clone(),
            id,
        }
    }

    /// Tells the oldest connection that waits (for a request, or for the
    /// rest of one's headers) to close; false if every one is in a request.
    fn close_oldest_waiting(&self) -> bool {
        let mut list = self.list();
        let Some(listed) = list
            .iter_mut()
            .find(|c| !c.chosen && c.activity.is_waiting())
        else {
            return false;
        };
        listed.chosen = true;
        listed.evict.notify_one();
        true
    }
}

/// Takes its connection off [`Open`]'s list when dropped.
struct ListedGuard {
    open: Arc<Open>,
    id: u64,
}

impl ListedGuard {
    /// Its connection declined to close (a request began meanwhile): it
    /// may be chosen again later.
    fn relist(&self) {
        if let Some(listed) = self.open.list().iter_mut().find(|c| c.id == self.id) {
            listed.chosen = false;
        }
    }
}

impl Drop for ListedGuard {
    fn drop(&mut self) {
        self.open.list().retain(|c| c.id != self.id);
    }
}

/// `wanted`, lowered to half the open-file limit (never below a handful).
fn effective_cap(wanted: usize, open_files: Option<u64>) -> usize {
    let Some(limit) = open_files else {
        return wanted;
    };
    let half = usize::try_from(limit / 2).unwrap_or(usize::MAX);
    if wanted <= half {
        return wanted;
    }
    let cap = half.max(MIN_CONNECTIONS);
    tracing::warn!(
        max_connections = wanted,
        open_file_limit = limit,
        lowered_to = cap,
        "--http-max-connections lowered to half the open-file limit, so that syncing \
         always has descriptors left (raise the container's nofile limit to serve more)"
    );
    cap
}

/// The soft RLIMIT_NOFILE (main raises it to the hard limit at start).
fn open_file_limit() -> Option<u64> {
    let (soft, _hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).ok()?;
    (soft != nix::sys::resource::RLIM_INFINITY).then_some(soft)
}

/// One accepted connection and what it needs to serve and police itself.
struct Connection {
    router: Router,
    limits: ConnectionLimits,
    peer: SocketAddr,
    activity: Arc<Activity>,
    /// Told to close when a newcomer needs its slot (see [`Open`]).
    evict: Arc<Notify>,
    cancel: CancellationToken,
    /// Off the list of open connections, and its slot released, when the
    /// connection ends.
    listed: ListedGuard,
    _slot: OwnedSemaphorePermit,
}

impl Connection {
    async fn run(self, stream: TcpStream) {
        let activity = self.activity.clone();
        let io = TokioIo::new(Watched {
            inner: stream,
            activity: activity.clone(),
            linger: None,
        });
        let service = {
            let (router, peer, activity) = (self.router.clone(), self.peer, activity.clone());
            hyper::service::service_fn(move |request| {
                handle(router.clone(), peer, activity.clone(), request)
            })
        };
        let mut builder = hyper::server::conn::http1::Builder::new();
        // Our own deadlines below; hyper's header timer would also cut idle
        // keep-alive connections at the (much shorter) header timeout.
        builder.header_read_timeout(None).keep_alive(true);
        let connection = builder.serve_connection(io, service);
        tokio::pin!(connection);
        let mut shutting_down = false;
        loop {
            let deadline = activity.deadline(&self.limits);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(peer = %self.peer, error = %e, "HTTP connection ended");
                    }
                    return;
                }
                _ = self.cancel.cancelled(), if !shutting_down => {
                    connection.as_mut().graceful_shutdown();
                    shutting_down = true;
                }
                _ = sleep_until(deadline) => {
                    if activity.deadline(&self.limits).is_some_and(|d| d <= Instant::now()) {
                        tracing::debug!(peer = %self.peer, phase = activity.phase_name(), "HTTP connection timed out; closing");
                        return;
                    }
                }
                _ = self.evict.notified() => {
                    // A request may have begun since it was chosen: kept
                    // then (the newcomer waits for another to close).
                    if activity.is_waiting() {
                        tracing::debug!(peer = %self.peer, "HTTP connection closed to make room");
                        return;
                    }
                    self.listed.relist();
                }
                _ = activity.changed.notified() => {}
            }
        }
    }
}

/// Serves one request through the router, marking the connection busy
/// until the response body is gone (sent or dropped).
async fn handle(
    router: Router,
    peer: SocketAddr,
    activity: Arc<Activity>,
    request: hyper::Request<Incoming>,
) -> Result<axum::response::Response, Infallible> {
    let busy = Busy::start(activity.clone());
    let (mut parts, body) = request.into_parts();
    parts.extensions.insert(ConnectInfo(peer));
    let read = Arc::new(std::sync::atomic::AtomicBool::new(body.is_end_stream()));
    let body = Body::new(ReadToEnd {
        body,
        read: read.clone(),
    });
    let mut router = router;
    let request = hyper::Request::from_parts(parts, body);
    let mut response = tower_service::Service::call(&mut router, request).await?;
    if !read.load(std::sync::atomic::Ordering::Relaxed) {
        // Answered before the body was read: see the module's comment.
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
        activity.linger_at_close();
    }
    Ok(response.map(|body| Body::new(Tracked { body, _busy: busy })))
}

/// A request body that says when it was read to its end.
struct ReadToEnd {
    body: Incoming,
    read: Arc<std::sync::atomic::AtomicBool>,
}

impl http_body::Body for ReadToEnd {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.body.is_end_stream() {
            self.read.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Where a connection is between requests.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// No byte of a next request yet, since then.
    Idle(Instant),
    /// A request's first byte arrived then; its headers are not complete.
    Head(Instant),
    /// This many requests are being handled (their responses not yet sent).
    Busy(usize),
}

/// A connection's [`Phase`], shared by its reader, its requests and its
/// watchdog; `changed` wakes the watchdog when a deadline moves.
struct Activity {
    phase: Mutex<Phase>,
    /// An answer went out before its request's body was read: the close
    /// lingers (see [`Watched::poll_shutdown`]).
    linger: std::sync::atomic::AtomicBool,
    /// Since when a write to the client has been blocked (its receive
    /// window full: a client that sends requests but reads no answers).
    write_blocked: Mutex<Option<Instant>>,
    changed: Notify,
}

impl Activity {
    fn new() -> Self {
        Self {
            phase: Mutex::new(Phase::Idle(Instant::now())),
            linger: std::sync::atomic::AtomicBool::new(false),
            write_blocked: Mutex::new(None),
            changed: Notify::new(),
        }
    }

    fn phase(&self) -> MutexGuard<'_, Phase> {
        // The state is a plain enum: a panic elsewhere cannot leave it torn.
        self.phase.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, phase: Phase) {
        *self.phase() = phase;
        self.changed.notify_one();
    }

    fn linger_at_close(&self) {
        self.linger
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn lingers(&self) -> bool {
        self.linger.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Bytes arrived from the client.
    fn saw_bytes(&self) {
        let mut phase = self.phase();
        if let Phase::Idle(_) = *phase {
            *phase = Phase::Head(Instant::now());
            drop(phase);
            self.changed.notify_one();
        }
    }

    fn deadline(&self, limits: &ConnectionLimits) -> Option<Instant> {
        let phase = match *self.phase() {
            Phase::Idle(since) => Some(since + limits.idle_timeout),
            Phase::Head(since) => Some(since + limits.header_timeout),
            Phase::Busy(_) => None,
        };
        let writes = self.write_blocked_since().map(|t| t + limits.idle_timeout);
        match (phase, writes) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn write_blocked_since(&self) -> Option<Instant> {
        *self.write_blocked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A write could not proceed (`blocked`) or made progress.
    fn wrote(&self, blocked: bool) {
        let mut since = self.write_blocked.lock().unwrap_or_else(|p| p.into_inner());
        match (*since, blocked) {
            (None, true) => {
                *since = Some(Instant::now());
                drop(since);
                self.changed.notify_one();
            }
            (Some(_), false) => *since = None,
            _ => {}
        }
    }

    /// Not in a request: waiting for one, or for the rest of its headers;
    /// not still writing an answer to a slow reader, nor closing in stages
    /// (closed now, it would lose what it is there for).
    fn is_waiting(&self) -> bool {
        !matches!(*self.phase(), Phase::Busy(_))
            && self.write_blocked_since().is_none()
            && !self.lingers()
    }

    fn phase_name(&self) -> &'static str {
        match *self.phase() {
            Phase::Idle(_) => "idle",
            Phase::Head(_) => "headers",
            Phase::Busy(_) => "busy",
        }
    }
}

/// One request in flight; dropping it (with the response body) ends it.
struct Busy(Arc<Activity>);

impl Busy {
    fn start(activity: Arc<Activity>) -> Self {
        let next = match *activity.phase() {
            Phase::Busy(n) => Phase::Busy(n + 1),
            _ => Phase::Busy(1),
        };
        activity.set(next);
        Self(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let next = match *self.0.phase() {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            _ => Phase::Idle(Instant::now()),
        };
        self.0.set(next);
    }
}

/// A response body that keeps its request [`Busy`] until it is dropped.
struct Tracked {
    body: Body,
    _busy: Busy,
}

impl http_body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The socket, telling [`Activity`] when a client starts a request.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
    /// While closing in stages: until when, and how many bytes may still
    /// be read and dropped.
    linger: Option<(Pin<Box<tokio::time::Sleep>>, usize)>,
}

impl Watched {
    /// Reads and drops what the client sends until it closes its side,
    /// [`LINGER`] has passed or [`LINGER_BYTES`] were read.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let (deadline, left) = self
            .linger
            .get_or_insert_with(|| (Box::pin(tokio::time::sleep(LINGER)), LINGER_BYTES));
        let mut scratch = [0u8; 8192];
        loop {
            if *left == 0 || deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                    *left = left.saturating_sub(buf.filled().len());
                }
                // The client closed its side, or the connection broke.
                Poll::Ready(_) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.saw_bytes();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.activity.wrote(polled.is_pending());
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.linger.is_none() {
            std::task::ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
            if !this.activity.lingers() {
                return Poll::Ready(Ok(()));
            }
        }
        this.poll_drain(cx).map(Ok)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.activity.wrote(polled.is_pending());
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_half_the_open_files_to_the_sync() {
        assert_eq!(effective_cap(1024, None), 1024);
        assert_eq!(effective_cap(1024, Some(1 << 20)), 1024);
        assert_eq!(effective_cap(1024, Some(1024)), 512);
        assert_eq!(effective_cap(1024, Some(256)), 128);
        assert_eq!(effective_cap(1024, Some(4)), MIN_CONNECTIONS);
    }

    fn limits() -> ConnectionLimits {
        ConnectionLimits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
            max_connections: 4,
        }
    }

    fn since(activity: &Activity) -> Instant {
        match *activity.phase() {
            Phase::Idle(t) | Phase::Head(t) => t,
            Phase::Busy(_) => panic!("busy has no start"),
        }
    }

    #[test]
    fn idle_then_headers_then_busy_then_idle() {
        let limits = limits();
        let activity = Arc::new(Activity::new());
        assert!(matches!(*activity.phase(), Phase::Idle(_)));
        assert_eq!(
            activity.deadline(&limits),
            Some(since(&activity) + limits.idle_timeout)
        );
        activity.saw_bytes();
        assert!(matches!(*activity.phase(), Phase::Head(_)));
        let first_byte = since(&activity);
        assert_eq!(
            activity.deadline(&limits),
            Some(first_byte + limits.header_timeout)
        );
        activity.saw_bytes();
        assert_eq!(
            since(&activity),
            first_byte,
            "more header bytes do not extend the header deadline"
        );
        let busy = Busy::start(activity.clone());
        assert_eq!(
            activity.deadline(&limits),
            None,
            "a request being handled has no deadline"
        );
        activity.saw_bytes();
        assert!(
            matches!(*activity.phase(), Phase::Busy(1)),
            "a body is not a new request"
        );
        drop(busy);
        assert!(
            matches!(*activity.phase(), Phase::Idle(_)),
            "idle once the response is gone"
        );
        assert!(since(&activity) >= first_byte);
    }

    #[test]
    fn a_blocked_write_gets_the_idle_deadline_even_in_a_request() {
        let limits = limits();
        let activity = Arc::new(Activity::new());
        let _busy = Busy::start(activity.clone());
        assert_eq!(activity.deadline(&limits), None);
        activity.wrote(true);
        let blocked = activity.write_blocked_since().expect("blocked");
        activity.wrote(true);
        assert_eq!(
            activity.deadline(&limits),
            Some(blocked + limits.idle_timeout)
        );
        activity.wrote(false);
        assert_eq!(activity.deadline(&limits), None, "progress clears it");
    }

    /// At the cap, the oldest connection not in a request makes room,
    /// whatever its age; one in a request never does.
    #[test]
    fn the_oldest_waiting_connection_is_closed_for_a_newcomer() {
        let open = Arc::new(Open::default());
        let connect = |phase: Phase| {
            let activity = Arc::new(Activity::new());
            activity.set(phase);
            let evict = Arc::new(Notify::new());
            let guard = open.add(activity.clone(), evict.clone());
            (activity, evict, guard)
        };
        let now = Instant::now();
        let busy = connect(Phase::Busy(1));
        let headers = connect(Phase::Head(now));
        let idle = connect(Phase::Idle(now));
        let closed = |evict: &Arc<Notify>| {
            let notified = evict.notified();
            tokio::pin!(notified);
            notified.enable()
        };
        assert!(open.close_oldest_waiting());
        assert!(!closed(&busy.1), "in a request");
        assert!(closed(&headers.1), "the oldest waiting one");
        assert!(!closed(&idle.1), "only one per newcomer");
        assert!(open.close_oldest_waiting());
        assert!(closed(&idle.1));
        assert!(
            !open.close_oldest_waiting(),
            "every one left is in a request"
        );
        // Closing in stages, or writing to a slow reader: not waiting.
        let lingering = connect(Phase::Idle(now));
        lingering.0.linger_at_close();
        let blocked = connect(Phase::Idle(now));
        blocked.0.wrote(true);
        assert!(!open.close_oldest_waiting(), "lingering or blocked");
        drop((lingering, blocked));
        drop((busy, headers, idle));
        assert!(
            open.list().is_empty(),
            "each guard takes its connection off"
        );
    }
}
