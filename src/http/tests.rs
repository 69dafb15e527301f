//! Router tests without sockets: each request goes through `oneshot`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use hmac::{KeyInit, Mac};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;
use crate::config::{ReadinessConfig, WebhookConfig};

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
            secrets: vec![SecretBytes::new(SECRET)],
            allow_unsigned: false,
            repo_filter: None,
            max_body_bytes: 1024,
            rate_limit_per_minute: 1000,
        },
        trigger_tokens: vec![SecretBytes::new("t0ken")],
        connections: Default::default(),
    }
}

struct Harness {
    state: Shared,
}

impl Harness {
    fn new(config: HttpConfig) -> Self {
        let state = HttpState::new(
            config,
            StatusHandle::default(),
            Arc::new(Metrics::new()),
            Trigger::default(),
            "https://example.com/site.git".into(),
            "main".into(),
            Duration::from_secs(10),
        );
        Self {
            state: Arc::new(state),
        }
    }

    async fn send(&self, req: Request<Body>) -> (StatusCode, String) {
        let mut req = req;
        let client: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
        req.extensions_mut().insert(ConnectInfo(client));
        let response = router(self.state.clone())
            .oneshot(req)
            .await
            .expect("infallible");
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
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
    serde_json::json!({
        "ref": git_ref,
        "before": "1111111111111111111111111111111111111111",
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
    cfg.webhook.secrets = vec![SecretBytes::new("new secret"), SecretBytes::new(SECRET)];
    let h = Harness::new(cfg);
    let body = push_body("refs/heads/main");
    assert_eq!(
        h.send(github_push(&body, Some(sign(SECRET, &body))))
            .await
            .0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        h.send(github_push(&body, Some(sign("new secret", &body))))
            .await
            .0,
        StatusCode::ACCEPTED
    );
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
    cfg.webhook.secrets.clear();
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
    for _ in 0..5 {
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
    let (code, text) = h.send(github_push(&body, Some(sign(SECRET, &body)))).await;
    assert_eq!(code, StatusCode::ACCEPTED, "{text}");
    assert!(h.triggered().await);
    assert_eq!(
        h.send(github_push(&body, None)).await.0,
        S::TOO_MANY_REQUESTS
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
        h.send(post("Bearer nope")).await.0,
    ];
    assert_eq!(
        codes,
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
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
        trigger_tokens: vec![],
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
}
