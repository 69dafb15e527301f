//! The component in-process: what `receive` decides, and fan-outs against
//! real sockets on 127.0.0.1 (peers that take the hint, have another
//! secret, never answer, are down, answer otherwise, and this instance
//! itself).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

const REPO: &str = "https://example.com/org/site.git";

fn config(list: &str, dir: &tempfile::TempDir) -> PeersConfig {
    let secret_file = dir.path().join("peer-secret");
    std::fs::write(&secret_file, "shared").unwrap();
    PeersConfig {
        names: resolve::parse_list(list).unwrap(),
        secret_file,
        secret: SecretBytes::new(b"shared".to_vec()),
    }
}

fn peers(list: &str, me: SocketAddr, dir: &tempfile::TempDir) -> (Arc<Peers>, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let p = Peers::start(
        &config(list, dir),
        Me { bound: me },
        REPO.into(),
        "main".into(),
        metrics.clone(),
        CancellationToken::new(),
    );
    (p, metrics)
}

fn sample(metrics: &Metrics, line: &str) -> Option<f64> {
    metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
}

/// A hint signed with the shared secret.
fn signed(commit: Option<&str>) -> (Vec<u8>, String) {
    Hint::new(REPO, "main", commit.map(str::to_string)).sign(&SecretBytes::new(b"shared".to_vec()))
}

#[test]
fn receive_acts_once_per_delivery_and_per_commit_not_yet_settled() {
    let dir = tempfile::tempdir().unwrap();
    let (p, _) = peers("127.0.0.1:1", "127.0.0.1:2".parse().unwrap(), &dir);
    let commit = "c".repeat(40);
    let nothing_settled = |_: &str| false;
    let (body, sig) = signed(Some(&commit));
    assert_eq!(
        p.receive(&body, Some(&sig), nothing_settled),
        Ok(Received::Sync(Some(commit.clone())))
    );
    assert_eq!(
        p.receive(&body, Some(&sig), nothing_settled),
        Ok(Received::Duplicate(Verdict::DuplicateDelivery))
    );
    // Another delivery of the commit this replica now awaits (or publishes).
    let (body2, sig2) = signed(Some(&commit));
    assert_eq!(
        p.receive(&body2, Some(&sig2), |c| c == commit),
        Ok(Received::Duplicate(Verdict::DuplicateCommit))
    );
    // The same commit once this replica has moved on (A → B → A, a
    // rollback): acted on again, however recently it was hinted.
    let (body3, sig3) = signed(Some(&commit));
    assert_eq!(
        p.receive(&body3, Some(&sig3), |c| c == "b".repeat(40)),
        Ok(Received::Sync(Some(commit.clone())))
    );
    // Spelled otherwise, the same repository and ref (F7).
    let spelled = Hint::new("git@EXAMPLE.com:org/site", "refs/heads/main", None);
    let (body6, sig6) = spelled.sign(&SecretBytes::new(b"shared".to_vec()));
    assert_eq!(
        p.receive(&body6, Some(&sig6), nothing_settled),
        Ok(Received::Sync(None))
    );
    let other = Hint::new("https://example.com/org/other.git", "main", None);
    let (body4, sig4) = other.sign(&SecretBytes::new(b"shared".to_vec()));
    assert_eq!(
        p.receive(&body4, Some(&sig4), nothing_settled),
        Ok(Received::Foreign {
            repo: "https://example.com/org/other.git".into(),
            git_ref: "main".into()
        })
    );
    let (body5, sig5) = Hint::new(REPO, "main", None).sign(&SecretBytes::new(b"wrong".to_vec()));
    assert_eq!(
        p.receive(&body5, Some(&sig5), nothing_settled),
        Err(Refusal::BadSignature)
    );
    assert_eq!(
        p.receive(&body5, None, nothing_settled),
        Err(Refusal::MissingSignature)
    );
}

/// A peer answering every request with `answer` (after reading it
/// whole), or never answering (`None`); counts requests.
async fn peer(answer: Option<String>) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let Some(answer) = answer.clone() else {
                held.push(stream);
                continue;
            };
            tokio::spawn(async move {
                read_request(&mut stream).await;
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    (addr, count)
}

/// A receiver's answer: `status` and `{"result":..,"reason":..}`.
fn answer(status: u16, result: &str, reason: &str) -> String {
    let body = serde_json::json!({ "result": result, "reason": reason }).to_string();
    raw_answer(status, &[("content-type", "application/json")], &body)
}

fn raw_answer(status: u16, headers: &[(&str, &str)], body: &str) -> String {
    let headers: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    format!(
        "HTTP/1.1 {status} X\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Reads one request whole (headers and `content-length` bytes of body).
async fn read_request(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
        if complete(&request) {
            break;
        }
    }
    request
}

fn complete(request: &[u8]) -> bool {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_fan_out_reaches_each_peer_once_and_records_each_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let (good, good_count) = peer(Some(answer(202, "ok", "sync triggered"))).await;
    let (wrong_secret, wrong_count) = peer(Some(answer(401, "bad_signature", "no"))).await;
    let (silent, silent_count) = peer(None).await;
    // A port nobody listens on: bind, note, close.
    let down = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let me: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let list = format!("{good},{wrong_secret},{silent},{down},{me}");
    let (p, metrics) = peers(&list, me, &dir);
    let last = p
        .fan_out_and_wait(Some("d".repeat(40)))
        .await
        .expect("sent");
    assert_eq!(last.skipped_self, [me]);
    let result_of = |addr: SocketAddr| {
        last.peers
            .iter()
            .find(|o| o.address == addr)
            .map(|o| (o.result, o.attempts))
    };
    assert_eq!(result_of(good), Some((fanout::Result::Ok, 1)));
    assert_eq!(result_of(wrong_secret), Some((fanout::Result::Refused, 1)));
    assert_eq!(
        result_of(silent),
        Some((fanout::Result::Timeout, fanout::ATTEMPTS))
    );
    assert_eq!(
        result_of(down),
        Some((fanout::Result::Error, fanout::ATTEMPTS))
    );
    assert_eq!(last.peers.len(), 4);
    // Refusals are not retried; failures are, a bounded number of times.
    assert_eq!(good_count.load(Ordering::SeqCst), 1);
    assert_eq!(wrong_count.load(Ordering::SeqCst), 1);
    assert_eq!(
        silent_count.load(Ordering::SeqCst),
        fanout::ATTEMPTS as usize
    );
    let sent = "git_sidecar_peer_hints_sent_total{result=";
    for result in ["ok", "refused", "timeout", "error"] {
        assert_eq!(
            sample(&metrics, &format!("{sent}\"{result}\"}}")),
            Some(1.0),
            "{result}"
        );
    }
    assert_eq!(
        sample(&metrics, "git_sidecar_peer_hint_retries_total"),
        Some(2.0 * (fanout::ATTEMPTS - 1) as f64)
    );
    assert_eq!(sample(&metrics, "git_sidecar_peers"), Some(4.0));
    // The record is what /status shows.
    let shown = serde_json::to_value(&last).unwrap();
    assert_eq!(shown["peers"].as_array().unwrap().len(), 4, "{shown}");
    assert!(
        shown["delivery"].as_str().is_some_and(|d| d.len() == 32),
        "{shown}"
    );
}

/// A peer that takes hints signed with `secret` (202) and refuses others
/// (401), as a replica whose Secret mount still has the old secret does.
async fn peer_with_secret(secret: &'static [u8]) -> (SocketAddr, Arc<AtomicUsize>) {
    use hmac::{Hmac, KeyInit, Mac};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let request = read_request(&mut stream).await;
                let text = String::from_utf8_lossy(&request).into_owned();
                let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
                let given = head.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case(hint::SIGNATURE_HEADER)
                        .then(|| v.trim().to_string())
                });
                let mut mac = <Hmac<sha2::Sha256>>::new_from_slice(secret).unwrap();
                mac.update(body.as_bytes());
                let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
                let answer = if given.as_deref() == Some(expected.as_str()) {
                    answer(202, "ok", "sync triggered")
                } else {
                    answer(401, "bad_signature", "another secret")
                };
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    (addr, count)
}

/// The secret file changed here, but a peer still has the old secret: the
/// hint signed with the new one is refused, the one signed with the
/// previous secret (within the grace) is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_still_on_the_previous_secret_gets_the_hint() {
    let dir = tempfile::tempdir().unwrap();
    let (old_peer, old_count) = peer_with_secret(b"shared").await;
    let (new_peer, new_count) = peer_with_secret(b"rotated").await;
    let me: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let (p, _metrics) = peers(&format!("{old_peer},{new_peer}"), me, &dir);
    // A new file (new inode), as a Secret update swaps the mounted file.
    let secret_file = dir.path().join("peer-secret");
    let next = dir.path().join("peer-secret.new");
    std::fs::write(&next, "rotated").unwrap();
    std::fs::rename(&next, &secret_file).unwrap();
    let last = p
        .fan_out_and_wait(Some("e".repeat(40)))
        .await
        .expect("sent");
    let result_of = |addr: SocketAddr| {
        last.peers
            .iter()
            .find(|o| o.address == addr)
            .map(|o| (o.result, o.attempts))
    };
    assert_eq!(result_of(new_peer), Some((fanout::Result::Ok, 1)));
    assert_eq!(result_of(old_peer), Some((fanout::Result::Ok, 2)));
    assert_eq!(new_count.load(Ordering::SeqCst), 1);
    assert_eq!(old_count.load(Ordering::SeqCst), 2);
}

/// Answers that are not `ok`: a peer that has the hint already or ignores
/// it (counted apart from `ok`), a stale refusal (its reason reaches the
/// sender's record), a redirect (never followed, not retried: the target
/// hears nothing), and a 2xx that no peer gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_read_and_redirects_are_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let (duplicate, _) = peer(Some(answer(200, "duplicate_commit", "nothing to do"))).await;
    let (ignored, _) = peer(Some(answer(200, "ignored", "for another ref"))).await;
    let (stale, _) = peer(Some(answer(403, "stale", "check the nodes' clocks"))).await;
    let (target, target_count) = peer(Some(answer(202, "ok", "sync triggered"))).await;
    let location = format!("http://{target}/peers/hint");
    let (redirect, redirect_count) =
        peer(Some(raw_answer(307, &[("location", &location)], ""))).await;
    let (stranger, _) = peer(Some(raw_answer(200, &[], "hello"))).await;
    let me: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let list = format!("{duplicate},{ignored},{stale},{redirect},{stranger}");
    let (p, metrics) = peers(&list, me, &dir);
    let last = p
        .fan_out_and_wait(Some("d".repeat(40)))
        .await
        .expect("sent");
    let outcome = |addr: SocketAddr| {
        last.peers
            .iter()
            .find(|o| o.address == addr)
            .cloned()
            .expect("an outcome")
    };
    assert_eq!(outcome(duplicate).result, fanout::Result::Duplicate);
    assert_eq!(outcome(ignored).result, fanout::Result::Ignored);
    let refused = outcome(stale);
    assert_eq!(refused.result, fanout::Result::Refused);
    assert!(
        refused
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("clocks")),
        "{refused:?}"
    );
    let redirected = outcome(redirect);
    assert_eq!(
        (redirected.result, redirected.attempts),
        (fanout::Result::Error, 1)
    );
    assert!(
        redirected
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("redirect")),
        "{redirected:?}"
    );
    assert_eq!(redirect_count.load(Ordering::SeqCst), 1);
    assert_eq!(
        target_count.load(Ordering::SeqCst),
        0,
        "the redirect was followed"
    );
    assert_eq!(outcome(stranger).result, fanout::Result::Error);
    let sent = "git_sidecar_peer_hints_sent_total{result=";
    for (result, n) in [
        ("duplicate", 1.0),
        ("ignored", 1.0),
        ("refused", 1.0),
        ("error", 2.0),
    ] {
        assert_eq!(
            sample(&metrics, &format!("{sent}\"{result}\"}}")),
            Some(n),
            "{result}\n{}",
            metrics.encode()
        );
    }
    assert_eq!(sample(&metrics, &format!("{sent}\"ok\"}}")), None);
}
