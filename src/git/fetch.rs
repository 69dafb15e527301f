//! Resolve the wanted ref on the remote and, only if it moved, fetch it.
//!
//! One connection per poll: the handshake and ls-refs tell us the remote
//! commit; when it equals what is published (and we have its objects) the
//! connection is dropped without any pack negotiation. Otherwise the same
//! connection negotiates and receives the pack, shallow to `depth`.

use std::num::NonZeroU32;

use gix::protocol::handshake::Ref;
use gix::protocol::transport::Protocol;
use gix::remote::fetch::refmap::Source;
use gix::remote::fetch::Shallow;
use gix::ObjectId;

use super::credential_callback;
use super::transport::{self, Budget, SpyReport};
use super::CommitId;
use super::{Credentials, HttpSettings};

/// What to fetch and what we already have.
pub struct Options<'a> {
    pub url: &'a super::Remote,
    /// `HEAD`, a branch or tag name (short or full), or a full hex SHA.
    pub git_ref: &'a str,
    /// 0 = full history.
    pub depth: u32,
    /// The commit currently published, if any.
    pub have: Option<CommitId>,
    /// Fetch even when the remote still points at `have` (e.g. depth changed).
    pub force: bool,
    /// Given to an http(s) server that asks (the only credentials gix sees).
    pub credentials: Option<&'a Credentials>,
    /// How to reach ssh remotes (keys, known_hosts, `GIT_SSH_COMMAND`).
    pub ssh: &'a super::ssh::Options,
    /// Proxy, TLS and extra headers (a bearer token) for http(s).
    pub http: &'a HttpSettings,
    /// `--git-config`, for the `git upload-pack` of a file:// remote.
    pub git_config: &'a super::cli_config::GitConfigPairs,
    /// `--filter`: partial clone (see [`super::partial`]).
    pub filter: Option<&'a super::partial::Filter>,
    /// Called once the refs show a commit to fetch, before the pack is
    /// negotiated and received: work that does not need the objects can
    /// start beside the download.
    pub on_change: Option<&'a dyn Fn()>,
}

/// Result of a poll, with the annotated tag `--ref` names, if it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Polled {
    pub outcome: Outcome,
    /// The tag object the remote's ref points at (`--ref` an annotated
    /// tag); its object is in the store.
    pub tag: Option<super::signed::TagId>,
}

/// Result of a poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The remote ref still points at `have`; nothing was transferred but the ref advertisement.
    Unchanged(CommitId),
    /// The objects of this commit are now in the repository.
    Fetched { commit: CommitId, pack_bytes: u64 },
}

impl Outcome {
    /// The size of the pack received (0: none).
    pub fn pack_bytes(&self) -> u64 {
        match self {
            Outcome::Unchanged(_) => 0,
            Outcome::Fetched { pack_bytes, .. } => *pack_bytes,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Connect(#[from] transport::ConnectError),
    #[error("invalid repository URL: {0}")]
    Url(String),
    #[error("couldn't find remote ref {0:?}{hint}", hint = abbreviation_hint(.0))]
    RefNotFound(String),
    #[error(
        "authentication failed: {url} rejected the credentials (check the user name and the \
         password or token)"
    )]
    CredentialsRejected { url: String },
    #[error(
        "authentication failed: {url} asks for credentials and none are configured (set \
         --username with GITSYNC_PASSWORD or --password-file, --credential, --askpass-url, \
         a bearer token or a GitHub App, or put them in --repo)"
    )]
    CredentialsMissing { url: String },
    #[error(
        "the server (git protocol {0:?}) does not offer shallow fetches (no 'shallow' capability), \
         so --depth cannot be honoured; set --depth=0 to fetch full history on purpose"
    )]
    ShallowUnsupported(Protocol),
    #[error("the server sent {count} or more commits although --depth={depth} was asked for; refusing to pretend the fetch was shallow")]
    NotShallow { depth: u32, count: usize },
    #[error("the fetched object {id} is not a commit and does not peel to one: {message}")]
    NotACommit { id: ObjectId, message: String },
    #[error(
        "sync timeout ({timeout:?}) exceeded while {step} {url}: the remote is slow or \
         unreachable; check the network and the server, or raise --sync-timeout"
    )]
    Timeout {
        step: Step,
        url: String,
        timeout: std::time::Duration,
    },
    /// The connection through the proxy failed: the proxy is down, refused,
    /// or could not reach the server.
    #[error(
        "could not reach {url} through the proxy {proxy}: {message} (check that the proxy is up \
         and reachable from here, and that it can reach the git server; NO_PROXY lists the hosts \
         that bypass it)"
    )]
    Proxy {
        url: String,
        proxy: String,
        message: String,
    },
    /// A proxy's own answer to a plain-http request (see
    /// [`proxy_answer`]): 407, or a 502/503/504 (it may not have reached
    /// the git server).
    #[error("could not reach {url} through the proxy {proxy}: {said}")]
    ProxyAnswered {
        url: String,
        proxy: String,
        said: String,
    },
    /// An http:// URL naming a port where the server speaks TLS (see
    /// [`super::tls_probe`]): it answered plain HTTP with a 400 or by
    /// breaking the answer off.
    #[error(
        "could not list remote refs: the server speaks TLS (https) on that port, not plain \
         HTTP: use https:// in --repo ({url}; to plain HTTP it answered: {message})"
    )]
    PlainHttpToTls { url: String, message: String },
    /// An http(s) server answered, but not as a git server (see [`super::probe`]).
    #[error("{explanation} (--repo {url})")]
    NotGitServer { url: String, explanation: String },
    #[error("interrupted by shutdown")]
    Interrupted,
    #[error("{context}: {message}")]
    Git {
        context: &'static str,
        message: String,
    },
    #[error(
        "could not settle the fetched pack: {0} (the object store must be writable by this user)"
    )]
    Store(String),
    /// The received pack could not be indexed: damaged in transit, or its
    /// deltas rest on an object of the store that is damaged.
    #[error(
        "fetch failed: could not index the received pack: {0} (damaged in transit, or its \
         deltas rest on a damaged object of the local object store)"
    )]
    Index(String),
    /// The http response carrying the pack ended early: a transfer cut
    /// short, not a sign of damage here.
    #[error(
        "fetch failed: the connection ended before the whole pack arrived (the server or a \
         proxy closed it; the sync retries): {0}"
    )]
    Cut(String),
}

impl Error {
    /// Whether the local object store may be at fault: a received pack
    /// that cannot be indexed (see [`Error::Index`]), or our own commits
    /// unreadable before the negotiation.
    pub fn store_may_be_damaged(&self) -> bool {
        match self {
            Error::Index(_) => true,
            Error::Git { message, .. } => message.starts_with(NEGOTIATION_PREPARATION),
            _ => false,
        }
    }
}

/// gix's error for a side-band line whose band byte is 69, `E`: an `ERR` line.
const ERR_LINE_AS_BAND: &str = "non-side channel line or input was malformed: 69";

/// How gix's error begins when our own refs and commits cannot be read
/// for the negotiation.
const NEGOTIATION_PREPARATION: &str = "Failed to prepare fetch negotiation";

/// What a fetch was doing, for timeout messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Connecting,
    /// http(s): the first request both connects and lists the refs.
    ConnectingAndListing,
    ListingRefs,
    Fetching,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Step::Connecting => "connecting to",
            Step::ConnectingAndListing => "connecting to and listing the refs (ls-refs) of",
            Step::ListingRefs => "listing the refs (ls-refs) of",
            Step::Fetching => "fetching the pack from",
        })
    }
}

/// Polls the remote and fetches the wanted commit if needed.
pub fn fetch(
    repo: &gix::Repository,
    opts: &Options<'_>,
    budget: &Budget,
) -> Result<Outcome, Error> {
    poll(repo, opts, budget).map(|polled| polled.outcome)
}

/// [`fetch`], also saying which annotated tag `--ref` names (for
/// `--verify-signatures=tag`).
pub fn poll(repo: &gix::Repository, opts: &Options<'_>, budget: &Budget) -> Result<Polled, Error> {
    let mut step = Step::Connecting;
    let result = fetch_inner(repo, opts, budget, &mut step);
    result.map_err(|e| as_budget_ran_out(e, budget, step, || redacted_url(opts)))
}

/// Every branch of the remote, in full, for a store that looks for a
/// commit the server will not send by SHA (a v0/v1 server sends a ref's
/// tip only, unless `uploadpack.allowReachableSHA1InWant` is set): git's
/// `submodule update` finds its pinned commit among all the branches it
/// fetched. `opts.git_ref` and `opts.depth` are not read. Returns the
/// size of the pack (0: nothing was new).
pub fn fetch_branches(
    repo: &gix::Repository,
    opts: &Options<'_>,
    budget: &Budget,
) -> Result<u64, Error> {
    let mut step = Step::Connecting;
    let result = transport::connect(opts.url.gix(), budget, opts.ssh, opts.http, opts.git_config)
        .map_err(Error::from)
        .and_then(|connected| branches_over(repo, connected, opts, budget, &mut step));
    result.map_err(|e| as_budget_ran_out(e, budget, step, || redacted_url(opts)))
}

/// [`fetch_branches`] over a `connected` transport.
fn branches_over(
    repo: &gix::Repository,
    connected: transport::Connected,
    opts: &Options<'_>,
    budget: &Budget,
    step: &mut Step,
) -> Result<u64, Error> {
    // gix wants a destination for a pattern; no ref is written here
    // (see `upload_pack`): it only names what to want.
    let remote = remote_for(repo, opts, "refs/heads/*:refs/remotes/origin/*")?;
    let (listed, report, filter_report) = list_over(repo, remote, connected, opts, budget, step)?;
    *step = Step::Fetching;
    receive(repo, listed, opts, 0, budget, &report, &filter_report)
}

fn redacted_url(opts: &Options<'_>) -> String {
    crate::types::redact_url(&opts.url.gix().to_bstring().to_string())
}

/// A transport error after the budget ran out is really a timeout or a
/// shutdown; so is an interruption: the sync loop raises the interrupt flag
/// at the deadline too, and the pack's writer may see the flag before the
/// reader sees the deadline. `url` is the remote's, for the message.
fn as_budget_ran_out(e: Error, budget: &Budget, step: Step, url: impl FnOnce() -> String) -> Error {
    match e {
        Error::Git { .. } | Error::Connect(_) | Error::Interrupted if budget.is_expired() => {
            Error::Timeout {
                step,
                url: url(),
                timeout: budget.timeout(),
            }
        }
        Error::Git { .. } | Error::Connect(_) if budget.is_interrupted() => Error::Interrupted,
        other => other,
    }
}

/// The remote at `--repo`, fetching what `refspec` names (no tags).
fn remote_for<'r>(
    repo: &'r gix::Repository,
    opts: &Options<'_>,
    refspec: &str,
) -> Result<gix::Remote<'r>, Error> {
    repo.remote_at(opts.url.gix().clone())
        .map_err(|e| Error::Url(e.to_string()))?
        .with_fetch_tags(gix::remote::fetch::Tags::None)
        .with_refspecs(Some(refspec), gix::remote::Direction::Fetch)
        .map_err(|e| git_err("invalid ref", e, None))
}

fn fetch_inner(
    repo: &gix::Repository,
    opts: &Options<'_>,
    budget: &Budget,
    step: &mut Step,
) -> Result<Polled, Error> {
    let remote = remote_for(repo, opts, &refspec_for(opts.git_ref))?;
    let connected =
        transport::connect(opts.url.gix(), budget, opts.ssh, opts.http, opts.git_config)?;
    fetch_over(repo, remote, connected, opts, budget, step)
}

/// What a listing of `remote`'s refs over `connected` leaves for the fetch.
type Listing = (
    super::upload_pack::Listed<transport::BoxedTransport>,
    SpyReport,
    super::partial::FilterReport,
);

/// Lists the refs `remote`'s refspec names over `connected`.
fn list_over(
    repo: &gix::Repository,
    remote: gix::Remote<'_>,
    connected: transport::Connected,
    opts: &Options<'_>,
    budget: &Budget,
    step: &mut Step,
) -> Result<Listing, Error> {
    let (connected, filter_report) = super::partial::request_filter(connected, opts.filter);
    // http(s) connects lazily, with the first request.
    *step = match opts.url.gix().scheme {
        gix::url::Scheme::Http | gix::url::Scheme::Https => Step::ConnectingAndListing,
        _ => Step::ListingRefs,
    };
    let report = connected.report;
    let listed = super::upload_pack::list(
        repo,
        &remote,
        connected.transport,
        connected.options,
        credential_callback::callback(opts.credentials.cloned(), opts.url.gix()),
    )
    .map_err(|e| classify_listing_error(e, opts, &report, budget))?;
    Ok((listed, report, filter_report))
}

/// [`fetch`] from `remote` over a `connected` transport.
fn fetch_over(
    repo: &gix::Repository,
    remote: gix::Remote<'_>,
    connected: transport::Connected,
    opts: &Options<'_>,
    budget: &Budget,
    step: &mut Step,
) -> Result<Polled, Error> {
    let (mut listed, report, filter_report) =
        list_over(repo, remote, connected, opts, budget, step)?;
    // Only the ref --ref names is wanted, not the others its name matches;
    // what follows reads that one mapping.
    listed.keep_mapping(chosen(listed.ref_map(), opts.git_ref));

    let remote_id = wanted_id(listed.ref_map(), opts.git_ref)?;
    let tag = wanted_tag(listed.ref_map()).map(super::signed::TagId);
    // The tag object counts too: compaction keeps commits, not tags.
    let have_locally = repo.has_object(remote_id) && tag.is_none_or(|t| repo.has_object(t.0));
    if !opts.force && opts.have == Some(CommitId(remote_id)) && have_locally {
        return Ok(Polled {
            outcome: Outcome::Unchanged(CommitId(remote_id)),
            tag,
        });
    }
    if opts.depth > 0 && !report.offers_shallow() {
        return Err(Error::ShallowUnsupported(
            report.protocol().unwrap_or(Protocol::V1),
        ));
    }

    *step = Step::Fetching;
    if let Some(on_change) = opts.on_change {
        on_change();
    }
    let extra_level = asks_one_level_more(repo, opts, remote_id);
    let asked = opts.depth + u32::from(extra_level);
    let pack_bytes = receive(repo, listed, opts, asked, budget, &report, &filter_report)?;
    let commit = peel_to_commit(repo, remote_id)?;
    // The server's answer, as deep as asked for.
    verify_depth(repo, commit, asked, opts.depth)?;
    if extra_level {
        cut_history(repo, commit, opts.depth)?;
        verify_depth(repo, commit, opts.depth, opts.depth)?;
    }
    Ok(Polled {
        outcome: Outcome::Fetched {
            commit: CommitId(commit),
            pack_bytes,
        },
        tag,
    })
}

/// Negotiates and receives the pack: what we ask the server for beyond the
/// wanted commit (the depth) is set here. Over protocol v0/v1 the transport
/// has already withheld the capabilities gix must not request (see
/// [`super::v1_capabilities`]). Returns the size of the pack written.
fn receive(
    repo: &gix::Repository,
    listed: super::upload_pack::Listed<transport::BoxedTransport>,
    opts: &Options<'_>,
    depth: u32,
    budget: &Budget,
    report: &SpyReport,
    filter_report: &super::partial::FilterReport,
) -> Result<u64, Error> {
    let written = listed
        .receive(
            repo,
            shallow_for(repo, depth),
            gix::negotiate::Algorithm::Consecutive,
            budget.interrupt_flag(),
            report.server_words(),
        )
        .map_err(|e| {
            proxy_answered_pack(opts, &e, budget)
                .unwrap_or_else(|| receive_error("fetch failed", e, report))
        })?;
    let pack = written.as_ref().map(|w| w.pack.as_path());
    super::partial::settle_pack(opts.filter, filter_report, pack)?;
    Ok(pack
        .and_then(|p| std::fs::metadata(p).ok())
        .map_or(0, |m| m.len()))
}

/// The proxy's own answer to the pack request, after the listing went
/// through it (the git server went away in between): named as the
/// listing's is (see [`proxys_own_answer`]).
fn proxy_answered_pack(
    opts: &Options<'_>,
    e: &super::upload_pack::ReceiveError,
    budget: &Budget,
) -> Option<Error> {
    let super::upload_pack::ReceiveError::Protocol(e) = e else {
        return None;
    };
    let proxy = proxy_in_use(opts)?;
    answered_by_proxy(opts, &proxy, &crate::types::error_chain(e), budget)
}

/// The proxy `--repo`'s requests go through, if any.
fn proxy_in_use(opts: &Options<'_>) -> Option<String> {
    opts.http
        .proxy_in_use(&opts.url.gix().to_bstring().to_string())
}

/// [`Error::ProxyAnswered`], when gix's `message` is `proxy`'s own answer
/// (see [`proxys_own_answer`]), or says that it refused an https://
/// request's tunnel (then asked again for its status: [`tunnel_refusal`]).
fn answered_by_proxy(
    opts: &Options<'_>,
    proxy: &str,
    message: &str,
    budget: &Budget,
) -> Option<Error> {
    let said = proxys_own_answer(opts.url.gix(), message)
        .or_else(|| tunnel_refusal(opts, message, budget))?;
    Some(Error::ProxyAnswered {
        url: redacted_url(opts),
        proxy: proxy.to_string(),
        said,
    })
}

/// Our error for a failed [`super::upload_pack::Listed::receive`].
pub(super) fn receive_error(
    context: &'static str,
    e: super::upload_pack::ReceiveError,
    report: &SpyReport,
) -> Error {
    use super::pack_in::Error as Pack;
    use super::upload_pack::ReceiveError;
    match e {
        ReceiveError::Protocol(e) => git_err(context, e, Some(report)),
        ReceiveError::Pack(Pack::Interrupted) => Error::Interrupted,
        // Ours: says which directory and why (a full disk, permissions);
        // what the server said of a transfer it finished does not belong.
        // A write that failed (a full volume) is no sign of damage.
        ReceiveError::Pack(Pack::Index(message)) if is_http_body_cut(&message) => {
            Error::Cut(message)
        }
        ReceiveError::Pack(Pack::Index(message)) if !message.contains("(os error") => {
            Error::Index(message)
        }
        ReceiveError::Pack(e @ Pack::Index(_)) => git_err(context, e, None),
        ReceiveError::Pack(e @ Pack::Store { .. }) => git_err(context, e, None),
        // The pack that did not come: the server may have said why.
        ReceiveError::Pack(e) => git_err(context, e, Some(report)),
    }
}

/// reqwest's words for a response body that stopped before its length
/// (or its last chunk): the server or a proxy closed the connection.
fn is_http_body_cut(message: &str) -> bool {
    message.contains("error reading a body from connection")
}

/// The refspec source for a user's `--ref` (no destination: we manage refs ourselves).
fn refspec_for(git_ref: &str) -> String {
    git_ref.to_string()
}

/// The object the remote's ref (the one mapping left, see [`chosen`])
/// points at, peeled through annotated tags when the server told us the
/// peeled id (v2 ls-refs does).
fn wanted_id(ref_map: &gix::remote::fetch::RefMap, git_ref: &str) -> Result<ObjectId, Error> {
    let mapping = ref_map
        .mappings
        .first()
        .ok_or_else(|| Error::RefNotFound(git_ref.to_string()))?;
    Ok(match &mapping.remote {
        Source::ObjectId(id) => *id,
        Source::Ref(r) => match r {
            Ref::Direct { object, .. } => *object,
            Ref::Peeled { object, .. } => *object,
            Ref::Symbolic { object, .. } => *object,
            Ref::Unborn { .. } => return Err(Error::RefNotFound(git_ref.to_string())),
        },
    })
}

/// What to add to "couldn't find remote ref" when `--ref` may have been
/// meant as an abbreviated SHA (it is taken as a ref name, as git does).
fn abbreviation_hint(git_ref: &str) -> &'static str {
    let hex = git_ref.len() >= 4 && git_ref.bytes().all(|b| b.is_ascii_hexdigit());
    match hex && git_ref.len() < 40 {
        true => {
            "; if it is an abbreviated SHA: those are not supported (as in git-sync v4), \
             give the full 40-hex SHA"
        }
        false => "",
    }
}

/// The remote ref `--ref` names. A short name can match several (a branch
/// and a tag both called `v1`); git's fetch (which git-sync runs) takes the
/// first by its rules for abbreviated names: the name itself, then under
/// `refs/`, `refs/tags/`, `refs/heads/`, `refs/remotes/`, then
/// `refs/remotes/<name>/HEAD`. So does this. Returns its position.
fn chosen(ref_map: &gix::remote::fetch::RefMap, git_ref: &str) -> Option<usize> {
    let rank = |m: &gix::remote::fetch::refmap::Mapping| match &m.remote {
        Source::ObjectId(_) => 0,
        Source::Ref(r) => abbreviation_rank(r.unpack().0.to_string().as_str(), git_ref),
    };
    // `min_by_key` keeps the first of equals: the server's order.
    let (index, _) = ref_map
        .mappings
        .iter()
        .enumerate()
        .min_by_key(|(_, m)| rank(m))?;
    Some(index)
}

/// Where `full` comes in git's order of the names `short` abbreviates
/// (lower is preferred; one past the rules when it is none of them).
fn abbreviation_rank(full: &str, short: &str) -> usize {
    let rules = [
        short.to_owned(),
        format!("refs/{short}"),
        format!("refs/tags/{short}"),
        format!("refs/heads/{short}"),
        format!("refs/remotes/{short}"),
        format!("refs/remotes/{short}/HEAD"),
    ];
    rules.iter().position(|r| r == full).unwrap_or(rules.len())
}

/// The annotated tag the remote's ref (the one mapping left) points at,
/// when the server peeled it (v2 ls-refs with `peel`, and v0's `^{}` lines,
/// always do).
fn wanted_tag(ref_map: &gix::remote::fetch::RefMap) -> Option<ObjectId> {
    match &ref_map.mappings.first()?.remote {
        Source::Ref(Ref::Peeled { tag, .. }) => Some(*tag),
        Source::Ref(Ref::Symbolic { tag, .. }) => *tag,
        _ => None,
    }
}

fn shallow_for(repo: &gix::Repository, depth: u32) -> Shallow {
    match NonZeroU32::new(depth) {
        Some(depth) => Shallow::DepthAtRemote(depth),
        None if repo.is_shallow().unwrap_or(false) => Shallow::undo(),
        None => Shallow::NoChange,
    }
}

/// Whether to ask the server for one level of history more than `--depth`
/// and cut it ourselves ([`cut_history`]): on an ordinary update of a
/// shallow store (the ref moved, the depth did not). With `deepen 1` the
/// new commit is itself the boundary, git's walk never reaches the commit
/// we have, and to leave out what we hold `pack-objects` walks its whole
/// tree (25 of 26 ms for a one-file change in a 38,000-file tree, on
/// every poll that finds a change). With `deepen 2` the walk meets our
/// commit as the new one's parent: 6 ms. When the new commit's parent is
/// not ours (history rewritten), that parent's changes come too; so not
/// for a commit we know to be older than ours (a rollback: ours or our
/// parent, whose own parent's changes would come for nothing).
fn asks_one_level_more(repo: &gix::Repository, opts: &Options<'_>, remote_id: ObjectId) -> bool {
    let older_than = |have: ObjectId| {
        repo.has_object(remote_id) || parents(repo, have).is_ok_and(|p| p.contains(&remote_id))
    };
    opts.depth > 0
        && !opts.force
        && opts.have.is_some_and(|have| {
            have.0 != remote_id && repo.has_object(have.0) && !older_than(have.0)
        })
}

/// Makes the commits `depth` levels down from `commit` (itself level 1)
/// shallow, as the server does for `deepen <depth>`: what a fetch asked one
/// level deeper ([`asks_one_level_more`]) ends up as deep as `--depth`.
/// Compaction then drops what is below the boundary.
fn cut_history(repo: &gix::Repository, commit: ObjectId, depth: u32) -> Result<(), Error> {
    let (last, _) = level(repo, commit, depth)?;
    let mut boundary = Vec::new();
    for id in last {
        if !parents(repo, id)?.is_empty() {
            boundary.push(id);
        }
    }
    add_shallow(repo, &boundary)
}

/// The commits `n` levels down from `commit` (itself level 1), each at its
/// shortest distance as git's `deepen` counts, and how many commits the
/// walk met: a breadth-first walk that stops at the shallow boundary and
/// at commits not in the store.
fn level(
    repo: &gix::Repository,
    commit: ObjectId,
    n: u32,
) -> Result<(Vec<ObjectId>, usize), Error> {
    let shallow = shallow_commits(repo)?;
    let mut seen = std::collections::HashSet::from([commit]);
    let mut level = vec![commit];
    for _ in 1..n {
        let mut next = Vec::new();
        for id in level.iter().filter(|id| !shallow.contains(*id)) {
            for parent in parents(repo, *id)? {
                if repo.has_object(parent) && seen.insert(parent) {
                    next.push(parent);
                }
            }
        }
        level = next;
    }
    Ok((level, seen.len()))
}

fn parents(repo: &gix::Repository, id: ObjectId) -> Result<Vec<ObjectId>, Error> {
    let commit = repo
        .find_commit(id)
        .map_err(|e| git_err("could not read a fetched commit", e, None))?;
    Ok(commit.parent_ids().map(|p| p.detach()).collect())
}

/// The shallow boundary as the file says now (gix's copy may lag a write
/// made within the same clock tick).
fn shallow_commits(repo: &gix::Repository) -> Result<std::collections::HashSet<ObjectId>, Error> {
    let path = shallow_file(repo)?;
    let store_err = |e: String| Error::Store(format!("{}: {e}", path.display()));
    let lines = super::shallow::read(&path).map_err(|e| store_err(e.to_string()))?;
    lines
        .into_iter()
        .map(|line| line.map_err(|e| store_err(format!("a line is not an object id: {e}"))))
        .collect()
}

/// Adds `commits` to the shallow file.
fn add_shallow(repo: &gix::Repository, commits: &[ObjectId]) -> Result<(), Error> {
    let mut ids = shallow_commits(repo)?;
    let count = ids.len();
    ids.extend(commits.iter().copied());
    if ids.len() == count {
        return Ok(());
    }
    let path = shallow_file(repo)?;
    super::shallow::write(&path, ids).map_err(|e| Error::Store(format!("{}: {e}", path.display())))
}

fn shallow_file(repo: &gix::Repository) -> Result<std::path::PathBuf, Error> {
    repo.shallow_file()
        .map_err(|e| git_err("could not locate the shallow file", e, None))
}

fn peel_to_commit(repo: &gix::Repository, id: ObjectId) -> Result<ObjectId, Error> {
    let object = repo.find_object(id).map_err(|e| Error::NotACommit {
        id,
        message: e.to_string(),
    })?;
    let commit = object.peel_to_commit().map_err(|e| Error::NotACommit {
        id,
        message: e.to_string(),
    })?;
    Ok(commit.id)
}

/// After a shallow fetch the history must not be deeper than asked for:
/// no commit `levels + 1` levels down (a merge's parents are one level).
/// The error names `--depth` (what the user asked for).
fn verify_depth(
    repo: &gix::Repository,
    commit: ObjectId,
    levels: u32,
    depth: u32,
) -> Result<(), Error> {
    if levels == 0 {
        return Ok(());
    }
    match level(repo, commit, levels + 1)? {
        (deeper, count) if !deeper.is_empty() => Err(Error::NotShallow { depth, count }),
        _ => Ok(()),
    }
}

fn classify_listing_error(
    e: gix::Error,
    opts: &Options<'_>,
    report: &SpyReport,
    budget: &Budget,
) -> Error {
    // gix's message would quote the URL; ours never held credentials anyway.
    let url = redacted_url(opts);
    if e.is_unauthenticated() {
        let sent = opts.credentials.is_some() || opts.http.sends_authorization();
        return match sent {
            true => Error::CredentialsRejected { url },
            false => Error::CredentialsMissing { url },
        };
    }
    let message = crate::types::error_chain(&e);
    if message.contains("None of the refspec") || message.contains("matched any of the") {
        return Error::RefNotFound(opts.git_ref.to_string());
    }
    if super::probe::is_not_git_answer(&message) {
        if let Some(explanation) =
            super::probe::explain(opts.url.gix(), opts.credentials, opts.http, budget)
        {
            return Error::NotGitServer { url, explanation };
        }
    }
    let Some(proxy) = proxy_in_use(opts) else {
        if plain_http_to_tls(opts.url.gix(), &message, budget) {
            let message = without_wrappers(&crate::types::redact_url(&message));
            return Error::PlainHttpToTls { url, message };
        }
        return git_err("could not list remote refs", e, Some(report));
    };
    if let Some(answered) = answered_by_proxy(opts, &proxy, &message, budget) {
        return answered;
    }
    // reqwest's words for a connection (to the proxy) that failed, and for
    // a CONNECT tunnel the proxy did not open.
    if message.contains("(Connect)") || message.contains("tunnel") {
        let message = without_wrappers(&crate::types::redact_url(&message));
        return Error::Proxy {
            url,
            proxy,
            message,
        };
    }
    git_err("could not list remote refs", e, Some(report))
}

/// [`proxy_answer`] for a request to `url`. A plain-http request goes to
/// the proxy, which answers it itself when it wants credentials or cannot
/// reach the git server. An https:// request asks for a CONNECT tunnel
/// instead (the "tunnel" error): a status that comes back through it is
/// the git server's own.
fn proxys_own_answer(url: &gix::Url, message: &str) -> Option<String> {
    (url.scheme == gix::url::Scheme::Http)
        .then(|| proxy_answer(message))
        .flatten()
}

/// reqwest's words for a `CONNECT` the proxy answered with anything but
/// 2xx (it keeps the status itself).
const TUNNEL_REFUSED: &[&str] = &[
    "tunnel error: unsuccessful",
    "tunnel error: proxy authorization required",
];

/// What an http proxy that refused an https:// request's tunnel answers
/// when asked again ([`super::connect_probe`]), and what that means.
fn tunnel_refusal(opts: &Options<'_>, message: &str, budget: &Budget) -> Option<String> {
    let url = opts.url.gix();
    if url.scheme != gix::url::Scheme::Https || !TUNNEL_REFUSED.iter().any(|t| message.contains(t))
    {
        return None;
    }
    let proxy = opts.http.http_proxy_for(&url.to_bstring().to_string())?;
    let (host, port) = (super::url_host(url)?, url.port_or_default()?);
    let timeout = budget
        .remaining()
        .min(super::connect_probe::CONNECT_PROBE_TIMEOUT);
    let answer = super::connect_probe::ask(&proxy, host, port, timeout)?;
    super::connect_probe::meaning(&answer, &super::connect_probe::authority(host, port))
}

/// gix's words for an HTTP error status (reqwest's `error_for_status`).
const HTTP_STATUS: &str = "Received HTTP status ";

/// What a proxy's own answer to a plain-http request, in gix's `message`,
/// means: a 407 is the proxy's (it wants credentials, or refused the ones
/// in its URL); a 502, 503 or 504 usually is (it could not reach the git
/// server), though a gateway in front of the server may have sent it.
/// `None` for any other answer. Only the status is quoted: the URLs in
/// `message` are said by the caller, redacted.
fn proxy_answer(message: &str) -> Option<String> {
    let at = message.find(HTTP_STATUS)? + HTTP_STATUS.len();
    let code: u16 = message.get(at..at + 3)?.parse().ok()?;
    let status = http::StatusCode::from_u16(code).ok()?;
    let answered = format!(
        "the proxy answered {code} {}",
        status.canonical_reason().unwrap_or("")
    );
    let answered = answered.trim_end();
    match code {
        407 => Some(format!(
            "{answered}: it wants a user and password, and did not accept what was sent (put \
             them in the proxy's URL, as user:password@ before its host, percent-encoded; \
             NO_PROXY lists the hosts that bypass the proxy)"
        )),
        502..=504 => Some(format!(
            "{answered}: the proxy may have failed to reach the git server (check that the git \
             server is up, and that the proxy can reach it and is allowed to; NO_PROXY lists \
             the hosts that bypass the proxy)"
        )),
        _ => None,
    }
}

/// gix's and reqwest's words for an http:// answer a TLS port gives to
/// plain HTTP: nginx's 400 ("The plain HTTP request was sent to HTTPS
/// port"), or an answer that is not HTTP or is cut off (a TLS alert, a
/// connection closed or reset while the request was being sent or read).
const PLAIN_TO_TLS_SIGNS: &[&str] = &[
    "Received HTTP status 400",
    "connection closed before message completed",
    "invalid HTTP version parsed",
    "invalid HTTP status-code parsed",
    "received unexpected message from connection",
    "Connection reset by peer",
    "Broken pipe",
];

/// Whether a listing of the http:// `url`, sent to the server itself (the
/// caller checked that no proxy is in use), failed the way a TLS port
/// answers plain HTTP, and one TLS handshake with that host and port
/// (within the budget) shows the server speaks TLS there.
fn plain_http_to_tls(url: &gix::Url, message: &str, budget: &Budget) -> bool {
    if url.scheme != gix::url::Scheme::Http
        || !PLAIN_TO_TLS_SIGNS.iter().any(|sign| message.contains(sign))
    {
        return false;
    }
    let (Some(host), Some(port)) = (super::url_host(url), url.port_or_default()) else {
        return false;
    };
    let timeout = budget.remaining().min(super::tls_probe::TLS_PROBE_TIMEOUT);
    !timeout.is_zero() && super::tls_probe::speaks_tls(host, port, timeout)
}

/// Library wrappers around an http(s) transport error that say nothing
/// the cause after them does not ("Transport handshake failed: An IO error
/// occurred when talking to the server: error sending request for url
/// (…): client error (Connect): tcp connect error: …").
const WRAPPERS: &[&str] = &[
    "Transport handshake failed",
    "An IO error occurred when talking to the server",
    "client error (Connect)",
    "client error (SendRequest)",
];

/// `message` (an error chain, causes joined by ": ") without the
/// [`WRAPPERS`] segments that a more specific cause follows; the last
/// segment always stays.
pub(super) fn without_wrappers(message: &str) -> String {
    let mut kept = message.to_string();
    for wrapper in WRAPPERS {
        let segment = format!("{wrapper}: ");
        let mut from = 0;
        while let Some(found) = kept[from..].find(&segment) {
            let at = from + found;
            let starts_a_segment = at == 0 || kept[..at].ends_with(": ");
            let cause_follows = !kept[at + segment.len()..].trim().is_empty();
            if starts_a_segment && cause_follows {
                kept.replace_range(at..at + segment.len(), "");
                from = at;
            } else {
                from = at + segment.len();
            }
        }
    }
    kept
}

/// What `read_exact` says when the stream ends first.
const EARLY_END: &str = "failed to fill whole buffer";
/// What it means when the stream is the server's answer.
const EARLY_END_SAID: &str =
    "the server's answer ended early (the connection was closed or reset mid-answer)";

pub(super) fn git_err(
    context: &'static str,
    e: impl std::error::Error,
    report: Option<&SpyReport>,
) -> Error {
    let mut message = without_wrappers(&crate::types::redact_url(&crate::types::error_chain(&e)));
    // gix's words for a pkt-line whose "band" byte is the `E` of an `ERR`
    // line: the server refused (its text is not kept on this path).
    if message.contains(ERR_LINE_AS_BAND) {
        message.push_str(
            " (the server answered with an error (an ERR line) where the pack should start: \
             it does not have a commit asked for, or does not send it by SHA; check --ref)",
        );
    }
    // A request body the server, or a proxy in front of it, would not take.
    if message.contains("Received HTTP status 413") {
        message.push_str(
            " (the server, or a proxy in front of it, refused the request as too large: raise \
             its limit on request bodies, e.g. nginx's client_max_body_size, 1 MB by default)",
        );
    }
    // std's words for a read that ended early, said in a protocol's terms
    // (only of a conversation with a server: a local file can end early too).
    if let (Some(at), Some(_)) = (message.find(EARLY_END), report) {
        message.replace_range(at..at + EARLY_END.len(), EARLY_END_SAID);
    }
    if let Some(stderr) = report.map(SpyReport::stderr).filter(|s| !s.is_empty()) {
        message.push_str(": ");
        message.push_str(&stderr);
    }
    Error::Git { context, message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::test_git::git;
    use std::process::Command;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    /// A connection cut mid-answer reads as std's "failed to fill whole
    /// buffer"; the error says what happened instead.
    #[test]
    fn an_answer_cut_short_is_said_so() {
        let cut = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, EARLY_END);
        let said = git_err("fetch failed", cut, Some(&SpyReport::default())).to_string();
        assert_eq!(said, format!("fetch failed: {EARLY_END_SAID}"));
        let local = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, EARLY_END);
        let said = git_err("could not read a fetched commit", local, None).to_string();
        assert!(said.ends_with(EARLY_END), "{said}");
    }

    /// A proxy's own answers (407; 502, 503, 504) are said as the proxy's;
    /// other statuses are not, nor a message without one.
    #[test]
    fn a_proxys_own_answers_are_said_as_the_proxys() {
        let said = |code: &str| {
            proxy_answer(&format!(
                "Transport handshake failed: An IO error occurred when talking to the server: \
                 {HTTP_STATUS}{code}: HTTP status error ({code}) for url \
                 (http://127.0.0.1:1/site.git/info/refs?service=git-upload-pack)"
            ))
        };
        let auth = said("407").expect("a 407 is the proxy's");
        assert!(
            auth.starts_with("the proxy answered 407 Proxy Authentication Required: "),
            "{auth}"
        );
        assert!(!auth.contains("127.0.0.1"), "{auth}");
        // Its advice is no URL that the log's redaction would garble.
        assert_eq!(crate::types::redact_url(&auth), auth);
        for code in ["502", "503", "504"] {
            let gateway = said(code).expect("a gateway error");
            assert!(
                gateway.contains(&format!("the proxy answered {code} "))
                    && gateway.contains("may have failed to reach the git server"),
                "{gateway}"
            );
        }
        for code in ["400", "401", "403", "404", "500", "501"] {
            assert_eq!(said(code), None, "{code}");
        }
        assert_eq!(proxy_answer("Connection refused (os error 111)"), None);
        // Through an https:// tunnel, a status is the git server's own.
        let message = format!("{HTTP_STATUS}503: HTTP status error (503)");
        let url = |u: &str| gix::url::parse(gix::bstr::BStr::new(u)).expect("url");
        assert!(proxys_own_answer(&url("http://git.example/r"), &message).is_some());
        assert_eq!(
            proxys_own_answer(&url("https://git.example/r"), &message),
            None
        );
    }

    /// Wrapper segments go when a cause follows them; the cause, the URL
    /// and a wrapper that is all there is to say stay.
    #[test]
    fn transport_wrappers_are_dropped_before_their_cause() {
        let url = "http://127.0.0.1:19713/git/site.git/info/refs?service=git-upload-pack";
        let said = format!(
            "Transport handshake failed: An IO error occurred when talking to the server: \
             error sending request for url ({url}): client error (Connect): tcp connect \
             error: Connection refused (os error 111)"
        );
        assert_eq!(
            without_wrappers(&said),
            format!(
                "error sending request for url ({url}): tcp connect error: Connection refused \
                 (os error 111)"
            )
        );
        let cut = "Transport handshake failed: An IO error occurred when talking to the server: \
                   error sending request: client error (SendRequest): connection closed before \
                   message completed";
        assert_eq!(
            without_wrappers(cut),
            "error sending request: connection closed before message completed"
        );
        // The last segment stays, and so does a wrapper's text inside another segment.
        assert_eq!(
            without_wrappers("Transport handshake failed"),
            "Transport handshake failed"
        );
        assert_eq!(
            without_wrappers("x: An IO error occurred when talking to the server: "),
            "x: An IO error occurred when talking to the server: "
        );
        assert_eq!(
            without_wrappers("it said Transport handshake failed: no"),
            "it said Transport handshake failed: no"
        );
        // Through git_err, as the listing error reads.
        let io = std::io::Error::other(said);
        let e = git_err("could not list remote refs", io, None).to_string();
        assert!(
            e.starts_with("could not list remote refs: error sending request for url")
                && e.ends_with("tcp connect error: Connection refused (os error 111)"),
            "{e}"
        );
    }

    /// The sync loop raises the interrupt flag at the deadline: an
    /// interruption seen after it is the timeout, not a shutdown; before
    /// it, a shutdown.
    #[test]
    fn an_interruption_at_the_deadline_is_reported_as_the_timeout() {
        let url = || "git://example.com/r".to_owned();
        let raised = Arc::new(AtomicBool::new(true));
        let expired = Budget::new(std::time::Duration::ZERO, raised.clone());
        let e = as_budget_ran_out(Error::Interrupted, &expired, Step::Fetching, url);
        assert!(
            e.to_string().starts_with(
                "sync timeout (0ns) exceeded while fetching the pack from git://example.com/r"
            ),
            "{e}"
        );
        let shutdown = Budget::new(std::time::Duration::from_secs(60), raised);
        let e = as_budget_ran_out(Error::Interrupted, &shutdown, Step::Fetching, url);
        assert!(matches!(e, Error::Interrupted), "{e}");
    }

    /// A fetch from `upstream` over a `git upload-pack` we start with
    /// `GIT_PROTOCOL` set to `protocol` (unset: v0), the way a server without
    /// `AcceptEnv GIT_PROTOCOL` runs it behind `GIT_SSH_COMMAND`.
    fn fetch_from_upload_pack(
        repo: &gix::Repository,
        upstream: &std::path::Path,
        protocol: Option<&str>,
        git_ref: &str,
        depth: u32,
    ) -> Result<Outcome, Error> {
        update_from_upload_pack(repo, upstream, protocol, git_ref, depth, None, None)
    }

    /// [`fetch_from_upload_pack`] as an update of a store that holds
    /// `have` (a poll that found the ref moved), the server's side of the
    /// conversation traced to `trace` (`GIT_TRACE_PACKET`).
    fn update_from_upload_pack(
        repo: &gix::Repository,
        upstream: &std::path::Path,
        protocol: Option<&str>,
        git_ref: &str,
        depth: u32,
        have: Option<ObjectId>,
        trace: Option<&std::path::Path>,
    ) -> Result<Outcome, Error> {
        let (connected, url) = upload_pack(upstream, protocol, trace);
        let budget = budget();
        let (ssh, http) = (Default::default(), Default::default());
        let opts = Options {
            url: &url,
            git_ref,
            depth,
            have: have.map(CommitId),
            force: have.is_none(),
            credentials: None,
            ssh: &ssh,
            http: &http,
            git_config: &Default::default(),
            filter: None,
            on_change: None,
        };
        let remote = repo
            .remote_at(url.gix().clone())
            .expect("remote")
            .with_fetch_tags(gix::remote::fetch::Tags::None)
            .with_refspecs(Some(git_ref), gix::remote::Direction::Fetch)
            .expect("refspec");
        fetch_over(
            repo,
            remote,
            connected,
            &opts,
            &budget,
            &mut Step::Connecting,
        )
        .map(|polled| polled.outcome)
    }

    fn budget() -> Budget {
        Budget::new(
            std::time::Duration::from_secs(60),
            Arc::new(AtomicBool::new(false)),
        )
    }

    /// `git upload-pack` for `upstream` (protocol v0 unless `protocol`
    /// says otherwise, its side traced to `trace`), connected, and the
    /// `file://` URL it stands for.
    fn upload_pack(
        upstream: &std::path::Path,
        protocol: Option<&str>,
        trace: Option<&std::path::Path>,
    ) -> (transport::Connected, crate::git::Remote) {
        let url =
            crate::git::Remote::parse(&format!("file://{}", upstream.display())).expect("url");
        let mut command = Command::new("git");
        command
            .arg("upload-pack")
            .arg(upstream)
            .env_remove("GIT_PROTOCOL")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null");
        if let Some(p) = protocol {
            command.env("GIT_PROTOCOL", p);
        }
        if let Some(trace) = trace {
            command.env("GIT_TRACE_PACKET", trace);
        }
        let stderr = transport::StderrBuffer::default();
        let process = transport::spawn_process(command, url.gix(), &budget(), stderr.clone())
            .expect("git must be installed for this test (apt-get install git)");
        (transport::spied(Box::new(process), stderr), url)
    }

    /// `up` below `tmp`: a repository with no commit yet, on branch `main`.
    fn empty_upstream(tmp: &std::path::Path) -> std::path::PathBuf {
        let upstream = tmp.join("up");
        std::fs::create_dir(&upstream).expect("mkdir");
        git(&upstream, &["init", "-q", "-b", "main"]);
        upstream
    }

    fn commits_below(repo: &gix::Repository, commit: ObjectId) -> usize {
        let walk = repo.rev_walk([commit]).all().expect("walk");
        walk.filter(|info| info.is_ok()).count()
    }

    /// gix alone fetches the whole history over v0 (issue 14); the
    /// transport's handshake fixes that for every depth, a depth change,
    /// and a commit below the tip fetched by SHA. (v1 is not tried: git
    /// answers v1 only to a client that asks for it, and gix's handshake
    /// cannot read upload-pack's v1 advertisement anyway.)
    #[test]
    fn depth_fetches_over_protocol_v0_are_as_deep_as_asked() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let upstream = empty_upstream(tmp.path());
        git(
            &upstream,
            &["config", "uploadpack.allowReachableSHA1InWant", "true"],
        );
        for n in 0..5 {
            std::fs::write(upstream.join("f"), n.to_string()).expect("write");
            git(&upstream, &["add", "f"]);
            git(&upstream, &["commit", "-q", "-m", &n.to_string()]);
        }
        let below = git(&upstream, &["rev-parse", "HEAD~2"]);
        for protocol in [None, Some("version=0")] {
            let store = tmp.path().join(format!("store-{protocol:?}"));
            let repo = gix::init_bare(&store).expect("init");
            for (depth, count) in [(1, 1), (2, 2), (0, 5), (1, 1)] {
                let outcome = fetch_from_upload_pack(&repo, &upstream, protocol, "main", depth)
                    .unwrap_or_else(|e| panic!("{protocol:?} --depth {depth}: {e}"));
                let Outcome::Fetched { commit, .. } = outcome else {
                    panic!("{protocol:?}: nothing fetched");
                };
                let repo = gix::open(&store).expect("reopen");
                assert_eq!(
                    commits_below(&repo, commit.0),
                    count,
                    "{protocol:?} --depth {depth}"
                );
            }
            let by_sha = fetch_from_upload_pack(&repo, &upstream, protocol, &below, 1)
                .unwrap_or_else(|e| panic!("{protocol:?} by SHA: {e}"));
            let repo = gix::open(&store).expect("reopen");
            let Outcome::Fetched { commit, .. } = by_sha else {
                panic!("{protocol:?}: nothing fetched by SHA");
            };
            assert_eq!(commit.to_string(), below);
            assert_eq!(commits_below(&repo, commit.0), 1, "{protocol:?} by SHA");
        }
    }

    /// A store deepened from `--depth 1` to the whole history sends no
    /// `have` (it has no refs), only its shallow boundary; upload-pack makes
    /// the older versions of a file deltas against the boundary's, a thin
    /// pack, which must be completed from the store.
    #[test]
    fn a_store_deepened_without_haves_completes_the_thin_pack_it_gets() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let upstream = empty_upstream(tmp.path());
        let page: String = (0..2000)
            .map(|i| format!("line {i} of the page\n"))
            .collect();
        for n in 0..5 {
            let edited = page.replace("line 1000 ", &format!("line {n} thousand "));
            std::fs::write(upstream.join("page.md"), edited).expect("write");
            git(&upstream, &["add", "page.md"]);
            git(&upstream, &["commit", "-q", "-m", &n.to_string()]);
        }
        let store = tmp.path().join("store");
        let repo = gix::init_bare(&store).expect("init");
        for (depth, count) in [(1, 1), (0, 5)] {
            let outcome = fetch_from_upload_pack(&repo, &upstream, None, "main", depth)
                .unwrap_or_else(|e| panic!("--depth {depth}: {e}"));
            let Outcome::Fetched { commit, .. } = outcome else {
                panic!("--depth {depth}: nothing fetched");
            };
            let repo = gix::open(&store).expect("reopen");
            assert_eq!(commits_below(&repo, commit.0), count, "--depth {depth}");
        }
        let tip = git(&upstream, &["rev-parse", "main"]);
        git(&store, &["update-ref", "refs/heads/main", &tip]);
        git(&store, &["fsck", "--full", "--no-dangling"]);
    }

    /// An update of a shallow store asks the server for one level of
    /// history more than `--depth` (`deepen 2`: git's pack-objects then
    /// meets our commit instead of walking its whole tree) and cuts the
    /// history back itself: the new commit ends up the shallow boundary,
    /// as `deepen 1` leaves it, for git as for gix. Also after the history
    /// was rewritten (the new commit's parent is not in the store) and for
    /// a merge (two parents one level down), over protocol v0 and v2.
    #[test]
    fn an_update_asks_one_level_more_and_is_cut_to_the_depth_asked() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let upstream = empty_upstream(tmp.path());
        let made = std::cell::Cell::new(0);
        let commit = |n: &str| {
            made.set(made.get() + 1);
            std::fs::write(upstream.join(n), format!("{n} {}", made.get())).expect("write");
            git(&upstream, &["add", n]);
            git(&upstream, &["commit", "-q", "-m", n]);
            ObjectId::from_hex(git(&upstream, &["rev-parse", "HEAD"]).as_bytes()).expect("hex")
        };
        for n in ["a", "b", "c"] {
            commit(n);
        }
        for protocol in [None, Some("version=2")] {
            let store = tmp.path().join(format!("store-{protocol:?}"));
            let trace = tmp.path().join(format!("trace-{protocol:?}"));
            let repo = gix::init_bare(&store).expect("init");
            let first =
                fetch_from_upload_pack(&repo, &upstream, protocol, "main", 1).expect("first fetch");
            let Outcome::Fetched { commit: have, .. } = first else {
                panic!("{protocol:?}: nothing fetched");
            };
            let mut have = have.0;
            // A commit on ours, one after a rewrite of history, a merge.
            let updates = ["d", "e", "merge"];
            for name in updates {
                let new = match name {
                    "e" => {
                        git(&upstream, &["reset", "-q", "--hard", "HEAD~2"]);
                        commit(name)
                    }
                    "merge" => {
                        git(&upstream, &["checkout", "-q", "-b", "side", "HEAD~1"]);
                        commit("side");
                        git(&upstream, &["checkout", "-q", "main"]);
                        git(
                            &upstream,
                            &["merge", "-q", "--no-ff", "-m", "merge", "side"],
                        );
                        git(&upstream, &["branch", "-q", "-D", "side"]);
                        ObjectId::from_hex(git(&upstream, &["rev-parse", "HEAD"]).as_bytes())
                            .expect("hex")
                    }
                    _ => commit(name),
                };
                let _ = std::fs::remove_file(&trace);
                let outcome = update_from_upload_pack(
                    &repo,
                    &upstream,
                    protocol,
                    "main",
                    1,
                    Some(have),
                    Some(&trace),
                )
                .unwrap_or_else(|e| panic!("{protocol:?} update to {name}: {e}"));
                assert!(
                    matches!(outcome, Outcome::Fetched { commit, .. } if commit.0 == new),
                    "{protocol:?} {name}: {outcome:?}"
                );
                let asked = std::fs::read_to_string(&trace).expect("packet trace");
                assert!(
                    asked.contains("deepen 2"),
                    "{protocol:?}: the server was not asked for one level more:\n{asked}"
                );
                let repo = gix::open(&store).expect("reopen");
                assert_eq!(commits_below(&repo, new), 1, "{protocol:?} {name}");
                let shallow = std::fs::read_to_string(store.join("shallow")).expect("shallow");
                let hex = new.to_string();
                assert!(
                    shallow.lines().any(|l| l == hex),
                    "{protocol:?}: {new} is not a shallow boundary:\n{shallow}"
                );
                let git_dir = store.to_string_lossy();
                let by_git = git(
                    tmp.path(),
                    &["--git-dir", &git_dir, "rev-list", "--count", &hex],
                );
                assert_eq!(by_git, "1", "{protocol:?}: git sees more history");
                // Every object of the new tree is there (git checks the walk).
                git(
                    tmp.path(),
                    &[
                        "--git-dir",
                        &git_dir,
                        "rev-list",
                        "--objects",
                        "--quiet",
                        &hex,
                    ],
                );
                have = new;
            }
        }
    }

    /// A rollback to the parent of the published commit (a push undone
    /// with a force-push) asks for `deepen 1`, as git does: one level more
    /// would bring that parent's own parent, whose changes nobody needs
    /// (a whole large file changed there comes for nothing).
    #[test]
    fn a_rollback_to_our_parent_asks_for_no_more_than_the_depth() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let upstream = empty_upstream(tmp.path());
        let commit = |n: &str, content: &str| {
            std::fs::write(upstream.join(n), content).expect("write");
            git(&upstream, &["add", n]);
            git(&upstream, &["commit", "-q", "-m", n]);
            ObjectId::from_hex(git(&upstream, &["rev-parse", "HEAD"]).as_bytes()).expect("hex")
        };
        commit("big", "old big content");
        let parent = commit("big", "the big content the parent changed");
        let store = tmp.path().join("store");
        let trace = tmp.path().join("trace");
        let repo = gix::init_bare(&store).expect("init");
        fetch_from_upload_pack(&repo, &upstream, None, "main", 1).expect("first fetch");
        let ours = commit("small", "a small change");
        update_from_upload_pack(&repo, &upstream, None, "main", 1, Some(parent), None)
            .expect("update");
        git(&upstream, &["reset", "-q", "--hard", "HEAD~1"]);
        let repo = gix::open(&store).expect("reopen");
        let outcome =
            update_from_upload_pack(&repo, &upstream, None, "main", 1, Some(ours), Some(&trace))
                .expect("rollback");
        assert!(
            matches!(outcome, Outcome::Fetched { commit, .. } if commit.0 == parent),
            "{outcome:?}"
        );
        let asked = std::fs::read_to_string(&trace).expect("packet trace");
        assert!(
            asked.contains("deepen 1") && !asked.contains("deepen 2"),
            "{asked}"
        );
        let repo = gix::open(&store).expect("reopen");
        assert_eq!(commits_below(&repo, parent), 1);
    }

    /// Commits `n` as the content of `f` in `upstream`; its id.
    fn commit_numbered(upstream: &std::path::Path, n: usize) -> ObjectId {
        std::fs::write(upstream.join("f"), n.to_string()).expect("write");
        git(upstream, &["add", "f"]);
        git(upstream, &["commit", "-q", "-m", &n.to_string()]);
        ObjectId::from_hex(git(upstream, &["rev-parse", "HEAD"]).as_bytes()).expect("hex")
    }

    /// An upstream of 30 commits and a `--depth 1` store that fetched the
    /// second, then each one after it as an update: (upstream, store, the
    /// commits it fetched in order). Each fetch added a shallow line.
    fn store_updated_28_times(
        tmp: &std::path::Path,
    ) -> (std::path::PathBuf, std::path::PathBuf, Vec<ObjectId>) {
        let upstream = empty_upstream(tmp);
        commit_numbered(&upstream, 0);
        let first = commit_numbered(&upstream, 1);
        let store = tmp.join("store");
        let repo = gix::init_bare(&store).expect("init");
        fetch_from_upload_pack(&repo, &upstream, None, "main", 1).expect("first fetch");
        let mut published = vec![first];
        for n in 2..30 {
            let new = commit_numbered(&upstream, n);
            let have = published.last().copied();
            let repo = gix::open(&store).expect("reopen");
            update_from_upload_pack(&repo, &upstream, None, "main", 1, have, None)
                .unwrap_or_else(|e| panic!("update {n}: {e}"));
            published.push(new);
        }
        (upstream, store, published)
    }

    /// git walks each of `commits` in `store` down to where its history
    /// stops, and finds every object there.
    fn assert_walkable(store: &std::path::Path, commits: &[ObjectId]) {
        let git_dir = store.to_string_lossy().into_owned();
        for id in commits {
            let id = id.to_string();
            let args = [
                "--git-dir",
                &git_dir,
                "rev-list",
                "--objects",
                "--quiet",
                &id,
            ];
            git(store, &args);
        }
    }

    /// Each update of a `--depth 1` store adds a shallow line, and every
    /// fetch sends all of them. Trimmed, the file keeps the published
    /// commit and the commit whose parent is missing; the store passes
    /// `git fsck`, later updates work, and a rollback to a commit whose
    /// line went makes that commit shallow again.
    #[test]
    fn trimmed_shallow_lines_leave_a_sound_store() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (upstream, store, published) = store_updated_28_times(tmp.path());
        let first = published[0];
        let lines = || {
            let text = std::fs::read_to_string(store.join("shallow")).expect("shallow");
            text.lines().map(str::to_string).collect::<Vec<_>>()
        };
        assert_eq!(lines().len(), published.len(), "{:?}", lines());
        let last = *published.last().expect("published");
        let repo = gix::open(&store).expect("reopen");
        let dropped = crate::git::compact::trim_shallow(&repo, &[last], 0)
            .expect("trim")
            .map(|t| t.dropped);
        let mut expected = vec![first.to_string(), last.to_string()];
        expected.sort();
        assert_eq!(lines(), expected, "{dropped:?} dropped");
        let git_dir = store.to_string_lossy().into_owned();
        git(
            tmp.path(),
            &["--git-dir", &git_dir, "fsck", "--no-progress"],
        );
        let count = |id: ObjectId| {
            git(
                tmp.path(),
                &[
                    "--git-dir",
                    &git_dir,
                    "rev-list",
                    "--count",
                    &id.to_string(),
                ],
            )
        };
        assert_eq!(count(last), "1");
        assert_walkable(&store, &published);
        // A rollback to a commit in the store whose line went.
        let back = published[10];
        git(&upstream, &["reset", "-q", "--hard", &back.to_string()]);
        let repo = gix::open(&store).expect("reopen");
        let outcome = update_from_upload_pack(&repo, &upstream, None, "main", 1, Some(last), None)
            .expect("rollback");
        assert!(
            matches!(outcome, Outcome::Fetched { commit, .. } if commit.0 == back),
            "{outcome:?}"
        );
        assert!(lines().contains(&back.to_string()), "{:?}", lines());
        assert_eq!(count(back), "1");
        let next = commit_numbered(&upstream, 99);
        let repo = gix::open(&store).expect("reopen");
        update_from_upload_pack(&repo, &upstream, None, "main", 1, Some(back), None)
            .expect("update after the rollback");
        assert_eq!(count(next), "1");
        git(
            tmp.path(),
            &["--git-dir", &git_dir, "fsck", "--no-progress"],
        );
    }

    /// A v0 server sends no commit by SHA that is not a tip; every
    /// branch, fetched whole, brings one that only a branch other than
    /// the default one reaches.
    #[test]
    fn every_branch_brings_a_commit_only_another_branch_reaches() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let upstream = empty_upstream(tmp.path());
        let commit = |n: &str| {
            std::fs::write(upstream.join("f"), n).expect("write");
            git(&upstream, &["add", "f"]);
            git(&upstream, &["commit", "-q", "-m", n]);
            ObjectId::from_hex(git(&upstream, &["rev-parse", "HEAD"]).as_bytes()).expect("hex")
        };
        commit("a");
        git(&upstream, &["checkout", "-q", "-b", "release"]);
        let wanted = commit("release fix");
        commit("next release fix");
        git(&upstream, &["checkout", "-q", "main"]);
        commit("b");
        for protocol in [None, Some("version=2")] {
            let store = tmp.path().join(format!("store-{protocol:?}"));
            let repo = gix::init_bare(&store).expect("init");
            fetch_from_upload_pack(&repo, &upstream, protocol, "main", 0).expect("main");
            assert!(!repo.has_object(wanted));
            let (connected, url) = upload_pack(&upstream, protocol, None);
            let (ssh, http) = (Default::default(), Default::default());
            let opts = Options {
                url: &url,
                git_ref: "HEAD",
                depth: 0,
                have: None,
                force: false,
                credentials: None,
                ssh: &ssh,
                http: &http,
                git_config: &Default::default(),
                filter: None,
                on_change: None,
            };
            let bytes = branches_over(&repo, connected, &opts, &budget(), &mut Step::Connecting)
                .unwrap_or_else(|e| panic!("{protocol:?}: {e}"));
            assert!(bytes > 0, "{protocol:?}");
            let repo = gix::open(&store).expect("reopen");
            assert!(repo.has_object(wanted), "{protocol:?}");
        }
    }

    /// A store an interrupted compaction left inconsistent (a commit whose
    /// parent is gone, its shallow line pruned before the packs were
    /// deleted): the trim keeps the line of its child, so that a walk from
    /// any commit still stops before the missing one.
    #[test]
    fn the_trim_keeps_the_lines_that_stop_walks_before_a_missing_commit() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (_, store, published) = store_updated_28_times(tmp.path());
        let first = published[0];
        // The line of `first` (whose parent the store lacks) is gone.
        let shallow = store.join("shallow");
        let text = std::fs::read_to_string(&shallow).expect("shallow");
        let first_hex = first.to_string();
        let without: String = text
            .lines()
            .filter(|l| *l != first_hex)
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(without.lines().count() + 1, text.lines().count());
        std::fs::write(&shallow, without).expect("write shallow");
        let last = *published.last().expect("published");
        let repo = gix::open(&store).expect("reopen");
        crate::git::compact::trim_shallow(&repo, &[last], 0).expect("trim");
        let text = std::fs::read_to_string(store.join("shallow")).expect("shallow");
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort_unstable();
        let mut expected = vec![published[1].to_string(), last.to_string()];
        expected.sort();
        assert_eq!(lines, expected);
        assert_walkable(&store, &published[1..]);
    }

    /// The server is asked for no progress, over v0 as over v2, as git
    /// asks when no terminal reads it: it sends none, and still the pack.
    #[test]
    fn the_server_is_asked_for_no_progress() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let upstream = empty_upstream(tmp.path());
        std::fs::write(upstream.join("a"), "a").expect("write");
        git(&upstream, &["add", "a"]);
        git(&upstream, &["commit", "-q", "-m", "a"]);
        for protocol in [None, Some("version=2")] {
            let store = tmp.path().join(format!("store-{protocol:?}"));
            let trace = tmp.path().join(format!("trace-{protocol:?}"));
            let repo = gix::init_bare(&store).expect("init");
            let outcome =
                update_from_upload_pack(&repo, &upstream, protocol, "main", 0, None, Some(&trace))
                    .expect("fetch");
            assert!(
                matches!(outcome, Outcome::Fetched { .. }),
                "{protocol:?}: {outcome:?}"
            );
            let said = std::fs::read_to_string(&trace).expect("packet trace");
            let asked = said
                .lines()
                .filter(|l| l.contains("upload-pack<"))
                .any(|l| l.ends_with(" no-progress") || l.contains(" no-progress "));
            assert!(asked, "{protocol:?}: not asked:\n{said}");
            assert!(
                !said.contains("Counting objects") && !said.contains("Enumerating objects"),
                "{protocol:?}: progress sent:\n{said}"
            );
        }
    }

    #[test]
    fn refspec_keeps_the_users_ref_and_has_no_destination() {
        assert_eq!(refspec_for("HEAD"), "HEAD");
        assert_eq!(refspec_for("main"), "main");
        assert!(!refspec_for("refs/tags/v1").contains(':'));
    }
}
