//! Router tests: most without sockets (each request goes through
//! `oneshot`), a few through the real accept loop on 127.0.0.1, as a
//! hostile client talks to it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use hmac::{KeyInit, Mac};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::WebhookConfig;
use super::*;
use crate::secret::SecretSet;
use crate::status::ReadinessConfig;

const SECRET: &str = "It's a Secret to Everybody";

fn config() -> HttpConfig {
    HttpConfig {
        bind: "127.0.0.1:0".parse().expect("addr"),
        metrics: true,
        pprof: false,
        readiness: ReadinessConfig {
            max_staleness: Duration::from_secs(60),
            max_failures: 2,
        },
        webhook: WebhookConfig {
            path: "/webhook".into(),
            secrets: SecretSet::fixed([SecretBytes::new(SECRET)]),
            allow_unsigned: false,
            repo_filter: None,
            max_body_bytes: 1024,
            rate_limit_per_minute: 1000,
        },
        trigger_tokens: SecretSet::fixed([SecretBytes::new("t0ken")]),
        connections: Default::default(),
    }
}

struct Harness {
    state: Shared,
}

impl Harness {
    fn new(config: HttpConfig) -> Self {
        Self::with_state(state(config))
    }

    fn with_state(state: HttpState) -> Self {
        Self {
            state: Arc::new(state),
        }
    }

    async fn send(&self, req: Request<Body>) -> (StatusCode, String) {
        let (status, _, body) = send_to(self.state.clone(), req).await;
        (status, body)
    }

    /// Sends `req` in a task of its own (to have several in flight).
    fn spawn(&self, req: Request<Body>) -> tokio::task::JoinHandle<(StatusCode, String)> {
        let state = self.state.clone();
        tokio::spawn(async move {
            let (status, _, body) = send_to(state, req).await;
            (status, body)
        })
    }

    /// Serves the router on 127.0.0.1 through the real accept loop.
    async fn serve(&self) -> (SocketAddr, tokio_util::sync::CancellationToken) {
        let listener = bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("binding 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let cancel = tokio_util::sync::CancellationToken::new();
        let served = serve(
            listener,
            router(self.state.clone()),
            self.state.config.connections,
            cancel.clone(),
        );
        tokio::spawn(served);
        (addr, cancel)
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        self.send(Request::get(path).body(Body::empty()).expect("request"))
            .await
    }

    async fn triggered(&self) -> bool {
        tokio::time::timeout(Duration::from_millis(20), self.state.trigger.fired())
            .await
            .is_ok()
    }
}

fn state(config: HttpConfig) -> HttpState {
    HttpState::new(
        config,
        StatusHandle::default(),
        Arc::new(Metrics::new()),
        Trigger::default(),
        "https://example.com/site.git".into(),
        "main".into(),
        Duration::from_secs(10),
    )
}

async fn send_to(state: Shared, mut req: Request<Body>) -> (StatusCode, HeaderMap, String) {
    let client: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
    req.extensions_mut().insert(ConnectInfo(client));
    let response = router(state).oneshot(req).await.expect("infallible");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    let body = String::from_utf8_lossy(&body).into_owned();
    (parts.status, parts.headers, body)
}

fn github_push(body: &str, signature: Option<String>) -> Request<Body> {
    let mut builder = Request::post("/webhook")
        .header("X-GitHub-Event", "push")
        .header("Content-Type", "application/json");
    if let Some(sig) = signature {
        builder = builder.header("X-Hub-Signature-256", sig);
    }
    builder.body(Body::from(body.to_string())).expect("request")
}

fn sign(secret: &str, body: &str) -> String {
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

const AFTER: &str = "0123456789abcdef0123456789abcdef01234567";

fn push_body(git_ref: &str) -> String {
    numbered_push_body(git_ref, 0x1111)
}

/// A push whose `before` is `n`: forges send a body of its own for each
/// push, and the same body again is a redelivery (see `replays.rs`).
fn numbered_push_body(git_ref: &str, n: u32) -> String {
    serde_json::json!({
        "ref": git_ref,
        "before": format!("{n:040x}"),
        "after": AFTER,
        "repository": { "clone_url": "https://example.com/site.git", "default_branch": "main" },
    })
    .to_string()
}

#[tokio::test]
async fn git_sync_health_is_503_until_the_first_sync_on_any_path() {
    let h = Harness::new(config());
    for path in ["/", "/healthz", "/anything/else"] {
        let (code, body) = h.get(path).await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(body, "repo is not ready");
    }
    h.state.status.succeeded(AFTER);
    assert_eq!(h.get("/").await.0, StatusCode::OK);
    assert_eq!(h.get("/healthz").await.0, StatusCode::OK);
}

/// A forge's delivery to a near-miss path gets 404 naming the webhook's
/// path, not git-sync's 200 of the catch-all health (the forge would show
/// success for a push that synced nothing). Other requests keep it.
#[tokio::test]
async fn a_delivery_to_another_path_is_404_naming_the_webhook_path() {
    let h = Harness::new(config());
    h.state.status.succeeded(AFTER);
    for path in ["/webhook/", "/Webhook", "//webhook", "/hooks"] {
        let body = push_body("refs/heads/main");
        let mut req = github_push(&body, Some(sign(SECRET, &body)));
        *req.uri_mut() = path.parse().expect("uri");
        let (code, text) = h.send(req).await;
        assert_eq!(code, StatusCode::NOT_FOUND, "{path}: {text}");
        assert!(text.contains("path is /webhook"), "{text}");
        assert!(!h.triggered().await);
    }
    let plain = Request::post("/anything")
        .body(Body::empty())
        .expect("request");
    assert_eq!(
        h.send(plain).await.0,
        StatusCode::OK,
        "not a delivery: health"
    );
}

#[tokio::test]
async fn readyz_follows_success_failures_and_recovery() {
    let h = Harness::new(config());
    assert_eq!(h.get("/readyz").await.0, StatusCode::SERVICE_UNAVAILABLE);
    h.state.status.succeeded(AFTER);
    assert_eq!(h.get("/readyz").await.0, StatusCode::OK);
    h.state.status.failed("boom", 1);
    assert_eq!(
        h.get("/readyz").await.0,
        StatusCode::OK,
        "below the failure limit"
    );
    h.state.status.failed("boom", 2);
    let (code, body) = h.get("/readyz").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("2 consecutive"), "{body}");
    assert_eq!(
        h.get("/livez").await.0,
        StatusCode::OK,
        "failures never fail liveness"
    );
    h.state.status.succeeded(AFTER);
    assert_eq!(h.get("/readyz").await.0, StatusCode::OK);
}

#[tokio::test]
async fn status_reports_the_loop_with_a_redacted_repo() {
    let h = Harness::new(config());
    h.state.status.succeeded(AFTER);
    h.state.status.failed("could not connect", 1);
    let (code, body) = h.get("/status").await;
    assert_eq!(code, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(json["published_hash"], AFTER);
    assert_eq!(json["ref"], "main");
    assert_eq!(json["consecutive_failures"], 1);
    assert_eq!(json["last_error"], "could not connect");
    assert!(json["last_success"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    assert_eq!(json["repo"], "https://example.com/site.git");
}

/// OpenMetrics when the scraper asks for it (Prometheus does); otherwise
/// the Prometheus text format git-sync's Go handler serves, which older
/// text-only parsers read: no `# EOF`, counters typed under their sample
/// names, no `unknown` type.
#[tokio::test]
async fn metrics_come_in_the_format_asked_for() {
    let h = Harness::new(config());
    let ask = |accept: Option<&'static str>| {
        let mut req = Request::get("/metrics");
        if let Some(accept) = accept {
            req = req.header(header::ACCEPT, accept);
        }
        send_to(h.state.clone(), req.body(Body::empty()).expect("request"))
    };
    let openmetrics = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    let (code, headers, body) = ask(Some(openmetrics)).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], crate::metrics::CONTENT_TYPE);
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(
        body.contains("# TYPE git_sync_askpass_calls unknown"),
        "{body}"
    );

    for accept in [None, Some("text/plain"), Some("*/*")] {
        let (code, headers, body) = ask(accept).await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(
            headers[header::CONTENT_TYPE],
            crate::metrics::TEXT_CONTENT_TYPE,
            "{accept:?}"
        );
        assert!(
            !body.contains("# EOF") && !body.contains(" unknown\n"),
            "{body}"
        );
        assert!(
            body.contains("# TYPE git_sync_count_total counter\n"),
            "{body}"
        );
        assert!(body.contains("# HELP git_sync_count_total "), "{body}");
        assert!(
            body.contains("# TYPE git_sync_askpass_calls untyped\n"),
            "{body}"
        );
        assert!(
            body.contains("git_sync_count_total{status=\"success\"} 0"),
            "{body}"
        );
        // Every sample's family was typed under the sample's own name (or
        // a histogram's or summary's base name), as text parsers expect.
        let typed: Vec<&str> = body
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        for sample in body
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let name = sample.split(['{', ' ']).next().unwrap_or_default();
            let known = typed.iter().any(|t| {
                name == *t
                    || ["_sum", "_count", "_bucket"]
                        .iter()
                        .any(|suffix| name.strip_suffix(suffix) == Some(*t))
            });
            assert!(known, "{name} has no # TYPE line of its own:\n{body}");
        }
    }
}

#[test]
fn metrics_negotiation_follows_weights_case_and_versions() {
    for (accept, openmetrics) in [
        // What Prometheus 2.x sends.
        (
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
             version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
            true,
        ),
        ("text/plain;version=0.0.4;q=0.6,application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.4", false),
        ("application/openmetrics-text;q=0,*/*", false),
        ("Application/OpenMetrics-Text; version=1.0.0", true),
        ("application/openmetrics-text; version=\"1.0.0\"; q=0.9, text/plain; q=0.8", true),
        ("application/openmetrics-text;version=0.0.1", false),
        ("*/*;q=0.9, application/openmetrics-text;q=0.5", false),
        ("text/plain;q=0.1, */*, application/openmetrics-text;q=0.5", true),
        ("text/html", false),
        ("", false),
    ] {
        assert_eq!(
            super::prefers_openmetrics([accept].into_iter()),
            openmetrics,
            "{accept}"
        );
    }
    assert!(!super::prefers_openmetrics(std::iter::empty()));
}

#[tokio::test]
async fn metrics_are_served_only_when_enabled() {
    let h = Harness::new(config());
    let (code, body) = h.get("/metrics").await;
    assert_eq!(code, StatusCode::OK);
    assert!(body.contains("git_sync_count_total"), "{body}");
    let h = Harness::new(HttpConfig {
        metrics: false,
        ..config()
    });
    assert_eq!(
        h.get("/metrics").await.0,
        StatusCode::SERVICE_UNAVAILABLE,
        "falls through to git-sync's health handler, as in git-sync"
    );
}

#[tokio::test]
async fn a_signed_push_to_our_ref_triggers_a_sync_and_sets_the_expected_hash() {
    let h = Harness::new(config());
    let body = push_body("refs/heads/main");
    let (code, text) = h.send(github_push(&body, Some(sign(SECRET, &body)))).await;
    assert_eq!(code, StatusCode::ACCEPTED, "{text}");
    assert!(h.triggered().await);
    assert_eq!(
        h.state.status.snapshot().expected_hash.as_deref(),
        Some(AFTER)
    );
    assert!(h
        .state
        .metrics
        .encode()
        .contains("git_sidecar_webhook_requests_total{provider=\"github\",result=\"ok\"} 1"));
}

/// The same delivery again (a forge's redelivery, or a captured one
/// replayed: GitHub's signature covers the body only) is not awaited again
/// (the loop would fetch up to five times for an older commit) nor
/// announced; it triggers this replica's sync only (an honest push can
/// repeat a body). Ten minutes on, the same body counts again.
#[tokio::test(start_paused = true)]
async fn a_delivery_accepted_before_starts_nothing_again() {
    let h = Harness::new(config());
    let body = push_body("refs/heads/main");
    let deliver = || h.send(github_push(&body, Some(sign(SECRET, &body))));
    let (code, text) = deliver().await;
    assert_eq!(code, StatusCode::ACCEPTED, "{text}");
    assert!(h.triggered().await);
    // A later push was published; AFTER never was, and is not awaited.
    h.state.status.succeeded(&"b".repeat(40));
    h.state.status.clear_expected();

    tokio::time::advance(Duration::from_secs(30)).await;
    let (code, text) = deliver().await;
    assert_eq!(code, StatusCode::ACCEPTED, "{text}");
    assert!(text.contains("accepted 30s ago"), "{text}");
    assert!(text.contains("duplicate_delivery"), "{text}");
    assert!(h.triggered().await, "a sync here");
    assert_eq!(h.state.status.snapshot().expected_hash, None);
    let other = push_body("refs/heads/main").replace("1111", "2222");
    let (code, text) = h
        .send(github_push(&other, Some(sign(SECRET, &other))))
        .await;
    assert_eq!(code, StatusCode::ACCEPTED, "another body: {text}");
    assert!(h.triggered().await);
    h.state.status.clear_expected();

    tokio::time::advance(replays::REMEMBERED_FOR).await;
    let (code, text) = deliver().await;
    assert_eq!(code, StatusCode::ACCEPTED, "remembered too long: {text}");
    assert_eq!(
        h.state.status.snapshot().expected_hash.as_deref(),
        Some(AFTER)
    );
    let metrics = h.state.metrics.encode();
    for (result, n) in [("ok", 3), ("duplicate_delivery", 1)] {
        let sample = format!(
            "git_sidecar_webhook_requests_total{{provider=\"github\",result=\"{result}\"}} {n}"
        );
        assert!(metrics.contains(&sample), "{sample}\n{metrics}");
    }
}

#[tokio::test]
async fn bad_missing_and_stale_signatures_are_refused_without_a_sync() {
    let h = Harness::new(config());
    let body = push_body("refs/heads/main");
    for signature in [
        Some(sign("wrong secret", &body)),
        None,
        Some(sign(SECRET, &push_body("refs/heads/other"))),
        Some("sha256=zz".to_string()),
    ] {
        let (code, text) = h.send(github_push(&body, signature.clone())).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{signature:?}: {text}");
        assert!(!h.triggered().await, "{signature:?}");
    }
}

#[tokio::test]
async fn a_rotated_secret_still_verifies() {
    let mut cfg = config();
    cfg.webhook.secrets =
        SecretSet::fixed([SecretBytes::new("new secret"), SecretBytes::new(SECRET)]);
    let h = Harness::new(cfg);
    let body = push_body("refs/heads/main");
    assert_eq!(
        h.send(github_push(&body, Some(sign(SECRET, &body))))
            .await
            .0,
        StatusCode::ACCEPTED
    );
    let next = numbered_push_body("refs/heads/main", 2);
    assert_eq!(
        h.send(github_push(&next, Some(sign("new secret", &next))))
            .await
            .0,
        StatusCode::ACCEPTED
    );
}

/// A Secret mounted as Kubernetes does: `name -> ..data/name`, with
/// `..data` a symlink the kubelet swaps to a new directory on a rotation.
struct MountedSecret {
    dir: tempfile::TempDir,
    generation: u32,
}

impl MountedSecret {
    fn new(value: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink("..data/value", dir.path().join("value")).expect("symlink");
        let mut secret = MountedSecret { dir, generation: 0 };
        secret.rotate(value);
        secret
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("value")
    }

    /// The kubelet's atomic update: a new timestamped directory, a new
    /// `..data` link renamed over the old one.
    fn rotate(&mut self, value: &str) {
        self.generation += 1;
        let version = format!("..2026_12_06_{}", self.generation);
        std::fs::create_dir(self.dir.path().join(&version)).expect("mkdir");
        std::fs::write(
            self.dir.path().join(&version).join("value"),
            format!("{value}\n"),
        )
        .expect("write");
        let tmp = self.dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(&version, &tmp).expect("symlink");
        std::fs::rename(&tmp, self.dir.path().join("..data")).expect("rename");
    }

    fn set(&self, label: &str, initial: &str) -> SecretSet {
        let mut set = SecretSet::default();
        set.push_file(crate::secret::SecretFile::new(
            self.path(),
            label,
            SecretBytes::new(initial),
        ));
        set
    }
}

#[tokio::test]
async fn a_rotated_webhook_secret_file_is_read_again_without_a_restart() {
    let mut mounted = MountedSecret::new("first secret");
    let mut cfg = config();
    cfg.webhook.secrets = mounted.set("--incoming-webhook-secret-file", "first secret");
    let h = Harness::new(cfg);
    let pushes = std::sync::atomic::AtomicU32::new(0);
    let deliver = |secret: &str| {
        let n = pushes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let body = numbered_push_body("refs/heads/main", n);
        github_push(&body, Some(sign(secret, &body)))
    };
    assert_eq!(
        h.send(deliver("second secret")).await.0,
        StatusCode::UNAUTHORIZED
    );

    mounted.rotate("second secret");
    assert_eq!(
        h.send(deliver("second secret")).await.0,
        StatusCode::ACCEPTED
    );
    // The forge may still sign with the old one for a while.
    assert_eq!(
        h.send(deliver("first secret")).await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        h.send(deliver("no secret of ours")).await.0,
        StatusCode::UNAUTHORIZED
    );
    // Changed again within the grace (a typo in the new Secret fixed): the
    // forge may still be on the first secret, which stays accepted.
    mounted.rotate("third secret");
    for secret in ["third secret", "second secret", "first secret"] {
        assert_eq!(
            h.send(deliver(secret)).await.0,
            StatusCode::ACCEPTED,
            "{secret}"
        );
    }

    // A half-written update (an empty file) keeps what was read before.
    std::fs::write(mounted.path(), "").expect("truncate");
    assert_eq!(
        h.send(deliver("third secret")).await.0,
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn a_rotated_sync_trigger_token_file_is_read_again_without_a_restart() {
    let mut mounted = MountedSecret::new("token-1");
    let h = Harness::new(HttpConfig {
        trigger_tokens: mounted.set("--sync-trigger-token-file", "token-1"),
        ..config()
    });
    let post = |token: &str| {
        Request::post("/sync")
            .header("Authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .expect("request")
    };
    assert_eq!(h.send(post("token-2")).await.0, StatusCode::UNAUTHORIZED);
    mounted.rotate("token-2");
    assert_eq!(h.send(post("token-2")).await.0, StatusCode::ACCEPTED);
    assert!(h.triggered().await);
}

/// A GitLab push signed with its signing token (Standard Webhooks), sent
/// `age` seconds ago.
fn gitlab_signed_push(body: &str, key: &[u8], age: i64) -> Request<Body> {
    gitlab_signed_message("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", body, key, age)
}

/// [`gitlab_signed_push`] as the message `id`.
fn gitlab_signed_message(id: &str, body: &str, key: &[u8], age: i64) -> Request<Body> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let timestamp = (now - age).to_string();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    let tag = mac.finalize().into_bytes();
    let signature = format!(
        "v1,{}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, tag)
    );
    Request::post("/webhook")
        .header("X-Gitlab-Event", "Push Hook")
        .header("Content-Type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp)
        .header("webhook-signature", signature)
        .body(Body::from(body.to_string()))
        .expect("request")
}

/// A Standard Webhooks message is known by its signed id, not its body:
/// GitLab sends the same body again for a branch pushed back to where it
/// was (its payloads carry no time), as a new message; the same id again
/// is a retry or a replay.
#[tokio::test]
async fn standard_webhooks_messages_are_told_apart_by_their_signed_id() {
    let h = Harness::new(config());
    let body = push_body("refs/heads/main");
    let deliver = |id: &'static str| h.send(gitlab_signed_message(id, &body, SECRET.as_bytes(), 5));
    for id in ["msg_1", "msg_2"] {
        let (code, text) = deliver(id).await;
        assert_eq!(code, StatusCode::ACCEPTED, "{text}");
        assert!(text.contains(r#""result":"ok""#), "{id}: {text}");
        assert_eq!(
            h.state.status.snapshot().expected_hash.as_deref(),
            Some(AFTER)
        );
        h.state.status.clear_expected();
    }
    let (code, text) = deliver("msg_2").await;
    assert_eq!(code, StatusCode::ACCEPTED, "{text}");
    assert!(text.contains("duplicate_delivery"), "{text}");
    assert_eq!(h.state.status.snapshot().expected_hash, None);
}

#[tokio::test]
async fn a_gitlab_push_signed_with_its_signing_token_triggers_a_sync() {
    let h = Harness::new(config());
    let body = push_body("refs/heads/main");
    let (code, text) = h
        .send(gitlab_signed_push(&body, SECRET.as_bytes(), 5))
        .await;
    assert_eq!(code, StatusCode::ACCEPTED, "{text}");
    assert!(h.triggered().await);

    let (code, text) = h
        .send(gitlab_signed_push(&body, SECRET.as_bytes(), 3600))
        .await;
    assert_eq!(code, StatusCode::UNAUTHORIZED, "{text}");
    assert!(text.contains("webhook-timestamp is 360"), "{text}");
    let (code, text) = h.send(gitlab_signed_push(&body, b"another key", 5)).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED, "{text}");
    assert!(!h.triggered().await);
}

#[tokio::test]
async fn pushes_to_other_refs_and_pings_are_acknowledged_and_ignored() {
    let h = Harness::new(config());
    let body = push_body("refs/heads/feature");
    let (code, text) = h.send(github_push(&body, Some(sign(SECRET, &body)))).await;
    assert_eq!(code, StatusCode::OK);
    assert!(text.contains("ignored_ref"), "{text}");
    assert!(!h.triggered().await);

    let ping = r#"{"zen":"Keep it logically awesome.","hook_id":1}"#;
    let req = Request::post("/webhook")
        .header("X-GitHub-Event", "ping")
        .header("X-Hub-Signature-256", sign(SECRET, ping))
        .body(Body::from(ping))
        .expect("request");
    let (code, text) = h.send(req).await;
    assert!(code.is_success(), "{text}");
    assert!(!h.triggered().await);
}

#[tokio::test]
async fn oversized_and_malformed_bodies_are_refused() {
    let h = Harness::new(config());
    let huge = "x".repeat(4096);
    let (code, _) = h.send(github_push(&huge, Some(sign(SECRET, &huge)))).await;
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE);
    for body in [
        "[1,2,3]",
        "{\"ref\": 5}",
        "{\"ref\": \"refs/heads/main\", \"after\"",
        "not json",
    ] {
        let (code, text) = h.send(github_push(body, Some(sign(SECRET, body)))).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{body}: {text}");
        assert!(!h.triggered().await);
    }
}

#[tokio::test]
async fn webhooks_are_disabled_without_a_secret_unless_unsigned_is_allowed() {
    let mut cfg = config();
    cfg.webhook.secrets = SecretSet::default();
    let h = Harness::new(cfg.clone());
    let body = push_body("refs/heads/main");
    assert_eq!(
        h.send(github_push(&body, None)).await.0,
        StatusCode::FORBIDDEN
    );
    cfg.webhook.allow_unsigned = true;
    let h = Harness::new(cfg);
    assert_eq!(
        h.send(github_push(&body, None)).await.0,
        StatusCode::ACCEPTED
    );
    assert!(h.triggered().await);
}

#[tokio::test]
async fn only_failures_spend_the_budget_and_valid_deliveries_always_pass() {
    let mut cfg = config();
    cfg.webhook.rate_limit_per_minute = 3;
    let h = Harness::new(cfg);
    let body = push_body("refs/heads/main");
    // Valid deliveries, more than the budget: never limited (they coalesce).
    for n in 0..5 {
        let body = numbered_push_body("refs/heads/main", n);
        let (code, text) = h.send(github_push(&body, Some(sign(SECRET, &body)))).await;
        assert_eq!(code, StatusCode::ACCEPTED, "{text}");
    }
    assert!(h.triggered().await);
    // Unsigned and wrongly signed ones from the same address spend it.
    let mut codes = Vec::new();
    for i in 0..5 {
        let sig = (i % 2 == 0).then(|| sign("not the secret", &body));
        codes.push(h.send(github_push(&body, sig)).await.0);
    }
    use StatusCode as S;
    let want = [S::UNAUTHORIZED, S::UNAUTHORIZED, S::UNAUTHORIZED];
    assert_eq!(codes[..3], want, "{codes:?}");
    assert_eq!(codes[3..], [S::TOO_MANY_REQUESTS; 2], "{codes:?}");
    assert!(!h.triggered().await);
    // A correctly signed delivery from that address still gets through.
    let next = numbered_push_body("refs/heads/main", 5);
    let (code, text) = h.send(github_push(&next, Some(sign(SECRET, &next)))).await;
    assert_eq!(code, StatusCode::ACCEPTED, "{text}");
    assert!(h.triggered().await);
    let (code, headers, _) = send_to(h.state.clone(), github_push(&body, None)).await;
    assert_eq!(code, S::TOO_MANY_REQUESTS);
    // 3 a minute: the next token in at most 20 s.
    assert_retry_after(&headers, 19..=20);
}

/// The 429's `Retry-After`, in whole seconds, is within `range`.
fn assert_retry_after(headers: &HeaderMap, range: std::ops::RangeInclusive<u64>) {
    let seconds = headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    assert!(
        seconds.is_some_and(|s| range.contains(&s)),
        "Retry-After {seconds:?}, expected {range:?}"
    );
}

#[tokio::test]
async fn the_sync_trigger_is_limited_on_failures_only() {
    let mut cfg = config();
    cfg.webhook.rate_limit_per_minute = 2;
    let h = Harness::new(cfg);
    let post = |auth: &str| {
        Request::post("/sync")
            .header("Authorization", auth)
            .body(Body::empty())
            .expect("request")
    };
    for _ in 0..4 {
        assert_eq!(h.send(post("Bearer t0ken")).await.0, StatusCode::ACCEPTED);
    }
    let codes = [
        h.send(post("Bearer nope")).await.0,
        h.send(post("Bearer nope")).await.0,
    ];
    assert_eq!(codes, [StatusCode::UNAUTHORIZED; 2]);
    let (code, headers, _) = send_to(h.state.clone(), post("Bearer nope")).await;
    assert_eq!(code, StatusCode::TOO_MANY_REQUESTS);
    assert_retry_after(&headers, 29..=30);
    assert_eq!(h.send(post("Bearer t0ken")).await.0, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let h = Harness::new(config());
    for auth in [
        "bearer t0ken",
        "BEARER t0ken",
        "BeArEr  t0ken",
        "Bearer t0ken ",
    ] {
        let req = Request::post("/sync")
            .header("Authorization", auth)
            .body(Body::empty())
            .expect("request");
        let (code, text) = h.send(req).await;
        assert_eq!(code, StatusCode::ACCEPTED, "{auth:?}: {text}");
        assert!(h.triggered().await, "{auth:?}");
    }
    for auth in ["Basic t0ken", "Bearert0ken", "t0ken", "Bearer"] {
        let req = Request::post("/sync")
            .header("Authorization", auth)
            .body(Body::empty())
            .expect("request");
        assert_eq!(h.send(req).await.0, StatusCode::UNAUTHORIZED, "{auth:?}");
    }
    assert!(!h.triggered().await);
}

#[tokio::test]
async fn a_form_encoded_github_delivery_says_to_choose_json() {
    let h = Harness::new(config());
    // GitHub's default content type: the JSON, url-encoded, in `payload=`.
    let body = format!(
        "payload={}",
        push_body("refs/heads/main").replace('"', "%22")
    );
    let req = Request::post("/webhook")
        .header("X-GitHub-Event", "push")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("X-Hub-Signature-256", sign(SECRET, &body))
        .body(Body::from(body))
        .expect("request");
    let (code, text) = h.send(req).await;
    assert_eq!(code, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{text}");
    assert!(
        text.contains("Content type application/json") && text.contains("GitHub"),
        "{text}"
    );
    assert!(!h.triggered().await);
}

#[tokio::test]
async fn a_wrong_gitlab_token_names_the_secret_flag_not_hmac() {
    let h = Harness::new(config());
    let req = Request::post("/webhook")
        .header("X-Gitlab-Event", "Push Hook")
        .header("X-Gitlab-Token", "not the secret")
        .body(Body::from("{}"))
        .expect("request");
    let (code, text) = h.send(req).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED, "{text}");
    assert!(
        text.contains("X-Gitlab-Token does not match --incoming-webhook-secret-file"),
        "{text}"
    );
    assert!(!text.contains("HMAC"), "GitLab sends no HMAC: {text}");
}

#[tokio::test]
async fn the_sync_trigger_needs_the_bearer_token() {
    let h = Harness::new(config());
    let post = |auth: Option<&str>| {
        let mut b = Request::post("/sync");
        if let Some(a) = auth {
            b = b.header("Authorization", a);
        }
        b.body(Body::empty()).expect("request")
    };
    assert_eq!(h.send(post(None)).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        h.send(post(Some("Bearer nope"))).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert!(!h.triggered().await);
    assert_eq!(
        h.send(post(Some("Bearer t0ken"))).await.0,
        StatusCode::ACCEPTED
    );
    assert!(h.triggered().await);

    let h = Harness::new(HttpConfig {
        trigger_tokens: SecretSet::default(),
        ..config()
    });
    assert_eq!(
        h.send(post(Some("Bearer t0ken"))).await.0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn a_push_for_another_repository_is_ignored_with_a_filter() {
    let mut cfg = config();
    cfg.webhook.repo_filter = Some("git@example.com:other/repo.git".into());
    let h = Harness::new(cfg.clone());
    let body = push_body("refs/heads/main");
    let (code, text) = h.send(github_push(&body, Some(sign(SECRET, &body)))).await;
    assert_eq!(code, StatusCode::OK);
    assert!(text.contains("ignored_repo"), "{text}");
    assert!(!h.triggered().await);

    cfg.webhook.repo_filter = Some("git@EXAMPLE.com:site".into());
    let h = Harness::new(cfg);
    let (code, text) = h.send(github_push(&body, Some(sign(SECRET, &body)))).await;
    assert_eq!(
        code,
        StatusCode::ACCEPTED,
        "loose match of https://example.com/site.git: {text}"
    );
    assert!(h.triggered().await);

    // A generic delivery that names no repository is ours (it is signed).
    let mut cfg = config();
    cfg.webhook.repo_filter = Some("git@example.com:other/repo.git".into());
    let h = Harness::new(cfg);
    let body = r#"{"ref":"refs/heads/main"}"#;
    let req = Request::post("/webhook")
        .header("X-Signature", sign(SECRET, body))
        .header("Content-Type", "application/json")
        .body(Body::from(body))
        .expect("request");
    let (code, text) = h.send(req).await;
    assert_eq!(code, StatusCode::ACCEPTED, "{text}");
    assert!(h.triggered().await);
}

/// A request body the test hands over chunk by chunk (or fails), recording
/// whether the server ever asked for it.
struct Fed {
    chunks: tokio::sync::mpsc::UnboundedReceiver<Result<Bytes, std::io::Error>>,
    polled: Arc<std::sync::atomic::AtomicBool>,
}

/// The test's end of a [`Fed`] body; dropping it ends the body.
struct Feeder {
    chunks: tokio::sync::mpsc::UnboundedSender<Result<Bytes, std::io::Error>>,
    polled: Arc<std::sync::atomic::AtomicBool>,
}

impl Feeder {
    fn send(&self, chunk: Result<Bytes, std::io::Error>) {
        self.chunks
            .send(chunk)
            .expect("the body is still being read");
    }

    fn polled(&self) -> bool {
        self.polled.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn fed() -> (Body, Feeder) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let polled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let body = Fed {
        chunks: rx,
        polled: polled.clone(),
    };
    let feeder = Feeder { chunks: tx, polled };
    (Body::new(body), feeder)
}

impl http_body::Body for Fed {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        self.polled.store(true, std::sync::atomic::Ordering::SeqCst);
        self.chunks
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| c.map(http_body::Frame::data)))
    }
}

use axum::body::Bytes;

/// Lets every spawned request run until it waits (single-threaded runtime:
/// while the test sleeps, the others run until none can go on).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// A GitHub push declaring `length` bytes, with `signature` if any.
fn declared_push(length: usize, signature: Option<&str>, body: Body) -> Request<Body> {
    let mut builder = Request::post("/webhook")
        .header("X-GitHub-Event", "push")
        .header("Content-Type", "application/json")
        .header("Content-Length", length);
    if let Some(sig) = signature {
        builder = builder.header("X-Hub-Signature-256", sig);
    }
    builder.body(body).expect("request")
}

/// What the headers alone refuse is refused without a byte of the body:
/// an unsigned push and a wrong GitLab token declaring 60 MB (under a 64 MiB
/// maximum), then, with the client's budget spent, 429 the same way. The
/// old handler read (waited for) every body before authenticating.
#[tokio::test]
async fn headers_alone_refuse_before_the_body_is_read() {
    let mut cfg = config();
    cfg.webhook.max_body_bytes = 64 << 20;
    cfg.webhook.rate_limit_per_minute = 2;
    let h = Harness::new(cfg);
    let huge = 60_000_000;

    let (body, unsigned) = fed();
    let (code, text) = h.send(declared_push(huge, None, body)).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED, "{text}");
    assert!(text.contains("missing_signature"), "{text}");
    assert!(!unsigned.polled(), "the unsigned body was read");

    let (body, gitlab) = fed();
    let req = Request::post("/webhook")
        .header("X-Gitlab-Event", "Push Hook")
        .header("X-Gitlab-Token", "a guess")
        .header("Content-Length", huge)
        .body(body)
        .expect("request");
    let (code, text) = h.send(req).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED, "{text}");
    assert!(
        !gitlab.polled(),
        "the body of a wrong GitLab token was read"
    );

    let (body, malformed) = fed();
    let (code, text) = h.send(declared_push(huge, Some("sha256=zz"), body)).await;
    assert_eq!(code, StatusCode::TOO_MANY_REQUESTS, "budget spent: {text}");
    assert!(!malformed.polled(), "a body was read past the budget");
    assert!(!h.triggered().await);
}

/// The same through the real accept loop: a client that sends only the
/// headers of a 60 MB unsigned POST (or a `POST /sync` with a wrong token)
/// gets its answer without sending a byte of body. The old handler waited
/// 10 s for the body and answered 408.
#[tokio::test]
async fn over_a_socket_the_answer_comes_before_the_body_is_sent() {
    let mut cfg = config();
    cfg.webhook.max_body_bytes = 64 << 20;
    cfg.webhook.rate_limit_per_minute = 1;
    let h = Harness::new(cfg);
    let (addr, cancel) = h.serve().await;
    let head = |path: &str, extra: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: sidecar\r\nX-GitHub-Event: push\r\n{extra}\
             Content-Type: application/json\r\nContent-Length: 60000000\r\n\r\n"
        )
    };
    let answer = raw_exchange(addr, &head("/webhook", "")).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains("missing_signature"), "{answer}");
    let answer = raw_exchange(addr, &head("/webhook", "X-Gitlab-Token: guess\r\n")).await;
    assert!(
        answer.starts_with("HTTP/1.1 429"),
        "budget of 1 spent: {answer}"
    );
    let answer = raw_exchange(addr, &head("/sync", "Authorization: Bearer nope\r\n")).await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    cancel.cancel();
}

/// A client that sends the whole body before it reads the answer, as nginx
/// in front of us does: the refusal decided from the headers (here, no
/// signature) still reaches it, saying `Connection: close`. The server
/// closed at once, with the body unread, so the kernel reset the
/// connection: the client's writes failed, and nginx answered the forge
/// 502 (probe-17 F1).
#[tokio::test]
async fn a_client_sending_its_whole_body_still_gets_the_early_answer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const BODY: usize = 4 << 20;
    let mut cfg = config();
    cfg.webhook.max_body_bytes = 64 << 20;
    let h = Harness::new(cfg);
    let (addr, cancel) = h.serve().await;
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /webhook HTTP/1.1\r\nHost: sidecar\r\nX-GitHub-Event: push\r\n\
         Content-Type: application/json\r\nContent-Length: {BODY}\r\n\r\n"
    );
    stream
        .write_all(head.as_bytes())
        .await
        .expect("the headers");
    // Give the answer time to come back before the body.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let chunk = vec![b' '; 64 << 10];
    for sent in (0..BODY).step_by(chunk.len()) {
        stream
            .write_all(&chunk)
            .await
            .unwrap_or_else(|e| panic!("the body, after {sent} bytes: {e}"));
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer));
    read.await.expect("an answer").expect("reading the answer");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    assert!(answer.contains("missing_signature"), "{answer}");
    cancel.cancel();
}

/// More slow clients than the connection cap (each sends half its
/// headers and stops) do not keep a kubelet probe out: at the cap every
/// newcomer is still accepted and the oldest waiting connection closed. The
/// accept loop used to wait for a slot, leaving newcomers in the kernel's
/// queue behind the flood, and closed only connections that had waited a
/// second: the probe waited seconds (probe-17 F2).
#[tokio::test]
async fn more_slow_clients_than_the_cap_do_not_keep_a_probe_out() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const CAP: usize = 8;
    let mut cfg = config();
    cfg.connections = ConnectionLimits {
        header_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(30),
        max_connections: CAP,
    };
    let h = Harness::new(cfg);
    let (addr, cancel) = h.serve().await;
    let mut slow = Vec::new();
    for _ in 0..CAP * 6 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: slow\r\n")
            .await
            .expect("half a request");
        slow.push(stream);
    }
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(b"GET /livez HTTP/1.1\r\nHost: kubelet\r\nConnection: close\r\n\r\n")
            .await
            .expect("the probe's request");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.expect("the answer");
        String::from_utf8_lossy(&answer).into_owned()
    };
    let answer = tokio::time::timeout(Duration::from_secs(1), probe)
        .await
        .expect("the probe answered within a second, as kubelet's timeout asks");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(slow);
    cancel.cancel();
}

/// Writes `request` (headers only) and reads the answer until the server
/// closes. The generous timeout only keeps a broken server from hanging
/// the test.
async fn raw_exchange(addr: SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("sending the headers");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut answer));
    read.await.expect("an answer within 60 s").expect("reading");
    String::from_utf8_lossy(&answer).into_owned()
}

/// Bodies that must be read to be verified share one buffer: with a 32 MiB
/// maximum it holds two declared 32 MiB bodies; a third waits, unread,
/// until one of them is done, and a valid delivery queued behind the junk
/// gets through once room frees (not refused). The old handler read every
/// body at once.
#[tokio::test]
async fn unverified_bodies_share_a_bounded_buffer_and_a_valid_delivery_follows() {
    let mut cfg = config();
    cfg.webhook.max_body_bytes = 32 << 20;
    let h = Harness::new(cfg);
    let total = h.state.body_buffer.available();
    assert_eq!(total, 64 << 20, "max(64 MiB, 2 × the maximum body)");
    let forged = format!("sha256={}", "0".repeat(64));
    let (mut feeders, mut answers) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let (body, feeder) = fed();
        answers.push(h.spawn(declared_push(32 << 20, Some(&forged), body)));
        feeders.push(feeder);
    }
    let push = push_body("refs/heads/main");
    let valid = h.spawn(declared_push(
        push.len(),
        Some(&sign(SECRET, &push)),
        Body::from(push.clone()),
    ));
    settle().await;
    assert!(feeders[0].polled() && feeders[1].polled(), "two are read");
    assert!(
        !feeders[2].polled(),
        "the third body is read before room frees"
    );
    assert_eq!(h.state.body_buffer.available(), 0);
    assert!(!valid.is_finished(), "the valid delivery waits its turn");

    // The first junk body ends (short, and forged anyway): its room goes to the third.
    let mut feeders = feeders.into_iter();
    drop(feeders.next());
    let mut answers = answers.into_iter();
    let first = answers.next().expect("three").await.expect("task");
    assert_eq!(first.0, StatusCode::UNAUTHORIZED, "{}", first.1);
    settle().await;
    let rest: Vec<Feeder> = feeders.collect();
    assert!(rest[1].polled(), "the third body is read once room frees");
    drop(rest);
    for answer in answers {
        assert_eq!(answer.await.expect("task").0, StatusCode::UNAUTHORIZED);
    }
    let (code, text) = valid.await.expect("task");
    assert_eq!(code, StatusCode::ACCEPTED, "{text}");
    assert!(h.triggered().await);
    assert_eq!(h.state.body_buffer.available(), total, "all room back");
}

/// With the buffer full for longer than the body timeout, a delivery gets
/// 503 with Retry-After, its body unread and its client's budget untouched;
/// once room frees the same delivery is accepted.
#[tokio::test]
async fn a_full_buffer_answers_503_with_retry_after_and_charges_nobody() {
    let mut cfg = config();
    cfg.webhook.rate_limit_per_minute = 1;
    let mut state = state(cfg);
    state.body_buffer = incoming_webhook::BodyBuffer::new(state.config.webhook.max_body_bytes)
        .with_timeout(Duration::from_millis(200));
    let h = Harness::with_state(state);
    let hold = h.state.body_buffer.reserve_all().await;
    let push = push_body("refs/heads/main");
    let signature = sign(SECRET, &push);
    for _ in 0..2 {
        let (body, feeder) = fed();
        let req = declared_push(push.len(), Some(&signature), body);
        let (code, headers, text) = send_to(h.state.clone(), req).await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{text}");
        assert!(text.contains("retry later"), "{text}");
        assert_eq!(
            headers.get(header::RETRY_AFTER).map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
        assert!(!feeder.polled(), "read without room");
    }
    assert!(h
        .state
        .metrics
        .encode()
        .contains("git_sidecar_webhook_requests_total{provider=\"github\",result=\"busy\"} 2"));
    drop(hold);
    let (code, text) = h.send(github_push(&push, Some(signature))).await;
    assert_eq!(code, StatusCode::ACCEPTED, "{text}");
    // Two 503s spent nothing of the budget of 1: one failure still answers 401.
    assert_eq!(
        h.send(github_push(&push, None)).await.0,
        StatusCode::UNAUTHORIZED
    );
}

/// A body that breaks off (the client went away, a bad chunked encoding) is
/// a 400 saying so, not a 413 "too large"; one over the maximum without a
/// Content-Length is still 413.
#[tokio::test]
async fn a_broken_body_is_400_and_only_a_large_one_413() {
    let h = Harness::new(config());
    let forged = format!("sha256={}", "0".repeat(64));
    let cases = [
        (
            std::io::ErrorKind::ConnectionReset,
            "the client closed the connection",
        ),
        (
            std::io::ErrorKind::InvalidData,
            "the body could not be read: invalid chunk size",
        ),
    ];
    for (kind, want) in cases {
        let (body, feeder) = fed();
        feeder.send(Ok(Bytes::from_static(b"{\"ref\":")));
        feeder.send(Err(std::io::Error::new(kind, "invalid chunk size")));
        let req = Request::post("/webhook")
            .header("X-GitHub-Event", "push")
            .header("X-Hub-Signature-256", &forged)
            .body(body)
            .expect("request");
        let (code, text) = h.send(req).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{kind:?}: {text}");
        assert!(
            text.contains("bad_body") && text.contains(want),
            "{kind:?}: {text}"
        );
    }
    let (body, feeder) = fed();
    for _ in 0..3 {
        feeder.send(Ok(Bytes::from(vec![b' '; 512])));
    }
    let req = Request::post("/webhook")
        .header("X-GitHub-Event", "push")
        .header("X-Hub-Signature-256", &forged)
        .body(body)
        .expect("request");
    let (code, text) = h.send(req).await;
    assert_eq!(
        code,
        StatusCode::PAYLOAD_TOO_LARGE,
        "1536 bytes over 1024: {text}"
    );
    assert!(text.contains("too_large"), "{text}");
}

/// Through the real accept loop: a client that closes its side after part
/// of its declared body is counted as `bad_body` (hyper's incomplete
/// body), not as `too_large`.
#[tokio::test]
async fn over_a_socket_a_client_gone_mid_body_is_not_too_large() {
    use tokio::io::AsyncWriteExt;
    let h = Harness::new(config());
    let (addr, cancel) = h.serve().await;
    let forged = format!("sha256={}", "0".repeat(64));
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "POST /webhook HTTP/1.1\r\nHost: sidecar\r\nX-GitHub-Event: push\r\n\
         X-Hub-Signature-256: {forged}\r\nContent-Length: 1000\r\n\r\n{{\"ref\":"
    );
    stream.write_all(request.as_bytes()).await.expect("sending");
    stream.shutdown().await.expect("closing our side");
    let counted = |result: &str| {
        h.state.metrics.encode().contains(&format!(
            "git_sidecar_webhook_requests_total{{provider=\"github\",result=\"{result}\"}} 1"
        ))
    };
    let mut waited = Duration::ZERO;
    while !counted("bad_body") && waited < Duration::from_secs(30) {
        settle().await;
        waited += Duration::from_millis(50);
    }
    assert!(counted("bad_body"), "{}", h.state.metrics.encode());
    assert!(!counted("too_large"));
    cancel.cancel();
}

/// A `POST /peers/hint` request signed with `secret` (unsigned when `None`).
fn peer_hint(body: &[u8], secret: Option<&str>) -> Request<Body> {
    let mut req = Request::post(crate::peers::ENDPOINT).header("content-type", "application/json");
    if let Some(secret) = secret {
        let signature = sign(secret, std::str::from_utf8(body).expect("utf-8"));
        req = req.header(crate::peers::SIGNATURE_HEADER, signature);
    }
    req.body(Body::from(body.to_vec())).expect("request")
}

#[tokio::test]
async fn peer_hints_are_refused_without_peers() {
    let h = Harness::new(config());
    let hint = crate::peers::Hint::new("repo", "main", None);
    let (body, _) = hint.sign(&SecretBytes::new("any"));
    let (code, text) = h.send(peer_hint(&body, Some("any"))).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{text}");
    assert!(text.contains("no --peers"), "{text}");
    assert!(!h.triggered().await);
}

/// A verified webhook is announced to the peers; a peer's hint triggers a
/// sync (with its expected commit) but is never announced again, and an
/// unsigned hint does nothing.
/// A harness with `--peers=127.0.0.1:1` (nobody listens there: a fan-out
/// fails fast, and is recorded) and the peer secret "peer secret".
fn with_peers(cfg: HttpConfig) -> (Harness, Arc<crate::peers::Peers>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret_file = dir.path().join("peer-secret");
    std::fs::write(&secret_file, "peer secret").expect("write");
    let peers_config = crate::peers::PeersConfig {
        names: crate::peers::resolve::parse_list("127.0.0.1:1").expect("list"),
        secret_file,
        secret: SecretBytes::new("peer secret"),
    };
    let base = state(cfg);
    let peers = crate::peers::Peers::start(
        &peers_config,
        crate::peers::Me {
            bound: "127.0.0.1:2".parse().expect("addr"),
        },
        base.repo_redacted.clone(),
        base.git_ref.clone(),
        base.metrics.clone(),
        tokio_util::sync::CancellationToken::new(),
    );
    (
        Harness::with_state(base.with_peers(peers.clone())),
        peers,
        dir,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_announced_to_peers_and_hints_are_not() {
    let (h, peers, _dir) = with_peers(config());
    let commit = "e".repeat(40);
    let hint = crate::peers::Hint::new(
        &h.state.repo_redacted,
        &h.state.git_ref,
        Some(commit.clone()),
    );
    let (body, _) = hint.sign(&SecretBytes::new("peer secret"));

    let (code, text) = h.send(peer_hint(&body, None)).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED, "{text}");
    assert!(!h.triggered().await);
    let (code, text) = h.send(peer_hint(&body, Some("peer secret"))).await;
    assert_eq!(code, StatusCode::ACCEPTED, "{text}");
    assert!(h.triggered().await);
    assert_eq!(h.state.status.snapshot().expected_hash, Some(commit));
    // Long enough for a fan-out to 127.0.0.1:1 to have failed and been recorded.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert!(peers.last_fan_out().is_none(), "a hint was passed on");

    let push = push_body("refs/heads/main");
    let (code, text) = h.send(github_push(&push, Some(sign(SECRET, &push)))).await;
    assert_eq!(code, StatusCode::ACCEPTED, "{text}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while peers.last_fan_out().is_none() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let fan_out = peers.last_fan_out().expect("the webhook was announced");
    assert_eq!(fan_out.peers.len(), 1);
}

/// Each hint is counted once, by the answer it got: past the client's
/// failure budget a wrongly signed hint is `rate_limited` (429), not
/// `bad_signature`; a genuine hint still passes.
#[tokio::test]
async fn peer_hints_are_counted_by_the_answer_given() {
    let mut cfg = config();
    cfg.webhook.rate_limit_per_minute = 2;
    let (h, _peers, _dir) = with_peers(cfg);
    let hint = crate::peers::Hint::new(&h.state.repo_redacted, &h.state.git_ref, None);
    let (body, _) = hint.sign(&SecretBytes::new("peer secret"));
    for expected in [401, 401, 429, 429] {
        let (code, text) = h.send(peer_hint(&body, Some("a guess"))).await;
        assert_eq!(code.as_u16(), expected, "{text}");
    }
    let (code, text) = h.send(peer_hint(&body, Some("peer secret"))).await;
    assert_eq!(code, StatusCode::ACCEPTED, "{text}");
    let other = crate::peers::Hint::new("https://example.com/other.git", "main", None);
    let (other, _) = other.sign(&SecretBytes::new("peer secret"));
    let (code, text) = h.send(peer_hint(&other, Some("peer secret"))).await;
    assert_eq!(code, StatusCode::OK, "{text}");
    assert!(
        text.contains("not this replica's https://example.com/site.git main"),
        "{text}"
    );
    let metrics = h.state.metrics.encode();
    for (result, n) in [
        ("bad_signature", 2),
        ("rate_limited", 2),
        ("ok", 1),
        ("ignored", 1),
    ] {
        let sample = format!("git_sidecar_peer_hints_received_total{{result=\"{result}\"}} {n}");
        assert!(metrics.contains(&sample), "{sample}\n{metrics}");
    }
}
