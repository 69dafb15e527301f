//! Shallow fetches (`--depth`) from servers that answer with git protocol
//! v0 (issue 14): sshd with its default configuration (no `AcceptEnv
//! GIT_PROTOCOL`), `git http-backend` behind a server that does not pass the
//! `Git-Protocol` header on, and `git daemon` forced to v0
//! ([`GitDaemon::start_v0`]). gix alone fetches the whole history from them;
//! every fetch here must be exactly as deep as asked: the first one, new
//! commits, depth changes (1, 2, 0 and back), fetch by SHA where the server
//! allows it, and a submodule.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use crate::support::sidecar::describe_output;
use crate::support::sshd::{self, keygen, KeyPair, Sshd};
use crate::support::*;

const RUN_TIMEOUT: Duration = Duration::from_secs(60);
/// Commits on the upstream's main branch.
const HISTORY: usize = 5;
/// Commits of a history long enough that a store holding all of it takes
/// two negotiation rounds (gix offers 16 `have`s in its first): a stateful
/// v0 server says where the new boundary is in its first answer only.
const LONG_HISTORY: usize = 40;

/// One of the v0 servers, serving the repositories next to an upstream.
enum Server {
    Ssh {
        sshd: Sshd,
        key: KeyPair,
        dir: tempfile::TempDir,
        /// `GIT_SSH_COMMAND` for the sidecar (else its built-in client).
        command: Option<String>,
    },
    Http(HttpGit),
    Daemon(GitDaemon),
}

impl Server {
    /// sshd with its default `AcceptEnv` (none).
    fn ssh() -> Self {
        let dir = tempdir("v0-ssh-keys");
        let key = keygen(dir.path(), "id_ed25519", "ed25519", "");
        let sshd = Sshd::start_without_accept_env(&[&key]);
        let known_hosts = dir.path().join("known_hosts");
        std::fs::write(&known_hosts, sshd.known_hosts_line(sshd.port()) + "\n")
            .expect("writing known_hosts");
        Server::Ssh {
            sshd,
            key,
            dir,
            command: None,
        }
    }

    /// [`Server::ssh`], reached through `GIT_SSH_COMMAND` (the ssh program).
    fn ssh_command() -> Self {
        assert!(
            sshd::which("ssh").is_some(),
            "ssh not found: this test runs the real ssh client (apt-get install openssh-client)"
        );
        match Self::ssh() {
            Server::Ssh { sshd, key, dir, .. } => Server::Ssh {
                sshd,
                key,
                dir,
                command: Some("ssh -o BatchMode=yes -o LogLevel=ERROR".to_string()),
            },
            _ => unreachable!("Server::ssh is ssh"),
        }
    }

    fn http(up: &Upstream) -> Self {
        let opts = HttpOpts {
            protocol_v0_only: true,
            ..Default::default()
        };
        Server::Http(HttpGit::start(up.base(), opts))
    }

    fn daemon(up: &Upstream) -> Self {
        Server::Daemon(GitDaemon::start_v0(up.base()))
    }

    fn url(&self, up: &Upstream) -> String {
        match self {
            Server::Ssh { sshd, .. } => sshd.url(up.path()),
            Server::Http(http) => http.url(up.name()),
            Server::Daemon(daemon) => daemon.url(up.name()),
        }
    }

    /// What the sidecar needs besides the URL (ssh keys and known_hosts).
    fn args(&self) -> Vec<String> {
        match self {
            Server::Ssh { key, dir, .. } => sshd::ssh_args(&[key], &dir.path().join("known_hosts")),
            _ => Vec::new(),
        }
    }

    /// The sidecar for `url` on this server, with `args` and `GIT_SSH_COMMAND`.
    fn sidecar(&self, s: &Scratch, url: &str) -> Sidecar {
        let sidecar = s.sidecar(url).args(self.args());
        match self {
            Server::Ssh {
                command: Some(command),
                ..
            } => sidecar.env("GIT_SSH_COMMAND", command),
            _ => sidecar,
        }
    }

    fn log(&self) -> String {
        match self {
            Server::Ssh { sshd, .. } => sshd.log(),
            Server::Http(http) => http.cgi_log(),
            Server::Daemon(daemon) => daemon.log(),
        }
    }

    /// `git ls-remote` (asking for v2) through this server, with the
    /// client's packet trace on stderr.
    fn ls_remote_trace(&self, up: &Upstream) -> Output {
        let mut cmd = git::git_cmd(Path::new("/"));
        cmd.env("GIT_TRACE_PACKET", "1").args([
            "-c",
            "protocol.version=2",
            "ls-remote",
            &self.url(up),
        ]);
        if let Server::Ssh { key, dir, .. } = self {
            let known_hosts = dir.path().join("known_hosts");
            cmd.env(
                "GIT_SSH_COMMAND",
                format!(
                    "ssh -i {} -o IdentitiesOnly=yes -o UserKnownHostsFile={}",
                    key.path.display(),
                    known_hosts.display()
                ),
            );
        }
        cmd.output().expect("running git ls-remote")
    }
}

fn history() -> Upstream {
    history_of(HISTORY)
}

fn history_of(commits: usize) -> Upstream {
    let up = Upstream::new();
    up.commit_rich_tree("base");
    up.commit_many(commits - 1, "history");
    up
}

fn one_time(s: &Scratch, server: &Server, url: &str, extra: &[&str]) -> Output {
    server
        .sidecar(s, url)
        .args(extra)
        .arg("--one-time")
        .run(RUN_TIMEOUT)
}

fn assert_ok(out: &Output, server: &Server, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}\nserver log:\n{}",
        describe_output(out),
        server.log()
    );
}

/// The published commit is `commit`, with exactly `depth` commits of history
/// (0: all `total`), and git agrees about the shallow boundary.
fn assert_depth(s: &Scratch, up: &Upstream, commit: &str, depth: usize, total: usize) {
    assert_eq!(assert_published_layout(&s.root, &s.link()), commit);
    assert_tree_matches_commit(&s.link(), up, commit);
    let expected = if depth == 0 { total } else { depth.min(total) };
    assert_eq!(
        rev_list_count(&s.link()),
        expected,
        "commits after a fetch with --depth {depth}"
    );
    let shallow = git(&["rev-parse", "--is-shallow-repository"], &s.link());
    assert_eq!(shallow, (expected < total).to_string(), "--depth {depth}");
}

/// First fetch, then depth changes across restarts into the same root:
/// 1 → 2 → 0 (full) → 1 → 2.
fn depth_changes(server: &Server, up: &Upstream) {
    let url = server.url(up);
    let s = Scratch::new();
    for depth in [1, 2, 0, 1, 2] {
        let out = one_time(&s, server, &url, &["--depth", &depth.to_string()]);
        assert_ok(&out, server, &format!("--depth {depth}"));
        assert_depth(&s, up, &up.head(), depth, HISTORY);
    }
}

/// `git fsck` of the root's store finds nothing wrong (no missing parent
/// below a boundary the shallow file does not name).
fn assert_fsck(s: &Scratch) {
    let out = git::git_output(&["fsck", "--no-dangling"], &s.root);
    assert!(
        out.status.success(),
        "git fsck: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A store with the whole of a long history (`--depth 0`) made shallow
/// across restarts: `--depth 2` with nothing new, then `--depth 1` and 3
/// after new commits.
fn full_store_turns_shallow(server: &Server, up: &Upstream) {
    let url = server.url(up);
    let s = Scratch::new();
    let out = one_time(&s, server, &url, &["--depth", "0"]);
    assert_ok(&out, server, "--depth 0");
    assert_depth(&s, up, &up.head(), 0, LONG_HISTORY);
    // No new commit: the pack brings no object, the boundary is all there is.
    let out = one_time(&s, server, &url, &["--depth", "2"]);
    assert_ok(&out, server, "--depth 0, then 2, nothing new");
    assert_depth(&s, up, &up.head(), 2, LONG_HISTORY);
    for (n, depth) in [(1, 1), (2, 3)] {
        let next = up.commit_file(&format!("next{n}.txt"), "next\n", "next");
        let out = one_time(&s, server, &url, &["--depth", &depth.to_string()]);
        assert_ok(&out, server, &format!("--depth 0, then {depth}"));
        assert_depth(&s, up, &next, depth, LONG_HISTORY + n);
        assert_fsck(&s);
    }
}

/// `--one-time` runs (a cron job, default depth 1) with two new commits
/// before each: every published commit stays in the store, so from the
/// ninth run on the negotiation offers 16 `have`s and takes two rounds.
fn two_commits_per_run(server: &Server, up: &Upstream) {
    let url = server.url(up);
    let s = Scratch::new();
    for run in 1..=10 {
        up.commit_file("a.txt", format!("{run}a\n"), "a");
        let tip = up.commit_file("b.txt", format!("{run}b\n"), "b");
        let out = one_time(&s, server, &url, &[]);
        assert_ok(&out, server, &format!("run {run}"));
        assert_depth(&s, up, &tip, 1, HISTORY + 2 * run);
    }
    assert_fsck(&s);
}

/// A running sidecar (default depth 1) follows new commits, each fetch
/// staying one commit deep.
fn follows_new_commits(server: &Server, up: &Upstream) {
    let s = Scratch::new();
    let run = server
        .sidecar(&s, &server.url(up))
        .args(["--period", "100ms"])
        .spawn();
    run.wait_for_link_hash(&s.link(), &up.head());
    assert_depth(&s, up, &up.head(), 1, HISTORY);
    for n in 1..=2 {
        let next = up.commit_file(&format!("next{n}.txt"), "next\n", "next");
        run.wait_for_link_hash(&s.link(), &next);
        assert_depth(&s, up, &next, 1, HISTORY + n);
    }
    run.assert_running();
}

/// Lets `up`'s upload-pack serve unadvertised commits only with
/// `uploadpack.<allow>` (`Upstream` turns both settings on). For sshd this
/// repository config decides; the http and daemon fixtures also pass
/// `uploadpack.allowAnySHA1InWant=true` in their environment, which wins.
fn allow_sha_wants(up: &Upstream, allow: Option<&str>) {
    for setting in ["allowAnySHA1InWant", "allowReachableSHA1InWant"] {
        let value = (allow == Some(setting)).to_string();
        up.git(&["config", &format!("uploadpack.{setting}"), &value]);
    }
}

/// `--ref <sha>` of a commit below the tip (not advertised), which a v0
/// server only serves with `uploadpack.<allow>`.
fn fetch_by_sha(server: &Server, up: &Upstream, allow: &str) {
    allow_sha_wants(up, Some(allow));
    let below = up.rev_parse("HEAD~2");
    let s = Scratch::new();
    for depth in [1, 2] {
        let out = one_time(
            &s,
            server,
            &server.url(up),
            &["--ref", &below, "--depth", &depth.to_string()],
        );
        assert_ok(&out, server, &format!("--ref <sha> --depth {depth}"));
        assert_depth(&s, up, &below, depth, HISTORY - 2);
    }
}

#[test]
fn the_servers_answer_protocol_v0_and_advertise_deepen_relative() {
    let up = history();
    for server in [Server::ssh(), Server::http(&up), Server::daemon(&up)] {
        let out = server.ls_remote_trace(&up);
        assert_ok(&out, &server, "git ls-remote");
        let trace = String::from_utf8_lossy(&out.stderr);
        assert!(!trace.contains("< version 2"), "spoke v2:\n{trace}");
        assert!(!trace.contains("< version 1"), "spoke v1:\n{trace}");
        // The capability that makes gix's `deepen 1` relative (issue 14).
        assert!(trace.contains("deepen-relative"), "{trace}");
        assert!(String::from_utf8_lossy(&out.stdout).contains(&up.head()));
        if let Server::Ssh { sshd, .. } = &server {
            assert_eq!(
                sshd.upload_pack_protocols(),
                [""],
                "GIT_PROTOCOL got through"
            );
        }
    }
}

#[test]
fn depth_changes_over_ssh_with_the_default_sshd_config() {
    let up = history();
    let server = Server::ssh();
    depth_changes(&server, &up);
    assert_no_protocol_request_got_through(&server);
}

/// `GIT_SSH_COMMAND` (the ssh program, which sends `SendEnv=GIT_PROTOCOL`
/// in vain) to the same default-config sshd.
#[test]
fn depth_changes_through_git_ssh_command_with_the_default_sshd_config() {
    let up = history();
    let server = Server::ssh_command();
    depth_changes(&server, &up);
    assert_no_protocol_request_got_through(&server);
}

/// Every upload-pack the sshd started saw no `GIT_PROTOCOL`: v0 was spoken.
fn assert_no_protocol_request_got_through(server: &Server) {
    if let Server::Ssh { sshd, .. } = server {
        let protocols = sshd.upload_pack_protocols();
        assert!(!protocols.is_empty(), "no upload-pack ran");
        assert!(protocols.iter().all(String::is_empty), "{protocols:?}");
    }
}

#[test]
fn depth_changes_over_http_without_the_git_protocol_header() {
    let up = history();
    depth_changes(&Server::http(&up), &up);
}

#[test]
fn depth_changes_over_git_daemon_v0() {
    let up = history();
    depth_changes(&Server::daemon(&up), &up);
}

#[test]
fn a_full_store_turns_shallow_over_ssh_v0() {
    let up = history_of(LONG_HISTORY);
    full_store_turns_shallow(&Server::ssh(), &up);
}

#[test]
fn a_full_store_turns_shallow_over_git_daemon_v0() {
    let up = history_of(LONG_HISTORY);
    full_store_turns_shallow(&Server::daemon(&up), &up);
}

#[test]
fn two_commits_per_run_over_ssh_v0_stay_one_deep() {
    let up = history();
    two_commits_per_run(&Server::ssh(), &up);
}

#[test]
fn two_commits_per_run_over_git_daemon_v0_stay_one_deep() {
    let up = history();
    two_commits_per_run(&Server::daemon(&up), &up);
}

#[test]
fn new_commits_over_ssh_v0_stay_one_deep() {
    let up = history();
    follows_new_commits(&Server::ssh(), &up);
}

#[test]
fn new_commits_over_http_v0_stay_one_deep() {
    let up = history();
    follows_new_commits(&Server::http(&up), &up);
}

#[test]
fn new_commits_over_git_daemon_v0_stay_one_deep() {
    let up = history();
    follows_new_commits(&Server::daemon(&up), &up);
}

#[test]
fn fetch_by_sha_over_ssh_v0_with_allow_reachable_sha1_in_want() {
    let up = history();
    fetch_by_sha(&Server::ssh(), &up, "allowReachableSHA1InWant");
}

#[test]
fn fetch_by_sha_over_http_v0_with_allow_any_sha1_in_want() {
    let up = history();
    fetch_by_sha(&Server::http(&up), &up, "allowAnySHA1InWant");
}

#[test]
fn fetch_by_sha_over_git_daemon_v0_with_allow_reachable_sha1_in_want() {
    let up = history();
    fetch_by_sha(&Server::daemon(&up), &up, "allowReachableSHA1InWant");
}

/// Without `allowReachableSHA1InWant` a v0 server refuses an unadvertised
/// commit: the sync fails saying so and nothing is published.
#[test]
fn fetch_by_sha_over_v0_without_permission_fails_clearly() {
    let up = history();
    allow_sha_wants(&up, None);
    let server = Server::ssh();
    let below = up.rev_parse("HEAD~2");
    let s = Scratch::new();
    let out = one_time(&s, &server, &server.url(&up), &["--ref", &below]);
    assert!(!out.status.success(), "{}", describe_output(&out));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("not our ref"), "{}", describe_output(&out));
    assert!(s.published().is_none());
}

/// A superproject and its submodule, both over the default-config sshd; the
/// gitlink is below the submodule's tip, so it is fetched by SHA.
#[test]
fn submodule_over_ssh_v0_is_as_deep_as_asked() {
    let site = Upstream::named("site");
    let sub = site.sibling("sub.git");
    let commits = sub.commit_many(4, "sub");
    allow_sha_wants(&sub, Some("allowReachableSHA1InWant"));
    let pinned = &commits[2];
    let server = Server::ssh();
    let modules = gitmodules(&[("theme", "theme", &server.url(&sub))]);
    let top = site.commit_gitlinks(&modules, &[("theme", pinned)], "add theme");
    for (depth, count) in [(1, 1), (2, 2), (0, 3)] {
        let s = Scratch::new();
        let out = one_time(
            &s,
            &server,
            &server.url(&site),
            &["--depth", &depth.to_string()],
        );
        assert_ok(&out, &server, &format!("--depth {depth}"));
        assert_eq!(s.published().as_deref(), Some(top.as_str()));
        assert_tree_matches_commit(&s.link().join("theme"), &sub, pinned);
        let store: PathBuf = s.root.join(".git/modules/theme");
        let commits = git(&["rev-list", "--count", pinned], &store);
        assert_eq!(
            commits,
            count.to_string(),
            "submodule store, --depth {depth}"
        );
        assert_eq!(
            store.join("shallow").is_file(),
            depth != 0,
            "--depth {depth}"
        );
    }
}
