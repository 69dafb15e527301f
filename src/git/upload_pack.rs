//! One conversation with a server's `upload-pack`: handshake, the refs, the
//! negotiation and the pack, the pieces gix's `Remote::prepare_fetch` and
//! `receive` put together, except that the pack is written by
//! [`super::pack_in`] (one inflating pass fewer than gix's writer).
//!
//! No refs are updated here: git-sidecar names no local refs in its refspecs
//! and manages its refs itself.

use std::sync::atomic::AtomicBool;

use gix::protocol::fetch::{negotiate, Arguments, RefMap, Shallow, Tags};
use gix::protocol::transport::client::blocking_io::Transport;
use gix::protocol::{Handshake, SendFlushOnDrop};

use super::pack_in;
use super::transport::StderrBuffer;

/// A connection whose refs are known; [`Listed::receive`] goes on to the pack.
pub struct Listed<T: Transport> {
    /// Sends a flush when dropped, so that a v0/v1 server not asked for a
    /// pack ends quietly instead of logging that we hung up on it.
    transport: SendFlushOnDrop<T>,
    handshake: Handshake,
    ref_map: RefMap,
}

/// Shakes hands with the server and lists the refs `remote`'s refspecs
/// name (ls-refs over protocol v2, the advertisement over v0/v1).
pub fn list<T: Transport>(
    repo: &gix::Repository,
    remote: &gix::Remote<'_>,
    mut transport: T,
    options: Option<Box<dyn std::any::Any>>,
    authenticate: impl FnMut(
        gix::credentials::helper::Action,
    ) -> gix::Result<Option<gix::credentials::protocol::Outcome>>,
) -> gix::Result<Listed<T>> {
    let options = match options {
        Some(options) => Some(options),
        None => repo.transport_options(transport.to_url().as_ref(), None)?,
    };
    if let Some(options) = options {
        transport
            .configure(&*options)
            .map_err(gix::Error::from_error)?;
    }
    let mut transport = SendFlushOnDrop::new(transport, false);
    let mut handshake = gix::protocol::handshake(
        &mut transport.inner,
        gix::protocol::transport::Service::UploadPack,
        authenticate,
        Vec::new(),
        &mut gix::progress::Discard,
    )?;
    let context = gix::protocol::fetch::refmap::init::Context {
        fetch_refspecs: remote.refspecs(gix::remote::Direction::Fetch).to_vec(),
        extra_refspecs: Vec::new(),
    };
    let ref_map = handshake
        .prepare_lsrefs_or_extract_refmap(user_agent(), true, context)?
        .fetch_blocking(gix::progress::Discard, &mut transport.inner, false)?;
    Ok(Listed {
        transport,
        handshake,
        ref_map,
    })
}

/// How a receive failed: the conversation, or writing the pack.
#[derive(Debug)]
pub enum ReceiveError {
    Protocol(gix::Error),
    Pack(pack_in::Error),
}

impl<T: Transport> Listed<T> {
    pub fn ref_map(&self) -> &RefMap {
        &self.ref_map
    }

    /// Keeps only the mapping at `index` (all of them when `None`): the
    /// negotiation then wants that ref's commit alone.
    pub fn keep_mapping(&mut self, index: Option<usize>) {
        if let Some(index) = index.filter(|i| *i < self.ref_map.mappings.len()) {
            let kept = self.ref_map.mappings.swap_remove(index);
            self.ref_map.mappings = vec![kept];
        }
    }

    /// The protocol version the server answered with.
    pub fn protocol(&self) -> gix::protocol::transport::Protocol {
        self.handshake.server_protocol_version
    }

    /// Negotiates what the store lacks (shallow as `shallow` says, with the
    /// `negotiation` algorithm: `Noop` sends no `have` lines) and
    /// writes the pack into it; `None` when the server sent none.
    ///
    /// What the server says on the side band beside the pack, other than
    /// its progress (a hook's `remote:` lines, its fatal error), goes to
    /// `said`, for the error if the pack does not come.
    pub fn receive(
        mut self,
        repo: &gix::Repository,
        shallow: Shallow,
        negotiation: gix::negotiate::Algorithm,
        interrupt: &AtomicBool,
        said: StderrBuffer,
    ) -> Result<Option<pack_in::Written>, ReceiveError> {
        if self.ref_map.object_hash != repo.object_hash() {
            return Err(ReceiveError::Protocol(gix::Error::from_error(
                std::io::Error::other(format!(
                    "the remote uses {} object ids, this store {}",
                    self.ref_map.object_hash,
                    repo.object_hash()
                )),
            )));
        }
        let objects_dir = repo.objects.store_ref().path().to_path_buf();
        let may_be_thin = pack_in::holds_objects(&objects_dir);
        let graph_repo = graph_repo(repo);
        // The commit-graph, if the store has one, spares parsing commits.
        let commit_graph = graph_repo.commit_graph_if_enabled().ok().flatten();
        let mut graph = graph_repo.revision_graph(commit_graph.as_ref());
        let mut negotiate = Negotiate {
            objects: &graph_repo.objects,
            refs: &graph_repo.refs,
            graph: &mut graph,
            ref_map: &self.ref_map,
            shallow: &shallow,
            negotiator: negotiation.into_negotiator(),
            no_progress: takes_no_progress(&self.handshake),
            earlier_shallow_updates: Vec::new(),
        };
        let pack_dir = objects_dir.join("pack");
        let target = pack_in::Target {
            dir: &pack_dir,
            hash: repo.object_hash(),
            threads: Some(super::store::threads(repo)),
            objects: &repo.objects,
            interrupt,
        };
        let mut written = None;
        let mut pack_error = None;
        let shallow_file = repo.shallow_file().map_err(ReceiveError::Protocol)?;
        let fetched = gix::protocol::fetch(
            &mut negotiate,
            |pack, _progress, _interrupt| match pack_in::write(pack, may_be_thin, &target) {
                Ok(w) => {
                    written = w;
                    Ok(true)
                }
                Err(e) => {
                    let message = e.to_string();
                    pack_error = Some(e);
                    Err(gix::Error::from_error(std::io::Error::other(message)))
                }
            },
            RemoteSaid::new(said),
            interrupt,
            gix::protocol::fetch::Context {
                handshake: &mut self.handshake,
                transport: &mut self.transport.inner,
                user_agent: user_agent(),
                trace_packetlines: false,
            },
            gix::protocol::fetch::Options {
                shallow_file,
                shallow: &shallow,
                tags: Tags::None,
                reject_shallow_remote: false,
            },
        );
        if let Some(e) = pack_error {
            return Err(ReceiveError::Pack(e));
        }
        fetched.map_err(ReceiveError::Protocol)?;
        let earlier = std::mem::take(&mut negotiate.earlier_shallow_updates);
        // Also when the pack brought no object: gix writes the last answer's
        // lines then too, and the boundary is needed all the same.
        if !earlier.is_empty() {
            apply_shallow_updates(repo, &earlier)?;
        }
        if self.handshake.server_protocol_version == gix::protocol::transport::Protocol::V2 {
            // Courtesy only: the pack is in.
            let _ = self.transport.indicate_end_of_interaction();
        }
        Ok(written)
    }
}

/// The agent gix names itself with (`gitoxide.userAgent` is not read).
fn user_agent() -> (&'static str, Option<String>) {
    ("agent", Some(gix::protocol::agent(gix::env::agent())))
}

/// The store as the negotiation reads it: no object cache (the graph keeps
/// what it needs) and no refresh for each unknown commit the server names.
fn graph_repo(repo: &gix::Repository) -> gix::Repository {
    let mut graph_repo = repo.clone();
    graph_repo.objects.refresh = gix::odb::store::RefreshMode::Never;
    graph_repo.objects.unset_object_cache();
    graph_repo
}

/// Negotiation the way gix's own fetch does it (consecutive algorithm),
/// without alternates (git-sidecar's stores have none).
struct Negotiate<'a, 'g, 'c> {
    objects: &'a gix::OdbHandle,
    refs: &'a gix::refs::file::Store,
    graph: &'a mut gix::negotiate::Graph<'g, 'c>,
    ref_map: &'a RefMap,
    shallow: &'a Shallow,
    negotiator: Box<dyn gix::negotiate::Negotiator>,
    /// Ask the server for no progress messages (see [`takes_no_progress`]).
    no_progress: bool,
    /// The `shallow`/`unshallow` lines of the responses before the last.
    /// A stateful v0/v1 server sends them once, in its first answer; gix
    /// writes only the last answer's, so a negotiation of two rounds or
    /// more (16 `have`s and up) lost the new boundary, and the store held
    /// history down to whatever it had (probe-14 F1, F2).
    earlier_shallow_updates: Vec<gix::protocol::fetch::response::ShallowUpdate>,
}

/// Writes `updates` (what the server said before its last answer) into the
/// shallow file, after gix wrote the last answer's: a boundary added,
/// or one the server deepened past removed.
fn apply_shallow_updates(
    repo: &gix::Repository,
    updates: &[gix::protocol::fetch::response::ShallowUpdate],
) -> Result<(), ReceiveError> {
    use gix::protocol::fetch::response::ShallowUpdate;
    let path = repo.shallow_file().map_err(ReceiveError::Protocol)?;
    let failed = |e: String| {
        ReceiveError::Protocol(gix::Error::from_error(std::io::Error::other(format!(
            "{}: {e}",
            path.display()
        ))))
    };
    let mut ids = std::collections::HashSet::new();
    for line in super::shallow::read(&path).map_err(|e| failed(e.to_string()))? {
        ids.insert(line.map_err(|e| failed(format!("a line is not an object id: {e}")))?);
    }
    for update in updates {
        match update {
            ShallowUpdate::Shallow(id) => ids.insert(*id),
            ShallowUpdate::Unshallow(id) => ids.remove(id),
        };
    }
    super::shallow::write(&path, ids).map_err(|e| failed(e.to_string()))
}

/// Whether the server may be asked for `no-progress`, as git asks when its
/// stderr is not a terminal (git-sync's never is): nobody reads the
/// server's "Counting objects" lines, which cost it a write, and us a
/// wakeup, per percent. Errors still come, on their own band. A v2 server
/// takes it always; a v0/v1 one only if it advertises it.
fn takes_no_progress(handshake: &Handshake) -> bool {
    use gix::protocol::transport::Protocol;
    match handshake.server_protocol_version {
        Protocol::V2 => true,
        Protocol::V0 | Protocol::V1 => handshake.capabilities.contains("no-progress"),
    }
}

type NoAlternates = std::iter::Empty<(gix::refs::file::Store, gix::objs::find::Never)>;

impl gix::protocol::fetch::Negotiate for Negotiate<'_, '_, '_> {
    fn mark_complete_and_common_ref(&mut self) -> gix::Result<negotiate::Action> {
        negotiate::mark_complete_and_common_ref(
            self.objects,
            self.refs,
            || Ok::<NoAlternates, gix::Error>(std::iter::empty()),
            &mut *self.negotiator,
            &mut *self.graph,
            self.ref_map,
            self.shallow,
            |_| false,
        )
    }

    fn add_wants(&mut self, arguments: &mut Arguments, remote_ref_target_known: &[bool]) -> bool {
        // Before the first want: over v0/v1 it goes on that line.
        if self.no_progress {
            arguments.add_feature("no-progress");
        }
        negotiate::add_wants(
            self.objects,
            arguments,
            self.ref_map,
            remote_ref_target_known,
            self.shallow,
            |_| false,
        )
    }

    fn one_round(
        &mut self,
        state: &mut negotiate::one_round::State,
        arguments: &mut Arguments,
        previous_response: Option<&gix::protocol::fetch::Response>,
    ) -> gix::Result<(negotiate::Round, bool)> {
        if let Some(response) = previous_response {
            self.earlier_shallow_updates
                .extend_from_slice(response.shallow_updates());
        }
        negotiate::one_round(
            &mut *self.negotiator,
            &mut *self.graph,
            state,
            arguments,
            previous_response,
        )
    }
}

/// The progress gix reports the side band to, keeping what the server said
/// that is not progress. gix reports it to a child task named `remote`: it
/// names the task after each line it cannot read as progress (`remote:
/// <text>`), names it after the action and then counts for a progress
/// line, and fails it with the server's error (band 3). Lines go to a
/// [`StderrBuffer`] (8 KiB at most), which the error of a failed fetch
/// quotes. gix's own tasks (`negotiate`, `receiving pack`) are not kept.
struct RemoteSaid {
    said: StderrBuffer,
    /// Only the `remote` child keeps what it is told.
    keeps: bool,
    name: Option<String>,
    /// The last name set, held back until it is known not to be progress.
    pending: std::sync::Mutex<Option<String>>,
}

impl RemoteSaid {
    fn new(said: StderrBuffer) -> Self {
        Self {
            said,
            keeps: false,
            name: None,
            pending: std::sync::Mutex::new(None),
        }
    }

    /// Keeps each line of `text` (a side-band packet may hold several,
    /// and `\r`-separated progress updates) that is not progress; past
    /// 8 KiB, only the server's error (`always`), the line that says most.
    fn keep(&self, text: &str, always: bool) {
        if !self.keeps {
            return;
        }
        let text = text.strip_prefix("remote: ").unwrap_or(text);
        let Ok(mut said) = self.said.lock() else {
            return;
        };
        for line in text.split(['\n', '\r']).map(str::trim) {
            let full = said.len() >= 8192 && !always;
            if line.is_empty() || looks_like_progress(line) || full {
                continue;
            }
            if !said.is_empty() {
                said.push_str("; ");
            }
            said.push_str("remote: ");
            said.push_str(line);
        }
    }

    /// Keeps the line held back, if any.
    fn flush(&self) {
        let held = self.pending.lock().ok().and_then(|mut p| p.take());
        if let Some(line) = held {
            self.keep(&line, false);
        }
    }
}

impl Drop for RemoteSaid {
    fn drop(&mut self) {
        self.flush();
    }
}

impl gix::Count for RemoteSaid {
    fn set(&self, _step: gix::progress::Step) {}
    fn step(&self) -> gix::progress::Step {
        0
    }
    fn inc_by(&self, _step: gix::progress::Step) {}
    fn counter(&self) -> gix::progress::StepShared {
        std::sync::Arc::default()
    }
}

impl gix::Progress for RemoteSaid {
    fn init(&mut self, _max: Option<gix::progress::Step>, _unit: Option<gix::progress::Unit>) {
        // The name just set was read as progress: dropped if it is one of
        // git's (gix also reads `fatal: ... 2048 MiB` as progress).
        if let Ok(mut pending) = self.pending.lock() {
            if pending.as_deref().is_some_and(is_git_progress_title) {
                *pending = None;
            }
        }
    }
    fn set_name(&mut self, name: String) {
        self.flush();
        if let Ok(mut pending) = self.pending.lock() {
            *pending = Some(name.clone());
        }
        self.name = Some(name);
    }
    fn name(&self) -> Option<String> {
        self.name.clone()
    }
    fn id(&self) -> gix::progress::Id {
        gix::progress::UNKNOWN
    }
    fn message(&self, level: gix::progress::MessageLevel, message: String) {
        if level == gix::progress::MessageLevel::Failure {
            self.flush();
            self.keep(&message, true);
        }
    }
}

impl gix::NestedProgress for RemoteSaid {
    type SubProgress = Self;
    fn add_child(&mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        let mut child = Self::new(self.said.clone());
        child.keeps = name == "remote";
        child.name = Some(name);
        child
    }
    fn add_child_with_id(&mut self, name: impl Into<String>, _id: gix::progress::Id) -> Self {
        self.add_child(name)
    }
}

/// The titles of the progress git's `pack-objects` and `upload-pack` send
/// (`remote: Counting objects: 50% (1/2)`), as gix names the task after
/// them.
fn is_git_progress_title(name: &str) -> bool {
    const TITLES: [&str; 6] = [
        "Enumerating objects",
        "Counting objects",
        "Compressing objects",
        "Writing objects",
        "Finding sources",
        "Total",
    ];
    let title = name.strip_prefix("remote: ").unwrap_or(name).trim();
    TITLES.contains(&title)
}

/// A line of progress rather than words: a percentage, `(n/m)`, or a
/// count that is `done`.
fn looks_like_progress(line: &str) -> bool {
    let counted = line.contains('%') && line.contains('(') && line.contains('/');
    counted || line.ends_with(", done.") || line.ends_with(", done") || is_git_progress_title(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gix::{NestedProgress, Progress};

    /// A chatty hook fills the 8 KiB; the server's error still comes last.
    #[test]
    fn the_server_s_error_is_kept_past_the_limit() {
        let said = StderrBuffer::default();
        {
            let mut remote = RemoteSaid::new(said.clone()).add_child("remote");
            for i in 0..300 {
                remote.set_name(format!("remote: hook says line {i} of its long story"));
            }
            remote.fail("aborting".into());
        }
        let said = said.lock().expect("said");
        assert!(said.len() < 8192 + 100, "{}", said.len());
        assert!(
            said.ends_with("; remote: aborting"),
            "{}",
            &said[said.len() - 80..]
        );
    }

    /// What the side band of a refused fetch looks like to the sink, as
    /// gix hands it over: words kept in order, progress dropped, a line
    /// gix reads as progress kept when it is not git's.
    #[test]
    fn the_side_band_keeps_words_and_drops_progress() {
        let said = StderrBuffer::default();
        {
            let mut top = RemoteSaid::new(said.clone());
            top.set_name("negotiate (round 1)".into());
            let mut remote = top.add_child("remote");
            for (name, progress) in [
                ("remote: Enumerating objects", true),
                ("remote: Repository disabled: quota exceeded", false),
                ("remote: Counting objects", true),
                ("remote: fatal: pack exceeds maximum allowed size", true),
                (
                    "remote: hint: one\rCompressing objects: 50% (1/2)\nhint: two",
                    false,
                ),
            ] {
                remote.set_name(name.into());
                if progress {
                    remote.init(Some(2), None);
                }
            }
            remote.fail("aborting due to possible repository corruption".into());
            top.set_name("receiving pack".into());
        }
        assert_eq!(
            said.lock().expect("said").as_str(),
            "remote: Repository disabled: quota exceeded; remote: fatal: pack exceeds maximum \
             allowed size; remote: hint: one; remote: hint: two; remote: aborting due to possible \
             repository corruption"
        );
    }
}
