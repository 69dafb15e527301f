//! Partial clone (`--filter`): gix 0.90 has no partial clone, so we add the
//! pieces ourselves.
//!
//! - [`request_filter`] wraps a connection so that every fetch request that
//!   wants objects also carries `filter <spec>`, but only when the server
//!   advertised the `filter` capability (otherwise the fetch is a normal one
//!   and a warning says so, as git does). gix writes the arguments as packet
//!   lines; the wrapper adds one packet line after the first `want` line of
//!   each request, the one place the filter goes in.
//! - [`needed_blobs`] lists the blobs a checkout of a commit needs that the
//!   store lacks (the sparse cone, or the whole tree), and [`fetch_blobs`]
//!   fetches them with `want <id>` lines, no filter and no `have` lines (a
//!   `have` would tell the server we hold what its trees reach, and it
//!   would leave those very blobs out), [`BLOBS_PER_REQUEST`] at a time:
//!   50 bytes a blob, a 40,000-file tree's list in one request is 2 MB,
//!   which nginx in front of `git http-backend` refuses by default (413,
//!   `client_max_body_size 1m`; git's own partial clone fails there).
//!   Fetching blobs by id needs `uploadpack.allowAnySHA1InWant` on a
//!   protocol v0/v1 server, as for git.
//! - Every pack fetched with a filter gets a `.promisor` file, and the store's
//!   config names origin as the promisor remote (see
//!   [`super::store`]), so the git CLI treats the root as a partial clone.

use std::borrow::Cow;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use gix::bstr::{BStr, ByteSlice};
use gix::protocol::transport::client::blocking_io::{RequestWriter, SetServiceResponse, Transport};
use gix::protocol::transport::client::{self, MessageKind, TransportWithoutIO, WriteMode};
use gix::protocol::transport::{Protocol, Service};
use gix::ObjectId;

use super::fetch;
pub use super::fetch::Error;
use super::sparse::Patterns;
use super::transport::{self, Budget, Connected};

/// A validated `--filter` spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter(String);

/// What `--filter` accepts, for messages.
pub const SUPPORTED: &str = "blob:none and blob:limit=<n>[k|m|g]";

impl Filter {
    /// Accepts what git accepts for the blob filters; refuses the others
    /// (`tree:<depth>` would leave out the trees a checkout is planned
    /// from, `sparse:oid`, `object:type` and `combine:` are rarely used).
    pub fn parse(spec: &str) -> Result<Self, String> {
        let spec = spec.trim();
        if spec == "blob:none" {
            return Ok(Self(spec.to_string()));
        }
        if let Some(limit) = spec.strip_prefix("blob:limit=") {
            let digits = limit.trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G']);
            let suffixes = limit.len() - digits.len();
            if !digits.is_empty() && suffixes <= 1 && digits.bytes().all(|b| b.is_ascii_digit()) {
                return Ok(Self(spec.to_string()));
            }
            return Err(format!(
                "{spec:?}: the limit must be a number of bytes, optionally followed by k, m or g (blob:limit=1m)"
            ));
        }
        Err(format!(
            "{spec:?} is not supported; supported filters: {SUPPORTED}"
        ))
    }

    /// The spec as given (what git records in `remote.origin.partialclonefilter`).
    pub fn spec(&self) -> &str {
        &self.0
    }
}

/// Whether the server took the filter, once the handshake told us.
#[derive(Clone, Debug, Default)]
pub struct FilterReport(Arc<AtomicU8>);

const SENT: u8 = 1;
const REFUSED: u8 = 2;

impl FilterReport {
    /// A filter was asked for and the server does not advertise `filter`.
    pub fn refused(&self) -> bool {
        self.0.load(Ordering::Relaxed) == REFUSED
    }
}

/// Wraps the connection so that its fetches carry `filter` (when given).
pub fn request_filter(connected: Connected, filter: Option<&Filter>) -> (Connected, FilterReport) {
    let report = FilterReport::default();
    let Some(filter) = filter else {
        return (connected, report);
    };
    let line = format!("filter {}\n", filter.spec());
    let wrapped = Filtered {
        inner: connected.transport,
        line: format!("{:04x}{line}", line.len() + 4).into_bytes(),
        state: report.0.clone(),
    };
    let connected = Connected {
        transport: Box::new(wrapped),
        ..connected
    };
    (connected, report)
}

/// After a fetch with `filter`: marks the new pack as coming from the
/// promisor remote (git's `.promisor` file), and warns when the server
/// ignored the filter.
pub fn settle_pack(
    filter: Option<&Filter>,
    report: &FilterReport,
    pack: Option<&std::path::Path>,
) -> Result<(), Error> {
    let Some(filter) = filter else {
        return Ok(());
    };
    if report.refused() {
        tracing::warn!(
            filter = filter.spec(),
            "the server does not support --filter (it did not advertise the filter capability; \
             git servers need uploadpack.allowFilter): fetched everything instead"
        );
    }
    match pack {
        Some(pack) => {
            mark_promisor(pack).map_err(|e| Error::Store(format!("{}: {e}", pack.display())))
        }
        None => Ok(()),
    }
}

/// Writes `<pack>.promisor` next to `pack` (empty: git only tests that it exists).
pub fn mark_promisor(pack: &std::path::Path) -> io::Result<()> {
    let marker = pack.with_extension("promisor");
    std::fs::File::create(&marker)?;
    crate::fsutil::apply_umask(&marker)
}

/// A transport that adds the filter line to fetch requests.
struct Filtered<T> {
    inner: T,
    /// The encoded packet line `filter <spec>\n`.
    line: Vec<u8>,
    state: Arc<AtomicU8>,
}

super::transport::forward_transport_without_io!(Filtered);

impl<T: Transport> Transport for Filtered<T> {
    fn handshake<'a>(
        &mut self,
        service: Service,
        extra_parameters: &'a [(&'a str, Option<&'a str>)],
    ) -> Result<SetServiceResponse<'_>, client::Error> {
        let response = self.inner.handshake(service, extra_parameters)?;
        // Over v0/v1 gix then lists `filter` among the first want line's capabilities.
        let supported = super::transport::offers_for_fetch(
            response.actual_protocol,
            &response.capabilities,
            "filter",
        );
        self.state
            .store(if supported { SENT } else { REFUSED }, Ordering::Relaxed);
        Ok(response)
    }

    fn request(
        &mut self,
        write_mode: WriteMode,
        on_into_read: MessageKind,
        trace: bool,
    ) -> Result<RequestWriter<'_>, client::Error> {
        let writer = self.inner.request(write_mode, on_into_read, trace)?;
        if self.state.load(Ordering::Relaxed) != SENT {
            return Ok(writer);
        }
        let (raw, reader) = writer.into_parts();
        let injector = Injector {
            inner: raw,
            line: self.line.clone(),
            pending: Vec::new(),
            injected: false,
        };
        Ok(RequestWriter::new_from_bufread(
            injector,
            reader,
            write_mode,
            on_into_read,
            trace,
        ))
    }
}

/// Passes packet lines through, adding `line` after the first `want` line.
struct Injector<W> {
    inner: W,
    line: Vec<u8>,
    /// Bytes of a packet line not complete yet.
    pending: Vec<u8>,
    injected: bool,
}

impl<W: Write> Injector<W> {
    fn forward_complete_lines(&mut self) -> io::Result<()> {
        while self.pending.len() >= 4 {
            let declared = std::str::from_utf8(&self.pending[..4])
                .ok()
                .and_then(|hex| usize::from_str_radix(hex, 16).ok())
                .ok_or_else(|| io::Error::other("not a packet line"))?;
            // 0000 flush, 0001 delimiter, 0002 response end: four bytes.
            let total = declared.max(4);
            if self.pending.len() < total {
                break;
            }
            let packet: Vec<u8> = self.pending.drain(..total).collect();
            self.inner.write_all(&packet)?;
            if !self.injected && packet[4..].starts_with(b"want ") {
                self.inner.write_all(&self.line)?;
                self.injected = true;
            }
        }
        Ok(())
    }
}

impl<W: Write> Write for Injector<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        self.forward_complete_lines()?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.write_all(&std::mem::take(&mut self.pending))?;
        self.inner.flush()
    }
}

/// A handle for asking about many objects a partial clone lacks: gix
/// rescans the pack directory after every miss, which for tens of thousands
/// of missing blobs costs seconds. One deliberate miss first brings the
/// handle up to date with the disk (packs fetched through other handles),
/// then misses stay cheap.
pub fn lookup_handle(repo: &gix::Repository) -> gix::Repository {
    let mut repo = repo.clone();
    let _ = repo.has_object(ObjectId::null(repo.object_hash()));
    repo.objects.refresh_never();
    repo
}

/// The blobs a checkout of `commit` reads that the store lacks: every file
/// the sparse patterns include (all of them without patterns), and wherever
/// they are, symlinks (checked for escaping targets before checkout),
/// `.gitattributes` and `.gitmodules`.
pub fn needed_blobs(
    repo: &gix::Repository,
    commit: ObjectId,
    sparse: Option<&Patterns>,
) -> Result<Vec<ObjectId>, Error> {
    let tree = repo
        .find_commit(commit)
        .and_then(|c| c.tree())
        .map_err(|e| fetch::git_err("could not read the fetched commit's tree", e, None))?;
    let mut recorder = gix::traverse::tree::Recorder::default();
    tree.traverse().breadthfirst(&mut recorder).map_err(|e| {
        fetch::git_err(
            "could not walk the fetched tree (is a tree missing?)",
            e,
            None,
        )
    })?;
    let mut seen = std::collections::HashSet::new();
    let lookup = lookup_handle(repo);
    Ok(recorder
        .records
        .into_iter()
        .filter(|e| e.mode.is_blob_or_symlink())
        .filter(|e| {
            let name = e.filepath.rsplit_str("/").next().unwrap_or_default();
            e.mode.is_link()
                || name == b".gitattributes"
                || name == b".gitmodules"
                || sparse.is_none_or(|p| p.includes(e.filepath.as_bstr()))
        })
        .map(|e| e.oid)
        .filter(|id| !lookup.has_object(id) && seen.insert(*id))
        .collect())
}

/// Blobs asked for in one request: 500 KB of `want` lines, half of
/// nginx's default limit on a request body.
pub const BLOBS_PER_REQUEST: usize = 10_000;

/// Fetches `ids` (blobs a checkout needs) without a filter, in requests of
/// [`BLOBS_PER_REQUEST`]; returns the bytes of the packs written. `opts`
/// says how to reach the remote; its ref, depth and filter are not used.
pub fn fetch_blobs(
    repo: &gix::Repository,
    ids: &[ObjectId],
    opts: &fetch::Options<'_>,
    budget: &Budget,
) -> Result<u64, Error> {
    let mut bytes = 0;
    for batch in ids.chunks(BLOBS_PER_REQUEST) {
        bytes += fetch_blob_batch(repo, batch, opts, budget)?;
    }
    Ok(bytes)
}

/// [`fetch_blobs`]' one request.
fn fetch_blob_batch(
    repo: &gix::Repository,
    ids: &[ObjectId],
    opts: &fetch::Options<'_>,
    budget: &Budget,
) -> Result<u64, Error> {
    if ids.is_empty() {
        return Ok(0);
    }
    let specs: Vec<String> = ids.iter().map(ObjectId::to_string).collect();
    let remote = repo
        .remote_at(opts.url.gix().clone())
        .map_err(|e| Error::Url(e.to_string()))?
        .with_fetch_tags(gix::remote::fetch::Tags::None)
        .with_refspecs(
            specs.iter().map(String::as_str),
            gix::remote::Direction::Fetch,
        )
        .map_err(|e| fetch::git_err("invalid object id", e, None))?;
    let connected =
        transport::connect(opts.url.gix(), budget, opts.ssh, opts.http, opts.git_config)?;
    let report = connected.report;
    let listed = super::upload_pack::list(
        repo,
        &remote,
        connected.transport,
        connected.options,
        super::credential_callback::callback(opts.credentials.cloned(), opts.url.gix()),
    )
    .map_err(|e| {
        fetch::git_err(
            "could not list remote refs for the blob fetch",
            e,
            Some(&report),
        )
    })?;
    // Over v2 a server serves any object asked for by id.
    let context = match listed.protocol() {
        Protocol::V2 => "fetching the blobs the checkout needs failed",
        Protocol::V0 | Protocol::V1 => {
            "fetching the blobs the checkout needs failed (a git server must allow \
             uploadpack.allowAnySHA1InWant for a partial clone over protocol v0/v1)"
        }
    };
    // No `have` lines: the noop negotiator sends none.
    let written = listed
        .receive(
            repo,
            gix::protocol::fetch::Shallow::NoChange,
            gix::negotiate::Algorithm::Noop,
            budget.interrupt_flag(),
            report.server_words(),
        )
        .map_err(|e| fetch::receive_error(context, e, &report))?;
    let Some(written) = written else {
        return Ok(0);
    };
    mark_promisor(&written.pack)
        .map_err(|e| Error::Store(format!("{}: {e}", written.pack.display())))?;
    Ok(std::fs::metadata(&written.pack).map_or(0, |m| m.len()))
}

/// Fetches what a checkout of `commit` needs and the store lacks; returns
/// how many blobs were missing.
pub fn complete_checkout(
    repo: &gix::Repository,
    commit: ObjectId,
    sparse: Option<&Patterns>,
    opts: &fetch::Options<'_>,
    budget: &Budget,
) -> Result<usize, Error> {
    let missing = needed_blobs(repo, commit, sparse)?;
    if missing.is_empty() {
        return Ok(0);
    }
    let bytes = fetch_blobs(repo, &missing, opts, budget)?;
    tracing::info!(
        blobs = missing.len(),
        pack_bytes = bytes,
        "fetched the blobs the checkout needs (partial clone)"
    );
    // The handle must see the new pack.
    let still = missing.iter().filter(|id| !repo.has_object(*id)).count();
    if still > 0 {
        return Err(Error::Git {
            context: "partial clone",
            message: format!(
                "the server did not send {still} of the {} blobs the checkout needs",
                missing.len()
            ),
        });
    }
    Ok(missing.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_filters_parse_and_others_are_refused() {
        assert_eq!(
            Filter::parse("blob:none").map(|f| f.0),
            Ok("blob:none".into())
        );
        assert!(Filter::parse("blob:limit=1024").is_ok());
        assert!(Filter::parse("blob:limit=1m").is_ok());
        let err = Filter::parse("tree:0").expect_err("tree:0 is refused");
        assert!(err.contains("blob:none and blob:limit"), "{err}");
        assert!(Filter::parse("blob:limit=").is_err());
        assert!(Filter::parse("blob:limit=1mm").is_err());
        assert!(Filter::parse("blob:limit=x").is_err());
    }

    fn packet(w: &mut impl Write, payload: &str) {
        let header = format!("{:04x}", payload.len() + 4);
        w.write_all(header.as_bytes()).expect("write");
        w.write_all(payload.as_bytes()).expect("write");
    }

    /// gix writes a packet line in pieces (length, then payload).
    #[test]
    fn the_filter_line_follows_the_first_want_line_only() {
        let mut out = Vec::new();
        let mut injector = Injector {
            inner: &mut out,
            line: b"0015filter blob:none\n".to_vec(),
            pending: Vec::new(),
            injected: false,
        };
        packet(&mut injector, "command=fetch\n");
        injector.write_all(b"0001").expect("write");
        packet(&mut injector, "thin-pack\n");
        let want = format!("want {}\n", "a".repeat(40));
        packet(&mut injector, &want);
        packet(&mut injector, &want);
        injector.write_all(b"0000").expect("write");
        injector.flush().expect("flush");
        let text = String::from_utf8(out).expect("utf8");
        assert_eq!(text.matches("filter blob:none").count(), 1, "{text}");
        let filter_at = text.find("filter").expect("filter");
        assert!(text.find("want").expect("want") < filter_at);
        assert!(text.ends_with(&format!("{want}0000")), "{text}");
    }
}
