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

use super::credentials::{self, Credentials};
use super::http_settings::HttpSettings;
use super::transport::{self, Budget, SpyReport};

/// What to fetch and what we already have.
pub struct Options<'a> {
    pub url: &'a gix::Url,
    /// `HEAD`, a branch or tag name (short or full), or a full hex SHA.
    pub git_ref: &'a str,
    /// 0 = full history.
    pub depth: u32,
    /// The commit currently published, if any.
    pub have: Option<ObjectId>,
    /// Fetch even when the remote still points at `have` (e.g. depth changed).
    pub force: bool,
    /// Given to an http(s) server that asks (the only credentials gix sees).
    pub credentials: Option<&'a Credentials>,
    /// How to reach ssh remotes (keys, known_hosts, `GIT_SSH_COMMAND`).
    pub ssh: &'a super::ssh::Options,
    /// Proxy, TLS and extra headers (a bearer token) for http(s).
    pub http: &'a HttpSettings,
    /// `--filter`: partial clone (see [`super::partial`]).
    pub filter: Option<&'a super::partial::Filter>,
}

/// Result of a poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The remote ref still points at `have`; nothing was transferred but the ref advertisement.
    Unchanged(ObjectId),
    /// The objects of this commit are now in the repository.
    Fetched { commit: ObjectId, pack_bytes: u64 },
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Connect(#[from] transport::ConnectError),
    #[error("invalid repository URL: {0}")]
    Url(String),
    #[error("couldn't find remote ref {0:?}")]
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
        "the server answered with git protocol {0:?}, over which gix cannot fetch shallow (it would silently download the whole history); \
         use a server that speaks protocol v2, or set --depth=0 to fetch full history on purpose"
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
}

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
    let mut step = Step::Connecting;
    let result = fetch_inner(repo, opts, budget, &mut step);
    // A transport error after the budget ran out is really a timeout or a shutdown.
    result.map_err(|e| match e {
        Error::Git { .. } | Error::Connect(_) if budget.is_expired() => Error::Timeout {
            step,
            url: crate::types::redact_url(&opts.url.to_bstring().to_string()),
            timeout: budget.timeout(),
        },
        Error::Git { .. } | Error::Connect(_) if budget.is_interrupted() => Error::Interrupted,
        other => other,
    })
}

fn fetch_inner(
    repo: &gix::Repository,
    opts: &Options<'_>,
    budget: &Budget,
    step: &mut Step,
) -> Result<Outcome, Error> {
    let refspec = refspec_for(opts.git_ref);
    let remote = repo
        .remote_at(opts.url.clone())
        .map_err(|e| Error::Url(e.to_string()))?
        .with_fetch_tags(gix::remote::fetch::Tags::None)
        .with_refspecs(Some(refspec.as_str()), gix::remote::Direction::Fetch)
        .map_err(|e| git_err("invalid ref", e, None))?;
    let (connected, filter_report) = super::partial::request_filter(
        transport::connect(opts.url, budget, opts.ssh, opts.http)?,
        opts.filter,
    );
    // http(s) connects lazily, with the first request.
    *step = match opts.url.scheme {
        gix::url::Scheme::Http | gix::url::Scheme::Https => Step::ConnectingAndListing,
        _ => Step::ListingRefs,
    };
    let report = connected.report;
    let mut connection = remote.to_connection_with_transport(connected.transport);
    if let Some(options) = connected.options {
        connection.set_transport_options(options);
    }
    connection.set_credentials(credentials::callback(opts.credentials.cloned()));
    let prepare = connection
        .prepare_fetch(gix::progress::Discard, Default::default())
        .map_err(|e| classify_listing_error(e, opts, &report, budget))?;

    let remote_id = wanted_id(prepare.ref_map(), opts.git_ref)?;
    let have_locally = repo.has_object(remote_id);
    if !opts.force && opts.have == Some(remote_id) && have_locally {
        return Ok(Outcome::Unchanged(remote_id));
    }
    if opts.depth > 0 && report.protocol() != Some(Protocol::V2) {
        return Err(Error::ShallowUnsupported(
            report.protocol().unwrap_or(Protocol::V1),
        ));
    }

    *step = Step::Fetching;
    let outcome = prepare
        .with_shallow(shallow_for(repo, opts.depth))
        .receive(gix::progress::Discard, budget.interrupt_flag())
        .map_err(|e| git_err("fetch failed", e, Some(&report)))?;
    let pack_bytes = match &outcome.status {
        gix::remote::fetch::Status::Change {
            write_pack_bundle, ..
        } => {
            settle_pack(write_pack_bundle)?;
            super::partial::settle_pack(opts.filter, &filter_report, write_pack_bundle)?;
            write_pack_bundle
                .data_path
                .as_ref()
                .and_then(|p| std::fs::metadata(p).ok())
                .map_or(0, |m| m.len())
        }
        _ => 0,
    };
    let commit = peel_to_commit(repo, remote_id)?;
    verify_depth(repo, commit, opts.depth)?;
    Ok(Outcome::Fetched { commit, pack_bytes })
}

/// gix writes packs 0600 and may leave a `.keep` file (we update no refs
/// it would wait for): give the pack the mode the umask gives everything
/// else, so that another user in the group (`--group-write`) can read it,
/// and drop the keep file, which nothing else would ever remove.
pub(super) fn settle_pack(bundle: &gix::odb::pack::bundle::write::Outcome) -> Result<(), Error> {
    if let Some(keep) = &bundle.keep_path {
        match std::fs::remove_file(keep) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::Store(format!("{}: {e}", keep.display())))
            }
            _ => {}
        }
    }
    for path in [&bundle.data_path, &bundle.index_path]
        .into_iter()
        .flatten()
    {
        crate::fsutil::apply_umask(path)
            .map_err(|e| Error::Store(format!("{}: {e}", path.display())))?;
    }
    Ok(())
}

/// The refspec source for a user's `--ref` (no destination: we manage refs ourselves).
fn refspec_for(git_ref: &str) -> String {
    git_ref.to_string()
}

/// The object the remote's ref points at, peeled through annotated tags when
/// the server told us the peeled id (v2 ls-refs does).
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

fn shallow_for(repo: &gix::Repository, depth: u32) -> Shallow {
    match NonZeroU32::new(depth) {
        Some(depth) => Shallow::DepthAtRemote(depth),
        None if repo.is_shallow().unwrap_or(false) => Shallow::undo(),
        None => Shallow::NoChange,
    }
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

/// After a shallow fetch the history must not be deeper than asked for.
fn verify_depth(repo: &gix::Repository, commit: ObjectId, depth: u32) -> Result<(), Error> {
    if depth == 0 {
        return Ok(());
    }
    let limit = depth as usize + 1;
    let walk = repo
        .rev_walk([commit])
        .all()
        .map_err(|e| git_err("could not walk the fetched history", e, None))?;
    let count = walk.take(limit).filter(|info| info.is_ok()).count();
    if count > depth as usize {
        return Err(Error::NotShallow { depth, count });
    }
    Ok(())
}

fn classify_listing_error(
    e: gix::Error,
    opts: &Options<'_>,
    report: &SpyReport,
    budget: &Budget,
) -> Error {
    // gix's message would quote the URL; ours never held credentials anyway.
    let url = crate::types::redact_url(&opts.url.to_bstring().to_string());
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
            super::probe::explain(opts.url, opts.credentials, opts.http, budget)
        {
            return Error::NotGitServer { url, explanation };
        }
    }
    git_err("could not list remote refs", e, Some(report))
}

pub(super) fn git_err(
    context: &'static str,
    e: impl std::error::Error,
    report: Option<&SpyReport>,
) -> Error {
    let mut message = crate::types::redact_url(&crate::types::error_chain(&e));
    if let Some(stderr) = report.map(SpyReport::stderr).filter(|s| !s.is_empty()) {
        message.push_str(": ");
        message.push_str(&stderr);
    }
    Error::Git { context, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refspec_keeps_the_users_ref_and_has_no_destination() {
        assert_eq!(refspec_for("HEAD"), "HEAD");
        assert_eq!(refspec_for("main"), "main");
        assert!(!refspec_for("refs/tags/v1").contains(':'));
    }
}
