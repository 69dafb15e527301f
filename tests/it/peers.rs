//! Peer fan-out (`--peers`, issue 18) against the built binary: several
//! replicas on one machine, each on its own loopback address
//! (127.X.Y.N, same port, as pods behind a headless Service), each with its
//! own root, all syncing one `file://` repository with a long `--period`
//! (so only a hint can explain a quick publish). `--peers` names a DNS name
//! that a real dnsmasq answers with one A record per replica
//! (`support::dns`); the replicas resolve it with the system resolver,
//! pointed at dnsmasq in a private mount namespace.
//!
//! Outcomes are asserted by polling the published link (and /status,
//! /metrics) under generous deadlines; the latency is printed, not asserted.

use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::http::{
    github_push_body, metric, metrics_text, send_github, status_json, sync_passes, SECRET,
};
use crate::support::client::{self, http_address_in, Response};
use crate::support::dns::{Dnsmasq, FakeDns, FakeMode, Subnet};
use crate::support::*;

const PEER_SECRET: &str = "it-peer-secret-0123456789";
/// Attempts per peer and delivery, and lookups per delivery
/// (`src/peers/fanout.rs`).
const ATTEMPTS: u64 = 3;
const NAME: &str = "site-peers.test";

/// The replicas' world: the repository, the DNS server, the port they all
/// listen on, and the secret files.
struct Cluster {
    up: Upstream,
    subnet: Subnet,
    dns: Dnsmasq,
    port: u16,
    files: tempfile::TempDir,
    /// The host part of `--peers`.
    peers: String,
    /// When set, what the replicas ask instead of dnsmasq.
    fake_dns: Option<FakeDns>,
}

struct Replica {
    run: Running,
    scratch: Scratch,
    ip: Ipv4Addr,
    /// `ip:port`.
    addr: String,
}

impl Replica {
    fn published(&self) -> Option<String> {
        self.scratch.published()
    }

    fn metric(&self, sample: &str) -> f64 {
        metric(&metrics_text(&self.addr), sample).unwrap_or(0.0)
    }

    fn received(&self, result: &str) -> f64 {
        self.metric(&format!(
            "git_sidecar_peer_hints_received_total{{result=\"{result}\"}}"
        ))
    }

    fn sent(&self, result: &str) -> f64 {
        self.metric(&format!(
            "git_sidecar_peer_hints_sent_total{{result=\"{result}\"}}"
        ))
    }

    fn received_any(&self) -> f64 {
        let text = metrics_text(&self.addr);
        text.lines()
            .filter(|l| l.starts_with("git_sidecar_peer_hints_received_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    fn last_fan_out(&self) -> serde_json::Value {
        status_json(&self.addr)["peers"]["last_fan_out"].clone()
    }

    /// The last fan-out, once no send of it is under way.
    fn finished_fan_out(&self) -> serde_json::Value {
        let finished = |last: &serde_json::Value| {
            last["peers"]
                .as_array()
                .is_some_and(|p| p.iter().all(|p| p["result"] != "sending"))
        };
        self.run.wait_until(DEADLINE, "the fan-out to finish", || {
            finished(&self.last_fan_out())
        });
        self.last_fan_out()
    }

    /// A signed GitHub push of refs/heads/main to `after`.
    fn webhook(&self, up: &Upstream, after: &str) -> Response {
        let body = github_push_body("refs/heads/main", after, &up.file_url());
        send_github(&self.addr, "push", &body, Some(SECRET))
    }
}

impl Cluster {
    /// A repository with one commit, and dnsmasq answering [`NAME`] with
    /// the replicas `hosts` (127.X.Y.host).
    fn new(hosts: &[u8]) -> Self {
        Self::answering(hosts, NAME, NAME)
    }

    /// dnsmasq answers `name` with the replicas `hosts`; `--peers` says
    /// `peers`.
    fn answering(hosts: &[u8], name: &str, peers: &str) -> Self {
        let subnet = Subnet::new();
        let ips: Vec<Ipv4Addr> = hosts.iter().map(|h| subnet.ip(*h)).collect();
        let dns = Dnsmasq::start(subnet, name, &ips);
        // A port free on the subnet's first replica address; the others
        // are other addresses, so the same port is free there too.
        let port = TcpListener::bind((subnet.ip(hosts[0]), 0))
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let up = Upstream::new();
        up.commit_file("index.html", "v0\n", "v0");
        let files = tempdir("peer-secrets");
        Cluster {
            up,
            subnet,
            dns,
            port,
            files,
            peers: peers.to_string(),
            fake_dns: None,
        }
    }

    /// [`Cluster::new`], but the replicas ask a [`FakeDns`] (on
    /// 127.X.Y.254) in `mode`, whose resolv.conf has `options`.
    fn with_fake_dns(hosts: &[u8], mode: FakeMode, options: &str) -> Self {
        Self::with_fake_dns_as(hosts, mode, options, NAME)
    }

    /// [`Cluster::with_fake_dns`], `--peers` saying `peers`.
    fn with_fake_dns_as(hosts: &[u8], mode: FakeMode, options: &str, peers: &str) -> Self {
        let mut cluster = Self::answering(hosts, NAME, peers);
        let ips: Vec<Ipv4Addr> = hosts.iter().map(|h| cluster.subnet.ip(*h)).collect();
        let listen = cluster.subnet.ip(254);
        cluster.fake_dns = Some(FakeDns::start(listen, NAME, &ips, mode, options));
        cluster
    }

    fn fake_dns(&self) -> &FakeDns {
        self.fake_dns.as_ref().expect("a cluster with a fake DNS")
    }

    fn resolv_conf(&self) -> PathBuf {
        match &self.fake_dns {
            Some(fake) => fake.resolv_conf(),
            None => self.dns.resolv_conf(),
        }
    }

    fn secret_file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.files.path().join(name);
        fs::write(&path, format!("{content}\n")).expect("writing a secret file");
        path
    }

    /// Starts a replica on 127.X.Y.`host` with the peer secret `secret`,
    /// waits until it serves HTTP and has published the upstream head.
    fn replica(&self, host: u8, secret: &str) -> Replica {
        self.replica_with(host, secret, &[])
    }

    /// [`Cluster::replica`] with more flags.
    fn replica_with(&self, host: u8, secret: &str, flags: &[&str]) -> Replica {
        let ip = self.subnet.ip(host);
        let addr = format!("{ip}:{}", self.port);
        let scratch = Scratch::new();
        let run = scratch
            .sidecar(&self.up.file_url())
            .args(["--period", "1h", "--http-metrics"])
            .args(["--http-bind", &addr])
            .arg("--incoming-webhook-secret-file")
            .arg(self.secret_file("webhook", SECRET))
            .args(["--peers", &format!("{}:{}", self.peers, self.port)])
            .arg("--peer-secret-file")
            .arg(self.secret_file(&format!("peer-{host}"), secret))
            .args(flags)
            .resolv_conf(self.resolv_conf())
            .spawn();
        run.wait_until(DEADLINE, "serving HTTP", || {
            http_address_in(&run.stderr()).is_some()
        });
        run.wait_for_link_hash(&scratch.link(), &self.up.head());
        Replica {
            run,
            scratch,
            ip,
            addr,
        }
    }

    fn replicas(&self, hosts: &[u8]) -> Vec<Replica> {
        hosts
            .iter()
            .map(|h| self.replica(*h, PEER_SECRET))
            .collect()
    }
}

/// Waits until every replica publishes `sha`; returns how long it took.
fn wait_all_published(replicas: &[&Replica], sha: &str, context: &str) -> Duration {
    let start = Instant::now();
    let all = poll_until(DEADLINE, || {
        replicas
            .iter()
            .all(|r| r.published().as_deref() == Some(sha))
    });
    if !all {
        let logs: Vec<String> = replicas.iter().map(|r| r.run.logs()).collect();
        panic!(
            "{context}: not every replica published {sha}: {:?}\n{}",
            replicas.iter().map(|r| r.published()).collect::<Vec<_>>(),
            logs.join("\n")
        );
    }
    start.elapsed()
}

/// A webhook reaches one replica; all three publish, rounds after round,
/// well before their hour-long period. The DNS answer names every replica,
/// the sender included: it skips itself (N−1 hints, none to itself).
/// Prints the latency webhook → published in all 3 (median of the rounds).
#[test]
fn a_webhook_to_one_replica_publishes_in_all() {
    let cluster = Cluster::new(&[2, 3, 4]);
    let replicas = cluster.replicas(&[2, 3, 4]);
    let all: Vec<&Replica> = replicas.iter().collect();
    let mut latencies = Vec::new();
    for round in 0..5 {
        let sha = cluster
            .up
            .commit_file("index.html", format!("v{}\n", round + 1), "next");
        let target = &replicas[round % 3];
        let sent = Instant::now();
        let r = target.webhook(&cluster.up, &sha);
        assert_eq!(r.status, 202, "signed push: {r}");
        wait_all_published(&all, &sha, &format!("round {round}"));
        latencies.push(sent.elapsed());
    }
    latencies.sort();
    println!(
        "webhook -> published in all 3 replicas: median {:?} (rounds, sorted: {latencies:?})",
        latencies[latencies.len() / 2]
    );

    // The last sender (round 4: replica 1) sent to the two others only.
    let sender = &replicas[1];
    let last = sender.finished_fan_out();
    let skipped = last["skipped_self"]
        .as_array()
        .expect("skipped_self")
        .clone();
    assert_eq!(skipped, [serde_json::json!(sender.addr)], "{last}");
    let peers: Vec<&str> = last["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .map(|p| p["address"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        peers,
        [replicas[0].addr.as_str(), replicas[2].addr.as_str()],
        "{last}"
    );
    assert!(
        last["peers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["result"] == "ok"),
        "{last}"
    );
    // Five webhooks, each to one replica: 2 hints each, 10 in all; every
    // replica received one hint per round it was not the target of, and
    // none sent a hint because of a hint.
    let sent: f64 = replicas.iter().map(|r| r.sent("ok")).sum();
    let received: f64 = replicas.iter().map(|r| r.received("ok")).sum();
    assert_eq!(sent, 10.0);
    assert_eq!(received, 10.0);
    for r in &replicas {
        assert_eq!(r.metric("git_sidecar_peers"), 2.0, "{}", r.addr);
        r.run.assert_running();
    }
}

/// A quick rollback (A, then B, then a force-push back to A, all within
/// the hint's 2-minute window) reaches every replica: a hint for a commit
/// hinted before is acted on when the replica no longer publishes it.
/// Before, the peers dropped it as `duplicate_commit` and kept B.
#[test]
fn a_quick_rollback_reaches_every_replica() {
    let cluster = Cluster::new(&[2, 3, 4]);
    let replicas = cluster.replicas(&[2, 3, 4]);
    let all: Vec<&Replica> = replicas.iter().collect();
    let origin = &replicas[0];
    let a = cluster.up.commit_file("index.html", "A\n", "A");
    assert_eq!(origin.webhook(&cluster.up, &a).status, 202);
    wait_all_published(&all, &a, "A");
    let b = cluster.up.commit_file("index.html", "B\n", "B");
    assert_eq!(origin.webhook(&cluster.up, &b).status, 202);
    wait_all_published(&all, &b, "B");

    cluster.up.force_reset(&a);
    let r = origin.webhook(&cluster.up, &a);
    assert_eq!(r.status, 202, "{r}");
    wait_all_published(&all, &a, "the rollback to A");
    for peer in &replicas[1..] {
        assert_eq!(peer.received("ok"), 3.0, "{}", peer.addr);
        assert_eq!(peer.received("duplicate_commit"), 0.0, "{}", peer.addr);
    }
    // A hint for what a replica publishes now (its pass over: /status
    // says so) is still a duplicate.
    for peer in &replicas[1..] {
        peer.run
            .wait_until(DEADLINE, "the pass that published A to end", || {
                status_json(&peer.addr)["published_hash"] == a.as_str()
            });
    }
    let again = origin.webhook(&cluster.up, &a);
    assert_eq!(again.status, 202, "{again}");
    for peer in &replicas[1..] {
        peer.run.wait_until(DEADLINE, "the redelivery's hint", || {
            peer.received("duplicate_commit") == 1.0
        });
        assert_eq!(peer.received("ok"), 3.0, "{}", peer.addr);
    }
}

/// A captured delivery replayed (GitHub's signature covers the body only,
/// with no time in it) is answered `duplicate_delivery`: the origin syncs
/// (a poll: an honest push can repeat a body), but awaits nothing and tells
/// no peer. Before, each replay of a delivery naming an older commit set it
/// as awaited again (the origin fetched up to five times for it) and sent
/// every peer a hint it acted on (a fetch each), for as long as it was
/// replayed.
#[test]
fn a_replayed_delivery_is_neither_awaited_nor_announced() {
    let cluster = Cluster::new(&[2, 3]);
    let replicas = cluster.replicas(&[2, 3]);
    let all: Vec<&Replica> = replicas.iter().collect();
    let (origin, peer) = (&replicas[0], &replicas[1]);
    let v1 = cluster.up.commit_file("index.html", "v1\n", "v1");
    let captured = github_push_body("refs/heads/main", &v1, &cluster.up.file_url());
    let r = send_github(&origin.addr, "push", &captured, Some(SECRET));
    assert_eq!(r.status, 202, "{r}");
    wait_all_published(&all, &v1, "v1");
    let v2 = cluster.up.commit_file("index.html", "v2\n", "v2");
    assert_eq!(origin.webhook(&cluster.up, &v2).status, 202);
    wait_all_published(&all, &v2, "v2");
    for replica in &replicas {
        replica
            .run
            .wait_until(DEADLINE, "the pass that published v2 to end", || {
                status_json(&replica.addr)["published_hash"] == v2.as_str()
            });
    }
    let (passes, heard) = (sync_passes(&origin.addr), peer.received_any());
    assert_eq!(heard, 2.0, "{}", peer.addr);

    for _ in 0..3 {
        let replay = send_github(&origin.addr, "push", &captured, Some(SECRET));
        assert_eq!(replay.status, 202, "{replay}");
        assert_eq!(replay.json()["result"], "duplicate_delivery", "{replay}");
    }
    origin
        .run
        .wait_until(DEADLINE, "the replays' own sync", || {
            sync_passes(&origin.addr) > passes
        });
    let anything =
        || peer.received_any() != heard || !status_json(&origin.addr)["expected_hash"].is_null();
    assert!(
        !poll_until(Duration::from_secs(3), anything),
        "a replay was awaited or announced: hints heard {heard} → {}, /status {}\n{}",
        peer.received_any(),
        status_json(&origin.addr),
        origin.run.logs()
    );
    // Its syncs were polls: at most one per replay, and no retries for v1.
    let syncs = sync_passes(&origin.addr) - passes;
    assert!(
        syncs <= 3,
        "{syncs} syncs for 3 replays\n{}",
        origin.run.logs()
    );
    assert_eq!(
        origin.metric(
            "git_sidecar_webhook_requests_total{provider=\"github\",result=\"duplicate_delivery\"}"
        ),
        3.0
    );
    assert_eq!(origin.published().as_deref(), Some(v2.as_str()));
    assert_eq!(peer.published().as_deref(), Some(v2.as_str()));
}

/// Replicas whose `--ref` is spelled differently (`main`,
/// `refs/heads/main`) take each other's hints; one following `HEAD` cannot
/// tell whether `main` is its branch, ignores the hint, and the sender
/// counts that answer as `ignored`, not `ok`.
#[test]
fn replicas_spelling_the_ref_differently_take_each_others_hints() {
    let cluster = Cluster::new(&[2, 3, 4]);
    let short = cluster.replica_with(2, PEER_SECRET, &["--ref", "main"]);
    let full = cluster.replica_with(3, PEER_SECRET, &["--ref", "refs/heads/main"]);
    let head = cluster.replica(4, PEER_SECRET);
    for (round, (from, to)) in [(&short, &full), (&full, &short)].into_iter().enumerate() {
        let sha = cluster
            .up
            .commit_file("index.html", format!("v{round}\n"), "next");
        let r = from.webhook(&cluster.up, &sha);
        assert_eq!(r.status, 202, "{r}");
        wait_all_published(&[from, to], &sha, &format!("round {round}"));
        assert_eq!(to.received("ok"), 1.0, "{}", to.addr);
    }
    assert_eq!(head.received("ignored"), 2.0);
    let ignored = log_lines(&head.run.stderr())
        .filter(|l| {
            l["msg"]
                .as_str()
                .unwrap_or("")
                .starts_with("peer hint ignored")
        })
        .count();
    assert_eq!(ignored, 2, "{}", head.run.logs());
    // Each sender counts the HEAD replica's answer as ignored, not ok.
    for sender in [&short, &full] {
        sender.run.wait_until(DEADLINE, "both answers counted", || {
            sender.sent("ok") + sender.sent("ignored") == 2.0
        });
        assert_eq!(sender.sent("ok"), 1.0, "{}", sender.addr);
        assert_eq!(sender.sent("ignored"), 1.0, "{}", sender.addr);
    }
}

/// The manifests' `--peers=site-peers:8081`: a short name, resolved in the
/// pod's own namespace through the resolv.conf search list Kubernetes
/// writes, so the manifest works in any namespace.
#[test]
fn a_short_service_name_resolves_through_the_pods_search_list() {
    let fqdn = "site-peers.site.svc.cluster.local";
    let cluster = Cluster::answering(&[2, 3], fqdn, "site-peers");
    cluster
        .dns
        .search("site.svc.cluster.local svc.cluster.local cluster.local");
    let replicas = cluster.replicas(&[2, 3]);
    let sha = cluster.up.commit_file("index.html", "v1\n", "next");
    let r = replicas[0].webhook(&cluster.up, &sha);
    assert_eq!(r.status, 202, "signed push: {r}");
    wait_all_published(&replicas.iter().collect::<Vec<_>>(), &sha, "short name");
    assert_eq!(replicas[1].received("ok"), 1.0);
}

/// docs/http.md: with a pod's search list (`ndots:5`), a fully qualified
/// name ending with a dot is asked as it is (A and AAAA: 2 queries per
/// delivery); without the dot it is first tried under each search domain
/// (8 queries).
#[test]
fn a_fully_qualified_name_with_its_final_dot_skips_the_search_list() {
    let search = "site.svc.cluster.local svc.cluster.local cluster.local";
    for (peers, queries) in [(format!("{NAME}."), 2), (NAME.to_string(), 8)] {
        let cluster =
            Cluster::with_fake_dns_as(&[2, 3], FakeMode::Answer, "timeout:1 attempts:1", &peers);
        cluster
            .fake_dns()
            .search(search, "ndots:5 timeout:1 attempts:1");
        let replicas = cluster.replicas(&[2, 3]);
        let sha = cluster.up.commit_file("index.html", "v1\n", "v1");
        assert_eq!(replicas[0].webhook(&cluster.up, &sha).status, 202);
        wait_all_published(&replicas.iter().collect::<Vec<_>>(), &sha, &peers);
        let names = cluster.fake_dns().names();
        println!("--peers={peers}: {names:?}");
        assert_eq!(names.len(), queries, "{peers}: {names:?}");
        assert!(
            names.iter().filter(|n| *n == NAME).count() == 2,
            "{names:?}"
        );
    }
}

/// A peer with another secret (refused, counted on both sides), a peer
/// that is down, a peer that accepts connections but never answers, and
/// one that redirects (to an address that records what reaches it): the
/// good peer still publishes at once, the sender counts each, and the
/// redirect is not followed.
#[test]
fn peers_down_slow_or_with_another_secret_do_not_hold_up_the_others() {
    let cluster = Cluster::new(&[2, 3, 4, 5, 6, 7]);
    let sender = cluster.replica(2, PEER_SECRET);
    let good = cluster.replica(3, PEER_SECRET);
    let stranger = cluster.replica(4, "another-secret-entirely");
    // 127.X.Y.5: nobody listens (a pod gone). 127.X.Y.6: a pod that hangs.
    let slow =
        TcpListener::bind((cluster.subnet.ip(6), cluster.port)).expect("binding the slow peer");
    let held = std::sync::Mutex::new(Vec::new());
    // 127.X.Y.7 redirects every request to 127.X.Y.8, which is not a peer.
    let elsewhere = TcpListener::bind((cluster.subnet.ip(8), cluster.port)).expect("binding .8");
    elsewhere.set_nonblocking(true).expect("nonblocking");
    let location = format!(
        "http://{}:{}/peers/hint",
        cluster.subnet.ip(8),
        cluster.port
    );
    let redirects = answering(
        (cluster.subnet.ip(7), cluster.port),
        format!("HTTP/1.1 307 Temporary Redirect\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"),
    );
    std::thread::scope(|scope| {
        scope.spawn(|| {
            // Accepts and holds connections, never answering, for the test's length.
            slow.set_nonblocking(true).expect("nonblocking");
            let start = Instant::now();
            while start.elapsed() < DEADLINE * 2 {
                match slow.accept() {
                    Ok((stream, _)) => held.lock().unwrap().push(stream),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
                if held.lock().unwrap().len() >= 3 {
                    break;
                }
            }
        });

        let sha = cluster.up.commit_file("index.html", "v1\n", "v1");
        let r = sender.webhook(&cluster.up, &sha);
        assert_eq!(r.status, 202, "{r}");
        wait_all_published(&[&sender, &good], &sha, "sender and good peer");

        // Each failure is retried, then counted once, by outcome.
        let last = sender.finished_fan_out();
        let result_of = |host: u8| {
            let addr = format!("{}:{}", cluster.subnet.ip(host), cluster.port);
            last["peers"]
                .as_array()
                .and_then(|a| a.iter().find(|p| p["address"] == addr.as_str()))
                .map(|p| {
                    (
                        p["result"].as_str().unwrap_or("").to_string(),
                        p["attempts"].as_u64(),
                    )
                })
        };
        assert_eq!(result_of(3), Some(("ok".into(), Some(1))), "{last}");
        assert_eq!(result_of(4), Some(("refused".into(), Some(1))), "{last}");
        assert_eq!(result_of(5), Some(("error".into(), Some(3))), "{last}");
        assert_eq!(result_of(6), Some(("timeout".into(), Some(3))), "{last}");
        assert_eq!(result_of(7), Some(("error".into(), Some(1))), "{last}");
        assert_eq!(redirects.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(
            elsewhere.accept().is_err(),
            "the redirect was followed to 127.X.Y.8"
        );
        for (result, n) in [
            ("ok", 1.0),
            ("refused", 1.0),
            ("error", 2.0),
            ("timeout", 1.0),
        ] {
            assert_eq!(sender.sent(result), n, "sent {result}");
        }
        assert!(sender.metric("git_sidecar_peer_hint_retries_total") >= 4.0);
        assert_eq!(stranger.received("bad_signature"), 1.0);
        // The stranger was not moved by the refused hint (its period is an hour).
        assert_ne!(stranger.published().as_deref(), Some(sha.as_str()));
        assert_eq!(good.received("ok"), 1.0);
    });
}

/// What arrives at /peers/hint without the secret does nothing; a genuine
/// hint syncs once, and its replay is deduplicated; a hint is never passed
/// on; an unsigned forge webhook makes no hints.
#[test]
fn hints_without_the_secret_or_replayed_do_nothing_and_are_never_forwarded() {
    let cluster = Cluster::new(&[2, 3]);
    let a = cluster.replica(2, PEER_SECRET);
    let b = cluster.replica(3, PEER_SECRET);
    let sha = cluster.up.commit_file("index.html", "v1\n", "v1");

    // A stranger's hints: unsigned, or signed with a guess.
    let hint = hint_body(&cluster.up.file_url(), &sha);
    let unsigned = post_hint(&a.addr, &hint, None);
    assert_eq!(unsigned.status, 401, "{unsigned}");
    assert_eq!(unsigned.json()["result"], "missing_signature", "{unsigned}");
    let guessed = post_hint(&a.addr, &hint, Some(&sign_hint("guess", &hint)));
    assert_eq!(guessed.status, 401, "{guessed}");
    assert_eq!(guessed.json()["result"], "bad_signature", "{guessed}");
    // An unsigned forge webhook: refused, and no hint goes out for it.
    let body = github_push_body("refs/heads/main", &sha, &cluster.up.file_url());
    let forged = send_github(&a.addr, "push", &body, None);
    assert_eq!(forged.status, 401, "{forged}");
    // Control below proves the loop is responsive; nothing moved so far.
    assert!(
        !poll_until(Duration::from_secs(2), || a.published().as_deref()
            == Some(sha.as_str())),
        "a hint without the secret made replica a sync\n{}",
        a.run.logs()
    );
    assert_eq!(b.received_any(), 0.0, "b heard of the unsigned webhook");

    // The genuine hint: a syncs; b hears nothing (hints are never forwarded).
    let signature = sign_hint(PEER_SECRET, &hint);
    let genuine = post_hint(&a.addr, &hint, Some(&signature));
    assert_eq!(genuine.status, 202, "{genuine}");
    a.run.wait_for_link_hash(&a.scratch.link(), &sha);
    let replay = post_hint(&a.addr, &hint, Some(&signature));
    assert_eq!(replay.status, 200, "{replay}");
    assert_eq!(replay.json()["result"], "duplicate_delivery", "{replay}");
    assert_eq!(a.received("ok"), 1.0);
    assert_eq!(a.received("duplicate_delivery"), 1.0);
    assert_eq!(a.received("missing_signature"), 1.0);
    assert_eq!(a.received("bad_signature"), 1.0);
    // Refusals are logged: the strangers' once a minute (anyone can send
    // them), a genuine but stale hint every time (the clocks differ).
    let stale = hint_body_at(&cluster.up.file_url(), &sha, unix_now() - 200);
    let r = post_hint(&a.addr, &stale, Some(&sign_hint(PEER_SECRET, &stale)));
    assert_eq!(r.status, 403, "{r}");
    let refusals: Vec<serde_json::Value> = log_lines(&a.run.stderr())
        .filter(|l| l["msg"] == "peer hint refused")
        .collect();
    assert_eq!(refusals.len(), 2, "{refusals:#?}");
    assert_eq!(refusals[0]["result"], "missing_signature", "{refusals:#?}");
    assert_eq!(refusals[1]["result"], "stale", "{refusals:#?}");
    assert!(
        a.last_fan_out().is_null(),
        "a hint made a fan-out: {}",
        a.last_fan_out()
    );
    assert_eq!(b.received_any(), 0.0, "a passed the hint on");
    assert_ne!(b.published().as_deref(), Some(sha.as_str()));
}

/// A peer that accepts connections and never answers (a pod on a dead
/// node, still listed) delays no other peer's hints: each peer has its own
/// queue. Three deliveries reach the healthy peer while the silent one's
/// first hint is still being retried (3 attempts of 2 s); the silent peer
/// then gets only the newest of the two that waited for it. Before, each
/// fan-out waited for the previous one's retries (about 6 s).
#[test]
fn a_peer_that_never_answers_delays_no_other_peers_hints() {
    let cluster = Cluster::new(&[2, 3, 4]);
    let sender = cluster.replica(2, PEER_SECRET);
    let healthy = cluster.replica(3, PEER_SECRET);
    let silent = SilentPeer::bind((cluster.subnet.ip(4), cluster.port));
    for round in 0..3 {
        let sha = cluster
            .up
            .commit_file("index.html", format!("v{round}\n"), "next");
        let sent = Instant::now();
        assert_eq!(sender.webhook(&cluster.up, &sha).status, 202);
        wait_all_published(&[&sender, &healthy], &sha, &format!("round {round}"));
        println!(
            "round {round}: published by the healthy peer after {:?}",
            sent.elapsed()
        );
    }
    assert_eq!(
        sender.sent("timeout"),
        0.0,
        "the silent peer's first hint was given up before the healthy peer had the third"
    );
    assert_eq!(healthy.received("ok"), 3.0);
    sender
        .run
        .wait_until(DEADLINE * 2, "the silent peer's hints to time out", || {
            sender.sent("timeout") == 2.0
        });
    assert_eq!(silent.accepted(), 2 * ATTEMPTS);
    let superseded: Vec<u64> = log_lines(&sender.run.stderr())
        .filter(|l| l["msg"] == "peer hints sent")
        .filter_map(|l| l["superseded"].as_u64())
        .collect();
    assert_eq!(superseded.iter().sum::<u64>(), 1, "{superseded:?}");
    assert_eq!(sender.sent("ok"), 3.0);
}

/// DNS failing when a delivery arrives: the name is asked again, as a
/// send is retried. A name that never resolves is counted
/// (`git_sidecar_peer_hints_sent_total{result="unresolved"}`) and logged
/// once, after the last lookup; a lookup lost once costs nothing but the
/// retry. Before, one failed lookup lost the fan-out without a count.
#[test]
fn dns_failures_at_a_delivery_are_retried_then_counted() {
    let cluster = Cluster::with_fake_dns(&[2, 3], FakeMode::NxDomain, "timeout:1 attempts:1");
    let replicas = cluster.replicas(&[2, 3]);
    let (a, b) = (&replicas[0], &replicas[1]);
    let dns = cluster.fake_dns();

    let first = cluster.up.commit_file("index.html", "v1\n", "v1");
    assert_eq!(a.webhook(&cluster.up, &first).status, 202);
    a.run.wait_until(DEADLINE, "the fan-out to give up", || {
        a.sent("unresolved") == 1.0
    });
    assert_eq!(dns.lookups(), ATTEMPTS);
    let last = a.last_fan_out();
    assert_eq!(
        last["unresolved"].as_array().map(Vec::len),
        Some(1),
        "{last}"
    );
    assert_eq!(last["peers"].as_array().map(Vec::len), Some(0), "{last}");
    let warned = log_lines(&a.run.stderr())
        .filter(|l| l["msg"] == "cannot resolve --peers; those peers get no hint")
        .count();
    assert_eq!(warned, 1, "{}", a.run.logs());
    assert_ne!(b.published().as_deref(), Some(first.as_str()));

    dns.set_mode(FakeMode::LoseNextLookup);
    let second = cluster.up.commit_file("index.html", "v2\n", "v2");
    assert_eq!(a.webhook(&cluster.up, &second).status, 202);
    wait_all_published(&[a, b], &second, "after a lost lookup");
    assert_eq!(dns.lookups(), ATTEMPTS + 2, "one lost, one answered");
    assert_eq!(a.sent("unresolved"), 1.0);
    assert_eq!(b.received("ok"), 1.0);
}

/// A lookup the DNS server never answers (it waits out its 5 s) holds up
/// no later delivery: fan-outs run side by side. Before, the second
/// delivery's fan-out waited for the first one to give up.
#[test]
fn a_dns_lookup_that_hangs_holds_up_no_later_delivery() {
    let cluster =
        Cluster::with_fake_dns(&[2, 3], FakeMode::LoseNextLookup, "timeout:30 attempts:1");
    let replicas = cluster.replicas(&[2, 3]);
    let (a, b) = (&replicas[0], &replicas[1]);
    let dns = cluster.fake_dns();
    let first = cluster.up.commit_file("index.html", "v1\n", "v1");
    assert_eq!(a.webhook(&cluster.up, &first).status, 202);
    a.run
        .wait_until(DEADLINE, "the first lookup", || dns.lookups() == 1);

    let second = cluster.up.commit_file("index.html", "v2\n", "v2");
    let sent = Instant::now();
    assert_eq!(a.webhook(&cluster.up, &second).status, 202);
    wait_all_published(&[b], &second, "while the first lookup hangs");
    println!(
        "second delivery published by the peer after {:?}",
        sent.elapsed()
    );
    // The first fan-out has not asked again yet (it gives up a lookup
    // after 5 s), nor sent anything.
    assert_eq!(dns.lookups(), 2, "the first fan-out asked again already");
    assert!(
        !a.run.stderr().contains("no DNS answer within"),
        "the first lookup had already given up: {}",
        a.run.logs()
    );
    assert_eq!(b.received_any(), 1.0);
    // Its second lookup is answered; its hint, older than the one sent,
    // is dropped: the peer never goes back to the first commit.
    let first_fan_out_over = || {
        log_lines(&a.run.stderr()).find(|l| {
            l["commit"] == first.as_str()
                && l["msg"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("peer hints"))
        })
    };
    a.run.wait_until(DEADLINE, "the first fan-out to end", || {
        first_fan_out_over().is_some()
    });
    let over = first_fan_out_over().unwrap_or_default();
    assert_eq!(
        over["msg"], "peer hints not sent: a newer delivery's were sent while these waited for DNS",
        "{over}"
    );
    assert_eq!(b.received_any(), 1.0);
    assert_eq!(b.published().as_deref(), Some(second.as_str()));
}

/// A burst of commit-less deliveries (`POST /sync`; a generic "sync now"
/// is the same announcement), which no peer can deduplicate: each peer
/// syncs a bounded number of times for it (the first at once, the rest
/// collapsed into one at the end of a 10 s window), and the last one,
/// which follows a new commit, still reaches every peer. Before, every
/// delivery made every peer fetch.
#[test]
fn a_burst_of_commit_less_deliveries_costs_each_peer_a_bounded_number_of_syncs() {
    const WINDOW: Duration = Duration::from_secs(10); // src/peers/window.rs
    const TOKEN: &str = "it-sync-token";
    let cluster = Cluster::new(&[2, 3]);
    let token = cluster.secret_file("token", TOKEN);
    let token = token.to_str().expect("a UTF-8 path");
    let sender = cluster.replica_with(2, PEER_SECRET, &["--sync-trigger-token-file", token]);
    let peer = cluster.replica(3, PEER_SECRET);
    let auth = format!("Bearer {TOKEN}");
    let sync_now = || {
        let r = client::post(&sender.addr, "/sync", &[("Authorization", &auth)], b"")
            .expect("POST /sync");
        assert_eq!(r.status, 202, "{r}");
    };
    let started = Instant::now();
    for _ in 0..20 {
        sync_now();
    }
    let last = cluster.up.commit_file("index.html", "v1\n", "v1");
    sync_now();
    let burst = started.elapsed();
    let published = wait_all_published(&[&sender, &peer], &last, "after the last delivery");
    println!(
        "burst of 21 in {burst:?}; the peer published the last one's commit after {published:?}"
    );
    // One fan-out at once, one at the end of each window the burst reached.
    let bound = 2.0 + (burst.as_secs_f64() / WINDOW.as_secs_f64()).floor();
    let received = peer.received("ok");
    assert!(
        (1.0..=bound).contains(&received),
        "{received} hints for a burst of 21 over {burst:?} (at most {bound})"
    );
    sender
        .run
        .wait_until(DEADLINE, "the sender to count them", || {
            sender.sent("ok") == received
        });
}

/// A signed hint whose commit is not an object id/// A signed hint whose commit is not an object id (40 or 64 lowercase
/// hex) is a 400 `bad_body`: it never becomes the expected commit in
/// /status, nor starts the loop's retries for it.
#[test]
fn a_hint_whose_commit_is_not_an_object_id_is_refused() {
    let cluster = Cluster::new(&[2]);
    let a = cluster.replica(2, PEER_SECRET);
    let repo = cluster.up.file_url();
    for commit in [
        "../../etc/passwd",
        "zz\"\n{\"msg\":\"forged log line\"}",
        &"A".repeat(40),
        &"a".repeat(41),
    ] {
        let hint = hint_body(&repo, commit);
        let r = post_hint(&a.addr, &hint, Some(&sign_hint(PEER_SECRET, &hint)));
        assert_eq!(r.status, 400, "{commit}: {r}");
        assert_eq!(r.json()["result"], "bad_body", "{r}");
    }
    assert_eq!(a.received("bad_body"), 4.0);
    assert!(status_json(&a.addr)["expected_hash"].is_null());
    // A genuine commit id is still taken.
    let sha = cluster.up.commit_file("index.html", "v1\n", "v1");
    let hint = hint_body(&repo, &sha);
    let r = post_hint(&a.addr, &hint, Some(&sign_hint(PEER_SECRET, &hint)));
    assert_eq!(r.status, 202, "{r}");
    a.run.wait_for_link_hash(&a.scratch.link(), &sha);
}

/// Pods come and go between deliveries: the name is resolved again for
/// each one, so a replica added to the DNS answer gets the next hint.
#[test]
fn a_replica_added_to_the_dns_answer_gets_the_next_hint() {
    let cluster = Cluster::new(&[2, 3]);
    let replicas = cluster.replicas(&[2, 3, 4]);
    let (a, b, c) = (&replicas[0], &replicas[1], &replicas[2]);

    let first = cluster.up.commit_file("index.html", "v1\n", "v1");
    assert_eq!(a.webhook(&cluster.up, &first).status, 202);
    wait_all_published(&[a, b], &first, "before c is in the answer");
    a.run.wait_until(DEADLINE, "the first fan-out", || {
        !a.last_fan_out().is_null()
    });
    assert_eq!(a.last_fan_out()["peers"].as_array().map(Vec::len), Some(1));
    assert_eq!(c.received_any(), 0.0);

    cluster.dns.set_hosts(NAME, &[a.ip, b.ip, c.ip]);
    let second = cluster.up.commit_file("index.html", "v2\n", "v2");
    assert_eq!(a.webhook(&cluster.up, &second).status, 202);
    wait_all_published(&[a, b, c], &second, "after c joined the answer");
    assert_eq!(c.received("ok"), 1.0);
    assert_eq!(a.metric("git_sidecar_peers"), 2.0);
}

/// A peer that accepts connections and never answers; stops on drop.
struct SilentPeer {
    accepted: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SilentPeer {
    fn bind(addr: (Ipv4Addr, u16)) -> Self {
        use std::sync::atomic::Ordering::SeqCst;
        let listener = TcpListener::bind(addr).expect("binding the silent peer");
        listener.set_nonblocking(true).expect("nonblocking");
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let (accepted, stop) = (accepted.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut held = Vec::new();
                while !stop.load(SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            accepted.fetch_add(1, SeqCst);
                            held.push(stream);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
        };
        SilentPeer {
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    fn accepted(&self) -> u64 {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for SilentPeer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A fake peer on `addr` that reads each request and writes `answer`;
/// counts the requests.
fn answering(
    addr: (Ipv4Addr, u16),
    answer: String,
) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    use std::io::{Read, Write};
    let listener = TcpListener::bind(addr).expect("binding a fake peer");
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = count.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = stream.read(&mut buf) {
                request.extend_from_slice(&buf[..n]);
                if n == 0 || request_complete(&request) {
                    break;
                }
            }
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    count
}

/// Whether `request` holds its headers and `content-length` bytes of body.
fn request_complete(request: &[u8]) -> bool {
    let text = String::from_utf8_lossy(request);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let length = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    body.len() >= length
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A hint as a replica sends it (the format of `src/peers/hint.rs`).
fn hint_body(repo: &str, commit: &str) -> Vec<u8> {
    hint_body_at(repo, commit, unix_now())
}

/// [`hint_body`] stamped `ts`.
fn hint_body_at(repo: &str, commit: &str, ts: u64) -> Vec<u8> {
    serde_json::json!({
        "v": 1, "repo": repo, "ref": "HEAD", "commit": commit,
        "id": format!("it-{}", fastrand::u64(..)), "ts": ts,
    })
    .to_string()
    .into_bytes()
}

fn sign_hint(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("hmac key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn post_hint(addr: &str, body: &[u8], signature: Option<&str>) -> Response {
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(sig) = signature {
        headers.push(("X-Git-Sidecar-Peer-Signature", sig));
    }
    client::post(addr, "/peers/hint", &headers, body).expect("POST /peers/hint")
}
