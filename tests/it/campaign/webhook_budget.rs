//! Junk must not block real deliveries. Behind an Ingress every request
//! reaches the sidecar from one client address; here everything comes from
//! 127.0.0.1 alike. Unsigned, wrongly signed, wrong-token and oversized POSTs
//! (more than the per-client budget, also while valid deliveries arrive)
//! spend the budget and then get 429, while every correctly signed GitHub
//! delivery and every `POST /sync` with the token is accepted and syncs.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use super::{start_with_http, sync_count};
use crate::http::{github_push_body, send_github, SECRET};
use crate::support::client;
use crate::support::*;

/// `--incoming-webhook-rate-limit`: failed requests per minute per client.
const BUDGET: usize = 5;
const TOKEN: &str = "campaign-webhook-budget-token";

/// One failed request of kind `i % 4`: unsigned, wrongly signed, a wrong
/// GitLab token, a body over `--incoming-webhook-max-body`.
fn junk(addr: &str, i: usize) -> client::Response {
    let body = br#"{"ref":"refs/heads/main","after":"0000000000000000000000000000000000000001"}"#;
    let posted = match i % 4 {
        0 => return send_github(addr, "push", body, None),
        1 => return send_github(addr, "push", body, Some("not-the-secret")),
        2 => client::post(
            addr,
            "/webhook",
            &[("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", "guess")],
            body,
        ),
        _ => client::post(
            addr,
            "/webhook",
            &[("X-GitHub-Event", "push")],
            &[b'x'; 2048],
        ),
    };
    posted.expect("POST /webhook")
}

#[test]
fn junk_never_blocks_signed_deliveries_or_the_token() {
    let up = Upstream::new();
    let a = up.commit_file("f", "1", "a");
    let s = Scratch::new();
    let secret = s.dir.path().join("webhook-secret");
    let token = s.dir.path().join("sync-token");
    std::fs::write(&secret, SECRET).expect("writing the secret");
    std::fs::write(&token, TOKEN).expect("writing the token");
    let (run, addr) = start_with_http(
        s.sidecar(&up.file_url())
            .args(["--period", "10m", "--incoming-webhook-max-body", "1KiB"])
            .args(["--incoming-webhook-rate-limit", &BUDGET.to_string()])
            .arg("--incoming-webhook-secret-file")
            .arg(&secret)
            .arg("--sync-trigger-token-file")
            .arg(&token),
    );
    run.wait_for_link_hash(&s.link(), &a);
    let ctx = || run.logs();

    // More junk than the budget: the budget's worth is refused as such, the rest 429.
    let codes: Vec<u16> = (0..BUDGET * 3).map(|i| junk(&addr, i).status).collect();
    assert!(
        codes[..BUDGET].iter().all(|c| matches!(c, 401 | 413)),
        "the first {BUDGET} failures answer 401/413: {codes:?}"
    );
    assert!(
        codes[BUDGET..].iter().all(|c| *c == 429),
        "failures beyond the budget answer 429: {codes:?}"
    );

    // A correctly signed delivery from the same address is accepted and syncs.
    let b = up.commit_file("f", "2", "b");
    let push = github_push_body("refs/heads/main", &b, &up.file_url());
    let r = send_github(&addr, "push", &push, Some(SECRET));
    assert_eq!(
        r.status,
        202,
        "a signed delivery after the junk: {r}\n{}",
        ctx()
    );
    run.wait_for_link_hash(&s.link(), &b);

    // Junk keeps coming while real deliveries arrive: every real one passes.
    let stop = Arc::new(AtomicBool::new(false));
    let limited = Arc::new(AtomicUsize::new(0));
    let flood = {
        let (addr, stop, limited) = (addr.clone(), stop.clone(), limited.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                if junk(&addr, i).status == 429 {
                    limited.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        })
    };
    let mut head = b;
    for n in 3..8 {
        head = up.commit_file("f", n.to_string(), &format!("commit {n}"));
        let push = github_push_body("refs/heads/main", &head, &up.file_url());
        let r = send_github(&addr, "push", &push, Some(SECRET));
        assert_eq!(r.status, 202, "signed delivery {n} during the flood: {r}");
        let auth = if n % 2 == 0 { "bearer" } else { "BEARER" };
        let auth = format!("{auth} {TOKEN}");
        let r = client::post(&addr, "/sync", &[("Authorization", &auth)], b"").expect("POST /sync");
        assert_eq!(
            r.status, 202,
            "POST /sync with the token during the flood: {r}"
        );
    }
    run.wait_for_link_hash(&s.link(), &head);
    stop.store(true, Ordering::Relaxed);
    flood.join().expect("the flood thread");
    assert!(
        limited.load(Ordering::Relaxed) > 0,
        "the flood was never limited"
    );

    // The budget is still spent: junk and a wrong token stay 429.
    assert_eq!(junk(&addr, 1).status, 429);
    let r =
        client::post(&addr, "/sync", &[("Authorization", "Bearer nope")], b"").expect("POST /sync");
    assert_eq!(r.status, 429, "{r}");
    assert!(sync_count(&addr, "success") >= 3, "{}", ctx());
    run.assert_running();
}
